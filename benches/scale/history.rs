//! Records over time. A function deployed daily keeps as many
//! DeploymentRecords as the retention allows (50 by default), so a cluster's
//! records outnumber its functions many times over. This phase rolls F of
//! the N functions out R times each (a new function version each time, one
//! record per rollout) and measures what grows with the records: the
//! operator's memory, the time of a round of rollouts (the last against the
//! first), the records the operator reads per rollout, the time a user's
//! `kubectl get dr -l strata.dev/stack-version=...` takes, and etcd's
//! database per record.
//!
//! The functions roll out with `--history-replicas` (0) replicas, set
//! before the first measured round where they have others: pods are not
//! what grows here. They are those the scale phase added (without pods),
//! when there are enough, so that the records grow in a cluster of scale × N
//! functions.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream::BoxStream};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use strata::api::{DeploymentRecord, LABEL_STACK_VERSION, NetworkFunction};
use strata::render::label_value;
use strata_testkit::{kubeconfig_path, kubectl, metric_sum};

use crate::Result;
use crate::measure::MeasuredOperator;
use crate::options::Options;
use crate::phases::phase;
use crate::report::{History, HistoryRound, PhaseCounts, RecordList};
use crate::traffic::PhaseWindow;
use crate::waits::function_ready;
use crate::workload::{Object, STACK_VERSION, apply_all, function};

const RECORDS: &str = "deploymentrecords.strata.dev";

/// The functions' version before the phase (the workload's); round k rolls
/// out 1.0.k.
const FIRST_VERSION: &str = "1.0.0";

/// The functions the phase rolls out: the workload's functions `first` to
/// `first + count`, Ready with `replicas` replicas.
pub struct Functions {
    pub first: usize,
    pub count: usize,
    pub replicas: i32,
}

/// Runs the phase against `functions` in `ns`, with `operator` running;
/// returns its figures and what the API server counted in it.
pub async fn run(
    client: &Client,
    options: &Options,
    ns: &str,
    operator: &MeasuredOperator,
    functions: Functions,
) -> Result<(History, PhaseCounts)> {
    let f = functions.count;
    let r = options.history_rollouts;
    let replicas = options.history_replicas;
    phase(&format!(
        "history: {f} functions × {r} rollouts ({replicas} replicas), {} records",
        f * r
    ));
    let phase_started = Instant::now();
    let nfs: Api<NetworkFunction> = Api::namespaced(client.clone(), ns);
    let records: Api<DeploymentRecord> = Api::namespaced(client.clone(), ns);
    let at = |version: &str| -> Vec<Value> {
        (functions.first..functions.first + f)
            .map(|i| {
                let mut nf = function(i, options.stacks, replicas);
                nf["spec"]["version"] = json!(version);
                if options.history_config && version != FIRST_VERSION {
                    nf["spec"]["config"]["nf.yaml"] =
                        json!(format!("id: {i}\nlogLevel: info\nrelease: {version}\n"));
                }
                nf
            })
            .collect()
    };
    let names: BTreeSet<String> = at(FIRST_VERSION)
        .iter()
        .filter_map(|nf| nf["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    let mut watch = Rollouts::watch(nfs, names);
    if replicas != functions.replicas {
        // Not a rollout (no new record): the Deployments scale.
        apply(client, ns, at(FIRST_VERSION), options).await;
        watch
            .wait(
                |nf| nf.spec.replicas == replicas && function_ready(nf),
                options.timeout(),
                &format!("functions at {replicas} replicas"),
            )
            .await?;
    }

    let mut history = History {
        functions: f,
        rollouts: r,
        replicas,
        record_retention: options.record_retention,
        config_changes: options.history_config,
        ..History::default()
    };
    let selector = format!("{LABEL_STACK_VERSION}={}", label_value(STACK_VERSION));
    history.list_before = timed_list(ns, &records, &selector).await;
    history.records_before = record_sizes(&records).await?.0;
    let config_maps: Api<PartialObjectMeta<ConfigMap>> = Api::namespaced(client.clone(), ns);
    history.config_maps_before = count(&config_maps).await?;
    let etcd = Etcd::of_plane();
    history.etcd_in_use_bytes_before = match &etcd {
        Some(etcd) => etcd.compacted_in_use().await,
        None => None,
    };
    history.rss_mib_before = operator.memory_mib().1;

    let window = PhaseWindow::open(client, Some(operator)).await;
    for round in 1..=r {
        let version = format!("1.0.{round}");
        let started = Instant::now();
        apply(client, ns, at(&version), options).await;
        watch
            .wait(
                |nf| rolled_out(nf, &version),
                options.timeout(),
                &format!("functions rolled out to {version}"),
            )
            .await?;
        let seconds = started.elapsed().as_secs_f64();
        // (The API server's counters are read for the whole phase only:
        // a read between rounds takes seconds in a debug build.)
        let figures = HistoryRound {
            seconds,
            rss_mib: operator.memory_mib().1,
        };
        println!(
            "    round {round}/{r}: {seconds:.1} s, operator RSS {:.1} MiB",
            figures.rss_mib
        );
        history.rounds.push(figures);
    }
    let rollouts = f * r;
    let cost = window
        .close(client, "history", rollouts, rollouts, Some(operator))
        .await;
    let reads = cost.apiserver.reads();
    let per_rollout = |verb: &str| {
        reads
            .get(&(RECORDS.to_string(), verb.to_string()))
            .copied()
            .unwrap_or(0.0)
            / rollouts as f64
    };
    history.record_lists_per_rollout = per_rollout("LIST");
    history.record_gets_per_rollout = per_rollout("GET");
    if let (Some(first), Some(last)) = (history.rounds.first(), history.rounds.last()) {
        history.last_over_first = last.seconds / first.seconds;
    }
    (history.rss_peak_mib_after, history.rss_mib_after) = operator.memory_mib();
    history.list_after = timed_list(ns, &records, &selector).await;
    history.config_maps_after = count(&config_maps).await?;
    let (count, bytes) = record_sizes(&records).await?;
    history.records_after = count;
    history.record_json_bytes = bytes / count.max(1) as f64;
    if let Some(etcd) = &etcd {
        history.etcd_in_use_bytes_after = etcd.compacted_in_use().await;
    }
    let created = count.saturating_sub(history.records_before);
    if let (Some(before), Some(after)) = (
        history.etcd_in_use_bytes_before,
        history.etcd_in_use_bytes_after,
    ) && created > 0
    {
        history.etcd_bytes_per_record = Some((after - before) / created as f64);
    }
    history.phase_seconds = phase_started.elapsed().as_secs_f64();
    Ok((history, cost.counts))
}

async fn apply(client: &Client, ns: &str, functions: Vec<Value>, options: &Options) {
    let objects = functions.into_iter().map(Object::Function).collect();
    apply_all(client, ns, objects, options.apply_concurrency).await;
}

/// Whether `nf` runs `version`: its rollout recorded, concluded, and Ready.
fn rolled_out(nf: &NetworkFunction, version: &str) -> bool {
    nf.spec.version == version
        && nf
            .status
            .as_ref()
            .and_then(|s| s.deployed_with.as_ref())
            .is_some_and(|d| d.version == version && d.ready_at.is_some())
        && function_ready(nf)
}

/// One watch of the phase's functions for all its rounds.
struct Rollouts {
    names: BTreeSet<String>,
    state: HashMap<String, NetworkFunction>,
    events: BoxStream<'static, Result<NetworkFunction, watcher::Error>>,
}

impl Rollouts {
    fn watch(api: Api<NetworkFunction>, names: BTreeSet<String>) -> Self {
        let events = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        Self {
            names,
            state: HashMap::new(),
            events,
        }
    }

    /// Waits until every function satisfies `done`.
    async fn wait(
        &mut self,
        done: impl Fn(&NetworkFunction) -> bool,
        within: Duration,
        what: &str,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        let mut last_print = Instant::now();
        let count = self.names.len();
        loop {
            let ready = self.state.values().filter(|nf| done(nf)).count();
            if ready >= count {
                return Ok(());
            }
            if last_print.elapsed() > Duration::from_secs(10) {
                println!("    {what}: {ready}/{count}");
                last_print = Instant::now();
            }
            let nf = tokio::time::timeout_at(deadline, self.events.try_next())
                .await
                .map_err(|_| format!("{what}: only {ready} of {count} after {within:?}"))??
                .ok_or("the watch of functions ended")?;
            if self.names.contains(&nf.name_any()) {
                self.state.insert(nf.name_any(), nf);
            }
        }
    }
}

/// `kubectl get dr -l selector` and the same LIST through the benchmark's
/// client, each the best of three; None (said) when kubectl fails.
async fn timed_list(
    ns: &str,
    records: &Api<DeploymentRecord>,
    selector: &str,
) -> Option<RecordList> {
    let mut list = RecordList {
        selector: selector.to_string(),
        kubectl_seconds: f64::MAX,
        list_seconds: f64::MAX,
        ..RecordList::default()
    };
    for _ in 0..3 {
        let started = Instant::now();
        let output = kubectl(["get", "dr", "-n", ns, "-l", selector, "--no-headers"]);
        list.kubectl_seconds = list.kubectl_seconds.min(started.elapsed().as_secs_f64());
        if !output.status.success() {
            println!(
                "    kubectl get dr: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
            return None;
        }
        list.records = String::from_utf8_lossy(&output.stdout).lines().count();
        let started = Instant::now();
        if let Err(e) = records.list(&ListParams::default().labels(selector)).await {
            println!("    listing records: {e}");
            return None;
        }
        list.list_seconds = list.list_seconds.min(started.elapsed().as_secs_f64());
    }
    Some(list)
}

/// The records in the namespace and their size as JSON, a page at a time.
async fn record_sizes(records: &Api<DeploymentRecord>) -> Result<(usize, f64)> {
    let (mut count, mut bytes) = (0, 0.0);
    let mut params = ListParams::default().limit(500);
    loop {
        let page = records.list(&params).await?;
        for record in &page.items {
            count += 1;
            bytes += serde_json::to_vec(record)?.len() as f64;
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok((count, bytes)),
        }
    }
}

/// How many objects `api` lists, a page of metadata at a time.
async fn count(api: &Api<PartialObjectMeta<ConfigMap>>) -> Result<usize> {
    let mut count = 0;
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list_metadata(&params).await?;
        count += page.items.len();
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(count),
        }
    }
}

/// The plane's etcd, reached over its JSON gateway and its /metrics.
struct Etcd {
    addr: SocketAddr,
}

impl Etcd {
    /// From the `plane.env` next to the plane's kubeconfig (`hack/plane`
    /// writes both); None, said, when there is none.
    fn of_plane() -> Option<Self> {
        let env = kubeconfig_path()
            .parent()
            .map(|dir| dir.join("plane.env"))
            .and_then(|path| std::fs::read_to_string(path).ok());
        let port = env.as_deref().and_then(|env| {
            env.lines()
                .find_map(|l| l.strip_prefix("ETCD_PORT="))
                .and_then(|p| p.trim().parse::<u16>().ok())
        });
        match port {
            Some(port) => Some(Self {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
            }),
            None => {
                println!(
                    "    no ETCD_PORT in plane.env next to {}: etcd's size is not measured",
                    kubeconfig_path().display()
                );
                None
            }
        }
    }

    /// `etcd_mvcc_db_total_size_in_use_in_bytes` once the history up to now
    /// is compacted away (what the live objects take), read until two
    /// reads agree; None (said) when etcd does not answer.
    async fn compacted_in_use(&self) -> Option<f64> {
        let result: Result<f64> = async {
            let (_, range) = self.request("POST", "/v3/kv/range", r#"{"key":"AA=="}"#)?;
            let range: Value = serde_json::from_str(&range)?;
            let revision = range["header"]["revision"]
                .as_str()
                .ok_or("no revision in etcd's answer")?
                .to_string();
            let compaction = json!({"revision": revision, "physical": true}).to_string();
            let (code, body) = self.request("POST", "/v3/kv/compaction", &compaction)?;
            if code != 200 {
                return Err(format!("compaction: {code} {body}").into());
            }
            // The backend commits (and updates the size) every 100 ms.
            let mut previous = None;
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let (_, metrics) = self.request("GET", "/metrics", "")?;
                let in_use = metric_sum(&metrics, "etcd_mvcc_db_total_size_in_use_in_bytes", &[]);
                if previous == Some(in_use) || Instant::now() > deadline {
                    return Ok(in_use);
                }
                previous = Some(in_use);
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        .await;
        result
            .inspect_err(|e| println!("    etcd at {}: {e}", self.addr))
            .ok()
    }

    /// One HTTP/1.0 request (so that the answer is not chunked).
    fn request(&self, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
        let mut stream = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(strata_testkit::http_response(&response))
    }
}
