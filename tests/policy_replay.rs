//! Recorded decisions decided again (CONTRACT section 10): `writ policy
//! explain --decision ID --audit PATH` finds a decision in the audit log and
//! re-evaluates it against a policy directory, saying what the log did not
//! record; `writ policy diff OLD NEW --audit PATH` lists every recorded
//! request whose verdict changes between two policy sets. Both read the log
//! line by line, report a corrupt line by its number and go on.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::*;
use serde_json::{Value, json};

/// The standard policies with `orders.write` no longer permitted.
const READ_ONLY_ORDERS: &str = r#"@id("payments-orders")
permit (principal is Workload, action == Action::"mint", resource == Target::"orders")
when {
  principal has namespace && principal.namespace == "payments" &&
  context.scope == "orders.read"
};
"#;

/// An audit line as writ records a token request from `payments/api`.
fn mint_record(id: &str, scopes: &[&str], granted: &[&str]) -> Value {
    json!({
        "action": "mint",
        "decision_id": id,
        "time": "2026-11-30T12:00:00Z",
        "principal": WORKLOAD,
        "principal_type": "Workload",
        "attrs": {"namespace": "payments", "issuer": "https://kubernetes.default.svc"},
        "attestation": "kubernetes",
        "source_ip": "127.0.0.1",
        "target": ORDERS,
        "scopes_requested": scopes,
        "scopes_granted": granted,
        "requested_ttl": 300,
        "sender_constrained": false,
        "delegation_depth": 0,
        "decision": if granted.is_empty() { "deny" } else { "allow" },
        "policies": ["payments-orders"],
    })
}

fn write_audit(env: &TestEnv, lines: &[String]) {
    env.write(
        "audit.jsonl",
        &lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    );
}

fn json_lines(out: &CliOutput) -> Vec<Value> {
    assert!(
        out.stdout.ends_with('\n') || out.stdout.is_empty(),
        "{}",
        out.describe()
    );
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// A second policy directory, `policies-new`, with `standard.cedar` replaced.
fn new_policies(env: &TestEnv, standard: &str) {
    env.write("policies-new/schema.cedarschema", SCHEMA);
    env.write("policies-new/entities.json", ENTITIES);
    env.write("policies-new/standard.cedar", standard);
}

async fn explain_decision(env: &TestEnv, id: &str, json: bool) -> CliOutput {
    let mut args = vec![
        "policy",
        "explain",
        "--dir",
        "policies",
        "--decision",
        id,
        "--audit",
        "audit.jsonl",
    ];
    if json {
        args.push("--json");
    }
    run_writ(env.dir(), &args).await
}

#[tokio::test]
async fn a_decision_the_broker_recorded_is_re_evaluated_with_everything_it_was_decided_on() {
    let (env, server) = start_standard().await;
    let reply = server
        .token(&TokenRequest::exchange(
            &env.k8s_token(),
            ORDERS,
            "orders.read orders.delete",
        ))
        .await;
    let minted = assert_granted(&reply);
    let jti = minted.claims["jti"].clone();
    let record = env
        .audit_record_where("the grant", |r| r["jti"] == jti)
        .await;
    // The record keeps what the decision needs to be made again.
    assert_eq!(record["principal_type"], "Workload");
    assert_eq!(record["attrs"]["namespace"], NAMESPACE);
    assert_eq!(record["sender_constrained"], false);
    assert_eq!(record["delegation_depth"], 0);
    assert!(record["requested_ttl"].is_u64(), "{record}");
    let id = record["decision_id"].as_str().unwrap();

    let out = explain_decision(&env, id, true).await;

    assert_eq!(out.code, Some(0), "{}", out.describe());
    let got = json_lines(&out);
    assert_eq!(got.len(), 2, "{}", out.describe());
    assert_eq!(got[0]["decision_id"], id);
    assert_eq!(got[0]["scope"], "orders.read");
    assert_eq!(got[0]["recorded"], "allow");
    assert_eq!(got[0]["decision"], "allow");
    assert_eq!(got[0]["policies"], json!(["payments-orders"]));
    assert_eq!(got[1]["scope"], "orders.delete");
    assert_eq!(got[1]["recorded"], "deny");
    assert_eq!(got[1]["decision"], "deny");
    assert!(
        !out.stderr.contains("not recorded"),
        "a new record lacks nothing: {}",
        out.describe()
    );
}

#[tokio::test]
async fn a_re_evaluated_decision_shows_what_changed_since_and_what_the_log_did_not_record() {
    let env = TestEnv::new();
    // A record from an older writ: no principal type, attributes or context.
    let old = json!({
        "action": "mint", "decision_id": "d-old", "time": "2026-11-30T12:00:00Z",
        "principal": WORKLOAD, "attestation": "kubernetes", "source_ip": "127.0.0.1",
        "target": ORDERS, "scopes_requested": ["orders.read"],
        "scopes_granted": ["orders.read"], "decision": "allow",
        "policies": ["payments-orders"],
    });
    write_audit(&env, &[old.to_string()]);

    let out = explain_decision(&env, "d-old", false).await;

    assert_eq!(out.code, Some(0), "{}", out.describe());
    let text = &out.stdout;
    assert!(text.contains("recorded: allow"), "{text}");
    assert!(
        text.contains("principal type not recorded") && text.contains("assumed Workload"),
        "{text}"
    );
    assert!(text.contains("principal attributes not recorded"), "{text}");
    assert!(text.contains("requested lifetime not recorded"), "{text}");
    // Without the namespace attribute the permit no longer applies.
    assert!(
        text.contains("changed: orders.read was allow, is now deny"),
        "{text}"
    );
}

#[tokio::test]
async fn an_unknown_decision_is_an_error_naming_it() {
    let env = TestEnv::new();
    write_audit(
        &env,
        &[mint_record("d1", &["orders.read"], &["orders.read"]).to_string()],
    );

    let out = explain_decision(&env, "nope", true).await;

    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("no decision nope in"),
        "{}",
        out.describe()
    );
    assert!(out.stdout.is_empty(), "{}", out.describe());
}

#[tokio::test]
async fn a_corrupt_audit_line_is_reported_by_number_and_the_decision_after_it_is_still_found() {
    let env = TestEnv::new();
    write_audit(
        &env,
        &[
            mint_record("d1", &["orders.read"], &["orders.read"]).to_string(),
            "{\"action\": \"mint\", truncated".to_owned(),
            mint_record("d3", &["orders.write"], &["orders.write"]).to_string(),
        ],
    );

    let out = explain_decision(&env, "d3", true).await;

    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(out.stderr.contains("audit.jsonl:2:"), "{}", out.describe());
    assert_eq!(json_lines(&out)[0]["decision"], "allow");
}

#[tokio::test]
async fn a_request_refused_before_any_policy_decided_cannot_be_re_evaluated() {
    let env = TestEnv::new();
    let refused = json!({
        "action": "mint", "decision_id": "d-bad", "time": "2026-11-30T12:00:00Z",
        "source_ip": "127.0.0.1", "target": ORDERS, "scopes_requested": ["orders.read"],
        "scopes_granted": [], "decision": "deny", "policies": [], "error": "invalid_grant",
    });
    write_audit(&env, &[refused.to_string()]);

    let out = explain_decision(&env, "d-bad", false).await;

    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        out.stderr
            .contains("refused before a policy decided it (invalid_grant)"),
        "{}",
        out.describe()
    );
}

async fn diff(env: &TestEnv, extra: &[&str]) -> CliOutput {
    let mut args = vec![
        "policy",
        "diff",
        "policies",
        "policies-new",
        "--audit",
        "audit.jsonl",
    ];
    args.extend_from_slice(extra);
    run_writ(env.dir(), &args).await
}

#[tokio::test]
async fn diff_lists_each_recorded_scope_whose_verdict_the_new_policies_change() {
    let env = TestEnv::new();
    new_policies(&env, READ_ONLY_ORDERS);
    write_audit(
        &env,
        &[
            mint_record("d1", &["orders.read"], &["orders.read"]).to_string(),
            mint_record(
                "d2",
                &["orders.read", "orders.write"],
                &["orders.read", "orders.write"],
            )
            .to_string(),
            // Not a token request: never compared.
            json!({"action": "revoke", "decision_id": "d3", "time": "2026-11-30T12:00:00Z",
                   "source_ip": "127.0.0.1", "decision": "allow"})
            .to_string(),
        ],
    );

    let out = diff(&env, &["--json"]).await;

    assert_eq!(out.code, Some(0), "{}", out.describe());
    let got = json_lines(&out);
    assert_eq!(got.len(), 1, "{}", out.describe());
    assert_eq!(got[0]["decision_id"], "d2");
    assert_eq!(got[0]["scope"], "orders.write");
    assert_eq!(got[0]["old"], "allow");
    assert_eq!(got[0]["new"], "deny");
    assert!(
        out.stderr.contains("2 token requests replayed"),
        "{}",
        out.describe()
    );
}

#[tokio::test]
async fn diff_prints_an_aligned_table_by_default() {
    let env = TestEnv::new();
    new_policies(&env, READ_ONLY_ORDERS);
    write_audit(
        &env,
        &[
            mint_record("d1", &["orders.write"], &["orders.write"]).to_string(),
            mint_record(
                "d2",
                &["orders.read", "orders.write"],
                &["orders.read", "orders.write"],
            )
            .to_string(),
        ],
    );

    let out = diff(&env, &[]).await;

    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(out.stdout.ends_with('\n'), "{}", out.describe());
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.describe());
    assert!(lines[0].starts_with("DECISION_ID"), "{}", out.stdout);
    let column = |line: &str, word: &str| line.find(word).unwrap();
    assert_eq!(column(lines[0], "OLD"), column(lines[1], "allow"));
    assert_eq!(column(lines[1], "deny"), column(lines[2], "deny"));
    assert!(
        lines[1].starts_with("d1 ") && lines[2].starts_with("d2 "),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn diff_with_last_replays_only_the_newest_requests() {
    let env = TestEnv::new();
    new_policies(&env, READ_ONLY_ORDERS);
    write_audit(
        &env,
        &[
            mint_record("d1", &["orders.write"], &["orders.write"]).to_string(),
            mint_record("d2", &["orders.write"], &["orders.write"]).to_string(),
            mint_record("d3", &["orders.read"], &["orders.read"]).to_string(),
        ],
    );

    let out = diff(&env, &["--json", "--last", "2"]).await;

    assert_eq!(out.code, Some(0), "{}", out.describe());
    let ids: Vec<Value> = json_lines(&out)
        .iter()
        .map(|l| l["decision_id"].clone())
        .collect();
    assert_eq!(ids, [json!("d2")]);
}

#[tokio::test]
async fn diff_counts_and_skips_corrupt_lines_and_undecidable_records() {
    let env = TestEnv::new();
    new_policies(&env, READ_ONLY_ORDERS);
    let mut robot = mint_record("d-robot", &["orders.write"], &["orders.write"]);
    robot["principal_type"] = json!("Robot");
    write_audit(
        &env,
        &[
            "not json at all".to_owned(),
            robot.to_string(),
            mint_record("d3", &["orders.write"], &["orders.write"]).to_string(),
        ],
    );

    let out = diff(&env, &["--json"]).await;

    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(out.stderr.contains("audit.jsonl:1:"), "{}", out.describe());
    assert!(
        out.stderr.contains("1 unreadable lines"),
        "{}",
        out.describe()
    );
    assert!(out.stderr.contains("1 not decidable"), "{}", out.describe());
    assert!(out.stderr.contains("d-robot"), "{}", out.describe());
    let got = json_lines(&out);
    assert_eq!(got.len(), 1, "{}", out.describe());
    assert_eq!(got[0]["decision_id"], "d3");
}

#[tokio::test]
async fn diff_refuses_a_missing_directory_and_an_invalid_new_policy_set() {
    let env = TestEnv::new();
    write_audit(
        &env,
        &[mint_record("d1", &["orders.read"], &["orders.read"]).to_string()],
    );

    let missing = diff(&env, &[]).await;
    assert_eq!(missing.code, Some(1), "{}", missing.describe());
    assert!(
        missing
            .stderr
            .contains("policies-new: not a policy directory"),
        "{}",
        missing.describe()
    );

    new_policies(&env, "permit (principal, action, resource) when { nope };");
    let invalid = diff(&env, &[]).await;
    assert_eq!(invalid.code, Some(1), "{}", invalid.describe());
    assert!(
        invalid.stderr.contains("writ: new:"),
        "{}",
        invalid.describe()
    );
    assert!(invalid.stdout.is_empty(), "{}", invalid.describe());
}
