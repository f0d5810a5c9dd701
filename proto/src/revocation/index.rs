//! The in-memory revocation index on the hot path.
//!
//! One concurrent map per selector kind (sharded, so reads never wait on a
//! global lock), keyed by the selected value: a check is a handful of hash
//! lookups whatever the number of entries. Subject prefixes are found by
//! looking up the subject's own prefix for each distinct prefix length in
//! use. With no entries at all, a check is one atomic load. Writers are
//! serialized by the kill switch; readers never wait for them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use dashmap::DashMap;

use super::entry::{Entry, Selector};
use crate::claims::{AccessClaims, ActorChain};

type Bucket = DashMap<String, Vec<Arc<Entry>>>;

/// What an existing token says, for the revoked check.
#[derive(Debug, Clone)]
pub struct TokenFacts<'a> {
    /// `jti`.
    pub jti: &'a str,
    /// The `jti`s of the tokens it was narrowed or delegated from: revoking
    /// one of them revokes it too.
    pub ancestors: &'a [String],
    /// `sub`.
    pub subject: &'a str,
    /// `aud`.
    pub audience: &'a str,
    /// Every issuer it depends on: `iss` (the broker), the issuer of the
    /// attestation it was minted from, and the issuer of every agent in its
    /// `act` chain.
    pub issuers: Vec<&'a str>,
    /// Every `sub` in its `act` chain.
    pub actors: Vec<&'a str>,
    /// `iat`.
    pub issued_at: u64,
    /// The `kid` of its JWS header: the key that signed it.
    pub kid: &'a str,
}

impl<'a> TokenFacts<'a> {
    /// What a token's claims say (CONTRACT section 3), and the key that
    /// signed it (`kid`, from its header: the claims do not name it).
    pub fn of(claims: &'a AccessClaims, kid: &'a str) -> Self {
        Self::signed(
            Signed {
                jti: &claims.jti,
                ancestors: &claims.ancestry,
                subject: &claims.sub,
                audience: &claims.aud,
                iss: &claims.iss,
                attestation_issuer: claims.attestation_issuer.as_deref(),
                act: claims.act.as_ref(),
                issued_at: claims.iat,
            },
            kid,
        )
    }

    /// What any token writ signs says (an access token, a transaction
    /// token): the one place the selectors' inputs are derived, so every
    /// kind is matched alike.
    pub fn signed(token: Signed<'a>, kid: &'a str) -> Self {
        let mut issuers = vec![token.iss];
        issuers.extend(token.attestation_issuer);
        issuers.extend(token.act.into_iter().flat_map(ActorChain::issuers));
        Self {
            jti: token.jti,
            ancestors: token.ancestors,
            subject: token.subject,
            audience: token.audience,
            issuers,
            actors: token.act.into_iter().flat_map(ActorChain::actors).collect(),
            issued_at: token.issued_at,
            kid,
        }
    }
}

/// The claims of a signed token that the kill switch matches, whatever its kind.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// `jti`.
    pub jti: &'a str,
    /// `ancestry`.
    pub ancestors: &'a [String],
    /// `sub`.
    pub subject: &'a str,
    /// `aud`.
    pub audience: &'a str,
    /// `iss`: the broker.
    pub iss: &'a str,
    /// The issuer of the attestation it was minted from.
    pub attestation_issuer: Option<&'a str>,
    /// Its `act` chain.
    pub act: Option<&'a ActorChain>,
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
    /// Every agent acting in it.
    pub actors: &'a [&'a str],
    /// The attestation issuer of every agent acting in it.
    pub actor_issuers: &'a [&'a str],
}

/// Live kill-switch entries, indexed by what they select.
#[derive(Default)]
pub struct RevocationIndex {
    jti: Bucket,
    subject: Bucket,
    prefix: Bucket,
    /// How many prefixes of each length are in `prefix` (writers only).
    prefix_counts: Mutex<BTreeMap<usize, usize>>,
    /// The lengths with a non-zero count, for readers.
    prefix_lengths: ArcSwap<Vec<usize>>,
    audience: Bucket,
    issuer: Bucket,
    actor: Bucket,
    kid: Bucket,
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
            Selector::Kid(v) => (&self.kid, v),
            Selector::All => return None,
        })
    }

    fn count_prefix(&self, selector: &Selector, delta: isize) {
        let Selector::SubjectPrefix(p) = selector else {
            return;
        };
        let Ok(mut counts) = self.prefix_counts.lock() else {
            return;
        };
        let count = counts.entry(p.len()).or_insert(0);
        *count = count.saturating_add_signed(delta);
        if *count == 0 {
            counts.remove(&p.len());
        }
        self.prefix_lengths
            .store(Arc::new(counts.keys().copied().collect()));
    }

    /// Adds an entry, or replaces the one with the same id (e.g. once lifted).
    /// Callers serialize writes (the kill switch holds its write lock).
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
                let current = self.all.load_full();
                let replaced = current.iter().any(|e| e.id == entry.id);
                let mut next: Vec<_> = current
                    .iter()
                    .filter(|e| e.id != entry.id)
                    .cloned()
                    .collect();
                next.push(entry.clone());
                self.all.store(Arc::new(next));
                replaced
            }
        };
        if !replaced {
            self.len.fetch_add(1, Ordering::AcqRel);
            self.count_prefix(&entry.selector, 1);
        }
    }

    /// Removes an entry by id; returns whether it was there. Callers serialize writes.
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
                let current = self.all.load_full();
                let removed = current.iter().any(|e| e.id == entry.id);
                if removed {
                    let next: Vec<_> = current
                        .iter()
                        .filter(|e| e.id != entry.id)
                        .cloned()
                        .collect();
                    self.all.store(Arc::new(next));
                }
                removed
            }
        };
        if removed {
            self.len.fetch_sub(1, Ordering::AcqRel);
            self.count_prefix(&entry.selector, -1);
        }
        removed
    }

    fn first(
        bucket: &Bucket,
        key: Option<&str>,
        pred: impl Fn(&Entry) -> bool,
    ) -> Option<Arc<Entry>> {
        let list = bucket.get(key?)?;
        list.iter().find(|e| pred(e)).cloned()
    }

    /// The first entry matching `subject` through a prefix and `pred`.
    fn prefix_hit(&self, subject: &str, pred: impl Fn(&Entry) -> bool) -> Option<Arc<Entry>> {
        let lengths = self.prefix_lengths.load();
        lengths
            .iter()
            .find_map(|len| Self::first(&self.prefix, subject.get(..*len), &pred))
    }

    fn any_of_all(&self, pred: impl Fn(&Entry) -> bool) -> Option<Arc<Entry>> {
        self.all.load().iter().find(|e| pred(e)).cloned()
    }

    /// The entry that revokes the token with these claims, signed by key
    /// `kid` (its header's), if any.
    pub fn revokes(&self, claims: &AccessClaims, kid: &str) -> Option<Arc<Entry>> {
        self.revoked(&TokenFacts::of(claims, kid))
    }

    /// The entry that revokes an existing token, if any.
    pub fn revoked(&self, t: &TokenFacts<'_>) -> Option<Arc<Entry>> {
        if self.is_empty() {
            return None;
        }
        if self.is_empty() {
            return None;
        }
        let hit = |e: &Entry| e.revokes_issued_at(t.issued_at);
        Self::first(&self.jti, Some(t.jti), hit)
            .or_else(|| {
                t.ancestors
                    .iter()
                    .find_map(|j| Self::first(&self.jti, Some(j), hit))
            })
            .or_else(|| Self::first(&self.subject, Some(t.subject), hit))
            .or_else(|| Self::first(&self.audience, Some(t.audience), hit))
            .or_else(|| {
                t.issuers
                    .iter()
                    .find_map(|i| Self::first(&self.issuer, Some(i), hit))
            })
            .or_else(|| {
                t.actors
                    .iter()
                    .find_map(|a| Self::first(&self.actor, Some(a), hit))
            })
            .or_else(|| Self::first(&self.kid, Some(t.kid), hit))
            .or_else(|| self.prefix_hit(t.subject, hit))
            .or_else(|| self.any_of_all(hit))
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
            .or_else(|| {
                m.actor_issuers
                    .iter()
                    .find_map(|i| Self::first(&self.issuer, Some(i), hit))
            })
            .or_else(|| {
                m.actors
                    .iter()
                    .find_map(|a| Self::first(&self.actor, Some(a), hit))
            })
            .or_else(|| self.prefix_hit(m.subject, hit))
            .or_else(|| self.any_of_all(hit))
    }

    /// The entry with this id, if indexed.
    pub fn get(&self, entry: &Entry) -> Option<Arc<Entry>> {
        match self.bucket(&entry.selector) {
            Some((bucket, key)) => Self::first(bucket, Some(key), |e| e.id == entry.id),
            None => self.any_of_all(|e| e.id == entry.id),
        }
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
            &self.kid,
        ] {
            for list in bucket.iter() {
                out.extend(list.value().iter().cloned());
            }
        }
        out
    }

    /// Drops entries that can no longer matter ([`Entry::matters_at`]):
    /// every token they revoke has expired. Blocks stay while live. Returns
    /// how many were dropped. Callers serialize writes.
    pub fn compact(&self, now: u64, horizon: u64) -> usize {
        let stale: Vec<Arc<Entry>> = self
            .entries()
            .into_iter()
            .filter(|e| !e.matters_at(now, horizon))
            .collect();
        stale.iter().filter(|e| self.remove(e)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::revocation::EntryKind;

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
            token_exp: None,
        })
    }

    const ANCESTORS: &[String] = &[];

    fn token<'a>(sub: &'a str, iat: u64) -> TokenFacts<'a> {
        TokenFacts {
            jti: "j1",
            ancestors: ANCESTORS,
            subject: sub,
            audience: "db",
            issuers: vec!["https://writ", "https://k8s", "https://agents"],
            actors: vec!["agent:bot"],
            issued_at: iat,
            kid: "key-1",
        }
    }

    fn mint(sub: &str) -> MintFacts<'_> {
        MintFacts {
            subject: sub,
            audience: "x",
            attestation_issuer: None,
            actors: &[],
            actor_issuers: &[],
        }
    }

    #[test]
    fn a_jti_entry_reaches_descendants_and_an_issuer_entry_every_hop() {
        let idx = RevocationIndex::new();
        idx.upsert(entry("p", Selector::Jti("parent".into()), 100, false));
        idx.upsert(entry(
            "i",
            Selector::Issuer("https://agents".into()),
            100,
            true,
        ));
        let ancestors = ["parent".to_owned()];
        let child = TokenFacts {
            ancestors: &ancestors,
            issuers: vec!["https://writ", "https://k8s"],
            ..token("s", 100)
        };
        assert_eq!(
            idx.revoked(&child).map(|e| e.id.clone()).as_deref(),
            Some("p")
        );
        let agent = token("s", 100);
        assert_eq!(
            idx.revoked(&agent).map(|e| e.id.clone()).as_deref(),
            Some("i")
        );
        let delegating = MintFacts {
            actors: &["agent:bot"],
            actor_issuers: &["https://agents"],
            ..mint("user")
        };
        assert!(idx.blocked(&delegating, 200).is_some());
    }

    #[test]
    fn each_kind_revokes_tokens_issued_up_to_effective_at() {
        for s in [
            Selector::Jti("j1".into()),
            Selector::Subject("spiffe://c/ns/pay/sa/api".into()),
            Selector::SubjectPrefix("spiffe://c/ns/pay/".into()),
            Selector::Audience("db".into()),
            Selector::Issuer("https://k8s".into()),
            Selector::Actor("agent:bot".into()),
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
    fn prefixes_match_only_prefixes_and_lengths_follow_removals() {
        let idx = RevocationIndex::new();
        let a = entry(
            "a",
            Selector::SubjectPrefix("spiffe://c/ns/pay/".into()),
            100,
            true,
        );
        idx.upsert(a.clone());
        idx.upsert(entry(
            "b",
            Selector::SubjectPrefix("spiffe://c/ns/payroll-long-name/".into()),
            100,
            true,
        ));
        assert!(idx.blocked(&mint("spiffe://c/ns/pay/sa/x"), 100).is_some());
        assert!(idx.blocked(&mint("spiffe://c/ns/pa"), 100).is_none());
        assert!(
            idx.blocked(&mint("spiffe://c/ns/other/sa/x"), 100)
                .is_none()
        );
        assert!(
            idx.blocked(&mint("spiffe://c/ns/payroll-long-name/sa/é"), 100)
                .is_some()
        );
        assert!(idx.remove(&a));
        assert!(idx.blocked(&mint("spiffe://c/ns/pay/sa/x"), 100).is_none());
        assert_eq!(idx.prefix_lengths.load().len(), 1);
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
        assert!(idx.blocked(&mint("s"), 300).is_none());
        assert_eq!(idx.compact(10_000, 900), 1);
        assert!(idx.is_empty());
    }

    #[test]
    fn an_actor_block_stops_only_tokens_it_acts_in() {
        let idx = RevocationIndex::new();
        idx.upsert(entry("x", Selector::Actor("agent:bot".into()), 100, true));
        let acting = MintFacts {
            actors: &["agent:bot"],
            ..mint("user")
        };
        assert!(idx.blocked(&acting, 100).is_some());
        assert!(idx.blocked(&mint("user"), 100).is_none());
    }

    #[test]
    fn a_kid_entry_revokes_every_token_that_key_signed_and_blocks_nothing() {
        let idx = RevocationIndex::new();
        idx.upsert(entry("k", Selector::Kid("key-1".into()), 100, true));
        assert_eq!(
            idx.revoked(&token("s", 100))
                .map(|e| e.id.clone())
                .as_deref(),
            Some("k")
        );
        let other_key = TokenFacts {
            kid: "key-2",
            ..token("s", 100)
        };
        assert!(idx.revoked(&other_key).is_none());
        assert!(idx.revoked(&token("s", 101)).is_none(), "signed after");
        assert!(idx.blocked(&mint("s"), 100).is_none());
        assert_eq!(idx.entries().len(), 1);
    }
}
