//! How the controllers write: the vocabulary, once.
//!
//! - **apply**: a server-side apply with force under the controller's field
//!   manager ([`server_side_apply`]); forced, so it never conflicts, and
//!   fields the manager no longer sets are removed.
//! - **stamp**: the [`DIGEST_ANNOTATION`] on each child, the digest of what
//!   was applied ([`stamp`]); a live child with the same stamp holds what
//!   Strata declares, unless another writer changed it since.
//! - **trace**: what this process remembers of a child it applied: a
//!   fingerprint of the declared values as the API server returned them
//!   (so server-side defaults are not mistaken for drift), its
//!   resourceVersion then, and its owner's uid ([`Traces`]).
//! - [`apply_child`] applies a child unless its live state (metadata from a
//!   cache, or the whole object) shows the stamp and the trace; it says what
//!   it did: [`ChildWrite`].
//! - [`write_status`] applies an object's status subresource.

use std::{collections::HashMap, sync::Mutex};

use kube::{
    Resource, ResourceExt,
    api::{Api, ObjectMeta, Patch, PatchParams},
};
use serde::{Serialize, de::DeserializeOwned};

use super::Context;
use crate::{
    Error, Result,
    render::digest::{canonical_digest, declared_fingerprint},
};

/// Annotation on each child: the digest of what Strata applied, so that an
/// unchanged child costs no write.
pub const DIGEST_ANNOTATION: &str = "strata.dev/applied-digest";

/// A namespaced kind a controller applies as a child.
pub(crate) trait Child:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + Serialize
    + DeserializeOwned
    + std::fmt::Debug
{
}

impl<K> Child for K where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug
{
}

/// What [`apply_child`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ChildWrite {
    /// The live object was what Strata declares: no write.
    Unchanged,
    /// The declared content changed, or the object was missing.
    Applied,
    /// Someone else had changed values Strata declares; they are restored.
    Restored,
}

/// The live state of a child as the caller has it.
pub(crate) enum Live<'a, K> {
    /// Its metadata from a cache (or nothing): when it carries the stamp and
    /// the resourceVersion of the trace, nothing is read; otherwise the
    /// object is read once and compared.
    Metadata(Option<&'a ObjectMeta>),
    /// The whole object from a cache (or nothing), compared as it is.
    Object(Option<&'a K>),
}

/// What this process remembers of one child it applied.
#[derive(Clone, Debug)]
struct Trace {
    fingerprint: String,
    resource_version: Option<String>,
    /// The uid of the child's controller (its owner), to forget it with them.
    owner: Option<String>,
}

/// The traces of the children a controller applied, by kind, namespace and name.
#[derive(Default)]
pub(crate) struct Traces(Mutex<HashMap<String, Trace>>);

impl Traces {
    fn key<K: Resource<DynamicType = ()>>(ns: &str, name: &str) -> String {
        format!("{}/{ns}/{name}", K::kind(&()))
    }

    fn recall<K: Resource<DynamicType = ()>>(&self, ns: &str, name: &str) -> Option<Trace> {
        self.0.lock().ok()?.get(&Self::key::<K>(ns, name)).cloned()
    }

    fn record<K: Resource<DynamicType = ()>>(&self, ns: &str, fingerprint: String, live: &K) {
        let meta = live.meta();
        let owner = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone());
        let trace = Trace {
            fingerprint,
            resource_version: meta.resource_version.clone(),
            owner,
        };
        if let Ok(mut traces) = self.0.lock() {
            traces.insert(Self::key::<K>(ns, &live.name_any()), trace);
        }
    }

    /// Forgets the children of the owner with `uid` (deleted; its children go with it).
    pub(crate) fn forget_children_of(&self, uid: &str) {
        if let Ok(mut traces) = self.0.lock() {
            traces.retain(|_, trace| trace.owner.as_deref() != Some(uid));
        }
    }
}

/// Applies `child` in `ns` under `manager` unless `live` shows that it
/// holds what Strata declares (see the module's vocabulary).
pub(crate) async fn apply_child<K: Child, S>(
    ctx: &Context<S>,
    ns: &str,
    manager: &str,
    child: K,
    live: Live<'_, K>,
) -> Result<ChildWrite> {
    let (child, digest) = stamp(child);
    let name = child.name_any();
    let trace = ctx.traces.recall::<K>(ns, &name);
    let read;
    let live = match live {
        Live::Object(live) => live,
        Live::Metadata(meta) => {
            if let (Some(meta), Some(trace)) = (meta, &trace)
                && stamp_of(meta) == Some(&digest)
                && meta.resource_version.is_some()
                && meta.resource_version == trace.resource_version
            {
                return Ok(ChildWrite::Unchanged);
            }
            read = Api::<K>::namespaced(ctx.client.clone(), ns)
                .get_opt(&name)
                .await?;
            read.as_ref()
        }
    };
    let desired = serde_json::to_value(&child).unwrap_or_default();
    let mut outcome = ChildWrite::Applied;
    if let Some(live) = live
        && stamp_of(live.meta()).is_some_and(|s| *s == digest)
    {
        let now = declared_fingerprint(&desired, &serde_json::to_value(live).unwrap_or_default());
        let expected = trace
            .map(|t| t.fingerprint)
            .unwrap_or_else(|| declared_fingerprint(&desired, &desired));
        if now == expected {
            ctx.traces.record(ns, now, live);
            return Ok(ChildWrite::Unchanged);
        }
        outcome = ChildWrite::Restored;
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let applied = server_side_apply(&api, manager, &child).await?;
    let fingerprint = declared_fingerprint(
        &desired,
        &serde_json::to_value(&applied).unwrap_or_default(),
    );
    ctx.traces.record(ns, fingerprint, &applied);
    Ok(outcome)
}

/// `child` with its [`DIGEST_ANNOTATION`], and that digest.
fn stamp<K: Resource + Serialize>(mut child: K) -> (K, String) {
    let digest = canonical_digest(&serde_json::to_value(&child).unwrap_or_default());
    child
        .annotations_mut()
        .insert(DIGEST_ANNOTATION.into(), digest.clone());
    (child, digest)
}

fn stamp_of(meta: &ObjectMeta) -> Option<&String> {
    meta.annotations.as_ref()?.get(DIGEST_ANNOTATION)
}

/// Applies `object` under `manager`, forced; returns what the API server stored.
pub(crate) async fn server_side_apply<K>(api: &Api<K>, manager: &str, object: &K) -> Result<K>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        &object.name_any(),
        &PatchParams::apply(manager).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(Error::from)
}

/// Applies `status` as the status of `obj` under `manager`.
pub(crate) async fn write_status<K, S>(
    api: &Api<K>,
    obj: &K,
    manager: &str,
    status: &S,
) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    S: Serialize,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
    .map_err(Error::from)
}
