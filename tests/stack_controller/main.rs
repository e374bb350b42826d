//! The Stack controller, with the real operator binary against the real
//! control plane. Each test has its own namespace and its own operator
//! (`strata run` watching that namespace only), and waits on what a user
//! would look at (conditions, objects, metrics) with a deadline.
//!
//! - [`applying`]: a Stack becomes Ready with its objects substituted,
//!   labelled and owned; pruning; immutable versions; rollback.
//! - [`refusals`]: bad input stops the Stack with the exact reason and
//!   message, and nothing is applied: unknown placeholders, unserved kinds,
//!   objects out of scope, a ServiceAccount's permission boundary.
//! - [`convergence`]: drift is corrected and counted without flipping Ready;
//!   a converged Stack makes no write requests.
//! - [`deletion`]: deletion waits while a NetworkFunction uses the Stack.

mod applying;
mod convergence;
mod deletion;
mod refusals;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use strata::api::{Stack, StackSpec};
use strata::render::stack::render_stack;
use strata_testkit::Operator;
use strata_testkit::{TestNamespace, apply, client, install_crds, wait_for, wait_for_condition};

/// How long anything the operator does may take. Drift is only looked for
/// once per resync interval (10s for the test operator), so this leaves
/// room for several of those.
const DEADLINE: Duration = Duration::from_secs(60);

/// The labels the Stack controller puts on every object it applies.
const LABEL_STACK: &str = "strata.dev/stack";
const LABEL_STACK_VERSION: &str = "strata.dev/stack-version";

/// The test CRD kind: a namespaced `Widget` in `test.strata.dev/v1`,
/// installed cluster-wide once (idempotently) and never removed, since tests
/// in other binaries may use it at the same time.
const WIDGET_API_VERSION: &str = "test.strata.dev/v1";

/// A test's world: a client, its namespace, and an operator watching it.
struct World {
    client: Client,
    ns: TestNamespace,
    operator: Operator,
    stacks: Api<Stack>,
}

impl World {
    /// Installs the CRDs (Strata's and the test Widget), creates a namespace
    /// for `test` and starts the operator for it.
    async fn start(test: &str) -> Self {
        let client = client().await;
        install_crds(&client).await;
        install_widget_crd(&client).await;
        let ns = TestNamespace::create(&client, test).await;
        let operator = Operator::start(ns.name());
        let stacks = ns.api();
        Self {
            client,
            ns,
            operator,
            stacks,
        }
    }

    fn name(&self) -> &str {
        self.ns.name()
    }

    /// Stops the operator (it must still be running: it exits only on
    /// error) and deletes the namespace.
    async fn finish(mut self) {
        self.operator.assert_running();
        drop(self.operator);
        self.ns.cleanup().await;
    }

    /// Applies Stack `name` with `spec` (server-side apply, the tests' field
    /// manager, so a later apply replaces the whole spec).
    async fn apply_stack(&self, name: &str, spec: &Value) {
        apply(&self.stacks, name, stack_manifest(name, spec)).await;
    }

    fn configmaps(&self) -> Api<ConfigMap> {
        self.ns.api()
    }

    /// An `Api` for kind `kind` of `api_version` with `plural`, in the test namespace.
    fn dynamic(&self, api_version: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            self.name(),
            &api_resource(api_version, kind, plural),
        )
    }

    fn widgets(&self) -> Api<DynamicObject> {
        self.dynamic(WIDGET_API_VERSION, "Widget", "widgets")
    }

    /// Waits until Stack `name` has applied `version`: Ready=True for its
    /// current generation, with `status.version` = `version`.
    async fn wait_ready(&self, name: &str, version: &str) -> Stack {
        wait_stack(&self.stacks, name, &format!("Ready at {version}"), |s| {
            is(s, "Ready", "True")
                && s.status.as_ref().and_then(|st| st.version.as_deref()) == Some(version)
        })
        .await
    }

    /// Waits until Stack `name` is Stalled with `reason` for its current
    /// generation, and checks the condition trio a user sees: Stalled=True
    /// and Ready=False with that reason and one message, no Reconciling.
    /// Returns the Stack and the message.
    async fn wait_stalled(&self, name: &str, reason: &str) -> (Stack, String) {
        let stack = wait_stack(&self.stacks, name, &format!("Stalled ({reason})"), |s| {
            condition(s, "Stalled").is_some_and(|c| c.status == "True" && c.reason == reason)
        })
        .await;
        let stalled = condition(&stack, "Stalled").unwrap().clone();
        let ready = condition(&stack, "Ready").expect("a Ready condition");
        assert_eq!(
            (
                ready.status.as_str(),
                ready.reason.as_str(),
                ready.message.as_str()
            ),
            ("False", reason, stalled.message.as_str()),
            "Ready must say the same as Stalled"
        );
        assert!(
            condition(&stack, "Reconciling").is_none(),
            "{:?}",
            stack.status
        );
        (stack, stalled.message)
    }

    /// Waits for a Warning Event about Stack `name` with `reason` and `note`:
    /// what `kubectl describe stack` shows.
    async fn wait_warning(&self, name: &str, reason: &str, note: &str) {
        wait_event(&self.ns.api(), name, "Warning", reason, note).await;
    }

    /// The names of the ConfigMaps in the namespace that carry Stack `name`'s label.
    async fn labelled_configmaps(&self, stack: &str) -> Vec<String> {
        let list = self
            .configmaps()
            .list(&ListParams::default().labels(&format!("{LABEL_STACK}={stack}")))
            .await
            .expect("list ConfigMaps");
        list.items.iter().map(ResourceExt::name_any).collect()
    }
}

/// `{"apiVersion": "strata.dev/v1alpha1", "kind": "Stack", ...}`.
fn stack_manifest(name: &str, spec: &Value) -> Value {
    json!({
        "apiVersion": "strata.dev/v1alpha1",
        "kind": "Stack",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// The digest the operator must report for `spec` (the rendering is unit
/// tested on its own; here it is the reference for what the cluster shows).
fn digest_of(spec: &Value) -> String {
    let spec: StackSpec = serde_json::from_value(spec.clone()).expect("a valid StackSpec");
    render_stack(&spec).expect("a spec that renders").digest
}

fn api_resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

fn condition<'a>(stack: &'a Stack, type_: &str) -> Option<&'a Condition> {
    stack
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Whether `stack` has condition `type_` with `status`.
fn is(stack: &Stack, type_: &str, status: &str) -> bool {
    condition(stack, type_).is_some_and(|c| c.status == status)
}

/// Waits until Stack `name`'s status describes its current generation and
/// `done` holds; shows the status when the deadline passes.
async fn wait_stack(
    stacks: &Api<Stack>,
    name: &str,
    what: &str,
    done: impl Fn(&Stack) -> bool,
) -> Stack {
    let done = &done;
    wait_for(DEADLINE, &format!("stack {name} {what}"), || async move {
        let stack = stacks.get(name).await.map_err(|e| e.to_string())?;
        let observed = stack.status.as_ref().and_then(|s| s.observed_generation);
        if observed == stack.metadata.generation && done(&stack) {
            Ok(stack)
        } else {
            Err(format!(
                "generation {:?}, status {}",
                stack.metadata.generation,
                serde_json::to_string(&stack.status).unwrap()
            ))
        }
    })
    .await
}

/// Waits for an Event of `type_` and `reason` about `regarding` with `note`.
async fn wait_event(events: &Api<Event>, regarding: &str, type_: &str, reason: &str, note: &str) {
    wait_for(
        DEADLINE,
        &format!("a {type_} Event {reason} about {regarding}: {note}"),
        || async {
            let list = events
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let found = list.items.iter().any(|e| {
                e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding)
                    && e.type_.as_deref() == Some(type_)
                    && e.reason.as_deref() == Some(reason)
                    && e.note.as_deref() == Some(note)
            });
            let seen: Vec<_> = list
                .items
                .iter()
                .map(|e| format!("{:?} {:?}: {:?}", e.type_, e.reason, e.note))
                .collect();
            if found {
                Ok(())
            } else {
                Err(format!("events: {seen:#?}"))
            }
        },
    )
    .await;
}

/// Installs the test `Widget` CRD (idempotent: server-side apply with
/// force, safe from several tests at once) and waits until discovery serves it.
async fn install_widget_crd(client: &Client) {
    install_test_crd(client, "test.strata.dev", "Widget", "widgets").await;
}

/// Installs a namespaced CRD `kind` (`plural`) in `group`, version v1, with
/// a free-form spec, and waits until it is Established and discoverable
/// (the operator resolves kinds through discovery).
async fn install_test_crd(client: &Client, group: &str, kind: &str, plural: &str) {
    let name = format!("{plural}.{group}");
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.to_ascii_lowercase(), "listKind": format!("{kind}List")},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                }}},
            }],
        },
    }))
    .expect("a valid CRD");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    apply(&crds, &name, serde_json::to_value(&crd).unwrap()).await;
    wait_for_condition(&crds, &name, "Established", "True", DEADLINE).await;
    let gvk = GroupVersionKind::gvk(group, "v1", kind);
    wait_for(DEADLINE, &format!("discovery to serve {kind}"), || async {
        kube::discovery::pinned_kind(client, &gvk)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
}

/// Deletes a CRD a test installed when dropped, even when the test panics
/// (through kubectl, since a drop cannot wait on the test's runtime).
struct CrdGuard(String);

impl Drop for CrdGuard {
    fn drop(&mut self) {
        let deleted = strata_testkit::kubectl([
            "delete",
            "crd",
            &self.0,
            "--ignore-not-found",
            "--wait=false",
        ]);
        if !deleted.status.success() {
            eprintln!(
                "warning: cannot delete CRD {}: {}",
                self.0,
                String::from_utf8_lossy(&deleted.stderr)
            );
        }
    }
}

/// The labels and owner an object applied for Stack `stack` at `version` must carry.
fn assert_managed_by(object: &impl Resource, stack: &Stack, version: &str) {
    let name = object.meta().name.clone().unwrap_or_default();
    let labels = object.meta().labels.clone().unwrap_or_default();
    assert_eq!(
        (
            labels.get(LABEL_STACK).map(String::as_str),
            labels.get(LABEL_STACK_VERSION).map(String::as_str)
        ),
        (Some(stack.name_any().as_str()), Some(version)),
        "labels of {name}: {labels:?}"
    );
    // The Stack is the controller owner (blockOwnerDeletion is not asked
    // for: setting it can take a permission a Stack's ServiceAccount lacks).
    let owners: Vec<Value> = object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .map(|o| {
            json!({"apiVersion": o.api_version, "kind": o.kind, "name": o.name, "uid": o.uid, "controller": o.controller})
        })
        .collect();
    assert_eq!(
        owners,
        [json!({
            "apiVersion": "strata.dev/v1alpha1",
            "kind": "Stack",
            "name": stack.name_any(),
            "uid": stack.uid().unwrap(),
            "controller": true,
        })],
        "owner references of {name}"
    );
}

/// A ConfigMap's data.
async fn data_of(configmaps: &Api<ConfigMap>, name: &str) -> BTreeMap<String, String> {
    configmaps
        .get(name)
        .await
        .unwrap_or_else(|e| panic!("ConfigMap {name}: {e}"))
        .data
        .unwrap_or_default()
}

/// Waits until ConfigMap `name` has exactly `data`.
async fn wait_data(configmaps: &Api<ConfigMap>, name: &str, data: Value) {
    let want: BTreeMap<String, String> = serde_json::from_value(data).unwrap();
    wait_for(
        DEADLINE,
        &format!("ConfigMap {name} to hold {want:?}"),
        || async {
            let have = configmaps
                .get_opt(name)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("absent")?
                .data
                .unwrap_or_default();
            if have == want {
                Ok(())
            } else {
                Err(format!("{have:?}"))
            }
        },
    )
    .await;
}

/// Waits until object `name` no longer exists.
async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_for(DEADLINE, &format!("{name} to be deleted"), || async {
        match api.get_opt(name).await {
            Ok(None) => Ok(()),
            Ok(Some(o)) => Err(format!(
                "still there (deletionTimestamp {:?})",
                o.meta().deletion_timestamp
            )),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
}

/// Whether object `name` exists.
async fn exists<K>(api: &Api<K>, name: &str) -> bool
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name)
        .await
        .unwrap_or_else(|e| panic!("get {name}: {e}"))
        .is_some()
}

/// The operator's `/metrics` text (it listens on an ephemeral port and logs
/// the address it bound).
async fn operator_metrics(operator: &Operator) -> String {
    let addr = operator.metrics_addr().await;
    assert_ne!(
        addr.port(),
        0,
        "the operator logged its configured address, not the one it bound"
    );
    scrape(&addr.to_string()).unwrap_or_else(|e| panic!("GET http://{addr}/metrics: {e}"))
}

/// `GET /metrics` over plain HTTP/1.1 (a few lines; no HTTP client among the
/// dependencies).
fn scrape(addr: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or("no HTTP header/body separator")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("unexpected response: {head}"));
    }
    Ok(body.to_string())
}

/// The value of sample `name{labels...}` in Prometheus text, when present.
fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        let all = labels
            .iter()
            .all(|(k, v)| label_text.split(',').any(|p| p == format!("{k}=\"{v}\"")));
        all.then(|| value.trim().parse().ok()).flatten()
    })
}

#[test]
fn samples_are_read_by_name_and_labels() {
    let text = "# HELP x y\nstrata_x_total{namespace=\"a\",stack=\"s\"} 2\nstrata_x_total{namespace=\"b\",stack=\"s\"} 5\nstrata_y 7\n";
    assert_eq!(
        sample(text, "strata_x_total", &[("namespace", "b")]),
        Some(5.0)
    );
    assert_eq!(
        sample(
            text,
            "strata_x_total",
            &[("namespace", "a"), ("stack", "s")]
        ),
        Some(2.0)
    );
    assert_eq!(sample(text, "strata_x_total", &[("namespace", "c")]), None);
    assert_eq!(sample(text, "strata_y", &[]), Some(7.0));
}
