//! `trace`, `tree` and `runs-on` on a site with a dependency at the wrong
//! version: `upf` needs `smf >=2.0` while smf runs 1.9.0.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use strata::api::{NetworkFunction, ServiceChain, Stack};
use strata_testkit::{
    Operator, OutputExt, TestNamespace, apply, client, install_crds, kubectl, operator_binary,
    wait_for, wait_for_condition,
};

use super::{json, shown, strata, strata_with};

const DEADLINE: Duration = Duration::from_secs(60);

fn function(name: &str, version: &str, depends_on: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "NetworkFunction", "metadata": {"name": name},
        "spec": {
            "version": version,
            "image": format!("registry.example/{name}@sha256:{}", "0123456789abcdef".repeat(4)),
            "stackRef": {"name": "edge-net", "version": ">=1.4, <2"},
            "dependsOn": depends_on,
        },
    })
}

#[tokio::test]
async fn trace_names_the_blocker_and_follows_it_away() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "cli-trace").await;
    let _operator = Operator::start(ns.name());
    let n = ns.name().to_string();
    apply(&ns.api::<Stack>(), "edge-net", json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "Stack", "metadata": {"name": "edge-net"},
        "spec": {"version": "1.4.0", "resources": [
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "edge-dns"}, "data": {"upstream": "10.0.0.53"}},
        ]},
    }))
    .await;
    let functions = ns.api::<NetworkFunction>();
    apply(&functions, "smf", function("smf", "1.9.0", json!([]))).await;
    apply(
        &functions,
        "upf",
        function("upf", "2.3.1", json!([{"name": "smf", "version": ">=2.0"}])),
    )
    .await;
    apply(&ns.api::<ServiceChain>(), "n6", json!({
        "apiVersion": "strata.dev/v1alpha1", "kind": "ServiceChain", "metadata": {"name": "n6"},
        "spec": {"hops": [{"name": "control", "networkFunction": "smf"}, {"name": "user", "networkFunction": "upf"}]},
    }))
    .await;
    wait_for_condition(&functions, "smf", "Ready", "True", DEADLINE).await;
    wait_for_condition(&functions, "upf", "DependenciesReady", "False", DEADLINE).await;

    // Blocked: exit 1, the blocker in plain words, in every output form.
    let table = strata(["trace", "nf", "upf", "-n", &n]);
    assert_eq!(table.status.code(), Some(1), "{}", shown(&table));
    let text = table.stdout_text();
    assert!(
        text.starts_with(&format!("NetworkFunction {n}/upf: Blocked\n")),
        "{text}"
    );
    assert!(
        text.contains("Blocked by NetworkFunction smf 1.9.0: dependency smf is at 1.9.0, which does not satisfy >=2.0"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no colour in a pipe:\n{text}");
    let doc = json(&strata(["trace", "nf", "upf", "-n", &n, "-o", "json"]));
    assert_eq!(doc["state"], "Blocked");
    assert_eq!(doc["ready"], false);
    assert_eq!(
        doc["blocker"],
        json!({"kind": "NetworkFunction", "name": "smf", "version": "1.9.0", "condition": "DependenciesReady",
               "reason": "DependencyNotReady", "message": "dependency smf is at 1.9.0, which does not satisfy >=2.0"})
    );
    assert_eq!(doc["function"]["dependencies"][0]["satisfied"], false);
    assert_eq!(
        doc["function"]["chains"],
        json!([{"name": "n6", "hop": "user", "ready": false}])
    );
    let yaml = strata(["trace", "nf", "upf", "-n", &n, "-o", "yaml"]);
    let yaml: serde_json::Value = serde_yaml::from_slice(&yaml.stdout).expect("YAML");
    assert_eq!(yaml, doc, "-o yaml and -o json print the same document");
    let chain = strata(["trace", "chain", "n6", "-n", &n]);
    assert_eq!(chain.status.code(), Some(1), "{}", shown(&chain));
    assert!(
        chain
            .stdout_text()
            .contains("Blocked by NetworkFunction upf 2.3.1: hop user: upf 2.3.1 is not Ready"),
        "{}",
        shown(&chain)
    );

    colours_follow_the_terminal_and_no_color(&n);
    missing_objects_exit_3(&n);

    // --watch redraws when the dependency moves, until upf is Ready.
    let watch = Watch::start(&["trace", "nf", "upf", "-n", &n, "--watch"]);
    wait_for(DEADLINE, "the first drawing", || async {
        watch.seen().contains("Blocked by").then_some(())
    })
    .await;
    apply(&functions, "smf", function("smf", "2.0.0", json!([]))).await;
    let ready = format!("NetworkFunction {n}/upf: Ready");
    wait_for(DEADLINE, "--watch to redraw upf Ready", || async {
        let seen = watch.seen();
        if seen.contains(&ready) {
            Ok(())
        } else {
            Err(seen)
        }
    })
    .await;
    drop(watch);

    let ok = strata(["trace", "nf", "upf", "-n", &n]);
    assert_eq!(ok.status.code(), Some(0), "{}", shown(&ok));
    let stack = strata(["trace", "stack", "edge-net", "-n", &n]);
    assert_eq!(stack.status.code(), Some(0), "{}", shown(&stack));
    tree_and_runs_on(&n);
    kubeconfig_flags_and_the_plugin(&n);
    ns.cleanup().await;
}

fn colours_follow_the_terminal_and_no_color(n: &str) {
    let args = ["trace", "nf", "upf", "-n", n];
    let forced = strata_with(args, &[("CLICOLOR_FORCE", "1")]);
    assert!(
        forced.stdout_text().contains('\x1b'),
        "CLICOLOR_FORCE colours a pipe: {}",
        shown(&forced)
    );
    let none = strata_with(args, &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]);
    assert!(
        !none.stdout_text().contains('\x1b'),
        "NO_COLOR wins: {}",
        shown(&none)
    );
    let forced_json = strata_with(
        ["trace", "nf", "upf", "-n", n, "-o", "json"],
        &[("CLICOLOR_FORCE", "1")],
    );
    assert!(
        !forced_json.stdout_text().contains('\x1b'),
        "{}",
        shown(&forced_json)
    );
}

fn missing_objects_exit_3(n: &str) {
    for kind in ["nf", "stack", "chain"] {
        let missing = strata(["trace", kind, "nope", "-n", n]);
        assert_eq!(missing.status.code(), Some(3), "{}", shown(&missing));
        assert!(
            missing
                .stderr_text()
                .contains("nope not found in namespace"),
            "{}",
            shown(&missing)
        );
    }
    let doc = json(&strata(["trace", "nf", "nope", "-n", n, "-o", "json"]));
    assert_eq!(
        (doc["found"].clone(), doc["state"].clone()),
        (json!(false), json!("Missing"))
    );
    let everywhere = strata(["trace", "nf", "nope-anywhere", "-A"]);
    assert_eq!(everywhere.status.code(), Some(3), "{}", shown(&everywhere));
    assert!(
        everywhere
            .stderr_text()
            .contains("not found in any namespace"),
        "{}",
        shown(&everywhere)
    );
    let tree = strata(["tree", "stack", "nope", "-n", n]);
    assert_eq!(tree.status.code(), Some(3), "{}", shown(&tree));
}

fn tree_and_runs_on(n: &str) {
    let tree = strata(["tree", "stack", "edge-net", "-n", n]);
    let text = tree.expect_success("strata tree");
    assert!(text.contains("├─ ConfigMap/edge-dns"), "{text}");
    assert!(text.contains("└─ NetworkFunction/upf 2.3.1"), "{text}");
    let doc = json(&strata([
        "tree", "stack", "edge-net", "-n", n, "-o", "json",
    ]));
    assert_eq!(doc["objects"][0]["state"], "Present", "{doc}");
    assert_eq!(doc["objects"][0]["stackVersion"], "1.4.0", "{doc}");
    assert_eq!(doc["consumers"].as_array().map(Vec::len), Some(2), "{doc}");

    let doc = json(&strata([
        "runs-on",
        "edge-net",
        "--version",
        "1.4.0",
        "-n",
        n,
        "-o",
        "json",
    ]));
    let now: Vec<(&str, &str)> = doc["now"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["version"].as_str().unwrap()))
        .collect();
    assert_eq!(now, [("smf", "2.0.0"), ("upf", "2.3.1")], "{doc}");
    assert_eq!(doc["before"][0]["networkFunction"], "smf", "{doc}");
    assert_eq!(doc["before"][0]["version"], "1.9.0", "{doc}");
    let text = strata(["runs-on", "edge-net", "-n", n]).expect_success("strata runs-on");
    assert!(
        text.contains("Running on edge-net now") && text.contains("Ran on it before"),
        "{text}"
    );
    let other = json(&strata([
        "runs-on",
        "edge-net",
        "--version",
        "9.9.9",
        "-n",
        n,
        "-o",
        "json",
    ]));
    assert_eq!(
        (other["now"].clone(), other["before"].clone()),
        (json!([]), json!([]))
    );
}

fn kubeconfig_flags_and_the_plugin(n: &str) {
    let kubeconfig = std::env::var("KUBECONFIG").expect("the plane's KUBECONFIG");
    let dir = std::env::temp_dir().join(format!("strata-cli-{n}"));
    std::fs::create_dir_all(&dir).unwrap();
    // A kubeconfig whose context names the namespace: no -n needed.
    let own = dir.join("kubeconfig");
    std::fs::copy(&kubeconfig, &own).unwrap();
    let own = own.to_str().unwrap();
    kubectl([
        "config",
        "set-context",
        "--current",
        "--namespace",
        n,
        "--kubeconfig",
        own,
    ])
    .expect_success("kubectl config set-context");
    let by_flag = Command::new(operator_binary())
        .args(["trace", "nf", "upf", "--kubeconfig", own])
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert_eq!(by_flag.status.code(), Some(0), "{}", shown(&by_flag));
    let by_env = strata_with(["trace", "nf", "upf", "-o", "json"], &[("KUBECONFIG", own)]);
    assert_eq!(json(&by_env)["namespace"], n);
    let no_context = strata([
        "trace",
        "nf",
        "upf",
        "-n",
        n,
        "--context",
        "no-such-context",
    ]);
    assert_eq!(no_context.status.code(), Some(4), "{}", shown(&no_context));
    assert!(
        no_context.stderr_text().contains("no-such-context"),
        "{}",
        shown(&no_context)
    );

    // `kubectl strata`: the same binary, found on PATH as kubectl-strata.
    let plugin = dir.join("kubectl-strata");
    let _ = std::fs::remove_file(&plugin);
    std::os::unix::fs::symlink(operator_binary(), &plugin).unwrap();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let kubectl_strata = Command::new("kubectl")
        .args(["strata", "trace", "nf", "upf", "-n", n])
        .env("PATH", &path)
        .output()
        .expect("kubectl runs");
    assert_eq!(
        kubectl_strata.status.code(),
        Some(0),
        "{}",
        shown(&kubectl_strata)
    );
    assert!(
        kubectl_strata
            .stdout_text()
            .contains(&format!("NetworkFunction {n}/upf: Ready"))
    );
    let help = Command::new("kubectl")
        .args(["strata", "--help"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        help.stdout_text().contains("Usage: kubectl strata"),
        "{}",
        shown(&help)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `strata ... --watch` in the background, its output collected.
struct Watch {
    child: std::process::Child,
    seen: Arc<Mutex<String>>,
}

impl Watch {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(operator_binary())
            .args(args)
            .env_remove("NO_COLOR")
            .env_remove("CLICOLOR_FORCE")
            .stdout(Stdio::piped())
            .spawn()
            .expect("strata --watch starts");
        let mut stdout = child.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(String::new()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            let mut buffer = [0; 4096];
            while let Ok(read @ 1..) = stdout.read(&mut buffer) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..read]));
            }
        });
        Self { child, seen }
    }

    fn seen(&self) -> String {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
