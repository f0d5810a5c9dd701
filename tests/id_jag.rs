//! Enterprise-managed authorization (ID-JAG,
//! draft-ietf-oauth-identity-assertion-authz-grant, CONTRACT section 9): an
//! `[[issuers]]` entry of kind `id-jag` trusts an enterprise IdP's Identity
//! Assertion JWT Authorization Grants, presented with the jwt-bearer grant.
//! The user is the subject, the client the agent acting for them, and Cedar
//! decides as for any delegation; the kill switch reaches the agent; a
//! defective or replayed assertion is `invalid_grant`.
//!
//! The enterprise IdP here is the test environment's `people` issuer
//! (`https://people.test`), trusted both for ID tokens (`oidc`) and, with the
//! same key, for ID-JAGs: the two are never taken for each other.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::*;
use serde_json::{Value, json};

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const IDP: &str = "https://people.test";
const ALICE: &str = "alice@example.com";
/// The AI agent the IdP issues ID-JAGs to.
const HELPER: &str = "helper";

/// alice's agent `helper` may read orders for her, when the IdP said so.
const ID_JAG_POLICY: &str = r#"
@id("id-jag-orders-read")
permit (principal == User::"alice@example.com", action == Action::"mint", resource == Target::"orders")
when {
  context.scope == "orders.read" && context.attestation == "id-jag" &&
  context has actor && context.actor == Agent::"helper"
};
"#;

/// The `[[issuers]]` entry trusting the people IdP's ID-JAGs for `audience`.
fn id_jag_issuer(audience: &str) -> String {
    format!(
        "[[issuers]]\nname = \"enterprise\"\nkind = \"id-jag\"\nissuer = \"{IDP}\"\n\
         jwks_file = \"people-jwks.json\"\naudience = \"{audience}\"\n"
    )
}

/// An environment trusting the people IdP's ID-JAGs for this broker.
fn env() -> TestEnv {
    let mut env = TestEnv::new();
    env.config.issuer = Some(SELF_ISSUER.into());
    env.config.extra_toml = vec![id_jag_issuer(SELF_ISSUER)];
    env.write_policy("id-jag.cedar", ID_JAG_POLICY);
    env
}

async fn start() -> (TestEnv, Server) {
    let env = env();
    let server = env.start().await;
    (env, server)
}

/// The claims of a fresh ID-JAG for alice and `helper`.
fn claims() -> Value {
    let now = now();
    json!({
        "iss": IDP,
        "sub": ALICE,
        "aud": SELF_ISSUER,
        "client_id": HELPER,
        "jti": format!("jag-{}", uuid()),
        "iat": now,
        "exp": now + 300,
        "scope": "orders.read orders.write",
        "email": ALICE,
    })
}

fn uuid() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 12];
    ring::rand::SystemRandom::new().fill(&mut bytes).unwrap();
    b64url(&bytes)
}

/// `claims` signed by the IdP as an ID-JAG (`typ` `oauth-id-jag+jwt`).
fn id_jag(env: &TestEnv, claims: &Value) -> String {
    let mut header = env.people.key.header();
    header["typ"] = json!("oauth-id-jag+jwt");
    env.people.key.sign_with_header(&header, claims)
}

/// A jwt-bearer request presenting `assertion` for `orders.read` on orders.
fn grant(assertion: &str) -> TokenRequest {
    TokenRequest::exchange("unused", ORDERS, "orders.read")
        .without("subject_token")
        .without("subject_token_type")
        .set("grant_type", JWT_BEARER)
        .with("assertion", assertion)
}

#[tokio::test]
async fn an_id_jag_gets_the_agent_a_token_acting_for_the_user() {
    let (env, server) = start().await;
    let metadata = server.metadata().await;
    assert!(
        metadata["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(JWT_BEARER)),
        "{metadata}"
    );

    let minted = assert_granted(&server.token(&grant(&id_jag(&env, &claims()))).await);
    assert_eq!(minted.claims["sub"], ALICE);
    assert_eq!(minted.claims["principal_type"], "User");
    assert_eq!(minted.claims["attestation"], "id-jag");
    assert_eq!(minted.claims["attestation_issuer"], IDP);
    assert_eq!(minted.claims["act"], json!({"sub": HELPER, "iss": IDP}));
    assert_eq!(minted.claims["client_id"], HELPER);
    assert_eq!(minted.scope, "orders.read");
    assert!(minted.lifetime() <= 300, "never past the assertion's exp");

    let record = env
        .audit_record_where("the grant's record", |r| r["jti"] == minted.claims["jti"])
        .await;
    assert_eq!(record["principal"], ALICE);
    assert_eq!(record["act"], json!([HELPER]));
    assert_eq!(record["attestation"], "id-jag");
}

#[tokio::test]
async fn an_assertion_is_accepted_once() {
    let (env, server) = start().await;
    let assertion = id_jag(&env, &claims());
    assert_granted(&server.token(&grant(&assertion)).await);
    let replayed = server.token(&grant(&assertion)).await;
    assert_refused_because(&replayed, 400, "invalid_grant", "replayed");
}

#[tokio::test]
async fn defective_assertions_are_invalid_grant() {
    let (env, server) = start().await;
    let stranger = SigningKey::generate(Alg::Es256);
    let mut foreign_header = stranger.header();
    foreign_header["typ"] = json!("oauth-id-jag+jwt");
    let with = |patch: Value| {
        let mut c = claims();
        c.as_object_mut()
            .unwrap()
            .extend(patch.as_object().unwrap().clone());
        c
    };
    let without = |name: &str| {
        let mut c = claims();
        c.as_object_mut().unwrap().remove(name);
        c
    };
    let now = now();
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "an ID token, not an ID-JAG",
            env.people.sign(&claims()),
            "typ",
        ),
        (
            "an untrusted issuer",
            id_jag(&env, &with(json!({"iss": "https://evil.test"}))),
            "issuer",
        ),
        (
            "signed by another key",
            stranger.sign_with_header(&foreign_header, &claims()),
            "assertion",
        ),
        (
            "for another server",
            id_jag(&env, &with(json!({"aud": "https://other.test"}))),
            "audience",
        ),
        (
            "expired",
            id_jag(&env, &with(json!({"iat": now - 900, "exp": now - 300}))),
            "expired",
        ),
        (
            "living an hour",
            id_jag(&env, &with(json!({"exp": now + 3600}))),
            "exp",
        ),
        (
            "without a client",
            id_jag(&env, &without("client_id")),
            "client_id",
        ),
        ("without a jti", id_jag(&env, &without("jti")), "jti"),
        ("garbage", "not.a.jwt".into(), "assertion"),
    ];
    for (what, assertion, reason) in cases {
        let reply = server.token(&grant(&assertion)).await;
        assert_eq!(reply.status, 400, "{what}: {}", reply.describe());
        assert_refused_because(&reply, 400, "invalid_grant", reason);
    }
    // The assertion is the only party of the grant.
    let missing = server.token(&grant("x").without("assertion")).await;
    assert_refused_because(&missing, 400, "invalid_request", "assertion");
}

#[tokio::test]
async fn the_assertion_bounds_the_request_and_is_no_subject_token() {
    let (env, server) = start().await;
    // Wider than the assertion's scope.
    let narrow = id_jag(&env, &{
        let mut c = claims();
        c["scope"] = json!("orders.read");
        c
    });
    let wider = server
        .token(&grant(&narrow).set("scope", "orders.read orders.write"))
        .await;
    assert_refused(&wider, 400, "invalid_scope");
    // For another resource than the assertion names.
    let elsewhere = id_jag(&env, &{
        let mut c = claims();
        c["resource"] = json!(LEDGER);
        c
    });
    assert_refused(
        &server.token(&grant(&elsewhere)).await,
        400,
        "invalid_target",
    );
    // An ID-JAG is not an attestation for token exchange, though the same
    // IdP key is trusted for ID tokens.
    let as_subject = server
        .token(&orders_read(&id_jag(&env, &claims())).set("subject_token_type", ID_TOKEN))
        .await;
    assert_refused_because(&as_subject, 400, "invalid_grant", "ID-JAG");
    // Policy decides: another client of the IdP is not alice's agent here.
    let rogue = id_jag(&env, &{
        let mut c = claims();
        c["client_id"] = json!("rogue");
        c
    });
    assert_refused(&server.token(&grant(&rogue)).await, 403, "access_denied");
}

#[tokio::test]
async fn the_kill_switch_stops_the_agent_but_not_the_user() {
    let (env, server) = start().await;
    server.revoke(json!({"actor": HELPER}), true, None).await;
    let refused = server.token(&grant(&id_jag(&env, &claims()))).await;
    assert_refused_because(&refused, 403, "access_denied", "kill switch");
}

#[tokio::test]
async fn an_id_jag_issuer_must_name_this_broker_as_its_audience() {
    let mut env = env();
    env.config.extra_toml = vec![id_jag_issuer("https://other.test")];
    env.write_config();
    let config = env.config_path();
    let out = run_writ(env.dir(), &["--config", config.to_str().unwrap(), "serve"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("server.issuer"), "{out:?}");
}

#[tokio::test]
async fn an_assertion_used_at_one_replica_is_refused_at_every_other() {
    let db = Database::create("id_jag_replay").await;
    let mut env = env();
    env.config.store_url = Some(db.url.clone());
    let a = env.start_replica("a").await;
    let b = env.start_replica("b").await;
    let assertion = id_jag(&env, &claims());

    assert_granted(&a.token(&grant(&assertion)).await);
    for replica in [&b, &a] {
        let replayed = replica.token(&grant(&assertion)).await;
        assert_refused_because(&replayed, 400, "invalid_grant", "replayed");
    }
    assert_granted(&b.token(&grant(&id_jag(&env, &claims()))).await);

    a.stop().await;
    b.stop().await;
    db.drop_now().await;
}
