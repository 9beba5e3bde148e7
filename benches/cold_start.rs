//! Cold start benchmark: the release `webhook` binary under a minimal Lambda Runtime API
//! emulator, from process start to its first event handled, and its size.
//!
//! `make bench-cold-start` builds the binary (`cargo build --release --bin webhook`, into its
//! own target directory, see `webhook_binary`) and runs this. Every run starts the binary
//! afresh with the environment Lambda gives a function, serves it one API Gateway event (a
//! Music AI song callback with new ids, so a first delivery: one DynamoDB transaction
//! against moto) and stops it once it has posted the response. The binary's pages are in the page cache (it was just built, and one untimed
//! run precedes the timed ones): this measures the function's own start-up, not a disk.
//!
//! `WEBHOOK_BIN` names another binary to measure (a cross-built one, say).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::sync::mpsc;

use common::summary;
use common::{FloorRequests, TOKEN, benchmarking, event_text, fresh_id, load_average, machine, ms};

const EVENT: &str = "http-music-ai-audio-1.json";
/// The ids in that event, replaced by fresh ones in every run.
const EVENT_IDS: [&str; 2] = [
    "4fc2cdba-005d-4d14-a208-5fb02a2809da",
    "05092d5c-f8b1-4c96-a4a3-45bc00de6268",
];
const RUNS: usize = 10;
/// A run normally takes tens of milliseconds; this only keeps a broken binary from hanging.
const RUN_TIMEOUT: Duration = Duration::from_secs(15);
/// The project's performance requirement, process start to first event handled.
const TARGET: Duration = Duration::from_millis(50);
const RUNTIME_PREFIX: &str = "/2018-06-01/runtime";

#[tokio::main]
async fn main() {
    let load_before = load_average();
    let benchmarking = benchmarking();
    // Under `cargo test` (CI) a smoke run: the debug binary cargo just built, once.
    let (binary, runs) = if benchmarking {
        (webhook_binary(), RUNS)
    } else {
        (PathBuf::from(env!("CARGO_BIN_EXE_webhook")), 1)
    };
    let size = std::fs::metadata(&binary)
        .unwrap_or_else(|e| panic!("{}: {e}", binary.display()))
        .len();
    let template = event_text(EVENT);
    let client = aws_sdk_dynamodb::Client::new(&support::sdk_config().await);

    // One untimed run first: the first exec of a freshly linked binary pays for mapping it.
    if benchmarking {
        run_once(&binary, &client, &template, 0).await;
    }
    let runs = {
        let mut done = Vec::new();
        for run in 1..=runs {
            done.push(run_once(&binary, &client, &template, run).await);
        }
        done
    };

    let column = |pick: fn(&Run) -> Duration| runs.iter().map(pick).collect::<Vec<_>>();
    let handled = column(|r| r.handled);
    let (median_handled, max_handled) = median_max(&handled);
    println!("## Cold start: release `webhook` under a Lambda Runtime API emulator\n");
    if !benchmarking {
        println!("smoke run (cargo test, debug binary): figures meaningless\n");
    }
    println!(
        "machine: {}; load average {load_before} before, {} after",
        machine(),
        load_average()
    );
    println!(
        "binary: {}; {} run(s){}, each a new process serving one first-delivered Music AI \
         song callback (one DynamoDB transaction against moto on loopback, a fresh table per \
         run)\n",
        binary.display(),
        runs.len(),
        if benchmarking { " after 1 untimed" } else { "" },
    );
    println!("| figure | median | max | target |");
    println!("| --- | ---: | ---: | --- |");
    let row = |name: &str, samples: &[Duration], target: &str| {
        let (median, max) = median_max(samples);
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {target} |",
            ms(median),
            ms(max)
        );
    };
    row(
        "process start -> runtime ready (first GET /next)",
        &column(|r| r.ready),
        "",
    );
    row(
        "event served -> response posted (handling, incl. DynamoDB)",
        &column(|r| r.handled - r.served),
        "",
    );
    row(
        "the same transaction sent bare from this warm process (moto's share)",
        &column(|r| r.bare),
        "",
    );
    let verdict = if median_handled < TARGET {
        "met"
    } else {
        "MISSED"
    };
    row(
        "**process start -> first event handled (response posted)**",
        &handled,
        &format!("< {} ms (median): {verdict}", TARGET.as_millis()),
    );
    row(
        "first event handled, less the bare transaction (the function's own part)",
        &column(|r| r.handled.saturating_sub(r.bare)),
        "",
    );
    let own_part = median_max(&column(|r| r.handled.saturating_sub(r.bare))).0;
    let rows = [
        (
            "process start -> first event handled (median)",
            format!("{:.1} ms", ms(median_handled)),
            summary::verdict(
                &format!("< {} ms", TARGET.as_millis()),
                median_handled < TARGET,
            ),
        ),
        (
            "the function's own part (first event less moto's transaction)",
            format!("{:.1} ms", ms(own_part)),
            String::new(),
        ),
        (
            "release binary size",
            format!("{:.2} MiB", size as f64 / (1024.0 * 1024.0)),
            String::new(),
        ),
    ];
    for (figure, measured, target) in rows {
        summary::record(summary::Row {
            part: "cold start",
            figure: figure.to_owned(),
            measured,
            floor: String::new(),
            vs_floor: String::new(),
            target,
        });
    }
    let kind = if benchmarking { "release" } else { "debug" };
    println!(
        "| {kind} binary size | {:.2} MiB ({size} bytes) | | |",
        size as f64 / (1024.0 * 1024.0)
    );
    if max_handled >= TARGET {
        println!("\nslowest run over the target: {:.1} ms", ms(max_handled));
    }
}

/// `WEBHOOK_BIN`, else `<target>/cold-start/release/webhook`, where `make bench-cold-start`
/// builds it. Not `<target>/release/webhook`: `cargo bench` relinks that one with the
/// dev-dependencies' features (tokio's `process`, ...), which is not the binary Lambda runs.
/// Refuses a binary older than the sources: measuring a stale build would mislead.
fn webhook_binary() -> PathBuf {
    let binary = match std::env::var_os("WEBHOOK_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            // This executable is <target>/release/deps/cold_start-<hash>.
            let exe = std::env::current_exe().expect("own path");
            let target = exe
                .ancestors()
                .nth(3)
                .expect("a <target>/<profile>/deps layout");
            target.join("cold-start/release/webhook")
        }
    };
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} not found: `make bench-cold-start` builds it \
                 (cargo build --release --bin webhook --target-dir target/cold-start)",
                binary.display()
            )
        });
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let newest_source = ["src", "Cargo.toml", "Cargo.lock"]
        .iter()
        .filter_map(|path| newest_mtime(&manifest.join(path)))
        .max();
    if newest_source.is_some_and(|source| source > built) {
        panic!(
            "{} is older than the sources: rebuild it (`make bench-cold-start` does)",
            binary.display()
        );
    }
    binary
}

fn newest_mtime(path: &Path) -> Option<SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.is_file() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| newest_mtime(&entry.path()))
        .max()
}

struct Run {
    /// Process start to the runtime's first `GET .../invocation/next`.
    ready: Duration,
    /// Process start to the `GET next` that was answered with the event (at once).
    served: Duration,
    /// Process start to `POST .../invocation/<id>/response` received in full.
    handled: Duration,
    /// The DynamoDB transaction the function made, for another new callback, sent bare from
    /// this process right after (its connection to moto is new too: moto closes each one).
    bare: Duration,
}

async fn run_once(
    binary: &Path,
    client: &aws_sdk_dynamodb::Client,
    template: &str,
    run: usize,
) -> Run {
    // A fresh table per run: moto copies the whole table on every transaction, so a table
    // that grew over the earlier runs would slow the later ones.
    let table = support::fresh_table().await;
    let fresh_event = || {
        let mut event = template.to_owned();
        for id in EVENT_IDS {
            event = event.replace(id, &fresh_id());
        }
        event
    };
    let request_id = fresh_id();
    let (addr, mut seen) = start_emulator(fresh_event(), request_id.clone()).await;
    let log_path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cold-start-{run}.log"));
    let log = std::fs::File::create(&log_path).expect("create the function's log file");
    // Nothing of the developer's environment reaches the function: only what Lambda sets,
    // the function's configuration, and moto. With HOME unset the SDK reads no profile.
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "musicgpt-webhook")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/musicgpt-webhook")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/01/01/[$LATEST]bench")
        .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
        .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_SESSION_TOKEN", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", support::endpoint())
        .env("TABLE_NAME", &table)
        .env("WEBHOOK_TOKENS", TOKEN)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone the log handle"))
        .stderr(log)
        .kill_on_drop(true);

    let started = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
    let deadline = tokio::time::sleep(RUN_TIMEOUT);
    tokio::pin!(deadline);
    let (mut ready, mut served) = (None, None);
    let handled = loop {
        tokio::select! {
            message = seen.recv() => match message.expect("emulator running") {
                Seen::Next { at, answered } => {
                    ready.get_or_insert(at - started);
                    if answered {
                        served.get_or_insert(at - started);
                    }
                }
                Seen::Response { at, body } => {
                    check_response(&body, &log_path);
                    break at - started;
                }
                Seen::Error { path, body } => panic!(
                    "the function reported an error on {path}: {}; see {}",
                    String::from_utf8_lossy(&body),
                    log_path.display()
                ),
            },
            status = child.wait() => panic!(
                "the function exited ({:?}) before answering; see {}",
                status, log_path.display()
            ),
            _ = &mut deadline => panic!(
                "no response within {RUN_TIMEOUT:?}; see {}", log_path.display()
            ),
        }
    };
    // It is now polling for its next event; Lambda would freeze it, we stop it.
    child.kill().await.expect("stop the function");

    let bare = FloorRequests::build(client, &table, None, &fresh_event());
    let sent = Instant::now();
    bare.send().await;
    Run {
        ready: ready.expect("a GET next before the response"),
        served: served.expect("an event served before the response"),
        handled,
        bare: sent.elapsed(),
    }
}

/// The function must have answered what the webhook answers a first delivery.
fn check_response(body: &[u8], log_path: &Path) {
    let response: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("response is not JSON ({e}); see {}", log_path.display()));
    let inner: Value = response["body"]
        .as_str()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    assert!(
        response["statusCode"] == 200 && inner["outcome"] == "recorded",
        "unexpected response {response}; see {}",
        log_path.display()
    );
}

// ---------------------------------------------------------------------------------------
// The Lambda Runtime API, as much of it as one invocation needs

enum Seen {
    /// A `GET next`; `answered` when it got the event (later ones are held open).
    Next {
        at: Instant,
        answered: bool,
    },
    Response {
        at: Instant,
        body: Vec<u8>,
    },
    /// `POST .../init/error` or `.../invocation/<id>/error`.
    Error {
        path: String,
        body: Vec<u8>,
    },
}

/// Serves one invocation of `event` on a loopback port; reports every runtime request.
async fn start_emulator(
    event: String,
    request_id: String,
) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the runtime API emulator");
    let addr = listener.local_addr().expect("emulator address");
    let (tx, rx) = mpsc::unbounded_channel();
    let invocation = Arc::new(Invocation {
        event,
        request_id,
        served: AtomicBool::new(false),
    });
    tokio::spawn(async move {
        // Stops listening when the run drops its receiver; the function is gone by then.
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(serve(stream, tx.clone(), invocation.clone()));
                    }
                    Err(_) => break,
                },
                _ = tx.closed() => break,
            }
        }
    });
    (addr, rx)
}

struct Invocation {
    event: String,
    request_id: String,
    served: AtomicBool,
}

/// One keep-alive connection from the runtime client: requests until it closes.
async fn serve(stream: TcpStream, tx: mpsc::UnboundedSender<Seen>, invocation: Arc<Invocation>) {
    let mut stream = BufReader::new(stream);
    while let Some((method, path, body)) = read_request(&mut stream).await {
        let at = Instant::now();
        let next = format!("{RUNTIME_PREFIX}/invocation/next");
        let response = format!(
            "{RUNTIME_PREFIX}/invocation/{}/response",
            invocation.request_id
        );
        if method == "GET" && path == next {
            let answered = !invocation.served.swap(true, Ordering::SeqCst);
            let _ = tx.send(Seen::Next { at, answered });
            if !answered {
                // One event per process: hold the poll until the process is stopped.
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest).await;
                return;
            }
            let deadline_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() + 30_000)
                .unwrap_or_default();
            let headers = [
                ("content-type", "application/json".to_owned()),
                (
                    "lambda-runtime-aws-request-id",
                    invocation.request_id.clone(),
                ),
                ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
                (
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:musicgpt-webhook".to_owned(),
                ),
                (
                    "lambda-runtime-trace-id",
                    "Root=1-69c630a0-17d171ef22771292731694d2;Parent=53995c3f42cd8ad8;Sampled=0"
                        .to_owned(),
                ),
            ];
            write_response(&mut stream, "200 OK", &headers, invocation.event.as_bytes()).await;
        } else if method == "POST" && path == response {
            let _ = tx.send(Seen::Response { at, body });
            write_response(&mut stream, "202 Accepted", &[], br#"{"status":"OK"}"#).await;
        } else if method == "POST" && path.ends_with("/error") {
            let _ = tx.send(Seen::Error { path, body });
            write_response(&mut stream, "202 Accepted", &[], br#"{"status":"OK"}"#).await;
        } else {
            write_response(&mut stream, "404 Not Found", &[], b"{}").await;
        }
    }
}

/// Reads one HTTP/1.1 request (Content-Length or chunked body); None once the peer closes.
async fn read_request(stream: &mut BufReader<TcpStream>) -> Option<(String, String, Vec<u8>)> {
    let mut line = String::new();
    if stream.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let (mut length, mut chunked) = (0usize, false);
    loop {
        line.clear();
        if stream.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            stream.read_line(&mut line).await.ok()?;
            let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            stream.read_exact(&mut chunk).await.ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(length, 0);
        stream.read_exact(&mut body).await.ok()?;
    }
    Some((method, path, body))
}

async fn write_response(
    stream: &mut BufReader<TcpStream>,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) {
    let mut head = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let stream = stream.get_mut();
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
}

// ---------------------------------------------------------------------------------------

fn median_max(samples: &[Duration]) -> (Duration, Duration) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    };
    (median, sorted[n - 1])
}
