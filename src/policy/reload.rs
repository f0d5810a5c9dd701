//! Hot reload: poll the directory for changes and reload on SIGHUP. An
//! invalid set is logged with file and line while the last good set stays live.

use std::sync::Arc;
use std::time::Duration;

use super::PolicyEngine;

/// Watches the policy directory every `interval` and on SIGHUP, calling
/// `on_reload(ok)` after each attempt (for metrics).
pub fn spawn_watcher(
    engine: Arc<PolicyEngine>,
    interval: Duration,
    on_reload: impl Fn(bool) + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; policy reload is by file change only");
                None
            }
        };
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let forced = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            };
            if !forced && !engine.changed_on_disk() {
                continue;
            }
            let engine = engine.clone();
            let outcome = tokio::task::spawn_blocking(move || engine.reload()).await;
            match outcome {
                Ok(Ok(count)) => {
                    tracing::info!(
                        policies = count,
                        trigger = if forced { "SIGHUP" } else { "file change" },
                        "policies reloaded"
                    );
                    on_reload(true);
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "policy reload refused; the last good set stays live");
                    on_reload(false);
                }
                Err(e) => {
                    tracing::error!(error = %e, "policy reload task failed");
                    on_reload(false);
                }
            }
        }
    })
}
