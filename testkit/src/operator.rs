//! The real operator binary, run as a subprocess for one test namespace.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::kubectl::kubectl_path;
use crate::{kubeconfig_path, operator_binary, scratch_dir, wait_for_every};

/// The operator (`strata run`) watching one namespace, with its output in a
/// log file. Dropping it kills the process; when the test is panicking, the
/// end of the log is printed first, since that is usually why, and the
/// operator's finalizers are removed from the namespace's objects, which
/// nobody would remove any more and which would keep the namespace from
/// being deleted. (A test that ends normally deletes what the operator
/// protects while the operator still runs.)
pub struct Operator {
    child: Child,
    log: PathBuf,
    namespace: String,
    /// The plane it runs against.
    kubeconfig: PathBuf,
}

impl Operator {
    /// Starts `strata run` for `namespace`: metrics on an ephemeral port, a
    /// 10s resync, no leader election, the plane's `KUBECONFIG`.
    pub fn start(namespace: &str) -> Self {
        Self::start_with(namespace, &[])
    }

    /// Like [`Operator::start`], with `env` added last, so it overrides the
    /// defaults (e.g. `("STRATA_LEADER_ELECTION", "true")`). With several
    /// operators in one namespace, give each a `STRATA_IDENTITY`: it names
    /// the log file.
    pub fn start_with(namespace: &str, env: &[(&str, &str)]) -> Self {
        let defaults = [
            ("STRATA_RESYNC_INTERVAL", "10s"),
            ("STRATA_LEADER_ELECTION", "false"),
            ("STRATA_LOG_LEVEL", &log_level()),
        ];
        let env: Vec<(&str, &str)> = defaults.iter().chain(env).copied().collect();
        Self::spawn(&operator_binary(), namespace, &env)
    }

    /// Runs `binary run` for `namespace` with metrics on an ephemeral port,
    /// the plane's `KUBECONFIG`, and otherwise the binary's own defaults
    /// overridden by `env` (the benchmark runs the operator as configured in
    /// production, and may run another build of it).
    pub fn spawn(binary: &Path, namespace: &str, env: &[(&str, &str)]) -> Self {
        // The last of a variable given twice is the one the process sees.
        let file = match env.iter().rev().find(|(k, _)| *k == "STRATA_IDENTITY") {
            Some((_, identity)) => format!("strata-{namespace}-{identity}.log"),
            None => format!("strata-{namespace}.log"),
        };
        let log = scratch_dir().join(file);
        let out =
            File::create(&log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let err = out.try_clone().expect("a second handle to the log file");
        // A KUBECONFIG of the caller's (another plane) needs no shared plane.
        let kubeconfig = match env.iter().rev().find(|(k, _)| *k == "KUBECONFIG") {
            Some((_, path)) => PathBuf::from(path),
            None => kubeconfig_path(),
        };
        let child = Command::new(binary)
            .arg("run")
            .env("KUBECONFIG", &kubeconfig)
            .env("STRATA_NAMESPACES", namespace)
            .env("STRATA_METRICS_ADDR", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        Self {
            child,
            log,
            namespace: namespace.to_string(),
            kubeconfig,
        }
    }

    /// Everything the operator logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM: the graceful shutdown a kubelet starts with.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(
            status.success(),
            "kill -TERM {} failed: {status}",
            self.pid()
        );
    }

    /// Sends SIGKILL: the process dies at once, without cleaning up.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL is delivered");
    }

    /// Waits for the process to exit and returns its status; panics, showing
    /// the log, if it is still running after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("the child can be waited on") {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the operator (pid {}) still runs {within:?} later; its log:\n{}",
                    self.pid(),
                    self.logs()
                );
            }
            // Each millisecond: the benchmark times SIGTERM to exit with it.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The address the metrics and health server is bound to, as logged at
    /// start (text or JSON logs). Waits for that line, looking every 10 ms
    /// (the benchmark times the start-up).
    pub async fn metrics_addr(&self) -> SocketAddr {
        wait_for_every(
            Duration::from_millis(10),
            Duration::from_secs(30),
            "the operator to log the address of /metrics",
            || async {
                let logs = self.logs();
                let line = logs
                    .lines()
                    .find(|l| l.contains("serving /metrics"))
                    .ok_or_else(|| format!("no such line in the log yet:\n{logs}"))?;
                let addr = match line.split_once("addr=") {
                    Some((_, rest)) => rest.split_whitespace().next(),
                    None => line
                        .split_once(r#""addr":""#)
                        .and_then(|(_, rest)| rest.split('"').next()),
                };
                addr.and_then(|a| a.parse().ok())
                    .ok_or_else(|| format!("no address in {line:?}"))
            },
        )
        .await
    }

    /// Sends `signal` (a name `kill` knows, e.g. "STOP", "CONT") to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(
            status.success(),
            "kill -{signal} {} failed: {status}",
            self.pid()
        );
    }

    /// Whether the process is stopped (SIGSTOP): state `T` in /proc.
    pub fn is_stopped(&self) -> bool {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // The state follows the command name, which is in parentheses.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "T")
    }

    /// How many bytes the operator has logged so far: an offset for
    /// [`Operator::logs_since`].
    pub fn log_len(&self) -> usize {
        self.logs().len()
    }

    /// What the operator logged after `offset` bytes.
    pub fn logs_since(&self, offset: usize) -> String {
        self.logs().get(offset..).unwrap_or_default().to_string()
    }

    /// `GET path` on the operator's metrics and health server.
    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.metrics_addr().await, path)
    }

    /// Waits until `/readyz` answers `code` with `body`.
    pub async fn wait_for_readyz(&self, code: u16, body: &str, within: Duration) {
        let addr = self.metrics_addr().await;
        crate::wait_for(
            within,
            &format!("/readyz to answer {code} {body:?}"),
            || async {
                let answer = http_get(addr, "/readyz");
                (answer == (code, body.to_string()))
                    .then_some(())
                    .ok_or(format!("{answer:?}"))
            },
        )
        .await;
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
        if std::thread::panicking() {
            release_finalizers(&self.kubeconfig, &self.namespace);
        }
    }
}

/// Removes the finalizers of the Strata objects in `namespace` on the plane
/// of `kubeconfig` (best effort: it runs while a test panics, and must not
/// panic itself).
fn release_finalizers(kubeconfig: &std::path::Path, namespace: &str) {
    let kubectl = |args: &[&str]| {
        Command::new(kubectl_path())
            .env("KUBECONFIG", kubeconfig)
            .args(["-n", namespace])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()
    };
    let kinds = "stacks.strata.dev,networkfunctions.strata.dev,servicechains.strata.dev";
    let Some(listed) = kubectl(&["get", kinds, "-o", "name"]) else {
        return;
    };
    for object in String::from_utf8_lossy(&listed.stdout).lines() {
        let patch = r#"{"metadata":{"finalizers":null}}"#;
        kubectl(&["patch", object, "--type=merge", "-p", patch]);
    }
}

/// `GET path` over HTTP/1.1: the status code and the body ((0, error) when
/// nothing answers within 5 s).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let exchange = || -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    };
    let response = match exchange() {
        Ok(response) => response,
        Err(e) => return (0, e.to_string()),
    };
    http_response(&response)
}

/// An HTTP response's status code and body (code 0 when unreadable).
pub fn http_response(response: &str) -> (u16, String) {
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_string())
}

/// The sum of the samples of metric `name` in a Prometheus text exposition
/// whose labels include every pair of `labels` (0 when there is none).
/// Label values with commas are not told apart.
pub fn metric_sum(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let matches = metric == name
                && labels.iter().all(|(k, v)| {
                    label_text
                        .split(',')
                        .any(|pair| pair == format!("{k}=\"{v}\""))
                });
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .fold(0.0, |sum, value| sum + value)
}

/// The operators' log filter: Strata at debug, or `STRATA_TEST_LOG_LEVEL`
/// (e.g. `info,strata=debug,kube_runtime=debug,kube_client=debug` to see
/// each watch and request).
fn log_level() -> String {
    std::env::var("STRATA_TEST_LOG_LEVEL").unwrap_or_else(|_| "info,strata=debug".to_string())
}
