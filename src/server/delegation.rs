//! RFC 8693 delegation: an agent, proven by `actor_token`, acting for the
//! subject. The agent must attest as an `Agent`; the new token's `act`
//! nests the subject token's chain inside this actor (newest outermost), and
//! the chain may not grow past `tokens.max_delegation_depth`.

use std::sync::Arc;

use serde_json::{Value, json};

use super::AppState;
use super::token::{TYPE_ACCESS_TOKEN, TYPE_ID_TOKEN, TYPE_JWT, writ_token_principal};
use crate::attest::Peer;
use crate::attest::{Attested, AttrValue};
use crate::grant::Refusal;
use crate::model::{AttestationKind, EntityType, Principal};
use crate::token::{AccessClaims, act_chain};

/// An agent acting for the subject of a token request.
pub(super) struct Delegation {
    /// The attested agent (Cedar's `context.actor`).
    pub actor: Arc<Attested>,
    /// The minted token's `act` claim.
    pub act: Value,
    /// Every actor in that chain, newest first.
    pub actors: Vec<String>,
    /// The chain's length (Cedar's `context.delegation_depth`).
    pub depth: u32,
    /// The binding of an actor writ token: the delegated token keeps it, so
    /// it is as useless without the agent's key as the agent's own token.
    pub actor_cnf: Option<Value>,
    /// An actor writ token's `jti` and ancestry (revoking the agent's token
    /// revokes what it delegated).
    pub lineage: Vec<String>,
}

impl Delegation {
    /// Attests `token` (of RFC 8693 type `token_type`) as an agent acting for
    /// `subject`, whose own token carried the chain `prior` (when the
    /// subject token is itself delegated).
    #[allow(clippy::too_many_arguments)] // the request's parts, each checked here
    pub(super) async fn attest(
        app: &AppState,
        peer: &Peer,
        dpop_jkt: Option<&str>,
        token: &str,
        token_type: &str,
        subject: &Attested,
        prior: Option<&Value>,
        revocation: &mut Option<String>,
    ) -> Result<Self, Refusal> {
        let (actor, actor_cnf, lineage) = match token_type {
            TYPE_JWT | TYPE_ID_TOKEN => match app.attest.attest_jwt(token).await {
                Ok(attested) => (attested, None, Vec::new()),
                Err(e) => {
                    app.metrics.attestation_failure(e.reason());
                    return Err(Refusal::InvalidGrant(format!("actor_token: {e}")));
                }
            },
            TYPE_ACCESS_TOKEN => {
                let (attested, claims) = writ_actor(app, peer, dpop_jkt, token, revocation)?;
                let lineage = claims.lineage().map(str::to_owned).collect();
                (Arc::new(attested), claims.cnf, lineage)
            }
            _ => {
                return Err(Refusal::InvalidRequest(
                    "actor_token_type is not supported".into(),
                ));
            }
        };
        if actor.entity_type != EntityType::Agent {
            return Err(Refusal::InvalidGrant(format!(
                "actor_token must attest an agent; it attests a {}",
                actor.entity_type.as_str()
            )));
        }
        if actor.principal == subject.principal {
            return Err(Refusal::InvalidRequest(
                "an agent cannot act for itself; drop actor_token".into(),
            ));
        }
        let mut actors = vec![actor.principal.to_string()];
        actors.extend(act_chain(prior).into_iter().map(str::to_owned));
        let depth = u32::try_from(actors.len()).unwrap_or(u32::MAX);
        let max = app.config.tokens.max_delegation_depth;
        if depth > max {
            return Err(Refusal::InvalidRequest(format!(
                "delegation depth {depth} exceeds tokens.max_delegation_depth ({max})"
            )));
        }
        // Each level names the issuer that attested its agent, so a kill
        // switch entry for an agent identity provider reaches every token an
        // agent it attested acts in.
        let mut act = json!({ "sub": actor.principal.as_str() });
        if let (Some(AttrValue::String(iss)), Some(map)) =
            (actor.attributes.get("issuer"), act.as_object_mut())
        {
            map.insert("iss".into(), Value::String(iss.clone()));
        }
        if let (Some(prior), Some(map)) = (prior, act.as_object_mut()) {
            map.insert("act".into(), prior.clone());
        }
        Ok(Self {
            actor,
            act,
            actors,
            depth,
            actor_cnf,
            lineage,
        })
    }
}

impl Delegation {
    /// The chain of a delegated token being narrowed without a new actor:
    /// the narrowed token keeps it, so it still names (and the kill switch
    /// still reaches) every agent in it, and Cedar still sees the newest.
    pub(super) fn inherited(act: &Value, expires_at: u64) -> Result<Self, Refusal> {
        let actors: Vec<String> = act_chain(Some(act))
            .into_iter()
            .map(str::to_owned)
            .collect();
        let newest = actors
            .first()
            .and_then(|sub| Principal::new(sub.clone()).ok())
            .ok_or_else(|| Refusal::InvalidGrant("subject_token act is malformed".into()))?;
        Ok(Self {
            actor: Arc::new(Attested {
                principal: newest,
                entity_type: EntityType::Agent,
                kind: AttestationKind::Writ,
                attributes: Default::default(),
                expires_at,
            }),
            act: act.clone(),
            depth: u32::try_from(actors.len()).unwrap_or(u32::MAX),
            actors,
            actor_cnf: None,
            lineage: Vec::new(),
        })
    }
}

/// An agent's own writ token as its attestation: issued by this broker for
/// this broker (`aud` is its issuer), not itself delegated, not revoked, and
/// presented by its holder when bound.
fn writ_actor(
    app: &AppState,
    peer: &Peer,
    dpop_jkt: Option<&str>,
    token: &str,
    revocation: &mut Option<String>,
) -> Result<(Attested, AccessClaims), Refusal> {
    let claims = app
        .verifier
        .verify(token)
        .map_err(|e| Refusal::InvalidGrant(format!("actor_token: {e}")))?;
    if claims.aud != app.issuer {
        return Err(Refusal::InvalidGrant(
            "actor_token must be a writ token for this broker's own audience".into(),
        ));
    }
    if claims.act.is_some() {
        return Err(Refusal::InvalidGrant(
            "actor_token is itself delegated; present the agent's own token".into(),
        ));
    }
    if !super::auth::held_by(claims.cnf.as_ref(), peer, || dpop_jkt.map(str::to_owned)) {
        return Err(Refusal::InvalidGrant(
            "actor_token is bound to a key this request does not prove".into(),
        ));
    }
    if let Some(entry) = app.kill_switch.index().revoked(&claims.facts()) {
        *revocation = Some(entry.id.clone());
        return Err(Refusal::InvalidGrant(format!(
            "actor_token was revoked by the kill switch (entry {})",
            entry.id
        )));
    }
    let attested = writ_token_principal(app, &claims)?;
    Ok((attested, claims))
}
