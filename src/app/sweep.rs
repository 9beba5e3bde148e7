//! The sweep: every PENDING asset whose next try has come is copied, oldest first, a few at a
//! time and within the run's time budget. It is what heals a copy that failed in any trigger
//! (an inline copy, a stream record that ran out of retries, an outage of hours), so it runs in
//! every deployment, with or without MusicGPT's API.

use std::time::Duration;

use tokio::time::Instant;
use tracing::info;

use crate::app::copy::{CopyEngine, CopyOutcome, DEFAULT_CONCURRENCY, copy_all};
use crate::app::ports::{AssetStore, Ports};
use crate::domain::asset::Backlog;
use crate::domain::keys::AssetKey;
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct SweepSettings {
    /// Copies one run starts at most.
    pub batch: usize,
    pub concurrency: usize,
    /// An asset whose deadline is nearer than this counts as at risk.
    pub warning: Duration,
}

impl Default for SweepSettings {
    fn default() -> Self {
        SweepSettings {
            batch: 200,
            concurrency: DEFAULT_CONCURRENCY,
            warning: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// What one run found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// The unstored assets before the run.
    pub backlog: Backlog,
    /// Assets whose next try had come.
    pub due: usize,
    /// Due assets left for the next run (over the batch).
    pub deferred: usize,
    pub stored: usize,
    pub retry_later: usize,
    pub failed: usize,
    pub expired: usize,
}

pub struct Sweeper<P: Ports> {
    engine: CopyEngine<P>,
    settings: SweepSettings,
}

impl<P: Ports> Sweeper<P> {
    pub fn new(engine: CopyEngine<P>, settings: SweepSettings) -> Sweeper<P> {
        Sweeper { engine, settings }
    }

    /// One pass over the due assets, stopping new copies at `stop`.
    pub async fn run(&self, stop: Instant) -> Result<SweepReport> {
        let now = self.engine.now();
        let pending = self.engine.assets().pending_assets().await?;
        let backlog = Backlog::of(&pending, now, self.settings.warning.as_secs());
        let mut due: Vec<_> = pending
            .into_iter()
            .filter(|a| a.next_try_at.is_none_or(|at| at <= now))
            .collect();
        // Oldest first: the nearest deadline is the first to lose.
        due.sort_by_key(|a| (a.deadline_at.unwrap_or(u64::MAX), a.created_at));
        let mut report = SweepReport {
            backlog,
            due: due.len(),
            deferred: due.len().saturating_sub(self.settings.batch),
            ..SweepReport::default()
        };
        let batch: Vec<AssetKey> = due
            .into_iter()
            .take(self.settings.batch)
            .map(|a| AssetKey { pk: a.pk, sk: a.sk })
            .collect();
        for outcome in copy_all(&self.engine, batch, stop, self.settings.concurrency).await {
            match outcome {
                CopyOutcome::Stored { .. } => report.stored += 1,
                CopyOutcome::RetryAt { .. } => report.retry_later += 1,
                CopyOutcome::Failed { .. } => report.failed += 1,
                CopyOutcome::Expired { .. } => report.expired += 1,
                _ => {}
            }
        }
        info!(?report, "sweep done");
        Ok(report)
    }
}
