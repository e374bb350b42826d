//! The watches behind the controllers: their caches and their triggers.
//!
//! Every watch backs off on its own, with client-go's policy (0.8 s doubling
//! to 30 s, with jitter, reset after two minutes without an error); the
//! controllers do not pause their triggers as a whole, since one backoff
//! for all of a controller's triggers would hold every watch back for the
//! errors of one.
//!
//! A kind several controllers react to is watched once ([`SharedWatch`]):
//! its observers (indexes, the memory of deleted objects) and then its
//! triggers are fed after its cache has taken each change in, so that a
//! reconcile always reads back the change that woke it.
//!
//! Managed fields and `kubectl apply`'s last-applied configuration are
//! dropped from every cached object: nothing reads them, and they are much
//! of each object's size. A cache can also keep a projection of each object
//! ([`projected`]): the few fields its readers need, not the whole object.

use std::{fmt::Debug, future::Future, sync::Arc, time::Duration};

use futures::{
    SinkExt, Stream, StreamExt, TryStreamExt,
    channel::mpsc,
    stream::{self, BoxStream},
};
use kube::{
    Resource,
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

/// The annotation `kubectl apply` (client side) keeps the whole applied
/// object in: as large as the object, and read by nothing here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Changes a trigger of a [`SharedWatch`] may hold before the watch waits
/// for its controller to take them.
const TRIGGER_BUFFER: usize = 1024;

/// The watch parameters: any resource version will do for a list (served
/// from the API server's cache).
pub fn config() -> watcher::Config {
    watcher::Config::default().any_semantic()
}

/// The watch parameters for a watch whose lists must show every object
/// created before they were made: each list is read as of its request,
/// not from whatever the API server's cache holds.
pub fn consistent() -> watcher::Config {
    watcher::Config::default()
}

/// Which namespaces' objects a watch keeps: the others are dropped before
/// the cache (a replica of one shard caches its shard only).
pub type Keep = Arc<dyn Fn(Option<&str>) -> bool + Send + Sync>;

/// Keeps every object.
pub fn keep_all() -> Keep {
    Arc::new(|_| true)
}

/// Whether `event` is about an object `keep` keeps (list boundaries are).
fn kept<K: Resource>(keep: &Keep, event: &watcher::Event<K>) -> bool {
    match event {
        watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o) => {
            keep(o.meta().namespace.as_deref())
        }
        watcher::Event::Init | watcher::Event::InitDone => true,
    }
}

/// A change of an object, as a [`SharedWatch`] tells its observers.
pub enum Seen<'a, K> {
    /// The object was created or changed (or listed).
    Applied(&'a Arc<K>),
    /// The object was deleted (or was missing from a relist).
    Deleted(&'a Arc<K>),
}

// Not derived: that would ask `K: Copy`.
impl<K> Clone for Seen<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for Seen<'_, K> {}

/// What a [`SharedWatch`] tells of each change, before its triggers hear of it.
pub type Observer<K> = Box<dyn Fn(Seen<'_, K>) + Send + Sync>;

/// One watch of `K` with its cache, feeding any number of observers and
/// triggers. Each receives an object once the cache holds it (or, when
/// deleted, no longer does); after a (re)list, every object listed, and
/// observers each object that was cached before and is gone now.
pub struct SharedWatch<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    events: BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>,
    observers: Vec<Observer<K>>,
    triggers: Vec<mpsc::Sender<Arc<K>>>,
    /// True once the first list is in the cache and every observer has seen it.
    listed: tokio::sync::watch::Sender<bool>,
}

impl<K> SharedWatch<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// Watches the objects of `K` in `api` that `keep` keeps (nothing
    /// happens before [`Self::run`]).
    pub fn new(api: Api<K>, keep: Keep) -> Self {
        Self::with_config(api, config(), keep)
    }

    /// Like [`Self::new`], its lists made with `config` (e.g. consistent
    /// ones: [`consistent`]).
    pub fn with_config(api: Api<K>, config: watcher::Config, keep: Keep) -> Self {
        let (store, events) = cached(api, config, keep);
        Self {
            store,
            events: events.boxed(),
            observers: Vec::new(),
            triggers: Vec::new(),
            listed: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Resolves once the first list is in the cache and every observer has
    /// seen it: what reads the cache together with what the observers keep
    /// (an index) must wait for this, not only for the cache.
    pub fn listed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut listed = self.listed.subscribe();
        async move {
            let _ = listed.wait_for(|listed| *listed).await;
        }
    }

    /// Tells `observer` of every change, in order, before any trigger.
    pub fn observe(&mut self, observer: impl Fn(Seen<'_, K>) + Send + Sync + 'static) {
        self.observers.push(Box::new(observer));
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
            observers,
            mut triggers,
            listed,
        } = self;
        let tell = |seen: Seen<'_, K>| observers.iter().for_each(|o| o(seen));
        let mut events = std::pin::pin!(events.take_until(until));
        // What the cache held when a relist began: the objects it no longer
        // lists were deleted while the watch was down.
        let mut before_relist: Vec<Arc<K>> = Vec::new();
        while let Some(event) = events.next().await {
            let changed = match event {
                Ok(watcher::Event::Apply(object)) => {
                    let object = Arc::new(object);
                    tell(Seen::Applied(&object));
                    vec![object]
                }
                Ok(watcher::Event::Delete(object)) => {
                    let object = Arc::new(object);
                    tell(Seen::Deleted(&object));
                    vec![object]
                }
                // The cache is replaced only once the relist is done.
                Ok(watcher::Event::Init) => {
                    before_relist = store.state();
                    continue;
                }
                // The cache has just been replaced by what was listed.
                Ok(watcher::Event::InitDone) => {
                    let all = store.state();
                    let uids: std::collections::HashSet<_> =
                        all.iter().filter_map(|o| o.meta().uid.clone()).collect();
                    for gone in std::mem::take(&mut before_relist) {
                        if gone.meta().uid.as_ref().is_none_or(|u| !uids.contains(u)) {
                            tell(Seen::Deleted(&gone));
                        }
                    }
                    all.iter().for_each(|o| tell(Seen::Applied(o)));
                    listed.send_replace(true);
                    all
                }
                Ok(watcher::Event::InitApply(_)) => continue,
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

/// A cache of the objects of `K` that `keep` keeps, and the watch events
/// that keep it, backing off on their own.
pub fn cached<K>(
    api: Api<K>,
    config: watcher::Config,
    keep: Keep,
) -> (
    Store<K>,
    impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    projected(api, config, keep, |object| object)
}

/// A cache of what `project` keeps of each `K` in `api` that `keep` keeps,
/// and the watch events that keep it, backing off on their own. Each object
/// is projected as it arrives, so the whole object is held only while it is
/// decoded.
pub fn projected<K, P>(
    api: Api<K>,
    config: watcher::Config,
    keep: Keep,
    project: fn(K) -> P,
) -> (
    Store<P>,
    impl Stream<Item = Result<watcher::Event<P>, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    P: Resource<DynamicType = ()> + Clone + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<P>();
    let events = watcher(api, config)
        .try_filter(move |event| std::future::ready(kept(&keep, event)))
        .map_ok(move |event| {
            let keep = |mut object: K| {
                slim(object.meta_mut());
                project(object)
            };
            match event {
                watcher::Event::Apply(o) => watcher::Event::Apply(keep(o)),
                watcher::Event::Delete(o) => watcher::Event::Delete(keep(o)),
                watcher::Event::InitApply(o) => watcher::Event::InitApply(keep(o)),
                watcher::Event::Init => watcher::Event::Init,
                watcher::Event::InitDone => watcher::Event::InitDone,
            }
        });
    let events = reflector::reflector(writer, events).default_backoff();
    (store, events)
}

/// Drops what no reader of a cache needs from an object's metadata.
fn slim(meta: &mut kube::api::ObjectMeta) {
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// The objects of `K` in `api` that `keep` keeps as they change, for a
/// trigger; no cache.
pub fn changes<K>(
    api: Api<K>,
    config: watcher::Config,
    keep: Keep,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher(api, config)
        .try_filter(move |event| std::future::ready(kept(&keep, event)))
        .default_backoff()
        .touched_objects()
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
