//! MusicGPT's conversion types and submit endpoints as data (docs/musicgpt/api.md): one row per
//! `conversionType` (the docs' spelling, and the spellings clients and callbacks use), one row
//! per endpoint that takes a `webhook_url` (its command name, path, body encoding, conversion
//! type, rate-limit category and the answer fields that name its conversions), and the per-plan
//! limits. A new name or endpoint is a one-line change here.

use std::fmt;

/// A `conversionType` as MusicGPT's docs spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConversionType {
    MusicAi,
    TextToSpeech,
    VoiceConversion,
    Extraction,
    Cover,
    StemsSeparation,
    VocalExtraction,
    Denoising,
    Deecho,
    Dereverb,
    SoundGenerator,
    AudioTranscription,
    AudioSpeedChanger,
    AudioMastering,
    AudioCutter,
    Remix,
    FileConvert,
    KeyBpmExtraction,
    AudioToMidi,
    Extend,
    Inpaint,
    SingOverInstrumental,
    LyricsGenerator,
    /// Not in the docs' list ("Image-to-song's type is [unknown]"): our name, in their style.
    ImageToSong,
}

/// One conversion type: the docs' enum, whether the docs list it, and the other spellings it
/// goes by (display labels in callbacks, other clients' enums). Matching ignores case, spaces
/// and punctuation, so "Music AI", "music-ai" and "MUSIC_AI" are one name.
#[derive(Debug, Clone, Copy)]
pub struct TypeRow {
    pub conversion_type: ConversionType,
    pub api_name: &'static str,
    pub documented: bool,
    pub aliases: &'static [&'static str],
}

use ConversionType as T;

pub const CONVERSION_TYPES: &[TypeRow] = &[
    row(T::MusicAi, "MUSIC_AI", &["Audio Generation"]),
    row(T::TextToSpeech, "TEXT_TO_SPEECH", &["TTS"]),
    row(T::VoiceConversion, "VOICE_CONVERSION", &["VOICE_CHANGER"]),
    row(T::Extraction, "EXTRACTION", &[]),
    row(T::Cover, "COVER", &["Cover Song"]),
    row(T::StemsSeparation, "STEMS_SEPARATION", &["Stem Separation"]),
    row(T::VocalExtraction, "VOCAL_EXTRACTION", &[]),
    row(T::Denoising, "DENOISING", &["DENOISE"]),
    row(T::Deecho, "DEECHO", &[]),
    row(T::Dereverb, "DEREVERB", &[]),
    row(T::SoundGenerator, "SOUND_GENERATOR", &[]),
    row(
        T::AudioTranscription,
        "AUDIO_TRANSCRIPTION",
        &["AUDIO_TRANSCRIBE", "TRANSCRIPTION"],
    ),
    row(
        T::AudioSpeedChanger,
        "AUDIO_SPEED_CHANGER",
        &["SPEED_CHANGER"],
    ),
    row(T::AudioMastering, "AUDIO_MASTERING", &["MASTERING"]),
    row(T::AudioCutter, "AUDIO_CUTTER", &["CUTTER"]),
    row(T::Remix, "REMIX", &[]),
    row(
        T::FileConvert,
        "FILE_CONVERT",
        &["FILE_CONVERSION", "FILE_CONVERTER"],
    ),
    row(
        T::KeyBpmExtraction,
        "KEY_BPM_EXTRACTION",
        &["EXTRACT_KEY_BPM", "KEY_BPM"],
    ),
    row(T::AudioToMidi, "AUDIO_TO_MIDI", &[]),
    row(T::Extend, "EXTEND", &[]),
    row(T::Inpaint, "INPAINT", &[]),
    row(T::SingOverInstrumental, "SING_OVER_INSTRUMENTAL", &[]),
    row(
        T::LyricsGenerator,
        "LYRICS_GENERATOR",
        &["PROMPT_TO_LYRICS"],
    ),
    TypeRow {
        conversion_type: T::ImageToSong,
        api_name: "IMAGE_TO_SONG",
        documented: false,
        aliases: &[],
    },
];

const fn row(
    conversion_type: ConversionType,
    api_name: &'static str,
    aliases: &'static [&'static str],
) -> TypeRow {
    TypeRow {
        conversion_type,
        api_name,
        documented: true,
        aliases,
    }
}

impl ConversionType {
    /// The row of this type in [`CONVERSION_TYPES`].
    pub fn row(self) -> &'static TypeRow {
        CONVERSION_TYPES
            .iter()
            .find(|r| r.conversion_type == self)
            .unwrap_or(&UNLISTED)
    }

    /// The docs' spelling, the one sent to the API.
    pub fn as_str(self) -> &'static str {
        self.row().api_name
    }

    /// A display label ("Music AI"), the docs' enum (MUSIC_AI) or another client's spelling
    /// (VOICE_CHANGER, FILE_CONVERSION, DENOISE); `None` for a name in no row.
    pub fn parse(text: &str) -> Option<ConversionType> {
        let wanted = name_key(text);
        if wanted.is_empty() {
            return None;
        }
        CONVERSION_TYPES
            .iter()
            .find(|r| {
                name_key(r.api_name) == wanted || r.aliases.iter().any(|a| name_key(a) == wanted)
            })
            .map(|r| r.conversion_type)
    }
}

impl fmt::Display for ConversionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ConversionType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Never used: every variant has a row (a unit test checks it).
const UNLISTED: TypeRow = TypeRow {
    conversion_type: T::MusicAi,
    api_name: "MUSIC_AI",
    documented: true,
    aliases: &[],
};

/// Upper case, letters and digits only: the spelling-blind key names are matched on.
fn name_key(text: &str) -> String {
    text.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// How an endpoint wants its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Json,
    /// `multipart/form-data`: text fields and file uploads (`audio_file`, `image_file`, ...).
    Multipart,
    /// `application/x-www-form-urlencoded`.
    Form,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Multipart => "multipart",
            Encoding::Form => "form",
        }
    }
}

/// The rate-limit categories of api.md; each is counted on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitCategory {
    /// Music AI, Remix, Extend, Inpaint, Sing over instrumental: parallel tasks.
    AudioGeneration,
    /// File convert, audio to MIDI, cutter, speed changer, mastering, key/BPM: parallel tasks.
    Utilities,
    /// TTS, voice changer, extraction, cover, denoise, deecho, dereverb, sound generator,
    /// transcription, lyrics: parallel tasks.
    Enhancements,
    /// byId (and, the docs being silent, byUser): calls a minute.
    Lookups,
}

impl LimitCategory {
    pub fn label(self) -> &'static str {
        match self {
            LimitCategory::AudioGeneration => "audio generation",
            LimitCategory::Utilities => "utilities",
            LimitCategory::Enhancements => "enhancements",
            LimitCategory::Lookups => "byId/byUser lookups",
        }
    }

    /// What the plan's number counts.
    pub fn unit(self) -> &'static str {
        match self {
            LimitCategory::Lookups => "calls a minute",
            _ => "tasks at once",
        }
    }
}

/// A submit endpoint, by its command name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndpointKind {
    MusicAi,
    Remix,
    Extend,
    Inpaint,
    SingOverInstrumental,
    ImageToSong,
    Cover,
    VoiceChanger,
    TextToSpeech,
    Extraction,
    Denoise,
    Deecho,
    Dereverb,
    Mastering,
    Cutter,
    SpeedChanger,
    AudioToMidi,
    KeyBpm,
    FileConvert,
    Transcribe,
    SoundGenerator,
}

/// One conversion endpoint that takes a `webhook_url`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Endpoint {
    pub kind: EndpointKind,
    /// `musicgpt-webhook submit <command>`.
    pub command: &'static str,
    /// Under the API's base, `/api/public`; always POST.
    pub path: &'static str,
    pub encoding: Encoding,
    pub conversion_type: ConversionType,
    pub category: LimitCategory,
    /// The fields of the preliminary answer that name the conversions this task will make.
    pub conversion_id_fields: &'static [&'static str],
    /// What comes back by webhook, in words.
    pub outputs: &'static str,
}

use Encoding::{Form, Json, Multipart};
use EndpointKind as K;
use LimitCategory::{AudioGeneration, Enhancements, Utilities};

const TWO_SONGS: &[&str] = &["conversion_id_1", "conversion_id_2"];
const ONE: &[&str] = &["conversion_id"];
const NONE: &[&str] = &[];

#[rustfmt::skip]
pub const ENDPOINTS: &[Endpoint] = &[
    ep(K::MusicAi, "music-ai", "/v2/MusicAI", Json, T::MusicAi, AudioGeneration, TWO_SONGS, "2 songs, 2 timestamped lyrics, an album cover if asked, streaming URLs"),
    ep(K::Remix, "remix", "/v1/Remix", Multipart, T::Remix, AudioGeneration, TWO_SONGS, "2 songs, timestamped lyrics, a cover"),
    ep(K::Extend, "extend", "/v1/extend", Multipart, T::Extend, AudioGeneration, TWO_SONGS, "2 songs, timestamped lyrics, a cover"),
    ep(K::Inpaint, "inpaint", "/v1/inpaint", Multipart, T::Inpaint, AudioGeneration, TWO_SONGS, "2 songs, timestamped lyrics, a cover"),
    ep(K::SingOverInstrumental, "sing-over-instrumental", "/v1/sing_over_instrumental", Multipart, T::SingOverInstrumental, AudioGeneration, TWO_SONGS, "2 songs, timestamped lyrics, a cover"),
    // Its type and category are not documented; it makes two songs like Music AI.
    ep(K::ImageToSong, "image-to-song", "/v1/image_to_song", Multipart, T::ImageToSong, AudioGeneration, TWO_SONGS, "2 songs"),
    ep(K::Cover, "cover", "/v1/Cover", Multipart, T::Cover, Enhancements, ONE, "1 file"),
    ep(K::VoiceChanger, "voice-changer", "/v1/VoiceChanger", Multipart, T::VoiceConversion, Enhancements, ONE, "1 file"),
    ep(K::TextToSpeech, "text-to-speech", "/v1/TextToSpeech", Json, T::TextToSpeech, Enhancements, ONE, "1 file"),
    ep(K::Extraction, "extraction", "/v1/Extraction", Multipart, T::Extraction, Enhancements, ONE, "one file per stem, mp3 and wav"),
    ep(K::Denoise, "denoise", "/v1/denoise", Multipart, T::Denoising, Enhancements, ONE, "1 file"),
    ep(K::Deecho, "deecho", "/v1/deecho", Multipart, T::Deecho, Enhancements, ONE, "1 file"),
    ep(K::Dereverb, "dereverb", "/v1/dereverb", Multipart, T::Dereverb, Enhancements, ONE, "1 file"),
    ep(K::Mastering, "mastering", "/v1/audio_mastering", Multipart, T::AudioMastering, Utilities, ONE, "1 file"),
    ep(K::Cutter, "cutter", "/v1/audio_cutter", Multipart, T::AudioCutter, Utilities, ONE, "1 file"),
    ep(K::SpeedChanger, "speed-changer", "/v1/audio_speed_changer", Multipart, T::AudioSpeedChanger, Utilities, ONE, "1 file"),
    ep(K::AudioToMidi, "audio-to-midi", "/v1/audio_to_midi", Multipart, T::AudioToMidi, Utilities, NONE, ".mid, optional .wav and .csv"),
    ep(K::KeyBpm, "key-bpm", "/v1/extract_key_bpm", Multipart, T::KeyBpmExtraction, Utilities, ONE, "key changes, dominant key, bpm"),
    ep(K::FileConvert, "file-convert", "/v1/file_convert", Multipart, T::FileConvert, Utilities, ONE, "1 file (output_file_path)"),
    ep(K::Transcribe, "transcribe", "/v1/audio_transcribe", Multipart, T::AudioTranscription, Enhancements, ONE, "a transcript"),
    ep(K::SoundGenerator, "sound-generator", "/v1/sound_generator", Form, T::SoundGenerator, Enhancements, ONE, "1 file"),
];

#[allow(clippy::too_many_arguments)]
const fn ep(
    kind: EndpointKind,
    command: &'static str,
    path: &'static str,
    encoding: Encoding,
    conversion_type: ConversionType,
    category: LimitCategory,
    conversion_id_fields: &'static [&'static str],
    outputs: &'static str,
) -> Endpoint {
    Endpoint {
        kind,
        command,
        path,
        encoding,
        conversion_type,
        category,
        conversion_id_fields,
        outputs,
    }
}

/// Never used: every kind has a row (a unit test checks it).
const UNLISTED_ENDPOINT: Endpoint = ENDPOINTS[0];

impl EndpointKind {
    pub fn endpoint(self) -> &'static Endpoint {
        ENDPOINTS
            .iter()
            .find(|e| e.kind == self)
            .unwrap_or(&UNLISTED_ENDPOINT)
    }
}

impl Endpoint {
    pub fn by_command(command: &str) -> Option<&'static Endpoint> {
        ENDPOINTS.iter().find(|e| e.command == command)
    }

    /// The conversion ids this endpoint's answers name (2 for song generators, else 0 or 1).
    pub fn expected_conversions(&self) -> usize {
        self.conversion_id_fields.len()
    }
}

/// MusicGPT's plans (api.md's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiPlan {
    Free,
    Plus,
    Pro,
}

/// One plan's limits: tasks at once per category, byId calls a minute.
#[derive(Debug, Clone, Copy)]
pub struct PlanLimits {
    pub plan: ApiPlan,
    pub name: &'static str,
    pub audio_generation: u32,
    pub utilities: u32,
    pub enhancements: u32,
    pub lookups_per_minute: u32,
}

#[rustfmt::skip]
pub const PLAN_LIMITS: &[PlanLimits] = &[
    PlanLimits { plan: ApiPlan::Free, name: "Free", audio_generation: 1, utilities: 2, enhancements: 2, lookups_per_minute: 20 },
    PlanLimits { plan: ApiPlan::Plus, name: "PLUS", audio_generation: 5, utilities: 5, enhancements: 5, lookups_per_minute: 200 },
    PlanLimits { plan: ApiPlan::Pro, name: "PRO", audio_generation: 10, utilities: 10, enhancements: 10, lookups_per_minute: 500 },
];

/// byId calls a minute when neither `MUSICGPT_PLAN` nor `MUSICGPT_RATE_PER_MINUTE` is set: the
/// PLUS plan's, as before plans were known.
pub const DEFAULT_LOOKUPS_PER_MINUTE: u32 = 200;

impl ApiPlan {
    /// `free`, `plus` or `pro`, any case.
    pub fn parse(text: &str) -> Option<ApiPlan> {
        PLAN_LIMITS
            .iter()
            .find(|l| l.name.eq_ignore_ascii_case(text.trim()))
            .map(|l| l.plan)
    }

    pub fn limits(self) -> &'static PlanLimits {
        PLAN_LIMITS
            .iter()
            .find(|l| l.plan == self)
            .unwrap_or(&PLAN_LIMITS[1])
    }

    pub fn name(self) -> &'static str {
        self.limits().name
    }
}

impl PlanLimits {
    pub fn limit(&self, category: LimitCategory) -> u32 {
        match category {
            LimitCategory::AudioGeneration => self.audio_generation,
            LimitCategory::Utilities => self.utilities,
            LimitCategory::Enhancements => self.enhancements,
            LimitCategory::Lookups => self.lookups_per_minute,
        }
    }
}

/// How fast lookups may go, and the plan that says so (if known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub plan: Option<ApiPlan>,
    pub lookups_per_minute: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            plan: None,
            lookups_per_minute: DEFAULT_LOOKUPS_PER_MINUTE,
        }
    }
}

impl RateLimit {
    /// From `MUSICGPT_PLAN` (free|plus|pro) and `MUSICGPT_RATE_PER_MINUTE` (a positive whole
    /// number): an explicit rate wins, else the plan's byId limit, else 200. The error names
    /// the variable.
    pub fn from_settings(
        plan: Option<&str>,
        per_minute: Option<&str>,
    ) -> Result<RateLimit, String> {
        let plan =
            match plan.map(str::trim).filter(|p| !p.is_empty()) {
                None => None,
                Some(p) => Some(ApiPlan::parse(p).ok_or_else(|| {
                    format!("MUSICGPT_PLAN must be free, plus or pro (got {p:?})")
                })?),
            };
        let explicit = match per_minute.map(str::trim).filter(|r| !r.is_empty()) {
            None => None,
            Some(r) => Some(r.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                "MUSICGPT_RATE_PER_MINUTE must be a whole number above 0".to_owned()
            })?),
        };
        let lookups_per_minute = explicit
            .or(plan.map(|p| p.limits().lookups_per_minute))
            .unwrap_or(DEFAULT_LOOKUPS_PER_MINUTE);
        Ok(RateLimit {
            plan,
            lookups_per_minute,
        })
    }

    /// The pause between two lookups that keeps to the rate.
    pub fn min_interval_millis(&self) -> u64 {
        60_000u64.div_ceil(u64::from(self.lookups_per_minute.max(1)))
    }

    /// What a 429 means: which limit, and how much the plan allows (every plan's figure when
    /// the plan is not known).
    pub fn explain_429(&self, category: LimitCategory) -> String {
        let allowance = match self.plan {
            Some(plan) => {
                let n = plan.limits().limit(category);
                let unit = match (category, n) {
                    (LimitCategory::Lookups, _) => "calls a minute",
                    (_, 1) => "task at once",
                    _ => "tasks at once",
                };
                format!("the {} plan allows {n} {unit}", plan.name())
            }
            None => {
                let each: Vec<String> = PLAN_LIMITS
                    .iter()
                    .map(|l| format!("{} {}", l.name, l.limit(category)))
                    .collect();
                format!(
                    "plans allow {} {} (set MUSICGPT_PLAN to say which is yours)",
                    each.join(", "),
                    category.unit()
                )
            }
        };
        let advice = match category {
            LimitCategory::Lookups => {
                "slow down (MUSICGPT_RATE_PER_MINUTE) or try again in a minute"
            }
            _ => "wait for running tasks of this kind to finish, then submit again",
        };
        format!("over the {} limit: {allowance}; {advice}", category.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_and_every_endpoint_has_a_row() {
        for row in CONVERSION_TYPES {
            assert_eq!(row.conversion_type.as_str(), row.api_name);
            assert_eq!(
                ConversionType::parse(row.api_name),
                Some(row.conversion_type)
            );
            for alias in row.aliases {
                assert_eq!(
                    ConversionType::parse(alias),
                    Some(row.conversion_type),
                    "{alias}"
                );
            }
        }
        assert_eq!(CONVERSION_TYPES.len(), 24);
        assert_eq!(CONVERSION_TYPES.iter().filter(|r| r.documented).count(), 23);
        assert_eq!(ENDPOINTS.len(), 21);
        for endpoint in ENDPOINTS {
            assert_eq!(endpoint.kind.endpoint().command, endpoint.command);
            assert_eq!(
                Endpoint::by_command(endpoint.command).map(|e| e.kind),
                Some(endpoint.kind)
            );
            assert!(endpoint.path.starts_with("/v1/") || endpoint.path.starts_with("/v2/"));
        }
        let mut commands: Vec<_> = ENDPOINTS.iter().map(|e| e.command).collect();
        commands.sort();
        commands.dedup();
        assert_eq!(commands.len(), ENDPOINTS.len(), "command names are unique");
    }

    #[test]
    fn labels_enums_and_other_clients_spellings_are_one_type() {
        for (text, expected) in [
            ("Music AI", "MUSIC_AI"),
            ("music_ai", "MUSIC_AI"),
            ("VOICE_CHANGER", "VOICE_CONVERSION"),
            ("Voice Changer", "VOICE_CONVERSION"),
            ("FILE_CONVERSION", "FILE_CONVERT"),
            ("File Conversion", "FILE_CONVERT"),
            ("DENOISE", "DENOISING"),
            ("Key/BPM Extraction", "KEY_BPM_EXTRACTION"),
            ("Stem Separation", "STEMS_SEPARATION"),
            ("Cover Song", "COVER"),
            ("Text to Speech", "TEXT_TO_SPEECH"),
        ] {
            assert_eq!(
                ConversionType::parse(text).map(ConversionType::as_str),
                Some(expected),
                "{text}"
            );
        }
        assert_eq!(ConversionType::parse("Brand New Thing"), None);
        assert_eq!(ConversionType::parse("  "), None);
    }

    #[test]
    fn plans_set_the_lookup_rate_unless_a_rate_is_given() {
        let rate = |plan, per_minute| RateLimit::from_settings(plan, per_minute);
        assert_eq!(rate(None, None).map(|r| r.lookups_per_minute), Ok(200));
        assert_eq!(
            rate(Some("free"), None).map(|r| r.lookups_per_minute),
            Ok(20)
        );
        assert_eq!(
            rate(Some("PRO"), None).map(|r| r.lookups_per_minute),
            Ok(500)
        );
        assert_eq!(
            rate(Some("free"), Some("7")).map(|r| r.lookups_per_minute),
            Ok(7)
        );
        assert!(rate(Some("gold"), None).is_err_and(|e| e.contains("MUSICGPT_PLAN")));
        assert!(rate(None, Some("0")).is_err_and(|e| e.contains("MUSICGPT_RATE_PER_MINUTE")));
        assert_eq!(
            rate(Some("free"), None).map(|r| r.min_interval_millis()),
            Ok(3000)
        );
        assert_eq!(
            rate(None, Some("7")).map(|r| r.min_interval_millis()),
            Ok(8572)
        );
    }

    #[test]
    fn a_429_names_the_limit_and_the_plan() {
        let plus = RateLimit::from_settings(Some("plus"), None).unwrap_or_default();
        let text = plus.explain_429(LimitCategory::AudioGeneration);
        assert!(
            text.contains("audio generation") && text.contains("PLUS plan allows 5"),
            "{text}"
        );
        let unknown = RateLimit::default().explain_429(LimitCategory::Lookups);
        assert!(
            unknown.contains("Free 20, PLUS 200, PRO 500 calls a minute"),
            "{unknown}"
        );
        assert!(unknown.contains("MUSICGPT_PLAN"), "{unknown}");
    }
}
