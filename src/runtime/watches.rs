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
//! Managed fields are dropped from every cached object: nothing reads them,
//! and they are much of each object's size.

use std::{fmt::Debug, time::Duration};

use futures::Stream;
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

/// The watch parameters: any resource version will do for a list (served
/// from the API server's cache).
pub fn config() -> watcher::Config {
    watcher::Config::default().any_semantic()
}

/// A controller of `K` in `api`, reconciling every object as it is applied,
/// whose watch backs off on its own.
pub fn controller<K>(api: Api<K>, config: ControllerConfig) -> Controller<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, trigger) = cached(api, self::config());
    Controller::for_stream(trigger.applied_objects(), store)
        .with_config(config)
        .trigger_backoff(Unpaused)
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
