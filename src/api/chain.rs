//! `ServiceChain`: an ordered composition of NetworkFunctions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An ordered composition of NetworkFunctions exposed as one declarative API:
/// each hop learns the address of the next through its environment, and with
/// isolation each hop admits traffic only from the previous one.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "strata.dev",
    version = "v1alpha1",
    kind = "ServiceChain",
    namespaced,
    status = "ServiceChainStatus",
    shortname = "chain",
    category = "strata",
    doc = "An ordered chain of NetworkFunctions: traffic enters the first hop and each hop forwards to the next.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Hops",
        type_ = "integer",
        json_path = ".status.readyHops",
        description = "Hops that are Ready at a satisfying version"
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".status.chainVersion",
        description = "The function versions of the hops, in order"
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
pub struct ServiceChainSpec {
    /// The hops in traffic order: at least two, with unique names.
    #[x_kube(validation = kube::core::Rule::new("self.all(h, self.exists_one(o, o.name == h.name))").message(kube::core::cel::Message::Message("hop names must be unique".into())))]
    #[schemars(length(min = 2, max = 32))]
    pub hops: Vec<Hop>,
    /// One NetworkPolicy per hop admitting traffic only from the previous hop
    /// (the first hop only from `ingress`). Default true.
    #[serde(default = "default_true")]
    pub isolation: bool,
    /// Who may send traffic into the first hop (pods in the chain's namespace
    /// selected by `podSelector`, optionally in namespaces selected by
    /// `namespaceSelector`). Without it, the first hop admits nothing with isolation on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<ChainIngress>,
}

fn default_true() -> bool {
    true
}

/// One hop of a chain.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Hop {
    /// The hop's name in this chain; it names the environment variables of the
    /// previous hop (`CHAIN_<CHAIN>_NEXT_*`) and the hop's NetworkPolicy.
    #[x_kube(validation = super::rules::dns_label())]
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Name of a NetworkFunction in the chain's namespace.
    #[x_kube(validation = super::rules::dns_label())]
    #[schemars(length(min = 1, max = 63))]
    pub network_function: String,
    /// The function versions this hop accepts (semver requirement, default "*").
    #[serde(default = "super::function::any_version")]
    #[x_kube(validation = super::rules::requirement())]
    #[schemars(length(max = 256))]
    pub version: String,
}

/// The sources admitted into the first hop of a chain.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainIngress {
    /// Pods admitted into the first hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Namespaces whose selected pods are admitted; without it, the chain's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
}

/// The observed state of a ServiceChain.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceChainStatus {
    /// The generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Reconciling and Stalled, following kstatus.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Each hop with its function version, stack version and readiness.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hops: Vec<HopStatus>,
    /// How many hops are Ready at a satisfying version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_hops: Option<i32>,
    /// The function versions of the hops in order, e.g. "fw@3.1.0 > cgnat@1.2.0".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_version: Option<String>,
}

/// The observed state of one hop.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HopStatus {
    /// The hop's name.
    pub name: String,
    /// The NetworkFunction of the hop.
    pub network_function: String,
    /// The function's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The Stack version the function was deployed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_version: Option<String>,
    /// Whether the hop is Ready at a version satisfying its requirement.
    pub ready: bool,
}
