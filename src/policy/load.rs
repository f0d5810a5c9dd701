//! Reading `policies/`: `schema.cedarschema`, every `*.cedar` and
//! `entities.json`, validated together. Errors name the file and line.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::SystemTime;

use cedar_policy::{
    ActionConstraint, Effect, Entities, Entity, EntityTypeName, EntityUid, Policy, PolicyId,
    PolicySet, ResourceConstraint, Schema, SchemaFragment, ValidationMode, Validator,
};
use miette::Diagnostic;
use serde_json::Value;

use super::index::PolicyIndex;
use crate::model::EntityType;

/// The schema file inside the policy directory.
pub const SCHEMA_FILE: &str = "schema.cedarschema";
/// The entities file inside the policy directory.
pub const ENTITIES_FILE: &str = "entities.json";

/// A policy directory that cannot be used, with where the problem is.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct PolicyLoadError {
    /// The offending file.
    pub file: PathBuf,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl PolicyLoadError {
    fn at(file: &Path, text: Option<&str>, diag: &dyn Diagnostic, message: String) -> Self {
        let line = text.and_then(|t| {
            let offset = diag.labels()?.next()?.offset();
            Some(t.get(..offset).unwrap_or(t).matches('\n').count() + 1)
        });
        Self {
            file: file.to_path_buf(),
            line,
            message: message.replace('\n', " "),
        }
    }

    fn plain(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: None,
            message: message.into(),
        }
    }
}

/// Names, sizes and modification times of the directory's files: cheap to
/// compute every poll, and it changes whenever a file is written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Fingerprint(Vec<(PathBuf, u64, Option<SystemTime>)>);

impl Fingerprint {
    pub(crate) fn of(dir: &Path) -> Self {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((e.path(), meta.len(), meta.modified().ok()))
            })
            .collect();
        entries.sort();
        Self(entries)
    }
}

/// What one policy contributes beyond its Cedar text.
#[derive(Debug, Clone)]
pub(crate) struct PolicyMeta {
    pub(crate) effect: Effect,
    pub(crate) max_ttl: Option<u64>,
    /// `@requires_approval("<role>")`: what it permits waits for a person
    /// with that role.
    pub(crate) requires_approval: Option<String>,
    /// The file it is in, relative to the policy directory.
    pub(crate) file: String,
}

/// Policies and entities that concern one target.
pub(crate) struct TargetSlice {
    pub(crate) policies: PolicySet,
    /// The same, split for decisions (`index`): built on first use, or by
    /// [`PolicySnapshot::prepare`] (the broker's load), since splitting
    /// thousands of policies costs what parsing them did, and the operator
    /// commands never decide through it.
    index: OnceLock<PolicyIndex>,
    /// The target and its ancestors.
    pub(crate) entities: Vec<Entity>,
}

/// A validated policy directory, immutable once built.
pub struct PolicySnapshot {
    pub(crate) targets: HashMap<String, TargetSlice>,
    /// Every policy, for the rare decisions that are not sliced (admin actions).
    pub(crate) all: PolicySet,
    pub(crate) entities: Entities,
    pub(crate) meta: HashMap<PolicyId, PolicyMeta>,
    /// Attribute names and kinds the schema declares per principal type.
    pub(crate) declared: HashMap<EntityType, HashMap<String, AttrKind>>,
    pub(crate) type_names: HashMap<EntityType, EntityTypeName>,
    pub(crate) mint: EntityUid,
    policy_count: usize,
}

/// The Cedar type of a declared principal attribute writ can fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttrKind {
    String,
    Long,
}

fn read(path: &Path) -> Result<String, PolicyLoadError> {
    std::fs::read_to_string(path)
        .map_err(|e| PolicyLoadError::plain(path, format!("cannot read: {e}")))
}

fn parse_uid(s: &str) -> EntityUid {
    // The literals below are well-formed; a failure would be a bug caught by tests.
    EntityUid::from_str(s).unwrap_or_else(|_| unreachable!("bad built-in uid {s}"))
}

impl TargetSlice {
    /// The target's policies, split for decisions.
    pub(crate) fn index(&self) -> &PolicyIndex {
        self.index
            .get_or_init(|| PolicyIndex::build(&self.policies))
    }
}

impl PolicySnapshot {
    /// Splits every target's policies for decisions now rather than at
    /// each target's first decision.
    pub fn prepare(&self) {
        for slice in self.targets.values() {
            slice.index();
        }
    }

    /// The file policy `id` is in, relative to the policy directory.
    pub(crate) fn source_of(&self, id: &str) -> Option<String> {
        self.meta
            .get(&cedar_policy::PolicyId::new(id))
            .map(|m| m.file.clone())
    }

    /// Loads and validates a policy directory.
    pub fn load(dir: &Path) -> Result<Self, PolicyLoadError> {
        let schema_path = dir.join(SCHEMA_FILE);
        let schema_text = read(&schema_path)?;
        check_nesting(&schema_path, &schema_text, b"([{<")?;
        let (schema, _warnings) = Schema::from_cedarschema_str(&schema_text).map_err(|e| {
            PolicyLoadError::at(&schema_path, Some(&schema_text), &e, e.to_string())
        })?;
        let declared = declared_attributes(&schema_path, &schema_text)?;

        let mut all = PolicySet::new();
        let mut meta = HashMap::new();
        let validator = Validator::new(schema.clone());
        for path in cedar_files(dir)? {
            let text = read(&path)?;
            let file_set = parse_file(&path, &text)?;
            let result = validator.validate(&file_set, ValidationMode::Strict);
            if let Some(err) = result.validation_errors().next() {
                return Err(PolicyLoadError::at(
                    &path,
                    Some(&text),
                    err,
                    err.to_string(),
                ));
            }
            for policy in file_set.policies() {
                let max_ttl = match policy.annotation("max_ttl") {
                    None => None,
                    Some(v) => Some(v.trim().parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| {
                        PolicyLoadError::plain(
                            &path,
                            format!("policy {}: @max_ttl must be a whole number of seconds, got {v:?}", policy.id()),
                        )
                    })?),
                };
                let requires_approval = match policy.annotation("requires_approval") {
                    None => None,
                    Some(role) if crate::approval::valid_role(role) => Some(role.to_owned()),
                    Some(role) => {
                        return Err(PolicyLoadError::plain(
                            &path,
                            format!(
                                "policy {}: @requires_approval must name a role (1 to {} printable characters, no quotes), got {role:?}",
                                policy.id(),
                                crate::approval::MAX_ROLE_LEN
                            ),
                        ));
                    }
                };
                meta.insert(
                    policy.id().clone(),
                    PolicyMeta {
                        effect: policy.effect(),
                        max_ttl,
                        requires_approval,
                        file: path
                            .file_name()
                            .map(|f| f.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    },
                );
                all.add(policy.clone()).map_err(|e| {
                    PolicyLoadError::plain(&path, format!("policy {}: {e}", policy.id()))
                })?;
            }
        }

        let entities_path = dir.join(ENTITIES_FILE);
        let entities = if entities_path.exists() {
            let text = read(&entities_path)?;
            Entities::from_json_str(&text, Some(&schema))
                .map_err(|e| PolicyLoadError::at(&entities_path, Some(&text), &e, e.to_string()))?
        } else {
            Entities::empty()
        };

        let mint = parse_uid(r#"Action::"mint""#);
        let target_type = EntityTypeName::from_str("Target").unwrap_or_else(|_| unreachable!());
        let mut targets = HashMap::new();
        for entity in entities.iter() {
            let uid = entity.uid();
            if uid.type_name() != &target_type {
                continue;
            }
            let mut policies = PolicySet::new();
            for p in all.policies() {
                if concerns(p, &mint, &uid, &target_type) {
                    policies
                        .add(p.clone())
                        .map_err(|e| PolicyLoadError::plain(dir, e.to_string()))?;
                }
            }
            let mut slice_entities = vec![entity.clone()];
            if let Some(ancestors) = entities.ancestors(&uid) {
                slice_entities.extend(ancestors.filter_map(|a| entities.get(a).cloned()));
            }
            targets.insert(
                uid.id().unescaped().to_owned(),
                TargetSlice {
                    index: OnceLock::new(),
                    policies,
                    entities: slice_entities,
                },
            );
        }

        let type_names = EntityType::ALL
            .into_iter()
            .map(|t| {
                (
                    t,
                    EntityTypeName::from_str(t.as_str()).unwrap_or_else(|_| unreachable!()),
                )
            })
            .collect();
        let policy_count = all.policies().count();
        Ok(Self {
            targets,
            all,
            entities,
            meta,
            declared,
            type_names,
            mint,
            policy_count,
        })
    }

    /// Number of policies in the set.
    pub fn policy_count(&self) -> usize {
        self.policy_count
    }

    /// Whether `id` is a known `Target`.
    pub fn has_target(&self, id: &str) -> bool {
        self.targets.contains_key(id)
    }

    /// Who owns the entity `entity_type::"id"` according to `entities.json`:
    /// its `owner` attribute (an entity such as `Team::"payments"`, or a
    /// string), else its first parent in sorted order; `None` when the file
    /// does not know the entity or gives it neither.
    pub fn owner_of(&self, entity_type: &str, id: &str) -> Option<String> {
        let type_name = EntityTypeName::from_str(entity_type).ok()?;
        let uid = EntityUid::from_type_name_and_id(type_name, cedar_policy::EntityId::new(id));
        let entity = self.entities.get(&uid)?;
        match entity.attr("owner") {
            Some(Ok(cedar_policy::EvalResult::EntityUid(owner))) => return Some(owner.to_string()),
            Some(Ok(cedar_policy::EvalResult::String(owner))) => return Some(owner),
            _ => {}
        }
        let (_, _, parents) = entity.clone().into_inner();
        parents.iter().map(ToString::to_string).min()
    }
}

/// Whether a policy can matter for minting on `target`: slicing by action
/// and resource keeps decisions fast when there are many policies.
fn concerns(
    p: &Policy,
    mint: &EntityUid,
    target: &EntityUid,
    target_type: &EntityTypeName,
) -> bool {
    let action = match p.action_constraint() {
        ActionConstraint::Any | ActionConstraint::In(_) => true,
        ActionConstraint::Eq(a) => &a == mint,
    };
    let resource = match p.resource_constraint() {
        ResourceConstraint::Any | ResourceConstraint::In(_) => true,
        ResourceConstraint::Eq(r) => &r == target,
        ResourceConstraint::Is(t) | ResourceConstraint::IsIn(t, _) => &t == target_type,
    };
    action && resource
}

fn cedar_files(dir: &Path) -> Result<Vec<PathBuf>, PolicyLoadError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| PolicyLoadError::plain(dir, format!("cannot read policy directory: {e}")))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
        .collect();
    files.sort();
    Ok(files)
}

/// Parses one file; policies are named by `@id`, else `<file stem>.<index>`.
fn parse_file(path: &Path, text: &str) -> Result<PolicySet, PolicyLoadError> {
    check_nesting(path, text, b"([{")?;
    let parsed = PolicySet::from_str(text)
        .map_err(|e| PolicyLoadError::at(path, Some(text), &e, e.to_string()))?;
    if parsed.templates().next().is_some() {
        return Err(PolicyLoadError::plain(
            path,
            "policy templates are not supported",
        ));
    }
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut named = PolicySet::new();
    let mut seen = HashSet::new();
    for policy in parsed.policies() {
        // from_str names policies policy0, policy1... in source order.
        let index = policy
            .id()
            .to_string()
            .trim_start_matches("policy")
            .to_owned();
        let id = match policy.annotation("id") {
            Some(id) => id.to_owned(),
            None => format!("{stem}.{index}"),
        };
        if !seen.insert(id.clone()) {
            return Err(PolicyLoadError::plain(
                path,
                format!("policy id {id:?} is used twice"),
            ));
        }
        named
            .add(policy.new_id(PolicyId::new(&id)))
            .map_err(|e| PolicyLoadError::plain(path, format!("policy {id}: {e}")))?;
    }
    Ok(named)
}

/// How deep brackets may nest in a Cedar file.
pub const MAX_NESTING: usize = 16;
/// How many `if` one policy may hold (they nest without brackets).
pub const MAX_IFS: usize = 64;

/// Refuses text nested deeper than Cedar's parser can take. Cedar parses
/// and converts expressions recursively: found by the property tests, a
/// policy of about 40 nested parentheses (400 nested `if`s, 128 nested
/// schema records) overflowed a 2 MiB stack in a debug build, and the
/// overflow aborts the process, so a bad file on hot reload would have
/// killed a running broker instead of being refused. String literals and
/// `//` comments are skipped.
fn check_nesting(path: &Path, text: &str, open: &[u8]) -> Result<(), PolicyLoadError> {
    let refuse = |at: usize, what: String| {
        let line = text.get(..at).unwrap_or(text).matches('\n').count() + 1;
        Err(PolicyLoadError {
            file: path.to_path_buf(),
            line: Some(line),
            message: what,
        })
    };
    let bytes = text.as_bytes();
    let (mut depth, mut ifs, mut i) = (0usize, 0usize, 0usize);
    while let Some(&b) = bytes.get(i) {
        match b {
            b'"' => {
                // A string literal: skip to its closing quote.
                i += 1;
                while let Some(&c) = bytes.get(i) {
                    match c {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while bytes.get(i).is_some_and(|c| *c != b'\n') {
                    i += 1;
                }
            }
            b';' if depth == 0 => ifs = 0,
            b'i' if bytes.get(i + 1) == Some(&b'f')
                && !bytes
                    .get(i + 2)
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
                && !i
                    .checked_sub(1)
                    .and_then(|p| bytes.get(p))
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_') =>
            {
                ifs += 1;
                if ifs > MAX_IFS {
                    return refuse(i, format!("more than {MAX_IFS} `if` in one policy"));
                }
            }
            _ if open.contains(&b) => {
                depth += 1;
                if depth > MAX_NESTING {
                    return refuse(i, format!("brackets nest deeper than {MAX_NESTING} levels"));
                }
            }
            b')' | b']' | b'}' | b'>' if open.contains(&b'<') || b != b'>' => {
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Reads which attributes the schema declares on `Workload` and `Agent`, so
/// attestation attributes the schema does not know are left out.
fn declared_attributes(
    path: &Path,
    text: &str,
) -> Result<HashMap<EntityType, HashMap<String, AttrKind>>, PolicyLoadError> {
    let (fragment, _) = SchemaFragment::from_cedarschema_str(text)
        .map_err(|e| PolicyLoadError::at(path, Some(text), &e, e.to_string()))?;
    let json = fragment
        .to_json_value()
        .map_err(|e| PolicyLoadError::plain(path, e.to_string()))?;
    let mut out: HashMap<EntityType, HashMap<String, AttrKind>> = HashMap::new();
    let Some(namespaces) = json.as_object() else {
        return Ok(out);
    };
    for (ns, body) in namespaces {
        if !ns.is_empty() {
            continue; // writ's entity types live in the empty namespace
        }
        for ty in EntityType::ALL {
            let attrs = body
                .pointer(&format!("/entityTypes/{}/shape/attributes", ty.as_str()))
                .and_then(Value::as_object);
            let Some(attrs) = attrs else { continue };
            let kinds = attrs
                .iter()
                .filter_map(|(name, def)| {
                    let ty_name = match def.get("type").and_then(Value::as_str) {
                        Some("EntityOrCommon") => def.get("name").and_then(Value::as_str),
                        other => other,
                    };
                    match ty_name {
                        Some("String") => Some((name.clone(), AttrKind::String)),
                        Some("Long") => Some((name.clone(), AttrKind::Long)),
                        _ => None,
                    }
                })
                .collect();
            out.insert(ty, kinds);
        }
    }
    Ok(out)
}
