//! The webhook end to end through the real SDK against moto_server: every callback variant,
//! every front end, every status code, token rotation, bad input. Ordering, duplicates and
//! parking are checked on both stores in store_conformance.rs.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use lambda_http::{Body, Request};
use musicgpt_webhook::adapters::dynamodb::DynamoTable;
use musicgpt_webhook::app::record::Recorder;
use musicgpt_webhook::domain::keys::KeyPrefix;
use musicgpt_webhook::domain::token::WebhookTokens;
use musicgpt_webhook::lambda::http::Webhook;
use musicgpt_webhook::lambda::http::{Delivery, Ingest};
use serde_json::Value;

const TOKEN: &str = "test-token-0123456789abcdef";
const ROTATED_TOKEN: &str = "rotated-token-9876543210";
const NOW: u64 = 1_774_596_501;
const MUSIC_AI_TASK: &str = "4fc2cdba-005d-4d14-a208-5fb02a2809da";
const C1: &str = "05092d5c-f8b1-4c96-a4a3-45bc00de6268";
const C2: &str = "52fcd3b6-3925-41ed-b4c6-aee17a29e40b";

type Item = HashMap<String, AttributeValue>;

async fn ingest_for(table: &str) -> Ingest<DynamoTable> {
    let tokens = WebhookTokens::parse(&format!("{TOKEN},{ROTATED_TOKEN}")).expect("test tokens");
    let store = DynamoTable::new(support::dynamo().await, table);
    let prefix = KeyPrefix::parse("music").expect("prefix");
    Ingest::<DynamoTable>::new(
        tokens,
        Recorder::<DynamoTable>::new(store, prefix, Duration::from_secs(90 * 86_400)),
    )
}

async fn webhook_for(table: &str) -> Webhook<DynamoTable> {
    Webhook::new(ingest_for(table).await)
}

fn event_text(name: &str) -> String {
    let path = format!("{}/events/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

fn event(name: &str) -> Request {
    lambda_http::request::from_str(&event_text(name))
        .unwrap_or_else(|e| panic!("parsing {name}: {e}"))
}

/// The callback body inside an event, as MusicGPT sent it.
fn body_of(name: &str) -> String {
    let event: Value = serde_json::from_str(&event_text(name)).expect("event JSON");
    event["body"].as_str().expect("event has a body").to_owned()
}

async fn call(webhook: &Webhook<DynamoTable>, request: Request) -> (u16, Value) {
    let response = webhook.handle(request).await;
    let status = response.status().as_u16();
    let body = match response.body() {
        Body::Text(text) => serde_json::from_str(text).expect("JSON response"),
        other => panic!("expected a text body, got {other:?}"),
    };
    (status, body)
}

fn find<'a>(items: &'a [Item], pk: &str, sk: &str) -> &'a Item {
    items
        .iter()
        .find(|i| text(i, "pk") == pk && text(i, "sk") == sk)
        .unwrap_or_else(|| panic!("no item {pk} / {sk}; have {:?}", keys_of(items)))
}

fn keys_of(items: &[Item]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|i| (text(i, "pk").to_owned(), text(i, "sk").to_owned()))
        .collect()
}

fn text<'a>(item: &'a Item, name: &str) -> &'a str {
    match item.get(name) {
        Some(AttributeValue::S(s)) => s,
        other => panic!("{name} is not a string: {other:?}"),
    }
}

fn number(item: &Item, name: &str) -> f64 {
    match item.get(name) {
        Some(AttributeValue::N(n)) => n.parse().expect("number"),
        other => panic!("{name} is not a number: {other:?}"),
    }
}

fn count_with_prefix(items: &[Item], sk_prefix: &str) -> usize {
    items
        .iter()
        .filter(|i| text(i, "sk").starts_with(sk_prefix))
        .count()
}

#[tokio::test]
async fn documented_sample_records_task_asset_and_raw_callback() {
    let table = support::fresh_table().await;
    let (status, body) = call(&webhook_for(&table).await, event("http-docs-sample.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outcome"], "recorded");
    let task = "12345678-abcd-1234-efgh-567890abcdef";
    assert_eq!(body["task_id"], task);
    let items = support::scan_all(&table).await;
    let pk = format!("TASK#{task}");
    let task_item = find(&items, &pk, "TASK");
    assert_eq!(text(task_item, "status"), "COMPLETED");
    assert_eq!(text(task_item, "status_message"), "Conversion successful");
    assert_eq!(text(task_item, "conversion_type"), "MUSIC_AI");
    assert_eq!(number(task_item, "cost"), 1.25);
    assert_eq!(text(task_item, "source_updated_at"), "2025-01-01T12:05:00Z");
    let asset = find(&items, &pk, "ASSET#audio#mp3");
    assert_eq!(text(asset, "state"), "PENDING");
    assert_eq!(text(asset, "s3_key"), format!("music/{task}/audio.mp3"));
    assert_eq!(
        text(asset, "source_url"),
        "https://musicgpt.s3.amazonaws.com/audiofile.mp3"
    );
    assert_eq!(number(asset, "attempts"), 0.0);
    assert_eq!(count_with_prefix(&items, "CALLBACK#"), 1);
    let raw = items
        .iter()
        .find(|i| text(i, "sk").starts_with("CALLBACK#"))
        .expect("raw callback");
    let stored: Value = serde_json::from_str(text(raw, "body")).expect("stored body is JSON");
    let sent: Value = serde_json::from_str(&body_of("http-docs-sample.json")).expect("sample JSON");
    assert_eq!(stored, sent, "the raw callback is kept whole");
    assert!(number(raw, "expires_at") > number(raw, "received_at"));
}

#[tokio::test]
async fn music_ai_audio_records_conversion_link_and_both_formats() {
    let table = support::fresh_table().await;
    let (status, body) = call(
        &webhook_for(&table).await,
        event("http-music-ai-audio-1.json"),
    )
    .await;
    assert_eq!((status, body["files"].as_u64()), (200, Some(2)), "{body}");
    let items = support::scan_all(&table).await;
    let pk = format!("TASK#{MUSIC_AI_TASK}");
    let conversion = find(&items, &pk, &format!("CONVERSION#{C1}"));
    assert_eq!(text(conversion, "status"), "COMPLETED");
    assert!(number(conversion, "duration_seconds") > 0.0);
    assert!(!text(conversion, "title").is_empty());
    // The lyrics live in items of their own: each can be as large as a whole callback.
    assert!(conversion.get("lyrics_timestamped").is_none());
    assert!(conversion.get("lyrics").is_none());
    let timestamped = find(&items, &pk, &format!("LYRICS_TIMESTAMPED#{C1}"));
    assert!(matches!(
        timestamped.get("lyrics_timestamped"),
        Some(AttributeValue::L(_))
    ));
    let lyrics = find(&items, &pk, &format!("LYRICS#{C1}"));
    assert!(text(lyrics, "lyrics").starts_with("[Verse 1]"));
    assert_eq!(text(lyrics, "item_type"), "LYRICS");
    assert_eq!(
        text(find(&items, &format!("CONV#{C1}"), "LINK"), "task_id"),
        MUSIC_AI_TASK
    );
    let mp3 = find(&items, &pk, &format!("ASSET#{C1}#mp3"));
    assert_eq!(
        text(mp3, "s3_key"),
        format!("music/{MUSIC_AI_TASK}/{C1}.mp3")
    );
    let wav = find(&items, &pk, &format!("ASSET#{C1}#wav"));
    assert_eq!(
        text(wav, "s3_key"),
        format!("music/{MUSIC_AI_TASK}/{C1}.wav")
    );
    assert!(text(wav, "source_url").ends_with(".wav"));
}

#[tokio::test]
async fn album_cover_links_both_songs_and_records_the_cover() {
    let table = support::fresh_table().await;
    let (status, _) = call(
        &webhook_for(&table).await,
        event("http-music-ai-cover.json"),
    )
    .await;
    assert_eq!(status, 200);
    let items = support::scan_all(&table).await;
    let pk = format!("TASK#{MUSIC_AI_TASK}");
    let cover = find(&items, &pk, &format!("ASSET#{MUSIC_AI_TASK}#cover"));
    assert_eq!(
        text(cover, "s3_key"),
        format!("music/{MUSIC_AI_TASK}/cover.png")
    );
    assert_eq!(text(cover, "asset_kind"), "cover");
    for conversion in [C1, C2] {
        assert_eq!(
            text(
                find(&items, &format!("CONV#{conversion}"), "LINK"),
                "task_id"
            ),
            MUSIC_AI_TASK
        );
        find(&items, &pk, &format!("CONVERSION#{conversion}"));
    }
}

#[tokio::test]
async fn stems_become_one_asset_per_stem_and_format() {
    let table = support::fresh_table().await;
    let (status, body) = call(&webhook_for(&table).await, event("http-stems.json")).await;
    assert_eq!((status, body["files"].as_u64()), (200, Some(4)), "{body}");
    let items = support::scan_all(&table).await;
    let task = "fc0f74e8-2a50-42e0-ae7f-855075c39176";
    let conversion = "2bae5dc8-34f1-441b-97dd-7e58b5543be1";
    let pk = format!("TASK#{task}");
    for (stem, ext) in [
        ("vocals", "mp3"),
        ("vocals", "wav"),
        ("instrumental", "mp3"),
        ("instrumental", "wav"),
    ] {
        let asset = find(
            &items,
            &pk,
            &format!("ASSET#{conversion}#stem#{stem}.{ext}"),
        );
        assert_eq!(
            text(asset, "s3_key"),
            format!("music/{task}/{conversion}/stems/{stem}.{ext}")
        );
        assert_eq!(text(asset, "stem"), stem);
    }
    assert_eq!(
        number(
            find(&items, &pk, &format!("CONVERSION#{conversion}")),
            "cost"
        ),
        0.5
    );
}

#[tokio::test]
async fn failures_record_status_and_message_without_files() {
    let table = support::fresh_table().await;
    let webhook = webhook_for(&table).await;
    for name in ["http-failure.json", "http-error-reason.json"] {
        let (status, body) = call(&webhook, event(name)).await;
        assert_eq!(
            (status, body["files"].as_u64()),
            (200, Some(0)),
            "{name}: {body}"
        );
    }
    let items = support::scan_all(&table).await;
    assert_eq!(count_with_prefix(&items, "ASSET#"), 0);
    let failure: Value = serde_json::from_str(&body_of("http-failure.json")).expect("json");
    let task = failure["task_id"].as_str().expect("task id");
    let conversion = failure["conversion_id"].as_str().expect("conversion id");
    let item = find(
        &items,
        &format!("TASK#{task}"),
        &format!("CONVERSION#{conversion}"),
    );
    assert_eq!(text(item, "status"), "FAILED");
    assert_eq!(
        text(item, "status_message"),
        failure["status_msg"].as_str().expect("status_msg")
    );
    let error: Value = serde_json::from_str(&body_of("http-error-reason.json")).expect("json");
    let task_item = find(
        &items,
        &format!("TASK#{}", error["task_id"].as_str().expect("id")),
        "TASK",
    );
    assert_eq!(text(task_item, "status"), "ERROR");
    assert_eq!(
        text(task_item, "status_message"),
        error["error"].as_str().expect("error text")
    );
}

#[tokio::test]
async fn unknown_subtypes_and_fields_are_stored_and_acknowledged() {
    let table = support::fresh_table().await;
    let (status, body) = call(
        &webhook_for(&table).await,
        event("http-unknown-subtype.json"),
    )
    .await;
    assert_eq!(
        (status, body["outcome"].as_str()),
        (200, Some("recorded")),
        "{body}"
    );
    let items = support::scan_all(&table).await;
    let raw = items
        .iter()
        .find(|i| text(i, "sk").starts_with("CALLBACK#"))
        .expect("raw callback");
    assert_eq!(text(raw, "subtype"), "music_ai_v3_preview");
    assert_eq!(text(raw, "kind"), "other");
    let stored: Value = serde_json::from_str(text(raw, "body")).expect("body");
    assert!(
        stored.get("preview_url").is_some(),
        "unknown fields are kept: {stored}"
    );
    assert_eq!(count_with_prefix(&items, "ASSET#"), 0);
}

#[tokio::test]
async fn a_streaming_url_is_recorded_on_its_conversion_and_never_copied() {
    let table = support::fresh_table().await;
    let (status, body) = call(
        &webhook_for(&table).await,
        event("http-music-ai-stream.json"),
    )
    .await;
    assert_eq!((status, body["files"].as_u64()), (200, Some(0)), "{body}");
    let items = support::scan_all(&table).await;
    let raw = items
        .iter()
        .find(|i| text(i, "sk").starts_with("CALLBACK#"))
        .expect("raw callback");
    assert_eq!(text(raw, "kind"), "streaming_url");
    let conversion = items
        .iter()
        .find(|i| text(i, "sk").starts_with("CONVERSION#"))
        .expect("conversion");
    assert!(text(conversion, "streaming_url").ends_with("index.m3u8"));
    assert!(number(conversion, "streaming_url_at") > 0.0);
    assert!(
        conversion.get("status").is_none(),
        "a preview is not the finished song"
    );
    assert_eq!(count_with_prefix(&items, "ASSET#"), 0);
}

#[tokio::test]
async fn numbers_as_strings_and_nulls_are_read_leniently() {
    let table = support::fresh_table().await;
    let (status, body) = call(
        &webhook_for(&table).await,
        event("http-numbers-as-strings.json"),
    )
    .await;
    assert_eq!((status, body["files"].as_u64()), (200, Some(1)), "{body}");
    let items = support::scan_all(&table).await;
    let conversion = items
        .iter()
        .find(|i| text(i, "sk").starts_with("CONVERSION#"))
        .expect("conversion");
    assert_eq!(number(conversion, "duration_seconds"), 213.99);
    assert_eq!(number(conversion, "cost"), 1.25);
    assert_eq!(
        conversion.get("is_flagged"),
        Some(&AttributeValue::Bool(false))
    );
    assert_eq!(text(conversion, "status"), "COMPLETED");
    assert!(
        conversion.get("lyrics").is_none(),
        "null lyrics are absent, not stored"
    );
}

#[tokio::test]
async fn every_front_end_shape_is_accepted() {
    let cases = [
        ("rest-v1.json", "recorded"),
        ("function-url.json", "recorded"),
        ("http-base64.json", "recorded"),
        ("http-text-plain.json", "recorded"),
        ("http-form.json", "recorded"),
        // A lyrics callback for a conversion nobody has linked yet: kept, not lost.
        ("http-no-content-type.json", "parked"),
    ];
    for (name, outcome) in cases {
        let table = support::fresh_table().await;
        let (status, body) = call(&webhook_for(&table).await, event(name)).await;
        assert_eq!(
            (status, body["outcome"].as_str()),
            (200, Some(outcome)),
            "{name}: {body}"
        );
        assert!(
            !support::scan_all(&table).await.is_empty(),
            "{name} wrote nothing"
        );
    }
}

#[tokio::test]
async fn base64_delivery_is_the_same_callback_as_plain() {
    let table = support::fresh_table().await;
    let webhook = webhook_for(&table).await;
    let (_, first) = call(&webhook, event("http-music-ai-audio-1.json")).await;
    let (_, second) = call(&webhook, event("http-base64.json")).await;
    assert_eq!(
        (first["outcome"].as_str(), second["outcome"].as_str()),
        (Some("recorded"), Some("duplicate"))
    );
}

#[tokio::test]
async fn form_bodies_become_the_same_fields() {
    let table = support::fresh_table().await;
    let (status, body) = call(&webhook_for(&table).await, event("http-form.json")).await;
    assert_eq!((status, body["files"].as_u64()), (200, Some(1)), "{body}");
    let items = support::scan_all(&table).await;
    let asset = items
        .iter()
        .find(|i| text(i, "sk").starts_with("ASSET#"))
        .expect("asset");
    assert!(text(asset, "source_url").starts_with("https://lalals.s3.amazonaws.com/"));
}

#[tokio::test]
async fn status_codes_for_token_method_size_and_storage() {
    let table = support::fresh_table().await;
    let webhook = webhook_for(&table).await;

    let (status, body) = call(&webhook, event("http-bad-token.json")).await;
    assert_eq!(status, 404);
    assert_eq!(body["message"], "not found", "no detail for a bad token");
    let (status, _) = call(&webhook, event("http-get.json")).await;
    assert_eq!(status, 405);
    let mut missing_token = event("http-music-ai-audio-1.json");
    *missing_token.uri_mut() = "/webhook/".parse().expect("uri");
    assert_eq!(call(&webhook, missing_token).await.0, 404);

    let mut oversized = event("http-music-ai-audio-1.json");
    let padding = "x".repeat(1024 * 1024);
    *oversized.body_mut() = Body::Text(format!(r#"{{"task_id":"t1","pad":"{padding}"}}"#));
    let (status, body) = call(&webhook, oversized).await;
    assert_eq!(status, 413, "{body}");
    let mut too_big_to_store = event("http-music-ai-audio-1.json");
    let big = format!(r#"{{"task_id":"t1","lyrics":"{}"}}"#, "y".repeat(300_000));
    *too_big_to_store.body_mut() = Body::Text(big.clone());
    assert_eq!(call(&webhook, too_big_to_store).await.0, 413);
    // The token was right: both bodies are kept in quarantine, and nothing else is written.
    let sha = |body: &str| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(body.as_bytes()));
    let oversized_body = format!(r#"{{"task_id":"t1","pad":"{padding}"}}"#);
    assert_eq!(
        support::quarantined(&table).await,
        [sha(&oversized_body), sha(&big)].into_iter().collect()
    );

    // DynamoDB failing (here: the table is gone) must answer 5xx so MusicGPT retries.
    let broken = Webhook::new(ingest_for("no-such-table").await);
    let (status, body) = call(&broken, event("http-music-ai-audio-1.json")).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        !body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no-such-table"),
        "internals stay in the log"
    );
}

#[tokio::test]
async fn both_rotated_tokens_are_accepted_and_others_are_not() {
    let table = support::fresh_table().await;
    let ingest = ingest_for(&table).await;
    let body = body_of("http-docs-sample.json");
    for (token, expected) in [
        (TOKEN, true),
        (ROTATED_TOKEN, true),
        ("retired-token-000000000", false),
    ] {
        let path = format!("/webhook/{token}");
        let delivery = Delivery {
            method: "POST",
            path: &path,
            content_type: None,
            body: body.as_bytes(),
        };
        let result = ingest.handle(delivery, NOW).await;
        assert_eq!(result.is_ok(), expected, "token {token}");
    }
}

#[tokio::test]
async fn malformed_corpus_is_refused_and_quarantined_without_panics() {
    #[derive(serde::Deserialize)]
    struct Case {
        name: String,
        content_type: Option<String>,
        body: String,
    }
    let path = format!(
        "{}/tests/data/corpus/malformed.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let cases: Vec<Case> =
        serde_json::from_str(&std::fs::read_to_string(path).expect("corpus")).expect("corpus JSON");
    assert!(cases.len() >= 50, "corpus has {} cases", cases.len());
    let table = support::fresh_table().await;
    let webhook = webhook_for(&table).await;
    for case in &cases {
        let mut request = event("http-music-ai-audio-1.json");
        request.headers_mut().remove("content-type");
        if let Some(ct) = &case.content_type {
            request
                .headers_mut()
                .insert("content-type", ct.parse().expect("header"));
        }
        *request.body_mut() = Body::Text(case.body.clone());
        let (status, body) = call(&webhook, request).await;
        assert_eq!(status, 400, "{}: {body}", case.name);
        assert_eq!(body["error"], "not_a_callback", "{}", case.name);
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}: no message",
            case.name
        );
    }
    let bodies: std::collections::BTreeSet<String> = cases
        .iter()
        .map(|case| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(case.body.as_bytes())))
        .collect();
    assert_eq!(
        support::quarantined(&table).await,
        bodies,
        "a malformed body wrote items other than its quarantine"
    );
}
