//! The copier function: the table's DynamoDB stream -> copy newly PENDING assets into S3.

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use musicgpt_webhook::lambda::logs;
use musicgpt_webhook::lambda::metrics::Metrics;
use musicgpt_webhook::wiring::App;

#[tokio::main]
async fn main() -> Result<(), Error> {
    logs::init();
    let copier = &App::from_env().await?.stream_copier()?;
    let metrics = Metrics::init("copier");
    run(service_fn(move |event: LambdaEvent<Event>| async move {
        let handled = copier.handle(event).await;
        metrics.flush();
        handled.map_err(Error::from)
    }))
    .await
}
