//! The asset store on the table: claim with a lease, then settle (STORED, retry later,
//! FAILED) only while the lease is still ours. An expired lease can be taken over, so a
//! crashed worker delays a copy but never blocks it.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TransactWriteItem, Update};
use serde::Deserialize;

use super::update::update;
use super::{ASSETS_BY_STATE, DynamoTable, key, n, s};
use crate::app::ports::AssetStore;
use crate::domain::asset::{AssetItem, PendingAsset, StoredCopy, Unclaimed};
use crate::domain::ids::Id;
use crate::domain::keys::{self, AssetKey};
use crate::domain::plan::ItemWrite;
use crate::domain::status::AssetState;
use crate::error::{Error, Result};

/// A minimal view for listing.
#[derive(Deserialize)]
struct Listed {
    pk: String,
    sk: String,
}

impl DynamoTable {
    /// FAILED or EXPIRED under the lease: the attempt's count and error, and when it ended
    /// (`failed_at` / `expired_at`).
    async fn mark_ended(
        &self,
        asset: &AssetKey,
        owner: &str,
        state: AssetState,
        attempts: u32,
        error: &str,
        now: u64,
    ) -> Result<bool> {
        let ended_at = state.ended_at();
        let request = self
            .client
            .update_item()
            .update_expression(format!(
                "SET #state = :state, attempts = :attempts, last_error = :error, \
                 last_attempt_at = :now, {ended_at} = :now, next_try_at = :now \
                 REMOVE lease_owner, lease_until"
            ))
            .expression_attribute_values(":state", s(state.as_str()))
            .expression_attribute_values(":attempts", n(u64::from(attempts)))
            .expression_attribute_values(":error", s(error))
            .expression_attribute_values(":now", n(now));
        self.under_lease(request, asset, owner).await
    }
}

impl AssetStore for DynamoTable {
    /// Takes the lease if the asset is PENDING, due and not leased by anyone else; the
    /// condition makes concurrent claims race inside DynamoDB, where exactly one wins.
    async fn claim(
        &self,
        asset: &AssetKey,
        owner: &str,
        now: u64,
        lease_until: u64,
    ) -> Result<Result<AssetItem, Unclaimed>> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&asset.pk, &asset.sk)))
            .update_expression("SET lease_owner = :owner, lease_until = :until ADD claims :one")
            .condition_expression(
                "#state = :pending \
                 AND (attribute_not_exists(next_try_at) OR next_try_at <= :now) \
                 AND (attribute_not_exists(lease_until) OR lease_until <= :now)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", n(lease_until))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":pending", s(AssetState::Pending.as_str()))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => {
                let item = out.attributes.unwrap_or_default();
                Ok(Ok(from_item(item)?))
            }
            Err(err) => match err.into_service_error() {
                e if e.is_conditional_check_failed_exception() => {
                    let item = self.get(asset).await?;
                    Ok(Err(Unclaimed::of(item.as_ref(), now)))
                }
                e => Err(Error::storage_from("UpdateItem", e)),
            },
        }
    }

    async fn get(&self, asset: &AssetKey) -> Result<Option<AssetItem>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(&asset.pk, &asset.sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::storage_from("GetItem", e))?;
        out.item.map(from_item).transpose()
    }

    /// STORED, only while the lease is ours. `false`: the lease was lost (it expired and
    /// another worker took the asset over).
    async fn mark_stored(
        &self,
        asset: &AssetKey,
        owner: &str,
        copy: &StoredCopy<'_>,
        now: u64,
    ) -> Result<bool> {
        let request = self
            .client
            .update_item()
            .update_expression(
                "SET #state = :stored, size_bytes = :size, etag = :etag, sha256 = :sha, \
                 #bucket = :bucket, s3_key = :key, stored_at = :now \
                 REMOVE lease_owner, lease_until, next_try_at, last_error",
            )
            .expression_attribute_names("#bucket", "bucket")
            .expression_attribute_values(":stored", s(AssetState::Stored.as_str()))
            .expression_attribute_values(":size", n(copy.size))
            .expression_attribute_values(":etag", s(copy.etag))
            .expression_attribute_values(":sha", s(copy.sha256))
            .expression_attribute_values(":bucket", s(copy.bucket))
            .expression_attribute_values(":key", s(copy.s3_key))
            .expression_attribute_values(":now", n(now));
        self.under_lease(request, asset, owner).await
    }

    /// STORED with its event items, in one transaction. A transaction that collides with
    /// another write of the same items is sent again a few times before it counts as a
    /// storage failure (the copy engine then finds the object next time).
    async fn mark_stored_with(
        &self,
        asset: &AssetKey,
        owner: &str,
        copy: &StoredCopy<'_>,
        content_type: &str,
        now: u64,
        outbox: &[ItemWrite],
    ) -> Result<bool> {
        let mut items = vec![TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key(&asset.pk, &asset.sk)))
                    .update_expression(
                        "SET #state = :stored, size_bytes = :size, etag = :etag, sha256 = :sha, \
                         #bucket = :bucket, s3_key = :key, stored_at = :now, content_type = :ct \
                         REMOVE lease_owner, lease_until, next_try_at, last_error",
                    )
                    .condition_expression("lease_owner = :lease_owner AND #state = :pending")
                    .expression_attribute_names("#state", "state")
                    .expression_attribute_names("#bucket", "bucket")
                    .expression_attribute_values(":stored", s(AssetState::Stored.as_str()))
                    .expression_attribute_values(":size", n(copy.size))
                    .expression_attribute_values(":etag", s(copy.etag))
                    .expression_attribute_values(":sha", s(copy.sha256))
                    .expression_attribute_values(":bucket", s(copy.bucket))
                    .expression_attribute_values(":key", s(copy.s3_key))
                    .expression_attribute_values(":now", n(now))
                    .expression_attribute_values(":ct", s(content_type))
                    .expression_attribute_values(":lease_owner", s(owner))
                    .expression_attribute_values(":pending", s(AssetState::Pending.as_str()))
                    .build()
                    .map_err(|e| Error::storage_from("building an update", e))?,
            )
            .build()];
        for write in outbox {
            items.push(
                TransactWriteItem::builder()
                    .update(update(&self.table, write)?)
                    .build(),
            );
        }
        for round in 0..4u32 {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let cancelled = match result {
                Ok(_) => return Ok(true),
                Err(err) => match err.into_service_error() {
                    TransactWriteItemsError::TransactionCanceledException(c) => c,
                    other => return Err(Error::storage_from("TransactWriteItems", other)),
                },
            };
            let codes: Vec<&str> = cancelled
                .cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None"))
                .collect();
            if codes.first() == Some(&"ConditionalCheckFailed") {
                return Ok(false);
            }
            if !codes.contains(&"TransactionConflict") {
                return Err(Error::storage(format!(
                    "marking stored cancelled: {}",
                    codes.join(", ")
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(20 << round)).await;
        }
        Err(Error::storage(
            "marking stored: transaction still conflicting",
        ))
    }

    /// Back to PENDING for another try at `next_try_at`.
    async fn mark_retry(
        &self,
        asset: &AssetKey,
        owner: &str,
        attempts: u32,
        error: &str,
        next_try_at: u64,
        now: u64,
    ) -> Result<bool> {
        let request = self
            .client
            .update_item()
            .update_expression(
                "SET attempts = :attempts, last_error = :error, next_try_at = :next, \
                 last_attempt_at = :now REMOVE lease_owner, lease_until",
            )
            .expression_attribute_values(":attempts", n(u64::from(attempts)))
            .expression_attribute_values(":error", s(error))
            .expression_attribute_values(":next", n(next_try_at))
            .expression_attribute_values(":now", n(now));
        self.under_lease(request, asset, owner).await
    }

    /// FAILED for good: refused, rejected by the source, or out of attempts.
    async fn mark_failed(
        &self,
        asset: &AssetKey,
        owner: &str,
        attempts: u32,
        error: &str,
        now: u64,
    ) -> Result<bool> {
        self.mark_ended(asset, owner, AssetState::Failed, attempts, error, now)
            .await
    }

    /// EXPIRED: its deadline passed before a copy succeeded.
    async fn mark_expired(
        &self,
        asset: &AssetKey,
        owner: &str,
        attempts: u32,
        error: &str,
        now: u64,
    ) -> Result<bool> {
        self.mark_ended(asset, owner, AssetState::Expired, attempts, error, now)
            .await
    }

    /// Gives the lease up without counting an attempt (the time budget ran out).
    async fn release(&self, asset: &AssetKey, owner: &str) -> Result<bool> {
        let request = self
            .client
            .update_item()
            .update_expression("REMOVE lease_owner, lease_until");
        self.under_lease(request, asset, owner).await
    }

    /// The PENDING assets of one task, for copying them right after their callback.
    async fn pending_in_task(&self, task: &Id) -> Result<Vec<AssetKey>> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :asset)")
            .filter_expression("#state = :pending")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":pk", s(&keys::task_pk(task)))
            .expression_attribute_values(":asset", s(keys::ASSET_SK_PREFIX))
            .expression_attribute_values(":pending", s(AssetState::Pending.as_str()))
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
                serde_dynamo::from_item::<_, Listed>(item)
                    .map(|listed| AssetKey {
                        pk: listed.pk,
                        sk: listed.sk,
                    })
                    .map_err(|e| Error::storage_from("unreadable asset key", e))
            })
            .collect()
    }

    async fn pending_assets(&self) -> Result<Vec<PendingAsset>> {
        self.assets_in_state(AssetState::Pending).await
    }

    async fn assets_in_state(&self, state: AssetState) -> Result<Vec<PendingAsset>> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(ASSETS_BY_STATE)
            .key_condition_expression("#state = :state")
            .projection_expression("pk, sk, next_try_at, created_at, deadline_at")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":state", s(state.as_str()))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| Error::storage_from("Query", e))?;
        items
            .into_iter()
            .map(|item| {
                serde_dynamo::from_item(item)
                    .map_err(|e| Error::storage_from("unreadable asset", e))
            })
            .collect()
    }

    async fn redrive(&self, asset: &AssetKey, now: u64, deadline_at: u64) -> Result<bool> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(&asset.pk, &asset.sk)))
            .update_expression(
                "SET #state = :pending, attempts = :zero, next_try_at = :now, \
                 deadline_at = :deadline, redriven_at = :now \
                 REMOVE last_error, failed_at, expired_at, lease_owner, lease_until",
            )
            .condition_expression("#state IN (:failed, :expired)")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":pending", s(AssetState::Pending.as_str()))
            .expression_attribute_values(":failed", s(AssetState::Failed.as_str()))
            .expression_attribute_values(":expired", s(AssetState::Expired.as_str()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":deadline", n(deadline_at))
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
}

impl DynamoTable {
    async fn under_lease(
        &self,
        request: UpdateItemFluentBuilder,
        asset: &AssetKey,
        owner: &str,
    ) -> Result<bool> {
        let result = request
            .table_name(&self.table)
            .set_key(Some(key(&asset.pk, &asset.sk)))
            .condition_expression("lease_owner = :lease_owner AND #state = :pending")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":lease_owner", s(owner))
            .expression_attribute_values(":pending", s(AssetState::Pending.as_str()))
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
}

fn from_item(item: HashMap<String, AttributeValue>) -> Result<AssetItem> {
    serde_dynamo::from_item(item).map_err(|e| Error::storage_from("unreadable asset item", e))
}
