//! Sender-constrained tokens cost: token-endpoint throughput over HTTPS for
//! plain bearer exchange, exchange with a DPoP proof, and
//! `client_credentials` over mTLS, measured back to back in one run against
//! one broker. Clients and broker share the machine, as in the load
//! benchmark, so a client signing its proofs inside the timed window takes
//! CPU from the broker it measures: the `DpopPresigned*` modes sign every
//! proof (each unique, each fresh) before the window opens, which is the
//! broker's own cost; the `DpopSignedInLoop*` modes sign per request.
//!
//! Run: `cargo bench --bench binding`; `WRIT_BENCH_STORE=postgres cargo
//! bench --bench binding` puts the broker on PostgreSQL (127.0.0.1:5432),
//! where a DPoP proof is also recorded for every replica.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::json;
use writ::clock::{Clock, SystemClock};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONCURRENCY: usize = 32;

/// Proofs each DPoP task signs before the window opens (more than it can
/// send in it; it signs on the fly if it runs out).
const PRESIGNED_PER_TASK: u64 = 3_000;

#[derive(Clone, Copy, Debug)]
enum Mode {
    Bearer,
    DpopPresignedEs256,
    DpopPresignedEd25519,
    DpopSignedInLoopEs256,
    Mtls,
}

impl Mode {
    fn dpop(self) -> bool {
        !matches!(self, Mode::Bearer | Mode::Mtls)
    }
}

enum ProofKey {
    Es256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

struct Dpop {
    key: ProofKey,
    jwk: serde_json::Value,
    rng: SystemRandom,
}

impl Dpop {
    fn new(ed25519: bool) -> Self {
        let rng = SystemRandom::new();
        if ed25519 {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
            let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
            let x = URL_SAFE_NO_PAD.encode(key.public_key().as_ref());
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": x});
            return Self {
                key: ProofKey::Ed25519(key),
                jwk,
                rng,
            };
        }
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = key.public_key().as_ref().to_vec();
        let (x, y) = (
            URL_SAFE_NO_PAD.encode(&point[1..33]),
            URL_SAFE_NO_PAD.encode(&point[33..]),
        );
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y});
        Self {
            key: ProofKey::Es256(key),
            jwk,
            rng,
        }
    }

    fn proof(&self, htu: &str, n: u64) -> String {
        let alg = match self.key {
            ProofKey::Es256(_) => "ES256",
            ProofKey::Ed25519(_) => "EdDSA",
        };
        let header = json!({"typ": "dpop+jwt", "alg": alg, "jwk": self.jwk});
        let jti = format!("{n}-{}", rand_id(&self.rng));
        let claims = json!({"htm": "POST", "htu": htu, "iat": SystemClock.unix_now(), "jti": jti});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = match &self.key {
            ProofKey::Es256(k) => k
                .sign(&self.rng, input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            ProofKey::Ed25519(k) => k.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

fn rand_id(rng: &SystemRandom) -> String {
    let mut b = [0u8; 8];
    ring::rand::SecureRandom::fill(rng, &mut b).unwrap();
    URL_SAFE_NO_PAD.encode(b)
}

fn main() {
    writ::prefer_small_pages();
    writ::install_crypto_provider();
    let seconds = if std::env::args().any(|a| a == "--bench") {
        5
    } else {
        1
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let live = Arc::new(support::LiveBroker::start_with_client_ca(true).await);
        let sa = live
            .issuer
            .service_account_token("payments", "api", SystemClock.unix_now(), 3600)
            .unwrap();
        let identity = live.client_identity_pem("spiffe://cluster.local/bench/client");
        let mut rates = Vec::new();
        for mode in [
            Mode::Bearer,
            Mode::DpopPresignedEs256,
            Mode::DpopPresignedEd25519,
            Mode::DpopSignedInLoopEs256,
            Mode::Mtls,
        ] {
            rates.push((mode, rate(&live, mode, &sa, &identity, seconds).await));
        }
        let bearer = rates[0].1;
        println!(
            "store {}",
            std::env::var("WRIT_BENCH_STORE").unwrap_or_else(|_| "sqlite".into())
        );
        for (mode, r) in &rates {
            println!(
                "tokens_per_sec_{mode:?} {r:.0} ({:.0}% of bearer)",
                100.0 * r / bearer
            );
        }
        let live = Arc::try_unwrap(live).ok().unwrap();
        live.running.shutdown().await;
    });
}

async fn rate(
    live: &Arc<support::LiveBroker>,
    mode: Mode,
    sa: &str,
    identity: &str,
    seconds: u64,
) -> f64 {
    let mut builder = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&live.ca_pem).unwrap())
        .tls_built_in_root_certs(false);
    if matches!(mode, Mode::Mtls) {
        builder = builder.identity(reqwest::Identity::from_pem(identity.as_bytes()).unwrap());
    }
    let client = builder.build().unwrap();
    let url = format!("{}/oauth2/token", live.base);
    let ready = Arc::new(tokio::sync::Barrier::new(CONCURRENCY + 1));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (client, url, sa) = (client.clone(), url.clone(), sa.to_owned());
        let ready = ready.clone();
        tasks.push(tokio::spawn(async move {
            let dpop = Dpop::new(matches!(mode, Mode::DpopPresignedEd25519));
            let mut presigned: Vec<String> = match mode {
                Mode::DpopPresignedEs256 | Mode::DpopPresignedEd25519 => (0..PRESIGNED_PER_TASK)
                    .map(|n| dpop.proof(&url, n))
                    .collect(),
                _ => Vec::new(),
            };
            ready.wait().await;
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let mut n = 0u64;
            while Instant::now() < deadline {
                let mut req = client.post(&url);
                req = match mode {
                    Mode::Mtls => req.form(&[
                        ("grant_type", "client_credentials"),
                        ("audience", "payments-db"),
                        ("scope", "read"),
                    ]),
                    _ => req.form(&support::exchange_form(&sa)),
                };
                if mode.dpop() {
                    let proof = presigned
                        .pop()
                        .unwrap_or_else(|| dpop.proof(&url, PRESIGNED_PER_TASK + n));
                    req = req.header("DPoP", proof);
                }
                let resp = req.send().await.unwrap();
                assert_eq!(
                    resp.status().as_u16(),
                    200,
                    "{mode:?}: {}",
                    resp.text().await.unwrap_or_default()
                );
                let _ = resp.bytes().await;
                n += 1;
            }
            n
        }));
    }
    ready.wait().await;
    let started = Instant::now();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}
