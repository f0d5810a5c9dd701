//! `POST /oauth2/introspect` (RFC 7662): active with claims for a live writ token,
//! `{"active": false}` for anything else, and only for authenticated callers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::*;
use serde_json::{Value, json};

#[track_caller]
fn assert_inactive(introspection: &Value) {
    assert_eq!(introspection, &json!({"active": false}));
}

#[track_caller]
fn assert_invalid_client(reply: &Reply) {
    assert_eq!(
        (reply.status, reply.error()),
        (401, Some("invalid_client")),
        "{}",
        reply.describe()
    );
    assert!(
        reply.header("www-authenticate").is_some(),
        "no WWW-Authenticate on {}",
        reply.describe()
    );
}

#[tokio::test]
async fn live_token_is_active_with_its_claims() {
    let (env, server) = start_standard().await;
    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    let introspection = server.introspect_as_admin(&minted.access_token).await;

    assert_eq!(introspection["active"], true);
    assert_eq!(introspection["token_type"], "Bearer");
    for claim in [
        "sub",
        "aud",
        "iss",
        "scope",
        "client_id",
        "exp",
        "iat",
        "nbf",
        "jti",
    ] {
        assert_eq!(
            introspection[claim], minted.claims[claim],
            "`{claim}` of {introspection}"
        );
    }
}

#[tokio::test]
async fn expired_token_is_inactive() {
    let (env, server) = start_standard().await;
    let reply = server
        .token(&orders_read(&env.k8s_token()).requested_ttl(1))
        .await;
    let minted = assert_granted(&reply);

    let introspection = eventually("the one-second token to expire", async || {
        let introspection = server.introspect_as_admin(&minted.access_token).await;
        if introspection["active"] == false {
            Ok(introspection)
        } else {
            Err(introspection.to_string())
        }
    })
    .await;

    assert_inactive(&introspection);
}

#[tokio::test]
async fn token_signed_by_another_key_is_inactive() {
    let (env, server) = start_standard().await;
    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    let foreign = SigningKey::generate(Alg::Es256).sign_with_header(&minted.header, &minted.claims);

    let introspection = server.introspect_as_admin(&foreign).await;

    assert_inactive(&introspection);
}

#[tokio::test]
async fn tampered_token_is_inactive() {
    let (env, server) = start_standard().await;
    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    let mut claims = minted.claims.clone();
    claims["scope"] = json!("orders.read orders.admin");

    let introspection = server
        .introspect_as_admin(&with_claims(&minted.access_token, &claims))
        .await;

    assert_inactive(&introspection);
}

#[tokio::test]
async fn malformed_token_is_inactive() {
    let (_env, server) = start_standard().await;

    let introspection = server.introspect_as_admin("not-a-jwt").await;

    assert_inactive(&introspection);
}

#[tokio::test]
async fn introspection_without_credentials_is_invalid_client() {
    let (env, server) = start_standard().await;
    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    let reply = server.introspect(&minted.access_token, None).await;

    assert_invalid_client(&reply);
}

#[tokio::test]
async fn introspection_with_a_wrong_admin_token_is_invalid_client() {
    let (env, server) = start_standard().await;
    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    let reply = server
        .introspect(&minted.access_token, Some("not-the-admin-token"))
        .await;

    assert_invalid_client(&reply);
}

/// A server whose `issuer` is pinned to [`SELF_ISSUER`], a target workloads may ask tokens for.
async fn start_with_self_issuer() -> (TestEnv, Server) {
    let mut env = TestEnv::new();
    env.config.issuer = Some(SELF_ISSUER.to_string());
    let server = env.start().await;
    (env, server)
}

#[tokio::test]
async fn writ_token_whose_audience_is_the_issuer_may_introspect() {
    let (env, server) = start_with_self_issuer().await;
    let caller = server
        .mint(&env.k8s_token(), SELF_ISSUER, "introspect")
        .await;
    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    let reply = server
        .introspect(&minted.access_token, Some(&caller.access_token))
        .await;

    assert_eq!(reply.status, 200, "{}", reply.describe());
    assert_eq!(reply.json["active"], true);
    assert_eq!(reply.json["jti"], minted.claims["jti"]);
}

#[tokio::test]
async fn writ_token_for_another_audience_may_not_introspect() {
    let (env, server) = start_with_self_issuer().await;
    let caller = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    let reply = server
        .introspect(&minted.access_token, Some(&caller.access_token))
        .await;

    assert_invalid_client(&reply);
}
