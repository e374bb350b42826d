//! Stack rendering, from YAML as a user writes it.

use super::*;

/// The Stack of the API contract.
const EDGE_NET: &str = r#"
version: 1.4.0
parameters:
  vlan: "120"
resources:
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: edge-dns}
    data: {upstream: "10.0.0.53", vlan: "${vlan}"}
  - apiVersion: networking.k8s.io/v1
    kind: NetworkPolicy
    metadata: {name: edge-default-deny}
    spec: {podSelector: {}, policyTypes: [Ingress]}
outputs:
  dnsUpstream: "10.0.0.53"
"#;

fn spec(yaml: &str) -> StackSpec {
    serde_yaml::from_str(yaml).expect("test StackSpec parses")
}

fn render(yaml: &str) -> Result<RenderedStack, RenderError> {
    render_stack(&spec(yaml))
}

fn message(yaml: &str) -> String {
    render(yaml).expect_err("rendering should fail").to_string()
}

#[test]
fn renders_the_contract_example() {
    let rendered = render(EDGE_NET).unwrap();
    assert_eq!(rendered.version, "1.4.0");
    assert_eq!(rendered.resources.len(), 2);
    assert_eq!(
        rendered.resources[0]["data"],
        json!({"upstream": "10.0.0.53", "vlan": "120"})
    );
    assert_eq!(
        rendered.resources[1]["spec"]["policyTypes"],
        json!(["Ingress"])
    );
    assert_eq!(
        rendered.outputs,
        BTreeMap::from([("dnsUpstream".to_string(), "10.0.0.53".to_string())])
    );
    assert_eq!(
        rendered.digest,
        canonical_digest(
            &json!({"resources": rendered.resources, "outputs": {"dnsUpstream": "10.0.0.53"}})
        )
    );
    assert!(rendered.digest.starts_with("sha256:") && rendered.digest.len() == 7 + 64);
    // Nothing is defaulted at render time.
    assert!(
        rendered
            .resources
            .iter()
            .all(|r| r["metadata"].get("namespace").is_none())
    );
}

#[test]
fn digest_is_the_content_not_the_spelling() {
    let reordered = r#"
outputs: {dnsUpstream: '10.0.0.53'}
resources:
- kind: ConfigMap
  apiVersion: v1
  data:
    vlan: ${vlan}
    upstream: 10.0.0.53
  metadata:
    name: edge-dns
- spec:
    policyTypes: ["Ingress"]
    podSelector: {}
  metadata: {name: "edge-default-deny"}
  kind: NetworkPolicy
  apiVersion: networking.k8s.io/v1
parameters: {vlan: '120'}
version: "1.4.0"
"#;
    assert_eq!(
        render(EDGE_NET).unwrap().digest,
        render(reordered).unwrap().digest
    );
}

#[test]
fn digest_follows_the_rendered_content() {
    let base = render(EDGE_NET).unwrap().digest;
    // The same rendered content from another inventory is the same content:
    // here the parameter is inlined and an unused one is added.
    let inlined = EDGE_NET
        .replace("vlan: \"${vlan}\"", "vlan: \"120\"")
        .replace("parameters:\n  vlan: \"120\"", "parameters:\n  unused: x");
    assert!(!inlined.contains("${vlan}") && inlined.contains("unused: x"));
    assert_eq!(render(&inlined).unwrap().digest, base);
    // A version bump alone does not change the content.
    assert_eq!(
        render(&EDGE_NET.replace("1.4.0", "1.4.1")).unwrap().digest,
        base
    );
    // Any change of rendered content does.
    for changed in [
        EDGE_NET.replace("\"120\"", "\"121\""),
        EDGE_NET.replace("dnsUpstream: \"10.0.0.53\"", "dnsUpstream: \"10.0.0.54\""),
        EDGE_NET.replace("[Ingress]", "[Ingress, Egress]"),
        EDGE_NET.replace("name: edge-dns", "name: edge-dns2"),
    ] {
        assert_ne!(render(&changed).unwrap().digest, base, "{changed}");
    }
}

#[test]
fn digest_does_not_depend_on_namespace_defaulting() {
    let rendered = render(EDGE_NET).unwrap();
    let mut in_telco = rendered.resources.clone();
    in_telco
        .iter_mut()
        .for_each(|r| default_namespace(r, "telco"));
    assert_eq!(in_telco[0]["metadata"]["namespace"], "telco");
    assert_eq!(render(EDGE_NET).unwrap().digest, rendered.digest);
}

#[test]
fn default_namespace_keeps_a_namespace_the_user_wrote() {
    for (metadata, want) in [
        (json!({"name": "a"}), "telco"),
        (json!({"name": "a", "namespace": null}), "telco"),
        (json!({"name": "a", "namespace": ""}), "telco"),
        (json!({"name": "a", "namespace": "infra"}), "infra"),
    ] {
        let mut resource = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata});
        default_namespace(&mut resource, "telco");
        assert_eq!(resource["metadata"]["namespace"], want);
    }
}

#[test]
fn stack_labels_and_default_namespace() {
    let mut resource = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"team": "x"}}});
    add_stack_labels(&mut resource, "edge-net", "1.4.0+build.1");
    default_namespace(&mut resource, "telco");
    assert_eq!(
        resource["metadata"]["labels"],
        json!({"team": "x", "strata.dev/stack": "edge-net", "strata.dev/stack-version": "1.4.0_build.1"})
    );
    assert_eq!(resource["metadata"]["namespace"], "telco");
    let mut unlabelled =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}});
    add_stack_labels(&mut unlabelled, "edge-net", "1.4.0");
    assert_eq!(
        unlabelled["metadata"]["labels"]["strata.dev/stack"],
        "edge-net"
    );
}

#[test]
fn placeholders_everywhere_but_keys() {
    let rendered = render(
        r#"
version: 1.0.0
parameters: {site: par1, port: "8053", cidr.v4: 10.1.0.0/16}
resources:
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: "dns-${site}", labels: {site: "${site}"}}
    data:
      "${site}": literal key
      list: "[${cidr.v4}]"
      escaped: "$${site} costs 5$"
    nested: [[{deep: "${port}"}], 7, true, null]
outputs: {endpoint: "dns-${site}:${port}"}
"#,
    )
    .unwrap();
    let r = &rendered.resources[0];
    assert_eq!(
        r["metadata"],
        json!({"name": "dns-par1", "labels": {"site": "par1"}})
    );
    assert_eq!(
        r["data"],
        json!({"${site}": "literal key", "list": "[10.1.0.0/16]", "escaped": "${site} costs 5$"})
    );
    assert_eq!(r["nested"], json!([[{"deep": "8053"}], 7, true, null]));
    assert_eq!(rendered.outputs["endpoint"], "dns-par1:8053");
}

#[test]
fn placeholder_errors_name_the_resource_the_path_and_the_fix() {
    assert_eq!(
        message(
            r#"
version: 1.4.0
parameters: {vlan: "120"}
resources:
  - {apiVersion: v1, kind: Secret, metadata: {name: edge-tls}}
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: edge-dns}
    data: {upstream: "10.0.0.53", vlan: "${vlanid}"}
"#
        ),
        "spec.resources[1] (ConfigMap/edge-dns) uses ${vlanid} in data.vlan, which is not a parameter; add it to spec.parameters or fix the placeholder"
    );
    assert_eq!(
        message(&EDGE_NET.replace("${vlan}", "${vlan")),
        "spec.resources[0] (ConfigMap/edge-dns) has a ${ without a closing } in data.vlan; close the placeholder or write $${ for a literal ${"
    );
    assert_eq!(
        message(&EDGE_NET.replace("${vlan}", "${v lan}")),
        "spec.resources[0] (ConfigMap/edge-dns) uses ${v lan} in data.vlan, which is not a valid placeholder; a name starts with a letter or '_' and has only letters, digits, '_', '.' and '-' (write $${ for a literal ${)"
    );
    assert_eq!(
        message(&EDGE_NET.replace("dnsUpstream: \"10.0.0.53\"", "dnsUpstream: \"${dns}\"")),
        "spec.outputs uses ${dns} in dnsUpstream, which is not a parameter; add it to spec.parameters or fix the placeholder"
    );
}

#[test]
fn name_errors() {
    assert_eq!(
        message(&EDGE_NET.replace("vlan: \"120\"\nresources", "vlan id: \"120\"\nresources")),
        "spec.parameters has the key \"vlan id\", which cannot be used as a placeholder; a parameter name starts with a letter or '_' and has only letters, digits, '_', '.' and '-'"
    );
    for bad in ["dns-upstream", "1dns", "_dns", "dns.upstream"] {
        assert_eq!(
            render(&EDGE_NET.replace("dnsUpstream:", &format!("{bad}:"))),
            Err(RenderError::InvalidOutputName(bad.into()))
        );
    }
    assert_eq!(
        message(&EDGE_NET.replace(
            "dnsUpstream: \"10.0.0.53\"",
            "dnsUpstream: a\n  DNSUPSTREAM: b"
        )),
        "spec.outputs has both \"DNSUPSTREAM\" and \"dnsUpstream\", which are both published as STACK_DNSUPSTREAM; rename one of them"
    );
    assert_eq!(output_env_name("dnsUpstream"), "STACK_DNSUPSTREAM");
}

#[test]
fn malformed_resources_are_named_by_index() {
    let cases = [
        (
            "- just a string",
            "it is not an object; write it as a manifest with apiVersion, kind and metadata.name",
        ),
        (
            "- {kind: ConfigMap, metadata: {name: a}}",
            "apiVersion is missing; set it (for example v1 or apps/v1)",
        ),
        (
            "- {apiVersion: v1, kind: '', metadata: {name: a}}",
            "kind is empty; set it (for example ConfigMap)",
        ),
        (
            "- {apiVersion: v1, kind: [x], metadata: {name: a}}",
            "kind must be a string (for example ConfigMap)",
        ),
        (
            "- {apiVersion: v1, kind: ConfigMap}",
            "metadata is missing; set metadata.name",
        ),
        (
            "- {apiVersion: v1, kind: ConfigMap, metadata: a}",
            "metadata must be an object with at least a name",
        ),
        (
            "- {apiVersion: v1, kind: ConfigMap, metadata: {}}",
            "metadata.name is missing; set it (for example edge-dns)",
        ),
        (
            "- {apiVersion: v1, kind: ConfigMap, metadata: {name: 7}}",
            "metadata.name must be a string (for example edge-dns)",
        ),
        (
            "- {apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: 3}}",
            "metadata.namespace must be a string; remove it to use the Stack's namespace",
        ),
        (
            "- {apiVersion: v1, kind: ConfigMap, metadata: {name: a, labels: [x]}}",
            "metadata.labels must be a map from label keys to values",
        ),
        (
            "- {apiVersion: v1, kind: ConfigMap, metadata: {name: '${empty}'}}",
            "after substitution, metadata.name is empty; set it (for example edge-dns)",
        ),
    ];
    for (resource, reason) in cases {
        let yaml = format!(
            "version: 1.0.0\nparameters: {{empty: ''}}\nresources:\n- {{apiVersion: v1, kind: ConfigMap, metadata: {{name: ok}}}}\n{resource}\n"
        );
        assert_eq!(
            message(&yaml),
            format!("spec.resources[1] is not a valid Kubernetes object: {reason}"),
            "{resource}"
        );
    }
}

#[test]
fn duplicates_compare_group_kind_namespace_and_name() {
    let stack = |second: &str| {
        render(&format!(
            "version: 1.0.0\nparameters: {{n: a}}\nresources:\n- {{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {{name: a}}}}\n- {second}\n"
        ))
    };
    for same in [
        "{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: a}}",
        "{apiVersion: networking.k8s.io/v1beta1, kind: NetworkPolicy, metadata: {name: a}}",
        "{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: '${n}'}}",
    ] {
        assert_eq!(
            stack(same).unwrap_err().to_string(),
            "spec.resources[0] and spec.resources[1] are both NetworkPolicy/a; remove one of them or give them different names"
        );
    }
    for different in [
        "{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: b}}",
        "{apiVersion: crd.projectcalico.org/v1, kind: NetworkPolicy, metadata: {name: a}}",
        "{apiVersion: networking.k8s.io/v1, kind: Ingress, metadata: {name: a}}",
        "{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: a, namespace: other}}",
    ] {
        assert!(stack(different).is_ok(), "{different}");
    }
    let in_ns = "{apiVersion: v1, kind: ConfigMap, metadata: {name: a, namespace: x}}";
    assert_eq!(
        render(&format!(
            "version: 1.0.0\nresources:\n- {in_ns}\n- {in_ns}\n"
        ))
        .unwrap_err()
        .to_string(),
        "spec.resources[0] and spec.resources[1] are both ConfigMap/a in namespace x; remove one of them or give them different names"
    );
}

#[test]
fn deep_values_are_refused_without_overflowing_the_stack() {
    let mut deep = json!("${missing}");
    for _ in 0..100_000 {
        deep = Value::Array(vec![deep]);
    }
    let mut stack = spec(
        "version: 1.0.0\nresources: [{apiVersion: v1, kind: ConfigMap, metadata: {name: deep}}]",
    );
    stack.resources[0]["data"] = deep;
    assert_eq!(
        render_stack(&stack).unwrap_err().to_string(),
        "spec.resources[0] (ConfigMap/deep) is nested deeper than 100 levels; flatten it (Kubernetes objects are never this deep)"
    );
    // serde_json drops values recursively; leak this one rather than test that.
    std::mem::forget(stack);
}

#[test]
fn large_stacks_render() {
    let mut stack = spec("version: 1.0.0\nparameters: {v: x}");
    for i in 0..500 {
        let data: serde_json::Map<String, Value> = (0..200)
            .map(|k| (format!("k{k}"), json!("${v}-value")))
            .collect();
        stack.resources.push(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("cm-{i}")}, "data": data}));
    }
    let rendered = render_stack(&stack).unwrap();
    assert_eq!(rendered.resources.len(), 500);
    assert_eq!(rendered.resources[499]["data"]["k199"], "x-value");
    assert_eq!(render_stack(&stack).unwrap().digest, rendered.digest);
}

/// A placeholder error in a Secret says what and where, never the text,
/// which is part of a secret value.
#[test]
fn placeholder_errors_in_a_secret_do_not_quote_it() {
    for (value, fault) in [
        ("p@ss${hunter2}", "a placeholder that is not a parameter"),
        ("p@ss${hunter 2}", "an invalid placeholder"),
        ("p@ss${hunter2", "a ${ without a closing }"),
    ] {
        let mut stack = spec("version: 1.0.0");
        stack
            .resources
            .push(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "credentials"}, "stringData": {"password": value}}));
        let message = render_stack(&stack).unwrap_err().to_string();
        assert_eq!(
            message,
            format!(
                "spec.resources[0] (Secret/credentials) has {fault} in stringData.password; the text is not shown because it is in a Secret: add the parameter to spec.parameters, fix the placeholder, or write $${{ for a literal ${{"
            )
        );
        assert!(!message.contains("hunter"), "{message}");
    }
}

/// Stacks read from a watch event (whose decoding cuts resources below the
/// depth bound) render up to the bound and are refused by name beyond it.
#[test]
fn resources_are_rendered_up_to_the_depth_bound_and_refused_by_name_beyond() {
    use crate::api::{
        limits::MAX_DEPTH,
        stack::bounded::fixtures::{stack_of, watch_event},
    };
    render_stack(&stack_of(&watch_event(MAX_DEPTH - 2)).spec).expect("99 levels render");
    for depth in [MAX_DEPTH, 127, 128, 500, 100_000] {
        let error = render_stack(&stack_of(&watch_event(depth)).spec).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "spec.resources[0] (ConfigMap/deep) is nested deeper than {MAX_DEPTH} levels; flatten it (Kubernetes objects are never this deep)"
            ),
            "{depth}"
        );
    }
}
