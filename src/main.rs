#![forbid(unsafe_code)]

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use strata::{
    cli, operator,
    runtime::{settings::Settings, shards, telemetry},
};

/// Strata: versioned infrastructure stacks, network functions and service chains.
#[derive(Parser)]
#[command(name = "strata", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers (configuration by flags or STRATA_* environment variables).
    Run(Box<Settings>),
    /// Print the CustomResourceDefinitions of every Strata kind as YAML.
    Crds,
    /// Print the version of this build.
    Version,
    /// Print the shard that reconciles each namespace (STRATA_SHARDS replicas' view).
    ShardOf {
        /// The namespaces.
        #[arg(required = true, value_name = "NAMESPACE")]
        namespaces: Vec<String>,
        /// The number of shards (STRATA_SHARDS of the operator).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
        shards: u32,
    },
    #[command(flatten)]
    People(cli::Command),
}

/// The process's allocator: see Cargo.toml for why jemalloc.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Installed as `kubectl-strata`, help and errors say `kubectl strata`.
    let matches = Cli::command().bin_name(cli::program_name()).get_matches();
    let parsed = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match parsed.command {
        Command::Run(settings) => {
            telemetry::init(&settings);
            tracing::info!(
                version = env!("CARGO_PKG_VERSION"),
                ?settings,
                "starting strata"
            );
            match operator::run(*settings).await {
                Ok(()) => {
                    tracing::info!("stopped");
                    std::process::ExitCode::SUCCESS
                }
                Err(message) => {
                    tracing::error!(%message, "strata stopped");
                    std::process::ExitCode::FAILURE
                }
            }
        }
        Command::Crds => {
            print!("{}", strata::api::crds_yaml());
            std::process::ExitCode::SUCCESS
        }
        Command::Version => {
            println!("strata {}", env!("CARGO_PKG_VERSION"));
            std::process::ExitCode::SUCCESS
        }
        Command::ShardOf { namespaces, shards } => {
            // One namespace: the index alone, for scripts; several: a table.
            match namespaces.as_slice() {
                [one] => println!("{}", shards::owner(one, shards)),
                _ => {
                    let width = namespaces.iter().map(String::len).max().unwrap_or(0).max(9);
                    println!("{:width$}  SHARD", "NAMESPACE");
                    for ns in &namespaces {
                        println!("{ns:width$}  {}", shards::owner(ns, shards));
                    }
                }
            }
            std::process::ExitCode::SUCCESS
        }
        Command::People(command) => cli::run(command).await,
    }
}
