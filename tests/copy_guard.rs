//! The source guard end to end: a refused URL makes the asset FAILED with the reason and sends
//! no request; redirects are checked hop by hop; names are pinned to the addresses checked.
#[path = "support/audio_server.rs"]
mod audio_server;
#[path = "support/copy_kit.rs"]
mod copy_kit;
mod support;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use copy_kit::Kit;
use musicgpt_webhook::adapters::source::{Lookup, LookupFuture};
use musicgpt_webhook::app::copy::CopyOutcome;
use musicgpt_webhook::domain::keys::AssetKey;

async fn assert_refused(kit: &Kit, asset: &AssetKey, reason: &str) {
    let outcome = kit.engine.copy(asset, None).await.expect("copy");
    assert!(
        matches!(&outcome, CopyOutcome::Failed { attempts: 1, reason: r } if r.contains(reason)),
        "{outcome:?} should be refused for {reason:?}"
    );
    let item = kit.item(asset).await;
    assert_eq!((item.state.as_str(), item.attempts), ("FAILED", 1));
    let error = item.last_error.unwrap_or_default();
    assert!(error.starts_with("source refused: "), "{error}");
    assert!(!kit.object_exists(&item.s3_key).await);
}

#[tokio::test]
async fn urls_outside_the_allowed_hosts_send_no_request() {
    let kit = Kit::new().await;
    let port = kit.server.addr().port();
    let cases = [
        (
            format!("http://localhost:{port}/ok/10/a.mp3"),
            "not in SOURCE_HOSTS",
        ),
        (
            format!("http://u:p@127.0.0.1:{port}/ok/10/a.mp3"),
            "credentials",
        ),
        (
            "https://evil.example/a.mp3".to_owned(),
            "not in SOURCE_HOSTS",
        ),
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "not in SOURCE_HOSTS",
        ),
        ("ftp://127.0.0.1/a.mp3".to_owned(), "scheme"),
    ];
    for (url, reason) in cases {
        let asset = kit.asset_at(&url).await;
        assert_refused(&kit, &asset, reason).await;
    }
    assert_eq!(kit.server.total_hits(), 0);
}

#[tokio::test]
async fn redirects_are_followed_and_checked_hop_by_hop() {
    let kit = Kit::new().await;
    let port = kit.server.addr().port();
    // `localhost` reaches the same server, so a request there would be counted.
    kit.server.redirect(
        "/r/refused.mp3",
        &format!("http://localhost:{port}/ok/10/target.mp3"),
    );
    kit.server.redirect(
        "/r/metadata.mp3",
        "http://169.254.169.254/latest/meta-data/",
    );
    kit.server.redirect("/r/fine.mp3", "/r/fine-2.mp3");
    kit.server.redirect("/r/fine-2.mp3", "/ok/100/fine.mp3");
    kit.server.redirect("/r/loop.mp3", "/r/loop.mp3");

    for (path, reason) in [
        ("/r/refused.mp3", "not in SOURCE_HOSTS"),
        ("/r/metadata.mp3", "not in SOURCE_HOSTS"),
    ] {
        let asset = kit.asset(path).await;
        assert_refused(&kit, &asset, reason).await;
    }
    assert_eq!(kit.server.hits("/ok/10/target.mp3"), 0);

    let fine = kit.asset("/r/fine.mp3").await;
    let outcome = kit.engine.copy(&fine, None).await.expect("copy");
    assert!(
        matches!(outcome, CopyOutcome::Stored { size: 100, .. }),
        "{outcome:?}"
    );

    let looping = kit.asset("/r/loop.mp3").await;
    let outcome = kit.engine.copy(&looping, None).await.expect("copy");
    assert!(
        matches!(&outcome, CopyOutcome::Failed { reason, .. } if reason.contains("redirects")),
        "{outcome:?}"
    );
    assert_eq!(
        kit.server.hits("/r/loop.mp3"),
        4,
        "first request + 3 redirects"
    );
}

/// Answers `first` to the first lookup and `then` to every later one.
struct Rebinding {
    calls: AtomicUsize,
    first: IpAddr,
    then: IpAddr,
}

impl Lookup for Rebinding {
    fn lookup(&self, _host: String) -> LookupFuture {
        let ip = if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            self.first
        } else {
            self.then
        };
        Box::pin(async move { Ok(vec![ip]) })
    }
}

fn lookup(first: &str, then: &str) -> Arc<Rebinding> {
    Arc::new(Rebinding {
        calls: AtomicUsize::new(0),
        first: first.parse().expect("ip"),
        then: then.parse().expect("ip"),
    })
}

#[tokio::test]
async fn an_allowed_name_resolving_to_a_private_address_is_refused() {
    let dns = lookup("10.0.0.8", "10.0.0.8");
    let kit = Kit::builder()
        .hosts(&["lalals.s3.amazonaws.com"])
        .guard(move |g| g.with_lookup(dns))
        .build()
        .await;
    let asset = kit
        .asset_at("https://lalals.s3.amazonaws.com/conversions/x.mp3?X-Amz-Signature=s")
        .await;
    assert_refused(&kit, &asset, "not a public address").await;
}

#[tokio::test]
async fn a_name_rebound_after_the_check_is_refused_at_connect_time() {
    let dns = lookup("52.217.1.1", "127.0.0.1");
    let kit = Kit::builder()
        .hosts(&["lalals.s3.amazonaws.com"])
        .guard(move |g| g.with_lookup(dns))
        .build()
        .await;
    let asset = kit
        .asset_at("https://lalals.s3.amazonaws.com/conversions/y.mp3")
        .await;
    assert_refused(&kit, &asset, "127.0.0.1, which is not a public address").await;
}

#[tokio::test]
async fn localhost_named_explicitly_is_allowed_over_plain_http() {
    let kit = Kit::builder().hosts(&["localhost"]).build().await;
    let port = kit.server.addr().port();
    let asset = kit
        .asset_at(&format!("http://localhost:{port}/ok/1234/l.mp3"))
        .await;
    let outcome = kit.engine.copy(&asset, None).await.expect("copy");
    assert!(
        matches!(outcome, CopyOutcome::Stored { size: 1234, .. }),
        "{outcome:?}"
    );
}
