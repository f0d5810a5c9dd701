//! The verifier's copy of the kill switch: entries from the revocation feed
//! in writ-proto's index, the same matcher the broker runs. A token is
//! revoked by an entry it matches if it was issued at or before the entry's
//! `effective_at`; lifting a block never un-revokes, so lift entries change
//! nothing here.

use std::sync::Arc;

use serde_json::Value;
use writ_proto::AccessClaims;
use writ_proto::revocation::{Entry, EntryKind, RevocationIndex};

/// Entries applied between two sweeps for entries that can revoke nothing
/// alive any more.
const SWEEP_EVERY: u64 = 1_024;

/// Revocation entries heard on the feed.
#[derive(Debug, Default)]
pub struct RevocationSet {
    index: RevocationIndex,
    last_seq: u64,
    leeway: u64,
    applied: u64,
}

impl RevocationSet {
    /// An empty set for a verifier that accepts tokens up to `leeway`
    /// seconds past their `exp`.
    pub fn new(leeway: u64) -> Self {
        Self {
            leeway,
            ..Self::default()
        }
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Forgets the entries that revoke one token (RFC 7009) once that token
    /// is past its `exp`, the broker's grace and this verifier's leeway:
    /// no verifier accepts it any more. Every other entry is kept, since
    /// how long the tokens it names live is the broker's to know. Returns
    /// how many were forgotten.
    pub fn forget_expired(&mut self, now: u64) -> usize {
        self.index
            .compact(now.saturating_sub(self.leeway), u64::MAX)
    }

    /// The highest `seq` applied: where the feed resumes.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Applies one feed entry (JSON as the broker sends it). An entry that
    /// cannot be read is skipped with a warning, its `seq` still counted;
    /// one whose time cannot be read revokes every matching token.
    pub fn apply(&mut self, entry: &Value) {
        if let Some(seq) = entry.get("seq").and_then(Value::as_u64) {
            self.last_seq = self.last_seq.max(seq);
        }
        match Entry::from_json(entry) {
            Ok(e) if e.kind == EntryKind::Revoke => {
                if e.effective_at == u64::MAX {
                    tracing::warn!(
                        entry = %e.id,
                        "revocation entry without a readable effective_at; it revokes every matching token"
                    );
                }
                self.index.upsert(Arc::new(e));
                self.applied += 1;
                if self.applied.is_multiple_of(SWEEP_EVERY) {
                    self.forget_expired(crate::dpop::unix_now());
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "unreadable revocation entry; ignored"),
        }
    }

    /// The id of an entry that revokes the token with these claims,
    /// signed by key `kid` (its header's), if any.
    pub fn revoked(&self, claims: &AccessClaims, kid: &str) -> Option<String> {
        self.index.revokes(claims, kid).map(|e| e.id.clone())
    }

    /// The id of the entry that revokes a token with these facts (a
    /// transaction token's, say), if any.
    pub fn revoked_facts(&self, facts: &writ_proto::revocation::TokenFacts<'_>) -> Option<String> {
        self.index.revoked(facts).map(|e| e.id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(iat: u64) -> AccessClaims {
        serde_json::from_value(
            json!({"jti": "j", "iss": "https://writ", "attestation_issuer": "https://k8s",
            "act": {"sub": "agent:bot", "iss": "https://agents"},
            "ancestry": ["parent"], "sub": "spiffe://c/ns/pay/sa/api", "aud": "db", "iat": iat,
            "nbf": iat, "exp": iat + 60, "client_id": "agent:bot", "scope": "read",
            "attestation": "kubernetes", "principal_type": "Workload"}),
        )
        .unwrap()
    }

    #[test]
    fn each_selector_revokes_tokens_issued_until_effective_at() {
        for (kind, value) in [
            ("jti", json!("j")),
            ("jti", json!("parent")),
            ("subject", json!("spiffe://c/ns/pay/sa/api")),
            ("subject_prefix", json!("spiffe://c/ns/pay/")),
            ("audience", json!("db")),
            ("issuer", json!("https://writ")),
            ("issuer", json!("https://k8s")),
            ("issuer", json!("https://agents")),
            ("actor", json!("agent:bot")),
            ("kid", json!("k")),
            ("all", json!(true)),
        ] {
            let mut set = RevocationSet::new(30);
            set.apply(
                &json!({"id": "e1", "seq": 3, "kind": "revoke", "selector": {kind: value},
                               "effective_at": "1970-01-01T00:01:40Z"}),
            );
            assert_eq!(
                set.revoked(&claims(100), "k").as_deref(),
                Some("e1"),
                "{kind}"
            );
            assert_eq!(set.revoked(&claims(101), "k"), None, "{kind}");
            assert_eq!(set.last_seq(), 3);
        }
    }

    #[test]
    fn one_token_entries_are_forgotten_only_after_its_exp_grace_and_leeway() {
        let mut set = RevocationSet::new(30);
        set.apply(
            &json!({"id": "one", "seq": 1, "kind": "revoke", "selector": {"jti": "j"},
            "effective_at": "1970-01-01T00:01:40Z", "token_exp": "1970-01-01T00:02:00Z"}),
        );
        set.apply(
            &json!({"id": "all", "seq": 2, "kind": "revoke", "selector": {"subject": "s"},
            "effective_at": "1970-01-01T00:01:40Z"}),
        );
        let exp = 120;
        let kept_until = exp + writ_proto::revocation::EXPIRED_TOKEN_GRACE + 30;
        assert_eq!(set.forget_expired(kept_until), 0);
        assert!(set.revoked(&claims(100), "k").is_some());
        assert_eq!(set.forget_expired(kept_until + 1), 1);
        assert_eq!(set.len(), 1, "an entry for every token of a subject stays");
    }

    #[test]
    fn lifts_do_not_unrevoke_and_unreadable_entries_still_advance_the_feed() {
        let mut set = RevocationSet::new(30);
        set.apply(&json!({"id": "e1", "seq": 1, "kind": "revoke", "selector": {"jti": "j"}, "effective_at": "1970-01-01T00:01:40Z"}));
        set.apply(&json!({"id": "e2", "seq": 2, "kind": "lift", "lifts": "e1", "selector": {"jti": "j"}, "effective_at": "1970-01-01T00:02:00Z"}));
        assert!(set.revoked(&claims(50), "k").is_some());
        set.apply(&json!({"id": "e3", "seq": 3, "kind": "revoke", "selector": {"team": "x"}}));
        assert_eq!(set.last_seq(), 3);
    }
}
