//! The reconciler: finds tasks whose callbacks never came and assets stuck PENDING, asks
//! MusicGPT's byId, and records what it learns through the same path as a callback.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::app::copy::{CopyEngine, CopyOutcome, DEFAULT_CONCURRENCY, copy_all};
use crate::app::ports::{MusicGpt, Ports, TaskStore};
use crate::app::record::{Outcome, Recorder};
use crate::domain::answer::callbacks_from_answer;
use crate::domain::api::{Lookup, conversion_type_enum};
use crate::domain::ids::Id;
use crate::domain::status::TaskStatus;
use crate::error::Result;

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

pub struct Reconciler<P: Ports> {
    recorder: Recorder<P::Tasks>,
    api: P::Api,
    settings: ReconcileSettings,
    copier: Option<CopyEngine<P>>,
}

impl<P: Ports> Reconciler<P> {
    pub fn new(
        recorder: Recorder<P::Tasks>,
        api: P::Api,
        settings: ReconcileSettings,
    ) -> Reconciler<P> {
        Reconciler {
            recorder,
            api,
            settings,
            copier: None,
        }
    }

    /// Also copies the PENDING files of the tasks it looks at: a stuck asset gets no new
    /// stream record, so nothing else would try it again.
    pub fn with_copier(mut self, engine: CopyEngine<P>) -> Reconciler<P> {
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
            let status = TaskStatus::parse(
                conversion
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            );
            match status {
                TaskStatus::Completed | TaskStatus::PartialCompleted => {}
                TaskStatus::Failed | TaskStatus::Error => report.failed += 1,
                _ => {
                    report.in_progress += 1;
                    continue;
                }
            }
            for callback in callbacks_from_answer(task, &conversion) {
                let callback = match callback {
                    Ok(callback) => callback,
                    Err(err) => {
                        warn!(task_id = %task, error = %err, "byId answer is not a usable callback");
                        continue;
                    }
                };
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

impl<P: Ports> Reconciler<P> {
    async fn copy_pending(&self, task: &Id) -> Result<usize> {
        let Some(engine) = &self.copier else {
            return Ok(0);
        };
        let assets = engine.pending_in_task(task).await?;
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
