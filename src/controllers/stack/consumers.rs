//! A Stack's consumers: the NetworkFunctions that reference it, counted in
//! its status (how many, how many run the current version) and in the
//! metrics (how many run each version). While many consumers adopt a new
//! version, a status write that changes only the counts is held back until
//! the counts settle.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use kube::{ResourceExt, runtime::reflector::ObjectRef};

use super::{Context, locked};
use crate::api::{
    NetworkFunction, Stack, StackStatus,
    stack::{AdoptionStatus, Consumers},
};

/// A status write that changes only the consumer counts waits until they
/// have not changed for this long: while a hundred consumers roll out, the
/// counts move with every one of them (a few seconds apart on a busy API
/// server), and only where they end is news.
const CONSUMER_COUNT_SETTLE: Duration = Duration::from_secs(5);
/// ... but no longer than this after the previous status write, so counts
/// that keep moving are still seen to move.
const CONSUMER_COUNT_MAX_DELAY: Duration = Duration::from_secs(15);

/// The counts a Stack's status shows: its consumers, and the adoption's
/// adopted and pending counts.
type Counts = (Option<Consumers>, Option<(i32, i32)>);

/// When a Stack's status was last written, and the counts a write holds
/// back since when.
#[derive(Default)]
pub(super) struct CountWrites {
    written: Option<Instant>,
    held: Option<(Counts, Instant)>,
}

/// NetworkFunctions in the Stack's namespace that reference it, by name.
pub(super) fn consumer_functions(ctx: &Context, ns: &str, name: &str) -> Vec<Arc<NetworkFunction>> {
    ctx.relations
        .consumers_of(ns, name)
        .into_iter()
        .filter_map(|nf| {
            ctx.stores
                .functions
                .get(&ObjectRef::<NetworkFunction>::new(&nf).within(ns))
        })
        .collect()
}

/// The Stack's consumers, counted against the Stack `version` applied.
pub(super) fn consumers(
    stack: &Stack,
    ctx: &Context,
    ns: &str,
    version: Option<&str>,
) -> Consumers {
    count(&consumer_functions(ctx, ns, &stack.name_any()), version)
}

/// How many of `functions` there are, and how many run `version` (none
/// when no version is applied yet).
fn count(functions: &[Arc<NetworkFunction>], version: Option<&str>) -> Consumers {
    let on_current = functions
        .iter()
        .filter(|nf| version.is_some() && deployed_version(nf) == version)
        .count();
    Consumers {
        total: i32::try_from(functions.len()).unwrap_or(i32::MAX),
        on_current_version: i32::try_from(on_current).unwrap_or(i32::MAX),
    }
}

/// The Stack version `nf` was last deployed with.
fn deployed_version(nf: &NetworkFunction) -> Option<&str> {
    nf.status
        .as_ref()
        .and_then(|s| s.deployed_with.as_ref())
        .map(|d| d.stack.version.as_str())
}

/// Sets the consumers-per-version gauge of the Stack.
pub(super) fn record_metrics(ctx: &Context, ns: &str, stack: &Stack, status: &StackStatus) {
    let functions = consumer_functions(ctx, ns, &stack.name_any());
    for (version, count) in by_version(status, &functions) {
        ctx.metrics
            .stack_consumers
            .with_label_values(&[ns, &stack.name_any(), &version])
            .set(count);
    }
}

/// How many of `functions` run each version: every version in the history
/// (zero when none does, so a gauge left from earlier falls back), and any
/// other a function was deployed with.
fn by_version(status: &StackStatus, functions: &[Arc<NetworkFunction>]) -> BTreeMap<String, i64> {
    let mut counts: BTreeMap<String, i64> = status
        .history
        .iter()
        .map(|h| (h.version.clone(), 0))
        .collect();
    for version in functions.iter().filter_map(|nf| deployed_version(nf)) {
        *counts.entry(version.to_string()).or_default() += 1;
    }
    counts
}

/// How long to hold back a status write that only changes the consumer
/// counts; `None` when it is due (or more than the counts changed).
pub(super) fn count_write_wait(
    ctx: &Context,
    uid: &str,
    old: &StackStatus,
    new: &StackStatus,
) -> Option<Duration> {
    if !only_counts_changed(old, new) {
        return None;
    }
    let mut writes = locked(&ctx.state.count_writes);
    hold(
        writes.entry(uid.to_string()).or_default(),
        counts(new),
        Instant::now(),
    )
}

/// How long `writes` holds back a write of `counts` at `now`: until they
/// have been the same for [`CONSUMER_COUNT_SETTLE`], at most
/// [`CONSUMER_COUNT_MAX_DELAY`] after the last write. Due at once when no
/// write is known (a restarted process).
fn hold(writes: &mut CountWrites, counts: Counts, now: Instant) -> Option<Duration> {
    let written = writes.written?;
    let since = match &writes.held {
        Some((held, since)) if *held == counts => *since,
        _ => {
            writes.held = Some((counts, now));
            now
        }
    };
    let due = (since + CONSUMER_COUNT_SETTLE).min(written + CONSUMER_COUNT_MAX_DELAY);
    due.checked_duration_since(now).filter(|d| !d.is_zero())
}

/// The counts `status` shows.
fn counts(status: &StackStatus) -> Counts {
    (
        status.consumers.clone(),
        status.rollout.as_ref().map(|r| (r.adopted, r.pending)),
    )
}

/// Notes that the Stack's status was written now.
pub(super) fn status_written(ctx: &Context, uid: String) {
    locked(&ctx.state.count_writes).insert(
        uid,
        CountWrites {
            written: Some(Instant::now()),
            held: None,
        },
    );
}

/// Whether `new` differs from `old` in the consumer counts alone (the
/// adoption's counts included, not its phase, step or failures).
fn only_counts_changed(old: &StackStatus, new: &StackStatus) -> bool {
    let rollout = match (&old.rollout, &new.rollout) {
        (Some(old), Some(new)) => Some(AdoptionStatus {
            adopted: old.adopted,
            pending: old.pending,
            ..new.clone()
        }),
        (_, new) => new.clone(),
    };
    StackStatus {
        consumers: old.consumers.clone(),
        rollout,
        ..new.clone()
    } == *old
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        NetworkFunctionStatus, StackRevisionRef, function::Provenance, stack::AppliedRevision,
    };

    /// A consumer of Stack `edge`, deployed with `version` when there is one.
    fn function(name: &str, version: Option<&str>) -> Arc<NetworkFunction> {
        let mut nf: NetworkFunction = serde_yaml::from_str(&format!(
            "metadata: {{name: {name}, namespace: telco}}\n\
             spec: {{version: 1.0.0, image: i, stackRef: {{name: edge, version: '*'}}}}"
        ))
        .unwrap();
        nf.status = version.map(|v| NetworkFunctionStatus {
            deployed_with: Some(Provenance {
                stack: StackRevisionRef {
                    name: "edge".into(),
                    version: v.into(),
                    digest: "sha256:d".into(),
                },
                ..Provenance::default()
            }),
            ..NetworkFunctionStatus::default()
        });
        Arc::new(nf)
    }

    #[test]
    fn consumers_are_counted_against_the_applied_version() {
        let fleet = [
            function("upf-1", Some("1.1.0")),
            function("upf-2", Some("1.0.0")),
            function("upf-3", None),
            function("upf-4", Some("1.1.0")),
        ];
        let none: &[Arc<NetworkFunction>] = &[];
        let cases = [
            (&fleet[..], Some("1.1.0"), (4, 2)),
            (&fleet[..], Some("1.0.0"), (4, 1)),
            (&fleet[..], Some("2.0.0"), (4, 0)),
            (&fleet[..], None, (4, 0)),
            (none, Some("1.1.0"), (0, 0)),
        ];
        for (functions, version, (total, on_current_version)) in cases {
            assert_eq!(
                count(functions, version),
                Consumers {
                    total,
                    on_current_version
                },
                "{version:?}"
            );
        }
    }

    #[test]
    fn every_version_in_the_history_has_a_count() {
        let status = StackStatus {
            history: ["1.1.0", "1.0.0"]
                .map(|v| AppliedRevision {
                    version: v.into(),
                    digest: "sha256:d".into(),
                    applied_at: "2026-11-20T10:00:00Z".into(),
                })
                .into(),
            ..StackStatus::default()
        };
        let fleet = [
            function("upf-1", Some("1.1.0")),
            function("upf-2", Some("0.9.0")),
            function("upf-3", None),
            function("upf-4", Some("1.1.0")),
        ];
        let counts: Vec<_> = by_version(&status, &fleet).into_iter().collect();
        assert_eq!(
            counts,
            [
                ("0.9.0".to_string(), 1),
                ("1.0.0".to_string(), 0),
                ("1.1.0".to_string(), 2)
            ]
        );
    }

    /// While the counts keep moving, one write per
    /// [`CONSUMER_COUNT_MAX_DELAY`]; once they stop, one write
    /// [`CONSUMER_COUNT_SETTLE`] later.
    #[test]
    fn count_writes_wait_for_the_counts_to_settle() {
        let start = Instant::now();
        let at = |d: Duration| start + d;
        let counts = |n: i32| -> Counts {
            (
                Some(Consumers {
                    total: 10,
                    on_current_version: n,
                }),
                None,
            )
        };
        let mut writes = CountWrites::default();
        assert_eq!(
            hold(&mut writes, counts(1), start),
            None,
            "no write known: due"
        );
        writes = CountWrites {
            written: Some(start),
            held: None,
        };
        // A consumer moves every second: each new count restarts the settling...
        let settle = CONSUMER_COUNT_SETTLE;
        let max = CONSUMER_COUNT_MAX_DELAY;
        let mut n = 0;
        let mut now = Duration::from_secs(1);
        while now + settle <= max {
            assert_eq!(
                hold(&mut writes, counts(n), at(now)),
                Some(settle),
                "at {now:?}"
            );
            n += 1;
            now += Duration::from_secs(1);
        }
        // ... up to the longest delay after the last write.
        assert_eq!(hold(&mut writes, counts(n), at(now)), Some(max - now));
        assert_eq!(hold(&mut writes, counts(n + 1), at(max)), None);
        // Counts that stopped moving are due once they have settled.
        writes = CountWrites {
            written: Some(at(max)),
            held: None,
        };
        let later = max + Duration::from_secs(1);
        assert_eq!(hold(&mut writes, counts(n + 2), at(later)), Some(settle));
        let half = settle / 2;
        assert_eq!(
            hold(&mut writes, counts(n + 2), at(later + half)),
            Some(settle - half)
        );
        assert_eq!(hold(&mut writes, counts(n + 2), at(later + settle)), None);
    }

    #[test]
    fn only_a_change_of_the_counts_alone_is_coalesced() {
        let old = StackStatus {
            version: Some("1.0.0".into()),
            consumers: Some(Consumers {
                total: 3,
                on_current_version: 1,
            }),
            ..StackStatus::default()
        };
        let counts = StackStatus {
            consumers: Some(Consumers {
                total: 3,
                on_current_version: 2,
            }),
            ..old.clone()
        };
        let version = StackStatus {
            version: Some("1.1.0".into()),
            ..counts.clone()
        };
        assert!(only_counts_changed(&old, &counts));
        assert!(only_counts_changed(&old, &old));
        assert!(!only_counts_changed(&old, &version));
    }
}
