//! A control plane of a test's own: `hack/plane` with a state directory of
//! its own, for tests that stop and start its components. The shared plane
//! (the one `KUBECONFIG` names) is never disturbed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use kube::Client;
use kube::config::Kubeconfig;

use crate::namespace::random_suffix;
use crate::{OutputExt, client_for, repo_root, scratch_dir};

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
        client_for(&self.kubeconfig()).await
    }

    /// The plane's admin kubeconfig as YAML with every credential inline
    /// (`certificate-authority-data`, `client-certificate-data`,
    /// `client-key-data`: base64, no file paths), as a kubeconfig Secret
    /// holds it for the operator, which refuses file references. `hack/plane`
    /// writes it so (hack/lib/pki.sh `write_kubeconfig`); this panics if it
    /// ever names a file or a program.
    pub fn kubeconfig_inline(&self) -> String {
        let path = self.kubeconfig();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read kubeconfig {}: {e}", path.display()));
        let kubeconfig = Kubeconfig::from_yaml(&text)
            .unwrap_or_else(|e| panic!("invalid kubeconfig {}: {e}", path.display()));
        let not_inline = |what: &str| -> ! {
            panic!(
                "{}: {what}, where a kubeconfig for a Secret needs its credentials inline",
                path.display()
            )
        };
        for cluster in kubeconfig
            .clusters
            .iter()
            .filter_map(|c| c.cluster.as_ref())
        {
            if cluster.certificate_authority.is_some()
                || cluster.certificate_authority_data.is_none()
            {
                not_inline("a cluster without certificate-authority-data");
            }
        }
        for user in kubeconfig
            .auth_infos
            .iter()
            .filter_map(|u| u.auth_info.as_ref())
        {
            if user.client_certificate.is_some()
                || user.client_key.is_some()
                || user.token_file.is_some()
            {
                not_inline("a user reads a file");
            }
            if user.exec.is_some() || user.auth_provider.is_some() {
                not_inline("a user runs a program");
            }
        }
        text
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
