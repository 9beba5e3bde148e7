//! A plan's writes as the UpdateItem requests the table adapter sends for them: the floor is
//! the same DynamoDB requests a hand-written client would send.
// Here, not in src/: the adapter's builder is private, and nothing is public only for a bench.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Update};
use musicgpt_webhook::domain::plan::{Condition, ItemWrite};
use serde_json::Value;

/// One write as an `Update` of a transaction: `SET` for owned and guarded fields,
/// `if_not_exists` for shared ones, `ADD` for counters, and the write's condition.
pub fn update(table: &str, w: &ItemWrite) -> Update {
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let mut bind = |prefix: &str, i: usize, name: &str, value: &Value| -> (String, String) {
        let (n, v) = (format!("#{prefix}{i}"), format!(":{prefix}{i}"));
        names.insert(n.clone(), name.to_owned());
        values.insert(v.clone(), attribute(value));
        (n, v)
    };
    let mut sets = Vec::new();
    for (i, (name, value)) in w.set.iter().enumerate() {
        let (n, v) = bind("s", i, name, value);
        sets.push(format!("{n} = {v}"));
    }
    for (i, (name, value)) in w.set_if_absent.iter().enumerate() {
        let (n, v) = bind("i", i, name, value);
        sets.push(format!("{n} = if_not_exists({n}, {v})"));
    }
    for (i, (name, value)) in w.guarded.iter().enumerate() {
        let (n, v) = bind("g", i, name, value);
        sets.push(format!("{n} = {v}"));
    }
    let mut adds = Vec::new();
    for (i, (name, amount)) in w.add.iter().enumerate() {
        let (n, v) = bind("a", i, name, &Value::from(*amount));
        adds.push(format!("{n} {v}"));
    }
    let mut expression = Vec::new();
    if !sets.is_empty() {
        expression.push(format!("SET {}", sets.join(", ")));
    }
    if !adds.is_empty() {
        expression.push(format!("ADD {}", adds.join(", ")));
    }
    let condition = match &w.condition {
        Condition::Always => None,
        Condition::CreateOnly => Some("attribute_not_exists(pk)"),
        Condition::NewerStatus(order) => {
            names.insert("#order".to_owned(), "status_order".to_owned());
            values.insert(":order".to_owned(), AttributeValue::S(order.clone()));
            Some("attribute_not_exists(#order) OR #order <= :order")
        }
        Condition::NoParkedCallbacks(_) => Some("attribute_not_exists(has_parked)"),
    };
    Update::builder()
        .table_name(table)
        .key("pk", AttributeValue::S(w.pk.clone()))
        .key("sk", AttributeValue::S(w.sk.clone()))
        .update_expression(expression.join(" "))
        .set_condition_expression(condition.map(str::to_owned))
        .set_expression_attribute_names(Some(names))
        .set_expression_attribute_values(Some(values))
        .build()
        .expect("an update with a table, a key and an expression")
}

fn attribute(value: &Value) -> AttributeValue {
    serde_dynamo::to_attribute_value(value).expect("plan values encode as DynamoDB attributes")
}
