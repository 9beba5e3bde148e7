//! The ports: one trait per side effect the use cases need. Adapters implement them (DynamoDB,
//! S3, the HTTP source, MusicGPT's API, and in-memory twins); use cases are generic over
//! [`Ports`], which names one implementation of each.

use std::collections::HashMap;
use std::future::Future;

use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::domain::api::{Lookup, Submitted};
use crate::domain::asset::{AssetItem, PendingAsset, StoredCopy, Unclaimed};
use crate::domain::by_user::{ByUserPage, ByUserQuery, PageKey};
use crate::domain::ids::Id;
use crate::domain::keys::AssetKey;
use crate::domain::listing::{TaskPage, TaskQuery};
use crate::domain::plan::{ItemWrite, Plan};
use crate::domain::requests::SubmitRequest;
use crate::domain::status::AssetState;
use crate::error::Result;

/// How a store applied a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Every write applied (status-guarded fields only where no newer status was recorded).
    Written,
    /// The callback was recorded before: nothing was written.
    Duplicate,
    /// Callbacks are parked on these conversions: nothing was written. Adopt them, then
    /// apply `plan.adopted(conversions)`.
    ParkedOn(Vec<Id>),
    /// Another write to the same items won the race: nothing was written; try again.
    Conflict,
}

/// Tasks, conversions, raw callbacks and the links that let a callback without a task id
/// find its task.
pub trait TaskStore: Clone + Send + Sync + 'static {
    /// All of the plan or none of it.
    fn apply(&self, plan: &Plan) -> impl Future<Output = Result<Applied>> + Send;

    /// One write that creates its item or, if the item exists (a redelivery), does nothing:
    /// a parked callback, a quarantined body.
    fn write_once(&self, write: &ItemWrite) -> impl Future<Output = Result<()>> + Send;

    /// The task a conversion belongs to, if any callback has told us yet.
    fn linked_task(&self, conversion: &Id) -> impl Future<Output = Result<Option<Id>>> + Send;

    /// Marks the conversion as having parked callbacks and returns its task if one is linked
    /// already: whichever of this and the linking write comes second sees the other.
    fn flag_parked(&self, conversion: &Id) -> impl Future<Output = Result<Option<Id>>> + Send;

    /// The raw bodies of the callbacks parked on a conversion.
    fn parked_bodies(&self, conversion: &Id) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// Tasks that need a look: registered (SUBMITTED) at or before `cutoff` with no status
    /// since, or with an asset PENDING whose next try was due by `cutoff`.
    fn due_tasks(&self, cutoff: u64) -> impl Future<Output = Result<Vec<Id>>> + Send;

    /// The conversion type a task was submitted or reported with, if any.
    fn task_conversion_type(
        &self,
        task: &Id,
    ) -> impl Future<Output = Result<Option<String>>> + Send;

    /// A named point in time a scheduled job got to (the reconciler's last byUser window).
    fn checkpoint(&self, name: &str) -> impl Future<Output = Result<Option<u64>>> + Send;

    fn set_checkpoint(&self, name: &str, at: u64) -> impl Future<Output = Result<()>> + Send;

    /// Every item of a task's partition, as JSON objects, in sort-key order.
    fn task_items(&self, task: &Id)
    -> impl Future<Output = Result<Vec<Map<String, Value>>>> + Send;
}

/// Asset items as the copy engine works them: claimed under a lease, then settled only while
/// the lease is still the claimer's.
pub trait AssetStore: Clone + Send + Sync + 'static {
    /// Takes the lease if the asset is PENDING, due and not leased by anyone else; concurrent
    /// claims race inside the store, where exactly one wins.
    fn claim(
        &self,
        asset: &AssetKey,
        owner: &str,
        now: u64,
        lease_until: u64,
    ) -> impl Future<Output = Result<Result<AssetItem, Unclaimed>>> + Send;

    fn get(&self, asset: &AssetKey) -> impl Future<Output = Result<Option<AssetItem>>> + Send;

    /// STORED, only while the lease is ours. `false`: the lease was lost.
    fn mark_stored(
        &self,
        asset: &AssetKey,
        owner: &str,
        copy: &StoredCopy<'_>,
        now: u64,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// STORED as `mark_stored`, and in the same transaction the `outbox` items (the file's
    /// event, created if absent) and the object's `content_type` on the asset: the event exists
    /// exactly when the file is STORED, whatever crashes afterwards. `false`: the lease was
    /// lost and nothing was written.
    fn mark_stored_with(
        &self,
        asset: &AssetKey,
        owner: &str,
        copy: &StoredCopy<'_>,
        content_type: &str,
        now: u64,
        outbox: &[ItemWrite],
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Back to PENDING for another try at `next_try_at`.
    fn mark_retry(
        &self,
        asset: &AssetKey,
        owner: &str,
        attempts: u32,
        error: &str,
        next_try_at: u64,
        now: u64,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// FAILED for good.
    fn mark_failed(
        &self,
        asset: &AssetKey,
        owner: &str,
        attempts: u32,
        error: &str,
        now: u64,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// EXPIRED: its deadline passed before a copy succeeded.
    fn mark_expired(
        &self,
        asset: &AssetKey,
        owner: &str,
        attempts: u32,
        error: &str,
        now: u64,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Gives the lease up without counting an attempt.
    fn release(&self, asset: &AssetKey, owner: &str) -> impl Future<Output = Result<bool>> + Send;

    /// The PENDING assets of one task.
    fn pending_in_task(&self, task: &Id) -> impl Future<Output = Result<Vec<AssetKey>>> + Send;

    /// Every PENDING asset of every task, soonest next try first.
    fn pending_assets(&self) -> impl Future<Output = Result<Vec<PendingAsset>>> + Send;

    /// Every asset in `state`, by its `next_try_at` (for FAILED and EXPIRED: when they ended).
    fn assets_in_state(
        &self,
        state: AssetState,
    ) -> impl Future<Output = Result<Vec<PendingAsset>>> + Send;

    /// A FAILED or EXPIRED asset back to PENDING, due now, with a new deadline; `false` when
    /// it is in neither state.
    fn redrive(
        &self,
        asset: &AssetKey,
        now: u64,
        deadline_at: u64,
    ) -> impl Future<Output = Result<bool>> + Send;
}

/// A body read chunk by chunk. `Ok(None)` means the body is complete and verified.
pub trait ChunkSource: Send {
    fn next_chunk(&mut self) -> impl Future<Output = Result<Option<Bytes>>> + Send;

    /// The body's length as its source announced it (a Content-Length the body is checked
    /// against), if it did: lets a sink prepare for a large body before reading it.
    fn announced_len(&self) -> Option<u64> {
        None
    }
}

/// A download under way: its chunks, and what the source said about them.
pub trait Download: ChunkSource {
    /// The source's own Content-Type, unless it said nothing useful.
    fn content_type(&self) -> Option<&str>;
}

/// Where files come from: MusicGPT's buckets, behind a guard.
pub trait AudioSource: Clone + Send + Sync + 'static {
    type Download: Download;

    /// Returns once a successful answer's headers are in; nothing is sent for a refused URL.
    fn open(&self, url: &str) -> impl Future<Output = Result<Self::Download>> + Send;
}

/// Where an object goes and what it says about itself.
#[derive(Debug, Clone)]
pub struct ObjectSpec {
    pub key: String,
    pub content_type: String,
    /// User metadata; it must include `source-url`, which `existing` matches.
    pub metadata: HashMap<String, String>,
}

/// What was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub etag: String,
    pub size: u64,
    /// Hex SHA-256 of exactly the bytes stored.
    pub sha256: String,
    /// Whether the object already says its SHA-256; if not, [`ObjectSink::tag`] puts it there.
    pub tagged: bool,
}

/// The owner's bucket.
pub trait ObjectSink: Clone + Send + Sync + 'static {
    fn bucket(&self) -> &str;

    /// A complete earlier copy of `source_url` at `key`, if there is one.
    fn existing(
        &self,
        key: &str,
        source_url: &str,
        stop: Option<Instant>,
    ) -> impl Future<Output = Result<Option<Written>>> + Send;

    /// Streams `body` into `spec.key`; the object appears only once the body has been read to
    /// its verified end. Past `stop`, the write is abandoned and leaves nothing behind.
    fn write(
        &self,
        spec: &ObjectSpec,
        body: &mut impl ChunkSource,
        stop: Option<Instant>,
    ) -> impl Future<Output = Result<Written>> + Send;

    /// Puts the SHA-256 on an object written without it (one whose hash was known only once
    /// its upload was complete). The engine runs it beside the STORED write: the asset's item
    /// holds the hash either way.
    fn tag(&self, key: &str, sha256: &str) -> impl Future<Output = Result<()>> + Send;
}

/// MusicGPT's public API.
pub trait MusicGpt: Clone + Send + Sync + 'static {
    /// `GET /v1/byId` for a task.
    fn by_task(
        &self,
        conversion_type: &str,
        task: &Id,
    ) -> impl Future<Output = Result<Lookup>> + Send;

    /// Submits any conversion (`domain::requests`) to its endpoint, as JSON, a form, or
    /// multipart with its local files; the request's checks run first, so nothing invalid is
    /// sent. A 4xx is `ProviderRejected` with MusicGPT's message; a 429 is `Provider`
    /// (retryable), naming the limit it hit.
    fn submit(&self, request: &SubmitRequest) -> impl Future<Output = Result<Submitted>> + Send;

    /// One page of `GET /v1/byUser`; `page` is the previous page's `LastEvaluatedKey`.
    fn by_user(
        &self,
        query: &ByUserQuery,
        page: Option<&PageKey>,
    ) -> impl Future<Output = Result<ByUserPage>> + Send;
}

/// The outbox: event items (`EVENT#<event id>` in their task's partition, created with
/// `TaskStore::write_once`) stay in the `events_due` index while their publishing or
/// forwarding is due.
pub trait EventLog: Clone + Send + Sync + 'static {
    /// Events whose delivery is due by `cutoff`, soonest first, at most `limit`.
    fn due_events(
        &self,
        cutoff: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DueEvent>>> + Send;

    /// Takes a short claim on a due event so that concurrent announcers (four copies of one
    /// task settling at once, the sweep) do not all deliver it: `true` for exactly one of
    /// them until the claim passes `until` or [`EventLog::update_event`] releases it.
    fn claim_event(
        &self,
        task: &Id,
        event_id: &str,
        now: u64,
        until: u64,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Records how an event's delivery went and releases its claim: sets `set` on its item,
    /// and `due_at` (`None`: nothing more is due; the item leaves the index).
    fn update_event(
        &self,
        task: &Id,
        event_id: &str,
        set: &[(&'static str, Value)],
        due_at: Option<u64>,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// An event item found in the `events_due` index.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct DueEvent {
    pub task_id: String,
    pub event_id: String,
    pub due_at: u64,
}

/// Tasks by status through the `tasks_by_status` index (never a scan).
pub trait TaskIndex: Clone + Send + Sync + 'static {
    /// One page of tasks with the query's status created since `since`, newest first.
    fn list_tasks(&self, query: &TaskQuery) -> impl Future<Output = Result<TaskPage>> + Send;
}

/// One event for the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusEvent {
    /// The stable id (also `detail.event_id`).
    pub event_id: String,
    pub detail_type: &'static str,
    /// The detail as JSON text.
    pub detail: String,
    /// When it happened, epoch seconds.
    pub time: u64,
    /// ARNs of the objects it is about.
    pub resources: Vec<String>,
}

/// The owner's event bus (EventBridge).
pub trait EventBus: Clone + Send + Sync + 'static {
    /// Publishes a batch; answers per event, in order: `Err` with the reason for each one the
    /// bus refused. `Err` for the whole call when the bus could not be reached.
    fn publish(
        &self,
        events: &[BusEvent],
    ) -> impl Future<Output = Result<Vec<std::result::Result<(), String>>>> + Send;
}

/// How one POST to the owner's webhook ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardAnswer {
    /// A 2xx.
    Delivered(u16),
    /// 410 Gone: the receiver wants no more.
    Gone,
    /// Anything else that may pass: another status, a timeout, a reset.
    Failed(String),
    /// The target breaks the guard rules: nothing was sent.
    Refused(String),
}

/// The owner's own webhook (`FORWARD_URL`), signed per Standard Webhooks.
pub trait Forwarder: Clone + Send + Sync + 'static {
    /// POSTs `payload` (JSON) with `webhook-id` = `event_id` and `webhook-timestamp` = `now`.
    fn forward(
        &self,
        event_id: &str,
        payload: &str,
        now: u64,
    ) -> impl Future<Output = ForwardAnswer> + Send;
}

/// Time-limited download links to stored objects.
pub trait Presigner: Clone + Send + Sync + 'static {
    fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        expires: std::time::Duration,
    ) -> impl Future<Output = Result<String>> + Send;
}

/// Wall-clock time in epoch seconds, replaceable so tests can move it.
pub trait Clock: Send + Sync + 'static {
    fn now_secs(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_secs(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default()
    }
}

/// One choice of adapter for every port; the use cases are generic over it.
pub trait Ports: Clone + Send + Sync + 'static {
    type Tasks: TaskStore;
    type Assets: AssetStore;
    type Source: AudioSource;
    type Sink: ObjectSink;
    type Api: MusicGpt;
}
