//! Extractors for what handlers need about a request before they start:
//! the [`Peer`] the listener attached, and the authenticated caller of a
//! workload endpoint. A rejection renders the RFC 6749 error, so a handler
//! begins with typed, checked input.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::AppState;
use super::auth::{self, Caller, RequestFacts};
use super::error::ApiError;
use crate::attest::Peer;
use crate::grant::Refusal;

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Peer>().cloned().ok_or_else(|| {
            // Only a request that bypassed the listener lacks it.
            ApiError::fresh(Refusal::Unavailable("connection facts are missing".into()))
        })
    }
}

/// The caller of a workload endpoint, authenticated by [`auth::caller`]:
/// an admin, an mTLS identity, or a live writ token for this broker that
/// meets its key binding (a DPoP proof is checked against this request's
/// method and URL).
#[derive(Debug)]
pub struct Authenticated(pub Caller);

impl FromRequestParts<Arc<AppState>> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let peer = Peer::from_request_parts(parts, app).await?;
        let uri = format!("{}{}", app.issuer, parts.uri.path());
        let request = RequestFacts {
            method: parts.method.as_str(),
            uri: &uri,
            headers: &parts.headers,
        };
        auth::caller(app, &peer, &request)
            .await
            .map(Self)
            .map_err(ApiError::fresh)
    }
}
