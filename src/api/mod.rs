//! The `strata.dev/v1alpha1` API: one module per kind, plus the types they share.
//!
//! Validation that is local to one object lives here, in the schema and in CEL
//! rules, so that `kubectl apply` refuses bad input at admission with a message
//! naming the field. Rules that need other objects live in the controllers.

// Each `printcolumn(name = .., type_ = "string", ..)` of `#[kube(...)]` is a
// separate column, but clippy reads the repeated `type_ = "string"` as a
// duplicated attribute.
#![allow(clippy::duplicated_attributes)]

pub mod chain;
pub mod function;
pub mod limits;
pub mod promotion;
pub mod record;
pub mod rules;
pub mod stack;
pub mod version;

pub use chain::{ServiceChain, ServiceChainSpec, ServiceChainStatus};
pub use function::{NetworkFunction, NetworkFunctionSpec, NetworkFunctionStatus};
pub use record::{DeploymentRecord, DeploymentRecordSpec, DeploymentRecordStatus, Outcome};
pub use stack::{Stack, StackSpec, StackStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Label on managed objects and records: the Stack they belong to or were deployed on.
pub const LABEL_STACK: &str = "strata.dev/stack";
/// Label on managed objects and records: the Stack version they belong to or were deployed on.
pub const LABEL_STACK_VERSION: &str = "strata.dev/stack-version";
/// Label on DeploymentRecords: the NetworkFunction the record belongs to.
pub const LABEL_NETWORK_FUNCTION: &str = "strata.dev/network-function";

/// The CustomResourceDefinitions of every Strata kind, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        Stack::crd(),
        function::crd(),
        record::crd(),
        ServiceChain::crd(),
    ]
}

/// All CRDs as one multi-document YAML stream, as committed under `crds/`.
pub fn crds_yaml() -> String {
    crds()
        .iter()
        .map(|crd| serde_yaml::to_string(crd).expect("a CRD always serializes"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// A Stack at one version with one digest: what a consumer was deployed on.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StackRevisionRef {
    /// Name of the Stack, in the same namespace.
    pub name: String,
    /// The Stack's `spec.version` at deployment time.
    pub version: String,
    /// The digest (`sha256:...`) of the Stack's rendered content at that version.
    pub digest: String,
}
