//! The copy use case, one engine for every trigger (the stream copier and the inline webhook):
//! claim an asset under a lease, stream its source into S3, verify it, and record the result
//! while the lease is still ours.
//!
//! Retry policy (`domain::retry`): a failure that may pass (5xx, 429, reset, timeout, short body,
//! S3 error) puts the asset back to PENDING with `attempts + 1`, `last_error` and `next_try_at`
//! = now + backoff (base * 2^(attempts - 1), capped), until the file's deadline; a failure at or
//! past the deadline makes it EXPIRED. A refusal by the source guard, a verification mismatch,
//! or an answer that cannot change (over the size cap; not found past the grace window) makes
//! it FAILED at once. Running out of time releases the lease without counting an attempt.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{Instrument, info, warn};

use crate::app::announce::CopyEvents;
use crate::app::measure;
use crate::app::ports::{
    AssetStore, AudioSource, ChunkSource, Clock, Download, ObjectSink, ObjectSpec, Ports,
    SystemClock, Written,
};
use crate::app::verify::{Verdict, Verifier};
use crate::domain::asset::{AssetItem, StoredCopy, Unclaimed};
use crate::domain::events::FileView;
use crate::domain::ids::Id;
use crate::domain::keys::AssetKey;
use crate::domain::media::content_type_for;
use crate::domain::retry::{AfterFailure, Attempt, RetryPolicy};
use crate::error::{Error, Result};

/// Longest `last_error` kept on an item.
const MAX_ERROR_CHARS: usize = 500;
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
    /// Marked EXPIRED by this call: its deadline passed before a copy succeeded.
    Expired {
        attempts: u32,
        reason: String,
    },
    AlreadyExpired,
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
                | CopyOutcome::Expired { .. }
                | CopyOutcome::AlreadyExpired
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
            CopyOutcome::Expired { .. } => "expired",
            CopyOutcome::AlreadyExpired => "already_expired",
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
pub struct CopyEngine<P: Ports> {
    assets: P::Assets,
    source: P::Source,
    sink: P::Sink,
    policy: RetryPolicy,
    verifier: Option<Verifier<P>>,
    clock: Arc<dyn Clock>,
    /// Events for the owner's application (`app::announce`), when they are on.
    events: Option<Arc<dyn CopyEvents>>,
}

impl<P: Ports> CopyEngine<P> {
    pub fn new(assets: P::Assets, source: P::Source, sink: P::Sink, policy: RetryPolicy) -> Self {
        CopyEngine {
            assets,
            source,
            sink,
            policy,
            verifier: None,
            clock: Arc::new(SystemClock),
            events: None,
        }
    }

    /// Writes each file's `Asset Stored` event with its STORED mark, and announces the task
    /// whenever one of its files settles.
    pub fn with_events(mut self, events: Arc<dyn CopyEvents>) -> Self {
        self.events = Some(events);
        self
    }

    /// Confirms every asset with MusicGPT's byId before downloading it.
    pub fn with_verifier(mut self, verifier: Verifier<P>) -> Self {
        self.verifier = Some(verifier);
        self
    }

    /// The clock that decides when a retry is due (tests move it instead of sleeping).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn assets(&self) -> &P::Assets {
        &self.assets
    }

    /// Now, by the engine's clock.
    pub fn now(&self) -> u64 {
        self.clock.now_secs()
    }

    /// The PENDING assets of `task`.
    pub async fn pending_in_task(&self, task: &Id) -> Result<Vec<AssetKey>> {
        self.assets.pending_in_task(task).await
    }

    /// One attempt at one asset. `stop` bounds the attempt (the caller's deadline); past it the
    /// copy is abandoned cleanly. `Err` only when DynamoDB fails.
    pub async fn copy(&self, asset: &AssetKey, stop: Option<Instant>) -> Result<CopyOutcome> {
        if stop.is_some_and(|stop| stop <= Instant::now()) {
            return Ok(CopyOutcome::Interrupted);
        }
        let (owner, now) = (lease_owner(), self.clock.now_secs());
        let item = match self.claim(asset, &owner, now, stop).await? {
            Ok(item) => item,
            Err(outcome) => return Ok(outcome),
        };
        if let Some(outcome) = self.verify(asset, &owner, &item, now).await? {
            if let (Some(events), CopyOutcome::Failed { .. }, Some(task)) =
                (&self.events, &outcome, Id::parse(&item.task_id))
            {
                events.settled(&task).await;
            }
            return Ok(outcome);
        }
        let started = std::time::Instant::now();
        let result = self.transfer(&item, stop).await;
        self.finish(asset, &owner, &item, result, started).await
    }

    /// One attempt at an asset whose item the trigger has already seen (a stream record's new
    /// image): the download and the upload start while the lease is taken, and the body's end
    /// waits for it, so no object is created before the lease is ours (the sink creates one
    /// only once it has read the body to its end); any other answer fails the body and leaves
    /// nothing behind. A first claim only: an asset tried before (or one to verify first, or
    /// whose item has changed since) takes the plain path of [`CopyEngine::copy`].
    pub async fn copy_seen(&self, seen: &AssetItem, stop: Option<Instant>) -> Result<CopyOutcome> {
        let asset = AssetKey {
            pk: seen.pk.clone(),
            sk: seen.sk.clone(),
        };
        if self.verifier.is_some() || seen.claims > 0 || seen.attempts > 0 {
            return self.copy(&asset, stop).await;
        }
        if stop.is_some_and(|stop| stop <= Instant::now()) {
            return Ok(CopyOutcome::Interrupted);
        }
        let (owner, now) = (lease_owner(), self.clock.now_secs());
        let (go_ahead, gate) = watch::channel(None);
        let claim = async {
            let claimed = self.claim(&asset, &owner, now, stop).await;
            // Ours, first ever, and the item the download was opened for.
            let go = matches!(&claimed, Ok(Ok(item))
                if !item.may_have_earlier_copy()
                    && item.source_url == seen.source_url
                    && item.s3_key == seen.s3_key);
            let _ = go_ahead.send(Some(go));
            (claimed, go)
        };
        let started = std::time::Instant::now();
        let ((claimed, went), early) = tokio::join!(claim, self.transfer_gated(seen, gate, stop));
        let item = match claimed? {
            Ok(item) => item,
            Err(outcome) => return Ok(outcome),
        };
        let result = match went {
            true => early,
            // Claimed, but not as it was seen: the plain path, which looks for earlier copies.
            false => self.transfer(&item, stop).await,
        };
        self.finish(&asset, &owner, &item, result, started).await
    }

    /// Takes the lease, or says why not (announcing a settled asset: a trigger delivered again
    /// after a crash may be the only one left to do it).
    async fn claim(
        &self,
        asset: &AssetKey,
        owner: &str,
        now: u64,
        stop: Option<Instant>,
    ) -> Result<std::result::Result<AssetItem, CopyOutcome>> {
        let lease = stop.map_or(self.policy.lease, |stop| {
            stop.saturating_duration_since(Instant::now()) + self.policy.lease_grace
        });
        let unclaimed = match self
            .assets
            .claim(asset, owner, now, now + lease.as_secs())
            .await?
        {
            Ok(item) => return Ok(Ok(item)),
            Err(unclaimed) => unclaimed,
        };
        let settled = matches!(
            unclaimed,
            Unclaimed::Stored | Unclaimed::Failed | Unclaimed::Expired
        );
        // Settled by an earlier attempt that may have died before announcing (a stream
        // record delivered again after a crash): announce now; nothing is owed twice.
        if let (true, Some(events), Some(task)) = (
            settled,
            &self.events,
            asset.pk.strip_prefix("TASK#").and_then(Id::parse),
        ) {
            events.settled(&task).await;
        }
        Ok(Err(match unclaimed {
            Unclaimed::Missing => CopyOutcome::Missing,
            Unclaimed::Stored => CopyOutcome::AlreadyStored,
            Unclaimed::Failed => CopyOutcome::AlreadyFailed,
            Unclaimed::Expired => CopyOutcome::AlreadyExpired,
            Unclaimed::NotDue(next_try_at) => CopyOutcome::NotDue { next_try_at },
            Unclaimed::Leased(lease_until) => CopyOutcome::Busy { lease_until },
        }))
    }

    /// Records how the transfer ended (its tag beside), announces, measures and logs it.
    async fn finish(
        &self,
        asset: &AssetKey,
        owner: &str,
        item: &AssetItem,
        result: Result<(Written, String)>,
        started: std::time::Instant,
    ) -> Result<CopyOutcome> {
        // A multipart object learns its hash only once complete: its tag goes on beside the
        // STORED write rather than before it.
        let untagged = match &result {
            Ok((written, _)) if !written.tagged => Some(written.sha256.clone()),
            _ => None,
        };
        let tag = async {
            match &untagged {
                Some(sha256) => self.sink.tag(&item.s3_key, sha256).await,
                None => Ok(()),
            }
        };
        let (outcome, tagged) = tokio::join!(self.settle(asset, owner, item, result), tag);
        if let Err(err) = tagged {
            warn!(task_id = %item.task_id, sk = %item.sk, error = %err, "object stored without its sha256 tag");
        }
        let outcome = outcome?;
        if let Some(events) = &self.events
            && matches!(
                outcome,
                CopyOutcome::Stored { .. }
                    | CopyOutcome::Failed { .. }
                    | CopyOutcome::Expired { .. }
            )
            && let Some(task) = Id::parse(&item.task_id)
        {
            events.settled(&task).await;
        }
        let took = started.elapsed();
        let waited = item
            .created_at
            .map(|received| self.clock.now_secs().saturating_sub(received));
        let stored_bytes = match &outcome {
            CopyOutcome::Stored { size, .. } => Some(*size),
            _ => None,
        };
        measure::copy(outcome.label(), stored_bytes, took, waited);
        let elapsed_ms = took.as_millis() as u64;
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
        let verdict = verifier.check(item).await;
        measure::verification(match &verdict {
            Ok(Verdict::Verified) => "verified",
            Ok(Verdict::Unverified(_)) => "unverified",
            Err(_) => "postponed",
        });
        let (kept, outcome) = match verdict {
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

    /// The copy, and the Content-Type it was stored with.
    async fn transfer(&self, item: &AssetItem, stop: Option<Instant>) -> Result<(Written, String)> {
        // An earlier attempt may have uploaded the file and then lost its write-back: take
        // that copy rather than upload the same bytes twice. A first claim has no earlier
        // attempt, and saves the look.
        if item.may_have_earlier_copy()
            && let Some(written) = self
                .sink
                .existing(&item.s3_key, &without_query(&item.source_url), stop)
                .await?
        {
            info!(task_id = %item.task_id, sk = %item.sk, "found a complete earlier copy");
            let fallback = content_type_for(item.ext.as_deref().unwrap_or_default());
            return Ok((written, fallback.to_owned()));
        }
        let mut download = self.open(item, stop).await?;
        self.write(item, &mut download, stop).await
    }

    /// The copy of `seen` made while its lease is taken: the download opens and the body flows
    /// at once, and reaches its end only once `gate` says the lease is ours (a `false` fails
    /// it, storing nothing).
    async fn transfer_gated(
        &self,
        seen: &AssetItem,
        mut gate: watch::Receiver<Option<bool>>,
        stop: Option<Instant>,
    ) -> Result<(Written, String)> {
        let opened = tokio::select! {
            opened = self.open(seen, stop) => opened,
            // Refused before the download answered: no need to wait for it.
            Ok(_) = gate.wait_for(|go| *go == Some(false)) => return Err(not_ours()),
        };
        let mut download = Gated {
            inner: opened?,
            gate,
        };
        if *download.gate.borrow() == Some(false) {
            return Err(not_ours());
        }
        self.write(seen, &mut download, stop).await
    }

    async fn open(
        &self,
        item: &AssetItem,
        stop: Option<Instant>,
    ) -> Result<<P::Source as AudioSource>::Download> {
        let open = self.source.open(&item.source_url);
        match stop {
            None => open.await,
            Some(stop) => tokio::time::timeout_at(stop, open)
                .await
                .map_err(|_| Error::OutOfTime("time budget spent opening the source".into()))?,
        }
    }

    async fn write(
        &self,
        item: &AssetItem,
        download: &mut impl Download,
        stop: Option<Instant>,
    ) -> Result<(Written, String)> {
        let fallback = content_type_for(item.ext.as_deref().unwrap_or_default());
        let content_type = download
            .content_type()
            .map(str::to_owned)
            .unwrap_or_else(|| fallback.into());
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
        let written = self.sink.write(&spec, download, stop).await?;
        Ok((written, spec.content_type))
    }

    /// The asset's own deadline, or for items older than deadlines, one from when it came.
    fn deadline(&self, item: &AssetItem) -> Option<u64> {
        item.deadline_at.or_else(|| {
            let ext = item.ext.as_deref().unwrap_or_default();
            item.created_at
                .map(|at| self.policy.retention.deadline(at, ext))
        })
    }

    /// Records how the attempt ended, under the lease.
    async fn settle(
        &self,
        asset: &AssetKey,
        owner: &str,
        item: &AssetItem,
        result: Result<(Written, String)>,
    ) -> Result<CopyOutcome> {
        let now = self.clock.now_secs();
        let (kept, outcome) = match result {
            Ok((written, content_type)) => {
                let stored = StoredCopy {
                    bucket: self.sink.bucket(),
                    s3_key: &item.s3_key,
                    size: written.size,
                    etag: &written.etag,
                    sha256: &written.sha256,
                };
                let kept = match (&self.events, Id::parse(&item.task_id)) {
                    (Some(events), Some(task)) => {
                        let file = FileView::stored_copy(item, &stored, &content_type, now);
                        let outbox = events.stored(&task, file, now).await?;
                        self.assets
                            .mark_stored_with(asset, owner, &stored, &content_type, now, &outbox)
                            .await?
                    }
                    _ => self.assets.mark_stored(asset, owner, &stored, now).await?,
                };
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
                let attempt = Attempt {
                    attempts,
                    now,
                    received_at: item.created_at,
                    deadline: self.deadline(item),
                };
                match self.policy.after_failure(&err, attempt) {
                    AfterFailure::Fail => {
                        let kept = self
                            .assets
                            .mark_failed(asset, owner, attempts, &reason, now)
                            .await?;
                        (kept, CopyOutcome::Failed { attempts, reason })
                    }
                    AfterFailure::Expire => {
                        let kept = self
                            .assets
                            .mark_expired(asset, owner, attempts, &reason, now)
                            .await?;
                        (kept, CopyOutcome::Expired { attempts, reason })
                    }
                    AfterFailure::RetryAt(next_try_at) => {
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
            }
        };
        Ok(if kept {
            outcome
        } else {
            CopyOutcome::LeaseLost
        })
    }
}

/// What a prepared copy ends with when the lease went elsewhere (never recorded).
fn not_ours() -> Error {
    Error::source("the lease was not taken: nothing stored")
}

/// A download whose end waits for a go-ahead: its bytes flow at once (the sink sends them
/// while the lease is taken), but the sink creates the object only once it has seen the end,
/// which comes only once the lease is ours; a lease that is not ours fails the body instead.
struct Gated<D> {
    inner: D,
    gate: watch::Receiver<Option<bool>>,
}

impl<D: Download> ChunkSource for Gated<D> {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        // Refused meanwhile: stop sending bytes that cannot be stored.
        if *self.gate.borrow() == Some(false) {
            return Err(not_ours());
        }
        let chunk = self.inner.next_chunk().await?;
        if chunk.is_none() {
            let go = self
                .gate
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|go| *go);
            if go != Some(true) {
                return Err(not_ours());
            }
        }
        Ok(chunk)
    }

    fn announced_len(&self) -> Option<u64> {
        self.inner.announced_len()
    }
}

impl<D: Download> Download for Gated<D> {
    fn content_type(&self) -> Option<&str> {
        self.inner.content_type()
    }
}

fn outcome_error(outcome: &CopyOutcome) -> Option<&str> {
    match outcome {
        CopyOutcome::Failed { reason, .. } | CopyOutcome::Expired { reason, .. } => Some(reason),
        CopyOutcome::RetryAt { error, .. } => Some(error),
        _ => None,
    }
}

/// Copies several assets at once: a stem callback names up to 40 files.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// One attempt at each asset, a few at a time. Storage errors are logged and count as not
/// settled: the asset stays PENDING.
pub async fn copy_all<P: Ports>(
    engine: &CopyEngine<P>,
    assets: Vec<AssetKey>,
    stop: Instant,
    concurrency: usize,
) -> Vec<CopyOutcome> {
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut running = tokio::task::JoinSet::new();
    for asset in assets {
        let engine = engine.clone();
        let permits = Arc::clone(&permits);
        // A child of the trigger's span (its trace id): every line of this copy carries both.
        let span = copy_span(&asset);
        running.spawn(
            async move {
                let _permit = permits.acquire_owned().await;
                match engine.copy(&asset, Some(stop)).await {
                    Ok(outcome) => outcome,
                    Err(err) => {
                        warn!(sk = %asset.sk, error = %err, "copy attempt not recorded");
                        CopyOutcome::Interrupted
                    }
                }
            }
            .instrument(span),
        );
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

/// The span of one copy's work: its task and asset, under the current (trigger's) span.
pub fn copy_span(asset: &AssetKey) -> tracing::Span {
    let task = asset.pk.strip_prefix("TASK#").unwrap_or(&asset.pk);
    tracing::info_span!("copy", task_id = %task, sk = %asset.sk)
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
    fn source_urls_lose_their_query() {
        assert_eq!(
            without_query("https://h/a/b.mp3?X-Amz-Signature=abc#f"),
            "https://h/a/b.mp3"
        );
        assert_ne!(lease_owner(), lease_owner());
        assert_eq!(truncate(&"é".repeat(600)).chars().count(), 503);
    }
}
