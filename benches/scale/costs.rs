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
    let config_maps: Vec<ConfigMap> = bare_objects(stacks, &functions, ns)?
        .into_iter()
        .filter_map(|o| match o {
            Object::ConfigMap(cm) => Some(*cm),
            _ => None,
        })
        .collect();
    let mut costs = Vec::new();

    let api = Api::<ConfigMap>::namespaced(client.clone(), ns);
    costs.push(
        measure("ConfigMap apply (a bare child)", config_maps.len(), || {
            stream::iter(config_maps.iter()).for_each_concurrent(concurrency, |cm| {
                let api = api.clone();
                async move { apply_object(&api, serde_json::to_value(cm).unwrap_or_default()).await }
            })
        })
        .await,
    );

    let functions_api = Api::<NetworkFunction>::namespaced(client.clone(), ns);
    costs.push(
        measure("NetworkFunction apply (the user's)", count, || {
            stream::iter(functions.iter()).for_each_concurrent(concurrency, |f| {
                let api = functions_api.clone();
                async move { apply_object(&api, f.clone()).await }
            })
        })
        .await,
    );

    let status = json!(sample.function.status);
    costs.push(
        measure("NetworkFunction status apply", count, || {
            stream::iter(functions.iter()).for_each_concurrent(concurrency, |f| {
                let api = functions_api.clone();
                let status = status.clone();
                async move {
                    let name = f["metadata"]["name"].as_str().unwrap_or_default();
                    let body = json!({
                        "apiVersion": "strata.dev/v1alpha1",
                        "kind": "NetworkFunction",
                        "metadata": {"name": name},
                        "status": status,
                    });
                    let params = PatchParams::apply(OPERATOR_MANAGER).force();
                    if let Err(e) = api.patch_status(name, &params, &Patch::Apply(&body)).await {
                        panic!("the API server refused the status of {name}: {e}");
                    }
                }
            })
        })
        .await,
    );

    let records_api = Api::<DeploymentRecord>::namespaced(client.clone(), ns);
    let records: Vec<DeploymentRecord> =
        (0..count).map(|i| record_copy(&sample.record, i)).collect();
    costs.push(
        measure("DeploymentRecord create (Progressing)", count, || {
            stream::iter(records.iter()).for_each_concurrent(concurrency, |r| {
                let api = records_api.clone();
                async move {
                    if let Err(e) = api.create(&PostParams::default(), r).await {
                        panic!("the API server refused record {}: {e}", r.name_any());
                    }
                }
            })
        })
        .await,
    );

    let concluded = json!([
        {"op": "test", "path": "/status/outcome", "value": "Progressing"},
        {"op": "replace", "path": "/status", "value": sample.record.status},
    ]);
    costs.push(
        measure("DeploymentRecord conclusion (JSON patch)", count, || {
            stream::iter(records.iter()).for_each_concurrent(concurrency, |r| {
                let api = records_api.clone();
                let patch = concluded.clone();
                async move {
                    let name = r.name_any();
                    let patch =
                        Patch::<()>::Json(serde_json::from_value(patch).expect("a JSON patch"));
                    if let Err(e) = api.patch(&name, &PatchParams::default(), &patch).await {
                        panic!("the API server refused the conclusion of {name}: {e}");
                    }
                }
            })
        })
        .await,
    );

    let events_api = Api::<Event>::namespaced(client.clone(), ns);
    let events: Vec<Event> = (0..count).map(|i| event(&sample.function, ns, i)).collect();
    costs.push(
        measure("Event create (events.k8s.io)", count, || {
            stream::iter(events.iter()).for_each_concurrent(concurrency, |e| {
                let api = events_api.clone();
                async move {
                    if let Err(error) = api.create(&PostParams::default(), e).await {
                        panic!("the API server refused an Event: {error}");
                    }
                }
            })
        })
        .await,
    );
    Ok(costs)
}

/// Runs `requests` (`count` of one kind) and divides the CPU kube-apiserver
/// and etcd spent meanwhile by `count`.
async fn measure<F, Fut>(what: &str, count: usize, requests: F) -> RequestCost
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let before = plane_cpu_seconds();
    let started = std::time::Instant::now();
    requests().await;
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
