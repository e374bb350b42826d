//! The desired children of a NetworkFunction: an immutable, content-named
//! ConfigMap, a Deployment and a Service.
//!
//! Everything the pods depend on — function version, image, Stack version and
//! digest, configuration, stack outputs, next hops — ends up in the pod
//! template, so any change rolls out new pods and nothing running is mutated
//! in place. Everything else is deterministic, so re-applying an unchanged
//! function is a no-op for server-side apply.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, PodSpec, PodTemplateSpec,
    Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use serde_json::Value;

pub use self::env::chain_env_prefix;
use self::env::container_env;
use super::digest::canonical_digest;
use super::{RenderError, label_value};
use crate::api::function::FunctionPort;
use crate::api::{LABEL_NETWORK_FUNCTION, LABEL_STACK, LABEL_STACK_VERSION, NetworkFunction};

/// The name of the function's container in every NetworkFunction's pods. A
/// fixed name (rather than the function's name) lets tooling address it
/// uniformly: `kubectl logs deploy/<function> -c function`.
pub const CONTAINER_NAME: &str = "function";
/// Where the function's configuration files are mounted, read-only.
pub const CONFIG_MOUNT_PATH: &str = "/etc/strata/config";
/// The pod volume holding the configuration ConfigMap.
const CONFIG_VOLUME: &str = "config";

/// Pod template annotation: the function version (exact, unlike the label).
pub const ANNOTATION_VERSION: &str = "strata.dev/version";
/// Pod template annotation: the Stack the pods were deployed on.
pub const ANNOTATION_STACK: &str = LABEL_STACK;
/// Pod template annotation: the Stack version the pods were deployed on.
pub const ANNOTATION_STACK_VERSION: &str = LABEL_STACK_VERSION;
/// Pod template annotation: the Stack digest the pods were deployed on.
pub const ANNOTATION_STACK_DIGEST: &str = "strata.dev/stack-digest";
/// Pod template annotation: the digest of the function's configuration.
pub const ANNOTATION_CONFIG_DIGEST: &str = "strata.dev/config-digest";

/// The Stack revision a function resolved to: what it is deployed on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedStack {
    /// The Stack's name.
    pub name: String,
    /// The Stack version (exact semver).
    pub version: String,
    /// The digest of that version's content.
    pub digest: String,
    /// The outputs of that version.
    pub outputs: BTreeMap<String, String>,
}

/// The next hop of this function in one ServiceChain, which the function's
/// pods receive as `CHAIN_<CHAIN>_NEXT_HOST` and `CHAIN_<CHAIN>_NEXT_PORT`
/// (see [`chain_env_prefix`]). A function that is a hop in several chains gets
/// one pair per chain, told apart by the chain's name; the last hop of a chain
/// has no next hop and gets nothing for it. A function has at most one next
/// hop per chain: two for the same chain (the function appearing twice in it)
/// are refused with [`RenderError::RepeatedInChain`], and two chains whose
/// names differ only in `-` versus `.` with [`RenderError::DuplicateEnv`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NextHop {
    /// The ServiceChain's name.
    pub chain: String,
    /// Where to send traffic: the next hop's Service DNS name.
    pub host: String,
    /// The next hop's port, if it has one worth naming; without it only the
    /// HOST variable is set.
    pub port: Option<i32>,
}

/// The desired children of a NetworkFunction, ready for server-side apply.
#[derive(Clone, Debug, PartialEq)]
pub struct Children {
    /// The configuration, when `spec.config` is non-empty.
    pub config_map: Option<ConfigMap>,
    /// The function's pods.
    pub deployment: Deployment,
    /// The function's ports, when `spec.ports` is non-empty.
    pub service: Option<Service>,
    /// `sha256:...` of `spec.config` (of `{}` when there is none).
    pub config_digest: String,
}

/// Builds the children of `nf` deployed on `stack`, with `next_hops` from the
/// ServiceChains it is part of (in any order). `nf` must come from the API
/// server: its name, namespace and uid are needed for the owner references.
pub fn desired(
    nf: &NetworkFunction,
    stack: &ResolvedStack,
    next_hops: &[NextHop],
) -> Result<Children, RenderError> {
    let spec = &nf.spec;
    let common = Common::new(nf, stack)?;
    if let Some(bad) = spec.config.keys().find(|key| !is_config_map_key(key)) {
        return Err(RenderError::InvalidConfigKey(bad.clone()));
    }
    check_ports(&spec.ports)?;
    let env = container_env(nf, stack, next_hops)?;

    let config_digest = canonical_digest(&Value::Object(
        spec.config
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    ));
    let config_map = (!spec.config.is_empty()).then(|| ConfigMap {
        metadata: common.meta(config_map_name(common.name, &config_digest), &common.labels),
        data: Some(spec.config.clone()),
        immutable: Some(true),
        ..ConfigMap::default()
    });
    let config_map_name = config_map.as_ref().and_then(|cm| cm.metadata.name.clone());

    let annotations = BTreeMap::from([
        (ANNOTATION_VERSION.to_string(), spec.version.clone()),
        (ANNOTATION_STACK.to_string(), stack.name.clone()),
        (ANNOTATION_STACK_VERSION.to_string(), stack.version.clone()),
        (ANNOTATION_STACK_DIGEST.to_string(), stack.digest.clone()),
        (ANNOTATION_CONFIG_DIGEST.to_string(), config_digest.clone()),
    ]);
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(common.versioned_labels.clone()),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        }),
        spec: Some(pod_spec(nf, env, config_map_name)),
    };
    let deployment = Deployment {
        metadata: common.meta(common.name.to_string(), &common.versioned_labels),
        spec: DeploymentSpec {
            replicas: Some(spec.replicas),
            progress_deadline_seconds: Some(spec.progress_deadline_seconds),
            // The selector is immutable: only labels that never change.
            selector: LabelSelector {
                match_labels: Some(common.selector.clone()),
                ..LabelSelector::default()
            },
            // Old ReplicaSets are kept as long as the function's own history.
            revision_history_limit: Some(spec.history_limit),
            template,
            ..DeploymentSpec::default()
        },
        status: None,
    };
    let service = (!spec.ports.is_empty()).then(|| service(&common, &spec.ports));

    Ok(Children {
        config_map,
        deployment,
        service,
        config_digest,
    })
}

/// What every child of one function shares: identity, owner and labels.
struct Common<'a> {
    name: &'a str,
    namespace: &'a str,
    owner: OwnerReference,
    /// See [`selector_labels`].
    selector: BTreeMap<String, String>,
    /// The selector plus who manages the object and which Stack it is part of.
    labels: BTreeMap<String, String>,
    /// The labels plus the function version: on the Deployment and its pods.
    versioned_labels: BTreeMap<String, String>,
}

impl<'a> Common<'a> {
    fn new(nf: &'a NetworkFunction, stack: &ResolvedStack) -> Result<Self, RenderError> {
        let name = nf
            .metadata
            .name
            .as_deref()
            .ok_or(RenderError::MissingMetadata("metadata.name"))?;
        let namespace = nf
            .metadata
            .namespace
            .as_deref()
            .ok_or(RenderError::MissingMetadata("metadata.namespace"))?;
        let owner = OwnerReference {
            block_owner_deletion: Some(true),
            ..nf.controller_owner_ref(&())
                .ok_or(RenderError::MissingMetadata("metadata.uid"))?
        };
        let selector = selector_labels(name);
        let mut labels = selector.clone();
        labels.insert("app.kubernetes.io/managed-by".into(), "strata".into());
        labels.insert("app.kubernetes.io/part-of".into(), label_value(&stack.name));
        let mut versioned_labels = labels.clone();
        versioned_labels.insert(
            "app.kubernetes.io/version".into(),
            label_value(&nf.spec.version),
        );
        Ok(Self {
            name,
            namespace,
            owner,
            selector,
            labels,
            versioned_labels,
        })
    }

    /// Metadata of a child: in the function's namespace, owned by it.
    fn meta(&self, name: String, labels: &BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: Some(self.namespace.to_string()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }
}

/// The pod: one container, plus the configuration volume when there is one.
/// No securityContext is forced: function images may legitimately need root.
fn pod_spec(nf: &NetworkFunction, env: Vec<EnvVar>, config_map: Option<String>) -> PodSpec {
    let spec = &nf.spec;
    let container = Container {
        name: CONTAINER_NAME.into(),
        image: Some(spec.image.clone()),
        ports: non_empty(spec.ports.iter().map(|p| ContainerPort {
            container_port: p.port,
            name: Some(p.name.clone()),
            protocol: Some(p.protocol.as_str().into()),
            ..ContainerPort::default()
        })),
        env: non_empty(env),
        resources: spec.resources.clone(),
        volume_mounts: config_map.as_ref().map(|_| {
            vec![VolumeMount {
                name: CONFIG_VOLUME.into(),
                mount_path: CONFIG_MOUNT_PATH.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            }]
        }),
        ..Container::default()
    };
    PodSpec {
        containers: vec![container],
        volumes: config_map.map(|name| {
            vec![Volume {
                name: CONFIG_VOLUME.into(),
                config_map: Some(ConfigMapVolumeSource {
                    name,
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            }]
        }),
        ..PodSpec::default()
    }
}

/// A ClusterIP Service named after the function, forwarding each port to the
/// same port of the pods.
fn service(common: &Common, ports: &[FunctionPort]) -> Service {
    Service {
        metadata: common.meta(common.name.to_string(), &common.labels),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(common.selector.clone()),
            ports: Some(
                ports
                    .iter()
                    .map(|p| ServicePort {
                        name: Some(p.name.clone()),
                        port: p.port,
                        target_port: Some(IntOrString::Int(p.port)),
                        protocol: Some(p.protocol.as_str().into()),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// Whether `image` is pinned by digest: `<name>@sha256:<64 lower-case hex>`.
/// A tag can be moved to other content; a digest cannot.
pub fn image_pinned(image: &str) -> bool {
    match image.rsplit_once("@sha256:") {
        Some((name, hex)) => {
            !name.is_empty()
                && hex.len() == 64
                && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        }
        None => false,
    }
}

/// The labels that select a function's pods: the Deployment's selector, the
/// Service's, and what a NetworkPolicy matches a hop of a chain by.
/// Deployment selectors are immutable, so these never include anything that
/// changes (such as the version).
pub fn selector_labels(function: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), function.to_string()),
        (LABEL_NETWORK_FUNCTION.to_string(), function.to_string()),
    ])
}

/// The name of the configuration ConfigMap: the function's name and the first
/// 10 hex characters of the config digest, so new content gets a new object.
pub fn config_map_name(function: &str, config_digest: &str) -> String {
    let hex = config_digest
        .strip_prefix("sha256:")
        .unwrap_or(config_digest);
    format!("{function}-config-{}", hex.get(..10).unwrap_or(hex))
}

/// A ConfigMap key: at most 253 of `[-._a-zA-Z0-9]`, not `.`, not starting
/// with `..` (the kubelet's own files in a ConfigMap volume start with `..`).
fn is_config_map_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && key != "."
        && !key.starts_with("..")
}

/// Refuses two ports with the same number and protocol: Kubernetes keys
/// container and Service ports by them, so server-side apply would fail.
fn check_ports(ports: &[FunctionPort]) -> Result<(), RenderError> {
    let mut seen: BTreeMap<(i32, &str), &str> = BTreeMap::new();
    for port in ports {
        let protocol = port.protocol.as_str();
        if let Some(first) = seen.insert((port.port, protocol), &port.name) {
            return Err(RenderError::DuplicatePort {
                first: first.to_string(),
                second: port.name.clone(),
                port: port.port,
                protocol,
            });
        }
    }
    Ok(())
}

/// `None` for nothing, so an empty list is omitted rather than applied as `[]`.
fn non_empty<T>(items: impl IntoIterator<Item = T>) -> Option<Vec<T>> {
    let items: Vec<T> = items.into_iter().collect();
    (!items.is_empty()).then_some(items)
}

mod env;
#[cfg(test)]
mod tests;
