//! The router: OAuth endpoints, discovery, operations; one middleware stack
//! that sheds load and bounds request time with 503 `temporarily_unavailable`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{BoxError, Router};
use serde_json::json;
use tower::ServiceBuilder;

use super::AppState;
use super::error::ApiError;
use crate::audit::{AuditLog, AuditRecord};
use crate::clock::rfc3339;
use crate::grant::Refusal;

/// The largest request body accepted (form posts).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How much of an oversized body is read and dropped before answering 413,
/// so a client still sending reads the answer instead of a reset...
const DRAIN_BYTES: usize = 1024 * 1024;
/// ...and for how long at most.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

pub(super) fn router(state: Arc<AppState>) -> Router {
    let limits = state.config.limits.clone();
    let audit = state.audit.clone();
    let clock = state.clock.clone();
    Router::new()
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/openid-configuration", get(metadata))
        .route("/jwks.json", get(jwks))
        .route("/oauth2/token", post(super::token::token))
        .route("/oauth2/introspect", post(super::introspect::introspect))
        .route("/oauth2/revoke", post(super::feed::self_revoke))
        .route("/v1/revocations", get(super::feed::page))
        .route("/v1/revocations/stream", get(super::feed::stream))
        .merge(super::admin::router(state.clone()))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            bounded_body,
        ))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(move |err: BoxError| {
                    overloaded(audit.clone(), clock.unix_now(), err)
                }))
                .load_shed()
                .concurrency_limit(limits.max_concurrent_requests)
                .timeout(limits.request_timeout),
        )
        .with_state(state)
}

/// 503 for a request shed by load or time limits; audited like any refusal.
async fn overloaded(audit: AuditLog, now: u64, err: BoxError) -> Response {
    let why = if err.is::<tower::timeout::error::Elapsed>() {
        "request timed out"
    } else {
        "server is overloaded"
    };
    tracing::warn!(reason = why, "request shed");
    refuse_unrouted(&audit, now, Refusal::Unavailable(why.into())).await
}

/// Audits and renders a request refused before any handler ran (shed, timed
/// out, too large). Without a decision id the answer is the 503 of
/// [`new_decision_id`](super::error::new_decision_id), and so is the record.
async fn refuse_unrouted(audit: &AuditLog, now: u64, refusal: Refusal) -> Response {
    let error = ApiError::fresh(refusal);
    let mut record = AuditRecord::new(
        "request",
        error.decision_id.clone(),
        rfc3339(now),
        "-".into(),
    );
    record.error = Some(error.refusal.code());
    record.reason = Some(error.refusal.description());
    audit.record(record).await;
    error.into_response()
}

/// Reads a request body up to [`MAX_BODY_BYTES`]. A larger one (declared or
/// sent) is answered 413 with `Connection: close` once what is in flight has
/// been drained (at most [`DRAIN_BYTES`] for [`DRAIN_TIME`]), so the client
/// sees the answer rather than a connection reset.
async fn bounded_body(
    State(app): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use futures_util::StreamExt as _;
    let (parts, body) = request.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // A declared length within the limit is held to by HTTP framing (and
    // DefaultBodyLimit stands behind it): nothing to buffer here.
    if declared.is_some_and(|n| n <= MAX_BODY_BYTES as u64) {
        return next
            .run(axum::extract::Request::from_parts(parts, body))
            .await;
    }
    let mut oversized = declared.is_some();
    let mut stream = body.into_data_stream();
    let mut read = Vec::new();
    while !oversized {
        match stream.next().await {
            Some(Ok(chunk)) if read.len() + chunk.len() <= MAX_BODY_BYTES => {
                read.extend_from_slice(&chunk);
            }
            Some(Ok(_)) => oversized = true,
            // The client went away or broke framing: nothing to answer well.
            Some(Err(_)) => return StatusCode::BAD_REQUEST.into_response(),
            None => break,
        }
    }
    if !oversized {
        let body = axum::body::Body::from(read);
        return next
            .run(axum::extract::Request::from_parts(parts, body))
            .await;
    }
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut drained = 0;
        while let Some(Ok(chunk)) = stream.next().await {
            drained += chunk.len();
            if drained > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
    tracing::info!(
        path = parts.uri.path(),
        ?declared,
        "request body over the limit"
    );
    too_large(&app, parts.version).await
}

/// 413 for an oversized body, audited, closing an HTTP/1 connection.
async fn too_large(app: &AppState, version: axum::http::Version) -> Response {
    let mut response =
        refuse_unrouted(&app.audit, app.clock.unix_now(), Refusal::PayloadTooLarge).await;
    // HTTP/2 streams end without closing the connection (and forbid the header).
    if version < axum::http::Version::HTTP_2 {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn json_bytes(body: Bytes, cache: &'static str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body,
    )
        .into_response()
}

/// RFC 8414 metadata; every endpoint is discoverable from it.
async fn metadata(State(app): State<Arc<AppState>>) -> Response {
    let iss = &app.issuer;
    let mtls = app.config.tls.client_ca.is_some();
    // client_credentials is served whenever some caller can use it: one with
    // a client certificate, or one on the Unix socket.
    let mut grant_types = vec!["urn:ietf:params:oauth:grant-type:token-exchange"];
    if mtls || app.config.server.unix_socket.is_some() {
        grant_types.push("client_credentials");
    }
    // The jwt-bearer grant is served when an enterprise IdP is trusted for ID-JAGs.
    if app
        .config
        .issuers
        .iter()
        .any(|i| i.kind == crate::config::IssuerKind::IdJag)
    {
        grant_types.push(crate::grant::JWT_BEARER);
    }
    let auth_methods = if mtls {
        json!(["none", "tls_client_auth"])
    } else {
        json!(["none"])
    };
    let doc = json!({
        "issuer": iss,
        "token_endpoint": format!("{iss}/oauth2/token"),
        "jwks_uri": format!("{iss}/jwks.json"),
        "introspection_endpoint": format!("{iss}/oauth2/introspect"),
        "revocation_endpoint": format!("{iss}/oauth2/revoke"),
        "revocation_feed_endpoint": format!("{iss}/v1/revocations"),
        "grant_types_supported": grant_types,
        "token_endpoint_auth_methods_supported": auth_methods,
        "tls_client_certificate_bound_access_tokens": mtls,
        "introspection_endpoint_auth_methods_supported": ["bearer"],
        "dpop_signing_alg_values_supported": ["ES256", "ES384", "EdDSA", "RS256", "PS256"],
        // RFC 8707: `resource` names the target at the token endpoint.
        "resource_indicators_supported": true,
        "response_types_supported": [],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [app.config.tokens.algorithm.as_str()],
    });
    json_bytes(Bytes::from(doc.to_string()), "public, max-age=300")
}

/// The public keys of minted tokens.
async fn jwks(State(app): State<Arc<AppState>>) -> Response {
    json_bytes(app.keys.jwks_json(), "public, max-age=60")
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when policies are loaded (they are, once serving) and the store answers.
/// Ready when the store answers, this replica's view of the kill switch is
/// fresh enough to mint on, and the key ring has a key to sign with now.
async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    if let Err(e) = app.store.ping().await {
        tracing::warn!(error = %e, "not ready: store unreachable");
        return (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n").into_response();
    }
    if let Err(stale) = app.kill_switch.staleness().check() {
        tracing::warn!(
            age_ms = stale.age.as_millis(),
            "not ready: kill-switch view too old"
        );
        return (StatusCode::SERVICE_UNAVAILABLE, format!("{stale}\n")).into_response();
    }
    if app
        .keys
        .snapshot()
        .signer_at(app.clock.unix_now())
        .is_none()
    {
        tracing::warn!("not ready: no signing key is active");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no signing key is active\n",
        )
            .into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    app.metrics.kill_switch_view(
        app.kill_switch.applied().await,
        app.kill_switch.staleness().age(),
    );
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        app.metrics.render(),
    )
        .into_response()
}
