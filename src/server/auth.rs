//! Who is calling: an admin (bearer token compared by SHA-256 in constant
//! time) or a workload holding a live writ token minted for this broker.

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::Refusal;
use crate::token::AccessClaims;

/// An authenticated caller.
#[derive(Debug)]
pub enum Caller {
    /// An admin; the id is the Cedar entity id, e.g. `token:0123456789ab`.
    Admin(String),
    /// A workload with a writ token whose audience is this broker.
    Workload(Box<AccessClaims>),
}

impl Caller {
    /// The name audit records use.
    pub fn name(&self) -> String {
        match self {
            Self::Admin(id) => format!("Admin::\"{id}\""),
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
pub fn admin_id(app: &AppState, token: &str) -> Option<String> {
    let digest = crate::digest::sha256(token.as_bytes());
    let is_admin = app
        .admin_token_digests
        .iter()
        .fold(subtle::Choice::from(0), |acc, d| acc | d.ct_eq(&digest));
    bool::from(is_admin).then(|| format!("token:{}", &hex::encode(digest)[..12]))
}

/// An admin, or a workload whose writ token is for this broker and not revoked.
pub fn caller(app: &AppState, headers: &HeaderMap) -> Result<Caller, Refusal> {
    let token = bearer(headers)
        .ok_or_else(|| Refusal::InvalidClient("authentication is required".into()))?;
    if let Some(id) = admin_id(app, token) {
        return Ok(Caller::Admin(id));
    }
    match app.verifier.verify(token) {
        Ok(claims)
            if claims.aud == app.issuer
                && app.kill_switch.index().revoked(&claims.facts()).is_none() =>
        {
            Ok(Caller::Workload(Box::new(claims)))
        }
        _ => Err(Refusal::InvalidClient(
            "credentials are not valid here".into(),
        )),
    }
}

/// An admin only.
pub fn admin(app: &AppState, headers: &HeaderMap) -> Result<String, Refusal> {
    bearer(headers)
        .and_then(|t| admin_id(app, t))
        .ok_or_else(|| Refusal::InvalidClient("an admin credential is required".into()))
}
