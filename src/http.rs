//! The lambda_http adapter: Request -> ingest -> Response. The only place that knows statuses.

use std::time::{SystemTime, UNIX_EPOCH};

use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::json;
use tracing::{error, warn};

use crate::copy::lambda_deadline;
use crate::error::Error;
use crate::ingest::{Delivery, Ingest, Outcome};

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

pub struct Webhook<A = NoFollowUp> {
    ingest: Ingest,
    after: A,
}

impl Webhook<NoFollowUp> {
    pub fn new(ingest: Ingest) -> Self {
        Webhook {
            ingest,
            after: NoFollowUp,
        }
    }
}

impl<A: AfterRecord> Webhook<A> {
    pub fn with_follow_up(ingest: Ingest, after: A) -> Self {
        Webhook { ingest, after }
    }

    /// Never fails: every error becomes a response, so no input can crash the function.
    pub async fn handle(&self, request: Request) -> Response<Body> {
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
        let deadline = request
            .lambda_context_ref()
            .and_then(|c| lambda_deadline(c.deadline));
        match self.ingest.handle(delivery, now_secs()).await {
            Ok((_, outcome)) => {
                self.after.after_record(&outcome, deadline).await;
                let mut body = json!({ "ok": true, "outcome": outcome.label() });
                if let Some(task) = outcome.task_id() {
                    body["task_id"] = json!(task);
                }
                if let Outcome::Recorded { files, .. } = &outcome {
                    body["files"] = json!(files);
                }
                respond(StatusCode::OK, body)
            }
            Err(err) => error_response(&err),
        }
    }
}

pub fn error_response(err: &Error) -> Response<Body> {
    let (status, code) = match err {
        Error::UnknownToken => (StatusCode::NOT_FOUND, "not_found"),
        Error::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        Error::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        Error::BadCallback(_) => (StatusCode::BAD_REQUEST, "not_a_callback"),
        Error::Storage(_) => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    let message = match err {
        // Internals stay in the log; the sender only needs to know to retry.
        Error::Storage(_) => "storage failed; retry later".to_owned(),
        Error::UnknownToken => "not found".to_owned(),
        Error::BadCallback(_) | Error::TooLarge(_) | Error::MethodNotAllowed(_) => err.to_string(),
        _ => "internal error".to_owned(),
    };
    if status.is_server_error() {
        error!(error = %err, "callback not recorded");
    } else if status != StatusCode::NOT_FOUND {
        warn!(status = status.as_u16(), error = %err, "callback refused");
    }
    let mut response = respond(
        status,
        json!({ "ok": false, "error": code, "message": message }),
    );
    if status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    }
    response
}

fn respond(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
