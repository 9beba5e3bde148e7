//! `musicgpt-webhook submit music-ai ...`: submit a conversion and register its task.

use std::process::ExitCode;

use musicgpt_webhook::Error;
use musicgpt_webhook::app::ports::{Clock, SystemClock};
use musicgpt_webhook::app::submit;
use musicgpt_webhook::cli::{self, Command};
use musicgpt_webhook::wiring::App;

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
    let app = App::from_env().await?;
    let api = app.require_api("submit")?;
    let registration =
        submit::submit_music_ai(&api, &app.recorder(), &request, SystemClock.now_secs()).await?;
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
