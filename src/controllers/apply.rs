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
//! - [`apply_child`] applies a child unless its live state (from a cache:
//!   its metadata, or its metadata and the digest of its spec) shows the
//!   stamp and the trace; it says what it did: [`ChildWrite`].
//! - [`write_status`] applies an object's status subresource.

use std::{borrow::Cow, collections::HashMap, sync::Mutex};

use kube::{
    Resource, ResourceExt,
    api::{Api, ObjectMeta, PartialObjectMeta, Patch, PatchParams},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::Context;
use crate::{
    Error, Result,
    render::digest::{canonical_digest, declared_fingerprint, short_hash},
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
pub(crate) enum Live<'a> {
    /// What a cache (or a list) shows of it, or nothing: when it carries the
    /// stamp and the resourceVersion of the trace, nothing is read; when it
    /// carries the stamp at another resourceVersion, the object is read once
    /// and compared; otherwise it is applied without a read.
    Metadata(Option<Shown<'a>>),
    /// Its stamp, its metadata (as JSON) and the digest of its spec from a
    /// cache that keeps no more of it (or nothing): for a kind whose status
    /// changes its resourceVersion all the time. When it carries the stamp,
    /// and the values Strata declares in its metadata and the digest of its
    /// spec are those of the trace, nothing is read; otherwise the object is
    /// read once and compared.
    Digested(Option<(Option<Stamp>, Value, &'a str)>),
}

/// A child's [`DIGEST_ANNOTATION`] as a cache keeps it: the first 128 bits
/// of the digest, not its 71 characters (a cache holds one per child).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Stamp(u128);

impl Stamp {
    /// The stamp of `digest` (`sha256:<hex>`).
    pub(crate) fn of(digest: &str) -> Self {
        Self(first_128_bits(digest.trim_start_matches("sha256:")))
    }

    /// The stamp `meta` carries, if any.
    pub fn on(meta: &ObjectMeta) -> Option<Self> {
        stamp_of(meta).map(|digest| Self::of(digest))
    }
}

/// What a cache (or a list) shows of a child: its resourceVersion and its stamp.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shown<'a> {
    resource_version: Option<&'a str>,
    stamp: Option<Stamp>,
}

impl<'a> Shown<'a> {
    /// What `meta` shows.
    pub fn of(meta: &'a ObjectMeta) -> Self {
        Self {
            resource_version: meta.resource_version.as_deref(),
            stamp: Stamp::on(meta),
        }
    }
}

/// What a cache keeps of a child it holds as metadata ([`Live::Metadata`]):
/// its name, namespace and resourceVersion, its owners (whom a change of it
/// wakes), and its stamp, outside the metadata: an annotations map of one
/// entry takes more memory than the rest together.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChildMeta<K> {
    /// Name, namespace, resourceVersion and owner references only.
    pub metadata: ObjectMeta,
    /// The child's stamp, if it has one.
    pub stamp: Option<Stamp>,
    #[serde(skip)]
    kind: std::marker::PhantomData<fn() -> K>,
}

impl<K> ChildMeta<K> {
    /// What a cache keeps of `child`.
    pub fn read(child: PartialObjectMeta<K>) -> Self {
        let meta = child.metadata;
        Self {
            stamp: Stamp::on(&meta),
            metadata: ObjectMeta {
                name: meta.name,
                namespace: meta.namespace,
                resource_version: meta.resource_version,
                owner_references: meta.owner_references,
                ..ObjectMeta::default()
            },
            kind: std::marker::PhantomData,
        }
    }

    /// What it shows to [`apply_child`].
    pub(crate) fn shown(&self) -> Shown<'_> {
        Shown {
            resource_version: self.metadata.resource_version.as_deref(),
            stamp: self.stamp,
        }
    }
}

impl<K: Resource<DynamicType = ()>> Resource for ChildMeta<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        K::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        K::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        K::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        K::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// What this process remembers of one child it applied. The hashes are
/// kept as their first 128 bits: a trace is held for every child.
#[derive(Clone, Debug)]
struct Trace {
    fingerprint: u128,
    /// The values Strata declares in the child's metadata and the digest of
    /// its whole spec, hashed together ([`digested`]).
    digested: u128,
    resource_version: Option<String>,
    /// Its `metadata.generation` then; `None` while a write of it is under
    /// way or was left without an answer.
    generation: Option<i64>,
    /// The uid of the child's controller (its owner), to forget it with them.
    owner: Option<String>,
}

/// What [`Live::Digested`] is compared with: the values `desired` declares
/// in the metadata of `live`, and `spec_digest`, the digest of its spec.
fn digested(desired: &Value, live_metadata: &Value, spec_digest: &str) -> u128 {
    let metadata = declared_fingerprint(&desired["metadata"], live_metadata);
    first_128_bits(&short_hash(&[&metadata, spec_digest], 32))
}

/// The fingerprint of the values `desired` declares, as `live` holds them.
fn fingerprint(desired: &Value, live: &Value) -> u128 {
    first_128_bits(&declared_fingerprint(desired, live))
}

/// The first 128 bits of a hash in lower-case hex.
fn first_128_bits(hex: &str) -> u128 {
    u128::from_str_radix(hex.get(..32).unwrap_or(hex), 16).unwrap_or_default()
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

    fn record<K: Resource<DynamicType = ()>>(
        &self,
        ns: &str,
        desired: &Value,
        live: &K,
        live_value: &Value,
    ) {
        let fingerprint = fingerprint(desired, live_value);
        let digested = digested(
            desired,
            &live_value["metadata"],
            &spec_digest(&live_value["spec"]),
        );
        let meta = live.meta();
        let owner = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.clone());
        let trace = Trace {
            fingerprint,
            digested,
            resource_version: meta.resource_version.clone(),
            generation: meta.generation,
            owner,
        };
        if let Ok(mut traces) = self.0.lock() {
            traces.insert(Self::key::<K>(ns, &live.name_any()), trace);
        }
    }

    /// The `metadata.generation` child `name` in `ns` had when this process
    /// last applied or read it, unless a write of it has been sent since
    /// without an answer: a cache showing this generation or a later one
    /// shows that write. `None` when this process has not written the child
    /// yet (it may have started since), or its last write is unanswered.
    pub(crate) fn generation<K: Resource<DynamicType = ()>>(
        &self,
        ns: &str,
        name: &str,
    ) -> Option<i64> {
        self.0
            .lock()
            .ok()?
            .get(&Self::key::<K>(ns, name))?
            .generation
    }

    /// A write of child `name` in `ns` is about to be sent: until its answer
    /// is recorded, the generation this process knows is not the child's.
    fn writing<K: Resource<DynamicType = ()>>(&self, ns: &str, name: &str) {
        if let Ok(mut traces) = self.0.lock()
            && let Some(trace) = traces.get_mut(&Self::key::<K>(ns, name))
        {
            trace.generation = None;
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
    live: Live<'_>,
) -> Result<ChildWrite> {
    let (child, digest) = stamp(child);
    let name = child.name_any();
    let trace = ctx.traces.recall::<K>(ns, &name);
    let desired = serde_json::to_value(&child).unwrap_or_default();
    let this = Some(Stamp::of(&digest));
    let unchanged = match (&live, &trace) {
        (Live::Metadata(Some(shown)), Some(trace)) => {
            shown.stamp == this
                && shown.resource_version.is_some()
                && shown.resource_version == trace.resource_version.as_deref()
        }
        (Live::Digested(Some((stamp, metadata, spec_digest))), Some(trace)) => {
            *stamp == this && digested(&desired, metadata, spec_digest) == trace.digested
        }
        _ => false,
    };
    if unchanged {
        return Ok(ChildWrite::Unchanged);
    }
    // A child the cache does not hold, or holds without the stamp, is not
    // there yet or declares other content: applied without a read (the
    // apply is the same either way). Only a stamped child that changed
    // since Strata's apply is read, to tell another writer's change.
    let live = match live {
        Live::Digested(None) | Live::Metadata(None) => None,
        Live::Metadata(Some(Shown { stamp, .. })) | Live::Digested(Some((stamp, _, _)))
            if stamp != this =>
        {
            None
        }
        _ => {
            Api::<K>::namespaced(ctx.client.clone(), ns)
                .get_opt(&name)
                .await?
        }
    };
    let mut outcome = ChildWrite::Applied;
    if let Some(live) = &live
        && stamp_of(live.meta()).is_some_and(|s| *s == digest)
    {
        let live_value = serde_json::to_value(live).unwrap_or_default();
        let now = fingerprint(&desired, &live_value);
        let expected = trace
            .map(|t| t.fingerprint)
            .unwrap_or_else(|| fingerprint(&desired, &desired));
        if now == expected {
            ctx.traces.record(ns, &desired, live, &live_value);
            return Ok(ChildWrite::Unchanged);
        }
        outcome = ChildWrite::Restored;
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    ctx.traces.writing::<K>(ns, &name);
    let applied = server_side_apply(&api, manager, &child).await?;
    let applied_value = serde_json::to_value(&applied).unwrap_or_default();
    ctx.traces.record(ns, &desired, &applied, &applied_value);
    Ok(outcome)
}

/// The digest of an object's spec (as JSON): the same for the same
/// content however the object was read, whole or into a projection.
pub(crate) fn spec_digest(spec: &Value) -> String {
    canonical_digest(spec)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(value: Value) -> ObjectMeta {
        serde_json::from_value(value).expect("valid metadata")
    }

    #[test]
    fn a_metadata_cache_keeps_what_is_read() {
        let live = meta(json!({
            "name": "upf",
            "namespace": "core",
            "uid": "u-1",
            "resourceVersion": "7",
            "labels": {"app.kubernetes.io/name": "upf"},
            "annotations": {DIGEST_ANNOTATION: "sha256:a", "other": "x"},
            "ownerReferences": [{"apiVersion": "strata.dev/v1alpha1", "kind": "NetworkFunction", "name": "upf", "uid": "o-1", "controller": true}],
        }));
        let kept = ChildMeta::<k8s_openapi::api::core::v1::Service>::read(PartialObjectMeta {
            types: None,
            metadata: live.clone(),
            _phantom: std::marker::PhantomData,
        });
        assert_eq!(
            kept.metadata,
            meta(json!({
                "name": "upf",
                "namespace": "core",
                "resourceVersion": "7",
                "ownerReferences": live.owner_references,
            }))
        );
        assert_eq!(kept.stamp, Some(Stamp::of("sha256:a")));
        assert_ne!(kept.stamp, Some(Stamp::of("sha256:b")));
        let unstamped = PartialObjectMeta::<k8s_openapi::api::core::v1::Service> {
            types: None,
            metadata: meta(json!({"name": "upf"})),
            _phantom: std::marker::PhantomData,
        };
        assert_eq!(ChildMeta::read(unstamped).stamp, None, "no stamp");
    }

    #[test]
    fn a_digested_child_changes_with_its_spec_and_the_metadata_strata_declares() {
        let desired =
            json!({"metadata": {"name": "upf", "labels": {"a": "1"}}, "spec": {"replicas": 2}});
        let live = json!({"name": "upf", "labels": {"a": "1"}, "annotations": {"revision": "1"}});
        let spec = spec_digest(&json!({"replicas": 2, "paused": false}));
        let before = digested(&desired, &live, &spec);
        let mut annotated = live.clone();
        annotated["annotations"]["revision"] = json!("2");
        assert_eq!(
            digested(&desired, &annotated, &spec),
            before,
            "metadata Strata does not declare"
        );
        let mut relabelled = live.clone();
        relabelled["labels"]["a"] = json!("2");
        assert_ne!(digested(&desired, &relabelled, &spec), before);
        let scaled = spec_digest(&json!({"replicas": 3, "paused": false}));
        assert_ne!(digested(&desired, &live, &scaled), before);
    }
}
