//! Waiting for a state, with a deadline.

use std::fmt::{Debug, Display};
use std::future::Future;
use std::time::{Duration, Instant};

use kube::Resource;
use kube::api::Api;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How often [`wait_for`] polls.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// What one poll of [`wait_for`] saw: done with a value, or not yet, with a
/// description of the state observed (shown if the deadline passes).
pub trait Observation<T> {
    /// `Ok(value)` when done; `Err(state)` otherwise.
    fn into_result(self) -> Result<T, String>;
}

impl<T> Observation<T> for Option<T> {
    fn into_result(self) -> Result<T, String> {
        self.ok_or_else(|| "not yet".to_string())
    }
}

impl<T, E: Display> Observation<T> for Result<T, E> {
    fn into_result(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// Polls `probe` every [`POLL_INTERVAL`] until it reports done, and returns
/// its value. Panics after `within` with `description` and the last state the
/// probe reported. The probe returns `Option<T>`, or `Result<T, E>` where the
/// error describes what it saw ("2 of 3 pods Ready: ...").
pub async fn wait_for<T, O, F, Fut>(within: Duration, description: &str, probe: F) -> T
where
    O: Observation<T>,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    wait_for_every(POLL_INTERVAL, within, description, probe).await
}

/// [`wait_for`], polling every `interval`: for the benchmark's timings,
/// where the poll interval bounds the error of what is measured.
pub async fn wait_for_every<T, O, F, Fut>(
    interval: Duration,
    within: Duration,
    description: &str,
    mut probe: F,
) -> T
where
    O: Observation<T>,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    let deadline = Instant::now() + within;
    let mut polls = 0u32;
    loop {
        polls += 1;
        let last = match probe().await.into_result() {
            Ok(value) => return value,
            Err(state) => state,
        };
        if Instant::now() >= deadline {
            panic!(
                "timed out after {within:?} ({polls} polls) waiting for {description}\n\
                 last observed state: {last}"
            );
        }
        tokio::time::sleep(interval).await;
    }
}

/// Waits until object `name` satisfies `done`, and returns it; meanwhile
/// the last observation shows its generation and status.
pub async fn wait_for_object<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    within: Duration,
    done: impl Fn(&K) -> bool,
) -> K
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    wait_for(within, &format!("{name}: {what}"), || async {
        match api.get_opt(name).await {
            Ok(Some(object)) if done(&object) => Ok(object),
            Ok(Some(object)) => {
                let json = serde_json::to_value(&object).expect("a Kubernetes object serializes");
                Err(format!(
                    "generation {}, status {}",
                    json.pointer("/metadata/generation")
                        .cloned()
                        .unwrap_or_default(),
                    json.get("status").cloned().unwrap_or_default()
                ))
            }
            Ok(None) => Err(format!("{name} does not exist")),
            Err(e) => Err(format!("cannot get {name}: {e}")),
        }
    })
    .await
}

/// Waits until object `name` has a `status.conditions[]` entry of `type_`
/// with `status` ("True", "False", "Unknown"), and returns the object. Works
/// for typed objects and `DynamicObject` alike, by reading them as JSON.
pub async fn wait_for_condition<K>(
    api: &Api<K>,
    name: &str,
    type_: &str,
    status: &str,
    within: Duration,
) -> K
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let what = format!("condition {type_}={status}");
    wait_for_object(api, name, &what, within, |object| {
        let json = serde_json::to_value(object).expect("a Kubernetes object serializes");
        json.pointer("/status/conditions")
            .and_then(|c| c.as_array())
            .into_iter()
            .flatten()
            .any(|c| {
                c.get("type").and_then(|t| t.as_str()) == Some(type_)
                    && c.get("status").and_then(|s| s.as_str()) == Some(status)
            })
    })
    .await
}
