//! `strata trace nf|stack|chain NAME`: what an object runs, on what, and
//! the first thing blocking it, in one screen; exit status 0 only when it
//! exists and is Ready. `--watch` redraws when anything it reads changes.

mod gather;
mod render;
pub mod view;

use clap::{Args as ClapArgs, ValueEnum};

use super::connect::{Cluster, Globals, Scope};
use super::output::{self, Format};
use super::{Error, Result, Verdict, watch};
use view::{State, Trace};

/// The kinds `trace` follows, by the names kubectl knows them.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A NetworkFunction.
    #[value(alias = "networkfunction", alias = "networkfunctions")]
    Nf,
    /// A Stack.
    #[value(alias = "stk", alias = "stacks")]
    Stack,
    /// A ServiceChain.
    #[value(alias = "servicechain", alias = "servicechains")]
    Chain,
}

impl Kind {
    /// The kind's name as people write it, for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Nf => "networkfunction",
            Kind::Stack => "stack",
            Kind::Chain => "servicechain",
        }
    }
}

/// `strata trace KIND NAME [--watch]`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// nf, stack or chain.
    pub kind: Kind,
    /// The object's name.
    pub name: String,
    /// Keep running and redraw whenever the object or what it depends on changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
    #[command(flatten)]
    pub globals: Globals,
}

/// Runs `strata trace`.
pub async fn run(args: Args) -> Result<Verdict> {
    let cluster = args.globals.connect().await?;
    let namespace = namespace_of(&cluster, args.kind, &args.name).await?;
    let format = args.globals.output;
    if args.watch {
        let draw = || async {
            let trace = gather::trace(&cluster, args.kind, &namespace, &args.name).await?;
            Ok((text(format, &trace), verdict(&trace)))
        };
        return watch::redraw(&cluster.client, &namespace, draw).await;
    }
    let trace = gather::trace(&cluster, args.kind, &namespace, &args.name).await?;
    output::emit(format, &trace, render::trace);
    if !trace.found && format == Format::Table {
        eprintln!(
            "{}: {}",
            super::program_name(),
            not_found(args.kind, &args.name, &namespace)
        );
    }
    Ok(verdict(&trace))
}

/// The namespace to trace in: the one given, or with `-A` the one that
/// holds `name` (a missing object is reported there as not found).
async fn namespace_of(cluster: &Cluster, kind: Kind, name: &str) -> Result<String> {
    use crate::api::{NetworkFunction, ServiceChain, Stack};
    if let Scope::Namespace(namespace) = &cluster.scope {
        return Ok(namespace.clone());
    }
    match kind {
        Kind::Nf => cluster
            .locate::<NetworkFunction>(kind.noun(), name)
            .await
            .map(ns_of),
        Kind::Stack => cluster.locate::<Stack>(kind.noun(), name).await.map(ns_of),
        Kind::Chain => cluster
            .locate::<ServiceChain>(kind.noun(), name)
            .await
            .map(ns_of),
    }
}

fn ns_of<K: kube::ResourceExt>(object: K) -> String {
    object.namespace().unwrap_or_default()
}

fn not_found(kind: Kind, name: &str, namespace: &str) -> Error {
    Error::NotFound {
        kind: kind.noun(),
        name: name.to_string(),
        scope: format!("namespace {namespace}"),
    }
}

/// The exit status a trace stands for.
fn verdict(trace: &Trace) -> Verdict {
    match trace.state {
        State::Missing => Verdict::Missing,
        State::Ready => Verdict::Ready,
        _ => Verdict::NotReady,
    }
}

fn text(format: Format, trace: &Trace) -> String {
    output::render(format, trace, render::trace)
}
