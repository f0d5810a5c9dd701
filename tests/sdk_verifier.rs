//! The SDK's `Verifier` against a real writ on loopback: it accepts a good
//! token; refuses one for another audience, an expired one, one signed by a
//! foreign key, one whose `alg` was swapped, a tampered one and one lacking a
//! required scope; and, following the revocation feed, refuses a revoked
//! token once the feed delivers the entry, also after reconnecting through a
//! broker restart, and fails closed when the feed stays silent too long.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use writ_sdk::{Broker, FeedAuth, Verifier, VerifyError};

/// `max_silence` for verifiers that must keep accepting: well above the
/// broker's 15 s heartbeat and any pause in these tests.
const FEED_SILENCE: Duration = Duration::from_secs(60);
/// `max_silence` for the fail-closed test: short, so the test is short.
/// (The broker's heartbeat comes every 15 s, so with a bound this short even
/// an idle, healthy feed would go stale after it; the test only asks what
/// happens when the broker is gone.)
const SHORT_SILENCE: Duration = Duration::from_secs(3);
/// How long a follower may take to reconnect after a broker restart: its
/// pause between attempts doubles up to 6.4 s while the broker is down.
const RECONNECT: Duration = Duration::from_secs(30);

/// An SDK broker for the test server, trusting the test CA.
fn broker(server: &Server) -> Broker {
    Broker::with_ca_pem(server.url.as_str(), server.ca_pem().as_bytes())
        .expect("broker for the test server")
}

/// A verifier for `audience` with default settings (no feed).
async fn verifier(server: &Server, audience: &str) -> Verifier {
    Verifier::builder(broker(server), audience)
        .build()
        .await
        .expect("build a verifier")
}

/// A verifier for `orders` that follows the revocation feed as the admin.
async fn following_verifier(server: &Server, max_silence: Duration) -> Verifier {
    Verifier::builder(broker(server), ORDERS)
        .follow_revocations(
            FeedAuth::Bearer(server.admin_token().to_string()),
            max_silence,
        )
        .build()
        .await
        .expect("build a verifier following the feed")
}

/// An `orders.read` token for `orders`, minted for `payments/api`.
async fn orders_token(env: &TestEnv, server: &Server) -> Minted {
    server.mint(&env.k8s_token(), ORDERS, "orders.read").await
}

fn jti(minted: &Minted) -> String {
    minted.claims["jti"]
        .as_str()
        .unwrap_or_else(|| panic!("no jti in {}", minted.claims))
        .to_string()
}

/// The `kid` writ signed `minted` with.
fn kid(minted: &Minted) -> String {
    minted.header["kid"]
        .as_str()
        .unwrap_or_else(|| panic!("no kid in {}", minted.header))
        .to_string()
}

/// The claims segment of a compact JWS, as it is (base64url).
fn claims_segment(token: &str) -> &str {
    token
        .split('.')
        .nth(1)
        .unwrap_or_else(|| panic!("not a compact JWS: {token}"))
}

/// `token` with its header replaced and its claims and signature kept.
fn with_header(token: &str, header: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a compact JWS: {token}");
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        parts[1],
        parts[2]
    )
}

/// Polls `verify` until it refuses `token` as revoked by `entry`.
async fn wait_until_refused_as_revoked(
    verifier: &Verifier,
    token: &str,
    entry: &Revocation,
    limit: Duration,
) {
    eventually_within(
        limit,
        &format!(
            "the verifier to refuse the token as revoked by {}",
            entry.id
        ),
        async || match verifier.verify(token).await {
            Err(VerifyError::Revoked(id)) if id == entry.id => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
}

// --- Accepted ------------------------------------------------------------------------------

#[tokio::test]
async fn good_token_is_accepted_with_its_subject_and_scopes() {
    let (env, server) = start_standard().await;
    let minted = orders_token(&env, &server).await;
    let verifier = Verifier::builder(broker(&server), ORDERS)
        .require_scopes(["orders.read"])
        .build()
        .await
        .expect("build a verifier");

    let verified = verifier
        .verify(&minted.access_token)
        .await
        .expect("a good token is accepted");

    assert_eq!(verified.subject, WORKLOAD);
    assert_eq!(verified.scopes, vec!["orders.read".to_string()]);
    assert!(verified.has_scope("orders.read"));
    assert_eq!(verified.jti, jti(&minted));
    assert_eq!(verified.claims["aud"], ORDERS);
}

// --- Refused -------------------------------------------------------------------------------

#[tokio::test]
async fn token_for_another_audience_is_refused() {
    let (env, server) = start_standard().await;
    let minted = orders_token(&env, &server).await;
    let verifier = verifier(&server, LEDGER).await;

    let refusal = verifier.verify(&minted.access_token).await.unwrap_err();

    assert_eq!(refusal, VerifyError::Audience);
}

#[tokio::test]
async fn expired_token_is_refused() {
    let (env, server) = start_standard().await;
    let minted = assert_granted(
        &server
            .token(&orders_read(&env.k8s_token()).requested_ttl(1))
            .await,
    );
    let exp = minted.claim_i64("exp");
    let verifier = Verifier::builder(broker(&server), ORDERS)
        .leeway(Duration::ZERO)
        .build()
        .await
        .expect("build a verifier");
    eventually("the token's exp to pass", async || {
        let now = now();
        if now > exp {
            Ok(())
        } else {
            Err(format!("now {now}, exp {exp}"))
        }
    })
    .await;

    let refusal = verifier.verify(&minted.access_token).await.unwrap_err();

    assert_eq!(refusal, VerifyError::Expired);
}

#[tokio::test]
async fn token_signed_by_a_foreign_key_is_refused_as_unknown_key() {
    let (env, server) = start_standard().await;
    let minted = orders_token(&env, &server).await;
    let foreign = SigningKey::generate(Alg::Es256);
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": foreign.kid});
    let forged = foreign.sign_with_header(&header, &minted.claims);
    let verifier = verifier(&server, ORDERS).await;

    let refusal = verifier.verify(&forged).await.unwrap_err();

    assert_eq!(refusal, VerifyError::UnknownKey);
}

#[tokio::test]
async fn token_signed_by_a_foreign_key_under_the_broker_kid_is_refused_as_bad_signature() {
    let (env, server) = start_standard().await;
    let minted = orders_token(&env, &server).await;
    let foreign = SigningKey::generate(Alg::Es256);
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": kid(&minted)});
    let forged = foreign.sign_with_header(&header, &minted.claims);
    let verifier = verifier(&server, ORDERS).await;

    let refusal = verifier.verify(&forged).await.unwrap_err();

    assert_eq!(refusal, VerifyError::Signature);
}

#[tokio::test]
async fn alg_swapped_to_hs256_keyed_with_the_public_key_is_refused() {
    let (env, server) = start_standard().await;
    let minted = orders_token(&env, &server).await;
    let jwks = server.jwks().await;
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|key| key["kid"] == kid(&minted).as_str()))
        .unwrap_or_else(|| panic!("the signing key is not in {jwks}"))
        .clone();
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": kid(&minted)});
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        claims_segment(&minted.access_token)
    );
    let secret = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, jwk.to_string().as_bytes());
    let tag = ring::hmac::sign(&secret, input.as_bytes());
    let forged = format!("{input}.{}", b64url(tag.as_ref()));
    let verifier = verifier(&server, ORDERS).await;

    let refusal = verifier.verify(&forged).await.unwrap_err();

    assert_eq!(refusal, VerifyError::Algorithm);
}

#[tokio::test]
async fn alg_swapped_to_none_is_refused() {
    let (env, server) = start_standard().await;
    let minted = orders_token(&env, &server).await;
    let header = json!({"alg": "none", "typ": "at+jwt", "kid": kid(&minted)});
    let forged = format!(
        "{}.{}.",
        b64url(header.to_string().as_bytes()),
        claims_segment(&minted.access_token)
    );
    let verifier = verifier(&server, ORDERS).await;

    let refusal = verifier.verify(&forged).await.unwrap_err();

    assert!(
        matches!(refusal, VerifyError::Algorithm | VerifyError::Malformed),
        "{refusal:?}"
    );
}

#[tokio::test]
async fn alg_swapped_to_another_writ_algorithm_is_refused() {
    let (env, server) = start_standard().await;
    let minted = orders_token(&env, &server).await;
    assert_eq!(
        minted.header["alg"], "ES256",
        "the standard config signs with ES256"
    );
    let swapped = with_header(
        &minted.access_token,
        &json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid(&minted)}),
    );
    let verifier = verifier(&server, ORDERS).await;

    let refusal = verifier.verify(&swapped).await.unwrap_err();

    assert_eq!(refusal, VerifyError::Algorithm);
}

#[tokio::test]
async fn tampered_token_is_refused_as_bad_signature() {
    let (env, server) = start_standard().await;
    let minted = orders_token(&env, &server).await;
    let mut claims = minted.claims.clone();
    claims["scope"] = json!("orders.read orders.write");
    let tampered = with_claims(&minted.access_token, &claims);
    let verifier = verifier(&server, ORDERS).await;

    let refusal = verifier.verify(&tampered).await.unwrap_err();

    assert_eq!(refusal, VerifyError::Signature);
}

#[tokio::test]
async fn token_without_a_required_scope_is_refused() {
    let (env, server) = start_standard().await;
    let minted = orders_token(&env, &server).await;
    let verifier = Verifier::builder(broker(&server), ORDERS)
        .require_scopes(["orders.write"])
        .build()
        .await
        .expect("build a verifier");

    let refusal = verifier.verify(&minted.access_token).await.unwrap_err();

    assert_eq!(
        refusal,
        VerifyError::MissingScope("orders.write".to_string())
    );
}

// --- The kill switch -----------------------------------------------------------------------

#[tokio::test]
async fn revoked_token_is_refused_once_the_feed_delivers_the_entry() {
    let (env, server) = start_standard().await;
    let minted = orders_token(&env, &server).await;
    let verifier = following_verifier(&server, FEED_SILENCE).await;
    verifier
        .verify(&minted.access_token)
        .await
        .expect("accepted before the revocation");

    let entry = server
        .revoke(json!({"jti": jti(&minted)}), false, None)
        .await;

    wait_until_refused_as_revoked(&verifier, &minted.access_token, &entry, WAIT).await;
}

#[tokio::test]
async fn verifier_started_after_a_revocation_refuses_the_token_at_once() {
    let (env, server) = start_standard().await;
    let minted = orders_token(&env, &server).await;
    let entry = server
        .revoke(json!({"jti": jti(&minted)}), false, None)
        .await;

    let verifier = following_verifier(&server, FEED_SILENCE).await;
    let refusal = verifier.verify(&minted.access_token).await.unwrap_err();

    assert_eq!(refusal, VerifyError::Revoked(entry.id));
}

#[tokio::test]
async fn revoked_token_is_refused_after_the_feed_reconnects_through_a_broker_restart() {
    let mut env = TestEnv::new();
    let mut server = env.start().await;
    // The restarted broker must be at the same URL: the verifier's broker is
    // bound to it, and with `issuer` unset it is also the tokens' `iss`.
    env.pin_listen_address(&server);
    let minted = orders_token(&env, &server).await;
    let verifier = following_verifier(&server, FEED_SILENCE).await;
    verifier
        .verify(&minted.access_token)
        .await
        .expect("accepted before the restart");
    let url = server.url.clone();

    server.restart().await;
    assert_eq!(server.url, url, "writ came back at the same URL");
    let entry = server
        .revoke(json!({"jti": jti(&minted)}), false, None)
        .await;

    wait_until_refused_as_revoked(&verifier, &minted.access_token, &entry, RECONNECT).await;
}

#[tokio::test]
async fn verifier_fails_closed_when_the_feed_is_silent_beyond_max_silence() {
    let (env, server) = start_standard().await;
    let minted = orders_token(&env, &server).await;
    let verifier = following_verifier(&server, SHORT_SILENCE).await;
    verifier
        .verify(&minted.access_token)
        .await
        .expect("accepted while the feed is heard");

    server.stop().await;

    eventually_within(
        SHORT_SILENCE + WAIT,
        "the verifier to fail closed with FeedStale",
        async || match verifier.verify(&minted.access_token).await {
            Err(VerifyError::FeedStale) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
}

/// A stand-in broker at `server`: its one document is both the metadata
/// (issuer, endpoints) and the JWKS (`keys`), since the server answers every
/// path with it.
fn stand_in_broker_document(base: &str, keys: &[&SigningKey]) -> Value {
    json!({
        "issuer": base,
        "token_endpoint": format!("{base}/oauth2/token"),
        "jwks_uri": format!("{base}/jwks.json"),
        "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>(),
    })
}

#[tokio::test]
async fn a_key_the_broker_withdraws_stops_verifying_without_waiting_for_a_new_kid() {
    let env = TestEnv::new();
    let withdrawn = SigningKey::generate(Alg::Es256);
    let kept = SigningKey::generate(Alg::Es256);
    let stand_in = JwksServer::start(&env.pki, json!({})).await;
    let base = stand_in.url.trim_end_matches("/jwks").to_string();
    stand_in.publish(stand_in_broker_document(&base, &[&withdrawn, &kept]));
    let broker = Broker::with_ca_pem(base.as_str(), env.pki.ca_pem().as_bytes()).unwrap();
    let verifier = Verifier::builder(broker, ORDERS)
        .jwks_refresh(Duration::from_millis(200))
        .build()
        .await
        .unwrap();
    let iat = now();
    let token = withdrawn.sign_with_header(
        &json!({"alg": "ES256", "kid": withdrawn.kid, "typ": "at+jwt"}),
        &json!({"iss": base, "sub": WORKLOAD, "aud": ORDERS, "client_id": WORKLOAD,
                "scope": "orders.read", "iat": iat, "nbf": iat, "exp": iat + 300, "jti": "w"}),
    );
    verifier.verify(&token).await.unwrap();

    // The broker withdraws the key (say, it leaked); its kid stays "known".
    stand_in.publish(stand_in_broker_document(&base, &[&kept]));

    eventually(
        "the verifier to drop the withdrawn key",
        async || match verifier.verify(&token).await {
            Err(VerifyError::UnknownKey) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
}
