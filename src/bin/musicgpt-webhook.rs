//! `musicgpt-webhook submit music-ai ...`: submit a conversion and register its task.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use musicgpt_webhook::cli::{self, Command};
use musicgpt_webhook::config::Config;
use musicgpt_webhook::ingest::Recorder;
use musicgpt_webhook::musicgpt::MusicGptApi;
use musicgpt_webhook::store::TaskStore;
use musicgpt_webhook::{Error, aws, submit};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Command::SubmitMusicAi(request) = cli::parse(&args, std::env::var("WEBHOOK_URL").ok())?
    else {
        println!("{}", cli::USAGE);
        return Ok(());
    };
    let config = Config::from_env()?;
    let musicgpt = config
        .musicgpt
        .clone()
        .ok_or_else(|| Error::Config("MUSICGPT_API_KEY is required".into()))?;
    let api = MusicGptApi::new(&musicgpt.api_url, &musicgpt.api_key)?;
    let sdk = aws::load_sdk_config().await;
    let store = TaskStore::new(aws::dynamodb_client(&sdk), &config.table_name);
    let recorder = Recorder::new(store, config.key_prefix.clone(), config.callback_retention);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let registration = submit::submit_music_ai(&api, &recorder, &request, now).await?;
    let s = &registration.submitted;
    println!(
        "{}",
        serde_json::json!({
            "task_id": s.task_id,
            "conversion_id_1": s.conversion_id_1,
            "conversion_id_2": s.conversion_id_2,
            "eta_seconds": s.eta,
            "registered": registration.outcome.label(),
        })
    );
    Ok(())
}
