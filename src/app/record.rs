//! Recording a callback, whoever received it (the webhook, the reconciler, a submission): its
//! plan applied as one unit, in any order and any number of times.

use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::app::announce::CopyEvents;
use crate::app::ports::{Applied, TaskStore};
use crate::domain::callback::{Callback, MUSICGPT_HOSTS};
use crate::domain::ids::Id;
use crate::domain::keys::KeyPrefix;
use crate::domain::plan::{self, RecordContext};
use crate::domain::quarantine::quarantine_write;
use crate::domain::retry::FileRetention;
use crate::error::{Error, Result};

/// Longest a recording waits for its task's announcement (events on).
const ANNOUNCE_BUDGET: Duration = Duration::from_secs(4);

/// Plans that collide with concurrent deliveries of the same task are tried again this often.
const MAX_ROUNDS: u32 = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written for the first time. `files` counts the assets the callback names.
    Recorded { task_id: Id, files: usize },
    /// Seen before: nothing changed.
    Duplicate { task_id: Id },
    /// Names only a conversion whose task is not known yet; kept until it is.
    Parked { conversion_id: Id },
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Recorded { .. } => "recorded",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::Parked { .. } => "parked",
        }
    }

    pub fn task_id(&self) -> Option<&Id> {
        match self {
            Outcome::Recorded { task_id, .. } | Outcome::Duplicate { task_id } => Some(task_id),
            Outcome::Parked { .. } => None,
        }
    }
}

/// Records parsed callbacks into a task store.
#[derive(Clone)]
pub struct Recorder<T> {
    store: T,
    key_prefix: KeyPrefix,
    retention_secs: u64,
    files: FileRetention,
    /// Where MusicGPT's files are: an URL on one of these hosts is a file to copy.
    file_hosts: Vec<String>,
    /// Events for the owner's application: announced after every callback recorded.
    events: Option<Arc<dyn CopyEvents>>,
}

impl<T: TaskStore> Recorder<T> {
    pub fn new(store: T, key_prefix: KeyPrefix, retention: Duration) -> Recorder<T> {
        Recorder {
            store,
            key_prefix,
            retention_secs: retention.as_secs(),
            files: FileRetention::default(),
            file_hosts: MUSICGPT_HOSTS.iter().map(|h| (*h).to_owned()).collect(),
            events: None,
        }
    }

    /// Announces the task after every callback recorded for it, a redelivery too: a failure
    /// status settles a task without files, and a redelivery after a crash announces what the
    /// crashed delivery could not. Every path that records (the webhook, the reconciler, a
    /// submission) goes through here.
    pub fn with_events(mut self, events: Arc<dyn CopyEvents>) -> Recorder<T> {
        self.events = Some(events);
        self
    }

    /// `SOURCE_HOSTS`: an URL on one of them, in a field not known to hold a file, is a file.
    pub fn with_file_hosts(mut self, hosts: Vec<String>) -> Recorder<T> {
        self.file_hosts = hosts;
        self
    }

    /// A body as a callback, with this deployment's file hosts.
    pub fn parse(&self, body: &[u8], content_type: Option<&str>) -> Result<Callback> {
        Callback::parse_for(body, content_type, &self.file_hosts)
    }

    /// How long MusicGPT keeps files, which fixes each new asset's deadline.
    pub fn with_file_retention(mut self, files: FileRetention) -> Recorder<T> {
        self.files = files;
        self
    }

    pub fn store(&self) -> &T {
        &self.store
    }

    /// Keeps a body that could not be recorded, with the reason, until its TTL.
    pub async fn quarantine(
        &self,
        body: &[u8],
        content_type: Option<&str>,
        reason: &str,
        now: u64,
    ) -> Result<()> {
        let write = quarantine_write(body, content_type, reason, now, self.retention_secs);
        self.store.write_once(&write).await
    }

    /// Records a parsed callback. Safe to call any number of times, in any order.
    pub async fn record(&self, cb: &Callback, now: u64) -> Result<Outcome> {
        let outcome = self.record_callback(cb, now).await?;
        if let (Some(events), Some(task)) = (&self.events, outcome.task_id()) {
            // The sender waits for its answer meanwhile: a slow bus only delays the events
            // (they stay due in the outbox for the sweep), never the answer for long.
            if tokio::time::timeout(ANNOUNCE_BUDGET, events.settled(task))
                .await
                .is_err()
            {
                warn!(task_id = %task, "announcing took too long; the sweep delivers the rest");
            }
        }
        Ok(outcome)
    }

    async fn record_callback(&self, cb: &Callback, now: u64) -> Result<Outcome> {
        let ctx = RecordContext {
            key_prefix: self.key_prefix.clone(),
            now,
            retention_secs: self.retention_secs,
            files: self.files,
        };
        if let Some(task) = &cb.task_id {
            return self.record_for_task(cb, task, &ctx, true).await;
        }
        let Some(conversion) = &cb.conversion_id else {
            return Err(Error::BadCallback(
                "no usable id: task_id or conversion_id is required".into(),
            ));
        };
        if let Some(task) = self.store.linked_task(conversion).await? {
            return self.record_for_task(cb, &task, &ctx, false).await;
        }
        // Park first, then flag the link: a linking write that lands in between fails its
        // condition and adopts what is parked; one that lands before shows up here.
        self.store
            .write_once(&plan::parked_callback(cb, conversion, &ctx))
            .await?;
        match self.store.flag_parked(conversion).await? {
            Some(task) => self.record_for_task(cb, &task, &ctx, false).await,
            None => Ok(Outcome::Parked {
                conversion_id: conversion.clone(),
            }),
        }
    }

    async fn record_for_task(
        &self,
        cb: &Callback,
        task: &Id,
        ctx: &RecordContext,
        link: bool,
    ) -> Result<Outcome> {
        let mut plan = plan::callback_plan(cb, task, ctx, link);
        for round in 0..MAX_ROUNDS {
            match self.store.apply(&plan).await? {
                Applied::Written => {
                    return Ok(Outcome::Recorded {
                        task_id: task.clone(),
                        files: cb.sources.len(),
                    });
                }
                Applied::Duplicate => {
                    return Ok(Outcome::Duplicate {
                        task_id: task.clone(),
                    });
                }
                Applied::Conflict => {
                    tokio::time::sleep(Duration::from_millis(5 << round.min(6))).await;
                }
                Applied::ParkedOn(conversions) => {
                    for conversion in &conversions {
                        self.adopt_parked(conversion, task, ctx).await?;
                    }
                    plan = plan.adopted(&conversions);
                }
            }
        }
        Err(Error::storage(format!(
            "writes for task {task} still conflicting after {MAX_ROUNDS} rounds"
        )))
    }

    /// Records, under `task`, every callback that was parked on `conversion`.
    async fn adopt_parked(&self, conversion: &Id, task: &Id, ctx: &RecordContext) -> Result<()> {
        for body in self.store.parked_bodies(conversion).await? {
            let mut parked = match self.parse(body.as_bytes(), None) {
                Ok(parked) => parked,
                Err(err) => {
                    warn!(conversion_id = %conversion, error = %err, "skipping unreadable parked callback");
                    continue;
                }
            };
            parked.task_id = Some(task.clone());
            Box::pin(self.record_for_task(&parked, task, ctx, false)).await?;
        }
        Ok(())
    }
}
