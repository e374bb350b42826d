//! What the caches hold: per kind, the objects cached and an estimate of
//! the heap they take (`strata_cached_objects`, `strata_cached_bytes`), so
//! that the memory of the process can be told by cache.
//!
//! The estimate is the count times the mean size of a sample of the cached
//! objects: the length of each as JSON (what its strings, maps and vectors
//! hold, give or take their allocation overhead), its own size in the
//! cache's `Arc`, and the cache's key.

use std::time::Duration;

use kube::{
    Resource,
    runtime::reflector::{ObjectRef, Store},
};
use serde::Serialize;

use super::metrics::Metrics;

/// Objects sampled per kind.
const SAMPLE: usize = 32;

/// How often the census is taken.
pub const PERIOD: Duration = Duration::from_secs(10);

/// What a cache holds: its objects, and an estimate of their heap bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    /// Objects cached.
    pub objects: usize,
    /// Their estimated heap bytes.
    pub bytes: usize,
}

/// Counts `store`: its objects, and their bytes from a sample.
pub fn count<K>(store: &Store<K>) -> Count
where
    K: Resource<DynamicType = ()> + Clone + Serialize + 'static,
{
    let all = store.state();
    let objects = all.len();
    if objects == 0 {
        return Count::default();
    }
    let step = objects.div_ceil(SAMPLE).max(1);
    let sample: Vec<usize> = all
        .iter()
        .step_by(step)
        .map(|object| {
            let key = ObjectRef::from_obj(&**object);
            // The object and its Arc (two counters), the key (in the
            // cache's table with the Arc's pointer) and what both allocate.
            std::mem::size_of::<K>()
                + 2 * std::mem::size_of::<usize>()
                + std::mem::size_of::<(ObjectRef<K>, usize)>()
                + heap_estimate(&**object)
                + key.name.len()
                + key.namespace.as_ref().map_or(0, String::len)
        })
        .collect();
    let mean = sample.iter().sum::<usize>() / sample.len();
    Count {
        objects,
        bytes: objects * mean,
    }
}

/// An estimate of the heap `value` holds: its length as JSON.
pub fn heap_estimate<T: Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(0, |json| json.len())
}

/// Sets the gauges of `kind` to `count`.
pub fn publish(metrics: &Metrics, kind: &str, count: Count) {
    let as_gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    metrics
        .cached_objects
        .with_label_values(&[kind])
        .set(as_gauge(count.objects));
    metrics
        .cached_bytes
        .with_label_values(&[kind])
        .set(as_gauge(count.bytes));
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::{api::ObjectMeta, runtime::watcher};

    #[test]
    fn a_census_counts_every_object_and_at_least_their_own_size() {
        let (store, mut writer) = kube::runtime::reflector::store::<ConfigMap>();
        assert_eq!(count(&store), Count::default());
        for i in 0..100 {
            let cm = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(format!("cm-{i}")),
                    namespace: Some("ns".into()),
                    ..ObjectMeta::default()
                },
                ..ConfigMap::default()
            };
            writer.apply_watcher_event(&watcher::Event::Apply(cm));
        }
        let counted = count(&store);
        assert_eq!(counted.objects, 100);
        assert!(
            counted.bytes >= 100 * std::mem::size_of::<ConfigMap>(),
            "{counted:?}"
        );
    }
}
