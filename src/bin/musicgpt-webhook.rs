//! `musicgpt-webhook submit <type> ...`, `by-id`, `by-user`, `completions`: submit a conversion
//! and register its task, look tasks up. Parsing and checks are in `cli`, the use cases in
//! `app`, the wiring in `wiring`.

use std::io::Write;
use std::process::ExitCode;

use musicgpt_webhook::Error;
use musicgpt_webhook::app::by_user::{ListOptions, list_by_user};
use musicgpt_webhook::app::ports::{Clock, MusicGpt, SystemClock};
use musicgpt_webhook::app::submit;
use musicgpt_webhook::cli::{self, Command};
use musicgpt_webhook::domain::api::Lookup;
use musicgpt_webhook::domain::by_user::{ByUserQuery, TimeWindow};
use musicgpt_webhook::domain::events::Settlement;
use musicgpt_webhook::domain::requests::SubmitRequest;
use musicgpt_webhook::wiring::{self, App};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&args, std::env::var("WEBHOOK_URL").ok()) {
        Ok(command) => command,
        // A usage mistake: the text says what and how.
        Err(Error::Config(text) | Error::InvalidRequest(text)) => {
            eprintln!("error: {text}");
            return ExitCode::from(2);
        }
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Tasks(tasks) = command {
        return match run_tasks(tasks).await {
            Ok(code) => code,
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::FAILURE
            }
        };
    }
    match run(command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `tasks show|list|wait`: the read API's answers, from the table. `wait` exits 0 when the
/// task completed, 3 when it failed, 4 when it had not settled in time.
async fn run_tasks(tasks: cli::Tasks) -> Result<ExitCode, Error> {
    let reader = App::from_env().await?.task_reader()?;
    match tasks {
        cli::Tasks::Show { task_id } => {
            match reader.show(&task_id, SystemClock.now_secs()).await? {
                Some(answer) => println!("{}", pretty(&answer.json)),
                None => {
                    eprintln!("error: no task {task_id} in the table");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        cli::Tasks::List { query } => println!("{}", pretty(&reader.list(&query).await?)),
        cli::Tasks::Wait {
            task_id,
            timeout,
            interval,
        } => {
            let until = std::time::Instant::now() + timeout;
            let mut said = String::new();
            loop {
                let answer = reader.show(&task_id, SystemClock.now_secs()).await?;
                let waiting = match &answer {
                    Some(a) => match &a.settlement {
                        Settlement::Completed => {
                            println!("{}", pretty(&a.json));
                            return Ok(ExitCode::SUCCESS);
                        }
                        Settlement::Failed(why) => {
                            println!("{}", pretty(&a.json));
                            eprintln!("task {task_id} failed: {why}");
                            return Ok(ExitCode::from(3));
                        }
                        Settlement::Open(why) => why.clone(),
                    },
                    None => "the task is not in the table yet".to_owned(),
                };
                if waiting != said {
                    eprintln!("waiting: {waiting}");
                    said = waiting;
                }
                if std::time::Instant::now() + interval > until {
                    if let Some(a) = &answer {
                        println!("{}", pretty(&a.json));
                    }
                    eprintln!(
                        "task {task_id} not settled after {}s: {said}",
                        timeout.as_secs()
                    );
                    return Ok(ExitCode::from(4));
                }
                tokio::time::sleep(interval).await;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

async fn run(command: Command) -> Result<(), Error> {
    match command {
        Command::Help(text) => println!("{}", text.trim_end()),
        // Handled by `run_tasks`, for its exit codes.
        Command::Tasks(tasks) => {
            run_tasks(tasks).await?;
        }
        Command::Replay(what) => {
            let operations = App::from_env().await?.operations();
            let (tasks, report) = match &what {
                cli::Replay::Task(task) => (1, operations.replay_task(task).await?),
                cli::Replay::Since(since) => operations.replay_since(*since).await?,
            };
            println!(
                "{}",
                json!({"tasks": tasks, "replayed": report.replayed, "recorded": report.recorded,
                       "duplicates": report.duplicates, "unreadable": report.unreadable})
            );
        }
        Command::Redrive(what) => {
            let operations = App::from_env().await?.operations();
            let redriven = match &what {
                cli::Redrive::Task(task) => operations.redrive_task(task).await?,
                cli::Redrive::State(state) => operations.redrive_state(*state).await?,
            };
            println!("{}", json!({"redriven": redriven}));
        }
        Command::Stuck { older_than } => {
            for stuck in App::from_env()
                .await?
                .operations()
                .stuck(older_than)
                .await?
            {
                println!(
                    "{}",
                    json!({"task_id": stuck.task_id, "sk": stuck.key.sk, "state": stuck.state,
                           "age_seconds": stuck.age_secs, "attempts": stuck.attempts,
                           "next_try_at": stuck.next_try_at, "last_error": stuck.last_error})
                );
            }
        }
        Command::Completions(shell) => {
            // A closed pipe (`| head`) is not worth an error.
            let _ = std::io::stdout().write_all(&cli::completions(shell));
        }
        Command::Submit {
            request,
            dry_run: true,
        } => println!("{}", dry_run(&request)?),
        Command::Submit { request, .. } => {
            let app = App::from_env().await?;
            let api = app.require_api("submit")?;
            let r = submit::submit(&api, &app.recorder(), &request, SystemClock.now_secs()).await?;
            let s = &r.submitted;
            let mut out = json!({
                "endpoint": r.endpoint.path,
                "conversion_type": r.conversion_type,
                "task_id": s.task_id,
                "conversion_ids": r.conversions,
                "eta_seconds": s.eta,
                "credit_estimate": s.credit_estimate,
                "registered": r.registered.label(),
            });
            for (key, value) in [
                ("conversion_id_1", &s.conversion_id_1),
                ("conversion_id_2", &s.conversion_id_2),
                ("message", &s.message),
            ] {
                if let Some(value) = value {
                    out[key] = json!(value);
                }
            }
            println!("{out}");
        }
        Command::ById {
            conversion_type,
            task_id,
        } => {
            let api = wiring::musicgpt_api()?;
            let out = match api.by_task(conversion_type.as_str(), &task_id).await? {
                Lookup::Found(conversion) => json!({ "found": true, "conversion": conversion }),
                Lookup::NotFound => json!({ "found": false }),
            };
            println!("{out}");
        }
        Command::ByUser {
            conversion_type,
            start,
            end,
            sort_order,
            limit,
            max_pages,
        } => {
            let api = wiring::musicgpt_api()?;
            let window = TimeWindow {
                start,
                end: end.unwrap_or_else(|| SystemClock.now_secs()),
            };
            let query = ByUserQuery {
                conversion_type,
                window,
                sort_order,
                limit,
            };
            let options = ListOptions {
                max_pages,
                ..ListOptions::default()
            };
            let listing = list_by_user(&api, &query, None, &options).await?;
            println!(
                "{}",
                json!({
                    "conversions": listing.conversions,
                    "pages": listing.pages,
                    "complete": listing.complete,
                    "busy_answers": listing.busy,
                    "resume_key": listing.resume.as_ref().map(|k| k.as_str()),
                    "stopped": listing.stopped,
                })
            );
        }
    }
    Ok(())
}

/// The checked request as it would be sent, the webhook token blanked out.
fn dry_run(request: &SubmitRequest) -> Result<Value, Error> {
    let wire = request.wire()?;
    let mut fields = wire.json();
    if let Some(Value::String(url)) = fields.get_mut("webhook_url")
        && let Some((base, _token)) = url.rsplit_once('/')
    {
        *url = format!("{base}/<token>");
    }
    Ok(json!({
        "endpoint": wire.endpoint.path,
        "encoding": wire.encoding().as_str(),
        "conversion_type": wire.endpoint.conversion_type,
        "fields": fields,
        "files": wire.files.iter().map(|f| json!({ "field": f.field, "path": f.path.display().to_string() })).collect::<Vec<_>>(),
    }))
}
