//! The outbox and the task listing on the table: event items found through the `events_due`
//! index while something about them is due, and tasks by status through `tasks_by_status`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Deserialize;
use serde_json::Value;

use super::{DynamoTable, EVENTS_DUE, TASKS_BY_STATUS, key, n, s};
use crate::app::ports::{DueEvent, EventLog, TaskIndex};
use crate::domain::events::{EVENT_SK_PREFIX, OUTBOX_DUE};
use crate::domain::ids::Id;
use crate::domain::keys;
use crate::domain::listing::{TaskCursor, TaskPage, TaskQuery, TaskSummary};
use crate::domain::status::ItemType;
use crate::error::{Error, Result};

#[derive(Deserialize)]
struct Listed {
    pk: String,
    sk: String,
    task_id: Option<String>,
    status: Option<String>,
    created_at: Option<u64>,
}

impl EventLog for DynamoTable {
    async fn due_events(&self, cutoff: u64, limit: usize) -> Result<Vec<DueEvent>> {
        let mut found = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(EVENTS_DUE)
                .key_condition_expression("outbox = :due AND due_at <= :cutoff")
                .projection_expression("task_id, event_id, due_at")
                .expression_attribute_values(":due", s(OUTBOX_DUE))
                .expression_attribute_values(":cutoff", n(cutoff))
                .limit(i32::try_from(limit.saturating_sub(found.len()).max(1)).unwrap_or(100))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| Error::storage_from("Query", e))?;
            for item in page.items.unwrap_or_default() {
                found.push(
                    serde_dynamo::from_item(item)
                        .map_err(|e| Error::storage_from("unreadable due event", e))?,
                );
            }
            start = page.last_evaluated_key;
            if start.is_none() || found.len() >= limit {
                return Ok(found);
            }
        }
    }

    async fn claim_event(&self, task: &Id, event_id: &str, now: u64, until: u64) -> Result<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(
                &keys::task_pk(task),
                &format!("{EVENT_SK_PREFIX}{event_id}"),
            )))
            .update_expression("SET claimed_until = :until")
            .condition_expression(
                "outbox = :due AND (attribute_not_exists(claimed_until) OR claimed_until <= :now)",
            )
            .expression_attribute_values(":due", s(OUTBOX_DUE))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":until", n(until))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) => match err.into_service_error() {
                e if e.is_conditional_check_failed_exception() => Ok(false),
                e => Err(Error::storage_from("UpdateItem", e)),
            },
        }
    }

    async fn update_event(
        &self,
        task: &Id,
        event_id: &str,
        set: &[(&'static str, Value)],
        due_at: Option<u64>,
    ) -> Result<()> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(
                &keys::task_pk(task),
                &format!("{EVENT_SK_PREFIX}{event_id}"),
            )))
            .condition_expression("attribute_exists(pk)");
        let mut sets = Vec::new();
        for (i, (name, value)) in set.iter().enumerate() {
            let value = serde_dynamo::to_attribute_value(value)
                .map_err(|e| Error::storage_from("encoding a value", e))?;
            request = request
                .expression_attribute_names(format!("#s{i}"), *name)
                .expression_attribute_values(format!(":s{i}"), value);
            sets.push(format!("#s{i} = :s{i}"));
        }
        let expression = match due_at {
            Some(at) => {
                request = request
                    .expression_attribute_values(":due", s(OUTBOX_DUE))
                    .expression_attribute_values(":at", n(at));
                sets.push("outbox = :due".into());
                sets.push("due_at = :at".into());
                format!("SET {} REMOVE claimed_until", sets.join(", "))
            }
            None if sets.is_empty() => "REMOVE outbox, due_at, claimed_until".to_owned(),
            None => format!(
                "SET {} REMOVE outbox, due_at, claimed_until",
                sets.join(", ")
            ),
        };
        let result = request.update_expression(expression).send().await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => match err.into_service_error() {
                // No such event (deleted by hand): nothing left to record.
                e if e.is_conditional_check_failed_exception() => Ok(()),
                e => Err(Error::storage_from("UpdateItem", e)),
            },
        }
    }
}

impl TaskIndex for DynamoTable {
    /// Pages of the index read with `Limit` = what is still missing, so a page never holds more
    /// than asked; conversions share the index and are filtered out.
    async fn list_tasks(&self, query: &TaskQuery) -> Result<TaskPage> {
        let status = query.status.as_str().to_owned();
        let mut start = query.after.as_ref().map(|c| {
            HashMap::from([
                ("pk".to_owned(), s(&c.pk)),
                ("sk".to_owned(), s(&c.sk)),
                ("status".to_owned(), s(&status)),
                ("created_at".to_owned(), n(c.created_at)),
            ])
        });
        let mut page = TaskPage::default();
        let limit = query.limit.max(1);
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(TASKS_BY_STATUS)
                .key_condition_expression("#status = :status AND created_at >= :since")
                .filter_expression("item_type = :task")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":status", s(&status))
                .expression_attribute_values(":since", n(query.since))
                .expression_attribute_values(":task", s(ItemType::Task.as_str()))
                .scan_index_forward(false)
                .limit(i32::try_from(limit - page.tasks.len()).unwrap_or(100))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| Error::storage_from("Query", e))?;
            for item in out.items.unwrap_or_default() {
                let listed: Listed = serde_dynamo::from_item(item)
                    .map_err(|e| Error::storage_from("unreadable task", e))?;
                if let (Some(task_id), Some(created_at)) = (listed.task_id, listed.created_at) {
                    page.tasks.push(TaskSummary {
                        task_id,
                        status: listed.status.unwrap_or_else(|| status.clone()),
                        created_at,
                    });
                }
            }
            let last = out.last_evaluated_key;
            let cursor = last.as_ref().and_then(|k| {
                let listed: Listed = serde_dynamo::from_item(k.clone()).ok()?;
                Some(TaskCursor {
                    created_at: listed.created_at?,
                    pk: listed.pk,
                    sk: listed.sk,
                })
            });
            match cursor {
                Some(cursor) if page.tasks.len() >= limit => {
                    page.next = Some(cursor);
                    return Ok(page);
                }
                Some(_) => start = last,
                None => return Ok(page),
            }
        }
    }
}
