//! Replicas on one PostgreSQL database (CONTRACT section 8), as plain
//! figures for README: two brokers on loopback share a database of their
//! own on 127.0.0.1:5432 (dropped at the end). For each of N blocks
//! posted at replica A, one after another:
//!
//! - `answer`: from sending the admin call to A's `201` (which waits for
//!   every live replica to apply the entry);
//! - `feed`: from sending it to the entry's arrival at an SSE follower of
//!   replica B;
//! - `refusal`: from sending it to replica B's first refusal of a mint for
//!   the blocked subject (asked right after the `201`, then until refused).
//!
//! Run: `cargo bench --bench replicas` (needs PostgreSQL on 127.0.0.1:5432,
//! user postgres, trust auth).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::Connection;
use writ::clock::{Clock, SystemClock};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    writ::prefer_small_pages();
    writ::install_crypto_provider();
    let measuring = std::env::args().any(|a| a == "--bench");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(propagation(if measuring { 1_000 } else { 20 }));
}

const SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// Runs `sql` on the server's `postgres` database.
async fn on_server(sql: &str) {
    let mut admin = sqlx::PgConnection::connect(&format!("{SERVER}/postgres"))
        .await
        .expect("this benchmark needs PostgreSQL on 127.0.0.1:5432 (user postgres)");
    sqlx::query(sql).execute(&mut admin).await.unwrap();
}

fn percentiles(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    println!(
        "{name}_ms p50 {:.2} p99 {:.2} max {:.2} (n={})",
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        v[v.len() - 1].as_secs_f64() * 1e3,
        v.len()
    );
}

async fn propagation(entries: usize) {
    let database = format!("writ_bench_replicas_{}", std::process::id());
    on_server(&format!("CREATE DATABASE {database}")).await;
    let url = format!("{SERVER}/{database}");
    let a = support::LiveBroker::start_on(false, Some(url.clone())).await;
    let b = support::LiveBroker::start_on(false, Some(url)).await;

    // B's follower: arrival time by seq.
    let arrivals: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; entries]));
    let resp = b
        .client()
        .get(format!("{}/v1/revocations/stream", b.base))
        .bearer_auth(&b.admin_token)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let reader = tokio::spawn({
        let arrivals = arrivals.clone();
        async move {
            let mut resp = resp;
            let mut buf = String::new();
            let mut seen = 0;
            while seen < entries {
                let Ok(Some(chunk)) = resp.chunk().await else {
                    break;
                };
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find('\n') {
                    let line: String = buf.drain(..=end).collect();
                    if let Some(id) = line
                        .strip_prefix("id: ")
                        .and_then(|s| s.trim().parse::<usize>().ok())
                        && (1..=entries).contains(&id)
                    {
                        arrivals.lock().unwrap()[id - 1] = Some(Instant::now());
                        seen += 1;
                    }
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (admin, minter) = (a.client(), b.client());
    let mut asked = Vec::with_capacity(entries);
    let mut answers = Vec::with_capacity(entries);
    let mut refusals = Vec::with_capacity(entries);
    let mut not_applied_everywhere = 0;
    for i in 0..entries {
        let account = format!("bench-{i}");
        let subject = format!("spiffe://cluster.local/ns/payments/sa/{account}");
        let sa = b
            .issuer
            .service_account_token("payments", &account, SystemClock.unix_now(), 3600)
            .unwrap();
        let start = Instant::now();
        let resp = admin
            .post(format!("{}/admin/v1/revocations", a.base))
            .bearer_auth(&a.admin_token)
            .json(&serde_json::json!({"selector": {"subject": subject}, "block": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
        let body: serde_json::Value = resp.json().await.unwrap();
        answers.push(start.elapsed());
        if body["replicas"]["applied"] != body["replicas"]["live"] {
            not_applied_everywhere += 1;
        }
        asked.push(start);
        loop {
            let resp = minter
                .post(format!("{}/oauth2/token", b.base))
                .form(&support::exchange_form(&sa))
                .send()
                .await
                .unwrap();
            let text = resp.text().await.unwrap();
            if text.contains("kill switch") {
                refusals.push(start.elapsed());
                break;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), reader).await;
    let arrivals = arrivals.lock().unwrap().clone();
    let feed: Vec<Duration> = arrivals
        .iter()
        .zip(&asked)
        .filter_map(|(arrived, asked)| arrived.map(|t| t.saturating_duration_since(*asked)))
        .collect();
    println!("replicas 2 on one PostgreSQL database, {entries} blocks posted at A");
    percentiles("answer_201_at_a", answers);
    percentiles("follower_at_b_receives", feed.clone());
    println!("follower_at_b_missing {}", entries - feed.len());
    percentiles("b_refuses_mint", refusals);
    println!("answers_with_applied_below_live {not_applied_everywhere}");
    a.running.shutdown().await;
    b.running.shutdown().await;
    on_server(&format!("DROP DATABASE {database} WITH (FORCE)")).await;
}
