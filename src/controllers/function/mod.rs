//! The NetworkFunction controller, as a pipeline: the gates (dependencies,
//! stack resolution, the update policy, the adoption turn; [`gates`]), then
//! the rollout (a DeploymentRecord, the children; [`rollout`]), then the
//! record of how it went (the Deployment's rollout, the record's outcome,
//! the provenance in status, metrics). A rollout's progress alone is
//! written at most every 30 seconds ([`progress`]).

mod adoption;
mod configs;
pub mod deployment;
mod gates;
mod metrics;
mod progress;
mod promotion;
pub mod records;
pub mod resolve;
mod rollout;
mod upstream;

use std::{ops::ControlFlow, sync::Arc};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{
    Resource, ResourceExt,
    runtime::{controller::Action, reflector::ObjectRef},
};

use super::{
    conditions,
    skeleton::{self, Reconciler},
    waves,
};
use crate::{
    Error, Result,
    api::{NetworkFunction, NetworkFunctionStatus, StackRevisionRef, function::Provenance},
    render::function::{Children, NextHop, ResolvedStack, desired, image_pinned},
};
pub use adoption::rollout_budget;
pub use deployment::{DeploymentState, Rollout, rollout_state};

/// Field manager of everything the NetworkFunction controller writes.
pub const MANAGER: &str = "strata.dev/network-function";
/// Condition: the Stack resolved to a Ready, satisfying version.
pub const STACK_RESOLVED: &str = "StackResolved";
/// Condition: every dependency is Ready at a satisfying version.
pub const DEPENDENCIES_READY: &str = "DependenciesReady";
/// Condition: the artifact is verified upstream (`spec.promotion`), or no
/// promotion gate is declared.
pub const VERIFIED: &str = "Verified";
/// Reason of Reconciling while a consumer waits for its turn to adopt a new
/// Stack version (`consumerRollout.maxConcurrent`).
pub const QUEUED: &str = "Queued";

/// What the NetworkFunction controller keeps between reconciles.
#[derive(Default)]
pub struct State {
    /// Which consumers are moving to a new Stack version now.
    adoptions: adoption::Adoptions,
    /// Where each function's ledger of DeploymentRecords ends, as this process knows it.
    ledgers: records::Ledgers,
    /// The functions there when this term first listed them.
    first_listed: records::FirstListed,
    /// The upstream records promotion gates read.
    pub upstreams: upstream::Upstreams,
    /// When each function's status was last written: a rollout's progress
    /// alone is written at most every [`progress::PROGRESS_INTERVAL`].
    status_writes: progress::StatusWrites,
    /// Configurations that left the functions' histories, whose ConfigMaps
    /// go once the next rollout succeeds.
    retired_configs: configs::Retired,
}

type Context = super::Context<State>;
/// The NetworkFunction controller's context.
pub type Ctx = Arc<Context>;

/// The NetworkFunction controller, for the skeleton.
pub struct Functions;

impl Reconciler for Functions {
    type Kind = NetworkFunction;
    type Status = NetworkFunctionStatus;
    type State = State;
    const MANAGER: &'static str = MANAGER;
    const FAILURES: &'static [&'static str] = &[
        conditions::STALLED,
        STACK_RESOLVED,
        DEPENDENCIES_READY,
        VERIFIED,
    ];

    fn status(nf: &NetworkFunction) -> Option<&NetworkFunctionStatus> {
        nf.status.as_ref()
    }
    fn conditions(status: &NetworkFunctionStatus) -> &[Condition] {
        &status.conditions
    }
    fn conditions_mut(status: &mut NetworkFunctionStatus) -> &mut Vec<Condition> {
        &mut status.conditions
    }
    fn observed(status: &mut NetworkFunctionStatus, generation: Option<i64>) {
        status.observed_generation = generation;
    }

    /// Deleted or suspended functions are left as they are (children go
    /// with their owner; records are not owned and stay).
    async fn admit(nf: &NetworkFunction, _ctx: &Context, _ns: &str) -> Result<ControlFlow<Action>> {
        Ok(
            if nf.meta().deletion_timestamp.is_some() || nf.spec.suspend {
                ControlFlow::Break(Action::await_change())
            } else {
                ControlFlow::Continue(())
            },
        )
    }

    async fn converge(
        nf: &NetworkFunction,
        ctx: &Context,
        ns: &str,
        status: &mut NetworkFunctionStatus,
    ) -> Result<Action> {
        converge(nf, ctx, ns, status).await
    }

    /// A write that only moves a rollout's progress (pods updated and
    /// available, replica counts) waits ([`progress`]).
    async fn defer_write(
        ctx: &Context,
        nf: &NetworkFunction,
        old: &NetworkFunctionStatus,
        new: &NetworkFunctionStatus,
    ) -> Option<Action> {
        let uid = nf.uid().unwrap_or_default();
        let now = std::time::Instant::now();
        ctx.state
            .status_writes
            .wait(&uid, old, new, now)
            .map(Action::requeue)
    }

    async fn settled(
        ctx: &Context,
        nf: &NetworkFunction,
        ns: &str,
        old: &NetworkFunctionStatus,
        new: &NetworkFunctionStatus,
        written: bool,
    ) {
        if written {
            let uid = nf.uid().unwrap_or_default();
            ctx.state
                .status_writes
                .written(&uid, std::time::Instant::now());
        }
        metrics::update(ctx, nf, ns, old, new);
        // The adoption slot is freed once the status that says the rollout
        // concluded is written: until then, the function still counts as
        // moving for anyone reading its status.
        if written
            && let Some(deployed) = concluded(new)
            && concluded(old).is_none_or(|o| o.record != deployed.record)
        {
            let stack = &deployed.stack;
            ctx.state
                .adoptions
                .release(&nf.name_any(), ns, &stack.name, &stack.version)
                .await;
        }
    }
}

/// The rollout `status` names, once it concluded (Ready, or failed).
fn concluded(status: &NetworkFunctionStatus) -> Option<&Provenance> {
    let failed = conditions::get(&status.conditions, conditions::STALLED)
        .is_some_and(|c| c.status == "True" && c.reason == waves::ROLLOUT_FAILED);
    status
        .deployed_with
        .as_ref()
        .filter(|d| d.ready_at.is_some() || failed)
}

/// Reconciles one NetworkFunction.
pub async fn reconcile(nf: Arc<NetworkFunction>, ctx: Ctx) -> Result<Action> {
    skeleton::reconcile::<Functions>(nf, ctx).await
}

/// A Stalled error waits for a spec change; anything else is retried with backoff.
pub fn error_policy(nf: Arc<NetworkFunction>, error: &Error, ctx: Ctx) -> Action {
    skeleton::error_policy::<Functions>(nf, error, ctx)
}

/// The functions in `listed` were there when this term first listed them
/// (see [`records::FirstListed`]): the others' first rollouts list no records.
pub fn first_listed(ctx: &Context, listed: &[Arc<NetworkFunction>]) {
    ctx.state
        .first_listed
        .were(listed.iter().filter_map(|nf| nf.metadata.uid.as_deref()));
}

/// Forgets what this process remembers of a deleted function.
pub fn forget(ctx: &Context, nf: &NetworkFunction) {
    metrics::forget(ctx, nf);
    ctx.state.ledgers.forget(&nf.uid().unwrap_or_default());
    ctx.state.first_listed.forget(&nf.uid().unwrap_or_default());
    ctx.state
        .retired_configs
        .forget(&nf.uid().unwrap_or_default());
    ctx.state
        .status_writes
        .forget(&nf.uid().unwrap_or_default());
    ctx.state.upstreams.forget(&ObjectRef::from_obj(nf));
    skeleton::forget::<Functions>(ctx, nf);
}

/// Reason of Reconciling while a consumer waits because the adoption of
/// its Stack's version halted (`consumerRollout.maxFailures`).
pub use super::waves::ADOPTION_HALTED;

/// Whether `nf` waits for its turn to adopt a new Stack version (queued
/// behind others, an earlier step, or a halted adoption).
pub fn queued(nf: &NetworkFunction) -> bool {
    nf.status.as_ref().is_some_and(|s| {
        conditions::get(&s.conditions, conditions::RECONCILING)
            .is_some_and(|c| c.reason == QUEUED || c.reason == ADOPTION_HALTED)
    })
}

/// Passes a gate, or returns what it says to do instead.
macro_rules! pass {
    ($gate:expr) => {
        match $gate {
            ControlFlow::Continue(value) => value,
            ControlFlow::Break(action) => return Ok(action),
        }
    };
}

/// The pipeline: the gates, the rollout, then what it has come to.
async fn converge(
    nf: &NetworkFunction,
    ctx: &Context,
    ns: &str,
    status: &mut NetworkFunctionStatus,
) -> Result<Action> {
    if nf.spec.promotion.is_none() {
        // Whatever gate holds it now, it requires nothing upstream any more.
        ctx.state.upstreams.forget(&ObjectRef::from_obj(nf));
    }
    pass!(gates::dependencies(nf, ctx, ns, status).await?);
    let stack = pass!(gates::stack(nf, ctx, ns, status).await?);
    pass!(gates::policy(nf, ctx, ns, status, &stack).await?);

    let children = desired(nf, &stack, &next_hops(ctx, nf, ns))?;
    let target = provenance(nf, &stack, &children);
    let new_rollout = status
        .deployed_with
        .as_ref()
        .is_none_or(|d| !same_rollout(d, &target));
    let evidence = pass!(gates::promotion(nf, ctx, ns, status, &stack, new_rollout).await?);
    if new_rollout {
        let recorded = status.deployed_with.as_ref().map(|d| d.record.clone());
        let end = records::ledger_end(ctx, nf, ns, &target, recorded.as_deref()).await?;
        pass!(gates::adoption_turn(nf, ctx, ns, status, &stack, &target, &end).await?);
        rollout::start(nf, ctx, ns, status, target, end, &evidence).await?;
    }
    rollout::apply_children(nf, ctx, ns, &children).await?;
    rollout::follow(nf, ctx, ns, status, None).await
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

/// The next hops of `nf` in the chains it is a hop of, by chain name.
fn next_hops(ctx: &Context, nf: &NetworkFunction, ns: &str) -> Vec<NextHop> {
    ctx.relations
        .neighbours(ns, &nf.name_any())
        .into_iter()
        .filter_map(|(chain, _, next)| {
            let next = next?;
            let live = ctx
                .stores
                .chains
                .get(&ObjectRef::new(&chain).within(ns))
                .is_some_and(|c| c.meta().deletion_timestamp.is_none());
            let port = ctx
                .stores
                .functions
                .get(&ObjectRef::<NetworkFunction>::new(&next).within(ns))
                .and_then(|f| f.spec.ports.first().map(|p| p.port));
            live.then(|| NextHop {
                chain,
                host: format!("{next}.{ns}.svc"),
                port,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(crate::controllers::waves::moved(&current, &moved));
        assert!(
            !crate::controllers::waves::moved(&current, &current),
            "nothing moved"
        );
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
                !crate::controllers::waves::moved(&current, &respec),
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
