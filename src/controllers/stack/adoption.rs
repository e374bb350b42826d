//! Step 9: how the consumers adopt the applied version, as
//! `status.rollout` and the Stack's conditions say it: Ready once every
//! counted consumer runs it and is Ready; Reconciling (`Adopting`) while
//! they move; Stalled (`AdoptionHalted`) when more failed on it than
//! `consumerRollout.maxFailures` allows, which stops every further move.
//! The counts are read from the consumers' own statuses ([`waves`]).

use kube::{Resource, ResourceExt};

use super::{Context, consumers::consumer_functions};
use crate::{
    Result,
    api::{
        Stack, StackStatus,
        stack::{AdoptionPhase, AdoptionStatus},
    },
    controllers::{
        conditions,
        waves::{self, ADOPTING, ADOPTION_HALTED, Target},
    },
};

/// Sets `status.rollout` and the conditions for the applied version.
pub(super) fn report(
    stack: &Stack,
    ctx: &Context,
    ns: &str,
    status: &mut StackStatus,
) -> Result<()> {
    let (Some(version), Some(digest)) = (status.version.clone(), status.digest.clone()) else {
        status.rollout = None;
        return Ok(());
    };
    let consumers = consumer_functions(ctx, ns, &stack.name_any());
    let rollout = stack.spec.consumer_rollout.clone().unwrap_or_default();
    let target = Target {
        version: &version,
        digest: &digest,
    };
    let plan = waves::plan(&rollout, &consumers, &target)?;
    let adoption = plan.status(&version);
    let generation = stack.meta().generation;
    let applied = format!(
        "version {version} applied: {} objects, digest {digest}",
        status.inventory.len()
    );
    let conds = &mut status.conditions;
    match adoption.phase {
        AdoptionPhase::Complete => conditions::ready(conds, "Applied", applied, generation),
        AdoptionPhase::Progressing => {
            // No counts here: consumers wake on this message, not on counts.
            let step = adoption
                .step
                .as_ref()
                .map(|s| format!(", step {s}"))
                .unwrap_or_default();
            let message = format!("{applied}; its consumers are adopting it{step}");
            conditions::progressing(conds, ADOPTING, message, generation);
        }
        AdoptionPhase::Halted => {
            let message = plan.halt_message(&stack.name_any(), &version);
            conditions::stalled(conds, ADOPTION_HALTED, message, generation);
        }
    }
    status.rollout = Some(adoption);
    Ok(())
}

/// Keeps `strata_stack_adoption` at 1 for the current adoption's phase,
/// dropping the series of the phase or version it replaced.
pub(super) fn record_metrics(
    ctx: &Context,
    ns: &str,
    stack: &Stack,
    old: Option<&AdoptionStatus>,
    new: Option<&AdoptionStatus>,
) {
    let name = stack.name_any();
    let series = |a: &AdoptionStatus| {
        [
            ns.to_string(),
            name.clone(),
            a.version.clone(),
            a.phase.as_str().to_string(),
        ]
    };
    if let Some(old) = old
        && new.is_none_or(|n| series(n) != series(old))
    {
        let labels = series(old);
        let _ = ctx
            .metrics
            .stack_adoption
            .remove_label_values(&labels.each_ref().map(String::as_str));
    }
    if let Some(new) = new {
        let labels = series(new);
        ctx.metrics
            .stack_adoption
            .with_label_values(&labels.each_ref().map(String::as_str))
            .set(1);
    }
}
