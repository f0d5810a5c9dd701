//! Human approval for risky grants (CONTRACT section 10): a permit
//! annotated `@requires_approval("<role>")` makes the grant it allows wait.
//! The token endpoint answers `authorization_pending` with an `approval_id`;
//! an admin whose Cedar policy allows `approve` on `Role::"<role>"`
//! approves or denies it (admin API or `writ approvals`); the client's retry
//! with the id gets the token once, within `approvals.ttl`. A denied one is
//! `access_denied`, a lapsed one `expired_token`, one presented by another
//! request or a second time `invalid_grant`, and the kill switch cancels it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

/// `orders.admin` waits for security on-call; `ledger.write` waits for a
/// DBA, a role no admin of this environment holds.
const APPROVAL_POLICIES: &str = r#"
@id("orders-admin-needs-oncall")
@requires_approval("security-oncall")
permit (principal is Workload, action == Action::"mint", resource == Target::"orders")
when {
  context.scope == "orders.admin" &&
  principal has namespace && principal.namespace == "payments"
};

@id("ledger-write-needs-dba")
@requires_approval("dba")
permit (principal is Workload, action == Action::"mint", resource == Target::"ledger")
when {
  context.scope == "ledger.write" &&
  principal has namespace && principal.namespace == "payments"
};

@id("admins-approve-for-oncall")
permit (principal is Admin, action == Action::"approve", resource == Role::"security-oncall");
"#;

const APPROVALS: &str = "/admin/v1/approvals";

fn env() -> TestEnv {
    let env = TestEnv::new();
    env.write_policy("approvals.cedar", APPROVAL_POLICIES);
    env
}

fn orders_admin(env: &TestEnv) -> TokenRequest {
    TokenRequest::exchange(&env.k8s_token(), ORDERS, "orders.admin")
}

/// Asserts the pending answer and returns its `approval_id`.
#[track_caller]
fn assert_pending(reply: &Reply) -> String {
    assert_refused(reply, 400, "authorization_pending");
    assert_eq!(reply.json["interval"], 5, "{}", reply.json);
    let id = reply.json["approval_id"].as_str().unwrap().to_owned();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    id
}

async fn admin_post(server: &Server, path: &str, bearer: Option<&str>) -> Reply {
    server.call(Method::POST, path, bearer, None).await
}

async fn decide(server: &Server, id: &str, verb: &str) -> Reply {
    admin_post(
        server,
        &format!("{APPROVALS}/{id}/{verb}"),
        Some(server.admin_token()),
    )
    .await
}

async fn listed(server: &Server) -> Vec<Value> {
    let reply = server
        .call(Method::GET, APPROVALS, Some(server.admin_token()), None)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.describe());
    reply.json["approvals"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_risky_grant_waits_and_the_approved_retry_gets_one_token() {
    let env = env();
    let server = env.start().await;
    let id = assert_pending(&server.token(&orders_admin(&env)).await);
    // Asking again before anyone decided, with the id or without (a client
    // that lost it, or a flood): still pending, the same one approval.
    let again = server
        .token(&orders_admin(&env).with("approval_id", &id))
        .await;
    assert_eq!(assert_pending(&again), id);
    for _ in 0..3 {
        assert_eq!(assert_pending(&server.token(&orders_admin(&env)).await), id);
    }

    let open = listed(&server).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["id"], id);
    assert_eq!(open[0]["state"], "pending");
    assert_eq!(open[0]["role"], "security-oncall");
    assert_eq!(open[0]["principal"], WORKLOAD);
    assert_eq!(open[0]["target"], ORDERS);
    assert_eq!(open[0]["scopes"], json!(["orders.admin"]));

    let approved = decide(&server, &id, "approve").await;
    assert_eq!(approved.status, 200, "{}", approved.describe());
    assert_eq!(approved.json["approval"]["state"], "approved");
    assert!(
        approved.json["approval"]["decided_by"]
            .as_str()
            .unwrap()
            .starts_with("Admin::\"token:")
    );

    let minted = assert_granted(
        &server
            .token(&orders_admin(&env).with("approval_id", &id))
            .await,
    );
    assert_eq!(minted.scope, "orders.admin");
    // Once.
    let twice = server
        .token(&orders_admin(&env).with("approval_id", &id))
        .await;
    assert_refused_because(&twice, 400, "invalid_grant", "already used");
    // A new request without the id waits again, under a new approval.
    let next = assert_pending(&server.token(&orders_admin(&env)).await);
    assert_ne!(next, id);

    // Every step is audited under the approval's id (by the writer task,
    // off the request path: wait for the last one).
    let about: Vec<Value> = eventually("eight records about the approval", async || {
        let about: Vec<Value> = env
            .audit_records()
            .into_iter()
            .filter(|r| r["approval"] == id)
            .collect();
        if about.len() >= 8 {
            Ok(about)
        } else {
            Err(format!("{about:#?}"))
        }
    })
    .await;
    let errors: Vec<&str> = about
        .iter()
        .map(|r| {
            r["error"]
                .as_str()
                .unwrap_or(r["decision"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        errors,
        [
            "authorization_pending",
            "authorization_pending",
            "authorization_pending",
            "authorization_pending",
            "authorization_pending",
            "allow",
            "allow",
            "invalid_grant"
        ],
        "{about:#?}"
    );
    assert_eq!(about[5]["action"], "approve");
    assert_eq!(about[6]["jti"], minted.claims["jti"]);
}

#[tokio::test]
async fn an_approval_lets_through_only_the_request_it_was_given_for() {
    let env = env();
    let server = env.start().await;
    let id = assert_pending(&server.token(&orders_admin(&env)).await);
    assert_eq!(decide(&server, &id, "approve").await.status, 200);

    // Another workload presenting it.
    let worker = TokenRequest::exchange(
        &env.service_account_token(NAMESPACE, "worker"),
        ORDERS,
        "orders.admin",
    )
    .with("approval_id", &id);
    let stolen = server.token(&worker).await;
    assert_refused_because(&stolen, 400, "invalid_grant", "another request");
    // The same workload asking for more than was approved.
    let more = server
        .token(
            &TokenRequest::exchange(&env.k8s_token(), ORDERS, "orders.read orders.admin")
                .with("approval_id", &id),
        )
        .await;
    assert_refused_because(&more, 400, "invalid_grant", "another request");
    // An id writ never gave, or not an id at all.
    let unknown = server
        .token(&orders_admin(&env).with("approval_id", &"ab".repeat(16)))
        .await;
    assert_refused_because(&unknown, 400, "invalid_grant", "unknown");
    let garbage = server
        .token(&orders_admin(&env).with("approval_id", "'; DROP TABLE approvals"))
        .await;
    assert_refused(&garbage, 400, "invalid_request");
    // The request it was given for still redeems it.
    assert_granted(
        &server
            .token(&orders_admin(&env).with("approval_id", &id))
            .await,
    );
}

#[tokio::test]
async fn a_denied_approval_is_access_denied_and_only_the_role_decides() {
    let env = env();
    let server = env.start().await;
    let id = assert_pending(&server.token(&orders_admin(&env)).await);
    let denied = decide(&server, &id, "deny").await;
    assert_eq!(denied.status, 200, "{}", denied.describe());
    assert_eq!(denied.json["approval"]["state"], "denied");
    let retry = server
        .token(&orders_admin(&env).with("approval_id", &id))
        .await;
    assert_refused_because(&retry, 403, "access_denied", "denied by Admin");
    // Decided is decided.
    assert_eq!(decide(&server, &id, "approve").await.status, 409);

    // No admin here holds the DBA role: approving is refused, and the
    // approval still waits.
    let ledger = TokenRequest::exchange(&env.k8s_token(), LEDGER, "ledger.write");
    let dba = assert_pending(&server.token(&ledger).await);
    let wrong_role = decide(&server, &dba, "approve").await;
    assert_refused_because(&wrong_role, 403, "access_denied", "approvals for this role");
    let still = server.token(&ledger.with("approval_id", &dba)).await;
    assert_eq!(assert_pending(&still), dba);

    // Unknown, malformed, unauthenticated.
    assert_eq!(
        decide(&server, &"cd".repeat(16), "approve").await.status,
        404
    );
    assert_eq!(decide(&server, "not-an-id", "approve").await.status, 400);
    let anonymous = admin_post(&server, &format!("{APPROVALS}/{dba}/approve"), None).await;
    assert_eq!(anonymous.status, 401);
}

#[tokio::test]
async fn an_approval_lapses_after_approvals_ttl() {
    let mut env = env();
    env.config.extra_toml = vec!["[approvals]\nttl = \"1s\"".into()];
    let server = env.start().await;
    let id = assert_pending(&server.token(&orders_admin(&env)).await);
    eventually("the approval to lapse", async || {
        let reply = server
            .token(&orders_admin(&env).with("approval_id", &id))
            .await;
        match reply.error() {
            Some("expired_token") => Ok(()),
            _ => Err(reply.describe()),
        }
    })
    .await;
    let late = decide(&server, &id, "approve").await;
    assert_refused_because(&late, 409, "invalid_request", "expired");
    assert!(listed(&server).await.is_empty());
}

#[tokio::test]
async fn the_kill_switch_cancels_a_pending_approval() {
    let env = env();
    let server = env.start().await;
    let id = assert_pending(&server.token(&orders_admin(&env)).await);
    let entry = server
        .revoke(json!({"subject": WORKLOAD}), true, None)
        .await;
    let open = listed(&server).await;
    assert_eq!(open[0]["state"], "cancelled", "{open:?}");
    let approve = decide(&server, &id, "approve").await;
    assert_refused_because(&approve, 409, "invalid_request", &entry.id);
    let retry = server
        .token(&orders_admin(&env).with("approval_id", &id))
        .await;
    assert_refused_because(&retry, 403, "access_denied", "kill switch");
}

#[tokio::test]
async fn writ_approvals_lists_approves_and_denies() {
    let env = env();
    let server = env.start().await;
    let first = assert_pending(&server.token(&orders_admin(&env)).await);
    let ledger = TokenRequest::exchange(&env.k8s_token(), LEDGER, "ledger.write");
    let second = assert_pending(&server.token(&ledger).await);
    let cli = async |args: &[&str]| {
        let ca = env.path("ca.pem");
        let mut all = vec!["approvals"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--server", &server.url, "--ca", ca.to_str().unwrap()]);
        run_writ_with_env(env.dir(), &all, &[("WRIT_ADMIN_TOKEN", &env.admin_token)]).await
    };

    let table = cli(&["list"]).await;
    assert_eq!(table.code, Some(0), "{}", table.describe());
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("ID "), "{}", table.stdout);
    assert!(lines[0].contains("STATE") && lines[0].contains("ROLE"));
    assert_eq!(lines.len(), 3, "{}", table.stdout);
    assert!(table.stdout.ends_with('\n'));
    let as_json = cli(&["list", "--json"]).await;
    let parsed: Vec<Value> = as_json
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(parsed.len(), 2);
    let ids: Vec<&str> = parsed.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert!(
        ids.contains(&first.as_str()) && ids.contains(&second.as_str()),
        "{ids:?}"
    );

    let approved = cli(&["approve", &first]).await;
    assert_eq!(approved.code, Some(0), "{}", approved.describe());
    assert!(
        approved.stdout.starts_with("approved "),
        "{}",
        approved.stdout
    );
    let refused = cli(&["approve", &second]).await;
    assert_eq!(refused.code, Some(1), "{}", refused.describe());
    assert!(
        refused.stderr.contains("access_denied"),
        "{}",
        refused.stderr
    );
    let denied = cli(&["deny", &first]).await;
    assert_eq!(denied.code, Some(1), "{}", denied.describe());
    assert_granted(
        &server
            .token(&orders_admin(&env).with("approval_id", &first))
            .await,
    );
}

#[tokio::test]
async fn on_postgresql_every_replica_sees_one_approval_redeemed_once() {
    let db = Database::create("approvals").await;
    let mut env = env();
    env.config.issuer = Some(SELF_ISSUER.into());
    env.config.store_url = Some(db.url.clone());
    let a = env.start_replica("a").await;
    let b = env.start_replica("b").await;

    let id = assert_pending(&a.token(&orders_admin(&env)).await);
    assert_eq!(listed(&b).await[0]["id"], id);
    assert_eq!(decide(&b, &id, "approve").await.status, 200);
    assert_granted(&a.token(&orders_admin(&env).with("approval_id", &id)).await);
    let again = b.token(&orders_admin(&env).with("approval_id", &id)).await;
    assert_refused_because(&again, 400, "invalid_grant", "already used");

    a.stop().await;
    b.stop().await;
    db.drop_now().await;
}

#[tokio::test]
async fn a_permit_without_the_annotation_lets_the_grant_through() {
    let env = env();
    env.write_policy(
        "unconditional.cedar",
        r#"@id("orders-admin-for-payments")
permit (principal is Workload, action == Action::"mint", resource == Target::"orders")
when { context.scope == "orders.admin" && principal has namespace && principal.namespace == "payments" };
"#,
    );
    let server = env.start().await;
    let minted = assert_granted(&server.token(&orders_admin(&env)).await);
    assert_eq!(minted.scope, "orders.admin");
    assert!(listed(&server).await.is_empty());
}
