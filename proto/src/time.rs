//! Times on the wire: RFC 3339 in UTC, to the second.

use std::time::{Duration, UNIX_EPOCH};

/// The last second RFC 3339 can print (9999-12-31T23:59:59Z).
const LAST_PRINTABLE: u64 = 253_402_300_799;

/// Formats a Unix time as RFC 3339 in UTC, e.g. `2026-11-24T03:49:22Z`.
/// Times past year 9999 print as its last second.
pub fn rfc3339(secs: u64) -> String {
    let secs = secs.min(LAST_PRINTABLE);
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

/// Parses an RFC 3339 time (UTC, `Z`) into seconds since the epoch.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    humantime::parse_rfc3339_weak(text)
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_known_time_round_trips() {
        assert_eq!(rfc3339(1_795_492_162), "2026-11-24T03:49:22Z");
        assert_eq!(parse_rfc3339("2026-11-24T03:49:22Z"), Some(1_795_492_162));
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59Z");
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
