//! Media files: which extensions are kept and which Content-Type each one stores with.

/// File extensions kept as they are; anything else falls back to the kind's default.
const KNOWN_EXTENSIONS: &[&str] = &[
    "mp3", "wav", "flac", "m4a", "aac", "ogg", "opus", "webm", "aiff", "mid", "midi", "csv", "txt",
    "srt", "vtt", "json", "png", "jpg", "jpeg", "webp",
];

/// The extension of a URL's last path segment, if it is a known media extension.
pub fn extension_of(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let file = path.rsplit('/').next().unwrap_or_default();
    let (_, ext) = file.rsplit_once('.')?;
    let ext = ext.to_ascii_lowercase();
    KNOWN_EXTENSIONS.iter().copied().find(|known| *known == ext)
}

/// Content-Type from a file extension, for sources that do not send a useful one.
pub fn content_type_for(ext: &str) -> &'static str {
    match ext.to_ascii_lowercase().as_str() {
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "m4a" => "audio/mp4",
        "aac" => "audio/aac",
        "ogg" => "audio/ogg",
        "opus" => "audio/opus",
        "webm" => "audio/webm",
        "aiff" => "audio/aiff",
        "mid" | "midi" => "audio/midi",
        "csv" => "text/csv",
        "txt" => "text/plain; charset=utf-8",
        "srt" => "application/x-subrip",
        "vtt" => "text/vtt",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_come_from_the_path_only() {
        assert_eq!(extension_of("https://h/a/b.MP3?x=y.wav"), Some("mp3"));
        assert_eq!(extension_of("https://h/a/b"), None);
        assert_eq!(extension_of("https://h/a/b.exe"), None);
    }

    #[test]
    fn types_follow_extensions() {
        assert_eq!(content_type_for("MP3"), "audio/mpeg");
        assert_eq!(content_type_for("xyz"), "application/octet-stream");
    }
}
