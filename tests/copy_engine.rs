//! The copy engine against moto's S3 and DynamoDB and a local audio server: sizes, failures,
//! retries, leases, and the bytes in S3.
#[path = "support/audio_server.rs"]
mod audio_server;
#[path = "support/copy_kit.rs"]
mod copy_kit;
mod support;

use std::time::Duration;

use copy_kit::{Kit, fast_options, now_secs};
use musicgpt_webhook::adapters::s3::READ_WHOLE_MAX;
use musicgpt_webhook::app::copy::CopyOutcome;
use musicgpt_webhook::domain::keys::AssetKey;
use musicgpt_webhook::domain::status::AssetState;
use tokio::time::Instant;

const MIB: u64 = 1024 * 1024;

/// Copies `path` (served as `name` with `len` bytes) and checks everything the engine
/// promises about a stored asset.
async fn copies_exactly(kit: &Kit, path: &str, name: &str, len: u64, content_type: &str) {
    let asset = kit.asset(path).await;
    let outcome = kit.engine.copy(&asset, None).await.expect("copy");
    let expected = audio_server::sha256(name, len);
    assert_eq!(
        outcome,
        CopyOutcome::Stored {
            size: len,
            sha256: expected.clone()
        },
        "{path}"
    );
    let item = kit.raw_item(&asset).await;
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let number = |name: &str| item.get(name).and_then(|v| v.as_n().ok()).cloned();
    assert_eq!(text("state").as_deref(), Some("STORED"));
    assert_eq!(text("sha256"), Some(expected.clone()));
    assert_eq!(number("size_bytes"), Some(len.to_string()));
    assert_eq!(text("bucket"), Some(kit.bucket.clone()));
    let etag = text("etag").expect("etag");
    // A file of known length goes up as one PutObject up to 16 MiB; one of unknown length is
    // read whole first, and so goes up as one only up to a part (8 MiB). Multipart ETags end
    // in the number of parts.
    let known = !path.starts_with("/chunked/");
    let multipart = len > if known { 16 * MIB } else { 8 * MIB };
    assert_eq!(etag.contains('-'), multipart, "{path}: ETag {etag}");
    assert!(number("stored_at").is_some());
    assert!(!item.contains_key("lease_owner") && !item.contains_key("last_error"));
    let key = text("s3_key").expect("s3_key");
    assert!(key.starts_with(copy_kit::PREFIX), "{key}");
    let (sha, size, head) = kit.object(&key).await;
    assert_eq!(
        (sha, size),
        (expected.clone(), len),
        "bytes in S3 for {path}"
    );
    assert_eq!(head.content_type(), Some(content_type));
    assert_eq!(kit.sha256_tag(&key).await, Some(expected.clone()), "tag");
    let meta = head.metadata().expect("metadata");
    // Metadata is fixed before the hash is known, unless the body was read whole first: a
    // small one of known length, or one of unknown length within a part.
    let read_whole = !multipart && (!known || len <= READ_WHOLE_MAX as u64);
    assert_eq!(
        meta.get("sha256"),
        read_whole.then_some(&expected),
        "{path}"
    );
    assert_eq!(
        meta.get("task-id").map(|t| format!("TASK#{t}")),
        Some(asset.pk.clone())
    );
    assert!(meta.contains_key("conversion-id"));
    let source = meta.get("source-url").expect("source-url");
    assert!(
        source.starts_with("http://127.0.0.1:") && !source.contains('?'),
        "{source}"
    );
    assert_eq!(kit.open_uploads().await, 0);
    assert_eq!(kit.server.hits(path), 1);
}

#[tokio::test]
async fn empty_and_one_byte_files_are_single_puts() {
    let kit = Kit::new().await;
    copies_exactly(&kit, "/ok/0/empty.mp3", "empty.mp3", 0, "audio/mpeg").await;
    copies_exactly(&kit, "/ok/1/one.mp3", "one.mp3", 1, "audio/mpeg").await;
}

/// Copies a file of `boundary` bytes and one of a byte more, both served as `/{how}/...`.
async fn copies_either_side_of(kit: &Kit, how: &str, name: &str, boundary: u64) {
    for len in [boundary, boundary + 1] {
        let path = format!("/{how}/{len}/{name}");
        copies_exactly(kit, &path, name, len, "audio/mpeg").await;
    }
}

#[tokio::test]
async fn small_files_of_known_length_go_up_with_their_hash_in_one_request() {
    let kit = Kit::new().await;
    copies_either_side_of(&kit, "ok", "small.mp3", READ_WHOLE_MAX as u64).await;
}

#[tokio::test]
async fn sixteen_mib_of_known_length_are_one_put_and_one_more_byte_is_multipart() {
    let kit = Kit::new().await;
    copies_either_side_of(&kit, "ok", "sixteen.mp3", 16 * MIB).await;
}

#[tokio::test]
async fn one_part_of_unknown_length_is_one_put_and_one_more_byte_is_multipart() {
    let kit = Kit::new().await;
    copies_either_side_of(&kit, "chunked", "eight.mp3", 8 * MIB).await;
}

#[tokio::test]
async fn fifty_mib_go_up_in_parts() {
    let kit = Kit::new().await;
    let len = 50 * MIB;
    let path = format!("/ok/{len}/fifty.wav");
    copies_exactly(&kit, &path, "fifty.wav", len, "audio/mpeg").await;
}

#[tokio::test]
async fn chunked_bodies_without_length_are_copied() {
    let kit = Kit::new().await;
    copies_exactly(
        &kit,
        "/chunked/1000/small.mp3",
        "small.mp3",
        1000,
        "audio/mpeg",
    )
    .await;
    let len = 20 * MIB;
    let path = format!("/chunked/{len}/big.mp3");
    copies_exactly(&kit, &path, "big.mp3", len, "audio/mpeg").await;
}

#[tokio::test]
async fn content_type_falls_back_to_the_extension_and_queries_stay_out_of_metadata() {
    let kit = Kit::new().await;
    copies_exactly(&kit, "/notype/100/x.flac", "x.flac", 100, "audio/flac").await;
    let path = "/ok/100/q.mp3?X-Amz-Signature=secret";
    copies_exactly(
        &kit,
        path,
        "q.mp3?X-Amz-Signature=secret",
        100,
        "audio/mpeg",
    )
    .await;
}

async fn assert_retry(kit: &Kit, asset: &AssetKey, attempts: u32, error_part: &str) {
    let item = kit.item(asset).await;
    assert_eq!(item.state, AssetState::Pending);
    assert_eq!(item.attempts, attempts);
    let error = item.last_error.unwrap_or_default();
    assert!(error.contains(error_part), "{error:?} lacks {error_part:?}");
    assert!(item.next_try_at.is_some_and(|at| at <= now_secs() + 1));
    assert!(item.lease_owner.is_none());
    assert!(!kit.object_exists(&item.s3_key).await);
    assert_eq!(kit.open_uploads().await, 0);
}

#[tokio::test]
async fn server_errors_are_retried_then_fail_after_max_attempts() {
    let kit = Kit::new().await;
    let path = "/status/500/a.mp3";
    let asset = kit.asset(path).await;
    for attempt in 1..=2 {
        let outcome = kit.engine.copy(&asset, None).await.expect("copy");
        assert!(
            matches!(outcome, CopyOutcome::RetryAt { attempts, .. } if attempts == attempt),
            "{outcome:?}"
        );
        assert_retry(&kit, &asset, attempt, "500").await;
    }
    let outcome = kit.engine.copy(&asset, None).await.expect("copy");
    assert!(
        matches!(outcome, CopyOutcome::Failed { attempts: 3, .. }),
        "{outcome:?}"
    );
    let item = kit.item(&asset).await;
    assert_eq!((item.state.as_str(), item.attempts), ("FAILED", 3));
    assert!(item.last_error.unwrap_or_default().contains("500"));
    let again = kit.engine.copy(&asset, None).await.expect("copy");
    assert_eq!(again, CopyOutcome::AlreadyFailed);
    assert_eq!(kit.server.hits(path), 3);
}

#[tokio::test]
async fn a_passing_failure_is_retried_until_stored() {
    let kit = Kit::new().await;
    let path = "/flaky/2/5000/f.mp3";
    let asset = kit.asset(path).await;
    for _ in 0..2 {
        let outcome = kit.engine.copy(&asset, None).await.expect("copy");
        assert!(
            matches!(outcome, CopyOutcome::RetryAt { .. }),
            "{outcome:?}"
        );
    }
    let outcome = kit.engine.copy(&asset, None).await.expect("copy");
    assert!(
        matches!(outcome, CopyOutcome::Stored { size: 5000, .. }),
        "{outcome:?}"
    );
    let item = kit.item(&asset).await;
    assert_eq!((item.state.as_str(), item.attempts), ("STORED", 2));
}

#[tokio::test]
async fn backoff_makes_the_asset_wait() {
    let kit = Kit::builder()
        .policy(musicgpt_webhook::domain::retry::RetryPolicy {
            base_delay: Duration::from_secs(30),
            max_delay: Duration::from_secs(300),
            ..copy_kit::fast_policy(5)
        })
        .build()
        .await;
    let asset = kit.asset("/status/503/b.mp3").await;
    let before = now_secs();
    let outcome = kit.engine.copy(&asset, None).await.expect("copy");
    let CopyOutcome::RetryAt { next_try_at, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert!((before + 30..=now_secs() + 30).contains(&next_try_at));
    let outcome = kit.engine.copy(&asset, None).await.expect("copy");
    assert_eq!(outcome, CopyOutcome::NotDue { next_try_at });
    assert_eq!(kit.server.hits("/status/503/b.mp3"), 1);
}

#[tokio::test]
async fn answers_that_cannot_change_fail_at_once() {
    let kit = Kit::new().await;
    let asset = kit.asset("/status/404/gone.mp3").await;
    let outcome = kit.engine.copy(&asset, None).await.expect("copy");
    assert!(
        matches!(outcome, CopyOutcome::Failed { attempts: 1, .. }),
        "{outcome:?}"
    );
    let item = kit.item(&asset).await;
    assert_eq!(item.state, AssetState::Failed);
    assert!(item.last_error.unwrap_or_default().contains("404"));
}

#[tokio::test]
async fn a_reset_mid_body_leaves_nothing_behind() {
    let kit = Kit::new().await;
    let small = kit.asset("/reset/1048576/r.mp3").await;
    let large = kit.asset("/reset/20971520/r.mp3").await;
    for asset in [&small, &large] {
        let outcome = kit.engine.copy(asset, None).await.expect("copy");
        assert!(
            matches!(outcome, CopyOutcome::RetryAt { .. }),
            "{outcome:?}"
        );
        assert_retry(&kit, asset, 1, "body").await;
    }
}

#[tokio::test]
async fn a_body_shorter_than_its_length_is_not_stored() {
    let kit = Kit::new().await;
    let small = kit.asset("/short/1048576/s.mp3").await;
    let large = kit.asset("/short/20971520/s.mp3").await;
    for asset in [&small, &large] {
        let outcome = kit.engine.copy(asset, None).await.expect("copy");
        assert!(
            matches!(outcome, CopyOutcome::RetryAt { .. }),
            "{outcome:?}"
        );
        assert_retry(&kit, asset, 1, "body").await;
    }
}

#[tokio::test]
async fn sources_slower_than_the_read_timeout_time_out() {
    let kit = Kit::new().await;
    let slow_headers = kit.asset("/slow/3000/100/h.mp3").await;
    let stalled_body = kit.asset("/stall/3000/20971520/b.mp3").await;
    let started = Instant::now();
    let (a, b) = tokio::join!(
        kit.engine.copy(&slow_headers, None),
        kit.engine.copy(&stalled_body, None)
    );
    for outcome in [a.expect("copy"), b.expect("copy")] {
        assert!(
            matches!(outcome, CopyOutcome::RetryAt { .. }),
            "{outcome:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_millis(2900));
    assert_retry(&kit, &slow_headers, 1, "timed out").await;
    assert_retry(&kit, &stalled_body, 1, "").await;
}

#[tokio::test]
async fn files_over_the_size_cap_fail_at_once() {
    let kit = Kit::builder()
        .options(musicgpt_webhook::adapters::source::SourceOptions {
            max_bytes: 10 * MIB,
            ..fast_options()
        })
        .build()
        .await;
    let declared = kit.asset("/ok/20971520/big.mp3").await;
    let chunked = kit.asset("/chunked/20971520/big.mp3").await;
    for asset in [&declared, &chunked] {
        let outcome = kit.engine.copy(asset, None).await.expect("copy");
        assert!(
            matches!(outcome, CopyOutcome::Failed { attempts: 1, .. }),
            "{outcome:?}"
        );
        let item = kit.item(asset).await;
        assert!(
            item.last_error
                .unwrap_or_default()
                .contains("MAX_ASSET_BYTES")
        );
        assert!(!kit.object_exists(&item.s3_key).await);
    }
    assert_eq!(kit.open_uploads().await, 0);
}

#[tokio::test]
async fn a_stored_asset_is_never_copied_again() {
    let kit = Kit::new().await;
    let path = "/ok/1000/once.mp3";
    let asset = kit.asset(path).await;
    let first = kit.engine.copy(&asset, None).await.expect("copy");
    assert!(matches!(first, CopyOutcome::Stored { .. }));
    for _ in 0..3 {
        let again = kit.engine.copy(&asset, None).await.expect("copy");
        assert_eq!(again, CopyOutcome::AlreadyStored);
    }
    assert_eq!(kit.server.hits(path), 1);
    let missing = AssetKey {
        pk: "TASK#nope".into(),
        sk: "ASSET#nope#mp3".into(),
    };
    assert_eq!(
        kit.engine.copy(&missing, None).await.expect("copy"),
        CopyOutcome::Missing
    );
}

#[tokio::test]
async fn twenty_concurrent_attempts_upload_once() {
    let kit = Kit::new().await;
    kit.keep_versions().await;
    let path = "/ok/3000000/race.mp3";
    let asset = kit.asset(path).await;
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let engine = kit.engine.clone();
        let asset = asset.clone();
        attempts.spawn(async move { engine.copy(&asset, None).await.expect("copy") });
    }
    let mut stored = 0;
    while let Some(outcome) = attempts.join_next().await {
        match outcome.expect("attempt finished") {
            CopyOutcome::Stored { .. } => stored += 1,
            CopyOutcome::Busy { .. } | CopyOutcome::AlreadyStored => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(stored, 1);
    assert_eq!(kit.server.hits(path), 1);
    assert_eq!(kit.versions().await, 1, "one upload, one version");
}

#[tokio::test]
async fn a_live_lease_blocks_and_an_expired_one_is_taken_over() {
    let kit = Kit::new().await;
    let asset = kit.asset("/ok/100/lease.mp3").await;
    let set_lease = |until: u64| {
        let asset = asset.clone();
        let table = kit.table.clone();
        async move {
            support::dynamo()
                .await
                .update_item()
                .table_name(table)
                .key("pk", aws_sdk_dynamodb::types::AttributeValue::S(asset.pk))
                .key("sk", aws_sdk_dynamodb::types::AttributeValue::S(asset.sk))
                .update_expression("SET lease_owner = :o, lease_until = :u")
                .expression_attribute_values(
                    ":o",
                    aws_sdk_dynamodb::types::AttributeValue::S("crashed-worker".into()),
                )
                .expression_attribute_values(
                    ":u",
                    aws_sdk_dynamodb::types::AttributeValue::N(until.to_string()),
                )
                .send()
                .await
                .expect("set a lease");
        }
    };
    let until = now_secs() + 600;
    set_lease(until).await;
    let outcome = kit.engine.copy(&asset, None).await.expect("copy");
    assert_eq!(outcome, CopyOutcome::Busy { lease_until: until });
    set_lease(now_secs() - 1).await;
    let outcome = kit.engine.copy(&asset, None).await.expect("copy");
    assert!(
        matches!(outcome, CopyOutcome::Stored { size: 100, .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn attempts_from_the_same_stream_image_upload_once_and_leave_no_parts() {
    // 20 MiB with a Content-Length: each attempt's multipart upload is created, and its parts
    // sent, while it claims.
    six_attempts_from_one_image(20_971_520).await;
}

#[tokio::test]
async fn attempts_from_the_same_stream_image_put_once() {
    // 10 MiB: one PutObject each, sent while it claims; the losers' never get their last bytes.
    six_attempts_from_one_image(10_485_760).await;
}

async fn six_attempts_from_one_image(len: u64) {
    let kit = Kit::new().await;
    kit.keep_versions().await;
    let path = format!("/ok/{len}/seen-race.wav");
    let asset = kit.asset(&path).await;
    let seen = kit.item(&asset).await;
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (engine, seen) = (kit.engine.clone(), seen.clone());
        attempts.spawn(async move { engine.copy_seen(&seen, None).await.expect("copy") });
    }
    let mut stored = Vec::new();
    while let Some(outcome) = attempts.join_next().await {
        match outcome.expect("attempt finished") {
            CopyOutcome::Stored { size, sha256 } => stored.push((size, sha256)),
            CopyOutcome::Busy { .. } | CopyOutcome::AlreadyStored => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        stored,
        vec![(len, audio_server::sha256("seen-race.wav", len))]
    );
    assert_eq!(kit.versions().await, 1, "one upload, one version");
    assert_eq!(
        kit.open_uploads().await,
        0,
        "the others' uploads were aborted"
    );
    let item = kit.item(&asset).await;
    assert_eq!((item.state, item.claims), (AssetState::Stored, 1));
}

#[tokio::test]
async fn running_out_of_time_releases_the_asset_without_counting_an_attempt() {
    let kit = Kit::builder()
        .options(musicgpt_webhook::adapters::source::SourceOptions {
            read_timeout: Duration::from_secs(10),
            ..fast_options()
        })
        .build()
        .await;
    // Half of 20 MiB arrives at once (one part uploaded), then the body stalls past the stop.
    let multipart = kit.asset("/stall/5000/20971520/t.mp3").await;
    let single = kit.asset("/trickle/20971520/t.mp3").await;
    let stop = Instant::now() + Duration::from_millis(1500);
    let (a, b) = tokio::join!(
        kit.engine.copy(&multipart, Some(stop)),
        kit.engine.copy(&single, Some(stop))
    );
    assert!(Instant::now() < stop + Duration::from_secs(2));
    for (asset, outcome) in [(&multipart, a), (&single, b)] {
        assert_eq!(outcome.expect("copy"), CopyOutcome::Interrupted);
        let item = kit.item(asset).await;
        assert_eq!((item.state.as_str(), item.attempts), ("PENDING", 0));
        assert!(item.lease_owner.is_none() && item.lease_until.is_none());
        assert!(!kit.object_exists(&item.s3_key).await);
    }
    assert_eq!(kit.open_uploads().await, 0);
}

#[tokio::test]
async fn a_lost_write_back_does_not_upload_the_file_again() {
    let kit = Kit::new().await;
    let asset = kit.asset("/ok/3000/lost-write-back").await;
    let first = kit.engine.copy(&asset, None).await.expect("copy");
    assert!(matches!(first, CopyOutcome::Stored { .. }), "{first:?}");
    // The upload finished but its STORED write-back was lost: the item is PENDING again.
    kit.set_state(&asset, "PENDING").await;
    let second = kit.engine.copy(&asset, None).await.expect("copy");
    assert_eq!(second, first, "the earlier copy is taken as it is");
    assert_eq!(
        kit.server.hits("/ok/3000/lost-write-back"),
        1,
        "downloaded once"
    );
    assert_eq!(kit.item(&asset).await.state, AssetState::Stored);
}

#[tokio::test]
async fn a_copy_whose_hash_tag_was_lost_is_hashed_back_not_uploaded_again() {
    let kit = Kit::new().await;
    let path = "/ok/9437184/lost-tag";
    let asset = kit.asset(path).await;
    let first = kit.engine.copy(&asset, None).await.expect("copy");
    let CopyOutcome::Stored { sha256, .. } = &first else {
        panic!("{first:?}")
    };
    let key = kit.raw_item(&asset).await["s3_key"]
        .as_s()
        .expect("s3_key")
        .clone();
    let (_, _, before) = kit.object(&key).await;
    // The multipart upload completed, then its tag write and the STORED write-back were lost.
    kit.s3
        .delete_object_tagging()
        .bucket(&kit.bucket)
        .key(&key)
        .send()
        .await
        .expect("drop the tag");
    kit.set_state(&asset, "PENDING").await;
    let second = kit.engine.copy(&asset, None).await.expect("copy");
    assert_eq!(second, first, "the earlier copy is hashed back");
    assert_eq!(kit.server.hits(path), 1, "downloaded once");
    assert_eq!(
        kit.sha256_tag(&key).await.as_ref(),
        Some(sha256),
        "tag restored"
    );
    let (_, _, after) = kit.object(&key).await;
    assert_eq!(
        after.e_tag(),
        before.e_tag(),
        "the object was not written again"
    );
    assert_eq!(kit.item(&asset).await.state, AssetState::Stored);
}
