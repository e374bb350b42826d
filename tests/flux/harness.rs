//! What the Flux test runs beside the plane and the operator: a Git server
//! with the site's repository, and Flux's source-controller and
//! kustomize-controller as processes (built from their Go modules by
//! `hack/plane build`; `hack/plane env` exports `STRATA_FLUX` and
//! `STRATA_GITSERVER`).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use strata_testkit::kubeconfig_path;

/// A path from the environment `hack/plane env` sets up.
fn built(var: &str) -> PathBuf {
    match std::env::var_os(var).filter(|v| !v.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => panic!(
            "{var} is not set: build Flux and the Git server with `hack/plane build` and \
             export the paths with `eval \"$(hack/plane env)\"` (the test command does both)"
        ),
    }
}

/// The directory of the Flux build: `bin/` (the two controllers) and
/// `crds/` (their CRDs, from the same module versions).
pub fn flux_dir() -> PathBuf {
    built("STRATA_FLUX")
}

/// A child process with its output in a log file. Dropping it kills the
/// process; when the test is panicking, the end of the log is printed first.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `command` with stdin from /dev/null and stderr (and stdout,
    /// unless the command already pipes it) appended to `log`.
    fn spawn(name: &str, command: &mut Command, log: PathBuf, pipe_stdout: bool) -> Self {
        let out =
            File::create(&log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let err = out.try_clone().expect("a second handle to the log file");
        command.stdin(Stdio::null()).stderr(err);
        if pipe_stdout {
            command.stdout(Stdio::piped());
        } else {
            command.stdout(out);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Self {
            name: name.to_string(),
            child,
            log,
        }
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(lines).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Panics, with the end of the log, unless the process still runs.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "{} exited ({status}); the end of its log ({}):\n{}",
                self.name,
                self.log.display(),
                self.log_tail(40)
            );
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of {} ({}) ---\n{}",
                self.name,
                self.log.display(),
                self.log_tail(40)
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hack/gitserver`: Git's smart HTTP protocol for the repositories under
/// a directory, on a free port of 127.0.0.1.
pub struct GitServer {
    /// The base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    _stdout: BufReader<ChildStdout>,
    _process: Process,
}

impl GitServer {
    pub fn start(root: &Path, logs: &Path) -> Self {
        let mut command = Command::new(built("STRATA_GITSERVER"));
        command.arg("-root").arg(root);
        let mut process =
            Process::spawn("gitserver", &mut command, logs.join("gitserver.log"), true);
        let mut stdout = BufReader::new(process.child.stdout.take().expect("stdout is piped"));
        let mut url = String::new();
        stdout
            .read_line(&mut url)
            .expect("the Git server prints its URL");
        let url = url.trim().to_string();
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "the Git server printed {url:?} instead of its URL; its log:\n{}",
            process.log_tail(20)
        );
        Self {
            url,
            _stdout: stdout,
            _process: process,
        }
    }
}

/// A Git repository served by a [`GitServer`] (a bare repository under its
/// root), and a working copy of it that commits and pushes on `main`.
pub struct Repo {
    work: PathBuf,
    /// The URL source-controller clones.
    pub url: String,
}

impl Repo {
    /// Creates `<root>/<name>.git` (served as `<server>/<name>.git`) and an
    /// empty working copy `<work>`.
    pub fn create(server: &GitServer, root: &Path, name: &str, work: &Path) -> Self {
        let bare = root.join(format!("{name}.git"));
        git(
            root,
            &["init", "--quiet", "--bare", "--initial-branch=main"],
            Some(&bare),
        );
        git(
            root,
            &["init", "--quiet", "--initial-branch=main"],
            Some(work),
        );
        let repo = Self {
            work: work.to_path_buf(),
            url: format!("{}/{name}.git", server.url),
        };
        repo.git(&[
            "remote",
            "add",
            "origin",
            bare.to_str().expect("a UTF-8 path"),
        ]);
        repo
    }

    /// The working copy's directory.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.work.join(relative)
    }

    /// Replaces the first `from` in `file` of the working copy with `to`.
    pub fn rewrite(&self, file: &str, from: &str, to: &str) {
        let path = self.path(file);
        let text = std::fs::read_to_string(&path).expect("the file exists in the working copy");
        assert!(text.contains(from), "{file} has no {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).expect("writable");
    }

    /// Deletes `file` from the working copy.
    pub fn remove(&self, file: &str) {
        std::fs::remove_file(self.path(file)).expect("the file exists in the working copy");
    }

    /// `git ARGS` in the working copy; its standard output.
    pub fn git(&self, args: &[&str]) -> String {
        git(&self.work, args, None)
    }

    /// Commits everything in the working copy with `message`, pushes it, and
    /// returns the commit's SHA-1.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "--all"]);
        self.git(&["commit", "--quiet", "--message", message]);
        self.push()
    }

    /// `git revert` of `commit`, pushed; the SHA-1 of the revert.
    pub fn revert(&self, commit: &str) -> String {
        self.git(&["revert", "--no-edit", commit]);
        self.push()
    }

    fn push(&self) -> String {
        self.git(&["push", "--quiet", "origin", "main"]);
        self.git(&["rev-parse", "HEAD"]).trim().to_string()
    }
}

/// Runs `git ARGS [TARGET]` in `dir`, isolated from the user's and the
/// system's Git configuration, with a fixed author; its standard output.
fn git(dir: &Path, args: &[&str], target: Option<&Path>) -> String {
    let mut command = Command::new("git");
    command
        .current_dir(dir)
        .args([
            "-c",
            "user.name=Strata tests",
            "-c",
            "user.email=tests@strata.dev",
        ])
        .args([
            "-c",
            "commit.gpgsign=false",
            "-c",
            "advice.detachedHead=false",
        ])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdin(Stdio::null());
    if let Some(target) = target {
        command.arg(target);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run git (is it installed?): {e}"));
    assert!(
        output.status.success(),
        "git {args:?} in {} failed ({}):\n{}{}",
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Flux's source-controller and kustomize-controller, watching one
/// namespace of the plane, without leader election, with the artifact
/// server on a free port of 127.0.0.1.
pub struct FluxControllers {
    source: Process,
    kustomize: Process,
}

impl FluxControllers {
    pub fn start(namespace: &str, dir: &Path) -> Self {
        let bin = flux_dir().join("bin");
        let storage = dir.join("artifacts");
        std::fs::create_dir_all(&storage).expect("an artifact directory");
        let storage_addr = format!("127.0.0.1:{}", free_port());
        let common = |command: &mut Command| {
            command
                .env("KUBECONFIG", kubeconfig_path())
                .env("RUNTIME_NAMESPACE", namespace)
                .env("TMPDIR", dir)
                .args([
                    "--watch-all-namespaces=false",
                    "--enable-leader-election=false",
                    // "0": no metrics or health servers (nothing reads them).
                    "--metrics-addr=0",
                    "--health-addr=0",
                    "--log-encoding=console",
                    "--requeue-dependency=2s",
                ]);
        };
        let mut source = Command::new(bin.join("source-controller"));
        common(&mut source);
        source.args([
            format!("--storage-path={}", storage.display()),
            format!("--storage-addr={storage_addr}"),
            format!("--storage-adv-addr={storage_addr}"),
        ]);
        let source = Process::spawn(
            "source-controller",
            &mut source,
            dir.join("source-controller.log"),
            false,
        );
        let mut kustomize = Command::new(bin.join("kustomize-controller"));
        common(&mut kustomize);
        kustomize.arg("--no-remote-bases=true");
        let kustomize = Process::spawn(
            "kustomize-controller",
            &mut kustomize,
            dir.join("kustomize-controller.log"),
            false,
        );
        Self { source, kustomize }
    }

    pub fn assert_running(&mut self) {
        self.source.assert_running();
        self.kustomize.assert_running();
    }
}

/// A port that was free on 127.0.0.1 just now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port on 127.0.0.1")
        .port()
}
