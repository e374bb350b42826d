//! Strata at scale, measured against the bare Kubernetes controllers on the
//! same plane: the time to bring N network functions to Ready against the
//! time the same Deployments, Services and ConfigMaps take when applied
//! directly, the API writes it costs, the writes it makes while idle, its
//! memory at N and 10×N, the time ratio at 10×N against the one at N, a
//! stack version adopted by 100 consumers, start-up and shutdown, and what
//! grows with DeploymentRecords over time. Around every phase the API server's own counts of the
//! requests it served (by resource and verb) and of the watch events it sent
//! are read: the plane is the limit, so they show what the whole system (the
//! Kubernetes controllers included) asks of it per function, next to the
//! time ratio.
//!
//! `hack/bench` runs it on a dedicated plane (`cargo bench --bench scale`);
//! `hack/test` runs its quick mode, with a short idle window, on the plane it
//! started, as a smoke test. Nothing here asserts a timing: it measures and
//! prints, and fails only when something does not converge.
//!
//! [`options`] says what to run, [`workload`] what is applied, [`phases`]
//! runs the measurements in order ([`history`]: records over time,
//! [`costs`]: what one request of each kind costs the API server) and
//! [`waits`] for what they wait for,
//! [`measure`] reads the operator's process,
//! [`traffic`] what each phase cost the API server (its own counters, read
//! before the phase and after it once the plane is quiet), [`report`]
//! records the figures, [`table`] prints them and [`plot`] draws objects
//! Ready over time as SVG next to the JSON. The plane, the operator
//! process, namespaces, CRDs, apply, waits and the API server's counters come
//! from the test kit (`strata-testkit`), as in the integration tests.

#![forbid(unsafe_code)]

mod costs;
mod history;
mod measure;
mod options;
mod phases;
mod plot;
mod report;
mod sharded;
mod table;
mod traffic;
mod waits;
mod workload;

use std::path::PathBuf;

use options::Options;
use report::Report;
use strata_testkit::{TestNamespace, install_crds, install_crds_from};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = Error> = std::result::Result<T, E>;

fn main() -> Result<()> {
    let options = Options::parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(options))
}

async fn run(options: Options) -> Result<()> {
    let client = strata_testkit::client().await;
    install_operator_crds(&client).await?;
    if options.shards > 1 {
        let report = sharded::run(&client, &options, report::machine()).await?;
        sharded::print(&report);
        write_json(&options, "shards", &report)?;
        return Ok(());
    }
    let bare_ns = TestNamespace::create(&client, "bench-bare").await;
    let strata_ns = TestNamespace::create(&client, "bench-strata").await;
    let mut report = Report {
        machine: report::machine(),
        functions: options.functions,
        stacks: options.stacks,
        replicas: options.replicas,
        idle_seconds: options.idle_seconds,
        bump_max_concurrent: workload::MAX_CONCURRENT.into(),
        ..Report::default()
    };
    let outcome = phases::run(
        &client,
        &options,
        bare_ns.name(),
        strata_ns.name(),
        &mut report,
    )
    .await;
    bare_ns.cleanup().await;
    strata_ns.cleanup().await;
    outcome?;
    table::print(&report);
    let path = write_json(&options, "scale", &report)?;
    draw(&report, &path)
}

/// Installs the CRDs of the operator measured: those of this tree, or,
/// with `STRATA_BENCH_OPERATOR`, what that build's `strata crds` prints (a
/// baseline must run against its own API, not this tree's).
async fn install_operator_crds(client: &kube::Client) -> Result<()> {
    let Some(binary) = std::env::var_os("STRATA_BENCH_OPERATOR") else {
        install_crds(client).await;
        return Ok(());
    };
    let printed = std::process::Command::new(&binary).arg("crds").output()?;
    if !printed.status.success() {
        return Err(format!(
            "{} crds failed: {}",
            binary.to_string_lossy(),
            String::from_utf8_lossy(&printed.stderr)
        )
        .into());
    }
    let path = std::env::temp_dir().join(format!("strata-bench-crds-{}.yaml", std::process::id()));
    std::fs::write(&path, &printed.stdout)?;
    install_crds_from(client, std::slice::from_ref(&path)).await;
    std::fs::remove_file(&path)?;
    Ok(())
}

/// Writes `report` to `--json`, or to target/bench/<name>-<time>.json;
/// returns where.
fn write_json(options: &Options, name: &str, report: &impl serde::Serialize) -> Result<PathBuf> {
    let path = options.json.clone().unwrap_or_else(|| {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("target/bench/{name}-{stamp}.json"))
    });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, serde_json::to_vec_pretty(report)?)?;
    println!("report written to {}", path.display());
    Ok(path)
}

/// Draws the pictures next to the JSON at `path`: Ready over time at N,
/// and while growing.
fn draw(report: &Report, path: &std::path::Path) -> Result<()> {
    // The pictures next to it: Ready over time at N, and while growing.
    let stem = path.with_extension("");
    let pictures = [
        (
            "bare",
            "strata",
            format!("N = {}", report.functions),
            "ready",
        ),
        (
            "scale-bare",
            "scale",
            format!(
                "growing from {} to {}",
                report.functions, report.scaled_functions
            ),
            "ready-at-scale",
        ),
    ];
    for (bare, strata, what, suffix) in pictures {
        let svg = PathBuf::from(format!("{}-{suffix}.svg", stem.display()));
        let title = format!("Objects Ready over time, {what}");
        if plot::ready_over_time(report, bare, strata, &title, &svg)? {
            println!("picture written to {}", svg.display());
        }
    }
    Ok(())
}
