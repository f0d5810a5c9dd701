//! Transaction tokens (draft-ietf-oauth-transaction-tokens, CONTRACT
//! section 9): writ as a Txn-Token Service. A workload trades its access
//! token (or its attestation) for a short-lived `txntoken+jwt` for the trust
//! domain; the next workload down the call chain replaces it, proving itself,
//! and the chain grows while `txn`, `sub` and `tctx` stay. Cedar decides each
//! one with the transaction visible, the kill switch reaches them, and a txn
//! token is never taken for an access token nor the reverse.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::*;
use serde_json::{Value, json};

/// `server.trust_domain` of the test broker: the audience of txn tokens.
const TRUST_DOMAIN: &str = "writ.local";
const TXN_TOKEN: &str = "urn:ietf:params:oauth:token-type:txn_token";
/// The second workload of the call chain.
const WORKER: &str = "spiffe://cluster.local/ns/payments/sa/worker";

/// Payments workloads may begin and pass on a `checkout` transaction
/// through at most two workloads; `refund` is nobody's purpose.
const TXN_POLICY: &str = r#"
@id("txn-checkout")
permit (principal, action == Action::"mint", resource == Target::"writ.local")
when {
  context.scope == "checkout" && context has transaction &&
  context.transaction.chain <= 2 &&
  (context.transaction.requester like "spiffe://cluster.local/ns/payments/*")
};
"#;

fn env() -> TestEnv {
    let env = TestEnv::new();
    let entities: Value = serde_json::from_str(ENTITIES).unwrap();
    let mut entities = entities.as_array().unwrap().clone();
    entities
        .push(json!({"uid": {"type": "Target", "id": TRUST_DOMAIN}, "attrs": {}, "parents": []}));
    env.write(
        "policies/entities.json",
        &serde_json::to_string(&entities).unwrap(),
    );
    env.write_policy("transactions.cedar", TXN_POLICY);
    env
}

/// A txn token request for `purpose` from `subject_token` of `subject_type`.
fn txn_request(subject_token: &str, subject_type: &str, purpose: &str) -> TokenRequest {
    TokenRequest::exchange(subject_token, TRUST_DOMAIN, purpose)
        .set("subject_token_type", subject_type)
        .with("requested_token_type", TXN_TOKEN)
}

/// The replacement of `txn_token` by the workload attested by `attestation`.
fn replacement(txn_token: &str, attestation: &str, purpose: &str) -> TokenRequest {
    txn_request(txn_token, TXN_TOKEN, purpose)
        .with("actor_token", attestation)
        .with("actor_token_type", JWT)
}

/// A granted txn token: the response checked, the token taken apart.
#[track_caller]
fn assert_txn(reply: &Reply) -> (String, Value) {
    assert_eq!(
        reply.status,
        200,
        "expected a txn token: {}",
        reply.describe()
    );
    assert_eq!(reply.json["issued_token_type"], TXN_TOKEN, "{}", reply.json);
    assert_eq!(reply.json["token_type"], "N_A", "{}", reply.json);
    let token = reply.json["access_token"].as_str().unwrap().to_owned();
    assert_eq!(jwt_header(&token)["typ"], "txntoken+jwt");
    let claims = jwt_claims(&token);
    (token, claims)
}

#[tokio::test]
async fn an_access_token_becomes_a_txn_token_for_the_trust_domain() {
    let env = env();
    let server = env.start().await;
    let access = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    let reply = server
        .token(
            &txn_request(&access.access_token, ACCESS_TOKEN, "checkout")
                .with("request_details", r#"{"order":"o-17","amount":42}"#)
                .with(
                    "request_context",
                    r#"{"req_ip":"203.0.113.9","authn":"urn:pwd"}"#,
                ),
        )
        .await;
    let (token, claims) = assert_txn(&reply);

    // Any JWT library verifies it through the JWKS, for the trust domain.
    let issuer = server.metadata().await["issuer"]
        .as_str()
        .unwrap()
        .to_owned();
    verify_with_jwks(&token, &server.jwks().await, &issuer, TRUST_DOMAIN).unwrap();
    assert_eq!(claims["aud"], TRUST_DOMAIN);
    assert_eq!(claims["sub"], WORKLOAD);
    assert_eq!(claims["purp"], "checkout");
    assert!(
        claims["txn"].as_str().is_some_and(|t| t.len() >= 20),
        "{claims}"
    );
    assert_eq!(claims["tctx"], json!({"order": "o-17", "amount": 42}));
    assert_eq!(claims["rctx"]["req_ip"], "203.0.113.9");
    assert_eq!(claims["rctx"]["authn"], "urn:pwd");
    assert_eq!(claims["rctx"]["req_wl"], json!([WORKLOAD]));
    assert_eq!(claims["ancestry"], json!([access.claims["jti"]]));
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 60, "tokens.txn_ttl defaults to a minute");
    assert_eq!(reply.json["expires_in"], 60);

    // The audit record names the trust domain and the purpose.
    let record = env
        .audit_record_where("the txn token's record", |r| r["jti"] == claims["jti"])
        .await;
    assert_eq!(record["target"], TRUST_DOMAIN);
    assert_eq!(record["scopes_granted"], json!(["checkout"]));
    assert_eq!(record["policies"], json!(["txn-checkout"]));
}

#[tokio::test]
async fn a_workload_attestation_begins_a_transaction_without_an_access_token() {
    let env = env();
    let server = env.start().await;
    let reply = server
        .token(&txn_request(&env.k8s_token(), JWT, "checkout").requested_ttl(20))
        .await;
    let (_, claims) = assert_txn(&reply);
    assert_eq!(claims["sub"], WORKLOAD);
    assert_eq!(claims["rctx"]["req_wl"], json!([WORKLOAD]));
    assert_eq!(
        claims["rctx"]["req_ip"], "127.0.0.1",
        "the caller's address"
    );
    assert!(claims.get("tctx").is_none(), "{claims}");
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 20, "a shorter requested_ttl holds");
}

#[tokio::test]
async fn the_next_workload_replaces_it_and_the_call_chain_grows() {
    let env = env();
    let server = env.start().await;
    let first = server
        .token(
            &txn_request(&env.k8s_token(), JWT, "checkout")
                .with("request_details", r#"{"order":"o-17"}"#),
        )
        .await;
    let (first_token, first_claims) = assert_txn(&first);
    let worker = env.service_account_token(NAMESPACE, "worker");

    let second = server
        .token(&replacement(&first_token, &worker, "checkout"))
        .await;
    let (_, claims) = assert_txn(&second);
    assert_eq!(
        claims["txn"], first_claims["txn"],
        "one call chain, one txn"
    );
    assert_eq!(
        claims["sub"], WORKLOAD,
        "still acting for the first workload's subject"
    );
    assert_eq!(claims["tctx"], json!({"order": "o-17"}));
    assert_eq!(claims["rctx"]["req_wl"], json!([WORKLOAD, WORKER]));
    assert_eq!(claims["ancestry"], json!([first_claims["jti"]]));
    assert!(claims["exp"].as_i64() <= first_claims["exp"].as_i64());
    assert_ne!(claims["jti"], first_claims["jti"]);

    // A third workload would make the chain longer than policy allows.
    let third = server
        .token(&replacement(
            second.json["access_token"].as_str().unwrap(),
            &env.service_account_token(NAMESPACE, "ledger-writer"),
            "checkout",
        ))
        .await;
    assert_refused(&third, 403, "access_denied");

    // A replacement neither widens the purpose nor rewrites the context.
    let wider = server
        .token(&replacement(&first_token, &worker, "checkout refund"))
        .await;
    assert_refused_because(&wider, 400, "invalid_scope", "narrow");
    let rewritten = server
        .token(
            &replacement(&first_token, &worker, "checkout")
                .with("request_details", r#"{"order":"o-99"}"#),
        )
        .await;
    assert_refused(&rewritten, 400, "invalid_request");
    // The replacing workload must prove itself.
    let unproven = server
        .token(&txn_request(&first_token, TXN_TOKEN, "checkout"))
        .await;
    assert_refused_because(&unproven, 400, "invalid_request", "actor_token");
    let forged_worker = with_claims(
        &worker,
        &json!({"sub": "system:serviceaccount:payments:admin"}),
    );
    let forged = server
        .token(&replacement(&first_token, &forged_worker, "checkout"))
        .await;
    assert_refused(&forged, 400, "invalid_grant");
    // Outside the payments namespace, no workload may pass it on.
    let stranger = server
        .token(&replacement(
            &first_token,
            &env.service_account_token("web", "frontend"),
            "checkout",
        ))
        .await;
    assert_refused(&stranger, 403, "access_denied");
}

#[tokio::test]
async fn a_txn_token_is_never_an_access_token_nor_the_reverse() {
    let env = env();
    let server = env.start().await;
    let access = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    let (txn_token, _) = assert_txn(
        &server
            .token(&txn_request(&access.access_token, ACCESS_TOKEN, "checkout"))
            .await,
    );

    // Introspection says inactive: it is not an access token.
    let introspected = server.introspect_as_admin(&txn_token).await;
    assert_eq!(introspected["active"], false, "{introspected}");
    // Presented as an access token to be narrowed: refused.
    let narrowed = server
        .token(&TokenRequest::narrow(&txn_token, ORDERS, "orders.read"))
        .await;
    assert_refused(&narrowed, 400, "invalid_grant");
    // Named as what it is, but asking for an access token: refused.
    let traded = server
        .token(
            &TokenRequest::exchange(&txn_token, ORDERS, "orders.read")
                .set("subject_token_type", TXN_TOKEN),
        )
        .await;
    assert_refused_because(&traded, 400, "invalid_request", "transaction token");
    // An access token presented as a txn token to be replaced: refused.
    let worker = env.service_account_token(NAMESPACE, "worker");
    let posing = server
        .token(&replacement(&access.access_token, &worker, "checkout"))
        .await;
    assert_refused(&posing, 400, "invalid_grant");
    // A txn token signed by someone else: refused.
    let forged = with_claims(
        &txn_token,
        &json!({"sub": "spiffe://cluster.local/ns/payments/sa/root"}),
    );
    let forged_reply = server
        .token(&replacement(&forged, &worker, "checkout"))
        .await;
    assert_refused(&forged_reply, 400, "invalid_grant");
}

#[tokio::test]
async fn bad_txn_requests_get_clear_errors() {
    let env = env();
    let server = env.start().await;
    let attestation = env.k8s_token();
    let cases: Vec<(TokenRequest, u16, &str, &str)> = vec![
        (
            txn_request(&attestation, JWT, "checkout").set("audience", ORDERS),
            400,
            "invalid_target",
            "trust domain",
        ),
        (
            txn_request(&attestation, JWT, "checkout")
                .without("audience")
                .with("resource", "https://writ.local/"),
            400,
            "invalid_target",
            "trust domain",
        ),
        (
            txn_request(&attestation, JWT, "checkout").set(
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:saml2",
            ),
            400,
            "invalid_request",
            "requested_token_type",
        ),
        (
            txn_request(&attestation, JWT, "checkout").with("request_details", "[1,2]"),
            400,
            "invalid_request",
            "request_details",
        ),
        (
            txn_request(&attestation, JWT, "checkout").with("request_context", "not json"),
            400,
            "invalid_request",
            "request_context",
        ),
        (
            txn_request(&attestation, JWT, "checkout").with(
                "request_details",
                &format!(r#"{{"pad":"{}"}}"#, "x".repeat(5000)),
            ),
            400,
            "invalid_request",
            "longer",
        ),
        (
            txn_request(&attestation, JWT, "checkout")
                .with("actor_token", &env.agent_token("helper"))
                .with("actor_token_type", JWT),
            400,
            "invalid_request",
            "actor_token",
        ),
        (
            txn_request(&attestation, JWT, "refund"),
            403,
            "access_denied",
            "no policy",
        ),
    ];
    for (request, status, error, reason) in cases {
        let reply = server.token(&request).await;
        assert_refused_because(&reply, status, error, reason);
    }
}

#[tokio::test]
async fn the_kill_switch_reaches_txn_tokens() {
    let env = env();
    let server = env.start().await;
    let access = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    let (txn_token, _) = assert_txn(
        &server
            .token(&txn_request(&access.access_token, ACCESS_TOKEN, "checkout"))
            .await,
    );
    let worker = env.service_account_token(NAMESPACE, "worker");

    // Revoking the access token it began from revokes the txn token: it is
    // no longer replaced.
    server
        .revoke(json!({"jti": access.claims["jti"]}), false, None)
        .await;
    let replaced = server
        .token(&replacement(&txn_token, &worker, "checkout"))
        .await;
    assert_refused_because(&replaced, 400, "invalid_grant", "revoked");
    let again = server
        .token(&txn_request(&access.access_token, ACCESS_TOKEN, "checkout"))
        .await;
    assert_refused(&again, 400, "invalid_grant");

    // A blocked requester passes no transaction on, whoever it acts for.
    let (fresh, _) = assert_txn(
        &server
            .token(&txn_request(&env.k8s_token(), JWT, "checkout"))
            .await,
    );
    let entry = server.revoke(json!({"subject": WORKER}), true, None).await;
    let blocked = server
        .token(&replacement(&fresh, &worker, "checkout"))
        .await;
    assert_refused_because(&blocked, 403, "access_denied", "kill switch");
    assert_eq!(server.lift(&entry.id).await.status, 200);

    // A blocked subject begins none.
    server
        .revoke(json!({"subject": WORKLOAD}), true, None)
        .await;
    let refused = server
        .token(&txn_request(&env.k8s_token(), JWT, "checkout"))
        .await;
    assert_refused_because(&refused, 403, "access_denied", "kill switch");
}

#[tokio::test]
async fn tokens_txn_ttl_and_max_ttl_cap_the_lifetime_and_a_zero_one_stops_the_start() {
    let mut env = env();
    env.config.extra_tokens_lines = vec!["txn_ttl = \"30s\"".into()];
    let server = env.start().await;
    let (_, claims) = assert_txn(
        &server
            .token(&txn_request(&env.k8s_token(), JWT, "checkout").requested_ttl(600))
            .await,
    );
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 30);
    drop(server);

    // tokens.max_ttl caps it too.
    env.config.extra_tokens_lines = vec!["txn_ttl = \"1h\"".into()];
    env.config.max_ttl = "20s".into();
    env.config.default_ttl = "20s".into();
    let server = env.start().await;
    let (_, claims) = assert_txn(
        &server
            .token(&txn_request(&env.k8s_token(), JWT, "checkout"))
            .await,
    );
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 20);
    drop(server);

    env.config.extra_tokens_lines = vec!["txn_ttl = \"0s\"".into()];
    env.write_config();
    let config = env.config_path();
    let out = run_writ(env.dir(), &["--config", config.to_str().unwrap(), "serve"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stderr.contains("tokens.txn_ttl"), "{out:?}");
}

#[tokio::test]
async fn the_sdk_verifies_txn_tokens_from_the_header_and_follows_the_kill_switch() {
    use std::time::Duration;
    use writ_sdk::{Broker, FeedAuth, Verifier, VerifyError};

    let env = env();
    let server = env.start().await;
    let broker = Broker::with_ca_pem(server.url.as_str(), server.ca_pem().as_bytes()).unwrap();
    let verifier = Verifier::builder(broker, ORDERS)
        .follow_revocations(
            FeedAuth::Bearer(server.admin_token().to_string()),
            Duration::from_secs(30),
        )
        .build()
        .await
        .unwrap();
    let access = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    let (txn_token, _) = assert_txn(
        &server
            .token(
                &txn_request(&access.access_token, ACCESS_TOKEN, "checkout")
                    .with("request_details", r#"{"order":"o-17"}"#),
            )
            .await,
    );

    let claims = verifier.verify_txn(&txn_token, TRUST_DOMAIN).await.unwrap();
    assert_eq!(claims.sub, WORKLOAD);
    assert_eq!(claims.purposes().collect::<Vec<_>>(), ["checkout"]);
    assert_eq!(claims.requesting_workloads(), [WORKLOAD]);
    assert_eq!(claims.tctx.as_ref().unwrap()["order"], "o-17");

    // Neither token passes for the other, nor for another trust domain.
    assert_eq!(
        verifier.verify(&txn_token).await.unwrap_err(),
        VerifyError::Malformed
    );
    assert_eq!(
        verifier
            .verify_txn(&access.access_token, TRUST_DOMAIN)
            .await
            .unwrap_err(),
        VerifyError::Malformed
    );
    assert_eq!(
        verifier
            .verify_txn(&txn_token, "other.example")
            .await
            .unwrap_err(),
        VerifyError::Audience
    );

    // Blocking the subject revokes the txn token at the verifier too.
    let entry = server
        .revoke(json!({"subject": WORKLOAD}), true, None)
        .await;
    eventually(
        "the verifier to refuse the txn token",
        async || match verifier.verify_txn(&txn_token, TRUST_DOMAIN).await {
            Err(VerifyError::Revoked(id)) if id == entry.id => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
}

#[tokio::test]
async fn a_tool_behind_the_sdk_layer_reads_the_txn_token_header() {
    use axum::Router;
    use axum::routing::get;
    use writ_sdk::layer::{RequireToken, TxnToken};
    use writ_sdk::{Broker, Verifier};

    async fn chain(txn: Option<TxnToken>) -> String {
        match txn {
            Some(TxnToken(claims)) => format!(
                "{} for {} via {}",
                claims.purp,
                claims.sub,
                claims.requesting_workloads().join(",")
            ),
            None => "no transaction".into(),
        }
    }

    let env = env();
    let server = env.start().await;
    let broker = Broker::with_ca_pem(server.url.as_str(), server.ca_pem().as_bytes()).unwrap();
    let verifier = Verifier::builder(broker, ORDERS).build().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().route("/chain", get(chain)).layer(
        RequireToken::new(verifier, &origin)
            .unwrap()
            .accept_txn_tokens(TRUST_DOMAIN),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("{origin}/chain");

    let access = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    let (txn_token, _) = assert_txn(
        &server
            .token(&txn_request(&access.access_token, ACCESS_TOKEN, "checkout"))
            .await,
    );
    let call = async |txn: Option<&str>| {
        let mut request = reqwest::Client::new()
            .get(&url)
            .bearer_auth(&access.access_token);
        if let Some(txn) = txn {
            request = request.header("Txn-Token", txn);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };

    assert_eq!(
        call(Some(&txn_token)).await,
        (200, format!("checkout for {WORKLOAD} via {WORKLOAD}"))
    );
    assert_eq!(call(None).await, (200, "no transaction".to_owned()));
    // An access token in the Txn-Token header, or a forged txn token, is refused.
    assert_eq!(call(Some(&access.access_token)).await.0, 401);
    let forged = with_claims(
        &txn_token,
        &json!({"sub": "spiffe://cluster.local/ns/payments/sa/root"}),
    );
    assert_eq!(call(Some(&forged)).await.0, 401);
}
