//! What MusicGPT's answers mean as callbacks: a byId answer turned into the callbacks MusicGPT
//! would have sent, and a submission's preliminary answer turned into a registration. Both are
//! then recorded through the same path as a delivery.

use serde_json::{Map, Value, json};

use crate::domain::api::Submitted;
use crate::domain::callback::Callback;
use crate::domain::ids::Id;
use crate::domain::status::TaskStatus;
use crate::error::{Error, Result};

/// Turns a byId answer into the callbacks MusicGPT would have sent: for Music AI one per song
/// (fields suffixed `_1` / `_2`) and one for the cover; otherwise the answer itself.
pub fn callbacks_from_answer(task: &Id, conversion: &Value) -> Vec<Result<Callback>> {
    let Some(answer) = conversion.as_object() else {
        return Vec::new();
    };
    let mut bodies: Vec<Map<String, Value>> = Vec::new();
    let shared = |map: &mut Map<String, Value>| {
        map.insert("task_id".into(), json!(task));
        map.insert("reconciled_from".into(), json!("byId"));
        for key in [
            "status",
            "status_msg",
            "createdAt",
            "updatedAt",
            "music_style",
        ] {
            if let Some(v) = answer.get(key) {
                map.insert(key.into(), v.clone());
            }
        }
    };
    let songs: Vec<&str> = ["_1", "_2"]
        .into_iter()
        .filter(|suffix| answer.contains_key(&format!("conversion_id{suffix}")))
        .collect();
    if songs.is_empty() {
        let mut map = answer.clone();
        shared(&mut map);
        bodies.push(map);
    }
    for suffix in &songs {
        let mut map = Map::new();
        shared(&mut map);
        map.insert("subtype".into(), json!("music_ai"));
        map.insert("conversion_type".into(), json!("Music AI"));
        for (key, value) in answer {
            if let Some(base) = key.strip_suffix(suffix) {
                map.insert(base.to_owned(), value.clone());
            }
        }
        bodies.push(map);
    }
    // The cover belongs to a Music AI task; a plain answer already carries its own fields.
    let cover = answer.get("album_cover_path").filter(|v| v.is_string());
    if let (false, Some(cover)) = (songs.is_empty(), cover) {
        let mut map = Map::new();
        shared(&mut map);
        map.insert("subtype".into(), json!("album_cover_generation"));
        map.insert("image_path".into(), cover.clone());
        for suffix in &songs {
            let key = format!("conversion_id{suffix}");
            if let Some(v) = answer.get(&key) {
                map.insert(key, v.clone());
            }
        }
        bodies.push(map);
    }
    bodies.into_iter().map(Callback::from_fields).collect()
}

/// The preliminary response, recorded through the same path as a callback: a SUBMITTED status
/// that any status MusicGPT reports later outranks, and links for the expected conversions.
pub fn submission_callback(submitted: &Submitted, conversion_type: &str) -> Result<Callback> {
    let task = Id::parse(&submitted.task_id).ok_or_else(|| {
        Error::ProviderRejected("MusicGPT answered a task id outside the id rule".into())
    })?;
    let fields = json!({
        "subtype": "submission",
        "task_id": task,
        "conversion_id_1": submitted.conversion_id_1,
        "conversion_id_2": submitted.conversion_id_2,
        "status": TaskStatus::Submitted,
        "conversion_type": conversion_type,
        "eta": submitted.eta,
    });
    match fields {
        serde_json::Value::Object(map) => Callback::from_fields(map),
        _ => Err(Error::BadCallback("submission is not an object".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::callback::CallbackKind;

    #[test]
    fn a_music_ai_answer_becomes_two_songs_and_a_cover() {
        let answer: Value =
            serde_json::from_str(include_str!("../../tests/data/musicgpt/byid-music-ai.json"))
                .expect("sample");
        let mut conversion = answer["conversion"].clone();
        conversion["conversion_id_1"] = json!("c1");
        conversion["conversion_id_2"] = json!("c2");
        let task = Id::parse("t1").expect("id");
        let callbacks = callbacks_from_answer(&task, &conversion)
            .into_iter()
            .collect::<Result<Vec<_>>>()
            .expect("usable callbacks");
        let kinds: Vec<_> = callbacks.iter().map(|c| c.kind.clone()).collect();
        assert_eq!(
            kinds,
            [
                CallbackKind::Audio,
                CallbackKind::Audio,
                CallbackKind::AlbumCover
            ]
        );
        assert_eq!(
            callbacks[0].conversion_id.as_ref().map(Id::as_str),
            Some("c1")
        );
        assert_eq!(callbacks[1].duration_seconds, Some(232.99));
        assert!(callbacks[2].sources[0].url.ends_with(".png"));
    }

    #[test]
    fn a_plain_answer_is_recorded_as_it_is() {
        let answer: Value = serde_json::from_str(include_str!(
            "../../tests/data/musicgpt/byid-docs-sample.json"
        ))
        .expect("sample");
        let task = Id::parse("12345678-abcd-1234-efgh-567890abcdef").expect("id");
        let callbacks = callbacks_from_answer(&task, &answer["conversion"])
            .into_iter()
            .collect::<Result<Vec<_>>>()
            .expect("usable callbacks");
        assert_eq!(callbacks.len(), 1);
        assert_eq!(callbacks[0].sources.len(), 1);
    }
}
