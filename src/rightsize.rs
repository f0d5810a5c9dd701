//! Rightsizing (CONTRACT section 10): what policy permits each principal
//! (`PolicySnapshot::access`, Cedar's partial evaluation) against what the
//! audit log shows it was granted over a window, so over-privilege becomes a
//! list of concrete removals, with a suggested policy change to review.
//!
//! The log is read once, streamed: memory grows with the distinct
//! principals, targets and scopes, never with the number of records.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use crate::audit::Recorded;

/// What the log shows of one principal.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Its last recorded attributes.
    pub attrs: BTreeMap<String, serde_json::Value>,
    /// (target, scope) granted inside the window.
    pub used: BTreeSet<(String, String)>,
}

/// The principals and scopes of an audit log's token requests.
#[derive(Debug, Default)]
pub struct Usage {
    /// Records at or after this second count as use.
    since: u64,
    /// (type, id) to what was seen of it.
    pub principals: BTreeMap<(String, String), Seen>,
    /// Every scope asked for anywhere: candidates besides the policies'
    /// literals.
    pub scopes: BTreeSet<String>,
}

impl Usage {
    /// An empty usage counting grants from `since` (seconds since the epoch).
    pub fn since(since: u64) -> Self {
        Self {
            since,
            ..Self::default()
        }
    }

    /// Adds one record: a decided token request names its principal (seen,
    /// whenever it was) and, inside the window, the scopes it was granted.
    pub fn add(&mut self, record: &Recorded) {
        if !record.is_replayable_mint() {
            return;
        }
        let (Some(id), Some(target)) = (&record.principal, &record.target) else {
            return;
        };
        let (entity_type, _) = record.principal_type_or_guess();
        let seen = self
            .principals
            .entry((entity_type.to_owned(), id.clone()))
            .or_default();
        if !record.attrs.is_empty() {
            seen.attrs = record.attrs.clone();
        }
        self.scopes.extend(record.scopes_requested.iter().cloned());
        let recent = writ_proto::time::parse_rfc3339(&record.time).is_some_and(|t| t >= self.since);
        if recent && record.decision == "allow" {
            for scope in &record.scopes_granted {
                seen.used.insert((target.clone(), scope.clone()));
            }
        }
    }
}

/// A grant policy permits and the window did not see used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unused {
    /// `Type::"id"`.
    pub principal: String,
    /// The target.
    pub target: String,
    /// The scope.
    pub scope: String,
    /// The conditions policy allows it under (empty: always).
    pub conditions: Vec<String>,
}

/// A policy file that forbids every unused grant, as a unified diff adding
/// `rightsize.cedar` to `dir`: the operator reviews it, narrows the permits
/// themselves if they prefer, and ships it with `writ policy diff` first.
pub fn suggestion(unused: &[Unused], dir: &str, since: &str) -> String {
    let mut lines = vec![format!(
        "// Grants policy permits that no token request used since {since}\n// (writ rightsize). Each forbid removes one; delete a forbid to keep its grant."
    )];
    for (i, u) in unused.iter().enumerate() {
        let (entity_type, id) = u
            .principal
            .split_once("::")
            .unwrap_or(("Workload", &u.principal));
        lines.push(String::new());
        lines.push(format!("@id(\"rightsize-{}\")", i + 1));
        lines.push(format!(
            "forbid (principal == {entity_type}::{id}, action == Action::\"mint\", resource == Target::{:?})",
            u.target
        ));
        lines.push(format!("when {{ context.scope == {:?} }};", u.scope));
    }
    let mut out = String::new();
    let _ = writeln!(out, "--- /dev/null");
    let _ = writeln!(out, "+++ {dir}/rightsize.cedar");
    let _ = writeln!(
        out,
        "@@ -0,0 +1,{} @@",
        lines
            .iter()
            .map(|l| l.lines().count().max(1))
            .sum::<usize>()
    );
    for line in lines.iter().flat_map(|l| {
        if l.is_empty() {
            vec![""]
        } else {
            l.lines().collect()
        }
    }) {
        let _ = writeln!(out, "+{line}");
    }
    out
}

/// The Prometheus text of `writ_unused_grants{principal}`, one gauge per
/// principal the audit saw (0 for a rightsized one), for a textfile
/// collector.
pub fn metrics(principals: &[String], unused: &[Unused]) -> String {
    let mut counts: BTreeMap<&str, usize> = principals.iter().map(|p| (p.as_str(), 0)).collect();
    for u in unused {
        *counts.entry(u.principal.as_str()).or_default() += 1;
    }
    let mut out = String::from(
        "# HELP writ_unused_grants Grants policy permits that the principal did not use in the window.\n# TYPE writ_unused_grants gauge\n",
    );
    for (principal, n) in counts {
        let label = principal.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(out, "writ_unused_grants{{principal=\"{label}\"}} {n}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unused(scope: &str) -> Unused {
        Unused {
            principal: "Workload::\"spiffe://x/ns/a/sa/b\"".into(),
            target: "payments-db".into(),
            scope: scope.into(),
            conditions: Vec::new(),
        }
    }

    #[test]
    fn the_suggestion_is_a_diff_adding_one_forbid_per_unused_grant() {
        let diff = suggestion(
            &[unused("admin"), unused("write")],
            "policies",
            "2026-10-30T00:00:00Z",
        );
        let lines: Vec<&str> = diff.lines().collect();
        assert_eq!(lines[0], "--- /dev/null");
        assert_eq!(lines[1], "+++ policies/rightsize.cedar");
        assert_eq!(lines[2], format!("@@ -0,0 +1,{} @@", lines.len() - 3));
        assert!(lines[3..].iter().all(|l| l.starts_with('+')));
        assert!(diff.contains("+forbid (principal == Workload::\"spiffe://x/ns/a/sa/b\", action == Action::\"mint\", resource == Target::\"payments-db\")"));
        assert!(diff.contains("+when { context.scope == \"admin\" };"));
        assert!(diff.contains("@id(\"rightsize-2\")"));
    }

    #[test]
    fn metrics_count_unused_grants_per_principal_with_escaped_labels() {
        let text = metrics(
            &["Workload::\"a\"".into(), "User::\"b\"".into()],
            &[unused("x")],
        );
        assert!(text.contains("writ_unused_grants{principal=\"User::\\\"b\\\"\"} 0"));
        assert!(text.contains("# TYPE writ_unused_grants gauge"));
    }
}
