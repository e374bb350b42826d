//! The measurements, in order: pairs of the bare objects and the same
//! through Strata (the last pair's operator goes on), idleness, a stack version bump, a restart, growth to scale × N, bare
//! and through Strata, and records over time ([`history`]); each
//! within a [`PhaseWindow`] of the API server's and the operator's counts.
//!
//! The bare objects are removed after each bare phase, so that the Strata
//! phase after it starts with the cluster the bare phase started with
//! (nothing at N; Strata's N functions at scale).

use std::time::{Duration, Instant};

use k8s_openapi::api::{apps::v1::Deployment, core::v1::Namespace};
use kube::{Api, Client};
use serde_json::Value;
use strata::api::NetworkFunction;
use strata_testkit::TestNamespace;

use crate::Result;
use crate::costs;
use crate::history;
use crate::measure::MeasuredOperator;
use crate::options::Options;
use crate::report::{PairFigures, ReadySeries, Report, median};
use crate::traffic::{PhaseCost, PhaseWindow, account_writes, strata_object};
use crate::waits::{deployment_available, function_ready, stacks_counted, wait_adopted, wait_all};
use crate::workload::{
    BUMPED_VERSION, MAX_CONCURRENT, Object, STACK_VERSION, apply_all, bare_objects, function,
    remove_bare, stack, stack_name,
};

/// The phases, in order, each adding its figures to `report`.
pub async fn run(
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

    // Pairs of (b) the bare objects and (a) the same through Strata, each
    // from an empty cluster: the first ones in a namespace of their own,
    // deleted afterwards; the last one in `strata_ns`, which the phases
    // after it go on with. The bare phase's pace moves with the machine
    // from one run to the next: the pairs show by how much.
    for k in 1..options.pairs.max(1) {
        let ns = TestNamespace::create(client, &format!("bench-strata-{k}")).await;
        let mut pair = pair(client, options, &stacks, &functions, bare_ns, ns.name()).await?;
        report.pairs.push(pair.figures());
        pair.operator.terminate(Duration::from_secs(60)).await?;
        remove_namespace(client, ns, options).await?;
    }
    let last = pair(client, options, &stacks, &functions, bare_ns, strata_ns).await?;
    report.pairs.push(last.figures());
    let Pair {
        bare,
        strata,
        bare_seconds,
        strata_seconds,
        bare_ready,
        strata_ready,
        mut operator,
        operator_cpu_seconds,
        reconciles_per_function,
    } = last;
    report.bare_seconds = bare_seconds;
    report.strata_seconds = strata_seconds;
    report.ready_over_time.extend([bare_ready, strata_ready]);
    report.ratio = strata_seconds / bare_seconds;
    report.operator_cpu_seconds = operator_cpu_seconds;
    report.reconciles_per_function = reconciles_per_function;
    account_writes(
        report,
        &bare.apiserver.writes(),
        &strata.apiserver.writes(),
        n,
    );
    report.write_ratio = ratio(
        strata.counts.writes_per_function,
        bare.counts.writes_per_function,
    );
    report.watch_event_ratio = ratio(
        strata.counts.watch_events_per_function,
        bare.counts.watch_events_per_function,
    );
    report.cpu_ratio = ratio(
        strata.counts.cpu_seconds_per_function,
        bare.counts.cpu_seconds_per_function,
    );
    report.operator_writes_per_function = strata.counts.operator_writes_per_function.unwrap_or(0.0);
    report.phases.extend([bare.counts, strata.counts]);
    let nfs = Api::<NetworkFunction>::namespaced(client.clone(), strata_ns);
    let deployments = Api::<Deployment>::namespaced(client.clone(), bare_ns);

    // Idle: nothing changes; nothing should be written.
    phase(&format!("idle for {} s", options.idle_seconds));
    let window = PhaseWindow::open(client, Some(&operator)).await;
    // A measurement window, not a wait for a condition.
    tokio::time::sleep(Duration::from_secs(options.idle_seconds)).await;
    let idle = window
        .close_now(client, "idle", 0, 0, Some(&operator))
        .await;
    let idle_counts = idle.counts;
    let idle = idle.apiserver.writes();
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
    report.caches_at_n = operator.caches().await;
    report.phases.push(idle_counts);

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
    let window = PhaseWindow::open(client, Some(&operator)).await;
    let started = Instant::now();
    apply_all(
        client,
        strata_ns,
        vec![Object::Stack(stack(0, BUMPED_VERSION))],
        1,
    )
    .await;
    report.bump_max_moving_seen = wait_adopted(&nfs, consumers, options.timeout()).await?;
    report.bump_seconds = started.elapsed().as_secs_f64();
    let bump = window
        .close(client, "bump", consumers, 1, Some(&operator))
        .await;
    report.phases.push(bump.counts);

    // Shutdown and start-up with N functions in the caches.
    phase("SIGTERM, then start again");
    // The new process counts its writes from its start; the old one's last
    // (between here and its exit) are only in the API server's counts.
    let window = PhaseWindow::open(client, None).await;
    report.sigterm_to_exit_ms = operator.terminate(Duration::from_secs(60)).await? * 1e3;
    let mut operator = MeasuredOperator::start(strata_ns, options.record_retention);
    let (ready, first) = operator
        .wait_first_reconcile(Duration::from_secs(120))
        .await;
    report.start_to_ready_ms = ready * 1e3;
    report.start_to_first_reconcile_ms = first * 1e3;
    operator.wait_reconciled(n, Duration::from_secs(300)).await;
    let restart = window.close(client, "restart", 0, 0, Some(&operator)).await;
    report.phases.push(restart.counts);
    report.restart_writes = restart
        .apiserver
        .writes()
        .iter()
        .filter(|((r, verb), _)| strata_object(r, verb))
        .map(|(_, v)| v)
        .sum::<f64>()
        + 0.0;

    // What one request of each kind costs the API server.
    let cost_requests = options.cost_requests.unwrap_or(n / 2);
    if cost_requests > 0 {
        phase(&format!(
            "request costs: {cost_requests} requests of each kind, in a namespace of their own"
        ));
        report.request_costs =
            costs::run(client, options, &stacks, strata_ns, cost_requests).await?;
    }

    // Growth to scale × N: the bare objects first, then through Strata (and
    // the operator's memory there).
    if options.scale > 1 {
        let total = n * options.scale;
        let added: Vec<Value> = (n..total)
            .map(|i| function(i, options.stacks, options.scale_replicas))
            .collect();
        phase(&format!(
            "scale, bare: {} more Deployments, Services and ConfigMaps ({} replicas each), next to Strata's {n} functions",
            total - n,
            options.scale_replicas
        ));
        let bare = bare_objects(&stacks, &added, bare_ns)?;
        let bare_applied = bare.len();
        let window = PhaseWindow::open(client, Some(&operator)).await;
        let (seconds, ready) = apply_and_wait(
            client,
            options,
            bare_ns,
            bare,
            deployments.clone(),
            total - n,
            deployment_available,
            "bare Deployments Available at scale",
        )
        .await?;
        report.scale_bare_seconds = seconds;
        report
            .ready_over_time
            .push(series("scale-bare", AVAILABLE, ready));
        let scale_bare = window
            .close(
                client,
                "scale-bare",
                total - n,
                bare_applied,
                Some(&operator),
            )
            .await;
        report.phases.push(scale_bare.counts);
        clear(client, bare_ns, options).await?;

        phase(&format!(
            "scale: {total} functions ({} replicas for the added ones)",
            options.scale_replicas
        ));
        let added = added.into_iter().map(Object::Function).collect();
        let window = PhaseWindow::open(client, Some(&operator)).await;
        let (seconds, ready) = apply_and_wait(
            client,
            options,
            strata_ns,
            added,
            nfs.clone(),
            total,
            function_ready,
            "NetworkFunctions Ready at scale",
        )
        .await?;
        report.scale_seconds = seconds;
        report.ready_over_time.push(series("scale", READY, ready));
        report.scale_ratio = report.scale_seconds / report.scale_bare_seconds;
        let at_n = median(report.pairs.iter().map(|p| p.ratio).collect());
        report.scale_ratio_growth = report.scale_ratio / at_n;
        let scale = window
            .close(client, "scale", total - n, total - n, Some(&operator))
            .await;
        report.phases.push(scale.counts);
        report.scaled_functions = total;
        report.scaled_replicas = options.scale_replicas;
        // A short quiet spell before reading the steady size.
        tokio::time::sleep(Duration::from_secs(options.idle_seconds.min(15))).await;
        let (peak, steady) = operator.memory_mib();
        report.rss_peak_mib_at_scale = peak;
        report.rss_steady_mib_at_scale = steady;
        report.caches_at_scale = operator.caches().await;
    }

    // Records over time: functions rolled out again and again; those the
    // scale phase added (without pods) when there are enough, else the
    // first of the N.
    if options.history_functions > 0 && options.history_rollouts > 0 {
        let added = n * options.scale.max(1) - n;
        let functions = if added >= options.history_functions {
            history::Functions {
                first: n,
                count: options.history_functions,
                replicas: options.scale_replicas,
            }
        } else {
            history::Functions {
                first: 0,
                count: options.history_functions.min(n),
                replicas: options.replicas,
            }
        };
        let (history, counts) =
            history::run(client, options, strata_ns, &operator, functions).await?;
        report.history = Some(history);
        report.phases.push(counts);
    }
    operator.terminate(Duration::from_secs(60)).await?;
    Ok(())
}

/// One pair's measurements, and the operator of its Strata phase, still running.
struct Pair {
    bare: PhaseCost,
    strata: PhaseCost,
    bare_seconds: f64,
    strata_seconds: f64,
    bare_ready: ReadySeries,
    strata_ready: ReadySeries,
    operator: MeasuredOperator,
    operator_cpu_seconds: f64,
    reconciles_per_function: f64,
}

impl Pair {
    fn figures(&self) -> PairFigures {
        let (bare, strata) = (&self.bare.counts, &self.strata.counts);
        PairFigures {
            bare_seconds: self.bare_seconds,
            strata_seconds: self.strata_seconds,
            ratio: self.strata_seconds / self.bare_seconds,
            write_ratio: ratio(strata.writes_per_function, bare.writes_per_function),
            cpu_ratio: ratio(
                strata.cpu_seconds_per_function,
                bare.cpu_seconds_per_function,
            ),
            bare_cpu_ms_per_function: bare.cpu_seconds_per_function.unwrap_or(0.0) * 1e3,
            strata_cpu_ms_per_function: strata.cpu_seconds_per_function.unwrap_or(0.0) * 1e3,
        }
    }
}

/// (b) The bare objects in `bare_ns`, removed afterwards, then (a) the
/// same through an operator started for `strata_ns`.
async fn pair(
    client: &Client,
    options: &Options,
    stacks: &[Value],
    functions: &[Value],
    bare_ns: &str,
    strata_ns: &str,
) -> Result<Pair> {
    let n = functions.len();
    phase(&format!("bare: {n} Deployments, Services and ConfigMaps"));
    let objects = bare_objects(stacks, functions, bare_ns)?;
    let bare_applied = objects.len();
    let window = PhaseWindow::open(client, None).await;
    let deployments = Api::<Deployment>::namespaced(client.clone(), bare_ns);
    let (bare_seconds, ready) = apply_and_wait(
        client,
        options,
        bare_ns,
        objects,
        deployments,
        n,
        deployment_available,
        "bare Deployments Available",
    )
    .await?;
    let bare_ready = series("bare", AVAILABLE, ready);
    let bare = window.close(client, "bare", n, bare_applied, None).await;
    clear(client, bare_ns, options).await?;

    phase(&format!("strata: {} stacks, {n} functions", stacks.len()));
    let mut operator = MeasuredOperator::start(strata_ns, options.record_retention);
    operator.wait_ready(Duration::from_secs(60)).await;
    let cpu_before = operator.cpu_seconds();
    let window = PhaseWindow::open(client, Some(&operator)).await;
    let objects = stacks
        .iter()
        .cloned()
        .map(Object::Stack)
        .chain(functions.iter().cloned().map(Object::Function))
        .collect();
    let nfs = Api::<NetworkFunction>::namespaced(client.clone(), strata_ns);
    let (strata_seconds, ready) = apply_and_wait(
        client,
        options,
        strata_ns,
        objects,
        nfs,
        n,
        function_ready,
        "NetworkFunctions Ready",
    )
    .await?;
    let strata_ready = series("strata", READY, ready);
    // The stacks' consumer counts follow within a second; idleness starts then.
    stacks_counted(client, strata_ns, n, options.timeout()).await;
    let operator_cpu_seconds = operator.cpu_seconds() - cpu_before;
    let reconciles_per_function = operator.reconciles().await / n as f64;
    let strata = window
        .close(client, "strata", n, stacks.len() + n, Some(&operator))
        .await;
    Ok(Pair {
        bare,
        strata,
        bare_seconds,
        strata_seconds,
        bare_ready,
        strata_ready,
        operator,
        operator_cpu_seconds,
        reconciles_per_function,
    })
}

/// Applies `objects` in `ns` while waiting until `count` objects of `api`
/// are `done`: the seconds that took, and how many were done over time.
#[allow(clippy::too_many_arguments)]
async fn apply_and_wait<K>(
    client: &Client,
    options: &Options,
    ns: &str,
    objects: Vec<Object>,
    api: Api<K>,
    count: usize,
    done: fn(&K) -> bool,
    what: &str,
) -> Result<(f64, Vec<(f64, usize)>)>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let started = Instant::now();
    let (_, ready) = tokio::join!(
        apply_all(client, ns, objects, options.apply_concurrency),
        wait_all(api, count, done, started, options.timeout(), what)
    );
    Ok((started.elapsed().as_secs_f64(), ready?))
}

/// Deletes an earlier pair's namespace (its operator stopped: the test
/// kit lifts the Stacks' deletion protection) and waits until it is gone.
async fn remove_namespace(client: &Client, ns: TestNamespace, options: &Options) -> Result<()> {
    phase(&format!("removing {}", ns.name()));
    let started = Instant::now();
    let name = ns.name().to_string();
    ns.cleanup().await;
    let namespaces = Api::<Namespace>::all(client.clone());
    while namespaces.get_opt(&name).await?.is_some() {
        if started.elapsed() > options.timeout() {
            return Err(
                format!("namespace {name} still there after {:?}", options.timeout()).into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("    removed in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `a / b` per function, or 0 when either phase has no functions.
fn ratio(a: Option<f64>, b: Option<f64>) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => a / b,
        _ => 0.0,
    }
}

/// Removes the bare phase's objects before the Strata phase that follows
/// it, so that both start with the same objects in the cluster: Strata's
/// N functions at scale, none at N.
async fn clear(client: &Client, bare_ns: &str, options: &Options) -> Result<()> {
    phase("removing the bare objects");
    let started = Instant::now();
    remove_bare(client, bare_ns, options.timeout()).await?;
    println!("    removed in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

pub fn phase(what: &str) {
    println!("--- {what}");
}

/// What the bare phases count.
const AVAILABLE: &str = "Deployments Available";
/// What the Strata phases count.
const READY: &str = "NetworkFunctions Ready";

fn series(phase: &str, what: &str, points: Vec<(f64, usize)>) -> ReadySeries {
    ReadySeries {
        phase: phase.to_string(),
        what: what.to_string(),
        points,
    }
}
