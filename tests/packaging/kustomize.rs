//! The kustomize base (`deploy/`): the same objects as the chart with its
//! default values, and accepted by the API server.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use crate::{documents, id, render};
use strata_testkit::{OutputExt, TestNamespace, client, install_crds, kubectl, repo_root};

/// Labels only Helm sets.
const HELM_LABELS: [&str; 2] = ["helm.sh/chart", "app.kubernetes.io/managed-by"];

fn without_helm_labels(mut object: Value) -> Value {
    for pointer in ["/metadata/labels", "/spec/template/metadata/labels"] {
        if let Some(labels) = object.pointer_mut(pointer).and_then(Value::as_object_mut) {
            for label in HELM_LABELS {
                labels.remove(label);
            }
        }
    }
    object
}

fn kustomize(dir: &Path) -> Vec<Value> {
    let out = kubectl(["kustomize".as_ref(), dir.as_os_str()])
        .expect_success(&format!("kubectl kustomize {}", dir.display()));
    documents(&out)
}

#[test]
fn kustomize_base_is_the_chart_with_its_defaults() {
    // helm and kubectl come with the plane (`hack/plane env`).
    if !strata_testkit::plane_available() {
        return;
    }
    let base = kustomize(&repo_root().join("deploy"));
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for object in &base {
        *kinds
            .entry(object["kind"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(kinds.get("CustomResourceDefinition"), Some(&4), "{kinds:?}");
    let namespace = base
        .iter()
        .find(|o| o["kind"] == "Namespace")
        .expect("deploy/ creates the operator's namespace");
    assert_eq!(namespace["metadata"]["name"], "strata-system");
    assert_eq!(
        namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );

    // Everything else is what the chart renders by default (the CRDs are
    // compared byte for byte in chart.rs).
    let ours: BTreeMap<String, Value> = base
        .into_iter()
        .filter(|o| o["kind"] != "Namespace" && o["kind"] != "CustomResourceDefinition")
        .map(|o| (id(&o), o))
        .collect();
    let chart: BTreeMap<String, Value> = documents(&render("strata", "strata-system", &[]))
        .into_iter()
        .map(|o| (id(&o), without_helm_labels(o)))
        .collect();
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        chart.keys().collect::<Vec<_>>(),
        "deploy/ and the chart's defaults hold different objects (regenerate deploy/ with \
         `hack/render-deploy`)"
    );
    for (name, object) in &ours {
        assert!(
            object == &chart[name],
            "{name} differs between deploy/ and the chart's defaults (regenerate deploy/ with \
             `hack/render-deploy`):\ndeploy/:\n{}\nchart:\n{}",
            serde_yaml::to_string(object).unwrap(),
            serde_yaml::to_string(&chart[name]).unwrap()
        );
    }
}

/// `to` relative to `from` (kustomize takes no absolute paths to bases).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path = PathBuf::new();
    for _ in common..from.len() {
        path.push("..");
    }
    for component in &to[common..] {
        path.push(component);
    }
    path
}

/// `kubectl apply -k deploy/ --dry-run=server`, through an overlay that moves
/// it into a test namespace, as a user's overlay would.
#[tokio::test]
async fn kustomize_base_passes_a_server_side_dry_run() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "packaging-kustomize").await;
    let overlay = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("overlay-{}", ns.name()));
    std::fs::create_dir_all(&overlay).expect("the overlay directory");
    let overlay = overlay.canonicalize().expect("a canonical path");
    let base = relative(
        &overlay,
        &repo_root()
            .join("deploy")
            .canonicalize()
            .expect("a canonical path"),
    );
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             namespace: {}\nresources:\n  - {}\n",
            ns.name(),
            base.display()
        ),
    )
    .expect("the overlay");

    let out = kubectl([
        "apply".as_ref(),
        "-k".as_ref(),
        overlay.as_os_str(),
        "--dry-run=server".as_ref(),
    ])
    .expect_success("kubectl apply -k deploy/ --dry-run=server");
    for object in [
        "deployment.apps/strata",
        "service/strata-metrics",
        "serviceaccount/strata",
        "clusterrole.rbac.authorization.k8s.io/strata",
        "clusterrolebinding.rbac.authorization.k8s.io/strata-stack-impersonation",
        "customresourcedefinition.apiextensions.k8s.io/stacks.strata.dev",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("{object} ")) && l.ends_with("(server dry run)")),
            "{object} missing from:\n{out}"
        );
    }
    std::fs::remove_dir_all(&overlay).ok();
    ns.cleanup().await;
}
