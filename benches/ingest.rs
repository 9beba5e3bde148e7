//! Ingest benchmark: the webhook handler in-process against moto, side by side with its
//! floor, the same DynamoDB requests sent bare through the SDK.
//!
//! `make bench-ingest` (or `cargo bench --bench ingest`) prints one markdown table:
//! callbacks/s and p50/p99 latency at concurrency 1 and 32 for the handler and the floor, the
//! ratio handler/floor, and the DynamoDB round trips of every callback variant, counted by an
//! SDK interceptor on the client the handler uses, each with why it is needed.
//!
//! Both sides run the 5 callbacks of a Music AI task (events/http-music-ai-*.json) in the
//! order MusicGPT sends them (songs, their timestamped lyrics, the cover), each task with new
//! ids so every callback is a first delivery, and each task in a fresh table (see
//! `fresh_tables` for why).
//!
//! No log subscriber is installed, so the handler's one log line per callback costs nothing
//! here (in Lambda it is a JSON line on stdout).
//!
//! Counts can be changed: BENCH_C1_CALLBACKS, BENCH_C32_CALLBACKS (rounded up to whole tasks
//! of 5 callbacks).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::get_item::GetItemInput;
use aws_sdk_dynamodb::operation::query::QueryInput;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsInput;
use aws_sdk_dynamodb::operation::update_item::UpdateItemInput;
use lambda_http::{Body, Request};
use musicgpt_webhook::adapters::dynamodb::DynamoTable;
use musicgpt_webhook::app::record::Recorder;
use musicgpt_webhook::domain::callback::Callback;
use musicgpt_webhook::domain::token::WebhookTokens;
use musicgpt_webhook::lambda::http::{Ingest, Webhook};
use serde_json::Value;

use common::{
    FloorRequests, RETENTION, TOKEN, benchmarking, body_of, event_text, fresh_id, key_prefix,
    load_average, machine, ms,
};
use common::{peer, summary};

/// The ids of the Music AI task in events/, replaced by fresh ones in every copy.
const MUSIC_AI_TASK: &str = "4fc2cdba-005d-4d14-a208-5fb02a2809da";
const C1: &str = "05092d5c-f8b1-4c96-a4a3-45bc00de6268";
const C2: &str = "52fcd3b6-3925-41ed-b4c6-aee17a29e40b";

/// One Music AI task, in the order MusicGPT sends it (the events' `timeEpoch`): each song,
/// then each song's timestamped lyrics, then the album cover. Lyrics come after their song,
/// so they find its link, as they do in production.
const MUSIC_AI_SEQUENCE: [&str; 5] = [
    "http-music-ai-audio-1.json",
    "http-music-ai-audio-2.json",
    "http-music-ai-lyrics-1.json",
    "http-music-ai-lyrics-2.json",
    "http-music-ai-cover.json",
];

/// 60 tasks. moto serves DynamoDB one request at a time, some 20 callbacks/s on a 2-core VM,
/// so these counts keep the whole run under two minutes there.
const DEFAULT_C1_CALLBACKS: usize = 300;
/// 128 tasks: each side's two halves are two full rounds of 32 concurrent tasks, without a
/// partly filled last round pulling its percentiles down.
const DEFAULT_C32_CALLBACKS: usize = 640;
const CONCURRENCY: usize = 32;
/// Keeps a wedged emulator from hanging `make bench-ingest`; on a quiet machine each run
/// (one side's half at one concurrency) takes seconds.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// The project's performance requirement for the handler's p50, as a multiple of its floor's.
const TARGET_P50_RATIO: f64 = 1.5;

#[tokio::main]
async fn main() {
    let benchmarking = benchmarking();
    let (c1_default, c32_default) = if benchmarking {
        (DEFAULT_C1_CALLBACKS, DEFAULT_C32_CALLBACKS)
    } else {
        // Smoke run under `cargo test`: a task or two per side, the variants checked.
        (5, 10)
    };
    let c1_callbacks = callbacks_from_env("BENCH_C1_CALLBACKS", c1_default);
    let c32_callbacks = callbacks_from_env("BENCH_C32_CALLBACKS", c32_default);
    let counter = RoundTrips::default();
    let client = counting_client(&counter).await;
    let templates = Templates::load();
    let load_before = load_average();

    let mut rows = Vec::new();
    let mut peer = None;
    for (concurrency, callbacks) in [(1, c1_callbacks), (CONCURRENCY, c32_callbacks)] {
        let tasks = callbacks.div_ceil(MUSIC_AI_SEQUENCE.len());
        let bench = Bench {
            counter: &counter,
            client: &client,
            templates: &templates,
            concurrency,
        };
        if benchmarking {
            bench.warm_up(Side::Handler).await;
            bench.warm_up(Side::Floor).await;
        }
        // Handler, floor, floor, handler: load that drifts during the run (other jobs on
        // the machine) then weighs on both sides alike. At concurrency 1 the boto3 peer
        // runs in the middle, on the same number of callbacks (H F P P F H).
        let (first, second) = (tasks.div_ceil(2), tasks / 2);
        let handler_1 = bench.measure(Side::Handler, first).await;
        let floor_1 = bench.measure(Side::Floor, first).await;
        if concurrency == 1 {
            let peer_1 = measure_peer(&templates, first).await;
            let peer_2 = measure_peer(&templates, second).await;
            peer = Some(peer_1.merge(peer_2));
        }
        let floor_2 = bench.measure(Side::Floor, second).await;
        let handler_2 = bench.measure(Side::Handler, second).await;
        rows.push((
            concurrency,
            handler_1.merge(handler_2),
            floor_1.merge(floor_2),
        ));
    }
    let variants = round_trips_per_variant(&counter, &client, &templates).await;

    if !benchmarking {
        println!("smoke run (cargo test): figures meaningless; `make bench-ingest` measures\n");
    }
    print_report(&rows, peer.as_ref(), &variants, &load_before);
    let mismatched = variants.iter().filter(|v| !v.as_expected()).count();
    if mismatched > 0 {
        eprintln!(
            "{mismatched} variant(s) made other DynamoDB requests than the data model says \
             (README, Data model): the table marks them"
        );
        std::process::exit(1);
    }
}

fn callbacks_from_env(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or_else(|| panic!("{name} must be a positive number, got {text:?}")),
        Err(_) => default,
    }
}

// ---------------------------------------------------------------------------------------
// Counting round trips

/// Counts the DynamoDB operations a client starts and names each. Counted in
/// `read_before_execution`, which runs once per operation: an SDK retry of the same
/// operation is not another round trip of the design (and none happen against moto).
#[derive(Clone, Default, Debug)]
struct RoundTrips {
    inner: Arc<RoundTripsInner>,
}

#[derive(Default, Debug)]
struct RoundTripsInner {
    count: AtomicU64,
    /// Names of the operations since the last `take_ops`, when recording is on (variants).
    ops: Mutex<Option<Vec<String>>>,
}

impl RoundTrips {
    fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }

    fn start_recording(&self) {
        *self.inner.ops.lock().expect("ops lock") = Some(Vec::new());
    }

    fn take_ops(&self) -> Vec<String> {
        self.inner
            .ops
            .lock()
            .expect("ops lock")
            .take()
            .unwrap_or_default()
    }
}

impl Intercept for RoundTrips {
    fn name(&self) -> &'static str {
        "RoundTrips"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner.count.fetch_add(1, Ordering::Relaxed);
        let mut ops = self.inner.ops.lock().expect("ops lock");
        if let Some(ops) = ops.as_mut() {
            ops.push(operation_name(context));
        }
        Ok(())
    }
}

/// The operation, from its typed input (the store uses only these four).
fn operation_name(context: &BeforeSerializationInterceptorContextRef<'_>) -> String {
    let input = context.input();
    if let Some(tx) = input.downcast_ref::<TransactWriteItemsInput>() {
        let writes = tx.transact_items().len();
        format!("TransactWriteItems ({writes} writes)")
    } else if input.downcast_ref::<GetItemInput>().is_some() {
        "GetItem".to_owned()
    } else if input.downcast_ref::<UpdateItemInput>().is_some() {
        "UpdateItem".to_owned()
    } else if input.downcast_ref::<QueryInput>().is_some() {
        "Query".to_owned()
    } else {
        "other".to_owned()
    }
}

/// One client for the whole benchmark, handler and floor alike, so both pay for the same
/// interceptor and share one warm connection pool.
async fn counting_client(counter: &RoundTrips) -> Client {
    let config = aws_sdk_dynamodb::config::Builder::from(&support::sdk_config().await)
        .interceptor(counter.clone())
        .build();
    Client::from_conf(config)
}

// ---------------------------------------------------------------------------------------
// Events with fresh ids

/// The Lambda events, read once; every use substitutes new ids.
struct Templates {
    music_ai: Vec<String>,
}

impl Templates {
    fn load() -> Templates {
        Templates {
            music_ai: MUSIC_AI_SEQUENCE
                .iter()
                .map(|name| event_text(name))
                .collect(),
        }
    }
}

/// The ids of one copy of the Music AI task.
struct TaskIds {
    task: String,
    c1: String,
    c2: String,
}

impl TaskIds {
    fn fresh() -> TaskIds {
        TaskIds {
            task: fresh_id(),
            c1: fresh_id(),
            c2: fresh_id(),
        }
    }

    fn apply(&self, template: &str) -> String {
        template
            .replace(MUSIC_AI_TASK, &self.task)
            .replace(C1, &self.c1)
            .replace(C2, &self.c2)
    }
}

fn request_of(event: &str) -> Request {
    lambda_http::request::from_str(event).expect("events/ parse as Lambda requests")
}

// ---------------------------------------------------------------------------------------
// The handler and its floor

fn webhook_for(client: &Client, table: &str) -> Webhook<DynamoTable> {
    let tokens = WebhookTokens::parse(TOKEN).expect("test token");
    Webhook::new(Ingest::<DynamoTable>::new(
        tokens,
        recorder_for(client, table),
    ))
}

fn recorder_for(client: &Client, table: &str) -> Recorder<DynamoTable> {
    let store = DynamoTable::new(client.clone(), table);
    Recorder::<DynamoTable>::new(store, key_prefix(), RETENTION)
}

/// Calls the handler as the Lambda runtime would; panics unless it answered 200 with the
/// expected outcome (a benchmark of failures would measure nothing).
async fn handle(webhook: &Webhook<DynamoTable>, request: Request) -> Value {
    let response = webhook.handle(request).await;
    let status = response.status().as_u16();
    let body: Value = match response.body() {
        Body::Text(text) => serde_json::from_str(text).expect("JSON response"),
        other => panic!("expected a text body, got {other:?}"),
    };
    assert_eq!(status, 200, "handler answered {status}: {body}");
    body
}

// ---------------------------------------------------------------------------------------
// Runs

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Handler,
    Floor,
}

struct RunStats {
    /// One per callback; sorted once merged.
    latencies: Vec<Duration>,
    wall: Duration,
    round_trips: u64,
}

impl RunStats {
    fn merge(mut self, other: RunStats) -> RunStats {
        self.latencies.extend(other.latencies);
        self.latencies.sort();
        self.wall += other.wall;
        self.round_trips += other.round_trips;
        self
    }

    fn callbacks(&self) -> usize {
        self.latencies.len()
    }

    fn per_second(&self) -> f64 {
        self.callbacks() as f64 / self.wall.as_secs_f64()
    }

    /// Nearest-rank percentile.
    fn p(&self, percentile: f64) -> Duration {
        let n = self.latencies.len();
        let rank = ((percentile / 100.0) * n as f64).ceil().max(1.0) as usize;
        self.latencies[rank.min(n) - 1]
    }

    fn round_trips_per_callback(&self) -> f64 {
        self.round_trips as f64 / self.callbacks() as f64
    }
}

/// What every run of one concurrency level shares.
struct Bench<'a> {
    counter: &'a RoundTrips,
    client: &'a Client,
    templates: &'a Templates,
    concurrency: usize,
}

impl Bench<'_> {
    /// Untimed: pages the code in and starts the runtime's threads, so neither side pays
    /// for that inside its figures. (moto closes every connection, so there is no pool to
    /// warm.)
    async fn warm_up(&self, side: Side) {
        let tables = fresh_tables(self.concurrency.min(8)).await;
        let warm = run_tasks(side, self.client, self.templates, tables, self.concurrency);
        tokio::time::timeout(RUN_TIMEOUT, warm)
            .await
            .expect("warm-up within the time limit");
    }

    /// `tasks` Music AI tasks, `concurrency` of them at a time, each task's 5 callbacks one
    /// after the other (as MusicGPT sends them). Times each callback: for the handler
    /// `Webhook::handle`, for the floor only the SDK's `send()` of prebuilt requests.
    async fn measure(&self, side: Side, tasks: usize) -> RunStats {
        let setup = Instant::now();
        let tables = fresh_tables(tasks).await;
        let setup = setup.elapsed();
        let before = self.counter.count();
        let started = Instant::now();
        let run = run_tasks(side, self.client, self.templates, tables, self.concurrency);
        let latencies = tokio::time::timeout(RUN_TIMEOUT, run)
            .await
            .unwrap_or_else(|_| panic!("{side:?} run over {RUN_TIMEOUT:?}"));
        let wall = started.elapsed();
        eprintln!(
            "[ingest] {side:?}, concurrency {}: {} callbacks in {:.1} s ({tasks} tables made \
             in {:.1} s, untimed)",
            self.concurrency,
            latencies.len(),
            wall.as_secs_f64(),
            setup.as_secs_f64(),
        );
        RunStats {
            latencies,
            wall,
            round_trips: self.counter.count() - before,
        }
    }
}

/// A fresh table for every task, so every callback meets the same small table, as it would
/// meet the same DynamoDB whatever its size. moto's costs can grow with the table (its Query
/// scans the whole table; its own transactions copied it before tests/support/moto_atomic.py
/// replaced that with an item-level rollback).
async fn fresh_tables(count: usize) -> Vec<String> {
    let mut tables = Vec::with_capacity(count);
    for _ in 0..count {
        tables.push(support::fresh_table().await);
    }
    tables
}

/// Runs one task per table, `concurrency` at a time; returns every callback's latency.
async fn run_tasks(
    side: Side,
    client: &Client,
    templates: &Templates,
    tables: Vec<String>,
    concurrency: usize,
) -> Vec<Duration> {
    let tables = Arc::new(tables);
    let templates = Arc::new(templates.music_ai.clone());
    let next_task = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (next_task, tables, templates, client) = (
            next_task.clone(),
            tables.clone(),
            templates.clone(),
            client.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let Some(table) = tables.get(next_task.fetch_add(1, Ordering::Relaxed)) else {
                    return latencies;
                };
                let webhook = webhook_for(&client, table);
                let ids = TaskIds::fresh();
                for template in templates.iter() {
                    let event = ids.apply(template);
                    match side {
                        Side::Handler => {
                            let request = request_of(&event);
                            let started = Instant::now();
                            let body = handle(&webhook, request).await;
                            latencies.push(started.elapsed());
                            assert_eq!(body["outcome"], "recorded", "{body}");
                        }
                        Side::Floor => {
                            let requests =
                                FloorRequests::build(&client, table, Some(&ids.task), &event);
                            let started = Instant::now();
                            requests.send().await;
                            latencies.push(started.elapsed());
                        }
                    }
                }
            }
        }));
    }
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.expect("worker panicked"));
    }
    all
}

/// The boto3 peer (`benches/peer_boto3.py ack`) on `tasks` Music AI tasks with fresh ids, in
/// one fresh table against the same moto: for each callback, one conditional PutItem of its
/// raw body (the least a receiver can write before it answers), timed in the peer's process
/// from the body in hand to the PutItem's answer, as the handler is timed here.
async fn measure_peer(templates: &Templates, tasks: usize) -> RunStats {
    if tasks == 0 {
        return RunStats {
            latencies: Vec::new(),
            wall: Duration::ZERO,
            round_trips: 0,
        };
    }
    let table = support::fresh_table().await;
    let mut bodies = String::new();
    for _ in 0..tasks {
        let ids = TaskIds::fresh();
        for template in &templates.music_ai {
            let body = body_of(&ids.apply(template));
            bodies.push_str(&serde_json::to_string(&body).expect("a JSON string"));
            bodies.push('\n');
        }
    }
    let endpoint = support::endpoint();
    let started = Instant::now();
    let report = tokio::task::spawn_blocking(move || {
        peer::run(
            &["ack", "--endpoint", &endpoint, "--table", &table],
            &bodies,
        )
    })
    .await
    .expect("the peer's thread");
    let latencies: Vec<Duration> = report["latencies"]
        .as_array()
        .expect("the peer's latencies")
        .iter()
        .map(|v| Duration::from_secs_f64(v.as_f64().expect("seconds")))
        .collect();
    eprintln!(
        "[ingest] boto3 peer, concurrency 1: {} callbacks in {:.1} s (a Python process, \
         started and warmed up inside that time)",
        latencies.len(),
        started.elapsed().as_secs_f64()
    );
    let round_trips = latencies.len() as u64;
    RunStats {
        wall: latencies.iter().sum(),
        latencies,
        round_trips,
    }
}

// ---------------------------------------------------------------------------------------
// Round trips per variant

/// One callback variant: how to reach its state, what the handler must answer, and the
/// DynamoDB requests the data model (README) says it needs, each with why.
struct Variant {
    name: &'static str,
    /// Sent first, uncounted, to put the table in the state the variant needs.
    setup: Vec<String>,
    event: String,
    outcome: &'static str,
    expected: Vec<(&'static str, &'static str)>,
}

struct VariantResult {
    name: &'static str,
    ops: Vec<String>,
    expected: Vec<(&'static str, &'static str)>,
    outcome: String,
    expected_outcome: &'static str,
}

impl VariantResult {
    fn as_expected(&self) -> bool {
        self.outcome == self.expected_outcome
            && self.ops.len() == self.expected.len()
            && self
                .ops
                .iter()
                .zip(&self.expected)
                .all(|(op, (expected, _))| op.starts_with(expected))
    }

    fn why(&self) -> String {
        if !self.as_expected() {
            return format!(
                "UNEXPECTED: made {:?}, answered {}; the data model says {:?}, {}",
                self.ops,
                self.outcome,
                self.expected.iter().map(|(op, _)| *op).collect::<Vec<_>>(),
                self.expected_outcome,
            );
        }
        self.ops
            .iter()
            .zip(&self.expected)
            .enumerate()
            .map(|(i, (op, (_, why)))| format!("{}. {op}: {why}", i + 1))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

const RECORD: &str = "record the callback and every item it touches, atomically";

fn variants(templates: &Templates) -> Vec<Variant> {
    let [audio, second_audio, lyrics, _, cover] = &templates.music_ai[..] else {
        unreachable!("five Music AI events")
    };
    let fresh = |template: &str| TaskIds::fresh().apply(template);
    let with_own_ids = |name: &str, ids: &[&str]| {
        let mut event = event_text(name);
        for id in ids {
            event = event.replace(id, &fresh_id());
        }
        event
    };
    let linked = TaskIds::fresh();
    let parked = TaskIds::fresh();
    let duplicate = fresh(audio);
    let adopting = TaskIds::fresh();
    let (first_song, second_song) = songs_losing_the_tiebreak(audio, second_audio);
    vec![
        Variant {
            name: "documented sample",
            setup: vec![],
            event: with_own_ids(
                "http-docs-sample.json",
                &["12345678-abcd-1234-efgh-567890abcdef"],
            ),
            outcome: "recorded",
            expected: vec![("TransactWriteItems", RECORD)],
        },
        Variant {
            name: "Music AI audio",
            setup: vec![],
            event: fresh(audio),
            outcome: "recorded",
            expected: vec![("TransactWriteItems", RECORD)],
        },
        Variant {
            name: "album cover",
            setup: vec![],
            event: fresh(cover),
            outcome: "recorded",
            expected: vec![("TransactWriteItems", RECORD)],
        },
        Variant {
            name: "stems",
            setup: vec![],
            event: with_own_ids(
                "http-stems.json",
                &[
                    "fc0f74e8-2a50-42e0-ae7f-855075c39176",
                    "2bae5dc8-34f1-441b-97dd-7e58b5543be1",
                ],
            ),
            outcome: "recorded",
            expected: vec![("TransactWriteItems", RECORD)],
        },
        Variant {
            name: "failure",
            setup: vec![],
            event: with_own_ids(
                "http-failure.json",
                &[
                    "33140620-6759-4a55-869c-b4f8d0b24e1a",
                    "a03080d7-2dc9-4084-b518-0c4d304fd1f5",
                ],
            ),
            outcome: "recorded",
            expected: vec![("TransactWriteItems", RECORD)],
        },
        Variant {
            name: "lyrics, conversion already linked",
            setup: vec![linked.apply(audio)],
            event: linked.apply(lyrics),
            outcome: "recorded",
            expected: vec![
                (
                    "GetItem",
                    "find the task: lyrics name only their conversion",
                ),
                ("TransactWriteItems", "record them under that task"),
            ],
        },
        Variant {
            name: "lyrics parked before their song",
            setup: vec![],
            event: parked.apply(lyrics),
            outcome: "parked",
            expected: vec![
                ("GetItem", "find the task: no link yet"),
                ("UpdateItem", "park the callback under its conversion"),
                (
                    "UpdateItem",
                    "flag the link so the song's write adopts it (and see a link written \
                     meanwhile)",
                ),
            ],
        },
        Variant {
            name: "duplicate (audio redelivered)",
            setup: vec![duplicate.clone()],
            event: duplicate,
            outcome: "duplicate",
            expected: vec![(
                "TransactWriteItems",
                "cancelled by the raw callback's create-only condition: nothing written",
            )],
        },
        Variant {
            name: "song after its parked lyrics (extra)",
            setup: vec![adopting.apply(lyrics)],
            event: adopting.apply(audio),
            outcome: "recorded",
            expected: vec![
                (
                    "TransactWriteItems",
                    "cancelled: the link's condition finds parked callbacks",
                ),
                ("Query", "read the parked callbacks"),
                (
                    "TransactWriteItems",
                    "record the parked lyrics under the task",
                ),
                (
                    "TransactWriteItems",
                    "record the song again, link now unconditional",
                ),
            ],
        },
        Variant {
            name: "second song, status tiebreak lost (extra)",
            setup: vec![first_song],
            event: second_song,
            outcome: "recorded",
            expected: vec![
                (
                    "TransactWriteItems",
                    "cancelled: the task already holds COMPLETED with a higher hash tiebreak",
                ),
                (
                    "TransactWriteItems",
                    "record it again without the task's status guard",
                ),
            ],
        },
    ]
}

/// Both songs of a new task, in the order in which the second loses the task item's status
/// guard: both report COMPLETED with no `updatedAt`, so the callback hash breaks the tie and
/// the lower hash is refused (`plan::status_order`). In an ordinary Music AI task this
/// happens to about half the second songs and two thirds of the covers.
fn songs_losing_the_tiebreak(audio_1: &str, audio_2: &str) -> (String, String) {
    let ids = TaskIds::fresh();
    let (one, two) = (ids.apply(audio_1), ids.apply(audio_2));
    let sha = |event: &str| {
        Callback::parse(body_of(event).as_bytes(), Some("application/json"))
            .expect("events/ hold valid callbacks")
            .sha256
    };
    if sha(&one) > sha(&two) {
        (one, two)
    } else {
        (two, one)
    }
}

async fn round_trips_per_variant(
    counter: &RoundTrips,
    client: &Client,
    templates: &Templates,
) -> Vec<VariantResult> {
    let table = support::fresh_table().await;
    let webhook = webhook_for(client, &table);
    let mut results = Vec::new();
    for variant in variants(templates) {
        for setup in &variant.setup {
            handle(&webhook, request_of(setup)).await;
        }
        counter.start_recording();
        let body = handle(&webhook, request_of(&variant.event)).await;
        results.push(VariantResult {
            name: variant.name,
            ops: counter.take_ops(),
            expected: variant.expected,
            outcome: body["outcome"].as_str().unwrap_or("?").to_owned(),
            expected_outcome: variant.outcome,
        });
    }
    results
}

// ---------------------------------------------------------------------------------------
// Report

fn print_report(
    rows: &[(usize, RunStats, RunStats)],
    peer: Option<&RunStats>,
    variants: &[VariantResult],
    load_before: &str,
) {
    println!("## Ingest: webhook handler vs its floor (the same DynamoDB requests, bare)\n");
    println!(
        "machine: {}; load average {load_before} before, {} after",
        machine(),
        load_average()
    );
    println!(
        "against {} (DynamoDB requests serialised by tests/support/moto_atomic.py); every \
         callback a first delivery; Music AI tasks of 5 callbacks (2 songs, 2 lyrics, cover) \
         in order, `concurrency` tasks at a time, a fresh table each; handler and floor \
         alternate (H F F H)\n",
        moto_version()
    );
    println!("| figure | concurrency | callbacks | handler | floor | handler/floor | note |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | --- |");
    let ratio = |h: f64, f: f64| format!("{:.2}", h / f);
    for (concurrency, handler, floor) in rows {
        let n = handler.callbacks();
        println!(
            "| callbacks/s | {concurrency} | {n} | {:.1} | {:.1} | {} | |",
            handler.per_second(),
            floor.per_second(),
            ratio(handler.per_second(), floor.per_second()),
        );
        summary::record(summary::Row {
            part: "ingest",
            figure: format!("callbacks/s, concurrency {concurrency}"),
            measured: format!("{:.1}", handler.per_second()),
            floor: format!("{:.1}", floor.per_second()),
            vs_floor: ratio(handler.per_second(), floor.per_second()),
            target: String::new(),
        });
        for percentile in [50.0, 99.0] {
            let (h, f) = (handler.p(percentile), floor.p(percentile));
            let note = if percentile == 50.0 {
                let met = h.as_secs_f64() <= f.as_secs_f64() * TARGET_P50_RATIO;
                summary::verdict(&format!("<= {TARGET_P50_RATIO:.1}x the floor"), met)
            } else {
                String::new()
            };
            let row = summary::Row {
                part: "ingest",
                figure: format!("latency p{percentile:.0}, concurrency {concurrency}"),
                measured: format!("{:.1} ms", ms(h)),
                floor: format!("{:.1} ms", ms(f)),
                vs_floor: ratio(h.as_secs_f64(), f.as_secs_f64()),
                target: note.clone(),
            };
            match peer.filter(|_| *concurrency == 1) {
                Some(peer) => {
                    let p = peer.p(percentile);
                    summary::record_vs_peer(
                        row,
                        format!("{:.1} ms (one conditional PutItem)", ms(p)),
                        ratio(h.as_secs_f64(), p.as_secs_f64()),
                    );
                }
                None => summary::record(row),
            }
            println!(
                "| latency p{percentile:.0} (ms) | {concurrency} | {n} | {:.2} | {:.2} | {} | \
                 {note} |",
                ms(h),
                ms(f),
                ratio(h.as_secs_f64(), f.as_secs_f64()),
            );
        }
        println!(
            "| DynamoDB round trips / callback | {concurrency} | {n} | {:.2} | {:.2} | {} | \
             counted by an SDK interceptor |",
            handler.round_trips_per_callback(),
            floor.round_trips_per_callback(),
            ratio(
                handler.round_trips_per_callback(),
                floor.round_trips_per_callback()
            ),
        );
        summary::record(summary::Row {
            part: "ingest",
            figure: format!(
                "DynamoDB round trips per callback (Music AI task), concurrency {concurrency}"
            ),
            measured: format!("{:.2}", handler.round_trips_per_callback()),
            floor: format!("{:.2}", floor.round_trips_per_callback()),
            vs_floor: ratio(
                handler.round_trips_per_callback(),
                floor.round_trips_per_callback(),
            ),
            target: String::new(),
        });
    }
    if let (Some(peer), Some((_, handler, _))) = (peer, rows.iter().find(|r| r.0 == 1)) {
        for percentile in [50.0, 99.0] {
            let (h, p) = (handler.p(percentile), peer.p(percentile));
            println!(
                "| ack p{percentile:.0} (ms) vs the boto3 peer | 1 | {} | {:.2} | {:.2} (peer: one conditional PutItem) | {} | the peer in the floor column; a ratio to the peer |",
                peer.callbacks(),
                ms(h),
                ms(p),
                ratio(h.as_secs_f64(), p.as_secs_f64()),
            );
        }
    }
    for variant in variants {
        println!(
            "| round trips: {} | 1 | 1 | {} | - | - | {} |",
            variant.name,
            variant.ops.len(),
            variant.why()
        );
        summary::record(summary::Row {
            part: "ingest",
            figure: format!("DynamoDB round trips: {}", variant.name),
            measured: variant.ops.len().to_string(),
            floor: String::new(),
            vs_floor: String::new(),
            target: variant.why(),
        });
    }
}

fn moto_version() -> String {
    let pip_line = std::fs::read_to_string(format!(
        "{}/requirements-dev.txt",
        env!("CARGO_MANIFEST_DIR")
    ))
    .ok()
    .and_then(|text| {
        text.lines()
            .find(|l| l.starts_with("moto"))
            .map(|l| l.trim().to_owned())
    });
    pip_line.unwrap_or_else(|| "?".to_owned())
}
