//! The first thing keeping an object from moving, in plain words, read
//! from conditions. The order is the controller's: a Stalled object first;
//! then the gates in the order they are passed (`DependenciesReady`,
//! `StackResolved`); then any other condition that is False, so a gate
//! added later (`Verified`) is named without a change here; then the holds
//! that leave their condition looking fine (a Manual policy, a queued
//! adoption); then the Stack's own halt (`AdoptionHalted`), read the same
//! way; last, a Ready=False that nothing else explains.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use serde::Serialize;

use super::trace::view::{DependencyLink, HopLink, StackLink, State};
use crate::api::{NetworkFunction, ServiceChain, Stack};
use crate::controllers::conditions::{self, READY, RECONCILING, STALLED};

/// A NetworkFunction's gates, in the order the controller passes them.
const FUNCTION_GATES: &[&str] = &["DependenciesReady", "StackResolved"];

/// Reasons that hold an object back while their condition is not a
/// failure: (condition type, reason).
const HOLDS: &[(&str, &str)] = &[(RECONCILING, "Queued"), ("StackResolved", "HeldByPolicy")];

/// The first thing keeping an object from moving.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Blocker {
    /// The kind of the object that blocks: `NetworkFunction`, `Stack`,
    /// `DeploymentRecord` or `ServiceChain`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its version, where it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The condition type that tells (`StackResolved`, `Stalled`, ...).
    pub condition: String,
    /// That condition's reason (`StackVersionMismatch`, `HeldByPolicy`, ...).
    pub reason: String,
    /// One sentence in plain words.
    pub message: String,
}

impl Blocker {
    fn new(
        kind: &str,
        name: &str,
        version: Option<&str>,
        cause: &Condition,
        message: String,
    ) -> Self {
        Self {
            kind: kind.into(),
            name: name.into(),
            version: version.map(Into::into),
            condition: cause.type_.clone(),
            reason: cause.reason.clone(),
            message,
        }
    }
}

/// Where an object stands, from its conditions and its blocker.
pub fn state(conds: &[Condition], blocker: Option<&Blocker>) -> State {
    if conditions::is_true(conds, READY) {
        State::Ready
    } else if conditions::is_true(conds, STALLED) {
        State::Stalled
    } else if blocker.is_some() {
        State::Blocked
    } else {
        State::Progressing
    }
}

/// The conditions reporting a failure, first first: Stalled=True, then
/// `gates` that are False in order, then any other False condition.
fn failing<'a>(conds: &'a [Condition], gates: &[&str]) -> Vec<&'a Condition> {
    let stalled = conditions::get(conds, STALLED).filter(|c| c.status == "True");
    let gated = gates
        .iter()
        .filter_map(|gate| conditions::get(conds, gate))
        .filter(|c| c.status == "False");
    let others = conds.iter().filter(|c| {
        c.status == "False"
            && ![READY, RECONCILING, STALLED].contains(&c.type_.as_str())
            && !gates.contains(&c.type_.as_str())
    });
    stalled.into_iter().chain(gated).chain(others).collect()
}

/// The first hold among `conds` ([`HOLDS`]).
fn holding(conds: &[Condition]) -> Option<&Condition> {
    HOLDS.iter().find_map(|(type_, reason)| {
        conditions::get(conds, type_).filter(|c| c.reason == *reason && c.status == "True")
    })
}

/// A condition saying something is wrong with the object itself.
fn itself(kind: &str, name: &str, version: Option<&str>, cause: &Condition) -> Blocker {
    let message = match cause.type_.as_str() {
        STALLED => format!(
            "{name} cannot progress ({}): {}",
            cause.reason, cause.message
        ),
        READY => format!("{name} is not Ready ({}): {}", cause.reason, cause.message),
        other => format!("{other} is False ({}): {}", cause.reason, cause.message),
    };
    Blocker::new(kind, name, version, cause, message)
}

/// What blocks NetworkFunction `nf`, given its Stack and dependencies.
pub fn function(
    nf: &NetworkFunction,
    stack: &StackLink,
    deps: &[DependencyLink],
) -> Option<Blocker> {
    let name = nf.name_any();
    let version = Some(nf.spec.version.as_str());
    let conds = nf
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    if let Some(cause) = failing(conds, FUNCTION_GATES).first() {
        return Some(match (cause.type_.as_str(), cause.reason.as_str()) {
            (STALLED, "RolloutFailed") => {
                let record = nf
                    .status
                    .as_ref()
                    .and_then(|s| s.deployed_with.as_ref())
                    .map(|d| d.record.clone());
                let record = record.unwrap_or_else(|| name.clone());
                let message = format!(
                    "the rollout of {name} {} (record {record}) failed: {}",
                    nf.spec.version, cause.message
                );
                Blocker::new("DeploymentRecord", &record, version, cause, message)
            }
            // Without the dependencies read (a chain's hop), the operator's words.
            ("DependenciesReady", _) => dependency(deps, cause).unwrap_or_else(|| {
                Blocker::new(
                    "NetworkFunction",
                    &name,
                    version,
                    cause,
                    cause.message.clone(),
                )
            }),
            ("StackResolved", _) => stack_unresolved(stack, cause),
            _ => itself("NetworkFunction", &name, version, cause),
        });
    }
    if let Some(cause) = holding(conds) {
        return Some(Blocker::new(
            "Stack",
            &stack.name,
            stack.version.as_deref(),
            cause,
            cause.message.clone(),
        ));
    }
    let stack_halted = stack.condition.as_ref().filter(|c| c.type_ == STALLED);
    let running = nf
        .status
        .as_ref()
        .and_then(|s| s.deployed_with.as_ref())
        .map(|d| &d.stack.version);
    if let Some(cause) = stack_halted.filter(|_| running != stack.version.as_ref()) {
        let message = format!(
            "stack {} {} is stalled ({}): {}",
            stack.name,
            stack.version.as_deref().unwrap_or("?"),
            cause.reason,
            cause.message
        );
        return Some(Blocker::new(
            "Stack",
            &stack.name,
            stack.version.as_deref(),
            cause,
            message,
        ));
    }
    not_ready(conds, "NetworkFunction", &name, version)
}

/// Ready=False with nothing in progress: the object says why itself.
fn not_ready(
    conds: &[Condition],
    kind: &str,
    name: &str,
    version: Option<&str>,
) -> Option<Blocker> {
    let ready = conditions::get(conds, READY).filter(|c| c.status == "False")?;
    if conditions::is_true(conds, RECONCILING) {
        return None;
    }
    Some(itself(kind, name, version, ready))
}

/// The first dependency that is missing, not Ready or at a wrong version.
fn dependency(deps: &[DependencyLink], cause: &Condition) -> Option<Blocker> {
    let dep = deps.iter().find(|d| !(d.found && d.ready && d.satisfied))?;
    let at = dep.version.as_deref().unwrap_or("?");
    let message = if !dep.found {
        format!("dependency {} does not exist", dep.name)
    } else if !dep.satisfied {
        format!(
            "dependency {} is at {at}, which does not satisfy {}",
            dep.name, dep.requirement
        )
    } else {
        let why = dep
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        format!("dependency {} {at} is not Ready{why}", dep.name)
    };
    Some(Blocker::new(
        "NetworkFunction",
        &dep.name,
        dep.version.as_deref(),
        cause,
        message,
    ))
}

/// StackResolved=False: the Stack is missing, not Ready or at a wrong version.
fn stack_unresolved(stack: &StackLink, cause: &Condition) -> Blocker {
    let at = stack.version.as_deref().unwrap_or("?");
    let message = match cause.reason.as_str() {
        "StackNotFound" if !stack.found => format!("stack {} does not exist", stack.name),
        "StackVersionMismatch" if stack.found => {
            format!(
                "stack {} is at {at}, which does not satisfy {}",
                stack.name, stack.requirement
            )
        }
        "StackNotReady" if stack.found => match &stack.condition {
            Some(c) => format!(
                "stack {} {at} is not Ready ({}): {}",
                stack.name, c.reason, c.message
            ),
            None => format!("stack {} {at} is not Ready", stack.name),
        },
        // The live Stack moved on since the condition was written: its words.
        _ => cause.message.clone(),
    };
    Blocker::new(
        "Stack",
        &stack.name,
        stack.version.as_deref(),
        cause,
        message,
    )
}

/// What blocks Stack `stack`: its own conditions only.
pub fn stack(stack: &Stack) -> Option<Blocker> {
    let name = stack.name_any();
    let version = Some(stack.spec.version.as_str());
    let conds = stack
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    if let Some(cause) = failing(conds, &[]).first() {
        return Some(itself("Stack", &name, version, cause));
    }
    not_ready(conds, "Stack", &name, version)
}

/// What blocks ServiceChain `chain`: its first hop that is missing, at a
/// wrong version or not Ready; else its own conditions.
pub fn chain(chain: &ServiceChain, hops: &[HopLink]) -> Option<Blocker> {
    let name = chain.name_any();
    let conds = chain
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    if let Some(hop) = hops.iter().find(|h| !(h.found && h.ready && h.satisfied)) {
        let function = &hop.network_function;
        let at = hop.version.as_deref().unwrap_or("?");
        let message = if !hop.found {
            format!(
                "hop {}: networkfunction {function} does not exist",
                hop.name
            )
        } else if !hop.satisfied {
            format!(
                "hop {}: {function} is at {at}, which does not satisfy {}",
                hop.name, hop.requirement
            )
        } else {
            let why = hop
                .blocker
                .as_ref()
                .map(|b| format!(": {}", b.message))
                .unwrap_or_default();
            format!("hop {}: {function} {at} is not Ready{why}", hop.name)
        };
        let cause = conditions::get(conds, READY)
            .cloned()
            .unwrap_or_else(|| Condition {
                type_: READY.into(),
                status: "False".into(),
                reason: "HopNotReady".into(),
                message: String::new(),
                observed_generation: None,
                last_transition_time: Time(Timestamp::UNIX_EPOCH),
            });
        return Some(Blocker::new(
            "NetworkFunction",
            function,
            hop.version.as_deref(),
            &cause,
            message,
        ));
    }
    if let Some(cause) = failing(conds, &[]).first() {
        return Some(itself("ServiceChain", &name, None, cause));
    }
    not_ready(conds, "ServiceChain", &name, None)
}

#[cfg(test)]
mod tests;
