//! Deletion protection: a Stack in use by NetworkFunctions is not deleted
//! until they are gone; then its objects go with it.

use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams};
use serde_json::json;
use strata::api::NetworkFunction;

use super::*;

#[tokio::test]
async fn deletion_waits_while_network_functions_use_the_stack() {
    if !strata_testkit::plane_available() {
        return;
    }
    let world = World::start("stack-in-use").await;
    let configmaps = world.configmaps();
    let policies: Api<NetworkPolicy> = world.ns.api();
    let widgets = world.widgets();
    world
        .apply_stack(
            "edge-net",
            &json!({"version": "1.0.0", "resources": [
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "edge-dns"}, "data": {"upstream": "10.0.0.53"}},
                {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny"},
                 "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}},
                {"apiVersion": WIDGET_API_VERSION, "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}},
            ]}),
        )
        .await;
    world.wait_ready("edge-net", "1.0.0").await;
    let functions: Api<NetworkFunction> = world.ns.api();
    for name in ["upf", "smf"] {
        apply(&functions, name, json!({
            "apiVersion": "strata.dev/v1alpha1", "kind": "NetworkFunction", "metadata": {"name": name},
            "spec": {
                "version": "1.0.0",
                "image": format!("registry.example/{name}@sha256:{}", "0123456789abcdef".repeat(4)),
                "stackRef": {"name": "edge-net"},
                "replicas": 0,
            },
        }))
        .await;
    }
    // The operator knows its consumers.
    wait_stack(&world.stacks, "edge-net", "counting 2 consumers", |s| {
        s.status
            .as_ref()
            .and_then(|st| st.consumers.as_ref())
            .is_some_and(|c| c.total == 2)
    })
    .await;

    world
        .stacks
        .delete("edge-net", &DeleteParams::default())
        .await
        .expect("delete the Stack");
    let message = "deletion waits: NetworkFunctions smf, upf still use stack edge-net; delete them or point them at another stack";
    let stack = wait_in_use(&world.stacks, message).await;
    assert!(stack.metadata.deletion_timestamp.is_some());
    assert_eq!(
        stack.status.as_ref().and_then(|s| s.observed_generation),
        stack.metadata.generation,
        "the status describes the Stack being deleted"
    );
    let reconciling = condition(&stack, "Reconciling").unwrap();
    assert_eq!(
        (reconciling.status.as_str(), reconciling.reason.as_str()),
        ("True", "InUse")
    );
    world.wait_warning("edge-net", "InUse", message).await;
    assert!(exists(&configmaps, "edge-dns").await);
    assert!(exists(&policies, "deny").await);
    assert!(exists(&widgets, "w").await);

    // One consumer left: still waiting, naming it.
    functions
        .delete("smf", &DeleteParams::default())
        .await
        .expect("delete smf");
    wait_in_use(
        &world.stacks,
        "deletion waits: NetworkFunctions upf still use stack edge-net; delete them or point them at another stack",
    )
    .await;
    assert!(exists(&configmaps, "edge-dns").await);

    // None left: the Stack and everything it manages are deleted.
    functions
        .delete("upf", &DeleteParams::default())
        .await
        .expect("delete upf");
    wait_gone(&world.stacks, "edge-net").await;
    wait_gone(&configmaps, "edge-dns").await;
    wait_gone(&policies, "deny").await;
    wait_gone(&widgets, "w").await;
    world.finish().await;
}

/// Waits until the Stack (being deleted) is Ready=False, reason InUse, with `message`.
async fn wait_in_use(stacks: &Api<Stack>, message: &str) -> Stack {
    wait_for(DEADLINE, &format!("edge-net InUse: {message}"), || async {
        let stack = stacks.get("edge-net").await.map_err(|e| e.to_string())?;
        let ready = condition(&stack, "Ready");
        let waiting = stack.metadata.deletion_timestamp.is_some()
            && ready.is_some_and(|c| {
                c.status == "False" && c.reason == "InUse" && c.message == message
            });
        if waiting {
            Ok(stack)
        } else {
            Err(format!(
                "deletionTimestamp {:?}, Ready {ready:?}",
                stack.metadata.deletion_timestamp
            ))
        }
    })
    .await
}
