//! One suite, two stores: every scenario here runs against the in-memory table (in-process,
//! milliseconds) and against the DynamoDB adapter on moto_server (the real SDK), so the fake
//! cannot drift from the real one. The rules of recording (any order converges, duplicates
//! change nothing, parked callbacks are adopted, an older status never wins), the copy engine's
//! leases and its retry policy are all checked here, on both.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use musicgpt_webhook::adapters::dynamodb::DynamoTable;
use musicgpt_webhook::adapters::memory::{
    ManualClock, MemorySink, MemorySource, MemoryTable, SourceFault,
};
use musicgpt_webhook::adapters::musicgpt::MusicGptApi;
use musicgpt_webhook::app::copy::{CopyEngine, CopyOutcome};
use musicgpt_webhook::app::ports::{
    AssetStore, AudioSource, EventLog, ObjectSink, ObjectSpec, Ports, TaskIndex, TaskStore,
};
use musicgpt_webhook::app::record::{Outcome, Recorder};
use musicgpt_webhook::domain::answer::submission_callback;
use musicgpt_webhook::domain::api::Submitted;
use musicgpt_webhook::domain::asset::{StoredCopy, Unclaimed};
use musicgpt_webhook::domain::callback::Callback;
use musicgpt_webhook::domain::events::{
    DetailType, FileView, NewEvent, TaskView, event_id, recorded_events,
};
use musicgpt_webhook::domain::ids::Id;
use musicgpt_webhook::domain::keys::{AssetKey, KeyPrefix};
use musicgpt_webhook::domain::listing::TaskQuery;
use musicgpt_webhook::domain::retry::RetryPolicy;
use musicgpt_webhook::domain::status::AssetState;
use musicgpt_webhook::domain::status::TaskStatus;
use serde_json::{Map, Value, json};

const NOW: u64 = 1_774_596_501;
const MUSIC_AI_TASK: &str = "4fc2cdba-005d-4d14-a208-5fb02a2809da";
const C1: &str = "05092d5c-f8b1-4c96-a4a3-45bc00de6268";
const C2: &str = "52fcd3b6-3925-41ed-b4c6-aee17a29e40b";

/// A task store that is also the asset store, as both adapters are.
trait Store: TaskStore + AssetStore + EventLog + TaskIndex {}
impl<S: TaskStore + AssetStore + EventLog + TaskIndex> Store for S {}

/// The copy engine over a store under test, with files and bucket in memory.
#[derive(Clone)]
struct On<S>(PhantomData<S>);

impl<S: Store> Ports for On<S> {
    type Tasks = S;
    type Assets = S;
    type Source = MemorySource;
    type Sink = MemorySink;
    type Api = MusicGptApi;
}

/// Each scenario takes a maker of fresh, empty stores.
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(async || musicgpt_webhook::adapters::memory::MemoryTable::new()).await;
                }
            )*
        }
        mod dynamodb {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::fresh_dynamo_table).await;
                }
            )*
        }
    };
}

on_both_stores!(
    callbacks_in_any_order_converge_to_identical_items,
    lyrics_before_their_song_are_parked_then_adopted,
    an_older_status_never_overwrites_a_newer_one,
    twenty_concurrent_duplicates_write_one_set_of_items,
    a_lease_is_exclusive_until_settled_or_expired,
    claims_say_why_they_were_refused,
    due_work_is_found_by_status_and_next_try,
    server_errors_are_retried_then_fail_after_max_attempts,
    a_passing_failure_is_retried_until_stored,
    backoff_makes_the_asset_wait_by_the_clock,
    answers_that_cannot_change_fail_at_once,
    an_earlier_complete_copy_is_taken_not_uploaded_again,
    only_a_later_claim_looks_for_an_earlier_copy,
    a_seen_asset_is_uploaded_once_however_many_try_it_at_once,
    a_stale_image_takes_the_plain_path,
    checkpoints_are_kept_by_name,
    a_stored_mark_and_its_event_are_one_write,
    due_events_leave_the_index_once_delivered,
    tasks_are_listed_by_status_newest_first_page_by_page,
);

async fn fresh_dynamo_table() -> DynamoTable {
    DynamoTable::new(support::dynamo().await, support::fresh_table().await)
}

fn recorder<S: Store>(store: S) -> Recorder<S> {
    Recorder::new(
        store,
        KeyPrefix::parse("music").expect("prefix"),
        Duration::from_secs(90 * 86_400),
    )
}

fn id(text: &str) -> Id {
    Id::parse(text).expect("valid id")
}

/// The callback body inside an event of `events/`, as MusicGPT sent it.
fn body_of(name: &str) -> String {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let event: Value = serde_json::from_str(&text).expect("event JSON");
    event["body"].as_str().expect("event has a body").to_owned()
}

fn callback(body: &str) -> Callback {
    Callback::parse(body.as_bytes(), Some("application/json")).expect("a valid callback")
}

async fn record<S: Store>(recorder: &Recorder<S>, body: &str) -> Outcome {
    recorder
        .record(&callback(body), NOW)
        .await
        .expect("recorded")
}

type Item = Map<String, Value>;

/// What a reader of a task sees: its partition by sort key, and where its conversions link.
async fn task_view<S: Store>(store: &S, task: &str) -> (BTreeMap<String, Item>, Vec<Option<Id>>) {
    let items = store.task_items(&id(task)).await.expect("task items");
    let by_sk = items
        .into_iter()
        .map(|item| (text(&item, "sk").to_owned(), item))
        .collect();
    let mut links = Vec::new();
    for conversion in [C1, C2] {
        links.push(store.linked_task(&id(conversion)).await.expect("link"));
    }
    (by_sk, links)
}

fn text<'a>(item: &'a Item, name: &str) -> &'a str {
    item.get(name)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{name} is not a string in {item:?}"))
}

fn number(item: &Item, name: &str) -> f64 {
    item.get(name)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{name} is not a number in {item:?}"))
}

fn count_with_prefix(items: &BTreeMap<String, Item>, sk_prefix: &str) -> usize {
    items.keys().filter(|sk| sk.starts_with(sk_prefix)).count()
}

const MUSIC_AI_CALLBACKS: [&str; 5] = [
    "http-music-ai-audio-1.json",
    "http-music-ai-audio-2.json",
    "http-music-ai-lyrics-1.json",
    "http-music-ai-lyrics-2.json",
    "http-music-ai-cover.json",
];

/// Twelve orders of the five callbacks, with lyrics first, cover first and audio last among them.
const ORDERS: [[usize; 5]; 12] = [
    [0, 1, 2, 3, 4],
    [4, 3, 2, 1, 0],
    [2, 3, 0, 1, 4],
    [2, 0, 3, 1, 4],
    [4, 2, 0, 3, 1],
    [3, 4, 1, 2, 0],
    [1, 2, 4, 0, 3],
    [2, 3, 4, 0, 1],
    [0, 4, 2, 1, 3],
    [3, 0, 2, 4, 1],
    [4, 0, 1, 2, 3],
    [2, 4, 3, 1, 0],
];

async fn callbacks_in_any_order_converge_to_identical_items<S: Store>(fresh: impl AsyncFn() -> S) {
    let mut reference = None;
    for order in ORDERS {
        let store = fresh().await;
        let recorder = recorder(store.clone());
        for index in order {
            record(&recorder, &body_of(MUSIC_AI_CALLBACKS[index])).await;
        }
        let view = task_view(&store, MUSIC_AI_TASK).await;
        match &reference {
            None => reference = Some(view),
            Some(expected) => assert_eq!(&view, expected, "order {order:?} differs"),
        }
    }
    let (items, links) = reference.expect("at least one order");
    assert_eq!(
        links,
        vec![Some(id(MUSIC_AI_TASK)), Some(id(MUSIC_AI_TASK))]
    );
    assert_eq!(number(&items["TASK"], "callback_count"), 5.0);
    assert_eq!(count_with_prefix(&items, "CALLBACK#"), 5);
    assert_eq!(
        count_with_prefix(&items, "ASSET#"),
        5,
        "2 mp3, 2 wav, 1 cover"
    );
    for (conversion, lyrics_event) in [
        (C1, "http-music-ai-lyrics-1.json"),
        (C2, "http-music-ai-lyrics-2.json"),
    ] {
        let item = &items[&format!("CONVERSION#{conversion}")];
        let timestamped = &items[&format!("LYRICS_TIMESTAMPED#{conversion}")];
        let sent: Value = serde_json::from_str(&body_of(lyrics_event)).expect("json");
        let expected: Value =
            serde_json::from_str(sent["lyrics_timestamped"].as_str().expect("string"))
                .expect("lyrics");
        assert_eq!(
            timestamped["lyrics_timestamped"], expected,
            "the lyrics callback wins on {conversion}"
        );
        assert_eq!(text(item, "status"), "COMPLETED");
    }
}

async fn lyrics_before_their_song_are_parked_then_adopted<S: Store>(fresh: impl AsyncFn() -> S) {
    let store = fresh().await;
    let recorder = recorder(store.clone());
    let parked = record(&recorder, &body_of("http-music-ai-lyrics-1.json")).await;
    assert!(matches!(parked, Outcome::Parked { .. }), "{parked:?}");
    assert!(
        store
            .task_items(&id(MUSIC_AI_TASK))
            .await
            .expect("items")
            .is_empty(),
        "nothing is written under a task not known yet"
    );
    assert_eq!(store.parked_bodies(&id(C1)).await.expect("parked").len(), 1);
    record(&recorder, &body_of("http-music-ai-audio-1.json")).await;
    let (items, links) = task_view(&store, MUSIC_AI_TASK).await;
    assert_eq!(links[0], Some(id(MUSIC_AI_TASK)));
    let lyrics = &items[&format!("LYRICS_TIMESTAMPED#{C1}")];
    assert!(
        matches!(lyrics.get("lyrics_timestamped"), Some(Value::Array(l)) if !l.is_empty()),
        "{lyrics:?}"
    );
    assert_eq!(
        count_with_prefix(&items, "CALLBACK#"),
        2,
        "the parked one adopted"
    );
    let again = record(&recorder, &body_of("http-music-ai-lyrics-1.json")).await;
    assert!(matches!(again, Outcome::Duplicate { .. }), "{again:?}");
}

async fn an_older_status_never_overwrites_a_newer_one<S: Store>(fresh: impl AsyncFn() -> S) {
    let store = fresh().await;
    let recorder = recorder(store.clone());
    let at = |status: &str, updated: &str, msg: &str| {
        format!(
            r#"{{"task_id":"t-order","status":"{status}","status_msg":"{msg}","updatedAt":"{updated}"}}"#
        )
    };
    let status_now = async || {
        let items = store.task_items(&id("t-order")).await.expect("items");
        let task = items
            .iter()
            .find(|i| text(i, "sk") == "TASK")
            .expect("task item");
        (
            text(task, "status").to_owned(),
            text(task, "status_message").to_owned(),
        )
    };
    record(&recorder, &at("PROCESSING", "2026-01-01T00:02:00Z", "b")).await;
    record(&recorder, &at("IN_QUEUE", "2026-01-01T00:01:00Z", "a")).await;
    assert_eq!(status_now().await, ("PROCESSING".into(), "b".into()));
    record(&recorder, &at("COMPLETED", "2026-01-01T00:03:00Z", "c")).await;
    record(&recorder, &at("PROCESSING", "2026-01-01T00:04:00Z", "late")).await;
    assert_eq!(status_now().await, ("COMPLETED".into(), "c".into()));
}

async fn twenty_concurrent_duplicates_write_one_set_of_items<S: Store>(fresh: impl AsyncFn() -> S) {
    let single = fresh().await;
    record(
        &recorder(single.clone()),
        &body_of("http-music-ai-audio-1.json"),
    )
    .await;
    let expected = task_view(&single, MUSIC_AI_TASK).await;

    let store = fresh().await;
    let recorder = Arc::new(recorder(store.clone()));
    let body = Arc::new(body_of("http-music-ai-audio-1.json"));
    let handles: Vec<_> = (0..20)
        .map(|_| {
            let (recorder, body) = (recorder.clone(), body.clone());
            tokio::spawn(async move { record(&recorder, &body).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for handle in handles {
        outcomes.push(handle.await.expect("delivery task"));
    }
    let recorded = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Recorded { .. }))
        .count();
    let duplicates = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Duplicate { .. }))
        .count();
    assert_eq!((recorded, duplicates), (1, 19));
    let view = task_view(&store, MUSIC_AI_TASK).await;
    assert_eq!(view, expected, "duplicates changed the items");
    assert_eq!(number(&view.0["TASK"], "callback_count"), 1.0);
}

/// A recorded task with one mp3 at `url`; returns its asset.
async fn one_asset<S: Store>(store: &S, task: &str, url: &str) -> AssetKey {
    let body = json!({"task_id": task, "conversion_id": "c1", "conversion_path": url}).to_string();
    record(&recorder(store.clone()), &body).await;
    let assets = store.pending_in_task(&id(task)).await.expect("assets");
    assert_eq!(assets.len(), 1, "{assets:?}");
    assets[0].clone()
}

fn stored_copy() -> StoredCopy<'static> {
    StoredCopy {
        bucket: "b",
        s3_key: "music/t/c1.mp3",
        size: 3,
        etag: "\"e\"",
        sha256: "abc",
    }
}

async fn a_lease_is_exclusive_until_settled_or_expired<S: Store>(fresh: impl AsyncFn() -> S) {
    let store = fresh().await;
    let asset = one_asset(&store, "t-lease", "https://lalals.s3.amazonaws.com/a.mp3").await;
    let first = store
        .claim(&asset, "a", NOW, NOW + 60)
        .await
        .expect("claim");
    let item = first.expect("the first claim wins");
    assert_eq!(
        (item.lease_owner.as_deref(), item.lease_until),
        (Some("a"), Some(NOW + 60))
    );
    let second = store
        .claim(&asset, "b", NOW, NOW + 60)
        .await
        .expect("claim");
    assert_eq!(second, Err(Unclaimed::Leased(NOW + 60)));
    assert!(
        !store
            .mark_stored(&asset, "b", &stored_copy(), NOW)
            .await
            .expect("write"),
        "only the lease holder settles"
    );
    // The lease expires: another worker takes over, and the first one's result is refused.
    let takeover = store
        .claim(&asset, "b", NOW + 61, NOW + 120)
        .await
        .expect("claim");
    assert!(takeover.is_ok(), "{takeover:?}");
    assert!(
        !store
            .mark_retry(&asset, "a", 1, "late", NOW + 200, NOW + 62)
            .await
            .expect("write")
    );
    assert!(
        store
            .mark_retry(&asset, "b", 1, "503", NOW + 200, NOW + 62)
            .await
            .expect("write")
    );
    let item = store.get(&asset).await.expect("get").expect("item");
    assert_eq!(item.state, AssetState::Pending);
    assert_eq!(
        (item.attempts, item.next_try_at, item.lease_owner.as_deref()),
        (1, Some(NOW + 200), None)
    );
    assert_eq!(item.last_error.as_deref(), Some("503"));
    assert_eq!(
        store
            .claim(&asset, "c", NOW + 100, NOW + 160)
            .await
            .expect("claim"),
        Err(Unclaimed::NotDue(NOW + 200))
    );
    store
        .claim(&asset, "c", NOW + 200, NOW + 260)
        .await
        .expect("claim")
        .expect("due now");
    assert!(store.release(&asset, "c").await.expect("release"));
    assert!(
        !store.release(&asset, "c").await.expect("release"),
        "a released lease is gone"
    );
    store
        .claim(&asset, "d", NOW + 200, NOW + 260)
        .await
        .expect("claim")
        .expect("free again");
    assert!(
        store
            .mark_stored(&asset, "d", &stored_copy(), NOW + 201)
            .await
            .expect("write")
    );
    let item = store.get(&asset).await.expect("get").expect("item");
    assert_eq!(item.state, AssetState::Stored);
    assert_eq!(
        (item.lease_owner, item.next_try_at, item.last_error),
        (None, None, None)
    );
    assert!(
        store
            .pending_in_task(&id("t-lease"))
            .await
            .expect("pending")
            .is_empty()
    );
}

async fn claims_say_why_they_were_refused<S: Store>(fresh: impl AsyncFn() -> S) {
    let store = fresh().await;
    let missing = AssetKey {
        pk: "TASK#nobody".into(),
        sk: "ASSET#c1#mp3".into(),
    };
    assert_eq!(
        store
            .claim(&missing, "a", NOW, NOW + 60)
            .await
            .expect("claim"),
        Err(Unclaimed::Missing)
    );
    assert_eq!(store.get(&missing).await.expect("get"), None);
    let stored = one_asset(&store, "t-stored", "https://lalals.s3.amazonaws.com/s.mp3").await;
    store
        .claim(&stored, "a", NOW, NOW + 60)
        .await
        .expect("claim")
        .expect("won");
    assert!(
        store
            .mark_stored(&stored, "a", &stored_copy(), NOW)
            .await
            .expect("write")
    );
    assert_eq!(
        store
            .claim(&stored, "b", NOW, NOW + 60)
            .await
            .expect("claim"),
        Err(Unclaimed::Stored)
    );
    let failed = one_asset(&store, "t-failed", "https://lalals.s3.amazonaws.com/f.mp3").await;
    store
        .claim(&failed, "a", NOW, NOW + 60)
        .await
        .expect("claim")
        .expect("won");
    assert!(
        store
            .mark_failed(&failed, "a", 3, "404", NOW)
            .await
            .expect("write")
    );
    assert_eq!(
        store
            .claim(&failed, "b", NOW, NOW + 60)
            .await
            .expect("claim"),
        Err(Unclaimed::Failed)
    );
    let item = store.get(&failed).await.expect("get").expect("item");
    assert_eq!(
        (item.state, item.attempts, item.last_error.as_deref()),
        (AssetState::Failed, 3, Some("404"))
    );
}

async fn due_work_is_found_by_status_and_next_try<S: Store>(fresh: impl AsyncFn() -> S) {
    let store = fresh().await;
    let recorder = recorder(store.clone());
    let submitted = Submitted::from_answer(json!({
        "success": true, "task_id": "t-submitted", "conversion_id_1": "s1",
        "conversion_id_2": "s2", "eta": 120
    }))
    .expect("a preliminary answer");
    let registration =
        submission_callback(&submitted, "MUSIC_AI", &[id("s1"), id("s2")]).expect("registration");
    recorder
        .record(&registration, NOW)
        .await
        .expect("registered");
    let pending = one_asset(&store, "t-pending", "https://lalals.s3.amazonaws.com/p.mp3").await;
    let stored = one_asset(&store, "t-done", "https://lalals.s3.amazonaws.com/d.mp3").await;
    store
        .claim(&stored, "a", NOW, NOW + 60)
        .await
        .expect("claim")
        .expect("won");
    assert!(
        store
            .mark_stored(&stored, "a", &stored_copy(), NOW)
            .await
            .expect("write")
    );
    let due = async |cutoff: u64| {
        let mut tasks: Vec<String> = store
            .due_tasks(cutoff)
            .await
            .expect("due")
            .iter()
            .map(|t| t.to_string())
            .collect();
        tasks.sort();
        tasks
    };
    assert!(due(NOW - 1).await.is_empty());
    assert_eq!(due(NOW).await, ["t-pending", "t-submitted"]);
    store
        .claim(&pending, "a", NOW, NOW + 60)
        .await
        .expect("claim")
        .expect("won");
    assert!(
        store
            .mark_retry(&pending, "a", 1, "503", NOW + 600, NOW)
            .await
            .expect("write")
    );
    assert_eq!(due(NOW + 599).await, ["t-submitted"]);
    assert_eq!(due(NOW + 600).await, ["t-pending", "t-submitted"]);
    // A status from MusicGPT takes the task off the SUBMITTED list.
    record(
        &recorder,
        r#"{"task_id":"t-submitted","status":"IN_PROGRESS"}"#,
    )
    .await;
    assert_eq!(due(NOW + 600).await, ["t-pending"]);
    assert_eq!(
        store
            .task_conversion_type(&id("t-submitted"))
            .await
            .expect("type")
            .as_deref(),
        Some("MUSIC_AI")
    );
    assert_eq!(
        store
            .task_conversion_type(&id("t-nobody"))
            .await
            .expect("type"),
        None
    );
    assert_eq!(
        store.linked_task(&id("s2")).await.expect("link"),
        Some(id("t-submitted"))
    );
}

/// An engine over the store under test, files and bucket in memory, on a clock the test moves.
struct Rig<S: Store> {
    store: S,
    source: MemorySource,
    sink: MemorySink,
    clock: Arc<ManualClock>,
    engine: CopyEngine<On<S>>,
}

async fn rig<S: Store>(fresh: impl AsyncFn() -> S, policy: RetryPolicy) -> Rig<S> {
    let store = fresh().await;
    let (source, sink) = (MemorySource::new(), MemorySink::new("owner-bucket"));
    let clock = Arc::new(ManualClock::at(NOW));
    let engine = CopyEngine::<On<S>>::new(store.clone(), source.clone(), sink.clone(), policy)
        .with_clock(clock.clone());
    Rig {
        store,
        source,
        sink,
        clock,
        engine,
    }
}

fn policy(max_attempts: u32, base_delay: Duration) -> RetryPolicy {
    RetryPolicy {
        base_delay,
        max_delay: base_delay * 10,
        ..RetryPolicy::with_max_attempts(max_attempts)
    }
}

const URL: &str = "https://lalals.s3.amazonaws.com/conversions/c1.mp3";

async fn server_errors_are_retried_then_fail_after_max_attempts<S: Store>(
    fresh: impl AsyncFn() -> S,
) {
    let rig = rig(fresh, policy(3, Duration::ZERO)).await;
    rig.source.fail_next(URL, &[SourceFault::Unavailable; 3]);
    let asset = one_asset(&rig.store, "t-500", URL).await;
    for attempt in 1..=2 {
        let outcome = rig.engine.copy(&asset, None).await.expect("copy");
        assert!(
            matches!(outcome, CopyOutcome::RetryAt { attempts, .. } if attempts == attempt),
            "{outcome:?}"
        );
        let item = rig.store.get(&asset).await.expect("get").expect("item");
        assert_eq!((item.state, item.attempts), (AssetState::Pending, attempt));
        assert!(item.last_error.unwrap_or_default().contains("503"));
        assert!(item.lease_owner.is_none());
    }
    let outcome = rig.engine.copy(&asset, None).await.expect("copy");
    assert!(
        matches!(outcome, CopyOutcome::Failed { attempts: 3, .. }),
        "{outcome:?}"
    );
    let item = rig.store.get(&asset).await.expect("get").expect("item");
    assert_eq!((item.state, item.attempts), (AssetState::Failed, 3));
    let again = rig.engine.copy(&asset, None).await.expect("copy");
    assert_eq!(again, CopyOutcome::AlreadyFailed);
    assert_eq!(rig.source.opens(), 3);
    assert_eq!(rig.sink.uploads(), 0);
}

async fn a_passing_failure_is_retried_until_stored<S: Store>(fresh: impl AsyncFn() -> S) {
    let rig = rig(fresh, policy(5, Duration::ZERO)).await;
    rig.source.serve(URL, vec![7u8; 5000]);
    rig.source.fail_next(URL, &[SourceFault::Unavailable; 2]);
    let asset = one_asset(&rig.store, "t-flaky", URL).await;
    for _ in 0..2 {
        let outcome = rig.engine.copy(&asset, None).await.expect("copy");
        assert!(
            matches!(outcome, CopyOutcome::RetryAt { .. }),
            "{outcome:?}"
        );
    }
    let outcome = rig.engine.copy(&asset, None).await.expect("copy");
    assert!(
        matches!(outcome, CopyOutcome::Stored { size: 5000, .. }),
        "{outcome:?}"
    );
    let item = rig.store.get(&asset).await.expect("get").expect("item");
    assert_eq!((item.state, item.attempts), (AssetState::Stored, 2));
    let object = rig.sink.object(&item.s3_key).expect("stored object");
    assert_eq!(object.body.len(), 5000);
    assert_eq!(object.content_type, "audio/mpeg");
    assert_eq!(
        object.metadata.get("source-url").map(String::as_str),
        Some(URL)
    );
    assert_eq!(rig.sink.uploads(), 1);
}

async fn backoff_makes_the_asset_wait_by_the_clock<S: Store>(fresh: impl AsyncFn() -> S) {
    let rig = rig(fresh, policy(5, Duration::from_secs(30))).await;
    rig.source.serve(URL, vec![1u8; 10]);
    rig.source.fail_next(URL, &[SourceFault::Unavailable; 2]);
    let asset = one_asset(&rig.store, "t-backoff", URL).await;
    let outcome = rig.engine.copy(&asset, None).await.expect("copy");
    assert!(
        matches!(outcome, CopyOutcome::RetryAt { next_try_at, .. } if next_try_at == NOW + 30),
        "{outcome:?}"
    );
    rig.clock.advance(29);
    let outcome = rig.engine.copy(&asset, None).await.expect("copy");
    assert_eq!(
        outcome,
        CopyOutcome::NotDue {
            next_try_at: NOW + 30
        }
    );
    rig.clock.advance(1);
    let outcome = rig.engine.copy(&asset, None).await.expect("copy");
    assert!(
        matches!(outcome, CopyOutcome::RetryAt { next_try_at, attempts: 2, .. } if next_try_at == NOW + 30 + 60),
        "the wait doubles: {outcome:?}"
    );
    rig.clock.advance(60);
    let outcome = rig.engine.copy(&asset, None).await.expect("copy");
    assert!(matches!(outcome, CopyOutcome::Stored { .. }), "{outcome:?}");
    assert_eq!(rig.source.opens(), 3, "no request while the asset waited");
}

async fn answers_that_cannot_change_fail_at_once<S: Store>(fresh: impl AsyncFn() -> S) {
    let rig = rig(fresh, policy(5, Duration::ZERO)).await;
    // No file at all: believed only once the grace window (MusicGPT's bucket may lag its
    // callback) has passed, then FAILED without further tries.
    let asset = one_asset(&rig.store, "t-gone", URL).await;
    let outcome = rig.engine.copy(&asset, None).await.expect("copy");
    assert!(
        matches!(outcome, CopyOutcome::RetryAt { attempts: 1, .. }),
        "within the grace window: {outcome:?}"
    );
    rig.clock
        .advance(RetryPolicy::default().not_found_grace.as_secs());
    let outcome = rig.engine.copy(&asset, None).await.expect("copy");
    assert!(
        matches!(outcome, CopyOutcome::Failed { attempts: 2, .. }),
        "{outcome:?}"
    );
    let item = rig.store.get(&asset).await.expect("get").expect("item");
    assert_eq!(item.state, AssetState::Failed);
    assert!(item.last_error.unwrap_or_default().contains("404"));
    assert_eq!(
        rig.engine.copy(&asset, None).await.expect("copy"),
        CopyOutcome::AlreadyFailed
    );
    assert_eq!(rig.source.opens(), 2);
}

async fn an_earlier_complete_copy_is_taken_not_uploaded_again<S: Store>(
    fresh: impl AsyncFn() -> S,
) {
    let rig = rig(fresh, policy(5, Duration::ZERO)).await;
    rig.source.serve(URL, b"abc".to_vec());
    let asset = one_asset(&rig.store, "t-earlier", URL).await;
    // An earlier attempt claimed the asset (its lease has run out since), uploaded the whole
    // file, then lost its STORED write-back.
    let item = rig
        .store
        .claim(&asset, "earlier-worker", NOW, NOW)
        .await
        .expect("claim")
        .expect("claimable");
    assert_eq!(item.claims, 1);
    let mut download = rig.source.open(URL).await.expect("download");
    let spec = ObjectSpec {
        key: item.s3_key.clone(),
        content_type: "audio/mpeg".into(),
        metadata: HashMap::from([("source-url".to_owned(), URL.to_owned())]),
    };
    let earlier = rig
        .sink
        .write(&spec, &mut download, None)
        .await
        .expect("earlier upload");
    let outcome = rig.engine.copy(&asset, None).await.expect("copy");
    assert_eq!(
        outcome,
        CopyOutcome::Stored {
            size: 3,
            sha256: earlier.sha256.clone()
        }
    );
    assert_eq!(
        rig.sink.uploads(),
        1,
        "the earlier copy is taken, not uploaded again"
    );
    assert_eq!(rig.source.opens(), 1, "nothing downloaded twice");
    assert_eq!(
        rig.sink.looks(),
        1,
        "the second claim looked for an earlier copy"
    );
    let item = rig.store.get(&asset).await.expect("get").expect("item");
    assert_eq!((item.state, item.claims), (AssetState::Stored, 2));
}

async fn only_a_later_claim_looks_for_an_earlier_copy<S: Store>(fresh: impl AsyncFn() -> S) {
    let rig = rig(fresh, policy(5, Duration::ZERO)).await;
    rig.source.serve(URL, b"abc".to_vec());
    rig.source.fail_next(URL, &[SourceFault::Unavailable]);
    let asset = one_asset(&rig.store, "t-first", URL).await;
    let first = rig.engine.copy(&asset, None).await.expect("copy");
    assert!(
        matches!(first, CopyOutcome::RetryAt { attempts: 1, .. }),
        "{first:?}"
    );
    assert_eq!(
        rig.sink.looks(),
        0,
        "no attempt came before the first claim"
    );
    let second = rig.engine.copy(&asset, None).await.expect("copy");
    assert!(
        matches!(second, CopyOutcome::Stored { size: 3, .. }),
        "{second:?}"
    );
    assert_eq!(
        (rig.sink.looks(), rig.sink.uploads()),
        (1, 1),
        "the second claim looked first"
    );
    let item = rig.store.get(&asset).await.expect("get").expect("item");
    assert_eq!((item.state, item.claims), (AssetState::Stored, 2));
}

async fn a_seen_asset_is_uploaded_once_however_many_try_it_at_once<S: Store>(
    fresh: impl AsyncFn() -> S,
) {
    let rig = rig(fresh, policy(5, Duration::ZERO)).await;
    rig.source.serve(URL, b"seen".to_vec());
    let asset = one_asset(&rig.store, "t-seen", URL).await;
    let seen = rig.store.get(&asset).await.expect("get").expect("item");
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (engine, seen) = (rig.engine.clone(), seen.clone());
        attempts.spawn(async move { engine.copy_seen(&seen, None).await.expect("copy") });
    }
    let outcomes = attempts.join_all().await;
    let stored = outcomes
        .iter()
        .filter(|o| matches!(o, CopyOutcome::Stored { size: 4, .. }))
        .count();
    assert_eq!(stored, 1, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|o| matches!(
            o,
            CopyOutcome::Stored { .. } | CopyOutcome::Busy { .. } | CopyOutcome::AlreadyStored
        )),
        "{outcomes:?}"
    );
    assert_eq!(rig.sink.uploads(), 1, "the losers uploaded nothing");
    assert_eq!(
        rig.sink.looks(),
        0,
        "a first claim looks for no earlier copy"
    );
    let item = rig.store.get(&asset).await.expect("get").expect("item");
    assert_eq!((item.state, item.claims), (AssetState::Stored, 1));
}

async fn a_stale_image_takes_the_plain_path<S: Store>(fresh: impl AsyncFn() -> S) {
    let rig = rig(fresh, policy(5, Duration::ZERO)).await;
    rig.source.serve(URL, b"stale".to_vec());
    rig.source.fail_next(URL, &[SourceFault::Unavailable]);
    let asset = one_asset(&rig.store, "t-stale", URL).await;
    let seen = rig.store.get(&asset).await.expect("get").expect("item");
    let first = rig.engine.copy_seen(&seen, None).await.expect("copy");
    assert!(
        matches!(first, CopyOutcome::RetryAt { attempts: 1, .. }),
        "{first:?}"
    );
    // The same image again (a record delivered twice): the item has moved on since.
    let second = rig.engine.copy_seen(&seen, None).await.expect("copy");
    assert!(
        matches!(second, CopyOutcome::Stored { size: 5, .. }),
        "{second:?}"
    );
    assert_eq!(
        (rig.sink.looks(), rig.sink.uploads()),
        (1, 1),
        "the second claim looked for an earlier copy first"
    );
}

async fn checkpoints_are_kept_by_name<S: Store>(fresh: impl AsyncFn() -> S) {
    let store = fresh().await;
    assert_eq!(store.checkpoint("a").await.expect("read"), None);
    store.set_checkpoint("a", NOW).await.expect("write");
    store.set_checkpoint("b", NOW + 5).await.expect("write");
    store.set_checkpoint("a", NOW + 10).await.expect("write");
    assert_eq!(store.checkpoint("a").await.expect("read"), Some(NOW + 10));
    assert_eq!(store.checkpoint("b").await.expect("read"), Some(NOW + 5));
}

/// The same callbacks, recorded into both stores, leave the same items: field by field,
/// numbers and nested values included.
#[tokio::test]
async fn both_stores_write_the_same_items() {
    let memory = MemoryTable::new();
    let dynamo = fresh_dynamo_table().await;
    let bodies: Vec<String> = MUSIC_AI_CALLBACKS
        .iter()
        .chain(&[
            "http-docs-sample.json",
            "http-stems.json",
            "http-failure.json",
            "http-unknown-subtype.json",
            "http-numbers-as-strings.json",
        ])
        .map(|name| body_of(name))
        .collect();
    let tasks: Vec<Id> = bodies
        .iter()
        .filter_map(|body| callback(body).task_id)
        .collect();
    // A different time for each callback, so that a field written only if absent shows
    // which callback wrote it.
    for (now, body) in (NOW..).zip(&bodies) {
        let cb = callback(body);
        let a = recorder(memory.clone())
            .record(&cb, now)
            .await
            .expect("memory");
        let b = recorder(dynamo.clone())
            .record(&cb, now)
            .await
            .expect("dynamodb");
        assert_eq!(a, b, "outcomes differ for {body}");
    }
    for task in &tasks {
        let a = memory.task_items(task).await.expect("memory items");
        let b = dynamo.task_items(task).await.expect("dynamodb items");
        assert!(!a.is_empty(), "{task}");
        assert_eq!(a, b, "items of {task} differ");
    }
}

async fn a_stored_mark_and_its_event_are_one_write<S: Store>(fresh: impl AsyncFn() -> S) {
    let store = fresh().await;
    let asset = one_asset(&store, "t-event", "https://lalals.s3.amazonaws.com/e.mp3").await;
    let item = store
        .claim(&asset, "a", NOW, NOW + 60)
        .await
        .expect("claim")
        .expect("won");
    let items = store.task_items(&id("t-event")).await.expect("items");
    let view = TaskView::from_items(&items).expect("view");
    let file = FileView::stored_copy(&item, &stored_copy(), "audio/mpeg", NOW);
    let view = view.with_stored(file.clone());
    let event = NewEvent::asset_stored(&view, &file, NOW);
    let write = event.write(NOW + 30).expect("write");
    // Not the lease holder: nothing at all is written, the event neither.
    assert!(
        !store
            .mark_stored_with(
                &asset,
                "b",
                &stored_copy(),
                "audio/mpeg",
                NOW,
                std::slice::from_ref(&write)
            )
            .await
            .expect("write")
    );
    let items = store.task_items(&id("t-event")).await.expect("items");
    assert!(recorded_events(&items).is_empty());
    assert!(
        store
            .mark_stored_with(
                &asset,
                "a",
                &stored_copy(),
                "audio/mpeg",
                NOW,
                std::slice::from_ref(&write)
            )
            .await
            .expect("write")
    );
    let items = store.task_items(&id("t-event")).await.expect("items");
    let events = recorded_events(&items);
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].event_id,
        event_id(DetailType::AssetStored, "t-event", &asset.sk)
    );
    assert_eq!(events[0].detail["asset"]["sha256"], json!("abc"));
    assert!(events[0].due);
    let stored = items
        .iter()
        .find(|i| text(i, "sk") == asset.sk)
        .expect("asset item");
    assert_eq!(text(stored, "state"), "STORED");
    assert_eq!(text(stored, "content_type"), "audio/mpeg");
    // STORED is final: a second mark, with the same event, changes nothing.
    assert!(
        !store
            .mark_stored_with(&asset, "a", &stored_copy(), "audio/mpeg", NOW + 5, &[write])
            .await
            .expect("write")
    );
    let again = store.task_items(&id("t-event")).await.expect("items");
    assert_eq!(again, items);
}

async fn due_events_leave_the_index_once_delivered<S: Store>(fresh: impl AsyncFn() -> S) {
    let store = fresh().await;
    record(
        &recorder(store.clone()),
        r#"{"task_id":"t-due","status":"FAILED","status_msg":"no credits"}"#,
    )
    .await;
    let items = store.task_items(&id("t-due")).await.expect("items");
    let view = TaskView::from_items(&items).expect("view");
    let first = NewEvent::asset_stored(&view, &file_view("ASSET#a#mp3"), NOW);
    let second = NewEvent::asset_stored(&view, &file_view("ASSET#b#mp3"), NOW);
    store
        .write_once(&first.write(NOW).expect("write"))
        .await
        .expect("first");
    store
        .write_once(&second.write(NOW + 100).expect("write"))
        .await
        .expect("second");
    let ids = async |cutoff: u64| {
        store
            .due_events(cutoff, 10)
            .await
            .expect("due")
            .into_iter()
            .map(|e| (e.event_id, e.due_at))
            .collect::<Vec<_>>()
    };
    assert!(ids(NOW - 1).await.is_empty());
    assert_eq!(ids(NOW).await, [(first.event_id.clone(), NOW)]);
    assert_eq!(
        ids(NOW + 100).await,
        [
            (first.event_id.clone(), NOW),
            (second.event_id.clone(), NOW + 100)
        ]
    );
    assert_eq!(store.due_events(NOW + 100, 1).await.expect("due").len(), 1);
    let task = id("t-due");
    // One claimer at a time, until the claim passes.
    let claim = async |event: &str, now: u64| {
        store
            .claim_event(&task, event, now, now + 30)
            .await
            .expect("claim")
    };
    assert!(claim(&first.event_id, NOW).await);
    assert!(!claim(&first.event_id, NOW + 29).await);
    assert!(claim(&first.event_id, NOW + 30).await);
    assert!(!claim("evt_nobody", NOW).await);
    store
        .update_event(
            &task,
            &first.event_id,
            &[("published_at", json!(NOW + 1))],
            None,
        )
        .await
        .expect("delivered");
    store
        .update_event(
            &task,
            &second.event_id,
            &[("forward_attempts", json!(1))],
            Some(NOW + 500),
        )
        .await
        .expect("later");
    assert!(ids(NOW + 100).await.is_empty());
    assert_eq!(ids(NOW + 500).await, [(second.event_id.clone(), NOW + 500)]);
    // Delivered: no longer claimable; still due: claimable again (the update released it).
    assert!(!claim(&first.event_id, NOW + 100).await);
    assert!(claim(&second.event_id, NOW + 1).await);
    // An event nobody recorded: nothing to update, and no item appears.
    store
        .update_event(&task, "evt_nobody", &[("published_at", json!(1))], None)
        .await
        .expect("nothing");
    let events = recorded_events(&store.task_items(&task).await.expect("items"));
    assert_eq!(events.len(), 2);
    let delivered = events
        .iter()
        .find(|e| e.event_id == first.event_id)
        .expect("first");
    assert_eq!(delivered.published_at, Some(NOW + 1));
    assert!(!delivered.due);
    let later = events
        .iter()
        .find(|e| e.event_id == second.event_id)
        .expect("second");
    assert_eq!(later.forward.attempts, 1);
    assert!(later.due);
}

fn file_view(sk: &str) -> FileView {
    FileView {
        sk: sk.to_owned(),
        kind: "audio".into(),
        conversion_id: None,
        stem: None,
        format: Some("mp3".into()),
        state: AssetState::Stored,
        bucket: Some("b".into()),
        key: format!("t-due/{sk}"),
        size: Some(1),
        sha256: Some("00".into()),
        content_type: "audio/mpeg".into(),
        stored_at: Some(NOW),
        last_error: None,
    }
}

async fn tasks_are_listed_by_status_newest_first_page_by_page<S: Store>(
    fresh: impl AsyncFn() -> S,
) {
    let store = fresh().await;
    let recorder = recorder(store.clone());
    for n in 0..7u64 {
        let body = json!({"task_id": format!("t-list-{n}"), "status": "COMPLETED"}).to_string();
        recorder
            .record(&callback(&body), NOW + n)
            .await
            .expect("recorded");
    }
    for n in 0..2u64 {
        let body = json!({"task_id": format!("t-fail-{n}"), "status": "FAILED"}).to_string();
        recorder
            .record(&callback(&body), NOW + 10 + n)
            .await
            .expect("recorded");
    }
    // A conversion's COMPLETED shares the index: it is not a task.
    recorder
        .record(&callback(&body_of("http-music-ai-audio-1.json")), NOW + 20)
        .await
        .expect("recorded");
    let list = async |status: TaskStatus, since: u64, limit: usize| {
        let mut pages = Vec::new();
        let mut after = None;
        loop {
            let page = store
                .list_tasks(&TaskQuery {
                    status: status.clone(),
                    since,
                    limit,
                    after,
                })
                .await
                .expect("page");
            assert!(page.tasks.len() <= limit, "{page:?}");
            pages.push(
                page.tasks
                    .iter()
                    .map(|t| t.task_id.clone())
                    .collect::<Vec<_>>(),
            );
            match page.next {
                Some(next) => after = Some(next),
                None => return pages.concat(),
            }
            assert!(pages.len() < 20, "paging does not end");
        }
    };
    let completed = list(TaskStatus::Completed, NOW + 1, 3).await;
    assert_eq!(
        completed,
        [
            MUSIC_AI_TASK,
            "t-list-6",
            "t-list-5",
            "t-list-4",
            "t-list-3",
            "t-list-2",
            "t-list-1"
        ]
    );
    assert_eq!(
        list(TaskStatus::Failed, 0, 10).await,
        ["t-fail-1", "t-fail-0"]
    );
    assert!(list(TaskStatus::Error, 0, 10).await.is_empty());
    let first = store
        .list_tasks(&TaskQuery {
            status: TaskStatus::Completed,
            since: 0,
            limit: 2,
            after: None,
        })
        .await
        .expect("page");
    assert_eq!(first.tasks[0].created_at, NOW + 20);
    assert_eq!(first.tasks[0].status, "COMPLETED");
}
