//! Rate limits on token requests (`limits.per_principal`,
//! `limits.per_target`): GCRA, the generic cell rate algorithm, per key. A
//! key may spend a rate's whole count at once, then one request every
//! `per / count`; each key costs one timestamp.
//!
//! The limiter guards availability, not security, so its memory is
//! bounded rather than exact: a key whose timestamp has passed is
//! indistinguishable from a new one and is dropped when its shard fills;
//! if a shard is still full (more than [`MAX_KEYS`] keys active at once,
//! e.g. an attacker rotating principals), the whole shard is forgotten,
//! which can let those keys burst once more. Refusals are audited sampled:
//! the first per key per second.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::time::Duration;

use crate::model::Rate;

/// Keys kept per limit, over all shards.
pub const MAX_KEYS: usize = 65_536;
const SHARDS: usize = 16;

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `limits.per_principal`.
    PerPrincipal,
    /// `limits.per_target`.
    PerTarget,
}

impl Limit {
    /// The metric label and config key suffix: `per_principal`, `per_target`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PerPrincipal => "per_principal",
            Self::PerTarget => "per_target",
        }
    }
}

/// A refusal by a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// The limit.
    pub limit: Limit,
    /// Whole seconds until a request would pass (at least 1).
    pub retry_after: u64,
    /// Whether this refusal is the one of its key and second to audit.
    pub audit: bool,
}

/// Both limits, each optional.
#[derive(Debug, Default)]
pub struct RateLimits {
    per_principal: Option<Gcra>,
    per_target: Option<Gcra>,
}

impl RateLimits {
    /// Limits from the configured rates (none: no limit).
    pub fn new(per_principal: Option<Rate>, per_target: Option<Rate>) -> Self {
        Self {
            per_principal: per_principal.map(Gcra::new),
            per_target: per_target.map(Gcra::new),
        }
    }

    /// Counts one token request by `principal` for `target` at `now` (since
    /// the epoch). The principal's limit is checked first; a request it
    /// refuses does not count against the target.
    pub fn admit(&self, principal: &str, target: &str, now: Duration) -> Result<(), Limited> {
        let now = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        if let Some(limit) = &self.per_principal {
            limit.admit(principal, now, Limit::PerPrincipal)?;
        }
        if let Some(limit) = &self.per_target {
            limit.admit(target, now, Limit::PerTarget)?;
        }
        Ok(())
    }
}

/// One key's state: when its next request is due in the ideal schedule
/// (the "theoretical arrival time"), and the second its last audited
/// refusal fell in.
#[derive(Debug, Clone, Copy)]
struct Slot {
    tat: u64,
    audited_second: u64,
}

#[derive(Debug)]
struct Gcra {
    /// Nanoseconds between requests at the steady rate.
    interval: u64,
    /// Nanoseconds the schedule may run ahead of now (the burst).
    period: u64,
    shards: Box<[Mutex<HashMap<String, Slot>>]>,
    hasher: std::collections::hash_map::RandomState,
}

const NANOS: u64 = 1_000_000_000;

impl Gcra {
    fn new(rate: Rate) -> Self {
        let period = u64::try_from(rate.per().as_nanos()).unwrap_or(u64::MAX);
        Self {
            interval: (period / u64::from(rate.count())).max(1),
            period,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<String, Slot>> {
        // The modulo keeps the index in range.
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }

    fn admit(&self, key: &str, now: u64, limit: Limit) -> Result<(), Limited> {
        // Timestamps only: a panic elsewhere cannot leave them inconsistent.
        let mut slots = self
            .shard(key)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !slots.contains_key(key) && slots.len() >= MAX_KEYS / SHARDS {
            // Keys whose schedule has caught up with now are as good as new.
            slots.retain(|_, slot| slot.tat > now);
            if slots.len() >= MAX_KEYS / SHARDS {
                tracing::warn!(
                    limit = limit.as_str(),
                    keys = slots.len(),
                    "rate limiter full of active keys: forgetting a shard"
                );
                slots.clear();
            }
        }
        let slot = slots.entry(key.to_owned()).or_insert(Slot {
            tat: now,
            audited_second: u64::MAX,
        });
        let next = slot.tat.max(now).saturating_add(self.interval);
        let ahead = next - now;
        if ahead <= self.period {
            slot.tat = next;
            return Ok(());
        }
        let wait = ahead - self.period;
        let second = now / NANOS;
        let audit = slot.audited_second != second;
        slot.audited_second = second;
        Err(Limited {
            limit,
            retry_after: wait.div_ceil(NANOS).max(1),
            audit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = NANOS;

    fn at(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn a_key_spends_its_burst_then_waits_one_interval_and_others_are_unaffected() {
        let limits = RateLimits::new("3/m".parse().ok(), None);
        for _ in 0..3 {
            assert_eq!(limits.admit("a", "t", at(100)), Ok(()));
        }
        let refused = limits.admit("a", "t", at(100)).unwrap_err();
        assert_eq!(refused.limit, Limit::PerPrincipal);
        assert_eq!(refused.retry_after, 20);
        assert!(refused.audit);
        // The second refusal in the same second is not audited again.
        assert!(!limits.admit("a", "t", at(100)).unwrap_err().audit);
        assert_eq!(limits.admit("b", "t", at(100)), Ok(()));
        assert_eq!(limits.admit("a", "t", at(120)), Ok(()));
        assert!(limits.admit("a", "t", at(120)).is_err());
    }

    #[test]
    fn the_target_limit_counts_every_principal_and_retry_after_is_at_least_a_second() {
        let limits = RateLimits::new(None, "2/s".parse().ok());
        assert_eq!(limits.admit("a", "t", at(5)), Ok(()));
        assert_eq!(limits.admit("b", "t", at(5)), Ok(()));
        let refused = limits.admit("c", "t", at(5)).unwrap_err();
        assert_eq!((refused.limit, refused.retry_after), (Limit::PerTarget, 1));
        assert_eq!(limits.admit("c", "u", at(5)), Ok(()));
    }

    #[test]
    fn memory_stays_bounded_when_keys_rotate() {
        let limit = Gcra::new("1/h".parse().unwrap());
        for i in 0..(MAX_KEYS * 3) {
            let _ = limit.admit(&format!("k{i}"), 10 * S, Limit::PerPrincipal);
        }
        let kept: usize = limit.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(kept <= MAX_KEYS, "{kept}");
    }
}
