//! Property tests: no input makes the parser panic, and whatever it accepts yields only
//! valid ids and keys inside the layout.

use musicgpt_webhook::domain::callback::Callback;
use musicgpt_webhook::domain::ids::Id;
use musicgpt_webhook::domain::keys::KeyPrefix;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn is_id(text: &str) -> bool {
    (1..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Field names MusicGPT uses, plus noise, so generated objects hit the interesting paths.
fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "task_id",
            "conversion_id",
            "conversion_id_1",
            "conversion_id_2",
            "subtype",
            "success",
            "status",
            "status_msg",
            "error",
            "reason",
            "audio_url",
            "audio_url_wav",
            "conversion_path",
            "conversion_path_wav",
            "image_path",
            "album_cover_path",
            "output_file_path",
            "lyrics",
            "lyrics_timestamped",
            "title",
            "conversion_duration",
            "conversion_cost",
            "is_flagged",
            "createdAt",
            "updatedAt",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,12}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[A-Za-z0-9_-]{1,20}".prop_map(Value::String),
        ".{0,40}".prop_map(Value::String),
        "https://(lalals|musicgpt)\\.s3\\.amazonaws\\.com/[a-z0-9/._-]{0,30}"
            .prop_map(Value::String),
        prop::sample::select(vec![
            "COMPLETED",
            "FAILED",
            "ERROR",
            "IN_QUEUE",
            "true",
            "false",
            "1.5",
            "[]",
            "{}"
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(field_name(), inner.clone(), 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            // Maps inside strings, as stem extraction sends them.
            prop::collection::btree_map("[a-z./ ]{1,8}", inner, 1..4).prop_map(|m| Value::String(
                Value::Object(m.into_iter().collect::<Map<_, _>>()).to_string()
            )),
        ]
    })
}

fn callback_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(field_name(), json_value(), 0..14)
        .prop_map(|m| m.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512), form in any::<bool>()) {
        let content_type = form.then_some("application/x-www-form-urlencoded");
        let _ = Callback::parse(&body, content_type);
    }

    #[test]
    fn accepted_callbacks_yield_only_valid_ids_and_keys(fields in callback_object()) {
        let Ok(cb) = Callback::from_fields(fields) else { return Ok(()) };
        prop_assert!(cb.task_id.is_some() || cb.conversion_id.is_some());
        for id in cb.task_id.iter().chain(&cb.conversion_id).chain(&cb.related_conversion_ids) {
            prop_assert!(is_id(id.as_str()));
        }
        let task = cb.task_id.clone().unwrap_or_else(|| Id::parse("t").expect("id"));
        let prefix = KeyPrefix::parse("p").expect("prefix");
        for source in &cb.sources {
            let key = source.asset.object_key(&prefix, &task);
            let rest = key.strip_prefix(&format!("p/{task}/")).expect("key under prefix and task");
            prop_assert!(!key.contains("..") && !key.contains("//"), "{key}");
            prop_assert!(rest.split('/').all(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))), "{key}");
            prop_assert!(!source.url.trim().is_empty());
        }
        // The canonical form parses back to the same callback.
        let again = Callback::parse(cb.canonical_json.as_bytes(), None).expect("canonical form parses");
        prop_assert_eq!(again, cb);
    }

    #[test]
    fn ids_are_exactly_the_rule(text in prop_oneof![".{0,140}", "[A-Za-z0-9_-]{0,140}"]) {
        prop_assert_eq!(Id::parse(&text).is_some(), is_id(&text));
    }

    #[test]
    fn prefixes_never_escape(raw in "[a-z./=_-]{0,20}") {
        if let Some(prefix) = KeyPrefix::parse(&raw) {
            let p = prefix.as_str();
            prop_assert!(p.is_empty() || (p.ends_with('/') && !p.starts_with('/')));
            prop_assert!(p.split('/').all(|seg| seg != ".." && seg != "."));
            prop_assert!(!p.contains("//"));
        }
    }
}

/// Found by the property above: a float whose shortest form parsed back to a neighbouring
/// number (serde_json's default float parsing is not exact), so the canonical form, and the
/// callback's hash, changed when parsed again.
#[test]
fn the_canonical_form_of_an_extreme_float_parses_back_to_itself() {
    let body = json!({ "task_id": "COMPLETED", "a": [-4.483684133499976e-113, 1e-320, 1.7976931348623157e308] });
    let cb = Callback::parse(body.to_string().as_bytes(), None).expect("accepted");
    let again = Callback::parse(cb.canonical_json.as_bytes(), None).expect("canonical form parses");
    assert_eq!(again, cb);
}
