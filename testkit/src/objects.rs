//! The CRDs, and objects applied the way a user applies them.

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::{TestNamespace, repo_root, wait_for_condition};

/// The field manager of everything the tests apply.
pub const FIELD_MANAGER: &str = "strata.dev/tests";

/// Applies `crds/strata.dev.yaml` with server-side apply (idempotent, safe to
/// run from several tests at once) and waits until every CRD is Established.
pub async fn install_crds(client: &Client) {
    install_crds_from(client, &[repo_root().join("crds/strata.dev.yaml")]).await;
}

/// Applies the CRDs in the YAML files `paths` (one or more documents each)
/// with server-side apply, and waits until every one is Established: for
/// the CRDs of other projects the tests run (Flux's, from its modules).
pub async fn install_crds_from(client: &Client, paths: &[PathBuf]) {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut names = Vec::new();
    for path in paths {
        install_crd_file(&api, &params, path, &mut names).await;
    }
    assert!(!names.is_empty(), "{paths:?} hold no CRDs");
    for name in names {
        wait_for_condition(&api, &name, "Established", "True", Duration::from_secs(30)).await;
    }
}

async fn install_crd_file(
    api: &Api<CustomResourceDefinition>,
    params: &PatchParams,
    path: &Path,
    names: &mut Vec<String>,
) {
    let yaml = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let before = names.len();
    for document in serde_yaml::Deserializer::from_str(&yaml) {
        let crd: CustomResourceDefinition = serde::Deserialize::deserialize(document)
            .unwrap_or_else(|e| panic!("{} holds an invalid CRD: {e}", path.display()));
        let name = crd.name_any();
        api.patch(&name, params, &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the API server refused CRD {name} from {}: {e}",
                    path.display()
                )
            });
        names.push(name);
    }
    assert!(names.len() > before, "{} holds no CRDs", path.display());
}

/// The Stack the runtime tests deploy onto: one ConfigMap.
pub const EDGE_STACK: &str = "edge-net";

/// Server-side applies [`EDGE_STACK`] at `version` in `ns`.
pub async fn apply_edge_stack(ns: &TestNamespace, version: &str) {
    apply(&ns.api::<strata::api::Stack>(), EDGE_STACK, serde_json::json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "Stack", "metadata": {"name": EDGE_STACK},
        "spec": {"version": version, "resources": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "edge-dns"}, "data": {"upstream": "10.0.0.53"}},
        ]},
    }))
    .await;
}

/// Server-side applies a one-replica function `name` at `version` on
/// [`EDGE_STACK`], its image pinned by digest.
pub async fn apply_edge_function(ns: &TestNamespace, name: &str, version: &str) {
    apply(&ns.api::<strata::api::NetworkFunction>(), name, serde_json::json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "NetworkFunction", "metadata": {"name": name},
        "spec": {
            "version": version,
            "image": format!("registry.example/{name}@sha256:{}", "0123456789abcdef".repeat(4)),
            "stackRef": {"name": EDGE_STACK},
            "replicas": 1,
        },
    }))
    .await;
}

/// Server-side applies `object` as `name` under [`FIELD_MANAGER`]; panics
/// when the API server refuses it.
pub async fn apply<K>(api: &Api<K>, name: &str, object: serde_json::Value)
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await
    .unwrap_or_else(|e| panic!("the API server refused {name}: {e}"));
}

/// Like [`apply`], named by the object's own `metadata.name`.
pub async fn apply_object<K>(api: &Api<K>, object: serde_json::Value)
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let name = object["metadata"]["name"]
        .as_str()
        .expect("an object with a name")
        .to_string();
    apply(api, &name, object).await;
}
