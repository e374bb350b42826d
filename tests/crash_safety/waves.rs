//! Crash safety of a staged, halted and resumed adoption: the operator is
//! SIGKILLed at seeded random moments while a Stack version that breaks its
//! consumers is adopted in waves (the canary alone first), and again while
//! a fix-forward version resumes the adoption. The halt must hold through
//! every restart (only the canary ever moved to the bad version: one
//! DeploymentRecord on it), the failure must not be forgotten (the Stack
//! still names it after the kills), and the fix-forward must bring every
//! consumer to Ready within the budget.
//!
//! The bad version adds a ResourceQuota that leaves no room for the new pod
//! of a rolling update, so the canary exceeds its 10 s progress deadline.
//!
//! Scale: 8 consumers and 4 kills by default; 40 and 20 with
//! `STRATA_FAULT_FULL=1`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use strata::api::{DeploymentRecord, NetworkFunction, Stack, stack::AdoptionPhase};
use strata_testkit::{TestNamespace, apply_object, client, install_crds, wait_for};

use super::{FULL, Schedule, adoption, assert_no_panic, incarnation, seed};

const CONVERGE_WITHIN: Duration = Duration::from_secs(300);
/// The budget of the `rest` step.
const REST_CONCURRENCY: usize = 2;

fn stack(version: &str, breaking_pods: Option<usize>) -> Value {
    let mut resources = vec![json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "edge-settings"},
        "data": {"release": version},
    })];
    if let Some(pods) = breaking_pods {
        resources.push(json!({
            "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "edge-pods"},
            "spec": {"hard": {"pods": pods.to_string()}},
        }));
    }
    json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "Stack", "metadata": {"name": "edge"},
        "spec": {
            "version": version,
            "resources": resources,
            "consumerRollout": {
                "maxConcurrent": REST_CONCURRENCY,
                "maxFailures": 0,
                "steps": [
                    {"name": "canary", "selector": {"matchLabels": {"wave": "canary"}}, "maxConcurrent": 1},
                    {"name": "rest"},
                ],
            },
        },
    })
}

fn function(i: usize) -> Value {
    let wave = if i == 0 { "canary" } else { "rest" };
    json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "NetworkFunction",
        "metadata": {"name": format!("cnf-{i}"), "labels": {"wave": wave}},
        "spec": {
            "version": "1.0.0",
            "image": format!("registry.example/cnf@sha256:{}", "0123456789abcdef".repeat(4)),
            "stackRef": {"name": "edge"},
            "progressDeadlineSeconds": 10,
        },
    })
}

/// Every function runs `version` and is Ready.
async fn all_ready_on(
    functions: &Api<NetworkFunction>,
    count: usize,
    version: &str,
) -> Result<(), String> {
    let list = functions
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    let ready = list
        .items
        .iter()
        .filter(|nf| {
            let status = nf.status.clone().unwrap_or_default();
            status
                .deployed_with
                .is_some_and(|d| d.stack.version == version && d.ready_at.is_some())
                && status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
        })
        .count();
    if ready == count {
        Ok(())
    } else {
        Err(format!("{ready} of {count} Ready on {version}"))
    }
}

/// The Stack's adoption, once it is in `phase` for `version`.
async fn adoption_in(
    stacks: &Api<Stack>,
    version: &str,
    phase: AdoptionPhase,
) -> Result<Stack, String> {
    let stack = stacks.get("edge").await.map_err(|e| e.to_string())?;
    let rollout = stack.status.as_ref().and_then(|s| s.rollout.clone());
    match rollout {
        Some(r) if r.version == version && r.phase == phase => Ok(stack),
        other => Err(format!("rollout {other:?}")),
    }
}

#[tokio::test]
async fn a_halted_adoption_holds_through_random_kills_and_resumes_after_a_fix_forward() {
    if !strata_testkit::plane_available() {
        return;
    }
    let full = std::env::var(FULL).is_ok_and(|v| !v.is_empty() && v != "0");
    let (count, kills) = if full { (40, 20) } else { (8, 4) };
    let seed = seed();
    let mut schedule = Schedule::new(seed);
    eprintln!("crash safety, waves: {count} consumers, {kills} kills; seed {seed}");

    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "crash-waves").await;
    let stacks: Api<Stack> = ns.api();
    let functions: Api<NetworkFunction> = ns.api();
    let records: Api<DeploymentRecord> = ns.api();
    let mut operator = incarnation(ns.name(), 0);
    apply_object(&stacks, stack("1.0.0", None)).await;
    for i in 0..count {
        apply_object(&functions, function(i)).await;
    }
    wait_for(CONVERGE_WITHIN, "every consumer Ready on 1.0.0", || {
        all_ready_on(&functions, count, "1.0.0")
    })
    .await;
    let monitor = adoption::Monitor::start(
        functions.clone(),
        BTreeMap::from([("edge".to_string(), REST_CONCURRENCY)]),
    );

    let mut life = 0;
    let mut kill_some = async |n: usize, operator: &mut strata_testkit::Operator| {
        for _ in 0..n {
            // The fault schedule, not a wait for a condition.
            tokio::time::sleep(schedule.life()).await;
            operator.assert_running();
            operator.kill();
            operator.wait_exit(Duration::from_secs(10)).await;
            assert_no_panic(&operator.logs(), life);
            life += 1;
            *operator = incarnation(ns.name(), life);
        }
    };

    let started = Instant::now();
    apply_object(&stacks, stack("1.1.0", Some(count))).await;
    kill_some(kills / 2, &mut operator).await;
    let halted = wait_for(CONVERGE_WITHIN, "the adoption of 1.1.0 halted", || {
        adoption_in(&stacks, "1.1.0", AdoptionPhase::Halted)
    })
    .await;
    let to_halt = started.elapsed();
    let failed = halted
        .status
        .and_then(|s| s.rollout)
        .unwrap_or_default()
        .failed;
    assert_eq!(
        failed.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["cnf-0"],
        "the canary's failure is remembered through the restarts (seed {seed})"
    );
    let on_bad = records
        .list(&ListParams::default().labels("strata.dev/stack-version=1.1.0"))
        .await
        .expect("list the records on 1.1.0")
        .items;
    assert_eq!(
        on_bad
            .iter()
            .map(|r| r.spec.network_function.name.as_str())
            .collect::<Vec<_>>(),
        ["cnf-0"],
        "only the canary ever rolled out onto the bad version (seed {seed})"
    );

    let fixing = Instant::now();
    apply_object(&stacks, stack("1.2.0", None)).await;
    kill_some(kills - kills / 2, &mut operator).await;
    wait_for(CONVERGE_WITHIN, "every consumer Ready on 1.2.0", || {
        all_ready_on(&functions, count, "1.2.0")
    })
    .await;
    wait_for(CONVERGE_WITHIN, "the adoption of 1.2.0 complete", || {
        adoption_in(&stacks, "1.2.0", AdoptionPhase::Complete)
    })
    .await;
    let to_fixed = fixing.elapsed();
    let observed = monitor.finish();
    operator.assert_running();
    eprintln!(
        "crash safety, waves: halted after {:.1} s with 1 consumer moved; fix-forward converged in {:.1} s; \
         most adopting at once: {:?}",
        to_halt.as_secs_f64(),
        to_fixed.as_secs_f64(),
        observed.max
    );
    assert!(
        observed.violations.is_empty(),
        "more consumers adopted at once than the budget allows (seed {seed}): {:?}",
        observed.violations
    );
    drop(operator);
    ns.cleanup().await;
}
