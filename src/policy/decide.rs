//! One Cedar request per scope, built in code against a snapshot.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Effect, Entities, Entity, EntityId,
    EntityTypeName, EntityUid, Request, RestrictedExpression,
};

use super::PolicyError;
use super::index::is_authorized_whole;
use super::load::{AttrKind, PolicySnapshot};
use crate::attest::{Attested, AttrValue};
use crate::clock::UtcFields;
use crate::model::{Scope, Scopes, TargetId, Ttl};

/// Everything Cedar sees about one token request.
#[derive(Debug)]
pub struct DecisionRequest<'a> {
    /// The attested principal.
    pub principal: &'a Attested,
    /// The target (`audience`).
    pub target: &'a TargetId,
    /// The scopes asked for; each is one Cedar request.
    pub scopes: &'a Scopes,
    /// The lifetime asked for (or the default).
    pub requested_ttl: Ttl,
    /// Seconds since the epoch, from writ's clock.
    pub now: u64,
    /// The caller's address.
    pub source_ip: IpAddr,
    /// Whether the token will be bound to a key (DPoP or mTLS).
    pub sender_constrained: bool,
    /// Hops of delegation (0 when the subject acts for itself).
    pub delegation_depth: u32,
    /// The agent acting for the principal, when delegated: Cedar sees it as
    /// `context.actor`, an entity with its attributes and parents.
    pub actor: Option<&'a Attested>,
    /// A transaction token request: Cedar sees `context.transaction`.
    pub transaction: Option<Transaction<'a>>,
}

/// What Cedar sees of a transaction token request (`context.transaction`);
/// its purpose is `context.scope`, its trust domain the resource.
#[derive(Debug, Clone, Copy)]
pub struct Transaction<'a> {
    /// The workload asking (the last of `rctx.req_wl`).
    pub requester: &'a str,
    /// How many workloads the call chain has passed, this one included.
    pub chain: u32,
}

/// Cedar's verdict on one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeDecision {
    /// The scope.
    pub scope: Scope,
    /// Whether Cedar allowed it.
    pub allowed: bool,
    /// Ids of the policies that determined the verdict.
    pub policies: Vec<String>,
    /// Policies that failed to evaluate (Cedar skips them), as Cedar says.
    pub errors: Vec<String>,
    /// The least `@max_ttl` of the permits that allowed it.
    pub max_ttl: Option<u64>,
    /// The role that must approve it: set when every permit that allowed
    /// it says `@requires_approval` (one that does not lets it through).
    pub approval: Option<String>,
}

/// Cedar's verdict on a whole request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// One verdict per requested scope, in request order.
    pub scopes: Vec<ScopeDecision>,
    /// The least `@max_ttl` of the permits that granted a scope.
    pub max_ttl: Option<u64>,
}

impl Decision {
    /// The scopes Cedar allowed.
    pub fn granted(&self) -> Scopes {
        Scopes::from_granted(
            self.scopes
                .iter()
                .filter(|s| s.allowed)
                .map(|s| s.scope.clone()),
        )
    }

    /// The role that must approve the grant of `granted`, if any scope of
    /// it waits for one (the first such role in scope order).
    pub fn approval_for(&self, granted: &Scopes) -> Option<&str> {
        self.scopes
            .iter()
            .filter(|s| s.allowed && granted.iter().any(|g| g == &s.scope))
            .find_map(|s| s.approval.as_deref())
    }

    /// Every determining policy id, each once, in order of first appearance.
    pub fn policies(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.scopes
            .iter()
            .flat_map(|s| s.policies.iter())
            .filter(|p| seen.insert(p.as_str()))
            .cloned()
            .collect()
    }
}

/// Which policies of the target a decision evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Evaluation {
    /// Only those that could apply (`index`): the broker's decisions.
    Split,
    /// Every one, so that every policy that errors is named: explanations.
    Whole,
}

impl PolicySnapshot {
    /// Decides every scope of `req`.
    pub fn decide(&self, req: &DecisionRequest<'_>) -> Result<Decision, PolicyError> {
        self.evaluate(req, &[], Evaluation::Split)
    }

    /// Decides every scope of `req`, the principal having `extra_parents`
    /// besides those `entities.json` gives it (an explanation's "what if").
    pub(super) fn evaluate(
        &self,
        req: &DecisionRequest<'_>,
        extra_parents: &[EntityUid],
        evaluation: Evaluation,
    ) -> Result<Decision, PolicyError> {
        let slice = self
            .targets
            .get(req.target.as_str())
            .ok_or(PolicyError::UnknownTarget)?;
        let mut builder = EntitiesBuilder::default();
        let principal_uid = self.add_attested(req.principal, extra_parents, &mut builder)?;
        let actor_uid = req
            .actor
            .map(|actor| self.add_attested(actor, &[], &mut builder))
            .transpose()?;
        for e in &slice.entities {
            builder.add(e.clone());
        }
        let entities = Entities::from_entities(builder.all, None)
            .map_err(|e| PolicyError::Request(e.to_string()))?;
        let resource = slice
            .entities
            .first()
            .map(Entity::uid)
            .ok_or(PolicyError::UnknownTarget)?;
        let mut base_context = base_context(req);
        if let Some(uid) = actor_uid {
            base_context.push(("actor".into(), RestrictedExpression::new_entity_uid(uid)));
        }
        if let Some(txn) = req.transaction {
            let record = RestrictedExpression::new_record([
                (
                    "requester".to_owned(),
                    RestrictedExpression::new_string(txn.requester.to_owned()),
                ),
                (
                    "chain".to_owned(),
                    RestrictedExpression::new_long(i64::from(txn.chain)),
                ),
            ])
            .map_err(|e| PolicyError::Request(e.to_string()))?;
            base_context.push(("transaction".into(), record));
        }
        let authorizer = Authorizer::new();
        let mut scopes = Vec::with_capacity(req.scopes.len());
        let mut max_ttl: Option<u64> = None;
        for scope in req.scopes.iter() {
            let mut pairs = base_context.clone();
            pairs.push((
                "scope".into(),
                RestrictedExpression::new_string(scope.as_str().to_owned()),
            ));
            let context =
                Context::from_pairs(pairs).map_err(|e| PolicyError::Request(e.to_string()))?;
            let request = Request::new(
                principal_uid.clone(),
                self.mint.clone(),
                resource.clone(),
                context,
                None,
            )
            .map_err(|e| PolicyError::Request(e.to_string()))?;
            let verdict = match evaluation {
                Evaluation::Split => slice.index().is_authorized(
                    &authorizer,
                    &request,
                    &principal_uid,
                    scope.as_str(),
                    &entities,
                ),
                Evaluation::Whole => {
                    is_authorized_whole(&authorizer, &request, &slice.policies, &entities)
                }
            };
            for error in &verdict.errors {
                tracing::warn!(%error, "policy evaluation error (the policy is skipped)");
            }
            let errors = verdict.errors;
            let allowed = verdict.allowed;
            let policies: Vec<String> = verdict.reasons.iter().map(ToString::to_string).collect();
            // One pass over the permits that allowed it: the least
            // `@max_ttl`, and the approval role when every one of them
            // asks for approval (a permit without it lets the grant through).
            let mut scope_ttl: Option<u64> = None;
            let mut approval: Option<&String> = None;
            let mut every_permit_waits = allowed;
            if allowed {
                for meta in verdict
                    .reasons
                    .iter()
                    .filter_map(|id| self.meta.get(id))
                    .filter(|meta| meta.effect == Effect::Permit)
                {
                    if let Some(cap) = meta.max_ttl {
                        scope_ttl = Some(scope_ttl.map_or(cap, |m| m.min(cap)));
                    }
                    match &meta.requires_approval {
                        Some(role) => approval = Some(approval.map_or(role, |a| a.min(role))),
                        None => every_permit_waits = false,
                    }
                }
            }
            let approval = approval.filter(|_| every_permit_waits).cloned();
            if let Some(cap) = scope_ttl {
                max_ttl = Some(max_ttl.map_or(cap, |m| m.min(cap)));
            }
            scopes.push(ScopeDecision {
                scope: scope.clone(),
                allowed,
                policies,
                errors,
                max_ttl: scope_ttl,
                approval,
            });
        }
        Ok(Decision { scopes, max_ttl })
    }

    /// Adds the entity for an attested party (attested attributes the
    /// schema declares, plus parents and attributes from `entities.json`)
    /// and its parents; returns its uid.
    pub(super) fn add_attested(
        &self,
        who: &Attested,
        extra_parents: &[EntityUid],
        builder: &mut EntitiesBuilder,
    ) -> Result<EntityUid, PolicyError> {
        let type_name = self
            .type_names
            .get(&who.entity_type)
            .cloned()
            .ok_or_else(|| PolicyError::Request("unknown entity type".into()))?;
        let uid =
            EntityUid::from_type_name_and_id(type_name, EntityId::new(who.principal.as_str()));
        let declared = self.declared.get(&who.entity_type);
        let mut attrs: HashMap<String, RestrictedExpression> = who
            .attributes
            .iter()
            .filter_map(|(name, value)| {
                let kind = declared?.get(name)?;
                match (kind, value) {
                    (AttrKind::String, AttrValue::String(s)) => {
                        Some((name.clone(), RestrictedExpression::new_string(s.clone())))
                    }
                    (AttrKind::Long, AttrValue::Long(n)) => {
                        Some((name.clone(), RestrictedExpression::new_long(*n)))
                    }
                    _ => None,
                }
            })
            .collect();
        let mut parents = HashSet::new();
        if let Some(known) = self.entities.get(&uid) {
            let (_, known_attrs, known_parents) = known.clone().into_inner();
            for (k, v) in known_attrs {
                // What was attested wins over what a file says.
                attrs.entry(k).or_insert(v);
            }
            for parent in &known_parents {
                if let Some(e) = self.entities.get(parent) {
                    builder.add(e.clone());
                }
            }
            parents = known_parents;
        }
        for parent in extra_parents {
            if let Some(e) = self.entities.get(parent) {
                builder.add(e.clone());
            }
            parents.insert(parent.clone());
        }
        let entity = Entity::new(uid.clone(), attrs, parents)
            .map_err(|e| PolicyError::Request(e.to_string()))?;
        builder.add(entity);
        Ok(uid)
    }
}

/// The entities of one request, each once (the first one added wins).
#[derive(Default)]
pub(super) struct EntitiesBuilder {
    pub(super) all: Vec<Entity>,
    seen: HashSet<EntityUid>,
}

impl EntitiesBuilder {
    pub(super) fn add(&mut self, entity: Entity) {
        if self.seen.insert(entity.uid()) {
            self.all.push(entity);
        }
    }
}

/// Cedar's verdict on an admin action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminDecision {
    /// Whether Cedar allowed it.
    pub allowed: bool,
    /// Ids of the determining policies.
    pub policies: Vec<String>,
}

/// What an admin asks to do with the kill switch or the signing keys, with
/// the context Cedar sees for it (CONTRACT sections 5 and 8).
#[derive(Debug, Clone, Copy)]
pub enum AdminAction<'a> {
    /// `Action::"revoke"`: a new entry; context `{selector, block}`.
    Revoke {
        /// The selector kind.
        selector: &'a str,
        /// Whether it blocks new tokens.
        block: bool,
    },
    /// `Action::"lift"`: lifting an entry's block; context `{selector,
    /// block, author, kind}` of the entry, so that who may undo an
    /// emergency can differ from who may declare one.
    Lift {
        /// The lifted entry.
        entry: EntryFacts<'a>,
    },
    /// `Action::"read"`: listing entries or keys (no entry in the context)
    /// or showing one entry (`{selector, block, author, kind}` of it).
    Read {
        /// The entry shown, if one.
        entry: Option<EntryFacts<'a>>,
    },
    /// `Action::"rotate_key"`: a new signing key; empty context.
    RotateKey,
    /// `Action::"revoke_key"`: withdrawing a signing key and revoking every
    /// token it signed; context `{kid}`.
    RevokeKey {
        /// The key.
        kid: &'a str,
    },
    /// `Action::"explain"`: explaining a decision on the target it
    /// concerns (the resource); empty context.
    Explain,
    /// `Action::"inventory"`: listing the principals of the audit log, on
    /// the broker itself; empty context.
    Inventory,
    /// `Action::"approve"` on `Role::"<role>"` (the resource): approving
    /// or denying a grant that waits for that role; context `{decision}`
    /// (`"approve"` or `"deny"`).
    Approve {
        /// Whether it approves.
        approve: bool,
    },
}

/// What Cedar sees of a kill-switch entry.
#[derive(Debug, Clone, Copy)]
pub struct EntryFacts<'a> {
    /// The selector kind.
    pub selector: &'a str,
    /// Whether it blocks.
    pub block: bool,
    /// Who made it: `Admin::"<id>"`, or the holder's principal (RFC 7009).
    pub author: &'a str,
    /// `revoke` or `lift`.
    pub kind: &'a str,
}

impl EntryFacts<'_> {
    fn context(&self) -> Vec<(String, RestrictedExpression)> {
        vec![
            (
                "selector".into(),
                RestrictedExpression::new_string(self.selector.to_owned()),
            ),
            ("block".into(), RestrictedExpression::new_bool(self.block)),
            (
                "author".into(),
                RestrictedExpression::new_string(self.author.to_owned()),
            ),
            (
                "kind".into(),
                RestrictedExpression::new_string(self.kind.to_owned()),
            ),
        ]
    }
}

impl AdminAction<'_> {
    fn name(&self) -> &'static str {
        match self {
            Self::Revoke { .. } => "revoke",
            Self::Lift { .. } => "lift",
            Self::Read { .. } => "read",
            Self::RotateKey => "rotate_key",
            Self::RevokeKey { .. } => "revoke_key",
            Self::Explain => "explain",
            Self::Inventory => "inventory",
            Self::Approve { .. } => "approve",
        }
    }

    /// The resource's entity type: a `Role` for approvals, else a `Target`.
    fn resource_type(&self) -> &'static str {
        match self {
            Self::Approve { .. } => "Role",
            _ => "Target",
        }
    }

    fn context(&self) -> Vec<(String, RestrictedExpression)> {
        match self {
            Self::Revoke { selector, block } => vec![
                (
                    "selector".into(),
                    RestrictedExpression::new_string((*selector).to_owned()),
                ),
                ("block".into(), RestrictedExpression::new_bool(*block)),
            ],
            Self::Lift { entry } | Self::Read { entry: Some(entry) } => entry.context(),
            Self::Read { entry: None } | Self::RotateKey | Self::Explain | Self::Inventory => {
                Vec::new()
            }
            Self::RevokeKey { kid } => vec![(
                "kid".into(),
                RestrictedExpression::new_string((*kid).to_owned()),
            )],
            Self::Approve { approve } => vec![(
                "decision".into(),
                RestrictedExpression::new_string(
                    if *approve { "approve" } else { "deny" }.to_owned(),
                ),
            )],
        }
    }
}

impl PolicySnapshot {
    /// May admin `admin_id` do `action` on `Target::"<resource>"` (on
    /// `Role::"<resource>"` for approvals)?
    pub fn authorize_admin(
        &self,
        admin_id: &str,
        resource: &str,
        action: AdminAction<'_>,
    ) -> Result<AdminDecision, PolicyError> {
        let uid = |ty: &str, id: &str| -> Result<EntityUid, PolicyError> {
            let ty =
                EntityTypeName::from_str(ty).map_err(|e| PolicyError::Request(e.to_string()))?;
            Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(id)))
        };
        let context = Context::from_pairs(action.context())
            .map_err(|e| PolicyError::Request(e.to_string()))?;
        let request = Request::new(
            uid("Admin", admin_id)?,
            uid("Action", action.name())?,
            uid(action.resource_type(), resource)?,
            context,
            None,
        )
        .map_err(|e| PolicyError::Request(e.to_string()))?;
        let response = Authorizer::new().is_authorized(&request, &self.all, &self.entities);
        Ok(AdminDecision {
            allowed: response.decision() == CedarDecision::Allow,
            policies: response
                .diagnostics()
                .reason()
                .map(ToString::to_string)
                .collect(),
        })
    }
}

/// Context keys shared by every scope of a request (CONTRACT section 4).
fn base_context(req: &DecisionRequest<'_>) -> Vec<(String, RestrictedExpression)> {
    let utc = UtcFields::from_unix(req.now);
    let long = |v: u64| RestrictedExpression::new_long(i64::try_from(v).unwrap_or(i64::MAX));
    vec![
        ("requested_ttl".into(), long(req.requested_ttl.as_secs())),
        ("now".into(), super::values::datetime(req.now)),
        ("hour".into(), long(u64::from(utc.hour))),
        (
            "weekday".into(),
            RestrictedExpression::new_string(utc.weekday_name().to_owned()),
        ),
        ("source_ip".into(), super::values::ip(req.source_ip)),
        (
            "attestation".into(),
            RestrictedExpression::new_string(req.principal.kind.as_str().to_owned()),
        ),
        (
            "sender_constrained".into(),
            RestrictedExpression::new_bool(req.sender_constrained),
        ),
        (
            "delegation_depth".into(),
            long(u64::from(req.delegation_depth)),
        ),
    ]
}
