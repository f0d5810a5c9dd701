//! Where the decision log's lines go: the [`AuditSink`] the writer task
//! writes through, and [`FileSink`], the append-only file (with its head
//! file beside it) writ keeps today.
//!
//! The writer task owns batching, sealing and the chain; a sink only keeps
//! lines and the chain's head. Split so the writer's rules (a line moves
//! the chain on only once the sink took it; the head follows the last
//! record) are tested without a file, and so another destination is one
//! more implementation, not a second writer.

use std::future::Future;
use std::io;
use std::path::PathBuf;

use tokio::io::AsyncWriteExt;

use super::chain;

/// A destination for sealed audit lines, written by one task in order.
/// Static dispatch (the writer is generic over it): the hot loop pays no
/// allocation per line.
pub(crate) trait AuditSink: Send + std::fmt::Display + 'static {
    /// Appends one sealed line (JSON ending in a newline). Only a line the
    /// sink took moves the chain on.
    fn append(&mut self, line: &str) -> impl Future<Output = io::Result<()>> + Send;
    /// Pushes what was appended out of any buffer; called after each batch.
    fn flush(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Records where the chain ends (records written, the last one's hash)
    /// so cutting records off the end is found; called shortly after a
    /// batch and at shutdown.
    fn store_head(&mut self, head: &chain::Head) -> impl Future<Output = io::Result<()>> + Send;
}

/// The log file, appended to through a buffer, and its `<log>.head` file.
pub(crate) struct FileSink {
    out: tokio::io::BufWriter<tokio::fs::File>,
    path: PathBuf,
}

impl FileSink {
    /// Appends to `file`, the log at `path`.
    pub(crate) fn new(file: tokio::fs::File, path: PathBuf) -> Self {
        Self {
            out: tokio::io::BufWriter::new(file),
            path,
        }
    }
}

/// The log's path: what the writer's log lines name.
impl std::fmt::Display for FileSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.path.display().fmt(f)
    }
}

impl AuditSink for FileSink {
    async fn append(&mut self, line: &str) -> io::Result<()> {
        self.out.write_all(line.as_bytes()).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.out.flush().await
    }

    async fn store_head(&mut self, head: &chain::Head) -> io::Result<()> {
        chain::write_head(&self.path, head).await
    }
}
