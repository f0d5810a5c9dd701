//! The kill switch (`/admin/v1/revocations`, CONTRACT section 5): revoking by
//! each selector kind turns tokens already out inactive and unusable for
//! exchange; a block refuses new mints until it is lifted or its `until`
//! passes; admin calls are authenticated, authorized by Cedar, validated, and
//! audited.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

/// The principal of `payments/worker`, a second workload the standard policies permit.
const WORKER: &str = "spiffe://cluster.local/ns/payments/sa/worker";
/// The service account of [`WORKER`].
const WORKER_ACCOUNT: &str = "worker";
/// The subject prefix every `payments` workload of the `k8s` issuer shares.
const PAYMENTS_PREFIX: &str = "spiffe://cluster.local/ns/payments/";
/// A reason an operator would not want a workload to read.
const SECRET_REASON: &str = "credentials leaked in incident SEC-4711";
/// A part of [`SECRET_REASON`] that must never reach a client.
const SECRET_REASON_MARK: &str = "SEC-4711";

/// The standard environment plus a policy permitting the narrowing of writ
/// tokens, so a revoked token can be presented for exchange.
async fn start_kill_switch() -> (TestEnv, Server) {
    let env = TestEnv::new();
    env.write_policy("narrowing.cedar", NARROWING_POLICY);
    let server = env.start().await;
    (env, server)
}

async fn mint_api(env: &TestEnv, server: &Server) -> Minted {
    server.mint(&env.k8s_token(), ORDERS, "orders.read").await
}

async fn mint_worker(env: &TestEnv, server: &Server) -> Minted {
    let attestation = env.service_account_token(NAMESPACE, WORKER_ACCOUNT);
    server.mint(&attestation, ORDERS, "orders.read").await
}

async fn mint_ci(env: &TestEnv, server: &Server) -> Minted {
    server.mint(&env.ci_token(), ORDERS, "orders.read").await
}

/// A token of `payments/api` for writ itself (another audience than `orders`).
async fn mint_for_writ(env: &TestEnv, server: &Server) -> Minted {
    server
        .mint(&env.k8s_token(), SELF_ISSUER, "introspect")
        .await
}

/// An exchange of `token` for the same audience and scopes.
fn narrowing(token: &Minted) -> TokenRequest {
    let audience = token.claims["aud"]
        .as_str()
        .unwrap_or_else(|| panic!("aud is not a string in {}", token.claims));
    TokenRequest::narrow(&token.access_token, audience, &token.scope)
}

fn jti(token: &Minted) -> &str {
    token.claims["jti"]
        .as_str()
        .unwrap_or_else(|| panic!("no jti in {}", token.claims))
}

/// The promise for tokens already out: each of `revoked` is inactive at
/// introspection and refused for exchange naming the entry; each of `spared`
/// stays active and exchangeable.
async fn assert_revoked_and_spared(
    server: &Server,
    entry: &Revocation,
    revoked: &[&Minted],
    spared: &[&Minted],
) {
    for token in revoked {
        let introspection = server.introspect_as_admin(&token.access_token).await;
        assert_eq!(
            introspection,
            json!({"active": false}),
            "token {} after entry {}",
            token.claims,
            entry.id
        );
        let reply = server.token(&narrowing(token)).await;
        assert_refused_because(&reply, 400, "invalid_grant", &entry.id);
    }
    for token in spared {
        let introspection = server.introspect_as_admin(&token.access_token).await;
        assert_eq!(
            introspection["active"], true,
            "token {} after entry {}: {introspection}",
            token.claims, entry.id
        );
        assert_granted(&server.token(&narrowing(token)).await);
    }
}

/// Creates a block with [`SECRET_REASON`] as the admin.
async fn block(server: &Server, selector: Value) -> Revocation {
    let body = json!({"selector": selector, "block": true, "reason": SECRET_REASON});
    assert_revocation_created(&server.post_revocation(&body).await)
}

/// A mint refused by `entry`: 403 `access_denied` naming the kill switch and
/// the entry, never the reason.
#[track_caller]
fn assert_blocked_by(reply: &Reply, entry: &Revocation) {
    assert_refused_because(reply, 403, "access_denied", &entry.id);
    let description = reply.json["error_description"].as_str().unwrap_or_default();
    assert!(
        description.contains("kill switch"),
        "the description does not name the kill switch: {}",
        reply.describe()
    );
    assert!(
        !reply.text.contains(SECRET_REASON_MARK),
        "the refusal leaks the reason: {}",
        reply.describe()
    );
}

/// 401 `invalid_client` with a `decision_id` and `WWW-Authenticate: Bearer`.
#[track_caller]
fn assert_invalid_client(reply: &Reply) {
    assert_refused(reply, 401, "invalid_client");
    assert!(
        reply
            .header("www-authenticate")
            .is_some_and(|value| value.starts_with("Bearer")),
        "no WWW-Authenticate: Bearer on {}",
        reply.describe()
    );
}

/// How many entries the feed holds now.
async fn entry_count(server: &Server) -> usize {
    server.feed_entries().await.len()
}

/// The first 12 hex digits of the SHA-256 of the admin token: the admin's principal id.
fn admin_fingerprint(admin_token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, admin_token.as_bytes());
    hex::encode(digest)[..12].to_string()
}

// --- Revoking each selector kind ---------------------------------------------------------

#[tokio::test]
async fn revoking_a_jti_revokes_that_token_only() {
    let (env, server) = start_kill_switch().await;
    let target = mint_api(&env, &server).await;
    let sibling = mint_api(&env, &server).await;

    let entry = server
        .revoke(json!({"jti": jti(&target)}), false, None)
        .await;

    assert_revoked_and_spared(&server, &entry, &[&target], &[&sibling]).await;
}

#[tokio::test]
async fn revoking_a_subject_revokes_its_tokens_only() {
    let (env, server) = start_kill_switch().await;
    let first = mint_api(&env, &server).await;
    let second = mint_api(&env, &server).await;
    let other = mint_worker(&env, &server).await;

    let entry = server
        .revoke(json!({"subject": WORKLOAD}), false, None)
        .await;

    assert_revoked_and_spared(&server, &entry, &[&first, &second], &[&other]).await;
}

#[tokio::test]
async fn revoking_a_subject_prefix_revokes_the_tokens_of_every_subject_under_it_only() {
    let (env, server) = start_kill_switch().await;
    let api = mint_api(&env, &server).await;
    let worker = mint_worker(&env, &server).await;
    let ci = mint_ci(&env, &server).await;

    let entry = server
        .revoke(json!({"subject_prefix": PAYMENTS_PREFIX}), false, None)
        .await;

    assert_revoked_and_spared(&server, &entry, &[&api, &worker], &[&ci]).await;
}

#[tokio::test]
async fn revoking_an_audience_revokes_the_tokens_for_it_only() {
    let (env, server) = start_kill_switch().await;
    let for_orders = mint_api(&env, &server).await;
    let for_orders_from_ci = mint_ci(&env, &server).await;
    let for_writ = mint_for_writ(&env, &server).await;

    let entry = server
        .revoke(json!({"audience": ORDERS}), false, None)
        .await;

    assert_revoked_and_spared(
        &server,
        &entry,
        &[&for_orders, &for_orders_from_ci],
        &[&for_writ],
    )
    .await;
}

#[tokio::test]
async fn revoking_an_issuer_revokes_the_tokens_it_attested_only() {
    let (env, server) = start_kill_switch().await;
    let from_k8s = mint_api(&env, &server).await;
    let from_k8s_too = mint_worker(&env, &server).await;
    let from_ci = mint_ci(&env, &server).await;

    let entry = server
        .revoke(json!({"issuer": env.k8s.iss}), false, None)
        .await;

    assert_revoked_and_spared(&server, &entry, &[&from_k8s, &from_k8s_too], &[&from_ci]).await;
}

#[tokio::test]
async fn revoking_all_revokes_every_token() {
    let (env, server) = start_kill_switch().await;
    let api = mint_api(&env, &server).await;
    let ci = mint_ci(&env, &server).await;
    let for_writ = mint_for_writ(&env, &server).await;

    let entry = server.revoke(json!({"all": true}), false, None).await;

    assert_revoked_and_spared(&server, &entry, &[&api, &ci, &for_writ], &[]).await;
}

#[tokio::test]
async fn revocation_without_block_leaves_minting_open() {
    let (env, server) = start_kill_switch().await;
    server
        .revoke(json!({"subject": WORKLOAD}), false, None)
        .await;

    let reply = server.token(&orders_read(&env.k8s_token())).await;

    assert_granted(&reply);
}

#[tokio::test]
async fn entries_get_strictly_increasing_seqs() {
    let (_env, server) = start_kill_switch().await;

    let mut seqs = Vec::new();
    for selector in [
        json!({"subject": WORKLOAD}),
        json!({"audience": LEDGER}),
        json!({"subject": WORKER}),
    ] {
        seqs.push(server.revoke(selector, false, None).await.seq);
    }

    assert!(
        seqs.windows(2).all(|pair| pair[0] < pair[1]),
        "seqs {seqs:?}"
    );
}

#[tokio::test]
async fn revoked_writ_token_may_no_longer_call_introspection() {
    let mut env = TestEnv::new();
    env.config.issuer = Some(SELF_ISSUER.to_string());
    let server = env.start().await;
    let caller = mint_for_writ(&env, &server).await;
    let minted = mint_api(&env, &server).await;
    server
        .revoke(json!({"jti": jti(&caller)}), false, None)
        .await;

    let reply = server
        .introspect(&minted.access_token, Some(&caller.access_token))
        .await;

    assert_invalid_client(&reply);
}

// --- Blocks -------------------------------------------------------------------------------

#[tokio::test]
async fn block_refuses_new_mints_naming_the_entry_and_not_the_reason() {
    let (env, server) = start_kill_switch().await;
    let entry = block(&server, json!({"subject": WORKLOAD})).await;

    let reply = server.token(&orders_read(&env.k8s_token())).await;

    assert_blocked_by(&reply, &entry);
}

#[tokio::test]
async fn block_on_a_subject_lets_other_subjects_mint() {
    let (env, server) = start_kill_switch().await;
    block(&server, json!({"subject": WORKLOAD})).await;

    let attestation = env.service_account_token(NAMESPACE, WORKER_ACCOUNT);
    let reply = server.token(&orders_read(&attestation)).await;

    assert_granted(&reply);
}

#[tokio::test]
async fn block_on_a_subject_prefix_refuses_the_subjects_under_it_only() {
    let (env, server) = start_kill_switch().await;
    let entry = block(&server, json!({"subject_prefix": PAYMENTS_PREFIX})).await;

    let api = server.token(&orders_read(&env.k8s_token())).await;
    let worker = server
        .token(&orders_read(
            &env.service_account_token(NAMESPACE, WORKER_ACCOUNT),
        ))
        .await;
    let ci = server.token(&orders_read(&env.ci_token())).await;

    assert_blocked_by(&api, &entry);
    assert_blocked_by(&worker, &entry);
    assert_granted(&ci);
}

#[tokio::test]
async fn block_on_an_audience_refuses_mints_for_it_only() {
    let (env, server) = start_kill_switch().await;
    let entry = block(&server, json!({"audience": ORDERS})).await;

    let for_orders = server.token(&orders_read(&env.k8s_token())).await;
    let for_writ = server
        .token(&TokenRequest::exchange(
            &env.k8s_token(),
            SELF_ISSUER,
            "introspect",
        ))
        .await;

    assert_blocked_by(&for_orders, &entry);
    assert_granted(&for_writ);
}

#[tokio::test]
async fn block_on_an_issuer_refuses_mints_it_attests_only() {
    let (env, server) = start_kill_switch().await;
    let entry = block(&server, json!({"issuer": env.k8s.iss})).await;

    let from_k8s = server.token(&orders_read(&env.k8s_token())).await;
    let from_ci = server.token(&orders_read(&env.ci_token())).await;

    assert_blocked_by(&from_k8s, &entry);
    assert_granted(&from_ci);
}

#[tokio::test]
async fn block_on_all_refuses_every_mint() {
    let (env, server) = start_kill_switch().await;
    let entry = block(&server, json!({"all": true})).await;

    for request in [
        orders_read(&env.k8s_token()),
        orders_read(&env.ci_token()),
        TokenRequest::exchange(&env.k8s_token(), SELF_ISSUER, "introspect"),
    ] {
        assert_blocked_by(&server.token(&request).await, &entry);
    }
}

#[tokio::test]
async fn block_with_until_lapses_by_itself() {
    let (env, server) = start_kill_switch().await;
    let until = rfc3339(now() + 4);
    let entry = server
        .revoke(json!({"subject": WORKLOAD}), true, Some(&until))
        .await;
    assert_refused_because(
        &server.token(&orders_read(&env.k8s_token())).await,
        403,
        "access_denied",
        &entry.id,
    );

    let reply = eventually_within(
        Duration::from_secs(15),
        &format!("the block until {until} to lapse"),
        async || {
            let reply = server.token(&orders_read(&env.k8s_token())).await;
            if reply.status == 200 {
                Ok(reply)
            } else {
                Err(reply.describe())
            }
        },
    )
    .await;

    assert_granted(&reply);
}

// --- Lifting ------------------------------------------------------------------------------

#[tokio::test]
async fn lift_restores_minting() {
    let (env, server) = start_kill_switch().await;
    let entry = block(&server, json!({"subject": WORKLOAD})).await;
    assert_blocked_by(&server.token(&orders_read(&env.k8s_token())).await, &entry);

    let lift = server.lift(&entry.id).await;
    assert_eq!(lift.status, 200, "{}", lift.describe());

    assert_granted(&server.token(&orders_read(&env.k8s_token())).await);
}

#[tokio::test]
async fn lift_answers_with_a_new_entry_naming_the_lifted_one() {
    let (_env, server) = start_kill_switch().await;
    let entry = block(&server, json!({"subject": WORKLOAD})).await;

    let reply = server.lift(&entry.id).await;

    assert_eq!(reply.status, 200, "{}", reply.describe());
    let lift_id = reply.json["id"].as_str().unwrap_or_default();
    assert!(is_entry_id(lift_id), "{}", reply.describe());
    assert_ne!(lift_id, entry.id, "{}", reply.describe());
    assert_eq!(
        reply.json["lifts"],
        entry.id.as_str(),
        "{}",
        reply.describe()
    );
    assert!(
        reply.json["seq"]
            .as_u64()
            .is_some_and(|seq| seq > entry.seq),
        "{}",
        reply.describe()
    );
    assert!(
        reply.json["effective_at"]
            .as_str()
            .is_some_and(|time| parse_rfc3339(time).is_some()),
        "{}",
        reply.describe()
    );
}

#[tokio::test]
async fn lift_is_an_entry_of_kind_lift_in_the_feed() {
    let (_env, server) = start_kill_switch().await;
    let entry = block(&server, json!({"subject": WORKLOAD})).await;
    let reply = server.lift(&entry.id).await;
    assert_eq!(reply.status, 200, "{}", reply.describe());
    let lift_id = reply.json["id"].as_str().expect("lift id").to_string();

    let entries = server.feed_entries().await;

    let lift = entries
        .iter()
        .find(|candidate| entry_id(candidate) == lift_id)
        .unwrap_or_else(|| panic!("lift {lift_id} not in the feed: {entries:?}"));
    assert_eq!(lift["kind"], "lift", "{lift}");
    assert_eq!(lift["lifts"], entry.id.as_str(), "{lift}");
    assert!(entry_seq(lift) > entry.seq, "{lift}");
}

#[tokio::test]
async fn lifted_entry_records_when_it_was_lifted() {
    let (_env, server) = start_kill_switch().await;
    let entry = block(&server, json!({"subject": WORKLOAD})).await;
    let lift = server.lift(&entry.id).await;
    assert_eq!(lift.status, 200, "{}", lift.describe());

    let reply = server.revocation(&entry.id).await;

    assert_eq!(reply.status, 200, "{}", reply.describe());
    assert!(
        reply.json["lifted_at"]
            .as_str()
            .is_some_and(|time| parse_rfc3339(time).is_some()),
        "{}",
        reply.describe()
    );
}

#[tokio::test]
async fn lifting_a_block_leaves_the_tokens_it_revoked_revoked() {
    let (env, server) = start_kill_switch().await;
    let before = mint_api(&env, &server).await;
    let entry = block(&server, json!({"subject": WORKLOAD})).await;
    let lift = server.lift(&entry.id).await;
    assert_eq!(lift.status, 200, "{}", lift.describe());

    let introspection = server.introspect_as_admin(&before.access_token).await;

    assert_eq!(introspection, json!({"active": false}));
}

#[tokio::test]
async fn lifting_an_unknown_entry_is_not_found() {
    let (_env, server) = start_kill_switch().await;

    let reply = server.lift(&"0".repeat(32)).await;

    assert_eq!(reply.status, 404, "{}", reply.describe());
}

#[tokio::test]
async fn lifting_twice_is_a_conflict() {
    let (_env, server) = start_kill_switch().await;
    let entry = block(&server, json!({"subject": WORKLOAD})).await;
    let first = server.lift(&entry.id).await;
    assert_eq!(first.status, 200, "{}", first.describe());

    let second = server.lift(&entry.id).await;

    assert_eq!(second.status, 409, "{}", second.describe());
}

// --- Reading entries ----------------------------------------------------------------------

#[tokio::test]
async fn listing_shows_live_entries_in_seq_order() {
    let (_env, server) = start_kill_switch().await;
    let mut created = Vec::new();
    for selector in [
        json!({"subject": WORKLOAD}),
        json!({"audience": LEDGER}),
        json!({"subject_prefix": PAYMENTS_PREFIX}),
    ] {
        created.push(block(&server, selector).await);
    }

    let reply = server.list_revocations("").await;

    assert_eq!(reply.status, 200, "{}", reply.describe());
    let entries = entries_of(&reply.json);
    let listed: Vec<&str> = entries.iter().map(entry_id).collect();
    let expected: Vec<&str> = created.iter().map(|entry| entry.id.as_str()).collect();
    assert_eq!(listed, expected, "{}", reply.describe());
    let seqs: Vec<u64> = entries.iter().map(entry_seq).collect();
    assert!(
        seqs.windows(2).all(|pair| pair[0] < pair[1]),
        "seqs {seqs:?}"
    );
    for entry in &entries {
        assert_eq!(entry["kind"], "revoke", "{entry}");
        assert_eq!(entry["block"], true, "{entry}");
    }
}

#[tokio::test]
async fn listing_pages_with_cursor_and_limit() {
    let (_env, server) = start_kill_switch().await;
    let mut expected = Vec::new();
    for selector in [
        json!({"subject": WORKLOAD}),
        json!({"subject": WORKER}),
        json!({"audience": LEDGER}),
    ] {
        expected.push(block(&server, selector).await.id);
    }

    let first = server.list_revocations("?limit=2").await;
    assert_eq!(first.status, 200, "{}", first.describe());
    assert_eq!(entries_of(&first.json).len(), 2, "{}", first.describe());
    let mut listed: Vec<String> = entries_of(&first.json)
        .iter()
        .map(|entry| entry_id(entry).to_string())
        .collect();
    let mut cursor = first.json["next_cursor"].clone();
    for _ in 0..10 {
        let Some(seq) = cursor.as_u64() else { break };
        let page = server
            .list_revocations(&format!("?cursor={seq}&limit=2"))
            .await;
        assert_eq!(page.status, 200, "{}", page.describe());
        listed.extend(
            entries_of(&page.json)
                .iter()
                .map(|entry| entry_id(entry).to_string()),
        );
        cursor = page.json["next_cursor"].clone();
    }

    assert!(cursor.is_null(), "the listing never ended: {cursor}");
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn listing_leaves_out_lifted_blocks() {
    let (_env, server) = start_kill_switch().await;
    let lifted = block(&server, json!({"subject": WORKLOAD})).await;
    let live = block(&server, json!({"subject": WORKER})).await;
    let lift = server.lift(&lifted.id).await;
    assert_eq!(lift.status, 200, "{}", lift.describe());

    let reply = server.list_revocations("").await;

    assert_eq!(reply.status, 200, "{}", reply.describe());
    let entries = entries_of(&reply.json);
    let listed: Vec<&str> = entries.iter().map(entry_id).collect();
    assert!(listed.contains(&live.id.as_str()), "{}", reply.describe());
    assert!(
        !listed.contains(&lifted.id.as_str()),
        "{}",
        reply.describe()
    );
}

#[tokio::test]
async fn entry_is_read_back_by_id_with_its_selector_reason_and_admin() {
    let (_env, server) = start_kill_switch().await;
    let entry = block(&server, json!({"subject": WORKLOAD})).await;

    let reply = server.revocation(&entry.id).await;

    assert_eq!(reply.status, 200, "{}", reply.describe());
    let body = &reply.json;
    assert_eq!(body["id"], entry.id.as_str(), "{body}");
    assert_eq!(body["seq"], entry.seq, "{body}");
    assert_eq!(body["kind"], "revoke", "{body}");
    assert_eq!(body["selector"], json!({"subject": WORKLOAD}), "{body}");
    assert_eq!(body["block"], true, "{body}");
    assert_eq!(body["until"], Value::Null, "{body}");
    assert_eq!(body["lifted_at"], Value::Null, "{body}");
    assert_eq!(body["lifts"], Value::Null, "{body}");
    assert_eq!(body["reason"], SECRET_REASON, "{body}");
    assert_eq!(
        body["effective_at"].as_str().and_then(parse_rfc3339),
        Some(entry.effective_at_unix()),
        "{body}"
    );
    let fingerprint = admin_fingerprint(server.admin_token());
    assert!(
        body["who"]
            .as_str()
            .is_some_and(|who| who.contains(&fingerprint)),
        "`who` does not name the admin token:{fingerprint}: {body}"
    );
}

#[tokio::test]
async fn unknown_entry_is_not_found() {
    let (_env, server) = start_kill_switch().await;

    let reply = server.revocation(&"0".repeat(32)).await;

    assert_eq!(reply.status, 404, "{}", reply.describe());
}

// --- Who may use the kill switch ----------------------------------------------------------

/// An admin policy that forbids revoking everything.
const FORBID_REVOKE_ALL: &str = r#"@id("no-revoke-all")
forbid (principal, action == Action::"revoke", resource)
when { context.selector == "all" };
"#;

/// An admin policy that protects the ledger target.
const FORBID_REVOKE_LEDGER: &str = r#"@id("ledger-is-protected")
forbid (principal, action == Action::"revoke", resource == Target::"ledger");
"#;

#[tokio::test]
async fn admin_forbidden_by_policy_is_access_denied_and_creates_no_entry() {
    let env = TestEnv::new();
    env.write_policy("admin-limits.cedar", FORBID_REVOKE_ALL);
    let server = env.start().await;
    let before = entry_count(&server).await;

    let reply = server
        .post_revocation(&revocation_body(json!({"all": true}), true, None))
        .await;

    assert_refused(&reply, 403, "access_denied");
    assert_eq!(entry_count(&server).await, before);
    assert_granted(&server.token(&orders_read(&env.k8s_token())).await);
}

#[tokio::test]
async fn revoking_an_audience_is_authorized_against_that_target() {
    let env = TestEnv::new();
    env.write_policy("admin-limits.cedar", FORBID_REVOKE_LEDGER);
    let server = env.start().await;

    let ledger = server
        .post_revocation(&revocation_body(json!({"audience": LEDGER}), false, None))
        .await;
    let orders = server
        .post_revocation(&revocation_body(json!({"audience": ORDERS}), false, None))
        .await;

    assert_refused(&ledger, 403, "access_denied");
    assert_revocation_created(&orders);
}

#[tokio::test]
async fn revoking_without_credentials_is_invalid_client_and_creates_no_entry() {
    let (_env, server) = start_kill_switch().await;
    let before = entry_count(&server).await;
    let body = revocation_body(json!({"subject": WORKLOAD}), true, None);

    let reply = server
        .call(Method::POST, REVOCATIONS, None, Some(body.to_string()))
        .await;

    assert_invalid_client(&reply);
    assert_eq!(entry_count(&server).await, before);
}

#[tokio::test]
async fn revoking_with_a_wrong_admin_token_is_invalid_client_and_creates_no_entry() {
    let (_env, server) = start_kill_switch().await;
    let before = entry_count(&server).await;
    let body = revocation_body(json!({"subject": WORKLOAD}), true, None);

    let reply = server
        .call(
            Method::POST,
            REVOCATIONS,
            Some("not-the-admin-token"),
            Some(body.to_string()),
        )
        .await;

    assert_invalid_client(&reply);
    assert_eq!(entry_count(&server).await, before);
}

#[tokio::test]
async fn revoking_with_a_writ_token_is_invalid_client() {
    let (env, server) = start_kill_switch().await;
    let workload = mint_api(&env, &server).await;
    let body = revocation_body(json!({"subject": WORKER}), true, None);

    let reply = server
        .call(
            Method::POST,
            REVOCATIONS,
            Some(&workload.access_token),
            Some(body.to_string()),
        )
        .await;

    assert_invalid_client(&reply);
}

#[tokio::test]
async fn listing_without_credentials_is_invalid_client() {
    let (_env, server) = start_kill_switch().await;
    block(&server, json!({"subject": WORKLOAD})).await;

    let reply = server.call(Method::GET, REVOCATIONS, None, None).await;

    assert_invalid_client(&reply);
}

#[tokio::test]
async fn lifting_without_credentials_is_invalid_client_and_the_block_stays() {
    let (env, server) = start_kill_switch().await;
    let entry = block(&server, json!({"subject": WORKLOAD})).await;

    let reply = server
        .call(
            Method::DELETE,
            &format!("{REVOCATIONS}/{}", entry.id),
            None,
            None,
        )
        .await;

    assert_invalid_client(&reply);
    assert_blocked_by(&server.token(&orders_read(&env.k8s_token())).await, &entry);
}

// --- Malformed admin calls ----------------------------------------------------------------

/// Posts `body` as the admin and asserts 400 `invalid_request` and no new entry.
async fn assert_bad_revocation(body: String) {
    let (_env, server) = start_kill_switch().await;
    let before = entry_count(&server).await;

    let reply = server.post_revocation_text(body).await;

    assert_refused(&reply, 400, "invalid_request");
    assert_eq!(
        entry_count(&server).await,
        before,
        "a refused call created an entry"
    );
}

#[tokio::test]
async fn selector_with_two_kinds_is_invalid_request() {
    let body = json!({"selector": {"subject": WORKLOAD, "audience": ORDERS}, "block": true});
    assert_bad_revocation(body.to_string()).await;
}

#[tokio::test]
async fn unknown_selector_kind_is_invalid_request() {
    let body = json!({"selector": {"hostname": "api-7d9f8c-x2x4q"}, "block": true});
    assert_bad_revocation(body.to_string()).await;
}

#[tokio::test]
async fn missing_selector_is_invalid_request() {
    let body = json!({"reason": "no selector", "block": true});
    assert_bad_revocation(body.to_string()).await;
}

#[tokio::test]
async fn empty_selector_value_is_invalid_request() {
    let body = json!({"selector": {"subject": ""}, "block": true});
    assert_bad_revocation(body.to_string()).await;
}

#[tokio::test]
async fn until_in_the_past_is_invalid_request() {
    let body = json!({
        "selector": {"subject": WORKLOAD},
        "block": true,
        "until": rfc3339(now() - 3600),
    });
    assert_bad_revocation(body.to_string()).await;
}

#[tokio::test]
async fn unparsable_until_is_invalid_request() {
    let body = json!({"selector": {"subject": WORKLOAD}, "block": true, "until": "next tuesday"});
    assert_bad_revocation(body.to_string()).await;
}

#[tokio::test]
async fn until_without_block_is_invalid_request() {
    let body = json!({"selector": {"subject": WORKLOAD}, "until": rfc3339(now() + 3600)});
    assert_bad_revocation(body.to_string()).await;
}

#[tokio::test]
async fn unknown_top_level_key_is_invalid_request() {
    let body = json!({"selector": {"subject": WORKLOAD}, "block": true, "blok": true});
    assert_bad_revocation(body.to_string()).await;
}

#[tokio::test]
async fn body_that_is_not_json_is_invalid_request() {
    assert_bad_revocation(r#"{"selector": {"subject": "#.to_string()).await;
}

// --- Audit --------------------------------------------------------------------------------

#[tokio::test]
async fn revocation_is_audited_with_its_entry_id() {
    let (env, server) = start_kill_switch().await;

    let entry = block(&server, json!({"subject": WORKLOAD})).await;

    let record = env
        .audit_record_where("the revocation", |record| {
            record["action"] == "revoke" && record["revocation"] == entry.id.as_str()
        })
        .await;
    assert!(
        !record.to_string().contains(server.admin_token()),
        "the audit record holds the admin token: {record}"
    );
}

#[tokio::test]
async fn lift_is_audited_with_its_entry_id() {
    let (env, server) = start_kill_switch().await;
    let entry = block(&server, json!({"subject": WORKLOAD})).await;
    let reply = server.lift(&entry.id).await;
    assert_eq!(reply.status, 200, "{}", reply.describe());
    let lift_id = reply.json["id"].as_str().expect("lift id").to_string();

    env.audit_record_where("the lift", |record| {
        record["action"] == "lift"
            && (record["revocation"] == lift_id.as_str()
                || record["revocation"] == entry.id.as_str())
    })
    .await;
}

#[tokio::test]
async fn mint_refused_by_a_block_is_audited_with_the_entry_id() {
    let (env, server) = start_kill_switch().await;
    let entry = block(&server, json!({"subject": WORKLOAD})).await;
    let reply = server.token(&orders_read(&env.k8s_token())).await;
    assert_blocked_by(&reply, &entry);
    let decision_id = reply.decision_id().expect("decision_id").to_string();

    let record = env
        .audit_record_where(&format!("decision {decision_id}"), |record| {
            record["decision_id"] == decision_id.as_str()
        })
        .await;

    assert_eq!(record["decision"], "deny", "{record}");
    assert_eq!(record["revocation"], entry.id.as_str(), "{record}");
}

#[tokio::test]
async fn lifting_a_plain_revocation_is_a_conflict() {
    let (_env, server) = start_standard().await;
    let plain = server
        .revoke(
            json!({"subject": "spiffe://cluster.local/ns/x/sa/y"}),
            false,
            None,
        )
        .await;

    let reply = server.lift(&plain.id).await;

    assert_eq!(reply.status, 409, "{}", reply.describe());
}
