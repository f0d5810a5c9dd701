//! The kill switch under stress: an acknowledged entry survives SIGKILL right
//! after the answer, and no token escapes a block that mints were racing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::*;
use futures_util::future::join_all;
use serde_json::json;
use tokio::sync::Notify;

/// How many times the server is killed right after an acknowledged revocation.
const CRASH_ROUNDS: usize = 20;
/// How many mints race the block.
const RACING_MINTS: usize = 200;
/// How many mints start after the block's acknowledgement.
const LATE_MINTS: usize = 50;

/// The principal of the service account `account` in the payments namespace.
fn payments_principal(account: &str) -> String {
    format!("spiffe://cluster.local/ns/{NAMESPACE}/sa/{account}")
}

#[tokio::test]
async fn acknowledged_revocation_survives_sigkill_right_after_the_answer() {
    // The issuer is pinned: the restarted server listens on a new port, and
    // tokens minted before the crash must still be its own afterwards, so an
    // inactive one is inactive because it is revoked.
    let mut env = TestEnv::new();
    env.config.issuer = Some(SELF_ISSUER.to_string());
    let mut server = env.start().await;
    let bystander = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    let mut acknowledged = Vec::new();

    for round in 0..CRASH_ROUNDS {
        let account = format!("victim-{round}");
        let subject = payments_principal(&account);
        let held = server
            .mint(
                &env.service_account_token(NAMESPACE, &account),
                ORDERS,
                "orders.read",
            )
            .await;
        assert_eq!(held.claims["sub"], subject.as_str(), "round {round}");
        let entry = server.revoke(json!({"subject": subject}), true, None).await;

        server.kill_hard_and_restart().await;

        let introspection = server.introspect_as_admin(&held.access_token).await;
        assert_eq!(
            introspection,
            json!({"active": false}),
            "round {round}: the token of {subject} after the crash"
        );
        let reply = server
            .token(&orders_read(
                &env.service_account_token(NAMESPACE, &account),
            ))
            .await;
        assert_refused_because(&reply, 403, "access_denied", &entry.id);
        let bystander_now = server.introspect_as_admin(&bystander.access_token).await;
        assert_eq!(
            bystander_now["active"], true,
            "round {round}: a token no entry matches after the crash: {bystander_now}"
        );
        acknowledged.push(entry);
    }

    let in_feed: Vec<String> = server
        .feed_entries()
        .await
        .iter()
        .map(|entry| entry_id(entry).to_string())
        .collect();
    for entry in &acknowledged {
        assert!(
            in_feed.contains(&entry.id),
            "entry {} (seq {}) is missing from the feed after {CRASH_ROUNDS} crashes: {in_feed:?}",
            entry.id,
            entry.seq
        );
    }
}

#[tokio::test]
async fn mints_racing_a_block_yield_no_token_that_outlives_its_acknowledgement() {
    let (env, server) = start_standard().await;
    let first_answer = Notify::new();

    let racing = join_all((0..RACING_MINTS).map(|_| {
        let request = orders_read(&env.k8s_token());
        let server = &server;
        let first_answer = &first_answer;
        async move {
            let reply = server.token(&request).await;
            first_answer.notify_one();
            reply
        }
    }));
    let blocking = async {
        // The block is posted once mints are being answered, so it lands among them.
        first_answer.notified().await;
        server
            .revoke(json!({"subject": WORKLOAD}), true, None)
            .await
    };
    let (replies, entry) = tokio::join!(racing, blocking);

    // Every racing mint was either granted or refused by this block.
    let mut granted = Vec::new();
    for reply in &replies {
        if reply.status == 200 {
            granted.push(assert_granted(reply));
        } else {
            assert_refused_because(reply, 403, "access_denied", &entry.id);
        }
    }
    // Every granted token predates the block, so the block revoked it.
    let effective_at = entry.effective_at_unix();
    for token in &granted {
        assert!(
            token.claim_i64("iat") <= effective_at,
            "token {} was issued at {} after the block took effect at {}",
            token.claims["jti"],
            token.claims["iat"],
            entry.effective_at
        );
    }
    let introspections = join_all(
        granted
            .iter()
            .map(|token| server.introspect_as_admin(&token.access_token)),
    )
    .await;
    for (token, introspection) in granted.iter().zip(&introspections) {
        assert_eq!(
            introspection,
            &json!({"active": false}),
            "token {} granted while the block raced",
            token.claims["jti"]
        );
    }
    // No mint started after the acknowledgement gets a token.
    let late = join_all((0..LATE_MINTS).map(|_| {
        let request = orders_read(&env.k8s_token());
        let server = &server;
        async move { server.token(&request).await }
    }))
    .await;
    for reply in &late {
        assert_refused_because(reply, 403, "access_denied", &entry.id);
    }
}
