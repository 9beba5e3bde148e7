//! The task store on the table: a plan applied as one transaction, and the conversion links
//! that let a callback without a task id find its task.

use std::collections::HashSet;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{ReturnValue, TransactWriteItem};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::update::update;
use super::{ASSETS_BY_STATE, DynamoTable, TASKS_BY_STATUS, key, n, s};
use crate::app::ports::{Applied, TaskStore};
use crate::domain::ids::Id;
use crate::domain::keys;
use crate::domain::plan::{Condition, ItemWrite, Plan};
use crate::domain::status::{AssetState, ItemType, TaskStatus};
use crate::error::{Error, Result};

/// How one transaction ended, when DynamoDB did not fail.
enum Sent {
    Applied,
    Duplicate,
    Conflict,
    /// Cancelled by these writes' conditions: a newer status, or parked callbacks.
    Blocked {
        stale_status: Vec<usize>,
        parked: Vec<Id>,
    },
}

#[derive(Deserialize)]
struct LinkItem {
    task_id: Option<String>,
}

#[derive(Deserialize)]
struct ParkedItem {
    body: String,
}

impl TaskStore for DynamoTable {
    /// DynamoDB has no per-attribute condition, so a write whose status guard fails is sent
    /// again without its guarded fields; each round drops at least one guard.
    async fn apply(&self, plan: &Plan) -> Result<Applied> {
        let mut writes = plan.writes.clone();
        for _ in 0..=writes.len() {
            match self.transact(&writes).await? {
                Sent::Applied => return Ok(Applied::Written),
                Sent::Duplicate => return Ok(Applied::Duplicate),
                Sent::Conflict => return Ok(Applied::Conflict),
                Sent::Blocked { parked, .. } if !parked.is_empty() => {
                    return Ok(Applied::ParkedOn(parked));
                }
                Sent::Blocked { stale_status, .. } => {
                    for index in stale_status {
                        if let Some(write) = writes.get_mut(index) {
                            write.without_guard();
                        }
                    }
                }
            }
        }
        Err(Error::storage(
            "status guards still failing after every round",
        ))
    }

    async fn write_once(&self, write: &ItemWrite) -> Result<()> {
        let u = update(&self.table, write)?;
        let result = self
            .client
            .update_item()
            .table_name(u.table_name())
            .set_key(Some(u.key().clone()))
            .update_expression(u.update_expression())
            .set_condition_expression(u.condition_expression().map(str::to_owned))
            .set_expression_attribute_names(u.expression_attribute_names().cloned())
            .set_expression_attribute_values(u.expression_attribute_values().cloned())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => match err.into_service_error() {
                e if e.is_conditional_check_failed_exception() => Ok(()),
                e if e.code() == Some("ValidationException") => Err(rejected(&e)),
                e => Err(Error::storage_from("UpdateItem", e)),
            },
        }
    }

    async fn linked_task(&self, conversion: &Id) -> Result<Option<Id>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(&keys::conversion_pk(conversion), keys::LINK_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::storage_from("GetItem", e))?;
        Ok(out.item.and_then(task_of_link))
    }

    async fn flag_parked(&self, conversion: &Id) -> Result<Option<Id>> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&keys::conversion_pk(conversion), keys::LINK_SK)))
            .update_expression("SET has_parked = :yes, conversion_id = :c, item_type = :t")
            .expression_attribute_values(
                ":yes",
                aws_sdk_dynamodb::types::AttributeValue::Bool(true),
            )
            .expression_attribute_values(":c", s(conversion.as_str()))
            .expression_attribute_values(":t", s(ItemType::Link.as_str()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| Error::storage_from("UpdateItem", e))?;
        Ok(out.attributes.and_then(task_of_link))
    }

    async fn parked_bodies(&self, conversion: &Id) -> Result<Vec<String>> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :parked)")
            .expression_attribute_values(":pk", s(&keys::conversion_pk(conversion)))
            .expression_attribute_values(":parked", s(&keys::parked_sk("")))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| Error::storage_from("Query", e))?;
        items
            .into_iter()
            .map(|item| {
                serde_dynamo::from_item::<_, ParkedItem>(item)
                    .map(|parked| parked.body)
                    .map_err(|e| Error::storage_from("unreadable parked callback", e))
            })
            .collect()
    }

    async fn due_tasks(&self, cutoff: u64) -> Result<Vec<Id>> {
        let submitted = self
            .due_in(
                TASKS_BY_STATUS,
                "status",
                TaskStatus::Submitted.as_str(),
                "created_at",
                cutoff,
            )
            // Conversions carry a status too.
            .filter_expression("item_type = :task")
            .expression_attribute_values(":task", s(ItemType::Task.as_str()))
            .into_paginator()
            .items()
            .send()
            .try_collect();
        let pending = self
            .due_in(
                ASSETS_BY_STATE,
                "state",
                AssetState::Pending.as_str(),
                "next_try_at",
                cutoff,
            )
            .into_paginator()
            .items()
            .send()
            .try_collect();
        let (submitted, pending) =
            tokio::try_join!(submitted, pending).map_err(|e| Error::storage_from("Query", e))?;
        let mut seen = HashSet::new();
        let mut tasks = Vec::new();
        for item in submitted.into_iter().chain(pending) {
            let found: LinkItem = serde_dynamo::from_item(item)
                .map_err(|e| Error::storage_from("unreadable item", e))?;
            if let Some(task) = found.task_id.as_deref().and_then(Id::parse)
                && seen.insert(task.clone())
            {
                tasks.push(task);
            }
        }
        Ok(tasks)
    }

    async fn task_conversion_type(&self, task: &Id) -> Result<Option<String>> {
        #[derive(Deserialize)]
        struct TaskType {
            conversion_type: Option<String>,
        }
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(&keys::task_pk(task), keys::TASK_SK)))
            .projection_expression("conversion_type")
            .send()
            .await
            .map_err(|e| Error::storage_from("GetItem", e))?;
        Ok(out
            .item
            .and_then(|item| serde_dynamo::from_item::<_, TaskType>(item).ok())
            .and_then(|t| t.conversion_type))
    }

    async fn checkpoint(&self, name: &str) -> Result<Option<u64>> {
        #[derive(Deserialize)]
        struct Checkpoint {
            at: Option<u64>,
        }
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(&keys::checkpoint_pk(name), keys::CHECKPOINT_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::storage_from("GetItem", e))?;
        Ok(out
            .item
            .and_then(|item| serde_dynamo::from_item::<_, Checkpoint>(item).ok())
            .and_then(|c| c.at))
    }

    async fn set_checkpoint(&self, name: &str, at: u64) -> Result<()> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&keys::checkpoint_pk(name), keys::CHECKPOINT_SK)))
            .update_expression("SET #at = :at")
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":at", n(at))
            .send()
            .await
            .map_err(|e| Error::storage_from("UpdateItem", e))?;
        Ok(())
    }

    async fn task_items(&self, task: &Id) -> Result<Vec<Map<String, Value>>> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(&keys::task_pk(task)))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| Error::storage_from("Query", e))?;
        items
            .into_iter()
            .map(|item| {
                serde_dynamo::from_item::<_, Map<String, Value>>(item)
                    .map_err(|e| Error::storage_from("unreadable item", e))
            })
            .collect()
    }
}

impl DynamoTable {
    async fn transact(&self, writes: &[ItemWrite]) -> Result<Sent> {
        let items = writes
            .iter()
            .map(|w| update(&self.table, w).map(|u| TransactWriteItem::builder().update(u).build()))
            .collect::<Result<Vec<_>>>()?;
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(Sent::Applied),
            Err(err) => err,
        };
        let cancelled = match err.into_service_error() {
            TransactWriteItemsError::TransactionCanceledException(cancelled) => cancelled,
            other if other.code() == Some("ValidationException") => return Err(rejected(&other)),
            other => return Err(Error::storage_from("TransactWriteItems", other)),
        };
        let mut stale_status = Vec::new();
        let mut parked = Vec::new();
        for (index, reason) in cancelled.cancellation_reasons().iter().enumerate() {
            match (reason.code(), writes.get(index).map(|w| &w.condition)) {
                (None | Some("None"), _) => {}
                (Some("ConditionalCheckFailed"), Some(Condition::CreateOnly)) => {
                    return Ok(Sent::Duplicate);
                }
                (Some("ConditionalCheckFailed"), Some(Condition::NewerStatus(_))) => {
                    stale_status.push(index)
                }
                (Some("ConditionalCheckFailed"), Some(Condition::NoParkedCallbacks(c))) => {
                    parked.push(c.clone())
                }
                (
                    Some(
                        "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded",
                    ),
                    _,
                ) => return Ok(Sent::Conflict),
                (Some("ValidationError"), _) => {
                    return Err(Error::StorageRejected(format!(
                        "write {index}: {}",
                        reason.message().unwrap_or("ValidationError")
                    )));
                }
                (Some(code), _) => {
                    return Err(Error::storage(format!(
                        "transaction cancelled at write {index}: {code}"
                    )));
                }
            }
        }
        if stale_status.is_empty() && parked.is_empty() {
            return Err(Error::storage("transaction cancelled without a reason"));
        }
        Ok(Sent::Blocked {
            stale_status,
            parked,
        })
    }

    /// The `task_id`s of an index's items whose `hash` is `value` and whose `range` (a time)
    /// is at most `cutoff`.
    fn due_in(
        &self,
        index: &str,
        hash: &str,
        value: &str,
        range: &str,
        cutoff: u64,
    ) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression("#hash = :value AND #range <= :cutoff")
            .projection_expression("task_id")
            .expression_attribute_names("#hash", hash)
            .expression_attribute_names("#range", range)
            .expression_attribute_values(":value", s(value))
            .expression_attribute_values(":cutoff", n(cutoff))
    }
}

/// A request DynamoDB will refuse however often it is sent (an item over 400 KB).
fn rejected(err: &impl ProvideErrorMetadata) -> Error {
    Error::StorageRejected(err.message().unwrap_or("ValidationException").to_owned())
}

fn task_of_link(
    item: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) -> Option<Id> {
    let link: LinkItem = serde_dynamo::from_item(item).ok()?;
    link.task_id.as_deref().and_then(Id::parse)
}
