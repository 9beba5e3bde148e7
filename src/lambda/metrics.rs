//! Metrics in CloudWatch's embedded metric format: the use cases' figures go through the
//! `metrics` facade; each front end flushes one document to stdout per invocation, which
//! CloudWatch turns into metrics (namespace `MusicGptWebhook`, dimension `function`).

use metrics_cloudwatch_embedded::{Builder, Collector};
use tracing::warn;

use crate::app::measure;
use crate::app::sweep::SweepReport;

pub const NAMESPACE: &str = "MusicGptWebhook";

/// The process's collector; `None` where none could be installed (a second one in tests).
#[derive(Clone, Copy)]
pub struct Metrics(Option<&'static Collector>);

impl Metrics {
    /// Installs the collector for this process, once, at cold start.
    pub fn init(function: &str) -> Metrics {
        let collector = Builder::new()
            .cloudwatch_namespace(NAMESPACE)
            .with_dimension("function", function.to_owned())
            .init();
        match collector {
            Ok(collector) => {
                measure::describe();
                Metrics(Some(collector))
            }
            Err(err) => {
                warn!(error = %err, "metrics collector not installed");
                Metrics(None)
            }
        }
    }

    /// What was counted since the last flush, as EMF lines (tests read them).
    pub fn flush_to(&self, out: impl std::io::Write) -> std::io::Result<()> {
        match self.0 {
            Some(collector) => collector.flush(out),
            None => Ok(()),
        }
    }

    /// Writes what was counted since the last flush, as one log line.
    pub fn flush(&self) {
        if let Some(collector) = self.0
            && let Err(err) = collector.flush(std::io::stdout())
        {
            warn!(error = %err, "metrics not written");
        }
    }
}

/// The sweep's figures: the backlog the expiry alarm watches, and what the run did.
pub fn record_sweep(report: &SweepReport) {
    metrics::gauge!("UnstoredAssets").set(report.backlog.pending as f64);
    metrics::gauge!("OldestUnstoredAssetAgeSeconds").set(report.backlog.oldest_age_secs as f64);
    metrics::gauge!("AssetsAtRiskOfExpiry").set(report.backlog.at_risk as f64);
    metrics::counter!("SweepCopies", "outcome" => "stored").increment(report.stored as u64);
    metrics::counter!("SweepCopies", "outcome" => "retry_later")
        .increment(report.retry_later as u64);
    metrics::counter!("SweepCopies", "outcome" => "failed").increment(report.failed as u64);
    metrics::counter!("SweepCopies", "outcome" => "expired").increment(report.expired as u64);
}
