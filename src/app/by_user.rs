//! Listing a time window's conversions with byUser, page by page (`LastEvaluatedKey`), at the
//! pace the API adapter keeps to the plan's rate; a busy MusicGPT (429, 5xx) is waited out a
//! few times on the same page, then the listing stops with the key to resume from.

use std::time::Duration;

use serde_json::Value;
use tracing::warn;

use crate::app::ports::MusicGpt;
use crate::domain::by_user::{ByUserQuery, PageKey};
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct ListOptions {
    /// Pages one listing reads at most; past them it stops with `resume`.
    pub max_pages: usize,
    /// Busy answers waited out in a row on one page before the listing stops.
    pub busy_retries: u32,
    /// The first wait after a busy answer; doubled each time, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for ListOptions {
    fn default() -> Self {
        ListOptions {
            max_pages: 200,
            busy_retries: 3,
            // byId's limit is per minute; a 429 is over within one.
            first_backoff: Duration::from_secs(15),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// What a listing found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    pub conversions: Vec<Value>,
    pub pages: usize,
    /// Busy answers (429, 5xx) waited out.
    pub busy: u32,
    /// Every page was read.
    pub complete: bool,
    /// Where an incomplete listing stopped: the key of the page not yet read (`None`: from the
    /// first page).
    pub resume: Option<PageKey>,
    /// Why an incomplete listing stopped.
    pub stopped: Option<String>,
}

/// Reads the pages of `query` from `start` (a `resume` key, or `None` for the first page).
/// A refusal (4xx) is an error; a MusicGPT still busy after the retries is not: the listing
/// returns what it has and where to go on.
pub async fn list_by_user<M: MusicGpt>(
    api: &M,
    query: &ByUserQuery,
    start: Option<PageKey>,
    options: &ListOptions,
) -> Result<Listing> {
    query.validate()?;
    let mut listing = Listing::default();
    let mut key = start;
    let mut busy_in_a_row = 0;
    let mut backoff = options.first_backoff;
    loop {
        if listing.pages >= options.max_pages {
            listing.resume = key;
            listing.stopped = Some(format!(
                "read the {} pages one listing may",
                options.max_pages
            ));
            return Ok(listing);
        }
        match api.by_user(query, key.as_ref()).await {
            Ok(page) => {
                listing.pages += 1;
                listing.conversions.extend(page.conversions);
                busy_in_a_row = 0;
                backoff = options.first_backoff;
                match page.next {
                    Some(next) => key = Some(next),
                    None => {
                        listing.complete = true;
                        return Ok(listing);
                    }
                }
            }
            Err(err) if err.is_retryable() && busy_in_a_row < options.busy_retries => {
                busy_in_a_row += 1;
                listing.busy += 1;
                warn!(error = %err, page = listing.pages + 1, wait_ms = backoff.as_millis() as u64, "byUser busy; waiting");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(options.max_backoff);
            }
            Err(err) if err.is_retryable() => {
                listing.resume = key;
                listing.stopped = Some(err.to_string());
                return Ok(listing);
            }
            Err(err) => return Err(err),
        }
    }
}
