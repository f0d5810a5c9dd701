//! How the workload proves what it is to the broker.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use crate::Error;

/// An attestation to present as `subject_token`.
#[derive(Clone, PartialEq, Eq)]
pub struct Attestation {
    /// The token itself.
    pub token: String,
    /// Its RFC 8693 type, e.g. `urn:ietf:params:oauth:token-type:jwt`.
    pub token_type: &'static str,
}

impl std::fmt::Debug for Attestation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attestation")
            .field("token_type", &self.token_type)
            .finish_non_exhaustive()
    }
}

/// The JWT token type (Kubernetes service-account tokens, most OIDC tokens).
pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// Supplies a current attestation whenever the source needs a new token.
pub trait AttestationSource: Send + Sync + 'static {
    /// The attestation to present now.
    fn attestation(&self) -> Pin<Box<dyn Future<Output = Result<Attestation, Error>> + Send + '_>>;
}

/// A token file that the platform rotates, such as a projected Kubernetes
/// service-account token. Read again on every exchange, so a rotated file is
/// picked up without restarting.
#[derive(Debug, Clone)]
pub struct FileAttestation {
    path: PathBuf,
    token_type: &'static str,
}

impl FileAttestation {
    /// A projected service-account token at `path`.
    pub fn kubernetes(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            token_type: JWT,
        }
    }
}

impl AttestationSource for FileAttestation {
    fn attestation(&self) -> Pin<Box<dyn Future<Output = Result<Attestation, Error>> + Send + '_>> {
        Box::pin(async move {
            let token = tokio::fs::read_to_string(&self.path)
                .await
                .map_err(|e| Error::Attestation(format!("{}: {e}", self.path.display())))?;
            let token = token.trim().to_owned();
            if token.is_empty() {
                return Err(Error::Attestation(format!(
                    "{} is empty",
                    self.path.display()
                )));
            }
            Ok(Attestation {
                token,
                token_type: self.token_type,
            })
        })
    }
}

/// A fixed attestation (tests, or a token obtained elsewhere).
#[derive(Debug, Clone)]
pub struct StaticAttestation(pub Attestation);

impl StaticAttestation {
    /// A JWT attestation.
    pub fn jwt(token: impl Into<String>) -> Self {
        Self(Attestation {
            token: token.into(),
            token_type: JWT,
        })
    }
}

impl AttestationSource for StaticAttestation {
    fn attestation(&self) -> Pin<Box<dyn Future<Output = Result<Attestation, Error>> + Send + '_>> {
        let a = self.0.clone();
        Box::pin(async move { Ok(a) })
    }
}
