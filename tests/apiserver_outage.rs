//! API server outage: kube-apiserver is stopped in the middle
//! of a rollout and started again. The operator keeps running (the same
//! process), backs off, reports not ready on `/readyz` while it cannot reach
//! the server, and converges afterwards without a restart; its watches
//! recover (a change made after the outage is reconciled).
//!
//! Two operators ride out the same outage, each on a namespace of its own:
//! one alone (no leader election: a probe tells `/readyz`), and one with
//! leader election, which loses its lease during the outage (it cannot renew
//! it), stops reconciling and stands by, and leads again once the server is
//! back.
//!
//! The test runs on a plane of its own (`hack/plane up` in a directory of
//! its own): the shared plane is never stopped. Scale: 10 functions per
//! operator by default (CI), 50 with `STRATA_FAULT_FULL=1`. The figures are
//! printed (`--nocapture` shows them).

use std::time::{Duration, Instant};

use k8s_openapi::api::{apps::v1::Deployment, coordination::v1::Lease};
use strata::api::{NetworkFunction, Stack};
use strata::runtime::backoff;
use strata_testkit::DedicatedPlane;
use strata_testkit::{Operator, metric_sum};
use strata_testkit::{
    TestNamespace, apply_edge_function, apply_edge_stack, install_crds, wait_for,
    wait_for_condition,
};

const STACK: &str = strata_testkit::EDGE_STACK;
const LEASE: &str = "strata-leader";
const IDENTITY: &str = "replica-a";
const DEADLINE: Duration = Duration::from_secs(180);
/// How long a leader may go without renewing before it stops writing
/// (`src/runtime/leader.rs`: the lease duration minus the fence margin).
const TERM: Duration = Duration::from_secs(12);
/// How soon a change made after the outage must be reconciled: each watch
/// retries on its own backoff, at most 30 s plus as much jitter apart
/// (`src/runtime/watches.rs`). (With one backoff shared by all of a
/// controller's watches, a change was seen minutes late, or not in 180 s.)
const AFTER_OUTAGE: Duration = Duration::from_secs(90);

#[tokio::test]
async fn the_operator_rides_out_an_api_server_outage() {
    if !strata_testkit::plane_available() {
        return;
    }
    let full = std::env::var("STRATA_FAULT_FULL").is_ok_and(|v| !v.is_empty() && v != "0");
    let functions = if full { 50 } else { 10 };
    let plane = DedicatedPlane::up("apiserver-outage").await;
    let client = plane.client().await;
    install_crds(&client).await;
    let kubeconfig = plane.kubeconfig();
    let kubeconfig = kubeconfig.to_str().expect("a UTF-8 path");

    let alone_ns = TestNamespace::create(&client, "outage-alone").await;
    let elected_ns = TestNamespace::create(&client, "outage-elected").await;
    let mut alone = Operator::start_with(alone_ns.name(), &[("KUBECONFIG", kubeconfig)]);
    let mut elected = Operator::start_with(
        elected_ns.name(),
        &[
            ("KUBECONFIG", kubeconfig),
            ("STRATA_LEADER_ELECTION", "true"),
            ("STRATA_LEASE_NAME", LEASE),
            ("STRATA_LEASE_NAMESPACE", elected_ns.name()),
            ("STRATA_IDENTITY", IDENTITY),
        ],
    );
    let pids = (alone.pid(), elected.pid());
    for operator in [&alone, &elected] {
        operator
            .wait_for_readyz(200, "ready: leading", DEADLINE)
            .await;
    }

    // A rollout in each namespace, and the outage right in the middle of it.
    for ns in [&alone_ns, &elected_ns] {
        apply_edge_stack(ns, "1.0.0").await;
        for i in 0..functions {
            apply_edge_function(ns, &format!("nf-{i}"), "1.0.0").await;
        }
    }
    // Both operators are writing: some children exist, not every function is Ready.
    let mut ready_at_stop = Vec::new();
    for ns in [&alone_ns, &elected_ns] {
        wait_for(DEADLINE, "the operator to start the rollout", || async {
            let deployments = ns.api::<Deployment>().list(&Default::default()).await;
            deployments
                .map_err(|e| e.to_string())?
                .items
                .first()
                .map(|_| ())
                .ok_or("no Deployment yet".to_string())
        })
        .await;
    }
    for ns in [&alone_ns, &elected_ns] {
        ready_at_stop.push(ready_functions(ns).await.len());
    }
    let lease_before = lease(&elected_ns).await;

    // SIGTERM to kube-apiserver: it stops listening at once, and exits once
    // its clients' connections have drained (`hack/plane stop` waits, 30 s
    // at most). Meanwhile: not ready while the server is away, and the
    // leader, which cannot renew, ends its term and stands by without
    // exiting.
    let outage = Instant::now();
    let (stopped, (not_ready, lease_lost)) = tokio::join!(
        async {
            plane.stop("kube-apiserver").await;
            outage.elapsed()
        },
        async {
            for operator in [&alone, &elected] {
                operator
                    .wait_for_readyz(503, "not ready: API server unreachable", DEADLINE)
                    .await;
            }
            let not_ready = outage.elapsed();
            wait_for(
                DEADLINE,
                "the leader to give its term up during the outage",
                || async {
                    let logs = elected.logs();
                    logs.contains("lost the leader lease: stopped reconciling; standing by")
                        .then_some(())
                        .ok_or("not yet".to_string())
                },
            )
            .await;
            (not_ready, outage.elapsed())
        }
    );
    eprintln!(
        "kube-apiserver exited {stopped:.1?} after SIGTERM; Ready functions then: \
         {ready_at_stop:?} of {functions} per namespace"
    );
    assert!(
        ready_at_stop.iter().any(|ready| *ready < functions),
        "the rollout had finished before the outage: nothing was in the middle of a reconcile"
    );
    assert!(
        lease_lost < TERM + Duration::from_secs(10),
        "the leader went on for {lease_lost:?} without renewing its lease"
    );
    alone.assert_running();
    elected.assert_running();
    let errors_during_outage = reconcile_errors(&alone).await;
    assert_eq!(
        elected.get("/readyz").await,
        (503, "not ready: API server unreachable".to_string())
    );

    let restart = Instant::now();
    plane.start("kube-apiserver").await;
    let outage_length = outage.elapsed();
    let started = restart.elapsed();
    for operator in [&alone, &elected] {
        operator
            .wait_for_readyz(200, "ready: leading", DEADLINE)
            .await;
    }
    let ready_again = restart.elapsed();
    for ns in [&alone_ns, &elected_ns] {
        wait_all_ready(ns, functions).await;
    }
    let converged = restart.elapsed();

    // The watches recovered: changes made after the outage are reconciled.
    for ns in [&alone_ns, &elected_ns] {
        apply_edge_function(ns, "nf-0", "1.1.0").await;
        apply_edge_function(ns, "after-outage", "1.0.0").await;
    }
    for ns in [&alone_ns, &elected_ns] {
        wait_ready_at(ns, "nf-0", "1.1.0", AFTER_OUTAGE).await;
        wait_ready_at(ns, "after-outage", "1.0.0", AFTER_OUTAGE).await;
    }
    let changes_reconciled = restart.elapsed();

    eprintln!(
        "API server outage of {outage_length:.1?} ({functions} functions per operator): \
         /readyz not ready after {not_ready:.1?}; the leader gave its term up after \
         {lease_lost:.1?}; the server answered {started:.1?} after its restart began, \
         both operators ready again after {ready_again:.1?}, every function Ready after \
         {converged:.1?}, changes made after the outage Ready after {changes_reconciled:.1?}; \
         failed reconciles of the lone operator during the outage: {errors_during_outage}"
    );

    // Backed off: each object retries with delays doubling from a few
    // milliseconds, so its failures grow with the log of the outage, not
    // with its length (a hot loop would fail thousands of times).
    let objects = (functions + 1) as f64;
    let bound = objects * (failures_within(outage_length) + 2.0);
    assert!(
        errors_during_outage <= bound,
        "{errors_during_outage} failed reconciles for {objects} objects in {outage_length:?}: \
         not backing off (at most {bound} expected)"
    );
    // The same processes throughout, never restarted.
    alone.assert_running();
    elected.assert_running();
    assert_eq!((alone.pid(), elected.pid()), pids);
    let logs = elected.logs();
    assert_eq!(
        logs.matches("became leader").count(),
        2,
        "the leader leads again after the outage, in the same process:\n{logs}"
    );
    let lease_after = lease(&elected_ns).await;
    eprintln!("lease before the outage {lease_before:?}, after {lease_after:?}");
    assert_eq!(
        (lease_after.0.as_str(), lease_after.1),
        (IDENTITY, lease_before.1),
        "the only replica keeps its lease (no transition)"
    );

    drop((alone, elected));
    alone_ns.cleanup().await;
    elected_ns.cleanup().await;
    drop(plane);
}

/// The lease's holder and transitions.
async fn lease(ns: &TestNamespace) -> (String, i32) {
    let lease = ns
        .api::<Lease>()
        .get(LEASE)
        .await
        .unwrap_or_else(|e| panic!("cannot read Lease {LEASE}: {e}"));
    let spec = lease.spec.unwrap_or_default();
    (
        spec.holder_identity.unwrap_or_default(),
        spec.lease_transitions.unwrap_or_default(),
    )
}

/// Failed reconciles so far (every kind), from the operator's metrics.
/// The most failed reconciles one object can have within `outage` under the
/// controllers' backoff (`src/runtime/backoff.rs`): the first failure, then
/// one after each delay that fits, the delays doubling up to the cap.
fn failures_within(outage: Duration) -> f64 {
    let (mut failures, mut elapsed, mut delay) = (1.0, Duration::ZERO, backoff::FIRST);
    while elapsed + delay <= outage {
        elapsed += delay;
        delay = (delay * 2).min(backoff::CAP);
        failures += 1.0;
    }
    failures
}

async fn reconcile_errors(operator: &Operator) -> f64 {
    let (code, metrics) = operator.get("/metrics").await;
    assert_eq!(code, 200, "{metrics}");
    let all = metric_sum(&metrics, "strata_reconcile_total", &[]);
    let succeeded = metric_sum(&metrics, "strata_reconcile_total", &[("result", "success")]);
    all - succeeded
}

/// Whether `nf` is Ready at its current generation.
fn ready_now(nf: &NetworkFunction) -> bool {
    let status = serde_json::to_value(&nf.status).unwrap_or_default();
    let ready = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    ready && status["observedGeneration"].as_i64() == nf.metadata.generation
}

async fn ready_functions(ns: &TestNamespace) -> Vec<String> {
    ns.api::<NetworkFunction>()
        .list(&Default::default())
        .await
        .expect("the functions can be listed")
        .into_iter()
        .filter(ready_now)
        .filter_map(|nf| nf.metadata.name)
        .collect()
}

async fn wait_all_ready(ns: &TestNamespace, functions: usize) {
    wait_for(
        DEADLINE,
        &format!("all {functions} functions in {} Ready", ns.name()),
        || async {
            let api = ns.api::<NetworkFunction>();
            let listed = api
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let ready = listed.items.iter().filter(|nf| ready_now(nf)).count();
            (ready == functions)
                .then_some(())
                .ok_or(format!("{ready} of {} Ready", listed.items.len()))
        },
    )
    .await;
    wait_for_condition(&ns.api::<Stack>(), STACK, "Ready", "True", DEADLINE).await;
}

async fn wait_ready_at(ns: &TestNamespace, name: &str, version: &str, deadline: Duration) {
    let api = ns.api::<NetworkFunction>();
    wait_for(
        deadline,
        &format!("{}/{name} Ready at {version}", ns.name()),
        || async {
            let nf = api.get(name).await.map_err(|e| e.to_string())?;
            let deployed = nf
                .status
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok())
                .and_then(|s| s["deployedWith"]["version"].as_str().map(String::from));
            (ready_now(&nf) && deployed.as_deref() == Some(version))
                .then_some(())
                .ok_or(format!("deployed {deployed:?}"))
        },
    )
    .await;
}
