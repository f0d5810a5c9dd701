//! `POST /oauth2/introspect` (RFC 7662). Callers authenticate with an admin
//! bearer token or a writ token whose audience is this broker. Every call is
//! audited: who asked, about which token, and the answer.

use std::sync::Arc;

use super::error::ApiError;
use super::form;
use super::{AppState, auth};
use crate::attest::Peer;
use crate::audit::AuditRecord;
use crate::grant::Refusal;
use crate::token::Verified;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub(super) async fn introspect(
    State(app): State<Arc<AppState>>,
    peer: Peer,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut record = app.audit_record("introspect", app.clock.unix_now(), &peer)?;
    let outcome = answer(&app, &peer, &headers, body, &mut record)
        .await
        .map(|body| Json(body).into_response());
    Ok(super::respond(&app, record, outcome).await)
}

async fn answer(
    app: &AppState,
    peer: &Peer,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    record: &mut AuditRecord,
) -> Result<Value, Refusal> {
    let uri = format!("{}/oauth2/introspect", app.issuer);
    let req = auth::RequestFacts {
        method: "POST",
        uri: &uri,
        headers,
    };
    record.principal = Some(auth::caller(app, peer, &req).await?.name());
    let form = form::read(headers, body)?;
    let token = form.required("token")?;
    Ok(match app.verifier.verify(token) {
        Ok(Verified { claims, kid }) => {
            record.jti = Some(claims.jti.clone());
            record.target = Some(claims.aud.clone());
            let revocations = app
                .kill_switch
                .fresh_index()
                .map_err(|stale| Refusal::Unavailable(stale.to_string()))?;
            if let Some(entry) = revocations.revokes(&claims, &kid) {
                record.revocation = Some(entry.id.clone());
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
