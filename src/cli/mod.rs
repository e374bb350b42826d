//! The `strata` command for people: `trace`, `history`, `runs-on` and
//! `tree`. Each reads the cluster with the user's kubeconfig, context and
//! namespace as kubectl does ([`connect`]), prints a table for people or
//! `-o json|yaml` for scripts ([`output`]), and never writes.
//!
//! The same binary is a kubectl plugin: installed as `kubectl-strata`, it
//! answers `kubectl strata trace nf upf` ([`invoked_as_plugin`]).
//!
//! This is the top layer beside the operator: it reads the API types and
//! the condition helpers, and nothing imports it.

mod blockers;
mod connect;
mod history;
mod output;
mod pages;
mod runs_on;
mod trace;
mod tree;
mod watch;

use std::process::ExitCode;

use clap::Subcommand;

pub use connect::Globals;
pub use output::Format;

/// The subcommands for people (`strata trace|history|runs-on|tree`).
#[derive(Subcommand)]
pub enum Command {
    /// What an object runs, on which stack version, and the first thing
    /// blocking it. Exit status: 0 Ready, 1 not Ready, 3 not found, 4 error.
    Trace(trace::Args),
    /// The DeploymentRecords of a NetworkFunction, newest first.
    History(history::Args),
    /// What runs on a Stack (at a version) now, and what ran on it before.
    RunsOn(runs_on::Args),
    /// A Stack's inventory with each object's state, and its consumers.
    Tree(tree::Args),
}

/// How a command ended, as its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The object exists and is Ready (or the command has nothing to judge).
    Ready,
    /// The object exists and is not Ready.
    NotReady,
    /// The object does not exist.
    Missing,
    /// The command could not answer (kubeconfig, connection, permissions).
    Failed,
}

impl From<Verdict> for ExitCode {
    fn from(verdict: Verdict) -> Self {
        ExitCode::from(match verdict {
            Verdict::Ready => 0,
            Verdict::NotReady => 1,
            Verdict::Missing => 3,
            Verdict::Failed => 4,
        })
    }
}

/// What stops a command from answering.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// The kubeconfig cannot be read or names no usable context.
    #[error("{0}")]
    Config(String),
    /// A request to the API server failed.
    #[error("{0}")]
    Kube(#[from] kube::Error),
    /// The named object does not exist.
    #[error("{kind} {name} not found in {scope}")]
    NotFound {
        /// The kind, as people write it (`networkfunction`).
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// "namespace telco", or "any namespace".
        scope: String,
    },
    /// With `-A`, the name exists in several namespaces.
    #[error("{kind} {name} exists in namespaces {namespaces}: choose one with -n")]
    Ambiguous {
        /// The kind, as people write it.
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// The namespaces holding it, comma-separated.
        namespaces: String,
    },
}

/// Result of the commands for people.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs a command for people and returns its exit status; errors are
/// printed on stderr in one line.
pub async fn run(command: Command) -> ExitCode {
    let outcome = match command {
        Command::Trace(args) => trace::run(args).await,
        Command::History(args) => history::run(args).await,
        Command::RunsOn(args) => runs_on::run(args).await,
        Command::Tree(args) => tree::run(args).await,
    };
    match outcome {
        Ok(verdict) => verdict.into(),
        Err(error) => {
            eprintln!("{}: {error}", program_name());
            match error {
                Error::NotFound { .. } => Verdict::Missing,
                _ => Verdict::Failed,
            }
            .into()
        }
    }
}

/// Whether this process was started as `kubectl-strata` (by `kubectl
/// strata ...`, which runs the first `kubectl-strata` on PATH).
pub fn invoked_as_plugin() -> bool {
    std::env::args_os()
        .next()
        .and_then(|arg0| {
            std::path::Path::new(&arg0)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .is_some_and(|name| name == "kubectl-strata")
}

/// The name the user typed: `kubectl strata` for the plugin, else `strata`.
pub fn program_name() -> &'static str {
    if invoked_as_plugin() {
        "kubectl strata"
    } else {
        "strata"
    }
}
