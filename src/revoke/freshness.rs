//! How old this replica's view of the kill switch is. Another replica may
//! have acknowledged a block this one has not read yet; past
//! `store.max_staleness` the replica assumes it has and refuses to mint.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The view is older than the limit: nothing may be minted on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "this replica's view of the kill switch is {}s old; it refuses to mint until it catches up",
    .age.as_secs()
)]
pub struct Stale {
    /// How old the view is.
    pub age: Duration,
}

/// When the view was last known complete, on the monotonic clock (wall
/// time may jump; staleness must not).
#[derive(Debug)]
pub struct Freshness {
    base: Instant,
    /// Milliseconds after `base` at which the last complete read began.
    synced_ms: AtomicU64,
    max: Duration,
}

impl Freshness {
    /// A view complete now, stale after `max` without [`Freshness::synced`].
    pub fn new(max: Duration) -> Self {
        Self {
            base: Instant::now(),
            synced_ms: AtomicU64::new(0),
            max,
        }
    }

    /// Records that every entry committed before `read_began` is applied.
    /// A later mark never moves the view back.
    pub fn synced(&self, read_began: Instant) {
        let ms = u64::try_from(read_began.saturating_duration_since(self.base).as_millis())
            .unwrap_or(u64::MAX);
        self.synced_ms.fetch_max(ms, Ordering::AcqRel);
    }

    /// How old the view is.
    pub fn age(&self) -> Duration {
        self.age_at(Instant::now())
    }

    fn age_at(&self, now: Instant) -> Duration {
        let synced = self.base + Duration::from_millis(self.synced_ms.load(Ordering::Acquire));
        now.saturating_duration_since(synced)
    }

    /// The view may be minted on, or [`Stale`].
    pub fn check(&self) -> Result<(), Stale> {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Result<(), Stale> {
        let age = self.age_at(now);
        if age > self.max {
            Err(Stale { age })
        } else {
            Ok(())
        }
    }

    /// The limit, `store.max_staleness`.
    pub fn limit(&self) -> Duration {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_view_is_fresh_until_the_limit_and_a_sync_renews_it() {
        let freshness = Freshness::new(5 * SECOND);
        let start = freshness.base;
        assert!(freshness.check_at(start + 5 * SECOND).is_ok());
        assert_eq!(
            freshness.check_at(start + 6 * SECOND),
            Err(Stale { age: 6 * SECOND })
        );
        freshness.synced(start + 4 * SECOND);
        assert!(freshness.check_at(start + 6 * SECOND).is_ok());
        assert!(freshness.check_at(start + 10 * SECOND).is_err());
    }

    #[test]
    fn an_older_read_never_moves_the_view_back() {
        let freshness = Freshness::new(5 * SECOND);
        let start = freshness.base;
        freshness.synced(start + 10 * SECOND);
        freshness.synced(start + 2 * SECOND);
        assert_eq!(freshness.age_at(start + 12 * SECOND), 2 * SECOND);
    }
}
