//! mTLS attestation (CONTRACT sections 1-3): a caller with a client
//! certificate chaining to `tls.client_ca` gets a token by
//! `client_credentials`; the token is bound to that certificate (RFC 8705
//! `cnf.x5t#S256`) and useless at writ's endpoints without it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use serde_json::Value;

const BUILDER: &str = "spiffe://writ.local/ci/builder";

/// Only mTLS-attested, key-bound requests may mint `orders.read`.
const MTLS_ONLY: &str = r#"
@id("mtls-bound-orders")
permit (principal, action == Action::"mint", resource == Target::"orders")
when { context.attestation == "mtls" && context.sender_constrained && context.scope == "orders.read" };

@id("narrow-bound")
permit (principal, action == Action::"mint", resource == Target::"orders")
when { context.attestation == "writ" && context.sender_constrained };
"#;

async fn start() -> (TestEnv, Server, Leaf) {
    let mut env = TestEnv::new();
    env.config.client_ca = true;
    env.set_policies(&[("mtls.cedar", MTLS_ONLY)]);
    let server = env.start().await;
    let cert = env.client_pki.client_cert(vec![uri_san(BUILDER)]);
    (env, server, cert)
}

async fn post(
    client: &reqwest::Client,
    url: String,
    form: &[(&str, &str)],
    bearer: Option<&str>,
) -> Reply {
    let mut req = client.post(url).form(form);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    Reply::read(req.send().await.unwrap()).await
}

async fn client_credentials(server: &Server, client: &reqwest::Client) -> Reply {
    post(
        client,
        server.endpoint("/oauth2/token"),
        &[
            ("grant_type", "client_credentials"),
            ("audience", ORDERS),
            ("scope", "orders.read"),
        ],
        None,
    )
    .await
}

#[tokio::test]
async fn mtls_caller_gets_a_token_bound_to_its_certificate() {
    let (_env, server, cert) = start().await;

    let reply = client_credentials(&server, &server.client_with_certificate(&cert)).await;

    let minted = assert_granted(&reply);
    assert_eq!(minted.claims["sub"], BUILDER);
    assert_eq!(minted.claims["attestation"], "mtls");
    let thumbprint = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        cert.cert_der.as_ref(),
    ));
    assert_eq!(minted.claims["cnf"]["x5t#S256"], thumbprint.as_str());
    assert_eq!(minted.body["token_type"], "Bearer", "RFC 8705 keeps Bearer");
}

#[tokio::test]
async fn client_credentials_without_a_certificate_is_invalid_client() {
    let (_env, server, _cert) = start().await;

    let reply = client_credentials(&server, server.client()).await;

    assert_refused(&reply, 401, "invalid_client");
}

#[tokio::test]
async fn client_credentials_with_a_certificate_naming_no_spiffe_id_is_invalid_client() {
    let (env, server, _cert) = start().await;
    let plain = env.client_pki.client_cert(vec![]);

    let reply = client_credentials(&server, &server.client_with_certificate(&plain)).await;

    assert_refused(&reply, 401, "invalid_client");
}

#[tokio::test]
async fn introspection_returns_the_binding() {
    let (env, server, cert) = start().await;
    let minted =
        assert_granted(&client_credentials(&server, &server.client_with_certificate(&cert)).await);

    let body = server.introspect_as_admin(&minted.access_token).await;

    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["cnf"], minted.claims["cnf"]);
    drop(env);
}

#[tokio::test]
async fn bound_token_narrowed_without_its_certificate_is_invalid_grant() {
    let (_env, server, cert) = start().await;
    let minted =
        assert_granted(&client_credentials(&server, &server.client_with_certificate(&cert)).await);
    let form = TokenRequest::narrow(&minted.access_token, ORDERS, "orders.read");

    let reply = server.token(&form).await;

    assert_refused(&reply, 400, "invalid_grant");
}

#[tokio::test]
async fn bound_token_narrowed_with_its_certificate_keeps_the_binding() {
    let (_env, server, cert) = start().await;
    let holder = server.client_with_certificate(&cert);
    let minted = assert_granted(&client_credentials(&server, &holder).await);
    let form = TokenRequest::narrow(&minted.access_token, ORDERS, "orders.read");
    let params: Vec<(&str, &str)> = form
        .params()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();

    let reply = post(&holder, server.endpoint("/oauth2/token"), &params, None).await;

    let narrowed = assert_granted(&reply);
    assert_eq!(narrowed.claims["cnf"], minted.claims["cnf"]);
}

#[tokio::test]
async fn metadata_announces_client_credentials_and_bound_tokens() {
    let (_env, server, _cert) = start().await;

    let metadata: Value = server.metadata().await;

    assert!(
        metadata["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "client_credentials")
    );
    assert_eq!(metadata["tls_client_certificate_bound_access_tokens"], true);
}
