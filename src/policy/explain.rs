//! `writ policy explain`: why a request would be allowed or denied, scope by
//! scope, decided by the same code as a real grant ([`PolicySnapshot`]'s
//! `evaluate`) on a principal described in JSON instead of attested, with
//! the request's context chosen by the operator (CONTRACT section 10).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use cedar_policy::EntityUid;
use serde::{Deserialize, Serialize};

use super::decide::{DecisionRequest, Transaction};
use super::load::PolicySnapshot;
use crate::attest::{Attested, AttrValue};
use crate::model::{AttestationKind, EntityType, Principal, Scopes, TargetId, Ttl};

/// What to explain: the JSON `writ policy explain --request` reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// Who asks.
    pub principal: ExplainPrincipal,
    /// The target (`audience`).
    pub target: String,
    /// The scopes asked for; each is decided on its own.
    pub scopes: Vec<String>,
    /// Context values; a missing one takes its request-time default.
    #[serde(default)]
    pub context: ExplainContext,
}

/// The principal of an explanation, as attestation would have made it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainPrincipal {
    /// `Workload`, `Agent` or `User`.
    #[serde(rename = "type")]
    pub entity_type: String,
    /// Its id, e.g. `spiffe://cluster.local/ns/payments/sa/api`.
    pub id: String,
    /// Attributes attestation would give it (strings and integers).
    #[serde(default)]
    pub attrs: BTreeMap<String, serde_json::Value>,
    /// Parents besides those `entities.json` gives it, e.g. `Team::"payments"`.
    #[serde(default)]
    pub parents: Vec<String>,
}

/// Context of an explanation (CONTRACT section 4 names).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainContext {
    /// RFC 3339; default now (`hour` and `weekday` follow from it).
    pub now: Option<String>,
    /// Default `127.0.0.1`.
    pub source_ip: Option<IpAddr>,
    /// How the principal attested; default `kubernetes` for a workload,
    /// `oidc` otherwise.
    pub attestation: Option<String>,
    /// Default false.
    pub sender_constrained: Option<bool>,
    /// Default 0 (no delegation).
    pub delegation_depth: Option<u32>,
    /// Seconds; default `tokens.default_ttl`.
    pub requested_ttl: Option<u64>,
    /// The agent acting for the principal (Cedar's `context.actor`), as
    /// attestation would have made it; its `parents` are those
    /// `entities.json` gives it. Default: none (not delegated).
    pub actor: Option<ExplainPrincipal>,
    /// A transaction token request (`context.transaction`); default none.
    pub transaction: Option<ExplainTransaction>,
}

/// `context.transaction` of an explanation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplainTransaction {
    /// The workload asking.
    pub requester: String,
    /// How many workloads the call chain has passed, this one included.
    pub chain: u32,
}

/// The verdict on one scope, with what decided it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScopeExplanation {
    /// The scope.
    pub scope: String,
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// Ids of the determining policies (the permits that allowed it, or the
    /// forbids that denied it; none when nothing permits it).
    pub policies: Vec<String>,
    /// The file each determining policy is in.
    pub sources: BTreeMap<String, String>,
    /// Policies that failed to evaluate and were skipped.
    pub errors: Vec<String>,
    /// The least `@max_ttl` of the permits that allowed it, in seconds.
    pub max_ttl: Option<u64>,
}

/// Why an explanation could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExplainError {
    /// A field of the request is unusable.
    #[error("{field}: {why}")]
    Invalid {
        /// The field, e.g. `principal.type`.
        field: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// Cedar could not evaluate the request.
    #[error(transparent)]
    Policy(#[from] super::PolicyError),
}

fn invalid(field: &'static str, why: impl Into<String>) -> ExplainError {
    ExplainError::Invalid {
        field,
        why: why.into(),
    }
}

/// Attribute values from JSON: strings and integers.
fn attrs_of(
    attrs: &BTreeMap<String, serde_json::Value>,
    field: &'static str,
) -> Result<BTreeMap<String, AttrValue>, ExplainError> {
    attrs
        .iter()
        .map(|(name, value)| match value {
            serde_json::Value::String(s) => Ok((name.clone(), AttrValue::String(s.clone()))),
            serde_json::Value::Number(n) => n
                .as_i64()
                .map(|n| (name.clone(), AttrValue::Long(n)))
                .ok_or_else(|| invalid(field, format!("{name}: not an integer"))),
            _ => Err(invalid(field, format!("{name}: only strings and integers"))),
        })
        .collect()
}

impl PolicySnapshot {
    /// Explains `req` as if it came at `now` (unless its context says
    /// otherwise) asking for `default_ttl` seconds when it names none.
    pub fn explain(
        &self,
        req: &ExplainRequest,
        now: u64,
        default_ttl: u64,
    ) -> Result<Vec<ScopeExplanation>, ExplainError> {
        let entity_type = EntityType::parse(&req.principal.entity_type)
            .ok_or_else(|| invalid("principal.type", "must be Workload, Agent or User"))?;
        let principal = Principal::new(req.principal.id.clone())
            .map_err(|e| invalid("principal.id", e.to_string()))?;
        let ctx = &req.context;
        let kind = match &ctx.attestation {
            Some(name) => AttestationKind::parse(name)
                .ok_or_else(|| invalid("context.attestation", format!("unknown kind {name:?}")))?,
            None if entity_type == EntityType::Workload => AttestationKind::Kubernetes,
            None => AttestationKind::Oidc,
        };
        let attributes = attrs_of(&req.principal.attrs, "principal.attrs")?;
        let actor = match &ctx.actor {
            Some(a) => Some(Attested {
                principal: Principal::new(a.id.clone())
                    .map_err(|e| invalid("context.actor.id", e.to_string()))?,
                entity_type: EntityType::parse(&a.entity_type).ok_or_else(|| {
                    invalid("context.actor.type", "must be Workload, Agent or User")
                })?,
                kind: AttestationKind::Oidc,
                attributes: attrs_of(&a.attrs, "context.actor.attrs")?,
                expires_at: u64::MAX,
            }),
            None => None,
        };
        let parents = req
            .principal
            .parents
            .iter()
            .map(|p| {
                EntityUid::from_str(p)
                    .map_err(|_| invalid("principal.parents", format!("{p:?} is not Type::\"id\"")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let attested = Attested {
            principal,
            entity_type,
            kind,
            attributes,
            expires_at: u64::MAX,
        };
        let target =
            TargetId::new(req.target.clone()).map_err(|e| invalid("target", e.to_string()))?;
        let scopes =
            Scopes::parse(&req.scopes.join(" ")).map_err(|e| invalid("scopes", e.to_string()))?;
        if scopes.is_empty() {
            return Err(invalid("scopes", "name at least one scope"));
        }
        let now = match &ctx.now {
            Some(text) => writ_proto::time::parse_rfc3339(text)
                .ok_or_else(|| invalid("context.now", "not an RFC 3339 time"))?,
            None => now,
        };
        let requested_ttl = Ttl::from_secs(ctx.requested_ttl.unwrap_or(default_ttl))
            .map_err(|e| invalid("context.requested_ttl", e.to_string()))?;
        let decision = self.evaluate(
            &DecisionRequest {
                principal: &attested,
                target: &target,
                scopes: &scopes,
                requested_ttl,
                now,
                source_ip: ctx.source_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                sender_constrained: ctx.sender_constrained.unwrap_or(false),
                delegation_depth: ctx.delegation_depth.unwrap_or(0),
                actor: actor.as_ref(),
                transaction: ctx.transaction.as_ref().map(|t| Transaction {
                    requester: &t.requester,
                    chain: t.chain,
                }),
            },
            &parents,
            super::decide::Evaluation::Whole,
        )?;
        Ok(decision
            .scopes
            .into_iter()
            .map(|s| ScopeExplanation {
                sources: s
                    .policies
                    .iter()
                    .filter_map(|id| Some((id.clone(), self.source_of(id)?)))
                    .collect(),
                scope: s.scope.as_str().to_owned(),
                decision: if s.allowed { "allow" } else { "deny" },
                policies: s.policies,
                errors: s.errors,
                max_ttl: s.max_ttl,
            })
            .collect())
    }
}
