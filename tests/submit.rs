//! Submitting every conversion type against the fake MusicGPT (which checks the fields and
//! the multipart uploads it receives) and registering each task in a moto table; byId per
//! type; byUser page by page with a 429 in the middle; MusicGPT's refusals passed on.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use musicgpt_webhook::Error;
use musicgpt_webhook::adapters::dynamodb::DynamoTable;
use musicgpt_webhook::adapters::musicgpt::MusicGptApi;
use musicgpt_webhook::app::by_user::{ListOptions, list_by_user};
use musicgpt_webhook::app::ports::MusicGpt;
use musicgpt_webhook::app::record::{Outcome, Recorder};
use musicgpt_webhook::app::submit::{Registered, Registration, submit};
use musicgpt_webhook::domain::api::{Lookup, conversion_type_enum};
use musicgpt_webhook::domain::by_user::{ByUserQuery, PageKey, SortOrder, TimeWindow, iso8601};
use musicgpt_webhook::domain::conversion::{ConversionType, ENDPOINTS, RateLimit};
use musicgpt_webhook::domain::ids::Id;
use musicgpt_webhook::domain::keys::KeyPrefix;
use musicgpt_webhook::domain::requests::*;
use serde_json::{Value, json};
use support::musicgpt::{API_KEY, FakeMusicGpt, Received};

const NOW: u64 = 1_774_596_501;
const HOOK: &str = "https://api.example/webhook/test-token-0123456789abcdef";
const SONG: &str = "https://lalals.s3.amazonaws.com/conversions/source.mp3";

type Item = HashMap<String, AttributeValue>;

fn api(fake: &FakeMusicGpt) -> MusicGptApi {
    MusicGptApi::new(&fake.url, API_KEY).expect("client")
}

async fn recorder(table: &str) -> Recorder<DynamoTable> {
    let store = DynamoTable::new(support::dynamo().await, table);
    Recorder::<DynamoTable>::new(store, KeyPrefix::default(), Duration::from_secs(86_400))
}

fn url(u: &str) -> Option<Media> {
    Some(Media::Url(u.to_owned()))
}

/// A small local file to upload, with recognisable bytes.
fn local_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("submit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write the upload");
    path
}

fn s<'a>(item: &'a Item, name: &str) -> &'a str {
    match item.get(name) {
        Some(AttributeValue::S(v)) => v,
        _ => "",
    }
}

fn list(item: &Item, name: &str) -> Vec<String> {
    match item.get(name) {
        Some(AttributeValue::L(values)) => values
            .iter()
            .filter_map(|v| v.as_s().ok().cloned())
            .collect(),
        _ => Vec::new(),
    }
}

fn find<'a>(items: &'a [Item], pk: &str, sk: &str) -> Option<&'a Item> {
    items.iter().find(|i| s(i, "pk") == pk && s(i, "sk") == sk)
}

fn field(received: &Received, name: &str) -> Option<String> {
    match received.fields.get(name)? {
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Submits, then checks what the fake received and what the table holds; returns the
/// registration and what was received.
async fn submitted_and_registered(
    fake: &FakeMusicGpt,
    table: &str,
    request: impl Into<SubmitRequest>,
    expected_fields: &[(&str, &str)],
) -> (Registration, Received) {
    let request = request.into();
    let endpoint = request.endpoint();
    let recorder = recorder(table).await;
    let registration = submit(&api(fake), &recorder, &request, NOW)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", endpoint.command));
    let command = endpoint.command;
    assert_eq!(registration.endpoint.command, command);
    assert_eq!(registration.conversion_type, endpoint.conversion_type);

    let received = fake.received().pop().expect("a submission");
    assert_eq!(received.path, endpoint.path, "{command}");
    assert_eq!(received.status, 200, "{command}: {}", received.answer);
    assert_eq!(received.encoding, endpoint.encoding.as_str(), "{command}");
    assert_eq!(
        field(&received, "webhook_url").as_deref(),
        Some(HOOK),
        "{command}"
    );
    for (name, value) in expected_fields {
        assert_eq!(
            field(&received, name).as_deref(),
            Some(*value),
            "{command}: {name}"
        );
    }

    let items = support::scan_all(table).await;
    let conversions: Vec<String> = registration
        .conversions
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(
        conversions.len(),
        endpoint.expected_conversions(),
        "{command}"
    );
    match registration.submitted.task_id.as_deref() {
        Some(task) => {
            assert!(
                matches!(
                    registration.registered,
                    Registered::Recorded(Outcome::Recorded { .. })
                ),
                "{command}: {:?}",
                registration.registered
            );
            let pk = format!("TASK#{task}");
            let item =
                find(&items, &pk, "TASK").unwrap_or_else(|| panic!("{command}: no task item"));
            assert_eq!(s(item, "status"), "SUBMITTED", "{command}");
            assert_eq!(
                s(item, "conversion_type"),
                endpoint.conversion_type.as_str(),
                "{command}"
            );
            assert_eq!(list(item, "conversion_ids"), conversions, "{command}");
            for conversion in &conversions {
                let link = find(&items, &format!("CONV#{conversion}"), "LINK")
                    .unwrap_or_else(|| panic!("{command}: no link for {conversion}"));
                assert_eq!(s(link, "task_id"), task, "{command}");
            }
            // byId asked with the stored type finds the task; the fake knows it only by the
            // type it was submitted as.
            let stored = conversion_type_enum(s(item, "conversion_type"));
            assert_eq!(
                fake.task_type(task).as_deref(),
                Some(stored.as_str()),
                "{command}"
            );
            let id = Id::parse(task).expect("task id");
            let found = api(fake).by_task(&stored, &id).await.expect("byId");
            assert!(matches!(found, Lookup::Found(_)), "{command}: {found:?}");
        }
        None => {
            // No task id (cutter, speed changer): the registration waits on the conversion.
            let [conversion] = conversions.as_slice() else {
                panic!("{command}: {conversions:?}")
            };
            assert!(
                matches!(&registration.registered, Registered::Recorded(Outcome::Parked { conversion_id }) if conversion_id.as_str() == conversion),
                "{command}: {:?}",
                registration.registered
            );
            assert!(
                items
                    .iter()
                    .any(|i| s(i, "pk") == format!("CONV#{conversion}")
                        && s(i, "sk").starts_with("PARKED#")),
                "{command}: nothing parked"
            );
        }
    }
    (registration, received)
}

#[tokio::test]
async fn audio_generation_endpoints_are_submitted_and_registered() {
    let fake = FakeMusicGpt::start().await;
    let table = support::fresh_table().await;
    let hook = || HOOK.to_owned();

    let (music, _) = submitted_and_registered(
        &fake,
        &table,
        MusicAiRequest {
            prompt: Some("an epic orchestral clash".into()),
            music_style: Some("cinematic".into()),
            title: Some("Clash".into()),
            gender: Some(Gender::Female),
            model: Some(Model::V7Pro),
            generate_album_cover: Some(true),
            make_instrumental: Some(false),
            webhook_url: hook(),
            ..Default::default()
        },
        &[
            ("model", "v7-pro"),
            ("generate_album_cover", "true"),
            ("title", "Clash"),
            ("gender", "female"),
        ],
    )
    .await;
    assert_eq!(music.submitted.eta, Some(154.0));
    let sent = &fake.submissions()[0];
    assert_eq!(
        sent["make_instrumental"],
        json!(false),
        "JSON keeps booleans"
    );

    submitted_and_registered(
        &fake,
        &table,
        RemixRequest {
            audio: url(SONG),
            prompt: Some("jazzier".into()),
            lyrics: Some("la la".into()),
            gender: Some(Gender::Male),
            webhook_url: hook(),
        },
        &[
            ("audio_url", SONG),
            ("prompt", "jazzier"),
            ("lyrics", "la la"),
            ("gender", "male"),
        ],
    )
    .await;
    submitted_and_registered(
        &fake,
        &table,
        ExtendRequest {
            audio: url(SONG),
            extend_after: Some(30.5),
            prompt: Some("longer".into()),
            webhook_url: hook(),
            ..Default::default()
        },
        &[("extend_after", "30.5"), ("prompt", "longer")],
    )
    .await;
    submitted_and_registered(
        &fake,
        &table,
        InpaintRequest {
            audio: url(SONG),
            prompt: Some("a new bridge".into()),
            replace_start_at: Some(10.0),
            replace_end_at: Some(20.0),
            lyrics_section_to_replace: Some("old words".into()),
            webhook_url: hook(),
            ..Default::default()
        },
        &[
            ("replace_start_at", "10"),
            ("replace_end_at", "20"),
            ("lyrics_section_to_replace", "old words"),
        ],
    )
    .await;
    submitted_and_registered(
        &fake,
        &table,
        SingOverInstrumentalRequest {
            audio: url(SONG),
            prompt: Some("soulful".into()),
            lyrics: Some("oh oh".into()),
            webhook_url: hook(),
            ..Default::default()
        },
        &[("prompt", "soulful"), ("lyrics", "oh oh")],
    )
    .await;
    let image = local_file("cover.png", b"\x89PNG fake image bytes");
    let (_, received) = submitted_and_registered(
        &fake,
        &table,
        ImageToSongRequest {
            image: Some(Media::File(image)),
            prompt: Some("a sunset".into()),
            bpm: Some(96),
            key: Some("Am".into()),
            webhook_url: hook(),
            ..Default::default()
        },
        &[("bpm", "96"), ("key", "Am")],
    )
    .await;
    let upload = &received.uploads[0];
    assert_eq!(upload.field, "image_file");
    assert_eq!(upload.filename.as_deref(), Some("cover.png"));
    assert_eq!(upload.content_type.as_deref(), Some("image/png"));
    assert_eq!(upload.bytes, b"\x89PNG fake image bytes");
}

#[tokio::test]
async fn enhancement_endpoints_are_submitted_and_registered() {
    let fake = FakeMusicGpt::start().await;
    let table = support::fresh_table().await;
    let hook = || HOOK.to_owned();
    let song = local_file("voice.wav", b"RIFF fake wave bytes");

    submitted_and_registered(
        &fake,
        &table,
        CoverRequest {
            audio: url(SONG),
            voice_id: Some("Drake".into()),
            pitch: Some(-12),
            webhook_url: hook(),
        },
        &[("voice_id", "Drake"), ("pitch", "-12")],
    )
    .await;
    let (_, received) = submitted_and_registered(
        &fake,
        &table,
        VoiceChangerRequest {
            audio: Some(Media::File(song.clone())),
            voice_id: Some("Adele".into()),
            remove_background: Some(true),
            pitch: Some(3),
            webhook_url: hook(),
        },
        &[
            ("voice_id", "Adele"),
            ("remove_background", "1"),
            ("pitch", "3"),
        ],
    )
    .await;
    assert_eq!(received.uploads[0].field, "audio_file");
    assert_eq!(received.uploads[0].filename.as_deref(), Some("voice.wav"));
    assert_eq!(received.uploads[0].bytes, b"RIFF fake wave bytes");
    assert!(!received.fields.contains_key("audio_url"));

    submitted_and_registered(
        &fake,
        &table,
        TextToSpeechRequest {
            text: Some("Hello there".into()),
            voice_id: Some("narrator".into()),
            gender: Some(Gender::Neutral),
            webhook_url: hook(),
            ..Default::default()
        },
        &[
            ("text", "Hello there"),
            ("voice_id", "narrator"),
            ("gender", "neutral"),
        ],
    )
    .await;
    submitted_and_registered(
        &fake,
        &table,
        ExtractionRequest {
            audio: url(SONG),
            stems: vec![Stem::Vocals, Stem::Drums, Stem::HiHat],
            preprocessing_options: vec![Preprocessing::Denoise, Preprocessing::Dereverb],
            eco_mode: Some(true),
            webhook_url: hook(),
        },
        &[
            ("stems", r#"["vocals","drums","hi_hat"]"#),
            ("preprocessing_options", r#"["Denoise","Dereverb"]"#),
            ("eco_mode", "true"),
        ],
    )
    .await;
    submitted_and_registered(
        &fake,
        &table,
        DenoiseRequest {
            audio: url(SONG),
            webhook_url: hook(),
        },
        &[("audio_url", SONG)],
    )
    .await;
    submitted_and_registered(
        &fake,
        &table,
        DeechoRequest {
            audio: Some(Media::File(song.clone())),
            webhook_url: hook(),
        },
        &[],
    )
    .await;
    submitted_and_registered(
        &fake,
        &table,
        DereverbRequest {
            audio: url(SONG),
            webhook_url: hook(),
        },
        &[("audio_url", SONG)],
    )
    .await;
    submitted_and_registered(
        &fake,
        &table,
        TranscribeRequest {
            audio: url(SONG),
            language: Some("en".into()),
            translate: Some(false),
            transcription_format: Some("srt".into()),
            word_timestamps: Some(true),
            webhook_url: hook(),
        },
        &[
            ("language", "en"),
            ("translate", "false"),
            ("transcription_format", "srt"),
            ("word_timestamps", "true"),
        ],
    )
    .await;
    let (_, received) = submitted_and_registered(
        &fake,
        &table,
        SoundGeneratorRequest {
            prompt: Some("rain & distant thunder".into()),
            audio_length: Some(12),
            webhook_url: hook(),
        },
        &[("prompt", "rain & distant thunder"), ("audio_length", "12")],
    )
    .await;
    assert_eq!(received.encoding, "form");
}

#[tokio::test]
async fn utility_endpoints_are_submitted_and_registered() {
    let fake = FakeMusicGpt::start().await;
    let table = support::fresh_table().await;
    let hook = || HOOK.to_owned();
    let song = local_file("mix.flac", b"fLaC fake flac bytes");
    let reference = local_file("reference.mp3", b"ID3 fake reference bytes");

    let (_, received) = submitted_and_registered(
        &fake,
        &table,
        MasteringRequest {
            audio: Some(Media::File(song.clone())),
            reference: Some(Media::File(reference)),
            output_extension: Some(AudioFormat::Wav),
            webhook_url: hook(),
        },
        &[("output_extension", "wav")],
    )
    .await;
    let mut parts: Vec<(&str, &[u8])> = received
        .uploads
        .iter()
        .map(|u| (u.field.as_str(), u.bytes.as_slice()))
        .collect();
    parts.sort();
    assert_eq!(
        parts,
        [
            ("audio_file", &b"fLaC fake flac bytes"[..]),
            ("reference_audio_file", &b"ID3 fake reference bytes"[..])
        ]
    );

    submitted_and_registered(
        &fake,
        &table,
        CutterRequest {
            audio: url(SONG),
            start_time: Some(1_000),
            end_time: Some(31_000),
            output_extension: Some(AudioFormat::Mp3),
            webhook_url: hook(),
        },
        &[
            ("start_time", "1000"),
            ("end_time", "31000"),
            ("output_extension", "mp3"),
        ],
    )
    .await;
    submitted_and_registered(
        &fake,
        &table,
        SpeedChangerRequest {
            audio: url(SONG),
            speed_change_factor: Some(0.25),
            output_extension: None,
            webhook_url: hook(),
        },
        &[("speed_change_factor", "0.25")],
    )
    .await;
    let (midi, _) = submitted_and_registered(
        &fake,
        &table,
        AudioToMidiRequest {
            audio: url(SONG),
            sonify_midi: Some(false),
            save_note_events: Some(true),
            webhook_url: hook(),
        },
        &[("sonify_midi", "false"), ("save_note_events", "true")],
    )
    .await;
    assert!(midi.conversions.is_empty() && midi.submitted.task_id.is_some());
    submitted_and_registered(
        &fake,
        &table,
        KeyBpmRequest {
            audio: Some(Media::File(song)),
            webhook_url: hook(),
        },
        &[],
    )
    .await;
    submitted_and_registered(
        &fake,
        &table,
        FileConvertRequest {
            audio: url(SONG),
            target_format: Some(AudioFormat::Flac),
            target_sr: Some(48_000),
            target_bit_depth: Some(BitDepth::Bits24),
            webhook_url: hook(),
        },
        &[
            ("target_format", "flac"),
            ("target_sr", "48000"),
            ("target_bit_depth", "24"),
        ],
    )
    .await;

    // Every endpoint of the table was exercised by one of the three tests (21 in all).
    assert_eq!(ENDPOINTS.len(), 21);
}

#[tokio::test]
async fn by_id_asks_with_the_docs_spelling_whatever_the_caller_says() {
    let fake = FakeMusicGpt::start().await;
    fake.set_task_of_type(
        "t-voice",
        "VOICE_CONVERSION",
        json!({"task_id": "t-voice", "status": "COMPLETED"}),
    );
    fake.set_task_of_type(
        "t-file",
        "FILE_CONVERT",
        json!({"task_id": "t-file", "status": "COMPLETED"}),
    );
    fake.set_task_of_type(
        "t-noise",
        "DENOISING",
        json!({"task_id": "t-noise", "status": "COMPLETED"}),
    );
    let api = api(&fake);
    for (spelling, task) in [
        ("VOICE_CHANGER", "t-voice"),
        ("Voice Changer", "t-voice"),
        ("FILE_CONVERSION", "t-file"),
        ("DENOISE", "t-noise"),
    ] {
        let found = api
            .by_task(spelling, &Id::parse(task).expect("id"))
            .await
            .expect("byId");
        assert!(matches!(found, Lookup::Found(_)), "{spelling}: {found:?}");
    }
    let wrong = api
        .by_task("COVER", &Id::parse("t-voice").expect("id"))
        .await
        .expect("byId");
    assert_eq!(wrong, Lookup::NotFound);
    let asked: Vec<String> = fake.requests().into_iter().map(|(_, path)| path).collect();
    assert!(
        asked[0].contains("conversionType=VOICE_CONVERSION"),
        "{asked:?}"
    );
    assert!(
        asked[2].contains("conversionType=FILE_CONVERT"),
        "{asked:?}"
    );
    assert!(asked[3].contains("conversionType=DENOISING"), "{asked:?}");
}

fn user_conversions(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({
                "task_id": format!("user-task-{i}"),
                "conversionType": if i % 2 == 0 { "MUSIC_AI" } else { "VOICE_CONVERSION" },
                "status": "COMPLETED",
                "createdAt": iso8601(NOW - 3_600 + i as u64 * 60),
            })
        })
        .collect()
}

fn window() -> TimeWindow {
    TimeWindow {
        start: NOW - 7_200,
        end: NOW,
    }
}

fn quick() -> ListOptions {
    ListOptions {
        first_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(80),
        ..ListOptions::default()
    }
}

#[tokio::test]
async fn by_user_reads_every_page_waits_out_a_429_and_keeps_to_the_rate() {
    let fake = FakeMusicGpt::start().await;
    fake.set_user_conversions(user_conversions(7));
    fake.fail_call("/api/public/v1/byUser", 2, 429);
    // 1200 calls a minute: 50 ms apart.
    let rate = RateLimit::from_settings(None, Some("1200")).expect("rate");
    let api = api(&fake).with_rate_limit(rate);
    let mut query = ByUserQuery::new(window());
    query.limit = 3;
    query.sort_order = SortOrder::Asc;

    let listing = list_by_user(&api, &query, None, &quick())
        .await
        .expect("listing");
    assert!(listing.complete, "{listing:?}");
    assert_eq!((listing.pages, listing.busy), (3, 1));
    let tasks: Vec<&str> = listing
        .conversions
        .iter()
        .filter_map(|c| c["task_id"].as_str())
        .collect();
    assert_eq!(
        tasks,
        (0..7).map(|i| format!("user-task-{i}")).collect::<Vec<_>>()
    );

    // Four calls: page 1, the 429, page 2 again with the same key, page 3.
    let calls: Vec<String> = fake
        .requests()
        .into_iter()
        .map(|(_, path)| path)
        .filter(|p| p.starts_with("/api/public/v1/byUser"))
        .collect();
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert!(!calls[0].contains("LastEvaluatedKey"));
    assert_eq!(calls[1], calls[2], "the busy page is asked again as it was");
    assert!(
        calls[1].contains("LastEvaluatedKey=%7B"),
        "the object key goes back as JSON: {}",
        calls[1]
    );
    assert!(
        calls[0].contains("startDate=2026-03-27T05%3A28%3A21Z")
            && calls[0].contains("sortOrder=ASC")
            && calls[0].contains("limit=3"),
        "{}",
        calls[0]
    );
    let times = fake.times("/api/public/v1/byUser");
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= Duration::from_millis(45),
            "calls closer than the rate allows: {times:?}"
        );
    }
}

#[tokio::test]
async fn by_user_filters_by_type_and_resumes_where_a_busy_musicgpt_stopped_it() {
    let fake = FakeMusicGpt::start().await;
    fake.set_user_conversions(user_conversions(9));
    fake.fail_call("/api/public/v1/byUser", 2, 429);
    fake.fail_call("/api/public/v1/byUser", 3, 503);
    let api = api(&fake);
    let mut query = ByUserQuery::new(window());
    query.conversion_type = ConversionType::parse("VOICE_CHANGER");
    query.limit = 2;
    let options = ListOptions {
        busy_retries: 1,
        ..quick()
    };

    let first = list_by_user(&api, &query, None, &options)
        .await
        .expect("listing");
    assert!(!first.complete, "{first:?}");
    assert_eq!((first.pages, first.conversions.len()), (1, 2));
    let resume: Option<PageKey> = first.resume.clone();
    assert!(resume.is_some());
    assert!(
        first.stopped.as_deref().is_some_and(|s| s.contains("503")),
        "{first:?}"
    );

    let rest = list_by_user(&api, &query, resume, &options)
        .await
        .expect("listing");
    assert!(rest.complete, "{rest:?}");
    let all: Vec<Value> = first
        .conversions
        .into_iter()
        .chain(rest.conversions)
        .collect();
    assert_eq!(all.len(), 4, "the four voice conversions of nine");
    assert!(
        all.iter()
            .all(|c| c["conversionType"] == "VOICE_CONVERSION")
    );
    assert!(
        fake.requests()
            .iter()
            .all(|(_, p)| p.contains("conversionType=VOICE_CONVERSION"))
    );
}

#[tokio::test]
async fn a_refusal_passes_musicgpts_message_and_registers_nothing() {
    let fake = FakeMusicGpt::start().await;
    let table = support::fresh_table().await;
    fake.reject_next_submission(
        422,
        json!({"success": false, "message": format!("voice_id Nobody not found (webhook {HOOK}, key {API_KEY})")}),
    );
    let request: SubmitRequest = CoverRequest {
        audio: url(SONG),
        voice_id: Some("Nobody".into()),
        pitch: None,
        webhook_url: HOOK.into(),
    }
    .into();
    let err = submit(&api(&fake), &recorder(&table).await, &request, NOW)
        .await
        .expect_err("refused");
    let text = err.to_string();
    assert!(matches!(err, Error::ProviderRejected(_)), "{err:?}");
    assert!(!err.is_retryable());
    assert!(
        text.contains("POST /v1/Cover answered 422") && text.contains("voice_id Nobody not found"),
        "{text}"
    );
    assert!(
        !text.contains(API_KEY) && !text.contains("test-token-0123456789abcdef"),
        "secrets leaked: {text}"
    );
    assert!(support::scan_all(&table).await.is_empty());
}

#[tokio::test]
async fn a_429_says_which_limit_and_plan() {
    let fake = FakeMusicGpt::start().await;
    let table = support::fresh_table().await;
    let recorder = recorder(&table).await;
    let plus =
        api(&fake).with_rate_limit(RateLimit::from_settings(Some("plus"), None).expect("plan"));
    let cases: Vec<(SubmitRequest, &str)> = vec![
        (
            RemixRequest {
                audio: url(SONG),
                prompt: Some("p".into()),
                webhook_url: HOOK.into(),
                ..Default::default()
            }
            .into(),
            "over the audio generation limit: the PLUS plan allows 5 tasks at once",
        ),
        (
            KeyBpmRequest {
                audio: url(SONG),
                webhook_url: HOOK.into(),
            }
            .into(),
            "over the utilities limit: the PLUS plan allows 5",
        ),
        (
            DenoiseRequest {
                audio: url(SONG),
                webhook_url: HOOK.into(),
            }
            .into(),
            "over the enhancements limit",
        ),
    ];
    for (request, expected) in cases {
        fake.fail_next(&[429]);
        let err = submit(&plus, &recorder, &request, NOW)
            .await
            .expect_err("busy");
        assert!(err.is_retryable(), "{err:?}");
        assert!(
            err.to_string().contains("429") && err.to_string().contains(expected),
            "{err}"
        );
    }
    // Without a plan, every plan's figure.
    fake.fail_next(&[429]);
    let query = ByUserQuery::new(window());
    let err = api(&fake).by_user(&query, None).await.expect_err("busy");
    assert!(
        err.to_string()
            .contains("Free 20, PLUS 200, PRO 500 calls a minute"),
        "{err}"
    );
    assert!(support::scan_all(&table).await.is_empty());
}

#[tokio::test]
async fn nothing_is_sent_for_a_request_that_fails_its_checks() {
    let fake = FakeMusicGpt::start().await;
    let table = support::fresh_table().await;
    let recorder = recorder(&table).await;
    let missing = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-such-file.wav");
    let empty = local_file("empty.wav", b"");
    let cases: Vec<(SubmitRequest, &str)> = vec![
        (
            CoverRequest {
                audio: url(SONG),
                voice_id: Some("v".into()),
                pitch: Some(13),
                webhook_url: HOOK.into(),
            }
            .into(),
            "cover: pitch must be between -12 and 12",
        ),
        (
            SpeedChangerRequest {
                audio: url(SONG),
                speed_change_factor: Some(5.0),
                webhook_url: HOOK.into(),
                ..Default::default()
            }
            .into(),
            "speed_change_factor must be between 0.25 and 4.0",
        ),
        (
            RemixRequest {
                prompt: Some("p".into()),
                webhook_url: HOOK.into(),
                ..Default::default()
            }
            .into(),
            "remix: audio_url or audio_file is required",
        ),
        (
            DenoiseRequest {
                audio: Some(Media::File(missing)),
                webhook_url: HOOK.into(),
            }
            .into(),
            "denoise: audio_file",
        ),
        (
            DenoiseRequest {
                audio: Some(Media::File(empty)),
                webhook_url: HOOK.into(),
            }
            .into(),
            "the file is empty",
        ),
        (
            MusicAiRequest {
                prompt: Some("p".into()),
                webhook_url: String::new(),
                ..Default::default()
            }
            .into(),
            "webhook_url is required",
        ),
    ];
    for (request, expected) in cases {
        let err = submit(&api(&fake), &recorder, &request, NOW)
            .await
            .expect_err(expected);
        assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
        assert!(
            err.to_string().contains(expected),
            "{expected:?} not in {err}"
        );
    }
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
    assert!(support::scan_all(&table).await.is_empty());
}

#[tokio::test]
async fn an_answer_without_any_id_is_reported_not_registered() {
    let fake = FakeMusicGpt::start().await;
    let table = support::fresh_table().await;
    fake.answer_submissions_with(json!({"success": true, "message": "queued"}));
    let request: SubmitRequest = MusicAiRequest {
        prompt: Some("p".into()),
        webhook_url: HOOK.into(),
        ..Default::default()
    }
    .into();
    let registration = submit(&api(&fake), &recorder(&table).await, &request, NOW)
        .await
        .expect("submitted");
    assert!(
        matches!(registration.registered, Registered::Skipped(_)),
        "{:?}",
        registration.registered
    );
    assert_eq!(registration.submitted.message.as_deref(), Some("queued"));
    assert!(support::scan_all(&table).await.is_empty());
}

/// The command line end to end: the binary against the fake MusicGPT and moto.
async fn run_cli(fake: &FakeMusicGpt, table: &str, args: &[&str]) -> (i32, String, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_musicgpt-webhook"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("MUSICGPT_API_KEY", API_KEY)
        .env("MUSICGPT_API_URL", &fake.url)
        .env("MUSICGPT_PLAN", "free")
        .env("TABLE_NAME", table)
        .env("WEBHOOK_URL", HOOK)
        .env("AWS_ENDPOINT_URL", support::endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .await
        .expect("run musicgpt-webhook");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_command_line_submits_registers_and_explains() {
    let fake = FakeMusicGpt::start().await;
    let table = support::fresh_table().await;
    let file = local_file("take.wav", b"RIFF a take to clean");
    let path = file.to_string_lossy().into_owned();

    let (code, out, err) = run_cli(
        &fake,
        &table,
        &[
            "submit",
            "voice-changer",
            "--audio-file",
            &path,
            "--voice-id",
            "Adele",
            "--pitch",
            "-2",
            "--remove-background",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let answer: Value = serde_json::from_str(out.trim()).expect("JSON out");
    assert_eq!(answer["conversion_type"], "VOICE_CONVERSION");
    assert_eq!(answer["registered"], "recorded");
    let task = answer["task_id"].as_str().expect("task id").to_owned();
    let received = fake.received().pop().expect("received");
    assert_eq!(received.uploads[0].bytes, b"RIFF a take to clean");
    assert_eq!(field(&received, "pitch").as_deref(), Some("-2"));
    let items = support::scan_all(&table).await;
    let item = find(&items, &format!("TASK#{task}"), "TASK").expect("registered");
    assert_eq!(s(item, "status"), "SUBMITTED");

    // Looked up with a client's spelling; the docs' one is sent.
    let (code, out, err) = run_cli(
        &fake,
        &table,
        &[
            "by-id",
            "--conversion-type",
            "VOICE_CHANGER",
            "--task-id",
            &task,
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(r#""found":true"#), "{out}");

    // A usage mistake exits 2 and names the field; nothing is sent.
    let before = fake.requests().len();
    let (code, _, err) = run_cli(
        &fake,
        &table,
        &[
            "submit",
            "cover",
            "--audio-url",
            SONG,
            "--voice-id",
            "v",
            "--pitch",
            "20",
        ],
    )
    .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--pitch"), "{err}");
    let (code, out, _) = run_cli(
        &fake,
        &table,
        &["submit", "denoise", "--audio-url", SONG, "--dry-run"],
    )
    .await;
    assert_eq!(code, 0);
    assert!(
        out.contains("webhook/<token>") && !out.contains("test-token-0123456789abcdef"),
        "{out}"
    );
    assert_eq!(fake.requests().len(), before);

    // A 429 says which limit and what the Free plan allows.
    fake.fail_next(&[429]);
    let (code, _, err) = run_cli(&fake, &table, &["submit", "music-ai", "--prompt", "x"]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("over the audio generation limit: the Free plan allows 1 task at once"),
        "{err}"
    );
    assert!(!err.contains(API_KEY));

    let (code, out, _) = run_cli(&fake, &table, &["completions", "zsh"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("#compdef musicgpt-webhook"),
        "{}",
        &out[..out.len().min(200)]
    );
}
