//! Bad input is refused at admission, and the error names the field and says
//! what is expected: a table of small objects and the exact text a user sees.

use crate::names_field_and_message;
use strata_testkit::{
    FIELD_MANAGER, OutputExt, TestNamespace, client, install_crds, kubectl, kubectl_with_stdin,
};

/// One object the API server must refuse, and what the user must read.
struct Refusal {
    what: &'static str,
    yaml: String,
    /// The field path the error names, e.g. `spec.ports[0].port`.
    path: &'static str,
    /// A fragment of the message for that path.
    message: &'static str,
}

fn refusal(what: &'static str, yaml: String, path: &'static str, message: &'static str) -> Refusal {
    Refusal {
        what,
        yaml,
        path,
        message,
    }
}

fn object(kind: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: strata.dev/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\nspec: {spec}\n"
    )
}

fn stack(name: &str, spec: &str) -> String {
    object("Stack", name, spec)
}

/// A Stack with a valid version plus `extra` fields.
fn stack_with(name: &str, extra: &str) -> String {
    stack(name, &format!("{{version: 1.4.0, {extra}}}"))
}

fn function(name: &str, spec: &str) -> String {
    object("NetworkFunction", name, spec)
}

/// A valid NetworkFunction spec plus `extra` fields.
fn function_with(name: &str, extra: &str) -> String {
    function(
        name,
        &format!(
            "{{version: 2.3.1, image: 'registry.example/5gc/upf:2.3.1', stackRef: {{name: edge-net}}, {extra}}}"
        ),
    )
}

fn chain(name: &str, hops: &str) -> String {
    object("ServiceChain", name, &format!("{{hops: {hops}}}"))
}

const SEMVER: &str = "must be a semantic version MAJOR.MINOR.PATCH, such as 1.4.0";
const REQUIREMENT: &str =
    r#"must be a semver requirement such as ">=1.4, <2", "^2.3", "=1.4.0" or "*""#;
const DNS_LABEL: &str = "must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit";
const DNS_SUBDOMAIN: &str = "must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.'";
const MAX_CONCURRENT: &str = "must be an integer of at least 1 or a percentage from 1% to 100%";
const FUNCTION_NAME: &str = "must be a DNS-1035 label of at most 52 characters (lower-case letters, digits and '-', starting with a letter): it names the function's Deployment and Service";

fn refusals() -> Vec<Refusal> {
    let too_long = format!("upf-{}", "a".repeat(49)); // 53 characters
    vec![
        // Versions are semantic versions; requirements are Cargo's.
        refusal(
            "Stack version without patch",
            stack("bad-stack-version", "{version: '1.4'}"),
            "spec.version",
            SEMVER,
        ),
        refusal(
            "Stack version with a v",
            stack("bad-stack-v", "{version: v1.4.0}"),
            "spec.version",
            SEMVER,
        ),
        refusal(
            "NetworkFunction version not semver",
            function(
                "bad-nf-version",
                "{version: latest, image: x, stackRef: {name: edge-net}}",
            ),
            "spec.version",
            SEMVER,
        ),
        refusal(
            "stackRef.version without a comma between comparators",
            function(
                "bad-stackref-req",
                "{version: 2.3.1, image: x, stackRef: {name: edge-net, version: '>=1.4 <2'}}",
            ),
            "spec.stackRef.version",
            REQUIREMENT,
        ),
        refusal(
            "dependsOn version not a requirement",
            function_with("bad-dep-req", "dependsOn: [{name: smf, version: latest}]"),
            "spec.dependsOn[0].version",
            REQUIREMENT,
        ),
        refusal(
            "hop version not a requirement",
            chain(
                "bad-hop-req",
                "[{name: firewall, networkFunction: fw, version: v3}, {name: gateway, networkFunction: upf}]",
            ),
            "spec.hops[0].version",
            REQUIREMENT,
        ),
        // Names of other objects.
        refusal(
            "stackRef.name not DNS-1123",
            function(
                "bad-stackref-name",
                "{version: 2.3.1, image: x, stackRef: {name: Edge_Net}}",
            ),
            "spec.stackRef.name",
            DNS_SUBDOMAIN,
        ),
        refusal(
            "dependsOn name upper case",
            function_with("bad-dep-name", "dependsOn: [{name: SMF}]"),
            "spec.dependsOn[0].name",
            DNS_LABEL,
        ),
        refusal(
            "hop networkFunction upper case",
            chain(
                "bad-hop-nf",
                "[{name: firewall, networkFunction: fw}, {name: gateway, networkFunction: UPF}]",
            ),
            "spec.hops[1].networkFunction",
            DNS_LABEL,
        ),
        refusal(
            "hop name with underscore",
            chain(
                "bad-hop-name",
                "[{name: fire_wall, networkFunction: fw}, {name: gateway, networkFunction: upf}]",
            ),
            "spec.hops[0].name",
            DNS_LABEL,
        ),
        refusal(
            "serviceAccountName not DNS-1123",
            stack_with("bad-sa", "serviceAccountName: Edge_Deployer"),
            "spec.serviceAccountName",
            DNS_SUBDOMAIN,
        ),
        // Ports.
        refusal(
            "port 0",
            function_with("bad-port-0", "ports: [{name: gtpu, port: 0}]"),
            "spec.ports[0].port",
            "should be greater than or equal to 1",
        ),
        refusal(
            "port 70000",
            function_with("bad-port-70000", "ports: [{name: gtpu, port: 70000}]"),
            "spec.ports[0].port",
            "should be less than or equal to 65535",
        ),
        refusal(
            "protocol ICMP",
            function_with(
                "bad-protocol",
                "ports: [{name: gtpu, port: 2152, protocol: ICMP}]",
            ),
            "spec.ports[0].protocol",
            r#"Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP""#,
        ),
        refusal(
            "duplicate port names",
            function_with(
                "bad-dup-ports",
                "ports: [{name: pfcp, port: 8805, protocol: UDP}, {name: pfcp, port: 8806, protocol: UDP}]",
            ),
            "spec.ports",
            "port names must be unique",
        ),
        refusal(
            "port name not an IANA service name",
            function_with("bad-port-name", "ports: [{name: GTP_U, port: 2152}]"),
            "spec.ports[0].name",
            "must be an IANA service name",
        ),
        refusal(
            "port name without a letter",
            function_with("bad-port-digits", "ports: [{name: '2152', port: 2152}]"),
            "spec.ports[0].name",
            "with at least one letter",
        ),
        // Counts and enums.
        refusal(
            "replicas -1",
            function_with("bad-replicas", "replicas: -1"),
            "spec.replicas",
            "should be greater than or equal to 0",
        ),
        refusal(
            "updatePolicy Sometimes",
            function(
                "bad-policy",
                "{version: 2.3.1, image: x, stackRef: {name: edge-net, updatePolicy: Sometimes}}",
            ),
            "spec.stackRef.updatePolicy",
            r#"Unsupported value: "Sometimes": supported values: "Automatic", "Manual""#,
        ),
        refusal(
            "NetworkFunction historyLimit 0",
            function_with("bad-nf-history", "historyLimit: 0"),
            "spec.historyLimit",
            "should be greater than or equal to 1",
        ),
        refusal(
            "Stack historyLimit 0",
            stack_with("bad-stack-history", "historyLimit: 0"),
            "spec.historyLimit",
            "should be greater than or equal to 1",
        ),
        refusal(
            "Stack historyLimit 101",
            stack_with("bad-stack-history-max", "historyLimit: 101"),
            "spec.historyLimit",
            "should be less than or equal to 100",
        ),
        refusal(
            "maxConcurrent 0",
            stack_with("bad-max-0", "consumerRollout: {maxConcurrent: 0}"),
            "spec.consumerRollout.maxConcurrent",
            MAX_CONCURRENT,
        ),
        refusal(
            "maxConcurrent 0%",
            stack_with("bad-max-0pct", "consumerRollout: {maxConcurrent: '0%'}"),
            "spec.consumerRollout.maxConcurrent",
            MAX_CONCURRENT,
        ),
        refusal(
            "maxConcurrent 101%",
            stack_with("bad-max-101pct", "consumerRollout: {maxConcurrent: '101%'}"),
            "spec.consumerRollout.maxConcurrent",
            MAX_CONCURRENT,
        ),
        refusal(
            "maxConcurrent abc",
            stack_with("bad-max-abc", "consumerRollout: {maxConcurrent: abc}"),
            "spec.consumerRollout.maxConcurrent",
            MAX_CONCURRENT,
        ),
        refusal(
            "maxFailures -1",
            stack_with("bad-failures-neg", "consumerRollout: {maxFailures: -1}"),
            "spec.consumerRollout.maxFailures",
            "must be an integer of at least 0 or a percentage from 0% to 100%",
        ),
        refusal(
            "maxFailures 101%",
            stack_with(
                "bad-failures-101pct",
                "consumerRollout: {maxFailures: '101%'}",
            ),
            "spec.consumerRollout.maxFailures",
            "must be an integer of at least 0 or a percentage from 0% to 100%",
        ),
        refusal(
            "duplicate step names",
            stack_with(
                "bad-steps-dup",
                "consumerRollout: {steps: [{name: canary, selector: {matchLabels: {a: b}}}, {name: canary}]}",
            ),
            "spec.consumerRollout.steps",
            "step names must be unique",
        ),
        refusal(
            "a step without a selector before the last",
            stack_with(
                "bad-steps-open",
                "consumerRollout: {steps: [{name: all}, {name: rest, selector: {matchLabels: {a: b}}}]}",
            ),
            "spec.consumerRollout.steps",
            "only the last step may have no selector",
        ),
        refusal(
            "step maxConcurrent 0",
            stack_with(
                "bad-step-max",
                "consumerRollout: {steps: [{name: all, maxConcurrent: 0}]}",
            ),
            "spec.consumerRollout.steps[0].maxConcurrent",
            MAX_CONCURRENT,
        ),
        refusal(
            "step name not a DNS label",
            stack_with(
                "bad-step-name",
                "consumerRollout: {steps: [{name: Canary_1}]}",
            ),
            "spec.consumerRollout.steps[0].name",
            "must be a DNS-1123 label: lower-case letters, digits and '-', starting and ending with a letter or digit",
        ),
        // Chains.
        refusal(
            "one hop only",
            chain("bad-one-hop", "[{name: firewall, networkFunction: fw}]"),
            "spec.hops",
            "should have at least 2 items",
        ),
        refusal(
            "duplicate hop names",
            chain(
                "bad-dup-hops",
                "[{name: nat, networkFunction: cgnat}, {name: nat, networkFunction: upf}]",
            ),
            "spec.hops",
            "hop names must be unique",
        ),
        refusal(
            "duplicate dependencies",
            function_with(
                "bad-dup-deps",
                "dependsOn: [{name: smf}, {name: smf, version: '>=2'}]",
            ),
            "spec.dependsOn",
            "dependencies must be unique",
        ),
        // Stack resources must identify themselves.
        refusal(
            "resource without apiVersion",
            stack_with(
                "bad-res-apiversion",
                "resources: [{kind: ConfigMap, metadata: {name: edge-dns}}]",
            ),
            "spec.resources[0].apiVersion",
            "Required value",
        ),
        refusal(
            "resource without kind",
            stack_with(
                "bad-res-kind",
                "resources: [{apiVersion: v1, metadata: {name: edge-dns}}]",
            ),
            "spec.resources[0].kind",
            "Required value",
        ),
        refusal(
            "resource without metadata.name",
            stack_with(
                "bad-res-name",
                "resources: [{apiVersion: v1, kind: ConfigMap, metadata: {labels: {tier: edge}}}]",
            ),
            "spec.resources[0].metadata.name",
            "Required value",
        ),
        refusal(
            "resource without metadata",
            stack_with(
                "bad-res-meta",
                "resources: [{apiVersion: v1, kind: ConfigMap, data: {a: b}}]",
            ),
            "spec.resources[0].metadata",
            "Required value",
        ),
        // The function's own name becomes its Deployment's and Service's.
        refusal(
            "NetworkFunction name of 53 characters",
            function_with(&too_long, "replicas: 1"),
            "metadata.name",
            FUNCTION_NAME,
        ),
        refusal(
            "NetworkFunction name with upper case",
            function_with("Upf", "replicas: 1"),
            "metadata.name",
            FUNCTION_NAME,
        ),
        refusal(
            "NetworkFunction name with a leading digit",
            function_with("5g-upf", "replicas: 1"),
            "metadata.name",
            FUNCTION_NAME,
        ),
        // Required fields.
        refusal(
            "Stack without version",
            stack("bad-no-version", "{parameters: {vlan: '120'}}"),
            "spec.version",
            "Required value",
        ),
        refusal(
            "NetworkFunction without image",
            function(
                "bad-no-image",
                "{version: 2.3.1, stackRef: {name: edge-net}}",
            ),
            "spec.image",
            "Required value",
        ),
        refusal(
            "NetworkFunction without stackRef",
            function("bad-no-stackref", "{version: 2.3.1, image: x}"),
            "spec.stackRef",
            "Required value",
        ),
        refusal(
            "ServiceChain without hops",
            object("ServiceChain", "bad-no-hops", "{isolation: true}"),
            "spec.hops",
            "Required value",
        ),
    ]
}

/// Every bad input is refused at admission, and the error names the field
/// and says what is expected: the exact text a user sees from kubectl.
#[tokio::test]
async fn invalid_objects_are_refused_with_field_and_reason() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "api-refusals").await;

    let cases = refusals();
    assert!(cases.len() >= 25, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let output = kubectl_with_stdin(
            [
                "apply",
                "--server-side",
                "--field-manager",
                FIELD_MANAGER,
                "-n",
                ns.name(),
                "-f",
                "-",
            ],
            &case.yaml,
        );
        let stderr = output.stderr_text();
        if output.status.success() {
            failures.push(format!(
                "{}: ACCEPTED\n{}\n{}",
                case.what,
                case.yaml,
                output.stdout_text()
            ));
        } else if !names_field_and_message(&stderr, case.path, case.message) {
            failures.push(format!(
                "{}: refused, but not with `{}: ... {}`:\n{}",
                case.what, case.path, case.message, stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );

    // Nothing of it was stored.
    let stored = kubectl(["get", "strata", "-n", ns.name(), "-o", "name"])
        .expect_success("kubectl get strata");
    assert_eq!(stored.trim(), "", "refused objects were stored");

    ns.cleanup().await;
}

/// The same checks on a known output, so the matcher itself can fail.
#[test]
fn matcher_requires_the_whole_path_and_the_message() {
    let single = r#"The Stack "s" is invalid: spec.version: Invalid value: "1.4": must be a semantic version MAJOR.MINOR.PATCH, such as 1.4.0"#;
    assert!(names_field_and_message(single, "spec.version", SEMVER));
    assert!(!names_field_and_message(
        single,
        "spec.version",
        REQUIREMENT
    ));
    assert!(
        !names_field_and_message(single, "version", SEMVER),
        "a path's tail is not the path"
    );
    let list = "The NetworkFunction \"a\" is invalid: \n* spec.image: Required value\n* <nil>: Invalid value: null: some validation rules were not checked";
    assert!(names_field_and_message(
        list,
        "spec.image",
        "Required value"
    ));
    assert!(!names_field_and_message(
        list,
        "spec.stackRef",
        "Required value"
    ));
}
