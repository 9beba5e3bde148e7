//! The event bus on EventBridge: `PutEvents` on `EVENT_BUS_NAME`, source `musicgpt-webhook`,
//! ten entries a call (its limit), answered entry by entry.

use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use crate::app::ports::{BusEvent, EventBus};
use crate::domain::events::SOURCE;
use crate::error::{Error, Result};

/// EventBridge takes at most this many entries per PutEvents.
const BATCH: usize = 10;

#[derive(Clone)]
pub struct EventBridgeBus {
    client: Client,
    bus: String,
}

impl EventBridgeBus {
    pub fn new(client: Client, bus: impl Into<String>) -> EventBridgeBus {
        EventBridgeBus {
            client,
            bus: bus.into(),
        }
    }
}

impl EventBus for EventBridgeBus {
    async fn publish(&self, events: &[BusEvent]) -> Result<Vec<std::result::Result<(), String>>> {
        let mut answers = Vec::with_capacity(events.len());
        for batch in events.chunks(BATCH) {
            let entries = batch
                .iter()
                .map(|e| {
                    PutEventsRequestEntry::builder()
                        .event_bus_name(&self.bus)
                        .source(SOURCE)
                        .detail_type(e.detail_type)
                        .detail(&e.detail)
                        .time(DateTime::from_secs(i64::try_from(e.time).unwrap_or(0)))
                        .set_resources(Some(e.resources.clone()))
                        .build()
                })
                .collect();
            let out = self
                .client
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| Error::storage_from("PutEvents", e))?;
            let results = out.entries();
            for (i, _) in batch.iter().enumerate() {
                answers.push(match results.get(i) {
                    Some(r) if r.error_code().is_some() => Err(format!(
                        "{}: {}",
                        r.error_code().unwrap_or_default(),
                        r.error_message().unwrap_or_default()
                    )),
                    Some(_) => Ok(()),
                    None => Err("no answer for this entry".to_owned()),
                });
            }
        }
        Ok(answers)
    }
}
