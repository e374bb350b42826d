//! The measurements, in order: the bare objects, the same through Strata,
//! idleness, a stack version bump, a restart, and growth to scale × N; each
//! within a [`PhaseWindow`] of the API server's and the operator's counts.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::Value;
use strata::api::{NetworkFunction, Stack};
use strata_testkit::wait_for_every;

use crate::Result;
use crate::measure::MeasuredOperator;
use crate::options::Options;
use crate::report::Report;
use crate::traffic::{PhaseWindow, account_writes, strata_object};
use crate::workload::{
    BUMPED_VERSION, MAX_CONCURRENT, Object, STACK_VERSION, apply_all, bare_objects, function,
    stack, stack_name,
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

    // (b) The bare objects: what Strata renders for each function, applied directly.
    phase(&format!("bare: {} Deployments, Services and ConfigMaps", n));
    let bare = bare_objects(&stacks, &functions, bare_ns)?;
    let bare_applied = bare.len();
    let window = PhaseWindow::open(client, None).await;
    let started = Instant::now();
    apply_all(client, bare_ns, bare, options.apply_concurrency).await;
    wait_all(
        Api::<Deployment>::namespaced(client.clone(), bare_ns),
        n,
        deployment_available,
        options.timeout(),
        "bare Deployments Available",
    )
    .await?;
    report.bare_seconds = started.elapsed().as_secs_f64();
    let bare = window.close(client, "bare", n, bare_applied, None).await;

    // (a) The same through Strata.
    phase(&format!("strata: {} stacks, {n} functions", options.stacks));
    let mut operator = MeasuredOperator::start(strata_ns);
    operator.wait_ready(Duration::from_secs(60)).await;
    let cpu_before = operator.cpu_seconds();
    let window = PhaseWindow::open(client, Some(&operator)).await;
    let started = Instant::now();
    let objects = stacks
        .iter()
        .cloned()
        .map(Object::Stack)
        .chain(functions.iter().cloned().map(Object::Function))
        .collect();
    apply_all(client, strata_ns, objects, options.apply_concurrency).await;
    let nfs = Api::<NetworkFunction>::namespaced(client.clone(), strata_ns);
    wait_all(
        nfs.clone(),
        n,
        function_ready,
        options.timeout(),
        "NetworkFunctions Ready",
    )
    .await?;
    report.strata_seconds = started.elapsed().as_secs_f64();
    // The stacks' consumer counts follow within a second; idleness starts then.
    stacks_counted(client, strata_ns, n, options.timeout()).await;
    report.ratio = report.strata_seconds / report.bare_seconds;
    report.operator_cpu_seconds = operator.cpu_seconds() - cpu_before;
    report.reconciles_per_function = operator.reconciles().await / n as f64;
    let strata = window
        .close(client, "strata", n, options.stacks + n, Some(&operator))
        .await;
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
    report.operator_writes_per_function = strata.counts.operator_writes_per_function.unwrap_or(0.0);
    report.phases.extend([bare.counts, strata.counts]);

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
    let mut operator = MeasuredOperator::start(strata_ns);
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

    // Memory at scale: the functions grow to scale × N.
    if options.scale > 1 {
        let total = n * options.scale;
        phase(&format!(
            "scale: {total} functions ({} replicas for the added ones)",
            options.scale_replicas
        ));
        let added = (n..total)
            .map(|i| Object::Function(function(i, options.stacks, options.scale_replicas)))
            .collect();
        let window = PhaseWindow::open(client, Some(&operator)).await;
        let started = Instant::now();
        apply_all(client, strata_ns, added, options.apply_concurrency).await;
        wait_all(
            nfs.clone(),
            total,
            function_ready,
            options.timeout(),
            "NetworkFunctions Ready at scale",
        )
        .await?;
        report.scale_seconds = started.elapsed().as_secs_f64();
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
    }
    operator.terminate(Duration::from_secs(60)).await?;
    Ok(())
}

/// `a / b` per function, or 0 when either phase has no functions.
fn ratio(a: Option<f64>, b: Option<f64>) -> f64 {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => a / b,
        _ => 0.0,
    }
}

fn phase(what: &str) {
    println!("--- {what}");
}

/// Watches `api` until `count` objects satisfy `done`.
async fn wait_all<K>(
    api: Api<K>,
    count: usize,
    done: fn(&K) -> bool,
    within: Duration,
    what: &str,
) -> Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut state: HashMap<String, bool> = HashMap::new();
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let deadline = tokio::time::Instant::now() + within;
    let mut last_print = Instant::now();
    loop {
        let ready = state.values().filter(|r| **r).count();
        if ready >= count {
            return Ok(());
        }
        if last_print.elapsed() > Duration::from_secs(10) {
            println!("    {what}: {ready}/{count}");
            last_print = Instant::now();
        }
        let event = tokio::time::timeout_at(deadline, events.try_next())
            .await
            .map_err(|_| format!("{what}: only {ready} of {count} after {within:?}"))??;
        match event {
            Some(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                state.insert(o.name_any(), done(&o));
            }
            Some(watcher::Event::Delete(o)) => {
                state.remove(&o.name_any());
            }
            Some(watcher::Event::Init | watcher::Event::InitDone) => {}
            None => return Err(format!("{what}: the watch ended").into()),
        }
    }
}

fn deployment_available(d: &Deployment) -> bool {
    let Some(status) = &d.status else {
        return false;
    };
    let wanted = d.spec.replicas.unwrap_or(1);
    status.observed_generation >= d.metadata.generation
        && status.updated_replicas.unwrap_or(0) == wanted
        && status.available_replicas.unwrap_or(0) == wanted
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_.as_deref() == Some("Available") && c.status.as_deref() == Some("True"))
}

pub fn function_ready(nf: &NetworkFunction) -> bool {
    nf.status.as_ref().is_some_and(|s| {
        s.observed_generation == nf.metadata.generation
            && s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// Waits until `consumers` functions of stack 0 run the bumped version and
/// are Ready; returns the most seen moving (adopting, not yet Ready) at once.
async fn wait_adopted(
    api: &Api<NetworkFunction>,
    consumers: usize,
    within: Duration,
) -> Result<usize> {
    let stack = stack_name(0);
    let mut state: HashMap<String, (bool, bool)> = HashMap::new();
    let mut events = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    let deadline = tokio::time::Instant::now() + within;
    let mut most_moving = 0;
    loop {
        let adopted = state.values().filter(|(on, ready)| *on && *ready).count();
        most_moving = most_moving.max(state.values().filter(|(on, ready)| *on && !*ready).count());
        if adopted >= consumers {
            return Ok(most_moving);
        }
        let nf = tokio::time::timeout_at(deadline, events.try_next())
            .await
            .map_err(|_| format!("only {adopted} of {consumers} adopted {BUMPED_VERSION}"))??
            .ok_or("the watch ended")?;
        if nf.spec.stack_ref.name != stack {
            continue;
        }
        let on = nf
            .status
            .as_ref()
            .and_then(|s| s.deployed_with.as_ref())
            .is_some_and(|d| d.stack.version == BUMPED_VERSION);
        state.insert(nf.name_any(), (on, function_ready(&nf)));
    }
}

/// Waits until the stacks in `ns` count `n` consumers in all, every one on
/// the current version.
async fn stacks_counted(client: &Client, ns: &str, n: usize, within: Duration) {
    let api: Api<Stack> = Api::namespaced(client.clone(), ns);
    let api = &api;
    wait_for_every(
        Duration::from_millis(100),
        within,
        "the stacks to count their consumers",
        || async move {
            let stacks = api
                .list(&Default::default())
                .await
                .map_err(|e| e.to_string())?;
            let (total, current) = stacks
                .items
                .iter()
                .filter_map(|s| s.status.as_ref()?.consumers.clone())
                .fold((0, 0), |(t, c), x| (t + x.total, c + x.on_current_version));
            if total as usize == n && current == total {
                Ok(())
            } else {
                Err(format!(
                    "{total} of {n} consumers counted, {current} on the current version"
                ))
            }
        },
    )
    .await
}
