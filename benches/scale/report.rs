//! The figures of one run: printed as a table, written as JSON.

use std::collections::BTreeMap;
use std::io::Write as _;

use serde::Serialize;

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
    pub writes: Vec<WriteRow>,
    pub strata_writes_per_function: f64,
    pub reconciles_per_function: f64,
    pub operator_cpu_seconds: f64,
    pub design_minimum_writes_per_function: f64,
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

/// Prints the figures as a table.
pub fn print(r: &Report) {
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
