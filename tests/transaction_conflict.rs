//! A transaction that DynamoDB cancels with `TransactionConflict` (two deliveries of one task
//! racing) is tried again and ends in the same items as without it. moto serialises requests
//! and never cancels for a conflict, so the fault proxy answers chosen TransactWriteItems calls
//! with DynamoDB's own `TransactionCanceledException`; the SDK parses it, the adapter maps the
//! reason to `Applied::Conflict` and the recorder tries the plan again.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use musicgpt_webhook::adapters::dynamodb::DynamoTable;
use musicgpt_webhook::app::ports::TaskStore;
use musicgpt_webhook::app::record::{Outcome, Recorder};
use musicgpt_webhook::domain::callback::Callback;
use musicgpt_webhook::domain::ids::Id;
use musicgpt_webhook::domain::keys::KeyPrefix;
use serde_json::{Map, Value};
use support::fault_proxy::{Fault, FaultProxy};

const NOW: u64 = 1_774_596_501;
const MUSIC_AI_TASK: &str = "4fc2cdba-005d-4d14-a208-5fb02a2809da";
const CONVERSIONS: [&str; 2] = [
    "05092d5c-f8b1-4c96-a4a3-45bc00de6268",
    "52fcd3b6-3925-41ed-b4c6-aee17a29e40b",
];
const AUDIO_1: &str = "http-music-ai-audio-1.json";
const AUDIO_2: &str = "http-music-ai-audio-2.json";
const LYRICS_1: &str = "http-music-ai-lyrics-1.json";
const LYRICS_2: &str = "http-music-ai-lyrics-2.json";
const COVER: &str = "http-music-ai-cover.json";

/// The callback body inside an event of `events/`, as MusicGPT sent it.
fn body_of(name: &str) -> String {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let event: Value = serde_json::from_str(&text).expect("event JSON");
    event["body"].as_str().expect("event has a body").to_owned()
}

fn id(text: &str) -> Id {
    Id::parse(text).expect("valid id")
}

fn recorder(table: DynamoTable) -> Recorder<DynamoTable> {
    Recorder::new(
        table,
        KeyPrefix::parse("music").expect("prefix"),
        Duration::from_secs(90 * 86_400),
    )
}

async fn proxy() -> FaultProxy {
    let upstream = support::endpoint().trim_start_matches("http://").to_owned();
    FaultProxy::start(upstream, 11).await
}

/// Everything a reader sees of the task: its items by sort key, where its conversions link,
/// and every item of the table (links and parked callbacks included), by key.
struct View {
    task_items: BTreeMap<String, Map<String, Value>>,
    links: Vec<Option<Id>>,
    table: Vec<HashMap<String, AttributeValue>>,
}

async fn view(store: &DynamoTable, table: &str) -> View {
    let task_items = store
        .task_items(&id(MUSIC_AI_TASK))
        .await
        .expect("task items")
        .into_iter()
        .map(|item| {
            let sk = item["sk"].as_str().expect("sk").to_owned();
            (sk, item)
        })
        .collect();
    let mut links = Vec::new();
    for conversion in CONVERSIONS {
        links.push(store.linked_task(&id(conversion)).await.expect("link"));
    }
    View {
        task_items,
        links,
        table: support::scan_all(table).await,
    }
}

/// One callback to record, and the conflicts armed at the proxy before it: `pass`
/// transactions go through, then `conflicts` are cancelled.
struct Step {
    name: &'static str,
    pass: u64,
    conflicts: u64,
}

const fn step(name: &'static str, conflicts: u64) -> Step {
    Step {
        name,
        pass: 0,
        conflicts,
    }
}

/// Records `steps` in order, arming each step's conflicts at the proxy (if there is one).
/// Returns the outcomes.
async fn record_all(
    recorder: &Recorder<DynamoTable>,
    steps: &[Step],
    proxy: Option<&FaultProxy>,
) -> Vec<String> {
    let mut outcomes = Vec::new();
    for Step {
        name,
        pass,
        conflicts,
    } in steps
    {
        if let Some(proxy) = proxy {
            proxy.conflict_transactions_after(*pass, *conflicts);
        }
        let body = body_of(name);
        let cb = Callback::parse(body.as_bytes(), Some("application/json")).expect("callback");
        let outcome = recorder.record(&cb, NOW).await.expect("recorded");
        outcomes.push(format!("{name}: {}", outcome.label()));
        if let Some(proxy) = proxy {
            assert_eq!(
                proxy.conflicts_left(),
                0,
                "{name}: every conflict armed for it was answered"
            );
        }
        assert!(
            !matches!(outcome, Outcome::Duplicate { .. }),
            "{name} is new"
        );
    }
    outcomes
}

/// The same callbacks, recorded directly into moto and through the proxy with conflicts
/// injected: identical items, and the proxy answered every conflict it was given.
async fn conflicts_change_nothing(steps: &[Step]) -> (u64, u64) {
    let reference_table = support::fresh_table().await;
    let reference = DynamoTable::new(support::dynamo().await, &reference_table);
    let expected_outcomes = record_all(&recorder(reference.clone()), steps, None).await;
    let expected = view(&reference, &reference_table).await;

    let proxy = proxy().await;
    let table = support::fresh_table().await;
    let via_proxy = DynamoTable::new(
        aws_sdk_dynamodb::Client::new(&support::sdk_config_for(&proxy.endpoint)),
        &table,
    );
    let outcomes = record_all(&recorder(via_proxy.clone()), steps, Some(&proxy)).await;
    let seen = view(&via_proxy, &table).await;

    assert_eq!(
        outcomes, expected_outcomes,
        "the same outcome for every callback"
    );
    assert_eq!(
        seen.task_items.keys().collect::<Vec<_>>(),
        expected.task_items.keys().collect::<Vec<_>>(),
        "the same items"
    );
    for (sk, item) in &expected.task_items {
        assert_eq!(&seen.task_items[sk], item, "item {sk} differs");
    }
    assert_eq!(seen.links, expected.links, "conversion links");
    assert_eq!(
        seen.links,
        vec![Some(id(MUSIC_AI_TASK)), Some(id(MUSIC_AI_TASK))]
    );
    assert_eq!(
        seen.table, expected.table,
        "the whole table, links and parked items included"
    );
    let items = &seen.task_items;
    assert_eq!(items["TASK"]["callback_count"], Value::from(5));
    assert_eq!(
        items.keys().filter(|sk| sk.starts_with("ASSET#")).count(),
        5
    );

    let stats = proxy.stats();
    let armed: u64 = steps.iter().map(|s| s.conflicts).sum();
    let answered = stats.count("dynamodb", Fault::TransactionConflict);
    assert_eq!(
        answered, armed,
        "the proxy answered every conflict it was given"
    );
    assert_eq!(proxy.conflicts_left(), 0);
    assert!(
        stats.transactions_forwarded >= steps.len() as u64,
        "every conflicted plan went through in the end: {} transactions forwarded",
        stats.transactions_forwarded
    );
    (answered, stats.transactions_forwarded)
}

#[tokio::test]
async fn a_task_recorded_through_conflicts_has_the_same_items() {
    // Every callback meets one to three conflicts, the cover nearly the recorder's patience.
    let (answered, forwarded) = conflicts_change_nothing(&[
        step(AUDIO_1, 1),
        step(LYRICS_1, 2),
        step(AUDIO_2, 3),
        step(LYRICS_2, 1),
        step(COVER, 6),
    ])
    .await;
    assert_eq!(answered, 13);
    println!("conflicts answered: {answered}, transactions forwarded: {forwarded}");
}

#[tokio::test]
async fn conflicts_while_adopting_parked_lyrics_change_nothing() {
    // The lyrics come first and are parked (no transaction). The first song's plan meets
    // conflicts, then finds its lyrics parked and adopts them. The second song's own plan goes
    // through to find its lyrics parked (transaction 1), and the adopted lyrics' plan meets
    // the conflicts (transactions 2 to 4), before the song's plan is sent again.
    let (answered, forwarded) = conflicts_change_nothing(&[
        step(LYRICS_1, 0),
        step(LYRICS_2, 0),
        step(AUDIO_1, 4),
        step(COVER, 2),
        Step {
            name: AUDIO_2,
            pass: 1,
            conflicts: 3,
        },
    ])
    .await;
    assert_eq!(answered, 9);
    println!("conflicts answered: {answered}, transactions forwarded: {forwarded}");
}

/// The reply itself, read by the SDK: a `TransactionCanceledException` with one reason per
/// item, the conflicting one named, nothing written.
#[tokio::test]
async fn the_sdk_reads_the_injected_cancellation_reasons() {
    let proxy = proxy().await;
    let table = support::fresh_table().await;
    let client = aws_sdk_dynamodb::Client::new(&support::sdk_config_for(&proxy.endpoint));
    let put = |n: u32| {
        TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&table)
                    .item("pk", AttributeValue::S(format!("p{n}")))
                    .item("sk", AttributeValue::S("s".into()))
                    .build()
                    .expect("put"),
            )
            .build()
    };
    let mut seen_codes = Vec::new();
    proxy.conflict_next_transactions(3);
    for _ in 0..3 {
        let err = client
            .transact_write_items()
            .transact_items(put(1))
            .transact_items(put(2))
            .transact_items(put(3))
            .send()
            .await
            .expect_err("cancelled");
        let service = err.into_service_error();
        assert!(service.is_transaction_canceled_exception(), "{service:?}");
        let aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(cancelled) = service else {
            unreachable!()
        };
        let codes: Vec<&str> = cancelled
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().unwrap_or("?"))
            .collect();
        assert_eq!(codes.len(), 3, "one reason per item: {codes:?}");
        assert_eq!(
            codes
                .iter()
                .filter(|c| **c == "TransactionConflict")
                .count(),
            1,
            "{codes:?}"
        );
        assert_eq!(
            codes.iter().filter(|c| **c == "None").count(),
            2,
            "{codes:?}"
        );
        assert!(
            cancelled
                .message()
                .is_some_and(|m| m.contains("TransactionConflict")),
            "{cancelled:?}"
        );
        seen_codes.push(codes.join(","));
    }
    seen_codes.dedup();
    assert_eq!(
        seen_codes.len(),
        3,
        "the conflict moves between items: {seen_codes:?}"
    );
    assert!(
        support::scan_all(&table).await.is_empty(),
        "a cancelled transaction wrote nothing"
    );
    client
        .transact_write_items()
        .transact_items(put(1))
        .send()
        .await
        .expect("the next one goes through");
    let stats = proxy.stats();
    assert_eq!(stats.count("dynamodb", Fault::TransactionConflict), 3);
    assert_eq!(stats.transactions_forwarded, 1);
}
