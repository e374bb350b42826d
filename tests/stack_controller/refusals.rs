//! Bad input stops a Stack with `Stalled=True`, the exact reason and a
//! message naming what is wrong, and nothing of the Stack is applied: not
//! even its valid resources, which are listed first on purpose.

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::api::Api;
use serde_json::{Value, json};

use super::*;

fn configmap(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

#[tokio::test]
async fn an_unknown_placeholder_is_invalid_spec_and_nothing_is_applied() {
    if !strata_testkit::plane_available() {
        return;
    }
    let world = World::start("stack-unknown-placeholder").await;
    world
        .apply_stack(
            "net",
            &json!({"version": "1.0.0", "parameters": {"vlan": "120"}, "resources": [
                configmap("valid", json!({"vlan": "${vlan}"})),
                configmap("broken", json!({"vlan": "${vlan}", "gateway": "10.0.${subnet}.1"})),
            ]}),
        )
        .await;
    let (stack, message) = world.wait_stalled("net", "InvalidSpec").await;
    assert_eq!(
        message,
        "spec.resources[1] (ConfigMap/broken) uses ${subnet} in data.gateway, which is not a parameter; add it to spec.parameters or fix the placeholder"
    );
    world.wait_warning("net", "InvalidSpec", &message).await;
    assert_nothing_applied(&world, &stack).await;
    assert!(!exists(&world.configmaps(), "valid").await);
    world.finish().await;
}

/// An object the API server finds invalid is refused before anything is
/// written: every write is dry-run first.
#[tokio::test]
async fn an_object_the_api_server_refuses_is_invalid_spec_and_nothing_is_applied() {
    if !strata_testkit::plane_available() {
        return;
    }
    let world = World::start("stack-invalid-object").await;
    world
        .apply_stack(
            "net",
            &json!({"version": "1.0.0", "resources": [
                configmap("valid", json!({"k": "v"})),
                configmap("Edge_DNS", json!({"k": "v"})),
            ]}),
        )
        .await;
    let (stack, message) = world.wait_stalled("net", "InvalidSpec").await;
    let expected = r#"spec.resources[1] (ConfigMap/Edge_DNS) was refused by the API server: ConfigMap "Edge_DNS" is invalid: metadata.name: Invalid value: "Edge_DNS": a lowercase RFC 1123 subdomain"#;
    assert!(message.starts_with(expected), "{message}");
    world.wait_warning("net", "InvalidSpec", &message).await;
    assert_nothing_applied(&world, &stack).await;
    assert!(!exists(&world.configmaps(), "valid").await);
    world.finish().await;
}

#[tokio::test]
async fn a_kind_the_api_server_does_not_serve_is_unknown_kind_and_nothing_is_applied() {
    if !strata_testkit::plane_available() {
        return;
    }
    let world = World::start("stack-unknown-kind").await;
    // A group no CRD serves yet (named after the namespace, so that it is
    // this test's own), and a kind missing from a group that is served.
    let group = format!("{}.test.strata.dev", world.name());
    let _crd = CrdGuard(format!("gizmos.{group}"));
    let policy = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "deny"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}});
    world
        .apply_stack(
            "gizmo-net",
            &json!({"version": "1.0.0", "resources": [
                configmap("gizmo-settings", json!({"k": "v"})),
                {"apiVersion": format!("{group}/v1"), "kind": "Gizmo", "metadata": {"name": "g"}, "spec": {"size": 1}},
                policy,
            ]}),
        )
        .await;
    world
        .apply_stack(
            "sprocket-net",
            &json!({"version": "1.0.0", "resources": [
                configmap("sprocket-settings", json!({"k": "v"})),
                {"apiVersion": WIDGET_API_VERSION, "kind": "Sprocket", "metadata": {"name": "s"}},
            ]}),
        )
        .await;

    let (gizmo_stack, message) = world.wait_stalled("gizmo-net", "UnknownKind").await;
    assert_eq!(
        message,
        format!(
            "spec.resources[1]: the API server does not serve kind Gizmo in {group}/v1; install its CustomResourceDefinition or fix apiVersion/kind"
        )
    );
    world
        .wait_warning("gizmo-net", "UnknownKind", &message)
        .await;
    let (sprocket_stack, message) = world.wait_stalled("sprocket-net", "UnknownKind").await;
    assert_eq!(
        message,
        "spec.resources[1]: the API server does not serve kind Sprocket in test.strata.dev/v1; install its CustomResourceDefinition or fix apiVersion/kind"
    );
    assert_nothing_applied(&world, &gizmo_stack).await;
    assert_nothing_applied(&world, &sprocket_stack).await;
    let policies: Api<NetworkPolicy> = world.ns.api();
    assert!(!exists(&policies, "deny").await);

    // Installing the CRD, as the message says, is enough: the Stack is
    // retried without being touched.
    install_test_crd(&world.client, &group, "Gizmo", "gizmos").await;
    let stack = world.wait_ready("gizmo-net", "1.0.0").await;
    assert_eq!(stack.status.unwrap().inventory.len(), 3);
    assert!(
        exists(
            &world.dynamic(&format!("{group}/v1"), "Gizmo", "gizmos"),
            "g"
        )
        .await
    );
    assert!(exists(&policies, "deny").await);
    world.finish().await;
}

#[tokio::test]
async fn objects_outside_the_stacks_namespace_are_out_of_scope_and_nothing_is_applied() {
    if !strata_testkit::plane_available() {
        return;
    }
    let world = World::start("stack-out-of-scope").await;
    let ns = world.name().to_string();
    let elsewhere = format!("{ns}-elsewhere");
    let cluster_role = format!("{ns}-reader");
    world
        .apply_stack(
            "other-namespace",
            &json!({"version": "1.0.0", "resources": [
                configmap("local", json!({"k": "v"})),
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": elsewhere, "namespace": "default"}, "data": {"k": "v"}},
            ]}),
        )
        .await;
    world
        .apply_stack(
            "cluster-scoped",
            &json!({"version": "1.0.0", "resources": [
                configmap("local-too", json!({"k": "v"})),
                {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": cluster_role},
                 "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]},
            ]}),
        )
        .await;

    let (stack, message) = world.wait_stalled("other-namespace", "OutOfScope").await;
    assert_eq!(
        message,
        format!(
            "spec.resources[1] (ConfigMap/{elsewhere}) is in namespace default; the operator only allows objects in the Stack's namespace {ns}"
        )
    );
    world
        .wait_warning("other-namespace", "OutOfScope", &message)
        .await;
    assert_nothing_applied(&world, &stack).await;
    let default_configmaps: Api<ConfigMap> = Api::namespaced(world.client.clone(), "default");
    assert!(!exists(&default_configmaps, &elsewhere).await);

    let (stack, message) = world.wait_stalled("cluster-scoped", "OutOfScope").await;
    assert_eq!(
        message,
        format!(
            "spec.resources[1] (ClusterRole/{cluster_role}) is cluster-scoped; the operator only allows objects in the Stack's namespace {ns}"
        )
    );
    assert_nothing_applied(&world, &stack).await;
    let cluster_roles: Api<ClusterRole> = Api::all(world.client.clone());
    assert!(!exists(&cluster_roles, &cluster_role).await);
    world.finish().await;
}

/// A ServiceAccount allowed ConfigMaps but not Secrets: a Stack applied as
/// it gets Forbidden naming Secret and the verb, and nothing else changes
/// (the ConfigMap, listed first, is not created either). Granting the
/// permission is enough for the Stack to be applied.
#[tokio::test]
async fn a_service_account_is_a_permission_boundary() {
    if !strata_testkit::plane_available() {
        return;
    }
    let world = World::start("stack-forbidden").await;
    let ns = world.name().to_string();
    let configmap_verbs = json!([
        "get", "list", "watch", "create", "patch", "update", "delete"
    ]);
    apply(
        &world.ns.api::<ServiceAccount>(),
        "deployer",
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "deployer"}}),
    )
    .await;
    let role = |rules: Value| json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "deployer"}, "rules": rules});
    apply(
        &world.ns.api::<Role>(),
        "deployer",
        role(json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": configmap_verbs}])),
    )
    .await;
    apply(
        &world.ns.api::<RoleBinding>(),
        "deployer",
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "deployer"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"},
               "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": ns}]}),
    )
    .await;

    world
        .apply_stack(
            "net",
            &json!({"version": "1.0.0", "serviceAccountName": "deployer", "resources": [
                configmap("settings", json!({"k": "v"})),
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "credentials"}, "stringData": {"token": "t0k3n"}},
            ]}),
        )
        .await;
    let (stack, message) = world.wait_stalled("net", "Forbidden").await;
    assert_eq!(
        message,
        format!(
            "ServiceAccount {ns}/deployer may not patch Secret {ns}/credentials; grant it that permission or remove the resource from spec.resources"
        )
    );
    world.wait_warning("net", "Forbidden", &message).await;
    assert_nothing_applied(&world, &stack).await;
    assert!(!exists(&world.configmaps(), "settings").await);
    assert!(!exists(&world.ns.api::<Secret>(), "credentials").await);

    // Granting Secrets, as the message says, is enough: the Stack is
    // retried without being touched, and applied as the ServiceAccount.
    apply(
        &world.ns.api::<Role>(),
        "deployer",
        role(json!([{"apiGroups": [""], "resources": ["configmaps", "secrets"], "verbs": configmap_verbs}])),
    )
    .await;
    let stack = world.wait_ready("net", "1.0.0").await;
    assert_eq!(stack.status.unwrap().inventory.len(), 2);
    assert_eq!(data_of(&world.configmaps(), "settings").await["k"], "v");
    assert!(exists(&world.ns.api::<Secret>(), "credentials").await);
    world.finish().await;
}

/// Nothing of `stack` was applied: no object carries its label, and its
/// status records no applied version.
async fn assert_nothing_applied(world: &World, stack: &Stack) {
    let name = stack.name_any();
    assert_eq!(
        world.labelled_configmaps(&name).await,
        Vec::<String>::new(),
        "objects of {name}"
    );
    let status = stack.status.clone().unwrap_or_default();
    assert_eq!(
        (
            status.version,
            status.digest,
            status.inventory,
            status.history
        ),
        (None, None, vec![], vec![]),
        "status of {name}"
    );
}
