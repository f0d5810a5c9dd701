//! Signing keys with a lifecycle (issue 13, CONTRACT section 8): replicas
//! on one real PostgreSQL database publish the same keys and sign with the
//! same one; a rotated key is published at once and signs only after
//! `keys.publish_ahead`; two replicas rotating at once make one key; a
//! revoked key leaves every JWKS and every token it signed dies at every
//! replica and at an SDK verifier; private keys are encrypted under a
//! key-encryption key. One SQLite broker runs the CLI, and the refusals.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use writ_sdk::{Broker, FeedAuth, Verifier, VerifyError};

/// A rotated key signs this long after it is published: short for tests.
const PUBLISH_AHEAD: &str = "2s";

/// The kids a JWKS publishes, sorted.
fn kids(jwks: &Value) -> Vec<String> {
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    kids.sort();
    kids
}

/// An env on a fresh database of its own, with a short publish-ahead.
async fn replicated(test: &str) -> (TestEnv, Database) {
    let db = Database::create(test).await;
    let mut env = TestEnv::new();
    env.config.issuer = Some(SELF_ISSUER.into());
    env.config.store_url = Some(db.url.clone());
    env.config.keys_lines = vec![format!("publish_ahead = \"{PUBLISH_AHEAD}\"")];
    (env, db)
}

/// `POST` to an admin path with the admin token.
async fn admin_post(server: &Server, path: &str) -> Reply {
    Reply::read(
        server
            .client()
            .post(server.endpoint(path))
            .bearer_auth(server.admin_token())
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn rotate(server: &Server) -> Value {
    let reply = admin_post(server, "/admin/v1/keys/rotate").await;
    assert_eq!(reply.status, 201, "rotate: {}", reply.describe());
    reply.json["key"].clone()
}

async fn list_keys(server: &Server) -> Vec<Value> {
    let reply = Reply::read(
        server
            .client()
            .get(server.endpoint("/admin/v1/keys"))
            .bearer_auth(server.admin_token())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200, "list keys: {}", reply.describe());
    reply.json["keys"].as_array().unwrap().clone()
}

/// The kid of a fresh `orders.read` token from `server`.
async fn signing_kid(env: &TestEnv, server: &Server) -> String {
    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    minted.header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn replicas_publish_one_jwks_and_a_rotation_signs_everywhere_only_after_publish_ahead() {
    let (env, db) = replicated("rotation").await;
    let a = env.start_replica("a").await;
    let b = env.start_replica("b").await;

    let first = kids(&a.jwks().await);
    assert_eq!(first.len(), 1, "one key made, by whichever replica won");
    assert_eq!(kids(&b.jwks().await), first, "both replicas publish it");
    let old = first[0].clone();
    assert_eq!(signing_kid(&env, &a).await, old);
    assert_eq!(signing_kid(&env, &b).await, old);
    let old_token = a.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    let new = rotate(&a).await;
    let new_kid = new["kid"].as_str().unwrap().to_owned();
    assert_eq!(new["state"], "next");
    assert_ne!(new_kid, old);
    // Published at once here, and at the other replica within its refresh.
    assert!(kids(&a.jwks().await).contains(&new_kid));
    eventually("the new key in replica b's JWKS", async || {
        let published = kids(&b.jwks().await);
        if published.contains(&new_kid) && published.contains(&old) {
            Ok(())
        } else {
            Err(format!("{published:?}"))
        }
    })
    .await;
    // Not signing yet: verifiers caching the old JWKS meet no unknown kid.
    assert_eq!(
        signing_kid(&env, &a).await,
        old,
        "signs after publish_ahead"
    );

    for replica in [&a, &b] {
        eventually("the new key signing at every replica", async || {
            let kid = signing_kid(&env, replica).await;
            if kid == new_kid { Ok(()) } else { Err(kid) }
        })
        .await;
    }
    // The old key stays published while its tokens live, and they verify.
    for replica in [&a, &b] {
        assert!(kids(&replica.jwks().await).contains(&old));
        let answer = replica.introspect_as_admin(&old_token.access_token).await;
        assert_eq!(answer["active"], true, "{answer}");
    }
    let listed = list_keys(&b).await;
    let state_of = |kid: &str| {
        listed
            .iter()
            .find(|k| k["kid"] == kid)
            .map(|k| k["state"].clone())
    };
    assert_eq!(state_of(&new_kid), Some("active".into()), "{listed:?}");
    assert_eq!(state_of(&old), Some("retiring".into()), "{listed:?}");
    assert!(
        listed
            .iter()
            .any(|k| k["kid"] == old && k["retires"].is_string()),
        "a retiring key knows when it goes: {listed:?}"
    );

    a.stop().await;
    b.stop().await;
    db.drop_now().await;
}

#[tokio::test]
async fn two_replicas_rotating_at_once_make_one_new_key() {
    let (env, db) = replicated("race").await;
    let a = env.start_replica("a").await;
    let b = env.start_replica("b").await;

    let (from_a, from_b) = tokio::join!(rotate(&a), rotate(&b));
    assert_eq!(from_a["kid"], from_b["kid"], "both answer the one next key");
    let listed = list_keys(&a).await;
    assert_eq!(
        listed.len(),
        2,
        "the active key and one next key: {listed:?}"
    );
    eventually("one JWKS at both replicas", async || {
        let (ka, kb) = (kids(&a.jwks().await), kids(&b.jwks().await));
        if ka == kb && ka.len() == 2 {
            Ok(())
        } else {
            Err(format!("{ka:?} vs {kb:?}"))
        }
    })
    .await;

    a.stop().await;
    b.stop().await;
    db.drop_now().await;
}

#[tokio::test]
async fn a_revoked_key_leaves_every_jwks_and_its_tokens_die_at_every_replica_and_verifier() {
    let (mut env, db) = replicated("revoke").await;
    // The shared issuer is replica a's address, so an SDK verifier reaches
    // its metadata and feed there (the test certificate names 127.0.0.1).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    env.config.issuer = Some(format!("https://127.0.0.1:{port}"));
    env.config.listen = Some(format!("127.0.0.1:{port}"));
    let a = env.start_replica("a").await;
    env.config.listen = None;
    let b = env.start_replica("b").await;
    let stolen = signing_kid(&env, &a).await;
    let token = b.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    assert_eq!(token.header["kid"], stolen);
    // A verifier that already holds the key, following replica a's feed.
    let verifier = Verifier::builder(
        Broker::with_ca_pem(a.url.as_str(), a.ca_pem().as_bytes()).unwrap(),
        ORDERS,
    )
    .follow_revocations(
        FeedAuth::Bearer(a.admin_token().to_string()),
        Duration::from_secs(60),
    )
    .build()
    .await
    .unwrap();
    verifier.verify(&token.access_token).await.unwrap();

    let reply = admin_post(&a, &format!("/admin/v1/keys/{stolen}/revoke")).await;
    assert_eq!(reply.status, 200, "revoke: {}", reply.describe());
    assert_eq!(reply.json["was"], "active");
    let replacement = reply.json["replacement"]["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(replacement, stolen);
    assert!(
        reply.json["revocation"]["id"].is_string(),
        "{}",
        reply.describe()
    );

    assert!(
        !kids(&a.jwks().await).contains(&stolen),
        "withdrawn at once"
    );
    assert_eq!(
        a.introspect_as_admin(&token.access_token).await["active"],
        false
    );
    eventually("the key withdrawn at replica b", async || {
        let published = kids(&b.jwks().await);
        let active = b.introspect_as_admin(&token.access_token).await["active"].clone();
        if !published.contains(&stolen) && published.contains(&replacement) && active == false {
            Ok(())
        } else {
            Err(format!("{published:?}, active {active}"))
        }
    })
    .await;
    eventually(
        "the SDK verifier refusing the token",
        async || match verifier.verify(&token.access_token).await {
            Err(VerifyError::Revoked(entry)) => Ok(entry),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    // Something signs at once, with no publish-ahead: the replacement.
    assert_eq!(signing_kid(&env, &a).await, replacement);
    eventually("replica b signing with the replacement", async || {
        let kid = signing_kid(&env, &b).await;
        if kid == replacement { Ok(()) } else { Err(kid) }
    })
    .await;
    let listed = list_keys(&b).await;
    assert!(
        listed
            .iter()
            .any(|k| k["kid"] == stolen && k["state"] == "revoked"),
        "{listed:?}"
    );

    a.stop().await;
    b.stop().await;
    db.drop_now().await;
}

/// Writes a key-encryption key file of `bytes` with `mode`.
fn write_kek(env: &TestEnv, name: &str, bytes: &[u8], mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let path = env.path(name);
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn private_keys_are_encrypted_under_the_kek_and_a_wrong_or_loose_kek_stops_the_start() {
    let (mut env, db) = replicated("kek").await;
    write_kek(&env, "kek", &[0x5a; 32], 0o600);
    env.config.extra_store_lines = vec!["key_encryption_key_file = \"kek\"".into()];
    let mut a = env.start_replica("a").await;
    let kid = signing_kid(&env, &a).await;

    let mut conn = db.connect().await;
    let (stored, sealed): (Vec<u8>, bool) =
        sqlx::query_as("SELECT pkcs8, sealed FROM signing_keys WHERE kid = $1")
            .bind(&kid)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(sealed);
    assert!(
        ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &stored,
            &ring::rand::SystemRandom::new(),
        )
        .is_err(),
        "the stored bytes are not a PKCS#8 key"
    );

    a.restart().await;
    assert_eq!(
        signing_kid(&env, &a).await,
        kid,
        "the same key after a restart"
    );
    a.stop().await;

    // The wrong key-encryption key: the start fails, saying why.
    write_kek(&env, "kek", &[0x17; 32], 0o600);
    env.write_config();
    let config = env.config_path();
    let wrong = run_writ(env.dir(), &["--config", config.to_str().unwrap(), "serve"]).await;
    assert_ne!(wrong.code, Some(0), "{}", wrong.describe());
    assert!(
        wrong.stderr.contains("does not decrypt") && wrong.stderr.contains(&kid),
        "{}",
        wrong.describe()
    );
    assert!(!wrong.stderr.contains("panicked"), "{}", wrong.describe());

    // No key-encryption key at all: the start fails too.
    env.config.extra_store_lines.clear();
    env.write_config();
    let none = run_writ(env.dir(), &["--config", config.to_str().unwrap(), "serve"]).await;
    assert!(
        none.stderr.contains("stored encrypted") && none.stderr.contains("key_encryption_key_file"),
        "{}",
        none.describe()
    );

    // A key-encryption key others may read is refused.
    write_kek(&env, "kek", &[0x5a; 32], 0o644);
    env.config.extra_store_lines = vec!["key_encryption_key_file = \"kek\"".into()];
    env.write_config();
    let loose = run_writ(env.dir(), &["--config", config.to_str().unwrap(), "serve"]).await;
    assert!(
        loose.stderr.contains("readable by group or others"),
        "{}",
        loose.describe()
    );

    drop(conn);
    db.drop_now().await;
}

/// `writ keys ...` against `server`, as the admin.
async fn keys_cli(env: &TestEnv, server: &Server, args: &[&str]) -> CliOutput {
    let ca = env.path("ca.pem");
    let mut all = vec!["keys"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--server", &server.url, "--ca", ca.to_str().unwrap()]);
    run_writ_with_env(env.dir(), &all, &[("WRIT_ADMIN_TOKEN", &env.admin_token)]).await
}

#[tokio::test]
async fn on_sqlite_writ_keys_rotates_lists_and_revokes() {
    let mut env = TestEnv::new();
    env.config.issuer = Some(SELF_ISSUER.into());
    env.config.keys_lines = vec!["publish_ahead = \"1h\"".into()];
    let server = env.start().await;
    let first = signing_kid(&env, &server).await;

    let rotated = keys_cli(&env, &server, &["rotate"]).await;
    assert_eq!(rotated.code, Some(0), "{}", rotated.describe());
    let listed = keys_cli(&env, &server, &["list", "--json"]).await;
    let keys: Vec<Value> = listed
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(keys.len(), 2, "{}", listed.describe());
    let next = keys.iter().find(|k| k["state"] == "next").unwrap();
    let next_kid = next["kid"].as_str().unwrap().to_owned();
    assert!(rotated.stdout.contains(&next_kid), "{}", rotated.describe());
    assert_eq!(signing_kid(&env, &server).await, first, "an hour ahead");

    let table = keys_cli(&env, &server, &["list"]).await;
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["KID", "ALG", "STATE", "CREATED", "ACTIVATES", "RETIRES"],
        "{}",
        table.describe()
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&first) && l.contains(" active "))
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&next_kid) && l.contains(" next "))
    );

    let token = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    let revoked = keys_cli(&env, &server, &["revoke", &first]).await;
    assert_eq!(revoked.code, Some(0), "{}", revoked.describe());
    assert!(
        revoked.stdout.contains("was active"),
        "{}",
        revoked.describe()
    );
    assert!(!kids(&server.jwks().await).contains(&first));
    assert_eq!(
        server.introspect_as_admin(&token.access_token).await["active"],
        false
    );
    // The next key was brought forward: it signs now.
    assert_eq!(signing_kid(&env, &server).await, next_kid);

    let unknown = keys_cli(&env, &server, &["revoke", "no-such-key"]).await;
    assert_ne!(unknown.code, Some(0));
    assert!(
        unknown.stderr.contains("no signing key no-such-key"),
        "{}",
        unknown.describe()
    );
    server.stop().await;
}

#[tokio::test]
async fn key_actions_need_an_admin_a_cedar_permit_and_a_real_kid() {
    let env = TestEnv::new();
    // A policy permitting the kill switch and key revocation, not rotation.
    env.set_policies(&[(
        "admin.cedar",
        r#"@id("no-rotation")
permit (
  principal is Admin,
  action in [Action::"revoke", Action::"lift", Action::"read", Action::"revoke_key"],
  resource
);
"#,
    )]);
    let server = env.start().await;

    let anonymous = Reply::read(
        server
            .client()
            .post(server.endpoint("/admin/v1/keys/rotate"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&anonymous, 401, "invalid_client");

    let bad = admin_post(&server, "/admin/v1/keys/not%20a%20kid/revoke").await;
    assert_refused(&bad, 400, "invalid_request");
    let unknown = admin_post(&server, "/admin/v1/keys/AAAA/revoke").await;
    assert_eq!(unknown.status, 404, "{}", unknown.describe());

    let denied = admin_post(&server, "/admin/v1/keys/rotate").await;
    assert_refused(&denied, 403, "access_denied");
    let decision_id = denied.decision_id().unwrap().to_owned();
    let record = env
        .audit_record_where("the refused rotation", |r| r["decision_id"] == decision_id)
        .await;
    assert_eq!(record["action"], "rotate_key");
    assert_eq!(record["decision"], "deny");
    assert_eq!(list_keys(&server).await.len(), 1, "no key was made");
    server.stop().await;
}

#[tokio::test]
async fn keys_rotate_on_their_own_after_rotate_every_one_new_key_for_all_replicas() {
    let (mut env, db) = replicated("rotate_every").await;
    env.config
        .keys_lines
        .push("rotate_every = \"4s\"".to_string());
    let a = env.start_replica("a").await;
    let b = env.start_replica("b").await;
    let first = kids(&a.jwks().await);
    assert_eq!(first.len(), 1);

    // Nobody asks: both replicas notice the rotation is due, one key comes.
    let next = eventually("a key made by rotate_every", async || {
        let listed = list_keys(&a).await;
        let pending: Vec<&Value> = listed.iter().filter(|k| k["state"] == "next").collect();
        match pending.as_slice() {
            [] => Err(format!("{listed:?}")),
            [one] => Ok(one["kid"].as_str().unwrap().to_owned()),
            _ => panic!("two replicas made two next keys: {listed:?}"),
        }
    })
    .await;
    assert_ne!(next, first[0]);
    // Both publish it, then both sign with it.
    for replica in [&a, &b] {
        eventually("the new key to sign", async || {
            let kid = signing_kid(&env, replica).await;
            if kid == next { Ok(()) } else { Err(kid) }
        })
        .await;
    }
    a.stop().await;
    b.stop().await;
    db.drop_now().await;
}
