//! What reaches Cedar (CONTRACT section 4): each test makes one condition the
//! only policy, so the token is granted only if writ put that value in the
//! request's context, principal or resource.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::*;

/// Starts writ whose only policy permits `orders.read` on `orders` under `condition`.
async fn start_with_only(condition: &str) -> (TestEnv, Server) {
    let env = TestEnv::new();
    let policy = permit_orders_read_when(condition);
    env.set_policies(&[("only.cedar", policy.as_str())]);
    let server = env.start().await;
    (env, server)
}

/// Asks as `payments/api` (Kubernetes) under a policy permitting only when `condition` holds.
async fn workload_asks_under(condition: &str) -> Reply {
    let (env, server) = start_with_only(condition).await;
    server.token(&orders_read(&env.k8s_token())).await
}

/// Asks as the acme/app CI job (OIDC) under a policy permitting only when `condition` holds.
async fn ci_job_asks_under(condition: &str) -> Reply {
    let (env, server) = start_with_only(condition).await;
    server
        .token(&orders_read(&env.ci_token()).set("subject_token_type", ID_TOKEN))
        .await
}

// --- Context ------------------------------------------------------------------------

#[tokio::test]
async fn condition_that_does_not_hold_denies() {
    let reply = workload_asks_under(r#"context.attestation == "oidc""#).await;

    assert_refused(&reply, 403, "access_denied");
}

#[tokio::test]
async fn each_requested_scope_is_decided_on_its_own() {
    let env = TestEnv::new();
    env.set_policies(&[(
        "writes.cedar",
        r#"permit (principal, action == Action::"mint", resource == Target::"orders")
when { context.scope == "orders.write" };
"#,
    )]);
    let server = env.start().await;

    let request = TokenRequest::exchange(&env.k8s_token(), ORDERS, "orders.read orders.write");
    let minted = assert_granted(&server.token(&request).await);

    assert_eq!(minted.scope, "orders.write");
}

#[tokio::test]
async fn requested_ttl_is_in_context_in_seconds() {
    let (env, server) = start_with_only("context.requested_ttl == 120").await;

    let reply = server
        .token(&orders_read(&env.k8s_token()).requested_ttl(120))
        .await;

    assert_granted(&reply);
}

#[tokio::test]
async fn now_is_in_context_as_a_datetime() {
    let condition = format!(
        r#"context.now > datetime("{}") && context.now < datetime("{}")"#,
        cedar_datetime(now() - 300),
        cedar_datetime(now() + 300)
    );

    assert_granted(&workload_asks_under(&condition).await);
}

#[tokio::test]
async fn hour_is_in_context_as_the_utc_hour() {
    // Either side of an hour boundary the request may straddle.
    let (this_hour, next_minute_hour) = (Utc::at(now()).hour, Utc::at(now() + 60).hour);
    let condition = format!("context.hour == {this_hour} || context.hour == {next_minute_hour}");

    assert_granted(&workload_asks_under(&condition).await);
}

#[tokio::test]
async fn weekday_is_in_context_as_a_three_letter_utc_day() {
    let (today, next_minute_day) = (Utc::at(now()).weekday, Utc::at(now() + 60).weekday);
    let condition =
        format!(r#"context.weekday == "{today}" || context.weekday == "{next_minute_day}""#);

    assert_granted(&workload_asks_under(&condition).await);
}

#[tokio::test]
async fn source_ip_is_the_callers_address() {
    let (env, server) = start_with_only(r#"context.source_ip.isInRange(ip("127.0.0.2/32"))"#).await;
    let request = orders_read(&env.k8s_token());

    assert_granted(&server.token_from([127, 0, 0, 2].into(), &request).await);
    assert_refused(
        &server.token_from([127, 0, 0, 1].into(), &request).await,
        403,
        "access_denied",
    );
}

#[tokio::test]
async fn attestation_is_kubernetes_for_a_service_account_token() {
    let reply = workload_asks_under(r#"context.attestation == "kubernetes""#).await;

    assert_granted(&reply);
}

#[tokio::test]
async fn attestation_is_oidc_for_an_oidc_token() {
    let reply = ci_job_asks_under(r#"context.attestation == "oidc""#).await;

    assert_granted(&reply);
}

#[tokio::test]
async fn sender_constrained_is_false_for_a_bearer_request() {
    let reply = workload_asks_under("context.sender_constrained == false").await;

    assert_granted(&reply);
}

#[tokio::test]
async fn delegation_depth_is_zero_without_an_actor() {
    let reply = workload_asks_under("context.delegation_depth == 0").await;

    assert_granted(&reply);
}

// --- Kubernetes principal ---------------------------------------------------------------

#[tokio::test]
async fn kubernetes_principal_is_the_spiffe_id_of_the_service_account() {
    let reply = workload_asks_under(&format!(r#"principal == Workload::"{WORKLOAD}""#)).await;

    assert_granted(&reply);
}

#[tokio::test]
async fn kubernetes_principal_has_its_namespace() {
    let reply =
        workload_asks_under(r#"principal has namespace && principal.namespace == "payments""#)
            .await;

    assert_granted(&reply);
}

#[tokio::test]
async fn kubernetes_principal_has_its_service_account() {
    let reply = workload_asks_under(
        r#"principal has service_account && principal.service_account == "api""#,
    )
    .await;

    assert_granted(&reply);
}

#[tokio::test]
async fn kubernetes_principal_has_its_pod() {
    let pod = pod_name(SERVICE_ACCOUNT);
    let reply =
        workload_asks_under(&format!(r#"principal has pod && principal.pod == "{pod}""#)).await;

    assert_granted(&reply);
}

#[tokio::test]
async fn kubernetes_principal_uid_is_the_service_account_uid() {
    let uid = service_account_uid(NAMESPACE, SERVICE_ACCOUNT);
    let reply =
        workload_asks_under(&format!(r#"principal has uid && principal.uid == "{uid}""#)).await;

    assert_granted(&reply);
}

#[tokio::test]
async fn kubernetes_principal_issuer_is_the_token_iss() {
    let reply =
        workload_asks_under(r#"principal has issuer && principal.issuer == "https://k8s.test""#)
            .await;

    assert_granted(&reply);
}

// --- OIDC principal -----------------------------------------------------------------------

#[tokio::test]
async fn oidc_principal_is_named_by_the_subject_template() {
    let reply = ci_job_asks_under(&format!(r#"principal == Workload::"{CI_JOB}""#)).await;

    assert_granted(&reply);
}

#[tokio::test]
async fn oidc_claims_the_schema_declares_are_principal_attributes() {
    let reply = ci_job_asks_under(
        r#"principal has repository && principal.repository == "acme/app" &&
           principal has ref && principal.ref == "refs/heads/main" &&
           principal has environment && principal.environment == "production""#,
    )
    .await;

    assert_granted(&reply);
}

#[tokio::test]
async fn oidc_principal_issuer_is_the_token_iss() {
    let reply =
        ci_job_asks_under(r#"principal has issuer && principal.issuer == "https://ci.test""#).await;

    assert_granted(&reply);
}

#[tokio::test]
async fn oidc_issuer_with_entity_type_agent_attests_agents() {
    let mut env = TestEnv::new();
    env.ci.entity_type = Some("Agent".to_string());
    let policy = permit_orders_read_when("principal is Agent");
    env.set_policies(&[("only.cedar", policy.as_str())]);
    let server = env.start().await;

    let request = orders_read(&env.ci_token()).set("subject_token_type", ID_TOKEN);
    let minted = assert_granted(&server.token(&request).await);

    assert_eq!(minted.claims["principal_type"], "Agent");
}

// --- Entities from entities.json --------------------------------------------------------

#[tokio::test]
async fn principal_parents_come_from_entities_json() {
    let reply = workload_asks_under(r#"principal in Team::"payments""#).await;

    assert_granted(&reply);
}

#[tokio::test]
async fn principal_without_parents_in_entities_json_is_in_no_team() {
    let (env, server) = start_with_only(r#"principal in Team::"payments""#).await;

    let reply = server
        .token(&orders_read(&env.service_account_token(NAMESPACE, "batch")))
        .await;

    assert_refused(&reply, 403, "access_denied");
}

#[tokio::test]
async fn target_attributes_come_from_entities_json() {
    let reply = workload_asks_under(
        r#"resource has owner && principal has namespace && resource.owner == principal.namespace"#,
    )
    .await;

    assert_granted(&reply);
}
