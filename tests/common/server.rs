//! The writ binary as a child process: started from a writ.toml, ready when it
//! prints `writ listening on https://127.0.0.1:PORT`, its stderr kept for the
//! test to read, killed on drop.

use std::io::{BufRead as _, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::http::{Minted, Reply, TokenRequest, assert_granted, client, client_bound_to};
use super::pki::Leaf;
use super::wait::{POLL, eventually};

/// How long writ may take to start listening.
const STARTUP: Duration = Duration::from_secs(30);
/// How long writ may take to exit after SIGTERM before it is killed.
const SHUTDOWN: Duration = Duration::from_secs(10);

const LISTENING: &str = "writ listening on ";

/// A running `writ serve`.
pub struct Server {
    /// `https://127.0.0.1:PORT`, from the listening line.
    pub url: String,
    process: Process,
    args: Vec<String>,
    cwd: PathBuf,
    stderr: Log,
    client: reqwest::Client,
    ca_pem: String,
    admin_token: String,
}

impl Server {
    /// Starts `writ --config <config> serve` in `cwd` and waits until it listens.
    pub async fn start(config: &Path, cwd: &Path, ca_pem: &str, admin_token: &str) -> Self {
        let config = config.to_str().expect("UTF-8 config path");
        let server = Self::launch(&["--config", config, "serve"], cwd, || ca_pem.to_string()).await;
        Self {
            admin_token: admin_token.to_string(),
            ..server
        }
    }

    /// Starts `writ serve --listen 127.0.0.1:0` in `cwd` with no writ.toml:
    /// dev mode, as a new user on a fresh clone runs it.
    pub async fn start_dev_mode(cwd: &Path) -> Self {
        Self::launch(&["serve", "--listen", "127.0.0.1:0"], cwd, || {
            std::fs::read_to_string(cwd.join("certs/ca.pem")).expect("dev mode wrote certs/ca.pem")
        })
        .await
    }

    /// Runs `writ <args>` in `cwd`; the CA to trust is read once it listens.
    async fn launch(args: &[&str], cwd: &Path, ca_pem: impl FnOnce() -> String) -> Self {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let stderr = Log::default();
        let process = Process::launch(&args, cwd, &stderr).await;
        let ca_pem = ca_pem();
        Self {
            url: process.url.clone(),
            process,
            args,
            cwd: cwd.to_path_buf(),
            stderr,
            client: client(&ca_pem),
            ca_pem,
            admin_token: String::new(),
        }
    }

    /// Stops writ (SIGTERM, then SIGKILL) and starts it again from the same
    /// config, store and directory. It listens on a new port.
    pub async fn restart(&mut self) {
        self.process.stop().await;
        self.process = Process::launch(&self.args, &self.cwd, &self.stderr).await;
        self.url = self.process.url.clone();
    }

    /// Stops writ (SIGTERM, then SIGKILL) and waits until it has exited,
    /// keeping this handle so [`Server::bring_back`] can start it again: the
    /// broker is down in between.
    pub async fn take_down(&mut self) {
        self.process.stop().await;
    }

    /// Starts writ again (after [`Server::take_down`]) from the same config,
    /// store and directory. It listens on a new port unless the config pins
    /// one ([`TestEnv::pin_listen_address`](super::TestEnv::pin_listen_address)).
    pub async fn bring_back(&mut self) {
        self.process = Process::launch(&self.args, &self.cwd, &self.stderr).await;
        self.url = self.process.url.clone();
    }

    /// Kills writ with SIGKILL (no shutdown, no flushing: a crash or a pulled
    /// plug) and starts it again from the same config, store and directory.
    /// It listens on a new port.
    pub async fn kill_hard_and_restart(&mut self) {
        self.process.kill_hard();
        self.process = Process::launch(&self.args, &self.cwd, &self.stderr).await;
        self.url = self.process.url.clone();
    }

    /// Stops writ and waits until it has exited.
    pub async fn stop(mut self) {
        self.process.stop().await;
    }

    /// The process id of the broker.
    pub fn child_pid(&self) -> u32 {
        self.process.child.id()
    }

    /// Freezes writ (SIGSTOP): a replica cut off by a partition, alive but
    /// silent.
    pub fn pause(&self) {
        assert!(signal(self.child_pid(), "STOP"), "kill -STOP failed");
    }

    /// Lets a paused writ run again (SIGCONT).
    pub fn resume(&self) {
        assert!(signal(self.child_pid(), "CONT"), "kill -CONT failed");
    }

    /// Sends SIGHUP (policy reload).
    pub fn sighup(&self) {
        assert!(
            signal(self.child_pid(), "HUP"),
            "kill -HUP {} failed",
            self.child_pid()
        );
    }

    /// Everything writ wrote to stderr so far (across restarts).
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Waits until stderr contains `needle`.
    pub async fn wait_for_stderr(&self, needle: &str) {
        eventually(&format!("`{needle}` on writ's stderr"), async || {
            let text = self.stderr();
            if text.contains(needle) {
                Ok(())
            } else {
                Err(format!("stderr so far:\n{text}"))
            }
        })
        .await;
    }

    /// The HTTPS client the test uses (trusts the test CA).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// The bearer token whose SHA-256 is in `admin.token_sha256`.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The CA certificate (PEM) the test client trusts.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    pub async fn get(&self, path: &str) -> Reply {
        let response = self
            .client
            .get(self.endpoint(path))
            .send()
            .await
            .unwrap_or_else(|error| panic!("GET {path}: {error}"));
        Reply::read(response).await
    }

    /// GET of a JSON document that must answer 200.
    pub async fn get_json(&self, path: &str) -> Value {
        let reply = self.get(path).await;
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.describe());
        reply.json
    }

    pub async fn post_form(
        &self,
        path: &str,
        form: &[(String, String)],
        bearer: Option<&str>,
    ) -> Reply {
        let mut request = self.client.post(self.endpoint(path)).form(form);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|error| panic!("POST {path}: {error}"));
        Reply::read(response).await
    }

    /// POST of a raw body with a content type.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: String) -> Reply {
        let response = self
            .client
            .post(self.endpoint(path))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .unwrap_or_else(|error| panic!("POST {path}: {error}"));
        Reply::read(response).await
    }

    /// `POST /oauth2/token`.
    /// A client presenting `leaf` as its TLS client certificate.
    pub fn client_with_certificate(&self, leaf: &Leaf) -> reqwest::Client {
        let identity =
            reqwest::Identity::from_pem(format!("{}{}", leaf.cert_pem, leaf.key_pem).as_bytes())
                .expect("client identity PEM");
        let ca = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("test CA PEM");
        reqwest::Client::builder()
            .identity(identity)
            .add_root_certificate(ca)
            .tls_built_in_root_certs(false)
            .no_proxy()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("build mTLS client")
    }

    /// Like [`Server::token`], sent from the local address `from`.
    pub async fn token_from(&self, from: std::net::IpAddr, request: &TokenRequest) -> Reply {
        let response = client_bound_to(&self.ca_pem, Some(from))
            .post(self.endpoint("/oauth2/token"))
            .form(request.params())
            .send()
            .await
            .expect("POST /oauth2/token");
        Reply::read(response).await
    }

    pub async fn token(&self, request: &TokenRequest) -> Reply {
        self.post_form("/oauth2/token", request.params(), None)
            .await
    }

    /// `POST /oauth2/token` of `request` with a `DPoP` header carrying `proof`.
    pub async fn token_with_dpop(&self, request: &TokenRequest, proof: &str) -> Reply {
        let response = self
            .client
            .post(self.endpoint("/oauth2/token"))
            .header("DPoP", proof)
            .form(request.params())
            .send()
            .await
            .unwrap();
        Reply::read(response).await
    }

    /// Narrows the writ token `token` to `scope` on `audience` and asserts a
    /// token was granted.
    pub async fn narrow(&self, token: &str, audience: &str, scope: &str) -> Minted {
        assert_granted(
            &self
                .token(&TokenRequest::narrow(token, audience, scope))
                .await,
        )
    }

    /// Exchanges `subject_token` (an attestation JWT) and asserts a token was granted.
    pub async fn mint(&self, subject_token: &str, audience: &str, scope: &str) -> Minted {
        assert_granted(
            &self
                .token(&TokenRequest::exchange(subject_token, audience, scope))
                .await,
        )
    }

    /// Repeats `request` until writ answers `status` (e.g. after a policy change).
    pub async fn wait_for_token_status(
        &self,
        request: &TokenRequest,
        status: u16,
        what: &str,
    ) -> Reply {
        eventually(what, async || {
            let reply = self.token(request).await;
            if reply.status == status {
                Ok(reply)
            } else {
                Err(reply.describe())
            }
        })
        .await
    }

    /// `POST /oauth2/introspect` authenticated with `bearer` (or not at all).
    pub async fn introspect(&self, token: &str, bearer: Option<&str>) -> Reply {
        let form = [("token".to_string(), token.to_string())];
        self.post_form("/oauth2/introspect", &form, bearer).await
    }

    /// Introspection by the admin; asserts 200 and returns the body.
    pub async fn introspect_as_admin(&self, token: &str) -> Value {
        let reply = self.introspect(token, Some(&self.admin_token)).await;
        assert_eq!(reply.status, 200, "introspection: {}", reply.describe());
        reply.json
    }

    pub async fn metadata(&self) -> Value {
        self.get_json("/.well-known/oauth-authorization-server")
            .await
    }

    pub async fn jwks(&self) -> Value {
        self.get_json("/jwks.json").await
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let reply = self.get("/metrics").await;
        assert_eq!(reply.status, 200, "GET /metrics: {}", reply.describe());
        reply.text
    }
}

/// One child process of `writ serve`.
struct Process {
    child: Child,
    url: String,
}

impl Process {
    async fn launch(args: &[String], cwd: &Path, stderr: &Log) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_writ"));
        command
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        isolate(&mut command);
        let mut child = command.spawn().expect("spawn writ");
        stderr.drain(child.stderr.take().expect("piped stderr"));
        let listening = announce_listening(child.stdout.take().expect("piped stdout"));

        match tokio::time::timeout(STARTUP, listening).await {
            Ok(Ok(url)) => Self { child, url },
            Ok(Err(_)) => {
                let status = child.wait().expect("wait for writ");
                panic!(
                    "writ exited ({status}) before listening; stderr:\n{}",
                    stderr.text()
                )
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "writ did not print `{LISTENING}...` within {STARTUP:?}; stderr:\n{}",
                    stderr.text()
                )
            }
        }
    }

    /// SIGKILL, then reap it.
    fn kill_hard(&mut self) {
        // `Child::kill` is SIGKILL on Unix; an error means it already exited.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, wait up to [`SHUTDOWN`], then SIGKILL.
    async fn stop(&mut self) {
        // Delivered or not (it may have exited), the loop below reaps or kills it.
        let _ = signal(self.child.id(), "TERM");
        let deadline = Instant::now() + SHUTDOWN;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads stdout on a thread; resolves with the URL of the listening line
/// (or fails when stdout closes without one). Keeps draining afterwards.
fn announce_listening(stdout: impl Read + Send + 'static) -> oneshot::Receiver<String> {
    let (sender, receiver) = oneshot::channel();
    std::thread::spawn(move || {
        let mut sender = Some(sender);
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line);
            if let Some(url) = line.trim().strip_prefix(LISTENING)
                && let Some(sender) = sender.take()
            {
                let _ = sender.send(url.trim().to_string());
            }
        }
    });
    receiver
}

/// A child's stderr, collected on a thread so the pipe never fills.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<String>>);

impl Log {
    fn drain(&self, stream: impl Read + Send + 'static) {
        let log = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).split(b'\n') {
                let Ok(line) = line else { break };
                let mut text = log.0.lock().expect("stderr log lock");
                text.push_str(&String::from_utf8_lossy(&line));
                text.push('\n');
            }
        });
    }

    fn text(&self) -> String {
        self.0.lock().expect("stderr log lock").clone()
    }
}

/// Keeps a child process away from the developer's environment: no config from
/// `WRIT_CONFIG`, no admin token from `WRIT_ADMIN_TOKEN`, no log filter from
/// `WRIT_LOG`/`RUST_LOG` (writ logs at its default level), no proxies.
pub(crate) fn isolate(command: &mut Command) {
    for variable in [
        "WRIT_CONFIG",
        "WRIT_ADMIN_TOKEN",
        "WRIT_LOG",
        "RUST_LOG",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        command.env_remove(variable);
    }
    command.env("NO_PROXY", "127.0.0.1,localhost");
}

/// `kill -<name> <pid>`; whether it was delivered.
fn signal(pid: u32, name: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|status| status.success())
}
