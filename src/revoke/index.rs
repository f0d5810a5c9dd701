//! The in-memory revocation index on the hot path.
//!
//! One concurrent map per selector kind (sharded, so reads take no global
//! lock), keyed by the selected value: a check is a handful of hash lookups
//! whatever the number of entries. Subject prefixes are found by looking up
//! the subject's own prefix for each distinct prefix length in use. With no
//! entries at all, a check is one atomic load.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;
use dashmap::DashMap;

use super::entry::{Entry, Selector};

type Bucket = DashMap<String, Vec<Arc<Entry>>>;

/// What an existing token says, for the revoked check.
#[derive(Debug, Clone, Copy)]
pub struct TokenFacts<'a> {
    /// `jti`.
    pub jti: &'a str,
    /// `sub`.
    pub subject: &'a str,
    /// `aud`.
    pub audience: &'a str,
    /// `iss` (this broker).
    pub issuer: &'a str,
    /// The issuer of the attestation it was minted from.
    pub attestation_issuer: Option<&'a str>,
    /// `iat`.
    pub issued_at: u64,
}

/// What a new token would say, for the block check.
#[derive(Debug, Clone, Copy)]
pub struct MintFacts<'a> {
    /// `sub`.
    pub subject: &'a str,
    /// `aud`.
    pub audience: &'a str,
    /// The issuer of the attestation.
    pub attestation_issuer: Option<&'a str>,
}

/// Live kill-switch entries, indexed by what they select.
#[derive(Default)]
pub struct RevocationIndex {
    jti: Bucket,
    subject: Bucket,
    prefix: Bucket,
    /// Distinct prefix lengths in `prefix`, sorted.
    prefix_lengths: ArcSwap<Vec<usize>>,
    audience: Bucket,
    issuer: Bucket,
    actor: Bucket,
    all: ArcSwap<Vec<Arc<Entry>>>,
    len: AtomicUsize,
}

impl std::fmt::Debug for RevocationIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationIndex")
            .field("len", &self.len())
            .finish()
    }
}

impl RevocationIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bucket<'a>(&'a self, selector: &'a Selector) -> Option<(&'a Bucket, &'a str)> {
        Some(match selector {
            Selector::Jti(v) => (&self.jti, v),
            Selector::Subject(v) => (&self.subject, v),
            Selector::SubjectPrefix(v) => (&self.prefix, v),
            Selector::Audience(v) => (&self.audience, v),
            Selector::Issuer(v) => (&self.issuer, v),
            Selector::Actor(v) => (&self.actor, v),
            Selector::All => return None,
        })
    }

    /// Adds an entry, or replaces the one with the same id (e.g. once lifted).
    pub fn upsert(&self, entry: Arc<Entry>) {
        let replaced = match self.bucket(&entry.selector) {
            Some((bucket, key)) => {
                let mut list = bucket.entry(key.to_owned()).or_default();
                let before = list.len();
                list.retain(|e| e.id != entry.id);
                let replaced = list.len() != before;
                list.push(entry.clone());
                replaced
            }
            None => {
                let existed = self.all.load().iter().any(|e| e.id == entry.id);
                self.all.rcu(|list| {
                    let mut list: Vec<_> =
                        list.iter().filter(|e| e.id != entry.id).cloned().collect();
                    list.push(entry.clone());
                    list
                });
                existed
            }
        };
        if !replaced {
            self.len.fetch_add(1, Ordering::AcqRel);
        }
        if matches!(entry.selector, Selector::SubjectPrefix(_)) {
            self.refresh_prefix_lengths();
        }
    }

    /// Removes an entry by id; returns whether it was there.
    pub fn remove(&self, entry: &Entry) -> bool {
        let removed = match self.bucket(&entry.selector) {
            Some((bucket, key)) => {
                let removed = bucket.get_mut(key).is_some_and(|mut list| {
                    let before = list.len();
                    list.retain(|e| e.id != entry.id);
                    list.len() != before
                });
                bucket.remove_if(key, |_, list| list.is_empty());
                removed
            }
            None => {
                let before = self.all.load().len();
                self.all.rcu(|list| {
                    list.iter()
                        .filter(|e| e.id != entry.id)
                        .cloned()
                        .collect::<Vec<_>>()
                });
                self.all.load().len() != before
            }
        };
        if removed {
            self.len.fetch_sub(1, Ordering::AcqRel);
            if matches!(entry.selector, Selector::SubjectPrefix(_)) {
                self.refresh_prefix_lengths();
            }
        }
        removed
    }

    fn refresh_prefix_lengths(&self) {
        let mut lengths: Vec<usize> = self.prefix.iter().map(|e| e.key().len()).collect();
        lengths.sort_unstable();
        lengths.dedup();
        self.prefix_lengths.store(Arc::new(lengths));
    }

    /// Every entry that applies to `subject` through a prefix.
    fn prefix_hits<'a>(&'a self, subject: &'a str) -> impl Iterator<Item = Arc<Entry>> + 'a {
        let lengths = self.prefix_lengths.load_full();
        (0..lengths.len()).flat_map(move |i| {
            let len = lengths[i];
            subject
                .get(..len)
                .and_then(|p| self.prefix.get(p).map(|l| l.clone()))
                .unwrap_or_default()
        })
    }

    fn first(
        bucket: &Bucket,
        key: Option<&str>,
        pred: impl Fn(&Entry) -> bool,
    ) -> Option<Arc<Entry>> {
        let list = bucket.get(key?)?;
        list.iter().find(|e| pred(e)).cloned()
    }

    /// The entry that revokes an existing token, if any.
    pub fn revoked(&self, t: &TokenFacts<'_>) -> Option<Arc<Entry>> {
        if self.is_empty() {
            return None;
        }
        let hit = |e: &Entry| e.revokes_issued_at(t.issued_at);
        Self::first(&self.jti, Some(t.jti), hit)
            .or_else(|| Self::first(&self.subject, Some(t.subject), hit))
            .or_else(|| Self::first(&self.audience, Some(t.audience), hit))
            .or_else(|| Self::first(&self.issuer, Some(t.issuer), hit))
            .or_else(|| Self::first(&self.issuer, t.attestation_issuer, hit))
            .or_else(|| self.prefix_hits(t.subject).find(|e| hit(e)))
            .or_else(|| self.all.load().iter().find(|e| hit(e)).cloned())
    }

    /// The entry that blocks minting this token at `now`, if any.
    pub fn blocked(&self, m: &MintFacts<'_>, now: u64) -> Option<Arc<Entry>> {
        if self.is_empty() {
            return None;
        }
        let hit = |e: &Entry| e.blocks_at(now);
        Self::first(&self.subject, Some(m.subject), hit)
            .or_else(|| Self::first(&self.audience, Some(m.audience), hit))
            .or_else(|| Self::first(&self.issuer, m.attestation_issuer, hit))
            .or_else(|| self.prefix_hits(m.subject).find(|e| hit(e)))
            .or_else(|| self.all.load().iter().find(|e| hit(e)).cloned())
    }

    /// Every entry, in no particular order.
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        let mut out: Vec<Arc<Entry>> = self.all.load().iter().cloned().collect();
        for bucket in [
            &self.jti,
            &self.subject,
            &self.prefix,
            &self.audience,
            &self.issuer,
            &self.actor,
        ] {
            for list in bucket.iter() {
                out.extend(list.value().iter().cloned());
            }
        }
        out
    }

    /// Drops entries that can no longer matter: not blocking, and older than
    /// `horizon` seconds (every token they revoke has expired). Blocks stay
    /// while live. Returns how many were dropped.
    pub fn compact(&self, now: u64, horizon: u64) -> usize {
        let stale: Vec<Arc<Entry>> = self
            .entries()
            .into_iter()
            .filter(|e| !e.blocks_at(now) && e.effective_at.saturating_add(horizon) < now)
            .collect();
        stale.iter().filter(|e| self.remove(e)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revoke::entry::EntryKind;

    fn entry(id: &str, selector: Selector, effective_at: u64, block: bool) -> Arc<Entry> {
        Arc::new(Entry {
            id: id.into(),
            seq: 0,
            kind: EntryKind::Revoke,
            selector,
            reason: String::new(),
            who: "test".into(),
            effective_at,
            block,
            until: None,
            lifted_at: None,
            lifts: None,
        })
    }

    fn token<'a>(sub: &'a str, iat: u64) -> TokenFacts<'a> {
        TokenFacts {
            jti: "j1",
            subject: sub,
            audience: "db",
            issuer: "https://writ",
            attestation_issuer: Some("https://k8s"),
            issued_at: iat,
        }
    }

    #[test]
    fn each_kind_revokes_tokens_issued_up_to_effective_at() {
        for s in [
            Selector::Jti("j1".into()),
            Selector::Subject("spiffe://c/ns/pay/sa/api".into()),
            Selector::SubjectPrefix("spiffe://c/ns/pay/".into()),
            Selector::Audience("db".into()),
            Selector::Issuer("https://k8s".into()),
            Selector::All,
        ] {
            let idx = RevocationIndex::new();
            idx.upsert(entry("e", s.clone(), 100, false));
            assert!(
                idx.revoked(&token("spiffe://c/ns/pay/sa/api", 100))
                    .is_some(),
                "{s:?}"
            );
            assert!(
                idx.revoked(&token("spiffe://c/ns/pay/sa/api", 101))
                    .is_none(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn prefixes_match_only_prefixes() {
        let idx = RevocationIndex::new();
        idx.upsert(entry(
            "a",
            Selector::SubjectPrefix("spiffe://c/ns/pay/".into()),
            100,
            true,
        ));
        idx.upsert(entry(
            "b",
            Selector::SubjectPrefix("spiffe://c/ns/payroll-long-name/".into()),
            100,
            true,
        ));
        let m = |sub| MintFacts {
            subject: sub,
            audience: "x",
            attestation_issuer: None,
        };
        assert!(idx.blocked(&m("spiffe://c/ns/pay/sa/x"), 100).is_some());
        assert!(idx.blocked(&m("spiffe://c/ns/pa"), 100).is_none());
        assert!(idx.blocked(&m("spiffe://c/ns/other/sa/x"), 100).is_none());
        assert!(
            idx.blocked(&m("spiffe://c/ns/payroll-long-name/sa/é"), 100)
                .is_some()
        );
    }

    #[test]
    fn lifting_replaces_and_compaction_keeps_live_blocks() {
        let idx = RevocationIndex::new();
        let block = entry("b", Selector::Subject("s".into()), 100, true);
        idx.upsert(block.clone());
        idx.upsert(entry("r", Selector::Subject("s".into()), 100, false));
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.compact(10_000, 900), 1, "the plain revocation is stale");
        let mut lifted = (*block).clone();
        lifted.lifted_at = Some(200);
        idx.upsert(Arc::new(lifted));
        assert_eq!(idx.len(), 1);
        let m = MintFacts {
            subject: "s",
            audience: "x",
            attestation_issuer: None,
        };
        assert!(idx.blocked(&m, 300).is_none());
        assert_eq!(idx.compact(10_000, 900), 1);
        assert!(idx.is_empty());
    }
}
