//! The SDK's `TokenSource` against a real writ on loopback: it caches a
//! token, refreshes it ahead of expiry, makes one exchange however many
//! callers wait, backs off while the broker is down and recovers when it
//! returns, reports a policy denial as final, and re-reads a rotated
//! service-account token file.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use writ_sdk::{
    Attestation, AttestationSource, Broker, Error, FileAttestation, StaticAttestation, Token,
    TokenSource, TokenSourceBuilder,
};

/// How many callers ask a fresh source at once.
const CALLERS: usize = 100;
/// The lifetime the refresh test asks for: refresh is due after about 4 s.
const SHORT_TTL: Duration = Duration::from_secs(5);
/// How long a source may take to come back after an outage: its backoff
/// grows while the broker is down (up to 30 s per step, but a restart takes
/// a few seconds, so a few steps at most).
const RECOVERY: Duration = Duration::from_secs(30);
/// How many times the flaky attestation fails before it works.
const ATTESTATION_FAILURES: u32 = 2;

/// An SDK broker for `url`, trusting the test CA.
fn broker_at(url: &str, ca_pem: &str) -> Broker {
    Broker::with_ca_pem(url, ca_pem.as_bytes()).expect("broker for the test server")
}

fn broker(server: &Server) -> Broker {
    broker_at(&server.url, server.ca_pem())
}

/// A source of `orders.read` tokens for `orders`, attested as `payments/api`
/// (which the standard policies permit).
fn orders_source(env: &TestEnv, server: &Server) -> TokenSourceBuilder {
    TokenSource::builder(broker(server), ORDERS)
        .scopes(["orders.read"])
        .attestation(StaticAttestation::jwt(env.k8s_token()))
}

/// The `jti` of a token the source returned.
fn jti(token: &Token) -> String {
    jwt_claims(&token.access_token)["jti"]
        .as_str()
        .unwrap_or_else(|| panic!("no jti in {}", jwt_claims(&token.access_token)))
        .to_string()
}

/// How long until `at` by the OS clock (zero once it has passed).
#[allow(
    clippy::disallowed_methods,
    reason = "the test compares the SDK's wall-clock expiry with the OS clock, as common/time.rs does"
)]
fn until(at: SystemTime) -> Duration {
    at.duration_since(SystemTime::now()).unwrap_or_default()
}

/// Fails like a token file the kubelet has not written yet (a retryable
/// `Error::Attestation`) for its first `failures` calls, then presents a
/// real attestation. Counts its calls.
struct FlakyAttestation {
    failures: u32,
    calls: Arc<AtomicU32>,
    then: StaticAttestation,
}

impl AttestationSource for FlakyAttestation {
    fn attestation(&self) -> Pin<Box<dyn Future<Output = Result<Attestation, Error>> + Send + '_>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call >= self.failures {
            return self.then.attestation();
        }
        Box::pin(async move {
            Err(Error::Attestation(format!(
                "token file not written yet (call {})",
                call + 1
            )))
        })
    }
}

// --- Caching and refresh ------------------------------------------------------------------

#[tokio::test]
async fn token_is_cached_between_calls() {
    let (env, server) = start_standard().await;
    let source = orders_source(&env, &server).build();

    let first = source.token().await.expect("first token");
    let second = source.token().await.expect("second token");

    assert_eq!(first.scope, "orders.read");
    assert_eq!(
        second.access_token, first.access_token,
        "the second call returns the cached token"
    );
    assert_eq!(source.exchanges(), 1, "the second call made no exchange");
}

#[tokio::test]
async fn token_is_refreshed_ahead_of_expiry() {
    let (env, server) = start_standard().await;
    let source = orders_source(&env, &server)
        .requested_ttl(SHORT_TTL)
        .build();

    let first = source.token().await.expect("first token");
    let due = source
        .refresh_due()
        .expect("a cached token has a refresh time");
    let expires = Instant::now() + until(first.expires_at);
    assert!(
        due < expires,
        "refresh is due {:?} before the token expires",
        expires.saturating_duration_since(due)
    );
    let first_jti = jti(&first);
    let refreshed = eventually_within(
        SHORT_TTL * 4,
        "a refreshed token with a new jti",
        async || {
            let token = source.token().await.map_err(|error| error.to_string())?;
            if jti(&token) == first_jti {
                Err(format!("still the first token (jti {first_jti})"))
            } else {
                Ok(token)
            }
        },
    )
    .await;

    assert_ne!(refreshed.access_token, first.access_token);
    assert_eq!(source.exchanges(), 2, "one exchange per token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_callers_cause_one_exchange() {
    let (env, server) = start_standard().await;
    let source = orders_source(&env, &server).build();

    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let source = source.clone();
            tokio::spawn(async move { source.token().await })
        })
        .collect();
    let mut tokens = Vec::with_capacity(CALLERS);
    for caller in callers {
        tokens.push(
            caller
                .await
                .expect("caller task")
                .expect("every caller gets a token"),
        );
    }

    assert_eq!(source.exchanges(), 1, "one exchange for {CALLERS} callers");
    assert!(
        tokens
            .iter()
            .all(|token| token.access_token == tokens[0].access_token),
        "every caller got the same token"
    );
}

// --- Failures: retryable or not -----------------------------------------------------------

#[tokio::test]
async fn broker_that_is_down_is_a_retryable_unavailable_error() {
    let (env, server) = start_standard().await;
    let url = server.url.clone();
    server.stop().await;
    let source = TokenSource::builder(broker_at(&url, &env.pki.ca_pem()), ORDERS)
        .scopes(["orders.read"])
        .attestation(StaticAttestation::jwt(env.k8s_token()))
        .build();

    let error = source
        .token()
        .await
        .expect_err("nothing listens where the broker was");

    assert!(matches!(error, Error::Unavailable(_)), "{error:?}");
    assert!(error.is_retryable(), "{error:?}");
}

#[tokio::test]
async fn failed_exchange_backs_off_instead_of_retrying_at_once() {
    let (env, server) = start_standard().await;
    let source = orders_source(&env, &server).build();
    source.token().await.expect("token while the broker is up");
    source.invalidate();
    server.stop().await;

    let first_failure = source.token().await.expect_err("the broker is down");
    let attempts = source.exchanges();
    let second_failure = source.token().await.expect_err("the source is backing off");

    assert!(
        matches!(first_failure, Error::Unavailable(_)),
        "{first_failure:?}"
    );
    assert_eq!(attempts, 2, "the first token, then one failed attempt");
    assert_eq!(
        source.exchanges(),
        attempts,
        "a call during the backoff makes no attempt"
    );
    assert_eq!(
        second_failure, first_failure,
        "a call during the backoff reports the last failure"
    );
}

#[tokio::test]
async fn source_recovers_when_the_broker_returns() {
    let mut env = TestEnv::new();
    let mut server = env.start().await;
    env.pin_listen_address(&server);
    let source = orders_source(&env, &server).build();
    let before = source.token().await.expect("token before the outage");
    source.invalidate();
    let url = server.url.clone();

    server.take_down().await;
    let outage = source.token().await.expect_err("the broker is down");
    assert!(outage.is_retryable(), "{outage:?}");
    server.bring_back().await;
    assert_eq!(server.url, url, "writ came back at the same URL");
    let after = eventually_within(RECOVERY, "a token once the broker is back", async || {
        source.token().await.map_err(|error| error.to_string())
    })
    .await;

    assert_ne!(
        jti(&after),
        jti(&before),
        "a new token from the returned broker"
    );
}

#[tokio::test]
async fn source_backs_off_and_recovers_when_attestation_fails_for_a_while() {
    let (env, server) = start_standard().await;
    let calls = Arc::new(AtomicU32::new(0));
    let source = TokenSource::builder(broker(&server), ORDERS)
        .scopes(["orders.read"])
        .attestation(FlakyAttestation {
            failures: ATTESTATION_FAILURES,
            calls: calls.clone(),
            then: StaticAttestation::jwt(env.k8s_token()),
        })
        .build();

    let mut failures_seen = Vec::new();
    let token = eventually_within(
        RECOVERY,
        "a token once attestation works",
        async || match source.token().await {
            Ok(token) => Ok(token),
            Err(error) => {
                let seen = format!("{error:?}");
                failures_seen.push(error);
                Err(seen)
            }
        },
    )
    .await;

    assert_eq!(token.scope, "orders.read");
    assert!(
        failures_seen
            .iter()
            .all(|error| matches!(error, Error::Attestation(_)) && error.is_retryable()),
        "every failure is a retryable attestation error: {failures_seen:?}"
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        ATTESTATION_FAILURES + 1,
        "one attestation per attempt; calls during the backoff made none"
    );
    assert_eq!(
        source.exchanges(),
        1,
        "only the working attestation was exchanged"
    );
}

#[tokio::test]
async fn policy_denial_is_a_non_retryable_denied_error() {
    let (env, server) = start_standard().await;
    let source = TokenSource::builder(broker(&server), ORDERS)
        .scopes(["orders.admin"])
        .attestation(StaticAttestation::jwt(env.k8s_token()))
        .build();

    let error = source
        .token()
        .await
        .expect_err("no policy permits orders.admin");

    assert!(!error.is_retryable(), "{error:?}");
    let Error::Denied {
        error: code,
        decision_id,
        ..
    } = &error
    else {
        panic!("expected Error::Denied, got {error:?}");
    };
    assert_eq!(code, "access_denied", "{error:?}");
    assert!(!decision_id.is_empty(), "no decision_id in {error:?}");
    let record = env
        .audit_record_where(&format!("decision {decision_id}"), |record| {
            record["decision_id"] == decision_id.as_str()
        })
        .await;
    assert_eq!(record["decision"], "deny", "{record}");
}

// --- Attestation from a rotated file ------------------------------------------------------

#[tokio::test]
async fn file_attestation_reads_the_rotated_token_file() {
    const TOKEN_FILE: &str = "serviceaccount/token";
    let (env, server) = start_standard().await;
    env.write(TOKEN_FILE, &env.k8s_token());
    let source = TokenSource::builder(broker(&server), ORDERS)
        .scopes(["orders.read"])
        .attestation(FileAttestation::kubernetes(env.path(TOKEN_FILE)))
        .build();
    let first = source.token().await.expect("token from the first file");
    assert_eq!(jwt_claims(&first.access_token)["sub"], WORKLOAD);

    env.write(TOKEN_FILE, &env.service_account_token(NAMESPACE, "worker"));
    source.invalidate();
    let second = source.token().await.expect("token from the rotated file");

    assert_eq!(
        jwt_claims(&second.access_token)["sub"],
        format!("spiffe://cluster.local/ns/{NAMESPACE}/sa/worker"),
        "the exchange presented the rotated token"
    );
}
