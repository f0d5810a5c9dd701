//! `/admin/v1/approvals`: grants waiting for a person (CONTRACT section
//! 10). Behind the admin authentication; listing is Cedar's `read`,
//! deciding is `approve` on `Role::"<the approval's role>"`, so only
//! holders of that role decide; every call is audited.
//!
//! - `GET /admin/v1/approvals`: `{"approvals": [approval]}`, those pending
//!   or approved and unexpired, oldest first.
//! - `POST /admin/v1/approvals/{id}/approve` and `…/deny`: `200
//!   {"approval": approval}`; 404 for an unknown id, 409 for one no longer
//!   pending (decided, lapsed) or cancelled by the kill switch.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde_json::{Value, json};

use super::AppState;
use super::admin::{AdminId, authorize, authorize_read, finish, record};
use super::error::ApiError;
use crate::approval::{Approval, ApprovalLog, plausible_id};
use crate::attest::Peer;
use crate::clock::rfc3339;
use crate::durable::StoreError;
use crate::grant::Refusal;
use crate::policy::AdminAction;
use crate::revoke::{Entry, MintFacts};

/// The approval routes, merged into the admin router (and its authentication).
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/v1/approvals", get(list))
        .route("/admin/v1/approvals/{id}/approve", post(approve))
        .route("/admin/v1/approvals/{id}/deny", post(deny))
}

fn unavailable(error: StoreError) -> Refusal {
    tracing::error!(%error, "approvals: admin action failed");
    Refusal::Unavailable("approvals are unavailable".into())
}

/// The kill-switch entry that blocks what `approval` would grant, if any:
/// a block cancels a pending approval.
fn cancelled_by(app: &AppState, approval: &Approval, now: u64) -> Option<Arc<Entry>> {
    let actors: Vec<&str> = approval
        .actors
        .split(' ')
        .filter(|a| !a.is_empty())
        .collect();
    let facts = MintFacts {
        subject: &approval.principal,
        audience: &approval.target,
        attestation_issuer: None,
        actors: &actors,
        actor_issuers: &[],
    };
    app.kill_switch.index().blocked(&facts, now)
}

/// An approval as the API and `writ approvals list` show it.
fn shown(app: &AppState, approval: &Approval, now: u64) -> Value {
    let state = match cancelled_by(app, approval, now) {
        Some(_) if !matches!(approval.shown_state(now), "denied" | "used" | "expired") => {
            "cancelled"
        }
        _ => approval.shown_state(now),
    };
    json!({
        "id": approval.id,
        "role": approval.role,
        "principal": approval.principal,
        "target": approval.target,
        "scopes": approval.scopes.split(' ').filter(|s| !s.is_empty()).collect::<Vec<_>>(),
        "actors": approval.actors.split(' ').filter(|s| !s.is_empty()).collect::<Vec<_>>(),
        "requested_at": rfc3339(approval.requested_at),
        "expires_at": rfc3339(approval.expires_at),
        "state": state,
        "decided_by": approval.decided_by,
        "decided_at": approval.decided_at.map(rfc3339),
    })
}

async fn list(
    State(app): State<Arc<AppState>>,
    Extension(admin): Extension<AdminId>,
    peer: Peer,
) -> Result<Response, ApiError> {
    let mut record = record(&app, "read", &peer, Some(&admin))?;
    record.target = Some("approvals".into());
    let outcome = async {
        authorize_read(&app, &admin, &mut record)?;
        let now = app.clock.unix_now();
        let approvals = app.store.open_approvals(now).await.map_err(unavailable)?;
        let shown: Vec<Value> = approvals.iter().map(|a| shown(&app, a, now)).collect();
        Ok((StatusCode::OK, json!({ "approvals": shown })))
    }
    .await;
    Ok(finish(&app, record, outcome).await)
}

async fn approve(
    State(app): State<Arc<AppState>>,
    Extension(admin): Extension<AdminId>,
    peer: Peer,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    decide(app, admin, peer, id, true).await
}

async fn deny(
    State(app): State<Arc<AppState>>,
    Extension(admin): Extension<AdminId>,
    peer: Peer,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    decide(app, admin, peer, id, false).await
}

async fn decide(
    app: Arc<AppState>,
    admin: AdminId,
    peer: Peer,
    id: String,
    approve: bool,
) -> Result<Response, ApiError> {
    let action = if approve { "approve" } else { "deny" };
    let mut record = record(&app, action, &peer, Some(&admin))?;
    let outcome = async {
        if !plausible_id(&id) {
            return Err(Refusal::InvalidRequest(
                "an approval id is 32 hex digits, as the token endpoint gave it".into(),
            ));
        }
        record.approval = Some(id.clone());
        let store: &dyn ApprovalLog = &*app.store;
        let approval = store
            .approval(&id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Refusal::NotFound(format!("no approval {id}")))?;
        record.target = Some(approval.target.clone());
        authorize(
            &app,
            &admin,
            &approval.role,
            AdminAction::Approve { approve },
            &mut record,
        )?;
        let now = app.clock.unix_now();
        if approve && let Some(entry) = cancelled_by(&app, &approval, now) {
            record.revocation = Some(entry.id.clone());
            return Err(Refusal::Conflict(format!(
                "the approval was cancelled by the kill switch (entry {})",
                entry.id
            )));
        }
        let redeem_until = now.saturating_add(app.config.approvals.ttl.as_secs());
        let by = format!("Admin::\"{}\"", admin.0);
        match store
            .decide_approval(&id, approve, &by, now, redeem_until)
            .await
            .map_err(unavailable)?
        {
            Some(decided) => {
                tracing::warn!(approval = %id, role = %decided.role, principal = %decided.principal, by = %by, action, "approval decided");
                Ok((StatusCode::OK, json!({ "approval": shown(&app, &decided, now) })))
            }
            None => Err(Refusal::Conflict(format!(
                "the approval is {}, not pending",
                approval.shown_state(now)
            ))),
        }
    }
    .await;
    Ok(finish(&app, record, outcome).await)
}
