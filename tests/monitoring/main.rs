//! Monitoring: the Grafana dashboard and the alert rules of
//! `deploy/monitoring/`, proven on real parts. A real Prometheus scrapes the
//! real operator on the local control plane through a rollout, a drift
//! correction, a version conflict, a failure, a recovery and an operator
//! outage; then every query of the dashboard must have returned data over
//! that run, every alert rule must evaluate without error, and the alerts
//! this run provokes must fire and resolve. The rules' real thresholds
//! (minutes) are promtool's to test (`strata.rules.test.yaml` beside this
//! file, run by `hack/test`); here every `for:` is two seconds.
//!
//! Needs the plane and prometheus: `eval "$(hack/plane env)"` exports
//! `KUBECONFIG` and `STRATA_PROMETHEUS`.

mod dashboard;
mod prometheus;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::json;
use strata::api::{NetworkFunction, Stack};
use strata_testkit::{
    EDGE_STACK, Operator, TestNamespace, apply, client, install_crds, repo_root, wait_for,
    wait_for_condition,
};

use dashboard::{dashboard, instantiate, panel_queries, variable_queries};
use prometheus::{Prometheus, free_port, with_short_for};

const DEADLINE: Duration = Duration::from_secs(120);

/// Queries of states this run does not drive (a halted adoption is driven by
/// tests/network_function/waves.rs and tests/crash_safety/waves.rs), proven
/// by promtool's input series.
const NOT_DRIVEN_HERE: [&str; 1] = [r#"phase="Halted""#];

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

async fn apply_stack(ns: &TestNamespace, version: &str, upstream: &str) {
    apply(&ns.api::<Stack>(), EDGE_STACK, json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "Stack", "metadata": {"name": EDGE_STACK},
        "spec": {"version": version, "resources": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "edge-dns"}, "data": {"upstream": upstream}},
        ]},
    }))
    .await;
}

async fn apply_function(ns: &TestNamespace, name: &str, stack_requirement: &str) {
    apply(&ns.api::<NetworkFunction>(), name, json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "NetworkFunction", "metadata": {"name": name},
        "spec": {
            "version": "1.0.0",
            "image": format!("registry.example/{name}@sha256:{}", "0123456789abcdef".repeat(4)),
            "stackRef": {"name": EDGE_STACK, "version": stack_requirement},
            "replicas": 1,
        },
    }))
    .await;
}

async fn ready(ns: &TestNamespace, name: &str, status: &str) {
    wait_for_condition(
        &ns.api::<NetworkFunction>(),
        name,
        "Ready",
        status,
        DEADLINE,
    )
    .await;
}

/// Waits until instant query `query` returns a sample.
async fn wait_for_data(prometheus: &Prometheus, query: &str) {
    wait_for(
        DEADLINE,
        &format!("Prometheus to answer {query}"),
        || async {
            let result = prometheus.query(query)?;
            if result.is_empty() {
                Err("no samples".to_string())
            } else {
                Ok(())
            }
        },
    )
    .await;
}

fn start_operator(ns: &TestNamespace, metrics: SocketAddr) -> Operator {
    Operator::start_with(
        ns.name(),
        &[
            ("STRATA_METRICS_ADDR", &metrics.to_string()),
            ("STRATA_LOG_FORMAT", "json"),
        ],
    )
}

#[tokio::test]
async fn dashboard_queries_return_data_and_alerts_fire_and_resolve_on_a_real_prometheus() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "monitoring").await;
    let start = now();
    let target: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let rules = std::fs::read_to_string(repo_root().join("deploy/monitoring/strata.rules.yaml"))
        .expect("deploy/monitoring/strata.rules.yaml");
    let scratch = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("monitoring");
    let prometheus = Prometheus::start(&scratch, target, &with_short_for(&rules)).await;
    let mut operator = start_operator(&ns, target);
    wait_for_data(&prometheus, r#"up{job="strata"} == 1"#).await;

    // A rollout: a stack and two functions on it, one pinned below 2.
    apply_stack(&ns, "1.0.0", "10.0.0.53").await;
    apply_function(&ns, "upf", "<2").await;
    apply_function(&ns, "smf", "*").await;
    ready(&ns, "upf", "True").await;
    ready(&ns, "smf", "True").await;

    // Drift: someone deletes an object of the Stack; it is restored.
    let config_maps = ns.api::<ConfigMap>();
    config_maps
        .delete("edge-dns", &Default::default())
        .await
        .expect("edge-dns is deleted");
    wait_for_data(&prometheus, "strata_stack_drift_corrections_total > 0").await;

    // A promotion gate holds amf: the same artifact never ran as upf here.
    // Once scraped, amf goes, and its series with it.
    let functions = ns.api::<NetworkFunction>();
    apply(&functions, "amf", json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "NetworkFunction", "metadata": {"name": "amf"},
        "spec": {
            "version": "1.0.0",
            "image": format!("registry.example/amf@sha256:{}", "0123456789abcdef".repeat(4)),
            "stackRef": {"name": EDGE_STACK},
            "promotion": {"requireVerifiedIn": [{"namespace": ns.name(), "networkFunction": "upf"}]},
        },
    }))
    .await;
    wait_for_data(
        &prometheus,
        r#"strata_promotion_waiting{name="amf", reason="NotVerifiedUpstream"} == 1"#,
    )
    .await;
    functions
        .delete("amf", &Default::default())
        .await
        .expect("amf is deleted");

    // A version changed in place is refused: the conflict alert fires.
    // Changed once more, it is refused again: errors that persist (a
    // counter's first sample is no increase), and that alert fires too
    // (every `for:` is short here).
    apply_stack(&ns, "1.0.0", "10.0.0.54").await;
    prometheus
        .wait_firing("StrataStackVersionConflict", &[("name", EDGE_STACK)])
        .await;
    apply_stack(&ns, "1.0.0", "10.0.0.55").await;
    prometheus
        .wait_firing(
            "StrataReconcileErrorsPersisting",
            &[("kind", "Stack"), ("result", "VersionConflict")],
        )
        .await;

    // The fix, a new version, resolves the conflict and is a failure for
    // upf, which does not accept it: not Ready, alert.
    apply_stack(&ns, "2.0.0", "10.0.0.55").await;
    prometheus.wait_resolved("StrataStackVersionConflict").await;
    ready(&ns, "upf", "False").await;
    prometheus
        .wait_firing("StrataNetworkFunctionNotReady", &[("name", "upf")])
        .await;

    // Recovery: upf accepts 2.0.0, rolls onto it, is Ready again.
    apply_function(&ns, "upf", ">=1").await;
    ready(&ns, "upf", "True").await;
    prometheus
        .wait_resolved("StrataNetworkFunctionNotReady")
        .await;
    wait_for_data(&prometheus, "strata_recovery_seconds_count > 0").await;
    // The dashboard shows a rate: two scrapes of this process must see it
    // before the process is stopped below.
    wait_for_data(&prometheus, "rate(strata_recovery_seconds_count[1m]) > 0").await;

    // No operator reconciles: no leader. Started again (same port), it leads.
    operator.terminate();
    operator.wait_exit(Duration::from_secs(30)).await;
    prometheus.wait_firing("StrataNoLeader", &[]).await;
    let operator = start_operator(&ns, target);
    prometheus.wait_resolved("StrataNoLeader").await;
    // A scrape of the new process's CPU and memory after its start.
    wait_for_data(
        &prometheus,
        r#"rate(process_cpu_seconds_total{job="strata"}[1m])"#,
    )
    .await;
    let end = now();

    // Every rule evaluates without error.
    let groups = prometheus.api("rules").expect("the rules");
    let rules: Vec<&serde_json::Value> = groups["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    assert_eq!(rules.len(), 7, "the rules Prometheus loaded: {groups}");
    for rule in rules {
        assert_eq!(
            rule["health"], "ok",
            "rule {} does not evaluate: {rule}",
            rule["name"]
        );
    }

    // Every query of the dashboard returned data over the run, as Grafana
    // sends it with this job and namespace selected.
    let dashboard = dashboard();
    let queries = panel_queries(&dashboard);
    let mut not_yet = Vec::new();
    let mut empty = Vec::new();
    for query in &queries {
        if let Some(metric) = NOT_DRIVEN_HERE.iter().find(|m| query.expr.contains(*m)) {
            not_yet.push(format!("{}: {metric}", query.what));
            continue;
        }
        let expr = instantiate(&query.expr, "strata", ns.name(), "1m");
        let series = prometheus
            .query_range(&expr, start, end)
            .unwrap_or_else(|e| panic!("{}: {expr} fails: {e}", query.what));
        let has_data = series.iter().any(|s| {
            s["values"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|v| v[1].as_str().is_some_and(|x| x != "NaN"))
        });
        if !has_data {
            empty.push(format!("{}: {expr}", query.what));
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries that returned no data over the run:\n{}",
        empty.join("\n")
    );
    // A query variable's values, as Grafana asks for them: the label's
    // values among the series matching the selector over the time range.
    for (name, query) in variable_queries(&dashboard) {
        let (selector, label) = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .and_then(|q| q.rsplit_once(", "))
            .unwrap_or_else(|| panic!("variable {name}: not label_values(...): {query}"));
        let selector = instantiate(selector, "strata", ns.name(), "1m");
        let values = prometheus
            .label_values(label, &selector, start, end)
            .unwrap_or_else(|e| panic!("variable {name}: {e}"));
        assert!(
            !values.is_empty(),
            "variable {name} ({query}) has no values over the run"
        );
    }
    eprintln!(
        "{} dashboard queries returned data; not driven here, so left to promtool:\n  {}",
        queries.len() - not_yet.len(),
        not_yet.join("\n  ")
    );

    ns.cleanup().await;
    drop(operator);
}
