//! A fault-injecting HTTP/1.1 proxy in front of moto: fails a share of DynamoDB and S3 calls
//! (500, 503, throttling, connection reset), cancels chosen TransactWriteItems calls with
//! `TransactionConflict` as DynamoDB does when two writers race (moto serialises requests, so
//! it never does), fails every S3 call during an outage, and counts what really reached the
//! store, so a test can prove that every object was uploaded exactly once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// 500 before the request reaches the store.
    ServerError,
    /// 503 before the request reaches the store.
    Unavailable,
    /// DynamoDB ThrottlingException / S3 SlowDown.
    Throttled,
    /// The connection is dropped before the request reaches the store.
    Reset,
    /// A TransactWriteItems answered `TransactionCanceledException` with one
    /// `TransactionConflict` reason, as DynamoDB does when another request holds an item;
    /// only on request ([`FaultProxy::conflict_next_transactions`]), never at random.
    TransactionConflict,
    /// An S3 request refused during an outage ([`FaultProxy::set_s3_outage`]): 503.
    Outage,
}

const FAULTS: [Fault; 4] = [
    Fault::ServerError,
    Fault::Unavailable,
    Fault::Throttled,
    Fault::Reset,
];

#[derive(Default, Debug, Clone)]
pub struct ProxyStats {
    pub forwarded: u64,
    pub faults: HashMap<(&'static str, Fault), u64>,
    /// S3 key -> PutObject calls that the store completed with 200.
    pub puts: HashMap<String, u64>,
    /// S3 key -> CompleteMultipartUpload calls that the store completed with 200.
    pub multipart_completions: HashMap<String, u64>,
    /// TransactWriteItems calls that reached the store.
    pub transactions_forwarded: u64,
}

impl ProxyStats {
    /// How many requests of `service` ("dynamodb" or "s3") were answered with `fault`.
    pub fn count(&self, service: &str, fault: Fault) -> u64 {
        self.faults
            .iter()
            .filter(|((s, f), _)| *s == service && *f == fault)
            .map(|(_, n)| n)
            .sum()
    }
}

/// Conflicts armed: `pass` TransactWriteItems calls go through first, then `left` are cancelled.
#[derive(Default, Debug, Clone, Copy)]
struct Conflicts {
    pass: u64,
    left: u64,
}

impl Conflicts {
    /// Whether this TransactWriteItems call is to be cancelled.
    fn take(&mut self) -> bool {
        if self.left == 0 {
            false
        } else if self.pass > 0 {
            self.pass -= 1;
            false
        } else {
            self.left -= 1;
            true
        }
    }
}

/// What the proxy is told to do, shared by its connections.
#[derive(Default)]
struct Controls {
    /// Fault probability per request, in thousandths, per service.
    dynamodb_permille: AtomicU64,
    s3_permille: AtomicU64,
    /// TransactWriteItems calls still to cancel with a conflict.
    conflicts: Mutex<Conflicts>,
    /// Every S3 request fails while set.
    s3_outage: AtomicBool,
}

pub struct FaultProxy {
    pub endpoint: String,
    controls: Arc<Controls>,
    stats: Arc<Mutex<ProxyStats>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: String, seed: u64) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let controls = Arc::new(Controls::default());
        let stats = Arc::new(Mutex::new(ProxyStats::default()));
        let rng = Arc::new(AtomicU64::new(seed.max(1)));
        let shared = (controls.clone(), stats.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (controls, stats) = (shared.0.clone(), shared.1.clone());
                let (upstream, rng) = (upstream.clone(), rng.clone());
                tokio::spawn(async move { serve(client, upstream, controls, stats, rng).await });
            }
        });
        FaultProxy {
            endpoint,
            controls,
            stats,
        }
    }

    pub fn set_fault_rates(&self, dynamodb_permille: u64, s3_permille: u64) {
        self.controls
            .dynamodb_permille
            .store(dynamodb_permille, Ordering::Relaxed);
        self.controls
            .s3_permille
            .store(s3_permille, Ordering::Relaxed);
    }

    /// Answers the next `n` TransactWriteItems requests (on top of any still armed) with a
    /// `TransactionCanceledException` whose reasons name one item `TransactionConflict` and
    /// the others `None`, without forwarding them.
    pub fn conflict_next_transactions(&self, n: u64) {
        self.conflicts().left += n;
    }

    /// Lets the next `pass` TransactWriteItems requests through, then answers the `n` after
    /// them as [`FaultProxy::conflict_next_transactions`] does (replacing what was armed).
    pub fn conflict_transactions_after(&self, pass: u64, n: u64) {
        *self.conflicts() = Conflicts { pass, left: n };
    }

    /// Conflicts armed and not answered yet.
    pub fn conflicts_left(&self) -> u64 {
        self.conflicts().left
    }

    fn conflicts(&self) -> std::sync::MutexGuard<'_, Conflicts> {
        self.controls
            .conflicts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// While `on`, every S3 request is answered 503 without reaching the store (DynamoDB
    /// requests go on as before).
    pub fn set_s3_outage(&self, on: bool) {
        self.controls.s3_outage.store(on, Ordering::SeqCst);
    }

    pub fn stats(&self) -> ProxyStats {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

struct Request {
    head: String,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn method_and_target(&self) -> (&str, &str) {
        let mut parts = self
            .head
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace();
        (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        )
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: String,
    controls: Arc<Controls>,
    stats: Arc<Mutex<ProxyStats>>,
    rng: Arc<AtomicU64>,
) {
    let mut pending = Vec::new();
    loop {
        let Some(request) = read_message(&mut client, &mut pending, false).await else {
            return;
        };
        let is_dynamodb = request.header("x-amz-target").is_some();
        let service = if is_dynamodb { "dynamodb" } else { "s3" };
        let count = |fault: Fault| {
            let mut stats = stats.lock().unwrap_or_else(|p| p.into_inner());
            let entry = stats.faults.entry((service, fault)).or_default();
            *entry += 1;
            *entry
        };
        let is_transaction = request
            .header("x-amz-target")
            .is_some_and(|t| t.ends_with(".TransactWriteItems"));
        let conflict = is_transaction
            && controls
                .conflicts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
        if conflict {
            let answered = count(Fault::TransactionConflict);
            let reply = transaction_conflict_reply(&request.body, answered);
            if client.write_all(&reply).await.is_err() {
                return;
            }
            continue;
        }
        if !is_dynamodb && controls.s3_outage.load(Ordering::SeqCst) {
            count(Fault::Outage);
            let reply = fault_reply(false, Fault::Outage);
            if client.write_all(&reply).await.is_err() {
                return;
            }
            continue;
        }
        let permille = if is_dynamodb {
            &controls.dynamodb_permille
        } else {
            &controls.s3_permille
        }
        .load(Ordering::Relaxed);
        let roll = next_random(&rng);
        if roll % 1000 < permille {
            let fault = FAULTS[((roll / 1000) % FAULTS.len() as u64) as usize];
            count(fault);
            if fault == Fault::Reset {
                return;
            }
            let reply = fault_reply(is_dynamodb, fault);
            if client.write_all(&reply).await.is_err() {
                return;
            }
            continue;
        }
        let Ok(mut upstream_conn) = TcpStream::connect(&upstream).await else {
            return;
        };
        let mut raw = request.head.clone().into_bytes();
        raw.extend_from_slice(&request.body);
        if upstream_conn.write_all(&raw).await.is_err() {
            return;
        }
        let mut upstream_pending = Vec::new();
        let head_only = request.method_and_target().0 == "HEAD";
        let Some(response) =
            read_message(&mut upstream_conn, &mut upstream_pending, head_only).await
        else {
            return;
        };
        record(&stats, &request, &response);
        let mut raw = response.head.into_bytes();
        raw.extend_from_slice(&response.body);
        if client.write_all(&raw).await.is_err() {
            return;
        }
    }
}

/// DynamoDB's answer to a TransactWriteItems cancelled because another request was writing one
/// of its items: HTTP 400, `TransactionCanceledException`, one reason per transact item in
/// request order (`TransactionConflict` for one of them, `None` for the rest), as the SDK's
/// deserializer reads them (`CancellationReasons`, `Code`, `Message`). Which item conflicts
/// moves with `nth`, so a run sees conflicts on different items.
fn transaction_conflict_reply(request_body: &[u8], nth: u64) -> Vec<u8> {
    let items = serde_json::from_slice::<serde_json::Value>(request_body)
        .ok()
        .and_then(|v| v["TransactItems"].as_array().map(Vec::len))
        .unwrap_or(1)
        .max(1);
    let conflicting = (nth as usize).wrapping_sub(1) % items;
    let reasons: Vec<serde_json::Value> = (0..items)
        .map(|i| {
            if i == conflicting {
                serde_json::json!({
                    "Code": "TransactionConflict",
                    "Message": "Transaction is ongoing for the item"
                })
            } else {
                serde_json::json!({ "Code": "None" })
            }
        })
        .collect();
    let codes: Vec<&str> = (0..items)
        .map(|i| {
            if i == conflicting {
                "TransactionConflict"
            } else {
                "None"
            }
        })
        .collect();
    let error_type = "com.amazonaws.dynamodb.v20120810#TransactionCanceledException";
    let body = serde_json::json!({
        "__type": error_type,
        "CancellationReasons": reasons,
        "Message": format!(
            "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
            codes.join(", ")
        ),
    })
    .to_string();
    format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.0\r\n\
         x-amzn-ErrorType: {error_type}\r\nx-amzn-RequestId: injected-conflict-{nth}\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn record(stats: &Mutex<ProxyStats>, request: &Request, response: &Request) {
    let ok = response.head.split_whitespace().nth(1) == Some("200");
    let mut stats = stats.lock().unwrap_or_else(|p| p.into_inner());
    stats.forwarded += 1;
    if request
        .header("x-amz-target")
        .is_some_and(|t| t.ends_with(".TransactWriteItems"))
    {
        stats.transactions_forwarded += 1;
    }
    if !ok || request.header("x-amz-target").is_some() {
        return;
    }
    let (method, target) = request.method_and_target();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    // Path-style: /bucket/key
    let key = path
        .trim_start_matches('/')
        .split_once('/')
        .map_or("", |(_, k)| k)
        .to_owned();
    let has_upload_id = query.split('&').any(|p| p.starts_with("uploadId="));
    // PutObjectTagging (the sha256 tag) is a PUT too, but uploads nothing.
    if query
        .split('&')
        .any(|p| p == "tagging" || p.starts_with("tagging="))
    {
        return;
    }
    match method {
        "PUT" if !has_upload_id && !key.is_empty() => *stats.puts.entry(key).or_default() += 1,
        "POST" if has_upload_id => *stats.multipart_completions.entry(key).or_default() += 1,
        _ => {}
    }
}

fn fault_reply(is_dynamodb: bool, fault: Fault) -> Vec<u8> {
    let (status, body, content_type) = match (is_dynamodb, fault) {
        (true, Fault::Throttled) => (
            "400 Bad Request",
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"injected throttling"}"#,
            "application/x-amz-json-1.0",
        ),
        (true, Fault::Unavailable) => (
            "503 Service Unavailable",
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#ServiceUnavailable","message":"injected"}"#,
            "application/x-amz-json-1.0",
        ),
        (true, _) => (
            "500 Internal Server Error",
            r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"injected"}"#,
            "application/x-amz-json-1.0",
        ),
        (false, Fault::Outage) => (
            "503 Service Unavailable",
            "<Error><Code>ServiceUnavailable</Code><Message>injected outage</Message></Error>",
            "application/xml",
        ),
        (false, Fault::Throttled | Fault::Unavailable) => (
            "503 Slow Down",
            "<Error><Code>SlowDown</Code><Message>injected</Message></Error>",
            "application/xml",
        ),
        (false, _) => (
            "500 Internal Server Error",
            "<Error><Code>InternalError</Code><Message>injected</Message></Error>",
            "application/xml",
        ),
    };
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// xorshift64: deterministic for a seed, good enough to spread faults.
fn next_random(state: &AtomicU64) -> u64 {
    let mut x = state.load(Ordering::Relaxed);
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    state.store(x, Ordering::Relaxed);
    x
}

/// Reads one HTTP/1.1 message (head, then a body by Content-Length or chunked) from `stream`,
/// keeping bytes that belong to the next message in `pending`.
async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    pending: &mut Vec<u8>,
    head_only: bool,
) -> Option<Request> {
    let head_end = loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        fill(stream, pending).await?;
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).to_string();
    pending.drain(..head_end);
    let request = Request {
        head,
        body: Vec::new(),
    };
    let status = request
        .head
        .strip_prefix("HTTP/")
        .and_then(|rest| rest.split_whitespace().nth(1));
    if head_only || matches!(status, Some("204" | "304")) {
        return Some(request);
    }
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let length: usize = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = Vec::new();
    if chunked {
        // Keep the chunked framing as it is: the far side reads the same bytes.
        loop {
            let line_end = loop {
                if let Some(end) = pending.windows(2).position(|w| w == b"\r\n") {
                    break end + 2;
                }
                fill(stream, pending).await?;
            };
            let size_text = String::from_utf8_lossy(&pending[..line_end - 2]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
                .ok()?;
            let needed = line_end + size + 2;
            while pending.len() < needed {
                fill(stream, pending).await?;
            }
            body.extend(pending.drain(..needed));
            if size == 0 {
                break;
            }
        }
    } else {
        while pending.len() < length {
            fill(stream, pending).await?;
        }
        body.extend(pending.drain(..length));
    }
    Some(Request { body, ..request })
}

async fn fill<S: AsyncRead + Unpin>(stream: &mut S, pending: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 64 * 1024];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => None,
        Ok(n) => {
            pending.extend_from_slice(&chunk[..n]);
            Some(())
        }
    }
}
