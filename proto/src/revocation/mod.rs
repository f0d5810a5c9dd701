//! The kill switch as every verifier sees it: entries in their wire form
//! ([`Entry`], [`Selector`]) and the one matcher ([`RevocationIndex`]) that
//! decides whether an entry revokes a token or blocks a new one. The broker
//! feeds it from its store, the SDK from the revocation feed; both ask it
//! the same question.

mod entry;
mod index;

pub use entry::{EXPIRED_TOKEN_GRACE, Entry, EntryKind, MAX_VALUE_BYTES, Selector, SelectorError};
pub use index::{MintFacts, RevocationIndex, Signed, TokenFacts};
