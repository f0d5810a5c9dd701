//! The router: OAuth endpoints and discovery for clients; the revocation
//! feed, admin API and health endpoints for operations. Each group is behind
//! a [`GuardLayer`] of its own that sheds load and bounds request time and
//! body size.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::AppState;
use super::guard::{GuardLayer, MAX_BODY_BYTES};

pub(super) fn router(state: Arc<AppState>) -> Router {
    // A flood of client requests must not lock operators out of the kill
    // switch, nor verifiers out of the revocation feed: those routes and the
    // health endpoints take their permits from a pool of their own.
    let clients = Router::new()
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/openid-configuration", get(metadata))
        .route("/jwks.json", get(jwks))
        .route("/oauth2/token", post(super::token::token))
        .route("/oauth2/introspect", post(super::introspect::introspect))
        .route("/oauth2/revoke", post(super::feed::self_revoke))
        .layer(GuardLayer::new(state.clone()));
    let operations = Router::new()
        .route("/v1/revocations", get(super::feed::page))
        .route("/v1/revocations/stream", get(super::feed::stream))
        .merge(super::admin::router(state.clone()))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(GuardLayer::new(state.clone()));
    clients
        .merge(operations)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
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
