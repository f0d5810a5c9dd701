//! The default store: one SQLite file in WAL mode, fully synced writes.
//! One process owns it, so the replicas it knows are that process's, kept
//! in memory rather than synced to disk every second.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError, Weak};
use std::time::Instant;

use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::rows::{ENTRY_COLUMNS, KEY_COLUMNS, entry_from_row, int, key_from_row, uint};
use super::{Store, StoreError};
use crate::attest::dpop::SharedProofLog;
use crate::revoke::{Entry, EntryKind, ReplicaStatus, RevocationLog};
use crate::token::{
    KeyState, KeyStore, StoredKey, Transition, forgettable_through, longest_live_lifetime,
};

/// Schema versions, applied in order, each once.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        alg TEXT NOT NULL,
        pkcs8 BLOB NOT NULL,
        created_at INTEGER NOT NULL
    )",
    // AUTOINCREMENT: a seq is never reused, even after rows are deleted.
    "CREATE TABLE revocations (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        selector_kind TEXT NOT NULL,
        selector_value TEXT,
        reason TEXT NOT NULL,
        who TEXT NOT NULL,
        effective_at INTEGER NOT NULL,
        block INTEGER NOT NULL,
        until INTEGER,
        lifted_at INTEGER,
        lifts TEXT
    )",
    // One row per start: how long the tokens of that run may live.
    "CREATE TABLE token_lifetimes (
        started_at INTEGER NOT NULL,
        max_ttl INTEGER NOT NULL
    )",
    // RFC 7009 entries live as long as their token.
    "ALTER TABLE revocations ADD COLUMN token_exp INTEGER",
    // Signing keys get a lifecycle (issue 13): the newest existing key
    // stays active, older ones retire once their tokens have expired.
    "ALTER TABLE signing_keys ADD COLUMN state TEXT NOT NULL DEFAULT 'active'",
    "ALTER TABLE signing_keys ADD COLUMN activates_at INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE signing_keys ADD COLUMN retires_at INTEGER",
    "ALTER TABLE signing_keys ADD COLUMN revoked_at INTEGER",
    "ALTER TABLE signing_keys ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0",
    "UPDATE signing_keys SET activates_at = created_at",
    "UPDATE signing_keys SET state = 'retiring' WHERE kid NOT IN
        (SELECT kid FROM signing_keys ORDER BY created_at DESC, kid DESC LIMIT 1)",
    // Replicas agree: at most one active and one next key, whoever races.
    "CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (state) WHERE state = 'active'",
    "CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys (state) WHERE state = 'next'",
    // Approvals (CONTRACT section 10): grants waiting for a person.
    "CREATE TABLE approvals (
        id TEXT PRIMARY KEY,
        role TEXT NOT NULL,
        principal TEXT NOT NULL,
        target TEXT NOT NULL,
        scopes TEXT NOT NULL,
        actors TEXT NOT NULL,
        requested_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        state TEXT NOT NULL,
        decided_by TEXT,
        decided_at INTEGER
    )",
    "CREATE INDEX approvals_expires_at ON approvals (expires_at)",
];

async fn insert_entry<'e, E>(exec: E, e: &Entry) -> Result<u64, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let kind = match e.kind {
        EntryKind::Revoke => "revoke",
        EntryKind::Lift => "lift",
    };
    let row = sqlx::query(
        "INSERT INTO revocations (id, kind, selector_kind, selector_value, reason, who, effective_at, block, until, lifted_at, lifts, token_exp)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
    )
    .bind(&e.id)
    .bind(kind)
    .bind(e.selector.kind())
    .bind(e.selector.value())
    .bind(&e.reason)
    .bind(&e.who)
    .bind(int(e.effective_at))
    .bind(i64::from(e.block))
    .bind(e.until.map(int))
    .bind(e.lifted_at.map(int))
    .bind(&e.lifts)
    .bind(e.token_exp.map(int))
    .fetch_one(exec)
    .await?;
    Ok(uint(row.try_get(0)?))
}

/// SQLite-backed [`Store`]: the kill switch's [`RevocationLog`] and the key
/// ring's [`KeyStore`] in one file.
pub struct SqliteStore {
    pool: SqlitePool,
    /// Heartbeats: replica id → (applied seq, when).
    replicas: Mutex<BTreeMap<String, (u64, Instant)>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` and migrates it.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(5));
        let path = options.get_filename().to_path_buf();
        if path.as_os_str() != ":memory:" {
            owner_only_files(&path)?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        let store = Self {
            pool,
            replicas: Mutex::new(BTreeMap::new()),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
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
            sqlx::query("INSERT INTO schema_version (version) VALUES (?)")
                .bind(i64::try_from(i + 1).unwrap_or(i64::MAX))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// The database holds private keys, so no one but writ's user may reach it:
/// its directory must not be writable by others (who could swap the file),
/// and the database is created 0600 before SQLite opens it, so there is no
/// moment at which another user can open it. SQLite creates the `-wal` and
/// `-shm` files with the database's mode.
fn owner_only_files(db: &std::path::Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let dir = match db.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let dir_mode = std::fs::metadata(dir)?.mode();
    if dir_mode & 0o022 != 0 {
        return Err(StoreError::Insecure(format!(
            "{} is writable by group or others (mode {:o}); keep the store in a directory only writ's user can write",
            dir.display(),
            dir_mode & 0o7777
        )));
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        // Never created through a symlink someone planted.
        .custom_flags(libc::O_NOFOLLOW)
        .open(db)
    {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e.into()),
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        let path = std::path::PathBuf::from(name);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        if !meta.file_type().is_file() {
            return Err(StoreError::Insecure(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        if meta.mode() & 0o077 != 0 {
            // Left by an older writ or by hand: close it now, and say that
            // what it held may have been read.
            tracing::warn!(
                file = %path.display(),
                mode = format!("{:o}", meta.mode() & 0o7777),
                "store file was readable by other users; made 0600 (rotate the signing key if they could have read it)"
            );
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn shared_proofs(self: std::sync::Arc<Self>) -> Option<std::sync::Arc<dyn SharedProofLog>> {
        None
    }
}

#[async_trait::async_trait]
impl KeyStore for SqliteStore {
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
            "INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
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
            Transition::Activate { kid, at } => sqlx::query(
                "UPDATE signing_keys SET state = 'active', activates_at = COALESCE(?, activates_at)
                     WHERE kid = ? AND state = 'next'",
            )
            .bind(at.map(int))
            .bind(kid)
            .execute(&self.pool)
            .await?,
            Transition::Retire {
                kid,
                from,
                retires_at,
            } => {
                sqlx::query(
                    "UPDATE signing_keys SET state = 'retiring', retires_at = ?
                     WHERE kid = ? AND state = ?",
                )
                .bind(int(*retires_at))
                .bind(kid)
                .bind(from.as_str())
                .execute(&self.pool)
                .await?
            }
            Transition::Delete { kid, from } => {
                sqlx::query("DELETE FROM signing_keys WHERE kid = ? AND state = ?")
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
            let Some(row) = sqlx::query("SELECT state FROM signing_keys WHERE kid = ?")
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
                "UPDATE signing_keys SET state = 'revoked', revoked_at = ?, retires_at = ?
                 WHERE kid = ? AND state = ?",
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
        let runs: Vec<(u64, u64)> = sqlx::query(
            "SELECT started_at, max_ttl FROM token_lifetimes ORDER BY started_at, rowid",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| Ok((uint(r.try_get(0)?), uint(r.try_get(1)?))))
        .collect::<Result<_, StoreError>>()?;
        let (longest, alive) = longest_live_lifetime(&runs, max_ttl, now);
        if let Some(started_at) = forgettable_through(&runs, &alive) {
            sqlx::query("DELETE FROM token_lifetimes WHERE started_at <= ?")
                .bind(int(started_at))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO token_lifetimes (started_at, max_ttl) VALUES (?, ?)")
            .bind(int(now))
            .bind(int(max_ttl))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(longest)
    }
}

#[async_trait::async_trait]
impl RevocationLog for SqliteStore {
    async fn append(&self, entry: &Entry) -> Result<u64, StoreError> {
        // synchronous=FULL in WAL mode: the commit is on disk when this returns.
        insert_entry(&self.pool, entry).await
    }

    async fn lift(&self, lifted_id: &str, lift: &Entry) -> Result<Option<u64>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let marked =
            sqlx::query("UPDATE revocations SET lifted_at = ? WHERE id = ? AND lifted_at IS NULL")
                .bind(int(lift.effective_at))
                .bind(lifted_id)
                .execute(&mut *tx)
                .await?;
        if marked.rows_affected() == 0 {
            return Ok(None);
        }
        let seq = insert_entry(&mut *tx, lift).await?;
        tx.commit().await?;
        Ok(Some(seq))
    }

    async fn since(&self, since: u64, limit: usize) -> Result<Vec<Entry>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM revocations WHERE seq > ? ORDER BY seq LIMIT ?"
        ))
        .bind(int(since))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_from_row).collect()
    }

    async fn get(&self, id: &str) -> Result<Option<Entry>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ENTRY_COLUMNS} FROM revocations WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(entry_from_row).transpose()
    }

    async fn forget_token_revocations(&self, before: u64) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM revocations WHERE token_exp IS NOT NULL AND token_exp < ?")
                .bind(int(before))
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }

    fn watch(&self, _wake: Weak<tokio::sync::Notify>) {
        // Only this process writes the file, and its writes follow at once.
    }

    async fn heartbeat(&self, replica_id: &str, applied_seq: u64) -> Result<(), StoreError> {
        self.replicas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(replica_id.to_owned(), (applied_seq, Instant::now()));
        Ok(())
    }

    async fn leave(&self, replica_id: &str) -> Result<(), StoreError> {
        self.replicas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(replica_id);
        Ok(())
    }

    async fn replicas(&self) -> Result<Vec<ReplicaStatus>, StoreError> {
        let replicas = self.replicas.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(replicas
            .iter()
            .map(|(id, (applied_seq, at))| ReplicaStatus {
                replica_id: id.clone(),
                applied_seq: *applied_seq,
                silent_for_ms: u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX),
            })
            .collect())
    }
}

super::approvals::approval_log!(SqliteStore);
