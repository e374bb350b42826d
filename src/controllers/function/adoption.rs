//! A function's turn to adopt a new version of its Stack: at most
//! `consumerRollout.maxConcurrent` of a Stack's consumers move at once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use kube::{ResourceExt, runtime::reflector::ObjectRef};
use tokio::sync::Mutex;

use super::{Context, records};
use crate::controllers::waves::{self, Standing, Target};
use crate::{
    Result,
    api::{NetworkFunction, Stack, stack::ConsumerRollout},
    render::function::ResolvedStack,
};

/// How many consumers may move to a new Stack version at once (without steps).
pub fn rollout_budget(rollout: Option<&ConsumerRollout>, consumers: usize) -> usize {
    let max = rollout.cloned().unwrap_or_default().max_concurrent;
    waves::concurrency_budget(&max, consumers)
}

/// Admissions of consumers to a Stack version, held in memory so that
/// concurrent reconciles never admit more than the budget. After a restart
/// the functions' own statuses tell who is still moving.
#[derive(Default)]
pub struct Adoptions {
    moving: Mutex<HashMap<(String, String, String), Admission>>,
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
    /// Wait: an earlier step is under way; `done` of its `total` consumers
    /// run the version and are Ready.
    Waiting {
        step: String,
        done: usize,
        total: usize,
    },
    /// Wait: the adoption halted (why, in one sentence).
    Halted(String),
}

/// Who moves to one Stack version, as this process knows it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Admission {
    /// Consumers admitted by this process that have not finished moving.
    admitted: BTreeSet<String>,
    /// Consumers this process saw finish moving (Ready on the version, or
    /// failed). The cache can still show them on their way for a moment,
    /// since it lags the status write that says otherwise: that must not
    /// count them as moving again, or their slot would never be released.
    done: BTreeSet<String>,
}

impl Admission {
    /// Whether `me` may move now. `consumers` are the consumers the budget
    /// counts, each with whether the cache shows it on its way to this
    /// version (rolled out onto it, not yet Ready there); those count as
    /// moving too, which covers consumers admitted before a restart.
    /// `stack_consumers` are all consumers of the Stack: an admitted one
    /// keeps its slot until it finishes, even while the cache does not count
    /// it (its status lags the rollout a killed predecessor started).
    pub fn admit(
        &mut self,
        me: &str,
        consumers: &BTreeMap<String, bool>,
        stack_consumers: &BTreeSet<String>,
        budget: usize,
    ) -> Turn {
        // A deleted consumer, or one that moved to another Stack, no longer moves.
        self.admitted.retain(|name| stack_consumers.contains(name));
        let mut moving = self.admitted.clone();
        moving.extend(
            consumers
                .iter()
                .filter(|(name, on_way)| **on_way && !self.done.contains(*name))
                .map(|(name, _)| name.clone()),
        );
        if moving.contains(me) || moving.len() < budget {
            self.admitted.insert(me.to_string());
            self.done.remove(me);
            Turn::Admitted
        } else {
            Turn::Queued {
                moving: moving.len(),
                total: consumers.len(),
                budget,
            }
        }
    }

    /// `name` finished moving: its slot is free.
    pub fn finish(&mut self, name: &str) {
        self.admitted.remove(name);
        self.done.insert(name.to_string());
    }
}

/// The consumers of Stack `stack`, the asking function `nf` among them
/// whatever the index says yet: asking is never a pass around the budget.
fn consumers(
    ctx: &Context,
    nf: &NetworkFunction,
    ns: &str,
    stack: &str,
) -> Vec<Arc<NetworkFunction>> {
    let mut consumers: Vec<_> = ctx
        .relations
        .consumers_of(ns, stack)
        .into_iter()
        .filter_map(|name| {
            ctx.stores
                .functions
                .get(&ObjectRef::<NetworkFunction>::new(&name).within(ns))
        })
        .collect();
    if !consumers.iter().any(|c| c.name_any() == nf.name_any()) {
        consumers.push(Arc::new(nf.clone()));
    }
    consumers
}

impl Adoptions {
    /// Asks whether `nf` may move to `stack`'s current version now: its
    /// step has started, the adoption has not halted, and its step's
    /// concurrency budget has room.
    pub async fn request(
        &self,
        ctx: &Context,
        nf: &NetworkFunction,
        ns: &str,
        stack: &ResolvedStack,
    ) -> Result<Turn> {
        let me = nf.name_any();
        let consumers = consumers(ctx, nf, ns, &stack.name);
        let rollout = ctx
            .stores
            .stacks
            .get(&ObjectRef::<Stack>::new(&stack.name).within(ns))
            .and_then(|s| s.spec.consumer_rollout.clone())
            .unwrap_or_default();
        let target = Target {
            version: &stack.version,
            digest: &stack.digest,
        };
        let mut plan = match waves::plan(&rollout, &consumers, &target) {
            Ok(plan) => plan,
            // Fail closed: the Stack reports the bad selector.
            Err(error) => return Ok(Turn::Halted(error.to_string())),
        };
        // Only a function that moves asks (`gates::adoption_turn`).
        plan.asking(&me);
        if plan.halted() {
            return Ok(Turn::Halted(plan.halt_message(&stack.name, &stack.version)));
        }
        let (Some(mine), Some(current)) = (plan.step_of(&me), plan.current) else {
            return Ok(Turn::Admitted);
        };
        if mine > current {
            let step = &plan.steps[current];
            let done = step
                .members
                .values()
                .filter(|s| matches!(s, Standing::Adopted | Standing::Excluded))
                .count();
            return Ok(Turn::Waiting {
                step: step.name.clone().unwrap_or_default(),
                done,
                total: step.members.len(),
            });
        }
        let step = &plan.steps[mine];
        let members: BTreeMap<String, bool> = step
            .members
            .iter()
            .filter(|(_, s)| **s != Standing::Excluded)
            .map(|(name, s)| (name.clone(), *s == Standing::Moving))
            .collect();
        let max = step
            .max_concurrent
            .as_ref()
            .unwrap_or(&rollout.max_concurrent);
        let budget = waves::concurrency_budget(max, members.len());
        let stack_consumers: BTreeSet<String> = consumers.iter().map(|c| c.name_any()).collect();
        let mut moving = self.moving.lock().await;
        // Earlier versions of this Stack that nobody moves to any more are over.
        moving.retain(|(n, s, v), admission| {
            n != ns || *s != stack.name || *v == stack.version || !admission.admitted.is_empty()
        });
        let key = (ns.to_string(), stack.name.clone(), stack.version.clone());
        if !moving.contains_key(&key) {
            // A killed predecessor may have admitted consumers whose status
            // does not show it yet; their records do.
            let admitted = records::rolling_out_on(ctx, ns, stack).await?;
            tracing::debug!(stack = %stack.name, version = %stack.version, ?admitted, "adoption seeded from the records");
            let seeded = Admission {
                admitted,
                ..Admission::default()
            };
            moving.insert(key.clone(), seeded);
        }
        let admission = moving.entry(key).or_default();
        let turn = admission.admit(&me, &members, &stack_consumers, budget);
        tracing::debug!(
            stack = %stack.name,
            version = %stack.version,
            budget,
            admitted = ?admission.admitted,
            on_their_way = ?members.iter().filter(|(_, on_way)| **on_way).map(|(n, _)| n).collect::<Vec<_>>(),
            ?turn,
            "adoption turn"
        );
        Ok(turn)
    }

    /// Releases `nf`'s admission once it is Ready on `version` of `stack`
    /// (or gave up).
    pub async fn release(&self, nf: &str, ns: &str, stack: &str, version: &str) {
        let mut moving = self.moving.lock().await;
        for ((n, s, v), admission) in moving.iter_mut() {
            if n == ns && s == stack {
                if v == version {
                    admission.finish(nf);
                } else {
                    admission.admitted.remove(nf);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    #[test]
    fn budgets() {
        let pct = |s: &str| {
            Some(ConsumerRollout {
                max_concurrent: IntOrString::String(s.into()),
                ..ConsumerRollout::default()
            })
        };
        let int = |n| {
            Some(ConsumerRollout {
                max_concurrent: IntOrString::Int(n),
                ..ConsumerRollout::default()
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

    fn consumers(on_way: &[(&str, bool)]) -> BTreeMap<String, bool> {
        on_way.iter().map(|(n, w)| (n.to_string(), *w)).collect()
    }

    /// Asks with `counted` as every consumer of the Stack.
    fn admit(a: &mut Admission, me: &str, counted: &BTreeMap<String, bool>, budget: usize) -> Turn {
        a.admit(me, counted, &counted.keys().cloned().collect(), budget)
    }

    #[test]
    fn admissions_respect_the_budget() {
        let mut a = Admission::default();
        let all = consumers(&[("a", false), ("b", false), ("c", false)]);
        assert_eq!(admit(&mut a, "a", &all, 2), Turn::Admitted);
        assert_eq!(admit(&mut a, "b", &all, 2), Turn::Admitted);
        let queued = Turn::Queued {
            moving: 2,
            total: 3,
            budget: 2,
        };
        assert_eq!(admit(&mut a, "c", &all, 2), queued);
        assert_eq!(
            admit(&mut a, "a", &all, 2),
            Turn::Admitted,
            "admitted stays admitted"
        );
        a.finish("a");
        assert_eq!(admit(&mut a, "c", &all, 2), Turn::Admitted);
    }

    #[test]
    fn consumers_on_their_way_count_after_a_restart() {
        let mut a = Admission::default();
        let all = consumers(&[("a", true), ("b", true), ("c", false)]);
        assert_eq!(
            admit(&mut a, "c", &all, 2),
            Turn::Queued {
                moving: 2,
                total: 3,
                budget: 2
            }
        );
        assert_eq!(admit(&mut a, "a", &all, 2), Turn::Admitted);
    }

    #[test]
    fn a_finished_consumer_frees_its_slot_while_the_cache_lags() {
        let mut a = Admission::default();
        let before = consumers(&[("a", false), ("b", false), ("c", false), ("d", false)]);
        assert_eq!(admit(&mut a, "a", &before, 2), Turn::Admitted);
        assert_eq!(admit(&mut a, "b", &before, 2), Turn::Admitted);
        a.finish("a");
        a.finish("b");
        // The cache has not seen a's and b's status writes (readyAt) yet.
        let lagging = consumers(&[("a", true), ("b", true), ("c", false), ("d", false)]);
        assert_eq!(admit(&mut a, "c", &lagging, 2), Turn::Admitted);
        assert_eq!(admit(&mut a, "d", &lagging, 2), Turn::Admitted);
        a.finish("c");
        a.finish("d");
        let caught_up = consumers(&[("a", false), ("b", false), ("c", false), ("d", false)]);
        assert_eq!(a, {
            let mut done = Admission::default();
            for n in ["a", "b", "c", "d"] {
                done.finish(n);
            }
            done
        });
        assert_eq!(admit(&mut a, "a", &caught_up, 1), Turn::Admitted);
    }

    #[test]
    fn deleted_consumers_free_their_slot() {
        let mut a = Admission::default();
        let all = consumers(&[("a", false), ("b", false)]);
        assert_eq!(admit(&mut a, "a", &all, 1), Turn::Admitted);
        assert!(matches!(admit(&mut a, "b", &all, 1), Turn::Queued { .. }));
        let without_a = consumers(&[("b", false)]);
        assert_eq!(admit(&mut a, "b", &without_a, 1), Turn::Admitted);
    }

    #[test]
    fn an_admitted_consumer_the_cache_does_not_count_keeps_its_slot() {
        // x's first rollout was started by a killed predecessor and its
        // status does not show it yet: the plan leaves x out of the count.
        let mut a = Admission::default();
        let counted = consumers(&[("y", false), ("z", false)]);
        let all: BTreeSet<String> = ["x", "y", "z"].map(String::from).into();
        assert_eq!(a.admit("x", &counted, &all, 1), Turn::Admitted);
        assert!(
            matches!(
                a.admit("y", &counted, &all, 1),
                Turn::Queued { moving: 1, .. }
            ),
            "x moves, so y waits"
        );
        a.finish("x");
        assert_eq!(a.admit("y", &counted, &all, 1), Turn::Admitted);
    }
}
