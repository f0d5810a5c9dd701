//! A test's world in a temp dir: CA and server certificate, issuer JWKS files,
//! the policy directory and writ.toml.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tempfile::TempDir;

use super::http::client;
use super::issuer::{Alg, Issuer, quote, random_hex};
use super::pki::Pki;
use super::policies::{ENTITIES, SCHEMA, STANDARD_POLICIES};
use super::server::Server;
use super::wait::eventually;
use super::{GIT_REF, NAMESPACE, REPOSITORY, SERVICE_ACCOUNT};

/// The knobs of writ.toml the tests turn. Everything else is fixed by [`TestEnv::config_toml`].
#[derive(Clone, Debug)]
pub struct Config {
    /// `server.listen`; unset means `127.0.0.1:0`, a new ephemeral port at
    /// every start. [`TestEnv::pin_listen_address`] sets it.
    pub listen: Option<String>,
    /// `server.issuer`; unset means writ uses its bound address.
    pub issuer: Option<String>,
    /// `tokens.algorithm`: "ES256" or "EdDSA".
    pub algorithm: String,
    pub default_ttl: String,
    pub max_ttl: String,
    /// `policy.reload_interval`.
    pub reload_interval: String,
    /// Raw lines appended to `[server]` (e.g. a misspelled key).
    pub extra_server_lines: Vec<String>,
    /// Write `tls.client_ca` (the env's `client_pki` CA): mTLS callers are attested.
    pub client_ca: bool,
    /// `admin.principals`: mTLS identities that are admins.
    pub admin_principals: Vec<String>,
    /// `server.trust_domain`; unset means `writ.local`.
    pub trust_domain: Option<String>,
    /// Raw lines appended to `[tokens]` (e.g. `dpop_replay_cache = 20`).
    pub extra_tokens_lines: Vec<String>,
    /// `store.url`; unset means `sqlite://writ.db` in the scratch directory.
    pub store_url: Option<String>,
    /// Raw lines appended to `[store]` (e.g. `max_staleness = "2s"`).
    pub extra_store_lines: Vec<String>,
    /// Raw lines of a `[keys]` section (e.g. `publish_ahead = "2s"`).
    pub keys_lines: Vec<String>,
    /// Raw TOML appended after the issuers (e.g. one more `[[issuers]]`).
    pub extra_toml: Vec<String>,
    /// Raw lines of a `[limits]` section (e.g. `per_principal = "3/m"`).
    pub limits_lines: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: None,
            issuer: None,
            algorithm: "ES256".to_string(),
            default_ttl: "5m".to_string(),
            max_ttl: "15m".to_string(),
            reload_interval: "200ms".to_string(),
            extra_server_lines: Vec::new(),
            client_ca: false,
            admin_principals: Vec::new(),
            extra_tokens_lines: Vec::new(),
            trust_domain: None,
            store_url: None,
            extra_store_lines: Vec::new(),
            keys_lines: Vec::new(),
            extra_toml: Vec::new(),
            limits_lines: Vec::new(),
        }
    }
}

/// Everything one test needs to run writ, in its own temp dir.
pub struct TestEnv {
    dir: TempDir,
    pub pki: Pki,
    /// A Kubernetes cluster (`kind = "kubernetes"`, issuer `https://k8s.test`).
    pub k8s: Issuer,
    /// A CI system (`kind = "oidc"`, issuer `https://ci.test`).
    pub ci: Issuer,
    /// An agent platform (`kind = "oidc"`, `entity_type = "Agent"`, issuer
    /// `https://agents.test`): its tokens attest AI agents by `sub`.
    pub agents: Issuer,
    /// The company's identity provider (`entity_type = "User"`, issuer
    /// `https://people.test`): its tokens attest people by `sub`.
    pub people: Issuer,
    pub config: Config,
    /// A bearer token whose SHA-256 is in `admin.token_sha256`.
    pub admin_token: String,
    /// The CA of client certificates (`tls.client_ca` when `config.client_ca`).
    pub client_pki: Pki,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    /// The standard environment: ES256 issuers, standard policies, default config.
    pub fn new() -> Self {
        Self::with_k8s_key(Alg::Es256)
    }

    /// The standard environment with these raw lines in `[limits]` (e.g.
    /// `per_principal = "3/m"`).
    pub fn with_limits(lines: &[&str]) -> Self {
        let mut env = Self::new();
        env.config.limits_lines = lines.iter().map(|l| (*l).to_owned()).collect();
        env
    }

    /// The standard environment, with the Kubernetes issuer signing with `alg`.
    pub fn with_k8s_key(alg: Alg) -> Self {
        let dir = tempfile::tempdir().expect("create temp dir");
        let pki = Pki::new();
        let leaf = pki.server_cert();
        let env = Self {
            k8s: Issuer::kubernetes(alg),
            ci: Issuer::ci(Alg::Es256),
            agents: Issuer::oidc("agents", "https://agents.test", "Agent"),
            people: Issuer::oidc("people", "https://people.test", "User"),
            config: Config::default(),
            admin_token: format!("admin-{}", random_hex(16)),
            client_pki: Pki::new(),
            pki,
            dir,
        };
        env.write("client-ca.pem", &env.client_pki.ca_pem());
        env.write("ca.pem", &env.pki.ca_pem());
        env.write("server.pem", &leaf.cert_pem);
        env.write("server-key.pem", &leaf.key_pem);
        env.write("policies/schema.cedarschema", SCHEMA);
        env.write("policies/standard.cedar", STANDARD_POLICIES);
        env.write("policies/entities.json", ENTITIES);
        env
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("writ.toml")
    }

    pub fn policy_dir(&self) -> PathBuf {
        self.path("policies")
    }

    pub fn audit_path(&self) -> PathBuf {
        self.path("audit.jsonl")
    }

    /// Writes a file under the temp dir, creating parent directories.
    pub fn write(&self, relative: &str, contents: &str) {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parent directory");
        }
        fs::write(&path, contents)
            .unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
    }

    /// Adds (or replaces) `policies/<file>`.
    pub fn write_policy(&self, file: &str, text: &str) {
        self.write(&format!("policies/{file}"), text);
    }

    /// Replaces every `*.cedar` file by `files` (schema and entities stay).
    pub fn set_policies(&self, files: &[(&str, &str)]) {
        for entry in fs::read_dir(self.policy_dir()).expect("read policies/") {
            let path = entry.expect("policies/ entry").path();
            if path
                .extension()
                .is_some_and(|extension| extension == "cedar")
            {
                fs::remove_file(&path).expect("remove policy file");
            }
        }
        for (file, text) in files {
            self.write_policy(file, text);
        }
    }

    /// The complete writ.toml for the current state of this environment.
    pub fn config_toml(&self) -> String {
        let config = &self.config;
        let admin_sha256 = hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            self.admin_token.as_bytes(),
        ));
        let listen = config.listen.as_deref().unwrap_or("127.0.0.1:0");
        let mut toml = format!("[server]\nlisten = {}\n", quote(listen));
        if let Some(issuer) = &config.issuer {
            toml += &format!("issuer = {}\n", quote(issuer));
        }
        toml += &format!(
            "trust_domain = {}\n",
            quote(config.trust_domain.as_deref().unwrap_or("writ.local"))
        );
        for line in &config.extra_server_lines {
            toml += &format!("{line}\n");
        }
        toml += &format!(
            r#"
[tls]
cert = "server.pem"
key = "server-key.pem"
{client_ca}

[store]
url = "{store_url}"
{extra_store}

[keys]
{keys}

[limits]
{limits}

[tokens]
algorithm = {algorithm}
default_ttl = {default_ttl}
max_ttl = {max_ttl}
{extra_tokens}

[policy]
dir = "policies"
reload_interval = {reload_interval}

[audit]
path = "audit.jsonl"

[admin]
token_sha256 = [{admin_sha256}]
principals = [{principals}]

"#,
            algorithm = quote(&config.algorithm),
            store_url = config.store_url.as_deref().unwrap_or("sqlite://writ.db"),
            default_ttl = quote(&config.default_ttl),
            max_ttl = quote(&config.max_ttl),
            extra_tokens = config.extra_tokens_lines.join("\n"),
            extra_store = config.extra_store_lines.join("\n"),
            keys = config.keys_lines.join("\n"),
            limits = config.limits_lines.join("\n"),
            reload_interval = quote(&config.reload_interval),
            admin_sha256 = quote(&admin_sha256),
            client_ca = if config.client_ca {
                "client_ca = \"client-ca.pem\""
            } else {
                ""
            },
            principals = config
                .admin_principals
                .iter()
                .map(|p| quote(p))
                .collect::<Vec<_>>()
                .join(", "),
        );
        for issuer in self.issuers() {
            toml += &issuer.toml("ca.pem");
            toml += "\n";
        }
        for extra in &config.extra_toml {
            toml += extra;
            toml += "\n";
        }
        toml
    }

    /// Writes writ.toml and the issuers' JWKS files as they stand now.
    pub fn write_config(&self) {
        for issuer in self.issuers() {
            self.write(&issuer.jwks_file_name(), &issuer.jwks().to_string());
        }
        self.write("writ.toml", &self.config_toml());
    }

    /// Writes the config and starts `writ serve`, waiting until it listens.
    pub async fn start(&self) -> Server {
        self.write_config();
        Server::start(
            &self.config_path(),
            self.dir(),
            &self.pki.ca_pem(),
            &self.admin_token,
        )
        .await
    }

    /// Pins `server.listen` to the address `server` listens on now and
    /// rewrites writ.toml, so its next start ([`Server::restart`],
    /// [`Server::bring_back`]) comes back at the same URL. With `issuer`
    /// unset, the `iss` of its tokens and the endpoints in its metadata stay
    /// the same too, so a client bound to the old URL (an SDK `Broker`) can
    /// reconnect.
    pub fn pin_listen_address(&mut self, server: &Server) {
        let address = server
            .url
            .strip_prefix("https://")
            .unwrap_or_else(|| panic!("server URL {:?} is not https", server.url))
            .trim_end_matches('/')
            .to_string();
        self.config.listen = Some(address);
        self.write_config();
    }

    /// An HTTPS client trusting this environment's CA.
    pub fn client(&self) -> reqwest::Client {
        client(&self.pki.ca_pem())
    }

    /// A projected service-account token of `payments/api`, the workload most tests are.
    pub fn k8s_token(&self) -> String {
        self.service_account_token(NAMESPACE, SERVICE_ACCOUNT)
    }

    /// A projected service-account token of `namespace/service_account`.
    pub fn service_account_token(&self, namespace: &str, service_account: &str) -> String {
        self.k8s
            .sign(&self.k8s.service_account_claims(namespace, service_account))
    }

    fn issuers(&self) -> [&Issuer; 4] {
        [&self.k8s, &self.ci, &self.agents, &self.people]
    }

    /// An OIDC token attesting the agent `name` for ten minutes.
    pub fn agent_token(&self, name: &str) -> String {
        self.agents.oidc_token(name, 600)
    }

    /// An OIDC token of the CI job for acme/app on main.
    pub fn ci_token(&self) -> String {
        self.ci.sign(&self.ci.ci_job_claims(REPOSITORY, GIT_REF))
    }

    /// Waits for the first audit record that `matches` (audit lines are written asynchronously).
    pub async fn audit_record_where(&self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        eventually(&format!("the audit record of {what}"), async || {
            let records = self.audit_records();
            records
                .iter()
                .find(|record| matches(record))
                .cloned()
                .ok_or_else(|| format!("{} records: {records:?}", records.len()))
        })
        .await
    }

    /// The audit log's records so far (complete lines only).
    pub fn audit_records(&self) -> Vec<Value> {
        let Ok(text) = fs::read_to_string(self.audit_path()) else {
            return Vec::new();
        };
        text.split_inclusive('\n')
            .filter(|line| line.ends_with('\n') && !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|error| panic!("audit line is not JSON ({error}): {line}"))
            })
            .collect()
    }
}
