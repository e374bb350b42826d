//! The adoption budget under kills: a watch of every function, for the whole
//! run, counts the consumers adopting each Stack version at once.
//!
//! A watch delivers every status write in the order the API server committed
//! it, so the count is taken for every state the functions went through, not
//! only at polling instants. A consumer is *adopting* a version when its
//! current rollout is on that version, is not Ready yet, and differs from its
//! previous rollout only in the Stack revision: a move the budget governs.
//! (A first rollout, or one for a new function spec, does not wait for the
//! budget.)

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use strata::api::NetworkFunction;

/// What the watch saw.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    /// The budget of each Stack.
    pub budgets: BTreeMap<String, usize>,
    /// The most consumers seen adopting each (Stack, version) at once.
    pub max: BTreeMap<(String, String), usize>,
    /// Each set of consumers seen adopting at once beyond the budget.
    pub violations: BTreeSet<String>,
}

/// The watch, running in the background until [`Monitor::finish`].
pub struct Monitor {
    task: tokio::task::JoinHandle<()>,
    observed: Arc<Mutex<Observed>>,
}

impl Monitor {
    /// Watches `functions`, checking each Stack's `budgets`.
    pub fn start(functions: Api<NetworkFunction>, budgets: BTreeMap<String, usize>) -> Self {
        let observed = Arc::new(Mutex::new(Observed {
            budgets,
            ..Observed::default()
        }));
        let shared = observed.clone();
        let task = tokio::spawn(async move {
            let mut stream = watcher::watcher(functions, watcher::Config::default())
                .default_backoff()
                .boxed();
            let mut current: BTreeMap<String, NetworkFunction> = BTreeMap::new();
            let mut listing: BTreeMap<String, NetworkFunction> = BTreeMap::new();
            while let Some(event) = stream.next().await {
                match event {
                    Ok(Event::Init) => listing.clear(),
                    Ok(Event::InitApply(nf)) => {
                        listing.insert(nf.name_any(), nf);
                    }
                    Ok(Event::InitDone) => current = std::mem::take(&mut listing),
                    Ok(Event::Apply(nf)) => {
                        current.insert(nf.name_any(), nf);
                    }
                    Ok(Event::Delete(nf)) => {
                        current.remove(&nf.name_any());
                    }
                    // The watcher retries with backoff and lists again.
                    Err(_) => continue,
                }
                shared
                    .lock()
                    .expect("the observations are not poisoned")
                    .record(&current);
            }
        });
        Self { task, observed }
    }

    /// Stops the watch and returns what it saw.
    pub fn finish(self) -> Observed {
        self.task.abort();
        self.observed
            .lock()
            .expect("the observations are not poisoned")
            .clone()
    }
}

impl Observed {
    fn record(&mut self, functions: &BTreeMap<String, NetworkFunction>) {
        let mut adopting: BTreeMap<(String, String), BTreeSet<&str>> = BTreeMap::new();
        for (name, nf) in functions {
            if let Some(target) = adopting_version(nf) {
                adopting.entry(target).or_default().insert(name);
            }
        }
        for (target, names) in adopting {
            let budget = self.budgets.get(&target.0).copied().unwrap_or(0);
            if names.len() > budget {
                self.violations.insert(format!(
                    "{} consumers adopting {} {} at once, budget {budget}: {names:?}",
                    names.len(),
                    target.0,
                    target.1
                ));
            }
            let max = self.max.entry(target).or_default();
            *max = (*max).max(names.len());
        }
    }
}

/// The (Stack, version) `nf` is adopting, if it is.
fn adopting_version(nf: &NetworkFunction) -> Option<(String, String)> {
    let status = nf.status.as_ref()?;
    let current = status.deployed_with.as_ref()?;
    let previous = status.history.first()?;
    let only_the_stack_moved = current.ready_at.is_none()
        && current.version == previous.version
        && current.image == previous.image
        && current.config_digest == previous.config_digest
        && current.stack.name == previous.stack.name
        && current.stack != previous.stack;
    only_the_stack_moved.then(|| (current.stack.name.clone(), current.stack.version.clone()))
}
