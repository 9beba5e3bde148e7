//! The copier function: the table's DynamoDB stream -> copy newly PENDING assets into S3.

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use musicgpt_webhook::lambda::logs;
use musicgpt_webhook::wiring::App;

#[tokio::main]
async fn main() -> Result<(), Error> {
    logs::init();
    let copier = &App::from_env().await?.stream_copier()?;
    run(service_fn(move |event: LambdaEvent<Event>| async move {
        copier.handle(event).await.map_err(Error::from)
    }))
    .await
}
