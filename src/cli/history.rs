//! `strata history nf NAME`: a function's DeploymentRecords, newest first
//! (by start time; records started in the same second by their
//! `previousRecord` links), read a page at a time. Records outlive their
//! function, so a deleted function still has its history.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use clap::{Args as ClapArgs, ValueEnum};
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use super::connect::{Globals, Scope};
use super::output::{self, Tone, or_dash, paint, short_digest, table};
use super::pages::{self, RecordPage};
use super::{Result, Verdict};
use crate::api::{LABEL_NETWORK_FUNCTION, StackRevisionRef, promotion::Evidence};

/// The kinds with a history.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Kind {
    /// A NetworkFunction.
    #[value(alias = "networkfunction", alias = "networkfunctions")]
    Nf,
}

/// `strata history nf NAME`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// nf.
    pub kind: Kind,
    /// The function's name.
    pub name: String,
    /// Show only the newest N records (0: all).
    #[arg(long, default_value_t = 0)]
    pub limit: usize,
    /// Records read per request.
    #[arg(long, default_value_t = pages::DEFAULT_CHUNK)]
    pub chunk_size: u32,
    #[command(flatten)]
    pub globals: Globals,
}

/// The document `history` prints with `-o json|yaml`.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct History {
    /// The function's name.
    pub network_function: String,
    /// Its namespace; absent with `-A`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its records, newest first.
    pub records: Vec<Entry>,
}

/// One rollout.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The record's namespace.
    pub namespace: String,
    /// The record's name.
    pub name: String,
    /// When the rollout started (RFC 3339).
    pub started_at: String,
    /// When its outcome became final.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    /// From start to final outcome, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i64>,
    /// The function version.
    pub version: String,
    /// The image.
    pub image: String,
    /// The Stack, version and digest it was deployed with.
    pub stack: StackRevisionRef,
    /// The configuration's digest.
    pub config_digest: String,
    /// Progressing, Succeeded, Failed or Superseded.
    pub outcome: String,
    /// The record this rollout followed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_record: Option<String>,
    /// The uid of the function (tells apart a function deleted and created again).
    pub function_uid: String,
    /// Upstream evidence of a gated rollout (`spec.verifiedIn`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verified_in: Vec<Evidence>,
}

impl Entry {
    fn from_record(r: RecordPage) -> Self {
        let started = r.spec.started_at.parse::<Timestamp>().ok();
        let completed = r
            .status
            .completed_at
            .as_deref()
            .and_then(|c| c.parse::<Timestamp>().ok());
        Entry {
            namespace: r.namespace,
            name: r.name,
            duration_seconds: started
                .zip(completed)
                .map(|(s, c)| c.duration_since(s).as_secs()),
            started_at: r.spec.started_at,
            completed_at: r.status.completed_at,
            version: r.spec.version,
            image: r.spec.image,
            stack: r.spec.stack,
            config_digest: r.spec.config_digest,
            outcome: format!("{:?}", r.status.outcome),
            previous_record: r.spec.previous_record,
            function_uid: r.spec.network_function.uid,
            verified_in: r.spec.verified_in,
        }
    }

    /// Newer sorts greater: start time, then name (a stable tie-break
    /// that [`newest_first`] refines by the records' links).
    fn key(&self) -> (Option<Timestamp>, Reverse<String>) {
        (self.started_at.parse().ok(), Reverse(self.name.clone()))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Eq for Entry {}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// Runs `strata history`.
pub async fn run(args: Args) -> Result<Verdict> {
    let cluster = args.globals.connect().await?;
    let selector = format!("{LABEL_NETWORK_FUNCTION}={}", args.name);
    // The newest `limit` so far (a min-heap), or everything, reduced to entries.
    let mut kept: BinaryHeap<Reverse<Entry>> = BinaryHeap::new();
    pages::each_record(&cluster, &selector, args.chunk_size, |record| {
        kept.push(Reverse(Entry::from_record(record)));
        if args.limit > 0 && kept.len() > args.limit {
            kept.pop();
        }
    })
    .await?;
    let history = History {
        network_function: args.name,
        namespace: match cluster.scope {
            Scope::Namespace(ns) => Some(ns),
            Scope::All => None,
        },
        records: newest_first(kept.into_iter().map(|Reverse(e)| e).collect()),
    };
    output::emit(args.globals.output, &history, render);
    Ok(Verdict::Ready)
}

/// Newest first: by start time; within one second, each record before the
/// one it names as `previousRecord`.
pub fn newest_first(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by(|a, b| b.cmp(a));
    let mut ordered = Vec::with_capacity(entries.len());
    let mut rest = entries.into_iter().peekable();
    while let Some(first) = rest.next() {
        let mut group = vec![first];
        while let Some(next) = rest.next_if(|e| e.started_at == group[0].started_at) {
            group.push(next);
        }
        ordered.extend(by_links(group));
    }
    ordered
}

/// One second's records: heads (named by no other) first, each followed
/// by the records it links back to.
fn by_links(mut group: Vec<Entry>) -> Vec<Entry> {
    if group.len() < 2 {
        return group;
    }
    let named: BTreeSet<String> = group
        .iter()
        .filter_map(|e| e.previous_record.clone())
        .collect();
    let mut ordered = Vec::with_capacity(group.len());
    while !group.is_empty() {
        let head = group
            .iter()
            .position(|e| !named.contains(&e.name))
            .unwrap_or(0);
        let mut entry = group.remove(head);
        loop {
            let previous = entry.previous_record.clone();
            ordered.push(entry);
            let Some(at) = previous.and_then(|p| group.iter().position(|e| e.name == p)) else {
                break;
            };
            entry = group.remove(at);
        }
    }
    ordered
}

fn render(history: &History) -> String {
    let rows = history.records.iter().map(|e| {
        let outcome = paint(
            match e.outcome.as_str() {
                "Succeeded" => Tone::Good,
                "Failed" => Tone::Bad,
                "Progressing" => Tone::Waiting,
                _ => Tone::Dim,
            },
            &e.outcome,
        );
        let image = match e.image.split_once('@') {
            Some((name, digest)) => format!("{name}@{}", short_digest(digest)),
            None => e.image.clone(),
        };
        let duration = output::between(&e.started_at, e.completed_at.as_deref());
        let evidence = e
            .verified_in
            .iter()
            .map(|v| format!("{}/{} ({})", v.namespace, v.record, v.soaked));
        [
            e.namespace.clone(),
            e.name.clone(),
            e.started_at.clone(),
            e.version.clone(),
            image,
            e.stack.version.clone(),
            short_digest(&e.stack.digest),
            short_digest(&e.config_digest),
            outcome,
            or_dash(duration.as_deref()),
            or_dash(Some(&evidence.collect::<Vec<_>>().join(","))),
        ]
    });
    let mut header = vec![
        "NAMESPACE",
        "RECORD",
        "STARTED",
        "VERSION",
        "IMAGE",
        "STACK-VERSION",
        "STACK-DIGEST",
        "CONFIG",
        "OUTCOME",
        "DURATION",
        "VERIFIED-IN",
    ];
    // In one namespace, the column says nothing.
    let skip = usize::from(history.namespace.is_some());
    header.drain(..skip);
    table(&header, rows.map(|row| row.into_iter().skip(skip)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, started: &str, previous: Option<&str>) -> Entry {
        Entry {
            namespace: "telco".into(),
            name: name.into(),
            started_at: started.into(),
            completed_at: None,
            duration_seconds: None,
            version: "2.3.1".into(),
            image: "registry.example/upf@sha256:4b1e".into(),
            stack: StackRevisionRef::default(),
            config_digest: "sha256:77aa".into(),
            outcome: "Succeeded".into(),
            previous_record: previous.map(Into::into),
            function_uid: "u1".into(),
            verified_in: vec![],
        }
    }

    #[test]
    fn newest_first_by_time_then_by_links_within_a_second() {
        let same = "2026-11-20T10:00:05Z";
        let entries = vec![
            entry("upf-a", "2026-11-20T10:00:00Z", None),
            entry("upf-z", same, Some("upf-a")),
            entry("upf-b", same, Some("upf-z")),
            entry("upf-c", same, Some("upf-b")),
            entry("upf-d", "2026-11-20T10:01:00Z", Some("upf-c")),
        ];
        let names: Vec<String> = newest_first(entries).into_iter().map(|e| e.name).collect();
        assert_eq!(names, ["upf-d", "upf-c", "upf-b", "upf-z", "upf-a"]);
    }

    #[test]
    fn the_newest_n_are_kept_while_paging() {
        let mut kept = BinaryHeap::new();
        for minute in 0..50 {
            kept.push(Reverse(entry(
                &format!("upf-{minute:02}"),
                &format!("2026-11-20T10:{minute:02}:00Z"),
                None,
            )));
            if kept.len() > 3 {
                kept.pop();
            }
        }
        let names: Vec<String> = newest_first(kept.into_iter().map(|Reverse(e)| e).collect())
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, ["upf-49", "upf-48", "upf-47"]);
    }
}
