//! The webhook function: API Gateway / function URL -> record the callback (and, with
//! `COPY_MODE=inline`, copy its files before answering).

use lambda_http::{Error, Request, run, service_fn};
use musicgpt_webhook::config::CopyMode;
use musicgpt_webhook::lambda::http::{AfterRecord, Webhook};
use musicgpt_webhook::lambda::inline::InlineCopy;
use musicgpt_webhook::lambda::logs;
use musicgpt_webhook::wiring::App;

#[tokio::main]
async fn main() -> Result<(), Error> {
    logs::init();
    let app = App::from_env().await?;
    let ingest = app.ingest()?;
    match app.config.copy_mode {
        CopyMode::Stream => serve(Webhook::new(ingest)).await,
        CopyMode::Inline => {
            let inline = InlineCopy::new(app.copy_engine()?);
            serve(Webhook::with_follow_up(ingest, inline)).await
        }
    }
}

async fn serve<T, A>(webhook: Webhook<T, A>) -> Result<(), Error>
where
    T: musicgpt_webhook::app::ports::TaskStore,
    A: AfterRecord,
{
    let webhook = &webhook;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(webhook.handle(request).await)
    }))
    .await
}
