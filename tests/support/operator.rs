//! The real operator binary, run as a subprocess for one test namespace.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::kubeconfig_path;

/// The operator (`strata run`) watching one namespace, with its output in a
/// log file. Dropping it kills the process; when the test is panicking, the
/// end of the log is printed first, since that is usually why.
pub struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    /// Starts `strata run` for `namespace`: metrics on an ephemeral port, a
    /// 10s resync, no leader election, the plane's `KUBECONFIG`.
    pub fn start(namespace: &str) -> Self {
        let log =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("strata-{namespace}.log"));
        let out =
            File::create(&log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let err = out.try_clone().expect("a second handle to the log file");
        let child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("run")
            .env("KUBECONFIG", kubeconfig_path())
            .env("STRATA_NAMESPACES", namespace)
            .env("STRATA_METRICS_ADDR", "127.0.0.1:0")
            .env("STRATA_RESYNC_INTERVAL", "10s")
            .env("STRATA_LEADER_ELECTION", "false")
            .env("STRATA_LOG_LEVEL", "info,strata=debug")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start the operator binary: {e}"));
        Self { child, log }
    }

    /// Everything the operator logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics unless the operator is still running (it exits only on error here).
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the operator exited ({status}); its log:\n{}", self.logs());
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = self.logs();
            let tail: Vec<&str> = logs.lines().rev().take(60).collect();
            eprintln!(
                "--- last lines of the operator log ({}) ---\n{}",
                self.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
