//! The one place errors become HTTP answers: a status and a JSON body naming the problem,
//! never the internals (those go to the log).

use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Response};
use serde_json::json;
use tracing::{error, warn};

use crate::app::record::Outcome;
use crate::error::Error;

/// 200 with what happened to the callback.
pub fn accepted(outcome: &Outcome) -> Response<Body> {
    let mut body = json!({ "ok": true, "outcome": outcome.label() });
    if let Some(task) = outcome.task_id() {
        body["task_id"] = json!(task);
    }
    if let Outcome::Recorded { files, .. } = outcome {
        body["files"] = json!(files);
    }
    respond(StatusCode::OK, body)
}

/// Why a request was refused, for the `RefusedRequests` metric.
pub fn refusal_reason(err: &Error) -> &'static str {
    match err {
        Error::UnknownToken => "token",
        Error::MethodNotAllowed(_) => "method",
        Error::TooLarge(_) => "size",
        Error::BadCallback(_) => "body",
        Error::StorageRejected(_) => "not_storable",
        Error::Storage { .. } => "storage",
        _ => "internal",
    }
}

pub fn error_response(err: &Error) -> Response<Body> {
    let (status, code) = match err {
        Error::UnknownToken => (StatusCode::NOT_FOUND, "not_found"),
        Error::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        Error::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        Error::BadCallback(_) => (StatusCode::BAD_REQUEST, "not_a_callback"),
        Error::StorageRejected(_) => (StatusCode::UNPROCESSABLE_ENTITY, "not_storable"),
        Error::Storage { .. } => (StatusCode::SERVICE_UNAVAILABLE, "storage_unavailable"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    let message = match err {
        // Internals stay in the log; the sender only needs to know to retry.
        Error::Storage { .. } => "storage failed; retry later".to_owned(),
        Error::UnknownToken => "not found".to_owned(),
        Error::BadCallback(_)
        | Error::TooLarge(_)
        | Error::MethodNotAllowed(_)
        | Error::StorageRejected(_) => err.to_string(),
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
