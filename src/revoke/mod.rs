//! The kill switch on the hot path. This release has no revocation entries
//! yet, so every check passes; the seam is here so the token endpoint and
//! introspection already ask it at the right points.

use crate::token::AccessClaims;

/// An entry that refuses a token or a mint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// The revocation entry id (never its reason text).
    pub entry_id: String,
}

/// What a new token would say, for the block check.
#[derive(Debug)]
pub struct MintFacts<'a> {
    /// `sub`.
    pub subject: &'a str,
    /// `aud`.
    pub audience: &'a str,
    /// The attesting issuer.
    pub issuer: &'a str,
}

/// In-memory index of live revocation entries.
#[derive(Debug, Default)]
pub struct RevocationIndex {}

impl RevocationIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// The entry that revokes an existing token, if any.
    pub fn revoked(&self, _claims: &AccessClaims) -> Option<Match> {
        None
    }

    /// The entry that blocks minting this token, if any.
    pub fn blocked(&self, _facts: &MintFacts<'_>) -> Option<Match> {
        None
    }
}
