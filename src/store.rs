//! The task table in DynamoDB: applies a callback's writes as one transaction and keeps the
//! conversion links that let a callback without a task id find its task.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TransactWriteItem, Update};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result, sdk_message};
use crate::ids::Id;
use crate::keys;
use crate::records::{ASSET_PENDING, Condition, ItemWrite};

/// Global secondary index on `status` (hash) and `created_at` (range): tasks and conversions by
/// status, so the reconciler reads only the SUBMITTED ones. Projects `task_id`, `item_type`.
pub const TASKS_BY_STATUS: &str = "tasks_by_status";
/// Global secondary index on `state` (hash) and `next_try_at` (range): only asset items have a
/// `state`, so the reconciler reads only the PENDING ones. Projects `task_id`.
pub const ASSETS_BY_STATE: &str = "assets_by_state";

#[derive(Clone)]
pub struct TaskStore {
    client: Client,
    table: String,
}

/// How a transaction ended, when DynamoDB did not fail.
#[derive(Debug, PartialEq, Eq)]
pub enum TransactOutcome {
    Applied,
    /// The raw callback already exists: this is a redelivery, and nothing was written.
    Duplicate,
    /// These writes lost their status guard (a newer status is recorded) or found parked
    /// callbacks on their conversion; nothing was written.
    Blocked {
        stale_status: Vec<usize>,
        parked: Vec<usize>,
    },
    /// Another transaction touched the same items at the same moment; try again.
    Conflict,
}

#[derive(Deserialize)]
struct LinkItem {
    task_id: Option<String>,
}

#[derive(Deserialize)]
struct ParkedItem {
    body: String,
}

impl TaskStore {
    pub fn new(client: Client, table: impl Into<String>) -> TaskStore {
        TaskStore {
            client,
            table: table.into(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub async fn transact(&self, writes: &[ItemWrite]) -> Result<TransactOutcome> {
        let items = writes
            .iter()
            .map(|w| {
                self.update(w)
                    .map(|u| TransactWriteItem::builder().update(u).build())
            })
            .collect::<Result<Vec<_>>>()?;
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(TransactOutcome::Applied),
            Err(err) => err,
        };
        let service = match err.into_service_error() {
            TransactWriteItemsError::TransactionCanceledException(cancelled) => cancelled,
            other => return Err(Error::Storage(sdk_message(other))),
        };
        let mut stale_status = Vec::new();
        let mut parked = Vec::new();
        for (index, reason) in service.cancellation_reasons().iter().enumerate() {
            match (reason.code(), writes.get(index).map(|w| &w.condition)) {
                (None | Some("None"), _) => {}
                (Some("ConditionalCheckFailed"), Some(Condition::CreateOnly)) => {
                    return Ok(TransactOutcome::Duplicate);
                }
                (Some("ConditionalCheckFailed"), Some(Condition::NewerStatus(_))) => {
                    stale_status.push(index)
                }
                (Some("ConditionalCheckFailed"), Some(Condition::NoParkedCallbacks(_))) => {
                    parked.push(index)
                }
                (
                    Some(
                        "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded",
                    ),
                    _,
                ) => {
                    return Ok(TransactOutcome::Conflict);
                }
                (Some(code), _) => {
                    return Err(Error::Storage(format!(
                        "transaction cancelled at write {index}: {code}"
                    )));
                }
            }
        }
        if stale_status.is_empty() && parked.is_empty() {
            return Err(Error::Storage(
                "transaction cancelled without a reason".into(),
            ));
        }
        Ok(TransactOutcome::Blocked {
            stale_status,
            parked,
        })
    }

    /// One write on its own (parking a callback). A create-only write that finds its item
    /// is a redelivery and counts as done.
    pub async fn write(&self, write: &ItemWrite) -> Result<()> {
        let u = self.update(write)?;
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
                e => Err(Error::Storage(sdk_message(e))),
            },
        }
    }

    /// The task a conversion belongs to, if any callback has told us yet.
    pub async fn linked_task(&self, conversion: &Id) -> Result<Option<Id>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(&keys::conversion_pk(conversion), keys::LINK_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::Storage(sdk_message(e)))?;
        Ok(out.item.and_then(task_of_link))
    }

    /// Marks the link as having parked callbacks and returns its task if one is linked
    /// already: whichever of this and the linking write comes second sees the other.
    pub async fn flag_parked(&self, conversion: &Id) -> Result<Option<Id>> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&keys::conversion_pk(conversion), keys::LINK_SK)))
            .update_expression("SET has_parked = :yes, conversion_id = :c, item_type = :t")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":c", AttributeValue::S(conversion.to_string()))
            .expression_attribute_values(":t", AttributeValue::S("LINK".into()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| Error::Storage(sdk_message(e)))?;
        Ok(out.attributes.and_then(task_of_link))
    }

    /// The raw bodies of callbacks parked on a conversion.
    pub async fn parked_bodies(&self, conversion: &Id) -> Result<Vec<String>> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :parked)")
            .expression_attribute_values(":pk", AttributeValue::S(keys::conversion_pk(conversion)))
            .expression_attribute_values(":parked", AttributeValue::S(keys::parked_sk("")))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| Error::Storage(sdk_message(e)))?;
        items
            .into_iter()
            .map(|item| {
                serde_dynamo::from_item::<_, ParkedItem>(item)
                    .map(|parked| parked.body)
                    .map_err(|e| Error::Storage(format!("unreadable parked callback: {e}")))
            })
            .collect()
    }

    /// Tasks that need a look: registered (SUBMITTED) before `cutoff` with no status since, or
    /// with an asset still PENDING whose next try was due before `cutoff`. Two queries on the
    /// table's indexes (see `TASKS_BY_STATUS`, `ASSETS_BY_STATE`), so the cost follows the
    /// number of such items, not the size of the table.
    pub async fn due_tasks(&self, cutoff: u64) -> Result<Vec<Id>> {
        let submitted = self
            .due_in(
                TASKS_BY_STATUS,
                "status",
                crate::submit::SUBMITTED,
                "created_at",
                cutoff,
            )
            // Conversions carry a status too.
            .filter_expression("item_type = :task")
            .expression_attribute_values(":task", AttributeValue::S("TASK".into()))
            .into_paginator()
            .items()
            .send()
            .try_collect();
        let pending = self
            .due_in(
                ASSETS_BY_STATE,
                "state",
                ASSET_PENDING,
                "next_try_at",
                cutoff,
            )
            .into_paginator()
            .items()
            .send()
            .try_collect();
        let (submitted, pending) =
            tokio::try_join!(submitted, pending).map_err(|e| Error::Storage(sdk_message(e)))?;
        let mut seen = std::collections::HashSet::new();
        let mut tasks = Vec::new();
        for item in submitted.into_iter().chain(pending) {
            let found: LinkItem = serde_dynamo::from_item(item)
                .map_err(|e| Error::Storage(format!("unreadable item: {e}")))?;
            if let Some(task) = found.task_id.as_deref().and_then(Id::parse)
                && seen.insert(task.clone())
            {
                tasks.push(task);
            }
        }
        Ok(tasks)
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
            .expression_attribute_values(":value", AttributeValue::S(value.to_owned()))
            .expression_attribute_values(":cutoff", AttributeValue::N(cutoff.to_string()))
    }

    /// The conversion type a task was submitted or reported with, if any.
    pub async fn task_conversion_type(&self, task: &Id) -> Result<Option<String>> {
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
            .map_err(|e| Error::Storage(sdk_message(e)))?;
        Ok(out
            .item
            .and_then(|item| serde_dynamo::from_item::<_, TaskType>(item).ok())
            .and_then(|t| t.conversion_type))
    }

    /// The UpdateItem expression for one write: `SET` for owned and guarded fields,
    /// `if_not_exists` for shared ones, `ADD` for counters. Public so the ingest benchmark
    /// can send exactly these requests bare, as the floor the handler is measured against.
    pub fn update(&self, w: &ItemWrite) -> Result<Update> {
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        let mut sets = Vec::new();
        let mut bind =
            |prefix: &str, i: usize, name: &str, value: &Value| -> Result<(String, String)> {
                let (n, v) = (format!("#{prefix}{i}"), format!(":{prefix}{i}"));
                names.insert(n.clone(), name.to_owned());
                values.insert(v.clone(), attribute(value)?);
                Ok((n, v))
            };
        for (i, (name, value)) in w.set.iter().enumerate() {
            let (n, v) = bind("s", i, name, value)?;
            sets.push(format!("{n} = {v}"));
        }
        for (i, (name, value)) in w.set_if_absent.iter().enumerate() {
            let (n, v) = bind("i", i, name, value)?;
            sets.push(format!("{n} = if_not_exists({n}, {v})"));
        }
        for (i, (name, value)) in w.guarded.iter().enumerate() {
            let (n, v) = bind("g", i, name, value)?;
            sets.push(format!("{n} = {v}"));
        }
        let mut adds = Vec::new();
        for (i, (name, amount)) in w.add.iter().enumerate() {
            let (n, v) = bind("a", i, name, &Value::from(*amount))?;
            adds.push(format!("{n} {v}"));
        }
        let mut expression = String::new();
        if !sets.is_empty() {
            expression = format!("SET {}", sets.join(", "));
        }
        if !adds.is_empty() {
            expression.push_str(&format!(" ADD {}", adds.join(", ")));
        }
        let condition = match &w.condition {
            Condition::Always => None,
            Condition::CreateOnly => Some("attribute_not_exists(pk)".to_owned()),
            Condition::NewerStatus(order) => {
                names.insert("#order".into(), "status_order".into());
                values.insert(":order".into(), AttributeValue::S(order.clone()));
                Some("attribute_not_exists(#order) OR #order <= :order".to_owned())
            }
            Condition::NoParkedCallbacks(_) => Some("attribute_not_exists(has_parked)".to_owned()),
        };
        Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(&w.pk, &w.sk)))
            .update_expression(expression.trim())
            .set_condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| Error::Storage(format!("building an update: {e}")))
    }
}

pub(crate) fn key(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk.to_owned())),
        ("sk".to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

fn attribute(value: &Value) -> Result<AttributeValue> {
    serde_dynamo::to_attribute_value(value)
        .map_err(|e| Error::Storage(format!("encoding a value: {e}")))
}

fn task_of_link(item: HashMap<String, AttributeValue>) -> Option<Id> {
    let link: LinkItem = serde_dynamo::from_item(item).ok()?;
    link.task_id.as_deref().and_then(Id::parse)
}
