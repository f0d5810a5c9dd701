//! RFC 8693 delegation: an agent, proven by `actor_token`, acting for the
//! subject. The agent must attest as an `Agent`; the new token's `act`
//! nests the subject token's chain inside this actor (newest outermost), and
//! the chain may not grow past `tokens.max_delegation_depth`. A delegated
//! writ token narrowed without a new actor keeps its chain.

use std::sync::Arc;

use super::attest::{attest_jwt, writ_token_principal};
use super::request::Presented;
use super::rules::{self, actors_in, chain_of, confirmation_of};
use super::{Context, Refusal, Stop};
use crate::attest::{Attested, Peer};
use crate::model::{AttestationKind, EntityType, Principal};
use crate::token::{AccessClaims, ActorChain, Confirmation};

/// An agent acting for the subject of a token request.
pub(super) struct Delegation {
    /// The attested agent (Cedar's `context.actor`).
    pub actor: Arc<Attested>,
    /// The minted token's `act` claim.
    pub act: ActorChain,
    /// Every actor in that chain, newest first.
    pub actors: Vec<String>,
    /// The chain's length (Cedar's `context.delegation_depth`).
    pub depth: u32,
    /// The binding of an actor writ token: the delegated token keeps it, so
    /// it is as useless without the agent's key as the agent's own token.
    pub actor_cnf: Option<Confirmation>,
    /// An actor writ token's `jti` and ancestry (revoking the agent's token
    /// revokes what it delegated).
    pub lineage: Vec<String>,
}

impl Delegation {
    /// Attests `token` as an agent acting for `subject`, whose own token
    /// carried the chain `prior` (when the subject token is itself
    /// delegated).
    pub(super) async fn attest(
        ctx: &Context<'_>,
        peer: &Peer,
        dpop_jkt: Option<&str>,
        token: &Presented,
        subject: &Attested,
        prior: Option<&ActorChain>,
    ) -> Result<Self, Stop> {
        let (actor, actor_cnf, lineage) = match token {
            Presented::Attestation(token) => match attest_jwt(ctx, token.as_str()).await {
                Ok(attested) => (attested, None, Vec::new()),
                Err(e) => return Err(Refusal::InvalidGrant(format!("actor_token: {e}")).into()),
            },
            Presented::Writ(token) => {
                let (attested, claims) = writ_actor(ctx, peer, dpop_jkt, token.as_str())?;
                let lineage = claims.lineage().map(str::to_owned).collect();
                let cnf = confirmation_of(&claims).cloned();
                (Arc::new(attested), cnf, lineage)
            }
        };
        if actor.entity_type != EntityType::Agent {
            return Err(Refusal::InvalidGrant(format!(
                "actor_token must attest an agent; it attests a {}",
                actor.entity_type.as_str()
            ))
            .into());
        }
        if actor.principal == subject.principal {
            return Err(Refusal::InvalidRequest(
                "an agent cannot act for itself; drop actor_token".into(),
            )
            .into());
        }
        let mut actors = vec![actor.principal.to_string()];
        actors.extend(actors_in(prior));
        let depth = u32::try_from(actors.len()).unwrap_or(u32::MAX);
        let max = ctx.settings.max_delegation_depth;
        if depth > max {
            return Err(Refusal::InvalidRequest(format!(
                "delegation depth {depth} exceeds tokens.max_delegation_depth ({max})"
            ))
            .into());
        }
        // Each level names the issuer that attested its agent, so a kill
        // switch entry for an agent identity provider reaches every token an
        // agent it attested acts in.
        let act = ActorChain::new(
            actor.principal.as_str(),
            rules::attestation_issuer(&actor).map(str::to_owned),
            prior.cloned(),
        );
        Ok(Self {
            actor,
            act,
            actors,
            depth,
            actor_cnf,
            lineage,
        })
    }

    /// The client an enterprise IdP's ID-JAG was issued to, acting for the
    /// user it asserts: one hop, attested by the IdP (`act.iss`).
    pub(super) fn asserted(client: Arc<Attested>, issuer: &str) -> Self {
        let sub = client.principal.to_string();
        Self {
            act: ActorChain::new(sub.clone(), Some(issuer.to_owned()), None),
            actors: vec![sub],
            depth: 1,
            actor: client,
            actor_cnf: None,
            lineage: Vec::new(),
        }
    }

    /// The chain of a delegated token being narrowed without a new actor:
    /// the narrowed token keeps it, so it still names (and the kill switch
    /// still reaches) every agent in it, and Cedar still sees the newest.
    pub(super) fn inherited(parent: &AccessClaims) -> Result<Option<Self>, Refusal> {
        Self::inherited_chain(chain_of(parent), parent.exp)
    }

    /// The delegation a token carrying `act` and expiring at `exp` speaks
    /// for (a transaction token begun from a delegated token keeps it).
    pub(super) fn inherited_chain(
        act: Option<&ActorChain>,
        exp: u64,
    ) -> Result<Option<Self>, Refusal> {
        let Some(act) = act else {
            return Ok(None);
        };
        let actors = actors_in(Some(act));
        let newest = actors
            .first()
            .and_then(|sub| Principal::new(sub.clone()).ok())
            .ok_or_else(|| Refusal::InvalidGrant("subject_token act is malformed".into()))?;
        Ok(Some(Self {
            actor: Arc::new(Attested {
                principal: newest,
                entity_type: EntityType::Agent,
                kind: AttestationKind::Writ,
                attributes: Default::default(),
                expires_at: exp,
            }),
            act: act.clone(),
            depth: u32::try_from(actors.len()).unwrap_or(u32::MAX),
            actors,
            actor_cnf: None,
            lineage: Vec::new(),
        }))
    }
}

/// An agent's own writ token as its attestation: issued by this broker for
/// this broker (`aud` is its issuer), not itself delegated, not revoked, and
/// presented by its holder when bound.
fn writ_actor(
    ctx: &Context<'_>,
    peer: &Peer,
    dpop_jkt: Option<&str>,
    token: &str,
) -> Result<(Attested, AccessClaims), Stop> {
    let verified = ctx
        .verifier
        .verify(token)
        .map_err(|e| Refusal::InvalidGrant(format!("actor_token: {e}")))?;
    let claims = &verified.claims;
    if claims.aud != ctx.settings.issuer {
        return Err(Refusal::InvalidGrant(
            "actor_token must be a writ token for this broker's own audience".into(),
        )
        .into());
    }
    if chain_of(claims).is_some() {
        return Err(Refusal::InvalidGrant(
            "actor_token is itself delegated; present the agent's own token".into(),
        )
        .into());
    }
    if !rules::held(confirmation_of(claims), peer, dpop_jkt) {
        return Err(Refusal::InvalidGrant(
            "actor_token is bound to a key this request does not prove".into(),
        )
        .into());
    }
    if let Some(entry) = rules::revoked(ctx, &verified) {
        return Err(Stop::revoked(
            &entry,
            Refusal::InvalidGrant(format!(
                "actor_token was revoked by the kill switch (entry {})",
                entry.id
            )),
        ));
    }
    let attested = writ_token_principal(ctx, claims)?;
    Ok((attested, verified.claims))
}
