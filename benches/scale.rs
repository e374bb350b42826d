//! Strata at scale, measured against the bare Kubernetes controllers on the
//! same plane: the time to bring N network functions to Ready against the
//! time the same Deployments, Services and ConfigMaps take when applied
//! directly, the API writes it costs, the writes it makes while idle, its
//! memory at N and 10×N, a stack version adopted by 100 consumers, start-up
//! and shutdown.
//!
//! `hack/bench` runs it on a dedicated plane (`cargo bench --bench scale`);
//! `cargo test` runs it as a smoke test in quick mode (no `--bench` flag),
//! on the plane in `KUBECONFIG`. Nothing here asserts a timing: it measures
//! and prints, and fails only when something does not converge.

#![forbid(unsafe_code)]

use std::{
    collections::{BTreeMap, HashMap},
    fs::File,
    io::Write as _,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use clap::Parser;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, Namespace, Service},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ObjectMeta, Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use serde::Serialize;
use serde_json::{Value, json};
use strata::{
    api::{NetworkFunction, StackSpec},
    render::{
        function::{ResolvedStack, desired},
        stack::render_stack,
    },
};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

/// The benchmark's options. `cargo bench` passes `--bench`; without it
/// (`cargo test`) the quick mode runs with a short idle window, as a smoke test.
#[derive(Parser, Debug, Clone)]
#[command(about = "Strata against bare Kubernetes controllers on a local plane")]
struct Options {
    /// Network functions (N).
    #[arg(long, default_value_t = 1000)]
    functions: usize,
    /// Quick mode: N = 100.
    #[arg(long)]
    quick: bool,
    /// Stacks the functions are spread over.
    #[arg(long, default_value_t = 10)]
    stacks: usize,
    /// Replicas of each function.
    #[arg(long, default_value_t = 2)]
    replicas: i32,
    /// Seconds of idleness after convergence in which writes are counted.
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
    /// The memory phase grows the functions to this multiple of N (1 skips it).
    #[arg(long, default_value_t = 10)]
    scale: usize,
    /// Replicas of the functions added in the memory phase. The operator
    /// caches functions, stacks, Deployments and records, not pods.
    #[arg(long, default_value_t = 0)]
    scale_replicas: i32,
    /// Objects applied at once, in both phases alike.
    #[arg(long, default_value_t = 16)]
    apply_concurrency: usize,
    /// Where the JSON report goes (default target/bench/scale-<time>.json).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Minutes each convergence may take before the run fails.
    #[arg(long, default_value_t = 30)]
    timeout_minutes: u64,
    /// Set by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

impl Options {
    /// The options, or `None` when `cargo test` was given a filter that
    /// leaves this benchmark out (its arguments are libtest's, not ours).
    fn parse_args() -> Option<Self> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        if !args.iter().any(|a| a == "--bench")
            && !args.is_empty()
            && !args.iter().any(|a| "scale".contains(a.as_str()))
        {
            return None;
        }
        let bench = args.iter().any(|a| a == "--bench");
        let mut options = if bench {
            Self::parse()
        } else {
            Self::parse_from(["scale"])
        };
        if options.quick || !options.bench {
            options.functions = 100;
        }
        if !options.bench {
            // A smoke test under `cargo test`: every phase, a short idle window.
            options.idle_seconds = options.idle_seconds.min(10);
            options.scale = options.scale.min(2);
        }
        Some(options)
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_minutes * 60)
    }
}

/// What one run measured; written as JSON.
#[derive(Serialize, Default)]
struct Report {
    machine: String,
    functions: usize,
    stacks: usize,
    replicas: i32,
    bare_seconds: f64,
    strata_seconds: f64,
    ratio: f64,
    writes: Vec<WriteRow>,
    strata_writes_per_function: f64,
    reconciles_per_function: f64,
    operator_cpu_seconds: f64,
    design_minimum_writes_per_function: f64,
    extra_writes_per_function_vs_bare: f64,
    idle_seconds: u64,
    idle_writes: BTreeMap<String, f64>,
    idle_writes_strata_objects: f64,
    rss_peak_mib_at_n: f64,
    rss_steady_mib_at_n: f64,
    bump_consumers: usize,
    bump_max_concurrent: String,
    bump_seconds: f64,
    bump_max_moving_seen: usize,
    sigterm_to_exit_ms: f64,
    start_to_ready_ms: f64,
    start_to_first_reconcile_ms: f64,
    restart_writes: f64,
    scaled_functions: usize,
    scaled_replicas: i32,
    scale_seconds: f64,
    rss_peak_mib_at_scale: f64,
    rss_steady_mib_at_scale: f64,
}

/// Writes of one resource in the bare and the Strata phase.
#[derive(Serialize)]
struct WriteRow {
    resource: String,
    verb: String,
    bare: f64,
    strata: f64,
}

const MANAGER: &str = "strata-bench";
const STACK_VERSION: &str = "1.0.0";
const BUMPED_VERSION: &str = "1.1.0";
const MAX_CONCURRENT: &str = "25%";

fn main() -> Result<()> {
    let Some(options) = Options::parse_args() else {
        println!("scale benchmark: left out by the test filter");
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(options))
}

async fn run(options: Options) -> Result<()> {
    let client = Client::try_default().await?;
    install_crds(&client).await?;
    let run_id = format!("{:x}", std::process::id());
    let bare_ns = format!("bench-bare-{run_id}");
    let strata_ns = format!("bench-strata-{run_id}");
    for ns in [&bare_ns, &strata_ns] {
        create_namespace(&client, ns).await?;
    }
    let mut report = Report {
        machine: machine(),
        functions: options.functions,
        stacks: options.stacks,
        replicas: options.replicas,
        idle_seconds: options.idle_seconds,
        bump_max_concurrent: MAX_CONCURRENT.into(),
        ..Report::default()
    };
    let outcome = phases(&client, &options, &bare_ns, &strata_ns, &mut report).await;
    cleanup(&client, &[&bare_ns, &strata_ns]).await;
    outcome?;
    print_report(&report);
    let path = options.json.clone().unwrap_or_else(|| {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench/scale-{stamp}.json"))
    });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    println!("report written to {}", path.display());
    Ok(())
}

async fn phases(
    client: &Client,
    options: &Options,
    bare_ns: &str,
    strata_ns: &str,
    report: &mut Report,
) -> Result<()> {
    let n = options.functions;
    let stacks: Vec<Value> = (0..options.stacks)
        .map(|i| stack(i, STACK_VERSION))
        .collect();
    let functions: Vec<Value> = (0..n)
        .map(|i| function(i, options.stacks, options.replicas))
        .collect();

    // (b) The bare objects: what Strata renders for each function, applied directly.
    phase(&format!("bare: {} Deployments, Services and ConfigMaps", n));
    let bare = bare_objects(&stacks, &functions, bare_ns)?;
    let before = scrape(client).await?;
    let started = Instant::now();
    apply_all(client, bare_ns, bare, options.apply_concurrency).await?;
    wait_all(
        Api::<Deployment>::namespaced(client.clone(), bare_ns),
        n,
        deployment_available,
        options.timeout(),
        "bare Deployments Available",
    )
    .await?;
    report.bare_seconds = started.elapsed().as_secs_f64();
    let bare_writes = writes(&before, &scrape(client).await?);

    // (a) The same through Strata.
    phase(&format!("strata: {} stacks, {n} functions", options.stacks));
    let mut operator = Operator::start(strata_ns)?;
    operator.wait_ready(Duration::from_secs(60)).await?;
    let cpu_before = operator.cpu_seconds();
    let before = scrape(client).await?;
    let started = Instant::now();
    let objects = stacks
        .iter()
        .cloned()
        .map(Object::Stack)
        .chain(functions.iter().cloned().map(Object::Function))
        .collect();
    apply_all(client, strata_ns, objects, options.apply_concurrency).await?;
    let nfs = Api::<NetworkFunction>::namespaced(client.clone(), strata_ns);
    wait_all(
        nfs.clone(),
        n,
        function_ready,
        options.timeout(),
        "NetworkFunctions Ready",
    )
    .await?;
    report.strata_seconds = started.elapsed().as_secs_f64();
    // The stacks' consumer counts follow within a second; idleness starts then.
    stacks_counted(client, strata_ns, n, options.timeout()).await?;
    report.ratio = report.strata_seconds / report.bare_seconds;
    report.operator_cpu_seconds = operator.cpu_seconds() - cpu_before;
    let addr = operator.addr(Duration::from_secs(10)).await?;
    report.reconciles_per_function = reconciles(addr, "NetworkFunction").await / n as f64;
    let strata_writes = writes(&before, &scrape(client).await?);
    account_writes(report, &bare_writes, &strata_writes, n);

    // Idle: nothing changes; nothing should be written.
    phase(&format!("idle for {} s", options.idle_seconds));
    let before = scrape(client).await?;
    // A measurement window, not a wait for a condition.
    tokio::time::sleep(Duration::from_secs(options.idle_seconds)).await;
    let idle = writes(&before, &scrape(client).await?);
    report.idle_writes = idle
        .iter()
        .filter(|(_, v)| **v > 0.0)
        .map(|((r, verb), v)| (format!("{verb} {r}"), *v))
        .collect();
    // (`+ 0.0`: an empty f64 sum is -0.)
    report.idle_writes_strata_objects = idle
        .iter()
        .filter(|((r, verb), _)| strata_object(r, verb))
        .map(|(_, v)| v)
        .sum::<f64>()
        + 0.0;
    let (peak, steady) = operator.memory_mib();
    report.rss_peak_mib_at_n = peak;
    report.rss_steady_mib_at_n = steady;

    // A stack version bump, adopted by the consumers of one stack.
    let consumers = functions
        .iter()
        .filter(|f| f["spec"]["stackRef"]["name"] == stack_name(0))
        .count();
    phase(&format!(
        "bump {} to {BUMPED_VERSION}: {consumers} consumers, maxConcurrent {MAX_CONCURRENT}",
        stack_name(0)
    ));
    report.bump_consumers = consumers;
    let started = Instant::now();
    apply_all(
        client,
        strata_ns,
        vec![Object::Stack(stack(0, BUMPED_VERSION))],
        1,
    )
    .await?;
    report.bump_max_moving_seen = wait_adopted(&nfs, consumers, options.timeout()).await?;
    report.bump_seconds = started.elapsed().as_secs_f64();

    // Shutdown and start-up with N functions in the caches.
    phase("SIGTERM, then start again");
    let before = scrape(client).await?;
    report.sigterm_to_exit_ms = operator.terminate(Duration::from_secs(60)).await? * 1e3;
    let mut operator = Operator::start(strata_ns)?;
    let (ready, first) = operator
        .wait_first_reconcile(Duration::from_secs(120))
        .await?;
    report.start_to_ready_ms = ready * 1e3;
    report.start_to_first_reconcile_ms = first * 1e3;
    operator
        .wait_reconciled(n, Duration::from_secs(300))
        .await?;
    let restart = writes(&before, &scrape(client).await?);
    report.restart_writes = restart
        .iter()
        .filter(|((r, verb), _)| strata_object(r, verb))
        .map(|(_, v)| v)
        .sum::<f64>()
        + 0.0;

    // Memory at scale: the functions grow to scale × N.
    if options.scale > 1 {
        let total = n * options.scale;
        phase(&format!(
            "scale: {total} functions ({} replicas for the added ones)",
            options.scale_replicas
        ));
        let added = (n..total)
            .map(|i| Object::Function(function(i, options.stacks, options.scale_replicas)))
            .collect();
        let started = Instant::now();
        apply_all(client, strata_ns, added, options.apply_concurrency).await?;
        wait_all(
            nfs.clone(),
            total,
            function_ready,
            options.timeout(),
            "NetworkFunctions Ready at scale",
        )
        .await?;
        report.scale_seconds = started.elapsed().as_secs_f64();
        report.scaled_functions = total;
        report.scaled_replicas = options.scale_replicas;
        // A short quiet spell before reading the steady size.
        tokio::time::sleep(Duration::from_secs(options.idle_seconds.min(15))).await;
        let (peak, steady) = operator.memory_mib();
        report.rss_peak_mib_at_scale = peak;
        report.rss_steady_mib_at_scale = steady;
    }
    operator.terminate(Duration::from_secs(60)).await?;
    Ok(())
}

fn phase(what: &str) {
    println!("--- {what}");
}

// ------------------------------------------------------------- workload --

fn stack_name(i: usize) -> String {
    format!("stack-{i:02}")
}

/// Stack `i` at `version`: a settings ConfigMap and outputs; the bumped
/// version changes one parameter, so its content (and digest) differ.
fn stack(i: usize, version: &str) -> Value {
    let mtu = if version == STACK_VERSION {
        "1500"
    } else {
        "9000"
    };
    json!({
        "apiVersion": "strata.dev/v1alpha1",
        "kind": "Stack",
        "metadata": {"name": stack_name(i)},
        "spec": {
            "version": version,
            "parameters": {"vlan": format!("{}", 100 + i), "mtu": mtu, "dns": "10.0.0.53"},
            "resources": [{
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": format!("{}-settings", stack_name(i))},
                "data": {"vlan": "${vlan}", "mtu": "${mtu}", "dns": "${dns}"}
            }],
            "outputs": {"vlan": "${vlan}", "mtu": "${mtu}", "dnsUpstream": "${dns}"},
            "consumerRollout": {"maxConcurrent": MAX_CONCURRENT}
        }
    })
}

/// Function `i`, on stack `i % stacks`: two ports, a config file, the
/// stack's outputs in its environment.
fn function(i: usize, stacks: usize, replicas: i32) -> Value {
    json!({
        "apiVersion": "strata.dev/v1alpha1",
        "kind": "NetworkFunction",
        "metadata": {"name": format!("nf-{i:05}")},
        "spec": {
            "version": "1.0.0",
            "image": "registry.example/bench/nf@sha256:829fe5cb26b2412473a590edbdaad79b0a4148f9808bdbd0612f7174fd90fb1c",
            "stackRef": {"name": stack_name(i % stacks), "version": "^1", "updatePolicy": "Automatic"},
            "replicas": replicas,
            "ports": [
                {"name": "pfcp", "port": 8805, "protocol": "UDP"},
                {"name": "http", "port": 8080, "protocol": "TCP"}
            ],
            "config": {"nf.yaml": format!("id: {i}\nlogLevel: info\nsessions: 10000\n")},
            "stackOutputs": true
        }
    })
}

/// What to apply.
enum Object {
    Stack(Value),
    Function(Value),
    ConfigMap(Box<ConfigMap>),
    Service(Box<Service>),
    Deployment(Box<Deployment>),
}

/// The children Strata renders for each function, without owner references
/// (their owner does not exist in the bare namespace).
fn bare_objects(stacks: &[Value], functions: &[Value], ns: &str) -> Result<Vec<Object>> {
    let mut resolved = HashMap::new();
    for stack in stacks {
        let spec: StackSpec = serde_json::from_value(stack["spec"].clone())?;
        let rendered = render_stack(&spec)?;
        let name = stack["metadata"]["name"].as_str().unwrap_or_default();
        resolved.insert(
            name.to_string(),
            ResolvedStack {
                name: name.to_string(),
                version: rendered.version,
                digest: rendered.digest,
                outputs: rendered.outputs,
            },
        );
    }
    let mut objects = Vec::new();
    for function in functions {
        let mut nf: NetworkFunction = serde_json::from_value(function.clone())?;
        nf.metadata.namespace = Some(ns.to_string());
        nf.metadata.uid = Some(format!("bench-{}", nf.name_any()));
        let stack = &resolved[&nf.spec.stack_ref.name];
        let children = desired(&nf, stack, &[])?;
        if let Some(mut cm) = children.config_map {
            cm.metadata.owner_references = None;
            objects.push(Object::ConfigMap(Box::new(cm)));
        }
        if let Some(mut service) = children.service {
            service.metadata.owner_references = None;
            objects.push(Object::Service(Box::new(service)));
        }
        let mut deployment = children.deployment;
        deployment.metadata.owner_references = None;
        objects.push(Object::Deployment(Box::new(deployment)));
    }
    Ok(objects)
}

// ------------------------------------------------------------ the plane --

async fn install_crds(client: &Client) -> Result<()> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crds/strata.dev.yaml");
    let text = std::fs::read_to_string(&path)?;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for document in serde_yaml::Deserializer::from_str(&text) {
        let crd: CustomResourceDefinition = serde::Deserialize::deserialize(document)?;
        api.patch(
            &crd.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await?;
        let name = crd.name_any();
        wait_until(
            Duration::from_secs(60),
            &format!("CRD {name} Established"),
            || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let crd = api.get(&name).await?;
                    Ok(crd.status.and_then(|s| s.conditions).is_some_and(|c| {
                        c.iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                    }))
                }
            },
        )
        .await?;
    }
    Ok(())
}

async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    api.patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(&ns))
        .await?;
    Ok(())
}

/// Deletes the namespaces, first releasing the Stacks' finalizers (the
/// operator that would release them is stopped by now).
async fn cleanup(client: &Client, namespaces: &[&str]) {
    for ns in namespaces {
        let stacks: Api<strata::api::Stack> = Api::namespaced(client.clone(), ns);
        if let Ok(list) = stacks.list(&Default::default()).await {
            for stack in list {
                let patch = json!({"metadata": {"finalizers": null}});
                let _ = stacks
                    .patch(
                        &stack.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await;
            }
        }
        let _ = Api::<Namespace>::all(client.clone())
            .delete(ns, &DeleteParams::background())
            .await;
    }
}

async fn apply_all(
    client: &Client,
    ns: &str,
    objects: Vec<Object>,
    concurrency: usize,
) -> Result<()> {
    let params = PatchParams::apply(MANAGER).force();
    stream::iter(objects)
        .map(|object| {
            let client = client.clone();
            let params = params.clone();
            async move {
                match object {
                    Object::Stack(v) => {
                        apply_value::<strata::api::Stack>(&client, ns, &params, v).await
                    }
                    Object::Function(v) => {
                        apply_value::<NetworkFunction>(&client, ns, &params, v).await
                    }
                    Object::ConfigMap(o) => apply_typed(&client, ns, &params, *o).await,
                    Object::Service(o) => apply_typed(&client, ns, &params, *o).await,
                    Object::Deployment(o) => apply_typed(&client, ns, &params, *o).await,
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

async fn apply_value<K>(client: &Client, ns: &str, params: &PatchParams, value: Value) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let name = value["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Api::<K>::namespaced(client.clone(), ns)
        .patch(&name, params, &Patch::Apply(&value))
        .await?;
    Ok(())
}

async fn apply_typed<K>(client: &Client, ns: &str, params: &PatchParams, object: K) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .patch(&object.name_any(), params, &Patch::Apply(&object))
        .await?;
    Ok(())
}

/// Watches `api` until `count` objects satisfy `done`.
async fn wait_all<K>(
    api: Api<K>,
    count: usize,
    done: fn(&K) -> bool,
    within: Duration,
    what: &str,
) -> Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut state: HashMap<String, bool> = HashMap::new();
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let deadline = tokio::time::Instant::now() + within;
    let mut last_print = Instant::now();
    loop {
        let ready = state.values().filter(|r| **r).count();
        if ready >= count {
            return Ok(());
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
            Some(watcher::Event::Init | watcher::Event::InitDone) => {}
            None => return Err(format!("{what}: the watch ended").into()),
        }
    }
}

fn deployment_available(d: &Deployment) -> bool {
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

fn function_ready(nf: &NetworkFunction) -> bool {
    nf.status.as_ref().is_some_and(|s| {
        s.observed_generation == nf.metadata.generation
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// Waits until `consumers` functions of stack 0 run the bumped version and
/// are Ready; returns the most seen moving (adopting, not yet Ready) at once.
async fn wait_adopted(
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
async fn stacks_counted(client: &Client, ns: &str, n: usize, within: Duration) -> Result<()> {
    let api: Api<strata::api::Stack> = Api::namespaced(client.clone(), ns);
    wait_until(within, "the stacks to count their consumers", || {
        let api = api.clone();
        async move {
            let (total, current) = api
                .list(&Default::default())
                .await?
                .items
                .iter()
                .filter_map(|s| s.status.as_ref()?.consumers.clone())
                .fold((0, 0), |(t, c), x| (t + x.total, c + x.on_current_version));
            Ok(total as usize == n && current == total)
        }
    })
    .await
}

async fn wait_until<F, Fut>(within: Duration, what: &str, mut probe: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + within;
    loop {
        if probe().await.unwrap_or(false) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// -------------------------------------------------------------- writes --

/// Counter values of `apiserver_request_total` by (resource, verb); dry runs
/// and reads are left out.
type Counts = BTreeMap<(String, String), f64>;

const WRITE_VERBS: &[&str] = &[
    "POST",
    "PUT",
    "PATCH",
    "APPLY",
    "DELETE",
    "DELETECOLLECTION",
];

async fn scrape(client: &Client) -> Result<Counts> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    let mut counts = Counts::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let labels = parse_labels(labels);
        let label = |k: &str| labels.get(k).map(String::as_str).unwrap_or_default();
        if !label("dry_run").is_empty() || !WRITE_VERBS.contains(&label("verb")) {
            continue;
        }
        let mut resource = label("resource").to_string();
        if !label("group").is_empty() {
            resource = format!("{resource}.{}", label("group"));
        }
        if !label("subresource").is_empty() {
            resource = format!("{resource}/{}", label("subresource"));
        }
        let value: f64 = value.trim().parse().unwrap_or(0.0);
        *counts
            .entry((resource, label("verb").to_string()))
            .or_default() += value;
    }
    Ok(counts)
}

fn parse_labels(text: &str) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let Some(end) = after.find('"') else { break };
        labels.insert(
            key.trim_start_matches(',').to_string(),
            after[..end].to_string(),
        );
        rest = &after[end + 1..];
    }
    labels
}

fn writes(before: &Counts, after: &Counts) -> Counts {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

/// Writes of the objects Strata owns or writes: its own kinds, the children
/// it applies, and Events (which the bare controllers write too).
fn strata_object(resource: &str, verb: &str) -> bool {
    (resource.contains("strata.dev") && !benchmark_apply(resource, verb))
        || (verb == "APPLY" && ["deployments.apps", "services", "configmaps"].contains(&resource))
}

/// The benchmark's own applies of Stacks and NetworkFunctions (the user's writes).
fn benchmark_apply(resource: &str, verb: &str) -> bool {
    verb == "APPLY" && ["stacks.strata.dev", "networkfunctions.strata.dev"].contains(&resource)
}

fn account_writes(report: &mut Report, bare: &Counts, strata: &Counts, n: usize) {
    let keys: std::collections::BTreeSet<_> = bare.keys().chain(strata.keys()).collect();
    for key in keys {
        report.writes.push(WriteRow {
            resource: key.0.clone(),
            verb: key.1.clone(),
            bare: bare.get(key).copied().unwrap_or(0.0),
            strata: strata.get(key).copied().unwrap_or(0.0),
        });
    }
    let own: f64 = strata
        .iter()
        .filter(|((r, verb), _)| strata_object(r, verb))
        .map(|(_, v)| v)
        .sum();
    let events = |c: &Counts| {
        c.iter()
            .filter(|((r, _), _)| r.starts_with("events"))
            .map(|(_, v)| v)
            .sum::<f64>()
    };
    let n = n as f64;
    report.strata_writes_per_function = (own + (events(strata) - events(bare)).max(0.0)) / n;
    // Per function: three children applied; one record created, its status
    // written as Progressing and as Succeeded; the function's status written
    // when the rollout starts and when it is Ready; one Event announcing the
    // rollout.
    report.design_minimum_writes_per_function = 9.0;
    let total = |c: &Counts| {
        c.iter()
            .filter(|((r, verb), _)| !benchmark_apply(r, verb))
            .map(|(_, v)| v)
            .sum::<f64>()
    };
    report.extra_writes_per_function_vs_bare = (total(strata) - total(bare)) / n;
}

// ------------------------------------------------------------ operator --

/// `strata run` as a subprocess, with leader election, watching one namespace.
struct Operator {
    child: Child,
    log: PathBuf,
    started: Instant,
    metrics: Option<std::net::SocketAddr>,
}

impl Operator {
    fn start(ns: &str) -> Result<Self> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
        std::fs::create_dir_all(&dir)?;
        let log = dir.join(format!("operator-{ns}.log"));
        let out = File::options().create(true).append(true).open(&log)?;
        let err = out.try_clone()?;
        let started = Instant::now();
        // STRATA_BENCH_OPERATOR runs another build (e.g. a baseline) instead.
        let binary = std::env::var_os("STRATA_BENCH_OPERATOR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_strata")));
        let child = Command::new(binary)
            .arg("run")
            .env("STRATA_NAMESPACES", ns)
            .env("STRATA_METRICS_ADDR", "127.0.0.1:0")
            .env("STRATA_LEADER_ELECTION", "true")
            .env("STRATA_LEASE_NAMESPACE", ns)
            .env("STRATA_IDENTITY", "bench")
            .env("STRATA_LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()?;
        Ok(Self {
            child,
            log,
            started,
            metrics: None,
        })
    }

    async fn addr(&mut self, within: Duration) -> Result<std::net::SocketAddr> {
        if let Some(addr) = self.metrics {
            return Ok(addr);
        }
        let deadline = Instant::now() + within;
        let pid = self.child.id().to_string();
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            // The log is appended to by each start; read this process's lines.
            let addr = text
                .lines()
                .rev()
                .filter(|l| l.contains("serving /metrics"))
                .find_map(|l| {
                    l.split_once("addr=")?
                        .1
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                });
            if let Some(addr) = addr.filter(|_| self.child.try_wait().ok().flatten().is_none())
                && port_open(addr).await
            {
                self.metrics = Some(addr);
                return Ok(addr);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("the operator (pid {pid}) exited: {status}").into());
            }
            if Instant::now() > deadline {
                return Err("the operator did not log its metrics address".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_ready(&mut self, within: Duration) -> Result<f64> {
        let addr = self.addr(within).await?;
        let deadline = Instant::now() + within;
        loop {
            if get(addr, "/readyz")
                .await
                .is_some_and(|b| b.starts_with("ready: leading"))
            {
                return Ok(self.started.elapsed().as_secs_f64());
            }
            if Instant::now() > deadline {
                return Err("the operator did not become ready".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Seconds from the start to ready, and to the first finished reconcile.
    async fn wait_first_reconcile(&mut self, within: Duration) -> Result<(f64, f64)> {
        let ready = self.wait_ready(within).await?;
        let addr = self.addr(within).await?;
        let deadline = Instant::now() + within;
        loop {
            if reconciles(addr, "NetworkFunction").await > 0.0 {
                return Ok((ready, self.started.elapsed().as_secs_f64()));
            }
            if Instant::now() > deadline {
                return Err("no reconcile finished".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until `n` NetworkFunction reconciles have finished.
    async fn wait_reconciled(&mut self, n: usize, within: Duration) -> Result<()> {
        let addr = self.addr(within).await?;
        let deadline = Instant::now() + within;
        while reconciles(addr, "NetworkFunction").await < n as f64 {
            if Instant::now() > deadline {
                return Err(format!("fewer than {n} reconciles after a restart").into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// CPU time (user and system) the process has used, in seconds.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command (which may hold spaces), from field 3 on.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime are fields 14 and 15; clock ticks are 1/100 s on Linux.
        (ticks(11) + ticks(12)) / 100.0
    }

    /// (peak, current) resident memory in MiB.
    fn memory_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1024.0
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    /// SIGTERM; seconds until the process exited.
    async fn terminate(&mut self, within: Duration) -> Result<f64> {
        let started = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        if !status.success() {
            return Err("kill -TERM failed".into());
        }
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    return Err(format!("the operator exited with {status}").into());
                }
                return Ok(started.elapsed().as_secs_f64());
            }
            if started.elapsed() > within {
                return Err("the operator did not exit after SIGTERM".into());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn port_open(addr: std::net::SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_ok()
}

/// The body of a plain HTTP GET, if the server answered.
async fn get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let timeout = Duration::from_secs(5);
        let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
        stream.set_read_timeout(Some(timeout)).ok()?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        Some(response.split_once("\r\n\r\n")?.1.to_string())
    })
    .await
    .ok()
    .flatten()
}

/// `strata_reconcile_total` of `kind`, over every result.
async fn reconciles(addr: std::net::SocketAddr, kind: &str) -> f64 {
    let Some(body) = get(addr, "/metrics").await else {
        return 0.0;
    };
    let needle = format!("kind=\"{kind}\"");
    body.lines()
        .filter(|l| l.starts_with("strata_reconcile_total{") && l.contains(&needle))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

// -------------------------------------------------------------- report --

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, m)| m.trim().to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")?
                    .split_whitespace()
                    .next()?
                    .parse::<f64>()
                    .ok()
            })
        })
        .map(|kib| kib / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    format!("{cores} cores ({cpu}), {memory:.0} GiB")
}

fn print_report(r: &Report) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "\nStrata scale benchmark on {}", r.machine);
    let _ = writeln!(
        out,
        "{} functions over {} stacks, {} replicas each\n",
        r.functions, r.stacks, r.replicas
    );
    let rows: [(String, String); 14] = [
        (
            "bare objects Available (b)".into(),
            format!("{:.1} s", r.bare_seconds),
        ),
        (
            "Strata functions Ready (a)".into(),
            format!("{:.1} s", r.strata_seconds),
        ),
        ("ratio a/b".into(), format!("{:.2}", r.ratio)),
        (
            "operator CPU to converge".into(),
            format!("{:.1} s", r.operator_cpu_seconds),
        ),
        (
            "NetworkFunction reconciles per function".into(),
            format!("{:.1}", r.reconciles_per_function),
        ),
        (
            "Strata writes per function".into(),
            format!(
                "{:.2} (design minimum {:.0})",
                r.strata_writes_per_function, r.design_minimum_writes_per_function
            ),
        ),
        (
            "all writes per function, Strata minus bare, without the benchmark's own".into(),
            format!("{:.2}", r.extra_writes_per_function_vs_bare),
        ),
        (
            format!("writes to Strata's objects in {} s idle", r.idle_seconds),
            format!("{}", r.idle_writes_strata_objects),
        ),
        (
            "operator RSS at N: peak / steady".into(),
            format!(
                "{:.1} / {:.1} MiB",
                r.rss_peak_mib_at_n, r.rss_steady_mib_at_n
            ),
        ),
        (
            format!(
                "stack bump adopted by {} consumers ({})",
                r.bump_consumers, r.bump_max_concurrent
            ),
            format!(
                "{:.1} s (at most {} moving at once)",
                r.bump_seconds, r.bump_max_moving_seen
            ),
        ),
        (
            "SIGTERM to exit".into(),
            format!("{:.0} ms", r.sigterm_to_exit_ms),
        ),
        (
            "start to ready (caches synced)".into(),
            format!("{:.0} ms", r.start_to_ready_ms),
        ),
        (
            "start to first reconcile".into(),
            format!("{:.0} ms", r.start_to_first_reconcile_ms),
        ),
        (
            "writes after a restart (N unchanged)".into(),
            format!("{}", r.restart_writes),
        ),
    ];
    for (what, value) in rows {
        let _ = writeln!(out, "  {what:<52} {value}");
    }
    if r.scaled_functions > 0 {
        let _ = writeln!(
            out,
            "  {:<52} {:.1} s",
            format!(
                "grow to {} functions ({} replicas)",
                r.scaled_functions, r.scaled_replicas
            ),
            r.scale_seconds
        );
        let _ = writeln!(
            out,
            "  {:<52} {:.1} / {:.1} MiB",
            format!("operator RSS at {}: peak / steady", r.scaled_functions),
            r.rss_peak_mib_at_scale,
            r.rss_steady_mib_at_scale
        );
    }
    let _ = writeln!(
        out,
        "\n  writes to converge, by resource     verb      bare    strata  strata/function"
    );
    for row in &r.writes {
        let _ = writeln!(
            out,
            "  {:<36} {:<8} {:>7} {:>9} {:>8.2}",
            row.resource,
            row.verb,
            row.bare,
            row.strata,
            row.strata / r.functions as f64
        );
    }
    if !r.idle_writes.is_empty() {
        let _ = writeln!(out, "\n  writes while idle (every writer on the plane):");
        for (what, count) in &r.idle_writes {
            let _ = writeln!(out, "  {what:<46} {count}");
        }
    }
}
