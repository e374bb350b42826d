//! Blast radius: a Stack version that breaks its consumers is adopted by
//! the canary step first, halts when the canary fails, leaves every other
//! consumer untouched on the previous version, and a fix-forward version
//! resumes the adoption to the end.
//!
//! The bad version breaks its consumers the way it happens in real
//! clusters: it adds a ResourceQuota that admits no more pods than run
//! already, so a consumer that moves cannot create the new pod its rolling
//! update needs first, its Deployment exceeds its progress deadline (10 s
//! here) and its rollout ends Failed. Pods that already run are not
//! affected.

use std::time::Instant;

use serde_json::{Value, json};
use strata::api::{NetworkFunction, Stack, stack::AdoptionPhase};

use super::{DEADLINE, Fixture, pinned_image, ready_on};
use strata_testkit::{metric_sum, wait_for};

/// Consumers in `hack/test`; the full fault suite (`STRATA_FAULT_FULL=1`) runs 20.
fn consumers() -> usize {
    if std::env::var_os("STRATA_FAULT_FULL").is_some() {
        20
    } else {
        6
    }
}

/// Two steps: the canary alone, then the rest two at a time; the first
/// failure halts.
fn rollout() -> Value {
    json!({"consumerRollout": {
        "maxConcurrent": 2,
        "maxFailures": 0,
        "steps": [
            {"name": "canary", "selector": {"matchLabels": {"strata.dev/wave": "canary"}}, "maxConcurrent": 1},
            {"name": "rest"},
        ],
    }})
}

/// The rollout, plus a ResourceQuota that admits no pod beyond the `pods`
/// that run (one per consumer).
fn breaking(pods: usize) -> Value {
    let mut extra = rollout();
    extra["resources"] = json!([
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "edge-settings"},
         "data": {"release": "1.1.0"}},
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "edge-pods"},
         "spec": {"hard": {"pods": pods.to_string()}}},
    ]);
    extra
}

fn deployed_on(nf: &NetworkFunction) -> Option<String> {
    let status = nf.status.as_ref()?;
    Some(status.deployed_with.as_ref()?.stack.version.clone())
}

#[tokio::test]
async fn a_breaking_stack_version_halts_after_the_canary_and_a_fix_forward_resumes() {
    if !strata_testkit::plane_available() {
        return;
    }
    let t = Fixture::start("nf-waves").await;
    t.apply_stack("edge", "1.0.0", rollout()).await;
    let names: Vec<String> = (0..consumers()).map(|i| format!("cnf-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let wave = if i == 0 { "canary" } else { "main" };
        let function = json!({
            "apiVersion": "strata.dev/v1alpha1", "kind": "NetworkFunction",
            "metadata": {"name": name, "labels": {"strata.dev/wave": wave}},
            "spec": {"version": "1.0.0", "image": pinned_image(name), "stackRef": {"name": "edge"},
                     "progressDeadlineSeconds": 10},
        });
        strata_testkit::apply_object(&t.functions, function).await;
    }
    for name in &names {
        t.function_ready_on(name, "1.0.0").await;
    }
    t.stack_ready("edge", "1.0.0").await;

    // The bad version: the canary moves, fails, and the adoption halts.
    let started = Instant::now();
    t.apply_stack("edge", "1.1.0", breaking(names.len())).await;
    let halted = wait_for(
        DEADLINE,
        "stack edge Stalled with AdoptionHalted",
        || async {
            let stack = t.stacks.get("edge").await.map_err(|e| e.to_string())?;
            let status = stack.status.clone().unwrap_or_default();
            let stalled = status.conditions.iter().any(|c| {
                c.type_ == "Stalled" && c.status == "True" && c.reason == "AdoptionHalted"
            });
            if stalled {
                Ok(stack)
            } else {
                Err(serde_json::to_string(&status).unwrap())
            }
        },
    )
    .await;
    let to_halt = started.elapsed();
    assert_halted(&halted, &names[0]);

    // Nobody else moved; everyone else keeps running 1.0.0, waiting.
    for name in &names[1..] {
        let nf = t
            .function_until(name, "waiting for the halted adoption", |nf| {
                super::condition(nf, "Reconciling")
                    .is_some_and(|c| c.status == "True" && c.reason == "AdoptionHalted")
            })
            .await;
        assert_eq!(deployed_on(&nf).as_deref(), Some("1.0.0"), "{name} moved");
        let deployment = t.deployment(name).await.expect("its Deployment");
        let annotations = deployment
            .spec
            .template
            .metadata
            .and_then(|m| m.annotations)
            .unwrap_or_default();
        assert_eq!(
            annotations
                .get("strata.dev/stack-version")
                .map(String::as_str),
            Some("1.0.0"),
            "{name}'s pods were touched"
        );
    }
    let moved = t
        .functions
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|nf| deployed_on(nf).as_deref() == Some("1.1.0"))
        .count();
    assert_eq!(moved, 1, "only the canary moved before the halt");
    t.events_about("edge", "Warning", "AdoptionHalted", |note| {
        note.contains(&names[0])
    })
    .await;
    let (_, metrics) = t.operator.get("/metrics").await;
    let series = [("stack", "edge"), ("version", "1.1.0"), ("phase", "Halted")];
    assert_eq!(metric_sum(&metrics, "strata_stack_adoption", &series), 1.0);

    // Fix forward: the next version drops the LimitRange; every consumer,
    // the failed canary first, moves to it.
    let fixing = Instant::now();
    t.apply_stack("edge", "1.2.0", rollout()).await;
    for name in &names {
        t.function_until(name, "Ready on 1.2.0", |nf| ready_on(nf, "1.2.0"))
            .await;
    }
    let to_fixed = fixing.elapsed();
    let stack = t.stack_ready("edge", "1.2.0").await;
    let rollout = stack
        .status
        .and_then(|s| s.rollout)
        .expect("status.rollout");
    assert_eq!(rollout.phase, AdoptionPhase::Complete);
    assert_eq!(
        (rollout.adopted, rollout.pending, rollout.failed.len()),
        (i32::try_from(names.len()).unwrap(), 0, 0)
    );
    eprintln!(
        "waves: {} consumers, steps [canary (1), rest], maxConcurrent 2, maxFailures 0: \
         1 consumer moved before the halt; stack change to AdoptionHalted {:.1} s; \
         fix-forward to all Ready on it {:.1} s",
        names.len(),
        to_halt.as_secs_f64(),
        to_fixed.as_secs_f64()
    );
    t.finish().await;
}

/// The halted Stack names the failed canary and its record, and says so
/// in `status.rollout`.
fn assert_halted(stack: &Stack, canary: &str) {
    let status = stack.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "AdoptionHalted")
    );
    let rollout = status.rollout.expect("status.rollout");
    assert_eq!(rollout.version, "1.1.0");
    assert_eq!(rollout.phase, AdoptionPhase::Halted);
    assert_eq!(rollout.step.as_deref(), Some("canary"));
    assert_eq!(rollout.failed.len(), 1, "{:?}", rollout.failed);
    let failed = &rollout.failed[0];
    assert_eq!(failed.name, canary);
    assert!(
        ready
            .message
            .contains(&format!("{canary} (record {}:", failed.record)),
        "{}",
        ready.message
    );
    assert!(
        failed.reason.contains("progress deadline"),
        "{}",
        failed.reason
    );
}
