//! A real Prometheus (built by `hack/plane build` from the Prometheus Go
//! module; `hack/plane env` exports `STRATA_PROMETHEUS`) scraping one
//! operator, and its HTTP API.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use strata_testkit::wait_for;

/// How often Prometheus scrapes the operator and evaluates the rules: short,
/// so that the test waits seconds, not minutes.
pub const INTERVAL: &str = "1s";
/// Every alert's `for:` in the rules the test loads: the real thresholds
/// (minutes) are proven by promtool (tests/monitoring/strata.rules.test.yaml);
/// here, that each expression sees what the operator exports.
pub const SHORT_FOR: &str = "2s";

/// A Prometheus process with its own data directory, killed on drop.
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

/// A free port on 127.0.0.1 (the operator's, which must stay the same across
/// a restart, so that Prometheus's static target finds it again).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}

/// `rules` with every `for:` shortened to [`SHORT_FOR`].
pub fn with_short_for(rules: &str) -> String {
    rules
        .lines()
        .map(|line| match line.trim_start().strip_prefix("for: ") {
            Some(_) => format!(
                "{}for: {SHORT_FOR}",
                &line[..line.len() - line.trim_start().len()]
            ),
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Prometheus {
    /// Starts Prometheus in `dir`, scraping `target` as job `strata` with
    /// `rules` loaded, and waits until it is ready.
    pub async fn start(dir: &Path, target: SocketAddr, rules: &str) -> Self {
        let binary = std::env::var_os("STRATA_PROMETHEUS")
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| {
                panic!(
                    "STRATA_PROMETHEUS is not set: build prometheus with `hack/plane build` and \
                     `eval \"$(hack/plane env)\"` (which exports it)"
                )
            });
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("Prometheus's scratch directory");
        std::fs::write(dir.join("strata.rules.yaml"), rules).expect("the rules file");
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global: {{scrape_interval: {INTERVAL}, scrape_timeout: {INTERVAL}, \
                 evaluation_interval: {INTERVAL}}}\n\
                 rule_files: [strata.rules.yaml]\n\
                 scrape_configs:\n\
                 \x20 - job_name: strata\n\
                 \x20   static_configs: [{{targets: ['{target}']}}]\n"
            ),
        )
        .expect("prometheus.yml");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("Prometheus's log");
        let child = Command::new(&binary)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--storage.tsdb.retention.time=1h")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a second handle to the log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary:?}: {e}"));
        let prometheus = Self {
            child,
            addr,
            dir: dir.to_path_buf(),
        };
        wait_for(
            Duration::from_secs(60),
            "Prometheus to be ready",
            || async {
                match get(addr, "/-/ready") {
                    Ok((200, _)) => Ok(()),
                    other => Err(format!("{other:?}; log:\n{}", prometheus.log())),
                }
            },
        )
        .await;
        prometheus
    }

    /// What Prometheus logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/<path>`: the `data` of a successful answer, or why not.
    pub fn api(&self, path: &str) -> Result<Value, String> {
        let (code, body) = get(self.addr, &format!("/api/v1/{path}"))?;
        let answer: Value =
            serde_json::from_str(&body).map_err(|e| format!("{code}: not JSON ({e}): {body}"))?;
        if code != 200 || answer["status"] != "success" {
            return Err(format!("{code}: {body}"));
        }
        Ok(answer["data"].clone())
    }

    /// The result of instant query `query` (a vector's samples).
    pub fn query(&self, query: &str) -> Result<Vec<Value>, String> {
        let data = self.api(&format!("query?query={}", encode(query)))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The series of range query `query` from `start` to `end` (Unix
    /// seconds), one point a second.
    pub fn query_range(&self, query: &str, start: f64, end: f64) -> Result<Vec<Value>, String> {
        let data = self.api(&format!(
            "query_range?query={}&start={start:.3}&end={end:.3}&step=1",
            encode(query)
        ))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The values of `label` among the series matching `selector` from
    /// `start` to `end` (Unix seconds): what a Grafana `label_values`
    /// variable offers.
    pub fn label_values(
        &self,
        label: &str,
        selector: &str,
        start: f64,
        end: f64,
    ) -> Result<Vec<String>, String> {
        let data = self.api(&format!(
            "label/{label}/values?match[]={}&start={start:.3}&end={end:.3}",
            encode(selector)
        ))?;
        Ok(data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect())
    }

    /// The alerts Prometheus holds now: (name, state, labels).
    pub fn alerts(&self) -> Result<Vec<(String, String, Value)>, String> {
        let data = self.api("alerts")?;
        Ok(data["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                (
                    a["labels"]["alertname"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    a["state"].as_str().unwrap_or_default().to_string(),
                    a["labels"].clone(),
                )
            })
            .collect())
    }

    /// Waits until alert `name` is firing with labels including `labels`.
    pub async fn wait_firing(&self, name: &str, labels: &[(&str, &str)]) {
        wait_for(
            Duration::from_secs(90),
            &format!("alert {name} {labels:?} to fire"),
            || async {
                let alerts = self.alerts()?;
                let firing = alerts.iter().any(|(n, state, l)| {
                    n == name && state == "firing" && labels.iter().all(|(k, v)| l[*k] == *v)
                });
                if firing {
                    Ok(())
                } else {
                    Err(format!("alerts: {alerts:?}"))
                }
            },
        )
        .await;
    }

    /// Waits until no alert `name` is pending or firing.
    pub async fn wait_resolved(&self, name: &str) {
        wait_for(
            Duration::from_secs(90),
            &format!("alert {name} to resolve"),
            || async {
                let alerts = self.alerts()?;
                if alerts.iter().any(|(n, _, _)| n == name) {
                    Err(format!("alerts: {alerts:?}"))
                } else {
                    Ok(())
                }
            },
        )
        .await;
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "--- last lines of the Prometheus log ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
    }
}

/// `GET path` over HTTP/1.0 (so that the answer is never chunked): the
/// status code and the body.
fn get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let exchange = || -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    };
    let response = exchange().map_err(|e| format!("GET {path}: {e}"))?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_string()))
}

/// Percent-encodes a query parameter.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
