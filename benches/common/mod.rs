//! What both benchmarks need: the handler's configuration, its floor (the bare DynamoDB
//! requests it makes), fresh ids, the machine they ran on.
#![allow(dead_code)]

pub mod peer;
pub mod summary;
mod update;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::get_item::builders::GetItemFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::transact_write_items::builders::TransactWriteItemsFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use musicgpt_webhook::domain::callback::Callback;
use musicgpt_webhook::domain::ids::Id;
use musicgpt_webhook::domain::keys::{self, KeyPrefix};
use musicgpt_webhook::domain::plan::{self, Condition, ItemWrite, RecordContext};
use serde_json::Value;

/// The token every event in events/ carries (a test value, not a secret).
pub const TOKEN: &str = "test-token-0123456789abcdef";
pub const RETENTION: Duration = Duration::from_secs(90 * 86_400);
const KEY_PREFIX: &str = "music";

pub fn key_prefix() -> KeyPrefix {
    KeyPrefix::parse(KEY_PREFIX).expect("key prefix")
}

/// The callback body inside an event, as MusicGPT sent it.
pub fn body_of(event: &str) -> String {
    let event: Value = serde_json::from_str(event).expect("event JSON");
    event["body"].as_str().expect("event has a body").to_owned()
}

/// A new UUID-shaped id. The same length as the events' ids, so an event's `content-length`
/// header stays true when its ids are replaced; unique within the process (every run has a
/// fresh table anyway).
pub fn fresh_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static NONCE: OnceLock<u32> = OnceLock::new();
    let nonce = *NONCE.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ std::process::id())
            .unwrap_or_default()
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{nonce:08x}-be9c-4a11-8f00-{n:012x}")
}

/// The bare DynamoDB requests the handler makes for one first-delivered callback, built in
/// advance from the domain's own write plan (`plan::callback_plan`) by this module's
/// `update`: the link lookup of a callback that names only its conversion, then the
/// transaction, and that transaction again without the status guard of a write whose guard
/// fails (a task item that already holds an equally final status with a higher tiebreak:
/// `DynamoTable`'s `TaskStore::apply` re-runs it so, and so does the floor).
pub struct FloorRequests {
    lookup: Option<GetItemFluentBuilder>,
    transact: TransactWriteItemsFluentBuilder,
    client: Client,
    items: Vec<TransactWriteItem>,
    unguarded: Vec<Option<TransactWriteItem>>,
}

impl FloorRequests {
    /// `known_task` is the task a callback without `task_id` belongs to (the handler finds it
    /// with the lookup; the floor only sends that lookup).
    pub fn build(
        client: &Client,
        table: &str,
        known_task: Option<&str>,
        event: &str,
    ) -> FloorRequests {
        let body = body_of(event);
        let callback = Callback::parse(body.as_bytes(), Some("application/json"))
            .expect("events/ hold valid callbacks");
        let ctx = RecordContext {
            key_prefix: key_prefix(),
            now: now_secs(),
            retention_secs: RETENTION.as_secs(),
            files: musicgpt_webhook::domain::retry::FileRetention::default(),
        };
        // As Recorder::record: a callback with a task id writes its conversions' links; one
        // with only a conversion id looks the task up first and links nothing.
        let (task, link, lookup) = match &callback.task_id {
            Some(task) => (task.clone(), true, None),
            None => {
                let conversion = callback.conversion_id.clone().expect("a conversion id");
                let lookup = client
                    .get_item()
                    .table_name(table)
                    .key("pk", AttributeValue::S(keys::conversion_pk(&conversion)))
                    .key("sk", AttributeValue::S(keys::LINK_SK.to_owned()))
                    .consistent_read(true);
                let task = known_task
                    .and_then(Id::parse)
                    .expect("the task of a callback without task_id");
                (task, false, Some(lookup))
            }
        };
        let item = |write: &ItemWrite| {
            TransactWriteItem::builder()
                .update(update::update(table, write))
                .build()
        };
        let writes = plan::callback_plan(&callback, &task, &ctx, link).writes;
        let items: Vec<TransactWriteItem> = writes.iter().map(item).collect();
        let unguarded = writes
            .iter()
            .map(|write| {
                matches!(write.condition, Condition::NewerStatus(_)).then(|| {
                    let mut write = write.clone();
                    write.without_guard();
                    item(&write)
                })
            })
            .collect();
        FloorRequests {
            lookup,
            transact: client
                .transact_write_items()
                .set_transact_items(Some(items.clone())),
            client: client.clone(),
            items,
            unguarded,
        }
    }

    pub async fn send(self) {
        if let Some(lookup) = self.lookup {
            let out = lookup.send().await.expect("floor GetItem");
            assert!(out.item.is_some(), "floor lookup found no link");
        }
        let (mut items, mut unguarded) = (self.items, self.unguarded);
        // As `DynamoTable`'s `apply`: each cancelled round drops at least one guard, so one
        // round per write and one more is enough.
        let rounds = items.len() + 1;
        let mut attempt = self.transact;
        for _ in 0..rounds {
            let err = match attempt.send().await {
                Ok(_) => return,
                Err(err) => err,
            };
            let cancelled = match err.into_service_error() {
                TransactWriteItemsError::TransactionCanceledException(cancelled) => cancelled,
                other => panic!("floor TransactWriteItems: {other}"),
            };
            for (index, reason) in cancelled.cancellation_reasons().iter().enumerate() {
                match (reason.code(), unguarded[index].take()) {
                    (None | Some("None"), unused) => unguarded[index] = unused,
                    (Some("ConditionalCheckFailed"), Some(without_guard)) => {
                        items[index] = without_guard
                    }
                    (code, _) => panic!("floor: write {index} cancelled ({code:?})"),
                }
            }
            attempt = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()));
        }
        panic!("floor: transaction still cancelled after {rounds} rounds");
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// True under `cargo bench`, which passes `--bench`. `cargo test --all-targets` (CI) runs
/// bench targets too, without it: they then make a quick smoke run, so the harness cannot
/// rot unnoticed, instead of a long measurement.
pub fn benchmarking() -> bool {
    std::env::args().skip(1).any(|arg| arg == "--bench")
}

/// The text of a Lambda event in events/.
pub fn event_text(name: &str) -> String {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}

/// CPU model and cores: figures mean little without them.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cpu}, {cores} cores, {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

/// The 1-minute load average: above the core count, other jobs shared the machine and the
/// figures are noisy.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}
