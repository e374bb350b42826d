//! A control plane of a test's own: `hack/plane` with a state directory of
//! its own, for tests that stop and start its components. The shared plane
//! (the one `KUBECONFIG` names) is never disturbed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::namespace::random_suffix;
use crate::{OutputExt, repo_root, scratch_dir};

/// A plane started by `hack/plane up` in a directory of its own under the
/// [`scratch_dir`]. Dropping it runs `hack/plane down` (also when the
/// test panics); the directory, with the components' logs, stays when the
/// test failed and is removed otherwise.
pub struct DedicatedPlane {
    dir: PathBuf,
}

impl DedicatedPlane {
    /// Starts a plane named after `test` (ports are picked free), and
    /// returns once its nodes are Ready. Takes ~15 s with cached binaries.
    pub async fn up(test: &str) -> Self {
        let dir = scratch_dir().join(format!("plane-{test}-{}", random_suffix()));
        // The guard exists before `up` runs: a failed start is torn down too.
        let plane = Self { dir };
        let started = Instant::now();
        plane.run(&["up"]).await.expect_success("hack/plane up");
        eprintln!(
            "dedicated plane up in {:.1?} ({})",
            started.elapsed(),
            plane.dir.display()
        );
        plane
    }

    /// The plane's admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// A client for this plane.
    pub async fn client(&self) -> Client {
        let path = self.kubeconfig();
        let kubeconfig = Kubeconfig::read_from(&path)
            .unwrap_or_else(|e| panic!("cannot read kubeconfig {}: {e}", path.display()));
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("invalid kubeconfig {}: {e}", path.display()));
        Client::try_from(config).expect("a client from a valid kubeconfig")
    }

    /// `hack/plane stop COMPONENT`: returns once it has exited and its ports
    /// are closed.
    pub async fn stop(&self, component: &str) {
        self.run(&["stop", component])
            .await
            .expect_success(&format!("hack/plane stop {component}"));
    }

    /// `hack/plane start COMPONENT`: the same flags and ports as before;
    /// returns once it is healthy.
    pub async fn start(&self, component: &str) {
        self.run(&["start", component])
            .await
            .expect_success(&format!("hack/plane start {component}"));
    }

    async fn run(&self, args: &[&str]) -> Output {
        let dir = self.dir.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || plane_command(&dir, &args))
            .await
            .expect("hack/plane runs")
    }
}

fn plane_command(dir: &Path, args: &[String]) -> Output {
    Command::new(repo_root().join("hack/plane"))
        .args(args)
        .env("STRATA_PLANE_DIR", dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run hack/plane {args:?}: {e}"))
}

impl Drop for DedicatedPlane {
    fn drop(&mut self) {
        let down = plane_command(&self.dir, &["down".to_string()]);
        if !down.status.success() {
            eprintln!(
                "warning: hack/plane down of {} failed ({}):\n{}{}",
                self.dir.display(),
                down.status,
                down.stdout_text(),
                down.stderr_text()
            );
        } else if std::thread::panicking() {
            eprintln!(
                "the dedicated plane is down; its logs are in {}",
                self.dir.join("logs").display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
