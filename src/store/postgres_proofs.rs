//! DPoP proofs every replica has accepted, in an unlogged PostgreSQL table,
//! written in batches: while one `INSERT` is in flight, the proofs of
//! concurrent requests queue and go in the next statement together, so a
//! busy replica pays one round trip for many proofs rather than one each.

use std::collections::HashSet;

use sqlx::Row;
use sqlx::postgres::PgPool;
use tokio::sync::{mpsc, oneshot};

use super::StoreError;
use super::rows::int;
use crate::attest::dpop::ReplayKey;

/// Proofs in one statement at most.
const MAX_BATCH: usize = 512;
/// Proofs waiting for a statement at most, before callers wait to queue.
const QUEUE: usize = 8192;

/// One proof waiting for its batch: `true` when no replica had it.
struct Pending {
    key: ReplayKey,
    valid_until: u64,
    now: u64,
    answer: oneshot::Sender<Result<bool, String>>,
}

/// The queue in front of the batch writer.
pub(super) struct ProofBatcher {
    queue: mpsc::Sender<Pending>,
}

fn failed(why: impl Into<String>) -> StoreError {
    StoreError::Io(std::io::Error::other(why.into()))
}

impl ProofBatcher {
    /// Starts the writer on `pool`; it stops when the batcher is dropped.
    pub(super) fn start(pool: PgPool) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(pool, pending));
        Self { queue }
    }

    /// Records proof `key` (live until `valid_until`); `false` when a
    /// replica recorded it before and it is still live at `now`.
    pub(super) async fn remember(
        &self,
        key: &ReplayKey,
        valid_until: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let (answer, answered) = oneshot::channel();
        let pending = Pending {
            key: *key,
            valid_until,
            now,
            answer,
        };
        self.queue
            .send(pending)
            .await
            .map_err(|_| failed("the DPoP proof writer has stopped"))?;
        answered
            .await
            .map_err(|_| failed("the DPoP proof writer has stopped"))?
            .map_err(failed)
    }
}

async fn write_batches(pool: PgPool, mut pending: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while pending.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // The same proof twice in one batch: the second is a replay at once
        // (and one statement may not touch a row twice).
        let mut in_batch = HashSet::with_capacity(batch.len());
        let (first, repeated): (Vec<Pending>, Vec<Pending>) =
            batch.drain(..).partition(|p| in_batch.insert(p.key));
        for p in repeated {
            let _ = p.answer.send(Ok(false));
        }
        match insert(&pool, &first).await {
            Ok(fresh) => {
                for p in first {
                    let _ = p.answer.send(Ok(fresh.contains(&p.key)));
                }
            }
            Err(e) => {
                let why = e.to_string();
                for p in first {
                    let _ = p.answer.send(Err(why.clone()));
                }
            }
        }
    }
}

/// Inserts the batch; returns the keys no replica held live. A record whose
/// proof stopped being live (not swept yet) is taken over, judged by the
/// earliest `now` of the batch, so no caller's clock is stretched.
async fn insert(pool: &PgPool, batch: &[Pending]) -> Result<HashSet<ReplayKey>, StoreError> {
    let keys: Vec<Vec<u8>> = batch.iter().map(|p| p.key.to_vec()).collect();
    let valid_until: Vec<i64> = batch.iter().map(|p| int(p.valid_until)).collect();
    let now = batch.iter().map(|p| p.now).min().unwrap_or(0);
    let rows = sqlx::query(
        "INSERT INTO dpop_proofs (key, valid_until)
         SELECT * FROM UNNEST($1::BYTEA[], $2::BIGINT[])
         ON CONFLICT (key) DO UPDATE SET valid_until = EXCLUDED.valid_until
         WHERE dpop_proofs.valid_until < $3
         RETURNING key",
    )
    .bind(&keys)
    .bind(&valid_until)
    .bind(int(now))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let key: Vec<u8> = r.try_get(0)?;
            ReplayKey::try_from(key.as_slice())
                .map_err(|_| StoreError::Corrupt("a DPoP proof key is not 16 bytes".into()))
        })
        .collect()
}
