//! Dev mode: what `writ` does when no configuration file is given. The
//! embedded defaults ([`Config::dev`]) trust the dev issuer whose material
//! [`certs`](crate::certs) generates under `certs/`; [`prepare`] makes that
//! material before `writ serve` starts. Configuration itself ([`crate::config`])
//! knows nothing of certificates: dev mode is chosen here, in the CLI.

use std::path::{Path, PathBuf};

use crate::certs;
use crate::clock::{Clock, SystemClock};
use crate::config::{
    Config, ConfigError, DEV_AUDIENCE, DEV_CERTS_DIR, DEV_ISSUER, IssuerConfig, IssuerKind,
    default_jwks_refresh, default_subject,
};
use crate::model::EntityType;
use crate::policy;

use super::CliError;

impl Config {
    /// Finds and loads the configuration: `explicit` (from `--config` or
    /// `WRIT_CONFIG`), else `./writ.toml` if present, else dev mode.
    pub fn discover(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        match explicit {
            Some(path) => Self::load(path),
            None if Path::new("writ.toml").exists() => Self::load(Path::new("writ.toml")),
            None => Ok(Self::dev()),
        }
    }

    /// Embedded defaults for `writ serve` with no file: the dev issuer and
    /// certificates under `certs/`, SQLite, `policies/`.
    pub fn dev() -> Self {
        let dir = Path::new(DEV_CERTS_DIR);
        let mut config = Self {
            dev_mode: true,
            ..Self::default()
        };
        // The dev cluster's trust domain: the dev client certificate (an
        // X.509-SVID of payments/api) and the dev service-account token
        // prove the same principal.
        config.server.trust_domain = "cluster.local".into();
        config.issuers.push(IssuerConfig {
            name: "dev".into(),
            kind: IssuerKind::Kubernetes,
            issuer: DEV_ISSUER.into(),
            jwks_uri: None,
            jwks_file: Some(dir.join(certs::DEV_ISSUER_JWKS)),
            jwks_ca: None,
            jwks_refresh: default_jwks_refresh(),
            audience: DEV_AUDIENCE.into(),
            trust_domain: None,
            entity_type: EntityType::Workload,
            subject: default_subject(),
        });
        config
    }
}

/// Where dev mode serves the API for Unix peer-credential attestation.
const DEV_UNIX_SOCKET: &str = "writ.sock";

/// Dev mode: generate certificates and the dev issuer, write the example
/// policies if absent, and say loudly what is trusted.
pub(super) fn prepare(config: &mut Config) -> Result<(), CliError> {
    let dir = Path::new(DEV_CERTS_DIR);
    for f in certs::init(dir).map_err(CliError::new)? {
        tracing::info!(file = %f.display(), "generated dev material");
    }
    config
        .admin
        .token_sha256
        .push(certs::dev_admin_token_sha256(dir).map_err(CliError::new)?);
    // mTLS and Unix-socket attestation work out of the box too: the dev CA
    // signs a short-lived client certificate for payments/api, and the API
    // is also served on ./writ.sock.
    certs::issue_dev_client(dir, SystemClock.unix_now()).map_err(CliError::new)?;
    config
        .tls
        .client_ca
        .get_or_insert_with(|| dir.join(certs::CA_CERT));
    config
        .server
        .unix_socket
        .get_or_insert_with(|| PathBuf::from(DEV_UNIX_SOCKET));
    if !config.policy.dir.exists() {
        policy::write_examples(&config.policy.dir).map_err(CliError::new)?;
        tracing::info!(dir = %config.policy.dir.display(), "wrote the example policies");
    }
    tracing::warn!(
        ca = %dir.join(certs::CA_CERT).display(),
        issuer = DEV_ISSUER,
        "DEV MODE: no writ.toml, so writ trusts the dev issuer under certs/ and serves a dev certificate. \
         Trust the CA above to talk to it; the kill-switch admin token is certs/dev-admin-token. \
         Never run dev mode in production."
    );
    Ok(())
}
