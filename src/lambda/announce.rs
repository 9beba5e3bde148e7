//! Announcing after the webhook recorded a callback: a failure status can settle a task that
//! has no file to copy, and the last callback of a task can complete it. Runs after any other
//! follow-up (the inline copy), before the webhook answers, so a crash before it leaves
//! MusicGPT without an answer and its redelivery announces again.

use std::sync::Arc;
use std::time::SystemTime;

use crate::app::announce::CopyEvents;
use crate::app::record::Outcome;
use crate::lambda::http::AfterRecord;

pub struct AnnounceAfter<A> {
    inner: A,
    events: Arc<dyn CopyEvents>,
}

impl<A: AfterRecord> AnnounceAfter<A> {
    pub fn new(inner: A, events: Arc<dyn CopyEvents>) -> AnnounceAfter<A> {
        AnnounceAfter { inner, events }
    }
}

impl<A: AfterRecord> AfterRecord for AnnounceAfter<A> {
    async fn after_record(&self, outcome: &Outcome, deadline: Option<SystemTime>) {
        self.inner.after_record(outcome, deadline).await;
        if let Some(task) = outcome.task_id() {
            self.events.settled(task).await;
        }
    }
}
