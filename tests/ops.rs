//! Operating writ: liveness, readiness and Prometheus metrics.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::*;

/// The metric families CONTRACT and SPEC name.
const FAMILIES: [&str; 4] = [
    "writ_decisions_total",
    "writ_mint_duration_seconds",
    "writ_policy_reloads_total",
    "writ_attestation_failures_total",
];

/// The sum of every `writ_decisions_total` sample, whatever its labels.
fn decisions_total(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| {
            line.starts_with("writ_decisions_total{") || line.starts_with("writ_decisions_total ")
        })
        .filter_map(|line| line.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn healthz_answers_200() {
    let (_env, server) = start_standard().await;

    let reply = server.get("/healthz").await;

    assert_eq!(reply.status, 200, "{}", reply.describe());
}

#[tokio::test]
async fn readyz_answers_200_once_policies_are_loaded_and_the_store_is_reachable() {
    let (_env, server) = start_standard().await;

    let reply = server.get("/readyz").await;

    assert_eq!(reply.status, 200, "{}", reply.describe());
}

#[tokio::test]
async fn metrics_expose_every_documented_family() {
    let (env, server) = start_standard().await;
    // Give every family something to count: a mint, a refused attestation, a reload.
    server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    let claims = env.k8s.service_account_claims(NAMESPACE, SERVICE_ACCOUNT);
    let forged = SigningKey::generate(Alg::Es256).sign_with_header(&env.k8s.key.header(), &claims);
    assert_refused(
        &server.token(&orders_read(&forged)).await,
        400,
        "invalid_grant",
    );
    env.write_policy(
        "extra.cedar",
        r#"permit (principal, action == Action::"mint", resource == Target::"ledger")
when { context.scope == "ledger.read" };
"#,
    );

    eventually("every metric family on /metrics", async || {
        let metrics = server.metrics().await;
        let missing: Vec<&str> = FAMILIES
            .into_iter()
            .filter(|family| !metrics.contains(family))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("missing {missing:?} in:\n{metrics}"))
        }
    })
    .await;
}

#[tokio::test]
async fn each_decision_increments_writ_decisions_total() {
    let (env, server) = start_standard().await;
    let before = decisions_total(&server.metrics().await);

    server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    eventually("writ_decisions_total to count the decision", async || {
        let after = decisions_total(&server.metrics().await);
        if after >= before + 1.0 {
            Ok(())
        } else {
            Err(format!("{before} before, {after} after"))
        }
    })
    .await;
}

/// mimalloc advises transparent huge pages on its arenas; the broker opts
/// out, or each touched 2 MiB region is resident whole (issue 16: idle RSS
/// was 43 MB, half of it such pages). The kernel reports the switch.
#[tokio::test]
async fn the_broker_runs_without_transparent_huge_pages() {
    let (_env, server) = start_standard().await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child_pid())).unwrap();

    let thp = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(str::trim);

    assert_eq!(
        thp,
        Some("0"),
        "THP_enabled of the broker (absent: a kernel older than 5.0)"
    );
}
