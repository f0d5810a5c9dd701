//! Where signing keys and token lifetimes are kept durably: the
//! [`KeyStore`] the [`KeyRing`](super::KeyRing) reads and changes. The store
//! implements it (`crate::store`), using [`longest_live_lifetime`] for the
//! rule; the key ring never names a database.

use super::lifecycle::{KeyState, KeyTimes, Transition};
use crate::durable::StoreError;

/// A signing key as kept in the store, with its place in the lifecycle.
#[derive(Clone)]
pub struct StoredKey {
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// `ES256` or `EdDSA`.
    pub alg: String,
    /// The private key as stored: PKCS#8 DER, or, when `sealed`, that DER
    /// encrypted under the key-encryption key (nonce, then ciphertext and
    /// tag).
    pub pkcs8: Vec<u8>,
    /// Whether `pkcs8` is encrypted.
    pub sealed: bool,
    /// Seconds since the epoch.
    pub created_at: u64,
    /// Where it is in its life.
    pub state: KeyState,
    /// When it signs from.
    pub activates_at: u64,
    /// When a retiring or revoked key may be deleted.
    pub retires_at: Option<u64>,
    /// When it was revoked.
    pub revoked_at: Option<u64>,
}

impl StoredKey {
    /// What the lifecycle rule reads of it.
    pub fn times(&self) -> KeyTimes {
        KeyTimes {
            kid: self.kid.clone(),
            state: self.state,
            created_at: self.created_at,
            activates_at: self.activates_at,
            retires_at: self.retires_at,
            revoked_at: self.revoked_at,
        }
    }
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("state", &self.state)
            .field("sealed", &self.sealed)
            .field("activates_at", &self.activates_at)
            .field("retires_at", &self.retires_at)
            .finish_non_exhaustive()
    }
}

/// Signing keys, and how long the tokens they signed may live. Several
/// replicas share one store: its unique rules admit at most one `active`
/// and at most one `next` key, and every change is conditional on the
/// state the caller saw, so concurrent callers agree.
#[async_trait::async_trait]
pub trait KeyStore: Send + Sync {
    /// Every signing key still stored, any order.
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    /// Adds a key unless it would be a second `active` or `next` key (or
    /// its kid exists): returns whether it was added. A replica that loses
    /// the race reads the winner's key back.
    async fn insert_signing_key(&self, key: &StoredKey) -> Result<bool, StoreError>;
    /// Applies one lifecycle change if the key is still in the state it
    /// names; returns whether it did.
    async fn apply_key_transition(&self, change: &Transition) -> Result<bool, StoreError>;
    /// Makes `kid` revoked at `at` (deletable at `retires_at`); returns the
    /// state it was in (`Revoked` if it already was), or `None` if there is
    /// no such key.
    async fn revoke_signing_key(
        &self,
        kid: &str,
        at: u64,
        retires_at: u64,
    ) -> Result<Option<KeyState>, StoreError>;
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
