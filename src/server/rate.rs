//! A per-principal limit on requests that write durable state (RFC 7009
//! self-revocation): each appends a kill-switch entry that every follower
//! receives, so one workload must not be able to append without bound.

use std::collections::HashMap;
use std::sync::Mutex;

/// Above this many tracked principals, windows that have ended are dropped.
const PRUNE_ABOVE: usize = 10_000;

/// At most `per_window` requests per key in each fixed window.
#[derive(Debug)]
pub struct RateLimit {
    per_window: u32,
    window_secs: u64,
    /// Key to (window start, requests in it).
    windows: Mutex<HashMap<String, (u64, u32)>>,
}

impl RateLimit {
    /// A limit of `per_window` requests per `window_secs` seconds per key.
    pub fn new(per_window: u32, window_secs: u64) -> Self {
        Self {
            per_window,
            window_secs: window_secs.max(1),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request by `key` at `now`; `Err(seconds)` when over the
    /// limit, with how long until the window ends.
    pub fn admit(&self, key: &str, now: u64) -> Result<(), u64> {
        // Counts only: a panic elsewhere cannot leave them inconsistent.
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.len() > PRUNE_ABOVE {
            let window = self.window_secs;
            windows.retain(|_, (start, _)| start.saturating_add(window) > now);
        }
        let slot = windows.entry(key.to_owned()).or_insert((now, 0));
        if slot.0.saturating_add(self.window_secs) <= now {
            *slot = (now, 0);
        }
        if slot.1 >= self.per_window {
            let ends = slot.0.saturating_add(self.window_secs);
            return Err(ends.saturating_sub(now).max(1));
        }
        slot.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_over_its_limit_waits_for_the_next_window_and_others_do_not() {
        let limit = RateLimit::new(2, 60);
        assert_eq!(limit.admit("a", 100), Ok(()));
        assert_eq!(limit.admit("a", 101), Ok(()));
        assert_eq!(limit.admit("a", 110), Err(50));
        assert_eq!(limit.admit("b", 110), Ok(()));
        assert_eq!(limit.admit("a", 160), Ok(()));
    }
}
