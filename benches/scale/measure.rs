//! What is read off the operator's process: readiness, reconciles, its own
//! count of its writes, CPU, memory, shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use strata_testkit::{Operator, http_get, metric_sum, operator_binary, wait_for_every};

use crate::Result;
use crate::report::CacheCount;

/// The operator as it runs in production (leader election on, the default
/// resync), started by the test kit, with the figures read off its process.
pub struct MeasuredOperator {
    process: Operator,
    started: Instant,
}

impl MeasuredOperator {
    /// `strata run` for `ns`, keeping `retention` DeploymentRecords per
    /// function (None: its default); `STRATA_BENCH_OPERATOR` runs another
    /// build (e.g. a baseline) instead of this one.
    pub fn start(ns: &str, retention: Option<usize>) -> Self {
        let retention = retention.map(|r| r.to_string());
        let env: Vec<(&str, &str)> = retention
            .iter()
            .map(|r| ("STRATA_RECORD_RETENTION", r.as_str()))
            .collect();
        Self::start_with(ns, &env)
    }

    /// Like [`MeasuredOperator::start`], with `env` added last (a shard's
    /// settings, namespaces beyond `ns`).
    pub fn start_with(ns: &str, env: &[(&str, &str)]) -> Self {
        let binary = std::env::var_os("STRATA_BENCH_OPERATOR")
            .map(PathBuf::from)
            .unwrap_or_else(operator_binary);
        let started = Instant::now();
        let defaults = [
            ("STRATA_LEADER_ELECTION", "true"),
            ("STRATA_LEASE_NAMESPACE", ns),
            ("STRATA_IDENTITY", "bench"),
            ("STRATA_LOG_LEVEL", "info"),
        ];
        let env: Vec<(&str, &str)> = defaults.iter().chain(env).copied().collect();
        let process = Operator::spawn(&binary, ns, &env);
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

    /// The operator's own count of the writes it sent (`strata_api_writes_total`
    /// by method, outcome `sent`; fenced writes never reach the API server).
    /// Its leader election's Lease requests use a client of their own and
    /// are not in it.
    pub async fn api_writes(&self) -> BTreeMap<String, f64> {
        let (code, body) = self.process.get("/metrics").await;
        if code != 200 {
            return BTreeMap::new();
        }
        ["POST", "PUT", "PATCH", "DELETE"]
            .into_iter()
            .map(|method| {
                let sent = metric_sum(
                    &body,
                    "strata_api_writes_total",
                    &[("method", method), ("outcome", "sent")],
                );
                (method.to_string(), sent)
            })
            .filter(|(_, sent)| *sent > 0.0)
            .collect()
    }

    /// The operator's caches by kind, most bytes first: objects and
    /// estimated heap bytes (`strata_cached_objects`, `strata_cached_bytes`).
    pub async fn caches(&self) -> Vec<CacheCount> {
        let (code, body) = self.process.get("/metrics").await;
        if code != 200 {
            return Vec::new();
        }
        let kinds: BTreeSet<&str> = body
            .lines()
            .filter_map(|l| l.strip_prefix("strata_cached_objects{kind=\""))
            .filter_map(|l| l.split_once('"').map(|(kind, _)| kind))
            .collect();
        let mut caches: Vec<CacheCount> = kinds
            .into_iter()
            .map(|kind| CacheCount {
                kind: kind.to_string(),
                objects: metric_sum(&body, "strata_cached_objects", &[("kind", kind)]),
                bytes: metric_sum(&body, "strata_cached_bytes", &[("kind", kind)]),
            })
            .collect();
        caches.sort_by(|a, b| b.bytes.total_cmp(&a.bytes));
        caches
    }

    /// CPU time (user and system) the process has used, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        process_cpu_seconds(self.process.pid()).unwrap_or(0.0)
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

/// CPU time (user and system) process `pid` has used, in seconds; None when
/// there is no such process.
pub fn process_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command (which may hold spaces), from field 3 on.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    // utime and stime are fields 14 and 15; clock ticks are 1/100 s on Linux.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// The CPU time each process of the plane (etcd, kube-apiserver,
/// kube-controller-manager, kube-scheduler, kwok) has used, in seconds, by
/// the name of its pid file under `$STRATA_PLANE_DIR/pids`; empty when the
/// plane's pids are not there.
pub fn plane_cpu_seconds() -> BTreeMap<String, f64> {
    let Some(dir) = std::env::var_os("STRATA_PLANE_DIR") else {
        return BTreeMap::new();
    };
    let Ok(entries) = std::fs::read_dir(PathBuf::from(dir).join("pids")) else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let path = entry.path();
            let component = path
                .file_name()?
                .to_str()?
                .strip_suffix(".pid")?
                .to_string();
            let pid = std::fs::read_to_string(&path).ok()?.trim().parse().ok()?;
            Some((component, process_cpu_seconds(pid)?))
        })
        .collect()
}
