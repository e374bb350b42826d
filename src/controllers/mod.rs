//! The controllers: one module per kind. Each reconcile reads, builds the
//! desired state with the pure functions of `render`, applies it, and writes
//! status only when it changed.

pub mod chain;
pub mod conditions;
mod events;
pub mod function;
pub mod stack;

use std::{collections::HashMap, sync::Arc};

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, ObjectReference, Service},
};
use kube::{
    Client, Resource, ResourceExt,
    api::{Api, PartialObjectMeta, Patch, PatchParams},
    runtime::{
        controller::Action,
        events::{Event, EventType, Recorder, Reporter},
        reflector::Store,
    },
};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::Mutex;

use crate::{
    Error, Result,
    api::{NetworkFunction, ServiceChain, Stack},
    render::digest::declared_fingerprint,
    runtime::{
        fence::{self, WriteFence},
        metrics::Metrics,
        settings::Settings,
    },
};

/// The caches of the kinds the controllers read across one another.
#[derive(Clone)]
pub struct Stores {
    /// Every Stack the operator watches.
    pub stacks: Store<Stack>,
    /// Every NetworkFunction the operator watches.
    pub functions: Store<NetworkFunction>,
    /// Every ServiceChain the operator watches.
    pub chains: Store<ServiceChain>,
    /// The Deployments of NetworkFunctions.
    pub deployments: Store<Deployment>,
    /// The metadata of the Services of NetworkFunctions.
    pub services: Store<PartialObjectMeta<Service>>,
    /// The metadata of the ConfigMaps of NetworkFunctions.
    pub config_maps: Store<PartialObjectMeta<ConfigMap>>,
}

/// The controller name on the Events the operator publishes.
const REPORTER: &str = "strata";

/// Everything a reconcile needs, shared by all controllers.
pub struct Context {
    /// Client with the operator's own identity.
    pub client: Client,
    /// Configuration the client was built from; impersonating clients derive from it.
    pub config: kube::Config,
    /// The write fence of `client`, which impersonating clients pass too.
    pub fence: WriteFence,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Operator settings.
    pub settings: Settings,
    /// Caches of the watched kinds.
    pub stores: Stores,
    /// Per-controller state that must outlive one reconcile.
    pub stack_state: stack::State,
    /// Which consumers are moving to a new Stack version now.
    pub adoptions: function::resolve::Adoptions,
    /// Where each function's ledger of DeploymentRecords ends, as this process knows it.
    pub ledgers: function::records::Ledgers,
    impersonated: Mutex<HashMap<String, Client>>,
    written_status: WrittenStatus,
    /// What Strata last applied of each child, by [`child_key`].
    applied: std::sync::Mutex<HashMap<String, AppliedChild>>,
}

/// The statuses this process wrote, by object uid, until the cache shows
/// them: a reconcile handed an object the cache has not updated yet reads
/// its last status from here. An entry is dropped once the cache shows the
/// same status, so only writes the cache has not caught up with are held.
#[derive(Default)]
struct WrittenStatus(std::sync::Mutex<HashMap<String, serde_json::Value>>);

impl WrittenStatus {
    /// The status last written for `uid` if the cache (`cached`) does not
    /// show it yet, else the cached one.
    fn fresh<S>(&self, uid: &str, cached: Option<&S>) -> S
    where
        S: Serialize + DeserializeOwned + Default + Clone,
    {
        let cached_or_default = || cached.cloned().unwrap_or_default();
        let Ok(mut written) = self.0.lock() else {
            return cached_or_default();
        };
        let Some(last) = written.get(uid) else {
            return cached_or_default();
        };
        if cached.and_then(|c| serde_json::to_value(c).ok()).as_ref() == Some(last) {
            written.remove(uid);
            return cached_or_default();
        }
        serde_json::from_value(last.clone()).unwrap_or_else(|_| cached_or_default())
    }

    /// Remembers `status`, just written for `uid`.
    fn wrote<S: Serialize>(&self, uid: String, status: &S) {
        if let (Ok(mut written), Ok(value)) = (self.0.lock(), serde_json::to_value(status)) {
            written.insert(uid, value);
        }
    }

    /// Forgets `uid` (a deleted object).
    fn forget(&self, uid: &str) {
        if let Ok(mut written) = self.0.lock() {
            written.remove(uid);
        }
    }
}

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

/// What a controller knows of a child it applied: a fingerprint of the
/// values it declares as the API server returned them, and the child's
/// resourceVersion then (or when it was last found unchanged).
#[derive(Clone, Debug)]
struct AppliedChild {
    fingerprint: String,
    resource_version: Option<String>,
    /// The uid of the child's controller (its owner), to forget it with them.
    owner: Option<String>,
}

/// The key of child `name` of kind `K` in `ns`.
fn child_key<K: Resource<DynamicType = ()>>(ns: &str, name: &str) -> String {
    format!("{}/{ns}/{name}", K::kind(&()))
}

impl Context {
    /// Builds the context.
    pub fn new(
        client: Client,
        config: kube::Config,
        settings: Settings,
        metrics: Metrics,
        stores: Stores,
    ) -> Self {
        let recorder = Recorder::new(client.clone(), Reporter::from(REPORTER));
        Self {
            client,
            config,
            fence: WriteFence::unfenced(),
            recorder,
            metrics,
            settings,
            stores,
            stack_state: stack::State::default(),
            adoptions: function::resolve::Adoptions::default(),
            ledgers: function::records::Ledgers::default(),
            impersonated: Mutex::default(),
            written_status: WrittenStatus::default(),
            applied: std::sync::Mutex::default(),
        }
    }

    /// The context with writes of impersonating clients fenced by `fence`
    /// (the fence `client` was built with).
    pub fn with_fence(mut self, fence: WriteFence) -> Self {
        self.fence = fence;
        self
    }

    /// The status of `obj` as this process last wrote it, else as cached.
    ///
    /// A reconcile can be handed an object from the cache before the cache
    /// has seen this process's own last status write; only the operator
    /// writes these statuses, so its last write is the fresher truth.
    pub fn fresh_status<K, S>(&self, obj: &K, cached: Option<&S>) -> S
    where
        K: Resource,
        S: Serialize + DeserializeOwned + Default + Clone,
    {
        let uid = obj.meta().uid.as_deref().unwrap_or_default();
        self.written_status.fresh(uid, cached)
    }

    /// Remembers the status just written for `obj` (see [`Context::fresh_status`]).
    pub fn wrote_status<K: Resource, S: Serialize>(&self, obj: &K, status: &S) {
        let uid = obj.meta().uid.clone().unwrap_or_default();
        self.written_status.wrote(uid, status);
    }

    /// Forgets a deleted object's status.
    pub fn forget_status<K: Resource>(&self, obj: &K) {
        if let Some(uid) = obj.meta().uid.as_deref() {
            self.written_status.forget(uid);
        }
    }

    fn applied_child(&self, key: &str) -> Option<AppliedChild> {
        self.applied.lock().ok()?.get(key).cloned()
    }

    fn remember_child<K: Resource>(&self, key: String, fingerprint: String, live: &K) {
        if let Ok(mut remembered) = self.applied.lock() {
            let meta = live.meta();
            let owner = meta
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.clone());
            remembered.insert(
                key,
                AppliedChild {
                    fingerprint,
                    resource_version: meta.resource_version.clone(),
                    owner,
                },
            );
        }
    }

    /// Forgets what the apply helpers remembered of the children of `owner`
    /// (being deleted; its children go with it).
    pub fn forget_children_of<K: Resource>(&self, owner: &K) {
        if let (Ok(mut remembered), Some(uid)) = (self.applied.lock(), owner.meta().uid.as_ref()) {
            remembered.retain(|_, child| child.owner.as_ref() != Some(uid));
        }
    }

    /// A client that makes every request as ServiceAccount `name` of `namespace`:
    /// the API server then enforces what that ServiceAccount may do.
    pub async fn impersonating(&self, namespace: &str, name: &str) -> Result<Client> {
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let mut cache = self.impersonated.lock().await;
        if let Some(client) = cache.get(&user) {
            return Ok(client.clone());
        }
        let mut config = self.config.clone();
        // Only the user: the API server adds a ServiceAccount's groups itself,
        // and impersonating groups would need `impersonate` on any group.
        config.auth_info.impersonate = Some(user.clone());
        let client = fence::client(config, self.fence.clone(), self.metrics.clone())?;
        cache.insert(user, client.clone());
        Ok(client)
    }

    /// Publishes an Event about `obj`. Failing to publish is logged, never fatal.
    pub async fn publish<K>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) where
        K: Resource<DynamicType = ()>,
    {
        self.publish_related(obj, None, type_, reason, action, note)
            .await;
    }

    /// Publishes an Event about `obj` that concerns `related` too (say, the
    /// child an action was taken on). Events are counted as a series per
    /// object, reason, action and related object: the same reason about
    /// another related object is an Event of its own, with its own note.
    pub async fn publish_related<K>(
        &self,
        obj: &K,
        related: Option<ObjectReference>,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) where
        K: Resource<DynamicType = ()>,
    {
        let reference: ObjectReference = obj.object_ref(&());
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(events::fit_note(note)),
            action: action.into(),
            secondary: related,
        };
        let published =
            if obj.meta().name.as_ref().map_or(0, String::len) > events::MAX_RECORDED_NAME {
                events::publish_long_named(&self.client, REPORTER, &event, &reference).await
            } else {
                self.recorder.publish(&event, &reference).await
            };
        if let Err(error) = published {
            tracing::warn!(%error, reason, "publishing an event failed");
        }
    }
}

/// Writes `status` with server-side apply under `manager`. Fields the manager
/// no longer sets are removed, unlike with a merge patch.
pub async fn apply_status<K, S>(api: &Api<K>, obj: &K, manager: &str, status: &S) -> Result<()>
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

/// Annotation on each object a controller applies: the digest of what it
/// applied, so that an unchanged object costs no write.
pub const APPLIED_DIGEST: &str = "strata.dev/applied-digest";

/// Server-side applies `child` under `manager` unless the live object is
/// what Strata declares. `live` gives the live metadata when the caller has
/// it (a cache, a list). When it carries the same [`APPLIED_DIGEST`] and the
/// resourceVersion Strata last saw, nothing is read; otherwise (another
/// writer changed the object, this process has not seen it yet, or the
/// cache lags) the object is read and its declared values compared, as in
/// [`apply_correcting_drift`].
pub(crate) async fn apply_if_changed<K: Child>(
    ctx: &Context,
    ns: &str,
    manager: &str,
    child: K,
    live: impl FnOnce() -> Option<kube::api::ObjectMeta>,
) -> Result<Applied> {
    let (child, digest) = stamped(child);
    let remembered = ctx.applied_child(&child_key::<K>(ns, &child.name_any()));
    if let (Some(live), Some(remembered)) = (live(), &remembered)
        && applied_digest(&live) == Some(&digest)
        && live.resource_version.is_some()
        && live.resource_version == remembered.resource_version
    {
        return Ok(Applied::Unchanged);
    }
    let fresh = Api::<K>::namespaced(ctx.client.clone(), ns)
        .get_opt(&child.name_any())
        .await?;
    apply_stamped(ctx, ns, manager, child, fresh.as_ref()).await
}

/// What [`apply_if_changed`] or [`apply_correcting_drift`] did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The live object was what Strata declares: no write.
    Unchanged,
    /// The declared content changed, or the object was missing.
    Changed,
    /// Someone else had changed values Strata declares; they are restored.
    DriftCorrected,
}

/// Like [`apply_if_changed`], for a child the caller has whole from a cache:
/// applied again also when another writer changed a value Strata declares.
/// What the API server returned for Strata's last apply is remembered as a
/// fingerprint of the declared values, so that server-side defaults and
/// normalisation do not count as drift.
pub(crate) async fn apply_correcting_drift<K: Child>(
    ctx: &Context,
    ns: &str,
    manager: &str,
    child: K,
    live: Option<&K>,
) -> Result<Applied> {
    apply_stamped(ctx, ns, manager, stamped(child).0, live).await
}

/// Applies `child` (stamped by [`stamped`]) unless `live` carries the same
/// digest and the values Strata declares are as it left them (a process
/// that has not applied the child yet compares with the declared values
/// themselves). Remembers what the API server returned.
async fn apply_stamped<K: Child>(
    ctx: &Context,
    ns: &str,
    manager: &str,
    child: K,
    live: Option<&K>,
) -> Result<Applied> {
    let key = child_key::<K>(ns, &child.name_any());
    let desired = serde_json::to_value(&child).unwrap_or_default();
    let mut outcome = Applied::Changed;
    if let Some(live) = live
        && applied_digest(live.meta()).is_some()
        && applied_digest(live.meta()) == applied_digest(child.meta())
    {
        let now = declared_fingerprint(&desired, &serde_json::to_value(live).unwrap_or_default());
        let expected = ctx
            .applied_child(&key)
            .map(|r| r.fingerprint)
            .unwrap_or_else(|| declared_fingerprint(&desired, &desired));
        if now == expected {
            ctx.remember_child(key, now, live);
            return Ok(Applied::Unchanged);
        }
        outcome = Applied::DriftCorrected;
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let applied = force_apply(&api, manager, &child).await?;
    let fingerprint = declared_fingerprint(
        &desired,
        &serde_json::to_value(&applied).unwrap_or_default(),
    );
    ctx.remember_child(key, fingerprint, &applied);
    Ok(outcome)
}

/// `child` with its [`APPLIED_DIGEST`] annotation, and that digest.
fn stamped<K: Resource + Serialize>(mut child: K) -> (K, String) {
    let digest =
        crate::render::digest::canonical_digest(&serde_json::to_value(&child).unwrap_or_default());
    child
        .annotations_mut()
        .insert(APPLIED_DIGEST.into(), digest.clone());
    (child, digest)
}

fn applied_digest(meta: &kube::api::ObjectMeta) -> Option<&String> {
    meta.annotations.as_ref()?.get(APPLIED_DIGEST)
}

async fn force_apply<K>(api: &Api<K>, manager: &str, child: &K) -> Result<K>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    api.patch(
        &child.name_any(),
        &PatchParams::apply(manager).force(),
        &Patch::Apply(child),
    )
    .await
    .map_err(Error::from)
}

/// The namespace of a namespaced object (set on every object the API server returns).
pub fn namespace_of<K: Resource>(obj: &K) -> Result<String> {
    obj.meta().namespace.clone().ok_or_else(|| {
        Error::NotReady(format!(
            "{} has no namespace",
            obj.meta().name.clone().unwrap_or_default()
        ))
    })
}

/// Runs one reconcile of `obj` in a span naming its kind, namespace and name
/// (so every log line about it carries them), and counts it in the metrics.
pub async fn instrumented<K>(
    ctx: &Ctx,
    obj: &K,
    work: impl std::future::Future<Output = Result<Action>>,
) -> Result<Action>
where
    K: Resource<DynamicType = ()>,
{
    let kind = K::kind(&());
    let started = std::time::Instant::now();
    let span = tracing::info_span!(
        "reconcile",
        kind = &*kind,
        namespace = obj.meta().namespace.as_deref().unwrap_or_default(),
        name = obj.meta().name.as_deref().unwrap_or_default(),
    );
    let result = tracing::Instrument::instrument(work, span).await;
    let label = match &result {
        Ok(_) => "success",
        Err(e) => e.reason(),
    };
    ctx.metrics
        .reconciled(&kind, label, started.elapsed().as_secs_f64());
    result
}

/// The retry policy shared by the controllers: a Stalled error waits for a
/// spec change (the status already says why); anything else is retried with
/// backoff.
pub fn retry_policy<K>(obj: &K, error: &Error) -> Action
where
    K: Resource<DynamicType = ()>,
{
    if error.is_stalled() {
        Action::await_change()
    } else {
        tracing::warn!(
            kind = &*K::kind(&()),
            namespace = obj.meta().namespace.as_deref().unwrap_or_default(),
            name = obj.meta().name.as_deref().unwrap_or_default(),
            %error,
            "reconcile failed; retrying"
        );
        Action::requeue(std::time::Duration::from_secs(5))
    }
}

/// Shared handle to the context, as the controller runtime passes it.
pub type Ctx = Arc<Context>;

#[cfg(test)]
mod tests {
    use super::*;

    impl WrittenStatus {
        fn len(&self) -> usize {
            self.0.lock().map_or(0, |w| w.len())
        }
    }

    #[derive(Serialize, serde::Deserialize, Default, Clone, Debug, PartialEq)]
    struct Status {
        phase: String,
    }

    fn status(phase: &str) -> Status {
        Status {
            phase: phase.to_string(),
        }
    }

    #[test]
    fn a_written_status_is_held_only_until_the_cache_shows_it() {
        let written = WrittenStatus::default();
        // Nothing written: the cache's status (or the default).
        assert_eq!(
            written.fresh("a", Some(&status("cached"))),
            status("cached")
        );
        assert_eq!(written.fresh::<Status>("a", None), Status::default());

        written.wrote("a".into(), &status("written"));
        // The cache lags: the written status is the fresher one, and is kept.
        assert_eq!(
            written.fresh("a", Some(&status("cached"))),
            status("written")
        );
        assert_eq!(written.fresh::<Status>("a", None), status("written"));
        assert_eq!(written.len(), 1);
        // The cache caught up: the entry is dropped.
        assert_eq!(
            written.fresh("a", Some(&status("written"))),
            status("written")
        );
        assert_eq!(written.len(), 0);
        // Later cached statuses are taken as they are.
        assert_eq!(written.fresh("a", Some(&status("newer"))), status("newer"));

        written.wrote("b".into(), &status("written"));
        written.forget("b");
        assert_eq!(written.len(), 0);
    }
}
