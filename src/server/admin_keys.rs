//! `/admin/v1/keys`: the signing keys for operators (CONTRACT section 8).
//! Behind the same admin authentication as the kill switch; listing is
//! Cedar's `read`, rotating `rotate_key`, revoking `revoke_key`; every
//! call is audited.
//!
//! - `GET /admin/v1/keys`: `{"keys": [{kid, alg, state, created, activates,
//!   retires, revoked, encrypted}]}`, newest first.
//! - `POST /admin/v1/keys/rotate`: `201 {"key": …}`, the `next` key (one
//!   already pending is returned rather than a second made).
//! - `POST /admin/v1/keys/{kid}/revoke`: withdraws the key from every
//!   JWKS, revokes every token it signed (a kill-switch entry with the
//!   `kid` selector) and, if it signed, makes another key sign at once:
//!   `200 {"kid", "was", "revocation": {id, seq, effective_at},
//!   "replacement": key or null}`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::json;

use super::AppState;
use super::admin::{AdminId, authorize, authorize_read, finish, record};
use super::error::ApiError;
use crate::attest::Peer;
use crate::clock::rfc3339;
use crate::grant::Refusal;
use crate::policy::AdminAction;
use crate::revoke::{RevokeRequest, Selector};
use crate::token::KeyRingError;

/// The key routes, merged into the admin router (and its authentication).
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/v1/keys", get(list))
        .route("/admin/v1/keys/rotate", post(rotate))
        .route("/admin/v1/keys/{kid}/revoke", post(revoke))
}

/// A key-ring failure: the store is away, or a key cannot be read.
fn unavailable(error: KeyRingError) -> Refusal {
    tracing::error!(%error, "signing keys: admin action failed");
    Refusal::Unavailable("signing keys are unavailable".into())
}

/// A kid writ could have made: an RFC 7638 thumbprint (base64url SHA-256).
fn plausible_kid(kid: &str) -> bool {
    (1..=128).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn list(
    State(app): State<Arc<AppState>>,
    Extension(admin): Extension<AdminId>,
    peer: Peer,
) -> Result<Response, ApiError> {
    let mut record = record(&app, "read", &peer, Some(&admin))?;
    record.target = Some("keys".into());
    let outcome = async {
        authorize_read(&app, &admin, &mut record)?;
        app.keys.refresh().await.map_err(unavailable)?;
        let snapshot = app.keys.snapshot();
        Ok((StatusCode::OK, json!({ "keys": snapshot.keys() })))
    }
    .await;
    Ok(finish(&app, record, outcome).await)
}

async fn rotate(
    State(app): State<Arc<AppState>>,
    Extension(admin): Extension<AdminId>,
    peer: Peer,
) -> Result<Response, ApiError> {
    let mut record = record(&app, "rotate_key", &peer, Some(&admin))?;
    record.target = Some("keys".into());
    let outcome = async {
        authorize(
            &app,
            &admin,
            &app.issuer,
            AdminAction::RotateKey,
            &mut record,
        )?;
        let key = app.keys.rotate().await.map_err(unavailable)?;
        tracing::warn!(kid = %key.kid, activates = %key.activates, "signing keys: rotated");
        record.target = Some(format!("kid={}", key.kid));
        Ok((StatusCode::CREATED, json!({ "key": key })))
    }
    .await;
    Ok(finish(&app, record, outcome).await)
}

async fn revoke(
    State(app): State<Arc<AppState>>,
    Extension(admin): Extension<AdminId>,
    peer: Peer,
    Path(kid): Path<String>,
) -> Result<Response, ApiError> {
    let mut record = record(&app, "revoke_key", &peer, Some(&admin))?;
    let outcome = async {
        if !plausible_kid(&kid) {
            return Err(Refusal::InvalidRequest(
                "kid must be a key id as `writ keys list` shows it".into(),
            ));
        }
        record.target = Some(format!("kid={kid}"));
        authorize(
            &app,
            &admin,
            &app.issuer,
            AdminAction::RevokeKey { kid: &kid },
            &mut record,
        )?;
        let revoked = app
            .keys
            .revoke(&kid)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Refusal::NotFound(format!("no signing key {kid}")))?;
        // Every token it signed, at every replica and every SDK verifier.
        let request = RevokeRequest {
            selector: Selector::Kid(kid.clone()),
            reason: format!("signing key {kid} revoked"),
            block: false,
            until: None,
        };
        let entry = app
            .kill_switch
            .revoke(request, format!("Admin::\"{}\"", admin.0))
            .await?;
        tracing::warn!(kid = %kid, was = revoked.was.as_str(), entry = %entry.id, "signing keys: key revoked and its tokens with it");
        record.revocation = Some(entry.id.clone());
        Ok((
            StatusCode::OK,
            json!({
                "kid": kid,
                "was": revoked.was.as_str(),
                "revocation": {
                    "id": entry.id,
                    "seq": entry.seq,
                    "effective_at": rfc3339(entry.effective_at),
                },
                "replacement": revoked.replacement,
            }),
        ))
    }
    .await;
    Ok(finish(&app, record, outcome).await)
}
