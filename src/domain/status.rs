//! The status words of tasks, conversions and assets, and the item types of the table:
//! spelled once here, as enums, serialised as MusicGPT and the table spell them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A task's or conversion's status. MusicGPT's set is open (older pages say PENDING and
/// PROCESSING, newer IN_QUEUE and IN_PROGRESS); unknown words are kept as they came.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    /// Registered by a submission; no word from MusicGPT yet.
    Submitted,
    InQueue,
    Pending,
    Processing,
    InProgress,
    PartialCompleted,
    Completed,
    Failed,
    Error,
    /// Upper-cased, as received.
    Other(String),
}

impl TaskStatus {
    /// Case-insensitive; surrounding space ignored.
    pub fn parse(text: &str) -> TaskStatus {
        let word = text.trim().to_ascii_uppercase();
        match word.as_str() {
            "SUBMITTED" => TaskStatus::Submitted,
            "IN_QUEUE" => TaskStatus::InQueue,
            "PENDING" => TaskStatus::Pending,
            "PROCESSING" => TaskStatus::Processing,
            "IN_PROGRESS" => TaskStatus::InProgress,
            "PARTIAL_COMPLETED" => TaskStatus::PartialCompleted,
            "COMPLETED" => TaskStatus::Completed,
            "FAILED" => TaskStatus::Failed,
            "ERROR" => TaskStatus::Error,
            _ => TaskStatus::Other(word),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            TaskStatus::Submitted => "SUBMITTED",
            TaskStatus::InQueue => "IN_QUEUE",
            TaskStatus::Pending => "PENDING",
            TaskStatus::Processing => "PROCESSING",
            TaskStatus::InProgress => "IN_PROGRESS",
            TaskStatus::PartialCompleted => "PARTIAL_COMPLETED",
            TaskStatus::Completed => "COMPLETED",
            TaskStatus::Failed => "FAILED",
            TaskStatus::Error => "ERROR",
            TaskStatus::Other(word) => word,
        }
    }

    /// COMPLETED, FAILED and ERROR end a task; nothing after them changes its outcome.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Error
        )
    }

    pub fn is_failure(&self) -> bool {
        matches!(self, TaskStatus::Failed | TaskStatus::Error)
    }

    /// Progress within the same terminality: later stages rank higher; failures outrank a
    /// completion, so a task reported both ways settles as failed.
    pub fn rank(&self) -> u8 {
        match self {
            TaskStatus::Submitted | TaskStatus::Other(_) => 0,
            TaskStatus::InQueue => 1,
            TaskStatus::Pending => 2,
            TaskStatus::Processing | TaskStatus::InProgress => 3,
            TaskStatus::PartialCompleted => 4,
            TaskStatus::Completed => 7,
            TaskStatus::Error => 8,
            TaskStatus::Failed => 9,
        }
    }
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TaskStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TaskStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|s| TaskStatus::parse(&s))
    }
}

/// Where an asset's copy stands. PENDING (waiting, or being copied under a lease) ends in
/// STORED, FAILED (a cause that cannot pass) or EXPIRED (its deadline passed first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AssetState {
    Pending,
    Stored,
    Failed,
    Expired,
}

impl AssetState {
    pub fn as_str(self) -> &'static str {
        match self {
            AssetState::Pending => "PENDING",
            AssetState::Stored => "STORED",
            AssetState::Failed => "FAILED",
            AssetState::Expired => "EXPIRED",
        }
    }

    /// The attribute that says when an asset reached this state, for the states that end
    /// attempts without a copy (FAILED, EXPIRED); STORED has its own fields.
    pub fn ended_at(self) -> &'static str {
        match self {
            AssetState::Expired => "expired_at",
            _ => "failed_at",
        }
    }
}

/// The `item_type` of every table item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ItemType {
    Task,
    Conversion,
    Asset,
    Callback,
    /// A conversion's pointer to its task, in the conversion's own partition.
    Link,
    /// A callback that named only a conversion whose task was not known yet.
    Parked,
    /// A conversion's (or a task's) lyrics, kept apart: they can be as large as a callback.
    Lyrics,
    /// A conversion's timestamped lyrics, kept apart for the same reason.
    LyricsTimestamped,
    /// A transcription's text, kept apart for the same reason.
    Transcript,
    /// A body that came with the right token but could not be recorded.
    Quarantined,
    /// An event for the owner's application, and where its delivery stands (the outbox).
    Event,
}

impl ItemType {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemType::Task => "TASK",
            ItemType::Conversion => "CONVERSION",
            ItemType::Asset => "ASSET",
            ItemType::Callback => "CALLBACK",
            ItemType::Link => "LINK",
            ItemType::Parked => "PARKED",
            ItemType::Lyrics => "LYRICS",
            ItemType::LyricsTimestamped => "LYRICS_TIMESTAMPED",
            ItemType::Transcript => "TRANSCRIPT",
            ItemType::Quarantined => "QUARANTINED",
            ItemType::Event => "EVENT",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_unknown_ones_are_kept() {
        for word in [
            "SUBMITTED",
            "IN_QUEUE",
            "PENDING",
            "PROCESSING",
            "IN_PROGRESS",
            "PARTIAL_COMPLETED",
            "COMPLETED",
            "FAILED",
            "ERROR",
        ] {
            assert_eq!(TaskStatus::parse(word).as_str(), word);
            let json = serde_json::to_value(TaskStatus::parse(word)).expect("serialise");
            assert_eq!(json, serde_json::json!(word));
        }
        assert_eq!(
            TaskStatus::parse(" queued "),
            TaskStatus::Other("QUEUED".into())
        );
        assert!(TaskStatus::parse("error").is_failure());
        assert!(!TaskStatus::parse("PARTIAL_COMPLETED").is_terminal());
        assert_eq!(
            serde_json::to_value(AssetState::Pending).expect("serialise"),
            serde_json::json!("PENDING")
        );
        assert_eq!(
            serde_json::to_value(ItemType::Link).expect("serialise"),
            serde_json::json!("LINK")
        );
    }
}
