#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

/// Strata: versioned infrastructure stacks, network functions and service chains.
#[derive(Parser)]
#[command(name = "strata", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions of every Strata kind as YAML.
    Crds,
    /// Print the version of this build.
    Version,
}

fn main() {
    match Cli::parse().command {
        Command::Crds => print!("{}", strata::api::crds_yaml()),
        Command::Version => println!("strata {}", env!("CARGO_PKG_VERSION")),
    }
}
