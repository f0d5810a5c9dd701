//! What a grant answers: [`Granted`] or [`Refused`], each carrying what the
//! grant [`Learned`] on the way, from which the server builds the request's
//! audit record in one place.

use std::collections::BTreeMap;

use super::Refusal;
use crate::attest::AttrValue;
use crate::model::{AttestationKind, EntityType, Principal, Scopes, TargetId, Ttl};
use crate::token::Minted;

/// The answer to one token request.
pub type Outcome = Result<Granted, Refused>;

/// What a request revealed before it was answered: every fact the audit
/// record keeps, each known from the step that established it on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Learned {
    /// The target asked for, once `audience` parsed.
    pub target: Option<TargetId>,
    /// The scopes asked for, once `scope` parsed.
    pub scopes_requested: Option<Scopes>,
    /// The attested principal, once it and every party acting for it
    /// checked out.
    pub principal: Option<Principal>,
    /// How the principal attested (with `principal`).
    pub attestation: Option<AttestationKind>,
    /// Its Cedar entity type (with `principal`).
    pub principal_type: Option<EntityType>,
    /// The attributes attestation gave it (with `principal`).
    pub principal_attrs: BTreeMap<String, AttrValue>,
    /// The attested agent acting for it, when delegated (with `principal`).
    pub actor: Option<std::sync::Arc<crate::attest::Attested>>,
    /// The context Cedar was asked in, once the request reached the decision.
    pub context: Option<DecidedContext>,
    /// `context.transaction`, for a transaction token request.
    pub transaction: Option<DecidedTransaction>,
    /// The agents acting for it, newest first (with `principal`).
    pub actors: Vec<String>,
    /// The policies that determined Cedar's decision, once it decided.
    pub policies: Vec<String>,
    /// The scopes Cedar granted, once it granted any.
    pub scopes_granted: Option<Scopes>,
    /// The kill-switch entry that refused the request.
    pub revocation: Option<String>,
    /// The approval the grant waits for or redeemed.
    pub approval: Option<String>,
    /// A rate-limit refusal that is not audited: only the first per key
    /// and second is.
    pub unaudited: bool,
}

/// The request-specific part of Cedar's context that the audit record
/// keeps besides time and address (CONTRACT section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecidedContext {
    /// `requested_ttl`, in seconds.
    pub requested_ttl: u64,
    /// `sender_constrained`.
    pub sender_constrained: bool,
    /// `delegation_depth`.
    pub delegation_depth: u32,
}

/// `context.transaction` of a transaction token request, for the audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecidedTransaction {
    /// The workload asking.
    pub requester: String,
    /// The call chain's length.
    pub chain: u32,
}

impl Learned {
    /// A refusal with what was learned so far.
    pub fn refused(&self, refusal: Refusal) -> Refused {
        Refused {
            refusal,
            learned: Box::new(self.clone()),
        }
    }
}

/// How the client must present the minted token (RFC 9449 section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    /// A plain bearer token (RFC 6750), or one bound to a client certificate.
    Bearer,
    /// A token bound to the request's DPoP key.
    Dpop,
    /// Not an access token (a transaction token): RFC 8693 section 2.2.1's
    /// `N_A`.
    NotApplicable,
}

impl TokenType {
    /// The `token_type` of the token response.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "Bearer",
            Self::Dpop => "DPoP",
            Self::NotApplicable => "N_A",
        }
    }
}

/// A minted token and what it grants.
#[derive(Debug, Clone)]
pub struct Granted {
    /// The signed token, its `jti` and times.
    pub minted: Minted,
    /// The scopes it grants (a subset of those asked for).
    pub scopes: Scopes,
    /// Its lifetime, after every cap.
    pub ttl: Ttl,
    /// How it must be presented.
    pub token_type: TokenType,
    /// What the grant learned.
    pub learned: Learned,
}

/// A refusal and what the grant had learned when it refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The RFC 6749 error.
    pub refusal: Refusal,
    /// What the grant learned before refusing (boxed: a refusal stays small
    /// on the way back through every step).
    pub learned: Box<Learned>,
}

impl From<Refusal> for Refused {
    /// A refusal before anything about the request was learned.
    fn from(refusal: Refusal) -> Self {
        Self {
            refusal,
            learned: Box::default(),
        }
    }
}
