//! Unix peer-credential attestation (CONTRACT sections 1-2): with
//! `server.unix_socket` set, writ serves the same API as plain HTTP on that
//! socket (mode 0660) and attests each caller by `SO_PEERCRED` and its
//! executable; `client_credentials` mints for it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use std::os::unix::fs::PermissionsExt as _;

use common::*;

async fn start_with_policy(policy: &str) -> (TestEnv, Server) {
    let mut env = TestEnv::new();
    env.config
        .extra_server_lines
        .push("unix_socket = \"writ.sock\"".into());
    env.set_policies(&[("unix.cedar", policy)]);
    let server = env.start().await;
    (env, server)
}

const CLIENT_CREDENTIALS: &str = "grant_type=client_credentials&audience=orders&scope=orders.read";

fn uid_policy(uid: u32) -> String {
    format!(
        r#"permit (principal, action == Action::"mint", resource == Target::"orders")
when {{ context.attestation == "unix" && principal has unix_uid && principal.unix_uid == {uid} && context.source_ip == ip("127.0.0.1") }};"#
    )
}

fn my_uid() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}

use std::os::unix::fs::MetadataExt as _;

#[tokio::test]
async fn unix_caller_gets_a_token_for_its_uid() {
    let (env, _server) = start_with_policy(&uid_policy(my_uid())).await;

    let (status, body) =
        post_unix(&env.path("writ.sock"), "/oauth2/token", CLIENT_CREDENTIALS).await;

    assert_eq!(status, 200, "{body}");
    let claims = jwt_claims(body["access_token"].as_str().unwrap());
    assert_eq!(
        claims["sub"],
        format!("spiffe://writ.local/unix/uid/{}", my_uid())
    );
    assert_eq!(claims["attestation"], "unix");
}

#[tokio::test]
async fn a_policy_for_another_uid_refuses_this_caller() {
    let (env, _server) = start_with_policy(&uid_policy(my_uid() + 1000)).await;

    let (status, body) =
        post_unix(&env.path("writ.sock"), "/oauth2/token", CLIENT_CREDENTIALS).await;

    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "access_denied");
}

#[tokio::test]
async fn the_executable_and_its_digest_reach_cedar() {
    let me = std::fs::read_link("/proc/self/exe").unwrap();
    let digest = hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        &std::fs::read(&me).unwrap(),
    ));
    let policy = format!(
        r#"permit (principal, action == Action::"mint", resource == Target::"orders")
when {{ principal has exe_sha256 && principal.exe_sha256 == "{digest}" && principal has exe && principal.exe == "{}" }};"#,
        me.display()
    );
    let (env, _server) = start_with_policy(&policy).await;

    let (status, body) =
        post_unix(&env.path("writ.sock"), "/oauth2/token", CLIENT_CREDENTIALS).await;

    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn the_socket_is_group_accessible_only() {
    let (env, _server) = start_with_policy(&uid_policy(my_uid())).await;

    let mode = std::fs::metadata(env.path("writ.sock"))
        .unwrap()
        .permissions()
        .mode();

    assert_eq!(mode & 0o777, 0o660);
}

#[tokio::test]
async fn client_credentials_over_tls_without_a_certificate_is_still_invalid_client() {
    let (env, server) = start_with_policy(&uid_policy(my_uid())).await;

    let reply = server
        .token(
            &TokenRequest::exchange(&env.k8s_token(), ORDERS, "orders.read")
                .set("grant_type", "client_credentials"),
        )
        .await;

    assert_refused(&reply, 401, "invalid_client");
}

#[tokio::test]
async fn metadata_lists_client_credentials_when_the_socket_serves_it() {
    let (_env, server) = start_with_policy(&uid_policy(my_uid())).await;

    let metadata = server.metadata().await;

    let grants = metadata["grant_types_supported"].as_array().unwrap();
    assert!(
        grants.iter().any(|g| g == "client_credentials"),
        "{metadata}"
    );
}
