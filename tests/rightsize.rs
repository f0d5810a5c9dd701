//! `writ rightsize` (CONTRACT section 10): the grants policy permits each
//! principal that the audit log shows unused over a window, as a table,
//! JSON lines, Prometheus gauges, or a policy diff whose forbids remove
//! them; the log is the real broker's.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::*;
use serde_json::Value;

const API: &str = "Workload::\"spiffe://cluster.local/ns/payments/sa/api\"";

/// A broker's audit log in which the payments API was granted
/// `orders.read` (the standard policies also permit it `orders.write`).
async fn logged() -> TestEnv {
    let env = TestEnv::new();
    let server = env.start().await;
    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    env.audit_record_where("the grant", |r| r["jti"] == minted.claims["jti"])
        .await;
    server.stop().await;
    env
}

async fn rightsize(env: &TestEnv, extra: &[&str]) -> CliOutput {
    let mut args = vec!["rightsize", "--dir", "policies", "--audit", "audit.jsonl"];
    args.extend_from_slice(extra);
    run_writ(env.dir(), &args).await
}

fn unused_of(out: &CliOutput, principal: &str) -> Vec<(String, String)> {
    assert_eq!(out.code, Some(0), "{}", out.describe());
    out.stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["principal"] == principal)
        .map(|v| {
            (
                v["target"].as_str().unwrap().to_owned(),
                v["scope"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_permitted_grant_the_log_never_used_is_listed_and_a_used_one_is_not() {
    let env = logged().await;
    let out = rightsize(&env, &["--json"]).await;
    let unused = unused_of(&out, API);
    assert!(
        unused.contains(&(ORDERS.into(), "orders.write".into())),
        "{unused:?}"
    );
    assert!(
        !unused.contains(&(ORDERS.into(), "orders.read".into())),
        "{unused:?}"
    );
    assert!(out.stderr.contains("unused since"), "{}", out.stderr);

    let table = rightsize(&env, &[]).await;
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("PRINCIPAL"), "{}", table.stdout);
    assert!(
        lines
            .iter()
            .any(|l| l.contains(API) && l.contains("orders.write")),
        "{}",
        table.stdout
    );

    let gauges = rightsize(&env, &["--metrics"]).await;
    assert!(
        gauges.stdout.contains("# TYPE writ_unused_grants gauge"),
        "{}",
        gauges.stdout
    );
    let line = gauges
        .stdout
        .lines()
        .find(|l| l.contains("spiffe://cluster.local/ns/payments/sa/api"))
        .unwrap();
    let count: usize = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert_eq!(count, unused.len());
}

#[tokio::test]
async fn the_suggested_forbids_are_valid_cedar_and_remove_exactly_the_unused_grants() {
    let env = logged().await;
    let diff = rightsize(&env, &["--suggest"]).await;
    assert_eq!(diff.code, Some(0), "{}", diff.describe());
    let lines: Vec<&str> = diff.stdout.lines().collect();
    assert_eq!(lines[0], "--- /dev/null");
    assert_eq!(lines[1], "+++ policies/rightsize.cedar");
    let policy: String = lines[3..]
        .iter()
        .map(|l| format!("{}\n", l.strip_prefix('+').unwrap()))
        .collect();
    env.write_policy("rightsize.cedar", &policy);

    let check = run_writ(env.dir(), &["policy", "check", "--dir", "policies"]).await;
    assert_eq!(check.code, Some(0), "{}", check.describe());
    let after = rightsize(&env, &["--json"]).await;
    assert_eq!(unused_of(&after, API), Vec::<(String, String)>::new());
    // What was used is still allowed: the suggestion removed nothing else.
    let explain = r#"{"principal": {"type": "Workload", "id": "spiffe://cluster.local/ns/payments/sa/api",
        "attrs": {"namespace": "payments", "service_account": "api"}},
        "target": "orders", "scopes": ["orders.read", "orders.write"]}"#;
    env.write("request.json", explain);
    let verdicts = run_writ(
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
    .await;
    let decided: Vec<Value> = verdicts
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(decided[0]["decision"], "allow", "{decided:?}");
    assert_eq!(decided[1]["decision"], "deny", "{decided:?}");
}

#[tokio::test]
async fn only_grants_inside_the_window_count_as_used() {
    let env = logged().await;
    // The same grant of orders.write, sixty days ago.
    let record = env
        .audit_records()
        .into_iter()
        .find(|r| r["scopes_granted"] == serde_json::json!(["orders.read"]))
        .unwrap();
    let mut old = record.clone();
    old["time"] = Value::String(rfc3339(now() - 60 * 86_400));
    old["scopes_granted"] = serde_json::json!(["orders.write"]);
    old["scopes_requested"] = serde_json::json!(["orders.write"]);
    let text = std::fs::read_to_string(env.path("audit.jsonl")).unwrap();
    env.write("audit.jsonl", &format!("{text}{old}\n"));

    let month = rightsize(&env, &["--json", "--since", "30d"]).await;
    assert!(unused_of(&month, API).contains(&(ORDERS.into(), "orders.write".into())));
    let quarter = rightsize(&env, &["--json", "--since", "90d"]).await;
    assert!(!unused_of(&quarter, API).contains(&(ORDERS.into(), "orders.write".into())));
}

#[tokio::test]
async fn bad_input_is_reported_and_nothing_is_guessed() {
    let env = logged().await;
    let text = std::fs::read_to_string(env.path("audit.jsonl")).unwrap();
    env.write("audit.jsonl", &format!("{{not json\n{text}"));
    let out = rightsize(&env, &["--json"]).await;
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(out.stderr.contains("line 1"), "{}", out.stderr);
    assert!(out.stderr.contains("1 unreadable line"), "{}", out.stderr);

    let missing = run_writ(
        env.dir(),
        &["rightsize", "--dir", "policies", "--audit", "nope.jsonl"],
    )
    .await;
    assert_eq!(missing.code, Some(1), "{}", missing.describe());
    let no_dir = run_writ(
        env.dir(),
        &["rightsize", "--dir", "nowhere", "--audit", "audit.jsonl"],
    )
    .await;
    assert_eq!(no_dir.code, Some(1), "{}", no_dir.describe());
    let bad_window = rightsize(&env, &["--since", "a while"]).await;
    assert_eq!(bad_window.code, Some(2), "{}", bad_window.describe());
}
