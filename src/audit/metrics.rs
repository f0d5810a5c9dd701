//! Prometheus metrics: decisions by outcome, mint latency, policy reloads,
//! attestation failures by reason.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabel {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// All of writ's metrics.
pub struct Metrics {
    registry: Registry,
    decisions: Family<Outcome, Counter>,
    reloads: Family<Outcome, Counter>,
    attestation_failures: Family<Reason, Counter>,
    rate_limited: Family<LimitLabel, Counter>,
    mint_seconds: Histogram,
    kill_switch_reads: Family<Outcome, Counter>,
    kill_switch_applied: Gauge,
    kill_switch_age: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("writ");
        let decisions = Family::<Outcome, Counter>::default();
        let reloads = Family::<Outcome, Counter>::default();
        let attestation_failures = Family::<Reason, Counter>::default();
        let rate_limited = Family::<LimitLabel, Counter>::default();
        registry.register(
            "rate_limited",
            "Token requests refused by limits.per_principal or limits.per_target, by limit",
            rate_limited.clone(),
        );
        // 50 µs .. ~1.6 s
        let mint_seconds = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.000_05, 2.0, 16),
        );
        registry.register("decisions", "Token decisions by outcome", decisions.clone());
        registry.register(
            "policy_reloads",
            "Policy reload attempts by outcome",
            reloads.clone(),
        );
        registry.register(
            "attestation_failures",
            "Refused attestations by reason",
            attestation_failures.clone(),
        );
        registry.register(
            "mint_duration_seconds",
            "Time from request to signed token",
            mint_seconds.clone(),
        );
        let kill_switch_reads = Family::<Outcome, Counter>::default();
        let kill_switch_applied = Gauge::default();
        let kill_switch_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "kill_switch_reads",
            "Reads of the shared kill-switch log by outcome (an error is a store error)",
            kill_switch_reads.clone(),
        );
        registry.register(
            "kill_switch_applied_seq",
            "The last kill-switch seq this replica has applied",
            kill_switch_applied.clone(),
        );
        registry.register(
            "kill_switch_staleness_seconds",
            "Age of this replica's view of the kill switch (lag behind the store)",
            kill_switch_age.clone(),
        );
        Self {
            registry,
            decisions,
            reloads,
            attestation_failures,
            rate_limited,
            mint_seconds,
            kill_switch_reads,
            kill_switch_applied,
            kill_switch_age,
        }
    }

    /// Counts a decision: `allow`, `deny` or `error`.
    pub fn decision(&self, outcome: &'static str) {
        self.decisions.get_or_create(&Outcome { outcome }).inc();
    }

    /// Counts a token request refused by `limit` (`per_principal`, `per_target`).
    pub fn rate_limited(&self, limit: &'static str) {
        self.rate_limited.get_or_create(&LimitLabel { limit }).inc();
    }

    /// Counts a policy reload attempt.
    pub fn policy_reload(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.reloads.get_or_create(&Outcome { outcome }).inc();
    }

    /// Counts a refused attestation.
    pub fn attestation_failure(&self, reason: &'static str) {
        self.attestation_failures
            .get_or_create(&Reason { reason })
            .inc();
    }

    /// Observes the duration of a successful mint.
    pub fn mint_duration(&self, seconds: f64) {
        self.mint_seconds.observe(seconds);
    }

    /// Counts a read of the kill-switch log.
    pub fn kill_switch_read(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.kill_switch_reads
            .get_or_create(&Outcome { outcome })
            .inc();
    }

    /// Sets how far this replica has applied the kill switch, and how old
    /// its view is.
    pub fn kill_switch_view(&self, applied_seq: u64, age: std::time::Duration) {
        self.kill_switch_applied
            .set(i64::try_from(applied_seq).unwrap_or(i64::MAX));
        self.kill_switch_age.set(age.as_secs_f64());
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics encoding failed");
        }
        out
    }
}
