//! The audit log: one hash-chained JSON line per decision, findable by the
//! `decision_id` the client saw, and `writ audit verify` catching edits,
//! deletions and reordering.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use std::fs;

use common::*;
use serde_json::{Value, json};

/// Waits for the audit record that `matches`.
async fn audit_record(env: &TestEnv, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    eventually(&format!("the audit record of {what}"), async || {
        let records = env.audit_records();
        records
            .iter()
            .find(|record| matches(record))
            .cloned()
            .ok_or_else(|| format!("{} records: {records:?}", records.len()))
    })
    .await
}

/// Waits for the record of a refused request by the `decision_id` of the reply.
async fn audit_record_of_refusal(env: &TestEnv, reply: &Reply) -> Value {
    let decision_id = reply
        .decision_id()
        .expect("a refusal carries a decision_id")
        .to_string();
    audit_record(env, &format!("decision {decision_id}"), |record| {
        record["decision_id"] == decision_id.as_str()
    })
    .await
}

#[track_caller]
fn assert_sha256_hex(value: &Value) {
    let hex = value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a string"));
    assert!(
        hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()),
        "{hex} is not a hex SHA-256"
    );
}

#[tokio::test]
async fn granted_token_is_audited_with_its_decision() {
    let (env, server) = start_standard().await;

    let request = TokenRequest::exchange(&env.k8s_token(), ORDERS, "orders.read orders.admin");
    let minted = assert_granted(&server.token(&request).await);

    let jti = minted.claims["jti"].clone();
    let record = audit_record(&env, "the minted token", |record| record["jti"] == jti).await;
    assert_eq!(record["decision"], "allow");
    assert!(
        record["decision_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{record}"
    );
    assert!(record["time"].is_string(), "{record}");
    assert!(
        record["principal"]
            .as_str()
            .is_some_and(|p| p.contains(WORKLOAD)),
        "{record}"
    );
    assert_eq!(record["attestation"], "kubernetes");
    assert_eq!(record["source_ip"], "127.0.0.1");
    assert!(
        record["target"]
            .as_str()
            .is_some_and(|t| t.contains(ORDERS)),
        "{record}"
    );
    assert_eq!(
        record["scopes_requested"],
        json!(["orders.read", "orders.admin"])
    );
    assert_eq!(record["scopes_granted"], json!(["orders.read"]));
    assert!(
        record["policies"]
            .as_array()
            .is_some_and(|ids| ids.contains(&json!("payments-orders"))),
        "{record}"
    );
    assert_eq!(record["exp"], minted.claims["exp"]);
    assert!(record["prev"].is_string(), "{record}");
    assert_sha256_hex(&record["hash"]);
}

#[tokio::test]
async fn denied_request_is_audited_under_the_decision_id_it_returned() {
    let (env, server) = start_standard().await;

    let reply = server
        .token(&TokenRequest::exchange(
            &env.k8s_token(),
            ORDERS,
            "orders.admin",
        ))
        .await;
    assert_refused(&reply, 403, "access_denied");

    let record = audit_record_of_refusal(&env, &reply).await;
    assert_eq!(record["decision"], "deny");
    assert_eq!(record["scopes_requested"], json!(["orders.admin"]));
    assert_eq!(record["scopes_granted"], json!([]));
    assert!(
        record["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{record}"
    );
    assert!(
        record["jti"].is_null(),
        "a refusal mints no token: {record}"
    );
}

#[tokio::test]
async fn failed_attestation_is_audited_under_the_decision_id_it_returned() {
    let (env, server) = start_standard().await;
    let claims = env.k8s.service_account_claims(NAMESPACE, SERVICE_ACCOUNT);
    let forged = SigningKey::generate(Alg::Es256).sign_with_header(&env.k8s.key.header(), &claims);

    let reply = server.token(&orders_read(&forged)).await;
    assert_refused(&reply, 400, "invalid_grant");

    let record = audit_record_of_refusal(&env, &reply).await;
    assert_eq!(record["decision"], "deny");
    assert!(
        record["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{record}"
    );
}

#[tokio::test]
async fn records_are_chained_each_to_the_hash_of_the_one_before() {
    let (env, server) = start_standard().await;

    for scope in ["orders.read", "orders.admin", "orders.write"] {
        server
            .token(&TokenRequest::exchange(&env.k8s_token(), ORDERS, scope))
            .await;
    }

    let records = eventually("three audit records", async || {
        let records = env.audit_records();
        if records.len() >= 3 {
            Ok(records)
        } else {
            Err(format!("{records:?}"))
        }
    })
    .await;
    for pair in records.windows(2) {
        assert_sha256_hex(&pair[0]["hash"]);
        assert_eq!(
            pair[1]["prev"], pair[0]["hash"],
            "record {} does not chain to {}",
            pair[1], pair[0]
        );
    }
}

#[tokio::test]
async fn policy_without_an_id_is_named_after_its_file_and_index() {
    let env = TestEnv::new();
    env.set_policies(&[(
        "reads.cedar",
        r#"permit (principal, action == Action::"mint", resource == Target::"orders")
when { context.scope == "orders.write" };

permit (principal, action == Action::"mint", resource == Target::"orders")
when { context.scope == "orders.read" };
"#,
    )]);
    let server = env.start().await;

    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    let jti = minted.claims["jti"].clone();
    let record = audit_record(&env, "the minted token", |record| record["jti"] == jti).await;
    assert_eq!(record["policies"], json!(["reads.1"]));
}

// --- writ audit verify ------------------------------------------------------------------

/// An environment whose audit log holds three decisions, written by a server now stopped.
async fn log_of_three_decisions() -> TestEnv {
    let (env, server) = start_standard().await;
    for scope in ["orders.read", "orders.admin", "orders.write"] {
        server
            .token(&TokenRequest::exchange(&env.k8s_token(), ORDERS, scope))
            .await;
    }
    eventually("three audit records", async || {
        let count = env.audit_records().len();
        if count >= 3 {
            Ok(())
        } else {
            Err(format!("{count} records"))
        }
    })
    .await;
    server.stop().await;
    env
}

/// Rewrites the audit log line by line.
fn rewrite_audit_log(env: &TestEnv, edit: impl FnOnce(&mut Vec<String>)) {
    let text = fs::read_to_string(env.audit_path()).expect("read audit log");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    edit(&mut lines);
    fs::write(env.audit_path(), lines.join("\n") + "\n").expect("write audit log");
}

async fn audit_verify(env: &TestEnv) -> CliOutput {
    let path = env.audit_path();
    run_writ(
        env.dir(),
        &["audit", "verify", path.to_str().expect("UTF-8 path")],
    )
    .await
}

#[track_caller]
fn assert_verify_fails_at_line(output: &CliOutput, line: usize) {
    assert_eq!(output.code, Some(1), "{}", output.describe());
    assert!(
        output.stderr.contains(&format!("line {line}")),
        "{}",
        output.describe()
    );
}

#[tokio::test]
async fn audit_verify_accepts_an_intact_log() {
    let env = log_of_three_decisions().await;

    let output = audit_verify(&env).await;

    assert_eq!(output.code, Some(0), "{}", output.describe());
}

#[tokio::test]
async fn audit_verify_names_the_line_of_an_edited_record() {
    let env = log_of_three_decisions().await;
    // Line 2 is the denied request for orders.admin; turn it into an allow.
    rewrite_audit_log(&env, |lines| {
        let forged = lines[1].replacen(r#""deny""#, r#""allow""#, 1);
        assert_ne!(forged, lines[1], "line 2 should record a deny");
        lines[1] = forged;
    });

    let output = audit_verify(&env).await;

    assert_verify_fails_at_line(&output, 2);
}

#[tokio::test]
async fn audit_verify_names_the_line_after_a_deleted_record() {
    let env = log_of_three_decisions().await;
    rewrite_audit_log(&env, |lines| {
        lines.remove(1);
    });

    let output = audit_verify(&env).await;

    assert_verify_fails_at_line(&output, 2);
}

#[tokio::test]
async fn audit_verify_names_the_line_of_reordered_records() {
    let env = log_of_three_decisions().await;
    rewrite_audit_log(&env, |lines| lines.swap(1, 2));

    let output = audit_verify(&env).await;

    assert_verify_fails_at_line(&output, 2);
}

#[tokio::test]
async fn audit_verify_names_the_line_after_records_cut_from_the_end() {
    let env = log_of_three_decisions().await;
    rewrite_audit_log(&env, |lines| {
        lines.pop();
    });

    let output = audit_verify(&env).await;

    assert_verify_fails_at_line(&output, 3);
}

#[tokio::test]
async fn audit_verify_fails_when_the_tail_is_cut_and_the_head_file_deleted() {
    let env = log_of_three_decisions().await;
    rewrite_audit_log(&env, |lines| {
        lines.pop();
    });
    let head = env.path("audit.jsonl.head");
    assert!(head.exists(), "writ keeps a head file beside the log");
    fs::remove_file(&head).unwrap();

    let output = audit_verify(&env).await;

    assert_eq!(output.code, Some(1), "{}", output.describe());
    assert!(
        output.stderr.contains("head file is missing"),
        "{}",
        output.describe()
    );
    let path = env.audit_path();
    let waived = run_writ(
        env.dir(),
        &["audit", "verify", "--no-head", path.to_str().unwrap()],
    )
    .await;
    assert_eq!(waived.code, Some(0), "{}", waived.describe());
}

#[tokio::test]
async fn audit_log_never_holds_a_token() {
    let (env, server) = start_standard().await;
    let subject_token = env.k8s_token();
    let minted = server.mint(&subject_token, ORDERS, "orders.read").await;
    server.introspect_as_admin(&minted.access_token).await;
    audit_record(&env, "the introspection", |r| r["action"] == "introspect").await;

    let log = fs::read_to_string(env.audit_path()).unwrap();

    for (what, secret) in [
        ("subject token", subject_token.as_str()),
        ("access token", minted.access_token.as_str()),
        ("admin token", server.admin_token()),
    ] {
        let signature = secret.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "the audit log holds the {what}");
    }
}
