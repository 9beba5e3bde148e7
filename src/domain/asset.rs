//! An asset item as the copy engine sees it, and the answers a store gives about it.

use serde::Deserialize;

use crate::domain::status::AssetState;

/// An asset item as the webhook writes it and the engine updates it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AssetItem {
    pub pk: String,
    pub sk: String,
    pub task_id: String,
    pub conversion_id: Option<String>,
    pub asset_kind: Option<String>,
    pub ext: Option<String>,
    pub source_url: String,
    pub s3_key: String,
    pub state: AssetState,
    #[serde(default)]
    pub attempts: u32,
    /// How many times the asset has been claimed, the current claim included (0 on items
    /// written before claims were counted).
    #[serde(default)]
    pub claims: u32,
    pub next_try_at: Option<u64>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<u64>,
    pub last_error: Option<String>,
    /// When its callback was received.
    pub created_at: Option<u64>,
    /// The last moment a copy is worth trying (items written before deadlines existed have
    /// none: their deadline comes from `created_at`).
    pub deadline_at: Option<u64>,
}

impl AssetItem {
    /// Whether an earlier attempt may have uploaded the file: any claim before this one. Only
    /// the first claim ever (counted, with no attempt on record) knows that none did.
    pub fn may_have_earlier_copy(&self) -> bool {
        self.claims != 1 || self.attempts > 0
    }
}

/// Why an asset could not be claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unclaimed {
    Missing,
    Stored,
    Failed,
    Expired,
    /// Waiting for its next try (epoch seconds).
    NotDue(u64),
    /// Another worker holds the lease until then (epoch seconds).
    Leased(u64),
}

impl Unclaimed {
    /// Why `item` was not claimable at `now`, read after a claim was refused.
    pub fn of(item: Option<&AssetItem>, now: u64) -> Unclaimed {
        let Some(item) = item else {
            return Unclaimed::Missing;
        };
        match item.state {
            AssetState::Stored => Unclaimed::Stored,
            AssetState::Failed => Unclaimed::Failed,
            AssetState::Expired => Unclaimed::Expired,
            AssetState::Pending => match (item.lease_until, item.next_try_at) {
                (Some(until), _) if until > now => Unclaimed::Leased(until),
                (_, Some(at)) if at > now => Unclaimed::NotDue(at),
                // Changed between the claim and this read: as good as leased for a moment.
                _ => Unclaimed::Leased(now),
            },
        }
    }
}

/// An asset still waiting to be stored, as the sweep sees it (from the `assets_by_state` index).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PendingAsset {
    pub pk: String,
    pub sk: String,
    pub next_try_at: Option<u64>,
    pub created_at: Option<u64>,
    pub deadline_at: Option<u64>,
}

/// How the unstored assets stand: what the expiry alarm watches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backlog {
    pub pending: usize,
    /// Seconds since the oldest unstored asset's callback came.
    pub oldest_age_secs: u64,
    /// Assets whose deadline is less than the warning window away (or already past).
    pub at_risk: usize,
}

impl Backlog {
    pub fn of(assets: &[PendingAsset], now: u64, warning_secs: u64) -> Backlog {
        Backlog {
            pending: assets.len(),
            oldest_age_secs: assets
                .iter()
                .filter_map(|a| a.created_at)
                .min()
                .map_or(0, |oldest| now.saturating_sub(oldest)),
            at_risk: assets
                .iter()
                .filter(|a| a.deadline_at.is_some_and(|d| d <= now + warning_secs))
                .count(),
        }
    }
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
