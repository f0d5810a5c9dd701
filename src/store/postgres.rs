//! The store for several replicas: one PostgreSQL database shared by every
//! `writ serve`. Migrations run under a session advisory lock, so replicas
//! starting at once migrate one after the other; kill-switch entries take
//! their `seq` under a transaction advisory lock, so they commit in `seq`
//! order and no reader sees entry 7 before entry 6. Each commit notifies
//! [`CHANNEL`], which every replica listens on to read the new entries at
//! once; replicas report how far they have read in the `replicas` table,
//! timed by the database's clock.

use std::sync::Weak;
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::Notify;

use super::postgres_proofs::ProofBatcher;
use super::rows::{ENTRY_COLUMNS, KEY_COLUMNS, entry_from_row, int, key_from_row, uint};
use super::{Store, StoreError};
use crate::attest::dpop::{ReplayKey, SharedProofLog};
use crate::revoke::{Entry, EntryKind, ReplicaStatus, RevocationLog};
use crate::token::{
    KeyState, KeyStore, StoredKey, Transition, forgettable_through, longest_live_lifetime,
};

/// Advisory lock keys (any two constants no other user of the database
/// takes): one for migrations, one serializing kill-switch appends, one for
/// the token-lifetime record.
const MIGRATION_LOCK: i64 = 0x7772_6974_0001;
const APPEND_LOCK: i64 = 0x7772_6974_0002;
const LIFETIME_LOCK: i64 = 0x7772_6974_0003;

/// The `NOTIFY` channel of kill-switch appends.
const CHANNEL: &str = "writ_revocations";
/// How long a broken `LISTEN` connection waits before connecting again
/// (polling keeps replicas current meanwhile).
const RELISTEN: Duration = Duration::from_secs(1);
/// How long a replica that stopped without leaving stays in the table.
const FORGET_REPLICA_MS: i64 = 3_600_000;
/// The database's clock, in milliseconds since the epoch.
const DB_NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

/// Schema versions, applied in order, each once.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        alg TEXT NOT NULL,
        pkcs8 BYTEA NOT NULL,
        created_at BIGINT NOT NULL
    )",
    "CREATE TABLE revocations (
        seq BIGINT PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        selector_kind TEXT NOT NULL,
        selector_value TEXT,
        reason TEXT NOT NULL,
        who TEXT NOT NULL,
        effective_at BIGINT NOT NULL,
        block BOOLEAN NOT NULL,
        until BIGINT,
        lifted_at BIGINT,
        lifts TEXT,
        token_exp BIGINT
    )",
    "CREATE TABLE token_lifetimes (
        run BIGSERIAL PRIMARY KEY,
        started_at BIGINT NOT NULL,
        max_ttl BIGINT NOT NULL
    )",
    // One row per running replica: how far it has applied the kill switch.
    "CREATE TABLE replicas (
        replica_id TEXT PRIMARY KEY,
        applied_seq BIGINT NOT NULL,
        seen_at_ms BIGINT NOT NULL
    )",
    // DPoP proofs accepted by any replica, while they are live. Unlogged:
    // fast, and lost only on a database crash, when proofs accepted in the
    // last minute could be replayed once more.
    "CREATE UNLOGGED TABLE dpop_proofs (
        key BYTEA PRIMARY KEY,
        valid_until BIGINT NOT NULL
    )",
    "CREATE INDEX dpop_proofs_valid_until ON dpop_proofs (valid_until)",
    // The decision log: one hash chain per replica, and each chain's head.
    "CREATE TABLE audit_records (
        replica_id TEXT NOT NULL,
        position BIGINT NOT NULL,
        line TEXT NOT NULL,
        PRIMARY KEY (replica_id, position)
    )",
    "CREATE TABLE audit_heads (
        replica_id TEXT PRIMARY KEY,
        records BIGINT NOT NULL,
        hash TEXT NOT NULL
    )",
    // Signing keys get a lifecycle (issue 13): the newest existing key
    // stays active, older ones retire once their tokens have expired.
    "ALTER TABLE signing_keys ADD COLUMN state TEXT NOT NULL DEFAULT 'active'",
    "ALTER TABLE signing_keys ADD COLUMN activates_at BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE signing_keys ADD COLUMN retires_at BIGINT",
    "ALTER TABLE signing_keys ADD COLUMN revoked_at BIGINT",
    "ALTER TABLE signing_keys ADD COLUMN sealed BOOLEAN NOT NULL DEFAULT FALSE",
    "UPDATE signing_keys SET activates_at = created_at",
    "UPDATE signing_keys SET state = 'retiring' WHERE kid NOT IN
        (SELECT kid FROM signing_keys ORDER BY created_at DESC, kid DESC LIMIT 1)",
    // Replicas agree: at most one active and one next key, whoever races.
    "CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (state) WHERE state = 'active'",
    "CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys (state) WHERE state = 'next'",
    // Seqs are never reused: continue after any entry ever appended.
    "CREATE SEQUENCE revocation_seq",
    "SELECT setval('revocation_seq', COALESCE((SELECT MAX(seq) FROM revocations), 0) + 1, false)",
    // Approvals (CONTRACT section 10): grants waiting for a person.
    "CREATE TABLE approvals (
        id TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        principal TEXT NOT NULL,
        target TEXT NOT NULL,
        scopes TEXT NOT NULL,
        actors TEXT NOT NULL,
        requested_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        state TEXT NOT NULL,
        decided_by TEXT,
        decided_at BIGINT
    )",
    "CREATE INDEX approvals_expires_at ON approvals (expires_at)",
];

/// Appends `e` inside `tx`, which must hold [`APPEND_LOCK`]: the next `seq`
/// comes from a sequence, so it is never reused, even when the newest
/// entries were forgotten (a `MAX(seq) + 1` would hand a follower that saw
/// the forgotten one a `seq` it believes it has).
async fn insert_entry(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    e: &Entry,
) -> Result<u64, StoreError> {
    let kind = match e.kind {
        EntryKind::Revoke => "revoke",
        EntryKind::Lift => "lift",
    };
    let row = sqlx::query(
        "INSERT INTO revocations (seq, id, kind, selector_kind, selector_value, reason, who, effective_at, block, until, lifted_at, lifts, token_exp)
         VALUES (nextval('revocation_seq'), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
         RETURNING seq",
    )
    .bind(&e.id)
    .bind(kind)
    .bind(e.selector.kind())
    .bind(e.selector.value())
    .bind(&e.reason)
    .bind(&e.who)
    .bind(int(e.effective_at))
    .bind(e.block)
    .bind(e.until.map(int))
    .bind(e.lifted_at.map(int))
    .bind(&e.lifts)
    .bind(e.token_exp.map(int))
    .fetch_one(&mut **tx)
    .await?;
    // Delivered at commit, to every replica listening.
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(CHANNEL)
        .execute(&mut **tx)
        .await?;
    Ok(uint(row.try_get(0)?))
}

/// Wakes `wake` on every notification of [`CHANNEL`] (and after each
/// reconnection, since notifications sent meanwhile are lost) until `wake`
/// is dropped.
async fn listen(pool: PgPool, wake: Weak<Notify>) {
    let mut listener: Option<PgListener> = None;
    loop {
        let Some(waker) = wake.upgrade() else { return };
        let Some(l) = listener.as_mut() else {
            match PgListener::connect_with(&pool).await {
                Ok(mut l) => match l.listen(CHANNEL).await {
                    Ok(()) => {
                        listener = Some(l);
                        waker.notify_one();
                    }
                    Err(e) => tracing::debug!(error = %e, "LISTEN failed; polling meanwhile"),
                },
                Err(e) => {
                    tracing::debug!(error = %e, "LISTEN connection failed; polling meanwhile")
                }
            }
            drop(waker);
            if listener.is_none() {
                tokio::time::sleep(RELISTEN).await;
            }
            continue;
        };
        drop(waker);
        // Not raced against a timer: a read cut off mid-message would leave
        // the connection unusable. The task ends at the first notification
        // or connection error after its kill switch is gone.
        match l.try_recv().await {
            Ok(Some(_)) => {
                if let Some(waker) = wake.upgrade() {
                    waker.notify_one();
                }
            }
            // The connection dropped: what was sent meanwhile is lost, so
            // reconnect and read the log again.
            Ok(None) => listener = None,
            Err(e) => {
                tracing::debug!(error = %e, "LISTEN connection lost; polling meanwhile");
                listener = None;
                tokio::time::sleep(RELISTEN).await;
            }
        }
    }
}

/// Takes a transaction-scoped advisory lock: released at commit or rollback.
async fn xact_lock(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    key: i64,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(key)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// PostgreSQL-backed [`Store`]: the kill switch's [`RevocationLog`] and the
/// key ring's [`KeyStore`], shared by every replica.
pub struct PostgresStore {
    pool: PgPool,
    proofs: ProofBatcher,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://` or `postgresql://`)
    /// with at most `max_connections`, and migrates it.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(url)
            .await?;
        let store = Self {
            proofs: ProofBatcher::start(pool.clone()),
            pool,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the migrations not applied yet, one replica at a time: the
    /// advisory lock is held for the whole transaction.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        xact_lock(&mut tx, MIGRATION_LOCK).await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            .execute(&mut *tx)
            .await?;
        let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_version")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        for (i, sql) in MIGRATIONS
            .iter()
            .enumerate()
            .skip(usize::try_from(current).unwrap_or(0))
        {
            sqlx::query(sql).execute(&mut *tx).await?;
            sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
                .bind(i64::try_from(i + 1).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn shared_proofs(self: std::sync::Arc<Self>) -> Option<std::sync::Arc<dyn SharedProofLog>> {
        Some(self)
    }
}

#[async_trait::async_trait]
impl SharedProofLog for PostgresStore {
    async fn remember_proof(
        &self,
        key: &ReplayKey,
        valid_until: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        self.proofs.remember(key, valid_until, now).await
    }

    async fn forget_proofs(&self, before: u64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM dpop_proofs WHERE valid_until < $1")
            .bind(int(before))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

#[async_trait::async_trait]
impl KeyStore for PostgresStore {
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM signing_keys"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn insert_signing_key(&self, key: &StoredKey) -> Result<bool, StoreError> {
        // A second active or next key conflicts with a unique index: the
        // replica that lost the race inserts nothing and reads the winner.
        let done = sqlx::query(&format!(
            "INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT DO NOTHING"
        ))
        .bind(&key.kid)
        .bind(&key.alg)
        .bind(&key.pkcs8)
        .bind(key.sealed)
        .bind(int(key.created_at))
        .bind(key.state.as_str())
        .bind(int(key.activates_at))
        .bind(key.retires_at.map(int))
        .bind(key.revoked_at.map(int))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn apply_key_transition(&self, change: &Transition) -> Result<bool, StoreError> {
        let done = match change {
            Transition::Activate { kid, at } => {
                sqlx::query(
                    "UPDATE signing_keys SET state = 'active', activates_at = COALESCE($1, activates_at)
                     WHERE kid = $2 AND state = 'next'",
                )
                .bind(at.map(int))
                .bind(kid)
                .execute(&self.pool)
                .await?
            }
            Transition::Retire {
                kid,
                from,
                retires_at,
            } => {
                sqlx::query(
                    "UPDATE signing_keys SET state = 'retiring', retires_at = $1
                     WHERE kid = $2 AND state = $3",
                )
                .bind(int(*retires_at))
                .bind(kid)
                .bind(from.as_str())
                .execute(&self.pool)
                .await?
            }
            Transition::Delete { kid, from } => {
                sqlx::query("DELETE FROM signing_keys WHERE kid = $1 AND state = $2")
                    .bind(kid)
                    .bind(from.as_str())
                    .execute(&self.pool)
                    .await?
            }
        };
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_signing_key(
        &self,
        kid: &str,
        at: u64,
        retires_at: u64,
    ) -> Result<Option<KeyState>, StoreError> {
        // Conditional on the state read, so a concurrent step is never
        // undone: read again if the row moved meanwhile.
        for _ in 0..8 {
            let Some(row) = sqlx::query("SELECT state FROM signing_keys WHERE kid = $1")
                .bind(kid)
                .fetch_optional(&self.pool)
                .await?
            else {
                return Ok(None);
            };
            let state: String = row.try_get(0)?;
            let was = KeyState::parse(&state).ok_or_else(|| {
                StoreError::Corrupt(format!("signing key {kid}: state {state:?}"))
            })?;
            if was == KeyState::Revoked {
                return Ok(Some(was));
            }
            let done = sqlx::query(
                "UPDATE signing_keys SET state = 'revoked', revoked_at = $1, retires_at = $2
                 WHERE kid = $3 AND state = $4",
            )
            .bind(int(at))
            .bind(int(retires_at))
            .bind(kid)
            .bind(was.as_str())
            .execute(&self.pool)
            .await?;
            if done.rows_affected() == 1 {
                return Ok(Some(was));
            }
        }
        Err(StoreError::Corrupt(format!(
            "signing key {kid} kept changing while being revoked"
        )))
    }

    async fn record_token_lifetime(&self, max_ttl: u64, now: u64) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        xact_lock(&mut tx, LIFETIME_LOCK).await?;
        let runs: Vec<(u64, u64)> =
            sqlx::query("SELECT started_at, max_ttl FROM token_lifetimes ORDER BY started_at, run")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| Ok((uint(r.try_get(0)?), uint(r.try_get(1)?))))
                .collect::<Result<_, StoreError>>()?;
        let (longest, alive) = longest_live_lifetime(&runs, max_ttl, now);
        if let Some(started_at) = forgettable_through(&runs, &alive) {
            sqlx::query("DELETE FROM token_lifetimes WHERE started_at <= $1")
                .bind(int(started_at))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO token_lifetimes (started_at, max_ttl) VALUES ($1, $2)")
            .bind(int(now))
            .bind(int(max_ttl))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(longest)
    }
}

#[async_trait::async_trait]
impl RevocationLog for PostgresStore {
    async fn append(&self, entry: &Entry) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        xact_lock(&mut tx, APPEND_LOCK).await?;
        let seq = insert_entry(&mut tx, entry).await?;
        tx.commit().await?;
        Ok(seq)
    }

    async fn lift(&self, lifted_id: &str, lift: &Entry) -> Result<Option<u64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        xact_lock(&mut tx, APPEND_LOCK).await?;
        let marked = sqlx::query(
            "UPDATE revocations SET lifted_at = $1 WHERE id = $2 AND lifted_at IS NULL",
        )
        .bind(int(lift.effective_at))
        .bind(lifted_id)
        .execute(&mut *tx)
        .await?;
        if marked.rows_affected() == 0 {
            return Ok(None);
        }
        let seq = insert_entry(&mut tx, lift).await?;
        tx.commit().await?;
        Ok(Some(seq))
    }

    async fn since(&self, since: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM revocations WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(int(since))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn get(&self, id: &str) -> Result<Option<Entry>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM revocations WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(entry_from_row).transpose()
    }

    async fn forget_token_revocations(&self, before: u64) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM revocations WHERE token_exp IS NOT NULL AND token_exp < $1")
                .bind(int(before))
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }

    fn watch(&self, wake: Weak<Notify>) {
        tokio::spawn(listen(self.pool.clone(), wake));
    }

    async fn heartbeat(&self, replica_id: &str, applied_seq: u64) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO replicas (replica_id, applied_seq, seen_at_ms) VALUES ($1, $2, {DB_NOW_MS})
             ON CONFLICT (replica_id) DO UPDATE SET applied_seq = EXCLUDED.applied_seq, seen_at_ms = EXCLUDED.seen_at_ms"
        ))
        .bind(replica_id)
        .bind(int(applied_seq))
        .execute(&self.pool)
        .await?;
        // Replicas killed without leaving: shown by `writ status` for an
        // hour, then forgotten.
        sqlx::query(&format!(
            "DELETE FROM replicas WHERE seen_at_ms < {DB_NOW_MS} - $1"
        ))
        .bind(FORGET_REPLICA_MS)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn leave(&self, replica_id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM replicas WHERE replica_id = $1")
            .bind(replica_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn replicas(&self) -> Result<Vec<ReplicaStatus>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT replica_id, applied_seq, GREATEST({DB_NOW_MS} - seen_at_ms, 0) FROM replicas ORDER BY replica_id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReplicaStatus {
                    replica_id: r.try_get(0)?,
                    applied_seq: uint(r.try_get(1)?),
                    silent_for_ms: uint(r.try_get(2)?),
                })
            })
            .collect()
    }
}

super::approvals::approval_log!(PostgresStore);
