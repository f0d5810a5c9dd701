//! `writ demo`: the whole flow on an ephemeral loopback port, printed step
//! by step, in a scratch directory that is removed afterwards.

use std::sync::Arc;

use serde_json::Value;

use super::{CliError, decode_claims, exchange, https_client};
use crate::certs::{self, DevIssuer};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::server::Server;

fn step(n: u32, title: &str) {
    println!("\n== {n}. {title}");
}

/// Runs the demo.
pub async fn run() -> Result<(), CliError> {
    let scratch = tempfile::tempdir().map_err(CliError::new)?;
    let dir = scratch.path();
    certs::init(&dir.join("certs")).map_err(CliError::new)?;
    crate::policy::write_examples(&dir.join("policies")).map_err(CliError::new)?;
    let mut config = Config::dev();
    config.server.listen = ([127, 0, 0, 1], 0).into();
    config.tls.cert = dir.join("certs").join(certs::SERVER_CERT);
    config.tls.key = dir.join("certs").join(certs::SERVER_KEY);
    config.store.url = format!("sqlite://{}", dir.join("writ.db").display());
    config.policy.dir = dir.join("policies");
    config.audit.path = dir.join("audit.jsonl");
    for issuer in &mut config.issuers {
        issuer.jwks_file = Some(dir.join("certs").join(certs::DEV_ISSUER_JWKS));
    }
    let running = Server::new(config, Arc::new(SystemClock))
        .start()
        .await
        .map_err(CliError::new)?;
    let base = running.issuer().to_owned();
    println!(
        "writ demo: a broker is listening on {base} (dev CA, example policies, scratch store)"
    );
    let result = walk(dir, &base).await;
    running.shutdown().await;
    if result.is_ok() {
        step(6, "audit");
        let n = crate::audit::verify_file(&dir.join("audit.jsonl"), true).map_err(CliError::new)?;
        println!("{n} decisions were logged, hash chain intact (writ audit verify)");
    }
    result
}

async fn walk(dir: &std::path::Path, base: &str) -> Result<(), CliError> {
    let client = https_client(&dir.join("certs").join(certs::CA_CERT))?;
    let issuer = DevIssuer::load(&dir.join("certs")).map_err(CliError::new)?;
    let now = SystemClock.unix_now();

    step(
        1,
        "attest: the workload payments/api holds a Kubernetes service-account token",
    );
    let sa_token = issuer
        .service_account_token("payments", "api", now, 600)
        .map_err(CliError::new)?;
    let claims = decode_claims(&sa_token).unwrap_or_default();
    println!("iss={} sub={}", claims["iss"], claims["sub"]);

    step(
        2,
        "mint: exchange it for a token for payments-db, scope read, asking for 15 minutes",
    );
    let token = exchange(
        &client,
        base,
        &sa_token,
        "payments-db",
        "read",
        Some(900),
        None,
    )
    .await?;
    let claims = decode_claims(&token).unwrap_or_default();
    println!(
        "{}",
        serde_json::to_string_pretty(&claims).unwrap_or_default()
    );
    println!(
        "lives {} s: the least of requested_ttl (900), tokens.max_ttl (900) and @max_ttl(\"600\") of policy payments-read-db",
        claims["exp"]
            .as_u64()
            .unwrap_or(0)
            .saturating_sub(claims["iat"].as_u64().unwrap_or(0))
    );

    step(
        3,
        "deny: payments/legacy asks for the same; a forbid policy wins",
    );
    let legacy = issuer
        .service_account_token("payments", "legacy", now, 600)
        .map_err(CliError::new)?;
    match exchange(&client, base, &legacy, "payments-db", "read", None, None).await {
        Ok(_) => return Err(CliError::new("expected a denial for payments/legacy")),
        Err(e) => println!("refused: {e}"),
    }

    step(4, "deny: an unknown target");
    match exchange(&client, base, &sa_token, "no-such-db", "read", None, None).await {
        Ok(_) => return Err(CliError::new("expected invalid_target")),
        Err(e) => println!("refused: {e}"),
    }

    step(
        5,
        "verify: check the minted token with nothing but the published JWKS",
    );
    let jwks: Value = client
        .get(format!("{base}/jwks.json"))
        .send()
        .await
        .map_err(CliError::new)?
        .json()
        .await
        .map_err(CliError::new)?;
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).map_err(CliError::new)?;
    let header = jsonwebtoken::decode_header(&token).map_err(CliError::new)?;
    let jwk = header
        .kid
        .as_deref()
        .and_then(|kid| set.find(kid))
        .ok_or_else(|| CliError::new("kid not in JWKS"))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(CliError::new)?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&["payments-db"]);
    validation.set_issuer(&[base]);
    jsonwebtoken::decode::<Value>(&token, &key, &validation).map_err(CliError::new)?;
    println!(
        "signature, issuer, audience and expiry verified with kid {} ({:?})",
        header.kid.unwrap_or_default(),
        header.alg
    );
    Ok(())
}
