//! Permission boundaries of Stacks, with the real operator against the real
//! control plane. What `tests/stack_controller/refusals.rs` already shows
//! (another namespace and cluster-scoped objects refused as `OutOfScope` by
//! default; a ServiceAccount allowed ConfigMaps but not Secrets) is not
//! repeated here.
//!
//! - With `STRATA_ALLOW_CROSS_NAMESPACE=true` a Stack may reach other
//!   namespaces and cluster-scoped objects, and prunes them; a Stack applied
//!   as a ServiceAccount still gets only what that ServiceAccount may, in
//!   every namespace its resources name.
//! - Impersonation cannot be bypassed: a ServiceAccount with no rights, or
//!   one that does not exist, applies nothing, not even what the operator
//!   itself could create. With `STRATA_DEFAULT_SERVICE_ACCOUNT`, a Stack that
//!   names no ServiceAccount is applied as that one, not as the operator. An inventory entry forged into a Stack's status
//!   does not make the operator delete outside the Stack's namespace.
//! - Secret values (a random sentinel, as written and base64) never appear in
//!   the operator's debug log, in Events or in any status: on success, drift
//!   correction, and when a Secret is out of scope, forbidden, or invalid
//!   (wrong type, bad base64, a bad placeholder).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role, RoleBinding};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, Resource};
use serde_json::{Value, json};
use strata::api::Stack;
use strata_testkit::{Operator, TestNamespace, apply_object, client, install_crds, wait_for};

/// How long any one expected state may take to appear.
const DEADLINE: Duration = Duration::from_secs(45);

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
}

fn stack(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "strata.dev/v1alpha1", "kind": "Stack", "metadata": {"name": name}, "spec": spec})
}

async fn exists<K>(api: &Api<K>, name: &str) -> bool
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.expect("get").is_some()
}

/// Waits until Stack `name` has a condition for its generation: `Ready`
/// True (`reason` None) or `Stalled` True with `reason`; returns the Stack
/// and the condition's message.
async fn wait_stack(stacks: &Api<Stack>, name: &str, reason: Option<&str>) -> (Stack, String) {
    let (type_, what) = match reason {
        None => ("Ready", "Ready".to_string()),
        Some(reason) => ("Stalled", format!("Stalled ({reason})")),
    };
    wait_for(DEADLINE, &format!("stack {name} {what}"), || async {
        let stack = stacks.get(name).await.map_err(|e| e.to_string())?;
        let status = stack.status.clone().unwrap_or_default();
        let found = status.conditions.iter().find(|c| {
            c.type_ == type_
                && c.status == "True"
                && c.observed_generation == stack.metadata.generation
                && reason.is_none_or(|r| c.reason == r)
        });
        match found {
            Some(c) => Ok((stack.clone(), c.message.clone())),
            None => Err(serde_json::to_string(&status.conditions).unwrap()),
        }
    })
    .await
}

/// Asserts that Stack `stack` applied nothing: no applied version, no
/// inventory, and none of `objects` (ConfigMaps in the Stack's namespace) exist.
async fn assert_nothing_applied(stack: &Stack, configmaps: &Api<ConfigMap>, objects: &[&str]) {
    let status = stack.status.clone().unwrap_or_default();
    assert_eq!(
        (status.version, status.inventory),
        (None, vec![]),
        "{:?}",
        stack.metadata.name
    );
    for name in objects {
        assert!(!exists(configmaps, name).await, "ConfigMap {name} exists");
    }
}

/// A ServiceAccount `name` in `ns` with a Role of `rules` bound to it (no
/// Role when `rules` is None).
async fn service_account(client: &Client, ns: &str, name: &str, rules: Option<Value>) {
    apply_object(
        &Api::<ServiceAccount>::namespaced(client.clone(), ns),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}),
    )
    .await;
    if let Some(rules) = rules {
        grant(client, ns, ns, name, rules).await;
    }
}

/// Grants ServiceAccount `sa_ns/name` a Role of `rules` in namespace `ns`.
async fn grant(client: &Client, ns: &str, sa_ns: &str, name: &str, rules: Value) {
    apply_object(
        &Api::<Role>::namespaced(client.clone(), ns),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name}, "rules": rules}),
    )
    .await;
    apply_object(
        &Api::<RoleBinding>::namespaced(client.clone(), ns),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": sa_ns}]}),
    )
    .await;
}

fn all_verbs_on(resources: &[&str]) -> Value {
    json!([{"apiGroups": [""], "resources": resources,
        "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"]}])
}

/// Deletes the test's ClusterRole when dropped, also when the test panics
/// (with kubectl: a client belongs to the test's runtime, which a Drop
/// cannot wait on).
struct ClusterRoleGuard(String);

impl Drop for ClusterRoleGuard {
    fn drop(&mut self) {
        strata_testkit::kubectl(["delete", "clusterrole", &self.0, "--ignore-not-found"]);
    }
}

fn cluster_role(name: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]})
}

#[tokio::test]
async fn an_operator_allowing_more_scope_still_keeps_each_service_account_in_its_bounds() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "boundaries-cross").await;
    let other = TestNamespace::create(&client, "boundaries-cross-other").await;
    let (name, elsewhere) = (ns.name().to_string(), other.name().to_string());
    let role_name = format!("{name}-reader");
    let _guard = ClusterRoleGuard(role_name.clone());
    let mut operator = Operator::start_with(&name, &[("STRATA_ALLOW_CROSS_NAMESPACE", "true")]);
    let stacks: Api<Stack> = ns.api();
    let local: Api<ConfigMap> = ns.api();
    let remote: Api<ConfigMap> = other.api();
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());

    // The operator's own identity: another namespace and a cluster-scoped
    // object are applied, labelled, not owned (owners are namespaced), and
    // pruned when dropped.
    let mut remote_cm = configmap("remote");
    remote_cm["metadata"]["namespace"] = json!(elsewhere);
    apply_object(
        &stacks,
        stack(
            "reach",
            json!({"version": "1.0.0", "resources": [configmap("local"), remote_cm, cluster_role(&role_name)]}),
        ),
    )
    .await;
    let (ready, _) = wait_stack(&stacks, "reach", None).await;
    assert_eq!(ready.status.unwrap().inventory.len(), 3);
    let applied = remote.get("remote").await.unwrap();
    assert_eq!(
        applied.metadata.labels.unwrap_or_default()["strata.dev/stack"],
        "reach"
    );
    assert!(applied.metadata.owner_references.is_none());
    assert!(exists(&cluster_roles, &role_name).await);
    assert!(exists(&local, "local").await);
    apply_object(
        &stacks,
        stack(
            "reach",
            json!({"version": "1.0.1", "resources": [configmap("local")]}),
        ),
    )
    .await;
    wait_for(DEADLINE, "the remote objects pruned", || async {
        let left = (
            exists(&remote, "remote").await,
            exists(&cluster_roles, &role_name).await,
        );
        (left == (false, false))
            .then_some(())
            .ok_or(format!("{left:?}"))
    })
    .await;

    // A ServiceAccount with every right on ConfigMaps in the Stack's
    // namespace, none elsewhere: a resource that sets its own namespace, or
    // is cluster-scoped, is Forbidden, and nothing is applied.
    service_account(
        &client,
        &name,
        "deployer",
        Some(all_verbs_on(&["configmaps"])),
    )
    .await;
    let mut escape = configmap("escape");
    escape["metadata"]["namespace"] = json!(elsewhere);
    apply_object(
        &stacks,
        stack(
            "escape-namespace",
            json!({"version": "1.0.0", "serviceAccountName": "deployer",
                "resources": [configmap("first"), escape]}),
        ),
    )
    .await;
    apply_object(
        &stacks,
        stack(
            "escape-cluster",
            json!({"version": "1.0.0", "serviceAccountName": "deployer",
                "resources": [configmap("second"), cluster_role(&role_name)]}),
        ),
    )
    .await;
    let (refused, message) = wait_stack(&stacks, "escape-namespace", Some("Forbidden")).await;
    assert_eq!(
        message,
        format!(
            "ServiceAccount {name}/deployer may not patch ConfigMap {elsewhere}/escape; grant it that permission or remove the resource from spec.resources"
        )
    );
    assert_nothing_applied(&refused, &local, &["first"]).await;
    assert!(!exists(&remote, "escape").await);
    let (refused, message) = wait_stack(&stacks, "escape-cluster", Some("Forbidden")).await;
    assert_eq!(
        message,
        format!(
            "ServiceAccount {name}/deployer may not patch ClusterRole {role_name}; grant it that permission or remove the resource from spec.resources"
        )
    );
    assert_nothing_applied(&refused, &local, &["second"]).await;
    assert!(!exists(&cluster_roles, &role_name).await);

    // Granting it the other namespace, as the message says, is enough.
    grant(
        &client,
        &elsewhere,
        &name,
        "deployer",
        all_verbs_on(&["configmaps"]),
    )
    .await;
    wait_stack(&stacks, "escape-namespace", None).await;
    assert!(exists(&remote, "escape").await);

    operator.assert_running();
    assert!(!operator.logs().contains("panicked"));
    drop(operator);
    ns.cleanup().await;
    other.cleanup().await;
}

#[tokio::test]
async fn impersonation_cannot_be_bypassed() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "boundaries-impersonation").await;
    let other = TestNamespace::create(&client, "boundaries-impersonation-other").await;
    let (name, elsewhere) = (ns.name().to_string(), other.name().to_string());
    let role_name = format!("{name}-victim");
    let _guard = ClusterRoleGuard(role_name.clone());
    let stacks: Api<Stack> = ns.api();
    let local: Api<ConfigMap> = ns.api();
    let remote: Api<ConfigMap> = other.api();
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());

    // Before the operator runs: a Stack whose status inventory is forged
    // (by whoever may write stacks/status) to name objects outside its
    // namespace, which the Stack does not declare: pruning must not delete
    // them.
    apply_object(&remote, configmap("victim")).await;
    apply_object(&cluster_roles, cluster_role(&role_name)).await;
    apply_object(
        &stacks,
        stack(
            "forged",
            json!({"version": "1.0.0", "resources": [configmap("declared")]}),
        ),
    )
    .await;
    let forged = json!({"apiVersion": "strata.dev/v1alpha1", "kind": "Stack", "status": {"inventory": [
        {"apiVersion": "v1", "kind": "ConfigMap", "namespace": elsewhere, "name": "victim"},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "name": role_name},
    ]}});
    stacks
        .patch_status(
            "forged",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(&forged),
        )
        .await
        .unwrap();

    let mut operator = Operator::start(&name);
    service_account(&client, &name, "nobody", None).await;
    for (stack_name, sa) in [("as-nobody", "nobody"), ("as-ghost", "ghost")] {
        apply_object(
            &stacks,
            stack(
                stack_name,
                json!({"version": "1.0.0", "serviceAccountName": sa,
                    "resources": [configmap(&format!("{stack_name}-settings"))]}),
            ),
        )
        .await;
    }

    // No rights, or no such ServiceAccount: Forbidden, nothing applied,
    // although the operator itself may create ConfigMaps here.
    for (stack_name, sa) in [("as-nobody", "nobody"), ("as-ghost", "ghost")] {
        let (refused, message) = wait_stack(&stacks, stack_name, Some("Forbidden")).await;
        assert_eq!(
            message,
            format!(
                "ServiceAccount {name}/{sa} may not patch ConfigMap {name}/{stack_name}-settings; grant it that permission or remove the resource from spec.resources"
            )
        );
        assert_nothing_applied(&refused, &local, &[&format!("{stack_name}-settings")]).await;
    }

    let (ready, _) = wait_stack(&stacks, "forged", None).await;
    assert_eq!(
        ready.status.unwrap().inventory.len(),
        1,
        "the forged entries are dropped"
    );
    assert!(exists(&local, "declared").await);
    assert!(
        exists(&remote, "victim").await,
        "a ConfigMap in another namespace was deleted"
    );
    assert!(
        exists(&cluster_roles, &role_name).await,
        "a ClusterRole was deleted"
    );
    assert!(
        operator
            .logs()
            .contains("not deleting an inventory entry outside the Stack's namespace")
    );

    operator.assert_running();
    assert!(!operator.logs().contains("panicked"));
    drop(operator);
    ns.cleanup().await;
    other.cleanup().await;
}

/// With `STRATA_DEFAULT_SERVICE_ACCOUNT`, a Stack that names no
/// ServiceAccount is applied as the default one of its namespace, never as
/// the operator: it gets only what that ServiceAccount may, although the
/// operator itself could create the rest. A Stack that names its own
/// ServiceAccount is applied as that one.
#[tokio::test]
async fn stacks_naming_no_service_account_are_applied_as_the_default_one() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "boundaries-default-sa").await;
    let name = ns.name().to_string();
    let stacks: Api<Stack> = ns.api();
    let configmaps: Api<ConfigMap> = ns.api();
    let secrets: Api<Secret> = ns.api();
    service_account(
        &client,
        &name,
        "stack-deployer",
        Some(all_verbs_on(&["configmaps"])),
    )
    .await;
    service_account(
        &client,
        &name,
        "secret-deployer",
        Some(all_verbs_on(&["configmaps", "secrets"])),
    )
    .await;
    let mut operator = Operator::start_with(
        &name,
        &[("STRATA_DEFAULT_SERVICE_ACCOUNT", "stack-deployer")],
    );
    let token = json!({"stringData": {"token": "not-a-real-token"}});
    for (stack_name, spec) in [
        (
            "settings",
            json!({"version": "1.0.0", "resources": [configmap("settings")]}),
        ),
        (
            "with-secret",
            json!({"version": "1.0.0",
                "resources": [configmap("with-secret-settings"), secret("with-secret-token", token.clone())]}),
        ),
        (
            "own-account",
            json!({"version": "1.0.0", "serviceAccountName": "secret-deployer",
                "resources": [configmap("own-settings"), secret("own-token", token.clone())]}),
        ),
    ] {
        apply_object(&stacks, stack(stack_name, spec)).await;
    }

    let (refused, message) = wait_stack(&stacks, "with-secret", Some("Forbidden")).await;
    assert_eq!(
        message,
        format!(
            "ServiceAccount {name}/stack-deployer may not patch Secret {name}/with-secret-token; grant it that permission or remove the resource from spec.resources"
        )
    );
    assert_nothing_applied(&refused, &configmaps, &["with-secret-settings"]).await;
    assert!(!exists(&secrets, "with-secret-token").await);

    wait_stack(&stacks, "settings", None).await;
    assert!(exists(&configmaps, "settings").await);
    wait_stack(&stacks, "own-account", None).await;
    assert!(exists(&secrets, "own-token").await);

    operator.assert_running();
    drop(operator);
    ns.cleanup().await;
}

/// A random value that appears nowhere unless leaked.
fn sentinel() -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("sntl{:016x}", hasher.finish())
}

fn base64(text: &str) -> String {
    let quoted = serde_json::to_string(&ByteString(text.as_bytes().to_vec())).unwrap();
    quoted.trim_matches('"').to_string()
}

fn secret(name: &str, fields: Value) -> Value {
    let mut secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}});
    secret
        .as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    secret
}

#[tokio::test]
async fn secret_values_never_leak_into_logs_events_or_status() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "boundaries-secrets").await;
    let name = ns.name().to_string();
    let mut operator = Operator::start_with(&name, &[("STRATA_LOG_LEVEL", "debug")]);
    let stacks: Api<Stack> = ns.api();
    let secrets: Api<Secret> = ns.api();
    let value = sentinel();
    let number =
        1_000_000_000_000 + u64::from_str_radix(&value[4..14], 16).unwrap() % 1_000_000_000_000;
    let leaks = [value.clone(), base64(&value), number.to_string()];
    service_account(
        &client,
        &name,
        "configmaps-only",
        Some(all_verbs_on(&["configmaps"])),
    )
    .await;

    let cases = [
        // Success, then drift correction below.
        (
            "applied",
            json!({"version": "1.0.0", "parameters": {"token": value}, "resources": [secret("applied",
                json!({"stringData": {"token": "${token}", "plain": value}, "data": {"encoded": base64(&value)}}))]}),
            None,
        ),
        (
            "out-of-scope",
            json!({"version": "1.0.0", "resources": [{
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": format!("{name}-leak"), "namespace": "default"},
                "stringData": {"token": value}}]}),
            Some("OutOfScope"),
        ),
        (
            "forbidden",
            json!({"version": "1.0.0", "serviceAccountName": "configmaps-only",
                "resources": [secret("forbidden", json!({"stringData": {"token": value}}))]}),
            Some("Forbidden"),
        ),
        // The API server quotes a value of the wrong type: a number where a
        // string belongs. It answers 500, which is not worth retrying either.
        (
            "wrong-type",
            json!({"version": "1.0.0", "resources": [secret("wrong-type",
                json!({"stringData": {"pin": number, "token": value}}))]}),
            Some("InvalidSpec"),
        ),
        (
            "not-base64",
            json!({"version": "1.0.0", "resources": [secret("not-base64",
                json!({"data": {"token": format!("!{value}!")}}))]}),
            Some("InvalidSpec"),
        ),
        (
            "bad-placeholder",
            json!({"version": "1.0.0", "resources": [secret("bad-placeholder",
                json!({"stringData": {"unknown": format!("x${{{value}}}"), "invalid": format!("x${{ {value}}}")}}))]}),
            Some("InvalidSpec"),
        ),
        (
            "invalid-key",
            json!({"version": "1.0.0", "resources": [secret("invalid-key",
                json!({"stringData": {"no/slash": value}}))]}),
            Some("InvalidSpec"),
        ),
    ];
    for (stack_name, spec, _) in &cases {
        apply_object(&stacks, stack(stack_name, spec.clone())).await;
    }
    let mut messages = Vec::new();
    for (stack_name, _, reason) in &cases {
        let (_, message) = wait_stack(&stacks, stack_name, *reason).await;
        messages.push(format!("{stack_name}: {message}"));
    }
    let applied = secrets.get("applied").await.unwrap().data.unwrap();
    for key in ["token", "plain", "encoded"] {
        assert_eq!(applied[key].0, value.as_bytes(), "{key}");
    }
    // The messages still say what is wrong, with the value cut out.
    let message = |stack: &str| {
        messages
            .iter()
            .find(|m| m.starts_with(&format!("{stack}: ")))
            .unwrap()
            .clone()
    };
    assert!(
        message("wrong-type").ends_with(
            ".stringData.pin: expected string, got &value.valueUnstructured{Value:<redacted>}"
        ),
        "{}",
        message("wrong-type")
    );
    assert!(
        message("not-base64").contains("illegal base64 data"),
        "{}",
        message("not-base64")
    );
    assert!(
        message("bad-placeholder").contains(
            "has an invalid placeholder in stringData.invalid; the text is not shown because it is in a Secret"
        ),
        "{}",
        message("bad-placeholder")
    );

    // Drift: another writer changes the Secret; the operator restores it
    // (at its next resync, 10 s for the test operator). `data`, because
    // `stringData` is write-only: a change to it cannot be seen as drift.
    let drifted = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "applied"},
        "data": {"encoded": base64("changed")}});
    secrets
        .patch(
            "applied",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(&drifted),
        )
        .await
        .unwrap();
    wait_for(DEADLINE, "the Secret restored", || async {
        let data = secrets.get("applied").await.unwrap().data.unwrap();
        (data["encoded"].0 == value.as_bytes())
            .then_some(())
            .ok_or("not yet")
    })
    .await;

    // Nowhere the operator writes or logs: its debug log (which has lines
    // about every one of these Stacks), every Event, every Stack's status.
    let logs = operator.logs();
    assert!(logs.contains(" DEBUG "), "the operator logs at debug level");
    for (stack_name, _, _) in &cases {
        assert!(
            logs.contains(&format!("name=\"{stack_name}\"")),
            "{stack_name}"
        );
    }
    let events = Api::<Event>::namespaced(client.clone(), &name)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(events.items.len() >= cases.len() - 1, "{events:?}");
    let events = serde_json::to_string(&events).unwrap();
    let statuses: Vec<Value> = stacks
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|s| serde_json::to_value(&s.status).unwrap())
        .collect();
    let statuses = serde_json::to_string(&statuses).unwrap();
    for leak in &leaks {
        for (place, text) in [("log", &logs), ("Events", &events), ("status", &statuses)] {
            assert!(
                !text.contains(leak.as_str()),
                "the secret value {leak} is in the operator's {place}"
            );
        }
    }

    operator.assert_running();
    assert!(!logs.contains("panicked"));
    drop(operator);
    ns.cleanup().await;
}
