//! The kill switch as a service: an entry takes effect in the index at once,
//! is made durable, and only then is acknowledged. Every replica sharing the
//! log (this one included) then applies it by following the log in `seq`
//! order, woken by the store and polling besides, and sends it to the
//! followers of its feed in that order; each says in a heartbeat how far it
//! has applied, which is what the admin's answer waits for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Notify, broadcast};

use super::entry::RevokeRequest;
use super::freshness::{Freshness, Stale};
use super::log::{ReplicaStatus, RevocationLog};
use crate::clock::Clock;
use crate::durable::StoreError;
use writ_proto::revocation::{EXPIRED_TOKEN_GRACE, Entry, EntryKind, RevocationIndex, Selector};

/// How many entries a slow follower may fall behind before it re-reads the store.
const FEED_BUFFER: usize = 4096;
/// Entries read from the store per page.
pub const PAGE: usize = 1000;
/// How often a replica reads the log even when nothing woke it.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// How often a replica that applied nothing new still says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// How often the admin's answer looks at the replicas' progress.
const PROPAGATION_POLL: Duration = Duration::from_millis(10);

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

/// How far the live replicas have applied an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Propagation {
    /// Live replicas that have applied it.
    pub applied: usize,
    /// Replicas heard of within `store.max_staleness`: the others refuse to
    /// mint on their own, their view being too old.
    pub live: usize,
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
    /// This replica's name in heartbeats.
    replica_id: String,
    /// Following the log: one reader at a time, so entries are applied and
    /// fed in `seq` order.
    follow: Mutex<Followed>,
    freshness: Freshness,
}

/// How far this replica has followed the log.
struct Followed {
    /// Every entry up to this `seq` is applied.
    applied: u64,
    /// The last heartbeat: when, and the `seq` it reported.
    heartbeat: Option<(Instant, u64)>,
    /// This replica has left the table (shutting down): no more heartbeats,
    /// which would put it back.
    left: bool,
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
    /// Builds the index from every entry in the log that can still matter,
    /// as replica `replica_id`, whose view is stale after `max_staleness`
    /// without a complete read of the log.
    pub async fn load(
        log: Arc<dyn RevocationLog>,
        clock: Arc<dyn Clock>,
        horizon: u64,
        replica_id: String,
        max_staleness: Duration,
    ) -> Result<Self, StoreError> {
        let index = Arc::new(RevocationIndex::new());
        let read_began = Instant::now();
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
        let freshness = Freshness::new(max_staleness);
        freshness.synced(read_began);
        Ok(Self {
            log,
            index,
            feed,
            clock,
            writes: Mutex::new(()),
            horizon,
            replica_id,
            follow: Mutex::new(Followed {
                applied: since,
                heartbeat: None,
                left: false,
            }),
            freshness,
        })
    }

    /// The index, if this replica's view is fresh enough to mint on.
    pub fn fresh_index(&self) -> Result<&RevocationIndex, Stale> {
        self.freshness.check().map(|()| &*self.index)
    }

    /// How old this replica's view of the log is.
    pub fn staleness(&self) -> &Freshness {
        &self.freshness
    }

    /// This replica's name in heartbeats.
    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// The last `seq` this replica has applied.
    pub async fn applied(&self) -> u64 {
        self.follow.lock().await.applied
    }

    /// Applies every entry committed after the last one applied, in `seq`
    /// order, sends each to the feed, and says how far it got in a
    /// heartbeat (at once when it applied something, else every
    /// [`HEARTBEAT`]). Only a complete read with its heartbeat renews the
    /// view: a replica the others cannot see counts itself stale too.
    pub async fn catch_up(&self) -> Result<u64, StoreError> {
        let mut follow = self.follow.lock().await;
        let read_began = Instant::now();
        loop {
            let page = self.log.since(follow.applied, PAGE).await?;
            let Some(last) = page.last().map(|e| e.seq) else {
                break;
            };
            for entry in page {
                self.apply(entry);
            }
            follow.applied = last;
        }
        let applied = follow.applied;
        let due = follow
            .heartbeat
            .is_none_or(|(at, seq)| seq != applied || read_began.duration_since(at) >= HEARTBEAT);
        if due && !follow.left {
            self.log.heartbeat(&self.replica_id, applied).await?;
            follow.heartbeat = Some((read_began, applied));
        }
        self.freshness.synced(read_began);
        Ok(applied)
    }

    /// One entry read from the log, into the index and the feed.
    fn apply(&self, entry: Entry) {
        match entry.kind {
            EntryKind::Revoke => {
                let entry = Arc::new(entry);
                if entry.matters_at(self.clock.unix_now(), self.horizon) {
                    self.index.upsert(entry.clone());
                } else {
                    // A pending copy this replica put in before the write.
                    self.index.remove(&entry);
                }
                let _ = self.feed.send(entry);
            }
            EntryKind::Lift => {
                let lifted = entry.lifts.as_ref().and_then(|id| {
                    self.index.get(&Entry {
                        id: id.clone(),
                        ..entry.clone()
                    })
                });
                if let Some(lifted) = lifted.filter(|l| l.lifted_at.is_none()) {
                    self.index.upsert(Arc::new(Entry {
                        lifted_at: Some(entry.effective_at),
                        ..(*lifted).clone()
                    }));
                }
                let _ = self.feed.send(Arc::new(entry));
            }
        }
    }

    /// Follows the log until the kill switch is dropped: woken by the store
    /// when another replica appends, and every [`FOLLOW_POLL`] regardless.
    /// `observe` learns whether each read succeeded (for metrics); failures
    /// are logged when they start and when they end, not at every poll.
    pub fn spawn_follow(self: &Arc<Self>, observe: impl Fn(bool) + Send + 'static) {
        let wake = Arc::new(Notify::new());
        self.log.watch(Arc::downgrade(&wake));
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                tokio::select! {
                    () = wake.notified() => {}
                    () = tokio::time::sleep(FOLLOW_POLL) => {}
                }
                let Some(me) = me.upgrade() else { break };
                let outcome = me.catch_up().await;
                observe(outcome.is_ok());
                match outcome {
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "cannot read the kill-switch log; this replica fails closed once its view is older than store.max_staleness");
                    }
                    Ok(applied) if failing => {
                        failing = false;
                        tracing::info!(applied, "reading the kill-switch log again");
                    }
                    _ => {}
                }
            }
        });
    }

    /// Waits up to `wait` for every live replica to apply entry `seq`.
    pub async fn propagation(&self, seq: u64, wait: Duration) -> Result<Propagation, StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        let live_within = u64::try_from(self.freshness.limit().as_millis()).unwrap_or(u64::MAX);
        loop {
            let replicas = self.log.replicas().await?;
            let live: Vec<&ReplicaStatus> = replicas
                .iter()
                .filter(|r| r.silent_for_ms <= live_within)
                .collect();
            let progress = Propagation {
                applied: live.iter().filter(|r| r.applied_seq >= seq).count(),
                live: live.len(),
            };
            if progress.applied == progress.live || tokio::time::Instant::now() >= deadline {
                return Ok(progress);
            }
            tokio::time::sleep(PROPAGATION_POLL).await;
        }
    }

    /// The replicas the store knows, as it last heard of them.
    pub async fn replicas(&self) -> Result<Vec<ReplicaStatus>, StoreError> {
        self.log.replicas().await
    }

    /// Takes this replica out of the heartbeat table: it is shutting down,
    /// and the admin must not wait for it.
    pub async fn leave(&self) {
        let mut follow = self.follow.lock().await;
        follow.left = true;
        if let Err(e) = self.log.leave(&self.replica_id).await {
            tracing::warn!(error = %e, "could not leave the replica table; others stop counting this replica after store.max_staleness");
        }
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
                self.publish().await;
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
        match self.log.lift(&original.id, &lift).await? {
            Some(seq) => lift.seq = seq,
            // Another replica lifted it since the read above.
            None => return Ok(LiftOutcome::AlreadyLifted),
        }
        let lifted = Entry {
            lifted_at: Some(now),
            ..original
        };
        if self.index.get(&lifted).is_some() {
            self.index.upsert(Arc::new(lifted));
        }
        self.publish().await;
        Ok(LiftOutcome::Lifted(Arc::new(lift)))
    }

    /// After a local write: applies it (and whatever other replicas wrote
    /// before it) in `seq` order, feeds it and reports it in a heartbeat. The
    /// write is durable and in this replica's index already, so a failure
    /// here only delays the feed until the follower's next read.
    async fn publish(&self) {
        if let Err(e) = self.catch_up().await {
            tracing::warn!(error = %e, "kill-switch entry written; feeding it waits for the next read of the log");
        }
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
        async fn lift(&self, _: &str, _: &Entry) -> Result<Option<u64>, StoreError> {
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
        fn watch(&self, _: std::sync::Weak<Notify>) {}
        async fn heartbeat(&self, _: &str, _: u64) -> Result<(), StoreError> {
            Err(StoreError::Io(std::io::Error::other("disk gone")))
        }
        async fn leave(&self, _: &str) -> Result<(), StoreError> {
            Ok(())
        }
        async fn replicas(&self) -> Result<Vec<ReplicaStatus>, StoreError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn a_failed_store_write_leaves_no_entry_and_sends_nothing() {
        let ks = Arc::new(
            KillSwitch::load(
                Arc::new(BrokenDisk),
                Arc::new(SystemClock),
                900,
                "test".into(),
                Duration::from_secs(5),
            )
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
