//! What Strata's integration tests (`tests/`) and its scale benchmark
//! (`benches/scale/`) share: the local control plane ([`client`],
//! a [`DedicatedPlane`] of a test's own), the operator as a process
//! ([`Operator`]), a namespace per test ([`TestNamespace`]), the CRDs
//! ([`install_crds`]), server-side [`apply`], kubectl, and waits with a
//! deadline ([`wait_for`], [`wait_for_condition`]), and the API server's
//! own request and watch-event counters ([`apiserver_counters`]); nothing
//! sleeps for a fixed time.
//!
//! The plane is the one `hack/plane up` starts; `eval "$(hack/plane env)"`
//! exports its `KUBECONFIG` and puts its `bin/` on `PATH`. Every test that
//! needs it starts with `if !plane_available() { return; }`: without a
//! `KUBECONFIG` it returns at once, after one line per test binary that says
//! so; `hack/test` sets [`REQUIRE_PLANE`], and then a missing plane is a
//! failure, never a skip.

#![forbid(unsafe_code)]

mod apiserver;
mod kubectl;
mod namespace;
mod objects;
mod operator;
mod plane;
mod wait;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Once;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

pub use apiserver::{ApiServerCounters, RequestCounts, apiserver_counters};
pub use kubectl::{OutputExt, kubectl, kubectl_with_stdin};
pub use namespace::TestNamespace;
pub use objects::{
    EDGE_STACK, FIELD_MANAGER, apply, apply_edge_function, apply_edge_stack, apply_object,
    install_crds, install_crds_from,
};
pub use operator::{Operator, http_get, http_response, metric_sum};
pub use plane::DedicatedPlane;
pub use wait::{Observation, wait_for, wait_for_condition, wait_for_every, wait_for_object};

/// The environment variable that makes a missing plane a failure: `hack/test`
/// (and `hack/fault-suite`) set it to 1, so that under the test command no
/// plane test can pass without running.
pub const REQUIRE_PLANE: &str = "STRATA_REQUIRE_PLANE";

/// Whether this run has the local control plane (`KUBECONFIG` is set), and
/// with it the tools `hack/plane env` provides (kubectl, helm, kstatus).
///
/// Without one, this prints once per test binary that the plane tests are
/// skipped and that `hack/test` runs them, and answers false, so that
/// `cargo test` on a machine without a plane runs the unit and property
/// tests. Panics instead when [`REQUIRE_PLANE`] is set.
pub fn plane_available() -> bool {
    if std::env::var_os("KUBECONFIG").is_some_and(|p| !p.is_empty()) {
        return true;
    }
    if std::env::var_os(REQUIRE_PLANE).is_some_and(|v| !v.is_empty() && v != "0") {
        panic!(
            "{REQUIRE_PLANE} is set, so the plane tests must run, but KUBECONFIG is not: \
             start the plane with `hack/plane up` and `eval \"$(hack/plane env)\"`, or run \
             `hack/test`, which does both"
        );
    }
    static SAID: Once = Once::new();
    SAID.call_once(|| {
        // Straight to stderr: libtest captures `eprintln!` of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "{}: KUBECONFIG is not set, so the tests that need the local control plane \
             are skipped; `hack/test` starts a plane and runs them",
            test_binary_name()
        );
    });
    false
}

/// The running test binary's name, without cargo's hash suffix.
fn test_binary_name() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    let stem = exe.file_stem().unwrap_or_default().to_string_lossy();
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
        _ => stem.into_owned(),
    }
}

/// The repository root (where `crds/`, `examples/` and `hack/` are).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ is inside the repository")
}

/// The build profile's directory of the running test or benchmark
/// (`target/debug`, `target/release`): its executable is in `deps/` below it,
/// and the `strata` binary cargo built for it is in it.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running executable");
    exe.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not in target/<profile>/deps", exe.display()))
        .to_path_buf()
}

/// The operator binary cargo built along with the running test or benchmark.
pub fn operator_binary() -> PathBuf {
    let binary = profile_dir().join("strata");
    assert!(
        binary.is_file(),
        "{} does not exist: run the tests through cargo, which builds it",
        binary.display()
    );
    binary
}

/// The directory for scratch files (operator logs, dedicated planes):
/// `target/tmp`, cargo's `CARGO_TARGET_TMPDIR` for integration tests.
pub fn scratch_dir() -> PathBuf {
    let dir = profile_dir()
        .parent()
        .expect("target/<profile> has a parent")
        .join("tmp");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// The path of the plane's admin kubeconfig, from `KUBECONFIG`.
pub fn kubeconfig_path() -> PathBuf {
    let Some(path) = std::env::var_os("KUBECONFIG").filter(|p| !p.is_empty()) else {
        panic!(
            "KUBECONFIG is not set. These tests need the local control plane: run \
             `hack/plane up`, then `eval \"$(hack/plane env)\"` (or run them through the \
             test command, which exports it)"
        );
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "KUBECONFIG={} does not exist: is the local control plane up? Run `hack/plane up` \
         (and `hack/plane status` to check it)",
        path.display()
    );
    path
}

/// The client configuration from the kubeconfig at [`kubeconfig_path`].
async fn plane_config() -> Config {
    config_from(&kubeconfig_path()).await
}

/// The client configuration from the kubeconfig at `path`, its current context.
async fn config_from(path: &Path) -> Config {
    let kubeconfig = Kubeconfig::read_from(path)
        .unwrap_or_else(|e| panic!("cannot read kubeconfig {}: {e}", path.display()));
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("invalid kubeconfig {}: {e}", path.display()))
}

/// A client with the kubeconfig at `path` (another plane's, or another
/// identity's), without checking that it answers.
pub async fn client_for(path: &Path) -> Client {
    Client::try_from(config_from(path).await).expect("a client from a valid kubeconfig")
}

/// A client for the local control plane. Panics with what to do when the
/// plane is not configured or does not answer.
pub async fn client() -> Client {
    let client = Client::try_from(plane_config().await).expect("a client from a valid kubeconfig");
    if let Err(e) = client.apiserver_version().await {
        panic!(
            "the API server of {} does not answer ({e}): is the local control plane up? \
             Check with `hack/plane status`, start it with `hack/plane up`",
            kubeconfig_path().display()
        );
    }
    client
}
