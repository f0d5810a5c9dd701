//! The decision log and metrics.
//!
//! Every decision, allow or deny, becomes one JSON line. Handlers hand
//! records to [`AuditLog`], whose single writer task appends them off the hot
//! path; `chain` links each line to the previous one by SHA-256 so
//! `writ audit verify` finds any edit, deletion or reordering.

mod chain;
mod metrics;

use std::path::{Path, PathBuf};

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

pub use chain::{ChainError, verify_file};
pub use metrics::Metrics;

/// One decision.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// Finds this record from the error a client saw.
    pub decision_id: String,
    /// RFC 3339, UTC.
    pub time: String,
    /// The attested principal, when attestation succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
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

const QUEUE: usize = 65_536;

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
        let prev = chain::last_hash(path).await.map_err(err)?;
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(err)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let handle = tokio::spawn(write_loop(rx, file, prev, path.to_path_buf()));
        Ok((Self { tx }, AuditWriter { handle }))
    }

    /// Queues a record. Waits only when the writer is a full queue behind.
    pub async fn record(&self, record: AuditRecord) {
        if self.tx.send(record).await.is_err() {
            tracing::error!("audit writer has stopped; a decision record was lost");
        }
    }
}

async fn write_loop(
    mut rx: mpsc::Receiver<AuditRecord>,
    file: tokio::fs::File,
    mut prev: String,
    path: PathBuf,
) {
    let mut out = tokio::io::BufWriter::new(file);
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, 256).await > 0 {
        for record in batch.drain(..) {
            match chain::seal(&record, &prev) {
                Ok((line, hash)) => {
                    if let Err(e) = out.write_all(line.as_bytes()).await {
                        tracing::error!(path = %path.display(), error = %e, "audit write failed");
                    }
                    prev = hash;
                }
                Err(e) => tracing::error!(error = %e, "audit record could not be encoded"),
            }
        }
        if let Err(e) = out.flush().await {
            tracing::error!(path = %path.display(), error = %e, "audit flush failed");
        }
    }
}
