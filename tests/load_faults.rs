//! Load and fault test: the callbacks of 100 Music AI tasks, 30% duplicated, shuffled, 32 at a
//! time, through the webhook handler (stream mode) while a proxy in front of moto fails a share
//! of DynamoDB and S3 calls and the audio source fails a share of downloads; then the copier
//! over moto's real stream records, with an outage in the middle of it (the source, then S3 as
//! well, refuse every request for a few seconds, and S3 a little longer); then the sweep, as the scheduled reconciler
//! runs it, retries what is PENDING until nothing is. Nothing may be lost, duplicated or
//! uploaded twice. Bounded: 650 deliveries, at most 20 copier rounds, 90 s of sweeps.
#[path = "support/audio_server.rs"]
mod audio_server;
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use audio_server::AudioServer;
use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_sdk_dynamodb::types::AttributeValue;
use lambda_http::Body;
use musicgpt_webhook::adapters::AwsPorts;
use musicgpt_webhook::adapters::dynamodb::DynamoTable;
use musicgpt_webhook::adapters::s3::S3Sink;
use musicgpt_webhook::adapters::source::{HttpSource, SourceGuard, SourceOptions};
use musicgpt_webhook::app::copy::CopyEngine;
use musicgpt_webhook::app::record::Recorder;
use musicgpt_webhook::app::sweep::{SweepReport, SweepSettings, Sweeper};
use musicgpt_webhook::domain::callback::Callback;
use musicgpt_webhook::domain::keys::KeyPrefix;
use musicgpt_webhook::domain::retry::RetryPolicy;
use musicgpt_webhook::domain::token::WebhookTokens;
use musicgpt_webhook::lambda::budget::Budget;
use musicgpt_webhook::lambda::http::Ingest;
use musicgpt_webhook::lambda::http::Webhook;
use musicgpt_webhook::lambda::stream::StreamCopier;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::fault_proxy::{Fault, FaultProxy};

const TOKEN: &str = "test-token-0123456789abcdef";
const TASKS: usize = 100;
const DUPLICATE_PERCENT: u64 = 30;
const CONCURRENCY: usize = 32;
const FAULT_PERMILLE: u64 = 100;
/// A cap on attempts, so that the files that can never be copied end FAILED within the test
/// (production tries until the deadline). A file that can be stored may fail three times (its
/// flaky first answer, the outage, one unlucky fault) and still be stored on the fourth.
const MAX_ATTEMPTS: u32 = 4;
/// The wait after each failed attempt. Even a second short (next tries are whole seconds), it
/// and the 2 s a try needs do not fit in the stream copier's budget: the copier never waits
/// a backoff out in place, every retry is the sweep's.
const RETRY_DELAY: Duration = Duration::from_secs(4);
const COPIER_BUDGET: Duration = Duration::from_secs(5);
const MAX_DELIVERIES_PER_CALLBACK: usize = 20;
const MAX_COPIER_ROUNDS: usize = 20;
/// The outage begins once the copier has sent this share of the files' first requests.
const OUTAGE_AFTER_PERCENT: usize = 35;
/// The source refuses everything for this long...
const SOURCE_OUTAGE: Duration = Duration::from_secs(6);
/// ...and S3 too for the last part of it, and on after it: downloads that work again then
/// meet uploads that fail (first attempts send S3 nothing before their download).
const S3_OUTAGE: Duration = Duration::from_secs(4);
const OUTAGES_OVERLAP: Duration = Duration::from_secs(2);
const SWEEP_CONCURRENCY: usize = 8;
/// One sweep run's time budget (a copy's lease lasts it and a second more).
const SWEEP_BUDGET: Duration = Duration::from_secs(8);
/// The sweeps after the stream stop when nothing is PENDING, or after this long.
const MAX_SWEEP_TIME: Duration = Duration::from_secs(90);

/// How the audio source treats one file: (label, path builder, whether it can be stored).
fn behaviour(n: usize) -> (&'static str, bool) {
    match n % 20 {
        14 | 18 => ("flaky", true),
        15 => ("reset", false),
        16 => ("short", false),
        17 => ("stall", false),
        19 => ("status500", false),
        _ => ("ok", true),
    }
}

fn path_for(label: &str, len: u64, name: &str) -> String {
    match label {
        "flaky" => format!("/flaky/1/{len}/{name}"),
        "reset" => format!("/reset/{len}/{name}"),
        "short" => format!("/short/{len}/{name}"),
        // Stalls mid-body far longer than the read timeout, and longer than any claim under
        // faults: a download opened beside its claim only reads once the lease is taken, and a
        // shorter stall could pass while it waits.
        "stall" => format!("/stall/60000/{len}/{name}"),
        "status500" => format!("/status/500/{name}"),
        _ => format!("/ok/{len}/{name}"),
    }
}

/// One file the test expects in the bucket (or FAILED).
struct ExpectedFile {
    key: String,
    storable: bool,
    sha256: String,
    kind: &'static str,
}

struct Plan {
    bodies: Vec<String>,
    files: Vec<ExpectedFile>,
}

fn plan(server: &AudioServer) -> Plan {
    let mut bodies = Vec::new();
    let mut files = Vec::new();
    let mut n = 0;
    let mut file = |name: String, ext: &str, key: String| {
        let (label, storable) = behaviour(n);
        let len = 1024 + (n as u64 * 7919) % (32 * 1024);
        n += 1;
        let file_name = format!("{name}.{ext}");
        files.push(ExpectedFile {
            key,
            storable,
            sha256: audio_server::sha256(&file_name, len),
            kind: label,
        });
        server.url(&path_for(label, len, &file_name))
    };
    for t in 0..TASKS {
        let task = format!("load-task-{t}");
        let conversions = [format!("load-{t}-c1"), format!("load-{t}-c2")];
        for c in &conversions {
            let mp3 = file(format!("{c}-mp3"), "mp3", format!("{task}/{c}.mp3"));
            let wav = file(format!("{c}-wav"), "wav", format!("{task}/{c}.wav"));
            bodies.push(json!({"success": true, "conversion_type": "Music AI", "task_id": task, "conversion_id": c,
                "conversion_path": mp3, "conversion_path_wav": wav, "title": format!("song {c}"),
                "lyrics_timestamped": "[ ... ]"}).to_string());
            let lyrics =
                json!([{"index": 0, "text": format!("line of {c}"), "start": 0, "end": 1000}])
                    .to_string();
            bodies.push(json!({"subtype": "lyrics_timestamped", "conversion_id": c, "lyrics_timestamped": lyrics}).to_string());
        }
        let cover = file(format!("{task}-cover"), "png", format!("{task}/cover.png"));
        bodies.push(json!({"subtype": "album_cover_generation", "success": true, "task_id": task, "image_path": cover,
            "conversion_id_1": conversions[0], "conversion_id_2": conversions[1]}).to_string());
    }
    Plan { bodies, files }
}

/// xorshift64, seeded: the same shuffle and duplicates every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Deliveries: every body once, 30% of them twice, shuffled.
fn deliveries(bodies: &[String], rng: &mut Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..bodies.len()).collect();
    order.extend((0..bodies.len()).filter(|_| rng.next() % 100 < DUPLICATE_PERCENT));
    for i in (1..order.len()).rev() {
        order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    order
}

#[derive(Default)]
struct DeliveryLog {
    answers: BTreeMap<u16, usize>,
    /// Bodies answered 5xx at least once, and whether a later delivery succeeded.
    failed_then: HashMap<usize, bool>,
    /// Per body: deliveries in flight, and whether one was answered 200.
    in_flight: HashMap<usize, usize>,
    succeeded: HashSet<usize>,
    violations: Vec<String>,
}

/// The table's real stream, read from moto as Lambda's event source mapping would.
struct StreamReader {
    http: reqwest::Client,
    endpoint: String,
    iterators: Vec<String>,
}

impl StreamReader {
    async fn call(&self, target: &str, body: Value) -> Value {
        let response = self
            .http
            .post(&self.endpoint)
            .header("x-amz-target", format!("DynamoDBStreams_20120810.{target}"))
            .header("content-type", "application/x-amz-json-1.0")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await
            .expect("streams call");
        let bytes = response.bytes().await.expect("streams body");
        serde_json::from_slice(&bytes).expect("streams JSON")
    }

    async fn open(table: &str) -> StreamReader {
        let described = support::dynamo()
            .await
            .describe_table()
            .table_name(table)
            .send()
            .await
            .expect("describe");
        let arn = described
            .table()
            .and_then(|t| t.latest_stream_arn())
            .expect("stream arn")
            .to_owned();
        let mut reader = StreamReader {
            http: reqwest::Client::new(),
            endpoint: support::endpoint(),
            iterators: Vec::new(),
        };
        let stream = reader
            .call("DescribeStream", json!({ "StreamArn": arn }))
            .await;
        for shard in stream["StreamDescription"]["Shards"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let it = reader
                .call("GetShardIterator", json!({"StreamArn": arn, "ShardId": shard["ShardId"], "ShardIteratorType": "TRIM_HORIZON"}))
                .await;
            reader
                .iterators
                .push(it["ShardIterator"].as_str().expect("iterator").to_owned());
        }
        reader
    }

    /// Everything written since the last read.
    async fn read_new(&mut self) -> Vec<EventRecord> {
        let mut records = Vec::new();
        for iterator in self.iterators.iter_mut() {
            loop {
                let page = self
                    .http
                    .post(&self.endpoint)
                    .header("x-amz-target", "DynamoDBStreams_20120810.GetRecords")
                    .header("content-type", "application/x-amz-json-1.0")
                    .header(
                        "authorization",
                        "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
                    )
                    .body(json!({ "ShardIterator": iterator, "Limit": 1000 }).to_string())
                    .send()
                    .await
                    .expect("GetRecords");
                let page: Value =
                    serde_json::from_slice(&page.bytes().await.expect("body")).expect("JSON");
                let batch = page["Records"].as_array().cloned().unwrap_or_default();
                if let Some(next) = page["NextShardIterator"].as_str() {
                    *iterator = next.to_owned();
                }
                if batch.is_empty() {
                    break;
                }
                let event: Event = serde_json::from_value(json!({ "Records": batch }))
                    .expect("stream records as a Lambda event");
                records.extend(event.records);
            }
        }
        records
    }
}

fn s<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> &'a str {
    match item.get(name) {
        Some(AttributeValue::S(v)) => v,
        _ => "",
    }
}

fn n(item: &HashMap<String, AttributeValue>, name: &str) -> u64 {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().unwrap_or(0),
        _ => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_is_lost_under_duplicates_reordering_and_faults() {
    let server = AudioServer::start().await;
    let (table, bucket) = (support::fresh_table().await, support::fresh_bucket().await);
    let proxy = Arc::new(
        FaultProxy::start(
            support::endpoint().trim_start_matches("http://").to_owned(),
            0x5eed,
        )
        .await,
    );
    let via_proxy = support::sdk_config_for(&proxy.endpoint);
    let dynamo = aws_sdk_dynamodb::Client::new(&via_proxy);
    let s3 = support::s3_for(&via_proxy);

    let recorder = Recorder::<DynamoTable>::new(
        DynamoTable::new(dynamo.clone(), &table),
        KeyPrefix::default(),
        Duration::from_secs(86_400),
    );
    let webhook = Arc::new(Webhook::new(Ingest::<DynamoTable>::new(
        WebhookTokens::parse(TOKEN).expect("token"),
        recorder,
    )));
    let options = SourceOptions {
        connect_timeout: Duration::from_millis(500),
        read_timeout: Duration::from_millis(400),
        max_redirects: 3,
        max_bytes: 1 << 20,
    };
    let guard = SourceGuard::new(&["127.0.0.1".to_owned()]).expect("guard");
    let policy = RetryPolicy {
        base_delay: RETRY_DELAY,
        max_delay: RETRY_DELAY,
        not_found_grace: Duration::ZERO,
        lease: Duration::from_secs(30),
        lease_grace: Duration::from_secs(1),
        ..RetryPolicy::with_max_attempts(MAX_ATTEMPTS)
    };
    let engine = CopyEngine::<AwsPorts>::new(
        DynamoTable::new(dynamo.clone(), &table),
        HttpSource::new(guard, options).expect("source"),
        S3Sink::new(s3.clone(), &bucket),
        policy,
    );
    let copier = StreamCopier::<AwsPorts>::new(engine.clone()).with_budget(Budget {
        margin: Duration::ZERO,
        fallback: COPIER_BUDGET,
    });

    let plan = plan(&server);
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let order = deliveries(&plan.bodies, &mut rng);
    let total_deliveries = order.len();
    let shas: Vec<String> = plan
        .bodies
        .iter()
        .map(|b| {
            Callback::parse(b.as_bytes(), None)
                .expect("planned callbacks parse")
                .sha256
        })
        .collect();
    let tasks_of: Vec<Option<String>> = plan
        .bodies
        .iter()
        .map(|b| {
            serde_json::from_str::<Value>(b).expect("json")["task_id"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    proxy.set_fault_rates(FAULT_PERMILLE, FAULT_PERMILLE);
    let started = std::time::Instant::now();

    // Phase 1: deliver, 32 at a time; a 5xx is delivered again later, as MusicGPT retries.
    let queue = Arc::new(Mutex::new(
        order
            .into_iter()
            .map(|i| (i, 1usize))
            .collect::<std::collections::VecDeque<_>>(),
    ));
    let log = Arc::new(Mutex::new(DeliveryLog::default()));
    let direct = support::dynamo().await;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (queue, log, webhook) = (queue.clone(), log.clone(), webhook.clone());
        let (bodies, shas, tasks_of) = (plan.bodies.clone(), shas.clone(), tasks_of.clone());
        let (direct, table) = (direct.clone(), table.clone());
        workers.spawn(async move {
            loop {
                let Some((index, attempt)) = queue.lock().expect("queue").pop_front() else {
                    return;
                };
                *log.lock().expect("log").in_flight.entry(index).or_default() += 1;
                let request = lambda_http::http::Request::builder()
                    .method("POST")
                    .uri(format!("/webhook/{TOKEN}"))
                    .header("content-type", "application/json")
                    .body(Body::Text(bodies[index].clone()))
                    .expect("request");
                let status = webhook.handle(request).await.status().as_u16();
                // A 5xx must mean the write did not happen, unless another delivery of the same
                // callback (in flight, or already answered 200) made it.
                let marker_exists = if status >= 500 {
                    match &tasks_of[index] {
                        Some(task) => direct
                            .get_item()
                            .table_name(&table)
                            .key("pk", AttributeValue::S(format!("TASK#{task}")))
                            .key("sk", AttributeValue::S(format!("CALLBACK#{}", shas[index])))
                            .consistent_read(true)
                            .send()
                            .await
                            .expect("direct read")
                            .item
                            .is_some(),
                        None => false,
                    }
                } else {
                    false
                };
                let mut log = log.lock().expect("log");
                *log.answers.entry(status).or_default() += 1;
                let others = log.in_flight.get(&index).copied().unwrap_or(1) > 1
                    || log.succeeded.contains(&index);
                *log.in_flight.entry(index).or_default() -= 1;
                match status {
                    200 => {
                        log.succeeded.insert(index);
                        if let Some(later) = log.failed_then.get_mut(&index) {
                            *later = true;
                        }
                    }
                    500..=599 => {
                        if marker_exists && !others {
                            log.violations.push(format!(
                                "callback {index} answered {status} but was recorded"
                            ));
                        }
                        log.failed_then.entry(index).or_insert(false);
                        if attempt < MAX_DELIVERIES_PER_CALLBACK {
                            queue.lock().expect("queue").push_back((index, attempt + 1));
                        }
                    }
                    other => log
                        .violations
                        .push(format!("callback {index} answered {other}")),
                }
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined.expect("delivery worker");
    }

    let delivered_in = started.elapsed();

    // Phase 2: the copier over the stream, re-delivering what it reports as failed, as Lambda
    // does with ReportBatchItemFailures. In the middle of it, the outage: once the source has
    // served OUTAGE_AFTER_PERCENT as many requests as there are files, it refuses every
    // request, then S3 does as well, then the source recovers, then S3.
    let outage = {
        let (server, proxy) = (server.clone(), proxy.clone());
        let threshold = plan.files.len() * OUTAGE_AFTER_PERCENT / 100;
        tokio::spawn(async move {
            while server.total_hits() < threshold {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let began = std::time::Instant::now();
            server.set_outage(true);
            tokio::time::sleep(SOURCE_OUTAGE - OUTAGES_OVERLAP).await;
            proxy.set_s3_outage(true);
            tokio::time::sleep(OUTAGES_OVERLAP).await;
            server.set_outage(false);
            tokio::time::sleep(S3_OUTAGE - OUTAGES_OVERLAP).await;
            proxy.set_s3_outage(false);
            began.elapsed()
        })
    };
    let copier_started = std::time::Instant::now();
    let mut reader = StreamReader::open(&table).await;
    let mut redeliver: Vec<EventRecord> = Vec::new();
    let mut rounds = 0;
    let mut batch_failures = 0;
    let mut stream_records = 0;
    while rounds < MAX_COPIER_ROUNDS {
        rounds += 1;
        let fresh = reader.read_new().await;
        stream_records += fresh.len();
        let mut records = std::mem::take(&mut redeliver);
        records.extend(fresh);
        if records.is_empty() {
            break;
        }
        for batch in records.chunks(100) {
            let stop = tokio::time::Instant::now() + COPIER_BUDGET;
            let response = copier
                .handle_records(batch, stop)
                .await
                .expect("copier batch");
            let failed: HashSet<String> = response
                .batch_item_failures
                .iter()
                .filter_map(|f| f.item_identifier.clone())
                .collect();
            batch_failures += failed.len();
            redeliver.extend(
                batch
                    .iter()
                    .filter(|r| {
                        r.change
                            .sequence_number
                            .as_ref()
                            .is_some_and(|s| failed.contains(s))
                    })
                    .cloned(),
            );
        }
        if !redeliver.is_empty() {
            // Let leases that lost their write-back expire (lease grace: 1 s).
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
    }
    // The copier never waits out a backoff (RETRY_DELAY does not fit its budget): whatever
    // failed, in the outage or otherwise, is PENDING with its next try, for the sweep.
    let outage_lasted = tokio::time::timeout(SOURCE_OUTAGE * 5, outage)
        .await
        .expect("the copier reached the outage's threshold before it ran out of work")
        .expect("outage task");
    let copied_in = copier_started.elapsed();
    let pending_after_stream = support::scan_all(&table)
        .await
        .iter()
        .filter(|i| s(i, "item_type") == "ASSET" && s(i, "state") == "PENDING")
        .count();
    let (source_refused, s3_refused) = (server.refused(), proxy.stats().count("s3", Fault::Outage));

    // Phase 3: the sweep, as the reconciler runs it on its schedule, still under faults: each
    // run copies every PENDING asset whose next try has come, until none is PENDING.
    let sweeper = Sweeper::new(
        engine.clone(),
        SweepSettings {
            batch: plan.files.len(),
            concurrency: SWEEP_CONCURRENCY,
            ..SweepSettings::default()
        },
    );
    let sweep_started = std::time::Instant::now();
    let (mut sweeps, mut sweep_errors, mut swept) = (0, 0, SweepReport::default());
    while sweep_started.elapsed() < MAX_SWEEP_TIME {
        let report = match sweeper
            .run(tokio::time::Instant::now() + SWEEP_BUDGET)
            .await
        {
            Ok(report) => report,
            Err(_) => {
                // Reading the backlog met one fault too many: the next run tries again.
                sweep_errors += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        sweeps += 1;
        if report.backlog.pending == 0 {
            break;
        }
        if report.due == 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        swept.due += report.due;
        swept.stored += report.stored;
        swept.retry_later += report.retry_later;
        swept.failed += report.failed;
        swept.expired += report.expired;
    }
    let swept_in = sweep_started.elapsed();
    proxy.set_fault_rates(0, 0);

    // Phase 4: check everything directly against moto.
    let log = Arc::try_unwrap(log)
        .ok()
        .expect("workers done")
        .into_inner()
        .expect("log");
    assert!(log.violations.is_empty(), "{:#?}", log.violations);
    assert!(
        log.failed_then.values().all(|later| *later),
        "a callback answered 5xx never got through"
    );
    assert_eq!(
        log.succeeded.len(),
        plan.bodies.len(),
        "every callback was eventually accepted"
    );

    let items = support::scan_all(&table).await;
    let by_key: HashMap<(String, String), &HashMap<String, AttributeValue>> = items
        .iter()
        .map(|i| ((s(i, "pk").to_owned(), s(i, "sk").to_owned()), i))
        .collect();
    for (index, sha) in shas.iter().enumerate() {
        let recorded = items
            .iter()
            .any(|i| s(i, "sk") == format!("CALLBACK#{sha}"));
        assert!(
            recorded,
            "callback {index} was answered 200 but is not recorded"
        );
    }
    assert_eq!(
        items
            .iter()
            .filter(|i| s(i, "item_type") == "CALLBACK")
            .count(),
        plan.bodies.len(),
        "no callback twice"
    );
    for t in 0..TASKS {
        let task = by_key
            .get(&(format!("TASK#load-task-{t}"), "TASK".into()))
            .expect("task item");
        assert_eq!(n(task, "callback_count"), 5, "task {t}");
        for c in 1..=2 {
            assert!(
                by_key.contains_key(&(
                    format!("TASK#load-task-{t}"),
                    format!("CONVERSION#load-{t}-c{c}"),
                )),
                "conversion item of {t}/{c}"
            );
            // The timestamped lyrics live in an item of their own.
            let lyrics = by_key
                .get(&(
                    format!("TASK#load-task-{t}"),
                    format!("LYRICS_TIMESTAMPED#load-{t}-c{c}"),
                ))
                .expect("lyrics item");
            assert!(
                matches!(lyrics.get("lyrics_timestamped"), Some(AttributeValue::L(_))),
                "lyrics of {t}/{c}"
            );
        }
    }

    let assets: Vec<_> = items
        .iter()
        .filter(|i| s(i, "item_type") == "ASSET")
        .collect();
    assert_eq!(
        assets.len(),
        plan.files.len(),
        "one asset per file, none lost or doubled"
    );
    assert!(
        source_refused > 0 && s3_refused > 0,
        "the outage happened: the source refused {source_refused}, S3 {s3_refused}"
    );
    let stats = proxy.stats();
    let direct_s3 = support::s3().await;
    let (mut stored, mut failed, mut bytes) = (0, 0, 0u64);
    let mut retried_then_stored: BTreeMap<u64, usize> = BTreeMap::new();
    for file in &plan.files {
        let asset = assets
            .iter()
            .find(|a| s(a, "s3_key") == file.key)
            .unwrap_or_else(|| panic!("no asset for {}", file.key));
        let uploads = stats.puts.get(&file.key).copied().unwrap_or(0)
            + stats
                .multipart_completions
                .get(&file.key)
                .copied()
                .unwrap_or(0);
        match s(asset, "state") {
            "STORED" => {
                assert!(
                    file.storable,
                    "{} ({}) should not be storable",
                    file.key, file.kind
                );
                let object = direct_s3
                    .get_object()
                    .bucket(&bucket)
                    .key(&file.key)
                    .send()
                    .await
                    .expect("object");
                let data = object
                    .body
                    .collect()
                    .await
                    .expect("object body")
                    .into_bytes();
                assert_eq!(
                    hex::encode(Sha256::digest(&data)),
                    file.sha256,
                    "{} bytes",
                    file.key
                );
                assert_eq!(s(asset, "sha256"), file.sha256);
                assert_eq!(uploads, 1, "{} uploaded {uploads} times", file.key);
                if n(asset, "attempts") > 0 {
                    *retried_then_stored.entry(n(asset, "attempts")).or_default() += 1;
                }
                stored += 1;
                bytes += data.len() as u64;
            }
            "FAILED" => {
                assert!(
                    !file.storable,
                    "{} ({}) failed: {}",
                    file.key,
                    file.kind,
                    s(asset, "last_error")
                );
                assert!(
                    !s(asset, "last_error").is_empty(),
                    "{} failed without a reason",
                    file.key
                );
                assert_eq!(
                    n(asset, "attempts"),
                    u64::from(MAX_ATTEMPTS),
                    "{} attempts",
                    file.key
                );
                assert_eq!(uploads, 0, "{} failed yet was uploaded", file.key);
                failed += 1;
            }
            other => panic!("{} is {other} after the copier and the sweep", file.key),
        }
    }

    let faults: BTreeMap<String, u64> = stats
        .faults
        .iter()
        .map(|((service, fault), count)| (format!("{service} {fault:?}"), *count))
        .collect();
    let source_kinds: BTreeMap<&str, usize> =
        plan.files.iter().fold(BTreeMap::new(), |mut m, f| {
            *m.entry(f.kind).or_default() += 1;
            m
        });
    println!("\n| load and fault test | value |\n| --- | --- |");
    println!(
        "| tasks | {TASKS} |\n| callbacks | {} |\n| deliveries (duplicates included) | {total_deliveries} |",
        plan.bodies.len()
    );
    println!(
        "| duplicates delivered | {} |",
        total_deliveries - plan.bodies.len()
    );
    println!("| answers by status | {:?} |", log.answers);
    println!(
        "| callbacks redelivered after a 5xx | {} |",
        log.failed_then.len()
    );
    for (kind, count) in &faults {
        println!("| injected fault: {kind} | {count} |");
    }
    println!("| source behaviours (files) | {source_kinds:?} |");
    println!(
        "| stream records | {stream_records} |\n| copier rounds | {rounds} |\n| records re-delivered (batch item failures) | {batch_failures} |"
    );
    println!(
        "| outage (source {}s, S3 {}s from {}s before the source's end) | {:.1} s; requests refused: source {source_refused}, S3 {s3_refused} |",
        SOURCE_OUTAGE.as_secs(),
        S3_OUTAGE.as_secs(),
        OUTAGES_OVERLAP.as_secs(),
        outage_lasted.as_secs_f64()
    );
    println!(
        "| assets left PENDING by the stream copier (for the sweep) | {pending_after_stream} |"
    );
    println!(
        "| sweep runs after the stream (errors) | {sweeps} ({sweep_errors}) |\n| sweep: due / stored / retry later / failed / expired | {} / {} / {} / {} / {} |",
        swept.due, swept.stored, swept.retry_later, swept.failed, swept.expired
    );
    println!(
        "| stored after failed attempts (attempts: assets) | {:?} |",
        retried_then_stored
    );
    println!(
        "| run time: deliveries / stream copier / sweeps | {:.0} s / {:.0} s / {:.0} s |",
        delivered_in.as_secs_f64(),
        copied_in.as_secs_f64(),
        swept_in.as_secs_f64()
    );
    println!(
        "| stored | {stored} |\n| failed (after {MAX_ATTEMPTS} attempts) | {failed} |\n| bytes stored | {bytes} |"
    );
    assert_eq!(stored + failed, plan.files.len());
}
