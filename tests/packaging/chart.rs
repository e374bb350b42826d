//! The Helm chart: its CRDs are the committed ones, `helm lint` is clean,
//! every value is documented, the options render as values.yaml says, and
//! what it renders is accepted by the API server.

use serde_json::{Value, json};

use crate::{chart_dir, documents, find, helm, ids_of_kind, render, server_dry_run, to_yaml};
use strata_testkit::{OutputExt, TestNamespace, client, install_crds, repo_root};

/// Copies crds/ into the chart and into deploy/ (and regenerates deploy/).
const COPY_CRDS: &str = "hack/render-deploy";

#[test]
fn chart_and_kustomize_crds_are_the_committed_crds() {
    let committed = std::fs::read(repo_root().join("crds/strata.dev.yaml")).expect("crds/");
    for copy in [
        "charts/strata/crds/strata.dev.yaml",
        "deploy/crds/strata.dev.yaml",
    ] {
        let bytes = std::fs::read(repo_root().join(copy))
            .unwrap_or_else(|e| panic!("cannot read {copy} ({e}); create it with `{COPY_CRDS}`"));
        assert!(
            bytes == committed,
            "{copy} differs from crds/strata.dev.yaml: refresh it with `{COPY_CRDS}`"
        );
    }
}

#[test]
fn helm_lint_is_clean() {
    // helm and kubectl come with the plane (`hack/plane env`).
    if !strata_testkit::plane_available() {
        return;
    }
    let chart = chart_dir();
    let value_sets: [&[&str]; 3] = [
        &[],
        &[
            "replicaCount=3",
            "operator.namespaces={a,b}",
            "serviceMonitor.enabled=true",
            "prometheusRule.enabled=true",
            "grafanaDashboard.enabled=true",
            "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ],
        &[
            "stacks.impersonation=false",
            "stacks.managedResources=null",
            "rbac.create=false",
            "serviceAccount.create=false",
            "serviceAccount.name=existing",
        ],
    ];
    for values in value_sets {
        let mut args = vec![
            "lint".to_string(),
            "--strict".into(),
            chart.display().to_string(),
        ];
        for value in values {
            args.extend(["--set".into(), (*value).into()]);
        }
        let output = helm(&args).expect_success(&format!("helm lint --strict with {values:?}"));
        assert!(
            output.contains("1 chart(s) linted, 0 chart(s) failed")
                && !output.contains("[WARNING]")
                && !output.contains("[ERROR]"),
            "helm lint with {values:?} is not clean:\n{output}"
        );
    }
}

/// Every value in values.yaml is documented: a comment directly above it or
/// above one of the maps that hold it.
#[test]
fn every_value_is_documented() {
    let path = chart_dir().join("values.yaml");
    let text = std::fs::read_to_string(&path).expect("values.yaml");
    // (indent, documented) of the maps enclosing the current line.
    let mut parents: Vec<(usize, bool)> = Vec::new();
    let mut comment_above = false;
    let mut undocumented = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            comment_above = false;
            continue;
        }
        if trimmed.starts_with('#') {
            comment_above = true;
            continue;
        }
        let indent = line.len() - trimmed.len();
        // List items belong to the key above them.
        if trimmed.starts_with('-') || parents.last().is_some_and(|(i, _)| indent > *i + 2) {
            comment_above = false;
            continue;
        }
        let Some((key, rest)) = trimmed.split_once(':') else {
            panic!(
                "values.yaml:{}: not a `key: value` line: {line}",
                number + 1
            );
        };
        while parents.last().is_some_and(|(i, _)| *i >= indent) {
            parents.pop();
        }
        let documented = comment_above || parents.iter().any(|(_, d)| *d);
        if rest.trim().is_empty() {
            parents.push((indent, documented));
        } else if !documented {
            undocumented.push(format!("values.yaml:{}: {key}", number + 1));
        }
        comment_above = false;
    }
    assert!(
        undocumented.is_empty(),
        "values without a comment: {undocumented:#?}"
    );
}

fn env_of(deployment: &Value) -> Vec<(String, Value)> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("the container has env")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("env name").to_string();
            let value = e
                .get("value")
                .cloned()
                .unwrap_or_else(|| e["valueFrom"].clone());
            (name, value)
        })
        .collect()
}

fn env_value(deployment: &Value, name: &str) -> Option<Value> {
    env_of(deployment)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

#[test]
fn defaults_render_one_replica_without_leader_election() {
    // helm and kubectl come with the plane (`hack/plane env`).
    if !strata_testkit::plane_available() {
        return;
    }
    let objects = documents(&render("strata", "strata-system", &[]));
    let deployment = find(&objects, "Deployment", "strata");
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(deployment["spec"]["strategy"], json!({"type": "Recreate"}));
    assert_eq!(
        env_value(deployment, "STRATA_LEADER_ELECTION"),
        Some(json!("false"))
    );
    assert_eq!(env_value(deployment, "STRATA_NAMESPACES"), None);
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "localhost/strata:0.1.0");
    assert_eq!(container["args"], json!(["run"]));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(
        env_value(deployment, "STRATA_METRICS_ADDR"),
        Some(json!("0.0.0.0:8080"))
    );
    assert!(ids_of_kind(&objects, "PodDisruptionBudget").is_empty());
    assert!(ids_of_kind(&objects, "Role").is_empty());
    assert!(ids_of_kind(&objects, "ServiceMonitor").is_empty());
    // The operator's own objects never carry the label that marks the
    // Deployments it manages for NetworkFunctions.
    for object in &objects {
        assert_ne!(
            object["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "strata",
            "{}",
            crate::id(object)
        );
    }
}

#[test]
fn more_than_one_replica_elects_a_leader_and_keeps_one_through_disruptions() {
    // helm and kubectl come with the plane (`hack/plane env`).
    if !strata_testkit::plane_available() {
        return;
    }
    let objects = documents(&render("strata", "ops", &["replicaCount=2"]));
    let deployment = find(&objects, "Deployment", "strata");
    assert_eq!(
        env_value(deployment, "STRATA_LEADER_ELECTION"),
        Some(json!("true"))
    );
    assert_eq!(
        env_value(deployment, "STRATA_LEASE_NAMESPACE"),
        Some(json!({"fieldRef": {"fieldPath": "metadata.namespace"}}))
    );
    assert_eq!(
        env_value(deployment, "STRATA_IDENTITY"),
        Some(json!({"fieldRef": {"fieldPath": "metadata.name"}}))
    );
    assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(
        deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        0
    );
    let role = find(&objects, "Role", "strata-leader-election");
    assert_eq!(role["metadata"]["namespace"], "ops");
    let pdb = find(&objects, "PodDisruptionBudget", "strata");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );

    // One replica may ask for leader election too; it gets no PDB.
    let objects = documents(&render("strata", "ops", &["leaderElection.enabled=true"]));
    let deployment = find(&objects, "Deployment", "strata");
    assert_eq!(
        env_value(deployment, "STRATA_LEADER_ELECTION"),
        Some(json!("true"))
    );
    find(&objects, "Role", "strata-leader-election");
    assert!(ids_of_kind(&objects, "PodDisruptionBudget").is_empty());
}

#[test]
fn shards_render_a_deployment_and_a_disruption_budget_each() {
    if !strata_testkit::plane_available() {
        return;
    }
    let objects = documents(&render(
        "strata",
        "ops",
        &["sharding.shards=3", "replicaCount=2"],
    ));
    assert!(
        ids_of_kind(&objects, "Deployment").len() == 3,
        "{:?}",
        ids_of_kind(&objects, "Deployment")
    );
    for shard in 0..3 {
        let name = format!("strata-{shard}");
        let deployment = find(&objects, "Deployment", &name);
        assert_eq!(deployment["spec"]["replicas"], 2);
        assert_eq!(env_value(deployment, "STRATA_SHARDS"), Some(json!("3")));
        assert_eq!(
            env_value(deployment, "STRATA_SHARD"),
            Some(json!(shard.to_string()))
        );
        assert_eq!(
            env_value(deployment, "STRATA_LEADER_ELECTION"),
            Some(json!("true"))
        );
        let selector = &deployment["spec"]["selector"]["matchLabels"];
        assert_eq!(selector["strata.dev/shard"], json!(shard.to_string()));
        assert_eq!(
            deployment["spec"]["template"]["metadata"]["labels"]["strata.dev/shard"],
            json!(shard.to_string())
        );
        let pdb = find(&objects, "PodDisruptionBudget", &name);
        assert_eq!(&pdb["spec"]["selector"]["matchLabels"], selector);
    }
    let role = find(&objects, "Role", "strata-leader-election");
    assert!(
        role["rules"][0]["verbs"]
            .as_array()
            .is_some_and(|v| v.contains(&json!("list"))),
        "{role}"
    );

    // Sharded with one replica each: election on, no budgets.
    let objects = documents(&render("strata", "ops", &["sharding.shards=2"]));
    let deployment = find(&objects, "Deployment", "strata-1");
    assert_eq!(
        env_value(deployment, "STRATA_LEADER_ELECTION"),
        Some(json!("true"))
    );
    assert!(ids_of_kind(&objects, "PodDisruptionBudget").is_empty());
}

#[test]
fn watched_namespaces_scope_what_stacks_may_do_and_which_secrets_are_read() {
    // helm and kubectl come with the plane (`hack/plane env`).
    if !strata_testkit::plane_available() {
        return;
    }
    let objects = documents(&render(
        "strata",
        "ops",
        &["operator.namespaces={team-a,team-b}"],
    ));
    let deployment = find(&objects, "Deployment", "strata");
    assert_eq!(
        env_value(deployment, "STRATA_NAMESPACES"),
        Some(json!("team-a,team-b"))
    );
    let bindings: Vec<(String, String)> = objects
        .iter()
        .filter(|o| o["kind"] == "RoleBinding")
        .map(|o| {
            (
                o["metadata"]["namespace"].as_str().unwrap().to_string(),
                o["roleRef"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut expected = Vec::new();
    for role in [
        "strata-stack-resources",
        "strata-stack-impersonation",
        "strata-kubeconfig-secrets",
    ] {
        for ns in ["team-a", "team-b"] {
            expected.push((ns.to_string(), role.to_string()));
        }
    }
    assert_eq!(bindings, expected);
    assert_eq!(
        ids_of_kind(&objects, "ClusterRoleBinding"),
        ["ClusterRoleBinding/strata"],
        "only the operator's own role is bound cluster-wide"
    );

    // Cross-namespace Stacks need the resource grants everywhere; the
    // impersonated ServiceAccount is still in the Stack's namespace.
    let objects = documents(&render(
        "strata",
        "ops",
        &[
            "operator.namespaces={team-a}",
            "operator.allowCrossNamespace=true",
        ],
    ));
    assert_eq!(
        ids_of_kind(&objects, "ClusterRoleBinding"),
        [
            "ClusterRoleBinding/strata",
            "ClusterRoleBinding/strata-stack-resources"
        ]
    );
    assert_eq!(
        ids_of_kind(&objects, "RoleBinding"),
        [
            "RoleBinding/strata-stack-impersonation",
            "RoleBinding/strata-kubeconfig-secrets"
        ],
        "the kubeconfig Secrets are read in the functions' namespaces only"
    );
}

#[test]
fn options_turn_grants_and_objects_on_and_off() {
    // helm and kubectl come with the plane (`hack/plane env`).
    if !strata_testkit::plane_available() {
        return;
    }
    let objects = documents(&render(
        "strata",
        "ops",
        &["stacks.impersonation=false", "stacks.managedResources=null"],
    ));
    assert_eq!(
        ids_of_kind(&objects, "ClusterRole"),
        [
            "ClusterRole/strata",
            "ClusterRole/strata-kubeconfig-secrets"
        ]
    );

    let objects = documents(&render(
        "strata",
        "ops",
        &[
            "rbac.create=false",
            "serviceAccount.create=false",
            "serviceAccount.name=mine",
        ],
    ));
    for kind in [
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ] {
        assert!(ids_of_kind(&objects, kind).is_empty(), "{kind}");
    }
    let deployment = find(&objects, "Deployment", "strata");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        "mine"
    );

    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let objects = documents(&render(
        "strata",
        "ops",
        &[
            "image.repository=registry.example/strata",
            &format!("image.digest={digest}"),
        ],
    ));
    let deployment = find(&objects, "Deployment", "strata");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("registry.example/strata@{digest}")
    );

    // Stacks are applied as a default ServiceAccount only when it is set.
    let deployment = |set: &[&str]| {
        let objects = documents(&render("strata", "ops", set));
        env_value(
            find(&objects, "Deployment", "strata"),
            "STRATA_DEFAULT_SERVICE_ACCOUNT",
        )
    };
    assert_eq!(deployment(&[]), None);
    assert_eq!(
        deployment(&["stacks.defaultServiceAccount=stack-deployer"]),
        Some(Value::from("stack-deployer"))
    );

    // A wildcard in managedResources is refused, not rendered.
    let chart = chart_dir();
    let output = helm([
        "template".as_ref(),
        "strata".as_ref(),
        chart.as_os_str(),
        "--set".as_ref(),
        "stacks.managedResources[0].apiGroup=apps,stacks.managedResources[0].resources={*}"
            .as_ref(),
    ]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("wildcards are not allowed"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A default ServiceAccount that cannot be impersonated is refused too.
    let output = helm([
        "template".as_ref(),
        "strata".as_ref(),
        chart.as_os_str(),
        "--set".as_ref(),
        "stacks.impersonation=false,stacks.defaultServiceAccount=stack-deployer".as_ref(),
    ]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("stacks.defaultServiceAccount needs stacks.impersonation"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn service_monitor_scrapes_the_metrics_service() {
    // helm and kubectl come with the plane (`hack/plane env`).
    if !strata_testkit::plane_available() {
        return;
    }
    let objects = documents(&render(
        "strata",
        "ops",
        &[
            "serviceMonitor.enabled=true",
            "serviceMonitor.labels.release=prometheus",
        ],
    ));
    let monitor = find(&objects, "ServiceMonitor", "strata");
    let service = find(&objects, "Service", "strata-metrics");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("a label selector");
    for (key, value) in selector {
        assert_eq!(&service["metadata"]["labels"][key], value, "label {key}");
    }
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!(["ops"])
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    // The objects' namespace label stays `namespace` (the dashboard and the
    // alerts select by it), not `exported_namespace`.
    assert_eq!(monitor["spec"]["endpoints"][0]["honorLabels"], true);
    assert_eq!(service["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
}

/// The chart's copies of the dashboard and the alert rules are those of
/// deploy/monitoring/, which hack/render-deploy copies.
#[test]
fn chart_monitoring_files_are_those_of_deploy() {
    for file in ["strata.rules.yaml", "strata-dashboard.json"] {
        let source = std::fs::read(repo_root().join("deploy/monitoring").join(file)).expect(file);
        let copy = std::fs::read(chart_dir().join("files").join(file)).unwrap_or_default();
        assert!(
            copy == source,
            "charts/strata/files/{file} differs from deploy/monitoring/{file}: refresh it with \
             `{COPY_CRDS}`"
        );
    }
}

/// Off by default; switched on, the PrometheusRule holds exactly the rule
/// groups of deploy/monitoring/strata.rules.yaml, and the dashboard
/// ConfigMap carries the sidecar's label and the dashboard's JSON as is.
#[test]
fn alert_rules_and_dashboard_ship_when_asked() {
    // helm comes with the plane (`hack/plane env`).
    if !strata_testkit::plane_available() {
        return;
    }
    let defaults = documents(&render("strata", "ops", &[]));
    assert!(ids_of_kind(&defaults, "PrometheusRule").is_empty());
    assert!(ids_of_kind(&defaults, "ConfigMap").is_empty());
    let objects = documents(&render(
        "strata",
        "ops",
        &[
            "prometheusRule.enabled=true",
            "prometheusRule.labels.release=prometheus",
            "grafanaDashboard.enabled=true",
            "grafanaDashboard.namespace=monitoring",
            "grafanaDashboard.annotations.grafana_folder=Strata",
        ],
    ));
    let rule = find(&objects, "PrometheusRule", "strata");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["namespace"], "ops");
    assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");
    let rules_file =
        std::fs::read_to_string(repo_root().join("deploy/monitoring/strata.rules.yaml"))
            .expect("the rules file");
    let rules: Value = serde_yaml::from_str(&rules_file).expect("the rules file is YAML");
    assert_eq!(
        rule["spec"], rules,
        "the PrometheusRule's spec is the rules file"
    );

    let dashboard = find(&objects, "ConfigMap", "strata-dashboard");
    assert_eq!(dashboard["metadata"]["namespace"], "monitoring");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        dashboard["metadata"]["annotations"]["grafana_folder"],
        "Strata"
    );
    let json = std::fs::read_to_string(repo_root().join("deploy/monitoring/strata-dashboard.json"))
        .expect("the dashboard");
    assert_eq!(dashboard["data"]["strata.json"], json.as_str());
}

/// What the chart renders, with the CRDs, under several sets of values, is
/// accepted by the API server (schemas, defaulting, admission).
#[tokio::test]
async fn the_api_server_accepts_what_the_chart_renders() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "packaging-chart-dry-run").await;
    let n = ns.name();
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let watched = format!("operator.namespaces={{{n}}}");
    let value_sets: [&[&str]; 5] = [
        &[],
        &[
            "replicaCount=3",
            &watched,
            &format!("image.digest={digest}"),
            "extraEnv[0].name=RUST_BACKTRACE,extraEnv[0].value=1",
            "extraEnv[1].name=NODE,extraEnv[1].valueFrom.fieldRef.fieldPath=spec.nodeName",
            "imagePullSecrets[0].name=registry",
        ],
        &[
            "leaderElection.enabled=true",
            "stacks.impersonation=false",
            "operator.allowCrossNamespace=true",
            "grafanaDashboard.enabled=true",
        ],
        &[
            "rbac.create=false",
            "serviceAccount.create=false",
            "serviceAccount.name=default",
        ],
        &["sharding.shards=3", "replicaCount=2"],
    ];
    for values in value_sets {
        let mut args = vec!["template", "dry-run", "--include-crds", "--namespace", n];
        let chart = chart_dir();
        args.push(chart.to_str().expect("a UTF-8 path"));
        for value in values {
            args.extend(["--set", value]);
        }
        let yaml = helm(&args).expect_success("helm template --include-crds");
        let objects = documents(&yaml);
        assert!(
            objects
                .iter()
                .any(|o| o["kind"] == "CustomResourceDefinition")
        );
        let out = server_dry_run(&to_yaml(&objects), &format!("the chart with {values:?}"));
        let deployment = if values.contains(&"sharding.shards=3") {
            "deployment.apps/dry-run-strata-2"
        } else {
            "deployment.apps/dry-run-strata"
        };
        assert!(
            out.contains(&format!("{deployment} created (server dry run)"))
                || out.contains(&format!("{deployment} configured (server dry run)")),
            "{out}"
        );
    }
    ns.cleanup().await;
}

/// Parses the chart's values.yaml (the tests compare against its defaults).
pub fn default_values() -> Value {
    let text = std::fs::read_to_string(chart_dir().join("values.yaml")).expect("values.yaml");
    serde_yaml::from_str(&text).expect("values.yaml is YAML")
}

/// Every STRATA_* variable the chart sets is a setting of `strata run` (an
/// unknown one would be ignored silently), and with every option on, the
/// chart sets every setting there is.
#[test]
fn the_chart_sets_only_and_all_settings_of_strata_run() {
    // helm and kubectl come with the plane (`hack/plane env`).
    if !strata_testkit::plane_available() {
        return;
    }
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["run", "--help"])
        .output()
        .expect("strata run --help")
        .expect_success("strata run --help");
    let settings: std::collections::BTreeSet<String> = help
        .split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .map(str::to_string)
        .collect();
    assert!(settings.contains("STRATA_METRICS_ADDR"), "{help}");
    let objects = documents(&render(
        "strata",
        "ops",
        &[
            "replicaCount=2",
            "sharding.shards=2",
            "operator.namespaces={a}",
            "stacks.defaultServiceAccount=stack-deployer",
        ],
    ));
    let set: std::collections::BTreeSet<String> = env_of(find(&objects, "Deployment", "strata-0"))
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| name.starts_with("STRATA_"))
        .collect();
    assert_eq!(
        set, settings,
        "the chart's STRATA_* variables (left) differ from the settings of `strata run` \
         (right): expose each setting as a documented value in charts/strata/values.yaml and \
         templates/deployment.yaml, then run hack/render-deploy"
    );
}
