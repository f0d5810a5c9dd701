//! `POST /oauth2/token`: read the form, hand it to [`crate::grant`], render
//! the answer, and audit it. The rules of the grant live in `grant`.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::ApiError;
use super::{AppState, form};
use crate::attest::{AttrValue, Peer};
use crate::audit::AuditRecord;
use crate::grant::{
    self, Granted, Learned, Outcome, Refusal, TYPE_ACCESS_TOKEN, TYPE_TXN_TOKEN, TokenType,
};

pub(super) async fn token(
    State(app): State<Arc<AppState>>,
    peer: Peer,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let now = app.clock.unix_now();
    // The decision id first: without one nothing is granted.
    let record = app.audit_record("mint", now, &peer)?;
    let outcome: Outcome = match form::read(&headers, body) {
        Ok(form) => grant::grant(&app.grant_context(), &form, &peer, &headers, now).await,
        Err(refusal) => Err(refusal.into()),
    };
    match &outcome {
        Ok(_) => {
            app.metrics.decision("allow");
            app.metrics.mint_duration(started.elapsed().as_secs_f64());
        }
        Err(r) if matches!(r.refusal, Refusal::Unavailable(_)) => app.metrics.decision("error"),
        Err(_) => app.metrics.decision("deny"),
    }
    let record = audit(record, &outcome);
    let audited = !matches!(&outcome, Err(refused) if refused.learned.unaudited);
    let rendered = outcome.map(render).map_err(|refused| refused.refusal);
    Ok(super::respond_sampled(&app, record, rendered, audited).await)
}

/// The token response (RFC 8693 section 2.2.1).
#[derive(serde::Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    issued_token_type: &'static str,
    token_type: &'static str,
    expires_in: u64,
    scope: String,
}

fn render(granted: Granted) -> Response {
    let body = TokenResponse {
        access_token: &granted.minted.token,
        issued_token_type: match granted.token_type {
            TokenType::NotApplicable => TYPE_TXN_TOKEN,
            TokenType::Bearer | TokenType::Dpop => TYPE_ACCESS_TOKEN,
        },
        token_type: granted.token_type.as_str(),
        expires_in: granted.ttl.as_secs(),
        scope: granted.scopes.to_string(),
    };
    (StatusCode::OK, Json(body)).into_response()
}

/// Attested attributes as JSON strings and numbers.
fn attrs_json(
    attrs: &std::collections::BTreeMap<String, AttrValue>,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    attrs
        .iter()
        .map(|(name, value)| {
            let value = match value {
                AttrValue::String(s) => serde_json::Value::from(s.as_str()),
                AttrValue::Long(n) => serde_json::Value::from(*n),
            };
            (name.clone(), value)
        })
        .collect()
}

/// The audit record of a token request: everything the grant learned, and
/// the minted token's `jti` and `exp`. `respond` adds the decision.
fn audit(mut record: AuditRecord, outcome: &Outcome) -> AuditRecord {
    let learned: &Learned = match outcome {
        Ok(granted) => {
            record.jti = Some(granted.minted.jti.clone());
            record.exp = Some(granted.minted.exp);
            &granted.learned
        }
        Err(refused) => &refused.learned,
    };
    record.target = learned.target.as_ref().map(ToString::to_string);
    record.scopes_requested = learned
        .scopes_requested
        .as_ref()
        .map(|s| s.to_strings())
        .unwrap_or_default();
    record.principal = learned.principal.as_ref().map(ToString::to_string);
    record.attestation = learned.attestation.map(|kind| kind.as_str().to_owned());
    record.principal_type = learned.principal_type.map(|t| t.as_str().to_owned());
    record.attrs = attrs_json(&learned.principal_attrs);
    record.actor = learned.actor.as_ref().map(|actor| {
        json!({
            "type": actor.entity_type.as_str(),
            "id": actor.principal.as_str(),
            "attrs": attrs_json(&actor.attributes),
        })
    });
    if let Some(context) = &learned.context {
        record.requested_ttl = Some(context.requested_ttl);
        record.sender_constrained = Some(context.sender_constrained);
        record.delegation_depth = Some(context.delegation_depth);
    }
    if let Some(txn) = &learned.transaction {
        record.txn_requester = Some(txn.requester.clone());
        record.txn_chain = Some(txn.chain);
    }
    record.act = learned.actors.clone();
    record.policies = learned.policies.clone();
    record.scopes_granted = learned
        .scopes_granted
        .as_ref()
        .map(|s| s.to_strings())
        .unwrap_or_default();
    record.revocation = learned.revocation.clone();
    record.approval = learned.approval.clone();
    record
}
