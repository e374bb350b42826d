//! The document `strata trace` prints with `-o json|yaml`. Its shape is
//! part of the command's interface (README, "The `strata` command"):
//! fields are added, never renamed or removed, within `v1alpha1`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde::Serialize;

use crate::api::function::Provenance;
use crate::api::stack::{AppliedRevision, Consumers};
use crate::cli::blockers::Blocker;

/// One traced object: whether it exists and is Ready, the first thing
/// blocking it, and what it is made of (one of `function`, `stack`, `chain`).
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    /// `NetworkFunction`, `Stack` or `ServiceChain`.
    pub kind: &'static str,
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// Whether the object exists (false: nothing else is set).
    pub found: bool,
    /// Whether its Ready condition is True.
    pub ready: bool,
    /// `Ready`, `Progressing`, `Blocked`, `Stalled` or `Missing`.
    pub state: State,
    /// The Ready condition's message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The first thing keeping the object from moving, if any (a Ready
    /// object may still be held, e.g. by `updatePolicy: Manual`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocker: Option<Blocker>,
    /// A NetworkFunction's details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionTrace>,
    /// A Stack's details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<StackTrace>,
    /// A ServiceChain's details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainTrace>,
    /// The object's conditions as it reports them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Where an object stands, in one word.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Ready is True.
    Ready,
    /// Work is in progress and nothing blocks it.
    Progressing,
    /// A gate, a dependency or the Stack holds it back.
    Blocked,
    /// It cannot progress without a change of spec (Stalled is True).
    Stalled,
    /// It does not exist.
    Missing,
}

/// What a NetworkFunction asks for and what it runs.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct FunctionTrace {
    /// `spec.version`: the release asked for.
    pub version: String,
    /// `spec.image`.
    pub image: String,
    /// Pods asked for and Ready.
    pub replicas: Replicas,
    /// What runs now (`status.deployedWith`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<Provenance>,
    /// The DeploymentRecord of the current rollout and its outcome.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordLink>,
    /// The Stack it is deployed onto.
    pub stack: StackLink,
    /// Its `dependsOn` entries with their state.
    pub dependencies: Vec<DependencyLink>,
    /// The chains it is a hop of.
    pub chains: Vec<ChainLink>,
}

/// Pods asked for and Ready.
#[derive(Serialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct Replicas {
    /// `spec.replicas`.
    pub desired: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
}

/// A DeploymentRecord, by name, with its outcome.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct RecordLink {
    /// The record's name.
    pub name: String,
    /// `Progressing`, `Succeeded`, `Failed`, `Superseded`; absent when the record is gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// A function's Stack as the function asks for it and as it is.
#[derive(Serialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub struct StackLink {
    /// The Stack's name.
    pub name: String,
    /// `stackRef.version`.
    pub requirement: String,
    /// `Automatic` or `Manual`.
    pub update_policy: String,
    /// Whether the Stack exists.
    pub found: bool,
    /// The version the Stack has applied (`status.version`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The digest of that version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Whether the Stack is Ready.
    pub ready: bool,
    /// Whether its version satisfies the requirement.
    pub satisfied: bool,
    /// The Stack's Ready (or Stalled) reason and message, when not Ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<Condition>,
}

/// A `dependsOn` entry and the function it names.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct DependencyLink {
    /// The dependency's name.
    pub name: String,
    /// The versions that satisfy.
    pub requirement: String,
    /// Whether it exists.
    pub found: bool,
    /// Its `spec.version`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Whether it is Ready.
    pub ready: bool,
    /// Whether its version satisfies the requirement.
    pub satisfied: bool,
    /// Its Ready reason, when not Ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A chain a function is a hop of.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ChainLink {
    /// The chain's name.
    pub name: String,
    /// The hop's name in it.
    pub hop: String,
    /// Whether the chain is Ready.
    pub ready: bool,
}

/// What a Stack asks for and what it has applied.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct StackTrace {
    /// `spec.version`.
    pub version: String,
    /// The version applied (`status.version`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<String>,
    /// Its digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// How many objects it manages.
    pub inventory: usize,
    /// Consumers, as the Stack counts them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumers: Option<Consumers>,
    /// The functions deployed onto it, with the version each runs on.
    pub functions: Vec<ConsumerLink>,
    /// Versions applied, newest first.
    pub history: Vec<AppliedRevision>,
}

/// A NetworkFunction using a Stack.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerLink {
    /// The function's name.
    pub name: String,
    /// Its `stackRef.version`.
    pub requirement: String,
    /// The Stack version it runs on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_version: Option<String>,
    /// Whether it is Ready.
    pub ready: bool,
    /// Its Ready reason, when not Ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A ServiceChain's hops with their state.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct ChainTrace {
    /// The hops, in traffic order.
    pub hops: Vec<HopLink>,
}

/// One hop and the function it names.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct HopLink {
    /// The hop's name.
    pub name: String,
    /// Its NetworkFunction.
    pub network_function: String,
    /// The versions the hop accepts.
    pub requirement: String,
    /// Whether the function exists.
    pub found: bool,
    /// The function's `spec.version`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The Stack version it runs on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_version: Option<String>,
    /// Whether the function is Ready.
    pub ready: bool,
    /// Whether its version satisfies the requirement.
    pub satisfied: bool,
    /// What blocks the function, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocker: Option<Blocker>,
}
