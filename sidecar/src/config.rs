//! `sidecar.toml`: what the sidecar fetches, where it writes, where it listens.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Why a sidecar configuration could not be used.
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

/// The whole sidecar configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SidecarConfig {
    /// The broker.
    pub broker: BrokerConfig,
    /// How the workload proves what it is.
    pub attestation: AttestationConfig,
    /// The loopback HTTP endpoint.
    #[serde(default)]
    pub serve: ServeConfig,
    /// Following the kill switch (optional, recommended).
    pub revocations: Option<RevocationsConfig>,
    /// The tokens to keep fresh.
    pub tokens: Vec<TokenConfig>,
}

/// `[broker]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// Base URL, e.g. `https://writ.writ-system.svc:8443`.
    pub url: String,
    /// PEM CA to trust instead of the system roots.
    pub ca: Option<PathBuf>,
}

/// `[attestation]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationConfig {
    /// A projected service-account token, re-read on every exchange.
    pub token_file: PathBuf,
}

/// `[serve]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Loopback address of `GET /token`, `/healthz`, `/metrics`.
    pub listen: SocketAddr,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8181)),
        }
    }
}

/// `[revocations]`: credentials for the broker's revocation feed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationsConfig {
    /// Authenticate with a token for this audience (the broker's `issuer`).
    pub audience: Option<String>,
    /// Scopes of that token.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Or: a file holding a bearer credential (e.g. a mounted secret).
    pub bearer_token_file: Option<PathBuf>,
    /// Treat tokens as unknown after the feed is silent this long.
    #[serde(
        default = "default_silence",
        deserialize_with = "humantime_serde::deserialize"
    )]
    pub max_silence: Duration,
}

fn default_silence() -> Duration {
    Duration::from_secs(60)
}

/// `[[tokens]]`: one token to keep fresh.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The target.
    pub audience: String,
    /// Scopes to ask for.
    pub scopes: Vec<String>,
    /// Where to write it (mode 0600, replaced atomically).
    pub file: PathBuf,
    /// Lifetime to ask for.
    #[serde(default, deserialize_with = "humantime_serde::deserialize")]
    pub requested_ttl: Option<Duration>,
}

impl SidecarConfig {
    /// Loads and checks a sidecar configuration; relative paths are from its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(ca) = config.broker.ca.as_mut() {
            join(ca);
        }
        join(&mut config.attestation.token_file);
        if let Some(f) = config
            .revocations
            .as_mut()
            .and_then(|r| r.bearer_token_file.as_mut())
        {
            join(f);
        }
        for t in &mut config.tokens {
            join(&mut t.file);
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.tokens.is_empty() {
            return bad("at least one [[tokens]] entry is required".into());
        }
        if !self.serve.listen.ip().is_loopback() {
            return bad(format!(
                "serve.listen {} must be a loopback address",
                self.serve.listen
            ));
        }
        if !self.broker.url.starts_with("https://") {
            return bad(format!("broker.url {:?} must be https", self.broker.url));
        }
        for (i, t) in self.tokens.iter().enumerate() {
            if t.scopes.is_empty() {
                return bad(format!(
                    "tokens[{i}] ({}): scopes must not be empty",
                    t.audience
                ));
            }
            if self.tokens[..i].iter().any(|o| o.audience == t.audience) {
                return bad(format!(
                    "tokens[{i}]: audience {:?} is listed twice",
                    t.audience
                ));
            }
        }
        if let Some(r) = &self.revocations
            && r.audience.is_some() == r.bearer_token_file.is_some()
        {
            return bad("[revocations] needs exactly one of audience and bearer_token_file".into());
        }
        if !self.attestation.token_file.exists() {
            return bad(format!(
                "attestation.token_file {} does not exist",
                self.attestation.token_file.display()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str =
        "[broker]\nurl = 'https://writ.example'\n[attestation]\ntoken_file = 'sa-token'\n";

    #[test]
    fn durations_parse_like_10m() {
        let text = format!(
            "{BASE}[revocations]\naudience = 'writ'\nmax_silence = '10m'\n\
             [[tokens]]\naudience = 'db'\nscopes = ['read']\nfile = 'db'\nrequested_ttl = '30s'\n\
             [[tokens]]\naudience = 'cache'\nscopes = ['read']\nfile = 'cache'\n"
        );
        let c: SidecarConfig = toml::from_str(&text).unwrap();
        let r = c.revocations.unwrap();
        assert_eq!(r.max_silence, Duration::from_secs(600));
        assert_eq!(c.tokens[0].requested_ttl, Some(Duration::from_secs(30)));
        assert_eq!(c.tokens[1].requested_ttl, None);
        assert_eq!(c.serve.listen, SocketAddr::from(([127, 0, 0, 1], 8181)));
    }

    #[test]
    fn a_bad_duration_is_named_with_its_key() {
        let text = format!(
            "{BASE}[[tokens]]\naudience = 'db'\nscopes = ['read']\nfile = 'db'\nrequested_ttl = 'soon'\n"
        );
        let err = toml::from_str::<SidecarConfig>(&text)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("requested_ttl") && err.contains("expected a duration"),
            "{err}"
        );
    }

    #[test]
    fn an_absent_silence_is_a_minute() {
        let text = format!(
            "{BASE}[revocations]\naudience = 'writ'\n[[tokens]]\naudience = 'db'\nscopes = ['read']\nfile = 'db'\n"
        );
        let c: SidecarConfig = toml::from_str(&text).unwrap();
        assert_eq!(c.revocations.unwrap().max_silence, Duration::from_secs(60));
    }
}
