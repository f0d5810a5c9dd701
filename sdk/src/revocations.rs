//! The verifier's copy of the kill switch: revocation entries from the feed,
//! indexed by what they select. A token is revoked by an entry it matches if
//! it was issued at or before the entry's `effective_at`; lifting a block
//! never un-revokes, so lift entries change nothing here.

use std::collections::HashMap;

use serde_json::Value;

/// The newest `effective_at` per selected value, with the entry id.
type Map = HashMap<String, (u64, String)>;

/// Revocation entries seen on the feed.
#[derive(Debug, Default)]
pub(crate) struct RevocationSet {
    jti: Map,
    subject: Map,
    prefix: Vec<(String, u64, String)>,
    audience: Map,
    issuer: Map,
    actor: Map,
    all: Option<(u64, String)>,
    /// The highest `seq` applied.
    pub(crate) last_seq: u64,
}

/// What the set needs to know about a token.
pub(crate) struct TokenFacts<'a> {
    pub(crate) jti: &'a str,
    /// The `jti`s of the tokens it was narrowed or delegated from (`ancestry`).
    pub(crate) ancestors: Vec<&'a str>,
    pub(crate) sub: &'a str,
    pub(crate) aud: &'a str,
    /// `iss`, `attestation_issuer`, and the `iss` of every `act` level.
    pub(crate) issuers: Vec<&'a str>,
    pub(crate) actors: Vec<&'a str>,
    pub(crate) iat: u64,
}

impl<'a> TokenFacts<'a> {
    /// What a token's claims say (CONTRACT section 3).
    pub(crate) fn of(claims: &'a Value) -> Self {
        let text = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or_default();
        let mut issuers = vec![text("iss")];
        issuers.extend(claims.get("attestation_issuer").and_then(Value::as_str));
        let mut actors = Vec::new();
        let mut act = claims.get("act");
        while let Some(a) = act {
            actors.extend(a.get("sub").and_then(Value::as_str));
            issuers.extend(a.get("iss").and_then(Value::as_str));
            act = a.get("act");
        }
        let ancestors = claims
            .get("ancestry")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        Self {
            jti: text("jti"),
            ancestors,
            sub: text("sub"),
            aud: text("aud"),
            issuers,
            actors,
            iat: claims.get("iat").and_then(Value::as_u64).unwrap_or(0),
        }
    }
}

fn newer(map: &mut Map, key: &str, at: u64, id: &str) {
    let slot = map.entry(key.to_owned()).or_insert((0, String::new()));
    if at >= slot.0 {
        *slot = (at, id.to_owned());
    }
}

impl RevocationSet {
    /// Applies one feed entry (JSON as the broker sends it).
    pub(crate) fn apply(&mut self, entry: &Value) {
        if let Some(seq) = entry.get("seq").and_then(Value::as_u64) {
            self.last_seq = self.last_seq.max(seq);
        }
        if entry.get("kind").and_then(Value::as_str) != Some("revoke") {
            return;
        }
        let id = entry.get("id").and_then(Value::as_str).unwrap_or_default();
        let Some(at) = entry
            .get("effective_at")
            .and_then(Value::as_str)
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
        else {
            tracing::warn!(
                entry = id,
                "revocation entry without a readable effective_at; treating it as now"
            );
            return self.apply_at(entry, id, u64::MAX);
        };
        self.apply_at(entry, id, at);
    }

    fn apply_at(&mut self, entry: &Value, id: &str, at: u64) {
        let Some((kind, value)) = entry
            .get("selector")
            .and_then(Value::as_object)
            .and_then(|o| o.iter().next())
        else {
            return;
        };
        let value = value.as_str().unwrap_or_default();
        match kind.as_str() {
            "jti" => newer(&mut self.jti, value, at, id),
            "subject" => newer(&mut self.subject, value, at, id),
            "subject_prefix" => self.prefix.push((value.to_owned(), at, id.to_owned())),
            "audience" => newer(&mut self.audience, value, at, id),
            "issuer" => newer(&mut self.issuer, value, at, id),
            "actor" => newer(&mut self.actor, value, at, id),
            "all" => {
                if self.all.as_ref().is_none_or(|(t, _)| at >= *t) {
                    self.all = Some((at, id.to_owned()));
                }
            }
            other => tracing::warn!(kind = other, "unknown revocation selector; ignored"),
        }
    }

    /// The id of an entry that revokes this token, if any.
    pub(crate) fn revoked(&self, t: &TokenFacts<'_>) -> Option<String> {
        let hit = |m: &Map, k: Option<&str>| -> Option<String> {
            m.get(k?)
                .filter(|(at, _)| t.iat <= *at)
                .map(|(_, id)| id.clone())
        };
        hit(&self.jti, Some(t.jti))
            .or_else(|| t.ancestors.iter().find_map(|j| hit(&self.jti, Some(j))))
            .or_else(|| hit(&self.subject, Some(t.sub)))
            .or_else(|| hit(&self.audience, Some(t.aud)))
            .or_else(|| t.issuers.iter().find_map(|i| hit(&self.issuer, Some(i))))
            .or_else(|| t.actors.iter().find_map(|a| hit(&self.actor, Some(a))))
            .or_else(|| {
                self.prefix
                    .iter()
                    .find(|(p, at, _)| t.sub.starts_with(p.as_str()) && t.iat <= *at)
                    .map(|(_, _, id)| id.clone())
            })
            .or_else(|| {
                self.all
                    .as_ref()
                    .filter(|(at, _)| t.iat <= *at)
                    .map(|(_, id)| id.clone())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts(iat: u64) -> TokenFacts<'static> {
        TokenFacts {
            jti: "j",
            ancestors: vec!["parent"],
            sub: "spiffe://c/ns/pay/sa/api",
            aud: "db",
            issuers: vec!["https://writ", "https://k8s", "https://agents"],
            actors: vec!["agent:bot"],
            iat,
        }
    }

    #[test]
    fn facts_name_every_hop_and_ancestor() {
        let claims = json!({"jti": "j", "iss": "https://writ", "attestation_issuer": "https://k8s",
            "act": {"sub": "agent:b", "iss": "https://agents", "act": {"sub": "agent:a", "iss": "https://other"}},
            "ancestry": ["p1", "p0"], "sub": "s", "aud": "db", "iat": 5});
        let f = TokenFacts::of(&claims);
        assert_eq!(
            f.issuers,
            [
                "https://writ",
                "https://k8s",
                "https://agents",
                "https://other"
            ]
        );
        assert_eq!(f.actors, ["agent:b", "agent:a"]);
        assert_eq!(f.ancestors, ["p1", "p0"]);
        assert_eq!(f.iat, 5);
    }

    #[test]
    fn each_selector_revokes_tokens_issued_until_effective_at() {
        for (kind, value) in [
            ("jti", json!("j")),
            ("jti", json!("parent")),
            ("subject", json!("spiffe://c/ns/pay/sa/api")),
            ("subject_prefix", json!("spiffe://c/ns/pay/")),
            ("audience", json!("db")),
            ("issuer", json!("https://k8s")),
            ("issuer", json!("https://agents")),
            ("actor", json!("agent:bot")),
            ("all", json!(true)),
        ] {
            let mut set = RevocationSet::default();
            set.apply(
                &json!({"id": "e1", "seq": 3, "kind": "revoke", "selector": {kind: value},
                               "effective_at": "1970-01-01T00:01:40Z"}),
            );
            assert_eq!(set.revoked(&facts(100)).as_deref(), Some("e1"), "{kind}");
            assert_eq!(set.revoked(&facts(101)), None, "{kind}");
            assert_eq!(set.last_seq, 3);
        }
    }

    #[test]
    fn lifts_do_not_unrevoke() {
        let mut set = RevocationSet::default();
        set.apply(&json!({"id": "e1", "seq": 1, "kind": "revoke", "selector": {"jti": "j"}, "effective_at": "1970-01-01T00:01:40Z"}));
        set.apply(&json!({"id": "e2", "seq": 2, "kind": "lift", "lifts": "e1", "selector": {"jti": "j"}, "effective_at": "1970-01-01T00:02:00Z"}));
        assert!(set.revoked(&facts(50)).is_some());
        assert_eq!(set.last_seq, 2);
    }
}
