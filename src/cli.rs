//! The command line of the `musicgpt-webhook` tool (clap): parsed and checked here into a
//! [`Command`], run by its binary. `submit <type>` has one subcommand per endpoint of
//! `domain::conversion::ENDPOINTS`; its flags are the API's field names in kebab case
//! (`--audio-url`, `--voice-id`, `--extend-after`), so the API docs read straight onto it.

use std::path::PathBuf;

use clap::builder::{BoolishValueParser, PossibleValuesParser, TypedValueParser};
use clap::error::ErrorKind;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};
use clap_complete::Shell;

use crate::domain::by_user::parse_time;
use crate::domain::by_user::{self, SortOrder};
use crate::domain::conversion::{CONVERSION_TYPES, ConversionType};
use crate::domain::ids::Id;
use crate::domain::listing::{MAX_PAGE, TaskCursor, TaskQuery};
use crate::domain::requests::{
    AudioFormat, AudioToMidiRequest, BitDepth, Choice, CoverRequest, CutterRequest, DeechoRequest,
    DenoiseRequest, DereverbRequest, ExtendRequest, ExtractionRequest, FileConvertRequest, Gender,
    ImageToSongRequest, InpaintRequest, KeyBpmRequest, MasteringRequest, Media, Model,
    MusicAiRequest, Preprocessing, RemixRequest, SingOverInstrumentalRequest,
    SoundGeneratorRequest, SpeedChangerRequest, Stem, SubmitRequest, TextToSpeechRequest,
    TranscribeRequest, VoiceChangerRequest,
};
use crate::domain::status::{AssetState, TaskStatus};
use crate::error::{Error, Result};

pub const BIN: &str = "musicgpt-webhook";

/// What the binary is asked to do, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Submit (or, dry, only show) a checked request and register its task.
    Submit {
        request: SubmitRequest,
        dry_run: bool,
    },
    /// `GET /v1/byId` for a task.
    ById {
        conversion_type: ConversionType,
        task_id: Id,
    },
    /// `GET /v1/byUser` over a window, every page; `end` `None` means now.
    ByUser {
        conversion_type: Option<ConversionType>,
        start: u64,
        end: Option<u64>,
        sort_order: SortOrder,
        limit: u32,
        max_pages: usize,
    },
    Completions(Shell),
    /// Record stored callbacks again, through the same path as a delivery.
    Replay(Replay),
    /// FAILED / EXPIRED assets back to PENDING, of one task or all in a state.
    Redrive(Redrive),
    /// PENDING assets older than this, with their last error.
    Stuck {
        older_than: Duration,
    },
    /// Read tasks as the read API answers them: show, list, wait until settled.
    Tasks(Tasks),
    /// Help or version text, to print as it is.
    Help(String),
}

/// `tasks show|list|wait`.
#[derive(Debug, Clone, PartialEq)]
pub enum Tasks {
    Show {
        task_id: Id,
    },
    List {
        query: TaskQuery,
    },
    Wait {
        task_id: Id,
        timeout: Duration,
        interval: Duration,
    },
}

/// What `replay` records again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    Task(Id),
    /// Every task created at or after this time (epoch seconds).
    Since(u64),
}

/// What `redrive` puts back to PENDING.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redrive {
    Task(Id),
    State(AssetState),
}

/// `args` without the program name; `webhook_url_env` is `WEBHOOK_URL`, used when no
/// `--webhook-url` is given.
pub fn parse(args: &[String], webhook_url_env: Option<String>) -> Result<Command> {
    let cli = match Cli::try_parse_from(std::iter::once(BIN.to_owned()).chain(args.iter().cloned()))
    {
        Ok(cli) => cli,
        Err(err) => {
            let text = err.render().to_string();
            return match err.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => Ok(Command::Help(text)),
                _ => {
                    let text = text.trim_end();
                    Err(Error::Config(
                        text.strip_prefix("error: ").unwrap_or(text).to_owned(),
                    ))
                }
            };
        }
    };
    match cli.command {
        Top::Submit(submit) => {
            let webhook_url = submit.webhook_url.or(webhook_url_env).unwrap_or_default();
            let mut request = submit.conversion.into_request();
            request.set_webhook_url(webhook_url.trim().to_owned());
            request.validate()?;
            Ok(Command::Submit {
                request,
                dry_run: submit.dry_run,
            })
        }
        Top::ById(args) => Ok(Command::ById {
            conversion_type: args.conversion_type,
            task_id: Id::parse(&args.task_id).ok_or_else(|| {
                Error::InvalidRequest(
                    "--task-id: not a valid id (1 to 128 of A-Z a-z 0-9 _ -)".into(),
                )
            })?,
        }),
        Top::ByUser(args) => {
            if let Some(end) = args.end_date
                && end <= args.start_date
            {
                return Err(Error::InvalidRequest(
                    "--end-date must come after --start-date".into(),
                ));
            }
            Ok(Command::ByUser {
                conversion_type: args.conversion_type,
                start: args.start_date,
                end: args.end_date,
                sort_order: args.sort_order,
                limit: args.limit,
                max_pages: args.max_pages,
            })
        }
        Top::Completions { shell } => Ok(Command::Completions(shell)),
        Top::Replay(args) => match (args.task, args.since) {
            (Some(task), None) => Ok(Command::Replay(Replay::Task(task_id(&task)?))),
            (None, Some(since)) => Ok(Command::Replay(Replay::Since(since))),
            _ => Err(Error::InvalidRequest(
                "replay: give --task <id> or --since <time>".into(),
            )),
        },
        Top::Redrive(args) => match (args.task, args.state) {
            (Some(task), None) => Ok(Command::Redrive(Redrive::Task(task_id(&task)?))),
            (None, Some(state)) => Ok(Command::Redrive(Redrive::State(state))),
            _ => Err(Error::InvalidRequest(
                "redrive: give --task <id> or --state FAILED|EXPIRED".into(),
            )),
        },
        Top::Stuck(args) => Ok(Command::Stuck {
            older_than: args.older_than,
        }),
        Top::Tasks(args) => Ok(Command::Tasks(match args.command {
            TasksTop::Show { task_id } => Tasks::Show {
                task_id: task_arg(&task_id)?,
            },
            TasksTop::List {
                status,
                since,
                limit,
                next,
            } => Tasks::List {
                query: TaskQuery {
                    status: TaskStatus::parse(&status),
                    since: since.unwrap_or(0),
                    limit,
                    after: match next {
                        None => None,
                        Some(text) => Some(TaskCursor::decode(&text).ok_or_else(|| {
                            Error::InvalidRequest(
                                "--next: not a cursor printed by tasks list".into(),
                            )
                        })?),
                    },
                },
            },
            TasksTop::Wait {
                task_id,
                timeout,
                interval,
            } => Tasks::Wait {
                task_id: task_arg(&task_id)?,
                timeout,
                interval: interval.max(Duration::from_secs(1)),
            },
        })),
    }
}

fn task_arg(text: &str) -> Result<Id> {
    Id::parse(text).ok_or_else(|| {
        Error::InvalidRequest("<TASK_ID>: not a valid id (1 to 128 of A-Z a-z 0-9 _ -)".into())
    })
}

/// A status word for `tasks list --status`.
fn status_word(text: &str) -> std::result::Result<String, String> {
    let word = text.trim().to_ascii_uppercase();
    let valid = !word.is_empty()
        && word.len() <= 32
        && word.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
    if valid {
        Ok(word)
    } else {
        Err("a status such as COMPLETED, FAILED, IN_PROGRESS, SUBMITTED".into())
    }
}

/// `--since`: epoch seconds, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ.
fn since(text: &str) -> std::result::Result<u64, String> {
    parse_time(text).ok_or_else(|| "epoch seconds, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ".into())
}

fn page_size(text: &str) -> std::result::Result<usize, String> {
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_PAGE).contains(n))
        .ok_or_else(|| format!("1 to {MAX_PAGE}"))
}

fn task_id(text: &str) -> Result<Id> {
    Id::parse(text).ok_or_else(|| {
        Error::InvalidRequest("--task: not a valid id (1 to 128 of A-Z a-z 0-9 _ -)".into())
    })
}

/// A duration such as 30m, 2h, 7d or 90s (a bare number is seconds).
fn duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err("a number of s, m, h or d, like 30m".into()),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| "a number of s, m, h or d, like 30m".to_owned())?;
    Ok(Duration::from_secs(value.saturating_mul(scale)))
}

fn asset_state(text: &str) -> std::result::Result<AssetState, String> {
    match text.trim().to_ascii_uppercase().as_str() {
        "FAILED" => Ok(AssetState::Failed),
        "EXPIRED" => Ok(AssetState::Expired),
        _ => Err("FAILED or EXPIRED".into()),
    }
}

/// Shell completions for the whole tool (generated in memory: the generator panics on a
/// failed write, a closed pipe for one).
pub fn completions(shell: Shell) -> Vec<u8> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BIN, &mut script);
    script
}

#[derive(Debug, Parser)]
#[command(
    name = BIN,
    version,
    about = "Submit MusicGPT conversions with this deployment's webhook URL, register them, look them up",
    long_about = "Submits MusicGPT conversions with this deployment's webhook URL and registers each \
task (status SUBMITTED, its conversion type, the conversions it will make) in TABLE_NAME, so the \
reconciler notices if its callbacks never come. Looks tasks up with byId and byUser.\n\n\
Environment: MUSICGPT_API_KEY (required), MUSICGPT_API_URL, MUSICGPT_PLAN (free|plus|pro) or \
MUSICGPT_RATE_PER_MINUTE, TABLE_NAME, WEBHOOK_URL (the full URL with its token, unless \
--webhook-url is given), and the standard AWS variables.",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Top,
}

#[derive(Debug, Subcommand)]
enum Top {
    /// Submit a conversion with the webhook URL and register its task
    Submit(SubmitArgs),
    /// Look a task up with byId (GET /v1/byId)
    ById(ByIdArgs),
    /// List the conversions of a time window with byUser, page by page (GET /v1/byUser)
    ByUser(ByUserArgs),
    /// Print shell completions (bash, zsh, fish, elvish, powershell)
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Record stored callbacks again, as a delivery would (changes nothing already recorded)
    Replay(ReplayArgs),
    /// Put FAILED or EXPIRED files back to PENDING for the sweep
    Redrive(RedriveArgs),
    /// List files not stored past an age, with their last error
    Stuck(StuckArgs),
    /// Read tasks from the table: show one (with download URLs), list by status, wait for one
    Tasks(TasksArgs),
}

#[derive(Debug, Args)]
#[command(arg_required_else_help = true, subcommand_required = true)]
struct TasksArgs {
    #[command(subcommand)]
    command: TasksTop,
}

#[derive(Debug, Subcommand)]
enum TasksTop {
    /// A task, its conversions and files, each stored file with a presigned download URL
    Show {
        /// The task's id
        task_id: String,
    },
    /// Tasks with a status, newest first, one page (print `next` to get the following one)
    List {
        /// COMPLETED, FAILED, ERROR, IN_PROGRESS, SUBMITTED, ...
        #[arg(long, value_parser = status_word)]
        status: String,
        /// Only tasks created since (epoch seconds, YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ)
        #[arg(long, value_parser = since)]
        since: Option<u64>,
        /// Tasks per page, 1 to 100
        #[arg(long, default_value = "25", value_parser = page_size)]
        limit: usize,
        /// The `next` cursor of the page before
        #[arg(long)]
        next: Option<String>,
    },
    /// Wait until a task settles, print it with its files; exit 0 completed, 3 failed, 4 timed out
    Wait {
        /// The task's id
        task_id: String,
        /// Give up after this long (90s, 30m, 2h)
        #[arg(long, default_value = "30m", value_parser = duration)]
        timeout: Duration,
        /// Look again this often
        #[arg(long, default_value = "5s", value_parser = duration)]
        interval: Duration,
    },
}

#[derive(Debug, Args)]
struct ReplayArgs {
    /// The task whose stored callbacks to record again
    #[arg(long, conflicts_with = "since")]
    task: Option<String>,
    /// Every task created since (UTC): 2026-01-01, 2026-01-01T12:00:00Z, or epoch seconds
    #[arg(long, value_parser = time)]
    since: Option<u64>,
}

#[derive(Debug, Args)]
struct RedriveArgs {
    /// Every FAILED or EXPIRED file of this task
    #[arg(long, conflicts_with = "state")]
    task: Option<String>,
    /// Every file in this state: FAILED or EXPIRED
    #[arg(long, value_parser = asset_state)]
    state: Option<AssetState>,
}

#[derive(Debug, Args)]
struct StuckArgs {
    /// Files whose callback came longer ago than this (30m, 2h, 7d)
    #[arg(long, default_value = "30m", value_parser = duration)]
    older_than: Duration,
}

#[derive(Debug, Args)]
#[command(arg_required_else_help = true, subcommand_required = true)]
struct SubmitArgs {
    /// The webhook URL, token included [default: WEBHOOK_URL]
    #[arg(long, global = true, value_name = "URL", help_heading = "Submission")]
    webhook_url: Option<String>,
    /// Check the request and print it as it would be sent; send and register nothing
    #[arg(long, global = true, help_heading = "Submission")]
    dry_run: bool,
    #[command(subcommand)]
    conversion: Conversion,
}

#[derive(Debug, Args)]
struct ByIdArgs {
    /// The conversionType (MUSIC_AI, VOICE_CONVERSION, ... or a label such as "Music AI")
    #[arg(long, value_parser = conversion_type)]
    conversion_type: ConversionType,
    #[arg(long)]
    task_id: String,
}

#[derive(Debug, Args)]
struct ByUserArgs {
    /// Only this conversionType (MUSIC_AI, VOICE_CONVERSION, ... or a label)
    #[arg(long, value_parser = conversion_type)]
    conversion_type: Option<ConversionType>,
    /// From (UTC): 2026-01-01, 2026-01-01T12:00:00Z, or epoch seconds
    #[arg(long, value_parser = time)]
    start_date: u64,
    /// Until (UTC), as --start-date [default: now]
    #[arg(long, value_parser = time)]
    end_date: Option<u64>,
    #[arg(long, default_value = "DESC", value_parser = sort_order)]
    sort_order: SortOrder,
    /// Conversions per page
    #[arg(long, default_value_t = by_user::DEFAULT_LIMIT, value_parser = clap::value_parser!(u32).range(1..=i64::from(by_user::MAX_LIMIT)))]
    limit: u32,
    /// Pages to read at most
    #[arg(long, default_value_t = 200)]
    max_pages: usize,
}

/// One subcommand per endpoint; names and paths in `domain::conversion::ENDPOINTS`.
#[derive(Debug, Subcommand)]
enum Conversion {
    /// Music AI V2 (POST /v2/MusicAI): two songs from a prompt, a style or lyrics
    MusicAi(MusicAiArgs),
    /// Remix a song (POST /v1/Remix)
    Remix(RemixArgs),
    /// Extend a song after a point (POST /v1/extend)
    Extend(ExtendArgs),
    /// Replace a section of a song (POST /v1/inpaint)
    Inpaint(InpaintArgs),
    /// Sing lyrics over an instrumental (POST /v1/sing_over_instrumental)
    SingOverInstrumental(SingOverInstrumentalArgs),
    /// Two songs from an image (POST /v1/image_to_song)
    ImageToSong(ImageToSongArgs),
    /// A cover in another voice (POST /v1/Cover)
    Cover(CoverArgs),
    /// Change the voice of a recording (POST /v1/VoiceChanger)
    VoiceChanger(VoiceChangerArgs),
    /// Speech from text (POST /v1/TextToSpeech)
    #[command(visible_alias = "tts")]
    TextToSpeech(TextToSpeechArgs),
    /// Split a song into stems (POST /v1/Extraction)
    Extraction(ExtractionArgs),
    /// Remove noise (POST /v1/denoise)
    Denoise(AudioOnlyArgs),
    /// Remove echo (POST /v1/deecho)
    Deecho(AudioOnlyArgs),
    /// Remove reverb (POST /v1/dereverb)
    Dereverb(AudioOnlyArgs),
    /// Master a song against a reference (POST /v1/audio_mastering)
    Mastering(MasteringArgs),
    /// Cut a piece out of a song (POST /v1/audio_cutter)
    Cutter(CutterArgs),
    /// Change a song's speed (POST /v1/audio_speed_changer)
    SpeedChanger(SpeedChangerArgs),
    /// MIDI from audio (POST /v1/audio_to_midi)
    AudioToMidi(AudioToMidiArgs),
    /// Key and BPM of a song (POST /v1/extract_key_bpm)
    KeyBpm(AudioOnlyArgs),
    /// Convert a file's format (POST /v1/file_convert)
    FileConvert(FileConvertArgs),
    /// Transcribe speech or lyrics (POST /v1/audio_transcribe)
    Transcribe(TranscribeArgs),
    /// A sound effect from a prompt (POST /v1/sound_generator)
    SoundGenerator(SoundGeneratorArgs),
}

impl Conversion {
    fn into_request(self) -> SubmitRequest {
        let hook = String::new();
        match self {
            Conversion::MusicAi(a) => MusicAiRequest {
                prompt: a.prompt,
                music_style: a.music_style,
                lyrics: a.lyrics,
                make_instrumental: a.make_instrumental,
                vocal_only: a.vocal_only,
                voice_id: a.voice_id,
                title: a.title,
                gender: a.gender,
                generate_album_cover: a.generate_album_cover,
                model: a.model,
                lyrics_timestamps: a.lyrics_timestamps,
                webhook_url: hook,
            }
            .into(),
            Conversion::Remix(a) => RemixRequest {
                audio: a.audio.media(),
                prompt: Some(a.prompt),
                lyrics: a.lyrics,
                gender: a.gender,
                webhook_url: hook,
            }
            .into(),
            Conversion::Extend(a) => ExtendRequest {
                audio: a.audio.media(),
                extend_after: Some(a.extend_after),
                prompt: a.prompt,
                lyrics: a.lyrics,
                gender: a.gender,
                webhook_url: hook,
            }
            .into(),
            Conversion::Inpaint(a) => InpaintRequest {
                audio: a.audio.media(),
                prompt: Some(a.prompt),
                replace_start_at: Some(a.replace_start_at),
                replace_end_at: Some(a.replace_end_at),
                lyrics: a.lyrics,
                lyrics_section_to_replace: a.lyrics_section_to_replace,
                gender: a.gender,
                webhook_url: hook,
            }
            .into(),
            Conversion::SingOverInstrumental(a) => SingOverInstrumentalRequest {
                audio: a.audio.media(),
                prompt: Some(a.prompt),
                lyrics: Some(a.lyrics),
                gender: a.gender,
                webhook_url: hook,
            }
            .into(),
            Conversion::ImageToSong(a) => ImageToSongRequest {
                image: a.image.media(),
                prompt: a.prompt,
                lyrics: a.lyrics,
                negative_tags: a.negative_tags,
                make_instrumental: a.make_instrumental,
                vocal_only: a.vocal_only,
                key: a.key,
                bpm: a.bpm,
                voice_id: a.voice_id,
                webhook_url: hook,
            }
            .into(),
            Conversion::Cover(a) => CoverRequest {
                audio: a.audio.media(),
                voice_id: Some(a.voice_id),
                pitch: a.pitch,
                webhook_url: hook,
            }
            .into(),
            Conversion::VoiceChanger(a) => VoiceChangerRequest {
                audio: a.audio.media(),
                voice_id: Some(a.voice_id),
                remove_background: a.remove_background,
                pitch: a.pitch,
                webhook_url: hook,
            }
            .into(),
            Conversion::TextToSpeech(a) => TextToSpeechRequest {
                text: Some(a.text),
                sample_audio_url: a.sample_audio_url,
                voice_id: a.voice_id,
                gender: a.gender,
                webhook_url: hook,
            }
            .into(),
            Conversion::Extraction(a) => ExtractionRequest {
                audio: a.audio.media(),
                stems: a.stems,
                preprocessing_options: a.preprocessing_options,
                eco_mode: a.eco_mode,
                webhook_url: hook,
            }
            .into(),
            Conversion::Denoise(a) => DenoiseRequest {
                audio: a.audio.media(),
                webhook_url: hook,
            }
            .into(),
            Conversion::Deecho(a) => DeechoRequest {
                audio: a.audio.media(),
                webhook_url: hook,
            }
            .into(),
            Conversion::Dereverb(a) => DereverbRequest {
                audio: a.audio.media(),
                webhook_url: hook,
            }
            .into(),
            Conversion::KeyBpm(a) => KeyBpmRequest {
                audio: a.audio.media(),
                webhook_url: hook,
            }
            .into(),
            Conversion::Mastering(a) => MasteringRequest {
                audio: a.audio.media(),
                reference: a.reference.media(),
                output_extension: a.output_extension,
                webhook_url: hook,
            }
            .into(),
            Conversion::Cutter(a) => CutterRequest {
                audio: a.audio.media(),
                start_time: Some(a.start_time),
                end_time: Some(a.end_time),
                output_extension: a.output_extension,
                webhook_url: hook,
            }
            .into(),
            Conversion::SpeedChanger(a) => SpeedChangerRequest {
                audio: a.audio.media(),
                speed_change_factor: Some(a.speed_change_factor),
                output_extension: a.output_extension,
                webhook_url: hook,
            }
            .into(),
            Conversion::AudioToMidi(a) => AudioToMidiRequest {
                audio: a.audio.media(),
                sonify_midi: a.sonify_midi,
                save_note_events: a.save_note_events,
                webhook_url: hook,
            }
            .into(),
            Conversion::FileConvert(a) => FileConvertRequest {
                audio: a.audio.media(),
                target_format: Some(a.target_format),
                target_sr: a.target_sr,
                target_bit_depth: a.target_bit_depth,
                webhook_url: hook,
            }
            .into(),
            Conversion::Transcribe(a) => TranscribeRequest {
                audio: a.audio.media(),
                language: a.language,
                translate: a.translate,
                transcription_format: a.transcription_format,
                word_timestamps: a.word_timestamps,
                webhook_url: hook,
            }
            .into(),
            Conversion::SoundGenerator(a) => SoundGeneratorRequest {
                prompt: Some(a.prompt),
                audio_length: a.audio_length,
                webhook_url: hook,
            }
            .into(),
        }
    }
}

// The input file of an endpoint: a URL or a local file (uploaded), exactly one.

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct AudioInput {
    /// URL of the audio, fetched by MusicGPT
    #[arg(long, value_name = "URL")]
    audio_url: Option<String>,
    /// A local audio file, uploaded (multipart)
    #[arg(long, value_name = "PATH")]
    audio_file: Option<PathBuf>,
}

impl AudioInput {
    fn media(self) -> Option<Media> {
        media(self.audio_url, self.audio_file)
    }
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct ReferenceInput {
    /// URL of the reference audio
    #[arg(long, value_name = "URL")]
    reference_audio_url: Option<String>,
    /// A local reference audio file, uploaded (multipart)
    #[arg(long, value_name = "PATH")]
    reference_audio_file: Option<PathBuf>,
}

impl ReferenceInput {
    fn media(self) -> Option<Media> {
        media(self.reference_audio_url, self.reference_audio_file)
    }
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct ImageInput {
    /// URL of the image
    #[arg(long, value_name = "URL")]
    image_url: Option<String>,
    /// A local image file, uploaded (multipart)
    #[arg(long, value_name = "PATH")]
    image_file: Option<PathBuf>,
}

impl ImageInput {
    fn media(self) -> Option<Media> {
        media(self.image_url, self.image_file)
    }
}

fn media(url: Option<String>, file: Option<PathBuf>) -> Option<Media> {
    url.map(Media::Url).or(file.map(Media::File))
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").required(true).multiple(true).args(["prompt", "music_style", "lyrics"]))]
struct MusicAiArgs {
    /// What the song is about (under 280 characters)
    #[arg(long)]
    prompt: Option<String>,
    /// The style (rock, cinematic, ...)
    #[arg(long, visible_alias = "style")]
    music_style: Option<String>,
    #[arg(long)]
    lyrics: Option<String>,
    #[arg(long, visible_alias = "instrumental", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL", value_parser = BoolishValueParser::new())]
    make_instrumental: Option<bool>,
    /// Vocals only (a third-party guide says this forces v6)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL", value_parser = BoolishValueParser::new())]
    vocal_only: Option<bool>,
    /// A voice to sing with (a third-party guide says this forces v6)
    #[arg(long)]
    voice_id: Option<String>,
    #[arg(long)]
    title: Option<String>,
    #[arg(long, value_parser = choice::<Gender>())]
    gender: Option<Gender>,
    /// Make an album cover too (off unless asked: on/off, true/false)
    #[arg(long, visible_alias = "cover", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL", value_parser = BoolishValueParser::new())]
    generate_album_cover: Option<bool>,
    /// The model; the pro models stream, v7-pro is recommended
    #[arg(long, value_parser = choice::<Model>())]
    model: Option<Model>,
    /// Ask for timestamped lyrics (listed by a third-party guide)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL", value_parser = BoolishValueParser::new())]
    lyrics_timestamps: Option<bool>,
}

#[derive(Debug, Args)]
struct RemixArgs {
    #[command(flatten)]
    audio: AudioInput,
    #[arg(long)]
    prompt: String,
    /// At most 2000 characters
    #[arg(long)]
    lyrics: Option<String>,
    #[arg(long, value_parser = choice::<Gender>())]
    gender: Option<Gender>,
}

#[derive(Debug, Args)]
struct ExtendArgs {
    #[command(flatten)]
    audio: AudioInput,
    /// Seconds into the song where the extension starts
    #[arg(long)]
    extend_after: f64,
    #[arg(long)]
    prompt: Option<String>,
    #[arg(long)]
    lyrics: Option<String>,
    #[arg(long, value_parser = choice::<Gender>())]
    gender: Option<Gender>,
}

#[derive(Debug, Args)]
struct InpaintArgs {
    #[command(flatten)]
    audio: AudioInput,
    #[arg(long)]
    prompt: String,
    /// Seconds
    #[arg(long)]
    replace_start_at: f64,
    /// Seconds, after --replace-start-at
    #[arg(long)]
    replace_end_at: f64,
    #[arg(long)]
    lyrics: Option<String>,
    #[arg(long)]
    lyrics_section_to_replace: Option<String>,
    #[arg(long, value_parser = choice::<Gender>())]
    gender: Option<Gender>,
}

#[derive(Debug, Args)]
struct SingOverInstrumentalArgs {
    #[command(flatten)]
    audio: AudioInput,
    #[arg(long)]
    prompt: String,
    /// At most 2000 characters
    #[arg(long)]
    lyrics: String,
    #[arg(long, value_parser = choice::<Gender>())]
    gender: Option<Gender>,
}

#[derive(Debug, Args)]
struct ImageToSongArgs {
    #[command(flatten)]
    image: ImageInput,
    /// At most 300 characters
    #[arg(long)]
    prompt: Option<String>,
    /// At most 3000 characters
    #[arg(long)]
    lyrics: Option<String>,
    #[arg(long)]
    negative_tags: Option<String>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL", value_parser = BoolishValueParser::new())]
    make_instrumental: Option<bool>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL", value_parser = BoolishValueParser::new())]
    vocal_only: Option<bool>,
    #[arg(long)]
    key: Option<String>,
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    bpm: Option<u32>,
    #[arg(long)]
    voice_id: Option<String>,
}

#[derive(Debug, Args)]
struct CoverArgs {
    #[command(flatten)]
    audio: AudioInput,
    #[arg(long)]
    voice_id: String,
    /// Semitones, -12 to 12
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-12..=12))]
    pitch: Option<i32>,
}

#[derive(Debug, Args)]
struct VoiceChangerArgs {
    #[command(flatten)]
    audio: AudioInput,
    #[arg(long)]
    voice_id: String,
    /// Remove the background (sent as 1 or 0)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL", value_parser = BoolishValueParser::new())]
    remove_background: Option<bool>,
    /// Semitones, -12 to 12
    #[arg(long, allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-12..=12))]
    pitch: Option<i32>,
}

#[derive(Debug, Args)]
struct TextToSpeechArgs {
    #[arg(long)]
    text: String,
    /// A sample of the voice to speak with (or --voice-id)
    #[arg(long, value_name = "URL", conflicts_with = "voice_id")]
    sample_audio_url: Option<String>,
    #[arg(long)]
    voice_id: Option<String>,
    #[arg(long, value_parser = choice::<Gender>())]
    gender: Option<Gender>,
}

#[derive(Debug, Args)]
struct ExtractionArgs {
    #[command(flatten)]
    audio: AudioInput,
    /// Stems to extract, comma-separated or repeated
    #[arg(long, required = true, value_delimiter = ',', value_parser = choice::<Stem>())]
    stems: Vec<Stem>,
    /// Cleaning first, comma-separated or repeated
    #[arg(long, value_delimiter = ',', value_parser = choice::<Preprocessing>())]
    preprocessing_options: Vec<Preprocessing>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL", value_parser = BoolishValueParser::new())]
    eco_mode: Option<bool>,
}

#[derive(Debug, Args)]
struct AudioOnlyArgs {
    #[command(flatten)]
    audio: AudioInput,
}

#[derive(Debug, Args)]
struct MasteringArgs {
    #[command(flatten)]
    audio: AudioInput,
    #[command(flatten)]
    reference: ReferenceInput,
    #[arg(long, value_parser = choice::<AudioFormat>())]
    output_extension: Option<AudioFormat>,
}

#[derive(Debug, Args)]
struct CutterArgs {
    #[command(flatten)]
    audio: AudioInput,
    /// Milliseconds
    #[arg(long)]
    start_time: u64,
    /// Milliseconds, after --start-time
    #[arg(long)]
    end_time: u64,
    #[arg(long, value_parser = choice::<AudioFormat>())]
    output_extension: Option<AudioFormat>,
}

#[derive(Debug, Args)]
struct SpeedChangerArgs {
    #[command(flatten)]
    audio: AudioInput,
    /// 0.25 to 4.0
    #[arg(long)]
    speed_change_factor: f64,
    #[arg(long, value_parser = choice::<AudioFormat>())]
    output_extension: Option<AudioFormat>,
}

#[derive(Debug, Args)]
struct AudioToMidiArgs {
    #[command(flatten)]
    audio: AudioInput,
    /// Add a .wav rendering (MusicGPT's default: true)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL", value_parser = BoolishValueParser::new())]
    sonify_midi: Option<bool>,
    /// Add a .csv of note events (MusicGPT's default: true)
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL", value_parser = BoolishValueParser::new())]
    save_note_events: Option<bool>,
}

#[derive(Debug, Args)]
struct FileConvertArgs {
    #[command(flatten)]
    audio: AudioInput,
    #[arg(long, value_parser = choice::<AudioFormat>())]
    target_format: AudioFormat,
    /// Sample rate in Hz
    #[arg(long)]
    target_sr: Option<u32>,
    #[arg(long, value_parser = choice::<BitDepth>())]
    target_bit_depth: Option<BitDepth>,
}

#[derive(Debug, Args)]
struct TranscribeArgs {
    #[command(flatten)]
    audio: AudioInput,
    #[arg(long)]
    language: Option<String>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL", value_parser = BoolishValueParser::new())]
    translate: Option<bool>,
    /// srt, plain_text, ...
    #[arg(long)]
    transcription_format: Option<String>,
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL", value_parser = BoolishValueParser::new())]
    word_timestamps: Option<bool>,
}

#[derive(Debug, Args)]
struct SoundGeneratorArgs {
    /// At most 300 characters
    #[arg(long)]
    prompt: String,
    /// Seconds
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    audio_length: Option<u32>,
}

/// A closed set of API words as a typed value, listed in `--help` and completions.
fn choice<C: Choice + Send + Sync>() -> impl TypedValueParser<Value = C> {
    PossibleValuesParser::new(C::names())
        .try_map(|text: String| C::parse(&text).ok_or_else(|| format!("unknown value {text:?}")))
}

fn conversion_type(text: &str) -> std::result::Result<ConversionType, String> {
    ConversionType::parse(text).ok_or_else(|| {
        let names: Vec<&str> = CONVERSION_TYPES.iter().map(|r| r.api_name).collect();
        format!("not a conversion type; one of {}", names.join(", "))
    })
}

fn time(text: &str) -> std::result::Result<u64, String> {
    by_user::parse_time(text)
        .ok_or_else(|| "expected 2026-01-01, 2026-01-01T12:00:00Z or epoch seconds".to_owned())
}

fn sort_order(text: &str) -> std::result::Result<SortOrder, String> {
    SortOrder::parse(text).ok_or_else(|| "ASC or DESC".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::conversion::ENDPOINTS;
    use crate::domain::requests::Wire;

    const HOOK: &str = "https://h/webhook/t";

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    fn submitted(line: &str) -> SubmitRequest {
        match parse(&args(line), Some(HOOK.into())) {
            Ok(Command::Submit { request, .. }) => request,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn wire(line: &str) -> Wire {
        submitted(line)
            .wire()
            .unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    fn text(wire: &Wire, field: &str) -> Option<String> {
        wire.field(field).map(|v| v.to_text())
    }

    fn error(line: &str) -> String {
        match parse(&args(line), Some(HOOK.into())) {
            Err(err) => err.to_string(),
            Ok(other) => panic!("{line}: parsed as {other:?}"),
        }
    }

    #[test]
    fn music_ai_keeps_its_old_flags_and_takes_every_v2_field() {
        let SubmitRequest::MusicAi(request) =
            submitted("submit music-ai --prompt epic --style rock --instrumental")
        else {
            panic!("not music ai")
        };
        assert_eq!(request.prompt.as_deref(), Some("epic"));
        assert_eq!(request.music_style.as_deref(), Some("rock"));
        assert_eq!(request.make_instrumental, Some(true));
        assert_eq!(request.webhook_url, HOOK);

        let w = wire(
            "submit music-ai --prompt epic --music-style rock --title Clash --gender female \
             --model v7-pro --generate-album-cover off --voice-id v1 --vocal-only --lyrics-timestamps",
        );
        assert_eq!(w.endpoint.path, "/v2/MusicAI");
        let json = serde_json::Value::Object(w.json());
        assert_eq!(json["model"], "v7-pro");
        assert_eq!(json["generate_album_cover"], false);
        assert_eq!(json["vocal_only"], true);
        assert_eq!(json["title"], "Clash");
        assert_eq!(json["webhook_url"], HOOK);
        let w = wire("submit music-ai --prompt x --cover --webhook-url https://other/webhook/u");
        assert_eq!(text(&w, "generate_album_cover").as_deref(), Some("true"));
        assert_eq!(
            text(&w, "webhook_url").as_deref(),
            Some("https://other/webhook/u")
        );
    }

    #[test]
    fn every_endpoint_has_a_subcommand_that_parses() {
        let lines = [
            "submit music-ai --prompt p",
            "submit remix --audio-url https://a/s.mp3 --prompt p --lyrics l --gender male",
            "submit extend --audio-file song.mp3 --extend-after 30",
            "submit inpaint --audio-url https://a/s.mp3 --prompt p --replace-start-at 10 --replace-end-at 20",
            "submit sing-over-instrumental --audio-url https://a/s.mp3 --prompt p --lyrics l",
            "submit image-to-song --image-file cover.png --bpm 120 --key Cm",
            "submit cover --audio-url https://a/s.mp3 --voice-id v --pitch -3",
            "submit voice-changer --audio-url https://a/s.mp3 --voice-id v --remove-background --pitch 2",
            "submit text-to-speech --text hello --voice-id v",
            "submit extraction --audio-url https://a/s.mp3 --stems vocals,drums --stems bass --preprocessing-options Denoise",
            "submit denoise --audio-file a.wav",
            "submit deecho --audio-url https://a/s.mp3",
            "submit dereverb --audio-url https://a/s.mp3",
            "submit mastering --audio-file a.wav --reference-audio-url https://a/r.mp3 --output-extension flac",
            "submit cutter --audio-url https://a/s.mp3 --start-time 1000 --end-time 5000",
            "submit speed-changer --audio-url https://a/s.mp3 --speed-change-factor 1.5",
            "submit audio-to-midi --audio-url https://a/s.mp3 --sonify-midi false",
            "submit key-bpm --audio-url https://a/s.mp3",
            "submit file-convert --audio-url https://a/s.mp3 --target-format wav --target-sr 48000 --target-bit-depth 24",
            "submit transcribe --audio-url https://a/s.mp3 --language en --word-timestamps",
            "submit sound-generator --prompt rain --audio-length 10",
        ];
        let mut covered: Vec<&str> = lines
            .iter()
            .map(|line| wire(line).endpoint.command)
            .collect();
        covered.sort();
        let mut all: Vec<&str> = ENDPOINTS.iter().map(|e| e.command).collect();
        all.sort();
        assert_eq!(covered, all);

        let w = wire(lines[9]);
        assert_eq!(
            text(&w, "stems").as_deref(),
            Some(r#"["vocals","drums","bass"]"#)
        );
        assert_eq!(text(&wire(lines[6]), "pitch").as_deref(), Some("-3"));
        assert_eq!(
            text(&wire(lines[7]), "remove_background").as_deref(),
            Some("1")
        );
        assert_eq!(wire(lines[2]).files[0].field, "audio_file");
        assert_eq!(wire(lines[5]).files[0].field, "image_file");
        let mastering = wire(lines[13]);
        assert_eq!(mastering.files.len(), 1);
        assert_eq!(
            text(&mastering, "reference_audio_url").as_deref(),
            Some("https://a/r.mp3")
        );
        assert!(matches!(
            submitted("submit tts --text hi"),
            SubmitRequest::TextToSpeech(_)
        ));
    }

    #[test]
    fn mistakes_are_explained() {
        for (line, expected) in [
            ("submit music-ai --gender male", "--prompt"),
            (
                "submit music-ai --prompt",
                "a value is required for '--prompt",
            ),
            (
                "submit music-ai --prompt x --bogus",
                "unexpected argument '--bogus'",
            ),
            ("submit karaoke", "unrecognized subcommand 'karaoke'"),
            ("submit cover --voice-id v", "--audio-url"),
            (
                "submit cover --audio-url https://a/s --audio-file f --voice-id v",
                "cannot be used with",
            ),
            (
                "submit cover --audio-url https://a/s --voice-id v --pitch 13",
                "13 is not in -12..=12",
            ),
            (
                "submit speed-changer --audio-url https://a/s --speed-change-factor 9",
                "speed_change_factor must be between 0.25 and 4.0",
            ),
            (
                "submit extraction --audio-url https://a/s --stems kazoo",
                "invalid value 'kazoo' for '--stems",
            ),
            (
                "submit music-ai --prompt x --model v9",
                "[possible values: v6, v6-pro, v7, v7-pro]",
            ),
            (
                "submit cutter --audio-url https://a/s --start-time 9 --end-time 2",
                "end_time (2 ms) must come after start_time",
            ),
            (
                "submit remix --audio-url ftp://a/s --prompt p",
                "audio_url must be an http(s) URL",
            ),
            ("by-user --start-date yesterday", "expected 2026-01-01"),
            (
                "by-user --start-date 2026-01-02 --end-date 2026-01-01",
                "--end-date must come after",
            ),
            (
                "by-id --conversion-type KARAOKE --task-id t",
                "not a conversion type",
            ),
        ] {
            let err = error(line);
            assert!(err.contains(expected), "{line}: {err}");
        }
        let err = parse(&args("submit music-ai --prompt x"), None)
            .expect_err("no url")
            .to_string();
        assert!(err.contains("WEBHOOK_URL"), "{err}");
    }

    #[test]
    fn help_versions_and_lookups() {
        for line in ["", "--help", "submit", "submit remix --help", "--version"] {
            assert!(
                matches!(parse(&args(line), None), Ok(Command::Help(_))),
                "{line}"
            );
        }
        let Ok(Command::Help(help)) = parse(&args("submit cover --help"), None) else {
            panic!("no help")
        };
        for flag in [
            "--audio-url",
            "--audio-file",
            "--voice-id",
            "--pitch",
            "--webhook-url",
            "--dry-run",
        ] {
            assert!(help.contains(flag), "{flag} not in {help}");
        }
        assert_eq!(
            parse(
                &args("by-id --conversion-type VOICE_CHANGER --task-id t1"),
                None
            )
            .ok(),
            Some(Command::ById {
                conversion_type: ConversionType::VoiceConversion,
                task_id: Id::parse("t1").expect("id"),
            })
        );
        assert_eq!(
            parse(&args("by-user --start-date 2026-01-01 --conversion-type Music_AI --limit 20 --sort-order asc"), None).ok(),
            Some(Command::ByUser {
                conversion_type: Some(ConversionType::MusicAi),
                start: 1_767_225_600,
                end: None,
                sort_order: SortOrder::Asc,
                limit: 20,
                max_pages: 200,
            })
        );
        assert!(matches!(
            parse(
                &args("submit denoise --audio-url https://a/s.mp3 --dry-run"),
                Some(HOOK.into())
            ),
            Ok(Command::Submit { dry_run: true, .. })
        ));
    }

    #[test]
    fn completions_are_generated_for_every_shell() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let out = completions(shell);
            let script = String::from_utf8_lossy(&out);
            assert!(
                script.contains("speed-changer") && script.contains("speed-change-factor"),
                "{shell}"
            );
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
