//! Shared setup for the benches: a scratch directory with dev material and
//! policies, and the broker's parts built from the public API, through which
//! [`Pipeline`] runs the very `writ::grant` the token endpoint runs.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use writ::attest::dpop::{ProofReplay, ReplayCache};
use writ::attest::{Peer, Registry};
use writ::audit::Metrics;
use writ::certs::{self, DevIssuer};
use writ::clock::{Clock, SystemClock};
use writ::config::Config;
use writ::grant::{self, Context, Form, Settings, TOKEN_EXCHANGE, TYPE_JWT};
use writ::model::{Scopes, TargetId};
use writ::policy::PolicyEngine;
use writ::revoke::{Freshness, RevocationIndex};
use writ::token::{KeyRing, KeySettings, Minter, TokenVerifier};

/// The `iss` of the in-process broker.
pub const BROKER: &str = "https://127.0.0.1:8443";

/// Everything the in-process pipeline needs: the parts a server builds at
/// start, built the same way from the dev configuration.
pub struct Pipeline {
    pub _dir: tempfile::TempDir,
    pub config: Config,
    pub registry: Registry,
    pub policy: PolicyEngine,
    pub minter: Minter,
    pub verifier: TokenVerifier,
    /// An empty kill switch index (what a broker without entries checks).
    pub revocations: RevocationIndex,
    /// A view that never goes stale: one process, nothing to follow.
    pub freshness: Freshness,
    pub dpop_replay: ProofReplay,
    pub metrics: Metrics,
    /// No rate limits (the default configuration).
    pub limits: writ::grant::RateLimits,
    pub clock: Arc<dyn Clock>,
    /// The scratch store (keys, approvals).
    pub store: Arc<dyn writ::store::Store>,
    /// A caller on loopback without a client certificate.
    pub peer: Peer,
    pub issuer: DevIssuer,
    pub target: TargetId,
    pub scopes: Scopes,
}

pub fn config_for(dir: &Path) -> Config {
    let mut config = Config::dev();
    for issuer in &mut config.issuers {
        issuer.jwks_file = Some(dir.join("certs").join(certs::DEV_ISSUER_JWKS));
    }
    config
}

impl Pipeline {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        certs::init(&dir.path().join("certs")).unwrap();
        writ::policy::write_examples(&dir.path().join("policies")).unwrap();
        let config = config_for(dir.path());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let registry = Registry::from_config(&config, clock.clone())
            .await
            .unwrap()
            .for_broker(BROKER);
        let policy = PolicyEngine::load(&dir.path().join("policies")).unwrap();
        let store_url = format!("sqlite://{}", dir.path().join("writ.db").display());
        let store = writ::store::open(&store_url).await.unwrap();
        let max_ttl = config.tokens.max_ttl.as_secs();
        let settings = KeySettings {
            algorithm: config.tokens.algorithm,
            publish_ahead: config.keys.publish_ahead.as_secs(),
            rotate_every: config.keys.rotate_every.as_secs(),
            retire_after: max_ttl + 60,
        };
        let keys = KeyRing::open(store.clone(), None, settings, clock.clone())
            .await
            .unwrap();
        let minter = Minter::new(keys.clone(), BROKER);
        let verifier = TokenVerifier::new(keys, BROKER, clock.clone()).max_lifetime(max_ttl);
        let issuer = DevIssuer::load(&dir.path().join("certs")).unwrap();
        Self {
            _dir: dir,
            registry,
            policy,
            minter,
            verifier,
            revocations: RevocationIndex::new(),
            freshness: Freshness::new(std::time::Duration::MAX),
            dpop_replay: ProofReplay::local(ReplayCache::new(config.tokens.dpop_replay_cache)),
            metrics: Metrics::new(),
            limits: writ::grant::RateLimits::default(),
            clock,
            store,
            peer: Peer {
                addr: ([127, 0, 0, 1], 40_000).into(),
                client: None,
                unix: None,
            },
            issuer,
            target: TargetId::new("payments-db").unwrap(),
            scopes: Scopes::parse("read").unwrap(),
            config,
        }
    }

    pub fn sa_token(&self, account: &str) -> String {
        self.issuer
            .service_account_token("payments", account, SystemClock.unix_now(), 3600)
            .unwrap()
    }

    /// The form body of an exchange of `subject_token` for `payments-db`
    /// with scope `read`, as a client posts it.
    pub fn request(&self, subject_token: &str) -> Vec<u8> {
        serde_urlencoded::to_string([
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token_type", TYPE_JWT),
            ("subject_token", subject_token),
            ("audience", self.target.as_str()),
            ("scope", "read"),
        ])
        .unwrap()
        .into_bytes()
    }

    /// The form body of a transaction token request from `subject_token`
    /// for the dev trust domain, purpose `checkout`.
    pub fn txn_request(&self, subject_token: &str) -> Vec<u8> {
        serde_urlencoded::to_string([
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token_type", TYPE_JWT),
            ("subject_token", subject_token),
            ("requested_token_type", writ::grant::TYPE_TXN_TOKEN),
            ("audience", self.config.server.trust_domain.as_str()),
            ("scope", "checkout"),
        ])
        .unwrap()
        .into_bytes()
    }

    /// The token endpoint's work for one request body: parse the form,
    /// then `grant` (attest, cached after the first call for the same
    /// token; kill switch; decide; lifetime and binding; mint; kill switch
    /// again). Returns the access token.
    pub async fn run(&self, body: &[u8]) -> String {
        self.run_checked(body, None).await
    }

    /// Like [`Pipeline::run`], with the kill switch's index `index` instead
    /// of the empty one.
    pub async fn run_checked(&self, body: &[u8], index: Option<&RevocationIndex>) -> String {
        let ctx = Context {
            settings: Settings::new(BROKER, &self.config),
            attest: &self.registry,
            verifier: &self.verifier,
            revocations: index.unwrap_or(&self.revocations),
            freshness: &self.freshness,
            policy: &self.policy,
            minter: &self.minter,
            dpop_replay: &self.dpop_replay,
            clock: &*self.clock,
            metrics: &self.metrics,
            approvals: &*self.store,
            limits: &self.limits,
        };
        let form = Form::parse(body).unwrap();
        let headers = http::HeaderMap::new();
        let now = self.clock.unix_now();
        match grant::grant(&ctx, &form, &self.peer, &headers, now).await {
            Ok(granted) => granted.minted.token,
            Err(refused) => panic!("the bench request was refused: {:?}", refused.refusal),
        }
    }
}

/// A policy directory with `n` policies spread over `targets` targets (plus
/// `payments-db`): slicing leaves a decision about n/targets of them.
pub fn policy_dir_spread(n: usize, targets: usize) -> tempfile::TempDir {
    let dir = policy_dir_with(n / targets);
    let mut text = String::new();
    let mut entities: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("entities.json")).unwrap())
            .unwrap();
    for t in 0..targets {
        entities.push(serde_json::json!({"uid": {"type": "Target", "id": format!("db{t}")}, "attrs": {}, "parents": []}));
        for i in 0..(n / targets) {
            text.push_str(&format!(
                "permit (principal is Workload, action == Action::\"mint\", resource == Target::\"db{t}\") \
                 when {{ principal has namespace && principal.namespace == \"ns{i}\" && context.scope == \"read\" }};\n"
            ));
        }
    }
    std::fs::write(dir.path().join("spread.cedar"), text).unwrap();
    std::fs::write(
        dir.path().join("entities.json"),
        serde_json::to_string(&entities).unwrap(),
    )
    .unwrap();
    dir
}

/// A policy directory with `n` policies on one target, none of which can be
/// sliced away: the worst case for a decision.
pub fn policy_dir_with(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    writ::policy::write_examples(dir.path()).unwrap();
    for (name, _) in writ::policy::EXAMPLES {
        if name.ends_with(".cedar") {
            std::fs::remove_file(dir.path().join(name)).unwrap();
        }
    }
    let mut text = String::new();
    for i in 0..n.saturating_sub(1) {
        text.push_str(&format!(
            "permit (principal is Workload, action == Action::\"mint\", resource == Target::\"payments-db\") \
             when {{ principal has namespace && principal.namespace == \"ns{i}\" && context.scope == \"read\" }};\n"
        ));
    }
    text.push_str(
        "permit (principal in Team::\"payments\", action == Action::\"mint\", resource == Target::\"payments-db\") \
         when { context.scope == \"read\" };\n",
    );
    std::fs::write(dir.path().join("generated.cedar"), text).unwrap();
    dir
}

/// The token-exchange form every HTTPS bench sends: a dev service-account
/// token of `payments/*` for `payments-db` with scope `read`.
pub fn exchange_form(subject_token: &str) -> [(&'static str, &str); 5] {
    [
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ("subject_token", subject_token),
        ("audience", "payments-db"),
        ("scope", "read"),
    ]
}

/// The store of a live broker: a scratch SQLite file, or with
/// `WRIT_BENCH_STORE=postgres` the database `writ_bench` on 127.0.0.1:5432,
/// dropped and created afresh.
pub async fn bench_store_url(dir: &Path) -> String {
    use sqlx::Connection;
    if std::env::var("WRIT_BENCH_STORE").as_deref() != Ok("postgres") {
        return format!("sqlite://{}", dir.join("writ.db").display());
    }
    let server = "postgres://postgres@127.0.0.1:5432";
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .expect("WRIT_BENCH_STORE=postgres needs PostgreSQL on 127.0.0.1:5432 (user postgres)");
    for sql in [
        "DROP DATABASE IF EXISTS writ_bench WITH (FORCE)",
        "CREATE DATABASE writ_bench",
    ] {
        sqlx::query(sql).execute(&mut admin).await.unwrap();
    }
    format!("{server}/writ_bench")
}

/// A real broker on an ephemeral loopback port (dev material, example
/// policies, a scratch store) and what a client needs to reach it.
pub struct LiveBroker {
    pub _dir: tempfile::TempDir,
    pub running: writ::server::Running,
    pub base: String,
    pub admin_token: String,
    pub ca_pem: Vec<u8>,
    pub issuer: DevIssuer,
}

impl LiveBroker {
    pub async fn start() -> Self {
        Self::start_with_client_ca(false).await
    }

    /// With `client_ca`, the dev CA also signs client certificates (mTLS
    /// attestation), and a policy lets mTLS callers read `payments-db`.
    pub async fn start_with_client_ca(client_ca: bool) -> Self {
        Self::start_on(client_ca, None).await
    }

    /// A broker on `store_url` (several are replicas of one broker when
    /// they share a PostgreSQL database), or on [`bench_store_url`].
    pub async fn start_on(client_ca: bool, store_url: Option<String>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let certs_dir = dir.path().join("certs");
        certs::init(&certs_dir).unwrap();
        writ::policy::write_examples(&dir.path().join("policies")).unwrap();
        let mut config = config_for(dir.path());
        config.server.listen = ([127, 0, 0, 1], 0).into();
        config.tls.cert = certs_dir.join(certs::SERVER_CERT);
        config.tls.key = certs_dir.join(certs::SERVER_KEY);
        config.store.url = match store_url {
            Some(url) => url,
            None => bench_store_url(dir.path()).await,
        };
        config.policy.dir = dir.path().join("policies");
        config.audit.path = dir.path().join("audit.jsonl");
        if client_ca {
            config.tls.client_ca = Some(certs_dir.join(certs::CA_CERT));
            std::fs::write(
                dir.path().join("policies/bench-mtls.cedar"),
                "permit (principal, action == Action::\"mint\", resource == Target::\"payments-db\") \
                 when { context.attestation == \"mtls\" && context.scope == \"read\" };\n",
            )
            .unwrap();
        }
        config
            .admin
            .token_sha256
            .push(certs::dev_admin_token_sha256(&certs_dir).unwrap());
        let admin_token = std::fs::read_to_string(certs_dir.join(certs::DEV_ADMIN_TOKEN))
            .unwrap()
            .trim()
            .to_owned();
        let running = writ::server::Server::new(config, Arc::new(SystemClock))
            .start()
            .await
            .unwrap();
        Self {
            base: running.issuer().to_owned(),
            ca_pem: std::fs::read(certs_dir.join(certs::CA_CERT)).unwrap(),
            issuer: DevIssuer::load(&certs_dir).unwrap(),
            running,
            admin_token,
            _dir: dir,
        }
    }

    /// A client certificate for `spiffe_id`, signed by the dev CA, as PEM (cert + key).
    pub fn client_identity_pem(&self, spiffe_id: &str) -> String {
        let certs_dir = self._dir.path().join("certs");
        let ca_key = rcgen::KeyPair::from_pem(
            &std::fs::read_to_string(certs_dir.join(certs::CA_KEY)).unwrap(),
        )
        .unwrap();
        let ca = rcgen::CertificateParams::from_ca_cert_pem(
            &std::fs::read_to_string(certs_dir.join(certs::CA_CERT)).unwrap(),
        )
        .unwrap()
        .self_signed(&ca_key)
        .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![rcgen::SanType::URI(spiffe_id.try_into().unwrap())];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        format!("{}{}", cert.pem(), key.serialize_pem())
    }

    /// An HTTPS client trusting only the broker's CA.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca_pem).unwrap())
            .tls_built_in_root_certs(false)
            .build()
            .unwrap()
    }

    /// Exchanges a dev service-account token of `payments/<account>` for a
    /// `payments-db` token with scope `read`.
    pub async fn mint(&self, client: &reqwest::Client, account: &str) -> String {
        let sa = self
            .issuer
            .service_account_token("payments", account, SystemClock.unix_now(), 3600)
            .unwrap();
        let resp: serde_json::Value = client
            .post(format!("{}/oauth2/token", self.base))
            .form(&exchange_form(&sa))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        resp["access_token"].as_str().unwrap().to_owned()
    }
}
