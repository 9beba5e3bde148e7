//! The MusicGPT callback model and its parsing: pure, lenient where MusicGPT is loose
//! (numbers as strings, JSON inside strings, nulls, missing status), strict where a value
//! would reach a key (ids, stem names) or a download (URL fields).

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::domain::conversion::ConversionType;
use crate::domain::ids::Id;
use crate::domain::keys::{AssetKind, AssetRef};
use crate::domain::media::extension_of;
use crate::domain::outputs::{
    DATA_FIELDS, FILE_FIELDS, FileRole, NOT_FILES, STEM_MAP_FIELDS, STREAM_FIELDS, STREAM_SUBTYPES,
    TRANSCRIPT_FIELDS, output_for_extension,
};
use crate::domain::status::TaskStatus;
use crate::error::{Error, Result};

/// More files than this in one callback is not a MusicGPT callback (and would not fit one
/// DynamoDB transaction).
pub const MAX_ASSETS_PER_CALLBACK: usize = 40;

/// What a callback is about, decided from `subtype` first, then from the fields present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackKind {
    /// A finished song (Music AI audio, the documented sample, other conversions' outputs).
    Audio,
    LyricsTimestamped,
    AlbumCover,
    /// Stem extraction: `audio_url` / `audio_url_wav` are maps of stem name to URL.
    Stems,
    /// Audio to MIDI: the `.mid`, and optionally a rendering and the note events.
    Midi,
    /// Key and BPM extraction: data (`dominant_key`, `bpm`, `key_changes`), maybe a file.
    KeyBpm,
    /// Transcription: a transcript as text, or a file.
    Transcript,
    /// Music AI V2's streaming-URL webhook: a live preview, recorded, never copied.
    StreamingUrl,
    /// A callback that reports a failure (`success: false`, status FAILED or ERROR).
    Failure,
    /// Anything else: stored and acknowledged, never rejected. Holds the subtype, if any.
    Other(Option<String>),
}

impl CallbackKind {
    pub fn label(&self) -> &'static str {
        match self {
            CallbackKind::Audio => "audio",
            CallbackKind::LyricsTimestamped => "lyrics_timestamped",
            CallbackKind::AlbumCover => "album_cover",
            CallbackKind::Stems => "stems",
            CallbackKind::Midi => "midi",
            CallbackKind::KeyBpm => "key_bpm",
            CallbackKind::Transcript => "transcript",
            CallbackKind::StreamingUrl => "streaming_url",
            CallbackKind::Failure => "failure",
            CallbackKind::Other(_) => "other",
        }
    }
}

/// One file the callback points at, before any download.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetSource {
    pub asset: AssetRef,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Callback {
    pub kind: CallbackKind,
    pub subtype: Option<String>,
    pub task_id: Option<Id>,
    pub conversion_id: Option<Id>,
    /// `conversion_id_1`, `conversion_id_2`: the songs an album cover belongs to.
    pub related_conversion_ids: Vec<Id>,
    pub success: Option<bool>,
    /// Absent when the callback says nothing about status.
    pub status: Option<TaskStatus>,
    pub message: Option<String>,
    /// As the callback spells it ("Music AI", "MUSIC_AI", ...).
    pub conversion_type: Option<String>,
    /// The same, understood (`None` when missing or unknown).
    pub conversion_kind: Option<ConversionType>,
    pub title: Option<String>,
    pub lyrics: Option<String>,
    pub lyrics_timestamped: Option<Value>,
    pub duration_seconds: Option<f64>,
    pub cost: Option<f64>,
    pub is_flagged: Option<bool>,
    pub flag_reason: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    /// Data outputs (key, BPM, key changes, ...), by attribute name.
    pub data: Vec<(&'static str, Value)>,
    pub transcript: Option<String>,
    /// A live preview's URL (the streaming-URL webhook): recorded, never copied.
    pub streaming_url: Option<String>,
    pub sources: Vec<AssetSource>,
    /// SHA-256 of the canonical JSON form: equal for redeliveries however they are formatted.
    pub sha256: String,
    /// The canonical JSON form, kept for audit and replay (unknown fields included).
    pub canonical_json: String,
}

/// Turns a request body into the callback's fields: form-encoded bodies become a map of
/// strings, everything else is read as JSON whatever its declared type.
pub fn decode_body(body: &[u8], content_type: Option<&str>) -> Result<Map<String, Value>> {
    let is_form = content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if is_form {
        let fields: Map<String, Value> = form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
            .collect();
        if fields.is_empty() {
            return Err(bad("form body has no fields"));
        }
        return Ok(fields);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("body is empty"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(_) => Err(bad("body must be a JSON object")),
        Err(err) => Err(bad(&format!(
            "body is not valid JSON (line {}, column {})",
            err.line(),
            err.column()
        ))),
    }
}

/// MusicGPT's buckets: where its files are (`SOURCE_HOSTS` by default).
pub const MUSICGPT_HOSTS: &[&str] = &["lalals.s3.amazonaws.com", "musicgpt.s3.amazonaws.com"];

impl Callback {
    /// Parses with MusicGPT's own hosts as the hosts whose URLs count as files.
    pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Callback> {
        Callback::parse_for(body, content_type, &default_hosts())
    }

    /// `hosts`: an URL on one of them, in a field not known to hold a file, is a file too.
    pub fn parse_for(
        body: &[u8],
        content_type: Option<&str>,
        hosts: &[String],
    ) -> Result<Callback> {
        Callback::from_fields_for(decode_body(body, content_type)?, hosts)
    }

    pub fn from_fields(fields: Map<String, Value>) -> Result<Callback> {
        Callback::from_fields_for(fields, &default_hosts())
    }

    pub fn from_fields_for(fields: Map<String, Value>, hosts: &[String]) -> Result<Callback> {
        let canonical_json = Value::Object(fields.clone()).to_string();
        let sha256 = hex::encode(Sha256::digest(canonical_json.as_bytes()));
        let f = Fields(&fields);

        let task_id = f.id("task_id")?;
        let conversion_id = f.id("conversion_id")?;
        let related_conversion_ids: Vec<Id> = [f.id("conversion_id_1")?, f.id("conversion_id_2")?]
            .into_iter()
            .flatten()
            .collect();
        if task_id.is_none() && conversion_id.is_none() {
            return Err(bad("no usable id: task_id or conversion_id is required"));
        }
        for (field, role) in FILE_FIELDS {
            f.check_url_field_type(
                field,
                matches!(role, FileRole::Audio { .. } | FileRole::Wav),
            )?;
        }

        let subtype = f.text("subtype");
        let success = f.boolean("success");
        let status = f.text("status").map(|s| TaskStatus::parse(&s));
        let failed = success == Some(false) || status.as_ref().is_some_and(TaskStatus::is_failure);
        let conversion_type = f.text("conversion_type");
        let conversion_kind = conversion_type.as_deref().and_then(ConversionType::parse);
        let mut stem_maps = Vec::new();
        for (field, role) in STEM_MAP_FIELDS {
            if let (Some(map), FileRole::StemMap { default_ext }) = (f.stem_map(field)?, role) {
                stem_maps.push((*field, *default_ext, map));
            }
        }
        let data = data_outputs(&f);
        let transcript = TRANSCRIPT_FIELDS.iter().find_map(|k| f.text(k));
        let streaming_url = STREAM_FIELDS.iter().find_map(|k| f.text(k));
        let files: Vec<Named> = named_files(&f, conversion_id.as_ref(), &stem_maps, hosts);
        let has_files = !files.is_empty() || !stem_maps.is_empty();
        let has_output = |name: &str| {
            files
                .iter()
                .any(|n| matches!(&n.source.asset.kind, AssetKind::Output { name: o, .. } if o.as_str() == name))
        };

        let kind = match subtype.as_deref() {
            _ if failed => CallbackKind::Failure,
            Some("lyrics_timestamped") => CallbackKind::LyricsTimestamped,
            Some("album_cover_generation") => CallbackKind::AlbumCover,
            Some(s) if STREAM_SUBTYPES.contains(&s) => CallbackKind::StreamingUrl,
            Some("music_ai") | None if streaming_url.is_some() && !has_files => {
                CallbackKind::StreamingUrl
            }
            Some("music_ai") | None if !stem_maps.is_empty() => CallbackKind::Stems,
            Some("music_ai") | None
                if conversion_kind == Some(ConversionType::KeyBpmExtraction)
                    || data
                        .iter()
                        .any(|(name, _)| *name == "bpm" || *name == "key") =>
            {
                CallbackKind::KeyBpm
            }
            Some("music_ai") | None
                if conversion_kind == Some(ConversionType::AudioToMidi) || has_output("midi") =>
            {
                CallbackKind::Midi
            }
            Some("music_ai") | None
                if conversion_kind == Some(ConversionType::AudioTranscription)
                    || transcript.is_some() =>
            {
                CallbackKind::Transcript
            }
            Some("music_ai") => CallbackKind::Audio,
            Some(other) => CallbackKind::Other(Some(other.to_owned())),
            None if f.text("image_path").is_some() && conversion_id.is_none() => {
                CallbackKind::AlbumCover
            }
            None if has_files => CallbackKind::Audio,
            None if f.0.contains_key("lyrics_timestamped") && f.text("lyrics").is_none() => {
                CallbackKind::LyricsTimestamped
            }
            None => CallbackKind::Other(None),
        };

        let sources = match kind {
            CallbackKind::Failure
            | CallbackKind::LyricsTimestamped
            | CallbackKind::StreamingUrl
            | CallbackKind::Other(_) => Vec::new(),
            CallbackKind::AlbumCover => files
                .into_iter()
                .filter(|n| matches!(n.source.asset.kind, AssetKind::Cover { .. }))
                .map(|n| n.source)
                .collect(),
            _ => {
                let mut sources = stem_sources(conversion_id.as_ref(), &stem_maps);
                for named in files {
                    push_unique(&mut sources, named.source.asset, named.source.url);
                }
                sources
            }
        };
        if sources.len() > MAX_ASSETS_PER_CALLBACK {
            return Err(bad(&format!(
                "callback names {} files, more than the {MAX_ASSETS_PER_CALLBACK} accepted",
                sources.len()
            )));
        }

        let message = ["status_msg", "error", "message"]
            .into_iter()
            .chain(failed.then_some("reason"))
            .find_map(|k| f.text(k));
        Ok(Callback {
            kind,
            subtype,
            task_id,
            conversion_id,
            related_conversion_ids,
            success,
            status,
            message,
            conversion_type,
            conversion_kind,
            title: f.text("title"),
            lyrics: f.text("lyrics"),
            lyrics_timestamped: f.json("lyrics_timestamped"),
            duration_seconds: f.number("conversion_duration"),
            cost: f.number("conversion_cost"),
            is_flagged: f.boolean("is_flagged"),
            flag_reason: (!failed).then(|| f.text("reason")).flatten(),
            created_at: f.text("createdAt").or_else(|| f.text("created_at")),
            updated_at: f.text("updatedAt").or_else(|| f.text("updated_at")),
            data,
            transcript,
            streaming_url,
            sources,
            sha256,
            canonical_json,
        })
    }

    /// The status this callback reports, explicit or implied by `success`.
    pub fn effective_status(&self) -> Option<TaskStatus> {
        if let Some(status) = &self.status {
            return Some(status.clone());
        }
        match (&self.kind, self.success) {
            (CallbackKind::Failure, _) | (_, Some(false)) => Some(TaskStatus::Failed),
            (
                CallbackKind::Audio
                | CallbackKind::AlbumCover
                | CallbackKind::Stems
                | CallbackKind::Midi
                | CallbackKind::KeyBpm
                | CallbackKind::Transcript,
                Some(true),
            ) => Some(TaskStatus::Completed),
            _ => None,
        }
    }
}

fn bad(message: &str) -> Error {
    Error::BadCallback(message.to_owned())
}

fn default_hosts() -> Vec<String> {
    MUSICGPT_HOSTS.iter().map(|h| (*h).to_owned()).collect()
}

/// A stem map found in a field: (field, default extension, stem name -> URL).
type StemMap = (&'static str, &'static str, Vec<(Id, String)>);

/// A file the callback names, and the field it came from.
struct Named {
    source: AssetSource,
}

/// Every single-URL file field: the known ones by their role (in `FILE_FIELDS` order, so the
/// first of two fields naming the same file wins), then any other field holding an URL on one
/// of `hosts`, stored under the field's own name.
fn named_files(
    f: &Fields,
    conversion: Option<&Id>,
    stem_maps: &[StemMap],
    hosts: &[String],
) -> Vec<Named> {
    let mut files: Vec<Named> = Vec::new();
    let mut push = |kind: AssetKind, url: String| {
        let asset = AssetRef {
            conversion: match kind {
                AssetKind::Cover { .. } => None,
                _ => conversion.cloned(),
            },
            kind,
        };
        if !files.iter().any(|n| n.source.asset == asset) {
            files.push(Named {
                source: AssetSource { asset, url },
            });
        }
    };
    let held_stems = |field: &str| stem_maps.iter().any(|(f, _, _)| *f == field);
    for (field, role) in FILE_FIELDS {
        if held_stems(field) {
            continue;
        }
        let Some(url) = f.text(field) else { continue };
        let found = extension_of(&url);
        let kind = match role {
            FileRole::Audio { default_ext } => match found.and_then(output_for_extension) {
                Some(name) => output(name, found.unwrap_or("bin")),
                None => AssetKind::Audio {
                    ext: found.unwrap_or(default_ext),
                },
            },
            FileRole::Wav => AssetKind::Audio { ext: "wav" },
            FileRole::Cover => AssetKind::Cover {
                ext: found.unwrap_or("png"),
            },
            FileRole::Output(name) => output(name, found.unwrap_or("bin")),
            FileRole::StemMap { .. } => continue,
        };
        push(kind, url);
    }
    for (field, value) in f.0 {
        let known = FILE_FIELDS.iter().any(|(k, _)| k == field)
            || STEM_MAP_FIELDS.iter().any(|(k, _)| k == field)
            || STREAM_FIELDS.contains(&field.as_str())
            || NOT_FILES.contains(&field.as_str());
        let Some(url) = value.as_str() else { continue };
        let Some(name) = Id::parse(field) else {
            continue;
        };
        if known || !on_hosts(url, hosts) || url.to_ascii_lowercase().contains(".m3u8") {
            continue;
        }
        let ext = extension_of(url).unwrap_or("bin");
        push(AssetKind::Output { name, ext }, url.to_owned());
    }
    files
}

fn output(name: &'static str, ext: &'static str) -> AssetKind {
    match Id::parse(name) {
        Some(name) => AssetKind::Output { name, ext },
        // The names in outputs.rs are ids (a unit test checks it).
        None => AssetKind::Audio { ext },
    }
}

/// Whether `url` is an http(s) URL on one of `hosts`; the copy's guard checks it for real.
fn on_hosts(url: &str, hosts: &[String]) -> bool {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    };
    let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
    hosts
        .iter()
        .any(|h| h.trim_matches(['[', ']']).eq_ignore_ascii_case(&host))
}

fn stem_sources(conversion: Option<&Id>, stem_maps: &[StemMap]) -> Vec<AssetSource> {
    let mut sources = Vec::new();
    for (_, default_ext, map) in stem_maps {
        for (name, url) in map {
            let ext = if *default_ext == "wav" {
                "wav"
            } else {
                extension_of(url).unwrap_or(default_ext)
            };
            let kind = AssetKind::Stem {
                name: name.clone(),
                ext,
            };
            push_unique(
                &mut sources,
                AssetRef {
                    conversion: conversion.cloned(),
                    kind,
                },
                url.clone(),
            );
        }
    }
    sources
}

/// The data outputs, first field per attribute wins.
fn data_outputs(f: &Fields) -> Vec<(&'static str, Value)> {
    let mut data: Vec<(&'static str, Value)> = Vec::new();
    for (field, attribute) in DATA_FIELDS {
        if data.iter().any(|(a, _)| a == attribute) {
            continue;
        }
        let value = match *attribute {
            "bpm" => f.number(field).map(Value::from),
            "key_changes" => f.json(field),
            _ => f.text(field).map(Value::String),
        };
        if let Some(value) = value {
            data.push((attribute, value));
        }
    }
    data
}

fn push_unique(sources: &mut Vec<AssetSource>, asset: AssetRef, url: String) {
    if !sources.iter().any(|s| s.asset == asset) {
        sources.push(AssetSource { asset, url });
    }
}

/// Lenient readers over the callback's fields.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    /// A string, number or boolean as text; null, empty and structured values count as absent.
    fn text(&self, key: &str) -> Option<String> {
        match self.get(key)? {
            Value::String(s) if s.trim().is_empty() => None,
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    fn number(&self, key: &str) -> Option<f64> {
        let n = match self.get(key)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        }?;
        n.is_finite().then_some(n)
    }

    fn boolean(&self, key: &str) -> Option<bool> {
        match self.get(key)? {
            Value::Bool(b) => Some(*b),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Some(true),
                "false" | "0" | "no" => Some(false),
                _ => None,
            },
            Value::Number(n) => n.as_f64().map(|n| n != 0.0),
            _ => None,
        }
    }

    /// A value that may arrive as JSON inside a string; unparseable strings stay strings.
    fn json(&self, key: &str) -> Option<Value> {
        match self.get(key)? {
            Value::String(s) if s.trim().is_empty() => None,
            Value::String(s) => {
                Some(serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())))
            }
            other => Some(other.clone()),
        }
    }

    /// An id field: absent (missing, null, empty) or valid. Non-negative integers are read
    /// as their digits; anything else is refused with the field's name.
    fn id(&self, key: &str) -> Result<Option<Id>> {
        let text = match self.get(key) {
            None => return Ok(None),
            Some(Value::String(s)) if s.is_empty() => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) if n.is_u64() => n.to_string(),
            Some(_) => return Err(bad(&format!("{key}: must be a string id"))),
        };
        Id::parse(&text).map(Some).ok_or_else(|| {
            bad(&format!(
                "{key}: not a valid id (1 to 128 of A-Z a-z 0-9 _ -)"
            ))
        })
    }

    /// A file field holds an URL string; one that may hold stems may hold a map too.
    fn check_url_field_type(&self, key: &str, may_hold_stems: bool) -> Result<()> {
        let stems = may_hold_stems && STEM_MAP_FIELDS.iter().any(|(k, _)| *k == key);
        match self.get(key) {
            None | Some(Value::String(_)) => Ok(()),
            Some(Value::Object(_)) if stems => Ok(()),
            Some(_) => Err(bad(&format!("{key}: must be a URL string"))),
        }
    }

    /// A stem map (stem name -> URL), given as an object or as JSON inside a string.
    /// `None` when the field is a plain URL or absent.
    fn stem_map(&self, key: &str) -> Result<Option<Vec<(Id, String)>>> {
        let parsed;
        let map = match self.get(key) {
            Some(Value::Object(map)) => map,
            Some(Value::String(s)) if s.trim_start().starts_with('{') => {
                match serde_json::from_str::<Value>(s) {
                    Ok(Value::Object(map)) => {
                        parsed = map;
                        &parsed
                    }
                    _ => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
        let mut stems = Vec::with_capacity(map.len());
        for (name, url) in map {
            let name = Id::parse(name)
                .ok_or_else(|| bad(&format!("{key}: stem name is not a valid id")))?;
            match url {
                Value::Null => {}
                Value::String(url) if url.trim().is_empty() => {}
                Value::String(url) => stems.push((name, url.clone())),
                _ => return Err(bad(&format!("{key}: stem URLs must be strings"))),
            }
        }
        Ok(Some(stems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Callback> {
        Callback::parse(body.as_bytes(), Some("application/json"))
    }

    #[test]
    fn documented_sample_is_a_completed_audio_with_one_mp3() {
        let cb = parse(
            r#"{"task_id":"t1","status":"COMPLETED","status_msg":"ok","conversion_type":"MUSIC_AI",
            "audio_url":"https://musicgpt.s3.amazonaws.com/a.mp3","conversion_cost":1.25,
            "createdAt":"2025-01-01T12:00:00Z","updatedAt":"2025-01-01T12:05:00Z"}"#,
        )
        .expect("valid");
        assert_eq!(cb.kind, CallbackKind::Audio);
        assert_eq!(cb.effective_status(), Some(TaskStatus::Completed));
        assert_eq!(cb.message.as_deref(), Some("ok"));
        assert_eq!(cb.cost, Some(1.25));
        assert_eq!(cb.sources.len(), 1);
        assert_eq!(cb.sources[0].asset.kind, AssetKind::Audio { ext: "mp3" });
    }

    #[test]
    fn lyrics_inside_a_string_are_parsed_and_task_may_be_missing() {
        let cb = parse(r#"{"subtype":"lyrics_timestamped","conversion_id":"c1","lyrics_timestamped":"[{\"index\":0,\"text\":\"x\",\"start\":1,\"end\":2}]"}"#)
            .expect("valid");
        assert_eq!(cb.kind, CallbackKind::LyricsTimestamped);
        assert!(cb.task_id.is_none());
        assert_eq!(
            cb.lyrics_timestamped
                .as_ref()
                .and_then(|v| v[0]["end"].as_i64()),
            Some(2)
        );
        assert!(
            cb.effective_status().is_none(),
            "lyrics say nothing about status"
        );
    }

    #[test]
    fn cover_without_subtype_is_recognised_by_its_fields() {
        let cb = parse(r#"{"task_id":"t1","image_path":"https://musicgpt.s3.amazonaws.com/t1.jpeg","conversion_id_1":"c1","conversion_id_2":"c2"}"#)
            .expect("valid");
        assert_eq!(cb.kind, CallbackKind::AlbumCover);
        assert_eq!(cb.related_conversion_ids.len(), 2);
        assert_eq!(cb.sources[0].asset.kind, AssetKind::Cover { ext: "jpeg" });
    }

    #[test]
    fn stems_as_values_or_strings_name_one_file_per_stem() {
        let as_value = parse(r#"{"task_id":"t","conversion_id":"c","audio_url":{"vocals":"https://h/v.mp3","drums":"https://h/d.mp3"}}"#)
            .expect("valid");
        let as_string = parse(r#"{"task_id":"t","conversion_id":"c","audio_url":"{\"vocals\":\"https://h/v.mp3\",\"drums\":\"https://h/d.mp3\"}","conversion_cost":"0.5"}"#)
            .expect("valid");
        assert_eq!(as_value.kind, CallbackKind::Stems);
        assert_eq!(as_value.sources, as_string.sources);
        assert_eq!(as_string.sources.len(), 2);
        assert_eq!(as_string.cost, Some(0.5));
    }

    #[test]
    fn failures_carry_their_text_and_no_files() {
        for body in [
            r#"{"task_id":"t","success":false,"reason":"flagged","audio_url":"https://h/a.mp3"}"#,
            r#"{"task_id":"t","status":"error","error":"flagged"}"#,
        ] {
            let cb = parse(body).expect("valid");
            assert_eq!(cb.kind, CallbackKind::Failure, "{body}");
            assert_eq!(cb.message.as_deref(), Some("flagged"));
            assert!(cb.sources.is_empty());
            assert!(cb.effective_status().is_some_and(|s| s.is_failure()));
        }
    }

    #[test]
    fn unknown_subtypes_are_kept_without_files() {
        let cb = parse(
            r#"{"subtype":"music_ai_v3_preview","task_id":"t","preview":"https://lalals.s3.amazonaws.com/p.mp3"}"#,
        )
        .expect("valid");
        assert_eq!(
            cb.kind,
            CallbackKind::Other(Some("music_ai_v3_preview".into()))
        );
        assert!(cb.canonical_json.contains("preview"));
        assert!(cb.sources.is_empty());
    }

    #[test]
    fn a_streaming_url_is_recorded_never_copied_and_never_a_status() {
        for body in [
            r#"{"subtype":"music_ai_stream","task_id":"t","conversion_id":"c","stream_url":"https://lalals.s3.amazonaws.com/s.m3u8"}"#,
            r#"{"task_id":"t","conversion_id":"c","streaming_url":"https://lalals.s3.amazonaws.com/s.m3u8","success":true}"#,
        ] {
            let cb = parse(body).expect("valid");
            assert_eq!(cb.kind, CallbackKind::StreamingUrl, "{body}");
            assert!(cb.sources.is_empty());
            assert_eq!(
                cb.effective_status(),
                None,
                "a preview is not the finished song"
            );
            assert!(
                cb.streaming_url
                    .as_deref()
                    .is_some_and(|u| u.ends_with(".m3u8"))
            );
        }
    }

    #[test]
    fn every_output_is_a_file_with_a_clear_name_and_data_is_kept() {
        let midi = parse(
            r#"{"task_id":"t","conversion_id":"c","conversion_type":"Audio To MIDI","success":true,
            "conversion_path":"https://lalals.s3.amazonaws.com/c.mid",
            "conversion_path_wav":"https://lalals.s3.amazonaws.com/c.wav",
            "note_events_path":"https://lalals.s3.amazonaws.com/c.csv"}"#,
        )
        .expect("valid");
        assert_eq!(midi.kind, CallbackKind::Midi);
        let keys: Vec<String> = midi
            .sources
            .iter()
            .map(|s| {
                s.asset.object_key(
                    &crate::domain::keys::KeyPrefix::default(),
                    &Id::parse("t").expect("id"),
                )
            })
            .collect();
        assert_eq!(keys, ["t/c/midi.mid", "t/c.wav", "t/c/notes.csv"]);
        let key_bpm = parse(
            r#"{"task_id":"t","conversion_id":"c","dominant_key":"A minor","bpm":"120.5","key_changes":"[{\"time\":0,\"key\":\"A minor\"}]"}"#,
        )
        .expect("valid");
        assert_eq!(key_bpm.kind, CallbackKind::KeyBpm);
        assert!(
            key_bpm
                .data
                .contains(&("key", serde_json::json!("A minor")))
        );
        assert!(key_bpm.data.contains(&("bpm", serde_json::json!(120.5))));
        assert!(
            key_bpm
                .data
                .iter()
                .any(|(n, v)| *n == "key_changes" && v.is_array())
        );
        let extra = parse(
            r#"{"task_id":"t","conversion_id":"c","conversion_path":"https://lalals.s3.amazonaws.com/c.flac",
            "vocals_preview":"https://lalals.s3.amazonaws.com/v.ogg","elsewhere":"https://example.com/x.mp3"}"#,
        )
        .expect("valid");
        let names: Vec<&str> = extra.sources.iter().map(|s| s.asset.kind.label()).collect();
        assert_eq!(
            names,
            ["audio", "output"],
            "an URL on another host is data, not a file"
        );
        assert_eq!(extra.sources[0].asset.kind.ext(), "flac");
    }

    #[test]
    fn formatting_does_not_change_the_hash() {
        let a = parse(r#"{"task_id":"t","title":"x"}"#).expect("valid");
        let b = parse("{ \"title\" : \"x\",\n \"task_id\" : \"t\" }").expect("valid");
        assert_eq!(a.sha256, b.sha256);
    }

    #[test]
    fn form_bodies_are_fields_too() {
        let cb = Callback::parse(
            b"task_id=t1&conversion_path=https%3A%2F%2Flalals.s3.amazonaws.com%2Fc.mp3&success=true",
            Some("application/x-www-form-urlencoded; charset=utf-8"),
        )
        .expect("valid");
        assert_eq!(cb.kind, CallbackKind::Audio);
        assert_eq!(cb.sources[0].url, "https://lalals.s3.amazonaws.com/c.mp3");
    }

    #[test]
    fn problems_are_named() {
        let cases = [
            ("", "empty"),
            ("[1]", "JSON object"),
            ("{\"task_id\":", "not valid JSON"),
            ("{}", "no usable id"),
            (r#"{"task_id":"../etc"}"#, "task_id"),
            (
                r#"{"task_id":"t","conversion_id":{"a":1}}"#,
                "conversion_id",
            ),
            (r#"{"task_id":"t","image_path":5}"#, "image_path"),
            (
                r#"{"task_id":"t","audio_url":{"a/b":"https://h/x"}}"#,
                "stem name",
            ),
        ];
        for (body, expected) in cases {
            let err = parse(body).expect_err(body).to_string();
            assert!(err.contains(expected), "{body}: {err}");
        }
    }

    #[test]
    fn too_many_files_are_refused() {
        let stems: Map<String, Value> = (0..41)
            .map(|i| (format!("s{i}"), Value::String(format!("https://h/{i}.mp3"))))
            .collect();
        let body = serde_json::json!({ "task_id": "t", "audio_url": stems }).to_string();
        assert!(parse(&body).is_err());
    }
}
