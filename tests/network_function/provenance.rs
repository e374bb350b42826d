//! What a function records about its rollouts, and how it follows its Stack.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::api::DeleteParams;
use serde_json::json;
use strata::api::{DeploymentRecord, Outcome};

use super::children::{check_children, children_config_maps, pod_annotations, running_pods};
use super::{DEADLINE, Fixture, assert_prompt, condition_text, pinned_image, text};
use strata_testkit::{OutputExt, kubectl, wait_for};

const STACK: &str = "edge-net";
const REQUIREMENT: &str = ">=1.4, <2";

/// `upf`: ports, configuration, stack outputs; follows `>=1.4, <2`.
fn upf_spec() -> serde_json::Value {
    json!({
        "version": "2.3.1",
        "image": pinned_image("upf"),
        "stackRef": {"name": STACK, "version": REQUIREMENT},
        "replicas": 2,
        "ports": [{"name": "gtpu", "port": 2152, "protocol": "UDP"}, {"name": "metrics", "port": 9090}],
        "env": [{"name": "MODE", "value": "edge"}],
        "config": {"upf.yaml": "mode: edge\n"},
        "stackOutputs": true,
    })
}

/// `amf`: pinned to stack 1.4.0, without ports or configuration.
fn amf_spec() -> serde_json::Value {
    json!({
        "version": "1.0.0",
        "image": pinned_image("amf"),
        "stackRef": {"name": STACK, "version": "=1.4.0"},
    })
}

/// Parameters and outputs of the stack at `version`.
fn stack_extra(version: &str) -> serde_json::Value {
    json!({
        "parameters": {"upstream": "10.0.0.53"},
        "outputs": {"dnsUpstream": "${upstream}", "release": version},
    })
}

#[tokio::test]
async fn records_provenance_and_follows_its_stack() {
    if !strata_testkit::plane_available() {
        return;
    }
    let t = Fixture::start("nf-provenance").await;
    t.apply_stack(STACK, "1.4.0", stack_extra("1.4.0")).await;
    t.apply_function("upf", upf_spec()).await;
    t.apply_function("amf", amf_spec()).await;

    // Ready on 1.4.0, with the stack's digest.
    let stack = t.stack_ready(STACK, "1.4.0").await;
    let digest_14 = stack.status.unwrap().digest.expect("a digest");
    let upf = t.function_ready_on("upf", "1.4.0").await;
    let amf = t.function_ready_on("amf", "1.4.0").await;
    let status = upf.status.clone().unwrap();
    let deployed = status.deployed_with.clone().unwrap();
    assert_eq!(
        (
            deployed.version.as_str(),
            deployed.image.as_str(),
            deployed.image_pinned
        ),
        ("2.3.1", pinned_image("upf").as_str(), true)
    );
    assert_eq!(
        (
            deployed.stack.name.as_str(),
            deployed.stack.version.as_str(),
            deployed.stack.digest.as_str()
        ),
        (STACK, "1.4.0", digest_14.as_str())
    );
    assert!(deployed.config_digest.starts_with("sha256:"));
    assert!(status.history.is_empty());
    assert_eq!((status.replicas, status.ready_replicas), (Some(2), Some(2)));
    assert_eq!(
        condition_text(&upf, "Ready"),
        text(
            "True",
            "RolledOut",
            "upf 2.3.1 on stack edge-net 1.4.0: 2/2 pods ready"
        )
    );
    assert_eq!(
        condition_text(&upf, "StackResolved"),
        text(
            "True",
            "Resolved",
            &format!("stack edge-net 1.4.0 ({digest_14}) satisfies >=1.4, <2")
        )
    );
    assert_eq!(
        condition_text(&upf, "DependenciesReady"),
        text("True", "DependenciesReady", "no dependencies")
    );
    assert_eq!(condition_text(&upf, "Reconciling"), None);
    assert_eq!(condition_text(&upf, "Stalled"), None);

    // Exactly one record, Succeeded, labelled for queries.
    let records = t.records_of("upf").await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let first = &records[0];
    assert_eq!(first.name_any(), deployed.record);
    assert_eq!(
        first.labels(),
        &BTreeMap::from([
            ("strata.dev/network-function".into(), "upf".into()),
            ("strata.dev/stack".into(), STACK.into()),
            ("strata.dev/stack-version".into(), "1.4.0".into()),
        ])
    );
    assert_eq!(first.spec.network_function.name, "upf");
    assert_eq!(Some(&first.spec.network_function.uid), upf.uid().as_ref());
    assert_eq!(first.spec.version, "2.3.1");
    assert_eq!(first.spec.image, pinned_image("upf"));
    assert_eq!(first.spec.stack, deployed.stack);
    assert_eq!(first.spec.config_digest, deployed.config_digest);
    assert_eq!(first.spec.previous_record, None);
    assert_eq!(first.spec.started_at, deployed.deployed_at);
    assert_eq!(outcome(first), Outcome::Succeeded);
    assert!(
        first.owner_references().is_empty(),
        "records outlive the function"
    );

    check_children(&t, &upf, STACK, &digest_14).await;
    let amf_record = t.records_of("amf").await;
    assert_eq!(amf_record.len(), 1);
    assert!(
        t.ns.api::<Service>()
            .get_opt("amf")
            .await
            .unwrap()
            .is_none(),
        "no ports, no Service"
    );
    assert!(
        amf.status
            .unwrap()
            .deployed_with
            .unwrap()
            .config_digest
            .starts_with("sha256:")
            && children_config_maps(&t, "amf").await.is_empty(),
        "no configuration, no ConfigMap"
    );
    t.events_about("upf", "Normal", "RolloutStarted", |note| {
        note == format!(
            "rolling out upf 2.3.1 on stack edge-net 1.4.0 ({digest_14}), record {}",
            deployed.record
        )
    })
    .await;

    // Stack 1.5.0: upf rolls onto it with a new record; amf (pinned) stays.
    t.apply_stack(STACK, "1.5.0", stack_extra("1.5.0")).await;
    let stack = t.stack_ready(STACK, "1.5.0").await;
    let stack_status = stack.status.unwrap();
    let digest_15 = stack_status.digest.clone().expect("a digest");
    let applied_15 = stack_status.history[0].applied_at.clone();
    assert_ne!(digest_14, digest_15);
    let upf = t.function_ready_on("upf", "1.5.0").await;
    let status = upf.status.clone().unwrap();
    let moved = status.deployed_with.clone().unwrap();
    assert_eq!(moved.stack.digest, digest_15);
    assert_ne!(moved.record, first.name_any());
    assert_eq!(
        status.history.iter().map(|h| &h.record).collect::<Vec<_>>(),
        [&first.name_any()]
    );
    let records = t.records_of("upf").await;
    assert_eq!(records.len(), 2, "{records:#?}");
    let second = records
        .iter()
        .find(|r| r.name_any() == moved.record)
        .expect("the new rollout's record");
    assert_eq!(
        second.spec.previous_record.as_deref(),
        Some(first.name_any().as_str())
    );
    assert_eq!(second.spec.stack.version, "1.5.0");
    assert_eq!(second.spec.stack.digest, digest_15);
    assert_eq!(
        second
            .labels()
            .get("strata.dev/stack-version")
            .map(String::as_str),
        Some("1.5.0")
    );
    assert_eq!(outcome(second), Outcome::Succeeded);
    assert_prompt(
        "upf rolls onto stack 1.5.0 once the stack applied it",
        &applied_15,
        &second.spec.started_at,
        5,
    );
    let first = t.records.get(&first.name_any()).await.unwrap();
    assert_eq!(outcome(&first), Outcome::Superseded);
    let template = pod_annotations(&t, "upf").await;
    assert_eq!(template["strata.dev/stack-version"], "1.5.0");
    assert_eq!(template["strata.dev/stack-digest"], digest_15);
    t.events_about("upf", "Normal", "StackAdopted", |note| {
        note == "adopted stack edge-net 1.5.0 (was 1.4.0)"
    })
    .await;
    let amf = t
        .function_condition("amf", "StackResolved", "StackVersionMismatch")
        .await;
    assert_eq!(
        condition_text(&amf, "StackResolved"),
        text(
            "False",
            "StackVersionMismatch",
            "stack edge-net is at 1.5.0, which does not satisfy =1.4.0"
        )
    );
    assert_eq!(t.records_of("amf").await.len(), 1);

    // Stack 2.0.0 does not satisfy upf: it stays on 1.5.0, its pods keep running.
    let before = t.deployment("upf").await.expect("upf's Deployment");
    t.apply_stack(STACK, "2.0.0", stack_extra("2.0.0")).await;
    t.stack_ready(STACK, "2.0.0").await;
    let upf = t
        .function_until("upf", "StackResolved=False naming 2.0.0", |nf| {
            super::observed(nf)
                && condition_text(nf, "StackResolved").is_some_and(|(_, _, m)| m.contains("2.0.0"))
        })
        .await;
    let mismatch = "stack edge-net is at 2.0.0, which does not satisfy >=1.4, <2";
    assert_eq!(
        condition_text(&upf, "StackResolved"),
        text("False", "StackVersionMismatch", mismatch)
    );
    assert_eq!(
        condition_text(&upf, "Ready"),
        text(
            "False",
            "StackVersionMismatch",
            &format!(
                "upf 2.3.1 on stack edge-net 1.5.0 keeps running, but nothing new rolls out: {mismatch}"
            )
        )
    );
    assert_eq!(condition_text(&upf, "Stalled"), None);
    let status = upf.status.clone().unwrap();
    assert_eq!(status.deployed_with.as_ref(), Some(&moved));
    assert_eq!(t.records_of("upf").await.len(), 2);
    let after = t.deployment("upf").await.expect("upf's Deployment");
    assert_eq!(after.metadata.generation, before.metadata.generation);
    assert_eq!(after.spec.template, before.spec.template);
    let pods = running_pods(&t, "upf").await;
    assert_eq!(
        pods,
        ["1.5.0", "1.5.0"],
        "upf's pods run on the last good stack version"
    );
    t.events_about("upf", "Warning", "StackVersionMismatch", |note| {
        note == mismatch
    })
    .await;

    // Records by stack version, as a user queries them.
    let by_version = |version: &str| {
        let out = kubectl([
            "get",
            "dr",
            "-n",
            t.name(),
            "-l",
            &format!("strata.dev/stack-version={version}"),
            "-o",
            "name",
        ])
        .expect_success("kubectl get dr");
        let mut names: Vec<String> = out.lines().map(str::to_string).collect();
        names.sort();
        names
    };
    let name = |r: &str| format!("deploymentrecord.strata.dev/{r}");
    let mut on_14 = vec![name(&first.name_any()), name(&amf_record[0].name_any())];
    on_14.sort();
    assert_eq!(by_version("1.4.0"), on_14);
    assert_eq!(by_version("1.5.0"), [name(&second.name_any())]);
    assert!(by_version("2.0.0").is_empty());

    // Deleting the function deletes its children, not its records.
    t.functions
        .delete("upf", &DeleteParams::default())
        .await
        .expect("delete upf");
    wait_for(DEADLINE, "upf and its Deployment to be gone", || async {
        let nf = t
            .functions
            .get_opt("upf")
            .await
            .map_err(|e| e.to_string())?;
        let deployment = t
            .deployments
            .get_opt("upf")
            .await
            .map_err(|e| e.to_string())?;
        match (nf, deployment) {
            (None, None) => Ok(()),
            (nf, d) => Err(format!(
                "function exists: {}, Deployment exists: {}",
                nf.is_some(),
                d.is_some()
            )),
        }
    })
    .await;
    let kept: Vec<String> = t
        .records_of("upf")
        .await
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(kept, [first.name_any(), second.name_any()]);
    t.finish().await;
}

fn outcome(record: &DeploymentRecord) -> Outcome {
    record
        .status
        .as_ref()
        .map(|s| s.outcome)
        .unwrap_or_default()
}

/// A tag-only image is deployed, reported once as a Warning Event and
/// recorded as unpinned.
#[tokio::test]
async fn tag_only_image_is_reported_as_unpinned() {
    if !strata_testkit::plane_available() {
        return;
    }
    let t = Fixture::start("nf-unpinned").await;
    t.apply_stack(STACK, "1.0.0", json!({})).await;
    let image = "registry.example/upf:2.3.1";
    t.apply_function(
        "upf",
        json!({"version": "2.3.1", "image": image, "stackRef": {"name": STACK}}),
    )
    .await;
    let upf = t.function_ready_on("upf", "1.0.0").await;
    let deployed = upf.status.unwrap().deployed_with.unwrap();
    assert_eq!(
        (deployed.image.as_str(), deployed.image_pinned),
        (image, false)
    );
    let note = format!(
        "image {image} is not pinned by digest; pin it as name@sha256:... so the rollout is reproducible"
    );
    let events = t
        .events_about("upf", "Warning", "ImageNotPinned", |n| n == note)
        .await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let records = t.records_of("upf").await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].spec.image, image);
    t.finish().await;
}
