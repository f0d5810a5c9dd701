//! Discovery and keys: RFC 8414 metadata at both well-known paths, the JWKS that
//! verifies minted tokens (also across restarts and with EdDSA), and issuer keys
//! fetched from an HTTPS `jwks_uri`: refetched on an unknown kid, failing closed
//! when the identity provider is unreachable.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::*;
use serde_json::{Value, json};

#[track_caller]
fn assert_metadata(document: &Value, issuer: &str) {
    assert_eq!(document["issuer"], issuer);
    assert_eq!(document["token_endpoint"], format!("{issuer}/oauth2/token"));
    assert_eq!(document["jwks_uri"], format!("{issuer}/jwks.json"));
    assert_eq!(
        document["introspection_endpoint"],
        format!("{issuer}/oauth2/introspect")
    );
    assert_eq!(
        document["revocation_endpoint"],
        format!("{issuer}/oauth2/revoke")
    );
    assert!(
        document["revocation_feed_endpoint"]
            .as_str()
            .is_some_and(|url| url.starts_with(issuer)),
        "revocation_feed_endpoint in {document}"
    );
    assert!(
        document["grant_types_supported"]
            .as_array()
            .is_some_and(|grants| grants.contains(&json!(TOKEN_EXCHANGE))),
        "grant_types_supported in {document}"
    );
    for list in [
        "token_endpoint_auth_methods_supported",
        "dpop_signing_alg_values_supported",
    ] {
        assert!(document[list].is_array(), "{list} in {document}");
    }
}

/// The JWK in `jwks` whose `kid` is the one in the header of `minted`.
#[track_caller]
fn key_of<'a>(jwks: &'a Value, minted: &Minted) -> &'a Value {
    let kid = &minted.header["kid"];
    jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|key| &key["kid"] == kid))
        .unwrap_or_else(|| panic!("kid {kid} not in {jwks}"))
}

#[tokio::test]
async fn metadata_is_served_at_the_oauth_authorization_server_path() {
    let (_env, server) = start_standard().await;

    let document = server
        .get_json("/.well-known/oauth-authorization-server")
        .await;

    assert_metadata(&document, &server.url);
}

#[tokio::test]
async fn metadata_is_served_at_the_openid_configuration_path() {
    let (_env, server) = start_standard().await;

    let document = server.get_json("/.well-known/openid-configuration").await;

    assert_metadata(&document, &server.url);
}

#[tokio::test]
async fn jwks_publishes_the_key_that_signs_minted_tokens() {
    let (env, server) = start_standard().await;
    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    let jwks = server.jwks().await;

    let key = key_of(&jwks, &minted);
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["alg"], "ES256");
    assert_eq!(key["use"], "sig");
    verify_with_jwks(&minted.access_token, &jwks, &server.url, ORDERS).unwrap();
}

#[tokio::test]
async fn token_minted_before_a_restart_verifies_after_it() {
    let (env, mut server) = start_standard().await;
    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    let issuer_before_restart = server.url.clone();

    server.restart().await;

    let jwks = server.jwks().await;
    verify_with_jwks(&minted.access_token, &jwks, &issuer_before_restart, ORDERS).unwrap();
}

#[tokio::test]
async fn eddsa_configuration_mints_eddsa_tokens() {
    let mut env = TestEnv::new();
    env.config.algorithm = "EdDSA".to_string();
    let server = env.start().await;

    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    assert_eq!(minted.header["alg"], "EdDSA");
    let jwks = server.jwks().await;
    let key = key_of(&jwks, &minted);
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    verify_with_jwks(&minted.access_token, &jwks, &server.url, ORDERS).unwrap();
}

// --- Issuer keys from a jwks_uri ----------------------------------------------------------

#[tokio::test]
async fn issuer_keys_are_fetched_from_an_https_jwks_uri() {
    let mut env = TestEnv::new();
    let identity_provider = JwksServer::start(&env.pki, env.k8s.jwks()).await;
    env.k8s.jwks_uri = Some(identity_provider.url.clone());
    let server = env.start().await;

    let reply = server.token(&orders_read(&env.k8s_token())).await;

    assert_granted(&reply);
    assert!(
        identity_provider.fetches() >= 1,
        "writ never fetched the JWKS"
    );
}

#[tokio::test]
async fn unknown_kid_makes_writ_refetch_the_jwks_uri() {
    let mut env = TestEnv::new();
    let identity_provider = JwksServer::start(&env.pki, env.k8s.jwks()).await;
    env.k8s.jwks_uri = Some(identity_provider.url.clone());
    let server = env.start().await;
    server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    // The identity provider rotates to a new key writ has not seen.
    let rotated = SigningKey::generate(Alg::Es256);
    identity_provider.publish(json!({"keys": [env.k8s.key.jwk(), rotated.jwk()]}));
    let token = rotated.sign(&env.k8s.service_account_claims(NAMESPACE, SERVICE_ACCOUNT));

    let reply = server.token(&orders_read(&token)).await;

    assert_granted(&reply);
}

#[tokio::test]
async fn a_withdrawn_issuer_key_stops_tokens_writ_already_verified() {
    let mut env = TestEnv::new();
    let identity_provider = JwksServer::start(&env.pki, env.k8s.jwks()).await;
    env.k8s.jwks_uri = Some(identity_provider.url.clone());
    env.k8s.jwks_refresh = Some("100ms".to_string());
    let server = env.start().await;
    let token = env.k8s_token();
    server.mint(&token, ORDERS, "orders.read").await; // verified, and cached

    // The identity provider withdraws the (compromised) key.
    let replacement = SigningKey::generate(Alg::Es256);
    identity_provider.publish(json!({"keys": [replacement.jwk()]}));

    let reply = server
        .wait_for_token_status(&orders_read(&token), 400, "the cached token to be refused")
        .await;
    assert_refused(&reply, 400, "invalid_grant");
}

#[tokio::test]
async fn unreachable_jwks_uri_fails_closed() {
    let mut env = TestEnv::new();
    let identity_provider = JwksServer::start(&env.pki, env.k8s.jwks()).await;
    env.k8s.jwks_uri = Some(identity_provider.url.clone());
    // The identity provider goes down before writ ever reaches it.
    identity_provider.stop().await;
    let server = env.start().await;

    let reply = server.token(&orders_read(&env.k8s_token())).await;

    assert_refused(&reply, 400, "invalid_grant");
}
