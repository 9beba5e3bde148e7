//! MusicGPT's public API: "Get Conversion by ID" (verification, reconciliation) and submitting
//! a Music AI conversion. The API key goes in the `Authorization` header and nowhere else.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::ids::Id;

pub const DEFAULT_API_URL: &str = "https://api.musicgpt.com";

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

/// What byId says of a task.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// The `conversion` object of the answer.
    Found(Value),
    /// MusicGPT does not know the task (404, or `success: false`).
    NotFound,
}

/// The body of `POST /api/public/v1/MusicAI`; unset fields are not sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MusicAiRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub music_style: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lyrics: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub make_instrumental: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vocal_only: Option<bool>,
    pub webhook_url: String,
}

/// The preliminary response: the task and the two songs it will make.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Submitted {
    pub success: bool,
    pub task_id: String,
    #[serde(default)]
    pub conversion_id_1: Option<String>,
    #[serde(default)]
    pub conversion_id_2: Option<String>,
    #[serde(default)]
    pub eta: Option<f64>,
    #[serde(default)]
    pub message: Option<String>,
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

    /// `GET /api/public/v1/byId?conversionType=..&task_id=..`.
    pub async fn by_task(&self, conversion_type: &str, task: &Id) -> Result<Lookup> {
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
            .map_err(|e| Error::Provider(format!("byId: {}", without_url(&e))))?;
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
    pub async fn submit_music_ai(&self, request: &MusicAiRequest) -> Result<Submitted> {
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
            .map_err(|e| Error::Provider(format!("MusicAI: {}", without_url(&e))))?;
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
        return Err(Error::Provider(format!("{call} answered {status}")));
    }
    if !status.is_success() {
        return Err(Error::ProviderRejected(format!("{call} answered {status}")));
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| Error::Provider(format!("{call} body: {}", without_url(&e))))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::ProviderRejected(format!("{call} answered invalid JSON: {e}")))
}

/// reqwest errors print the URL; ours carry task ids only, but keep logs uniform and short.
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), "<url>");
    }
    text
}

/// MusicGPT reports conversion types as display labels in callbacks ("Music AI") and as an
/// enum in its API (MUSIC_AI).
pub fn conversion_type_enum(label: &str) -> String {
    label
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Every URL the answer mentions, JSON-in-strings included, compared without the query.
pub fn reported_urls(conversion: &Value) -> Vec<String> {
    let mut urls = Vec::new();
    collect_urls(conversion, &mut urls);
    urls.sort();
    urls.dedup();
    urls
}

fn collect_urls(value: &Value, urls: &mut Vec<String>) {
    match value {
        Value::String(s) if s.starts_with("http://") || s.starts_with("https://") => {
            urls.push(url_identity(s))
        }
        Value::String(s) if s.trim_start().starts_with(['{', '[']) => {
            if let Ok(inner) = serde_json::from_str::<Value>(s) {
                collect_urls(&inner, urls);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_urls(v, urls)),
        Value::Object(map) => map.values().for_each(|v| collect_urls(v, urls)),
        _ => {}
    }
}

/// A URL without query or fragment: signed URLs differ only there.
pub fn url_identity(url: &str) -> String {
    url.split(['?', '#']).next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_become_the_api_enum() {
        assert_eq!(conversion_type_enum("Music AI"), "MUSIC_AI");
        assert_eq!(conversion_type_enum("MUSIC_AI"), "MUSIC_AI");
        assert_eq!(conversion_type_enum("Stems Separation"), "STEMS_SEPARATION");
    }

    #[test]
    fn urls_are_found_anywhere_in_the_answer() {
        let answer = serde_json::json!({
            "conversion_path_1": "https://lalals.s3.amazonaws.com/a.mp3?X-Amz-Signature=1",
            "album_cover_path": "https://musicgpt.s3.amazonaws.com/c.png",
            "audio_url": "{\"vocals\":\"https://lalals.s3.amazonaws.com/v.mp3\"}",
            "title_1": "not a url"
        });
        assert_eq!(
            reported_urls(&answer),
            vec![
                "https://lalals.s3.amazonaws.com/a.mp3",
                "https://lalals.s3.amazonaws.com/v.mp3",
                "https://musicgpt.s3.amazonaws.com/c.png"
            ]
        );
    }
}
