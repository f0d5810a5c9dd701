//! The red-team findings of issue 11, each replayed against the real binary.
//! Every test is one attack, named for what the attacker tries; each must
//! now see a refusal.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;
use serde_json::json;
use writ_sdk::{Broker, FeedAuth, Verifier, VerifyError};

/// Policies for delegation: any agent may read orders for `payments/api`,
/// and narrowing is allowed.
const AGENT_POLICY: &str = r#"@id("agents-read-orders")
permit (principal, action == Action::"mint", resource == Target::"orders")
when { context has actor && context.scope == "orders.read" };
"#;

const ENTITIES_WITH_AGENT: &str = r#"[
  {"uid": {"type": "Target", "id": "orders"}, "attrs": {"owner": "payments"}, "parents": []},
  {"uid": {"type": "Target", "id": "https://writ.test"}, "attrs": {"owner": "platform"}, "parents": []},
  {"uid": {"type": "Team", "id": "payments"}, "attrs": {}, "parents": []},
  {"uid": {"type": "Workload", "id": "spiffe://cluster.local/ns/payments/sa/api"}, "attrs": {},
   "parents": [{"type": "Team", "id": "payments"}]},
  {"uid": {"type": "Agent", "id": "planner"}, "attrs": {}, "parents": []}
]"#;

fn env_with_agents() -> TestEnv {
    let env = TestEnv::new();
    env.write("policies/entities.json", ENTITIES_WITH_AGENT);
    env.write_policy("agents.cedar", AGENT_POLICY);
    env.write_policy("narrowing.cedar", NARROWING_POLICY);
    env
}

/// The agent `planner` acting for `payments/api`.
fn planner_for_workload(env: &TestEnv) -> TokenRequest {
    orders_read(&env.k8s_token())
        .with("actor_token", &env.agent_token("planner"))
        .with("actor_token_type", JWT)
}

/// A verifier for `orders` that follows the revocation feed.
async fn following_verifier(server: &Server) -> Verifier {
    let broker = Broker::with_ca_pem(server.url.as_str(), server.ca_pem().as_bytes()).unwrap();
    Verifier::builder(broker, ORDERS)
        .follow_revocations(
            FeedAuth::Bearer(server.admin_token().to_string()),
            Duration::from_secs(60),
        )
        .build()
        .await
        .unwrap()
}

/// Waits until the verifier refuses `token` as revoked.
async fn verifier_refuses(verifier: &Verifier, token: &str) {
    eventually(
        "the SDK verifier to refuse the token as revoked",
        async || match verifier.verify(token).await {
            Err(VerifyError::Revoked(_)) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
}

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// ---------------------------------------------------------------------------
// 1. Reading the signing key out of the store, and using it.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_local_user_cannot_open_the_store_files() {
    let (env, server) = start_standard().await;
    server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    let mut seen = 0;
    for name in ["writ.db", "writ.db-wal", "writ.db-shm"] {
        let path = env.path(name);
        if path.exists() {
            seen += 1;
            assert_eq!(mode_of(&path), 0o600, "{name} must be owner-only");
        }
    }
    assert!(seen >= 2, "the database and its WAL exist while writ runs");
}

#[tokio::test]
async fn a_store_in_a_directory_others_can_write_is_refused_at_start() {
    let env = TestEnv::new();
    env.write_config();
    std::fs::set_permissions(env.dir(), std::fs::Permissions::from_mode(0o777)).unwrap();

    let out = run_writ(env.dir(), &["--config", "writ.toml", "serve"]).await;

    std::fs::set_permissions(env.dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("writable by group or others"),
        "{}",
        out.describe()
    );
    assert!(!env.path("writ.db").exists(), "nothing was created");
}

/// The signing key as an attacker reads it out of a copy of writ.db.
async fn stolen_signing_key(env: &TestEnv) -> SigningKey {
    use sqlx::Row as _;
    let url = format!("sqlite://{}?mode=ro", env.path("writ.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let row = sqlx::query("SELECT kid, pkcs8 FROM signing_keys")
        .fetch_one(&pool)
        .await
        .unwrap();
    let kid: String = row.get("kid");
    let pkcs8: Vec<u8> = row.get("pkcs8");
    SigningKey::es256_from_pkcs8(&pkcs8, &kid)
}

#[tokio::test]
async fn a_token_forged_with_a_stolen_key_to_live_a_day_is_refused() {
    let (env, server) = start_standard().await;
    let genuine = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    let key = stolen_signing_key(&env).await;
    let iat = now();
    let mut claims = genuine.claims.clone();
    claims["iat"] = json!(iat);
    claims["nbf"] = json!(iat);
    claims["exp"] = json!(iat + 86_400);
    claims["jti"] = json!("forged-for-a-day");
    let header = json!({"alg": "ES256", "kid": key.kid, "typ": "at+jwt"});
    let forged = key.sign_with_header(&header, &claims);

    // The key is real: a forgery within max_ttl would pass; this one is
    // refused because no writ token lives longer than tokens.max_ttl.
    let introspected = server.introspect_as_admin(&forged).await;
    assert_eq!(introspected["active"], false, "{introspected}");
    let reply = server
        .token(&TokenRequest::narrow(&forged, ORDERS, "orders.read"))
        .await;
    assert_refused(&reply, 400, "invalid_grant");

    claims["exp"] = json!(iat + 60);
    let within = key.sign_with_header(&header, &claims);
    assert_eq!(server.introspect_as_admin(&within).await["active"], true);
}

// ---------------------------------------------------------------------------
// 2. Flooding the DPoP replay cache to replay a captured proof.
// ---------------------------------------------------------------------------

fn dpop_proof(key: &SigningKey, server: &Server, jti: &str) -> String {
    key.dpop_proof("POST", &server.endpoint("/oauth2/token"), jti, None)
}

async fn token_with_proof(server: &Server, request: &TokenRequest, proof: &str) -> Reply {
    server.token_with_dpop(request, proof).await
}

#[tokio::test]
async fn a_captured_dpop_proof_cannot_be_replayed_after_flooding_the_cache() {
    const CAPACITY: usize = 20;
    let mut env = TestEnv::new();
    env.config
        .extra_tokens_lines
        .push(format!("dpop_replay_cache = {CAPACITY}"));
    let server = env.start().await;
    let key = SigningKey::generate(Alg::Es256);

    // Proofs without a valid credential are not remembered: they cannot fill it.
    for i in 0..CAPACITY * 2 {
        let reply = token_with_proof(
            &server,
            &orders_read("not-a-token"),
            &dpop_proof(&key, &server, &format!("anon-{i}")),
        )
        .await;
        assert_refused(&reply, 400, "invalid_grant");
    }
    let captured = dpop_proof(&key, &server, "captured");
    assert_granted(&token_with_proof(&server, &orders_read(&env.k8s_token()), &captured).await);

    // A flood with valid credentials fills it; then new proofs wait...
    for i in 1..CAPACITY {
        let proof = dpop_proof(&key, &server, &format!("flood-{i}"));
        assert_granted(&token_with_proof(&server, &orders_read(&env.k8s_token()), &proof).await);
    }
    let overflow = dpop_proof(&key, &server, "overflow");
    let reply = token_with_proof(&server, &orders_read(&env.k8s_token()), &overflow).await;
    assert_refused(&reply, 503, "temporarily_unavailable");
    assert!(
        reply.header("retry-after").is_some(),
        "{}",
        reply.describe()
    );

    // ...and the captured proof is still remembered.
    let replayed = token_with_proof(&server, &orders_read(&env.k8s_token()), &captured).await;
    assert_refused_because(&replayed, 400, "invalid_dpop_proof", "replayed");
}

// ---------------------------------------------------------------------------
// 3. Keeping delegated tokens alive after the agent IdP is blocked.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn blocking_an_agent_identity_provider_stops_its_agents_delegations() {
    let env = env_with_agents();
    let server = env.start().await;
    let verifier = following_verifier(&server).await;
    let delegated = assert_granted(&server.token(&planner_for_workload(&env)).await);
    assert_eq!(delegated.claims["act"]["iss"], "https://agents.test");
    let own = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    server
        .revoke(json!({"issuer": "https://agents.test"}), true, None)
        .await;

    let introspected = server.introspect_as_admin(&delegated.access_token).await;
    assert_eq!(introspected["active"], false, "{introspected}");
    verifier_refuses(&verifier, &delegated.access_token).await;
    let again = server.token(&planner_for_workload(&env)).await;
    assert_refused(&again, 403, "access_denied");
    let narrowed = server
        .token(&TokenRequest::narrow(
            &delegated.access_token,
            ORDERS,
            "orders.read",
        ))
        .await;
    assert_refused(&narrowed, 400, "invalid_grant");
    // The workload's own token, attested by its cluster, lives on.
    assert_eq!(
        server.introspect_as_admin(&own.access_token).await["active"],
        true
    );
    verifier.verify(&own.access_token).await.unwrap();
}

// ---------------------------------------------------------------------------
// 4. Posing as any workload, or as root, with a client certificate.
// ---------------------------------------------------------------------------

const MTLS_ORDERS: &str = r#"@id("mtls-orders")
permit (principal, action == Action::"mint", resource == Target::"orders")
when { context.attestation == "mtls" && context.scope == "orders.read" };
"#;

async fn client_credentials_as(env: &TestEnv, server: &Server, spiffe_id: &str) -> Reply {
    let cert = env.client_pki.client_cert(vec![uri_san(spiffe_id)]);
    let response = server
        .client_with_certificate(&cert)
        .post(server.endpoint("/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("audience", ORDERS),
            ("scope", "orders.read"),
        ])
        .send()
        .await
        .unwrap();
    Reply::read(response).await
}

fn mtls_env() -> TestEnv {
    let mut env = TestEnv::new();
    env.config.client_ca = true;
    env.set_policies(&[("mtls.cedar", MTLS_ORDERS)]);
    env
}

#[tokio::test]
async fn a_certificate_naming_another_trust_domain_or_a_unix_uid_is_refused() {
    let env = mtls_env();
    let server = env.start().await;

    for spiffe_id in [WORKLOAD, "spiffe://writ.local/unix/uid/0"] {
        let reply = client_credentials_as(&env, &server, spiffe_id).await;
        assert_refused(&reply, 401, "invalid_client");
        assert!(
            reply.describe().contains("trust domain writ.local")
                || reply.describe().contains("Unix"),
            "{spiffe_id}: {}",
            reply.describe()
        );
    }
    // Inside the trust domain, the same CA's certificate is a principal.
    let own = client_credentials_as(&env, &server, "spiffe://writ.local/ci/builder").await;
    assert_granted(&own);
}

#[tokio::test]
async fn a_cluster_sharing_the_trust_domain_makes_svid_and_token_one_principal() {
    let mut env = mtls_env();
    env.config.trust_domain = Some("cluster.local".into());
    let server = env.start().await;

    let by_certificate = assert_granted(&client_credentials_as(&env, &server, WORKLOAD).await);
    assert_eq!(by_certificate.claims["sub"], WORKLOAD);
    assert_eq!(by_certificate.claims["attestation"], "mtls");
}

// ---------------------------------------------------------------------------
// 6. Keeping narrowed copies of a revoked token.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn narrowed_copies_die_with_the_token_they_came_from() {
    let env = env_with_agents();
    let server = env.start().await;
    let verifier = following_verifier(&server).await;
    let parent = server
        .mint(&env.k8s_token(), ORDERS, "orders.read orders.write")
        .await;
    let child = server
        .narrow(&parent.access_token, ORDERS, "orders.read")
        .await;
    let grandchild = server
        .narrow(&child.access_token, ORDERS, "orders.read")
        .await;
    assert_eq!(
        grandchild.claims["ancestry"],
        json!([child.claims["jti"], parent.claims["jti"]])
    );

    // The holder gives the leaked parent up (RFC 7009).
    let reply = server.self_revoke(&parent.access_token).await;
    assert_eq!(reply.status, 200, "{}", reply.describe());

    for (what, token) in [
        ("child", &child.access_token),
        ("grandchild", &grandchild.access_token),
    ] {
        let introspected = server.introspect_as_admin(token).await;
        assert_eq!(introspected["active"], false, "{what}: {introspected}");
        verifier_refuses(&verifier, token).await;
    }
}

#[tokio::test]
async fn revoking_an_agents_own_token_revokes_what_it_delegated() {
    let mut env = env_with_agents();
    // Agents hold writ tokens for the broker itself.
    env.config.issuer = Some(SELF_ISSUER.into());
    let server = env.start().await;
    let agent_own = server
        .mint(&env.agent_token("planner"), SELF_ISSUER, "introspect")
        .await;
    let delegated = assert_granted(
        &server
            .token(
                &orders_read(&env.k8s_token())
                    .with("actor_token", &agent_own.access_token)
                    .with("actor_token_type", ACCESS_TOKEN),
            )
            .await,
    );
    let jti = agent_own.claims["jti"].as_str().unwrap();

    server.revoke(json!({"jti": jti}), false, None).await;

    let introspected = server.introspect_as_admin(&delegated.access_token).await;
    assert_eq!(introspected["active"], false, "{introspected}");
}

#[tokio::test]
async fn a_token_narrowed_past_the_ancestry_limit_is_refused() {
    let env = env_with_agents();
    let server = env.start().await;
    let mut token = server
        .mint(&env.k8s_token(), ORDERS, "orders.read")
        .await
        .access_token;
    for _ in 0..16 {
        token = server
            .narrow(&token, ORDERS, "orders.read")
            .await
            .access_token;
    }
    let reply = server
        .token(&TokenRequest::narrow(&token, ORDERS, "orders.read"))
        .await;
    assert_refused_because(&reply, 400, "invalid_grant", "more than 16");
}

// ---------------------------------------------------------------------------
// 7, 11, 16. Hostile request bodies.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn ten_thousand_scopes_are_refused_at_the_limit() {
    let (env, server) = start_standard().await;
    let scopes: Vec<String> = (0..10_000).map(|i| format!("s{i}")).collect();

    let reply = server
        .token(&TokenRequest::exchange(
            &env.k8s_token(),
            ORDERS,
            &scopes.join(" "),
        ))
        .await;

    assert_refused_because(&reply, 400, "invalid_scope", "32");
    // Duplicates count once: 40 copies of one scope are one scope.
    let repeated = vec!["orders.read"; 40].join(" ");
    let reply = server
        .token(&TokenRequest::exchange(&env.k8s_token(), ORDERS, &repeated))
        .await;
    assert_granted(&reply);
}

#[tokio::test]
async fn a_parameter_name_with_a_newline_is_neither_echoed_nor_logged_raw() {
    let (_env, server) = start_standard().await;
    let body = "x%0AINJECTED%20line=1&x%0AINJECTED%20line=2".to_string();

    let reply = server
        .post_raw("/oauth2/token", "application/x-www-form-urlencoded", body)
        .await;

    assert_refused(&reply, 400, "invalid_request");
    assert!(!reply.text.contains("INJECTED"), "{}", reply.describe());
    assert!(
        !server.stderr().lines().any(|l| l.starts_with("INJECTED")),
        "{}",
        server.stderr()
    );
}

#[tokio::test]
async fn a_client_still_sending_a_huge_body_reads_the_413() {
    let (_env, server) = start_standard().await;
    let body = format!("grant_type=x&subject_token={}", "a".repeat(900 * 1024));

    let response = server
        .client()
        .post(server.endpoint("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("the client reads an answer, not a reset");

    assert_eq!(response.status(), 413);
    assert_eq!(
        response
            .headers()
            .get("connection")
            .and_then(|v| v.to_str().ok()),
        Some("close")
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");
}

// ---------------------------------------------------------------------------
// 9. Revoking someone else's bound token; flooding the kill switch.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_thief_cannot_revoke_a_dpop_bound_token_without_its_key() {
    let (env, server) = start_standard().await;
    let key = SigningKey::generate(Alg::Es256);
    let bound = assert_granted(
        &token_with_proof(
            &server,
            &orders_read(&env.k8s_token()),
            &dpop_proof(&key, &server, "mint"),
        )
        .await,
    );
    let token = bound.access_token.as_str();

    let stolen = server.self_revoke(token).await;
    assert_refused(&stolen, 401, "invalid_client");
    assert_eq!(server.introspect_as_admin(token).await["active"], true);

    // The holder revokes it with a proof over this request and token.
    let ath = b64url(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref());
    let proof = key.dpop_proof(
        "POST",
        &server.endpoint("/oauth2/revoke"),
        "revoke",
        Some(&ath),
    );
    let response = server
        .client()
        .post(server.endpoint("/oauth2/revoke"))
        .header("DPoP", proof)
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(server.introspect_as_admin(token).await["active"], false);
}

#[tokio::test]
async fn a_workload_cannot_flood_the_kill_switch_by_minting_and_revoking() {
    let (env, server) = start_standard().await;
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
        let reply = server.self_revoke(&minted.access_token).await;
        if reply.status == 429 {
            assert!(
                reply.header("retry-after").is_some(),
                "{}",
                reply.describe()
            );
        }
        statuses.push(reply.status);
    }

    assert_eq!(&statuses[..10], &[200; 10], "{statuses:?}");
    assert_eq!(&statuses[10..], &[429, 429], "{statuses:?}");
    assert_eq!(server.feed_entries().await.len(), 10);
}

// ---------------------------------------------------------------------------
// 14. Losing a revocation by lowering max_ttl and restarting.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn lowering_max_ttl_and_restarting_keeps_revocations_of_live_tokens() {
    let mut env = TestEnv::new();
    env.config.max_ttl = "3m".into();
    let mut server = env.start().await;
    // The same address after the restart keeps the tokens' issuer.
    env.pin_listen_address(&server);
    let minted = assert_granted(
        &server
            .token(&orders_read(&env.k8s_token()).requested_ttl(180))
            .await,
    );
    let jti = minted.claims["jti"].as_str().unwrap().to_string();
    let entry = server.revoke(json!({"jti": jti}), false, None).await;

    server.take_down().await;
    env.config.max_ttl = "1s".into();
    env.config.default_ttl = "1s".into();
    env.write_config();
    // Past the new max_ttl and the 60 s leeway: an entry this old would be
    // compacted if only the new max_ttl counted.
    tokio::time::sleep(Duration::from_secs(65)).await;
    server.bring_back().await;

    let introspected = server.introspect_as_admin(&minted.access_token).await;
    assert_eq!(introspected["active"], false, "{introspected}");
    let record = env
        .audit_record_where("the introspection after restart", |r| {
            r["action"] == "introspect" && r["jti"] == jti.as_str()
        })
        .await;
    assert_eq!(record["revocation"], entry.id.as_str(), "{record}");
}

// ---------------------------------------------------------------------------
// 8. Keeping a cached attestation alive by reusing the withdrawn key's kid.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_key_replaced_under_the_same_kid_drops_cached_attestations() {
    let mut env = TestEnv::new();
    let identity_provider = JwksServer::start(&env.pki, env.k8s.jwks()).await;
    env.k8s.jwks_uri = Some(identity_provider.url.clone());
    env.k8s.jwks_refresh = Some("100ms".to_string());
    let server = env.start().await;
    let token = env.k8s_token();
    server.mint(&token, ORDERS, "orders.read").await; // verified, and cached

    // The compromised key is replaced by a new one published under its kid.
    let mut replacement = SigningKey::generate(Alg::Es256).jwk();
    replacement["kid"] = json!(env.k8s.key.kid);
    identity_provider.publish(json!({"keys": [replacement]}));

    let reply = server
        .wait_for_token_status(&orders_read(&token), 400, "the cached token to be refused")
        .await;
    assert_refused(&reply, 400, "invalid_grant");
}

#[tokio::test]
async fn a_self_revocation_is_kept_only_as_long_as_its_token_lives() {
    let (env, mut server) = start_standard().await;
    let short = assert_granted(
        &server
            .token(&orders_read(&env.k8s_token()).requested_ttl(5))
            .await,
    );
    // Long enough to be live when revoked on a loaded machine, short enough
    // to be long dead after the sleep below.
    assert_eq!(server.self_revoke(&short.access_token).await.status, 200);
    let by_admin = server
        .revoke(json!({"jti": "some-other-token"}), false, None)
        .await;
    assert_eq!(server.feed_entries().await.len(), 2);

    // Past the token's exp and the 60 s verifiers may allow after it.
    tokio::time::sleep(Duration::from_secs(67)).await;
    server.restart().await;

    let left = server.feed_entries().await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(entry_id(&left[0]), by_admin.id);
}

// ---------------------------------------------------------------------------
// 10. An on-call admin undoing an emergency, or reading what it should not.
// ---------------------------------------------------------------------------

const ONCALL: &str = "spiffe://writ.local/ops/oncall";

/// The README's example: on-call may block, only security may lift or read.
const SECURITY_LIFTS: &str = r#"@id("only-security-lifts")
forbid (principal, action == Action::"lift", resource)
unless { principal in Team::"security" };

@id("only-security-reads")
forbid (principal, action == Action::"read", resource)
unless { principal in Team::"security" };
"#;

#[tokio::test]
async fn on_call_may_block_but_only_security_may_lift_or_read() {
    let mut env = TestEnv::new();
    env.config.client_ca = true;
    env.config.admin_principals = vec![ONCALL.to_string()];
    let token_admin = format!(
        "token:{}",
        &hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            env.admin_token.as_bytes()
        ))[..12]
    );
    let mut entities: serde_json::Value = serde_json::from_str(ENTITIES).unwrap();
    let list = entities.as_array_mut().unwrap();
    list.push(json!({"uid": {"type": "Team", "id": "security"}, "attrs": {}, "parents": []}));
    list.push(
        json!({"uid": {"type": "Admin", "id": token_admin}, "attrs": {},
                     "parents": [{"type": "Team", "id": "security"}]}),
    );
    env.write("policies/entities.json", &entities.to_string());
    env.write_policy("admin-split.cedar", SECURITY_LIFTS);
    let server = env.start().await;
    let oncall = server.client_with_certificate(&env.client_pki.client_cert(vec![uri_san(ONCALL)]));
    let as_oncall =
        async |request: reqwest::RequestBuilder| Reply::read(request.send().await.unwrap()).await;

    let blocked = as_oncall(
        oncall
            .post(server.endpoint(REVOCATIONS))
            .json(&revocation_body(json!({"subject": WORKLOAD}), true, None)),
    )
    .await;
    let entry = assert_revocation_created(&blocked);
    let entry_url = server.endpoint(&format!("{REVOCATIONS}/{}", entry.id));

    assert_refused(
        &as_oncall(oncall.delete(&entry_url)).await,
        403,
        "access_denied",
    );
    assert_refused(
        &as_oncall(oncall.get(&entry_url)).await,
        403,
        "access_denied",
    );
    assert_refused(
        &as_oncall(oncall.get(server.endpoint(REVOCATIONS))).await,
        403,
        "access_denied",
    );
    let read = env
        .audit_record_where("the refused read", |r| r["action"] == "read")
        .await;
    assert_eq!(read["decision"], "deny", "{read}");
    assert_eq!(read["policies"], json!(["only-security-reads"]), "{read}");

    // Security (the token admin) reads and lifts.
    assert_eq!(server.revocation(&entry.id).await.status, 200);
    assert_eq!(server.lift(&entry.id).await.status, 200);
}

// ---------------------------------------------------------------------------
// 5. Connecting as one program, then exec-ing another on the same socket.
// ---------------------------------------------------------------------------

/// Connects to writ's socket, proves itself with one request (so writ has
/// attested it), then execs `/bin/sh`, which sends the token request on the
/// inherited connection and prints the answer.
const CONNECT_THEN_EXEC: &str = r#"
import os, socket, sys
sock_path, body = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sock_path)
s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
seen = b""
while not seen.endswith(b"ok\n"):
    chunk = s.recv(1)
    if not chunk:
        sys.exit("writ closed the connection")
    seen += chunk
fd = s.detach()
os.set_inheritable(fd, True)
request = (
    "POST /oauth2/token HTTP/1.1\r\nHost: localhost\r\n"
    "Content-Type: application/x-www-form-urlencoded\r\n"
    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
)
os.execv("/bin/sh", ["sh", "-c", f"printf '%s' \"$0\" >&{fd}; cat <&{fd}", request])
"#;

#[tokio::test]
async fn a_peer_that_execs_another_program_after_connecting_is_refused() {
    let mut env = TestEnv::new();
    env.config
        .extra_server_lines
        .push("unix_socket = \"writ.sock\"".into());
    // Any program of this uid may mint: the attack needs no policy gap, only
    // the credit of one program given to another.
    let uid = std::fs::metadata("/proc/self").map(|m| {
        use std::os::unix::fs::MetadataExt as _;
        m.uid()
    });
    env.set_policies(&[(
        "unix.cedar",
        &format!(
            r#"permit (principal, action == Action::"mint", resource == Target::"orders")
when {{ context.attestation == "unix" && principal has unix_uid && principal.unix_uid == {} }};"#,
            uid.unwrap()
        ),
    )]);
    let _server = env.start().await;
    env.write("connect_then_exec.py", CONNECT_THEN_EXEC);

    let out = run_python(
        env.dir(),
        &env.path("connect_then_exec.py"),
        &[
            env.path("writ.sock").to_str().unwrap(),
            "grant_type=client_credentials&audience=orders&scope=orders.read",
        ],
    )
    .await;

    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(out.stdout.starts_with("HTTP/1.1 401"), "{}", out.describe());
    assert!(out.stdout.contains("invalid_client"), "{}", out.describe());
    assert!(
        out.stdout.contains("no longer the process"),
        "{}",
        out.describe()
    );
    assert!(!out.stdout.contains("access_token"), "{}", out.describe());
}

// ---------------------------------------------------------------------------
// 17. Holding requests open so that nobody else is served.
// ---------------------------------------------------------------------------

/// A token request whose body never finishes: it holds its place among the
/// requests in flight until the broker gives up on it or the client leaves.
/// Sent chunked, or with a `Content-Length` of `declared` bytes.
fn stalled_token_request(
    server: &Server,
    declared: Option<usize>,
) -> tokio::task::JoinHandle<Reply> {
    use futures_util::StreamExt as _;
    let first = futures_util::stream::once(async { Ok::<_, std::io::Error>(&b"grant_type="[..]) });
    let body = reqwest::Body::wrap_stream(first.chain(futures_util::stream::pending()));
    let mut request = server
        .client()
        .post(server.endpoint("/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded");
    if let Some(length) = declared {
        request = request.header("content-length", length);
    }
    let request = request.body(body);
    tokio::spawn(async move { Reply::read(request.send().await.unwrap()).await })
}

#[tokio::test]
async fn a_flood_of_client_requests_is_shed_but_never_locks_operators_out() {
    let env = TestEnv::with_limits(&["max_concurrent_requests = 1", r#"request_timeout = "60s""#]);
    let server = env.start().await;
    let mut stalled = stalled_token_request(&server, None);

    // Once the stalled request holds the one slot, every other request is shed.
    let shed = eventually("a request to be shed", async || {
        if stalled.is_finished() {
            // It arrived while a probe held the slot, and was shed itself.
            stalled = stalled_token_request(&server, None);
        }
        let reply = server.token(&orders_read(&env.k8s_token())).await;
        if reply.status == 503 {
            Ok(reply)
        } else {
            Err(reply.describe())
        }
    })
    .await;
    assert_refused_because(
        &shed,
        503,
        "temporarily_unavailable",
        "server is overloaded",
    );
    assert_eq!(shed.header("retry-after"), Some("1"), "{}", shed.describe());
    // The limit holds for every client route, not each on its own...
    assert_eq!(server.get("/jwks.json").await.status, 503);
    // ...and operators keep a pool of their own: the kill switch, the
    // revocation feed and the health endpoints still answer.
    server
        .revoke(json!({"jti": "a-token-seen-in-the-flood"}), false, None)
        .await;
    assert_eq!(server.feed_entries().await.len(), 1);
    assert_eq!(server.get("/readyz").await.status, 200);
    eventually("the shed request in the audit log", async || {
        let audited = env.audit_records();
        let shed = |r: &serde_json::Value| {
            r["action"] == "request"
                && r["error"] == "temporarily_unavailable"
                && r["reason"]
                    .as_str()
                    .is_some_and(|why| why.contains("server is overloaded"))
        };
        if audited.iter().any(shed) {
            Ok(())
        } else {
            Err(format!("{audited:?}"))
        }
    })
    .await;

    // The stalled client leaves; its slot is free again.
    stalled.abort();
    let reply = server
        .wait_for_token_status(
            &orders_read(&env.k8s_token()),
            200,
            "the broker to serve again",
        )
        .await;
    assert_granted(&reply);
}

#[tokio::test]
async fn a_request_that_outlives_the_request_timeout_gets_503() {
    let env = TestEnv::with_limits(&[r#"request_timeout = "1s""#]);
    let server = env.start().await;

    for declared in [None, Some(100)] {
        let stalled = stalled_token_request(&server, declared);
        let reply = tokio::time::timeout(Duration::from_secs(30), stalled)
            .await
            .expect("the broker answers a stalled request")
            .unwrap();

        assert_refused_because(&reply, 503, "temporarily_unavailable", "request timed out");
    }
    assert_granted(&server.token(&orders_read(&env.k8s_token())).await);
}
