//! What each phase costs the API server: its own counts of the requests it
//! served (by resource and verb) and of the watch events it sent, read
//! before a phase and after it, once the plane has gone quiet, with the
//! benchmark's applies and the operator's own count of its writes set apart.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Client;
use strata_testkit::{ApiServerCounters, RequestCounts, apiserver_counters, wait_for_every};

use crate::measure::{MeasuredOperator, plane_cpu_seconds};
use crate::report::{PhaseCounts, Report, RequestCount, RequestSeconds, WatchCount, WriteRow};

/// Writes that are no phase's: every component renews its Lease on a clock.
const LEASES: &str = "leases.coordination.k8s.io";

/// A phase is over when a poll this long after the previous one finds no
/// write but Lease renewals.
const QUIET: Duration = Duration::from_secs(1);

/// How long a phase's trailing writes may go on before the phase is counted
/// as it is.
const QUIET_WITHIN: Duration = Duration::from_secs(60);

/// A phase's start: the clock, the API server's counters and the operator's
/// count of its writes (none when no operator runs yet: then its count from
/// its own start is the phase's).
pub struct PhaseWindow {
    started: Instant,
    apiserver: ApiServerCounters,
    operator: BTreeMap<String, f64>,
    /// The CPU seconds of each process of the plane and of the operator.
    cpu: BTreeMap<String, f64>,
}

/// The name the operator's CPU is reported by, next to the plane's processes.
const OPERATOR: &str = "strata";

/// The CPU seconds each process of the plane, and the operator if it runs,
/// has used so far.
fn cpu_now(operator: Option<&MeasuredOperator>) -> BTreeMap<String, f64> {
    let mut cpu = plane_cpu_seconds();
    if let Some(operator) = operator {
        cpu.insert(OPERATOR.to_string(), operator.cpu_seconds());
    }
    cpu
}

/// What one phase cost the API server: its counters' growth, and the
/// figures for the report.
pub struct PhaseCost {
    pub apiserver: ApiServerCounters,
    pub counts: PhaseCounts,
}

impl PhaseWindow {
    pub async fn open(client: &Client, operator: Option<&MeasuredOperator>) -> Self {
        let writes = match operator {
            Some(operator) => operator.api_writes().await,
            None => BTreeMap::new(),
        };
        Self {
            started: Instant::now(),
            apiserver: apiserver_counters(client).await,
            operator: writes,
            cpu: cpu_now(operator),
        }
    }

    /// Ends the phase `name` once the plane is quiet: the writes that follow
    /// convergence (the controllers' Events, EndpointSlices, statuses) are
    /// the phase's. `functions` is what "per function" divides by (0:
    /// nothing per function), `applied` the objects the benchmark applied
    /// in it, `operator` the operator running at its end.
    pub async fn close(
        self,
        client: &Client,
        name: &str,
        functions: usize,
        applied: usize,
        operator: Option<&MeasuredOperator>,
    ) -> PhaseCost {
        let quiet_after = quiet(client, name).await;
        let mut cost = self
            .close_now(client, name, functions, applied, operator)
            .await;
        cost.counts.quiet_after_seconds = quiet_after;
        cost
    }

    /// Ends the phase `name` at once (a fixed window: idleness).
    pub async fn close_now(
        self,
        client: &Client,
        name: &str,
        functions: usize,
        applied: usize,
        operator: Option<&MeasuredOperator>,
    ) -> PhaseCost {
        let seconds = self.started.elapsed().as_secs_f64();
        // The operator first: what it counted has reached the API server by
        // the time the API server is read.
        let by_operator = match operator {
            Some(operator) => {
                let after = operator.api_writes().await;
                let sent = after
                    .iter()
                    .map(|(method, v)| {
                        let before = self.operator.get(method).copied().unwrap_or(0.0);
                        (method.clone(), v - before)
                    })
                    .filter(|(_, v)| *v > 0.0)
                    .collect();
                Some(sent)
            }
            None => None,
        };
        // A process that was not there at the start (the operator started
        // in the phase) counts from its own start.
        let cpu: BTreeMap<String, f64> = cpu_now(operator)
            .into_iter()
            .map(|(process, after)| {
                let before = self.cpu.get(&process).copied().unwrap_or(0.0);
                (process, after - before)
            })
            .collect();
        let apiserver = apiserver_counters(client).await.since(&self.apiserver);
        let mut counts = phase_counts(&apiserver, name, seconds, functions, applied, by_operator);
        counts.cpu_seconds = cpu.values().sum::<f64>() + 0.0;
        counts.cpu_seconds_per_function =
            (functions > 0).then(|| counts.cpu_seconds / functions as f64);
        counts.cpu_seconds_by_process = cpu;
        PhaseCost { apiserver, counts }
    }
}

/// Polls the API server's counters every [`QUIET`] until one poll finds no
/// write since the previous one but Lease renewals. Returns when, from the
/// call, that quiet interval began (the writes ended within the interval
/// before it), or None, saying so, when writes still go on after
/// [`QUIET_WITHIN`].
async fn quiet(client: &Client, phase: &str) -> Option<f64> {
    let started = Instant::now();
    let previous: Mutex<Option<(ApiServerCounters, Duration)>> = Mutex::new(None);
    let previous = &previous;
    let probe = || async move {
        let now = apiserver_counters(client).await;
        let at = started.elapsed();
        let last = previous
            .lock()
            .expect("not poisoned")
            .replace((now.clone(), at));
        let Some((before, since)) = last else {
            return Err("the first sample".to_string());
        };
        let writes: f64 = now
            .since(&before)
            .writes()
            .iter()
            .filter(|((resource, _), _)| resource != LEASES)
            .map(|(_, v)| v)
            .sum();
        if writes == 0.0 {
            Ok(Some(since.as_secs_f64()))
        } else if at >= QUIET_WITHIN {
            println!("    {phase}: still {writes} writes a second after {QUIET_WITHIN:?}");
            Ok(None)
        } else {
            Err(format!("{writes} writes in the last {QUIET:?}"))
        }
    };
    let within = QUIET_WITHIN + 10 * QUIET;
    wait_for_every(QUIET, within, "the plane to go quiet", probe).await
}

/// The figures of phase `name` from what the API server's counters grew by
/// in it, with the benchmark's applies and the operator's count apart.
fn phase_counts(
    apiserver: &ApiServerCounters,
    name: &str,
    seconds: f64,
    functions: usize,
    applied: usize,
    by_operator: Option<BTreeMap<String, f64>>,
) -> PhaseCounts {
    let writes = apiserver.total_writes();
    let applied = applied as f64;
    let operator_writes = by_operator.as_ref().map(|m| m.values().sum::<f64>() + 0.0);
    // The operator's count has its dry runs in it (a Stack's objects are
    // applied as a dry run first), which the API server counts apart; no
    // other client on the plane makes dry runs.
    let dry_runs = apiserver.total_dry_runs();
    let others = writes + dry_runs - applied - operator_writes.unwrap_or(0.0);
    let per_function = |v: f64| (functions > 0).then(|| v / functions as f64);
    let mut watch_events_by_resource: Vec<WatchCount> = apiserver
        .watch_events
        .iter()
        .map(|(resource, events)| WatchCount {
            resource: resource.clone(),
            events: *events,
            initial: apiserver
                .watch_initial_events
                .get(resource)
                .copied()
                .unwrap_or(0.0),
            bytes: apiserver
                .watch_event_bytes
                .get(resource)
                .copied()
                .unwrap_or(0.0),
        })
        .collect();
    watch_events_by_resource.sort_by(|a, b| b.events.total_cmp(&a.events));
    PhaseCounts {
        phase: name.to_string(),
        seconds,
        quiet_after_seconds: None,
        functions,
        writes,
        writes_per_function: per_function(writes),
        writes_by_benchmark: applied,
        writes_by_operator: operator_writes,
        operator_writes_per_function: operator_writes.and_then(per_function),
        writes_by_others: others,
        others_writes_per_function: per_function(others),
        dry_runs,
        writes_refused: apiserver.total_refused_writes(),
        operator_writes_by_method: by_operator.unwrap_or_default(),
        reads: apiserver.total_reads(),
        reads_by_resource: by_resource(apiserver, apiserver.reads()),
        watch_events: apiserver.total_watch_events(),
        watch_initial_events: apiserver.total_watch_initial_events(),
        watch_events_per_function: per_function(
            apiserver.total_watch_events() - apiserver.total_watch_initial_events(),
        ),
        watch_event_bytes: apiserver.total_watch_event_bytes(),
        // What the processes used is read off them, not the API server (`close_now`).
        cpu_seconds: 0.0,
        cpu_seconds_per_function: None,
        cpu_seconds_by_process: BTreeMap::new(),
        request_seconds: apiserver.request_seconds.values().sum::<f64>() + 0.0,
        request_seconds_by_resource: request_seconds(apiserver),
        writes_by_resource: by_resource(apiserver, apiserver.writes()),
        watch_events_by_resource,
    }
}

/// The API server's time by resource and verb, the most first.
fn request_seconds(apiserver: &ApiServerCounters) -> Vec<RequestSeconds> {
    let mut rows: Vec<RequestSeconds> = apiserver
        .request_seconds
        .iter()
        .map(|(key, seconds)| RequestSeconds {
            resource: key.0.clone(),
            verb: key.1.clone(),
            seconds: *seconds,
            count: apiserver.requests.get(key).copied().unwrap_or(0.0),
        })
        .collect();
    rows.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    rows
}

/// `counts` as rows, the most first, with how many of each were refused.
fn by_resource(apiserver: &ApiServerCounters, counts: RequestCounts) -> Vec<RequestCount> {
    let mut rows: Vec<RequestCount> = counts
        .into_iter()
        .map(|(key, count)| RequestCount {
            refused: apiserver.refused.get(&key).copied().unwrap_or(0.0),
            resource: key.0,
            verb: key.1,
            count,
        })
        .collect();
    rows.sort_by(|a, b| b.count.total_cmp(&a.count));
    rows
}

/// Writes of the objects Strata owns or writes: its own kinds, the children
/// it applies, and Events (which the bare controllers write too).
pub fn strata_object(resource: &str, verb: &str) -> bool {
    (resource.contains("strata.dev") && !benchmark_apply(resource, verb))
        || (verb == "APPLY" && ["deployments.apps", "services", "configmaps"].contains(&resource))
}

/// The benchmark's own applies of Stacks and NetworkFunctions (the user's writes).
fn benchmark_apply(resource: &str, verb: &str) -> bool {
    verb == "APPLY" && ["stacks.strata.dev", "networkfunctions.strata.dev"].contains(&resource)
}

pub fn account_writes(report: &mut Report, bare: &RequestCounts, strata: &RequestCounts, n: usize) {
    let keys: BTreeSet<_> = bare.keys().chain(strata.keys()).collect();
    for key in keys {
        report.writes.push(WriteRow {
            resource: key.0.clone(),
            verb: key.1.clone(),
            bare: bare.get(key).copied().unwrap_or(0.0),
            strata: strata.get(key).copied().unwrap_or(0.0),
        });
    }
    report.writes.sort_by(|a, b| {
        b.strata
            .total_cmp(&a.strata)
            .then(b.bare.total_cmp(&a.bare))
    });
    let own: f64 = strata
        .iter()
        .filter(|((r, verb), _)| strata_object(r, verb))
        .map(|(_, v)| v)
        .sum();
    let events = |c: &RequestCounts| {
        c.iter()
            .filter(|((r, _), _)| r.starts_with("events"))
            .map(|(_, v)| v)
            .sum::<f64>()
    };
    let n = n as f64;
    report.strata_writes_per_function = (own + (events(strata) - events(bare)).max(0.0)) / n;
    // Per function: three children applied; one record created (with its
    // Progressing status) and its outcome written as Succeeded; the
    // function's status written when the rollout starts and when it is
    // Ready; one Event announcing the rollout.
    report.design_minimum_writes_per_function = 8.0;
    let total = |c: &RequestCounts| {
        c.iter()
            .filter(|((r, verb), _)| !benchmark_apply(r, verb))
            .map(|(_, v)| v)
            .sum::<f64>()
    };
    report.extra_writes_per_function_vs_bare = (total(strata) - total(bare)) / n;
}
