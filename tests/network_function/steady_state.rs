//! A converged function costs no write request: its periodic resync reads
//! caches and live metadata, and writes nothing.
//!
//! How it is observed: the operator runs with JSON logs and kube-client's
//! request tracing on (`kube_client=debug`), which logs one `requesting`
//! event per HTTP request inside an `HTTP` span carrying `http.method` and
//! `http.url` (and, inside a reconcile, the reconcile span's kind and name).
//! The metrics endpoint counts reconciles. Once the function and its Stack
//! have converged, the test takes a mark in the log, then waits until the
//! operator has reconciled the function at least twice and the Stack at
//! least once more and more than one resync interval has passed, so the
//! window holds at least one resync-triggered reconcile of each. No request
//! logged after the mark may be a POST, PUT, PATCH or DELETE.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{DEADLINE, Fixture, pinned_image};
use strata_testkit::wait_for;

/// The resync interval of the operator the tests run (see `Operator::start`).
const RESYNC: Duration = Duration::from_secs(10);

/// `strata_reconcile_total{kind, result}` from the metrics endpoint at
/// `addr` (0 when the series does not exist yet).
pub(super) fn reconciles(addr: SocketAddr, kind: &str, result: &str) -> Result<u64, String> {
    let series = format!("strata_reconcile_total{{kind=\"{kind}\",result=\"{result}\"}} ");
    Ok(metrics(addr)?
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64))
}

/// Every `strata_reconcile_total` series of a failed reconcile, with its count.
pub(super) fn failed_reconciles(addr: SocketAddr) -> Result<Vec<String>, String> {
    Ok(metrics(addr)?
        .lines()
        .filter(|l| l.starts_with("strata_reconcile_total{") && !l.contains("result=\"success\""))
        .map(str::to_string)
        .collect())
}

/// The text of the metrics endpoint at `addr`.
fn metrics(addr: SocketAddr) -> Result<String, String> {
    // A small one-shot request to a local process: a blocking socket with a timeout.
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut body = String::new();
    stream
        .read_to_string(&mut body)
        .map_err(|e| e.to_string())?;
    Ok(body)
}

/// The JSON log lines of `log` after byte `mark` (other lines are skipped).
fn lines_after(log: &str, mark: usize) -> Vec<Value> {
    log.get(mark..)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Whether the log line is kube-client's record of making a request.
fn is_request(line: &Value) -> bool {
    line["fields"]["message"] == "requesting" && line["span"]["http.method"].is_string()
}

/// A write request, described (when, the fields of the spans it was made
/// in: method, URL, and which reconcile); `None` for reads and other lines.
fn write_request(line: &Value) -> Option<String> {
    let method = line["span"]["http.method"].as_str()?;
    if !is_request(line) || matches!(method, "GET" | "HEAD" | "OPTIONS") {
        return None;
    }
    Some(format!(
        "{} {} in {}",
        line["timestamp"].as_str().unwrap_or_default(),
        line["span"],
        line["spans"]
    ))
}

#[tokio::test]
async fn a_converged_function_costs_no_writes_per_resync() {
    if !strata_testkit::plane_available() {
        return;
    }
    let t = Fixture::start_with(
        "nf-steady",
        &[
            ("STRATA_LOG_FORMAT", "json"),
            ("STRATA_LOG_LEVEL", "info,strata=debug,kube_client=debug"),
        ],
    )
    .await;
    let metrics = t.operator.metrics_addr().await;
    t.apply_stack("edge", "1.0.0", json!({})).await;
    t.apply_function(
        "upf",
        json!({
            "version": "2.3.1",
            "image": pinned_image("upf"),
            "stackRef": {"name": "edge"},
            "replicas": 2,
            "ports": [{"name": "gtpu", "port": 2152, "protocol": "UDP"}],
            "env": [{"name": "MODE", "value": "edge"}],
            "config": {"upf.yaml": "mode: edge\n"},
            "stackOutputs": true,
        }),
    )
    .await;

    // Converged: the function Ready with its rollout recorded as Succeeded,
    // the stack Ready and counting it as a consumer on its current version.
    let upf = t.function_ready_on("upf", "1.0.0").await;
    t.stack_ready("edge", "1.0.0").await;
    let record = upf.status.clone().unwrap().deployed_with.unwrap().record;
    wait_for(DEADLINE, "the stack to count its consumer", || async {
        let stack = t.stacks.get("edge").await.map_err(|e| e.to_string())?;
        let consumers = stack.status.and_then(|s| s.consumers);
        match &consumers {
            Some(c) if c.total == 1 && c.on_current_version == 1 => Ok(()),
            _ => Err(format!("consumers: {consumers:?}")),
        }
    })
    .await;
    let outcome = t
        .records
        .get(&record)
        .await
        .unwrap()
        .status
        .unwrap()
        .outcome;
    assert_eq!(outcome, strata::api::Outcome::Succeeded);

    let mark = t.operator.logs().len();
    let since = Instant::now();
    let functions_before = reconciles(metrics, "NetworkFunction", "success").unwrap();
    let stacks_before = reconciles(metrics, "Stack", "success").unwrap();
    let failed_before = failed_reconciles(metrics).unwrap();
    let window = wait_for(
        DEADLINE,
        "two reconciles of the function, one of the stack, and a full resync interval",
        || async {
            let functions = reconciles(metrics, "NetworkFunction", "success")? - functions_before;
            let stacks = reconciles(metrics, "Stack", "success")? - stacks_before;
            let elapsed = since.elapsed();
            let state =
                format!("{functions} function and {stacks} stack reconciles in {elapsed:?}");
            let done = functions >= 2 && stacks >= 1 && elapsed > RESYNC + Duration::from_secs(1);
            if done { Ok(state) } else { Err(state) }
        },
    )
    .await;
    let log = t.operator.logs();
    assert!(
        lines_after(&log, 0).iter().any(is_request),
        "the log shows no request at all (not even the initial lists): is kube-client's \
         request tracing on?"
    );
    let lines = lines_after(&log, mark);
    let requests = lines.iter().filter(|l| is_request(l)).count();
    let writes: Vec<String> = lines.iter().filter_map(write_request).collect();
    eprintln!(
        "steady state: {window}: {requests} requests, {} writes",
        writes.len()
    );
    assert!(
        writes.is_empty(),
        "a converged function must cost no writes; the operator made:\n{}",
        writes.join("\n")
    );
    assert_eq!(
        failed_reconciles(metrics).unwrap(),
        failed_before,
        "no reconcile may fail at steady state"
    );
    t.finish().await;
}
