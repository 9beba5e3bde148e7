//! The two triggers of the copy engine: the copier's DynamoDB stream handler, driven in-process
//! by `events/dynamodb-stream-pending.json`, and `COPY_MODE=inline` in the webhook.
#[path = "support/audio_server.rs"]
mod audio_server;
#[path = "support/copy_kit.rs"]
mod copy_kit;
mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::dynamodb::Event;
use copy_kit::{Kit, fast_policy, now_secs};
use lambda_http::RequestExt;
use musicgpt_webhook::adapters::AwsPorts;
use musicgpt_webhook::domain::callback::Callback;
use musicgpt_webhook::domain::keys::AssetKey;
use musicgpt_webhook::domain::retry::RetryPolicy;
use musicgpt_webhook::domain::status::AssetState;
use musicgpt_webhook::lambda::budget::Budget;
use musicgpt_webhook::lambda::http::Webhook;
use musicgpt_webhook::lambda::inline::InlineCopy;
use musicgpt_webhook::lambda::stream::{StreamCopier, newly_pending};
use serde_json::json;
use tokio::time::Instant;

const STREAM_EVENT: &str = include_str!("../events/dynamodb-stream-pending.json");
const TASK: &str = "4fc2cdba-005d-4d14-a208-5fb02a2809da";
const C1: &str = "05092d5c-f8b1-4c96-a4a3-45bc00de6268";
const C2: &str = "52fcd3b6-3925-41ed-b4c6-aee17a29e40b";

fn stream_event() -> Event {
    serde_json::from_str(STREAM_EVENT).expect("the stream event parses")
}

fn asset(sk: String) -> AssetKey {
    AssetKey {
        pk: format!("TASK#{TASK}"),
        sk,
    }
}

fn mp3(conversion: &str) -> AssetKey {
    asset(format!("ASSET#{conversion}#mp3"))
}

fn wav(conversion: &str) -> AssetKey {
    asset(format!("ASSET#{conversion}#wav"))
}

fn cover() -> AssetKey {
    asset(format!("ASSET#{TASK}#cover"))
}

async fn record(kit: &Kit, body: serde_json::Value) {
    let callback = Callback::parse(body.to_string().as_bytes(), None).expect("valid callback");
    kit.ingest
        .recorder()
        .record(&callback, now_secs())
        .await
        .expect("record the callback");
}

/// The fixture's task, recorded the way the webhook does, with its files on the audio server.
async fn record_fixture_task(kit: &Kit, cover_path: &str) {
    let url = |path: &str| kit.server.url(path);
    record(
        kit,
        json!({"task_id": TASK, "conversion_id": C1, "success": true,
               "conversion_path": url("/ok/4000/c1.mp3"),
               "conversion_path_wav": url("/chunked/9000000/c1.wav")}),
    )
    .await;
    record(
        kit,
        json!({"subtype": "album_cover_generation", "success": true, "task_id": TASK,
               "image_path": url(cover_path), "conversion_id_1": C1, "conversion_id_2": C2}),
    )
    .await;
    record(
        kit,
        json!({"task_id": TASK, "conversion_id": C2, "success": true,
               "conversion_path": url("/ok/2000/c2.mp3")}),
    )
    .await;
}

#[test]
fn only_newly_pending_assets_start_a_copy() {
    let event = stream_event();
    let selected: Vec<(String, AssetKey)> = event
        .records
        .iter()
        .filter_map(|r| {
            newly_pending(r).map(|a| (r.change.sequence_number.clone().unwrap_or_default(), a))
        })
        .collect();
    // Skipped: the task and callback items, the lease (PENDING -> PENDING), the STORED
    // update, and the removal. Taken: three INSERTs and a FAILED asset set back to PENDING.
    assert_eq!(
        selected,
        vec![
            ("40000000000000000002".to_owned(), mp3(C1)),
            ("40000000000000000003".to_owned(), wav(C1)),
            ("40000000000000000006".to_owned(), cover()),
            ("40000000000000000008".to_owned(), mp3(C2)),
        ]
    );
}

#[tokio::test]
async fn the_copier_copies_a_batch_and_leaves_a_later_retry_to_the_sweep() {
    let kit = Kit::builder()
        .policy(RetryPolicy {
            base_delay: Duration::from_secs(3600),
            max_delay: Duration::from_secs(3600),
            ..fast_policy(5)
        })
        .build()
        .await;
    record_fixture_task(&kit, "/status/500/cover.png").await;
    let copier = StreamCopier::<AwsPorts>::new(kit.engine.clone());
    let invoke = || {
        copier.handle(lambda_runtime::LambdaEvent::new(
            stream_event(),
            lambda_runtime::Context::default(),
        ))
    };

    let response = invoke().await.expect("the batch is handled");
    let response = serde_json::to_value(&response).expect("response serialises");
    // The cover's next try is an hour away: PENDING with it recorded, the sweep's to take, not
    // a failure for Lambda to redeliver into the dead-letter queue.
    assert_eq!(response, json!({"batchItemFailures": []}));
    for stored in [mp3(C1), wav(C1), mp3(C2)] {
        let item = kit.item(&stored).await;
        assert_eq!(item.state, AssetState::Stored, "{}", stored.sk);
        assert!(kit.object_exists(&item.s3_key).await);
    }
    let waiting = kit.item(&cover()).await;
    assert_eq!((waiting.state.as_str(), waiting.attempts), ("PENDING", 1));
    assert!(
        waiting
            .next_try_at
            .is_some_and(|at| at >= copy_kit::now_secs() + 3590),
        "{waiting:?}"
    );

    // Lambda delivers the batch again anyway: nothing is copied twice, the cover still waits.
    let again = invoke().await.expect("the batch is handled");
    assert!(again.batch_item_failures.is_empty());
    for path in [
        "/ok/4000/c1.mp3",
        "/chunked/9000000/c1.wav",
        "/ok/2000/c2.mp3",
    ] {
        assert_eq!(kit.server.hits(path), 1, "{path}");
    }
    assert_eq!(kit.server.hits("/status/500/cover.png"), 1);
    assert_eq!(kit.open_uploads().await, 0);
}

#[tokio::test]
async fn a_short_backoff_is_waited_out_within_the_invocation() {
    let kit = Kit::builder()
        .policy(RetryPolicy {
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(1),
            ..fast_policy(3)
        })
        .build()
        .await;
    record_fixture_task(&kit, "/flaky/1/3000/cover.png").await;
    let copier = StreamCopier::<AwsPorts>::new(kit.engine.clone());
    let response = copier
        .handle(lambda_runtime::LambdaEvent::new(
            stream_event(),
            lambda_runtime::Context::default(),
        ))
        .await
        .expect("the batch is handled");
    assert!(response.batch_item_failures.is_empty());
    let item = kit.item(&cover()).await;
    assert_eq!((item.state.as_str(), item.attempts), ("STORED", 1));
    assert_eq!(kit.server.hits("/flaky/1/3000/cover.png"), 2);
}

/// An API Gateway event from events/ with its body replaced.
fn webhook_request(body: &serde_json::Value) -> lambda_http::Request {
    let mut event: serde_json::Value =
        serde_json::from_str(include_str!("../events/http-music-ai-audio-1.json"))
            .expect("event parses");
    event["body"] = json!(body.to_string());
    event["headers"]
        .as_object_mut()
        .expect("headers")
        .remove("content-length");
    lambda_http::request::from_str(&event.to_string()).expect("a lambda_http request")
}

#[tokio::test]
async fn inline_mode_copies_before_answering_and_leaves_what_does_not_fit() {
    let kit = Kit::builder()
        .options(musicgpt_webhook::adapters::source::SourceOptions {
            read_timeout: Duration::from_secs(5),
            ..copy_kit::fast_options()
        })
        .build()
        .await;
    let inline = InlineCopy::<AwsPorts>::new(kit.engine.clone()).with_budget(Budget {
        margin: Duration::ZERO,
        fallback: Duration::from_millis(1500),
    });
    let webhook = Webhook::with_follow_up(kit.ingest.clone(), inline);
    let body = json!({"task_id": "inline-1", "conversion_id": "c-1", "success": true,
        "conversion_path": kit.server.url("/ok/700000/i.mp3"),
        "conversion_path_wav": kit.server.url("/trickle/20971520/i.wav")});
    let started = Instant::now();
    let response = webhook.handle(webhook_request(&body)).await;
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(4));
    let task = |sk: &str| AssetKey {
        pk: "TASK#inline-1".into(),
        sk: sk.into(),
    };
    let stored = kit.item(&task("ASSET#c-1#mp3")).await;
    assert_eq!(stored.state, AssetState::Stored);
    let (sha, size, _) = kit.object(&stored.s3_key).await;
    assert_eq!(
        (sha, size),
        (audio_server::sha256("i.mp3", 700_000), 700_000)
    );
    let left = kit.item(&task("ASSET#c-1#wav")).await;
    assert_eq!((left.state.as_str(), left.attempts), ("PENDING", 0));
    assert!(left.lease_owner.is_none());
    assert_eq!(kit.open_uploads().await, 0);
}

#[tokio::test]
async fn inline_mode_takes_its_budget_from_the_lambda_deadline() {
    let kit = Kit::new().await;
    let inline = InlineCopy::<AwsPorts>::new(kit.engine.clone()).with_budget(Budget {
        margin: Duration::from_secs(1),
        fallback: Duration::from_secs(60),
    });
    let webhook = Webhook::with_follow_up(kit.ingest.clone(), inline);
    let body = json!({"task_id": "inline-2", "conversion_id": "c-2", "success": true,
        "conversion_path": kit.server.url("/trickle/20971520/d.mp3")});
    let deadline = SystemTime::now() + Duration::from_millis(2500);
    let mut context = lambda_runtime::Context::default();
    context.deadline = deadline
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64;
    let request = webhook_request(&body).with_lambda_context(context);
    let started = Instant::now();
    let response = webhook.handle(request).await;
    assert_eq!(response.status(), 200);
    let elapsed = started.elapsed();
    assert!(
        elapsed > Duration::from_millis(1000) && elapsed < Duration::from_millis(2500),
        "{elapsed:?}"
    );
    let item = kit
        .item(&AssetKey {
            pk: "TASK#inline-2".into(),
            sk: "ASSET#c-2#mp3".into(),
        })
        .await;
    assert_eq!((item.state.as_str(), item.attempts), ("PENDING", 0));
}

#[tokio::test]
async fn inline_mode_fails_refused_sources_at_once_and_still_answers_200() {
    // The event's URLs are on lalals.s3.amazonaws.com, which this kit does not allow.
    let kit = Kit::new().await;
    let webhook = Webhook::with_follow_up(
        kit.ingest.clone(),
        InlineCopy::<AwsPorts>::new(kit.engine.clone()),
    );
    let request =
        lambda_http::request::from_str(include_str!("../events/http-music-ai-audio-1.json"))
            .expect("a lambda_http request");
    let response = webhook.handle(request).await;
    assert_eq!(response.status(), 200);
    for key in [mp3(C1), wav(C1)] {
        let item = kit.item(&key).await;
        assert_eq!((item.state.as_str(), item.attempts), ("FAILED", 1));
        let error = item.last_error.unwrap_or_default();
        assert!(error.contains("not in SOURCE_HOSTS"), "{error}");
    }
    assert_eq!(kit.server.total_hits(), 0);
}
