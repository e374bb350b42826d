//! ServiceChain policies and status, from YAML fixtures as a user writes them.

use super::*;
use serde_json::{Value, json};

/// The ServiceChain of the API contract.
const N6_EGRESS: &str = r#"
apiVersion: strata.dev/v1alpha1
kind: ServiceChain
metadata: {name: n6-egress, namespace: telco, uid: 7a1c0000-0000-4000-8000-000000000001}
spec:
  hops:
    - {name: firewall, networkFunction: fw, version: ">=3"}
    - {name: nat, networkFunction: cgnat}
    - {name: gateway, networkFunction: upf, version: "^2.3"}
  ingress:
    podSelector: {matchLabels: {role: ran}}
"#;

fn chain(yaml: &str) -> ServiceChain {
    serde_yaml::from_str(yaml).expect("test ServiceChain parses")
}

/// The contract chain with `spec.ingress` replaced (`None`: removed).
fn with_ingress(ingress: Option<Value>) -> ServiceChain {
    let mut c = chain(N6_EGRESS);
    c.spec.ingress = ingress.map(|i| serde_json::from_value(i).expect("ingress parses"));
    c
}

fn to_json<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).expect("k8s-openapi objects serialize")
}

fn pods(function: &str) -> Value {
    json!({"matchLabels": {"app.kubernetes.io/name": function, "strata.dev/network-function": function}})
}

#[test]
fn one_policy_per_hop_admitting_only_the_previous_hop() {
    let policies = network_policies(&chain(N6_EGRESS)).expect("renders");
    let owner = json!([{
        "apiVersion": "strata.dev/v1alpha1", "kind": "ServiceChain", "name": "n6-egress",
        "uid": "7a1c0000-0000-4000-8000-000000000001", "controller": true, "blockOwnerDeletion": true,
    }]);
    let policy = |name: &str, function: &str, from: Value| {
        json!({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {
                "name": name, "namespace": "telco", "ownerReferences": owner,
                "labels": {"app.kubernetes.io/managed-by": "strata", "strata.dev/service-chain": "n6-egress"},
            },
            "spec": {"podSelector": pods(function), "policyTypes": ["Ingress"], "ingress": [{"from": from}]},
        })
    };
    let want = vec![
        policy(
            "n6-egress-firewall",
            "fw",
            json!([{"podSelector": {"matchLabels": {"role": "ran"}}}]),
        ),
        policy(
            "n6-egress-nat",
            "cgnat",
            json!([{"podSelector": pods("fw")}]),
        ),
        policy(
            "n6-egress-gateway",
            "upf",
            json!([{"podSelector": pods("cgnat")}]),
        ),
    ];
    assert_eq!(policies.iter().map(to_json).collect::<Vec<_>>(), want);
}

#[test]
fn the_first_hop_admits_exactly_the_ingress() {
    let ran = json!({"matchLabels": {"role": "ran"}});
    let edge = json!({"matchLabels": {"zone": "edge"}});
    for (ingress, want) in [
        (None, json!([])),
        (Some(json!({})), json!([])),
        (
            Some(json!({"podSelector": ran})),
            json!([{"from": [{"podSelector": ran}]}]),
        ),
        (
            Some(json!({"namespaceSelector": edge})),
            json!([{"from": [{"namespaceSelector": edge}]}]),
        ),
        (
            Some(json!({"podSelector": ran, "namespaceSelector": edge})),
            json!([{"from": [{"podSelector": ran, "namespaceSelector": edge}]}]),
        ),
    ] {
        let policies = network_policies(&with_ingress(ingress.clone())).expect("renders");
        assert_eq!(
            to_json(&policies[0])["spec"]["ingress"],
            want,
            "ingress {ingress:?}"
        );
        // The other hops never depend on the ingress.
        assert_eq!(
            to_json(&policies[1])["spec"]["ingress"],
            json!([{"from": [{"podSelector": pods("fw")}]}])
        );
    }
}

#[test]
fn bad_inputs_are_refused_with_what_to_change() {
    let mut long = chain(N6_EGRESS);
    long.metadata.name = Some("c".repeat(245));
    assert_eq!(
        network_policies(&long).unwrap_err().to_string(),
        "the NetworkPolicy of hop firewall would be named <chain>-firewall, 254 characters, but Kubernetes names have at most 253; shorten the chain's or the hop's name"
    );
    long.metadata.name = Some("c".repeat(244));
    assert!(
        network_policies(&long).is_ok(),
        "253 characters is a valid name"
    );

    let mut unsaved = chain(N6_EGRESS);
    unsaved.metadata.uid = None;
    assert_eq!(
        network_policies(&unsaved).unwrap_err(),
        RenderError::ChainMissingMetadata("metadata.uid")
    );

    let mut bad = chain(N6_EGRESS);
    bad.spec.hops[1].version = ">=one".into();
    let error = hop_statuses(&bad, |_| None).unwrap_err();
    assert_eq!(
        error.to_string(),
        r#"spec.hops[1].version: ">=one" is not a semver requirement (unexpected character 'o' while parsing major version number); use e.g. ">=1.4, <2", "^2.3", "=1.4.0" or "*""#
    );
}

/// A NetworkFunction at `version`, reconciled up to `observed` of generation
/// 2, with condition Ready = `ready` (and its message), deployed on stack 1.4.0.
fn function(
    name: &str,
    version: &str,
    observed: i64,
    ready: Option<(&str, &str)>,
) -> Arc<NetworkFunction> {
    let conditions: Vec<Value> = ready
        .map(|(status, message)| {
            json!({"type": "Ready", "status": status, "reason": "RolledOut", "message": message,
                   "lastTransitionTime": "2026-11-20T10:00:00Z"})
        })
        .into_iter()
        .collect();
    Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "strata.dev/v1alpha1", "kind": "NetworkFunction",
            "metadata": {"name": name, "namespace": "telco", "generation": 2},
            "spec": {"version": version, "image": "registry.example/x:1", "stackRef": {"name": "edge-net"}},
            "status": {
                "observedGeneration": observed, "conditions": conditions,
                "deployedWith": {"version": version, "image": "registry.example/x:1", "imagePinned": false,
                    "stack": {"name": "edge-net", "version": "1.4.0", "digest": "sha256:9f2c"},
                    "configDigest": "sha256:c", "record": format!("{name}-1"), "deployedAt": "2026-11-20T10:00:00Z"},
            },
        }))
        .expect("test NetworkFunction parses"),
    )
}

fn ready(name: &str, version: &str) -> Arc<NetworkFunction> {
    function(name, version, 2, Some(("True", "ok")))
}

#[test]
fn hop_status_names_the_first_blocking_hop() {
    struct Case {
        what: &'static str,
        functions: Vec<Arc<NetworkFunction>>,
        ready: [bool; 3],
        version: &'static str,
        blocking: Option<(&'static str, HopCause, &'static str)>,
    }
    let cases = [
        Case {
            what: "every hop Ready at a satisfying version",
            functions: vec![
                ready("fw", "3.1.0"),
                ready("cgnat", "1.2.0"),
                ready("upf", "2.3.1"),
            ],
            ready: [true, true, true],
            version: "fw@3.1.0 > cgnat@1.2.0 > upf@2.3.1",
            blocking: None,
        },
        Case {
            what: "a function that does not exist",
            functions: vec![ready("fw", "3.1.0"), ready("upf", "2.3.1")],
            ready: [true, false, true],
            version: "fw@3.1.0 > cgnat@? > upf@2.3.1",
            blocking: Some((
                "nat",
                HopCause::FunctionMissing,
                "hop nat: NetworkFunction cgnat does not exist",
            )),
        },
        Case {
            what: "a version outside the requirement, even though Ready",
            functions: vec![
                ready("fw", "2.9.0"),
                ready("cgnat", "1.2.0"),
                ready("upf", "2.3.1"),
            ],
            ready: [false, true, true],
            version: "fw@2.9.0 > cgnat@1.2.0 > upf@2.3.1",
            blocking: Some((
                "firewall",
                HopCause::VersionMismatch,
                "hop firewall (fw) is at 2.9.0, which does not satisfy >=3",
            )),
        },
        Case {
            what: "Ready=False with the function's own message; the first blocking hop wins",
            functions: vec![
                ready("fw", "3.1.0"),
                function(
                    "cgnat",
                    "1.2.0",
                    2,
                    Some((
                        "False",
                        "cgnat 1.2.0 on stack edge-net 1.4.0: 1 of 3 pods available",
                    )),
                ),
                ready("upf", "3.0.0"),
            ],
            ready: [true, false, false],
            version: "fw@3.1.0 > cgnat@1.2.0 > upf@3.0.0",
            blocking: Some((
                "nat",
                HopCause::FunctionNotReady,
                "hop nat (cgnat) is not Ready: cgnat 1.2.0 on stack edge-net 1.4.0: 1 of 3 pods available",
            )),
        },
        Case {
            what: "Ready=True of an older generation is not Ready",
            functions: vec![
                ready("fw", "3.1.0"),
                function("cgnat", "1.2.0", 1, Some(("True", "ok"))),
                ready("upf", "2.3.1"),
            ],
            ready: [true, false, true],
            version: "fw@3.1.0 > cgnat@1.2.0 > upf@2.3.1",
            blocking: Some((
                "nat",
                HopCause::FunctionNotReady,
                "hop nat (cgnat) is not Ready: generation 2 has not been reconciled yet",
            )),
        },
        Case {
            what: "no Ready condition yet",
            functions: vec![
                ready("fw", "3.1.0"),
                function("cgnat", "1.2.0", 2, None),
                ready("upf", "2.3.1"),
            ],
            ready: [true, false, true],
            version: "fw@3.1.0 > cgnat@1.2.0 > upf@2.3.1",
            blocking: Some((
                "nat",
                HopCause::FunctionNotReady,
                "hop nat (cgnat) is not Ready: it has not been reconciled yet",
            )),
        },
    ];
    let c = chain(N6_EGRESS);
    for case in cases {
        let lookup = |name: &str| {
            case.functions
                .iter()
                .find(|f| f.metadata.name.as_deref() == Some(name))
                .cloned()
        };
        let report = hop_statuses(&c, lookup).expect("requirements are valid");
        let ready: Vec<bool> = report.hops.iter().map(|h| h.ready).collect();
        assert_eq!(ready, case.ready, "{}: readiness", case.what);
        assert_eq!(
            report.ready_hops,
            case.ready.iter().filter(|r| **r).count() as i32,
            "{}",
            case.what
        );
        assert_eq!(report.chain_version, case.version, "{}", case.what);
        let blocking = report
            .blocking
            .as_ref()
            .map(|b| (b.hop.as_str(), b.cause, b.message.as_str()));
        assert_eq!(blocking, case.blocking, "{}: blocking hop", case.what);
    }
}

#[test]
fn hop_status_records_function_and_stack_versions() {
    let functions = [ready("fw", "3.1.0"), ready("upf", "2.3.1")];
    let lookup = |name: &str| {
        functions
            .iter()
            .find(|f| f.metadata.name.as_deref() == Some(name))
            .cloned()
    };
    let report = hop_statuses(&chain(N6_EGRESS), lookup).expect("requirements are valid");
    assert_eq!(
        to_json(&report.hops),
        json!([
            {"name": "firewall", "networkFunction": "fw", "version": "3.1.0", "stackVersion": "1.4.0", "ready": true},
            {"name": "nat", "networkFunction": "cgnat", "ready": false},
            {"name": "gateway", "networkFunction": "upf", "version": "2.3.1", "stackVersion": "1.4.0", "ready": true},
        ])
    );
}

#[test]
fn each_cause_has_its_event_reason() {
    let causes = [
        HopCause::FunctionMissing,
        HopCause::VersionMismatch,
        HopCause::FunctionNotReady,
    ];
    assert_eq!(
        causes.map(HopCause::reason),
        ["HopNotFound", "HopVersionMismatch", "HopNotReady"]
    );
}
