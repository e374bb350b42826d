//! What a NetworkFunction passes before anything new rolls out, in order:
//! its dependencies, its Stack, the update policy, the promotion gate, and
//! its turn among the Stack's consumers. Each gate either lets the function through or says
//! what to do instead (`ControlFlow::Break`), having set the conditions
//! that tell why. A function that already runs keeps running behind a
//! closed gate; its rollout is still followed.

use std::{ops::ControlFlow, time::Duration};

use kube::runtime::controller::Action;

use kube::{ResourceExt, runtime::reflector::ObjectRef};

use super::{
    ADOPTION_HALTED, Context, DEPENDENCIES_READY, QUEUED, STACK_RESOLVED, VERIFIED,
    adoption::Turn,
    promotion::{self, Artifact, Verdict},
    records::LedgerEnd,
    resolve, rollout,
    upstream::{Source, View},
};
use crate::{
    Error, Result,
    api::{
        NetworkFunction, NetworkFunctionStatus,
        function::{Provenance, UpdatePolicy},
        promotion::{Evidence, format_duration, parse_duration},
    },
    controllers::{conditions, waves},
    render::function::{ResolvedStack, image_pinned},
};

/// How often a function that never ran looks again at what it waits for.
const WAITING_RECHECK: Duration = Duration::from_secs(30);
/// How often a queued consumer asks for its turn again.
const QUEUED_RECHECK: Duration = Duration::from_secs(2);

/// Every dependency is Ready at a satisfying version, and none is in a cycle.
pub(super) async fn dependencies(
    nf: &NetworkFunction,
    ctx: &Context,
    ns: &str,
    status: &mut NetworkFunctionStatus,
) -> Result<ControlFlow<Action>> {
    let generation = nf.metadata.generation;
    if let Some(cycle) = resolve::dependency_cycle(ctx, nf, ns) {
        return Err(Error::DependencyCycle(format!(
            "dependency cycle {cycle}; remove one of these dependsOn entries"
        )));
    }
    let Some(why) = resolve::blocking_dependency(ctx, nf, ns).await? else {
        let message = if nf.spec.depends_on.is_empty() {
            "no dependencies"
        } else {
            "every dependency is Ready at a satisfying version"
        };
        let conds = &mut status.conditions;
        conditions::set(
            conds,
            DEPENDENCIES_READY,
            true,
            "DependenciesReady",
            message,
            generation,
        );
        return Ok(ControlFlow::Continue(()));
    };
    let failed = (DEPENDENCIES_READY, "DependencyNotReady");
    closed(nf, ctx, ns, status, failed, why, false)
        .await
        .map(ControlFlow::Break)
}

/// The Stack exists, is Ready, and its version satisfies `stackRef.version`.
pub(super) async fn stack(
    nf: &NetworkFunction,
    ctx: &Context,
    ns: &str,
    status: &mut NetworkFunctionStatus,
) -> Result<ControlFlow<Action, ResolvedStack>> {
    match resolve::resolve_stack(ctx, nf, ns).await? {
        Ok(stack) => Ok(ControlFlow::Continue(stack)),
        Err(resolve::Unresolved { reason, message }) => {
            closed(nf, ctx, ns, status, (STACK_RESOLVED, reason), message, true)
                .await
                .map(ControlFlow::Break)
        }
    }
}

/// `updatePolicy: Manual` holds a function on the Stack revision it
/// recorded until its own spec changes.
pub(super) async fn policy(
    nf: &NetworkFunction,
    ctx: &Context,
    ns: &str,
    status: &mut NetworkFunctionStatus,
    stack: &ResolvedStack,
) -> Result<ControlFlow<Action>> {
    let generation = nf.metadata.generation;
    let spec_changed = status.observed_generation != generation;
    if let Some(current) = &status.deployed_with {
        let stack_moved =
            current.stack.version != stack.version || current.stack.digest != stack.digest;
        if stack_moved && !spec_changed && nf.spec.stack_ref.update_policy == UpdatePolicy::Manual {
            let message = format!(
                "held on stack {} {} by updatePolicy Manual; the stack is at {} (change the function's spec to adopt it)",
                stack.name, current.stack.version, stack.version
            );
            let conds = &mut status.conditions;
            conditions::set(
                conds,
                STACK_RESOLVED,
                true,
                "HeldByPolicy",
                message,
                generation,
            );
            return rollout::follow(nf, ctx, ns, status, None)
                .await
                .map(ControlFlow::Break);
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
    Ok(ControlFlow::Continue(()))
}

/// The promotion gate (`spec.promotion`): the artifact (function version
/// and pinned image on this Stack version) must be verified in every
/// upstream environment it names. Passes with the evidence for the record.
/// When nothing new would roll out (`new_rollout` false), it only says
/// whether what runs is (still) verified.
pub(super) async fn promotion(
    nf: &NetworkFunction,
    ctx: &Context,
    ns: &str,
    status: &mut NetworkFunctionStatus,
    stack: &ResolvedStack,
    new_rollout: bool,
) -> Result<ControlFlow<Action, Vec<Evidence>>> {
    let generation = nf.metadata.generation;
    let me = ObjectRef::from_obj(nf);
    let Some(gate) = &nf.spec.promotion else {
        ctx.state.upstreams.forget(&me);
        let conds = &mut status.conditions;
        let message = "no promotion gate is declared";
        conditions::set(
            conds,
            VERIFIED,
            true,
            "NoPromotionGate",
            message,
            generation,
        );
        return Ok(ControlFlow::Continue(Vec::new()));
    };
    if !image_pinned(&nf.spec.image) {
        ctx.state.upstreams.forget(&me);
        let message = format!(
            "spec.image {} is not pinned by digest (name@sha256:...): a promotion gate can only verify an immutable artifact",
            nf.spec.image
        );
        let conds = &mut status.conditions;
        conditions::set(
            conds,
            VERIFIED,
            false,
            "ImageNotPinned",
            message.clone(),
            generation,
        );
        return Err(Error::ImageNotPinned(message));
    }
    let name = nf.name_any();
    let mut sources = Vec::new();
    let mut soaks = Vec::new();
    for (i, requirement) in gate.require_verified_in.iter().enumerate() {
        let soak = parse_duration(&requirement.soak).map_err(|e| {
            Error::InvalidField(format!("spec.promotion.requireVerifiedIn[{i}].soak: {e}"))
        })?;
        soaks.push(soak);
        sources.push(Source {
            cluster: requirement
                .kube_config
                .as_ref()
                .map(|k| (ns.to_string(), k.secret_ref.clone())),
            namespace: requirement.namespace.clone(),
            function: requirement.function(&name).to_string(),
        });
    }
    let live = || {
        ctx.stores
            .functions
            .get(&me)
            .is_some_and(|cached| cached.metadata.uid == nf.metadata.uid)
    };
    let views = ctx
        .state
        .upstreams
        .require(&ctx.client, &me, &sources, live);
    if views.len() < sources.len() {
        // Deleted meanwhile: nothing more to do for it.
        return Ok(ControlFlow::Break(Action::await_change()));
    }
    let artifact = Artifact {
        version: &nf.spec.version,
        image: &nf.spec.image,
        stack: &stack.name,
        stack_version: &stack.version,
    };
    if views.iter().any(|v| matches!(v, View::Connecting)) {
        // Not read yet (a watch just started): nothing to say, and nothing
        // new rolls out; the first list wakes the function.
        return Ok(if new_rollout {
            ControlFlow::Break(Action::requeue(WAITING_RECHECK))
        } else {
            ControlFlow::Continue(Vec::new())
        });
    }
    let now = k8s_openapi::jiff::Timestamp::now();
    let mut evidence = Vec::new();
    let mut holds: Option<(&str, String, Option<Duration>)> = None;
    for ((source, view), soak) in sources.iter().zip(views).zip(soaks) {
        let where_ = source.describe();
        let (cluster, records) = match view {
            View::Synced { cluster, records } => (cluster, records),
            View::Connecting => continue,
            View::Unreachable(why) => {
                holds.get_or_insert(("UpstreamUnreachable", why, None));
                continue;
            }
        };
        match promotion::verify(&records, &artifact, soak, now) {
            Verdict::Verified { record, soaked } => evidence.push(Evidence {
                cluster,
                namespace: source.namespace.clone(),
                record,
                soaked: format_duration(soaked),
            }),
            verdict => {
                let why = verdict.explain(&where_);
                holds.get_or_insert((verdict.reason(), why, verdict.recheck()));
            }
        }
    }
    let described = artifact.describe(&name);
    let Some((reason, why, recheck)) = holds else {
        // Stable words (the soak so far is in the record's evidence, not
        // here): a verified function's status does not change per pass.
        let message = format!(
            "{described} is verified upstream: {}",
            gate.require_verified_in
                .iter()
                .zip(&evidence)
                .map(|(r, e)| format!(
                    "{} record {} ran the soak of {}",
                    e.namespace, e.record, r.soak
                ))
                .collect::<Vec<_>>()
                .join("; ")
        );
        let conds = &mut status.conditions;
        conditions::set(
            conds,
            VERIFIED,
            true,
            "VerifiedUpstream",
            message,
            generation,
        );
        return Ok(ControlFlow::Continue(evidence));
    };
    let why = format!("{described}: {why}");
    tracing::debug!(reason, new_rollout, "promotion gate: not verified");
    if !new_rollout {
        // Nothing new to hold back: what runs keeps running, and the
        // condition says its verification no longer holds.
        let conds = &mut status.conditions;
        conditions::set(conds, VERIFIED, false, reason, why, generation);
        return Ok(ControlFlow::Continue(Vec::new()));
    }
    // A gate that cannot decide stays shut; one that is soaking looks
    // again the moment the soak ends.
    let failed = (VERIFIED, reason);
    closed_until(nf, ctx, ns, status, failed, why, true, recheck)
        .await
        .map(ControlFlow::Break)
}

/// A rollout that only moves the function to another revision of its Stack
/// (an adoption) waits for its turn among the Stack's consumers
/// (`consumerRollout.maxConcurrent`). A rollout that also changes what the
/// function's own spec says is the user's change, and does not wait.
pub(super) async fn adoption_turn(
    nf: &NetworkFunction,
    ctx: &Context,
    ns: &str,
    status: &mut NetworkFunctionStatus,
    stack: &ResolvedStack,
    target: &Provenance,
    end: &LedgerEnd,
) -> Result<ControlFlow<Action>> {
    // What the function runs as far as its records tell: a killed
    // predecessor may have started rollouts it never wrote into the status.
    let current = end
        .unwritten
        .last()
        .map(super::records::provenance)
        .or_else(|| status.deployed_with.clone());
    if !current
        .as_ref()
        .is_some_and(|current| waves::moved(current, target))
    {
        return Ok(ControlFlow::Continue(()));
    }
    let (reason, message) = match ctx.state.adoptions.request(ctx, nf, ns, stack).await? {
        Turn::Admitted => return Ok(ControlFlow::Continue(())),
        Turn::Queued {
            moving,
            total,
            budget,
        } => (
            QUEUED,
            format!(
                "queued to adopt stack {} {}: {moving} of {total} consumers are moving now and consumerRollout.maxConcurrent allows {budget}",
                stack.name, stack.version
            ),
        ),
        Turn::Waiting { step, done, total } => (
            QUEUED,
            format!(
                "queued to adopt stack {} {}: waiting for step {step} to complete ({done} of {total} consumers run it and are Ready)",
                stack.name, stack.version
            ),
        ),
        Turn::Halted(why) => (ADOPTION_HALTED, why),
    };
    let generation = nf.metadata.generation;
    conditions::progressing(&mut status.conditions, reason, message, generation);
    Ok(ControlFlow::Break(Action::requeue(QUEUED_RECHECK)))
}

/// A closed gate: condition `failed.0` False with reason `failed.1` and
/// message `why`. A function that never ran waits (Reconciling); one that
/// runs keeps its pods, and its rollout is followed, `why` telling (when
/// `blocks_ready`) why Ready is False once it is complete.
async fn closed(
    nf: &NetworkFunction,
    ctx: &Context,
    ns: &str,
    status: &mut NetworkFunctionStatus,
    failed: (&str, &str),
    why: String,
    blocks_ready: bool,
) -> Result<Action> {
    closed_until(nf, ctx, ns, status, failed, why, blocks_ready, None).await
}

/// [`closed`], looking again after `recheck` at the latest, when the gate
/// knows when it opens.
#[allow(clippy::too_many_arguments)]
async fn closed_until(
    nf: &NetworkFunction,
    ctx: &Context,
    ns: &str,
    status: &mut NetworkFunctionStatus,
    failed: (&str, &str),
    why: String,
    blocks_ready: bool,
    recheck: Option<Duration>,
) -> Result<Action> {
    // A moment past the instant, so that the soak has ended when it looks.
    let recheck = recheck.map(|d| d + Duration::from_millis(10));
    let (type_, reason) = failed;
    let generation = nf.metadata.generation;
    conditions::set(
        &mut status.conditions,
        type_,
        false,
        reason,
        why.clone(),
        generation,
    );
    if status.deployed_with.is_none() {
        conditions::progressing(
            &mut status.conditions,
            reason,
            format!("waiting: {why}"),
            generation,
        );
        let next = recheck.map_or(WAITING_RECHECK, |r| r.min(WAITING_RECHECK));
        return Ok(Action::requeue(next));
    }
    let blocked = blocks_ready.then_some((reason, why));
    let next = rollout::follow_next(nf, ctx, ns, status, blocked).await?;
    Ok(Action::requeue(recheck.map_or(next, |r| r.min(next))))
}

#[cfg(test)]
mod tests;
