//! The `writ` command line: exit codes (0 success, 1 failure with one stderr
//! line, 2 bad usage), `policy check`, config errors, `certs init`, and the
//! `writ token` dev helper against a running broker.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use common::*;

/// A syntax error on line 3.
const SYNTAX_ERROR: &str = r#"// Line 3 compares with nothing.
permit (principal, action == Action::"mint", resource == Target::"orders")
when { context.scope == };
"#;

/// A context key the schema does not declare, on line 3.
const SCHEMA_VIOLATION: &str = r#"// Line 3 reads `scopes`, which the schema does not declare.
permit (principal, action == Action::"mint", resource == Target::"orders")
when { context.scopes == "orders.read" };
"#;

fn utf8(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

#[track_caller]
fn assert_exit(output: &CliOutput, code: i32) {
    assert_eq!(output.code, Some(code), "{}", output.describe());
}

// --- Exit codes -------------------------------------------------------------------------

#[tokio::test]
async fn unknown_subcommand_is_bad_usage() {
    let dir = tempfile::tempdir().unwrap();

    let output = run_writ(dir.path(), &["frobnicate"]).await;

    assert_exit(&output, 2);
}

#[tokio::test]
async fn unknown_flag_is_bad_usage() {
    let dir = tempfile::tempdir().unwrap();

    let output = run_writ(dir.path(), &["serve", "--frobnicate"]).await;

    assert_exit(&output, 2);
}

#[tokio::test]
async fn failure_exits_1_with_one_line_on_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.jsonl");

    let output = run_writ(dir.path(), &["audit", "verify", utf8(&missing)]).await;

    assert_exit(&output, 1);
    assert_eq!(
        output.stderr.trim().lines().count(),
        1,
        "{}",
        output.describe()
    );
}

// --- policy check -----------------------------------------------------------------------

#[tokio::test]
async fn policy_check_accepts_a_valid_policy_directory() {
    let env = TestEnv::new();

    let output = run_writ(
        env.dir(),
        &["policy", "check", "--dir", utf8(&env.policy_dir())],
    )
    .await;

    assert_exit(&output, 0);
}

#[tokio::test]
async fn policy_check_names_file_and_line_of_a_syntax_error() {
    let env = TestEnv::new();
    env.write_policy("broken.cedar", SYNTAX_ERROR);

    let output = run_writ(
        env.dir(),
        &["policy", "check", "--dir", utf8(&env.policy_dir())],
    )
    .await;

    assert_exit(&output, 1);
    assert!(
        output.stderr.contains("broken.cedar:3"),
        "{}",
        output.describe()
    );
}

#[tokio::test]
async fn policy_check_names_file_and_line_of_a_schema_violation() {
    let env = TestEnv::new();
    env.write_policy("typo.cedar", SCHEMA_VIOLATION);

    let output = run_writ(
        env.dir(),
        &["policy", "check", "--dir", utf8(&env.policy_dir())],
    )
    .await;

    assert_exit(&output, 1);
    assert!(
        output.stderr.contains("typo.cedar:3"),
        "{}",
        output.describe()
    );
}

// --- Configuration ----------------------------------------------------------------------

#[tokio::test]
async fn misspelled_config_key_stops_serve_naming_the_key() {
    let mut env = TestEnv::new();
    env.config
        .extra_server_lines
        .push(r#"listen_adress = "127.0.0.1:0""#.to_string());
    env.write_config();

    let output = run_writ(env.dir(), &["--config", utf8(&env.config_path()), "serve"]).await;

    assert_exit(&output, 1);
    assert!(
        output.stderr.contains("listen_adress"),
        "{}",
        output.describe()
    );
}

// --- certs init -------------------------------------------------------------------------

const DEV_FILES: [&str; 6] = [
    "ca.pem",
    "ca-key.pem",
    "server.pem",
    "server-key.pem",
    "dev-issuer-key.pem",
    "dev-issuer.jwks.json",
];
const DEV_PRIVATE_KEYS: [&str; 3] = ["ca-key.pem", "server-key.pem", "dev-issuer-key.pem"];

#[tokio::test]
async fn certs_init_writes_the_dev_material_with_owner_only_private_keys() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");

    let output = run_writ(dir.path(), &["certs", "init", "--dir", utf8(&certs)]).await;

    assert_exit(&output, 0);
    for file in DEV_FILES {
        assert!(
            certs.join(file).is_file(),
            "certs init did not write {file}"
        );
    }
    for key in DEV_PRIVATE_KEYS {
        let mode = fs::metadata(certs.join(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key} has mode {mode:o}");
    }
}

#[tokio::test]
async fn certs_init_again_keeps_the_existing_material() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    assert_exit(
        &run_writ(dir.path(), &["certs", "init", "--dir", utf8(&certs)]).await,
        0,
    );
    let first_ca = fs::read_to_string(certs.join("ca.pem")).unwrap();

    let output = run_writ(dir.path(), &["certs", "init", "--dir", utf8(&certs)]).await;

    assert_exit(&output, 0);
    assert_eq!(fs::read_to_string(certs.join("ca.pem")).unwrap(), first_ca);
}

// --- writ token -------------------------------------------------------------------------

/// A broker set up the way a developer would: `writ certs init`, the standard
/// policies, and a writ.toml trusting the dev issuer (as dev mode does), on an
/// ephemeral port.
async fn start_dev_broker(dir: &Path) -> Server {
    let certs = dir.join("certs");
    assert_exit(
        &run_writ(dir, &["certs", "init", "--dir", utf8(&certs)]).await,
        0,
    );
    fs::create_dir_all(dir.join("policies")).unwrap();
    fs::write(dir.join("policies/schema.cedarschema"), SCHEMA).unwrap();
    fs::write(dir.join("policies/standard.cedar"), STANDARD_POLICIES).unwrap();
    fs::write(dir.join("policies/entities.json"), ENTITIES).unwrap();
    fs::write(
        dir.join("writ.toml"),
        r#"[server]
listen = "127.0.0.1:0"

[tls]
cert = "certs/server.pem"
key = "certs/server-key.pem"

[policy]
dir = "policies"

[[issuers]]
name = "dev"
kind = "kubernetes"
issuer = "https://dev.writ.local"
jwks_file = "certs/dev-issuer.jwks.json"
audience = "writ"
trust_domain = "cluster.local"
"#,
    )
    .unwrap();
    let ca = fs::read_to_string(certs.join("ca.pem")).unwrap();
    Server::start(&dir.join("writ.toml"), dir, &ca, "no-admin-token").await
}

/// `writ token` for `payments/api`, `orders.read` on `orders`, plus `extra` flags.
async fn writ_token(dir: &Path, server: &Server, extra: &[&str]) -> CliOutput {
    let mut args = vec![
        "token",
        "--as",
        "payments/api",
        "--audience",
        ORDERS,
        "--scope",
        "orders.read",
        "--server",
        server.url.as_str(),
        "--ca",
        "certs/ca.pem",
    ];
    args.extend_from_slice(extra);
    run_writ(dir, &args).await
}

#[tokio::test]
async fn token_command_prints_an_access_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_dev_broker(dir.path()).await;

    let output = writ_token(dir.path(), &server, &[]).await;

    assert_exit(&output, 0);
    let claims = jwt_claims(output.stdout.trim());
    assert_eq!(claims["aud"], ORDERS);
    assert_eq!(claims["scope"], "orders.read");
}

#[tokio::test]
async fn token_command_with_decode_prints_the_claims_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_dev_broker(dir.path()).await;

    let output = writ_token(dir.path(), &server, &["--decode"]).await;

    assert_exit(&output, 0);
    let claims: serde_json::Value =
        serde_json::from_str(&output.stdout).expect("stdout is the claims JSON");
    assert_eq!(claims["aud"], ORDERS);
    assert_eq!(claims["scope"], "orders.read");
    assert!(
        claims["sub"]
            .as_str()
            .is_some_and(|sub| sub.ends_with("/ns/payments/sa/api")),
        "sub of {claims}"
    );
}
