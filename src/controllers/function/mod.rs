//! The NetworkFunction controller: resolves the function's Stack and
//! dependencies, rolls out its children, and records the provenance of every
//! rollout in its status and in a DeploymentRecord.

pub mod records;
pub mod resolve;

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::apps::v1::Deployment;
use kube::{
    Resource, ResourceExt,
    api::{Api, ObjectMeta, PartialObjectMeta},
    runtime::{
        controller::Action,
        events::EventType,
        reflector::{ObjectRef, Store},
    },
};

use super::{Applied, Ctx, apply_status, conditions, namespace_of};
use crate::{
    Error, Result,
    api::{
        NetworkFunction, NetworkFunctionStatus, Outcome, ServiceChain, StackRevisionRef,
        function::{Provenance, UpdatePolicy},
    },
    render::function::{Children, NextHop, ResolvedStack, desired, image_pinned},
};
use resolve::{Turn, Unresolved};

/// Field manager of everything the NetworkFunction controller writes.
pub const MANAGER: &str = "strata.dev/network-function";
/// Condition: the Stack resolved to a Ready, satisfying version.
pub const STACK_RESOLVED: &str = "StackResolved";
/// Condition: every dependency is Ready at a satisfying version.
pub const DEPENDENCIES_READY: &str = "DependenciesReady";
/// Annotation on each child: the digest of what Strata applied, so that an
/// unchanged child costs no write.
pub use super::APPLIED_DIGEST;

/// Reason of Reconciling while a consumer waits for its turn to adopt a new
/// Stack version (`consumerRollout.maxConcurrent`).
pub const QUEUED: &str = "Queued";

/// Whether `nf` is queued to adopt a new Stack version.
pub fn queued(nf: &NetworkFunction) -> bool {
    nf.status.as_ref().is_some_and(|s| {
        conditions::get(&s.conditions, conditions::RECONCILING).is_some_and(|c| c.reason == QUEUED)
    })
}

/// Reconciles one NetworkFunction.
pub async fn reconcile(nf: Arc<NetworkFunction>, ctx: Ctx) -> Result<Action> {
    crate::controllers::instrumented(&ctx, &*nf, reconcile_function(&nf, &ctx)).await
}

/// A Stalled error waits for a spec change; anything else is retried with backoff.
pub fn error_policy(nf: Arc<NetworkFunction>, error: &Error, _ctx: Ctx) -> Action {
    crate::controllers::retry_policy(&*nf, error)
}

async fn reconcile_function(nf: &NetworkFunction, ctx: &Ctx) -> Result<Action> {
    let ns = namespace_of(nf)?;
    if nf.meta().deletion_timestamp.is_some() {
        // Children go with their owner; records are not owned and stay.
        forget_metrics(ctx, nf);
        ctx.forget_status(nf);
        ctx.ledgers.forget(&nf.uid().unwrap_or_default());
        ctx.forget_children_of(nf);
        return Ok(Action::await_change());
    }
    if nf.spec.suspend {
        return Ok(Action::await_change());
    }
    let api: Api<NetworkFunction> = Api::namespaced(ctx.client.clone(), &ns);
    let old: NetworkFunctionStatus = ctx.fresh_status(nf, nf.status.as_ref());
    let mut status = old.clone();
    let generation = nf.meta().generation;

    let outcome = converge(nf, ctx, &ns, &mut status).await;
    let action = match outcome {
        Ok(action) => Ok(action),
        Err(error) if error.is_stalled() => {
            conditions::stalled(
                &mut status.conditions,
                error.reason(),
                error.to_string(),
                generation,
            );
            Err(error)
        }
        Err(error) => Err(error),
    };
    status.observed_generation = generation;
    publish_failure_once(nf, ctx, &old, &status).await;
    if status != old {
        apply_status(&api, nf, MANAGER, &status).await?;
        ctx.wrote_status(nf, &status);
    }
    observe_metrics(ctx, nf, &ns, &old, &status);
    action
}

/// Resolves, rolls out and observes; returns what to do next.
async fn converge(
    nf: &NetworkFunction,
    ctx: &Ctx,
    ns: &str,
    status: &mut NetworkFunctionStatus,
) -> Result<Action> {
    let generation = nf.meta().generation;
    let conds = &mut status.conditions;

    if let Some(cycle) = resolve::dependency_cycle(ctx, nf, ns) {
        return Err(Error::DependencyCycle(format!(
            "dependency cycle {cycle}; remove one of these dependsOn entries"
        )));
    }
    match resolve::blocking_dependency(ctx, nf, ns).await? {
        Some(why) => {
            conditions::set(
                conds,
                DEPENDENCIES_READY,
                false,
                "DependencyNotReady",
                why.clone(),
                generation,
            );
            if status.deployed_with.is_none() {
                conditions::progressing(
                    conds,
                    "DependencyNotReady",
                    format!("waiting: {why}"),
                    generation,
                );
                return Ok(Action::requeue(Duration::from_secs(30)));
            }
            // Running pods stay as they are; nothing new rolls out.
            return observe(nf, ctx, ns, status, None).await;
        }
        None => {
            let message = if nf.spec.depends_on.is_empty() {
                "no dependencies"
            } else {
                "every dependency is Ready at a satisfying version"
            };
            conditions::set(
                conds,
                DEPENDENCIES_READY,
                true,
                "DependenciesReady",
                message,
                generation,
            );
        }
    }

    let stack = match resolve::resolve_stack(ctx, nf, ns).await? {
        Ok(stack) => stack,
        Err(Unresolved { reason, message }) => {
            conditions::set(
                conds,
                STACK_RESOLVED,
                false,
                reason,
                message.clone(),
                generation,
            );
            if status.deployed_with.is_none() {
                conditions::progressing(conds, reason, format!("waiting: {message}"), generation);
                return Ok(Action::requeue(Duration::from_secs(30)));
            }
            return observe(nf, ctx, ns, status, Some((reason, message))).await;
        }
    };

    // Manual functions keep the Stack revision they recorded until their own spec changes.
    let spec_changed = status.observed_generation != generation;
    if let Some(current) = &status.deployed_with {
        let stack_moved =
            current.stack.version != stack.version || current.stack.digest != stack.digest;
        if stack_moved && !spec_changed && nf.spec.stack_ref.update_policy == UpdatePolicy::Manual {
            let message = format!(
                "held on stack {} {} by updatePolicy Manual; the stack is at {} (change the function's spec to adopt it)",
                stack.name, current.stack.version, stack.version
            );
            conditions::set(
                &mut status.conditions,
                STACK_RESOLVED,
                true,
                "HeldByPolicy",
                message,
                generation,
            );
            return observe(nf, ctx, ns, status, None).await;
        }
    }
    let message = format!(
        "stack {} {} ({}) satisfies {}",
        stack.name, stack.version, stack.digest, nf.spec.stack_ref.version
    );
    conditions::set(
        &mut status.conditions,
        STACK_RESOLVED,
        true,
        "Resolved",
        message,
        generation,
    );

    let children = desired(nf, &stack, &next_hops(ctx, nf, ns))?;
    let target = provenance(nf, &stack, &children);
    let new_rollout = status
        .deployed_with
        .as_ref()
        .is_none_or(|d| !same_rollout(d, &target));
    if new_rollout {
        let recorded = status.deployed_with.as_ref().map(|d| d.record.clone());
        let end = records::ledger_end(ctx, nf, ns, &target, recorded.as_deref()).await?;
        // What the function runs as far as its records tell: a killed
        // predecessor may have started rollouts it never wrote into the status.
        let current = end
            .unwritten
            .last()
            .map(records::provenance)
            .or_else(|| status.deployed_with.clone());
        if current
            .as_ref()
            .is_some_and(|current| only_the_stack_moved(current, &target))
            && let Turn::Queued {
                moving,
                total,
                budget,
            } = ctx.adoptions.request(ctx, nf, ns, &stack).await
        {
            let message = format!(
                "queued to adopt stack {} {}: {moving} of {total} consumers are moving now and consumerRollout.maxConcurrent allows {budget}",
                stack.name, stack.version
            );
            conditions::progressing(&mut status.conditions, QUEUED, message, generation);
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        start_rollout(nf, ctx, ns, status, target, &stack, end).await?;
    }
    apply_children(nf, ctx, ns, &children).await?;
    observe(nf, ctx, ns, status, None).await
}

/// What a rollout of `children` on `stack` would record.
fn provenance(nf: &NetworkFunction, stack: &ResolvedStack, children: &Children) -> Provenance {
    Provenance {
        version: nf.spec.version.clone(),
        image: nf.spec.image.clone(),
        image_pinned: image_pinned(&nf.spec.image),
        stack: StackRevisionRef {
            name: stack.name.clone(),
            version: stack.version.clone(),
            digest: stack.digest.clone(),
        },
        config_digest: children.config_digest.clone(),
        ..Provenance::default()
    }
}

/// Whether `deployed` and `target` are the same rollout (same function
/// version, image, Stack revision and configuration).
fn same_rollout(deployed: &Provenance, target: &Provenance) -> bool {
    deployed.version == target.version
        && deployed.image == target.image
        && deployed.stack == target.stack
        && deployed.config_digest == target.config_digest
}

/// Whether rolling out `target` after `current` only moves the function to
/// another revision of its Stack: an adoption, which waits for its turn
/// among the Stack's consumers. (A rollout that also changes what the
/// function's own spec says is the user's change, and does not wait.)
fn only_the_stack_moved(current: &Provenance, target: &Provenance) -> bool {
    current.version == target.version
        && current.image == target.image
        && current.config_digest == target.config_digest
        && current.stack.name == target.stack.name
        && current.stack != target.stack
}

/// Records a new rollout after the end of the function's ledger: a
/// DeploymentRecord, the provenance in status, Events.
async fn start_rollout(
    nf: &NetworkFunction,
    ctx: &Ctx,
    ns: &str,
    status: &mut NetworkFunctionStatus,
    mut target: Provenance,
    stack: &ResolvedStack,
    end: records::LedgerEnd,
) -> Result<()> {
    target.record = records::record_name(nf, &target, end.previous.as_deref());
    let (started_at, created) =
        records::ensure(ctx, nf, ns, &target, end.previous.as_deref()).await?;
    target.deployed_at = started_at;
    ctx.ledgers
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
        records::conclude(ctx, ns, &rollout.record, Outcome::Superseded).await?;
        status.history.insert(0, rollout.clone());
        previous = Some(rollout);
    }
    status
        .history
        .truncate(usize::try_from(nf.spec.history_limit.max(1)).unwrap_or(1));
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
        stack.name,
        stack.version,
        stack.digest,
        target.record
    );
    tracing::info!(record = %target.record, stack_version = %stack.version, "rollout started");
    ctx.publish(nf, EventType::Normal, "RolloutStarted", "Rollout", note)
        .await;
    if let Some(previous) = &previous
        && previous.stack.version != stack.version
    {
        let note = format!(
            "adopted stack {} {} (was {})",
            stack.name, stack.version, previous.stack.version
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
async fn apply_children(
    nf: &NetworkFunction,
    ctx: &Ctx,
    ns: &str,
    children: &Children,
) -> Result<()> {
    if let Some(config_map) = &children.config_map {
        let live = cached(
            &ctx.stores.config_maps,
            ns,
            config_map.metadata.name.as_ref(),
        );
        let applied =
            super::apply_if_changed(ctx, ns, MANAGER, config_map.clone(), || live).await?;
        report_drift(nf, ctx, config_map, applied).await;
    }
    let name = nf.name_any();
    let live = ctx
        .stores
        .deployments
        .get(&ObjectRef::new(&name).within(ns));
    let applied = super::apply_correcting_drift(
        ctx,
        ns,
        MANAGER,
        children.deployment.clone(),
        live.as_deref(),
    )
    .await?;
    report_drift(nf, ctx, &children.deployment, applied).await;
    if let Some(service) = &children.service {
        let live = cached(&ctx.stores.services, ns, service.metadata.name.as_ref());
        let applied = super::apply_if_changed(ctx, ns, MANAGER, service.clone(), || live).await?;
        report_drift(nf, ctx, service, applied).await;
    }
    Ok(())
}

/// Logs and publishes a `DriftCorrected` Event (related to `child`) when
/// `child` of `nf` had been changed by another writer and was restored.
async fn report_drift<K>(nf: &NetworkFunction, ctx: &Ctx, child: &K, applied: Applied)
where
    K: Resource<DynamicType = ()>,
{
    if applied != Applied::DriftCorrected {
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
    store: &Store<PartialObjectMeta<K>>,
    ns: &str,
    name: Option<&String>,
) -> Option<ObjectMeta>
where
    K: Resource<DynamicType = ()> + Clone,
{
    store
        .get(&ObjectRef::new(name?).within(ns))
        .map(|m| m.metadata.clone())
}

/// Reads the Deployment's rollout and sets Ready, the record outcome and readyAt.
async fn observe(
    nf: &NetworkFunction,
    ctx: &Ctx,
    ns: &str,
    status: &mut NetworkFunctionStatus,
    blocked: Option<(&str, String)>,
) -> Result<Action> {
    let generation = nf.meta().generation;
    let name = nf.name_any();
    let mut deployment = ctx
        .stores
        .deployments
        .get(&ObjectRef::new(&name).within(ns));
    let mut rollout = deployment
        .as_deref()
        .map(rollout_state)
        .unwrap_or(Rollout::Progressing("waiting for the Deployment".into()));
    let concluding = !matches!(rollout, Rollout::Progressing(_))
        && status
            .deployed_with
            .as_ref()
            .is_some_and(|d| d.ready_at.is_none());
    if concluding {
        // The cache can lag a template applied moments ago (by this reconcile
        // or an earlier one): it would show the previous rollout, complete,
        // and the new one would be declared Ready before any of its pods
        // exist. A rollout is concluded only on what the API server has.
        deployment = Api::<Deployment>::namespaced(ctx.client.clone(), ns)
            .get_opt(&name)
            .await?
            .map(Arc::new);
        rollout = deployment
            .as_deref()
            .map(rollout_state)
            .unwrap_or(Rollout::Progressing("waiting for the Deployment".into()));
    }
    let dstatus = deployment
        .as_ref()
        .and_then(|d| d.status.clone())
        .unwrap_or_default();
    status.replicas = Some(dstatus.replicas.unwrap_or(0));
    status.ready_replicas = Some(dstatus.ready_replicas.unwrap_or(0));
    let Some(deployed) = status.deployed_with.as_mut() else {
        return Ok(Action::requeue(Duration::from_secs(30)));
    };
    let summary = format!(
        "{} {} on stack {} {}",
        nf.name_any(),
        deployed.version,
        deployed.stack.name,
        deployed.stack.version
    );
    match rollout {
        Rollout::Complete => {
            if deployed.ready_at.is_none() {
                deployed.ready_at = Some(conditions::now_rfc3339());
                records::conclude(ctx, ns, &deployed.record, Outcome::Succeeded).await?;
                ctx.adoptions
                    .release(
                        &nf.name_any(),
                        ns,
                        &deployed.stack.name,
                        &deployed.stack.version,
                    )
                    .await;
            }
            match blocked {
                Some((reason, message)) => {
                    let message =
                        format!("{summary} keeps running, but nothing new rolls out: {message}");
                    conditions::set(
                        &mut status.conditions,
                        conditions::READY,
                        false,
                        reason,
                        message,
                        generation,
                    );
                    conditions::clear(&mut status.conditions, conditions::RECONCILING);
                    conditions::clear(&mut status.conditions, conditions::STALLED);
                }
                None => {
                    let ready = dstatus.ready_replicas.unwrap_or(0);
                    let message = format!("{summary}: {ready}/{} pods ready", nf.spec.replicas);
                    conditions::ready(&mut status.conditions, "RolledOut", message, generation);
                }
            }
            Ok(Action::requeue(ctx.settings.resync_interval))
        }
        Rollout::Progressing(why) => {
            conditions::progressing(
                &mut status.conditions,
                "RollingOut",
                format!("{summary}: {why}"),
                generation,
            );
            Ok(Action::requeue(Duration::from_secs(30)))
        }
        Rollout::Failed(why) => {
            records::conclude(ctx, ns, &deployed.record, Outcome::Failed).await?;
            ctx.adoptions
                .release(
                    &nf.name_any(),
                    ns,
                    &deployed.stack.name,
                    &deployed.stack.version,
                )
                .await;
            let message = format!("{summary}: {why}");
            conditions::stalled(&mut status.conditions, "RolloutFailed", message, generation);
            Ok(Action::requeue(ctx.settings.resync_interval))
        }
    }
}

/// The state of a Deployment's rollout of its current template.
#[derive(Debug, PartialEq, Eq)]
pub enum Rollout {
    /// Every desired pod runs the current template and is available.
    Complete,
    /// Pods are still being replaced or becoming available.
    Progressing(String),
    /// The rollout exceeded its progress deadline.
    Failed(String),
}

/// Reads a Deployment's rollout the way `kubectl rollout status` does.
pub fn rollout_state(d: &Deployment) -> Rollout {
    let desired = d.spec.replicas.unwrap_or(1);
    let Some(s) = &d.status else {
        return Rollout::Progressing("the Deployment has no status yet".into());
    };
    if s.observed_generation.unwrap_or(0) < d.metadata.generation.unwrap_or(0) {
        return Rollout::Progressing(
            "the Deployment controller has not seen the new template yet".into(),
        );
    }
    let deadline = s.conditions.iter().flatten().any(|c| {
        c.type_.as_deref() == Some("Progressing")
            && c.status.as_deref() == Some("False")
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if deadline {
        return Rollout::Failed("the rollout exceeded its progress deadline".into());
    }
    let updated = s.updated_replicas.unwrap_or(0);
    let available = s.available_replicas.unwrap_or(0);
    let total = s.replicas.unwrap_or(0);
    if updated < desired {
        return Rollout::Progressing(format!("{updated} of {desired} pods updated"));
    }
    if total > updated {
        return Rollout::Progressing(format!("{} old pods are terminating", total - updated));
    }
    if available < desired {
        return Rollout::Progressing(format!("{available} of {desired} pods available"));
    }
    Rollout::Complete
}

/// The next hops of `nf` in the chains it belongs to.
fn next_hops(ctx: &Ctx, nf: &NetworkFunction, ns: &str) -> Vec<NextHop> {
    let name = nf.name_any();
    let mut hops: Vec<NextHop> = ctx
        .stores
        .chains
        .state()
        .iter()
        .filter(|c| c.namespace().as_deref() == Some(ns) && c.meta().deletion_timestamp.is_none())
        .filter_map(|chain| next_hop(ctx, chain, &name, ns))
        .collect();
    hops.sort_by(|a, b| a.chain.cmp(&b.chain));
    hops
}

fn next_hop(ctx: &Ctx, chain: &ServiceChain, function: &str, ns: &str) -> Option<NextHop> {
    let hops = &chain.spec.hops;
    let at = hops.iter().position(|h| h.network_function == function)?;
    let next = hops.get(at + 1)?;
    let port = ctx
        .stores
        .functions
        .get(&ObjectRef::<NetworkFunction>::new(&next.network_function).within(ns))
        .and_then(|f| f.spec.ports.first().map(|p| p.port));
    Some(NextHop {
        chain: chain.name_any(),
        host: format!("{}.{ns}.svc", next.network_function),
        port,
    })
}

async fn publish_failure_once(
    nf: &NetworkFunction,
    ctx: &Ctx,
    old: &NetworkFunctionStatus,
    new: &NetworkFunctionStatus,
) {
    let types = [conditions::STALLED, STACK_RESOLVED, DEPENDENCIES_READY];
    for c in conditions::newly_failing(&old.conditions, &new.conditions, &types) {
        ctx.publish(
            nf,
            EventType::Warning,
            &c.reason,
            "Reconcile",
            c.message.clone(),
        )
        .await;
    }
}

/// Keeps `strata_networkfunction_info` and the cycle-time histograms current.
fn observe_metrics(
    ctx: &Ctx,
    nf: &NetworkFunction,
    ns: &str,
    old: &NetworkFunctionStatus,
    new: &NetworkFunctionStatus,
) {
    let name = nf.name_any();
    let labels = |d: &Provenance| {
        [
            ns.to_string(),
            name.clone(),
            d.version.clone(),
            d.stack.name.clone(),
            d.stack.version.clone(),
        ]
    };
    if let Some(previous) = &old.deployed_with
        && new
            .deployed_with
            .as_ref()
            .is_none_or(|d| labels(d) != labels(previous))
    {
        let l = labels(previous);
        let _ = ctx
            .metrics
            .networkfunction_info
            .remove_label_values(&l.each_ref().map(String::as_str));
    }
    if let Some(d) = &new.deployed_with {
        let l = labels(d);
        ctx.metrics
            .networkfunction_info
            .with_label_values(&l.each_ref().map(String::as_str))
            .set(1);
        let became_ready = d.ready_at.is_some()
            && old
                .deployed_with
                .as_ref()
                .is_none_or(|o| o.record != d.record || o.ready_at.is_none());
        if became_ready
            && let Some(seconds) =
                seconds_between(&d.deployed_at, d.ready_at.as_deref().unwrap_or_default())
        {
            ctx.metrics
                .deploy_cycle
                .with_label_values(&[] as &[&str])
                .observe(seconds);
        }
    }
    let was = conditions::get(&old.conditions, conditions::READY);
    let is_ready = conditions::is_true(&new.conditions, conditions::READY);
    if let Some(was) = was {
        let had_run = old
            .deployed_with
            .as_ref()
            .is_some_and(|d| d.ready_at.is_some())
            || !old.history.is_empty();
        if was.status == "False" && is_ready && had_run {
            let seconds = (k8s_openapi::jiff::Timestamp::now() - was.last_transition_time.0)
                .get_seconds() as f64;
            ctx.metrics
                .recovery
                .with_label_values(&[] as &[&str])
                .observe(seconds.max(0.0));
        }
    }
}

fn forget_metrics(ctx: &Ctx, nf: &NetworkFunction) {
    if let Some(d) = nf.status.as_ref().and_then(|s| s.deployed_with.as_ref()) {
        let ns = nf.namespace().unwrap_or_default();
        let name = nf.name_any();
        let _ = ctx.metrics.networkfunction_info.remove_label_values(&[
            &ns,
            &name,
            &d.version,
            &d.stack.name,
            &d.stack.version,
        ]);
    }
}

fn seconds_between(from: &str, to: &str) -> Option<f64> {
    let from: k8s_openapi::jiff::Timestamp = from.parse().ok()?;
    let to: k8s_openapi::jiff::Timestamp = to.parse().ok()?;
    Some((to - from).get_seconds() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(yaml: &str) -> Deployment {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn rollout_states() {
        let base = "metadata: {name: upf, generation: 2}\nspec: {replicas: 3, selector: {}, template: {}}\n";
        let d = deployment(&format!(
            "{base}status: {{observedGeneration: 1, replicas: 3, updatedReplicas: 3, availableReplicas: 3}}"
        ));
        assert!(
            matches!(rollout_state(&d), Rollout::Progressing(_)),
            "generation not observed yet"
        );
        let d = deployment(&format!(
            "{base}status: {{observedGeneration: 2, replicas: 4, updatedReplicas: 3, availableReplicas: 3}}"
        ));
        assert_eq!(
            rollout_state(&d),
            Rollout::Progressing("1 old pods are terminating".into())
        );
        let d = deployment(&format!(
            "{base}status: {{observedGeneration: 2, replicas: 3, updatedReplicas: 3, availableReplicas: 2}}"
        ));
        assert_eq!(
            rollout_state(&d),
            Rollout::Progressing("2 of 3 pods available".into())
        );
        let d = deployment(&format!(
            "{base}status: {{observedGeneration: 2, replicas: 3, updatedReplicas: 3, availableReplicas: 3}}"
        ));
        assert_eq!(rollout_state(&d), Rollout::Complete);
        let d = deployment(&format!(
            "{base}status: {{observedGeneration: 2, replicas: 3, updatedReplicas: 1, conditions: [{{type: Progressing, status: \"False\", reason: ProgressDeadlineExceeded}}]}}"
        ));
        assert!(matches!(rollout_state(&d), Rollout::Failed(_)));
    }

    #[test]
    fn only_a_move_to_another_stack_revision_is_an_adoption() {
        let current = Provenance {
            version: "1.0.0".into(),
            image: "i@sha256:0".into(),
            stack: StackRevisionRef {
                name: "edge".into(),
                version: "1.0.0".into(),
                digest: "sha256:a".into(),
            },
            config_digest: "sha256:c".into(),
            ..Provenance::default()
        };
        let mut moved = current.clone();
        moved.stack.version = "1.1.0".into();
        moved.stack.digest = "sha256:b".into();
        assert!(only_the_stack_moved(&current, &moved));
        assert!(!only_the_stack_moved(&current, &current), "nothing moved");
        let changes: [fn(&mut Provenance); 4] = [
            |p| p.version = "1.1.0".into(),
            |p| p.image = "i@sha256:1".into(),
            |p| p.config_digest = "sha256:d".into(),
            |p| p.stack.name = "core".into(),
        ];
        for change in changes {
            let mut respec = moved.clone();
            change(&mut respec);
            assert!(
                !only_the_stack_moved(&current, &respec),
                "a change of the function's own spec: {respec:?}"
            );
        }
    }

    #[test]
    fn rollouts_are_identified_by_what_they_deploy() {
        let a = Provenance {
            version: "2.3.1".into(),
            image: "i@sha256:0".into(),
            stack: StackRevisionRef {
                name: "edge".into(),
                version: "1.4.0".into(),
                digest: "sha256:a".into(),
            },
            config_digest: "sha256:c".into(),
            record: "upf-1".into(),
            deployed_at: "2026-11-20T10:00:00Z".into(),
            ready_at: Some("2026-11-20T10:01:00Z".into()),
            ..Provenance::default()
        };
        let mut b = a.clone();
        b.record = "upf-2".into();
        b.ready_at = None;
        assert!(
            same_rollout(&a, &b),
            "record names and times are not part of the identity"
        );
        b.stack.digest = "sha256:b".into();
        assert!(!same_rollout(&a, &b));
    }
}
