//! MusicGPT's public API: "Get Conversion by ID" (verification, reconciliation), "Get
//! conversions by user", and submitting any conversion (JSON, form-encoded, or multipart with
//! local files). The API key goes in the `Authorization` header and nowhere else: never in a
//! log, an error or a URL; MusicGPT's own messages are passed on with the key and the webhook
//! URL (which holds the token) blanked out.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::app::pace::Pacer;
use crate::app::ports::MusicGpt;
use crate::domain::api::{Lookup, Submitted, conversion_type_enum};
use crate::domain::by_user::{ByUserPage, ByUserQuery, PageKey};
use crate::domain::conversion::{Encoding, LimitCategory, RateLimit};
use crate::domain::ids::Id;
use crate::domain::requests::{SubmitRequest, Wire};
use crate::error::{Error, Result};

/// A submission that uploads files may take this long (the client's own limit is 30 s).
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);
/// The most of MusicGPT's error text that is passed on.
const MAX_MESSAGE_CHARS: usize = 300;

#[derive(Clone)]
pub struct MusicGptApi {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
    rate: RateLimit,
    /// Spaces lookups (byId, byUser) to `rate`; off unless asked for.
    pacer: Option<Pacer>,
}

impl std::fmt::Debug for MusicGptApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MusicGptApi({}, key redacted)", self.base_url)
    }
}

impl MusicGptApi {
    pub fn new(base_url: &str, api_key: &str) -> Result<MusicGptApi> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(MusicGptApi {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
            rate: RateLimit::default(),
            pacer: None,
        })
    }

    /// Keeps byId and byUser calls to `rate` (the plan's, or `MUSICGPT_RATE_PER_MINUTE`), and
    /// names the plan when a 429 says a limit was hit. Clones share the pace.
    pub fn with_rate_limit(mut self, rate: RateLimit) -> MusicGptApi {
        self.pacer = Some(Pacer::for_lookups(&rate));
        self.rate = rate;
        self
    }

    pub fn rate_limit(&self) -> RateLimit {
        self.rate
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/public{path}", self.base_url)
    }

    async fn pace(&self) {
        if let Some(pacer) = &self.pacer {
            pacer.ready().await;
        }
    }

    /// Reads a JSON answer; anything but a 2xx becomes the error its status means, carrying
    /// MusicGPT's message. 429 and 5xx pass (retry later); other answers will not change.
    async fn read_answer(
        &self,
        response: reqwest::Response,
        call: &str,
        category: LimitCategory,
        secrets: &[&str],
    ) -> Result<Value> {
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| {
            Error::provider_from(&format!("{call}: reading the answer"), e.without_url())
        })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                Error::ProviderRejected(format!("{call} answered invalid JSON: {e}"))
            });
        }
        let mut secrets: Vec<&str> = secrets.to_vec();
        secrets.push(&self.api_key);
        let said = provider_message(&bytes)
            .map(|m| format!(": {}", scrub(&m, &secrets)))
            .unwrap_or_default();
        let code = status.as_u16();
        Err(match code {
            429 => Error::provider(format!(
                "{call} answered 429 Too Many Requests, {}{said}",
                self.rate.explain_429(category)
            )),
            500..=599 => Error::provider(format!("{call} answered {status}{said}")),
            401 | 403 => Error::ProviderRejected(format!(
                "{call} answered {status}{said} (is MUSICGPT_API_KEY right?)"
            )),
            _ => Error::ProviderRejected(format!("{call} answered {status}{said}")),
        })
    }

    async fn send_submission(&self, wire: &Wire, call: &str) -> Result<reqwest::Response> {
        let endpoint = wire.endpoint;
        let builder = self
            .http
            .post(self.url(endpoint.path))
            .header(AUTHORIZATION, &self.api_key);
        let builder = match wire.encoding() {
            Encoding::Json => {
                let body = serde_json::to_vec(&Value::Object(wire.json())).map_err(|e| {
                    Error::InvalidRequest(format!("{}: encoding: {e}", endpoint.command))
                })?;
                builder.header(CONTENT_TYPE, "application/json").body(body)
            }
            Encoding::Form => builder
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(wire.form_body()),
            Encoding::Multipart => {
                let mut form = Form::new();
                for (name, value) in wire.text_fields() {
                    form = form.text(name, value);
                }
                for file in &wire.files {
                    let unreadable = |why: String| {
                        Error::InvalidRequest(format!(
                            "{}: {} {}: {why}",
                            endpoint.command,
                            file.field,
                            file.path.display()
                        ))
                    };
                    let meta =
                        std::fs::metadata(&file.path).map_err(|e| unreadable(e.to_string()))?;
                    if !meta.is_file() {
                        return Err(unreadable("not a file".into()));
                    }
                    if meta.len() == 0 {
                        return Err(unreadable("the file is empty".into()));
                    }
                    let part = Part::file(&file.path)
                        .await
                        .map_err(|e| unreadable(e.to_string()))?;
                    form = form.part(file.field, part);
                }
                let builder = builder.multipart(form);
                if wire.files.is_empty() {
                    builder
                } else {
                    builder.timeout(UPLOAD_TIMEOUT)
                }
            }
        };
        builder.send().await.map_err(|e| {
            Error::provider_from(
                &format!("{call} (MusicGPT may or may not have accepted it)"),
                e.without_url(),
            )
        })
    }
}

impl MusicGpt for MusicGptApi {
    /// `GET /api/public/v1/byId?conversionType=..&task_id=..`, the type as the docs spell it.
    async fn by_task(&self, conversion_type: &str, task: &Id) -> Result<Lookup> {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("conversionType", &conversion_type_enum(conversion_type))
            .append_pair("task_id", task.as_str())
            .finish();
        self.pace().await;
        let response = self
            .http
            .get(format!("{}?{query}", self.url("/v1/byId")))
            .header(AUTHORIZATION, &self.api_key)
            .send()
            .await
            .map_err(|e| Error::provider_from("byId", e.without_url()))?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(Lookup::NotFound);
        }
        let body = self
            .read_answer(response, "byId", LimitCategory::Lookups, &[])
            .await?;
        match (
            body.get("success").and_then(Value::as_bool),
            body.get("conversion"),
        ) {
            (Some(false), _) | (_, None | Some(Value::Null)) => Ok(Lookup::NotFound),
            (_, Some(conversion)) => Ok(Lookup::Found(conversion.clone())),
        }
    }

    /// `POST /api/public/<endpoint>` as JSON, a form, or multipart with the request's files.
    async fn submit(&self, request: &SubmitRequest) -> Result<Submitted> {
        let wire = request.wire()?;
        let call = format!("POST {}", wire.endpoint.path);
        let response = self.send_submission(&wire, &call).await?;
        let webhook = request.webhook_url();
        let token = webhook
            .rsplit('/')
            .next()
            .filter(|t| t.len() >= 16)
            .unwrap_or_default();
        let body = self
            .read_answer(response, &call, wire.endpoint.category, &[webhook, token])
            .await?;
        let submitted = Submitted::from_answer(body).map_err(|e| {
            Error::ProviderRejected(format!("{call} answered an unexpected body: {e}"))
        })?;
        if !submitted.success {
            let why = submitted.message.as_deref().unwrap_or("no reason given");
            return Err(Error::ProviderRejected(format!(
                "{call} refused the submission: {}",
                scrub(why, &[webhook, token, &self.api_key])
            )));
        }
        Ok(submitted)
    }

    /// `GET /api/public/v1/byUser?startDate=..&endDate=..&...`, one page.
    async fn by_user(&self, query: &ByUserQuery, page: Option<&PageKey>) -> Result<ByUserPage> {
        query.validate()?;
        let params = {
            let mut params = form_urlencoded::Serializer::new(String::new());
            for (name, value) in query.params(page) {
                params.append_pair(name, &value);
            }
            params.finish()
        };
        self.pace().await;
        let response = self
            .http
            .get(format!("{}?{params}", self.url("/v1/byUser")))
            .header(AUTHORIZATION, &self.api_key)
            .send()
            .await
            .map_err(|e| Error::provider_from("byUser", e.without_url()))?;
        let body = self
            .read_answer(response, "byUser", LimitCategory::Lookups, &[])
            .await?;
        ByUserPage::from_answer(&body).map_err(Error::ProviderRejected)
    }
}

/// MusicGPT's own words from an error answer: `message`, `error`, `detail` (nested or not),
/// else the text itself; cut to a readable length.
fn provider_message(bytes: &[u8]) -> Option<String> {
    let text = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => [
            "message",
            "error",
            "detail",
            "error_message",
            "msg",
            "errors",
        ]
        .iter()
        .find_map(|key| match map.get(*key)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Value::Object(inner) => inner
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| Some(Value::Object(inner.clone()).to_string())),
            Value::Array(items) if !items.is_empty() => {
                Some(Value::Array(items.clone()).to_string())
            }
            _ => None,
        })?,
        Ok(Value::String(s)) => s,
        Ok(_) => return None,
        Err(_) => String::from_utf8_lossy(bytes).trim().to_owned(),
    };
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return None;
    }
    let mut cut: String = text.chars().take(MAX_MESSAGE_CHARS).collect();
    if cut.len() < text.len() {
        cut.push_str("...");
    }
    Some(cut)
}

/// `text` with every secret (longest first) blanked out.
fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut secrets: Vec<&str> = secrets.iter().copied().filter(|s| s.len() >= 8).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut text = text.to_owned();
    for secret in secrets {
        text = text.replace(secret, "<redacted>");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_found_and_secrets_blanked() {
        assert_eq!(
            provider_message(br#"{"success":false,"message":"pitch out of range"}"#).as_deref(),
            Some("pitch out of range")
        );
        assert_eq!(
            provider_message(br#"{"error":{"message":"bad voice"}}"#).as_deref(),
            Some("bad voice")
        );
        assert_eq!(
            provider_message(b"  gateway\n  timeout ").as_deref(),
            Some("gateway timeout")
        );
        assert_eq!(provider_message(b"{}"), None);
        let long = "x".repeat(400);
        assert_eq!(
            provider_message(long.as_bytes()).map(|m| m.len()),
            Some(303)
        );
        assert_eq!(
            scrub(
                "bad webhook https://h/webhook/tok-0123456789abcdef with key sk-secret-key",
                &[
                    "https://h/webhook/tok-0123456789abcdef",
                    "tok-0123456789abcdef",
                    "sk-secret-key"
                ]
            ),
            "bad webhook <redacted> with key <redacted>"
        );
    }
}
