//! What the copy tests share: a table, a bucket and an audio server per test, an engine with
//! short timeouts wired to them, and asset items recorded the way the webhook records them.
//! Needs `mod support;` and `mod audio_server;` (from `support/audio_server.rs`) beside it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use musicgpt_webhook::adapters::AwsPorts;
use musicgpt_webhook::adapters::dynamodb::DynamoTable;
use musicgpt_webhook::adapters::s3::S3Sink;
use musicgpt_webhook::adapters::source::{HttpSource, SourceGuard, SourceOptions};
use musicgpt_webhook::app::copy::CopyEngine;
use musicgpt_webhook::app::ports::AssetStore;
use musicgpt_webhook::app::record::Recorder;
use musicgpt_webhook::domain::asset::AssetItem;
use musicgpt_webhook::domain::callback::Callback;
use musicgpt_webhook::domain::keys::AssetKey;
use musicgpt_webhook::domain::keys::KeyPrefix;
use musicgpt_webhook::domain::retry::RetryPolicy;
use musicgpt_webhook::domain::token::WebhookTokens;
use musicgpt_webhook::lambda::http::Ingest;
use sha2::{Digest, Sha256};

use super::audio_server::AudioServer;
use super::support;

pub const TOKEN: &str = "test-token-0123456789abcdef";
pub const PREFIX: &str = "music/";

/// Short enough for a fast suite, long enough for a loaded 2-core machine.
pub fn fast_options() -> SourceOptions {
    SourceOptions {
        connect_timeout: Duration::from_millis(500),
        read_timeout: Duration::from_secs(1),
        max_redirects: 3,
        max_bytes: 64 * 1024 * 1024,
    }
}

/// Retries due at once, so a test can run every attempt back to back.
pub fn fast_policy(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        base_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
        // The audio server's 404s are meant: believed at once.
        not_found_grace: Duration::ZERO,
        lease: Duration::from_secs(900),
        ..RetryPolicy::with_max_attempts(max_attempts)
    }
}

pub struct Kit {
    pub table: String,
    pub bucket: String,
    pub server: AudioServer,
    pub engine: CopyEngine<AwsPorts>,
    pub ingest: Ingest<DynamoTable>,
    pub s3: aws_sdk_s3::Client,
}

pub struct KitBuilder {
    hosts: Vec<String>,
    options: SourceOptions,
    policy: RetryPolicy,
    guard: Option<Box<dyn FnOnce(SourceGuard) -> SourceGuard>>,
}

impl KitBuilder {
    pub fn hosts(mut self, hosts: &[&str]) -> Self {
        self.hosts = hosts.iter().map(|h| (*h).to_owned()).collect();
        self
    }

    pub fn options(mut self, options: SourceOptions) -> Self {
        self.options = options;
        self
    }

    pub fn policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn guard(mut self, adjust: impl FnOnce(SourceGuard) -> SourceGuard + 'static) -> Self {
        self.guard = Some(Box::new(adjust));
        self
    }

    pub async fn build(self) -> Kit {
        let (table, bucket, server) = tokio::join!(
            support::fresh_table(),
            support::fresh_bucket(),
            AudioServer::start()
        );
        let mut guard = SourceGuard::new(&self.hosts).expect("valid test hosts");
        if let Some(adjust) = self.guard {
            guard = adjust(guard);
        }
        let s3 = support::s3().await;
        let dynamo = support::dynamo().await;
        let engine = CopyEngine::<AwsPorts>::new(
            DynamoTable::new(dynamo.clone(), &table),
            HttpSource::new(guard, self.options).expect("source client"),
            S3Sink::new(s3.clone(), &bucket),
            self.policy,
        );
        let recorder = Recorder::<DynamoTable>::new(
            DynamoTable::new(dynamo, &table),
            KeyPrefix::parse(PREFIX).expect("test prefix"),
            Duration::from_secs(86_400),
        );
        let ingest =
            Ingest::<DynamoTable>::new(WebhookTokens::parse(TOKEN).expect("test token"), recorder);
        Kit {
            table,
            bucket,
            server,
            engine,
            ingest,
            s3,
        }
    }
}

impl Kit {
    /// Allows the audio server (`127.0.0.1`), 3 attempts, short timeouts.
    pub fn builder() -> KitBuilder {
        KitBuilder {
            hosts: vec!["127.0.0.1".to_owned()],
            options: fast_options(),
            policy: fast_policy(3),
            guard: None,
        }
    }

    pub async fn new() -> Kit {
        Kit::builder().build().await
    }

    /// Records a Music AI audio callback for a new task whose mp3 is `path` on the audio
    /// server, as the webhook does, and returns its asset's key.
    pub async fn asset(&self, path: &str) -> AssetKey {
        self.asset_at(&self.server.url(path)).await
    }

    /// The same with any URL.
    pub async fn asset_at(&self, url: &str) -> AssetKey {
        let task = next_id("task");
        let conversion = next_id("conv");
        let body = serde_json::json!({
            "success": true,
            "conversion_type": "Music AI",
            "task_id": task,
            "conversion_id": conversion,
            "conversion_path": url,
            "title": "test",
        });
        let callback =
            Callback::parse(body.to_string().as_bytes(), None).expect("valid test callback");
        assert_eq!(callback.sources.len(), 1, "one file in the test callback");
        self.ingest
            .recorder()
            .record(&callback, now_secs())
            .await
            .expect("record the callback");
        let sk = callback.sources[0].asset.sort_key(
            callback
                .task_id
                .as_ref()
                .expect("the test callback has a task"),
        );
        AssetKey {
            pk: format!("TASK#{task}"),
            sk,
        }
    }

    pub async fn item(&self, asset: &AssetKey) -> AssetItem {
        self.engine
            .assets()
            .get(asset)
            .await
            .expect("read the asset item")
            .expect("the asset item exists")
    }

    /// The raw item, for attributes the engine's view does not carry.
    pub async fn raw_item(
        &self,
        asset: &AssetKey,
    ) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
        support::dynamo()
            .await
            .get_item()
            .table_name(&self.table)
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(asset.pk.clone()),
            )
            .key(
                "sk",
                aws_sdk_dynamodb::types::AttributeValue::S(asset.sk.clone()),
            )
            .consistent_read(true)
            .send()
            .await
            .expect("get the asset item")
            .item
            .expect("the asset item exists")
    }

    /// The stored object's bytes hashed, and its head.
    pub async fn object(&self, key: &str) -> (String, u64, HeadObjectOutput) {
        let head = self
            .s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .expect("the object exists");
        let mut body = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .expect("get the object")
            .body;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body.try_next().await.expect("read the object") {
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        (hex::encode(hasher.finalize()), size, head)
    }

    /// Overwrites the asset item's state, as a lost write-back would leave it.
    pub async fn set_state(&self, asset: &AssetKey, state: &str) {
        use aws_sdk_dynamodb::types::AttributeValue as Value;
        support::dynamo()
            .await
            .update_item()
            .table_name(&self.table)
            .key("pk", Value::S(asset.pk.clone()))
            .key("sk", Value::S(asset.sk.clone()))
            .update_expression("SET #s = :s")
            .expression_attribute_names("#s", "state")
            .expression_attribute_values(":s", Value::S(state.to_owned()))
            .send()
            .await
            .expect("set the item's state");
    }

    /// The object's `sha256` tag, if it has one.
    pub async fn sha256_tag(&self, key: &str) -> Option<String> {
        self.s3
            .get_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .expect("get the object's tags")
            .tag_set()
            .iter()
            .find(|tag| tag.key() == "sha256")
            .map(|tag| tag.value().to_owned())
    }

    pub async fn object_exists(&self, key: &str) -> bool {
        self.s3
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .is_ok()
    }

    /// Multipart uploads started and neither completed nor aborted.
    pub async fn open_uploads(&self) -> usize {
        self.s3
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .send()
            .await
            .expect("list multipart uploads")
            .uploads()
            .len()
    }

    /// Keeps every version of every object, so that a second upload shows.
    #[allow(dead_code)]
    pub async fn keep_versions(&self) {
        self.s3
            .put_bucket_versioning()
            .bucket(&self.bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .expect("enable versioning");
    }

    /// How many versions of objects the bucket holds.
    #[allow(dead_code)]
    pub async fn versions(&self) -> usize {
        self.s3
            .list_object_versions()
            .bucket(&self.bucket)
            .send()
            .await
            .expect("list versions")
            .versions()
            .len()
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

fn next_id(kind: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{kind}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
