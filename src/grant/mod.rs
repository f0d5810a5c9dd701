//! The grant: one token request, from its form to a minted token or a
//! refusal, as plain functions over typed input.
//!
//! [`TokenRequest::parse`] reads the request (pure: every parse refusal is a
//! unit test); [`run`] then takes it through the pipeline, each step one
//! function of what the steps before it established, nothing calling back:
//!
//! ```text
//! parse ─▶ attest ─▶ rate limits ─▶ kill switch ─▶ decide ─▶ lifetime and binding ─▶ mint ─▶ kill switch
//! ```
//!
//! - `request`: the form, peer and headers read into a [`TokenRequest`]
//!   whose [`GrantKind`] is an exchange, a narrowing, a delegation or client
//!   credentials;
//! - `attest`: the subject, by its grant kind, and (`delegation`) the agent
//!   acting for it;
//! - `pipeline`: the driver, the kill switch (checked before deciding and
//!   again after signing, so a block acknowledged meanwhile still wins),
//!   Cedar's decision and the mint;
//! - `limits`: the per-principal and per-target rate limits (GCRA);
//! - `lifetime`: the binding (`cnf`), the ancestry and the capped TTL;
//! - `transaction`: transaction tokens: the subject, the call chain and
//!   the context a transaction token carries;
//! - `approve`: a grant a permit makes wait for a person: the pending
//!   answer, and the retry that redeems the approval;
//! - `rules`: the rules the grant applies but does not own (key binding,
//!   the kill switch's matcher, the shape of `act` and `cnf`), each read in
//!   one function.
//!
//! The answer is an [`Outcome`]: [`Granted`] or [`Refused`], each carrying
//! what the grant [`Learned`], from which the server builds the audit record
//! in one place. The server only extracts, calls [`grant`] and renders; the
//! benches call the same functions. [`Refusal`] lives here so that the
//! grant and the server share it without importing each other.

mod approve;
mod attest;
mod delegation;
mod form;
mod lifetime;
mod limits;
mod outcome;
mod pipeline;
mod refusal;
mod request;
mod rules;
mod transaction;

use std::time::Duration;

pub use form::{Form, MAX_RESOURCES};
pub use limits::{Limit, Limited, MAX_KEYS, RateLimits};
pub use outcome::{
    DecidedContext, DecidedTransaction, Granted, Learned, Outcome, Refused, TokenType,
};
pub use pipeline::{grant, run};
pub use refusal::Refusal;
pub use request::{
    CLIENT_CREDENTIALS, Credential, GrantKind, JWT_BEARER, MAX_RESOURCE_LEN, MAX_TXN_CONTEXT_BYTES,
    PeerEvidence, Presented, TOKEN_EXCHANGE, TYPE_ACCESS_TOKEN, TYPE_ID_TOKEN, TYPE_JWT,
    TYPE_TXN_TOKEN, TargetParameter, TokenRequest, TxnRequest, TxnSubject, check_resource,
    dpop_proof,
};
pub use transaction::MAX_CALL_CHAIN;

use crate::attest::Registry;
use crate::attest::dpop::ProofReplay;
use crate::audit::Metrics;
use crate::clock::Clock;
use crate::config::Config;
use crate::policy::PolicyEngine;
use crate::revoke::{Entry, Freshness, RevocationIndex};
use crate::token::{Minter, TokenVerifier};

/// The configuration a grant reads.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// This broker's `iss` (and the base of the token endpoint's URL).
    pub issuer: &'a str,
    /// `tokens.default_ttl`: the lifetime asked for when none is.
    pub default_ttl: Duration,
    /// `tokens.max_ttl`: the longest lifetime minted.
    pub max_ttl: Duration,
    /// `tokens.max_delegation_depth`: the longest `act` chain minted.
    pub max_delegation_depth: u32,
    /// `server.trust_domain`: the audience of transaction tokens.
    pub trust_domain: &'a str,
    /// `tokens.txn_ttl`: the longest transaction token minted.
    pub txn_ttl: Duration,
    /// `approvals.ttl`: how long an approval waits, and then how long it
    /// may be redeemed.
    pub approval_ttl: Duration,
}

impl<'a> Settings<'a> {
    /// The settings of `config` for a broker whose `iss` is `issuer`.
    pub fn new(issuer: &'a str, config: &'a Config) -> Self {
        Self {
            issuer,
            default_ttl: config.tokens.default_ttl,
            max_ttl: config.tokens.max_ttl,
            max_delegation_depth: config.tokens.max_delegation_depth,
            trust_domain: &config.server.trust_domain,
            // No token lives longer than tokens.max_ttl, transaction tokens included.
            txn_ttl: config.tokens.txn_ttl.min(config.tokens.max_ttl),
            approval_ttl: config.approvals.ttl,
        }
    }
}

/// What a grant reads and uses: the broker's parts, borrowed for one request.
pub struct Context<'a> {
    /// The configuration.
    pub settings: Settings<'a>,
    /// Attestation issuers.
    pub attest: &'a Registry,
    /// Checks writ tokens presented to be narrowed or as an agent's own.
    pub verifier: &'a TokenVerifier,
    /// The kill switch's hot-path index.
    pub revocations: &'a RevocationIndex,
    /// How old that index is: past `store.max_staleness`, nothing is minted.
    pub freshness: &'a Freshness,
    /// Cedar.
    pub policy: &'a PolicyEngine,
    /// Signs new tokens.
    pub minter: &'a Minter,
    /// DPoP proofs seen inside the acceptance window.
    pub dpop_replay: &'a ProofReplay,
    /// Time: the kill switch is checked again at the moment of signing.
    pub clock: &'a dyn Clock,
    /// Counts attestation failures and rate-limited requests.
    pub metrics: &'a Metrics,
    /// Grants waiting for a person's approval.
    pub approvals: &'a dyn crate::approval::ApprovalLog,
    /// `limits.per_principal` and `limits.per_target`.
    pub limits: &'a RateLimits,
}

/// Why a step stopped the pipeline: the refusal, and the kill-switch entry
/// behind it, if one was.
struct Stop {
    refusal: Refusal,
    revocation: Option<String>,
}

impl Stop {
    /// A refusal because of the kill-switch `entry`.
    fn revoked(entry: &Entry, refusal: Refusal) -> Self {
        Self {
            refusal,
            revocation: Some(entry.id.clone()),
        }
    }
}

impl From<Refusal> for Stop {
    fn from(refusal: Refusal) -> Self {
        Self {
            refusal,
            revocation: None,
        }
    }
}

impl Learned {
    /// A stop with what was learned so far.
    fn stopped(&self, stop: impl Into<Stop>) -> Refused {
        let Stop {
            refusal,
            revocation,
        } = stop.into();
        let mut refused = self.refused(refusal);
        if revocation.is_some() {
            refused.learned.revocation = revocation;
        }
        refused
    }
}
