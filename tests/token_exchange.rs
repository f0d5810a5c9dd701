//! `POST /oauth2/token` (RFC 8693): attestation tokens in, writ tokens out,
//! and every refusal the contract names, each beside the success.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::*;
use serde_json::{Value, json};

/// Claims of a `payments/api` service-account token, for a test to bend.
fn service_account_claims(env: &TestEnv) -> Value {
    env.k8s.service_account_claims(NAMESPACE, SERVICE_ACCOUNT)
}

// --- Success -------------------------------------------------------------------

#[tokio::test]
async fn kubernetes_service_account_token_is_exchanged_for_a_writ_token() {
    let (env, server) = start_standard().await;

    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    assert_eq!(minted.scope, "orders.read");
    assert_eq!(minted.header["typ"], "at+jwt");
    assert_eq!(minted.header["alg"], "ES256");
    assert!(
        minted.header["kid"].is_string(),
        "no kid in {}",
        minted.header
    );
    let claims = &minted.claims;
    assert_eq!(claims["iss"], server.url.as_str());
    assert_eq!(claims["sub"], WORKLOAD);
    assert_eq!(claims["client_id"], WORKLOAD);
    assert_eq!(claims["aud"], ORDERS);
    assert_eq!(claims["scope"], "orders.read");
    assert_eq!(claims["attestation"], "kubernetes");
    assert_eq!(claims["principal_type"], "Workload");
    assert!(claims["nbf"].is_i64(), "no nbf in {claims}");
}

#[tokio::test]
async fn oidc_token_is_exchanged_for_a_token_named_by_the_subject_template() {
    let (env, server) = start_standard().await;

    let request = orders_read(&env.ci_token()).set("subject_token_type", ID_TOKEN);
    let minted = assert_granted(&server.token(&request).await);

    assert_eq!(minted.claims["sub"], CI_JOB);
    assert_eq!(minted.claims["attestation"], "oidc");
    assert_eq!(minted.claims["principal_type"], "Workload");
}

#[tokio::test]
async fn minted_token_ids_carry_128_random_bits() {
    let (env, server) = start_standard().await;

    let first = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    let second = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    for minted in [&first, &second] {
        let jti = minted.claims["jti"].as_str().expect("jti is a string");
        assert_eq!(jti.len(), 22, "jti {jti} is not 22 base64url characters");
        assert!(
            jti.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "jti {jti} is not base64url"
        );
    }
    assert_ne!(first.claims["jti"], second.claims["jti"]);
}

#[tokio::test]
async fn audience_claim_may_be_a_plain_string() {
    let (env, server) = start_standard().await;
    let mut claims = service_account_claims(&env);
    claims["aud"] = json!("writ");

    let reply = server.token(&orders_read(&env.k8s.sign(&claims))).await;

    assert_granted(&reply);
}

/// Starts writ trusting a Kubernetes issuer that signs with `alg`, and exchanges one of its tokens.
async fn exchange_attestation_signed_with(alg: Alg) -> Reply {
    let env = TestEnv::with_k8s_key(alg);
    let server = env.start().await;
    server.token(&orders_read(&env.k8s_token())).await
}

#[tokio::test]
async fn attestation_signed_with_es256_is_accepted() {
    assert_granted(&exchange_attestation_signed_with(Alg::Es256).await);
}

#[tokio::test]
async fn attestation_signed_with_es384_is_accepted() {
    assert_granted(&exchange_attestation_signed_with(Alg::Es384).await);
}

#[tokio::test]
async fn attestation_signed_with_eddsa_is_accepted() {
    assert_granted(&exchange_attestation_signed_with(Alg::EdDsa).await);
}

#[tokio::test]
async fn attestation_signed_with_rs256_is_accepted() {
    assert_granted(&exchange_attestation_signed_with(Alg::Rs256).await);
}

#[tokio::test]
async fn attestation_signed_with_ps256_is_accepted() {
    assert_granted(&exchange_attestation_signed_with(Alg::Ps256).await);
}

// --- Attestation refusals: invalid_grant ------------------------------------------

#[tokio::test]
async fn attestation_signed_by_another_key_under_the_issuer_kid_is_invalid_grant() {
    let (env, server) = start_standard().await;
    let impostor = SigningKey::generate(Alg::Es256);
    let forged = impostor.sign_with_header(&env.k8s.key.header(), &service_account_claims(&env));

    let reply = server.token(&orders_read(&forged)).await;

    assert_refused_because(&reply, 400, "invalid_grant", "signature is invalid");
}

#[tokio::test]
async fn unsigned_attestation_with_alg_none_is_invalid_grant() {
    let (env, server) = start_standard().await;
    let forged = env.k8s.key.forge_alg_none(&service_account_claims(&env));

    let reply = server.token(&orders_read(&forged)).await;

    assert_refused_because(
        &reply,
        400,
        "invalid_grant",
        "signing algorithm is not allowed",
    );
}

#[tokio::test]
async fn attestation_hs256_signed_with_the_issuer_public_key_is_invalid_grant() {
    let (env, server) = start_standard().await;
    let forged = env
        .k8s
        .key
        .forge_hs256_with_public_key(&service_account_claims(&env));

    let reply = server.token(&orders_read(&forged)).await;

    assert_refused_because(
        &reply,
        400,
        "invalid_grant",
        "signing algorithm is not allowed",
    );
}

#[tokio::test]
async fn attestation_with_an_unknown_kid_is_invalid_grant() {
    let (env, server) = start_standard().await;
    let unpublished = SigningKey::generate(Alg::Es256);

    let reply = server
        .token(&orders_read(
            &unpublished.sign(&service_account_claims(&env)),
        ))
        .await;

    assert_refused_because(&reply, 400, "invalid_grant", "signing key is unknown");
}

#[tokio::test]
async fn attestation_with_a_tampered_payload_is_invalid_grant() {
    let (env, server) = start_standard().await;
    let intern = env.service_account_token("interns", "intern");
    let promoted = with_claims(&intern, &service_account_claims(&env));

    let reply = server.token(&orders_read(&promoted)).await;

    assert_refused_because(&reply, 400, "invalid_grant", "signature is invalid");
}

#[tokio::test]
async fn attestation_from_an_unknown_issuer_is_invalid_grant() {
    let (env, server) = start_standard().await;
    let mut claims = service_account_claims(&env);
    claims["iss"] = json!("https://evil.test");

    let reply = server.token(&orders_read(&env.k8s.sign(&claims))).await;

    assert_refused_because(&reply, 400, "invalid_grant", "issuer is not trusted");
}

#[tokio::test]
async fn attestation_signed_by_one_issuer_claiming_another_is_invalid_grant() {
    let (env, server) = start_standard().await;
    // The k8s issuer's key, but the CI issuer's `iss`: keys are per issuer.
    let claims = env.ci.ci_job_claims(REPOSITORY, GIT_REF);

    let reply = server.token(&orders_read(&env.k8s.sign(&claims))).await;

    assert_refused_because(&reply, 400, "invalid_grant", "signing key is unknown");
}

#[tokio::test]
async fn attestation_for_another_audience_is_invalid_grant() {
    let (env, server) = start_standard().await;
    let mut claims = service_account_claims(&env);
    claims["aud"] = json!(["vault"]);

    let reply = server.token(&orders_read(&env.k8s.sign(&claims))).await;

    assert_refused_because(&reply, 400, "invalid_grant", "audience does not match");
}

#[tokio::test]
async fn expired_subject_token_is_invalid_grant() {
    let (env, server) = start_standard().await;
    let mut claims = service_account_claims(&env);
    claims["iat"] = json!(now() - 7200);
    claims["nbf"] = json!(now() - 7200);
    claims["exp"] = json!(now() - 3600);

    let reply = server.token(&orders_read(&env.k8s.sign(&claims))).await;

    assert_refused_because(&reply, 400, "invalid_grant", "token has expired");
}

#[tokio::test]
async fn subject_token_expired_within_the_60_second_leeway_is_accepted() {
    let (env, server) = start_standard().await;
    let mut claims = service_account_claims(&env);
    claims["iat"] = json!(now() - 600);
    claims["nbf"] = json!(now() - 600);
    claims["exp"] = json!(now() - 20);

    let reply = server.token(&orders_read(&env.k8s.sign(&claims))).await;

    assert_granted(&reply);
}

#[tokio::test]
async fn subject_token_not_yet_valid_is_invalid_grant() {
    let (env, server) = start_standard().await;
    let mut claims = service_account_claims(&env);
    claims["nbf"] = json!(now() + 3600);
    claims["exp"] = json!(now() + 7200);

    let reply = server.token(&orders_read(&env.k8s.sign(&claims))).await;

    assert_refused_because(&reply, 400, "invalid_grant", "not yet valid");
}

#[tokio::test]
async fn subject_token_issued_in_the_future_is_invalid_grant() {
    let (env, server) = start_standard().await;
    let mut claims = service_account_claims(&env);
    claims["iat"] = json!(now() + 3600);
    claims["exp"] = json!(now() + 7200);

    let reply = server.token(&orders_read(&env.k8s.sign(&claims))).await;

    assert_refused_because(&reply, 400, "invalid_grant", "issued in the future");
}

#[tokio::test]
async fn subject_token_over_16_kib_is_invalid_grant() {
    let (env, server) = start_standard().await;
    let mut claims = service_account_claims(&env);
    claims["padding"] = json!("x".repeat(17 * 1024));
    let oversized = env.k8s.sign(&claims);
    assert!(oversized.len() > 16 * 1024);

    let reply = server.token(&orders_read(&oversized)).await;

    assert_refused_because(&reply, 400, "invalid_grant", "exceeds");
}

// --- Request refusals ---------------------------------------------------------------

#[tokio::test]
async fn request_body_over_64_kib_is_413() {
    let (_env, server) = start_standard().await;
    let body = format!(
        "grant_type={TOKEN_EXCHANGE}&subject_token_type={JWT}&audience=orders&scope=orders.read&subject_token={}",
        "a".repeat(65 * 1024)
    );

    let reply = server
        .post_raw("/oauth2/token", "application/x-www-form-urlencoded", body)
        .await;

    assert_eq!(reply.status, 413, "{}", reply.describe());
}

#[tokio::test]
async fn unknown_audience_is_invalid_target() {
    let (env, server) = start_standard().await;

    let reply = server
        .token(&TokenRequest::exchange(
            &env.k8s_token(),
            "nowhere",
            "orders.read",
        ))
        .await;

    assert_refused(&reply, 400, "invalid_target");
}

#[tokio::test]
async fn missing_scope_is_invalid_request() {
    let (env, server) = start_standard().await;

    let reply = server
        .token(&orders_read(&env.k8s_token()).without("scope"))
        .await;

    assert_refused(&reply, 400, "invalid_request");
}

#[tokio::test]
async fn missing_audience_is_invalid_request() {
    let (env, server) = start_standard().await;

    let reply = server
        .token(&orders_read(&env.k8s_token()).without("audience"))
        .await;

    assert_refused(&reply, 400, "invalid_request");
}

#[tokio::test]
async fn missing_subject_token_is_invalid_request() {
    let (env, server) = start_standard().await;

    let reply = server
        .token(&orders_read(&env.k8s_token()).without("subject_token"))
        .await;

    assert_refused(&reply, 400, "invalid_request");
}

#[tokio::test]
async fn unknown_subject_token_type_is_invalid_request() {
    let (env, server) = start_standard().await;

    let request =
        orders_read(&env.k8s_token()).set("subject_token_type", "urn:example:token-type:saml");
    let reply = server.token(&request).await;

    assert_refused(&reply, 400, "invalid_request");
}

#[tokio::test]
async fn duplicate_parameter_is_invalid_request() {
    let (env, server) = start_standard().await;

    let reply = server
        .token(&orders_read(&env.k8s_token()).with("scope", "orders.write"))
        .await;

    assert_refused(&reply, 400, "invalid_request");
}

#[tokio::test]
async fn non_numeric_requested_ttl_is_invalid_request() {
    let (env, server) = start_standard().await;

    let reply = server
        .token(&orders_read(&env.k8s_token()).set("requested_ttl", "soon"))
        .await;

    assert_refused(&reply, 400, "invalid_request");
}

#[tokio::test]
async fn scope_with_characters_rfc_6749_forbids_is_invalid_scope() {
    let (env, server) = start_standard().await;

    let reply = server
        .token(&orders_read(&env.k8s_token()).set("scope", "orders.read orders\"write"))
        .await;

    assert_refused(&reply, 400, "invalid_scope");
}

#[tokio::test]
async fn unsupported_grant_type_is_refused() {
    let (env, server) = start_standard().await;

    let request = orders_read(&env.k8s_token())
        .set("grant_type", "password")
        .with("username", "alice")
        .with("password", "hunter2");
    let reply = server.token(&request).await;

    assert_refused(&reply, 400, "unsupported_grant_type");
}

#[tokio::test]
async fn client_credentials_without_a_client_certificate_is_invalid_client() {
    let (_env, server) = start_standard().await;

    let request = TokenRequest::default()
        .with("grant_type", "client_credentials")
        .with("audience", ORDERS)
        .with("scope", "orders.read");
    let reply = server.token(&request).await;

    assert_refused(&reply, 401, "invalid_client");
}

// --- Policy decisions -----------------------------------------------------------------

#[tokio::test]
async fn scope_no_policy_permits_is_access_denied() {
    let (env, server) = start_standard().await;

    let reply = server
        .token(&TokenRequest::exchange(
            &env.k8s_token(),
            ORDERS,
            "orders.admin",
        ))
        .await;

    assert_refused(&reply, 403, "access_denied");
}

#[tokio::test]
async fn partially_permitted_request_grants_the_permitted_subset() {
    let (env, server) = start_standard().await;

    let request = TokenRequest::exchange(&env.k8s_token(), ORDERS, "orders.read orders.admin");
    let minted = assert_granted(&server.token(&request).await);

    assert_eq!(minted.scope, "orders.read");
    assert_eq!(minted.claims["scope"], "orders.read");
}

#[tokio::test]
async fn forbid_overrides_a_matching_permit() {
    let env = TestEnv::new();
    env.write_policy(
        "freeze.cedar",
        r#"// Order writes are frozen, whatever else permits them.
@id("freeze-order-writes")
forbid (principal, action == Action::"mint", resource == Target::"orders")
when { context.scope == "orders.write" };
"#,
    );
    let server = env.start().await;

    let reply = server
        .token(&TokenRequest::exchange(
            &env.k8s_token(),
            ORDERS,
            "orders.write",
        ))
        .await;

    assert_refused(&reply, 403, "access_denied");
}

// --- Caching --------------------------------------------------------------------------

#[tokio::test]
async fn token_response_is_not_cacheable() {
    let (env, server) = start_standard().await;

    let reply = server.token(&orders_read(&env.k8s_token())).await;

    assert_granted(&reply);
    assert_no_store(&reply);
}

#[tokio::test]
async fn error_response_is_not_cacheable() {
    let (env, server) = start_standard().await;

    let reply = server
        .token(&TokenRequest::exchange(
            &env.k8s_token(),
            ORDERS,
            "orders.admin",
        ))
        .await;

    assert_refused(&reply, 403, "access_denied");
    assert_no_store(&reply);
}

#[track_caller]
fn assert_no_store(reply: &Reply) {
    let cache_control = reply.header("cache-control");
    assert!(
        cache_control.is_some_and(|value| value.contains("no-store")),
        "Cache-Control is {cache_control:?}, not no-store"
    );
}
