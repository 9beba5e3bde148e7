//! Submitting a conversion with this deployment's webhook URL, and registering the task so the
//! reconciler can notice if its callbacks never come.

use serde_json::json;

use crate::callback::Callback;
use crate::error::{Error, Result};
use crate::ids::Id;
use crate::ingest::{Outcome, Recorder};
use crate::musicgpt::{MusicAiRequest, MusicGptApi, Submitted};

/// The status a registered task has until MusicGPT reports one.
pub const SUBMITTED: &str = "SUBMITTED";

#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub submitted: Submitted,
    pub outcome: Outcome,
}

/// Submits a Music AI conversion and registers its task as SUBMITTED with the two songs it
/// will make, so lyrics that arrive before their song find the task at once.
pub async fn submit_music_ai(
    api: &MusicGptApi,
    recorder: &Recorder,
    request: &MusicAiRequest,
    now: u64,
) -> Result<Registration> {
    let submitted = api.submit_music_ai(request).await?;
    let callback = submission_callback(&submitted, "MUSIC_AI")?;
    let outcome = recorder.record(&callback, now).await?;
    Ok(Registration { submitted, outcome })
}

/// The preliminary response, recorded through the same path as a callback: a SUBMITTED status
/// that any status MusicGPT reports later outranks, and links for the expected conversions.
pub fn submission_callback(submitted: &Submitted, conversion_type: &str) -> Result<Callback> {
    let task = Id::parse(&submitted.task_id).ok_or_else(|| {
        Error::ProviderRejected("MusicGPT answered a task id outside the id rule".into())
    })?;
    let fields = json!({
        "subtype": "submission",
        "task_id": task,
        "conversion_id_1": submitted.conversion_id_1,
        "conversion_id_2": submitted.conversion_id_2,
        "status": SUBMITTED,
        "conversion_type": conversion_type,
        "eta": submitted.eta,
    });
    match fields {
        serde_json::Value::Object(map) => Callback::from_fields(map),
        _ => Err(Error::BadCallback("submission is not an object".into())),
    }
}
