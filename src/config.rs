//! Typed configuration from the environment, read and validated once at cold start.

use std::collections::HashMap;
use std::time::Duration;

use crate::app::announce::EventSettings;
use crate::app::reconcile::{ByUserSettings, ReconcileSettings};
use crate::app::sweep::SweepSettings;
use crate::domain::api::DEFAULT_API_URL;
use crate::domain::conversion::RateLimit;
use crate::domain::keys::KeyPrefix;
use crate::domain::retry::{self, FileRetention, RetryPolicy};
use crate::domain::token::{WebhookTokens, parse_signing_secrets};
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
    /// Multipart uploads: parts in flight at once (`COPY_PARTS_IN_FLIGHT`, 1 to 64) and their
    /// size (`COPY_PART_SIZE_MIB`, 5 to 5120); memory for parts stays within (parts in flight
    /// + 1) x part size. Unset: the sink's defaults (4 parts of 8 MiB).
    pub parts_in_flight: Option<usize>,
    pub part_size_mib: Option<usize>,
    /// The largest file of known length sent as one PutObject (`COPY_SINGLE_PUT_MIB`, 1 to
    /// 5120, within that memory bound). Unset: 16 MiB.
    pub single_put_mib: Option<usize>,
    /// Backoff, the deadline rule and an optional cap on attempts.
    pub retry: RetryPolicy,
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
                parts_in_flight: within(vars, "COPY_PARTS_IN_FLIGHT", 1..=64)?,
                part_size_mib: within(vars, "COPY_PART_SIZE_MIB", 5..=5120)?,
                single_put_mib: within(vars, "COPY_SINGLE_PUT_MIB", 1..=5120)?,
                retry: retry_policy(vars)?,
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

/// Retries until the file's deadline: `RETRY_BASE_DELAY` (10s), `RETRY_MAX_DELAY` (1h),
/// `SOURCE_NOT_FOUND_GRACE` (1h), `WAV_RETENTION` (7d), `FILE_RETENTION` (90d), `EXPIRY_MARGIN`
/// (12h), and `MAX_ATTEMPTS` (unset: no cap).
fn retry_policy(vars: &impl Vars) -> Result<RetryPolicy> {
    let defaults = RetryPolicy::default();
    let files = FileRetention::default();
    let max_attempts = match optional(vars, "MAX_ATTEMPTS") {
        None => None,
        Some(v) => Some(
            v.parse::<u32>()
                .map_err(|_| invalid("MAX_ATTEMPTS", "must be a whole number"))?
                .max(1),
        ),
    };
    let policy = RetryPolicy {
        max_attempts,
        base_delay: duration(vars, "RETRY_BASE_DELAY", defaults.base_delay)?,
        max_delay: duration(vars, "RETRY_MAX_DELAY", defaults.max_delay)?,
        not_found_grace: duration(vars, "SOURCE_NOT_FOUND_GRACE", defaults.not_found_grace)?,
        retention: FileRetention {
            wav: duration(vars, "WAV_RETENTION", files.wav)?,
            other: duration(vars, "FILE_RETENTION", files.other)?,
            margin: duration(vars, "EXPIRY_MARGIN", files.margin)?,
        },
        lease: retry::DEFAULT_LEASE,
        lease_grace: retry::DEFAULT_LEASE_GRACE,
    };
    if policy.retention.margin >= policy.retention.wav {
        return Err(invalid(
            "EXPIRY_MARGIN",
            "must be shorter than WAV_RETENTION, or WAV files would never be tried",
        ));
    }
    Ok(policy)
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
/// the lookup rate (`musicgpt_rate_limit`), `RECONCILE_BY_USER` (true) and
/// `RECONCILE_FIRST_WINDOW` (24h: how far back the first byUser listing looks).
pub fn reconcile_settings(vars: &impl Vars) -> Result<ReconcileSettings> {
    let grace_minutes: u64 = number(vars, "RECONCILE_GRACE_MINUTES", 15)?;
    let max_lookups: usize = number(vars, "RECONCILE_MAX_LOOKUPS", 100)?;
    let rate = musicgpt_rate_limit(vars)?;
    let by_user = match optional(vars, "RECONCILE_BY_USER").as_deref() {
        None | Some("true" | "1" | "on") => {
            let defaults = ByUserSettings::default();
            Some(ByUserSettings {
                first_window: duration(vars, "RECONCILE_FIRST_WINDOW", defaults.first_window)?,
                ..defaults
            })
        }
        Some("false" | "0" | "off") => None,
        Some(_) => return Err(invalid("RECONCILE_BY_USER", "must be true or false")),
    };
    Ok(ReconcileSettings {
        grace: Duration::from_secs(grace_minutes * 60),
        max_lookups,
        min_interval: Duration::from_millis(rate.min_interval_millis()),
        by_user,
    })
}

/// MusicGPT's rate for lookups (byId, byUser): `MUSICGPT_RATE_PER_MINUTE`, else the byId limit
/// of `MUSICGPT_PLAN` (free 20, plus 200, pro 500 a minute), else 200.
pub fn musicgpt_rate_limit(vars: &impl Vars) -> Result<RateLimit> {
    RateLimit::from_settings(
        optional(vars, "MUSICGPT_PLAN").as_deref(),
        optional(vars, "MUSICGPT_RATE_PER_MINUTE").as_deref(),
    )
    .map_err(Error::Config)
}

/// The sweep's settings: `SWEEP_BATCH` (200 copies a run), `SWEEP_CONCURRENCY` (4),
/// `EXPIRY_WARNING` (24h: assets nearer their deadline count as at risk).
pub fn sweep_settings(vars: &impl Vars) -> Result<SweepSettings> {
    let defaults = SweepSettings::default();
    Ok(SweepSettings {
        batch: number(vars, "SWEEP_BATCH", defaults.batch)?.max(1),
        concurrency: number(vars, "SWEEP_CONCURRENCY", defaults.concurrency)?.max(1),
        warning: duration(vars, "EXPIRY_WARNING", defaults.warning)?,
    })
}

/// Events and forwarding, on when `EVENT_BUS_NAME` or `FORWARD_URL` is set.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// `EVENT_BUS_NAME`: the EventBridge bus (unset: no events on a bus).
    pub bus_name: Option<String>,
    /// `FORWARD_URL` and its secrets: the owner's own webhook.
    pub forward: Option<ForwardConfig>,
    pub settings: EventSettings,
}

/// Where the signing secrets come from.
#[derive(Clone, PartialEq, Eq)]
pub enum ForwardSecrets {
    /// `whsec_...` values, each of which signs every forward.
    Values(Vec<String>),
    /// A Secrets Manager secret whose value holds them (comma- or space-separated).
    SecretArn(String),
}

impl std::fmt::Debug for ForwardSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardSecrets::Values(v) => write!(f, "Values({} redacted)", v.len()),
            ForwardSecrets::SecretArn(arn) => write!(f, "SecretArn({arn:?})"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ForwardConfig {
    pub url: String,
    pub secrets: ForwardSecrets,
    /// `FORWARD_HOSTS`: non-public hosts the target may be on (loopback also over http).
    pub hosts: Vec<String>,
}

/// `EVENT_BUS_NAME`, `FORWARD_URL`, `FORWARD_SECRETS`, `FORWARD_HOSTS`, `FORWARD_RETRY_FOR`
/// (26h, at least 24h), `EVENT_GRACE` (30s: when the sweep takes an undelivered event over).
pub fn events(vars: &impl Vars) -> Result<Option<EventsConfig>> {
    let bus_name = optional(vars, "EVENT_BUS_NAME");
    if let Some(bus) = &bus_name {
        let valid = bus.len() <= 1600
            && bus
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/:".contains(&b));
        if !valid {
            return Err(invalid("EVENT_BUS_NAME", "must be a bus name or ARN"));
        }
    }
    let forward = match optional(vars, "FORWARD_URL") {
        None => None,
        Some(url) => {
            let raw = optional(vars, "FORWARD_SECRETS")
                .ok_or_else(|| invalid("FORWARD_SECRETS", "is required with FORWARD_URL"))?;
            let secrets = if raw.starts_with("arn:") {
                ForwardSecrets::SecretArn(raw)
            } else {
                ForwardSecrets::Values(
                    parse_signing_secrets(&raw).map_err(|why| invalid("FORWARD_SECRETS", &why))?,
                )
            };
            let hosts = optional(vars, "FORWARD_HOSTS")
                .unwrap_or_default()
                .split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect();
            Some(ForwardConfig {
                url,
                secrets,
                hosts,
            })
        }
    };
    if bus_name.is_none() && forward.is_none() {
        return Ok(None);
    }
    let defaults = EventSettings::default();
    let forward_retry_for = duration(vars, "FORWARD_RETRY_FOR", defaults.forward_retry_for)?;
    if forward_retry_for < Duration::from_secs(24 * 3_600) {
        return Err(invalid("FORWARD_RETRY_FOR", "must be at least 24h"));
    }
    Ok(Some(EventsConfig {
        bus_name,
        forward,
        settings: EventSettings {
            grace: duration(vars, "EVENT_GRACE", defaults.grace)?,
            forward_retry_for,
            ..defaults
        },
    }))
}

/// The read API's settings: `READ_TOKENS` (optional; never one of `WEBHOOK_TOKENS`) and
/// `READ_URL_EXPIRY` (15m, at most 7d), the lifetime of presigned download URLs.
#[derive(Debug, Clone)]
pub struct ReadConfig {
    pub tokens: Option<WebhookTokens>,
    pub url_expiry: Duration,
}

pub fn read_api(vars: &impl Vars) -> Result<ReadConfig> {
    let tokens = match optional(vars, "READ_TOKENS") {
        None => None,
        Some(raw) => {
            let tokens = WebhookTokens::parse(&raw).map_err(|why| invalid("READ_TOKENS", &why))?;
            if let Some(webhook) = optional(vars, "WEBHOOK_TOKENS")
                && let Ok(webhook) = WebhookTokens::parse(&webhook)
                && tokens.shares_a_token_with(&webhook)
            {
                return Err(invalid("READ_TOKENS", "must not repeat a webhook token"));
            }
            Some(tokens)
        }
    };
    let url_expiry = duration(vars, "READ_URL_EXPIRY", Duration::from_secs(15 * 60))?;
    if url_expiry.is_zero() || url_expiry > Duration::from_secs(7 * 86_400) {
        return Err(invalid("READ_URL_EXPIRY", "must be between 1s and 7d"));
    }
    Ok(ReadConfig { tokens, url_expiry })
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

/// A whole number within `range` (S3's and the sink's limits), if set.
fn within(
    vars: &impl Vars,
    name: &str,
    range: std::ops::RangeInclusive<usize>,
) -> Result<Option<usize>> {
    let Some(value) = optional(vars, name) else {
        return Ok(None);
    };
    match value.parse::<usize>() {
        Ok(value) if range.contains(&value) => Ok(Some(value)),
        _ => Err(invalid(
            name,
            &format!(
                "must be a whole number from {} to {}",
                range.start(),
                range.end()
            ),
        )),
    }
}

/// A duration: a whole number with an optional unit, `s` (the default), `m`, `h` or `d`.
fn duration(vars: &impl Vars, name: &str, default: Duration) -> Result<Duration> {
    let Some(raw) = optional(vars, name) else {
        return Ok(default);
    };
    let (digits, unit) = match raw.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => raw.split_at(at),
        None => (raw.as_str(), "s"),
    };
    let scale = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => {
            return Err(invalid(
                name,
                "must be a number of s, m, h or d (like 90s, 1h, 7d)",
            ));
        }
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| invalid(name, "must be a number of s, m, h or d (like 90s, 1h, 7d)"))?;
    Ok(Duration::from_secs(value.saturating_mul(scale)))
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
        assert_eq!(config.copy.retry.max_attempts, None);
        assert_eq!(config.copy.retry.max_delay, Duration::from_secs(3_600));
        assert_eq!(config.copy.source_hosts.len(), 2);
        let err = Config::from_vars(&HashMap::new()).expect_err("no table");
        assert!(err.to_string().contains("TABLE_NAME"), "{err}");
    }

    #[test]
    fn part_settings_are_optional_and_kept_within_limits() {
        let config = Config::from_vars(&HashMap::from([("TABLE_NAME", "t")])).expect("valid");
        let copy = &config.copy;
        assert_eq!(
            (
                copy.parts_in_flight,
                copy.part_size_mib,
                copy.single_put_mib
            ),
            (None, None, None)
        );
        let vars = HashMap::from([
            ("TABLE_NAME", "t"),
            ("COPY_PARTS_IN_FLIGHT", "2"),
            ("COPY_PART_SIZE_MIB", "16"),
            ("COPY_SINGLE_PUT_MIB", "5"),
        ]);
        let config = Config::from_vars(&vars).expect("valid");
        let copy = &config.copy;
        assert_eq!(
            (
                copy.parts_in_flight,
                copy.part_size_mib,
                copy.single_put_mib
            ),
            (Some(2), Some(16), Some(5))
        );
        for (name, value) in [
            ("COPY_PARTS_IN_FLIGHT", "0"),
            ("COPY_PARTS_IN_FLIGHT", "65"),
            ("COPY_PART_SIZE_MIB", "4"),
            ("COPY_PART_SIZE_MIB", "8 MiB"),
            ("COPY_SINGLE_PUT_MIB", "0"),
            ("COPY_SINGLE_PUT_MIB", "5121"),
        ] {
            let vars = HashMap::from([("TABLE_NAME", "t"), (name, value)]);
            let err = Config::from_vars(&vars).expect_err(value);
            assert!(err.to_string().contains(name), "{err}");
        }
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
    fn durations_take_units() {
        let vars = HashMap::from([
            ("TABLE_NAME", "t"),
            ("RETRY_MAX_DELAY", "90m"),
            ("WAV_RETENTION", "3d"),
            ("EXPIRY_MARGIN", "3600"),
            ("MAX_ATTEMPTS", "7"),
        ]);
        let retry = Config::from_vars(&vars).expect("valid").copy.retry;
        assert_eq!(retry.max_delay, Duration::from_secs(5_400));
        assert_eq!(retry.retention.wav, Duration::from_secs(3 * 86_400));
        assert_eq!(retry.retention.margin, Duration::from_secs(3_600));
        assert_eq!(retry.max_attempts, Some(7));
    }

    #[test]
    fn events_read_tokens_and_forward_secrets() {
        assert!(events(&HashMap::new()).expect("valid").is_none());
        let vars = HashMap::from([("EVENT_BUS_NAME", "bus")]);
        let config = events(&vars).expect("valid").expect("on");
        assert_eq!(config.bus_name.as_deref(), Some("bus"));
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let vars = HashMap::from([
            ("FORWARD_URL", "https://h.example/in"),
            ("FORWARD_SECRETS", secret),
        ]);
        let config = events(&vars).expect("valid").expect("on");
        let forward = config.forward.expect("forward");
        assert!(!format!("{forward:?}").contains("MfKQ"));
        for bad in ["nope", "whsec_!!", "whsec_c2hvcnQ="] {
            let vars = HashMap::from([
                ("FORWARD_URL", "https://h.example/in"),
                ("FORWARD_SECRETS", bad),
            ]);
            assert!(events(&vars).is_err(), "{bad}");
        }
        let vars = HashMap::from([
            ("WEBHOOK_TOKENS", "same-token-0123456789"),
            (
                "READ_TOKENS",
                "other-token-0123456789,same-token-0123456789",
            ),
        ]);
        let err = read_api(&vars).expect_err("shared token");
        assert!(err.to_string().contains("READ_TOKENS"), "{err}");
        let read = read_api(&HashMap::new()).expect("valid");
        assert_eq!(read.url_expiry, Duration::from_secs(900));
    }

    #[test]
    fn bad_values_are_named() {
        for (name, value) in [
            ("COPY_MODE", "both"),
            ("KEY_PREFIX", "../x"),
            ("MAX_ATTEMPTS", "five"),
            ("RETRY_MAX_DELAY", "1 week"),
            ("EXPIRY_MARGIN", "8d"),
        ] {
            let vars = HashMap::from([("TABLE_NAME", "t"), (name, value)]);
            let err = Config::from_vars(&vars).expect_err("invalid");
            assert!(err.to_string().contains(name), "{err}");
        }
    }
}
