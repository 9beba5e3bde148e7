//! How often and how long a failed copy is tried again.

use std::time::Duration;

pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Lambda's longest run: a worker that held a lease this long has certainly stopped.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15 * 60);
/// A lease outlives the caller's time budget by this much, covering the final write-back.
pub const DEFAULT_LEASE_GRACE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    /// Wait after the first failed attempt; doubled after each further one.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// Lease taken when the caller gives no time budget.
    pub lease: Duration,
    /// How long a lease outlives the caller's time budget, covering the final write-back.
    pub lease_grace: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::with_max_attempts(DEFAULT_MAX_ATTEMPTS)
    }
}

impl RetryPolicy {
    pub fn with_max_attempts(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            base_delay: DEFAULT_BASE_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
            lease: DEFAULT_LEASE,
            lease_grace: DEFAULT_LEASE_GRACE,
        }
    }

    /// The wait after `attempts` failed attempts.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(20);
        self.base_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(60),
            lease: DEFAULT_LEASE,
            lease_grace: DEFAULT_LEASE_GRACE,
        };
        let waits: Vec<u64> = (1..=5).map(|a| policy.backoff(a).as_secs()).collect();
        assert_eq!(waits, vec![10, 20, 40, 60, 60]);
        assert_eq!(policy.backoff(u32::MAX).as_secs(), 60);
    }
}
