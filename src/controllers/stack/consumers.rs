//! A Stack's consumers: the NetworkFunctions that reference it, counted in
//! its status (how many, how many run the current version) and in the
//! metrics (how many run each version). While many consumers adopt a new
//! version, a status write that changes only the counts is coalesced.

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

/// Consumer counts alone are written at most this often per Stack: while a
/// hundred consumers adopt a version, one write a second says how far they
/// are, instead of one write per consumer.
const CONSUMER_COUNT_INTERVAL: Duration = Duration::from_secs(1);

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
    let last = *locked(&ctx.state.last_status_write).get(uid)?;
    CONSUMER_COUNT_INTERVAL.checked_sub(last.elapsed())
}

/// Notes that the Stack's status was written now.
pub(super) fn status_written(ctx: &Context, uid: String) {
    locked(&ctx.state.last_status_write).insert(uid, Instant::now());
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
