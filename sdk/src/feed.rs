//! Following the broker's revocation feed: Server-Sent Events, resumed with
//! `Last-Event-ID` after any break, with a JSON poll as fallback. Every byte
//! heard (heartbeats included) records that the feed is alive, so the
//! verifier can fail closed when it goes silent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, Weak};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::revocations::RevocationSet;
use crate::{Broker, Error, TokenSource};

/// How a follower authenticates to the feed.
#[derive(Clone)]
pub enum FeedAuth {
    /// A fixed bearer credential (e.g. an admin token for a trusted service).
    Bearer(String),
    /// Tokens from this source; its audience must be the broker's `issuer`.
    Tokens(TokenSource),
    /// No header: the broker's client presents a certificate (mTLS).
    ClientCertificate,
}

impl std::fmt::Debug for FeedAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bearer is a secret.
        f.write_str(match self {
            Self::Bearer(_) => "FeedAuth::Bearer(..)",
            Self::Tokens(_) => "FeedAuth::Tokens(..)",
            Self::ClientCertificate => "FeedAuth::ClientCertificate",
        })
    }
}

impl FeedAuth {
    async fn apply(&self, req: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, Error> {
        Ok(match self {
            Self::Bearer(t) => req.bearer_auth(t),
            Self::Tokens(source) => req.bearer_auth(source.token().await?.access_token),
            Self::ClientCertificate => req,
        })
    }

    /// Sends a request built by `build`, authenticated. A 401 with a token
    /// from a source means that token went stale (a workload-wide
    /// revocation also revokes the follower's own token): it is dropped and
    /// the request is sent once more with a fresh one.
    async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Error> {
        let resp = self
            .apply(build())
            .await?
            .send()
            .await
            .map_err(|e| Error::Unavailable(format!("revocation feed: {e}")))?;
        match self {
            Self::Tokens(source) if resp.status() == reqwest::StatusCode::UNAUTHORIZED => {
                source.invalidate();
                self.apply(build())
                    .await?
                    .send()
                    .await
                    .map_err(|e| Error::Unavailable(format!("revocation feed: {e}")))
            }
            _ => Ok(resp),
        }
    }
}

/// State shared between the follower task and the verifier.
#[derive(Debug)]
pub(crate) struct FeedState {
    pub(crate) set: RwLock<RevocationSet>,
    base: Instant,
    heard_ms: AtomicU64,
}

impl FeedState {
    pub(crate) fn new() -> Self {
        Self {
            set: RwLock::new(RevocationSet::default()),
            base: Instant::now(),
            heard_ms: AtomicU64::new(0),
        }
    }

    fn heard(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.heard_ms.store(ms.max(1), Ordering::Release);
    }

    /// How long since the feed was last heard (`None`: never).
    pub(crate) fn silence(&self) -> Option<Duration> {
        match self.heard_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(
                self.base
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms)),
            ),
        }
    }

    fn last_seq(&self) -> u64 {
        self.set.read().map(|s| s.last_seq).unwrap_or(0)
    }

    fn apply(&self, entry: &Value) {
        if let Ok(mut set) = self.set.write() {
            set.apply(entry);
        }
    }
}

/// Reads every page after the last seq seen (`GET /v1/revocations?since=`).
pub(crate) async fn catch_up(
    broker: &Broker,
    auth: &FeedAuth,
    state: &FeedState,
) -> Result<(), Error> {
    let endpoint = feed_endpoint(broker).await?;
    loop {
        let since = state.last_seq();
        let url = format!("{endpoint}?since={since}");
        let resp = auth
            .send(|| broker.client().get(&url).timeout(Duration::from_secs(10)))
            .await?;
        if !resp.status().is_success() {
            return Err(Error::Unavailable(format!(
                "revocation feed: {}",
                resp.status()
            )));
        }
        let page: Value = resp
            .json()
            .await
            .map_err(|e| Error::Protocol(format!("revocation feed: {e}")))?;
        state.heard();
        let entries = page
            .get("entries")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if entries.is_empty() {
            return Ok(());
        }
        for entry in &entries {
            state.apply(entry);
        }
    }
}

async fn feed_endpoint(broker: &Broker) -> Result<String, Error> {
    let metadata = broker.metadata().await?;
    Ok(metadata
        .revocation_feed_endpoint
        .clone()
        .unwrap_or_else(|| format!("{}/v1/revocations", metadata.issuer)))
}

/// The longest a stream may stay silent before it is dropped and resumed:
/// a little over two of the broker's 15 s heartbeats.
const STREAM_SILENCE: Duration = Duration::from_secs(35);
/// The most one SSE event may hold before the stream is dropped.
const MAX_EVENT_BYTES: usize = 1 << 20;

/// Follows the stream until the verifier is dropped: SSE, and after any
/// break a JSON catch-up, a pause, and SSE again from the last seq.
pub(crate) async fn follow(broker: Broker, auth: FeedAuth, state: Weak<FeedState>) {
    let mut failures: u32 = 0;
    loop {
        match stream_once(&broker, &auth, &state).await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, "revocation stream broke; catching up by polling");
            }
        }
        let Some(s) = state.upgrade() else { return };
        if let Err(e) = catch_up(&broker, &auth, &s).await {
            tracing::warn!(error = %e, "revocation feed poll failed");
        }
        drop(s);
        let pause = Duration::from_millis(200u64.saturating_mul(1 << failures.min(5)));
        tokio::time::sleep(pause).await;
    }
}

/// One SSE connection, until it ends, breaks, or the verifier is dropped.
/// Lines are split on raw bytes, so a multi-byte character split across
/// chunks is never mangled; an event that does not parse ends the stream,
/// and the catch-up that follows reads it again from the store.
async fn stream_once(
    broker: &Broker,
    auth: &FeedAuth,
    state: &Weak<FeedState>,
) -> Result<(), Error> {
    let url = format!("{}/stream", feed_endpoint(broker).await?);
    let Some(last) = state.upgrade().map(|s| s.last_seq().to_string()) else {
        return Ok(());
    };
    let send = auth.send(|| {
        broker
            .client()
            .get(&url)
            .header("Last-Event-ID", &last)
            .header("Accept", "text/event-stream")
    });
    let mut resp = tokio::time::timeout(Duration::from_secs(10), send)
        .await
        .map_err(|_| Error::Unavailable("revocation stream: no answer in 10 s".into()))??;
    if !resp.status().is_success() {
        return Err(Error::Unavailable(format!(
            "revocation stream: {}",
            resp.status()
        )));
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    loop {
        let Some(s) = state.upgrade() else {
            return Ok(());
        };
        s.heard();
        drop(s);
        let chunk = tokio::time::timeout(STREAM_SILENCE, resp.chunk())
            .await
            .map_err(|_| {
                Error::Unavailable(format!("revocation stream silent for {STREAM_SILENCE:?}"))
            })?
            .map_err(|e| Error::Unavailable(format!("revocation stream: {e}")))?;
        let Some(chunk) = chunk else { return Ok(()) };
        buf.extend_from_slice(&chunk);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let line = line.strip_suffix(b"\n").unwrap_or(&line);
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                if !data.is_empty() {
                    let entry: Value = serde_json::from_slice(&data).map_err(|e| {
                        Error::Protocol(format!("unreadable revocation event: {e}"))
                    })?;
                    if let Some(s) = state.upgrade() {
                        s.apply(&entry);
                    }
                    data.clear();
                }
            } else if let Some(d) = line.strip_prefix(b"data:") {
                data.extend_from_slice(d.strip_prefix(b" ").unwrap_or(d));
            }
        }
        if buf.len() + data.len() > MAX_EVENT_BYTES {
            return Err(Error::Protocol("revocation event larger than 1 MiB".into()));
        }
    }
}
