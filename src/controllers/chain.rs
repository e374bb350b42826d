//! The ServiceChain controller: checks each hop's NetworkFunction against the
//! hop's version requirement and readiness, isolates the hops with one
//! NetworkPolicy each, and reports the chain's state.
//!
//! The next-hop wiring is not written here: each function's own controller
//! renders `CHAIN_<CHAIN>_NEXT_*` into its pods from the chain cache, so the
//! chain never writes to a NetworkFunction or its Deployment, and deleting a
//! chain rolls its hops back to no next hop on their own. The policies are
//! owned by the chain, so the garbage collector removes them with it: no
//! finalizer is needed.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use k8s_openapi::{
    api::{core::v1::ObjectReference, networking::v1::NetworkPolicy},
    apimachinery::pkg::apis::meta::v1::Condition,
};
use kube::{
    Resource, ResourceExt,
    api::{Api, DeleteParams, ListParams, ObjectMeta},
    runtime::{
        controller::Action,
        events::{Event, EventType},
        reflector::ObjectRef,
    },
};

use super::{
    apply::{Live, Shown, apply_child},
    conditions,
    skeleton::{self, Reconciler},
};
use crate::{
    Error, Result,
    api::{NetworkFunction, ServiceChain, ServiceChainStatus},
    render::{
        chain::{BlockingHop, LABEL_SERVICE_CHAIN, hop_statuses, network_policies},
        label_value,
    },
};

/// Field manager of everything the ServiceChain controller writes.
pub const MANAGER: &str = "strata.dev/service-chain";
/// Ready reason: every hop is Ready at a satisfying version.
pub const CHAIN_READY: &str = "ChainReady";
/// Ready/Reconciling reason: a hop is missing, at an unsatisfying version, or not Ready.
pub const HOP_NOT_READY: &str = "HopNotReady";

/// The ServiceChain controller's context; it keeps no state of its own.
pub type Ctx = super::Ctx<()>;
type Context = super::Context<()>;

/// The ServiceChain controller, for the skeleton.
pub struct Chains;

impl Reconciler for Chains {
    type Kind = ServiceChain;
    type Status = ServiceChainStatus;
    type State = ();
    const MANAGER: &'static str = MANAGER;
    const FAILURES: &'static [&'static str] = &[conditions::STALLED];

    fn status(chain: &ServiceChain) -> Option<&ServiceChainStatus> {
        chain.status.as_ref()
    }
    fn conditions(status: &ServiceChainStatus) -> &[Condition] {
        &status.conditions
    }
    fn conditions_mut(status: &mut ServiceChainStatus) -> &mut Vec<Condition> {
        &mut status.conditions
    }
    fn observed(status: &mut ServiceChainStatus, generation: Option<i64>) {
        status.observed_generation = generation;
    }

    async fn converge(
        chain: &ServiceChain,
        ctx: &Context,
        ns: &str,
        status: &mut ServiceChainStatus,
    ) -> Result<Action> {
        let before = blocking_key(status);
        let blocking = converge(chain, ctx, ns, status).await?;
        if let Some(blocking) = blocking
            && blocking_key(status) != before
        {
            announce_blocking(chain, ctx, &blocking).await;
        }
        // The hops' functions trigger this chain when they change; the requeue is a safety net.
        Ok(Action::requeue(ctx.settings.resync_interval))
    }
}

/// Reconciles one ServiceChain.
pub async fn reconcile(chain: Arc<ServiceChain>, ctx: Ctx) -> Result<Action> {
    skeleton::reconcile::<Chains>(chain, ctx).await
}

/// A Stalled error waits for a spec change; anything else is retried with backoff.
pub fn error_policy(chain: Arc<ServiceChain>, error: &Error, ctx: Ctx) -> Action {
    skeleton::error_policy::<Chains>(chain, error, ctx)
}

/// Forgets what this process remembers of a deleted chain (its policies go
/// with it, and its hops rewire themselves).
pub fn forget(ctx: &Context, chain: &ServiceChain) {
    skeleton::forget::<Chains>(ctx, chain);
}

/// Observes the hops, then realises isolation; sets status and conditions.
/// Returns the hop that keeps the chain from being Ready, if any.
async fn converge(
    chain: &ServiceChain,
    ctx: &Context,
    ns: &str,
    status: &mut ServiceChainStatus,
) -> Result<Option<BlockingHop>> {
    let generation = chain.meta().generation;
    // A function missing from the cache is looked up once more: right after
    // the operator starts, the cache may not have been filled yet.
    let mut functions = BTreeMap::new();
    let api: Api<NetworkFunction> = Api::namespaced(ctx.client.clone(), ns);
    for hop in &chain.spec.hops {
        let name = &hop.network_function;
        let cached = ctx.stores.functions.get(&ObjectRef::new(name).within(ns));
        let found = match cached {
            Some(f) => Some(f),
            None => api.get_opt(name).await?.map(Arc::new),
        };
        functions.insert(name.clone(), found);
    }
    let report = hop_statuses(chain, |name| functions.get(name).cloned().flatten())?;
    status.hops = report.hops;
    status.ready_hops = Some(report.ready_hops);
    status.chain_version = Some(report.chain_version.clone());

    let desired = if chain.spec.isolation {
        network_policies(chain)?
    } else {
        Vec::new()
    };
    sync_policies(chain, ctx, ns, &desired).await?;

    match &report.blocking {
        None => {
            let message = format!(
                "all {} hops are Ready: {}",
                chain.spec.hops.len(),
                report.chain_version
            );
            conditions::ready(&mut status.conditions, CHAIN_READY, message, generation);
        }
        Some(blocking) => {
            let message = blocking.message.clone();
            conditions::progressing(&mut status.conditions, HOP_NOT_READY, message, generation);
        }
    }
    Ok(report.blocking)
}

/// Applies each desired policy that changed and deletes the chain's policies
/// that are no longer desired (a removed hop, or isolation turned off).
async fn sync_policies(
    chain: &ServiceChain,
    ctx: &Context,
    ns: &str,
    desired: &[NetworkPolicy],
) -> Result<()> {
    let api: Api<NetworkPolicy> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!("{LABEL_SERVICE_CHAIN}={}", label_value(&chain.name_any()));
    let uid = chain.uid();
    // The label value may be a truncated name: only what this chain owns counts.
    let live: Vec<ObjectMeta> = api
        .list_metadata(&ListParams::default().labels(&selector))
        .await?
        .items
        .into_iter()
        .map(|p| p.metadata)
        .filter(|m| {
            m.owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref())
        })
        .collect();
    for policy in desired {
        let name = policy.name_any();
        let current = live
            .iter()
            .find(|m| m.name.as_deref() == Some(name.as_str()));
        let current = current.map(Shown::of);
        apply_child(ctx, ns, MANAGER, policy.clone(), Live::Metadata(current)).await?;
    }
    let wanted: BTreeSet<String> = desired.iter().map(ResourceExt::name_any).collect();
    for stale in live
        .iter()
        .filter_map(|m| m.name.as_ref())
        .filter(|n| !wanted.contains(*n))
    {
        tracing::info!(policy = %stale, "deleting a NetworkPolicy the chain no longer wants");
        match api.delete(stale, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Publishes one Warning Event when the chain becomes blocked by another
/// hop or by the same hop for another reason (its function appearing or
/// changing version); not when only the hop's progress message moves. The
/// Event is related to the hop's function and its reason names the cause.
async fn announce_blocking(chain: &ServiceChain, ctx: &Context, blocking: &BlockingHop) {
    let function = ObjectReference {
        api_version: Some(NetworkFunction::api_version(&()).into_owned()),
        kind: Some(NetworkFunction::kind(&()).into_owned()),
        namespace: chain.namespace(),
        name: Some(blocking.network_function.clone()),
        ..ObjectReference::default()
    };
    let event = Event {
        type_: EventType::Warning,
        reason: blocking.cause.reason().into(),
        note: Some(blocking.message.clone()),
        action: "Reconcile".into(),
        secondary: Some(function),
    };
    if let Err(error) = ctx.recorder.publish(&event, &chain.object_ref(&())).await {
        tracing::warn!(%error, reason = event.reason, "publishing an event failed");
    }
}

/// What identifies a blocked chain's cause: the Ready reason, and the first
/// hop that is not ready with its function's version.
fn blocking_key(status: &ServiceChainStatus) -> Option<(String, Option<String>, Option<String>)> {
    let ready =
        conditions::get(&status.conditions, conditions::READY).filter(|c| c.status == "False")?;
    let hop = status.hops.iter().find(|h| !h.ready);
    Some((
        ready.reason.clone(),
        hop.map(|h| h.name.clone()),
        hop.and_then(|h| h.version.clone()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::chain::HopStatus;

    fn status(
        ready: &str,
        reason: &str,
        message: &str,
        hops: &[(&str, Option<&str>, bool)],
    ) -> ServiceChainStatus {
        let mut s = ServiceChainStatus::default();
        conditions::set(
            &mut s.conditions,
            conditions::READY,
            ready == "True",
            reason,
            message,
            Some(1),
        );
        s.hops = hops
            .iter()
            .map(|(name, version, ready)| HopStatus {
                name: (*name).into(),
                network_function: format!("{name}-nf"),
                version: version.map(str::to_string),
                stack_version: None,
                ready: *ready,
            })
            .collect();
        s
    }

    #[test]
    fn a_blocked_chain_is_announced_once_per_cause() {
        let nat_rolling = status(
            "False",
            HOP_NOT_READY,
            "hop nat is not Ready: 1 of 3",
            &[("fw", Some("3.1.0"), true), ("nat", Some("1.2.0"), false)],
        );
        let nat_further = status(
            "False",
            HOP_NOT_READY,
            "hop nat is not Ready: 2 of 3",
            &[("fw", Some("3.1.0"), true), ("nat", Some("1.2.0"), false)],
        );
        let nat_upgraded = status(
            "False",
            HOP_NOT_READY,
            "hop nat is not Ready: 0 of 3",
            &[("fw", Some("3.1.0"), true), ("nat", Some("1.3.0"), false)],
        );
        let fw_blocked = status(
            "False",
            HOP_NOT_READY,
            "hop fw is at 2.0.0",
            &[("fw", Some("2.0.0"), false), ("nat", Some("1.2.0"), false)],
        );
        let ready = status(
            "True",
            CHAIN_READY,
            "all 2 hops are Ready",
            &[("fw", Some("3.1.0"), true), ("nat", Some("1.2.0"), true)],
        );
        assert_eq!(
            blocking_key(&nat_rolling),
            blocking_key(&nat_further),
            "progress alone is no new cause"
        );
        assert_ne!(
            blocking_key(&nat_rolling),
            blocking_key(&nat_upgraded),
            "a new version of the hop is"
        );
        assert_ne!(
            blocking_key(&nat_rolling),
            blocking_key(&fw_blocked),
            "another hop is"
        );
        assert_eq!(blocking_key(&ready), None);
        assert_ne!(
            blocking_key(&ready),
            blocking_key(&nat_rolling),
            "becoming blocked is"
        );
    }
}
