//! Approvals (CONTRACT section 10) in either SQL backend: one set of
//! statements (numbered parameters, which SQLite and PostgreSQL both read)
//! and one row decoder, implemented for each store by [`approval_log!`].

use sqlx::{ColumnIndex, Decode, Row, Type};

use super::StoreError;
use super::rows::uint;
use crate::approval::{Approval, ApprovalState};

/// The columns of an approval, in the order the statements select them.
const COLUMNS: &str = "id, role, principal, target, scopes, actors, requested_at, expires_at, state, decided_by, decided_at";

/// How long a decided or lapsed approval is kept before it is swept, for
/// `writ approvals list` and an operator's questions: a day.
pub(super) const KEEP_SECS: u64 = 86_400;

pub(super) const INSERT: &str = "INSERT INTO approvals (id, role, principal, target, scopes, actors, requested_at, expires_at, state)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending')";

pub(super) const SWEEP: &str = "DELETE FROM approvals WHERE expires_at < $1";

pub(super) fn select_one() -> String {
    format!("SELECT {COLUMNS} FROM approvals WHERE id = $1")
}

pub(super) fn select_open() -> String {
    format!(
        "SELECT {COLUMNS} FROM approvals WHERE state IN ('pending', 'approved') AND expires_at > $1
         ORDER BY requested_at, id"
    )
}

pub(super) fn select_pending() -> String {
    format!(
        "SELECT {COLUMNS} FROM approvals WHERE state = 'pending' AND expires_at > $1
         AND principal = $2 AND target = $3 AND scopes = $4 AND actors = $5
         ORDER BY requested_at, id LIMIT 1"
    )
}

pub(super) fn decide() -> String {
    format!(
        "UPDATE approvals SET state = $2, decided_by = $3, decided_at = $4, expires_at = $5
         WHERE id = $1 AND state = 'pending' AND expires_at > $4 RETURNING {COLUMNS}"
    )
}

pub(super) const REDEEM: &str =
    "UPDATE approvals SET state = 'used' WHERE id = $1 AND state = 'approved' AND expires_at > $2";

/// The approval a row of [`COLUMNS`] holds; a state writ never writes is a
/// corrupt row.
pub(super) fn approval_from_row<R>(r: &R) -> Result<Approval, StoreError>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let id: String = r.try_get("id")?;
    let state: String = r.try_get("state")?;
    Ok(Approval {
        state: ApprovalState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("approval {id}: state {state:?}")))?,
        id,
        role: r.try_get("role")?,
        principal: r.try_get("principal")?,
        target: r.try_get("target")?,
        scopes: r.try_get("scopes")?,
        actors: r.try_get("actors")?,
        requested_at: uint(r.try_get("requested_at")?),
        expires_at: uint(r.try_get("expires_at")?),
        decided_by: r.try_get("decided_by")?,
        decided_at: r.try_get::<Option<i64>, _>("decided_at")?.map(uint),
    })
}

/// Implements [`crate::approval::ApprovalLog`] for a store with a `pool`.
macro_rules! approval_log {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl crate::approval::ApprovalLog for $store {
            async fn create_approval(
                &self,
                a: &crate::approval::Approval,
            ) -> Result<(), StoreError> {
                use super::approvals::{INSERT, KEEP_SECS, SWEEP};
                use super::rows::int;
                // Old rows go as new ones come: the table stays a day deep.
                sqlx::query(SWEEP)
                    .bind(int(a.requested_at.saturating_sub(KEEP_SECS)))
                    .execute(&self.pool)
                    .await?;
                sqlx::query(INSERT)
                    .bind(&a.id)
                    .bind(&a.role)
                    .bind(&a.principal)
                    .bind(&a.target)
                    .bind(&a.scopes)
                    .bind(&a.actors)
                    .bind(int(a.requested_at))
                    .bind(int(a.expires_at))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn approval(
                &self,
                id: &str,
            ) -> Result<Option<crate::approval::Approval>, StoreError> {
                let row = sqlx::query(&super::approvals::select_one())
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref()
                    .map(super::approvals::approval_from_row)
                    .transpose()
            }

            async fn pending_approval(
                &self,
                ask: &crate::approval::Ask<'_>,
                now: u64,
            ) -> Result<Option<crate::approval::Approval>, StoreError> {
                let row = sqlx::query(&super::approvals::select_pending())
                    .bind(super::rows::int(now))
                    .bind(ask.principal)
                    .bind(ask.target)
                    .bind(ask.scopes)
                    .bind(ask.actors)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref()
                    .map(super::approvals::approval_from_row)
                    .transpose()
            }

            async fn open_approvals(
                &self,
                now: u64,
            ) -> Result<Vec<crate::approval::Approval>, StoreError> {
                let rows = sqlx::query(&super::approvals::select_open())
                    .bind(super::rows::int(now))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter()
                    .map(super::approvals::approval_from_row)
                    .collect()
            }

            async fn decide_approval(
                &self,
                id: &str,
                approve: bool,
                by: &str,
                now: u64,
                redeem_until: u64,
            ) -> Result<Option<crate::approval::Approval>, StoreError> {
                use super::rows::int;
                let state = match approve {
                    true => crate::approval::ApprovalState::Approved,
                    false => crate::approval::ApprovalState::Denied,
                };
                let row = sqlx::query(&super::approvals::decide())
                    .bind(id)
                    .bind(state.as_str())
                    .bind(by)
                    .bind(int(now))
                    .bind(int(redeem_until))
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref()
                    .map(super::approvals::approval_from_row)
                    .transpose()
            }

            async fn redeem_approval(&self, id: &str, now: u64) -> Result<bool, StoreError> {
                let done = sqlx::query(super::approvals::REDEEM)
                    .bind(id)
                    .bind(super::rows::int(now))
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() == 1)
            }
        }
    };
}

pub(super) use approval_log;
