//! kubectl against the plane, and readable command output.

use std::ffi::OsString;
use std::io::Write;
use std::process::{Command, Output, Stdio};

use crate::kubeconfig_path;

/// The kubectl to run: `$KUBECTL`, or `kubectl` on `PATH` (the test command
/// puts the plane's `bin/` first).
pub(crate) fn kubectl_path() -> OsString {
    std::env::var_os("KUBECTL")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "kubectl".into())
}

/// Runs kubectl with `args` against the plane (same `KUBECONFIG` as [`client`]).
pub fn kubectl<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    kubectl_with_stdin(args, "")
}

/// Runs kubectl with `args`, writing `stdin` to it (for `-f -`).
pub fn kubectl_with_stdin<I, S>(args: I, stdin: &str) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let program = kubectl_path();
    let mut child = Command::new(&program)
        .args(args)
        .env("KUBECONFIG", kubeconfig_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {program:?} ({e}): put the plane's kubectl on PATH \
                 (~/.cache/strata/k8s-<version>/bin) or set KUBECTL"
            )
        });
    let mut pipe = child.stdin.take().expect("stdin is piped");
    let input = stdin.to_owned();
    // Written from a thread so that a large input cannot deadlock against a
    // full stdout pipe.
    let writer = std::thread::spawn(move || pipe.write_all(input.as_bytes()));
    let output = child
        .wait_with_output()
        .expect("kubectl runs to completion");
    writer.join().expect("stdin writer").ok();
    output
}

/// Readable views of a command's [`Output`].
pub trait OutputExt {
    /// Standard output, lossily decoded.
    fn stdout_text(&self) -> String;
    /// Standard error, lossily decoded.
    fn stderr_text(&self) -> String;
    /// Panics, showing both streams, unless the command succeeded; returns stdout.
    fn expect_success(&self, what: &str) -> String;
}

impl OutputExt for Output {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    fn expect_success(&self, what: &str) -> String {
        assert!(
            self.status.success(),
            "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout_text(),
            self.stderr_text()
        );
        self.stdout_text()
    }
}
