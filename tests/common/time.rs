//! Wall-clock helpers: the test computes what writ should see from the same clock.

use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

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

/// How long until the next whole second of the OS clock, for a test that
/// needs an action early in a second (writ's times are whole seconds).
#[allow(
    clippy::disallowed_methods,
    reason = "the test plays the outside world, whose clock is the OS clock"
)]
pub fn until_next_second() -> std::time::Duration {
    let into = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("system clock is after 1970")
        .subsec_nanos();
    std::time::Duration::from_nanos(u64::from(1_000_000_000 - into))
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

/// `unix` as a UTC date and time (the `time` crate's calendar, not writ's).
#[track_caller]
fn utc(unix: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(unix)
        .unwrap_or_else(|error| panic!("{unix} is not a time of years 1..9999: {error}"))
}

impl Utc {
    pub fn at(unix: i64) -> Self {
        let t = utc(unix);
        Self {
            year: i64::from(t.year()),
            month: u32::from(u8::from(t.month())),
            day: u32::from(t.day()),
            hour: u32::from(t.hour()),
            minute: u32::from(t.minute()),
            second: u32::from(t.second()),
            weekday: WEEKDAYS[usize::from(t.weekday().number_days_from_monday())],
        }
    }
}

/// `unix` written as a Cedar `datetime` literal ("2024-10-15T11:35:00Z").
pub fn cedar_datetime(unix: i64) -> String {
    utc(unix)
        .format(&Rfc3339)
        .unwrap_or_else(|error| panic!("{unix} cannot be written as RFC 3339: {error}"))
}

/// `unix` as an RFC 3339 timestamp in UTC ("2024-10-15T11:35:00Z"), e.g. a block's `until`.
pub fn rfc3339(unix: i64) -> String {
    cedar_datetime(unix)
}

/// The Unix time of an RFC 3339 timestamp ("2024-10-15T11:35:00.123456Z",
/// "2024-10-15T13:35:00+02:00"), fractions of a second dropped; `None` when
/// it is not one.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}
