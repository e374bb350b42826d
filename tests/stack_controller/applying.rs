//! Applying Stack versions: Ready with substituted, labelled, owned objects
//! and the status that describes them; pruning; the immutability of a
//! version; rollback.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use serde_json::json;
use strata::api::stack::ManagedObject;

use super::*;

#[tokio::test]
async fn a_stack_becomes_ready_with_its_objects_substituted_labelled_and_owned() {
    if !strata_testkit::plane_available() {
        return;
    }
    let world = World::start("stack-ready").await;
    let ns = world.name().to_string();
    let spec = json!({
        "version": "1.0.0",
        "parameters": {"vlan": "120", "upstream": "10.0.0.53", "unused": "x"},
        "resources": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "edge-dns"},
             "data": {"upstream": "${upstream}", "vlan": "vlan-${vlan}", "literal": "$${vlan}"}},
            {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": "edge-default-deny", "labels": {"tier": "edge"}},
             "spec": {"podSelector": {"matchLabels": {"vlan": "${vlan}"}}, "policyTypes": ["Ingress"]}},
            {"apiVersion": WIDGET_API_VERSION, "kind": "Widget", "metadata": {"name": "edge-widget"},
             "spec": {"vlan": "${vlan}", "size": 3}},
        ],
        "outputs": {"dnsUpstream": "${upstream}", "vlanName": "vlan-${vlan}"},
    });
    world.apply_stack("edge-net", &spec).await;

    let stack = world.wait_ready("edge-net", "1.0.0").await;
    let digest = digest_of(&spec);
    assert!(digest.starts_with("sha256:"), "{digest}");
    let ready = condition(&stack, "Ready").unwrap();
    assert_eq!(
        (ready.reason.as_str(), ready.message.as_str()),
        (
            "Applied",
            format!("version 1.0.0 applied: 3 objects, digest {digest}").as_str()
        )
    );
    assert!(condition(&stack, "Stalled").is_none() && condition(&stack, "Reconciling").is_none());
    assert!(
        stack
            .finalizers()
            .contains(&"strata.dev/stack-protection".to_string()),
        "deletion protection: {:?}",
        stack.finalizers()
    );

    // The status says what was applied, from what.
    let status = stack.status.clone().unwrap();
    assert_eq!(status.observed_generation, stack.metadata.generation);
    assert_eq!(status.version.as_deref(), Some("1.0.0"));
    assert_eq!(status.digest.as_deref(), Some(digest.as_str()));
    assert_eq!(
        status.outputs,
        BTreeMap::from([
            ("dnsUpstream".to_string(), "10.0.0.53".to_string()),
            ("vlanName".to_string(), "vlan-120".to_string()),
        ])
    );
    let object = |api_version: &str, kind: &str, name: &str| ManagedObject {
        api_version: api_version.into(),
        kind: kind.into(),
        namespace: Some(ns.clone()),
        name: name.into(),
    };
    let mut inventory = status.inventory.clone();
    inventory.sort();
    let mut want = vec![
        object("v1", "ConfigMap", "edge-dns"),
        object("networking.k8s.io/v1", "NetworkPolicy", "edge-default-deny"),
        object(WIDGET_API_VERSION, "Widget", "edge-widget"),
    ];
    want.sort();
    assert_eq!(inventory, want);
    assert_eq!(status.history.len(), 1, "{:?}", status.history);
    assert_eq!(
        (
            status.history[0].version.as_str(),
            status.history[0].digest.as_str()
        ),
        ("1.0.0", digest.as_str())
    );
    status.history[0]
        .applied_at
        .parse::<Timestamp>()
        .unwrap_or_else(|e| panic!("appliedAt {:?}: {e}", status.history[0].applied_at));
    let consumers = status.consumers.unwrap();
    assert_eq!((consumers.total, consumers.on_current_version), (0, 0));

    // Each object: placeholders substituted, in the Stack's namespace, labelled, owned.
    let configmap = world.configmaps().get("edge-dns").await.unwrap();
    assert_eq!(configmap.namespace().as_deref(), Some(ns.as_str()));
    assert_eq!(
        configmap.data.clone().unwrap(),
        BTreeMap::from([
            ("upstream".to_string(), "10.0.0.53".to_string()),
            ("vlan".to_string(), "vlan-120".to_string()),
            ("literal".to_string(), "${vlan}".to_string()),
        ])
    );
    assert_managed_by(&configmap, &stack, "1.0.0");

    let policies: Api<NetworkPolicy> = world.ns.api();
    let policy = policies.get("edge-default-deny").await.unwrap();
    assert_eq!(
        serde_json::to_value(&policy.spec).unwrap(),
        json!({"podSelector": {"matchLabels": {"vlan": "120"}}, "policyTypes": ["Ingress"]})
    );
    assert_eq!(
        policy.labels().get("tier").map(String::as_str),
        Some("edge")
    );
    assert_managed_by(&policy, &stack, "1.0.0");

    let widget = world.widgets().get("edge-widget").await.unwrap();
    assert_eq!(widget.data["spec"], json!({"vlan": "120", "size": 3}));
    assert_managed_by(&widget, &stack, "1.0.0");

    world
        .wait_event_normal(
            "edge-net",
            "VersionApplied",
            &format!("applied version 1.0.0 ({digest})"),
        )
        .await;
    world.finish().await;
}

#[tokio::test]
async fn a_resource_dropped_in_a_new_version_is_pruned() {
    if !strata_testkit::plane_available() {
        return;
    }
    let world = World::start("stack-prune").await;
    let configmaps = world.configmaps();
    let policies: Api<NetworkPolicy> = world.ns.api();
    let cm = |name: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": name}});
    let policy = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "deny"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}});

    world
        .apply_stack(
            "net",
            &json!({"version": "1.0.0", "resources": [cm("keep"), cm("drop"), policy]}),
        )
        .await;
    world.wait_ready("net", "1.0.0").await;
    assert!(exists(&configmaps, "drop").await && exists(&policies, "deny").await);

    // 1.1.0 drops a ConfigMap and the NetworkPolicy: both are deleted.
    world
        .apply_stack(
            "net",
            &json!({"version": "1.1.0", "resources": [cm("keep")]}),
        )
        .await;
    let stack = world.wait_ready("net", "1.1.0").await;
    wait_gone(&configmaps, "drop").await;
    wait_gone(&policies, "deny").await;
    let keep = configmaps.get("keep").await.unwrap();
    assert_managed_by(&keep, &stack, "1.1.0");
    let status = stack.status.unwrap();
    let inventory: Vec<&str> = status.inventory.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(inventory, ["keep"]);
    let versions: Vec<&str> = status.history.iter().map(|h| h.version.as_str()).collect();
    assert_eq!(versions, ["1.1.0", "1.0.0"]);

    // With prune: false, a dropped object is left in place (and unmanaged).
    world
        .apply_stack(
            "net",
            &json!({"version": "1.2.0", "prune": false, "resources": [cm("other")]}),
        )
        .await;
    let stack = world.wait_ready("net", "1.2.0").await;
    assert!(exists(&configmaps, "other").await);
    assert!(
        exists(&configmaps, "keep").await,
        "prune: false must not delete"
    );
    let inventory: Vec<String> = stack
        .status
        .unwrap()
        .inventory
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(inventory, ["other"]);
    world.finish().await;
}

#[tokio::test]
async fn changing_an_applied_version_in_place_is_refused_and_applies_nothing() {
    if !strata_testkit::plane_available() {
        return;
    }
    let world = World::start("stack-version-conflict").await;
    let configmaps = world.configmaps();
    let spec = |value: &str| {
        json!({"version": "1.0.0", "resources": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": value}},
        ]})
    };
    world.apply_stack("net", &spec("strict")).await;
    world.wait_ready("net", "1.0.0").await;
    let before = configmaps.get("settings").await.unwrap();
    let (applied, changed) = (digest_of(&spec("strict")), digest_of(&spec("loose")));
    assert_ne!(applied, changed);

    // Same version, other content.
    world.apply_stack("net", &spec("loose")).await;
    let (stack, message) = world.wait_stalled("net", "VersionConflict").await;
    assert_eq!(
        message,
        format!(
            "version 1.0.0 was applied with digest {applied} and its content now has digest {changed}; an applied version is immutable, so bump spec.version"
        )
    );
    world.wait_warning("net", "VersionConflict", &message).await;
    // Nothing was applied: the object and the recorded version are as they were.
    let after = configmaps.get("settings").await.unwrap();
    assert_eq!(after.data, before.data);
    assert_eq!(after.resource_version(), before.resource_version());
    let status = stack.status.unwrap();
    assert_eq!(
        (status.version.as_deref(), status.digest.as_deref()),
        (Some("1.0.0"), Some(applied.as_str()))
    );

    // Bumping the version, as the message says, applies the new content.
    let mut bumped = spec("loose");
    bumped["version"] = json!("1.0.1");
    world.apply_stack("net", &bumped).await;
    let stack = world.wait_ready("net", "1.0.1").await;
    assert!(condition(&stack, "Stalled").is_none());
    assert_eq!(data_of(&configmaps, "settings").await["mode"], "loose");
    world.finish().await;
}

#[tokio::test]
async fn going_back_to_an_earlier_version_with_its_content_is_a_rollback() {
    if !strata_testkit::plane_available() {
        return;
    }
    let world = World::start("stack-rollback").await;
    let configmaps = world.configmaps();
    let v1 = json!({"version": "1.0.0", "parameters": {"mode": "strict"}, "resources": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": "${mode}"}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "legacy"}, "data": {"on": "yes"}},
    ]});
    let v2 = json!({"version": "1.1.0", "parameters": {"mode": "loose"}, "resources": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"mode": "${mode}", "extra": "1"}},
    ]});

    world.apply_stack("net", &v1).await;
    let first = world.wait_ready("net", "1.0.0").await.status.unwrap();
    world.apply_stack("net", &v2).await;
    world.wait_ready("net", "1.1.0").await;
    wait_gone(&configmaps, "legacy").await;
    assert_eq!(
        data_of(&configmaps, "settings").await,
        BTreeMap::from([
            ("mode".to_string(), "loose".to_string()),
            ("extra".to_string(), "1".to_string())
        ])
    );

    // Back to 1.0.0, as it was.
    world.apply_stack("net", &v1).await;
    let stack = world.wait_ready("net", "1.0.0").await;
    let status = stack.status.clone().unwrap();
    assert_eq!(status.digest, first.digest);
    assert_eq!(status.digest.as_deref(), Some(digest_of(&v1).as_str()));
    // The objects are 1.0.0's again: the field 1.1.0 added is gone, the
    // object 1.1.0 dropped is back, and both are labelled 1.0.0.
    assert_eq!(
        data_of(&configmaps, "settings").await,
        BTreeMap::from([("mode".to_string(), "strict".to_string())])
    );
    assert_eq!(data_of(&configmaps, "legacy").await["on"], "yes");
    for name in ["settings", "legacy"] {
        assert_managed_by(&configmaps.get(name).await.unwrap(), &stack, "1.0.0");
    }
    // History: the rollback moves 1.0.0 to the front, keeping when it was first applied.
    let history: Vec<(&str, &str)> = status
        .history
        .iter()
        .map(|h| (h.version.as_str(), h.digest.as_str()))
        .collect();
    assert_eq!(
        history,
        [
            ("1.0.0", digest_of(&v1).as_str()),
            ("1.1.0", digest_of(&v2).as_str())
        ]
    );
    assert_eq!(status.history[0].applied_at, first.history[0].applied_at);
    assert!(condition(&stack, "Stalled").is_none());
    world.finish().await;
}

/// Semver build metadata (`+build.7`) is a valid Stack version, but `+` is
/// not valid in a label value: the version label must be made valid, not
/// make every apply fail.
#[tokio::test]
async fn a_version_with_build_metadata_is_labelled_with_a_valid_label_value() {
    if !strata_testkit::plane_available() {
        return;
    }
    let world = World::start("stack-build-metadata").await;
    let spec = json!({"version": "1.0.0+build.7", "resources": [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"k": "v"}},
    ]});
    world.apply_stack("net", &spec).await;
    let stack = world.wait_ready("net", "1.0.0+build.7").await;
    let configmap: ConfigMap = world.configmaps().get("settings").await.unwrap();
    assert_managed_by(&configmap, &stack, "1.0.0_build.7");
    world.finish().await;
}

impl World {
    /// Waits for a Normal Event about Stack `name` with `reason` and `note`.
    async fn wait_event_normal(&self, name: &str, reason: &str, note: &str) {
        wait_event(&self.ns.api(), name, "Normal", reason, note).await;
    }
}
