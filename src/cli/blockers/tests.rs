//! Each blocker `strata trace` names today, and a gate added later, from
//! status objects as the controllers write them.

use serde_json::{Value, json};

use super::*;

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": "2026-11-20T10:00:00Z"})
}

/// Function `upf` 2.3.1 on stack edge-net, running on `running` (a stack
/// version) when given, with `conditions`.
fn function(running: Option<&str>, conditions: Vec<Value>) -> NetworkFunction {
    let deployed = running.map(|version| json!({
        "version": "2.3.1", "image": "registry.example/upf@sha256:4b1e", "imagePinned": true,
        "stack": {"name": "edge-net", "version": version, "digest": "sha256:9f2c"},
        "configDigest": "sha256:77aa", "record": "upf-7f3c2a", "deployedAt": "2026-11-20T10:02:11Z",
    }));
    serde_json::from_value(json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "NetworkFunction",
        "metadata": {"name": "upf", "namespace": "telco", "generation": 2},
        "spec": {"version": "2.3.1", "image": "registry.example/upf@sha256:4b1e",
                 "stackRef": {"name": "edge-net", "version": ">=1.4, <2"}},
        "status": {"observedGeneration": 2, "conditions": conditions, "deployedWith": deployed},
    }))
    .expect("a valid NetworkFunction")
}

fn stack_link(version: &str, ready: bool, satisfied: bool, condition: Option<Value>) -> StackLink {
    StackLink {
        name: "edge-net".into(),
        requirement: ">=1.4, <2".into(),
        update_policy: "Automatic".into(),
        found: true,
        version: Some(version.into()),
        digest: Some("sha256:9f2c".into()),
        ready,
        satisfied,
        condition: condition.map(|c| serde_json::from_value(c).unwrap()),
    }
}

fn dependency(version: &str, ready: bool, satisfied: bool) -> DependencyLink {
    DependencyLink {
        name: "smf".into(),
        requirement: ">=2.0".into(),
        found: true,
        version: Some(version.into()),
        ready,
        satisfied,
        reason: (!ready).then(|| "RollingOut".into()),
    }
}

fn not_ready(reason: &str, message: &str) -> Value {
    condition("Ready", "False", reason, message)
}

#[test]
fn names_a_dependency_at_the_wrong_version() {
    let nf = function(
        None,
        vec![
            not_ready("DependencyNotReady", "dependency smf is at 1.9.0"),
            condition(
                "Reconciling",
                "True",
                "DependencyNotReady",
                "dependency smf is at 1.9.0",
            ),
            condition(
                "DependenciesReady",
                "False",
                "DependencyNotReady",
                "dependency smf is at 1.9.0",
            ),
        ],
    );
    let deps = [dependency("1.9.0", true, false)];
    let blocker = super::function(&nf, &stack_link("1.4.0", true, true, None), &deps).unwrap();
    assert_eq!(
        (
            blocker.kind.as_str(),
            blocker.name.as_str(),
            blocker.version.as_deref()
        ),
        ("NetworkFunction", "smf", Some("1.9.0"))
    );
    assert_eq!(
        blocker.message,
        "dependency smf is at 1.9.0, which does not satisfy >=2.0"
    );
    let deps = [dependency("2.1.0", false, true)];
    let blocker = super::function(&nf, &stack_link("1.4.0", true, true, None), &deps).unwrap();
    assert_eq!(
        blocker.message,
        "dependency smf 2.1.0 is not Ready (RollingOut)"
    );
}

#[test]
fn names_the_stack_when_it_is_missing_not_ready_or_mismatched() {
    let unresolved = |reason: &str| {
        function(
            None,
            vec![
                not_ready(reason, "from the operator"),
                condition("StackResolved", "False", reason, "from the operator"),
            ],
        )
    };
    let mismatch = super::function(
        &unresolved("StackVersionMismatch"),
        &stack_link("2.0.0", true, false, None),
        &[],
    )
    .unwrap();
    assert_eq!(
        mismatch.message,
        "stack edge-net is at 2.0.0, which does not satisfy >=1.4, <2"
    );
    assert_eq!(
        (mismatch.kind.as_str(), mismatch.version.as_deref()),
        ("Stack", Some("2.0.0"))
    );

    let stack_down = condition("Stalled", "True", "VersionConflict", "bump spec.version");
    let not_ready = super::function(
        &unresolved("StackNotReady"),
        &stack_link("1.5.0", false, true, Some(stack_down)),
        &[],
    )
    .unwrap();
    assert_eq!(
        not_ready.message,
        "stack edge-net 1.5.0 is not Ready (VersionConflict): bump spec.version"
    );

    let gone = StackLink {
        found: false,
        version: None,
        ..stack_link("1", false, false, None)
    };
    let missing = super::function(&unresolved("StackNotFound"), &gone, &[]).unwrap();
    assert_eq!(missing.message, "stack edge-net does not exist");
    assert_eq!(
        state(
            &unresolved("StackNotFound").status.unwrap().conditions,
            Some(&missing)
        ),
        State::Blocked
    );
}

#[test]
fn names_a_manual_hold_of_a_ready_function() {
    let held = "held on stack edge-net 1.4.0 by updatePolicy Manual; the stack is at 1.5.0 (change the function's spec to adopt it)";
    let nf = function(
        Some("1.4.0"),
        vec![
            condition(
                "Ready",
                "True",
                "RolledOut",
                "upf 2.3.1 on edge-net 1.4.0: 1/1 pods ready",
            ),
            condition("StackResolved", "True", "HeldByPolicy", held),
        ],
    );
    let blocker = super::function(&nf, &stack_link("1.5.0", true, true, None), &[]).unwrap();
    assert_eq!(
        (blocker.kind.as_str(), blocker.reason.as_str()),
        ("Stack", "HeldByPolicy")
    );
    assert_eq!(blocker.message, held);
    assert_eq!(
        state(&nf.status.unwrap().conditions, Some(&blocker)),
        State::Ready
    );
}

#[test]
fn names_a_queued_adoption() {
    let queued = "queued to adopt stack edge-net 1.5.0: 2 of 8 consumers are moving now and consumerRollout.maxConcurrent allows 2";
    let nf = function(
        Some("1.4.0"),
        vec![
            not_ready("Queued", queued),
            condition("Reconciling", "True", "Queued", queued),
            condition(
                "StackResolved",
                "True",
                "Resolved",
                "stack edge-net 1.5.0 satisfies",
            ),
        ],
    );
    let blocker = super::function(&nf, &stack_link("1.5.0", true, true, None), &[]).unwrap();
    assert_eq!(
        (
            blocker.kind.as_str(),
            blocker.reason.as_str(),
            blocker.version.as_deref()
        ),
        ("Stack", "Queued", Some("1.5.0"))
    );
    assert_eq!(
        state(&nf.status.unwrap().conditions, Some(&blocker)),
        State::Blocked
    );
}

#[test]
fn names_the_record_of_a_failed_rollout() {
    let nf = function(
        Some("1.4.0"),
        vec![
            not_ready("RolloutFailed", "upf 2.3.1: progress deadline exceeded"),
            condition(
                "Stalled",
                "True",
                "RolloutFailed",
                "upf 2.3.1: progress deadline exceeded",
            ),
        ],
    );
    let blocker = super::function(&nf, &stack_link("1.4.0", true, true, None), &[]).unwrap();
    assert_eq!(
        (blocker.kind.as_str(), blocker.name.as_str()),
        ("DeploymentRecord", "upf-7f3c2a")
    );
    assert_eq!(
        blocker.message,
        "the rollout of upf 2.3.1 (record upf-7f3c2a) failed: upf 2.3.1: progress deadline exceeded"
    );
    assert_eq!(
        state(&nf.status.unwrap().conditions, Some(&blocker)),
        State::Stalled
    );
}

/// A gate the controllers do not have yet is named from its condition.
#[test]
fn names_a_later_gate_and_a_halted_stack_adoption_from_their_conditions() {
    let waiting = "artifact upf 2.3.1 on edge-net 1.5.0 has soaked 10m of 30m in staging";
    let nf = function(
        Some("1.4.0"),
        vec![
            not_ready("Soaking", waiting),
            condition("StackResolved", "True", "Resolved", "satisfies"),
            condition("Verified", "False", "Soaking", waiting),
        ],
    );
    let blocker = super::function(&nf, &stack_link("1.5.0", true, true, None), &[]).unwrap();
    assert_eq!(
        (blocker.condition.as_str(), blocker.reason.as_str()),
        ("Verified", "Soaking")
    );
    assert_eq!(
        blocker.message,
        format!("Verified is False (Soaking): {waiting}")
    );

    let halted = condition(
        "Stalled",
        "True",
        "AdoptionHalted",
        "consumers smf (record smf-1) failed",
    );
    let nf = function(
        Some("1.4.0"),
        vec![condition("Ready", "True", "RolledOut", "ok")],
    );
    let blocker = super::function(
        &nf,
        &stack_link("1.5.0", false, true, Some(halted.clone())),
        &[],
    )
    .unwrap();
    assert_eq!(
        blocker.message,
        "stack edge-net 1.5.0 is stalled (AdoptionHalted): consumers smf (record smf-1) failed"
    );
    let on_new = function(
        Some("1.5.0"),
        vec![condition("Ready", "True", "RolledOut", "ok")],
    );
    assert_eq!(
        super::function(
            &on_new,
            &stack_link("1.5.0", false, true, Some(halted.clone())),
            &[]
        ),
        None
    );

    let stack: Stack = serde_json::from_value(json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "Stack", "metadata": {"name": "edge-net"},
        "spec": {"version": "1.5.0", "resources": []},
        "status": {"conditions": [not_ready("AdoptionHalted", "consumers smf (record smf-1) failed"), halted]},
    })).unwrap();
    let blocker = super::stack(&stack).unwrap();
    assert_eq!(
        blocker.message,
        "edge-net cannot progress (AdoptionHalted): consumers smf (record smf-1) failed"
    );
}

#[test]
fn a_rolling_out_function_has_no_blocker() {
    let nf = function(
        Some("1.4.0"),
        vec![
            not_ready("RollingOut", "0/1 pods ready"),
            condition("Reconciling", "True", "RollingOut", "0/1 pods ready"),
            condition("StackResolved", "True", "Resolved", "satisfies"),
        ],
    );
    assert_eq!(
        super::function(&nf, &stack_link("1.4.0", true, true, None), &[]),
        None
    );
    assert_eq!(
        state(&nf.status.unwrap().conditions, None),
        State::Progressing
    );
}

#[test]
fn names_the_first_blocking_hop_of_a_chain() {
    let chain: ServiceChain = serde_json::from_value(json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "ServiceChain", "metadata": {"name": "n6"},
        "spec": {"hops": [{"name": "firewall", "networkFunction": "fw"}, {"name": "gateway", "networkFunction": "upf", "version": "^2.3"}]},
        "status": {"conditions": [not_ready("HopNotReady", "hop gateway")]},
    })).unwrap();
    let hop = |name: &str, function: &str, version: &str, satisfied: bool| HopLink {
        name: name.into(),
        network_function: function.into(),
        requirement: "^2.3".into(),
        found: true,
        version: Some(version.into()),
        stack_version: Some("1.4.0".into()),
        ready: true,
        satisfied,
        blocker: None,
    };
    let hops = [
        hop("firewall", "fw", "3.1.0", true),
        hop("gateway", "upf", "2.2.0", false),
    ];
    let blocker = super::chain(&chain, &hops).unwrap();
    assert_eq!(
        blocker.message,
        "hop gateway: upf is at 2.2.0, which does not satisfy ^2.3"
    );
    assert_eq!(
        (blocker.name.as_str(), blocker.version.as_deref()),
        ("upf", Some("2.2.0"))
    );
}
