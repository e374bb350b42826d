//! Drift: which planned objects to apply, and why. A change of the Stack's
//! content applies them all; otherwise, once per resync interval, each live
//! object is compared with the fingerprint of what Strata applied, and only
//! those someone else edited or deleted are applied again.

use std::time::{Duration, Instant};

use kube::{ResourceExt, api::DynamicObject};

use super::{Context, identity::Identity, locked, plan::Planned, write};
use crate::{Result, api::Stack, render::digest::declared_fingerprint};

/// Why a planned resource is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cause {
    /// The Stack's content changed.
    Content,
    /// Someone else edited or deleted the object.
    Drift,
    /// The object is there, but this process has not applied it yet (it
    /// restarted) and its values differ from the declared ones (maybe only
    /// as the API server normalised them): applied once, not counted as drift.
    Unremembered,
}

/// The planned objects to apply, each with why: all of them when the
/// content changed, those that drifted when a drift check is due, else none.
pub(super) async fn to_apply<'a>(
    stack: &Stack,
    ctx: &Context,
    identity: &Identity,
    planned: &'a [Planned],
    content_changed: bool,
) -> Result<Vec<(&'a Planned, Cause)>> {
    if content_changed {
        return Ok(planned.iter().map(|item| (item, Cause::Content)).collect());
    }
    if !check_due(ctx, &stack.uid().unwrap_or_default()) {
        return Ok(Vec::new());
    }
    let mut drifted = Vec::new();
    for item in planned {
        if let Some(cause) = needs_apply(stack, ctx, identity, item).await? {
            drifted.push((item, cause));
        }
    }
    Ok(drifted)
}

/// Whether this Stack's objects are due for a drift check (and, if so,
/// notes that it is made now). A second short of the interval counts, so
/// that the resync requeue, which comes a little early or late, finds it due.
fn check_due(ctx: &Context, stack_uid: &str) -> bool {
    let mut last = locked(&ctx.state.last_drift_check);
    let interval = ctx
        .settings
        .resync_interval
        .saturating_sub(Duration::from_secs(1));
    let due = last
        .get(stack_uid)
        .is_none_or(|at| at.elapsed() >= interval);
    if due {
        last.insert(stack_uid.to_string(), Instant::now());
    }
    due
}

/// Whether `item` must be applied again: the live object no longer matches
/// what Strata applied (edited or deleted by someone else: drift), or this
/// process does not know what it applied and the live values are not the
/// declared ones. A live object that matches the declaration after a
/// restart is remembered as it is, without a write.
async fn needs_apply(
    stack: &Stack,
    ctx: &Context,
    identity: &Identity,
    item: &Planned,
) -> Result<Option<Cause>> {
    let key = (stack.uid().unwrap_or_default(), item.id.clone());
    let remembered = locked(&ctx.state.fingerprints).get(&key).cloned();
    let live = write::dynamic_api(&identity.client, item)
        .get_opt(&item.id.name)
        .await
        .map_err(|e| write::refused(&identity.who, &item.id, "get", e))?;
    let Some(live) = live else {
        return Ok(Some(Cause::Drift));
    };
    let now = declared_fingerprint(
        &item.object,
        &serde_json::to_value(&live).unwrap_or_default(),
    );
    Ok(match remembered {
        Some(fingerprint) => (now != fingerprint).then_some(Cause::Drift),
        None if now == declared_fingerprint(&item.object, &item.object) => {
            locked(&ctx.state.fingerprints).insert(key, now);
            None
        }
        None => Some(Cause::Unremembered),
    })
}

/// Remembers the fingerprint of `item` as the API server stored it when
/// applied: the declared values after its defaulting and normalising, which
/// later drift checks compare with.
pub(super) fn remember_applied(
    stack: &Stack,
    ctx: &Context,
    item: &Planned,
    applied: &DynamicObject,
) {
    let fingerprint = declared_fingerprint(
        &item.object,
        &serde_json::to_value(applied).unwrap_or_default(),
    );
    let key = (stack.uid().unwrap_or_default(), item.id.clone());
    locked(&ctx.state.fingerprints).insert(key, fingerprint);
}

/// Logs and counts a corrected drift of `item`.
pub(super) fn corrected(stack: &Stack, ctx: &Context, ns: &str, item: &Planned) {
    tracing::info!(kind = %item.id.kind, name = %item.id.name, stack = %stack.name_any(), "corrected drift of a managed object");
    ctx.metrics
        .drift_corrections
        .with_label_values(&[ns, &stack.name_any()])
        .inc();
}
