//! The webhook function: API Gateway / function URL -> record the callback (and, with
//! `COPY_MODE=inline`, copy its files before answering); with events on, announce what the
//! task owes; `GET /tasks/{task_id}` and `GET /tasks` are the read API.

use std::sync::Arc;

use lambda_http::{Error, Request, run, service_fn};
use musicgpt_webhook::config::CopyMode;
use musicgpt_webhook::lambda::http::{AfterRecord, Webhook};
use musicgpt_webhook::lambda::inline::InlineCopy;
use musicgpt_webhook::lambda::logs;
use musicgpt_webhook::lambda::metrics::Metrics;
use musicgpt_webhook::lambda::read_api::ReadRoutes;
use musicgpt_webhook::wiring::App;

#[tokio::main]
async fn main() -> Result<(), Error> {
    logs::init();
    let app = App::from_env().await?;
    let ingest = app.ingest()?;
    let read: Arc<dyn ReadRoutes> = Arc::new(app.read_api()?);
    // With events on, the recorder announces each task after its callback (app::record).
    match app.config.copy_mode {
        CopyMode::Stream => serve(Webhook::new(ingest), read).await,
        CopyMode::Inline => {
            let inline = InlineCopy::new(app.copy_engine()?);
            serve(Webhook::with_follow_up(ingest, inline), read).await
        }
    }
}

async fn serve<T, A>(webhook: Webhook<T, A>, read: Arc<dyn ReadRoutes>) -> Result<(), Error>
where
    T: musicgpt_webhook::app::ports::TaskStore,
    A: AfterRecord,
{
    let webhook = &webhook.with_read_api(read);
    let metrics = Metrics::init("webhook");
    run(service_fn(move |request: Request| async move {
        let response = webhook.handle(request).await;
        metrics.flush();
        Ok::<_, Error>(response)
    }))
    .await
}
