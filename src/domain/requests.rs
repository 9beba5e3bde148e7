//! A typed request per submit endpoint (docs/musicgpt/api.md), checked before anything is sent
//! (`validate`: required fields, ranges, lengths, each problem naming the API's field), and
//! turned into its wire form (`wire`): JSON fields, form fields, or multipart fields plus the
//! local files to upload. Pure data: the adapter does the HTTP and reads the files.
//!
//! Fields are `Option`s so a request can start from `Default`; a required field left `None`
//! is a validation error, not a panic. Every request carries the `webhook_url` it is
//! submitted with.

use std::fmt;
use std::path::PathBuf;

use serde_json::{Map, Value, json};

use crate::domain::conversion::{Encoding, Endpoint, EndpointKind};
use crate::error::{Error, Result};

/// A closed set of words the API accepts, spelled as the API spells them.
pub trait Choice: Copy + PartialEq + 'static {
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;

    /// Case-insensitive.
    fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.as_str().eq_ignore_ascii_case(text.trim()))
    }

    fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|v| v.as_str()).collect()
    }
}

macro_rules! choice {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl Choice for $name {
            const ALL: &'static [Self] = &[$($name::$variant),+];
            fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

choice!(
    /// `gender`.
    Gender { Male = "male", Female = "female", Neutral = "neutral" }
);
choice!(
    /// Music AI V2's `model`: the pro models stream; `v7-pro` is the docs' recommendation.
    Model { V6 = "v6", V6Pro = "v6-pro", V7 = "v7", V7Pro = "v7-pro" }
);
choice!(
    /// `output_extension` and `target_format`.
    AudioFormat { Mp3 = "mp3", Wav = "wav", Flac = "flac", Ogg = "ogg", Aac = "aac", Webm = "webm" }
);
choice!(
    /// `target_bit_depth`.
    BitDepth { Bits16 = "16", Bits24 = "24", Bits32 = "32" }
);
choice!(
    /// Extraction's `stems`.
    Stem {
        Vocals = "vocals", Instrumental = "instrumental", MaleVocal = "male_vocal",
        FemaleVocal = "female_vocal", LeadVocal = "lead_vocal", BackVocal = "back_vocal",
        Bass = "bass", Drums = "drums", Guitar = "guitar", Piano = "piano", Keys = "keys",
        Strings = "strings", Winds = "winds", RhythmGuitar = "rhythm_guitar",
        SoloGuitar = "solo_guitar", AcousticGuitar = "acoustic_guitar",
        ElectricGuitar = "electric_guitar", KickDrum = "kick_drum", SnareDrum = "snare_drum",
        Toms = "toms", HiHat = "hi_hat", Ride = "ride", Crash = "crash",
    }
);
choice!(
    /// Extraction's `preprocessing_options`.
    Preprocessing { Denoise = "Denoise", Deecho = "Deecho", Dereverb = "Dereverb" }
);

/// Where an input file comes from: a URL MusicGPT fetches, or a local file uploaded as a
/// multipart part (`audio_url` | `audio_file`).
#[derive(Debug, Clone, PartialEq)]
pub enum Media {
    Url(String),
    File(PathBuf),
}

/// Music AI through V2 (`POST /v2/MusicAI`, JSON).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MusicAiRequest {
    /// Kept under 280 characters.
    pub prompt: Option<String>,
    pub music_style: Option<String>,
    pub lyrics: Option<String>,
    pub make_instrumental: Option<bool>,
    pub vocal_only: Option<bool>,
    pub voice_id: Option<String>,
    pub title: Option<String>,
    pub gender: Option<Gender>,
    /// Opt-in since May 2026.
    pub generate_album_cover: Option<bool>,
    pub model: Option<Model>,
    /// Listed by a third-party guide, not the docs.
    pub lyrics_timestamps: Option<bool>,
    pub webhook_url: String,
}

/// `POST /v1/Remix`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RemixRequest {
    pub audio: Option<Media>,
    pub prompt: Option<String>,
    pub lyrics: Option<String>,
    pub gender: Option<Gender>,
    pub webhook_url: String,
}

/// `POST /v1/extend`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExtendRequest {
    pub audio: Option<Media>,
    /// Seconds into the song.
    pub extend_after: Option<f64>,
    pub prompt: Option<String>,
    pub lyrics: Option<String>,
    pub gender: Option<Gender>,
    pub webhook_url: String,
}

/// `POST /v1/inpaint`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InpaintRequest {
    pub audio: Option<Media>,
    pub prompt: Option<String>,
    /// Seconds.
    pub replace_start_at: Option<f64>,
    pub replace_end_at: Option<f64>,
    pub lyrics: Option<String>,
    pub lyrics_section_to_replace: Option<String>,
    pub gender: Option<Gender>,
    pub webhook_url: String,
}

/// `POST /v1/sing_over_instrumental`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SingOverInstrumentalRequest {
    pub audio: Option<Media>,
    pub prompt: Option<String>,
    pub lyrics: Option<String>,
    pub gender: Option<Gender>,
    pub webhook_url: String,
}

/// `POST /v1/image_to_song` (`image_url` | `image_file`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageToSongRequest {
    pub image: Option<Media>,
    pub prompt: Option<String>,
    pub lyrics: Option<String>,
    pub negative_tags: Option<String>,
    pub make_instrumental: Option<bool>,
    pub vocal_only: Option<bool>,
    pub key: Option<String>,
    pub bpm: Option<u32>,
    pub voice_id: Option<String>,
    pub webhook_url: String,
}

/// `POST /v1/Cover`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CoverRequest {
    pub audio: Option<Media>,
    pub voice_id: Option<String>,
    /// Semitones, -12..=12.
    pub pitch: Option<i32>,
    pub webhook_url: String,
}

/// `POST /v1/VoiceChanger`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VoiceChangerRequest {
    pub audio: Option<Media>,
    pub voice_id: Option<String>,
    /// Sent as 0 or 1.
    pub remove_background: Option<bool>,
    /// Semitones, -12..=12.
    pub pitch: Option<i32>,
    pub webhook_url: String,
}

/// `POST /v1/TextToSpeech` (JSON).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextToSpeechRequest {
    pub text: Option<String>,
    pub sample_audio_url: Option<String>,
    pub voice_id: Option<String>,
    pub gender: Option<Gender>,
    pub webhook_url: String,
}

/// `POST /v1/Extraction`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExtractionRequest {
    pub audio: Option<Media>,
    /// Sent as a JSON list.
    pub stems: Vec<Stem>,
    /// Sent as a JSON list.
    pub preprocessing_options: Vec<Preprocessing>,
    pub eco_mode: Option<bool>,
    pub webhook_url: String,
}

/// `POST /v1/denoise`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DenoiseRequest {
    pub audio: Option<Media>,
    pub webhook_url: String,
}

/// `POST /v1/deecho`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeechoRequest {
    pub audio: Option<Media>,
    pub webhook_url: String,
}

/// `POST /v1/dereverb`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DereverbRequest {
    pub audio: Option<Media>,
    pub webhook_url: String,
}

/// `POST /v1/audio_mastering` (`reference_audio_url` | `reference_audio_file`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MasteringRequest {
    pub audio: Option<Media>,
    pub reference: Option<Media>,
    pub output_extension: Option<AudioFormat>,
    pub webhook_url: String,
}

/// `POST /v1/audio_cutter`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CutterRequest {
    pub audio: Option<Media>,
    /// Milliseconds.
    pub start_time: Option<u64>,
    pub end_time: Option<u64>,
    pub output_extension: Option<AudioFormat>,
    pub webhook_url: String,
}

/// `POST /v1/audio_speed_changer`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpeedChangerRequest {
    pub audio: Option<Media>,
    /// 0.25..=4.0.
    pub speed_change_factor: Option<f64>,
    pub output_extension: Option<AudioFormat>,
    pub webhook_url: String,
}

/// `POST /v1/audio_to_midi`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AudioToMidiRequest {
    pub audio: Option<Media>,
    /// Default true: adds a .wav.
    pub sonify_midi: Option<bool>,
    /// Default true: adds a .csv.
    pub save_note_events: Option<bool>,
    pub webhook_url: String,
}

/// `POST /v1/extract_key_bpm`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyBpmRequest {
    pub audio: Option<Media>,
    pub webhook_url: String,
}

/// `POST /v1/file_convert`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileConvertRequest {
    pub audio: Option<Media>,
    pub target_format: Option<AudioFormat>,
    /// Sample rate in Hz.
    pub target_sr: Option<u32>,
    pub target_bit_depth: Option<BitDepth>,
    pub webhook_url: String,
}

/// `POST /v1/audio_transcribe`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TranscribeRequest {
    pub audio: Option<Media>,
    pub language: Option<String>,
    pub translate: Option<bool>,
    /// `srt`, `plain_text`, ... (an open set in the docs).
    pub transcription_format: Option<String>,
    pub word_timestamps: Option<bool>,
    pub webhook_url: String,
}

/// `POST /v1/sound_generator` (form-encoded).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SoundGeneratorRequest {
    pub prompt: Option<String>,
    /// Seconds.
    pub audio_length: Option<u32>,
    pub webhook_url: String,
}

/// One value of the wire form, typed so JSON keeps booleans and numbers.
#[derive(Debug, Clone, PartialEq)]
pub enum WireValue {
    Text(String),
    Bool(bool),
    Int(i64),
    Float(f64),
    /// Sent as a JSON list (in multipart and form bodies too, as text).
    List(Vec<String>),
}

impl WireValue {
    pub fn to_json(&self) -> Value {
        match self {
            WireValue::Text(s) => json!(s),
            WireValue::Bool(b) => json!(b),
            WireValue::Int(n) => json!(n),
            WireValue::Float(x) => json!(x),
            WireValue::List(items) => json!(items),
        }
    }

    /// The text of a form or multipart field.
    pub fn to_text(&self) -> String {
        match self {
            WireValue::Text(s) => s.clone(),
            WireValue::Bool(b) => b.to_string(),
            WireValue::Int(n) => n.to_string(),
            WireValue::Float(x) => x.to_string(),
            WireValue::List(_) => self.to_json().to_string(),
        }
    }
}

/// A local file to upload as the multipart part `field`.
#[derive(Debug, Clone, PartialEq)]
pub struct FilePart {
    pub field: &'static str,
    pub path: PathBuf,
}

/// A checked request in the shape its endpoint takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Wire {
    pub endpoint: &'static Endpoint,
    pub fields: Vec<(&'static str, WireValue)>,
    /// Only for multipart endpoints.
    pub files: Vec<FilePart>,
}

impl Wire {
    pub fn encoding(&self) -> Encoding {
        self.endpoint.encoding
    }

    /// The JSON body (for JSON endpoints).
    pub fn json(&self) -> Map<String, Value> {
        self.fields
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.to_json()))
            .collect()
    }

    /// The text fields of a form or multipart body.
    pub fn text_fields(&self) -> Vec<(&'static str, String)> {
        self.fields
            .iter()
            .map(|(name, value)| (*name, value.to_text()))
            .collect()
    }

    /// `application/x-www-form-urlencoded` text (for form endpoints).
    pub fn form_body(&self) -> String {
        let mut form = form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.text_fields() {
            form.append_pair(name, &value);
        }
        form.finish()
    }

    pub fn field(&self, name: &str) -> Option<&WireValue> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// What every request type does.
pub trait Conversion {
    fn kind(&self) -> EndpointKind;
    fn webhook_url(&self) -> &str;
    /// The first problem with the fields, naming the field.
    fn problems(&self) -> Result<(), String>;
    /// The fields in the API's terms, files included, `webhook_url` excluded.
    fn fields(&self) -> Fields;
}

/// Any submit request.
#[derive(Debug, Clone, PartialEq)]
pub enum SubmitRequest {
    MusicAi(MusicAiRequest),
    Remix(RemixRequest),
    Extend(ExtendRequest),
    Inpaint(InpaintRequest),
    SingOverInstrumental(SingOverInstrumentalRequest),
    ImageToSong(ImageToSongRequest),
    Cover(CoverRequest),
    VoiceChanger(VoiceChangerRequest),
    TextToSpeech(TextToSpeechRequest),
    Extraction(ExtractionRequest),
    Denoise(DenoiseRequest),
    Deecho(DeechoRequest),
    Dereverb(DereverbRequest),
    Mastering(MasteringRequest),
    Cutter(CutterRequest),
    SpeedChanger(SpeedChangerRequest),
    AudioToMidi(AudioToMidiRequest),
    KeyBpm(KeyBpmRequest),
    FileConvert(FileConvertRequest),
    Transcribe(TranscribeRequest),
    SoundGenerator(SoundGeneratorRequest),
}

macro_rules! dispatch {
    ($($variant:ident($ty:ty)),+ $(,)?) => {
        impl SubmitRequest {
            fn inner(&self) -> &dyn Conversion {
                match self { $(SubmitRequest::$variant(r) => r),+ }
            }

            /// Sets the webhook URL, whatever the request type.
            pub fn set_webhook_url(&mut self, url: String) {
                match self { $(SubmitRequest::$variant(r) => r.webhook_url = url),+ }
            }
        }

        $(impl From<$ty> for SubmitRequest {
            fn from(request: $ty) -> SubmitRequest {
                SubmitRequest::$variant(request)
            }
        })+
    };
}

dispatch!(
    MusicAi(MusicAiRequest),
    Remix(RemixRequest),
    Extend(ExtendRequest),
    Inpaint(InpaintRequest),
    SingOverInstrumental(SingOverInstrumentalRequest),
    ImageToSong(ImageToSongRequest),
    Cover(CoverRequest),
    VoiceChanger(VoiceChangerRequest),
    TextToSpeech(TextToSpeechRequest),
    Extraction(ExtractionRequest),
    Denoise(DenoiseRequest),
    Deecho(DeechoRequest),
    Dereverb(DereverbRequest),
    Mastering(MasteringRequest),
    Cutter(CutterRequest),
    SpeedChanger(SpeedChangerRequest),
    AudioToMidi(AudioToMidiRequest),
    KeyBpm(KeyBpmRequest),
    FileConvert(FileConvertRequest),
    Transcribe(TranscribeRequest),
    SoundGenerator(SoundGeneratorRequest),
);

impl SubmitRequest {
    pub fn endpoint(&self) -> &'static Endpoint {
        self.inner().kind().endpoint()
    }

    pub fn webhook_url(&self) -> &str {
        self.inner().webhook_url()
    }

    /// Every check that can be made before sending; the error names the command and the
    /// field (`remix: prompt is required`).
    pub fn validate(&self) -> Result<()> {
        let endpoint = self.endpoint();
        let invalid = |why: String| Error::InvalidRequest(format!("{}: {why}", endpoint.command));
        check_webhook_url(self.webhook_url()).map_err(invalid)?;
        self.inner().problems().map_err(invalid)?;
        let fields = self.inner().fields();
        if endpoint.encoding != Encoding::Multipart
            && let Some(file) = fields.files.first()
        {
            return Err(invalid(format!(
                "{} cannot be uploaded to this endpoint",
                file.field
            )));
        }
        Ok(())
    }

    /// The checked request in its wire form.
    pub fn wire(&self) -> Result<Wire> {
        self.validate()?;
        let mut fields = self.inner().fields();
        fields.values.push((
            "webhook_url",
            WireValue::Text(self.webhook_url().to_owned()),
        ));
        Ok(Wire {
            endpoint: self.endpoint(),
            fields: fields.values,
            files: fields.files,
        })
    }
}

/// The fields of a request as they are built.
#[derive(Debug, Default)]
pub struct Fields {
    values: Vec<(&'static str, WireValue)>,
    files: Vec<FilePart>,
}

impl Fields {
    fn text(mut self, name: &'static str, value: &Option<String>) -> Self {
        if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            self.values.push((name, WireValue::Text(v.to_owned())));
        }
        self
    }

    /// Long texts (lyrics) keep their inner layout; only all-blank values are left out.
    fn verbatim(mut self, name: &'static str, value: &Option<String>) -> Self {
        if let Some(v) = value.as_ref().filter(|v| !v.trim().is_empty()) {
            self.values.push((name, WireValue::Text(v.clone())));
        }
        self
    }

    fn choice<C: Choice>(mut self, name: &'static str, value: Option<C>) -> Self {
        if let Some(v) = value {
            self.values
                .push((name, WireValue::Text(v.as_str().to_owned())));
        }
        self
    }

    fn flag(mut self, name: &'static str, value: Option<bool>) -> Self {
        if let Some(v) = value {
            self.values.push((name, WireValue::Bool(v)));
        }
        self
    }

    /// A boolean the API wants as 0 or 1.
    fn bit(mut self, name: &'static str, value: Option<bool>) -> Self {
        if let Some(v) = value {
            self.values.push((name, WireValue::Int(i64::from(v))));
        }
        self
    }

    fn int(mut self, name: &'static str, value: Option<i64>) -> Self {
        if let Some(v) = value {
            self.values.push((name, WireValue::Int(v)));
        }
        self
    }

    fn float(mut self, name: &'static str, value: Option<f64>) -> Self {
        if let Some(v) = value {
            self.values.push((name, WireValue::Float(v)));
        }
        self
    }

    fn list<C: Choice>(mut self, name: &'static str, values: &[C]) -> Self {
        if !values.is_empty() {
            let items = values.iter().map(|v| v.as_str().to_owned()).collect();
            self.values.push((name, WireValue::List(items)));
        }
        self
    }

    fn media(
        mut self,
        url_field: &'static str,
        file_field: &'static str,
        media: &Option<Media>,
    ) -> Self {
        match media {
            Some(Media::Url(url)) => self
                .values
                .push((url_field, WireValue::Text(url.trim().to_owned()))),
            Some(Media::File(path)) => self.files.push(FilePart {
                field: file_field,
                path: path.clone(),
            }),
            None => {}
        }
        self
    }
}

// Checks, each naming the API's field.

fn check_webhook_url(url: &str) -> Result<(), String> {
    let url = url.trim();
    if url.is_empty() {
        return Err("webhook_url is required (WEBHOOK_URL or --webhook-url)".into());
    }
    if !is_http_url(url) {
        return Err("webhook_url must be an http(s) URL".into());
    }
    Ok(())
}

fn is_http_url(text: &str) -> bool {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?', '#']).next().unwrap_or_default();
        !host.is_empty() && !r.chars().any(char::is_whitespace)
    })
}

fn given(value: &Option<String>) -> bool {
    value.as_deref().is_some_and(|v| !v.trim().is_empty())
}

fn required(field: &str, value: &Option<String>) -> Result<(), String> {
    if given(value) {
        Ok(())
    } else {
        Err(format!("{field} is required"))
    }
}

fn max_chars(field: &str, value: &Option<String>, max: usize) -> Result<(), String> {
    match value {
        Some(v) if v.chars().count() > max => Err(format!(
            "{field} is {} characters long; at most {max} are accepted",
            v.chars().count()
        )),
        _ => Ok(()),
    }
}

fn media(url_field: &str, file_field: &str, value: &Option<Media>) -> Result<(), String> {
    match value {
        None => Err(format!("{url_field} or {file_field} is required")),
        Some(Media::Url(url)) if !is_http_url(url.trim()) => {
            Err(format!("{url_field} must be an http(s) URL"))
        }
        Some(Media::File(path)) if path.as_os_str().is_empty() => {
            Err(format!("{file_field} names no file"))
        }
        Some(_) => Ok(()),
    }
}

fn pitch(value: Option<i32>) -> Result<(), String> {
    match value {
        Some(p) if !(-12..=12).contains(&p) => Err(format!(
            "pitch must be between -12 and 12 semitones (got {p})"
        )),
        _ => Ok(()),
    }
}

fn seconds(field: &str, value: Option<f64>) -> Result<(), String> {
    match value {
        Some(s) if !s.is_finite() || s < 0.0 => Err(format!(
            "{field} must be a number of seconds, 0 or more (got {s})"
        )),
        _ => Ok(()),
    }
}

fn needed<T>(field: &str, value: Option<T>) -> Result<T, String> {
    value.ok_or_else(|| format!("{field} is required"))
}

fn exclusive(a: (&str, bool), b: (&str, bool)) -> Result<(), String> {
    if a.1 && b.1 {
        Err(format!("{} and {} exclude each other", a.0, b.0))
    } else {
        Ok(())
    }
}

fn no_repeats<C: Choice>(field: &str, values: &[C]) -> Result<(), String> {
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            return Err(format!("{field} lists {} twice", v.as_str()));
        }
    }
    Ok(())
}

const LYRICS_MAX: usize = 2000;
const MUSIC_AI_PROMPT_MAX: usize = 280;
const SHORT_PROMPT_MAX: usize = 300;
const IMAGE_LYRICS_MAX: usize = 3000;

impl Conversion for MusicAiRequest {
    fn kind(&self) -> EndpointKind {
        EndpointKind::MusicAi
    }
    fn webhook_url(&self) -> &str {
        &self.webhook_url
    }
    fn problems(&self) -> Result<(), String> {
        if !(given(&self.prompt) || given(&self.lyrics) || given(&self.music_style)) {
            return Err("prompt, lyrics or music_style is required".into());
        }
        max_chars("prompt", &self.prompt, MUSIC_AI_PROMPT_MAX)?;
        exclusive(
            ("make_instrumental", self.make_instrumental == Some(true)),
            ("vocal_only", self.vocal_only == Some(true)),
        )
    }
    fn fields(&self) -> Fields {
        Fields::default()
            .text("prompt", &self.prompt)
            .text("music_style", &self.music_style)
            .verbatim("lyrics", &self.lyrics)
            .flag("make_instrumental", self.make_instrumental)
            .flag("vocal_only", self.vocal_only)
            .text("voice_id", &self.voice_id)
            .text("title", &self.title)
            .choice("gender", self.gender)
            .flag("generate_album_cover", self.generate_album_cover)
            .choice("model", self.model)
            .flag("lyrics_timestamps", self.lyrics_timestamps)
    }
}

impl Conversion for RemixRequest {
    fn kind(&self) -> EndpointKind {
        EndpointKind::Remix
    }
    fn webhook_url(&self) -> &str {
        &self.webhook_url
    }
    fn problems(&self) -> Result<(), String> {
        media("audio_url", "audio_file", &self.audio)?;
        required("prompt", &self.prompt)?;
        max_chars("lyrics", &self.lyrics, LYRICS_MAX)
    }
    fn fields(&self) -> Fields {
        Fields::default()
            .media("audio_url", "audio_file", &self.audio)
            .text("prompt", &self.prompt)
            .verbatim("lyrics", &self.lyrics)
            .choice("gender", self.gender)
    }
}

impl Conversion for ExtendRequest {
    fn kind(&self) -> EndpointKind {
        EndpointKind::Extend
    }
    fn webhook_url(&self) -> &str {
        &self.webhook_url
    }
    fn problems(&self) -> Result<(), String> {
        media("audio_url", "audio_file", &self.audio)?;
        seconds(
            "extend_after",
            Some(needed("extend_after", self.extend_after)?),
        )
    }
    fn fields(&self) -> Fields {
        Fields::default()
            .media("audio_url", "audio_file", &self.audio)
            .float("extend_after", self.extend_after)
            .text("prompt", &self.prompt)
            .verbatim("lyrics", &self.lyrics)
            .choice("gender", self.gender)
    }
}

impl Conversion for InpaintRequest {
    fn kind(&self) -> EndpointKind {
        EndpointKind::Inpaint
    }
    fn webhook_url(&self) -> &str {
        &self.webhook_url
    }
    fn problems(&self) -> Result<(), String> {
        media("audio_url", "audio_file", &self.audio)?;
        required("prompt", &self.prompt)?;
        let start = needed("replace_start_at", self.replace_start_at)?;
        let end = needed("replace_end_at", self.replace_end_at)?;
        seconds("replace_start_at", Some(start))?;
        seconds("replace_end_at", Some(end))?;
        if end <= start {
            return Err(format!(
                "replace_end_at ({end}) must come after replace_start_at ({start})"
            ));
        }
        Ok(())
    }
    fn fields(&self) -> Fields {
        Fields::default()
            .media("audio_url", "audio_file", &self.audio)
            .text("prompt", &self.prompt)
            .float("replace_start_at", self.replace_start_at)
            .float("replace_end_at", self.replace_end_at)
            .verbatim("lyrics", &self.lyrics)
            .verbatim("lyrics_section_to_replace", &self.lyrics_section_to_replace)
            .choice("gender", self.gender)
    }
}

impl Conversion for SingOverInstrumentalRequest {
    fn kind(&self) -> EndpointKind {
        EndpointKind::SingOverInstrumental
    }
    fn webhook_url(&self) -> &str {
        &self.webhook_url
    }
    fn problems(&self) -> Result<(), String> {
        media("audio_url", "audio_file", &self.audio)?;
        required("prompt", &self.prompt)?;
        required("lyrics", &self.lyrics)?;
        max_chars("lyrics", &self.lyrics, LYRICS_MAX)
    }
    fn fields(&self) -> Fields {
        Fields::default()
            .media("audio_url", "audio_file", &self.audio)
            .text("prompt", &self.prompt)
            .verbatim("lyrics", &self.lyrics)
            .choice("gender", self.gender)
    }
}

impl Conversion for ImageToSongRequest {
    fn kind(&self) -> EndpointKind {
        EndpointKind::ImageToSong
    }
    fn webhook_url(&self) -> &str {
        &self.webhook_url
    }
    fn problems(&self) -> Result<(), String> {
        media("image_url", "image_file", &self.image)?;
        max_chars("prompt", &self.prompt, SHORT_PROMPT_MAX)?;
        max_chars("lyrics", &self.lyrics, IMAGE_LYRICS_MAX)?;
        if self.bpm == Some(0) {
            return Err("bpm must be above 0".into());
        }
        exclusive(
            ("make_instrumental", self.make_instrumental == Some(true)),
            ("vocal_only", self.vocal_only == Some(true)),
        )
    }
    fn fields(&self) -> Fields {
        Fields::default()
            .media("image_url", "image_file", &self.image)
            .text("prompt", &self.prompt)
            .verbatim("lyrics", &self.lyrics)
            .text("negative_tags", &self.negative_tags)
            .flag("make_instrumental", self.make_instrumental)
            .flag("vocal_only", self.vocal_only)
            .text("key", &self.key)
            .int("bpm", self.bpm.map(i64::from))
            .text("voice_id", &self.voice_id)
    }
}

impl Conversion for CoverRequest {
    fn kind(&self) -> EndpointKind {
        EndpointKind::Cover
    }
    fn webhook_url(&self) -> &str {
        &self.webhook_url
    }
    fn problems(&self) -> Result<(), String> {
        media("audio_url", "audio_file", &self.audio)?;
        required("voice_id", &self.voice_id)?;
        pitch(self.pitch)
    }
    fn fields(&self) -> Fields {
        Fields::default()
            .media("audio_url", "audio_file", &self.audio)
            .text("voice_id", &self.voice_id)
            .int("pitch", self.pitch.map(i64::from))
    }
}

impl Conversion for VoiceChangerRequest {
    fn kind(&self) -> EndpointKind {
        EndpointKind::VoiceChanger
    }
    fn webhook_url(&self) -> &str {
        &self.webhook_url
    }
    fn problems(&self) -> Result<(), String> {
        media("audio_url", "audio_file", &self.audio)?;
        required("voice_id", &self.voice_id)?;
        pitch(self.pitch)
    }
    fn fields(&self) -> Fields {
        Fields::default()
            .media("audio_url", "audio_file", &self.audio)
            .text("voice_id", &self.voice_id)
            .bit("remove_background", self.remove_background)
            .int("pitch", self.pitch.map(i64::from))
    }
}

impl Conversion for TextToSpeechRequest {
    fn kind(&self) -> EndpointKind {
        EndpointKind::TextToSpeech
    }
    fn webhook_url(&self) -> &str {
        &self.webhook_url
    }
    fn problems(&self) -> Result<(), String> {
        required("text", &self.text)?;
        exclusive(
            ("sample_audio_url", given(&self.sample_audio_url)),
            ("voice_id", given(&self.voice_id)),
        )?;
        match &self.sample_audio_url {
            Some(url) if given(&self.sample_audio_url) && !is_http_url(url.trim()) => {
                Err("sample_audio_url must be an http(s) URL".into())
            }
            _ => Ok(()),
        }
    }
    fn fields(&self) -> Fields {
        Fields::default()
            .verbatim("text", &self.text)
            .text("sample_audio_url", &self.sample_audio_url)
            .text("voice_id", &self.voice_id)
            .choice("gender", self.gender)
    }
}

impl Conversion for ExtractionRequest {
    fn kind(&self) -> EndpointKind {
        EndpointKind::Extraction
    }
    fn webhook_url(&self) -> &str {
        &self.webhook_url
    }
    fn problems(&self) -> Result<(), String> {
        media("audio_url", "audio_file", &self.audio)?;
        if self.stems.is_empty() {
            return Err(format!(
                "stems is required: one or more of {}",
                Stem::names().join(", ")
            ));
        }
        no_repeats("stems", &self.stems)?;
        no_repeats("preprocessing_options", &self.preprocessing_options)
    }
    fn fields(&self) -> Fields {
        Fields::default()
            .media("audio_url", "audio_file", &self.audio)
            .list("stems", &self.stems)
            .list("preprocessing_options", &self.preprocessing_options)
            .flag("eco_mode", self.eco_mode)
    }
}

macro_rules! audio_only {
    ($($ty:ident => $kind:ident),+ $(,)?) => {$(
        impl Conversion for $ty {
            fn kind(&self) -> EndpointKind {
                EndpointKind::$kind
            }
            fn webhook_url(&self) -> &str {
                &self.webhook_url
            }
            fn problems(&self) -> Result<(), String> {
                media("audio_url", "audio_file", &self.audio)
            }
            fn fields(&self) -> Fields {
                Fields::default().media("audio_url", "audio_file", &self.audio)
            }
        }
    )+};
}

audio_only!(
    DenoiseRequest => Denoise,
    DeechoRequest => Deecho,
    DereverbRequest => Dereverb,
    KeyBpmRequest => KeyBpm,
);

impl Conversion for MasteringRequest {
    fn kind(&self) -> EndpointKind {
        EndpointKind::Mastering
    }
    fn webhook_url(&self) -> &str {
        &self.webhook_url
    }
    fn problems(&self) -> Result<(), String> {
        media("audio_url", "audio_file", &self.audio)?;
        media(
            "reference_audio_url",
            "reference_audio_file",
            &self.reference,
        )
    }
    fn fields(&self) -> Fields {
        Fields::default()
            .media("audio_url", "audio_file", &self.audio)
            .media(
                "reference_audio_url",
                "reference_audio_file",
                &self.reference,
            )
            .choice("output_extension", self.output_extension)
    }
}

impl Conversion for CutterRequest {
    fn kind(&self) -> EndpointKind {
        EndpointKind::Cutter
    }
    fn webhook_url(&self) -> &str {
        &self.webhook_url
    }
    fn problems(&self) -> Result<(), String> {
        media("audio_url", "audio_file", &self.audio)?;
        let start = needed("start_time", self.start_time)?;
        let end = needed("end_time", self.end_time)?;
        if end <= start {
            return Err(format!(
                "end_time ({end} ms) must come after start_time ({start} ms)"
            ));
        }
        Ok(())
    }
    fn fields(&self) -> Fields {
        let ms = |v: Option<u64>| v.and_then(|v| i64::try_from(v).ok());
        Fields::default()
            .media("audio_url", "audio_file", &self.audio)
            .int("start_time", ms(self.start_time))
            .int("end_time", ms(self.end_time))
            .choice("output_extension", self.output_extension)
    }
}

impl Conversion for SpeedChangerRequest {
    fn kind(&self) -> EndpointKind {
        EndpointKind::SpeedChanger
    }
    fn webhook_url(&self) -> &str {
        &self.webhook_url
    }
    fn problems(&self) -> Result<(), String> {
        media("audio_url", "audio_file", &self.audio)?;
        let factor = needed("speed_change_factor", self.speed_change_factor)?;
        if !(0.25..=4.0).contains(&factor) {
            return Err(format!(
                "speed_change_factor must be between 0.25 and 4.0 (got {factor})"
            ));
        }
        Ok(())
    }
    fn fields(&self) -> Fields {
        Fields::default()
            .media("audio_url", "audio_file", &self.audio)
            .float("speed_change_factor", self.speed_change_factor)
            .choice("output_extension", self.output_extension)
    }
}

impl Conversion for AudioToMidiRequest {
    fn kind(&self) -> EndpointKind {
        EndpointKind::AudioToMidi
    }
    fn webhook_url(&self) -> &str {
        &self.webhook_url
    }
    fn problems(&self) -> Result<(), String> {
        media("audio_url", "audio_file", &self.audio)
    }
    fn fields(&self) -> Fields {
        Fields::default()
            .media("audio_url", "audio_file", &self.audio)
            .flag("sonify_midi", self.sonify_midi)
            .flag("save_note_events", self.save_note_events)
    }
}

impl Conversion for FileConvertRequest {
    fn kind(&self) -> EndpointKind {
        EndpointKind::FileConvert
    }
    fn webhook_url(&self) -> &str {
        &self.webhook_url
    }
    fn problems(&self) -> Result<(), String> {
        media("audio_url", "audio_file", &self.audio)?;
        needed("target_format", self.target_format)?;
        match self.target_sr {
            Some(sr) if !(1_000..=384_000).contains(&sr) => Err(format!(
                "target_sr must be a sample rate between 1000 and 384000 Hz (got {sr})"
            )),
            _ => Ok(()),
        }
    }
    fn fields(&self) -> Fields {
        Fields::default()
            .media("audio_url", "audio_file", &self.audio)
            .choice("target_format", self.target_format)
            .int("target_sr", self.target_sr.map(i64::from))
            .choice("target_bit_depth", self.target_bit_depth)
    }
}

impl Conversion for TranscribeRequest {
    fn kind(&self) -> EndpointKind {
        EndpointKind::Transcribe
    }
    fn webhook_url(&self) -> &str {
        &self.webhook_url
    }
    fn problems(&self) -> Result<(), String> {
        media("audio_url", "audio_file", &self.audio)
    }
    fn fields(&self) -> Fields {
        Fields::default()
            .media("audio_url", "audio_file", &self.audio)
            .text("language", &self.language)
            .flag("translate", self.translate)
            .text("transcription_format", &self.transcription_format)
            .flag("word_timestamps", self.word_timestamps)
    }
}

impl Conversion for SoundGeneratorRequest {
    fn kind(&self) -> EndpointKind {
        EndpointKind::SoundGenerator
    }
    fn webhook_url(&self) -> &str {
        &self.webhook_url
    }
    fn problems(&self) -> Result<(), String> {
        required("prompt", &self.prompt)?;
        max_chars("prompt", &self.prompt, SHORT_PROMPT_MAX)?;
        if self.audio_length == Some(0) {
            return Err("audio_length must be at least 1 second".into());
        }
        Ok(())
    }
    fn fields(&self) -> Fields {
        Fields::default()
            .text("prompt", &self.prompt)
            .int("audio_length", self.audio_length.map(i64::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOOK: &str = "https://h.example/webhook/token-0123456789abcdef";

    fn url(u: &str) -> Option<Media> {
        Some(Media::Url(u.into()))
    }

    fn problem(request: impl Into<SubmitRequest>) -> String {
        match request.into().validate() {
            Ok(()) => "valid".into(),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn required_fields_are_named() {
        let cases: Vec<(SubmitRequest, &str)> = vec![
            (
                MusicAiRequest {
                    webhook_url: HOOK.into(),
                    ..Default::default()
                }
                .into(),
                "music-ai: prompt, lyrics or music_style is required",
            ),
            (
                RemixRequest {
                    webhook_url: HOOK.into(),
                    prompt: Some("x".into()),
                    ..Default::default()
                }
                .into(),
                "remix: audio_url or audio_file is required",
            ),
            (
                RemixRequest {
                    webhook_url: HOOK.into(),
                    audio: url("https://a/b.mp3"),
                    ..Default::default()
                }
                .into(),
                "remix: prompt is required",
            ),
            (
                ExtendRequest {
                    webhook_url: HOOK.into(),
                    audio: url("https://a/b.mp3"),
                    ..Default::default()
                }
                .into(),
                "extend: extend_after is required",
            ),
            (
                CoverRequest {
                    webhook_url: HOOK.into(),
                    audio: url("https://a/b.mp3"),
                    ..Default::default()
                }
                .into(),
                "cover: voice_id is required",
            ),
            (
                TextToSpeechRequest {
                    webhook_url: HOOK.into(),
                    ..Default::default()
                }
                .into(),
                "text-to-speech: text is required",
            ),
            (
                MasteringRequest {
                    webhook_url: HOOK.into(),
                    audio: url("https://a/b.mp3"),
                    ..Default::default()
                }
                .into(),
                "mastering: reference_audio_url or reference_audio_file is required",
            ),
            (
                FileConvertRequest {
                    webhook_url: HOOK.into(),
                    audio: url("https://a/b.mp3"),
                    ..Default::default()
                }
                .into(),
                "file-convert: target_format is required",
            ),
            (
                ImageToSongRequest {
                    webhook_url: HOOK.into(),
                    ..Default::default()
                }
                .into(),
                "image-to-song: image_url or image_file is required",
            ),
            (
                SoundGeneratorRequest {
                    webhook_url: HOOK.into(),
                    ..Default::default()
                }
                .into(),
                "sound-generator: prompt is required",
            ),
            (
                DenoiseRequest {
                    audio: url("https://a/b.mp3"),
                    ..Default::default()
                }
                .into(),
                "denoise: webhook_url is required",
            ),
        ];
        for (request, expected) in cases {
            let text = problem(request);
            assert!(text.contains(expected), "{expected:?} not in {text:?}");
        }
    }

    #[test]
    fn ranges_and_lengths_are_checked() {
        let audio = url("https://a/b.mp3");
        let cover = |p| CoverRequest {
            audio: audio.clone(),
            voice_id: Some("v".into()),
            pitch: Some(p),
            webhook_url: HOOK.into(),
        };
        assert_eq!(problem(cover(-12)), "valid");
        assert_eq!(problem(cover(12)), "valid");
        assert!(problem(cover(13)).contains("pitch must be between -12 and 12"));
        assert!(problem(cover(-13)).contains("pitch"));
        let speed = |f| SpeedChangerRequest {
            audio: audio.clone(),
            speed_change_factor: Some(f),
            webhook_url: HOOK.into(),
            ..Default::default()
        };
        assert_eq!(problem(speed(0.25)), "valid");
        assert_eq!(problem(speed(4.0)), "valid");
        assert!(problem(speed(4.01)).contains("speed_change_factor must be between 0.25 and 4.0"));
        assert!(problem(speed(0.1)).contains("speed_change_factor"));
        assert!(problem(speed(f64::NAN)).contains("speed_change_factor"));
        let lyrics = "la ".repeat(700);
        let remix = RemixRequest {
            audio: audio.clone(),
            prompt: Some("p".into()),
            lyrics: Some(lyrics),
            webhook_url: HOOK.into(),
            ..Default::default()
        };
        assert!(problem(remix).contains("lyrics is 2100 characters long; at most 2000"));
        let long_prompt = MusicAiRequest {
            prompt: Some("x".repeat(281)),
            webhook_url: HOOK.into(),
            ..Default::default()
        };
        assert!(problem(long_prompt).contains("prompt is 281 characters"));
        let cut = CutterRequest {
            audio: audio.clone(),
            start_time: Some(5000),
            end_time: Some(5000),
            webhook_url: HOOK.into(),
            ..Default::default()
        };
        assert!(problem(cut).contains("end_time (5000 ms) must come after start_time"));
        let inpaint = InpaintRequest {
            audio: audio.clone(),
            prompt: Some("p".into()),
            replace_start_at: Some(10.0),
            replace_end_at: Some(4.0),
            webhook_url: HOOK.into(),
            ..Default::default()
        };
        assert!(problem(inpaint).contains("replace_end_at"));
        let extend = ExtendRequest {
            audio: audio.clone(),
            extend_after: Some(-1.0),
            webhook_url: HOOK.into(),
            ..Default::default()
        };
        assert!(problem(extend).contains("extend_after must be a number of seconds"));
        let both = MusicAiRequest {
            prompt: Some("p".into()),
            make_instrumental: Some(true),
            vocal_only: Some(true),
            webhook_url: HOOK.into(),
            ..Default::default()
        };
        assert!(problem(both).contains("make_instrumental and vocal_only exclude each other"));
        let tts = TextToSpeechRequest {
            text: Some("hi".into()),
            voice_id: Some("v".into()),
            sample_audio_url: Some("https://a/s.mp3".into()),
            webhook_url: HOOK.into(),
            ..Default::default()
        };
        assert!(problem(tts).contains("sample_audio_url and voice_id exclude each other"));
        let stems = ExtractionRequest {
            audio: audio.clone(),
            stems: vec![Stem::Vocals, Stem::Vocals],
            webhook_url: HOOK.into(),
            ..Default::default()
        };
        assert!(problem(stems).contains("stems lists vocals twice"));
        let sr = FileConvertRequest {
            audio: audio.clone(),
            target_format: Some(AudioFormat::Wav),
            target_sr: Some(12),
            webhook_url: HOOK.into(),
            ..Default::default()
        };
        assert!(problem(sr).contains("target_sr"));
        let bad_url = DenoiseRequest {
            audio: url("ftp://x/y"),
            webhook_url: HOOK.into(),
        };
        assert!(problem(bad_url).contains("audio_url must be an http(s) URL"));
        let bad_hook = DenoiseRequest {
            audio: audio.clone(),
            webhook_url: "hook".into(),
        };
        assert!(problem(bad_hook).contains("webhook_url must be an http(s) URL"));
    }

    #[test]
    fn json_keeps_types_and_multipart_sends_text_and_files() {
        let music: SubmitRequest = MusicAiRequest {
            prompt: Some("epic".into()),
            make_instrumental: Some(true),
            generate_album_cover: Some(false),
            model: Some(Model::V7Pro),
            gender: Some(Gender::Female),
            webhook_url: HOOK.into(),
            ..Default::default()
        }
        .into();
        let wire = music.wire().expect("valid");
        assert_eq!(wire.endpoint.path, "/v2/MusicAI");
        assert_eq!(
            Value::Object(wire.json()),
            json!({"prompt": "epic", "make_instrumental": true, "gender": "female",
                   "generate_album_cover": false, "model": "v7-pro", "webhook_url": HOOK})
        );

        let extraction: SubmitRequest = ExtractionRequest {
            audio: Some(Media::File("song.wav".into())),
            stems: vec![Stem::Vocals, Stem::HiHat],
            preprocessing_options: vec![Preprocessing::Denoise],
            eco_mode: Some(true),
            webhook_url: HOOK.into(),
        }
        .into();
        let wire = extraction.wire().expect("valid");
        assert_eq!(wire.encoding(), Encoding::Multipart);
        assert_eq!(
            wire.text_fields(),
            vec![
                ("stems", r#"["vocals","hi_hat"]"#.to_owned()),
                ("preprocessing_options", r#"["Denoise"]"#.to_owned()),
                ("eco_mode", "true".to_owned()),
                ("webhook_url", HOOK.to_owned()),
            ]
        );
        assert_eq!(
            wire.files,
            vec![FilePart {
                field: "audio_file",
                path: "song.wav".into()
            }]
        );

        let changer: SubmitRequest = VoiceChangerRequest {
            audio: url("https://a/b.mp3"),
            voice_id: Some("Drake".into()),
            remove_background: Some(true),
            pitch: Some(-3),
            webhook_url: HOOK.into(),
        }
        .into();
        let wire = changer.wire().expect("valid");
        assert_eq!(
            wire.field("remove_background")
                .map(WireValue::to_text)
                .as_deref(),
            Some("1")
        );
        assert_eq!(
            wire.field("pitch").map(WireValue::to_text).as_deref(),
            Some("-3")
        );

        let sound: SubmitRequest = SoundGeneratorRequest {
            prompt: Some("rain & thunder".into()),
            audio_length: Some(10),
            webhook_url: HOOK.into(),
        }
        .into();
        let wire = sound.wire().expect("valid");
        assert_eq!(wire.encoding(), Encoding::Form);
        assert!(
            wire.form_body()
                .starts_with("prompt=rain+%26+thunder&audio_length=10&webhook_url=https%3A%2F%2F")
        );
    }

    #[test]
    fn files_go_only_where_the_endpoint_takes_multipart() {
        // Every multipart endpoint's request accepts a file; JSON and form ones have none.
        for endpoint in crate::domain::conversion::ENDPOINTS {
            let multipart = endpoint.encoding == Encoding::Multipart;
            let has_media = !matches!(
                endpoint.kind,
                EndpointKind::MusicAi | EndpointKind::TextToSpeech | EndpointKind::SoundGenerator
            );
            assert_eq!(multipart, has_media, "{}", endpoint.command);
        }
    }

    #[test]
    fn choices_parse_their_own_spelling() {
        assert_eq!(Model::parse("V7-PRO"), Some(Model::V7Pro));
        assert_eq!(Stem::parse("kick_drum"), Some(Stem::KickDrum));
        assert_eq!(Stem::ALL.len(), 23);
        assert_eq!(Preprocessing::parse("deecho"), Some(Preprocessing::Deecho));
        assert_eq!(BitDepth::parse("24"), Some(BitDepth::Bits24));
        assert_eq!(Gender::parse("other"), None);
    }
}
