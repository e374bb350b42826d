//! Prometheus metrics. The names are normative (see the API contract).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric Strata exports, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Reconciles by kind and result (`success` or an error reason).
    pub reconcile_total: IntCounterVec,
    /// Reconcile durations by kind.
    pub reconcile_duration: HistogramVec,
    /// What runs on what: 1 per NetworkFunction with its version and stack version.
    pub networkfunction_info: IntGaugeVec,
    /// From a spec change being observed to Ready.
    pub deploy_cycle: HistogramVec,
    /// From Ready=False to Ready=True.
    pub recovery: HistogramVec,
    /// NetworkFunctions consuming each Stack version.
    pub stack_consumers: IntGaugeVec,
    /// 1 for the phase of the current adoption of each Stack's applied version.
    pub stack_adoption: IntGaugeVec,
    /// Managed objects found edited or deleted by someone else, and restored.
    pub drift_corrections: IntCounterVec,
    /// Mutating API requests by method and outcome: `sent`, or `fenced`
    /// (refused locally: this replica's leader term had ended).
    pub api_writes: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

const RECONCILE_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const CYCLE_BUCKETS: &[f64] = &[
    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        Self {
            reconcile_total: counter(
                r,
                "strata_reconcile_total",
                "Reconciles by kind and result",
                &["kind", "result"],
            ),
            reconcile_duration: histogram(
                r,
                "strata_reconcile_duration_seconds",
                "Reconcile duration by kind",
                RECONCILE_BUCKETS,
                &["kind"],
            ),
            networkfunction_info: gauge(
                r,
                "strata_networkfunction_info",
                "Each NetworkFunction with its version and the stack version it was deployed with",
                &["namespace", "name", "version", "stack", "stack_version"],
            ),
            deploy_cycle: histogram(
                r,
                "strata_deploy_cycle_seconds",
                "Time from a change being observed to the NetworkFunction being Ready",
                CYCLE_BUCKETS,
                &[],
            ),
            recovery: histogram(
                r,
                "strata_recovery_seconds",
                "Time from a NetworkFunction becoming not Ready to Ready again",
                CYCLE_BUCKETS,
                &[],
            ),
            stack_consumers: gauge(
                r,
                "strata_stack_consumers",
                "NetworkFunctions deployed on each Stack version",
                &["namespace", "stack", "version"],
            ),
            stack_adoption: gauge(
                r,
                "strata_stack_adoption",
                "The phase (Progressing, Halted, Complete) of the adoption of each Stack's applied version by its consumers",
                &["namespace", "stack", "version", "phase"],
            ),
            drift_corrections: counter(
                r,
                "strata_stack_drift_corrections_total",
                "Objects managed by a Stack found changed or deleted by someone else and restored",
                &["namespace", "stack"],
            ),
            api_writes: counter(
                r,
                "strata_api_writes_total",
                "Mutating API requests by method and outcome (sent, or fenced: refused outside a leader term)",
                &["method", "outcome"],
            ),
            registry,
        }
    }

    /// Counts one reconcile of `kind` and observes its duration.
    pub fn reconciled(&self, kind: &str, result: &str, seconds: f64) {
        self.reconcile_total
            .with_label_values(&[kind, result])
            .inc();
        self.reconcile_duration
            .with_label_values(&[kind])
            .observe(seconds);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding never fails");
        String::from_utf8(buffer).expect("text exposition is UTF-8")
    }
}

/// Registers `collector` in `registry`; names are fixed in this file, so a
/// clash is a programming error.
fn registered<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("metric names are unique");
    collector
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registered(registry, metric)
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registered(registry, metric)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    buckets: &[f64],
    labels: &[&str],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    registered(
        registry,
        HistogramVec::new(opts, labels).expect("valid metric"),
    )
}
