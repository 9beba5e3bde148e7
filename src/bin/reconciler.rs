//! The reconciler function, run on a schedule: catch up on callbacks that never came.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use musicgpt_webhook::lambda::logs;
use musicgpt_webhook::wiring::App;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    logs::init();
    let schedule = &App::from_env().await?.schedule()?;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        schedule.handle(event).await.map_err(Error::from)
    }))
    .await
}
