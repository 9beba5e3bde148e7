//! Verification with MusicGPT's byId before any download, and the reconciler copying the files
//! of a task whose callbacks never came; against a fake MusicGPT, moto and a local audio server.
#[path = "support/audio_server.rs"]
mod audio_server;
#[path = "support/copy_kit.rs"]
mod copy_kit;
mod support;

use std::time::Duration;

use copy_kit::{Kit, now_secs};
use musicgpt_webhook::adapters::AwsPorts;
use musicgpt_webhook::adapters::dynamodb::DynamoTable;
use musicgpt_webhook::adapters::musicgpt::MusicGptApi;
use musicgpt_webhook::app::copy::{CopyEngine, CopyOutcome, copy_all};
use musicgpt_webhook::app::reconcile::{ReconcileSettings, Reconciler};
use musicgpt_webhook::app::submit::submit_music_ai;
use musicgpt_webhook::app::verify::Verifier;
use musicgpt_webhook::domain::api::MusicAiRequest;
use musicgpt_webhook::domain::callback::Callback;
use musicgpt_webhook::domain::ids::Id;
use serde_json::{Value, json};
use support::musicgpt::{API_KEY, FakeMusicGpt};

async fn verified_engine(kit: &Kit, fake: &FakeMusicGpt) -> CopyEngine<AwsPorts> {
    let api = MusicGptApi::new(&fake.url, API_KEY).expect("client");
    let store = DynamoTable::new(support::dynamo().await, &kit.table);
    kit.engine
        .clone()
        .with_verifier(Verifier::<AwsPorts>::new(api, store))
}

/// Records one Music AI song (mp3 + wav) and the cover of a new task; returns the task id
/// and the three URLs.
async fn music_ai_task(kit: &Kit, name: &str) -> (String, Vec<String>) {
    let task = format!("task-{name}");
    let urls: Vec<String> = ["mp3", "wav", "png"]
        .iter()
        .map(|ext| kit.server.url(&format!("/ok/2048/{name}-{ext}.{ext}")))
        .collect();
    let song = json!({"subtype": "music_ai", "success": true, "conversion_type": "Music AI", "task_id": task,
        "conversion_id": format!("{name}-c1"), "conversion_path": urls[0], "conversion_path_wav": urls[1]});
    let cover = json!({"subtype": "album_cover_generation", "success": true, "task_id": task,
        "image_path": urls[2], "conversion_id_1": format!("{name}-c1"), "conversion_id_2": format!("{name}-c2")});
    for body in [song, cover] {
        let callback = Callback::parse(body.to_string().as_bytes(), None).expect("callback");
        kit.ingest
            .recorder()
            .record(&callback, now_secs())
            .await
            .expect("recorded");
    }
    (task, urls)
}

fn answer(task: &str, status: &str, urls: &[String]) -> Value {
    json!({"task_id": task, "status": status, "conversion_id_1": "c1", "conversion_id_2": "c2",
        "conversion_path_1": format!("{}?X-Amz-Signature=abc", urls[0]), "conversion_path_wav_1": urls[1],
        "album_cover_path": urls[2]})
}

async fn copy_task(kit: &Kit, engine: &CopyEngine<AwsPorts>, task: &str) -> Vec<CopyOutcome> {
    let assets = engine
        .pending_in_task(&Id::parse(task).expect("task id"))
        .await
        .expect("assets");
    let stop = tokio::time::Instant::now() + Duration::from_secs(30);
    // Copied concurrently, so the checks of one task really overlap.
    let outcomes = copy_all(engine, assets, stop, 4).await;
    assert_eq!(outcomes.len(), 3, "three files in the task ({})", kit.table);
    outcomes
}

#[tokio::test]
async fn files_musicgpt_reports_are_copied_with_one_by_id_call_per_task() {
    let (kit, fake) = (Kit::new().await, FakeMusicGpt::start().await);
    let engine = verified_engine(&kit, &fake).await;
    let (task, urls) = music_ai_task(&kit, "ok").await;
    fake.set_task(&task, answer(&task, "COMPLETED", &urls));
    let outcomes = copy_task(&kit, &engine, &task).await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, CopyOutcome::Stored { .. })),
        "{outcomes:?}"
    );
    assert_eq!(fake.by_id_calls(), 1, "one answer serves the whole task");
    assert!(fake.requests()[0].1.contains("conversionType=MUSIC_AI"));
}

#[tokio::test]
async fn a_file_musicgpt_does_not_report_fails_unverified_without_a_download() {
    let (kit, fake) = (Kit::new().await, FakeMusicGpt::start().await);
    let engine = verified_engine(&kit, &fake).await;
    let (task, urls) = music_ai_task(&kit, "forged").await;
    let genuine: Vec<String> = urls
        .iter()
        .map(|u| u.replace("forged", "genuine"))
        .collect();
    fake.set_task(&task, answer(&task, "COMPLETED", &genuine));
    let outcomes = copy_task(&kit, &engine, &task).await;
    for outcome in &outcomes {
        assert!(
            matches!(outcome, CopyOutcome::Failed { reason, .. } if reason.starts_with("unverified")),
            "{outcome:?}"
        );
    }
    assert_eq!(kit.server.total_hits(), 0, "nothing was downloaded");
}

#[tokio::test]
async fn a_task_musicgpt_does_not_know_fails_unverified() {
    let (kit, fake) = (Kit::new().await, FakeMusicGpt::start().await);
    let engine = verified_engine(&kit, &fake).await;
    let (task, _) = music_ai_task(&kit, "unknown").await;
    let outcomes = copy_task(&kit, &engine, &task).await;
    assert!(
        outcomes.iter().all(
            |o| matches!(o, CopyOutcome::Failed { reason, .. } if reason.contains("does not know"))
        ),
        "{outcomes:?}"
    );
    assert_eq!(kit.server.total_hits(), 0);
}

#[tokio::test]
async fn a_busy_or_unfinished_musicgpt_delays_the_copy_and_never_fails_it() {
    let (kit, fake) = (Kit::new().await, FakeMusicGpt::start().await);
    let engine = verified_engine(&kit, &fake).await;
    let (task, urls) = music_ai_task(&kit, "later").await;
    fake.set_task(&task, answer(&task, "COMPLETED", &urls));
    for statuses in [vec![429], vec![503]] {
        fake.fail_next(&statuses);
        let asset = engine
            .pending_in_task(&Id::parse(&task).expect("task id"))
            .await
            .expect("assets")[0]
            .clone();
        let outcome = engine.copy(&asset, None).await.expect("copy");
        assert!(
            matches!(outcome, CopyOutcome::RetryAt { attempts: 0, .. }),
            "{outcome:?}"
        );
        let item = kit.item(&asset).await;
        assert_eq!((item.state.as_str(), item.attempts), ("PENDING", 0));
    }
    // Still in progress at MusicGPT and the file not listed yet: wait, do not fail.
    let (task2, urls2) = music_ai_task(&kit, "progress").await;
    fake.set_task(
        &task2,
        answer(
            &task2,
            "IN_PROGRESS",
            &urls2[..1]
                .iter()
                .cloned()
                .chain(["https://x/y".into(), "https://x/z".into()])
                .collect::<Vec<_>>(),
        ),
    );
    let outcomes = copy_task(&kit, &engine, &task2).await;
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, CopyOutcome::RetryAt { attempts: 0, .. })),
        "{outcomes:?}"
    );
    assert!(
        !outcomes
            .iter()
            .any(|o| matches!(o, CopyOutcome::Failed { .. })),
        "{outcomes:?}"
    );

    // Once MusicGPT answers, the same assets are copied.
    let outcomes = copy_task(&kit, &engine, &task).await;
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, CopyOutcome::Stored { .. })),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn the_reconciler_records_and_copies_a_task_whose_callbacks_never_came() {
    let (kit, fake) = (Kit::new().await, FakeMusicGpt::start().await);
    let api = MusicGptApi::new(&fake.url, API_KEY).expect("client");
    let task = "4fc2cdba-005d-4d14-a208-5fb02a2809da";
    let request = MusicAiRequest {
        prompt: Some("x".into()),
        webhook_url: "https://h/webhook/t".into(),
        ..Default::default()
    };
    // Submitted 16 minutes ago: past the 15-minute grace.
    let now = now_secs();
    submit_music_ai(&api, kit.ingest.recorder(), &request, now - 16 * 60)
        .await
        .expect("submitted");
    let urls: Vec<String> = ["a.mp3", "b.mp3", "cover.png"]
        .iter()
        .map(|f| kit.server.url(&format!("/ok/4096/{f}")))
        .collect();
    fake.set_task(task, json!({"task_id": task, "status": "COMPLETED",
        "conversion_id_1": "05092d5c-f8b1-4c96-a4a3-45bc00de6268", "conversion_id_2": "52fcd3b6-3925-41ed-b4c6-aee17a29e40b",
        "conversion_path_1": urls[0], "conversion_path_2": urls[1], "album_cover_path": urls[2],
        "title_1": "One", "title_2": "Two"}));
    let engine = verified_engine(&kit, &fake).await;
    let settings = ReconcileSettings {
        min_interval: Duration::from_millis(1),
        ..ReconcileSettings::default()
    };
    let reconciler = Reconciler::<AwsPorts>::new(kit.ingest.recorder().clone(), api, settings)
        .with_copier(engine);
    let report = reconciler.run(now).await.expect("run");
    assert_eq!((report.recorded, report.copied), (3, 3), "{report:?}");
    for (file, key) in [
        ("a.mp3", "05092d5c-f8b1-4c96-a4a3-45bc00de6268.mp3"),
        ("b.mp3", "52fcd3b6-3925-41ed-b4c6-aee17a29e40b.mp3"),
        ("cover.png", "cover.png"),
    ] {
        let (sha, size, _) = kit.object(&format!("music/{task}/{key}")).await;
        assert_eq!(
            (sha, size),
            (audio_server::sha256(file, 4096), 4096),
            "{key}"
        );
    }
}
