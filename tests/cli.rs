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

// --- zero setup: dev mode and the demo ---------------------------------------------------

#[tokio::test]
async fn serve_without_config_runs_dev_mode_and_writ_token_gets_a_verifiable_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_dev_mode(dir.path()).await;

    assert!(server.stderr().contains("DEV MODE"), "{}", server.stderr());
    for key in ["ca-key.pem", "server-key.pem", "dev-issuer-key.pem"] {
        let mode = fs::metadata(dir.path().join("certs").join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    assert!(dir.path().join("policies/schema.cedarschema").exists());

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
            "--server",
            &server.url,
        ],
    )
    .await;

    assert_exit(&output, 0);
    let token = output.stdout.trim();
    assert_eq!(
        jwt_claims(token)["sub"],
        "spiffe://cluster.local/ns/payments/sa/api"
    );
    let jwks = server.jwks().await;
    let claims = verify_with_jwks(token, &jwks, &server.url, "payments-db")
        .expect("verifies from /jwks.json");
    assert_eq!(claims["scope"], "read");
}

#[tokio::test]
async fn dev_mode_token_for_a_forbidden_workload_exits_1_naming_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_dev_mode(dir.path()).await;

    let output = run_writ(
        dir.path(),
        &[
            "token",
            "--as",
            "payments/legacy",
            "--audience",
            "payments-db",
            "--scope",
            "read",
            "--server",
            &server.url,
        ],
    )
    .await;

    assert_exit(&output, 1);
    assert!(
        output.stderr.contains("access_denied") && output.stderr.contains("forbid-payments-legacy"),
        "{}",
        output.describe()
    );
}

#[tokio::test]
async fn demo_walks_through_mint_denial_and_jwks_verification() {
    let dir = tempfile::tempdir().unwrap();

    let output = run_writ(dir.path(), &["demo"]).await;

    assert_exit(&output, 0);
    for step in [
        "== 1. attest",
        "== 2. mint",
        "forbid-payments-legacy",
        "invalid_target",
        "verified with kid",
        "hash chain intact",
    ] {
        assert!(
            output.stdout.contains(step),
            "missing {step:?} in\n{}",
            output.describe()
        );
    }
}

// --- writ revoke --------------------------------------------------------------------------

/// `writ revoke <args> --server <url> --ca <ca.pem>` with `WRIT_ADMIN_TOKEN` set
/// to the environment's admin token.
async fn writ_revoke(env: &TestEnv, server: &Server, args: &[&str]) -> CliOutput {
    let ca = env.path("ca.pem");
    let mut all = vec!["revoke"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--server", server.url.as_str(), "--ca", utf8(&ca)]);
    run_writ_with_env(
        env.dir(),
        &all,
        &[("WRIT_ADMIN_TOKEN", server.admin_token())],
    )
    .await
}

/// The entry id of `revoked <id> seq <seq> effective_at <time>`.
#[track_caller]
fn revoked_id(output: &CliOutput) -> String {
    assert_exit(output, 0);
    let words: Vec<&str> = output.stdout.split_whitespace().collect();
    assert!(
        words.len() >= 6
            && words[0] == "revoked"
            && words[2] == "seq"
            && words[3].parse::<u64>().is_ok()
            && words[4] == "effective_at"
            && parse_rfc3339(words[5]).is_some(),
        "expected `revoked <id> seq <seq> effective_at <time>`:\n{}",
        output.describe()
    );
    assert!(is_entry_id(words[1]), "{}", output.describe());
    words[1].to_string()
}

#[tokio::test]
async fn revoke_command_blocks_a_subject_and_prints_the_entry() {
    let (env, server) = start_standard().await;

    let output = writ_revoke(&env, &server, &["--subject", WORKLOAD, "--block"]).await;

    let id = revoked_id(&output);
    let reply = server.token(&orders_read(&env.k8s_token())).await;
    assert_refused_because(&reply, 403, "access_denied", &id);
}

#[tokio::test]
async fn revoke_list_prints_a_table_or_each_live_entry_as_a_json_line() {
    let (env, server) = start_standard().await;
    let id = revoked_id(&writ_revoke(&env, &server, &["--subject", WORKLOAD, "--block"]).await);

    let table = writ_revoke(&env, &server, &["list"]).await;
    assert_exit(&table, 0);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("SELECTOR"),
        "{}",
        table.stdout
    );
    let row = lines.iter().find(|l| l.starts_with(id.as_str())).unwrap();
    assert!(
        row.contains(&format!("subject={WORKLOAD}")) && row.contains("true"),
        "{row}"
    );

    let output = writ_revoke(&env, &server, &["list", "--json"]).await;

    assert_exit(&output, 0);
    let entries: Vec<serde_json::Value> = output
        .stdout
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"))
        })
        .collect();
    let listed = entries
        .iter()
        .find(|entry| entry["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not listed:\n{}", output.describe()));
    assert_eq!(listed["selector"]["subject"], WORKLOAD, "{listed}");
    assert_eq!(listed["block"], true, "{listed}");
}

#[tokio::test]
async fn revoke_lift_restores_minting() {
    let (env, server) = start_standard().await;
    let id = revoked_id(&writ_revoke(&env, &server, &["--subject", WORKLOAD, "--block"]).await);
    assert_refused(
        &server.token(&orders_read(&env.k8s_token())).await,
        403,
        "access_denied",
    );

    let output = writ_revoke(&env, &server, &["lift", id.as_str()]).await;

    assert_exit(&output, 0);
    assert!(
        output.stdout.trim_start().starts_with("lifted "),
        "{}",
        output.describe()
    );
    assert_granted(&server.token(&orders_read(&env.k8s_token())).await);
}

#[tokio::test]
async fn revoke_without_the_admin_token_exits_1_naming_the_variable() {
    let (env, server) = start_standard().await;
    let ca = env.path("ca.pem");

    let output = run_writ(
        env.dir(),
        &[
            "revoke",
            "--subject",
            WORKLOAD,
            "--block",
            "--server",
            server.url.as_str(),
            "--ca",
            utf8(&ca),
        ],
    )
    .await;

    assert_exit(&output, 1);
    assert_eq!(
        output.stderr.trim().lines().count(),
        1,
        "{}",
        output.describe()
    );
    assert!(
        output.stderr.contains("WRIT_ADMIN_TOKEN"),
        "{}",
        output.describe()
    );
    assert_granted(&server.token(&orders_read(&env.k8s_token())).await);
}

#[tokio::test]
async fn revoke_with_two_selectors_is_bad_usage() {
    let (env, server) = start_standard().await;

    let output = writ_revoke(
        &env,
        &server,
        &["--subject", WORKLOAD, "--audience", ORDERS, "--block"],
    )
    .await;

    assert_exit(&output, 2);
    assert_granted(&server.token(&orders_read(&env.k8s_token())).await);
}
