//! The SDK's tower layer guarding a real axum route on loopback: no token,
//! a good token, a token for another audience, and a revoked one.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use common::*;
use serde_json::json;
use writ_sdk::layer::RequireToken;
use writ_sdk::{Broker, FeedAuth, Verified, Verifier};

async fn whoami(token: Verified) -> String {
    token.subject
}

/// A resource server for `orders` behind the layer; returns its URL.
async fn resource_server(server: &Server) -> String {
    resource_server_requiring(server, "orders.read").await
}

async fn resource_server_requiring(server: &Server, scope: &str) -> String {
    let broker = Broker::with_ca_pem(&server.url, server.ca_pem().as_bytes()).unwrap();
    let verifier = Verifier::builder(broker, ORDERS)
        .require_scopes([scope])
        .follow_revocations(
            FeedAuth::Bearer(server.admin_token().to_owned()),
            Duration::from_secs(60),
        )
        .build()
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/whoami", get(whoami))
        .layer(RequireToken::new(verifier, &origin).unwrap());
    let url = format!("{origin}/whoami");
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn call(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn route_answers_with_a_valid_token() {
    let (env, server) = start_standard().await;
    let url = resource_server(&server).await;
    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    let resp = call(&url, Some(&minted.access_token)).await;

    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.text().await.unwrap(), WORKLOAD);
}

#[tokio::test]
async fn route_refuses_a_request_without_a_token_with_a_bearer_challenge() {
    let (_env, server) = start_standard().await;
    let url = resource_server(&server).await;

    let resp = call(&url, None).await;

    assert_eq!(resp.status().as_u16(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
}

#[tokio::test]
async fn route_refuses_a_token_for_another_audience() {
    let (env, server) = start_standard().await;
    let url = resource_server(&server).await;
    let other = server
        .mint(&env.k8s_token(), SELF_ISSUER, "introspect")
        .await;

    let resp = call(&url, Some(&other.access_token)).await;

    assert_eq!(resp.status().as_u16(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("audience"), "{challenge}");
}

#[tokio::test]
async fn route_refuses_a_token_once_it_is_revoked() {
    let (env, server) = start_standard().await;
    let url = resource_server(&server).await;
    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;
    assert_eq!(
        call(&url, Some(&minted.access_token))
            .await
            .status()
            .as_u16(),
        200
    );

    server
        .revoke(json!({"subject": WORKLOAD}), false, None)
        .await;

    eventually(
        "the route to refuse the revoked token",
        async || match call(&url, Some(&minted.access_token))
            .await
            .status()
            .as_u16()
        {
            401 => Ok(()),
            other => Err(format!("status {other}")),
        },
    )
    .await;
}

#[tokio::test]
async fn route_answers_a_missing_scope_with_403_insufficient_scope() {
    let (env, server) = start_standard().await;
    let url = resource_server_requiring(&server, "orders.write").await;
    let minted = server.mint(&env.k8s_token(), ORDERS, "orders.read").await;

    let resp = call(&url, Some(&minted.access_token)).await;

    assert_eq!(resp.status().as_u16(), 403);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
}
