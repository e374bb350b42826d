//! The operator's pods meet the restricted Pod Security Standard. Pod
//! Security admission only warns about a Deployment; it enforces on Pods. So
//! the chart's Deployment is created for real in a namespace that enforces
//! `restricted`, and its pod must be created and turn Running (kwok plays the
//! kubelet); a pod without the chart's security settings, as a control, must
//! be refused there.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use serde_json::{Value, json};

use crate::{documents, find, render, to_yaml};
use strata_testkit::{OutputExt, TestNamespace, client, kubectl, kubectl_with_stdin, wait_for};

const DEADLINE: Duration = Duration::from_secs(90);

/// A Pod with the Deployment's pod template, for a server-side dry run.
fn pod_from(deployment: &Value, name: &str) -> Value {
    let template = &deployment["spec"]["template"];
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": deployment["metadata"]["namespace"],
            "labels": {"strata.dev/test": "pod-security-control"},
        },
        "spec": template["spec"],
    })
}

fn dry_run_pod(pod: &Value) -> std::process::Output {
    kubectl_with_stdin(
        ["create", "--dry-run=server", "-f", "-"],
        &to_yaml(std::slice::from_ref(pod)),
    )
}

#[tokio::test]
async fn operator_pods_are_admitted_under_restricted_pod_security() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    let ns = TestNamespace::create(&client, "packaging-pod-security").await;
    let n = ns.name().to_string();
    kubectl([
        "label",
        "namespace",
        &n,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/enforce-version=latest",
        "pod-security.kubernetes.io/warn=restricted",
        "pod-security.kubernetes.io/warn-version=latest",
    ])
    .expect_success("labelling the namespace restricted");

    // The namespaced part of the chart (the cluster-wide RBAC is not needed
    // to run pods), with two replicas so that leader election is on too.
    let objects = documents(&render("psa", &n, &["replicaCount=2"]));
    let namespaced: Vec<Value> = objects
        .iter()
        .filter(|o| {
            [
                "ServiceAccount",
                "Service",
                "Deployment",
                "PodDisruptionBudget",
            ]
            .contains(&o["kind"].as_str().unwrap())
        })
        .cloned()
        .collect();
    let applied = kubectl_with_stdin(["apply", "-f", "-"], &to_yaml(&namespaced));
    applied.expect_success("creating the chart's Deployment in a restricted namespace");
    assert!(
        !applied.stderr_text().contains("PodSecurity"),
        "Pod Security admission warned about the Deployment:\n{}",
        applied.stderr_text()
    );

    // Admission enforced on its pods, which exist and run.
    let pods = ns.api::<Pod>();
    let selector = "app.kubernetes.io/instance=psa";
    let running = wait_for(DEADLINE, "2 operator pods Running", || async {
        let list = pods
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| e.to_string())?;
        let phases: Vec<String> = list
            .items
            .iter()
            .map(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_default()
            })
            .collect();
        if phases.len() == 2 && phases.iter().all(|p| p == "Running") {
            Ok(list.items)
        } else {
            let events = kubectl([
                "get",
                "events",
                "-n",
                &n,
                "-o",
                "custom-columns=REASON:.reason,MESSAGE:.message",
            ])
            .stdout_text();
            Err(format!("pod phases {phases:?}; events:\n{events}"))
        }
    })
    .await;
    for pod in &running {
        let spec = pod.spec.as_ref().expect("a pod spec");
        let security = spec
            .security_context
            .as_ref()
            .expect("a pod securityContext");
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(security.run_as_user, Some(65532));
    }

    // The control: the same pod without its security settings is refused, so
    // the namespace really enforces the restricted profile.
    let deployment = find(&objects, "Deployment", "psa-strata");
    let compliant = pod_from(deployment, "compliant");
    dry_run_pod(&compliant).expect_success("a pod from the chart's template");
    let mut lax = pod_from(deployment, "lax");
    lax["spec"]["securityContext"] = json!({});
    lax["spec"]["containers"][0]["securityContext"] = json!({});
    let refused = dry_run_pod(&lax);
    assert!(
        !refused.status.success()
            && refused
                .stderr_text()
                .contains("violates PodSecurity \"restricted:latest\""),
        "a pod without securityContext was not refused: {}{}",
        refused.stdout_text(),
        refused.stderr_text()
    );

    ns.cleanup().await;
}
