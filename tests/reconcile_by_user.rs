//! The reconciler's byUser listing: tasks nobody registered (submitted from another tool) are
//! found in the window since the last run, page by page through a 429, recorded through the
//! same path as a callback, and their files copied; byId is asked only about what the listing
//! could not settle; the next window starts where the last complete one ended.

mod support;

use std::time::Duration;

use musicgpt_webhook::adapters::AwsPorts;
use musicgpt_webhook::adapters::dynamodb::DynamoTable;
use musicgpt_webhook::adapters::musicgpt::MusicGptApi;
use musicgpt_webhook::app::by_user::ListOptions;
use musicgpt_webhook::app::ports::TaskStore;
use musicgpt_webhook::app::reconcile::{
    BY_USER_CHECKPOINT, ByUserSettings, ReconcileSettings, Reconciler,
};
use musicgpt_webhook::app::record::Recorder;
use musicgpt_webhook::domain::answer::submission_callback;
use musicgpt_webhook::domain::api::Submitted;
use musicgpt_webhook::domain::ids::Id;
use musicgpt_webhook::domain::keys::KeyPrefix;
use serde_json::{Value, json};
use support::musicgpt::{API_KEY, FakeMusicGpt};

/// 2026-03-27T07:21:14Z and thereabouts.
const NOW: u64 = 1_774_596_074;

fn iso(epoch: u64) -> String {
    musicgpt_webhook::domain::by_user::iso8601(epoch)
}

fn settings() -> ReconcileSettings {
    ReconcileSettings {
        grace: Duration::from_secs(60),
        min_interval: Duration::from_millis(1),
        by_user: Some(ByUserSettings {
            first_window: Duration::from_secs(30 * 60),
            overlap: Duration::from_secs(60),
            list: ListOptions {
                first_backoff: Duration::from_millis(20),
                max_backoff: Duration::from_millis(40),
                ..ListOptions::default()
            },
        }),
        ..ReconcileSettings::default()
    }
}

async fn recorder(table: &str) -> Recorder<DynamoTable> {
    let store = DynamoTable::new(support::dynamo().await, table);
    Recorder::new(store, KeyPrefix::default(), Duration::from_secs(86_400))
}

fn reconciler(recorder: &Recorder<DynamoTable>, fake: &FakeMusicGpt) -> Reconciler<AwsPorts> {
    let api = MusicGptApi::new(&fake.url, API_KEY).expect("client");
    Reconciler::new(recorder.clone(), api, settings())
}

/// A finished conversion as byUser lists it.
fn listed(task: &str, conversion_type: &str, at: u64, file: &str) -> Value {
    json!({
        "task_id": task,
        "conversion_id": format!("{task}-c"),
        "conversionType": conversion_type,
        "status": "COMPLETED",
        "title": format!("{task} title"),
        "conversion_path": format!("https://lalals.s3.amazonaws.com/conversions/{task}.{file}"),
        "createdAt": iso(at),
        "updatedAt": iso(at + 30),
    })
}

#[tokio::test]
async fn tasks_nobody_registered_are_found_page_by_page_and_by_id_only_asks_the_rest() {
    let fake = FakeMusicGpt::start().await;
    let table = support::fresh_table().await;
    let recorder = recorder(&table).await;
    // 120 finished conversions from another tool (3 pages of 50), and one task of ours that
    // byUser does not list (still in MusicGPT's queue when the window was read).
    let conversions: Vec<Value> = (0..120)
        .map(|i| {
            let kind = ["VOICE_CONVERSION", "EXTRACTION", "MUSIC_AI"][i % 3];
            listed(
                &format!("other-{i:03}"),
                kind,
                NOW - 1_500 + i as u64,
                "mp3",
            )
        })
        .collect();
    fake.set_user_conversions(conversions);
    fake.fail_call("/api/public/v1/byUser", 2, 429);
    let ours = Submitted::from_answer(
        json!({"success": true, "task_id": "ours", "conversion_id_1": "ours-c"}),
    )
    .expect("answer");
    let registration = submission_callback(
        &ours,
        "VOICE_CONVERSION",
        &[Id::parse("ours-c").expect("id")],
    )
    .expect("registration");
    recorder
        .record(&registration, NOW - 1_200)
        .await
        .expect("registered");
    fake.set_task_of_type(
        "ours",
        "VOICE_CONVERSION",
        json!({"task_id": "ours", "conversion_id": "ours-c", "status": "COMPLETED",
               "conversion_path": "https://lalals.s3.amazonaws.com/conversions/ours.mp3"}),
    );

    let report = reconciler(&recorder, &fake).run(NOW).await.expect("run");
    assert_eq!(report.listed, 120, "{report:?}");
    assert!(report.listing_complete, "{report:?}");
    assert_eq!(report.settled_from_listing, 120);
    assert_eq!(
        (report.due, report.looked_up),
        (1, 1),
        "byId only for ours: {report:?}"
    );
    assert_eq!(fake.by_id_calls(), 1);
    let by_user_pages = fake
        .requests()
        .iter()
        .filter(|(_, path)| path.starts_with("/api/public/v1/byUser"))
        .count();
    assert_eq!(by_user_pages, 4, "3 pages and the 429 asked again");

    let store = recorder.store();
    for task in ["other-000", "other-061", "other-119", "ours"] {
        let items = store
            .task_items(&Id::parse(task).expect("id"))
            .await
            .expect("items");
        let task_item = items
            .iter()
            .find(|i| i["sk"] == "TASK")
            .unwrap_or_else(|| panic!("{task} not recorded"));
        assert_eq!(task_item["status"], "COMPLETED", "{task}");
        let asset = items
            .iter()
            .find(|i| i["item_type"] == "ASSET")
            .unwrap_or_else(|| panic!("{task} has no file"));
        assert!(
            asset["source_url"]
                .as_str()
                .is_some_and(|u| u.contains(task))
        );
    }
    let typed = store
        .task_conversion_type(&Id::parse("other-001").expect("id"))
        .await
        .expect("type");
    assert_eq!(typed.as_deref(), Some("EXTRACTION"));
    assert_eq!(
        store
            .checkpoint(BY_USER_CHECKPOINT)
            .await
            .expect("checkpoint"),
        Some(NOW)
    );

    // The next run reads only from the checkpoint (less the overlap): nothing new, nothing
    // recorded twice. (Tasks whose files are still PENDING are asked about by byId, as
    // before; here no copier runs, so all of them are.)
    let next = reconciler(&recorder, &fake)
        .run(NOW + 300)
        .await
        .expect("run");
    assert_eq!((next.listed, next.recorded), (0, 0), "{next:?}");
    let starts: Vec<String> = fake
        .requests()
        .iter()
        .filter(|(_, path)| path.starts_with("/api/public/v1/byUser"))
        .map(|(_, path)| path.clone())
        .collect();
    let last = starts.last().expect("a byUser call");
    assert!(
        last.contains(&iso(NOW - 60).replace(':', "%3A")),
        "the window starts at the checkpoint less the overlap: {last}"
    );
}

#[tokio::test]
async fn a_listing_musicgpt_keeps_refusing_is_read_again_next_time() {
    let fake = FakeMusicGpt::start().await;
    let table = support::fresh_table().await;
    let recorder = recorder(&table).await;
    fake.set_user_conversions(vec![listed("late-1", "COVER", NOW - 600, "mp3")]);
    fake.fail_next(&[429, 429, 429, 429, 429]);
    let report = reconciler(&recorder, &fake).run(NOW).await.expect("run");
    assert!(!report.listing_complete, "{report:?}");
    assert_eq!(
        recorder
            .store()
            .checkpoint(BY_USER_CHECKPOINT)
            .await
            .expect("checkpoint"),
        None,
        "the window is not marked done"
    );
    let again = reconciler(&recorder, &fake)
        .run(NOW + 60)
        .await
        .expect("run");
    assert!(again.listing_complete, "{again:?}");
    assert_eq!(again.settled_from_listing, 1);
}
