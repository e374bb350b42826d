//! The watches behind the controllers: their caches and their triggers.
//!
//! Every watch backs off on its own, with client-go's policy (0.8 s doubling
//! to 30 s, with jitter, reset after two minutes without an error), and the
//! controllers do not pause their triggers as a whole. kube-runtime's
//! `Controller` otherwise applies one backoff to all of its triggers merged:
//! an error of any watch paused every watch of the controller, the pause grew
//! with each error of any of them and was reset only after two quiet minutes.
//! After an API server outage, when each watch fails once more on its stale
//! resource version (410 Gone), a controller with seven watches could go
//! minutes without seeing a change.
//!
//! Stacks, NetworkFunctions and ServiceChains are each watched once, and
//! the controllers that react to them are fed from that one watch, after
//! its cache has taken each change in ([`SharedWatch`]). With a watch per
//! trigger, a trigger could run ahead of the cache its reconcile reads: a
//! Stack woken by its last consumer's change counted 9 of its 10 consumers
//! until the next resync.
//!
//! Managed fields are dropped from every cached object: nothing reads them,
//! and they are much of each object's size.

use std::{fmt::Debug, future::Future, sync::Arc, time::Duration};

use futures::{
    SinkExt, Stream, StreamExt,
    channel::mpsc,
    stream::{self, BoxStream},
};
use kube::{
    Resource, ResourceExt,
    api::Api,
    runtime::{
        Controller, WatchStreamExt,
        controller::Config as ControllerConfig,
        reflector::{self, Store},
        utils::Backoff,
        watcher,
    },
};
use serde::de::DeserializeOwned;

/// Changes a trigger of a [`SharedWatch`] may hold before the watch waits
/// for its controller to take them.
const TRIGGER_BUFFER: usize = 1024;

/// The watch parameters: any resource version will do for a list (served
/// from the API server's cache).
pub fn config() -> watcher::Config {
    watcher::Config::default().any_semantic()
}

/// One watch of `K` with its cache, feeding any number of triggers. Each
/// trigger receives an object once the cache holds it (or, when deleted, no
/// longer does); after a (re)list, every object listed.
pub struct SharedWatch<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    events: BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>,
    triggers: Vec<mpsc::Sender<Arc<K>>>,
}

impl<K> SharedWatch<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Watches `K` in `api` (nothing happens before [`Self::run`]).
    pub fn new(api: Api<K>) -> Self {
        let (store, events) = cached(api, config());
        Self {
            store,
            events: events.boxed(),
            triggers: Vec::new(),
        }
    }

    /// The cache.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// A new trigger: the objects as they change.
    pub fn trigger(&mut self) -> impl Stream<Item = Arc<K>> + Send + 'static {
        let (sender, receiver) = mpsc::channel(TRIGGER_BUFFER);
        self.triggers.push(sender);
        receiver
    }

    /// A controller of `K`, reconciling each object as it changes.
    pub fn controller(&mut self, config: ControllerConfig) -> Controller<K> {
        Controller::for_shared_stream(self.trigger(), self.store())
            .with_config(config)
            .trigger_backoff(Unpaused)
    }

    /// Runs the watch and feeds the triggers until `until` completes; the
    /// triggers end then. A trigger whose controller has ended is skipped.
    pub async fn run(self, until: impl Future<Output = ()>) {
        let Self {
            store,
            events,
            mut triggers,
        } = self;
        let mut events = std::pin::pin!(events.take_until(until));
        while let Some(event) = events.next().await {
            let changed = match event {
                Ok(watcher::Event::Apply(object) | watcher::Event::Delete(object)) => {
                    vec![Arc::new(object)]
                }
                // The cache has just been replaced by what was listed.
                Ok(watcher::Event::InitDone) => store.state(),
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
                Err(error) => {
                    tracing::debug!(%error, kind = %K::kind(&()), "watch failed; retrying");
                    continue;
                }
            };
            for trigger in &mut triggers {
                let mut objects = stream::iter(changed.iter().cloned().map(Ok));
                // A trigger whose controller has ended is closed: nothing to feed.
                let _ = trigger.send_all(&mut objects).await;
            }
        }
    }
}

/// A cache of `K` and the watch events that keep it, backing off on their own.
pub fn cached<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (
    Store<K>,
    impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let events = reflector::reflector(
        writer,
        watcher(api, config).modify(|o| o.managed_fields_mut().clear()),
    )
    .default_backoff();
    (store, events)
}

/// The objects of `K` in `api` as they change, for a trigger; no cache.
pub fn changes<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher(api, config).default_backoff().touched_objects()
}

/// The backoff of a controller's merged triggers: none, since each of them
/// backs off on its own.
struct Unpaused;

impl Iterator for Unpaused {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl Backoff for Unpaused {
    fn reset(&mut self) {}
}
