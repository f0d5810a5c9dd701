//! mTLS identities (CONTRACT sections 1, 2, 5): with `tls.client_ca` set, writ
//! asks for a client certificate; one chaining to that CA and naming exactly
//! one SPIFFE ID is an identity. Listed in `admin.principals`, it is an admin
//! for the kill switch; otherwise it may read the feed and introspect.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use common::*;
use serde_json::{Value, json};

const ONCALL: &str = "spiffe://writ.local/ops/oncall";
const BUILDER: &str = "spiffe://writ.local/ci/builder";

async fn start_with_mtls_admin() -> (TestEnv, Server) {
    let mut env = TestEnv::new();
    env.config.client_ca = true;
    env.config.admin_principals = vec![ONCALL.to_string()];
    let server = env.start().await;
    (env, server)
}

async fn revoke_as(client: &reqwest::Client, server: &Server) -> Reply {
    let response = client
        .post(server.endpoint("/admin/v1/revocations"))
        .json(&json!({"selector": {"subject": "spiffe://cluster.local/ns/x/sa/y"}, "block": true}))
        .send()
        .await
        .expect("POST /admin/v1/revocations");
    Reply::read(response).await
}

async fn live_entries(server: &Server) -> usize {
    let reply = server.list_revocations("").await;
    reply.json["entries"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn admin_mtls_identity_pulls_the_kill_switch() {
    let (env, server) = start_with_mtls_admin().await;
    let oncall = server.client_with_certificate(&env.client_pki.client_cert(vec![uri_san(ONCALL)]));

    let reply = revoke_as(&oncall, &server).await;

    assert_eq!(reply.status, 201, "{}", reply.describe());
    let id = reply.json["id"].as_str().unwrap();
    let entry = server.revocation(id).await;
    assert_eq!(entry.json["who"], format!("Admin::\"{ONCALL}\""));
}

#[tokio::test]
async fn mtls_identity_not_listed_as_admin_is_refused_by_the_admin_api() {
    let (env, server) = start_with_mtls_admin().await;
    let builder =
        server.client_with_certificate(&env.client_pki.client_cert(vec![uri_san(BUILDER)]));

    let reply = revoke_as(&builder, &server).await;

    assert_refused(&reply, 401, "invalid_client");
    assert_eq!(live_entries(&server).await, 0);
}

#[tokio::test]
async fn mtls_identity_reads_the_revocation_feed() {
    let (env, server) = start_with_mtls_admin().await;
    let builder =
        server.client_with_certificate(&env.client_pki.client_cert(vec![uri_san(BUILDER)]));

    let response = builder
        .get(server.endpoint("/v1/revocations"))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 200);
    let page: Value = response.json().await.unwrap();
    assert!(page["entries"].is_array());
}

#[tokio::test]
async fn mtls_identity_may_introspect() {
    let (env, server) = start_with_mtls_admin().await;
    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    let builder =
        server.client_with_certificate(&env.client_pki.client_cert(vec![uri_san(BUILDER)]));

    let response = builder
        .post(server.endpoint("/oauth2/introspect"))
        .form(&[("token", minted.access_token.as_str())])
        .send()
        .await
        .unwrap();

    let body: Value = response.json().await.unwrap();
    assert_eq!(body["active"], true, "{body}");
}

#[tokio::test]
async fn certificate_with_two_uri_sans_is_no_identity() {
    let (env, server) = start_with_mtls_admin().await;
    let ambiguous = env
        .client_pki
        .client_cert(vec![uri_san(ONCALL), uri_san(BUILDER)]);

    let reply = revoke_as(&server.client_with_certificate(&ambiguous), &server).await;

    assert_refused(&reply, 401, "invalid_client");
    assert_eq!(live_entries(&server).await, 0);
}

#[tokio::test]
async fn certificate_without_a_uri_san_is_no_identity() {
    let (env, server) = start_with_mtls_admin().await;
    let plain = env.client_pki.client_cert(vec![]);

    let reply = revoke_as(&server.client_with_certificate(&plain), &server).await;

    assert_refused(&reply, 401, "invalid_client");
}

#[tokio::test]
async fn certificate_from_another_ca_does_not_connect() {
    let (_env, server) = start_with_mtls_admin().await;
    let stranger = Pki::new().client_cert(vec![uri_san(ONCALL)]);

    let result = server
        .client_with_certificate(&stranger)
        .post(server.endpoint("/admin/v1/revocations"))
        .json(&json!({"selector": {"all": true}, "block": true}))
        .send()
        .await;

    assert!(result.is_err(), "the handshake must fail: {result:?}");
    assert_eq!(live_entries(&server).await, 0);
}

#[tokio::test]
async fn bearer_callers_still_work_when_client_certificates_are_asked_for() {
    let (env, server) = start_with_mtls_admin().await;

    server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    assert_eq!(revoke_as(server.client(), &server).await.status, 401);
}
