//! The `strata` command for people, run as a user runs it (the built
//! binary, the plane's kubeconfig) against the real control plane:
//! `trace` of a blocked function, a chain and a stack, `--watch` redrawing
//! as the blocker goes, the exit statuses, `tree`, `runs-on`, the output
//! forms and colours, the kubeconfig flags, and the kubectl plugin
//! ([`functions`]); `history` paging through hundreds of records
//! ([`records`]).

mod functions;
mod records;

use std::ffi::OsStr;
use std::process::{Command, Output};

use strata_testkit::operator_binary;

/// Runs the `strata` binary with `args`, as from a pipe with no colour
/// preference (the plane's `KUBECONFIG` is inherited).
fn strata<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    strata_with(args, &[])
}

/// [`strata`] with `env` set.
fn strata_with<I, S>(args: I, env: &[(&str, &str)]) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(operator_binary())
        .args(args)
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR_FORCE")
        .envs(env.iter().copied())
        .output()
        .expect("strata runs")
}

/// The exit code, stdout and stderr of a command, for assertions that show all three.
fn shown(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Stdout as JSON; panics showing the command's output otherwise.
fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", shown(output)))
}
