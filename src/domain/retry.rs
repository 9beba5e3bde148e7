//! How long and how often a failed copy is tried again: with exponential backoff until the
//! file's deadline, which comes from how long MusicGPT keeps it (WAV 7 days, anything else 90),
//! less a safety margin. Only causes that cannot pass fail an asset at once.

use std::time::Duration;

use crate::error::Error;

pub const DEFAULT_BASE_DELAY: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(60 * 60);
/// MusicGPT's bucket may list a file a little after its callback: a 404 is believed only after
/// this long.
pub const DEFAULT_NOT_FOUND_GRACE: Duration = Duration::from_secs(60 * 60);
/// Lambda's longest run: a worker that held a lease this long has certainly stopped.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15 * 60);
/// A lease outlives the caller's time budget by this much, covering the final write-back.
pub const DEFAULT_LEASE_GRACE: Duration = Duration::from_secs(60);

const DAY: u64 = 86_400;

/// How long MusicGPT keeps its files, and how long before that the receiver gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileRetention {
    pub wav: Duration,
    pub other: Duration,
    pub margin: Duration,
}

impl Default for FileRetention {
    fn default() -> Self {
        FileRetention {
            wav: Duration::from_secs(7 * DAY),
            other: Duration::from_secs(90 * DAY),
            margin: Duration::from_secs(12 * 60 * 60),
        }
    }
}

impl FileRetention {
    /// The last moment (epoch seconds) a file received at `received_at` is worth trying.
    pub fn deadline(&self, received_at: u64, ext: &str) -> u64 {
        let kept = if ext.eq_ignore_ascii_case("wav") {
            self.wav
        } else {
            self.other
        };
        received_at + kept.saturating_sub(self.margin).as_secs()
    }
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// A cap on attempts; `None` (the default) tries until the deadline.
    pub max_attempts: Option<u32>,
    /// Wait after the first failed attempt; doubled after each further one.
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub not_found_grace: Duration,
    pub retention: FileRetention,
    /// Lease taken when the caller gives no time budget.
    pub lease: Duration,
    /// How long a lease outlives the caller's time budget, covering the final write-back.
    pub lease_grace: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: None,
            base_delay: DEFAULT_BASE_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
            not_found_grace: DEFAULT_NOT_FOUND_GRACE,
            retention: FileRetention::default(),
            lease: DEFAULT_LEASE,
            lease_grace: DEFAULT_LEASE_GRACE,
        }
    }
}

/// What a failed attempt leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    RetryAt(u64),
    /// The cause cannot pass: FAILED.
    Fail,
    /// The deadline has passed: EXPIRED.
    Expire,
}

/// What is known about the asset when an attempt fails.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// Failed attempts so far, this one included.
    pub attempts: u32,
    pub now: u64,
    /// When its callback was received.
    pub received_at: Option<u64>,
    pub deadline: Option<u64>,
}

impl RetryPolicy {
    pub fn with_max_attempts(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts: Some(max_attempts.max(1)),
            ..RetryPolicy::default()
        }
    }

    /// The wait after `attempts` failed attempts.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(20);
        self.base_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay)
    }

    /// Transient causes are tried again until the deadline (the last try falls on it); a file
    /// the source says is not there is believed after the grace window; the rest fail at once.
    pub fn after_failure(&self, err: &Error, attempt: Attempt) -> AfterFailure {
        let transient = match err {
            Error::SourceNotFound(_) => attempt
                .received_at
                .is_none_or(|at| attempt.now < at + self.not_found_grace.as_secs()),
            other => other.is_retryable(),
        };
        if !transient || self.max_attempts.is_some_and(|max| attempt.attempts >= max) {
            return AfterFailure::Fail;
        }
        let next = attempt.now + self.backoff(attempt.attempts).as_secs();
        match attempt.deadline {
            Some(deadline) if attempt.now >= deadline => AfterFailure::Expire,
            Some(deadline) => AfterFailure::RetryAt(next.min(deadline)),
            None => AfterFailure::RetryAt(next),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(60),
            ..RetryPolicy::default()
        }
    }

    fn attempt(attempts: u32, now: u64) -> Attempt {
        Attempt {
            attempts,
            now,
            received_at: Some(NOW),
            deadline: Some(NOW + 1_000),
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = policy();
        let waits: Vec<u64> = (1..=5).map(|a| policy.backoff(a).as_secs()).collect();
        assert_eq!(waits, vec![10, 20, 40, 60, 60]);
        assert_eq!(policy.backoff(u32::MAX).as_secs(), 60);
        assert_eq!(RetryPolicy::default().backoff(30), DEFAULT_MAX_DELAY);
    }

    #[test]
    fn transient_failures_retry_until_the_deadline_then_expire() {
        let policy = policy();
        let busy = Error::source("answered 503");
        assert_eq!(
            policy.after_failure(&busy, attempt(1, NOW)),
            AfterFailure::RetryAt(NOW + 10)
        );
        assert_eq!(
            policy.after_failure(&busy, attempt(50, NOW + 990)),
            AfterFailure::RetryAt(NOW + 1_000),
            "the last try falls on the deadline"
        );
        assert_eq!(
            policy.after_failure(&busy, attempt(51, NOW + 1_000)),
            AfterFailure::Expire
        );
        let capped = RetryPolicy::with_max_attempts(2);
        assert_eq!(
            capped.after_failure(&busy, attempt(2, NOW)),
            AfterFailure::Fail
        );
    }

    #[test]
    fn not_found_is_believed_only_after_the_grace_window() {
        let policy = RetryPolicy {
            not_found_grace: Duration::from_secs(300),
            ..policy()
        };
        let gone = Error::SourceNotFound("answered 404".into());
        assert!(matches!(
            policy.after_failure(&gone, attempt(1, NOW + 299)),
            AfterFailure::RetryAt(_)
        ));
        assert_eq!(
            policy.after_failure(&gone, attempt(2, NOW + 300)),
            AfterFailure::Fail
        );
        for permanent in [
            Error::SourceRefused("host".into()),
            Error::SourcePermanent("over MAX_ASSET_BYTES".into()),
        ] {
            assert_eq!(
                policy.after_failure(&permanent, attempt(1, NOW)),
                AfterFailure::Fail
            );
        }
    }

    #[test]
    fn deadlines_follow_the_format() {
        let retention = FileRetention::default();
        assert_eq!(retention.deadline(NOW, "wav"), NOW + 7 * DAY - 12 * 3600);
        assert_eq!(retention.deadline(NOW, "mp3"), NOW + 90 * DAY - 12 * 3600);
        assert_eq!(retention.deadline(NOW, "png"), NOW + 90 * DAY - 12 * 3600);
    }
}
