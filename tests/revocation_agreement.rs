//! The broker and the SDK must give the same kill-switch verdict on every
//! token (issue 12): the broker's entries go through its real kill switch
//! and SQLite store; the SDK hears the same entries as the feed serves them
//! (JSON, without the admin fields) and applies them to its own copy. Random
//! entries (every selector kind, blocks, lifts, several effective times)
//! and random tokens (ancestry, act chains, issuers, signing key) must get
//! the same answer from both.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::json;
use writ::Clock;
use writ::revoke::{KillSwitch, RevokeRequest, Selector};
use writ::token::AccessClaims;
use writ_sdk::revocations::RevocationSet;

/// A clock the test moves.
#[derive(Debug, Default)]
struct TestClock(AtomicU64);

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.0.load(Ordering::SeqCst))
    }
}

const START: u64 = 1_000;
const SUBJECTS: [&str; 3] = [
    "spiffe://c/ns/pay/sa/api",
    "spiffe://c/ns/pay/sa/web",
    "spiffe://c/ns/ops/sa/x",
];
const PREFIXES: [&str; 3] = [
    "spiffe://c/ns/pay/",
    "spiffe://c/ns/",
    "spiffe://c/ns/ops/sa/x/",
];
const AUDIENCES: [&str; 2] = ["db", "cache"];
const ISSUERS: [&str; 4] = [
    "https://writ",
    "https://k8s",
    "https://agents",
    "https://other",
];
const ACTORS: [&str; 2] = ["agent:a", "agent:b"];
const JTIS: [&str; 3] = ["j1", "j2", "j3"];
const KIDS: [&str; 2] = ["key-a", "key-b"];

fn selector() -> impl Strategy<Value = Selector> {
    prop_oneof![
        prop::sample::select(&JTIS[..]).prop_map(|v| Selector::Jti(v.into())),
        prop::sample::select(&SUBJECTS[..]).prop_map(|v| Selector::Subject(v.into())),
        prop::sample::select(&PREFIXES[..]).prop_map(|v| Selector::SubjectPrefix(v.into())),
        prop::sample::select(&AUDIENCES[..]).prop_map(|v| Selector::Audience(v.into())),
        prop::sample::select(&ISSUERS[..]).prop_map(|v| Selector::Issuer(v.into())),
        prop::sample::select(&ACTORS[..]).prop_map(|v| Selector::Actor(v.into())),
        prop::sample::select(&KIDS[..]).prop_map(|v| Selector::Kid(v.into())),
        Just(Selector::All),
    ]
}

/// One step of the kill switch's history.
#[derive(Debug, Clone)]
enum Step {
    /// Revoke (maybe blocking) what the selector names.
    Revoke(Selector, bool),
    /// Lift the block of the n-th entry made so far, if it is one.
    Lift(usize),
    /// Let some seconds pass.
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (selector(), any::<bool>()).prop_map(|(s, b)| Step::Revoke(s, b)),
        1 => (0usize..8).prop_map(Step::Lift),
        2 => (1u64..4).prop_map(Step::Wait),
    ]
}

fn act(levels: &[(&str, Option<&str>)]) -> serde_json::Value {
    levels
        .iter()
        .rev()
        .fold(serde_json::Value::Null, |inner, (sub, iss)| {
            let mut level = json!({ "sub": sub });
            if let Some(iss) = iss {
                level["iss"] = json!(iss);
            }
            if !inner.is_null() {
                level["act"] = inner;
            }
            level
        })
}

prop_compose! {
    fn token()(
        jti in prop::sample::select(&JTIS[..]),
        ancestry in prop::sample::subsequence(JTIS.to_vec(), 0..=2),
        sub in prop::sample::select(&SUBJECTS[..]),
        aud in prop::sample::select(&AUDIENCES[..]),
        attestation_issuer in prop::option::of(prop::sample::select(&ISSUERS[1..])),
        actors in prop::collection::vec(
            (prop::sample::select(&ACTORS[..]), prop::option::of(prop::sample::select(&ISSUERS[1..]))),
            0..=2,
        ),
        iat in (START - 3)..(START + 30),
        kid in prop::sample::select(&KIDS[..]),
    ) -> (AccessClaims, &'static str) {
        let mut claims = json!({
            "iss": "https://writ", "sub": sub, "aud": aud, "client_id": sub, "scope": "read",
            "iat": iat, "nbf": iat, "exp": iat + 300, "jti": jti, "ancestry": ancestry,
            "attestation": "kubernetes", "principal_type": "Workload",
        });
        if let Some(iss) = attestation_issuer {
            claims["attestation_issuer"] = json!(iss);
        }
        if !actors.is_empty() {
            claims["act"] = act(&actors);
        }
        (serde_json::from_value(claims).unwrap(), kid)
    }
}

/// Plays `steps` on a real kill switch; returns it and the SDK's copy, fed
/// with every entry as the feed serves it.
fn play(steps: &[Step]) -> (Arc<KillSwitch>, RevocationSet) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("writ.db").display());
        let store = writ::store::open(&url).await.unwrap();
        let clock = Arc::new(TestClock(AtomicU64::new(START)));
        let switch = Arc::new(
            KillSwitch::load(
                store,
                clock.clone(),
                3_600,
                "agreement".into(),
                std::time::Duration::from_secs(3_600),
            )
            .await
            .unwrap(),
        );
        let mut made = Vec::new();
        for step in steps {
            match step {
                Step::Revoke(selector, block) => {
                    let request = RevokeRequest {
                        selector: selector.clone(),
                        reason: "agreement test".into(),
                        block: *block,
                        until: None,
                    };
                    made.push(switch.revoke(request, "admin".into()).await.unwrap());
                }
                Step::Lift(n) => {
                    if let Some(entry) = made.get(*n) {
                        switch.lift(&entry.id, "admin".into()).await.unwrap();
                    }
                }
                Step::Wait(secs) => {
                    clock.0.fetch_add(*secs, Ordering::SeqCst);
                }
            }
        }
        let mut sdk = RevocationSet::new(30);
        for entry in switch.since(0, 1_000).await.unwrap() {
            sdk.apply(&entry.to_json(false));
        }
        (switch, sdk)
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn broker_and_sdk_agree_on_every_token(
        steps in prop::collection::vec(step(), 0..10),
        tokens in prop::collection::vec(token(), 1..16),
    ) {
        let (switch, sdk) = play(&steps);
        for (claims, kid) in &tokens {
            let broker = switch.index().revokes(claims, kid).map(|e| e.id.clone());
            let sdk_says = sdk.revoked(claims, kid);
            prop_assert_eq!(
                broker.is_some(),
                sdk_says.is_some(),
                "broker {:?}, SDK {:?}, token {:?} signed by {}",
                broker,
                sdk_says,
                claims,
                kid
            );
        }
    }
}

/// The agreement above is not vacuous: a history with a revocation makes
/// both sides refuse the tokens it names and only those.
#[test]
fn both_sides_revoke_what_an_entry_names_and_nothing_else() {
    let (switch, sdk) = play(&[Step::Revoke(Selector::Actor("agent:b".into()), false)]);
    let named: AccessClaims = serde_json::from_value(json!({
        "iss": "https://writ", "sub": SUBJECTS[0], "aud": "db", "client_id": "agent:a",
        "scope": "read", "iat": START, "nbf": START, "exp": START + 60, "jti": "j1",
        "attestation": "kubernetes", "principal_type": "Workload",
        "act": act(&[("agent:a", None), ("agent:b", Some("https://agents"))]),
    }))
    .unwrap();
    let other = AccessClaims {
        act: None,
        ..named.clone()
    };
    let later = AccessClaims {
        iat: START + 1,
        ..named.clone()
    };
    let k = KIDS[0];
    assert!(switch.index().revokes(&named, k).is_some() && sdk.revoked(&named, k).is_some());
    assert!(switch.index().revokes(&other, k).is_none() && sdk.revoked(&other, k).is_none());
    assert!(switch.index().revokes(&later, k).is_none() && sdk.revoked(&later, k).is_none());
}

/// A `kid` entry revokes, at both sides, every token that key signed up to
/// its time, whoever the token is for, and no token another key signed.
#[test]
fn both_sides_revoke_every_token_a_revoked_key_signed_and_only_those() {
    let (switch, sdk) = play(&[Step::Revoke(Selector::Kid(KIDS[0].into()), false)]);
    let token: AccessClaims = serde_json::from_value(json!({
        "iss": "https://writ", "sub": SUBJECTS[2], "aud": "cache", "client_id": SUBJECTS[2],
        "scope": "read", "iat": START, "nbf": START, "exp": START + 60, "jti": "j2",
        "attestation": "kubernetes", "principal_type": "Workload",
    }))
    .unwrap();
    let (stolen, other) = (KIDS[0], KIDS[1]);
    assert!(switch.index().revokes(&token, stolen).is_some());
    assert!(sdk.revoked(&token, stolen).is_some());
    assert!(switch.index().revokes(&token, other).is_none());
    assert!(sdk.revoked(&token, other).is_none());
}
