//! The kill switch as a service: an entry takes effect in the index at once,
//! is made durable, and only then is acknowledged and sent to every follower
//! of the feed. Writes are serialized so the feed's `seq` order is the order
//! followers receive entries in.

use std::sync::Arc;

use tokio::sync::{Mutex, broadcast};

use super::entry::RevokeRequest;
use super::log::RevocationLog;
use crate::clock::Clock;
use crate::durable::StoreError;
use writ_proto::revocation::{EXPIRED_TOKEN_GRACE, Entry, EntryKind, RevocationIndex, Selector};

/// How many entries a slow follower may fall behind before it re-reads the store.
const FEED_BUFFER: usize = 4096;
/// Entries read from the store per page.
pub const PAGE: usize = 1000;

/// What lifting an entry did.
#[derive(Debug)]
pub enum LiftOutcome {
    /// The block is lifted; here is the lift entry.
    Lifted(Arc<Entry>),
    /// No entry has that id.
    NotFound,
    /// It was lifted before.
    AlreadyLifted,
    /// It blocks nothing (a plain revocation, or itself a lift): nothing to lift.
    NotABlock,
}

/// Log, index and feed of the kill switch.
pub struct KillSwitch {
    log: Arc<dyn RevocationLog>,
    index: Arc<RevocationIndex>,
    feed: broadcast::Sender<Arc<Entry>>,
    clock: Arc<dyn Clock>,
    writes: Mutex<()>,
    /// Entries older than this (seconds) can revoke no live token.
    horizon: u64,
}

/// A fresh entry id. Drawn before anything changes: without randomness the
/// write is refused as a store failure ("nothing was changed"), since two
/// entries sharing an id would make a lift or a lookup find the wrong one.
fn new_id() -> Result<String, StoreError> {
    writ_proto::id::random_id().map_err(|e| {
        tracing::error!(error = %e, "no revocation id: the write is refused");
        StoreError::Io(std::io::Error::other(e))
    })
}

impl KillSwitch {
    /// Builds the index from every entry in the log that can still matter.
    pub async fn load(
        log: Arc<dyn RevocationLog>,
        clock: Arc<dyn Clock>,
        horizon: u64,
    ) -> Result<Self, StoreError> {
        let index = Arc::new(RevocationIndex::new());
        let now = clock.unix_now();
        let forgotten = log
            .forget_token_revocations(now.saturating_sub(EXPIRED_TOKEN_GRACE))
            .await?;
        let mut since = 0;
        loop {
            let page = log.since(since, PAGE).await?;
            let Some(last) = page.last() else { break };
            since = last.seq;
            for entry in page {
                if entry.kind == EntryKind::Revoke && entry.matters_at(now, horizon) {
                    index.upsert(Arc::new(entry));
                }
            }
        }
        tracing::info!(entries = index.len(), forgotten, "revocation index loaded");
        let (feed, _) = broadcast::channel(FEED_BUFFER);
        Ok(Self {
            log,
            index,
            feed,
            clock,
            writes: Mutex::new(()),
            horizon,
        })
    }

    /// The hot-path index.
    pub fn index(&self) -> &RevocationIndex {
        &self.index
    }

    /// Revokes (and maybe blocks) what `req` selects. The entry takes
    /// effect in the index before the store write, so nothing slips through
    /// while it is made durable; if the write fails it is taken back out.
    /// The work runs in its own task: a caller that goes away (timeout,
    /// disconnect) cannot leave it half done.
    pub async fn revoke(
        self: &Arc<Self>,
        req: RevokeRequest,
        who: String,
    ) -> Result<Arc<Entry>, StoreError> {
        let me = self.clone();
        tokio::spawn(async move { me.revoke_now(req, who, None).await })
            .await
            .unwrap_or_else(|e| Err(StoreError::Io(std::io::Error::other(e.to_string()))))
    }

    async fn revoke_now(
        &self,
        req: RevokeRequest,
        who: String,
        token_exp: Option<u64>,
    ) -> Result<Arc<Entry>, StoreError> {
        let _serial = self.writes.lock().await;
        let mut entry = Entry {
            id: new_id()?,
            seq: 0,
            kind: EntryKind::Revoke,
            selector: req.selector,
            reason: req.reason,
            who,
            // Until the real time is known, the pending entry revokes every
            // matching token, whenever issued: fail closed.
            effective_at: u64::MAX,
            block: req.block,
            until: req.until,
            lifted_at: None,
            lifts: None,
            token_exp,
        };
        let pending = Arc::new(entry.clone());
        self.index.upsert(pending.clone());
        entry.effective_at = self.clock.unix_now();
        match self.log.append(&entry).await {
            Ok(seq) => {
                entry.seq = seq;
                let entry = Arc::new(entry);
                self.index.upsert(entry.clone());
                let _ = self.feed.send(entry.clone());
                Ok(entry)
            }
            Err(e) => {
                self.index.remove(&pending);
                Err(e)
            }
        }
    }

    /// RFC 7009: revokes one token by its `jti`, unless an entry already
    /// covers it (checked under the write lock, so repeats cost nothing).
    /// The entry is kept only while the token (`expires_at`) can live.
    pub async fn revoke_token(
        self: &Arc<Self>,
        facts_jti: String,
        issued_at: u64,
        expires_at: u64,
        who: String,
    ) -> Result<Arc<Entry>, StoreError> {
        let me = self.clone();
        tokio::spawn(async move {
            {
                let _serial = me.writes.lock().await;
                let covering = me.index.entries().into_iter().find(|e| {
                    e.selector == Selector::Jti(facts_jti.clone()) && e.revokes_issued_at(issued_at)
                });
                if let Some(entry) = covering {
                    return Ok(entry);
                }
            }
            let request = RevokeRequest {
                selector: Selector::Jti(facts_jti),
                reason: "revoked by its holder (RFC 7009)".into(),
                block: false,
                until: None,
            };
            me.revoke_now(request, who, Some(expires_at)).await
        })
        .await
        .unwrap_or_else(|e| Err(StoreError::Io(std::io::Error::other(e.to_string()))))
    }

    /// Lifts the block of entry `id`; the lift is itself an entry in the feed.
    /// Runs in its own task, like [`KillSwitch::revoke`].
    pub async fn lift(self: &Arc<Self>, id: &str, who: String) -> Result<LiftOutcome, StoreError> {
        let me = self.clone();
        let id = id.to_owned();
        tokio::spawn(async move { me.lift_now(&id, who).await })
            .await
            .unwrap_or_else(|e| Err(StoreError::Io(std::io::Error::other(e.to_string()))))
    }

    async fn lift_now(&self, id: &str, who: String) -> Result<LiftOutcome, StoreError> {
        let _serial = self.writes.lock().await;
        let Some(original) = self.log.get(id).await? else {
            return Ok(LiftOutcome::NotFound);
        };
        if original.kind != EntryKind::Revoke || !original.block {
            return Ok(LiftOutcome::NotABlock);
        }
        if original.lifted_at.is_some() {
            return Ok(LiftOutcome::AlreadyLifted);
        }
        let now = self.clock.unix_now();
        let mut lift = Entry {
            id: new_id()?,
            seq: 0,
            kind: EntryKind::Lift,
            selector: original.selector.clone(),
            reason: String::new(),
            who,
            effective_at: now,
            block: false,
            until: None,
            lifted_at: None,
            lifts: Some(original.id.clone()),
            token_exp: None,
        };
        lift.seq = self.log.lift(&original.id, &lift).await?;
        let lifted = Entry {
            lifted_at: Some(now),
            ..original
        };
        if self.index.get(&lifted).is_some() {
            self.index.upsert(Arc::new(lifted));
        }
        let lift = Arc::new(lift);
        let _ = self.feed.send(lift.clone());
        Ok(LiftOutcome::Lifted(lift))
    }

    /// One entry by id, from the log.
    pub async fn get(&self, id: &str) -> Result<Option<Entry>, StoreError> {
        self.log.get(id).await
    }

    /// Entries with `seq > since`, ascending, at most `limit`.
    pub async fn since(&self, since: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        self.log.since(since, limit).await
    }

    /// Live entries in the index (not lifted, block not lapsed), by seq.
    pub fn live(&self) -> Vec<Arc<Entry>> {
        let now = self.clock.unix_now();
        let mut live: Vec<_> = self
            .index
            .entries()
            .into_iter()
            .filter(|e| e.seq > 0 && e.lifted_at.is_none() && (!e.block || e.blocks_at(now)))
            .collect();
        live.sort_by_key(|e| e.seq);
        live
    }

    /// Entries as they become durable.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Entry>> {
        self.feed.subscribe()
    }

    /// Drops stale entries from the index every minute, and from the store
    /// those revoking one token that has expired (other entries stay there).
    pub fn spawn_compaction(self: &Arc<Self>) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(me) = me.upgrade() else { break };
                let _serial = me.writes.lock().await;
                let now = me.clock.unix_now();
                let dropped = me.index.compact(now, me.horizon);
                if let Err(e) = me
                    .log
                    .forget_token_revocations(now.saturating_sub(EXPIRED_TOKEN_GRACE))
                    .await
                {
                    tracing::warn!(error = %e, "could not forget expired token revocations");
                }
                if dropped > 0 {
                    tracing::info!(dropped, left = me.index.len(), "revocation index compacted");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    /// A log whose disk is gone: every write fails.
    struct BrokenDisk;

    #[async_trait::async_trait]
    impl RevocationLog for BrokenDisk {
        async fn append(&self, _: &Entry) -> Result<u64, StoreError> {
            Err(StoreError::Io(std::io::Error::other("disk gone")))
        }
        async fn lift(&self, _: &str, _: &Entry) -> Result<u64, StoreError> {
            Err(StoreError::Io(std::io::Error::other("disk gone")))
        }
        async fn since(&self, _: u64, _: usize) -> Result<Vec<Entry>, StoreError> {
            Ok(Vec::new())
        }
        async fn get(&self, _: &str) -> Result<Option<Entry>, StoreError> {
            Ok(None)
        }
        async fn forget_token_revocations(&self, _: u64) -> Result<u64, StoreError> {
            Ok(0)
        }
    }

    #[tokio::test]
    async fn a_failed_store_write_leaves_no_entry_and_sends_nothing() {
        let ks = Arc::new(
            KillSwitch::load(Arc::new(BrokenDisk), Arc::new(SystemClock), 900)
                .await
                .unwrap(),
        );
        let mut feed = ks.subscribe();
        let request = RevokeRequest {
            selector: Selector::All,
            reason: String::new(),
            block: true,
            until: None,
        };

        assert!(ks.revoke(request, "admin".into()).await.is_err());

        assert!(ks.index().is_empty());
        assert!(matches!(
            feed.try_recv(),
            Err(broadcast::error::TryRecvError::Empty)
        ));
    }
}
