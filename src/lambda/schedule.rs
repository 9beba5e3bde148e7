//! The scheduled front end: each EventBridge tick runs one sweep of due assets and, when
//! MusicGPT's API is configured, one reconciliation of tasks whose callbacks never came.

use std::sync::Arc;
use std::time::Duration;

use lambda_runtime::LambdaEvent;
use serde_json::{Value, json};

use crate::app::announce::EventSweep;
use crate::app::ports::{Clock, Ports, SystemClock};
use crate::app::reconcile::Reconciler;
use crate::app::sweep::Sweeper;
use crate::error::Result;
use crate::lambda::budget::{Budget, lambda_deadline};
use crate::lambda::metrics::{Metrics, record_sweep};

pub struct Schedule<P: Ports> {
    sweeper: Sweeper<P>,
    reconciler: Option<Reconciler<P>>,
    budget: Budget,
    metrics: Option<Metrics>,
    events: Option<Arc<dyn EventSweep>>,
}

impl<P: Ports> Schedule<P> {
    pub fn new(sweeper: Sweeper<P>, reconciler: Option<Reconciler<P>>) -> Schedule<P> {
        Schedule {
            sweeper,
            reconciler,
            budget: Budget {
                margin: Duration::from_secs(20),
                fallback: Duration::from_secs(240),
            },
            metrics: None,
            events: None,
        }
    }

    /// Also delivers the events still due (published late, forwards to retry).
    pub fn with_events(mut self, events: Arc<dyn EventSweep>) -> Schedule<P> {
        self.events = Some(events);
        self
    }

    pub fn with_metrics(mut self, metrics: Metrics) -> Schedule<P> {
        self.metrics = Some(metrics);
        self
    }

    pub fn with_budget(mut self, budget: Budget) -> Schedule<P> {
        self.budget = budget;
        self
    }

    /// What the run did, as the invocation's result (it shows in the console and the logs).
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value> {
        let span = tracing::info_span!(
            "schedule",
            trace_id = event.context.xray_trace_id.as_deref()
        );
        tracing::Instrument::instrument(self.run(&event), span).await
    }

    async fn run(&self, event: &LambdaEvent<Value>) -> Result<Value> {
        let stop = self.budget.stop(lambda_deadline(event.context.deadline));
        // First, as it is quick (no downloads): events still due since earlier runs.
        let events = match &self.events {
            Some(events) => match events.sweep_due(stop).await {
                Ok(report) => Some(json!({
                    "tasks": report.tasks,
                    "recorded": report.recorded,
                    "published": report.published,
                    "publish_failed": report.publish_failed,
                    "forwarded": report.forwarded,
                    "forward_failed": report.forward_failed,
                    "dead": report.dead,
                })),
                Err(err) => {
                    tracing::warn!(error = %err, "event sweep failed");
                    Some(json!({ "error": err.to_string() }))
                }
            },
            None => None,
        };
        let sweep = self.sweeper.run(stop).await?;
        record_sweep(&sweep);
        let mut result = json!({
            "sweep": {
                "pending": sweep.backlog.pending,
                "oldest_unstored_age_seconds": sweep.backlog.oldest_age_secs,
                "at_risk": sweep.backlog.at_risk,
                "due": sweep.due,
                "stored": sweep.stored,
                "retry_later": sweep.retry_later,
                "failed": sweep.failed,
                "expired": sweep.expired,
                "deferred": sweep.deferred,
            }
        });
        if let Some(events) = events {
            result["events"] = events;
        }
        if let Some(reconciler) = &self.reconciler {
            let report = reconciler.run(SystemClock.now_secs()).await?;
            result["reconcile"] = json!({
                "due": report.due,
                "looked_up": report.looked_up,
                "recorded": report.recorded,
                "copied": report.copied,
                "deferred": report.deferred,
            });
        }
        if let Some(metrics) = &self.metrics {
            metrics.flush();
        }
        Ok(result)
    }
}
