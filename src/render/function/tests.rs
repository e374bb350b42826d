//! NetworkFunction children, from YAML fixtures as a user writes them.

use super::*;
use serde_json::json;

mod environment;
mod refusals;

/// The NetworkFunction of the API contract.
const UPF: &str = r#"
apiVersion: strata.dev/v1alpha1
kind: NetworkFunction
metadata: {name: upf, namespace: telco}
spec:
  version: 2.3.1
  image: registry.example/upf@sha256:4b1e0a2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd
  stackRef: {name: edge-net, version: ">=1.4, <2"}
  replicas: 3
  ports: [{name: gtpu, port: 2152, protocol: UDP}, {name: metrics, port: 9090}]
  env: [{name: MODE, value: edge}]
  config: {upf.yaml: "mode: edge\n"}
  stackOutputs: true
  resources: {requests: {cpu: 100m, memory: 64Mi}}
"#;

/// sha256 of `{"upf.yaml":"mode: edge\n"}`, computed independently.
const UPF_CONFIG_DIGEST: &str =
    "sha256:fd60110939f5ab17c4ebafeb92a0a2e500baefde375058ef076f71620bee1500";

fn function(yaml: &str) -> NetworkFunction {
    let mut nf: NetworkFunction = serde_yaml::from_str(yaml).expect("test NetworkFunction parses");
    nf.metadata.uid = Some("5d2c8a1e-0000-4000-8000-000000000001".into());
    nf.metadata.namespace.get_or_insert_with(|| "telco".into());
    nf
}

fn edge_net() -> ResolvedStack {
    ResolvedStack {
        name: "edge-net".into(),
        version: "1.4.0".into(),
        digest: "sha256:9f2c".into(),
        outputs: BTreeMap::from([
            ("dnsUpstream".into(), "10.0.0.53".into()),
            ("apn".into(), "internet".into()),
        ]),
    }
}

fn render(yaml: &str) -> Children {
    desired(&function(yaml), &edge_net(), &[]).expect("fixture renders")
}

fn to_json<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).expect("k8s-openapi objects serialize")
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).expect("expected YAML parses")
}

fn env(children: &Children) -> Vec<(String, String)> {
    let container = &children
        .deployment
        .spec
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    container
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.clone(), e.value.clone().unwrap_or_default()))
        .collect()
}

fn pod_template(children: &Children) -> Value {
    to_json(&children.deployment.spec.template)
}

const OWNER: &str = r#"
- apiVersion: strata.dev/v1alpha1
  kind: NetworkFunction
  name: upf
  uid: 5d2c8a1e-0000-4000-8000-000000000001
  controller: true
  blockOwnerDeletion: true
"#;

#[test]
fn renders_the_contract_example() {
    let children = render(UPF);
    assert_eq!(children.config_digest, UPF_CONFIG_DIGEST);
    let owner = yaml(OWNER);

    let mut want = yaml(
        r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: upf-config-fd60110939
  namespace: telco
  labels:
    app.kubernetes.io/name: upf
    app.kubernetes.io/managed-by: strata
    app.kubernetes.io/part-of: edge-net
    strata.dev/network-function: upf
data: {upf.yaml: "mode: edge\n"}
immutable: true
"#,
    );
    want["metadata"]["ownerReferences"] = owner.clone();
    assert_eq!(to_json(&children.config_map), want);

    let mut want = yaml(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: upf
  namespace: telco
  labels: &labels
    app.kubernetes.io/name: upf
    app.kubernetes.io/version: 2.3.1
    app.kubernetes.io/managed-by: strata
    app.kubernetes.io/part-of: edge-net
    strata.dev/network-function: upf
spec:
  replicas: 3
  selector:
    matchLabels: {app.kubernetes.io/name: upf, strata.dev/network-function: upf}
  progressDeadlineSeconds: 600
  revisionHistoryLimit: 10
  template:
    metadata:
      labels: *labels
      annotations:
        strata.dev/version: 2.3.1
        strata.dev/stack: edge-net
        strata.dev/stack-version: 1.4.0
        strata.dev/stack-digest: sha256:9f2c
        strata.dev/config-digest: sha256:fd60110939f5ab17c4ebafeb92a0a2e500baefde375058ef076f71620bee1500
    spec:
      containers:
        - name: function
          image: registry.example/upf@sha256:4b1e0a2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd
          ports:
            - {containerPort: 2152, name: gtpu, protocol: UDP}
            - {containerPort: 9090, name: metrics, protocol: TCP}
          env:
            - {name: MODE, value: edge}
            - {name: STACK_APN, value: internet}
            - {name: STACK_DNSUPSTREAM, value: 10.0.0.53}
          resources: {requests: {cpu: 100m, memory: 64Mi}}
          volumeMounts:
            - {name: config, mountPath: /etc/strata/config, readOnly: true}
      volumes:
        - name: config
          configMap: {name: upf-config-fd60110939}
"#,
    );
    want["metadata"]["ownerReferences"] = owner.clone();
    assert_eq!(to_json(&children.deployment), want);

    let mut want = yaml(
        r#"
apiVersion: v1
kind: Service
metadata:
  name: upf
  namespace: telco
  labels:
    app.kubernetes.io/name: upf
    app.kubernetes.io/managed-by: strata
    app.kubernetes.io/part-of: edge-net
    strata.dev/network-function: upf
spec:
  type: ClusterIP
  selector: {app.kubernetes.io/name: upf, strata.dev/network-function: upf}
  ports:
    - {name: gtpu, port: 2152, targetPort: 2152, protocol: UDP}
    - {name: metrics, port: 9090, targetPort: 9090, protocol: TCP}
"#,
    );
    want["metadata"]["ownerReferences"] = owner;
    assert_eq!(to_json(&children.service), want);
}

#[test]
fn serialized_children_carry_api_version_and_kind_for_server_side_apply() {
    let children = render(UPF);
    for (object, api_version, kind) in [
        (to_json(&children.config_map), "v1", "ConfigMap"),
        (to_json(&children.deployment), "apps/v1", "Deployment"),
        (to_json(&children.service), "v1", "Service"),
    ] {
        assert_eq!(
            (object["apiVersion"].as_str(), object["kind"].as_str()),
            (Some(api_version), Some(kind))
        );
    }
}

#[test]
fn a_bare_function_has_only_a_deployment() {
    let children = render(
        r#"
apiVersion: strata.dev/v1alpha1
kind: NetworkFunction
metadata: {name: echo}
spec: {version: 0.1.0, image: "echo:1", stackRef: {name: base}}
"#,
    );
    assert_eq!(children.config_map, None);
    assert_eq!(children.service, None);
    assert_eq!(children.config_digest, canonical_digest(&json!({})));
    let pod = pod_template(&children);
    assert_eq!(
        pod["spec"],
        json!({"containers": [{"name": "function", "image": "echo:1"}]}),
        "no ports, env, volumes or resources when none are declared"
    );
    assert_eq!(
        pod["metadata"]["annotations"][ANNOTATION_CONFIG_DIGEST],
        children.config_digest
    );
    assert_eq!(children.deployment.spec.replicas, Some(1));
}

#[test]
fn everything_the_pods_depend_on_rolls_them_and_the_selector_never_changes() {
    let base = render(UPF);
    let base_selector = to_json(&base.deployment.spec.selector);
    let stack = edge_net();
    let changed_stacks = [
        ResolvedStack {
            version: "1.5.0".into(),
            ..stack.clone()
        },
        ResolvedStack {
            digest: "sha256:11ab".into(),
            ..stack.clone()
        },
        ResolvedStack {
            name: "edge-net-2".into(),
            ..stack.clone()
        },
        ResolvedStack {
            outputs: BTreeMap::from([("apn".into(), "ims".into())]),
            ..stack.clone()
        },
    ];
    let mut variants: Vec<Children> = changed_stacks
        .iter()
        .map(|s| desired(&function(UPF), s, &[]).unwrap())
        .collect();
    for changed in [
        UPF.replace("mode: edge\\n", "mode: core\\n"),
        UPF.replace("version: 2.3.1", "version: 2.3.2"),
        UPF.replace("upf@sha256:4b1e", "upf@sha256:5b1e"),
        UPF.replace("value: edge", "value: core"),
        UPF.replace("port: 9090", "port: 9091"),
        UPF.replace("cpu: 100m", "cpu: 200m"),
    ] {
        variants.push(render(&changed));
    }
    let hop = NextHop {
        chain: "n6".into(),
        host: "fw.telco.svc".into(),
        port: None,
    };
    variants.push(desired(&function(UPF), &stack, &[hop]).unwrap());

    for (i, variant) in variants.iter().enumerate() {
        assert_ne!(
            pod_template(variant),
            pod_template(&base),
            "variant {i} must roll the pods"
        );
        assert_eq!(
            to_json(&variant.deployment.spec.selector),
            base_selector,
            "variant {i}"
        );
    }
    // Replicas are not part of the pod template: scaling is not a rollout.
    let scaled = render(&UPF.replace("replicas: 3", "replicas: 5"));
    assert_eq!(pod_template(&scaled), pod_template(&base));
}

#[test]
fn a_config_change_makes_a_new_config_map() {
    let base = render(UPF);
    let changed = render(&UPF.replace("mode: edge\\n", "mode: core\\n"));
    let name = |c: &Children| {
        c.config_map
            .as_ref()
            .unwrap()
            .metadata
            .name
            .clone()
            .unwrap()
    };
    assert_ne!(name(&changed), name(&base));
    assert!(
        name(&changed).starts_with("upf-config-")
            && name(&changed).len() == "upf-config-".len() + 10
    );
    assert_ne!(changed.config_digest, base.config_digest);
}

#[test]
fn rendering_is_deterministic() {
    let reordered = r#"
spec:
  resources: {requests: {memory: 64Mi, cpu: 100m}}
  stackOutputs: true
  config: {"upf.yaml": "mode: edge\n"}
  env: [{value: edge, name: MODE}]
  ports: [{protocol: UDP, port: 2152, name: gtpu}, {port: 9090, name: metrics}]
  replicas: 3
  stackRef: {version: ">=1.4, <2", name: edge-net}
  image: 'registry.example/upf@sha256:4b1e0a2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd'
  version: "2.3.1"
metadata: {namespace: telco, name: upf}
kind: NetworkFunction
apiVersion: strata.dev/v1alpha1
"#;
    let bytes = |c: &Children| {
        serde_json::to_vec(&(&c.config_map, &c.deployment, &c.service, &c.config_digest)).unwrap()
    };
    let first = bytes(&render(UPF));
    assert_eq!(bytes(&render(UPF)), first);
    assert_eq!(bytes(&render(reordered)), first);
}

#[test]
fn versions_that_are_not_label_values_stay_exact_in_annotations() {
    let children = render(&UPF.replace("version: 2.3.1", "version: 2.3.1+build.7"));
    let pod = pod_template(&children);
    assert_eq!(
        pod["metadata"]["labels"]["app.kubernetes.io/version"],
        "2.3.1_build.7"
    );
    assert_eq!(
        pod["metadata"]["annotations"][ANNOTATION_VERSION],
        "2.3.1+build.7"
    );
}
