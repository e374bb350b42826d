//! What is read off the operator's process (readiness, reconciles, CPU,
//! memory, shutdown) and off the API server (its write counters).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kube::Client;
use strata_testkit::{Operator, http_get, metric_sum, operator_binary, wait_for_every};

use crate::Result;
use crate::report::{Report, WriteRow};

/// The operator as it runs in production (leader election on, the default
/// resync), started by the test kit, with the figures read off its process.
pub struct MeasuredOperator {
    process: Operator,
    started: Instant,
}

impl MeasuredOperator {
    /// `strata run` for `ns`; `STRATA_BENCH_OPERATOR` runs another build
    /// (e.g. a baseline) instead of this one.
    pub fn start(ns: &str) -> Self {
        let binary = std::env::var_os("STRATA_BENCH_OPERATOR")
            .map(PathBuf::from)
            .unwrap_or_else(operator_binary);
        let started = Instant::now();
        let process = Operator::spawn(
            &binary,
            ns,
            &[
                ("STRATA_LEADER_ELECTION", "true"),
                ("STRATA_LEASE_NAMESPACE", ns),
                ("STRATA_IDENTITY", "bench"),
                ("STRATA_LOG_LEVEL", "info"),
            ],
        );
        Self { process, started }
    }

    /// Waits until it leads and is ready; seconds since the start.
    pub async fn wait_ready(&mut self, within: Duration) -> f64 {
        let addr = self.process.metrics_addr().await;
        wait_for_every(
            Duration::from_millis(10),
            within,
            "the operator to lead and be ready",
            || async move {
                let (code, body) = http_get(addr, "/readyz");
                body.starts_with("ready: leading")
                    .then_some(())
                    .ok_or(format!("/readyz: {code} {body}"))
            },
        )
        .await;
        self.started.elapsed().as_secs_f64()
    }

    /// Seconds from the start to ready, and to the first finished reconcile.
    pub async fn wait_first_reconcile(&mut self, within: Duration) -> (f64, f64) {
        let ready = self.wait_ready(within).await;
        let this = &*self;
        wait_for_every(
            Duration::from_millis(5),
            within,
            "the first NetworkFunction reconcile",
            || async move { (this.reconciles().await > 0.0).then_some(()) },
        )
        .await;
        (ready, self.started.elapsed().as_secs_f64())
    }

    /// Waits until `n` NetworkFunction reconciles have finished.
    pub async fn wait_reconciled(&mut self, n: usize, within: Duration) {
        let this = &*self;
        wait_for_every(
            Duration::from_millis(100),
            within,
            &format!("{n} NetworkFunction reconciles after a restart"),
            || async move {
                let done = this.reconciles().await;
                (done >= n as f64)
                    .then_some(())
                    .ok_or(format!("{done} reconciles"))
            },
        )
        .await;
    }

    /// `strata_reconcile_total` of NetworkFunctions, over every result.
    pub async fn reconciles(&self) -> f64 {
        let (code, body) = self.process.get("/metrics").await;
        if code != 200 {
            return 0.0;
        }
        metric_sum(
            &body,
            "strata_reconcile_total",
            &[("kind", "NetworkFunction")],
        )
    }

    /// CPU time (user and system) the process has used, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.process.pid()))
            .unwrap_or_default();
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
    pub fn memory_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.pid()))
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
    pub async fn terminate(&mut self, within: Duration) -> Result<f64> {
        let started = Instant::now();
        self.process.terminate();
        let status = self.process.wait_exit(within).await;
        if !status.success() {
            return Err(format!("the operator exited with {status}").into());
        }
        Ok(started.elapsed().as_secs_f64())
    }
}

/// Counter values of `apiserver_request_total` by (resource, verb); dry runs
/// and reads are left out.
pub type Counts = BTreeMap<(String, String), f64>;

const WRITE_VERBS: &[&str] = &[
    "POST",
    "PUT",
    "PATCH",
    "APPLY",
    "DELETE",
    "DELETECOLLECTION",
];

pub async fn scrape(client: &Client) -> Result<Counts> {
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

pub fn writes(before: &Counts, after: &Counts) -> Counts {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
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

pub fn account_writes(report: &mut Report, bare: &Counts, strata: &Counts, n: usize) {
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
