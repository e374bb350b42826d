//! What is applied: the stacks and functions, and for the bare phase the
//! children Strata renders for them.

use std::collections::HashMap;

use std::time::Duration;

use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use strata::api::{NetworkFunction, Stack, StackSpec};
use strata::render::function::{ResolvedStack, desired};
use strata::render::stack::render_stack;
use strata_testkit::{apply_object, wait_for_every};

use crate::Result;

/// The stacks' version before the bump.
pub const STACK_VERSION: &str = "1.0.0";
/// The version the bump phase moves stack 0 to.
pub const BUMPED_VERSION: &str = "1.1.0";
/// Every stack's `consumerRollout.maxConcurrent`.
pub const MAX_CONCURRENT: &str = "25%";

pub fn stack_name(i: usize) -> String {
    format!("stack-{i:02}")
}

/// Stack `i` at `version`: a settings ConfigMap and outputs; the bumped
/// version changes one parameter, so its content (and digest) differ.
pub fn stack(i: usize, version: &str) -> Value {
    let mtu = if version == STACK_VERSION {
        "1500"
    } else {
        "9000"
    };
    json!({
        "apiVersion": "strata.dev/v1alpha1",
        "kind": "Stack",
        "metadata": {"name": stack_name(i)},
        "spec": {
            "version": version,
            "parameters": {"vlan": format!("{}", 100 + i), "mtu": mtu, "dns": "10.0.0.53"},
            "resources": [{
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": format!("{}-settings", stack_name(i))},
                "data": {"vlan": "${vlan}", "mtu": "${mtu}", "dns": "${dns}"}
            }],
            "outputs": {"vlan": "${vlan}", "mtu": "${mtu}", "dnsUpstream": "${dns}"},
            "consumerRollout": {"maxConcurrent": MAX_CONCURRENT}
        }
    })
}

/// Function `i`, on stack `i % stacks`: two ports, a config file, the
/// stack's outputs in its environment.
pub fn function(i: usize, stacks: usize, replicas: i32) -> Value {
    json!({
        "apiVersion": "strata.dev/v1alpha1",
        "kind": "NetworkFunction",
        "metadata": {"name": format!("nf-{i:05}")},
        "spec": {
            "version": "1.0.0",
            "image": "registry.example/bench/nf@sha256:829fe5cb26b2412473a590edbdaad79b0a4148f9808bdbd0612f7174fd90fb1c",
            "stackRef": {"name": stack_name(i % stacks), "version": "^1", "updatePolicy": "Automatic"},
            "replicas": replicas,
            "ports": [
                {"name": "pfcp", "port": 8805, "protocol": "UDP"},
                {"name": "http", "port": 8080, "protocol": "TCP"}
            ],
            "config": {"nf.yaml": format!("id: {i}\nlogLevel: info\nsessions: 10000\n")},
            "stackOutputs": true
        }
    })
}

/// What to apply.
pub enum Object {
    Stack(Value),
    Function(Value),
    ConfigMap(Box<ConfigMap>),
    Service(Box<Service>),
    Deployment(Box<Deployment>),
}

/// The children Strata renders for each function, without owner references
/// (their owner does not exist in the bare namespace).
pub fn bare_objects(stacks: &[Value], functions: &[Value], ns: &str) -> Result<Vec<Object>> {
    let mut resolved = HashMap::new();
    for stack in stacks {
        let spec: StackSpec = serde_json::from_value(stack["spec"].clone())?;
        let rendered = render_stack(&spec)?;
        let name = stack["metadata"]["name"].as_str().unwrap_or_default();
        resolved.insert(
            name.to_string(),
            ResolvedStack {
                name: name.to_string(),
                version: rendered.version,
                digest: rendered.digest,
                outputs: rendered.outputs,
            },
        );
    }
    let mut objects = Vec::new();
    for function in functions {
        let mut nf: NetworkFunction = serde_json::from_value(function.clone())?;
        nf.metadata.namespace = Some(ns.to_string());
        nf.metadata.uid = Some(format!("bench-{}", nf.name_any()));
        let stack = &resolved[&nf.spec.stack_ref.name];
        let children = desired(&nf, stack, &[])?;
        if let Some(mut cm) = children.config_map {
            cm.metadata.owner_references = None;
            objects.push(Object::ConfigMap(Box::new(cm)));
        }
        if let Some(mut service) = children.service {
            service.metadata.owner_references = None;
            objects.push(Object::Service(Box::new(service)));
        }
        let mut deployment = children.deployment;
        deployment.metadata.owner_references = None;
        objects.push(Object::Deployment(Box::new(deployment)));
    }
    Ok(objects)
}

/// Server-side applies `objects` in `ns`, `concurrency` at a time.
pub async fn apply_all(client: &Client, ns: &str, objects: Vec<Object>, concurrency: usize) {
    stream::iter(objects)
        .for_each_concurrent(concurrency.max(1), |object| async move {
            let client = client.clone();
            match object {
                Object::Stack(v) => apply_object(&Api::<Stack>::namespaced(client, ns), v).await,
                Object::Function(v) => {
                    apply_object(&Api::<NetworkFunction>::namespaced(client, ns), v).await
                }
                Object::ConfigMap(o) => {
                    apply_object(&Api::<ConfigMap>::namespaced(client, ns), as_value(&o)).await
                }
                Object::Service(o) => {
                    apply_object(&Api::<Service>::namespaced(client, ns), as_value(&o)).await
                }
                Object::Deployment(o) => {
                    apply_object(&Api::<Deployment>::namespaced(client, ns), as_value(&o)).await
                }
            }
        })
        .await;
}

/// Deletes the bare objects in `ns` (and, through the garbage collector,
/// their ReplicaSets and pods) and waits until they and the Services'
/// endpoints are gone, so that the phase after starts with the cluster the
/// bare phase before it started with. Much of the API server's work grows
/// with the objects it holds (a Service's cluster IP allocation counts the
/// allocated addresses), so each pair of phases must start from the same
/// number of them, not the second from the first's leftovers.
pub async fn remove_bare(client: &Client, ns: &str, within: Duration) -> Result<()> {
    let every = ListParams::default();
    // The namespace's own CA bundle is not the benchmark's.
    let config_maps = ListParams::default().fields("metadata.name!=kube-root-ca.crt");
    let background = DeleteParams::background();
    Api::<Deployment>::namespaced(client.clone(), ns)
        .delete_collection(&background, &every)
        .await?;
    Api::<Service>::namespaced(client.clone(), ns)
        .delete_collection(&background, &every)
        .await?;
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .delete_collection(&background, &config_maps)
        .await?;
    wait_for_every(
        Duration::from_millis(500),
        within,
        "the bare objects to be deleted",
        || async {
            let left = [
                left::<Deployment>(client, ns, &every).await,
                left::<ReplicaSet>(client, ns, &every).await,
                left::<Pod>(client, ns, &every).await,
                left::<Service>(client, ns, &every).await,
                left::<EndpointSlice>(client, ns, &every).await,
                left::<ConfigMap>(client, ns, &config_maps).await,
            ];
            left.iter()
                .all(|left| left.is_none())
                .then_some(())
                .ok_or_else(|| {
                    format!(
                        "still there: {}",
                        left.iter()
                            .flatten()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
        },
    )
    .await;
    Ok(())
}

/// The kind of `K` when `ns` still holds any of them (or cannot be listed).
async fn left<K>(client: &Client, ns: &str, params: &ListParams) -> Option<String>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let kind = K::kind(&()).to_string();
    match Api::<K>::namespaced(client.clone(), ns)
        .list_metadata(&params.clone().limit(1))
        .await
    {
        Ok(list) if list.items.is_empty() => None,
        Ok(_) => Some(kind),
        Err(error) => Some(format!("{kind} ({error})")),
    }
}

fn as_value(object: &impl Serialize) -> Value {
    serde_json::to_value(object).expect("a Kubernetes object serializes")
}
