//! Webhook tokens: the secret at the end of the webhook URL, compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Tokens shorter than this are guessable; refuse them at cold start.
pub const MIN_TOKEN_LEN: usize = 16;

/// The accepted tokens, kept only as SHA-256 digests so that comparing is constant-time
/// whatever the lengths, and no token sits in memory in the clear after start-up.
#[derive(Clone)]
pub struct WebhookTokens(Vec<[u8; 32]>);

impl std::fmt::Debug for WebhookTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookTokens({} redacted)", self.0.len())
    }
}

impl WebhookTokens {
    /// Comma-separated, so a new token can be added before the old one is removed.
    pub fn parse(raw: &str) -> Result<WebhookTokens, String> {
        let mut digests = Vec::new();
        for token in raw.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if token.len() < MIN_TOKEN_LEN {
                return Err(format!(
                    "tokens must be at least {MIN_TOKEN_LEN} characters"
                ));
            }
            if !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err("tokens may use only A-Z a-z 0-9 - _".to_owned());
            }
            digests.push(digest(token));
        }
        if digests.is_empty() {
            return Err("names no token".to_owned());
        }
        Ok(WebhookTokens(digests))
    }

    /// Checks every configured token, without stopping at the first match.
    pub fn accepts(&self, candidate: &str) -> bool {
        let candidate = digest(candidate);
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |found, known| {
                found | known.ct_eq(&candidate)
            })
            .into()
    }
}

impl WebhookTokens {
    /// Whether the two sets share a token (read tokens must never be webhook tokens).
    pub fn shares_a_token_with(&self, other: &WebhookTokens) -> bool {
        self.0.iter().any(|mine| {
            other
                .0
                .iter()
                .fold(subtle::Choice::from(0), |found, theirs| {
                    found | mine.ct_eq(theirs)
                })
                .into()
        })
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Standard Webhooks signing secrets (`FORWARD_SECRETS`): `whsec_<base64>` values, comma- or space-separated; each must decode to at least 16 bytes.
pub fn parse_signing_secrets(raw: &str) -> std::result::Result<Vec<String>, String> {
    use base64::Engine;
    let secrets: Vec<String> = raw
        .split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if secrets.is_empty() {
        return Err("names no secret".into());
    }
    for secret in &secrets {
        let key = secret
            .strip_prefix("whsec_")
            .ok_or("each secret must start with whsec_")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key)
            .map_err(|_| "each secret must be whsec_ followed by base64")?;
        if bytes.len() < 16 {
            return Err("each secret must hold at least 16 bytes".into());
        }
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_listed_token_and_nothing_else() {
        let tokens =
            WebhookTokens::parse("old-token-0123456789, new-token-0123456789").expect("valid");
        assert!(tokens.accepts("old-token-0123456789"));
        assert!(tokens.accepts("new-token-0123456789"));
        assert!(!tokens.accepts("old-token-012345678"));
        assert!(!tokens.accepts(""));
        assert!(!format!("{tokens:?}").contains("old-token"));
    }

    #[test]
    fn refuses_weak_or_odd_tokens() {
        assert!(WebhookTokens::parse("short").is_err());
        assert!(WebhookTokens::parse(" , ").is_err());
        assert!(WebhookTokens::parse("has/slash-0123456789").is_err());
    }
}
