//! Following the broker's revocation feed: Server-Sent Events, resumed with
//! `Last-Event-ID` after any break, with a JSON poll as fallback. Every byte
//! heard (heartbeats included) records that the feed is alive, so the
//! verifier can fail closed when it goes silent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::revocations::RevocationSet;
use crate::{Broker, Error, TokenSource};

/// How a follower authenticates to the feed.
#[derive(Clone, Debug)]
pub enum FeedAuth {
    /// A fixed bearer credential (e.g. an admin token for a trusted service).
    Bearer(String),
    /// Tokens from this source; its audience must be the broker's `issuer`.
    Tokens(TokenSource),
    /// No header: the broker's client presents a certificate (mTLS).
    ClientCertificate,
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

/// Follows the stream until the verifier is dropped: SSE, and after any
/// break a JSON catch-up, a jittered pause, and SSE again from the last seq.
pub(crate) async fn follow(broker: Broker, auth: FeedAuth, state: Weak<FeedState>) {
    let mut failures: u32 = 0;
    loop {
        let Some(s) = state.upgrade() else { return };
        match stream_once(&broker, &auth, &s).await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, "revocation stream broke; catching up by polling");
            }
        }
        if let Err(e) = catch_up(&broker, &auth, &s).await {
            tracing::warn!(error = %e, "revocation feed poll failed");
        }
        drop(s);
        let pause = Duration::from_millis(200u64.saturating_mul(1 << failures.min(5)));
        tokio::time::sleep(pause).await;
    }
}

/// One SSE connection, until it ends or breaks.
async fn stream_once(
    broker: &Broker,
    auth: &FeedAuth,
    state: &Arc<FeedState>,
) -> Result<(), Error> {
    let url = format!("{}/stream", feed_endpoint(broker).await?);
    let last = state.last_seq().to_string();
    let mut resp = auth
        .send(|| {
            broker
                .client()
                .get(&url)
                .header("Last-Event-ID", &last)
                .header("Accept", "text/event-stream")
        })
        .await?;
    if !resp.status().is_success() {
        return Err(Error::Unavailable(format!(
            "revocation stream: {}",
            resp.status()
        )));
    }
    state.heard();
    let mut buf = String::new();
    let mut data = String::new();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(60), resp.chunk())
            .await
            .map_err(|_| Error::Unavailable("revocation stream silent for 60 s".into()))?
            .map_err(|e| Error::Unavailable(format!("revocation stream: {e}")))?;
        let Some(chunk) = chunk else { return Ok(()) };
        state.heard();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find('\n') {
            let line: String = buf.drain(..=end).collect();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !data.is_empty() {
                    match serde_json::from_str::<Value>(&data) {
                        Ok(entry) => state.apply(&entry),
                        Err(e) => tracing::warn!(error = %e, "unreadable revocation event"),
                    }
                    data.clear();
                }
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push_str(d.trim_start());
            }
        }
    }
}
