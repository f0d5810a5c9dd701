//! # writ-sidecar: tokens for a workload that does not use the SDK
//!
//! `writ sidecar` keeps tokens fresh for a workload that does not use the
//! SDK. For each configured target it holds a [`writ_sdk::TokenSource`],
//! writes the token to a file (write, then rename; mode 0600) and serves it
//! on a loopback endpoint. With `[revocations]` it follows the kill switch
//! and removes a token within a second of a matching revocation (and writes
//! a new one if the broker still grants it).
//!
//! The crate is built on `writ-sdk` only, never on the broker: [`start`]
//! takes a [`SidecarConfig`] (from [`SidecarConfig::load`]) and returns a
//! [`RunningSidecar`]; the `writ` binary's `sidecar` subcommand is those
//! three calls.
//!
//! Who can read a token: every process in the pod's network namespace can
//! reach loopback, so `GET /token` is exactly as private as the pod (every
//! container in it, not just the workload); the token files are 0600 for the
//! sidecar's uid, so only processes running as that uid (or root) can read
//! them. The endpoint takes no credential. It does refuse (421) any request
//! whose `Host` is not its own loopback address and port, so a web page
//! opened in a browser on the same machine cannot read it through DNS
//! rebinding (the browser sends the attacker's host name).

mod config;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use writ_sdk::{Broker, FeedAuth, FileAttestation, Token, TokenSource, Verifier, VerifyError};

pub use config::{
    AttestationConfig, BrokerConfig, ConfigError, RevocationsConfig, ServeConfig, SidecarConfig,
    TokenConfig,
};

/// How often held tokens are checked against the revocation feed.
const REVOCATION_CHECK: Duration = Duration::from_millis(250);
/// First wait before asking again while nothing is held. A whole second, so
/// the retry after a refused token is minted in a later second than the
/// revocation: an entry revokes tokens with `iat <= effective_at`, both in
/// whole seconds, so a token minted in the same second is revoked too.
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between attempts while nothing is held.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SidecarError {
    /// The broker or its CA could not be set up.
    #[error("broker: {0}")]
    Broker(#[from] writ_sdk::Error),
    /// A file could not be read or written.
    #[error("{0}")]
    Io(String),
    /// The loopback listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// One configured token and what the sidecar holds for it.
struct Slot {
    config: TokenConfig,
    source: TokenSource,
    verifier: Option<Verifier>,
    current: RwLock<Option<Token>>,
    /// Wakes the refresher when the held token was taken away (revoked), so
    /// the workload is not left waiting for the old token's refresh time.
    wake: tokio::sync::Notify,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct Labels {
    audience: String,
}

struct Metrics {
    registry: Registry,
    refreshed: Family<Labels, Counter>,
    failed: Family<Labels, Counter>,
    revoked: Family<Labels, Counter>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("writ_sidecar");
        let (refreshed, failed, revoked) =
            (Family::default(), Family::default(), Family::default());
        registry.register("token_refreshes", "Tokens written", refreshed.clone());
        registry.register("token_refresh_failures", "Failed refreshes", failed.clone());
        registry.register(
            "token_revocations",
            "Tokens removed by the kill switch",
            revoked.clone(),
        );
        Self {
            registry,
            refreshed,
            failed,
            revoked,
        }
    }
}

struct Sidecar {
    slots: Vec<Slot>,
    metrics: Metrics,
}

/// A started sidecar.
pub struct RunningSidecar {
    /// Where `GET /token` is served.
    pub addr: std::net::SocketAddr,
    serve: tokio::task::JoinHandle<()>,
}

impl RunningSidecar {
    /// Runs until the process is stopped.
    pub async fn wait(self) {
        let _ = self.serve.await;
    }
}

fn broker(config: &SidecarConfig) -> Result<Broker, SidecarError> {
    match &config.broker.ca {
        Some(ca) => {
            let pem = std::fs::read(ca)
                .map_err(|e| SidecarError::Io(format!("{}: {e}", ca.display())))?;
            Ok(Broker::with_ca_pem(&config.broker.url, &pem)?)
        }
        None => Ok(Broker::new(&config.broker.url)?),
    }
}

/// Builds everything, binds the loopback endpoint and starts the keepers.
pub async fn start(config: SidecarConfig) -> Result<RunningSidecar, SidecarError> {
    let broker = broker(&config)?;
    let feed_auth = match &config.revocations {
        None => None,
        Some(r) => Some(match (&r.bearer_token_file, &r.audience) {
            (Some(file), _) => FeedAuth::Bearer(
                std::fs::read_to_string(file)
                    .map_err(|e| SidecarError::Io(format!("{}: {e}", file.display())))?
                    .trim()
                    .to_owned(),
            ),
            (None, Some(audience)) => FeedAuth::Tokens(
                TokenSource::builder(broker.clone(), audience)
                    .scopes(r.scopes.clone())
                    .attestation(FileAttestation::kubernetes(&config.attestation.token_file))
                    .build(),
            ),
            (None, None) => return Err(SidecarError::Io("[revocations] has no credential".into())),
        }),
    };
    let mut slots = Vec::new();
    for t in &config.tokens {
        if let Some(dir) = t.file.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| SidecarError::Io(format!("{}: {e}", dir.display())))?;
        }
        let mut builder = TokenSource::builder(broker.clone(), &t.audience)
            .scopes(t.scopes.clone())
            .attestation(FileAttestation::kubernetes(&config.attestation.token_file));
        if let Some(ttl) = t.requested_ttl {
            builder = builder.requested_ttl(ttl);
        }
        let verifier = match (&feed_auth, &config.revocations) {
            (Some(auth), Some(r)) => Some(
                Verifier::builder(broker.clone(), &t.audience)
                    .follow_revocations(auth.clone(), r.max_silence)
                    .build()
                    .await?,
            ),
            _ => None,
        };
        slots.push(Slot {
            config: t.clone(),
            source: builder.build(),
            verifier,
            current: RwLock::new(None),
            wake: tokio::sync::Notify::new(),
        });
    }
    let sidecar = Arc::new(Sidecar {
        slots,
        metrics: Metrics::new(),
    });
    for i in 0..sidecar.slots.len() {
        tokio::spawn(keep_fresh(sidecar.clone(), i));
        if sidecar.slots[i].verifier.is_some() {
            tokio::spawn(watch_revocations(sidecar.clone(), i));
        }
    }
    let listener = tokio::net::TcpListener::bind(config.serve.listen)
        .await
        .map_err(|source| SidecarError::Bind {
            addr: config.serve.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| SidecarError::Bind {
        addr: config.serve.listen,
        source,
    })?;
    // The Host check covers every route, /healthz too: nothing on loopback
    // can be probed by the kubelet anyway (its HTTP probes go to the pod
    // IP), local clients send the address they connected to, and /healthz
    // and /metrics name the audiences, which a rebinding page should not
    // learn either.
    let app = Router::new()
        .route("/token", get(token))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(allowed_hosts(addr)),
            check_host,
        ))
        .with_state(sidecar);
    let serve = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "sidecar endpoint stopped");
        }
    });
    Ok(RunningSidecar { addr, serve })
}

/// Writes `contents` to `path` atomically, owner-only. The temporary name
/// is random and created exclusively, so nothing planted in a shared
/// volume (a symlink, a file) is followed or reused.
fn write_atomically(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut suffix = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut suffix)
        .map_err(|_| std::io::Error::other("no randomness"))?;
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp-{}", hex::encode(suffix)));
    let tmp = std::path::PathBuf::from(name);
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::error!(file = %path.display(), error = %e, "cannot remove a token file"),
    }
}

fn labels(slot: &Slot) -> Labels {
    Labels {
        audience: slot.config.audience.clone(),
    }
}

/// Drops what a slot holds: the token in memory and its file.
fn clear(slot: &Slot) {
    if let Ok(mut c) = slot.current.write() {
        *c = None;
    }
    remove(&slot.config.file);
}

/// Installs a fresh token: refused if the feed already revoked it (an
/// exchange can race a revocation), else written and, only once written,
/// held and served.
async fn install(sidecar: &Sidecar, slot: &Slot, token: Token) {
    let held = slot
        .current
        .read()
        .map(|c| c.as_ref().map(|t| t.access_token == token.access_token))
        .unwrap_or(Some(false));
    if held == Some(true) {
        return;
    }
    if let Some(verifier) = &slot.verifier
        && let Err(VerifyError::Revoked(entry)) = verifier.verify(&token.access_token).await
    {
        tracing::warn!(audience = %slot.config.audience, entry = %entry, "fresh token is already revoked; not installed");
        slot.source.invalidate();
        clear(slot);
        return;
    }
    match write_atomically(&slot.config.file, &token.access_token) {
        Ok(()) => {
            sidecar.metrics.refreshed.get_or_create(&labels(slot)).inc();
            tracing::info!(audience = %slot.config.audience, file = %slot.config.file.display(), "token written");
            if let Ok(mut c) = slot.current.write() {
                *c = Some(token);
            }
        }
        Err(e) => {
            tracing::error!(file = %slot.config.file.display(), error = %e, "cannot write the token file; retrying")
        }
    }
}

/// `d` plus up to a quarter more, so sidecars refused together (a block
/// lifted, a broker back) do not all ask again in the same instant. Only
/// ever longer than `d`: [`RETRY_FIRST`] must stay at least a second.
fn jittered(d: Duration) -> Duration {
    let mut byte = [0u8; 1];
    match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut byte) {
        Ok(()) => d + d / 4 * u32::from(byte[0]) / 255,
        Err(_) => d,
    }
}

/// Keeps one token fresh: fetch, install, sleep until it is due, again.
/// While nothing is held (refused, revoked, broker away) it asks again
/// after 1 s, doubling up to [`RETRY_MAX`]; a revocation of the held token
/// wakes it at once.
async fn keep_fresh(sidecar: Arc<Sidecar>, i: usize) {
    let slot = &sidecar.slots[i];
    let mut retry = RETRY_FIRST;
    loop {
        match slot.source.token().await {
            Ok(token) => install(&sidecar, slot, token).await,
            Err(e) => {
                sidecar.metrics.failed.get_or_create(&labels(slot)).inc();
                tracing::warn!(audience = %slot.config.audience, error = %e, "no token");
                // Nothing valid is held any more: no stale file either.
                clear(slot);
            }
        }
        let held = slot.current.read().map(|c| c.is_some()).unwrap_or(false);
        let wait = if held {
            retry = RETRY_FIRST;
            slot.source
                .refresh_due()
                .map(|due| due.saturating_duration_since(Instant::now()))
                .unwrap_or(RETRY_FIRST)
                .clamp(Duration::from_millis(100), RETRY_MAX)
        } else {
            let wait = jittered(retry);
            retry = retry.saturating_mul(2).min(RETRY_MAX);
            wait
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = slot.wake.notified() => retry = RETRY_FIRST,
        }
    }
}

/// Takes a revoked token away (memory and file) and has the refresher ask
/// for a replacement now rather than at the old token's refresh time.
/// Only if the slot still holds `token`: the watcher and a request can both
/// find it revoked, and a replacement may have been installed meanwhile.
fn drop_revoked(sidecar: &Sidecar, slot: &Slot, token: &Token, entry: &str) {
    let still_held = slot.current.read().is_ok_and(|c| {
        c.as_ref()
            .is_some_and(|held| held.access_token == token.access_token)
    });
    if !still_held {
        return;
    }
    tracing::warn!(audience = %slot.config.audience, entry = %entry, "token revoked by the kill switch; removed");
    sidecar.metrics.revoked.get_or_create(&labels(slot)).inc();
    clear(slot);
    slot.source.invalidate();
    // notify_one keeps a permit if the refresher is mid-fetch, so it still
    // asks again right after.
    slot.wake.notify_one();
}

/// Removes a held token as soon as the kill switch revokes it and wakes the
/// refresher to ask for a new one (refused while a block stands).
async fn watch_revocations(sidecar: Arc<Sidecar>, i: usize) {
    let slot = &sidecar.slots[i];
    let Some(verifier) = &slot.verifier else {
        return;
    };
    loop {
        tokio::time::sleep(REVOCATION_CHECK).await;
        let held = slot.current.read().ok().and_then(|c| c.clone());
        let Some(token) = held else { continue };
        if let Err(VerifyError::Revoked(entry)) = verifier.verify(&token.access_token).await {
            drop_revoked(&sidecar, slot, &token, &entry);
        }
    }
}

/// Whether the feed says `t` is revoked; if so, it is dropped at once.
async fn revoked(s: &Sidecar, slot: &Slot, t: &Token) -> bool {
    let Some(verifier) = &slot.verifier else {
        return false;
    };
    match verifier.verify(&t.access_token).await {
        Err(VerifyError::Revoked(entry)) => {
            drop_revoked(s, slot, t, &entry);
            true
        }
        _ => false,
    }
}

/// The token a slot holds, if it has not expired.
fn valid(slot: &Slot) -> Option<Token> {
    let now = SystemTime::now();
    slot.current
        .read()
        .ok()
        .and_then(|c| c.clone())
        .filter(|t| t.expires_at > now)
}

#[derive(Deserialize)]
struct TokenQuery {
    audience: String,
}

async fn token(State(s): State<Arc<Sidecar>>, Query(q): Query<TokenQuery>) -> Response {
    let Some(slot) = s
        .slots
        .iter()
        .find(|slot| slot.config.audience == q.audience)
    else {
        return (
            StatusCode::NOT_FOUND,
            "no token is configured for that audience\n",
        )
            .into_response();
    };
    match valid(slot) {
        // The watcher looks every 250 ms; between two looks the feed may
        // already know, and a revoked token is never served.
        Some(t) if revoked(&s, slot, &t).await => {
            (StatusCode::SERVICE_UNAVAILABLE, "no valid token yet\n").into_response()
        }
        Some(t) => {
            let mut resp = t.access_token.into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        None => (StatusCode::SERVICE_UNAVAILABLE, "no valid token yet\n").into_response(),
    }
}

/// 200 when every configured token is held, 503 (naming the missing) otherwise.
async fn healthz(State(s): State<Arc<Sidecar>>) -> Response {
    let missing: Vec<&str> = s
        .slots
        .iter()
        .filter(|slot| valid(slot).is_none())
        .map(|slot| slot.config.audience.as_str())
        .collect();
    if missing.is_empty() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no token for: {}\n", missing.join(", ")),
        )
            .into_response()
    }
}

async fn metrics(State(s): State<Arc<Sidecar>>) -> Response {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &s.metrics.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    out.into_response()
}

/// The `Host` values that name this listener: its own address, and
/// `127.0.0.1`, `localhost` and `[::1]`, each with the bound port.
fn allowed_hosts(addr: std::net::SocketAddr) -> Vec<String> {
    let port = addr.port();
    vec![
        addr.to_string(),
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
    ]
}

/// Refuses a request that does not name this listener: a missing `Host`,
/// several, or one for another name or port. A browser on this machine
/// tricked by DNS rebinding into sending a page's requests to loopback
/// still sends the page's host name, so this keeps the token from it.
/// An absolute-form target (or HTTP/2 `:authority`) must match as well.
async fn check_host(State(allowed): State<Arc<Vec<String>>>, req: Request, next: Next) -> Response {
    let ok = |h: &str| allowed.iter().any(|a| a.eq_ignore_ascii_case(h));
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(h), None) => Some(h.to_str().is_ok_and(ok)),
        (None, _) => None,
        (Some(_), Some(_)) => Some(false),
    };
    let authority = req.uri().authority().map(|a| ok(a.as_str()));
    let fine = match (host, authority) {
        (Some(h), Some(a)) => h && a,
        (Some(h), None) => h,
        // HTTP/2 has no Host header; its :authority says the same.
        (None, Some(a)) => a && req.version() == axum::http::Version::HTTP_2,
        (None, None) => false,
    };
    if fine {
        return next.run(req).await;
    }
    tracing::debug!(host = ?req.headers().get(header::HOST), "request for another host refused");
    (
        StatusCode::MISDIRECTED_REQUEST,
        "Host must be this sidecar's loopback address and port\n",
    )
        .into_response()
}
