//! The metrics a function reports for a known sequence of requests, read back from the
//! embedded-metric-format lines it writes: names, units, dimensions and values.

use std::collections::BTreeMap;
use std::time::Duration;

use lambda_http::{Body, Request};
use musicgpt_webhook::adapters::memory::{
    MemoryPorts, MemorySink, MemorySource, MemoryTable, SourceFault,
};
use musicgpt_webhook::app::copy::CopyEngine;
use musicgpt_webhook::app::record::Recorder;
use musicgpt_webhook::domain::keys::KeyPrefix;
use musicgpt_webhook::domain::retry::RetryPolicy;
use musicgpt_webhook::domain::token::WebhookTokens;
use musicgpt_webhook::lambda::http::{Ingest, Webhook};
use musicgpt_webhook::lambda::inline::InlineCopy;
use musicgpt_webhook::lambda::metrics::{Metrics, NAMESPACE};
use serde_json::{Value, json};

const TOKEN: &str = "test-token-0123456789abcdef";

fn request(method: &str, path: &str, body: &str) -> Request {
    let mut request = Request::new(Body::Text(body.to_owned()));
    *request.method_mut() = method.parse().expect("method");
    *request.uri_mut() = path.parse().expect("uri");
    request
}

/// (metric, sorted dimension pairs) -> (unit, values)
type Seen = BTreeMap<(String, Vec<(String, String)>), (Option<String>, Vec<f64>)>;

/// Reads EMF documents: each names its metrics and dimensions in `_aws`, values at top level.
fn parse(lines: &str) -> Seen {
    let mut seen = Seen::new();
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        let doc: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE, "{line}");
        assert!(doc["_aws"]["Timestamp"].as_u64().is_some(), "{line}");
        let names: Vec<String> = directive["Dimensions"][0]
            .as_array()
            .expect("dimensions")
            .iter()
            .filter_map(|d| d.as_str().map(str::to_owned))
            .collect();
        let mut dimensions: Vec<(String, String)> = names
            .iter()
            .map(|n| (n.clone(), doc[n].as_str().unwrap_or_default().to_owned()))
            .collect();
        dimensions.sort();
        for metric in directive["Metrics"].as_array().expect("metrics") {
            let name = metric["Name"].as_str().expect("name").to_owned();
            let unit = metric["Unit"].as_str().map(str::to_owned);
            let values: Vec<f64> = match &doc[&name] {
                Value::Array(values) => values.iter().filter_map(Value::as_f64).collect(),
                value => value.as_f64().into_iter().collect(),
            };
            let entry = seen
                .entry((name, dimensions.clone()))
                .or_insert((unit, Vec::new()));
            entry.1.extend(values);
        }
    }
    seen
}

fn value(seen: &Seen, name: &str, dims: &[(&str, &str)]) -> (Option<String>, Vec<f64>) {
    let mut dimensions: Vec<(String, String)> = dims
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .chain([("function".to_owned(), "webhook".to_owned())])
        .collect();
    dimensions.sort();
    seen.get(&(name.to_owned(), dimensions.clone()))
        .cloned()
        .unwrap_or_else(|| panic!("no {name} {dimensions:?} in {:#?}", seen.keys()))
}

#[tokio::test]
async fn a_known_sequence_of_callbacks_reports_the_expected_metrics() {
    let metrics = Metrics::init("webhook");
    let table = MemoryTable::new();
    let (source, sink) = (MemorySource::new(), MemorySink::new("bucket"));
    let url = "https://lalals.s3.amazonaws.com/conversions/m1.mp3";
    source.serve(url, vec![7u8; 4_096]);
    let failing = "https://lalals.s3.amazonaws.com/conversions/m2.mp3";
    source.fail_next(failing, &[SourceFault::Unavailable]);
    // The webhook records with the wall clock, so the engine keeps it too.
    let engine = CopyEngine::<MemoryPorts>::new(
        table.clone(),
        source.clone(),
        sink.clone(),
        RetryPolicy::default(),
    );
    let recorder = Recorder::new(table, KeyPrefix::default(), Duration::from_secs(86_400));
    let ingest = Ingest::new(WebhookTokens::parse(TOKEN).expect("token"), recorder);
    let webhook = Webhook::with_follow_up(ingest, InlineCopy::new(engine));
    let path = format!("/webhook/{TOKEN}");
    let song = json!({"task_id": "m-1", "conversion_id": "c1", "conversion_path": url}).to_string();
    let other =
        json!({"task_id": "m-2", "conversion_id": "c2", "conversion_path": failing}).to_string();
    let lyrics = json!({"subtype": "lyrics_timestamped", "task_id": "m-1", "conversion_id": "c1",
                        "lyrics_timestamped": "[]"})
    .to_string();
    let answers = [
        webhook.handle(request("POST", &path, &song)).await,
        webhook.handle(request("POST", &path, &song)).await,
        webhook.handle(request("POST", &path, &lyrics)).await,
        webhook.handle(request("POST", &path, &other)).await,
        webhook
            .handle(request("POST", "/webhook/wrong-token-0123456789", &song))
            .await,
        webhook.handle(request("GET", &path, "")).await,
        webhook.handle(request("POST", &path, "not json")).await,
    ];
    let statuses: Vec<u16> = answers.iter().map(|a| a.status().as_u16()).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 404, 405, 400]);

    let mut out = Vec::new();
    metrics.flush_to(&mut out).expect("flush");
    let seen = parse(&String::from_utf8(out).expect("utf-8"));
    let count = |name: &str, dims: &[(&str, &str)]| value(&seen, name, dims).1.iter().sum::<f64>();
    assert_eq!(
        count("Callbacks", &[("kind", "audio"), ("outcome", "recorded")]),
        2.0
    );
    assert_eq!(
        count("Callbacks", &[("kind", "audio"), ("outcome", "duplicate")]),
        1.0
    );
    assert_eq!(
        count(
            "Callbacks",
            &[("kind", "lyrics_timestamped"), ("outcome", "recorded")]
        ),
        1.0
    );
    for reason in ["token", "method", "body"] {
        assert_eq!(
            count("RefusedRequests", &[("reason", reason)]),
            1.0,
            "{reason}"
        );
    }
    assert_eq!(count("QuarantinedBodies", &[]), 1.0);
    // The first delivery stored m1 (its duplicate found nothing left to copy); m2's source
    // answered 503.
    assert_eq!(count("Copies", &[("outcome", "stored")]), 1.0);
    assert_eq!(count("Copies", &[("outcome", "retry_later")]), 1.0);
    let (unit, bytes) = value(&seen, "BytesCopied", &[]);
    assert_eq!(
        (unit.as_deref(), bytes.iter().sum::<f64>()),
        (Some("Bytes"), 4_096.0)
    );
    let (unit, durations) = value(&seen, "CopyDuration", &[]);
    assert_eq!(
        (unit.as_deref(), durations.len()),
        (Some("Milliseconds"), 1)
    );
    let (unit, waited) = value(&seen, "ReceivedToStored", &[]);
    assert_eq!((unit.as_deref(), waited.len()), (Some("Seconds"), 1));
    assert!(
        waited[0] <= 2.0,
        "stored within the same invocation: {waited:?}"
    );
    let (unit, _) = value(&seen, "CopyThroughput", &[]);
    assert_eq!(unit.as_deref(), Some("Megabits/Second"));
    assert!(
        seen.keys()
            .all(|(_, dims)| dims.iter().all(|(k, _)| k != "task_id")),
        "no task ids as dimensions"
    );
    // A second flush reports nothing new: figures are per invocation.
    let mut again = Vec::new();
    metrics.flush_to(&mut again).expect("flush");
    let again = parse(&String::from_utf8(again).expect("utf-8"));
    assert!(
        again.values().all(|(_, v)| v.iter().all(|x| *x == 0.0)),
        "{again:#?}"
    );
}
