//! Forwarding events to the owner's webhook (a real local HTTP server): Standard Webhooks
//! signatures checked by the Python `standardwebhooks` package, a receiver that fails for a
//! while then recovers, rotation with two secrets, retries for at least 24 hours before the
//! dead-letter record, a 410 that turns forwarding off, and targets the guard refuses.
#[path = "support/receiver.rs"]
mod receiver;
mod support;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use musicgpt_webhook::adapters::forward::HttpForwarder;
use musicgpt_webhook::adapters::memory::{ManualClock, MemoryBus, MemoryTable};
use musicgpt_webhook::app::announce::Announcer;
use musicgpt_webhook::app::ports::{Clock, EventLog, TaskStore};
use musicgpt_webhook::app::record::Recorder;
use musicgpt_webhook::domain::callback::Callback;
use musicgpt_webhook::domain::events::{ForwardState, RecordedEvent, recorded_events};
use musicgpt_webhook::domain::ids::Id;
use musicgpt_webhook::domain::keys::KeyPrefix;
use receiver::{Received, Receiver};
use serde_json::{Value, json};
use tokio::time::Instant;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn second_secret() -> String {
    let key: Vec<u8> = (0u8..32)
        .map(|b| b.wrapping_mul(37).wrapping_add(11))
        .collect();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

fn real_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
}

struct Rig {
    table: MemoryTable,
    bus: MemoryBus,
    clock: Arc<ManualClock>,
    announcer: Announcer<MemoryTable, MemoryBus, HttpForwarder>,
    recorder: Recorder<MemoryTable>,
}

fn rig(receiver: &Receiver, secrets: &[String]) -> Rig {
    let table = MemoryTable::new();
    let bus = MemoryBus::new();
    let clock = Arc::new(ManualClock::at(real_now()));
    let forwarder = HttpForwarder::new(
        &receiver.url("/hooks/musicgpt"),
        secrets,
        &["127.0.0.1".to_owned()],
    )
    .expect("a loopback target named in FORWARD_HOSTS");
    let announcer =
        Announcer::new(table.clone(), Some(bus.clone()), Some(forwarder)).with_clock(clock.clone());
    let recorder = Recorder::new(
        table.clone(),
        KeyPrefix::default(),
        Duration::from_secs(86_400),
    );
    Rig {
        table,
        bus,
        clock,
        announcer,
        recorder,
    }
}

impl Rig {
    /// A task MusicGPT reports failed: it settles at once, with one event.
    async fn failed_task(&self, task: &str) -> Id {
        let body = json!({"task_id": task, "status": "FAILED", "status_msg": "no credits"});
        let callback = Callback::parse(body.to_string().as_bytes(), None).expect("callback");
        self.recorder
            .record(&callback, self.clock.now_secs())
            .await
            .expect("recorded");
        let task = Id::parse(task).expect("id");
        self.announcer.announce(&task).await.expect("announced");
        task
    }

    async fn event(&self, task: &Id) -> RecordedEvent {
        let events = recorded_events(&self.table.task_items(task).await.expect("items"));
        assert_eq!(events.len(), 1, "{events:?}");
        events[0].clone()
    }

    async fn sweep(&self) {
        self.announcer
            .sweep(Instant::now() + Duration::from_secs(30))
            .await
            .expect("sweep");
    }

    /// Moves the clock to the event's next forward and sweeps.
    async fn next_try(&self, task: &Id) -> bool {
        let event = self.event(task).await;
        let Some(next) = event.forward.next_at.filter(|_| event.due) else {
            return false;
        };
        self.clock.set(next);
        self.sweep().await;
        true
    }
}

fn case(secret: &str, request: &Received, check_time: bool, expect: bool) -> Value {
    json!({
        "secret": secret,
        "headers": request.headers,
        "body": request.body,
        "check_time": check_time,
        "expect": expect,
    })
}

#[tokio::test]
async fn a_receiver_that_fails_for_a_while_then_recovers_gets_the_event_signed() {
    let receiver = Receiver::start().await;
    receiver.answer_next(&[500, 503, 502]);
    let rig = rig(&receiver, &[SECRET.to_owned()]);
    let task = rig.failed_task("t-forward").await;
    assert_eq!(rig.bus.published().len(), 1, "published on the bus at once");
    let started = rig.event(&task).await.created_at;
    while rig.next_try(&task).await {}
    let event = rig.event(&task).await;
    assert_eq!(event.forward.state, Some(ForwardState::Delivered));
    assert_eq!(event.forward.attempts, 4);
    assert!(!event.due);
    assert_eq!(
        rig.table.due_events(u64::MAX, 10).await.expect("due").len(),
        0
    );
    // Waited 5 s, then 5 min, then 30 min between the tries.
    assert_eq!(rig.clock.now_secs() - started, 5 + 300 + 1_800);
    let received = receiver.received();
    assert_eq!(received.len(), 4);
    let mut cases = Vec::new();
    for (n, request) in received.iter().enumerate() {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/hooks/musicgpt");
        assert_eq!(
            request.headers.get("content-type").map(String::as_str),
            Some("application/json")
        );
        assert_eq!(
            request.headers.get("webhook-id"),
            Some(&event.event_id),
            "the same id on every try"
        );
        let payload: Value = serde_json::from_str(&request.body).expect("JSON");
        assert_eq!(payload["id"], json!(event.event_id));
        assert_eq!(payload["source"], json!("musicgpt-webhook"));
        assert_eq!(payload["detail-type"], json!("Task Failed"));
        assert_eq!(payload["detail"]["reason"], json!("no credits"));
        // The first try was signed just now: verified with the time window too.
        cases.push(case(SECRET, request, n == 0, true));
        let mut tampered = request.clone();
        tampered.body = tampered.body.replace("no credits", "no credit");
        cases.push(case(SECRET, &tampered, false, false));
        cases.push(case(&second_secret(), request, false, false));
    }
    support::verify_webhooks(&cases);
    support::check_event_schemas(&[("Task Failed".into(), event.detail.clone())]);
}

#[tokio::test]
async fn during_a_rotation_both_secrets_sign_and_each_verifies_alone() {
    let receiver = Receiver::start().await;
    let rig = rig(&receiver, &[SECRET.to_owned(), second_secret()]);
    rig.failed_task("t-rotate").await;
    let received = receiver.received();
    assert_eq!(received.len(), 1);
    let signature = &received[0].headers["webhook-signature"];
    let parts: Vec<&str> = signature.split(' ').collect();
    assert_eq!(parts.len(), 2, "{signature}");
    assert!(parts.iter().all(|p| p.starts_with("v1,")), "{signature}");
    let other = "whsec_dGhpcyBpcyBub3QgdGhlIHNlY3JldCBhdCBhbGw=";
    support::verify_webhooks(&[
        case(SECRET, &received[0], true, true),
        case(&second_secret(), &received[0], true, true),
        case(other, &received[0], true, false),
    ]);
}

#[tokio::test]
async fn forwarding_is_retried_for_at_least_a_day_then_dead_lettered() {
    let receiver = Receiver::start().await;
    receiver.answer_always(Some(500));
    let rig = rig(&receiver, &[SECRET.to_owned()]);
    let task = rig.failed_task("t-dead").await;
    let created = rig.event(&task).await.created_at;
    let mut tries = 0;
    while rig.next_try(&task).await {
        tries += 1;
        assert!(tries < 50, "retries do not end");
    }
    let event = rig.event(&task).await;
    assert_eq!(event.forward.state, Some(ForwardState::Dead));
    let items = rig.table.task_items(&task).await.expect("items");
    let item = items
        .iter()
        .find(|i| i["item_type"] == json!("EVENT"))
        .expect("event item");
    let dead_at = item["forward_dead_at"].as_u64().expect("forward_dead_at");
    assert!(
        dead_at - created >= 24 * 3_600,
        "gave up after {} s",
        dead_at - created
    );
    assert_eq!(
        dead_at - created,
        26 * 3_600,
        "the last try falls on the deadline"
    );
    assert_eq!(
        item["forward_last_error"],
        json!("answered 500 Internal Server Error")
    );
    assert_eq!(receiver.received().len() as u32, event.forward.attempts);
    assert!(event.forward.attempts >= 8);
    assert!(
        !event.due,
        "out of the outbox: the item itself is the dead-letter record"
    );
    // Nothing more is tried.
    rig.clock.advance(7 * 86_400);
    rig.sweep().await;
    assert_eq!(receiver.received().len() as u32, event.forward.attempts);
}

#[tokio::test]
async fn a_410_turns_forwarding_off() {
    let receiver = Receiver::start().await;
    receiver.answer_next(&[410]);
    let rig = rig(&receiver, &[SECRET.to_owned()]);
    let first = rig.failed_task("t-gone").await;
    assert_eq!(
        rig.event(&first).await.forward.state,
        Some(ForwardState::Disabled)
    );
    let second = rig.failed_task("t-gone-2").await;
    assert_eq!(receiver.received().len(), 1, "no forward after the 410");
    let event = rig.event(&second).await;
    assert_eq!(event.forward.state, Some(ForwardState::Disabled));
    assert!(!event.due);
    assert_eq!(
        rig.bus.published().len(),
        2,
        "the bus still gets every event"
    );
}

#[tokio::test]
async fn targets_the_guard_refuses_are_refused_before_anything_is_sent() {
    let receiver = Receiver::start().await;
    let secrets = [SECRET.to_owned()];
    let loopback = ["127.0.0.1".to_owned()];
    for (url, hosts) in [
        ("http://10.0.0.5/hook", &[][..]),
        ("https://10.0.0.5/hook", &[][..]),
        ("https://169.254.169.254/latest/meta-data", &loopback[..]),
        (&receiver.url("/hook") as &str, &[][..]),
        ("http://example.com/hook", &[][..]),
        ("ftp://example.com/hook", &[][..]),
        ("http://localhost:9/hook", &loopback[..]),
        ("https://user:pw@example.com/hook", &[][..]),
        ("not a url", &[][..]),
    ] {
        let hosts: Vec<String> = hosts.to_vec();
        assert!(
            HttpForwarder::new(url, &secrets, &hosts).is_err(),
            "{url} with {hosts:?}"
        );
    }
    assert!(HttpForwarder::new(&receiver.url("/hook"), &secrets, &loopback).is_ok());
    assert!(HttpForwarder::new("https://hooks.example.com/in", &secrets, &[]).is_ok());
    assert!(
        HttpForwarder::new(&receiver.url("/hook"), &["whsec_short".into()], &loopback).is_err()
    );
    // A name that does not resolve to a public address fails when sending, and is tried again.
    let rig_table = MemoryTable::new();
    let forwarder = HttpForwarder::new("https://localhost.invalid/hook", &secrets, &[])
        .expect("a public-looking name");
    let announcer: Announcer<MemoryTable, MemoryBus, HttpForwarder> =
        Announcer::new(rig_table.clone(), None, Some(forwarder));
    let body = json!({"task_id": "t-refused", "status": "FAILED"});
    Recorder::new(
        rig_table.clone(),
        KeyPrefix::default(),
        Duration::from_secs(60),
    )
    .record(
        &Callback::parse(body.to_string().as_bytes(), None).expect("callback"),
        real_now(),
    )
    .await
    .expect("recorded");
    let task = Id::parse("t-refused").expect("id");
    let report = announcer.announce(&task).await.expect("announced");
    assert_eq!(report.forward_failed, 1);
    let events = recorded_events(&rig_table.task_items(&task).await.expect("items"));
    assert_eq!(events[0].forward.state, Some(ForwardState::Pending));
    assert!(events[0].due, "tried again later, until the deadline");
}

/// `FORWARD_SECRETS` set to a Secrets Manager secret's ARN: its value is read (at cold start)
/// and split into the secrets; a bad value is refused without being echoed.
#[tokio::test]
async fn forward_secrets_come_from_secrets_manager() {
    use musicgpt_webhook::adapters::forward::secrets_from_manager;
    let sdk = support::sdk_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let create = async |name: &str, value: &str| {
        client
            .create_secret()
            .name(format!("{name}-{}", std::process::id()))
            .secret_string(value)
            .send()
            .await
            .expect("create the secret in moto")
            .arn
            .expect("an ARN")
    };
    let arn = create("forward", &format!("{SECRET}, {}", second_secret())).await;
    let secrets = secrets_from_manager(&client, &arn).await.expect("read");
    assert_eq!(secrets, [SECRET.to_owned(), second_secret()]);
    let receiver = Receiver::start().await;
    let rig = rig(&receiver, &secrets);
    rig.failed_task("t-secret").await;
    support::verify_webhooks(&[
        case(SECRET, &receiver.received()[0], true, true),
        case(&second_secret(), &receiver.received()[0], true, true),
    ]);
    let junk = create("junk", "not-a-whsec-value-at-all").await;
    let err = secrets_from_manager(&client, &junk)
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("FORWARD_SECRETS"), "{err}");
    assert!(!err.to_string().contains("not-a-whsec"), "{err}");
    let missing = arn.replace("forward", "nobody");
    assert!(secrets_from_manager(&client, &missing).await.is_err());
}
