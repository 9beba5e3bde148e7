//! Listing tasks by status, newest first, page by page through the `tasks_by_status` index:
//! the query, its pages and the opaque cursor that resumes one.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::domain::status::TaskStatus;

/// Most tasks one page holds.
pub const MAX_PAGE: usize = 100;
pub const DEFAULT_PAGE: usize = 25;

/// Tasks with `status` created at or after `since` (epoch seconds), newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskQuery {
    pub status: TaskStatus,
    pub since: u64,
    pub limit: usize,
    pub after: Option<TaskCursor>,
}

/// Where a page ended: the index position of its last item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCursor {
    pub created_at: u64,
    pub pk: String,
    pub sk: String,
}

impl TaskCursor {
    /// URL-safe base64 of its JSON: opaque to callers.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(text: &str) -> Option<TaskCursor> {
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
        let cursor: TaskCursor = serde_json::from_slice(&bytes).ok()?;
        (cursor.pk.starts_with("TASK#") && cursor.pk.len() < 200 && cursor.sk.len() < 200)
            .then_some(cursor)
    }
}

/// One task of a page, as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskSummary {
    pub task_id: String,
    pub status: String,
    pub created_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskPage {
    pub tasks: Vec<TaskSummary>,
    /// Present when more tasks may follow.
    pub next: Option<TaskCursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        let cursor = TaskCursor {
            created_at: 7,
            pk: "TASK#t".into(),
            sk: "TASK".into(),
        };
        assert_eq!(TaskCursor::decode(&cursor.encode()), Some(cursor));
        for junk in ["", "!!", "e30", "eyJwayI6MX0"] {
            assert_eq!(TaskCursor::decode(junk), None, "{junk}");
        }
    }
}
