//! Human approval for risky grants (CONTRACT section 10): a permit annotated
//! `@requires_approval("<role>")` makes the grant it allows wait for a
//! person with that role. The token endpoint answers `authorization_pending`
//! with an `approval_id` (RFC 8628's device-flow errors as the model); an
//! approver approves or denies through the admin API; the client's retry
//! with the `approval_id` then gets the token once, within `approvals.ttl`.
//!
//! An approval is bound to exactly what was asked: the principal, the
//! target, the scopes Cedar granted and the agents acting. Another request
//! presenting its id is refused. Approvals live in the store, through the
//! [`ApprovalLog`] this module owns, so every replica sees the same ones.

use crate::durable::StoreError;

/// Seconds a client should wait between polls (RFC 8628 `interval`).
pub const POLL_INTERVAL_SECS: u64 = 5;

/// The longest role name accepted in `@requires_approval`.
pub const MAX_ROLE_LEN: usize = 128;

/// Where an approval stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalState {
    /// Waiting for an approver.
    Pending,
    /// Approved: one retry may redeem it before it expires.
    Approved,
    /// Denied by an approver.
    Denied,
    /// Redeemed: the token was minted.
    Used,
}

impl ApprovalState {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Used => "used",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "approved" => Some(Self::Approved),
            "denied" => Some(Self::Denied),
            "used" => Some(Self::Used),
            _ => None,
        }
    }
}

/// One grant waiting for, or decided by, a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// 128 random bits, hex: what the client retries with.
    pub id: String,
    /// The role whose holders may decide it.
    pub role: String,
    /// The principal the token would be for.
    pub principal: String,
    /// The target.
    pub target: String,
    /// The scopes Cedar granted, space separated.
    pub scopes: String,
    /// The agents acting for the principal, newest first, space separated.
    pub actors: String,
    /// When it was asked for.
    pub requested_at: u64,
    /// Pending: when the request lapses; approved: the last second it may
    /// be redeemed.
    pub expires_at: u64,
    /// Where it stands.
    pub state: ApprovalState,
    /// Who decided it (`Admin::"…"`).
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<u64>,
}

/// What a grant asks an approval to cover.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The principal.
    pub principal: &'a str,
    /// The target.
    pub target: &'a str,
    /// The granted scopes, space separated.
    pub scopes: &'a str,
    /// The acting agents, space separated.
    pub actors: &'a str,
}

impl Approval {
    /// Whether it covers exactly `ask`: an approval of one request never
    /// lets another through.
    pub fn covers(&self, ask: &Ask<'_>) -> bool {
        self.principal == ask.principal
            && self.target == ask.target
            && self.scopes == ask.scopes
            && self.actors == ask.actors
    }

    /// Whether it has lapsed at `now`.
    pub fn expired(&self, now: u64) -> bool {
        now >= self.expires_at
    }

    /// The state shown at `now`: a lapsed pending or approved one is
    /// `expired`.
    pub fn shown_state(&self, now: u64) -> &'static str {
        match self.state {
            ApprovalState::Pending | ApprovalState::Approved if self.expired(now) => "expired",
            state => state.as_str(),
        }
    }
}

/// Whether `role` may name approvers: 1 to [`MAX_ROLE_LEN`] printable
/// characters without quotes (it becomes `Role::"<role>"`).
pub fn valid_role(role: &str) -> bool {
    !role.is_empty()
        && role.len() <= MAX_ROLE_LEN
        && !role
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '\\')
}

/// Whether `id` has the form of an approval id (32 lowercase hex digits).
pub fn plausible_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The durable approvals every replica shares; the store implements it.
#[async_trait::async_trait]
pub trait ApprovalLog: Send + Sync {
    /// Records a new pending approval.
    async fn create_approval(&self, approval: &Approval) -> Result<(), StoreError>;

    /// The approval `id`, if any.
    async fn approval(&self, id: &str) -> Result<Option<Approval>, StoreError>;

    /// The approval still pending at `now` for exactly `ask`, if any: a
    /// client asking again (or a flood of asks) waits on that one rather
    /// than making another.
    async fn pending_approval(
        &self,
        ask: &Ask<'_>,
        now: u64,
    ) -> Result<Option<Approval>, StoreError>;

    /// Approvals still pending or approved at `now`, oldest first.
    async fn open_approvals(&self, now: u64) -> Result<Vec<Approval>, StoreError>;

    /// Decides a pending approval unexpired at `now`: approved (redeemable
    /// until `redeem_until`) or denied, by `by`. `None` when it was not
    /// pending and live (the caller reads it again to say why).
    async fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        by: &str,
        now: u64,
        redeem_until: u64,
    ) -> Result<Option<Approval>, StoreError>;

    /// Redeems an approved approval unexpired at `now`, once: `true` for
    /// the one call that did.
    async fn redeem_approval(&self, id: &str, now: u64) -> Result<bool, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval(state: ApprovalState) -> Approval {
        Approval {
            id: "0".repeat(32),
            role: "oncall".into(),
            principal: "p".into(),
            target: "db".into(),
            scopes: "write".into(),
            actors: "helper".into(),
            requested_at: 100,
            expires_at: 200,
            state,
            decided_by: None,
            decided_at: None,
        }
    }

    #[test]
    fn an_approval_covers_only_its_own_request() {
        let a = approval(ApprovalState::Approved);
        let ask = Ask {
            principal: "p",
            target: "db",
            scopes: "write",
            actors: "helper",
        };
        assert!(a.covers(&ask));
        assert!(!a.covers(&Ask {
            principal: "q",
            ..ask
        }));
        assert!(!a.covers(&Ask {
            target: "ledger",
            ..ask
        }));
        assert!(!a.covers(&Ask {
            scopes: "write admin",
            ..ask
        }));
        assert!(!a.covers(&Ask { actors: "", ..ask }));
    }

    #[test]
    fn a_lapsed_approval_shows_expired_but_a_decided_one_keeps_its_state() {
        assert_eq!(approval(ApprovalState::Pending).shown_state(199), "pending");
        assert_eq!(approval(ApprovalState::Pending).shown_state(200), "expired");
        assert_eq!(
            approval(ApprovalState::Approved).shown_state(250),
            "expired"
        );
        assert_eq!(approval(ApprovalState::Denied).shown_state(250), "denied");
        assert_eq!(approval(ApprovalState::Used).shown_state(250), "used");
        for s in ["pending", "approved", "denied", "used"] {
            assert_eq!(ApprovalState::parse(s).map(ApprovalState::as_str), Some(s));
        }
    }

    #[test]
    fn roles_and_ids_are_checked() {
        assert!(valid_role("security-oncall"));
        assert!(!valid_role(""));
        assert!(!valid_role("a\"b"));
        assert!(!valid_role(&"r".repeat(129)));
        assert!(plausible_id(&"a1".repeat(16)));
        assert!(!plausible_id("A1"));
        assert!(!plausible_id(&"g".repeat(32)));
    }
}
