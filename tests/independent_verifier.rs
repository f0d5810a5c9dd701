//! "Any standard JWT library verifies them from `jwks_uri` alone" (CONTRACT section 3):
//! PyJWT, knowing only writ's URL and the CA, finds the keys through the metadata
//! and verifies signature, `typ`, `iss` and `aud`. (The test installs PyJWT into target/pydeps when missing.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::*;
use serde_json::{Value, json};

async fn pyjwt_verify(env: &TestEnv, server: &Server, token: &str, audience: &str) -> CliOutput {
    let ca = env.path("ca.pem");
    let ca = ca.to_str().expect("UTF-8 path");
    // The example shipped to users is the verifier under test.
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/verify_with_pyjwt.py");
    run_python(
        env.dir(),
        &script,
        &[server.url.as_str(), ca, audience, token],
    )
    .await
}

#[tokio::test]
async fn minted_token_verifies_with_pyjwt_from_the_metadata_alone() {
    let (env, server) = start_standard().await;
    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    let output = pyjwt_verify(&env, &server, &minted.access_token, ORDERS).await;

    assert_eq!(output.code, Some(0), "{}", output.describe());
    let claims: Value = serde_json::from_str(&output.stdout).expect("verifier prints the claims");
    assert_eq!(claims["sub"], WORKLOAD);
}

#[tokio::test]
async fn eddsa_token_verifies_with_pyjwt_from_the_metadata_alone() {
    let mut env = TestEnv::new();
    env.config.algorithm = "EdDSA".to_string();
    let server = env.start().await;
    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    let output = pyjwt_verify(&env, &server, &minted.access_token, ORDERS).await;

    assert_eq!(output.code, Some(0), "{}", output.describe());
}

#[tokio::test]
async fn tampered_token_fails_pyjwt_verification() {
    let (env, server) = start_standard().await;
    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    let mut claims = minted.claims.clone();
    claims["scope"] = json!("orders.read orders.admin");

    let output = pyjwt_verify(
        &env,
        &server,
        &with_claims(&minted.access_token, &claims),
        ORDERS,
    )
    .await;

    assert_ne!(output.code, Some(0), "{}", output.describe());
    assert!(
        output.stderr.contains("Signature verification failed"),
        "{}",
        output.describe()
    );
}
