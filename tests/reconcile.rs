//! Submission, registration and reconciliation against a fake MusicGPT API and moto.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use musicgpt_webhook::adapters::AwsPorts;
use musicgpt_webhook::adapters::dynamodb::DynamoTable;
use musicgpt_webhook::adapters::musicgpt::MusicGptApi;
use musicgpt_webhook::app::ports::TaskStore;
use musicgpt_webhook::app::reconcile::{ReconcileSettings, Reconciler};
use musicgpt_webhook::app::record::{Outcome, Recorder};
use musicgpt_webhook::app::submit::submit_music_ai;
use musicgpt_webhook::domain::api::MusicAiRequest;
use musicgpt_webhook::domain::keys::KeyPrefix;
use serde_json::{Value, json};
use support::musicgpt::{API_KEY, FakeMusicGpt};

const NOW: u64 = 1_774_596_501;
const TASK: &str = "4fc2cdba-005d-4d14-a208-5fb02a2809da";
const C1: &str = "05092d5c-f8b1-4c96-a4a3-45bc00de6268";
const C2: &str = "52fcd3b6-3925-41ed-b4c6-aee17a29e40b";
const LATER: u64 = NOW + 16 * 60;

type Item = HashMap<String, AttributeValue>;

async fn recorder(table: &str) -> Recorder<DynamoTable> {
    let store = DynamoTable::new(support::dynamo().await, table);
    Recorder::<DynamoTable>::new(store, KeyPrefix::default(), Duration::from_secs(86_400))
}

fn api(fake: &FakeMusicGpt) -> MusicGptApi {
    MusicGptApi::new(&fake.url, API_KEY).expect("client")
}

fn reconciler(recorder: Recorder<DynamoTable>, fake: &FakeMusicGpt) -> Reconciler<AwsPorts> {
    // The byId path alone; the byUser listing has its own tests (reconcile_by_user.rs).
    let settings = ReconcileSettings {
        min_interval: Duration::from_millis(1),
        by_user: None,
        ..ReconcileSettings::default()
    };
    Reconciler::<AwsPorts>::new(recorder, api(fake), settings)
}

fn request() -> MusicAiRequest {
    MusicAiRequest {
        prompt: Some("an epic orchestral clash".into()),
        music_style: Some("cinematic".into()),
        webhook_url: "https://api.example/webhook/test-token-0123456789abcdef".into(),
        ..MusicAiRequest::default()
    }
}

/// The documented Music AI byId answer, for our task, in a given status.
fn answer(status: &str) -> Value {
    let sample: Value =
        serde_json::from_str(include_str!("data/musicgpt/byid-music-ai.json")).expect("sample");
    let mut conversion = sample["conversion"].clone();
    conversion["task_id"] = json!(TASK);
    conversion["conversion_id_1"] = json!(C1);
    conversion["conversion_id_2"] = json!(C2);
    conversion["conversion_path_1"] = json!(format!(
        "https://lalals.s3.amazonaws.com/conversions/{C1}.mp3"
    ));
    conversion["conversion_path_2"] = json!(format!(
        "https://lalals.s3.amazonaws.com/conversions/{C2}.mp3"
    ));
    conversion["album_cover_path"] = json!(format!(
        "https://musicgpt.s3.amazonaws.com/img-gen-pipeline/{TASK}.png"
    ));
    conversion["status"] = json!(status);
    conversion
}

fn find<'a>(items: &'a [Item], pk: &str, sk: &str) -> Option<&'a Item> {
    items.iter().find(|i| s(i, "pk") == pk && s(i, "sk") == sk)
}

fn s<'a>(item: &'a Item, name: &str) -> &'a str {
    match item.get(name) {
        Some(AttributeValue::S(v)) => v,
        _ => "",
    }
}

fn task_status(items: &[Item]) -> String {
    s(
        find(items, &format!("TASK#{TASK}"), "TASK").expect("task item"),
        "status",
    )
    .to_owned()
}

async fn submitted(table: &str, fake: &FakeMusicGpt) -> Recorder<DynamoTable> {
    let recorder = recorder(table).await;
    submit_music_ai(&api(fake), &recorder, &request(), NOW)
        .await
        .expect("submitted");
    recorder
}

#[tokio::test]
async fn submitting_sends_the_webhook_url_and_registers_the_task() {
    let fake = FakeMusicGpt::start().await;
    let table = support::fresh_table().await;
    let recorder = recorder(&table).await;
    let registration = submit_music_ai(&api(&fake), &recorder, &request(), NOW)
        .await
        .expect("submitted");
    assert_eq!(registration.submitted.task_id.as_deref(), Some(TASK));
    let sent = fake.submissions();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0]["webhook_url"],
        "https://api.example/webhook/test-token-0123456789abcdef"
    );
    assert_eq!(sent[0]["prompt"], "an epic orchestral clash");

    let items = support::scan_all(&table).await;
    assert_eq!(task_status(&items), "SUBMITTED");
    let task = find(&items, &format!("TASK#{TASK}"), "TASK").expect("task");
    assert_eq!(s(task, "conversion_type"), "MUSIC_AI");
    for conversion in [C1, C2] {
        let link = find(&items, &format!("CONV#{conversion}"), "LINK").expect("link");
        assert_eq!(s(link, "task_id"), TASK);
    }
    // Lyrics that come before their song now find the task at once.
    let lyrics = musicgpt_webhook::domain::callback::Callback::parse(
        format!(
            r#"{{"subtype":"lyrics_timestamped","conversion_id":"{C1}","lyrics_timestamped":"[]"}}"#
        )
        .as_bytes(),
        None,
    )
    .expect("lyrics");
    let outcome = recorder.record(&lyrics, NOW).await.expect("recorded");
    assert!(matches!(outcome, Outcome::Recorded { .. }), "{outcome:?}");
}

#[tokio::test]
async fn a_task_whose_callbacks_never_came_is_recorded_from_by_id() {
    let fake = FakeMusicGpt::start().await;
    let table = support::fresh_table().await;
    let recorder = submitted(&table, &fake).await;
    fake.set_task(TASK, answer("COMPLETED"));

    let report = reconciler(recorder.clone(), &fake)
        .run(LATER)
        .await
        .expect("run");
    assert_eq!(
        (report.due, report.looked_up, report.recorded),
        (1, 1, 3),
        "{report:?}"
    );
    let items = support::scan_all(&table).await;
    assert_eq!(task_status(&items), "COMPLETED");
    let pk = format!("TASK#{TASK}");
    for sk in [
        format!("ASSET#{C1}#mp3"),
        format!("ASSET#{C2}#mp3"),
        format!("ASSET#{TASK}#cover"),
    ] {
        let asset = find(&items, &pk, &sk).unwrap_or_else(|| panic!("no {sk}"));
        assert_eq!(s(asset, "state"), "PENDING");
    }
    let conversion = find(&items, &pk, &format!("CONVERSION#{C2}")).expect("song 2");
    assert_eq!(s(conversion, "title"), "Clash of Titans");
    assert!(
        fake.requests()
            .iter()
            .any(|(_, path)| path.contains("conversionType=MUSIC_AI"))
    );

    // Recorded once: the next run finds nothing due and asks nothing.
    let calls = fake.by_id_calls();
    let again = reconciler(recorder, &fake)
        .run(LATER + 1)
        .await
        .expect("run");
    assert_eq!((again.due, fake.by_id_calls()), (0, calls), "{again:?}");
}

#[tokio::test]
async fn tasks_still_in_queue_are_left_alone() {
    let fake = FakeMusicGpt::start().await;
    let table = support::fresh_table().await;
    let recorder = submitted(&table, &fake).await;
    fake.set_task(TASK, answer("IN_QUEUE"));
    let report = reconciler(recorder, &fake).run(LATER).await.expect("run");
    assert_eq!((report.in_progress, report.recorded), (1, 0), "{report:?}");
    let items = support::scan_all(&table).await;
    assert_eq!(task_status(&items), "SUBMITTED");
    assert!(!items.iter().any(|i| s(i, "sk").starts_with("ASSET#")));
}

#[tokio::test]
async fn tasks_musicgpt_reports_failed_are_marked_failed() {
    let fake = FakeMusicGpt::start().await;
    let table = support::fresh_table().await;
    let recorder = submitted(&table, &fake).await;
    let mut failed = answer("FAILED");
    failed["status_msg"] = json!("content policy");
    fake.set_task(TASK, failed);
    let report = reconciler(recorder, &fake).run(LATER).await.expect("run");
    assert_eq!(report.failed, 1, "{report:?}");
    let items = support::scan_all(&table).await;
    assert_eq!(task_status(&items), "FAILED");
    assert!(
        !items.iter().any(|i| s(i, "sk").starts_with("ASSET#")),
        "failed tasks copy nothing"
    );
}

#[tokio::test]
async fn a_busy_musicgpt_defers_the_run_and_the_next_one_catches_up() {
    let fake = FakeMusicGpt::start().await;
    let table = support::fresh_table().await;
    let recorder = submitted(&table, &fake).await;
    fake.set_task(TASK, answer("COMPLETED"));
    for status in [429, 503] {
        fake.fail_next(&[status]);
        let report = reconciler(recorder.clone(), &fake)
            .run(LATER)
            .await
            .expect("run");
        assert_eq!(
            (report.deferred, report.recorded),
            (1, 0),
            "{status}: {report:?}"
        );
        assert_eq!(task_status(&support::scan_all(&table).await), "SUBMITTED");
    }
    let report = reconciler(recorder, &fake).run(LATER).await.expect("run");
    assert_eq!(report.recorded, 3, "{report:?}");
}

#[tokio::test]
async fn nothing_is_asked_within_the_grace_period() {
    let fake = FakeMusicGpt::start().await;
    let table = support::fresh_table().await;
    let recorder = submitted(&table, &fake).await;
    let report = reconciler(recorder, &fake)
        .run(NOW + 60)
        .await
        .expect("run");
    assert_eq!((report.due, fake.by_id_calls()), (0, 0));
}

#[tokio::test]
async fn due_tasks_are_submitted_tasks_and_pending_assets_past_the_cutoff() {
    let fake = FakeMusicGpt::start().await;
    let table = support::fresh_table().await;
    // SUBMITTED at NOW: due from a cutoff of NOW on, not before.
    let recorder = submitted(&table, &fake).await;
    let store = recorder.store();
    // Another task, finished, its song PENDING since NOW + 10.
    let other = "0b7e1c8a-1111-4a11-8f00-000000000001";
    let song = json!({
        "success": true, "task_id": other, "conversion_id": C1, "status": "COMPLETED",
        "conversion_type": "Music AI", "title": "Other",
        "conversion_path": "https://lalals.s3.amazonaws.com/conversions/other.mp3",
    });
    let song =
        musicgpt_webhook::domain::callback::Callback::parse(song.to_string().as_bytes(), None)
            .expect("callback");
    recorder.record(&song, NOW + 10).await.expect("recorded");

    let due = |cutoff: u64| async move {
        let mut tasks: Vec<String> = store
            .due_tasks(cutoff)
            .await
            .expect("due tasks")
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect();
        tasks.sort();
        tasks
    };
    assert!(due(NOW - 1).await.is_empty());
    assert_eq!(due(NOW).await, vec![TASK.to_owned()]);
    assert_eq!(due(NOW + 10).await, vec![other.to_owned(), TASK.to_owned()]);

    // A stored asset and a task with a status leave the indexes' due partitions.
    let items = support::scan_all(&table).await;
    let asset = items
        .iter()
        .find(|i| s(i, "task_id") == other && s(i, "item_type") == "ASSET")
        .expect("the other task's asset");
    support::dynamo()
        .await
        .update_item()
        .table_name(&table)
        .key("pk", asset["pk"].clone())
        .key("sk", asset["sk"].clone())
        .update_expression("SET #s = :stored")
        .expression_attribute_names("#s", "state")
        .expression_attribute_values(":stored", AttributeValue::S("STORED".into()))
        .send()
        .await
        .expect("store the asset");
    fake.set_task(TASK, answer("COMPLETED"));
    reconciler(recorder.clone(), &fake)
        .run(LATER)
        .await
        .expect("run");
    // The reconciled task's own files are PENDING from LATER on.
    assert!(due(LATER - 1).await.is_empty());
    assert_eq!(due(LATER).await, vec![TASK.to_owned()]);
}
