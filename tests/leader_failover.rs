//! Leader failover under load: replicas with leader election,
//! during rollouts of many functions.
//!
//! 1. The leader is killed (SIGKILL) in the middle of a rollout: the standby
//!    takes the lease over once it expires and finishes the rollout. The
//!    failover time is printed.
//! 2. Never two writers: in the middle of the next rollout the new leader is
//!    paused (SIGSTOP) until its lease has expired and a third replica has
//!    taken over and written; then it is resumed (SIGCONT). The resumed
//!    replica must not write anything: its writes are fenced to its term by
//!    the monotonic clock (`src/runtime/fence.rs`), and it goes back to
//!    standing by.
//!
//! The proof comes from each replica's request log (every mutating request
//! is logged at debug level, with its outcome, and counted in
//! `strata_api_writes_total`): no replica writes outside a term of its own,
//! and nothing after the pause. And from the cluster: the Lease changed
//! hands exactly twice, and only Strata's field managers own fields of the
//! children. Scale: 40 functions by default (CI), 200 with
//! `STRATA_FAULT_FULL=1` (`hack/fault-suite`).

use std::time::{Duration, Instant};

use k8s_openapi::api::{
    apps::v1::Deployment,
    coordination::v1::Lease,
    core::v1::{ConfigMap, Service},
};
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};
use strata::api::{DeploymentRecord, LABEL_NETWORK_FUNCTION, NetworkFunction};
use strata_testkit::{
    FIELD_MANAGER, TestNamespace, apply_edge_function, apply_edge_stack, client, install_crds,
    wait_for,
};
use strata_testkit::{Operator, metric_sum};

const LEASE: &str = "strata-leader";
/// `src/runtime/leader.rs`: a standby cannot take over sooner.
const LEASE_DURATION: Duration = Duration::from_secs(15);
/// The line every mutating request of the operator logs (debug level).
const WRITE_LINE: &str = "API write";

struct Scale {
    functions: usize,
    converge_within: Duration,
}

impl Scale {
    fn from_env() -> Self {
        let full = std::env::var("STRATA_FAULT_FULL").is_ok_and(|v| !v.is_empty() && v != "0");
        if full {
            Self {
                functions: 200,
                converge_within: Duration::from_secs(600),
            }
        } else {
            Self {
                functions: 40,
                converge_within: Duration::from_secs(240),
            }
        }
    }
}

#[tokio::test]
async fn failover_under_load_with_never_two_writers() {
    if !strata_testkit::plane_available() {
        return;
    }
    let scale = Scale::from_env();
    let n = scale.functions;
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "leader-failover").await;
    let replica = |identity: &str| {
        Operator::start_with(
            ns.name(),
            &[
                ("STRATA_LEADER_ELECTION", "true"),
                ("STRATA_LEASE_NAME", LEASE),
                ("STRATA_LEASE_NAMESPACE", ns.name()),
                ("STRATA_IDENTITY", identity),
            ],
        )
    };
    let a = replica("replica-a");
    let b = replica("replica-b");
    let first = wait_for(Duration::from_secs(60), "a replica to lead", || async {
        let (holder, _) = lease(&ns).await;
        (!holder.is_empty()).then_some(holder)
    })
    .await;
    let (mut leader, standby, standby_id) = match first.as_str() {
        "replica-a" => (a, b, "replica-b"),
        "replica-b" => (b, a, "replica-a"),
        other => panic!("the lease is held by {other:?}"),
    };
    leader
        .wait_for_readyz(200, "ready: leading", scale.converge_within)
        .await;
    standby
        .wait_for_readyz(200, "ready: standby", scale.converge_within)
        .await;
    let (_, transitions_before) = lease(&ns).await;

    // 1. SIGKILL in the middle of a rollout.
    apply_edge_stack(&ns, "1.0.0").await;
    for i in 0..n {
        apply_edge_function(&ns, &function_name(i), "1.0.0").await;
    }
    let ready_at_kill = wait_for(
        scale.converge_within,
        "the rollout to be under way",
        || async {
            let ready = ready_at(&ns, "1.0.0").await;
            (!ready.is_empty()).then_some(ready.len())
        },
    )
    .await;
    let killed = Instant::now();
    leader.kill();
    leader.wait_exit(Duration::from_secs(10)).await;
    wait_for(
        LEASE_DURATION * 4,
        "the standby to take the lease over",
        || async {
            let (holder, _) = lease(&ns).await;
            (holder == standby_id)
                .then_some(())
                .ok_or(format!("holder {holder:?}"))
        },
    )
    .await;
    let taken_over = killed.elapsed();
    // A replacement for the killed replica stands by.
    let third = replica("replica-c");
    wait_all_ready_at(&ns, n, "1.0.0", scale.converge_within).await;
    let converged = killed.elapsed();
    eprintln!(
        "failover after SIGKILL of {first} ({ready_at_kill} of {n} functions Ready): \
         {standby_id} held the lease after {taken_over:.1?}, every function Ready after \
         {converged:.1?} (lease {LEASE_DURATION:?})"
    );
    assert!(
        ready_at_kill < n,
        "the rollout had finished before the kill"
    );
    third
        .wait_for_readyz(200, "ready: standby", scale.converge_within)
        .await;

    // 2. SIGSTOP in the middle of the next rollout, until the third replica
    // has taken over and written; then SIGCONT.
    let paused_leader = standby;
    for i in 0..n {
        apply_edge_function(&ns, &function_name(i), "2.0.0").await;
    }
    let ready_at_pause = wait_for(
        scale.converge_within,
        "the second rollout to be under way",
        || async {
            let ready = ready_at(&ns, "2.0.0").await;
            (!ready.is_empty()).then_some(ready.len())
        },
    )
    .await;
    let paused = Instant::now();
    paused_leader.signal("STOP");
    wait_for(
        Duration::from_secs(10),
        "the leader to be stopped",
        || async { paused_leader.is_stopped().then_some(()) },
    )
    .await;
    let pause_offset = paused_leader.log_len();
    wait_for(
        LEASE_DURATION * 4,
        "replica-c to take the lease over",
        || async {
            let (holder, _) = lease(&ns).await;
            (holder == "replica-c")
                .then_some(())
                .ok_or(format!("holder {holder:?}"))
        },
    )
    .await;
    let paused_takeover = paused.elapsed();
    wait_for(
        scale.converge_within,
        "replica-c to write as the leader",
        || async {
            let logs = third.logs();
            let (_, term) = logs.split_once("became leader")?;
            term.lines().any(sent_write).then_some(())
        },
    )
    .await;
    let resumed = Instant::now();
    let paused_for = paused.elapsed();
    paused_leader.signal("CONT");
    paused_leader
        .wait_for_readyz(200, "ready: standby", scale.converge_within)
        .await;
    let standing_by = resumed.elapsed();
    wait_all_ready_at(&ns, n, "2.0.0", scale.converge_within).await;
    let converged_after_pause = paused.elapsed();

    // The paused replica wrote nothing once resumed: no write in its log
    // after the pause, and its counter of sent writes matches the writes it
    // logged before.
    let after_pause = paused_leader.logs_since(pause_offset);
    let before_pause = &paused_leader.logs()[..pause_offset];
    let sent_after: Vec<&str> = after_pause.lines().filter(|l| sent_write(l)).collect();
    let (code, metrics) = paused_leader.get("/metrics").await;
    assert_eq!(code, 200, "{metrics}");
    let counted_sent = metric_sum(&metrics, "strata_api_writes_total", &[("outcome", "sent")]);
    let counted_fenced = metric_sum(
        &metrics,
        "strata_api_writes_total",
        &[("outcome", "fenced")],
    );
    let logged_sent = before_pause.lines().filter(|l| sent_write(l)).count();
    eprintln!(
        "{standby_id} paused for {paused_for:.1?} in the second rollout ({ready_at_pause} of {n} \
         Ready): replica-c held the lease after {paused_takeover:.1?}; resumed, {standby_id} \
         stood by after {standing_by:.1?}; writes it sent: {counted_sent} (logged before the \
         pause: {logged_sent}), refused by the fence after the pause: {counted_fenced}; every \
         function Ready {converged_after_pause:.1?} after the pause"
    );
    assert!(
        sent_after.is_empty(),
        "{standby_id} wrote after it was resumed:\n{}",
        sent_after.join("\n")
    );
    assert_eq!(
        counted_sent, logged_sent as f64,
        "{standby_id} counted writes it did not log before the pause"
    );
    assert!(
        logged_sent > 0,
        "{standby_id} never wrote while it led: the request log proves nothing"
    );
    assert!(
        after_pause.contains("lost the leader lease: stopped reconciling; standing by"),
        "{standby_id} did not give its term up:\n{after_pause}"
    );
    assert!(
        !after_pause.contains("became leader"),
        "{standby_id} led again:\n{after_pause}"
    );

    // No replica wrote outside a term of its own.
    for (who, operator) in [
        (first.as_str(), &leader),
        (standby_id, &paused_leader),
        ("replica-c", &third),
    ] {
        if let Err(stray) = writes_within_terms(&operator.logs()) {
            panic!("{who} wrote outside its term:\n{stray}");
        }
    }
    // The lease changed hands exactly twice: to the standby, to replica-c.
    let (holder, transitions) = lease(&ns).await;
    assert_eq!(
        (holder.as_str(), transitions),
        ("replica-c", transitions_before + 2),
        "the Lease's holder and leaseTransitions"
    );
    // Nothing but Strata (and the controller manager, for a Deployment's
    // status) owns a field of the children; one record per rollout.
    let mut foreign = Vec::new();
    foreign.extend(foreign_managers(&ns.api::<Deployment>()).await);
    foreign.extend(foreign_managers(&ns.api::<Service>()).await);
    foreign.extend(foreign_managers(&ns.api::<ConfigMap>()).await);
    foreign.extend(foreign_managers(&ns.api::<DeploymentRecord>()).await);
    assert!(
        foreign.is_empty(),
        "fields owned by other managers:\n{}",
        foreign.join("\n")
    );
    let records = ns
        .api::<DeploymentRecord>()
        .list(&ListParams::default())
        .await
        .expect("the records can be listed");
    for i in 0..n {
        let name = function_name(i);
        let count = records
            .iter()
            .filter(|r| r.labels().get(LABEL_NETWORK_FUNCTION) == Some(&name))
            .count();
        assert_eq!(count, 2, "DeploymentRecords of {name} after two rollouts");
    }

    drop((leader, paused_leader, third));
    ns.cleanup().await;
}

fn function_name(i: usize) -> String {
    format!("nf-{i:03}")
}

/// Whether a log line is a write the operator sent.
fn sent_write(line: &str) -> bool {
    line.contains(WRITE_LINE) && line.contains(r#"outcome="sent""#)
}

/// Checks that every write in `logs` was sent between "became leader" and
/// the end of that term; returns the first stray line otherwise.
fn writes_within_terms(logs: &str) -> Result<(), String> {
    let mut leading = false;
    for line in logs.lines() {
        if line.contains("became leader") {
            leading = true;
        } else if line.contains("lost the leader lease")
            || line.contains("shutting down: finishing in-flight reconciles")
        {
            leading = false;
        } else if sent_write(line) && !leading {
            return Err(line.to_string());
        }
    }
    Ok(())
}

/// The lease's holder and transitions ("" and 0 before it exists).
async fn lease(ns: &TestNamespace) -> (String, i32) {
    let lease = ns
        .api::<Lease>()
        .get_opt(LEASE)
        .await
        .unwrap_or_else(|e| panic!("cannot read Lease {LEASE}: {e}"));
    let spec = lease.and_then(|l| l.spec).unwrap_or_default();
    (
        spec.holder_identity.unwrap_or_default(),
        spec.lease_transitions.unwrap_or_default(),
    )
}

/// managedFields entries of `api`'s objects that are neither Strata's nor
/// the controller manager's on a status (the Deployment controller reports
/// rollouts there). The namespace's CA bundle is not Strata's business.
async fn foreign_managers<K>(api: &Api<K>) -> Vec<String>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let objects = api
        .list(&ListParams::default())
        .await
        .expect("the objects can be listed");
    let mut foreign = Vec::new();
    for object in objects
        .iter()
        .filter(|o| o.name_any() != "kube-root-ca.crt")
    {
        for entry in object.meta().managed_fields.iter().flatten() {
            let manager = entry.manager.as_deref().unwrap_or_default();
            // Server-side applies name their controller; other writes are
            // named after the operator's user agent.
            let strata = (manager.starts_with("strata.dev/") && manager != FIELD_MANAGER)
                || manager == "strata";
            let status_by_controllers = manager == "kube-controller-manager"
                && entry.subresource.as_deref() == Some("status");
            if !(strata || status_by_controllers) {
                foreign.push(format!(
                    "{} {}: {manager} ({:?}, subresource {:?})",
                    object.meta().name.as_deref().unwrap_or_default(),
                    entry.api_version.as_deref().unwrap_or_default(),
                    entry.operation,
                    entry.subresource
                ));
            }
        }
    }
    foreign
}

/// The functions Ready at their generation with `version` deployed.
async fn ready_at(ns: &TestNamespace, version: &str) -> Vec<String> {
    let Ok(functions) = ns
        .api::<NetworkFunction>()
        .list(&ListParams::default())
        .await
    else {
        return Vec::new();
    };
    functions
        .into_iter()
        .filter(|nf| {
            let status = serde_json::to_value(&nf.status).unwrap_or_default();
            let ready = status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            ready
                && status["observedGeneration"].as_i64() == nf.metadata.generation
                && status["deployedWith"]["version"] == version
        })
        .map(|nf| nf.name_any())
        .collect()
}

async fn wait_all_ready_at(ns: &TestNamespace, n: usize, version: &str, within: Duration) {
    wait_for(
        within,
        &format!("all {n} functions Ready at {version}"),
        || async {
            let ready = ready_at(ns, version).await.len();
            (ready == n)
                .then_some(())
                .ok_or(format!("{ready} of {n} Ready"))
        },
    )
    .await;
}
