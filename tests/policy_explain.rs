//! `writ policy explain` and `writ policy test` (CONTRACT section 10): the
//! real binary explains a described request scope by scope against a policy
//! directory — the verdict, the determining policies and their files, the
//! lifetime cap — with the context the operator chooses, and refuses a
//! malformed request by naming the field; it runs policy test files, the
//! shipped examples' own among them, with a diff per failing case.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::*;
use serde_json::{Value, json};

const EXTRA: &str = r#"
@id("orders-read-short")
@max_ttl("60")
permit (principal is Workload, action == Action::"mint", resource == Target::"orders")
when { context.scope == "orders.read" && context.sender_constrained };

@id("no-orders-at-night")
forbid (principal, action == Action::"mint", resource == Target::"orders")
when { context.hour < 6 };

@id("payments-team-ledger")
permit (principal in Team::"payments", action == Action::"mint", resource == Target::"ledger")
when { context.scope == "ledger.read" };
"#;

async fn explain(env: &TestEnv, request: &Value) -> CliOutput {
    env.write("request.json", &request.to_string());
    run_writ(
        env.dir(),
        &[
            "policy",
            "explain",
            "--dir",
            "policies",
            "--request",
            "request.json",
            "--json",
        ],
    )
    .await
}

async fn answers(env: &TestEnv, request: &Value) -> Vec<Value> {
    let out = explain(env, request).await;
    assert_eq!(out.code, Some(0), "{}", out.describe());
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn env() -> TestEnv {
    let env = TestEnv::new();
    env.write_policy("extra.cedar", EXTRA);
    env
}

fn payments_api(scopes: &[&str], context: Value) -> Value {
    json!({
        "principal": {"type": "Workload", "id": WORKLOAD, "attrs": {"namespace": "payments"}},
        "target": ORDERS,
        "scopes": scopes,
        "context": context,
    })
}

#[tokio::test]
async fn each_scope_gets_its_verdict_the_deciding_policies_their_files_and_the_cap() {
    let env = env();
    let noon = json!({"now": "2026-11-30T12:00:00Z", "sender_constrained": true});

    let got = answers(&env, &payments_api(&["orders.read", "orders.delete"], noon)).await;

    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["scope"], "orders.read");
    assert_eq!(got[0]["decision"], "allow");
    let mut policies: Vec<&str> = got[0]["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    policies.sort();
    assert_eq!(policies, ["orders-read-short", "payments-orders"]);
    assert_eq!(got[0]["sources"]["payments-orders"], "standard.cedar");
    assert_eq!(got[0]["sources"]["orders-read-short"], "extra.cedar");
    assert_eq!(got[0]["max_ttl"], 60);
    assert_eq!(got[0]["errors"], json!([]));
    // Nothing permits deleting: a deny with no determining policy.
    assert_eq!(got[1]["decision"], "deny");
    assert_eq!(got[1]["policies"], json!([]));
    assert_eq!(got[1]["max_ttl"], Value::Null);
}

#[tokio::test]
async fn the_context_the_operator_gives_changes_the_verdict() {
    let env = env();

    // At 03:00 UTC the forbid decides.
    let night = answers(
        &env,
        &payments_api(&["orders.read"], json!({"now": "2026-11-30T03:00:00Z"})),
    )
    .await;
    assert_eq!(night[0]["decision"], "deny");
    assert_eq!(night[0]["policies"], json!(["no-orders-at-night"]));
    // Without a key binding the capped permit does not apply: no cap.
    let day = answers(
        &env,
        &payments_api(&["orders.read"], json!({"now": "2026-11-30T12:00:00Z"})),
    )
    .await;
    assert_eq!(day[0]["policies"], json!(["payments-orders"]));
    assert_eq!(day[0]["max_ttl"], Value::Null);
}

#[tokio::test]
async fn a_parent_given_in_the_request_is_what_if_membership() {
    let env = env();
    let request = |parents: Value| {
        json!({
            "principal": {"type": "Workload", "id": "spiffe://cluster.local/ns/other/sa/x", "parents": parents},
            "target": LEDGER,
            "scopes": ["ledger.read"],
        })
    };

    let outside = answers(&env, &request(json!([]))).await;
    let inside = answers(&env, &request(json!(["Team::\"payments\""]))).await;

    assert_eq!(outside[0]["decision"], "deny");
    assert_eq!(inside[0]["decision"], "allow");
    assert_eq!(inside[0]["policies"], json!(["payments-team-ledger"]));
}

#[tokio::test]
async fn a_table_by_default() {
    let env = env();
    env.write(
        "request.json",
        &payments_api(&["orders.read"], json!({"now": "2026-11-30T12:00:00Z"})).to_string(),
    );
    let out = run_writ(
        env.dir(),
        &[
            "policy",
            "explain",
            "--dir",
            "policies",
            "--request",
            "request.json",
        ],
    )
    .await;
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(
        out.stdout.contains("orders.read")
            && out.stdout.contains("payments-orders (standard.cedar)"),
        "{}",
        out.describe()
    );
}

#[tokio::test]
async fn a_malformed_request_is_refused_naming_the_field() {
    let env = env();
    let cases = [
        (
            json!({"principal": {"type": "Robot", "id": "x"}, "target": ORDERS, "scopes": ["orders.read"]}),
            "principal.type",
        ),
        (
            json!({"principal": {"type": "Workload", "id": "x", "parents": ["payments"]}, "target": ORDERS, "scopes": ["orders.read"]}),
            "principal.parents",
        ),
        (
            payments_api(&["orders.read"], json!({"now": "yesterday"})),
            "context.now",
        ),
        (
            payments_api(&["orders.read"], json!({"attestation": "telepathy"})),
            "context.attestation",
        ),
        (payments_api(&[], json!({})), "scopes"),
        (
            payments_api(&["orders.read"], json!({"mood": "good"})),
            "unknown field",
        ),
        (
            json!({"principal": {"type": "Workload", "id": "x"}, "target": "no-such-target", "scopes": ["r"]}),
            "unknown target",
        ),
    ];
    for (request, named) in cases {
        let out = explain(&env, &request).await;
        assert_eq!(out.code, Some(1), "{request}: {}", out.describe());
        assert!(out.stderr.contains(named), "{request}: {}", out.describe());
        assert!(out.stdout.is_empty(), "{request}: {}", out.describe());
    }
}

#[tokio::test]
async fn the_shipped_example_policies_pass_their_own_tests() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = run_writ(repo, &["policy", "test", "--dir", "policies"]).await;
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(out.stdout.starts_with("ok: "), "{}", out.describe());
}

const CASES: &str = r#"
[[case]]
name = "payments reads orders"
principal = { type = "Workload", id = "spiffe://cluster.local/ns/payments/sa/api", attrs = { namespace = "payments" } }
target = "orders"
scope = "orders.read"
context = { now = "2026-11-30T12:00:00Z" }
expect = "allow"

[[case]]
name = "payments reads orders at night"
principal = { type = "Workload", id = "spiffe://cluster.local/ns/payments/sa/api", attrs = { namespace = "payments" } }
target = "orders"
scope = "orders.read"
context = { now = "2026-11-30T03:00:00Z" }
expect = "allow"
"#;

#[tokio::test]
async fn a_failing_case_is_shown_as_a_diff_and_the_run_exits_1() {
    let env = env();
    env.write("policies/tests/orders.toml", CASES);

    let out = run_writ(env.dir(), &["policy", "test", "--dir", "policies"]).await;

    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        out.stdout.contains("FAIL payments reads orders at night"),
        "{}",
        out.describe()
    );
    assert!(
        out.stdout.contains("- expected: allow"),
        "{}",
        out.describe()
    );
    assert!(
        out.stdout.contains("+ got:      deny"),
        "{}",
        out.describe()
    );
    assert!(
        out.stdout
            .contains("decided by: no-orders-at-night (extra.cedar)"),
        "{}",
        out.describe()
    );
    assert!(
        !out.stdout.contains("FAIL payments reads orders\n"),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("1 of 2 cases failed"),
        "{}",
        out.describe()
    );
}

#[tokio::test]
async fn a_file_named_on_the_command_line_is_run_instead_of_the_directory() {
    let env = env();
    env.write("policies/tests/orders.toml", CASES);
    let passing = CASES.split("[[case]]").nth(1).unwrap();
    env.write("day.toml", &format!("[[case]]{passing}"));

    let out = run_writ(
        env.dir(),
        &["policy", "test", "--dir", "policies", "day.toml"],
    )
    .await;

    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(
        out.stdout.contains("ok: 1 cases in 1 file(s)"),
        "{}",
        out.describe()
    );
}

#[tokio::test]
async fn a_malformed_or_empty_test_file_is_refused() {
    let env = env();
    env.write(
        "typo.toml",
        "[[case]]\nname = \"x\"\nexpected = \"allow\"\n",
    );
    env.write("empty.toml", "# nothing yet\n");
    env.write(
        "bad-principal.toml",
        &CASES.replace("type = \"Workload\"", "type = \"Robot\""),
    );

    let typo = run_writ(
        env.dir(),
        &["policy", "test", "--dir", "policies", "typo.toml"],
    )
    .await;
    assert_eq!(typo.code, Some(1), "{}", typo.describe());
    assert!(typo.stderr.contains("typo.toml"), "{}", typo.describe());
    let empty = run_writ(
        env.dir(),
        &["policy", "test", "--dir", "policies", "empty.toml"],
    )
    .await;
    assert_eq!(empty.code, Some(1), "{}", empty.describe());
    assert!(
        empty.stderr.contains("nothing was tested"),
        "{}",
        empty.describe()
    );
    // A case that cannot be decided fails; it never passes by accident.
    let robot = run_writ(
        env.dir(),
        &["policy", "test", "--dir", "policies", "bad-principal.toml"],
    )
    .await;
    assert_eq!(robot.code, Some(1), "{}", robot.describe());
    assert!(
        robot.stdout.contains("no decision (principal.type"),
        "{}",
        robot.describe()
    );
}

async fn post_explain(server: &Server, bearer: Option<&str>, body: String) -> Reply {
    server
        .call(
            reqwest::Method::POST,
            "/admin/v1/explain",
            bearer,
            Some(body),
        )
        .await
}

#[tokio::test]
async fn the_admin_api_explains_against_the_live_policies_is_audited_and_refuses_bad_bodies() {
    let env = env();
    let server = env.start().await;
    let request = payments_api(
        &["orders.read", "orders.delete"],
        json!({"now": "2026-11-30T12:00:00Z"}),
    );

    let reply = post_explain(&server, Some(&env.admin_token), request.to_string()).await;

    assert_eq!(reply.status, 200, "{}", reply.describe());
    let scopes = reply.json["scopes"].as_array().unwrap();
    assert_eq!(scopes[0]["decision"], "allow");
    assert_eq!(scopes[0]["policies"], json!(["payments-orders"]));
    assert_eq!(scopes[1]["decision"], "deny");
    let record = env
        .audit_record_where("the explain call", |r| r["action"] == "explain")
        .await;
    assert_eq!(record["decision"], "allow", "{record}");
    assert_eq!(record["target"], ORDERS, "{record}");
    for body in [
        "not json".to_string(),
        json!({"principal": {"type": "Robot", "id": "x"}, "target": ORDERS, "scopes": ["r"]})
            .to_string(),
        json!({"principal": {"type": "Workload", "id": "x"}, "target": ORDERS, "scopes": ["r"], "extra": 1})
            .to_string(),
    ] {
        let reply = post_explain(&server, Some(&env.admin_token), body.clone()).await;
        assert_refused(&reply, 400, "invalid_request");
    }
}

#[tokio::test]
async fn the_admin_api_refuses_strangers_and_admins_policy_does_not_permit() {
    let env = env();
    // Admins may do everything but explain.
    env.write_policy(
        "standard.cedar",
        &STANDARD_POLICIES.replace(", Action::\"explain\"", ""),
    );
    let server = env.start().await;
    let request = payments_api(&["orders.read"], json!({})).to_string();

    assert_eq!(
        post_explain(&server, None, request.clone()).await.status,
        401
    );
    assert_eq!(
        post_explain(&server, Some("not-an-admin"), request.clone())
            .await
            .status,
        401
    );
    let denied = post_explain(&server, Some(&env.admin_token), request).await;
    assert_refused(&denied, 403, "access_denied");
}
