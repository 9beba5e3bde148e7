//! Submitting a conversion with this deployment's webhook URL, and registering the task so the
//! reconciler can notice if its callbacks never come.

use crate::app::ports::{MusicGpt, TaskStore};
use crate::app::record::{Outcome, Recorder};
use crate::domain::answer::submission_callback;
use crate::domain::api::{MusicAiRequest, Submitted};
use crate::domain::conversion::{ConversionType, Endpoint};
use crate::domain::ids::Id;
use crate::domain::requests::SubmitRequest;
use crate::error::{Error, Result};

/// A submission and what became of its registration.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub endpoint: &'static Endpoint,
    pub submitted: Submitted,
    /// As the docs spell it: what the task item's `conversion_type` says and byId is asked with.
    pub conversion_type: ConversionType,
    /// The conversions the answer says the task will make.
    pub conversions: Vec<Id>,
    pub registered: Registered,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// Recorded (or, for an answer without a task id, parked on its conversion until a
    /// callback names the task).
    Recorded(Outcome),
    /// MusicGPT accepted the task but its answer names nothing that could be registered.
    Skipped(String),
}

impl Registered {
    pub fn label(&self) -> String {
        match self {
            Registered::Recorded(outcome) => outcome.label().to_owned(),
            Registered::Skipped(why) => format!("not registered: {why}"),
        }
    }
}

/// Checks the request, submits it, and registers the task as SUBMITTED with its conversion
/// type and expected conversions, so callbacks that arrive before their song find the task at
/// once and the reconciler knows what to ask byId. Nothing is sent when the checks fail.
pub async fn submit<M: MusicGpt, T: TaskStore>(
    api: &M,
    recorder: &Recorder<T>,
    request: &SubmitRequest,
    now: u64,
) -> Result<Registration> {
    request.validate()?;
    let endpoint = request.endpoint();
    let submitted = api.submit(request).await?;
    let conversion_type = endpoint.conversion_type;
    let accepted = |why: String| {
        let task = submitted.task_id.as_deref().unwrap_or("(no task id)");
        Error::ProviderRejected(format!(
            "MusicGPT accepted task {task}, but it cannot be registered: {why}"
        ))
    };
    let conversions = submitted.conversion_ids(endpoint).map_err(accepted)?;
    let registered = match submission_callback(&submitted, conversion_type.as_str(), &conversions) {
        Ok(callback) => Registered::Recorded(
            recorder
                .record(&callback, now)
                .await
                .map_err(|err| registration_failed(err, &submitted))?,
        ),
        Err(Error::ProviderRejected(why)) if submitted.task_id.is_none() => {
            Registered::Skipped(why)
        }
        Err(err) => return Err(accepted(err.to_string())),
    };
    Ok(Registration {
        endpoint,
        submitted,
        conversion_type,
        conversions,
        registered,
    })
}

/// Music AI (V2), the same way.
pub async fn submit_music_ai<M: MusicGpt, T: TaskStore>(
    api: &M,
    recorder: &Recorder<T>,
    request: &MusicAiRequest,
    now: u64,
) -> Result<Registration> {
    submit(api, recorder, &SubmitRequest::from(request.clone()), now).await
}

/// The table failed after MusicGPT accepted the task: say which task, keep the kind of error.
fn registration_failed(err: Error, submitted: &Submitted) -> Error {
    let task = submitted.task_id.as_deref().unwrap_or("(no task id)");
    match err {
        Error::Storage { message, source } => Error::Storage {
            message: format!("MusicGPT accepted task {task}, but registering it failed: {message}"),
            source,
        },
        other => other,
    }
}
