//! Exchanging a writ token (`subject_token_type` access_token) for a narrower one:
//! same audience, a subset of its scopes, never a longer life.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::*;
use serde_json::json;

/// Lets policy permit re-exchanges of writ tokens; the subset and audience rules are writ's own.
const NARROWING: &str = r#"@id("narrowing")
permit (principal, action == Action::"mint", resource)
when { context.attestation == "writ" };
"#;

async fn start_with_narrowing() -> (TestEnv, Server) {
    let env = TestEnv::new();
    env.write_policy("narrowing.cedar", NARROWING);
    let server = env.start().await;
    (env, server)
}

#[tokio::test]
async fn writ_token_is_narrowed_to_a_subset_of_its_scopes() {
    let (env, server) = start_with_narrowing().await;
    let broad = server
        .mint(&env.k8s_token(), ORDERS, "orders.read orders.write")
        .await;

    let reply = server
        .token(&TokenRequest::narrow(
            &broad.access_token,
            ORDERS,
            "orders.read",
        ))
        .await;

    let narrow = assert_granted(&reply);
    assert_eq!(narrow.scope, "orders.read");
    assert_eq!(narrow.claims["scope"], "orders.read");
    assert_eq!(narrow.claims["sub"], WORKLOAD);
    assert_eq!(narrow.claims["aud"], ORDERS);
    assert_eq!(narrow.claims["attestation"], "writ");
}

#[tokio::test]
async fn widening_a_writ_token_is_invalid_scope() {
    let (env, server) = start_with_narrowing().await;
    let read_only = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    let request = TokenRequest::narrow(&read_only.access_token, ORDERS, "orders.read orders.write");
    let reply = server.token(&request).await;

    assert_refused(&reply, 400, "invalid_scope");
}

#[tokio::test]
async fn narrowing_to_another_audience_is_invalid_target() {
    let (env, server) = start_with_narrowing().await;
    let for_orders = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    let reply = server
        .token(&TokenRequest::narrow(
            &for_orders.access_token,
            LEDGER,
            "orders.read",
        ))
        .await;

    assert_refused(&reply, 400, "invalid_target");
}

#[tokio::test]
async fn narrowed_token_never_outlives_the_token_it_came_from() {
    let (env, server) = start_with_narrowing().await;
    let original = assert_granted(
        &server
            .token(&orders_read(&env.k8s_token()).requested_ttl(120))
            .await,
    );

    let request =
        TokenRequest::narrow(&original.access_token, ORDERS, "orders.read").requested_ttl(600);
    let narrow = assert_granted(&server.token(&request).await);

    assert!(
        narrow.claim_i64("exp") <= original.claim_i64("exp"),
        "narrowed exp {} is after the original's {}",
        narrow.claims["exp"],
        original.claims["exp"]
    );
    assert!(
        narrow.expires_in <= 120,
        "narrowed token lives {} s",
        narrow.expires_in
    );
}

#[tokio::test]
async fn tampered_writ_token_is_invalid_grant() {
    let (env, server) = start_with_narrowing().await;
    let read_only = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    let mut claims = read_only.claims.clone();
    claims["scope"] = json!("orders.read orders.write");
    let tampered = with_claims(&read_only.access_token, &claims);

    let reply = server
        .token(&TokenRequest::narrow(&tampered, ORDERS, "orders.write"))
        .await;

    assert_refused(&reply, 400, "invalid_grant");
}
