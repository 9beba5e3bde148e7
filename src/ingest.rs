//! The webhook use case: authenticate a delivery, parse it, record it. Returns an outcome,
//! never an HTTP response: statuses are the HTTP adapter's business.

use std::time::Duration;

use tracing::{info, warn};

use crate::callback::Callback;
use crate::error::{Error, Result};
use crate::ids::Id;
use crate::keys::KeyPrefix;
use crate::records::{self, RecordContext};
use crate::store::{TaskStore, TransactOutcome};
use crate::token::WebhookTokens;

/// Larger bodies are refused before parsing (contract: 413 over 1 MiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// A callback must fit one DynamoDB item (400 KB) even when its fields are copied onto the
/// conversion next to another callback's; real callbacks are a few KB.
pub const MAX_STORED_BYTES: usize = 190 * 1024;
/// Transactions that collide with concurrent deliveries of the same task are retried.
const MAX_TRANSACTION_ROUNDS: u32 = 8;

/// One HTTP delivery, reduced to what the use case needs.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub method: &'a str,
    /// The request path; its last segment is the token.
    pub path: &'a str,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

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

/// The webhook use case: a token check in front of the recorder.
#[derive(Clone)]
pub struct Ingest {
    tokens: WebhookTokens,
    recorder: Recorder,
}

/// Records parsed callbacks, whoever got them: the webhook, the reconciler, a submission.
#[derive(Clone)]
pub struct Recorder {
    store: TaskStore,
    key_prefix: KeyPrefix,
    retention_secs: u64,
}

impl Ingest {
    pub fn new(tokens: WebhookTokens, recorder: Recorder) -> Ingest {
        Ingest { tokens, recorder }
    }

    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Checks in this order so that nothing about the endpoint leaks to a caller without the
    /// token: token, method, size, then the body. `now` is seconds since the epoch.
    pub async fn handle(&self, delivery: Delivery<'_>, now: u64) -> Result<(Callback, Outcome)> {
        let token = delivery
            .path
            .rsplit('/')
            .find(|segment| !segment.is_empty())
            .unwrap_or_default();
        if !self.tokens.accepts(token) {
            return Err(Error::UnknownToken);
        }
        if !delivery.method.eq_ignore_ascii_case("POST") {
            return Err(Error::MethodNotAllowed(delivery.method.to_owned()));
        }
        if delivery.body.len() > MAX_BODY_BYTES {
            return Err(Error::TooLarge(format!(
                "body is {} bytes, over the {MAX_BODY_BYTES}-byte limit",
                delivery.body.len()
            )));
        }
        let callback = Callback::parse(delivery.body, delivery.content_type)?;
        if callback.canonical_json.len() > MAX_STORED_BYTES {
            return Err(Error::TooLarge(format!(
                "callback is {} bytes, over the {MAX_STORED_BYTES} bytes one table item can hold",
                callback.canonical_json.len()
            )));
        }
        let outcome = self.recorder.record(&callback, now).await?;
        info!(
            outcome = outcome.label(),
            kind = callback.kind.label(),
            task_id = outcome.task_id().map(Id::as_str),
            conversion_id = callback.conversion_id.as_ref().map(Id::as_str),
            files = callback.sources.len(),
            sha256 = %callback.sha256,
            "callback handled"
        );
        Ok((callback, outcome))
    }
}

impl Recorder {
    pub fn new(store: TaskStore, key_prefix: KeyPrefix, retention: Duration) -> Recorder {
        Recorder {
            store,
            key_prefix,
            retention_secs: retention.as_secs(),
        }
    }

    pub fn store(&self) -> &TaskStore {
        &self.store
    }

    /// Records a parsed callback. Safe to call any number of times, in any order.
    pub async fn record(&self, cb: &Callback, now: u64) -> Result<Outcome> {
        let ctx = RecordContext {
            key_prefix: self.key_prefix.clone(),
            now,
            retention_secs: self.retention_secs,
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
            .write(&records::parked_callback(cb, conversion, &ctx))
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
        let mut writes = records::callback_writes(cb, task, ctx, link);
        for round in 0..MAX_TRANSACTION_ROUNDS {
            match self.store.transact(&writes).await? {
                TransactOutcome::Applied => {
                    return Ok(Outcome::Recorded {
                        task_id: task.clone(),
                        files: cb.sources.len(),
                    });
                }
                TransactOutcome::Duplicate => {
                    return Ok(Outcome::Duplicate {
                        task_id: task.clone(),
                    });
                }
                TransactOutcome::Conflict => {
                    tokio::time::sleep(Duration::from_millis(5 << round.min(6))).await;
                }
                TransactOutcome::Blocked {
                    stale_status,
                    parked,
                } => {
                    for index in stale_status {
                        writes[index].without_guard();
                    }
                    for index in parked {
                        if let records::Condition::NoParkedCallbacks(conversion) =
                            &writes[index].condition
                        {
                            self.adopt_parked(conversion, task, ctx).await?;
                        }
                        writes[index].condition = records::Condition::Always;
                    }
                }
            }
        }
        Err(Error::Storage(format!(
            "transaction for task {task} still conflicting after {MAX_TRANSACTION_ROUNDS} rounds"
        )))
    }

    /// Records, under `task`, every callback that was parked on `conversion`.
    async fn adopt_parked(&self, conversion: &Id, task: &Id, ctx: &RecordContext) -> Result<()> {
        for body in self.store.parked_bodies(conversion).await? {
            let mut parked = match Callback::parse(body.as_bytes(), None) {
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
