//! Who is calling: an admin (a bearer token compared by SHA-256 in constant
//! time, or an mTLS identity listed in `admin.principals`), another mTLS
//! identity, or a workload holding a live writ token minted for this broker.

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::Refusal;
use super::listener::Peer;
use crate::token::AccessClaims;

/// An authenticated caller.
#[derive(Debug)]
pub enum Caller {
    /// An admin; the id is the Cedar entity id (`token:<12 hex>` or a SPIFFE ID).
    Admin(String),
    /// A client certificate's SPIFFE ID (chained to `tls.client_ca`).
    Mtls(String),
    /// A workload with a writ token whose audience is this broker.
    Workload(Box<AccessClaims>),
}

impl Caller {
    /// The name audit records use.
    pub fn name(&self) -> String {
        match self {
            Self::Admin(id) => format!("Admin::\"{id}\""),
            Self::Mtls(spiffe_id) => spiffe_id.clone(),
            Self::Workload(claims) => claims.sub.clone(),
        }
    }
}

/// The bearer token of a request, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The admin id of an admin bearer token (CONTRACT section 1), if it is one.
fn admin_token_id(app: &AppState, token: &str) -> Option<String> {
    let digest = crate::digest::sha256(token.as_bytes());
    let is_admin = app
        .admin_token_digests
        .iter()
        .fold(subtle::Choice::from(0), |acc, d| acc | d.ct_eq(&digest));
    bool::from(is_admin).then(|| format!("token:{}", &hex::encode(digest)[..12]))
}

/// An admin: by bearer token, else by an mTLS identity in `admin.principals`.
fn admin_id(app: &AppState, headers: &HeaderMap, peer: &Peer) -> Option<String> {
    if let Some(id) = bearer(headers).and_then(|t| admin_token_id(app, t)) {
        return Some(id);
    }
    let client = peer.client.as_ref()?;
    app.config
        .admin
        .principals
        .contains(&client.spiffe_id)
        .then(|| client.spiffe_id.clone())
}

/// Whether a writ token's key binding (RFC 8705 `cnf.x5t#S256`) is met by
/// this connection; unbound tokens always are. (DPoP proofs come later.)
pub fn binding_holds(claims: &AccessClaims, peer: &Peer) -> bool {
    match claims.cnf.as_ref() {
        None => true,
        Some(cnf) if cnf.get("x5t#S256").is_some() => {
            peer.client.as_ref().is_some_and(|c| c.matches(cnf))
        }
        // A binding writ does not know how to check: fail closed.
        Some(_) => false,
    }
}

/// An admin only.
pub fn admin(app: &AppState, headers: &HeaderMap, peer: &Peer) -> Result<String, Refusal> {
    admin_id(app, headers, peer)
        .ok_or_else(|| Refusal::InvalidClient("an admin credential is required".into()))
}

/// An admin, an mTLS identity, or a workload whose writ token is for this
/// broker and not revoked.
pub fn caller(app: &AppState, headers: &HeaderMap, peer: &Peer) -> Result<Caller, Refusal> {
    if let Some(id) = admin_id(app, headers, peer) {
        return Ok(Caller::Admin(id));
    }
    if let Some(token) = bearer(headers) {
        return match app.verifier.verify(token) {
            Ok(claims)
                if claims.aud == app.issuer
                    && binding_holds(&claims, peer)
                    && app.kill_switch.index().revoked(&claims.facts()).is_none() =>
            {
                Ok(Caller::Workload(Box::new(claims)))
            }
            _ => Err(Refusal::InvalidClient(
                "credentials are not valid here".into(),
            )),
        };
    }
    match &peer.client {
        Some(client) => Ok(Caller::Mtls(client.spiffe_id.clone())),
        None => Err(Refusal::InvalidClient("authentication is required".into())),
    }
}
