//! The Stack's finalizer: a Stack is not deleted while NetworkFunctions
//! consume it (its status says who holds it), and a pruning Stack deletes
//! what it manages before it goes.

use std::time::Duration;

use kube::{
    Resource, ResourceExt,
    api::{Api, Patch, PatchParams},
    runtime::{controller::Action, events::EventType},
};
use serde_json::json;

use super::{
    Context, FINALIZER, MANAGER, consumers::consumer_functions, identity::identity_of, prune,
};
use crate::{
    Result,
    api::{Stack, StackStatus},
    controllers::{apply::write_status, conditions},
};

/// How often a deletion held by consumers is looked at again.
const IN_USE_RECHECK: Duration = Duration::from_secs(30);

/// Whether `stack` carries the finalizer.
pub(super) fn has_finalizer(stack: &Stack) -> bool {
    stack.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds the finalizer. The patch is an event of its own: the reconcile it
/// triggers applies the Stack.
pub(super) async fn add_finalizer(stack: &Stack, api: &Api<Stack>) -> Result<Action> {
    let mut finalizers = stack.finalizers().to_vec();
    finalizers.push(FINALIZER.into());
    patch_finalizers(stack, api, &finalizers).await?;
    Ok(Action::await_change())
}

/// Deletion: wait while NetworkFunctions consume the Stack, then delete what
/// it manages (when it prunes), then let it go.
pub(super) async fn finalize(
    stack: &Stack,
    ctx: &Context,
    api: &Api<Stack>,
    ns: &str,
) -> Result<Action> {
    if !has_finalizer(stack) {
        return Ok(Action::await_change());
    }
    let users: Vec<String> = consumer_functions(ctx, ns, &stack.name_any())
        .iter()
        .map(|nf| nf.name_any())
        .collect();
    if !users.is_empty() {
        report_in_use(stack, ctx, api, &users).await?;
        return Ok(Action::requeue(IN_USE_RECHECK));
    }
    if stack.spec.prune {
        let identity = identity_of(stack, ctx, ns)?;
        let status: StackStatus = ctx.fresh_status(stack, stack.status.as_ref());
        prune::delete_all(stack, ctx, ns, &identity, &status.inventory).await?;
    }
    let finalizers: Vec<String> = stack
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    match patch_finalizers(stack, api, &finalizers).await {
        Ok(()) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    // What this process remembers of the Stack is forgotten when its watch
    // sees it go.
    Ok(Action::await_change())
}

/// Says in the Stack's status (and once in an Event) which NetworkFunctions
/// hold its deletion.
async fn report_in_use(
    stack: &Stack,
    ctx: &Context,
    api: &Api<Stack>,
    users: &[String],
) -> Result<()> {
    let old: StackStatus = ctx.fresh_status(stack, stack.status.as_ref());
    let mut status = old.clone();
    let generation = stack.meta().generation;
    // Deletion bumps the generation: the status describes this one.
    status.observed_generation = generation;
    let message = format!(
        "deletion waits: NetworkFunctions {} still use stack {}; delete them or point them at another stack",
        users.join(", "),
        stack.name_any()
    );
    let held = [(conditions::READY, false), (conditions::RECONCILING, true)];
    for (type_, value) in held {
        conditions::set(
            &mut status.conditions,
            type_,
            value,
            "InUse",
            message.clone(),
            generation,
        );
    }
    if status != old {
        ctx.publish(stack, EventType::Warning, "InUse", "Delete", message)
            .await;
        write_status(api, stack, MANAGER, &status).await?;
        ctx.wrote_status(stack, &status);
    }
    Ok(())
}

/// Sets the Stack's finalizers to `finalizers`, at the resourceVersion it
/// was read at, so a concurrent change of them is not overwritten.
async fn patch_finalizers(
    stack: &Stack,
    api: &Api<Stack>,
    finalizers: &[String],
) -> Result<(), kube::Error> {
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": stack.resource_version()}});
    api.patch(
        &stack.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(drop)
}
