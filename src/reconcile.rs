//! The reconciler: finds tasks whose callbacks never came and assets stuck PENDING, asks
//! MusicGPT's byId, and records what it learns through the same path as a callback.

use std::time::Duration;

use serde_json::{Map, Value, json};
use tracing::{info, warn};

use tokio::time::Instant;

use crate::callback::Callback;
use crate::copy::{CopyEngine, CopyOutcome, DEFAULT_CONCURRENCY, copy_all};
use crate::error::Result;
use crate::ids::Id;
use crate::ingest::{Outcome, Recorder};
use crate::keys;
use crate::musicgpt::{Lookup, MusicGptApi, conversion_type_enum};

/// What one run did, for the log and the tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Tasks found needing a look.
    pub due: usize,
    pub looked_up: usize,
    /// Callbacks recorded from byId answers (duplicates of earlier ones not counted).
    pub recorded: usize,
    /// Tasks MusicGPT still works on: left alone.
    pub in_progress: usize,
    /// Tasks MusicGPT reports failed: marked so.
    pub failed: usize,
    pub not_found: usize,
    /// Tasks not looked up this run (rate limit, MusicGPT busy): the next run takes them.
    pub deferred: usize,
    /// Files the reconciler copied itself (stuck ones, and those byId revealed).
    pub copied: usize,
}

#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    /// How long a submitted task or a pending asset may wait before it counts as stuck.
    pub grace: Duration,
    /// byId calls one run may make (MusicGPT allows 200 a minute).
    pub max_lookups: usize,
    /// Pause between byId calls, to stay under the rate limit.
    pub min_interval: Duration,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        ReconcileSettings {
            grace: Duration::from_secs(15 * 60),
            max_lookups: 100,
            min_interval: Duration::from_millis(300),
        }
    }
}

pub struct Reconciler {
    recorder: Recorder,
    api: MusicGptApi,
    settings: ReconcileSettings,
    copier: Option<CopyEngine>,
}

impl Reconciler {
    pub fn new(recorder: Recorder, api: MusicGptApi, settings: ReconcileSettings) -> Reconciler {
        Reconciler {
            recorder,
            api,
            settings,
            copier: None,
        }
    }

    /// Also copies the PENDING files of the tasks it looks at: a stuck asset gets no new
    /// stream record, so nothing else would try it again.
    pub fn with_copier(mut self, engine: CopyEngine) -> Reconciler {
        self.copier = Some(engine);
        self
    }

    pub async fn run(&self, now: u64) -> Result<Report> {
        let cutoff = now.saturating_sub(self.settings.grace.as_secs());
        let store = self.recorder.store();
        let due = store.due_tasks(cutoff).await?;
        let mut report = Report {
            due: due.len(),
            ..Report::default()
        };
        for (index, task) in due.iter().enumerate() {
            if report.looked_up >= self.settings.max_lookups {
                report.deferred = due.len() - index;
                break;
            }
            if report.looked_up > 0 {
                tokio::time::sleep(self.settings.min_interval).await;
            }
            let conversion_type = store.task_conversion_type(task).await?.map_or_else(
                || "MUSIC_AI".to_owned(),
                |label| conversion_type_enum(&label),
            );
            report.looked_up += 1;
            let conversion = match self.api.by_task(&conversion_type, task).await {
                Ok(Lookup::Found(conversion)) => conversion,
                Ok(Lookup::NotFound) => {
                    // Stuck files of a task MusicGPT does not know are tried (and, verified,
                    // refused) rather than left to be found again every run.
                    report.not_found += 1;
                    report.copied += self.copy_pending(task).await?;
                    continue;
                }
                Err(err) if err.is_retryable() => {
                    warn!(task_id = %task, error = %err, "byId unavailable; stopping this run");
                    report.deferred = due.len() - index;
                    break;
                }
                Err(err) => {
                    warn!(task_id = %task, error = %err, "byId refused");
                    continue;
                }
            };
            let status = conversion
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_ascii_uppercase();
            match status.as_str() {
                "COMPLETED" | "PARTIAL_COMPLETED" => {}
                "FAILED" | "ERROR" => report.failed += 1,
                _ => {
                    report.in_progress += 1;
                    continue;
                }
            }
            for callback in callbacks_from_answer(task, &conversion) {
                if matches!(
                    self.recorder.record(&callback, now).await?,
                    Outcome::Recorded { .. }
                ) {
                    report.recorded += 1;
                }
            }
            report.copied += self.copy_pending(task).await?;
        }
        info!(?report, "reconciliation done");
        Ok(report)
    }
}

impl Reconciler {
    async fn copy_pending(&self, task: &Id) -> Result<usize> {
        let Some(engine) = &self.copier else {
            return Ok(0);
        };
        let assets = engine
            .assets()
            .pending_in_task(&keys::task_pk(task))
            .await?;
        let stop = Instant::now() + COPY_BUDGET;
        let outcomes = copy_all(engine, assets, stop, DEFAULT_CONCURRENCY).await;
        Ok(outcomes
            .iter()
            .filter(|o| matches!(o, CopyOutcome::Stored { .. }))
            .count())
    }
}

/// Time given to the copies of one task, so one huge file cannot starve the others.
const COPY_BUDGET: Duration = Duration::from_secs(120);

/// Turns a byId answer into the callbacks MusicGPT would have sent: for Music AI one per song
/// (fields suffixed `_1` / `_2`) and one for the cover; otherwise the answer itself.
pub fn callbacks_from_answer(task: &Id, conversion: &Value) -> Vec<Callback> {
    let Some(answer) = conversion.as_object() else {
        return Vec::new();
    };
    let mut bodies: Vec<Map<String, Value>> = Vec::new();
    let shared = |map: &mut Map<String, Value>| {
        map.insert("task_id".into(), json!(task));
        map.insert("reconciled_from".into(), json!("byId"));
        for key in [
            "status",
            "status_msg",
            "createdAt",
            "updatedAt",
            "music_style",
        ] {
            if let Some(v) = answer.get(key) {
                map.insert(key.into(), v.clone());
            }
        }
    };
    let songs: Vec<&str> = ["_1", "_2"]
        .into_iter()
        .filter(|suffix| answer.contains_key(&format!("conversion_id{suffix}")))
        .collect();
    if songs.is_empty() {
        let mut map = answer.clone();
        shared(&mut map);
        bodies.push(map);
    }
    for suffix in &songs {
        let mut map = Map::new();
        shared(&mut map);
        map.insert("subtype".into(), json!("music_ai"));
        map.insert("conversion_type".into(), json!("Music AI"));
        for (key, value) in answer {
            if let Some(base) = key.strip_suffix(suffix) {
                map.insert(base.to_owned(), value.clone());
            }
        }
        bodies.push(map);
    }
    // The cover belongs to a Music AI task; a plain answer already carries its own fields.
    let cover = answer.get("album_cover_path").filter(|v| v.is_string());
    if let (false, Some(cover)) = (songs.is_empty(), cover) {
        let mut map = Map::new();
        shared(&mut map);
        map.insert("subtype".into(), json!("album_cover_generation"));
        map.insert("image_path".into(), cover.clone());
        for suffix in &songs {
            let key = format!("conversion_id{suffix}");
            if let Some(v) = answer.get(&key) {
                map.insert(key, v.clone());
            }
        }
        bodies.push(map);
    }
    bodies
        .into_iter()
        .filter_map(|body| match Callback::from_fields(body) {
            Ok(callback) => Some(callback),
            Err(err) => {
                warn!(task_id = %task, error = %err, "byId answer is not a usable callback");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callback::CallbackKind;

    #[test]
    fn a_music_ai_answer_becomes_two_songs_and_a_cover() {
        let answer: Value =
            serde_json::from_str(include_str!("../docs/musicgpt/samples/byid-music-ai.json"))
                .expect("sample");
        let mut conversion = answer["conversion"].clone();
        conversion["conversion_id_1"] = json!("c1");
        conversion["conversion_id_2"] = json!("c2");
        let task = Id::parse("t1").expect("id");
        let callbacks = callbacks_from_answer(&task, &conversion);
        let kinds: Vec<_> = callbacks.iter().map(|c| c.kind.clone()).collect();
        assert_eq!(
            kinds,
            [
                CallbackKind::Audio,
                CallbackKind::Audio,
                CallbackKind::AlbumCover
            ]
        );
        assert_eq!(
            callbacks[0].conversion_id.as_ref().map(Id::as_str),
            Some("c1")
        );
        assert_eq!(callbacks[1].duration_seconds, Some(232.99));
        assert!(callbacks[2].sources[0].url.ends_with(".png"));
    }

    #[test]
    fn a_plain_answer_is_recorded_as_it_is() {
        let answer: Value = serde_json::from_str(include_str!(
            "../docs/musicgpt/samples/byid-docs-sample.json"
        ))
        .expect("sample");
        let task = Id::parse("12345678-abcd-1234-efgh-567890abcdef").expect("id");
        let callbacks = callbacks_from_answer(&task, &answer["conversion"]);
        assert_eq!(callbacks.len(), 1);
        assert_eq!(callbacks[0].sources.len(), 1);
    }
}
