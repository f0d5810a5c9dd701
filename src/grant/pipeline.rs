//! The pipeline, step after step: each step is a function of what the steps
//! before it established, and [`run`] notes what each one taught it in a
//! [`Learned`] it owns, so a refusal at any step carries exactly what the
//! audit record should say.

use axum::http::HeaderMap;

use super::attest::{self, Parties};
use super::rules::{self, Minting};
use super::{
    Context, DecidedContext, DecidedTransaction, Form, GrantKind, Granted, Learned, Limit, Limited,
    Outcome, Refusal, Stop, TokenRequest, TokenType, approve, lifetime, transaction,
};
use crate::approval::Ask;
use crate::attest::Peer;
use crate::model::Scopes;
use crate::policy::{Decision, DecisionRequest, PolicyError, Transaction};
use crate::revoke::Entry;
use crate::token::{MintRequest, TxnMintRequest};

/// Answers one token request: parses `form` (with the connection's `peer`
/// and the request `headers`) at `now`, then [`run`]s it.
pub async fn grant(
    ctx: &Context<'_>,
    form: &Form,
    peer: &Peer,
    headers: &HeaderMap,
    now: u64,
) -> Outcome {
    let request = TokenRequest::parse(form, peer, headers, &ctx.settings, now)?;
    run(ctx, &request, peer, now).await
}

/// Takes a parsed request through the pipeline: attest, kill switch,
/// decide, lifetime and binding, mint.
pub async fn run(ctx: &Context<'_>, request: &TokenRequest, peer: &Peer, now: u64) -> Outcome {
    let mut learned = Learned {
        target: Some(request.audience.clone()),
        scopes_requested: Some(request.scopes.clone()),
        ..Learned::default()
    };
    let parties = attest::parties(ctx, request, peer)
        .await
        .map_err(|stop| learned.stopped(stop))?;
    // The principal is known: count it (and the target) against the limits.
    let since_epoch = ctx
        .clock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    if let Err(limited) = ctx.limits.admit(
        parties.subject.principal.as_str(),
        request.audience.as_str(),
        since_epoch,
    ) {
        ctx.metrics.rate_limited(limited.limit.as_str());
        learned.principal = Some(parties.subject.principal.clone());
        learned.attestation = Some(parties.subject.kind);
        learned.principal_type = Some(parties.subject.entity_type);
        learned.unaudited = !limited.audit;
        return Err(learned.stopped(slow_down(limited)));
    }
    // The credential checked out: only now is the proof remembered, so
    // requests without one cannot fill the replay cache.
    if let Some(proof) = &request.dpop {
        ctx.dpop_replay
            .remember(proof, now)
            .await
            .map_err(|e| learned.stopped(Refusal::from(e)))?;
    }
    let ancestry = match &parties.txn {
        Some(txn) => transaction::ancestry(&parties, txn),
        None => lifetime::ancestry(
            parties.parent.as_ref().map(|p| &p.claims),
            parties.delegation.as_ref(),
        ),
    }
    .map_err(|refusal| learned.stopped(refusal))?;
    // A transaction token is never bound: it travels with the call, not a key.
    let cnf = match &parties.txn {
        Some(_) => None,
        None => lifetime::binding(request, &parties),
    };
    let minting = Minting::of(request, &parties);
    learned.principal = Some(minting.subject.clone());
    learned.attestation = Some(parties.subject.kind);
    learned.principal_type = Some(parties.subject.entity_type);
    learned.principal_attrs = parties.subject.attributes.clone();
    learned.actor = parties.delegation.as_ref().map(|d| d.actor.clone());
    learned.actors = minting.actors.to_vec();

    kill_switch(ctx, request, &minting, &parties, now).map_err(|stop| learned.stopped(stop))?;

    learned.context = Some(DecidedContext {
        requested_ttl: request.requested_ttl.as_secs(),
        sender_constrained: cnf.is_some(),
        delegation_depth: parties.delegation.as_ref().map_or(0, |d| d.depth),
    });
    learned.transaction = parties.txn.as_ref().map(|txn| DecidedTransaction {
        requester: txn.requester().to_owned(),
        chain: u32::try_from(txn.chain.len()).unwrap_or(u32::MAX),
    });
    let decision = decide(ctx, request, peer, &parties, cnf.is_some(), now)
        .map_err(|e| learned.stopped(undecided(request, e)))?;
    learned.policies = decision.policies();
    let granted = permitted(&decision, &learned.policies).map_err(|r| learned.stopped(r))?;
    learned.scopes_granted = Some(granted.clone());
    // Most grants wait for no one: the approval's text is built only for those that do.
    if request.approval_id.is_some() || decision.approval_for(&granted).is_some() {
        let (scopes_text, actors_text) = (granted.to_string(), minting.actors.join(" "));
        let ask = Ask {
            principal: minting.subject.as_str(),
            target: request.audience.as_str(),
            scopes: &scopes_text,
            actors: &actors_text,
        };
        learned.approval = approve::gate(ctx, request, &decision, &ask, &granted, now)
            .await
            .map_err(|refusal| {
                learned.approval = match &refusal {
                    Refusal::AuthorizationPending { approval_id, .. } => Some(approval_id.clone()),
                    _ => request.approval_id.clone(),
                };
                learned.stopped(refusal)
            })?;
    }

    let ttl = lifetime::lifetime(
        request.requested_ttl,
        &ctx.settings,
        decision.max_ttl,
        &parties,
        now,
    )
    .map_err(|refusal| learned.stopped(refusal))?;
    let minted = match (&request.kind, &parties.txn) {
        (GrantKind::Transaction(txn_request), Some(txn)) => ctx.minter.mint_txn(TxnMintRequest {
            subject: minting.subject,
            principal_type: parties.subject.entity_type,
            attestation: parties.subject.kind,
            attestation_issuer: minting.attestation_issuer,
            trust_domain: ctx.settings.trust_domain,
            purposes: &granted,
            ttl,
            now,
            txn: txn.previous.as_ref().map(|p| p.claims.txn.clone()),
            rctx: transaction::request_context(txn_request, txn, peer),
            tctx: transaction::transaction_context(txn_request, txn),
            act: minting.act.cloned(),
            ancestry,
        }),
        _ => ctx.minter.mint(MintRequest {
            subject: minting.subject,
            principal_type: parties.subject.entity_type,
            attestation: parties.subject.kind,
            attestation_issuer: minting.attestation_issuer,
            audience: &request.audience,
            scopes: &granted,
            ttl,
            now,
            act: minting.act.cloned(),
            cnf,
            ancestry,
        }),
    }
    .map_err(|e| learned.stopped(Refusal::from(e)))?;

    // A block acknowledged while this request was deciding must still win:
    // the admin answers only after the entry is in the index, so checking
    // again here means no token leaves after that answer.
    kill_switch(ctx, request, &minting, &parties, ctx.clock.unix_now())
        .map_err(|stop| learned.stopped(stop))?;
    // Likewise a revocation of the token being narrowed (or the transaction
    // token being replaced): the child must not outlive it.
    let parent_revoked = parties
        .parent
        .as_ref()
        .and_then(|p| rules::revoked(ctx, p))
        .or_else(|| {
            let previous = parties.txn.as_ref()?.previous.as_ref()?;
            ctx.revocations
                .revoked(&previous.claims.facts(&previous.kid))
        });
    if let Some(entry) = parent_revoked {
        let refusal = attest::subject_revoked(&entry.id);
        return Err(learned.stopped(Stop::revoked(&entry, refusal)));
    }
    Ok(Granted {
        minted,
        scopes: granted,
        ttl,
        token_type: match (&parties.txn, &request.dpop) {
            (Some(_), _) => TokenType::NotApplicable,
            (None, Some(_)) => TokenType::Dpop,
            (None, None) => TokenType::Bearer,
        },
        learned,
    })
}

/// The 429 of a request beyond a rate limit.
fn slow_down(limited: Limited) -> Refusal {
    let whose = match limited.limit {
        Limit::PerPrincipal => "this principal",
        Limit::PerTarget => "this target",
    };
    Refusal::SlowDown {
        why: format!(
            "too many token requests for {whose}; retry in {}s",
            limited.retry_after
        ),
        retry_after: limited.retry_after,
    }
}

/// The kill switch: 403 naming the entry that blocks this token at `now`,
/// never its reason text.
/// For a transaction token, the workload asking is checked too.
fn kill_switch(
    ctx: &Context<'_>,
    request: &TokenRequest,
    minting: &Minting<'_>,
    parties: &Parties,
    now: u64,
) -> Result<(), Stop> {
    // Another replica may have acknowledged a block this one has not read.
    ctx.freshness
        .check()
        .map_err(|stale| Refusal::Unavailable(stale.to_string()))?;
    let requester = || {
        let txn = parties.txn.as_ref()?;
        transaction::requester_blocked(ctx, request, txn, now)
    };
    match rules::blocked(ctx, minting, now).or_else(requester) {
        None => Ok(()),
        Some(entry) => Err(blocked(&entry)),
    }
}

fn blocked(entry: &Entry) -> Stop {
    let why = format!("blocked by the kill switch (entry {})", entry.id);
    Stop::revoked(entry, Refusal::AccessDenied(why))
}

/// Cedar's decision on each scope asked for.
fn decide(
    ctx: &Context<'_>,
    request: &TokenRequest,
    peer: &Peer,
    parties: &Parties,
    sender_constrained: bool,
    now: u64,
) -> Result<Decision, PolicyError> {
    let delegation = parties.delegation.as_ref();
    ctx.policy.decide(&DecisionRequest {
        principal: &parties.subject,
        target: &request.audience,
        scopes: &request.scopes,
        requested_ttl: request.requested_ttl,
        now,
        source_ip: peer.addr.ip(),
        sender_constrained,
        delegation_depth: delegation.map_or(0, |d| d.depth),
        actor: delegation.map(|d| d.actor.as_ref()),
        transaction: parties.txn.as_ref().map(|txn| Transaction {
            requester: txn.requester(),
            chain: u32::try_from(txn.chain.len()).unwrap_or(u32::MAX),
        }),
    })
}

/// The refusal of a request Cedar could not decide: an unknown target is
/// `invalid_target` naming the parameter that named it (RFC 8707 section 2
/// for `resource`).
fn undecided(request: &TokenRequest, e: PolicyError) -> Refusal {
    match e {
        PolicyError::UnknownTarget => Refusal::InvalidTarget(format!(
            "{} is not a known target",
            request.target_parameter.name()
        )),
        e => Refusal::from(e),
    }
}

/// The scopes Cedar granted; none is `access_denied`, naming the policies
/// that decided.
fn permitted(decision: &Decision, policies: &[String]) -> Result<Scopes, Refusal> {
    let granted = decision.granted();
    if !granted.is_empty() {
        return Ok(granted);
    }
    let why = match policies {
        [] => "no policy permits the requested scopes".to_owned(),
        ids => format!("denied by policy {}", ids.join(", ")),
    };
    Err(Refusal::AccessDenied(why))
}
