//! A fake MusicGPT API on a loopback port, written from docs/musicgpt/api.md on its own (not
//! from the library's table, so the two check each other):
//! - every submit endpoint (Music AI V2 and the V1 conversions), each checking the body
//!   encoding it takes (JSON, multipart, form), the fields it knows (an unknown field is a
//!   422, as a typo would be), the required ones, `A|B` inputs (exactly one: a URL field or an
//!   uploaded file part), ranges, and answering in its documented shape;
//! - byId, per conversion type: a task submitted here is found only under its own type;
//! - byUser over a time window, page by page, with an object `LastEvaluatedKey`;
//! - 429/5xx on demand (the next request, or the nth call of one path), a rejection with a
//!   message, and a log of everything asked.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const API_KEY: &str = "test-api-key-not-a-secret";

/// An uploaded file part.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    pub field: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
}

/// One submission as the fake read it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// `json`, `multipart` or `form`.
    pub encoding: String,
    /// JSON bodies as they came; multipart and form fields as strings.
    pub fields: Map<String, Value>,
    pub uploads: Vec<Upload>,
    /// What the fake answered (status, body).
    pub status: u16,
    pub answer: Value,
}

#[derive(Default)]
struct State {
    /// task id -> (the conversion type it was submitted as, if known; the byId `conversion`).
    tasks: HashMap<String, (Option<String>, Value)>,
    /// Statuses to answer the next requests with, before anything else.
    failures: VecDeque<u16>,
    /// (path, nth call of that path from 1, status).
    failures_at: Vec<(String, usize, u16)>,
    /// The next submission is refused with this status and body.
    rejection: Option<(u16, Value)>,
    submit_answer: Option<Value>,
    /// (method, path with query) of every request, in order.
    requests: Vec<(String, String)>,
    /// (path, when) of every request.
    times: Vec<(String, Instant)>,
    calls: HashMap<String, usize>,
    submissions: Vec<Value>,
    received: Vec<Received>,
    /// What byUser lists (each with `createdAt` and `conversionType`).
    user_conversions: Vec<Value>,
    next_id: u64,
}

#[derive(Clone)]
pub struct FakeMusicGpt {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl FakeMusicGpt {
    pub async fn start() -> FakeMusicGpt {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake MusicGPT");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let state = Arc::new(Mutex::new(State::default()));
        let served = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = served.clone();
                tokio::spawn(async move { serve(stream, state).await });
            }
        });
        FakeMusicGpt { url, state }
    }

    /// A task byId finds under any conversion type.
    pub fn set_task(&self, task_id: &str, conversion: Value) {
        self.lock()
            .tasks
            .insert(task_id.to_owned(), (None, conversion));
    }

    /// A task byId finds only under `conversion_type`.
    pub fn set_task_of_type(&self, task_id: &str, conversion_type: &str, conversion: Value) {
        self.lock().tasks.insert(
            task_id.to_owned(),
            (Some(conversion_type.to_owned()), conversion),
        );
    }

    /// The conversion type a task was submitted as.
    pub fn task_type(&self, task_id: &str) -> Option<String> {
        self.lock().tasks.get(task_id).and_then(|(t, _)| t.clone())
    }

    pub fn fail_next(&self, statuses: &[u16]) {
        self.lock().failures.extend(statuses);
    }

    /// The `nth` call (from 1) of `path` answers `status`.
    pub fn fail_call(&self, path: &str, nth: usize, status: u16) {
        self.lock().failures_at.push((path.to_owned(), nth, status));
    }

    /// The next submission is refused with `status` and `body`.
    pub fn reject_next_submission(&self, status: u16, body: Value) {
        self.lock().rejection = Some((status, body));
    }

    pub fn answer_submissions_with(&self, answer: Value) {
        self.lock().submit_answer = Some(answer);
    }

    pub fn set_user_conversions(&self, conversions: Vec<Value>) {
        self.lock().user_conversions = conversions;
    }

    pub fn requests(&self) -> Vec<(String, String)> {
        self.lock().requests.clone()
    }

    /// When each request to `path` came.
    pub fn times(&self, path: &str) -> Vec<Instant> {
        self.lock()
            .times
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, t)| *t)
            .collect()
    }

    pub fn by_id_calls(&self) -> usize {
        self.requests()
            .iter()
            .filter(|(_, path)| path.starts_with("/api/public/v1/byId"))
            .count()
    }

    /// The fields of every submission (JSON as sent; multipart and form as strings).
    pub fn submissions(&self) -> Vec<Value> {
        self.lock().submissions.clone()
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let header_end = loop {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or_default().split_whitespace();
    let method = request_line.next().unwrap_or_default().to_owned();
    let target = request_line.next().unwrap_or_default().to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = &buffer[header_end..buffer.len().min(header_end + length)];
    let (status, answer) = answer(&state, &method, &target, &headers, body);
    let text = answer.to_string();
    let reply = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn answer(
    state: &Mutex<State>,
    method: &str,
    target: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> (u16, Value) {
    let mut state = state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    state.requests.push((method.to_owned(), target.to_owned()));
    state.times.push((path.to_owned(), Instant::now()));
    let nth = {
        let n = state.calls.entry(path.to_owned()).or_default();
        *n += 1;
        *n
    };
    if let Some(status) = state.failures.pop_front() {
        return (status, json!({ "success": false, "error": "injected" }));
    }
    if let Some(at) = state
        .failures_at
        .iter()
        .position(|(p, n, _)| p == path && *n == nth)
    {
        let (_, _, status) = state.failures_at.remove(at);
        return (
            status,
            json!({ "success": false, "message": "Too many requests" }),
        );
    }
    if headers.get("authorization").map(String::as_str) != Some(API_KEY) {
        return (401, json!({ "success": false, "error": "unauthorized" }));
    }
    let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    match (method, path) {
        ("GET", "/api/public/v1/byId") => by_id(&state, &params),
        ("GET", "/api/public/v1/byUser") => by_user(&state, &params),
        ("POST", _) => match SPECS
            .iter()
            .find(|s| path == format!("/api/public{}", s.path))
        {
            Some(spec) => submit(&mut state, spec, headers, body),
            None => (
                404,
                json!({ "success": false, "error": "no such endpoint" }),
            ),
        },
        _ => (
            404,
            json!({ "success": false, "error": "no such endpoint" }),
        ),
    }
}

fn by_id(state: &State, params: &HashMap<String, String>) -> (u16, Value) {
    let Some(asked) = params.get("conversionType") else {
        return (
            422,
            json!({ "success": false, "error": "conversionType is required" }),
        );
    };
    if !CONVERSION_TYPES.contains(&asked.as_str()) {
        return (
            422,
            json!({ "success": false, "error": format!("invalid conversionType {asked}") }),
        );
    }
    if params.contains_key("task_id") == params.contains_key("conversion_id") {
        return (
            422,
            json!({ "success": false, "error": "task_id or conversion_id, not both" }),
        );
    }
    match params.get("task_id").and_then(|t| state.tasks.get(t)) {
        Some((kind, conversion)) if kind.as_deref().is_none_or(|k| k == asked) => {
            (200, json!({ "success": true, "conversion": conversion }))
        }
        _ => (
            404,
            json!({ "success": false, "error": "Conversion not found" }),
        ),
    }
}

fn by_user(state: &State, params: &HashMap<String, String>) -> (u16, Value) {
    let limit: usize = match params.get("limit").map(|l| l.parse::<usize>()) {
        None => 50,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        _ => {
            return (
                422,
                json!({ "success": false, "message": "limit must be 1 to 100" }),
            );
        }
    };
    let iso = |key: &str| {
        params
            .get(key)
            .filter(|d| d.len() == 20 && d.ends_with('Z') && d.as_bytes()[10] == b'T')
            .cloned()
    };
    let (Some(start), Some(end)) = (iso("startDate"), iso("endDate")) else {
        return (
            422,
            json!({ "success": false, "message": "startDate and endDate: ISO 8601" }),
        );
    };
    let descending = match params.get("sortOrder").map(String::as_str) {
        None | Some("DESC") => true,
        Some("ASC") => false,
        Some(_) => {
            return (
                422,
                json!({ "success": false, "message": "sortOrder: ASC or DESC" }),
            );
        }
    };
    let mut listed: Vec<&Value> = state
        .user_conversions
        .iter()
        .filter(|c| {
            let at = c["createdAt"].as_str().unwrap_or_default();
            at >= start.as_str() && at <= end.as_str()
        })
        .filter(|c| {
            params
                .get("conversionType")
                .is_none_or(|t| c["conversionType"].as_str() == Some(t))
        })
        .collect();
    listed.sort_by_key(|c| c["createdAt"].as_str().unwrap_or_default().to_owned());
    if descending {
        listed.reverse();
    }
    // The key is an object naming the last conversion of the previous page, sent back as JSON.
    let offset = match params.get("LastEvaluatedKey") {
        None => 0,
        Some(key) => {
            let Ok(key) = serde_json::from_str::<Value>(key) else {
                return (
                    422,
                    json!({ "success": false, "message": "bad LastEvaluatedKey" }),
                );
            };
            match listed.iter().position(|c| c["task_id"] == key["task_id"]) {
                Some(at) => at + 1,
                None => {
                    return (
                        422,
                        json!({ "success": false, "message": "stale LastEvaluatedKey" }),
                    );
                }
            }
        }
    };
    let page: Vec<Value> = listed
        .iter()
        .skip(offset)
        .take(limit)
        .map(|c| (*c).clone())
        .collect();
    let mut answer = json!({ "success": true, "conversions": page });
    if offset + limit < listed.len()
        && let Some(last) = page.last()
    {
        answer["LastEvaluatedKey"] =
            json!({ "task_id": last["task_id"], "createdAt": last["createdAt"] });
    }
    (200, answer)
}

/// The docs' conversionType enum.
const CONVERSION_TYPES: &[&str] = &[
    "MUSIC_AI",
    "TEXT_TO_SPEECH",
    "VOICE_CONVERSION",
    "EXTRACTION",
    "COVER",
    "STEMS_SEPARATION",
    "VOCAL_EXTRACTION",
    "DENOISING",
    "DEECHO",
    "DEREVERB",
    "SOUND_GENERATOR",
    "AUDIO_TRANSCRIPTION",
    "AUDIO_SPEED_CHANGER",
    "AUDIO_MASTERING",
    "AUDIO_CUTTER",
    "REMIX",
    "FILE_CONVERT",
    "KEY_BPM_EXTRACTION",
    "AUDIO_TO_MIDI",
    "EXTEND",
    "INPAINT",
    "SING_OVER_INSTRUMENTAL",
    "LYRICS_GENERATOR",
    // Not in the docs' list; the library's name for it.
    "IMAGE_TO_SONG",
];

const STEMS: &[&str] = &[
    "vocals",
    "instrumental",
    "male_vocal",
    "female_vocal",
    "lead_vocal",
    "back_vocal",
    "bass",
    "drums",
    "guitar",
    "piano",
    "keys",
    "strings",
    "winds",
    "rhythm_guitar",
    "solo_guitar",
    "acoustic_guitar",
    "electric_guitar",
    "kick_drum",
    "snare_drum",
    "toms",
    "hi_hat",
    "ride",
    "crash",
];

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// `task_id`, `conversion_id_1/_2`, `eta`, `credit_estimate`.
    TwoSongs,
    /// `task_id`, `conversion_id`, `eta`.
    One,
    /// `conversion_id`, `conversion_path`, `credit_estimate`: no task id.
    NoTask,
    /// `task_id`, `message`.
    TaskOnly,
    /// `task_id`, `conversion_id`, `output_path`.
    Converted,
}

struct Spec {
    path: &'static str,
    encoding: &'static str,
    conversion_type: &'static str,
    /// Every field the endpoint knows, `webhook_url` included.
    known: &'static [&'static str],
    required: &'static [&'static str],
    /// `A|B`: exactly one of a URL field and a file part.
    inputs: &'static [(&'static str, &'static str)],
    shape: Shape,
}

const AUDIO: (&str, &str) = ("audio_url", "audio_file");

#[rustfmt::skip]
const SPECS: &[Spec] = &[
    Spec { path: "/v2/MusicAI", encoding: "json", conversion_type: "MUSIC_AI", known: &["prompt", "music_style", "lyrics", "make_instrumental", "vocal_only", "voice_id", "title", "gender", "generate_album_cover", "model", "lyrics_timestamps", "webhook_url"], required: &[], inputs: &[], shape: Shape::TwoSongs },
    Spec { path: "/v1/Remix", encoding: "multipart", conversion_type: "REMIX", known: &["audio_url", "prompt", "lyrics", "gender", "webhook_url"], required: &["prompt"], inputs: &[AUDIO], shape: Shape::TwoSongs },
    Spec { path: "/v1/extend", encoding: "multipart", conversion_type: "EXTEND", known: &["audio_url", "extend_after", "prompt", "lyrics", "gender", "webhook_url"], required: &["extend_after"], inputs: &[AUDIO], shape: Shape::TwoSongs },
    Spec { path: "/v1/inpaint", encoding: "multipart", conversion_type: "INPAINT", known: &["audio_url", "prompt", "replace_start_at", "replace_end_at", "lyrics", "lyrics_section_to_replace", "gender", "webhook_url"], required: &["prompt", "replace_start_at", "replace_end_at"], inputs: &[AUDIO], shape: Shape::TwoSongs },
    Spec { path: "/v1/sing_over_instrumental", encoding: "multipart", conversion_type: "SING_OVER_INSTRUMENTAL", known: &["audio_url", "prompt", "lyrics", "gender", "webhook_url"], required: &["prompt", "lyrics"], inputs: &[AUDIO], shape: Shape::TwoSongs },
    Spec { path: "/v1/image_to_song", encoding: "multipart", conversion_type: "IMAGE_TO_SONG", known: &["image_url", "prompt", "lyrics", "negative_tags", "make_instrumental", "vocal_only", "key", "bpm", "voice_id", "webhook_url"], required: &[], inputs: &[("image_url", "image_file")], shape: Shape::TwoSongs },
    Spec { path: "/v1/Cover", encoding: "multipart", conversion_type: "COVER", known: &["audio_url", "voice_id", "pitch", "webhook_url"], required: &["voice_id"], inputs: &[AUDIO], shape: Shape::One },
    Spec { path: "/v1/VoiceChanger", encoding: "multipart", conversion_type: "VOICE_CONVERSION", known: &["audio_url", "voice_id", "remove_background", "pitch", "webhook_url"], required: &["voice_id"], inputs: &[AUDIO], shape: Shape::One },
    Spec { path: "/v1/TextToSpeech", encoding: "json", conversion_type: "TEXT_TO_SPEECH", known: &["text", "sample_audio_url", "voice_id", "gender", "webhook_url"], required: &["text"], inputs: &[], shape: Shape::One },
    Spec { path: "/v1/Extraction", encoding: "multipart", conversion_type: "EXTRACTION", known: &["audio_url", "stems", "preprocessing_options", "eco_mode", "webhook_url"], required: &[], inputs: &[AUDIO], shape: Shape::One },
    Spec { path: "/v1/denoise", encoding: "multipart", conversion_type: "DENOISING", known: &["audio_url", "webhook_url"], required: &[], inputs: &[AUDIO], shape: Shape::One },
    Spec { path: "/v1/deecho", encoding: "multipart", conversion_type: "DEECHO", known: &["audio_url", "webhook_url"], required: &[], inputs: &[AUDIO], shape: Shape::One },
    Spec { path: "/v1/dereverb", encoding: "multipart", conversion_type: "DEREVERB", known: &["audio_url", "webhook_url"], required: &[], inputs: &[AUDIO], shape: Shape::One },
    Spec { path: "/v1/audio_mastering", encoding: "multipart", conversion_type: "AUDIO_MASTERING", known: &["audio_url", "reference_audio_url", "output_extension", "webhook_url"], required: &[], inputs: &[AUDIO, ("reference_audio_url", "reference_audio_file")], shape: Shape::One },
    Spec { path: "/v1/audio_cutter", encoding: "multipart", conversion_type: "AUDIO_CUTTER", known: &["audio_url", "start_time", "end_time", "output_extension", "webhook_url"], required: &["start_time", "end_time"], inputs: &[AUDIO], shape: Shape::NoTask },
    Spec { path: "/v1/audio_speed_changer", encoding: "multipart", conversion_type: "AUDIO_SPEED_CHANGER", known: &["audio_url", "speed_change_factor", "output_extension", "webhook_url"], required: &["speed_change_factor"], inputs: &[AUDIO], shape: Shape::NoTask },
    Spec { path: "/v1/audio_to_midi", encoding: "multipart", conversion_type: "AUDIO_TO_MIDI", known: &["audio_url", "sonify_midi", "save_note_events", "webhook_url"], required: &[], inputs: &[AUDIO], shape: Shape::TaskOnly },
    Spec { path: "/v1/extract_key_bpm", encoding: "multipart", conversion_type: "KEY_BPM_EXTRACTION", known: &["audio_url", "webhook_url"], required: &[], inputs: &[AUDIO], shape: Shape::One },
    Spec { path: "/v1/file_convert", encoding: "multipart", conversion_type: "FILE_CONVERT", known: &["audio_url", "target_format", "target_sr", "target_bit_depth", "webhook_url"], required: &["target_format"], inputs: &[AUDIO], shape: Shape::Converted },
    Spec { path: "/v1/audio_transcribe", encoding: "multipart", conversion_type: "AUDIO_TRANSCRIPTION", known: &["audio_url", "language", "translate", "transcription_format", "word_timestamps", "webhook_url"], required: &[], inputs: &[AUDIO], shape: Shape::One },
    Spec { path: "/v1/sound_generator", encoding: "form", conversion_type: "SOUND_GENERATOR", known: &["prompt", "audio_length", "webhook_url"], required: &["prompt"], inputs: &[], shape: Shape::One },
];

fn submit(
    state: &mut State,
    spec: &Spec,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> (u16, Value) {
    let content_type = headers.get("content-type").cloned().unwrap_or_default();
    let read = read_body(&content_type, body);
    let (status, answer) = match &read {
        Err(why) => (400, json!({ "success": false, "message": why })),
        Ok((encoding, fields, uploads)) => match check(spec, encoding, fields, uploads) {
            Err(why) => (422, json!({ "success": false, "message": why })),
            Ok(()) => match state.rejection.take() {
                Some(rejection) => rejection,
                None => (200, accept(state, spec)),
            },
        },
    };
    let (encoding, fields, uploads) = read.unwrap_or_default();
    state.submissions.push(Value::Object(fields.clone()));
    state.received.push(Received {
        path: spec.path.to_owned(),
        encoding,
        fields,
        uploads,
        status,
        answer: answer.clone(),
    });
    (status, answer)
}

fn accept(state: &mut State, spec: &Spec) -> Value {
    if spec.path == "/v2/MusicAI" {
        let answer = state.submit_answer.clone().unwrap_or_else(|| {
            serde_json::from_str(include_str!(
                "../data/musicgpt/submit-response-music-ai.json"
            ))
            .expect("sample submit response")
        });
        if let Some(task) = answer["task_id"].as_str() {
            let conversion = json!({ "task_id": task, "status": "IN_QUEUE" });
            state
                .tasks
                .insert(task.to_owned(), (Some("MUSIC_AI".to_owned()), conversion));
        }
        return answer;
    }
    state.next_id += 1;
    let n = state.next_id;
    let task = format!("task-{}-{n}", spec.conversion_type.to_ascii_lowercase());
    let answer = match spec.shape {
        Shape::TwoSongs => json!({ "success": true, "task_id": task,
            "conversion_id_1": format!("conv-{n}-1"), "conversion_id_2": format!("conv-{n}-2"),
            "eta": 120, "credit_estimate": 2.5 }),
        Shape::One => {
            json!({ "success": true, "task_id": task, "conversion_id": format!("conv-{n}"),
            "eta": -1, "credit_estimate": 0.5 })
        }
        Shape::NoTask => json!({ "success": true, "conversion_id": format!("conv-{n}"),
            "conversion_path": format!("https://lalals.s3.amazonaws.com/conversions/conv-{n}.mp3"),
            "credit_estimate": 0.1 }),
        Shape::TaskOnly => json!({ "success": true, "task_id": task, "message": "queued" }),
        Shape::Converted => {
            json!({ "success": true, "task_id": task, "conversion_id": format!("conv-{n}"),
            "output_path": format!("https://lalals.s3.amazonaws.com/conversions/conv-{n}.wav") })
        }
    };
    if spec.shape != Shape::NoTask {
        let conversion = json!({ "task_id": task, "status": "IN_QUEUE",
            "conversion_type": spec.conversion_type });
        state
            .tasks
            .insert(task, (Some(spec.conversion_type.to_owned()), conversion));
    }
    answer
}

type Body = (String, Map<String, Value>, Vec<Upload>);

fn read_body(content_type: &str, body: &[u8]) -> Result<Body, String> {
    let mime = content_type.split(';').next().unwrap_or_default().trim();
    match mime {
        "application/json" => match serde_json::from_slice(body) {
            Ok(Value::Object(fields)) => Ok(("json".into(), fields, Vec::new())),
            _ => Err("body is not a JSON object".into()),
        },
        "application/x-www-form-urlencoded" => {
            let fields = form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect();
            Ok(("form".into(), fields, Vec::new()))
        }
        "multipart/form-data" => {
            let boundary = content_type
                .split(';')
                .filter_map(|p| p.trim().strip_prefix("boundary="))
                .next()
                .ok_or("multipart without a boundary")?
                .trim_matches('"');
            let (fields, uploads) = multipart(body, boundary)?;
            Ok(("multipart".into(), fields, uploads))
        }
        other => Err(format!("unsupported content type {other:?}")),
    }
}

/// A small multipart/form-data reader: text parts become fields, parts with a filename uploads.
fn multipart(body: &[u8], boundary: &str) -> Result<(Map<String, Value>, Vec<Upload>), String> {
    let delimiter = format!("--{boundary}");
    let mut fields = Map::new();
    let mut uploads = Vec::new();
    let mut rest = body;
    let first = find(rest, delimiter.as_bytes()).ok_or("no first boundary")?;
    rest = &rest[first + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            return Ok((fields, uploads));
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or("no CRLF after a boundary")?;
        let head_end = find(rest, b"\r\n\r\n").ok_or("a part without headers")?;
        let head = String::from_utf8_lossy(&rest[..head_end]).to_string();
        rest = &rest[head_end + 4..];
        let end =
            find(rest, format!("\r\n{delimiter}").as_bytes()).ok_or("an unterminated part")?;
        let content = rest[..end].to_vec();
        rest = &rest[end + 2 + delimiter.len()..];
        let mut name = None;
        let mut filename = None;
        let mut part_type = None;
        for line in head.lines() {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("content-disposition:") {
                name = attribute(line, "name");
                filename = attribute(line, "filename");
            } else if let Some(value) = lower.strip_prefix("content-type:") {
                part_type = Some(value.trim().to_owned());
            }
        }
        let name = name.ok_or("a part without a name")?;
        match filename {
            Some(filename) => uploads.push(Upload {
                field: name,
                filename: Some(filename),
                content_type: part_type,
                bytes: content,
            }),
            None => {
                let text = String::from_utf8(content).map_err(|_| format!("{name}: not UTF-8"))?;
                fields.insert(name, Value::String(text));
            }
        }
    }
}

fn attribute(line: &str, key: &str) -> Option<String> {
    line.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn check(
    spec: &Spec,
    encoding: &str,
    fields: &Map<String, Value>,
    uploads: &[Upload],
) -> Result<(), String> {
    if encoding != spec.encoding {
        return Err(format!(
            "{} takes {}, not {encoding}",
            spec.path, spec.encoding
        ));
    }
    for name in fields.keys() {
        if !spec.known.contains(&name.as_str()) {
            return Err(format!("unknown field {name}"));
        }
    }
    let text = |name: &str| match fields.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Value::String(_)) | None | Some(Value::Null) => None,
        Some(other) => Some(other.to_string()),
    };
    match text("webhook_url") {
        Some(url) if url.starts_with("https://") => {}
        _ => return Err("webhook_url: an https URL is required".into()),
    }
    for name in spec.required {
        if text(name).is_none() {
            return Err(format!("{name} is required"));
        }
    }
    for (url_field, file_field) in spec.inputs {
        let url = text(url_field);
        let files: Vec<&Upload> = uploads.iter().filter(|u| u.field == *file_field).collect();
        match (url, files.as_slice()) {
            (Some(url), []) if url.starts_with("https://") || url.starts_with("http://") => {}
            (None, [file]) if !file.bytes.is_empty() && file.filename.is_some() => {}
            _ => {
                return Err(format!(
                    "exactly one of {url_field} and {file_field} is required"
                ));
            }
        }
    }
    for upload in uploads {
        if !spec.inputs.iter().any(|(_, file)| *file == upload.field) {
            return Err(format!("unexpected file part {}", upload.field));
        }
    }
    let number = |name: &str| {
        text(name).map(|t| {
            t.parse::<f64>()
                .map_err(|_| format!("{name}: not a number"))
        })
    };
    if let Some(pitch) = number("pitch").transpose()?
        && !(-12.0..=12.0).contains(&pitch)
    {
        return Err("pitch must be between -12 and 12".into());
    }
    if let Some(factor) = number("speed_change_factor").transpose()?
        && !(0.25..=4.0).contains(&factor)
    {
        return Err("speed_change_factor must be between 0.25 and 4.0".into());
    }
    if let Some(bit) = text("remove_background")
        && bit != "0"
        && bit != "1"
    {
        return Err("remove_background must be 0 or 1".into());
    }
    if let Some(stems) = text("stems") {
        let list: Vec<String> =
            serde_json::from_str(&stems).map_err(|_| "stems: a JSON list".to_owned())?;
        if list.is_empty() || list.iter().any(|s| !STEMS.contains(&s.as_str())) {
            return Err(format!("stems: unknown stem in {stems}"));
        }
    }
    if let Some(options) = text("preprocessing_options") {
        let list: Vec<String> = serde_json::from_str(&options)
            .map_err(|_| "preprocessing_options: a JSON list".to_owned())?;
        if list
            .iter()
            .any(|o| !["Denoise", "Deecho", "Dereverb"].contains(&o.as_str()))
        {
            return Err(format!(
                "preprocessing_options: unknown option in {options}"
            ));
        }
    }
    for (field, max) in [
        (
            "lyrics",
            if spec.path == "/v1/image_to_song" {
                3000
            } else {
                2000
            },
        ),
        ("prompt", 300),
    ] {
        if let Some(value) = text(field)
            && value.chars().count() > max
            && spec.path != "/v2/MusicAI"
        {
            return Err(format!("{field} is too long"));
        }
    }
    if spec.path == "/v2/MusicAI" {
        if ["prompt", "music_style", "lyrics"]
            .iter()
            .all(|f| text(f).is_none())
        {
            return Err("prompt, music_style or lyrics is required".into());
        }
        if let Some(model) = fields.get("model")
            && !["v6", "v6-pro", "v7", "v7-pro"].contains(&model.as_str().unwrap_or_default())
        {
            return Err("model: v6, v6-pro, v7 or v7-pro".into());
        }
        for flag in [
            "make_instrumental",
            "vocal_only",
            "generate_album_cover",
            "lyrics_timestamps",
        ] {
            if fields.get(flag).is_some_and(|v| !v.is_boolean()) {
                return Err(format!("{flag} must be a JSON boolean"));
            }
        }
    }
    if let (Some(start), Some(end)) = (
        number("start_time").transpose()?,
        number("end_time").transpose()?,
    ) && end <= start
    {
        return Err("end_time must come after start_time".into());
    }
    Ok(())
}
