//! Spacing MusicGPT calls to a plan's rate (`domain::conversion::RateLimit`): each call waits
//! until the previous one is at least an interval old. Clones share one schedule, so the
//! concurrent lookups of one process keep to the rate together.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::domain::conversion::RateLimit;

#[derive(Debug, Clone)]
pub struct Pacer {
    interval: Duration,
    next: Arc<Mutex<Option<Instant>>>,
}

impl Pacer {
    pub fn new(interval: Duration) -> Pacer {
        Pacer {
            interval,
            next: Arc::new(Mutex::new(None)),
        }
    }

    /// Lookups at the plan's (or the configured) calls a minute.
    pub fn for_lookups(rate: &RateLimit) -> Pacer {
        Pacer::new(Duration::from_millis(rate.min_interval_millis()))
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Returns when the next call may be made, and books the slot after it.
    pub async fn ready(&self) {
        let mut next = self.next.lock().await;
        if let Some(at) = *next {
            tokio::time::sleep_until(at).await;
        }
        *next = Some(Instant::now() + self.interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_are_spaced_by_the_interval() {
        let pacer = Pacer::new(Duration::from_millis(40));
        let start = Instant::now();
        let mut at = Vec::new();
        for _ in 0..4 {
            pacer.clone().ready().await;
            at.push(start.elapsed());
        }
        assert!(at[0] < Duration::from_millis(40), "{at:?}");
        for pair in at.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(39), "{at:?}");
        }
    }

    #[test]
    fn the_interval_follows_the_plan() {
        let free = RateLimit::from_settings(Some("free"), None).unwrap_or_default();
        assert_eq!(Pacer::for_lookups(&free).interval(), Duration::from_secs(3));
    }
}
