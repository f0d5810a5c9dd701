//! The signing-key lifecycle as a pure rule over the stored keys and a
//! time, so every replica reading the same rows reaches the same answer.
//!
//! A key is `next` (published, not signing yet), `active` (signing),
//! `retiring` (published until every token it signed has expired), then
//! deleted; or `revoked` (withdrawn at once). The key that signs at `t` is
//! the newest non-revoked, non-retiring key whose `activates_at <= t`, so
//! replicas agree on it even before any row changes state; the stored
//! states follow by conditional updates ([`plan`]) made by whichever
//! replica notices first.

/// Where a key is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyState {
    /// Published, signs from `activates_at` on.
    Next,
    /// Signing (or the newest key whose time has come).
    Active,
    /// Superseded; published until `retires_at`, then deleted.
    Retiring,
    /// Withdrawn from every JWKS; its tokens are revoked by the kill switch.
    Revoked,
}

impl KeyState {
    /// The stored (and listed) name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Active => "active",
            Self::Retiring => "retiring",
            Self::Revoked => "revoked",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "next" => Self::Next,
            "active" => Self::Active,
            "retiring" => Self::Retiring,
            "revoked" => Self::Revoked,
            _ => return None,
        })
    }
}

/// What the lifecycle reads of a stored key: its id, state and times
/// (seconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTimes {
    /// The key id.
    pub kid: String,
    /// Its stored state.
    pub state: KeyState,
    /// When it was made.
    pub created_at: u64,
    /// When it signs from.
    pub activates_at: u64,
    /// When a retiring (or revoked) key may be deleted; `None` until known.
    pub retires_at: Option<u64>,
    /// When it was revoked.
    pub revoked_at: Option<u64>,
}

/// One conditional change to a stored key: applied only if the key is
/// still in `from`, so two replicas making it change it once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// `next` → `active`: its time has come, or (`at`) it is brought
    /// forward because nothing else may sign.
    Activate {
        /// The key.
        kid: String,
        /// A new, earlier `activates_at`.
        at: Option<u64>,
    },
    /// `active` → `retiring`, published until `retires_at`; also sets a
    /// missing `retires_at` on a `retiring` key (keys migrated from before
    /// the lifecycle).
    Retire {
        /// The key.
        kid: String,
        /// Its state now.
        from: KeyState,
        /// Until when it stays published.
        retires_at: u64,
    },
    /// Deletes a `retiring` or `revoked` key whose tokens have all expired.
    Delete {
        /// The key.
        kid: String,
        /// Its state now.
        from: KeyState,
    },
}

/// The key that signs at `t`: the newest (by `activates_at`, then
/// `created_at`, then `kid`) `active` key or `next` key whose time has
/// come.
pub fn signer_at(keys: &[KeyTimes], t: u64) -> Option<&KeyTimes> {
    keys.iter()
        // A row another replica already made active signs even if this
        // replica's clock is a little behind its `activates_at`.
        .filter(|k| {
            k.state == KeyState::Active || (k.state == KeyState::Next && k.activates_at <= t)
        })
        .max_by(|a, b| {
            (a.activates_at, a.created_at, &a.kid).cmp(&(b.activates_at, b.created_at, &b.kid))
        })
}

/// The key that will sign after the current signer, and from when: a
/// `next` key not yet due.
pub fn upcoming_at(keys: &[KeyTimes], t: u64) -> Option<&KeyTimes> {
    keys.iter()
        .filter(|k| k.state == KeyState::Next && k.activates_at > t)
        .min_by(|a, b| (a.activates_at, &a.kid).cmp(&(b.activates_at, &b.kid)))
}

/// Whether a key is published (in the JWKS, and accepted when tokens come
/// back) at `t`: every `next`, `active` and `retiring` key, a retiring
/// one until its `retires_at`; never a revoked one.
pub fn published_at(key: &KeyTimes, t: u64) -> bool {
    match key.state {
        KeyState::Next | KeyState::Active => true,
        KeyState::Retiring => key.retires_at.is_none_or(|r| t < r),
        KeyState::Revoked => false,
    }
}

/// When a key superseded by one activating at `successor_at` may go:
/// once every token it signed has expired. `retire_after` is the longest
/// lifetime a live token may have plus the verifiers' leeway.
pub fn retires_at(successor_at: u64, retire_after: u64) -> u64 {
    successor_at.saturating_add(retire_after)
}

/// The changes that bring the stored states in line with the rule at
/// `now`, in the order to apply them (retire before activate, so at most
/// one key is ever `active`).
pub fn plan(keys: &[KeyTimes], now: u64, retire_after: u64) -> Vec<Transition> {
    let mut out = Vec::new();
    let signer = signer_at(keys, now);
    for k in keys {
        match k.state {
            KeyState::Active if signer.is_some_and(|s| s.kid != k.kid) => {
                let successor = successor_of(keys, k, now);
                out.push(Transition::Retire {
                    kid: k.kid.clone(),
                    from: KeyState::Active,
                    retires_at: retires_at(successor, retire_after),
                });
            }
            KeyState::Retiring if k.retires_at.is_none() => {
                let successor = successor_of(keys, k, now);
                out.push(Transition::Retire {
                    kid: k.kid.clone(),
                    from: KeyState::Retiring,
                    retires_at: retires_at(successor, retire_after),
                });
            }
            KeyState::Retiring | KeyState::Revoked if k.retires_at.is_some_and(|r| r <= now) => {
                out.push(Transition::Delete {
                    kid: k.kid.clone(),
                    from: k.state,
                });
            }
            _ => {}
        }
    }
    if let Some(s) = signer.filter(|s| s.state == KeyState::Next) {
        out.push(Transition::Activate {
            kid: s.kid.clone(),
            at: None,
        });
    }
    out
}

/// When the key after `key` took over signing: the earliest later
/// non-revoked activation, or `now` if none is known.
fn successor_of(keys: &[KeyTimes], key: &KeyTimes, now: u64) -> u64 {
    keys.iter()
        .filter(|k| {
            k.kid != key.kid
                && k.state != KeyState::Revoked
                && (k.activates_at, k.created_at, &k.kid)
                    > (key.activates_at, key.created_at, &key.kid)
        })
        .map(|k| k.activates_at)
        .min()
        .map_or(now, |t| t.min(now))
}

/// What the key ring should make at `now`, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needed {
    /// Nothing: a key signs and rotation is not due (or already under way).
    Nothing,
    /// No key signs now: bring a `next` key forward, or make one, to
    /// sign at once.
    Active,
    /// `rotate_every` has passed since the signer activated and no `next`
    /// key exists: make one that signs after `publish_ahead`.
    Rotation,
}

/// Whether a key must be made at `now`. `rotate_every` of zero never
/// rotates by itself.
pub fn needed(keys: &[KeyTimes], now: u64, rotate_every: u64) -> Needed {
    let has_next = keys.iter().any(|k| k.state == KeyState::Next);
    match signer_at(keys, now) {
        None => Needed::Active,
        Some(_) if has_next || rotate_every == 0 => Needed::Nothing,
        Some(s) if now >= s.activates_at.saturating_add(rotate_every) => Needed::Rotation,
        Some(_) => Needed::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, state: KeyState, activates_at: u64) -> KeyTimes {
        KeyTimes {
            kid: kid.into(),
            state,
            created_at: activates_at.saturating_sub(60),
            activates_at,
            retires_at: None,
            revoked_at: None,
        }
    }

    #[test]
    fn the_newest_key_whose_time_has_come_signs_before_its_row_flips() {
        let keys = [
            key("a", KeyState::Active, 100),
            key("b", KeyState::Next, 200),
        ];
        assert_eq!(signer_at(&keys, 199).map(|k| k.kid.as_str()), Some("a"));
        assert_eq!(signer_at(&keys, 200).map(|k| k.kid.as_str()), Some("b"));
        assert_eq!(upcoming_at(&keys, 199).map(|k| k.kid.as_str()), Some("b"));
        assert_eq!(upcoming_at(&keys, 200), None);
        let early = [key("n", KeyState::Next, 100)];
        assert_eq!(signer_at(&early, 99), None, "a next key waits for its time");
        assert_eq!(
            signer_at(&keys, 99).map(|k| k.kid.as_str()),
            Some("a"),
            "a row made active signs even on a clock a little behind"
        );
    }

    #[test]
    fn revoked_and_retiring_keys_never_sign() {
        let keys = [
            key("a", KeyState::Retiring, 100),
            key("b", KeyState::Revoked, 200),
        ];
        assert_eq!(signer_at(&keys, 300), None);
        assert_eq!(needed(&keys, 300, 0), Needed::Active);
    }

    #[test]
    fn next_active_and_retiring_keys_are_published_until_retires_at_and_revoked_never() {
        let mut retiring = key("r", KeyState::Retiring, 100);
        assert!(published_at(&retiring, 1_000), "unknown retires_at: kept");
        retiring.retires_at = Some(500);
        assert!(published_at(&retiring, 499) && !published_at(&retiring, 500));
        assert!(published_at(&key("n", KeyState::Next, 900), 0));
        assert!(published_at(&key("a", KeyState::Active, 0), 0));
        assert!(!published_at(&key("x", KeyState::Revoked, 0), 0));
    }

    #[test]
    fn a_due_next_key_retires_the_active_one_first_then_activates() {
        let keys = [
            key("a", KeyState::Active, 100),
            key("b", KeyState::Next, 200),
        ];
        assert_eq!(plan(&keys, 199, 960), vec![]);
        assert_eq!(
            plan(&keys, 250, 960),
            vec![
                Transition::Retire {
                    kid: "a".into(),
                    from: KeyState::Active,
                    retires_at: 200 + 960,
                },
                Transition::Activate {
                    kid: "b".into(),
                    at: None
                },
            ]
        );
    }

    #[test]
    fn only_keys_past_retires_at_may_be_deleted() {
        let mut old = key("a", KeyState::Retiring, 100);
        old.retires_at = Some(1_160);
        let mut revoked = key("x", KeyState::Revoked, 50);
        revoked.retires_at = Some(2_000);
        let keys = [old, revoked, key("b", KeyState::Active, 200)];
        assert_eq!(plan(&keys, 1_159, 960), vec![]);
        assert_eq!(
            plan(&keys, 1_160, 960),
            vec![Transition::Delete {
                kid: "a".into(),
                from: KeyState::Retiring
            }]
        );
        assert_eq!(plan(&keys, 2_000, 960).len(), 2);
    }

    #[test]
    fn migrated_keys_get_their_retirement_from_their_successor() {
        // Two keys from before the lifecycle: both stored active.
        let keys = [
            key("old", KeyState::Active, 100),
            key("new", KeyState::Active, 300),
        ];
        assert_eq!(
            plan(&keys, 400, 960),
            vec![Transition::Retire {
                kid: "old".into(),
                from: KeyState::Active,
                retires_at: 300 + 960,
            }]
        );
        let migrated = [key("old", KeyState::Retiring, 100), keys[1].clone()];
        assert_eq!(
            plan(&migrated, 400, 960),
            vec![Transition::Retire {
                kid: "old".into(),
                from: KeyState::Retiring,
                retires_at: 300 + 960,
            }]
        );
    }

    #[test]
    fn rotation_is_due_after_rotate_every_unless_a_next_key_exists() {
        let active = [key("a", KeyState::Active, 100)];
        assert_eq!(needed(&active, 199, 100), Needed::Nothing);
        assert_eq!(needed(&active, 200, 100), Needed::Rotation);
        assert_eq!(needed(&active, 10_000, 0), Needed::Nothing, "0: never");
        let rotating = [active[0].clone(), key("b", KeyState::Next, 260)];
        assert_eq!(needed(&rotating, 250, 100), Needed::Nothing);
        assert_eq!(needed(&[], 0, 100), Needed::Active);
        // Nothing signs (the active key was revoked): do not wait for
        // the next one.
        assert_eq!(
            needed(&[key("n", KeyState::Next, 50)], 10, 100),
            Needed::Active
        );
    }
}
