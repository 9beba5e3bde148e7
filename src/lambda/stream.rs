//! The DynamoDB stream adapter: stream records -> copy engine -> partial batch response.
//!
//! Only asset items that have just become PENDING start a copy (an INSERT, or a MODIFY from
//! another state, such as a FAILED asset set back by hand); the engine's own writes (leases,
//! retries, STORED) do not. An asset that fails and whose next try still fits in this
//! invocation is retried here after its backoff; one whose next try comes later is left to the
//! sweep (it is PENDING with its `next_try_at`), so a long outage never burns the stream's
//! retries into the dead-letter queue. Only a record whose attempt could not be recorded (or
//! was cut short by the time budget) is reported in `batchItemFailures` for Lambda to deliver
//! again; its asset stays PENDING for the sweep even if those deliveries run out.

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::LambdaEvent;
use serde::Deserialize;
use tokio::time::Instant;
use tracing::{Instrument, info, info_span, warn};

use crate::app::copy::{CopyEngine, CopyOutcome, DEFAULT_CONCURRENCY, copy_span};
use crate::app::ports::{Clock, Ports, SystemClock};
use crate::domain::asset::AssetItem;
use crate::domain::keys::AssetKey;
use crate::domain::status::{AssetState, ItemType};
use crate::error::{Error, Result};
use crate::lambda::budget::{Budget, lambda_deadline};

/// A new try is only started if at least this much of the budget is left.
const MIN_TRY_TIME: Duration = Duration::from_secs(2);

pub struct StreamCopier<P: Ports> {
    engine: CopyEngine<P>,
    budget: Budget,
    concurrency: usize,
}

/// The few attributes of a stream image that decide whether it starts a copy.
#[derive(Deserialize)]
struct Image {
    pk: Option<String>,
    sk: Option<String>,
    item_type: Option<String>,
    state: Option<String>,
}

impl<P: Ports> StreamCopier<P> {
    pub fn new(engine: CopyEngine<P>) -> StreamCopier<P> {
        StreamCopier {
            engine,
            budget: Budget {
                margin: Duration::from_secs(10),
                fallback: Duration::from_secs(60),
            },
            concurrency: DEFAULT_CONCURRENCY,
        }
    }

    pub fn with_budget(mut self, budget: Budget) -> StreamCopier<P> {
        self.budget = budget;
        self
    }

    pub async fn handle(&self, event: LambdaEvent<Event>) -> Result<DynamoDbEventResponse> {
        let deadline = lambda_deadline(event.context.deadline);
        let span = info_span!(
            "stream_batch",
            trace_id = event.context.xray_trace_id.as_deref()
        );
        self.handle_records(&event.payload.records, self.budget.stop(deadline))
            .instrument(span)
            .await
    }

    /// Copies the newly PENDING assets of a batch and reports the records to deliver again.
    /// `Err` (the whole batch again) only if such a record has no sequence number.
    pub async fn handle_records(
        &self,
        records: &[EventRecord],
        stop: Instant,
    ) -> Result<DynamoDbEventResponse> {
        // One copy per asset, even if the batch holds several records of it.
        let mut sequences: HashMap<AssetKey, Vec<Option<String>>> = HashMap::new();
        let mut seen: HashMap<AssetKey, AssetItem> = HashMap::new();
        for record in records {
            if let Some(asset) = newly_pending(record) {
                if let Some(item) = image_item(record) {
                    seen.insert(asset.clone(), item);
                }
                sequences
                    .entry(asset)
                    .or_default()
                    .push(record.change.sequence_number.clone());
            }
        }
        let mut running = tokio::task::JoinSet::new();
        let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(self.concurrency.max(1)));
        for asset in sequences.keys().cloned() {
            let engine = self.engine.clone();
            let permits = std::sync::Arc::clone(&permits);
            let span = copy_span(&asset);
            let seen = seen.remove(&asset);
            running.spawn(
                async move {
                    let _permit = permits.acquire_owned().await;
                    let settled = settle(&engine, &asset, seen, stop).await;
                    (asset, settled)
                }
                .instrument(span),
            );
        }
        let mut response = DynamoDbEventResponse::default();
        let mut unsettled = Vec::new();
        while let Some(joined) = running.join_next().await {
            match joined {
                Ok((_, true)) => {}
                Ok((asset, false)) => unsettled.push(asset),
                Err(err) => {
                    return Err(Error::storage_from("copy task did not finish", err));
                }
            }
        }
        for asset in &unsettled {
            for sequence in sequences.get(asset).into_iter().flatten() {
                let Some(sequence) = sequence else {
                    return Err(Error::storage(format!(
                        "record for {} has no sequence number to report",
                        asset.sk
                    )));
                };
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = Some(sequence.clone());
                response.batch_item_failures.push(failure);
            }
        }
        info!(
            records = records.len(),
            assets = sequences.len(),
            unsettled = unsettled.len(),
            "stream batch handled"
        );
        Ok(response)
    }
}

/// Tries until the asset is settled, waiting out backoffs while they fit before `stop`; a
/// later next try is the sweep's. The first try starts from the record's image (`seen`): its
/// download opens while the lease is taken. `false`: the record must be delivered again.
async fn settle<P: Ports>(
    engine: &CopyEngine<P>,
    asset: &AssetKey,
    mut seen: Option<AssetItem>,
    stop: Instant,
) -> bool {
    loop {
        let attempt = match seen.take() {
            Some(seen) => engine.copy_seen(&seen, Some(stop)).await,
            None => engine.copy(asset, Some(stop)).await,
        };
        let outcome = match attempt {
            Ok(outcome) => outcome,
            Err(err) => {
                warn!(sk = %asset.sk, error = %err, "copy attempt not recorded");
                return false;
            }
        };
        let wait_until = match outcome {
            outcome if outcome.is_settled() => return true,
            CopyOutcome::RetryAt { next_try_at, .. } | CopyOutcome::NotDue { next_try_at } => {
                next_try_at
            }
            CopyOutcome::Busy { lease_until } => lease_until,
            _ => return false,
        };
        // Whole seconds from a truncated "now" never wake before the item is due.
        let wait = Duration::from_secs(wait_until.saturating_sub(SystemClock.now_secs()))
            .max(Duration::from_millis(50));
        if Instant::now() + wait + MIN_TRY_TIME > stop {
            // PENDING with its next try (or another worker's lease) recorded: the sweep, or
            // that worker, takes it from here.
            return true;
        }
        tokio::time::sleep(wait).await;
    }
}

/// The asset item in a record's new image, if it reads as one.
fn image_item(record: &EventRecord) -> Option<AssetItem> {
    serde_dynamo::from_item(record.change.new_image.clone()).ok()
}

/// The asset a record starts a copy for, if it does: an asset item that is PENDING now and
/// was not before.
pub fn newly_pending(record: &EventRecord) -> Option<AssetKey> {
    let image = |item: &serde_dynamo::Item| serde_dynamo::from_item::<_, Image>(item.clone()).ok();
    let new = image(&record.change.new_image)?;
    let fresh = match record.event_name.as_str() {
        "INSERT" => true,
        "MODIFY" => image(&record.change.old_image)
            .and_then(|old| old.state)
            .is_none_or(|state| state != AssetState::Pending.as_str()),
        _ => false,
    };
    let pending = new.item_type.as_deref() == Some(ItemType::Asset.as_str())
        && new.state.as_deref() == Some(AssetState::Pending.as_str());
    let asset = AssetKey {
        pk: new.pk?,
        sk: new.sk?,
    };
    (fresh && pending && asset.is_asset()).then_some(asset)
}
