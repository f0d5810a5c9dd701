//! Attestation issuers the tests play: a Kubernetes cluster and a CI system,
//! each with its own signing key, publishing a JWKS, signing tokens for workloads.
//! Forged tokens (alg none, HS256 with the public key) are made here too.

use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{
    self, EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair as _, RsaKeyPair,
};
use serde_json::{Value, json};

use super::http::b64url;
use super::time::now;

/// The JWS algorithms writ accepts for attestation tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    Es256,
    Es384,
    EdDsa,
    Rs256,
    Ps256,
}

impl Alg {
    /// The JOSE name (`alg` header and JWK `alg`).
    pub fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::EdDsa => "EdDSA",
            Alg::Rs256 => "RS256",
            Alg::Ps256 => "PS256",
        }
    }
}

enum Pair {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

/// A private signing key with its `kid`.
pub struct SigningKey {
    pub alg: Alg,
    pub kid: String,
    pair: Pair,
}

impl SigningKey {
    /// A new random key. RSA keys come from the `openssl` CLI (ring cannot make them).
    pub fn generate(alg: Alg) -> Self {
        let rng = SystemRandom::new();
        let pair = match alg {
            Alg::Es256 => Pair::Ecdsa(ecdsa(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)),
            Alg::Es384 => Pair::Ecdsa(ecdsa(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, &rng)),
            Alg::EdDsa => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("generate Ed25519 key");
                Pair::Ed25519(
                    Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse Ed25519 key"),
                )
            }
            Alg::Rs256 | Alg::Ps256 => {
                Pair::Rsa(RsaKeyPair::from_pkcs8(&openssl_rsa_pkcs8()).expect("parse RSA key"))
            }
        };
        let kid = format!("{}-{}", alg.name().to_lowercase(), random_hex(6));
        Self { alg, kid, pair }
    }

    /// An RFC 9449 proof by this key for `htm htu`, issued now, with `jti`
    /// and, when presenting an access token, its hash `ath`.
    pub fn dpop_proof(&self, htm: &str, htu: &str, jti: &str, ath: Option<&str>) -> String {
        let mut claims =
            serde_json::json!({"htm": htm, "htu": htu, "iat": super::now(), "jti": jti});
        if let Some(ath) = ath {
            claims["ath"] = Value::from(ath);
        }
        self.sign_with_header(
            &serde_json::json!({"typ": "dpop+jwt", "alg": self.alg.name(), "jwk": self.jwk()}),
            &claims,
        )
    }

    /// The P-256 key in `pkcs8` (DER) under `kid`: e.g. one read out of a
    /// stolen store.
    pub fn es256_from_pkcs8(pkcs8: &[u8], kid: &str) -> Self {
        let pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &SystemRandom::new(),
        )
        .expect("parse a P-256 PKCS#8 key");
        Self {
            alg: Alg::Es256,
            kid: kid.to_string(),
            pair: Pair::Ecdsa(pair),
        }
    }

    /// The public key as a JWK (RFC 7517), with `kid`, `alg` and `use`.
    pub fn jwk(&self) -> Value {
        let mut jwk = match &self.pair {
            Pair::Ecdsa(pair) => {
                // Uncompressed point: 0x04 || x || y.
                let point = pair.public_key().as_ref();
                let half = (point.len() - 1) / 2;
                let crv = if self.alg == Alg::Es256 {
                    "P-256"
                } else {
                    "P-384"
                };
                json!({
                    "kty": "EC",
                    "crv": crv,
                    "x": b64url(&point[1..=half]),
                    "y": b64url(&point[1 + half..]),
                })
            }
            Pair::Ed25519(pair) => json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": b64url(pair.public_key().as_ref()),
            }),
            Pair::Rsa(pair) => {
                let components = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
                json!({"kty": "RSA", "n": b64url(&components.n), "e": b64url(&components.e)})
            }
        };
        jwk["kid"] = json!(self.kid);
        jwk["alg"] = json!(self.alg.name());
        jwk["use"] = json!("sig");
        jwk
    }

    /// The public key as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo), the bytes a
    /// confused verifier would use as an HMAC secret.
    pub fn public_key_pem(&self) -> String {
        let (algorithm_identifier, public_key): (&[u8], &[u8]) = match &self.pair {
            Pair::Ecdsa(pair) if self.alg == Alg::Es256 => {
                (P256_SPKI_ALGORITHM, pair.public_key().as_ref())
            }
            Pair::Ecdsa(pair) => (P384_SPKI_ALGORITHM, pair.public_key().as_ref()),
            Pair::Ed25519(pair) => (ED25519_SPKI_ALGORITHM, pair.public_key().as_ref()),
            // ring's RSA public key is already the RSAPublicKey DER.
            Pair::Rsa(pair) => (RSA_SPKI_ALGORITHM, pair.public_key().as_ref()),
        };
        let mut key_bits = vec![0x00];
        key_bits.extend_from_slice(public_key);
        let bit_string = der(0x03, &key_bits);
        let spki = der_sequence(&[algorithm_identifier, bit_string.as_slice()].concat());
        let body = STANDARD.encode(spki);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|chunk| std::str::from_utf8(chunk).expect("base64 is ASCII"))
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    /// The header an honest issuer puts on its tokens.
    pub fn header(&self) -> Value {
        json!({"alg": self.alg.name(), "typ": "JWT", "kid": self.kid})
    }

    /// A compact JWS of `claims` under this key's usual header.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(&self.header(), claims)
    }

    /// A compact JWS with any header, signed by this key (e.g. another key's `kid`).
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let signature = self.signature(input.as_bytes());
        format!("{input}.{}", b64url(&signature))
    }

    /// `alg: none` with this key's `kid` and an empty signature.
    pub fn forge_alg_none(&self, claims: &Value) -> String {
        let header = json!({"alg": "none", "typ": "JWT", "kid": self.kid});
        format!("{}.", signing_input(&header, claims))
    }

    /// HS256 with this key's `kid`, the HMAC secret being the public key PEM:
    /// the classic algorithm-confusion forgery.
    pub fn forge_hs256_with_public_key(&self, claims: &Value) -> String {
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": self.kid});
        let input = signing_input(&header, claims);
        let secret =
            ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.public_key_pem().as_bytes());
        let tag = ring::hmac::sign(&secret, input.as_bytes());
        format!("{input}.{}", b64url(tag.as_ref()))
    }

    fn signature(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.pair {
            Pair::Ecdsa(pair) => pair
                .sign(&rng, message)
                .expect("ECDSA sign")
                .as_ref()
                .to_vec(),
            Pair::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
            Pair::Rsa(pair) => {
                let padding: &'static dyn signature::RsaEncoding = if self.alg == Alg::Ps256 {
                    &signature::RSA_PSS_SHA256
                } else {
                    &signature::RSA_PKCS1_SHA256
                };
                let mut output = vec![0; pair.public().modulus_len()];
                pair.sign(padding, &rng, message, &mut output)
                    .expect("RSA sign");
                output
            }
        }
    }
}

/// An attestation issuer writ trusts (one `[[issuers]]` entry) and the key it signs with.
pub struct Issuer {
    /// `name` in writ.toml; the JWKS file is `<name>-jwks.json`.
    pub name: String,
    /// "kubernetes" or "oidc".
    pub kind: &'static str,
    /// The `iss` of its tokens.
    pub iss: String,
    /// The `aud` writ expects in its tokens.
    pub audience: String,
    /// Kubernetes only: the SPIFFE trust domain of its principals.
    pub trust_domain: Option<String>,
    /// OIDC only: "Workload" or "Agent".
    pub entity_type: Option<String>,
    /// OIDC only: the subject template.
    pub subject: Option<String>,
    /// When set, writ fetches the JWKS from this URL (trusting the test CA) instead of the file.
    pub jwks_uri: Option<String>,
    /// With `jwks_uri`: how often writ refetches it in the background (`jwks_refresh`).
    pub jwks_refresh: Option<String>,
    pub key: SigningKey,
}

impl Issuer {
    /// A Kubernetes cluster at `https://k8s.test`, trust domain `cluster.local`.
    pub fn kubernetes(alg: Alg) -> Self {
        Self {
            name: "k8s".to_string(),
            kind: "kubernetes",
            iss: "https://k8s.test".to_string(),
            audience: "writ".to_string(),
            trust_domain: Some("cluster.local".to_string()),
            entity_type: None,
            subject: None,
            jwks_uri: None,
            jwks_refresh: None,
            key: SigningKey::generate(alg),
        }
    }

    /// A CI system at `https://ci.test` whose jobs are `Workload`s named
    /// `repo:{repository}:ref:{ref}`.
    pub fn ci(alg: Alg) -> Self {
        Self {
            name: "ci".to_string(),
            kind: "oidc",
            iss: "https://ci.test".to_string(),
            audience: "writ".to_string(),
            trust_domain: None,
            entity_type: Some("Workload".to_string()),
            subject: Some("repo:{repository}:ref:{ref}".to_string()),
            jwks_uri: None,
            jwks_refresh: None,
            key: SigningKey::generate(alg),
        }
    }

    /// An OIDC identity provider at `iss` whose subjects are `entity_type`
    /// principals named by their `sub`.
    pub fn oidc(name: &str, iss: &str, entity_type: &str) -> Self {
        Self {
            name: name.to_string(),
            kind: "oidc",
            iss: iss.to_string(),
            audience: "writ".to_string(),
            trust_domain: None,
            entity_type: Some(entity_type.to_string()),
            subject: None,
            jwks_uri: None,
            jwks_refresh: None,
            key: SigningKey::generate(Alg::Es256),
        }
    }

    /// An OIDC token naming `sub`, valid for `lifetime` seconds from now
    /// (negative: already expired).
    pub fn oidc_token(&self, sub: &str, lifetime: i64) -> String {
        let now = now();
        self.sign(&json!({
            "iss": self.iss,
            "aud": self.audience,
            "sub": sub,
            "iat": now.min(now + lifetime),
            "nbf": now.min(now + lifetime),
            "exp": now + lifetime,
        }))
    }

    pub fn jwks_file_name(&self) -> String {
        format!("{}-jwks.json", self.name)
    }

    /// The JWKS this issuer publishes: its one public key.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.key.jwk()]})
    }

    /// Claims of a projected service-account token for `namespace/service_account`,
    /// valid for ten minutes from now.
    pub fn service_account_claims(&self, namespace: &str, service_account: &str) -> Value {
        let now = now();
        json!({
            "iss": self.iss,
            "aud": [self.audience],
            "sub": format!("system:serviceaccount:{namespace}:{service_account}"),
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {
                    "name": service_account,
                    "uid": service_account_uid(namespace, service_account),
                },
                "pod": {
                    "name": pod_name(service_account),
                    "uid": format!("pod-uid-{namespace}-{service_account}"),
                },
            },
        })
    }

    /// Claims of a CI job's OIDC token for `repository` at `git_ref`, valid for
    /// ten minutes. `environment` and `actor` are extra string claims.
    pub fn ci_job_claims(&self, repository: &str, git_ref: &str) -> Value {
        let now = now();
        json!({
            "iss": self.iss,
            "aud": self.audience,
            "sub": format!("repo:{repository}:ref:{git_ref}"),
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "repository": repository,
            "ref": git_ref,
            "environment": "production",
            "actor": "octocat",
        })
    }

    /// `claims` signed with this issuer's key.
    pub fn sign(&self, claims: &Value) -> String {
        self.key.sign(claims)
    }

    /// This issuer's `[[issuers]]` entry in writ.toml.
    pub fn toml(&self, jwks_ca: &str) -> String {
        let mut lines = vec![
            "[[issuers]]".to_string(),
            format!("name = {}", quote(&self.name)),
            format!("kind = {}", quote(self.kind)),
            format!("issuer = {}", quote(&self.iss)),
        ];
        match &self.jwks_uri {
            Some(uri) => {
                lines.push(format!("jwks_uri = {}", quote(uri)));
                lines.push(format!("jwks_ca = {}", quote(jwks_ca)));
            }
            None => lines.push(format!("jwks_file = {}", quote(&self.jwks_file_name()))),
        }
        lines.push(format!("audience = {}", quote(&self.audience)));
        for (key, value) in [
            ("trust_domain", &self.trust_domain),
            ("entity_type", &self.entity_type),
            ("subject", &self.subject),
            ("jwks_refresh", &self.jwks_refresh),
        ] {
            if let Some(value) = value {
                lines.push(format!("{key} = {}", quote(value)));
            }
        }
        lines.join("\n") + "\n"
    }
}

/// The service-account uid the `k8s` issuer puts in tokens for `namespace/service_account`.
pub fn service_account_uid(namespace: &str, service_account: &str) -> String {
    format!("sa-uid-{namespace}-{service_account}")
}

/// The pod name the `k8s` issuer puts in tokens for `service_account`.
pub fn pod_name(service_account: &str) -> String {
    format!("{service_account}-7d9f8c-x2x4q")
}

/// A TOML basic string (JSON string escaping is valid TOML).
pub(crate) fn quote(value: &str) -> String {
    serde_json::to_string(value).expect("strings serialize")
}

pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buffer)
        .expect("system randomness");
    hex::encode(buffer)
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

fn ecdsa(algorithm: &'static EcdsaSigningAlgorithm, rng: &SystemRandom) -> EcdsaKeyPair {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(algorithm, rng).expect("generate ECDSA key");
    EcdsaKeyPair::from_pkcs8(algorithm, pkcs8.as_ref(), rng).expect("parse ECDSA key")
}

/// A fresh 2048-bit RSA key as PKCS#8 DER, from `openssl genpkey`.
fn openssl_rsa_pkcs8() -> Vec<u8> {
    let output = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run `openssl genpkey` (is openssl installed?)");
    assert!(
        output.status.success(),
        "openssl genpkey failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let pem = String::from_utf8(output.stdout).expect("PEM is UTF-8");
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    STANDARD.decode(body).expect("PEM body is base64")
}

/// AlgorithmIdentifier of an EC P-256 key (id-ecPublicKey, prime256v1).
const P256_SPKI_ALGORITHM: &[u8] = &[
    0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
    0xce, 0x3d, 0x03, 0x01, 0x07,
];
/// AlgorithmIdentifier of an EC P-384 key (id-ecPublicKey, secp384r1).
const P384_SPKI_ALGORITHM: &[u8] = &[
    0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04,
    0x00, 0x22,
];
/// AlgorithmIdentifier of an Ed25519 key.
const ED25519_SPKI_ALGORITHM: &[u8] = &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];
/// AlgorithmIdentifier of an RSA key (rsaEncryption, NULL).
const RSA_SPKI_ALGORITHM: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

/// A DER TLV with a definite length.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let length = content.len();
    let mut out = vec![tag];
    if length < 0x80 {
        out.push(u8::try_from(length).expect("short length"));
    } else if length <= 0xff {
        out.extend([0x81, u8::try_from(length).expect("one-byte length")]);
    } else {
        let [high, low] = u16::try_from(length)
            .expect("two-byte length")
            .to_be_bytes();
        out.extend([0x82, high, low]);
    }
    out.extend_from_slice(content);
    out
}

fn der_sequence(content: &[u8]) -> Vec<u8> {
    der(0x30, content)
}
