//! The operator's commands on the real table (moto): replaying stored callbacks changes no
//! item; redriving a FAILED asset lets the sweep store it; `stuck` lists exactly the stuck ones.

mod support;

use std::sync::Arc;
use std::time::Duration;

use musicgpt_webhook::adapters::dynamodb::DynamoTable;
use musicgpt_webhook::adapters::memory::{ManualClock, MemorySink, MemorySource, SourceFault};
use musicgpt_webhook::adapters::musicgpt::MusicGptApi;
use musicgpt_webhook::app::copy::{CopyEngine, CopyOutcome};
use musicgpt_webhook::app::operate::Operations;
use musicgpt_webhook::app::ports::{AssetStore, Ports, TaskStore};
use musicgpt_webhook::app::record::Recorder;
use musicgpt_webhook::app::sweep::{SweepSettings, Sweeper};
use musicgpt_webhook::cli::{self, Command, Redrive};
use musicgpt_webhook::domain::callback::Callback;
use musicgpt_webhook::domain::ids::Id;
use musicgpt_webhook::domain::keys::KeyPrefix;
use musicgpt_webhook::domain::retry::RetryPolicy;
use musicgpt_webhook::domain::status::AssetState;
use serde_json::json;

const NOW: u64 = 1_800_000_000;

/// The real table; files and bucket in memory.
#[derive(Clone)]
struct Rig;

impl Ports for Rig {
    type Tasks = DynamoTable;
    type Assets = DynamoTable;
    type Source = MemorySource;
    type Sink = MemorySink;
    type Api = MusicGptApi;
}

fn id(text: &str) -> Id {
    Id::parse(text).expect("id")
}

async fn table() -> (String, DynamoTable) {
    let name = support::fresh_table().await;
    let table = DynamoTable::new(support::dynamo().await, &name);
    (name, table)
}

fn recorder(table: &DynamoTable) -> Recorder<DynamoTable> {
    Recorder::new(
        table.clone(),
        KeyPrefix::default(),
        Duration::from_secs(86_400),
    )
}

fn operations(
    table: &DynamoTable,
    clock: &Arc<ManualClock>,
) -> Operations<DynamoTable, DynamoTable> {
    Operations::new(recorder(table), table.clone(), clock.clone())
}

fn url(task: &str) -> String {
    format!("https://lalals.s3.amazonaws.com/conversions/{task}.mp3")
}

async fn record(recorder: &Recorder<DynamoTable>, body: serde_json::Value, now: u64) {
    let cb = Callback::parse(body.to_string().as_bytes(), None).expect("callback");
    recorder.record(&cb, now).await.expect("recorded");
}

#[tokio::test]
async fn replaying_a_hundred_stored_callbacks_changes_no_item() {
    let (name, table) = table().await;
    let recorder = recorder(&table);
    for t in 0..20 {
        let task = format!("replay-{t:02}");
        for c in 0..2 {
            record(
                &recorder,
                json!({"task_id": task, "conversion_id": format!("{task}-c{c}"),
                       "conversion_path": url(&format!("{task}-{c}")), "title": "x",
                       "status": "COMPLETED", "updatedAt": format!("2026-01-01T00:0{c}:00Z")}),
                NOW,
            )
            .await;
            record(
                &recorder,
                json!({"subtype": "lyrics_timestamped", "conversion_id": format!("{task}-c{c}"),
                       "lyrics_timestamped": format!("[{{\"index\":0,\"text\":\"{t}\",\"start\":0,\"end\":1}}]")}),
                NOW,
            )
            .await;
        }
        record(
            &recorder,
            json!({"task_id": task, "status": "IN_PROGRESS", "updatedAt": "2025-12-31T23:59:00Z"}),
            NOW,
        )
        .await;
    }
    let before = support::scan_all(&name).await;
    let clock = Arc::new(ManualClock::at(NOW + 3_600));
    let mut replayed = 0;
    for t in 0..20 {
        let report = operations(&table, &clock)
            .replay_task(&id(&format!("replay-{t:02}")))
            .await
            .expect("replay");
        assert_eq!(report.duplicates, report.replayed, "{report:?}");
        assert_eq!((report.recorded, report.unreadable), (0, 0));
        replayed += report.replayed;
    }
    assert_eq!(replayed, 100);
    assert_eq!(
        support::scan_all(&name).await,
        before,
        "a replay changed items"
    );
}

#[tokio::test]
async fn redriving_a_failed_asset_lets_the_sweep_store_it() {
    let (_, table) = table().await;
    let clock = Arc::new(ManualClock::at(NOW));
    let (source, sink) = (MemorySource::new(), MemorySink::new("bucket"));
    let policy = RetryPolicy {
        not_found_grace: Duration::ZERO,
        ..RetryPolicy::default()
    };
    let engine = CopyEngine::<Rig>::new(table.clone(), source.clone(), sink.clone(), policy)
        .with_clock(clock.clone());
    let recorder = recorder(&table);
    for task in ["gone-a", "gone-b"] {
        record(
            &recorder,
            json!({"task_id": task, "conversion_id": "c", "conversion_path": url(task)}),
            NOW,
        )
        .await;
        source.fail_next(&url(task), &[SourceFault::NotFound]);
        let asset = table.pending_in_task(&id(task)).await.expect("assets")[0].clone();
        let outcome = engine.copy(&asset, None).await.expect("copy");
        assert!(matches!(outcome, CopyOutcome::Failed { .. }), "{outcome:?}");
    }
    assert_eq!(
        table
            .assets_in_state(AssetState::Failed)
            .await
            .expect("failed")
            .len(),
        2,
        "FAILED assets are found through the index"
    );
    // The files turn up after all; one is redriven by task, the other by state.
    source.serve(&url("gone-a"), "a bytes");
    source.serve(&url("gone-b"), "b bytes");
    clock.advance(600);
    let ops = operations(&table, &clock);
    assert_eq!(ops.redrive_task(&id("gone-a")).await.expect("redrive"), 1);
    assert_eq!(
        ops.redrive_state(AssetState::Failed)
            .await
            .expect("redrive"),
        1
    );
    assert_eq!(
        ops.redrive_state(AssetState::Failed)
            .await
            .expect("redrive"),
        0,
        "nothing left to redrive"
    );
    let report = Sweeper::new(engine, SweepSettings::default())
        .run(tokio::time::Instant::now() + Duration::from_secs(30))
        .await
        .expect("sweep");
    assert_eq!(report.stored, 2, "{report:?}");
    for task in ["gone-a", "gone-b"] {
        let items = table.task_items(&id(task)).await.expect("items");
        let asset = items
            .iter()
            .find(|i| i["item_type"] == "ASSET")
            .expect("asset");
        assert_eq!(asset["state"], "STORED", "{task}");
        assert!(asset.get("last_error").is_none());
        assert!(asset["deadline_at"].as_u64() >= Some(NOW + 600 + 86_400));
    }
    assert!(
        ops.redrive_state(AssetState::Pending).await.is_err(),
        "only FAILED or EXPIRED"
    );
}

#[tokio::test]
async fn stuck_lists_exactly_the_assets_pending_past_the_age() {
    let (_, table) = table().await;
    let recorder = recorder(&table);
    let clock = Arc::new(ManualClock::at(NOW));
    let (source, sink) = (MemorySource::new(), MemorySink::new("bucket"));
    let engine =
        CopyEngine::<Rig>::new(table.clone(), source.clone(), sink, RetryPolicy::default())
            .with_clock(clock.clone());
    // Old and stuck; old and stored; recent and pending.
    record(
        &recorder,
        json!({"task_id": "old-stuck", "conversion_id": "c", "conversion_path": url("old-stuck")}),
        NOW - 7_200,
    )
    .await;
    record(&recorder, json!({"task_id": "old-stored", "conversion_id": "c", "conversion_path": url("old-stored")}), NOW - 7_200).await;
    record(
        &recorder,
        json!({"task_id": "recent", "conversion_id": "c", "conversion_path": url("recent")}),
        NOW - 60,
    )
    .await;
    source.fail_next(&url("old-stuck"), &[SourceFault::Unavailable]);
    source.serve(&url("old-stored"), "bytes");
    for task in ["old-stuck", "old-stored"] {
        let asset = table.pending_in_task(&id(task)).await.expect("assets")[0].clone();
        engine.copy(&asset, None).await.expect("copy");
    }
    let stuck = operations(&table, &clock)
        .stuck(Duration::from_secs(30 * 60))
        .await
        .expect("stuck");
    let tasks: Vec<&str> = stuck.iter().map(|s| s.task_id.as_str()).collect();
    assert_eq!(tasks, ["old-stuck"]);
    assert_eq!(stuck[0].state, AssetState::Pending);
    assert_eq!((stuck[0].age_secs, stuck[0].attempts), (7_200, 1));
    assert!(
        stuck[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("503"))
    );
    let all = operations(&table, &clock)
        .stuck(Duration::from_secs(30))
        .await
        .expect("stuck");
    assert_eq!(all.len(), 2, "the recent one too, past 30 s: {all:?}");
}

#[test]
fn the_commands_parse() {
    let args = |line: &str| -> Vec<String> { line.split_whitespace().map(str::to_owned).collect() };
    assert_eq!(
        cli::parse(&args("replay --task t-1"), None).expect("replay"),
        Command::Replay(cli::Replay::Task(id("t-1")))
    );
    assert_eq!(
        cli::parse(&args("replay --since 2027-01-15"), None).expect("replay"),
        Command::Replay(cli::Replay::Since(1_799_971_200)), // 2027-01-15T00:00:00Z
    );
    assert_eq!(
        cli::parse(&args("redrive --state expired"), None).expect("redrive"),
        Command::Redrive(Redrive::State(AssetState::Expired))
    );
    assert_eq!(
        cli::parse(&args("redrive --task t-1"), None).expect("redrive"),
        Command::Redrive(Redrive::Task(id("t-1")))
    );
    assert_eq!(
        cli::parse(&args("stuck --older-than 2h"), None).expect("stuck"),
        Command::Stuck {
            older_than: Duration::from_secs(7_200)
        }
    );
    assert!(cli::parse(&args("redrive"), None).is_err());
    assert!(cli::parse(&args("redrive --state PENDING"), None).is_err());
    assert!(cli::parse(&args("stuck --older-than soon"), None).is_err());
}
