//! `DeploymentRecord`: the immutable ledger entry of one rollout.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::StackRevisionRef;

/// An immutable ledger entry written by the operator for every rollout of a
/// NetworkFunction. It answers "which infrastructure version was this
/// microservice deployed with" for any point in time, and survives deletion
/// of the function. `kubectl get dr -l strata.dev/stack-version=1.4.0` lists
/// everything deployed on that stack version.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "strata.dev",
    version = "v1alpha1",
    kind = "DeploymentRecord",
    namespaced,
    status = "DeploymentRecordStatus",
    shortname = "dr",
    category = "strata",
    doc = "An immutable record of one rollout of a NetworkFunction: the function version and the stack version and digest it was deployed with.",
    printcolumn(
        name = "Function",
        type_ = "string",
        json_path = ".spec.networkFunction.name"
    ),
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(name = "Stack", type_ = "string", json_path = ".spec.stack.name"),
    printcolumn(
        name = "Stack-Version",
        type_ = "string",
        json_path = ".spec.stack.version"
    ),
    printcolumn(name = "Outcome", type_ = "string", json_path = ".status.outcome"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Digest",
        type_ = "string",
        json_path = ".spec.stack.digest",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = kube::core::Rule::new("self == oldSelf").message(kube::core::cel::Message::Message("spec is immutable: a DeploymentRecord is a ledger entry".into())))]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRecordSpec {
    /// The NetworkFunction that was rolled out.
    pub network_function: FunctionRef,
    /// The function version rolled out.
    #[x_kube(validation = super::rules::semver())]
    #[schemars(length(max = 128))]
    pub version: String,
    /// The container image rolled out.
    pub image: String,
    /// The Stack, its version and digest the function was deployed with.
    pub stack: StackRevisionRef,
    /// The digest of the function's configuration.
    pub config_digest: String,
    /// The record of the rollout this one followed, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_record: Option<String>,
    /// When the rollout started (RFC 3339).
    pub started_at: String,
    /// The upstream evidence a gated rollout (`spec.promotion`) was verified by.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub verified_in: Vec<super::promotion::Evidence>,
}

/// A NetworkFunction, by name and uid (the uid tells apart functions that
/// were deleted and created again under the same name).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionRef {
    /// Name of the NetworkFunction.
    pub name: String,
    /// UID of the NetworkFunction.
    pub uid: String,
}

/// How a rollout ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Outcome {
    /// The rollout is in progress.
    #[default]
    Progressing,
    /// Every pod of the rollout became Ready.
    Succeeded,
    /// The rollout exceeded its progress deadline.
    Failed,
    /// A later rollout replaced this one.
    Superseded,
}

/// The outcome of a DeploymentRecord's rollout. It is created with the
/// record (`Progressing`), so a record never reads as Current to kstatus
/// while its rollout runs, and written once more when the rollout concludes.
/// A concluded outcome is final, except that a Succeeded rollout becomes
/// Superseded when a later one replaces it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[x_kube(validation = kube::core::Rule::new("oldSelf.outcome == 'Progressing' || self.outcome == oldSelf.outcome || (oldSelf.outcome == 'Succeeded' && self.outcome == 'Superseded')").message(kube::core::cel::Message::Message("status.outcome is final once concluded: only Succeeded may become Superseded".into())))]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRecordStatus {
    /// Unused: a record's spec never changes, and its status is written
    /// with the record rather than through a status subresource, so each
    /// status write moves `metadata.generation`. Records written before
    /// that carry it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready (the rollout succeeded) and Stalled (it failed), following kstatus.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Progressing, Succeeded, Failed or Superseded.
    #[serde(default)]
    pub outcome: Outcome,
    /// When the outcome became final (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// When the rollout Succeeded (RFC 3339, milliseconds); kept once it is
    /// Superseded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succeeded_at: Option<String>,
    /// When a later rollout replaced this one (RFC 3339, milliseconds): it
    /// ran as its function's current rollout from `succeededAt` until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_at: Option<String>,
}

/// The CustomResourceDefinition of DeploymentRecord, without a status
/// subresource: the operator creates a record with its `Progressing` status
/// in one request (the API server drops the status of a create when the
/// subresource is on), and then writes the status once, at the outcome.
/// Its spec stays immutable (CEL on `spec`), and its outcome final (CEL on
/// `status`).
pub fn crd() -> CustomResourceDefinition {
    let mut crd = DeploymentRecord::crd();
    for version in &mut crd.spec.versions {
        version.subresources = None;
    }
    crd
}
