//! Shared support for the integration tests, which run against the real local
//! control plane (`hack/plane up`; the test command exports its `KUBECONFIG`
//! and puts its `bin/` on `PATH`).
//!
//! Every test works in its own [`TestNamespace`] and waits with a deadline
//! ([`wait_for`], [`wait_for_condition`]); nothing sleeps for a fixed time.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

pub mod operator;
pub mod plane;

use std::collections::hash_map::RandomState;
use std::ffi::OsString;
use std::fmt::{Debug, Display};
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How often [`wait_for`] polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The field manager of everything the tests apply.
pub const FIELD_MANAGER: &str = "strata.dev/tests";

/// Label on every test namespace, so leftovers of an interrupted run are easy
/// to find: `kubectl get ns -l strata.dev/test`.
pub const TEST_LABEL: &str = "strata.dev/test";

/// The path of the plane's admin kubeconfig, from `KUBECONFIG`.
pub fn kubeconfig_path() -> PathBuf {
    let Some(path) = std::env::var_os("KUBECONFIG").filter(|p| !p.is_empty()) else {
        panic!(
            "KUBECONFIG is not set. These tests need the local control plane: run \
             `hack/plane up`, then `eval \"$(hack/plane env)\"` (or run them through the \
             test command, which exports it)"
        );
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "KUBECONFIG={} does not exist: is the local control plane up? Run `hack/plane up` \
         (and `hack/plane status` to check it)",
        path.display()
    );
    path
}

/// The client configuration from the kubeconfig at [`kubeconfig_path`].
async fn plane_config() -> Config {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("cannot read kubeconfig {}: {e}", path.display()));
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("invalid kubeconfig {}: {e}", path.display()))
}

/// A client for the local control plane. Panics with what to do when the
/// plane is not configured or does not answer.
pub async fn client() -> Client {
    let client = Client::try_from(plane_config().await).expect("a client from a valid kubeconfig");
    if let Err(e) = client.apiserver_version().await {
        panic!(
            "the API server of {} does not answer ({e}): is the local control plane up? \
             Check with `hack/plane status`, start it with `hack/plane up`",
            kubeconfig_path().display()
        );
    }
    client
}

/// A namespace of one's own for a test, named after the test plus a random
/// suffix. Call [`TestNamespace::cleanup`] at the end of the test; if the test
/// panics first, `Drop` deletes the namespace (best effort) instead.
pub struct TestNamespace {
    name: String,
    client: Client,
    cleaned_up: bool,
}

impl TestNamespace {
    /// Creates a namespace `<test>-<random>` (a DNS-1123 label).
    pub async fn create(client: &Client, test: &str) -> Self {
        let name = format!("{}-{}", dns_label_prefix(test, 50), random_suffix());
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(TEST_LABEL.to_string(), dns_label_prefix(test, 63))].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("cannot create test namespace {name}: {e}"));
        Self {
            name,
            client: client.clone(),
            cleaned_up: false,
        }
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// An `Api` for namespaced objects of kind `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Deletes the namespace (and so everything in it). The namespace
    /// controller finishes the job in the background.
    pub async fn cleanup(mut self) {
        self.cleaned_up = true;
        delete_namespace(&self.client, &self.name).await;
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.cleaned_up {
            return;
        }
        // Dropped without cleanup: the test panicked, and we may be unwinding
        // inside the test's runtime, which cannot be blocked on. Delete from a
        // thread with its own runtime and its own client (a client's
        // connection tasks belong to the runtime that made it).
        let name = self.name.clone();
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for namespace cleanup");
            runtime.block_on(async {
                let client = Client::try_from(plane_config().await).expect("a client");
                delete_namespace(&client, &name).await;
            });
        })
        .join();
        if deleted.is_err() {
            eprintln!("warning: could not delete test namespace {}", self.name);
        }
    }
}

async fn delete_namespace(client: &Client, name: &str) {
    // The operator may be gone by now; without it, the Stacks' deletion
    // protection would hold the namespace in Terminating forever.
    let stacks: Api<strata::api::Stack> = Api::namespaced(client.clone(), name);
    if let Ok(list) = stacks.list(&Default::default()).await {
        let patch = kube::api::Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}}));
        for stack in list {
            let stack_name = stack.metadata.name.unwrap_or_default();
            let _ = stacks.patch(&stack_name, &Default::default(), &patch).await;
        }
    }
    match Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => eprintln!("warning: cannot delete test namespace {name}: {e}"),
    }
}

/// The first `max` characters of `s` as a DNS-1123 label: lower case, runs of
/// anything else turned into one '-', no '-' at either end.
fn dns_label_prefix(s: &str, max: usize) -> String {
    let mut label = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            label.push(c.to_ascii_lowercase());
        } else if !label.is_empty() && !label.ends_with('-') {
            label.push('-');
        }
    }
    label.truncate(max);
    let label = label.trim_end_matches('-');
    if label.is_empty() {
        "test".into()
    } else {
        label.into()
    }
}

/// Eight random lower-case hex digits (std's per-process random hash keys,
/// mixed with the time so that two calls differ).
fn random_suffix() -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("{:08x}", hasher.finish() as u32)
}

/// What one poll of [`wait_for`] saw: done with a value, or not yet, with a
/// description of the state observed (shown if the deadline passes).
pub trait Observation<T> {
    /// `Ok(value)` when done; `Err(state)` otherwise.
    fn into_result(self) -> Result<T, String>;
}

impl<T> Observation<T> for Option<T> {
    fn into_result(self) -> Result<T, String> {
        self.ok_or_else(|| "not yet".to_string())
    }
}

impl<T, E: Display> Observation<T> for Result<T, E> {
    fn into_result(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// Polls `probe` every [`POLL_INTERVAL`] until it reports done, and returns
/// its value. Panics after `within` with `description` and the last state the
/// probe reported. The probe returns `Option<T>`, or `Result<T, E>` where the
/// error describes what it saw ("2 of 3 pods Ready: ...").
pub async fn wait_for<T, O, F, Fut>(within: Duration, description: &str, mut probe: F) -> T
where
    O: Observation<T>,
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
{
    let deadline = Instant::now() + within;
    let mut polls = 0u32;
    loop {
        polls += 1;
        let last = match probe().await.into_result() {
            Ok(value) => return value,
            Err(state) => state,
        };
        if Instant::now() >= deadline {
            panic!(
                "timed out after {within:?} ({polls} polls) waiting for {description}\n\
                 last observed state: {last}"
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Waits until object `name` has a `status.conditions[]` entry of `type_`
/// with `status` ("True", "False", "Unknown"), and returns the object. Works
/// for typed objects and `DynamicObject` alike, by reading them as JSON.
pub async fn wait_for_condition<K>(
    api: &Api<K>,
    name: &str,
    type_: &str,
    status: &str,
    within: Duration,
) -> K
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let description = format!("{name} to have condition {type_}={status}");
    wait_for(within, &description, || async {
        let object = match api.get_opt(name).await {
            Ok(Some(object)) => object,
            Ok(None) => return Err(format!("{name} does not exist")),
            Err(e) => return Err(format!("cannot get {name}: {e}")),
        };
        let json = serde_json::to_value(&object).expect("a Kubernetes object serializes");
        let conditions = json
            .pointer("/status/conditions")
            .cloned()
            .unwrap_or_default();
        let matches = conditions.as_array().into_iter().flatten().any(|c| {
            c.get("type").and_then(|t| t.as_str()) == Some(type_)
                && c.get("status").and_then(|s| s.as_str()) == Some(status)
        });
        if matches {
            Ok(object)
        } else {
            Err(format!("status.conditions = {conditions}"))
        }
    })
    .await
}

/// The kubectl to run: `$KUBECTL`, or `kubectl` on `PATH` (the test command
/// puts the plane's `bin/` first).
pub fn kubectl_path() -> OsString {
    std::env::var_os("KUBECTL")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "kubectl".into())
}

/// Runs kubectl with `args` against the plane (same `KUBECONFIG` as [`client`]).
pub fn kubectl<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    kubectl_with_stdin(args, "")
}

/// Runs kubectl with `args`, writing `stdin` to it (for `-f -`).
pub fn kubectl_with_stdin<I, S>(args: I, stdin: &str) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let program = kubectl_path();
    let mut child = Command::new(&program)
        .args(args)
        .env("KUBECONFIG", kubeconfig_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {program:?} ({e}): put the plane's kubectl on PATH \
                 (~/.cache/strata/k8s-<version>/bin) or set KUBECTL"
            )
        });
    let mut pipe = child.stdin.take().expect("stdin is piped");
    let input = stdin.to_owned();
    // Written from a thread so that a large input cannot deadlock against a
    // full stdout pipe.
    let writer = std::thread::spawn(move || pipe.write_all(input.as_bytes()));
    let output = child
        .wait_with_output()
        .expect("kubectl runs to completion");
    writer.join().expect("stdin writer").ok();
    output
}

/// Readable views of a command's [`Output`].
pub trait OutputExt {
    /// Standard output, lossily decoded.
    fn stdout_text(&self) -> String;
    /// Standard error, lossily decoded.
    fn stderr_text(&self) -> String;
    /// Panics, showing both streams, unless the command succeeded; returns stdout.
    fn expect_success(&self, what: &str) -> String;
}

impl OutputExt for Output {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    fn expect_success(&self, what: &str) -> String {
        assert!(
            self.status.success(),
            "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout_text(),
            self.stderr_text()
        );
        self.stdout_text()
    }
}

/// The repository root (where `crds/` and `examples/` are).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Applies `crds/strata.dev.yaml` with server-side apply (idempotent, safe to
/// run from several tests at once) and waits until every CRD is Established.
pub async fn install_crds(client: &Client) {
    let path = repo_root().join("crds/strata.dev.yaml");
    let yaml = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut names = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&yaml) {
        let crd: CustomResourceDefinition = serde::Deserialize::deserialize(document)
            .unwrap_or_else(|e| panic!("{} holds an invalid CRD: {e}", path.display()));
        let name = crd.name_any();
        api.patch(&name, &params, &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the API server refused CRD {name} from {}: {e}",
                    path.display()
                )
            });
        names.push(name);
    }
    assert!(!names.is_empty(), "{} holds no CRDs", path.display());
    for name in names {
        wait_for_condition(&api, &name, "Established", "True", Duration::from_secs(30)).await;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_prefixes_are_dns_labels() {
        assert_eq!(
            dns_label_prefix("api_admission::refuses_bad_input", 63),
            "api-admission-refuses-bad-input"
        );
        assert_eq!(dns_label_prefix("__X__", 63), "x");
        assert_eq!(dns_label_prefix("", 63), "test");
        assert_eq!(dns_label_prefix("abc-def", 4), "abc");
        assert_ne!(random_suffix(), random_suffix());
    }
}
