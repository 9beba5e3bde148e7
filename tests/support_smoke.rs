//! Checks the shared test support against moto: tables and buckets can be made and used.
mod support;

use aws_sdk_dynamodb::types::{AttributeValue, StreamViewType, TimeToLiveStatus};
use aws_sdk_s3::primitives::ByteStream;

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

#[tokio::test]
async fn fresh_table_has_the_project_schema() {
    let table = support::fresh_table().await;
    let client = support::dynamo().await;

    let description = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .expect("describe table")
        .table
        .expect("table description");
    let keys: Vec<_> = description
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name(), k.key_type().as_str()))
        .collect();
    assert_eq!(keys, [("pk", "HASH"), ("sk", "RANGE")]);
    let stream = description.stream_specification().expect("stream spec");
    assert!(stream.stream_enabled());
    assert_eq!(
        stream.stream_view_type(),
        Some(&StreamViewType::NewAndOldImages)
    );

    let ttl = client
        .describe_time_to_live()
        .table_name(&table)
        .send()
        .await
        .expect("describe TTL")
        .time_to_live_description
        .expect("TTL description");
    assert_eq!(ttl.attribute_name(), Some("expires_at"));
    assert_eq!(ttl.time_to_live_status(), Some(&TimeToLiveStatus::Enabled));
}

#[tokio::test]
async fn items_round_trip_and_scan_all_sorts_them() {
    let table = support::fresh_table().await;
    let client = support::dynamo().await;
    // Put out of order so the sort in scan_all is what orders them.
    for (pk, sk) in [
        ("task-2", "TASK"),
        ("task-1", "TASK"),
        ("task-1", "ASSET#a#mp3"),
    ] {
        client
            .put_item()
            .table_name(&table)
            .item("pk", s(pk))
            .item("sk", s(sk))
            .item("status", s("RECEIVED"))
            .send()
            .await
            .expect("put item");
    }

    let item = client
        .get_item()
        .table_name(&table)
        .key("pk", s("task-1"))
        .key("sk", s("TASK"))
        .send()
        .await
        .expect("get item")
        .item
        .expect("item present");
    assert_eq!(item.get("status"), Some(&s("RECEIVED")));

    let keys: Vec<_> = support::scan_all(&table)
        .await
        .iter()
        .map(|item| (item["pk"].clone(), item["sk"].clone()))
        .collect();
    assert_eq!(
        keys,
        [
            (s("task-1"), s("ASSET#a#mp3")),
            (s("task-1"), s("TASK")),
            (s("task-2"), s("TASK")),
        ]
    );
}

#[tokio::test]
async fn scan_all_follows_pages() {
    let table = support::fresh_table().await;
    let client = support::dynamo().await;
    // DynamoDB (and moto) return at most 1 MB per Scan page: 4 items of 300 kB take two.
    let padding = "x".repeat(300_000);
    for sk in ["a", "b", "c", "d"] {
        client
            .put_item()
            .table_name(&table)
            .item("pk", s("big"))
            .item("sk", s(sk))
            .item("padding", s(&padding))
            .send()
            .await
            .expect("put item");
    }
    let first_page = client.scan().table_name(&table).send().await.expect("scan");
    assert!(first_page.last_evaluated_key.is_some(), "expected paging");

    let sks: Vec<_> = support::scan_all(&table)
        .await
        .iter()
        .map(|item| item["sk"].clone())
        .collect();
    assert_eq!(sks, [s("a"), s("b"), s("c"), s("d")]);
}

#[tokio::test]
async fn fresh_tables_are_separate() {
    let (first, second) = (support::fresh_table().await, support::fresh_table().await);
    assert_ne!(first, second);
    support::dynamo()
        .await
        .put_item()
        .table_name(&first)
        .item("pk", s("p"))
        .item("sk", s("s"))
        .send()
        .await
        .expect("put item");
    assert_eq!(support::scan_all(&first).await.len(), 1);
    assert!(support::scan_all(&second).await.is_empty());
}

#[tokio::test]
async fn objects_round_trip() {
    let bucket = support::fresh_bucket().await;
    let client = support::s3().await;
    let body = b"ID3 not really an mp3".to_vec();

    client
        .put_object()
        .bucket(&bucket)
        .key("task-1/conv-1.mp3")
        .content_type("audio/mpeg")
        .body(ByteStream::from(body.clone()))
        .send()
        .await
        .expect("put object");

    let object = client
        .get_object()
        .bucket(&bucket)
        .key("task-1/conv-1.mp3")
        .send()
        .await
        .expect("get object");
    assert_eq!(object.content_type(), Some("audio/mpeg"));
    let bytes = object.body.collect().await.expect("read body").into_bytes();
    assert_eq!(bytes.as_ref(), body.as_slice());
}

#[test]
fn endpoint_is_loopback() {
    assert!(support::endpoint().starts_with("http://127.0.0.1:"));
}
