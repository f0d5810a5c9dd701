//! Lifetime and binding of a token about to be minted: what it is bound to
//! (`cnf`), what it derives from (`ancestry`), and how long it may live.

use super::attest::Parties;
use super::delegation::Delegation;
use super::request::{GrantKind, PeerEvidence, TokenRequest};
use super::rules::{confirmation_of, dpop_confirmation};
use super::{Refusal, Settings};
use crate::model::Ttl;
use crate::token::{AccessClaims, Confirmation, MAX_ANCESTRY};

/// The key the new token is bound to, if any. A proof of possession on this
/// request binds it to the proof's key (RFC 9449); a narrowed token keeps
/// its parent's binding (proven by this request); a delegated one the
/// binding of the agent's own token; a token minted over mTLS for the
/// caller itself is bound to its certificate (RFC 8705).
pub(super) fn binding(request: &TokenRequest, parties: &Parties) -> Option<Confirmation> {
    request
        .dpop_jkt()
        .map(dpop_confirmation)
        .or_else(|| {
            parties
                .parent
                .as_ref()
                .and_then(|p| confirmation_of(&p.claims))
                .cloned()
        })
        .or_else(|| {
            parties
                .delegation
                .as_ref()
                .and_then(|d| d.actor_cnf.clone())
        })
        .or_else(|| match &request.kind {
            GrantKind::ClientCredentials(PeerEvidence::Certificate(identity)) => {
                Some(identity.confirmation())
            }
            _ => None,
        })
}

/// The `jti`s a new token derives from: the token it narrows and the agent's
/// own writ token, each with its own ancestry. A `jti` entry for any of them
/// then reaches the new token too.
pub(super) fn ancestry(
    parent: Option<&AccessClaims>,
    delegation: Option<&Delegation>,
) -> Result<Vec<String>, Refusal> {
    let mut ancestry: Vec<String> = Vec::new();
    let lineages = parent.into_iter().flat_map(AccessClaims::lineage).chain(
        delegation
            .into_iter()
            .flat_map(|d| d.lineage.iter().map(String::as_str)),
    );
    for jti in lineages {
        // A token the subject and the agent both derive from is listed once.
        if !ancestry.iter().any(|a| a == jti) {
            ancestry.push(jti.to_owned());
        }
    }
    if ancestry.len() > MAX_ANCESTRY {
        return Err(Refusal::InvalidGrant(format!(
            "subject_token derives from more than {MAX_ANCESTRY} tokens; ask for a fresh one"
        )));
    }
    Ok(ancestry)
}

/// The lifetime of the new token: what was asked, capped by
/// `tokens.max_ttl`, by the policy's cap, by what the narrowed token has
/// left, and by what the agent's own credential has left. Nothing left is
/// `invalid_grant`.
pub(super) fn lifetime(
    requested: Ttl,
    settings: &Settings<'_>,
    policy_cap: Option<u64>,
    parties: &Parties,
    now: u64,
) -> Result<Ttl, Refusal> {
    let longest = match &parties.txn {
        Some(_) => settings.txn_ttl,
        None => settings.max_ttl,
    };
    let mut ttl = requested.as_secs().min(longest.as_secs());
    if let Some(previous) = parties.txn.as_ref().and_then(|t| t.previous.as_ref()) {
        ttl = ttl.min(previous.claims.exp.saturating_sub(now));
    }
    if let Some(cap) = policy_cap {
        ttl = ttl.min(cap);
    }
    if let Some(parent) = &parties.parent {
        ttl = ttl.min(parent.claims.exp.saturating_sub(now));
    }
    // Nor may a delegated token outlive the agent's own credential.
    if let Some(d) = &parties.delegation {
        ttl = ttl.min(d.actor.expires_at.saturating_sub(now));
    }
    Ttl::from_secs(ttl)
        .map_err(|_| Refusal::InvalidGrant("subject_token has no lifetime left".into()))
}
