//! `writ policy diff`: a recorded request decided again under an old and a
//! new policy set, scope by scope, keeping only the scopes whose verdict
//! changes. A target one set does not know is a deny under that set (the
//! token endpoint would refuse it as `invalid_target`).

use serde::Serialize;

use super::explain::ExplainError;
use super::load::PolicySnapshot;
use super::replay::Replay;
use super::{PolicyError, ScopeExplanation};
use crate::audit::Recorded;

/// One scope of one recorded request whose verdict the new set changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The recorded decision.
    pub decision_id: String,
    /// The scope.
    pub scope: String,
    /// `allow` or `deny` under the old set.
    pub old: &'static str,
    /// `allow` or `deny` under the new set.
    pub new: &'static str,
    /// Who asked.
    pub principal: String,
    /// For which target.
    pub target: String,
}

/// Why a record was not compared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Skipped {
    /// Not a token request Cedar decided (an admin call, a refusal before
    /// the principal was known...).
    #[error("not a decided token request")]
    NotDecided,
    /// One of the sets could not decide it (e.g. a principal type its
    /// schema lacks).
    #[error("decision {id}: {why}")]
    Undecidable {
        /// The decision id.
        id: String,
        /// Why.
        why: String,
    },
}

/// Decides recorded requests under two policy sets.
pub struct Differ<'a> {
    old: &'a PolicySnapshot,
    new: &'a PolicySnapshot,
    now: u64,
    default_ttl: u64,
}

impl<'a> Differ<'a> {
    /// Compares `old` with `new`; a record without a lifetime asks for
    /// `default_ttl` seconds, one without a time is decided at `now`.
    pub fn new(
        old: &'a PolicySnapshot,
        new: &'a PolicySnapshot,
        now: u64,
        default_ttl: u64,
    ) -> Self {
        Self {
            old,
            new,
            now,
            default_ttl,
        }
    }

    /// The scopes of `recorded` whose verdict changes, in request order.
    pub fn changes(&self, recorded: &Recorded) -> Result<Vec<Change>, Skipped> {
        if !recorded.is_replayable_mint() {
            return Err(Skipped::NotDecided);
        }
        let replay = Replay::of(recorded).map_err(|_| Skipped::NotDecided)?;
        let old = self.verdicts(self.old, &replay, recorded)?;
        let new = self.verdicts(self.new, &replay, recorded)?;
        let principal = format!(
            "{}::{:?}",
            replay.request.principal.entity_type, replay.request.principal.id
        );
        Ok(old
            .into_iter()
            .zip(new)
            .filter(|((_, old), (_, new))| old != new)
            .map(|((scope, old), (_, new))| Change {
                decision_id: recorded.decision_id.clone(),
                scope,
                old,
                new,
                principal: principal.clone(),
                target: replay.request.target.clone(),
            })
            .collect())
    }

    fn verdicts(
        &self,
        set: &PolicySnapshot,
        replay: &Replay,
        recorded: &Recorded,
    ) -> Result<Vec<(String, &'static str)>, Skipped> {
        match set.explain(&replay.request, self.now, self.default_ttl) {
            Ok(answers) => Ok(answers
                .into_iter()
                .map(
                    |ScopeExplanation {
                         scope, decision, ..
                     }| (scope, decision),
                )
                .collect()),
            Err(ExplainError::Policy(PolicyError::UnknownTarget)) => Ok(replay
                .request
                .scopes
                .iter()
                .map(|s| (s.clone(), "deny"))
                .collect()),
            Err(e) => Err(Skipped::Undecidable {
                id: recorded.decision_id.clone(),
                why: e.to_string(),
            }),
        }
    }
}
