//! The first step of a grant: who the token is for, and who acts for them.
//! The subject is attested by the evidence its grant kind names (an
//! attestation JWT, a writ token to narrow, or the caller's own certificate
//! or Unix peer); a delegation adds the agent.

use std::sync::Arc;

use super::delegation::Delegation;
use super::request::{Credential, GrantKind, PeerEvidence, Presented, TokenRequest};
use super::rules::{self, chain_of, confirmation_of};
use super::{Context, Refusal, Stop};
use crate::attest::{AttestError, Attested, Peer};
use crate::model::Scopes;
use crate::token::{AccessClaims, Verified};

/// Everyone a grant is about.
pub(super) struct Parties {
    /// The principal the token is for.
    pub subject: Arc<Attested>,
    /// The writ token being narrowed, if any: the new token stays within it.
    pub parent: Option<Verified>,
    /// The agent acting for the subject, if any.
    pub delegation: Option<Delegation>,
}

/// Attests the subject and, for a delegation (or a delegated token being
/// narrowed), the agent acting for it.
pub(super) async fn parties(
    ctx: &Context<'_>,
    request: &TokenRequest,
    peer: &Peer,
) -> Result<Parties, Stop> {
    let (subject, parent) = match &request.kind {
        GrantKind::ClientCredentials(evidence) => (client(ctx, evidence)?, None),
        GrantKind::Exchange(token) => (exchange(ctx, token).await?, None),
        GrantKind::Narrowing(token) => narrowing(ctx, request, peer, token)?,
        GrantKind::Delegation { subject, .. } => match subject {
            Presented::Attestation(token) => (exchange(ctx, token).await?, None),
            Presented::Writ(token) => narrowing(ctx, request, peer, token)?,
        },
    };
    let delegation = match (&request.kind, &parent) {
        (GrantKind::Delegation { actor, .. }, _) => {
            let prior = parent.as_ref().and_then(|p| chain_of(&p.claims));
            let dpop_jkt = request.dpop_jkt();
            Some(Delegation::attest(ctx, peer, dpop_jkt, actor, &subject, prior).await?)
        }
        (_, Some(parent)) => Delegation::inherited(&parent.claims)?,
        (_, None) => None,
    };
    Ok(Parties {
        subject,
        parent,
        delegation,
    })
}

/// Verifies an attestation JWT from any configured issuer, counting failures.
pub(super) async fn attest_jwt(
    ctx: &Context<'_>,
    token: &str,
) -> Result<Arc<Attested>, AttestError> {
    let attested = ctx.attest.attest_jwt(token).await;
    if let Err(e) = &attested {
        ctx.metrics.attestation_failure(e.reason());
    }
    attested
}

async fn exchange(ctx: &Context<'_>, token: &Credential) -> Result<Arc<Attested>, Refusal> {
    Ok(attest_jwt(ctx, token.as_str()).await?)
}

/// The caller as its own evidence (client credentials).
fn client(ctx: &Context<'_>, evidence: &PeerEvidence) -> Result<Arc<Attested>, Refusal> {
    match evidence {
        PeerEvidence::Certificate(identity) => ctx.attest.attest_certificate(identity),
        PeerEvidence::Unix(unix) => ctx.attest.attest_unix(unix),
    }
    .map(Arc::new)
    .map_err(|e| Refusal::InvalidClient(e.to_string()))
}

/// A writ token presented to be narrowed: same audience, a subset of its
/// scopes, no longer than it has left. Returns the subject and that ceiling.
fn narrowing(
    ctx: &Context<'_>,
    request: &TokenRequest,
    peer: &Peer,
    token: &Credential,
) -> Result<(Arc<Attested>, Option<Verified>), Stop> {
    let verified = ctx.verifier.verify(token.as_str()).map_err(Refusal::from)?;
    let claims = &verified.claims;
    // A bound token is narrowed only by its holder: the same certificate,
    // or a DPoP proof (already verified for this request) by the same key.
    if !rules::held(confirmation_of(claims), peer, request.dpop_jkt()) {
        return Err(Refusal::InvalidGrant(
            "subject_token is bound to a key this request does not prove".into(),
        )
        .into());
    }
    if let Some(entry) = rules::revoked(ctx, &verified) {
        return Err(Stop::revoked(&entry, subject_revoked(&entry.id)));
    }
    if claims.aud != request.audience.as_str() {
        return Err(Refusal::InvalidTarget(
            "audience must be the subject token's own audience".into(),
        )
        .into());
    }
    let own = Scopes::parse(&claims.scope)
        .map_err(|_| Refusal::InvalidGrant("subject_token scope is malformed".into()))?;
    if !request.scopes.is_subset_of(&own) {
        return Err(Refusal::InvalidScope("scope is wider than the subject token's".into()).into());
    }
    let attested = writ_token_principal(ctx, claims)?;
    Ok((Arc::new(attested), Some(verified)))
}

/// The refusal for a subject token the kill switch revoked.
pub(super) fn subject_revoked(entry: &str) -> Refusal {
    Refusal::InvalidGrant(format!(
        "subject_token was revoked by the kill switch (entry {entry})"
    ))
}

/// The principal a verified writ token speaks for, attested by the token
/// itself (`attestation: writ`).
pub(super) fn writ_token_principal(
    ctx: &Context<'_>,
    claims: &AccessClaims,
) -> Result<Attested, Refusal> {
    ctx.attest
        .attest_writ(claims)
        .map_err(|e| Refusal::InvalidGrant(format!("a writ token as evidence: {e}")))
}
