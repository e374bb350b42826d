//! What a NetworkFunction waits for before it rolls out: its Stack, its
//! dependencies, and its turn among the Stack's consumers.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{ResourceExt, runtime::reflector::ObjectRef};
use semver::{Version, VersionReq};
use tokio::sync::Mutex;

use crate::{
    Error, Result,
    api::{NetworkFunction, Stack, stack::ConsumerRollout},
    controllers::{Context, conditions},
    render::function::ResolvedStack,
};

/// Why a function cannot use its Stack right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unresolved {
    /// `StackNotFound`, `StackNotReady` or `StackVersionMismatch`.
    pub reason: &'static str,
    /// One sentence naming the Stack and its version.
    pub message: String,
}

/// Parses a semver requirement, naming the field when it is invalid.
pub fn requirement(field: &str, text: &str) -> Result<VersionReq> {
    VersionReq::parse(text).map_err(|e| {
        Error::InvalidField(format!(
            "{field}: {text:?} is not a semver requirement ({e}); use e.g. \">=1.4, <2\""
        ))
    })
}

/// The Stack a function is deployed onto, if it exists, is Ready and its
/// version satisfies the function's requirement.
pub fn resolve_stack(
    ctx: &Context,
    nf: &NetworkFunction,
    ns: &str,
) -> Result<Result<ResolvedStack, Unresolved>> {
    let wanted = requirement("spec.stackRef.version", &nf.spec.stack_ref.version)?;
    let name = &nf.spec.stack_ref.name;
    let Some(stack) = ctx
        .stores
        .stacks
        .get(&ObjectRef::<Stack>::new(name).within(ns))
    else {
        return Ok(Err(Unresolved {
            reason: "StackNotFound",
            message: format!("stack {name} does not exist in namespace {ns}"),
        }));
    };
    let status = stack.status.clone().unwrap_or_default();
    let (Some(version), Some(digest)) = (status.version.clone(), status.digest.clone()) else {
        return Ok(Err(Unresolved {
            reason: "StackNotReady",
            message: format!("stack {name} has not applied a version yet"),
        }));
    };
    let current = status.observed_generation == stack.metadata.generation;
    if !current || !conditions::is_true(&status.conditions, conditions::READY) {
        let why = conditions::get(&status.conditions, conditions::READY)
            .map(|c| c.message.clone())
            .unwrap_or_else(|| "not reconciled yet".into());
        return Ok(Err(Unresolved {
            reason: "StackNotReady",
            message: format!("stack {name} is not Ready: {why}"),
        }));
    }
    let satisfied = Version::parse(&version)
        .map(|v| wanted.matches(&v))
        .unwrap_or(false);
    if !satisfied {
        return Ok(Err(Unresolved {
            reason: "StackVersionMismatch",
            message: format!(
                "stack {name} is at {version}, which does not satisfy {}",
                nf.spec.stack_ref.version
            ),
        }));
    }
    Ok(Ok(ResolvedStack {
        name: name.clone(),
        version,
        digest,
        outputs: status.outputs,
    }))
}

/// The first dependency that is not Ready at a satisfying version, described
/// for the `DependenciesReady` condition; `None` when all are.
pub fn blocking_dependency(
    ctx: &Context,
    nf: &NetworkFunction,
    ns: &str,
) -> Result<Option<String>> {
    for (i, dep) in nf.spec.depends_on.iter().enumerate() {
        let wanted = requirement(&format!("spec.dependsOn[{i}].version"), &dep.version)?;
        let Some(other) = ctx
            .stores
            .functions
            .get(&ObjectRef::<NetworkFunction>::new(&dep.name).within(ns))
        else {
            return Ok(Some(format!("dependency {} does not exist", dep.name)));
        };
        let status = other.status.clone().unwrap_or_default();
        let deployed = status.deployed_with.as_ref().map(|d| d.version.clone());
        let ready = conditions::is_true(&status.conditions, conditions::READY)
            && status.observed_generation == other.metadata.generation;
        let version = deployed.clone().unwrap_or_else(|| "no version".into());
        let satisfied = deployed
            .as_deref()
            .and_then(|v| Version::parse(v).ok())
            .is_some_and(|v| wanted.matches(&v));
        if !ready || !satisfied {
            let state = if ready { "Ready" } else { "not Ready" };
            return Ok(Some(format!(
                "dependency {} is at {version} and {state}; it must be Ready at {}",
                dep.name, dep.version
            )));
        }
    }
    Ok(None)
}

/// A dependency cycle through `nf`, as "a -> b -> a", if there is one.
pub fn dependency_cycle(ctx: &Context, nf: &NetworkFunction, ns: &str) -> Option<String> {
    let start = nf.name_any();
    let edges = |name: &str| -> Vec<String> {
        if name == start {
            return nf.spec.depends_on.iter().map(|d| d.name.clone()).collect();
        }
        ctx.stores
            .functions
            .get(&ObjectRef::<NetworkFunction>::new(name).within(ns))
            .map(|f| f.spec.depends_on.iter().map(|d| d.name.clone()).collect())
            .unwrap_or_default()
    };
    // Depth-first search from `start`, keeping the path, bounded by the visited set.
    let mut path = vec![start.clone()];
    let mut visited = BTreeSet::new();
    let mut stack = vec![edges(&start).into_iter()];
    while let Some(next) = stack.last_mut() {
        match next.next() {
            Some(name) if name == start => {
                path.push(name);
                return Some(path.join(" -> "));
            }
            Some(name) => {
                if visited.insert(name.clone()) {
                    path.push(name.clone());
                    stack.push(edges(&name).into_iter());
                }
            }
            None => {
                stack.pop();
                path.pop();
            }
        }
    }
    None
}

/// How many consumers may move to a new Stack version at once.
pub fn rollout_budget(rollout: Option<&ConsumerRollout>, consumers: usize) -> usize {
    let max = rollout.cloned().unwrap_or_default().max_concurrent;
    let budget = match max {
        IntOrString::Int(n) => usize::try_from(n).unwrap_or(1),
        IntOrString::String(s) => {
            let percent: usize = s.trim_end_matches('%').parse().unwrap_or(25);
            (consumers * percent).div_ceil(100)
        }
    };
    budget.max(1)
}

/// Admissions of consumers to a Stack version, held in memory so that
/// concurrent reconciles never admit more than the budget. After a restart
/// the functions' own statuses tell who is still moving.
#[derive(Default)]
pub struct Adoptions {
    moving: Mutex<HashMap<(String, String, String), BTreeSet<String>>>,
}

/// The outcome of asking to move to a new Stack version.
#[derive(Debug, PartialEq, Eq)]
pub enum Turn {
    /// Go ahead.
    Admitted,
    /// Wait: `moving` consumers of `total` are already moving, the budget is `budget`.
    Queued {
        moving: usize,
        total: usize,
        budget: usize,
    },
}

impl Adoptions {
    /// Asks whether `nf` may move to `stack`'s current version now.
    pub async fn request(
        &self,
        ctx: &Context,
        nf: &NetworkFunction,
        ns: &str,
        stack: &ResolvedStack,
    ) -> Turn {
        let consumers: Vec<_> = ctx
            .stores
            .functions
            .state()
            .into_iter()
            .filter(|f| f.namespace().as_deref() == Some(ns) && f.spec.stack_ref.name == stack.name)
            .collect();
        let rollout = ctx
            .stores
            .stacks
            .get(&ObjectRef::<Stack>::new(&stack.name).within(ns))
            .and_then(|s| s.spec.consumer_rollout.clone());
        let budget = rollout_budget(rollout.as_ref(), consumers.len());
        let key = (ns.to_string(), stack.name.clone(), stack.version.clone());
        let mut moving = self.moving.lock().await;
        let admitted = moving.entry(key).or_default();
        // Consumers that the cache shows mid-way onto this version count too
        // (they were admitted before a restart).
        for f in &consumers {
            let on_way = f
                .status
                .as_ref()
                .and_then(|s| s.deployed_with.as_ref())
                .is_some_and(|d| {
                    d.stack.version == stack.version
                        && d.stack.digest == stack.digest
                        && d.ready_at.is_none()
                });
            if on_way {
                admitted.insert(f.name_any());
            }
        }
        let me = nf.name_any();
        if admitted.contains(&me) || admitted.len() < budget {
            admitted.insert(me);
            Turn::Admitted
        } else {
            Turn::Queued {
                moving: admitted.len(),
                total: consumers.len(),
                budget,
            }
        }
    }

    /// Releases `nf`'s admission once it is Ready on the version (or gave up).
    pub async fn release(&self, nf: &str, ns: &str, stack: &str) {
        let mut moving = self.moving.lock().await;
        for ((n, s, _), names) in moving.iter_mut() {
            if n == ns && s == stack {
                names.remove(nf);
            }
        }
        moving.retain(|_, names| !names.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets() {
        let pct = |s: &str| {
            Some(ConsumerRollout {
                max_concurrent: IntOrString::String(s.into()),
            })
        };
        let int = |n| {
            Some(ConsumerRollout {
                max_concurrent: IntOrString::Int(n),
            })
        };
        assert_eq!(rollout_budget(None, 10), 3, "default 25% of 10 rounds up");
        assert_eq!(rollout_budget(pct("25%").as_ref(), 100), 25);
        assert_eq!(rollout_budget(pct("50%").as_ref(), 3), 2);
        assert_eq!(rollout_budget(pct("1%").as_ref(), 10), 1);
        assert_eq!(rollout_budget(pct("100%").as_ref(), 7), 7);
        assert_eq!(rollout_budget(int(2).as_ref(), 10), 2);
        assert_eq!(rollout_budget(int(5).as_ref(), 0), 5);
        assert_eq!(rollout_budget(pct("25%").as_ref(), 0), 1, "never zero");
    }
}
