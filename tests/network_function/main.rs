//! NetworkFunctions end to end, with the real operator binary against the
//! real control plane. Each test has its own namespace and its own operator
//! (watching only that namespace), so the tests run in parallel:
//!
//! - [`provenance`]: a function on a Stack records what it was deployed with
//!   (status, DeploymentRecords, pod template), follows the Stack to a new
//!   satisfying version, holds on an unsatisfying one, keeps its records when
//!   deleted; a tag-only image is reported as unpinned.
//! - [`policies`]: `updatePolicy: Manual` holds the recorded Stack version
//!   until the function's own spec changes; re-applying an earlier spec (a
//!   rollback) is a new rollout with a new record.
//! - [`consumers`]: ten consumers of one Stack adopt a new version at most
//!   `consumerRollout.maxConcurrent` at a time, observed through a watch.
//! - [`dependencies`]: `dependsOn` holds a function back until its dependency
//!   is Ready at a satisfying version; a cycle is Stalled.
//! - [`retention`]: records beyond `STRATA_RECORD_RETENTION` are pruned,
//!   oldest first, also after a restart.
//! - [`steady_state`]: a converged function costs no write request per resync.
//! - [`conflicts`]: edits by other writers to fields Strata manages are
//!   restored once each, without loops or conflicts.
//! - [`waves`]: a Stack version that breaks its consumers halts after the
//!   canary step; a fix-forward version resumes the adoption.

mod children;
mod conflicts;
mod consumers;
mod dependencies;
mod policies;
mod provenance;
mod retention;
mod steady_state;
mod waves;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};
use strata::api::{DeploymentRecord, NetworkFunction, Stack};
use strata_testkit::Operator;
use strata_testkit::{
    TestNamespace, apply_object, client, install_crds, wait_for, wait_for_object,
};

/// How long any one expected state may take to appear.
const DEADLINE: Duration = Duration::from_secs(120);

/// A test's namespace, its operator and the APIs it uses. The operator is
/// declared first so that it is stopped before the namespace is deleted,
/// also when a test panics (fields drop in declaration order).
struct Fixture {
    operator: Operator,
    ns: TestNamespace,
    stacks: Api<Stack>,
    functions: Api<NetworkFunction>,
    records: Api<DeploymentRecord>,
    deployments: Api<Deployment>,
    events: Api<Event>,
}

impl Fixture {
    /// A fresh namespace named after `test`, with the CRDs installed and an
    /// operator (`strata run`) watching it.
    async fn start(test: &str) -> Self {
        Self::start_with(test, &[]).await
    }

    /// Like [`Fixture::start`], with `env` overriding the operator's defaults.
    async fn start_with(test: &str, env: &[(&str, &str)]) -> Self {
        let client = client().await;
        install_crds(&client).await;
        let ns = TestNamespace::create(&client, test).await;
        Self {
            operator: Operator::start_with(ns.name(), env),
            stacks: ns.api(),
            functions: ns.api(),
            records: ns.api(),
            deployments: ns.api(),
            events: ns.api(),
            ns,
        }
    }

    /// The namespace's name.
    fn name(&self) -> &str {
        self.ns.name()
    }

    /// Stops the operator, then deletes the namespace.
    async fn finish(mut self) {
        self.operator.assert_running();
        let Fixture { operator, ns, .. } = self;
        drop(operator);
        ns.cleanup().await;
    }

    /// Server-side applies a Stack (see [`stack()`]).
    async fn apply_stack(&self, name: &str, version: &str, extra: Value) {
        apply_object(&self.stacks, stack(name, version, extra)).await;
    }

    /// Server-side applies a NetworkFunction with `spec`.
    async fn apply_function(&self, name: &str, spec: Value) {
        apply_object(&self.functions, function(name, spec)).await;
    }

    /// Waits until Stack `name` has applied `version` and is Ready at its generation.
    async fn stack_ready(&self, name: &str, version: &str) -> Stack {
        let what = format!("stack {name} Ready at {version}");
        wait_for(DEADLINE, &what, || async {
            let stack = self.stacks.get(name).await.map_err(|e| e.to_string())?;
            let status = stack.status.clone().unwrap_or_default();
            let ready = status.observed_generation == stack.metadata.generation
                && status.version.as_deref() == Some(version)
                && status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
            if ready {
                Ok(stack)
            } else {
                Err(serde_json::to_string(&status).unwrap())
            }
        })
        .await
    }

    /// Waits until function `name` satisfies `done`, showing its status meanwhile.
    async fn function_until(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&NetworkFunction) -> bool,
    ) -> NetworkFunction {
        wait_for_object(&self.functions, name, what, DEADLINE, done).await
    }

    /// Waits until function `name` is Ready at its generation, with a
    /// finished rollout on `stack_version`.
    /// Checks (the API's promise) that the function's Deployment has then
    /// fully rolled out the recorded revision.
    async fn function_ready_on(&self, name: &str, stack_version: &str) -> NetworkFunction {
        let nf = self
            .function_until(
                name,
                &format!("Ready on stack version {stack_version}"),
                |nf| ready_on(nf, stack_version),
            )
            .await;
        self.assert_rolled_out(&nf).await;
        nf
    }

    /// Asserts that the Deployment of a function that reports Ready has
    /// fully rolled out the revision in its `status.deployedWith`: the
    /// Deployment controller saw the template, which carries that revision,
    /// and every desired pod is updated and available.
    async fn assert_rolled_out(&self, nf: &NetworkFunction) {
        let name = nf.name_any();
        let deployed = nf.status.clone().unwrap().deployed_with.unwrap();
        let deployment = self.deployment(&name).await.expect("a Deployment");
        let annotations = deployment
            .spec
            .template
            .metadata
            .clone()
            .and_then(|m| m.annotations)
            .unwrap_or_default();
        let revision = |key: &str| annotations.get(key).map(String::as_str);
        assert_eq!(
            (
                revision("strata.dev/version"),
                revision("strata.dev/stack-version"),
                revision("strata.dev/stack-digest"),
                revision("strata.dev/config-digest"),
            ),
            (
                Some(deployed.version.as_str()),
                Some(deployed.stack.version.as_str()),
                Some(deployed.stack.digest.as_str()),
                Some(deployed.config_digest.as_str()),
            ),
            "{name} is Ready: its Deployment's template must carry the recorded revision"
        );
        let desired = deployment.spec.replicas.unwrap_or(1);
        let status = deployment.status.clone().unwrap_or_default();
        assert!(
            status.observed_generation >= deployment.metadata.generation
                && status.updated_replicas == Some(desired)
                && status.available_replicas.unwrap_or(0) >= desired
                && status.replicas == Some(desired),
            "{name} reports Ready (readyAt {:?}) before its Deployment rolled out \
             (generation {:?}, desired {desired}): {status:?}",
            deployed.ready_at,
            deployment.metadata.generation,
        );
    }

    /// Waits until function `name` has condition `type_` with `reason`,
    /// describing its current generation.
    async fn function_condition(&self, name: &str, type_: &str, reason: &str) -> NetworkFunction {
        self.function_until(name, &format!("{type_} with reason {reason}"), |nf| {
            observed(nf) && condition(nf, type_).is_some_and(|c| c.reason == reason)
        })
        .await
    }

    /// The DeploymentRecords of function `name`, oldest first: in the order
    /// of their `previousRecord` chain (start times have a resolution of a
    /// second, and two rollouts can start within one).
    async fn records_of(&self, name: &str) -> Vec<DeploymentRecord> {
        let selector = format!("strata.dev/network-function={name}");
        let records = self
            .records
            .list(&ListParams::default().labels(&selector))
            .await
            .expect("list DeploymentRecords")
            .items;
        let depth = |record: &DeploymentRecord| {
            let mut depth = 0;
            let mut previous = record.spec.previous_record.clone();
            while let Some(p) = previous.take() {
                let Some(found) = records.iter().find(|r| r.name_any() == p) else {
                    break;
                };
                depth += 1;
                assert!(depth <= records.len(), "records of {name} link in a loop");
                previous = found.spec.previous_record.clone();
            }
            depth
        };
        let mut ordered: Vec<(usize, DeploymentRecord)> =
            records.iter().map(|r| (depth(r), r.clone())).collect();
        ordered.sort_by(|(a, ra), (b, rb)| (a, &ra.spec.started_at).cmp(&(b, &rb.spec.started_at)));
        ordered.into_iter().map(|(_, r)| r).collect()
    }

    /// Waits for an Event of `type_` and `reason` about object `regarding`
    /// that satisfies `note`, and returns every such Event.
    async fn events_about(
        &self,
        regarding: &str,
        type_: &str,
        reason: &str,
        note: impl Fn(&str) -> bool,
    ) -> Vec<Event> {
        let what = format!("a {type_} Event {reason} about {regarding}");
        wait_for(DEADLINE, &what, || async {
            let list = self
                .events
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let (matching, others): (Vec<Event>, Vec<Event>) =
                list.items.into_iter().partition(|e| {
                    e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(regarding)
                        && e.type_.as_deref() == Some(type_)
                        && e.reason.as_deref() == Some(reason)
                        && note(e.note.as_deref().unwrap_or_default())
                });
            if matching.is_empty() {
                let seen: Vec<_> = others
                    .iter()
                    .map(|e| format!("{:?} {:?}: {:?}", e.type_, e.reason, e.note))
                    .collect();
                Err(format!("events: {seen:#?}"))
            } else {
                Ok(matching)
            }
        })
        .await
    }

    /// The Deployment of function `name`, if it exists.
    async fn deployment(&self, name: &str) -> Option<Deployment> {
        self.deployments
            .get_opt(name)
            .await
            .expect("get a Deployment")
    }
}

/// A Stack at `version` whose content carries the version (a ConfigMap
/// `<name>-settings` and an output `release`), so that each version has its
/// own digest; `extra` adds or replaces fields of the spec.
fn stack(name: &str, version: &str, extra: Value) -> Value {
    let mut spec = json!({
        "version": version,
        "resources": [{
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("{name}-settings")},
            "data": {"release": version},
        }],
        "outputs": {"release": version},
    });
    for (key, value) in extra.as_object().into_iter().flatten() {
        spec[key] = value.clone();
    }
    json!({"apiVersion": "strata.dev/v1alpha1", "kind": "Stack", "metadata": {"name": name}, "spec": spec})
}

/// A NetworkFunction with `spec`.
fn function(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "strata.dev/v1alpha1", "kind": "NetworkFunction", "metadata": {"name": name}, "spec": spec})
}

/// An image of `name` pinned by digest.
fn pinned_image(name: &str) -> String {
    format!(
        "registry.example/{name}@sha256:{}",
        "0123456789abcdef".repeat(4)
    )
}

/// Condition `type_` of a function, if present.
fn condition<'a>(nf: &'a NetworkFunction, type_: &str) -> Option<&'a Condition> {
    nf.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// Condition `type_` as (status, reason, message), for comparing with what a user reads.
fn condition_text(nf: &NetworkFunction, type_: &str) -> Option<(String, String, String)> {
    condition(nf, type_).map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// `(status, reason, message)` as owned strings.
fn text(status: &str, reason: &str, message: &str) -> Option<(String, String, String)> {
    Some((status.into(), reason.into(), message.into()))
}

/// Whether the status describes the function's current generation.
fn observed(nf: &NetworkFunction) -> bool {
    nf.status.as_ref().and_then(|s| s.observed_generation) == nf.metadata.generation
}

/// Whether the function is Ready at its generation with a finished rollout
/// on `stack_version`.
fn ready_on(nf: &NetworkFunction, stack_version: &str) -> bool {
    let deployed = nf.status.as_ref().and_then(|s| s.deployed_with.as_ref());
    observed(nf)
        && condition(nf, "Ready").is_some_and(|c| c.status == "True")
        && deployed.is_some_and(|d| d.stack.version == stack_version && d.ready_at.is_some())
}

/// Seconds from RFC 3339 time `from` to `to` (as the operator writes them,
/// to the second).
fn seconds_between(from: &str, to: &str) -> i64 {
    let parse = |t: &str| -> k8s_openapi::jiff::Timestamp {
        t.parse()
            .unwrap_or_else(|e| panic!("{t:?} is not an RFC 3339 time: {e}"))
    };
    (parse(to) - parse(from)).get_seconds()
}

/// Asserts that `later` started promptly after `earlier`, its trigger: the
/// operator reacts to the change, not to a periodic retry. (A function held
/// back on a stale view of what it waits for looks again only after 30
/// seconds, or its resync: 10 seconds here.)
fn assert_prompt(what: &str, earlier: &str, later: &str, within_seconds: i64) {
    let delay = seconds_between(earlier, later);
    assert!(
        (0..=within_seconds).contains(&delay),
        "{what}: {delay}s from {earlier} to {later}, expected 0 to {within_seconds}s"
    );
}
