//! `NetworkFunction`: a microservice deployed onto a Stack, with its provenance.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::StackRevisionRef;

/// A microservice or cloud native network function, deployed onto a Stack.
/// It records which Stack version and digest it was deployed with
/// (`status.deployedWith`) and writes a DeploymentRecord for every rollout.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "strata.dev",
    version = "v1alpha1",
    kind = "NetworkFunction",
    namespaced,
    status = "NetworkFunctionStatus",
    shortname = "nf",
    category = "strata",
    doc = "A microservice or cloud native network function deployed onto a Stack, recording the stack version and digest it runs on.",
    validation = kube::core::Rule::new("size(self.metadata.name) <= 52 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message(kube::core::cel::Message::Message("must be a DNS-1035 label of at most 52 characters (lower-case letters, digits and '-', starting with a letter): it names the function's Deployment and Service".into())).field_path(".metadata.name"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(name = "Stack", type_ = "string", json_path = ".status.deployedWith.stack.name"),
    printcolumn(name = "Stack-Version", type_ = "string", json_path = ".status.deployedWith.stack.version"),
    printcolumn(name = "Record", type_ = "string", json_path = ".status.deployedWith.record", priority = 1),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct NetworkFunctionSpec {
    /// The release of this function (semver, e.g. 2.3.1).
    #[x_kube(validation = super::rules::semver())]
    #[schemars(length(max = 128))]
    pub version: String,

    /// The container image: the immutable artifact. Pin it by digest
    /// (`registry/name@sha256:...`); a tag-only image is accepted but reported
    /// as unpinned.
    #[schemars(length(min = 1, max = 1024))]
    pub image: String,

    /// The Stack this function is deployed onto.
    pub stack_ref: StackRef,

    /// Desired number of pods (default 1).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 10000))]
    pub replicas: i32,

    /// Ports the function serves; when set, a Service named after the function exposes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = kube::core::Rule::new("self.all(p, self.exists_one(q, q.name == p.name))").message(kube::core::cel::Message::Message("port names must be unique".into())))]
    #[schemars(length(max = 64))]
    pub ports: Vec<FunctionPort>,

    /// Environment variables of the function's container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub env: Vec<EnvVar>,

    /// Configuration files. They become an immutable ConfigMap named after
    /// their content (`<name>-config-<hash>`), mounted at /etc/strata/config;
    /// a change rolls out new pods, never mutates the running ones.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,

    /// Expose the Stack's outputs as environment variables `STACK_<OUTPUT_NAME>`.
    #[serde(default)]
    pub stack_outputs: bool,

    /// Compute resources of the function's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Other NetworkFunctions in this namespace that must be Ready, at a
    /// satisfying version, before this one is deployed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = kube::core::Rule::new("self.all(d, self.exists_one(e, e.name == d.name))").message(kube::core::cel::Message::Message("dependencies must be unique".into())))]
    #[schemars(length(max = 64))]
    pub depends_on: Vec<Dependency>,

    /// How many earlier deployments `status.history` keeps (1-100, default 10).
    #[serde(default = "super::stack::default_history_limit")]
    #[schemars(range(min = 1, max = 100))]
    pub history_limit: i32,

    /// Stop reconciling this function; running pods are left as they are.
    #[serde(default)]
    pub suspend: bool,

    /// Seconds a rollout may take to make progress before it ends Failed
    /// (its DeploymentRecord `Failed`, the function Stalled with reason
    /// `RolloutFailed`); passed to the Deployment. A failed move to a new
    /// Stack version counts against the Stack's `consumerRollout.maxFailures`.
    /// Default 600.
    #[serde(default = "default_progress_deadline_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub progress_deadline_seconds: i32,

    /// Promotion gate: roll out only an artifact (this version and image on
    /// this Stack version) verified upstream. Until it is, nothing new rolls
    /// out (running pods keep the last revision) and condition `Verified`
    /// says why; an Automatic move to a new Stack version waits the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<super::promotion::Promotion>,
}

/// The CustomResourceDefinition of NetworkFunction.
///
/// The derived schema leaves `metadata` out, but the API server only accepts
/// a rule's `fieldPath` that resolves in the schema, and refuses the whole CRD
/// otherwise ("fieldPath: Invalid value: \".metadata.name\": must be a valid
/// path"). Declaring `metadata.name` (the one metadata field a CRD schema may
/// describe, with `generateName`) lets the name rule report at `metadata.name`
/// instead of at the object root (`<nil>`).
pub fn crd() -> CustomResourceDefinition {
    let mut crd = NetworkFunction::crd();
    for version in &mut crd.spec.versions {
        let Some(root) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        else {
            continue;
        };
        let name = JSONSchemaProps {
            type_: Some("string".into()),
            ..Default::default()
        };
        root.properties.get_or_insert_with(Default::default).insert(
            "metadata".into(),
            JSONSchemaProps {
                type_: Some("object".into()),
                properties: Some([("name".to_string(), name)].into()),
                ..Default::default()
            },
        );
    }
    crd
}

fn default_replicas() -> i32 {
    1
}

fn default_progress_deadline_seconds() -> i32 {
    600
}

/// The Stack a function is deployed onto, and which of its versions it accepts.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StackRef {
    /// Name of a Stack in the function's namespace.
    #[x_kube(validation = super::rules::dns_subdomain())]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The Stack versions this function accepts, as a semver requirement:
    /// ">=1.4, <2", "^1.4", or "=1.4.0" to pin. Default "*".
    #[serde(default = "any_version")]
    #[x_kube(validation = super::rules::requirement())]
    #[schemars(length(max = 256))]
    pub version: String,
    /// Automatic adopts a new satisfying Stack version (staged by the Stack's
    /// consumerRollout); Manual stays on the recorded Stack version until the
    /// function's own spec changes.
    #[serde(default)]
    pub update_policy: UpdatePolicy,
}

/// How a function follows new versions of its Stack.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum UpdatePolicy {
    /// Adopt each new satisfying Stack version.
    #[default]
    Automatic,
    /// Stay on the recorded Stack version until the function's spec changes.
    Manual,
}

pub(crate) fn any_version() -> String {
    "*".into()
}

/// A port the function serves.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FunctionPort {
    /// Port name (an IANA service name: lower-case letters, digits and '-', at most 15 characters).
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$') && self.matches('[a-z]')").message(kube::core::cel::Message::Message("must be an IANA service name: lower-case letters, digits and '-', with at least one letter".into())))]
    #[schemars(length(min = 1, max = 15))]
    pub name: String,
    /// Port number (1-65535).
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Protocol: TCP (default), UDP or SCTP.
    #[serde(default)]
    pub protocol: Protocol,
}

/// A transport protocol.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Protocol {
    /// TCP.
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
    /// SCTP.
    #[serde(rename = "SCTP")]
    Sctp,
}

impl Protocol {
    /// The name Kubernetes uses for this protocol.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

/// Another NetworkFunction this one depends on.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    /// Name of a NetworkFunction in the same namespace.
    #[x_kube(validation = super::rules::dns_label())]
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// The versions of it that satisfy this function (semver requirement, default "*").
    #[serde(default = "any_version")]
    #[x_kube(validation = super::rules::requirement())]
    #[schemars(length(max = 256))]
    pub version: String,
}

/// The observed state of a NetworkFunction.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkFunctionStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling, Stalled, StackResolved and DependenciesReady.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// What is running now: the function version, image, Stack version and
    /// digest and configuration it was deployed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed_with: Option<Provenance>,
    /// Earlier deployments, newest first, at most `spec.historyLimit`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Provenance>,
    /// Pods of the function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Pods of the function that are Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
}

/// The provenance of one rollout: what a function was deployed with.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    /// The function version.
    pub version: String,
    /// The container image.
    pub image: String,
    /// Whether the image is pinned by digest (`@sha256:`).
    pub image_pinned: bool,
    /// The Stack, its version and digest.
    pub stack: StackRevisionRef,
    /// The digest of the function's configuration.
    pub config_digest: String,
    /// The DeploymentRecord of this rollout.
    pub record: String,
    /// When the rollout started (RFC 3339).
    pub deployed_at: String,
    /// When the rollout became Ready (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<String>,
}
