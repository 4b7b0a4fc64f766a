//! The watchdog: a trial that makes no progress (no finished step or epoch; images decoded count)
//! for `max(10 × its slowest epoch so far, progress_timeout)` is killed and failed as retryable.
//! A rank blocked forever in a collective, a deadlock or a stuck device all look the same from
//! here: silence.

use std::time::Duration;

use tokio::time::Instant;

/// The sweep's `progress_timeout` when it sets none.
pub const DEFAULT_PROGRESS_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// How often the agent looks.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Silence allowed, as a multiple of the slowest epoch seen.
const SLOWEST_EPOCH_FACTOR: u32 = 10;

#[derive(Debug)]
pub struct Watchdog {
    progress_timeout: Duration,
    last_progress: Instant,
    epoch_started: Instant,
    slowest_epoch: Duration,
    /// Seconds of silence when it fired.
    fired: Option<u64>,
}

impl Watchdog {
    pub fn new(progress_timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            progress_timeout,
            last_progress: now,
            epoch_started: now,
            slowest_epoch: Duration::ZERO,
            fired: None,
        }
    }

    pub fn progress(&mut self) {
        self.last_progress = Instant::now();
    }

    /// An epoch ended: progress, and a measure of how long one takes.
    pub fn epoch(&mut self) {
        let now = Instant::now();
        self.slowest_epoch = self.slowest_epoch.max(now.duration_since(self.epoch_started));
        self.epoch_started = now;
        self.last_progress = now;
    }

    /// The silence allowed now.
    pub fn limit(&self) -> Duration {
        (self.slowest_epoch * SLOWEST_EPOCH_FACTOR).max(self.progress_timeout)
    }

    /// Fires once, when the silence has lasted longer than the limit: the seconds of silence.
    pub fn check(&mut self, now: Instant) -> Option<u64> {
        if self.fired.is_some() {
            return None;
        }
        let silent = now.duration_since(self.last_progress);
        if silent > self.limit() {
            self.fired = Some(silent.as_secs());
            return self.fired;
        }
        None
    }

    /// Whether (and after how many seconds of silence) it fired.
    pub fn fired(&self) -> Option<u64> {
        self.fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fires_once_after_the_timeout_and_not_before() {
        let mut dog = Watchdog::new(Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(dog.check(Instant::now()), None);
        dog.progress();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(dog.check(Instant::now()), None, "exactly the timeout is still allowed");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(dog.check(Instant::now()), Some(7));
        assert_eq!(dog.check(Instant::now()), None, "fires once");
        assert_eq!(dog.fired(), Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_epoch_stretches_the_limit_to_ten_of_them() {
        let mut dog = Watchdog::new(Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(3)).await;
        dog.epoch();
        assert_eq!(dog.limit(), Duration::from_secs(30));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(dog.check(Instant::now()), None);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(dog.check(Instant::now()), Some(31));
    }
}
