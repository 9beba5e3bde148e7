//! Nothing lost to a transient fault of any length. On a manual clock (no test sleeps through
//! real hours): outages of the source and of the bucket that last six hours heal with no
//! operator action and with the attempts spaced as the policy says; an inline copy that fails
//! is stored by the next sweep; a file that is really gone fails only after the grace window;
//! one whose deadline passes is EXPIRED and counted at risk before that. Plus the callbacks at
//! the size limit, recorded in every order and redelivered, on both stores.

mod support;

use std::sync::Arc;
use std::time::Duration;

use lambda_http::{Body, Request};
use musicgpt_webhook::adapters::dynamodb::DynamoTable;
use musicgpt_webhook::adapters::memory::{
    ManualClock, MemoryPorts, MemorySink, MemorySource, MemoryTable, SourceFault,
};
use musicgpt_webhook::app::copy::{CopyEngine, CopyOutcome};
use musicgpt_webhook::app::ports::{AssetStore, TaskStore};
use musicgpt_webhook::app::record::Recorder;
use musicgpt_webhook::app::sweep::{SweepReport, SweepSettings, Sweeper};
use musicgpt_webhook::domain::callback::Callback;
use musicgpt_webhook::domain::ids::Id;
use musicgpt_webhook::domain::keys::{AssetKey, KeyPrefix};
use musicgpt_webhook::domain::retry::{FileRetention, RetryPolicy};
use musicgpt_webhook::domain::status::AssetState;
use musicgpt_webhook::domain::token::WebhookTokens;
use musicgpt_webhook::lambda::http::{Ingest, MAX_STORED_BYTES, Webhook};
use musicgpt_webhook::lambda::inline::InlineCopy;
use serde_json::{Value, json};
use tokio::time::Instant;

const NOW: u64 = 1_800_000_000;
const HOUR: u64 = 3_600;
const TOKEN: &str = "test-token-0123456789abcdef";

fn id(text: &str) -> Id {
    Id::parse(text).expect("id")
}

fn url(task: &str, ext: &str) -> String {
    format!("https://lalals.s3.amazonaws.com/conversions/{task}.{ext}")
}

/// The receiver in memory on a clock the test moves.
struct Rig {
    table: MemoryTable,
    source: MemorySource,
    sink: MemorySink,
    clock: Arc<ManualClock>,
    engine: CopyEngine<MemoryPorts>,
    recorder: Recorder<MemoryTable>,
}

impl Rig {
    fn new(policy: RetryPolicy) -> Rig {
        let (table, source, sink) = (
            MemoryTable::new(),
            MemorySource::new(),
            MemorySink::new("owner-bucket"),
        );
        let clock = Arc::new(ManualClock::at(NOW));
        let engine = CopyEngine::<MemoryPorts>::new(
            table.clone(),
            source.clone(),
            sink.clone(),
            policy.clone(),
        )
        .with_clock(clock.clone());
        let recorder = Recorder::new(
            table.clone(),
            KeyPrefix::parse("music").expect("prefix"),
            Duration::from_secs(90 * 86_400),
        )
        .with_file_retention(policy.retention);
        Rig {
            table,
            source,
            sink,
            clock,
            engine,
            recorder,
        }
    }

    /// Records a callback for `task` with an mp3 and a wav, both served by the source.
    async fn task(&self, task: &str) -> Vec<AssetKey> {
        for ext in ["mp3", "wav"] {
            self.source
                .serve(&url(task, ext), format!("{task}.{ext} bytes"));
        }
        let body = json!({
            "task_id": task, "conversion_id": format!("{task}-c"),
            "conversion_path": url(task, "mp3"), "conversion_path_wav": url(task, "wav"),
        });
        let cb = Callback::parse(body.to_string().as_bytes(), None).expect("callback");
        self.recorder
            .record(&cb, self.clock.now())
            .await
            .expect("recorded");
        self.table.pending_in_task(&id(task)).await.expect("assets")
    }

    fn sweeper(&self) -> Sweeper<MemoryPorts> {
        Sweeper::new(self.engine.clone(), SweepSettings::default())
    }

    async fn sweep(&self) -> SweepReport {
        let stop = Instant::now() + Duration::from_secs(30);
        self.sweeper().run(stop).await.expect("sweep")
    }

    async fn states(&self, assets: &[AssetKey]) -> Vec<AssetState> {
        let mut states = Vec::new();
        for asset in assets {
            let item = self.table.get(asset).await.expect("get").expect("item");
            states.push(item.state);
        }
        states
    }

    /// Moves the clock to the soonest next try, as the schedule would reach it.
    async fn to_next_try(&self) -> Option<u64> {
        let next = self
            .table
            .pending_assets()
            .await
            .expect("pending")
            .iter()
            .filter_map(|a| a.next_try_at)
            .min()?;
        self.clock.set(next.max(self.clock.now()));
        Some(next)
    }
}

trait Now {
    fn now(&self) -> u64;
}

impl Now for ManualClock {
    fn now(&self) -> u64 {
        musicgpt_webhook::app::ports::Clock::now_secs(self)
    }
}

/// Sweeps at every due time until nothing is pending or `limit` sweeps ran; returns the times
/// of the sweeps that found work.
async fn sweep_until_settled(rig: &Rig, heal_at: u64, heal: impl Fn(), limit: usize) -> Vec<u64> {
    let mut healed = false;
    let mut times = Vec::new();
    for _ in 0..limit {
        let Some(_) = rig.to_next_try().await else {
            break;
        };
        if !healed && rig.clock.now() >= heal_at {
            heal();
            healed = true;
        }
        times.push(rig.clock.now());
        rig.sweep().await;
    }
    times
}

/// The waits between successive tries, as the policy spaces them.
fn expected_waits(policy: &RetryPolicy, attempts: u32) -> Vec<u64> {
    (1..=attempts)
        .map(|a| policy.backoff(a).as_secs())
        .collect()
}

#[tokio::test]
async fn a_source_down_for_six_hours_heals_by_itself_with_the_tries_spaced_by_policy() {
    let policy = RetryPolicy::default();
    let rig = Rig::new(policy.clone());
    let mut assets = Vec::new();
    for task in ["t-a", "t-b", "t-c"] {
        assets.extend(rig.task(task).await);
    }
    rig.source.set_outage(Some(SourceFault::Unavailable));
    let times =
        sweep_until_settled(&rig, NOW + 6 * HOUR, || rig.source.set_outage(None), 200).await;
    assert_eq!(rig.states(&assets).await, vec![AssetState::Stored; 6]);
    assert_eq!(rig.sink.uploads(), 6, "each file uploaded once");
    // Every asset failed in step, so the sweeps ran exactly at the policy's times: 10 s, 20 s,
    // ... doubling up to the 1 h cap, until the first try after the outage ended.
    let waits: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let expected = expected_waits(&policy, waits.len() as u32);
    assert_eq!(waits, expected, "tries at {times:?}");
    assert!(*times.last().expect("sweeps") >= NOW + 6 * HOUR);
    assert!(waits.iter().all(|w| *w <= HOUR));
    let item = rig.table.get(&assets[0]).await.expect("get").expect("item");
    assert_eq!(
        item.attempts as usize,
        times.len() - 1,
        "one failed attempt per sweep"
    );
    assert!(item.last_error.is_none(), "STORED clears the last error");
}

#[tokio::test]
async fn a_bucket_down_for_six_hours_heals_by_itself_too() {
    let policy = RetryPolicy::default();
    let rig = Rig::new(policy.clone());
    let assets = rig.task("t-s3").await;
    rig.sink.set_outage(true);
    let times = sweep_until_settled(&rig, NOW + 6 * HOUR, || rig.sink.set_outage(false), 200).await;
    assert_eq!(rig.states(&assets).await, vec![AssetState::Stored; 2]);
    let waits: Vec<u64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(waits, expected_waits(&policy, waits.len() as u32));
    assert!(*times.last().expect("sweeps") >= NOW + 6 * HOUR);
    assert_eq!(rig.sink.uploads(), 2);
    // The source was read once per try: the outage was the bucket's.
    assert_eq!(rig.source.opens(), 2 * times.len());
}

fn webhook_request(body: &Value) -> Request {
    let mut request = Request::new(Body::Text(body.to_string()));
    *request.method_mut() = lambda_http::http::Method::POST;
    *request.uri_mut() = format!("/webhook/{TOKEN}").parse().expect("uri");
    request
}

#[tokio::test]
async fn an_inline_copy_that_fails_once_is_stored_by_the_next_sweep() {
    let rig = Rig::new(RetryPolicy::default());
    let task = "t-inline";
    rig.source.serve(&url(task, "mp3"), "bytes");
    rig.source
        .fail_next(&url(task, "mp3"), &[SourceFault::Unavailable]);
    let ingest = Ingest::new(
        WebhookTokens::parse(TOKEN).expect("token"),
        rig.recorder.clone(),
    );
    let webhook = Webhook::with_follow_up(ingest, InlineCopy::new(rig.engine.clone()));
    let body = json!({"task_id": task, "conversion_id": "c1", "conversion_path": url(task, "mp3")});
    let response = webhook.handle(webhook_request(&body)).await;
    assert_eq!(response.status().as_u16(), 200);
    let assets = rig.table.pending_in_task(&id(task)).await.expect("assets");
    assert_eq!(assets.len(), 1, "the failed inline copy leaves it PENDING");
    let item = rig.table.get(&assets[0]).await.expect("get").expect("item");
    assert_eq!((item.state, item.attempts), (AssetState::Pending, 1));

    let early = rig.sweep().await;
    assert_eq!(
        (early.due, early.stored),
        (0, 0),
        "not due before its backoff"
    );
    rig.clock
        .advance(RetryPolicy::default().base_delay.as_secs());
    let report = rig.sweep().await;
    assert_eq!((report.due, report.stored), (1, 1), "{report:?}");
    assert_eq!(rig.states(&assets).await, vec![AssetState::Stored]);
}

#[tokio::test]
async fn a_missing_file_is_retried_within_the_grace_window_and_failed_after_it() {
    let policy = RetryPolicy {
        not_found_grace: Duration::from_secs(HOUR),
        ..RetryPolicy::default()
    };
    let rig = Rig::new(policy);
    let task = "t-404";
    rig.task(task).await;
    // Both files are missing, but the wav appears 40 minutes later (the bucket lagged).
    rig.source.set_outage(Some(SourceFault::NotFound));
    let assets = rig.table.pending_in_task(&id(task)).await.expect("assets");
    let mut tries = 0;
    while rig.to_next_try().await.is_some() && tries < 100 {
        if rig.clock.now() >= NOW + 40 * 60 {
            rig.source.set_outage(None);
            rig.source
                .fail_next(&url(task, "mp3"), &[SourceFault::NotFound; 100]);
        }
        rig.sweep().await;
        tries += 1;
    }
    let mp3 = rig.table.get(&assets[0]).await.expect("get").expect("item");
    let wav = rig.table.get(&assets[1]).await.expect("get").expect("item");
    assert_eq!(
        wav.state,
        AssetState::Stored,
        "retried while the bucket lagged"
    );
    assert_eq!(mp3.state, AssetState::Failed, "gone past the grace window");
    assert!(
        mp3.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("404")
    );
    let failed_at = mp3.next_try_at.map_or(rig.clock.now(), |t| t);
    assert!(
        failed_at >= NOW + HOUR,
        "not failed before the grace window ended"
    );
    let opens = rig.source.opens();
    rig.clock.advance(10 * HOUR);
    let report = rig.sweep().await;
    assert_eq!(report.due, 0, "FAILED is never tried again");
    assert_eq!(rig.source.opens(), opens);
}

#[tokio::test]
async fn an_asset_past_its_deadline_is_expired_with_its_last_error_and_counted_at_risk_first() {
    let policy = RetryPolicy {
        retention: FileRetention {
            wav: Duration::from_secs(2 * 86_400),
            other: Duration::from_secs(3 * 86_400),
            margin: Duration::from_secs(12 * HOUR),
        },
        ..RetryPolicy::default()
    };
    let rig = Rig::new(policy);
    let assets = rig.task("t-late").await;
    rig.sink.set_outage(true);
    let first = rig.sweep().await;
    assert_eq!(first.backlog.pending, 2);
    assert_eq!(first.backlog.at_risk, 0, "days from any deadline");
    // A day and a half later the wav (kept 2 days, less 12 h) is within 24 h of its deadline.
    let mut at_risk_seen = 0;
    let mut expired = 0;
    while rig.to_next_try().await.is_some() {
        let report = rig.sweep().await;
        at_risk_seen = at_risk_seen.max(report.backlog.at_risk);
        expired += report.expired;
    }
    assert_eq!(at_risk_seen, 2, "both counted at risk before they expired");
    assert_eq!(expired, 2);
    let wav = rig.table.get(&assets[1]).await.expect("get").expect("item");
    assert_eq!(wav.state, AssetState::Expired);
    assert!(
        wav.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("outage"),
        "{wav:?}"
    );
    assert_eq!(wav.deadline_at, Some(NOW + 2 * 86_400 - 12 * HOUR));
    let mp3 = rig.table.get(&assets[0]).await.expect("get").expect("item");
    assert_eq!(mp3.state, AssetState::Expired);
    assert_eq!(mp3.deadline_at, Some(NOW + 3 * 86_400 - 12 * HOUR));
    let after = rig.sweep().await;
    assert_eq!((after.backlog.pending, after.backlog.at_risk), (0, 0));
    assert_eq!(rig.sink.uploads(), 0);
    // The engine says the same to any later trigger.
    let again = rig.engine.copy(&assets[1], None).await.expect("copy");
    assert_eq!(again, CopyOutcome::AlreadyExpired);
}

/// The largest callbacks the webhook accepts, all for one conversion: an audio callback with
/// long lyrics, a timestamped-lyrics callback, and a stems callback of 40 files.
fn callbacks_at_the_limit() -> Vec<(&'static str, String)> {
    let task = "t-big";
    let conversion = "c-big";
    let fill = |mut body: Value, field: &str| {
        // Grow `field` until the callback is just under the stored-size limit.
        let base = body.to_string().len();
        let room = MAX_STORED_BYTES - base - 16;
        let text = match &body[field] {
            Value::String(s) => s.clone(),
            _ => String::new(),
        };
        body[field] = json!(format!("{text}{}", "la ".repeat(room / 3)));
        let body = body.to_string();
        assert!(body.len() <= MAX_STORED_BYTES && body.len() > MAX_STORED_BYTES - 64);
        body
    };
    let audio = fill(
        json!({"subtype": "music_ai", "task_id": task, "conversion_id": conversion,
               "conversion_path": url(task, "mp3"), "conversion_path_wav": url(task, "wav"),
               "title": "Big", "lyrics": "", "lyrics_timestamped": "[]", "success": true}),
        "lyrics",
    );
    let lyrics = {
        let line =
            json!({"index": 0, "text": "la la la la la la la la la la", "start": 1, "end": 2});
        // Each line is escaped inside the string that holds the JSON array.
        let one = serde_json::to_string(&line.to_string())
            .expect("escape")
            .len()
            - 2
            + 1;
        let base = json!({"subtype": "lyrics_timestamped", "conversion_id": conversion,
                          "lyrics_timestamped": ""})
        .to_string()
        .len();
        let build = |count: usize| {
            let lines: Vec<Value> = (0..count).map(|_| line.clone()).collect();
            json!({"subtype": "lyrics_timestamped", "conversion_id": conversion,
                   "lyrics_timestamped": Value::Array(lines).to_string()})
            .to_string()
        };
        let mut count = (MAX_STORED_BYTES - base) / one;
        let mut body = build(count);
        while body.len() > MAX_STORED_BYTES {
            count -= 1;
            body = build(count);
        }
        assert!(body.len() > MAX_STORED_BYTES - 256, "{} bytes", body.len());
        body
    };
    let stems: serde_json::Map<String, Value> = (0..40)
        .map(|i| {
            (
                format!("stem{i}"),
                json!(format!("https://lalals.s3.amazonaws.com/stems/{i}.mp3")),
            )
        })
        .collect();
    let stems = fill(
        json!({"task_id": task, "conversion_id": conversion, "audio_url": stems,
               "conversion_cost": "2.5", "notes": ""}),
        "notes",
    );
    vec![("audio", audio), ("lyrics", lyrics), ("stems", stems)]
}

const ORDERS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
];

#[tokio::test]
async fn callbacks_at_the_size_limit_are_recorded_in_memory_in_every_order_and_redelivered() {
    for order in ORDERS {
        let callbacks = callbacks_at_the_limit();
        let ordered = order.iter().map(|i| callbacks[*i].clone()).collect();
        record_ordered(MemoryTable::new(), ordered).await;
    }
}

#[tokio::test]
async fn callbacks_at_the_size_limit_are_recorded_in_dynamodb_in_every_order_and_redelivered() {
    for order in ORDERS {
        let store = DynamoTable::new(support::dynamo().await, support::fresh_table().await);
        let callbacks = callbacks_at_the_limit();
        let ordered = order.iter().map(|i| callbacks[*i].clone()).collect();
        record_ordered(store, ordered).await;
    }
}

/// Every callback once in the given order, then each again: all recorded, every redelivery a
/// duplicate (200), every item under DynamoDB's limit.
async fn record_ordered<T: TaskStore>(store: T, callbacks: Vec<(&'static str, String)>) {
    let recorder = Recorder::new(
        store.clone(),
        KeyPrefix::default(),
        Duration::from_secs(86_400),
    );
    let ingest = Ingest::new(WebhookTokens::parse(TOKEN).expect("token"), recorder);
    let webhook = Webhook::new(ingest);
    let names: Vec<&str> = callbacks.iter().map(|(n, _)| *n).collect();
    for round in ["first", "again"] {
        for (name, body) in &callbacks {
            let mut request = Request::new(Body::Text(body.clone()));
            *request.method_mut() = lambda_http::http::Method::POST;
            *request.uri_mut() = format!("/webhook/{TOKEN}").parse().expect("uri");
            let response = webhook.handle(request).await;
            let status = response.status().as_u16();
            let answer: Value = match response.body() {
                Body::Text(text) => serde_json::from_str(text).unwrap_or(Value::Null),
                _ => Value::Null,
            };
            assert_eq!(status, 200, "{round} {name} in order {names:?}: {answer}");
            if round == "again" {
                assert_eq!(answer["outcome"], "duplicate", "{name} in order {names:?}");
            }
        }
    }
    let items = store.task_items(&id("t-big")).await.expect("items");
    let sks: Vec<&str> = items
        .iter()
        .filter_map(|i| i.get("sk").and_then(Value::as_str))
        .collect();
    for sk in [
        "TASK",
        "CONVERSION#c-big",
        "LYRICS#c-big",
        "LYRICS_TIMESTAMPED#c-big",
    ] {
        assert!(sks.contains(&sk), "{sk} missing from {sks:?}");
    }
    let count = |prefix: &str| sks.iter().filter(|sk| sk.starts_with(prefix)).count();
    assert_eq!(count("ASSET#"), 42, "40 stems, the mp3 and the wav");
    assert_eq!(count("CALLBACK#"), 3);
    // No item holds two large texts: each stays far under DynamoDB's 400 KB.
    // As DynamoDB counts: names plus values, strings by their bytes.
    let size = |item: &serde_json::Map<String, Value>| -> usize {
        item.iter()
            .map(|(name, value)| {
                name.len()
                    + match value {
                        Value::String(s) => s.len(),
                        other => other.to_string().len(),
                    }
            })
            .sum()
    };
    let sizes: Vec<usize> = items.iter().map(size).collect();
    assert!(sizes.iter().all(|s| *s < 200 * 1024), "{sizes:?}");
    let conversion = items
        .iter()
        .find(|i| i.get("sk").and_then(Value::as_str) == Some("CONVERSION#c-big"))
        .expect("conversion");
    assert!(conversion.get("lyrics").is_none() && conversion.get("lyrics_timestamped").is_none());
}

#[tokio::test]
async fn a_body_that_is_not_json_is_quarantined_with_the_right_token_only() {
    let table = MemoryTable::new();
    let recorder = Recorder::new(
        table.clone(),
        KeyPrefix::default(),
        Duration::from_secs(86_400),
    );
    let webhook = Webhook::new(Ingest::new(
        WebhookTokens::parse(TOKEN).expect("token"),
        recorder,
    ));
    let post = |path: &str| {
        let mut request = Request::new(Body::Text("<html>not json</html>".into()));
        *request.method_mut() = lambda_http::http::Method::POST;
        *request.uri_mut() = path.parse().expect("uri");
        request
    };
    let refused = webhook
        .handle(post("/webhook/wrong-token-0123456789"))
        .await;
    assert_eq!(refused.status().as_u16(), 404);
    assert!(table.all_items().is_empty(), "a bad token stores nothing");
    let bad = webhook.handle(post(&format!("/webhook/{TOKEN}"))).await;
    assert_eq!(bad.status().as_u16(), 400);
    let items = table.all_items();
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0];
    assert_eq!(item["item_type"], "QUARANTINED");
    assert_eq!(item["body"], "<html>not json</html>");
    assert!(
        item["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not valid JSON"))
    );
    assert!(
        item["pk"]
            .as_str()
            .is_some_and(|pk| pk.starts_with("QUARANTINE#"))
    );
    assert!(item["expires_at"].as_u64() > item["received_at"].as_u64());
}
