//! Transaction tokens (draft-ietf-oauth-transaction-tokens, CONTRACT
//! section 9): who a call chain acts for, checked once at its edge and then
//! carried, never widened, from workload to workload.
//!
//! The subject is a writ access token (the transaction acts for its
//! subject, and keeps its delegation), a workload's own attestation, or a
//! transaction token that the next workload down the chain replaces,
//! proving itself with its attestation: the replacement keeps `txn`, `sub`,
//! `tctx` and `rctx`, may only narrow the purpose, never outlives the token
//! it replaces, and appends the workload to `rctx.req_wl`.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::attest::{Parties, attest_jwt, subject_revoked, writ_token_principal};
use super::delegation::Delegation;
use super::request::{TokenRequest, TxnRequest, TxnSubject};
use super::rules::{self, confirmation_of};
use super::{Context, Refusal, Stop};
use crate::attest::{Attested, Peer};
use crate::model::Scopes;
use crate::revoke::MintFacts;
use crate::token::{MAX_ANCESTRY, VerifiedTxn};

/// The most workloads a call chain may pass through (`rctx.req_wl`).
pub const MAX_CALL_CHAIN: usize = 16;

/// What a transaction token request adds to its parties.
pub(super) struct TxnParties {
    /// The transaction token being replaced, if any.
    pub previous: Option<VerifiedTxn>,
    /// The requesting workloads, in call order, this request's last.
    pub chain: Vec<String>,
}

impl TxnParties {
    /// The workload asking now.
    pub fn requester(&self) -> &str {
        self.chain.last().map_or("", String::as_str)
    }
}

/// Attests whom the transaction acts for, and who asks.
pub(super) async fn parties(
    ctx: &Context<'_>,
    request: &TokenRequest,
    peer: &Peer,
    txn: &TxnRequest,
) -> Result<Parties, Stop> {
    match &txn.subject {
        TxnSubject::Access(token) => {
            let verified = ctx.verifier.verify(token.as_str()).map_err(Refusal::from)?;
            let claims = &verified.claims;
            if !rules::held(confirmation_of(claims), peer, request.dpop_jkt()) {
                return Err(Refusal::InvalidGrant(
                    "subject_token is bound to a key this request does not prove".into(),
                )
                .into());
            }
            if let Some(entry) = rules::revoked(ctx, &verified) {
                return Err(Stop::revoked(&entry, subject_revoked(&entry.id)));
            }
            let subject = Arc::new(writ_token_principal(ctx, claims)?);
            let delegation = Delegation::inherited(claims)?;
            // The token's holder asks: its subject, or the agent acting for it.
            let chain = vec![claims.client_id.clone()];
            Ok(Parties {
                subject,
                parent: Some(verified),
                delegation,
                txn: Some(TxnParties {
                    previous: None,
                    chain,
                }),
            })
        }
        TxnSubject::Attestation(token) => {
            let subject = attest_jwt(ctx, token.as_str())
                .await
                .map_err(Refusal::from)?;
            let chain = vec![subject.principal.to_string()];
            Ok(Parties {
                subject,
                parent: None,
                delegation: None,
                txn: Some(TxnParties {
                    previous: None,
                    chain,
                }),
            })
        }
        TxnSubject::Replacement {
            txn: token,
            requester,
        } => replacement(ctx, request, txn, token.as_str(), requester.as_str()).await,
    }
}

async fn replacement(
    ctx: &Context<'_>,
    request: &TokenRequest,
    txn: &TxnRequest,
    token: &str,
    requester: &str,
) -> Result<Parties, Stop> {
    if txn.details.is_some() || !txn.context.is_empty() {
        return Err(Refusal::InvalidRequest(
            "a replacement keeps the transaction's request_context and request_details".into(),
        )
        .into());
    }
    let settings = &ctx.settings;
    let previous = ctx
        .verifier
        .verify_txn(token, settings.trust_domain, settings.txn_ttl.as_secs())
        .map_err(Refusal::from)?;
    let claims = &previous.claims;
    if let Some(entry) = ctx.revocations.revoked(&claims.facts(&previous.kid)) {
        return Err(Stop::revoked(&entry, subject_revoked(&entry.id)));
    }
    let granted = Scopes::parse(&claims.purp)
        .map_err(|_| Refusal::InvalidGrant("subject_token purp is malformed".into()))?;
    if !request.scopes.is_subset_of(&granted) {
        return Err(Refusal::InvalidScope(
            "a replacement may only narrow the transaction's purpose".into(),
        )
        .into());
    }
    let workload = attest_jwt(ctx, requester)
        .await
        .map_err(|e| Refusal::InvalidGrant(format!("actor_token: {e}")))?;
    let mut chain: Vec<String> = claims
        .requesting_workloads()
        .into_iter()
        .map(str::to_owned)
        .collect();
    chain.push(workload.principal.to_string());
    if chain.len() > MAX_CALL_CHAIN {
        return Err(Refusal::InvalidGrant(format!(
            "the call chain passed more than {MAX_CALL_CHAIN} workloads"
        ))
        .into());
    }
    let subject: Attested = ctx
        .attest
        .attest_txn(claims)
        .map_err(|e| Refusal::InvalidGrant(format!("a transaction token as evidence: {e}")))?;
    let delegation = Delegation::inherited_chain(claims.act.as_ref(), claims.exp)?;
    Ok(Parties {
        subject: Arc::new(subject),
        parent: None,
        delegation,
        txn: Some(TxnParties {
            previous: Some(previous),
            chain,
        }),
    })
}

/// The kill switch on the workload asking: a workload blocked as a subject
/// neither mints nor passes a transaction on.
pub(super) fn requester_blocked(
    ctx: &Context<'_>,
    request: &TokenRequest,
    txn: &TxnParties,
    now: u64,
) -> Option<Arc<crate::revoke::Entry>> {
    let facts = MintFacts {
        subject: txn.requester(),
        audience: request.audience.as_str(),
        attestation_issuer: None,
        actors: &[],
        actor_issuers: &[],
    };
    ctx.revocations.blocked(&facts, now)
}

/// The `jti`s a transaction token derives from: the access token it began
/// from and that token's own lineage, or the transaction token it replaces
/// and its lineage.
pub(super) fn ancestry(parties: &Parties, txn: &TxnParties) -> Result<Vec<String>, Refusal> {
    let ancestry: Vec<String> = match (&txn.previous, &parties.parent) {
        (Some(previous), _) => previous.claims.lineage().map(str::to_owned).collect(),
        (None, Some(parent)) => parent.claims.lineage().map(str::to_owned).collect(),
        (None, None) => Vec::new(),
    };
    if ancestry.len() > MAX_ANCESTRY {
        return Err(Refusal::InvalidGrant(format!(
            "subject_token derives from more than {MAX_ANCESTRY} tokens; ask for a fresh one"
        )));
    }
    Ok(ancestry)
}

/// `rctx`: the requester's `request_context` (or the replaced token's), with
/// `req_wl` written by writ and `req_ip` the caller's address when the
/// requester did not say.
pub(super) fn request_context(
    txn_request: &TxnRequest,
    txn: &TxnParties,
    peer: &Peer,
) -> Map<String, Value> {
    let mut rctx = match &txn.previous {
        Some(previous) => previous.claims.rctx.clone(),
        None => txn_request.context.clone(),
    };
    rctx.entry("req_ip")
        .or_insert_with(|| Value::String(peer.addr.ip().to_string()));
    rctx.insert(
        "req_wl".into(),
        Value::Array(txn.chain.iter().cloned().map(Value::String).collect()),
    );
    rctx
}

/// `tctx`: the details given when the transaction began, kept unchanged.
pub(super) fn transaction_context(
    txn_request: &TxnRequest,
    txn: &TxnParties,
) -> Option<Map<String, Value>> {
    match &txn.previous {
        Some(previous) => previous.claims.tctx.clone(),
        None => txn_request.details.clone(),
    }
}
