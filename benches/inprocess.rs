//! The in-process pipeline rate on every core: the token endpoint's own
//! `writ::grant` (form parse, attest cached, kill switch, decide, lifetime
//! and binding, mint, kill switch again), without HTTP and TLS, printed as
//! a plain number so the load benchmark can compare HTTPS throughput with it
//! in the same run.
//! Run: `cargo bench --bench inprocess`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

// Same allocator as the writ binary, so the two figures compare like for like.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    writ::prefer_small_pages();
    writ::install_crypto_provider();
    let seconds: u64 = std::env::var("WRIT_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .unwrap();
    let pipeline = Arc::new(rt.block_on(support::Pipeline::new()));
    let token = Arc::new(pipeline.request(&pipeline.sa_token("api")));
    rt.block_on(pipeline.run(&token));

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let total: u64 = rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..threads {
            let (p, t) = (pipeline.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    p.run(&t).await;
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total
    });
    let rate = total as f64 / started.elapsed().as_secs_f64();
    println!("pipeline_tokens_per_sec {rate:.0} (threads={threads}, seconds={seconds})");
}
