//! `POST /oauth2/introspect` (RFC 7662). Callers authenticate with an admin
//! bearer token or a writ token whose audience is this broker. Every call is
//! audited: who asked, about which token, and the answer.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::AppState;
use super::error::Refusal;
use super::form::Form;
use super::listener::Peer;
use super::token::new_decision_id;
use crate::audit::AuditRecord;
use crate::clock::rfc3339;

pub(super) async fn introspect(
    State(app): State<Arc<AppState>>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut record = AuditRecord::new(
        "introspect",
        new_decision_id(),
        rfc3339(app.clock.unix_now()),
        peer.addr.ip().to_string(),
    );
    let response = match answer(&app, &headers, body, &mut record) {
        Ok(body) => {
            let mut resp = Json(body).into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(refusal) => {
            tracing::info!(decision_id = %record.decision_id, reason = %refusal.description(), "introspection refused");
            record.error = Some(refusal.code());
            record.reason = Some(refusal.description());
            refusal.with_id(record.decision_id.clone()).into_response()
        }
    };
    app.audit.record(record).await;
    response
}

fn answer(
    app: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    record: &mut AuditRecord,
) -> Result<Value, Refusal> {
    record.principal = Some(authenticate(app, headers)?);
    let form = Form::from_request(headers, body)?;
    let token = form.required("token")?;
    Ok(match app.verifier.verify(token) {
        Ok(claims) => {
            record.jti = Some(claims.jti.clone());
            record.target = Some(claims.aud.clone());
            if app.revocations.revoked(&claims).is_some() {
                json!({"active": false})
            } else {
                record.decision = "allow";
                let mut v = serde_json::to_value(&claims).unwrap_or(Value::Null);
                if let Some(o) = v.as_object_mut() {
                    o.insert("active".into(), Value::Bool(true));
                    o.insert("token_type".into(), Value::from("Bearer"));
                }
                v
            }
        }
        Err(e) => {
            record.reason = Some(e.to_string());
            json!({"active": false})
        }
    })
}

/// An admin bearer token (compared by SHA-256 digest in constant time) or a
/// writ token minted for this broker. Returns who the caller is.
fn authenticate(app: &AppState, headers: &HeaderMap) -> Result<String, Refusal> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| Refusal::InvalidClient("introspection requires authentication".into()))?;
    let digest = crate::digest::sha256(bearer.as_bytes());
    let is_admin = app
        .admin_token_digests
        .iter()
        .fold(subtle::Choice::from(0), |acc, d| acc | d.ct_eq(&digest));
    if bool::from(is_admin) {
        // CONTRACT section 1: an admin bearer token is named by its digest's prefix.
        return Ok(format!("Admin::token:{}", &hex::encode(digest)[..12]));
    }
    match app.verifier.verify(bearer) {
        Ok(claims) if claims.aud == app.issuer && app.revocations.revoked(&claims).is_none() => {
            Ok(claims.sub)
        }
        _ => Err(Refusal::InvalidClient(
            "credentials are not valid for introspection".into(),
        )),
    }
}
