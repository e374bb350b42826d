//! The one reconcile skeleton every controller runs: admit the object
//! (deletion, finalizers, suspension), read its status, run the
//! controller's pipeline, mark a spec error Stalled, publish each new
//! failure once as a Warning Event, write the status only when it changed,
//! and settle (metrics). Errors are retried with a backoff per object
//! ([`crate::runtime::backoff`]); a Stalled object waits for a change of its
//! spec, unless its fix is made outside it ([`Reconciler::recheck`]).

use std::{ops::ControlFlow, sync::Arc, time::Duration};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{
    Api, Resource,
    runtime::{controller::Action, events::EventType},
};
use serde::{Serialize, de::DeserializeOwned};

use super::{Context, Ctx, apply::write_status, conditions, namespace_of};
use crate::{Error, Result};

/// What a controller gives the skeleton: its kind and status, its field
/// manager, its state, and its pipeline.
pub trait Reconciler: Send + Sync + 'static {
    /// The kind reconciled.
    type Kind: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static;
    /// Its status.
    type Status: Serialize + DeserializeOwned + Default + Clone + PartialEq + Send + Sync;
    /// What the controller keeps between reconciles.
    type State: Send + Sync + 'static;

    /// The field manager of everything the controller writes.
    const MANAGER: &'static str;
    /// Condition types published as a Warning Event when they turn to
    /// failing (Stalled True, any other False) or change reason or message.
    const FAILURES: &'static [&'static str];

    /// The object's status, if it has one.
    fn status(obj: &Self::Kind) -> Option<&Self::Status>;
    /// The conditions of `status`.
    fn conditions(status: &Self::Status) -> &[Condition];
    /// The conditions of `status`, to change them.
    fn conditions_mut(status: &mut Self::Status) -> &mut Vec<Condition>;
    /// Records the generation `status` describes.
    fn observed(status: &mut Self::Status, generation: Option<i64>);

    /// Whether to go on to the pipeline: a deleted object is not reconciled
    /// (its children go with it; what the process remembers of it is
    /// forgotten when its watch sees it go).
    fn admit(
        obj: &Self::Kind,
        _ctx: &Context<Self::State>,
        _ns: &str,
    ) -> impl Future<Output = Result<ControlFlow<Action>>> + Send {
        let deleted = obj.meta().deletion_timestamp.is_some();
        async move {
            Ok(if deleted {
                ControlFlow::Break(Action::await_change())
            } else {
                ControlFlow::Continue(())
            })
        }
    }

    /// The pipeline: converges the cluster and `status` on the object's spec.
    fn converge(
        obj: &Self::Kind,
        ctx: &Context<Self::State>,
        ns: &str,
        status: &mut Self::Status,
    ) -> impl Future<Output = Result<Action>> + Send;

    /// When a status write that would change `old` into `new` may wait:
    /// the action to take instead of writing now.
    fn defer_write(
        _ctx: &Context<Self::State>,
        _obj: &Self::Kind,
        _old: &Self::Status,
        _new: &Self::Status,
    ) -> impl Future<Output = Option<Action>> + Send {
        async { None }
    }

    /// After the status is settled: `written` when it was written just now.
    fn settled(
        _ctx: &Context<Self::State>,
        _obj: &Self::Kind,
        _ns: &str,
        _old: &Self::Status,
        _new: &Self::Status,
        _written: bool,
    ) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// How soon a Stalled object is looked at again without a change of its
    /// own, when its fix is made elsewhere; `None` waits for a change.
    fn recheck(_ctx: &Context<Self::State>, _error: &Error) -> Option<Duration> {
        None
    }
}

/// Reconciles `obj` with `R`'s pipeline, in a span naming its kind,
/// namespace and name, counted in the metrics.
pub async fn reconcile<R: Reconciler>(obj: Arc<R::Kind>, ctx: Ctx<R::State>) -> Result<Action> {
    let kind = R::Kind::kind(&());
    let started = std::time::Instant::now();
    let span = tracing::info_span!(
        "reconcile",
        kind = &*kind,
        namespace = obj.meta().namespace.as_deref().unwrap_or_default(),
        name = obj.meta().name.as_deref().unwrap_or_default(),
    );
    let result = tracing::Instrument::instrument(run::<R>(&obj, &ctx), span).await;
    let label = match &result {
        Ok(_) => {
            ctx.backoff
                .reset(obj.meta().uid.as_deref().unwrap_or_default());
            "success"
        }
        Err(e) => e.reason(),
    };
    ctx.metrics
        .reconciled(&kind, label, started.elapsed().as_secs_f64());
    result
}

async fn run<R: Reconciler>(obj: &R::Kind, ctx: &Context<R::State>) -> Result<Action> {
    let ns = namespace_of(obj)?;
    if let ControlFlow::Break(action) = R::admit(obj, ctx, &ns).await? {
        return Ok(action);
    }
    let old: R::Status = ctx.fresh_status(obj, R::status(obj));
    let mut status = old.clone();
    let generation = obj.meta().generation;
    let result = match R::converge(obj, ctx, &ns, &mut status).await {
        Err(error) if error.is_stalled() => {
            conditions::stalled(
                R::conditions_mut(&mut status),
                error.reason(),
                error.to_string(),
                generation,
            );
            Err(error)
        }
        other => other,
    };
    R::observed(&mut status, generation);
    publish_failures::<R>(ctx, obj, &old, &status).await;
    let mut written = false;
    if status != old {
        if result.is_ok()
            && let Some(action) = R::defer_write(ctx, obj, &old, &status).await
        {
            R::settled(ctx, obj, &ns, &old, &status, false).await;
            return Ok(action);
        }
        let api: Api<R::Kind> = Api::namespaced(ctx.client.clone(), &ns);
        write_status(&api, obj, R::MANAGER, &status).await?;
        ctx.wrote_status(obj, &status);
        written = true;
    }
    R::settled(ctx, obj, &ns, &old, &status, written).await;
    ctx.metrics.readiness(
        &R::Kind::kind(&()),
        &ns,
        obj.meta().name.as_deref().unwrap_or_default(),
        not_ready_reason::<R>(&old),
        not_ready_reason::<R>(&status),
    );
    result
}

/// The reason of a Ready condition that is not True, if so.
fn not_ready_reason<R: Reconciler>(status: &R::Status) -> Option<&str> {
    conditions::get(R::conditions(status), conditions::READY)
        .filter(|c| c.status != "True")
        .map(|c| c.reason.as_str())
}

/// Forgets what the skeleton told Prometheus about a deleted object, and
/// everything the context remembers of it ([`Context::forget`]).
pub fn forget<R: Reconciler>(ctx: &Context<R::State>, obj: &R::Kind) {
    let status: R::Status = ctx.fresh_status(obj, R::status(obj));
    ctx.metrics.readiness(
        &R::Kind::kind(&()),
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default(),
        not_ready_reason::<R>(&status),
        None,
    );
    ctx.forget(obj);
}

/// Publishes one Warning Event for each of `R::FAILURES` that turned to
/// failing or changed reason or message.
async fn publish_failures<R: Reconciler>(
    ctx: &Context<R::State>,
    obj: &R::Kind,
    old: &R::Status,
    new: &R::Status,
) {
    for c in conditions::newly_failing(R::conditions(old), R::conditions(new), R::FAILURES) {
        ctx.publish(
            obj,
            EventType::Warning,
            &c.reason,
            "Reconcile",
            c.message.clone(),
        )
        .await;
    }
}

/// What to do after a failed reconcile: a Stalled error waits for a change
/// (or is looked at again when [`Reconciler::recheck`] says so); anything
/// else is retried after the object's next backoff delay.
pub fn error_policy<R: Reconciler>(obj: Arc<R::Kind>, error: &Error, ctx: Ctx<R::State>) -> Action {
    let uid = obj.meta().uid.as_deref().unwrap_or_default();
    if error.is_stalled() {
        ctx.backoff.reset(uid);
        return R::recheck(&ctx, error).map_or_else(Action::await_change, Action::requeue);
    }
    let delay = ctx.backoff.failed(uid);
    tracing::warn!(
        kind = &*R::Kind::kind(&()),
        namespace = obj.meta().namespace.as_deref().unwrap_or_default(),
        name = obj.meta().name.as_deref().unwrap_or_default(),
        %error,
        ?delay,
        "reconcile failed; retrying"
    );
    Action::requeue(delay)
}
