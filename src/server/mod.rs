//! HTTPS in front of the pipeline: routes, TLS, limits and errors.
//!
//! [`Server::start`] builds every part from the configuration (store, keys,
//! issuers, policies, audit), binds the listener and serves until
//! [`Running::shutdown`]. Handlers only extract, call the [`crate::grant`]
//! pipeline (or the kill switch, for the admin API), audit and render;
//! statuses are chosen in `error`.

mod admin;
mod admin_approvals;
mod admin_explain;
mod admin_inventory;
mod admin_keys;
mod auth;
mod error;
mod extract;
mod feed;
mod form;
mod guard;
mod introspect;
mod listener;
mod rate;
mod routes;
mod token;

use std::net::SocketAddr;
use std::sync::Arc;

pub use error::ApiError;

use crate::attest::dpop::{ProofReplay, ReplayCache};
use crate::attest::{Peer, Registry};
use crate::audit::{AuditLog, AuditWriter, Metrics};
use crate::clock::Clock;
use crate::config::Config;
use crate::grant::Refusal;
use crate::policy::PolicyEngine;
use crate::revoke::KillSwitch;
use crate::store::Store;
use crate::token::{KeyRing, Minter, TokenVerifier};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// TLS material could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// The listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Signing keys could not be loaded or generated.
    #[error(transparent)]
    Keys(#[from] crate::token::KeyRingError),
    /// An issuer is misconfigured.
    #[error(transparent)]
    Issuer(#[from] crate::attest::RegistryError),
    /// The policy directory is invalid.
    #[error("policies: {0}")]
    Policy(#[from] crate::policy::PolicyLoadError),
    /// The audit log could not be opened.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
}

/// Everything a request handler needs, shared by all connections.
pub struct AppState {
    /// `iss` of minted tokens.
    pub issuer: String,
    /// The configuration in force.
    pub config: Config,
    /// Attestation issuers.
    pub attest: Arc<Registry>,
    /// Cedar.
    pub policy: Arc<PolicyEngine>,
    /// Signing and verification keys.
    pub keys: Arc<KeyRing>,
    /// Signs new tokens.
    pub minter: Minter,
    /// Checks writ tokens that come back.
    pub verifier: TokenVerifier,
    /// The kill switch: durable entries, the hot-path index, the feed.
    pub kill_switch: Arc<KillSwitch>,
    /// The decision log.
    pub audit: AuditLog,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// SHA-256 digests of admin bearer tokens.
    pub admin_token_digests: Vec<[u8; 32]>,
    /// DPoP proofs seen inside the acceptance window: in memory (a
    /// [`ReplayCache`](crate::attest::dpop::ReplayCache) of
    /// `tokens.dpop_replay_cache` proofs) and, with several replicas, in
    /// the shared store.
    pub dpop_replay: Arc<crate::attest::dpop::ProofReplay>,
    /// RFC 7009 self-revocations per principal.
    pub(crate) self_revocations: rate::RateLimit,
    /// `limits.per_principal` and `limits.per_target` on token requests.
    pub(crate) rate_limits: crate::grant::RateLimits,
}

/// RFC 7009 self-revocations one principal may make per minute.
pub const SELF_REVOCATIONS_PER_MINUTE: u32 = 10;

/// A starting point: configuration and clock.
pub struct Server {
    config: Config,
    clock: Arc<dyn Clock>,
}

/// A server that is accepting connections.
pub struct Running {
    addr: SocketAddr,
    issuer: String,
    shutdown: tokio::sync::watch::Sender<bool>,
    serve: tokio::task::JoinHandle<()>,
    audit: AuditWriter,
    kill_switch: Arc<KillSwitch>,
}

impl Server {
    /// A server for `config` reading time from `clock`.
    pub fn new(config: Config, clock: Arc<dyn Clock>) -> Self {
        Self { config, clock }
    }

    /// Builds every part, binds, and starts serving in the background.
    pub async fn start(self) -> Result<Running, StartError> {
        let Self { config, clock } = self;
        crate::install_crypto_provider();
        let tls = listener::tls_config(&config.tls)?;
        let tcp = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.server.listen,
                source,
            })?;
        let addr = tcp.local_addr().map_err(|source| StartError::Bind {
            addr: config.server.listen,
            source,
        })?;
        let issuer = config
            .server
            .issuer
            .clone()
            .unwrap_or_else(|| format!("https://{addr}"));

        let store =
            crate::store::open_with(&config.store.url, config.store.max_connections).await?;
        // The longest lifetime a live token can have: this run's max_ttl, or
        // a longer one of an earlier run whose tokens may still be alive.
        let longest_lifetime = store
            .record_token_lifetime(config.tokens.max_ttl.as_secs(), clock.unix_now())
            .await?;
        // Entries older than that (plus leeway) revoke nothing alive.
        let horizon = longest_lifetime + crate::attest::LEEWAY_SECS;
        let keys = open_keys(&config, store.clone(), clock.clone(), horizon).await?;
        let replica_id = config
            .server
            .replica_id
            .clone()
            .unwrap_or_else(default_replica_id);
        let kill_switch = Arc::new(
            KillSwitch::load(
                store.clone(),
                clock.clone(),
                horizon,
                replica_id.clone(),
                config.store.max_staleness,
            )
            .await?,
        );
        kill_switch.catch_up().await?;
        kill_switch.spawn_compaction();
        let attest = Arc::new(
            Registry::from_config(&config, clock.clone())
                .await?
                .for_broker(&issuer),
        );
        attest.spawn_refresh();
        let policy_dir = config.policy.dir.clone();
        let policy = Arc::new(
            tokio::task::spawn_blocking(move || PolicyEngine::load(&policy_dir))
                .await
                .map_err(|e| StartError::Tls(format!("policy loader panicked: {e}")))??,
        );
        let metrics = Arc::new(Metrics::new());
        {
            let metrics = metrics.clone();
            kill_switch.spawn_follow(move |ok| metrics.kill_switch_read(ok));
        }
        {
            let metrics = metrics.clone();
            crate::policy::spawn_watcher(
                policy.clone(),
                config.policy.reload_interval,
                move |ok| metrics.policy_reload(ok),
            );
        }
        let (audit, audit_writer) = if crate::store::is_postgres(&config.store.url) {
            let (sink, head) =
                crate::store::PostgresAuditSink::open(&config.store.url, &replica_id).await?;
            AuditLog::start(sink, head)
        } else {
            AuditLog::open(&config.audit.path).await?
        };
        let seen_proofs = ReplayCache::new(config.tokens.dpop_replay_cache);
        let dpop_replay = Arc::new(match store.clone().shared_proofs() {
            Some(shared) => ProofReplay::shared(seen_proofs, shared),
            None => ProofReplay::local(seen_proofs),
        });
        dpop_replay.spawn_sweep(clock.clone());
        let admin_token_digests = config
            .admin
            .token_sha256
            .iter()
            .filter_map(|h| hex::decode(h).ok()?.try_into().ok())
            .collect();
        let state = Arc::new(AppState {
            minter: Minter::new(keys.clone(), issuer.clone()),
            verifier: TokenVerifier::new(keys.clone(), issuer.clone(), clock.clone())
                .max_lifetime(longest_lifetime),
            issuer: issuer.clone(),
            attest,
            policy: policy.clone(),
            keys,
            kill_switch,
            audit,
            metrics,
            store,
            clock,
            admin_token_digests,
            dpop_replay: dpop_replay.clone(),
            self_revocations: rate::RateLimit::new(SELF_REVOCATIONS_PER_MINUTE, 60),
            rate_limits: crate::grant::RateLimits::new(
                config.limits.per_principal,
                config.limits.per_target,
            ),
            config,
        });
        tracing::info!(
            %addr,
            %issuer,
            replica = %replica_id,
            policies = policy.snapshot().policy_count(),
            issuers = state.attest.len(),
            "writ is serving"
        );
        let app = routes::router(state.clone());
        let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
        let limits = state.config.limits.clone();
        let state_socket = state.config.server.unix_socket.clone();
        let kill_switch = state.kill_switch.clone();
        drop(state);
        if let Some(path) = &state_socket {
            let unix = listener::UnixTransport {
                listener: bind_unix(path)?,
            };
            tokio::spawn(listener::serve(
                unix,
                app.clone(),
                limits.clone(),
                shutdown_rx.clone(),
            ));
            tracing::info!(socket = %path.display(), "serving on the Unix socket too (peer-credential attestation)");
        }
        let tls = listener::TlsTransport {
            listener: tcp,
            acceptor: tokio_rustls::TlsAcceptor::from(tls),
            handshake_timeout: limits.handshake_timeout,
        };
        let serve = tokio::spawn(listener::serve(tls, app, limits, shutdown_rx));
        Ok(Running {
            addr,
            issuer,
            shutdown,
            serve,
            audit: audit_writer,
            kill_switch,
        })
    }
}

/// `server.replica_id` when unset: the host name and the process id, so
/// two processes on one host are two replicas.
fn default_replica_id() -> String {
    let uname = rustix::system::uname();
    let host = uname.nodename().to_string_lossy();
    format!("{host}-{}", std::process::id())
}

/// Opens the key ring shared with every replica (decrypting keys with the
/// configured key-encryption key) and starts its refresh.
async fn open_keys(
    config: &Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    retire_after: u64,
) -> Result<Arc<KeyRing>, StartError> {
    let kek = config
        .store
        .key_encryption_key_file
        .as_deref()
        .map(crate::token::Kek::load)
        .transpose()
        .map_err(crate::token::KeyRingError::from)?;
    let settings = crate::token::KeySettings {
        algorithm: config.tokens.algorithm,
        publish_ahead: config.keys.publish_ahead.as_secs(),
        rotate_every: config.keys.rotate_every.as_secs(),
        retire_after,
    };
    let keys = KeyRing::open(store, kek, settings, clock).await?;
    keys.spawn_refresh();
    Ok(keys)
}

/// Binds the Unix socket (replacing a stale one) with mode 0660.
fn bind_unix(path: &std::path::Path) -> Result<tokio::net::UnixListener, StartError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let err = |source: std::io::Error| {
        StartError::Tls(format!("unix socket {}: {source}", path.display()))
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(err(std::io::Error::other("exists and is not a socket")));
        }
        std::fs::remove_file(path).map_err(err)?;
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(err)?;
    Ok(listener)
}

impl AppState {
    /// The parts the grant reads, borrowed for one token request.
    pub(crate) fn grant_context(&self) -> crate::grant::Context<'_> {
        crate::grant::Context {
            settings: crate::grant::Settings::new(&self.issuer, &self.config),
            attest: &self.attest,
            verifier: &self.verifier,
            revocations: self.kill_switch.index(),
            freshness: self.kill_switch.staleness(),
            policy: &self.policy,
            minter: &self.minter,
            dpop_replay: &self.dpop_replay,
            clock: &*self.clock,
            metrics: &self.metrics,
            approvals: &*self.store,
            limits: &self.rate_limits,
        }
    }

    /// A deny record for one request at `now` from `peer`, to be filled in
    /// as the request is decided; or, with no decision id to be had, the 503
    /// that refuses the request before anything is done.
    pub(crate) fn audit_record(
        &self,
        action: &'static str,
        now: u64,
        peer: &Peer,
    ) -> Result<crate::audit::AuditRecord, ApiError> {
        Ok(crate::audit::AuditRecord::new(
            action,
            error::new_decision_id()?,
            crate::clock::rfc3339(now),
            peer.addr.ip().to_string(),
        ))
    }
}

/// Renders a handler's outcome and audits it: `allow` on success; on a
/// refusal, its RFC 6749 error with the record's `decision_id`, and its
/// code and reason in the record. Every answer carries `no-store`.
pub(crate) async fn respond(
    app: &AppState,
    record: crate::audit::AuditRecord,
    outcome: Result<axum::response::Response, Refusal>,
) -> axum::response::Response {
    respond_sampled(app, record, outcome, true).await
}

/// [`respond`], writing the audit record only when `audit` (a rate-limit
/// refusal is audited once per key and second; the rest are only counted).
pub(crate) async fn respond_sampled(
    app: &AppState,
    mut record: crate::audit::AuditRecord,
    outcome: Result<axum::response::Response, Refusal>,
    audit: bool,
) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    use axum::response::IntoResponse;
    let mut response = match outcome {
        Ok(response) => {
            record.decision = "allow";
            response
        }
        Err(refusal) => {
            if audit {
                tracing::info!(
                    action = record.action,
                    decision_id = %record.decision_id,
                    error = refusal.code(),
                    reason = %error::escape_controls(&refusal.description()),
                    principal = %error::escape_controls(record.principal.as_deref().unwrap_or("-")),
                    "request refused"
                );
            }
            record.error = Some(refusal.code());
            record.reason = Some(refusal.description());
            ApiError::new(refusal, record.decision_id.clone()).into_response()
        }
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if audit {
        app.audit.record(record).await;
    }
    response
}

impl Running {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `iss` of minted tokens (and the base of every endpoint URL).
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Stops accepting, lets connections finish briefly, flushes the audit log.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.kill_switch.leave().await;
        let _ = self.serve.await;
        // Connections still open keep a sender alive; do not wait for them forever.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.audit.finish()).await;
    }

    /// Serves until SIGINT or SIGTERM, then shuts down cleanly.
    pub async fn until_signalled(self) {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => {}
        }
        tracing::info!("shutting down");
        self.shutdown().await;
    }
}
