//! Cedar decisions: load and validate the policy directory, keep the last
//! good set live across reloads, and decide one request per scope.
//!
//! `load` turns `policies/` into an immutable [`PolicySnapshot`] (schema,
//! policies sliced per target, entities); `decide` builds Cedar requests in
//! code (cheaper than JSON) against the current snapshot; `explain` decides
//! a described (not attested) request the same way and says why, and
//! `cases` runs policy test files through it; `replay` rebuilds a recorded
//! decision as such a request and `diff` decides it under two sets; `access`
//! lists what a principal may reach by partial evaluation; `index` splits a
//! target's policies so a decision evaluates only those that could apply;
//! `reload`
//! swaps in a new snapshot when the files change or on SIGHUP, refusing
//! invalid sets.

mod access;
mod cases;
mod decide;
mod diff;
mod examples;
mod explain;
mod index;
mod load;
mod reload;
mod replay;
mod values;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;

pub use access::Access;
pub use cases::{Case, CaseFile, CasesError, Expect, Failure, read_case_file};
pub use decide::{
    AdminAction, AdminDecision, Decision, DecisionRequest, EntryFacts, ScopeDecision, Transaction,
};
pub use diff::{Change, Differ, Skipped};
pub use examples::{EXAMPLES, write_examples};
pub use explain::{
    ExplainContext, ExplainError, ExplainPrincipal, ExplainRequest, ExplainTransaction,
    ScopeExplanation,
};
pub use load::{PolicyLoadError, PolicySnapshot};
pub use reload::spawn_watcher;
pub use replay::{Replay, ReplayError};

/// Why a decision could not be made at all (as opposed to a deny).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The audience is not a `Target` in `entities.json`.
    #[error("unknown target")]
    UnknownTarget,
    /// The request could not be expressed to Cedar (an internal fault).
    #[error("request could not be evaluated")]
    Request(String),
}

/// The live policy set, swapped atomically on reload; reads take no lock.
pub struct PolicyEngine {
    dir: PathBuf,
    current: ArcSwap<PolicySnapshot>,
    fingerprint: std::sync::Mutex<load::Fingerprint>,
}

impl PolicyEngine {
    /// Loads and validates `dir`; an invalid set is an error.
    pub fn load(dir: &Path) -> Result<Self, PolicyLoadError> {
        let fingerprint = load::Fingerprint::of(dir);
        let snapshot = PolicySnapshot::load(dir)?;
        snapshot.prepare();
        Ok(Self {
            dir: dir.to_path_buf(),
            current: ArcSwap::from_pointee(snapshot),
            fingerprint: std::sync::Mutex::new(fingerprint),
        })
    }

    /// The snapshot decisions currently use.
    pub fn snapshot(&self) -> Arc<PolicySnapshot> {
        self.current.load_full()
    }

    /// Decides every scope of `req` against the current snapshot.
    pub fn decide(&self, req: &DecisionRequest<'_>) -> Result<Decision, PolicyError> {
        self.current.load().decide(req)
    }

    /// Reloads from disk. On error the previous set stays live.
    pub fn reload(&self) -> Result<usize, PolicyLoadError> {
        let fingerprint = load::Fingerprint::of(&self.dir);
        let result = PolicySnapshot::load(&self.dir);
        // Remember the files even when they are invalid, so a broken set is
        // reported once per change rather than on every poll.
        if let Ok(mut f) = self.fingerprint.lock() {
            *f = fingerprint;
        }
        let snapshot = result?;
        snapshot.prepare();
        let count = snapshot.policy_count();
        self.current.store(Arc::new(snapshot));
        Ok(count)
    }

    /// Whether the files changed since the last load or reload attempt.
    pub fn changed_on_disk(&self) -> bool {
        let now = load::Fingerprint::of(&self.dir);
        self.fingerprint.lock().map(|f| *f != now).unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_example_policies_load_and_validate() {
        let dir = tempfile::tempdir().unwrap();
        write_examples(dir.path()).unwrap();
        let snapshot = PolicySnapshot::load(dir.path()).unwrap();
        assert_eq!(snapshot.policy_count(), 15);
        assert!(snapshot.has_target("cluster.local"));
        assert!(snapshot.has_target("payments-db"));
    }

    #[test]
    fn broken_policy_is_reported_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write_examples(dir.path()).unwrap();
        std::fs::write(
            dir.path().join("zz.cedar"),
            "// one\n// two\npermit (principal, action, resource) when { nope };\n",
        )
        .unwrap();
        let err = PolicySnapshot::load(dir.path()).err().unwrap();
        assert!(err.file.ends_with("zz.cedar"), "{err}");
        assert_eq!(err.line, Some(3), "{err}");
    }
}
