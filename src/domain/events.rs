//! What the owner's application is told, decided from a task's items alone: a view of the task
//! (what the read API answers and every event carries), the rule for when a task is settled,
//! and which events are owed. Pure: the announce use case (`app::announce`) reads the items,
//! writes the events this module asks for and delivers them.
//!
//! Event ids are stable: a hash of the detail type's role, the task and the subject (the asset's
//! sort key, or `settled`), so a retry, a redelivery or two racing workers name the same event.

use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::domain::asset::{AssetItem, StoredCopy};
use crate::domain::conversion::{ConversionType, ENDPOINTS};
use crate::domain::ids::Id;
use crate::domain::keys;
use crate::domain::media::content_type_for;
use crate::domain::plan::ItemWrite;
use crate::domain::status::{AssetState, ItemType, TaskStatus};

/// The `source` of every event on the bus (contract).
pub const SOURCE: &str = "musicgpt-webhook";
/// `detail.version`; the schemas are `schemas/events/<detail type>.v1.json`.
pub const DETAIL_VERSION: &str = "1";
/// Sort-key prefix of the event items (the outbox), one per event in its task's partition.
pub const EVENT_SK_PREFIX: &str = "EVENT#";
/// The value of `outbox` on an event item while something about it is still due; the
/// `events_due` index (`outbox` / `due_at`) holds only those items.
pub const OUTBOX_DUE: &str = "DUE";
/// Lyrics longer than this (bytes) are cut in events: an EventBridge entry holds 256 KB.
pub const MAX_EVENT_LYRICS_BYTES: usize = 16 * 1024;
/// The subject of a task's one settlement event.
const SETTLED: &str = "settled";

/// The four kinds of event (contract: the `detail-type` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DetailType {
    AssetStored,
    TaskCompleted,
    TaskFailed,
    TaskUpdated,
}

impl DetailType {
    pub const ALL: [DetailType; 4] = [
        DetailType::AssetStored,
        DetailType::TaskCompleted,
        DetailType::TaskFailed,
        DetailType::TaskUpdated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DetailType::AssetStored => "Asset Stored",
            DetailType::TaskCompleted => "Task Completed",
            DetailType::TaskFailed => "Task Failed",
            DetailType::TaskUpdated => "Task Updated",
        }
    }

    pub fn parse(text: &str) -> Option<DetailType> {
        DetailType::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// `asset-stored`, ...: the schema's file name stem.
    pub fn slug(self) -> &'static str {
        match self {
            DetailType::AssetStored => "asset-stored",
            DetailType::TaskCompleted => "task-completed",
            DetailType::TaskFailed => "task-failed",
            DetailType::TaskUpdated => "task-updated",
        }
    }

    /// The order events of one batch are delivered in: files, then updates, then settlement.
    pub fn order(self) -> u8 {
        match self {
            DetailType::AssetStored => 0,
            DetailType::TaskUpdated => 1,
            DetailType::TaskCompleted | DetailType::TaskFailed => 2,
        }
    }

    fn is_settlement(self) -> bool {
        matches!(self, DetailType::TaskCompleted | DetailType::TaskFailed)
    }
}

/// `evt_` and 32 hex digits of SHA-256 over the role, the task and the subject. A settlement's
/// role is `settled` whatever its outcome, so a task has exactly one.
pub fn event_id(detail_type: DetailType, task: &str, subject: &str) -> String {
    let role = if detail_type.is_settlement() {
        SETTLED
    } else {
        detail_type.slug()
    };
    let digest = Sha256::digest(format!("{role}\n{task}\n{subject}").as_bytes());
    format!("evt_{}", &hex::encode(digest)[..32])
}

/// One song (or other output) of a task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConversionView {
    pub conversion_id: String,
    pub status: Option<String>,
    pub title: Option<String>,
    pub duration_seconds: Option<f64>,
    pub lyrics: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub lyrics_truncated: bool,
}

/// One file of a task: where it stands, and once STORED where it is and what it holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileView {
    /// The asset's sort key: what an event about this file is keyed by.
    #[serde(skip)]
    pub sk: String,
    pub kind: String,
    pub conversion_id: Option<String>,
    pub stem: Option<String>,
    pub format: Option<String>,
    pub state: AssetState,
    pub bucket: Option<String>,
    pub key: String,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub content_type: String,
    pub stored_at: Option<u64>,
    pub last_error: Option<String>,
}

impl FileView {
    /// The file of `item` as a copy just made left it: STORED, with what was stored.
    pub fn stored_copy(
        item: &AssetItem,
        copy: &StoredCopy<'_>,
        content_type: &str,
        now: u64,
    ) -> FileView {
        FileView {
            sk: item.sk.clone(),
            kind: item.asset_kind.clone().unwrap_or_else(|| "audio".into()),
            conversion_id: item.conversion_id.clone(),
            stem: None,
            format: item.ext.clone(),
            state: AssetState::Stored,
            bucket: Some(copy.bucket.to_owned()),
            key: copy.s3_key.to_owned(),
            size: Some(copy.size),
            sha256: Some(copy.sha256.to_owned()),
            content_type: content_type.to_owned(),
            stored_at: Some(now),
            last_error: None,
        }
    }
}

/// A task as its items say.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskView {
    pub task_id: String,
    pub conversion_type: Option<String>,
    pub status: Option<String>,
    pub status_message: Option<String>,
    pub created_at: Option<u64>,
    /// The conversions the task is known to produce (from the cover callback or submission).
    pub expected_conversions: Vec<String>,
    pub conversions: Vec<ConversionView>,
    pub files: Vec<FileView>,
    /// Title, duration and lyrics of a callback that named no conversion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lyrics: Option<String>,
}

/// An event already recorded for a task (an `EVENT#` item).
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub event_id: String,
    pub detail_type: DetailType,
    /// The asset's sort key for file events, `settled` for the settlement.
    pub subject: String,
    pub detail: Value,
    pub created_at: u64,
    /// Published to the bus (or no bus configured when it was due).
    pub published_at: Option<u64>,
    pub forward: ForwardProgress,
    pub due: bool,
}

/// Where forwarding an event to the owner's webhook stands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardProgress {
    /// `None`: not tried yet.
    pub state: Option<ForwardState>,
    pub attempts: u32,
    pub next_at: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardState {
    Pending,
    Delivered,
    /// Out of retries: kept as the dead-letter record.
    Dead,
    /// The receiver answered 410 Gone: forwarding is off for it.
    Disabled,
}

impl ForwardState {
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardState::Pending => "PENDING",
            ForwardState::Delivered => "DELIVERED",
            ForwardState::Dead => "DEAD",
            ForwardState::Disabled => "DISABLED",
        }
    }

    pub fn parse(text: &str) -> Option<ForwardState> {
        [
            ForwardState::Pending,
            ForwardState::Delivered,
            ForwardState::Dead,
            ForwardState::Disabled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    pub fn is_final(self) -> bool {
        !matches!(self, ForwardState::Pending)
    }
}

/// Whether a task has settled, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Not yet; the text says what it waits for.
    Open(String),
    Completed,
    Failed(String),
}

fn text(item: &Map<String, Value>, name: &str) -> Option<String> {
    item.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn number(item: &Map<String, Value>, name: &str) -> Option<u64> {
    let value = item.get(name)?;
    value
        .as_u64()
        .or_else(|| value.as_f64().map(|f| f as u64))
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

fn float(item: &Map<String, Value>, name: &str) -> Option<f64> {
    let value = item.get(name)?;
    value
        .as_f64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

fn item_type(item: &Map<String, Value>) -> Option<String> {
    text(item, "item_type")
}

impl TaskView {
    /// The view of a task's partition (`TaskStore::task_items`); `None` without a task item.
    pub fn from_items(items: &[Map<String, Value>]) -> Option<TaskView> {
        let task = items
            .iter()
            .find(|i| item_type(i).as_deref() == Some(ItemType::Task.as_str()))?;
        let mut view = TaskView {
            task_id: text(task, "task_id")?,
            conversion_type: text(task, "conversion_type"),
            status: text(task, "status"),
            status_message: text(task, "status_message"),
            created_at: number(task, "created_at"),
            expected_conversions: task
                .get("conversion_ids")
                .and_then(Value::as_array)
                .map(|ids| {
                    ids.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            conversions: Vec::new(),
            files: Vec::new(),
            title: text(task, "title"),
            duration_seconds: float(task, "duration_seconds"),
            lyrics: None,
        };
        let mut lyrics: Vec<(Option<String>, String)> = Vec::new();
        for item in items {
            match item_type(item).as_deref() {
                Some(t) if t == ItemType::Conversion.as_str() => {
                    if let Some(conversion_id) = text(item, "conversion_id") {
                        view.conversions.push(ConversionView {
                            conversion_id,
                            status: text(item, "status"),
                            title: text(item, "title"),
                            duration_seconds: float(item, "duration_seconds"),
                            lyrics: None,
                            lyrics_truncated: false,
                        });
                    }
                }
                Some(t) if t == ItemType::Lyrics.as_str() => {
                    if let Some(words) = text(item, "lyrics") {
                        lyrics.push((text(item, "conversion_id"), words));
                    }
                }
                Some(t) if t == ItemType::Asset.as_str() => {
                    if let Some(file) = file_of(item) {
                        view.files.push(file);
                    }
                }
                _ => {}
            }
        }
        for (conversion, words) in lyrics {
            match conversion {
                Some(id) => {
                    if let Some(c) = view.conversions.iter_mut().find(|c| c.conversion_id == id) {
                        c.lyrics = Some(words);
                    }
                }
                None => view.lyrics = Some(words),
            }
        }
        Some(view)
    }

    pub fn file(&self, sk: &str) -> Option<&FileView> {
        self.files.iter().find(|f| f.sk == sk)
    }

    fn status(&self) -> Option<TaskStatus> {
        self.status.as_deref().map(TaskStatus::parse)
    }

    /// How many songs a task of this type makes when nothing has named them yet: two for the
    /// song generators (Music AI, Remix, Extend, ...), whose callbacks come one per song.
    fn songs_expected(&self) -> usize {
        let Some(kind) = self
            .conversion_type
            .as_deref()
            .and_then(ConversionType::parse)
        else {
            return 0;
        };
        ENDPOINTS
            .iter()
            .filter(|e| e.conversion_type == kind)
            .map(|e| e.expected_conversions())
            .max()
            .filter(|n| *n >= 2)
            .unwrap_or(0)
    }

    /// The rule (README, "Events"): a task is settled when
    /// 1. its status is terminal (COMPLETED, FAILED, ERROR), and
    /// 2. no file is PENDING (every recorded file is STORED, FAILED or EXPIRED), and
    /// 3. unless the status is a failure: every expected conversion has reported a terminal
    ///    status (its audio callback came): those the cover callback or the submission named,
    ///    or, for a song generator none has named yet, two songs. The album cover (opt-in) is
    ///    not waited for: one that comes later is a file stored after the settlement.
    ///
    /// It is Completed when the status is COMPLETED, every conversion completed and every file
    /// is STORED; Failed otherwise, with the reason.
    pub fn settlement(&self) -> Settlement {
        let Some(status) = self.status().filter(TaskStatus::is_terminal) else {
            return Settlement::Open(format!(
                "status {} is not terminal",
                self.status.as_deref().unwrap_or("(none)")
            ));
        };
        let pending = self
            .files
            .iter()
            .filter(|f| f.state == AssetState::Pending)
            .count();
        if pending > 0 {
            return Settlement::Open(format!("{pending} file(s) still PENDING"));
        }
        if status.is_failure() {
            return Settlement::Failed(
                self.status_message
                    .clone()
                    .unwrap_or_else(|| format!("MusicGPT reported {status}")),
            );
        }
        let conversion_status = |id: &str| {
            self.conversions
                .iter()
                .find(|c| c.conversion_id == id)
                .and_then(|c| c.status.as_deref())
                .map(TaskStatus::parse)
        };
        let waiting: Vec<&str> = self
            .expected_conversions
            .iter()
            .filter(|id| !conversion_status(id).is_some_and(|s| s.is_terminal()))
            .map(String::as_str)
            .collect();
        if !waiting.is_empty() {
            return Settlement::Open(format!("waiting for conversion(s) {}", waiting.join(", ")));
        }
        let songs = self.songs_expected();
        let reported = self
            .conversions
            .iter()
            .filter(|c| {
                c.status
                    .as_deref()
                    .map(TaskStatus::parse)
                    .is_some_and(|s| s.is_terminal())
            })
            .count();
        if self.expected_conversions.is_empty() && reported < songs {
            return Settlement::Open(format!("{reported} of {songs} songs reported"));
        }
        let failed_conversions: Vec<&str> = self
            .conversions
            .iter()
            .filter(|c| {
                c.status
                    .as_deref()
                    .map(TaskStatus::parse)
                    .is_some_and(|s| s.is_failure())
            })
            .map(|c| c.conversion_id.as_str())
            .collect();
        if !failed_conversions.is_empty() {
            return Settlement::Failed(format!(
                "conversion(s) failed: {}",
                failed_conversions.join(", ")
            ));
        }
        let unstored: Vec<String> = self
            .files
            .iter()
            .filter(|f| f.state != AssetState::Stored)
            .map(|f| format!("{} {}", f.key, f.state.as_str()))
            .collect();
        if !unstored.is_empty() {
            return Settlement::Failed(format!("file(s) not stored: {}", unstored.join(", ")));
        }
        Settlement::Completed
    }

    /// The same view with one file STORED as a copy just made (for the event written in the
    /// same transaction as the STORED mark).
    pub fn with_stored(mut self, stored: FileView) -> TaskView {
        match self.files.iter_mut().find(|f| f.sk == stored.sk) {
            Some(file) => {
                let stem = file.stem.take();
                *file = stored;
                file.stem = file.stem.take().or(stem);
            }
            None => self.files.push(stored),
        }
        self
    }
}

fn file_of(item: &Map<String, Value>) -> Option<FileView> {
    let state = match text(item, "state")?.as_str() {
        "PENDING" => AssetState::Pending,
        "STORED" => AssetState::Stored,
        "FAILED" => AssetState::Failed,
        "EXPIRED" => AssetState::Expired,
        _ => return None,
    };
    let format = text(item, "ext");
    let stored = state == AssetState::Stored;
    Some(FileView {
        sk: text(item, "sk")?,
        kind: text(item, "asset_kind").unwrap_or_else(|| "audio".into()),
        conversion_id: text(item, "conversion_id"),
        stem: text(item, "stem"),
        content_type: text(item, "content_type")
            .unwrap_or_else(|| content_type_for(format.as_deref().unwrap_or_default()).into()),
        format,
        state,
        bucket: text(item, "bucket").filter(|_| stored),
        key: text(item, "s3_key")?,
        size: number(item, "size_bytes").filter(|_| stored),
        sha256: text(item, "sha256").filter(|_| stored),
        stored_at: number(item, "stored_at").filter(|_| stored),
        last_error: text(item, "last_error").filter(|_| !stored),
    })
}

/// An event item as stored in its task's partition, read back.
pub fn recorded_events(items: &[Map<String, Value>]) -> Vec<RecordedEvent> {
    items
        .iter()
        .filter(|i| item_type(i).as_deref() == Some(ItemType::Event.as_str()))
        .filter_map(|item| {
            let detail = serde_json::from_str(&text(item, "detail")?).ok()?;
            Some(RecordedEvent {
                event_id: text(item, "event_id")?,
                detail_type: DetailType::parse(&text(item, "detail_type")?)?,
                subject: text(item, "subject").unwrap_or_default(),
                detail,
                created_at: number(item, "created_at").unwrap_or_default(),
                published_at: number(item, "published_at"),
                forward: ForwardProgress {
                    state: text(item, "forward_state")
                        .as_deref()
                        .and_then(ForwardState::parse),
                    attempts: number(item, "forward_attempts").unwrap_or_default() as u32,
                    next_at: number(item, "forward_next_at"),
                },
                due: text(item, "outbox").as_deref() == Some(OUTBOX_DUE),
            })
        })
        .collect()
}

/// An event to record, built as data; [`NewEvent::write`] makes its item.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: String,
    pub detail_type: DetailType,
    pub task_id: String,
    pub subject: String,
    pub detail: Value,
    pub created_at: u64,
}

impl NewEvent {
    fn new(
        detail_type: DetailType,
        view: &TaskView,
        subject: &str,
        now: u64,
        extra: Map<String, Value>,
    ) -> NewEvent {
        let event_id = event_id(detail_type, &view.task_id, subject);
        NewEvent {
            detail: detail(&event_id, detail_type, view, now, extra),
            event_id,
            detail_type,
            task_id: view.task_id.clone(),
            subject: subject.to_owned(),
            created_at: now,
        }
    }

    /// The `Asset Stored` event of one file of `view` (which shows it STORED).
    pub fn asset_stored(view: &TaskView, file: &FileView, now: u64) -> NewEvent {
        let extra = Map::from_iter([("asset".to_owned(), json!(file))]);
        NewEvent::new(DetailType::AssetStored, view, &file.sk, now, extra)
    }

    /// The event item, created if absent (its id is its key, so a retry writes nothing new).
    /// `due_at` is when the sweep takes it over if its writer does not deliver it.
    pub fn write(&self, due_at: u64) -> Option<ItemWrite> {
        let task = Id::parse(&self.task_id)?;
        let mut write = ItemWrite::new(
            keys::task_pk(&task),
            format!("{EVENT_SK_PREFIX}{}", self.event_id),
        );
        for (name, value) in [
            ("item_type", json!(ItemType::Event)),
            ("task_id", json!(self.task_id)),
            ("event_id", json!(self.event_id)),
            ("detail_type", json!(self.detail_type.as_str())),
            ("subject", json!(self.subject)),
            ("detail", json!(self.detail.to_string())),
            ("created_at", json!(self.created_at)),
            ("outbox", json!(OUTBOX_DUE)),
            ("due_at", json!(due_at)),
        ] {
            write.set_if_absent.push((name, value));
        }
        Some(write)
    }
}

/// The detail every event carries (schema `v1`): the task, its conversions, every file.
fn detail(
    event_id: &str,
    detail_type: DetailType,
    view: &TaskView,
    now: u64,
    extra: Map<String, Value>,
) -> Value {
    let conversions: Vec<Value> = view
        .conversions
        .iter()
        .map(|c| {
            let mut c = c.clone();
            if let Some(lyrics) = &c.lyrics
                && lyrics.len() > MAX_EVENT_LYRICS_BYTES
            {
                let mut end = MAX_EVENT_LYRICS_BYTES;
                while !lyrics.is_char_boundary(end) {
                    end -= 1;
                }
                c.lyrics = Some(lyrics[..end].to_owned());
                c.lyrics_truncated = true;
            }
            json!(c)
        })
        .collect();
    let mut detail = json!({
        "version": DETAIL_VERSION,
        "event_id": event_id,
        "type": detail_type.as_str(),
        "occurred_at": now,
        "task_id": view.task_id,
        "conversion_type": view.conversion_type,
        "status": view.status,
        "status_message": view.status_message,
        "conversions": conversions,
        "files": view.files,
    });
    if let Some(map) = detail.as_object_mut() {
        map.extend(extra);
    }
    detail
}

/// The events a task owes now that its writers have not recorded yet:
/// - an `Asset Stored` for every STORED file without one (normally written together with the
///   STORED mark; this catches files stored before events were turned on);
/// - once settled, its one `Task Completed` or `Task Failed`;
/// - after that, a `Task Updated` for every file STORED later than the settlement.
pub fn owed_events(view: &TaskView, recorded: &[RecordedEvent], now: u64) -> Vec<NewEvent> {
    let mut owed = Vec::new();
    let has = |t: DetailType, subject: &str| {
        recorded
            .iter()
            .any(|e| e.detail_type == t && e.subject == subject)
    };
    for file in view.files.iter().filter(|f| f.state == AssetState::Stored) {
        if !has(DetailType::AssetStored, &file.sk) {
            owed.push(NewEvent::asset_stored(view, file, now));
        }
    }
    let settled = recorded.iter().find(|e| e.detail_type.is_settlement());
    match settled {
        None => {
            let (detail_type, reason) = match view.settlement() {
                Settlement::Open(_) => return owed,
                Settlement::Completed => (DetailType::TaskCompleted, None),
                Settlement::Failed(reason) => (DetailType::TaskFailed, Some(reason)),
            };
            let mut extra = Map::new();
            if let Some(reason) = reason {
                extra.insert("reason".into(), json!(reason));
            }
            owed.push(NewEvent::new(detail_type, view, SETTLED, now, extra));
        }
        Some(settlement) => {
            let stored_then = stored_keys(&settlement.detail);
            for file in view.files.iter().filter(|f| f.state == AssetState::Stored) {
                let late = !stored_then.contains(&file.key);
                if late && !has(DetailType::TaskUpdated, &file.sk) {
                    let extra = Map::from_iter([("asset".to_owned(), json!(file))]);
                    owed.push(NewEvent::new(
                        DetailType::TaskUpdated,
                        view,
                        &file.sk,
                        now,
                        extra,
                    ));
                }
            }
        }
    }
    owed
}

/// The keys of the files an event's detail shows STORED.
fn stored_keys(detail: &Value) -> Vec<String> {
    detail["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["state"] == json!(AssetState::Stored))
        .filter_map(|f| f["key"].as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(values: Value) -> Vec<Map<String, Value>> {
        values
            .as_array()
            .expect("array")
            .iter()
            .map(|v| v.as_object().expect("object").clone())
            .collect()
    }

    fn asset(sk: &str, key: &str, state: &str) -> Value {
        json!({"pk": "TASK#t", "sk": sk, "item_type": "ASSET", "task_id": "t",
               "asset_kind": "audio", "ext": "mp3", "s3_key": key, "state": state,
               "bucket": "b", "size_bytes": 3, "sha256": "abc", "conversion_id": "c1"})
    }

    fn music_ai(cover: bool, second_song: bool, state: &str) -> TaskView {
        let mut list = vec![
            json!({"sk": "TASK", "item_type": "TASK", "task_id": "t", "status": "COMPLETED",
                   "conversion_type": "Music AI", "conversion_ids": if cover { json!(["c1", "c2"]) } else { json!(null) }}),
            json!({"sk": "CONVERSION#c1", "item_type": "CONVERSION", "conversion_id": "c1",
                   "status": "COMPLETED", "title": "Song", "duration_seconds": 12.5}),
            json!({"sk": "LYRICS#c1", "item_type": "LYRICS", "conversion_id": "c1", "lyrics": "la la"}),
            asset("ASSET#c1#mp3", "t/c1.mp3", state),
        ];
        if second_song {
            list.push(json!({"sk": "CONVERSION#c2", "item_type": "CONVERSION",
                             "conversion_id": "c2", "status": "COMPLETED"}));
        }
        if cover {
            list.push(json!({"sk": "CALLBACK#x", "item_type": "CALLBACK",
                             "subtype": "album_cover_generation"}));
            list.push(asset("ASSET#t#cover", "t/cover.png", "STORED"));
        }
        TaskView::from_items(&items(json!(list))).expect("view")
    }

    #[test]
    fn music_ai_settles_with_both_songs_in_and_nothing_pending() {
        // No cover yet: both songs reported is enough (the cover is opt-in).
        assert_eq!(
            music_ai(false, true, "STORED").settlement(),
            Settlement::Completed
        );
        // One song only, named or not.
        assert!(matches!(
            music_ai(true, false, "STORED").settlement(),
            Settlement::Open(_)
        ));
        assert!(matches!(
            music_ai(false, false, "STORED").settlement(),
            Settlement::Open(_)
        ));
        assert!(matches!(
            music_ai(true, true, "PENDING").settlement(),
            Settlement::Open(_)
        ));
        assert_eq!(
            music_ai(true, true, "STORED").settlement(),
            Settlement::Completed
        );
        assert!(matches!(
            music_ai(true, true, "EXPIRED").settlement(),
            Settlement::Failed(_)
        ));
        let view = music_ai(true, true, "STORED");
        assert_eq!(view.conversions[0].lyrics.as_deref(), Some("la la"));
    }

    #[test]
    fn events_are_owed_once_with_stable_ids() {
        let view = music_ai(true, true, "STORED");
        let owed = owed_events(&view, &[], 10);
        let types: Vec<_> = owed.iter().map(|e| e.detail_type).collect();
        assert_eq!(
            types,
            [
                DetailType::AssetStored,
                DetailType::AssetStored,
                DetailType::TaskCompleted
            ]
        );
        let again = owed_events(&view, &[], 99);
        assert_eq!(owed[2].event_id, again[2].event_id);
        let recorded: Vec<RecordedEvent> = owed
            .iter()
            .map(|e| RecordedEvent {
                event_id: e.event_id.clone(),
                detail_type: e.detail_type,
                subject: e.subject.clone(),
                detail: e.detail.clone(),
                created_at: e.created_at,
                published_at: None,
                forward: ForwardProgress::default(),
                due: true,
            })
            .collect();
        assert!(owed_events(&view, &recorded, 11).is_empty());
        // A file stored after the settlement: its own Asset Stored and a Task Updated.
        let mut later = view.clone();
        later.files.push(FileView {
            sk: "ASSET#c2#wav".into(),
            key: "t/c2.wav".into(),
            ..later.files[0].clone()
        });
        let types: Vec<_> = owed_events(&later, &recorded, 12)
            .iter()
            .map(|e| e.detail_type)
            .collect();
        assert_eq!(types, [DetailType::AssetStored, DetailType::TaskUpdated]);
    }

    #[test]
    fn a_failed_task_settles_as_failed_once_nothing_is_pending() {
        let view = TaskView::from_items(&items(json!([
            {"sk": "TASK", "item_type": "TASK", "task_id": "t", "status": "FAILED",
             "status_message": "no credits"}
        ])))
        .expect("view");
        assert_eq!(view.settlement(), Settlement::Failed("no credits".into()));
        let owed = owed_events(&view, &[], 1);
        assert_eq!(owed.len(), 1);
        assert_eq!(owed[0].detail["reason"], json!("no credits"));
        assert_eq!(
            event_id(DetailType::TaskFailed, "t", "settled"),
            event_id(DetailType::TaskCompleted, "t", "settled")
        );
    }
}
