//! The vocabulary of a grant: who asks ([`Principal`]), for what
//! ([`TargetId`], [`Scopes`]) and for how long ([`Ttl`]). Each type checks its
//! input once at the edge, so the rest of writ never handles raw strings.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why a value from the outside was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A principal id was empty, too long or held control characters.
    #[error("invalid principal id")]
    Principal,
    /// A target id was empty, too long or held control characters.
    #[error("invalid audience")]
    Target,
    /// A scope token broke RFC 6749 section 3.3.
    #[error("invalid scope token")]
    Scope,
    /// More scopes than one request may carry, or none.
    #[error("scope must name between 1 and {max} scopes")]
    ScopeCount {
        /// The most a request may carry.
        max: usize,
    },
    /// A lifetime of zero seconds.
    #[error("lifetime must be at least one second")]
    Ttl,
}

const MAX_ID_LEN: usize = 1024;

fn printable_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_ID_LEN && !s.chars().any(char::is_control)
}

/// The attested identity a token is minted for, e.g.
/// `spiffe://cluster.local/ns/payments/sa/api`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Principal(String);

impl Principal {
    /// Checks and wraps a principal id.
    pub fn new(id: impl Into<String>) -> Result<Self, ModelError> {
        let id = id.into();
        if printable_id(&id) {
            Ok(Self(id))
        } else {
            Err(ModelError::Principal)
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The id of a target (a Cedar `Target` entity and the token's `aud`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TargetId(String);

impl TargetId {
    /// Checks and wraps a target id.
    pub fn new(id: impl Into<String>) -> Result<Self, ModelError> {
        let id = id.into();
        if printable_id(&id) {
            Ok(Self(id))
        } else {
            Err(ModelError::Target)
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_newtype_impls {
    ($t:ty) => {
        impl TryFrom<String> for $t {
            type Error = ModelError;
            fn try_from(s: String) -> Result<Self, ModelError> {
                Self::new(s)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
string_newtype_impls!(Principal);
string_newtype_impls!(TargetId);
string_newtype_impls!(Scope);

/// One scope token (RFC 6749 section 3.3), e.g. `read`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scope(String);

impl Scope {
    /// The longest scope token writ accepts.
    pub const MAX_LEN: usize = 128;

    /// Checks and wraps one scope token.
    pub fn new(s: impl Into<String>) -> Result<Self, ModelError> {
        let s = s.into();
        // scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if ok {
            Ok(Self(s))
        } else {
            Err(ModelError::Scope)
        }
    }

    /// The scope as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A non-empty set of scopes in the order first asked, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// The most scopes one request may carry.
    pub const MAX: usize = 32;

    /// Parses a space-separated scope parameter: at most [`Scopes::MAX`]
    /// distinct scopes, duplicates dropped. Linear in the input and stops at
    /// the first scope past the limit, so a huge parameter costs little.
    pub fn parse(param: &str) -> Result<Self, ModelError> {
        let mut seen = std::collections::HashSet::new();
        let mut scopes = Vec::new();
        for token in param.split(' ').filter(|t| !t.is_empty()) {
            if seen.contains(token) {
                continue;
            }
            if scopes.len() == Self::MAX {
                return Err(ModelError::ScopeCount { max: Self::MAX });
            }
            let scope = Scope::new(token)?;
            seen.insert(token);
            scopes.push(scope);
        }
        if scopes.is_empty() {
            return Err(ModelError::ScopeCount { max: Self::MAX });
        }
        Ok(Self(scopes))
    }

    /// Builds a set from scopes already checked, dropping duplicates.
    pub fn from_granted(granted: impl IntoIterator<Item = Scope>) -> Self {
        let mut scopes: Vec<Scope> = Vec::new();
        for s in granted {
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        Self(scopes)
    }

    /// The scopes in order.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    /// Whether `scope` is in the set.
    pub fn contains(&self, scope: &Scope) -> bool {
        self.0.contains(scope)
    }

    /// Whether every scope of `self` is in `other`.
    pub fn is_subset_of(&self, other: &Scopes) -> bool {
        self.0.iter().all(|s| other.contains(s))
    }

    /// Whether the set is empty (only possible for a grant).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The scopes as strings, for audit records.
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|s| s.0.clone()).collect()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(s.as_str())?;
        }
        Ok(())
    }
}

/// A token lifetime in whole seconds, never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ttl(u64);

impl Ttl {
    /// A lifetime of `secs` seconds.
    pub fn from_secs(secs: u64) -> Result<Self, ModelError> {
        if secs == 0 {
            Err(ModelError::Ttl)
        } else {
            Ok(Self(secs))
        }
    }

    /// A lifetime from a duration, rounded down to whole seconds.
    pub fn from_duration(d: Duration) -> Result<Self, ModelError> {
        Self::from_secs(d.as_secs())
    }

    /// The lifetime in seconds.
    pub fn as_secs(self) -> u64 {
        self.0
    }
}

/// A request rate: `count` requests per `per` (`"50/s"`, `"600/m"`,
/// `"1000/h"`), parsed once from the configuration. A key may spend the
/// whole `count` at once, then one request every `per / count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Rate {
    count: u32,
    per: Duration,
}

impl Rate {
    /// `count` (at least 1) requests per `per` (at least a second).
    pub fn new(count: u32, per: Duration) -> Option<Self> {
        (count > 0 && per >= Duration::from_secs(1)).then_some(Self { count, per })
    }

    /// How many requests a key may make at once.
    pub fn count(self) -> u32 {
        self.count
    }

    /// The period the count is spread over.
    pub fn per(self) -> Duration {
        self.per
    }
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{text:?} is not a rate like \"50/s\", \"600/m\" or \"1000/h\"");
        let (count, unit) = text.trim().split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Self::new(count, per).ok_or_else(|| format!("{text:?}: the count must be at least 1"))
    }
}

impl TryFrom<String> for Rate {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            3600 => "h",
            _ => return write!(f, "{}/{}s", self.count, self.per.as_secs()),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// The Cedar entity type of an attested principal (a token's
/// `principal_type`); defined with the claims in writ-proto.
pub use writ_proto::claims::PrincipalType as EntityType;

/// How a principal proved what it is; Cedar sees it as
/// `context.attestation`; defined with the claims in writ-proto.
pub use writ_proto::claims::AttestationKind;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_from_count_and_unit_and_refuse_the_rest() {
        let rate: Rate = "50/s".parse().unwrap();
        assert_eq!((rate.count(), rate.per()), (50, Duration::from_secs(1)));
        assert_eq!("600/m".parse::<Rate>().unwrap().to_string(), "600/m");
        assert_eq!(
            "1000/h".parse::<Rate>().unwrap().per(),
            Duration::from_secs(3600)
        );
        for bad in ["", "50", "0/s", "-1/s", "50/d", "fast/s", "50/ s/"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes_parse_dedupes_and_keeps_order() {
        let s = Scopes::parse("read  write read").unwrap_or_default();
        assert_eq!(s.to_string(), "read write");
    }

    #[test]
    fn scopes_refuse_quotes_backslashes_and_emptiness() {
        assert!(Scopes::parse("re\"ad").is_err());
        assert!(Scopes::parse("a\\b").is_err());
        assert!(Scopes::parse("   ").is_err());
        let many = (0..=Scopes::MAX)
            .map(|i| format!("s{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(Scopes::parse(&many).is_err());
    }

    #[test]
    fn ids_refuse_control_characters() {
        assert!(Principal::new("a\nb").is_err());
        assert!(TargetId::new("").is_err());
        assert!(TargetId::new("payments-db").is_ok());
    }

    #[test]
    fn ttl_refuses_zero() {
        assert!(Ttl::from_secs(0).is_err());
    }
}
