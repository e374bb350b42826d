//! The figures of one run, printed as a table.

use std::io::Write as _;

use crate::costs;
use crate::report::{CacheCount, History, PairFigures, PhaseCounts, RecordList, Report, median};

/// Prints the figures as a table.
pub fn print(r: &Report) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "\nStrata scale benchmark on {}", r.machine);
    let _ = writeln!(
        out,
        "{} functions over {} stacks, {} replicas each\n",
        r.functions, r.stacks, r.replicas
    );
    let phase = |name: &str| r.phases.iter().find(|p| p.phase == name);
    let (bare, strata) = (phase("bare"), phase("strata"));
    let rows: [(String, String); 18] = [
        (
            "bare objects Available (b)".into(),
            format!("{:.1} s", r.bare_seconds),
        ),
        (
            "Strata functions Ready (a)".into(),
            format!("{:.1} s", r.strata_seconds),
        ),
        (
            "ratio a/b; the floors the writes and the CPU imply".into(),
            format!(
                "{:.2}; writes {:.2} ({:+.2} above it); CPU {:.2} ({:+.2})",
                r.ratio,
                r.write_ratio,
                r.ratio - r.write_ratio,
                r.cpu_ratio,
                r.ratio - r.cpu_ratio
            ),
        ),
        (
            "writes per function, every writer: bare / Strata".into(),
            format!(
                "{} (ratio {:.2})",
                both(bare, strata, |p| p.writes_per_function, per_function),
                r.write_ratio
            ),
        ),
        (
            "watch events (changes) per function: bare / Strata".into(),
            format!(
                "{} (ratio {:.2})",
                both(bare, strata, |p| p.watch_events_per_function, per_function),
                r.watch_event_ratio
            ),
        ),
        (
            "CPU of the plane and operator per function: bare / Strata".into(),
            format!(
                "{} ms (ratio {:.2}, the floor the machine's work implies)",
                both(bare, strata, |p| p.cpu_seconds_per_function, milliseconds),
                r.cpu_ratio
            ),
        ),
        (
            "  by process: bare / Strata (s)".into(),
            cpu_by_process(bare, strata),
        ),
        (
            "operator CPU to converge".into(),
            format!("{:.1} s", r.operator_cpu_seconds),
        ),
        (
            "NetworkFunction reconciles per function".into(),
            format!("{:.1}", r.reconciles_per_function),
        ),
        (
            "Strata writes per function, its own count".into(),
            format!(
                "{:.2} (design minimum {:.0})",
                r.operator_writes_per_function, r.design_minimum_writes_per_function
            ),
        ),
        (
            "  by the API server's counts of Strata's objects".into(),
            format!("{:.2}", r.strata_writes_per_function),
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
    print_pairs(&mut out, &r.pairs);
    print_costs(&mut out, r);
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
        let _ = writeln!(
            out,
            "  {:<52} {:.1} s",
            format!("bare objects grown to {}", r.scaled_functions),
            r.scale_bare_seconds
        );
        let _ = writeln!(
            out,
            "  {:<52} {:.2} (at N {:.2}; growth {:.2})",
            format!("ratio at {}: Strata / bare", r.scaled_functions),
            r.scale_ratio,
            r.scale_ratio / r.scale_ratio_growth,
            r.scale_ratio_growth
        );
        let kib_per_function = r.rss_steady_mib_at_scale * 1024.0 / r.scaled_functions as f64;
        let _ = writeln!(
            out,
            "  {:<52} {kib_per_function:.1} KiB",
            "  operator RSS per function at scale"
        );
    }
    if let Some(history) = &r.history {
        print_history(&mut out, history);
    }
    print_caches(&mut out, &format!("at N = {}", r.functions), &r.caches_at_n);
    print_caches(
        &mut out,
        &format!("at {}", r.scaled_functions),
        &r.caches_at_scale,
    );
    print_phases(&mut out, r);
    let _ = writeln!(
        out,
        "\n  writes to converge, the Strata phase's most   verb      bare    strata  strata/function"
    );
    for row in r.writes.iter().take(TOP) {
        let _ = writeln!(
            out,
            "  {:<44} {:<8} {:>7} {:>9} {:>8.2}",
            row.resource,
            row.verb,
            row.bare,
            row.strata,
            row.strata / r.functions as f64
        );
    }
    if r.writes.len() > TOP {
        let _ = writeln!(
            out,
            "  ({} more resources and verbs in the JSON)",
            r.writes.len() - TOP
        );
    }
    if let (Some(bare), Some(strata)) = (bare, strata) {
        let _ = writeln!(
            out,
            "\n  watch events to converge, the Strata phase's most         bare    strata  strata/function"
        );
        for row in strata.watch_events_by_resource.iter().take(TOP / 2) {
            let in_bare = bare
                .watch_events_by_resource
                .iter()
                .find(|b| b.resource == row.resource)
                .map_or(0.0, |b| b.events);
            let _ = writeln!(
                out,
                "  {:<53} {:>7} {:>9} {:>8.2}",
                row.resource,
                in_bare,
                row.events,
                row.events / r.functions as f64
            );
        }
    }
    if let (Some(bare), Some(strata)) = (bare, strata) {
        let _ = writeln!(
            out,
            "\n  API server seconds answering (summed), the Strata phase's most   bare    strata  ms/request"
        );
        let _ = writeln!(
            out,
            "  {:<61} {:>6.1} {:>9.1}",
            "every request but watches", bare.request_seconds, strata.request_seconds
        );
        for row in strata.request_seconds_by_resource.iter().take(TOP) {
            let in_bare = bare
                .request_seconds_by_resource
                .iter()
                .find(|b| b.resource == row.resource && b.verb == row.verb)
                .map_or(0.0, |b| b.seconds);
            let _ = writeln!(
                out,
                "  {:<52} {:<8} {:>6.1} {:>9.1} {:>8.1}",
                row.resource,
                row.verb,
                in_bare,
                row.seconds,
                row.seconds * 1000.0 / row.count.max(1.0)
            );
        }
    }
    if !r.idle_writes.is_empty() {
        let _ = writeln!(out, "\n  writes while idle (every writer on the plane):");
        for (what, count) in &r.idle_writes {
            let _ = writeln!(out, "  {what:<46} {count}");
        }
    }
}

/// How many resources (and verbs) the table shows of each breakdown; the
/// JSON has them all.
const TOP: usize = 10;

fn count(v: f64) -> String {
    format!("{v:.0}")
}

/// `figure` of the bare phase and of the Strata phase, each shown by `show`,
/// as "bare / Strata".
fn both(
    bare: Option<&PhaseCounts>,
    strata: Option<&PhaseCounts>,
    figure: fn(&PhaseCounts) -> Option<f64>,
    show: fn(Option<f64>) -> String,
) -> String {
    format!(
        "{} / {}",
        show(bare.and_then(figure)),
        show(strata.and_then(figure))
    )
}

/// Seconds as milliseconds, or "-".
fn milliseconds(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{:.1}", v * 1000.0))
}

fn per_function(v: Option<f64>) -> String {
    v.map_or("-".to_string(), |v| format!("{v:.1}"))
}

/// A row's cell of one phase.
type Cell = fn(&PhaseCounts) -> String;

/// Prints the operator's caches `when`: objects, estimated heap bytes and
/// bytes per object, by kind.
/// Every pair at N, and their medians, when there was more than one.
fn print_pairs(out: &mut impl std::io::Write, pairs: &[PairFigures]) {
    if pairs.len() < 2 {
        return;
    }
    let _ = writeln!(
        out,
        "  pairs at N, each from an empty cluster: bare / Strata; ratio; the floors the writes and the CPU imply; CPU per function"
    );
    for (i, p) in pairs.iter().enumerate() {
        let _ = writeln!(
            out,
            "    {}  {:.1} / {:.1} s; {:.2}; writes {:.2} ({:+.2}), CPU {:.2} ({:+.2}); {:.1} / {:.1} ms",
            i + 1,
            p.bare_seconds,
            p.strata_seconds,
            p.ratio,
            p.write_ratio,
            p.ratio - p.write_ratio,
            p.cpu_ratio,
            p.ratio - p.cpu_ratio,
            p.bare_cpu_ms_per_function,
            p.strata_cpu_ms_per_function,
        );
    }
    let median = |f: fn(&PairFigures) -> f64| median(pairs.iter().map(f).collect());
    let _ = writeln!(
        out,
        "  {:<52} {:.2}; writes {:.2} ({:+.2} above it); CPU {:.2} ({:+.2})",
        format!("median of the {} pairs", pairs.len()),
        median(|p| p.ratio),
        median(|p| p.write_ratio),
        median(|p| p.ratio - p.write_ratio),
        median(|p| p.cpu_ratio),
        median(|p| p.ratio - p.cpu_ratio),
    );
}

/// What one request of each kind cost the API server, and Strata's own
/// requests of those kinds in the Strata phase at those costs.
fn print_costs(out: &mut impl std::io::Write, r: &Report) {
    let Some(first) = r.request_costs.first() else {
        return;
    };
    let _ = writeln!(
        out,
        "  kube-apiserver CPU per request (etcd's), {} of each kind, one kind at a time",
        first.requests
    );
    for c in &r.request_costs {
        let _ = writeln!(
            out,
            "    {:<50} {:.2} ms ({:.2})",
            c.request, c.apiserver_ms, c.etcd_ms
        );
    }
    let cost = |request: &str| {
        r.request_costs
            .iter()
            .find(|c| c.request == request)
            .map_or(0.0, |c| c.apiserver_ms)
    };
    let n = r.functions.max(1) as f64;
    let written = |resource: &str, verb: &str| {
        r.writes
            .iter()
            .find(|w| w.resource == resource && w.verb == verb)
            .map_or((0.0, 0.0), |w| (w.bare / n, w.strata / n))
    };
    let (events_bare, events_strata) = written("events.events.k8s.io", "POST");
    let kinds = [
        (
            written("networkfunctions.strata.dev/status", "APPLY").1,
            cost(costs::STATUS_APPLY),
        ),
        (
            written("deploymentrecords.strata.dev", "POST").1,
            cost(costs::RECORD_CREATE),
        ),
        (
            written("deploymentrecords.strata.dev", "PATCH").1,
            cost(costs::RECORD_CONCLUSION),
        ),
        (
            (events_strata - events_bare).max(0.0),
            cost(costs::EVENT_CREATE),
        ),
        (
            written("networkfunctions.strata.dev", "APPLY").1,
            cost(costs::FUNCTION_APPLY),
        ),
    ];
    let requests: f64 = kinds.iter().map(|(count, _)| count).sum();
    let at_cost: f64 = kinds.iter().map(|(count, ms)| count * ms).sum();
    let phase_cpu = |name: &str| {
        r.phases
            .iter()
            .find(|p| p.phase == name)
            .and_then(|p| p.cpu_seconds_by_process.get("kube-apiserver"))
            .copied()
            .unwrap_or(0.0)
            * 1e3
            / n
    };
    let _ = writeln!(
        out,
        "  {:<52} {requests:.2} writes: {at_cost:.1} ms of kube-apiserver CPU ({:.1} ms at a ConfigMap apply's cost)",
        "Strata's kinds and Events per function, at these costs",
        requests * cost(costs::CONFIG_MAP_APPLY)
    );
    let _ = writeln!(
        out,
        "  {:<52} {:.1} ms per function (bare {:.1}, Strata {:.1})",
        "kube-apiserver CPU, Strata phase over bare phase",
        phase_cpu("strata") - phase_cpu("bare"),
        phase_cpu("bare"),
        phase_cpu("strata")
    );
}

fn print_caches(out: &mut impl std::io::Write, when: &str, caches: &[CacheCount]) {
    if caches.is_empty() {
        return;
    }
    let total: f64 = caches.iter().map(|c| c.bytes).sum();
    let _ = writeln!(
        out,
        "  operator caches {when}: {:.1} MiB estimated heap",
        total / MIB
    );
    for c in caches {
        let each = if c.objects > 0.0 {
            c.bytes / c.objects
        } else {
            0.0
        };
        let _ = writeln!(
            out,
            "    {:<20} {:>7} objects {:>8.1} MiB {:>7.0} B each",
            c.kind,
            c.objects,
            c.bytes / MIB,
            each
        );
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// What the API server counted in each phase, a column each.
fn print_phases(out: &mut impl std::io::Write, r: &Report) {
    if r.phases.is_empty() {
        return;
    }
    let _ = write!(out, "\n  {:<50}", "the API server's counts, per phase");
    for p in &r.phases {
        let _ = write!(out, " {:>8}", p.phase);
    }
    let _ = writeln!(out);
    let rows: [(&str, Cell); 17] = [
        ("seconds", |p| format!("{:.1}", p.seconds)),
        ("  of which from convergence until quiet", |p| {
            p.quiet_after_seconds
                .map_or("-".to_string(), |s| format!("{s:.1}"))
        }),
        ("functions (what per function divides by)", |p| {
            p.functions.to_string()
        }),
        ("writes: mutating requests, every writer", |p| {
            count(p.writes)
        }),
        ("  per function", |p| per_function(p.writes_per_function)),
        ("  by the benchmark (its applies)", |p| {
            count(p.writes_by_benchmark)
        }),
        ("  by the operator (strata_api_writes_total)", |p| {
            p.writes_by_operator.map_or("-".to_string(), count)
        }),
        ("    per function", |p| {
            per_function(p.operator_writes_per_function)
        }),
        ("  by the rest: controllers, scheduler, kwok, leases", |p| {
            count(p.writes_by_others)
        }),
        ("    per function", |p| {
            per_function(p.others_writes_per_function)
        }),
        ("  refused (4xx, 5xx)", |p| count(p.writes_refused)),
        ("dry runs (not in writes; the operator's)", |p| {
            count(p.dry_runs)
        }),
        ("reads: GET, LIST", |p| count(p.reads)),
        ("watch events sent", |p| count(p.watch_events)),
        ("  of which initial events of new watches", |p| {
            count(p.watch_initial_events)
        }),
        ("  the others (changes) per function", |p| {
            per_function(p.watch_events_per_function)
        }),
        ("  MiB", |p| {
            format!("{:.1}", p.watch_event_bytes / 1024.0 / 1024.0)
        }),
    ];
    for (what, value) in rows {
        let _ = write!(out, "  {what:<50}");
        for p in &r.phases {
            let _ = write!(out, " {:>8}", value(p));
        }
        let _ = writeln!(out);
    }
}

/// The history phase: records over time.
fn print_history(out: &mut impl std::io::Write, h: &History) {
    let _ = writeln!(
        out,
        "\n  history: {} functions × {} rollouts ({} replicas), retention {}, {:.0} s in all",
        h.functions,
        h.rollouts,
        h.replicas,
        h.record_retention
            .map_or("default".to_string(), |r| r.to_string()),
        h.phase_seconds
    );
    let mb = |b: f64| b / 1024.0 / 1024.0;
    let list = |l: &Option<RecordList>| {
        l.as_ref().map_or("-".to_string(), |l| {
            format!(
                "{} records: kubectl {:.2} s, LIST {:.3} s",
                l.records, l.kubectl_seconds, l.list_seconds
            )
        })
    };
    let etcd = match (h.etcd_in_use_bytes_before, h.etcd_in_use_bytes_after) {
        (Some(before), Some(after)) => format!(
            "{:.1} -> {:.1} MiB, {} per record",
            mb(before),
            mb(after),
            h.etcd_bytes_per_record
                .map_or("-".to_string(), |b| format!("{:.0} B", b))
        ),
        _ => "-".to_string(),
    };
    let rows: [(String, String); 9] = [
        (
            "DeploymentRecords before / after".into(),
            format!("{} / {}", h.records_before, h.records_after),
        ),
        (
            format!(
                "ConfigMaps before / after{}",
                if h.config_changes {
                    " (config changed too)"
                } else {
                    ""
                }
            ),
            format!("{} / {}", h.config_maps_before, h.config_maps_after),
        ),
        (
            "round of rollouts: first / last".into(),
            format!(
                "{:.1} / {:.1} s (last/first {:.2})",
                h.rounds.first().map_or(0.0, |r| r.seconds),
                h.rounds.last().map_or(0.0, |r| r.seconds),
                h.last_over_first
            ),
        ),
        (
            "operator RSS before / after (peak)".into(),
            format!(
                "{:.1} / {:.1} MiB ({:.1})",
                h.rss_mib_before, h.rss_mib_after, h.rss_peak_mib_after
            ),
        ),
        (
            "record LISTs / GETs per rollout".into(),
            format!(
                "{:.2} / {:.2}",
                h.record_lists_per_rollout, h.record_gets_per_rollout
            ),
        ),
        (
            format!(
                "get dr -l {} before",
                h.list_before.as_ref().map_or("", |l| l.selector.as_str())
            ),
            list(&h.list_before),
        ),
        ("  after".into(), list(&h.list_after)),
        ("etcd in use, compacted".into(), etcd),
        (
            "a record as JSON".into(),
            format!("{:.0} B", h.record_json_bytes),
        ),
    ];
    for (what, value) in rows {
        let _ = writeln!(out, "  {what:<52} {value}");
    }
}

/// Each process's CPU seconds in the bare phase and in the Strata phase,
/// the most in the Strata phase first.
fn cpu_by_process(bare: Option<&PhaseCounts>, strata: Option<&PhaseCounts>) -> String {
    let (Some(bare), Some(strata)) = (bare, strata) else {
        return "-".into();
    };
    let mut processes: Vec<(&String, &f64)> = strata.cpu_seconds_by_process.iter().collect();
    processes.sort_by(|a, b| b.1.total_cmp(a.1));
    processes
        .into_iter()
        .map(|(process, seconds)| {
            let before = bare
                .cpu_seconds_by_process
                .get(process)
                .copied()
                .unwrap_or(0.0);
            format!("{process} {before:.1} / {seconds:.1}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}
