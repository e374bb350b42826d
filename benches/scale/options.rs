//! What to run: N, the stacks, the replicas, the phases' lengths.

use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};

/// The benchmark's options (`hack/bench -- --help`).
#[derive(Parser, Debug, Clone)]
#[command(about = "Strata against bare Kubernetes controllers on a local plane")]
pub struct Options {
    /// Network functions (N).
    #[arg(long, default_value_t = 1000)]
    pub functions: usize,
    /// Quick mode: N = 100, history 10 × 5.
    #[arg(long)]
    pub quick: bool,
    /// Pairs of a bare phase and a Strata phase at N, each from an empty
    /// cluster (`--quick`: 1); the phases after go on from the last.
    #[arg(long, default_value_t = 3)]
    pub pairs: usize,
    /// Requests of each kind the request-cost phase sends (default N / 2;
    /// 0 skips it).
    #[arg(long)]
    pub cost_requests: Option<usize>,
    /// Stacks the functions are spread over.
    #[arg(long, default_value_t = 10)]
    pub stacks: usize,
    /// Replicas of each function.
    #[arg(long, default_value_t = 2)]
    pub replicas: i32,
    /// Seconds of idleness after convergence in which writes are counted.
    #[arg(long, default_value_t = 60)]
    pub idle_seconds: u64,
    /// The scale phase grows the functions, bare and through Strata, to this
    /// multiple of N (1 skips it).
    #[arg(long, default_value_t = 10)]
    pub scale: usize,
    /// Replicas of the functions added in the memory phase. The operator
    /// caches functions, stacks, Deployments and records, not pods.
    #[arg(long, default_value_t = 0)]
    pub scale_replicas: i32,
    /// The history phase: this many of the N functions are rolled out again
    /// and again, each rollout a DeploymentRecord (0 skips it; `--quick`: 10,
    /// which keeps the smoke run in `hack/test` short).
    #[arg(long, default_value_t = 1000)]
    pub history_functions: usize,
    /// Rollouts of each of those functions in the history phase (`--quick`: 5).
    #[arg(long, default_value_t = 30)]
    pub history_rollouts: usize,
    /// Replicas of those functions while they roll out: the records, not the
    /// pods, are what the phase measures.
    #[arg(long, default_value_t = 0)]
    pub history_replicas: i32,
    /// Each history rollout also changes the function's config (a new
    /// content-named ConfigMap each time), not only its version.
    #[arg(long)]
    pub history_config: bool,
    /// DeploymentRecords the operator keeps per function
    /// (`STRATA_RECORD_RETENTION`; default: the operator's own).
    #[arg(long)]
    pub record_retention: Option<usize>,
    /// Objects applied at once, in both phases alike.
    #[arg(long, default_value_t = 16)]
    pub apply_concurrency: usize,
    /// Compare one replica with this many shard replicas (one each) on the
    /// same functions, spread over `--namespaces`, instead of the phases
    /// against the bare objects.
    #[arg(long, default_value_t = 1)]
    pub shards: u32,
    /// Namespaces the functions are spread over with `--shards`.
    #[arg(long, default_value_t = 30)]
    pub namespaces: usize,
    /// Where the JSON report goes (default target/bench/scale-<time>.json).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Minutes each convergence may take before the run fails.
    #[arg(long, default_value_t = 30)]
    pub timeout_minutes: u64,
    /// Passed by `cargo bench` to every benchmark; means nothing here.
    #[arg(long, hide = true)]
    bench: bool,
}

impl Options {
    /// The options from the command line; `--quick` sets N to 100 and, unless
    /// given, one pair and the history phase to 10 functions × 5 rollouts.
    pub fn parse_args() -> Self {
        let matches = Self::command().get_matches();
        let mut options = Self::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        let defaulted = |id: &str| matches.value_source(id) == Some(ValueSource::DefaultValue);
        if options.quick {
            options.functions = 100;
            if defaulted("pairs") {
                options.pairs = 1;
            }
            if defaulted("history_functions") {
                options.history_functions = 10;
            }
            if defaulted("history_rollouts") {
                options.history_rollouts = 5;
            }
        }
        options
    }

    /// How long each convergence may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_minutes * 60)
    }
}
