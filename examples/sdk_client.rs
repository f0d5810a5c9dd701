//! A workload that calls the resource server with a fresh writ token: the
//! SDK's TokenSource attests with a service-account token file, exchanges it,
//! caches the result and refreshes it at 80 % of its life.
//!
//! With `writ serve` (dev mode) and the resource server example running:
//!
//! ```sh
//! cargo run --release -- token --as payments/api --print-subject-token > sa.jwt
//! cargo run --example sdk_client            # calls http://127.0.0.1:8080/balance every 2 s
//! ```
//!
//! Pull the kill switch (`writ revoke --subject spiffe://cluster.local/ns/payments/sa/api --block`)
//! and watch both sides refuse.

#![allow(clippy::print_stdout)]

use std::time::Duration;

use writ_sdk::{Broker, FileAttestation, TokenSource};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker_url =
        std::env::var("WRIT_BROKER").unwrap_or_else(|_| "https://127.0.0.1:8443".into());
    let ca = std::fs::read(std::env::var("WRIT_CA").unwrap_or_else(|_| "certs/ca.pem".into()))?;
    let target =
        std::env::var("RESOURCE").unwrap_or_else(|_| "http://127.0.0.1:8080/balance".into());
    let rounds: u32 = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(u32::MAX);
    let tokens = TokenSource::builder(Broker::with_ca_pem(broker_url, &ca)?, "payments-db")
        .scopes(["read"])
        .attestation(FileAttestation::kubernetes("sa.jwt"))
        .build();
    let http = reqwest::Client::new();
    for _ in 0..rounds {
        match tokens.token().await {
            Ok(token) => {
                let resp = http
                    .get(&target)
                    .bearer_auth(&token.access_token)
                    .send()
                    .await?;
                println!("{} {}", resp.status(), resp.text().await?.trim());
            }
            Err(e) => println!(
                "no token ({}): {e}",
                if e.is_retryable() {
                    "will retry"
                } else {
                    "refused"
                }
            ),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(())
}
