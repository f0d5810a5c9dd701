//! The rules the grant applies but does not own: the key-binding rule, the
//! kill switch's matcher and the shape of a writ token's `act` and `cnf`,
//! all writ-proto's (the SDK applies the same). Each is read here in one
//! small function, so the grant meets them in this file alone.

use std::sync::Arc;

use super::Context;
use super::attest::Parties;
use super::request::TokenRequest;
use crate::attest::{Attested, Peer};
use crate::model::{Principal, TargetId};
use crate::revoke::{Entry, MintFacts};
use crate::token::{AccessClaims, ActorChain, Confirmation, Verified};

/// A writ token's delegation chain (`act`), newest actor outermost.
pub(super) fn chain_of(claims: &AccessClaims) -> Option<&ActorChain> {
    claims.act.as_ref()
}

/// A writ token's key binding (`cnf`).
pub(super) fn confirmation_of(claims: &AccessClaims) -> Option<&Confirmation> {
    claims.cnf.as_ref()
}

/// The binding of a token to the DPoP key `jkt` (RFC 9449 section 6).
pub(super) fn dpop_confirmation(jkt: &str) -> Confirmation {
    Confirmation::dpop(jkt)
}

/// Every agent in an `act` chain, newest first.
pub(super) fn actors_in(act: Option<&ActorChain>) -> Vec<String> {
    act.iter()
        .flat_map(|a| a.actors())
        .map(str::to_owned)
        .collect()
}

/// Whether the caller holds a token bound by `cnf`: the same client
/// certificate, or a DPoP proof (already checked for this request) by the
/// same key. The token came in the form, so no scheme applies.
pub(super) fn held(cnf: Option<&Confirmation>, peer: &Peer, jkt: Option<&str>) -> bool {
    peer.holds(cnf, None, || jkt.map(str::to_owned))
}

/// The kill-switch entry that revokes a writ token presented to the grant.
pub(super) fn revoked(ctx: &Context<'_>, token: &Verified) -> Option<Arc<Entry>> {
    ctx.revocations.revokes(&token.claims, &token.kid)
}

/// The `iss` of the attestation a principal was proven by.
pub(super) fn attestation_issuer(attested: &Attested) -> Option<&str> {
    attested.issuer()
}

/// Who a token about to be minted names: what the kill switch checks of it,
/// and what the mint writes.
pub(super) struct Minting<'a> {
    /// `sub`.
    pub subject: &'a Principal,
    /// `aud`.
    pub audience: &'a TargetId,
    /// The `iss` of the subject's attestation.
    pub attestation_issuer: Option<&'a str>,
    /// The `act` chain it will carry.
    pub act: Option<&'a ActorChain>,
    /// Every agent in it, newest first.
    pub actors: &'a [String],
}

impl<'a> Minting<'a> {
    /// The token `request` asks for, about `parties`.
    pub(super) fn of(request: &'a TokenRequest, parties: &'a Parties) -> Self {
        let delegation = parties.delegation.as_ref();
        Self {
            subject: &parties.subject.principal,
            audience: &request.audience,
            attestation_issuer: attestation_issuer(&parties.subject),
            act: delegation.map(|d| &d.act),
            actors: delegation.map_or(&[], |d| d.actors.as_slice()),
        }
    }
}

/// The live entry that blocks minting this token at `now`, if any.
pub(super) fn blocked(ctx: &Context<'_>, minting: &Minting<'_>, now: u64) -> Option<Arc<Entry>> {
    let actors: Vec<&str> = minting.actors.iter().map(String::as_str).collect();
    let actor_issuers: Vec<&str> = minting
        .act
        .map(|act| act.issuers().collect())
        .unwrap_or_default();
    let facts = MintFacts {
        subject: minting.subject.as_str(),
        audience: minting.audience.as_str(),
        attestation_issuer: minting.attestation_issuer,
        actors: &actors,
        actor_issuers: &actor_issuers,
    };
    ctx.revocations.blocked(&facts, now)
}
