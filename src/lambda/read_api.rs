//! The read API on the webhook's HTTP front end: `GET /tasks/{task_id}` and `GET /tasks`.
//!
//! Its own credential, never the webhook token: a request API Gateway has authorized with IAM
//! (the SAM routes use `AWS_IAM`), or `Authorization: Bearer <token>` with one of
//! `READ_TOKENS` (local runs, function URLs), compared in constant time. No credential: 401;
//! a wrong one: 403; an unknown task: 404.

use lambda_http::http::{StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Value, json};
use tracing::{error, warn};

use crate::app::announce::BoxFuture;
use crate::app::ports::{Clock, Presigner, SystemClock, TaskIndex, TaskStore};
use crate::app::read::TaskReader;
use crate::domain::by_user::parse_time;
use crate::domain::ids::Id;
use crate::domain::listing::{DEFAULT_PAGE, MAX_PAGE, TaskCursor, TaskQuery};
use crate::domain::status::TaskStatus;
use crate::domain::token::WebhookTokens;

/// Which read route a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadRoute {
    /// `GET .../tasks/{task_id}` (the raw last segment).
    Show(String),
    /// `GET .../tasks`
    List,
}

/// Only GET (and HEAD) requests whose path ends in `/tasks` or `/tasks/<id>` (after any stage
/// or function-URL prefix); every other request is the webhook's, exactly as before.
pub fn read_route(method: &str, path: &str) -> Option<ReadRoute> {
    if !(method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD")) {
        return None;
    }
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        [.., "tasks"] => Some(ReadRoute::List),
        [.., "tasks", id] => Some(ReadRoute::Show((*id).to_owned())),
        _ => None,
    }
}

/// The read routes as the webhook front end holds them, without their types.
pub trait ReadRoutes: Send + Sync {
    fn serve<'a>(&'a self, request: &'a Request, route: ReadRoute)
    -> BoxFuture<'a, Response<Body>>;
}

impl<T: TaskStore + TaskIndex, S: Presigner> ReadRoutes for ReadApi<T, S> {
    fn serve<'a>(
        &'a self,
        request: &'a Request,
        route: ReadRoute,
    ) -> BoxFuture<'a, Response<Body>> {
        Box::pin(self.handle(request, route))
    }
}

pub struct ReadApi<T, S> {
    tokens: Option<WebhookTokens>,
    reader: TaskReader<T, S>,
}

impl<T: TaskStore + TaskIndex, S: Presigner> ReadApi<T, S> {
    pub fn new(tokens: Option<WebhookTokens>, reader: TaskReader<T, S>) -> ReadApi<T, S> {
        ReadApi { tokens, reader }
    }

    /// Never fails: every error is an answer.
    pub async fn handle(&self, request: &Request, route: ReadRoute) -> Response<Body> {
        if let Some(denied) = self.refusal(request) {
            return denied;
        }
        match route {
            ReadRoute::Show(raw) => {
                let Some(task) = Id::parse(&raw) else {
                    return not_found();
                };
                match self.reader.show(&task, SystemClock.now_secs()).await {
                    Ok(Some(answer)) => respond(StatusCode::OK, answer.json),
                    Ok(None) => not_found(),
                    Err(err) => unavailable(&err),
                }
            }
            ReadRoute::List => {
                let query = match list_query(&query_pairs(request)) {
                    Ok(query) => query,
                    Err(why) => return bad_request(&why),
                };
                match self.reader.list(&query).await {
                    Ok(page) => respond(StatusCode::OK, page),
                    Err(err) => unavailable(&err),
                }
            }
        }
    }

    /// The answer to a request without an accepted credential; `None` lets it through.
    fn refusal(&self, request: &Request) -> Option<Response<Body>> {
        if iam_authorized(request) {
            return None;
        }
        let Some(value) = request.headers().get(header::AUTHORIZATION) else {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "credentials required: Authorization: Bearer <read token>, or IAM",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return Some(response);
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.split_once(' ')
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            })
            .map(|(_, token)| token.trim())
            .unwrap_or_default();
        match &self.tokens {
            Some(tokens) if tokens.accepts(token) => None,
            _ => {
                warn!("read API request with a wrong credential");
                Some(error(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "the credential is not accepted",
                ))
            }
        }
    }
}

/// API Gateway (or a function URL with `AWS_IAM`) has authorized the caller by SigV4.
fn iam_authorized(request: &Request) -> bool {
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx
            .authorizer
            .as_ref()
            .is_some_and(|a| a.iam.as_ref().is_some()),
        _ => false,
    }
}

/// The query string's pairs, from the event's parameters or else the URI.
fn query_pairs(request: &Request) -> Vec<(String, String)> {
    let params = request.query_string_parameters_ref();
    if let Some(params) = params
        && !params.is_empty()
    {
        return params
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    }
    form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `status` (required), `since` (epoch seconds or an ISO date/time, default: all),
/// `limit` (1..=100, 25), `next` (the cursor of the page before).
pub fn list_query(pairs: &[(String, String)]) -> Result<TaskQuery, String> {
    let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim());
    let status = get("status")
        .filter(|s| !s.is_empty())
        .ok_or("status is required (COMPLETED, FAILED, ERROR, IN_PROGRESS, SUBMITTED, ...)")?;
    if status.len() > 32 || !status.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_') {
        return Err("status must be a status word such as COMPLETED".into());
    }
    let since = match get("since").filter(|s| !s.is_empty()) {
        None => 0,
        Some(text) => parse_time(text)
            .ok_or("since must be epoch seconds, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ")?,
    };
    let limit = match get("limit").filter(|s| !s.is_empty()) {
        None => DEFAULT_PAGE,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or(format!("limit must be 1 to {MAX_PAGE}"))?,
    };
    let after = match get("next").filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => Some(TaskCursor::decode(text).ok_or("next is not a cursor of this API")?),
    };
    Ok(TaskQuery {
        status: TaskStatus::parse(status),
        since,
        limit,
        after,
    })
}

fn not_found() -> Response<Body> {
    error(StatusCode::NOT_FOUND, "not_found", "no such task")
}

fn bad_request(why: &str) -> Response<Body> {
    error(StatusCode::BAD_REQUEST, "bad_request", why)
}

fn unavailable(err: &crate::error::Error) -> Response<Body> {
    error!(error = %err, "read API request failed");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "storage_unavailable",
        "storage failed; retry later",
    )
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    respond(
        status,
        json!({ "ok": false, "error": code, "message": message }),
    )
}

fn respond(status: StatusCode, body: Value) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_get_tasks_only() {
        assert_eq!(read_route("GET", "/tasks"), Some(ReadRoute::List));
        assert_eq!(
            read_route("GET", "/prod/tasks/t-1"),
            Some(ReadRoute::Show("t-1".into()))
        );
        assert_eq!(read_route("POST", "/tasks/t-1"), None);
        assert_eq!(read_route("GET", "/webhook/some-token-0123456789"), None);
        assert_eq!(read_route("GET", "/tasks/t-1/extra"), None);
    }

    #[test]
    fn list_queries_are_checked() {
        let pairs = |list: &[(&str, &str)]| {
            list.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<Vec<_>>()
        };
        let query =
            list_query(&pairs(&[("status", "completed"), ("since", "2026-01-02")])).expect("valid");
        assert_eq!(query.status, TaskStatus::Completed);
        assert_eq!(query.since, 1_767_312_000);
        assert_eq!(query.limit, DEFAULT_PAGE);
        for bad in [
            vec![],
            vec![("status", "x y")],
            vec![("status", "COMPLETED"), ("since", "yesterday")],
            vec![("status", "COMPLETED"), ("limit", "0")],
            vec![("status", "COMPLETED"), ("next", "zzz")],
        ] {
            assert!(list_query(&pairs(&bad)).is_err(), "{bad:?}");
        }
    }
}
