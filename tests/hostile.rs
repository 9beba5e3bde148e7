//! Hostile input, as a corpus of over 200 requests: malformed bodies, hostile ids, wrong
//! methods, oversized and deeply nested bodies get a 4xx and write nothing; source URLs aimed at
//! metadata endpoints, loopback, private ranges, odd IP spellings, userinfo tricks, other
//! schemes and redirect chains are recorded and then refused without a single request reaching
//! the local audio server.
#[path = "support/audio_server.rs"]
mod audio_server;
#[path = "support/copy_kit.rs"]
mod copy_kit;
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use copy_kit::Kit;
use lambda_http::Body;
use musicgpt_webhook::adapters::dynamodb::DynamoTable;
use musicgpt_webhook::app::copy::CopyOutcome;
use musicgpt_webhook::domain::ids::Id;
use musicgpt_webhook::domain::status::AssetState;
use musicgpt_webhook::lambda::http::Webhook;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TOKEN: &str = copy_kit::TOKEN;

fn request(method: &str, content_type: Option<&str>, body: Vec<u8>) -> lambda_http::Request {
    let mut builder = lambda_http::http::Request::builder()
        .method(method)
        .uri(format!("/webhook/{TOKEN}"));
    if let Some(ct) = content_type {
        builder = builder.header("content-type", ct);
    }
    builder.body(Body::Binary(body)).expect("request")
}

async fn status_of(webhook: &Webhook<DynamoTable>, request: lambda_http::Request) -> (u16, Value) {
    let response = webhook.handle(request).await;
    let status = response.status().as_u16();
    let body = match response.body() {
        Body::Text(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    (status, body)
}

/// A request that must be refused: (name, method, content type, body, expected status).
type Refused = (String, &'static str, Option<String>, Vec<u8>, u16);

fn refused_requests() -> Vec<Refused> {
    #[derive(serde::Deserialize)]
    struct Case {
        name: String,
        content_type: Option<String>,
        body: String,
    }
    let corpus: Vec<Case> =
        serde_json::from_str(include_str!("data/corpus/malformed.json")).expect("malformed corpus");
    let mut cases: Vec<_> = corpus
        .into_iter()
        .map(|c| (c.name, "POST", c.content_type, c.body.into_bytes(), 400))
        .collect();
    let json = Some("application/json".to_owned());
    let form = Some("application/x-www-form-urlencoded".to_owned());
    for method in ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"] {
        cases.push((
            format!("method-{method}"),
            method,
            json.clone(),
            br#"{"task_id":"t"}"#.to_vec(),
            405,
        ));
    }
    for depth in [129, 1_000, 100_000] {
        let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        cases.push((
            format!("nesting-{depth}"),
            "POST",
            json.clone(),
            body.into_bytes(),
            400,
        ));
        let nested = format!(
            r#"{{"task_id":"t","x":{}1{}}}"#,
            r#"{"a":"#.repeat(depth),
            "}".repeat(depth)
        );
        cases.push((
            format!("nested-field-{depth}"),
            "POST",
            json.clone(),
            nested.into_bytes(),
            400,
        ));
    }
    let huge = "x".repeat(1024 * 1024 + 1);
    cases.push((
        "huge-string".into(),
        "POST",
        json.clone(),
        format!(r#"{{"task_id":"t","title":"{huge}"}}"#).into_bytes(),
        413,
    ));
    cases.push((
        "huge-array".into(),
        "POST",
        json.clone(),
        format!(r#"{{"task_id":"t","x":[{}1]}}"#, "1,".repeat(600_000)).into_bytes(),
        413,
    ));
    cases.push((
        "huge-garbage".into(),
        "POST",
        None,
        vec![b'{'; 2 * 1024 * 1024],
        413,
    ));
    cases.push((
        "too-big-to-store".into(),
        "POST",
        json.clone(),
        format!(r#"{{"task_id":"t","lyrics":"{}"}}"#, "y".repeat(250_000)).into_bytes(),
        413,
    ));
    cases.push(("many-stems".into(), "POST", json.clone(), json!({"task_id": "t", "audio_url": (0..60).map(|i| (format!("s{i}"), json!(format!("https://lalals.s3.amazonaws.com/{i}.mp3")))).collect::<serde_json::Map<_, _>>()}).to_string().into_bytes(), 400));
    let hostile_ids = [
        "../etc/passwd",
        "..",
        ".",
        "a/b",
        "a\\b",
        "%2e%2e%2f",
        "a b",
        "a\u{0}b",
        "a\nb",
        "é",
        "😀",
        "a#b",
        "a?b",
        "a.mp3",
        "*",
        "",
    ];
    for field in [
        "task_id",
        "conversion_id",
        "conversion_id_1",
        "conversion_id_2",
    ] {
        for (i, id) in hostile_ids.iter().enumerate() {
            if id.is_empty() {
                continue;
            }
            let mut body = json!({"task_id": "t-ok", "success": true});
            body[field] = json!(id);
            cases.push((
                format!("id-{field}-{i}"),
                "POST",
                json.clone(),
                body.to_string().into_bytes(),
                400,
            ));
            if field == "task_id" {
                let encoded: String = form_urlencoded::Serializer::new(String::new())
                    .append_pair("task_id", id)
                    .finish();
                cases.push((
                    format!("form-id-{i}"),
                    "POST",
                    form.clone(),
                    encoded.into_bytes(),
                    400,
                ));
            }
        }
    }
    for (i, stem) in ["../x", "a/b", "a.b", "", " "].iter().enumerate() {
        let map = json!({ *stem: "https://lalals.s3.amazonaws.com/x.mp3" });
        cases.push((
            format!("stem-name-{i}"),
            "POST",
            json.clone(),
            json!({"task_id": "t", "audio_url": map})
                .to_string()
                .into_bytes(),
            400,
        ));
    }
    cases
}

#[tokio::test]
async fn hostile_requests_get_a_4xx_and_write_nothing() {
    let kit = Kit::new().await;
    let webhook = Webhook::new(kit.ingest.clone());
    let cases = refused_requests();
    for (name, method, content_type, body, expected) in &cases {
        let (status, answer) = status_of(
            &webhook,
            request(method, content_type.as_deref(), body.clone()),
        )
        .await;
        assert_eq!(status, *expected, "{name}: {answer}");
        if status != 405 {
            assert!(
                answer["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{name}: no message"
            );
        }
    }
    // With the right token, a body that cannot be recorded is kept in quarantine, and
    // nothing else is written.
    let refused: std::collections::BTreeSet<String> = cases
        .iter()
        .filter(|case| case.4 != 405)
        .map(|case| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&case.3)))
        .collect();
    assert_eq!(
        support::quarantined(&kit.table).await,
        refused,
        "a refused request wrote items other than its quarantine"
    );
    let urls = hostile_urls(1, "127.0.0.1");
    let total = cases.len() + urls.len();
    println!(
        "hostile corpus: {} refused requests + {} hostile source URLs = {total}",
        cases.len(),
        urls.len()
    );
    assert!(total >= 200, "the corpus has {total} requests");
}

/// (name, url) with `{port}` filled in; REDIRECT: entries stay as they are.
fn hostile_urls(port: u16, _loopback: &str) -> Vec<(String, String)> {
    let list: Vec<HashMap<String, String>> =
        serde_json::from_str(include_str!("data/corpus/hostile_urls.json"))
            .expect("hostile URL corpus");
    list.into_iter()
        .map(|case| {
            (
                case["name"].clone(),
                case["url"].replace("{port}", &port.to_string()),
            )
        })
        .collect()
}

/// A redirector on another loopback address, named in SOURCE_HOSTS, that answers
/// `/r/<n>` with a 302 to the n-th target: the allowed first hop of a redirect chain.
async fn redirector(targets: Arc<Mutex<Vec<String>>>) -> String {
    let listener = TcpListener::bind("127.0.0.3:0")
        .await
        .expect("bind 127.0.0.3");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let targets = targets.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 4096];
                let n = stream.read(&mut buffer).await.unwrap_or(0);
                let head = String::from_utf8_lossy(&buffer[..n]).to_string();
                let path = head
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                let index: usize = path.trim_start_matches("/r/").parse().unwrap_or(usize::MAX);
                let location = targets
                    .lock()
                    .expect("targets")
                    .get(index)
                    .cloned()
                    .unwrap_or_default();
                let reply = format!(
                    "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = stream.write_all(reply.as_bytes()).await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn hostile_source_urls_are_recorded_then_refused_without_any_request() {
    // Direct URLs: SOURCE_HOSTS is MusicGPT's default; redirects: only the redirector's
    // loopback address is named, so every place a redirect points to must be refused.
    let direct = Kit::builder()
        .hosts(&["lalals.s3.amazonaws.com", "musicgpt.s3.amazonaws.com"])
        .build()
        .await;
    let redirected = Kit::builder().hosts(&["127.0.0.3"]).build().await;
    let targets = Arc::new(Mutex::new(Vec::new()));
    let redirect_base = redirector(targets.clone()).await;

    let port = direct.server.addr().port();
    let mut checked = 0;
    for (name, url) in hostile_urls(port, "127.0.0.1") {
        let (kit, url) = match url.strip_prefix("REDIRECT:") {
            None => (&direct, url),
            Some(rest) => {
                // Each REDIRECT: adds a hop on the redirector; the last target is the attack,
                // aimed at the redirected kit's audio server where it names the port.
                let target = rest.replace(
                    &port.to_string(),
                    &redirected.server.addr().port().to_string(),
                );
                let mut next = target;
                for _ in 0..rest.matches("REDIRECT:").count() + 1 {
                    let mut list = targets.lock().expect("targets");
                    list.push(next.trim_start_matches("REDIRECT:").to_owned());
                    next = format!("{redirect_base}/r/{}", list.len() - 1);
                }
                (&redirected, next)
            }
        };
        let webhook = Webhook::new(kit.ingest.clone());
        let body = json!({"subtype": "music_ai", "success": true, "task_id": format!("t-{name}"),
            "conversion_id": format!("c-{name}"), "conversion_path": url});
        let (status, answer) = status_of(
            &webhook,
            request(
                "POST",
                Some("application/json"),
                body.to_string().into_bytes(),
            ),
        )
        .await;
        assert_eq!(
            (status, answer["files"].as_u64()),
            (200, Some(1)),
            "{name}: recorded with its file"
        );
        let asset = kit
            .engine
            .pending_in_task(&Id::parse(&format!("t-{name}")).expect("task id"))
            .await
            .expect("assets");
        assert_eq!(asset.len(), 1, "{name}");
        let outcome = kit
            .engine
            .copy(&asset[0], None)
            .await
            .expect("copy attempt");
        match &outcome {
            CopyOutcome::Failed {
                reason,
                attempts: 1,
            } if reason.contains("refused") => {}
            other => panic!("{name} ({url}): expected a refusal, got {other:?}"),
        }
        let item = kit.item(&asset[0]).await;
        assert_eq!(item.state, AssetState::Failed, "{name}");
        checked += 1;
    }
    assert_eq!(
        direct.server.total_hits(),
        0,
        "a refused URL reached the audio server"
    );
    assert_eq!(
        redirected.server.total_hits(),
        0,
        "a refused redirect reached the audio server"
    );
    println!("hostile source URLs refused: {checked}");
}
