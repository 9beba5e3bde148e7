//! Copy benchmark: for 10 MiB, 100 MiB and 1 GiB files it prints one markdown table with the
//! copy engine's throughput and peak RSS next to its true floor and next to a boto3 peer, all
//! against the same moto in the same run:
//!
//! - the **floor** is the slower of a plain download of the same file from the same local
//!   server to nowhere (reqwest, streamed), and the fastest plain upload of the same bytes:
//!   already in memory, to the same moto S3 through the AWS SDK directly, as the sink sends
//!   it (one PutObject up to the sink's single-PutObject size, else in parts of the sink's
//!   size with as many in flight as the sink keeps);
//! - the **peer** is `benches/peer_boto3.py copy`: boto3's `upload_fileobj` streaming the same
//!   download (its defaults: 8 MiB parts, 10 in flight), hashing it on the way as the copy does,
//!   in its own Python process (its peak RSS is that process's).
//!
//! Targets: copy peak RSS under 64 MiB at every size; copy throughput at least 90% of the floor
//! at every size, and at least the peer's from 100 MiB up.
//!
//! It also takes a 1-byte copy apart round trip by round trip (SDK interceptors on the copy's
//! DynamoDB and S3 clients, a timing wrapper around its audio source), next to a bare 1-byte
//! PutObject: the per-copy fixed cost, with what each round trip is for.
//!
//! Run: `make bench-copy` (or `cargo bench --bench copy_memory`). `BENCH_MIB=10,100` picks other
//! sizes, `BENCH_ROUNDS=n` runs every size n times (default 11, 9 and 3 for the three sizes; the
//! table gives medians and the highest peak RSS), `BENCH_PARTS_IN_FLIGHT=n` sets the copy's and
//! the floor's parts in flight, `BENCH_PART_MIB=n` their part size and
//! `BENCH_SINGLE_PUT_MIB=n` the largest file sent as one PutObject (default: the sink's,
//! `S3SinkOptions::default()`).
//!
//! Every measurement runs in a fresh child process (this binary with `measure`, or the peer),
//! since VmHWM only grows: the copy's peak RSS is that of a process that did nothing but record
//! one callback and copy one file. The audio server is another child (`serve-audio`) that serves
//! every measurement. S3 and DynamoDB get a moto server each (started once by the support
//! code), as they are separate services in AWS: S3's is pinned to a CPU of its own (see
//! `pin_moto_apart`). Objects are deleted after every measurement so that moto does not hold
//! gigabytes. Under `cargo test --all-targets` it does nothing.
#[path = "../tests/support/audio_server.rs"]
mod audio_server;
#[path = "common/peer.rs"]
mod peer;
#[path = "common/summary.rs"]
mod summary;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextRef,
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_s3::config::{ConfigBag, Intercept, RequestChecksumCalculation, RuntimeComponents};
use aws_sdk_s3::error::BoxError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use musicgpt_webhook::adapters::dynamodb::DynamoTable;
use musicgpt_webhook::adapters::musicgpt::MusicGptApi;
use musicgpt_webhook::adapters::s3::{S3Sink, S3SinkOptions};
use musicgpt_webhook::adapters::source::{HttpDownload, HttpSource, SourceGuard, SourceOptions};
use musicgpt_webhook::app::copy::{CopyEngine, CopyOutcome};
use musicgpt_webhook::app::ports::{AssetStore, AudioSource, ChunkSource, Download, Ports};
use musicgpt_webhook::app::record::Recorder;
use musicgpt_webhook::domain::callback::Callback;
use musicgpt_webhook::domain::keys::{AssetKey, KeyPrefix};
use musicgpt_webhook::domain::retry::RetryPolicy;

const MIB: u64 = 1024 * 1024;
const RSS_TARGET_MIB: f64 = 64.0;
const FLOOR_TARGET: f64 = 0.90;
/// From this size up, the copy must be at least as fast as the boto3 peer.
const PEER_TARGET_FROM_MIB: u64 = 100;
/// Rounds of the 1-byte copy that is taken apart.
const FIXED_ROUNDS: usize = 5;
/// Every measurement serves and stores this file name: the bytes depend on it and the length.
const FILE_NAME: &str = "bench.wav";
/// How a child hands its figures to the parent: one stdout line starting with this.
const RESULT_TAG: &str = "BENCH-RESULT ";

/// What the parent tells each measuring child (environment variables).
const ENV_S3: &str = "BENCH_S3_ENDPOINT";
const ENV_DYNAMO: &str = "BENCH_DYNAMO_ENDPOINT";
const ENV_AUDIO_PORT: &str = "BENCH_AUDIO_PORT";
const ENV_TABLE: &str = "BENCH_TABLE";
const ENV_BUCKET: &str = "BENCH_BUCKET";
/// Also read from the caller's environment: the copy's and the floor's parts in flight.
const ENV_PARTS: &str = "BENCH_PARTS_IN_FLIGHT";
/// And the part size, in MiB.
const ENV_PART_MIB: &str = "BENCH_PART_MIB";
/// And the largest file sent as one PutObject, in MiB.
const ENV_SINGLE_PUT_MIB: &str = "BENCH_SINGLE_PUT_MIB";

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
        let server = audio_server::AudioServer::start_from_memory().await;
        println!("{}", server.addr().port());
        tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await
        .expect("wait for stdin to close");
    });
}

/// The sink's settings, with `BENCH_PARTS_IN_FLIGHT`, `BENCH_PART_MIB` and
/// `BENCH_SINGLE_PUT_MIB` if set.
fn sink_options() -> S3SinkOptions {
    let mut options = S3SinkOptions::default();
    if let Ok(text) = std::env::var(ENV_PARTS) {
        options.parts_in_flight = text
            .trim()
            .parse()
            .expect("BENCH_PARTS_IN_FLIGHT: a number of parts");
    }
    if let Ok(text) = std::env::var(ENV_PART_MIB) {
        let mib: usize = text.trim().parse().expect("BENCH_PART_MIB: MiB per part");
        options.part_size = mib * MIB as usize;
    }
    if let Ok(text) = std::env::var(ENV_SINGLE_PUT_MIB) {
        let mib: usize = text
            .trim()
            .parse()
            .expect("BENCH_SINGLE_PUT_MIB: MiB sent as one PutObject");
        options.single_put_max = mib * MIB as usize;
    }
    options.clamped()
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
    peer_secs: f64,
    peer_peak_mib: f64,
    peer_before_mib: f64,
    download_secs: f64,
    upload_secs: f64,
}

/// Where the measuring children find everything.
struct Setup {
    env: Vec<(&'static str, String)>,
    s3_endpoint: String,
    bucket: String,
    port: String,
}

async fn run() {
    let started = Instant::now();
    let load_start = loadavg();
    // Counted before the pinning below narrows what this process may use.
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let sizes = sizes();
    let options = sink_options();

    let (mut audio, port) = start_audio_server();
    let setup_started = Instant::now();
    // S3 and DynamoDB get a moto server each, as they are separate services in AWS: what the
    // copy asks of DynamoDB is not queued behind its own parts.
    let dynamo_endpoint = support::endpoint();
    let s3_endpoint = support::second_endpoint();
    let (table, bucket) = tokio::join!(
        support::fresh_table(),
        support::fresh_bucket_at(&s3_endpoint)
    );
    let pinned = pin_moto_apart(&s3_endpoint, &dynamo_endpoint, audio.id());
    let setup_secs = setup_started.elapsed().as_secs_f64();
    let setup = Setup {
        env: vec![
            (ENV_S3, s3_endpoint.clone()),
            (ENV_DYNAMO, dynamo_endpoint),
            (ENV_AUDIO_PORT, port.clone()),
            (ENV_TABLE, table),
            (ENV_BUCKET, bucket.clone()),
            (ENV_PARTS, options.parts_in_flight.to_string()),
            (ENV_PART_MIB, (options.part_size / MIB as usize).to_string()),
            (
                ENV_SINGLE_PUT_MIB,
                (options.single_put_max / MIB as usize).to_string(),
            ),
        ],
        s3_endpoint,
        bucket: bucket.clone(),
        port,
    };
    eprintln!(
        "copy_memory: sizes {:?} MiB, parts of {} MiB, {} in flight; moto and the audio server \
         are up ({setup_secs:.1} s); {pinned}; peer: {}",
        sizes.iter().map(|(mib, _)| *mib).collect::<Vec<_>>(),
        options.part_size / MIB as usize,
        options.parts_in_flight,
        peer::python().display()
    );

    // Untimed: moto's first multipart uploads are slower (its code paths warm up), and would
    // weigh on whichever side ran first.
    let warm = 10 * MIB;
    measure_in_child(&setup.env, "upload", warm, "warm-u");
    measure_in_child(&setup.env, "copy", warm, "warm-c");
    measure_peer(&setup, warm, "warm-p");
    empty_bucket(&setup).await;

    let fixed = fixed_cost(&setup);

    let mut rows = Vec::new();
    let mut spent = [0.0_f64; 4]; // download, upload, copy, peer: seconds inside the measurements
    for &(mib, rounds) in &sizes {
        let len = mib * MIB;
        let expected = audio_server::sha256(FILE_NAME, len);
        let (mut copy, mut peer, mut download, mut upload) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut peak, mut before, mut peer_peak, mut peer_before) =
            (0.0_f64, 0.0_f64, 0.0_f64, 0.0_f64);
        // Untimed: the audio server makes the file once, then serves it from memory; moto's
        // first upload of a new size is slower (its memory grows to it), whoever sends it.
        measure_in_child(&setup.env, "download", len, &format!("warm-d{mib}"));
        measure_in_child(&setup.env, "upload", len, &format!("warm-u{mib}"));
        empty_bucket(&setup).await;
        flush_disks();
        for round in 0..rounds {
            // Alternating the four within a round spreads any change in load over all of them,
            // and the order turns round every other round (D U C P, then P C U D) so that none
            // always goes first. Each meets an empty bucket and a flushed disk: moto writes
            // every object (and a completed upload twice) to temporary files, and the writeback
            // of one GiB must not fall on the next measurement.
            let mut reports: [Value; 4] = Default::default();
            let order: [usize; 4] = if round % 2 == 0 {
                [0, 1, 2, 3]
            } else {
                [3, 2, 1, 0]
            };
            for which in order {
                reports[which] = match which {
                    0 => measure_in_child(&setup.env, "download", len, &format!("d{mib}-{round}")),
                    1 => measure_in_child(&setup.env, "upload", len, &format!("u{mib}-{round}")),
                    2 => measure_in_child(&setup.env, "copy", len, &format!("c{mib}-{round}")),
                    _ => measure_peer(&setup, len, &format!("p{mib}-{round}")),
                };
                empty_bucket(&setup).await;
                flush_disks();
            }
            let [d, u, c, p] = reports;
            for (who, report) in [("copy", &c), ("peer", &p)] {
                assert_eq!(
                    report["sha256"].as_str(),
                    Some(expected.as_str()),
                    "the {who} of {mib} MiB stored other bytes: {report}"
                );
            }
            if round == 0 {
                eprintln!("    the copy's round trips: {}", steps_summary(&c));
                eprintln!("    the floor's upload: {}", steps_summary(&u));
            }
            download.push(secs(&d));
            upload.push(secs(&u));
            copy.push(secs(&c));
            peer.push(secs(&p));
            let mib_of =
                |report: &Value, field: &str| report[field].as_f64().unwrap_or(f64::NAN) / 1024.0;
            peak = peak.max(mib_of(&c, "peak_kib"));
            before = before.max(mib_of(&c, "before_kib"));
            peer_peak = peer_peak.max(mib_of(&p, "peak_kib"));
            peer_before = peer_before.max(mib_of(&p, "before_kib"));
            eprintln!(
                "  {mib} MiB round {}/{rounds}: download {:.2} s, upload {:.2} s, copy {:.2} s \
                 (peak RSS {:.1} MiB), peer {:.2} s (peak RSS {:.1} MiB)",
                round + 1,
                secs(&d),
                secs(&u),
                secs(&c),
                mib_of(&c, "peak_kib"),
                secs(&p),
                mib_of(&p, "peak_kib"),
            );
        }
        for (total, times) in spent.iter_mut().zip([&download, &upload, &copy, &peer]) {
            *total += times.iter().sum::<f64>();
        }
        rows.push(Row {
            mib,
            runs: rounds,
            copy_secs: median(&mut copy),
            copy_peak_mib: peak,
            copy_before_mib: before,
            peer_secs: median(&mut peer),
            peer_peak_mib: peer_peak,
            peer_before_mib: peer_before,
            download_secs: median(&mut download),
            upload_secs: median(&mut upload),
        });
        empty_bucket(&setup).await;
    }
    drop(audio.stdin.take());
    let _ = audio.wait();

    print_table(&rows, options);
    fixed.print();
    println!();
    println!(
        "Seconds inside the measurements: download {:.1}, upload to moto {:.1}, copy {:.1}, \
         peer {:.1}; moto start and set-up {setup_secs:.1}; whole run {:.0} s.",
        spent[0],
        spent[1],
        spent[2],
        spent[3],
        started.elapsed().as_secs_f64()
    );
    println!(
        "Machine: {} CPUs, {:.1} GiB memory; load average (1/5/15 min) {load_start} at the start, \
         {} at the end; {pinned}.",
        cpus,
        meminfo_kib("MemTotal") / (1024.0 * 1024.0),
        loadavg()
    );
}

fn print_table(rows: &[Row], options: S3SinkOptions) {
    let parts = options.parts_in_flight;
    println!(
        "| file | runs | copy MiB/s | copy peak RSS MiB (before copy) | boto3 peer MiB/s | peer peak RSS MiB (before) | copy/peer | download MiB/s | upload MiB/s (as the sink sends it) | floor MiB/s | copy/floor |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let (mut rss_met, mut floor_met, mut peer_met) = (true, true, true);
    for row in rows {
        let mib = row.mib as f64;
        let copy = mib / row.copy_secs;
        let peer = mib / row.peer_secs;
        let download = mib / row.download_secs;
        let upload = mib / row.upload_secs;
        let (floor, which) = if download <= upload {
            (download, "download")
        } else {
            (upload, "upload")
        };
        let ratio = copy / floor;
        let vs_peer = copy / peer;
        let how = if row.mib * MIB <= options.single_put_max as u64 {
            "one PutObject".to_owned()
        } else {
            format!("{parts} parts in flight")
        };
        let peer_applies = row.mib >= PEER_TARGET_FROM_MIB;
        rss_met &= row.copy_peak_mib < RSS_TARGET_MIB;
        floor_met &= ratio >= FLOOR_TARGET;
        peer_met &= !peer_applies || vs_peer >= 1.0;
        let label = size_label(row.mib);
        let mut target = summary::verdict(
            &format!(">= {:.0}% of the floor", FLOOR_TARGET * 100.0),
            ratio >= FLOOR_TARGET,
        );
        if peer_applies {
            target = format!(
                "{target}; {}",
                summary::verdict(">= the peer", vs_peer >= 1.0)
            );
        }
        summary::record_vs_peer(
            summary::Row {
                part: "copy",
                figure: format!("{label}: throughput (median of {})", row.runs),
                measured: format!("{copy:.1} MiB/s"),
                floor: format!("{floor:.1} MiB/s ({which}, {how})"),
                vs_floor: format!("{:.0}%", ratio * 100.0),
                target,
            },
            format!("{peer:.1} MiB/s"),
            format!("{vs_peer:.2}"),
        );
        summary::record_vs_peer(
            summary::Row {
                part: "copy",
                figure: format!("{label}: peak RSS"),
                measured: format!("{:.1} MiB", row.copy_peak_mib),
                floor: String::new(),
                vs_floor: String::new(),
                target: summary::verdict(
                    &format!("< {RSS_TARGET_MIB:.0} MiB"),
                    row.copy_peak_mib < RSS_TARGET_MIB,
                ),
            },
            format!("{:.1} MiB", row.peer_peak_mib),
            format!("{:.2}", row.copy_peak_mib / row.peer_peak_mib),
        );
        println!(
            "| {label} | {} | {copy:.1} | {:.1} ({:.1}) | {peer:.1} | {:.1} ({:.1}) | {vs_peer:.2} | {download:.1} | {upload:.1} | {floor:.1} ({which}) | {:.0}% |",
            row.runs,
            row.copy_peak_mib,
            row.copy_before_mib,
            row.peer_peak_mib,
            row.peer_before_mib,
            ratio * 100.0
        );
    }
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    println!();
    println!(
        "Targets: copy peak RSS < {RSS_TARGET_MIB:.0} MiB at every size: {}; copy >= {:.0}% of \
         the floor at every size: {}; copy >= the boto3 peer from {} up: {}.",
        verdict(rss_met),
        FLOOR_TARGET * 100.0,
        verdict(floor_met),
        size_label(PEER_TARGET_FROM_MIB),
        verdict(peer_met)
    );
    println!(
        "Files up to {} MiB go up as one PutObject, larger ones in parts of {} MiB, {parts} in \
         flight; either way the bytes go up while they are read (the source announces its \
         length). The sink holds at most {} MiB ((parts in flight + 1) x part size, for a body \
         of unknown length, each part read whole first). The peer: boto3 upload_fileobj with \
         its defaults (multipart from 8 MiB, 8 MiB parts, 10 in flight). Times are medians of \
         the runs; peak RSS is the highest VmHWM of the copying processes (one fresh process \
         per run).",
        options.single_put_max / MIB as usize,
        options.part_size / MIB as usize,
        options.memory_bound() / MIB as usize,
    );
    summary::record(summary::Row {
        part: "copy",
        figure: "parts in flight (part size)".into(),
        measured: format!("{parts} ({} MiB)", options.part_size / MIB as usize),
        floor: format!("{parts} (the same)"),
        vs_floor: String::new(),
        target: format!(
            "memory bound (parts in flight + 1) x part size = {} MiB",
            options.memory_bound() / MIB as usize
        ),
    });
}

// ---------------------------------------------------------------------------------------------
// The fixed cost of one copy, round trip by round trip

/// The 1-byte copy taken apart (medians over the rounds), and the bare PutObject it is held to.
struct FixedCost {
    rounds: usize,
    copy_ms: f64,
    put_ms: f64,
    /// (what, median ms, median ms on the wire) in the order they happened.
    steps: Vec<(String, f64, Option<f64>)>,
    /// The median time no round trip was under way (they may overlap).
    between_ms: f64,
}

/// A round trip of the 1-byte copy: its name, and which of that name (from 1).
type StepKey = (String, usize);

fn fixed_cost(setup: &Setup) -> FixedCost {
    let tiny_sha256 = audio_server::sha256(FILE_NAME, 1);
    let (mut copies, mut puts, mut timelines) = (Vec::new(), Vec::new(), Vec::new());
    let mut between = Vec::new();
    for round in 0..FIXED_ROUNDS {
        puts.push(secs(&measure_in_child(
            &setup.env,
            "upload",
            1,
            &format!("u0-{round}"),
        )));
        let c = measure_in_child(&setup.env, "copy", 1, &format!("c0-{round}"));
        assert_eq!(c["sha256"].as_str(), Some(tiny_sha256.as_str()), "{c}");
        copies.push(secs(&c));
        between.push(secs(&c) * 1000.0 - busy_ms(&c));
        let steps: Vec<(String, f64, Option<f64>)> = c["steps"]
            .as_array()
            .expect("the 1-byte copy reports its steps")
            .iter()
            .map(|s| {
                (
                    s["name"].as_str().unwrap_or("?").to_owned(),
                    s["ms"].as_f64().unwrap_or(f64::NAN),
                    s["wire_ms"].as_f64(),
                )
            })
            .collect();
        timelines.push(steps);
    }
    // Round trips that overlap may start in either order: each is known by its name and
    // which of that name it is, and listed in round 0's order.
    let keyed = |timeline: &[(String, f64, Option<f64>)]| {
        let mut seen: HashMap<String, usize> = HashMap::new();
        timeline
            .iter()
            .map(|(name, ms, wire)| {
                let nth = seen.entry(name.clone()).or_default();
                *nth += 1;
                ((name.clone(), *nth), (*ms, *wire))
            })
            .collect::<Vec<_>>()
    };
    let rounds: Vec<HashMap<StepKey, (f64, Option<f64>)>> = timelines
        .iter()
        .map(|t| keyed(t).into_iter().collect())
        .collect();
    let keys: Vec<StepKey> = keyed(&timelines[0]).into_iter().map(|(k, _)| k).collect();
    for (round, these) in rounds.iter().enumerate() {
        let mut found: Vec<&StepKey> = these.keys().collect();
        let mut expected: Vec<&StepKey> = keys.iter().collect();
        found.sort();
        expected.sort();
        assert_eq!(
            found, expected,
            "round {round} of the 1-byte copy made other round trips than round 0"
        );
    }
    let steps = keys
        .iter()
        .map(|key| {
            let mut ms: Vec<f64> = rounds.iter().map(|r| r[key].0).collect();
            let mut wire: Vec<f64> = rounds.iter().filter_map(|r| r[key].1).collect();
            let wire = (!wire.is_empty()).then(|| median(&mut wire));
            (key.0.clone(), median(&mut ms), wire)
        })
        .collect();
    FixedCost {
        rounds: FIXED_ROUNDS,
        copy_ms: median(&mut copies) * 1000.0,
        put_ms: median(&mut puts) * 1000.0,
        steps,
        between_ms: median(&mut between).max(0.0),
    }
}

/// How long at least one of a copy's round trips was under way: the union of their spans.
fn busy_ms(report: &Value) -> f64 {
    let mut spans: Vec<(f64, f64)> = report["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let start = s["start_ms"].as_f64()?;
            Some((start, start + s["ms"].as_f64()?))
        })
        .collect();
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut busy, mut reach) = (0.0, f64::NEG_INFINITY);
    for (start, end) in spans {
        if end > reach {
            busy += end - start.max(reach);
            reach = end;
        }
    }
    busy
}

impl FixedCost {
    fn print(&self) {
        println!();
        println!(
            "Fixed cost per copy: a 1-byte file takes {:.1} ms to copy against {:.1} ms for a bare \
             1-byte PutObject (medians of {}, each in a fresh process). Round trip by round trip:",
            self.copy_ms, self.put_ms, self.rounds
        );
        println!();
        println!("| # | round trip | ms | of which on the wire | why it is needed |");
        println!("|---:|---|---:|---:|---|");
        let mut seen = Vec::new();
        for (i, (name, ms, wire)) in self.steps.iter().enumerate() {
            let nth = seen.iter().filter(|n| *n == name).count();
            seen.push(name.clone());
            let (what, why) = explain(name, nth);
            let wire = wire.map_or("-".to_owned(), |w| format!("{w:.1}"));
            println!("| {} | {what} | {ms:.1} | {wire} | {why} |", i + 1);
        }
        // The claim and the source GET overlap: their times add up to more than they took.
        println!(
            "| | the engine and the SDK between round trips | {:.1} | | lease owner id, metadata, \
             reading the item; logging is off here (the time no round trip was under way) |",
            self.between_ms
        );
        println!("| | whole copy | {:.1} | | |", self.copy_ms);
        let aws = self
            .steps
            .iter()
            .filter(|(name, _, _)| !name.starts_with("source"))
            .count();
        summary::record(summary::Row {
            part: "copy",
            figure: format!("1-byte copy: fixed cost (median of {})", self.rounds),
            measured: format!("{:.1} ms", self.copy_ms),
            floor: format!("{:.1} ms (one PutObject)", self.put_ms),
            vs_floor: format!("{:.2}", self.copy_ms / self.put_ms),
            target: format!(
                "{aws} AWS round trips and the source GET, each needed (see the copy table)"
            ),
        });
    }
}

/// A copy's steps grouped by what they were: how many, their time added up, and when the
/// first began and the last ended (ms from the copy's start).
fn steps_summary(report: &Value) -> String {
    let mut groups: Vec<(String, usize, f64, f64, f64)> = Vec::new();
    for step in report["steps"].as_array().into_iter().flatten() {
        let name = step["name"].as_str().unwrap_or("?").to_owned();
        let start = step["start_ms"].as_f64().unwrap_or(f64::NAN);
        let ms = step["ms"].as_f64().unwrap_or(f64::NAN);
        match groups.iter_mut().find(|g| g.0 == name) {
            Some(group) => {
                group.1 += 1;
                group.2 += ms;
                group.4 = group.4.max(start + ms);
            }
            None => groups.push((name, 1, ms, start, start + ms)),
        }
    }
    if std::env::var_os("BENCH_STEPS").is_some() {
        let every: Vec<String> = report["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|step| {
                let start = step["start_ms"].as_f64().unwrap_or(f64::NAN);
                let ms = step["ms"].as_f64().unwrap_or(f64::NAN);
                format!(
                    "{} [{start:.0}-{:.0}]",
                    step["name"].as_str().unwrap_or("?"),
                    start + ms
                )
            })
            .collect();
        eprintln!("    every round trip: {}", every.join(", "));
    }
    groups
        .iter()
        .map(|(name, n, total, first, last)| {
            format!("{name} x{n} {total:.0} ms [{first:.0}-{last:.0}]")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a round trip of the 1-byte copy is, and why the copy cannot do without it.
fn explain(name: &str, nth: usize) -> (String, &'static str) {
    match (name, nth) {
        ("UpdateItem", 0) => (
            "DynamoDB UpdateItem: claim".into(),
            "takes the lease (PENDING, due, no live lease) and returns the item: two workers \
             never copy one asset at once",
        ),
        ("UpdateItem", _) => (
            "DynamoDB UpdateItem: STORED".into(),
            "records size, etag and sha256, only while the lease is still ours",
        ),
        ("HeadObject", _) => (
            "S3 HeadObject: an earlier copy?".into(),
            "an attempt whose STORED write-back was lost left a complete object: taken as it \
             is, never uploaded twice",
        ),
        ("source GET", _) => (
            "source GET, to the response headers".into(),
            "the download (its Content-Length and Content-Type); sent beside the claim, from the \
             stream record's image, and its end waits for the lease",
        ),
        ("source body", _) => (
            "source body, to its verified end".into(),
            "the bytes; the end is checked against Content-Length before anything is stored",
        ),
        ("PutObject", _) => (
            "S3 PutObject".into(),
            "the upload, with its metadata and the sha256 (a body this small is read whole \
             first; a larger one is sent while it is read and tagged beside the STORED write)",
        ),
        ("PutObjectTagging", _) => (
            "S3 PutObjectTagging: the sha256 tag".into(),
            "the hash, known once the body is read; sent beside the STORED write",
        ),
        (other, _) => (
            format!("{other} (unexpected)"),
            "not part of the design: look into it",
        ),
    }
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
                // moto's times wander by a tenth from run to run: more runs where they are cheap.
                0..=10 => 11,
                11..=100 => 9,
                _ => 3,
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

/// moto stands in for S3, whose CPU is not the copier's: on a machine of few cores, every
/// cycle the copy spends hashing and reading its source would otherwise be taken from S3's
/// moto, and count against the copy twice. So S3's moto (its processes and threads) gets CPU 0
/// and everything else (this process, its children, the audio server, the peer, and
/// DynamoDB's moto, idle while parts go up) the others. `BENCH_PIN=0` leaves them all to the
/// scheduler. Returns what was done, for the report.
fn pin_moto_apart(s3_endpoint: &str, dynamo_endpoint: &str, audio_pid: u32) -> String {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 || std::env::var("BENCH_PIN").is_ok_and(|v| v == "0") {
        return "not pinned: the moto servers and the clients share every CPU".into();
    }
    let pids_of = |endpoint: &str| -> Vec<String> {
        let port = endpoint.rsplit(':').next().unwrap_or_default();
        Command::new("pgrep")
            .args(["-f", &format!("moto_atomic.py 127.0.0.1 {port}")])
            .output()
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let (s3, dynamo) = (pids_of(s3_endpoint), pids_of(dynamo_endpoint));
    let clients = format!("1-{}", cpus - 1);
    let pin = |list: &str, pid: &str| {
        Command::new("taskset")
            .args(["-a", "-c", "-p", list, pid])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let own = std::process::id().to_string();
    let done = !s3.is_empty()
        && !dynamo.is_empty()
        && s3.iter().all(|pid| pin("0", pid))
        && dynamo.iter().all(|pid| pin(&clients, pid))
        && pin(&clients, &own)
        && pin(&clients, &audio_pid.to_string());
    if done {
        format!("S3's moto pinned to CPU 0, DynamoDB's moto and the clients to CPU {clients}")
    } else {
        "not pinned (taskset or pgrep failed): the moto servers and the clients share every CPU"
            .into()
    }
}

/// Writes back what the last measurement left dirty in the page cache (`sync`).
fn flush_disks() {
    let _ = Command::new("sync").status();
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

async fn empty_bucket(setup: &Setup) {
    let s3 = support::s3_for(&support::sdk_config_for(&setup.s3_endpoint));
    let bucket = &setup.bucket;
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

/// Runs the boto3 peer on the same file, into the same bucket, and returns its report.
fn measure_peer(setup: &Setup, len: u64, tag: &str) -> Value {
    peer::run(
        &[
            "copy",
            "--endpoint",
            &setup.s3_endpoint,
            "--bucket",
            &setup.bucket,
            "--key",
            &format!("peer/{tag}/{FILE_NAME}"),
            "--source",
            &format!("http://127.0.0.1:{}/ok/{len}/{FILE_NAME}", setup.port),
        ],
        "",
    )
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

/// An S3 client for moto as the tests make it (path-style, checksums when required).
fn s3_client_with(sdk: &aws_config::SdkConfig, timeline: Option<&Timeline>) -> aws_sdk_s3::Client {
    let mut config = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
    if let Some(timeline) = timeline {
        config = config.interceptor(timeline.clone());
    }
    aws_sdk_s3::Client::from_conf(config.build())
}

async fn measure(kind: &str, len: u64, tag: &str) -> Value {
    match kind {
        "copy" => measure_copy(len, tag).await,
        "download" => measure_download(len).await,
        "upload" => measure_upload(len, tag).await,
        other => panic!("unknown measurement {other}"),
    }
}

/// The adapters the copier runs with, but for a source that reports when its request and its
/// body began and ended.
#[derive(Debug, Clone, Copy)]
struct BenchPorts;

impl Ports for BenchPorts {
    type Tasks = DynamoTable;
    type Assets = DynamoTable;
    type Source = TimedSource;
    type Sink = S3Sink;
    type Api = MusicGptApi;
}

#[derive(Clone)]
struct TimedSource {
    inner: HttpSource,
    timeline: Timeline,
}

impl AudioSource for TimedSource {
    type Download = TimedDownload;

    async fn open(&self, url: &str) -> musicgpt_webhook::error::Result<TimedDownload> {
        self.timeline.open("source GET");
        let download = self.inner.open(url).await;
        self.timeline.close();
        Ok(TimedDownload {
            inner: download?,
            timeline: self.timeline.clone(),
            reading: false,
        })
    }
}

struct TimedDownload {
    inner: HttpDownload,
    timeline: Timeline,
    reading: bool,
}

impl Download for TimedDownload {
    fn content_type(&self) -> Option<&str> {
        self.inner.content_type()
    }
}

impl ChunkSource for TimedDownload {
    fn announced_len(&self) -> Option<u64> {
        self.inner.announced_len()
    }

    async fn next_chunk(&mut self) -> musicgpt_webhook::error::Result<Option<Bytes>> {
        if !self.reading {
            self.reading = true;
            self.timeline.open("source body");
        }
        let next = self.inner.next_chunk().await;
        if !matches!(next, Ok(Some(_))) {
            self.timeline.close();
        }
        next
    }
}

/// What a copy did when, from SDK interceptors (each operation, and the time its attempts spent
/// between sending the request and receiving the response) and the timed source. A step ends
/// in the task that began it: each task makes one request at a time (the sink sends each part
/// from a task of its own).
#[derive(Debug, Clone, Default)]
struct Timeline {
    inner: Arc<TimelineInner>,
}

#[derive(Debug, Default)]
struct TimelineInner {
    on: AtomicBool,
    origin: Mutex<Option<Instant>>,
    steps: Mutex<Vec<Step>>,
}

#[derive(Debug, Clone)]
struct Step {
    task: Option<tokio::task::Id>,
    name: String,
    start_ms: f64,
    end_ms: Option<f64>,
    wire_from: Option<f64>,
    wire_ms: Option<f64>,
}

impl Timeline {
    fn start(&self) {
        *self.inner.origin.lock().expect("timeline") = Some(Instant::now());
        self.inner.steps.lock().expect("timeline").clear();
        self.inner.on.store(true, Ordering::SeqCst);
    }

    fn stop(&self) -> Vec<Step> {
        self.inner.on.store(false, Ordering::SeqCst);
        std::mem::take(&mut *self.inner.steps.lock().expect("timeline"))
    }

    fn now_ms(&self) -> Option<f64> {
        if !self.inner.on.load(Ordering::SeqCst) {
            return None;
        }
        let origin = *self.inner.origin.lock().expect("timeline");
        origin.map(|o| o.elapsed().as_secs_f64() * 1000.0)
    }

    fn open(&self, name: &str) {
        if let Some(now) = self.now_ms() {
            self.inner.steps.lock().expect("timeline").push(Step {
                task: tokio::task::try_id(),
                name: name.to_owned(),
                start_ms: now,
                end_ms: None,
                wire_from: None,
                wire_ms: None,
            });
        }
    }

    /// Applies `change` to the latest step still open in this task.
    fn with_open(&self, change: impl FnOnce(&mut Step, f64)) {
        if let Some(now) = self.now_ms() {
            let task = tokio::task::try_id();
            let mut steps = self.inner.steps.lock().expect("timeline");
            if let Some(step) = steps
                .iter_mut()
                .rev()
                .find(|s| s.end_ms.is_none() && s.task == task)
            {
                change(step, now);
            }
        }
    }

    fn close(&self) {
        self.with_open(|step, now| step.end_ms = Some(now));
    }
}

impl Intercept for Timeline {
    fn name(&self) -> &'static str {
        "Timeline"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.open(operation(context));
        Ok(())
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.with_open(|step, now| step.wire_from = Some(now));
        Ok(())
    }

    fn read_after_transmit(
        &self,
        _context: &BeforeDeserializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.with_open(|step, now| {
            if let Some(from) = step.wire_from.take() {
                step.wire_ms = Some(step.wire_ms.unwrap_or(0.0) + now - from);
            }
        });
        Ok(())
    }

    fn read_after_execution(
        &self,
        _context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.close();
        Ok(())
    }
}

/// The operation, from its typed input.
fn operation(context: &BeforeSerializationInterceptorContextRef<'_>) -> &'static str {
    use aws_sdk_dynamodb::operation as dynamodb;
    use aws_sdk_s3::operation as s3;
    let input = context.input();
    macro_rules! first_of {
        ($($input:ty => $name:literal),* $(,)?) => {
            $(if input.downcast_ref::<$input>().is_some() { return $name; })*
        };
    }
    first_of!(
        s3::head_object::HeadObjectInput => "HeadObject",
        s3::put_object::PutObjectInput => "PutObject",
        s3::create_multipart_upload::CreateMultipartUploadInput => "CreateMultipartUpload",
        s3::upload_part::UploadPartInput => "UploadPart",
        s3::complete_multipart_upload::CompleteMultipartUploadInput => "CompleteMultipartUpload",
        s3::put_object_tagging::PutObjectTaggingInput => "PutObjectTagging",
        s3::get_object_tagging::GetObjectTaggingInput => "GetObjectTagging",
        s3::get_object::GetObjectInput => "GetObject",
        dynamodb::update_item::UpdateItemInput => "UpdateItem",
        dynamodb::get_item::GetItemInput => "GetItem",
        dynamodb::put_item::PutItemInput => "PutItem",
        dynamodb::transact_write_items::TransactWriteItemsInput => "TransactWriteItems",
        dynamodb::query::QueryInput => "Query",
    );
    "another operation"
}

/// The copy engine, as the stream copier runs it (from the record's image): claim, download,
/// upload, mark STORED.
async fn measure_copy(len: u64, tag: &str) -> Value {
    let sdk = support::sdk_config_for(&env(ENV_S3));
    let timeline = Timeline::default();
    let dynamo = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&support::sdk_config_for(&env(ENV_DYNAMO)))
            .interceptor(timeline.clone())
            .build(),
    );
    let table = env(ENV_TABLE);
    let options = sink_options();
    let source = HttpSource::new(
        SourceGuard::new(&["127.0.0.1".to_owned()]).expect("hosts"),
        SourceOptions {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            max_redirects: 3,
            max_bytes: 4 * 1024 * MIB,
        },
    )
    .expect("source");
    let engine = CopyEngine::<BenchPorts>::new(
        DynamoTable::new(dynamo.clone(), &table),
        TimedSource {
            inner: source,
            timeline: timeline.clone(),
        },
        S3Sink::new(s3_client_with(&sdk, Some(&timeline)), env(ENV_BUCKET)).with_options(options),
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

    // The item as the stream record's new image brings it to the copier.
    let seen = engine
        .assets()
        .get(&asset)
        .await
        .expect("read the asset item")
        .expect("the asset item");
    let before = proc_status_kib("VmRSS");
    timeline.start();
    let started = Instant::now();
    let outcome = engine.copy_seen(&seen, None).await.expect("copy");
    let secs = started.elapsed().as_secs_f64();
    let steps = steps_json(&timeline.stop());
    let peak = proc_status_kib("VmHWM");
    let CopyOutcome::Stored { size, sha256 } = &outcome else {
        panic!("the copy did not store the file: {outcome:?}");
    };
    assert_eq!(*size, len, "stored size");
    json!({
        "secs": secs, "peak_kib": peak, "before_kib": before, "sha256": sha256, "steps": steps,
    })
}

fn steps_json(steps: &[Step]) -> Vec<Value> {
    steps
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "start_ms": s.start_ms,
                "ms": s.end_ms.unwrap_or(f64::NAN) - s.start_ms,
                "wire_ms": s.wire_ms,
            })
        })
        .collect()
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

/// The upload half of the floor: the same bytes, already in memory, into the same S3 through
/// the SDK directly, in parts of the sink's size with as many in flight as the sink keeps
/// (one PutObject up to the sink's single-PutObject size), payloads unsigned as the sink sends
/// them.
async fn measure_upload(len: u64, tag: &str) -> Value {
    let timeline = Timeline::default();
    let s3 = s3_client_with(&support::sdk_config_for(&env(ENV_S3)), Some(&timeline));
    let bucket = env(ENV_BUCKET);
    let key = format!("floor/{tag}/{FILE_NAME}");
    let body = Bytes::from(audio_server::body(FILE_NAME, len));
    let options = sink_options();
    let part = options.part_size;

    timeline.start();
    let started = Instant::now();
    if len <= options.single_put_max as u64 {
        s3.put_object()
            .bucket(&bucket)
            .key(&key)
            .content_type("audio/mpeg")
            .content_length(len as i64)
            .body(ByteStream::from(body))
            .customize()
            .disable_payload_signing()
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
        let mut running = JoinSet::new();
        let mut parts = Vec::new();
        for (i, start) in (0..len as usize).step_by(part).enumerate() {
            if running.len() >= options.parts_in_flight
                && let Some(done) = running.join_next().await
            {
                parts.push(done.expect("an UploadPart task"));
            }
            let number = i as i32 + 1;
            let chunk = body.slice(start..(start + part).min(len as usize));
            let request = s3
                .upload_part()
                .bucket(&bucket)
                .key(&key)
                .upload_id(&upload_id)
                .part_number(number)
                .content_length(chunk.len() as i64)
                .body(ByteStream::from(chunk))
                .customize()
                .disable_payload_signing();
            running.spawn(async move {
                let out = request.send().await.expect("UploadPart");
                CompletedPart::builder()
                    .part_number(number)
                    .e_tag(out.e_tag().unwrap_or_default())
                    .build()
            });
        }
        while let Some(done) = running.join_next().await {
            parts.push(done.expect("an UploadPart task"));
        }
        parts.sort_by_key(|p| p.part_number());
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
    let steps = steps_json(&timeline.stop());

    let head = s3
        .head_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .expect("HeadObject");
    assert_eq!(head.content_length(), Some(len as i64), "uploaded bytes");
    json!({ "secs": secs, "steps": steps })
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
