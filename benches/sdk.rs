//! SDK figures, printed plainly for README:
//!
//! 1. Verifier throughput on one core against raw ES256 verification (ring)
//!    of the same token, measured in the same run;
//! 2. revocation to refusal: for 1,000 tokens, the time from the admin call's
//!    answer until a Verifier following the feed refuses the token.
//!
//! Run: `cargo bench --bench sdk`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use writ_sdk::{Broker, FeedAuth, Verifier, VerifyError};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    writ::install_crypto_provider();
    let measuring = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(
        if measuring { 3 } else { 1 },
        if measuring { 1_000 } else { 20 },
    ));
}

fn per_second(seconds: u64, mut f: impl FnMut()) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut n = 0u64;
    while Instant::now() < deadline {
        for _ in 0..64 {
            f();
        }
        n += 64;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

async fn run(seconds: u64, revocations: usize) {
    let live = support::LiveBroker::start().await;
    let client = live.client();
    let broker = Broker::with_ca_pem(&live.base, &live.ca_pem).unwrap();

    // 1. Verifier against raw ring ES256 verify, one core.
    let token = live.mint(&client, "api").await;
    let verifier = Verifier::builder(broker.clone(), "payments-db")
        .build()
        .await
        .unwrap();
    verifier.verify(&token).await.unwrap();
    let jwks: serde_json::Value = client
        .get(format!("{}/jwks.json", live.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = &jwks["keys"][0];
    let mut point = vec![4u8];
    point.extend(URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap());
    point.extend(URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap());
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let raw = per_second(seconds, || {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .verify(signed.as_bytes(), &signature)
            .unwrap();
    });
    // The verifier's future completes without waiting (keys are cached), so
    // this loop measures its work on this one thread.
    let sdk = {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let mut n = 0u64;
        while Instant::now() < deadline {
            for _ in 0..64 {
                verifier.verify(&token).await.unwrap();
            }
            n += 64;
        }
        n as f64 / started.elapsed().as_secs_f64()
    };
    println!("raw_es256_verifications_per_sec {raw:.0}");
    println!("sdk_verifier_verifications_per_sec {sdk:.0}");
    println!("sdk_verifier_share_of_raw {:.0}%", 100.0 * sdk / raw);

    // 2. Revocation to refusal.
    let following = Verifier::builder(broker, "payments-db")
        .follow_revocations(
            FeedAuth::Bearer(live.admin_token.clone()),
            Duration::from_secs(60),
        )
        .build()
        .await
        .unwrap();
    let mut tokens = Vec::with_capacity(revocations);
    for i in 0..revocations {
        tokens.push(
            live.mint(&client, if i % 2 == 0 { "api" } else { "worker" })
                .await,
        );
    }
    let mut latencies = Vec::with_capacity(revocations);
    for token in &tokens {
        following.verify(token).await.unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        let resp = client
            .post(format!("{}/admin/v1/revocations", live.base))
            .bearer_auth(&live.admin_token)
            .json(&serde_json::json!({"selector": {"jti": claims["jti"]}}))
            .send()
            .await
            .unwrap();
        let answered = Instant::now();
        assert_eq!(resp.status().as_u16(), 201);
        loop {
            match following.verify(token).await {
                Err(VerifyError::Revoked(_)) => break,
                Ok(_) => tokio::task::yield_now().await,
                Err(e) => panic!("unexpected {e}"),
            }
            assert!(
                answered.elapsed() < Duration::from_secs(10),
                "never refused"
            );
        }
        latencies.push(answered.elapsed());
    }
    latencies.sort();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    println!(
        "revocation_to_verifier_refusal_ms p50 {:.2} p99 {:.2} max {:.2} over {} tokens",
        at(0.5),
        at(0.99),
        at(1.0),
        latencies.len()
    );
    live.running.shutdown().await;
}
