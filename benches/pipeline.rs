//! Criterion micro-benchmarks of the hot path: attestation (cold and
//! cached), one Cedar decision over 10/100/1,000 policies, mint alone, and
//! the in-process pipeline (the token endpoint's `writ::grant`: parse,
//! attest, kill switch, decide, lifetime and binding, mint).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use writ::clock::{Clock, SystemClock};
use writ::model::Ttl;
use writ::policy::{DecisionRequest, PolicyEngine};
use writ::token::{MintRequest, TxnMintRequest};

fn benches(c: &mut Criterion) {
    writ::install_crypto_provider();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut p = rt.block_on(support::Pipeline::new());

    let counter = AtomicU64::new(0);
    c.bench_function("attest/cold (ES256 verify + claims)", |b| {
        b.iter_batched(
            || p.sa_token(&format!("sa{}", counter.fetch_add(1, Ordering::Relaxed))),
            |token| rt.block_on(p.registry.attest_jwt(&token)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    let warm = p.sa_token("api");
    rt.block_on(p.registry.attest_jwt(&warm)).unwrap();
    c.bench_function("attest/cached", |b| {
        b.iter(|| rt.block_on(p.registry.attest_jwt(&warm)).unwrap())
    });

    let attested = rt.block_on(p.registry.attest_jwt(&warm)).unwrap();
    let cases = [
        (
            "decide/10 policies, one target".to_owned(),
            support::policy_dir_with(10),
        ),
        (
            "decide/100 policies, one target".to_owned(),
            support::policy_dir_with(100),
        ),
        (
            "decide/1000 policies, one target".to_owned(),
            support::policy_dir_with(1_000),
        ),
        (
            "decide/10000 policies, one target".to_owned(),
            support::policy_dir_with(10_000),
        ),
        (
            "decide/1000 policies over 100 targets (sliced)".to_owned(),
            support::policy_dir_spread(1_000, 100),
        ),
    ];
    for (name, dir) in cases {
        let engine = PolicyEngine::load(dir.path()).unwrap();
        c.bench_function(&name, |b| {
            b.iter(|| {
                let d = engine
                    .decide(&DecisionRequest {
                        principal: &attested,
                        target: &p.target,
                        scopes: &p.scopes,
                        requested_ttl: Ttl::from_secs(300).unwrap(),
                        now: SystemClock.unix_now(),
                        source_ip: IpAddr::from([127, 0, 0, 1]),
                        sender_constrained: false,
                        delegation_depth: 0,
                        actor: None,
                        transaction: None,
                    })
                    .unwrap();
                assert!(!d.granted().is_empty());
            })
        });
    }

    c.bench_function("mint/ES256", |b| {
        b.iter(|| {
            p.minter
                .mint(MintRequest {
                    subject: &attested.principal,
                    principal_type: attested.entity_type,
                    attestation: attested.kind,
                    attestation_issuer: None,
                    audience: &p.target,
                    scopes: &p.scopes,
                    ttl: Ttl::from_secs(300).unwrap(),
                    now: SystemClock.unix_now(),
                    act: None,
                    cnf: None,
                    ancestry: Vec::new(),
                })
                .unwrap()
        })
    });
    // A transaction token of the same principal, signed by the same key, in
    // the same run (issue 14: no dearer than the access token above).
    let trust_domain = p.config.server.trust_domain.clone();
    let requester = serde_json::Value::String(attested.principal.to_string());
    c.bench_function("mint/txn token ES256", |b| {
        b.iter(|| {
            let mut rctx = serde_json::Map::new();
            rctx.insert("req_ip".into(), "127.0.0.1".into());
            rctx.insert(
                "req_wl".into(),
                serde_json::Value::Array(vec![requester.clone()]),
            );
            p.minter
                .mint_txn(TxnMintRequest {
                    subject: &attested.principal,
                    principal_type: attested.entity_type,
                    attestation: attested.kind,
                    attestation_issuer: None,
                    trust_domain: &trust_domain,
                    purposes: &p.scopes,
                    ttl: Ttl::from_secs(60).unwrap(),
                    now: SystemClock.unix_now(),
                    txn: None,
                    rctx,
                    tctx: None,
                    act: None,
                    ancestry: Vec::new(),
                })
                .unwrap()
        })
    });

    let request = p.request(&warm);
    c.bench_function("pipeline/grant (attest cached)", |b| {
        b.iter(|| rt.block_on(p.run(&request)))
    });
    // The same workload's transaction token for the trust domain, in the same
    // run: issue 14 asks that it cost no more than the access token above.
    let txn_request = p.txn_request(&warm);
    c.bench_function("pipeline/grant txn token (attest cached)", |b| {
        b.iter(|| rt.block_on(p.run(&txn_request)))
    });
    // The same grant with limits.per_principal and limits.per_target set
    // too high ever to refuse: the figure beside the first one is the
    // limiter's own cost (issue 15 asks < 3 %).
    let never: writ::model::Rate = "1000000000/s".parse().unwrap();
    p.limits = writ::grant::RateLimits::new(Some(never), Some(never));
    c.bench_function("pipeline/grant with rate limits (attest cached)", |b| {
        b.iter(|| rt.block_on(p.run(&request)))
    });
}

criterion_group!(name = group; config = Criterion::default().sample_size(30); targets = benches);
criterion_main!(group);
