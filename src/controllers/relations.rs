//! Who relates to whom among Stacks, NetworkFunctions and ServiceChains,
//! kept as the shared watches see objects change (as linkerd's policy
//! controller keeps its indexes), so that "the consumers of a Stack", "the
//! chains a function is a hop of" and "the functions that depend on one"
//! are lookups, not scans of a cache in every reconcile or trigger.
//!
//! Relations are by name within a namespace, as the specs refer to one
//! another: a function names its Stack and its dependencies, a chain names
//! its hops.

use std::{
    collections::{BTreeSet, HashMap},
    sync::RwLock,
};

use kube::ResourceExt;

use crate::api::{NetworkFunction, ServiceChain};

/// An object's namespace and name.
type Key = (String, String);

/// The index. Cheap to read from many reconciles at once.
#[derive(Default)]
pub struct Relations(RwLock<Index>);

#[derive(Default)]
struct Index {
    /// What each function refers to: its Stack and its dependencies.
    functions: HashMap<Key, FunctionRefs>,
    /// The hops of each chain, in order.
    chains: HashMap<Key, Vec<String>>,
    /// (namespace, stack) -> the functions deployed on it.
    consumers: HashMap<Key, BTreeSet<String>>,
    /// (namespace, function) -> the functions that depend on it.
    dependents: HashMap<Key, BTreeSet<String>>,
    /// (namespace, function) -> the chains it is a hop of.
    chains_of: HashMap<Key, BTreeSet<String>>,
}

#[derive(Clone, PartialEq, Eq)]
struct FunctionRefs {
    stack: String,
    depends_on: Vec<String>,
}

fn key_of(ns: &str, name: &str) -> Key {
    (ns.to_string(), name.to_string())
}

/// Adds or removes `member` under `key` of `map`, dropping empty sets.
fn link(map: &mut HashMap<Key, BTreeSet<String>>, key: Key, member: &str, present: bool) {
    if present {
        map.entry(key).or_default().insert(member.to_string());
    } else if let Some(set) = map.get_mut(&key) {
        set.remove(member);
        if set.is_empty() {
            map.remove(&key);
        }
    }
}

impl Index {
    fn set_function(&mut self, ns: &str, name: &str, refs: Option<FunctionRefs>) {
        let key = key_of(ns, name);
        let old = match &refs {
            Some(refs) => self.functions.insert(key.clone(), refs.clone()),
            None => self.functions.remove(&key),
        };
        if old == refs {
            return;
        }
        for (refs, present) in [(old, false), (refs, true)] {
            let Some(refs) = refs else { continue };
            link(&mut self.consumers, key_of(ns, &refs.stack), name, present);
            for dependency in &refs.depends_on {
                link(&mut self.dependents, key_of(ns, dependency), name, present);
            }
        }
    }

    fn set_chain(&mut self, ns: &str, name: &str, hops: Option<Vec<String>>) {
        let key = key_of(ns, name);
        let old = match &hops {
            Some(hops) => self.chains.insert(key.clone(), hops.clone()),
            None => self.chains.remove(&key),
        };
        if old == hops {
            return;
        }
        for (hops, present) in [(old, false), (hops, true)] {
            for hop in hops.iter().flatten() {
                link(&mut self.chains_of, key_of(ns, hop), name, present);
            }
        }
    }
}

impl Relations {
    /// A function was created or changed.
    pub fn function_applied(&self, nf: &NetworkFunction) {
        let refs = FunctionRefs {
            stack: nf.spec.stack_ref.name.clone(),
            depends_on: nf.spec.depends_on.iter().map(|d| d.name.clone()).collect(),
        };
        self.write(|index| {
            index.set_function(
                &nf.namespace().unwrap_or_default(),
                &nf.name_any(),
                Some(refs),
            )
        });
    }

    /// A function was deleted.
    pub fn function_deleted(&self, nf: &NetworkFunction) {
        self.write(|index| {
            index.set_function(&nf.namespace().unwrap_or_default(), &nf.name_any(), None)
        });
    }

    /// A chain was created or changed.
    pub fn chain_applied(&self, chain: &ServiceChain) {
        let hops = chain
            .spec
            .hops
            .iter()
            .map(|h| h.network_function.clone())
            .collect();
        self.write(|index| {
            index.set_chain(
                &chain.namespace().unwrap_or_default(),
                &chain.name_any(),
                Some(hops),
            )
        });
    }

    /// A chain was deleted.
    pub fn chain_deleted(&self, chain: &ServiceChain) {
        self.write(|index| {
            index.set_chain(
                &chain.namespace().unwrap_or_default(),
                &chain.name_any(),
                None,
            )
        });
    }

    /// The functions deployed on Stack `stack` of `ns`, by name.
    pub fn consumers_of(&self, ns: &str, stack: &str) -> BTreeSet<String> {
        self.read(|index| index.consumers.get(&key_of(ns, stack)).cloned())
    }

    /// The functions of `ns` that depend on `function`, by name.
    pub fn dependents_of(&self, ns: &str, function: &str) -> BTreeSet<String> {
        self.read(|index| index.dependents.get(&key_of(ns, function)).cloned())
    }

    /// The chains of `ns` that have `function` as a hop, by name.
    pub fn chains_of(&self, ns: &str, function: &str) -> BTreeSet<String> {
        self.read(|index| index.chains_of.get(&key_of(ns, function)).cloned())
    }

    /// The hop after `function` and the hop before it in each chain of `ns`
    /// it is a hop of: `(chain, previous, next)`, by chain name.
    pub fn neighbours(
        &self,
        ns: &str,
        function: &str,
    ) -> Vec<(String, Option<String>, Option<String>)> {
        let index = match self.0.read() {
            Ok(index) => index,
            Err(poisoned) => poisoned.into_inner(),
        };
        let Some(chains) = index.chains_of.get(&key_of(ns, function)) else {
            return Vec::new();
        };
        chains
            .iter()
            .filter_map(|chain| {
                let hops = index.chains.get(&key_of(ns, chain))?;
                let at = hops.iter().position(|h| h == function)?;
                let previous = at.checked_sub(1).and_then(|i| hops.get(i)).cloned();
                Some((chain.clone(), previous, hops.get(at + 1).cloned()))
            })
            .collect()
    }

    fn read(&self, f: impl FnOnce(&Index) -> Option<BTreeSet<String>>) -> BTreeSet<String> {
        let index = match self.0.read() {
            Ok(index) => index,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&index).unwrap_or_default()
    }

    fn write(&self, f: impl FnOnce(&mut Index)) {
        let mut index = match self.0.write() {
            Ok(index) => index,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(name: &str, stack: &str, depends_on: &[&str]) -> NetworkFunction {
        let deps: Vec<String> = depends_on
            .iter()
            .map(|d| format!("{{name: {d}, version: '*'}}"))
            .collect();
        serde_yaml::from_str(&format!(
            "metadata: {{name: {name}, namespace: ns}}\nspec: {{version: 1.0.0, image: i, stackRef: {{name: {stack}, version: '*'}}, dependsOn: [{}]}}",
            deps.join(", ")
        ))
        .unwrap()
    }

    fn chain(name: &str, hops: &[&str]) -> ServiceChain {
        let hops: Vec<String> = hops
            .iter()
            .map(|h| format!("{{name: {h}, networkFunction: {h}, version: '*'}}"))
            .collect();
        serde_yaml::from_str(&format!(
            "metadata: {{name: {name}, namespace: ns}}\nspec: {{hops: [{}]}}",
            hops.join(", ")
        ))
        .unwrap()
    }

    fn names(set: BTreeSet<String>) -> Vec<String> {
        set.into_iter().collect()
    }

    #[test]
    fn consumers_and_dependents_follow_each_change_of_a_function() {
        let relations = Relations::default();
        relations.function_applied(&function("upf", "edge", &[]));
        relations.function_applied(&function("smf", "edge", &["upf"]));
        relations.function_applied(&function("amf", "core", &["upf", "smf"]));
        assert_eq!(names(relations.consumers_of("ns", "edge")), ["smf", "upf"]);
        assert_eq!(names(relations.dependents_of("ns", "upf")), ["amf", "smf"]);
        assert!(relations.consumers_of("other", "edge").is_empty());

        // smf moves to another stack and drops its dependency.
        relations.function_applied(&function("smf", "core", &[]));
        assert_eq!(names(relations.consumers_of("ns", "edge")), ["upf"]);
        assert_eq!(names(relations.consumers_of("ns", "core")), ["amf", "smf"]);
        assert_eq!(names(relations.dependents_of("ns", "upf")), ["amf"]);

        relations.function_deleted(&function("amf", "core", &["upf", "smf"]));
        assert!(relations.dependents_of("ns", "upf").is_empty());
        assert!(relations.dependents_of("ns", "smf").is_empty());
        assert_eq!(names(relations.consumers_of("ns", "core")), ["smf"]);
    }

    #[test]
    fn chains_know_their_hops_and_each_hop_its_neighbours() {
        let relations = Relations::default();
        relations.chain_applied(&chain("n6", &["upf", "fw", "nat"]));
        relations.chain_applied(&chain("n3", &["gnb", "upf"]));
        assert_eq!(names(relations.chains_of("ns", "upf")), ["n3", "n6"]);
        assert_eq!(
            relations.neighbours("ns", "upf"),
            [
                ("n3".to_string(), Some("gnb".to_string()), None),
                ("n6".to_string(), None, Some("fw".to_string())),
            ]
        );
        relations.chain_applied(&chain("n6", &["fw", "nat"]));
        assert_eq!(names(relations.chains_of("ns", "upf")), ["n3"]);
        relations.chain_deleted(&chain("n3", &["gnb", "upf"]));
        assert!(relations.chains_of("ns", "upf").is_empty());
        assert!(relations.neighbours("ns", "upf").is_empty());
    }
}
