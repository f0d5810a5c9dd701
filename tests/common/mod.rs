//! Shared helpers for writ's black-box tests.
//!
//! A test plays the outside world and never writ: it makes a CA and a server
//! certificate ([`Pki`]), attestation issuers with their own keys ([`Issuer`]),
//! a policy directory and a `writ.toml` in a temp dir ([`TestEnv`]), then starts
//! the real binary on an ephemeral loopback port ([`Server`]) and talks HTTPS to
//! it. Each test builds its own `TestEnv`, so tests never share ports or files.
#![allow(
    dead_code,
    unused_imports,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "each test crate uses a different part of these helpers; tests may panic"
)]

mod cli;
mod db_proxy;
mod env;
mod http;
mod issuer;
mod jwks_server;
mod pki;
mod policies;
mod postgres;
mod revocation;
mod server;
mod time;
mod unix;
mod venv;
mod wait;

pub use cli::{CliOutput, run_python, run_writ, run_writ_with_env};
pub use db_proxy::DbProxy;
pub use env::{Config, TestEnv};
pub use http::{
    ACCESS_TOKEN, ID_TOKEN, JWT, Minted, Reply, TOKEN_EXCHANGE, TokenRequest, assert_granted,
    assert_refused, assert_refused_because, b64url, client, client_bound_to, jwt_claims,
    jwt_header, verify_with_jwks, with_claims,
};
pub use issuer::{Alg, Issuer, SigningKey, pod_name, service_account_uid};
pub use jwks_server::JwksServer;
pub use pki::{Leaf, Pki, uri_san};
pub use policies::{
    ENTITIES, NARROWING_POLICY, SCHEMA, STANDARD_POLICIES, permit_orders_read_when,
};
pub use postgres::{Database, POSTGRES};
pub use revocation::{
    EventStream, FEED, FEED_STREAM, FeedEvent, REVOCATIONS, Revocation, assert_revocation_created,
    entries_of, entry_id, entry_seq, is_entry_id, revocation_body,
};
pub use server::Server;
pub use time::{Utc, cedar_datetime, now, parse_rfc3339, rfc3339, until_next_second};
pub use unix::post_unix;
pub use venv::{python_venv, repo};
pub use wait::{POLL, WAIT, eventually, eventually_within};

/// The namespace of the workload most tests attest as.
pub const NAMESPACE: &str = "payments";
/// The service account of the workload most tests attest as.
pub const SERVICE_ACCOUNT: &str = "api";
/// The principal writ derives for `payments/api` from the `k8s` issuer.
pub const WORKLOAD: &str = "spiffe://cluster.local/ns/payments/sa/api";
/// The target most tests ask a token for (a `Target` in entities.json).
pub const ORDERS: &str = "orders";
/// A second target, owned by another team.
pub const LEDGER: &str = "ledger";
/// The repository of the CI job the `ci` issuer attests.
pub const REPOSITORY: &str = "acme/app";
/// The git ref of that CI job.
pub const GIT_REF: &str = "refs/heads/main";
/// The principal writ derives for that CI job from the `ci` subject template.
pub const CI_JOB: &str = "repo:acme/app:ref:refs/heads/main";
/// An issuer URL to pin `server.issuer` to; it is also a `Target` in entities.json,
/// so a workload can ask for a token whose audience is writ itself.
pub const SELF_ISSUER: &str = "https://writ.test";

/// The standard environment and its running server. Bind them in this order
/// (`let (env, server) = ...`) so the server stops before the temp dir goes.
pub async fn start_standard() -> (TestEnv, Server) {
    let env = TestEnv::new();
    let server = env.start().await;
    (env, server)
}

/// An exchange of `subject_token` for `orders.read` on `orders`, which the
/// standard policies permit to `payments/api` and to the acme/app CI job.
pub fn orders_read(subject_token: &str) -> TokenRequest {
    TokenRequest::exchange(subject_token, ORDERS, "orders.read")
}
