//! The copier function: the table's DynamoDB stream -> copy newly PENDING assets into S3.

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use musicgpt_webhook::config::Config;
use musicgpt_webhook::copier::StreamCopier;
use musicgpt_webhook::copy::CopyEngine;
use musicgpt_webhook::{aws, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let sdk = aws::load_sdk_config().await;
    let copier = &StreamCopier::new(CopyEngine::from_config(&config, &sdk)?);
    run(service_fn(move |event: LambdaEvent<Event>| async move {
        copier.handle(event).await.map_err(Error::from)
    }))
    .await
}
