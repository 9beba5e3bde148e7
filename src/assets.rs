//! Asset items in DynamoDB, as the copy engine sees them: claim with a lease, then settle
//! (STORED, retry later, FAILED) only while the lease is still ours.
//!
//! States: PENDING (waiting, or being copied under a lease) -> STORED | FAILED. A lease is
//! `lease_owner` + `lease_until`; an expired lease can be taken over, so a crashed worker
//! delays a copy but never blocks it.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use serde::Deserialize;

use crate::error::{Error, Result, sdk_message};
use crate::keys;
use crate::records::ASSET_PENDING;
use crate::store::key;

pub const ASSET_STORED: &str = "STORED";
pub const ASSET_FAILED: &str = "FAILED";

/// The table key of one asset item.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
pub struct AssetKey {
    pub pk: String,
    pub sk: String,
}

impl AssetKey {
    pub fn is_asset(&self) -> bool {
        self.pk.starts_with("TASK#") && self.sk.starts_with(keys::ASSET_SK_PREFIX)
    }
}

/// An asset item as the webhook writes it and the engine updates it.
#[derive(Debug, Clone, Deserialize)]
pub struct AssetItem {
    pub pk: String,
    pub sk: String,
    pub task_id: String,
    pub conversion_id: Option<String>,
    pub asset_kind: Option<String>,
    pub ext: Option<String>,
    pub source_url: String,
    pub s3_key: String,
    pub state: String,
    #[serde(default)]
    pub attempts: u32,
    pub next_try_at: Option<u64>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<u64>,
    pub last_error: Option<String>,
}

/// Why an asset could not be claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unclaimed {
    Missing,
    Stored,
    Failed,
    /// Waiting for its next try (epoch seconds).
    NotDue(u64),
    /// Another worker holds the lease until then (epoch seconds).
    Leased(u64),
}

/// The result of a copy, written back under the lease.
#[derive(Debug, Clone)]
pub struct StoredCopy<'a> {
    pub bucket: &'a str,
    pub s3_key: &'a str,
    pub size: u64,
    pub etag: &'a str,
    pub sha256: &'a str,
}

#[derive(Clone)]
pub struct AssetTable {
    client: Client,
    table: String,
}

/// A minimal view for listing.
#[derive(Deserialize)]
struct Listed {
    pk: String,
    sk: String,
}

impl AssetTable {
    pub fn new(client: Client, table: impl Into<String>) -> AssetTable {
        AssetTable {
            client,
            table: table.into(),
        }
    }

    /// Takes the lease if the asset is PENDING, due and not leased by anyone else; the
    /// condition makes concurrent claims race inside DynamoDB, where exactly one wins.
    pub async fn claim(
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
            .update_expression("SET lease_owner = :owner, lease_until = :until")
            .condition_expression(
                "#state = :pending \
                 AND (attribute_not_exists(next_try_at) OR next_try_at <= :now) \
                 AND (attribute_not_exists(lease_until) OR lease_until <= :now)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", n(lease_until))
            .expression_attribute_values(":pending", s(ASSET_PENDING))
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
                    Ok(Err(self.why_unclaimed(asset, now).await?))
                }
                e => Err(Error::Storage(sdk_message(e))),
            },
        }
    }

    async fn why_unclaimed(&self, asset: &AssetKey, now: u64) -> Result<Unclaimed> {
        let Some(item) = self.get(asset).await? else {
            return Ok(Unclaimed::Missing);
        };
        Ok(match item.state.as_str() {
            ASSET_STORED => Unclaimed::Stored,
            ASSET_PENDING => match (item.lease_until, item.next_try_at) {
                (Some(until), _) if until > now => Unclaimed::Leased(until),
                (_, Some(at)) if at > now => Unclaimed::NotDue(at),
                // Changed between the claim and this read: as good as leased for a moment.
                _ => Unclaimed::Leased(now),
            },
            _ => Unclaimed::Failed,
        })
    }

    pub async fn get(&self, asset: &AssetKey) -> Result<Option<AssetItem>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(&asset.pk, &asset.sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| Error::Storage(sdk_message(e)))?;
        out.item.map(from_item).transpose()
    }

    /// STORED, only while the lease is ours. `false`: the lease was lost (it expired and
    /// another worker took the asset over).
    pub async fn mark_stored(
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
            .expression_attribute_values(":stored", s(ASSET_STORED))
            .expression_attribute_values(":size", n(copy.size))
            .expression_attribute_values(":etag", s(copy.etag))
            .expression_attribute_values(":sha", s(copy.sha256))
            .expression_attribute_values(":bucket", s(copy.bucket))
            .expression_attribute_values(":key", s(copy.s3_key))
            .expression_attribute_values(":now", n(now));
        self.under_lease(request, asset, owner).await
    }

    /// Back to PENDING for another try at `next_try_at`.
    pub async fn mark_retry(
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
    pub async fn mark_failed(
        &self,
        asset: &AssetKey,
        owner: &str,
        attempts: u32,
        error: &str,
        now: u64,
    ) -> Result<bool> {
        let request = self
            .client
            .update_item()
            .update_expression(
                "SET #state = :failed, attempts = :attempts, last_error = :error, \
                 last_attempt_at = :now, failed_at = :now \
                 REMOVE lease_owner, lease_until, next_try_at",
            )
            .expression_attribute_values(":failed", s(ASSET_FAILED))
            .expression_attribute_values(":attempts", n(u64::from(attempts)))
            .expression_attribute_values(":error", s(error))
            .expression_attribute_values(":now", n(now));
        self.under_lease(request, asset, owner).await
    }

    /// Gives the lease up without counting an attempt (the time budget ran out).
    pub async fn release(&self, asset: &AssetKey, owner: &str) -> Result<bool> {
        let request = self
            .client
            .update_item()
            .update_expression("REMOVE lease_owner, lease_until");
        self.under_lease(request, asset, owner).await
    }

    /// The PENDING assets of one task, for copying them right after their callback.
    pub async fn pending_in_task(&self, task_pk: &str) -> Result<Vec<AssetKey>> {
        let items = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :asset)")
            .filter_expression("#state = :pending")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":pk", s(task_pk))
            .expression_attribute_values(":asset", s(keys::ASSET_SK_PREFIX))
            .expression_attribute_values(":pending", s(ASSET_PENDING))
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
                serde_dynamo::from_item::<_, Listed>(item)
                    .map(|listed| AssetKey {
                        pk: listed.pk,
                        sk: listed.sk,
                    })
                    .map_err(|e| Error::Storage(format!("unreadable asset key: {e}")))
            })
            .collect()
    }

    async fn under_lease(
        &self,
        request: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
        asset: &AssetKey,
        owner: &str,
    ) -> Result<bool> {
        let result = request
            .table_name(&self.table)
            .set_key(Some(key(&asset.pk, &asset.sk)))
            .condition_expression("lease_owner = :lease_owner AND #state = :pending")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":lease_owner", s(owner))
            .expression_attribute_values(":pending", s(ASSET_PENDING))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) => match err.into_service_error() {
                e if e.is_conditional_check_failed_exception() => Ok(false),
                e => Err(Error::Storage(sdk_message(e))),
            },
        }
    }
}

fn from_item(item: HashMap<String, AttributeValue>) -> Result<AssetItem> {
    serde_dynamo::from_item(item).map_err(|e| Error::Storage(format!("unreadable asset item: {e}")))
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}
