//! Token lifetime: the least of `requested_ttl` (or `tokens.default_ttl`), every
//! determining permit's `@max_ttl`, and `tokens.max_ttl`; `expires_in` is `exp - iat`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::*;

/// Asserts the token lives exactly `seconds`, in the response and in its claims.
#[track_caller]
fn assert_lifetime(minted: &Minted, seconds: i64) {
    assert_eq!(minted.expires_in, seconds, "expires_in of {}", minted.body);
    assert_eq!(minted.lifetime(), seconds, "exp - iat of {}", minted.claims);
}

#[tokio::test]
async fn expires_in_equals_exp_minus_iat() {
    let (env, server) = start_standard().await;

    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    assert_eq!(minted.expires_in, minted.lifetime());
}

#[tokio::test]
async fn lifetime_is_the_requested_ttl_when_below_every_cap() {
    let (env, server) = start_standard().await;

    let reply = server
        .token(&orders_read(&env.k8s_token()).requested_ttl(90))
        .await;

    assert_lifetime(&assert_granted(&reply), 90);
}

#[tokio::test]
async fn lifetime_without_requested_ttl_is_tokens_default_ttl() {
    let mut env = TestEnv::new();
    env.config.default_ttl = "4m".to_string();
    let server = env.start().await;

    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    assert_lifetime(&minted, 240);
}

#[tokio::test]
async fn lifetime_is_capped_by_the_permit_max_ttl() {
    let env = TestEnv::new();
    env.set_policies(&[(
        "short.cedar",
        r#"@id("orders-read-two-minutes")
@max_ttl("120")
permit (principal, action == Action::"mint", resource == Target::"orders")
when { context.scope == "orders.read" };
"#,
    )]);
    let server = env.start().await;

    let reply = server
        .token(&orders_read(&env.k8s_token()).requested_ttl(600))
        .await;

    assert_lifetime(&assert_granted(&reply), 120);
}

#[tokio::test]
async fn lifetime_is_capped_by_the_smallest_max_ttl_of_the_determining_permits() {
    let env = TestEnv::new();
    env.set_policies(&[(
        "two.cedar",
        r#"@id("orders-read-five-minutes")
@max_ttl("300")
permit (principal, action == Action::"mint", resource == Target::"orders")
when { context.scope == "orders.read" };

@id("orders-read-two-minutes")
@max_ttl("120")
permit (principal, action == Action::"mint", resource == Target::"orders")
when { context.scope == "orders.read" };
"#,
    )]);
    let server = env.start().await;

    let reply = server
        .token(&orders_read(&env.k8s_token()).requested_ttl(600))
        .await;

    assert_lifetime(&assert_granted(&reply), 120);
}

#[tokio::test]
async fn lifetime_is_capped_by_tokens_max_ttl() {
    let mut env = TestEnv::new();
    env.config.max_ttl = "3m".to_string();
    let server = env.start().await;

    let reply = server
        .token(&orders_read(&env.k8s_token()).requested_ttl(600))
        .await;

    assert_lifetime(&assert_granted(&reply), 180);
}
