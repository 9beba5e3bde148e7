//! In-memory twins of the ports, for fast use-case tests and local experiments. They follow
//! the real adapters' semantics exactly (conditions, leases, what a duplicate or a parked
//! callback answers); `tests/store_conformance.rs` runs the same scenarios against this table
//! and against DynamoDB, so the two cannot drift apart.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::adapters::musicgpt::MusicGptApi;
use crate::app::ports::{
    Applied, AssetStore, AudioSource, BusEvent, ChunkSource, Clock, Download, DueEvent, EventBus,
    EventLog, ObjectSink, ObjectSpec, Ports, Presigner, TaskIndex, TaskStore, Written,
};
use crate::domain::asset::{AssetItem, PendingAsset, StoredCopy, Unclaimed};
use crate::domain::events::{EVENT_SK_PREFIX, OUTBOX_DUE};
use crate::domain::ids::Id;
use crate::domain::keys::{self, AssetKey};
use crate::domain::listing::{TaskCursor, TaskPage, TaskQuery, TaskSummary};
use crate::domain::plan::{Condition, ItemWrite, Plan};
use crate::domain::status::{AssetState, ItemType, TaskStatus};
use crate::error::{Error, Result};

type Item = Map<String, Value>;

/// The table: items by `(pk, sk)`, in key order as DynamoDB returns a partition. Cheap to
/// clone; clones share the items.
#[derive(Clone, Default)]
pub struct MemoryTable {
    items: Arc<Mutex<BTreeMap<(String, String), Item>>>,
}

impl MemoryTable {
    pub fn new() -> MemoryTable {
        MemoryTable::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<(String, String), Item>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every item, for tests that look at the whole table.
    pub fn all_items(&self) -> Vec<Item> {
        self.lock().values().cloned().collect()
    }

    fn partition(&self, pk: &str, sk_prefix: &str) -> Vec<Item> {
        self.lock()
            .range((pk.to_owned(), String::new())..)
            .take_while(|((p, _), _)| p == pk)
            .filter(|((_, s), _)| s.starts_with(sk_prefix))
            .map(|(_, item)| item.clone())
            .collect()
    }

    fn get_item(&self, pk: &str, sk: &str) -> Option<Item> {
        self.lock().get(&(pk.to_owned(), sk.to_owned())).cloned()
    }

    /// FAILED or EXPIRED under the lease, with the attempt's count and error.
    fn mark_ended(
        &self,
        asset: &AssetKey,
        owner: &str,
        state: AssetState,
        attempts: u32,
        error: &str,
        now: u64,
    ) -> bool {
        self.under_lease(asset, owner, |item| {
            item.insert("state".into(), json!(state));
            item.insert("attempts".into(), json!(attempts));
            item.insert("last_error".into(), json!(error));
            item.insert("last_attempt_at".into(), json!(now));
            item.insert(state.ended_at().into(), json!(now));
            item.insert("next_try_at".into(), json!(now));
            remove(item, &["lease_owner", "lease_until"]);
        })
    }

    /// One conditional update of an asset item under its lease: `change` runs only while
    /// `owner` holds the lease and the asset is PENDING.
    fn under_lease(&self, asset: &AssetKey, owner: &str, change: impl FnOnce(&mut Item)) -> bool {
        let mut items = self.lock();
        let Some(item) = items.get_mut(&(asset.pk.clone(), asset.sk.clone())) else {
            return false;
        };
        let leased = text(item, "lease_owner") == Some(owner)
            && text(item, "state") == Some(AssetState::Pending.as_str());
        if leased {
            change(item);
        }
        leased
    }
}

impl TaskStore for MemoryTable {
    async fn apply(&self, plan: &Plan) -> Result<Applied> {
        let mut items = self.lock();
        let mut parked = Vec::new();
        let mut stale = HashSet::new();
        for (index, write) in plan.writes.iter().enumerate() {
            let existing = items.get(&(write.pk.clone(), write.sk.clone()));
            match &write.condition {
                Condition::Always => {}
                Condition::CreateOnly if existing.is_some() => return Ok(Applied::Duplicate),
                Condition::CreateOnly => {}
                Condition::NoParkedCallbacks(conversion) => {
                    if existing.is_some_and(|item| item.contains_key("has_parked")) {
                        parked.push(conversion.clone());
                    }
                }
                Condition::NewerStatus(order) => {
                    let recorded = existing.and_then(|item| text(item, "status_order"));
                    if recorded.is_some_and(|recorded| recorded > order.as_str()) {
                        stale.insert(index);
                    }
                }
            }
        }
        if !parked.is_empty() {
            return Ok(Applied::ParkedOn(parked));
        }
        // All or nothing: the writes are applied to a copy that replaces the table only if
        // every item stays within DynamoDB's size limit.
        let mut next = items.clone();
        for (index, write) in plan.writes.iter().enumerate() {
            let mut write = write.clone();
            if stale.contains(&index) {
                write.without_guard();
            }
            apply_write(&mut next, &write);
            check_size(&next, &write)?;
        }
        *items = next;
        Ok(Applied::Written)
    }

    async fn write_once(&self, write: &ItemWrite) -> Result<()> {
        let mut items = self.lock();
        if !items.contains_key(&(write.pk.clone(), write.sk.clone())) {
            let mut next = items.clone();
            apply_write(&mut next, write);
            check_size(&next, write)?;
            *items = next;
        }
        Ok(())
    }

    async fn linked_task(&self, conversion: &Id) -> Result<Option<Id>> {
        let link = self.get_item(&keys::conversion_pk(conversion), keys::LINK_SK);
        Ok(link.as_ref().and_then(task_of))
    }

    async fn flag_parked(&self, conversion: &Id) -> Result<Option<Id>> {
        let mut items = self.lock();
        let link = items
            .entry((keys::conversion_pk(conversion), keys::LINK_SK.to_owned()))
            .or_insert_with(|| key_item(&keys::conversion_pk(conversion), keys::LINK_SK));
        link.insert("has_parked".into(), json!(true));
        link.insert("conversion_id".into(), json!(conversion));
        link.insert("item_type".into(), json!(ItemType::Link));
        Ok(task_of(link))
    }

    async fn parked_bodies(&self, conversion: &Id) -> Result<Vec<String>> {
        let parked = self.partition(&keys::conversion_pk(conversion), &keys::parked_sk(""));
        Ok(parked
            .iter()
            .filter_map(|item| text(item, "body").map(str::to_owned))
            .collect())
    }

    async fn due_tasks(&self, cutoff: u64) -> Result<Vec<Id>> {
        let items = self.lock();
        // As the two indexes answer: each in order of its range key, submitted tasks first.
        let due = |hash: &str, value: &str, range: &str, only: Option<ItemType>| {
            let mut found: Vec<(u64, Option<Id>)> = items
                .values()
                .filter(|item| text(item, hash) == Some(value))
                .filter(|item| only.is_none_or(|t| text(item, "item_type") == Some(t.as_str())))
                .filter_map(|item| {
                    let at = item.get(range)?.as_u64()?;
                    (at <= cutoff).then(|| (at, task_of(item)))
                })
                .collect();
            found.sort_by_key(|(at, _)| *at);
            found.into_iter().filter_map(|(_, task)| task)
        };
        let submitted = due(
            "status",
            TaskStatus::Submitted.as_str(),
            "created_at",
            Some(ItemType::Task),
        );
        let pending = due("state", AssetState::Pending.as_str(), "next_try_at", None);
        let mut seen = HashSet::new();
        Ok(submitted
            .chain(pending)
            .filter(|task| seen.insert(task.clone()))
            .collect())
    }

    async fn task_conversion_type(&self, task: &Id) -> Result<Option<String>> {
        let item = self.get_item(&keys::task_pk(task), keys::TASK_SK);
        Ok(item
            .as_ref()
            .and_then(|item| text(item, "conversion_type"))
            .map(str::to_owned))
    }

    async fn checkpoint(&self, name: &str) -> Result<Option<u64>> {
        let item = self.get_item(&keys::checkpoint_pk(name), keys::CHECKPOINT_SK);
        Ok(item.and_then(|i| i.get("at").and_then(Value::as_u64)))
    }

    async fn set_checkpoint(&self, name: &str, at: u64) -> Result<()> {
        let pk = keys::checkpoint_pk(name);
        let mut item = key_item(&pk, keys::CHECKPOINT_SK);
        item.insert("at".into(), json!(at));
        self.lock()
            .insert((pk, keys::CHECKPOINT_SK.to_owned()), item);
        Ok(())
    }

    async fn task_items(&self, task: &Id) -> Result<Vec<Map<String, Value>>> {
        Ok(self.partition(&keys::task_pk(task), ""))
    }
}

impl AssetStore for MemoryTable {
    async fn claim(
        &self,
        asset: &AssetKey,
        owner: &str,
        now: u64,
        lease_until: u64,
    ) -> Result<Result<AssetItem, Unclaimed>> {
        let mut items = self.lock();
        let item = items.get_mut(&(asset.pk.clone(), asset.sk.clone()));
        let Some(item) = item else {
            return Ok(Err(Unclaimed::Missing));
        };
        let at_most_now = |name: &str| {
            item.get(name)
                .and_then(Value::as_u64)
                .is_none_or(|t| t <= now)
        };
        let claimable = text(item, "state") == Some(AssetState::Pending.as_str())
            && at_most_now("next_try_at")
            && at_most_now("lease_until");
        if !claimable {
            let current = asset_item(item)?;
            return Ok(Err(Unclaimed::of(Some(&current), now)));
        }
        item.insert("lease_owner".into(), json!(owner));
        item.insert("lease_until".into(), json!(lease_until));
        let claims = item.get("claims").and_then(Value::as_u64).unwrap_or(0) + 1;
        item.insert("claims".into(), json!(claims));
        Ok(Ok(asset_item(item)?))
    }

    async fn get(&self, asset: &AssetKey) -> Result<Option<AssetItem>> {
        self.get_item(&asset.pk, &asset.sk)
            .map(|item| asset_item(&item))
            .transpose()
    }

    async fn mark_stored(
        &self,
        asset: &AssetKey,
        owner: &str,
        copy: &StoredCopy<'_>,
        now: u64,
    ) -> Result<bool> {
        Ok(self.under_lease(asset, owner, |item| stored(item, copy, now)))
    }

    async fn mark_stored_with(
        &self,
        asset: &AssetKey,
        owner: &str,
        copy: &StoredCopy<'_>,
        content_type: &str,
        now: u64,
        outbox: &[ItemWrite],
    ) -> Result<bool> {
        // One lock for the asset and its events: all or nothing, as a transaction.
        let mut items = self.lock();
        let Some(item) = items.get_mut(&(asset.pk.clone(), asset.sk.clone())) else {
            return Ok(false);
        };
        let leased = text(item, "lease_owner") == Some(owner)
            && text(item, "state") == Some(AssetState::Pending.as_str());
        if !leased {
            return Ok(false);
        }
        let mut next = items.clone();
        if let Some(item) = next.get_mut(&(asset.pk.clone(), asset.sk.clone())) {
            stored(item, copy, now);
            item.insert("content_type".into(), json!(content_type));
        }
        for write in outbox {
            apply_write(&mut next, write);
            check_size(&next, write)?;
        }
        *items = next;
        Ok(true)
    }

    async fn mark_retry(
        &self,
        asset: &AssetKey,
        owner: &str,
        attempts: u32,
        error: &str,
        next_try_at: u64,
        now: u64,
    ) -> Result<bool> {
        Ok(self.under_lease(asset, owner, |item| {
            item.insert("attempts".into(), json!(attempts));
            item.insert("last_error".into(), json!(error));
            item.insert("next_try_at".into(), json!(next_try_at));
            item.insert("last_attempt_at".into(), json!(now));
            remove(item, &["lease_owner", "lease_until"]);
        }))
    }

    async fn mark_failed(
        &self,
        asset: &AssetKey,
        owner: &str,
        attempts: u32,
        error: &str,
        now: u64,
    ) -> Result<bool> {
        Ok(self.mark_ended(asset, owner, AssetState::Failed, attempts, error, now))
    }

    async fn mark_expired(
        &self,
        asset: &AssetKey,
        owner: &str,
        attempts: u32,
        error: &str,
        now: u64,
    ) -> Result<bool> {
        Ok(self.mark_ended(asset, owner, AssetState::Expired, attempts, error, now))
    }

    async fn release(&self, asset: &AssetKey, owner: &str) -> Result<bool> {
        Ok(self.under_lease(asset, owner, |item| {
            remove(item, &["lease_owner", "lease_until"]);
        }))
    }

    async fn pending_in_task(&self, task: &Id) -> Result<Vec<AssetKey>> {
        let assets = self.partition(&keys::task_pk(task), keys::ASSET_SK_PREFIX);
        Ok(assets
            .iter()
            .filter(|item| text(item, "state") == Some(AssetState::Pending.as_str()))
            .filter_map(|item| {
                Some(AssetKey {
                    pk: text(item, "pk")?.to_owned(),
                    sk: text(item, "sk")?.to_owned(),
                })
            })
            .collect())
    }

    async fn pending_assets(&self) -> Result<Vec<PendingAsset>> {
        Ok(self.in_state(AssetState::Pending))
    }

    async fn assets_in_state(&self, state: AssetState) -> Result<Vec<PendingAsset>> {
        Ok(self.in_state(state))
    }

    async fn redrive(&self, asset: &AssetKey, now: u64, deadline_at: u64) -> Result<bool> {
        let mut items = self.lock();
        let Some(item) = items.get_mut(&(asset.pk.clone(), asset.sk.clone())) else {
            return Ok(false);
        };
        let settled = [AssetState::Failed.as_str(), AssetState::Expired.as_str()];
        if !text(item, "state").is_some_and(|s| settled.contains(&s)) {
            return Ok(false);
        }
        for (name, value) in [
            ("state", json!(AssetState::Pending)),
            ("attempts", json!(0)),
            ("next_try_at", json!(now)),
            ("deadline_at", json!(deadline_at)),
            ("redriven_at", json!(now)),
        ] {
            item.insert(name.into(), value);
        }
        remove(
            item,
            &[
                "last_error",
                "failed_at",
                "expired_at",
                "lease_owner",
                "lease_until",
            ],
        );
        Ok(true)
    }
}

impl EventLog for MemoryTable {
    async fn due_events(&self, cutoff: u64, limit: usize) -> Result<Vec<DueEvent>> {
        let items = self.lock();
        let mut due: Vec<(u64, &String, &String, DueEvent)> = items
            .iter()
            .filter(|(_, item)| text(item, "outbox") == Some(OUTBOX_DUE))
            .filter_map(|((pk, sk), item)| {
                let due_at = item.get("due_at")?.as_u64()?;
                let event = DueEvent {
                    task_id: text(item, "task_id")?.to_owned(),
                    event_id: text(item, "event_id")?.to_owned(),
                    due_at,
                };
                (due_at <= cutoff).then_some((due_at, pk, sk, event))
            })
            .collect();
        due.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
        Ok(due.into_iter().take(limit).map(|(.., e)| e).collect())
    }

    async fn claim_event(&self, task: &Id, event_id: &str, now: u64, until: u64) -> Result<bool> {
        let mut items = self.lock();
        let key = (keys::task_pk(task), format!("{EVENT_SK_PREFIX}{event_id}"));
        let Some(item) = items.get_mut(&key) else {
            return Ok(false);
        };
        let free = item
            .get("claimed_until")
            .and_then(Value::as_u64)
            .is_none_or(|at| at <= now);
        if text(item, "outbox") != Some(OUTBOX_DUE) || !free {
            return Ok(false);
        }
        item.insert("claimed_until".into(), json!(until));
        Ok(true)
    }

    async fn update_event(
        &self,
        task: &Id,
        event_id: &str,
        set: &[(&'static str, Value)],
        due_at: Option<u64>,
    ) -> Result<()> {
        let mut items = self.lock();
        let key = (keys::task_pk(task), format!("{EVENT_SK_PREFIX}{event_id}"));
        if let Some(item) = items.get_mut(&key) {
            for (name, value) in set {
                item.insert((*name).to_owned(), value.clone());
            }
            item.remove("claimed_until");
            match due_at {
                Some(at) => {
                    item.insert("outbox".into(), json!(OUTBOX_DUE));
                    item.insert("due_at".into(), json!(at));
                }
                None => remove(item, &["outbox", "due_at"]),
            }
        }
        Ok(())
    }
}

impl TaskIndex for MemoryTable {
    /// As the index answers: newest first; conversions (which share it) filtered out.
    async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskPage> {
        let items = self.lock();
        let status = query.status.as_str();
        let mut found: Vec<(u64, String, String, TaskSummary)> = items
            .iter()
            .filter(|(_, item)| text(item, "status") == Some(status))
            .filter(|(_, item)| text(item, "item_type") == Some(ItemType::Task.as_str()))
            .filter_map(|((pk, sk), item)| {
                let created_at = item.get("created_at")?.as_u64()?;
                let summary = TaskSummary {
                    task_id: text(item, "task_id")?.to_owned(),
                    status: status.to_owned(),
                    created_at,
                };
                (created_at >= query.since).then(|| (created_at, pk.clone(), sk.clone(), summary))
            })
            .collect();
        found.sort_by(|a, b| (b.0, &b.1, &b.2).cmp(&(a.0, &a.1, &a.2)));
        if let Some(after) = &query.after {
            let at = (after.created_at, after.pk.clone(), after.sk.clone());
            found.retain(|(c, p, s, _)| (*c, p.clone(), s.clone()) < at);
        }
        let limit = query.limit.max(1);
        let more = found.len() > limit;
        found.truncate(limit);
        let next = found
            .last()
            .filter(|_| more)
            .map(|(created_at, pk, sk, _)| TaskCursor {
                created_at: *created_at,
                pk: pk.clone(),
                sk: sk.clone(),
            });
        Ok(TaskPage {
            tasks: found.into_iter().map(|(.., t)| t).collect(),
            next,
        })
    }
}

impl MemoryTable {
    fn in_state(&self, state: AssetState) -> Vec<PendingAsset> {
        let items = self.lock();
        let mut pending: Vec<PendingAsset> = items
            .values()
            .filter(|item| text(item, "state") == Some(state.as_str()))
            .filter_map(|item| serde_json::from_value(Value::Object(item.clone())).ok())
            .collect();
        // As the index answers: by next try, then by key.
        pending.sort_by(|a: &PendingAsset, b| {
            (a.next_try_at, &a.pk, &a.sk).cmp(&(b.next_try_at, &b.pk, &b.sk))
        });
        pending
    }
}

/// What `mark_stored` writes on the asset item.
fn stored(item: &mut Item, copy: &StoredCopy<'_>, now: u64) {
    for (name, value) in [
        ("state", json!(AssetState::Stored)),
        ("size_bytes", json!(copy.size)),
        ("etag", json!(copy.etag)),
        ("sha256", json!(copy.sha256)),
        ("bucket", json!(copy.bucket)),
        ("s3_key", json!(copy.s3_key)),
        ("stored_at", json!(now)),
    ] {
        item.insert(name.into(), value);
    }
    remove(
        item,
        &["lease_owner", "lease_until", "next_try_at", "last_error"],
    );
}

/// The same update a DynamoDB UpdateItem makes: `SET`, `SET if_not_exists`, `ADD`.
fn apply_write(items: &mut BTreeMap<(String, String), Item>, write: &ItemWrite) {
    let item = items
        .entry((write.pk.clone(), write.sk.clone()))
        .or_insert_with(|| key_item(&write.pk, &write.sk));
    for (name, value) in write.set.iter().chain(&write.guarded) {
        item.insert((*name).to_owned(), as_stored(value));
    }
    for (name, value) in &write.set_if_absent {
        item.entry(*name).or_insert_with(|| as_stored(value));
    }
    for (name, amount) in &write.add {
        let current = item.get(*name).and_then(Value::as_i64).unwrap_or(0);
        item.insert((*name).to_owned(), json!(current + amount));
    }
}

/// A value as DynamoDB gives it back: its numbers are decimals, so `3.0` comes back as `3`.
fn as_stored(value: &Value) -> Value {
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                // Exact: integral and within f64's 53-bit mantissa.
                json!(f as i64)
            }
            _ => value.clone(),
        },
        Value::Array(items) => Value::Array(items.iter().map(as_stored).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), as_stored(v))).collect())
        }
        other => other.clone(),
    }
}

/// DynamoDB's limit on one item: attribute names and values, in bytes.
const MAX_ITEM_BYTES: usize = 400 * 1024;

fn check_size(items: &BTreeMap<(String, String), Item>, write: &ItemWrite) -> Result<()> {
    let Some(item) = items.get(&(write.pk.clone(), write.sk.clone())) else {
        return Ok(());
    };
    let size: usize = item
        .iter()
        .map(|(name, value)| name.len() + value_size(value))
        .sum();
    if size > MAX_ITEM_BYTES {
        return Err(Error::StorageRejected(format!(
            "Item size has exceeded the maximum allowed size ({size} bytes at {} / {})",
            write.pk, write.sk
        )));
    }
    Ok(())
}

/// Roughly as DynamoDB counts: strings by their UTF-8 length, numbers by their digits,
/// containers by their elements plus a few bytes each.
fn value_size(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 1,
        Value::Number(n) => n.to_string().len().div_ceil(2) + 1,
        Value::String(s) => s.len(),
        Value::Array(items) => 3 + items.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        Value::Object(map) => {
            3 + map
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
    }
}

fn key_item(pk: &str, sk: &str) -> Item {
    Map::from_iter([("pk".to_owned(), json!(pk)), ("sk".to_owned(), json!(sk))])
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(Value::as_str)
}

fn task_of(item: &Item) -> Option<Id> {
    text(item, "task_id").and_then(Id::parse)
}

fn remove(item: &mut Item, names: &[&str]) {
    for name in names {
        item.remove(*name);
    }
}

fn asset_item(item: &Item) -> Result<AssetItem> {
    serde_json::from_value(Value::Object(item.clone()))
        .map_err(|e| Error::storage_from("unreadable asset item", e))
}

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryObject {
    pub body: Bytes,
    pub content_type: String,
    pub metadata: HashMap<String, String>,
    pub sha256: String,
}

/// The bucket: objects by key. Clones share the objects and the upload count.
#[derive(Clone)]
pub struct MemorySink {
    bucket: String,
    objects: Arc<Mutex<HashMap<String, MemoryObject>>>,
    uploads: Arc<AtomicUsize>,
    looks: Arc<AtomicUsize>,
    outage: Arc<AtomicBool>,
}

impl MemorySink {
    pub fn new(bucket: &str) -> MemorySink {
        MemorySink {
            bucket: bucket.to_owned(),
            objects: Arc::default(),
            uploads: Arc::default(),
            looks: Arc::default(),
            outage: Arc::default(),
        }
    }

    /// While on, every write fails as S3 does in an outage (a passing failure).
    pub fn set_outage(&self, on: bool) {
        self.outage.store(on, Ordering::SeqCst);
    }

    pub fn object(&self, key: &str) -> Option<MemoryObject> {
        self.lock().get(key).cloned()
    }

    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.lock().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// How many objects were written, earlier copies that were taken again not counted.
    pub fn uploads(&self) -> usize {
        self.uploads.load(Ordering::SeqCst)
    }

    /// How many times a copy looked for an earlier copy of its file.
    pub fn looks(&self) -> usize {
        self.looks.load(Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, MemoryObject>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ObjectSink for MemorySink {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn existing(
        &self,
        key: &str,
        source_url: &str,
        _stop: Option<Instant>,
    ) -> Result<Option<Written>> {
        self.looks.fetch_add(1, Ordering::SeqCst);
        Ok(self
            .object(key)
            .filter(|o| o.metadata.get("source-url").map(String::as_str) == Some(source_url))
            .map(|o| written(&o)))
    }

    async fn write(
        &self,
        spec: &ObjectSpec,
        body: &mut impl ChunkSource,
        stop: Option<Instant>,
    ) -> Result<Written> {
        if self.outage.load(Ordering::SeqCst) {
            return Err(Error::sink("PutObject: 503 Service Unavailable (outage)"));
        }
        let read = async {
            let mut bytes = Vec::new();
            while let Some(chunk) = body.next_chunk().await? {
                bytes.extend_from_slice(&chunk);
            }
            Ok::<_, Error>(bytes)
        };
        let bytes = match stop {
            None => read.await?,
            Some(stop) => tokio::time::timeout_at(stop, read)
                .await
                .map_err(|_| Error::OutOfTime("time budget spent mid-copy".into()))??,
        };
        let object = MemoryObject {
            sha256: hex::encode(Sha256::digest(&bytes)),
            body: Bytes::from(bytes),
            content_type: spec.content_type.clone(),
            metadata: spec.metadata.clone(),
        };
        let stored = written(&object);
        self.lock().insert(spec.key.clone(), object);
        self.uploads.fetch_add(1, Ordering::SeqCst);
        Ok(stored)
    }

    /// Objects here always hold their hash.
    async fn tag(&self, _key: &str, _sha256: &str) -> Result<()> {
        Ok(())
    }
}

fn written(object: &MemoryObject) -> Written {
    Written {
        etag: format!("\"{}\"", &object.sha256[..32]),
        size: object.body.len() as u64,
        sha256: object.sha256.clone(),
        tagged: true,
    }
}

/// How a scripted source answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFault {
    /// A failure that may pass (a 503, a reset).
    Unavailable,
    /// An answer that will not change (a 404).
    NotFound,
}

/// Files by URL, with failures scripted per URL. Clones share everything.
#[derive(Clone, Default)]
pub struct MemorySource {
    files: Arc<Mutex<HashMap<String, Bytes>>>,
    faults: Arc<Mutex<HashMap<String, Vec<SourceFault>>>>,
    outage: Arc<Mutex<Option<SourceFault>>>,
    opens: Arc<AtomicUsize>,
}

impl MemorySource {
    pub fn new() -> MemorySource {
        MemorySource::default()
    }

    pub fn serve(&self, url: &str, body: impl Into<Bytes>) {
        lock(&self.files).insert(url.to_owned(), body.into());
    }

    /// The next requests for `url` fail like this, in order.
    pub fn fail_next(&self, url: &str, faults: &[SourceFault]) {
        lock(&self.faults)
            .entry(url.to_owned())
            .or_default()
            .extend_from_slice(faults);
    }

    /// While set, every request fails like this (an outage of the whole source).
    pub fn set_outage(&self, fault: Option<SourceFault>) {
        *lock(&self.outage) = fault;
    }

    /// Requests answered so far, failed ones included.
    pub fn opens(&self) -> usize {
        self.opens.load(Ordering::SeqCst)
    }
}

/// A file being read, in chunks of 64 KiB.
pub struct MemoryDownload {
    body: Bytes,
    len: u64,
}

impl ChunkSource for MemoryDownload {
    fn announced_len(&self) -> Option<u64> {
        Some(self.len)
    }

    async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        if self.body.is_empty() {
            return Ok(None);
        }
        let len = self.body.len().min(64 * 1024);
        Ok(Some(self.body.split_to(len)))
    }
}

impl Download for MemoryDownload {
    fn content_type(&self) -> Option<&str> {
        None
    }
}

impl AudioSource for MemorySource {
    type Download = MemoryDownload;

    async fn open(&self, url: &str) -> Result<MemoryDownload> {
        self.opens.fetch_add(1, Ordering::SeqCst);
        let fault = *lock(&self.outage);
        let fault = fault.or_else(|| {
            let mut faults = lock(&self.faults);
            faults
                .get_mut(url)
                .and_then(|queue| (!queue.is_empty()).then(|| queue.remove(0)))
        });
        match fault {
            Some(SourceFault::Unavailable) => {
                Err(Error::source("answered 503 Service Unavailable"))
            }
            Some(SourceFault::NotFound) => {
                Err(Error::SourceNotFound("answered 404 Not Found".into()))
            }
            None => match lock(&self.files).get(url) {
                Some(body) => Ok(MemoryDownload {
                    body: body.clone(),
                    len: body.len() as u64,
                }),
                None => Err(Error::SourceNotFound("answered 404 Not Found".into())),
            },
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn at(now: u64) -> ManualClock {
        ManualClock(AtomicU64::new(now))
    }

    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }

    pub fn set(&self, now: u64) {
        self.0.store(now, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_secs(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Every port in memory (MusicGPT's API stays the HTTP client; tests point it at a fake).
#[derive(Debug, Clone, Copy)]
pub struct MemoryPorts;

impl Ports for MemoryPorts {
    type Tasks = MemoryTable;
    type Assets = MemoryTable;
    type Source = MemorySource;
    type Sink = MemorySink;
    type Api = MusicGptApi;
}

/// The event bus: what was published, in order; failures scripted for fault tests. Clones
/// share everything.
#[derive(Clone, Default)]
pub struct MemoryBus {
    published: Arc<Mutex<Vec<BusEvent>>>,
    /// While set, every publish call fails as an unreachable bus does.
    outage: Arc<AtomicBool>,
    /// The next this many events are refused one by one (the bus answers per entry).
    refuse_next: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl MemoryBus {
    pub fn new() -> MemoryBus {
        MemoryBus::default()
    }

    pub fn published(&self) -> Vec<BusEvent> {
        lock(&self.published).clone()
    }

    pub fn set_outage(&self, on: bool) {
        self.outage.store(on, Ordering::SeqCst);
    }

    pub fn refuse_next(&self, events: usize) {
        self.refuse_next.store(events, Ordering::SeqCst);
    }

    /// Publish calls so far, failed ones included.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl EventBus for MemoryBus {
    async fn publish(&self, events: &[BusEvent]) -> Result<Vec<std::result::Result<(), String>>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.outage.load(Ordering::SeqCst) {
            return Err(Error::storage("PutEvents: bus unreachable (outage)"));
        }
        let mut answers = Vec::new();
        for event in events {
            let refuse = self
                .refuse_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if refuse {
                answers.push(Err("InternalFailure".to_owned()));
            } else {
                lock(&self.published).push(event.clone());
                answers.push(Ok(()));
            }
        }
        Ok(answers)
    }
}

/// Download links that name the object (`memory://<bucket>/<key>?expires=<seconds>`).
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryPresigner;

impl Presigner for MemoryPresigner {
    async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        expires: std::time::Duration,
    ) -> Result<String> {
        Ok(format!(
            "memory://{bucket}/{key}?expires={}",
            expires.as_secs()
        ))
    }
}
