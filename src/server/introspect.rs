//! `POST /oauth2/introspect` (RFC 7662). Callers authenticate with an admin
//! bearer token or a writ token whose audience is this broker.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::Refusal;
use super::form::Form;
use super::token::new_decision_id;

pub(super) async fn introspect(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let decision_id = new_decision_id();
    if let Err(refusal) = authenticate(&app, &headers) {
        tracing::info!(%decision_id, reason = %refusal.description(), "introspection caller refused");
        return refusal.with_id(decision_id).into_response();
    }
    let form = match Form::parse(&body) {
        Ok(f) => f,
        Err(refusal) => return refusal.with_id(decision_id).into_response(),
    };
    let token = match form.required("token") {
        Ok(t) => t,
        Err(refusal) => return refusal.with_id(decision_id).into_response(),
    };
    let body = match app.verifier.verify(token) {
        Ok(claims) if app.revocations.revoked(&claims).is_none() => {
            let mut v = serde_json::to_value(&claims).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("active".into(), Value::Bool(true));
                o.insert("token_type".into(), Value::from("Bearer"));
            }
            v
        }
        Ok(_) => json!({"active": false}),
        Err(e) => {
            tracing::debug!(%decision_id, reason = %e, "introspected token is not active");
            json!({"active": false})
        }
    };
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// An admin bearer token (compared by SHA-256 digest in constant time) or a
/// writ token minted for this broker.
fn authenticate(app: &AppState, headers: &HeaderMap) -> Result<(), Refusal> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| Refusal::InvalidClient("introspection requires authentication".into()))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, bearer.as_bytes());
    let is_admin = app
        .admin_token_digests
        .iter()
        .fold(subtle::Choice::from(0), |acc, d| {
            acc | d.ct_eq(digest.as_ref())
        });
    if bool::from(is_admin) {
        return Ok(());
    }
    match app.verifier.verify(bearer) {
        Ok(claims) if claims.aud == app.issuer && app.revocations.revoked(&claims).is_none() => {
            Ok(())
        }
        _ => Err(Refusal::InvalidClient(
            "credentials are not valid for introspection".into(),
        )),
    }
}
