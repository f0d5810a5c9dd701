//! Reading stored rows back, the same for every SQL backend: the columns
//! are named alike and decode to the same Rust types.

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::StoreError;
use crate::revoke::{Entry, EntryKind, Selector};
use crate::token::{KeyState, StoredKey};

/// The columns of a signing key, in the order backends select them.
pub(super) const KEY_COLUMNS: &str =
    "kid, alg, pkcs8, sealed, created_at, state, activates_at, retires_at, revoked_at";

/// The signing key a row of `KEY_COLUMNS` holds; a state writ would never
/// write is a corrupt row.
pub(super) fn key_from_row<R>(r: &R) -> Result<StoredKey, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Vec<u8>: Decode<'r, R::Database> + Type<R::Database>,
{
    let kid: String = r.try_get("kid")?;
    let state: String = r.try_get("state")?;
    Ok(StoredKey {
        state: KeyState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("signing key {kid}: state {state:?}")))?,
        kid,
        alg: r.try_get("alg")?,
        pkcs8: r.try_get("pkcs8")?,
        sealed: r.try_get("sealed")?,
        created_at: uint(r.try_get("created_at")?),
        activates_at: uint(r.try_get("activates_at")?),
        retires_at: r.try_get::<Option<i64>, _>("retires_at")?.map(uint),
        revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.map(uint),
    })
}

/// The columns of a kill-switch entry, in the order backends select them.
pub(super) const ENTRY_COLUMNS: &str = "seq, id, kind, selector_kind, selector_value, reason, who, effective_at, block, until, lifted_at, lifts, token_exp";

/// A stored time or count: never negative when writ wrote it.
pub(super) fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A time or count as the database stores it.
pub(super) fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The entry a row of `ENTRY_COLUMNS` holds; a kind or selector writ would
/// never write is a corrupt row.
pub(super) fn entry_from_row<R>(r: &R) -> Result<Entry, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    let kind: String = r.try_get("kind")?;
    let selector_kind: String = r.try_get("selector_kind")?;
    let selector_value: Option<String> = r.try_get("selector_value")?;
    Ok(Entry {
        seq: uint(r.try_get("seq")?),
        id: r.try_get("id")?,
        kind: match kind.as_str() {
            "revoke" => EntryKind::Revoke,
            "lift" => EntryKind::Lift,
            other => return Err(StoreError::Corrupt(format!("entry kind {other:?}"))),
        },
        selector: Selector::from_parts(&selector_kind, selector_value.as_deref())
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        reason: r.try_get("reason")?,
        who: r.try_get("who")?,
        effective_at: uint(r.try_get("effective_at")?),
        block: r.try_get("block")?,
        until: r.try_get::<Option<i64>, _>("until")?.map(uint),
        lifted_at: r.try_get::<Option<i64>, _>("lifted_at")?.map(uint),
        lifts: r.try_get("lifts")?,
        token_exp: r.try_get::<Option<i64>, _>("token_exp")?.map(uint),
    })
}
