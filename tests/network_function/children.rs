//! The children of a function, as a user inspects them: the Deployment's
//! pod template (annotations, labels, environment, configuration volume),
//! the content-named immutable ConfigMap and the Service.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use strata::api::NetworkFunction;

use super::{Fixture, pinned_image};

/// Checks the children of `upf` as `provenance::upf_spec` declares it,
/// deployed on `stack` 1.4.0 with `digest`: pod template annotations and
/// labels, the container's environment, the content-named ConfigMap and its
/// volume, and the Service.
pub async fn check_children(t: &Fixture, upf: &NetworkFunction, stack: &str, digest: &str) {
    let deployed = upf.status.clone().unwrap().deployed_with.unwrap();
    let owned_by_upf = |refs: &[OwnerReference]| {
        refs.len() == 1
            && refs[0].kind == "NetworkFunction"
            && Some(&refs[0].uid) == upf.uid().as_ref()
            && refs[0].controller == Some(true)
    };

    let deployment = t.deployment("upf").await.expect("upf's Deployment");
    assert!(owned_by_upf(deployment.owner_references()));
    let template = deployment.spec.template.metadata.clone().unwrap();
    let annotations = template.annotations.unwrap_or_default();
    let want: BTreeMap<String, String> = [
        ("strata.dev/version", "2.3.1"),
        ("strata.dev/stack", stack),
        ("strata.dev/stack-version", "1.4.0"),
        ("strata.dev/stack-digest", digest),
        ("strata.dev/config-digest", &deployed.config_digest),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(annotations, want);
    let labels = template.labels.unwrap_or_default();
    for (key, value) in [
        ("app.kubernetes.io/name", "upf"),
        ("app.kubernetes.io/version", "2.3.1"),
        ("app.kubernetes.io/managed-by", "strata"),
        ("app.kubernetes.io/part-of", stack),
    ] {
        assert_eq!(
            labels.get(key).map(String::as_str),
            Some(value),
            "pod label {key}"
        );
    }
    assert_eq!(deployment.spec.replicas, Some(2));

    // The configuration: immutable, named after its content, mounted.
    let hex = deployed.config_digest.trim_start_matches("sha256:");
    let config_name = format!("upf-config-{}", &hex[..10]);
    let config_maps = children_config_maps(t, "upf").await;
    assert_eq!(
        config_maps
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>(),
        std::slice::from_ref(&config_name)
    );
    let config = &config_maps[0];
    assert_eq!(config.immutable, Some(true));
    assert_eq!(
        config.data,
        Some(BTreeMap::from([("upf.yaml".into(), "mode: edge\n".into())]))
    );
    assert!(owned_by_upf(config.owner_references()));
    let pod = deployment.spec.template.spec.clone().unwrap();
    let volume = pod.volumes.unwrap_or_default();
    assert_eq!(
        volume
            .iter()
            .filter_map(|v| v.config_map.as_ref())
            .map(|c| c.name.clone())
            .collect::<Vec<_>>(),
        [config_name]
    );

    // The environment: spec.env, then the stack outputs.
    let container = &pod.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some(pinned_image("upf").as_str())
    );
    let env: Vec<(String, String)> = container
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect();
    let env_want: Vec<(String, String)> = [
        ("MODE", "edge"),
        ("STACK_DNSUPSTREAM", "10.0.0.53"),
        ("STACK_RELEASE", "1.4.0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(env, env_want);

    // The Service: one port per function port, selecting the function's pods.
    let service =
        t.ns.api::<Service>()
            .get("upf")
            .await
            .expect("upf's Service");
    assert!(owned_by_upf(service.owner_references()));
    let spec = service.spec.unwrap();
    let ports: Vec<(String, i32, String)> = spec
        .ports
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            (
                p.name.unwrap_or_default(),
                p.port,
                p.protocol.unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("gtpu".to_string(), 2152, "UDP".to_string()),
            ("metrics".to_string(), 9090, "TCP".to_string())
        ]
    );
    assert_eq!(
        spec.selector
            .unwrap_or_default()
            .get("app.kubernetes.io/name"),
        Some(&"upf".to_string())
    );
}

/// The ConfigMaps that are children of `function`.
pub async fn children_config_maps(t: &Fixture, function: &str) -> Vec<ConfigMap> {
    t.ns.api::<ConfigMap>()
        .list(&ListParams::default().labels(&format!("strata.dev/network-function={function}")))
        .await
        .expect("list ConfigMaps")
        .items
}

/// The pod template annotations of `function`'s Deployment.
pub async fn pod_annotations(t: &Fixture, function: &str) -> BTreeMap<String, String> {
    t.deployment(function)
        .await
        .and_then(|d| d.spec.template.metadata)
        .and_then(|m| m.annotations)
        .unwrap_or_default()
}

/// The stack version of each Running, Ready pod of `function`, sorted.
pub async fn running_pods(t: &Fixture, function: &str) -> Vec<String> {
    let pods: Api<Pod> = t.ns.api();
    let selector = format!("app.kubernetes.io/name={function}");
    let mut versions: Vec<String> = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let status = p.status.as_ref();
            status.and_then(|s| s.phase.as_deref()) == Some("Running")
                && status
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .map(|p| {
            p.annotations()
                .get("strata.dev/stack-version")
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    versions.sort();
    versions
}
