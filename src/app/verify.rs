//! Verification: before an asset is copied, MusicGPT's byId must confirm that the task exists
//! and reports this very file. Anyone can POST to the webhook URL; only MusicGPT can make byId
//! list a URL for a task.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::OnceCell;

use crate::app::ports::{MusicGpt, Ports, TaskStore};
use crate::domain::api::{Lookup, conversion_type_enum, reported_urls, url_identity};
use crate::domain::asset::AssetItem;
use crate::domain::ids::Id;
use crate::domain::status::TaskStatus;
use crate::error::{Error, Result};

/// byId answers are reused this long: the files of one task (2 songs x 2 formats and a cover)
/// are checked with one call, yet a task still in progress is asked again soon.
const CACHE_FOR: Duration = Duration::from_secs(60);
const MAX_CACHED_TASKS: usize = 1_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Verified,
    /// MusicGPT does not vouch for this file: the asset fails, nothing is downloaded.
    Unverified(String),
}

type Answer = Arc<OnceCell<(Instant, Lookup)>>;

#[derive(Clone)]
pub struct Verifier<P: Ports> {
    api: P::Api,
    store: P::Tasks,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
}

impl<P: Ports> Verifier<P> {
    pub fn new(api: P::Api, store: P::Tasks) -> Verifier<P> {
        Verifier {
            api,
            store,
            answers: Arc::default(),
        }
    }

    /// `Err` (retryable) when MusicGPT is busy or down, or the answer is not final yet: the
    /// copy waits and tries again; it is never failed for that.
    pub async fn check(&self, item: &AssetItem) -> Result<Verdict> {
        let Some(task) = Id::parse(&item.task_id) else {
            return Ok(Verdict::Unverified("task id outside the id rule".into()));
        };
        let conversion = match self.lookup(&task).await? {
            Lookup::NotFound => {
                return Ok(Verdict::Unverified(
                    "MusicGPT does not know this task".into(),
                ));
            }
            Lookup::Found(conversion) => conversion,
        };
        let wanted = url_identity(&item.source_url);
        if reported_urls(&conversion).contains(&wanted) {
            return Ok(Verdict::Verified);
        }
        let status = TaskStatus::parse(
            conversion
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
        if status.is_terminal() {
            Ok(Verdict::Unverified(
                "MusicGPT does not report this file for the task".into(),
            ))
        } else {
            self.forget(&task);
            Err(Error::provider(format!(
                "task is {:?} at MusicGPT; its files may not be listed yet",
                status.as_str()
            )))
        }
    }

    /// One byId call per task at a time; concurrent checks of the same task share it.
    async fn lookup(&self, task: &Id) -> Result<Lookup> {
        let cell = {
            let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
            let fresh = |cell: &Answer| cell.get().is_none_or(|(at, _)| at.elapsed() < CACHE_FOR);
            answers.retain(|_, cell| fresh(cell));
            if answers.len() >= MAX_CACHED_TASKS {
                answers.clear();
            }
            answers.entry(task.to_string()).or_default().clone()
        };
        let (_, lookup) = cell
            .get_or_try_init(|| async {
                let label = self.store.task_conversion_type(task).await?;
                let conversion_type =
                    label.map_or_else(|| "MUSIC_AI".to_owned(), |l| conversion_type_enum(&l));
                let lookup = self.api.by_task(&conversion_type, task).await?;
                Ok::<_, Error>((Instant::now(), lookup))
            })
            .await?;
        Ok(lookup.clone())
    }

    fn forget(&self, task: &Id) {
        self.answers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(task.as_str());
    }
}
