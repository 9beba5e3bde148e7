//! What an operator does by hand, without editing items: replay stored callbacks through the
//! same path as a delivery (a replay changes nothing already recorded), redrive FAILED or
//! EXPIRED assets back to the sweep, and list the assets that are stuck.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::app::ports::{AssetStore, Clock, TaskIndex, TaskStore};
use crate::app::record::{Outcome, Recorder};
use crate::domain::ids::Id;
use crate::domain::keys::AssetKey;
use crate::domain::listing::{MAX_PAGE, TaskQuery};
use crate::domain::status::{AssetState, ItemType, TaskStatus};
use crate::error::{Error, Result};

/// A redriven asset gets at least this long to be copied before it can expire again.
pub const REDRIVE_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub replayed: usize,
    /// Replays that wrote something new (a callback the table had lost).
    pub recorded: usize,
    pub duplicates: usize,
    /// Stored bodies that are not callbacks any more (kept as they are).
    pub unreadable: usize,
}

/// An asset not stored past the age asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    pub key: AssetKey,
    pub task_id: String,
    pub state: AssetState,
    pub age_secs: u64,
    pub attempts: u32,
    pub next_try_at: Option<u64>,
    pub last_error: Option<String>,
}

pub struct Operations<T, A> {
    recorder: Recorder<T>,
    assets: A,
    clock: Arc<dyn Clock>,
}

/// Every status a task can be listed under in the index.
const LISTED_STATUSES: &[TaskStatus] = &[
    TaskStatus::Submitted,
    TaskStatus::InQueue,
    TaskStatus::Pending,
    TaskStatus::Processing,
    TaskStatus::InProgress,
    TaskStatus::PartialCompleted,
    TaskStatus::Completed,
    TaskStatus::Failed,
    TaskStatus::Error,
];

impl<T: TaskStore + TaskIndex, A: AssetStore> Operations<T, A> {
    /// Replays every task created at or after `since` (epoch seconds), found through the
    /// status index, one status at a time.
    pub async fn replay_since(&self, since: u64) -> Result<(usize, ReplayReport)> {
        let mut tasks = Vec::new();
        for status in LISTED_STATUSES {
            let mut after = None;
            loop {
                let query = TaskQuery {
                    status: status.clone(),
                    since,
                    limit: MAX_PAGE,
                    after,
                };
                let page = self.recorder.store().list_tasks(&query).await?;
                tasks.extend(page.tasks.into_iter().filter_map(|t| Id::parse(&t.task_id)));
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
        }
        tasks.sort();
        tasks.dedup();
        let mut total = ReplayReport::default();
        for task in &tasks {
            let report = self.replay_task(task).await?;
            total.replayed += report.replayed;
            total.recorded += report.recorded;
            total.duplicates += report.duplicates;
            total.unreadable += report.unreadable;
        }
        Ok((tasks.len(), total))
    }
}

impl<T: TaskStore, A: AssetStore> Operations<T, A> {
    pub fn new(recorder: Recorder<T>, assets: A, clock: Arc<dyn Clock>) -> Operations<T, A> {
        Operations {
            recorder,
            assets,
            clock,
        }
    }

    /// Records every stored callback of `task` again, as a delivery would.
    pub async fn replay_task(&self, task: &Id) -> Result<ReplayReport> {
        let mut report = ReplayReport::default();
        let now = self.clock.now_secs();
        for item in self.recorder.store().task_items(task).await? {
            if item.get("item_type").and_then(Value::as_str) != Some(ItemType::Callback.as_str()) {
                continue;
            }
            let Some(body) = item.get("body").and_then(Value::as_str) else {
                continue;
            };
            report.replayed += 1;
            let callback = match self.recorder.parse(body.as_bytes(), None) {
                Ok(callback) => callback,
                Err(_) => {
                    report.unreadable += 1;
                    continue;
                }
            };
            match self.recorder.record(&callback, now).await? {
                Outcome::Duplicate { .. } => report.duplicates += 1,
                Outcome::Recorded { .. } | Outcome::Parked { .. } => report.recorded += 1,
            }
        }
        Ok(report)
    }

    /// FAILED and EXPIRED assets of one task back to PENDING.
    pub async fn redrive_task(&self, task: &Id) -> Result<usize> {
        let mut redriven = 0;
        for item in self.recorder.store().task_items(task).await? {
            let settled = item.get("state").and_then(Value::as_str).is_some_and(|s| {
                s == AssetState::Failed.as_str() || s == AssetState::Expired.as_str()
            });
            let key = (item.get("pk"), item.get("sk"));
            if let (true, (Some(Value::String(pk)), Some(Value::String(sk)))) = (settled, key) {
                let asset = AssetKey {
                    pk: pk.clone(),
                    sk: sk.clone(),
                };
                redriven += usize::from(self.redrive(&asset).await?);
            }
        }
        Ok(redriven)
    }

    /// Every asset in `state` (FAILED or EXPIRED) back to PENDING.
    pub async fn redrive_state(&self, state: AssetState) -> Result<usize> {
        if !matches!(state, AssetState::Failed | AssetState::Expired) {
            return Err(Error::Config(format!(
                "only FAILED or EXPIRED assets are redriven, not {}",
                state.as_str()
            )));
        }
        let mut redriven = 0;
        for asset in self.assets.assets_in_state(state).await? {
            let key = AssetKey {
                pk: asset.pk,
                sk: asset.sk,
            };
            redriven += usize::from(self.redrive(&key).await?);
        }
        Ok(redriven)
    }

    async fn redrive(&self, asset: &AssetKey) -> Result<bool> {
        let now = self.clock.now_secs();
        let old = self.assets.get(asset).await?.and_then(|a| a.deadline_at);
        let deadline = old.unwrap_or_default().max(now + REDRIVE_WINDOW.as_secs());
        self.assets.redrive(asset, now, deadline).await
    }

    /// PENDING assets whose callback came more than `older_than` ago, oldest first.
    pub async fn stuck(&self, older_than: Duration) -> Result<Vec<Stuck>> {
        let now = self.clock.now_secs();
        let cutoff = now.saturating_sub(older_than.as_secs());
        let mut stuck = Vec::new();
        for pending in self.assets.pending_assets().await? {
            if pending.created_at.is_none_or(|at| at > cutoff) {
                continue;
            }
            let key = AssetKey {
                pk: pending.pk,
                sk: pending.sk,
            };
            let Some(item) = self.assets.get(&key).await? else {
                continue;
            };
            stuck.push(Stuck {
                age_secs: now.saturating_sub(item.created_at.unwrap_or(now)),
                task_id: item.task_id,
                state: item.state,
                attempts: item.attempts,
                next_try_at: item.next_try_at,
                last_error: item.last_error,
                key,
            });
        }
        stuck.sort_by(|a, b| b.age_secs.cmp(&a.age_secs).then(a.key.sk.cmp(&b.key.sk)));
        Ok(stuck)
    }
}
