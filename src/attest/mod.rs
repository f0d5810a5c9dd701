//! Attestation: turning evidence a caller presents into an [`Attested`]
//! principal, or a typed [`AttestError`].
//!
//! Each kind of evidence is one file behind the [`Attestor`] trait
//! (`kubernetes`, `oidc`, `mtls`, `unix`, `writ`); [`Registry`] is the
//! catalog that builds every kind from the configuration in one place, so a
//! new kind is a file plus a line there (and its name in the schema).
//! JWT-based kinds share the signature and claim checks in `jwt` and the
//! key handling in `jwks`; each attestor only maps verified evidence to a
//! principal.

pub mod dpop;
pub mod id_jag;
mod jwks;
mod jwt;
mod kubernetes;
pub mod mtls;
mod oidc;
mod peer;
pub mod unix;
mod writ;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::clock::Clock;
use crate::config::{Config, IssuerKind};
use crate::model::{AttestationKind, EntityType, Principal};

pub use jwks::KeySource;
pub use jwt::{JwtVerifier, LEEWAY_SECS, MAX_TOKEN_BYTES};
pub use peer::Peer;

/// An attribute value Cedar can see on a principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrValue {
    /// A Cedar String.
    String(String),
    /// A Cedar Long.
    Long(i64),
}

/// A principal whose evidence has been verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    /// The principal id (`sub` of minted tokens).
    pub principal: Principal,
    /// Its Cedar entity type.
    pub entity_type: EntityType,
    /// How it proved itself.
    pub kind: AttestationKind,
    /// Candidate attributes; the policy layer keeps those the schema declares.
    pub attributes: BTreeMap<String, AttrValue>,
    /// When the evidence stops being valid (seconds since the epoch).
    pub expires_at: u64,
}

impl Attested {
    /// Who vouched for the evidence: the JWT's `iss`, the client CA's name,
    /// `unix`, or for a writ token the issuer of the attestation it was
    /// minted from. The kill switch's `issuer` selector matches it; every
    /// attestor sets it (Cedar sees it as the `issuer` attribute).
    pub fn issuer(&self) -> Option<&str> {
        match self.attributes.get("issuer") {
            Some(AttrValue::String(issuer)) => Some(issuer),
            _ => None,
        }
    }
}

/// Evidence handed to an [`Attestor`] after transport-level checks.
#[derive(Debug)]
#[non_exhaustive]
pub enum Evidence<'a> {
    /// Claims of a JWT whose signature, issuer, audience and times were verified.
    VerifiedJwt {
        /// The `iss` claim.
        issuer: &'a str,
        /// All claims.
        claims: &'a Map<String, Value>,
        /// The `exp` claim.
        expires_at: u64,
    },
    /// A client certificate the TLS handshake verified against `tls.client_ca`.
    ClientCertificate(&'a mtls::CertIdentity),
    /// A caller on the Unix socket, as the kernel and `/proc` describe it.
    UnixPeer(&'a unix::UnixPeer),
    /// A writ access token whose signature, lifetime, binding and
    /// revocation were checked.
    WritToken(&'a writ_proto::AccessClaims),
    /// A writ transaction token whose signature, lifetime and revocation
    /// were checked: it speaks for its subject as an access token does.
    TxnToken(&'a writ_proto::txn::TxnClaims),
}

impl<'a> Evidence<'a> {
    /// The issuer, claims and `exp` of a verified JWT; any other evidence is
    /// malformed for a JWT attestor.
    pub fn verified_jwt(&self) -> Result<(&'a str, &'a Map<String, Value>, u64), AttestError> {
        match self {
            Self::VerifiedJwt {
                issuer,
                claims,
                expires_at,
            } => Ok((issuer, claims, *expires_at)),
            _ => Err(AttestError::Malformed),
        }
    }
}

/// Judges one kind of evidence.
pub trait Attestor: Send + Sync {
    /// The kind this attestor judges.
    fn kind(&self) -> AttestationKind;
    /// Maps verified evidence to a principal, or says why it cannot.
    fn attest(&self, evidence: &Evidence<'_>) -> Result<Attested, AttestError>;
}

/// Why evidence was not accepted. Every variant is `invalid_grant` to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// The token is longer than [`MAX_TOKEN_BYTES`].
    #[error("token exceeds {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    /// Not a compact JWS with JSON header and claims.
    #[error("token is not a well-formed JWT")]
    Malformed,
    /// `alg` is not one writ accepts (never `none` or HMAC).
    #[error("signing algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// No configured issuer has this `iss`.
    #[error("issuer is not trusted")]
    UnknownIssuer,
    /// No key with this `kid` (after a refetch where allowed).
    #[error("signing key is unknown")]
    UnknownKey,
    /// The issuer's keys could not be loaded; writ fails closed.
    #[error("issuer keys are unavailable")]
    KeysUnavailable,
    /// The signature does not verify.
    #[error("signature is invalid")]
    BadSignature,
    /// `aud` does not name this broker.
    #[error("audience does not match")]
    WrongAudience,
    /// `exp` has passed (beyond leeway).
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future (beyond leeway).
    #[error("token is not yet valid")]
    NotYetValid,
    /// `iat` is in the future (beyond leeway).
    #[error("token was issued in the future")]
    IssuedInFuture,
    /// A required claim is absent.
    #[error("claim {0} is missing")]
    MissingClaim(&'static str),
    /// A claim has the wrong type or form.
    #[error("claim {0} is invalid")]
    InvalidClaim(&'static str),
    /// A Unix-socket peer exited or ran another program since it connected.
    #[error("the Unix peer is no longer the process that connected, or runs another program")]
    PeerChanged,
    /// A client certificate names an identity writ does not let a
    /// certificate prove: outside `server.trust_domain`, or a Unix principal.
    #[error("{0}")]
    ForeignIdentity(String),
    /// The JWT's `typ` says it is for another use (an ID-JAG presented as a
    /// subject token, or any other token presented as an ID-JAG).
    #[error("token type (typ) is not accepted here: {0}")]
    WrongType(&'static str),
}

impl AttestError {
    /// A short label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Malformed => "malformed",
            Self::AlgorithmNotAllowed => "algorithm",
            Self::UnknownIssuer => "unknown_issuer",
            Self::UnknownKey => "unknown_key",
            Self::KeysUnavailable => "keys_unavailable",
            Self::BadSignature => "signature",
            Self::WrongAudience => "audience",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::MissingClaim(_) => "missing_claim",
            Self::InvalidClaim(_) => "invalid_claim",
            Self::ForeignIdentity(_) => "foreign_identity",
            Self::PeerChanged => "peer_changed",
            Self::WrongType(_) => "wrong_type",
        }
    }
}

/// Why the registry could not be built from configuration.
#[derive(Debug, thiserror::Error)]
#[error("issuer {issuer}: {message}")]
pub struct RegistryError {
    issuer: String,
    message: String,
}

struct Issuer {
    verifier: JwtVerifier,
    attestor: Box<dyn Attestor>,
}

/// A verdict in the cache, valid while its issuer's keys keep their generation.
#[derive(Clone)]
struct Cached {
    attested: Arc<Attested>,
    issuer: Arc<str>,
    generation: u64,
}

/// The catalog of every attestation kind writ accepts, built once from
/// the configuration: the JWT issuers (found by `iss`, with a cache of
/// verified tokens so a busy workload is not re-verified on every call),
/// client certificates and Unix peers in `server.trust_domain`, and writ's
/// own tokens presented again.
pub struct Registry {
    issuers: HashMap<String, Issuer>,
    /// Enterprise IdPs trusted for ID-JAGs, by `iss`: apart from `issuers`,
    /// so an ID-JAG is never a subject token nor an ID token an ID-JAG.
    id_jag: HashMap<String, JwtVerifier>,
    verified: moka::sync::Cache<[u8; 32], Cached>,
    clock: Arc<dyn Clock>,
    trust_domain: String,
    unix: unix::UnixAttestor,
    writ: writ::WritAttestor,
}

impl Registry {
    /// Builds every kind of the configuration and loads each JWT issuer's
    /// keys once. A `jwks_uri` that cannot be fetched now is retried later
    /// (its tokens are refused meanwhile); a `jwks_file` that cannot be read
    /// stops startup.
    pub async fn from_config(
        config: &Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, RegistryError> {
        let mut issuers = HashMap::new();
        let mut id_jag = HashMap::new();
        for ic in &config.issuers {
            let err = |message: String| RegistryError {
                issuer: ic.name.clone(),
                message,
            };
            let keys = KeySource::from_config(ic).await.map_err(err)?;
            let attestor: Box<dyn Attestor> = match ic.kind {
                IssuerKind::Kubernetes => Box::new(kubernetes::KubernetesAttestor::new(ic)),
                IssuerKind::Oidc => Box::new(oidc::OidcAttestor::new(ic).map_err(err)?),
                IssuerKind::IdJag => {
                    let verifier = JwtVerifier::new(&ic.issuer, &ic.audience, keys, clock.clone());
                    id_jag.insert(ic.issuer.clone(), verifier);
                    continue;
                }
            };
            let verifier = JwtVerifier::new(&ic.issuer, &ic.audience, keys, clock.clone());
            issuers.insert(ic.issuer.clone(), Issuer { verifier, attestor });
        }
        Ok(Self {
            issuers,
            id_jag,
            verified: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(3_600))
                .build(),
            clock,
            trust_domain: config.server.trust_domain.clone(),
            unix: unix::UnixAttestor::new(&config.server.trust_domain),
            writ: writ::WritAttestor::new(config.server.issuer.clone().unwrap_or_default()),
        })
    }

    /// Names this broker's issuer once it is known (it may come from the
    /// bound address): the attestation issuer of its own tokens that carry
    /// none.
    pub fn for_broker(mut self, issuer: &str) -> Self {
        self.writ = writ::WritAttestor::new(issuer);
        self
    }

    /// Whether a client certificate's identity may be a principal here: a
    /// SPIFFE ID in `server.trust_domain`, never a Unix one.
    pub fn check_certificate(&self, id: &mtls::CertIdentity) -> Result<(), AttestError> {
        mtls::MtlsAttestor::new(&self.trust_domain).check(id)
    }

    /// The principal a client certificate proves.
    pub fn attest_certificate(&self, id: &mtls::CertIdentity) -> Result<Attested, AttestError> {
        mtls::MtlsAttestor::new(&self.trust_domain).attest(&Evidence::ClientCertificate(id))
    }

    /// The principal a Unix-socket caller proves, re-checked now.
    pub fn attest_unix(&self, connection: &unix::UnixConnection) -> Result<Attested, AttestError> {
        let peer = connection.current()?;
        self.unix.attest(&Evidence::UnixPeer(peer))
    }

    /// The principal of a verified writ token presented again.
    pub fn attest_writ(&self, claims: &writ_proto::AccessClaims) -> Result<Attested, AttestError> {
        self.writ.attest(&Evidence::WritToken(claims))
    }

    /// The principal a verified writ transaction token speaks for.
    pub fn attest_txn(&self, claims: &writ_proto::txn::TxnClaims) -> Result<Attested, AttestError> {
        self.writ.attest(&Evidence::TxnToken(claims))
    }

    /// Verifies a JWT from any configured issuer and maps it to a principal.
    pub async fn attest_jwt(&self, token: &str) -> Result<Arc<Attested>, AttestError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AttestError::TooLarge);
        }
        let digest = crate::digest::sha256(token.as_bytes());
        if let Some(hit) = self.verified.get(&digest) {
            let keys_unchanged = self
                .issuers
                .get(&*hit.issuer)
                .is_some_and(|i| i.verifier.keys().generation() == hit.generation);
            if keys_unchanged && self.clock.unix_now() < hit.attested.expires_at {
                return Ok(hit.attested);
            }
            self.verified.invalidate(&digest);
        }
        let unverified = jwt::Unverified::parse(token)?;
        if unverified.typ() == Some(id_jag::TYP) {
            return Err(AttestError::WrongType(
                "an ID-JAG is a jwt-bearer grant's assertion, not a subject or actor token",
            ));
        }
        let (iss, issuer) = self
            .issuers
            .get_key_value(unverified.issuer()?)
            .ok_or(AttestError::UnknownIssuer)?;
        // Read before verifying: a key withdrawn meanwhile makes this entry stale.
        let generation = issuer.verifier.keys().generation();
        let verified = issuer.verifier.verify(token, &unverified).await?;
        let attested = Arc::new(issuer.attestor.attest(&Evidence::VerifiedJwt {
            issuer: &verified.issuer,
            claims: &verified.claims,
            expires_at: verified.expires_at,
        })?);
        self.verified.insert(
            digest,
            Cached {
                attested: attested.clone(),
                issuer: Arc::from(iss.as_str()),
                generation,
            },
        );
        Ok(attested)
    }

    /// Verifies an ID-JAG from a configured enterprise IdP: the user it
    /// asserts and the client (agent) it was issued to. Its `jti` is the
    /// caller's to remember against replay.
    pub async fn attest_id_jag(&self, token: &str) -> Result<id_jag::IdJagGrant, AttestError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AttestError::TooLarge);
        }
        let unverified = jwt::Unverified::parse(token)?;
        if unverified.typ() != Some(id_jag::TYP) {
            return Err(AttestError::WrongType(
                "an ID-JAG's typ is oauth-id-jag+jwt",
            ));
        }
        let verifier = self
            .id_jag
            .get(unverified.issuer()?)
            .ok_or(AttestError::UnknownIssuer)?;
        let verified = verifier.verify(token, &unverified).await?;
        id_jag::grant(&verified, self.clock.unix_now())
    }

    /// Number of configured issuers.
    pub fn len(&self) -> usize {
        self.issuers.len() + self.id_jag.len()
    }

    /// Whether no issuer is configured.
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty() && self.id_jag.is_empty()
    }

    /// Refreshes every `jwks_uri` in the background, off the hot path.
    pub fn spawn_refresh(self: &Arc<Self>) {
        for issuer in self.issuers.values() {
            issuer.verifier.keys().spawn_refresh();
        }
        for verifier in self.id_jag.values() {
            verifier.keys().spawn_refresh();
        }
    }
}

/// A claim that must be a string.
fn str_claim<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, AttestError> {
    match claims.get(name) {
        None => Err(AttestError::MissingClaim(name)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(AttestError::InvalidClaim(name)),
    }
}
