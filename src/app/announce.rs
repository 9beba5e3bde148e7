//! Telling the owner's application: the events a task owes (`domain::events`) recorded in the
//! table's outbox, then published to the bus and forwarded to the owner's webhook, at least
//! once each, under a stable id.
//!
//! Who announces: the copy engine writes a file's `Asset Stored` event in the same transaction
//! as its STORED mark, and announces the task right after any file settles; the webhook
//! announces after every recorded callback (a failure status settles a task without files);
//! the sweep delivers whatever is still due (`events_due` index), so a crash between storing
//! and publishing only delays an event. Nothing is published before its file is STORED: the
//! event item does not exist before.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::app::ports::{
    BusEvent, Clock, EventBus, EventLog, ForwardAnswer, Forwarder, SystemClock, TaskStore,
};
use crate::domain::by_user::iso8601;
use crate::domain::events::{
    FileView, ForwardState, NewEvent, RecordedEvent, SOURCE, TaskView, owed_events, recorded_events,
};
use crate::domain::ids::Id;
use crate::domain::plan::ItemWrite;
use crate::error::Result;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the copy engine asks of the announcer, without knowing its types.
pub trait CopyEvents: Send + Sync {
    /// The event items to write in the same transaction as `file`'s STORED mark.
    fn stored<'a>(
        &'a self,
        task: &'a Id,
        file: FileView,
        now: u64,
    ) -> BoxFuture<'a, Result<Vec<ItemWrite>>>;

    /// A file of `task` settled (STORED, FAILED, EXPIRED): deliver what the task now owes.
    fn settled<'a>(&'a self, task: &'a Id) -> BoxFuture<'a, ()>;
}

/// Forwarding's retry schedule (Standard Webhooks' usual one): after the first try, 5 s, 5 min,
/// 30 min, 2 h, 5 h, 10 h, 10 h, then 10 h apart until `FORWARD_RETRY_FOR` (default 26 h)
/// has passed since the event was recorded; then the event is DEAD (the dead-letter record).
pub const FORWARD_BACKOFF_SECS: &[u64] = &[5, 300, 1_800, 7_200, 18_000, 36_000, 36_000];

#[derive(Debug, Clone)]
pub struct EventSettings {
    /// How long after its writer recorded it the sweep takes an undelivered event over.
    pub grace: Duration,
    /// How long to wait before publishing again after the bus failed.
    pub publish_retry: Duration,
    /// How long forwarding is retried before the event is DEAD (at least 24 h).
    pub forward_retry_for: Duration,
    /// Most due events one sweep looks at.
    pub sweep_batch: usize,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            grace: Duration::from_secs(30),
            publish_retry: Duration::from_secs(60),
            forward_retry_for: Duration::from_secs(26 * 3_600),
            sweep_batch: 200,
        }
    }
}

/// A forwarder for deployments without `FORWARD_URL`: never called.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoForwarder;

impl Forwarder for NoForwarder {
    async fn forward(&self, _event_id: &str, _payload: &str, _now: u64) -> ForwardAnswer {
        ForwardAnswer::Refused("no forward target".into())
    }
}

/// What one announcement or sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnounceReport {
    pub tasks: usize,
    pub recorded: usize,
    pub published: usize,
    pub publish_failed: usize,
    pub forwarded: usize,
    pub forward_failed: usize,
    pub dead: usize,
}

impl AnnounceReport {
    fn add(&mut self, other: &AnnounceReport) {
        self.tasks += other.tasks;
        self.recorded += other.recorded;
        self.published += other.published;
        self.publish_failed += other.publish_failed;
        self.forwarded += other.forwarded;
        self.forward_failed += other.forward_failed;
        self.dead += other.dead;
    }
}

pub struct Announcer<T, B, F = NoForwarder> {
    store: T,
    bus: Option<B>,
    forwarder: Option<F>,
    settings: EventSettings,
    clock: Arc<dyn Clock>,
    /// Set once the receiver answered 410 Gone: no more forwards from this instance.
    forwarding_off: Arc<AtomicBool>,
}

impl<T: Clone, B: Clone, F: Clone> Clone for Announcer<T, B, F> {
    fn clone(&self) -> Self {
        Announcer {
            store: self.store.clone(),
            bus: self.bus.clone(),
            forwarder: self.forwarder.clone(),
            settings: self.settings.clone(),
            clock: Arc::clone(&self.clock),
            forwarding_off: Arc::clone(&self.forwarding_off),
        }
    }
}

impl<T, B, F> Announcer<T, B, F>
where
    T: TaskStore + EventLog,
    B: EventBus,
    F: Forwarder,
{
    pub fn new(store: T, bus: Option<B>, forwarder: Option<F>) -> Announcer<T, B, F> {
        Announcer {
            store,
            bus,
            forwarder,
            settings: EventSettings::default(),
            clock: Arc::new(SystemClock),
            forwarding_off: Arc::default(),
        }
    }

    pub fn with_settings(mut self, settings: EventSettings) -> Self {
        self.settings = settings;
        self
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn store(&self) -> &T {
        &self.store
    }

    /// Records what `task` owes and delivers everything of it that is due.
    pub async fn announce(&self, task: &Id) -> Result<AnnounceReport> {
        let now = self.clock.now_secs();
        let mut report = AnnounceReport {
            tasks: 1,
            ..AnnounceReport::default()
        };
        let mut items = self.store.task_items(task).await?;
        let Some(view) = TaskView::from_items(&items) else {
            return Ok(report);
        };
        let owed = owed_events(&view, &recorded_events(&items), now);
        for event in &owed {
            if let Some(write) = event.write(now + self.settings.grace.as_secs()) {
                self.store.write_once(&write).await?;
                report.recorded += 1;
            }
        }
        if !owed.is_empty() {
            // A racing announcer may have recorded the same ids first: deliver what is stored.
            items = self.store.task_items(task).await?;
        }
        let mut due = Vec::new();
        let until = now + self.settings.grace.as_secs().max(1);
        for event in recorded_events(&items).into_iter().filter(|e| e.due) {
            // A forward waiting for its next try is not claimed before its time.
            let waiting = event.published_at.is_some() || self.bus.is_none();
            if waiting && event.forward.next_at.is_some_and(|at| at > now) {
                continue;
            }
            if self
                .store
                .claim_event(task, &event.event_id, now, until)
                .await?
            {
                due.push(event);
            }
        }
        // Files before the task's own events, each kind oldest first.
        due.sort_by_key(|e| (e.detail_type.order(), e.created_at));
        let delivered = self.deliver(task, &due, now).await?;
        report.add(&AnnounceReport {
            tasks: 0,
            ..delivered
        });
        Ok(report)
    }

    /// Delivers every event still due, task by task, until `stop`.
    pub async fn sweep(&self, stop: Instant) -> Result<AnnounceReport> {
        let now = self.clock.now_secs();
        let due = self
            .store
            .due_events(now, self.settings.sweep_batch)
            .await?;
        let mut tasks: Vec<Id> = Vec::new();
        for event in &due {
            if let Some(task) = Id::parse(&event.task_id)
                && !tasks.contains(&task)
            {
                tasks.push(task);
            }
        }
        let mut report = AnnounceReport::default();
        for task in tasks {
            if Instant::now() >= stop {
                break;
            }
            match self.announce(&task).await {
                Ok(done) => report.add(&done),
                Err(err) => warn!(task_id = %task, error = %err, "events not delivered"),
            }
        }
        if report.tasks > 0 {
            info!(?report, "event sweep done");
        }
        Ok(report)
    }

    async fn deliver(
        &self,
        task: &Id,
        events: &[RecordedEvent],
        now: u64,
    ) -> Result<AnnounceReport> {
        let mut report = AnnounceReport::default();
        if events.is_empty() {
            return Ok(report);
        }
        let mut published: Vec<Option<u64>> = events.iter().map(|e| e.published_at).collect();
        if let Some(bus) = &self.bus {
            let batch: Vec<(usize, BusEvent)> = events
                .iter()
                .enumerate()
                .filter(|(_, e)| e.published_at.is_none())
                .map(|(i, e)| (i, bus_event(e)))
                .collect();
            if !batch.is_empty() {
                let entries: Vec<BusEvent> = batch.iter().map(|(_, e)| e.clone()).collect();
                match bus.publish(&entries).await {
                    Ok(answers) => {
                        for ((i, event), answer) in batch.iter().zip(answers) {
                            match answer {
                                Ok(()) => {
                                    published[*i] = Some(now);
                                    report.published += 1;
                                    info!(task_id = %task, event_id = %event.event_id, detail_type = event.detail_type, "event published");
                                }
                                Err(why) => {
                                    report.publish_failed += 1;
                                    warn!(task_id = %task, event_id = %event.event_id, error = %why, "event refused by the bus");
                                }
                            }
                        }
                    }
                    Err(err) => {
                        report.publish_failed += batch.len();
                        warn!(task_id = %task, events = batch.len(), error = %err, "events not published");
                    }
                }
            }
        }
        for (event, published_at) in events.iter().zip(published) {
            let mut set: Vec<(&'static str, Value)> = Vec::new();
            if published_at.is_some() && event.published_at.is_none() {
                set.push(("published_at", json!(published_at)));
            }
            let publish_due = self.bus.is_some() && published_at.is_none();
            let mut due_at = publish_due.then(|| now + self.settings.publish_retry.as_secs());
            if let Some(next) = self.forward(task, event, now, &mut set, &mut report).await {
                due_at = Some(due_at.map_or(next, |at| at.min(next)));
            }
            self.store
                .update_event(task, &event.event_id, &set, due_at)
                .await?;
        }
        metrics::counter!("EventsPublished").increment(report.published as u64);
        metrics::counter!("EventsPublishFailed").increment(report.publish_failed as u64);
        metrics::counter!("EventsForwarded", "outcome" => "delivered")
            .increment(report.forwarded as u64);
        metrics::counter!("EventsForwarded", "outcome" => "failed")
            .increment(report.forward_failed as u64);
        metrics::counter!("EventsForwarded", "outcome" => "dead").increment(report.dead as u64);
        Ok(report)
    }

    /// One forwarding step for `event`, if one is due; returns when the next is due.
    async fn forward(
        &self,
        task: &Id,
        event: &RecordedEvent,
        now: u64,
        set: &mut Vec<(&'static str, Value)>,
        report: &mut AnnounceReport,
    ) -> Option<u64> {
        let forwarder = self.forwarder.as_ref()?;
        let progress = &event.forward;
        if progress.state.is_some_and(ForwardState::is_final) {
            return None;
        }
        if self.forwarding_off.load(Ordering::SeqCst) {
            set.push(("forward_state", json!(ForwardState::Disabled.as_str())));
            return None;
        }
        if let Some(next) = progress.next_at.filter(|at| *at > now) {
            return Some(next);
        }
        let payload = forward_payload(event);
        let attempts = progress.attempts + 1;
        set.push(("forward_attempts", json!(attempts)));
        set.push(("forward_last_at", json!(now)));
        let failure = match forwarder.forward(&event.event_id, &payload, now).await {
            ForwardAnswer::Delivered(status) => {
                report.forwarded += 1;
                info!(task_id = %task, event_id = %event.event_id, status, attempts, "event forwarded");
                set.push(("forward_state", json!(ForwardState::Delivered.as_str())));
                return None;
            }
            ForwardAnswer::Gone => {
                self.forwarding_off.store(true, Ordering::SeqCst);
                warn!(task_id = %task, event_id = %event.event_id, "the forward target answered 410 Gone: forwarding disabled");
                set.push(("forward_state", json!(ForwardState::Disabled.as_str())));
                return None;
            }
            ForwardAnswer::Failed(why) => why,
            ForwardAnswer::Refused(why) => format!("refused: {why}"),
        };
        report.forward_failed += 1;
        set.push(("forward_last_error", json!(truncate(&failure))));
        let wait = FORWARD_BACKOFF_SECS
            .get(usize::try_from(attempts - 1).unwrap_or(usize::MAX))
            .copied()
            .unwrap_or(36_000);
        // The last try falls on the deadline itself: retried for all of FORWARD_RETRY_FOR.
        let deadline = event.created_at + self.settings.forward_retry_for.as_secs();
        let next = (now + wait).min(deadline);
        if now >= deadline {
            report.dead += 1;
            error!(task_id = %task, event_id = %event.event_id, attempts, error = %failure, "forwarding gave up: event dead-lettered");
            set.push(("forward_state", json!(ForwardState::Dead.as_str())));
            set.push(("forward_dead_at", json!(now)));
            return None;
        }
        warn!(task_id = %task, event_id = %event.event_id, attempts, error = %failure, next_try_in = wait, "event not forwarded");
        set.push(("forward_state", json!(ForwardState::Pending.as_str())));
        set.push(("forward_next_at", json!(next)));
        Some(next)
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(300).collect()
}

/// The bus entry of a recorded event: its detail, and the objects it is about as resources.
pub fn bus_event(event: &RecordedEvent) -> BusEvent {
    let arn = |f: &Value| {
        Some(format!(
            "arn:aws:s3:::{}/{}",
            f["bucket"].as_str()?,
            f["key"].as_str()?
        ))
    };
    let mut resources: Vec<String> = match event.detail.get("asset") {
        Some(asset) => arn(asset).into_iter().collect(),
        None => event.detail["files"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(arn)
            .collect(),
    };
    resources.truncate(10);
    BusEvent {
        event_id: event.event_id.clone(),
        detail_type: event.detail_type.as_str(),
        detail: event.detail.to_string(),
        time: event.created_at,
        resources,
    }
}

/// What the owner's webhook receives: the event as EventBridge delivers it.
pub fn forward_payload(event: &RecordedEvent) -> String {
    let bus = bus_event(event);
    json!({
        "id": event.event_id,
        "source": SOURCE,
        "detail-type": event.detail_type.as_str(),
        "time": iso8601(event.created_at),
        "resources": bus.resources,
        "detail": event.detail,
    })
    .to_string()
}

/// The sweep's part, without the announcer's types: deliver whatever is still due.
pub trait EventSweep: Send + Sync {
    fn sweep_due(&self, stop: Instant) -> BoxFuture<'_, Result<AnnounceReport>>;
}

impl<T, B, F> EventSweep for Announcer<T, B, F>
where
    T: TaskStore + EventLog,
    B: EventBus,
    F: Forwarder,
{
    fn sweep_due(&self, stop: Instant) -> BoxFuture<'_, Result<AnnounceReport>> {
        Box::pin(self.sweep(stop))
    }
}

impl<T, B, F> CopyEvents for Announcer<T, B, F>
where
    T: TaskStore + EventLog,
    B: EventBus,
    F: Forwarder,
{
    fn stored<'a>(
        &'a self,
        task: &'a Id,
        file: FileView,
        now: u64,
    ) -> BoxFuture<'a, Result<Vec<ItemWrite>>> {
        Box::pin(async move {
            let items = self.store.task_items(task).await?;
            let Some(view) = TaskView::from_items(&items) else {
                return Ok(Vec::new());
            };
            let sk = file.sk.clone();
            let view = view.with_stored(file);
            let Some(file) = view.file(&sk) else {
                return Ok(Vec::new());
            };
            let event = NewEvent::asset_stored(&view, file, now);
            Ok(event
                .write(now + self.settings.grace.as_secs())
                .into_iter()
                .collect())
        })
    }

    fn settled<'a>(&'a self, task: &'a Id) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(err) = self.announce(task).await {
                warn!(task_id = %task, error = %err, "events not announced; the sweep will");
            }
        })
    }
}
