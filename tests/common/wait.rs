//! Waiting for something writ does asynchronously (an audit line, a reload),
//! bounded, with a clear failure instead of a sleep-and-hope.

use std::time::Duration;

use tokio::time::Instant;

/// How long an asynchronous effect may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);
/// How often to look again.
pub const POLL: Duration = Duration::from_millis(50);

/// Runs `probe` every [`POLL`] until it returns `Ok`, for at most [`WAIT`].
/// `Err` carries what was seen last, which the failure message reports.
pub async fn eventually<T>(what: &str, probe: impl AsyncFnMut() -> Result<T, String>) -> T {
    eventually_within(WAIT, what, probe).await
}

/// Like [`eventually`], for effects that take time by design (a block whose
/// `until` lies seconds ahead): at most `limit`.
pub async fn eventually_within<T>(
    limit: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last_seen) if Instant::now() >= deadline => {
                panic!("waited {limit:?} for {what}; last seen: {last_seen}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}
