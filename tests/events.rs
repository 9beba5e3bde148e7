//! Events for the owner's application: exactly the expected events for a whole Music AI task
//! delivered in shuffled orders with duplicates, none before its files are stored, at least
//! once with stable ids when the function "crashes" between storing and publishing or the bus
//! fails, a late file's `Task Updated`, a failed task's `Task Failed`; every detail validated
//! against schemas/events/ by Python's jsonschema. The last test runs the real adapters:
//! DynamoDB, S3 and EventBridge in moto, with a rule that delivers to an SQS queue.
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use musicgpt_webhook::adapters::dynamodb::DynamoTable;
use musicgpt_webhook::adapters::eventbridge::EventBridgeBus;
use musicgpt_webhook::adapters::memory::{
    ManualClock, MemoryBus, MemoryPorts, MemorySink, MemorySource, MemoryTable,
};
use musicgpt_webhook::adapters::s3::S3Sink;
use musicgpt_webhook::app::announce::{
    Announcer, BoxFuture, CopyEvents, EventSettings, NoForwarder,
};
use musicgpt_webhook::app::copy::{CopyEngine, copy_all};
use musicgpt_webhook::app::ports::{
    AssetStore, BusEvent, EventBus, EventLog, Ports, TaskIndex, TaskStore,
};
use musicgpt_webhook::app::record::{Outcome, Recorder};
use musicgpt_webhook::domain::callback::Callback;
use musicgpt_webhook::domain::events::{DetailType, FileView, event_id};
use musicgpt_webhook::domain::ids::Id;
use musicgpt_webhook::domain::keys::KeyPrefix;
use musicgpt_webhook::domain::plan::ItemWrite;
use musicgpt_webhook::domain::retry::RetryPolicy;
use musicgpt_webhook::error::Result;
use musicgpt_webhook::lambda::http::AfterRecord;
use musicgpt_webhook::lambda::inline::InlineCopy;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

const NOW: u64 = 1_774_596_501;
const TASK: &str = "4fc2cdba-005d-4d14-a208-5fb02a2809da";
const SONGS: [&str; 2] = [
    "05092d5c-f8b1-4c96-a4a3-45bc00de6268",
    "52fcd3b6-3925-41ed-b4c6-aee17a29e40b",
];
const CALLBACKS: [&str; 5] = [
    "http-music-ai-audio-1.json",
    "http-music-ai-audio-2.json",
    "http-music-ai-lyrics-1.json",
    "http-music-ai-lyrics-2.json",
    "http-music-ai-cover.json",
];
/// Shuffled orders, each with duplicate deliveries (indexes into CALLBACKS).
const ORDERS: [&[usize]; 4] = [
    &[4, 2, 0, 0, 3, 1, 4],
    &[0, 1, 2, 3, 4, 1],
    &[3, 2, 1, 4, 2, 0, 0],
    &[1, 4, 4, 0, 3, 2],
];

fn body_of(name: &str) -> String {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let event: Value = serde_json::from_str(&text).expect("event JSON");
    event["body"].as_str().expect("a body").to_owned()
}

fn id(text: &str) -> Id {
    Id::parse(text).expect("valid id")
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The task's five files as MusicGPT's buckets serve them (by URL), with their S3 keys.
fn media() -> Vec<(String, String, Vec<u8>)> {
    let mut files = Vec::new();
    for (n, song) in SONGS.iter().enumerate() {
        for ext in ["mp3", "wav"] {
            files.push((
                format!("https://lalals.s3.amazonaws.com/conversions/{song}.{ext}"),
                format!("music/{TASK}/{song}.{ext}"),
                format!("{ext} of song {n} ")
                    .repeat(1000 + n * 10)
                    .into_bytes(),
            ));
        }
    }
    files.push((
        format!("https://musicgpt.s3.amazonaws.com/img-gen-pipeline/{TASK}.png"),
        format!("music/{TASK}/cover.png"),
        b"\x89PNG cover".repeat(300),
    ));
    files
}

/// The bus as the owner sees it, checking at each publish that every file the event shows
/// STORED is already in the bucket with that hash: nothing is announced early.
#[derive(Clone)]
struct CheckingBus {
    bus: MemoryBus,
    sink: MemorySink,
    early: Arc<Mutex<Vec<String>>>,
}

impl CheckingBus {
    fn new(sink: &MemorySink) -> CheckingBus {
        CheckingBus {
            bus: MemoryBus::new(),
            sink: sink.clone(),
            early: Arc::default(),
        }
    }

    fn early(&self) -> Vec<String> {
        self.early.lock().expect("lock").clone()
    }
}

impl EventBus for CheckingBus {
    async fn publish(&self, events: &[BusEvent]) -> Result<Vec<std::result::Result<(), String>>> {
        for event in events {
            let detail: Value = serde_json::from_str(&event.detail).expect("detail JSON");
            let files = detail["files"]
                .as_array()
                .into_iter()
                .flatten()
                .chain(detail.get("asset"));
            for file in files.filter(|f| f["state"] == json!("STORED")) {
                let key = file["key"].as_str().expect("key");
                let stored = self.sink.object(key).map(|o| o.sha256);
                if stored.as_deref() != file["sha256"].as_str() {
                    self.early.lock().expect("lock").push(format!(
                        "{} announced {key} before it was stored",
                        event.detail_type
                    ));
                }
            }
        }
        self.bus.publish(events).await
    }
}

type MemoryAnnouncer = Announcer<MemoryTable, CheckingBus, NoForwarder>;

struct Stack {
    table: MemoryTable,
    sink: MemorySink,
    bus: CheckingBus,
    clock: Arc<ManualClock>,
    announcer: Arc<MemoryAnnouncer>,
    /// Announces after each callback, as the webhook's does with events on.
    recorder: Recorder<MemoryTable>,
    /// Records only: a delivery that "crashes" before announcing.
    plain_recorder: Recorder<MemoryTable>,
    engine: CopyEngine<MemoryPorts>,
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::from_secs(1),
        ..RetryPolicy::default()
    }
}

fn stack() -> Stack {
    stack_with(|announcer| announcer as Arc<dyn CopyEvents>)
}

/// A stack whose copy engine announces through `hook` (a crashing one, in the fault tests).
fn stack_with(hook: impl FnOnce(Arc<MemoryAnnouncer>) -> Arc<dyn CopyEvents>) -> Stack {
    let table = MemoryTable::new();
    let source = MemorySource::new();
    for (url, _, bytes) in media() {
        source.serve(&url, bytes);
    }
    let sink = MemorySink::new("owner-bucket");
    let bus = CheckingBus::new(&sink);
    let clock = Arc::new(ManualClock::at(NOW));
    let announcer = Arc::new(
        Announcer::new(table.clone(), Some(bus.clone()), None::<NoForwarder>)
            .with_clock(clock.clone()),
    );
    let engine = CopyEngine::<MemoryPorts>::new(table.clone(), source, sink.clone(), policy())
        .with_clock(clock.clone())
        .with_events(hook(Arc::clone(&announcer)));
    let recorder = Recorder::new(
        table.clone(),
        KeyPrefix::parse("music").expect("prefix"),
        Duration::from_secs(86_400),
    );
    Stack {
        plain_recorder: recorder.clone(),
        recorder: recorder.with_events(Arc::clone(&announcer) as Arc<dyn CopyEvents>),
        table,
        sink,
        bus,
        clock,
        announcer,
        engine,
    }
}

impl Stack {
    /// Records without announcing (the worker dies right after).
    async fn record(&self, body: &str) -> Outcome {
        let callback = Callback::parse(body.as_bytes(), None).expect("a callback");
        self.plain_recorder
            .record(&callback, self.clock.now())
            .await
            .expect("recorded")
    }

    /// As the webhook in `COPY_MODE=inline` with events on: record (and announce), copy.
    async fn deliver(&self, body: &str) {
        let callback = Callback::parse(body.as_bytes(), None).expect("a callback");
        let outcome = self
            .recorder
            .record(&callback, self.clock.now())
            .await
            .expect("recorded");
        InlineCopy::new(self.engine.clone())
            .after_record(&outcome, None)
            .await;
    }

    fn published(&self) -> Vec<(String, Value)> {
        self.bus
            .bus
            .published()
            .into_iter()
            .map(|e| {
                (
                    e.detail_type.to_owned(),
                    serde_json::from_str(&e.detail).expect("detail JSON"),
                )
            })
            .collect()
    }

    async fn sweep(&self) {
        self.announcer
            .sweep(Instant::now() + Duration::from_secs(30))
            .await
            .expect("sweep");
    }

    async fn due(&self) -> usize {
        self.table
            .due_events(u64::MAX, 100)
            .await
            .expect("due")
            .len()
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

/// The ids of the events a whole Music AI task owes: five files, one settlement.
fn expected_ids() -> BTreeSet<String> {
    let mut ids: BTreeSet<String> = [
        format!("ASSET#{}#mp3", SONGS[0]),
        format!("ASSET#{}#wav", SONGS[0]),
        format!("ASSET#{}#mp3", SONGS[1]),
        format!("ASSET#{}#wav", SONGS[1]),
        format!("ASSET#{TASK}#cover"),
    ]
    .iter()
    .map(|sk| event_id(DetailType::AssetStored, TASK, sk))
    .collect();
    ids.insert(event_id(DetailType::TaskCompleted, TASK, "settled"));
    ids
}

fn by_type(events: &[(String, Value)]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (t, _) in events {
        *counts.entry(t.clone()).or_default() += 1;
    }
    counts
}

/// The ids a Music AI task owes when its callbacks come in `order` (indexes into CALLBACKS),
/// each copied as it comes: if the album cover comes after both songs, the task has settled
/// without it and the cover is a file stored later (its Asset Stored and a Task Updated).
fn expected_ids_for(order: &[usize]) -> BTreeSet<String> {
    let first = |i: usize| order.iter().position(|&n| n == i).expect("delivered");
    let mut ids = expected_ids();
    if first(4) > first(0).max(first(1)) {
        ids.insert(event_id(
            DetailType::TaskUpdated,
            TASK,
            &format!("ASSET#{TASK}#cover"),
        ));
    }
    ids
}

fn check_completed(detail: &Value, files: usize) {
    assert_eq!(detail["task_id"], json!(TASK));
    assert_eq!(detail["conversion_type"], json!("Music AI"));
    assert_eq!(detail["status"], json!("COMPLETED"));
    let conversions = detail["conversions"].as_array().expect("conversions");
    assert_eq!(conversions.len(), 2);
    for conversion in conversions {
        assert_eq!(conversion["title"], json!("Neon Rivers"));
        assert!(conversion["duration_seconds"].as_f64().expect("duration") > 100.0);
        assert!(
            conversion["lyrics"]
                .as_str()
                .expect("lyrics")
                .contains("Neon rivers")
        );
    }
    let listed = detail["files"].as_array().expect("files");
    assert_eq!(listed.len(), files);
    let files = listed;
    let want: BTreeMap<String, String> = media()
        .into_iter()
        .map(|(_, key, bytes)| (key, sha256(&bytes)))
        .collect();
    for file in files {
        let key = file["key"].as_str().expect("key");
        assert_eq!(file["state"], json!("STORED"), "{file}");
        assert_eq!(file["bucket"], json!("owner-bucket"));
        assert_eq!(file["sha256"].as_str(), want.get(key).map(String::as_str));
        assert!(file["size"].as_u64().expect("size") > 0);
        assert!(file["content_type"].as_str().expect("type").contains('/'));
    }
}

#[tokio::test]
async fn a_music_ai_task_in_any_order_with_duplicates_announces_exactly_its_events() {
    let mut all = Vec::new();
    for order in ORDERS {
        let stack = stack();
        let bodies: Vec<String> = CALLBACKS.iter().map(|n| body_of(n)).collect();
        for &index in order {
            stack.deliver(&bodies[index]).await;
            stack.clock.advance(1);
        }
        let published = stack.published();
        let ids: Vec<String> = published
            .iter()
            .map(|(_, d)| d["event_id"].as_str().expect("id").to_owned())
            .collect();
        let expected = expected_ids_for(order);
        let cover_late = expected.len() == 7;
        assert_eq!(
            ids.len(),
            expected.len(),
            "order {order:?}: {:?}",
            by_type(&published)
        );
        assert_eq!(
            ids.iter().cloned().collect::<BTreeSet<_>>(),
            expected,
            "order {order:?}"
        );
        let mut types = BTreeMap::from([("Asset Stored".into(), 5), ("Task Completed".into(), 1)]);
        if cover_late {
            types.insert("Task Updated".into(), 1);
        }
        assert_eq!(by_type(&published), types, "order {order:?}");
        assert!(stack.bus.early().is_empty(), "{:?}", stack.bus.early());
        let at = |t: &str| {
            published
                .iter()
                .position(|(p, _)| p == t)
                .expect("published")
        };
        check_completed(
            &published[at("Task Completed")].1,
            if cover_late { 4 } else { 5 },
        );
        // The settlement comes after the Asset Stored of every file it shows.
        let stored_before = published[..at("Task Completed")]
            .iter()
            .filter(|(t, _)| t == "Asset Stored")
            .count();
        assert_eq!(stored_before, if cover_late { 4 } else { 5 });
        if cover_late {
            let (_, updated) = &published[at("Task Updated")];
            assert_eq!(
                updated["asset"]["key"],
                json!(format!("music/{TASK}/cover.png"))
            );
            check_completed(updated, 5);
        }
        // Everything delivered: the sweep finds nothing, and publishes nothing again.
        assert_eq!(stack.due().await, 0);
        stack.clock.advance(3_600);
        stack.sweep().await;
        assert_eq!(stack.published().len(), expected.len());
        all.extend(published);
    }
    support::check_event_schemas(&all);
}

/// A copy engine hook that stores each file's event with its STORED mark, then "crashes": the
/// task is never announced by the worker that stored it.
struct CrashAfterStore(Arc<MemoryAnnouncer>);

impl CopyEvents for CrashAfterStore {
    fn stored<'a>(
        &'a self,
        task: &'a Id,
        file: FileView,
        now: u64,
    ) -> BoxFuture<'a, Result<Vec<ItemWrite>>> {
        self.0.stored(task, file, now)
    }

    fn settled<'a>(&'a self, _task: &'a Id) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

#[tokio::test]
async fn a_crash_between_storing_and_publishing_only_delays_the_events() {
    let stack = stack_with(|announcer| Arc::new(CrashAfterStore(announcer)));
    for name in CALLBACKS {
        // Recorded and copied; then the function dies before announcing anything.
        let outcome = stack.record(&body_of(name)).await;
        InlineCopy::new(stack.engine.clone())
            .after_record(&outcome, None)
            .await;
    }
    assert_eq!(stack.sink.keys().len(), 5, "every file stored");
    assert!(stack.published().is_empty());
    assert_eq!(
        stack.due().await,
        5,
        "each stored file's event is in the outbox"
    );
    // Within the grace period the sweep leaves them to their writer.
    stack.sweep().await;
    assert!(stack.published().is_empty());
    // Then the bus is down: the sweep records the settlement, publishes nothing.
    stack.clock.advance(31);
    stack.bus.bus.set_outage(true);
    stack.sweep().await;
    assert!(stack.published().is_empty());
    assert_eq!(stack.due().await, 6);
    // Back, but refusing two entries: four get through, the other two on the next sweep.
    stack.bus.bus.set_outage(false);
    stack.bus.bus.refuse_next(2);
    stack.clock.advance(61);
    stack.sweep().await;
    assert_eq!(stack.published().len(), 4);
    stack.clock.advance(61);
    stack.sweep().await;
    let published = stack.published();
    let ids: Vec<String> = published
        .iter()
        .map(|(_, d)| d["event_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 6, "{:?}", by_type(&published));
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), expected_ids());
    assert!(stack.bus.early().is_empty(), "{:?}", stack.bus.early());
    assert_eq!(stack.due().await, 0);
    stack.clock.advance(3_600);
    stack.sweep().await;
    assert_eq!(stack.published().len(), 6, "nothing delivered twice");
    support::check_event_schemas(&published);
}

#[tokio::test]
async fn a_file_stored_after_settling_gets_its_own_event_and_a_task_updated() {
    let stack = stack();
    let first = json!({"task_id": "t-late", "conversion_id": "ca", "status": "COMPLETED",
        "conversion_path": format!("https://lalals.s3.amazonaws.com/conversions/{}.mp3", SONGS[0])});
    stack.deliver(&first.to_string()).await;
    let types: Vec<String> = stack.published().into_iter().map(|(t, _)| t).collect();
    assert_eq!(types, ["Asset Stored", "Task Completed"]);
    stack.clock.advance(10);
    let late = json!({"task_id": "t-late", "conversion_id": "cb", "status": "COMPLETED",
        "conversion_path": format!("https://lalals.s3.amazonaws.com/conversions/{}.mp3", SONGS[1])});
    stack.deliver(&late.to_string()).await;
    let published = stack.published();
    let types: Vec<&str> = published.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        types,
        [
            "Asset Stored",
            "Task Completed",
            "Asset Stored",
            "Task Updated"
        ]
    );
    let updated = &published[3].1;
    assert_eq!(updated["asset"]["key"], json!("music/t-late/cb.mp3"));
    assert_eq!(updated["files"].as_array().map(Vec::len), Some(2));
    // A redelivery of either changes nothing.
    stack.deliver(&late.to_string()).await;
    stack.deliver(&first.to_string()).await;
    assert_eq!(stack.published().len(), 4);
    support::check_event_schemas(&published);
}

#[tokio::test]
async fn a_failed_task_is_announced_once_as_failed() {
    let stack = stack();
    let failure = body_of("http-failure.json");
    stack.deliver(&failure).await;
    stack.deliver(&failure).await;
    let published = stack.published();
    assert_eq!(published.len(), 1, "{published:?}");
    let (detail_type, detail) = &published[0];
    assert_eq!(detail_type, "Task Failed");
    assert!(!detail["reason"].as_str().expect("reason").is_empty());
    support::check_event_schemas(&published);
}

/// The real adapters end to end: DynamoDB and S3 in moto, events through moto's EventBridge
/// to an SQS queue, read back as the owner's consumer would.
#[tokio::test]
async fn eventbridge_delivers_the_events_to_a_queue() {
    #[derive(Clone)]
    struct Real;
    impl Ports for Real {
        type Tasks = DynamoTable;
        type Assets = DynamoTable;
        type Source = MemorySource;
        type Sink = S3Sink;
        type Api = musicgpt_webhook::adapters::musicgpt::MusicGptApi;
    }
    let sdk = support::sdk_config().await;
    let table = DynamoTable::new(support::dynamo().await, support::fresh_table().await);
    let bucket = support::fresh_bucket().await;
    let (bus_name, queue) = support::fresh_bus_with_queue().await;
    let source = MemorySource::new();
    for (url, _, bytes) in media() {
        source.serve(&url, bytes);
    }
    let bus = EventBridgeBus::new(aws_sdk_eventbridge::Client::new(&sdk), &bus_name);
    let announcer = Arc::new(Announcer::new(
        table.clone(),
        Some(bus),
        None::<NoForwarder>,
    ));
    let engine = CopyEngine::<Real>::new(
        table.clone(),
        source,
        S3Sink::new(support::s3_for(&sdk), &bucket),
        policy(),
    )
    .with_events(Arc::clone(&announcer) as Arc<dyn CopyEvents>);
    let recorder = Recorder::new(
        table.clone(),
        KeyPrefix::parse("music").expect("prefix"),
        Duration::from_secs(86_400),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    for &index in &[2usize, 4, 0, 0, 3, 1] {
        let callback =
            Callback::parse(body_of(CALLBACKS[index]).as_bytes(), None).expect("callback");
        let outcome = recorder.record(&callback, now).await.expect("recorded");
        let task = outcome.task_id().cloned();
        if let Some(task) = task {
            let pending = table.pending_in_task(&task).await.expect("pending");
            copy_all(
                &engine,
                pending,
                Instant::now() + Duration::from_secs(60),
                4,
            )
            .await;
            announcer.announce(&task).await.expect("announced");
        }
    }
    let received = support::drain_queue(&queue).await;
    let mut details = Vec::new();
    let mut ids = BTreeSet::new();
    let s3 = support::s3_for(&sdk);
    for event in &received {
        assert_eq!(event["source"], json!("musicgpt-webhook"));
        let detail_type = event["detail-type"]
            .as_str()
            .expect("detail-type")
            .to_owned();
        let detail = event["detail"].clone();
        ids.insert(detail["event_id"].as_str().expect("id").to_owned());
        if detail_type == "Asset Stored" {
            let key = detail["asset"]["key"].as_str().expect("key");
            let object = s3
                .get_object()
                .bucket(&bucket)
                .key(key)
                .send()
                .await
                .expect("the announced object is in the bucket");
            let bytes = object.body.collect().await.expect("body").into_bytes();
            assert_eq!(
                detail["asset"]["sha256"].as_str(),
                Some(sha256(&bytes).as_str())
            );
            assert_eq!(
                event["resources"],
                json!([format!("arn:aws:s3:::{bucket}/{key}")])
            );
        }
        details.push((detail_type, detail));
    }
    assert_eq!(ids, expected_ids(), "{:?}", by_type(&details));
    assert_eq!(received.len(), 6, "{:?}", by_type(&details));
    assert!(
        table
            .due_events(u64::MAX, 10)
            .await
            .expect("due")
            .is_empty()
    );
    let page = table
        .list_tasks(&musicgpt_webhook::domain::listing::TaskQuery {
            status: musicgpt_webhook::domain::status::TaskStatus::Completed,
            since: 0,
            limit: 10,
            after: None,
        })
        .await
        .expect("listed");
    assert_eq!(page.tasks.len(), 1);
    let _ = TaskStore::task_items(&table, &id(TASK))
        .await
        .expect("items");
    support::check_event_schemas(&details);
}

/// The real adapters with EventBridge unreachable (a closed port) while the files are stored:
/// every event stays in the table's outbox, and a later sweep over a reachable bus delivers
/// each one once, under the ids the first attempt used.
#[tokio::test]
async fn an_unreachable_bus_only_delays_the_events_over_the_real_adapters() {
    #[derive(Clone)]
    struct Real;
    impl Ports for Real {
        type Tasks = DynamoTable;
        type Assets = DynamoTable;
        type Source = MemorySource;
        type Sink = S3Sink;
        type Api = musicgpt_webhook::adapters::musicgpt::MusicGptApi;
    }
    let sdk = support::sdk_config().await;
    let table = DynamoTable::new(support::dynamo().await, support::fresh_table().await);
    let bucket = support::fresh_bucket().await;
    let (bus_name, queue) = support::fresh_bus_with_queue().await;
    let source = MemorySource::new();
    for (url, _, bytes) in media() {
        source.serve(&url, bytes);
    }
    let settings = EventSettings {
        grace: Duration::ZERO,
        publish_retry: Duration::ZERO,
        ..EventSettings::default()
    };
    let nowhere = support::sdk_config_for("http://127.0.0.1:1");
    let down = Arc::new(
        Announcer::new(
            table.clone(),
            Some(EventBridgeBus::new(
                aws_sdk_eventbridge::Client::from_conf(
                    aws_sdk_eventbridge::config::Builder::from(&nowhere)
                        .retry_config(aws_sdk_eventbridge::config::retry::RetryConfig::disabled())
                        .build(),
                ),
                &bus_name,
            )),
            None::<NoForwarder>,
        )
        .with_settings(settings.clone()),
    );
    let engine = CopyEngine::<Real>::new(
        table.clone(),
        source,
        S3Sink::new(support::s3_for(&sdk), &bucket),
        policy(),
    )
    .with_events(Arc::clone(&down) as Arc<dyn CopyEvents>);
    let recorder = Recorder::new(
        table.clone(),
        KeyPrefix::parse("music").expect("prefix"),
        Duration::from_secs(86_400),
    )
    .with_events(Arc::clone(&down) as Arc<dyn CopyEvents>);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    for name in CALLBACKS {
        let callback = Callback::parse(body_of(name).as_bytes(), None).expect("callback");
        let outcome = recorder.record(&callback, now).await.expect("recorded");
        if let Some(task) = outcome.task_id() {
            let pending = table.pending_in_task(task).await.expect("pending");
            copy_all(
                &engine,
                pending,
                Instant::now() + Duration::from_secs(60),
                4,
            )
            .await;
        }
    }
    assert!(
        support::drain_queue(&queue).await.is_empty(),
        "nothing got through"
    );
    // In this order the cover comes after both songs: the task settles without it.
    let expected = expected_ids_for(&[0, 1, 2, 3, 4]);
    let due = table.due_events(u64::MAX, 20).await.expect("due");
    assert_eq!(
        due.len(),
        7,
        "the five files, the settlement and the update wait"
    );
    let recorded: BTreeSet<String> = due.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(recorded, expected);
    // The bus is back: the sweep delivers them.
    let up = Announcer::new(
        table.clone(),
        Some(EventBridgeBus::new(
            aws_sdk_eventbridge::Client::new(&sdk),
            &bus_name,
        )),
        None::<NoForwarder>,
    )
    .with_settings(settings);
    let report = up
        .sweep(Instant::now() + Duration::from_secs(30))
        .await
        .expect("sweep");
    assert_eq!(report.published, 7, "{report:?}");
    let received = support::drain_queue(&queue).await;
    let ids: Vec<String> = received
        .iter()
        .map(|e| e["detail"]["event_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 7);
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), expected);
    assert!(
        table
            .due_events(u64::MAX, 20)
            .await
            .expect("due")
            .is_empty()
    );
    up.sweep(Instant::now() + Duration::from_secs(30))
        .await
        .expect("sweep");
    assert!(
        support::drain_queue(&queue).await.is_empty(),
        "nothing twice"
    );
}

/// A bus that hangs: the callback's answer waits at most the announcement budget, and the
/// event stays in the outbox for the sweep.
#[tokio::test]
async fn a_hanging_bus_does_not_hold_the_answer() {
    #[derive(Clone)]
    struct Hanging;
    impl EventBus for Hanging {
        async fn publish(
            &self,
            _events: &[BusEvent],
        ) -> Result<Vec<std::result::Result<(), String>>> {
            tokio::time::sleep(Duration::from_secs(3_600)).await;
            Ok(Vec::new())
        }
    }
    let table = MemoryTable::new();
    let announcer = Arc::new(Announcer::new(
        table.clone(),
        Some(Hanging),
        None::<NoForwarder>,
    ));
    let recorder = Recorder::new(table.clone(), KeyPrefix::default(), Duration::from_secs(60))
        .with_events(announcer as Arc<dyn CopyEvents>);
    let started = Instant::now();
    let failure = Callback::parse(body_of("http-failure.json").as_bytes(), None).expect("cb");
    let outcome = recorder.record(&failure, NOW).await.expect("recorded");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(outcome, Outcome::Recorded { .. }), "{outcome:?}");
    assert_eq!(table.due_events(u64::MAX, 10).await.expect("due").len(), 1);
}
