//! The HTTP front end (lambda_http): a delivery is admitted (token, method, size), parsed and
//! recorded, then answered. Checks run in an order that tells a caller without the token
//! nothing about the endpoint.

use std::sync::Arc;
use std::time::SystemTime;

use lambda_http::http::header;
use lambda_http::{Body, Request, RequestExt, Response};
use tracing::{Instrument, Span, field, info, info_span, warn};

use crate::app::measure;
use crate::app::ports::{Clock, SystemClock, TaskStore};
use crate::app::record::{Outcome, Recorder};
use crate::domain::callback::Callback;
use crate::domain::ids::Id;
use crate::domain::token::WebhookTokens;
use crate::error::{Error, Result};
use crate::lambda::budget::lambda_deadline;
use crate::lambda::read_api::{ReadRoutes, read_route};
use crate::lambda::response::{accepted, error_response, refusal_reason};

/// Larger bodies are refused before parsing (contract: 413 over 1 MiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// A callback must fit one DynamoDB item (400 KB) even when its fields are copied onto the
/// conversion next to another callback's; real callbacks are a few KB.
pub const MAX_STORED_BYTES: usize = 190 * 1024;

/// One HTTP delivery, reduced to what admission needs.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub method: &'a str,
    /// The request path; its last segment is the token.
    pub path: &'a str,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

/// The webhook's admission: a token check in front of the recorder.
#[derive(Clone)]
pub struct Ingest<T> {
    tokens: WebhookTokens,
    recorder: Recorder<T>,
}

impl<T: TaskStore> Ingest<T> {
    pub fn new(tokens: WebhookTokens, recorder: Recorder<T>) -> Ingest<T> {
        Ingest { tokens, recorder }
    }

    pub fn recorder(&self) -> &Recorder<T> {
        &self.recorder
    }

    /// Token, method, size, then the body. `now` is seconds since the epoch. A body that passes
    /// the token and method checks but cannot be recorded is quarantined before it is refused.
    pub async fn handle(&self, delivery: Delivery<'_>, now: u64) -> Result<(Callback, Outcome)> {
        let token = delivery
            .path
            .rsplit('/')
            .find(|segment| !segment.is_empty())
            .unwrap_or_default();
        if !self.tokens.accepts(token) {
            return Err(Error::UnknownToken);
        }
        if !delivery.method.eq_ignore_ascii_case("POST") {
            return Err(Error::MethodNotAllowed(delivery.method.to_owned()));
        }
        match self.admit(delivery, now).await {
            Err(err @ (Error::BadCallback(_) | Error::TooLarge(_) | Error::StorageRejected(_))) => {
                let reason = err.to_string();
                self.recorder
                    .quarantine(delivery.body, delivery.content_type, &reason, now)
                    .await?;
                measure::quarantined();
                warn!(reason = %reason, bytes = delivery.body.len(), "body quarantined");
                Err(err)
            }
            other => other,
        }
    }

    async fn admit(&self, delivery: Delivery<'_>, now: u64) -> Result<(Callback, Outcome)> {
        if delivery.body.len() > MAX_BODY_BYTES {
            return Err(Error::TooLarge(format!(
                "body is {} bytes, over the {MAX_BODY_BYTES}-byte limit",
                delivery.body.len()
            )));
        }
        let callback = self.recorder.parse(delivery.body, delivery.content_type)?;
        if let Some(task) = &callback.task_id {
            Span::current().record("task_id", task.as_str());
        }
        if callback.canonical_json.len() > MAX_STORED_BYTES {
            return Err(Error::TooLarge(format!(
                "callback is {} bytes, over the {MAX_STORED_BYTES} bytes one table item can hold",
                callback.canonical_json.len()
            )));
        }
        let outcome = self.recorder.record(&callback, now).await?;
        info!(
            outcome = outcome.label(),
            kind = callback.kind.label(),
            task_id = outcome.task_id().map(Id::as_str),
            conversion_id = callback.conversion_id.as_ref().map(Id::as_str),
            files = callback.sources.len(),
            sha256 = %callback.sha256,
            "callback handled"
        );
        Ok((callback, outcome))
    }
}

/// What the webhook does with a recorded callback before answering (inline copies).
/// `deadline` is the invocation's, when Lambda gave one.
pub trait AfterRecord: Send + Sync {
    fn after_record(
        &self,
        outcome: &Outcome,
        deadline: Option<SystemTime>,
    ) -> impl std::future::Future<Output = ()> + Send;
}

/// Nothing: the stream-driven copier takes it from here.
pub struct NoFollowUp;

impl AfterRecord for NoFollowUp {
    async fn after_record(&self, _outcome: &Outcome, _deadline: Option<SystemTime>) {}
}

pub struct Webhook<T, A = NoFollowUp> {
    ingest: Ingest<T>,
    after: A,
    /// `GET /tasks/{task_id}`, `GET /tasks`, when the read API is on.
    read: Option<Arc<dyn ReadRoutes>>,
}

impl<T: TaskStore> Webhook<T, NoFollowUp> {
    pub fn new(ingest: Ingest<T>) -> Self {
        Webhook {
            ingest,
            after: NoFollowUp,
            read: None,
        }
    }
}

impl<T: TaskStore, A: AfterRecord> Webhook<T, A> {
    pub fn with_follow_up(ingest: Ingest<T>, after: A) -> Self {
        Webhook {
            ingest,
            after,
            read: None,
        }
    }

    /// Serves the read routes too (GET only; every other request is the webhook's).
    pub fn with_read_api(mut self, read: Arc<dyn ReadRoutes>) -> Self {
        self.read = Some(read);
        self
    }

    /// Never fails: every error becomes a response, so no input can crash the function.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        if let Some(read) = &self.read
            && let Some(route) = read_route(request.method().as_str(), request.uri().path())
        {
            return read.serve(&request, route).await;
        }
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let delivery = Delivery {
            method: request.method().as_str(),
            path: request.uri().path(),
            content_type,
            body: request.body().as_ref(),
        };
        let context = request.lambda_context_ref();
        let deadline = context.and_then(|c| lambda_deadline(c.deadline));
        // Every line of this callback's work carries its trace and, once parsed, its task.
        let span = info_span!(
            "callback",
            trace_id = context.and_then(|c| c.xray_trace_id.as_deref()),
            task_id = field::Empty,
        );
        async {
            match self.ingest.handle(delivery, SystemClock.now_secs()).await {
                Ok((callback, outcome)) => {
                    measure::callback(callback.kind.label(), outcome.label());
                    self.after.after_record(&outcome, deadline).await;
                    accepted(&outcome)
                }
                Err(err) => {
                    measure::refused(refusal_reason(&err));
                    error_response(&err)
                }
            }
        }
        .instrument(span)
        .await
    }
}
