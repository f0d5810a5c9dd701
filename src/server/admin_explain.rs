//! `POST /admin/v1/explain` (CONTRACT section 10): `writ policy explain`
//! over the admin API, against the live policy set. Behind the admin
//! authentication; Cedar's `explain` action on the explained target;
//! audited like every admin call.
//!
//! The body is the explain request (`{principal, target, scopes,
//! context}`); the answer `200 {"scopes": [{scope, decision, policies,
//! sources, errors, max_ttl}]}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Router};
use serde_json::json;

use super::AppState;
use super::admin::{AdminId, authorize, finish, record};
use super::error::ApiError;
use crate::attest::Peer;
use crate::grant::Refusal;
use crate::policy::{AdminAction, ExplainError, ExplainRequest};

/// The explain route, merged into the admin router (and its authentication).
pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/admin/v1/explain", post(explain))
}

async fn explain(
    State(app): State<Arc<AppState>>,
    Extension(admin): Extension<AdminId>,
    peer: Peer,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let mut record = record(&app, "explain", &peer, Some(&admin))?;
    let outcome = async {
        let body =
            body.map_err(|_| Refusal::InvalidRequest("request body could not be read".into()))?;
        let req: ExplainRequest = serde_json::from_slice(&body)
            .map_err(|e| Refusal::InvalidRequest(format!("not an explain request: {e}")))?;
        record.target = Some(req.target.clone());
        authorize(&app, &admin, &req.target, AdminAction::Explain, &mut record)?;
        let answers = app
            .policy
            .snapshot()
            .explain(
                &req,
                app.clock.unix_now(),
                app.config.tokens.default_ttl.as_secs(),
            )
            .map_err(|e| match e {
                ExplainError::Policy(e) => Refusal::from(e),
                invalid => Refusal::InvalidRequest(invalid.to_string()),
            })?;
        Ok((StatusCode::OK, json!({ "scopes": answers })))
    }
    .await;
    Ok(finish(&app, record, outcome).await)
}
