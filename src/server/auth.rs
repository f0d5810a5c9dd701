//! Who is calling: an admin (a bearer token compared by SHA-256 in constant
//! time, or an mTLS identity listed in `admin.principals`), another mTLS
//! identity, or a workload holding a live writ token minted for this broker.

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

use super::AppState;
use crate::attest::Peer;
use crate::grant::{Refusal, dpop_proof};
use crate::token::AccessClaims;
use crate::token::Verified;
use writ_proto::binding::Scheme;

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

/// The access token of a request and its scheme (`Bearer` or, for a
/// DPoP-bound token, `DPoP`), if any.
pub fn authorization(headers: &HeaderMap) -> Option<(Scheme, &str)> {
    Scheme::split(headers.get(header::AUTHORIZATION)?.to_str().ok()?)
}

/// The access token of a request, whatever its scheme, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    authorization(headers).map(|(_, token)| token)
}

/// What a request looks like to a DPoP proof: method, endpoint URL, headers.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// `POST`, `GET`...
    pub method: &'a str,
    /// The endpoint URL (issuer + path), without query.
    pub uri: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
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

/// Whether a writ token presented as a credential (with `scheme` when it
/// came in `Authorization`) meets its binding: for a DPoP-bound token, the
/// request carries a fresh proof over this request and this token (`ath`).
pub async fn binding_holds(
    app: &AppState,
    claims: &AccessClaims,
    token: &str,
    scheme: Option<Scheme>,
    peer: &Peer,
    req: &RequestFacts<'_>,
) -> bool {
    // Only a DPoP-bound token consumes the request's proof.
    let proven_jkt = match claims.cnf.as_ref().and_then(|c| c.jkt.as_ref()) {
        Some(_) => dpop_key(app, token, req).await,
        None => None,
    };
    peer.holds(claims.cnf.as_ref(), scheme, || proven_jkt)
}

/// The thumbprint of the key of the request's DPoP proof over `token`, if
/// it carries exactly one that checks out and was not seen before.
async fn dpop_key(app: &AppState, token: &str, req: &RequestFacts<'_>) -> Option<String> {
    let proof = dpop_proof(req.headers).ok().flatten()?;
    let expected = crate::attest::dpop::Expected {
        method: req.method,
        uri: req.uri,
        now: app.clock.unix_now(),
        access_token: Some(token),
    };
    app.dpop_replay.verify(proof, &expected).await.ok()
}

/// An admin only.
pub fn admin(app: &AppState, headers: &HeaderMap, peer: &Peer) -> Result<String, Refusal> {
    admin_id(app, headers, peer)
        .ok_or_else(|| Refusal::InvalidClient("an admin credential is required".into()))
}

/// An admin, an mTLS identity, or a workload whose writ token is for this
/// broker, meets its key binding, and is not revoked.
pub async fn caller(
    app: &AppState,
    peer: &Peer,
    req: &RequestFacts<'_>,
) -> Result<Caller, Refusal> {
    let headers = req.headers;
    if let Some(id) = admin_id(app, headers, peer) {
        return Ok(Caller::Admin(id));
    }
    if let Some((scheme, token)) = authorization(headers) {
        let refused = || Refusal::InvalidClient("credentials are not valid here".into());
        let Verified { claims, kid } = app.verifier.verify(token).map_err(|_| refused())?;
        let valid = claims.aud == app.issuer
            && binding_holds(app, &claims, token, Some(scheme), peer, req).await
            && app.kill_switch.index().revokes(&claims, &kid).is_none();
        return if valid {
            Ok(Caller::Workload(Box::new(claims)))
        } else {
            Err(refused())
        };
    }
    match &peer.client {
        Some(client) => {
            app.attest
                .check_certificate(client)
                .map_err(|e| Refusal::InvalidClient(e.to_string()))?;
            Ok(Caller::Mtls(client.spiffe_id.clone()))
        }
        None => Err(Refusal::InvalidClient("authentication is required".into())),
    }
}
