//! MusicGPT's API in its own terms: what is sent (submissions), what comes back (preliminary
//! answers, byId lookups), and how its conversion types and file URLs are read.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// MusicGPT's API, unless `MUSICGPT_API_URL` says otherwise.
pub const DEFAULT_API_URL: &str = "https://api.musicgpt.com";

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
