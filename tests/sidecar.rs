//! `writ sidecar` (issue 5): keeps a token file fresh (mode 0600, replaced
//! atomically), serves it on loopback, removes it when the kill switch
//! revokes its subject, and refuses a bad configuration with exit 1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::json;

/// A running `writ sidecar`, killed on drop.
struct Sidecar {
    child: Child,
    url: String,
    token_file: PathBuf,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sidecar_toml(server: &Server, requested_ttl: &str) -> String {
    format!(
        r#"[broker]
url = "{url}"
ca = "ca.pem"

[attestation]
token_file = "sa.jwt"

[serve]
listen = "127.0.0.1:0"

[revocations]
bearer_token_file = "admin.token"
max_silence = "60s"

[[tokens]]
audience = "{ORDERS}"
scopes = ["orders.read"]
file = "tokens/orders"
requested_ttl = "{requested_ttl}"
"#,
        url = server.url
    )
}

/// Starts a sidecar for `payments/api` beside `server`.
async fn start_sidecar(env: &TestEnv, server: &Server, requested_ttl: &str) -> Sidecar {
    std::fs::write(env.path("sa.jwt"), env.k8s_token()).unwrap();
    std::fs::write(env.path("admin.token"), server.admin_token()).unwrap();
    std::fs::write(
        env.path("sidecar.toml"),
        sidecar_toml(server, requested_ttl),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_writ"))
        .args(["--config", "sidecar.toml", "sidecar"])
        .current_dir(env.dir())
        .env_remove("WRIT_CONFIG")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| {
                l.strip_prefix("writ sidecar listening on ")
                    .map(str::to_owned)
            })
    });
    let url = tokio::time::timeout(Duration::from_secs(30), line)
        .await
        .expect("the sidecar announces its endpoint")
        .unwrap()
        .expect("the sidecar printed its listening line");
    Sidecar {
        child,
        url,
        token_file: env.path("tokens/orders"),
    }
}

async fn token_file_contents(sidecar: &Sidecar) -> String {
    let path = sidecar.token_file.clone();
    eventually("the token file", async || {
        std::fs::read_to_string(&path).map_err(|e| e.to_string())
    })
    .await
}

#[tokio::test]
async fn token_file_appears_owner_only_and_the_endpoint_serves_the_same_token() {
    let (env, server) = start_standard().await;
    let sidecar = start_sidecar(&env, &server, "5m").await;

    let token = token_file_contents(&sidecar).await;

    assert_eq!(jwt_claims(&token)["aud"], ORDERS);
    let mode = std::fs::metadata(&sidecar.token_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let served = reqwest::get(format!("{}/token?audience={ORDERS}", sidecar.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(served, token);
}

#[tokio::test]
async fn endpoint_refuses_an_audience_it_does_not_keep() {
    let (env, server) = start_standard().await;
    let sidecar = start_sidecar(&env, &server, "5m").await;

    let response = reqwest::get(format!("{}/token?audience=ledger", sidecar.url))
        .await
        .unwrap();

    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test]
async fn token_file_is_refreshed_before_the_token_expires() {
    let (env, server) = start_standard().await;
    let sidecar = start_sidecar(&env, &server, "3s").await;
    let first = token_file_contents(&sidecar).await;
    let first_exp = jwt_claims(&first)["exp"].as_i64().unwrap();

    let second = eventually("a refreshed token file", async || {
        let now = std::fs::read_to_string(&sidecar.token_file).map_err(|e| e.to_string())?;
        if now != first {
            Ok(now)
        } else {
            Err("still the first token".into())
        }
    })
    .await;

    assert_ne!(jwt_claims(&second)["jti"], jwt_claims(&first)["jti"]);
    assert!(
        jwt_claims(&second)["iat"].as_i64().unwrap() <= first_exp,
        "refreshed ahead of expiry"
    );
}

#[tokio::test]
async fn token_file_is_removed_when_its_subject_is_revoked_and_blocked() {
    let (env, server) = start_standard().await;
    let sidecar = start_sidecar(&env, &server, "5m").await;
    token_file_contents(&sidecar).await;

    server
        .revoke(json!({"subject": WORKLOAD}), true, None)
        .await;

    eventually("the token file to be removed", async || {
        if sidecar.token_file.exists() {
            Err("still there".to_owned())
        } else {
            Ok(())
        }
    })
    .await;
    let health = reqwest::get(format!("{}/healthz", sidecar.url))
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 503);
}

#[tokio::test]
async fn metrics_count_refreshes() {
    let (env, server) = start_standard().await;
    let sidecar = start_sidecar(&env, &server, "5m").await;
    token_file_contents(&sidecar).await;

    let text = reqwest::get(format!("{}/metrics", sidecar.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    assert!(
        text.contains("writ_sidecar_token_refreshes_total{audience=\"orders\"} 1"),
        "{text}"
    );
}

/// `GET path` on the sidecar over a bare connection, with exactly the
/// `Host` header given (or none): HTTP clients insist on a correct one,
/// and the point here is what a rebinding browser would send.
async fn get_with_host(sidecar: &Sidecar, path: &str, host: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = sidecar.url.strip_prefix("http://").unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let host = host.map(|h| format!("Host: {h}\r\n")).unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\n{host}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn endpoint_refuses_a_host_other_than_its_loopback_address() {
    let (env, server) = start_standard().await;
    let sidecar = start_sidecar(&env, &server, "5m").await;
    let token = token_file_contents(&sidecar).await;
    let port = sidecar.url.rsplit(':').next().unwrap().to_owned();
    let path = format!("/token?audience={ORDERS}");

    for host in [
        Some(format!("evil.example:{port}")),
        Some("attacker.com".to_owned()),
        Some(format!("127.0.0.1:{}", port.parse::<u16>().unwrap() ^ 1)),
        Some("127.0.0.1".to_owned()),
        None,
    ] {
        let (status, body) = get_with_host(&sidecar, &path, host.as_deref()).await;
        assert_eq!(status, 421, "Host {host:?}: {body}");
        assert!(!body.contains(&token), "Host {host:?} got the token");
        assert!(
            body.contains("Host"),
            "Host {host:?}: the reason is {body:?}"
        );
    }
    let (status, _) = get_with_host(&sidecar, "/healthz", Some("attacker.com")).await;
    assert_eq!(status, 421, "/healthz is checked too");

    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
    ] {
        let (status, body) = get_with_host(&sidecar, &path, Some(&host)).await;
        assert_eq!((status, body), (200, token.clone()), "Host {host}");
    }
}

/// The served token, if the endpoint serves one.
async fn served_token(sidecar: &Sidecar) -> Result<String, String> {
    let response = reqwest::get(format!("{}/token?audience={ORDERS}", sidecar.url))
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.text().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{status}: {body}"))
    }
}

#[tokio::test]
async fn a_revoked_token_is_replaced_within_seconds() {
    let (env, server) = start_standard().await;
    let sidecar = start_sidecar(&env, &server, "5m").await;
    let first = eventually("a served token", async || served_token(&sidecar).await).await;
    let first_jti = jwt_claims(&first)["jti"].clone();
    // Revoke just after a second begins, so the sidecar's first attempt at a
    // replacement is minted in the revocation's second and is revoked too:
    // the case that left the workload without a token until the old
    // token's refresh time.
    tokio::time::sleep(until_next_second()).await;

    server
        .revoke(json!({"subject": WORKLOAD}), false, None)
        .await;

    let second = eventually_within(Duration::from_secs(3), "a replacement token", async || {
        match served_token(&sidecar).await? {
            t if jwt_claims(&t)["jti"] == first_jti => Err("still the revoked token".into()),
            t => Ok(t),
        }
    })
    .await;
    assert_eq!(jwt_claims(&second)["sub"], WORKLOAD);
    let file = token_file_contents(&sidecar).await;
    assert_eq!(file, second, "the file holds the replacement too");
}

async fn sidecar_with_config(toml: &str) -> CliOutput {
    let env = TestEnv::new();
    std::fs::write(env.path("sa.jwt"), "x").unwrap();
    std::fs::write(env.path("sidecar.toml"), toml).unwrap();
    run_writ(env.dir(), &["--config", "sidecar.toml", "sidecar"]).await
}

const GOOD_HEAD: &str =
    "[broker]\nurl = \"https://127.0.0.1:1\"\n[attestation]\ntoken_file = \"sa.jwt\"\n";

#[tokio::test]
async fn unknown_key_exits_1_naming_it() {
    let out = sidecar_with_config(&format!(
        "{GOOD_HEAD}[[tokens]]\naudience = \"a\"\nscopes = [\"r\"]\nfile = \"t\"\ncolour = \"blue\"\n"
    ))
    .await;

    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(out.stderr.contains("colour"), "{}", out.describe());
}

#[tokio::test]
async fn listening_beyond_loopback_exits_1() {
    let out = sidecar_with_config(&format!(
        "{GOOD_HEAD}[serve]\nlisten = \"0.0.0.0:8181\"\n[[tokens]]\naudience = \"a\"\nscopes = [\"r\"]\nfile = \"t\"\n"
    ))
    .await;

    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(out.stderr.contains("loopback"), "{}", out.describe());
}

#[tokio::test]
async fn no_tokens_exits_1() {
    let out = sidecar_with_config(&format!("{GOOD_HEAD}tokens = []\n")).await;

    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(out.stderr.contains("tokens"), "{}", out.describe());
}
