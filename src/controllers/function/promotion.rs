//! Whether upstream records verify an artifact: it Succeeded there and ran
//! as its function's current rollout for at least the soak, continuously,
//! and no later rollout of it Failed. Pure: records and a clock in, a
//! verdict out.

use std::{sync::Arc, time::Duration};

use k8s_openapi::jiff::{Timestamp, Unit};

use crate::api::{DeploymentRecord, Outcome, promotion::format_duration};

/// What must have run upstream: the function version and image (pinned by
/// digest) on a Stack name and version. The Stack digest and the
/// configuration differ between environments (their parameters do).
#[derive(Debug, Clone, Copy)]
pub struct Artifact<'a> {
    pub version: &'a str,
    pub image: &'a str,
    pub stack: &'a str,
    pub stack_version: &'a str,
}

impl Artifact<'_> {
    fn is(&self, record: &DeploymentRecord) -> bool {
        let spec = &record.spec;
        spec.version == self.version
            && spec.image == self.image
            && spec.stack.name == self.stack
            && spec.stack.version == self.stack_version
    }

    /// `upf 2.3.1 (image ...) on stack edge-net 1.5.0`, for messages.
    pub fn describe(&self, function: &str) -> String {
        format!(
            "{function} {} ({}) on stack {} {}",
            self.version, self.image, self.stack, self.stack_version
        )
    }
}

/// What the upstream records say of an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `record` ran Succeeded for `soaked`, at least the soak.
    Verified { record: String, soaked: Duration },
    /// `record` runs Succeeded now, since `since`: `soaked` of the `needed`.
    Soaking {
        record: String,
        since: Timestamp,
        soaked: Duration,
        needed: Duration,
    },
    /// A rollout of it Failed (`failed`) after the ones that had verified it.
    Revoked { failed: String },
    /// No rollout of it Succeeded there (long enough).
    NotVerified,
}

impl Verdict {
    /// The condition reason for a verdict that holds the function back.
    pub fn reason(&self) -> &'static str {
        match self {
            Verdict::Verified { .. } => "Verified",
            Verdict::Soaking { .. } => "Soaking",
            Verdict::Revoked { .. } => "VerificationRevoked",
            Verdict::NotVerified => "NotVerifiedUpstream",
        }
    }

    /// When to look again on its own: the moment the soak ends.
    pub fn recheck(&self) -> Option<Duration> {
        match self {
            Verdict::Soaking { soaked, needed, .. } => Some(needed.saturating_sub(*soaked)),
            _ => None,
        }
    }

    /// Why it holds the function back, in one clause, for `where_` (e.g. `staging/upf`).
    pub fn explain(&self, where_: &str) -> String {
        match self {
            Verdict::Verified { record, soaked } => {
                format!(
                    "verified in {where_} by record {record} (soaked {})",
                    format_duration(*soaked)
                )
            }
            // The same words until the soak ends (no status write, no Event
            // per look): when it started and when it ends.
            Verdict::Soaking {
                record,
                since,
                needed,
                ..
            } => {
                let ends = since.checked_add(*needed).map_or_else(
                    |_| "?".to_string(),
                    |t| t.round(Unit::Second).unwrap_or(t).to_string(),
                );
                format!(
                    "soaking in {where_}: record {record} has run Succeeded since {}, and must for {} (until {ends})",
                    since.round(Unit::Second).unwrap_or(*since),
                    format_duration(*needed)
                )
            }
            Verdict::Revoked { failed } => format!(
                "verification in {where_} revoked: a later rollout of the same artifact failed there (record {failed})"
            ),
            Verdict::NotVerified => {
                format!("not verified in {where_}: no rollout of it succeeded there")
            }
        }
    }
}

/// What `records` (one upstream function's) say of `artifact`, `soak`
/// being required, at `now`.
pub fn verify(
    records: &[Arc<DeploymentRecord>],
    artifact: &Artifact<'_>,
    soak: Duration,
    now: Timestamp,
) -> Verdict {
    let same: Vec<&DeploymentRecord> = records
        .iter()
        .map(AsRef::as_ref)
        .filter(|r| artifact.is(r))
        .collect();
    let started = |r: &DeploymentRecord| r.spec.started_at.parse::<Timestamp>().ok();
    // The latest failed rollout of it revokes every rollout started before
    // it; one whose start cannot be read revokes them all.
    let failed = same
        .iter()
        .filter(|r| outcome(r) == Outcome::Failed)
        .map(|r| (started(r).unwrap_or(Timestamp::MAX), r))
        .max_by_key(|(at, _)| *at);
    let starts: Vec<Timestamp> = records.iter().filter_map(|r| started(r)).collect();
    let mut revoked = None;
    let mut best: Option<Verdict> = None;
    for record in &same {
        // A record still Succeeded ran until the function's next rollout
        // started, whatever its uid: a function deleted and created again
        // under the same name does not leave its last record running.
        let next = started(record)
            .and_then(|at| starts.iter().filter(|other| **other > at).min().copied());
        let Some(window) = soaked(record, next.map_or(now, |n| n.min(now))) else {
            continue;
        };
        let window = Window {
            current: window.current && next.is_none(),
            ..window
        };
        if let Some((failed_at, failed)) = &failed
            && started(record).is_none_or(|at| at <= *failed_at)
        {
            revoked = Some(failed.metadata.name.clone().unwrap_or_default());
            continue;
        }
        let name = record.metadata.name.clone().unwrap_or_default();
        let candidate = if window.soaked >= soak {
            Verdict::Verified {
                record: name,
                soaked: window.soaked,
            }
        } else if window.current {
            Verdict::Soaking {
                record: name,
                since: window.since,
                soaked: window.soaked,
                needed: soak,
            }
        } else {
            continue;
        };
        best = Some(match (best, candidate) {
            (Some(v @ Verdict::Verified { .. }), _) => v,
            (_, c @ Verdict::Verified { .. }) => c,
            (Some(a), b) => {
                if a.recheck() <= b.recheck() {
                    a
                } else {
                    b
                }
            }
            (None, c) => c,
        });
    }
    best.unwrap_or(match revoked {
        Some(failed) => Verdict::Revoked { failed },
        None => Verdict::NotVerified,
    })
}

fn outcome(record: &DeploymentRecord) -> Outcome {
    record
        .status
        .as_ref()
        .map(|s| s.outcome)
        .unwrap_or_default()
}

/// How long `record` ran Succeeded as its function's current rollout.
struct Window {
    since: Timestamp,
    soaked: Duration,
    /// It still is the current rollout.
    current: bool,
}

/// The window `record` ran Succeeded in, if it did and the record tells
/// when: from `succeededAt` until `supersededAt`, or until `now`.
fn soaked(record: &DeploymentRecord, now: Timestamp) -> Option<Window> {
    let status = record.status.as_ref()?;
    // Records written before succeededAt existed: a Succeeded one's
    // completedAt is when it succeeded.
    let succeeded = status.succeeded_at.as_ref().or(status
        .completed_at
        .as_ref()
        .filter(|_| status.outcome == Outcome::Succeeded));
    let from: Timestamp = succeeded?.parse().ok()?;
    let (until, current) = match status.outcome {
        Outcome::Succeeded => (now, true),
        Outcome::Superseded => (status.superseded_at.as_ref()?.parse().ok()?, false),
        Outcome::Progressing | Outcome::Failed => return None,
    };
    let soaked = Duration::try_from(until.duration_since(from)).unwrap_or(Duration::ZERO);
    Some(Window {
        since: from,
        soaked,
        current,
    })
}

#[cfg(test)]
mod tests;
