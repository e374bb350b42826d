//! The chart's RBAC is enough: the real operator binary runs with the
//! chart's ServiceAccount (a token for it, nothing else) and the environment
//! of the chart's Deployment, and reconciles every kind to Ready: Stacks with
//! and without a ServiceAccount to impersonate (applying, pruning, deleting),
//! NetworkFunctions (children, DeploymentRecords), a ServiceChain
//! (NetworkPolicies), Events and the leader-election Lease. Any missing grant
//! shows up as a Stalled/Forbidden condition or a 403 in the operator's log.
//! With the same identity, a kubeconfig Secret a promotion gate names is
//! read, and no Secret is listed or read outside the watched namespaces.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams};
use serde_json::{Value, json};
use strata::api::{DeploymentRecord, LABEL_NETWORK_FUNCTION, NetworkFunction, ServiceChain, Stack};
use strata::render::chain::LABEL_SERVICE_CHAIN;
use strata::runtime::kubeconfig::client_from_secret;
use strata_testkit::{
    OutputExt, TestNamespace, apply_object, client, client_for, install_crds, kubectl,
    kubectl_with_stdin, wait_for, wait_for_condition,
};

use crate::{documents, find, render, to_yaml};

const DEADLINE: Duration = Duration::from_secs(120);

/// Removes the release's cluster-scoped RBAC when dropped (also on panic).
struct ClusterRbac(String);

impl Drop for ClusterRbac {
    fn drop(&mut self) {
        let selector = format!("app.kubernetes.io/instance={}", self.0);
        let out = kubectl([
            "delete",
            "clusterrole,clusterrolebinding",
            "-l",
            &selector,
            "--ignore-not-found",
        ]);
        if !out.status.success() {
            eprintln!(
                "warning: cannot delete the RBAC of {}: {}",
                self.0,
                out.stderr_text()
            );
        }
    }
}

/// `strata run` as a subprocess with a given environment; killed on drop,
/// showing the end of its log when the test panics.
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    fn start(env: &[(String, String)], log: PathBuf) -> Self {
        let out = File::create(&log).expect("the operator's log file");
        let err = out.try_clone().expect("a second handle to the log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
        command.arg("run");
        // Only the chart's environment: nothing of the test's own.
        for (name, _) in std::env::vars() {
            if name.starts_with("STRATA_") || name == "KUBECONFIG" {
                command.env_remove(name);
            }
        }
        let child = command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("the operator binary starts");
        Self { child, log }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the operator exited ({status}); its log:\n{}", self.logs());
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let logs = self.logs();
            let tail: Vec<&str> = logs.lines().rev().take(60).collect();
            eprintln!(
                "--- last lines of the operator log ({}) ---\n{}",
                self.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A kubeconfig that authenticates with `token` only, against the plane's
/// API server.
fn token_kubeconfig(token: &str, path: &Path) {
    let admin: Value = serde_json::from_str(
        &kubectl(["config", "view", "--raw", "--minify", "-o", "json"])
            .expect_success("kubectl config view"),
    )
    .expect("kubeconfig JSON");
    let cluster = &admin["clusters"][0]["cluster"];
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "plane", "cluster": {
            "server": cluster["server"],
            "certificate-authority-data": cluster["certificate-authority-data"],
        }}],
        "users": [{"name": "strata", "user": {"token": token}}],
        "contexts": [{"name": "strata", "context": {"cluster": "plane", "user": "strata"}}],
        "current-context": "strata",
    });
    std::fs::write(path, serde_yaml::to_string(&config).unwrap()).expect("the kubeconfig");
}

/// The container environment of the chart's Deployment, as the kubelet would
/// resolve it for pod `pod` in `namespace`.
fn deployment_env(deployment: &Value, namespace: &str, pod: &str) -> Vec<(String, String)> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.namespace") => namespace.to_string(),
                Some("metadata.name") => pod.to_string(),
                Some(other) => panic!("{name}: unexpected fieldRef {other}"),
                None => e["value"].as_str().expect("a string value").to_string(),
            };
            (name, value)
        })
        .collect()
}

fn stack(name: &str, version: &str, service_account: Option<&str>, resources: Value) -> Value {
    let mut spec = json!({"version": version, "resources": resources});
    if let Some(sa) = service_account {
        spec["serviceAccountName"] = json!(sa);
    }
    json!({"apiVersion": "strata.dev/v1alpha1", "kind": "Stack", "metadata": {"name": name}, "spec": spec})
}

fn function(name: &str, port: i32) -> Value {
    json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "NetworkFunction", "metadata": {"name": name},
        "spec": {
            "version": "1.0.0",
            "image": format!("registry.example/{name}@sha256:{}", "0123456789abcdef".repeat(4)),
            "stackRef": {"name": "plain"},
            "replicas": 1,
            "ports": [{"name": "traffic", "port": port, "protocol": "TCP"}],
            "config": {"settings.yaml": format!("name: {name}\n")},
        },
    })
}

async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_for(DEADLINE, &format!("{name} to be deleted"), || async {
        match api.get_opt(name).await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("still there".to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
}

/// The chart installed (all but its Deployment) for a namespace of its own,
/// and the operator running as the chart's ServiceAccount with the chart's
/// environment.
struct Installed {
    // Dropped in this order when a test panics: the operator stops before
    // the namespace goes (or it would put back the Stacks' finalizers that
    // the namespace's cleanup removes, and the namespace would never go).
    operator: Operator,
    ns: TestNamespace,
    identity: String,
    /// The operator's user name (its ServiceAccount's).
    user: String,
    /// Holds a token for the operator's ServiceAccount (void once the
    /// namespace is gone); removed by cleanup.
    kubeconfig: PathBuf,
    _rbac: ClusterRbac,
}

impl Installed {
    async fn new(test: &str) -> Self {
        let client = client().await;
        install_crds(&client).await;
        let ns = TestNamespace::create(&client, test).await;
        let n = ns.name().to_string();
        let release = format!("strata-{}", &n[n.len() - 8..]);

        // Watching this namespace, with leader election.
        let watched = format!("operator.namespaces={{{n}}}");
        let objects = documents(&render(
            &release,
            &n,
            &[
                &watched,
                "leaderElection.enabled=true",
                "operator.resyncInterval=10s",
                "operator.logFormat=text",
            ],
        ));
        let rbac = ClusterRbac(release.clone());
        let installed: Vec<Value> = objects
            .iter()
            .filter(|o| o["kind"] != "Deployment")
            .cloned()
            .collect();
        kubectl_with_stdin(["apply", "--server-side", "-f", "-"], &to_yaml(&installed))
            .expect_success("installing the chart's ServiceAccount and RBAC");
        let deployment = find(&objects, "Deployment", &release);
        let service_account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
            .as_str()
            .expect("the Deployment's ServiceAccount");

        // RBAC takes effect once the API server's authorizer has seen the new
        // bindings; until then the operator's first requests could be refused.
        let user = format!("system:serviceaccount:{n}:{service_account}");
        for (verb, resource) in [
            ("list", "stacks.strata.dev"),
            ("update", "leases.coordination.k8s.io"),
            ("delete", "configmaps"),
            ("impersonate", "serviceaccounts"),
            ("get", "secrets"),
        ] {
            let description = format!("{user} to be allowed to {verb} {resource}");
            wait_for(DEADLINE, &description, || async {
                let out = kubectl(["auth", "can-i", verb, resource, "--as", &user, "-n", &n]);
                match out.stdout_text().trim() {
                    "yes" => Ok(()),
                    other => Err(format!("can-i: {other} {}", out.stderr_text())),
                }
            })
            .await;
        }

        let token = kubectl([
            "create",
            "token",
            service_account,
            "-n",
            &n,
            "--duration=1h",
        ])
        .expect_success("a token for the operator's ServiceAccount");
        let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let kubeconfig = tmp.join(format!("{n}.kubeconfig"));
        token_kubeconfig(token.trim(), &kubeconfig);
        let identity = format!("{release}-pod-0");
        let mut env = deployment_env(deployment, &n, &identity);
        for (name, value) in &mut env {
            // Any free port: tests run side by side.
            if name == "STRATA_METRICS_ADDR" {
                *value = "127.0.0.1:0".into();
            }
        }
        env.push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
        let operator = Operator::start(&env, tmp.join(format!("strata-{n}.log")));
        Self {
            operator,
            ns,
            identity,
            user,
            kubeconfig,
            _rbac: rbac,
        }
    }

    /// Panics if the operator was denied anything: a refusal is logged with
    /// the API server's message, "... is forbidden: User ... cannot ...".
    fn assert_never_denied(&mut self) {
        self.operator.assert_running();
        let logs = self.operator.logs();
        let denied: Vec<&str> = logs
            .lines()
            .filter(|l| l.to_lowercase().contains("forbidden"))
            .collect();
        assert!(
            denied.is_empty(),
            "the operator was denied something:\n{}",
            denied.join("\n")
        );
    }

    async fn cleanup(self) {
        drop(self.operator);
        std::fs::remove_file(&self.kubeconfig).ok();
        self.ns.cleanup().await;
    }
}

/// A Stack without serviceAccountName (applied by the operator itself, within
/// stacks.managedResources), NetworkFunctions on it and a chain of them.
#[tokio::test]
async fn operator_reconciles_everything_with_only_the_charts_rbac() {
    if !strata_testkit::plane_available() {
        return;
    }
    let mut installed = Installed::new("packaging-operator-rbac").await;
    let ns = &installed.ns;

    let stacks: Api<Stack> = ns.api();
    let plain_resources = json!([
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "plain-settings"}, "data": {"mtu": "1500"}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "plain-sa"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "plain-dns"},
         "spec": {"selector": {"app": "dns"}, "ports": [{"port": 53, "protocol": "UDP"}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "plain-deny"},
         "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}},
    ]);
    apply_object(
        &stacks,
        stack("plain", "1.0.0", None, plain_resources.clone()),
    )
    .await;
    let functions: Api<NetworkFunction> = ns.api();
    apply_object(&functions, function("front", 8080)).await;
    apply_object(&functions, function("back", 9090)).await;
    let chains: Api<ServiceChain> = ns.api();
    apply_object(&chains, json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "ServiceChain", "metadata": {"name": "path"},
        "spec": {"hops": [{"name": "in", "networkFunction": "front"}, {"name": "out", "networkFunction": "back"}],
                 "isolation": true},
    }))
    .await;

    wait_for_condition(&stacks, "plain", "Ready", "True", DEADLINE).await;
    for name in ["front", "back"] {
        wait_for_condition(&functions, name, "Ready", "True", DEADLINE).await;
    }
    wait_for_condition(&chains, "path", "Ready", "True", DEADLINE).await;
    installed.operator.assert_running();

    // Records, chain policies, Events and the Lease, all written under the chart's RBAC.
    let records = ns
        .api::<DeploymentRecord>()
        .list(&ListParams::default().labels(&format!("{LABEL_NETWORK_FUNCTION}=front")))
        .await
        .expect("DeploymentRecords");
    assert_eq!(records.items.len(), 1, "one rollout of front");
    let chain_policies = ns
        .api::<NetworkPolicy>()
        .list(&ListParams::default().labels(LABEL_SERVICE_CHAIN))
        .await
        .expect("NetworkPolicies");
    assert_eq!(chain_policies.items.len(), 2, "one NetworkPolicy per hop");
    let events = ns.api::<Event>();
    wait_for(DEADLINE, "an Event from strata", || async {
        let list = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        let reasons: Vec<String> = list
            .items
            .iter()
            .filter(|e| e.reporting_controller.as_deref() == Some("strata"))
            .filter_map(|e| e.reason.clone())
            .collect();
        if reasons.iter().any(|r| r == "VersionApplied") {
            Ok(())
        } else {
            Err(format!("reasons {reasons:?}"))
        }
    })
    .await;
    let lease = ns
        .api::<Lease>()
        .get("strata-leader")
        .await
        .expect("the leader Lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(installed.identity.as_str())
    );

    // Pruning (delete) as the operator: drop the Service and the NetworkPolicy.
    let kept = json!([plain_resources[0], plain_resources[1]]);
    apply_object(&stacks, stack("plain", "1.1.0", None, kept)).await;
    wait_gone(&ns.api::<Service>(), "plain-dns").await;
    wait_gone(&ns.api::<NetworkPolicy>(), "plain-deny").await;
    ns.api::<ConfigMap>()
        .get("plain-settings")
        .await
        .expect("kept ConfigMap");

    installed.assert_never_denied();
    installed.cleanup().await;
}

/// A Stack with serviceAccountName is applied, and deleted, as that
/// ServiceAccount: it creates a Secret, which the operator itself may not.
#[tokio::test]
async fn stacks_impersonate_their_service_account_with_only_the_charts_rbac() {
    if !strata_testkit::plane_available() {
        return;
    }
    let mut installed = Installed::new("packaging-impersonation").await;
    let ns = &installed.ns;
    let n = ns.name().to_string();
    kubectl_with_stdin(
        ["apply", "-n", &n, "-f", "-"],
        &to_yaml(&[
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "deployer"}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "deployer"},
                   "rules": [{"apiGroups": [""], "resources": ["secrets", "configmaps"],
                              "verbs": ["get", "create", "patch", "delete"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "deployer"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"},
                   "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": n}]}),
        ]),
    )
    .expect_success("the Stack's ServiceAccount");

    let stacks: Api<Stack> = ns.api();
    apply_object(
        &stacks,
        stack(
            "scoped",
            "1.0.0",
            Some("deployer"),
            json!([
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "scoped-secret"}, "stringData": {"key": "value"}},
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "scoped-settings"}, "data": {"a": "b"}},
            ]),
        ),
    )
    .await;
    wait_for(DEADLINE, "Stack scoped to be Ready", || async {
        let stack = stacks.get("scoped").await.map_err(|e| e.to_string())?;
        let conditions = stack
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        if let Some(stalled) = conditions
            .iter()
            .find(|c| c.type_ == "Stalled" && c.status == "True")
        {
            // Stalled waits for a spec change: no point in waiting on.
            panic!(
                "Stack scoped is Stalled ({}: {}). If the operator was refused \
                 `impersonate` on `groups`: it impersonates the ServiceAccount's groups \
                 explicitly (Context::impersonating, src/controllers/mod.rs), which only \
                 a grant to impersonate any group (system:masters included) allows; the \
                 API server adds exactly those groups itself for a ServiceAccount user, \
                 so the code should set none",
                stalled.reason, stalled.message
            );
        }
        if conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
        {
            Ok(())
        } else {
            Err(format!("conditions {conditions:?}"))
        }
    })
    .await;
    ns.api::<Secret>()
        .get("scoped-secret")
        .await
        .expect("the Secret only the impersonated ServiceAccount may create");

    // Deletion as the impersonated ServiceAccount: its objects go, then the
    // finalizer does.
    stacks
        .delete("scoped", &DeleteParams::default())
        .await
        .expect("deleting the Stack");
    wait_gone(&stacks, "scoped").await;
    wait_gone(&ns.api::<Secret>(), "scoped-secret").await;

    installed.assert_never_denied();
    installed.cleanup().await;
}

/// A promotion gate reads a kubeconfig Secret by name in a watched namespace
/// (spec.promotion.requireVerifiedIn[].kubeConfig.secretRef), and that is
/// all the chart grants on Secrets: not list or watch, and not in a
/// namespace the operator does not watch.
#[tokio::test]
async fn the_operator_gets_kubeconfig_secrets_by_name_in_watched_namespaces_only() {
    if !strata_testkit::plane_available() {
        return;
    }
    let mut installed = Installed::new("packaging-kubeconfig-secrets").await;
    let admin = client().await;
    let watched = installed.ns.name().to_string();
    let unwatched = TestNamespace::create(&admin, "packaging-unwatched").await;
    // The operator's own kubeconfig (a token, inline) as the upstream's.
    let kubeconfig = std::fs::read_to_string(&installed.kubeconfig).expect("the kubeconfig");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "staging-kubeconfig"},
        "stringData": {"value": kubeconfig},
    }))
    .unwrap();
    for ns in [watched.as_str(), unwatched.name()] {
        Api::<Secret>::namespaced(admin.clone(), ns)
            .create(&Default::default(), &secret)
            .await
            .expect("the kubeconfig Secret");
    }

    let operator = client_for(&installed.kubeconfig).await;
    let remote = client_from_secret(&operator, &watched, "staging-kubeconfig", "value")
        .await
        .unwrap_or_else(|e| panic!("the chart's RBAC does not let the operator read it: {e}"));
    Api::<Stack>::namespaced(remote.client, &watched)
        .list(&ListParams::default())
        .await
        .expect("a request through the remote client");

    let error = client_from_secret(&operator, unwatched.name(), "staging-kubeconfig", "value")
        .await
        .expect_err("a Secret in a namespace the operator does not watch");
    assert!(
        error.to_string().starts_with(
            "secret staging-kubeconfig key value: cannot read the Secret: \
             the API server answered 403 Forbidden: "
        ),
        "{error}"
    );
    match Api::<Secret>::namespaced(operator, &watched)
        .list(&ListParams::default())
        .await
    {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("the operator may list Secrets: {other:?}"),
    }
    for verb in ["list", "watch", "create", "patch", "delete"] {
        let out = kubectl([
            "auth",
            "can-i",
            verb,
            "secrets",
            "--as",
            &installed.user,
            "-n",
            &watched,
        ]);
        assert_eq!(out.stdout_text().trim(), "no", "{verb} secrets");
    }

    installed.assert_never_denied();
    unwatched.cleanup().await;
    installed.cleanup().await;
}
