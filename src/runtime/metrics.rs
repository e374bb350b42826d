//! Prometheus metrics. The names are normative (see the API contract).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
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
    /// 1 while an object's Ready condition is False, labelled with its
    /// reason; no series while it is Ready.
    pub not_ready: IntGaugeVec,
    /// 1 while a promotion gate holds a NetworkFunction back (its
    /// `Verified` condition is False), labelled with the reason.
    pub promotion_waiting: IntGaugeVec,
    /// 1 while this replica reconciles (it holds the lease, or runs without
    /// leader election), 0 while it starts or stands by.
    pub leading: IntGauge,
    /// Objects in each cache, by kind.
    pub cached_objects: IntGaugeVec,
    /// Estimated heap bytes of each cache's objects, by kind.
    pub cached_bytes: IntGaugeVec,
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
        Self::labelled(&[])
    }

    /// Creates and registers every metric, each series with `labels` too
    /// (a sharded replica's `shard`).
    pub fn labelled(labels: &[(&str, &str)]) -> Self {
        let labels: std::collections::HashMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let registry = Registry::new_custom(None, Some(labels).filter(|l| !l.is_empty()))
            .expect("constant labels are valid label names");
        let r = &registry;
        let metrics = Self {
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
            not_ready: gauge(
                r,
                "strata_not_ready",
                "1 while an object's Ready condition is False, with its reason",
                &["kind", "namespace", "name", "reason"],
            ),
            promotion_waiting: gauge(
                r,
                "strata_promotion_waiting",
                "1 while a promotion gate holds a NetworkFunction back, with the reason",
                &["namespace", "name", "reason"],
            ),
            leading: registered(
                r,
                IntGauge::new(
                    "strata_leading",
                    "1 while this replica reconciles (leader, or no leader election), 0 while it stands by",
                )
                .expect("valid metric"),
            ),
            cached_objects: gauge(
                r,
                "strata_cached_objects",
                "Objects in each of the operator's caches, by kind",
                &["kind"],
            ),
            cached_bytes: gauge(
                r,
                "strata_cached_bytes",
                "Estimated heap bytes of the objects in each of the operator's caches (count times the size of a sample), by kind",
                &["kind"],
            ),
            registry: with_process_metrics(registry),
        };
        // The unlabelled histograms exist from the start, at zero: a rate
        // over the first observation needs the sample before it (a series
        // that appears at 1 shows no increase).
        metrics.deploy_cycle.with_label_values(&[] as &[&str]);
        metrics.recovery.with_label_values(&[] as &[&str]);
        metrics
    }

    /// Records whether `kind` `namespace/name` is Ready now (`None`) or not,
    /// and why; `was` is the reason it was not Ready before, if so.
    pub fn readiness(
        &self,
        kind: &str,
        namespace: &str,
        name: &str,
        was: Option<&str>,
        is: Option<&str>,
    ) {
        move_reason(&self.not_ready, &[kind, namespace, name], was, is);
    }

    /// Records whether a promotion gate holds `namespace/name` back now
    /// (`is`, the reason) or not; `was` is the reason it did before, if so.
    pub fn promotion(&self, namespace: &str, name: &str, was: Option<&str>, is: Option<&str>) {
        move_reason(&self.promotion_waiting, &[namespace, name], was, is);
    }

    /// This replica reconciles from now on.
    pub fn leads(&self) {
        self.leading.set(1);
    }

    /// This replica stopped reconciling (its term ended): it no longer
    /// speaks for the objects, so the per-object gauges are cleared; the next
    /// term's reconciles set them again.
    pub fn stands_by(&self) {
        self.leading.set(0);
        self.not_ready.reset();
        self.promotion_waiting.reset();
        self.networkfunction_info.reset();
        self.stack_consumers.reset();
        self.cached_objects.reset();
        self.cached_bytes.reset();
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

/// `registry` with the process's own metrics (`process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, open file descriptors...), the names
/// every Prometheus client library uses, on Linux.
/// Moves the series of `object` (its label values, the reason last) in a
/// reason-labelled gauge from reason `was` to `is`: none while neither.
fn move_reason<'a>(
    gauge: &IntGaugeVec,
    object: &[&'a str],
    was: Option<&'a str>,
    is: Option<&'a str>,
) {
    let with = |reason: &'a str| {
        let mut labels = object.to_vec();
        labels.push(reason);
        labels
    };
    if let Some(was) = was
        && Some(was) != is
    {
        let _ = gauge.remove_label_values(&with(was));
    }
    if let Some(is) = is {
        gauge.with_label_values(&with(is)).set(1);
    }
}

fn with_process_metrics(registry: Registry) -> Registry {
    #[cfg(target_os = "linux")]
    registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("process metric names are unique");
    registry
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

#[cfg(test)]
mod tests {
    use super::*;

    fn not_ready_series(metrics: &Metrics) -> Vec<String> {
        metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("strata_not_ready{"))
            .map(String::from)
            .collect()
    }

    #[test]
    fn readiness_keeps_one_series_per_object_with_its_current_reason() {
        let metrics = Metrics::new();
        let nf = |was, is| metrics.readiness("NetworkFunction", "telco", "upf", was, is);
        nf(None, Some("Progressing"));
        nf(Some("Progressing"), Some("StackNotReady"));
        assert_eq!(
            not_ready_series(&metrics),
            [
                r#"strata_not_ready{kind="NetworkFunction",name="upf",namespace="telco",reason="StackNotReady"} 1"#
            ]
        );
        nf(Some("StackNotReady"), None);
        assert_eq!(not_ready_series(&metrics), Vec::<String>::new());
    }

    #[test]
    fn a_replica_standing_by_speaks_for_no_object() {
        let metrics = Metrics::new();
        metrics.leads();
        metrics.readiness("Stack", "telco", "edge-net", None, Some("VersionConflict"));
        metrics
            .networkfunction_info
            .with_label_values(&["telco", "upf", "1.0.0", "edge-net", "1.4.0"])
            .set(1);
        assert!(metrics.render().contains("strata_leading 1"));
        metrics.stands_by();
        let text = metrics.render();
        assert!(text.contains("strata_leading 0"), "{text}");
        assert!(!text.contains("strata_not_ready{"), "{text}");
        assert!(!text.contains("strata_networkfunction_info{"), "{text}");
    }

    #[test]
    fn the_process_metrics_are_exported() {
        let text = Metrics::new().render();
        for name in ["process_cpu_seconds_total", "process_resident_memory_bytes"] {
            assert!(
                text.contains(&format!("\n{name} ")),
                "no {name} in:\n{text}"
            );
        }
    }
}
