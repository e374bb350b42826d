//! The benchmark's waits: each watches what it waits for (one watch, no
//! polling of lists), with a deadline.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use strata::api::{NetworkFunction, Stack};
use strata_testkit::wait_for_every;

use crate::Result;
use crate::workload::{BUMPED_VERSION, stack_name};

/// Watches `api` until `count` objects satisfy `done`. Returns how many did
/// at each change, by seconds since `started` (the phase's start): the
/// watch starts with the phase, so this costs the API server nothing more.
pub async fn wait_all<K>(
    api: Api<K>,
    count: usize,
    done: fn(&K) -> bool,
    started: Instant,
    within: Duration,
    what: &str,
) -> Result<Vec<(f64, usize)>>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut state: HashMap<String, bool> = HashMap::new();
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let deadline = tokio::time::Instant::now() + within;
    let mut last_print = Instant::now();
    let mut points = Vec::new();
    // Counted from the end of the watch's initial list on (the objects
    // there before the phase are not a ramp).
    let mut listed = false;
    loop {
        let ready = state.values().filter(|r| **r).count();
        if (listed || ready >= count) && points.last().is_none_or(|(_, last)| *last != ready) {
            points.push((started.elapsed().as_secs_f64(), ready));
        }
        if ready >= count {
            return Ok(points);
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            println!("    {what}: {ready}/{count}");
            last_print = Instant::now();
        }
        let event = tokio::time::timeout_at(deadline, events.try_next())
            .await
            .map_err(|_| format!("{what}: only {ready} of {count} after {within:?}"))??;
        match event {
            Some(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                state.insert(o.name_any(), done(&o));
            }
            Some(watcher::Event::Delete(o)) => {
                state.remove(&o.name_any());
            }
            Some(watcher::Event::InitDone) => listed = true,
            Some(watcher::Event::Init) => {}
            None => return Err(format!("{what}: the watch ended").into()),
        }
    }
}

pub fn deployment_available(d: &Deployment) -> bool {
    let Some(status) = &d.status else {
        return false;
    };
    let wanted = d.spec.replicas.unwrap_or(1);
    status.observed_generation >= d.metadata.generation
        && status.updated_replicas.unwrap_or(0) == wanted
        && status.available_replicas.unwrap_or(0) == wanted
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_.as_deref() == Some("Available") && c.status.as_deref() == Some("True"))
}

pub fn function_ready(nf: &NetworkFunction) -> bool {
    nf.status.as_ref().is_some_and(|s| {
        s.observed_generation == nf.metadata.generation
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// Waits until `consumers` functions of stack 0 run the bumped version and
/// are Ready; returns the most seen moving (adopting, not yet Ready) at once.
pub async fn wait_adopted(
    api: &Api<NetworkFunction>,
    consumers: usize,
    within: Duration,
) -> Result<usize> {
    let stack = stack_name(0);
    let mut state: HashMap<String, (bool, bool)> = HashMap::new();
    let mut events = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    let deadline = tokio::time::Instant::now() + within;
    let mut most_moving = 0;
    loop {
        let adopted = state.values().filter(|(on, ready)| *on && *ready).count();
        most_moving = most_moving.max(state.values().filter(|(on, ready)| *on && !*ready).count());
        if adopted >= consumers {
            return Ok(most_moving);
        }
        let nf = tokio::time::timeout_at(deadline, events.try_next())
            .await
            .map_err(|_| format!("only {adopted} of {consumers} adopted {BUMPED_VERSION}"))??
            .ok_or("the watch ended")?;
        if nf.spec.stack_ref.name != stack {
            continue;
        }
        let on = nf
            .status
            .as_ref()
            .and_then(|s| s.deployed_with.as_ref())
            .is_some_and(|d| d.stack.version == BUMPED_VERSION);
        state.insert(nf.name_any(), (on, function_ready(&nf)));
    }
}

/// Waits until the stacks in `ns` count `n` consumers in all, every one on
/// the current version.
pub async fn stacks_counted(client: &Client, ns: &str, n: usize, within: Duration) {
    let api: Api<Stack> = Api::namespaced(client.clone(), ns);
    let api = &api;
    wait_for_every(
        Duration::from_millis(100),
        within,
        "the stacks to count their consumers",
        || async move {
            let stacks = api
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let (total, current) = stacks
                .items
                .iter()
                .filter_map(|s| s.status.as_ref()?.consumers.clone())
                .fold((0, 0), |(t, c), x| (t + x.total, c + x.on_current_version));
            if total as usize == n && current == total {
                Ok(())
            } else {
                Err(format!(
                    "{total} of {n} consumers counted, {current} on the current version"
                ))
            }
        },
    )
    .await
}
