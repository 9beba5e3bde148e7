//! The copy use case, one engine for every trigger (the stream copier and the inline webhook):
//! claim an asset under a lease, stream its source into S3, verify it, and record the result
//! while the lease is still ours.
//!
//! Retry policy: a failure that may pass (5xx, reset, timeout, short body, S3 error) puts the
//! asset back to PENDING with `attempts + 1`, `last_error` and `next_try_at` = now + backoff
//! (base * 2^(attempts - 1), capped); at `MAX_ATTEMPTS` it becomes FAILED. A refusal by the
//! source guard, or an answer that cannot change (404, over the size cap), makes it FAILED at
//! once. Running out of time releases the lease without counting an attempt.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::assets::{AssetItem, AssetKey, AssetTable, StoredCopy, Unclaimed};
use crate::aws;
use crate::config::{Config, CopyConfig};
use crate::error::{Error, Result};
use crate::http::AfterRecord;
use crate::ingest::Outcome;
use crate::keys;
use crate::musicgpt::MusicGptApi;
use crate::sink::{ObjectSpec, S3Sink, Written, content_type_for};
use crate::source::Source;
use crate::store::TaskStore;
use crate::verify::{Verdict, Verifier};

/// Longest `last_error` kept on an item.
const MAX_ERROR_CHARS: usize = 500;
/// A lease outlives the caller's time budget by this much, covering the final write-back.
pub const DEFAULT_LEASE_GRACE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    /// Wait after the first failed attempt; doubled after each further one.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Lease taken when the caller gives no time budget.
    pub lease: Duration,
    /// How long a lease outlives the caller's time budget, covering the final write-back.
    pub lease_grace: Duration,
}

pub const DEFAULT_BASE_DELAY: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Lambda's longest run: a worker that held a lease this long has certainly stopped.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15 * 60);

impl RetryPolicy {
    pub fn from_config(copy: &CopyConfig) -> RetryPolicy {
        RetryPolicy {
            max_attempts: copy.max_attempts.max(1),
            base_delay: DEFAULT_BASE_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
            lease: DEFAULT_LEASE,
            lease_grace: DEFAULT_LEASE_GRACE,
        }
    }

    /// The wait after `attempts` failed attempts.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(20);
        self.base_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay)
    }
}

/// How one call to [`CopyEngine::copy`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyOutcome {
    /// Copied and marked STORED by this call.
    Stored {
        size: u64,
        sha256: String,
    },
    AlreadyStored,
    /// Marked FAILED by this call: refused, rejected, or out of attempts.
    Failed {
        attempts: u32,
        reason: String,
    },
    AlreadyFailed,
    /// No such asset item.
    Missing,
    /// Failed; PENDING again until `next_try_at`.
    RetryAt {
        attempts: u32,
        next_try_at: u64,
        error: String,
    },
    NotDue {
        next_try_at: u64,
    },
    /// Another worker is copying it.
    Busy {
        lease_until: u64,
    },
    /// The time budget ran out: stopped cleanly, lease released, no attempt counted.
    Interrupted,
    /// Our lease expired and another worker took the asset over; it records the result.
    LeaseLost,
}

impl CopyOutcome {
    /// Nothing more for this trigger to do.
    pub fn is_settled(&self) -> bool {
        matches!(
            self,
            CopyOutcome::Stored { .. }
                | CopyOutcome::AlreadyStored
                | CopyOutcome::Failed { .. }
                | CopyOutcome::AlreadyFailed
                | CopyOutcome::Missing
                | CopyOutcome::LeaseLost
        )
    }

    pub fn label(&self) -> &'static str {
        match self {
            CopyOutcome::Stored { .. } => "stored",
            CopyOutcome::AlreadyStored => "already_stored",
            CopyOutcome::Failed { .. } => "failed",
            CopyOutcome::AlreadyFailed => "already_failed",
            CopyOutcome::Missing => "missing",
            CopyOutcome::RetryAt { .. } => "retry_later",
            CopyOutcome::NotDue { .. } => "not_due",
            CopyOutcome::Busy { .. } => "busy",
            CopyOutcome::Interrupted => "interrupted",
            CopyOutcome::LeaseLost => "lease_lost",
        }
    }
}

/// Copies assets; cheap to clone (clients share their connection pools).
#[derive(Clone)]
pub struct CopyEngine {
    assets: AssetTable,
    source: Source,
    sink: S3Sink,
    policy: RetryPolicy,
    verifier: Option<Verifier>,
}

impl CopyEngine {
    pub fn new(assets: AssetTable, source: Source, sink: S3Sink, policy: RetryPolicy) -> Self {
        CopyEngine {
            assets,
            source,
            sink,
            policy,
            verifier: None,
        }
    }

    /// Confirms every asset with MusicGPT's byId before downloading it.
    pub fn with_verifier(mut self, verifier: Verifier) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// The engine as the binaries run it: the table, `BUCKET_NAME`, the source guard.
    pub fn from_config(config: &Config, sdk: &SdkConfig) -> Result<CopyEngine> {
        let bucket = config.require_bucket()?;
        let dynamodb = aws::dynamodb_client(sdk);
        let engine = CopyEngine::new(
            AssetTable::new(dynamodb.clone(), &config.table_name),
            Source::from_config(&config.copy)?,
            S3Sink::new(aws::s3_client(sdk), bucket),
            RetryPolicy::from_config(&config.copy),
        );
        Ok(match &config.musicgpt {
            Some(musicgpt) => {
                let api = MusicGptApi::new(&musicgpt.api_url, &musicgpt.api_key)?;
                engine.with_verifier(Verifier::new(
                    api,
                    TaskStore::new(dynamodb, &config.table_name),
                ))
            }
            None => engine,
        })
    }

    pub fn assets(&self) -> &AssetTable {
        &self.assets
    }

    /// One attempt at one asset. `stop` bounds the attempt (the caller's deadline); past it the
    /// copy is abandoned cleanly. `Err` only when DynamoDB fails.
    pub async fn copy(&self, asset: &AssetKey, stop: Option<Instant>) -> Result<CopyOutcome> {
        if stop.is_some_and(|stop| stop <= Instant::now()) {
            return Ok(CopyOutcome::Interrupted);
        }
        let now = now_secs();
        let owner = lease_owner();
        let lease = stop.map_or(self.policy.lease, |stop| {
            stop.saturating_duration_since(Instant::now()) + self.policy.lease_grace
        });
        let item = match self
            .assets
            .claim(asset, &owner, now, now + lease.as_secs())
            .await?
        {
            Ok(item) => item,
            Err(unclaimed) => {
                return Ok(match unclaimed {
                    Unclaimed::Missing => CopyOutcome::Missing,
                    Unclaimed::Stored => CopyOutcome::AlreadyStored,
                    Unclaimed::Failed => CopyOutcome::AlreadyFailed,
                    Unclaimed::NotDue(next_try_at) => CopyOutcome::NotDue { next_try_at },
                    Unclaimed::Leased(lease_until) => CopyOutcome::Busy { lease_until },
                });
            }
        };
        if let Some(outcome) = self.verify(asset, &owner, &item, now).await? {
            return Ok(outcome);
        }
        let started = std::time::Instant::now();
        let result = self.transfer(&item, stop).await;
        let outcome = self.settle(asset, &owner, &item, result).await?;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match &outcome {
            CopyOutcome::Stored { size, sha256 } => info!(
                task_id = %item.task_id, sk = %item.sk, size, sha256 = %sha256, elapsed_ms,
                "asset stored"
            ),
            other => warn!(
                task_id = %item.task_id, sk = %item.sk, outcome = other.label(), elapsed_ms,
                error = ?outcome_error(other), "asset not stored"
            ),
        }
        Ok(outcome)
    }

    /// `Some` when verification settles the attempt without a download: FAILED as unverified,
    /// or postponed because MusicGPT could not answer (that never counts as an attempt).
    async fn verify(
        &self,
        asset: &AssetKey,
        owner: &str,
        item: &AssetItem,
        now: u64,
    ) -> Result<Option<CopyOutcome>> {
        let Some(verifier) = &self.verifier else {
            return Ok(None);
        };
        let (kept, outcome) = match verifier.check(item).await {
            Ok(Verdict::Verified) => return Ok(None),
            Ok(Verdict::Unverified(why)) => {
                let reason = format!("unverified: {why}");
                let kept = self
                    .assets
                    .mark_failed(asset, owner, item.attempts, &reason, now)
                    .await?;
                (
                    kept,
                    CopyOutcome::Failed {
                        attempts: item.attempts,
                        reason,
                    },
                )
            }
            Err(err) => {
                let next_try_at = now + self.policy.backoff(1).as_secs();
                let error = truncate(&format!("verification postponed: {err}"));
                let kept = self
                    .assets
                    .mark_retry(asset, owner, item.attempts, &error, next_try_at, now)
                    .await?;
                (
                    kept,
                    CopyOutcome::RetryAt {
                        attempts: item.attempts,
                        next_try_at,
                        error,
                    },
                )
            }
        };
        warn!(task_id = %item.task_id, sk = %item.sk, outcome = outcome.label(), error = ?outcome_error(&outcome), "asset not verified");
        Ok(Some(if kept {
            outcome
        } else {
            CopyOutcome::LeaseLost
        }))
    }

    async fn transfer(&self, item: &AssetItem, stop: Option<Instant>) -> Result<Written> {
        // An earlier attempt may have uploaded the file and then lost its write-back: take
        // that copy rather than upload the same bytes twice.
        if let Some(written) = self
            .sink
            .existing(&item.s3_key, &without_query(&item.source_url), stop)
            .await?
        {
            info!(task_id = %item.task_id, sk = %item.sk, "found a complete earlier copy");
            return Ok(written);
        }
        let open = self.source.open(&item.source_url);
        let mut download = match stop {
            None => open.await?,
            Some(stop) => tokio::time::timeout_at(stop, open)
                .await
                .map_err(|_| Error::OutOfTime("time budget spent opening the source".into()))??,
        };
        let content_type = download
            .content_type()
            .map(str::to_owned)
            .unwrap_or_else(|| content_type_for(item.ext.as_deref().unwrap_or_default()).into());
        let mut metadata = HashMap::from([
            ("task-id".to_owned(), item.task_id.clone()),
            ("source-url".to_owned(), without_query(&item.source_url)),
        ]);
        if let Some(conversion) = &item.conversion_id {
            metadata.insert("conversion-id".into(), conversion.clone());
        }
        let spec = ObjectSpec {
            key: item.s3_key.clone(),
            content_type,
            metadata,
        };
        self.sink.write(&spec, &mut download, stop).await
    }

    /// Records how the attempt ended, under the lease.
    async fn settle(
        &self,
        asset: &AssetKey,
        owner: &str,
        item: &AssetItem,
        result: Result<Written>,
    ) -> Result<CopyOutcome> {
        let now = now_secs();
        let (kept, outcome) = match result {
            Ok(written) => {
                let stored = StoredCopy {
                    bucket: self.sink.bucket(),
                    s3_key: &item.s3_key,
                    size: written.size,
                    etag: &written.etag,
                    sha256: &written.sha256,
                };
                let kept = self.assets.mark_stored(asset, owner, &stored, now).await?;
                let outcome = CopyOutcome::Stored {
                    size: written.size,
                    sha256: written.sha256,
                };
                (kept, outcome)
            }
            Err(Error::OutOfTime(_)) => (
                self.assets.release(asset, owner).await?,
                CopyOutcome::Interrupted,
            ),
            Err(err) => {
                let attempts = item.attempts.saturating_add(1);
                let reason = truncate(&err.to_string());
                if !err.is_retryable() || attempts >= self.policy.max_attempts {
                    let kept = self
                        .assets
                        .mark_failed(asset, owner, attempts, &reason, now)
                        .await?;
                    (kept, CopyOutcome::Failed { attempts, reason })
                } else {
                    let next_try_at = now + self.policy.backoff(attempts).as_secs();
                    let kept = self
                        .assets
                        .mark_retry(asset, owner, attempts, &reason, next_try_at, now)
                        .await?;
                    let outcome = CopyOutcome::RetryAt {
                        attempts,
                        next_try_at,
                        error: reason,
                    };
                    (kept, outcome)
                }
            }
        };
        Ok(if kept {
            outcome
        } else {
            CopyOutcome::LeaseLost
        })
    }
}

fn outcome_error(outcome: &CopyOutcome) -> Option<&str> {
    match outcome {
        CopyOutcome::Failed { reason, .. } => Some(reason),
        CopyOutcome::RetryAt { error, .. } => Some(error),
        _ => None,
    }
}

/// `COPY_MODE=inline`: before the webhook answers, copies the PENDING assets of the task the
/// callback was recorded for, within the invocation's time budget. What does not fit stays
/// PENDING (its lease released) for a later trigger.
pub struct InlineCopy {
    engine: CopyEngine,
    budget: Budget,
    concurrency: usize,
}

/// How long a trigger may work: until the Lambda deadline minus a margin (to abort, write back
/// and answer), or for `fallback` when there is no deadline (local runs, tests).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub margin: Duration,
    pub fallback: Duration,
}

impl Budget {
    pub fn stop(&self, deadline: Option<SystemTime>) -> Instant {
        let remaining = match deadline {
            Some(deadline) => deadline
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .saturating_sub(self.margin),
            None => self.fallback,
        };
        Instant::now() + remaining
    }
}

/// Epoch milliseconds are above this for any date after 2001; remaining times are far below it.
const EPOCH_MS_FLOOR: u64 = 1_000_000_000_000;

/// The invocation's deadline from Lambda's `deadline_ms` (epoch milliseconds). 0 (tests) means
/// none. `cargo lambda watch` (1.9) sends the time remaining instead; read as a date it would lie
/// in 1970 and end every budget at once, so such a value counts from now.
pub fn lambda_deadline(deadline_ms: u64) -> Option<SystemTime> {
    match deadline_ms {
        0 => None,
        ms if ms < EPOCH_MS_FLOOR => Some(SystemTime::now() + Duration::from_millis(ms)),
        ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
    }
}

/// Copies several assets at once: a stem callback names up to 40 files.
pub const DEFAULT_CONCURRENCY: usize = 4;

impl InlineCopy {
    pub fn new(engine: CopyEngine) -> InlineCopy {
        InlineCopy {
            engine,
            budget: Budget {
                margin: Duration::from_secs(5),
                fallback: Duration::from_secs(20),
            },
            concurrency: DEFAULT_CONCURRENCY,
        }
    }

    pub fn with_budget(mut self, budget: Budget) -> InlineCopy {
        self.budget = budget;
        self
    }

    /// Copies every PENDING, due asset of `task_pk`, stopping at `stop`.
    pub async fn copy_task(&self, task_pk: &str, stop: Instant) -> Result<Vec<CopyOutcome>> {
        let assets = self.engine.assets().pending_in_task(task_pk).await?;
        Ok(copy_all(&self.engine, assets, stop, self.concurrency).await)
    }
}

impl AfterRecord for InlineCopy {
    async fn after_record(&self, outcome: &Outcome, deadline: Option<SystemTime>) {
        // A parked callback's task is not known yet; a duplicate may follow an inline copy
        // that ran out of time, so it gets another go.
        let Some(task) = outcome.task_id() else {
            return;
        };
        let stop = self.budget.stop(deadline);
        match self.copy_task(&keys::task_pk(task), stop).await {
            Ok(outcomes) => {
                let stored = outcomes
                    .iter()
                    .filter(|o| matches!(o, CopyOutcome::Stored { .. }))
                    .count();
                info!(task_id = %task, assets = outcomes.len(), stored, "inline copy done");
            }
            Err(err) => warn!(task_id = %task, error = %err, "inline copy could not start"),
        }
    }
}

/// One attempt at each asset, a few at a time. Storage errors are logged and count as not
/// settled: the asset stays PENDING.
pub async fn copy_all(
    engine: &CopyEngine,
    assets: Vec<AssetKey>,
    stop: Instant,
    concurrency: usize,
) -> Vec<CopyOutcome> {
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut running = tokio::task::JoinSet::new();
    for asset in assets {
        let engine = engine.clone();
        let permits = Arc::clone(&permits);
        running.spawn(async move {
            let _permit = permits.acquire_owned().await;
            match engine.copy(&asset, Some(stop)).await {
                Ok(outcome) => outcome,
                Err(err) => {
                    warn!(sk = %asset.sk, error = %err, "copy attempt not recorded");
                    CopyOutcome::Interrupted
                }
            }
        });
    }
    let mut outcomes = Vec::new();
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok(outcome) => outcomes.push(outcome),
            Err(err) => warn!(error = %err, "copy task panicked or was cancelled"),
        }
    }
    outcomes
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A lease owner id unique across workers: a per-process random key (the std hasher's OS
/// seed), the time and a counter.
fn lease_owner() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<RandomState> = std::sync::OnceLock::new();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let random = SEED
        .get_or_init(RandomState::new)
        .hash_one((n, nanos, std::process::id()));
    format!("{random:016x}-{n}")
}

/// The URL without its query or fragment: presigned URLs carry credentials there.
fn without_query(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or_default().to_owned()
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_epoch_times_or_time_remaining() {
        assert_eq!(lambda_deadline(0), None);
        let epoch = 1_800_000_000_000;
        assert_eq!(
            lambda_deadline(epoch),
            Some(UNIX_EPOCH + Duration::from_millis(epoch))
        );
        let ahead = lambda_deadline(600_000)
            .and_then(|d| d.duration_since(SystemTime::now()).ok())
            .unwrap_or_default();
        assert!(
            ahead > Duration::from_secs(590) && ahead <= Duration::from_secs(600),
            "{ahead:?}"
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(60),
            lease: DEFAULT_LEASE,
            lease_grace: DEFAULT_LEASE_GRACE,
        };
        let waits: Vec<u64> = (1..=5).map(|a| policy.backoff(a).as_secs()).collect();
        assert_eq!(waits, vec![10, 20, 40, 60, 60]);
        assert_eq!(policy.backoff(u32::MAX).as_secs(), 60);
    }

    #[test]
    fn source_urls_lose_their_query() {
        assert_eq!(
            without_query("https://h/a/b.mp3?X-Amz-Signature=abc#f"),
            "https://h/a/b.mp3"
        );
        assert_ne!(lease_owner(), lease_owner());
        assert_eq!(truncate(&"é".repeat(600)).chars().count(), 503);
    }
}
