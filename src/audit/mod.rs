//! The decision log and metrics.
//!
//! Every decision, allow or deny, becomes one JSON line. Handlers hand
//! records to [`AuditLog`], whose single writer task appends them off the hot
//! path through an `AuditSink` (`sink`: the log file; with PostgreSQL the
//! store's per-replica table, which `crate::store` implements); `chain`
//! links each line to the previous one by SHA-256 so `writ audit verify`
//! finds any edit, deletion or reordering; `read` streams the records back
//! for the least-privilege tools.

mod chain;
mod metrics;
mod read;
mod sink;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tokio::sync::mpsc;

use sink::FileSink;

pub use chain::GENESIS;
pub(crate) use chain::hash_of;
pub use chain::{ChainError, Head, ReplicaChainError, verify_file, verify_replica_chain};
pub use metrics::Metrics;
pub use read::{ReadError, Recorded, RecordedParty, Records, records};
pub(crate) use sink::AuditSink;

/// One decision.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// What was decided: `mint`, `introspect`, or `request` (shed before routing).
    pub action: &'static str,
    /// Finds this record from the error a client saw.
    pub decision_id: String,
    /// RFC 3339, UTC.
    pub time: String,
    /// The attested principal, when attestation succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Its Cedar entity type (`Workload`, `Agent`, `User`), with `principal`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal_type: Option<String>,
    /// The attributes attestation gave it (claims such as `namespace` and
    /// `issuer`, never a token), so `writ policy explain --decision` can
    /// decide the request again.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, serde_json::Value>,
    /// How it attested.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attestation: Option<String>,
    /// The caller's address.
    pub source_ip: String,
    /// The requested audience.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Scopes asked for.
    pub scopes_requested: Vec<String>,
    /// Scopes granted.
    pub scopes_granted: Vec<String>,
    /// The lifetime asked for (or the default), in seconds, once decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_ttl: Option<u64>,
    /// Whether the token was to be bound to a key (Cedar's
    /// `context.sender_constrained`), once decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_constrained: Option<bool>,
    /// Hops of delegation (Cedar's `context.delegation_depth`), once decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delegation_depth: Option<u32>,
    /// A transaction token request: the workload asking (Cedar's
    /// `context.transaction.requester`), once decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txn_requester: Option<String>,
    /// And the call chain's length (`context.transaction.chain`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txn_chain: Option<u32>,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// Determining policy ids.
    pub policies: Vec<String>,
    /// The minted token's `jti`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The minted token's `exp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// The RFC 6749 error code of a refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    /// Why, in safe words (never a token or key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The kill-switch entry this record made, lifted or was refused by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation: Option<String>,
    /// Who acts for the principal: the delegation chain, newest actor first
    /// (the minted token's `act`, flattened).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub act: Vec<String>,
    /// The approval the grant waits for, or redeemed, or an admin decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// The agent acting for the principal as Cedar saw it (`context.actor`):
    /// `{"type", "id", "attrs"}`, when delegated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<serde_json::Value>,
}

impl AuditRecord {
    /// A deny record for `action`, to be filled in as the request is decided.
    pub fn new(action: &'static str, decision_id: String, time: String, source_ip: String) -> Self {
        Self {
            action,
            decision_id,
            time,
            principal: None,
            principal_type: None,
            attrs: BTreeMap::new(),
            attestation: None,
            source_ip,
            target: None,
            scopes_requested: Vec::new(),
            scopes_granted: Vec::new(),
            requested_ttl: None,
            sender_constrained: None,
            delegation_depth: None,
            txn_requester: None,
            txn_chain: None,
            decision: "deny",
            policies: Vec::new(),
            jti: None,
            exp: None,
            error: None,
            reason: None,
            revocation: None,
            act: Vec::new(),
            approval: None,
            actor: None,
        }
    }
}

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("audit log {path}: {source}")]
pub struct AuditError {
    path: PathBuf,
    source: std::io::Error,
}

/// Sends records to the writer task.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<AuditRecord>,
}

/// Waits for the writer to flush everything sent before shutdown.
pub struct AuditWriter {
    handle: tokio::task::JoinHandle<()>,
}

impl AuditWriter {
    /// Resolves once every record has been written (after all senders dropped).
    pub async fn finish(self) {
        let _ = self.handle.await;
    }
}

/// Records waiting for the writer. When the disk stalls (writeback of the
/// log under load), decisions wait for room here rather than the queue
/// growing: a queued record costs about 2 KB, and at 25,000 decisions a
/// second a 65,536-record queue let a half-second stall add 22 MB to the
/// broker's memory (4,096 records: 9 MB). 1,024 records are 40 ms of
/// decisions at that rate, half a second at 2,000 a second, and eight of the
/// writer's batches at full load.
const QUEUE: usize = 1_024;

impl AuditLog {
    /// Opens `path` for appending, continuing the hash chain from its last
    /// line, and starts the writer task.
    pub async fn open(path: &Path) -> Result<(Self, AuditWriter), AuditError> {
        let err = |source| AuditError {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(err)?;
        }
        let head = chain::last_head(path).await.map_err(err)?;
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(err)?;
        Ok(Self::start(FileSink::new(file, path.to_path_buf()), head))
    }

    /// Starts the writer task on `sink` (the log file, or the store's
    /// table of this replica's records), continuing the chain from `head`.
    pub(crate) fn start(sink: impl AuditSink, head: chain::Head) -> (Self, AuditWriter) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let handle = tokio::spawn(write_loop(rx, sink, head));
        (Self { tx }, AuditWriter { handle })
    }

    /// Queues a record. Waits only when the writer is a full queue behind.
    pub async fn record(&self, record: AuditRecord) {
        if self.tx.send(record).await.is_err() {
            tracing::error!("audit writer has stopped; a decision record was lost");
        }
    }
}

/// The head file is rewritten at most this often, and always this soon after
/// the last record.
const HEAD_EVERY: std::time::Duration = std::time::Duration::from_millis(100);
/// After writing a batch the writer rests this long, so records queue up
/// without waking it on every decision (a cross-thread wake per request
/// costs more than the write itself).
const BATCH_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

async fn write_loop(
    mut rx: mpsc::Receiver<AuditRecord>,
    mut sink: impl AuditSink,
    mut head: chain::Head,
) {
    let mut batch = Vec::with_capacity(1024);
    let mut head_due: Option<tokio::time::Instant> = None;
    loop {
        let received = match head_due {
            Some(due) => tokio::select! {
                n = rx.recv_many(&mut batch, 1024) => n,
                _ = tokio::time::sleep_until(due) => {
                    store_head(&mut sink, &head).await;
                    head_due = None;
                    continue;
                }
            },
            None => rx.recv_many(&mut batch, 1024).await,
        };
        if received == 0 {
            break;
        }
        for record in batch.drain(..) {
            let Ok((line, hash)) = chain::seal(&record, &head.hash) else {
                tracing::error!(decision_id = %record.decision_id, "audit record could not be encoded");
                continue;
            };
            match sink.append(&line).await {
                // Only a written line moves the chain on.
                Ok(()) => {
                    head.hash = hash;
                    head.records += 1;
                }
                Err(e) => {
                    tracing::error!(path = %sink, error = %e, decision_id = %record.decision_id, "audit write failed")
                }
            }
        }
        if let Err(e) = sink.flush().await {
            tracing::error!(path = %sink, error = %e, "audit flush failed");
        }
        head_due.get_or_insert_with(|| tokio::time::Instant::now() + HEAD_EVERY);
        tokio::time::sleep(BATCH_PAUSE).await;
    }
    if head_due.is_some() {
        store_head(&mut sink, &head).await;
    }
}

async fn store_head(sink: &mut impl AuditSink, head: &chain::Head) {
    if let Err(e) = sink.store_head(head).await {
        tracing::error!(path = %sink, error = %e, "audit head write failed");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// Lines and heads kept in memory; the line numbered `refuse` (from 1)
    /// fails as a full disk would.
    #[derive(Default, Clone)]
    struct Memory {
        lines: Arc<Mutex<Vec<String>>>,
        heads: Arc<Mutex<Vec<chain::Head>>>,
        attempts: Arc<Mutex<usize>>,
        refuse: usize,
    }

    impl std::fmt::Display for Memory {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("memory")
        }
    }

    impl AuditSink for Memory {
        async fn append(&mut self, line: &str) -> std::io::Result<()> {
            let mut attempts = self.attempts.lock().unwrap();
            *attempts += 1;
            if *attempts == self.refuse {
                return Err(std::io::Error::other("disk full"));
            }
            self.lines.lock().unwrap().push(line.to_owned());
            Ok(())
        }
        async fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
        async fn store_head(&mut self, head: &chain::Head) -> std::io::Result<()> {
            self.heads.lock().unwrap().push(head.clone());
            Ok(())
        }
    }

    fn field(line: &str, name: &str) -> String {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        value[name].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn a_line_the_sink_refused_does_not_move_the_chain_and_the_head_follows_the_last() {
        let sink = Memory {
            refuse: 2,
            ..Memory::default()
        };
        let head = chain::Head {
            records: 0,
            hash: chain::GENESIS.to_owned(),
        };
        let (log, writer) = AuditLog::start(sink.clone(), head);
        for id in ["d1", "d2", "d3"] {
            let record = AuditRecord::new("mint", id.into(), "t".into(), "::1".into());
            log.record(record).await;
        }
        drop(log);
        writer.finish().await;

        let lines = sink.lines.lock().unwrap().clone();
        let ids: Vec<String> = lines.iter().map(|l| field(l, "decision_id")).collect();
        assert_eq!(ids, ["d1", "d3"]);
        assert_eq!(field(&lines[0], "prev"), chain::GENESIS);
        assert_eq!(field(&lines[1], "prev"), field(&lines[0], "hash"));
        let last = sink.heads.lock().unwrap().last().cloned().unwrap();
        assert_eq!(
            last,
            chain::Head {
                records: 2,
                hash: field(&lines[1], "hash"),
            }
        );
    }
}
