//! A kill-switch entry in its wire form: what it selects, whether it blocks
//! new tokens, and when it took effect. The broker writes entries; the feed
//! carries them to every verifier, which parses them here.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::time::{parse_rfc3339, rfc3339};

/// A selector or feed entry that cannot be read, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

/// How long after a token's `exp` a revocation of that one token is kept:
/// verifiers accept an expired token for their clock leeway (the SDK's
/// default is 30 s), and no longer than this.
pub const EXPIRED_TOKEN_GRACE: u64 = 60;

/// Longest selector value or reason accepted.
pub const MAX_VALUE_BYTES: usize = 1024;

/// Which tokens an entry applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selector {
    /// One token, by `jti`.
    Jti(String),
    /// Every token of one principal (`sub`).
    Subject(String),
    /// Every principal whose id starts with this (e.g. a namespace).
    SubjectPrefix(String),
    /// Every token for one target (`aud`).
    Audience(String),
    /// Every token attested by one issuer (or minted by one broker).
    Issuer(String),
    /// Every token an agent acts in (`act` chain).
    Actor(String),
    /// Every token signed by one key (the `kid` of its JWS header): the
    /// answer to a stolen signing key.
    Kid(String),
    /// Everything.
    All,
}

impl Selector {
    /// The selector kind, as Cedar's `context.selector` and the API name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Jti(_) => "jti",
            Self::Subject(_) => "subject",
            Self::SubjectPrefix(_) => "subject_prefix",
            Self::Audience(_) => "audience",
            Self::Issuer(_) => "issuer",
            Self::Actor(_) => "actor",
            Self::Kid(_) => "kid",
            Self::All => "all",
        }
    }

    /// The selected value (`None` for `all`).
    pub fn value(&self) -> Option<&str> {
        match self {
            Self::Jti(v)
            | Self::Subject(v)
            | Self::SubjectPrefix(v)
            | Self::Audience(v)
            | Self::Issuer(v)
            | Self::Actor(v)
            | Self::Kid(v) => Some(v),
            Self::All => None,
        }
    }

    /// Builds a selector from its kind and value, as stored.
    pub fn from_parts(kind: &str, value: Option<&str>) -> Result<Self, SelectorError> {
        let v = || -> Result<String, SelectorError> {
            match value {
                Some(v)
                    if !v.is_empty()
                        && v.len() <= MAX_VALUE_BYTES
                        && !v.chars().any(char::is_control) =>
                {
                    Ok(v.to_owned())
                }
                _ => Err(SelectorError(format!(
                    "selector {kind} needs a non-empty value of at most {MAX_VALUE_BYTES} bytes"
                ))),
            }
        };
        Ok(match kind {
            "jti" => Self::Jti(v()?),
            "subject" => Self::Subject(v()?),
            "subject_prefix" => Self::SubjectPrefix(v()?),
            "audience" => Self::Audience(v()?),
            "issuer" => Self::Issuer(v()?),
            "actor" => Self::Actor(v()?),
            "kid" => Self::Kid(v()?),
            "all" => Self::All,
            other => return Err(SelectorError(format!("unknown selector kind {other:?}"))),
        })
    }

    /// The JSON form, e.g. `{"subject": "spiffe://..."}` or `{"all": true}`.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert(
            self.kind().into(),
            self.value()
                .map_or(Value::Bool(true), |v| Value::String(v.to_owned())),
        );
        Value::Object(m)
    }

    /// Parses the JSON form: an object with exactly one known kind.
    pub fn from_json(v: &Value) -> Result<Self, SelectorError> {
        let fail = |why: &str| Err(SelectorError(why.to_owned()));
        let Some(obj) = v.as_object() else {
            return fail("selector must be an object");
        };
        let mut kinds = obj.iter();
        let (Some((kind, value)), None) = (kinds.next(), kinds.next()) else {
            return fail("selector must name exactly one kind");
        };
        match (kind.as_str(), value) {
            ("all", Value::Bool(true)) => Ok(Self::All),
            ("all", _) => fail("selector all takes the value true"),
            (k, Value::String(s)) => Self::from_parts(k, Some(s)),
            // A known kind with a non-string value, or an unknown kind.
            (k, _) => match Self::from_parts(k, Some("-")) {
                Ok(_) => fail(&format!("selector {k} takes a string")),
                Err(e) => Err(e),
            },
        }
    }
}

/// Whether an entry revokes tokens or lifts an earlier block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// Revokes matching tokens issued up to `effective_at`; may block new ones.
    Revoke,
    /// Lifts the block of entry `lifts`.
    Lift,
}

/// One durable entry of the kill switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Random id (32 hex).
    pub id: String,
    /// Position in the feed; strictly increasing.
    pub seq: u64,
    /// Revoke or lift.
    pub kind: EntryKind,
    /// What it selects (for a lift: the lifted entry's selector).
    pub selector: Selector,
    /// Why (operators only; never shown to token holders or in the feed).
    pub reason: String,
    /// Who: the admin principal, or the holder for RFC 7009.
    pub who: String,
    /// Seconds since the epoch when it took effect.
    pub effective_at: u64,
    /// Whether new tokens are refused.
    pub block: bool,
    /// When the block lapses by itself.
    pub until: Option<u64>,
    /// When the block was lifted.
    pub lifted_at: Option<u64>,
    /// For a lift: the entry lifted.
    pub lifts: Option<String>,
    /// For the revocation of one known token (RFC 7009): that token's `exp`.
    /// Past it (and the leeway verifiers allow) the entry can revoke
    /// nothing alive, so it is forgotten, in memory and in the store.
    pub token_exp: Option<u64>,
}

impl Entry {
    /// Whether new tokens matching it are refused at `now`.
    pub fn blocks_at(&self, now: u64) -> bool {
        self.kind == EntryKind::Revoke
            && self.block
            && self.lifted_at.is_none()
            && self.until.is_none_or(|u| now < u)
    }

    /// Whether it can still matter at `now`: it blocks, or a token it
    /// revokes may still be alive (`horizon` after it took effect, or
    /// [`EXPIRED_TOKEN_GRACE`] after its one token's `exp`).
    pub fn matters_at(&self, now: u64, horizon: u64) -> bool {
        if self.blocks_at(now) {
            return true;
        }
        let alive_until = match self.token_exp {
            Some(exp) => exp.saturating_add(EXPIRED_TOKEN_GRACE),
            None => self.effective_at.saturating_add(horizon),
        };
        now <= alive_until
    }

    /// Whether it revokes a token issued at `iat`.
    pub fn revokes_issued_at(&self, iat: u64) -> bool {
        self.kind == EntryKind::Revoke && iat <= self.effective_at
    }

    /// The JSON form. `for_admins` adds `reason` and `who`; the feed, read
    /// by workloads, carries neither.
    pub fn to_json(&self, for_admins: bool) -> Value {
        let time = |t: Option<u64>| t.map_or(Value::Null, |t| Value::String(rfc3339(t)));
        let mut v = serde_json::json!({
            "id": self.id,
            "seq": self.seq,
            "kind": self.kind,
            "selector": self.selector.to_json(),
            "effective_at": rfc3339(self.effective_at),
            "block": self.block,
            "until": time(self.until),
            "lifted_at": time(self.lifted_at),
            "lifts": self.lifts,
        });
        // The one token's `exp` lets a follower forget the entry with it.
        if let (Some(exp), Some(o)) = (self.token_exp, v.as_object_mut()) {
            o.insert("token_exp".into(), Value::String(rfc3339(exp)));
        }
        if for_admins && let Some(o) = v.as_object_mut() {
            o.insert("reason".into(), Value::String(self.reason.clone()));
            o.insert("who".into(), Value::String(self.who.clone()));
        }
        v
    }
}

impl Entry {
    /// Parses an entry as the feed carries it ([`Entry::to_json`] without
    /// the admin fields). An `effective_at` that cannot be read is taken as
    /// the end of time, so the entry revokes every matching token: fail
    /// closed rather than skip a revocation.
    pub fn from_json(v: &Value) -> Result<Self, SelectorError> {
        let text = |k: &str| v.get(k).and_then(Value::as_str);
        let time = |k: &str| text(k).and_then(parse_rfc3339);
        let kind = match text("kind") {
            Some("revoke") => EntryKind::Revoke,
            Some("lift") => EntryKind::Lift,
            _ => return Err(SelectorError("entry kind must be revoke or lift".into())),
        };
        let selector = Selector::from_json(v.get("selector").unwrap_or(&Value::Null))?;
        Ok(Self {
            id: text("id").unwrap_or_default().to_owned(),
            seq: v.get("seq").and_then(Value::as_u64).unwrap_or(0),
            kind,
            selector,
            reason: String::new(),
            who: String::new(),
            effective_at: time("effective_at").unwrap_or(u64::MAX),
            block: v.get("block").and_then(Value::as_bool).unwrap_or(false),
            until: time("until"),
            lifted_at: time("lifted_at"),
            lifts: text("lifts").map(str::to_owned),
            // Unreadable: kept for good, like an entry for many tokens.
            token_exp: time("token_exp"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_round_trips_through_json() {
        for s in [
            Selector::Jti("j".into()),
            Selector::Subject("s".into()),
            Selector::SubjectPrefix("spiffe://x/ns/".into()),
            Selector::Audience("db".into()),
            Selector::Issuer("https://k8s".into()),
            Selector::Actor("agent".into()),
            Selector::Kid("key-1".into()),
            Selector::All,
        ] {
            assert_eq!(Selector::from_json(&s.to_json()), Ok(s));
        }
    }

    fn entry() -> Entry {
        Entry {
            id: "e".into(),
            seq: 7,
            kind: EntryKind::Revoke,
            selector: Selector::Audience("db".into()),
            reason: "stolen".into(),
            who: "admin".into(),
            effective_at: 1_000,
            block: true,
            until: Some(2_000),
            lifted_at: None,
            lifts: None,
            token_exp: None,
        }
    }

    #[test]
    fn the_feed_form_round_trips_without_the_admin_fields() {
        let one_token = Entry {
            token_exp: Some(1_500),
            ..entry()
        };
        assert_eq!(
            Entry::from_json(&one_token.to_json(false)).map(|e| e.token_exp),
            Ok(Some(1_500))
        );
        let e = entry();
        let back = Entry::from_json(&e.to_json(false)).unwrap();
        assert_eq!(
            back,
            Entry {
                reason: String::new(),
                who: String::new(),
                ..e.clone()
            }
        );
        assert!(e.to_json(true).get("reason").is_some());
        assert!(e.to_json(false).get("reason").is_none());
    }

    #[test]
    fn an_unreadable_time_revokes_everything_and_a_bad_selector_is_refused() {
        let mut v = entry().to_json(false);
        v["effective_at"] = Value::String("soon".into());
        assert_eq!(Entry::from_json(&v).unwrap().effective_at, u64::MAX);
        v["selector"] = serde_json::json!({"team": "x"});
        assert!(Entry::from_json(&v).is_err());
        v["kind"] = Value::String("pause".into());
        assert!(Entry::from_json(&v).is_err());
    }

    #[test]
    fn a_block_lapses_at_until_and_revokes_only_earlier_tokens() {
        let e = entry();
        assert!(e.blocks_at(1_999) && !e.blocks_at(2_000));
        assert!(e.matters_at(1_999, 0), "a live block always matters");
        let one_token = Entry {
            block: false,
            until: None,
            token_exp: Some(1_100),
            ..e.clone()
        };
        assert!(one_token.matters_at(1_100 + EXPIRED_TOKEN_GRACE, 900));
        assert!(!one_token.matters_at(1_101 + EXPIRED_TOKEN_GRACE, 900));
        assert!(e.revokes_issued_at(1_000) && !e.revokes_issued_at(1_001));
    }
}
