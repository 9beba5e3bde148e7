//! The DynamoDB table: one table for tasks and assets (key `pk`/`sk`), so one adapter
//! implements both the task store and the asset store.

mod assets;
mod events;
mod tasks;
mod update;

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

/// Global secondary index on `status` (hash) and `created_at` (range): tasks and conversions by
/// status, so the reconciler reads only the SUBMITTED ones. Projects `task_id`, `item_type`.
pub const TASKS_BY_STATUS: &str = "tasks_by_status";
/// Global secondary index on `state` (hash) and `next_try_at` (range): only asset items have a
/// `state`, so the reconciler reads only the PENDING ones. Projects `task_id`.
pub const ASSETS_BY_STATE: &str = "assets_by_state";
/// Global secondary index on `outbox` (hash) and `due_at` (range): only event items whose
/// publishing or forwarding is still due carry `outbox`, so the sweep reads only those.
/// Projects `task_id`, `event_id`.
pub const EVENTS_DUE: &str = "events_due";

/// The table, through one client; cheap to clone (the client shares its connection pool).
#[derive(Clone)]
pub struct DynamoTable {
    client: Client,
    table: String,
}

impl DynamoTable {
    pub fn new(client: Client, table: impl Into<String>) -> DynamoTable {
        DynamoTable {
            client,
            table: table.into(),
        }
    }
}

fn key(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_owned(), AttributeValue::S(pk.to_owned())),
        ("sk".to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}
