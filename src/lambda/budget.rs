//! Time budgets: how long a trigger may work before its invocation ends.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Until the Lambda deadline minus a margin (to abort, write back and answer), or for
/// `fallback` when there is no deadline (local runs, tests).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub margin: Duration,
    pub fallback: Duration,
}

impl Budget {
    pub fn stop(&self, deadline: Option<SystemTime>) -> Instant {
        let remaining = match deadline {
            Some(deadline) => deadline
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .saturating_sub(self.margin),
            None => self.fallback,
        };
        Instant::now() + remaining
    }
}

/// Epoch milliseconds are above this for any date after 2001; remaining times are far below it.
const EPOCH_MS_FLOOR: u64 = 1_000_000_000_000;

/// The invocation's deadline from Lambda's `deadline_ms` (epoch milliseconds). 0 (tests) means
/// none. `cargo lambda watch` (1.9) sends the time remaining instead; read as a date it would lie
/// in 1970 and end every budget at once, so such a value counts from now.
pub fn lambda_deadline(deadline_ms: u64) -> Option<SystemTime> {
    match deadline_ms {
        0 => None,
        ms if ms < EPOCH_MS_FLOOR => Some(SystemTime::now() + Duration::from_millis(ms)),
        ms => Some(UNIX_EPOCH + Duration::from_millis(ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_are_epoch_times_or_time_remaining() {
        assert_eq!(lambda_deadline(0), None);
        let epoch = 1_800_000_000_000;
        assert_eq!(
            lambda_deadline(epoch),
            Some(UNIX_EPOCH + Duration::from_millis(epoch))
        );
        let ahead = lambda_deadline(600_000)
            .and_then(|d| d.duration_since(SystemTime::now()).ok())
            .unwrap_or_default();
        assert!(
            ahead > Duration::from_secs(590) && ahead <= Duration::from_secs(600),
            "{ahead:?}"
        );
    }
}
