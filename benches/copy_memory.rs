//! Memory benchmark of the copy engine: copies a generated file (1 GiB unless `BENCH_MIB`
//! says otherwise) from a local HTTP server into moto's S3 and prints the throughput and this
//! process's peak RSS (VmHWM). Target: under 64 MiB for 1 GiB.
//!
//! Run: `make bench-copy` (or `cargo bench --bench copy_memory`). The audio server runs in a
//! child process (this binary with `serve-audio`), so the peak RSS is the copier's alone.
//! Under `cargo test --all-targets` it does nothing.
#[path = "../tests/support/audio_server.rs"]
mod audio_server;
#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use musicgpt_webhook::assets::{AssetKey, AssetTable};
use musicgpt_webhook::callback::Callback;
use musicgpt_webhook::copy::{CopyEngine, CopyOutcome, RetryPolicy};
use musicgpt_webhook::ingest::Recorder;
use musicgpt_webhook::keys::KeyPrefix;
use musicgpt_webhook::sink::S3Sink;
use musicgpt_webhook::source::{Source, SourceGuard, SourceOptions};
use musicgpt_webhook::store::TaskStore;

const MIB: u64 = 1024 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "serve-audio") {
        serve_audio();
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        println!("copy_memory: a benchmark; run it with `cargo bench --bench copy_memory`");
        return;
    }
    let mib: u64 = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(run(mib * MIB));
}

/// The child: serves audio on a loopback port, prints the port, exits when stdin closes.
fn serve_audio() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let server = audio_server::AudioServer::start().await;
        println!("{}", server.addr().port());
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await
        .expect("wait for stdin to close");
    });
}

async fn run(len: u64) {
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .arg("serve-audio")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the audio server process");
    let mut port = String::new();
    BufReader::new(child.stdout.take().expect("child stdout"))
        .read_line(&mut port)
        .expect("read the audio server port");
    let port = port.trim().to_owned();

    let (table, bucket) = tokio::join!(support::fresh_table(), support::fresh_bucket());
    let dynamo = support::dynamo().await;
    let engine = CopyEngine::new(
        AssetTable::new(dynamo.clone(), &table),
        Source::new(
            SourceGuard::new(&["127.0.0.1".to_owned()]).expect("hosts"),
            SourceOptions {
                connect_timeout: Duration::from_secs(5),
                read_timeout: Duration::from_secs(60),
                max_redirects: 3,
                max_bytes: 4 * 1024 * MIB,
            },
        )
        .expect("source"),
        S3Sink::new(support::s3().await, &bucket),
        RetryPolicy {
            max_attempts: 1,
            base_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            lease: Duration::from_secs(3600),
            lease_grace: Duration::from_secs(60),
        },
    );
    let recorder = Recorder::new(
        TaskStore::new(dynamo, &table),
        KeyPrefix::default(),
        Duration::from_secs(86_400),
    );
    let name = "bench.wav";
    let url = format!("http://127.0.0.1:{port}/ok/{len}/{name}");
    let body = serde_json::json!({
        "task_id": "bench-task", "conversion_id": "bench-conv", "success": true,
        "conversion_path": url,
    });
    let callback = Callback::parse(body.to_string().as_bytes(), None).expect("callback");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    recorder.record(&callback, now).await.expect("record");
    let task = callback
        .task_id
        .as_ref()
        .expect("the callback names its task");
    let asset = AssetKey {
        pk: format!("TASK#{task}"),
        sk: callback.sources[0].asset.sort_key(task),
    };

    let before = proc_status_kib("VmHWM");
    let started = Instant::now();
    let outcome = engine.copy(&asset, None).await.expect("copy");
    let elapsed = started.elapsed();
    let peak = proc_status_kib("VmHWM");
    drop(child.stdin.take());
    let _ = child.wait();

    let expected = audio_server::sha256(name, len);
    let ok = matches!(&outcome, CopyOutcome::Stored { size, sha256 } if *size == len && *sha256 == expected);
    let mib = len as f64 / MIB as f64;
    println!(
        "copy_memory: {mib:.0} MiB from a local HTTP server into moto S3 (multipart, 8 MiB parts)"
    );
    println!("  outcome:     {} (hash checked: {ok})", outcome.label());
    println!("  time:        {:.1} s", elapsed.as_secs_f64());
    println!(
        "  throughput:  {:.1} MiB/s (moto's S3 on the same machine is the bottleneck)",
        mib / elapsed.as_secs_f64()
    );
    println!(
        "  peak RSS:    {:.1} MiB (VmHWM; {:.1} MiB before the copy)",
        peak / 1024.0,
        before / 1024.0
    );
    println!(
        "  target:      < 64 MiB: {}",
        if peak < 64.0 * 1024.0 {
            "met"
        } else {
            "MISSED"
        }
    );
    assert!(ok, "the copy did not store the expected bytes: {outcome:?}");
}

/// A `kB` line of /proc/self/status, in KiB.
fn proc_status_kib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(f64::NAN)
}
