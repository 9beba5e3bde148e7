//! `musicgpt-webhook tasks show|list|wait`, the built binary against DynamoDB and S3 in moto:
//! the read API's JSON from a shell, a presigned URL that downloads the stored bytes, pages
//! by status, and `wait`'s exit codes (0 completed, 3 failed, 4 timed out, 2 usage) for
//! scripts that submitted a task, including one that completes while it waits.
mod support;

use std::time::Duration;

use musicgpt_webhook::adapters::dynamodb::DynamoTable;
use musicgpt_webhook::adapters::memory::MemorySource;
use musicgpt_webhook::adapters::s3::S3Sink;
use musicgpt_webhook::app::copy::{CopyEngine, copy_all};
use musicgpt_webhook::app::ports::{AssetStore, Ports};
use musicgpt_webhook::app::record::Recorder;
use musicgpt_webhook::domain::callback::Callback;
use musicgpt_webhook::domain::keys::KeyPrefix;
use musicgpt_webhook::domain::retry::RetryPolicy;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

#[derive(Clone)]
struct Real;
impl Ports for Real {
    type Tasks = DynamoTable;
    type Assets = DynamoTable;
    type Source = MemorySource;
    type Sink = S3Sink;
    type Api = musicgpt_webhook::adapters::musicgpt::MusicGptApi;
}

struct Rig {
    table_name: String,
    table: DynamoTable,
    recorder: Recorder<DynamoTable>,
    engine: CopyEngine<Real>,
    source: MemorySource,
}

async fn rig() -> Rig {
    let sdk = support::sdk_config().await;
    let table_name = support::fresh_table().await;
    let table = DynamoTable::new(support::dynamo().await, &table_name);
    let source = MemorySource::new();
    let engine = CopyEngine::<Real>::new(
        table.clone(),
        source.clone(),
        S3Sink::new(support::s3_for(&sdk), support::fresh_bucket().await),
        RetryPolicy::default(),
    );
    let recorder = Recorder::new(
        table.clone(),
        KeyPrefix::default(),
        Duration::from_secs(86_400),
    );
    Rig {
        table_name,
        table,
        recorder,
        engine,
        source,
    }
}

impl Rig {
    async fn record(&self, body: Value, now: u64) {
        let callback = Callback::parse(body.to_string().as_bytes(), None).expect("callback");
        let outcome = self
            .recorder
            .record(&callback, now)
            .await
            .expect("recorded");
        if let Some(task) = outcome.task_id() {
            let pending = self.table.pending_in_task(task).await.expect("pending");
            copy_all(
                &self.engine,
                pending,
                Instant::now() + Duration::from_secs(60),
                4,
            )
            .await;
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_musicgpt-webhook"));
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("TABLE_NAME", &self.table_name)
            .env("AWS_ENDPOINT_URL", support::endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("READ_URL_EXPIRY", "10m");
        command
    }

    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        let output = self.command(args).output().await.expect("run the binary");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }
}

fn parse(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[tokio::test]
async fn show_prints_the_task_with_urls_that_download_its_files() {
    let rig = rig().await;
    let bytes = b"song bytes ".repeat(3000);
    rig.source
        .serve("https://lalals.s3.amazonaws.com/s.mp3", bytes.clone());
    rig.record(
        json!({"task_id": "t-cli", "conversion_id": "c1", "success": true, "title": "Song",
               "conversion_path": "https://lalals.s3.amazonaws.com/s.mp3"}),
        100,
    )
    .await;
    let (code, stdout, stderr) = rig.run(&["tasks", "show", "t-cli"]).await;
    assert_eq!(code, 0, "{stderr}");
    let task = parse(&stdout);
    assert_eq!(task["task_id"], json!("t-cli"));
    assert_eq!(task["outcome"], json!("completed"));
    let file = &task["files"][0];
    assert_eq!(file["key"], json!("t-cli/c1.mp3"));
    let url = file["url"].as_str().expect("url");
    assert!(url.contains("X-Amz-Expires=600"), "{url}");
    let body = reqwest::get(url)
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("body");
    assert_eq!(
        hex::encode(Sha256::digest(&body)),
        hex::encode(Sha256::digest(&bytes))
    );
    let (code, _, stderr) = rig.run(&["tasks", "show", "t-nobody"]).await;
    assert_eq!(code, 1);
    assert!(stderr.contains("no task t-nobody"), "{stderr}");
    let (code, _, stderr) = rig.run(&["tasks", "show", "a b"]).await;
    assert_eq!(code, 2, "{stderr}");
}

#[tokio::test]
async fn list_pages_by_status() {
    let rig = rig().await;
    for n in 0..3u64 {
        rig.record(
            json!({"task_id": format!("t-list-{n}"), "status": "COMPLETED"}),
            1_000 + n,
        )
        .await;
    }
    let (code, stdout, stderr) = rig
        .run(&["tasks", "list", "--status", "completed", "--limit", "2"])
        .await;
    assert_eq!(code, 0, "{stderr}");
    let page = parse(&stdout);
    let ids: Vec<&str> = page["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["task_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["t-list-2", "t-list-1"]);
    let next = page["next"].as_str().expect("a next cursor");
    let (code, stdout, _) = rig
        .run(&[
            "tasks",
            "list",
            "--status",
            "COMPLETED",
            "--limit",
            "2",
            "--next",
            next,
        ])
        .await;
    assert_eq!(code, 0);
    assert_eq!(parse(&stdout)["tasks"][0]["task_id"], json!("t-list-0"));
    let (code, stdout, _) = rig
        .run(&["tasks", "list", "--status", "COMPLETED", "--since", "1002"])
        .await;
    assert_eq!(code, 0);
    assert_eq!(parse(&stdout)["tasks"].as_array().map(Vec::len), Some(1));
    for bad in [
        vec!["tasks", "list"],
        vec!["tasks", "list", "--status", "x y"],
        vec!["tasks", "list", "--status", "COMPLETED", "--limit", "0"],
        vec!["tasks", "list", "--status", "COMPLETED", "--since", "soon"],
        vec!["tasks", "list", "--status", "COMPLETED", "--next", "zzz"],
    ] {
        let (code, _, stderr) = rig.run(&bad).await;
        assert_eq!(code, 2, "{bad:?}: {stderr}");
    }
}

#[tokio::test]
async fn wait_exits_by_outcome() {
    let rig = rig().await;
    rig.record(json!({"task_id": "t-done", "status": "COMPLETED"}), 10)
        .await;
    rig.record(
        json!({"task_id": "t-failed", "status": "FAILED", "status_msg": "no credits"}),
        10,
    )
    .await;
    rig.record(json!({"task_id": "t-open", "status": "IN_PROGRESS"}), 10)
        .await;
    let (code, stdout, _) = rig.run(&["tasks", "wait", "t-done"]).await;
    assert_eq!(code, 0);
    assert_eq!(parse(&stdout)["settled"], json!(true));
    let (code, stdout, stderr) = rig.run(&["tasks", "wait", "t-failed"]).await;
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(parse(&stdout)["reason"], json!("no credits"));
    assert!(stderr.contains("no credits"), "{stderr}");
    let started = std::time::Instant::now();
    let (code, _, stderr) = rig
        .run(&[
            "tasks",
            "wait",
            "t-open",
            "--timeout",
            "2s",
            "--interval",
            "1s",
        ])
        .await;
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("not settled"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20));
    // A task that completes while a script waits for it.
    let waiting = rig
        .command(&[
            "tasks",
            "wait",
            "t-later",
            "--timeout",
            "60s",
            "--interval",
            "1s",
        ])
        .output();
    let finish = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        rig.record(json!({"task_id": "t-later", "status": "IN_PROGRESS"}), 20)
            .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        rig.record(json!({"task_id": "t-later", "status": "COMPLETED"}), 30)
            .await;
    };
    let (output, ()) = tokio::join!(waiting, finish);
    let output = output.expect("run the binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("waiting:"), "{stderr}");
    assert_eq!(
        parse(&String::from_utf8_lossy(&output.stdout))["status"],
        json!("COMPLETED")
    );
}
