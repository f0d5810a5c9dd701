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
    Authorizer, Context, Decision as CedarDecision, Effect, Entities, Entity, PartialResponse,
    Policy, PolicySet, Request, RestrictedExpression,
};
use serde::Serialize;

use super::PolicyError;
use super::decide::EntitiesBuilder;
use super::index::pinned_scopes;
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
            let Some(resource) = slice.entities.first().map(Entity::uid) else {
                continue;
            };
            let mut builder = EntitiesBuilder::default();
            let principal_uid = self.add_attested(who, &[], &mut builder)?;
            for e in &slice.entities {
                builder.add(e.clone());
            }
            let entities = Entities::from_entities(builder.all, None)
                .map_err(|e| PolicyError::Request(e.to_string()))?;
            let query = Query {
                authorizer: &authorizer,
                principal: &principal_uid,
                action: &self.mint,
                resource: &resource,
                entities: &entities,
            };
            // One evaluation with the scope unknown too settles every policy
            // that cannot apply to this principal whatever it asks (most of
            // a large set: other namespaces, other teams); each candidate
            // scope is then asked only of the few that may still decide.
            let any_scope = query.partial(None, &slice.policies)?;
            if any_scope.decision() == Some(CedarDecision::Deny) {
                continue;
            }
            let mut live = PolicySet::new();
            for residual in any_scope.may_be_determining() {
                if let Some(policy) = slice.policies.policy(residual.id()) {
                    live.add(policy.clone())
                        .map_err(|e| PolicyError::Request(e.to_string()))?;
                }
            }
            // A scope no live permit can apply to is denied whatever the
            // context: when every live permit pins the scope to literals,
            // only those are worth asking about (they are literals of the
            // target's policies, so no candidate is lost), and the target's
            // thousands of other literals need not even be collected.
            let mut reachable = BTreeSet::new();
            let all_pinned = live
                .policies()
                .filter(|p| p.effect() == Effect::Permit)
                .all(|p| match pinned_scopes(p) {
                    Some(pinned) => {
                        reachable.extend(pinned);
                        true
                    }
                    None => false,
                });
            let scopes = if all_pinned {
                reachable.retain(|scope: &String| !scope.is_empty());
                reachable
            } else {
                let (mut scopes, _) = literals(&slice.policies);
                scopes.extend(extra_scopes.iter().cloned());
                scopes
            };
            let (_, mut times) = literals(&live);
            times.insert(crate::clock::rfc3339(now));
            for scope in scopes {
                let response = query.partial(Some(&scope), &live)?;
                let conditions = match response.decision() {
                    Some(CedarDecision::Allow) => Vec::new(),
                    Some(CedarDecision::Deny) => continue,
                    None => {
                        // Cedar stops simplifying at the first unknown, so
                        // a residual may be unsatisfiable: keep the scope
                        // only if a concrete sample allows it, and show the
                        // residual policies that decided some sample.
                        let residuals: Vec<Policy> = response.nontrivial_residuals().collect();
                        let Some(deciding) =
                            query.sample(&scope, &times, &live, &mentioned(&residuals))?
                        else {
                            continue;
                        };
                        residuals
                            .iter()
                            .filter(|p| deciding.contains(&p.id().to_string()))
                            .map(condition)
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

/// One principal, the mint action and one target, asked under several
/// contexts.
struct Query<'a> {
    authorizer: &'a Authorizer,
    principal: &'a cedar_policy::EntityUid,
    action: &'a cedar_policy::EntityUid,
    resource: &'a cedar_policy::EntityUid,
    entities: &'a Entities,
}

impl Query<'_> {
    fn request(&self, context: Context) -> Result<Request, PolicyError> {
        Request::new(
            self.principal.clone(),
            self.action.clone(),
            self.resource.clone(),
            context,
            None,
        )
        .map_err(|e| PolicyError::Request(e.to_string()))
    }

    /// Partial evaluation with every context key of [`UNKNOWN`] unknown,
    /// and the scope too unless given.
    fn partial(
        &self,
        scope: Option<&str>,
        policies: &PolicySet,
    ) -> Result<PartialResponse, PolicyError> {
        let mut pairs: Vec<(String, RestrictedExpression)> = UNKNOWN
            .iter()
            .map(|k| ((*k).to_owned(), RestrictedExpression::new_unknown(*k)))
            .collect();
        pairs.push(("delegation_depth".into(), RestrictedExpression::new_long(0)));
        pairs.push((
            "scope".into(),
            match scope {
                Some(scope) => RestrictedExpression::new_string(scope.to_owned()),
                None => RestrictedExpression::new_unknown("scope"),
            },
        ));
        let context =
            Context::from_pairs(pairs).map_err(|e| PolicyError::Request(e.to_string()))?;
        Ok(self
            .authorizer
            .is_authorized_partial(&self.request(context)?, policies, self.entities))
    }

    /// Concrete requests over a grid of contexts, varying only the keys in
    /// `varying` (the others cannot change the answer): the ids of the
    /// policies that decided any sample, if some sample is allowed; `None`
    /// when none is.
    fn sample(
        &self,
        scope: &str,
        times: &BTreeSet<String>,
        policies: &PolicySet,
        varying: &BTreeSet<&str>,
    ) -> Result<Option<BTreeSet<String>>, PolicyError> {
        fn values<T: Clone>(key: &str, varying: &BTreeSet<&str>, all: &[T]) -> Vec<T> {
            if varying.contains(key) {
                all.to_vec()
            } else {
                all[..1].to_vec()
            }
        }
        // Built once: Cedar parses the extension's name at every construction.
        let times: Vec<RestrictedExpression> = times
            .iter()
            .map(|t| RestrictedExpression::new_datetime(t.clone()))
            .collect();
        let ips: Vec<RestrictedExpression> = SOURCE_IPS
            .iter()
            .map(|ip| RestrictedExpression::new_ip(*ip))
            .collect();
        let mut deciding = BTreeSet::new();
        let mut allowed = false;
        for now in values("now", varying, &times) {
            for attestation in values("attestation", varying, &ATTESTATIONS) {
                for sender_constrained in values("sender_constrained", varying, &[false, true]) {
                    for ip in values("source_ip", varying, &ips) {
                        for hour in values("hour", varying, &HOURS) {
                            for weekday in values("weekday", varying, &WEEKDAYS) {
                                let context = Context::from_pairs([
                                    (
                                        "scope".to_owned(),
                                        RestrictedExpression::new_string(scope.to_owned()),
                                    ),
                                    (
                                        "requested_ttl".to_owned(),
                                        RestrictedExpression::new_long(300),
                                    ),
                                    ("now".to_owned(), now.clone()),
                                    ("hour".to_owned(), RestrictedExpression::new_long(hour)),
                                    (
                                        "weekday".to_owned(),
                                        RestrictedExpression::new_string(weekday.to_owned()),
                                    ),
                                    ("source_ip".to_owned(), ip.clone()),
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
                                let response = self.authorizer.is_authorized(
                                    &self.request(context)?,
                                    policies,
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

/// The unknown context keys the residuals may depend on: any written as
/// `unknown("key")`, `["key"]` or `.key` in their text (over-counting only
/// costs samples). Cedar writes the whole context record into a residual
/// that tests it (`{"attestation": unknown("attestation"), …} has "actor"`);
/// such a test depends on the record's keys, which are known, not on its
/// unknown values, so the record literal itself mentions nothing.
fn mentioned(residuals: &[Policy]) -> BTreeSet<&'static str> {
    let texts: Vec<String> = residuals
        .iter()
        .map(|p| without_context_records(&p.to_string()))
        .collect();
    UNKNOWN
        .into_iter()
        .filter(|key| {
            let (quoted, member) = (format!("\"{key}\""), format!(".{key}"));
            texts
                .iter()
                .any(|t| t.contains(&quoted) || t.contains(&member))
        })
        .collect()
}

/// `text` without the context record literals Cedar substitutes for
/// `context` (they open with its first key, `attestation`, unknown).
fn without_context_records(text: &str) -> String {
    const OPENING: &str = "{\"attestation\": unknown(\"attestation\")";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPENING) {
        out.push_str(&rest[..start]);
        // Skip to the brace closing this record, stepping over strings.
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        let mut end = rest.len();
        for (i, c) in rest[start..].char_indices() {
            match (in_string, c) {
                (true, _) if escaped => escaped = false,
                (true, '\\') => escaped = true,
                (true, '"') => in_string = false,
                (true, _) => {}
                (false, '"') => in_string = true,
                (false, '{') => depth += 1,
                (false, '}') => {
                    depth -= 1;
                    if depth == 0 {
                        end = start + i + 1;
                        break;
                    }
                }
                (false, _) => {}
            }
        }
        out.push_str("context");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
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

#[cfg(test)]
mod tests {
    use super::without_context_records;

    #[test]
    fn a_context_record_literal_mentions_nothing_but_what_is_read_from_it() {
        let record =
            r#"{"attestation": unknown("attestation"), "hour": unknown("hour"), "scope": "a\"}"}"#;
        assert_eq!(
            without_context_records(&format!("x && ({record} has \"actor\") && y")),
            "x && (context has \"actor\") && y"
        );
        assert_eq!(
            without_context_records(&format!("({record})[\"hour\"] < 8 || {record} has \"b\"")),
            "(context)[\"hour\"] < 8 || context has \"b\""
        );
        assert_eq!(
            without_context_records("unknown(\"hour\") < 8"),
            "unknown(\"hour\") < 8"
        );
    }
}
