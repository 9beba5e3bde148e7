//! Typed configuration from the environment, read and validated once at cold start.

use std::collections::HashMap;
use std::time::Duration;

use crate::app::reconcile::ReconcileSettings;
use crate::domain::api::DEFAULT_API_URL;
use crate::domain::keys::KeyPrefix;
use crate::domain::retry::DEFAULT_MAX_ATTEMPTS;
use crate::domain::token::WebhookTokens;
use crate::error::{Error, Result};

/// Whether the webhook copies files itself or leaves that to the stream-driven copier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMode {
    Stream,
    Inline,
}

/// Everything the copy engine needs.
#[derive(Debug, Clone)]
pub struct CopyConfig {
    pub bucket_name: String,
    pub source_hosts: Vec<String>,
    pub max_asset_bytes: u64,
    pub max_attempts: u32,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub table_name: String,
    pub key_prefix: KeyPrefix,
    pub copy_mode: CopyMode,
    /// How long raw callbacks and parked callbacks are kept (DynamoDB TTL).
    pub callback_retention: Duration,
    pub copy: CopyConfig,
    /// MusicGPT's API, when `MUSICGPT_API_KEY` is set.
    pub musicgpt: Option<MusicGptConfig>,
}

pub const DEFAULT_SOURCE_HOSTS: &str = "lalals.s3.amazonaws.com,musicgpt.s3.amazonaws.com";
pub const DEFAULT_MAX_ASSET_BYTES: u64 = 2 * 1024 * 1024 * 1024;
pub const DEFAULT_CALLBACK_RETENTION_DAYS: u64 = 90;

/// A source of variables: the process environment, or a map in tests.
pub trait Vars {
    fn var(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Vars for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Vars for HashMap<&str, &str> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).map(|v| (*v).to_owned())
    }
}

impl Config {
    pub fn from_env() -> Result<Config> {
        Config::from_vars(&ProcessEnv)
    }

    pub fn from_vars(vars: &impl Vars) -> Result<Config> {
        let copy_mode = match optional(vars, "COPY_MODE").as_deref() {
            None | Some("stream") => CopyMode::Stream,
            Some("inline") => CopyMode::Inline,
            Some(_) => return Err(invalid("COPY_MODE", "must be `stream` or `inline`")),
        };
        let key_prefix = KeyPrefix::parse(&optional(vars, "KEY_PREFIX").unwrap_or_default())
            .ok_or_else(|| {
                invalid(
                    "KEY_PREFIX",
                    "must be path segments of A-Z a-z 0-9 _ - . = with no `..` or leading /",
                )
            })?;
        let source_hosts: Vec<String> = optional(vars, "SOURCE_HOSTS")
            .unwrap_or_else(|| DEFAULT_SOURCE_HOSTS.to_owned())
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if source_hosts.is_empty() {
            return Err(invalid("SOURCE_HOSTS", "names no host"));
        }
        let retention_days: u64 = number(
            vars,
            "CALLBACK_RETENTION_DAYS",
            DEFAULT_CALLBACK_RETENTION_DAYS,
        )?;
        Ok(Config {
            table_name: required(vars, "TABLE_NAME")?,
            key_prefix,
            copy_mode,
            callback_retention: Duration::from_secs(retention_days.max(1) * 86_400),
            copy: CopyConfig {
                bucket_name: optional(vars, "BUCKET_NAME").unwrap_or_default(),
                source_hosts,
                max_asset_bytes: number(vars, "MAX_ASSET_BYTES", DEFAULT_MAX_ASSET_BYTES)?,
                max_attempts: number(vars, "MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS)?.max(1),
            },
            musicgpt: musicgpt(vars)?,
        })
    }

    /// The bucket is needed wherever files are copied; checked there, not everywhere.
    pub fn require_bucket(&self) -> Result<&str> {
        if self.copy.bucket_name.is_empty() {
            return Err(invalid("BUCKET_NAME", "is required to copy files"));
        }
        Ok(&self.copy.bucket_name)
    }
}

/// `WEBHOOK_TOKENS`, read separately because only the webhook needs it.
pub fn webhook_tokens(vars: &impl Vars) -> Result<WebhookTokens> {
    let raw = required(vars, "WEBHOOK_TOKENS")?;
    WebhookTokens::parse(&raw).map_err(|why| invalid("WEBHOOK_TOKENS", &why))
}

/// MusicGPT's API, used when `MUSICGPT_API_KEY` is set: verification, submission,
/// reconciliation. The key's `Debug` is redacted so it never reaches a log.
#[derive(Clone)]
pub struct MusicGptConfig {
    pub api_url: String,
    pub api_key: String,
}

impl std::fmt::Debug for MusicGptConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MusicGptConfig {{ api_url: {:?}, api_key: <redacted> }}",
            self.api_url
        )
    }
}

pub fn musicgpt(vars: &impl Vars) -> Result<Option<MusicGptConfig>> {
    let Some(api_key) = optional(vars, "MUSICGPT_API_KEY") else {
        return Ok(None);
    };
    let api_url = optional(vars, "MUSICGPT_API_URL").unwrap_or_else(|| DEFAULT_API_URL.to_owned());
    if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
        return Err(invalid("MUSICGPT_API_URL", "must be an http(s) URL"));
    }
    Ok(Some(MusicGptConfig { api_url, api_key }))
}

/// The reconciler's settings: `RECONCILE_GRACE_MINUTES` (15), `RECONCILE_MAX_LOOKUPS` (100),
/// `MUSICGPT_RATE_PER_MINUTE` (200, MusicGPT's byId limit).
pub fn reconcile_settings(vars: &impl Vars) -> Result<ReconcileSettings> {
    let grace_minutes: u64 = number(vars, "RECONCILE_GRACE_MINUTES", 15)?;
    let max_lookups: usize = number(vars, "RECONCILE_MAX_LOOKUPS", 100)?;
    let rate: u64 = number(vars, "MUSICGPT_RATE_PER_MINUTE", 200)?;
    Ok(ReconcileSettings {
        grace: Duration::from_secs(grace_minutes * 60),
        max_lookups,
        min_interval: Duration::from_millis(60_000 / rate.max(1)),
    })
}

fn optional(vars: &impl Vars, name: &str) -> Option<String> {
    vars.var(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn required(vars: &impl Vars, name: &str) -> Result<String> {
    optional(vars, name).ok_or_else(|| Error::Config(format!("{name} is required")))
}

fn number<T: std::str::FromStr>(vars: &impl Vars, name: &str, default: T) -> Result<T> {
    match optional(vars, name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| invalid(name, "must be a whole number")),
    }
}

fn invalid(name: &str, why: &str) -> Error {
    Error::Config(format!("{name} {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_missing_table_is_named() {
        let vars = HashMap::from([("TABLE_NAME", "t")]);
        let config = Config::from_vars(&vars).expect("valid");
        assert_eq!(config.copy_mode, CopyMode::Stream);
        assert_eq!(config.copy.max_attempts, 5);
        assert_eq!(config.copy.source_hosts.len(), 2);
        let err = Config::from_vars(&HashMap::new()).expect_err("no table");
        assert!(err.to_string().contains("TABLE_NAME"), "{err}");
    }

    #[test]
    fn musicgpt_is_optional_and_its_key_is_never_printed() {
        assert!(musicgpt(&HashMap::new()).expect("valid").is_none());
        let vars = HashMap::from([("MUSICGPT_API_KEY", "sk-very-secret")]);
        let config = musicgpt(&vars).expect("valid").expect("configured");
        assert_eq!(config.api_url, "https://api.musicgpt.com");
        assert!(!format!("{config:?}").contains("sk-very-secret"));
    }

    #[test]
    fn bad_values_are_named() {
        for (name, value) in [
            ("COPY_MODE", "both"),
            ("KEY_PREFIX", "../x"),
            ("MAX_ATTEMPTS", "five"),
        ] {
            let vars = HashMap::from([("TABLE_NAME", "t"), (name, value)]);
            let err = Config::from_vars(&vars).expect_err("invalid");
            assert!(err.to_string().contains(name), "{err}");
        }
    }
}
