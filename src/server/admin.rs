//! `/admin/v1/revocations`: the kill switch for operators (and, in
//! `admin_keys`, `/admin/v1/keys`; in `admin_explain`, `/admin/v1/explain`;
//! in `admin_inventory`, `/admin/v1/inventory`). One router behind admin
//! authentication; every call is authorized by Cedar (principal `Admin`,
//! action `revoke`, `lift`, `read`, `rotate_key`, `revoke_key`, `explain` or
//! `inventory`) and audited.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::{AppState, auth};
use crate::attest::Peer;
use crate::audit::AuditRecord;
use crate::clock::rfc3339;
use crate::grant::Refusal;
use crate::policy::{AdminAction, EntryFacts};
use crate::revoke::{Entry, EntryKind, LiftOutcome, RevokeRequest, Selector};

/// The admin id of the authenticated caller (`token:<12 hex>`).
#[derive(Debug, Clone)]
pub(super) struct AdminId(pub(super) String);

pub(super) fn router(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/v1/revocations", get(list).post(revoke))
        .route("/admin/v1/revocations/{id}", get(show).delete(lift))
        .route("/admin/v1/replicas", get(replicas))
        .merge(super::admin_keys::routes())
        .merge(super::admin_explain::routes())
        .merge(super::admin_inventory::routes())
        .merge(super::admin_approvals::routes())
        .route_layer(middleware::from_fn_with_state(state, authenticate))
}

async fn authenticate(
    State(app): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(peer) = req.extensions().get::<Peer>().cloned() else {
        let refusal = Refusal::Unavailable("connection facts are missing".into());
        return Err(ApiError::fresh(refusal));
    };
    Ok(match auth::admin(&app, req.headers(), &peer) {
        Ok(id) => {
            req.extensions_mut().insert(AdminId(id));
            next.run(req).await
        }
        Err(refusal) => finish(&app, record(&app, "revoke", &peer, None)?, Err(refusal)).await,
    })
}

/// The record of one admin call, or the 503 of a request that cannot have one.
pub(super) fn record(
    app: &AppState,
    action: &'static str,
    peer: &Peer,
    admin: Option<&AdminId>,
) -> Result<AuditRecord, ApiError> {
    let mut r = app.audit_record(action, app.clock.unix_now(), peer)?;
    r.principal = admin.map(|a| format!("Admin::\"{}\"", a.0));
    Ok(r)
}

/// Audits and renders the outcome of an admin call.
pub(super) async fn finish(
    app: &AppState,
    record: AuditRecord,
    outcome: Result<(StatusCode, serde_json::Value), Refusal>,
) -> Response {
    let outcome = outcome.map(|(status, body)| (status, Json(body)).into_response());
    super::respond(app, record, outcome).await
}

/// The Cedar resource of an admin action: the target for an audience
/// selector, otherwise the broker itself (CONTRACT section 5).
fn resource<'a>(app: &'a AppState, selector: &'a Selector) -> &'a str {
    match selector {
        Selector::Audience(aud) => aud,
        _ => &app.issuer,
    }
}

/// Asks Cedar whether `admin` may do `action` on `resource` (a target id).
pub(super) fn authorize(
    app: &AppState,
    admin: &AdminId,
    resource: &str,
    action: AdminAction<'_>,
    record: &mut AuditRecord,
) -> Result<(), Refusal> {
    let decision = app
        .policy
        .snapshot()
        .authorize_admin(&admin.0, resource, action)?;
    record.policies = decision.policies;
    if decision.allowed {
        return Ok(());
    }
    Err(Refusal::AccessDenied(match action {
        AdminAction::Revoke { selector, .. } => {
            format!("policy does not permit this admin to revoke by {selector}")
        }
        AdminAction::Lift { .. } => "policy does not permit this admin to lift this block".into(),
        AdminAction::Read { .. } => {
            "policy does not permit this admin to read the kill switch".into()
        }
        AdminAction::RotateKey => "policy does not permit this admin to rotate signing keys".into(),
        AdminAction::RevokeKey { .. } => {
            "policy does not permit this admin to revoke signing keys".into()
        }
        AdminAction::Explain => {
            "policy does not permit this admin to explain decisions on this target".into()
        }
        AdminAction::Inventory => "policy does not permit this admin to list the inventory".into(),
        AdminAction::Approve { .. } => {
            "policy does not permit this admin to decide approvals for this role".into()
        }
    }))
}

/// Asks Cedar whether `admin` may read the broker's state (entries,
/// replicas, keys): the `read` action on the broker itself.
pub(super) fn authorize_read(
    app: &AppState,
    admin: &AdminId,
    record: &mut AuditRecord,
) -> Result<(), Refusal> {
    authorize(
        app,
        admin,
        &app.issuer,
        AdminAction::Read { entry: None },
        record,
    )
}

/// What Cedar sees of `entry`.
fn facts(entry: &Entry) -> EntryFacts<'_> {
    EntryFacts {
        selector: entry.selector.kind(),
        block: entry.block,
        author: &entry.who,
        kind: match entry.kind {
            EntryKind::Revoke => "revoke",
            EntryKind::Lift => "lift",
        },
    }
}

fn describe(selector: &Selector) -> String {
    match selector.value() {
        Some(v) => format!("{}={v}", selector.kind()),
        None => selector.kind().to_owned(),
    }
}

/// `{"applied": N, "live": M}` once every live replica has applied entry
/// `seq`, or `store.propagation_wait` has passed; `null` when the store
/// cannot say (the entry is durable all the same).
async fn replicas_applied(app: &AppState, seq: u64) -> serde_json::Value {
    match app
        .kill_switch
        .propagation(seq, app.config.store.propagation_wait)
        .await
    {
        Ok(p) => {
            if p.applied < p.live {
                tracing::warn!(
                    seq,
                    applied = p.applied,
                    live = p.live,
                    "kill-switch entry not yet applied by every live replica"
                );
            }
            json!({"applied": p.applied, "live": p.live})
        }
        Err(e) => {
            tracing::warn!(error = %e, seq, "cannot tell which replicas applied the entry");
            serde_json::Value::Null
        }
    }
}

fn acknowledgement(entry: &Entry) -> serde_json::Value {
    json!({"id": entry.id, "seq": entry.seq, "effective_at": rfc3339(entry.effective_at)})
}

async fn revoke(
    State(app): State<Arc<AppState>>,
    Extension(admin): Extension<AdminId>,
    peer: Peer,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut record = record(&app, "revoke", &peer, Some(&admin))?;
    let outcome = async {
        let body = body.map_err(|_| Refusal::InvalidRequest("request body could not be read".into()))?;
        let req = RevokeRequest::parse(&body, app.clock.unix_now()).map_err(Refusal::InvalidRequest)?;
        record.target = Some(describe(&req.selector));
        let action = AdminAction::Revoke {
            selector: req.selector.kind(),
            block: req.block,
        };
        authorize(&app, &admin, resource(&app, &req.selector), action, &mut record)?;
        let block = req.block;
        let entry = app.kill_switch.revoke(req, format!("Admin::\"{}\"", admin.0)).await?;
        tracing::warn!(entry = %entry.id, seq = entry.seq, selector = %describe(&entry.selector), block, "kill switch: revocation recorded");
        record.revocation = Some(entry.id.clone());
        let mut answer = acknowledgement(&entry);
        answer["replicas"] = replicas_applied(&app, entry.seq).await;
        Ok((StatusCode::CREATED, answer))
    }
    .await;
    Ok(finish(&app, record, outcome).await)
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    cursor: Option<u64>,
    limit: Option<usize>,
}

async fn list(
    State(app): State<Arc<AppState>>,
    Extension(admin): Extension<AdminId>,
    peer: Peer,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
    let mut record = record(&app, "read", &peer, Some(&admin))?;
    record.target = Some("revocations".into());
    let outcome = (|| {
        authorize_read(&app, &admin, &mut record)?;
        let limit = q.limit.unwrap_or(100).clamp(1, 1000);
        let cursor = q.cursor.unwrap_or(0);
        let live: Vec<_> = app
            .kill_switch
            .live()
            .into_iter()
            .filter(|e| e.seq > cursor)
            .collect();
        let page: Vec<_> = live.iter().take(limit).map(|e| e.to_json(true)).collect();
        let next = (live.len() > limit)
            .then(|| live.get(limit - 1).map(|e| e.seq))
            .flatten();
        Ok((
            StatusCode::OK,
            json!({"entries": page, "next_cursor": next}),
        ))
    })();
    Ok(finish(&app, record, outcome).await)
}

async fn show(
    State(app): State<Arc<AppState>>,
    Extension(admin): Extension<AdminId>,
    peer: Peer,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut record = record(&app, "read", &peer, Some(&admin))?;
    let outcome = async {
        let entry = app
            .kill_switch
            .get(&id)
            .await?
            .ok_or_else(|| Refusal::NotFound(format!("no revocation entry {id}")))?;
        record.target = Some(describe(&entry.selector));
        record.revocation = Some(entry.id.clone());
        let action = AdminAction::Read {
            entry: Some(facts(&entry)),
        };
        authorize(
            &app,
            &admin,
            resource(&app, &entry.selector),
            action,
            &mut record,
        )?;
        Ok((StatusCode::OK, entry.to_json(true)))
    }
    .await;
    Ok(finish(&app, record, outcome).await)
}

async fn lift(
    State(app): State<Arc<AppState>>,
    Extension(admin): Extension<AdminId>,
    peer: Peer,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let mut record = record(&app, "lift", &peer, Some(&admin))?;
    let outcome = async {
        let original = app
            .kill_switch
            .get(&id)
            .await?
            .ok_or_else(|| Refusal::NotFound(format!("no revocation entry {id}")))?;
        record.target = Some(describe(&original.selector));
        let action = AdminAction::Lift {
            entry: facts(&original),
        };
        authorize(
            &app,
            &admin,
            resource(&app, &original.selector),
            action,
            &mut record,
        )?;
        match app
            .kill_switch
            .lift(&id, format!("Admin::\"{}\"", admin.0))
            .await?
        {
            LiftOutcome::Lifted(entry) => {
                tracing::warn!(entry = %entry.id, lifts = %id, "kill switch: block lifted");
                record.revocation = Some(entry.id.clone());
                record.reason = Some(format!("lifts {id}"));
                let mut body = acknowledgement(&entry);
                body["lifts"] = json!(id);
                Ok((StatusCode::OK, body))
            }
            LiftOutcome::NotFound => Err(Refusal::NotFound(format!("no revocation entry {id}"))),
            LiftOutcome::AlreadyLifted => {
                Err(Refusal::Conflict(format!("entry {id} is already lifted")))
            }
            LiftOutcome::NotABlock => Err(Refusal::Conflict(format!(
                "entry {id} blocks nothing; there is nothing to lift"
            ))),
        }
    }
    .await;
    Ok(finish(&app, record, outcome).await)
}

/// `GET /admin/v1/replicas`: the replicas the store knows, how far each has
/// applied the kill switch and how long since it was heard of (`writ
/// status`). Reading it is the `read` action, like the entries.
async fn replicas(
    State(app): State<Arc<AppState>>,
    Extension(admin): Extension<AdminId>,
    peer: Peer,
) -> Result<Response, ApiError> {
    let mut record = record(&app, "read", &peer, Some(&admin))?;
    record.target = Some("replicas".into());
    let outcome = async {
        authorize_read(&app, &admin, &mut record)?;
        let replicas = app.kill_switch.replicas().await?;
        let live_within = app.config.store.max_staleness.as_millis();
        let newest = replicas.iter().map(|r| r.applied_seq).max().unwrap_or(0);
        let rows: Vec<_> = replicas
            .iter()
            .map(|r| {
                json!({
                    "replica_id": r.replica_id,
                    "applied_seq": r.applied_seq,
                    "lag": newest - r.applied_seq,
                    "silent_for_ms": r.silent_for_ms,
                    "live": u128::from(r.silent_for_ms) <= live_within,
                })
            })
            .collect();
        Ok((
            StatusCode::OK,
            json!({
                "answered_by": app.kill_switch.replica_id(),
                "staleness_ms": u64::try_from(app.kill_switch.staleness().age().as_millis()).unwrap_or(u64::MAX),
                "replicas": rows,
            }),
        ))
    }
    .await;
    Ok(finish(&app, record, outcome).await)
}
