//! A converged Stack stays converged: drift is corrected and counted without
//! flipping Ready, and when nothing changed the operator makes no write
//! requests at all.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use strata_testkit::{OutputExt, kubectl};

use super::*;

const DRIFT_METRIC: &str = "strata_stack_drift_corrections_total";

#[tokio::test]
async fn drift_is_corrected_and_counted_and_ready_stays_true() {
    if !strata_testkit::plane_available() {
        return;
    }
    let world = World::start("stack-drift").await;
    let ns = world.name().to_string();
    let configmaps = world.configmaps();
    let policies: Api<NetworkPolicy> = world.ns.api();
    world
        .apply_stack(
            "edge-net",
            &json!({"version": "1.0.0", "resources": [
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "edge-dns"}, "data": {"upstream": "10.0.0.53"}},
                {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny"},
                 "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}},
            ]}),
        )
        .await;
    let stack = world.wait_ready("edge-net", "1.0.0").await;
    let ready_since = condition(&stack, "Ready")
        .unwrap()
        .last_transition_time
        .clone();
    let drift_labels = [("namespace", ns.as_str()), ("stack", "edge-net")];
    let metrics = operator_metrics(&world.operator).await;
    assert_eq!(
        sample(&metrics, DRIFT_METRIC, &drift_labels),
        None,
        "no drift yet"
    );

    // From here on, every state of the Stack must be Ready=True.
    let readiness = ReadinessWatch::start(&world.stacks, "edge-net").await;

    // Someone else edits a field the Stack declares, and deletes another object.
    let deleted_uid = policies.get("deny").await.unwrap().uid().unwrap();
    let edited = kubectl([
        "patch",
        "configmap",
        "edge-dns",
        "-n",
        &ns,
        "--type=merge",
        "-p",
        r#"{"data":{"upstream":"6.6.6.6"}}"#,
        "--field-manager=drift-test",
    ])
    .expect_success("kubectl patch configmap");
    assert_eq!(edited.trim(), "configmap/edge-dns patched");
    kubectl(["delete", "networkpolicy", "deny", "-n", &ns, "--wait=true"])
        .expect_success("kubectl delete networkpolicy");

    // Both are restored on a later reconcile, and both corrections are counted.
    wait_data(&configmaps, "edge-dns", json!({"upstream": "10.0.0.53"})).await;
    wait_for(DEADLINE, "the NetworkPolicy to be re-created", || async {
        match policies.get_opt("deny").await {
            Ok(Some(p)) if p.uid().as_deref() != Some(deleted_uid.as_str()) => Ok(()),
            Ok(other) => Err(format!("{:?}", other.map(|p| p.uid()))),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    let counted = wait_for(DEADLINE, "two drift corrections counted", || async {
        let metrics = operator_metrics(&world.operator).await;
        match sample(&metrics, DRIFT_METRIC, &drift_labels) {
            Some(n) if n >= 2.0 => Ok(n),
            other => Err(format!("{DRIFT_METRIC} = {other:?}")),
        }
    })
    .await;
    assert_eq!(counted, 2.0, "each corrected object is counted once");

    let seen = readiness.stop();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|r| r == "True"),
        "Ready must stay True while drift is corrected; observed: {seen:?}"
    );
    let stack = world.stacks.get("edge-net").await.unwrap();
    let ready = condition(&stack, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), &ready.last_transition_time),
        ("True", &ready_since)
    );
    world.finish().await;
}

/// Every state of one Stack seen through a watch, as its Ready status.
struct ReadinessWatch {
    seen: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadinessWatch {
    /// Starts watching Stack `name`; returns once the watch has seen it.
    async fn start(stacks: &Api<Stack>, name: &str) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let mut stream = watcher(stacks.clone(), config).applied_objects().boxed();
        let record = seen.clone();
        let task = tokio::spawn(async move {
            while let Some(event) = stream.next().await {
                let observed = match event {
                    Ok(stack) => condition(&stack, "Ready")
                        .map_or_else(|| "absent".to_string(), |c| c.status.clone()),
                    Err(e) => format!("watch failed: {e}"),
                };
                record.lock().unwrap().push(observed);
            }
        });
        wait_for(DEADLINE, "the watch to see the Stack", || async {
            (!seen.lock().unwrap().is_empty()).then_some(())
        })
        .await;
        Self { seen, task }
    }

    /// Stops watching; returns what was seen.
    fn stop(self) -> Vec<String> {
        self.task.abort();
        self.seen.lock().unwrap().clone()
    }
}

/// A converged Stack costs no write requests.
///
/// How this is measured: kube-apiserver's `apiserver_request_total` has no
/// namespace or user label, and other tests write ConfigMaps and Stacks on
/// the same plane at the same time, so its counts cannot be attributed to
/// this operator. Instead the operator runs with kube-client's request
/// tracing on (`kube_client::client::builder=debug`: one "requesting" line
/// per HTTP request, with its method and URL) and the test reads the
/// requests the operator itself made. The test first checks that this log
/// does show the writes of the initial apply (so that an empty window
/// means something), then forces reconciles (annotating the Stack, which is
/// the test's own write and not in the operator's log) and waits for a
/// drift check (reads of every managed object, once per resync interval),
/// and requires that the operator made no POST, PUT, PATCH or DELETE
/// (dry runs included) in that window. Then the operator is restarted: it
/// reads each object once and writes nothing either.
#[tokio::test]
async fn a_converged_stack_makes_no_write_requests() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    install_widget_crd(&client).await;
    let ns = TestNamespace::create(&client, "stack-idle").await;
    let operator = start_traced(ns.name());
    let stacks: Api<Stack> = ns.api();
    let spec = json!({"version": "1.0.0", "parameters": {"vlan": "120"}, "resources": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "edge-dns"}, "data": {"vlan": "${vlan}"}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny"},
         "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}},
        {"apiVersion": WIDGET_API_VERSION, "kind": "Widget", "metadata": {"name": "w"}, "spec": {"vlan": "${vlan}"}},
    ]});
    apply(&stacks, "net", stack_manifest("net", &spec)).await;
    wait_stack(&stacks, "net", "Ready at 1.0.0", |s| {
        is(s, "Ready", "True")
            && s.status.as_ref().and_then(|st| st.version.as_deref()) == Some("1.0.0")
    })
    .await;

    let n = ns.name();
    let objects = [
        format!("/api/v1/namespaces/{n}/configmaps/edge-dns"),
        format!("/apis/networking.k8s.io/v1/namespaces/{n}/networkpolicies/deny"),
        format!("/apis/test.strata.dev/v1/namespaces/{n}/widgets/w"),
    ];
    // The log shows the operator's writes: each object applied once as a
    // dry run, then for real; the status.
    let applied = requests(&operator.logs());
    for path in &objects {
        let patches: Vec<bool> = applied
            .iter()
            .filter(|r| r.method == "PATCH" && &r.path == path)
            .map(|r| r.query.contains("dryRun=All"))
            .collect();
        assert_eq!(patches, [true, false], "PATCHes of {path} (dry run?)");
    }
    for path in objects.iter().cloned().chain([format!(
        "/apis/strata.dev/v1alpha1/namespaces/{n}/stacks/net/status"
    )]) {
        assert!(
            applied
                .iter()
                .any(|r| r.method == "PATCH" && r.path == path),
            "no PATCH of {path} in the operator's requests: {applied:#?}"
        );
    }

    // The idle window.
    let start = operator.logs().len();
    let poke = |i: usize| {
        let stacks = stacks.clone();
        async move {
            let patch =
                json!({"metadata": {"annotations": {"test.strata.dev/poke": i.to_string()}}});
            stacks
                .patch("net", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("annotate the Stack");
        }
    };
    for i in 0..3 {
        let before = stack_reconciles(&operator).await;
        poke(i).await;
        wait_for(
            DEADLINE,
            "a reconcile after annotating the Stack",
            || async {
                let now = stack_reconciles(&operator).await;
                (now > before)
                    .then_some(())
                    .ok_or(format!("{now} reconciles"))
            },
        )
        .await;
    }
    let writes = writes_through_a_drift_check(&operator, start, &objects, poke(3)).await;
    assert!(
        writes.is_empty(),
        "a converged Stack made write requests: {writes:#?}"
    );
    let stack = stacks.get("net").await.unwrap();
    assert!(is(&stack, "Ready", "True"));

    // A restarted operator, which remembers nothing, reads each object once
    // and writes nothing: the live objects are what the Stack declares.
    drop(operator);
    let operator = start_traced(ns.name());
    let writes = writes_through_a_drift_check(&operator, 0, &objects, poke(4)).await;
    assert!(
        writes.is_empty(),
        "a restarted operator rewrote a converged Stack: {writes:#?}"
    );
    drop(operator);
    ns.cleanup().await;
}

/// An operator for `namespace` whose log shows each HTTP request it makes.
fn start_traced(namespace: &str) -> Operator {
    Operator::start_with(
        namespace,
        &[(
            "STRATA_LOG_LEVEL",
            "info,strata=debug,kube_client::client::builder=debug",
        )],
    )
}

/// Successful Stack reconciles of `operator` so far.
async fn stack_reconciles(operator: &Operator) -> f64 {
    let metrics = operator_metrics(operator).await;
    sample(
        &metrics,
        "strata_reconcile_total",
        &[("kind", "Stack"), ("result", "success")],
    )
    .unwrap_or(0.0)
}

/// Waits for a drift check (the operator reads every one of `objects`; its
/// log from byte `start` on), then for the reconcile that made it to end,
/// which `poke` forces; returns the write requests in that log window.
/// Reconciles of one object never overlap, so once the count moves past
/// the one read while the reads were visible, that reconcile is over.
async fn writes_through_a_drift_check(
    operator: &Operator,
    start: usize,
    objects: &[String],
    poke: impl std::future::Future<Output = ()>,
) -> Vec<Request> {
    let during_check = wait_for(DEADLINE, "a drift check reading every object", || async {
        let count = stack_reconciles(operator).await;
        let window = requests(&operator.logs()[start..]);
        let read = objects
            .iter()
            .all(|p| window.iter().any(|r| r.method == "GET" && &r.path == p));
        read.then_some(count)
            .ok_or(format!("requests so far: {window:#?}"))
    })
    .await;
    poke.await;
    wait_for(DEADLINE, "the drift check's reconcile to end", || async {
        let now = stack_reconciles(operator).await;
        (now > during_check)
            .then_some(())
            .ok_or(format!("{now} reconciles"))
    })
    .await;
    requests(&operator.logs()[start..])
        .into_iter()
        .filter(|r| matches!(r.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE"))
        .collect()
}

/// One HTTP request the operator made.
#[derive(Debug)]
struct Request {
    method: String,
    /// The URL's path (no scheme, host or query).
    path: String,
    /// The query, e.g. `dryRun=All&fieldManager=...`.
    query: String,
}

/// The requests in an operator log written with kube-client request tracing:
/// `HTTP{http.method=PATCH http.url=https://host/path?query ...}: requesting`.
fn requests(log: &str) -> Vec<Request> {
    let line =
        regex::Regex::new(r"HTTP\{http\.method=(\w+) http\.url=https?://[^/\s]+([^?\s]*)\??(\S*)")
            .unwrap();
    log.lines()
        .filter(|l| l.trim_end().ends_with("requesting"))
        .filter_map(|l| line.captures(l))
        .map(|c| Request {
            method: c[1].to_string(),
            path: c[2].to_string(),
            query: c[3].to_string(),
        })
        .collect()
}

#[test]
fn requests_are_read_from_the_trace_lines() {
    let log = "2026 DEBUG reconcile{kind=\"Stack\"}:HTTP{http.method=PATCH http.url=https://127.0.0.1:6443/api/v1/namespaces/a/configmaps/b?&dryRun=All&force=true otel.name=\"HTTP\"}: requesting\nDEBUG HTTP{http.method=GET http.url=https://h/apis/x/v1/w otel.name=\"HTTP\"}: stream closed\n";
    let found = requests(log);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (
            found[0].method.as_str(),
            found[0].path.as_str(),
            found[0].query.as_str()
        ),
        (
            "PATCH",
            "/api/v1/namespaces/a/configmaps/b",
            "&dryRun=All&force=true"
        )
    );
}
