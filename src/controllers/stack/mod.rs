//! The Stack controller, as a pipeline. After admission (deletion goes to
//! [`finalize`], a new Stack gets the finalizer, a suspended one is left as
//! it is), each reconcile:
//!
//! 1. renders the Stack and checks that an applied version keeps its
//!    content ([`history`]);
//! 2. plans every resource: kind and scope resolved, namespace defaulted,
//!    labelled and owned ([`plan`]);
//! 3. picks whom to write as: the Stack's ServiceAccount, else the operator
//!    ([`identity`]);
//! 4. picks what to apply: everything when the content changed, what
//!    drifted when a drift check is due ([`drift`]);
//! 5. picks what to prune: objects applied before and no longer declared
//!    ([`prune`]);
//! 6. writes: every apply and delete as a dry run, then for real, refusals
//!    named ([`write`]);
//! 7. records what was applied in the status ([`history`]);
//! 8. counts the consumers, holding back writes of the counts alone, and
//!    sets their metrics ([`consumers`]);
//! 9. reports how the consumers adopt the applied version, in waves,
//!    halting when too many fail on it ([`adoption`]).
//!
//! The skeleton around it ([`skeleton`]) marks spec errors Stalled,
//! publishes failures once and writes the status only when it changed.

mod adoption;
mod consumers;
mod drift;
mod finalize;
mod history;
mod identity;
mod plan;
mod prune;
mod redact;
mod write;

use std::{
    collections::{BTreeSet, HashMap},
    ops::ControlFlow,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{
    Client, Resource, ResourceExt,
    api::{Api, ApiResource, GroupVersionKind},
    discovery::ApiCapabilities,
    runtime::{controller::Action, events::EventType},
};

use super::{
    conditions,
    skeleton::{self, Reconciler},
};
use crate::{
    Error, Result,
    api::{Stack, StackStatus, stack::ManagedObject},
    render::stack::render_stack,
};

/// Field manager of everything the Stack controller writes.
pub const MANAGER: &str = "strata.dev/stack";
/// Holds a Stack's deletion until no NetworkFunction consumes it.
pub const FINALIZER: &str = "strata.dev/stack-protection";

/// What the Stack controller remembers between reconciles. Losing it (a
/// restart) costs a read of each managed object, and a re-apply of those
/// whose values differ from the declaration, never correctness.
#[derive(Default)]
pub struct State {
    /// A client per ServiceAccount that Stacks are written as ([`identity`]).
    impersonated: Mutex<HashMap<String, Client>>,
    /// Kinds resolved through discovery ([`plan`]).
    discovery: Mutex<HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>>,
    /// Fingerprint of each managed object as it was right after Strata
    /// applied it, by Stack uid ([`drift`]).
    fingerprints: Mutex<HashMap<(String, ManagedObject), String>>,
    /// When each Stack's objects were last compared with their fingerprints.
    last_drift_check: Mutex<HashMap<String, Instant>>,
    /// When each Stack's status was last written, and the consumer counts
    /// a write holds back ([`consumers`]).
    count_writes: Mutex<HashMap<String, consumers::CountWrites>>,
    /// The resourceVersion each Stack had when this process added its
    /// finalizer ([`finalize`]): until the cache shows a newer one, the
    /// Stack it hands out is the one from before the patch.
    finalizer_added: Mutex<HashMap<String, Option<String>>>,
}

type Context = super::Context<State>;
/// The Stack controller's context.
pub type Ctx = Arc<Context>;

/// The Stack controller, for the skeleton.
pub struct Stacks;

impl Reconciler for Stacks {
    type Kind = Stack;
    type Status = StackStatus;
    type State = State;
    const MANAGER: &'static str = MANAGER;
    const FAILURES: &'static [&'static str] = &[conditions::STALLED];

    fn status(stack: &Stack) -> Option<&StackStatus> {
        stack.status.as_ref()
    }
    fn conditions(status: &StackStatus) -> &[Condition] {
        &status.conditions
    }
    fn conditions_mut(status: &mut StackStatus) -> &mut Vec<Condition> {
        &mut status.conditions
    }
    fn observed(status: &mut StackStatus, generation: Option<i64>) {
        status.observed_generation = generation;
    }

    /// A deleted Stack is finalized; a new one gets the finalizer first; a
    /// suspended one is left as it is.
    async fn admit(stack: &Stack, ctx: &Context, ns: &str) -> Result<ControlFlow<Action>> {
        let api: Api<Stack> = Api::namespaced(ctx.client.clone(), ns);
        if stack.meta().deletion_timestamp.is_some() {
            let action = finalize::finalize(stack, ctx, &api, ns).await?;
            return Ok(ControlFlow::Break(action));
        }
        if !finalize::has_finalizer(stack) {
            let action = finalize::add_finalizer(stack, ctx, &api).await?;
            return Ok(ControlFlow::Break(action));
        }
        finalize::finalizer_seen(stack, ctx);
        if stack.spec.suspend {
            return Ok(ControlFlow::Break(Action::await_change()));
        }
        Ok(ControlFlow::Continue(()))
    }

    /// The pipeline, then the consumer counts (also when it failed), then
    /// Ready and, for a new version, an Event.
    async fn converge(
        stack: &Stack,
        ctx: &Context,
        ns: &str,
        status: &mut StackStatus,
    ) -> Result<Action> {
        let before = status.version.clone();
        let applied = converge(stack, ctx, ns, status).await;
        let counted = consumers::consumers(stack, ctx, ns, status.version.as_deref());
        status.consumers = Some(counted);
        applied?;
        announce_applied(stack, ctx, status, before.as_deref()).await;
        adoption::report(stack, ctx, ns, status)?;
        Ok(Action::requeue(ctx.settings.resync_interval))
    }

    /// A write that only changes the consumer counts waits for them to
    /// settle ([`consumers`]).
    async fn defer_write(
        ctx: &Context,
        stack: &Stack,
        old: &StackStatus,
        new: &StackStatus,
    ) -> Option<Action> {
        let uid = stack.uid().unwrap_or_default();
        consumers::count_write_wait(ctx, &uid, old, new).map(Action::requeue)
    }

    async fn settled(
        ctx: &Context,
        stack: &Stack,
        ns: &str,
        old: &StackStatus,
        new: &StackStatus,
        written: bool,
    ) {
        if written {
            consumers::status_written(ctx, stack.uid().unwrap_or_default());
        }
        consumers::record_metrics(ctx, ns, stack, new);
        adoption::record_metrics(ctx, ns, stack, old.rollout.as_ref(), new.rollout.as_ref());
    }

    /// A Stalled Stack whose fix is made outside it (granting the
    /// ServiceAccount a permission, installing a CRD) is looked at again
    /// periodically.
    fn recheck(ctx: &Context, error: &Error) -> Option<Duration> {
        matches!(error, Error::Forbidden(_) | Error::UnknownKind(_))
            .then(|| ctx.settings.resync_interval.min(RECHECK_OUTSIDE_FIX))
    }
}

/// How often a Stack stalled by something outside its spec is tried again.
const RECHECK_OUTSIDE_FIX: Duration = Duration::from_secs(60);

/// Reconciles one Stack.
pub async fn reconcile(stack: Arc<Stack>, ctx: Ctx) -> Result<Action> {
    skeleton::reconcile::<Stacks>(stack, ctx).await
}

/// What to do after a failed reconcile (see [`Stacks::recheck`]).
pub fn error_policy(stack: Arc<Stack>, error: &Error, ctx: Ctx) -> Action {
    skeleton::error_policy::<Stacks>(stack, error, ctx)
}

/// Forgets what this process remembers of a deleted Stack.
pub fn forget(ctx: &Context, stack: &Stack) {
    skeleton::forget::<Stacks>(ctx, stack);
    let uid = stack.uid().unwrap_or_default();
    locked(&ctx.state.fingerprints).retain(|(owner, _), _| owner != &uid);
    locked(&ctx.state.last_drift_check).remove(&uid);
    locked(&ctx.state.count_writes).remove(&uid);
    locked(&ctx.state.finalizer_added).remove(&uid);
    let rollout = stack.status.as_ref().and_then(|s| s.rollout.as_ref());
    let ns = stack.namespace().unwrap_or_default();
    adoption::record_metrics(ctx, &ns, stack, rollout, None);
}

/// The map behind `mutex`: no code panics while holding one, and a map
/// half-updated would still hold only whole entries.
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Renders, plans and writes the Stack, then records in `status` what was applied.
async fn converge(stack: &Stack, ctx: &Context, ns: &str, status: &mut StackStatus) -> Result<()> {
    let rendered = render_stack(&stack.spec)?;
    history::check_immutable(&rendered, status)?;
    let planned = plan::plan(stack, ctx, ns, &rendered).await?;
    let identity = identity::identity_of(stack, ctx, ns)?;

    let content_changed = history::content_changed(&rendered, status);
    let applies = drift::to_apply(stack, ctx, &identity, &planned, content_changed).await?;
    let declared: BTreeSet<ManagedObject> = planned.iter().map(|p| p.id.clone()).collect();
    let deletes = prune::to_prune(stack, ctx, ns, &status.inventory, &declared).await?;

    let writes = write::Writes { applies, deletes };
    write::dry_run(stack, &identity, &writes).await?;
    record_ahead(stack, ctx, ns, status, &declared).await?;
    write::commit(stack, ctx, ns, &identity, &writes).await?;

    history::record_applied(status, rendered, declared, stack.spec.history_limit);
    Ok(())
}

/// Records in the inventory the objects about to be created, before they
/// are: a process killed between creating them and recording what it
/// applied leaves them to be pruned by the next reconcile (which may apply
/// yet another version), not orphaned. One status write, only when the
/// inventory grows.
async fn record_ahead(
    stack: &Stack,
    ctx: &Context,
    ns: &str,
    status: &mut StackStatus,
    declared: &BTreeSet<ManagedObject>,
) -> Result<()> {
    let mut inventory: BTreeSet<ManagedObject> = status.inventory.iter().cloned().collect();
    let before = inventory.len();
    inventory.extend(declared.iter().cloned());
    if inventory.len() == before {
        return Ok(());
    }
    status.inventory = inventory.into_iter().collect();
    let api: Api<Stack> = Api::namespaced(ctx.client.clone(), ns);
    super::apply::write_status(&api, stack, MANAGER, &*status).await?;
    ctx.wrote_status(stack, &*status);
    Ok(())
}

/// Marks the Stack Ready with what was applied, and publishes an Event when
/// the version differs from `before`.
async fn announce_applied(
    stack: &Stack,
    ctx: &Context,
    status: &mut StackStatus,
    before: Option<&str>,
) {
    let version = status.version.clone().unwrap_or_default();
    let digest = status.digest.clone().unwrap_or_default();
    let message = format!(
        "version {version} applied: {} objects, digest {digest}",
        status.inventory.len(),
    );
    conditions::ready(
        &mut status.conditions,
        "Applied",
        message,
        stack.meta().generation,
    );
    if status.version.as_deref() != before {
        let note = format!("applied version {version} ({digest})");
        ctx.publish(stack, EventType::Normal, "VersionApplied", "Apply", note)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;
    use crate::controllers::fixtures::{context, no_requests, object};

    fn config_map(name: &str) -> ManagedObject {
        ManagedObject {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("telco".into()),
            name: name.into(),
        }
    }

    fn stack() -> Stack {
        serde_yaml::from_str(
            "apiVersion: strata.dev/v1alpha1\nkind: Stack\n\
             metadata: {name: edge-net, namespace: telco, uid: s1, generation: 2}\n\
             spec: {version: 1.2.0}",
        )
        .unwrap()
    }

    /// A kill between creating a new version's objects and recording them
    /// must not orphan them: they are in the inventory before they exist.
    #[tokio::test]
    async fn objects_about_to_be_created_are_recorded_first() {
        let live = stack();
        let (ctx, _, requests) = context(State::default(), move |m, p| {
            assert_eq!(
                (m, p),
                (
                    &Method::PATCH,
                    "/apis/strata.dev/v1alpha1/namespaces/telco/stacks/edge-net/status"
                )
            );
            object(&live)
        });
        let mut status = StackStatus {
            inventory: vec![config_map("release-1-0-0"), config_map("settings")],
            ..StackStatus::default()
        };
        let declared: BTreeSet<_> = [config_map("release-1-2-0"), config_map("settings")].into();
        record_ahead(&stack(), &ctx, "telco", &mut status, &declared)
            .await
            .unwrap();
        assert_eq!(requests.seen().len(), 1, "one status write");
        assert_eq!(
            status.inventory,
            ["release-1-0-0", "release-1-2-0", "settings"].map(config_map),
            "the old objects (still to prune) and the new ones"
        );
    }

    #[tokio::test]
    async fn an_inventory_that_does_not_grow_is_not_written() {
        let (ctx, _, requests) = context(State::default(), no_requests);
        let mut status = StackStatus {
            inventory: vec![config_map("release-1-0-0"), config_map("settings")],
            ..StackStatus::default()
        };
        let declared: BTreeSet<_> = [config_map("settings")].into();
        record_ahead(&stack(), &ctx, "telco", &mut status, &declared)
            .await
            .unwrap();
        assert!(requests.seen().is_empty());
    }
}
