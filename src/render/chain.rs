//! What a ServiceChain wants and what it observes, as pure functions: one
//! NetworkPolicy per hop (isolation), and the chain's status computed from
//! its hops' NetworkFunctions.
//!
//! The next-hop wiring (`CHAIN_<CHAIN>_NEXT_HOST/PORT` in each hop's pods) is
//! not here: it is part of each function's own children
//! ([`super::function::NextHop`]), so the chain never writes to a function or
//! its Deployment.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::Resource;
use semver::{Version, VersionReq};

use super::{RenderError, function::selector_labels, label_value};
use crate::api::{
    NetworkFunction, ServiceChain,
    chain::{Hop, HopStatus},
    version::requirement,
};

/// Label on each NetworkPolicy of a chain: the chain's name (as a label value).
pub const LABEL_SERVICE_CHAIN: &str = "strata.dev/service-chain";
/// Label on everything Strata creates, and its value.
pub const LABEL_MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "strata");
/// The longest Kubernetes object name (a DNS-1123 subdomain).
pub const MAX_NAME_LENGTH: usize = 253;

/// The name of the NetworkPolicy of `hop` in `chain`.
pub fn policy_name(chain: &str, hop: &str) -> String {
    format!("{chain}-{hop}")
}

/// The labels of every NetworkPolicy of `chain`; [`LABEL_SERVICE_CHAIN`] also
/// selects them for pruning.
pub fn policy_labels(chain: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            LABEL_MANAGED_BY.0.to_string(),
            LABEL_MANAGED_BY.1.to_string(),
        ),
        (LABEL_SERVICE_CHAIN.to_string(), label_value(chain)),
    ])
}

/// One NetworkPolicy per hop, named `<chain>-<hop>` and owned by the chain
/// (so the garbage collector removes them with it). Each selects the pods of
/// the hop's function and admits ingress only from the pods of the previous
/// hop's function; the first hop admits only `spec.ingress`, and nothing at
/// all without it (`ingress: []`, deny all).
///
/// Ports are left unrestricted: the chain decides *who* may talk to a hop,
/// while which ports a function serves is the function's own business
/// (`spec.ports`), and restricting them here would silently break a function
/// that adds a port.
///
/// NetworkPolicies are additive: a function that is a hop in several chains
/// admits the union of what each chain admits.
pub fn network_policies(chain: &ServiceChain) -> Result<Vec<NetworkPolicy>, RenderError> {
    let name = chain
        .metadata
        .name
        .as_deref()
        .ok_or(RenderError::ChainMissingMetadata("metadata.name"))?;
    let namespace = chain
        .metadata
        .namespace
        .as_deref()
        .ok_or(RenderError::ChainMissingMetadata("metadata.namespace"))?;
    let owner = OwnerReference {
        block_owner_deletion: Some(true),
        ..chain
            .controller_owner_ref(&())
            .ok_or(RenderError::ChainMissingMetadata("metadata.uid"))?
    };
    let labels = policy_labels(name);
    let mut policies = Vec::with_capacity(chain.spec.hops.len());
    let mut previous: Option<&str> = None;
    for hop in &chain.spec.hops {
        let policy_name = policy_name(name, &hop.name);
        if policy_name.len() > MAX_NAME_LENGTH {
            return Err(RenderError::PolicyNameTooLong {
                hop: hop.name.clone(),
                length: policy_name.len(),
                max: MAX_NAME_LENGTH,
            });
        }
        let from = match previous {
            Some(function) => vec![NetworkPolicyPeer {
                pod_selector: Some(pods_of(function)),
                ..NetworkPolicyPeer::default()
            }],
            None => chain_ingress(chain).into_iter().collect(),
        };
        // No peers: no rule at all, which with policyTypes [Ingress] denies all.
        let ingress = if from.is_empty() {
            Vec::new()
        } else {
            vec![NetworkPolicyIngressRule {
                from: Some(from),
                ports: None,
            }]
        };
        policies.push(NetworkPolicy {
            metadata: ObjectMeta {
                name: Some(policy_name),
                namespace: Some(namespace.to_string()),
                labels: Some(labels.clone()),
                owner_references: Some(vec![owner.clone()]),
                ..ObjectMeta::default()
            },
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(pods_of(&hop.network_function)),
                policy_types: Some(vec!["Ingress".into()]),
                ingress: Some(ingress),
                egress: None,
            }),
        });
        previous = Some(&hop.network_function);
    }
    Ok(policies)
}

/// The pods of NetworkFunction `function`, as its Deployment selects them.
fn pods_of(function: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(selector_labels(function)),
        match_expressions: None,
    }
}

/// The peer admitted into the first hop: `spec.ingress`, if it selects anything.
/// An ingress with neither selector is read as "nobody", like no ingress.
fn chain_ingress(chain: &ServiceChain) -> Option<NetworkPolicyPeer> {
    let ingress = chain.spec.ingress.as_ref()?;
    if ingress.pod_selector.is_none() && ingress.namespace_selector.is_none() {
        return None;
    }
    Some(NetworkPolicyPeer {
        pod_selector: ingress.pod_selector.clone(),
        namespace_selector: ingress.namespace_selector.clone(),
        ip_block: None,
    })
}

/// What the hops of a chain look like now, for the chain's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainReport {
    /// Each hop, in chain order.
    pub hops: Vec<HopStatus>,
    /// How many hops are Ready at a satisfying version.
    pub ready_hops: i32,
    /// The hops' functions and versions in order: `fw@3.1.0 > cgnat@1.2.0`.
    pub chain_version: String,
    /// The first hop that is not Ready at a satisfying version, if any.
    pub blocking: Option<BlockingHop>,
}

/// The first hop that keeps a chain from being Ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockingHop {
    /// The hop's name.
    pub hop: String,
    /// The hop's NetworkFunction.
    pub network_function: String,
    /// Why it blocks.
    pub cause: HopCause,
    /// One sentence naming the hop, its function and what is wrong.
    pub message: String,
}

/// Why a hop is not Ready at a satisfying version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HopCause {
    /// The hop's NetworkFunction does not exist.
    FunctionMissing,
    /// The function's version does not satisfy the hop's requirement.
    VersionMismatch,
    /// The function is not Ready (or its status is behind its spec).
    FunctionNotReady,
}

impl HopCause {
    /// The CamelCase reason of the Warning Event announcing this cause.
    pub fn reason(self) -> &'static str {
        match self {
            HopCause::FunctionMissing => "HopNotFound",
            HopCause::VersionMismatch => "HopVersionMismatch",
            HopCause::FunctionNotReady => "HopNotReady",
        }
    }
}

/// The status of every hop of `chain`, looking up each hop's NetworkFunction
/// (in the chain's namespace) with `function`. A hop is ready when its
/// function exists, its `spec.version` satisfies the hop's requirement, and it
/// is Ready with a status that has caught up with its spec. Fails only on a
/// hop requirement that is not a semver requirement.
pub fn hop_statuses(
    chain: &ServiceChain,
    function: impl Fn(&str) -> Option<Arc<NetworkFunction>>,
) -> Result<ChainReport, RenderError> {
    let mut hops = Vec::with_capacity(chain.spec.hops.len());
    let mut blocking = None;
    let mut versions = Vec::with_capacity(chain.spec.hops.len());
    for (i, hop) in chain.spec.hops.iter().enumerate() {
        let wanted = requirement(&format!("spec.hops[{i}].version"), &hop.version)?;
        let nf = function(&hop.network_function);
        let version = nf.as_ref().map(|f| f.spec.version.clone());
        versions.push(format!(
            "{}@{}",
            hop.network_function,
            version.as_deref().unwrap_or("?")
        ));
        let stack_version = nf
            .as_ref()
            .and_then(|f| f.status.as_ref())
            .and_then(|s| s.deployed_with.as_ref())
            .map(|d| d.stack.version.clone());
        let problem = match &nf {
            None => Some((
                HopCause::FunctionMissing,
                format!(
                    "hop {}: NetworkFunction {} does not exist",
                    hop.name, hop.network_function
                ),
            )),
            Some(f) => hop_problem(hop, &wanted, f),
        };
        hops.push(HopStatus {
            name: hop.name.clone(),
            network_function: hop.network_function.clone(),
            version,
            stack_version,
            ready: problem.is_none(),
        });
        if let (Some((cause, message)), None) = (problem, &blocking) {
            blocking = Some(BlockingHop {
                hop: hop.name.clone(),
                network_function: hop.network_function.clone(),
                cause,
                message,
            });
        }
    }
    let ready_hops = i32::try_from(hops.iter().filter(|h| h.ready).count()).unwrap_or(i32::MAX);
    Ok(ChainReport {
        hops,
        ready_hops,
        chain_version: versions.join(" > "),
        blocking,
    })
}

/// Why an existing function does not serve `hop`, or `None` when it does.
fn hop_problem(hop: &Hop, wanted: &VersionReq, f: &NetworkFunction) -> Option<(HopCause, String)> {
    let who = format!("hop {} ({})", hop.name, hop.network_function);
    let satisfied = Version::parse(&f.spec.version).is_ok_and(|v| wanted.matches(&v));
    if !satisfied {
        return Some((
            HopCause::VersionMismatch,
            format!(
                "{who} is at {}, which does not satisfy {}",
                f.spec.version, hop.version
            ),
        ));
    }
    let status = f.status.clone().unwrap_or_default();
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready");
    let why = if status.observed_generation != f.metadata.generation {
        format!(
            "generation {} has not been reconciled yet",
            f.metadata.generation.unwrap_or_default()
        )
    } else {
        match ready {
            Some(c) if c.status == "True" => return None,
            Some(c) if !c.message.is_empty() => c.message.clone(),
            Some(c) => format!("Ready is {} ({})", c.status, c.reason),
            None => "it has not been reconciled yet".to_string(),
        }
    };
    Some((
        HopCause::FunctionNotReady,
        format!("{who} is not Ready: {why}"),
    ))
}

#[cfg(test)]
mod tests;
