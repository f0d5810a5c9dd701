//! The decision log of several replicas, in their shared PostgreSQL
//! database: each replica appends to its own hash chain (rows keyed by
//! `server.replica_id` and position) and keeps that chain's head in a row
//! of its own, so `writ audit verify --store URL` checks every chain and
//! names the replica and position of a deleted or edited record.

use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::StoreError;
use super::rows::{int, uint};
use crate::audit::{AuditSink, Head};

/// Records a replica holds back while the database is away, before it drops
/// the oldest (logged): bounded memory beats an unbounded queue.
const MAX_PENDING: usize = 100_000;

/// One replica's chain in the store: the writer's [`AuditSink`].
pub struct PostgresAuditSink {
    pool: PgPool,
    replica_id: String,
    /// Sealed lines by position, not yet in the database.
    pending: Vec<(u64, String)>,
    next_position: u64,
}

impl PostgresAuditSink {
    /// Connects (one connection of its own, so decisions never wait for the
    /// kill switch's pool) and returns the sink with the head of
    /// `replica_id`'s chain, to continue it. The store's migrations have run.
    pub async fn open(url: &str, replica_id: &str) -> Result<(Self, Head), StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        let last = sqlx::query(
            "SELECT position, line FROM audit_records WHERE replica_id = $1 ORDER BY position DESC LIMIT 1",
        )
        .bind(replica_id)
        .fetch_optional(&pool)
        .await?;
        let head = match last {
            None => Head::genesis(),
            Some(row) => {
                let line: String = row.try_get("line")?;
                Head {
                    records: usize::try_from(uint(row.try_get("position")?)).unwrap_or(usize::MAX),
                    // An unsealed last row: chain from nothing; verify flags it.
                    hash: crate::audit::hash_of(&line)
                        .unwrap_or(crate::audit::GENESIS)
                        .to_owned(),
                }
            }
        };
        let sink = Self {
            pool,
            replica_id: replica_id.to_owned(),
            pending: Vec::new(),
            next_position: u64::try_from(head.records).unwrap_or(u64::MAX) + 1,
        };
        Ok((sink, head))
    }
}

impl std::fmt::Display for PostgresAuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "audit_records of replica {}", self.replica_id)
    }
}

fn io(e: sqlx::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl AuditSink for PostgresAuditSink {
    async fn append(&mut self, line: &str) -> std::io::Result<()> {
        if self.pending.len() >= MAX_PENDING {
            let (position, _) = self.pending.remove(0);
            tracing::error!(replica = %self.replica_id, position, "audit record dropped: the database has been away too long");
        }
        self.pending.push((self.next_position, line.to_owned()));
        self.next_position += 1;
        Ok(())
    }

    /// Writes what is pending in one statement; on failure keeps it for the
    /// next batch, in order.
    async fn flush(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let positions: Vec<i64> = self.pending.iter().map(|(p, _)| int(*p)).collect();
        let lines: Vec<&str> = self.pending.iter().map(|(_, l)| l.as_str()).collect();
        sqlx::query(
            "INSERT INTO audit_records (replica_id, position, line)
             SELECT $1, position, line FROM UNNEST($2::BIGINT[], $3::TEXT[]) AS t(position, line)",
        )
        .bind(&self.replica_id)
        .bind(&positions)
        .bind(&lines)
        .execute(&self.pool)
        .await
        .map_err(io)?;
        self.pending.clear();
        Ok(())
    }

    async fn store_head(&mut self, head: &Head) -> std::io::Result<()> {
        sqlx::query(
            "INSERT INTO audit_heads (replica_id, records, hash) VALUES ($1, $2, $3)
             ON CONFLICT (replica_id) DO UPDATE SET records = EXCLUDED.records, hash = EXCLUDED.hash",
        )
        .bind(&self.replica_id)
        .bind(i64::try_from(head.records).unwrap_or(i64::MAX))
        .bind(&head.hash)
        .execute(&self.pool)
        .await
        .map_err(io)?;
        Ok(())
    }
}

/// One replica's chain as read back for verification.
#[derive(Debug)]
pub struct StoredChain {
    /// `server.replica_id`.
    pub replica_id: String,
    /// Sealed lines by position, ascending.
    pub records: Vec<(u64, String)>,
    /// The head its replica last recorded.
    pub head: Option<Head>,
}

/// Every replica's audit chain in the database at `url`, by replica id.
pub async fn audit_chains(url: &str) -> Result<Vec<StoredChain>, StoreError> {
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
    let mut chains: Vec<StoredChain> = Vec::new();
    let heads = sqlx::query("SELECT replica_id, records, hash FROM audit_heads")
        .fetch_all(&pool)
        .await?;
    let rows = sqlx::query(
        "SELECT replica_id, position, line FROM audit_records ORDER BY replica_id, position",
    )
    .fetch_all(&pool)
    .await?;
    for row in rows {
        let replica_id: String = row.try_get("replica_id")?;
        let record = (uint(row.try_get("position")?), row.try_get("line")?);
        match chains.last_mut() {
            Some(chain) if chain.replica_id == replica_id => chain.records.push(record),
            _ => chains.push(StoredChain {
                replica_id,
                records: vec![record],
                head: None,
            }),
        }
    }
    for row in heads {
        let replica_id: String = row.try_get("replica_id")?;
        let head = Head {
            records: usize::try_from(uint(row.try_get("records")?)).unwrap_or(usize::MAX),
            hash: row.try_get("hash")?,
        };
        match chains.iter_mut().find(|c| c.replica_id == replica_id) {
            Some(chain) => chain.head = Some(head),
            // Every record of this replica was deleted: the head says so.
            None => chains.push(StoredChain {
                replica_id,
                records: Vec::new(),
                head: Some(head),
            }),
        }
    }
    chains.sort_by(|a, b| a.replica_id.cmp(&b.replica_id));
    pool.close().await;
    Ok(chains)
}
