//! `writ inventory` and `GET /admin/v1/inventory` (CONTRACT section 10):
//! every principal the audit log saw asking for tokens, with how it
//! attested, who vouched for it, who owns it, when it was first and last
//! seen, what it was granted and denied per target, and how often an agent
//! acted for it.
//!
//! The log is streamed and aggregated as it is read: memory grows with the
//! number of distinct principals, targets and scopes, not with the log.
//! Owners come from the principal's attested `owner` attribute, else from
//! `entities.json` of a policy directory (`owner` attribute, else a parent).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::audit::{ReadError, Recorded, records};
use crate::policy::PolicySnapshot;

/// One principal of the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// Its id.
    pub principal: String,
    /// Its Cedar entity type.
    #[serde(rename = "type")]
    pub entity_type: String,
    /// How it attested (`kubernetes`, `oidc`, `mtls`, `unix`, `writ`).
    pub attestations: BTreeSet<String>,
    /// Who vouched for it (the attestation issuers recorded).
    pub issuers: BTreeSet<String>,
    /// Who owns it, or `null` when nobody is named.
    pub owner: Option<String>,
    /// Its first token request in the log (RFC 3339).
    pub first_seen: String,
    /// Its last one.
    pub last_seen: String,
    /// Scopes granted, per target.
    pub granted: BTreeMap<String, BTreeSet<String>>,
    /// Scopes asked for and not granted, per target.
    pub denied: BTreeMap<String, BTreeSet<String>>,
    /// Token requests an agent made for it.
    pub delegations: u64,
    /// Its first request, seconds since the epoch.
    #[serde(skip)]
    pub first_seen_unix: u64,
    /// Its last request, seconds since the epoch (for `--stale`).
    #[serde(skip)]
    pub last_seen_unix: u64,
}

/// The inventory being read, one [`Recorded`] at a time.
#[derive(Debug, Default)]
pub struct Inventory {
    principals: BTreeMap<(String, String), Principal>,
    /// Lines of the log that could not be read.
    pub unreadable: u64,
}

impl Inventory {
    /// Counts `record` when it is a token request from a known principal.
    pub fn add(&mut self, record: &Recorded) {
        let (Some(id), true) = (&record.principal, record.action == "mint") else {
            return;
        };
        let (entity_type, _) = record.principal_type_or_guess();
        let at = writ_proto::time::parse_rfc3339(&record.time);
        let entry = self
            .principals
            .entry((id.clone(), entity_type.to_owned()))
            .or_insert_with(|| Principal {
                principal: id.clone(),
                entity_type: entity_type.to_owned(),
                attestations: BTreeSet::new(),
                issuers: BTreeSet::new(),
                owner: None,
                first_seen: record.time.clone(),
                last_seen: record.time.clone(),
                granted: BTreeMap::new(),
                denied: BTreeMap::new(),
                delegations: 0,
                first_seen_unix: at.unwrap_or(u64::MAX),
                last_seen_unix: at.unwrap_or(0),
            });
        if let Some(kind) = &record.attestation {
            entry.attestations.insert(kind.clone());
        }
        if let Some(issuer) = record.issuer() {
            entry.issuers.insert(issuer.to_owned());
        }
        if let Some(owner) = record.attrs.get("owner").and_then(|o| o.as_str()) {
            entry.owner = Some(owner.to_owned());
        }
        if let Some(at) = at {
            if at < entry.first_seen_unix {
                entry.first_seen = record.time.clone();
                entry.first_seen_unix = at;
            }
            if at >= entry.last_seen_unix {
                entry.last_seen = record.time.clone();
                entry.last_seen_unix = at;
            }
        }
        if !record.act.is_empty() {
            entry.delegations += 1;
        }
        let Some(target) = &record.target else {
            return;
        };
        // Cedar's verdict per scope: those it granted, even when a later
        // step (the kill switch, a lifetime) refused the token.
        for scope in &record.scopes_requested {
            let side = match record.scopes_granted.contains(scope) {
                true => &mut entry.granted,
                false => &mut entry.denied,
            };
            side.entry(target.clone())
                .or_default()
                .insert(scope.clone());
        }
    }

    /// The principals, sorted by type then id, with owners from `owners`
    /// where none was attested; with `stale`, only those whose last request
    /// is at least that long before `now`.
    pub fn finish(
        self,
        owners: Option<&PolicySnapshot>,
        stale: Option<Duration>,
        now: u64,
    ) -> Vec<Principal> {
        let mut out: Vec<Principal> = self
            .principals
            .into_values()
            .filter(|p| match stale {
                Some(d) => p.last_seen_unix.saturating_add(d.as_secs()) <= now,
                None => true,
            })
            .map(|mut p| {
                if p.owner.is_none() {
                    p.owner = owners.and_then(|s| s.owner_of(&p.entity_type, &p.principal));
                }
                p
            })
            .collect();
        out.sort_by(|a, b| (&a.entity_type, &a.principal).cmp(&(&b.entity_type, &b.principal)));
        out
    }
}

/// Reads the whole log at `path` into an inventory; each unreadable line
/// is handed to `skipped`, counted and skipped.
pub fn read(path: &Path, mut skipped: impl FnMut(&ReadError)) -> Result<Inventory, ReadError> {
    let mut inventory = Inventory::default();
    for item in records(path)? {
        match item {
            Ok(record) => inventory.add(&record),
            Err(e @ ReadError::Line { .. }) => {
                skipped(&e);
                inventory.unreadable += 1;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(inventory)
}

/// The inventory as an aligned table; principals without an owner say
/// `NONE` in capitals so they stand out.
pub fn table(principals: &[Principal]) -> String {
    let width = |f: &dyn Fn(&Principal) -> usize, header: &str| {
        principals
            .iter()
            .map(f)
            .max()
            .unwrap_or(0)
            .max(header.len())
    };
    let id_w = width(&|p| p.principal.len(), "PRINCIPAL");
    let type_w = width(&|p| p.entity_type.len(), "TYPE");
    let owner_w = width(&|p| p.owner.as_deref().map_or(4, str::len), "OWNER");
    let att_w = width(&|p| join(&p.attestations).len(), "ATTESTATIONS");
    let mut out = format!(
        "{:<id_w$} {:<type_w$} {:<owner_w$} {:<att_w$} {:<20} {:>5}  GRANTED / DENIED\n",
        "PRINCIPAL", "TYPE", "OWNER", "ATTESTATIONS", "LAST_SEEN", "DELEG"
    );
    for p in principals {
        let grants = |side: &BTreeMap<String, BTreeSet<String>>| match side.is_empty() {
            true => "-".to_owned(),
            false => side
                .iter()
                .map(|(target, scopes)| format!("{target}:{}", join(scopes)))
                .collect::<Vec<_>>()
                .join(" "),
        };
        let denied = match p.denied.is_empty() {
            true => String::new(),
            false => format!(" / denied {}", grants(&p.denied)),
        };
        out += &format!(
            "{:<id_w$} {:<type_w$} {:<owner_w$} {:<att_w$} {:<20} {:>5}  {}{denied}\n",
            p.principal,
            p.entity_type,
            p.owner.as_deref().unwrap_or("NONE"),
            join(&p.attestations),
            p.last_seen,
            p.delegations,
            grants(&p.granted),
        );
    }
    out
}

fn join(set: &BTreeSet<String>) -> String {
    match set.is_empty() {
        true => "-".to_owned(),
        false => set.iter().cloned().collect::<Vec<_>>().join(","),
    }
}
