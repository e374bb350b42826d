//! Planning: every rendered resource resolved to a served kind and scope,
//! checked against the namespaces the operator allows, its namespace
//! defaulted and the Stack's labels (and owner) set, before anything is
//! written, so a bad resource leaves the cluster untouched.

use kube::{
    Resource, ResourceExt,
    api::{ApiResource, GroupVersionKind},
    discovery::{ApiCapabilities, Scope, pinned_kind},
};
use serde_json::{Value, json};

use super::{Context, locked};
use crate::{
    Error, Result,
    api::{Stack, stack::ManagedObject},
    render::stack::{RenderedStack, add_stack_labels, default_namespace},
};

/// A resource ready to write: resolved kind and scope, namespace defaulted,
/// labelled and owned.
pub(super) struct Planned {
    /// Its position in `spec.resources`.
    pub index: usize,
    pub resource: ApiResource,
    pub namespaced: bool,
    pub id: ManagedObject,
    /// The object to apply (`Null` for an object only to be deleted).
    pub object: Value,
}

/// Plans every resource of `rendered`, in order; the first that cannot be
/// applied stops the Stack.
pub(super) async fn plan(
    stack: &Stack,
    ctx: &Context,
    ns: &str,
    rendered: &RenderedStack,
) -> Result<Vec<Planned>> {
    let mut planned = Vec::with_capacity(rendered.resources.len());
    for (index, resource) in rendered.resources.iter().enumerate() {
        planned.push(plan_resource(stack, ctx, ns, index, resource.clone()).await?);
    }
    Ok(planned)
}

/// Plans `spec.resources[index]`.
async fn plan_resource(
    stack: &Stack,
    ctx: &Context,
    ns: &str,
    index: usize,
    mut object: Value,
) -> Result<Planned> {
    let text = |field: &Value| field.as_str().unwrap_or_default().to_string();
    let api_version = text(&object["apiVersion"]);
    let kind = text(&object["kind"]);
    let name = text(&object["metadata"]["name"]);
    let (resource, caps) = discover(ctx, &kind_of(&api_version, &kind))
        .await
        .map_err(|e| {
            if kind_not_served(&e) {
                unknown_kind(index, &api_version, &kind)
            } else {
                e
            }
        })?;
    let namespaced = caps.scope == Scope::Namespaced;
    if namespaced {
        default_namespace(&mut object, ns);
    }
    let namespace = object["metadata"]["namespace"].as_str().map(str::to_string);
    if !ctx.settings.allow_cross_namespace {
        let place = format!("spec.resources[{index}] ({kind}/{name})");
        check_scope(&place, namespaced, namespace.as_deref(), ns)?;
    }
    let in_stack_namespace = namespaced && namespace.as_deref() == Some(ns);
    label_and_own(&mut object, stack, in_stack_namespace);
    Ok(Planned {
        index,
        resource,
        namespaced,
        id: ManagedObject {
            api_version,
            kind,
            namespace: namespace.filter(|_| namespaced),
            name,
        },
        object,
    })
}

/// The group, version and kind named by `apiVersion` and `kind`.
pub(super) fn kind_of(api_version: &str, kind: &str) -> GroupVersionKind {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    GroupVersionKind::gvk(group, version, kind)
}

/// Whether discovery failed because the API server does not serve the kind
/// (as opposed to failing to answer).
pub(super) fn kind_not_served(error: &Error) -> bool {
    match error {
        Error::Kube(kube::Error::Discovery(_)) => true,
        Error::Kube(kube::Error::Api(s)) => s.code == 404,
        _ => false,
    }
}

fn unknown_kind(index: usize, api_version: &str, kind: &str) -> Error {
    Error::UnknownKind(format!(
        "spec.resources[{index}]: the API server does not serve kind {kind} in {api_version}; install its CustomResourceDefinition or fix apiVersion/kind"
    ))
}

/// Refuses an object outside the Stack's namespace `ns` (cluster-scoped, or
/// in another namespace), when the operator allows only that one; `place`
/// names the resource in messages.
fn check_scope(place: &str, namespaced: bool, namespace: Option<&str>, ns: &str) -> Result<()> {
    if !namespaced {
        return Err(Error::OutOfScope(format!(
            "{place} is cluster-scoped; the operator only allows objects in the Stack's namespace {ns}"
        )));
    }
    if namespace != Some(ns) {
        return Err(Error::OutOfScope(format!(
            "{place} is in namespace {}; the operator only allows objects in the Stack's namespace {ns}",
            namespace.unwrap_or_default()
        )));
    }
    Ok(())
}

/// Resolves a kind through discovery, caching hits (misses are retried, so a
/// CRD installed later is found).
pub(super) async fn discover(
    ctx: &Context,
    gvk: &GroupVersionKind,
) -> Result<(ApiResource, ApiCapabilities)> {
    if let Some(found) = locked(&ctx.state.discovery).get(gvk) {
        return Ok(found.clone());
    }
    let found = pinned_kind(&ctx.client, gvk).await?;
    locked(&ctx.state.discovery).insert(gvk.clone(), found.clone());
    Ok(found)
}

/// Adds the Stack labels (as valid label values: a version such as
/// `1.0.0+build.7` is not one) and, when `owned` (the object is in the
/// Stack's namespace, where an owner reference may point), makes the Stack
/// its controlling owner, so the object goes with the Stack.
fn label_and_own(object: &mut Value, stack: &Stack, owned: bool) {
    add_stack_labels(object, &stack.name_any(), &stack.spec.version);
    if owned && let Some(owner) = stack.controller_owner_ref(&()) {
        object["metadata"]["ownerReferences"] = json!([owner]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_is_empty_for_the_core_api() {
        let cases = [
            ("v1", "Secret", ("", "v1")),
            ("apps/v1", "Deployment", ("apps", "v1")),
            (
                "cert-manager.io/v1",
                "Certificate",
                ("cert-manager.io", "v1"),
            ),
        ];
        for (api_version, kind, (group, version)) in cases {
            let gvk = kind_of(api_version, kind);
            assert_eq!(
                (gvk.group.as_str(), gvk.version.as_str(), gvk.kind.as_str()),
                (group, version, kind),
                "{api_version}"
            );
        }
    }

    #[test]
    fn only_a_kind_the_api_server_does_not_know_is_unknown() {
        let api = |code| {
            Error::Kube(kube::Error::Api(
                kube::core::Status::failure("x", "y")
                    .with_code(code)
                    .boxed(),
            ))
        };
        let cases = [
            (
                Error::Kube(kube::Error::Discovery(
                    kube::error::DiscoveryError::MissingKind("Widget".into()),
                )),
                true,
            ),
            (api(404), true),
            (api(403), false),
            (api(500), false),
            (Error::NotReady("x".into()), false),
        ];
        for (error, unknown) in cases {
            assert_eq!(kind_not_served(&error), unknown, "{error}");
        }
    }

    #[test]
    fn only_objects_in_the_stacks_namespace_are_in_scope() {
        let place = "spec.resources[2] (Secret/creds)";
        assert!(check_scope(place, true, Some("telco"), "telco").is_ok());
        let cases = [
            (
                false,
                None,
                "spec.resources[2] (Secret/creds) is cluster-scoped; the operator only allows objects in the Stack's namespace telco",
            ),
            (
                true,
                Some("kube-system"),
                "spec.resources[2] (Secret/creds) is in namespace kube-system; the operator only allows objects in the Stack's namespace telco",
            ),
        ];
        for (namespaced, namespace, message) in cases {
            let error = check_scope(place, namespaced, namespace, "telco").unwrap_err();
            assert_eq!(error.reason(), "OutOfScope");
            assert_eq!(error.to_string(), message);
        }
    }
}
