//! The local control plane is a real one: the scheduler places pods onto the
//! kwok nodes, kwok runs them, the Deployment and ReplicaSet controllers roll
//! them out, and the garbage collector removes what a deleted owner owned.
//! If this test fails, every other integration test is meaningless.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use strata_testkit::{FIELD_MANAGER, TestNamespace, client, wait_for, wait_for_condition};

const REPLICAS: usize = 3;
const ROLLOUT: Duration = Duration::from_secs(60);

/// The annotation kwok puts on the nodes it plays the kubelet for.
const KWOK_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";

#[tokio::test]
async fn deployment_runs_on_kwok_nodes_and_is_garbage_collected() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    let ns = TestNamespace::create(&client, "plane-smoke").await;
    let deployments: Api<Deployment> = ns.api();
    let replica_sets: Api<ReplicaSet> = ns.api();
    let pods: Api<Pod> = ns.api();
    let selector = ListParams::default().labels("app=web");

    let fake_nodes: BTreeSet<String> = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list nodes")
        .into_iter()
        .filter(|n| {
            n.annotations()
                .get(KWOK_NODE_ANNOTATION)
                .map(String::as_str)
                == Some("fake")
        })
        .map(|n| n.name_any())
        .collect();
    assert!(
        !fake_nodes.is_empty(),
        "no node is annotated {KWOK_NODE_ANNOTATION}=fake: is kwok running? (hack/plane status)"
    );

    let web: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.example/web:1"}]}
            }
        }
    }))
    .expect("a valid Deployment");
    deployments
        .patch(
            "web",
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&web),
        )
        .await
        .expect("apply Deployment web");

    // Scheduled onto kwok nodes, Running and Ready.
    let running = wait_for(
        ROLLOUT,
        "3 pods of web scheduled on kwok nodes, Running and Ready",
        || async {
            let list = pods
                .list(&selector)
                .await
                .map_err(|e| format!("cannot list pods: {e}"))?;
            let states: Vec<String> = list.items.iter().map(pod_state).collect();
            let good = list
                .items
                .iter()
                .filter(|p| {
                    let on_kwok = p
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_ref())
                        .is_some_and(|n| fake_nodes.contains(n));
                    on_kwok && phase(p) == "Running" && is_ready(p)
                })
                .count();
            if list.items.len() == REPLICAS && good == REPLICAS {
                Ok(list.items)
            } else {
                Err(format!("{good}/{REPLICAS} good pods: {states:?}"))
            }
        },
    )
    .await;
    assert_eq!(running.len(), REPLICAS);

    let web = wait_for_condition(&deployments, "web", "Available", "True", ROLLOUT).await;
    let status = web.status.expect("an Available Deployment has a status");
    assert_eq!(status.ready_replicas, Some(REPLICAS as i32), "{status:?}");
    assert_eq!(
        status.available_replicas,
        Some(REPLICAS as i32),
        "{status:?}"
    );

    // The ReplicaSet is owned by the Deployment, the pods by the ReplicaSet:
    // that owner chain is what the garbage collector follows.
    let sets = replica_sets
        .list(&selector)
        .await
        .expect("list ReplicaSets")
        .items;
    assert_eq!(
        sets.len(),
        1,
        "one ReplicaSet for one revision: {:?}",
        names(&sets)
    );
    let web_uid = web.metadata.uid.clone().expect("uid");
    assert!(
        sets[0]
            .owner_references()
            .iter()
            .any(|o| o.uid == web_uid && o.controller == Some(true)),
        "ReplicaSet {} is not controlled by Deployment web",
        sets[0].name_any()
    );
    let set_uid = sets[0].uid().expect("uid");
    assert!(
        running
            .iter()
            .all(|p| p.owner_references().iter().any(|o| o.uid == set_uid))
    );

    // Background propagation: the Deployment goes at once, the garbage
    // collector then deletes the ReplicaSet and, through it, the pods.
    deployments
        .delete("web", &DeleteParams::background())
        .await
        .expect("delete Deployment web");
    wait_for(
        ROLLOUT,
        "the garbage collector to delete web's ReplicaSet and pods",
        || async {
            let deployment = deployments
                .get_opt("web")
                .await
                .map_err(|e| e.to_string())?;
            let sets = replica_sets
                .list(&selector)
                .await
                .map_err(|e| e.to_string())?
                .items;
            let left = pods.list(&selector).await.map_err(|e| e.to_string())?.items;
            if deployment.is_none() && sets.is_empty() && left.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "deployment present: {}, replicasets: {:?}, pods: {:?}",
                    deployment.is_some(),
                    names(&sets),
                    left.iter().map(pod_state).collect::<Vec<_>>()
                ))
            }
        },
    )
    .await;

    ns.cleanup().await;
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// "name on node: phase, ready=bool" for failure messages.
fn pod_state(pod: &Pod) -> String {
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("<unscheduled>");
    let deleting = if pod.meta().deletion_timestamp.is_some() {
        ", terminating"
    } else {
        ""
    };
    format!(
        "{} on {node}: {}, ready={}{deleting}",
        pod.name_any(),
        phase(pod),
        is_ready(pod)
    )
}

fn names<K: ResourceExt>(objects: &[K]) -> Vec<String> {
    objects.iter().map(|o| o.name_any()).collect()
}
