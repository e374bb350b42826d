//! The controllers: one module per kind, each a named pipeline run by the
//! one reconcile skeleton ([`skeleton`]). A reconcile reads, builds the
//! desired state with the pure functions of `render`, applies it (see
//! [`apply`] for the vocabulary), and writes status only when it changed.
//!
//! Each controller runs with a [`Context`] of its own: what every
//! controller needs (client, Events, metrics, settings, the caches and the
//! relations index), what this process remembers of the objects it wrote,
//! and the controller's own state. What is remembered of an object is keyed
//! by its uid and forgotten in one place, when its watch sees it deleted
//! (each controller's `forget`).

pub(crate) mod apply;
pub mod chain;
pub mod conditions;
mod events;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod function;
pub mod relations;
pub mod skeleton;
pub mod stack;
mod statuses;
pub mod waves;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Service};
use kube::{
    Client, Resource,
    runtime::{
        events::{Event, EventType},
        reflector::Store,
    },
};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    Error, Result,
    api::{NetworkFunction, ServiceChain, Stack},
    runtime::{backoff::Backoff, fence::WriteFence, metrics::Metrics, settings::Settings},
};
pub use apply::{ChildMeta, Stamp};
use events::Recorder;
use relations::Relations;

/// The caches of the kinds the controllers read across one another.
#[derive(Clone)]
pub struct Stores {
    /// Every Stack the operator watches.
    pub stacks: Store<Stack>,
    /// Every NetworkFunction the operator watches.
    pub functions: Store<NetworkFunction>,
    /// Every ServiceChain the operator watches.
    pub chains: Store<ServiceChain>,
    /// What the NetworkFunction controller reads of the Deployments of
    /// NetworkFunctions (not their pod templates).
    pub deployments: Store<function::DeploymentState>,
    /// The metadata of the Services of NetworkFunctions.
    pub services: Store<ChildMeta<Service>>,
    /// The metadata of the ConfigMaps of NetworkFunctions.
    pub config_maps: Store<ChildMeta<ConfigMap>>,
}

/// What every controller shares: built once per term of the process.
#[derive(Clone)]
pub struct Shared {
    /// Client with the operator's own identity, its writes fenced to the term.
    pub client: Client,
    /// Configuration the client was built from; impersonating clients derive from it.
    pub config: kube::Config,
    /// The write fence of `client`, which impersonating clients pass too.
    pub fence: WriteFence,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Operator settings.
    pub settings: Settings,
    /// Caches of the watched kinds.
    pub stores: Stores,
    /// Who relates to whom, kept by the shared watches.
    pub relations: Arc<Relations>,
}

/// The controller name on the Events the operator publishes.
const REPORTER: &str = "strata";

/// What a controller's reconciles run with: the shared parts, what this
/// process remembers of the objects the controller wrote, and the
/// controller's own state `S`.
pub struct Context<S> {
    /// Client with the operator's own identity.
    pub client: Client,
    /// Configuration the client was built from.
    pub config: kube::Config,
    /// The write fence of `client`.
    pub fence: WriteFence,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Operator settings.
    pub settings: Settings,
    /// Caches of the watched kinds.
    pub stores: Stores,
    /// Who relates to whom.
    pub relations: Arc<Relations>,
    /// The controller's own state.
    pub state: S,
    /// The statuses written, until the cache shows them.
    written_status: statuses::WrittenStatus,
    /// What was applied of each child.
    traces: apply::Traces,
    /// Retry delays of failing objects.
    backoff: Backoff,
}

/// Shared handle to a controller's context, as the controller runtime passes it.
pub type Ctx<S> = Arc<Context<S>>;

impl<S> Context<S> {
    /// A controller's context with `state` of its own.
    pub fn new(shared: Shared, state: S) -> Self {
        let recorder = Recorder::new(shared.client.clone(), REPORTER);
        Self {
            client: shared.client,
            config: shared.config,
            fence: shared.fence,
            recorder,
            metrics: shared.metrics,
            settings: shared.settings,
            stores: shared.stores,
            relations: shared.relations,
            state,
            written_status: statuses::WrittenStatus::default(),
            traces: apply::Traces::default(),
            backoff: Backoff::default(),
        }
    }

    /// The status of `obj` as this process last wrote it, else as cached.
    ///
    /// A reconcile can be handed an object from the cache before the cache
    /// has seen this process's own last status write; only the operator
    /// writes these statuses, so its last write is the fresher truth.
    pub fn fresh_status<K, T>(&self, obj: &K, cached: Option<&T>) -> T
    where
        K: Resource,
        T: Serialize + DeserializeOwned + Default + Clone,
    {
        let uid = obj.meta().uid.as_deref().unwrap_or_default();
        self.written_status.fresh(uid, cached)
    }

    /// Remembers the status just written for `obj` (see [`Context::fresh_status`]).
    pub fn wrote_status<K: Resource, T: Serialize>(&self, obj: &K, status: &T) {
        let uid = obj.meta().uid.clone().unwrap_or_default();
        self.written_status.wrote(uid, status);
    }

    /// Forgets everything remembered of `obj` (deleted) and of its children.
    /// Controllers call it from their own `forget`, with their own state.
    pub fn forget<K: Resource>(&self, obj: &K) {
        if let Some(uid) = obj.meta().uid.as_deref() {
            self.written_status.forget(uid);
            self.traces.forget_children_of(uid);
            self.backoff.reset(uid);
        }
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
    /// object, reason, action, related object and note: the same reason
    /// about another related object, or with another note, is an Event of
    /// its own.
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
            note: Some(note),
            action: action.into(),
            secondary: related,
        };
        let published = self.recorder.publish(&event, &reference).await;
        if let Err(error) = published {
            tracing::warn!(%error, reason, "publishing an event failed");
        }
    }
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
