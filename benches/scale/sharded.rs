//! `--shards S`: the same functions reconciled by one replica, then by S
//! shard replicas, in the same run. Each set lives in its own namespaces
//! (`--namespaces`, one stack each), since shards divide namespaces; each
//! starts from nothing. Figures per set: the time from the first apply to
//! every function Ready, each replica's resident memory once converged, and
//! Strata's writes per function (the replicas' own counts summed).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::{Api, Client, ResourceExt, runtime::watcher};
use serde::Serialize;
use strata::api::NetworkFunction;
use strata_testkit::TestNamespace;

use crate::Result;
use crate::measure::MeasuredOperator;
use crate::options::Options;
use crate::workload::{Object, STACK_VERSION, apply_all, function, stack};

/// The label that tells the two sets of functions apart.
const SET: &str = "bench.strata.dev/set";

/// What one set measured.
#[derive(Serialize, Default, Debug)]
pub struct SetReport {
    pub replicas: u32,
    pub functions: usize,
    pub namespaces: usize,
    pub seconds_to_ready: f64,
    /// Each replica's (peak, steady) resident memory, MiB.
    pub rss_mib: Vec<(f64, f64)>,
    pub writes_per_function: f64,
    pub cpu_seconds: Vec<f64>,
}

#[derive(Serialize, Default, Debug)]
pub struct Report {
    pub machine: String,
    pub one_replica: SetReport,
    pub sharded: SetReport,
}

pub async fn run(client: &Client, options: &Options, machine: String) -> Result<Report> {
    let mut report = Report {
        machine,
        ..Report::default()
    };
    report.one_replica = measure(client, options, "one", 1).await?;
    report.sharded = measure(client, options, "sharded", options.shards).await?;
    Ok(report)
}

/// Applies the functions in namespaces of their own and measures `shards`
/// replicas (one per shard) bringing them to Ready.
async fn measure(client: &Client, options: &Options, set: &str, shards: u32) -> Result<SetReport> {
    let count = options.namespaces.max(1);
    println!(
        "--- {set}: {} functions in {count} namespaces, {shards} replica(s)",
        options.functions
    );
    let prefix = format!("bench-{set}");
    let namespaces =
        futures::future::join_all((0..count).map(|_| TestNamespace::create(client, &prefix))).await;
    let names: Vec<String> = namespaces.iter().map(|ns| ns.name().to_string()).collect();
    let watched = names.join(",");
    let mut replicas: Vec<MeasuredOperator> = (0..shards)
        .map(|shard| {
            MeasuredOperator::start_with(
                &names[0],
                &[
                    ("STRATA_NAMESPACES", &watched),
                    ("STRATA_SHARDS", &shards.to_string()),
                    ("STRATA_SHARD", &shard.to_string()),
                    ("STRATA_IDENTITY", &format!("bench-{shard}")),
                ],
            )
        })
        .collect();
    for replica in &mut replicas {
        replica.wait_ready(Duration::from_secs(120)).await;
    }
    let ready = wait_ready(client, set, options.functions, options.timeout());
    let started = Instant::now();
    let applying = async {
        for (i, ns) in names.iter().enumerate() {
            let mut objects = vec![Object::Stack(stack(0, STACK_VERSION))];
            objects.extend((i..options.functions).step_by(count).map(|f| {
                let mut nf = function(f, 1, options.scale_replicas);
                nf["metadata"]["labels"] = serde_json::json!({SET: set});
                Object::Function(nf)
            }));
            apply_all(client, ns, objects, options.apply_concurrency).await;
        }
    };
    let (_, ready) = futures::join!(applying, ready);
    ready?;
    let seconds_to_ready = started.elapsed().as_secs_f64();
    // A short quiet spell before reading the steady size.
    tokio::time::sleep(Duration::from_secs(options.idle_seconds.min(15))).await;
    let mut writes = 0.0;
    let mut report = SetReport {
        replicas: shards,
        functions: options.functions,
        namespaces: count,
        seconds_to_ready,
        ..SetReport::default()
    };
    for replica in &mut replicas {
        writes += replica.api_writes().await.values().sum::<f64>();
        report.rss_mib.push(replica.memory_mib());
        report.cpu_seconds.push(replica.cpu_seconds());
    }
    report.writes_per_function = writes / options.functions.max(1) as f64;
    println!("    {set}: {report:?}");
    // The replicas stay up while their namespaces go (finalizers).
    for ns in namespaces {
        ns.cleanup().await;
    }
    for replica in &mut replicas {
        replica.terminate(Duration::from_secs(60)).await?;
    }
    Ok(report)
}

/// Resolves once `count` functions of `set` are Ready.
async fn wait_ready(client: &Client, set: &str, count: usize, within: Duration) -> Result<()> {
    let api: Api<NetworkFunction> = Api::all(client.clone());
    let config = watcher::Config::default().labels(&format!("{SET}={set}"));
    let mut ready: HashSet<String> = HashSet::new();
    let mut events = watcher(api, config).boxed();
    let deadline = tokio::time::Instant::now() + within;
    let mut last_print = Instant::now();
    while ready.len() < count {
        let event = tokio::time::timeout_at(deadline, events.try_next())
            .await
            .map_err(|_| format!("{} of {count} functions Ready in time", ready.len()))??;
        let Some(event) = event else { break };
        let mut note = |nf: &NetworkFunction| {
            let key = format!("{}/{}", nf.namespace().unwrap_or_default(), nf.name_any());
            if crate::waits::function_ready(nf) {
                ready.insert(key);
            } else {
                ready.remove(&key);
            }
        };
        match event {
            watcher::Event::Apply(nf) | watcher::Event::InitApply(nf) => note(&nf),
            _ => {}
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            println!("    {set}: {}/{count} Ready", ready.len());
            last_print = Instant::now();
        }
    }
    Ok(())
}

/// Prints the comparison.
pub fn print(report: &Report) {
    let row = |name: &str, one: String, sharded: String| {
        println!("{name:<44} {one:>18} {sharded:>26}");
    };
    let (one, sharded) = (&report.one_replica, &report.sharded);
    println!();
    println!(
        "{} functions over {} namespaces ({})",
        one.functions, one.namespaces, report.machine
    );
    row(
        "",
        "1 replica".into(),
        format!("{} shards", sharded.replicas),
    );
    row(
        "time to every function Ready",
        format!("{:.1} s", one.seconds_to_ready),
        format!(
            "{:.1} s ({:.2}×)",
            sharded.seconds_to_ready,
            sharded.seconds_to_ready / one.seconds_to_ready.max(1e-9)
        ),
    );
    let steady = |r: &SetReport| {
        r.rss_mib
            .iter()
            .map(|(_, steady)| format!("{steady:.0}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    row(
        "RSS per replica, steady (MiB)",
        steady(one),
        steady(sharded),
    );
    let max = |r: &SetReport| r.rss_mib.iter().map(|(_, s)| *s).fold(0.0, f64::max);
    row(
        "largest replica / the one replica",
        "1.00".into(),
        format!("{:.2}", max(sharded) / max(one).max(1e-9)),
    );
    row(
        "Strata writes per function",
        format!("{:.2}", one.writes_per_function),
        format!("{:.2}", sharded.writes_per_function),
    );
    let cpu = |r: &SetReport| {
        r.cpu_seconds
            .iter()
            .map(|c| format!("{c:.1}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    row("operator CPU per replica (s)", cpu(one), cpu(sharded));
}
