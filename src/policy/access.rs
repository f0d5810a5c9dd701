//! `writ access` (CONTRACT section 10): what a principal may reach, or who
//! may reach a target, by Cedar's partial evaluation. The principal, the
//! target and the scope are concrete; every other key of the context
//! (time, source address, attestation kind, key binding, requested
//! lifetime, delegation depth) is unknown, so Cedar answers allow, deny, or
//! the residual conditions under which a permit applies (and a forbid
//! would override it). The principal is taken acting for itself
//! (`context.actor` absent).
//!
//! Scopes are not declared anywhere, so the candidates are the string
//! literals of the policies that concern the target (plus any the caller
//! adds, e.g. scopes seen in the audit log): a permit that allows every
//! scope lists only the candidates, and a literal that is no scope but that
//! such a permit allows is listed too. That part is approximate; the
//! verdict and conditions for each listed scope are exact.

use std::collections::BTreeSet;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Effect, Entities, Entity, Policy, PolicySet,
    Request, RestrictedExpression,
};
use serde::Serialize;

use super::PolicyError;
use super::decide::EntitiesBuilder;
use super::load::PolicySnapshot;
use crate::attest::Attested;
use crate::model::EntityType;

/// One scope of one target a principal may reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Access {
    /// The principal, `Type::"id"` (left out of a principal's own view).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// The target.
    pub target: String,
    /// The scope.
    pub scope: String,
    /// Empty when it is allowed whatever the context; else the residual
    /// conditions, one per policy: `permit <id>: <condition>` (one of them
    /// must hold) and `forbid <id>: <condition>` (none may).
    pub conditions: Vec<String>,
}

/// The context keys left unknown (`delegation_depth` is 0: the principal
/// acts for itself).
const UNKNOWN: [&str; 7] = [
    "requested_ttl",
    "now",
    "hour",
    "weekday",
    "source_ip",
    "attestation",
    "sender_constrained",
];

/// Values each unknown takes in the concrete samples that check a residual
/// answer (`now` also takes every `datetime("...")` of the policies).
const ATTESTATIONS: [&str; 6] = ["kubernetes", "oidc", "mtls", "unix", "writ", "id-jag"];
const SOURCE_IPS: [&str; 3] = ["127.0.0.1", "10.0.0.1", "192.0.2.1"];
const HOURS: [i64; 3] = [3, 12, 20];
const WEEKDAYS: [&str; 2] = ["Wed", "Sat"];

impl PolicySnapshot {
    /// Every target (or only `only_target`) and candidate scope `who` may
    /// reach, with the conditions; `extra_scopes` are candidates besides the
    /// policies' string literals.
    pub fn access(
        &self,
        who: &Attested,
        only_target: Option<&str>,
        extra_scopes: &BTreeSet<String>,
        now: u64,
    ) -> Result<Vec<Access>, PolicyError> {
        let mut targets: Vec<&String> = match only_target {
            Some(t) => vec![
                self.targets
                    .get_key_value(t)
                    .map(|(k, _)| k)
                    .ok_or(PolicyError::UnknownTarget)?,
            ],
            None => self.targets.keys().collect(),
        };
        targets.sort();
        let principal = format!("{}::{:?}", who.entity_type.as_str(), who.principal.as_str());
        let authorizer = Authorizer::new();
        let mut out = Vec::new();
        for target in targets {
            let Some(slice) = self.targets.get(target) else {
                continue;
            };
            let mut builder = EntitiesBuilder::default();
            let principal_uid = self.add_attested(who, &[], &mut builder)?;
            for e in &slice.entities {
                builder.add(e.clone());
            }
            let entities = Entities::from_entities(builder.all, None)
                .map_err(|e| PolicyError::Request(e.to_string()))?;
            let Some(resource) = slice.entities.first().map(Entity::uid) else {
                continue;
            };
            let (mut scopes, mut times) = literals(&slice.policies);
            scopes.extend(extra_scopes.iter().cloned());
            times.insert(crate::clock::rfc3339(now));
            for scope in scopes {
                let mut pairs: Vec<(String, RestrictedExpression)> = UNKNOWN
                    .iter()
                    .map(|k| ((*k).to_owned(), RestrictedExpression::new_unknown(*k)))
                    .collect();
                pairs.push(("delegation_depth".into(), RestrictedExpression::new_long(0)));
                pairs.push((
                    "scope".into(),
                    RestrictedExpression::new_string(scope.clone()),
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
                let response =
                    authorizer.is_authorized_partial(&request, &slice.policies, &entities);
                let conditions = match response.decision() {
                    Some(CedarDecision::Allow) => Vec::new(),
                    Some(CedarDecision::Deny) => continue,
                    None => {
                        // Cedar stops simplifying at the first unknown, so
                        // a residual may be unsatisfiable: keep the scope
                        // only if a concrete sample allows it, and show the
                        // residual policies that decided some sample.
                        let probe = Probe {
                            authorizer: &authorizer,
                            principal: &principal_uid,
                            action: &self.mint,
                            resource: &resource,
                            policies: &slice.policies,
                            entities: &entities,
                        };
                        let Some(deciding) = probe.run(&scope, &times)? else {
                            continue;
                        };
                        response
                            .nontrivial_residuals()
                            .filter(|p| deciding.contains(&p.id().to_string()))
                            .map(|p| condition(&p))
                            .collect()
                    }
                };
                out.push(Access {
                    principal: Some(principal.clone()),
                    target: target.clone(),
                    scope,
                    conditions,
                });
            }
        }
        Ok(out)
    }

    /// The principals `entities.json` knows (workloads, agents, users).
    pub fn known_principals(&self) -> Vec<(EntityType, String)> {
        let mut out: Vec<(EntityType, String)> = self
            .entities
            .iter()
            .filter_map(|e| {
                let uid = e.uid();
                let ty = EntityType::parse(&uid.type_name().to_string())?;
                Some((ty, uid.id().unescaped().to_owned()))
            })
            .collect();
        out.sort_by(|a, b| (a.0.as_str(), &a.1).cmp(&(b.0.as_str(), &b.1)));
        out
    }
}

/// Concrete requests over a grid of contexts.
struct Probe<'a> {
    authorizer: &'a Authorizer,
    principal: &'a cedar_policy::EntityUid,
    action: &'a cedar_policy::EntityUid,
    resource: &'a cedar_policy::EntityUid,
    policies: &'a PolicySet,
    entities: &'a Entities,
}

impl Probe<'_> {
    /// The ids of the policies that decided any sample, if some sample is
    /// allowed; `None` when none is.
    fn run(
        &self,
        scope: &str,
        times: &BTreeSet<String>,
    ) -> Result<Option<BTreeSet<String>>, PolicyError> {
        let mut deciding = BTreeSet::new();
        let mut allowed = false;
        for now in times {
            for attestation in ATTESTATIONS {
                for sender_constrained in [false, true] {
                    for ip in SOURCE_IPS {
                        for hour in HOURS {
                            for weekday in WEEKDAYS {
                                let context = Context::from_pairs([
                                    (
                                        "scope".to_owned(),
                                        RestrictedExpression::new_string(scope.to_owned()),
                                    ),
                                    (
                                        "requested_ttl".to_owned(),
                                        RestrictedExpression::new_long(300),
                                    ),
                                    (
                                        "now".to_owned(),
                                        RestrictedExpression::new_datetime(now.clone()),
                                    ),
                                    ("hour".to_owned(), RestrictedExpression::new_long(hour)),
                                    (
                                        "weekday".to_owned(),
                                        RestrictedExpression::new_string(weekday.to_owned()),
                                    ),
                                    ("source_ip".to_owned(), RestrictedExpression::new_ip(ip)),
                                    (
                                        "attestation".to_owned(),
                                        RestrictedExpression::new_string(attestation.to_owned()),
                                    ),
                                    (
                                        "sender_constrained".to_owned(),
                                        RestrictedExpression::new_bool(sender_constrained),
                                    ),
                                    (
                                        "delegation_depth".to_owned(),
                                        RestrictedExpression::new_long(0),
                                    ),
                                ])
                                .map_err(|e| PolicyError::Request(e.to_string()))?;
                                let request = Request::new(
                                    self.principal.clone(),
                                    self.action.clone(),
                                    self.resource.clone(),
                                    context,
                                    None,
                                )
                                .map_err(|e| PolicyError::Request(e.to_string()))?;
                                let response = self.authorizer.is_authorized(
                                    &request,
                                    self.policies,
                                    self.entities,
                                );
                                allowed |= response.decision() == CedarDecision::Allow;
                                deciding.extend(
                                    response.diagnostics().reason().map(ToString::to_string),
                                );
                            }
                        }
                    }
                }
            }
        }
        Ok(allowed.then_some(deciding))
    }
}

/// `permit <id>: <condition>` of a residual policy, on one line.
fn condition(policy: &Policy) -> String {
    let effect = match policy.effect() {
        Effect::Permit => "permit",
        Effect::Forbid => "forbid",
    };
    let text = policy.to_string();
    // The residual is `permit(principal, action, resource) when { <cond> };`.
    let body = text
        .split_once("when {")
        .map(|(_, rest)| {
            rest.trim_end()
                .trim_end_matches(';')
                .trim_end()
                .trim_end_matches('}')
        })
        .unwrap_or(&text);
    let mut body = body.split_whitespace().collect::<Vec<_>>().join(" ");
    // Cedar's residuals keep the conjuncts it settled as `true && (...)`.
    while let Some(rest) = body
        .strip_prefix("true && (")
        .and_then(|r| r.strip_suffix(')'))
    {
        body = rest.to_owned();
    }
    body = body.replace("(true && ", "(");
    for key in UNKNOWN {
        body = body
            .replace(&format!("unknown(\"{key}\")"), &format!("context.{key}"))
            .replace(&format!("context[\"{key}\"]"), &format!("context.{key}"));
    }
    format!("{effect} {}: {body}", policy.id())
}

/// The string literals of `policies` that are not entity ids (`Type::"id"`)
/// nor arguments (`ip("...")`), and apart the `datetime("...")` ones.
fn literals(policies: &PolicySet) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut out = BTreeSet::new();
    let mut times = BTreeSet::new();
    for policy in policies.policies() {
        let text = policy.to_string();
        let mut chars = text.char_indices().peekable();
        while let Some((start, c)) = chars.next() {
            if c != '"' {
                continue;
            }
            let mut value = String::new();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if closed && text[..start].ends_with("datetime(") {
                times.insert(value.clone());
            }
            let entity_id = text[..start].ends_with("::");
            let annotation = text[..start].trim_end().ends_with('(');
            if closed && !entity_id && !annotation && !value.is_empty() {
                out.insert(value);
            }
        }
    }
    (out, times)
}
