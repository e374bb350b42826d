//! The figures of one run, written as JSON ([`crate::table`] prints them).

use std::collections::BTreeMap;

use serde::Serialize;

/// One pair of a bare phase and a Strata phase, each from an empty cluster.
#[derive(Serialize, Default, Clone)]
pub struct PairFigures {
    pub bare_seconds: f64,
    pub strata_seconds: f64,
    /// `strata_seconds / bare_seconds`.
    pub ratio: f64,
    /// The floor the writes (every writer's, per function) imply.
    pub write_ratio: f64,
    /// The floor the CPU of the plane and the operator implies.
    pub cpu_ratio: f64,
    pub bare_cpu_ms_per_function: f64,
    pub strata_cpu_ms_per_function: f64,
}

/// What one request of a kind cost the API server ([`crate::costs`]).
#[derive(Serialize, Default, Clone)]
pub struct RequestCost {
    pub request: String,
    pub requests: usize,
    pub seconds: f64,
    /// kube-apiserver's CPU per request, in ms.
    pub apiserver_ms: f64,
    /// etcd's CPU per request, in ms.
    pub etcd_ms: f64,
}

/// What one run measured; written as JSON.
#[derive(Serialize, Default)]
pub struct Report {
    pub machine: String,
    pub functions: usize,
    pub stacks: usize,
    pub replicas: i32,
    pub bare_seconds: f64,
    pub strata_seconds: f64,
    pub ratio: f64,
    /// Mutating requests per function on the whole plane (every writer),
    /// Strata phase over bare phase: the ratio the API server's load implies.
    pub write_ratio: f64,
    /// Watch events sent per function, Strata phase over bare phase.
    pub watch_event_ratio: f64,
    /// CPU of the plane and the operator per function, Strata against the
    /// bare objects: the floor the machine's work implies, when the
    /// machine's cores are what limits both phases.
    pub cpu_ratio: f64,
    /// Every pair of a bare phase and a Strata phase, in order; the last
    /// is the one the figures above and `phases` are of.
    pub pairs: Vec<PairFigures>,
    /// What the API server counted in each phase, in order.
    pub phases: Vec<PhaseCounts>,
    /// What one request of each kind cost the API server, after the
    /// phases at N.
    pub request_costs: Vec<RequestCost>,
    /// Mutating requests by resource and verb in the bare and Strata phases,
    /// the Strata phase's most first.
    pub writes: Vec<WriteRow>,
    /// The operator's own count of its writes in the Strata phase
    /// (`strata_api_writes_total`), per function.
    pub operator_writes_per_function: f64,
    /// Strata's writes per function by the API server's counts: writes of
    /// Strata's kinds (not the benchmark's applies), applies of the
    /// children's kinds, and the Events beyond the bare phase's.
    pub strata_writes_per_function: f64,
    pub reconciles_per_function: f64,
    pub operator_cpu_seconds: f64,
    pub design_minimum_writes_per_function: f64,
    /// Every writer's writes per function, Strata phase minus bare phase,
    /// without the benchmark's applies of Stacks and NetworkFunctions.
    pub extra_writes_per_function_vs_bare: f64,
    pub idle_seconds: u64,
    pub idle_writes: BTreeMap<String, f64>,
    pub idle_writes_strata_objects: f64,
    pub rss_peak_mib_at_n: f64,
    pub rss_steady_mib_at_n: f64,
    pub bump_consumers: usize,
    pub bump_max_concurrent: String,
    pub bump_seconds: f64,
    pub bump_max_moving_seen: usize,
    pub sigterm_to_exit_ms: f64,
    pub start_to_ready_ms: f64,
    pub start_to_first_reconcile_ms: f64,
    pub restart_writes: f64,
    pub scaled_functions: usize,
    pub scaled_replicas: i32,
    pub scale_seconds: f64,
    pub rss_peak_mib_at_scale: f64,
    pub rss_steady_mib_at_scale: f64,
    /// The same growth applied as bare objects (Deployments, Services,
    /// ConfigMaps of the added functions), just before: bare Available at
    /// scale × N.
    pub scale_bare_seconds: f64,
    /// `scale_seconds / scale_bare_seconds`: the time ratio of the growth.
    pub scale_ratio: f64,
    /// `scale_ratio` over the median ratio of the pairs at N: how the time
    /// ratio at scale × N compares with the one at N (1: Strata's cost grows
    /// as the bare controllers' does).
    pub scale_ratio_growth: f64,
    /// The number of objects Ready (functions) or Available (bare
    /// Deployments) over time, in the phases that wait for them, as the
    /// benchmark's own watch saw it.
    pub ready_over_time: Vec<ReadySeries>,
    /// Records over time: functions rolled out again and again.
    pub history: Option<History>,
    /// The operator's caches when its RSS at N was read, and at scale:
    /// objects and estimated heap bytes by kind (`strata_cached_objects`,
    /// `strata_cached_bytes`; none from a build without them).
    pub caches_at_n: Vec<CacheCount>,
    pub caches_at_scale: Vec<CacheCount>,
}

/// One of the operator's caches.
#[derive(Serialize)]
pub struct CacheCount {
    pub kind: String,
    pub objects: f64,
    pub bytes: f64,
}

/// How many objects were Ready at each change, in one phase.
#[derive(Serialize, Clone)]
pub struct ReadySeries {
    /// bare, strata, scale-bare, scale.
    pub phase: String,
    /// What is counted: "Deployments Available", "NetworkFunctions Ready".
    pub what: String,
    /// (seconds from the phase's start, how many were Ready then), at each change.
    pub points: Vec<(f64, usize)>,
}

/// The history phase: `functions` functions rolled out `rollouts` times
/// each, a DeploymentRecord each time.
#[derive(Serialize, Default)]
pub struct History {
    /// The whole phase's wall time: the replicas set, the lists timed,
    /// etcd compacted and read, the rounds, the quiet after them.
    pub phase_seconds: f64,
    pub functions: usize,
    pub rollouts: usize,
    pub replicas: i32,
    /// The operator's record retention (None: its default).
    pub record_retention: Option<usize>,
    /// Whether each rollout changed the config too (`--history-config`).
    pub config_changes: bool,
    /// DeploymentRecords in the namespace before and after the phase.
    pub records_before: usize,
    pub records_after: usize,
    /// ConfigMaps in the namespace before and after: a config rollout
    /// makes a new content-named one, and the old ones stay.
    pub config_maps_before: usize,
    pub config_maps_after: usize,
    /// Each round: every function rolled out once more.
    pub rounds: Vec<HistoryRound>,
    /// The last round's time over the first's.
    pub last_over_first: f64,
    /// Operator RSS (current) before the first round and after the phase, MiB.
    pub rss_mib_before: f64,
    pub rss_mib_after: f64,
    pub rss_peak_mib_after: f64,
    /// `kubectl get dr -l strata.dev/stack-version=...` before and after.
    pub list_before: Option<RecordList>,
    pub list_after: Option<RecordList>,
    /// etcd's database in use (`etcd_mvcc_db_total_size_in_use_in_bytes`,
    /// each read after compacting to the current revision) before and after.
    pub etcd_in_use_bytes_before: Option<f64>,
    pub etcd_in_use_bytes_after: Option<f64>,
    /// Its growth over the records created: what a rollout leaves in etcd
    /// (its record, and the function's, Deployment's and ReplicaSets'
    /// and Events' growth with it).
    pub etcd_bytes_per_record: Option<f64>,
    /// A record's own size as JSON (what the API server stores), on average.
    pub record_json_bytes: f64,
    /// LISTs and GETs of DeploymentRecords per rollout, by the API server's counts.
    pub record_lists_per_rollout: f64,
    pub record_gets_per_rollout: f64,
}

/// One round of the history phase.
#[derive(Serialize, Default)]
pub struct HistoryRound {
    /// From the applies until every function was Ready on the new version.
    pub seconds: f64,
    /// Operator RSS (current) at its end, MiB.
    pub rss_mib: f64,
}

/// A timed `kubectl get dr -l ...`.
#[derive(Serialize, Default)]
pub struct RecordList {
    pub selector: String,
    /// Records it printed.
    pub records: usize,
    /// kubectl's wall time (its own start, discovery and printing in it),
    /// the best of three.
    pub kubectl_seconds: f64,
    /// The same LIST through the benchmark's client, the best of three.
    pub list_seconds: f64,
}

/// What the API server counted in one phase (its `apiserver_request_total`
/// and `apiserver_watch_events_total`, every client of the plane), with the
/// benchmark's own applies and the operator's own count set apart.
#[derive(Serialize, Default)]
pub struct PhaseCounts {
    /// bare, strata, idle, bump, restart, scale.
    pub phase: String,
    /// From the phase's start until its counts were read.
    pub seconds: f64,
    /// From convergence until the start of the first second in which the
    /// API server counted no write but Lease renewals (the writes that
    /// trail convergence ended within the second before); none for the
    /// idle window, or when writes went on for a minute.
    pub quiet_after_seconds: Option<f64>,
    /// What "per function" divides by: the functions the phase applies
    /// (bump: the consumers that adopt); 0 when nothing is per function.
    pub functions: usize,
    /// Mutating requests: POST, PUT, PATCH, APPLY, DELETE, DELETECOLLECTION.
    pub writes: f64,
    pub writes_per_function: Option<f64>,
    /// The objects the benchmark applied (what a user writes).
    pub writes_by_benchmark: f64,
    /// The operator's own count (`strata_api_writes_total`, sent); none in
    /// the bare phase. Without its leader election's Lease renewals, with
    /// its dry runs.
    pub writes_by_operator: Option<f64>,
    pub operator_writes_per_function: Option<f64>,
    /// The rest (`writes` and `dry_runs`, less the benchmark's and the
    /// operator's): kube-controller-manager (ReplicaSets, Pods, EndpointSlices,
    /// Endpoints, statuses, Events), the scheduler's bindings, kwok's pod and
    /// node status, and every Lease (Strata's too).
    pub writes_by_others: f64,
    pub others_writes_per_function: Option<f64>,
    /// Mutating requests answered with an error (conflicts among them).
    pub writes_refused: f64,
    /// Dry runs: mutating requests that change nothing (not in `writes`;
    /// in the operator's count, whose they are).
    pub dry_runs: f64,
    pub operator_writes_by_method: BTreeMap<String, f64>,
    /// GETs and LISTs of resources.
    pub reads: f64,
    /// GETs and LISTs by resource and verb, most first.
    pub reads_by_resource: Vec<RequestCount>,
    /// Watch events sent, one per watcher an event reaches (the benchmark's
    /// own watch of what it waits for among them).
    pub watch_events: f64,
    /// Of those, the initial events of new watches (existing objects
    /// listed to a watcher that (re)started, whenever it did).
    pub watch_initial_events: f64,
    /// The other watch events (changes) per function.
    pub watch_events_per_function: Option<f64>,
    pub watch_event_bytes: f64,
    /// CPU seconds the plane's processes (etcd, kube-apiserver,
    /// kube-controller-manager, kube-scheduler, kwok) and the operator
    /// (`strata`) used in the phase: what the machine spent on it.
    pub cpu_seconds: f64,
    pub cpu_seconds_per_function: Option<f64>,
    pub cpu_seconds_by_process: BTreeMap<String, f64>,
    /// The seconds the API server took to answer the phase's requests
    /// (without watches), summed, and by resource and verb, most first.
    pub request_seconds: f64,
    pub request_seconds_by_resource: Vec<RequestSeconds>,
    /// Mutating requests by resource and verb, most first.
    pub writes_by_resource: Vec<RequestCount>,
    /// Watch events by resource, most first.
    pub watch_events_by_resource: Vec<WatchCount>,
}

/// The API server's time on the requests of one resource and verb in one phase.
#[derive(Serialize)]
pub struct RequestSeconds {
    pub resource: String,
    pub verb: String,
    pub seconds: f64,
    /// How many requests took them.
    pub count: f64,
}

/// Requests of one resource and verb in one phase.
#[derive(Serialize)]
pub struct RequestCount {
    pub resource: String,
    pub verb: String,
    pub count: f64,
    /// Of those, answered with an error.
    pub refused: f64,
}

/// Watch events of one resource sent in one phase.
#[derive(Serialize)]
pub struct WatchCount {
    pub resource: String,
    pub events: f64,
    /// Of those, initial events of new watches.
    pub initial: f64,
    pub bytes: f64,
}

/// Writes of one resource in the bare and the Strata phase.
#[derive(Serialize)]
pub struct WriteRow {
    pub resource: String,
    pub verb: String,
    pub bare: f64,
    pub strata: f64,
}

/// The machine: cores, CPU model, memory.
pub fn machine() -> String {
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

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
