//! What a callback writes (its plan): a pure translation from a parsed callback to item writes,
//! so the rules that make duplicates harmless and arrival order irrelevant are visible in one
//! place. A store applies a whole plan at once (`app::ports::TaskStore::apply`).
//!
//! Every write merges: fields a callback owns are set, shared fields are set only if absent,
//! status (and what comes with it) only by a callback whose status order is not older, and
//! the raw callback is created only once, which is how duplicates are recognised.

use serde_json::{Value, json};

use crate::domain::callback::{Callback, CallbackKind};
use crate::domain::ids::Id;
use crate::domain::keys::{self, KeyPrefix};
use crate::domain::retry::FileRetention;
use crate::domain::status::{AssetState, ItemType, TaskStatus};

/// When a write may apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Always,
    /// Only if the item does not exist yet: the raw callback, whose presence marks a duplicate.
    CreateOnly,
    /// The `guarded` fields apply only if no newer status was recorded (`status_order`).
    NewerStatus(String),
    /// The conversion link applies only if no callback is parked on it; otherwise the parked
    /// callbacks are adopted first.
    NoParkedCallbacks(Id),
}

/// One item's update, applied together with the rest of its plan.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemWrite {
    pub pk: String,
    pub sk: String,
    pub set: Vec<(&'static str, Value)>,
    pub set_if_absent: Vec<(&'static str, Value)>,
    pub add: Vec<(&'static str, i64)>,
    pub guarded: Vec<(&'static str, Value)>,
    pub condition: Condition,
}

impl ItemWrite {
    pub fn new(pk: String, sk: String) -> ItemWrite {
        ItemWrite {
            pk,
            sk,
            set: Vec::new(),
            set_if_absent: Vec::new(),
            add: Vec::new(),
            guarded: Vec::new(),
            condition: Condition::Always,
        }
    }

    fn set(mut self, name: &'static str, value: impl Into<Option<Value>>) -> Self {
        if let Some(value) = value.into() {
            self.set.push((name, value));
        }
        self
    }

    fn set_if_absent(mut self, name: &'static str, value: impl Into<Option<Value>>) -> Self {
        if let Some(value) = value.into() {
            self.set_if_absent.push((name, value));
        }
        self
    }

    /// Drops the status-guarded part, for when a newer status is already recorded.
    pub fn without_guard(&mut self) {
        self.guarded.clear();
        self.condition = Condition::Always;
    }
}

/// Every write of one callback; a store applies all of them or none.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub writes: Vec<ItemWrite>,
}

impl Plan {
    /// The conversions whose parked callbacks have been adopted: their links may now be
    /// written whatever is parked on them.
    pub fn adopted(mut self, conversions: &[Id]) -> Plan {
        for write in &mut self.writes {
            if matches!(&write.condition, Condition::NoParkedCallbacks(c) if conversions.contains(c))
            {
                write.condition = Condition::Always;
            }
        }
        self
    }
}

/// The clock and settings that enter the items.
#[derive(Debug, Clone)]
pub struct RecordContext {
    pub key_prefix: KeyPrefix,
    /// Seconds since the epoch.
    pub now: u64,
    pub retention_secs: u64,
    /// How long MusicGPT keeps files: each asset's deadline.
    pub files: FileRetention,
}

/// Orders statuses so any arrival order converges: terminal beats non-terminal, then the
/// sender's `updatedAt`, then the status rank, then the callback hash as a last tiebreak.
pub fn status_order(status: &TaskStatus, updated_at: Option<&str>, sha256: &str) -> String {
    let terminal = u8::from(status.is_terminal());
    let rank = status.rank();
    format!("{terminal}#{}#{rank:02}#{sha256}", updated_at.unwrap_or(""))
}

/// The writes of one callback whose task is known. `link_conversions` is false when this
/// callback is itself being adopted from a parked state (its adopter writes the link).
pub fn callback_plan(
    cb: &Callback,
    task: &Id,
    ctx: &RecordContext,
    link_conversions: bool,
) -> Plan {
    let pk = keys::task_pk(task);
    let mut writes = vec![raw_callback(cb, task, ctx)];

    let mut task_item = ItemWrite::new(pk.clone(), keys::TASK_SK.to_owned())
        .set("item_type", json!(ItemType::Task))
        .set("task_id", json!(task))
        .set_if_absent("created_at", json!(ctx.now))
        .set_if_absent(
            "conversion_type",
            cb.conversion_type.as_ref().map(|v| json!(v)),
        );
    task_item.add.push(("callback_count", 1));
    if !cb.related_conversion_ids.is_empty() {
        task_item = task_item.set("conversion_ids", json!(cb.related_conversion_ids));
    }
    if cb.conversion_id.is_none() {
        describe(&mut task_item, cb);
        record_stream(&mut task_item, cb, ctx);
        let task_sks = [
            (keys::TASK_LYRICS_SK, Text::Lyrics),
            (keys::TASK_TRANSCRIPT_SK, Text::Transcript),
        ];
        for (sk, text) in task_sks {
            writes.extend(text_item(&pk, sk.to_owned(), task, None, cb, text));
        }
    }
    guard_status(&mut task_item, cb);
    writes.push(task_item);

    if let Some(conversion) = &cb.conversion_id {
        let mut item = conversion_item(&pk, task, conversion, ctx);
        describe(&mut item, cb);
        record_stream(&mut item, cb, ctx);
        guard_status(&mut item, cb);
        writes.push(item);
        writes.extend(text_item(
            &pk,
            keys::lyrics_sk(conversion),
            task,
            Some(conversion),
            cb,
            Text::Lyrics,
        ));
        writes.extend(text_item(
            &pk,
            keys::transcript_sk(conversion),
            task,
            Some(conversion),
            cb,
            Text::Transcript,
        ));
        if let Some(lyrics) = &cb.lyrics_timestamped {
            let mut item = ItemWrite::new(pk.clone(), keys::lyrics_timestamped_sk(conversion))
                .set("item_type", json!(ItemType::LyricsTimestamped))
                .set("task_id", json!(task))
                .set("conversion_id", json!(conversion));
            // The dedicated lyrics callback is the authority; the copy inside an audio
            // callback only fills the gap until it comes.
            item = if cb.kind == CallbackKind::LyricsTimestamped {
                item.set("lyrics_timestamped", lyrics.clone())
            } else {
                item.set_if_absent("lyrics_timestamped", lyrics.clone())
            };
            writes.push(item);
        }
    }
    for conversion in cb
        .related_conversion_ids
        .iter()
        .filter(|c| Some(*c) != cb.conversion_id.as_ref())
    {
        writes.push(conversion_item(&pk, task, conversion, ctx));
    }
    if link_conversions {
        for conversion in linked_conversions(cb) {
            let mut link =
                ItemWrite::new(keys::conversion_pk(conversion), keys::LINK_SK.to_owned())
                    .set("item_type", json!(ItemType::Link))
                    .set("task_id", json!(task))
                    .set("conversion_id", json!(conversion));
            link.condition = Condition::NoParkedCallbacks(conversion.clone());
            writes.push(link);
        }
    }
    for source in &cb.sources {
        let asset = &source.asset;
        let stem = match &asset.kind {
            keys::AssetKind::Stem { name, .. } => Some(json!(name)),
            _ => None,
        };
        let output = match &asset.kind {
            keys::AssetKind::Output { name, .. } => Some(json!(name)),
            _ => None,
        };
        writes.push(
            ItemWrite::new(pk.clone(), asset.sort_key(task))
                .set_if_absent("item_type", json!(ItemType::Asset))
                .set_if_absent("task_id", json!(task))
                .set_if_absent("conversion_id", asset.conversion.as_ref().map(|c| json!(c)))
                .set_if_absent("asset_kind", json!(asset.kind.label()))
                .set_if_absent("stem", stem)
                .set_if_absent("output", output)
                .set_if_absent("ext", json!(asset.kind.ext()))
                .set_if_absent("source_url", json!(source.url))
                .set_if_absent("s3_key", json!(asset.object_key(&ctx.key_prefix, task)))
                .set_if_absent("state", json!(AssetState::Pending))
                .set_if_absent("attempts", json!(0))
                .set_if_absent("next_try_at", json!(ctx.now))
                .set_if_absent("created_at", json!(ctx.now))
                .set_if_absent(
                    "deadline_at",
                    json!(ctx.files.deadline(ctx.now, asset.kind.ext())),
                ),
        );
    }
    Plan { writes }
}

/// Every conversion this callback ties to its task.
pub fn linked_conversions(cb: &Callback) -> Vec<&Id> {
    let mut ids: Vec<&Id> = cb
        .conversion_id
        .iter()
        .chain(&cb.related_conversion_ids)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// A callback that names a conversion but no task, kept until the conversion's task is known.
pub fn parked_callback(cb: &Callback, conversion: &Id, ctx: &RecordContext) -> ItemWrite {
    let mut item = ItemWrite::new(keys::conversion_pk(conversion), keys::parked_sk(&cb.sha256))
        .set("item_type", json!(ItemType::Parked))
        .set("conversion_id", json!(conversion))
        .set("kind", json!(cb.kind.label()))
        .set("body", json!(cb.canonical_json))
        .set("received_at", json!(ctx.now))
        .set("expires_at", json!(ctx.now + ctx.retention_secs));
    item.condition = Condition::CreateOnly;
    item
}

fn raw_callback(cb: &Callback, task: &Id, ctx: &RecordContext) -> ItemWrite {
    let mut item = ItemWrite::new(keys::task_pk(task), keys::callback_sk(&cb.sha256))
        .set("item_type", json!(ItemType::Callback))
        .set("task_id", json!(task))
        .set("conversion_id", cb.conversion_id.as_ref().map(|c| json!(c)))
        .set("kind", json!(cb.kind.label()))
        .set("subtype", cb.subtype.as_ref().map(|s| json!(s)))
        .set("sha256", json!(cb.sha256))
        .set("body", json!(cb.canonical_json))
        .set("received_at", json!(ctx.now))
        .set("expires_at", json!(ctx.now + ctx.retention_secs));
    item.condition = Condition::CreateOnly;
    item
}

fn conversion_item(pk: &str, task: &Id, conversion: &Id, ctx: &RecordContext) -> ItemWrite {
    ItemWrite::new(pk.to_owned(), keys::conversion_sk(conversion))
        .set("item_type", json!(ItemType::Conversion))
        .set("task_id", json!(task))
        .set("conversion_id", json!(conversion))
        .set_if_absent("created_at", json!(ctx.now))
}

/// Descriptive fields: owned by the callback with the newest status when it has one,
/// otherwise only filled in where missing.
fn describe(item: &mut ItemWrite, cb: &Callback) {
    let fields: [(&'static str, Option<Value>); 7] = [
        ("title", cb.title.as_ref().map(|v| json!(v))),
        ("duration_seconds", cb.duration_seconds.map(|v| json!(v))),
        ("cost", cb.cost.map(|v| json!(v))),
        ("is_flagged", cb.is_flagged.map(|v| json!(v))),
        ("flag_reason", cb.flag_reason.as_ref().map(|v| json!(v))),
        (
            "source_created_at",
            cb.created_at.as_ref().map(|v| json!(v)),
        ),
        (
            "source_updated_at",
            cb.updated_at.as_ref().map(|v| json!(v)),
        ),
    ];
    let has_status = cb.effective_status().is_some();
    let data = cb
        .data
        .iter()
        .map(|(name, value)| (*name, Some(value.clone())));
    for (name, value) in fields.into_iter().chain(data) {
        let Some(value) = value else { continue };
        if has_status {
            item.guarded.push((name, value));
        } else {
            item.set_if_absent.push((name, value));
        }
    }
}

/// The texts that can be as large as a whole callback.
#[derive(Clone, Copy)]
enum Text {
    Lyrics,
    Transcript,
}

/// Each large text lives in an item of its own: no item then ever holds two of them, and every
/// item stays under DynamoDB's 400 KB. The text is owned as the descriptive fields are (by the
/// newest status, else only filled in).
fn text_item(
    pk: &str,
    sk: String,
    task: &Id,
    conversion: Option<&Id>,
    cb: &Callback,
    text: Text,
) -> Option<ItemWrite> {
    let (value, item_type, attribute) = match text {
        Text::Lyrics => (cb.lyrics.as_ref()?, ItemType::Lyrics, "lyrics"),
        Text::Transcript => (cb.transcript.as_ref()?, ItemType::Transcript, "transcript"),
    };
    let mut item = ItemWrite::new(pk.to_owned(), sk)
        .set("item_type", json!(item_type))
        .set("task_id", json!(task))
        .set("conversion_id", conversion.map(|c| json!(c)));
    match cb.effective_status() {
        Some(status) => {
            let order = status_order(&status, cb.updated_at.as_deref(), &cb.sha256);
            item.guarded.push((attribute, json!(value)));
            item.guarded.push(("status_order", json!(order)));
            item.condition = Condition::NewerStatus(order);
        }
        None => item.set_if_absent.push((attribute, json!(value))),
    }
    Some(item)
}

/// A live preview's URL and when it came, never taken for the finished song.
fn record_stream(item: &mut ItemWrite, cb: &Callback, ctx: &RecordContext) {
    if let Some(url) = &cb.streaming_url {
        item.set.push(("streaming_url", json!(url)));
        item.set.push(("streaming_url_at", json!(ctx.now)));
    }
}

fn guard_status(item: &mut ItemWrite, cb: &Callback) {
    let Some(status) = cb.effective_status() else {
        return;
    };
    let order = status_order(&status, cb.updated_at.as_deref(), &cb.sha256);
    item.guarded.push(("status", json!(status)));
    item.guarded.push((
        "status_message",
        cb.message.as_ref().map_or(Value::Null, |m| json!(m)),
    ));
    item.guarded.push(("status_order", json!(order)));
    item.condition = Condition::NewerStatus(order);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_statuses_outrank_progress_whatever_the_timestamps() {
        let done = status_order(&TaskStatus::Completed, None, "a");
        let progress = status_order(&TaskStatus::InProgress, Some("2030-01-01T00:00:00Z"), "b");
        assert!(done > progress);
        let older = status_order(&TaskStatus::Completed, Some("2025-01-01T12:00:00Z"), "f");
        let newer = status_order(&TaskStatus::Completed, Some("2025-01-01T12:05:00Z"), "0");
        assert!(newer > older);
    }
}
