//! `Stack`: a versioned, immutable unit of infrastructure.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::{
    apis::meta::v1::{Condition, LabelSelector},
    util::intstr::IntOrString,
};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub(crate) mod bounded;

/// A versioned unit of infrastructure: a manifest (`resources`) plus an
/// inventory (`parameters`) for one environment. A version is immutable: once
/// applied with one content digest, the same version with other content is
/// refused (bump `spec.version`). Returning to an earlier version with its
/// original content is a rollback.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "strata.dev",
    version = "v1alpha1",
    kind = "Stack",
    namespaced,
    status = "StackStatus",
    shortname = "stk",
    category = "strata",
    doc = "A versioned, immutable unit of infrastructure: Kubernetes resources applied as one unit, parameterised by an inventory.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(
        name = "Applied",
        type_ = "string",
        json_path = ".status.version",
        description = "The version currently applied"
    ),
    printcolumn(
        name = "Consumers",
        type_ = "integer",
        json_path = ".status.consumers.total"
    ),
    printcolumn(
        name = "Adoption",
        type_ = "string",
        json_path = ".status.rollout.phase",
        description = "How consumers adopt the applied version: Progressing, Halted or Complete"
    ),
    printcolumn(
        name = "Step",
        type_ = "string",
        json_path = ".status.rollout.step",
        description = "The adoption step under way"
    ),
    printcolumn(
        name = "Digest",
        type_ = "string",
        json_path = ".status.digest",
        priority = 1
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct StackSpec {
    /// The version of this unit of infrastructure (semver, e.g. 1.4.0). A
    /// version is immutable: change the content, change the version.
    #[x_kube(validation = super::rules::semver())]
    #[schemars(length(max = 128))]
    pub version: String,

    /// The inventory: values for this environment. Every `${name}` in any
    /// string of `resources` or `outputs` is replaced by the value of `name`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 512))]
    pub parameters: BTreeMap<String, String>,

    /// Kubernetes objects applied as one unit with server-side apply. Each
    /// names apiVersion, kind and metadata.name; namespaced objects without a
    /// namespace go to the Stack's namespace.
    #[serde(default, deserialize_with = "bounded::resources")]
    #[schemars(schema_with = "resources_schema")]
    pub resources: Vec<serde_json::Value>,

    /// Values the Stack publishes to its consumers (NetworkFunctions with
    /// `stackOutputs: true` see them as `STACK_<NAME>` environment variables).
    /// Values may use `${parameters}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 256))]
    pub outputs: BTreeMap<String, String>,

    /// A ServiceAccount in the Stack's namespace. When set, every request for
    /// the Stack's resources is made impersonating it, so the Stack can only
    /// create what that ServiceAccount may: a permission boundary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = super::rules::dns_subdomain())]
    #[schemars(length(max = 253))]
    pub service_account_name: Option<String>,

    /// Delete objects that were dropped from `resources` (default true).
    #[serde(default = "default_true")]
    pub prune: bool,

    /// Stop reconciling this Stack; applied objects are left as they are.
    #[serde(default)]
    pub suspend: bool,

    /// How consumers adopt a new version of this Stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_rollout: Option<ConsumerRollout>,

    /// How many applied versions `status.history` remembers (1-100, default 10).
    #[serde(default = "default_history_limit")]
    #[schemars(range(min = 1, max = 100))]
    pub history_limit: i32,
}

fn default_true() -> bool {
    true
}

pub(crate) fn default_history_limit() -> i32 {
    10
}

/// Staged adoption of a new Stack version by its consumers: in waves
/// (`steps`), at most `maxConcurrent` at a time, halting when more than
/// `maxFailures` consumers fail on the new version.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerRollout {
    /// How many consumers may move to a new version at once: an integer
    /// (at least 1) or a percentage of the consumers ("1%"-"100%", rounded up).
    /// Default "25%". Within a step, a percentage is of the step's consumers.
    #[serde(default = "default_max_concurrent")]
    #[x_kube(validation = super::rules::max_concurrent())]
    pub max_concurrent: IntOrString,

    /// How many consumers may fail to adopt the new version (their rollout
    /// onto it ends Failed) before adoption halts: an integer (0 or more) or
    /// a percentage of the consumers ("0%"-"100%", rounded down). Default 0:
    /// the first failure halts. A halted adoption moves no further consumer;
    /// it resumes when the failed consumers become Ready on the new version,
    /// or when the Stack's spec changes (a fix-forward version or a rollback).
    #[serde(default = "default_max_failures")]
    #[x_kube(validation = super::rules::max_failures())]
    pub max_failures: IntOrString,

    /// Waves, in order. Each consumer joins the first step whose selector
    /// matches its labels; a step starts only when every consumer of the
    /// earlier steps runs the new version and is Ready. The last step may
    /// have no selector: every consumer not in an earlier step. Consumers
    /// that match no step move after the last one. Empty: one wave of all.
    /// At most 5 steps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    #[x_kube(validation = kube::core::Rule::new("self.all(s, self.exists_one(t, t.name == s.name))").message(kube::core::cel::Message::Message("step names must be unique".into())))]
    #[x_kube(validation = kube::core::Rule::new("self.all(s, has(s.selector) || s.name == self[size(self) - 1].name)").message(kube::core::cel::Message::Message("only the last step may have no selector".into())))]
    pub steps: Vec<RolloutStep>,
}

impl Default for ConsumerRollout {
    fn default() -> Self {
        Self {
            max_concurrent: default_max_concurrent(),
            max_failures: default_max_failures(),
            steps: Vec::new(),
        }
    }
}

fn default_max_concurrent() -> IntOrString {
    IntOrString::String("25%".into())
}

fn default_max_failures() -> IntOrString {
    IntOrString::Int(0)
}

/// One wave of consumers adopting a new Stack version.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStep {
    /// The step's name (a DNS label), as `status.rollout.step` shows it.
    #[x_kube(validation = super::rules::dns_label())]
    #[schemars(length(min = 1, max = 63))]
    pub name: String,

    /// The consumers of this step, by the labels of their NetworkFunction.
    /// Omitted: every consumer not in an earlier step (last step only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,

    /// How many of this step's consumers move at once, as
    /// `consumerRollout.maxConcurrent` (a percentage is of this step's
    /// consumers). Default: `consumerRollout.maxConcurrent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = super::rules::max_concurrent())]
    pub max_concurrent: Option<IntOrString>,
}

/// The schema of `spec.resources`: Kubernetes objects of any kind, with the
/// identifying fields required so that a malformed entry is refused at admission.
fn resources_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "maxItems": 500,
        "items": {
            "type": "object",
            "description": "A Kubernetes object, as it would appear in a manifest.",
            "x-kubernetes-preserve-unknown-fields": true,
            "required": ["apiVersion", "kind", "metadata"],
            "properties": {
                "apiVersion": {"type": "string", "minLength": 1, "description": "The object's API version, e.g. v1 or networking.k8s.io/v1."},
                "kind": {"type": "string", "minLength": 1, "description": "The object's kind, e.g. ConfigMap."},
                "metadata": {
                    "type": "object",
                    "description": "The object's metadata; name is required.",
                    "x-kubernetes-preserve-unknown-fields": true,
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": 253},
                        "namespace": {"type": "string", "maxLength": 63}
                    }
                }
            }
        }
    })
}

/// The observed state of a Stack.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StackStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling and Stalled, following kstatus.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The version currently applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The digest (`sha256:...`) of the content currently applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The resolved outputs of the version currently applied.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
    /// Every object this Stack manages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inventory: Vec<ManagedObject>,
    /// Versions applied, newest first, at most `spec.historyLimit`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<AppliedRevision>,
    /// The NetworkFunctions that reference this Stack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers: Option<Consumers>,
    /// How the consumers adopt the version currently applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<AdoptionStatus>,
}

/// The adoption of the applied version by the Stack's consumers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdoptionStatus {
    /// The version being adopted (the one applied).
    pub version: String,
    /// The step under way (its name), while there are steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Progressing, Halted (more failures than `maxFailures`) or Complete.
    pub phase: AdoptionPhase,
    /// Consumers that run the version and are Ready.
    pub adopted: i32,
    /// Consumers yet to move to it, or moving.
    pub pending: i32,
    /// Consumers whose rollout onto the version failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<FailedAdoption>,
}

/// Where an adoption stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AdoptionPhase {
    /// Consumers are moving, or waiting for their turn or step.
    #[default]
    Progressing,
    /// More consumers failed than `maxFailures` allows: none moves further.
    Halted,
    /// Every counted consumer runs the version and is Ready.
    Complete,
}

impl AdoptionPhase {
    /// The phase as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            AdoptionPhase::Progressing => "Progressing",
            AdoptionPhase::Halted => "Halted",
            AdoptionPhase::Complete => "Complete",
        }
    }
}

/// A consumer whose rollout onto the adopted version failed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailedAdoption {
    /// The NetworkFunction.
    pub name: String,
    /// Its DeploymentRecord of the failed rollout.
    pub record: String,
    /// Why it failed, as the function reports it.
    pub reason: String,
}

/// One object managed by a Stack.
#[derive(
    Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct ManagedObject {
    /// API version, e.g. v1.
    pub api_version: String,
    /// Kind, e.g. ConfigMap.
    pub kind: String,
    /// Namespace; empty for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

/// A version of a Stack that was applied, and the digest of its content.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppliedRevision {
    /// The Stack version.
    pub version: String,
    /// The digest of the rendered content of that version.
    pub digest: String,
    /// When the version was first applied (RFC 3339).
    pub applied_at: String,
}

/// The NetworkFunctions that reference a Stack.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Consumers {
    /// How many NetworkFunctions reference this Stack.
    pub total: i32,
    /// How many of them run the version currently applied.
    pub on_current_version: i32,
}
