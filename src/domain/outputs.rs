//! Which fields of a callback are files, data or live previews, as data: a new field name is a
//! one-line change here. Files are also recognised by where they point (any other field whose
//! value is an https URL on an allowed host is copied, under its own name) and by what they are
//! (a `.mid` behind `conversion_path` is the MIDI, not the song).

/// What a file field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRole {
    /// The conversion's audio; `default_ext` when the URL's path has no known extension.
    Audio { default_ext: &'static str },
    /// The conversion's audio as WAV.
    Wav,
    /// The task's album cover.
    Cover,
    /// A map of stem name -> URL (or JSON of one inside a string).
    StemMap { default_ext: &'static str },
    /// Another output of the conversion, stored under this name.
    Output(&'static str),
}

/// The file fields MusicGPT's callbacks and answers use, earliest wins when two name the same
/// file (`conversion_path` and `audio_url` both the mp3).
pub const FILE_FIELDS: &[(&str, FileRole)] = &[
    ("conversion_path", FileRole::Audio { default_ext: "mp3" }),
    ("audio_url", FileRole::Audio { default_ext: "mp3" }),
    ("output_file_path", FileRole::Audio { default_ext: "mp3" }),
    ("output_path", FileRole::Audio { default_ext: "mp3" }),
    ("conversion_path_wav", FileRole::Wav),
    ("audio_url_wav", FileRole::Wav),
    ("image_path", FileRole::Cover),
    ("album_cover_path", FileRole::Cover),
    ("midi_path", FileRole::Output("midi")),
    ("midi_url", FileRole::Output("midi")),
    ("conversion_path_midi", FileRole::Output("midi")),
    ("note_events_path", FileRole::Output("notes")),
    ("conversion_path_csv", FileRole::Output("notes")),
    ("transcript_path", FileRole::Output("transcript")),
    ("transcription_path", FileRole::Output("transcript")),
    ("album_cover_thumbnail", FileRole::Output("cover_thumbnail")),
];

/// The fields that may hold stem maps instead of one URL (stem extraction, as seen).
pub const STEM_MAP_FIELDS: &[(&str, FileRole)] = &[
    ("audio_url", FileRole::StemMap { default_ext: "mp3" }),
    ("audio_url_wav", FileRole::StemMap { default_ext: "wav" }),
];

/// A live preview (an HLS playlist while a pro model still streams), recorded on the
/// conversion and never copied or taken for the finished song.
pub const STREAM_FIELDS: &[&str] = &["streaming_url", "stream_url", "streamUrl"];

/// Subtypes of the streaming-URL webhook (Music AI V2; the names are not published).
pub const STREAM_SUBTYPES: &[&str] = &[
    "streaming_url",
    "stream_url",
    "music_ai_stream",
    "streaming",
    "stream",
];

/// Data outputs recorded on the conversion (or the task): (field in the callback, attribute).
pub const DATA_FIELDS: &[(&str, &str)] = &[
    ("dominant_key", "key"),
    ("key", "key"),
    ("bpm", "bpm"),
    ("tempo", "bpm"),
    ("key_changes", "key_changes"),
    ("language", "language"),
    ("transcription_format", "transcription_format"),
];

/// Text outputs that can be as large as a callback: each in an item of its own.
pub const TRANSCRIPT_FIELDS: &[&str] = &["transcript", "transcription", "transcript_text", "text"];

/// Fields that are never files even when they hold an URL (where MusicGPT was asked to send
/// the callback, the source the conversion started from).
pub const NOT_FILES: &[&str] = &[
    "webhook_url",
    "audio_url_input",
    "input_url",
    "sample_audio_url",
    "reference_audio_url",
    "image_url",
    "source_url",
];

/// How a known media extension is stored when it comes from an audio field: the song itself
/// (`None`), or another output under this name.
pub fn output_for_extension(ext: &str) -> Option<&'static str> {
    match ext {
        "mid" | "midi" => Some("midi"),
        "csv" => Some("notes"),
        "txt" | "srt" | "vtt" | "json" => Some("transcript"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_outputs_are_valid_ids() {
        let mut fields: Vec<&str> = FILE_FIELDS.iter().map(|(f, _)| *f).collect();
        fields.sort();
        let before = fields.len();
        fields.dedup();
        assert_eq!(before, fields.len(), "a file field listed twice");
        for (_, role) in FILE_FIELDS {
            if let FileRole::Output(name) = role {
                assert!(crate::domain::ids::Id::parse(name).is_some(), "{name}");
            }
        }
        assert_eq!(output_for_extension("mid"), Some("midi"));
        assert_eq!(output_for_extension("flac"), None);
    }
}
