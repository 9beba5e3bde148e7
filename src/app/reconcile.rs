//! The reconciler: finds tasks whose callbacks never came and assets stuck PENDING, asks
//! MusicGPT's byId, and records what it learns through the same path as a callback.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;
use tracing::{info, warn};

use std::collections::HashSet;

use crate::app::by_user::{ListOptions, list_by_user};
use crate::app::copy::{CopyEngine, CopyOutcome, DEFAULT_CONCURRENCY, copy_all};
use crate::app::measure;
use crate::app::ports::{MusicGpt, Ports, TaskStore};
use crate::app::record::{Outcome, Recorder};
use crate::domain::answer::callbacks_from_answer;
use crate::domain::api::{Lookup, conversion_type_enum};
use crate::domain::by_user::{ByUserQuery, TimeWindow};
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
    /// Conversions byUser listed in this run's window.
    pub listed: usize,
    /// Tasks settled from the listing alone (no byId needed), registered or not.
    pub settled_from_listing: usize,
    /// Whether the window was read to its end (else the next run reads it again).
    pub listing_complete: bool,
    /// Tasks byId found finished and this run recorded (webhooks that never came).
    pub recovered_tasks: usize,
}

#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    /// How long a submitted task or a pending asset may wait before it counts as stuck.
    pub grace: Duration,
    /// byId calls one run may make (MusicGPT allows 200 a minute).
    pub max_lookups: usize,
    /// Pause between byId calls, to stay under the rate limit.
    pub min_interval: Duration,
    /// List the window since the last run with byUser first, which also finds tasks nobody
    /// registered (submitted from another tool); `None` skips it.
    pub by_user: Option<ByUserSettings>,
}

#[derive(Debug, Clone)]
pub struct ByUserSettings {
    /// The first run looks this far back.
    pub first_window: Duration,
    /// Each window starts this much before the last one ended: a conversion MusicGPT dates a
    /// little late is not missed.
    pub overlap: Duration,
    pub list: ListOptions,
}

impl Default for ByUserSettings {
    fn default() -> Self {
        ByUserSettings {
            first_window: Duration::from_secs(24 * 60 * 60),
            overlap: Duration::from_secs(60 * 60),
            list: ListOptions::default(),
        }
    }
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        ReconcileSettings {
            grace: Duration::from_secs(15 * 60),
            max_lookups: 100,
            min_interval: Duration::from_millis(300),
            by_user: Some(ByUserSettings::default()),
        }
    }
}

/// The checkpoint of the byUser listing: where the last complete window ended.
pub const BY_USER_CHECKPOINT: &str = "reconcile-by-user";

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
        let mut report = Report::default();
        let settled = match &self.settings.by_user {
            Some(by_user) => self.list_window(by_user, now, &mut report).await?,
            None => HashSet::new(),
        };
        // byId only for what the listing could not settle.
        let due: Vec<Id> = store
            .due_tasks(cutoff)
            .await?
            .into_iter()
            .filter(|task| !settled.contains(task))
            .collect();
        report.due = due.len();
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
            report.recovered_tasks += 1;
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
        measure::recovered(
            report.recorded,
            report.settled_from_listing + report.recovered_tasks,
        );
        info!(?report, "reconciliation done");
        Ok(report)
    }
}

impl<P: Ports> Reconciler<P> {
    /// Lists the conversions of the window since the last complete listing, records what they
    /// say through the same path as a callback, and returns the tasks that came out settled.
    async fn list_window(
        &self,
        settings: &ByUserSettings,
        now: u64,
        report: &mut Report,
    ) -> Result<HashSet<Id>> {
        let store = self.recorder.store();
        let start = match store.checkpoint(BY_USER_CHECKPOINT).await? {
            Some(at) => at.saturating_sub(settings.overlap.as_secs()),
            None => now.saturating_sub(settings.first_window.as_secs()),
        };
        let mut settled = HashSet::new();
        if start >= now {
            return Ok(settled);
        }
        let query = ByUserQuery::new(TimeWindow { start, end: now });
        let listing = list_by_user(&self.api, &query, None, &settings.list).await?;
        report.listed = listing.conversions.len();
        for conversion in &listing.conversions {
            let Some(task) = conversion
                .get("task_id")
                .and_then(Value::as_str)
                .and_then(Id::parse)
            else {
                continue;
            };
            let status = TaskStatus::parse(
                conversion
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            );
            if !status.is_terminal() {
                continue;
            }
            let mut answer = conversion.clone();
            // byUser names the type as the API does; a callback as a label.
            if let (Some(kind), Some(map)) =
                (conversion.get("conversionType"), answer.as_object_mut())
            {
                map.entry("conversion_type").or_insert_with(|| kind.clone());
            }
            for callback in callbacks_from_answer(&task, &answer) {
                match callback {
                    Ok(callback) => {
                        if matches!(
                            self.recorder.record(&callback, now).await?,
                            Outcome::Recorded { .. }
                        ) {
                            report.recorded += 1;
                        }
                    }
                    Err(err) => {
                        warn!(task_id = %task, error = %err, "byUser entry is not a usable callback")
                    }
                }
            }
            if settled.insert(task.clone()) {
                report.settled_from_listing += 1;
                report.copied += self.copy_pending(&task).await?;
            }
        }
        report.listing_complete = listing.complete;
        if listing.complete {
            store.set_checkpoint(BY_USER_CHECKPOINT, now).await?;
        } else {
            warn!(stopped = ?listing.stopped, pages = listing.pages, "byUser listing incomplete; the next run reads the window again");
        }
        Ok(settled)
    }

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
