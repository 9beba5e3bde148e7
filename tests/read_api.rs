//! The read API on the webhook's front end, over DynamoDB and S3 in moto: credentials (none:
//! 401, wrong or a webhook token: 403, a bearer read token or IAM: 200), unknown tasks (404),
//! paging through tasks by status, and presigned URLs that download the right bytes. Requests
//! are API Gateway (payload 2.0) events, turned into requests by lambda_http as in Lambda;
//! the webhook route next to it answers as before.
mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use lambda_http::{Body, Request, Response};
use musicgpt_webhook::adapters::dynamodb::DynamoTable;
use musicgpt_webhook::adapters::memory::MemorySource;
use musicgpt_webhook::adapters::presign::S3Presigner;
use musicgpt_webhook::adapters::s3::S3Sink;
use musicgpt_webhook::app::copy::{CopyEngine, copy_all};
use musicgpt_webhook::app::ports::{AssetStore, Ports};
use musicgpt_webhook::app::read::TaskReader;
use musicgpt_webhook::app::record::Recorder;
use musicgpt_webhook::domain::callback::Callback;
use musicgpt_webhook::domain::ids::Id;
use musicgpt_webhook::domain::keys::KeyPrefix;
use musicgpt_webhook::domain::retry::RetryPolicy;
use musicgpt_webhook::domain::token::WebhookTokens;
use musicgpt_webhook::lambda::http::{Ingest, Webhook};
use musicgpt_webhook::lambda::read_api::ReadApi;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

const WEBHOOK_TOKEN: &str = "test-token-0123456789abcdef";
const READ_TOKEN: &str = "read-token-0123456789abcdef";
const TASK: &str = "t-read-1";

#[derive(Clone)]
struct Real;
impl Ports for Real {
    type Tasks = DynamoTable;
    type Assets = DynamoTable;
    type Source = MemorySource;
    type Sink = S3Sink;
    type Api = musicgpt_webhook::adapters::musicgpt::MusicGptApi;
}

struct Rig {
    table: DynamoTable,
    recorder: Recorder<DynamoTable>,
    engine: CopyEngine<Real>,
    source: MemorySource,
    webhook: Webhook<DynamoTable>,
}

async fn rig() -> Rig {
    let sdk = support::sdk_config().await;
    let table = DynamoTable::new(support::dynamo().await, support::fresh_table().await);
    let bucket = support::fresh_bucket().await;
    let source = MemorySource::new();
    let engine = CopyEngine::<Real>::new(
        table.clone(),
        source.clone(),
        S3Sink::new(support::s3_for(&sdk), &bucket),
        RetryPolicy::default(),
    );
    let recorder = Recorder::new(
        table.clone(),
        KeyPrefix::parse("music").expect("prefix"),
        Duration::from_secs(86_400),
    );
    let reader = TaskReader::new(
        table.clone(),
        S3Presigner::new(support::s3_for(&sdk)),
        Duration::from_secs(900),
    );
    let read = ReadApi::new(
        Some(WebhookTokens::parse(READ_TOKEN).expect("read token")),
        reader,
    );
    let ingest = Ingest::new(
        WebhookTokens::parse(WEBHOOK_TOKEN).expect("token"),
        recorder.clone(),
    );
    Rig {
        table,
        recorder,
        engine,
        source,
        webhook: Webhook::new(ingest).with_read_api(Arc::new(read)),
    }
}

impl Rig {
    async fn record(&self, body: Value, now: u64) -> Option<Id> {
        let callback = Callback::parse(body.to_string().as_bytes(), None).expect("callback");
        let outcome = self
            .recorder
            .record(&callback, now)
            .await
            .expect("recorded");
        outcome.task_id().cloned()
    }

    async fn copy(&self, task: &Id) {
        let pending = self.table.pending_in_task(task).await.expect("pending");
        copy_all(
            &self.engine,
            pending,
            Instant::now() + Duration::from_secs(60),
            4,
        )
        .await;
    }
}

/// An HTTP API (payload 2.0) event for `GET <path>?<query>`, optionally IAM-authorized.
fn get(path: &str, query: &[(&str, &str)], authorization: Option<&str>, iam: bool) -> Request {
    let raw_query = query
        .iter()
        .map(|(k, v)| {
            let v: String = form_urlencoded::byte_serialize(v.as_bytes()).collect();
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join("&");
    let mut headers = json!({"host": "k3x9q7w2ze.execute-api.us-east-1.amazonaws.com"});
    if let Some(value) = authorization {
        headers["authorization"] = json!(value);
    }
    let mut context = json!({
        "accountId": "123456789012", "apiId": "k3x9q7w2ze",
        "domainName": "k3x9q7w2ze.execute-api.us-east-1.amazonaws.com",
        "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1",
                 "sourceIp": "54.86.112.37", "userAgent": "test"},
        "requestId": "r", "routeKey": "GET /tasks", "stage": "$default",
        "time": "01/Dec/2026:10:00:00 +0000", "timeEpoch": 1_796_119_200_000u64,
    });
    if iam {
        context["authorizer"] = json!({"iam": {
            "accessKey": "AKIAEXAMPLE", "accountId": "123456789012", "callerId": "AIDAEXAMPLE",
            "principalOrgId": null, "userArn": "arn:aws:iam::123456789012:user/reader",
            "userId": "AIDAEXAMPLE"}});
    }
    let mut event = json!({
        "version": "2.0", "routeKey": "GET /tasks", "rawPath": path,
        "rawQueryString": raw_query, "headers": headers, "requestContext": context,
        "isBase64Encoded": false,
    });
    if !query.is_empty() {
        let params: serde_json::Map<String, Value> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        event["queryStringParameters"] = Value::Object(params);
    }
    lambda_http::request::from_str(&event.to_string()).expect("a request")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn json_of(response: &Response<Body>) -> Value {
    match response.body() {
        Body::Text(text) => serde_json::from_str(text).expect("JSON"),
        other => panic!("not a text body: {other:?}"),
    }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test]
async fn credentials_are_the_read_api_own() {
    let rig = rig().await;
    rig.record(json!({"task_id": TASK, "status": "IN_PROGRESS"}), 100)
        .await;
    let path = format!("/tasks/{TASK}");
    let answer = rig.webhook.handle(get(&path, &[], None, false)).await;
    assert_eq!(answer.status(), 401);
    assert_eq!(
        answer
            .headers()
            .get("www-authenticate")
            .map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    assert_eq!(json_of(&answer)["error"], json!("unauthorized"));
    for wrong in [
        bearer("read-token-0123456789abcdeX"),
        bearer(WEBHOOK_TOKEN),
        format!("Basic {READ_TOKEN}"),
        READ_TOKEN.to_owned(),
        "Bearer".to_owned(),
    ] {
        let answer = rig
            .webhook
            .handle(get(&path, &[], Some(&wrong), false))
            .await;
        assert_eq!(answer.status(), 403, "{wrong}");
    }
    let list = [("status", "IN_PROGRESS")];
    assert_eq!(
        rig.webhook
            .handle(get("/tasks", &list, None, false))
            .await
            .status(),
        401
    );
    for request in [
        get(&path, &[], Some(&bearer(READ_TOKEN)), false),
        get(&path, &[], Some(&format!("bearer  {READ_TOKEN}")), false),
        get(&path, &[], None, true),
        get("/tasks", &list, None, true),
    ] {
        let answer = rig.webhook.handle(request).await;
        assert_eq!(answer.status(), 200, "{:?}", json_of(&answer));
    }
    // The webhook's route is untouched: its token in the path, its statuses.
    let answer = rig
        .webhook
        .handle(get(&format!("/webhook/{WEBHOOK_TOKEN}"), &[], None, false))
        .await;
    assert_eq!(answer.status(), 405);
    let answer = rig
        .webhook
        .handle(get(&format!("/webhook/{READ_TOKEN}"), &[], None, false))
        .await;
    assert_eq!(answer.status(), 404, "a read token is no webhook token");
}

#[tokio::test]
async fn unknown_tasks_are_404_and_bad_queries_400() {
    let rig = rig().await;
    let auth = bearer(READ_TOKEN);
    for path in ["/tasks/nobody", "/tasks/not%20an%20id", "/tasks/a.b"] {
        let answer = rig.webhook.handle(get(path, &[], Some(&auth), false)).await;
        assert_eq!(answer.status(), 404, "{path}");
        assert_eq!(json_of(&answer)["error"], json!("not_found"));
    }
    for query in [
        vec![],
        vec![("status", "DONE!")],
        vec![("status", "COMPLETED"), ("since", "last week")],
        vec![("status", "COMPLETED"), ("limit", "1000")],
        vec![("status", "COMPLETED"), ("next", "not-a-cursor")],
    ] {
        let answer = rig
            .webhook
            .handle(get("/tasks", &query, Some(&auth), false))
            .await;
        assert_eq!(answer.status(), 400, "{query:?}");
        assert!(
            !json_of(&answer)["message"]
                .as_str()
                .unwrap_or("")
                .is_empty()
        );
    }
}

#[tokio::test]
async fn a_task_shows_its_files_with_urls_that_download_the_right_bytes() {
    let rig = rig().await;
    let files = [
        (
            "https://lalals.s3.amazonaws.com/a.mp3",
            b"mp3 bytes ".repeat(5000),
        ),
        (
            "https://lalals.s3.amazonaws.com/a.wav",
            b"wav bytes ".repeat(9000),
        ),
    ];
    for (url, bytes) in &files {
        rig.source.serve(url, bytes.clone());
    }
    let task = rig
        .record(
            json!({"task_id": TASK, "conversion_id": "c1", "success": true,
                   "conversion_type": "Voice Changer", "title": "Song", "conversion_duration": 12.5,
                   "lyrics": "la la la", "conversion_path": files[0].0,
                   "conversion_path_wav": files[1].0}),
            1_000,
        )
        .await
        .expect("task");
    rig.copy(&task).await;
    let answer = rig
        .webhook
        .handle(get(
            &format!("/tasks/{TASK}"),
            &[],
            Some(&bearer(READ_TOKEN)),
            false,
        ))
        .await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"application/json"[..])
    );
    let task = json_of(&answer);
    assert_eq!(task["task_id"], json!(TASK));
    assert_eq!(task["status"], json!("COMPLETED"));
    assert_eq!(task["settled"], json!(true));
    assert_eq!(task["outcome"], json!("completed"));
    assert_eq!(task["conversions"][0]["title"], json!("Song"));
    assert_eq!(task["conversions"][0]["lyrics"], json!("la la la"));
    let listed = task["files"].as_array().expect("files");
    assert_eq!(listed.len(), 2);
    let client = reqwest::Client::new();
    let mut seen = BTreeSet::new();
    for file in listed {
        assert_eq!(file["state"], json!("STORED"));
        let url = file["url"].as_str().expect("a presigned URL");
        assert!(url.contains("X-Amz-Signature="), "{url}");
        assert!(url.contains("X-Amz-Expires=900"), "{url}");
        assert!(file["url_expires_at"].as_u64().expect("expiry") > 0);
        let body = client
            .get(url)
            .send()
            .await
            .expect("GET the presigned URL")
            .error_for_status()
            .expect("moto serves it")
            .bytes()
            .await
            .expect("body");
        let expected = files
            .iter()
            .find(|(source, _)| source.ends_with(file["format"].as_str().expect("format")))
            .expect("a source");
        assert_eq!(sha256(&body), sha256(&expected.1));
        assert_eq!(file["sha256"].as_str(), Some(sha256(&body).as_str()));
        assert_eq!(file["size"].as_u64(), Some(body.len() as u64));
        seen.insert(file["key"].as_str().expect("key").to_owned());
    }
    assert_eq!(
        seen,
        BTreeSet::from([
            format!("music/{TASK}/c1.mp3"),
            format!("music/{TASK}/c1.wav")
        ])
    );
}

#[tokio::test]
async fn tasks_page_by_status_newest_first() {
    let rig = rig().await;
    for n in 0..5u64 {
        rig.record(
            json!({"task_id": format!("t-page-{n}"), "status": "COMPLETED"}),
            1_000 + n,
        )
        .await;
    }
    rig.record(
        json!({"task_id": "t-page-failed", "status": "FAILED"}),
        2_000,
    )
    .await;
    let auth = bearer(READ_TOKEN);
    let mut ids = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..10 {
        let mut query = vec![("status", "COMPLETED"), ("since", "1001"), ("limit", "2")];
        if let Some(cursor) = &next {
            query.push(("next", cursor.as_str()));
        }
        let answer = rig
            .webhook
            .handle(get("/tasks", &query, Some(&auth), false))
            .await;
        assert_eq!(answer.status(), 200);
        let page = json_of(&answer);
        let tasks = page["tasks"].as_array().expect("tasks");
        assert!(tasks.len() <= 2);
        for task in tasks {
            assert_eq!(task["status"], json!("COMPLETED"));
            ids.push(task["task_id"].as_str().expect("id").to_owned());
        }
        match page["next"].as_str() {
            Some(cursor) => next = Some(cursor.to_owned()),
            None => break,
        }
    }
    assert_eq!(ids, ["t-page-4", "t-page-3", "t-page-2", "t-page-1"]);
    let answer = rig
        .webhook
        .handle(get("/tasks", &[("status", "failed")], Some(&auth), false))
        .await;
    let page = json_of(&answer);
    assert_eq!(page["tasks"][0]["task_id"], json!("t-page-failed"));
    assert_eq!(page["tasks"][0]["created_at"], json!(2_000));
    assert_eq!(page["next"], Value::Null);
}
