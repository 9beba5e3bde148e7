//! MusicGPT's API in its own terms: what is sent (submissions), what comes back (preliminary
//! answers, byId lookups), and how its conversion types and file URLs are read.

use serde_json::Value;

use crate::domain::conversion::{ConversionType, Endpoint};
use crate::domain::ids::Id;

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

/// Music AI's request; it lives with the other endpoints' requests.
pub use crate::domain::requests::MusicAiRequest;

/// A submission's preliminary answer: the task, the conversions it will make, an estimate.
/// Which fields come depends on the endpoint (api.md): two songs (`conversion_id_1/_2`), one
/// conversion (`conversion_id`), no conversion (audio to MIDI), or no task (the cutter and the
/// speed changer answer only a conversion).
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub success: bool,
    pub task_id: Option<String>,
    pub conversion_id: Option<String>,
    pub conversion_id_1: Option<String>,
    pub conversion_id_2: Option<String>,
    /// Seconds; -1 when MusicGPT does not know.
    pub eta: Option<f64>,
    pub credit_estimate: Option<f64>,
    pub message: Option<String>,
    /// The whole answer, as it came.
    pub answer: Value,
}

impl Submitted {
    /// Reads an answer leniently (ids and numbers may come as strings or numbers). A missing
    /// `success` counts as true: the answer was a 2xx.
    pub fn from_answer(answer: Value) -> Result<Submitted, String> {
        let Some(map) = answer.as_object() else {
            return Err("the answer is not a JSON object".into());
        };
        let text = |key: &str| match map.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let number = |key: &str| {
            match map.get(key) {
                Some(Value::Number(n)) => n.as_f64(),
                Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
                _ => None,
            }
            .filter(|n| n.is_finite())
        };
        let success = match map.get("success") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => !s.trim().eq_ignore_ascii_case("false"),
            _ => true,
        };
        Ok(Submitted {
            success,
            task_id: text("task_id"),
            conversion_id: text("conversion_id"),
            conversion_id_1: text("conversion_id_1"),
            conversion_id_2: text("conversion_id_2"),
            eta: number("eta"),
            credit_estimate: number("credit_estimate"),
            message: text("message").or_else(|| text("error")),
            answer,
        })
    }

    /// The task, if the answer names one; an id outside the id rule is refused.
    pub fn task(&self) -> Result<Option<Id>, String> {
        self.task_id
            .as_deref()
            .map(|t| {
                Id::parse(t).ok_or_else(|| {
                    "task_id: MusicGPT answered an id outside the id rule".to_owned()
                })
            })
            .transpose()
    }

    /// The conversions the task will make: the endpoint's own answer fields first, then any
    /// other conversion id the answer carries. An id outside the id rule is refused.
    pub fn conversion_ids(&self, endpoint: &Endpoint) -> Result<Vec<Id>, String> {
        let mut ids = Vec::new();
        let named = endpoint.conversion_id_fields.iter().copied().chain([
            "conversion_id",
            "conversion_id_1",
            "conversion_id_2",
        ]);
        for field in named {
            let value = match field {
                "conversion_id" => &self.conversion_id,
                "conversion_id_1" => &self.conversion_id_1,
                "conversion_id_2" => &self.conversion_id_2,
                _ => &None,
            };
            let Some(text) = value else { continue };
            let id = Id::parse(text)
                .ok_or_else(|| format!("{field}: MusicGPT answered an id outside the id rule"))?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(ids)
    }
}

/// MusicGPT reports conversion types as display labels in callbacks ("Music AI") and as an
/// enum in its API (MUSIC_AI); clients spell some differently (VOICE_CHANGER). A name in the
/// table (`domain::conversion::CONVERSION_TYPES`) becomes the docs' spelling; any other label
/// is upper-cased with `_` for everything but letters and digits.
pub fn conversion_type_enum(label: &str) -> String {
    if let Some(known) = ConversionType::parse(label) {
        return known.as_str().to_owned();
    }
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
    use serde_json::json;

    #[test]
    fn labels_become_the_api_enum() {
        assert_eq!(conversion_type_enum("Music AI"), "MUSIC_AI");
        assert_eq!(conversion_type_enum("MUSIC_AI"), "MUSIC_AI");
        assert_eq!(conversion_type_enum("Stems Separation"), "STEMS_SEPARATION");
        assert_eq!(conversion_type_enum("Voice Changer"), "VOICE_CONVERSION");
        assert_eq!(conversion_type_enum("FILE_CONVERSION"), "FILE_CONVERT");
        assert_eq!(conversion_type_enum("denoise"), "DENOISING");
        // Labels in no row keep the old rule.
        assert_eq!(
            conversion_type_enum(" Brand New / Thing "),
            "BRAND_NEW___THING"
        );
    }

    #[test]
    fn answers_of_every_shape_are_read() {
        let endpoint = crate::domain::conversion::EndpointKind::MusicAi.endpoint();
        let music = Submitted::from_answer(json!({"success": true, "task_id": "t1",
            "conversion_id_1": "c1", "conversion_id_2": "c2", "eta": "120"}))
        .expect("object");
        assert_eq!(music.eta, Some(120.0));
        assert_eq!(music.conversion_ids(endpoint).map(|v| v.len()), Ok(2));
        let cutter = Submitted::from_answer(json!({"conversion_id": "c9",
            "conversion_path": "https://lalals.s3.amazonaws.com/c9.mp3", "credit_estimate": 0.5}))
        .expect("object");
        assert!(cutter.success && cutter.task_id.is_none());
        assert_eq!(cutter.credit_estimate, Some(0.5));
        let midi =
            Submitted::from_answer(json!({"task_id": 42, "message": "queued"})).expect("object");
        assert_eq!(
            midi.task().ok().flatten().map(|t| t.to_string()).as_deref(),
            Some("42")
        );
        let bad = Submitted::from_answer(json!({"task_id": "t", "conversion_id": "../x"}))
            .expect("object");
        assert!(bad.conversion_ids(endpoint).is_err());
        assert!(Submitted::from_answer(json!([1])).is_err());
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
