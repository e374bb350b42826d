//! GitOps conformance, with the real operator against the real control
//! plane: Strata objects driven into each state are judged by Argo CD's
//! health checks (the Lua of `deploy/argocd/argocd-cm-health.yaml`) and by
//! kstatus (what Flux health checks and `kubectl wait`-style tooling use), and
//! both must agree with Strata's own conditions:
//!
//! | state                                     | Argo CD     | kstatus    |
//! |-------------------------------------------|-------------|------------|
//! | Ready=True at the current generation      | Healthy     | Current    |
//! | Reconciling=True (Ready=False)            | Progressing | InProgress |
//! | spec not yet observed (generation ahead)  | Progressing | InProgress |
//! | Stalled=True                              | Degraded    | Failed     |
//! | Stack adopting (Reconciling, Adopting)    | Progressing | InProgress |
//! | Stack adoption halted (Stalled)           | Degraded    | Failed     |
//! | DeploymentRecord Succeeded / Superseded   | Healthy     | Current    |
//! | DeploymentRecord Progressing              | Progressing | InProgress |
//! | DeploymentRecord Failed                   | Degraded    | Failed     |
//!
//! One known difference: an object no controller has written a status to
//! yet is Progressing for Argo CD but Current for kstatus (its rule for
//! objects without conditions); see [`unobserved_specs_are_progressing`].

mod verdicts;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};
use strata_testkit::Operator;
use strata_testkit::{FIELD_MANAGER, TestNamespace, client, install_crds, wait_for};
use verdicts::{Verdict, argo_health, kstatus};

/// How long any one expected state may take to appear.
const DEADLINE: Duration = Duration::from_secs(120);

/// An image pinned by digest.
fn pinned_image(name: &str) -> String {
    format!(
        "registry.example/{name}@sha256:{}",
        "0123456789abcdef".repeat(4)
    )
}

/// A test's namespace and (once started) its operator. The operator is
/// declared first so that it stops before the namespace goes.
struct World {
    operator: Option<Operator>,
    ns: TestNamespace,
    client: kube::Client,
}

impl World {
    /// A fresh namespace with the CRDs installed; no operator yet.
    async fn new(test: &str) -> Self {
        let client = client().await;
        install_crds(&client).await;
        let ns = TestNamespace::create(&client, test).await;
        Self {
            operator: None,
            ns,
            client,
        }
    }

    /// A fresh namespace with an operator watching it.
    async fn start(test: &str) -> Self {
        let mut world = Self::new(test).await;
        world.start_operator();
        world
    }

    fn start_operator(&mut self) {
        self.operator = Some(Operator::start(self.ns.name()));
    }

    fn api(&self, kind: &str) -> Api<DynamicObject> {
        let gvk = GroupVersionKind::gvk("strata.dev", "v1alpha1", kind);
        let plural = match kind {
            "Stack" => "stacks",
            "NetworkFunction" => "networkfunctions",
            "ServiceChain" => "servicechains",
            "DeploymentRecord" => "deploymentrecords",
            other => panic!("not a Strata kind: {other}"),
        };
        Api::namespaced_with(
            self.client.clone(),
            self.ns.name(),
            &ApiResource::from_gvk_with_plural(&gvk, plural),
        )
    }

    /// Server-side applies a Strata object of `kind` named `name` with `spec`.
    async fn apply(&self, kind: &str, name: &str, spec: Value) {
        let object = json!({
            "apiVersion": "strata.dev/v1alpha1", "kind": kind,
            "metadata": {"name": name}, "spec": spec,
        });
        self.api(kind)
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await
            .unwrap_or_else(|e| panic!("the API server refused {kind} {name}: {e}"));
    }

    /// The object as the API server returns it.
    async fn get(&self, kind: &str, name: &str) -> Value {
        let object = self
            .api(kind)
            .get(name)
            .await
            .unwrap_or_else(|e| panic!("cannot get {kind} {name}: {e}"));
        serde_json::to_value(object).expect("an object serializes")
    }

    /// Waits until `kind` `name` has condition `type_` = `status` with
    /// `reason`, written for its current generation; returns the object.
    async fn wait_condition(
        &self,
        kind: &str,
        name: &str,
        type_: &str,
        status: &str,
        reason: &str,
    ) -> Value {
        let api = self.api(kind);
        let description = format!("{kind} {name} to have {type_}={status} ({reason})");
        wait_for(DEADLINE, &description, || async {
            let object = match api.get_opt(name).await {
                Ok(Some(object)) => serde_json::to_value(object).expect("serializes"),
                Ok(None) => return Err(format!("{name} does not exist")),
                Err(e) => return Err(format!("cannot get {name}: {e}")),
            };
            let caught_up = object.pointer("/status/observedGeneration")
                == object.pointer("/metadata/generation");
            match condition(&object, type_) {
                Some(c)
                    if caught_up
                        && c["status"] == status
                        && c["reason"] == reason
                        && c.get("observedGeneration")
                            .is_none_or(|g| Some(g) == object.pointer("/metadata/generation")) =>
                {
                    Ok(object)
                }
                _ => Err(format!("status = {}", object["status"])),
            }
        })
        .await
    }

    /// Waits until a DeploymentRecord of function `function` at
    /// `function_version` has `outcome`; returns it.
    async fn wait_record(&self, function: &str, function_version: &str, outcome: &str) -> Value {
        let api = self.api("DeploymentRecord");
        let selector = format!("strata.dev/network-function={function}");
        let description =
            format!("a DeploymentRecord of {function} {function_version} with outcome {outcome}");
        wait_for(DEADLINE, &description, || async {
            let records = api
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(|e| format!("cannot list DeploymentRecords: {e}"))?;
            let records: Vec<Value> = records
                .items
                .into_iter()
                .map(|r| serde_json::to_value(r).expect("serializes"))
                .collect();
            records
                .iter()
                .find(|r| {
                    r.pointer("/status/outcome") == Some(&json!(outcome))
                        && r.to_string().contains(&format!("\"{function_version}\""))
                })
                .cloned()
                .ok_or_else(|| {
                    let seen: Vec<String> = records
                        .iter()
                        .map(|r| format!("{} {}", r["metadata"]["name"], r["status"]))
                        .collect();
                    format!("records: {seen:?}")
                })
        })
        .await
    }

    async fn finish(mut self) {
        if let Some(mut operator) = self.operator.take() {
            operator.assert_running();
        }
        self.ns.cleanup().await;
    }
}

/// The `status.conditions[]` entry of `type_`.
fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// The message of condition `type_`.
fn condition_message(object: &Value, type_: &str) -> String {
    condition(object, type_)
        .and_then(|c| c["message"].as_str())
        .unwrap_or_else(|| panic!("no {type_} condition with a message in {object}"))
        .to_string()
}

/// Asserts Argo CD's and kstatus' status for `object` of `kind`, showing the
/// object when they differ; returns both verdicts.
fn assert_verdicts(kind: &str, object: &Value, argo: &str, kstat: &str) -> (Verdict, Verdict) {
    let name = &object["metadata"]["name"];
    let argo_verdict = argo_health(kind, object);
    let kstatus_verdict = kstatus(object);
    assert_eq!(
        (
            argo_verdict.status.as_str(),
            kstatus_verdict.status.as_str()
        ),
        (argo, kstat),
        "{kind} {name}: (Argo CD health, kstatus) disagree with Strata's status\n\
         Argo CD: {argo_verdict:?}\nkstatus: {kstatus_verdict:?}\nobject status: {:#}",
        object["status"]
    );
    (argo_verdict, kstatus_verdict)
}

fn stack_spec(version: &str) -> Value {
    json!({
        "version": version,
        "resources": [{
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings"},
            "data": {"release": version},
        }],
    })
}

fn function_spec(version: &str, stack: &str, depends_on: Value) -> Value {
    json!({
        "version": version,
        "image": pinned_image("nf"),
        "stackRef": {"name": stack},
        "dependsOn": depends_on,
    })
}

/// Ready objects of every kind are Healthy for Argo CD and Current for
/// kstatus; so are the DeploymentRecords of a succeeded and a superseded
/// rollout.
#[tokio::test]
async fn ready_objects_are_healthy_and_current() {
    if !strata_testkit::plane_available() {
        return;
    }
    let t = World::start("gitops-ready").await;
    t.apply("Stack", "base", stack_spec("1.0.0")).await;
    t.apply(
        "NetworkFunction",
        "a",
        function_spec("1.0.0", "base", json!([])),
    )
    .await;
    t.apply(
        "NetworkFunction",
        "b",
        function_spec("1.0.0", "base", json!([])),
    )
    .await;
    t.apply(
        "ServiceChain",
        "c",
        json!({"hops": [
            {"name": "first", "networkFunction": "a"},
            {"name": "second", "networkFunction": "b"},
        ]}),
    )
    .await;

    let stack = t
        .wait_condition("Stack", "base", "Ready", "True", "Applied")
        .await;
    assert_verdicts("Stack", &stack, "Healthy", "Current");
    let nf = t.wait_ready("NetworkFunction", "a").await;
    assert_verdicts("NetworkFunction", &nf, "Healthy", "Current");
    let chain = t.wait_ready("ServiceChain", "c").await;
    assert_verdicts("ServiceChain", &chain, "Healthy", "Current");
    let first = t.wait_record("a", "1.0.0", "Succeeded").await;
    let (argo, _) = assert_verdicts("DeploymentRecord", &first, "Healthy", "Current");
    assert_eq!(argo.message, "Rollout Succeeded");

    // A new release supersedes the first record.
    t.apply(
        "NetworkFunction",
        "a",
        function_spec("1.1.0", "base", json!([])),
    )
    .await;
    t.wait_record("a", "1.1.0", "Succeeded").await;
    let superseded = t.wait_record("a", "1.0.0", "Superseded").await;
    let (argo, _) = assert_verdicts("DeploymentRecord", &superseded, "Healthy", "Current");
    assert_eq!(argo.message, "Rollout Superseded");
    t.finish().await;
}

impl World {
    /// Waits until `kind` `name` is Ready=True for its current generation,
    /// whatever the reason.
    async fn wait_ready(&self, kind: &str, name: &str) -> Value {
        let api = self.api(kind);
        let description = format!("{kind} {name} to be Ready");
        wait_for(DEADLINE, &description, || async {
            let object = match api.get_opt(name).await {
                Ok(Some(object)) => serde_json::to_value(object).expect("serializes"),
                Ok(None) => return Err(format!("{name} does not exist")),
                Err(e) => return Err(format!("cannot get {name}: {e}")),
            };
            let caught_up = object.pointer("/status/observedGeneration")
                == object.pointer("/metadata/generation");
            match condition(&object, "Ready") {
                Some(c) if caught_up && c["status"] == "True" => Ok(object),
                _ => Err(format!("status = {}", object["status"])),
            }
        })
        .await
    }
}

/// Work in progress (a function whose Stack does not exist, a chain whose
/// hop is not Ready) is Progressing for Argo CD and InProgress for kstatus.
#[tokio::test]
async fn objects_in_progress_are_progressing_and_in_progress() {
    if !strata_testkit::plane_available() {
        return;
    }
    let t = World::start("gitops-in-progress").await;
    t.apply(
        "NetworkFunction",
        "orphan",
        function_spec("1.0.0", "missing", json!([])),
    )
    .await;
    t.apply(
        "ServiceChain",
        "c",
        json!({"hops": [
            {"name": "first", "networkFunction": "orphan"},
            {"name": "second", "networkFunction": "orphan"},
        ]}),
    )
    .await;

    let nf = t.wait_until_reconciling("NetworkFunction", "orphan").await;
    let (argo, kstat) = assert_verdicts("NetworkFunction", &nf, "Progressing", "InProgress");
    assert_eq!(argo.message, condition_message(&nf, "Reconciling"));
    assert_eq!(kstat.message, condition_message(&nf, "Reconciling"));

    let chain = t
        .wait_condition("ServiceChain", "c", "Ready", "False", "HopNotReady")
        .await;
    assert_verdicts("ServiceChain", &chain, "Progressing", "InProgress");
    t.finish().await;
}

impl World {
    /// Waits until `kind` `name` is Reconciling=True and Ready=False for its
    /// current generation.
    async fn wait_until_reconciling(&self, kind: &str, name: &str) -> Value {
        let api = self.api(kind);
        let description = format!("{kind} {name} to be Reconciling and not Ready");
        wait_for(DEADLINE, &description, || async {
            let object = match api.get_opt(name).await {
                Ok(Some(object)) => serde_json::to_value(object).expect("serializes"),
                Ok(None) => return Err(format!("{name} does not exist")),
                Err(e) => return Err(format!("cannot get {name}: {e}")),
            };
            let caught_up = object.pointer("/status/observedGeneration")
                == object.pointer("/metadata/generation");
            let reconciling =
                condition(&object, "Reconciling").is_some_and(|c| c["status"] == "True");
            let not_ready = condition(&object, "Ready").is_some_and(|c| c["status"] == "False");
            if caught_up && reconciling && not_ready {
                Ok(object)
            } else {
                Err(format!("status = {}", object["status"]))
            }
        })
        .await
    }
}

/// A spec the operator has not observed yet: Progressing for Argo CD. For a
/// new object without any status kstatus falls back to Current (its rule for
/// resources without conditions); once a status exists, a generation ahead
/// of status.observedGeneration is InProgress.
#[tokio::test]
async fn unobserved_specs_are_progressing() {
    if !strata_testkit::plane_available() {
        return;
    }
    let mut t = World::new("gitops-unobserved").await;
    t.apply("Stack", "base", stack_spec("1.0.0")).await;
    let fresh = t.get("Stack", "base").await;
    assert!(
        fresh
            .get("status")
            .is_none_or(|s| s.get("conditions").is_none())
    );
    let (argo, kstat) = (argo_health("Stack", &fresh), kstatus(&fresh));
    assert_eq!(argo.status, "Progressing", "{argo:?}");
    // kstatus cannot tell "no controller has looked yet" from "a kind
    // without status": both are Current. Flux's `wait: true` therefore
    // relies on the operator writing a status promptly.
    assert_eq!(kstat.status, "Current", "{kstat:?}");

    t.start_operator();
    t.wait_condition("Stack", "base", "Ready", "True", "Applied")
        .await;
    // With the operator stopped, a spec change stays unobserved.
    let mut operator = t.operator.take().expect("started");
    operator.terminate();
    operator.wait_exit(DEADLINE).await;
    drop(operator);
    t.apply("Stack", "base", stack_spec("1.1.0")).await;
    let ahead = t.get("Stack", "base").await;
    assert_ne!(
        ahead.pointer("/status/observedGeneration"),
        ahead.pointer("/metadata/generation")
    );
    assert_verdicts("Stack", &ahead, "Progressing", "InProgress");
    t.finish().await;
}

/// Stalled objects (an unknown placeholder, a dependency cycle) are Degraded
/// for Argo CD and Failed for kstatus, both with the Stalled message.
#[tokio::test]
async fn stalled_objects_are_degraded_and_failed() {
    if !strata_testkit::plane_available() {
        return;
    }
    let t = World::start("gitops-stalled").await;
    t.apply(
        "Stack",
        "broken",
        json!({"version": "1.0.0", "resources": [{
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "broken"},
            "data": {"gateway": "10.0.${subnet}.1"},
        }]}),
    )
    .await;
    t.apply("Stack", "base", stack_spec("1.0.0")).await;
    t.apply(
        "NetworkFunction",
        "x",
        function_spec("1.0.0", "base", json!([{"name": "y"}])),
    )
    .await;
    t.apply(
        "NetworkFunction",
        "y",
        function_spec("1.0.0", "base", json!([{"name": "x"}])),
    )
    .await;

    let stack = t
        .wait_condition("Stack", "broken", "Stalled", "True", "InvalidSpec")
        .await;
    let (argo, kstat) = assert_verdicts("Stack", &stack, "Degraded", "Failed");
    assert_eq!(argo.message, condition_message(&stack, "Stalled"));
    assert_eq!(kstat.message, condition_message(&stack, "Stalled"));

    for name in ["x", "y"] {
        let nf = t
            .wait_condition(
                "NetworkFunction",
                name,
                "Stalled",
                "True",
                "DependencyCycle",
            )
            .await;
        let (argo, kstat) = assert_verdicts("NetworkFunction", &nf, "Degraded", "Failed");
        assert_eq!(argo.message, condition_message(&nf, "Stalled"));
        assert_eq!(kstat.message, condition_message(&nf, "Stalled"));
    }
    t.finish().await;
}

/// A rollout that cannot progress (a ResourceQuota admits no pods) is
/// Progressing / InProgress, for the function and for its DeploymentRecord.
/// When the Deployment reports `ProgressDeadlineExceeded` (written here as
/// the Deployment controller would after `progressDeadlineSeconds`, 600s),
/// the function is Stalled and its record Failed: Degraded / Failed.
#[tokio::test]
async fn rollouts_in_progress_then_failed() {
    if !strata_testkit::plane_available() {
        return;
    }
    let mut t = World::new("gitops-rollout").await;
    let quotas: Api<ResourceQuota> = t.ns.api();
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}},
    }))
    .expect("a ResourceQuota");
    quotas
        .create(&Default::default(), &quota)
        .await
        .expect("create the ResourceQuota");
    t.start_operator();
    t.apply("Stack", "base", stack_spec("1.0.0")).await;
    t.apply(
        "NetworkFunction",
        "stuck",
        function_spec("1.0.0", "base", json!([])),
    )
    .await;

    let nf = t
        .wait_condition(
            "NetworkFunction",
            "stuck",
            "Reconciling",
            "True",
            "RollingOut",
        )
        .await;
    let (argo, _) = assert_verdicts("NetworkFunction", &nf, "Progressing", "InProgress");
    assert_eq!(argo.message, condition_message(&nf, "Reconciling"));
    let record = t.wait_record("stuck", "1.0.0", "Progressing").await;
    assert_verdicts("DeploymentRecord", &record, "Progressing", "InProgress");

    let deployments: Api<Deployment> = t.ns.api();
    let now = strata::controllers::conditions::now_rfc3339();
    deployments
        .patch_status(
            "stuck",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [{
                "type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                "message": "ReplicaSet has timed out progressing.",
                "lastUpdateTime": now, "lastTransitionTime": now,
            }]}})),
        )
        .await
        .expect("patch the Deployment's status");

    let nf = t
        .wait_condition(
            "NetworkFunction",
            "stuck",
            "Stalled",
            "True",
            "RolloutFailed",
        )
        .await;
    let (argo, kstat) = assert_verdicts("NetworkFunction", &nf, "Degraded", "Failed");
    assert_eq!(argo.message, condition_message(&nf, "Stalled"));
    assert_eq!(kstat.message, condition_message(&nf, "Stalled"));
    let record = t.wait_record("stuck", "1.0.0", "Failed").await;
    let (argo, _) = assert_verdicts("DeploymentRecord", &record, "Degraded", "Failed");
    assert_eq!(argo.message, condition_message(&record, "Stalled"));
    t.finish().await;
}

/// A Stack whose consumers adopt its new version is Progressing /
/// InProgress; when the consumer fails on it (no room for the new pod of
/// its rolling update, so it exceeds its 10 s progress deadline), the
/// adoption halts and the Stack is Degraded / Failed, with its message.
#[tokio::test]
async fn adoptions_in_progress_then_halted() {
    if !strata_testkit::plane_available() {
        return;
    }
    let t = World::start("gitops-adoption").await;
    t.apply("Stack", "base", stack_spec("1.0.0")).await;
    let mut spec = function_spec("1.0.0", "base", json!([]));
    spec["progressDeadlineSeconds"] = json!(10);
    t.apply("NetworkFunction", "mover", spec).await;
    t.wait_condition("NetworkFunction", "mover", "Ready", "True", "RolledOut")
        .await;
    let quotas: Api<ResourceQuota> = t.ns.api();
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "no-more-pods"}, "spec": {"hard": {"pods": "1"}},
    }))
    .expect("a ResourceQuota");
    quotas
        .create(&Default::default(), &quota)
        .await
        .expect("create the ResourceQuota");

    t.apply("Stack", "base", stack_spec("1.1.0")).await;
    let stack = t
        .wait_condition("Stack", "base", "Reconciling", "True", "Adopting")
        .await;
    let (argo, _) = assert_verdicts("Stack", &stack, "Progressing", "InProgress");
    assert_eq!(argo.message, condition_message(&stack, "Reconciling"));

    let stack = t
        .wait_condition("Stack", "base", "Stalled", "True", "AdoptionHalted")
        .await;
    let (argo, kstat) = assert_verdicts("Stack", &stack, "Degraded", "Failed");
    assert_eq!(argo.message, condition_message(&stack, "Stalled"));
    assert_eq!(kstat.message, condition_message(&stack, "Stalled"));
    assert!(argo.message.contains("mover (record "), "{}", argo.message);
    t.finish().await;
}

/// The documents of a YAML file under the repository root.
fn yaml_documents(path: &str) -> Vec<serde_yaml::Value> {
    let path = strata_testkit::repo_root().join(path);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            serde::Deserialize::deserialize(d)
                .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
        })
        .collect()
}

/// The Flux and Argo CD manifests sync the top-level `examples/*.yaml` into
/// `telco` with health checks, from a clearly marked placeholder repository;
/// the Argo CD health checks cover every Strata kind.
#[test]
fn gitops_manifests_sync_the_examples_into_telco() {
    let flux = yaml_documents("examples/gitops/flux.yaml");
    let kinds: Vec<_> = flux.iter().map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds, [Some("GitRepository"), Some("Kustomization")]);
    let (source, kustomization) = (&flux[0], &flux[1]);
    assert_eq!(source["apiVersion"], "source.toolkit.fluxcd.io/v1");
    assert!(
        source["spec"]["url"]
            .as_str()
            .unwrap()
            .contains("REPLACE-ME")
    );
    let ignore = source["spec"]["ignore"].as_str().unwrap();
    for excluded in ["/examples/upgrade/", "/examples/gitops/"] {
        assert!(ignore.lines().any(|l| l == excluded), "{ignore}");
    }
    assert_eq!(
        kustomization["apiVersion"],
        "kustomize.toolkit.fluxcd.io/v1"
    );
    let spec = &kustomization["spec"];
    assert_eq!(spec["path"], "./examples");
    assert_eq!(spec["targetNamespace"], "telco");
    assert_eq!(spec["wait"], true);
    assert_eq!(spec["sourceRef"]["name"], source["metadata"]["name"]);

    let argo = yaml_documents("examples/gitops/argocd-application.yaml");
    assert_eq!(argo.len(), 1);
    let spec = &argo[0]["spec"];
    assert_eq!(argo[0]["kind"], "Application");
    assert!(
        spec["source"]["repoURL"]
            .as_str()
            .unwrap()
            .contains("REPLACE-ME")
    );
    assert_eq!(spec["source"]["path"], "examples");
    assert_eq!(spec["source"]["directory"]["recurse"], false);
    assert_eq!(spec["destination"]["namespace"], "telco");

    // kubectl apply -f examples/ would choke on a kustomization.yaml.
    assert!(
        !strata_testkit::repo_root()
            .join("examples/kustomization.yaml")
            .exists()
    );

    let cm = yaml_documents(verdicts::ARGOCD_HEALTH);
    assert_eq!(cm[0]["metadata"]["name"], "argocd-cm");
    for kind in [
        "Stack",
        "NetworkFunction",
        "ServiceChain",
        "DeploymentRecord",
    ] {
        assert!(!verdicts::health_script(kind).is_empty());
    }
}
