//! Dev mode (`writ serve` without a config) shows every way to prove
//! identity, exactly as README's "Attestation by example" runs them: a
//! Kubernetes token through `writ token`, with `--dpop` a DPoP-bound one,
//! the dev client certificate over mTLS, and curl on the Unix socket, where
//! the example policy admits /usr/bin/curl and no other program.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

const DEV_WORKLOAD: &str = "spiffe://cluster.local/ns/payments/sa/api";

async fn curl(cwd: &Path, args: &[&str]) -> (String, String) {
    let output = tokio::process::Command::new("curl")
        .current_dir(cwd)
        .args(["--silent", "--show-error", "--max-time", "30"])
        .args(args)
        .output()
        .await
        .expect("curl is installed (.ci/run installs it)");
    assert!(output.status.success(), "curl {args:?}: {output:?}");
    (
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[tokio::test]
async fn dev_client_certificate_gets_a_certificate_bound_token_over_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_dev_mode(dir.path()).await;

    let (body, _) = curl(
        dir.path(),
        &[
            "--cacert",
            "certs/ca.pem",
            "--cert",
            "certs/dev-client.pem",
            "--key",
            "certs/dev-client-key.pem",
            "-d",
            "grant_type=client_credentials",
            "-d",
            "audience=payments-db",
            "-d",
            "scope=read",
            &server.endpoint("/oauth2/token"),
        ],
    )
    .await;

    let body = json(&body);
    let claims = jwt_claims(body["access_token"].as_str().expect("a token"));
    assert_eq!(claims["sub"], DEV_WORKLOAD);
    assert_eq!(claims["attestation"], "mtls");
    assert!(claims["cnf"]["x5t#S256"].is_string(), "{claims}");
}

#[tokio::test]
async fn dev_client_certificate_lives_a_day_and_its_key_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let _server = Server::start_dev_mode(dir.path()).await;

    let pem = std::fs::read(dir.path().join("certs/dev-client.pem")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    let validity = cert.validity();
    let lifetime = validity.not_after.timestamp() - validity.not_before.timestamp();
    assert!(
        (24 * 3600..=24 * 3600 + 120).contains(&lifetime),
        "{lifetime} s"
    );
    let mode = std::fs::metadata(dir.path().join("certs/dev-client-key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn curl_on_the_unix_socket_is_attested_by_its_peer_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let _server = Server::start_dev_mode(dir.path()).await;

    let (body, _) = curl(
        dir.path(),
        &[
            "--unix-socket",
            "writ.sock",
            "-d",
            "grant_type=client_credentials",
            "-d",
            "audience=staging-cluster",
            "-d",
            "scope=read",
            "http://localhost/oauth2/token",
        ],
    )
    .await;

    let body = json(&body);
    let claims = jwt_claims(body["access_token"].as_str().expect("a token"));
    assert_eq!(claims["attestation"], "unix");
    assert!(
        claims["sub"]
            .as_str()
            .unwrap()
            .starts_with("spiffe://cluster.local/unix/uid/"),
        "{claims}"
    );
    assert!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap() <= 300);
}

#[tokio::test]
async fn a_program_the_example_policy_does_not_name_is_refused_on_the_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let _server = Server::start_dev_mode(dir.path()).await;

    // The example policy names /usr/bin/curl; this test binary is another program.
    let (status, body) = post_unix(
        &dir.path().join("writ.sock"),
        "/oauth2/token",
        "grant_type=client_credentials&audience=staging-cluster&scope=read",
    )
    .await;

    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "access_denied");
}

#[tokio::test]
async fn writ_token_with_dpop_gets_a_token_bound_to_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_dev_mode(dir.path()).await;

    let output = run_writ(
        dir.path(),
        &[
            "token",
            "--as",
            "payments/api",
            "--audience",
            "payments-db",
            "--scope",
            "read",
            "--dpop",
            "--decode",
            "--server",
            &server.url,
        ],
    )
    .await;

    assert_eq!(output.code, Some(0), "{}", output.describe());
    let claims = json(&output.stdout);
    assert_eq!(claims["sub"], DEV_WORKLOAD);
    let jkt = claims["cnf"]["jkt"].as_str().expect("cnf.jkt");
    assert_eq!(jkt.len(), 43, "a base64url SHA-256 thumbprint");
}
