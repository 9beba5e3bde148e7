//! A fake MusicGPT API on a loopback port: byId and the Music AI submit endpoint with the
//! shapes of docs/musicgpt/samples, plus 429/5xx on demand and a log of what was asked.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const API_KEY: &str = "test-api-key-not-a-secret";

#[derive(Default)]
struct State {
    /// task id -> the `conversion` object byId answers with.
    tasks: HashMap<String, Value>,
    /// Statuses to answer the next requests with, before anything else.
    failures: VecDeque<u16>,
    submit_answer: Option<Value>,
    /// (method, path with query) of every request, in order.
    requests: Vec<(String, String)>,
    submissions: Vec<Value>,
}

#[derive(Clone)]
pub struct FakeMusicGpt {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl FakeMusicGpt {
    pub async fn start() -> FakeMusicGpt {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake MusicGPT");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let state = Arc::new(Mutex::new(State::default()));
        let served = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = served.clone();
                tokio::spawn(async move { serve(stream, state).await });
            }
        });
        FakeMusicGpt { url, state }
    }

    pub fn set_task(&self, task_id: &str, conversion: Value) {
        self.lock().tasks.insert(task_id.to_owned(), conversion);
    }

    pub fn fail_next(&self, statuses: &[u16]) {
        self.lock().failures.extend(statuses);
    }

    pub fn answer_submissions_with(&self, answer: Value) {
        self.lock().submit_answer = Some(answer);
    }

    pub fn requests(&self) -> Vec<(String, String)> {
        self.lock().requests.clone()
    }

    pub fn by_id_calls(&self) -> usize {
        self.requests()
            .iter()
            .filter(|(_, path)| path.starts_with("/api/public/v1/byId"))
            .count()
    }

    pub fn submissions(&self) -> Vec<Value> {
        self.lock().submissions.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

async fn serve(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).to_string();
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or_default().split_whitespace();
    let method = request_line.next().unwrap_or_default().to_owned();
    let target = request_line.next().unwrap_or_default().to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buffer.len() < header_end + length {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = &buffer[header_end..buffer.len().min(header_end + length)];
    let (status, answer) = answer(&state, &method, &target, &headers, body);
    let text = answer.to_string();
    let reply = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn answer(
    state: &Mutex<State>,
    method: &str,
    target: &str,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> (u16, Value) {
    let mut state = state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    state.requests.push((method.to_owned(), target.to_owned()));
    if let Some(status) = state.failures.pop_front() {
        return (status, json!({ "success": false, "error": "injected" }));
    }
    if headers.get("authorization").map(String::as_str) != Some(API_KEY) {
        return (401, json!({ "success": false, "error": "unauthorized" }));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match (method, path) {
        ("GET", "/api/public/v1/byId") => {
            let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
            if !params.contains_key("conversionType") {
                return (
                    422,
                    json!({ "success": false, "error": "conversionType is required" }),
                );
            }
            match params.get("task_id").and_then(|t| state.tasks.get(t)) {
                Some(conversion) => (200, json!({ "success": true, "conversion": conversion })),
                None => (
                    404,
                    json!({ "success": false, "error": "Conversion not found" }),
                ),
            }
        }
        ("POST", "/api/public/v1/MusicAI") => {
            let submission: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            state.submissions.push(submission);
            let answer = state.submit_answer.clone().unwrap_or_else(|| {
                serde_json::from_str(include_str!(
                    "../data/musicgpt/submit-response-music-ai.json"
                ))
                .expect("sample submit response")
            });
            (200, answer)
        }
        _ => (
            404,
            json!({ "success": false, "error": "no such endpoint" }),
        ),
    }
}
