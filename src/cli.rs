//! The command line of the `musicgpt-webhook` tool: parsed here, run by its binary.

use crate::domain::api::MusicAiRequest;
use crate::error::{Error, Result};

pub const USAGE: &str = "\
usage: musicgpt-webhook submit music-ai --prompt TEXT [--style TEXT] [--lyrics TEXT]
                                          [--instrumental] [--vocal-only] [--webhook-url URL]

Submits a Music AI conversion to MusicGPT with this deployment's webhook URL and registers
the task (status SUBMITTED) in TABLE_NAME, so the reconciler notices if its callbacks never
come. Environment: MUSICGPT_API_KEY (required), MUSICGPT_API_URL, TABLE_NAME, WEBHOOK_URL
(the full URL with its token, unless --webhook-url is given), and the standard AWS variables.";

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    SubmitMusicAi(MusicAiRequest),
    Help,
}

/// `webhook_url_env` is `WEBHOOK_URL`, used when no `--webhook-url` is given.
pub fn parse(args: &[String], webhook_url_env: Option<String>) -> Result<Command> {
    let mut args = args.iter().map(String::as_str);
    match (args.next(), args.next()) {
        (Some("submit"), Some("music-ai")) => {}
        (None | Some("help" | "--help" | "-h"), _) => return Ok(Command::Help),
        _ => return Err(usage("expected `submit music-ai`")),
    }
    let mut request = MusicAiRequest::default();
    let mut webhook_url = webhook_url_env;
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .map(str::to_owned)
                .ok_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag {
            "--prompt" => request.prompt = Some(value()?),
            "--style" => request.music_style = Some(value()?),
            "--lyrics" => request.lyrics = Some(value()?),
            "--webhook-url" => webhook_url = Some(value()?),
            "--instrumental" => request.make_instrumental = Some(true),
            "--vocal-only" => request.vocal_only = Some(true),
            other => return Err(usage(&format!("unknown option {other}"))),
        }
    }
    if request.prompt.is_none() && request.lyrics.is_none() {
        return Err(usage("--prompt or --lyrics is required"));
    }
    request.webhook_url = webhook_url
        .filter(|url| url.starts_with("https://") || url.starts_with("http://"))
        .ok_or_else(|| usage("a webhook URL is required: WEBHOOK_URL or --webhook-url"))?;
    Ok(Command::SubmitMusicAi(request))
}

fn usage(problem: &str) -> Error {
    Error::Config(format!("{problem}\n\n{USAGE}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn submit_takes_its_options_and_the_webhook_url() {
        let command = parse(
            &args("submit music-ai --prompt epic --style rock --instrumental"),
            Some("https://h/webhook/t".into()),
        )
        .expect("valid");
        let Command::SubmitMusicAi(request) = command else {
            panic!("not a submission")
        };
        assert_eq!(request.prompt.as_deref(), Some("epic"));
        assert_eq!(request.music_style.as_deref(), Some("rock"));
        assert_eq!(request.make_instrumental, Some(true));
        assert_eq!(request.webhook_url, "https://h/webhook/t");
    }

    #[test]
    fn mistakes_are_explained() {
        for (line, expected) in [
            ("submit music-ai --style rock", "--prompt"),
            ("submit music-ai --prompt", "needs a value"),
            ("submit music-ai --prompt x --bogus", "unknown option"),
            ("submit tts", "expected"),
        ] {
            let err = parse(&args(line), Some("https://h/w/t".into()))
                .expect_err(line)
                .to_string();
            assert!(err.contains(expected), "{line}: {err}");
        }
        let err = parse(&args("submit music-ai --prompt x"), None)
            .expect_err("no url")
            .to_string();
        assert!(err.contains("WEBHOOK_URL"), "{err}");
        assert_eq!(parse(&[], None).expect("help"), Command::Help);
    }
}
