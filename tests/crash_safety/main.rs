//! Crash safety: the operator is killed with SIGKILL at random
//! moments during a rollout of network functions across several Stacks, and
//! restarted at once each time (no leader election, so nothing waits for a
//! lease). After the last restart everything must converge to the declared
//! state with nothing duplicated, orphaned or lost.
//!
//! The rollout is real and goes on while the kills do: the functions are
//! created in two batches, every Stack moves to a new version twice (its
//! consumers adopt it `Automatic`ally, at most `consumerRollout.maxConcurrent`
//! at a time), and every fourth function gets a new version and a new
//! configuration. How long the operator lives before each kill comes from a
//! seeded generator: the seed is printed, and `STRATA_FAULT_SEED=<seed>`
//! replays the same schedule.
//!
//! Scale: 40 functions and 5 kills by default (CI); 200 functions and 20
//! kills with `STRATA_FAULT_FULL=1` (`hack/fault-suite`).
//!
//! A second scenario ([`waves`]) kills the operator while a Stack version
//! that breaks its consumers is adopted in waves, halts after the canary,
//! and is fixed forward.
//!
//! What is checked after convergence is listed in [`declared`]; throughout
//! the run, a watch checks the adoption budget ([`adoption`]); and once
//! converged, nothing may move any more over one resync. The figures (kills,
//! their moments, convergence time, objects checked) are printed:
//! `--nocapture` shows them.

mod adoption;
mod declared;
mod plan;
mod waves;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use kube::api::{Api, ListParams};
use strata::api::{DeploymentRecord, NetworkFunction, Stack};
use strata_testkit::Operator;
use strata_testkit::{TestNamespace, apply_object, client, install_crds, wait_for};

use plan::{Plan, STACK_VERSIONS, apply_all};

/// Selects the full scale (200 functions, 20 kills).
const FULL: &str = "STRATA_FAULT_FULL";
/// Replays the kill schedule of an earlier run.
const SEED: &str = "STRATA_FAULT_SEED";
/// How long the operator may live before a kill: one life in five is short
/// (start-up, cache sync, the first reconciles), the others last up to
/// several waves of rollouts.
const SHORT_LIFE: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));
const LIFE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(8));
/// The operator's resync interval in tests (`tests/support/operator.rs`).
const RESYNC: Duration = Duration::from_secs(10);

/// How big the run is.
struct Scale {
    functions: usize,
    stacks: usize,
    kills: usize,
    /// How long convergence after the last restart may take.
    converge_within: Duration,
}

impl Scale {
    fn from_env() -> Self {
        let full = std::env::var(FULL).is_ok_and(|v| !v.is_empty() && v != "0");
        if full {
            Self {
                functions: 200,
                stacks: 4,
                kills: 20,
                converge_within: Duration::from_secs(900),
            }
        } else {
            Self {
                functions: 40,
                stacks: 4,
                kills: 5,
                converge_within: Duration::from_secs(300),
            }
        }
    }
}

#[tokio::test]
async fn converges_to_the_declared_state_after_random_kills_during_a_rollout() {
    if !strata_testkit::plane_available() {
        return;
    }
    let scale = Scale::from_env();
    let seed = seed();
    let mut schedule = Schedule::new(seed);
    let plan = Plan::new(&scale);
    eprintln!(
        "crash safety: {} functions on {} stacks, {} kills; seed {seed} (replay with {SEED}={seed})",
        scale.functions, scale.stacks, scale.kills
    );

    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "crash-safety").await;
    let stacks: Api<Stack> = ns.api();
    let functions: Api<NetworkFunction> = ns.api();
    let records: Api<DeploymentRecord> = ns.api();
    let monitor = adoption::Monitor::start(functions.clone(), plan.budgets());

    let started = Instant::now();
    let mut operator = incarnation(ns.name(), 0);
    for stack in &plan.stacks {
        apply_object(&stacks, stack.manifest(STACK_VERSIONS[0])).await;
    }
    apply_all(&functions, plan.functions(0..scale.functions / 2, false)).await;

    let mut kills = Vec::new();
    let mut steps = plan.steps(scale.kills);
    for number in 1..=scale.kills {
        let uptime = schedule.life();
        // The fault schedule, not a wait for a condition: the operator runs
        // for a random time, then dies without any chance to clean up.
        tokio::time::sleep(uptime).await;
        // Running until killed: it did not exit on its own (a crash loop would).
        operator.assert_running();
        operator.kill();
        operator.wait_exit(Duration::from_secs(10)).await;
        let at = started.elapsed();
        let logs = operator.logs();
        assert_no_panic(&logs, number - 1);
        let progress = Progress::now(&functions, &records).await;
        kills.push(Kill {
            number,
            at,
            uptime,
            synced: logs.contains("caches synced"),
            rollouts_started: logs.matches("rollout started").count(),
            progress,
        });
        operator = incarnation(ns.name(), number);
        for step in steps.remove(&number).into_iter().flatten() {
            plan.take(step, &stacks, &functions).await;
        }
    }
    // With very few kills, steps scheduled after the last one still happen.
    for step in steps.into_values().flatten() {
        plan.take(step, &stacks, &functions).await;
    }
    let restarted = Instant::now();

    let declared = plan.declared();
    wait_for(
        scale.converge_within,
        "every Stack and function converged on its declared version",
        || declared::converged(&stacks, &functions, &declared),
    )
    .await;
    let convergence = restarted.elapsed();

    let report = declared::check(&ns, &declared).await;
    // Converged means settled: over one resync nothing moves any more.
    let before = declared::Snapshot::take(&ns).await;
    tokio::time::sleep(RESYNC + Duration::from_secs(2)).await;
    let after = declared::Snapshot::take(&ns).await;
    let adoption = monitor.finish();
    operator.assert_running();
    assert_no_panic(&operator.logs(), scale.kills);

    eprintln!(
        "{}",
        figures(&scale, seed, &kills, convergence, &report, &adoption)
    );
    assert!(
        report.violations.is_empty(),
        "the converged state differs from the declared one ({} findings, seed {seed}):\n{}",
        report.violations.len(),
        report.violations.join("\n")
    );
    assert!(
        adoption.violations.is_empty(),
        "more consumers adopted a Stack version at once than consumerRollout.maxConcurrent allows \
         (seed {seed}):\n{}",
        adoption
            .violations
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        adoption.max.values().any(|&n| n > 1),
        "the adoptions were never concurrent, so the budget was not exercised: {:?}",
        adoption.max
    );
    assert_eq!(
        before.differences(&after),
        Vec::<String>::new(),
        "the converged state changed over one resync (seed {seed})"
    );

    drop(operator);
    ns.cleanup().await;
}

/// One life of the operator. Each gets its own identity, which only names
/// its log file here (leader election is off), so every life's log is kept.
fn incarnation(namespace: &str, life: usize) -> Operator {
    Operator::start_with(namespace, &[("STRATA_IDENTITY", &format!("life-{life}"))])
}

fn assert_no_panic(logs: &str, life: usize) {
    if let Some(line) = logs.lines().find(|l| l.contains("panicked")) {
        panic!("the operator (life {life}) panicked: {line}");
    }
}

/// The seed of the kill schedule: `STRATA_FAULT_SEED`, or a fresh one.
fn seed() -> u64 {
    match std::env::var(SEED) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{SEED}={text:?} is not a u64: {e}")),
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("the clock is after 1970")
                .as_nanos() as u64;
            nanos ^ u64::from(std::process::id()).rotate_left(32)
        }
    }
}

/// A seeded SplitMix64 generator: the same seed gives the same schedule.
struct Schedule(u64);

impl Schedule {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// How long the next life of the operator lasts.
    fn life(&mut self) -> Duration {
        let (min, max) = if self.next().is_multiple_of(5) {
            SHORT_LIFE
        } else {
            LIFE
        };
        self.between(min, max)
    }

    /// A duration drawn uniformly from `[min, max]`, to the millisecond.
    fn between(&mut self, min: Duration, max: Duration) -> Duration {
        let span = (max - min).as_millis() as u64;
        min + Duration::from_millis(self.next() % (span + 1))
    }
}

/// One kill and what the operator had done in the life it ended.
struct Kill {
    number: usize,
    /// Since the start of the run.
    at: Duration,
    /// How long the killed process had run.
    uptime: Duration,
    /// Whether its caches had synced (it was reconciling).
    synced: bool,
    /// Rollouts it started (records it created).
    rollouts_started: usize,
    /// The state it left behind.
    progress: Progress,
}

/// How far the rollout was at one moment.
struct Progress {
    functions: usize,
    ready: usize,
    records: usize,
}

impl Progress {
    async fn now(functions: &Api<NetworkFunction>, records: &Api<DeploymentRecord>) -> Self {
        let functions = functions
            .list(&ListParams::default())
            .await
            .expect("list functions")
            .items;
        let ready = functions
            .iter()
            .filter(|nf| {
                nf.status.as_ref().is_some_and(|s| {
                    s.deployed_with
                        .as_ref()
                        .is_some_and(|d| d.ready_at.is_some())
                        && s.conditions
                            .iter()
                            .any(|c| c.type_ == "Ready" && c.status == "True")
                })
            })
            .count();
        let records = records
            .list_metadata(&ListParams::default())
            .await
            .expect("list records")
            .items
            .len();
        Self {
            functions: functions.len(),
            ready,
            records,
        }
    }
}

fn figures(
    scale: &Scale,
    seed: u64,
    kills: &[Kill],
    convergence: Duration,
    report: &declared::Report,
    adoption: &adoption::Observed,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== crash safety figures (seed {seed}, {} functions on {} stacks)",
        scale.functions, scale.stacks
    );
    for k in kills {
        let _ = writeln!(
            out,
            "kill {:>2} at {:>6.1}s: had run {:>4.1}s, {}, started {:>3} rollouts; left {}/{} functions Ready, {} records",
            k.number,
            k.at.as_secs_f64(),
            k.uptime.as_secs_f64(),
            if k.synced {
                "reconciling"
            } else {
                "before its caches synced"
            },
            k.rollouts_started,
            k.progress.ready,
            k.progress.functions,
            k.progress.records,
        );
    }
    let _ = writeln!(
        out,
        "kills survived: {} (each restarted at once; {} while reconciling, {} during start-up)",
        kills.len(),
        kills.iter().filter(|k| k.synced).count(),
        kills.iter().filter(|k| !k.synced).count(),
    );
    let _ = writeln!(
        out,
        "convergence after the last restart: {:.1}s",
        convergence.as_secs_f64()
    );
    let total: usize = report.objects.values().sum();
    let _ = writeln!(out, "objects checked: {total} {:?}", report.objects);
    let _ = writeln!(
        out,
        "most consumers adopting one stack version at once (budget): {}",
        adoption
            .max
            .iter()
            .map(|((stack, version), n)| format!(
                "{stack} {version}: {n} ({})",
                adoption.budgets.get(stack).copied().unwrap_or_default()
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = write!(
        out,
        "findings: {} in the declared state, {} over the adoption budget",
        report.violations.len(),
        adoption.violations.len()
    );
    out
}

/// Lists every object of `api`, panicking with `what` on failure.
async fn list_all<K>(api: &Api<K>, what: &str) -> Vec<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("cannot list {what}: {e}"))
        .items
}
