//! The declared state, and the checks that the cluster converged to it with
//! nothing duplicated, orphaned or lost:
//!
//! - Stacks: Ready at their declared version; the objects labelled with a
//!   Stack are exactly its inventory, labelled with its current version and
//!   owned by it.
//! - Children: exactly one Deployment and one Service per function, named
//!   after it and controlled by it; every ConfigMap of a function is
//!   `<name>-config-<hash>`, immutable, and holds a configuration one of its
//!   records rolled out, the current one `spec.config`. No other object.
//! - Owners: every Strata-labelled object (Stack resources, children, their
//!   ReplicaSets and Pods) has a living owner.
//! - Digests: each Deployment's pod template carries the version, Stack
//!   version, Stack digest and config digest of `status.deployedWith`, the
//!   digest being the one the Stack applied for that version, and is fully
//!   rolled out.
//! - Records: see [`ledger`].

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::{Resource, ResourceExt};
use strata::api::function::Provenance;
use strata::api::{DeploymentRecord, NetworkFunction, Stack};

use super::list_all;
use strata_testkit::TestNamespace;

mod ledger;

/// Label on every child of a function, and on its records.
const FUNCTION_LABEL: &str = "strata.dev/network-function";
/// Label on every object a Stack applied, and on records.
const STACK_LABEL: &str = "strata.dev/stack";
const STACK_VERSION_LABEL: &str = "strata.dev/stack-version";
/// The kube-controller-manager publishes this one in every namespace.
const ROOT_CA: &str = "kube-root-ca.crt";
/// `status.history` keeps this many entries by default.
const HISTORY_LIMIT: usize = 10;

/// The state the test declared.
pub struct Declared {
    /// Each Stack's version.
    pub stacks: BTreeMap<String, String>,
    /// Each function's spec, as far as it matters here.
    pub functions: BTreeMap<String, DeclaredFunction>,
}

/// What one function declares.
pub struct DeclaredFunction {
    pub stack: String,
    pub version: String,
    pub config: BTreeMap<String, String>,
}

/// What the checks looked at, and what they found wrong.
#[derive(Debug, Default)]
pub struct Report {
    /// Objects checked, by kind.
    pub objects: BTreeMap<&'static str, usize>,
    /// One line per finding.
    pub violations: Vec<String>,
}

/// `Ok` once every Stack is Ready at its declared version and every function
/// Ready, for its current generation, with a finished rollout of its declared
/// version on its Stack's declared version.
pub async fn converged(
    stacks: &Api<Stack>,
    functions: &Api<NetworkFunction>,
    declared: &Declared,
) -> Result<(), String> {
    let stacks = stacks
        .list(&Default::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut waiting = Vec::new();
    for (name, version) in &declared.stacks {
        let stack = stacks.items.iter().find(|s| s.name_any() == *name);
        let status = stack.and_then(|s| s.status.as_ref());
        let done = stack.is_some_and(|s| {
            status.is_some_and(|st| {
                st.observed_generation == s.metadata.generation
                    && st.version.as_deref() == Some(version)
                    && ready(&st.conditions)
            })
        });
        if !done {
            waiting.push(format!("stack {name}: {}", brief(&status)));
        }
    }
    let functions = functions
        .list(&Default::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut pending = 0;
    for (name, want) in &declared.functions {
        let nf = functions.items.iter().find(|f| f.name_any() == *name);
        let status = nf.and_then(|f| f.status.as_ref());
        let stack_version = &declared.stacks[&want.stack];
        let done = nf.is_some_and(|f| {
            status.is_some_and(|st| {
                st.observed_generation == f.metadata.generation
                    && ready(&st.conditions)
                    && st.deployed_with.as_ref().is_some_and(|d| {
                        d.version == want.version
                            && d.stack.version == *stack_version
                            && d.ready_at.is_some()
                    })
            })
        });
        if !done {
            pending += 1;
            if waiting.len() < 3 {
                waiting.push(format!("function {name}: {}", brief(&status)));
            }
        }
    }
    if waiting.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{pending} of {} functions not there yet; {}",
            declared.functions.len(),
            waiting.join("; ")
        ))
    }
}

fn brief<T: serde::Serialize>(status: &T) -> String {
    serde_json::to_string(status).unwrap_or_default()
}

fn ready(conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Everything in the namespace that the checks read.
struct Cluster {
    stacks: Vec<Stack>,
    functions: Vec<NetworkFunction>,
    records: Vec<DeploymentRecord>,
    deployments: Vec<Deployment>,
    replica_sets: Vec<ReplicaSet>,
    pods: Vec<Pod>,
    services: Vec<Service>,
    config_maps: Vec<ConfigMap>,
}

impl Cluster {
    async fn read(ns: &TestNamespace) -> Self {
        Self {
            stacks: list_all(&ns.api(), "Stacks").await,
            functions: list_all(&ns.api(), "NetworkFunctions").await,
            records: list_all(&ns.api(), "DeploymentRecords").await,
            deployments: list_all(&ns.api(), "Deployments").await,
            replica_sets: list_all(&ns.api(), "ReplicaSets").await,
            pods: list_all(&ns.api(), "Pods").await,
            services: list_all(&ns.api(), "Services").await,
            config_maps: list_all(&ns.api(), "ConfigMaps").await,
        }
    }
}

/// Checks the converged state of `ns` against `declared`.
pub async fn check(ns: &TestNamespace, declared: &Declared) -> Report {
    let cluster = Cluster::read(ns).await;
    let objects = BTreeMap::from([
        ("Stack", cluster.stacks.len()),
        ("NetworkFunction", cluster.functions.len()),
        ("DeploymentRecord", cluster.records.len()),
        ("Deployment", cluster.deployments.len()),
        ("ReplicaSet", cluster.replica_sets.len()),
        ("Pod", cluster.pods.len()),
        ("Service", cluster.services.len()),
        ("ConfigMap", cluster.config_maps.len()),
    ]);
    let mut report = Report {
        objects,
        violations: Vec::new(),
    };
    let v = &mut report.violations;
    let applied = check_stacks(&cluster, declared, v);
    check_owners(&cluster, v);
    check_functions(&cluster, declared, &applied, v);
    report
}

/// The digest each Stack applied for each version: `(stack, version) -> digest`.
type Applied = BTreeMap<(String, String), String>;

fn check_stacks(cluster: &Cluster, declared: &Declared, v: &mut Vec<String>) -> Applied {
    let mut applied = Applied::new();
    let names: BTreeSet<String> = cluster.stacks.iter().map(|s| s.name_any()).collect();
    let declared_names: BTreeSet<String> = declared.stacks.keys().cloned().collect();
    if names != declared_names {
        v.push(format!("stacks {names:?}, declared {declared_names:?}"));
    }
    for stack in &cluster.stacks {
        let name = stack.name_any();
        let status = stack.status.clone().unwrap_or_default();
        for revision in &status.history {
            applied.insert(
                (name.clone(), revision.version.clone()),
                revision.digest.clone(),
            );
        }
        let version = status.version.clone().unwrap_or_default();
        if status.digest.is_none()
            || applied.get(&(name.clone(), version.clone())) != status.digest.as_ref()
        {
            v.push(format!(
                "stack {name}: digest {:?} of version {version} is not the one its history records",
                status.digest
            ));
        }
        let inventory: BTreeSet<(String, String)> = status
            .inventory
            .iter()
            .map(|o| (o.kind.clone(), o.name.clone()))
            .collect();
        let labelled: Vec<&ConfigMap> = cluster
            .config_maps
            .iter()
            .filter(|cm| cm.labels().get(STACK_LABEL) == Some(&name))
            .collect();
        let found: BTreeSet<(String, String)> = labelled
            .iter()
            .map(|cm| ("ConfigMap".to_string(), cm.name_any()))
            .collect();
        if found != inventory {
            v.push(format!(
                "stack {name}: objects labelled with it {found:?} are not its inventory {inventory:?}"
            ));
        }
        for cm in labelled {
            if cm.labels().get(STACK_VERSION_LABEL) != Some(&version) {
                v.push(format!(
                    "ConfigMap {} of stack {name} is labelled version {:?}, the stack is at {version}",
                    cm.name_any(),
                    cm.labels().get(STACK_VERSION_LABEL)
                ));
            }
            if !owned_by(cm.meta(), stack.meta()) {
                v.push(format!(
                    "ConfigMap {} is not owned by stack {name}",
                    cm.name_any()
                ));
            }
        }
    }
    applied
}

/// Whether `child` has an owner reference to `owner` (by uid).
fn owned_by(child: &ObjectMeta, owner: &ObjectMeta) -> bool {
    child
        .owner_references
        .iter()
        .flatten()
        .any(|r| Some(&r.uid) == owner.uid.as_ref())
}

/// The object `child` has as controller, by uid.
fn controller_uid(child: &ObjectMeta) -> Option<&str> {
    child
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

fn strata_labelled(meta: &ObjectMeta) -> bool {
    meta.labels.as_ref().is_some_and(|l| {
        l.contains_key(STACK_LABEL)
            || l.contains_key(FUNCTION_LABEL)
            || l.get("app.kubernetes.io/managed-by").map(String::as_str) == Some("strata")
    })
}

/// Every Strata-labelled object except records (which outlive their function
/// by design) has an owner that exists.
fn check_owners(cluster: &Cluster, v: &mut Vec<String>) {
    let living: BTreeSet<&str> = cluster
        .stacks
        .iter()
        .map(|o| o.meta())
        .chain(cluster.functions.iter().map(|o| o.meta()))
        .chain(cluster.deployments.iter().map(|o| o.meta()))
        .chain(cluster.replica_sets.iter().map(|o| o.meta()))
        .filter_map(|m| m.uid.as_deref())
        .collect();
    let children = cluster
        .config_maps
        .iter()
        .map(|o| ("ConfigMap", o.meta()))
        .chain(cluster.deployments.iter().map(|o| ("Deployment", o.meta())))
        .chain(cluster.services.iter().map(|o| ("Service", o.meta())))
        .chain(
            cluster
                .replica_sets
                .iter()
                .map(|o| ("ReplicaSet", o.meta())),
        )
        .chain(cluster.pods.iter().map(|o| ("Pod", o.meta())));
    for (kind, meta) in children.filter(|(_, m)| strata_labelled(m)) {
        let owners: Vec<&str> = meta
            .owner_references
            .iter()
            .flatten()
            .map(|r| r.uid.as_str())
            .collect();
        if !owners.iter().any(|uid| living.contains(uid)) {
            v.push(format!(
                "{kind} {} is orphaned: none of its owners {owners:?} exists",
                meta.name.as_deref().unwrap_or_default()
            ));
        }
    }
}

fn check_functions(cluster: &Cluster, declared: &Declared, applied: &Applied, v: &mut Vec<String>) {
    let names: BTreeSet<String> = cluster.functions.iter().map(|f| f.name_any()).collect();
    let declared_names: BTreeSet<String> = declared.functions.keys().cloned().collect();
    if names != declared_names {
        v.push(format!(
            "{} functions exist, {} declared",
            names.len(),
            declared_names.len()
        ));
    }
    // Children that are no function's own.
    for d in &cluster.deployments {
        if !names.contains(&d.name_any()) {
            v.push(format!(
                "Deployment {} belongs to no function",
                d.name_any()
            ));
        }
    }
    for s in &cluster.services {
        if !names.contains(&s.name_any()) {
            v.push(format!("Service {} belongs to no function", s.name_any()));
        }
    }
    for cm in &cluster.config_maps {
        let labels = cm.labels();
        let known = cm.name_any() == ROOT_CA
            || labels.contains_key(STACK_LABEL)
            || labels
                .get(FUNCTION_LABEL)
                .is_some_and(|f| names.contains(f));
        if !known {
            v.push(format!(
                "ConfigMap {} belongs to no function or stack",
                cm.name_any()
            ));
        }
    }
    for record in &cluster.records {
        let owner = &record.spec.network_function;
        let function = cluster
            .functions
            .iter()
            .find(|f| f.name_any() == owner.name);
        if function.and_then(|f| f.uid()).as_deref() != Some(owner.uid.as_str()) {
            v.push(format!(
                "record {} names function {} ({}), which does not exist",
                record.name_any(),
                owner.name,
                owner.uid
            ));
        }
        let labels = record.labels();
        let expected = [
            (FUNCTION_LABEL, &owner.name),
            (STACK_LABEL, &record.spec.stack.name),
            (STACK_VERSION_LABEL, &record.spec.stack.version),
        ];
        for (key, value) in expected {
            if labels.get(key) != Some(value) {
                v.push(format!(
                    "record {}: label {key} is {:?}, its spec says {value}",
                    record.name_any(),
                    labels.get(key)
                ));
            }
        }
    }
    for nf in &cluster.functions {
        if let Some(want) = declared.functions.get(&nf.name_any()) {
            check_function(cluster, nf, want, &declared.stacks[&want.stack], applied, v);
        }
    }
}

fn check_function(
    cluster: &Cluster,
    nf: &NetworkFunction,
    want: &DeclaredFunction,
    stack_version: &str,
    applied: &Applied,
    v: &mut Vec<String>,
) {
    let name = nf.name_any();
    let status = nf.status.clone().unwrap_or_default();
    let Some(deployed) = status.deployed_with.clone() else {
        v.push(format!("function {name} has no status.deployedWith"));
        return;
    };
    let stack_digest = applied.get(&(want.stack.clone(), stack_version.to_string()));
    if deployed.version != want.version
        || deployed.stack.name != want.stack
        || deployed.stack.version != stack_version
        || Some(&deployed.stack.digest) != stack_digest
    {
        v.push(format!(
            "function {name} is deployed with {} on {} {} ({}); declared {} on {} {stack_version} ({stack_digest:?})",
            deployed.version,
            deployed.stack.name,
            deployed.stack.version,
            deployed.stack.digest,
            want.version,
            want.stack
        ));
    }

    // Exactly one Deployment and Service, controlled by the function.
    let uid = nf.uid().unwrap_or_default();
    let controlled = |meta: &ObjectMeta| controller_uid(meta) == Some(uid.as_str());
    let deployments: Vec<&Deployment> = cluster
        .deployments
        .iter()
        .filter(|d| d.name_any() == name || controlled(d.meta()))
        .collect();
    match deployments.as_slice() {
        [d] if d.name_any() == name && controlled(d.meta()) => {
            check_template(d, &deployed, applied, v)
        }
        other => v.push(format!(
            "function {name} has Deployments {:?}, want exactly one named after it and controlled by it",
            other.iter().map(|d| d.name_any()).collect::<Vec<_>>()
        )),
    }
    let services: Vec<&Service> = cluster
        .services
        .iter()
        .filter(|s| s.name_any() == name || controlled(s.meta()))
        .collect();
    if !matches!(services.as_slice(), [s] if s.name_any() == name && controlled(s.meta())) {
        v.push(format!(
            "function {name} has {} Services, want exactly one named after it and controlled by it",
            services.len()
        ));
    }

    let chain = ledger::check_records(cluster, nf, &deployed, applied, v);
    ledger::check_history(&name, &status.history, &chain, v);
    check_config_maps(cluster, nf, want, &deployed, &chain, v);
    ledger::check_revisions(cluster, &name, &chain, v);
}

/// The pod template carries the deployed revision, whose Stack digest is the
/// one the Stack applied for that version, and it is fully rolled out.
fn check_template(d: &Deployment, deployed: &Provenance, applied: &Applied, v: &mut Vec<String>) {
    let name = d.name_any();
    let annotations = d
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    let got = |key: &str| annotations.get(key).cloned().unwrap_or_default();
    let carried = (
        got("strata.dev/version"),
        got(STACK_LABEL),
        got(STACK_VERSION_LABEL),
        got("strata.dev/stack-digest"),
        got("strata.dev/config-digest"),
    );
    let recorded = (
        deployed.version.clone(),
        deployed.stack.name.clone(),
        deployed.stack.version.clone(),
        deployed.stack.digest.clone(),
        deployed.config_digest.clone(),
    );
    if carried != recorded {
        v.push(format!(
            "Deployment {name}: pod template carries {carried:?}, status.deployedWith says {recorded:?}"
        ));
    }
    let right_digest = applied.get(&(carried.1.clone(), carried.2.clone()));
    if right_digest != Some(&carried.3) {
        v.push(format!(
            "Deployment {name} is deployed on stack {} {} with digest {}, which applied that version with {right_digest:?}",
            carried.1, carried.2, carried.3
        ));
    }
    let desired = d.spec.replicas.unwrap_or(1);
    let s = d.status.clone().unwrap_or_default();
    let rolled_out = s.observed_generation >= d.metadata.generation
        && s.updated_replicas == Some(desired)
        && s.available_replicas == Some(desired)
        && s.replicas == Some(desired);
    if !rolled_out {
        v.push(format!("Deployment {name} has not rolled out: {s:?}"));
    }
}

/// `<name>-config-<hash>`, as the function controller names it.
fn config_map_name(function: &str, config_digest: &str) -> String {
    let hex = config_digest
        .strip_prefix("sha256:")
        .unwrap_or(config_digest);
    format!("{function}-config-{}", hex.get(..10).unwrap_or(hex))
}

fn check_config_maps(
    cluster: &Cluster,
    nf: &NetworkFunction,
    want: &DeclaredFunction,
    deployed: &Provenance,
    chain: &[&DeploymentRecord],
    v: &mut Vec<String>,
) {
    let name = nf.name_any();
    let rolled_out: BTreeSet<String> = chain
        .iter()
        .map(|r| config_map_name(&name, &r.spec.config_digest))
        .collect();
    let mine: Vec<&ConfigMap> = cluster
        .config_maps
        .iter()
        .filter(|cm| cm.labels().get(FUNCTION_LABEL) == Some(&name))
        .collect();
    for cm in &mine {
        let cm_name = cm.name_any();
        if !rolled_out.contains(&cm_name) {
            v.push(format!(
                "ConfigMap {cm_name} of function {name} holds no configuration any of its records rolled out"
            ));
        }
        if cm.immutable != Some(true) || !owned_by(cm.meta(), nf.meta()) {
            v.push(format!(
                "ConfigMap {cm_name} is not immutable and owned by function {name}"
            ));
        }
    }
    let current = config_map_name(&name, &deployed.config_digest);
    match mine.iter().find(|cm| cm.name_any() == current) {
        Some(cm) if cm.data.as_ref() == Some(&want.config) => {}
        Some(cm) => v.push(format!(
            "ConfigMap {current} holds {:?}, function {name} declares {:?}",
            cm.data, want.config
        )),
        None => v.push(format!(
            "function {name}: its current ConfigMap {current} is missing"
        )),
    }
}

/// What must not move once converged: records (and their status), the
/// Deployments' templates, the functions' rollouts and the Stacks' versions.
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot(BTreeMap<String, String>);

impl Snapshot {
    pub async fn take(ns: &TestNamespace) -> Self {
        let cluster = Cluster::read(ns).await;
        let mut seen = BTreeMap::new();
        for r in &cluster.records {
            seen.insert(
                format!("DeploymentRecord {}", r.name_any()),
                r.resource_version().unwrap_or_default(),
            );
        }
        for d in &cluster.deployments {
            seen.insert(
                format!("Deployment {} generation", d.name_any()),
                format!("{:?}", d.metadata.generation),
            );
        }
        for nf in &cluster.functions {
            let deployed = nf.status.as_ref().and_then(|s| s.deployed_with.as_ref());
            seen.insert(
                format!("NetworkFunction {} record", nf.name_any()),
                format!("{:?}", deployed.map(|d| &d.record)),
            );
        }
        for s in &cluster.stacks {
            seen.insert(
                format!("Stack {} version", s.name_any()),
                format!("{:?}", s.status.as_ref().and_then(|st| st.version.clone())),
            );
        }
        Self(seen)
    }

    /// What differs from `later`, one line each.
    pub fn differences(&self, later: &Snapshot) -> Vec<String> {
        let keys: BTreeSet<&String> = self.0.keys().chain(later.0.keys()).collect();
        keys.into_iter()
            .filter(|k| self.0.get(*k) != later.0.get(*k))
            .map(|k| format!("{k}: {:?} -> {:?}", self.0.get(k), later.0.get(k)))
            .collect()
    }
}
