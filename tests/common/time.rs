//! Wall-clock helpers: the test computes what writ should see from the same clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
#[allow(
    clippy::disallowed_methods,
    reason = "the test plays the outside world, whose clock is the OS clock"
)]
pub fn now() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("system clock is after 1970");
    i64::try_from(elapsed.as_secs()).expect("time fits in i64")
}

/// A Unix time broken into its UTC calendar fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// "Mon".."Sun", as writ puts it in `context.weekday`.
    pub weekday: &'static str,
}

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

impl Utc {
    pub fn at(unix: i64) -> Self {
        let days = unix.div_euclid(86_400);
        let seconds_of_day = unix.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        // 1970-01-01 was a Thursday.
        let weekday = WEEKDAYS[usize::try_from((days + 3).rem_euclid(7)).expect("0..7")];
        Self {
            year,
            month,
            day,
            hour: u32::try_from(seconds_of_day / 3600).expect("0..24"),
            minute: u32::try_from(seconds_of_day % 3600 / 60).expect("0..60"),
            second: u32::try_from(seconds_of_day % 60).expect("0..60"),
            weekday,
        }
    }
}

/// `unix` written as a Cedar `datetime` literal ("2024-10-15T11:35:00Z").
pub fn cedar_datetime(unix: i64) -> String {
    let t = Utc::at(unix);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year, t.month, t.day, t.hour, t.minute, t.second
    )
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (
        year,
        u32::try_from(month).expect("1..=12"),
        u32::try_from(day).expect("1..=31"),
    )
}
