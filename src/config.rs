//! `writ.toml`: every key has a default, durations are written like `"5m"`,
//! unknown keys are an error, and relative paths are resolved from the
//! directory holding the file. Without a file writ runs in dev mode
//! ([`Config::dev`], which the CLI defines in `cli/dev.rs` beside the rest of
//! the dev material), trusting only the dev material under `certs/`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::model::{EntityType, Rate};

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or names an unknown key.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the key and line.
        message: String,
    },
    /// A value is well-formed but unusable.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct Config {
    /// Listener and identity of this broker.
    pub server: ServerConfig,
    /// Server certificate and optional client CA.
    pub tls: TlsConfig,
    /// Durable state.
    pub store: StoreConfig,
    /// Minted-token settings.
    pub tokens: TokensConfig,
    /// Where policies live.
    pub policy: PolicyConfig,
    /// The decision log.
    pub audit: AuditConfig,
    /// Kill-switch operators.
    pub admin: AdminConfig,
    /// Trusted attestation issuers.
    pub issuers: Vec<IssuerConfig>,
    /// Request limits.
    pub limits: LimitsConfig,
    /// The signing-key lifecycle.
    pub keys: KeysConfig,
    /// Grants waiting for a person's approval.
    pub approvals: ApprovalsConfig,
    /// True when no file was given: dev certificates and the dev issuer are trusted.
    #[serde(skip)]
    pub dev_mode: bool,
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// HTTPS listen address.
    pub listen: SocketAddr,
    /// `iss` of minted tokens; defaults to `https://<bound address>`.
    pub issuer: Option<String>,
    /// Optional Unix socket: the same API, callers attested by peer credentials.
    pub unix_socket: Option<PathBuf>,
    /// SPIFFE trust domain for unix and mtls principals.
    pub trust_domain: String,
    /// This replica's name among those sharing a store (heartbeats, the
    /// audit chain); defaults to the host name and pid, unique per process.
    pub replica_id: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            issuer: None,
            unix_socket: None,
            trust_domain: "writ.local".into(),
            replica_id: None,
        }
    }
}

/// `[tls]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA for client certificates; enables mTLS attestation.
    pub client_ca: Option<PathBuf>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert: "certs/server.pem".into(),
            key: "certs/server-key.pem".into(),
            client_ca: None,
        }
    }
}

/// `[store]`
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://path` (relative to the config directory), or
    /// `postgres://user[:password]@host/db` (`postgresql://` too; TLS with
    /// `?sslmode=verify-full`, through rustls and ring).
    pub url: String,
    /// Connections a PostgreSQL store opens at most, per replica.
    pub max_connections: u32,
    /// How long the admin's answer to a new kill-switch entry waits for
    /// every live replica to apply it.
    #[serde(deserialize_with = "humantime_serde::deserialize")]
    pub propagation_wait: Duration,
    /// A replica whose view of the kill switch is older than this mints
    /// nothing and is not ready: it fails closed.
    #[serde(deserialize_with = "humantime_serde::deserialize")]
    pub max_staleness: Duration,
    /// A file of 32 random bytes (raw or 64 hex characters, mode 0600 or
    /// stricter): private signing keys are stored encrypted under it
    /// (AES-256-GCM). Production should set it.
    pub key_encryption_key_file: Option<PathBuf>,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A PostgreSQL URL may carry a password: never print it.
        f.debug_struct("StoreConfig")
            .field("url", &without_password(&self.url))
            .field("max_connections", &self.max_connections)
            .field("propagation_wait", &self.propagation_wait)
            .field("max_staleness", &self.max_staleness)
            .field("key_encryption_key_file", &self.key_encryption_key_file)
            .finish()
    }
}

/// `url` with the password of its userinfo, if any, replaced by `***`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://writ.db".into(),
            max_connections: 8,
            propagation_wait: Duration::from_secs(1),
            max_staleness: Duration::from_secs(5),
            key_encryption_key_file: None,
        }
    }
}

/// `[keys]`: the signing-key lifecycle.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// How long a rotated key is published before it signs, so verifiers
    /// that cache the JWKS never meet an unknown `kid`.
    #[serde(deserialize_with = "humantime_serde::deserialize")]
    pub publish_ahead: Duration,
    /// How often keys rotate on their own (`"0s"`: never).
    #[serde(deserialize_with = "humantime_serde::deserialize")]
    pub rotate_every: Duration,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            publish_ahead: Duration::from_secs(60),
            rotate_every: Duration::from_secs(24 * 3600),
        }
    }
}

/// Signing algorithm for minted tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
pub enum SigningAlgorithm {
    /// ECDSA P-256 with SHA-256.
    #[default]
    ES256,
    /// Ed25519.
    EdDSA,
}

impl SigningAlgorithm {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }
}

/// `[tokens]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokensConfig {
    /// Signing algorithm.
    pub algorithm: SigningAlgorithm,
    /// Lifetime when the request names none.
    #[serde(deserialize_with = "humantime_serde::deserialize")]
    pub default_ttl: Duration,
    /// No token lives longer.
    #[serde(deserialize_with = "humantime_serde::deserialize")]
    pub max_ttl: Duration,
    /// How many DPoP proof `jti`s are remembered to refuse replays.
    pub dpop_replay_cache: u64,
    /// How many agents may stand between a token's subject and its holder
    /// (the length of the `act` chain).
    pub max_delegation_depth: u32,
    /// The longest a transaction token lives (CONTRACT section 9): it
    /// spans one call chain, so about a minute (and never past `max_ttl`).
    #[serde(deserialize_with = "humantime_serde::deserialize")]
    pub txn_ttl: Duration,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            algorithm: SigningAlgorithm::ES256,
            default_ttl: Duration::from_secs(300),
            max_ttl: Duration::from_secs(900),
            dpop_replay_cache: 1_000_000,
            max_delegation_depth: 3,
            txn_ttl: Duration::from_secs(60),
        }
    }
}

/// `[approvals]` (CONTRACT section 10)
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsConfig {
    /// How long a grant waits for approval, and then how long the approved
    /// grant may be redeemed by one retry.
    #[serde(deserialize_with = "humantime_serde::deserialize")]
    pub ttl: Duration,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(600),
        }
    }
}

/// `[policy]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Directory with `schema.cedarschema`, `*.cedar`, `entities.json`.
    pub dir: PathBuf,
    /// How often the directory is checked for changes.
    #[serde(deserialize_with = "humantime_serde::deserialize")]
    pub reload_interval: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            dir: "policies".into(),
            reload_interval: Duration::from_secs(1),
        }
    }
}

/// `[audit]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// JSON-lines decision log.
    pub path: PathBuf,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            path: "audit.jsonl".into(),
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Hex SHA-256 digests of admin bearer tokens.
    pub token_sha256: Vec<String>,
    /// Admin mTLS identities (SPIFFE IDs).
    pub principals: Vec<String>,
}

/// The most `limits.max_concurrent_requests` may be: a bound on work in
/// flight, far above what one broker can serve, and within what a semaphore
/// can count.
pub const MAX_CONCURRENT_REQUESTS: usize = 1 << 20;

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Requests in flight before new ones get 503: on the client endpoints
    /// (token, introspection, revocation, discovery), and separately on the
    /// operators' (revocation feed, admin API, health).
    pub max_concurrent_requests: usize,
    /// Open connections beyond which new ones wait in the listen backlog.
    pub max_connections: usize,
    /// A client that has not sent a complete request head within this is
    /// disconnected (covers idle keep-alive connections too).
    #[serde(deserialize_with = "humantime_serde::deserialize")]
    pub header_read_timeout: Duration,
    /// A request still running after this gets 503.
    #[serde(deserialize_with = "humantime_serde::deserialize")]
    pub request_timeout: Duration,
    /// A TLS handshake still running after this is dropped.
    #[serde(deserialize_with = "humantime_serde::deserialize")]
    pub handshake_timeout: Duration,
    /// Token requests one principal may make (e.g. `"50/s"`); none by default.
    pub per_principal: Option<Rate>,
    /// Token requests for one target (e.g. `"600/m"`); none by default.
    pub per_target: Option<Rate>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_concurrent_requests: 4096,
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            per_principal: None,
            per_target: None,
        }
    }
}

/// What an issuer's tokens prove.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IssuerKind {
    /// Kubernetes projected service-account tokens.
    Kubernetes,
    /// Any OIDC token.
    Oidc,
    /// An enterprise IdP's Identity Assertion JWT Authorization Grants
    /// (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`): the user
    /// is the subject, the client it names the agent acting for them.
    #[serde(rename = "id-jag")]
    IdJag,
}

/// `[[issuers]]`: one trusted attestation issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// A name for logs and metrics.
    pub name: String,
    /// What its tokens prove.
    pub kind: IssuerKind,
    /// The exact `iss` of its tokens.
    pub issuer: String,
    /// JWKS over HTTPS.
    pub jwks_uri: Option<String>,
    /// JWKS from a file.
    pub jwks_file: Option<PathBuf>,
    /// Extra PEM root to trust when fetching `jwks_uri`.
    pub jwks_ca: Option<PathBuf>,
    /// How often `jwks_uri` is refetched in the background.
    #[serde(
        default = "default_jwks_refresh",
        deserialize_with = "humantime_serde::deserialize"
    )]
    pub jwks_refresh: Duration,
    /// The `aud` its tokens must carry.
    pub audience: String,
    /// SPIFFE trust domain this issuer owns: kubernetes principals are
    /// minted in it (default `cluster.local`); an oidc issuer may name
    /// SPIFFE ids only inside its own.
    #[serde(default)]
    pub trust_domain: Option<String>,
    /// Cedar type of its principals (oidc only; kubernetes is always Workload).
    #[serde(default)]
    pub entity_type: EntityType,
    /// Principal id template over top-level string claims (oidc only).
    #[serde(default = "default_subject")]
    pub subject: String,
}

impl IssuerConfig {
    /// The SPIFFE trust domain this issuer's principals live in, if any.
    pub fn spiffe_trust_domain(&self) -> Option<&str> {
        match (self.kind, self.trust_domain.as_deref()) {
            (IssuerKind::Kubernetes, None) => Some("cluster.local"),
            (_, td) => td,
        }
    }
}

/// How often a `jwks_uri` is refetched unless the issuer says otherwise.
pub(crate) fn default_jwks_refresh() -> Duration {
    Duration::from_secs(300)
}
/// The principal id template unless the issuer says otherwise.
pub(crate) fn default_subject() -> String {
    "{sub}".into()
}

/// The issuer name of the dev attestation issuer.
pub const DEV_ISSUER: &str = "https://dev.writ.local";
/// The audience dev service-account tokens carry.
pub const DEV_AUDIENCE: &str = "writ";
/// Where dev material lives, relative to the working directory.
pub const DEV_CERTS_DIR: &str = "certs";

impl Config {
    /// Loads a file and resolves its relative paths from its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text; the error names the offending key and line.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))
    }

    fn resolve_paths(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        join(&mut self.tls.cert);
        join(&mut self.tls.key);
        if let Some(ca) = self.tls.client_ca.as_mut() {
            join(ca);
        }
        join(&mut self.policy.dir);
        join(&mut self.audit.path);
        if let Some(kek) = self.store.key_encryption_key_file.as_mut() {
            join(kek);
        }
        if let Some(sock) = self.server.unix_socket.as_mut() {
            join(sock);
        }
        for issuer in &mut self.issuers {
            if let Some(f) = issuer.jwks_file.as_mut() {
                join(f);
            }
            if let Some(f) = issuer.jwks_ca.as_mut() {
                join(f);
            }
        }
        if let Some(rest) = self.store.url.strip_prefix("sqlite://") {
            let p = Path::new(rest.split('?').next().unwrap_or(rest));
            if p.is_relative() && rest != ":memory:" {
                self.store.url = format!("sqlite://{}", base.join(rest).display());
            }
        }
    }

    /// Checks what serde cannot: consistent values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if !self.admin.principals.is_empty() && self.tls.client_ca.is_none() {
            return bad("admin.principals are mTLS identities: set tls.client_ca too".into());
        }
        if let Some(p) = self
            .admin
            .principals
            .iter()
            .find(|p| !p.starts_with("spiffe://"))
        {
            return bad(format!("admin.principals: {p:?} is not a SPIFFE ID"));
        }
        if self.server.issuer.is_none() && self.server.listen.ip().is_unspecified() {
            return bad(format!(
                "server.listen is {}: set server.issuer to the URL clients use",
                self.server.listen
            ));
        }
        // Each issuer owns its SPIFFE trust domain, so two issuers can never
        // produce the same principal id. The one exception is deliberate: a
        // Kubernetes cluster may share server.trust_domain, so a workload's
        // X.509-SVID and its service-account token are one principal.
        let mut owners: Vec<(&str, &str)> = Vec::new();
        if !self.issuers.iter().any(|i| {
            i.kind == IssuerKind::Kubernetes
                && i.spiffe_trust_domain() == Some(self.server.trust_domain.as_str())
        }) {
            owners.push((self.server.trust_domain.as_str(), "server.trust_domain"));
        }
        for issuer in &self.issuers {
            if let Some(td) = issuer.spiffe_trust_domain() {
                if let Some((_, other)) = owners.iter().find(|(t, _)| *t == td) {
                    return bad(format!(
                        "issuer {}: trust domain {td:?} is already used by {other}; give each issuer its own",
                        issuer.name
                    ));
                }
                owners.push((td, issuer.name.as_str()));
            }
        }
        // A view refreshed every FOLLOW_POLL is never older than a second
        // when healthy: a shorter limit would refuse on ordinary jitter.
        if self.store.max_staleness < Duration::from_secs(1) {
            return bad("store.max_staleness must be at least 1s".into());
        }
        if self
            .server
            .replica_id
            .as_deref()
            .is_some_and(|id| id.is_empty() || id.len() > 128 || id.chars().any(char::is_control))
        {
            return bad("server.replica_id must be 1 to 128 printable characters".into());
        }
        if self.tokens.max_ttl.as_secs() == 0 || self.tokens.default_ttl.as_secs() == 0 {
            return bad("tokens.default_ttl and tokens.max_ttl must be at least 1s".into());
        }
        if !(1..=MAX_CONCURRENT_REQUESTS).contains(&self.limits.max_concurrent_requests) {
            return bad(format!(
                "limits.max_concurrent_requests must be 1 to {MAX_CONCURRENT_REQUESTS}"
            ));
        }
        if self.limits.request_timeout.is_zero() {
            return bad("limits.request_timeout must be more than 0s".into());
        }
        if self.approvals.ttl.as_secs() == 0 {
            return bad("approvals.ttl must be at least 1s".into());
        }
        if self.tokens.txn_ttl.as_secs() == 0 {
            return bad("tokens.txn_ttl must be at least 1s".into());
        }
        for digest in &self.admin.token_sha256 {
            if digest.len() != 64 || hex::decode(digest).is_err() {
                return bad("admin.token_sha256 entries must be 64 hex digits".into());
            }
        }
        for (i, issuer) in self.issuers.iter().enumerate() {
            let at = format!("issuers[{i}] ({})", issuer.name);
            match (&issuer.jwks_uri, &issuer.jwks_file) {
                (Some(_), Some(_)) | (None, None) => {
                    return bad(format!("{at}: set exactly one of jwks_uri and jwks_file"));
                }
                (Some(uri), None) if !uri.starts_with("https://") => {
                    return bad(format!("{at}: jwks_uri must be https"));
                }
                _ => {}
            }
            // An IdP may be trusted both for ID tokens (oidc) and for ID-JAGs:
            // the two are told apart by grant, never by guessing.
            let id_jag = issuer.kind == IssuerKind::IdJag;
            if self.issuers[..i]
                .iter()
                .any(|o| o.issuer == issuer.issuer && (o.kind == IssuerKind::IdJag) == id_jag)
            {
                return bad(format!(
                    "{at}: issuer {:?} is configured twice",
                    issuer.issuer
                ));
            }
            if issuer.kind == IssuerKind::Kubernetes && issuer.entity_type != EntityType::Workload {
                return bad(format!("{at}: kubernetes principals are always Workload"));
            }
            if id_jag
                && let Some(own) = &self.server.issuer
                && issuer.audience != *own
            {
                return bad(format!(
                    "{at}: an id-jag issuer's audience must be server.issuer ({own})"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_password_never_reaches_debug_output() {
        let store = StoreConfig {
            url: "postgres://writ:s3cret@db.internal:5432/writ".into(),
            ..StoreConfig::default()
        };
        let shown = format!("{store:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("postgres://writ:***@db.internal:5432/writ"),
            "{shown}"
        );
        assert_eq!(without_password("sqlite://writ.db"), "sqlite://writ.db");
        assert_eq!(
            without_password("postgres://postgres@127.0.0.1/writ"),
            "postgres://postgres@127.0.0.1/writ"
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("[server]\nlisten = \"127.0.0.1:1\"\nbogus = 1\n").unwrap_err();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn durations_parse_like_5m() {
        let c = Config::parse("[tokens]\ndefault_ttl = \"2m\"\nmax_ttl = \"1h\"\n").unwrap();
        assert_eq!(c.tokens.default_ttl, Duration::from_secs(120));
        assert_eq!(c.tokens.max_ttl, Duration::from_secs(3600));
        let c = Config::parse("[[issuers]]\nname='a'\nkind='oidc'\nissuer='https://a'\naudience='writ'\njwks_file='a'\njwks_refresh='90s'\n").unwrap();
        assert_eq!(c.issuers[0].jwks_refresh, Duration::from_secs(90));
    }

    #[test]
    fn limits_that_would_refuse_every_request_are_refused() {
        for (limits, named) in [
            (
                "max_concurrent_requests = 0",
                "limits.max_concurrent_requests",
            ),
            (
                "max_concurrent_requests = 1048577",
                "limits.max_concurrent_requests",
            ),
            ("request_timeout = \"0s\"", "limits.request_timeout"),
        ] {
            let config = Config::parse(&format!("[limits]\n{limits}\n")).unwrap();
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(named), "{limits}: {err}");
        }
        let config = Config::parse("[limits]\nmax_concurrent_requests = 1048576\n").unwrap();
        config.validate().unwrap();
    }

    #[test]
    fn a_bad_duration_is_named_with_its_key() {
        for text in [
            "[limits]\nrequest_timeout = \"10 parsecs\"\n",
            "[limits]\nrequest_timeout = 10\n",
        ] {
            let err = Config::parse(text).unwrap_err();
            assert!(
                err.contains("request_timeout") && err.contains("expected a duration"),
                "{err}"
            );
        }
    }

    #[test]
    fn two_issuers_may_not_share_a_trust_domain() {
        let c = Config::parse(
            "[[issuers]]\nname='a'\nkind='kubernetes'\nissuer='https://a'\naudience='writ'\njwks_file='a'\n\
             [[issuers]]\nname='b'\nkind='kubernetes'\nissuer='https://b'\naudience='writ'\njwks_file='b'\n",
        )
        .unwrap();
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("cluster.local"), "{err}");
    }

    #[test]
    fn a_cluster_may_share_the_servers_trust_domain_but_an_oidc_issuer_may_not() {
        let k8s = "[server]\ntrust_domain='cluster.local'\n[[issuers]]\nname='a'\nkind='kubernetes'\nissuer='https://a'\naudience='writ'\njwks_file='a'\n";
        assert!(Config::parse(k8s).unwrap().validate().is_ok());
        let oidc = "[server]\ntrust_domain='ci.example'\n[[issuers]]\nname='ci'\nkind='oidc'\nissuer='https://ci'\naudience='writ'\njwks_file='a'\ntrust_domain='ci.example'\n";
        let err = Config::parse(oidc)
            .unwrap()
            .validate()
            .unwrap_err()
            .to_string();
        assert!(err.contains("already used by server.trust_domain"), "{err}");
    }

    #[test]
    fn inconsistent_keys_are_refused() {
        let c = Config::parse("[admin]\nprincipals = ['spiffe://writ.local/ops']\n").unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("tls.client_ca")
        );
        let c = Config::parse("[server]\nlisten = '0.0.0.0:8443'\n").unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("server.issuer")
        );
    }

    #[test]
    fn issuer_needs_exactly_one_jwks_source() {
        let mut c = Config::parse(
            "[[issuers]]\nname='a'\nkind='oidc'\nissuer='https://a'\naudience='writ'\n",
        )
        .unwrap();
        assert!(c.validate().is_err());
        c.issuers[0].jwks_file = Some("x".into());
        assert!(c.validate().is_ok());
    }
}
