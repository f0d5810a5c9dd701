//! Several `writ serve` replicas on one real PostgreSQL database are one
//! kill switch (CONTRACT §8): an entry acknowledged by one replica refuses
//! minting at every replica, the admin's answer says how many live replicas
//! applied it, every replica feeds every entry in one `seq` order (so a
//! follower may switch replicas), and a replica that cannot read the log
//! (database gone, process paused) fails closed and catches up by itself.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// A second workload of the same namespace, never blocked by these tests.
const WORKER_ACCOUNT: &str = "worker";

/// An env whose replicas share `db` and one issuer URL.
fn env_on(db: &Database) -> TestEnv {
    let mut env = TestEnv::new();
    env.config.issuer = Some(SELF_ISSUER.to_string());
    env.config.store_url = Some(db.url.clone());
    env
}

fn exchange(env: &TestEnv) -> TokenRequest {
    TokenRequest::exchange(&env.k8s_token(), ORDERS, "orders.read")
}

fn worker_exchange(env: &TestEnv) -> TokenRequest {
    TokenRequest::exchange(
        &env.service_account_token(NAMESPACE, WORKER_ACCOUNT),
        ORDERS,
        "orders.read",
    )
}

fn ids(entries: &[Value]) -> Vec<String> {
    entries.iter().map(|e| entry_id(e).to_string()).collect()
}

fn seqs(entries: &[Value]) -> Vec<u64> {
    entries.iter().map(entry_seq).collect()
}

async fn ready(server: &Server) -> u16 {
    server.get("/readyz").await.status
}

#[tokio::test]
async fn a_block_acknowledged_by_one_replica_refuses_minting_at_every_replica() {
    let db = Database::create("block_everywhere").await;
    let env = env_on(&db);
    let a = env.start_replica("a").await;
    let b = env.start_replica("b").await;
    let c = env.start_replica("c").await;
    let held = b.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    let entry = a.revoke(json!({"subject": WORKLOAD}), true, None).await;

    // The answer waited until every live replica had applied the entry…
    assert_eq!(
        entry.body["replicas"],
        json!({"applied": 3, "live": 3}),
        "{}",
        entry.body
    );
    // …so no replica mints for the subject from that moment on, and a
    // token minted before is dead everywhere.
    for replica in [&a, &b, &c] {
        assert_refused(&replica.token(&exchange(&env)).await, 403, "access_denied");
        assert_eq!(
            replica.introspect_as_admin(&held.access_token).await,
            json!({"active": false})
        );
        assert_granted(&replica.token(&worker_exchange(&env)).await);
    }

    // A lift at another replica lets every replica mint again.
    assert_eq!(c.lift(&entry.id).await.status, 200);
    for replica in [&a, &b] {
        replica
            .wait_for_token_status(&exchange(&env), 200, "the lift to reach every replica")
            .await;
    }
    for server in [a, b, c] {
        server.stop().await;
    }
    db.drop_now().await;
}

#[tokio::test]
async fn every_replica_feeds_every_entry_in_one_order_and_a_follower_may_switch_replicas() {
    let db = Database::create("one_feed").await;
    let env = env_on(&db);
    let a = env.start_replica("a").await;
    let b = env.start_replica("b").await;
    let mut follower = b.open_feed_stream(Some(0), None).await;

    let mut written = Vec::new();
    for i in 0..6 {
        let at = if i % 2 == 0 { &a } else { &b };
        written.push(
            at.revoke(json!({"jti": format!("token-{i}")}), false, None)
                .await,
        );
    }

    // Seqs are commit order, one sequence for every replica.
    let written_seqs: Vec<u64> = written.iter().map(|e| e.seq).collect();
    assert_eq!(written_seqs, (1..=6).collect::<Vec<_>>());
    let written_ids: Vec<String> = written.iter().map(|e| e.id.clone()).collect();
    // The follower of B got A's entries too, in seq order, none missing.
    let events = follower.take(6).await;
    let streamed: Vec<u64> = events.iter().map(FeedEvent::seq).collect();
    assert_eq!(streamed, written_seqs);
    // Both feeds serve the same entries in the same order.
    for replica in [&a, &b] {
        let entries = replica.feed_entries().await;
        assert_eq!(ids(&entries), written_ids);
        assert_eq!(seqs(&entries), written_seqs);
    }
    // A follower that saw seq 3 at B resumes at A with nothing lost.
    let mut switched = a.open_feed_stream(None, Some(3)).await;
    let resumed: Vec<u64> = switched.take(3).await.iter().map(FeedEvent::seq).collect();
    assert_eq!(resumed, [4, 5, 6]);

    a.stop().await;
    b.stop().await;
    db.drop_now().await;
}

#[tokio::test]
async fn an_entry_holds_at_every_replica_after_the_one_that_acknowledged_it_is_killed() {
    let db = Database::create("killed_after_201").await;
    let env = env_on(&db);
    let mut a = env.start_replica("a").await;
    let b = env.start_replica("b").await;

    let entry = a.revoke(json!({"subject": WORKLOAD}), true, None).await;
    a.kill_hard_and_restart().await;

    for replica in [&a, &b] {
        assert_refused(&replica.token(&exchange(&env)).await, 403, "access_denied");
        assert_eq!(ids(&replica.feed_entries().await), [entry.id.as_str()]);
    }
    a.stop().await;
    b.stop().await;
    db.drop_now().await;
}

#[tokio::test]
async fn a_paused_replica_never_mints_on_a_stale_view_and_catches_up_by_seq() {
    let db = Database::create("paused").await;
    let mut env = env_on(&db);
    env.config.extra_store_lines = vec!["max_staleness = \"2s\"".into()];
    let a = env.start_replica("a").await;
    let b = env.start_replica("b").await;
    let before = a
        .revoke(json!({"jti": "before-the-pause"}), false, None)
        .await;

    b.pause();
    let entry = a.revoke(json!({"subject": WORKLOAD}), true, None).await;
    // B could not apply it: the answer says so instead of claiming it did.
    assert_eq!(entry.body["replicas"]["applied"], 1, "{}", entry.body);
    // Longer than max_staleness: B's view is stale when it wakes.
    tokio::time::sleep(Duration::from_secs(3)).await;
    b.resume();

    // Refused at once, whether B has read the log yet (403) or not (503).
    let first = b.token(&exchange(&env)).await;
    assert!(
        [403, 503].contains(&first.status),
        "a replica woken with a stale view minted: {}",
        first.describe()
    );
    b.wait_for_token_status(&exchange(&env), 403, "B to catch up")
        .await;
    assert_eq!(ready(&b).await, 200);
    assert_eq!(
        seqs(&b.feed_entries().await),
        [before.seq, entry.seq],
        "catch-up by seq skipped or repeated an entry"
    );
    a.stop().await;
    b.stop().await;
    db.drop_now().await;
}

#[tokio::test]
async fn a_replica_that_loses_the_database_fails_closed_and_recovers_by_itself() {
    let db = Database::create("db_gone").await;
    let proxy = DbProxy::start().await;
    let mut env = env_on(&db);
    env.config.extra_store_lines = vec!["max_staleness = \"2s\"".into()];
    env.config.store_url = Some(proxy.url(&db.name));
    let a = env.start_replica("a").await;
    env.config.store_url = Some(db.url.clone());
    let b = env.start_replica("b").await;
    assert_granted(&a.token(&exchange(&env)).await);

    proxy.cut();
    // Under load, A serves only while its view is fresh, then refuses: it
    // never errs otherwise and never hangs.
    let mut statuses = Vec::new();
    eventually("A to refuse minting on a stale view", async || {
        let reply = a.token(&worker_exchange(&env)).await;
        statuses.push(reply.status);
        match reply.status {
            503 if reply.error() == Some("temporarily_unavailable") => Ok(()),
            200 => Err("still minting".to_string()),
            _ => panic!(
                "unexpected answer while the database is gone: {}",
                reply.describe()
            ),
        }
    })
    .await;
    assert_eq!(ready(&a).await, 503);
    // Meanwhile B, which still reaches the database, blocks the workload.
    let entry = b.revoke(json!({"subject": WORKLOAD}), true, None).await;
    assert_granted(&b.token(&worker_exchange(&env)).await);

    proxy.restore();
    eventually("A to be ready again", async || match ready(&a).await {
        200 => Ok(()),
        other => Err(format!("/readyz {other}")),
    })
    .await;
    // A caught up: the block B wrote holds at A, others mint again.
    assert_refused(&a.token(&exchange(&env)).await, 403, "access_denied");
    assert_granted(&a.token(&worker_exchange(&env)).await);
    let entries = a.feed_entries().await;
    assert_eq!(ids(&entries), [entry.id.as_str()]);
    assert_eq!(seqs(&entries), [entry.seq]);
    assert!(
        statuses.iter().all(|s| [200, 503].contains(s)),
        "{statuses:?}"
    );

    a.stop().await;
    b.stop().await;
    drop(proxy);
    db.drop_now().await;
}

#[tokio::test]
async fn a_replica_that_stops_cleanly_is_no_longer_waited_for() {
    let db = Database::create("leaves").await;
    let env = env_on(&db);
    let a = env.start_replica("a").await;
    let b = env.start_replica("b").await;
    b.stop().await;

    let entry = a.revoke(json!({"jti": "after-b-left"}), false, None).await;

    assert_eq!(entry.body["replicas"], json!({"applied": 1, "live": 1}));
    a.stop().await;
    db.drop_now().await;
}

#[tokio::test]
async fn writ_status_lists_every_replica_with_its_applied_seq_and_only_for_an_admin() {
    let db = Database::create("status").await;
    let env = env_on(&db);
    let a = env.start_replica("a").await;
    let b = env.start_replica("b").await;
    let entry = a.revoke(json!({"jti": "for-status"}), false, None).await;
    let admin = [("WRIT_ADMIN_TOKEN", env.admin_token.as_str())];

    let shown = run_writ_with_env(
        env.dir(),
        &["status", "--server", &b.url, "--ca", "ca.pem", "--json"],
        &admin,
    )
    .await;
    assert_eq!(shown.code, Some(0), "{}", shown.describe());
    let rows: Vec<Value> = shown
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["replica_id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    for row in &rows {
        assert_eq!(row["applied_seq"], entry.seq, "{row}");
        assert_eq!(row["lag"], 0, "{row}");
        assert_eq!(row["live"], true, "{row}");
    }
    let table = run_writ_with_env(
        env.dir(),
        &["status", "--server", &a.url, "--ca", "ca.pem"],
        &admin,
    )
    .await;
    assert!(
        table.stdout.contains("answered by a"),
        "{}",
        table.describe()
    );

    // Not an admin: 401, and the CLI says so.
    assert_eq!(a.get("/admin/v1/replicas").await.status, 401);
    let refused = run_writ_with_env(
        env.dir(),
        &["status", "--server", &a.url, "--ca", "ca.pem"],
        &[("WRIT_ADMIN_TOKEN", "not-the-admin-token")],
    )
    .await;
    assert!(
        refused.code != Some(0) && refused.stderr.contains("401"),
        "{}",
        refused.describe()
    );
    a.stop().await;
    b.stop().await;
    db.drop_now().await;
}

#[tokio::test]
async fn a_dpop_proof_accepted_by_one_replica_is_refused_by_every_other() {
    let db = Database::create("dpop_shared").await;
    let proxy = DbProxy::start().await;
    let mut env = env_on(&db);
    let a = env.start_replica("a").await;
    let b = env.start_replica("b").await;
    env.config.store_url = Some(proxy.url(&db.name));
    let c = env.start_replica("c").await;
    let key = SigningKey::generate(Alg::Es256);
    let htu = format!("{SELF_ISSUER}/oauth2/token");
    let once = key.dpop_proof("POST", &htu, "used-once", None);

    assert_granted(&a.token_with_dpop(&exchange(&env), &once).await);

    for replica in [&a, &b] {
        let replayed = replica.token_with_dpop(&exchange(&env), &once).await;
        assert_refused_because(&replayed, 400, "invalid_dpop_proof", "replayed");
    }
    let fresh = key.dpop_proof("POST", &htu, "a-new-one", None);
    assert_granted(&b.token_with_dpop(&exchange(&env), &fresh).await);

    // A replica that cannot ask the others whether they saw a proof refuses
    // it (and says to retry) instead of risking a replay.
    proxy.cut();
    let unknowable = key.dpop_proof("POST", &htu, "while-cut-off", None);
    let reply = c.token_with_dpop(&exchange(&env), &unknowable).await;
    assert_refused(&reply, 503, "temporarily_unavailable");
    // Once it can ask again, the proof no replica accepted goes through.
    proxy.restore();
    let mut attempt = 0;
    eventually("C to check proofs again", async || {
        // A client signs a new proof for every request, retries included.
        attempt += 1;
        let later = key.dpop_proof("POST", &htu, &format!("after-the-cut-{attempt}"), None);
        let reply = c.token_with_dpop(&exchange(&env), &later).await;
        match reply.status {
            200 => Ok(()),
            _ => Err(reply.describe()),
        }
    })
    .await;

    for server in [a, b, c] {
        server.stop().await;
    }
    drop(proxy);
    db.drop_now().await;
}

#[tokio::test]
async fn each_replica_keeps_its_own_audit_chain_in_the_database_and_verify_names_a_tampered_record()
{
    let db = Database::create("audit_chains").await;
    let env = env_on(&db);
    let a = env.start_replica("a").await;
    let b = env.start_replica("b").await;
    for replica in [&a, &b] {
        replica.mint(&env.k8s_token(), ORDERS, "orders.read").await;
        assert_refused(
            &replica
                .token(&TokenRequest::exchange(
                    &env.k8s_token(),
                    LEDGER,
                    "ledger.write",
                ))
                .await,
            403,
            "access_denied",
        );
    }
    a.stop().await;
    b.stop().await;
    let verify = async || run_writ(env.dir(), &["audit", "verify", "--store", &db.url]).await;

    let intact = verify().await;
    assert_eq!(intact.code, Some(0), "{}", intact.describe());
    assert!(
        intact.stdout.contains("replica a: 2 records"),
        "{}",
        intact.describe()
    );
    assert!(
        intact.stdout.contains("replica b: 2 records"),
        "{}",
        intact.describe()
    );
    assert!(
        !env.path("audit-a.jsonl").exists(),
        "records went to a file too"
    );

    // An edited decision is named by replica and position.
    let mut sql = db.connect().await;
    sqlx::query(
        "UPDATE audit_records SET line = replace(line, '\"decision\":\"deny\"', '\"decision\":\"allow\"')
         WHERE replica_id = 'b' AND position = 2",
    )
    .execute(&mut sql)
    .await
    .unwrap();
    let edited = verify().await;
    assert_eq!(edited.code, Some(1), "{}", edited.describe());
    assert!(
        edited
            .stderr
            .contains("replica b, position 2: record was modified"),
        "{}",
        edited.describe()
    );
    // So is a deleted one.
    sqlx::query("DELETE FROM audit_records WHERE replica_id = 'a' AND position = 1")
        .execute(&mut sql)
        .await
        .unwrap();
    let deleted = verify().await;
    assert!(
        deleted
            .stderr
            .contains("replica a, position 1: record is missing"),
        "{}",
        deleted.describe()
    );
    // --store takes a PostgreSQL URL only (a SQLite store's log is a file).
    let not_postgres = run_writ(
        env.dir(),
        &["audit", "verify", "--store", "sqlite://writ.db"],
    )
    .await;
    assert_eq!(not_postgres.code, Some(1), "{}", not_postgres.describe());
    assert!(
        not_postgres.stderr.contains("postgres://"),
        "{}",
        not_postgres.describe()
    );
    drop(sql);
    db.drop_now().await;
}
