//! A ServiceChain end to end, with the real operator binary against the real
//! control plane: three NetworkFunctions on a Stack, chained; the chain
//! becomes Ready, each hop's pods learn their next hop, NetworkPolicies
//! isolate the hops; a reorder rolls only the hops whose next hop changed; an
//! unsatisfied hop requirement keeps the chain not Ready naming that hop;
//! deleting the chain removes its policies and its wiring.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use strata::api::{NetworkFunction, ServiceChain, Stack};
use strata_testkit::Operator;
use strata_testkit::{TestNamespace, apply, client, install_crds, wait_for};

const DEADLINE: Duration = Duration::from_secs(120);
const CHAIN: &str = "n6";
/// The functions: name, version, port, protocol.
const FUNCTIONS: [(&str, &str, i32, &str); 3] = [
    ("fw", "3.1.0", 8080, "TCP"),
    ("cgnat", "1.2.0", 4500, "UDP"),
    ("upf", "2.3.1", 2152, "UDP"),
];

/// A hop: name, function, version requirement.
type Hop = (&'static str, &'static str, &'static str);
const ORDER: [Hop; 3] = [
    ("firewall", "fw", ">=3"),
    ("nat", "cgnat", "*"),
    ("gateway", "upf", "^2.3"),
];
/// Hops 1 and 2 swapped: fw and cgnat get another next hop, upf (last) keeps
/// none. (Swapping hops 2 and 3 of three would change every hop's next hop,
/// and "the others do not roll" could not fail.)
const REORDERED: [Hop; 3] = [
    ("nat", "cgnat", "*"),
    ("firewall", "fw", ">=3"),
    ("gateway", "upf", "^2.3"),
];

#[tokio::test]
async fn service_chain_wires_isolates_reorders_and_unwires() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "service-chain").await;
    let mut operator = Operator::start(ns.name());
    let n = ns.name().to_string();
    let chains: Api<ServiceChain> = ns.api();
    let deployments: Api<Deployment> = ns.api();
    let policies: Api<NetworkPolicy> = ns.api();

    apply(&ns.api::<Stack>(), "edge-net", json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "Stack", "metadata": {"name": "edge-net"},
        "spec": {"version": "1.0.0", "resources": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "edge-dns"}, "data": {"upstream": "10.0.0.53"}},
        ]},
    }))
    .await;
    for (name, version, port, protocol) in FUNCTIONS {
        apply(&ns.api::<NetworkFunction>(), name, json!({
            "apiVersion": "strata.dev/v1alpha1", "kind": "NetworkFunction", "metadata": {"name": name},
            "spec": {
                "version": version,
                "image": format!("registry.example/{name}@sha256:{}", "0123456789abcdef".repeat(4)),
                "stackRef": {"name": "edge-net"},
                "replicas": 1,
                "ports": [{"name": "traffic", "port": port, "protocol": protocol}],
            },
        }))
        .await;
    }
    apply(&chains, CHAIN, chain(&ORDER, true)).await;

    // Ready, with every hop's versions.
    let ready = wait_for_chain(&chains, "True").await;
    let status = serde_json::to_value(&ready.status).unwrap();
    assert_eq!(
        status["hops"],
        json!([
            {"name": "firewall", "networkFunction": "fw", "version": "3.1.0", "stackVersion": "1.0.0", "ready": true},
            {"name": "nat", "networkFunction": "cgnat", "version": "1.2.0", "stackVersion": "1.0.0", "ready": true},
            {"name": "gateway", "networkFunction": "upf", "version": "2.3.1", "stackVersion": "1.0.0", "ready": true},
        ])
    );
    assert_eq!(status["readyHops"], 3);
    assert_eq!(status["chainVersion"], "fw@3.1.0 > cgnat@1.2.0 > upf@2.3.1");
    assert_eq!(
        condition(&ready, "Ready").map(|c| c.reason.as_str()),
        Some("ChainReady")
    );
    assert!(condition(&ready, "Reconciling").is_none() && condition(&ready, "Stalled").is_none());

    // Each hop's pods know the next hop; the last knows none.
    wait_for_wiring(&deployments, &n, &ORDER).await;
    wait_for_policies(&policies, &ORDER, ready.meta().uid.as_deref().unwrap()).await;
    operator.assert_running();

    // Reorder: only the hops whose next hop changed roll.
    let before = templates(&deployments).await;
    apply(&chains, CHAIN, chain(&REORDERED, true)).await;
    wait_for_wiring(&deployments, &n, &REORDERED).await;
    wait_for_policies(&policies, &REORDERED, ready.meta().uid.as_deref().unwrap()).await;
    let reordered = wait_for_chain(&chains, "True").await;
    assert_eq!(
        reordered.status.unwrap().chain_version.as_deref(),
        Some("cgnat@1.2.0 > fw@3.1.0 > upf@2.3.1")
    );
    let after = templates(&deployments).await;
    let (old_next, new_next) = (next_hops(&ORDER), next_hops(&REORDERED));
    for (function, ..) in FUNCTIONS {
        let moved = old_next[function] != new_next[function];
        let (b, a) = (&before[function], &after[function]);
        assert_eq!(
            b.0 != a.0,
            moved,
            "{function}: generation {} -> {}, next hop changed: {moved}",
            b.0,
            a.0
        );
        assert_eq!(
            b.1 != a.1,
            moved,
            "{function}: pod template changed, next hop changed: {moved}"
        );
    }
    assert!(
        FUNCTIONS.iter().any(|f| old_next[f.0] == new_next[f.0]),
        "the reorder must leave a hop unaffected"
    );
    operator.assert_running();

    // A requirement the function fails keeps the chain not Ready, naming the hop.
    let mut strict = REORDERED;
    strict[1].2 = ">=4";
    apply(&chains, CHAIN, chain(&strict, true)).await;
    let blocked = wait_for_chain(&chains, "False").await;
    let message = "hop firewall (fw) is at 3.1.0, which does not satisfy >=4";
    let ready_condition = condition(&blocked, "Ready").unwrap();
    assert_eq!(
        (
            ready_condition.reason.as_str(),
            ready_condition.message.as_str()
        ),
        ("HopNotReady", message)
    );
    assert_eq!(
        condition(&blocked, "Reconciling").map(|c| c.status.as_str()),
        Some("True")
    );
    let status = blocked.status.clone().unwrap();
    assert_eq!(status.ready_hops, Some(2));
    assert_eq!(
        status.hops.iter().map(|h| h.ready).collect::<Vec<_>>(),
        [true, false, true]
    );
    let events: Api<Event> = ns.api();
    wait_for(
        DEADLINE,
        "a Warning Event naming the blocking hop",
        || async {
            let list = events
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let found = list.items.iter().any(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(CHAIN)
                    && e.type_.as_deref() == Some("Warning")
                    && e.reason.as_deref() == Some("HopVersionMismatch")
                    && e.related.as_ref().and_then(|r| r.name.as_deref()) == Some("fw")
                    && e.note.as_deref() == Some(message)
            });
            let notes: Vec<_> = list.items.iter().filter_map(|e| e.note.clone()).collect();
            if found {
                Ok(())
            } else {
                Err(format!("events: {notes:?}"))
            }
        },
    )
    .await;

    // Isolation off removes the policies; on brings them back.
    apply(&chains, CHAIN, chain(&REORDERED, false)).await;
    wait_for_policy_count(&policies, 0).await;
    apply(&chains, CHAIN, chain(&REORDERED, true)).await;
    wait_for_policies(&policies, &REORDERED, ready.meta().uid.as_deref().unwrap()).await;
    operator.assert_running();

    // Deleting the chain removes its policies (garbage collection) and its wiring.
    chains
        .delete(CHAIN, &DeleteParams::default())
        .await
        .expect("delete the chain");
    wait_for_policy_count(&policies, 0).await;
    wait_for_wiring(&deployments, &n, &[]).await;
    operator.assert_running();

    // The Stack's finalizer is released by the operator once nothing uses
    // the Stack: delete it while the operator still runs.
    let functions: Api<NetworkFunction> = ns.api();
    for (function, ..) in FUNCTIONS {
        functions
            .delete(function, &DeleteParams::default())
            .await
            .expect("delete a function");
    }
    let stacks: Api<Stack> = ns.api();
    stacks
        .delete("edge-net", &DeleteParams::default())
        .await
        .expect("delete the stack");
    wait_for(DEADLINE, "the Stack to be finalized and gone", || async {
        match stacks.get_opt("edge-net").await {
            Ok(None) => Ok(()),
            Ok(Some(s)) => Err(format!("finalizers {:?}", s.finalizers())),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    drop(operator);
    ns.cleanup().await;
}

fn chain(hops: &[Hop], isolation: bool) -> Value {
    let hops: Vec<Value> =
        hops.iter().map(|(name, function, version)| json!({"name": name, "networkFunction": function, "version": version})).collect();
    json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "ServiceChain", "metadata": {"name": CHAIN},
        "spec": {"hops": hops, "isolation": isolation, "ingress": {"podSelector": {"matchLabels": {"role": "ran"}}}},
    })
}

fn condition<'a>(
    chain: &'a ServiceChain,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    chain
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Waits until the chain's status describes its current generation with Ready = `ready`.
async fn wait_for_chain(chains: &Api<ServiceChain>, ready: &str) -> ServiceChain {
    wait_for(
        DEADLINE,
        &format!("chain {CHAIN} Ready={ready} at its generation"),
        || async {
            let chain = chains.get(CHAIN).await.map_err(|e| e.to_string())?;
            let observed = chain.status.as_ref().and_then(|s| s.observed_generation);
            let is = condition(&chain, "Ready").map(|c| c.status.clone());
            if observed == chain.metadata.generation && is.as_deref() == Some(ready) {
                Ok(chain)
            } else {
                Err(format!(
                    "generation {:?}, status {}",
                    chain.metadata.generation,
                    serde_json::to_string(&chain.status).unwrap()
                ))
            }
        },
    )
    .await
}

/// Each function's next hop (`host:port`) in a chain with `hops`; none for the last.
fn next_hops(hops: &[Hop]) -> BTreeMap<&'static str, Option<&'static str>> {
    FUNCTIONS
        .iter()
        .map(|(function, ..)| {
            let at = hops.iter().position(|h| h.1 == *function);
            (*function, at.and_then(|i| hops.get(i + 1)).map(|h| h.1))
        })
        .collect()
}

/// Waits until every function's pod template has exactly the `CHAIN_N6_*`
/// variables of its next hop in `hops` (none at all with `hops` empty).
async fn wait_for_wiring(deployments: &Api<Deployment>, ns: &str, hops: &[Hop]) {
    let next = next_hops(hops);
    wait_for(DEADLINE, &format!("next-hop wiring {next:?}"), || async {
        for (function, ..) in FUNCTIONS {
            let d = deployments
                .get(function)
                .await
                .map_err(|e| format!("{function}: {e}"))?;
            let env: BTreeMap<String, String> = d
                .spec
                .template
                .spec
                .iter()
                .flat_map(|p| &p.containers)
                .flat_map(|c| c.env.iter().flatten())
                .filter(|e| e.name.starts_with("CHAIN_"))
                .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
                .collect();
            let want: BTreeMap<String, String> = next[function]
                .map(|to| {
                    let port = FUNCTIONS.iter().find(|f| f.0 == to).unwrap().2;
                    BTreeMap::from([
                        ("CHAIN_N6_NEXT_HOST".to_string(), format!("{to}.{ns}.svc")),
                        ("CHAIN_N6_NEXT_PORT".to_string(), port.to_string()),
                    ])
                })
                .unwrap_or_default();
            if env != want {
                return Err(format!("{function} has {env:?}, wants {want:?}"));
            }
        }
        Ok(())
    })
    .await;
}

/// Each Deployment's generation and pod template.
async fn templates(deployments: &Api<Deployment>) -> BTreeMap<&'static str, (i64, Value)> {
    let mut out = BTreeMap::new();
    for (function, ..) in FUNCTIONS {
        let d = deployments
            .get(function)
            .await
            .expect("the function's Deployment");
        out.insert(
            function,
            (
                d.metadata.generation.unwrap_or_default(),
                serde_json::to_value(&d.spec.template).unwrap(),
            ),
        );
    }
    out
}

fn pods(function: &str) -> Value {
    json!({"matchLabels": {"app.kubernetes.io/name": function, "strata.dev/network-function": function}})
}

/// Waits until the chain's policies are exactly one per hop of `hops`, owned
/// by the chain, each admitting only the previous hop (the first only the
/// ingress selector).
async fn wait_for_policies(policies: &Api<NetworkPolicy>, hops: &[Hop], uid: &str) {
    let mut want = BTreeMap::new();
    let mut from = json!({"podSelector": {"matchLabels": {"role": "ran"}}});
    for (hop, function, _) in hops {
        want.insert(
            format!("{CHAIN}-{hop}"),
            json!({"podSelector": pods(function), "policyTypes": ["Ingress"], "ingress": [{"from": [from]}]}),
        );
        from = json!({"podSelector": pods(function)});
    }
    wait_for(DEADLINE, "the chain's NetworkPolicies", || async {
        let list = policies
            .list(&chain_policies())
            .await
            .map_err(|e| e.to_string())?;
        let mut have = BTreeMap::new();
        for p in list.items {
            let owned = p
                .owner_references()
                .iter()
                .any(|o| o.uid == uid && o.controller == Some(true));
            if !owned {
                return Err(format!("{} is not owned by the chain", p.name_any()));
            }
            have.insert(p.name_any(), serde_json::to_value(&p.spec).unwrap());
        }
        if have == want {
            Ok(())
        } else {
            Err(format!("{have:#?}"))
        }
    })
    .await;
}

fn chain_policies() -> ListParams {
    ListParams::default().labels(&format!("strata.dev/service-chain={CHAIN}"))
}

async fn wait_for_policy_count(policies: &Api<NetworkPolicy>, count: usize) {
    wait_for(
        DEADLINE,
        &format!("{count} NetworkPolicies of the chain"),
        || async {
            let list = policies
                .list(&chain_policies())
                .await
                .map_err(|e| e.to_string())?;
            let names: Vec<String> = list.items.iter().map(ResourceExt::name_any).collect();
            if names.len() == count {
                Ok(())
            } else {
                Err(format!("{names:?}"))
            }
        },
    )
    .await;
}
