//! `strata tree stack NAME`: the Stack, every object of its inventory
//! with that object's state as the cluster has it now, and the functions
//! deployed onto it. An object's state is read generically: missing, being
//! deleted, its `Ready` or `Available` condition, else present.

use std::collections::BTreeMap;

use clap::{Args as ClapArgs, ValueEnum};
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope as ApiScope};
use kube::{Client, ResourceExt};
use serde::Serialize;

use super::connect::Globals;
use super::output::{self, Tone, or_dash, paint, ready_word, table};
use super::{Result, Verdict};
use crate::api::stack::ManagedObject;
use crate::api::{LABEL_STACK_VERSION, NetworkFunction, Stack};
use crate::controllers::conditions::{self, READY};

/// Inventory objects read at once.
const CONCURRENT_READS: usize = 16;

/// The kinds with a tree.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Kind {
    /// A Stack.
    #[value(alias = "stk", alias = "stacks")]
    Stack,
}

/// `strata tree stack NAME`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// stack.
    pub kind: Kind,
    /// The Stack's name.
    pub name: String,
    #[command(flatten)]
    pub globals: Globals,
}

/// The document `tree` prints with `-o json|yaml`.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Tree {
    /// The Stack's namespace.
    pub namespace: String,
    /// The Stack's name.
    pub name: String,
    /// `spec.version`.
    pub version: String,
    /// The version applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<String>,
    /// Whether the Stack is Ready.
    pub ready: bool,
    /// Its inventory, in the Stack's order.
    pub objects: Vec<Node>,
    /// The functions deployed onto it.
    pub consumers: Vec<Consumer>,
}

/// One object of the inventory.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Its apiVersion.
    pub api_version: String,
    /// Its kind.
    pub kind: String,
    /// Its namespace (absent: cluster-scoped).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its name.
    pub name: String,
    /// `Ready`, `NotReady`, `Present`, `Deleting`, `Missing` or `Unknown`
    /// (the kind is not served).
    pub state: String,
    /// Why, when not Ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Its `strata.dev/stack-version` label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_version: Option<String>,
}

/// A function deployed onto the Stack.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Consumer {
    /// The function's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The stack version it runs on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack_version: Option<String>,
    /// Whether it is Ready.
    pub ready: bool,
}

/// Runs `strata tree`.
pub async fn run(args: Args) -> Result<Verdict> {
    let cluster = args.globals.connect().await?;
    let stack: Stack = cluster.locate("stack", &args.name).await?;
    let namespace = stack.namespace().unwrap_or_default();
    let status = stack.status.clone().unwrap_or_default();
    let kinds = resolve_kinds(&cluster.client, &status.inventory).await;
    let objects = futures::stream::iter(&status.inventory)
        .map(|object| node(&cluster.client, &kinds, &namespace, object))
        .buffered(CONCURRENT_READS)
        .try_collect()
        .await?;
    let functions = cluster
        .api::<NetworkFunction>(&namespace)
        .list(&Default::default())
        .await?;
    let consumers = functions
        .into_iter()
        .filter(|nf| nf.spec.stack_ref.name == args.name)
        .map(|nf| {
            let status = nf.status.unwrap_or_default();
            Consumer {
                name: nf.metadata.name.unwrap_or_default(),
                version: nf.spec.version,
                stack_version: status.deployed_with.map(|d| d.stack.version),
                ready: conditions::is_true(&status.conditions, READY),
            }
        })
        .collect();
    let tree = Tree {
        namespace,
        name: args.name,
        version: stack.spec.version,
        applied: status.version,
        ready: conditions::is_true(&status.conditions, READY),
        objects,
        consumers,
    };
    output::emit(args.globals.output, &tree, render);
    Ok(Verdict::Ready)
}

/// Each kind of the inventory as the API server serves it (one discovery
/// request per group version); kinds it does not serve are left out.
async fn resolve_kinds(
    client: &Client,
    inventory: &[ManagedObject],
) -> BTreeMap<(String, String), (ApiResource, bool)> {
    let mut kinds = BTreeMap::new();
    for object in inventory {
        let key = (object.api_version.clone(), object.kind.clone());
        if kinds.contains_key(&key) {
            continue;
        }
        let (group, version) = object
            .api_version
            .rsplit_once('/')
            .unwrap_or(("", &object.api_version));
        let gvk = GroupVersionKind::gvk(group, version, &object.kind);
        if let Ok((resource, capabilities)) = discovery::pinned_kind(client, &gvk).await {
            kinds.insert(key, (resource, capabilities.scope == ApiScope::Namespaced));
        }
    }
    kinds
}

async fn node(
    client: &Client,
    kinds: &BTreeMap<(String, String), (ApiResource, bool)>,
    stack_namespace: &str,
    object: &ManagedObject,
) -> Result<Node> {
    let mut node = Node {
        api_version: object.api_version.clone(),
        kind: object.kind.clone(),
        namespace: object.namespace.clone(),
        name: object.name.clone(),
        state: "Unknown".into(),
        reason: None,
        stack_version: None,
    };
    let Some((resource, namespaced)) =
        kinds.get(&(object.api_version.clone(), object.kind.clone()))
    else {
        node.reason = Some("the API server does not serve this kind".into());
        return Ok(node);
    };
    let api: Api<DynamicObject> = if *namespaced {
        let namespace = object.namespace.as_deref().unwrap_or(stack_namespace);
        Api::namespaced_with(client.clone(), namespace, resource)
    } else {
        Api::all_with(client.clone(), resource)
    };
    let Some(found) = api.get_opt(&object.name).await? else {
        node.state = "Missing".into();
        return Ok(node);
    };
    node.stack_version = found.labels().get(LABEL_STACK_VERSION).cloned();
    (node.state, node.reason) = object_state(&found);
    Ok(node)
}

/// The state of any object: being deleted, its Ready or Available
/// condition, else present.
fn object_state(object: &DynamicObject) -> (String, Option<String>) {
    if object.metadata.deletion_timestamp.is_some() {
        return ("Deleting".into(), None);
    }
    let conditions = object
        .data
        .pointer("/status/conditions")
        .and_then(|c| c.as_array());
    let condition = ["Ready", "Available"].iter().find_map(|type_| {
        conditions?
            .iter()
            .find(|c| c.get("type").and_then(|t| t.as_str()) == Some(type_))
    });
    match condition {
        Some(c) if c.get("status").and_then(|s| s.as_str()) == Some("True") => {
            ("Ready".into(), None)
        }
        Some(c) => (
            "NotReady".into(),
            c.get("reason").and_then(|r| r.as_str()).map(Into::into),
        ),
        None => ("Present".into(), None),
    }
}

fn render(tree: &Tree) -> String {
    let count = tree.objects.len() + tree.consumers.len();
    let branch = |i: usize| if i + 1 == count { "└─ " } else { "├─ " };
    let title = format!(
        "Stack/{} {}",
        tree.name,
        tree.applied.as_deref().unwrap_or(&tree.version)
    );
    let mut rows = vec![vec![
        paint(Tone::Heading, &title),
        ready_word(tree.ready),
        tree.namespace.clone(),
        or_dash(None),
    ]];
    for (i, o) in tree.objects.iter().enumerate() {
        let tone = match o.state.as_str() {
            "Ready" | "Present" => Tone::Good,
            "Deleting" | "NotReady" => Tone::Waiting,
            _ => Tone::Bad,
        };
        let state = match &o.reason {
            Some(reason) => format!("{} ({reason})", paint(tone, &o.state)),
            None => paint(tone, &o.state),
        };
        let ns = o
            .namespace
            .clone()
            .unwrap_or_else(|| paint(Tone::Dim, "(cluster)"));
        rows.push(vec![
            format!("{}{}/{}", branch(i), o.kind, o.name),
            state,
            ns,
            or_dash(o.stack_version.as_deref()),
        ]);
    }
    for (i, c) in tree.consumers.iter().enumerate() {
        let name = format!(
            "{}NetworkFunction/{} {}",
            branch(tree.objects.len() + i),
            c.name,
            c.version
        );
        rows.push(vec![
            name,
            ready_word(c.ready),
            tree.namespace.clone(),
            or_dash(c.stack_version.as_deref()),
        ]);
    }
    table(&["OBJECT", "STATE", "NAMESPACE", "STACK-VERSION"], rows)
}
