//! How a Stack version is adopted by its consumers: in waves
//! (`consumerRollout.steps`), a few at a time, halting when too many fail.
//!
//! Everything here is read from the consumers themselves (each one's
//! `status.deployedWith` and conditions), never from a count the Stack
//! wrote earlier, so the Stack controller (which reports the adoption) and
//! the NetworkFunction controller (which moves one consumer at a time)
//! reach the same answer from the same cache. Pure: no client, no clock.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::{Selector, SelectorExt};
use semver::Version;

use super::conditions;
use crate::{
    Error, Result,
    api::{
        NetworkFunction,
        function::{Provenance, UpdatePolicy},
        stack::{AdoptionPhase, AdoptionStatus, ConsumerRollout, FailedAdoption},
        version::requirement,
    },
};

/// Reason of the function's Stalled condition when its rollout failed.
pub const ROLLOUT_FAILED: &str = "RolloutFailed";
/// Reason of the Stack's Ready=False (and Reconciling) while its consumers
/// adopt the applied version.
pub const ADOPTING: &str = "Adopting";
/// Reason of the Stack's Ready=False (and Stalled) when the adoption halted,
/// and of a waiting consumer's Reconciling.
pub const ADOPTION_HALTED: &str = "AdoptionHalted";

/// Whether a Stack's conditions say its version is applied: Ready, or not
/// Ready only because its consumers are adopting the version or their
/// adoption halted (the version is in place, the consumers that moved run
/// on it, and the failed ones must be able to recover on it).
pub fn applied(conds: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition]) -> bool {
    conditions::is_true(conds, conditions::READY)
        || conditions::get(conds, conditions::READY)
            .is_some_and(|c| c.reason == ADOPTING || c.reason == ADOPTION_HALTED)
}

/// The Stack revision being adopted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target<'a> {
    /// The Stack's version.
    pub version: &'a str,
    /// The digest of its content.
    pub digest: &'a str,
}

/// Where one consumer stands in the adoption of a target revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Runs the target revision and is Ready.
    Adopted,
    /// Rolled out onto the target revision, not Ready yet.
    Moving,
    /// Its move onto the target revision failed.
    Failed(FailedAdoption),
    /// Still on another revision.
    Pending,
    /// Not part of the adoption: `updatePolicy: Manual`, a requirement the
    /// target version does not satisfy, never deployed, Stalled by its own
    /// spec, or a failure of its own change.
    Excluded,
}

/// Where `nf` stands in the adoption of `target`.
pub fn standing(nf: &NetworkFunction, target: &Target<'_>) -> Standing {
    if nf.spec.stack_ref.update_policy == UpdatePolicy::Manual || !accepts(nf, target.version) {
        return Standing::Excluded;
    }
    let status = nf.status.clone().unwrap_or_default();
    // A function that never ran has nothing to adopt: its first rollout is its own.
    let Some(deployed) = &status.deployed_with else {
        return Standing::Excluded;
    };
    let stalled = conditions::get(&status.conditions, conditions::STALLED)
        .filter(|c| c.status == "True")
        .map(|c| c.reason.as_str());
    if deployed.stack.version != target.version || deployed.stack.digest != target.digest {
        // Stalled by its own spec (a dependency cycle, an invalid field), it
        // cannot move until that is fixed: not the adoption's to wait for.
        return match stalled {
            Some(reason) if reason != ROLLOUT_FAILED => Standing::Excluded,
            _ => Standing::Pending,
        };
    }
    let ready = conditions::is_true(&status.conditions, conditions::READY)
        && status.observed_generation == nf.metadata.generation;
    if deployed.ready_at.is_some() && ready {
        return Standing::Adopted;
    }
    let failed = conditions::get(&status.conditions, conditions::STALLED)
        .filter(|c| c.status == "True" && c.reason == ROLLOUT_FAILED);
    // Only a move from another revision of the Stack is an adoption; a
    // first rollout, or one of the function's own changes, is not.
    let adopting = status.history.first().is_some_and(|p| moved(p, deployed));
    match failed {
        Some(c) if adopting => Standing::Failed(FailedAdoption {
            name: nf.metadata.name.clone().unwrap_or_default(),
            record: deployed.record.clone(),
            reason: c.message.clone(),
        }),
        None if adopting => Standing::Moving,
        _ => Standing::Excluded,
    }
}

/// Whether the function's stack requirement accepts `version`.
fn accepts(nf: &NetworkFunction, version: &str) -> bool {
    let wanted = requirement("spec.stackRef.version", &nf.spec.stack_ref.version);
    match (wanted, Version::parse(version)) {
        (Ok(wanted), Ok(version)) => wanted.matches(&version),
        _ => false,
    }
}

/// Whether the rollout `to` after `from` only moved the function to
/// another revision of its Stack (an adoption, not a change of its own).
pub fn moved(from: &Provenance, to: &Provenance) -> bool {
    from.version == to.version
        && from.image == to.image
        && from.config_digest == to.config_digest
        && from.stack.name == to.stack.name
        && from.stack != to.stack
}

/// One step of the adoption and its consumers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// Its name; `None` for the consumers no step selects.
    pub name: Option<String>,
    /// Its own concurrency, if it has one.
    pub max_concurrent: Option<IntOrString>,
    /// Its consumers and where each stands, by name.
    pub members: BTreeMap<String, Standing>,
}

impl Step {
    /// Whether every counted consumer of the step runs the target and is Ready.
    fn done(&self) -> bool {
        self.members
            .values()
            .all(|s| matches!(s, Standing::Adopted | Standing::Excluded))
    }
}

/// The adoption of a target revision by a Stack's consumers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The steps, in order (the consumers no step selects last).
    pub steps: Vec<Step>,
    /// The first step not done: the one whose consumers may move now.
    pub current: Option<usize>,
    /// The consumers whose move failed.
    pub failed: Vec<FailedAdoption>,
    /// How many failures are tolerated.
    pub max_failures: usize,
}

impl Plan {
    /// Whether more consumers failed than tolerated: none moves further.
    pub fn halted(&self) -> bool {
        self.failed.len() > self.max_failures
    }

    /// The step `consumer` belongs to.
    /// `consumer` asks to move onto the target: it runs another revision of
    /// the Stack, as its records tell, whatever its status says yet (a
    /// killed predecessor may have started its first rollout without
    /// writing it down, and a status without one reads as never ran). It
    /// counts as pending, never as excluded, so that the adoption is not
    /// taken for complete, and its move for free, while it asks.
    pub fn asking(&mut self, consumer: &str) {
        for step in &mut self.steps {
            if let Some(standing) = step.members.get_mut(consumer)
                && *standing == Standing::Excluded
            {
                *standing = Standing::Pending;
            }
        }
        self.current = first_not_done(&self.steps);
    }

    pub fn step_of(&self, consumer: &str) -> Option<usize> {
        self.steps
            .iter()
            .position(|s| s.members.contains_key(consumer))
    }

    /// The adoption as `status.rollout` reports it.
    pub fn status(&self, version: &str) -> AdoptionStatus {
        let count = |f: fn(&Standing) -> bool| {
            let n = self
                .steps
                .iter()
                .flat_map(|s| s.members.values())
                .filter(|s| f(s))
                .count();
            i32::try_from(n).unwrap_or(i32::MAX)
        };
        let pending = count(|s| matches!(s, Standing::Pending | Standing::Moving));
        let phase = if self.halted() {
            AdoptionPhase::Halted
        } else if pending == 0 && self.failed.is_empty() {
            AdoptionPhase::Complete
        } else {
            AdoptionPhase::Progressing
        };
        let step = self
            .current
            .and_then(|i| self.steps[i].name.clone())
            .filter(|_| phase != AdoptionPhase::Complete);
        AdoptionStatus {
            version: version.to_string(),
            step,
            phase,
            adopted: count(|s| matches!(s, Standing::Adopted)),
            pending,
            failed: self.failed.clone(),
        }
    }

    /// One sentence on why the adoption halted, naming each failed consumer,
    /// its record and why it failed.
    pub fn halt_message(&self, stack: &str, version: &str) -> String {
        let failures: Vec<String> = self
            .failed
            .iter()
            .map(|f| format!("{} (record {}: {})", f.name, f.record, f.reason))
            .collect();
        format!(
            "adoption of stack {stack} {version} halted: {} failed on it, consumerRollout.maxFailures allows {}: {}; consumers not yet moved keep running their version (fix forward with a new version, roll back, or fix the failed consumers)",
            match self.failed.len() {
                1 => "1 consumer".to_string(),
                n => format!("{n} consumers"),
            },
            self.max_failures,
            failures.join("; ")
        )
    }
}

/// The adoption of `target` by `consumers` under `rollout`. Fails only on a
/// step selector that is not a valid label selector.
pub fn plan(
    rollout: &ConsumerRollout,
    consumers: &[Arc<NetworkFunction>],
    target: &Target<'_>,
) -> Result<Plan> {
    let selectors = rollout
        .steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            step.selector
                .clone()
                .map(Selector::try_from)
                .transpose()
                .map_err(|e| {
                    Error::InvalidField(format!("spec.consumerRollout.steps[{i}].selector: {e}"))
                })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut steps: Vec<Step> = rollout
        .steps
        .iter()
        .map(|s| Step {
            name: Some(s.name.clone()),
            max_concurrent: s.max_concurrent.clone(),
            members: BTreeMap::new(),
        })
        .chain(std::iter::once(Step {
            name: None,
            max_concurrent: None,
            members: BTreeMap::new(),
        }))
        .collect();
    let mut failed = Vec::new();
    let mut counted = 0;
    for nf in consumers {
        let labels = nf.metadata.labels.clone().unwrap_or_default();
        let at = selectors
            .iter()
            .position(|s| s.as_ref().is_none_or(|s| s.matches(&labels)))
            .unwrap_or(selectors.len());
        let standing = standing(nf, target);
        if let Standing::Failed(failure) = &standing {
            failed.push(failure.clone());
        }
        counted += usize::from(standing != Standing::Excluded);
        let name = nf.metadata.name.clone().unwrap_or_default();
        steps[at].members.insert(name, standing);
    }
    if steps.last().is_some_and(|s| s.members.is_empty()) && steps.len() > 1 {
        steps.pop();
    }
    let current = first_not_done(&steps);
    Ok(Plan {
        steps,
        current,
        failed,
        max_failures: failure_budget(&rollout.max_failures, counted),
    })
}

/// The first step not done: the one whose consumers may move now.
fn first_not_done(steps: &[Step]) -> Option<usize> {
    steps.iter().position(|s| !s.done())
}

/// How many of `consumers` may move at once under `max`: an integer, or a
/// percentage rounded up; never less than one.
pub fn concurrency_budget(max: &IntOrString, consumers: usize) -> usize {
    let budget = match max {
        IntOrString::Int(n) => usize::try_from(*n).unwrap_or(1),
        IntOrString::String(s) => {
            let percent: usize = s.trim_end_matches('%').parse().unwrap_or(25);
            (consumers * percent).div_ceil(100)
        }
    };
    budget.max(1)
}

/// How many of `consumers` may fail under `max`: an integer, or a
/// percentage rounded down.
pub fn failure_budget(max: &IntOrString, consumers: usize) -> usize {
    match max {
        IntOrString::Int(n) => usize::try_from(*n).unwrap_or(0),
        IntOrString::String(s) => {
            let percent: usize = s.trim_end_matches('%').parse().unwrap_or(0);
            consumers * percent / 100
        }
    }
}

#[cfg(test)]
mod tests;
