//! What a NetworkFunction passes before anything new rolls out, in order:
//! its dependencies, its Stack, the update policy, and its turn among the
//! Stack's consumers. Each gate either lets the function through or says
//! what to do instead (`ControlFlow::Break`), having set the conditions
//! that tell why. A function that already runs keeps running behind a
//! closed gate; its rollout is still followed.

use std::{ops::ControlFlow, time::Duration};

use kube::runtime::controller::Action;

use super::{
    ADOPTION_HALTED, Context, DEPENDENCIES_READY, QUEUED, STACK_RESOLVED, adoption::Turn,
    records::LedgerEnd, resolve, rollout,
};
use crate::{
    Error, Result,
    api::{
        NetworkFunction, NetworkFunctionStatus,
        function::{Provenance, UpdatePolicy},
    },
    controllers::{conditions, waves},
    render::function::ResolvedStack,
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
        return Ok(Action::requeue(WAITING_RECHECK));
    }
    let blocked = blocks_ready.then_some((reason, why));
    rollout::follow(nf, ctx, ns, status, blocked).await
}

#[cfg(test)]
mod tests;
