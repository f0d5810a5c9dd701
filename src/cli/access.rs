//! `writ access`: what one principal may reach (`--principal`), or who may
//! reach one target (`--target`: the principals of `entities.json` and of
//! the audit log), each scope with the conditions under which it is
//! allowed, by Cedar's partial evaluation (`policy::access`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::EntityUid;

use super::CliError;
use crate::attest::{Attested, AttrValue};
use crate::audit::{ReadError, records};
use crate::clock::{Clock, SystemClock};
use crate::model::{AttestationKind, EntityType, Principal};
use crate::policy::{Access, PolicySnapshot};

/// An attributes file larger than this is refused unread.
const MAX_ATTRS_BYTES: u64 = 1 << 20;

/// What `writ access` was asked.
pub struct AccessQuery {
    /// The policy directory.
    pub dir: PathBuf,
    /// `Type::"id"`, for the principal's view.
    pub principal: Option<String>,
    /// A JSON object of the principal's attested attributes.
    pub attrs: Option<PathBuf>,
    /// The target, for the target's view.
    pub target: Option<String>,
    /// An audit log: more principals (with their recorded attributes) and
    /// the scopes they asked for.
    pub audit: Option<PathBuf>,
    /// JSON lines instead of a table.
    pub json: bool,
}

/// Runs `writ access`.
pub fn run(q: AccessQuery) -> Result<(), CliError> {
    let snapshot = PolicySnapshot::load(&q.dir).map_err(CliError::new)?;
    let now = SystemClock.unix_now();
    let seen = match &q.audit {
        Some(path) => Seen::read(path)?,
        None => Seen::default(),
    };
    let rows = match (&q.principal, &q.target) {
        (Some(principal), _) => {
            let attrs = match &q.attrs {
                Some(path) => read_attrs(path)?,
                None => BTreeMap::new(),
            };
            let who = attested(principal, attrs)?;
            let mut rows = snapshot
                .access(&who, q.target.as_deref(), &seen.all_scopes(), now)
                .map_err(|e| {
                    CliError::new(format!("{}: {e}", q.target.as_deref().unwrap_or("-")))
                })?;
            for row in &mut rows {
                row.principal = None;
            }
            rows
        }
        (None, Some(target)) => {
            if !snapshot.has_target(target) {
                return Err(CliError::new(format!(
                    "{target}: not a target in entities.json"
                )));
            }
            let mut principals: BTreeMap<(String, String), BTreeMap<String, AttrValue>> = snapshot
                .known_principals()
                .into_iter()
                .map(|(t, id)| ((t.as_str().to_owned(), id), BTreeMap::new()))
                .collect();
            principals.extend(seen.principals.clone());
            let scopes = seen.scopes.get(target).cloned().unwrap_or_default();
            let mut rows = Vec::new();
            for ((entity_type, id), attrs) in principals {
                let who = attested(&format!("{entity_type}::{id:?}"), attrs)?;
                rows.extend(
                    snapshot
                        .access(&who, Some(target), &scopes, now)
                        .map_err(CliError::new)?,
                );
            }
            rows
        }
        (None, None) => {
            return Err(CliError::new(
                "name --principal 'Type::\"id\"' or --target T",
            ));
        }
    };
    if q.json {
        for row in &rows {
            println!("{}", serde_json::to_string(row).map_err(CliError::new)?);
        }
    } else {
        print!("{}", table(&rows));
    }
    Ok(())
}

/// Principals and scopes of an audit log's token requests.
#[derive(Default)]
struct Seen {
    /// (type, id) to its last recorded attributes.
    principals: BTreeMap<(String, String), BTreeMap<String, AttrValue>>,
    /// Target to the scopes asked for it.
    scopes: BTreeMap<String, BTreeSet<String>>,
}

impl Seen {
    fn read(path: &Path) -> Result<Self, CliError> {
        let mut seen = Self::default();
        for item in records(path).map_err(CliError::new)? {
            let record = match item {
                Ok(r) if r.is_replayable_mint() => r,
                Ok(_) => continue,
                Err(e @ ReadError::Line { .. }) => {
                    eprintln!("writ: warning: {e}; skipped");
                    continue;
                }
                Err(e) => return Err(CliError::new(e)),
            };
            let (entity_type, _) = record.principal_type_or_guess();
            let attrs = record
                .attrs
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), attr_value(v)?)))
                .collect();
            if let (Some(id), Some(target)) = (&record.principal, &record.target) {
                seen.principals
                    .insert((entity_type.to_owned(), id.clone()), attrs);
                seen.scopes
                    .entry(target.clone())
                    .or_default()
                    .extend(record.scopes_requested.iter().cloned());
            }
        }
        Ok(seen)
    }

    fn all_scopes(&self) -> BTreeSet<String> {
        self.scopes.values().flatten().cloned().collect()
    }
}

pub(super) fn attr_value(v: &serde_json::Value) -> Option<AttrValue> {
    match v {
        serde_json::Value::String(s) => Some(AttrValue::String(s.clone())),
        serde_json::Value::Number(n) => n.as_i64().map(AttrValue::Long),
        _ => None,
    }
}

fn read_attrs(path: &Path) -> Result<BTreeMap<String, AttrValue>, CliError> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_ATTRS_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| CliError::new(format!("{}: {e}", path.display())))?;
    let object: BTreeMap<String, serde_json::Value> = serde_json::from_str(&text)
        .map_err(|e| CliError::new(format!("{}: not a JSON object ({e})", path.display())))?;
    object
        .into_iter()
        .map(|(k, v)| match attr_value(&v) {
            Some(value) => Ok((k, value)),
            None => Err(CliError::new(format!(
                "{}: {k}: only strings and integers",
                path.display()
            ))),
        })
        .collect()
}

/// The principal `Type::"id"` with `attributes`, as attestation would make it.
pub(super) fn attested(
    principal: &str,
    attributes: BTreeMap<String, AttrValue>,
) -> Result<Attested, CliError> {
    let uid = EntityUid::from_str(principal)
        .map_err(|_| CliError::new(format!("--principal {principal:?} is not Type::\"id\"")))?;
    let type_name = uid.type_name().to_string();
    let entity_type = EntityType::parse(&type_name).ok_or_else(|| {
        CliError::new(format!(
            "{type_name}: a principal is a Workload, an Agent or a User"
        ))
    })?;
    let id = Principal::new(uid.id().unescaped().to_owned()).map_err(CliError::new)?;
    Ok(Attested {
        principal: id,
        entity_type,
        // Cedar sees the attestation kind as unknown; this is never read.
        kind: AttestationKind::Kubernetes,
        attributes,
        expires_at: u64::MAX,
    })
}

/// TARGET, SCOPE (and PRINCIPAL for a target's view), CONDITIONS.
fn table(rows: &[Access]) -> String {
    let by_principal = rows.iter().any(|r| r.principal.is_some());
    let first = |r: &Access| match &r.principal {
        Some(p) => p.clone(),
        None => r.target.clone(),
    };
    let first_header = if by_principal { "PRINCIPAL" } else { "TARGET" };
    let w1 = rows
        .iter()
        .map(|r| first(r).len())
        .max()
        .unwrap_or(0)
        .max(first_header.len());
    let w2 = rows
        .iter()
        .map(|r| r.scope.len())
        .max()
        .unwrap_or(0)
        .max("SCOPE".len());
    let mut out = format!("{first_header:<w1$} {:<w2$} CONDITIONS\n", "SCOPE");
    for r in rows {
        let conditions = match r.conditions.is_empty() {
            true => "always".to_owned(),
            false => r.conditions.join(" | "),
        };
        out += &format!("{:<w1$} {:<w2$} {conditions}\n", first(r), r.scope);
    }
    out
}
