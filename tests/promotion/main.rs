//! Promotion gates end to end, with the real operator against the real
//! control plane: a function in `production` rolls out only an artifact
//! (function version and pinned image on a Stack version) that Succeeded
//! in `staging` and ran there for its soak, and its record keeps the
//! evidence.
//!
//! - [`local`]: staging and production are namespaces of one cluster: the
//!   gate opens when the soak ends (not at a resync), a new Stack version
//!   flows staging → production on its own, a later Failed rollout of the
//!   same artifact upstream revokes the verification, an operator killed in
//!   the middle of a soak neither opens the gate early nor forgets the
//!   evidence; a tag-only image is Stalled and a missing kubeConfig Secret
//!   keeps the gate shut.
//! - [`example`]: `examples/promotion/` as shipped does what it says.
//! - [`remote`]: staging is another cluster (a plane of its own with its own
//!   operator), read through a kubeConfig Secret; when its API server stops,
//!   the gate stays shut (`UpstreamUnreachable`).

mod example;
mod local;
mod remote;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use strata::api::{DeploymentRecord, NetworkFunction, Outcome, Stack};
use strata_testkit::{TestNamespace, apply_object, wait_for, wait_for_object};

/// How long any one expected state may take to appear.
const DEADLINE: Duration = Duration::from_secs(120);

/// One environment: a namespace with its Stack and functions.
struct Env {
    ns: TestNamespace,
    stacks: Api<Stack>,
    functions: Api<NetworkFunction>,
    records: Api<DeploymentRecord>,
    deployments: Api<Deployment>,
}

impl Env {
    fn new(ns: TestNamespace) -> Self {
        Self {
            stacks: ns.api(),
            functions: ns.api(),
            records: ns.api(),
            deployments: ns.api(),
            ns,
        }
    }

    fn name(&self) -> &str {
        self.ns.name()
    }

    /// Stack `edge` at `version`; `site` is a parameter that differs between
    /// environments, so the digests do too (the artifact is the same).
    async fn apply_stack(&self, version: &str, site: &str) {
        apply_object(
            &self.stacks,
            json!({
                "apiVersion": "strata.dev/v1alpha1", "kind": "Stack", "metadata": {"name": "edge"},
                "spec": {
                    "version": version,
                    "resources": [{"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": "edge-settings"},
                                   "data": {"release": version, "site": site}}],
                    "outputs": {"release": version},
                },
            }),
        )
        .await;
    }

    async fn apply_function(&self, name: &str, spec: Value) {
        apply_object(
            &self.functions,
            json!({"apiVersion": "strata.dev/v1alpha1", "kind": "NetworkFunction",
                   "metadata": {"name": name}, "spec": spec}),
        )
        .await;
    }

    /// Waits until function `name` satisfies `done`, showing its status meanwhile.
    async fn function_until(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&NetworkFunction) -> bool,
    ) -> NetworkFunction {
        let what = format!("{what} (in {})", self.name());
        wait_for_object(&self.functions, name, &what, DEADLINE, done).await
    }

    /// Waits until function `name` is Ready on Stack version `version`.
    async fn ready_on(&self, name: &str, version: &str) -> NetworkFunction {
        self.function_until(name, &format!("Ready on stack {version}"), |nf| {
            ready_on(nf, version)
        })
        .await
    }

    /// Waits until function `name` has `Verified` with `reason`.
    async fn verified(&self, name: &str, reason: &str) -> NetworkFunction {
        self.function_until(name, &format!("Verified reason {reason}"), |nf| {
            condition(nf, "Verified").is_some_and(|c| c.reason == reason) && observed(nf)
        })
        .await
    }

    /// The record of the rollout function `name` runs now.
    async fn current_record(&self, name: &str) -> DeploymentRecord {
        let nf = self.functions.get(name).await.expect("get the function");
        let record = nf.status.unwrap().deployed_with.unwrap().record;
        self.records.get(&record).await.expect("get the record")
    }

    /// Waits until record `name` has `outcome`.
    async fn record_until(&self, name: &str, outcome: Outcome) -> DeploymentRecord {
        let what = format!("record {}/{name} {outcome:?}", self.name());
        wait_for(DEADLINE, &what, || async {
            let record = self.records.get(name).await.map_err(|e| e.to_string())?;
            match &record.status {
                Some(s) if s.outcome == outcome => Ok(record),
                other => Err(format!("{other:?}")),
            }
        })
        .await
    }

    /// How many records function `name` has.
    async fn record_count(&self, name: &str) -> usize {
        let selector = format!("strata.dev/network-function={name}");
        self.records
            .list(&ListParams::default().labels(&selector))
            .await
            .expect("list records")
            .items
            .len()
    }
}

/// The spec of `upf` at `version` (always the same pinned image), with `extra` fields.
fn upf(version: &str, extra: Value) -> Value {
    let mut spec = json!({
        "version": version,
        "image": format!("registry.example/upf@sha256:{}", "0123456789abcdef".repeat(4)),
        "stackRef": {"name": "edge"},
        "progressDeadlineSeconds": 8,
    });
    for (key, value) in extra.as_object().into_iter().flatten() {
        spec[key] = value.clone();
    }
    spec
}

fn condition<'a>(nf: &'a NetworkFunction, type_: &str) -> Option<&'a Condition> {
    nf.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

fn observed(nf: &NetworkFunction) -> bool {
    nf.status
        .as_ref()
        .is_some_and(|s| s.observed_generation == nf.metadata.generation)
}

fn ready_on(nf: &NetworkFunction, version: &str) -> bool {
    let Some(status) = &nf.status else {
        return false;
    };
    observed(nf)
        && condition(nf, "Ready").is_some_and(|c| c.status == "True")
        && status
            .deployed_with
            .as_ref()
            .is_some_and(|d| d.stack.version == version && d.ready_at.is_some())
}

/// The Stack version function `nf` runs.
fn runs_on(nf: &NetworkFunction) -> Option<String> {
    Some(
        nf.status
            .as_ref()?
            .deployed_with
            .as_ref()?
            .stack
            .version
            .clone(),
    )
}

/// Seconds of a Go duration as the records print it (`8s`, `1m2s`).
fn seconds(go: &str) -> f64 {
    strata::api::promotion::parse_duration(go)
        .unwrap_or_else(|e| panic!("{e}"))
        .as_secs_f64()
}
