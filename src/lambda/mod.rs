//! The front ends: what Lambda invokes (HTTP, the table's stream, a schedule), their time
//! budgets, and the one mapping from errors to HTTP answers.

pub mod budget;
pub mod http;
pub mod inline;
pub mod logs;
pub mod metrics;
pub mod read_api;
pub mod response;
pub mod schedule;
pub mod stream;
