//! A function's rollout: recording it in the ledger, applying its children,
//! and following the Deployment until the rollout concludes.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Resource, ResourceExt,
    api::Api,
    runtime::{
        controller::Action,
        events::EventType,
        reflector::{ObjectRef, Store},
    },
};

use super::{
    Context, MANAGER, configs,
    deployment::{DeploymentState, Rollout, rollout_state},
    records,
};
use crate::{
    Result,
    api::{
        NetworkFunction, NetworkFunctionStatus, Outcome, function::Provenance, promotion::Evidence,
    },
    controllers::{
        apply::{ChildMeta, ChildWrite, Live, apply_child},
        conditions, waves,
    },
    render::function::Children,
};

/// Records a new rollout after the end of the function's ledger: a
/// DeploymentRecord, the provenance in status, Events.
pub(super) async fn start(
    nf: &NetworkFunction,
    ctx: &Context,
    ns: &str,
    status: &mut NetworkFunctionStatus,
    mut target: Provenance,
    end: records::LedgerEnd,
    verified_in: &[Evidence],
) -> Result<()> {
    target.record = records::record_name(nf, &target, end.previous.as_deref());
    let (started_at, created) =
        records::ensure(ctx, nf, ns, &target, end.previous.as_deref(), verified_in).await?;
    target.deployed_at = started_at;
    ctx.state
        .ledgers
        .ended_at(&nf.uid().unwrap_or_default(), Some(target.record.clone()));
    // The rollouts this one replaces: the one the status names, then those a
    // killed predecessor started without writing them down. Their pods may
    // have run, so they are history too.
    let replaced = status
        .deployed_with
        .clone()
        .into_iter()
        .chain(end.unwritten.iter().map(records::provenance));
    let mut previous = None;
    for rollout in replaced {
        records::conclude(ctx, ns, &nf.name_any(), &rollout, Outcome::Superseded).await?;
        status.history.insert(0, rollout.clone());
        previous = Some(rollout);
    }
    let limit = usize::try_from(nf.spec.history_limit.max(1)).unwrap_or(1);
    if status.history.len() > limit {
        let left = status.history.split_off(limit);
        ctx.state.retired_configs.retire(
            &nf.uid().unwrap_or_default(),
            left.into_iter().map(|p| p.config_digest),
        );
    }
    records::prune(ctx, nf, ns, &target.record).await?;
    status.deployed_with = Some(target.clone());
    if !created {
        // The rollout had started before (this process or a predecessor
        // announced it); only the status was behind.
        return Ok(());
    }

    let note = format!(
        "rolling out {} {} on stack {} {} ({}), record {}",
        nf.name_any(),
        target.version,
        target.stack.name,
        target.stack.version,
        target.stack.digest,
        target.record
    );
    tracing::info!(record = %target.record, stack_version = %target.stack.version, "rollout started");
    ctx.publish(nf, EventType::Normal, "RolloutStarted", "Rollout", note)
        .await;
    if let Some(previous) = &previous
        && previous.stack.version != target.stack.version
    {
        let note = format!(
            "adopted stack {} {} (was {})",
            target.stack.name, target.stack.version, previous.stack.version
        );
        ctx.publish(nf, EventType::Normal, "StackAdopted", "Rollout", note)
            .await;
    }
    if !target.image_pinned && previous.as_ref().is_none_or(|p| p.image != target.image) {
        let note = format!(
            "image {} is not pinned by digest; pin it as name@sha256:... so the rollout is reproducible",
            target.image
        );
        ctx.publish(nf, EventType::Warning, "ImageNotPinned", "Rollout", note)
            .await;
    }
    Ok(())
}

/// Applies each child whose content differs from what Strata last applied.
pub(super) async fn apply_children(
    nf: &NetworkFunction,
    ctx: &Context,
    ns: &str,
    children: &Children,
) -> Result<()> {
    if let Some(config_map) = &children.config_map {
        let live = cached(
            &ctx.stores.config_maps,
            ns,
            config_map.metadata.name.as_ref(),
        );
        let applied = apply_child(
            ctx,
            ns,
            MANAGER,
            config_map.clone(),
            Live::Metadata(live.as_deref().map(ChildMeta::shown)),
        )
        .await?;
        report_drift(nf, ctx, config_map, applied).await;
    }
    let name = nf.name_any();
    let live = ctx
        .stores
        .deployments
        .get(&ObjectRef::new(&name).within(ns));
    let applied = apply_child(
        ctx,
        ns,
        MANAGER,
        children.deployment.clone(),
        Live::Digested(
            live.as_ref()
                .map(|d| (d.stamp(), d.metadata_value(), d.spec_digest.as_str())),
        ),
    )
    .await?;
    report_drift(nf, ctx, &children.deployment, applied).await;
    if let Some(service) = &children.service {
        let live = cached(&ctx.stores.services, ns, service.metadata.name.as_ref());
        let applied = apply_child(
            ctx,
            ns,
            MANAGER,
            service.clone(),
            Live::Metadata(live.as_deref().map(ChildMeta::shown)),
        )
        .await?;
        report_drift(nf, ctx, service, applied).await;
    }
    Ok(())
}

/// Logs and publishes a `DriftCorrected` Event (related to `child`) when
/// `child` of `nf` had been changed by another writer and was restored.
async fn report_drift<K>(nf: &NetworkFunction, ctx: &Context, child: &K, applied: ChildWrite)
where
    K: Resource<DynamicType = ()>,
{
    if applied != ChildWrite::Restored {
        return;
    }
    let (kind, name) = (K::kind(&()), child.name_any());
    tracing::info!(child = %format_args!("{kind}/{name}"), "restored fields of a child that another writer changed");
    let note = format!(
        "{kind} {name}: restored the fields Strata manages that another writer had changed"
    );
    let related = Some(child.object_ref(&()));
    ctx.publish_related(
        nf,
        related,
        EventType::Normal,
        "DriftCorrected",
        "Apply",
        note,
    )
    .await;
}

/// The cached metadata of child `name` in `ns`.
fn cached<K>(
    store: &Store<ChildMeta<K>>,
    ns: &str,
    name: Option<&String>,
) -> Option<Arc<ChildMeta<K>>>
where
    K: Resource<DynamicType = ()> + Clone,
{
    store.get(&ObjectRef::new(name?).within(ns))
}

/// Reason of Reconciling while the Deployment rolls out the current rollout.
pub const ROLLING_OUT: &str = "RollingOut";

/// How often a rollout under way is looked at without a change of its Deployment.
const ROLLING_RECHECK: Duration = Duration::from_secs(30);

/// Follows the Deployment's rollout: sets Ready (or why not), the replica
/// counts, and, once the rollout concludes, readyAt, the record's outcome
/// and the function's adoption slot. `blocked` says why nothing new rolls
/// out, for a function whose gates are closed.
pub(super) async fn follow(
    nf: &NetworkFunction,
    ctx: &Context,
    ns: &str,
    status: &mut NetworkFunctionStatus,
    blocked: Option<(&str, String)>,
) -> Result<Action> {
    follow_next(nf, ctx, ns, status, blocked)
        .await
        .map(Action::requeue)
}

/// [`follow`], returning when to look again.
pub(super) async fn follow_next(
    nf: &NetworkFunction,
    ctx: &Context,
    ns: &str,
    status: &mut NetworkFunctionStatus,
    blocked: Option<(&str, String)>,
) -> Result<Duration> {
    let generation = nf.meta().generation;
    let concluding = status
        .deployed_with
        .as_ref()
        .is_some_and(|d| d.ready_at.is_none());
    let (deployment, rollout) = deployment_rollout(ctx, nf, ns, concluding).await?;
    let counts = deployment
        .as_ref()
        .and_then(|d| d.status.clone())
        .unwrap_or_default();
    status.replicas = Some(counts.replicas.unwrap_or(0));
    status.ready_replicas = Some(counts.ready_replicas.unwrap_or(0));
    let Some(deployed) = status.deployed_with.as_mut() else {
        return Ok(ROLLING_RECHECK);
    };
    let summary = format!(
        "{} {} on stack {} {}",
        nf.name_any(),
        deployed.version,
        deployed.stack.name,
        deployed.stack.version
    );
    let conds = &mut status.conditions;
    match rollout {
        Rollout::Complete => {
            if deployed.ready_at.is_none() {
                deployed.ready_at = Some(conditions::now_rfc3339());
                conclude(ctx, nf, ns, deployed, Outcome::Succeeded).await?;
                let in_use = configs::in_use(std::iter::once(&*deployed).chain(&status.history));
                configs::prune(ctx, nf, ns, &in_use).await?;
            }
            if let Some((reason, message)) = blocked {
                let message =
                    format!("{summary} keeps running, but nothing new rolls out: {message}");
                conditions::set(conds, conditions::READY, false, reason, message, generation);
                conditions::clear(conds, conditions::RECONCILING);
                conditions::clear(conds, conditions::STALLED);
            } else {
                let ready = counts.ready_replicas.unwrap_or(0);
                let message = format!("{summary}: {ready}/{} pods ready", nf.spec.replicas);
                conditions::ready(conds, "RolledOut", message, generation);
            }
            Ok(ctx.settings.resync_interval)
        }
        Rollout::Progressing(why) => {
            let message = format!("{summary}: {why}");
            conditions::progressing(conds, ROLLING_OUT, message, generation);
            Ok(ROLLING_RECHECK)
        }
        Rollout::Failed(why) => {
            conclude(ctx, nf, ns, deployed, Outcome::Failed).await?;
            let message = format!("{summary}: {why}");
            conditions::stalled(conds, waves::ROLLOUT_FAILED, message, generation);
            Ok(ctx.settings.resync_interval)
        }
    }
}

/// The function's Deployment and the state of its rollout, from the cache;
/// when a rollout not yet concluded looks concluded there, and the cache is
/// not known to show this process's last write of the Deployment, from the
/// API server. The cache can lag a template applied moments ago (by this
/// reconcile or an earlier one): it would show the previous rollout,
/// complete, and the new one would be declared Ready before any of its pods
/// exist. A cache at the generation this process's last apply (or read)
/// answered with, or a later one, shows that template or a newer one; after
/// a restart, or a write left without an answer, nothing is known, and the
/// Deployment is read.
async fn deployment_rollout(
    ctx: &Context,
    nf: &NetworkFunction,
    ns: &str,
    concluding: bool,
) -> Result<(Option<Arc<DeploymentState>>, Rollout)> {
    let name = nf.name_any();
    let state = |d: &Option<Arc<DeploymentState>>| {
        d.as_deref()
            .map(rollout_state)
            .unwrap_or(Rollout::Progressing("waiting for the Deployment".into()))
    };
    let cached = ctx
        .stores
        .deployments
        .get(&ObjectRef::new(&name).within(ns));
    let rollout = state(&cached);
    let shows_written = || {
        let shown = cached.as_deref().and_then(|d| d.metadata.generation);
        let written = ctx.traces.generation::<Deployment>(ns, &name);
        shown
            .zip(written)
            .is_some_and(|(shown, written)| shown >= written)
    };
    if !concluding || matches!(rollout, Rollout::Progressing(_)) || shows_written() {
        return Ok((cached, rollout));
    }
    let live = Api::<Deployment>::namespaced(ctx.client.clone(), ns)
        .get_opt(&name)
        .await?
        .map(|d| Arc::new(DeploymentState::from(d)));
    let rollout = state(&live);
    Ok((live, rollout))
}

/// Writes the outcome of `deployed`'s rollout into its record. (Its
/// adoption slot is freed once the status saying so is written: see
/// [`super::Functions::settled`].)
async fn conclude(
    ctx: &Context,
    nf: &NetworkFunction,
    ns: &str,
    deployed: &Provenance,
    outcome: Outcome,
) -> Result<()> {
    records::conclude(ctx, ns, &nf.name_any(), deployed, outcome).await
}

#[cfg(test)]
mod tests;
