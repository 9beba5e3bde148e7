//! Submitting a conversion with this deployment's webhook URL, and registering the task so the
//! reconciler can notice if its callbacks never come.

use crate::app::ports::{MusicGpt, TaskStore};
use crate::app::record::{Outcome, Recorder};
use crate::domain::answer::submission_callback;
use crate::domain::api::{MusicAiRequest, Submitted};
use crate::error::Result;

#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub submitted: Submitted,
    pub outcome: Outcome,
}

/// Submits a Music AI conversion and registers its task as SUBMITTED with the two songs it
/// will make, so lyrics that arrive before their song find the task at once.
pub async fn submit_music_ai<M: MusicGpt, T: TaskStore>(
    api: &M,
    recorder: &Recorder<T>,
    request: &MusicAiRequest,
    now: u64,
) -> Result<Registration> {
    let submitted = api.submit_music_ai(request).await?;
    let callback = submission_callback(&submitted, "MUSIC_AI")?;
    let outcome = recorder.record(&callback, now).await?;
    Ok(Registration { submitted, outcome })
}
