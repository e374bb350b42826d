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
    Context, FINALIZER, MANAGER, consumers::consumer_functions, identity::identity_of, locked,
    prune,
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
///
/// Until that event reaches the cache, a reconcile woken by something else
/// (a consumer's change) is handed the Stack as it was before the patch. A
/// second patch at that stale resourceVersion would only be refused (409),
/// so it is not sent. A conflict (the Stack changed since it was cached)
/// likewise waits for the change to arrive, without another patch from the
/// same stale Stack.
pub(super) async fn add_finalizer(
    stack: &Stack,
    ctx: &Context,
    api: &Api<Stack>,
) -> Result<Action> {
    let uid = stack.uid().unwrap_or_default();
    let version = stack.resource_version();
    if locked(&ctx.state.finalizer_added).get(&uid) == Some(&version) {
        return Ok(Action::await_change());
    }
    let mut finalizers = stack.finalizers().to_vec();
    finalizers.push(FINALIZER.into());
    match patch_finalizers(stack, api, &finalizers).await {
        Ok(()) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e.into()),
    }
    // Either way, the Stack at this resourceVersion is out of date.
    locked(&ctx.state.finalizer_added).insert(uid, version);
    Ok(Action::await_change())
}

/// The cache shows the finalizer: what [`add_finalizer`] remembered is
/// no longer needed.
pub(super) fn finalizer_seen(stack: &Stack, ctx: &Context) {
    let mut added = locked(&ctx.state.finalizer_added);
    if !added.is_empty() {
        added.remove(&stack.uid().unwrap_or_default());
    }
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

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;
    use crate::controllers::{
        fixtures::{Answer, context, object},
        stack::State,
    };

    const PATH: &str = "/apis/strata.dev/v1alpha1/namespaces/telco/stacks/edge-net";

    fn stack(resource_version: &str) -> Stack {
        serde_yaml::from_str(&format!(
            "apiVersion: strata.dev/v1alpha1\nkind: Stack\n\
             metadata: {{name: edge-net, namespace: telco, uid: s1, resourceVersion: '{resource_version}'}}\n\
             spec: {{version: 1.0.0}}"
        ))
        .unwrap()
    }

    /// A reconcile handed the Stack from before the finalizer's patch (the
    /// cache has not seen the patch yet) sends no second patch: it could
    /// only be refused as a conflict.
    #[tokio::test]
    async fn the_finalizer_is_added_once_while_the_cache_lags() {
        let patched = stack("11");
        let (ctx, _, requests) = context(State::default(), move |m, p| {
            assert_eq!((m, p), (&Method::PATCH, PATH));
            object(&patched)
        });
        let api: Api<Stack> = Api::namespaced(ctx.client.clone(), "telco");
        for _ in 0..2 {
            let action = add_finalizer(&stack("10"), &ctx, &api).await.unwrap();
            assert_eq!(action, Action::await_change());
        }
        assert_eq!(requests.seen().len(), 1, "one patch: {:?}", requests.seen());
    }

    /// A conflict (the Stack changed since it was cached) is no failure:
    /// it waits for the change, and the same stale Stack is not patched again.
    #[tokio::test]
    async fn a_conflict_waits_for_the_change() {
        let (ctx, _, requests) = context(State::default(), |m, p| {
            assert_eq!((m, p), (&Method::PATCH, PATH));
            Answer::Conflict
        });
        let api: Api<Stack> = Api::namespaced(ctx.client.clone(), "telco");
        for _ in 0..2 {
            let action = add_finalizer(&stack("10"), &ctx, &api).await.unwrap();
            assert_eq!(action, Action::await_change());
        }
        assert_eq!(requests.seen().len(), 1);
    }

    /// A newer Stack without the finalizer (someone removed it) gets it again.
    #[tokio::test]
    async fn a_newer_stack_without_the_finalizer_is_patched_again() {
        let (ctx, _, requests) = context(State::default(), |_, _| object(&stack("12")));
        let api: Api<Stack> = Api::namespaced(ctx.client.clone(), "telco");
        add_finalizer(&stack("10"), &ctx, &api).await.unwrap();
        add_finalizer(&stack("12"), &ctx, &api).await.unwrap();
        assert_eq!(requests.seen().len(), 2);
    }
}
