//! Where things live: table keys (pk/sk) and S3 object keys. Only validated ids go in.

use crate::domain::ids::Id;

/// Stands in for a missing conversion id in S3 keys and asset sort keys.
pub const NO_CONVERSION: &str = "audio";

pub const TASK_SK: &str = "TASK";
pub const LINK_SK: &str = "LINK";

pub fn task_pk(task: &Id) -> String {
    format!("TASK#{task}")
}

/// Partition of a conversion seen before its task: the link to the task and parked callbacks.
pub fn conversion_pk(conversion: &Id) -> String {
    format!("CONV#{conversion}")
}

pub fn conversion_sk(conversion: &Id) -> String {
    format!("CONVERSION#{conversion}")
}

/// A task's own lyrics, when a callback carries lyrics but no conversion id.
pub const TASK_LYRICS_SK: &str = "LYRICS";

pub fn lyrics_sk(conversion: &Id) -> String {
    format!("LYRICS#{conversion}")
}

/// A task's own transcript, when a callback carries one but no conversion id.
pub const TASK_TRANSCRIPT_SK: &str = "TRANSCRIPT";

pub fn transcript_sk(conversion: &Id) -> String {
    format!("TRANSCRIPT#{conversion}")
}

pub fn lyrics_timestamped_sk(conversion: &Id) -> String {
    format!("LYRICS_TIMESTAMPED#{conversion}")
}

/// Where a scheduled job keeps how far it got: `STATE#<name>` / `STATE`.
pub fn checkpoint_pk(name: &str) -> String {
    format!("STATE#{name}")
}

pub const CHECKPOINT_SK: &str = "STATE";

pub fn callback_sk(sha256_hex: &str) -> String {
    format!("CALLBACK#{sha256_hex}")
}

pub fn parked_sk(sha256_hex: &str) -> String {
    format!("PARKED#{sha256_hex}")
}

pub const ASSET_SK_PREFIX: &str = "ASSET#";

/// The table key of one asset item.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Deserialize)]
pub struct AssetKey {
    pub pk: String,
    pub sk: String,
}

impl AssetKey {
    pub fn is_asset(&self) -> bool {
        self.pk.starts_with("TASK#") && self.sk.starts_with(ASSET_SK_PREFIX)
    }
}

/// What a file to copy is, which fixes its asset item and its S3 key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssetKind {
    /// The song itself (mp3, wav, ...), one per format per conversion.
    Audio { ext: &'static str },
    /// The album cover, one per task.
    Cover { ext: &'static str },
    /// One stem of a stem extraction.
    Stem { name: Id, ext: &'static str },
    /// Any other output of a conversion (MIDI, note events, a transcript file, a file in a
    /// field of its own), named after what it is or the field it came in.
    Output { name: Id, ext: &'static str },
}

impl AssetKind {
    /// Short label stored as `asset_kind`.
    pub fn label(&self) -> &'static str {
        match self {
            AssetKind::Audio { .. } => "audio",
            AssetKind::Cover { .. } => "cover",
            AssetKind::Stem { .. } => "stem",
            AssetKind::Output { .. } => "output",
        }
    }

    pub fn ext(&self) -> &'static str {
        match self {
            AssetKind::Audio { ext }
            | AssetKind::Cover { ext }
            | AssetKind::Stem { ext, .. }
            | AssetKind::Output { ext, .. } => ext,
        }
    }
}

/// One file of a task: its kind and the conversion it belongs to (none for covers and
/// for callbacks that carry no conversion id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetRef {
    pub conversion: Option<Id>,
    pub kind: AssetKind,
}

impl AssetRef {
    fn scope<'a>(&'a self, task: &'a Id) -> &'a str {
        match (&self.kind, &self.conversion) {
            (AssetKind::Cover { .. }, _) => task.as_str(),
            (_, Some(conversion)) => conversion.as_str(),
            (_, None) => NO_CONVERSION,
        }
    }

    /// `ASSET#<conversion id, or the task id for the cover>#<kind>`.
    pub fn sort_key(&self, task: &Id) -> String {
        let scope = self.scope(task);
        match &self.kind {
            AssetKind::Audio { ext } => format!("{ASSET_SK_PREFIX}{scope}#{ext}"),
            AssetKind::Cover { .. } => format!("{ASSET_SK_PREFIX}{scope}#cover"),
            AssetKind::Stem { name, ext } => format!("{ASSET_SK_PREFIX}{scope}#stem#{name}.{ext}"),
            AssetKind::Output { name, ext } => format!("{ASSET_SK_PREFIX}{scope}#out#{name}.{ext}"),
        }
    }

    /// The S3 key under the prefix, as laid out in docs/design.md.
    pub fn object_key(&self, prefix: &KeyPrefix, task: &Id) -> String {
        let scope = self.scope(task);
        let relative = match &self.kind {
            AssetKind::Audio { ext } => format!("{task}/{scope}.{ext}"),
            AssetKind::Cover { ext } => format!("{task}/cover.{ext}"),
            AssetKind::Stem { name, ext } => format!("{task}/{scope}/stems/{name}.{ext}"),
            AssetKind::Output { name, ext } => format!("{task}/{scope}/{name}.{ext}"),
        };
        format!("{}{relative}", prefix.as_str())
    }
}

/// `KEY_PREFIX`, normalised to be empty or end with one `/`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// Refuses prefixes that could escape or confuse the layout (leading `/`, `..`, odd characters).
    pub fn parse(raw: &str) -> Option<KeyPrefix> {
        let trimmed = raw.trim_end_matches('/');
        if trimmed.is_empty() {
            return Some(KeyPrefix(String::new()));
        }
        let safe_chars = trimmed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-./=".contains(&b));
        let safe_segments = trimmed
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
        (safe_chars && safe_segments).then(|| KeyPrefix(format!("{trimmed}/")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Id {
        Id::parse(s).expect("valid id in test")
    }

    #[test]
    fn layout_matches_the_contract() {
        let task = id("t1");
        let prefix = KeyPrefix::parse("music/").expect("valid prefix");
        let mp3 = AssetRef {
            conversion: Some(id("c1")),
            kind: AssetKind::Audio { ext: "mp3" },
        };
        assert_eq!(mp3.object_key(&prefix, &task), "music/t1/c1.mp3");
        assert_eq!(mp3.sort_key(&task), "ASSET#c1#mp3");
        let cover = AssetRef {
            conversion: None,
            kind: AssetKind::Cover { ext: "png" },
        };
        assert_eq!(cover.object_key(&prefix, &task), "music/t1/cover.png");
        assert_eq!(cover.sort_key(&task), "ASSET#t1#cover");
        let stem = AssetRef {
            conversion: Some(id("c1")),
            kind: AssetKind::Stem {
                name: id("vocals"),
                ext: "wav",
            },
        };
        assert_eq!(
            stem.object_key(&prefix, &task),
            "music/t1/c1/stems/vocals.wav"
        );
        let orphan = AssetRef {
            conversion: None,
            kind: AssetKind::Audio { ext: "mp3" },
        };
        assert_eq!(
            orphan.object_key(&KeyPrefix::default(), &task),
            "t1/audio.mp3"
        );
        let midi = AssetRef {
            conversion: Some(id("c1")),
            kind: AssetKind::Output {
                name: id("midi"),
                ext: "mid",
            },
        };
        assert_eq!(midi.object_key(&prefix, &task), "music/t1/c1/midi.mid");
        assert_eq!(midi.sort_key(&task), "ASSET#c1#out#midi.mid");
    }

    #[test]
    fn prefixes_are_normalised_or_refused() {
        assert_eq!(KeyPrefix::parse("").map(|p| p.0), Some(String::new()));
        assert_eq!(KeyPrefix::parse("a/b").map(|p| p.0), Some("a/b/".into()));
        for bad in ["/abs", "a/../b", "a//b", "sp ace", "./x"] {
            assert!(KeyPrefix::parse(bad).is_none(), "{bad:?}");
        }
    }
}
