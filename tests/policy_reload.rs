//! Hot reload of `policies/`: a good change takes effect without a restart
//! (file change or SIGHUP); an invalid set is refused, named by file:line on
//! stderr, and the last good set stays live.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::*;

/// Permits `orders.admin`, which the standard policies do not.
const GRANT_ORDERS_ADMIN: &str = r#"@id("orders-admin")
permit (principal, action == Action::"mint", resource == Target::"orders")
when { context.scope == "orders.admin" };
"#;

/// A valid permit for `orders.admin` followed by a syntax error on line 4.
const BROKEN: &str = r#"@id("orders-admin")
permit (principal, action == Action::"mint", resource == Target::"orders")
when { context.scope == "orders.admin" };
permit (principal, action, resource) when { context.scope == };
"#;

fn orders_admin(subject_token: &str) -> TokenRequest {
    TokenRequest::exchange(subject_token, ORDERS, "orders.admin")
}

#[tokio::test]
async fn new_policy_file_takes_effect_without_restart() {
    let (env, server) = start_standard().await;
    let ask = orders_admin(&env.k8s_token());
    assert_refused(&server.token(&ask).await, 403, "access_denied");

    env.write_policy("admin.cedar", GRANT_ORDERS_ADMIN);

    let reply = server
        .wait_for_token_status(&ask, 200, "the new policy file to grant orders.admin")
        .await;
    assert_eq!(assert_granted(&reply).scope, "orders.admin");
}

#[tokio::test]
async fn edited_policy_file_takes_effect_without_restart() {
    let (env, server) = start_standard().await;
    let ask = orders_admin(&env.k8s_token());
    assert_refused(&server.token(&ask).await, 403, "access_denied");

    let edited = STANDARD_POLICIES.replace(
        r#"["orders.read", "orders.write"]"#,
        r#"["orders.read", "orders.write", "orders.admin"]"#,
    );
    assert_ne!(
        edited, STANDARD_POLICIES,
        "the edit must change the standard policies"
    );
    env.write_policy("standard.cedar", &edited);

    server
        .wait_for_token_status(&ask, 200, "the edited policy to grant orders.admin")
        .await;
}

#[tokio::test]
async fn invalid_policy_set_is_reported_on_stderr_with_file_and_line() {
    let (env, server) = start_standard().await;

    env.write_policy("broken.cedar", BROKEN);

    server.wait_for_stderr("broken.cedar:4").await;
}

#[tokio::test]
async fn invalid_policy_set_is_refused_and_the_last_good_set_stays_live() {
    let (env, server) = start_standard().await;

    env.write_policy("broken.cedar", BROKEN);
    server.wait_for_stderr("broken.cedar:4").await;

    assert_granted(&server.token(&orders_read(&env.k8s_token())).await);
    assert_refused(
        &server.token(&orders_admin(&env.k8s_token())).await,
        403,
        "access_denied",
    );
}

#[tokio::test]
async fn sighup_reloads_policies() {
    let mut env = TestEnv::new();
    // Polling would pick the change up too; an hour-long period leaves it to SIGHUP.
    env.config.reload_interval = "1h".to_string();
    let server = env.start().await;
    let ask = orders_admin(&env.k8s_token());
    assert_refused(&server.token(&ask).await, 403, "access_denied");

    env.write_policy("admin.cedar", GRANT_ORDERS_ADMIN);
    server.sighup();

    server
        .wait_for_token_status(&ask, 200, "SIGHUP to load the policy granting orders.admin")
        .await;
}
