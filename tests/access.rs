//! `writ access` (CONTRACT section 10): what a principal may reach, or who
//! may reach a target, each scope with the conditions under which policy
//! allows it (Cedar's partial evaluation over the context).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::*;
use serde_json::{Value, json};

const BOUND_LEDGER: &str = r#"@id("ledger-bound")
permit (principal is Workload, action == Action::"mint", resource == Target::"ledger")
when { context.scope == "ledger.read" && context.sender_constrained };
"#;

fn env() -> TestEnv {
    let env = TestEnv::new();
    env.write_policy("ledger.cedar", BOUND_LEDGER);
    env
}

async fn access(env: &TestEnv, args: &[&str]) -> CliOutput {
    let mut all = vec!["access", "--dir", "policies"];
    all.extend_from_slice(args);
    run_writ(env.dir(), &all).await
}

fn json_lines(out: &CliOutput) -> Vec<Value> {
    assert_eq!(out.code, Some(0), "{}", out.describe());
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn row<'a>(rows: &'a [Value], target: &str, scope: &str) -> Option<&'a Value> {
    rows.iter()
        .find(|r| r["target"] == target && r["scope"] == scope)
}

#[tokio::test]
async fn a_principal_sees_each_target_and_scope_it_may_reach_with_the_conditions() {
    let env = env();
    env.write("attrs.json", &json!({"namespace": NAMESPACE}).to_string());
    let principal = format!("Workload::\"{WORKLOAD}\"");

    let rows = json_lines(
        &access(
            &env,
            &["--principal", &principal, "--attrs", "attrs.json", "--json"],
        )
        .await,
    );

    let read = row(&rows, ORDERS, "orders.read").unwrap_or_else(|| panic!("{rows:?}"));
    assert_eq!(read["conditions"], json!([]));
    assert!(read.get("principal").is_none(), "{read}");
    assert!(row(&rows, ORDERS, "orders.write").is_some(), "{rows:?}");
    // Nothing permits deleting orders.
    assert!(row(&rows, ORDERS, "orders.delete").is_none(), "{rows:?}");
    let ledger = row(&rows, LEDGER, "ledger.read").unwrap_or_else(|| panic!("{rows:?}"));
    let conditions = ledger["conditions"].as_array().unwrap();
    assert_eq!(conditions.len(), 1, "{ledger}");
    let condition = conditions[0].as_str().unwrap();
    assert!(
        condition.starts_with("permit ledger-bound:") && condition.contains("sender_constrained"),
        "{condition}"
    );
}

#[tokio::test]
async fn without_its_attested_attributes_a_principal_reaches_less() {
    let env = env();
    let principal = format!("Workload::\"{WORKLOAD}\"");

    let out = access(&env, &["--principal", &principal, "--target", ORDERS]).await;

    assert_eq!(out.code, Some(0), "{}", out.describe());
    // payments-orders needs principal.namespace: only the header is left.
    assert_eq!(out.stdout.lines().count(), 1, "{}", out.describe());
    assert!(out.stdout.starts_with("TARGET"), "{}", out.describe());
}

#[tokio::test]
async fn a_target_lists_the_principals_of_entities_and_the_audit_that_may_reach_it() {
    let env = env();
    let record = json!({
        "action": "mint", "decision_id": "d1", "time": "2026-11-30T12:00:00Z",
        "principal": "spiffe://cluster.local/ns/payments/sa/worker", "principal_type": "Workload",
        "attrs": {"namespace": "payments"}, "attestation": "kubernetes", "source_ip": "127.0.0.1",
        "target": ORDERS, "scopes_requested": ["orders.read"], "scopes_granted": ["orders.read"],
        "decision": "allow", "policies": ["payments-orders"],
    });
    env.write("audit.jsonl", &format!("{record}\nnot json\n"));

    let out = access(
        &env,
        &["--target", ORDERS, "--audit", "audit.jsonl", "--json"],
    )
    .await;

    let rows = json_lines(&out);
    let principals: Vec<&str> = rows
        .iter()
        .map(|r| r["principal"].as_str().unwrap())
        .collect();
    assert!(
        principals.contains(&"Workload::\"spiffe://cluster.local/ns/payments/sa/worker\""),
        "{rows:?}"
    );
    // The entities.json workload has no namespace attribute: it reaches nothing.
    assert!(
        !principals.iter().any(|p| p.contains("/sa/api")),
        "{rows:?}"
    );
    assert!(out.stderr.contains("audit.jsonl:2"), "{}", out.describe());
}

#[tokio::test]
async fn bad_principals_and_targets_are_errors() {
    let env = env();

    let robot = access(&env, &["--principal", "Robot::\"r2\""]).await;
    assert_eq!(robot.code, Some(1), "{}", robot.describe());
    assert!(
        robot.stderr.contains("Workload, an Agent or a User"),
        "{}",
        robot.describe()
    );
    let malformed = access(&env, &["--principal", "payments-api"]).await;
    assert_eq!(malformed.code, Some(1), "{}", malformed.describe());
    let unknown = access(&env, &["--target", "nowhere"]).await;
    assert_eq!(unknown.code, Some(1), "{}", unknown.describe());
    assert!(unknown.stderr.contains("nowhere"), "{}", unknown.describe());
    let neither = access(&env, &[]).await;
    assert_eq!(neither.code, Some(2), "{}", neither.describe());
}
