//! A plan's writes as DynamoDB UpdateItem requests.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Update};
use serde_json::Value;

use super::key;
use crate::domain::plan::{Condition, ItemWrite};
use crate::error::{Error, Result};

/// The UpdateItem expression for one write: `SET` for owned and guarded fields,
/// `if_not_exists` for shared ones, `ADD` for counters.
pub(super) fn update(table: &str, w: &ItemWrite) -> Result<Update> {
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
        .table_name(table)
        .set_key(Some(key(&w.pk, &w.sk)))
        .update_expression(expression.trim())
        .set_condition_expression(condition)
        .set_expression_attribute_names(Some(names))
        .set_expression_attribute_values(Some(values))
        .build()
        .map_err(|e| Error::storage_from("building an update", e))
}

fn attribute(value: &Value) -> Result<AttributeValue> {
    serde_dynamo::to_attribute_value(value).map_err(|e| Error::storage_from("encoding a value", e))
}
