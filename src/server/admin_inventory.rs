//! `GET /admin/v1/inventory[?stale=30d]` (CONTRACT section 10): `writ
//! inventory` over the admin API, read from this broker's own audit file
//! with owners from the live policy set. Behind the admin authentication;
//! Cedar's `inventory` action on the broker itself; audited.
//!
//! The answer is `200 {"principals": [...], "unreadable_lines": N}`. A
//! broker whose audit goes to PostgreSQL (several replicas) has no file to
//! read: it answers `404 not_found` saying so, and the operator runs `writ
//! inventory` on an export of the records instead.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::admin::{AdminId, authorize, finish, record};
use super::error::ApiError;
use crate::attest::Peer;
use crate::grant::Refusal;
use crate::policy::AdminAction;

/// The inventory route, merged into the admin router (and its authentication).
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/admin/v1/inventory", get(inventory))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryQuery {
    /// Only principals unused this long, e.g. `30d`.
    stale: Option<String>,
}

async fn inventory(
    State(app): State<Arc<AppState>>,
    Extension(admin): Extension<AdminId>,
    peer: Peer,
    query: Result<Query<InventoryQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let mut record = record(&app, "inventory", &peer, Some(&admin))?;
    record.target = Some("inventory".into());
    let outcome = async {
        let Query(query) =
            query.map_err(|e| Refusal::InvalidRequest(format!("bad query: {e}")))?;
        let stale = query
            .stale
            .as_deref()
            .map(humantime::parse_duration)
            .transpose()
            .map_err(|e| Refusal::InvalidRequest(format!("stale: {e}")))?;
        authorize(
            &app,
            &admin,
            &app.issuer,
            AdminAction::Inventory,
            &mut record,
        )?;
        if crate::store::is_postgres(&app.config.store.url) {
            return Err(Refusal::NotFound(
                "this broker audits to PostgreSQL, not a file: run `writ inventory` on an export of the audit records".into(),
            ));
        }
        let path = app.config.audit.path.clone();
        let read = tokio::task::spawn_blocking(move || {
            crate::inventory::read(&path, |e| tracing::warn!(error = %e, "inventory: audit line skipped"))
        })
            .await
            .map_err(|_| Refusal::Unavailable("the inventory could not be read".into()))?
            .map_err(|e| {
                tracing::error!(error = %e, "inventory: audit log unreadable");
                Refusal::Unavailable("the audit log could not be read".into())
            })?;
        let unreadable = read.unreadable;
        let snapshot = app.policy.snapshot();
        let principals = read.finish(Some(&snapshot), stale, app.clock.unix_now());
        Ok((
            StatusCode::OK,
            json!({ "principals": principals, "unreadable_lines": unreadable }),
        ))
    }
    .await;
    Ok(finish(&app, record, outcome).await)
}
