//! What one request of each kind costs the API server. The write counts
//! weigh every write the same; this phase shows what each costs. After the
//! phases at N, it sends the same number of requests of each kind into a
//! namespace no operator watches, one kind after the other, and reads the
//! CPU kube-apiserver and etcd spent on them: a bare phase's ConfigMap
//! apply, a benchmark's NetworkFunction apply, and copies of what the
//! operator wrote in the Strata phase (a function's status, a record
//! created and concluded, an Event).

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use strata::api::{DeploymentRecord, NetworkFunction};
use strata_testkit::{TestNamespace, apply_object};

use crate::Result;
use crate::measure::plane_cpu_seconds;
use crate::options::Options;
use crate::report::RequestCost;
use crate::workload::{Object, bare_objects, function};

/// The field manager of the copies of the operator's writes.
const OPERATOR_MANAGER: &str = "strata";

/// Sends `count` requests of each kind, copies of what the operator wrote
/// in `strata_ns`, and returns what each kind cost per request.
pub async fn run(
    client: &Client,
    options: &Options,
    stacks: &[Value],
    strata_ns: &str,
    count: usize,
) -> Result<Vec<RequestCost>> {
    let sample = Samples::read(client, strata_ns).await?;
    let ns = TestNamespace::create(client, "bench-costs").await;
    let costs = measure_each(client, options, stacks, ns.name(), &sample, count).await;
    ns.cleanup().await;
    costs
}

/// One function and one record of the Strata phase, as the operator wrote them.
struct Samples {
    function: NetworkFunction,
    record: DeploymentRecord,
}

impl Samples {
    async fn read(client: &Client, ns: &str) -> Result<Self> {
        let first = kube::api::ListParams::default().limit(1);
        let function = Api::<NetworkFunction>::namespaced(client.clone(), ns)
            .list(&first)
            .await?
            .items
            .into_iter()
            .find(|f| f.status.is_some())
            .ok_or("no NetworkFunction with a status to copy")?;
        let record = Api::<DeploymentRecord>::namespaced(client.clone(), ns)
            .list(&first)
            .await?
            .items
            .into_iter()
            .next()
            .ok_or("no DeploymentRecord to copy")?;
        Ok(Self { function, record })
    }
}

/// The requests measured, as the report names them.
pub const CONFIG_MAP_APPLY: &str = "ConfigMap apply (a bare child)";
pub const FUNCTION_APPLY: &str = "NetworkFunction apply (the user's)";
pub const STATUS_APPLY: &str = "NetworkFunction status apply";
pub const RECORD_CREATE: &str = "DeploymentRecord create (Progressing)";
pub const RECORD_CONCLUSION: &str = "DeploymentRecord conclusion (JSON patch)";
pub const EVENT_CREATE: &str = "Event create (events.k8s.io)";

async fn measure_each(
    client: &Client,
    options: &Options,
    stacks: &[Value],
    ns: &str,
    sample: &Samples,
    count: usize,
) -> Result<Vec<RequestCost>> {
    let concurrency = options.apply_concurrency.max(1);
    let functions: Vec<Value> = (0..count).map(|i| function(i, stacks.len(), 0)).collect();
    let config_maps: Vec<Value> = bare_objects(stacks, &functions, ns)?
        .into_iter()
        .filter_map(|o| match o {
            Object::ConfigMap(cm) => serde_json::to_value(cm).ok(),
            _ => None,
        })
        .collect();
    let names: Vec<String> = functions
        .iter()
        .map(|f| {
            f["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let records: Vec<DeploymentRecord> =
        (0..count).map(|i| record_copy(&sample.record, i)).collect();
    let record_names: Vec<String> = records.iter().map(ResourceExt::name_any).collect();
    let events: Vec<Event> = (0..count).map(|i| event(&sample.function, ns, i)).collect();

    let config_maps_api = Api::<ConfigMap>::namespaced(client.clone(), ns);
    let functions_api = Api::<NetworkFunction>::namespaced(client.clone(), ns);
    let records_api = Api::<DeploymentRecord>::namespaced(client.clone(), ns);
    let events_api = Api::<Event>::namespaced(client.clone(), ns);
    let status = json!(sample.function.status);
    let conclusion = json!([
        {"op": "test", "path": "/status/outcome", "value": "Progressing"},
        {"op": "replace", "path": "/status", "value": sample.record.status},
    ]);
    Ok(vec![
        measure(CONFIG_MAP_APPLY, concurrency, config_maps, |cm| {
            let api = config_maps_api.clone();
            async move {
                apply_object(&api, cm).await;
                Ok(())
            }
        })
        .await,
        measure(FUNCTION_APPLY, concurrency, functions, |f| {
            let api = functions_api.clone();
            async move {
                apply_object(&api, f).await;
                Ok(())
            }
        })
        .await,
        measure(STATUS_APPLY, concurrency, names, |name| {
            let api = functions_api.clone();
            let body = json!({
                "apiVersion": "strata.dev/v1alpha1",
                "kind": "NetworkFunction",
                "metadata": {"name": name},
                "status": status,
            });
            async move {
                let params = PatchParams::apply(OPERATOR_MANAGER).force();
                api.patch_status(&name, &params, &Patch::Apply(&body))
                    .await
                    .map(drop)
            }
        })
        .await,
        measure(RECORD_CREATE, concurrency, records, |r| {
            let api = records_api.clone();
            async move { api.create(&PostParams::default(), &r).await.map(drop) }
        })
        .await,
        measure(RECORD_CONCLUSION, concurrency, record_names, |name| {
            let api = records_api.clone();
            let patch = Patch::<()>::Json(
                serde_json::from_value(conclusion.clone()).expect("a JSON patch"),
            );
            async move {
                api.patch(&name, &PatchParams::default(), &patch)
                    .await
                    .map(drop)
            }
        })
        .await,
        measure(EVENT_CREATE, concurrency, events, |e| {
            let api = events_api.clone();
            async move { api.create(&PostParams::default(), &e).await.map(drop) }
        })
        .await,
    ])
}

/// Sends one request `what` for each of `items`, `concurrency` at a time
/// (a refused request fails the run), and divides the CPU kube-apiserver
/// and etcd spent meanwhile by their number.
async fn measure<T, Fut>(
    what: &str,
    concurrency: usize,
    items: Vec<T>,
    request: impl Fn(T) -> Fut,
) -> RequestCost
where
    Fut: Future<Output = kube::Result<()>>,
{
    let count = items.len();
    let before = plane_cpu_seconds();
    let started = std::time::Instant::now();
    stream::iter(items)
        .for_each_concurrent(concurrency, |item| {
            let sent = request(item);
            async move {
                if let Err(e) = sent.await {
                    panic!("the API server refused a request of {what}: {e}");
                }
            }
        })
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let after = plane_cpu_seconds();
    let per_request = |process: &str| {
        let spent = after.get(process).copied().unwrap_or(0.0)
            - before.get(process).copied().unwrap_or(0.0);
        spent * 1e3 / count.max(1) as f64
    };
    RequestCost {
        request: what.to_string(),
        requests: count,
        seconds,
        apiserver_ms: per_request("kube-apiserver"),
        etcd_ms: per_request("etcd"),
    }
}

/// The `i`th copy of `record`, Progressing, under a name of its own.
fn record_copy(record: &DeploymentRecord, i: usize) -> DeploymentRecord {
    let mut copy = record.clone();
    copy.metadata = kube::api::ObjectMeta {
        name: Some(format!("{}-cost-{i}", record.name_any())),
        labels: record.metadata.labels.clone(),
        ..Default::default()
    };
    if let Some(status) = copy.status.as_mut() {
        status.outcome = strata::api::Outcome::Progressing;
    }
    copy
}

/// The `i`th copy of the Event a rollout's start publishes about `nf`.
fn event(nf: &NetworkFunction, ns: &str, i: usize) -> Event {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{}.cost-{i}", nf.name_any())},
        "eventTime": k8s_openapi::jiff::Timestamp::now().to_string(),
        "reportingController": "strata.dev/operator",
        "reportingInstance": "bench",
        "action": "Rollout",
        "reason": "RolloutStarted",
        "type": "Normal",
        "note": format!("rolling out {} {} on stack {}", nf.name_any(), nf.spec.version, nf.spec.stack_ref.name),
        "regarding": {
            "apiVersion": "strata.dev/v1alpha1",
            "kind": "NetworkFunction",
            "name": nf.name_any(),
            "namespace": ns,
        },
    }))
    .expect("an Event")
}
