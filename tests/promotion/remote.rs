//! Staging as another cluster: a plane of its own with its own operator,
//! read by production's gate through a kubeConfig Secret.

use kube::api::{Api, PostParams};
use serde_json::json;
use strata_testkit::{DedicatedPlane, Operator, TestNamespace, client, install_crds};

use super::{Env, condition, runs_on, seconds, upf};

#[tokio::test]
async fn an_artifact_verified_in_another_cluster_reaches_production_and_an_unreachable_one_does_not()
 {
    if !strata_testkit::plane_available() {
        return;
    }
    let plane = DedicatedPlane::up("promotion-remote").await;
    let remote = plane.client().await;
    install_crds(&remote).await;
    let staging = Env::new(TestNamespace::create(&remote, "staging").await);
    let kubeconfig = plane.kubeconfig();
    let upstream_operator = Operator::start_with(
        staging.name(),
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );

    let client = client().await;
    install_crds(&client).await;
    let production = Env::new(TestNamespace::create(&client, "promotion-remote").await);
    let mut operator = Operator::start(production.name());
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = production.ns.api();
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "staging-kubeconfig"},
                "stringData": {"value": plane.kubeconfig_inline()},
            }))
            .unwrap(),
        )
        .await
        .expect("create the kubeConfig Secret");

    staging.apply_stack("1.0.0", "lab").await;
    production.apply_stack("1.0.0", "edge-1").await;
    let gate = json!({"promotion": {"requireVerifiedIn": [
        {"namespace": staging.name(), "soak": "3s",
         "kubeConfig": {"secretRef": {"name": "staging-kubeconfig", "key": "value"}}},
    ]}});
    production
        .apply_function("upf", upf("1.0.0", gate.clone()))
        .await;
    production.verified("upf", "NotVerifiedUpstream").await;
    staging.apply_function("upf", upf("1.0.0", json!({}))).await;
    staging.ready_on("upf", "1.0.0").await;
    let staged = staging.current_record("upf").await;
    production.ready_on("upf", "1.0.0").await;
    let current = production.current_record("upf").await;
    let evidence = &current.spec.verified_in;
    assert_eq!(evidence.len(), 1, "{evidence:?}");
    assert!(
        evidence[0].cluster.starts_with("https://"),
        "the upstream cluster's URL: {evidence:?}"
    );
    assert_eq!(
        (evidence[0].namespace.as_str(), evidence[0].record.as_str()),
        (staging.name(), staged.metadata.name.as_deref().unwrap())
    );
    assert!(seconds(&evidence[0].soaked) >= 3.0, "{evidence:?}");

    // The upstream API server stops: a new version waits, UpstreamUnreachable.
    // Once the gate knows (what runs keeps running, and says so), the
    // artifact verified before, with a new configuration, waits: its
    // verification cannot be read, and the gate stays shut.
    drop(upstream_operator);
    plane.stop("kube-apiserver").await;
    production.verified("upf", "UpstreamUnreachable").await;
    let mut reconfigured = upf("1.0.0", json!({"config": {"mode": "fast"}}));
    reconfigured["promotion"] = gate["promotion"].clone();
    production.apply_function("upf", reconfigured).await;
    let shut = production
        .function_until("upf", "its new configuration held", |nf| {
            super::observed(nf)
                && condition(nf, "Ready")
                    .is_some_and(|c| c.status == "False" && c.reason == "UpstreamUnreachable")
        })
        .await;
    let message = &condition(&shut, "Verified").unwrap().message;
    assert!(message.contains("staging-kubeconfig"), "{message}");
    assert!(
        !message.contains("BEGIN") && !message.contains("token"),
        "no credential in the message: {message}"
    );
    let held = shut.status.clone().unwrap().deployed_with.unwrap();
    assert_eq!(
        Some(held.record),
        current.metadata.name.clone(),
        "nothing new rolled out"
    );
    assert_eq!(
        runs_on(&shut).as_deref(),
        Some("1.0.0"),
        "the pods keep running"
    );

    operator.assert_running();
    drop(operator);
    production.ns.cleanup().await;
}
