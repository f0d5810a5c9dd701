//! Where signing keys and token lifetimes are kept durably: the
//! [`KeyStore`] the [`KeyRing`](super::KeyRing) opens from. The store
//! implements it (`crate::store`), using [`longest_live_lifetime`] for the
//! rule; the key ring never names a database.

use crate::durable::StoreError;

/// A signing key as kept in the store (private: the store file is 0600).
#[derive(Clone)]
pub struct StoredKey {
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// `ES256` or `EdDSA`.
    pub alg: String,
    /// The private key, PKCS#8 DER.
    pub pkcs8: Vec<u8>,
    /// Seconds since the epoch.
    pub created_at: u64,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish()
    }
}

/// Signing keys, and how long the tokens they signed may live.
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync {
    /// Every signing key, any order.
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    /// Adds a signing key, durably.
    async fn put_signing_key(&self, key: &StoredKey) -> Result<(), StoreError>;
    /// Records that a broker minting tokens of at most `max_ttl` seconds
    /// started at `now`, and returns the longest lifetime a token minted by
    /// it or by any earlier run may still have: lowering `tokens.max_ttl`
    /// does not shorten what was already issued.
    async fn record_token_lifetime(&self, max_ttl: u64, now: u64) -> Result<u64, StoreError>;
}

/// Runs as `(started_at, max_ttl)`, oldest first: which of them may still
/// have live tokens at `now`, and the longest lifetime among those and
/// `current`. A run's tokens were minted before the next run started, so
/// they live at most until that start plus its `max_ttl`.
pub fn longest_live_lifetime(runs: &[(u64, u64)], current: u64, now: u64) -> (u64, Vec<bool>) {
    let mut longest = current;
    let alive: Vec<bool> = runs
        .iter()
        .enumerate()
        .map(|(i, &(_, ttl))| {
            let ended_by = runs.get(i + 1).map_or(now, |&(next, _)| next);
            let alive = ended_by.saturating_add(ttl) > now;
            if alive {
                longest = longest.max(ttl);
            }
            alive
        })
        .collect();
    (longest, alive)
}

/// The start of the newest run a store may forget along with every older
/// one: the oldest runs whose tokens are all dead (`alive` as
/// [`longest_live_lifetime`] returns it). Only a prefix goes, since a dead
/// run's start is what bounds the run before it.
pub fn forgettable_through(runs: &[(u64, u64)], alive: &[bool]) -> Option<u64> {
    let dead = alive.iter().take_while(|a| !**a).count();
    dead.checked_sub(1)
        .and_then(|i| runs.get(i))
        .map(|&(started_at, _)| started_at)
}

#[cfg(test)]
mod tests {
    use super::{forgettable_through, longest_live_lifetime};

    #[test]
    fn only_the_oldest_dead_runs_may_be_forgotten() {
        let runs = [(0, 10), (5, 10), (100, 10)];
        assert_eq!(forgettable_through(&runs, &[false, false, true]), Some(5));
        assert_eq!(forgettable_through(&runs, &[false, true, false]), Some(0));
        assert_eq!(forgettable_through(&runs, &[true, false, true]), None);
        assert_eq!(forgettable_through(&[], &[]), None);
    }

    #[test]
    fn a_lowered_max_ttl_keeps_the_longer_one_until_its_tokens_expire() {
        // A run with 1h started at 0; at 100 writ restarts with 5m.
        assert_eq!(
            longest_live_lifetime(&[(0, 3600)], 300, 100),
            (3600, vec![true])
        );
        // At 4000 another restart: tokens of the 1h run died by 100 + 3600.
        let (longest, alive) = longest_live_lifetime(&[(0, 3600), (100, 300)], 300, 4000);
        assert_eq!((longest, alive), (300, vec![false, true]));
        assert_eq!(longest_live_lifetime(&[], 900, 10), (900, vec![]));
    }
}
