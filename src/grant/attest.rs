//! The first step of a grant: who the token is for, and who acts for them.
//! The subject is attested by the evidence its grant kind names (an
//! attestation JWT, a writ token to narrow, or the caller's own certificate
//! or Unix peer); a delegation adds the agent.

use std::sync::Arc;

use super::delegation::Delegation;
use super::request::{Credential, GrantKind, PeerEvidence, Presented, TokenRequest};
use super::rules::{self, chain_of, confirmation_of};
use super::transaction::{self, TxnParties};
use super::{Context, Refusal, Stop};
use crate::attest::dpop::{ProofReplayError, ReplayError};
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
    /// For a transaction token: the token it replaces and the call chain.
    pub txn: Option<TxnParties>,
}

/// Attests the subject and, for a delegation (or a delegated token being
/// narrowed), the agent acting for it.
pub(super) async fn parties(
    ctx: &Context<'_>,
    request: &TokenRequest,
    peer: &Peer,
) -> Result<Parties, Stop> {
    let (subject, parent) = match &request.kind {
        GrantKind::Transaction(txn) => return transaction::parties(ctx, request, peer, txn).await,
        GrantKind::IdJag(assertion) => return id_jag(ctx, request, assertion).await,
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
        txn: None,
    })
}

/// An enterprise IdP's ID-JAG: the user it asserts is the subject, the
/// client it was issued to the agent acting for them. The grant's own limits
/// (`scope`, `resource`) bound the request; its `jti` is accepted once, at
/// every replica.
async fn id_jag(
    ctx: &Context<'_>,
    request: &TokenRequest,
    assertion: &Credential,
) -> Result<Parties, Stop> {
    let grant = ctx
        .attest
        .attest_id_jag(assertion.as_str())
        .await
        .map_err(|e| {
            ctx.metrics.attestation_failure(e.reason());
            Refusal::InvalidGrant(format!("assertion: {e}"))
        })?;
    if let Some(resource) = &grant.resource
        && resource != request.audience.as_str()
    {
        return Err(Refusal::InvalidTarget("the assertion names another resource".into()).into());
    }
    if let Some(scope) = &grant.scope {
        let allowed = Scopes::parse(scope)
            .map_err(|_| Refusal::InvalidGrant("assertion scope is malformed".into()))?;
        if !request.scopes.is_subset_of(&allowed) {
            return Err(
                Refusal::InvalidScope("scope is wider than the assertion grants".into()).into(),
            );
        }
    }
    let now = ctx.clock.unix_now();
    ctx.dpop_replay
        .remember_assertion(&grant.issuer, &grant.jti, grant.expires_at, now)
        .await
        .map_err(|e| match e {
            ProofReplayError::Replay(ReplayError::Replay) => {
                Refusal::InvalidGrant("assertion was already used (jti replayed)".into())
            }
            e => Refusal::from(e),
        })?;
    let delegation = Delegation::asserted(grant.client.clone(), &grant.issuer);
    Ok(Parties {
        subject: grant.user,
        parent: None,
        delegation: Some(delegation),
        txn: None,
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
