//! The sink's uploads against moto through a proxy that fails chosen parts: a part that fails
//! once is retried on its own (the SDK's retries) and the object is whole; a part that keeps
//! failing aborts the upload with no parts left; parts go up several at once but never more
//! than the sink is told; a body whose length is announced gets its upload created while its
//! first part is read (each part going up while it is read), and that upload is aborted if the
//! body fails or falls short of its length; a body announced within one PutObject goes up in
//! one, is retried whole, and creates no object unless every byte came and nothing followed.
//! (Memory under the bound is asserted by `make bench-copy`, from the copying process's peak
//! RSS, not here.)

mod support;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use musicgpt_webhook::adapters::s3::{MIN_PART_SIZE, S3Sink, S3SinkOptions};
use musicgpt_webhook::app::ports::{ChunkSource, ObjectSink, ObjectSpec};
use musicgpt_webhook::error::{Error, Result};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PART: usize = MIN_PART_SIZE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// 500 InternalError before the part reaches moto.
    ServerError,
    /// The connection dropped once the part's request has been read.
    Reset,
}

/// A proxy in front of moto that fails UploadPart requests of chosen part numbers a chosen
/// number of times, and counts every part request and how many were in flight at once.
struct PartProxy {
    endpoint: String,
    state: Arc<ProxyState>,
}

#[derive(Default)]
struct ProxyState {
    /// Part number (0: a PutObject) -> (fault, how many more times).
    faults: Mutex<HashMap<u32, (Fault, u32)>>,
    /// Part number (0: a PutObject) -> requests seen (failed ones included).
    attempts: Mutex<HashMap<u32, u32>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    /// CreateMultipartUpload requests seen.
    creates: AtomicUsize,
}

impl PartProxy {
    async fn start() -> PartProxy {
        let upstream = support::endpoint().trim_start_matches("http://").to_owned();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the part proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("proxy address"));
        let state = Arc::new(ProxyState::default());
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (state, upstream) = (shared.clone(), upstream.clone());
                tokio::spawn(async move { serve(client, &upstream, &state).await });
            }
        });
        PartProxy { endpoint, state }
    }

    fn fail(&self, part: u32, fault: Fault, times: u32) {
        self.state
            .faults
            .lock()
            .expect("faults")
            .insert(part, (fault, times));
    }

    fn attempts(&self) -> HashMap<u32, u32> {
        self.state.attempts.lock().expect("attempts").clone()
    }

    fn creates(&self) -> usize {
        self.state.creates.load(Ordering::SeqCst)
    }

    fn most_in_flight(&self) -> usize {
        self.state.most_in_flight.load(Ordering::SeqCst)
    }

    /// A sink whose S3 client goes through this proxy, with the SDK's default retries; bodies
    /// over one part go up in parts.
    fn sink(&self, bucket: &str, parts_in_flight: usize) -> S3Sink {
        self.sink_with(
            bucket,
            S3SinkOptions {
                part_size: PART,
                parts_in_flight,
                single_put_max: PART,
            },
        )
    }

    fn sink_with(&self, bucket: &str, options: S3SinkOptions) -> S3Sink {
        let client = support::s3_for(&support::sdk_config_for(&self.endpoint));
        S3Sink::new(client, bucket).with_options(options)
    }
}

struct Message {
    head: String,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn first_line(&self) -> Vec<&str> {
        self.head
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect()
    }

    /// The query of a request with this method, if it has one.
    fn query(&self, method: &str) -> Option<String> {
        let line = self.first_line();
        if line.first() != Some(&method) {
            return None;
        }
        Some(line.get(1)?.split_once('?')?.1.to_owned())
    }

    fn creates_upload(&self) -> bool {
        self.query("POST")
            .is_some_and(|query| query.split('&').any(|p| p == "uploads" || p == "uploads="))
    }

    /// The part number of an UploadPart request.
    fn part_number(&self) -> Option<u32> {
        let query = self.query("PUT")?;
        let mut params = query.split('&').filter_map(|p| p.split_once('='));
        let part = params.clone().find(|(k, _)| *k == "partNumber")?.1;
        params.find(|(k, _)| *k == "uploadId")?;
        part.parse().ok()
    }

    /// Whether this is a PutObject (the SDK names the operation in the query).
    fn puts_object(&self) -> bool {
        self.query("PUT")
            .is_some_and(|query| query.split('&').any(|p| p == "x-id=PutObject"))
    }

    fn into_bytes(self) -> Vec<u8> {
        let mut raw = self.head.into_bytes();
        raw.extend_from_slice(&self.body);
        raw
    }
}

async fn serve(mut client: TcpStream, upstream: &str, state: &ProxyState) {
    let mut pending = Vec::new();
    while let Some(request) = read_message(&mut client, &mut pending, false).await {
        if request.creates_upload() {
            state.creates.fetch_add(1, Ordering::SeqCst);
        }
        let part = request.part_number();
        let numbered = part.or_else(|| request.puts_object().then_some(0));
        let fault = numbered.and_then(|number| {
            *state
                .attempts
                .lock()
                .expect("attempts")
                .entry(number)
                .or_default() += 1;
            let mut faults = state.faults.lock().expect("faults");
            let (fault, left) = faults.get_mut(&number)?;
            if *left == 0 {
                return None;
            }
            *left -= 1;
            Some(*fault)
        });
        match fault {
            Some(Fault::Reset) => return,
            Some(Fault::ServerError) => {
                let body = "<Error><Code>InternalError</Code><Message>injected</Message></Error>";
                let reply = format!(
                    "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/xml\r\n\
                     content-length: {}\r\n\r\n{body}",
                    body.len()
                );
                if client.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
                continue;
            }
            None => {}
        }
        if part.is_some() {
            let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            state.most_in_flight.fetch_max(now, Ordering::SeqCst);
        }
        let response = forward(request, upstream).await;
        if part.is_some() {
            state.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        let Some(response) = response else { return };
        if client.write_all(&response.into_bytes()).await.is_err() {
            return;
        }
    }
}

async fn forward(request: Message, upstream: &str) -> Option<Message> {
    let head_only = request.first_line().first() == Some(&"HEAD");
    let mut conn = TcpStream::connect(upstream).await.ok()?;
    conn.write_all(&request.into_bytes()).await.ok()?;
    read_message(&mut conn, &mut Vec::new(), head_only).await
}

/// One HTTP/1.1 message: its head, then a body by Content-Length, chunked (kept as it is) or,
/// for a response with neither, up to the end of the connection.
async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    pending: &mut Vec<u8>,
    head_only: bool,
) -> Option<Message> {
    let head_end = loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        fill(stream, pending).await?;
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).to_string();
    pending.drain(..head_end);
    let mut message = Message {
        head,
        body: Vec::new(),
    };
    let response = message.head.starts_with("HTTP/");
    let status = message.first_line().get(1).map(|s| s.to_string());
    if head_only || (response && matches!(status.as_deref(), Some("204" | "304"))) {
        return Some(message);
    }
    if let Some(length) = message.header("content-length") {
        let length: usize = length.parse().ok()?;
        while pending.len() < length {
            fill(stream, pending).await?;
        }
        message.body = pending.drain(..length).collect();
    } else if message
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let line_end = loop {
                if let Some(end) = pending.windows(2).position(|w| w == b"\r\n") {
                    break end + 2;
                }
                fill(stream, pending).await?;
            };
            let size_text = String::from_utf8_lossy(&pending[..line_end - 2]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            while pending.len() < line_end + size + 2 {
                fill(stream, pending).await?;
            }
            message.body.extend(pending.drain(..line_end + size + 2));
            if size == 0 {
                break;
            }
        }
    } else if response {
        while fill(stream, pending).await.is_some() {}
        message.body = std::mem::take(pending);
    }
    Some(message)
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

/// A body from memory, in 64 KiB chunks, with its expected hash. It may announce a length
/// (as a Content-Length does), wait at a gate after some chunks, and fail once its chunks run
/// out (a reset mid-body).
struct Body {
    chunks: VecDeque<Bytes>,
    announced: Option<u64>,
    gate: Option<(usize, Arc<tokio::sync::Notify>)>,
    served: usize,
    fails_at_end: bool,
}

fn body(len: usize) -> (Body, String) {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let bytes = Bytes::from(bytes);
    let chunks = (0..len)
        .step_by(64 * 1024)
        .map(|start| bytes.slice(start..(start + 64 * 1024).min(len)))
        .collect();
    let body = Body {
        chunks,
        announced: None,
        gate: None,
        served: 0,
        fails_at_end: false,
    };
    (body, sha256)
}

impl ChunkSource for Body {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        if let Some((after, gate)) = &self.gate
            && self.served == *after
        {
            gate.notified().await;
        }
        self.served += 1;
        match self.chunks.pop_front() {
            None if self.fails_at_end => Err(Error::source("connection reset mid-body")),
            next => Ok(next),
        }
    }

    fn announced_len(&self) -> Option<u64> {
        self.announced
    }
}

fn spec(key: &str) -> ObjectSpec {
    ObjectSpec {
        key: key.to_owned(),
        content_type: "audio/wav".to_owned(),
        metadata: HashMap::from([(
            "source-url".to_owned(),
            format!("https://example.test/{key}"),
        )]),
    }
}

async fn open_uploads(bucket: &str) -> usize {
    support::s3()
        .await
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .expect("list multipart uploads")
        .uploads()
        .len()
}

/// The stored object's SHA-256 and length, read back from moto directly.
async fn stored(bucket: &str, key: &str) -> Option<(String, usize)> {
    let mut body = support::s3()
        .await
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .ok()?
        .body;
    let (mut hasher, mut len) = (Sha256::new(), 0);
    while let Some(chunk) = body.try_next().await.expect("read the object") {
        len += chunk.len();
        hasher.update(&chunk);
    }
    Some((hex::encode(hasher.finalize()), len))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_that_fails_once_is_retried_on_its_own_and_the_object_is_whole() {
    let proxy = PartProxy::start().await;
    let bucket = support::fresh_bucket().await;
    let len = 4 * PART + 1234;
    let (mut source, sha256) = body(len);
    proxy.fail(2, Fault::ServerError, 1);
    proxy.fail(4, Fault::Reset, 1);

    let written = proxy
        .sink(&bucket, 3)
        .write(&spec("retried.wav"), &mut source, None)
        .await
        .expect("the copy survives one failure of two parts");

    assert_eq!(written.size, len as u64);
    assert_eq!(written.sha256, sha256);
    assert_eq!(
        stored(&bucket, "retried.wav").await,
        Some((sha256, len)),
        "the object holds exactly the body"
    );
    let attempts = proxy.attempts();
    assert_eq!(
        attempts,
        HashMap::from([(1, 1), (2, 2), (3, 1), (4, 2), (5, 1)]),
        "only the failed parts went up twice"
    );
    assert_eq!(open_uploads(&bucket).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_that_keeps_failing_aborts_the_upload_with_no_parts_left() {
    let proxy = PartProxy::start().await;
    let bucket = support::fresh_bucket().await;
    let (mut source, _) = body(6 * PART);
    proxy.fail(3, Fault::ServerError, u32::MAX);

    let err = proxy
        .sink(&bucket, 4)
        .write(&spec("doomed.wav"), &mut source, None)
        .await
        .expect_err("part 3 never goes up");

    assert!(err.to_string().contains("UploadPart 3"), "{err}");
    assert!(err.is_retryable(), "a later attempt may succeed: {err}");
    assert_eq!(
        proxy.attempts().get(&3),
        Some(&3),
        "the SDK tried part 3 three times (its default) before giving up"
    );
    assert_eq!(open_uploads(&bucket).await, 0, "the upload was aborted");
    assert_eq!(stored(&bucket, "doomed.wav").await, None, "no object");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_go_up_several_at_once_but_never_more_than_the_sink_is_told() {
    let proxy = PartProxy::start().await;
    let bucket = support::fresh_bucket().await;
    let len = 9 * PART;
    let (mut source, sha256) = body(len);

    let written = proxy
        .sink(&bucket, 3)
        .write(&spec("parallel.wav"), &mut source, None)
        .await
        .expect("copied");

    assert_eq!((written.size, &written.sha256), (len as u64, &sha256));
    assert_eq!(stored(&bucket, "parallel.wav").await, Some((sha256, len)));
    let most = proxy.most_in_flight();
    assert!(
        (2..=3).contains(&most),
        "{most} UploadParts in flight at once, with 3 allowed"
    );
    assert_eq!(proxy.attempts().len(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_announced_as_several_parts_has_its_upload_created_before_its_first_part_is_read() {
    let proxy = PartProxy::start().await;
    let bucket = support::fresh_bucket().await;
    let len = 3 * PART + 77;
    let (mut source, sha256) = body(len);
    let gate = Arc::new(tokio::sync::Notify::new());
    source.announced = Some(len as u64);
    source.gate = Some((1, gate.clone()));

    let sink = proxy.sink(&bucket, 2);
    let write =
        tokio::spawn(async move { sink.write(&spec("early.wav"), &mut source, None).await });
    // The body stops after its first chunk until the upload exists.
    let waited = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while proxy.creates() == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "no upload created while the first part was read"
    );
    gate.notify_one();
    let written = write.await.expect("the write task").expect("copied");

    assert_eq!((written.size, &written.sha256), (len as u64, &sha256));
    assert_eq!(stored(&bucket, "early.wav").await, Some((sha256, len)));
    assert_eq!(proxy.creates(), 1);
    assert_eq!(proxy.attempts().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_created_early_is_aborted_when_the_body_fails_or_falls_short() {
    let proxy = PartProxy::start().await;
    let bucket = support::fresh_bucket().await;
    let sink = proxy.sink(&bucket, 2);

    // Reset within the first part.
    let (mut failing, _) = body(PART / 2);
    failing.announced = Some(3 * PART as u64);
    failing.fails_at_end = true;
    let err = sink
        .write(&spec("reset.wav"), &mut failing, None)
        .await
        .expect_err("the body was cut");
    assert!(err.is_retryable(), "{err}");
    assert_eq!(proxy.creates(), 1, "created at once");
    assert_eq!(open_uploads(&bucket).await, 0, "and aborted");
    assert_eq!(stored(&bucket, "reset.wav").await, None);

    // Announced as several parts, but one part long: a short body, not a smaller object.
    let (mut short, _) = body(1000);
    short.announced = Some(3 * PART as u64);
    let err = sink
        .write(&spec("short.wav"), &mut short, None)
        .await
        .expect_err("short of its announced length");
    assert!(err.to_string().contains("1000 of its"), "{err}");
    assert_eq!(stored(&bucket, "short.wav").await, None);
    assert_eq!(proxy.creates(), 2);
    assert_eq!(open_uploads(&bucket).await, 0);
}

/// A sink that sends bodies announced at up to three parts as one PutObject.
fn single_put_sink(proxy: &PartProxy, bucket: &str) -> S3Sink {
    proxy.sink_with(
        bucket,
        S3SinkOptions {
            part_size: PART,
            parts_in_flight: 2,
            single_put_max: 3 * PART,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_announced_within_one_put_goes_up_in_one_and_is_retried_whole() {
    let proxy = PartProxy::start().await;
    let bucket = support::fresh_bucket().await;
    let len = 2 * PART + 99;
    let (mut source, sha256) = body(len);
    source.announced = Some(len as u64);
    proxy.fail(0, Fault::Reset, 1);

    let written = single_put_sink(&proxy, &bucket)
        .write(&spec("one.wav"), &mut source, None)
        .await
        .expect("copied after one reset");

    assert_eq!((written.size, &written.sha256), (len as u64, &sha256));
    assert!(
        !written.tagged,
        "its hash was known only after its request went"
    );
    assert_eq!(stored(&bucket, "one.wav").await, Some((sha256, len)));
    assert_eq!(
        (proxy.creates(), proxy.attempts()),
        (0, HashMap::from([(0, 2)])),
        "one PutObject, sent again whole after the reset, and no multipart upload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_sent_while_read_creates_nothing_unless_the_body_is_whole() {
    let proxy = PartProxy::start().await;
    let bucket = support::fresh_bucket().await;
    let sink = single_put_sink(&proxy, &bucket);
    let announced = 2 * PART as u64;

    // Reset after most of the body went up.
    let (mut failing, _) = body(2 * PART - 64 * 1024);
    failing.announced = Some(announced);
    failing.fails_at_end = true;
    let err = sink
        .write(&spec("reset.wav"), &mut failing, None)
        .await
        .expect_err("the body was cut");
    assert!(err.is_retryable(), "{err}");

    // Ends cleanly, one chunk short.
    let (mut short, _) = body(2 * PART - 64 * 1024);
    short.announced = Some(announced);
    let err = sink
        .write(&spec("short.wav"), &mut short, None)
        .await
        .expect_err("short of its announced length");
    assert!(err.to_string().contains("of its 10485760"), "{err}");

    // Every announced byte, then more: not the file that was announced.
    let (mut long, _) = body(2 * PART + 1);
    long.announced = Some(announced);
    let err = sink
        .write(&spec("long.wav"), &mut long, None)
        .await
        .expect_err("longer than announced");
    assert!(err.to_string().contains("past its 10485760"), "{err}");

    for key in ["reset.wav", "short.wav", "long.wav"] {
        assert_eq!(stored(&bucket, key).await, None, "{key} left an object");
    }
    assert_eq!(proxy.creates(), 0);
}
