//! The approval gate (CONTRACT section 10), after Cedar granted: a grant
//! whose permits all say `@requires_approval` waits for a person, and a
//! retry with the `approval_id` redeems the approval once, for exactly the
//! request it was given for. The kill switch was checked before, and is
//! checked again after minting, so a block cancels what an approval allowed.

use super::request::TokenRequest;
use super::{Context, Refusal};
use crate::approval::{Approval, ApprovalState, Ask};
use crate::policy::Decision;

/// Lets the grant through, or says why it waits or was refused; `Ok`
/// carries the approval redeemed, if one was.
pub(super) async fn gate(
    ctx: &Context<'_>,
    request: &TokenRequest,
    decision: &Decision,
    ask: &Ask<'_>,
    granted: &crate::model::Scopes,
    now: u64,
) -> Result<Option<String>, Refusal> {
    let role = decision.approval_for(granted);
    match (&request.approval_id, role) {
        (None, None) => Ok(None),
        // Policy no longer asks for one: the grant stands on its own.
        (Some(_), None) => Ok(None),
        (None, Some(role)) => Err(pending(ctx, role, ask, now).await),
        (Some(id), Some(_)) => redeem(ctx, id, ask, now).await.map(Some),
    }
}

/// The pending approval for this ask (the one already waiting, or a new
/// one), and the answer that says so.
async fn pending(ctx: &Context<'_>, role: &str, ask: &Ask<'_>, now: u64) -> Refusal {
    match ctx.approvals.pending_approval(ask, now).await {
        Ok(Some(waiting)) => {
            return Refusal::AuthorizationPending {
                approval_id: waiting.id,
                role: waiting.role,
            };
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %e, "approvals: could not read pending approvals");
            return Refusal::Unavailable("approvals cannot be read right now; retry".into());
        }
    }
    let Ok(id) = writ_proto::id::random_id() else {
        return Refusal::Unavailable("no randomness for an approval id".into());
    };
    let approval = Approval {
        id: id.clone(),
        role: role.to_owned(),
        principal: ask.principal.to_owned(),
        target: ask.target.to_owned(),
        scopes: ask.scopes.to_owned(),
        actors: ask.actors.to_owned(),
        requested_at: now,
        expires_at: now.saturating_add(ctx.settings.approval_ttl.as_secs()),
        state: ApprovalState::Pending,
        decided_by: None,
        decided_at: None,
    };
    if let Err(e) = ctx.approvals.create_approval(&approval).await {
        tracing::error!(error = %e, "approvals: could not record a pending approval");
        return Refusal::Unavailable("approvals cannot be recorded right now; retry".into());
    }
    tracing::info!(approval = %id, role, principal = ask.principal, target = ask.target, "grant waits for approval");
    Refusal::AuthorizationPending {
        approval_id: id,
        role: role.to_owned(),
    }
}

/// The retry: the approval must be this request's, approved, unexpired,
/// and not used before.
async fn redeem(ctx: &Context<'_>, id: &str, ask: &Ask<'_>, now: u64) -> Result<String, Refusal> {
    let unavailable = |e: crate::durable::StoreError| {
        tracing::error!(error = %e, "approvals: store unavailable");
        Refusal::Unavailable("approvals cannot be read right now; retry".into())
    };
    let approval = ctx
        .approvals
        .approval(id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| Refusal::InvalidGrant("approval_id is unknown".into()))?;
    if !approval.covers(ask) {
        tracing::warn!(approval = %id, principal = ask.principal, "an approval was presented for another request");
        return Err(Refusal::InvalidGrant(
            "the approval was given for another request".into(),
        ));
    }
    match approval.state {
        ApprovalState::Pending | ApprovalState::Approved if approval.expired(now) => Err(
            Refusal::ExpiredToken("the approval lapsed; ask again".into()),
        ),
        ApprovalState::Pending => Err(Refusal::AuthorizationPending {
            approval_id: approval.id,
            role: approval.role,
        }),
        ApprovalState::Denied => Err(Refusal::AccessDenied(format!(
            "the approval was denied by {}",
            approval.decided_by.as_deref().unwrap_or("an approver")
        ))),
        ApprovalState::Used => Err(Refusal::InvalidGrant(
            "the approval was already used".into(),
        )),
        ApprovalState::Approved => match ctx.approvals.redeem_approval(id, now).await {
            Ok(true) => Ok(approval.id),
            Ok(false) => Err(Refusal::InvalidGrant(
                "the approval was already used".into(),
            )),
            Err(e) => Err(unavailable(e)),
        },
    }
}
