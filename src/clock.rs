//! The one source of time: every expiry, `iat` and Cedar `now` comes from a
//! [`Clock`], so tests and benchmarks can control it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// The current time in whole seconds since the Unix epoch.
    fn unix_now(&self) -> u64 {
        self.now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs()
    }
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one place allowed to read the OS clock
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// Calendar fields of a Unix time in UTC, for Cedar's `hour` and `weekday`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcFields {
    /// Hour of the day, 0-23.
    pub hour: u8,
    /// Day of the week, 0 = Monday .. 6 = Sunday.
    pub weekday: u8,
}

impl UtcFields {
    /// Splits seconds since the epoch into UTC hour and weekday. Unix time
    /// has 86 400 seconds a day, so no calendar is needed (a test checks
    /// this against the `time` crate's); it is exact for every `u64`,
    /// where `time` stops at year 9999.
    pub fn from_unix(secs: u64) -> Self {
        let days = secs / 86_400;
        // 1970-01-01 was a Thursday (index 3 when Monday is 0).
        let weekday = ((days + 3) % 7) as u8;
        let hour = ((secs % 86_400) / 3_600) as u8;
        Self { hour, weekday }
    }

    /// The weekday as Cedar policies see it: "Mon".."Sun".
    pub fn weekday_name(&self) -> &'static str {
        ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][usize::from(self.weekday % 7)]
    }
}

pub use writ_proto::time::rfc3339;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_is_thursday_midnight() {
        let f = UtcFields::from_unix(0);
        assert_eq!((f.hour, f.weekday_name()), (0, "Thu"));
    }

    #[test]
    fn known_date_maps_to_its_weekday_and_hour() {
        // 2026-11-24T03:49:22Z is a Tuesday.
        let f = UtcFields::from_unix(1_795_492_162);
        assert_eq!((f.hour, f.weekday_name()), (3, "Tue"));
        assert_eq!(rfc3339(1_795_492_162), "2026-11-24T03:49:22Z");
    }

    proptest::proptest! {
        #[test]
        fn hour_and_weekday_agree_with_the_time_crate(secs in 0u64..=253_402_300_799) {
            let f = UtcFields::from_unix(secs);
            let t = time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap()).unwrap();
            proptest::prop_assert_eq!(f.hour, t.hour());
            proptest::prop_assert_eq!(f.weekday, t.weekday().number_days_from_monday());
        }
    }
}
