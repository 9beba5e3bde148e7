//! Support shared by the integration tests: one moto_server per test binary, SDK clients
//! for it, and a fresh table or bucket per test so tests never see each other's data.
//!
//! Each test file includes this with `mod support;`; not every file uses every helper.
#![allow(dead_code)]

pub mod fault_proxy;
pub mod musicgpt;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use aws_sdk_s3::config::RequestChecksumCalculation;
use musicgpt_webhook::adapters::dynamodb::{ASSETS_BY_STATE, EVENTS_DUE, TASKS_BY_STATUS};

const READY_TIMEOUT: Duration = Duration::from_secs(10);

struct Moto {
    endpoint: String,
    // Never dropped (it lives in a static): holds the guard's stdin open until this
    // process exits, which is what stops the server.
    _guard: Child,
}

static MOTO: OnceLock<Moto> = OnceLock::new();
static SECOND_MOTO: OnceLock<Moto> = OnceLock::new();

/// The moto URL, e.g. `http://127.0.0.1:40123`; starts the server on first use.
pub fn endpoint() -> String {
    MOTO.get_or_init(|| start_moto("moto_server"))
        .endpoint
        .clone()
}

/// Another moto server of its own, for a benchmark that gives S3 and DynamoDB separate
/// servers as AWS does; starts it on first use.
pub fn second_endpoint() -> String {
    SECOND_MOTO
        .get_or_init(|| start_moto("moto_server-second"))
        .endpoint
        .clone()
}

/// SDK configuration for the emulator. Built by hand rather than with `aws_config::defaults`
/// so that the developer's AWS profile and environment variables cannot leak into tests.
pub async fn sdk_config() -> SdkConfig {
    sdk_config_for(&endpoint())
}

/// The same, for another endpoint in front of moto (the fault proxy).
pub fn sdk_config_for(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "moto",
        )))
        .build()
}

/// A new client each call: SDK clients keep connection pools tied to the tokio runtime that
/// used them, and every `#[tokio::test]` has its own runtime.
pub async fn dynamo() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sdk_config().await)
}

/// S3 client for the emulator: path-style addressing (no bucket DNS names on loopback) and
/// checksums only where the API requires them, as emulators need (no bucket DNS names on loopback).
pub async fn s3() -> aws_sdk_s3::Client {
    s3_for(&sdk_config().await)
}

pub fn s3_for(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Creates a table with the project's key schema (the table contract in docs/design.md) and returns its name.
pub async fn fresh_table() -> String {
    let name = unique_name("table");
    let client = dynamo().await;
    let attribute = |name: &str, kind: ScalarAttributeType| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build()
            .expect("attribute definition")
    };
    let key = |name: &str, key_type| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
            .expect("key schema element")
    };
    // The reconciler's indexes, as template.yaml declares them.
    let index = |name: &str, hash: &str, range: &str, projected: &[&str]| {
        GlobalSecondaryIndex::builder()
            .index_name(name)
            .key_schema(key(hash, KeyType::Hash))
            .key_schema(key(range, KeyType::Range))
            .projection(
                Projection::builder()
                    .projection_type(ProjectionType::Include)
                    .set_non_key_attributes(Some(
                        projected.iter().map(|a| (*a).to_owned()).collect(),
                    ))
                    .build(),
            )
            .build()
            .expect("index")
    };
    client
        .create_table()
        .table_name(&name)
        .attribute_definitions(attribute("pk", ScalarAttributeType::S))
        .attribute_definitions(attribute("sk", ScalarAttributeType::S))
        .attribute_definitions(attribute("status", ScalarAttributeType::S))
        .attribute_definitions(attribute("created_at", ScalarAttributeType::N))
        .attribute_definitions(attribute("state", ScalarAttributeType::S))
        .attribute_definitions(attribute("next_try_at", ScalarAttributeType::N))
        .attribute_definitions(attribute("outbox", ScalarAttributeType::S))
        .attribute_definitions(attribute("due_at", ScalarAttributeType::N))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .global_secondary_indexes(index(
            TASKS_BY_STATUS,
            "status",
            "created_at",
            &["task_id", "item_type"],
        ))
        .global_secondary_indexes(index(
            ASSETS_BY_STATE,
            "state",
            "next_try_at",
            &["task_id", "created_at", "deadline_at"],
        ))
        .global_secondary_indexes(index(
            EVENTS_DUE,
            "outbox",
            "due_at",
            &["task_id", "event_id"],
        ))
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .expect("stream specification"),
        )
        .send()
        .await
        .expect("create table in moto");
    // TTL cannot be set by CreateTable.
    client
        .update_time_to_live()
        .table_name(&name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("expires_at")
                .build()
                .expect("TTL specification"),
        )
        .send()
        .await
        .expect("enable TTL in moto");
    name
}

/// Creates an empty bucket and returns its name.
pub async fn fresh_bucket() -> String {
    fresh_bucket_at(&endpoint()).await
}

/// The same, at another moto server.
pub async fn fresh_bucket_at(endpoint: &str) -> String {
    let name = unique_name("bucket");
    s3_for(&sdk_config_for(endpoint))
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("create bucket in moto");
    name
}

/// An EventBridge bus with a rule that sends every `musicgpt-webhook` event to a new SQS
/// queue, as moto delivers them; returns (bus name, queue URL).
pub async fn fresh_bus_with_queue() -> (String, String) {
    let sdk = sdk_config().await;
    let events = aws_sdk_eventbridge::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let bus = unique_name("bus");
    events
        .create_event_bus()
        .name(&bus)
        .send()
        .await
        .expect("create bus in moto");
    let queue_url = sqs
        .create_queue()
        .queue_name(unique_name("queue"))
        .send()
        .await
        .expect("create queue in moto")
        .queue_url
        .expect("queue URL");
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("queue ARN");
    let rule = unique_name("rule");
    events
        .put_rule()
        .name(&rule)
        .event_bus_name(&bus)
        .event_pattern(r#"{"source":["musicgpt-webhook"]}"#)
        .send()
        .await
        .expect("create rule in moto");
    events
        .put_targets()
        .rule(&rule)
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(queue_arn)
                .build()
                .expect("target"),
        )
        .send()
        .await
        .expect("add the queue as the rule's target");
    (bus, queue_url)
}

/// Every message on the queue now, as the EventBridge events they carry (deleted as read).
pub async fn drain_queue(queue_url: &str) -> Vec<serde_json::Value> {
    let sqs = aws_sdk_sqs::Client::new(&sdk_config().await);
    let mut events = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .expect("receive from moto");
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            return events;
        }
        for message in messages {
            let body = message.body.as_deref().expect("message body");
            events.push(serde_json::from_str(body).expect("an event as JSON"));
            sqs.delete_message()
                .queue_url(queue_url)
                .set_receipt_handle(message.receipt_handle)
                .send()
                .await
                .expect("delete message");
        }
    }
}

/// The Python of the test virtualenv (moto's), which also has jsonschema and standardwebhooks.
pub fn venv_python() -> PathBuf {
    Some(find_moto_server().with_file_name("python"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// Validates each (detail type, detail) against schemas/events/ with Python's jsonschema.
pub fn check_event_schemas(events: &[(String, serde_json::Value)]) {
    let list: Vec<serde_json::Value> = events
        .iter()
        .map(|(t, d)| serde_json::json!({ "detail_type": t, "detail": d }))
        .collect();
    let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "events-{}-{}.json",
        std::process::id(),
        unique_name("check")
    ));
    std::fs::write(&file, serde_json::to_vec(&list).expect("json")).expect("write events");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(venv_python())
        .arg(root.join("tests/support/check_events.py"))
        .arg(root.join("schemas/events"))
        .arg(&file)
        .output()
        .expect("run check_events.py");
    assert!(
        out.status.success(),
        "events do not match their schemas:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs tests/support/verify_webhooks.py on `cases` (each: secret, headers, body, check_time,
/// expect) and fails the test if any verdict differs.
pub fn verify_webhooks(cases: &[serde_json::Value]) {
    let file = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "webhooks-{}-{}.json",
        std::process::id(),
        unique_name("check")
    ));
    std::fs::write(&file, serde_json::to_vec(cases).expect("json")).expect("write cases");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(venv_python())
        .arg(root.join("tests/support/verify_webhooks.py"))
        .arg(&file)
        .output()
        .expect("run verify_webhooks.py");
    assert!(
        out.status.success(),
        "signatures not as expected:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every item of `table`, sorted by (pk, sk) so tests can compare whole tables.
/// The SHA-256 of every quarantined body in the table; panics if the table holds anything
/// else, so a refused request that wrote more than its quarantine item is caught.
pub async fn quarantined(table: &str) -> std::collections::BTreeSet<String> {
    let mut found = std::collections::BTreeSet::new();
    for item in scan_all(table).await {
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(s)) => s.clone(),
            other => panic!("{name} is not a string: {other:?} in {item:?}"),
        };
        assert!(
            text("pk").starts_with("QUARANTINE#") && text("item_type") == "QUARANTINED",
            "not a quarantine item: {item:?}"
        );
        assert!(!text("reason").is_empty(), "{item:?}");
        found.insert(text("sha256"));
    }
    found
}

pub async fn scan_all(table: &str) -> Vec<HashMap<String, AttributeValue>> {
    let client = dynamo().await;
    let mut items = Vec::new();
    let mut start_key = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .set_exclusive_start_key(start_key)
            .send()
            .await
            .expect("scan table in moto");
        items.extend(page.items.unwrap_or_default());
        start_key = page.last_evaluated_key;
        if start_key.is_none() {
            break;
        }
    }
    let key = |item: &HashMap<String, AttributeValue>, name: &str| {
        item.get(name)
            .and_then(|value| value.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    items.sort_by_key(|item| (key(item, "pk"), key(item, "sk")));
    items
}

/// Lowercase, digits and dashes: valid both as a table and as a bucket name. Unique within
/// the process, which is enough because each test binary has its own server.
fn unique_name(kind: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("test-{kind}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn start_moto(log_name: &str) -> Moto {
    let moto_server = find_moto_server();
    // Port 0 asks the OS for a free port; the listener closes before moto binds it.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("find a free loopback port")
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // moto logs every request: keep that out of the test output, but at hand for debugging.
    let log_path = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{log_name}-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).expect("create the moto_server log file");
    let guard_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/moto_guard.py");
    // moto_atomic.py runs moto's app with DynamoDB requests made atomic, as the real
    // service's are; it needs the Python that moto_server was installed into.
    let atomic_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/moto_atomic.py");
    let moto_python = Some(moto_server.with_file_name("python"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("python3"));
    let mut guard = Command::new("python3")
        .arg(&guard_script)
        .arg(&moto_python)
        .arg(&atomic_script)
        .args(["127.0.0.1", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(log.try_clone().expect("clone the log file handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("start python3 {}: {e}", guard_script.display()));

    let deadline = Instant::now() + READY_TIMEOUT;
    while !answers_http(addr) {
        if let Some(status) = guard.try_wait().expect("poll moto_server") {
            panic!(
                "moto_server ({}) exited with {status} before answering; see {}",
                moto_server.display(),
                log_path.display()
            );
        }
        if Instant::now() > deadline {
            panic!(
                "moto_server did not answer on {addr} within {READY_TIMEOUT:?}; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Moto {
        endpoint: format!("http://{addr}"),
        _guard: guard,
    }
}

/// `MOTO_SERVER`, else the project's `.venv` (made by `make venv`), else `PATH`.
fn find_moto_server() -> PathBuf {
    if let Some(path) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if venv.is_file() {
        return venv;
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("moto_server"))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "moto_server not found (not in MOTO_SERVER, {}, or PATH); \
                 run `make test`, which installs it into .venv",
                venv.display()
            )
        })
}

/// True once something on `addr` answers an HTTP request, i.e. moto has finished starting.
fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /moto-api/config HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut status = [0u8; 5];
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_exact(&mut status).is_ok()
        && &status == b"HTTP/"
}
