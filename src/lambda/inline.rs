//! `COPY_MODE=inline`: before the webhook answers, copies the PENDING assets of the task the
//! callback was recorded for, within the invocation's time budget. What does not fit stays
//! PENDING (its lease released) for a later trigger.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tracing::{info, warn};

use crate::app::copy::{CopyEngine, CopyOutcome, DEFAULT_CONCURRENCY, copy_all};
use crate::app::ports::Ports;
use crate::app::record::Outcome;
use crate::domain::ids::Id;
use crate::error::Result;
use crate::lambda::budget::Budget;
use crate::lambda::http::AfterRecord;

pub struct InlineCopy<P: Ports> {
    engine: CopyEngine<P>,
    budget: Budget,
    concurrency: usize,
}

impl<P: Ports> InlineCopy<P> {
    pub fn new(engine: CopyEngine<P>) -> InlineCopy<P> {
        InlineCopy {
            engine,
            budget: Budget {
                margin: Duration::from_secs(5),
                fallback: Duration::from_secs(20),
            },
            concurrency: DEFAULT_CONCURRENCY,
        }
    }

    pub fn with_budget(mut self, budget: Budget) -> InlineCopy<P> {
        self.budget = budget;
        self
    }

    /// Copies every PENDING, due asset of `task`, stopping at `stop`.
    pub async fn copy_task(&self, task: &Id, stop: Instant) -> Result<Vec<CopyOutcome>> {
        let assets = self.engine.pending_in_task(task).await?;
        Ok(copy_all(&self.engine, assets, stop, self.concurrency).await)
    }
}

impl<P: Ports> AfterRecord for InlineCopy<P> {
    async fn after_record(&self, outcome: &Outcome, deadline: Option<SystemTime>) {
        // A parked callback's task is not known yet; a duplicate may follow an inline copy
        // that ran out of time, so it gets another go.
        let Some(task) = outcome.task_id() else {
            return;
        };
        let stop = self.budget.stop(deadline);
        match self.copy_task(task, stop).await {
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
