//! The chart's RBAC grants exactly what the code calls: each entry of the
//! tables below says where in the code the access happens, and the rendered
//! roles must equal the tables, with no wildcard anywhere. (That the grants
//! are also enough is shown by running the operator under them:
//! operator_rbac.rs.)

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::chart::default_values;
use crate::{documents, find, id, render};

/// (API group, resource, verbs).
type Need = (&'static str, &'static str, &'static [&'static str]);

/// What the operator does with its own identity.
const OPERATOR: &[Need] = &[
    // list+watch: Controller::new(Stack) and the NetworkFunction controller's
    // .watches(Stack) (src/runtime/operator.rs). get: a Stack that does not
    // resolve from the cache is read again before a function is held back
    // (src/controllers/function/resolve.rs resolve_stack). patch: adding and
    // removing the finalizer, a merge patch (src/controllers/stack.rs
    // reconcile_stack, finalize).
    ("strata.dev", "stacks", &["get", "list", "watch", "patch"]),
    // apply_status, server-side apply of status (src/controllers/mod.rs),
    // from the Stack controller.
    ("strata.dev", "stacks/status", &["patch"]),
    // list+watch: Controller::new(NetworkFunction) and .watches(NetworkFunction)
    // of the Stack and ServiceChain controllers (src/runtime/operator.rs).
    // get: a hop missing from the cache is read (src/controllers/chain.rs
    // converge), and so is a dependency that blocks a rollout
    // (src/controllers/function/resolve.rs blocking_dependency).
    ("strata.dev", "networkfunctions", &["get", "list", "watch"]),
    ("strata.dev", "networkfunctions/status", &["patch"]),
    // Children carry ownerReferences with blockOwnerDeletion
    // (src/render/function.rs), which the OwnerReferencesPermissionEnforcement
    // admission plugin allows only to those who may update the owner's finalizers.
    ("strata.dev", "networkfunctions/finalizers", &["update"]),
    // list+watch: Controller::new(ServiceChain) and the reflector feeding the
    // NetworkFunction controller (src/runtime/operator.rs).
    ("strata.dev", "servicechains", &["list", "watch"]),
    ("strata.dev", "servicechains/status", &["patch"]),
    // The NetworkPolicies of a chain are owned with blockOwnerDeletion
    // (src/render/chain.rs).
    ("strata.dev", "servicechains/finalizers", &["update"]),
    // src/controllers/function/records.rs: ensure (get, create; get after a
    // 409), conclude (get, then set_outcome patches the record, which has no
    // status subresource), prune (list, delete); upstream.rs: the records a
    // promotion gate reads, listed and watched.
    (
        "strata.dev",
        "deploymentrecords",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    // list+watch: the Deployment reflector (src/runtime/operator.rs).
    // get: a rollout is concluded on a live read (function/mod.rs observe),
    // and apply_if_changed reads the metadata of what the cache lacks.
    // create+patch: server-side apply, which needs create when the object does
    // not exist yet (src/controllers/mod.rs apply_if_changed), from the
    // NetworkFunction controller (function/mod.rs apply_children).
    (
        "apps",
        "deployments",
        &["get", "list", "watch", "create", "patch"],
    ),
    // A NetworkFunction's config ConfigMap and Service: list+watch, their
    // metadata reflectors (src/runtime/operator.rs); get, create, patch:
    // apply_if_changed (function/mod.rs apply_children -> controllers/mod.rs).
    // delete: content-named ConfigMaps that left a function's history
    // (function/configs.rs prune).
    (
        "",
        "configmaps",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    ("", "services", &["get", "list", "watch", "create", "patch"]),
    // A chain's NetworkPolicies: .owns() (list, watch; src/runtime/operator.rs);
    // sync_policies lists them, applies with apply_if_changed (get, create,
    // patch) and deletes stale ones (src/controllers/chain.rs).
    (
        "networking.k8s.io",
        "networkpolicies",
        &["get", "list", "watch", "create", "patch", "delete"],
    ),
    // kube's events Recorder (Context::publish, src/controllers/mod.rs)
    // creates an events.k8s.io/v1 Event and patches it for a repeat.
    ("events.k8s.io", "events", &["create", "patch"]),
];

/// What the operator does for a Stack without spec.serviceAccountName, to
/// each kind of stacks.managedResources (src/controllers/stack.rs converge,
/// finalize): get in needs_apply (drift check), create+patch in apply (a
/// server-side apply, first as a dry run), delete in delete (prune and
/// deletion, first as a dry run).
const STACK_VERBS: &[&str] = &["get", "create", "patch", "delete"];

/// Stacks with spec.serviceAccountName: Context::impersonating
/// (src/controllers/mod.rs) sets that ServiceAccount as the user.
const IMPERSONATION: &[Need] = &[("", "serviceaccounts", &["impersonate"])];

/// Promotion gates that verify upstream in another cluster: the Secret a
/// function names in spec.promotion.requireVerifiedIn[].kubeConfig.secretRef,
/// read by name (src/runtime/kubeconfig.rs client_from_secret, one get_opt).
/// Never listed or watched.
const KUBECONFIG_SECRETS: &[Need] = &[("", "secrets", &["get"])];

/// Leader election (src/runtime/leader.rs): get, create when missing, and
/// replace (an update) to acquire, renew and release; list to read the
/// other shards' Leases after each renewal (src/runtime/shards.rs).
const LEADER_ELECTION: &[Need] = &[(
    "coordination.k8s.io",
    "leases",
    &["get", "list", "create", "update"],
)];

type Grants = BTreeMap<(String, String), BTreeSet<String>>;

fn table(needs: &[Need]) -> Grants {
    let mut grants = Grants::new();
    for (group, resource, verbs) in needs {
        let entry = grants
            .entry((group.to_string(), resource.to_string()))
            .or_default();
        assert!(entry.is_empty(), "{group}/{resource} twice in a table");
        entry.extend(verbs.iter().map(|v| v.to_string()));
    }
    grants
}

fn strings(value: &Value, what: &str, role: &str) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{role}: a rule without {what}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

/// The grants of a rendered Role or ClusterRole, failing on any wildcard,
/// resourceNames or nonResourceURLs (none is needed).
fn grants_of(role: &Value) -> Grants {
    let name = id(role);
    let mut grants = Grants::new();
    for rule in role["rules"].as_array().expect("rules") {
        for field in ["resourceNames", "nonResourceURLs"] {
            assert!(rule.get(field).is_none(), "{name}: unexpected {field}");
        }
        let groups = strings(&rule["apiGroups"], "apiGroups", &name);
        let resources = strings(&rule["resources"], "resources", &name);
        let verbs = strings(&rule["verbs"], "verbs", &name);
        for list in [&groups, &resources, &verbs] {
            assert!(
                !list.iter().any(|s| s.contains('*')),
                "{name}: a wildcard in {rule}"
            );
        }
        for group in &groups {
            for resource in &resources {
                grants
                    .entry((group.clone(), resource.clone()))
                    .or_default()
                    .extend(verbs.iter().cloned());
            }
        }
    }
    grants
}

/// The ClusterRole stacks.managedResources turns into, from values.yaml.
fn managed_resources(values: &Value) -> Grants {
    let mut grants = Grants::new();
    for entry in values["stacks"]["managedResources"]
        .as_array()
        .expect("stacks.managedResources")
    {
        let group = entry["apiGroup"].as_str().expect("apiGroup");
        for resource in entry["resources"].as_array().expect("resources") {
            grants.insert(
                (group.to_string(), resource.as_str().unwrap().to_string()),
                STACK_VERBS.iter().map(|v| v.to_string()).collect(),
            );
        }
    }
    grants
}

fn show(grants: &Grants) -> String {
    grants
        .iter()
        .map(|((g, r), v)| format!("  {g:>20} {r:<28} {v:?}\n"))
        .collect()
}

fn assert_grants(role: &Value, expected: &Grants) {
    let granted = grants_of(role);
    assert!(
        &granted == expected,
        "{} grants\n{}but the code needs exactly\n{}",
        id(role),
        show(&granted),
        show(expected)
    );
}

/// The subjects a binding names, and the role it binds.
fn binds(binding: &Value, role_kind: &str, role: &str, namespace: &str) {
    assert_eq!(binding["roleRef"]["kind"], role_kind, "{}", id(binding));
    assert_eq!(binding["roleRef"]["name"], role, "{}", id(binding));
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": "strata", "namespace": namespace}]),
        "{}",
        id(binding)
    );
}

#[test]
fn chart_rbac_grants_exactly_what_the_code_uses() {
    // helm and kubectl come with the plane (`hack/plane env`).
    if !strata_testkit::plane_available() {
        return;
    }
    let objects = documents(&render("strata", "ops", &["leaderElection.enabled=true"]));

    assert_grants(find(&objects, "ClusterRole", "strata"), &table(OPERATOR));
    binds(
        find(&objects, "ClusterRoleBinding", "strata"),
        "ClusterRole",
        "strata",
        "ops",
    );

    let stack_resources = managed_resources(&default_values());
    assert!(
        !stack_resources.is_empty(),
        "the default stacks.managedResources is empty"
    );
    assert_grants(
        find(&objects, "ClusterRole", "strata-stack-resources"),
        &stack_resources,
    );
    binds(
        find(&objects, "ClusterRoleBinding", "strata-stack-resources"),
        "ClusterRole",
        "strata-stack-resources",
        "ops",
    );

    assert_grants(
        find(&objects, "ClusterRole", "strata-stack-impersonation"),
        &table(IMPERSONATION),
    );
    binds(
        find(&objects, "ClusterRoleBinding", "strata-stack-impersonation"),
        "ClusterRole",
        "strata-stack-impersonation",
        "ops",
    );

    assert_grants(
        find(&objects, "ClusterRole", "strata-kubeconfig-secrets"),
        &table(KUBECONFIG_SECRETS),
    );
    binds(
        find(&objects, "ClusterRoleBinding", "strata-kubeconfig-secrets"),
        "ClusterRole",
        "strata-kubeconfig-secrets",
        "ops",
    );

    let lease_role = find(&objects, "Role", "strata-leader-election");
    assert_eq!(lease_role["metadata"]["namespace"], "ops");
    assert_grants(lease_role, &table(LEADER_ELECTION));
    let lease_binding = find(&objects, "RoleBinding", "strata-leader-election");
    assert_eq!(lease_binding["metadata"]["namespace"], "ops");
    binds(lease_binding, "Role", "strata-leader-election", "ops");

    // Nothing else grants anything.
    let roles: BTreeSet<String> = objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
        .map(id)
        .collect();
    let expected: BTreeSet<String> = [
        "ClusterRole/strata",
        "ClusterRole/strata-stack-resources",
        "ClusterRole/strata-stack-impersonation",
        "ClusterRole/strata-kubeconfig-secrets",
        "Role/strata-leader-election",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(roles, expected);
}

#[test]
fn impersonation_is_granted_only_when_enabled() {
    // helm and kubectl come with the plane (`hack/plane env`).
    if !strata_testkit::plane_available() {
        return;
    }
    let objects = documents(&render("strata", "ops", &["stacks.impersonation=false"]));
    assert!(
        objects
            .iter()
            .all(|o| !id(o).contains("stack-impersonation")),
        "impersonation is still granted"
    );
    for object in objects.iter().filter(|o| o["kind"] == "ClusterRole") {
        assert!(
            !grants_of(object)
                .values()
                .any(|verbs| verbs.contains("impersonate")),
            "{} grants impersonate",
            id(object)
        );
    }
}
