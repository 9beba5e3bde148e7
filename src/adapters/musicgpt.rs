//! MusicGPT's public API: "Get Conversion by ID" (verification, reconciliation) and submitting
//! a Music AI conversion. The API key goes in the `Authorization` header and nowhere else.

use std::time::Duration;

use serde_json::Value;

use crate::app::ports::MusicGpt;
use crate::domain::api::{Lookup, MusicAiRequest, Submitted};
use crate::domain::ids::Id;
use crate::error::{Error, Result};

#[derive(Clone)]
pub struct MusicGptApi {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
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
        })
    }
}

impl MusicGpt for MusicGptApi {
    /// `GET /api/public/v1/byId?conversionType=..&task_id=..`.
    async fn by_task(&self, conversion_type: &str, task: &Id) -> Result<Lookup> {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("conversionType", conversion_type)
            .append_pair("task_id", task.as_str())
            .finish();
        let url = format!("{}/api/public/v1/byId?{query}", self.base_url);
        let response = self
            .http
            .get(url)
            .header("Authorization", &self.api_key)
            .send()
            .await
            .map_err(|e| Error::provider_from("byId", e.without_url()))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(Lookup::NotFound);
        }
        let body: Value = read_json(response, "byId").await?;
        match (
            body.get("success").and_then(Value::as_bool),
            body.get("conversion"),
        ) {
            (Some(false), _) | (_, None | Some(Value::Null)) => Ok(Lookup::NotFound),
            (_, Some(conversion)) => Ok(Lookup::Found(conversion.clone())),
        }
    }

    /// `POST /api/public/v1/MusicAI`.
    async fn submit_music_ai(&self, request: &MusicAiRequest) -> Result<Submitted> {
        let url = format!("{}/api/public/v1/MusicAI", self.base_url);
        let body = serde_json::to_vec(request)
            .map_err(|e| Error::Config(format!("encoding the submission: {e}")))?;
        let response = self
            .http
            .post(url)
            .header("Authorization", &self.api_key)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| Error::provider_from("MusicAI", e.without_url()))?;
        let body: Value = read_json(response, "MusicAI").await?;
        let submitted: Submitted = serde_json::from_value(body).map_err(|e| {
            Error::ProviderRejected(format!("MusicAI answered an unexpected body: {e}"))
        })?;
        if !submitted.success {
            let why = submitted
                .message
                .clone()
                .unwrap_or_else(|| "no reason given".into());
            return Err(Error::ProviderRejected(format!(
                "MusicAI refused the submission: {why}"
            )));
        }
        Ok(submitted)
    }
}

/// 429 and 5xx pass (retry later); other non-2xx answers will not change.
async fn read_json(response: reqwest::Response, call: &str) -> Result<Value> {
    let status = response.status();
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(Error::provider(format!("{call} answered {status}")));
    }
    if !status.is_success() {
        return Err(Error::ProviderRejected(format!("{call} answered {status}")));
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| Error::provider_from(&format!("{call} body"), e.without_url()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::ProviderRejected(format!("{call} answered invalid JSON: {e}")))
}
