//! Pruning: the objects a Stack applied before (its inventory in status)
//! and no longer declares are deleted, when `spec.prune` says so; on
//! deletion of the Stack, all of them are.

use std::collections::BTreeSet;

use kube::discovery::Scope;
use serde_json::Value;

use super::{
    Context,
    identity::Identity,
    plan::{Planned, discover, kind_not_served, kind_of},
    write,
};
use crate::{
    Result,
    api::{Stack, stack::ManagedObject},
};

/// The objects of `inventory` that `declared` no longer holds and that may
/// be deleted; none unless the Stack prunes.
pub(super) async fn to_prune(
    stack: &Stack,
    ctx: &Context,
    ns: &str,
    inventory: &[ManagedObject],
    declared: &BTreeSet<ManagedObject>,
) -> Result<Vec<Planned>> {
    let mut pruned = Vec::new();
    if !stack.spec.prune {
        return Ok(pruned);
    }
    for gone in inventory.iter().filter(|o| !declared.contains(o)) {
        if let Some(target) = deletable(ctx, ns, gone).await? {
            pruned.push(target);
        }
    }
    Ok(pruned)
}

/// Deletes every object of `inventory` that may be deleted.
pub(super) async fn delete_all(
    stack: &Stack,
    ctx: &Context,
    ns: &str,
    identity: &Identity,
    inventory: &[ManagedObject],
) -> Result<()> {
    for object in inventory {
        if let Some(target) = deletable(ctx, ns, object).await? {
            write::delete(stack, identity, &target, false).await?;
        }
    }
    Ok(())
}

/// Resolves a managed object's kind for deleting it; `None` when the kind is
/// gone (its CRD was removed), and so are its objects, and when the object is
/// outside the scope the operator allows: the inventory is read from the
/// status, which whoever may write `stacks/status` could fill with any
/// object, and the operator must not delete for a Stack what it would not
/// have applied for it.
async fn deletable(ctx: &Context, ns: &str, object: &ManagedObject) -> Result<Option<Planned>> {
    let (resource, caps) = match discover(ctx, &kind_of(&object.api_version, &object.kind)).await {
        Ok(found) => found,
        Err(e) if kind_not_served(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let namespaced = caps.scope == Scope::Namespaced;
    let in_scope = namespaced && object.namespace.as_deref() == Some(ns);
    if !in_scope && !ctx.settings.allow_cross_namespace {
        tracing::warn!(kind = %object.kind, name = %object.name, namespace = ?object.namespace,
            "not deleting an inventory entry outside the Stack's namespace, which the operator does not allow");
        return Ok(None);
    }
    Ok(Some(Planned {
        // No longer in spec.resources; only applies name an index.
        index: 0,
        resource,
        namespaced,
        id: object.clone(),
        object: Value::Null,
    }))
}
