//! Fuzzing on stable Rust (issue 11, item 18): property tests over every
//! parser that sees untrusted bytes. For each, arbitrary input (bounded, at
//! most 64 KiB) never panics, never hangs and is refused with the right error
//! type; structured inputs check that valid values round-trip or are
//! accepted. The token endpoint form and the attestation JWT splitter are
//! private and tested in their modules (`src/server/form.rs`,
//! `src/attest/jwt.rs`), the SDK's SSE decoder in `sdk/src/feed.rs`.
//!
//! Case counts are small by default so `cargo test` stays fast; set
//! `PROPTEST_CASES` for a longer run (README, "Fuzzing").
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests panic on unexpected results"
)]

mod common;

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{Map, Value, json};

use writ::attest::mtls::{CertIdentityError, identity};
use writ::attest::{AttestError, MAX_TOKEN_BYTES, Registry};
use writ::config::{Config, SigningAlgorithm};
use writ::model::{AttestationKind, EntityType, ModelError, Scope, Scopes};
use writ::policy::PolicySnapshot;
use writ::revoke::{MAX_VALUE_BYTES, RevokeRequest, Selector};
use writ::token::{KeyRing, KeySettings, MintRequest, Minter, TokenError, TokenVerifier};
use writ::{Principal, SystemClock, TargetId, Ttl};
use writ_sdk::dpop::{self, DpopError, DpopKey, Expected};

// ---------------------------------------------------------------------------
// Shared strategies

/// `PROPTEST_CASES` when set (a longer run on demand), else `default`;
/// failing cases are reported, not persisted to files.
fn config(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Arbitrary bytes, mostly short, sometimes up to 64 KiB.
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        9 => prop::collection::vec(any::<u8>(), 0..1024),
        1 => prop::collection::vec(any::<u8>(), 0..=64 * 1024),
    ]
}

/// Arbitrary text, mostly short, sometimes up to 64 KiB; plus text made of
/// JWT-ish characters, which reaches further into the parsers.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => ".{0,512}",
        1 => prop::collection::vec(any::<char>(), 0..=16 * 1024).prop_map(String::from_iter),
        3 => "[A-Za-z0-9_.=-]{0,512}",
    ]
}

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object with some of `names` (values usually of a plausible kind,
/// sometimes anything) and maybe other members.
fn object_with(
    names: &'static [&'static str],
    plausible: BoxedStrategy<Value>,
) -> impl Strategy<Value = Value> {
    let member = prop_oneof![3 => plausible, 1 => json_value()];
    (
        prop::collection::vec((prop::sample::select(names), member), 0..names.len() + 1),
        prop::collection::btree_map("[a-z]{1,6}", json_value(), 0..2),
    )
        .prop_map(|(known, extra)| {
            let mut m: Map<String, Value> = extra.into_iter().collect();
            for (k, v) in known {
                m.insert(k.to_owned(), v);
            }
            Value::Object(m)
        })
}

/// A compact JWS whose parts are `header` and `claims` as JSON, with `sig`.
fn compact(header: &Value, claims: &Value, sig: &str) -> String {
    format!(
        "{}.{}.{sig}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// One runtime for the async parts (attestation keys, the store).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Runtime::new().unwrap())
}

// ---------------------------------------------------------------------------
// Scopes (RFC 6749 section 3.3)

fn scope_token_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= Scope::MAX_LEN
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// What `Scopes::parse` must answer: the distinct tokens in first-seen
/// order, each valid, at least one and at most `Scopes::MAX`.
fn scopes_oracle(param: &str) -> Result<Vec<String>, ModelError> {
    let mut distinct: Vec<&str> = Vec::new();
    for t in param.split(' ').filter(|t| !t.is_empty()) {
        if !distinct.contains(&t) {
            distinct.push(t);
        }
    }
    for (i, t) in distinct.iter().enumerate() {
        if i == Scopes::MAX {
            return Err(ModelError::ScopeCount { max: Scopes::MAX });
        }
        if !scope_token_ok(t) {
            return Err(ModelError::Scope);
        }
    }
    if distinct.is_empty() {
        return Err(ModelError::ScopeCount { max: Scopes::MAX });
    }
    Ok(distinct.into_iter().map(str::to_owned).collect())
}

const SCOPE_TOKEN: &str = "[!#-\\[\\]-~]{1,12}";

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn scope_tokens_follow_rfc_6749(s in prop_oneof![text(), SCOPE_TOKEN.prop_map(String::from), "[ -~]{120,136}"]) {
        match Scope::new(s.clone()) {
            Ok(scope) => {
                prop_assert!(scope_token_ok(&s));
                prop_assert_eq!(scope.as_str(), s.as_str());
            }
            Err(e) => {
                prop_assert!(!scope_token_ok(&s));
                prop_assert_eq!(e, ModelError::Scope);
            }
        }
    }

    #[test]
    fn any_scope_parameter_parses_as_the_oracle_says(param in prop_oneof![
        text(),
        // Space-separated, mostly valid tokens, with repeats and odd spacing.
        prop::collection::vec(
            prop_oneof![8 => SCOPE_TOKEN.prop_map(String::from), 1 => ".{0,4}", 1 => Just(String::new())],
            0..48,
        )
        .prop_map(|t| t.join(" ")),
    ]) {
        let got = Scopes::parse(&param).map(|s| s.to_strings());
        prop_assert_eq!(got, scopes_oracle(&param));
    }

    #[test]
    fn valid_scopes_round_trip(tokens in prop::collection::vec(SCOPE_TOKEN, 1..=Scopes::MAX), repeats in prop::collection::vec(any::<prop::sample::Index>(), 0..16), gaps in 1usize..4) {
        // Duplicates are dropped; at most 32 distinct tokens are accepted.
        let mut all = tokens.clone();
        for r in repeats {
            all.push(r.get(&tokens).clone());
        }
        let param = all.join(&" ".repeat(gaps));
        let scopes = Scopes::parse(&param).unwrap();
        let mut seen = Vec::new();
        for t in tokens {
            if !seen.contains(&t) {
                seen.push(t);
            }
        }
        prop_assert_eq!(scopes.to_strings(), seen);
        prop_assert!(scopes.len() <= Scopes::MAX);
        prop_assert_eq!(Scopes::parse(&scopes.to_string()).unwrap(), scopes);
    }

    #[test]
    fn more_than_32_distinct_scopes_are_refused(tokens in prop::collection::btree_set(SCOPE_TOKEN, Scopes::MAX + 1..=Scopes::MAX + 40)) {
        let param = tokens.into_iter().collect::<Vec<_>>().join(" ");
        prop_assert_eq!(Scopes::parse(&param), Err(ModelError::ScopeCount { max: Scopes::MAX }));
    }
}

// ---------------------------------------------------------------------------
// Attestation JWTs: everything `Registry::attest_jwt` does before and after
// the signature check.

struct Attestation {
    issuer: common::Issuer,
    registry: Registry,
    _dir: tempfile::TempDir,
}

fn attestation() -> &'static Attestation {
    static A: OnceLock<Attestation> = OnceLock::new();
    A.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let issuer = common::Issuer::kubernetes(common::Alg::Es256);
        std::fs::write(
            dir.path().join(issuer.jwks_file_name()),
            issuer.jwks().to_string(),
        )
        .unwrap();
        let toml = dir.path().join("writ.toml");
        std::fs::write(&toml, issuer.toml("")).unwrap();
        let config = Config::load(&toml).unwrap();
        let registry = runtime()
            .block_on(Registry::from_config(&config, Arc::new(SystemClock)))
            .unwrap();
        Attestation {
            issuer,
            registry,
            _dir: dir,
        }
    })
}

fn attest(token: &str) -> Result<Arc<writ::Attested>, AttestError> {
    runtime().block_on(attestation().registry.attest_jwt(token))
}

/// An RFC 1123 label, as Kubernetes names namespaces and service accounts.
const DNS_LABEL: &str = "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?";

fn jwt_header() -> impl Strategy<Value = Value> {
    let plausible = prop_oneof![
        prop::sample::select(vec![
            "ES256", "ES384", "RS256", "PS256", "EdDSA", "none", "HS256", "JWT", "at+jwt"
        ])
        .prop_map(Value::from),
        Just(Value::from(attestation().issuer.key.kid.clone())),
        ".{0,16}".prop_map(Value::from),
    ]
    .boxed();
    prop_oneof![4 => object_with(&["alg", "kid", "typ", "jwk", "crit"], plausible), 1 => json_value()]
}

fn jwt_claims() -> impl Strategy<Value = Value> {
    let plausible = prop_oneof![
        Just(Value::from(attestation().issuer.iss.clone())),
        Just(Value::from("writ")),
        Just(json!(["writ"])),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (0u64..4_000_000_000).prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
        (DNS_LABEL, DNS_LABEL)
            .prop_map(|(ns, sa)| json!({"namespace": ns, "serviceaccount": {"name": sa}})),
    ]
    .boxed();
    prop_oneof![
        4 => object_with(&["iss", "aud", "sub", "exp", "nbf", "iat", "kubernetes.io"], plausible),
        1 => json_value(),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_subject_tokens_are_refused(token in prop_oneof![
        9 => text(),
        1 => "[A-Za-z0-9_.-]{16385,16400}",
    ]) {
        let result = attest(&token);
        prop_assert!(result.is_err(), "accepted {token:?}");
        if token.len() > MAX_TOKEN_BYTES {
            prop_assert_eq!(result.err(), Some(AttestError::TooLarge));
        }
    }

    #[test]
    fn arbitrary_headers_and_claims_without_a_signature_are_refused(
        header in jwt_header(),
        claims in jwt_claims(),
        sig in "[A-Za-z0-9_-]{0,128}",
    ) {
        prop_assert!(attest(&compact(&header, &claims, &sig)).is_err());
    }

    #[test]
    fn signed_arbitrary_claims_never_panic(claims in jwt_claims()) {
        // The issuer's real key signs whatever claims: only the claim checks
        // stand between them and a principal.
        let a = attestation();
        let token = a.issuer.sign(&claims);
        if let Ok(attested) = attest(&token) {
            let k8s = &claims["kubernetes.io"];
            let expected = format!(
                "spiffe://cluster.local/ns/{}/sa/{}",
                k8s["namespace"].as_str().unwrap(),
                k8s["serviceaccount"]["name"].as_str().unwrap()
            );
            prop_assert_eq!(attested.principal.as_str(), expected.as_str());
            prop_assert_eq!(attested.kind, AttestationKind::Kubernetes);
        }
    }

    #[test]
    fn valid_service_account_tokens_are_accepted(namespace in DNS_LABEL, sa in DNS_LABEL) {
        let a = attestation();
        let token = a.issuer.sign(&a.issuer.service_account_claims(&namespace, &sa));
        let attested = attest(&token).unwrap();
        let expected = format!("spiffe://cluster.local/ns/{namespace}/sa/{sa}");
        prop_assert_eq!(attested.principal.as_str(), expected.as_str());
    }
}

// ---------------------------------------------------------------------------
// writ's own tokens: `TokenVerifier::verify`

const ISSUER: &str = "https://writ.fuzz";

struct Tokens {
    minter: Minter,
    verifier: TokenVerifier,
    kid: String,
    _dir: tempfile::TempDir,
}

fn tokens() -> &'static Tokens {
    static T: OnceLock<Tokens> = OnceLock::new();
    T.get_or_init(|| {
        let now = u64::try_from(common::now()).unwrap();
        // A store file in a temp dir (an in-memory URL would leave a
        // `file:sqlx-in-memory-0` file in the working directory).
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("writ.db").display());
        let keys = runtime().block_on(async {
            let store = writ::store::open(&url).await.unwrap();
            let settings = KeySettings {
                algorithm: SigningAlgorithm::ES256,
                publish_ahead: 60,
                rotate_every: 0,
                retire_after: 960,
            };
            KeyRing::open(store, None, settings, Arc::new(SystemClock))
                .await
                .unwrap()
        });
        let kid = keys
            .snapshot()
            .signer_at(now)
            .unwrap()
            .key()
            .kid()
            .to_owned();
        Tokens {
            kid,
            minter: Minter::new(keys.clone(), ISSUER),
            verifier: TokenVerifier::new(keys, ISSUER, Arc::new(SystemClock)).max_lifetime(900),
            _dir: dir,
        }
    })
}

fn mint(sub: &str, aud: &str, scopes: &Scopes, ttl: u64) -> writ::Minted {
    let subject = Principal::new(sub).unwrap();
    let audience = TargetId::new(aud).unwrap();
    tokens()
        .minter
        .mint(MintRequest {
            subject: &subject,
            principal_type: EntityType::Workload,
            attestation: AttestationKind::Kubernetes,
            attestation_issuer: Some("https://k8s.test"),
            audience: &audience,
            scopes,
            ttl: Ttl::from_secs(ttl).unwrap(),
            now: u64::try_from(common::now()).unwrap(),
            act: None,
            cnf: None,
            ancestry: vec![],
        })
        .unwrap()
}

/// A printable principal or target id.
const ID: &str = "[^\\p{Cc}]{1,64}";

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_strings_are_not_writ_tokens(token in text()) {
        prop_assert!(tokens().verifier.verify(&token).is_err());
    }

    #[test]
    fn arbitrary_headers_and_claims_are_not_writ_tokens(
        header in prop_oneof![
            3 => object_with(
                &["alg", "kid", "typ"],
                prop_oneof![
                    Just(Value::from("at+jwt")),
                    Just(Value::from("ES256")),
                    Just(Value::from(tokens().kid.clone())),
                    ".{0,8}".prop_map(Value::from),
                ].boxed(),
            ),
            1 => json_value(),
        ],
        claims in json_value(),
        sig in "[A-Za-z0-9_-]{0,96}",
    ) {
        prop_assert!(tokens().verifier.verify(&compact(&header, &claims, &sig)).is_err());
    }

    #[test]
    fn minted_tokens_verify_and_tampered_ones_do_not(
        sub in ID,
        aud in ID,
        scope in prop::collection::vec(SCOPE_TOKEN, 1..8),
        ttl in 1u64..=900,
        at in any::<prop::sample::Index>(),
        with in prop::sample::select(b"A_-.z0=".to_vec()),
    ) {
        let scopes = Scopes::parse(&scope.join(" ")).unwrap();
        let minted = mint(&sub, &aud, &scopes, ttl);
        let claims = tokens().verifier.verify(&minted.token).unwrap().claims;
        prop_assert_eq!(&claims.sub, &sub);
        prop_assert_eq!(&claims.aud, &aud);
        prop_assert_eq!(claims.scope, scopes.to_string());
        prop_assert_eq!(claims.jti, minted.jti);
        prop_assert_eq!(claims.exp - claims.iat, ttl);

        // Any one character changed: refused.
        let mut bytes = minted.token.into_bytes();
        let i = at.index(bytes.len());
        prop_assume!(bytes[i] != with);
        bytes[i] = with;
        let tampered = String::from_utf8(bytes).unwrap();
        let result = tokens().verifier.verify(&tampered);
        prop_assert!(
            matches!(result, Err(TokenError::Malformed | TokenError::BadSignature | TokenError::UnknownKey | TokenError::WrongType)),
            "{result:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// DPoP proofs (RFC 9449): `writ_sdk::dpop::check`

const HTU: &str = "https://writ.fuzz/oauth2/token";

fn expected(now: u64, access_token: Option<&str>) -> Expected<'_> {
    Expected {
        method: "POST",
        uri: HTU,
        now,
        access_token,
    }
}

fn now() -> u64 {
    u64::try_from(common::now()).unwrap()
}

fn dpop_key() -> &'static common::SigningKey {
    static K: OnceLock<common::SigningKey> = OnceLock::new();
    K.get_or_init(|| common::SigningKey::generate(common::Alg::Es256))
}

/// Headers that look like DPoP headers: `typ`, `alg` and a `jwk` of some kind.
fn dpop_header() -> impl Strategy<Value = Value> {
    let b64 = "[A-Za-z0-9_-]{0,64}";
    let jwk = object_with(
        &["kty", "crv", "x", "y", "n", "e", "d", "alg", "use"],
        prop_oneof![
            prop::sample::select(vec![
                "EC", "OKP", "RSA", "oct", "P-256", "P-384", "Ed25519", "AQAB"
            ])
            .prop_map(Value::from),
            b64.prop_map(Value::from),
        ]
        .boxed(),
    );
    let real_jwk = Just(dpop_key().jwk());
    let plausible = prop_oneof![
        Just(Value::from("dpop+jwt")),
        prop::sample::select(vec![
            "ES256", "ES384", "EdDSA", "RS256", "PS256", "HS256", "none"
        ])
        .prop_map(Value::from),
        jwk,
        real_jwk,
    ]
    .boxed();
    prop_oneof![4 => object_with(&["typ", "alg", "jwk"], plausible), 1 => json_value()]
}

/// Claims of a proof: each member usually present and plausible, so the
/// later checks (`iat`, `ath`, `jti`) are reached, sometimes anything.
fn dpop_claims() -> impl Strategy<Value = Value> {
    fn member(plausible: BoxedStrategy<Value>) -> impl Strategy<Value = Option<Value>> {
        prop_oneof![6 => plausible.prop_map(Some), 1 => Just(None), 1 => json_value().prop_map(Some)]
    }
    let htm = prop_oneof![4 => Just(Value::from("POST")), 1 => "[A-Z]{0,6}".prop_map(Value::from)]
        .boxed();
    let htu = prop_oneof![
        2 => Just(Value::from(HTU)),
        1 => Just(Value::from(format!("{HTU}?x=1#y"))),
        1 => ".{0,32}".prop_map(Value::from),
    ]
    .boxed();
    let iat = prop_oneof![
        2 => (0u64..=130).prop_map(|back| Value::from(now().saturating_sub(back) + 65)),
        1 => any::<u64>().prop_map(Value::from),
        1 => (u64::MAX - 100..=u64::MAX).prop_map(Value::from),
        1 => any::<f64>().prop_map(Value::from),
    ]
    .boxed();
    let ath = prop_oneof![
        2 => Just(Value::from(dpop::access_token_hash("tok"))),
        1 => "[A-Za-z0-9_-]{0,43}".prop_map(Value::from),
    ]
    .boxed();
    let jti = prop_oneof![".{0,16}", ".{250,260}"]
        .prop_map(Value::from)
        .boxed();
    (
        member(htm),
        member(htu),
        member(iat),
        member(ath),
        member(jti),
    )
        .prop_map(|(htm, htu, iat, ath, jti)| {
            let mut m = Map::new();
            for (k, v) in [
                ("htm", htm),
                ("htu", htu),
                ("iat", iat),
                ("ath", ath),
                ("jti", jti),
            ] {
                if let Some(v) = v {
                    m.insert(k.to_owned(), v);
                }
            }
            Value::Object(m)
        })
}

/// What `check` must answer for a validly signed proof with these claims.
fn dpop_oracle(claims: &Value, expected: &Expected<'_>) -> Result<(), DpopError> {
    let text = |k: &str| claims.get(k).and_then(Value::as_str);
    if text("htm") != Some(expected.method) {
        return Err(DpopError::Method);
    }
    if text("htu").map(|u| u.split(['?', '#']).next().unwrap_or(u)) != Some(expected.uri) {
        return Err(DpopError::Uri);
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or(DpopError::Time)?;
    let (iat, now) = (u128::from(iat), u128::from(expected.now));
    if iat + u128::from(dpop::MAX_AGE_SECS) < now || iat > now + u128::from(dpop::MAX_SKEW_SECS) {
        return Err(DpopError::Time);
    }
    if let Some(token) = expected.access_token
        && text("ath") != Some(dpop::access_token_hash(token).as_str())
    {
        return Err(DpopError::AccessTokenHash);
    }
    match text("jti") {
        Some(j) if !j.is_empty() && j.len() <= 256 => Ok(()),
        _ => Err(DpopError::Malformed),
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_strings_are_not_proofs(proof in text()) {
        prop_assert!(dpop::check(&proof, &expected(now(), None)).is_err());
    }

    #[test]
    fn arbitrary_headers_and_claims_are_not_proofs(
        header in dpop_header(),
        claims in json_value(),
        sig in "[A-Za-z0-9_-]{0,128}",
    ) {
        prop_assert!(dpop::check(&compact(&header, &claims, &sig), &expected(now(), None)).is_err());
    }

    #[test]
    fn signed_proofs_with_arbitrary_claims_get_the_right_answer(
        claims in dpop_claims(),
        token in proptest::option::of(Just("tok")),
    ) {
        // The proof is self-signed: whoever sends it picks every claim, and
        // only the checks after the signature stand.
        let key = dpop_key();
        let proof = key.sign_with_header(
            &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.jwk()}),
            &claims,
        );
        let exp = expected(now(), token);
        let got = dpop::check(&proof, &exp).map(|_| ());
        prop_assert_eq!(got, dpop_oracle(&claims, &exp));
    }

    #[test]
    fn proofs_from_the_sdk_key_are_accepted(
        method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE"]),
        path in "/[a-z0-9/._~-]{0,32}",
        query in "(\\?[a-z0-9=&]{0,16})?(#[a-z]{0,8})?",
        token in proptest::option::of("[A-Za-z0-9._-]{1,64}"),
    ) {
        let key = DpopKey::generate().unwrap();
        let uri = format!("https://rs.fuzz{path}");
        let proof = key.proof(method, &format!("{uri}{query}"), token.as_deref()).unwrap();
        let exp = Expected { method, uri: &uri, now: now(), access_token: token.as_deref() };
        let checked = dpop::check(&proof, &exp).unwrap();
        prop_assert_eq!(checked.jkt.as_str(), key.thumbprint());
    }
}

// ---------------------------------------------------------------------------
// Client certificates: `writ::attest::mtls::identity`

fn cert_key() -> &'static rcgen::KeyPair {
    static K: OnceLock<rcgen::KeyPair> = OnceLock::new();
    K.get_or_init(|| rcgen::KeyPair::generate().unwrap())
}

fn cert(sans: Vec<rcgen::SanType>) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = sans;
    params.self_signed(cert_key()).unwrap().der().to_vec()
}

fn uri_san(s: &str) -> Option<rcgen::SanType> {
    s.try_into().ok().map(rcgen::SanType::URI)
}

/// The SPIFFE ID rules `identity` enforces (X.509-SVID).
fn is_spiffe_id(uri: &str) -> bool {
    let Some(rest) = uri.strip_prefix("spiffe://") else {
        return false;
    };
    let (domain, path) = rest.split_once('/').unwrap_or((rest, ""));
    !domain.is_empty()
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
        && !path.is_empty()
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        })
}

/// URIs around the SPIFFE grammar: near misses are the interesting ones.
fn uri() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,64}",
        "spiffe://[a-z0-9._A-Z-]{0,12}(/[a-zA-Z0-9._ ?#%-]{0,8}){0,4}/?",
        "(spiffe|https|SPIFFE)://[a-z0-9.-]{1,12}/(\\.|\\.\\.|[a-z]{1,4})(/[a-z0-9]{0,4}){0,3}",
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_bytes_are_not_certificates(der in bytes()) {
        prop_assert!(identity(&der).is_err());
    }

    #[test]
    fn damaged_certificates_never_panic(
        uri in uri(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let Some(san) = uri_san(&uri) else { return Ok(()) };
        let mut der = cert(vec![san]);
        for (at, b) in edits {
            let i = at.index(der.len());
            der[i] = b;
        }
        if let Some(cut) = cut {
            der.truncate(cut.index(der.len()));
        }
        if let Ok(id) = identity(&der) {
            prop_assert!(is_spiffe_id(&id.spiffe_id), "{}", id.spiffe_id);
        }
    }

    #[test]
    fn a_uri_san_is_a_spiffe_id_or_refused(uri in uri()) {
        let Some(san) = uri_san(&uri) else { return Ok(()) };
        let der = cert(vec![san]);
        match identity(&der) {
            Ok(id) => {
                prop_assert!(is_spiffe_id(&uri), "accepted {uri:?}");
                prop_assert_eq!(id.spiffe_id, uri);
                prop_assert_eq!(id.cert_sha256.len(), 64);
            }
            Err(e) => {
                prop_assert!(!is_spiffe_id(&uri), "refused {uri:?}: {e}");
                prop_assert_eq!(e, CertIdentityError::NotSpiffe);
            }
        }
    }

    #[test]
    fn anything_but_exactly_one_uri_san_is_refused(uris in prop::collection::vec(uri(), 0..4), dns in proptest::option::of("[a-z]{1,8}\\.example")) {
        let mut sans: Vec<rcgen::SanType> = uris.iter().filter_map(|u| uri_san(u)).collect();
        if let Some(d) = dns {
            sans.push(rcgen::SanType::DnsName(d.try_into().unwrap()));
        }
        prop_assume!(sans.len() != 1);
        prop_assert_eq!(identity(&cert(sans)), Err(CertIdentityError::NotExactlyOneSpiffeId));
    }
}

// ---------------------------------------------------------------------------
// Kill-switch admin input: `RevokeRequest::parse`, `Selector::from_json`

const SELECTOR_KINDS: [&str; 7] = [
    "jti",
    "subject",
    "subject_prefix",
    "audience",
    "issuer",
    "actor",
    "all",
];

fn selector() -> impl Strategy<Value = Selector> {
    (
        prop::sample::select(SELECTOR_KINDS.to_vec()),
        "[^\\p{Cc}]{1,64}",
    )
        .prop_map(|(kind, v)| Selector::from_parts(kind, Some(&v)).unwrap())
}

/// RFC 3339-looking times, valid and not.
fn time_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?(Z|z|[+-][0-9]{2}:[0-9]{2})?",
        "(19[7-9][0-9]|2[0-9]{3}|9999)-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z",
        "[0-9T:.Z+ -]{0,40}",
    ]
}

fn revoke_body() -> impl Strategy<Value = Value> {
    let plausible = prop_oneof![
        json_value().prop_map(|v| json!({"subject": v})),
        selector().prop_map(|s| s.to_json()),
        Just(json!({"all": true})),
        any::<bool>().prop_map(Value::from),
        time_text().prop_map(Value::from),
        ".{0,32}".prop_map(Value::from),
        "a{1020,1030}".prop_map(Value::from),
    ]
    .boxed();
    prop_oneof![
        4 => object_with(&["selector", "reason", "block", "until"], plausible),
        1 => json_value(),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_admin_bodies_are_refused_with_a_reason(body in bytes(), now in any::<u64>()) {
        if let Err(why) = RevokeRequest::parse(&body, now) {
            prop_assert!(!why.is_empty());
        }
    }

    #[test]
    fn json_admin_bodies_are_checked(body in revoke_body(), now in prop_oneof![any::<u64>(), Just(1_700_000_000u64)]) {
        match RevokeRequest::parse(body.to_string().as_bytes(), now) {
            Ok(r) => {
                prop_assert!(r.reason.len() <= MAX_VALUE_BYTES);
                if let Some(until) = r.until {
                    prop_assert!(r.block && until > now);
                }
                prop_assert_eq!(Selector::from_json(&body["selector"]), Ok(r.selector));
            }
            Err(why) => prop_assert!(!why.to_string().is_empty()),
        }
    }

    #[test]
    fn arbitrary_selectors_are_refused_or_round_trip(v in prop_oneof![json_value(), revoke_body().prop_map(|b| b["selector"].clone())]) {
        match Selector::from_json(&v) {
            Ok(s) => prop_assert_eq!(Selector::from_json(&s.to_json()), Ok(s)),
            Err(why) => prop_assert!(!why.to_string().is_empty()),
        }
    }

    #[test]
    fn valid_requests_are_accepted(selector in selector(), reason in "[^\\p{Cc}]{0,64}", block in any::<bool>(), ahead in 1u64..1_000_000_000) {
        let now = 1_700_000_000;
        let mut body = json!({"selector": selector.to_json(), "reason": reason, "block": block});
        if block {
            body["until"] = Value::from(humantime::format_rfc3339(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(now + ahead),
            ).to_string());
        }
        let r = RevokeRequest::parse(body.to_string().as_bytes(), now).unwrap();
        prop_assert_eq!(r.selector, selector);
        prop_assert_eq!(r.reason, reason);
        prop_assert_eq!(r.block, block);
        prop_assert_eq!(r.until, block.then_some(now + ahead));
    }
}

// ---------------------------------------------------------------------------
// writ.toml: `Config::parse` then `validate`

const VALID_CONFIG: &str = r#"[server]
listen = "127.0.0.1:8443"
issuer = "https://writ.example"
trust_domain = "writ.local"

[tls]
cert = "certs/server.pem"
key = "certs/server-key.pem"

[store]
url = "sqlite://writ.db"

[tokens]
algorithm = "ES256"
default_ttl = "5m"
max_ttl = "15m"
dpop_replay_cache = 100000
max_delegation_depth = 3

[policy]
dir = "policies"
reload_interval = "1s"

[audit]
path = "audit.jsonl"

[admin]
token_sha256 = ["0000000000000000000000000000000000000000000000000000000000000000"]

[limits]
max_concurrent_requests = 4096
max_connections = 10000
header_read_timeout = "30s"
request_timeout = "10s"
handshake_timeout = "10s"

[[issuers]]
name = "k8s"
kind = "kubernetes"
issuer = "https://k8s.example"
jwks_file = "k8s-jwks.json"
audience = "writ"
jwks_refresh = "5m"
"#;

/// Every key of [`VALID_CONFIG`] (and a few more), by line prefix.
const CONFIG_KEYS: [&str; 30] = [
    "listen",
    "issuer",
    "trust_domain",
    "unix_socket",
    "cert",
    "key",
    "client_ca",
    "url",
    "algorithm",
    "default_ttl",
    "max_ttl",
    "dpop_replay_cache",
    "max_delegation_depth",
    "dir",
    "reload_interval",
    "path",
    "token_sha256",
    "principals",
    "max_concurrent_requests",
    "max_connections",
    "header_read_timeout",
    "request_timeout",
    "handshake_timeout",
    "name",
    "kind",
    "jwks_file",
    "jwks_uri",
    "audience",
    "entity_type",
    "subject",
];

/// TOML values of every kind, and text that is not a value at all.
fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        ".{0,24}".prop_map(|s| toml::Value::String(s).to_string()),
        "[0-9]{1,22}(ns|us|ms|s|m|h|d|w|y| years|)".prop_map(|s| format!("{s:?}")),
        "(0\\.0\\.0\\.0|127\\.0\\.0\\.1|\\[::\\]|[a-z]{1,8}):[0-9]{1,6}"
            .prop_map(|s| format!("{s:?}")),
        "(spiffe|https|http|sqlite)://[a-z./:?]{0,16}".prop_map(|s| format!("{s:?}")),
        prop::collection::vec("[0-9a-f]{0,66}", 0..3).prop_map(|v| format!("{v:?}")),
        prop::sample::select(vec![
            "\"ES256\"",
            "\"EdDSA\"",
            "\"oidc\"",
            "\"kubernetes\"",
            "\"Agent\"",
            "\"User\"",
            "[]",
            "{}",
            "\"\""
        ])
        .prop_map(str::to_owned),
        ".{0,16}",
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Set a key (first line starting with it, else appended) to a value.
    Set(&'static str, String),
    /// Delete a line.
    Delete(prop::sample::Index),
    /// Insert a line of text.
    Insert(prop::sample::Index, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => (prop::sample::select(CONFIG_KEYS.to_vec()), toml_value()).prop_map(|(k, v)| Mutation::Set(k, v)),
        2 => any::<prop::sample::Index>().prop_map(Mutation::Delete),
        2 => (any::<prop::sample::Index>(), prop_oneof![
            ".{0,32}",
            Just("[[issuers]]".to_owned()),
            Just("[server]".to_owned()),
            Just("[admin]\nprincipals = [\"spiffe://writ.local/ops\"]".to_owned()),
            Just("jwks_uri = \"https://k8s.example/jwks\"".to_owned()),
            "\\[[a-z]{1,8}\\]",
        ]).prop_map(|(i, l)| Mutation::Insert(i, l)),
    ]
}

fn apply(text: &str, mutations: &[Mutation]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for m in mutations {
        match m {
            Mutation::Set(key, value) => {
                let line = format!("{key} = {value}");
                match lines
                    .iter()
                    .position(|l| l.starts_with(&format!("{key} =")))
                {
                    Some(i) => lines[i] = line,
                    None => lines.push(line),
                }
            }
            Mutation::Delete(at) if !lines.is_empty() => {
                let i = at.index(lines.len());
                lines.remove(i);
            }
            Mutation::Delete(_) => {}
            Mutation::Insert(at, line) => {
                let i = at.index(lines.len() + 1);
                lines.insert(i, line.clone());
            }
        }
    }
    lines.join("\n")
}

/// Parses and validates: an error always says something.
fn check_config(text: &str) -> Result<Config, String> {
    let config = Config::parse(text)?;
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_text_is_not_a_config(text in prop_oneof![text(), bytes().prop_map(|b| String::from_utf8_lossy(&b).into_owned())]) {
        if let Err(why) = check_config(&text) {
            prop_assert!(!why.trim().is_empty());
        }
    }

    #[test]
    fn mutated_configs_are_refused_with_a_message(mutations in prop::collection::vec(mutation(), 1..6)) {
        let text = apply(VALID_CONFIG, &mutations);
        if let Err(why) = check_config(&text) {
            prop_assert!(!why.trim().is_empty());
        }
    }

    #[test]
    fn valid_configs_are_accepted(
        default_ttl in 1u64..=3600,
        extra in 0u64..=3600,
        trust_domain in "[a-z0-9]{1,12}\\.(local|example)",
        depth in any::<u32>(),
    ) {
        let text = apply(VALID_CONFIG, &[
            Mutation::Set("default_ttl", format!("\"{default_ttl}s\"")),
            Mutation::Set("max_ttl", format!("\"{}s\"", default_ttl + extra)),
            Mutation::Set("trust_domain", format!("{trust_domain:?}")),
            Mutation::Set("max_delegation_depth", depth.to_string()),
        ]);
        let config = check_config(&text).unwrap();
        prop_assert_eq!(config.tokens.default_ttl.as_secs(), default_ttl);
        prop_assert_eq!(config.tokens.max_ttl.as_secs(), default_ttl + extra);
        prop_assert_eq!(config.server.trust_domain, trust_domain);
        prop_assert_eq!(config.tokens.max_delegation_depth, depth);
    }
}

#[test]
fn the_valid_config_is_valid() {
    check_config(VALID_CONFIG).unwrap();
}

// ---------------------------------------------------------------------------
// Policies: `PolicySnapshot::load` on a temp dir (Cedar parsing is slow, so
// few cases)

const SCHEMA: &str = include_str!("../policies/schema.cedarschema");
const POLICY: &str = include_str!("../policies/payments.cedar");
const ENTITIES: &str = include_str!("../policies/entities.json");

/// Loads a directory of `schema`, `policy` (as `fuzz.cedar`) and `entities`.
fn load_policies(schema: &str, policy: &str, entities: Option<&str>) -> Result<usize, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("schema.cedarschema"), schema).unwrap();
    std::fs::write(dir.path().join("fuzz.cedar"), policy).unwrap();
    if let Some(e) = entities {
        std::fs::write(dir.path().join("entities.json"), e).unwrap();
    }
    PolicySnapshot::load(dir.path())
        .map(|s| s.policy_count())
        .map_err(|e| e.to_string())
}

/// Byte-level edits of valid text: replace a range with something else.
fn edited(text: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            any::<prop::sample::Index>(),
            0usize..16,
            prop_oneof![".{0,8}", "[(){};,\"@=!&|<>.]{1,4}", Just(String::new())],
        ),
        1..4,
    )
    .prop_map(move |edits| {
        let mut t = text.to_owned();
        for (at, len, with) in edits {
            let mut start = at.index(t.len() + 1);
            while !t.is_char_boundary(start) {
                start -= 1;
            }
            let mut end = (start + len).min(t.len());
            while !t.is_char_boundary(end) {
                end -= 1;
            }
            t.replace_range(start..end, &with);
        }
        t
    })
}

proptest! {
    #![proptest_config(config(32))]

    #[test]
    fn arbitrary_policy_text_loads_or_names_the_file(policy in prop_oneof![
        text(),
        // Cedar-looking tokens in random order.
        prop::collection::vec(prop::sample::select(vec![
            "permit", "forbid", "(", ")", "{", "}", ";", ",", "principal", "action", "resource",
            "when", "unless", "==", "in", "is", "has", "like", "&&", "||", "!", "if", "then", "else",
            "Action::\"mint\"", "Target::\"x\"", "context.scope", "\"s\"", "1", "@id(\"a\")", "[", "]",
            ".contains(", "ip(\"10.0.0.0/8\")", "-", "+", "*",
        ]), 0..64).prop_map(|t| t.join(" ")),
    ]) {
        let result = load_policies(SCHEMA, &policy, Some(ENTITIES));
        if let Err(why) = &result {
            prop_assert!(why.contains("fuzz.cedar"), "{why}");
        }
    }

    #[test]
    fn edited_policies_load_or_name_the_file(policy in edited(POLICY)) {
        if let Err(why) = load_policies(SCHEMA, &policy, Some(ENTITIES)) {
            prop_assert!(why.contains("fuzz.cedar"), "{why}");
        }
    }

    #[test]
    fn edited_schemas_and_entities_never_panic(schema in edited(SCHEMA), entities in edited(ENTITIES)) {
        if let Err(why) = load_policies(&schema, POLICY, Some(&entities)) {
            prop_assert!(!why.is_empty());
        }
    }

    #[test]
    fn deeply_nested_policies_are_refused_not_a_stack_overflow(
        depth in 1usize..600,
        (open, close) in prop::sample::select(vec![
            ("(", ")"), ("!", ""), ("-", ""), ("[", "]"), ("{\"a\": ", "}"),
            ("if true then ", " else 1"), ("((!", "))"),
        ]),
    ) {
        // Found by this property: Cedar recursed until the stack overflowed
        // (an abort, not an error) at about 40 nested parentheses in a debug
        // build; writ now refuses such files first.
        let policy = format!(
            "permit (principal, action, resource) when {{ {}context.hour{} == 1 }};",
            open.repeat(depth),
            close.repeat(depth)
        );
        let result = load_policies(SCHEMA, &policy, Some(ENTITIES));
        let brackets = 1 + depth * open.matches(['(', '[', '{']).count();
        if brackets > 16 || (open.starts_with("if") && depth > 64) {
            let why = result.unwrap_err();
            prop_assert!(why.contains("fuzz.cedar:1"), "{why}");
        }
    }

    #[test]
    fn deeply_nested_schemas_and_entities_are_refused(depth in 1usize..600, record in any::<bool>()) {
        let (open, close) = if record { ("{a: ", "}") } else { ("Set<", ">") };
        let schema = format!("{SCHEMA}\ntype Deep = {}Long{};\n", open.repeat(depth), close.repeat(depth));
        let result = load_policies(&schema, POLICY, Some(ENTITIES));
        if depth > 16 {
            prop_assert!(result.unwrap_err().contains("nest deeper"));
        }
        // JSON nests at most 128 deep (serde_json's limit) before Cedar sees it.
        let deep = format!("{}\"x\"{}", "[".repeat(depth.min(200)), "]".repeat(depth.min(200)));
        let entities = ENTITIES.replacen("\"attrs\": {", &format!("\"attrs\": {{\"deep\": {deep}, "), 1);
        prop_assert!(load_policies(SCHEMA, POLICY, Some(&entities)).is_err());
    }
}

#[test]
fn the_example_policies_load() {
    assert_eq!(load_policies(SCHEMA, POLICY, Some(ENTITIES)), Ok(2));
}
