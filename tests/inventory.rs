//! `writ inventory` and `GET /admin/v1/inventory` (CONTRACT section 10):
//! every principal of the audit log with how it attested, who vouched for
//! it, who owns it (attested `owner`, else entities.json), when it was
//! first and last seen, what it was granted and denied per target and how
//! often an agent acted for it; `--stale` keeps the unused ones.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::*;
use serde_json::{Value, json};

const AGENT: &str = "assistant";

fn mint(id: &str, time: &str, principal: (&str, &str), scopes: &[&str], granted: &[&str]) -> Value {
    let (entity_type, who) = principal;
    json!({
        "action": "mint",
        "decision_id": id,
        "time": time,
        "principal": who,
        "principal_type": entity_type,
        "attrs": {"issuer": format!("https://issuer.test/{entity_type}")},
        "attestation": if entity_type == "Workload" { "kubernetes" } else { "oidc" },
        "source_ip": "127.0.0.1",
        "target": ORDERS,
        "scopes_requested": scopes,
        "scopes_granted": granted,
        "decision": if granted.is_empty() { "deny" } else { "allow" },
        "policies": [],
    })
}

fn write_audit(env: &TestEnv, lines: &[String]) {
    env.write(
        "audit.jsonl",
        &lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    );
}

fn standard_log() -> Vec<String> {
    let api = ("Workload", WORKLOAD);
    let mut delegated = mint(
        "d3",
        "2026-11-30T12:00:00Z",
        api,
        &["orders.read"],
        &["orders.read"],
    );
    delegated["act"] = json!([AGENT]);
    vec![
        mint(
            "d1",
            "2026-11-01T08:00:00Z",
            api,
            &["orders.read"],
            &["orders.read"],
        )
        .to_string(),
        mint("d2", "2026-11-15T09:00:00Z", api, &["orders.delete"], &[]).to_string(),
        delegated.to_string(),
        mint(
            "d4",
            "2026-11-20T10:00:00Z",
            ("Agent", AGENT),
            &["orders.read"],
            &[],
        )
        .to_string(),
        // Refused before attestation: no principal, not in the inventory.
        json!({"action": "mint", "decision_id": "d5", "time": "2026-11-30T12:00:00Z",
               "source_ip": "127.0.0.1", "decision": "deny", "error": "invalid_grant"})
        .to_string(),
    ]
}

async fn inventory(env: &TestEnv, extra: &[&str]) -> CliOutput {
    let mut args = vec!["inventory", "--audit", "audit.jsonl", "--dir", "policies"];
    args.extend_from_slice(extra);
    run_writ(env.dir(), &args).await
}

fn json_lines(out: &CliOutput) -> Vec<Value> {
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test]
async fn each_principal_is_listed_with_attestation_owner_times_grants_denials_and_delegations() {
    let env = TestEnv::new();
    write_audit(&env, &standard_log());

    let out = inventory(&env, &["--json"]).await;

    assert_eq!(out.code, Some(0), "{}", out.describe());
    let got = json_lines(&out);
    assert_eq!(got.len(), 2, "{}", out.describe());
    // Sorted by type, then id.
    let (agent, api) = (&got[0], &got[1]);
    assert_eq!(api["principal"], WORKLOAD);
    assert_eq!(api["type"], "Workload");
    assert_eq!(api["attestations"], json!(["kubernetes"]));
    assert_eq!(api["issuers"], json!(["https://issuer.test/Workload"]));
    // Its parent in entities.json.
    assert_eq!(api["owner"], "Team::\"payments\"");
    assert_eq!(api["first_seen"], "2026-11-01T08:00:00Z");
    assert_eq!(api["last_seen"], "2026-11-30T12:00:00Z");
    assert_eq!(api["granted"], json!({ORDERS: ["orders.read"]}));
    assert_eq!(api["denied"], json!({ORDERS: ["orders.delete"]}));
    assert_eq!(api["delegations"], 1);
    assert_eq!(agent["principal"], AGENT);
    assert_eq!(agent["type"], "Agent");
    assert_eq!(agent["owner"], Value::Null);
    assert_eq!(agent["granted"], json!({}));
    assert_eq!(agent["denied"], json!({ORDERS: ["orders.read"]}));
}

#[tokio::test]
async fn the_table_is_aligned_and_flags_principals_without_an_owner() {
    let env = TestEnv::new();
    write_audit(&env, &standard_log());

    let out = inventory(&env, &[]).await;

    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(out.stdout.ends_with('\n'), "{}", out.describe());
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert!(lines[0].starts_with("PRINCIPAL"), "{}", out.stdout);
    let owner = lines[0].find("OWNER").unwrap();
    assert_eq!(lines[1].find("NONE"), Some(owner), "{}", out.stdout);
    assert_eq!(lines[2].find("Team::"), Some(owner), "{}", out.stdout);
    assert!(
        out.stderr.contains("1 principal(s) have no owner"),
        "{}",
        out.describe()
    );
}

#[tokio::test]
async fn stale_lists_only_principals_unused_that_long() {
    let env = TestEnv::new();
    let recent = rfc3339(now());
    write_audit(
        &env,
        &[
            mint(
                "d1",
                "2020-01-01T00:00:00Z",
                ("Agent", "forgotten"),
                &["orders.read"],
                &[],
            )
            .to_string(),
            mint(
                "d2",
                &recent,
                ("Workload", WORKLOAD),
                &["orders.read"],
                &["orders.read"],
            )
            .to_string(),
        ],
    );

    let out = inventory(&env, &["--json", "--stale", "30d"]).await;

    assert_eq!(out.code, Some(0), "{}", out.describe());
    let got = json_lines(&out);
    assert_eq!(got.len(), 1, "{}", out.describe());
    assert_eq!(got[0]["principal"], "forgotten");
    let bad = inventory(&env, &["--stale", "thirty days"]).await;
    assert_eq!(bad.code, Some(2), "{}", bad.describe());
}

#[tokio::test]
async fn a_corrupt_line_is_reported_by_number_and_the_rest_still_counts() {
    let env = TestEnv::new();
    let mut log = standard_log();
    log.insert(1, "{\"action\": \"mint\", \"decision_id\": ".to_owned());
    write_audit(&env, &log);

    let out = inventory(&env, &["--json"]).await;

    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(out.stderr.contains("audit.jsonl:2"), "{}", out.describe());
    assert!(
        out.stderr.contains("1 unreadable line(s) skipped"),
        "{}",
        out.describe()
    );
    assert_eq!(json_lines(&out).len(), 2, "{}", out.describe());
}

#[tokio::test]
async fn a_missing_audit_log_is_an_error() {
    let env = TestEnv::new();

    let out = inventory(&env, &[]).await;

    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(out.stderr.contains("audit.jsonl"), "{}", out.describe());
}

async fn get_inventory(server: &Server, bearer: Option<&str>, query: &str) -> Reply {
    server
        .call(
            reqwest::Method::GET,
            &format!("/admin/v1/inventory{query}"),
            bearer,
            None,
        )
        .await
}

#[tokio::test]
async fn the_admin_api_lists_the_brokers_own_audit_and_is_audited() {
    let (env, server) = start_standard().await;
    let minted = assert_granted(&server.token(&orders_read(&env.k8s_token())).await);
    let jti = minted.claims["jti"].clone();
    env.audit_record_where("the grant", |r| r["jti"] == jti)
        .await;

    let reply = get_inventory(&server, Some(&env.admin_token), "").await;

    assert_eq!(reply.status, 200, "{}", reply.describe());
    let principals = reply.json["principals"].as_array().unwrap();
    let api = principals
        .iter()
        .find(|p| p["principal"] == WORKLOAD)
        .unwrap_or_else(|| panic!("{}", reply.describe()));
    assert_eq!(api["granted"], json!({ORDERS: ["orders.read"]}));
    assert_eq!(api["attestations"], json!(["kubernetes"]));
    assert_eq!(api["owner"], "Team::\"payments\"");
    assert_eq!(reply.json["unreadable_lines"], 0);
    let record = env
        .audit_record_where("the inventory call", |r| r["action"] == "inventory")
        .await;
    assert_eq!(record["decision"], "allow", "{record}");
    // Nothing is stale yet.
    let stale = get_inventory(&server, Some(&env.admin_token), "?stale=30d").await;
    assert_eq!(stale.json["principals"], json!([]), "{}", stale.describe());
    let bad = get_inventory(&server, Some(&env.admin_token), "?stale=soon").await;
    assert_refused(&bad, 400, "invalid_request");
}

#[tokio::test]
async fn the_admin_api_refuses_strangers_and_admins_policy_does_not_permit() {
    let env = TestEnv::new();
    // Admins may do everything but list the inventory.
    env.write_policy(
        "standard.cedar",
        &STANDARD_POLICIES.replace(", Action::\"inventory\"", ""),
    );
    let server = env.start().await;

    assert_eq!(get_inventory(&server, None, "").await.status, 401);
    let denied = get_inventory(&server, Some(&env.admin_token), "").await;
    assert_refused(&denied, 403, "access_denied");
}
