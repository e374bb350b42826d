//! What the NetworkFunction controller tells Prometheus: what runs on
//! what, deploy cycle time and time to recover.

use kube::ResourceExt;

use super::Context;
use crate::{
    api::{NetworkFunction, NetworkFunctionStatus, function::Provenance},
    controllers::conditions,
};

/// Keeps `strata_networkfunction_info` and the cycle-time histograms current.
pub(super) fn update(
    ctx: &Context,
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
    let waiting = |s: &NetworkFunctionStatus| {
        conditions::get(&s.conditions, super::VERIFIED)
            .filter(|c| c.status == "False")
            .map(|c| c.reason.clone())
    };
    ctx.metrics
        .promotion(ns, &name, waiting(old).as_deref(), waiting(new).as_deref());
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

pub(super) fn forget(ctx: &Context, nf: &NetworkFunction) {
    let ns = nf.namespace().unwrap_or_default();
    let name = nf.name_any();
    if let Some(status) = &nf.status
        && let Some(c) = conditions::get(&status.conditions, super::VERIFIED)
    {
        ctx.metrics.promotion(&ns, &name, Some(&c.reason), None);
    }
    if let Some(d) = nf.status.as_ref().and_then(|s| s.deployed_with.as_ref()) {
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
