//! Key-bound tokens through the SDK (issue 6): a `TokenSource` holding a DPoP
//! key gets tokens bound to it and presents each with a fresh proof; one
//! using mTLS gets tokens bound to its certificate. A resource server's
//! `Verifier` (and the axum layer over real HTTP) accepts them only with
//! their proof: a bound token replayed without it, with a replayed proof, a
//! proof for another request, token or key, or without its certificate is
//! refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use axum::Router;
use axum::routing::get;
use common::*;
use writ_sdk::dpop::DpopError;
use writ_sdk::layer::RequireToken;
use writ_sdk::{
    Broker, DpopKey, Presented, Scheme, StaticAttestation, TokenSource, Verified, Verifier,
    VerifyError,
};

const BUILDER: &str = "spiffe://writ.local/ci/builder";

/// The standard policies plus `orders.read` for an mTLS-attested builder.
const MTLS_ORDERS: &str = r#"
@id("mtls-orders")
permit (principal, action == Action::"mint", resource == Target::"orders")
when { context.attestation == "mtls" && context.scope == "orders.read" };
"#;

fn broker(server: &Server) -> Broker {
    Broker::with_ca_pem(server.url.as_str(), server.ca_pem().as_bytes()).unwrap()
}

async fn verifier(server: &Server) -> Verifier {
    Verifier::builder(broker(server), ORDERS)
        .require_scopes(["orders.read"])
        .build()
        .await
        .unwrap()
}

/// A DPoP-bound `orders.read` token minted with a proof by `key`.
async fn bound_token(env: &TestEnv, server: &Server, key: &DpopKey) -> String {
    let endpoint = server.endpoint("/oauth2/token");
    let response = server
        .client()
        .post(&endpoint)
        .header("DPoP", key.proof("POST", &endpoint, None).unwrap())
        .form(orders_read(&env.k8s_token()).params())
        .send()
        .await
        .unwrap();
    let minted = assert_granted(&Reply::read(response).await);
    assert_eq!(minted.claims["cnf"]["jkt"], key.thumbprint());
    minted.access_token
}

const URL: &str = "https://orders.test/v1/orders";

/// `token` presented with the DPoP scheme and `proof` on `GET URL`.
fn with_proof<'a>(token: &'a str, proof: &'a str) -> Presented<'a> {
    Presented {
        scheme: Scheme::Dpop,
        dpop_proof: Some(proof),
        method: "GET",
        url: URL,
        ..Presented::bearer(token)
    }
}

async fn whoami(token: Verified) -> String {
    token.subject
}

/// An axum resource server for `orders` behind the SDK layer; returns the
/// URL of its one route.
async fn resource_server(server: &Server) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/whoami", get(whoami))
        .layer(RequireToken::new(verifier(server).await, &origin).unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("{origin}/whoami")
}

#[tokio::test]
async fn dpop_token_source_presents_fresh_proofs_a_resource_server_accepts() {
    let (env, server) = start_standard().await;
    let url = resource_server(&server).await;
    let key = DpopKey::generate().unwrap();
    let jkt = key.thumbprint().to_owned();
    let tokens = TokenSource::builder(broker(&server), ORDERS)
        .scopes(["orders.read"])
        .attestation(StaticAttestation::jwt(env.k8s_token()))
        .dpop(key)
        .build();

    let token = tokens.token().await.unwrap();
    assert_eq!(token.token_type, "DPoP");
    assert_eq!(jwt_claims(&token.access_token)["cnf"]["jkt"], jkt.as_str());
    for _ in 0..2 {
        let authorization = tokens.authorization("GET", &url).await.unwrap();
        assert!(authorization.authorization.starts_with("DPoP "));
        let response = authorization
            .apply(reqwest::Client::new().get(&url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(response.text().await.unwrap(), WORKLOAD);
    }
    assert_eq!(tokens.exchanges(), 1, "one token, a new proof per request");
}

#[tokio::test]
async fn layer_refuses_a_bound_token_without_its_proof_or_with_a_replayed_one() {
    let (env, server) = start_standard().await;
    let url = resource_server(&server).await;
    let key = DpopKey::generate().unwrap();
    let token = bound_token(&env, &server, &key).await;
    let client = reqwest::Client::new();

    let as_bearer = client.get(&url).bearer_auth(&token).send().await.unwrap();
    assert_eq!(
        as_bearer.status().as_u16(),
        401,
        "replayed as a bearer token"
    );

    let no_proof = client
        .get(&url)
        .header("Authorization", format!("DPoP {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_proof.status().as_u16(), 401, "DPoP scheme, no proof");

    let proof = key.proof("GET", &url, Some(&token)).unwrap();
    let send = || {
        client
            .get(&url)
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", &proof)
            .send()
    };
    assert_eq!(send().await.unwrap().status().as_u16(), 200);
    let replayed = send().await.unwrap();
    assert_eq!(replayed.status().as_u16(), 401);
    let challenge = replayed.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("DPoP error=\"invalid_dpop_proof\""),
        "{challenge}"
    );
}

#[tokio::test]
async fn layer_refuses_a_proof_made_for_the_host_the_client_claims() {
    let (env, server) = start_standard().await;
    let url = resource_server(&server).await;
    let key = DpopKey::generate().unwrap();
    let token = bound_token(&env, &server, &key).await;
    // A proof captured at another server, replayed here with that server's
    // name in Host: the layer checks htu against its own origin, not Host.
    let proof = key
        .proof("GET", "http://other.example/whoami", Some(&token))
        .unwrap();

    let response = reqwest::Client::new()
        .get(&url)
        .header("Host", "other.example")
        .header("Authorization", format!("DPoP {token}"))
        .header("DPoP", proof)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 401);
}

#[tokio::test]
async fn verifier_refuses_a_bound_token_presented_without_a_proof() {
    let (env, server) = start_standard().await;
    let verifier = verifier(&server).await;
    let key = DpopKey::generate().unwrap();
    let token = bound_token(&env, &server, &key).await;

    assert_eq!(
        verifier.verify(&token).await.unwrap_err(),
        VerifyError::KeyBinding
    );
    let proof = key.proof("GET", URL, Some(&token)).unwrap();
    let proof_but_bearer_scheme = Presented {
        scheme: Scheme::Bearer,
        ..with_proof(&token, &proof)
    };
    assert_eq!(
        verifier
            .verify_presented(&proof_but_bearer_scheme)
            .await
            .unwrap_err(),
        VerifyError::KeyBinding
    );
    // The same proof with the right scheme is accepted: only the scheme was wrong.
    let verified = verifier
        .verify_presented(&with_proof(&token, &proof))
        .await
        .unwrap();
    assert_eq!(verified.subject, WORKLOAD);
}

#[tokio::test]
async fn verifier_refuses_proofs_for_another_request_token_or_key() {
    let (env, server) = start_standard().await;
    let verifier = verifier(&server).await;
    let key = DpopKey::generate().unwrap();
    let token = bound_token(&env, &server, &key).await;
    let other_key = DpopKey::generate().unwrap();

    let cases = [
        (
            key.proof("POST", URL, Some(&token)).unwrap(),
            VerifyError::DpopProof(DpopError::Method),
        ),
        (
            key.proof("GET", "https://elsewhere.test/v1/orders", Some(&token))
                .unwrap(),
            VerifyError::DpopProof(DpopError::Uri),
        ),
        (
            key.proof("GET", URL, Some("another.access.token")).unwrap(),
            VerifyError::DpopProof(DpopError::AccessTokenHash),
        ),
        (
            key.proof("GET", URL, None).unwrap(),
            VerifyError::DpopProof(DpopError::AccessTokenHash),
        ),
        (
            other_key.proof("GET", URL, Some(&token)).unwrap(),
            VerifyError::KeyBinding,
        ),
        (
            "not.a.proof".to_owned(),
            VerifyError::DpopProof(DpopError::Malformed),
        ),
    ];
    for (proof, expected) in cases {
        let refused = verifier
            .verify_presented(&with_proof(&token, &proof))
            .await
            .unwrap_err();
        assert_eq!(refused, expected);
    }
}

#[tokio::test]
async fn verifier_refuses_an_unbound_token_presented_with_the_dpop_scheme() {
    let (env, server) = start_standard().await;
    let verifier = verifier(&server).await;
    let minted = server
        .mint(&env.k8s_token(), ORDERS, "orders.read")
        .await
        .access_token;
    let key = DpopKey::generate().unwrap();
    let proof = key.proof("GET", URL, Some(&minted)).unwrap();

    assert!(
        verifier.verify(&minted).await.is_ok(),
        "fine as a bearer token"
    );
    assert_eq!(
        verifier
            .verify_presented(&with_proof(&minted, &proof))
            .await
            .unwrap_err(),
        VerifyError::KeyBinding
    );
}

#[tokio::test]
async fn mtls_token_source_gets_a_token_only_its_certificate_can_use() {
    let mut env = TestEnv::new();
    env.config.client_ca = true;
    env.set_policies(&[("mtls.cedar", MTLS_ORDERS)]);
    let server = env.start().await;
    let cert = env.client_pki.client_cert(vec![uri_san(BUILDER)]);
    let identity = format!("{}{}", cert.cert_pem, cert.key_pem);
    let mtls_broker = Broker::with_mtls(
        server.url.as_str(),
        server.ca_pem().as_bytes(),
        identity.as_bytes(),
    )
    .unwrap();
    let tokens = TokenSource::builder(mtls_broker, ORDERS)
        .scopes(["orders.read"])
        .client_credentials()
        .build();
    let verifier = verifier(&server).await;

    let token = tokens.token().await.unwrap();
    assert_eq!(token.token_type, "Bearer", "RFC 8705 keeps Bearer");
    let claims = jwt_claims(&token.access_token);
    assert_eq!(claims["sub"], BUILDER);
    assert!(claims["cnf"]["x5t#S256"].is_string(), "{claims}");

    let presented = Presented::bearer(&token.access_token);
    let with_its_certificate = presented.with_client_certificate(cert.cert_der.as_ref());
    let verified = verifier
        .verify_presented(&with_its_certificate)
        .await
        .unwrap();
    assert_eq!(verified.subject, BUILDER);

    assert_eq!(
        verifier.verify(&token.access_token).await.unwrap_err(),
        VerifyError::KeyBinding,
        "no certificate"
    );
    let other = env.client_pki.client_cert(vec![uri_san(BUILDER)]);
    let with_another = presented.with_client_certificate(other.cert_der.as_ref());
    assert_eq!(
        verifier.verify_presented(&with_another).await.unwrap_err(),
        VerifyError::KeyBinding,
        "another certificate with the same SPIFFE ID"
    );
}

#[tokio::test]
async fn client_credentials_without_a_certificate_is_denied_not_retried() {
    let mut env = TestEnv::new();
    env.config.client_ca = true;
    env.set_policies(&[("mtls.cedar", MTLS_ORDERS)]);
    let server = env.start().await;
    let tokens = TokenSource::builder(broker(&server), ORDERS)
        .scopes(["orders.read"])
        .client_credentials()
        .build();

    let error = tokens.token().await.unwrap_err();

    assert!(!error.is_retryable(), "{error}");
    assert!(
        matches!(&error, writ_sdk::Error::Denied { error, .. } if error == "invalid_client"),
        "{error}"
    );
}
