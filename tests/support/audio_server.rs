//! A local HTTP/1.1 server for the copy tests and the memory benchmark, written by hand on a
//! tokio TcpListener so that it can misbehave on demand. The path says what to do:
//!
//! - `/ok/<len>/<name>`: 200 with Content-Length and `audio/mpeg`
//! - `/notype/<len>/<name>`: 200 with no Content-Type
//! - `/chunked/<len>/<name>`: 200, chunked, no Content-Length
//! - `/status/<code>/<name>`: that status, tiny body
//! - `/flaky/<n>/<len>/<name>`: 500 for the first n requests of this path, then like `/ok`
//! - `/reset/<len>/<name>`: half the body, then a TCP reset
//! - `/short/<len>/<name>`: half the body, then a clean close (shorter than Content-Length)
//! - `/slow/<ms>/<len>/<name>`: waits `ms` before the headers
//! - `/stall/<ms>/<len>/<name>`: half the body, waits `ms`, then the rest
//! - `/trickle/<len>/<name>`: 64 KiB every 100 ms (always busy, never finished quickly)
//! - anything added with [`AudioServer::redirect`]: 302 to the given location
//! - anything at all while [`AudioServer::set_outage`] is on: 503, not counted as a hit (the
//!   request never reached the file), counted in [`AudioServer::refused`]
//!
//! Bodies are pseudo-random bytes determined by `<name>` and `<len>`, generated while sending,
//! so the tests know the expected hash without storing the file.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WRITE_CHUNK: usize = 64 * 1024;

#[derive(Clone)]
pub struct AudioServer {
    addr: SocketAddr,
    state: Arc<State>,
}

/// Bodies made once, by name and length.
type Bodies = HashMap<(String, u64), Arc<Vec<u8>>>;

#[derive(Default)]
struct State {
    hits: Mutex<HashMap<String, usize>>,
    redirects: Mutex<HashMap<String, String>>,
    outage: AtomicBool,
    refused: AtomicUsize,
    /// `/ok` bodies kept once made, by name and length, when serving from memory.
    bodies: Option<Mutex<Bodies>>,
}

impl AudioServer {
    /// Starts on a free loopback port; runs until the runtime that started it ends.
    pub async fn start() -> AudioServer {
        AudioServer::start_with(State::default()).await
    }

    /// The same, but each `/ok` body is made once and then served from memory, as a bucket
    /// serves a stored file: the benchmarks' source then spends no CPU making bytes.
    #[allow(dead_code)]
    pub async fn start_from_memory() -> AudioServer {
        AudioServer::start_with(State {
            bodies: Some(Mutex::default()),
            ..State::default()
        })
        .await
    }

    async fn start_with(state: State) -> AudioServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for the audio server");
        let addr = listener.local_addr().expect("audio server address");
        let state = Arc::new(state);
        let accepting = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&accepting);
                tokio::spawn(async move {
                    // A client that hangs up early is part of the tests, not a failure.
                    let _ = serve(stream, &state).await;
                });
            }
        });
        AudioServer { addr, state }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answers `path` with a 302 to `location`.
    pub fn redirect(&self, path: &str, location: &str) {
        self.state
            .redirects
            .lock()
            .expect("redirect table")
            .insert(path.to_owned(), location.to_owned());
    }

    /// How many requests reached `path`.
    pub fn hits(&self, path: &str) -> usize {
        self.state
            .hits
            .lock()
            .expect("hit table")
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn total_hits(&self) -> usize {
        self.state.hits.lock().expect("hit table").values().sum()
    }

    /// While `on`, every request is answered 503 (an outage of MusicGPT's bucket).
    pub fn set_outage(&self, on: bool) {
        self.state.outage.store(on, Ordering::SeqCst);
    }

    /// Requests answered 503 because of an outage.
    pub fn refused(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }
}

/// The body served for `name` and `len`, in full (for small files).
pub fn body(name: &str, len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len as usize);
    let mut generator = Generator::new(name, len);
    while let Some(chunk) = generator.next_chunk(WRITE_CHUNK) {
        out.extend_from_slice(&chunk);
    }
    out
}

/// The SHA-256 (hex) of the body served for `name` and `len`.
pub fn sha256(name: &str, len: u64) -> String {
    let mut hasher = Sha256::new();
    let mut generator = Generator::new(name, len);
    while let Some(chunk) = generator.next_chunk(WRITE_CHUNK) {
        hasher.update(&chunk);
    }
    hex::encode(hasher.finalize())
}

/// xorshift64* keyed by the name: fast, deterministic, incompressible enough.
struct Generator {
    state: u64,
    left: u64,
}

impl Generator {
    fn new(name: &str, len: u64) -> Generator {
        let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        }) | 1;
        Generator {
            state: seed,
            left: len,
        }
    }

    fn next_chunk(&mut self, max: usize) -> Option<Vec<u8>> {
        if self.left == 0 {
            return None;
        }
        let n = (max as u64).min(self.left) as usize;
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let word = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d);
            out.extend_from_slice(&word.to_le_bytes());
        }
        out.truncate(n);
        self.left -= n as u64;
        Some(out)
    }
}

async fn serve(mut stream: TcpStream, state: &State) -> std::io::Result<()> {
    let Some(path) = read_request_path(&mut stream).await? else {
        return Ok(());
    };
    if state.outage.load(Ordering::SeqCst) {
        state.refused.fetch_add(1, Ordering::SeqCst);
        return status(&mut stream, 503).await;
    }
    let hits = {
        let mut table = state.hits.lock().expect("hit table");
        let count = table.entry(path.clone()).or_insert(0);
        *count += 1;
        *count
    };
    let redirect = state
        .redirects
        .lock()
        .expect("redirect table")
        .get(&path)
        .cloned();
    if let Some(location) = redirect {
        let head = format!(
            "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        return stream.write_all(head.as_bytes()).await;
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let number = |i: usize| parts.get(i).and_then(|p| p.parse::<u64>().ok());
    let name = parts.last().copied().unwrap_or_default().to_owned();
    match (parts.first().copied(), number(1), number(2)) {
        (Some("ok"), Some(len), _) => match &state.bodies {
            Some(bodies) => {
                let body = {
                    let mut bodies = bodies.lock().expect("body table");
                    let made = bodies.entry((name.clone(), len));
                    Arc::clone(made.or_insert_with(|| Arc::new(body(&name, len))))
                };
                head(&mut stream, len, Some("audio/mpeg")).await?;
                for chunk in body.chunks(WRITE_CHUNK) {
                    stream.write_all(chunk).await?;
                }
                stream.flush().await
            }
            None => send(&mut stream, &name, len, Some("audio/mpeg")).await,
        },
        (Some("notype"), Some(len), _) => send(&mut stream, &name, len, None).await,
        (Some("chunked"), Some(len), _) => send_chunked(&mut stream, &name, len).await,
        (Some("status"), Some(code), _) => status(&mut stream, code).await,
        (Some("flaky"), Some(failures), Some(len)) => {
            if hits as u64 <= failures {
                status(&mut stream, 500).await
            } else {
                send(&mut stream, &name, len, Some("audio/mpeg")).await
            }
        }
        (Some("reset"), Some(len), _) => {
            send_part(&mut stream, &name, len, len / 2).await?;
            stream.set_zero_linger()?;
            drop(stream);
            Ok(())
        }
        (Some("short"), Some(len), _) => {
            send_part(&mut stream, &name, len, len / 2).await?;
            stream.shutdown().await
        }
        (Some("slow"), Some(ms), Some(len)) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            send(&mut stream, &name, len, Some("audio/mpeg")).await
        }
        (Some("stall"), Some(ms), Some(len)) => {
            let mut generator = send_part(&mut stream, &name, len, len / 2).await?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            while let Some(chunk) = generator.next_chunk(WRITE_CHUNK) {
                stream.write_all(&chunk).await?;
            }
            Ok(())
        }
        (Some("trickle"), Some(len), _) => {
            head(&mut stream, len, Some("audio/mpeg")).await?;
            let mut generator = Generator::new(&name, len);
            while let Some(chunk) = generator.next_chunk(WRITE_CHUNK) {
                stream.write_all(&chunk).await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(())
        }
        _ => status(&mut stream, 404).await,
    }
}

/// The request target of one request; the rest of the head is read and ignored.
async fn read_request_path(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Ok(None);
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    Ok(text
        .lines()
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .map(str::to_owned))
}

async fn head(stream: &mut TcpStream, len: u64, content_type: Option<&str>) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n");
    if let Some(content_type) = content_type {
        head.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await
}

async fn send(
    stream: &mut TcpStream,
    name: &str,
    len: u64,
    content_type: Option<&str>,
) -> std::io::Result<()> {
    head(stream, len, content_type).await?;
    let mut generator = Generator::new(name, len);
    while let Some(chunk) = generator.next_chunk(WRITE_CHUNK) {
        stream.write_all(&chunk).await?;
    }
    stream.flush().await
}

/// The head with the full length, then only `upto` bytes; returns the generator to go on.
async fn send_part(
    stream: &mut TcpStream,
    name: &str,
    len: u64,
    upto: u64,
) -> std::io::Result<Generator> {
    head(stream, len, Some("audio/mpeg")).await?;
    let mut generator = Generator::new(name, len);
    let mut sent = 0;
    while sent < upto {
        let want = ((upto - sent) as usize).min(WRITE_CHUNK);
        let Some(chunk) = generator.next_chunk(want) else {
            break;
        };
        sent += chunk.len() as u64;
        stream.write_all(&chunk).await?;
    }
    stream.flush().await?;
    Ok(generator)
}

async fn send_chunked(stream: &mut TcpStream, name: &str, len: u64) -> std::io::Result<()> {
    let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: audio/mpeg\r\nConnection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).await?;
    let mut generator = Generator::new(name, len);
    while let Some(chunk) = generator.next_chunk(WRITE_CHUNK) {
        stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await?;
        stream.write_all(&chunk).await?;
        stream.write_all(b"\r\n").await?;
    }
    stream.write_all(b"0\r\n\r\n").await?;
    stream.flush().await
}

async fn status(stream: &mut TcpStream, code: u64) -> std::io::Result<()> {
    let head =
        format!("HTTP/1.1 {code} Test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nnope\n");
    stream.write_all(head.as_bytes()).await
}
