//! The reads behind a trace: the object, then what it names (its Stack,
//! dependencies, record and chains; a Stack's consumers; a chain's hops),
//! fetched concurrently, then the blocker from all of them.

use futures::future::try_join_all;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{Api, ResourceExt};

use super::Kind;
use super::view::*;
use crate::api::{DeploymentRecord, NetworkFunction, ServiceChain, Stack};
use crate::cli::{Result, blockers, connect::Cluster};
use crate::controllers::conditions::{self, READY, STALLED};

/// The trace of object `name` of `kind` in namespace `ns`.
pub async fn trace(cluster: &Cluster, kind: Kind, ns: &str, name: &str) -> Result<Trace> {
    match kind {
        Kind::Nf => function(cluster, ns, name).await,
        Kind::Stack => stack(cluster, ns, name).await,
        Kind::Chain => chain(cluster, ns, name).await,
    }
}

/// A trace without details: `kind` `name` does not exist, or the shared
/// fields of one that does.
fn base(kind: &'static str, ns: &str, name: &str, conds: Option<&[Condition]>) -> Trace {
    let conds = conds.unwrap_or_default();
    let ready = conditions::is_true(conds, READY);
    Trace {
        kind,
        namespace: ns.into(),
        name: name.into(),
        found: true,
        ready,
        state: blockers::state(conds, None),
        message: conditions::get(conds, READY).map(|c| c.message.clone()),
        blocker: None,
        function: None,
        stack: None,
        chain: None,
        conditions: conds.to_vec(),
    }
}

fn missing(kind: &'static str, ns: &str, name: &str) -> Trace {
    Trace {
        found: false,
        state: State::Missing,
        ..base(kind, ns, name, None)
    }
}

/// Whether `version` satisfies the semver requirement `requirement`.
pub fn satisfies(version: Option<&str>, requirement: &str) -> bool {
    let (Some(version), Ok(req)) = (version, semver::VersionReq::parse(requirement)) else {
        return false;
    };
    semver::Version::parse(version).is_ok_and(|v| req.matches(&v))
}

fn ready_reason(conds: &[Condition]) -> Option<String> {
    conditions::get(conds, READY)
        .filter(|c| c.status != "True")
        .map(|c| c.reason.clone())
}

fn function_conditions(nf: &NetworkFunction) -> &[Condition] {
    nf.status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default()
}

async fn function(cluster: &Cluster, ns: &str, name: &str) -> Result<Trace> {
    let Some(nf) = cluster.api::<NetworkFunction>(ns).get_opt(name).await? else {
        return Ok(missing("NetworkFunction", ns, name));
    };
    let (stack, dependencies, chains, record) = tokio::try_join!(
        stack_link(cluster, ns, &nf),
        dependency_links(cluster, ns, &nf),
        chain_links(cluster, ns, name),
        record_link(cluster, ns, &nf),
    )?;
    let blocker = blockers::function(&nf, &stack, &dependencies);
    let status = nf.status.clone().unwrap_or_default();
    let mut trace = base("NetworkFunction", ns, name, Some(&status.conditions));
    trace.state = blockers::state(&status.conditions, blocker.as_ref());
    trace.blocker = blocker;
    trace.function = Some(FunctionTrace {
        version: nf.spec.version.clone(),
        image: nf.spec.image.clone(),
        replicas: Replicas {
            desired: nf.spec.replicas,
            ready: status.ready_replicas.unwrap_or(0),
        },
        running: status.deployed_with,
        record,
        stack,
        dependencies,
        chains,
    });
    Ok(trace)
}

/// The function's Stack as it asks for it and as it is.
async fn stack_link(cluster: &Cluster, ns: &str, nf: &NetworkFunction) -> Result<StackLink> {
    let wanted = &nf.spec.stack_ref;
    let mut link = StackLink {
        name: wanted.name.clone(),
        requirement: wanted.version.clone(),
        update_policy: format!("{:?}", wanted.update_policy),
        ..Default::default()
    };
    let Some(stack) = cluster.api::<Stack>(ns).get_opt(&wanted.name).await? else {
        return Ok(link);
    };
    let status = stack.status.unwrap_or_default();
    let conds = &status.conditions;
    link.found = true;
    link.ready = conditions::is_true(conds, READY);
    link.satisfied = satisfies(status.version.as_deref(), &wanted.version);
    link.version = status.version;
    link.digest = status.digest;
    link.condition = conditions::get(conds, STALLED)
        .filter(|c| c.status == "True")
        .or_else(|| conditions::get(conds, READY).filter(|c| c.status != "True"))
        .cloned();
    Ok(link)
}

async fn dependency_links(
    cluster: &Cluster,
    ns: &str,
    nf: &NetworkFunction,
) -> Result<Vec<DependencyLink>> {
    let api = cluster.api::<NetworkFunction>(ns);
    try_join_all(nf.spec.depends_on.iter().map(|dep| {
        let api = api.clone();
        async move {
            let found = api.get_opt(&dep.name).await?;
            let version = found.as_ref().map(|d| d.spec.version.clone());
            let conds = found.as_ref().map(function_conditions).unwrap_or_default();
            Ok::<_, kube::Error>(DependencyLink {
                name: dep.name.clone(),
                requirement: dep.version.clone(),
                found: found.is_some(),
                satisfied: satisfies(version.as_deref(), &dep.version),
                version,
                ready: conditions::is_true(conds, READY),
                reason: ready_reason(conds),
            })
        }
    }))
    .await
    .map_err(Into::into)
}

/// The chains in `ns` with a hop on function `name`.
async fn chain_links(cluster: &Cluster, ns: &str, name: &str) -> Result<Vec<ChainLink>> {
    let chains = cluster
        .api::<ServiceChain>(ns)
        .list(&Default::default())
        .await?;
    Ok(chains
        .into_iter()
        .flat_map(|chain| {
            let conds = chain
                .status
                .as_ref()
                .map(|s| s.conditions.clone())
                .unwrap_or_default();
            let chain_name = chain.name_any();
            chain
                .spec
                .hops
                .into_iter()
                .filter(|hop| hop.network_function == name)
                .map(move |hop| ChainLink {
                    name: chain_name.clone(),
                    hop: hop.name,
                    ready: conditions::is_true(&conds, READY),
                })
        })
        .collect())
}

async fn record_link(
    cluster: &Cluster,
    ns: &str,
    nf: &NetworkFunction,
) -> Result<Option<RecordLink>> {
    let Some(name) = nf
        .status
        .as_ref()
        .and_then(|s| s.deployed_with.as_ref())
        .map(|d| d.record.clone())
    else {
        return Ok(None);
    };
    let record = cluster.api::<DeploymentRecord>(ns).get_opt(&name).await?;
    let outcome = record
        .and_then(|r| r.status)
        .map(|s| format!("{:?}", s.outcome));
    Ok(Some(RecordLink { name, outcome }))
}

async fn stack(cluster: &Cluster, ns: &str, name: &str) -> Result<Trace> {
    let Some(stack) = cluster.api::<Stack>(ns).get_opt(name).await? else {
        return Ok(missing("Stack", ns, name));
    };
    let functions = cluster
        .api::<NetworkFunction>(ns)
        .list(&Default::default())
        .await?;
    let functions = functions
        .into_iter()
        .filter(|nf| nf.spec.stack_ref.name == name)
        .map(|nf| {
            let conds = function_conditions(&nf);
            ConsumerLink {
                name: nf.name_any(),
                requirement: nf.spec.stack_ref.version.clone(),
                stack_version: nf
                    .status
                    .as_ref()
                    .and_then(|s| s.deployed_with.as_ref())
                    .map(|d| d.stack.version.clone()),
                ready: conditions::is_true(conds, READY),
                reason: ready_reason(conds),
            }
        })
        .collect();
    let blocker = blockers::stack(&stack);
    let status = stack.status.clone().unwrap_or_default();
    let mut trace = base("Stack", ns, name, Some(&status.conditions));
    trace.state = blockers::state(&status.conditions, blocker.as_ref());
    trace.blocker = blocker;
    trace.stack = Some(StackTrace {
        version: stack.spec.version.clone(),
        applied: status.version,
        digest: status.digest,
        inventory: status.inventory.len(),
        consumers: status.consumers,
        functions,
        history: status.history,
    });
    Ok(trace)
}

async fn chain(cluster: &Cluster, ns: &str, name: &str) -> Result<Trace> {
    let Some(chain) = cluster.api::<ServiceChain>(ns).get_opt(name).await? else {
        return Ok(missing("ServiceChain", ns, name));
    };
    let api: Api<NetworkFunction> = cluster.api(ns);
    let hops =
        try_join_all(
            chain.spec.hops.iter().map(|hop| {
                let api = api.clone();
                async move {
                    Ok::<_, kube::Error>(hop_link(hop, api.get_opt(&hop.network_function).await?))
                }
            }),
        )
        .await?;
    let blocker = blockers::chain(&chain, &hops);
    let conds = chain
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut trace = base("ServiceChain", ns, name, Some(&conds));
    trace.state = blockers::state(&conds, blocker.as_ref());
    trace.blocker = blocker;
    trace.chain = Some(ChainTrace { hops });
    Ok(trace)
}

fn hop_link(hop: &crate::api::chain::Hop, nf: Option<NetworkFunction>) -> HopLink {
    let version = nf.as_ref().map(|f| f.spec.version.clone());
    let conds = nf.as_ref().map(function_conditions).unwrap_or_default();
    let running = nf
        .as_ref()
        .and_then(|f| f.status.as_ref())
        .and_then(|s| s.deployed_with.as_ref());
    // The hop's own blocker, from its conditions (its Stack and
    // dependencies are not read: `strata trace nf` shows those).
    let blocker = nf.as_ref().and_then(|f| {
        let stack = StackLink {
            name: f.spec.stack_ref.name.clone(),
            requirement: f.spec.stack_ref.version.clone(),
            ..Default::default()
        };
        blockers::function(f, &stack, &[])
    });
    HopLink {
        name: hop.name.clone(),
        network_function: hop.network_function.clone(),
        requirement: hop.version.clone(),
        found: nf.is_some(),
        satisfied: satisfies(version.as_deref(), &hop.version),
        version,
        stack_version: running.map(|d| d.stack.version.clone()),
        ready: conditions::is_true(conds, READY),
        blocker,
    }
}
