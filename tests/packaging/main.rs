//! Packaging: the Helm chart (`charts/strata`), the kustomize base
//! (`deploy/`) and the image (`Dockerfile`), checked the way a cluster and
//! its users see them: rendered by the real helm, validated by the real API
//! server (server-side dry run), admitted under the restricted Pod Security
//! Standard, and the chart's RBAC both compared with what the code calls and
//! proven sufficient by running the operator under it.
//!
//! Needs the local control plane and helm: `eval "$(hack/plane env)"`
//! exports `KUBECONFIG` and `HELM` (the test command does it).

mod admission;
mod chart;
mod image;
mod krew;
mod kustomize;
mod operator_rbac;
mod rbac;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;
use strata_testkit::{OutputExt, kubectl_with_stdin, repo_root};

/// The chart's directory.
pub fn chart_dir() -> PathBuf {
    repo_root().join("charts/strata")
}

/// The helm to run: `$HELM`, or `helm` on `PATH`.
fn helm_path() -> OsString {
    std::env::var_os("HELM")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "helm".into())
}

/// Runs helm with `args`. Its configuration, cache and data directories are
/// private to the tests, so a developer's helm setup neither leaks in nor is
/// touched.
pub fn helm<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let home = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("helm");
    let program = helm_path();
    Command::new(&program)
        .args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {program:?} ({e}): build it with `hack/plane build` and \
                 `eval \"$(hack/plane env)\"` (which exports HELM), or set HELM"
            )
        })
}

/// `helm template RELEASE charts/strata --namespace NAMESPACE` with `--set`
/// for each of `values` ("key=value"); the rendered YAML.
pub fn render(release: &str, namespace: &str, values: &[&str]) -> String {
    let chart = chart_dir();
    let mut args: Vec<OsString> = vec![
        "template".into(),
        release.into(),
        chart.into_os_string(),
        "--namespace".into(),
        namespace.into(),
    ];
    for value in values {
        args.push("--set".into());
        args.push((*value).into());
    }
    helm(&args).expect_success(&format!("helm template with {values:?}"))
}

/// The documents of a multi-document YAML stream, as JSON; empty ones skipped.
pub fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|document| {
            let value: Value = serde::Deserialize::deserialize(document)
                .unwrap_or_else(|e| panic!("invalid YAML document: {e}\n{yaml}"));
            value
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// The kind and name of an object, as "Kind/name".
pub fn id(object: &Value) -> String {
    format!(
        "{}/{}",
        object["kind"].as_str().unwrap_or("?"),
        object["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// The one object of `kind` named `name`; panics naming what there is.
pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let wanted = format!("{kind}/{name}");
    objects.iter().find(|o| id(o) == wanted).unwrap_or_else(|| {
        let ids: Vec<String> = objects.iter().map(id).collect();
        panic!("no {wanted} among {ids:?}")
    })
}

/// The ids ("Kind/name") of `objects` of `kind`.
pub fn ids_of_kind(objects: &[Value], kind: &str) -> Vec<String> {
    objects
        .iter()
        .filter(|o| o["kind"] == kind)
        .map(id)
        .collect()
}

/// Objects as a YAML stream.
pub fn to_yaml(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| serde_yaml::to_string(o).expect("JSON values serialize as YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// `kubectl apply --dry-run=server -f -` of `yaml`: the API server validates
/// (schemas, admission) without persisting anything. Panics with kubectl's
/// output unless every object passes.
pub fn server_dry_run(yaml: &str, what: &str) -> String {
    kubectl_with_stdin(["apply", "--dry-run=server", "-f", "-"], yaml)
        .expect_success(&format!("kubectl apply --dry-run=server of {what}"))
}
