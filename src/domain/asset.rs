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

impl Unclaimed {
    /// Why `item` was not claimable at `now`, read after a claim was refused.
    pub fn of(item: Option<&AssetItem>, now: u64) -> Unclaimed {
        let Some(item) = item else {
            return Unclaimed::Missing;
        };
        match item.state {
            AssetState::Stored => Unclaimed::Stored,
            AssetState::Failed => Unclaimed::Failed,
            AssetState::Pending => match (item.lease_until, item.next_try_at) {
                (Some(until), _) if until > now => Unclaimed::Leased(until),
                (_, Some(at)) if at > now => Unclaimed::NotDue(at),
                // Changed between the claim and this read: as good as leased for a moment.
                _ => Unclaimed::Leased(now),
            },
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
