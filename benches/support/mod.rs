//! Shared setup for the benches: a scratch directory with dev material and
//! policies, and the pipeline parts built from the public API.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use writ::attest::Registry;
use writ::certs::{self, DevIssuer};
use writ::clock::{Clock, SystemClock};
use writ::config::{Config, SigningAlgorithm};
use writ::model::{Scopes, TargetId, Ttl};
use writ::policy::{DecisionRequest, PolicyEngine};
use writ::revoke::{MintFacts, RevocationIndex};
use writ::token::{MintRequest, Minter, SigningKey};

/// Everything the in-process pipeline needs.
pub struct Pipeline {
    pub _dir: tempfile::TempDir,
    pub registry: Registry,
    pub policy: PolicyEngine,
    pub minter: Minter,
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
        let registry = Registry::from_config(&config_for(dir.path()), Arc::new(SystemClock))
            .await
            .unwrap();
        let policy = PolicyEngine::load(&dir.path().join("policies")).unwrap();
        let (key, _) = SigningKey::generate(SigningAlgorithm::ES256).unwrap();
        let minter = Minter::new(Arc::new(key), "https://127.0.0.1:8443");
        let issuer = DevIssuer::load(&dir.path().join("certs")).unwrap();
        Self {
            _dir: dir,
            registry,
            policy,
            minter,
            issuer,
            target: TargetId::new("payments-db").unwrap(),
            scopes: Scopes::parse("read").unwrap(),
        }
    }

    pub fn sa_token(&self, account: &str) -> String {
        self.issuer
            .service_account_token("payments", account, SystemClock.unix_now(), 3600)
            .unwrap()
    }

    /// Attest (cached after the first call for the same token), decide, mint.
    pub async fn run(&self, subject_token: &str) -> String {
        self.run_checked(subject_token, None).await
    }

    /// Like [`Pipeline::run`], with the kill-switch checks the token endpoint
    /// makes (before deciding, and again after signing) against `index`.
    pub async fn run_checked(
        &self,
        subject_token: &str,
        index: Option<&RevocationIndex>,
    ) -> String {
        let attested = self.registry.attest_jwt(subject_token).await.unwrap();
        let now = SystemClock.unix_now();
        let facts = MintFacts {
            subject: attested.principal.as_str(),
            audience: self.target.as_str(),
            attestation_issuer: Some(writ::config::DEV_ISSUER),
            actors: &[],
            actor_issuers: &[],
        };
        if let Some(index) = index {
            assert!(index.blocked(&facts, now).is_none());
        }
        let decision = self
            .policy
            .decide(&DecisionRequest {
                principal: &attested,
                target: &self.target,
                scopes: &self.scopes,
                requested_ttl: Ttl::from_secs(300).unwrap(),
                now,
                source_ip: IpAddr::from([127, 0, 0, 1]),
                sender_constrained: false,
                delegation_depth: 0,
                actor: None,
            })
            .unwrap();
        let granted = decision.granted();
        assert!(!granted.is_empty());
        let token = self
            .minter
            .mint(MintRequest {
                subject: &attested.principal,
                principal_type: attested.entity_type,
                attestation: attested.kind,
                attestation_issuer: None,
                audience: &self.target,
                scopes: &granted,
                ttl: Ttl::from_secs(300).unwrap(),
                now,
                act: None,
                cnf: None,
                ancestry: Vec::new(),
            })
            .unwrap()
            .token;
        if let Some(index) = index {
            assert!(index.blocked(&facts, SystemClock.unix_now()).is_none());
        }
        token
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
        let dir = tempfile::tempdir().unwrap();
        let certs_dir = dir.path().join("certs");
        certs::init(&certs_dir).unwrap();
        writ::policy::write_examples(&dir.path().join("policies")).unwrap();
        let mut config = config_for(dir.path());
        config.server.listen = ([127, 0, 0, 1], 0).into();
        config.tls.cert = certs_dir.join(certs::SERVER_CERT);
        config.tls.key = certs_dir.join(certs::SERVER_KEY);
        config.store.url = format!("sqlite://{}", dir.path().join("writ.db").display());
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
            .form(&[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                ("subject_token", sa.as_str()),
                ("audience", "payments-db"),
                ("scope", "read"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        resp["access_token"].as_str().unwrap().to_owned()
    }
}
