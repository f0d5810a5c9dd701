//! Signing on the hot path: the header is encoded once per key, the claims
//! once per token, and ring signs the bytes directly.

use std::sync::Arc;

use super::{AccessClaims, ActorChain, Confirmation, KeyRing, Signer, SigningError};
use crate::model::{AttestationKind, EntityType, Principal, Scopes, TargetId, Ttl};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use writ_proto::txn::TxnClaims;

/// What a new token says.
#[derive(Debug)]
pub struct MintRequest<'a> {
    /// `sub`.
    pub subject: &'a Principal,
    /// The subject's Cedar type.
    pub principal_type: EntityType,
    /// How the subject attested.
    pub attestation: AttestationKind,
    /// The `iss` of that attestation.
    pub attestation_issuer: Option<&'a str>,
    /// `aud`.
    pub audience: &'a TargetId,
    /// Granted scopes.
    pub scopes: &'a Scopes,
    /// Lifetime, already capped.
    pub ttl: Ttl,
    /// `iat`, from writ's clock.
    pub now: u64,
    /// RFC 8693 actor chain, newest outermost.
    pub act: Option<ActorChain>,
    /// Key confirmation.
    pub cnf: Option<Confirmation>,
    /// The `jti`s of the tokens it derives from, nearest first.
    pub ancestry: Vec<String>,
}

/// A signed token and the facts audit records need.
#[derive(Clone)]
pub struct Minted {
    /// The compact JWS.
    pub token: String,
    /// Its `jti`.
    pub jti: String,
    /// Its `iat`.
    pub iat: u64,
    /// Its `exp`.
    pub exp: u64,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a bearer secret.
        f.debug_struct("Minted")
            .field("jti", &self.jti)
            .field("iat", &self.iat)
            .field("exp", &self.exp)
            .finish_non_exhaustive()
    }
}

/// Signs access tokens with the key the ring says signs at the token's
/// `iat` (one atomic load of the ring's snapshot; no database).
pub struct Minter {
    keys: Arc<KeyRing>,
    issuer: String,
    rng: SystemRandom,
}

impl Minter {
    /// A minter for `issuer` signing with the keys of `keys`.
    pub fn new(keys: Arc<KeyRing>, issuer: impl Into<String>) -> Self {
        Self {
            keys,
            issuer: issuer.into(),
            rng: SystemRandom::new(),
        }
    }

    /// The `iss` of minted tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Mints one token.
    pub fn mint(&self, req: MintRequest<'_>) -> Result<Minted, SigningError> {
        let jti = self.random_id()?;
        let exp = req.now.saturating_add(req.ttl.as_secs());
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: req.subject.as_str().to_owned(),
            aud: req.audience.as_str().to_owned(),
            client_id: client_id(req.subject, req.act.as_ref()),
            scope: req.scopes.to_string(),
            iat: req.now,
            nbf: req.now,
            exp,
            jti: jti.clone(),
            attestation: Some(req.attestation),
            principal_type: Some(req.principal_type),
            attestation_issuer: req.attestation_issuer.map(str::to_owned),
            act: req.act,
            ancestry: req.ancestry,
            cnf: req.cnf,
        };
        let payload = serde_json::to_vec(&claims).map_err(|_| SigningError)?;
        let token = self.sign(&payload, req.now, Signer::header_b64)?;
        Ok(Minted {
            token,
            jti,
            iat: req.now,
            exp,
        })
    }

    /// Mints one transaction token.
    pub fn mint_txn(&self, req: TxnMintRequest) -> Result<Minted, SigningError> {
        // One draw of randomness for both ids: it is a system call.
        let mut ids = [0u8; 32];
        self.rng.fill(&mut ids).map_err(|_| SigningError)?;
        let jti = URL_SAFE_NO_PAD.encode(&ids[..16]);
        let txn = match req.txn {
            Some(txn) => txn,
            None => URL_SAFE_NO_PAD.encode(&ids[16..]),
        };
        let exp = req.now.saturating_add(req.ttl.as_secs());
        let claims = TxnClaims {
            iss: self.issuer.clone(),
            iat: req.now,
            exp,
            aud: req.trust_domain.to_owned(),
            txn,
            sub: req.subject.as_str().to_owned(),
            purp: req.purposes.to_string(),
            jti: jti.clone(),
            rctx: req.rctx,
            tctx: req.tctx,
            attestation: Some(req.attestation),
            principal_type: Some(req.principal_type),
            attestation_issuer: req.attestation_issuer.map(str::to_owned),
            act: req.act,
            ancestry: req.ancestry,
        };
        let payload = serde_json::to_vec(&claims).map_err(|_| SigningError)?;
        let token = self.sign(&payload, req.now, Signer::txn_header_b64)?;
        Ok(Minted {
            token,
            jti,
            iat: req.now,
            exp,
        })
    }

    fn random_id(&self) -> Result<String, SigningError> {
        let mut id = [0u8; 16];
        self.rng.fill(&mut id).map_err(|_| SigningError)?;
        Ok(URL_SAFE_NO_PAD.encode(id))
    }

    /// Signs `payload` under the header `header` picks from the key that
    /// signs at `now`.
    fn sign(
        &self,
        payload: &[u8],
        now: u64,
        header: fn(&Signer) -> &str,
    ) -> Result<String, SigningError> {
        let snapshot = self.keys.snapshot();
        let signer = snapshot.signer_at(now).ok_or(SigningError)?;
        let header_b64 = header(signer);
        let mut token = String::with_capacity(header_b64.len() + payload.len() * 4 / 3 + 100);
        token.push_str(header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let signature = signer.key().sign(token.as_bytes())?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }
}

/// What a new transaction token says (CONTRACT section 9).
#[derive(Debug)]
pub struct TxnMintRequest<'a> {
    /// `sub`.
    pub subject: &'a Principal,
    /// The subject's Cedar type.
    pub principal_type: EntityType,
    /// How the subject attested.
    pub attestation: AttestationKind,
    /// The `iss` of that attestation.
    pub attestation_issuer: Option<&'a str>,
    /// `aud`: the trust domain.
    pub trust_domain: &'a str,
    /// `purp`: the purposes granted.
    pub purposes: &'a Scopes,
    /// Lifetime, already capped.
    pub ttl: Ttl,
    /// `iat`.
    pub now: u64,
    /// The call chain's id, when replacing; a new one otherwise.
    pub txn: Option<String>,
    /// `rctx`, with `req_wl`.
    pub rctx: serde_json::Map<String, serde_json::Value>,
    /// `tctx`.
    pub tctx: Option<serde_json::Map<String, serde_json::Value>>,
    /// The agents acting for the subject, when it began from a delegated token.
    pub act: Option<ActorChain>,
    /// The `jti`s of the tokens it derives from, nearest first.
    pub ancestry: Vec<String>,
}

/// `client_id` is the acting party: the newest actor when delegated.
fn client_id(subject: &Principal, act: Option<&ActorChain>) -> String {
    act.map_or(subject.as_str(), |a| a.sub.as_str()).to_owned()
}
