//! DPoP (RFC 9449) at the broker: the proof check lives in `writ-proto`
//! ([`writ_proto::dpop`]), which the SDK's resource-server verifier uses
//! too, so both refuse exactly the same proofs. What is the broker's own is
//! [`ProofReplay`]: with several replicas a proof accepted by one must be
//! refused by all, so besides this process's [`ReplayCache`] the proof is
//! recorded in the store every replica shares ([`SharedProofLog`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use writ_proto::dpop::{
    CheckedProof, DpopError, Expected, ReplayCache, ReplayError, ReplayKey, ReplayStore, check,
    verify,
};

use crate::durable::StoreError;

/// Where every replica records the proofs it accepted. The store implements
/// it (PostgreSQL: an unlogged table with the key as primary key).
#[async_trait::async_trait]
pub trait SharedProofLog: Send + Sync {
    /// Records proof `key`, live until `valid_until`; `false` when a replica
    /// recorded it before and it is still live at `now`.
    async fn remember_proof(
        &self,
        key: &ReplayKey,
        valid_until: u64,
        now: u64,
    ) -> Result<bool, StoreError>;
    /// Forgets proofs that stopped being live before `before`.
    async fn forget_proofs(&self, before: u64) -> Result<u64, StoreError>;
}

/// Why a proof was not accepted as new.
#[derive(Debug, thiserror::Error)]
pub enum ProofReplayError {
    /// Seen before (here or at another replica), or no room to remember it.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The shared record cannot be reached: whether another replica saw the
    /// proof is unknown, so it is refused.
    #[error("DPoP proofs cannot be checked against the other replicas: {0}")]
    Store(#[from] StoreError),
}

/// How long after its last acceptable second a shared proof record is kept:
/// replicas' clocks may differ by this much without one forgetting a proof
/// another still accepts.
const CLOCK_MARGIN_SECS: u64 = 60;

/// The broker's replay check: this process's memory first (a replay to the
/// same replica never reaches the store), then the shared record, if the
/// store is shared.
pub struct ProofReplay {
    local: ReplayCache,
    shared: Option<Arc<dyn SharedProofLog>>,
    /// One-time assertions (ID-JAG `jti`s) seen here, to when each expires.
    assertions: Mutex<HashMap<ReplayKey, u64>>,
}

/// The most one-time assertions remembered at once in this process; past
/// it, new ones are refused until old ones expire (never forgotten live).
pub const MAX_ASSERTIONS: usize = 100_000;

impl ProofReplay {
    /// Remembers proofs in this process only: one replica.
    pub fn local(cache: ReplayCache) -> Self {
        Self {
            local: cache,
            shared: None,
            assertions: Mutex::default(),
        }
    }

    /// Remembers proofs in this process and in `shared`, which every
    /// replica consults.
    pub fn shared(cache: ReplayCache, shared: Arc<dyn SharedProofLog>) -> Self {
        Self {
            local: cache,
            shared: Some(shared),
            assertions: Mutex::default(),
        }
    }

    /// Records a checked proof at `now`; refuses it if this or any replica
    /// accepted it before, or if that cannot be known.
    pub async fn remember(&self, proof: &CheckedProof, now: u64) -> Result<(), ProofReplayError> {
        self.local.remember(proof, now)?;
        if let Some(shared) = &self.shared {
            let fresh = shared
                .remember_proof(
                    proof.replay_key(),
                    proof.valid_until().saturating_add(CLOCK_MARGIN_SECS),
                    now,
                )
                .await?;
            if !fresh {
                return Err(ReplayError::Replay.into());
            }
        }
        Ok(())
    }

    /// Records a one-time assertion of `issuer` (an ID-JAG) by its `jti`,
    /// live until `valid_until`; refuses it if this or any replica accepted
    /// it before, if that cannot be known, or if there is no room.
    pub async fn remember_assertion(
        &self,
        issuer: &str,
        jti: &str,
        valid_until: u64,
        now: u64,
    ) -> Result<(), ProofReplayError> {
        let key = assertion_key(issuer, jti);
        {
            let mut seen = self
                .assertions
                .lock()
                .map_err(|_| ReplayError::Full { retry_after: 1 })?;
            if seen.get(&key).is_some_and(|&until| until >= now) {
                return Err(ReplayError::Replay.into());
            }
            if seen.len() >= MAX_ASSERTIONS {
                seen.retain(|_, until| *until >= now);
                if seen.len() >= MAX_ASSERTIONS {
                    let soonest = seen.values().min().copied().unwrap_or(now);
                    let retry_after = soonest.saturating_sub(now).max(1);
                    return Err(ReplayError::Full { retry_after }.into());
                }
            }
            seen.insert(key, valid_until);
        }
        if let Some(shared) = &self.shared {
            let fresh = shared
                .remember_proof(&key, valid_until.saturating_add(CLOCK_MARGIN_SECS), now)
                .await?;
            if !fresh {
                return Err(ReplayError::Replay.into());
            }
        }
        Ok(())
    }

    /// Checks `proof` against `expected` and remembers it; the thumbprint
    /// of its key, or why not.
    pub async fn verify(&self, proof: &str, expected: &Expected<'_>) -> Result<String, DpopError> {
        let checked = check(proof, expected)?;
        match self.remember(&checked, expected.now).await {
            Ok(()) => Ok(checked.jkt),
            Err(ProofReplayError::Replay(e)) => Err(e.into()),
            Err(ProofReplayError::Store(e)) => {
                tracing::warn!(error = %e, "DPoP proof refused: the shared replay record is unreachable");
                Err(ReplayError::Replay.into())
            }
        }
    }

    /// Sweeps the shared record every minute of proofs no replica accepts
    /// any more, until `self` is dropped.
    pub fn spawn_sweep(self: &Arc<Self>, clock: Arc<dyn crate::clock::Clock>) {
        if self.shared.is_none() {
            return;
        }
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(me) = me.upgrade() else { break };
                let Some(shared) = &me.shared else { break };
                if let Err(e) = shared.forget_proofs(clock.unix_now()).await {
                    tracing::warn!(error = %e, "could not sweep expired DPoP proofs");
                }
            }
        });
    }
}

/// The replay key of a one-time assertion: apart from DPoP proofs' keys
/// (a different prefix under the hash), so neither can shadow the other.
fn assertion_key(issuer: &str, jti: &str) -> ReplayKey {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("assertion\0{issuer}\0{jti}").as_bytes(),
    );
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest.as_ref()[..16]);
    key
}
