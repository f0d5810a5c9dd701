//! DPoP (RFC 9449): a proof of possession on the token request binds the
//! token to the client's key (`cnf.jkt`, `token_type: DPoP`); every proof
//! defect is `invalid_dpop_proof`; a bound token is narrowed only with a
//! proof by the same key.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use serde_json::{Value, json};

/// A proof over `htm htu` at `iat`, signed by `key`, embedding `jwk`.
fn proof_with(key: &SigningKey, jwk: Value, alg: &str, claims: Value) -> String {
    key.sign_with_header(&json!({"typ": "dpop+jwt", "alg": alg, "jwk": jwk}), &claims)
}

fn claims(server: &Server, htm: &str, path: &str, iat: i64, jti: &str) -> Value {
    json!({"htm": htm, "htu": server.endpoint(path), "iat": iat, "jti": jti})
}

fn proof(key: &SigningKey, server: &Server, jti: &str) -> String {
    proof_with(
        key,
        key.jwk(),
        "ES256",
        claims(server, "POST", "/oauth2/token", now(), jti),
    )
}

fn thumbprint(jwk: &Value) -> String {
    let canonical = json!({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"]});
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        canonical.to_string().as_bytes(),
    ))
}

async fn token_with_proof(server: &Server, request: &TokenRequest, proof: &str) -> Reply {
    server.token_with_dpop(request, proof).await
}

#[tokio::test]
async fn proof_binds_the_token_to_the_key() {
    let (env, server) = start_standard().await;
    let key = SigningKey::generate(Alg::Es256);

    let reply = token_with_proof(
        &server,
        &orders_read(&env.k8s_token()),
        &proof(&key, &server, "a"),
    )
    .await;

    let minted = assert_granted(&reply);
    assert_eq!(minted.body["token_type"], "DPoP");
    assert_eq!(minted.claims["cnf"]["jkt"], thumbprint(&key.jwk()).as_str());
}

#[tokio::test]
async fn replayed_proof_is_invalid_dpop_proof() {
    let (env, server) = start_standard().await;
    let key = SigningKey::generate(Alg::Es256);
    let once = proof(&key, &server, "same-jti");
    assert_granted(&token_with_proof(&server, &orders_read(&env.k8s_token()), &once).await);

    let reply = token_with_proof(&server, &orders_read(&env.k8s_token()), &once).await;

    assert_refused_because(&reply, 400, "invalid_dpop_proof", "replayed");
}

#[tokio::test]
async fn proof_for_another_uri_is_invalid_dpop_proof() {
    let (env, server) = start_standard().await;
    let key = SigningKey::generate(Alg::Es256);
    let p = proof_with(
        &key,
        key.jwk(),
        "ES256",
        claims(&server, "POST", "/oauth2/introspect", now(), "u"),
    );

    let reply = token_with_proof(&server, &orders_read(&env.k8s_token()), &p).await;

    assert_refused_because(&reply, 400, "invalid_dpop_proof", "htu");
}

#[tokio::test]
async fn proof_for_another_method_is_invalid_dpop_proof() {
    let (env, server) = start_standard().await;
    let key = SigningKey::generate(Alg::Es256);
    let p = proof_with(
        &key,
        key.jwk(),
        "ES256",
        claims(&server, "GET", "/oauth2/token", now(), "m"),
    );

    let reply = token_with_proof(&server, &orders_read(&env.k8s_token()), &p).await;

    assert_refused_because(&reply, 400, "invalid_dpop_proof", "htm");
}

#[tokio::test]
async fn stale_and_future_proofs_are_invalid_dpop_proof() {
    let (env, server) = start_standard().await;
    let key = SigningKey::generate(Alg::Es256);
    for (iat, jti) in [(now() - 120, "old"), (now() + 60, "new")] {
        let p = proof_with(
            &key,
            key.jwk(),
            "ES256",
            claims(&server, "POST", "/oauth2/token", iat, jti),
        );

        let reply = token_with_proof(&server, &orders_read(&env.k8s_token()), &p).await;

        assert_refused_because(
            &reply,
            400,
            "invalid_dpop_proof",
            "too old or from the future",
        );
    }
}

#[tokio::test]
async fn proof_signed_by_another_key_than_its_jwk_is_invalid_dpop_proof() {
    let (env, server) = start_standard().await;
    let (key, other) = (
        SigningKey::generate(Alg::Es256),
        SigningKey::generate(Alg::Es256),
    );
    let p = proof_with(
        &other,
        key.jwk(),
        "ES256",
        claims(&server, "POST", "/oauth2/token", now(), "k"),
    );

    let reply = token_with_proof(&server, &orders_read(&env.k8s_token()), &p).await;

    assert_refused_because(&reply, 400, "invalid_dpop_proof", "signature");
}

#[tokio::test]
async fn proof_carrying_private_key_material_is_invalid_dpop_proof() {
    let (env, server) = start_standard().await;
    let key = SigningKey::generate(Alg::Es256);
    let mut jwk = key.jwk();
    jwk["d"] = json!("AAAA");
    let p = proof_with(
        &key,
        jwk,
        "ES256",
        claims(&server, "POST", "/oauth2/token", now(), "d"),
    );

    let reply = token_with_proof(&server, &orders_read(&env.k8s_token()), &p).await;

    assert_refused_because(&reply, 400, "invalid_dpop_proof", "private");
}

#[tokio::test]
async fn unsigned_proof_is_invalid_dpop_proof() {
    let (env, server) = start_standard().await;
    let key = SigningKey::generate(Alg::Es256);
    let header = json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.jwk()});
    let body = claims(&server, "POST", "/oauth2/token", now(), "n");
    let p = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(body.to_string())
    );

    let reply = token_with_proof(&server, &orders_read(&env.k8s_token()), &p).await;

    assert_refused_because(&reply, 400, "invalid_dpop_proof", "algorithm");
}

#[tokio::test]
async fn bound_token_is_narrowed_only_with_a_proof_by_its_key() {
    let env = TestEnv::new();
    env.write_policy("narrowing.cedar", NARROWING_POLICY);
    let server = env.start().await;
    let key = SigningKey::generate(Alg::Es256);
    let bound = assert_granted(
        &token_with_proof(
            &server,
            &orders_read(&env.k8s_token()),
            &proof(&key, &server, "1"),
        )
        .await,
    );
    let narrow = TokenRequest::narrow(&bound.access_token, ORDERS, "orders.read");

    let without = server.token(&narrow).await;
    let stranger = SigningKey::generate(Alg::Es256);
    let other_key = token_with_proof(&server, &narrow, &proof(&stranger, &server, "2")).await;
    let holder = token_with_proof(&server, &narrow, &proof(&key, &server, "3")).await;

    assert_refused(&without, 400, "invalid_grant");
    assert_refused(&other_key, 400, "invalid_grant");
    let narrowed = assert_granted(&holder);
    assert_eq!(narrowed.claims["cnf"], bound.claims["cnf"]);
}

#[tokio::test]
async fn sender_constrained_reaches_cedar() {
    let env = TestEnv::new();
    env.set_policies(&[(
        "bound-only.cedar",
        r#"permit (principal, action == Action::"mint", resource == Target::"orders")
when { context.sender_constrained && context.scope == "orders.read" };"#,
    )]);
    let server = env.start().await;
    let key = SigningKey::generate(Alg::Es256);

    let bearer = server.token(&orders_read(&env.k8s_token())).await;
    let bound = token_with_proof(
        &server,
        &orders_read(&env.k8s_token()),
        &proof(&key, &server, "c"),
    )
    .await;

    assert_refused(&bearer, 403, "access_denied");
    assert_granted(&bound);
}

/// A proof by `key` for `POST <SELF_ISSUER><path>`, optionally over an access token.
fn proof_for_self(key: &SigningKey, path: &str, jti: &str, access_token: Option<&str>) -> String {
    let mut body =
        json!({"htm": "POST", "htu": format!("{SELF_ISSUER}{path}"), "iat": now(), "jti": jti});
    if let Some(token) = access_token {
        body["ath"] = json!(URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA256,
            token.as_bytes()
        )));
    }
    proof_with(key, key.jwk(), "ES256", body)
}

async fn introspect_as(
    server: &Server,
    credential: &str,
    proof: Option<&str>,
    token: &str,
) -> Reply {
    let mut req = server
        .client()
        .post(server.endpoint("/oauth2/introspect"))
        .header("Authorization", format!("DPoP {credential}"))
        .form(&[("token", token)]);
    if let Some(p) = proof {
        req = req.header("DPoP", p);
    }
    Reply::read(req.send().await.unwrap()).await
}

/// A broker whose issuer is [`SELF_ISSUER`], a DPoP key, a credential for
/// the broker's own audience bound to that key, and a token to introspect.
async fn bound_introspection_credential() -> (TestEnv, Server, SigningKey, String, String) {
    let mut env = TestEnv::new();
    env.config.issuer = Some(SELF_ISSUER.to_string());
    let server = env.start().await;
    let key = SigningKey::generate(Alg::Es256);
    let request = TokenRequest::exchange(&env.k8s_token(), SELF_ISSUER, "introspect");
    let credential = assert_granted(
        &token_with_proof(
            &server,
            &request,
            &proof_for_self(&key, "/oauth2/token", "t", None),
        )
        .await,
    )
    .access_token;
    let subject = server
        .mint(&env.k8s_token(), ORDERS, "orders.read")
        .await
        .access_token;
    (env, server, key, credential, subject)
}

#[tokio::test]
async fn bound_credential_is_refused_without_its_proof_and_accepted_with_it() {
    let (_env, server, key, credential, subject) = bound_introspection_credential().await;

    let without = introspect_as(&server, &credential, None, &subject).await;
    let stranger = SigningKey::generate(Alg::Es256);
    let wrong_key = introspect_as(
        &server,
        &credential,
        Some(&proof_for_self(
            &stranger,
            "/oauth2/introspect",
            "w",
            Some(&credential),
        )),
        &subject,
    )
    .await;
    let holder = introspect_as(
        &server,
        &credential,
        Some(&proof_for_self(
            &key,
            "/oauth2/introspect",
            "h",
            Some(&credential),
        )),
        &subject,
    )
    .await;

    assert_refused(&without, 401, "invalid_client");
    assert_refused(&wrong_key, 401, "invalid_client");
    assert_eq!(holder.status, 200, "{}", holder.describe());
    assert_eq!(holder.json["active"], true);
}

/// `Authorization` with `scheme` and a DPoP proof, for introspection.
async fn introspect_with_scheme(
    server: &Server,
    scheme: &str,
    credential: &str,
    proof: &str,
    token: &str,
) -> Reply {
    let req = server
        .client()
        .post(server.endpoint("/oauth2/introspect"))
        .header("Authorization", format!("{scheme} {credential}"))
        .header("DPoP", proof)
        .form(&[("token", token)]);
    Reply::read(req.send().await.unwrap()).await
}

/// writ-proto's key-binding rule, at the broker as at every resource
/// server: a DPoP-bound token sent as a bearer token is refused even with a
/// valid proof (RFC 9449 section 7.2), and an unbound token may not claim
/// the DPoP scheme (section 7.1).
#[tokio::test]
async fn the_scheme_must_match_the_binding_even_with_a_valid_proof() {
    let (env, server, key, bound, subject) = bound_introspection_credential().await;
    let unbound = server
        .mint(&env.k8s_token(), SELF_ISSUER, "introspect")
        .await
        .access_token;
    let over =
        |token: &str, jti: &str| proof_for_self(&key, "/oauth2/introspect", jti, Some(token));

    let bound_as_bearer =
        introspect_with_scheme(&server, "Bearer", &bound, &over(&bound, "b1"), &subject).await;
    let unbound_as_dpop =
        introspect_with_scheme(&server, "DPoP", &unbound, &over(&unbound, "u1"), &subject).await;
    let bound_as_dpop =
        introspect_with_scheme(&server, "DPoP", &bound, &over(&bound, "b2"), &subject).await;

    assert_refused(&bound_as_bearer, 401, "invalid_client");
    assert_refused(&unbound_as_dpop, 401, "invalid_client");
    assert_eq!(bound_as_dpop.status, 200, "{}", bound_as_dpop.describe());
}
