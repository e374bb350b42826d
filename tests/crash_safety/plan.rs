//! The rollout the kills interrupt: what is declared, and when.
//!
//! Four Stacks; the functions spread over them, created in two batches; every
//! Stack moves to a new version twice (half of them budget their consumers by
//! percentage, half by number); every fourth function gets a new version and
//! configuration in between. Each step follows a kill, spread over the run.

use std::collections::BTreeMap;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::Api;
use serde_json::{Value, json};
use strata::api::stack::ConsumerRollout;
use strata::api::{NetworkFunction, Stack};
use strata::controllers::function::rollout_budget;

use super::Scale;
use super::declared::{Declared, DeclaredFunction};
use strata_testkit::apply_object;

/// What every function requires of its Stack: each version the test declares.
const REQUIREMENT: &str = ">=1.0, <2";
/// The Stack versions, in the order they are declared.
pub const STACK_VERSIONS: [&str; 3] = ["1.0.0", "1.1.0", "1.2.0"];

/// One Stack of the run and how fast its consumers may move.
pub struct StackPlan {
    name: String,
    max_concurrent: IntOrString,
    consumers: usize,
}

impl StackPlan {
    /// The Stack at `version`: a ConfigMap shared by every version and one
    /// per version (so each move also prunes), and an output the consumers'
    /// pods receive (so each move rolls out new pods).
    pub fn manifest(&self, version: &str) -> Value {
        let name = &self.name;
        json!({
            "apiVersion": "strata.dev/v1alpha1",
            "kind": "Stack",
            "metadata": {"name": name},
            "spec": {
                "version": version,
                "resources": [
                    {"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": format!("{name}-settings")},
                     "data": {"release": version}},
                    {"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": format!("{name}-release-{}", version.replace('.', "-"))},
                     "data": {"release": version}},
                ],
                "outputs": {"release": version},
                "consumerRollout": {"maxConcurrent": self.max_concurrent},
            },
        })
    }
}

/// What the test does to the declared state, and after which kill.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    /// Create the second half of the functions.
    CreateRest,
    /// Move every Stack to this version.
    MoveStacks(&'static str),
    /// Give every fourth function a new version and configuration.
    Respec,
}

/// The functions and Stacks of the run.
pub struct Plan {
    functions: usize,
    pub stacks: Vec<StackPlan>,
}

impl Plan {
    pub fn new(scale: &Scale) -> Self {
        let stacks = (0..scale.stacks)
            .map(|s| {
                let consumers = (0..scale.functions)
                    .filter(|i| i % scale.stacks == s)
                    .count();
                // Both forms of the budget: a percentage and a number.
                let max_concurrent = if s % 2 == 0 {
                    IntOrString::String("25%".into())
                } else {
                    IntOrString::Int((consumers / 8).max(2) as i32)
                };
                StackPlan {
                    name: format!("stack-{s}"),
                    max_concurrent,
                    consumers,
                }
            })
            .collect();
        Self {
            functions: scale.functions,
            stacks,
        }
    }

    /// The steps, by the kill they follow: spread over the run, so that
    /// kills land in each phase of the rollout.
    pub fn steps(&self, kills: usize) -> BTreeMap<usize, Vec<Step>> {
        let all = [
            Step::CreateRest,
            Step::MoveStacks(STACK_VERSIONS[1]),
            Step::Respec,
            Step::MoveStacks(STACK_VERSIONS[2]),
        ];
        let mut steps: BTreeMap<usize, Vec<Step>> = BTreeMap::new();
        for (j, step) in all.into_iter().enumerate() {
            let after = (j + 1) * kills / (all.len() + 1);
            steps.entry(after.max(j + 1)).or_default().push(step);
        }
        steps
    }

    pub async fn take(&self, step: Step, stacks: &Api<Stack>, functions: &Api<NetworkFunction>) {
        match step {
            Step::CreateRest => {
                apply_all(
                    functions,
                    self.functions(self.functions / 2..self.functions, false),
                )
                .await
            }
            Step::MoveStacks(version) => {
                for stack in &self.stacks {
                    apply_object(stacks, stack.manifest(version)).await;
                }
            }
            Step::Respec => {
                let respecced = (0..self.functions).filter(|i| respecced(*i));
                apply_all(functions, self.functions(respecced, true)).await
            }
        }
    }

    /// The manifests of functions `indices`, respecced or not.
    pub fn functions(&self, indices: impl Iterator<Item = usize>, respec: bool) -> Vec<Value> {
        indices
            .map(|i| {
                let f = self.function(i, respec);
                json!({
                    "apiVersion": "strata.dev/v1alpha1",
                    "kind": "NetworkFunction",
                    "metadata": {"name": function_name(i)},
                    "spec": {
                        "version": f.version,
                        "image": format!("registry.example/cnf@sha256:{}", "0123456789abcdef".repeat(4)),
                        "stackRef": {"name": f.stack, "version": REQUIREMENT, "updatePolicy": "Automatic"},
                        "replicas": 1,
                        "ports": [{"name": "sig", "port": 8080}],
                        "config": f.config,
                    },
                })
            })
            .collect()
    }

    fn function(&self, i: usize, respec: bool) -> DeclaredFunction {
        let revision = usize::from(respec);
        DeclaredFunction {
            stack: self.stacks[i % self.stacks.len()].name.clone(),
            version: format!("1.{revision}.0"),
            config: [(
                "app.yaml".to_string(),
                format!("name: {}\nrevision: {revision}\n", function_name(i)),
            )]
            .into(),
        }
    }

    /// The state declared once every step is taken.
    pub fn declared(&self) -> Declared {
        let last = STACK_VERSIONS[STACK_VERSIONS.len() - 1];
        Declared {
            stacks: self
                .stacks
                .iter()
                .map(|s| (s.name.clone(), last.to_string()))
                .collect(),
            functions: (0..self.functions)
                .map(|i| (function_name(i), self.function(i, respecced(i))))
                .collect(),
        }
    }

    /// How many consumers of each Stack may adopt a new version at once.
    pub fn budgets(&self) -> BTreeMap<String, usize> {
        self.stacks
            .iter()
            .map(|s| {
                let rollout = ConsumerRollout {
                    max_concurrent: s.max_concurrent.clone(),
                    ..ConsumerRollout::default()
                };
                (s.name.clone(), rollout_budget(Some(&rollout), s.consumers))
            })
            .collect()
    }
}

pub fn function_name(i: usize) -> String {
    format!("cnf-{i:03}")
}

/// Every fourth function gets a new version and configuration mid-run.
fn respecced(i: usize) -> bool {
    i % 4 == 3
}

/// Applies `objects`, a few at a time.
pub async fn apply_all<K>(api: &Api<K>, objects: Vec<Value>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    futures::stream::iter(objects)
        .map(|object| apply_object(api, object))
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
}
