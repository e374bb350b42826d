//! `strata runs-on STACK [--version V]`: the functions running on a Stack
//! (at a version) now, from their `status.deployedWith`, and what ran on it
//! before, from the DeploymentRecords labelled with it (read a page at a
//! time and folded into one row per function, function version and stack
//! version as they are read).

use std::collections::{BTreeMap, BTreeSet};

use clap::Args as ClapArgs;
use kube::ResourceExt;
use serde::Serialize;

use super::connect::{Globals, Scope};
use super::output::{self, Tone, heading, paint, ready_word, short_digest, table};
use super::{Result, Verdict, pages};
use crate::api::{LABEL_STACK, LABEL_STACK_VERSION, NetworkFunction};
use crate::controllers::conditions::{self, READY};

/// `strata runs-on STACK [--version V]`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The Stack's name.
    pub stack: String,
    /// Only this stack version.
    #[arg(long, value_name = "V")]
    pub version: Option<String>,
    /// Records read per request.
    #[arg(long, default_value_t = pages::DEFAULT_CHUNK)]
    pub chunk_size: u32,
    #[command(flatten)]
    pub globals: Globals,
}

/// The document `runs-on` prints with `-o json|yaml`.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct RunsOn {
    /// The Stack's name.
    pub stack: String,
    /// The stack version asked about, if one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The namespace; absent with `-A`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The functions running on it now.
    pub now: Vec<Running>,
    /// What ran on it before: one entry per function, function version and
    /// stack version, newest first.
    pub before: Vec<Ran>,
}

/// A function running on the Stack now.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Running {
    /// The function's namespace.
    pub namespace: String,
    /// The function's name.
    pub name: String,
    /// The function version running.
    pub version: String,
    /// The stack version it runs on.
    pub stack_version: String,
    /// That version's digest.
    pub stack_digest: String,
    /// The DeploymentRecord of the rollout.
    pub record: String,
    /// When it was deployed.
    pub deployed_at: String,
    /// Whether the function is Ready.
    pub ready: bool,
}

/// Rollouts of one function version on one stack version that are not running now.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Ran {
    /// The function's namespace.
    pub namespace: String,
    /// The function's name.
    pub network_function: String,
    /// The function version.
    pub version: String,
    /// The stack version.
    pub stack_version: String,
    /// How many rollouts.
    pub rollouts: usize,
    /// The newest of them.
    pub last_record: String,
    /// When it started.
    pub last_started_at: String,
    /// How it ended.
    pub last_outcome: String,
}

/// Runs `strata runs-on`.
pub async fn run(args: Args) -> Result<Verdict> {
    let cluster = args.globals.connect().await?;
    let wanted = |stack_version: &str| args.version.as_deref().is_none_or(|v| v == stack_version);
    let functions = cluster
        .scoped::<NetworkFunction>()
        .list(&Default::default())
        .await?;
    let mut now: Vec<Running> = functions
        .into_iter()
        .filter_map(|nf| {
            let deployed = nf.status.as_ref()?.deployed_with.clone()?;
            let conds = &nf.status.as_ref()?.conditions;
            (deployed.stack.name == args.stack && wanted(&deployed.stack.version)).then(|| {
                Running {
                    namespace: nf.namespace().unwrap_or_default(),
                    name: nf.name_any(),
                    version: deployed.version,
                    stack_version: deployed.stack.version,
                    stack_digest: deployed.stack.digest,
                    record: deployed.record,
                    deployed_at: deployed.deployed_at,
                    ready: conditions::is_true(conds, READY),
                }
            })
        })
        .collect();
    now.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let running: BTreeSet<(String, String)> = now
        .iter()
        .map(|r| (r.namespace.clone(), r.record.clone()))
        .collect();

    let mut selector = format!("{LABEL_STACK}={}", args.stack);
    if let Some(version) = &args.version {
        selector += &format!(",{LABEL_STACK_VERSION}={version}");
    }
    let mut before: BTreeMap<(String, String, String, String), Ran> = BTreeMap::new();
    pages::each_record(&cluster, &selector, args.chunk_size, |r| {
        if running.contains(&(r.namespace.clone(), r.name.clone())) {
            return;
        }
        let function = r.spec.network_function.name.clone();
        let key = (
            r.namespace.clone(),
            function.clone(),
            r.spec.version.clone(),
            r.spec.stack.version.clone(),
        );
        let ran = before.entry(key).or_insert_with(|| Ran {
            namespace: r.namespace.clone(),
            network_function: function,
            version: r.spec.version.clone(),
            stack_version: r.spec.stack.version.clone(),
            rollouts: 0,
            last_record: String::new(),
            last_started_at: String::new(),
            last_outcome: String::new(),
        });
        ran.rollouts += 1;
        if (&r.spec.started_at, &r.name) > (&ran.last_started_at, &ran.last_record) {
            ran.last_record = r.name;
            ran.last_started_at = r.spec.started_at;
            ran.last_outcome = format!("{:?}", r.status.outcome);
        }
    })
    .await?;
    let mut before: Vec<Ran> = before.into_values().collect();
    before.sort_by(|a, b| {
        (&b.last_started_at, &b.last_record).cmp(&(&a.last_started_at, &a.last_record))
    });
    let document = RunsOn {
        stack: args.stack,
        version: args.version,
        namespace: match cluster.scope {
            Scope::Namespace(ns) => Some(ns),
            Scope::All => None,
        },
        now,
        before,
    };
    output::emit(args.globals.output, &document, render);
    Ok(Verdict::Ready)
}

fn render(doc: &RunsOn) -> String {
    let stack = match &doc.version {
        Some(version) => format!("{} {version}", doc.stack),
        None => doc.stack.clone(),
    };
    let mut text = heading(&format!("Running on {stack} now"));
    let now = doc.now.iter().map(|r| {
        vec![
            r.namespace.clone(),
            r.name.clone(),
            r.version.clone(),
            r.stack_version.clone(),
            short_digest(&r.stack_digest),
            r.record.clone(),
            output::age(&r.deployed_at),
            ready_word(r.ready),
        ]
    });
    text += &table(
        &[
            "NAMESPACE",
            "FUNCTION",
            "VERSION",
            "STACK-VERSION",
            "STACK-DIGEST",
            "RECORD",
            "AGE",
            "STATE",
        ],
        now,
    );
    text += &heading("Ran on it before");
    let before = doc.before.iter().map(|r| {
        let tone = if r.last_outcome == "Failed" {
            Tone::Bad
        } else {
            Tone::Dim
        };
        vec![
            r.namespace.clone(),
            r.network_function.clone(),
            r.version.clone(),
            r.stack_version.clone(),
            r.rollouts.to_string(),
            r.last_record.clone(),
            r.last_started_at.clone(),
            paint(tone, &r.last_outcome),
        ]
    });
    text += &table(
        &[
            "NAMESPACE",
            "FUNCTION",
            "VERSION",
            "STACK-VERSION",
            "ROLLOUTS",
            "LAST-RECORD",
            "LAST-STARTED",
            "LAST-OUTCOME",
        ],
        before,
    );
    text.trim_start().to_string()
}
