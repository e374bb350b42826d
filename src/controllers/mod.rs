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
    written_status: std::sync::Mutex<HashMap<String, serde_json::Value>>,
    applied_fingerprints: std::sync::Mutex<HashMap<String, String>>,
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
            written_status: std::sync::Mutex::default(),
            applied_fingerprints: std::sync::Mutex::default(),
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
        let uid = obj.meta().uid.clone().unwrap_or_default();
        let written = self
            .written_status
            .lock()
            .ok()
            .and_then(|w| w.get(&uid).cloned());
        written
            .and_then(|v| serde_json::from_value(v).ok())
            .or_else(|| cached.cloned())
            .unwrap_or_default()
    }

    /// Remembers the status just written for `obj` (see [`Context::fresh_status`]).
    pub fn wrote_status<K: Resource, S: Serialize>(&self, obj: &K, status: &S) {
        let uid = obj.meta().uid.clone().unwrap_or_default();
        if let (Ok(mut written), Ok(value)) =
            (self.written_status.lock(), serde_json::to_value(status))
        {
            written.insert(uid, value);
        }
    }

    /// Forgets a deleted object's status.
    pub fn forget_status<K: Resource>(&self, obj: &K) {
        if let (Ok(mut written), Some(uid)) = (self.written_status.lock(), obj.meta().uid.as_ref())
        {
            written.remove(uid);
        }
    }

    fn applied_fingerprint(&self, key: &str) -> Option<String> {
        self.applied_fingerprints.lock().ok()?.get(key).cloned()
    }

    fn remember_fingerprint(&self, key: String, fingerprint: String) {
        if let Ok(mut remembered) = self.applied_fingerprints.lock() {
            remembered.insert(key, fingerprint);
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
        let reference: ObjectReference = obj.object_ref(&());
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(events::fit_note(note)),
            action: action.into(),
            secondary: None,
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

/// Server-side applies `child` under `manager` unless the live object carries
/// the same [`APPLIED_DIGEST`]. `live` gives the live metadata when the caller
/// has it (a cache, a list); when it is missing or differs the object is read,
/// since a cache may not have seen Strata's own last apply yet.
pub(crate) async fn apply_if_changed<K>(
    ctx: &Context,
    ns: &str,
    manager: &str,
    child: K,
    live: impl FnOnce() -> Option<kube::api::ObjectMeta>,
) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let (child, digest) = stamped(child);
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    if live().as_ref().and_then(applied_digest) == Some(&digest) {
        return Ok(());
    }
    let fresh = api.get_metadata_opt(&child.name_any()).await?;
    if fresh.as_ref().and_then(|m| applied_digest(&m.metadata)) == Some(&digest) {
        return Ok(());
    }
    force_apply(&api, manager, &child).await?;
    Ok(())
}

/// What [`apply_correcting_drift`] did.
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
pub(crate) async fn apply_correcting_drift<K>(
    ctx: &Context,
    ns: &str,
    manager: &str,
    child: K,
    live: Option<&K>,
) -> Result<Applied>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
{
    let (child, digest) = stamped(child);
    let desired = serde_json::to_value(&child).unwrap_or_default();
    let key = format!("{}/{ns}/{}", K::kind(&()), child.name_any());
    let mut outcome = Applied::Changed;
    if let Some(live) = live
        && applied_digest(live.meta()) == Some(&digest)
    {
        let now = declared_fingerprint(&desired, &serde_json::to_value(live).unwrap_or_default());
        // A process that has not applied it yet (it restarted) compares with
        // the declared values themselves.
        let expected = ctx
            .applied_fingerprint(&key)
            .unwrap_or_else(|| declared_fingerprint(&desired, &desired));
        if now == expected {
            ctx.remember_fingerprint(key, now);
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
    ctx.remember_fingerprint(key, fingerprint);
    Ok(outcome)
}

/// Forgets what [`apply_correcting_drift`] remembered of a deleted child.
pub(crate) fn forget_applied<K: Resource<DynamicType = ()>>(ctx: &Context, ns: &str, name: &str) {
    if let Ok(mut remembered) = ctx.applied_fingerprints.lock() {
        remembered.remove(&format!("{}/{ns}/{name}", K::kind(&())));
    }
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
