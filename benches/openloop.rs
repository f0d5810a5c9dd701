//! Open-loop latency: token exchanges scheduled at a constant rate over a
//! fixed set of HTTPS connections, each latency measured from the moment
//! the schedule meant the request to leave, not from when a connection was
//! free to send it. A closed-loop tool (wrk) waits for an answer before
//! sending the next request, so a stall delays the requests that would have
//! seen it and hides them ("coordinated omission"); here a stall shows as
//! the latency of every request scheduled during it.
//!
//! Run: `cargo bench --bench openloop` (a broker in this process, dev
//! material, example policies), or against a running broker as
//! `benches/load.sh` does:
//!
//! ```text
//! WRIT_OPENLOOP_URL=https://127.0.0.1:PORT WRIT_OPENLOOP_CA=certs/ca.pem \
//!   WRIT_OPENLOOP_SUBJECT=<service-account token> cargo bench --bench openloop
//! ```
//!
//! `WRIT_OPENLOOP_RATES` (default `2000,6000` requests/s),
//! `WRIT_OPENLOOP_SECONDS` (default 10 per rate) and
//! `WRIT_OPENLOOP_CONNECTIONS` (default 64) shape the load; the target is
//! loopback only.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, mpsc};
use writ::clock::{Clock, SystemClock};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Where the load goes and what it sends.
struct Target {
    url: String,
    ca_pem: Vec<u8>,
    subject: String,
}

/// One rate's outcome.
struct Run {
    rate: u64,
    sent: usize,
    failed: usize,
    seconds: f64,
    /// Sorted, from the intended send time to the end of the response body.
    latencies: Vec<Duration>,
}

impl Run {
    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1]
    }

    fn report(&self) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "openloop rate={} achieved={:.0}/s sent={} failed={} p50_ms={:.2} p99_ms={:.2} p999_ms={:.2} max_ms={:.2}",
            self.rate,
            self.latencies.len() as f64 / self.seconds,
            self.sent,
            self.failed,
            ms(self.percentile(50.0)),
            ms(self.percentile(99.0)),
            ms(self.percentile(99.9)),
            ms(self.latencies.last().copied().unwrap_or_default()),
        );
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn client(ca_pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).unwrap())
        .tls_built_in_root_certs(false)
        .http1_only()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap()
}

/// Sends `rate` requests a second for `seconds` over `connections`
/// connections, each one client with one connection, taking the next
/// scheduled request whenever it is free.
async fn run(target: &Target, rate: u64, seconds: u64, connections: usize) -> Run {
    let body = serde_urlencoded::to_string(support::exchange_form(&target.subject)).unwrap();
    let url = format!("{}/oauth2/token", target.url);
    let (schedule_tx, schedule_rx) = mpsc::unbounded_channel::<Instant>();
    let schedule_rx = Arc::new(Mutex::new(schedule_rx));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Option<Duration>>();

    let mut workers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let client = client(&target.ca_pem);
        // Open the connection (TLS handshake) before the clock starts.
        let warm = client
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(warm.status().is_success(), "warm-up: {}", warm.status());
        warm.bytes().await.unwrap();
        let (rx, done, url, body) = (
            schedule_rx.clone(),
            done_tx.clone(),
            url.clone(),
            body.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let Some(intended) = rx.lock().await.recv().await else {
                    return;
                };
                let answer = client
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.clone())
                    .send()
                    .await;
                let ok = match answer {
                    Ok(resp) if resp.status().is_success() => resp.bytes().await.is_ok(),
                    _ => false,
                };
                let _ = done.send(ok.then(|| intended.elapsed()));
            }
        }));
    }
    drop(done_tx);

    // The schedule runs on its own thread: a thread's sleep wakes within
    // tens of microseconds, the runtime's timer only to the millisecond.
    let total = (rate * seconds) as usize;
    let scheduler = std::thread::spawn(move || {
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let start = Instant::now() + Duration::from_millis(10);
        for i in 0..total {
            let intended = start + interval * i as u32;
            let now = Instant::now();
            if intended > now {
                std::thread::sleep(intended - now);
            }
            if schedule_tx.send(intended).is_err() {
                return;
            }
        }
    });

    let started = Instant::now();
    let mut latencies = Vec::with_capacity(total);
    let mut failed = 0;
    while latencies.len() + failed < total {
        match done_rx.recv().await {
            Some(Some(latency)) => latencies.push(latency),
            Some(None) => failed += 1,
            None => break,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    scheduler.join().unwrap();
    for worker in workers {
        worker.abort();
    }
    latencies.sort_unstable();
    Run {
        rate,
        sent: total,
        failed,
        seconds,
        latencies,
    }
}

fn main() {
    // `cargo test --all-targets` runs this too (without `--bench`): a short
    // smoke run then, so the generator is checked without loading the machine.
    let measuring = std::env::args().any(|a| a == "--bench");
    let (default_rates, default_seconds, default_connections) = if measuring {
        ("2000,6000", 10, 64)
    } else {
        ("100", 1, 4)
    };
    let rates: Vec<u64> = std::env::var("WRIT_OPENLOOP_RATES")
        .unwrap_or_else(|_| default_rates.into())
        .split(',')
        .map(|r| r.trim().parse().expect("WRIT_OPENLOOP_RATES: numbers"))
        .collect();
    let seconds = env_or("WRIT_OPENLOOP_SECONDS", default_seconds);
    let connections = env_or("WRIT_OPENLOOP_CONNECTIONS", default_connections);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Either the broker named by the environment, or one of our own.
        let (target, _broker) = match std::env::var("WRIT_OPENLOOP_URL") {
            Ok(url) => {
                assert!(
                    url.starts_with("https://127.0.0.1:") || url.starts_with("https://[::1]:"),
                    "load goes to loopback only"
                );
                let ca_pem = std::fs::read(std::env::var("WRIT_OPENLOOP_CA").unwrap()).unwrap();
                let subject = std::env::var("WRIT_OPENLOOP_SUBJECT").unwrap();
                (
                    Target {
                        url,
                        ca_pem,
                        subject,
                    },
                    None,
                )
            }
            Err(_) => {
                let broker = support::LiveBroker::start().await;
                let subject = broker
                    .issuer
                    .service_account_token("payments", "api", SystemClock.unix_now(), 3600)
                    .unwrap();
                (
                    Target {
                        url: broker.base.clone(),
                        ca_pem: broker.ca_pem.clone(),
                        subject,
                    },
                    Some(broker),
                )
            }
        };
        for rate in rates {
            let outcome = run(&target, rate, seconds, connections).await;
            outcome.report();
            if !measuring {
                assert_eq!(outcome.failed, 0, "smoke run: every exchange succeeds");
                assert_eq!(outcome.latencies.len(), outcome.sent);
            }
        }
    });
}
