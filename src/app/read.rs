//! Reading tasks for the owner: one task with its conversions and files (each stored file with
//! a presigned download URL), and pages of tasks by status. The read API and the command line
//! answer the same JSON.

use std::time::Duration;

use serde_json::{Value, json};

use crate::app::ports::{Presigner, TaskIndex, TaskStore};
use crate::domain::events::{Settlement, TaskView, recorded_events};
use crate::domain::ids::Id;
use crate::domain::listing::{TaskPage, TaskQuery};
use crate::domain::status::AssetState;
use crate::error::Result;

#[derive(Clone)]
pub struct TaskReader<T, S> {
    tasks: T,
    presigner: S,
    expiry: Duration,
}

/// One task as the reader answers it, and whether it has settled.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskAnswer {
    pub json: Value,
    pub settlement: Settlement,
}

impl<T: TaskStore + TaskIndex, S: Presigner> TaskReader<T, S> {
    pub fn new(tasks: T, presigner: S, expiry: Duration) -> TaskReader<T, S> {
        TaskReader {
            tasks,
            presigner,
            expiry,
        }
    }

    /// `None` for a task the table does not know. `now` dates the URLs' expiry.
    pub async fn show(&self, task: &Id, now: u64) -> Result<Option<TaskAnswer>> {
        let items = self.tasks.task_items(task).await?;
        let Some(view) = TaskView::from_items(&items) else {
            return Ok(None);
        };
        let settlement = view.settlement();
        let mut json = json!(view);
        let (settled, outcome, note) = match &settlement {
            Settlement::Open(why) => (false, Value::Null, json!({ "waiting_for": why })),
            Settlement::Completed => (true, json!("completed"), json!({})),
            Settlement::Failed(why) => (true, json!("failed"), json!({ "reason": why })),
        };
        json["settled"] = json!(settled);
        json["outcome"] = outcome;
        if let (Some(map), Some(extra)) = (json.as_object_mut(), note.as_object()) {
            map.extend(extra.clone());
        }
        if let Some(files) = json["files"].as_array_mut() {
            for (file, view) in files.iter_mut().zip(&view.files) {
                if view.state != AssetState::Stored {
                    continue;
                }
                let Some(bucket) = &view.bucket else { continue };
                let url = self
                    .presigner
                    .presign_get(bucket, &view.key, self.expiry)
                    .await?;
                file["url"] = json!(url);
                file["url_expires_at"] = json!(now + self.expiry.as_secs());
            }
        }
        json["events"] = json!(
            recorded_events(&items)
                .iter()
                .map(|e| json!({
                    "event_id": e.event_id,
                    "detail_type": e.detail_type.as_str(),
                    "created_at": e.created_at,
                    "published_at": e.published_at,
                    "forward_state": e.forward.state.map(|s| s.as_str()),
                }))
                .collect::<Vec<_>>()
        );
        Ok(Some(TaskAnswer { json, settlement }))
    }

    /// One page: `{"tasks": [{task_id, status, created_at}], "next": <cursor or null>}`.
    pub async fn list(&self, query: &TaskQuery) -> Result<Value> {
        let TaskPage { tasks, next } = self.tasks.list_tasks(query).await?;
        Ok(json!({
            "tasks": tasks,
            "next": next.map(|c| c.encode()),
        }))
    }
}
