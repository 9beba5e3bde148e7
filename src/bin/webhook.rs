//! The webhook function: API Gateway / function URL -> record the callback (and, with
//! `COPY_MODE=inline`, copy its files before answering).

use lambda_http::{Error, Request, run, service_fn};
use musicgpt_webhook::config::{self, Config, CopyMode, ProcessEnv};
use musicgpt_webhook::copy::{CopyEngine, InlineCopy};
use musicgpt_webhook::http::{AfterRecord, Webhook};
use musicgpt_webhook::ingest::{Ingest, Recorder};
use musicgpt_webhook::store::TaskStore;
use musicgpt_webhook::{aws, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let tokens = config::webhook_tokens(&ProcessEnv)?;
    let sdk = aws::load_sdk_config().await;
    let store = TaskStore::new(aws::dynamodb_client(&sdk), &config.table_name);
    let recorder = Recorder::new(store, config.key_prefix.clone(), config.callback_retention);
    let ingest = Ingest::new(tokens, recorder);
    match config.copy_mode {
        CopyMode::Stream => serve(Webhook::new(ingest)).await,
        CopyMode::Inline => {
            let inline = InlineCopy::new(CopyEngine::from_config(&config, &sdk)?);
            serve(Webhook::with_follow_up(ingest, inline)).await
        }
    }
}

async fn serve<A: AfterRecord>(webhook: Webhook<A>) -> Result<(), Error> {
    let webhook = &webhook;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(webhook.handle(request).await)
    }))
    .await
}
