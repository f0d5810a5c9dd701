//! `writ rightsize`: the grants policy permits each principal that the audit
//! log shows it did not use over a window (`crate::rightsize`), as a table,
//! JSON lines, a suggested policy diff (`--suggest`) or Prometheus gauges
//! (`--metrics`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::CliError;
use super::access::{attested, attr_value};
use crate::audit::{ReadError, records};
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::policy::PolicySnapshot;
use crate::rightsize::{Unused, Usage, metrics, suggestion};

/// What `writ rightsize` was asked.
pub struct RightsizeQuery {
    /// The policy directory.
    pub dir: PathBuf,
    /// The audit log.
    pub audit: PathBuf,
    /// The window: grants used since this long ago count as used.
    pub since: Duration,
    /// Print a policy diff removing the unused grants.
    pub suggest: bool,
    /// Print Prometheus gauges of unused grants per principal.
    pub metrics: bool,
    /// JSON lines instead of a table.
    pub json: bool,
}

/// The columns of the table.
const COLUMNS: [&str; 4] = ["principal", "target", "scope", "conditions"];

/// Runs `writ rightsize`.
pub fn run(q: RightsizeQuery) -> Result<(), CliError> {
    let snapshot = PolicySnapshot::load(&q.dir).map_err(CliError::new)?;
    let now = SystemClock.unix_now();
    let since = now.saturating_sub(q.since.as_secs());
    let mut usage = Usage::since(since);
    let mut unreadable = 0usize;
    for item in records(&q.audit).map_err(CliError::new)? {
        match item {
            Ok(record) => usage.add(&record),
            Err(e @ ReadError::Line { .. }) => {
                unreadable += 1;
                eprintln!("writ: warning: {e}; skipped");
            }
            Err(e) => return Err(CliError::new(e)),
        }
    }
    // A principal entities.json names and the log never saw used nothing.
    for (entity_type, id) in snapshot.known_principals() {
        usage
            .principals
            .entry((entity_type.as_str().to_owned(), id))
            .or_default();
    }
    let mut unused: Vec<Unused> = Vec::new();
    let mut permitted = 0usize;
    let mut principals = Vec::new();
    for ((entity_type, id), seen) in &usage.principals {
        let name = format!("{entity_type}::{id:?}");
        let attrs: BTreeMap<_, _> = seen
            .attrs
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), attr_value(v)?)))
            .collect();
        let who = match attested(&name, attrs) {
            Ok(who) => who,
            Err(e) => {
                eprintln!("writ: warning: {e}; skipped");
                continue;
            }
        };
        let rows = snapshot
            .access(&who, None, &usage.scopes, now)
            .map_err(|e| CliError::new(format!("{name}: {e}")))?;
        permitted += rows.len();
        principals.push(name.clone());
        unused.extend(
            rows.into_iter()
                .filter(|row| !seen.used.contains(&(row.target.clone(), row.scope.clone())))
                .map(|row| Unused {
                    principal: name.clone(),
                    target: row.target,
                    scope: row.scope,
                    conditions: row.conditions,
                }),
        );
    }
    let from = rfc3339(since);
    if q.metrics {
        print!("{}", metrics(&principals, &unused));
    } else if q.suggest {
        print!(
            "{}",
            suggestion(&unused, &q.dir.display().to_string(), &from)
        );
    } else if q.json {
        for u in &unused {
            println!("{}", serde_json::to_string(u).map_err(CliError::new)?);
        }
    } else {
        let rows: Vec<serde_json::Value> = unused
            .iter()
            .map(|u| {
                let conditions = if u.conditions.is_empty() {
                    "always".to_owned()
                } else {
                    u.conditions.join(" | ")
                };
                serde_json::json!({"principal": u.principal, "target": u.target, "scope": u.scope, "conditions": conditions})
            })
            .collect();
        print!("{}", super::table::table(&rows, &COLUMNS));
    }
    eprintln!(
        "writ: {} principal(s), {permitted} permitted grant(s), {} unused since {from}, {unreadable} unreadable line(s)",
        principals.len(),
        unused.len()
    );
    Ok(())
}
