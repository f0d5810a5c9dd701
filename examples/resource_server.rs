//! A resource server that accepts only writ tokens for `payments-db` with
//! scope `read`, and refuses revoked ones as soon as the kill switch speaks.
//!
//! With `writ serve` running in dev mode in the repository root:
//!
//! ```sh
//! export WRIT_ADMIN_TOKEN=$(cat certs/dev-admin-token)   # reads the revocation feed (dev only)
//! cargo run --example resource_server                    # http://127.0.0.1:8080/balance
//! ```
//!
//! In production the feed credential is a token for the broker's own
//! audience (`FeedAuth::Tokens`) or a client certificate.

#![allow(clippy::print_stdout)]

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use writ_sdk::layer::RequireToken;
use writ_sdk::{Broker, FeedAuth, Verified, Verifier};

async fn balance(token: Verified) -> String {
    format!(
        "balance for {} (scopes: {})\n",
        token.subject,
        token.scopes.join(" ")
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let broker_url =
        std::env::var("WRIT_BROKER").unwrap_or_else(|_| "https://127.0.0.1:8443".into());
    let ca = std::fs::read(std::env::var("WRIT_CA").unwrap_or_else(|_| "certs/ca.pem".into()))?;
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let broker = Broker::with_ca_pem(broker_url, &ca)?;
    let mut verifier = Verifier::builder(broker, "payments-db").require_scopes(["read"]);
    match std::env::var("WRIT_ADMIN_TOKEN") {
        Ok(token) => {
            verifier = verifier.follow_revocations(FeedAuth::Bearer(token), Duration::from_secs(60))
        }
        Err(_) => eprintln!("WRIT_ADMIN_TOKEN is not set: revocations are NOT followed"),
    }
    let verifier = verifier.build().await?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    // The origin clients address this server by: DPoP proofs must name it.
    let origin = std::env::var("ORIGIN").unwrap_or_else(|_| format!("http://{listen}"));
    let app = Router::new()
        .route("/balance", get(balance))
        .layer(RequireToken::new(verifier, &origin)?);
    println!(
        "resource server listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, app).await?;
    Ok(())
}
