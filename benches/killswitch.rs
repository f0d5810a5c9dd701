//! Kill-switch benchmarks, printed as plain figures for README:
//!
//! 1. the cost of the revocation index on the mint path: the in-process
//!    `writ::grant` (attest cached + block check + decide + mint + block
//!    re-check) with an empty index versus 100,000 live entries, interleaved
//!    in the same run;
//! 2. propagation: a real server on loopback, 10 SSE followers, 1,000
//!    revocations posted one after another; for each follower and entry, the
//!    time from the admin call's answer to the entry's arrival.
//!
//! Run: `cargo bench --bench killswitch`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use writ::clock::{Clock, SystemClock};
use writ::revoke::{Entry, EntryKind, RevocationIndex, Selector};

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
    rt.block_on(index_cost(
        if measuring { 3 } else { 1 },
        if measuring { 100_000 } else { 1_000 },
    ));
    rt.block_on(propagation(10, if measuring { 1_000 } else { 20 }));
}

fn entry(i: usize, selector: Selector, block: bool) -> Arc<Entry> {
    Arc::new(Entry {
        id: format!("{i:032x}"),
        seq: i as u64 + 1,
        kind: EntryKind::Revoke,
        selector,
        reason: String::new(),
        who: "bench".into(),
        effective_at: SystemClock.unix_now(),
        block,
        until: None,
        token_exp: None,
        lifted_at: None,
        lifts: None,
    })
}

/// A realistic mix: mostly subjects and jtis, some targets, issuers and
/// namespace prefixes of many lengths; none matches the benchmarked workload.
fn populated(n: usize) -> RevocationIndex {
    let index = RevocationIndex::new();
    for i in 0..n {
        let selector = match i % 20 {
            0..=11 => Selector::Subject(format!(
                "spiffe://cluster.local/ns/team{}/sa/svc{i}",
                i % 500
            )),
            12..=15 => Selector::Jti(format!("jti-{i:022}")),
            16 | 17 => Selector::Audience(format!("db-{i}")),
            18 => Selector::Issuer(format!("https://issuer-{i}.example")),
            _ => Selector::SubjectPrefix(format!(
                "spiffe://cluster.local/ns/{}/",
                "x".repeat(1 + i % 40)
            )),
        };
        index.upsert(entry(i, selector, i % 2 == 0));
    }
    index
}

async fn rate(
    p: &Arc<support::Pipeline>,
    token: &Arc<Vec<u8>>,
    index: &Arc<RevocationIndex>,
    seconds: u64,
) -> f64 {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..threads {
        let (p, t, idx) = (p.clone(), token.clone(), index.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                p.run_checked(&t, Some(&idx)).await;
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / started.elapsed().as_secs_f64()
}

async fn index_cost(seconds: u64, entries: usize) {
    let pipeline = Arc::new(support::Pipeline::new().await);
    let token = Arc::new(pipeline.request(&pipeline.sa_token("api")));
    let empty = Arc::new(RevocationIndex::new());
    let rss_before = rss_mb();
    let full = Arc::new(populated(entries));
    let rss_after = rss_mb();
    pipeline.run_checked(&token, Some(&full)).await;
    let (mut with_none, mut with_full) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        with_none.push(rate(&pipeline, &token, &empty, seconds).await);
        with_full.push(rate(&pipeline, &token, &full, seconds).await);
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (none, full_rate) = (best(&with_none), best(&with_full));
    println!("mint_tokens_per_sec_index_empty {none:.0}");
    println!(
        "mint_tokens_per_sec_index_{}_entries {full_rate:.0}",
        full.len()
    );
    println!(
        "mint_loss_with_full_index {:.1}%",
        100.0 * (none - full_rate) / none
    );
    println!(
        "rss_mb_index_{}_entries {:.1} (process {rss_before:.1} -> {rss_after:.1})",
        full.len(),
        rss_after - rss_before
    );
}

/// This process's resident memory, in MB (Linux; 0 elsewhere).
fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn propagation(followers: usize, entries: usize) {
    let live = support::LiveBroker::start().await;
    let (base, admin) = (live.base.clone(), live.admin_token.clone());
    let client = || live.client();

    // arrivals[follower][seq - 1]
    let arrivals: Arc<Mutex<Vec<Vec<Option<Instant>>>>> =
        Arc::new(Mutex::new(vec![vec![None; entries]; followers]));
    let mut readers = Vec::new();
    for f in 0..followers {
        let resp = client()
            .get(format!("{base}/v1/revocations/stream"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success());
        let arrivals = arrivals.clone();
        readers.push(tokio::spawn(async move {
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
                        arrivals.lock().unwrap()[f][id - 1] = Some(Instant::now());
                        seen += 1;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    let admin_client = client();
    let mut answered = vec![Instant::now(); entries];
    let mut asked = vec![Instant::now(); entries];
    let started = Instant::now();
    for (i, slot) in answered.iter_mut().enumerate() {
        asked[i] = Instant::now();
        let resp = admin_client
            .post(format!("{base}/admin/v1/revocations"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"selector": {"subject": format!("spiffe://bench/{i}")}, "block": true}))
            .send()
            .await
            .unwrap();
        *slot = Instant::now();
        assert_eq!(resp.status().as_u16(), 201);
    }
    let writing = started.elapsed();
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(30), r).await;
    }
    let arrivals = arrivals.lock().unwrap().clone();
    let mut latencies: Vec<Duration> = Vec::new();
    let mut from_request: Vec<Duration> = Vec::new();
    let mut missing = 0;
    for follower in arrivals.iter() {
        for (i, arrival) in follower.iter().enumerate() {
            match arrival {
                Some(t) => {
                    latencies.push(t.saturating_duration_since(answered[i]));
                    from_request.push(t.saturating_duration_since(asked[i]));
                }
                None => missing += 1,
            }
        }
    }
    latencies.sort();
    from_request.sort();
    let at = |v: &[Duration], p: f64| {
        v.get(((v.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or_default()
    };
    let pct = |p: f64| at(&latencies, p);
    println!(
        "propagation_followers {followers} entries {entries} samples {} missing {missing}",
        latencies.len()
    );
    println!(
        "propagation_after_answer_ms p50 {:.2} p99 {:.2} max {:.2}",
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        pct(1.0).as_secs_f64() * 1e3
    );
    println!(
        "propagation_after_request_ms p50 {:.2} p99 {:.2} max {:.2} (includes the synced store write)",
        at(&from_request, 0.50).as_secs_f64() * 1e3,
        at(&from_request, 0.99).as_secs_f64() * 1e3,
        at(&from_request, 1.0).as_secs_f64() * 1e3
    );
    println!(
        "admin_revocations_per_sec {:.0} (each synced to disk before its answer)",
        entries as f64 / writing.as_secs_f64()
    );
    live.running.shutdown().await;
}
