//! Copy benchmark: for 10 MiB, 100 MiB and 1 GiB files it prints one markdown table with the
//! copy engine's throughput and peak RSS next to the floor, the slower of
//!
//! - a plain download of the same file from the same local server to nowhere (reqwest,
//!   streamed), and
//! - a plain upload of the same bytes from memory to the same moto S3 with the sink's shape
//!   (one PutObject up to 8 MiB, else a multipart upload of 8 MiB parts, one part at a time),
//!   through the AWS SDK directly.
//!
//! Targets: copy peak RSS under 64 MiB at every size, copy throughput at least 70% of the floor.
//!
//! Run: `make bench-copy` (or `cargo bench --bench copy_memory`). `BENCH_MIB=10,100` picks other
//! sizes, `BENCH_ROUNDS=n` runs every size n times (default 5, 3 and 1 for the three sizes; the
//! table gives medians and the highest peak RSS).
//!
//! Every measurement runs in a fresh child process (this binary with `measure`), since VmHWM
//! only grows: the copy's peak RSS is that of a process that did nothing but record one
//! callback and copy one file. The audio server is another child (`serve-audio`) that serves
//! every measurement; moto is started once by the support code. Objects are deleted after each
//! size so that moto does not hold gigabytes. Under `cargo test --all-targets` it does nothing.
#[path = "../tests/support/audio_server.rs"]
mod audio_server;
#[path = "common/summary.rs"]
mod summary;
#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use serde_json::{Value, json};

use musicgpt_webhook::adapters::AwsPorts;
use musicgpt_webhook::adapters::dynamodb::DynamoTable;
use musicgpt_webhook::adapters::s3::{PART_SIZE, S3Sink};
use musicgpt_webhook::adapters::source::{HttpSource, SourceGuard, SourceOptions};
use musicgpt_webhook::app::copy::{CopyEngine, CopyOutcome};
use musicgpt_webhook::app::record::Recorder;
use musicgpt_webhook::domain::callback::Callback;
use musicgpt_webhook::domain::keys::{AssetKey, KeyPrefix};
use musicgpt_webhook::domain::retry::RetryPolicy;

const MIB: u64 = 1024 * 1024;
const RSS_TARGET_MIB: f64 = 64.0;
const FLOOR_TARGET: f64 = 0.70;
/// Every measurement serves and stores this file name: the bytes depend on it and the length.
const FILE_NAME: &str = "bench.wav";
/// How a child hands its figures to the parent: one stdout line starting with this.
const RESULT_TAG: &str = "BENCH-RESULT ";

/// What the parent tells each measuring child (environment variables).
const ENV_MOTO: &str = "BENCH_MOTO_ENDPOINT";
const ENV_AUDIO_PORT: &str = "BENCH_AUDIO_PORT";
const ENV_TABLE: &str = "BENCH_TABLE";
const ENV_BUCKET: &str = "BENCH_BUCKET";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("serve-audio") {
        serve_audio();
        return;
    }
    if args.get(1).map(String::as_str) == Some("measure") {
        let kind = args.get(2).expect("measure <kind> <bytes> <tag>").clone();
        let len: u64 = args
            .get(3)
            .and_then(|v| v.parse().ok())
            .expect("measure <kind> <bytes> <tag>");
        let tag = args.get(4).expect("measure <kind> <bytes> <tag>").clone();
        let report = runtime().block_on(measure(&kind, len, &tag));
        println!("{RESULT_TAG}{report}");
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        println!("copy_memory: a benchmark; run it with `cargo bench --bench copy_memory`");
        return;
    }
    runtime().block_on(run());
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
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

// ---------------------------------------------------------------------------------------------
// The parent: sets up, runs one child per measurement, prints the table.

/// Medians and extremes of one size's runs.
struct Row {
    mib: u64,
    runs: usize,
    copy_secs: f64,
    copy_peak_mib: f64,
    copy_before_mib: f64,
    download_secs: f64,
    upload_secs: f64,
}

async fn run() {
    let started = Instant::now();
    let load_start = loadavg();
    let sizes = sizes();

    let (mut audio, port) = start_audio_server();
    let setup = Instant::now();
    let endpoint = support::endpoint();
    let (table, bucket) = tokio::join!(support::fresh_table(), support::fresh_bucket());
    let setup_secs = setup.elapsed().as_secs_f64();
    let env = [
        (ENV_MOTO, endpoint),
        (ENV_AUDIO_PORT, port),
        (ENV_TABLE, table),
        (ENV_BUCKET, bucket.clone()),
    ];
    eprintln!(
        "copy_memory: sizes {:?} MiB; moto and the audio server are up ({setup_secs:.1} s)",
        sizes.iter().map(|(mib, _)| *mib).collect::<Vec<_>>()
    );

    // The copy's fixed cost (lease claim, HeadObject, STORED write-back: DynamoDB and S3 round
    // trips the floor does not make), seen on a 1-byte file next to a 1-byte PutObject.
    let tiny_sha256 = audio_server::sha256(FILE_NAME, 1);
    let (mut tiny_copy, mut tiny_upload) = (Vec::new(), Vec::new());
    for round in 0..3 {
        tiny_upload.push(secs(&measure_in_child(
            &env,
            "upload",
            1,
            &format!("u0-{round}"),
        )));
        let c = measure_in_child(&env, "copy", 1, &format!("c0-{round}"));
        assert_eq!(c["sha256"].as_str(), Some(tiny_sha256.as_str()), "{c}");
        tiny_copy.push(secs(&c));
    }
    let fixed = (median(&mut tiny_copy), median(&mut tiny_upload));

    let mut rows = Vec::new();
    let mut spent = [0.0_f64; 3]; // download, upload, copy: seconds inside the measurements
    for &(mib, rounds) in &sizes {
        let len = mib * MIB;
        let expected = audio_server::sha256(FILE_NAME, len);
        let (mut copy, mut download, mut upload) = (Vec::new(), Vec::new(), Vec::new());
        let (mut peak, mut before) = (0.0_f64, 0.0_f64);
        for round in 0..rounds {
            // Alternating the three within a round spreads any change in load over all of them.
            let d = measure_in_child(&env, "download", len, &format!("d{mib}-{round}"));
            let u = measure_in_child(&env, "upload", len, &format!("u{mib}-{round}"));
            let c = measure_in_child(&env, "copy", len, &format!("c{mib}-{round}"));
            assert_eq!(
                c["sha256"].as_str(),
                Some(expected.as_str()),
                "the copy of {mib} MiB stored other bytes: {c}"
            );
            download.push(secs(&d));
            upload.push(secs(&u));
            copy.push(secs(&c));
            peak = peak.max(c["peak_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0);
            before = before.max(c["before_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0);
            eprintln!(
                "  {mib} MiB round {}/{rounds}: download {:.2} s, upload {:.2} s, copy {:.2} s, \
                 copy peak RSS {:.1} MiB",
                round + 1,
                secs(&d),
                secs(&u),
                secs(&c),
                c["peak_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0
            );
        }
        spent[0] += download.iter().sum::<f64>();
        spent[1] += upload.iter().sum::<f64>();
        spent[2] += copy.iter().sum::<f64>();
        rows.push(Row {
            mib,
            runs: rounds,
            copy_secs: median(&mut copy),
            copy_peak_mib: peak,
            copy_before_mib: before,
            download_secs: median(&mut download),
            upload_secs: median(&mut upload),
        });
        empty_bucket(&bucket).await;
    }
    drop(audio.stdin.take());
    let _ = audio.wait();

    print_table(&rows);
    println!(
        "Fixed cost per copy: a 1-byte file takes {:.0} ms to copy against {:.0} ms for a \
         1-byte PutObject (medians of 3): the copy's own DynamoDB and S3 round trips, about \
         {:.0} ms whatever the size.",
        fixed.0 * 1000.0,
        fixed.1 * 1000.0,
        (fixed.0 - fixed.1) * 1000.0
    );
    println!();
    println!(
        "Seconds inside the measurements: download {:.1}, upload to moto {:.1}, copy {:.1}; \
         moto start and set-up {setup_secs:.1}; whole run {:.0} s.",
        spent[0],
        spent[1],
        spent[2],
        started.elapsed().as_secs_f64()
    );
    println!(
        "Machine: {} CPUs, {:.1} GiB memory; load average (1/5/15 min) {load_start} at the start, \
         {} at the end.",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        meminfo_kib("MemTotal") / (1024.0 * 1024.0),
        loadavg()
    );
}

fn print_table(rows: &[Row]) {
    println!(
        "| file | runs | copy MiB/s | copy peak RSS MiB (before copy) | download MiB/s | upload MiB/s | floor MiB/s | copy/floor |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut rss_met = true;
    let mut floor_met = true;
    for row in rows {
        let mib = row.mib as f64;
        let copy = mib / row.copy_secs;
        let download = mib / row.download_secs;
        let upload = mib / row.upload_secs;
        let (floor, which) = if download <= upload {
            (download, "download")
        } else {
            (upload, "upload")
        };
        let ratio = copy / floor;
        rss_met &= row.copy_peak_mib < RSS_TARGET_MIB;
        floor_met &= ratio >= FLOOR_TARGET;
        let label = size_label(row.mib);
        summary::record(summary::Row {
            part: "copy",
            figure: format!("{label}: throughput (median of {})", row.runs),
            measured: format!("{copy:.1} MiB/s"),
            floor: format!("{floor:.1} MiB/s ({which})"),
            vs_floor: format!("{:.0}%", ratio * 100.0),
            target: summary::verdict(
                &format!(">= {:.0}% of the floor", FLOOR_TARGET * 100.0),
                ratio >= FLOOR_TARGET,
            ),
        });
        summary::record(summary::Row {
            part: "copy",
            figure: format!("{label}: peak RSS"),
            measured: format!("{:.1} MiB", row.copy_peak_mib),
            floor: String::new(),
            vs_floor: String::new(),
            target: summary::verdict(
                &format!("< {RSS_TARGET_MIB:.0} MiB"),
                row.copy_peak_mib < RSS_TARGET_MIB,
            ),
        });
        println!(
            "| {} | {} | {copy:.1} | {:.1} ({:.1}) | {download:.1} | {upload:.1} | {floor:.1} ({which}) | {:.0}% |",
            size_label(row.mib),
            row.runs,
            row.copy_peak_mib,
            row.copy_before_mib,
            ratio * 100.0
        );
    }
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    println!();
    println!(
        "Targets: copy peak RSS < {RSS_TARGET_MIB:.0} MiB at every size: {}; copy >= {:.0}% of the floor at every size: {}.",
        verdict(rss_met),
        FLOOR_TARGET * 100.0,
        verdict(floor_met)
    );
    println!(
        "Times are medians of the runs; peak RSS is the highest VmHWM of the copying processes \
         (one fresh process per run)."
    );
}

fn size_label(mib: u64) -> String {
    if mib >= 1024 && mib.is_multiple_of(1024) {
        format!("{} GiB", mib / 1024)
    } else {
        format!("{mib} MiB")
    }
}

/// `BENCH_MIB` (comma-separated MiB) or 10, 100, 1024; with the number of runs of each.
fn sizes() -> Vec<(u64, usize)> {
    let sizes: Vec<u64> = std::env::var("BENCH_MIB")
        .ok()
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().parse().expect("BENCH_MIB: comma-separated MiB"))
                .collect()
        })
        .unwrap_or_else(|| vec![10, 100, 1024]);
    let rounds: Option<usize> = std::env::var("BENCH_ROUNDS")
        .ok()
        .map(|v| v.parse().expect("BENCH_ROUNDS: a number"));
    sizes
        .into_iter()
        .map(|mib| {
            let default = match mib {
                0..=10 => 5,
                11..=100 => 3,
                _ => 1,
            };
            (mib, rounds.unwrap_or(default).max(1))
        })
        .collect()
}

fn start_audio_server() -> (Child, String) {
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
    (child, port.trim().to_owned())
}

/// Runs `measure <kind> <len> <tag>` in a fresh process and returns its report.
fn measure_in_child(env: &[(&str, String)], kind: &str, len: u64, tag: &str) -> Value {
    let out = Command::new(std::env::current_exe().expect("own path"))
        .args(["measure", kind, &len.to_string(), tag])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("start a measuring process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "measure {kind} {len} failed ({}): {stdout}",
        out.status
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(RESULT_TAG))
        .unwrap_or_else(|| panic!("measure {kind} {len} printed no result: {stdout}"));
    serde_json::from_str(line).expect("a JSON result")
}

async fn empty_bucket(bucket: &str) {
    let s3 = support::s3().await;
    let listed = s3
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .expect("list the bench bucket");
    for object in listed.contents() {
        if let Some(key) = object.key() {
            s3.delete_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .expect("delete a bench object");
        }
    }
}

fn secs(report: &Value) -> f64 {
    report["secs"].as_f64().expect("a time in the report")
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

// ---------------------------------------------------------------------------------------------
// The children: one measurement each, reported as one JSON line.

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the parent"))
}

fn source_url(len: u64) -> String {
    format!(
        "http://127.0.0.1:{}/ok/{len}/{FILE_NAME}",
        env(ENV_AUDIO_PORT)
    )
}

fn s3_client() -> aws_sdk_s3::Client {
    support::s3_for(&support::sdk_config_for(&env(ENV_MOTO)))
}

async fn measure(kind: &str, len: u64, tag: &str) -> Value {
    match kind {
        "copy" => measure_copy(len, tag).await,
        "download" => measure_download(len).await,
        "upload" => measure_upload(len, tag).await,
        other => panic!("unknown measurement {other}"),
    }
}

/// The copy engine, as the copier runs it: claim, download, upload, mark STORED.
async fn measure_copy(len: u64, tag: &str) -> Value {
    let sdk = support::sdk_config_for(&env(ENV_MOTO));
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let table = env(ENV_TABLE);
    let engine = CopyEngine::<AwsPorts>::new(
        DynamoTable::new(dynamo.clone(), &table),
        HttpSource::new(
            SourceGuard::new(&["127.0.0.1".to_owned()]).expect("hosts"),
            SourceOptions {
                connect_timeout: Duration::from_secs(5),
                read_timeout: Duration::from_secs(60),
                max_redirects: 3,
                max_bytes: 4 * 1024 * MIB,
            },
        )
        .expect("source"),
        S3Sink::new(support::s3_for(&sdk), env(ENV_BUCKET)),
        RetryPolicy {
            base_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
            lease: Duration::from_secs(3600),
            lease_grace: Duration::from_secs(60),
            ..RetryPolicy::with_max_attempts(1)
        },
    );
    let recorder = Recorder::<DynamoTable>::new(
        DynamoTable::new(dynamo, &table),
        KeyPrefix::default(),
        Duration::from_secs(86_400),
    );
    let body = json!({
        "task_id": format!("bench-{tag}"), "conversion_id": format!("conv-{tag}"),
        "success": true, "conversion_path": source_url(len),
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

    let before = proc_status_kib("VmRSS");
    let started = Instant::now();
    let outcome = engine.copy(&asset, None).await.expect("copy");
    let secs = started.elapsed().as_secs_f64();
    let peak = proc_status_kib("VmHWM");
    let CopyOutcome::Stored { size, sha256 } = &outcome else {
        panic!("the copy did not store the file: {outcome:?}");
    };
    assert_eq!(*size, len, "stored size");
    json!({ "secs": secs, "peak_kib": peak, "before_kib": before, "sha256": sha256 })
}

/// The download half of the floor: the same file from the same server, to nowhere.
async fn measure_download(len: u64) -> Value {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut response = client
        .get(source_url(len))
        .send()
        .await
        .expect("GET the bench file")
        .error_for_status()
        .expect("200 from the audio server");
    let mut received = 0_u64;
    while let Some(chunk) = response.chunk().await.expect("read the body") {
        received += chunk.len() as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(received, len, "downloaded bytes");
    json!({ "secs": secs, "peak_kib": proc_status_kib("VmHWM") })
}

/// The upload half of the floor: the same bytes, already in memory, into the same S3 with the
/// sink's shape, through the SDK directly.
async fn measure_upload(len: u64, tag: &str) -> Value {
    let s3 = s3_client();
    let bucket = env(ENV_BUCKET);
    let key = format!("floor/{tag}/{FILE_NAME}");
    let body = Bytes::from(audio_server::body(FILE_NAME, len));
    let part = PART_SIZE as u64;

    let started = Instant::now();
    if len <= part {
        s3.put_object()
            .bucket(&bucket)
            .key(&key)
            .content_type("audio/mpeg")
            .content_length(len as i64)
            .body(ByteStream::from(body))
            .send()
            .await
            .expect("PutObject");
    } else {
        let upload_id = s3
            .create_multipart_upload()
            .bucket(&bucket)
            .key(&key)
            .content_type("audio/mpeg")
            .send()
            .await
            .expect("CreateMultipartUpload")
            .upload_id()
            .expect("an upload id")
            .to_owned();
        let mut parts = Vec::new();
        for (i, start) in (0..len).step_by(PART_SIZE).enumerate() {
            let number = i as i32 + 1;
            let chunk = body.slice(start as usize..(start + part).min(len) as usize);
            let out = s3
                .upload_part()
                .bucket(&bucket)
                .key(&key)
                .upload_id(&upload_id)
                .part_number(number)
                .content_length(chunk.len() as i64)
                .body(ByteStream::from(chunk))
                .send()
                .await
                .expect("UploadPart");
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .e_tag(out.e_tag().unwrap_or_default())
                    .build(),
            );
        }
        s3.complete_multipart_upload()
            .bucket(&bucket)
            .key(&key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .expect("CompleteMultipartUpload");
    }
    let secs = started.elapsed().as_secs_f64();

    let head = s3
        .head_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .expect("HeadObject");
    assert_eq!(head.content_length(), Some(len as i64), "uploaded bytes");
    json!({ "secs": secs })
}

/// A `kB` line of /proc/self/status, in KiB.
fn proc_status_kib(field: &str) -> f64 {
    kib_line("/proc/self/status", field)
}

fn meminfo_kib(field: &str) -> f64 {
    kib_line("/proc/meminfo", field)
}

fn kib_line(path: &str, field: &str) -> f64 {
    std::fs::read_to_string(path)
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

/// The three load averages of /proc/loadavg.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join("/"))
        .unwrap_or_else(|| "?".into())
}
