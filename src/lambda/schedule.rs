//! The scheduled front end: each EventBridge tick runs one reconciliation.

use lambda_runtime::LambdaEvent;
use serde_json::{Value, json};

use crate::app::ports::{Clock, Ports, SystemClock};
use crate::app::reconcile::Reconciler;
use crate::error::Result;

pub struct Schedule<P: Ports> {
    reconciler: Reconciler<P>,
}

impl<P: Ports> Schedule<P> {
    pub fn new(reconciler: Reconciler<P>) -> Schedule<P> {
        Schedule { reconciler }
    }

    /// What the run did, as the invocation's result (it shows in the console and the logs).
    pub async fn handle(&self, _event: LambdaEvent<Value>) -> Result<Value> {
        let report = self.reconciler.run(SystemClock.now_secs()).await?;
        Ok(json!({
            "due": report.due,
            "looked_up": report.looked_up,
            "recorded": report.recorded,
            "copied": report.copied,
            "deferred": report.deferred,
        }))
    }
}
