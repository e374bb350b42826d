//! What the NetworkFunction controller keeps of a function's Deployment:
//! its metadata, its desired replicas, the counts and the deadline of its
//! rollout, and a digest of its spec in place of the spec. The pod template
//! is most of a Deployment's size, and nothing reads it from the cache: the
//! rollout is followed from the status, and whether another writer changed
//! what Strata declares is told by the digest (see
//! [`crate::controllers::apply`]). Its labels and annotations are kept as
//! lists of pairs: a map of a few entries takes several times their size.

use std::{borrow::Cow, collections::BTreeMap};

use k8s_openapi::api::apps::v1::Deployment;
use kube::{Resource, api::ObjectMeta};
use serde_json::Value;

use crate::controllers::apply::{DIGEST_ANNOTATION, Stamp, spec_digest};

/// A function's Deployment as its controller reads it (serialized only to
/// estimate the cache's size).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct DeploymentState {
    /// The Deployment's metadata, without its labels and annotations.
    pub metadata: ObjectMeta,
    /// Its labels, in order.
    pub labels: Box<[(String, String)]>,
    /// Its annotations, in order.
    pub annotations: Box<[(String, String)]>,
    /// `spec.replicas`: the pods wanted.
    pub replicas: Option<i32>,
    /// What its status says of the rollout, once it has one.
    pub status: Option<RolloutStatus>,
    /// The digest of the whole spec as stored, server defaults included.
    pub spec_digest: String,
}

/// What a Deployment's status says of its rollout.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RolloutStatus {
    /// The generation the Deployment controller has seen.
    pub observed_generation: Option<i64>,
    /// Pods, of any template.
    pub replicas: Option<i32>,
    /// Pods of the current template.
    pub updated_replicas: Option<i32>,
    /// Pods available.
    pub available_replicas: Option<i32>,
    /// Pods ready.
    pub ready_replicas: Option<i32>,
    /// Whether the rollout exceeded its progress deadline (condition
    /// Progressing False, reason ProgressDeadlineExceeded).
    pub deadline_exceeded: bool,
}

impl From<Deployment> for DeploymentState {
    fn from(d: Deployment) -> Self {
        let spec = serde_json::to_value(&d.spec).unwrap_or_default();
        let status = d.status.map(|s| RolloutStatus {
            observed_generation: s.observed_generation,
            replicas: s.replicas,
            updated_replicas: s.updated_replicas,
            available_replicas: s.available_replicas,
            ready_replicas: s.ready_replicas,
            deadline_exceeded: s.conditions.iter().flatten().any(|c| {
                c.type_.as_deref() == Some("Progressing")
                    && c.status.as_deref() == Some("False")
                    && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            }),
        });
        let mut metadata = d.metadata;
        let pairs = |map: Option<BTreeMap<String, String>>| map.into_iter().flatten().collect();
        Self {
            labels: pairs(metadata.labels.take()),
            annotations: pairs(metadata.annotations.take()),
            metadata,
            replicas: d.spec.replicas,
            status,
            spec_digest: spec_digest(&spec),
        }
    }
}

impl DeploymentState {
    /// Its stamp, if it has one.
    pub fn stamp(&self) -> Option<Stamp> {
        self.annotations
            .iter()
            .find(|(key, _)| key == DIGEST_ANNOTATION)
            .map(|(_, digest)| Stamp::of(digest))
    }

    /// Its metadata as JSON, labels and annotations included.
    pub fn metadata_value(&self) -> Value {
        let mut value = serde_json::to_value(&self.metadata).unwrap_or_default();
        for (field, pairs) in [("labels", &self.labels), ("annotations", &self.annotations)] {
            if !pairs.is_empty() {
                value[field] = pairs
                    .iter()
                    .map(|(key, v)| (key.clone(), Value::from(v.as_str())))
                    .collect::<serde_json::Map<_, _>>()
                    .into();
            }
        }
        value
    }
}

impl Resource for DeploymentState {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        Deployment::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        Deployment::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        Deployment::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        Deployment::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The state of a Deployment's rollout of its current template.
#[derive(Debug, PartialEq, Eq)]
pub enum Rollout {
    /// Every desired pod runs the current template and is available.
    Complete,
    /// Pods are still being replaced or becoming available.
    Progressing(String),
    /// The rollout exceeded its progress deadline.
    Failed(String),
}

/// Reads a Deployment's rollout the way `kubectl rollout status` does.
pub fn rollout_state(d: &DeploymentState) -> Rollout {
    let desired = d.replicas.unwrap_or(1);
    let Some(s) = &d.status else {
        return Rollout::Progressing("the Deployment has no status yet".into());
    };
    if s.observed_generation.unwrap_or(0) < d.metadata.generation.unwrap_or(0) {
        return Rollout::Progressing(
            "the Deployment controller has not seen the new template yet".into(),
        );
    }
    if s.deadline_exceeded {
        return Rollout::Failed("the rollout exceeded its progress deadline".into());
    }
    let updated = s.updated_replicas.unwrap_or(0);
    let available = s.available_replicas.unwrap_or(0);
    let total = s.replicas.unwrap_or(0);
    if updated < desired {
        return Rollout::Progressing(format!("{updated} of {desired} pods updated"));
    }
    if total > updated {
        return Rollout::Progressing(format!("{} old pods are terminating", total - updated));
    }
    if available < desired {
        return Rollout::Progressing(format!("{available} of {desired} pods available"));
    }
    Rollout::Complete
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(yaml: &str) -> DeploymentState {
        serde_yaml::from_str::<Deployment>(yaml).unwrap().into()
    }

    #[test]
    fn rollout_states() {
        let base = "metadata: {name: upf, generation: 2}\nspec: {replicas: 3, selector: {}, template: {}}\n";
        let d = deployment(&format!(
            "{base}status: {{observedGeneration: 1, replicas: 3, updatedReplicas: 3, availableReplicas: 3}}"
        ));
        assert!(
            matches!(rollout_state(&d), Rollout::Progressing(_)),
            "generation not observed yet"
        );
        let d = deployment(&format!(
            "{base}status: {{observedGeneration: 2, replicas: 4, updatedReplicas: 3, availableReplicas: 3}}"
        ));
        assert_eq!(
            rollout_state(&d),
            Rollout::Progressing("1 old pods are terminating".into())
        );
        let d = deployment(&format!(
            "{base}status: {{observedGeneration: 2, replicas: 3, updatedReplicas: 3, availableReplicas: 2}}"
        ));
        assert_eq!(
            rollout_state(&d),
            Rollout::Progressing("2 of 3 pods available".into())
        );
        let d = deployment(&format!(
            "{base}status: {{observedGeneration: 2, replicas: 3, updatedReplicas: 3, availableReplicas: 3}}"
        ));
        assert_eq!(rollout_state(&d), Rollout::Complete);
        let d = deployment(&format!(
            "{base}status: {{observedGeneration: 2, replicas: 3, updatedReplicas: 1, conditions: [{{type: Progressing, status: \"False\", reason: ProgressDeadlineExceeded}}]}}"
        ));
        assert!(matches!(rollout_state(&d), Rollout::Failed(_)));
        let d = deployment(
            "metadata: {name: upf, generation: 1}\nspec: {selector: {}, template: {}}\nstatus: {observedGeneration: 1, replicas: 1, updatedReplicas: 1, availableReplicas: 1}",
        );
        assert_eq!(
            rollout_state(&d),
            Rollout::Complete,
            "replicas default to 1"
        );
    }

    #[test]
    fn the_state_keeps_a_digest_of_the_spec_not_the_spec() {
        let yaml = |image: &str| {
            format!(
                "metadata: {{name: upf, annotations: {{a: b}}}}\nspec: {{replicas: 2, selector: {{}}, template: {{spec: {{containers: [{{name: f, image: {image}}}]}}}}}}"
            )
        };
        let a = deployment(&yaml("i:1"));
        assert_eq!(a.replicas, Some(2));
        assert_eq!(a.status, None);
        assert_eq!(a.metadata.annotations, None);
        assert_eq!(&*a.annotations, &[("a".to_string(), "b".to_string())]);
        assert_eq!(a.metadata_value()["annotations"]["a"], "b");
        let whole: Deployment = serde_yaml::from_str(&yaml("i:1")).unwrap();
        let spec = serde_json::to_value(whole.spec).unwrap();
        assert_eq!(
            a.spec_digest,
            spec_digest(&spec),
            "the digest of the spec as JSON"
        );
        assert_ne!(
            a.spec_digest,
            deployment(&yaml("i:2")).spec_digest,
            "a change in the pod template changes the digest"
        );
    }
}
