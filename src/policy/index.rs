//! A target's policies split by what they require with literals, so that a
//! decision evaluates only the policies that could apply to its request.
//!
//! Cedar stays the only judge: each policy goes into one bucket named by a
//! requirement it cannot be satisfied without (the principal is
//! `Type::"id"`, is in `Team::"t"`, is of a type, has `attr == "literal"`,
//! or the request's `context.scope` is one of some literals), and a request
//! evaluates the buckets its principal and scope match plus the policies
//! that name no such requirement. A skipped policy is one whose condition is
//! false (or an error, which Cedar skips too) for this request, so the
//! decision and its determining policies are those of the whole set.
//!
//! Each bucket is its own `PolicySet`, and Cedar answers per set; the answers
//! combine exactly: a `forbid` satisfied in any set denies (and names every
//! satisfied `forbid`), otherwise any satisfied `permit` allows (naming every
//! satisfied `permit`). Small slices are not split: one set, one call.

use std::collections::{BTreeSet, HashMap};

use cedar_policy::{
    Authorizer, Decision as CedarDecision, Entities, EntityTypeName, EntityUid, Policy, PolicyId,
    PolicySet, PrincipalConstraint, Request,
};
use serde_json::Value;

/// Slices of at most this many policies are evaluated whole: splitting
/// them costs more calls than it saves.
const SPLIT_ABOVE: usize = 32;

/// What a bucket's policies require of a request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    /// `principal == Type::"id"`.
    Principal(EntityUid),
    /// `principal.<attr> == "<value>"` in the condition.
    Attr(String, String),
    /// `principal in E` (or `is T in E`): the principal is `E` or below it.
    Ancestor(EntityUid),
    /// `context.scope == "<value>"` (or one of a set literal).
    Scope(String),
    /// `principal is T`.
    Type(EntityTypeName),
}

/// One target's policies, split for decision.
#[derive(Debug, Clone)]
pub(crate) struct PolicyIndex {
    /// Policies no bucket takes: evaluated for every request.
    always: PolicySet,
    buckets: HashMap<Key, PolicySet>,
    /// The attribute names some `Attr` bucket compares.
    attrs: BTreeSet<String>,
}

/// A decision over the sets a request selects.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Whether Cedar allows it.
    pub(crate) allowed: bool,
    /// The determining policies (Cedar's `reason`), in id order.
    pub(crate) reasons: BTreeSet<PolicyId>,
    /// The evaluation errors, as Cedar words them.
    pub(crate) errors: Vec<String>,
}

impl PolicyIndex {
    /// Splits `policies` (all of one target and action).
    pub(crate) fn build(policies: &PolicySet) -> Self {
        let mut index = PolicyIndex {
            always: PolicySet::new(),
            buckets: HashMap::new(),
            attrs: BTreeSet::new(),
        };
        let split = policies.num_of_policies() > SPLIT_ABOVE;
        for policy in policies.policies() {
            let keys = if split { keys_of(policy) } else { Vec::new() };
            if keys.is_empty() {
                add(&mut index.always, policy);
                continue;
            }
            // A policy pinned to several scopes goes into each scope's
            // bucket; a request has one scope, so it meets it once.
            for key in keys {
                if let Key::Attr(name, _) = &key {
                    index.attrs.insert(name.clone());
                }
                add(index.buckets.entry(key).or_default(), policy);
            }
        }
        index
    }

    /// Decides `request` for `scope`, whose principal is `principal`
    /// (in `entities`).
    pub(crate) fn is_authorized(
        &self,
        authorizer: &Authorizer,
        request: &Request,
        principal: &EntityUid,
        scope: &str,
        entities: &Entities,
    ) -> Verdict {
        let mut combined = Combined::default();
        combined.add(authorizer, request, &self.always, entities);
        if !self.buckets.is_empty() {
            for key in self.keys_of_request(principal, scope, entities) {
                if let Some(set) = self.buckets.get(&key) {
                    combined.add(authorizer, request, set, entities);
                }
            }
        }
        combined.verdict()
    }

    /// The buckets a request may meet.
    fn keys_of_request(&self, principal: &EntityUid, scope: &str, entities: &Entities) -> Vec<Key> {
        let mut keys = vec![
            Key::Principal(principal.clone()),
            Key::Ancestor(principal.clone()),
            Key::Scope(scope.to_owned()),
            Key::Type(principal.type_name().clone()),
        ];
        if let Some(ancestors) = entities.ancestors(principal) {
            keys.extend(ancestors.cloned().map(Key::Ancestor));
        }
        if !self.attrs.is_empty()
            && let Some(entity) = entities.get(principal)
        {
            for name in &self.attrs {
                if let Some(Ok(cedar_policy::EvalResult::String(value))) = entity.attr(name) {
                    keys.push(Key::Attr(name.clone(), value));
                }
            }
        }
        keys
    }
}

/// Decides `request` against the whole of `policies`, unsplit (to list
/// every policy that errored, as `writ policy explain` does).
pub(crate) fn is_authorized_whole(
    authorizer: &Authorizer,
    request: &Request,
    policies: &PolicySet,
    entities: &Entities,
) -> Verdict {
    let mut combined = Combined::default();
    combined.add(authorizer, request, policies, entities);
    combined.verdict()
}

/// Cedar's answers over disjoint sets, combined as one answer over their
/// union.
#[derive(Default)]
struct Combined {
    forbidden: BTreeSet<PolicyId>,
    permitted: BTreeSet<PolicyId>,
    errors: Vec<String>,
}

impl Combined {
    fn add(
        &mut self,
        authorizer: &Authorizer,
        request: &Request,
        set: &PolicySet,
        entities: &Entities,
    ) {
        if set.is_empty() {
            return;
        }
        let response = authorizer.is_authorized(request, set, entities);
        let reasons = response.diagnostics().reason().cloned();
        // A set that denies with reasons has a satisfied forbid.
        match response.decision() {
            CedarDecision::Allow => self.permitted.extend(reasons),
            CedarDecision::Deny => self.forbidden.extend(reasons),
        }
        self.errors
            .extend(response.diagnostics().errors().map(ToString::to_string));
    }

    fn verdict(self) -> Verdict {
        if self.forbidden.is_empty() {
            Verdict {
                allowed: !self.permitted.is_empty(),
                reasons: self.permitted,
                errors: self.errors,
            }
        } else {
            Verdict {
                allowed: false,
                reasons: self.forbidden,
                errors: self.errors,
            }
        }
    }
}

fn add(set: &mut PolicySet, policy: &Policy) {
    // Ids are unique in the source set, so adding cannot clash.
    let _ = set.add(policy.clone());
}

/// The bucket keys of one policy: the most selective requirement it has,
/// or none. Several keys only for a scope set literal.
fn keys_of(policy: &Policy) -> Vec<Key> {
    let principal = policy.principal_constraint();
    if let PrincipalConstraint::Eq(uid) = principal {
        return vec![Key::Principal(uid)];
    }
    let conjuncts = policy
        .to_json()
        .map(|json| when_conjuncts(&json))
        .unwrap_or_default();
    let mut scopes: Option<Vec<String>> = None;
    for conjunct in &conjuncts {
        if let Some((name, value)) = principal_attr_equals(conjunct) {
            return vec![Key::Attr(name, value)];
        }
        if scopes.is_none() {
            scopes = scope_literals(conjunct);
        }
    }
    match (principal, scopes) {
        (PrincipalConstraint::In(uid) | PrincipalConstraint::IsIn(_, uid), _) => {
            vec![Key::Ancestor(uid)]
        }
        (_, Some(scopes)) => scopes.into_iter().map(Key::Scope).collect(),
        (PrincipalConstraint::Is(ty), None) => vec![Key::Type(ty)],
        _ => Vec::new(),
    }
}

/// The scopes `policy` can apply to, when a conjunct of its condition pins
/// `context.scope` to literals; `None` when it may apply to any.
pub(crate) fn pinned_scopes(policy: &Policy) -> Option<BTreeSet<String>> {
    let json = policy.to_json().ok()?;
    when_conjuncts(&json)
        .iter()
        .find_map(scope_literals)
        .map(|scopes| scopes.into_iter().collect())
}

/// The conjuncts every `when` body must satisfy, flattened through `&&`
/// (`unless` clauses only narrow a policy further: they are not needed).
fn when_conjuncts(policy: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let Some(conditions) = policy.get("conditions").and_then(Value::as_array) else {
        return out;
    };
    for condition in conditions {
        if condition.get("kind").and_then(Value::as_str) != Some("when") {
            continue;
        }
        if let Some(body) = condition.get("body") {
            flatten_and(body, &mut out);
        }
    }
    out
}

fn flatten_and(expr: &Value, out: &mut Vec<Value>) {
    match expr.get("&&") {
        Some(and) => {
            if let Some(left) = and.get("left") {
                flatten_and(left, out);
            }
            if let Some(right) = and.get("right") {
                flatten_and(right, out);
            }
        }
        None => out.push(expr.clone()),
    }
}

/// The two sides of `left == right`.
fn equality(expr: &Value) -> Option<(&Value, &Value)> {
    let eq = expr.get("==")?;
    Some((eq.get("left")?, eq.get("right")?))
}

/// `"value"` when `expr` is a string literal.
fn string_literal(expr: &Value) -> Option<&str> {
    expr.get("Value")?.as_str()
}

/// `attr` when `expr` is `<var>.attr`.
fn attr_of<'a>(expr: &'a Value, var: &str) -> Option<&'a str> {
    let dot = expr.get(".")?;
    if dot.get("left")?.get("Var")?.as_str()? != var {
        return None;
    }
    dot.get("attr")?.as_str()
}

/// `principal.<attr> == "<value>"`, either way round.
fn principal_attr_equals(expr: &Value) -> Option<(String, String)> {
    let (left, right) = equality(expr)?;
    let (attr, value) = match (attr_of(left, "principal"), string_literal(right)) {
        (Some(attr), Some(value)) => (attr, value),
        _ => (attr_of(right, "principal")?, string_literal(left)?),
    };
    Some((attr.to_owned(), value.to_owned()))
}

/// The scopes `expr` pins `context.scope` to: `context.scope == "s"`
/// (either way round) or `["a", "b"].contains(context.scope)`.
fn scope_literals(expr: &Value) -> Option<Vec<String>> {
    let is_scope = |e: &Value| attr_of(e, "context") == Some("scope");
    if let Some((left, right)) = equality(expr) {
        return match (is_scope(left), is_scope(right)) {
            (true, _) => Some(vec![string_literal(right)?.to_owned()]),
            (_, true) => Some(vec![string_literal(left)?.to_owned()]),
            _ => None,
        };
    }
    let contains = expr.get("contains")?;
    if !is_scope(contains.get("right")?) {
        return None;
    }
    let set = contains.get("left")?.get("Set")?.as_array()?;
    set.iter()
        .map(|item| string_literal(item).map(str::to_owned))
        .collect::<Option<BTreeSet<_>>>()
        .map(|s| s.into_iter().collect())
}

/// How many policies each bucket holds, for logs and tests.
#[cfg(test)]
impl PolicyIndex {
    fn shape(&self) -> std::collections::BTreeMap<String, usize> {
        let mut out: std::collections::BTreeMap<String, usize> = self
            .buckets
            .iter()
            .map(|(k, v)| {
                let name = match k {
                    Key::Principal(uid) => format!("principal {uid}"),
                    Key::Attr(name, value) => format!("attr {name}={value}"),
                    Key::Ancestor(uid) => format!("ancestor {uid}"),
                    Key::Scope(scope) => format!("scope {scope}"),
                    Key::Type(ty) => format!("type {ty}"),
                };
                (name, v.num_of_policies())
            })
            .collect();
        out.insert("always".into(), self.always.num_of_policies());
        out
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use cedar_policy::{Context, RestrictedExpression};
    use proptest::prelude::*;

    use super::*;

    fn uid(text: &str) -> EntityUid {
        EntityUid::from_str(text).unwrap()
    }

    fn policy_set(policies: &[String]) -> PolicySet {
        let mut set = PolicySet::new();
        for (i, text) in policies.iter().enumerate() {
            let policy = Policy::parse(Some(PolicyId::new(format!("p{i}"))), text).unwrap();
            set.add(policy).unwrap();
        }
        set
    }

    /// `a` (namespace n1) and `c` (no namespace) are in Team t1, `b`
    /// (namespace n2) in t2; `d` is an Agent in t2 with namespace n1.
    fn entities() -> Entities {
        Entities::from_json_value(
            serde_json::json!([
                {"uid": {"type": "Team", "id": "t1"}, "attrs": {}, "parents": []},
                {"uid": {"type": "Team", "id": "t2"}, "attrs": {}, "parents": []},
                {"uid": {"type": "Workload", "id": "a"}, "attrs": {"namespace": "n1"},
                 "parents": [{"type": "Team", "id": "t1"}]},
                {"uid": {"type": "Workload", "id": "b"}, "attrs": {"namespace": "n2"},
                 "parents": [{"type": "Team", "id": "t2"}]},
                {"uid": {"type": "Workload", "id": "c"}, "attrs": {},
                 "parents": [{"type": "Team", "id": "t1"}]},
                {"uid": {"type": "Agent", "id": "d"}, "attrs": {"namespace": "n1"},
                 "parents": [{"type": "Team", "id": "t2"}]},
                {"uid": {"type": "Target", "id": "x"}, "attrs": {}, "parents": []},
            ]),
            None,
        )
        .unwrap()
    }

    const PRINCIPALS: [&str; 8] = [
        "",
        "principal == Workload::\"a\"",
        "principal == Workload::\"b\"",
        "principal in Team::\"t1\"",
        "principal in Team::\"t2\"",
        "principal is Workload",
        "principal is Agent",
        "principal is Workload in Team::\"t1\"",
    ];

    fn conjunct() -> impl Strategy<Value = String> {
        prop_oneof![
            (0..4u8).prop_map(|k| format!("context.scope == \"s{k}\"")),
            (0..4u8).prop_map(|k| format!("\"s{k}\" == context.scope")),
            Just("[\"s1\", \"s2\"].contains(context.scope)".to_owned()),
            (1..4u8).prop_map(|k| format!(
                "principal has namespace && principal.namespace == \"n{k}\""
            )),
            // Errors for a principal without the attribute: Cedar skips it.
            (1..4u8).prop_map(|k| format!("\"n{k}\" == principal.namespace")),
            (0..24u8).prop_map(|h| format!("context.hour < {h}")),
            Just("context.scope like \"s*\"".to_owned()),
            Just("true".to_owned()),
        ]
    }

    fn policy() -> impl Strategy<Value = String> {
        (
            prop::bool::weighted(0.2),
            0..PRINCIPALS.len(),
            prop::collection::vec(conjunct(), 0..4),
            prop::bool::weighted(0.1),
        )
            .prop_map(|(forbid, principal, conjuncts, unless)| {
                let effect = if forbid { "forbid" } else { "permit" };
                let principal = match PRINCIPALS[principal] {
                    "" => "principal".to_owned(),
                    p => p.to_owned(),
                };
                let mut text = format!(
                    "{effect} ({principal}, action == Action::\"mint\", resource == Target::\"x\")"
                );
                if !conjuncts.is_empty() {
                    text.push_str(&format!(" when {{ {} }}", conjuncts.join(" && ")));
                }
                if unless {
                    text.push_str(" unless { context.hour == 3 }");
                }
                text + ";"
            })
    }

    fn request(principal: &str, scope: &str, hour: i64) -> Request {
        let context = Context::from_pairs([
            (
                "scope".to_owned(),
                RestrictedExpression::new_string(scope.to_owned()),
            ),
            ("hour".to_owned(), RestrictedExpression::new_long(hour)),
        ])
        .unwrap();
        Request::new(
            uid(principal),
            uid("Action::\"mint\""),
            uid("Target::\"x\""),
            context,
            None,
        )
        .unwrap()
    }

    fn whole(
        set: &PolicySet,
        request: &Request,
        entities: &Entities,
    ) -> (bool, BTreeSet<PolicyId>) {
        let response = Authorizer::new().is_authorized(request, set, entities);
        (
            response.decision() == CedarDecision::Allow,
            response.diagnostics().reason().cloned().collect(),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// The split set decides every request as the whole set does, and
        /// names the same determining policies.
        #[test]
        fn indexed_answers_are_the_whole_sets(
            policies in prop::collection::vec(policy(), 1..80),
            principal in prop::sample::select(vec![
                "Workload::\"a\"", "Workload::\"b\"", "Workload::\"c\"", "Agent::\"d\"",
                "Workload::\"unknown\"",
            ]),
            scope in (0..5u8).prop_map(|k| format!("s{k}")),
            hour in 0..24i64,
        ) {
            let set = policy_set(&policies);
            let index = PolicyIndex::build(&set);
            let entities = entities();
            let request = request(principal, &scope, hour);
            let verdict = index.is_authorized(
                &Authorizer::new(), &request, &uid(principal), &scope, &entities,
            );
            prop_assert_eq!((verdict.allowed, verdict.reasons), whole(&set, &request, &entities));
        }
    }

    #[test]
    fn policies_go_to_their_most_selective_bucket() {
        let mut policies = Vec::new();
        for i in 0..40 {
            policies.push(format!(
                "permit (principal is Workload, action == Action::\"mint\", resource == Target::\"x\") \
                 when {{ principal has namespace && principal.namespace == \"ns{i}\" && context.scope == \"read\" }};"
            ));
        }
        policies.push("permit (principal in Team::\"t1\", action, resource) when { context.scope == \"read\" };".into());
        policies.push(
            "permit (principal, action, resource) when { [\"a\", \"b\"].contains(context.scope) };"
                .into(),
        );
        policies.push("permit (principal == Workload::\"a\", action, resource);".into());
        policies.push(
            "permit (principal is Agent, action, resource) when { context.hour < 3 };".into(),
        );
        policies.push("forbid (principal, action, resource) when { context.hour > 20 };".into());
        let index = PolicyIndex::build(&policy_set(&policies));
        let shape = index.shape();
        assert_eq!(shape["attr namespace=ns7"], 1, "{shape:?}");
        assert_eq!(shape["ancestor Team::\"t1\""], 1, "{shape:?}");
        assert_eq!(shape["scope a"], 1, "{shape:?}");
        assert_eq!(shape["scope b"], 1, "{shape:?}");
        assert_eq!(shape["principal Workload::\"a\""], 1, "{shape:?}");
        assert_eq!(shape["type Agent"], 1, "{shape:?}");
        assert_eq!(shape["always"], 1, "{shape:?}");
        assert_eq!(shape.len(), 40 + 1 + 2 + 1 + 1 + 1, "{shape:?}");
    }

    #[test]
    fn a_scope_is_pinned_only_by_a_conjunct() {
        let pinned = |text: &str| {
            pinned_scopes(&Policy::parse(None, text).unwrap())
                .map(|s| s.into_iter().collect::<Vec<_>>())
        };
        assert_eq!(
            pinned(
                "permit (principal, action, resource) when { context.hour < 3 && context.scope == \"a\" };"
            ),
            Some(vec!["a".to_owned()])
        );
        assert_eq!(
            pinned(
                "permit (principal, action, resource) when { [\"b\", \"a\"].contains(context.scope) };"
            ),
            Some(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(
            pinned(
                "permit (principal, action, resource) when { context.scope == \"a\" || context.hour < 3 };"
            ),
            None
        );
        assert_eq!(
            pinned("permit (principal, action, resource) unless { context.scope == \"a\" };"),
            None
        );
        assert_eq!(pinned("permit (principal, action, resource);"), None);
    }

    #[test]
    fn a_small_slice_is_one_set() {
        let policies: Vec<String> = (0..SPLIT_ABOVE)
            .map(|i| {
                format!(
                    "permit (principal, action, resource) when {{ context.scope == \"s{i}\" }};"
                )
            })
            .collect();
        let index = PolicyIndex::build(&policy_set(&policies));
        assert!(index.buckets.is_empty());
        assert_eq!(index.always.num_of_policies(), SPLIT_ABOVE);
    }
}
