//! Writing a Stack's objects: server-side applies and deletes made as the
//! Stack's [`Identity`], each first as a dry run, and the API server's
//! refusals mapped to errors that name the resource and what to do.

use kube::{
    Client, ResourceExt,
    api::{Api, DeleteParams, DynamicObject, Patch, PatchParams},
};

use super::{
    Context, MANAGER, drift, drift::Cause, identity::Identity, plan::Planned, redact::SecretValues,
};
use crate::{Error, Result, api::Stack, api::stack::ManagedObject};

/// What one reconcile writes: the objects to apply, each with why, and
/// the objects to delete.
pub(super) struct Writes<'a> {
    pub applies: Vec<(&'a Planned, Cause)>,
    pub deletes: Vec<Planned>,
}

/// Makes every write as a dry run, so that one the API server refuses (the
/// ServiceAccount's permission boundary, validation) stops the Stack before
/// anything changed. Costs nothing at steady state, where nothing is written.
pub(super) async fn dry_run(stack: &Stack, identity: &Identity, writes: &Writes<'_>) -> Result<()> {
    for (item, _) in &writes.applies {
        apply(identity, item, true).await?;
    }
    for target in &writes.deletes {
        delete(stack, identity, target, true).await?;
    }
    Ok(())
}

/// Makes every write: applies (remembering what each object holds then,
/// counting the drift corrected), then deletes.
pub(super) async fn commit(
    stack: &Stack,
    ctx: &Context,
    ns: &str,
    identity: &Identity,
    writes: &Writes<'_>,
) -> Result<()> {
    for (item, cause) in &writes.applies {
        let applied = apply(identity, item, false).await?;
        if *cause == Cause::Drift {
            drift::corrected(stack, ctx, ns, item);
        }
        drift::remember_applied(stack, ctx, item, &applied);
    }
    for target in &writes.deletes {
        delete(stack, identity, target, false).await?;
    }
    Ok(())
}

/// Server-side applies `item` (as a dry run when `dry_run`).
async fn apply(identity: &Identity, item: &Planned, dry_run: bool) -> Result<DynamicObject> {
    let mut params = PatchParams::apply(MANAGER).force();
    params.dry_run = dry_run;
    dynamic_api(&identity.client, item)
        .patch(&item.id.name, &params, &Patch::Apply(&item.object))
        .await
        .map_err(|e| apply_refused(&identity.who, item, e))
}

/// Deletes a managed object (as a dry run when `dry_run`); NotFound is success.
pub(super) async fn delete(
    stack: &Stack,
    identity: &Identity,
    target: &Planned,
    dry_run: bool,
) -> Result<()> {
    let mut params = DeleteParams::background();
    params.dry_run = dry_run;
    match dynamic_api(&identity.client, target)
        .delete(&target.id.name, &params)
        .await
    {
        Ok(_) => {
            if !dry_run {
                tracing::info!(kind = %target.id.kind, name = %target.id.name, stack = %stack.name_any(), "deleted an object of the stack");
            }
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(refused(&identity.who, &target.id, "delete", e)),
    }
}

/// The API of `item`'s kind, in its namespace when it has one.
pub(super) fn dynamic_api(client: &Client, item: &Planned) -> Api<DynamicObject> {
    match (&item.id.namespace, item.namespaced) {
        (Some(ns), true) => Api::namespaced_with(client.clone(), ns, &item.resource),
        _ => Api::all_with(client.clone(), &item.resource),
    }
}

/// A refused apply of `item`, naming the resource, with every value of a
/// Secret cut out of the API server's message: an object the API server
/// finds invalid is `InvalidField`, 403 is `Forbidden`.
fn apply_refused(who: &str, item: &Planned, error: kube::Error) -> Error {
    match SecretValues::of(&item.object).redact_error(error) {
        kube::Error::Api(s) if s.code == 400 || s.code == 422 || cannot_convert(&s) => {
            Error::InvalidField(format!(
                "spec.resources[{}] ({}/{}) was refused by the API server: {}",
                item.index, item.id.kind, item.id.name, s.message
            ))
        }
        e => refused(who, &item.id, "patch", e),
    }
}

/// Whether the API server could not read the object as its kind: a value of
/// the wrong type (a number in a Secret's `stringData`), `data` that is not
/// base64. Server-side apply reports these as 500, but they are the spec's
/// fault and retrying cannot help.
fn cannot_convert(status: &kube::core::Status) -> bool {
    status.code == 500
        && (status
            .message
            .starts_with("failed to create typed patch object")
            || status.message.starts_with("failed to convert new object"))
}

/// Maps a 403 to `Forbidden`, naming whom the request was made as, the verb
/// the API server denied (`verb` when it does not say) and the object.
pub(super) fn refused(who: &str, object: &ManagedObject, verb: &str, error: kube::Error) -> Error {
    match &error {
        kube::Error::Api(s) if s.code == 403 => {
            let verb = denied_verb(&s.message).unwrap_or(verb);
            let target = match &object.namespace {
                Some(n) => format!("{} {n}/{}", object.kind, object.name),
                None => format!("{} {}", object.kind, object.name),
            };
            Error::Forbidden(format!(
                "{who} may not {verb} {target}; grant it that permission or remove the resource from spec.resources"
            ))
        }
        _ => Error::Kube(error),
    }
}

/// The verb in an RBAC denial: `... cannot create resource "secrets" ...`. A
/// server-side apply is authorized as `patch`, and as `create` too when it
/// creates the object, so the request's method does not say which was denied.
fn denied_verb(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once(" cannot ")?;
    let (verb, rest) = rest.split_once(' ')?;
    rest.starts_with("resource").then_some(verb)
}

#[cfg(test)]
mod tests {
    use kube::api::{ApiResource, GroupVersionKind};
    use serde_json::{Value, json};

    use super::*;

    fn api_error(code: u16, message: &str) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure(message, "")
                .with_code(code)
                .boxed(),
        )
    }

    fn secret(namespace: Option<&str>, object: Value) -> Planned {
        let gvk = GroupVersionKind::gvk("", "v1", "Secret");
        Planned {
            index: 3,
            resource: ApiResource::from_gvk(&gvk),
            namespaced: true,
            id: ManagedObject {
                api_version: "v1".into(),
                kind: "Secret".into(),
                namespace: namespace.map(str::to_string),
                name: "credentials".into(),
            },
            object,
        }
    }

    fn rbac_denial(verb: &str) -> String {
        format!(
            r#"secrets "credentials" is forbidden: User "system:serviceaccount:ns:deployer" cannot {verb} resource "secrets" in API group "" in the namespace "ns""#
        )
    }

    #[test]
    fn the_denied_verb_is_read_from_the_rbac_message() {
        assert_eq!(denied_verb(&rbac_denial("patch")), Some("patch"));
        assert_eq!(denied_verb(&rbac_denial("create")), Some("create"));
        assert_eq!(denied_verb("admission webhook denied the request"), None);
        assert_eq!(denied_verb("it cannot be done"), None);
    }

    #[test]
    fn only_a_failure_to_read_the_object_is_a_500_the_spec_causes() {
        let cases = [
            (
                500,
                "failed to create typed patch object (/v1, Kind=Secret): .stringData.pin: expected string",
                true,
            ),
            (
                500,
                "failed to convert new object (ns/s; /v1, Kind=Secret) to smd typed: .data.k: illegal base64",
                true,
            ),
            (500, "etcdserver: request timed out", false),
            (503, "failed to create typed patch object", false),
        ];
        for (code, message, spec_fault) in cases {
            let status = kube::core::Status::failure(message, "").with_code(code);
            assert_eq!(cannot_convert(&status), spec_fault, "{code} {message}");
        }
    }

    #[test]
    fn a_403_names_who_may_not_do_what_to_which_object() {
        let who = "ServiceAccount ns/deployer";
        let namespaced = secret(Some("ns"), Value::Null).id;
        let cluster = ManagedObject {
            namespace: None,
            ..namespaced.clone()
        };
        let cases = [
            (
                &namespaced,
                "patch",
                rbac_denial("create"),
                "ServiceAccount ns/deployer may not create Secret ns/credentials; grant it that permission or remove the resource from spec.resources",
            ),
            (
                &namespaced,
                "delete",
                "forbidden by policy".to_string(),
                "ServiceAccount ns/deployer may not delete Secret ns/credentials; grant it that permission or remove the resource from spec.resources",
            ),
            (
                &cluster,
                "get",
                rbac_denial("get"),
                "ServiceAccount ns/deployer may not get Secret credentials; grant it that permission or remove the resource from spec.resources",
            ),
        ];
        for (object, verb, message, expected) in cases {
            let error = refused(who, object, verb, api_error(403, &message));
            assert_eq!(error.reason(), "Forbidden");
            assert_eq!(error.to_string(), expected);
        }
        let other = refused(who, &namespaced, "patch", api_error(409, "conflict"));
        assert_eq!(other.reason(), "ApiError", "anything else is retried");
    }

    #[test]
    fn a_refused_apply_names_the_resource_and_never_quotes_a_secret() {
        let item = secret(
            Some("ns"),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "credentials"},
                "stringData": {"pin": 40917}}),
        );
        let quoted = "failed to create typed patch object: .stringData.pin: expected string, got &value.valueUnstructured{Value:40917}";
        let cases = [
            (
                422,
                "Secret \"credentials\" is invalid: metadata.name: Invalid value",
                "InvalidSpec",
            ),
            (400, "bad request", "InvalidSpec"),
            (500, quoted, "InvalidSpec"),
            (403, &rbac_denial("patch") as &str, "Forbidden"),
        ];
        for (code, message, reason) in cases {
            let error = apply_refused("the operator", &item, api_error(code, message));
            assert_eq!(error.reason(), reason, "{code}");
            let text = error.to_string();
            assert!(!text.contains("40917"), "{text}");
            if reason == "InvalidSpec" {
                assert!(
                    text.starts_with(
                        "spec.resources[3] (Secret/credentials) was refused by the API server: "
                    ),
                    "{text}"
                );
            }
        }
    }
}
