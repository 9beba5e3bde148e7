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
/// that any status MusicGPT reports later outranks, the conversion type as the docs spell it,
/// and the expected conversions (`conversion_id_1`, `conversion_id_2`: the task item's
/// `conversion_ids`, and links so callbacks naming only a conversion find the task). An answer
/// with no task id but a conversion (the cutter's) names that conversion alone, so the record
/// waits on it (parked) until a callback names its task. The whole answer is kept in `answer`.
pub fn submission_callback(
    submitted: &Submitted,
    conversion_type: &str,
    conversions: &[Id],
) -> Result<Callback> {
    let task = submitted.task().map_err(Error::ProviderRejected)?;
    let mut fields = Map::new();
    fields.insert("subtype".into(), json!("submission"));
    fields.insert("status".into(), json!(TaskStatus::Submitted));
    fields.insert("conversion_type".into(), json!(conversion_type));
    match (&task, conversions) {
        (Some(task), _) => {
            fields.insert("task_id".into(), json!(task));
            for (field, id) in ["conversion_id_1", "conversion_id_2"]
                .iter()
                .zip(conversions)
            {
                fields.insert((*field).into(), json!(id));
            }
        }
        (None, [first, ..]) => {
            fields.insert("conversion_id".into(), json!(first));
        }
        (None, []) => {
            return Err(Error::ProviderRejected(
                "the answer names neither a task nor a conversion: nothing to register".into(),
            ));
        }
    }
    fields.insert("expected_conversions".into(), json!(conversions));
    for (key, value) in [
        ("eta", submitted.eta),
        ("credit_estimate", submitted.credit_estimate),
    ] {
        if let Some(value) = value {
            fields.insert(key.into(), json!(value));
        }
    }
    fields.insert("answer".into(), submitted.answer.clone());
    Callback::from_fields(fields)
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
    fn a_submission_registers_its_task_or_waits_on_its_conversion() {
        let ids = |v: &[&str]| v.iter().filter_map(|s| Id::parse(s)).collect::<Vec<_>>();
        let music = Submitted::from_answer(json!({"task_id": "t1", "conversion_id_1": "c1",
            "conversion_id_2": "c2", "eta": 120}))
        .expect("answer");
        let cb = submission_callback(&music, "MUSIC_AI", &ids(&["c1", "c2"])).expect("callback");
        assert_eq!(cb.task_id.as_ref().map(Id::as_str), Some("t1"));
        assert_eq!(cb.related_conversion_ids, ids(&["c1", "c2"]));
        assert_eq!(cb.status, Some(TaskStatus::Submitted));
        assert_eq!(cb.conversion_type.as_deref(), Some("MUSIC_AI"));

        let cover = Submitted::from_answer(json!({"task_id": "t2", "conversion_id": "c3"}))
            .expect("answer");
        let cb = submission_callback(&cover, "COVER", &ids(&["c3"])).expect("callback");
        assert_eq!(cb.related_conversion_ids, ids(&["c3"]));
        assert!(cb.conversion_id.is_none());

        let cutter = Submitted::from_answer(json!({"conversion_id": "c4"})).expect("answer");
        let cb = submission_callback(&cutter, "AUDIO_CUTTER", &ids(&["c4"])).expect("callback");
        assert!(cb.task_id.is_none());
        assert_eq!(cb.conversion_id.as_ref().map(Id::as_str), Some("c4"));

        let empty = Submitted::from_answer(json!({"message": "ok"})).expect("answer");
        assert!(submission_callback(&empty, "AUDIO_CUTTER", &[]).is_err());
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
