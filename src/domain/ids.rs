//! Identifiers that end up in table keys and S3 keys, validated before they get there.

use std::fmt;

/// A task, conversion or stem id: `[A-Za-z0-9_-]{1,128}`. Anything else never reaches a key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Id(String);

pub const MAX_ID_LEN: usize = 128;

impl Id {
    pub fn parse(text: &str) -> Option<Id> {
        let valid = !text.is_empty()
            && text.len() <= MAX_ID_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        valid.then(|| Id(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_id_alphabet_only() {
        assert!(Id::parse("8e058b85-6c22-41cc-a6ed-1e91ed73e34b").is_some());
        assert!(Id::parse("a_B-9").is_some());
        assert!(Id::parse(&"x".repeat(128)).is_some());
        for bad in [
            "",
            "../x",
            "a/b",
            "a b",
            "a.b",
            "a#b",
            "é",
            "a\nb",
            &"x".repeat(129),
        ] {
            assert!(Id::parse(bad).is_none(), "{bad:?} must be refused");
        }
    }
}
