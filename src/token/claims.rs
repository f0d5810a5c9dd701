//! The claims of a writ access token (CONTRACT section 3).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Claims of an RFC 9068 access token minted by writ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// This broker.
    pub iss: String,
    /// The principal id.
    pub sub: String,
    /// The target id.
    pub aud: String,
    /// The acting client: the subject, or the newest actor when delegated.
    pub client_id: String,
    /// Granted scopes, space separated.
    pub scope: String,
    /// Issued at.
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Expiry.
    pub exp: u64,
    /// 128 random bits, base64url.
    pub jti: String,
    /// How the subject attested (`kubernetes`, `oidc`, `writ`).
    pub attestation: String,
    /// The subject's Cedar type (`Workload` or `Agent`).
    pub principal_type: String,
    /// RFC 8693 actor chain, newest actor outermost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Value>,
    /// Confirmation (key binding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Value>,
}
