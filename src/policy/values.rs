//! Cedar extension values (`datetime`, `ip`) for request contexts, built
//! once per distinct value and thread.
//!
//! `RestrictedExpression::new_datetime` and `new_ip` parse the extension's
//! own name with Cedar's grammar on every call before parsing the value:
//! profiled, that was half the time `writ access` spent and a share of
//! every decision's context. The values are a pure function of their input,
//! so a clone of the first one built serves every later request for the
//! same second or address; each cache is per thread (no lock on the hot
//! path) and bounded.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;

use cedar_policy::RestrictedExpression;

use crate::clock::rfc3339;

/// Distinct source addresses remembered per thread; emptied when full.
const MAX_ADDRESSES: usize = 1024;

thread_local! {
    static NOW: RefCell<Option<(u64, RestrictedExpression)>> = const { RefCell::new(None) };
    static ADDRESSES: RefCell<HashMap<IpAddr, RestrictedExpression>> = RefCell::new(HashMap::new());
}

/// `datetime("<now as RFC 3339>")`.
pub(crate) fn datetime(now: u64) -> RestrictedExpression {
    NOW.with_borrow_mut(|cached| match cached {
        Some((second, value)) if *second == now => value.clone(),
        _ => {
            let value = RestrictedExpression::new_datetime(rfc3339(now));
            *cached = Some((now, value.clone()));
            value
        }
    })
}

/// `ip("<addr>")`.
pub(crate) fn ip(addr: IpAddr) -> RestrictedExpression {
    ADDRESSES.with_borrow_mut(|cached| {
        if let Some(value) = cached.get(&addr) {
            return value.clone();
        }
        if cached.len() >= MAX_ADDRESSES {
            cached.clear();
        }
        let value = RestrictedExpression::new_ip(addr.to_string());
        cached.insert(addr, value.clone());
        value
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cached value is the value Cedar builds for that input, and a new
    /// input never gets an old value.
    #[test]
    fn cached_values_are_those_of_their_input() {
        for now in [0, 1_700_000_000, 1_700_000_000, 1_700_000_001] {
            assert_eq!(
                datetime(now),
                RestrictedExpression::new_datetime(rfc3339(now))
            );
        }
        for i in 0..(MAX_ADDRESSES as u32 + 5) {
            let addr = IpAddr::from(i.to_be_bytes());
            assert_eq!(ip(addr), RestrictedExpression::new_ip(addr.to_string()));
        }
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(ip(v6), RestrictedExpression::new_ip("2001:db8::1"));
        assert_ne!(ip(v6), ip(IpAddr::from([127, 0, 0, 1])));
        assert_ne!(datetime(1), datetime(2));
    }
}
