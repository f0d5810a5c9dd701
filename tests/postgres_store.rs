//! The PostgreSQL store (issue 13, first step): a real PostgreSQL on
//! 127.0.0.1:5432 (user `postgres`, trust auth), one fresh database per test,
//! dropped at the end. Replicas that start at once migrate one after the
//! other; kill-switch appends from two replicas get contiguous `seq`s in
//! commit order; and a revocation written through the real server survives
//! a crash of that server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use std::sync::Arc;

use common::*;
use serde_json::json;
use writ::revoke::{Entry, EntryKind, RevocationLog, Selector};
use writ::store::{PostgresStore, Store};
use writ::token::{KeyState, KeyStore, StoredKey};

fn entry(id: &str, selector: Selector) -> Entry {
    Entry {
        id: id.into(),
        seq: 0,
        kind: EntryKind::Revoke,
        selector,
        reason: "test".into(),
        who: "admin".into(),
        effective_at: 1_000,
        block: false,
        until: None,
        lifted_at: None,
        lifts: None,
        token_exp: None,
    }
}

#[tokio::test]
async fn replicas_starting_at_once_share_one_schema_and_one_gapless_seq() {
    let db = Database::create("replicas").await;
    let (a, b) = tokio::join!(
        PostgresStore::open(&db.url, 4),
        PostgresStore::open(&db.url, 4)
    );
    let (a, b) = (Arc::new(a.unwrap()), Arc::new(b.unwrap()));
    a.ping().await.unwrap();

    let appends = (0..40).map(|i| {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move {
            store
                .append(&entry(&format!("e{i}"), Selector::Subject(format!("s{i}"))))
                .await
                .unwrap()
        })
    });
    let mut seqs: Vec<u64> = futures_util::future::join_all(appends)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=40).collect::<Vec<u64>>(), "one seq each, no gap");
    let read: Vec<u64> = b
        .since(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(read, (1..=40).collect::<Vec<u64>>());
    assert_eq!(a.since(38, 100).await.unwrap().len(), 2);

    db.drop_now().await;
}

#[tokio::test]
async fn entries_keys_and_lifetimes_round_trip_and_refusals_are_kept() {
    let db = Database::create("roundtrip").await;
    let store = PostgresStore::open(&db.url, 2).await.unwrap();

    let block = Entry {
        block: true,
        until: Some(9_000),
        ..entry(
            "block",
            Selector::SubjectPrefix("spiffe://c/ns/pay/".into()),
        )
    };
    assert_eq!(store.append(&block).await.unwrap(), 1);
    let lift = Entry {
        kind: EntryKind::Lift,
        lifts: Some("block".into()),
        effective_at: 2_000,
        ..entry("lift", block.selector.clone())
    };
    assert_eq!(store.lift("block", &lift).await.unwrap(), Some(2));
    // A second lift (another replica, a moment later) appends nothing.
    let again = Entry {
        id: "lift-again".into(),
        ..lift.clone()
    };
    assert_eq!(store.lift("block", &again).await.unwrap(), None);
    assert!(store.get("lift-again").await.unwrap().is_none());
    let stored = store.get("block").await.unwrap().unwrap();
    assert_eq!(stored.lifted_at, Some(2_000));
    assert_eq!(stored.until, Some(9_000));
    assert_eq!(stored.selector, block.selector);
    assert!(store.get("nothing").await.unwrap().is_none());

    // An entry id is unique: a second append with it is refused, not merged.
    assert!(store.append(&entry("block", Selector::All)).await.is_err());

    let one_token = Entry {
        token_exp: Some(1_500),
        ..entry("one", Selector::Jti("j".into()))
    };
    store.append(&one_token).await.unwrap();
    assert_eq!(store.forget_token_revocations(1_400).await.unwrap(), 0);
    assert_eq!(store.forget_token_revocations(1_501).await.unwrap(), 1);
    assert_eq!(store.since(0, 10).await.unwrap().len(), 2);

    let key = StoredKey {
        kid: "k1".into(),
        alg: "ES256".into(),
        pkcs8: vec![1, 2, 3],
        sealed: false,
        created_at: 5,
        state: KeyState::Active,
        activates_at: 5,
        retires_at: None,
        revoked_at: None,
    };
    assert!(store.insert_signing_key(&key).await.unwrap());
    let second = StoredKey {
        kid: "k2".into(),
        ..key.clone()
    };
    assert!(
        !store.insert_signing_key(&second).await.unwrap(),
        "at most one active key: the second insert does nothing"
    );
    let keys = store.signing_keys().await.unwrap();
    assert_eq!((keys.len(), keys[0].pkcs8.clone()), (1, vec![1, 2, 3]));

    assert_eq!(
        store.record_token_lifetime(3_600, 100).await.unwrap(),
        3_600
    );
    assert_eq!(
        store.record_token_lifetime(300, 200).await.unwrap(),
        3_600,
        "the longer lifetime of the earlier run lasts until its tokens expire"
    );

    db.drop_now().await;
}

#[tokio::test]
async fn a_revocation_through_the_server_survives_a_crash_on_postgresql() {
    let db = Database::create("server").await;
    let mut env = TestEnv::new();
    env.config.issuer = Some(SELF_ISSUER.to_string());
    env.config.store_url = Some(db.url.clone());
    let mut server = env.start().await;
    let held = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    let entry = server
        .revoke(json!({"jti": held.claims["jti"]}), false, None)
        .await;

    server.kill_hard_and_restart().await;

    assert_eq!(
        server.introspect_as_admin(&held.access_token).await,
        json!({"active": false})
    );
    let ids: Vec<String> = server
        .feed_entries()
        .await
        .iter()
        .map(|e| entry_id(e).to_string())
        .collect();
    assert_eq!(ids, [entry.id]);
    server.stop().await;
    db.drop_now().await;
}

#[tokio::test]
async fn an_unknown_store_scheme_is_refused_by_name() {
    let Err(error) = writ::store::open("mysql://root@127.0.0.1/writ").await else {
        panic!("a mysql URL opened a store");
    };
    assert!(error.to_string().contains("postgres://"), "{error}");
}

#[tokio::test]
async fn a_forgotten_newest_entry_never_gives_its_seq_to_the_next_one() {
    let db = Database::create("seq_reuse").await;
    let store = PostgresStore::open(&db.url, 2).await.unwrap();
    store
        .append(&entry("kept", Selector::Subject("s".into())))
        .await
        .unwrap();
    let expired = Entry {
        token_exp: Some(10),
        ..entry("self-revoked", Selector::Jti("j".into()))
    };
    let forgotten_seq = store.append(&expired).await.unwrap();
    assert_eq!(store.forget_token_revocations(100).await.unwrap(), 1);

    // A follower that saw the forgotten entry resumes after its seq: the
    // next entry must come after it, or the follower would never see it.
    let next = store
        .append(&entry("after", Selector::Subject("t".into())))
        .await
        .unwrap();
    assert!(
        next > forgotten_seq,
        "seq {next} reused (forgotten {forgotten_seq})"
    );
    let seen: Vec<String> = store
        .since(forgotten_seq, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(seen, ["after"]);
    db.drop_now().await;
}

#[tokio::test]
async fn of_many_concurrent_uses_of_one_dpop_proof_at_two_replicas_exactly_one_is_accepted() {
    use writ::attest::dpop::SharedProofLog;
    let db = Database::create("proofs").await;
    let a = Arc::new(PostgresStore::open(&db.url, 4).await.unwrap());
    let b = Arc::new(PostgresStore::open(&db.url, 4).await.unwrap());

    // 60 proofs, each presented three times at once, at either replica.
    let uses = (0..180u8).map(|i| {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let key = [i % 60; 16];
        tokio::spawn(async move {
            let fresh = store.remember_proof(&key, 1_000, 10).await.unwrap();
            (key, fresh)
        })
    });
    let mut accepted = std::collections::HashMap::new();
    for joined in futures_util::future::join_all(uses).await {
        let (key, fresh) = joined.unwrap();
        *accepted.entry(key).or_insert(0) += u32::from(fresh);
    }
    assert_eq!(accepted.len(), 60);
    assert!(accepted.values().all(|n| *n == 1), "{accepted:?}");

    // A record past its proof's life is taken over; a live one is not.
    let key = [200; 16];
    assert!(a.remember_proof(&key, 20, 10).await.unwrap());
    assert!(!b.remember_proof(&key, 40, 15).await.unwrap());
    assert!(b.remember_proof(&key, 40, 30).await.unwrap());
    assert_eq!(
        a.forget_proofs(41).await.unwrap(),
        1,
        "only the expired record goes"
    );
    db.drop_now().await;
}
