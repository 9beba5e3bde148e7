//! The fault proxy itself: it forwards faithfully, fails what it is told to, and counts.

mod support;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use support::fault_proxy::FaultProxy;

async fn proxy() -> FaultProxy {
    let upstream = support::endpoint().trim_start_matches("http://").to_owned();
    FaultProxy::start(upstream, 7).await
}

#[tokio::test]
async fn forwards_counts_puts_and_injects_faults() {
    let proxy = proxy().await;
    let table = support::fresh_table().await;
    let bucket = support::fresh_bucket().await;
    let sdk = support::sdk_config_for(&proxy.endpoint)
        .into_builder()
        .retry_config(RetryConfig::disabled())
        .build();
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let s3 = support::s3_for(&sdk);

    let put = |n: u32| {
        dynamo
            .put_item()
            .table_name(&table)
            .item("pk", AttributeValue::S(format!("p{n}")))
            .item("sk", AttributeValue::S("s".into()))
            .send()
    };
    put(0).await.expect("forwarded");
    s3.put_object()
        .bucket(&bucket)
        .key("a/b.mp3")
        .body(vec![1u8; 10].into())
        .send()
        .await
        .expect("forwarded");
    let stats = proxy.stats();
    assert_eq!(stats.puts.get("a/b.mp3"), Some(&1));
    assert!(stats.faults.is_empty());

    proxy.set_fault_rates(1000, 1000);
    let mut failures = 0;
    for n in 1..=20 {
        failures += u32::from(put(n).await.is_err());
    }
    assert_eq!(failures, 20, "every call fails at 100%");
    assert!(
        s3.put_object()
            .bucket(&bucket)
            .key("c")
            .body(vec![2u8].into())
            .send()
            .await
            .is_err()
    );
    let stats = proxy.stats();
    assert_eq!(stats.faults.values().sum::<u64>(), 21);
    assert!(
        stats
            .faults
            .keys()
            .map(|(_, f)| f)
            .collect::<std::collections::HashSet<_>>()
            .len()
            >= 3,
        "{:?}",
        stats.faults
    );
    assert_eq!(
        stats.puts.get("c"),
        None,
        "a failed put never reached the store"
    );
}
