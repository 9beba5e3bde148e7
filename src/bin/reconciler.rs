//! The reconciler function, run on a schedule: catch up on callbacks that never came.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use musicgpt_webhook::config::{self, Config, ProcessEnv};
use musicgpt_webhook::copy::CopyEngine;
use musicgpt_webhook::ingest::Recorder;
use musicgpt_webhook::musicgpt::MusicGptApi;
use musicgpt_webhook::reconcile::Reconciler;
use musicgpt_webhook::store::TaskStore;
use musicgpt_webhook::{aws, telemetry};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let musicgpt = config
        .musicgpt
        .clone()
        .ok_or("MUSICGPT_API_KEY is required by the reconciler")?;
    let sdk = aws::load_sdk_config().await;
    let store = TaskStore::new(aws::dynamodb_client(&sdk), &config.table_name);
    let recorder = Recorder::new(store, config.key_prefix.clone(), config.callback_retention);
    let api = MusicGptApi::new(&musicgpt.api_url, &musicgpt.api_key)?;
    let engine = CopyEngine::from_config(&config, &sdk)?;
    let settings = config::reconcile_settings(&ProcessEnv)?;
    let reconciler = &Reconciler::new(recorder, api, settings).with_copier(engine);
    run(service_fn(move |_: LambdaEvent<Value>| async move {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
        let report = reconciler.run(now).await?;
        Ok::<_, Error>(serde_json::json!({ "due": report.due, "looked_up": report.looked_up, "recorded": report.recorded, "copied": report.copied, "deferred": report.deferred }))
    }))
    .await
}
