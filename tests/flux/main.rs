//! GitOps for real: Flux's source-controller and kustomize-controller
//! (built from their Go modules, see `hack/lib/build.sh`) sync the edge site
//! of `examples/` from a Git repository on this machine into the plane, with
//! the real operator, through the shipped `examples/gitops/flux.yaml`
//! (`wait: true`, `prune: true`). One run of the controllers takes the site
//! through a user's history, one commit at a time:
//!
//! 1. the site: the Kustomization is Ready only once every Strata object is;
//! 2. a Stack bump: progress, then Ready with the functions moved;
//! 3. a changed Stack without a version bump: the health check fails on the
//!    Stalled Stack (`VersionConflict`);
//! 4. `git revert` of that commit: Ready again, at the same digest;
//! 5. a Stack version that breaks its consumers: the canary's rollout fails,
//!    the adoption halts (`AdoptionHalted`), and the health check fails;
//!    `git revert` of it: Ready again, every function on the version before;
//! 6. a ServiceChain deleted from Git: pruned;
//! 7. the Stack deleted from Git while functions use it: the deletion is
//!    held (`InUse`); the functions deleted too: both go.
//!
//! Every change of the Kustomization's `Ready` condition is recorded and
//! printed at the end (`--nocapture` shows it): it is what `flux get
//! kustomizations` shows a user, and what the README quotes.

mod harness;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::{FluxControllers, GitServer, Repo, flux_dir};
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use serde_json::{Value, json};
use strata_testkit::{
    FIELD_MANAGER, Operator, TestNamespace, client, install_crds, install_crds_from, repo_root,
    scratch_dir, wait_for,
};

/// How long any one expected state may take to appear.
const DEADLINE: Duration = Duration::from_secs(120);

/// How long the Kustomization's health check waits for the objects to be
/// Current before it fails.
const HEALTH_TIMEOUT: &str = "30s";

/// How often source-controller polls the repository.
const SOURCE_INTERVAL: &str = "2s";

/// The canary's (`fw`'s) `progressDeadlineSeconds` in the test's copy of the
/// site (the default is 600): how long a rollout that cannot progress takes
/// to end Failed, and so for a breaking Stack version to halt its adoption.
const CANARY_PROGRESS_DEADLINE_SECONDS: u32 = 10;

fn api(
    client: &kube::Client,
    ns: &str,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

fn strata(client: &kube::Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    let plural = match kind {
        "Stack" => "stacks",
        "NetworkFunction" => "networkfunctions",
        "ServiceChain" => "servicechains",
        other => panic!("not a Strata kind here: {other}"),
    };
    api(client, ns, "strata.dev", "v1alpha1", kind, plural)
}

/// The `status.conditions[]` entry of `type_`.
fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Ready=True, written for the current generation.
fn is_ready(object: &Value) -> bool {
    object.pointer("/status/observedGeneration") == object.pointer("/metadata/generation")
        && condition(object, "Ready").is_some_and(|c| c["status"] == "True")
}

/// One state of the Kustomization's Ready condition, as a user sees it.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    /// Since the test's first commit.
    at: Duration,
    revision: String,
    status: String,
    reason: String,
    message: String,
}

/// Every distinct state of the Kustomization's Ready condition, recorded by
/// a poller (every 100 ms) for as long as the recorder lives.
struct Timeline {
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Timeline {
    fn record(api: Api<DynamicObject>, name: &str, start: Instant) -> Self {
        let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
        let name = name.to_string();
        let sink = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Ok(Some(object)) = api.get_opt(&name).await {
                    let object = serde_json::to_value(object).expect("serializes");
                    if let Some(ready) = condition(&object, "Ready") {
                        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
                        let state = Seen {
                            at: start.elapsed(),
                            revision: text(&object["status"]["lastAttemptedRevision"]),
                            status: text(&ready["status"]),
                            reason: text(&ready["reason"]),
                            message: text(&ready["message"]),
                        };
                        let mut seen = sink.lock().unwrap();
                        let changed = seen.last().is_none_or(|last: &Seen| {
                            (&last.revision, &last.status, &last.reason, &last.message)
                                != (
                                    &state.revision,
                                    &state.status,
                                    &state.reason,
                                    &state.message,
                                )
                        });
                        if changed {
                            seen.push(state);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Self { seen, task }
    }

    /// The states seen for `revision` (a commit's SHA-1) so far.
    fn for_revision(&self, commit: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.revision.ends_with(commit))
            .cloned()
            .collect()
    }

    fn print(&self) {
        println!("--- the Kustomization's Ready condition, as it changed ---");
        for s in self.seen.lock().unwrap().iter() {
            let revision = s.revision.rsplit(':').next().unwrap_or_default();
            let short = &revision[..revision.len().min(7)];
            println!(
                "{:>6.1}s  {short:7}  Ready={:7} {:22} {}",
                s.at.as_secs_f64(),
                s.status,
                s.reason,
                s.message
            );
        }
    }
}

impl Drop for Timeline {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The test's world: the namespace, the operator, the Git server and
/// repository, and Flux.
struct Site {
    client: kube::Client,
    ns: TestNamespace,
    repo: Repo,
    kustomizations: Api<DynamicObject>,
    start: Instant,
}

impl Site {
    fn strata(&self, kind: &str) -> Api<DynamicObject> {
        strata(&self.client, self.ns.name(), kind)
    }

    async fn get(&self, kind: &str, name: &str) -> Option<Value> {
        self.strata(kind)
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("cannot get {kind} {name}: {e}"))
            .map(|o| serde_json::to_value(o).expect("serializes"))
    }

    /// Waits until the Kustomization, having attempted `commit`, has a Ready
    /// condition with `status` (and, when given, `reason`); returns it and
    /// how long after `since` that was.
    async fn wait_kustomization(
        &self,
        commit: &str,
        status: &str,
        reason: Option<&str>,
        since: Instant,
    ) -> (Value, Duration) {
        let what = format!("Ready={status} ({reason:?})");
        self.wait_verdict(commit, &what, since, |c| {
            c["status"] == status && reason.is_none_or(|r| c["reason"] == r)
        })
        .await
    }

    /// Waits until the Kustomization has a verdict (Ready True or False) on
    /// `commit`; returns it and how long after `since` that was.
    async fn wait_kustomization_verdict(&self, commit: &str, since: Instant) -> (Value, Duration) {
        self.wait_verdict(commit, "a verdict", since, |c| {
            c["reason"] == "ReconciliationSucceeded" || c["reason"] == "HealthCheckFailed"
        })
        .await
    }

    /// Waits until the Kustomization has attempted `commit` and its Ready
    /// condition satisfies `verdict`.
    async fn wait_verdict(
        &self,
        commit: &str,
        what: &str,
        since: Instant,
        verdict: impl Fn(&Value) -> bool,
    ) -> (Value, Duration) {
        let api = &self.kustomizations;
        let description = format!("the Kustomization to reach {what} at {commit}");
        let object = wait_for(DEADLINE, &description, || async {
            let object = match api.get_opt("strata-edge-site").await {
                Ok(Some(object)) => serde_json::to_value(object).expect("serializes"),
                Ok(None) => return Err("the Kustomization does not exist".to_string()),
                Err(e) => return Err(format!("cannot get the Kustomization: {e}")),
            };
            let attempted = object["status"]["lastAttemptedRevision"]
                .as_str()
                .is_some_and(|r| r.ends_with(commit));
            if attempted && condition(&object, "Ready").is_some_and(&verdict) {
                Ok(object)
            } else {
                Err(format!(
                    "status = {}\nStrata objects:\n{}",
                    object["status"],
                    self.summary().await
                ))
            }
        })
        .await;
        (object, since.elapsed())
    }

    /// Asserts that every Stack, NetworkFunction and ServiceChain of the
    /// namespace is Ready at its current generation; returns how many.
    async fn assert_all_strata_ready(&self, when: &str) -> usize {
        let mut count = 0;
        for kind in ["Stack", "NetworkFunction", "ServiceChain"] {
            let list = self
                .strata(kind)
                .list(&Default::default())
                .await
                .unwrap_or_else(|e| panic!("cannot list {kind}s: {e}"));
            for object in list {
                let object = serde_json::to_value(object).expect("serializes");
                assert!(
                    is_ready(&object),
                    "{when}: the Kustomization is Ready, but {kind} {} is not: {:#}",
                    object["metadata"]["name"],
                    object["status"]
                );
                count += 1;
            }
        }
        count
    }

    /// One line per Strata object: its Ready condition and generations.
    async fn summary(&self) -> String {
        let mut lines = Vec::new();
        for kind in ["Stack", "NetworkFunction", "ServiceChain"] {
            let Ok(list) = self.strata(kind).list(&Default::default()).await else {
                continue;
            };
            for object in list {
                let object = serde_json::to_value(object).expect("serializes");
                let ready = condition(&object, "Ready").cloned().unwrap_or_default();
                lines.push(format!(
                    "  {kind} {}: generation {} observed {}, Ready={} {}: {}",
                    object["metadata"]["name"],
                    object["metadata"]["generation"],
                    object["status"]["observedGeneration"],
                    ready["status"],
                    ready["reason"],
                    ready["message"]
                ));
            }
        }
        lines.join("\n")
    }

    /// The pods the site's functions run: the sum of their replicas.
    async fn function_pods(&self) -> i64 {
        let list = self
            .strata("NetworkFunction")
            .list(&Default::default())
            .await
            .unwrap_or_else(|e| panic!("cannot list NetworkFunctions: {e}"));
        list.into_iter()
            .map(|nf| {
                let nf = serde_json::to_value(nf).expect("serializes");
                nf["spec"]["replicas"].as_i64().expect("spec.replicas")
            })
            .sum()
    }

    /// The stack version function `name` runs on.
    async fn stack_version_of(&self, name: &str) -> String {
        let nf = self
            .get("NetworkFunction", name)
            .await
            .expect("the function exists");
        nf.pointer("/status/deployedWith/stack/version")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }
}

/// Copies `examples/` (the site, its upgrade step and the GitOps objects)
/// into the working copy, as it is laid out in this repository.
fn copy_examples(repo: &Repo) {
    let examples = repo_root().join("examples");
    for sub in ["", "upgrade", "gitops"] {
        let from = examples.join(sub);
        let to = repo.path("examples").join(sub);
        std::fs::create_dir_all(&to).expect("a directory in the working copy");
        for entry in std::fs::read_dir(&from).expect("examples/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_file() {
                std::fs::copy(&path, to.join(path.file_name().unwrap())).expect("copied");
            }
        }
    }
}

/// The canary of the site's `consumerRollout` (`fw`), with a short progress
/// deadline, so that a rollout it cannot finish fails within the test.
fn shorten_canary_deadline(repo: &Repo) {
    repo.rewrite(
        "examples/20-fw.yaml",
        "  replicas: 2\n",
        &format!("  replicas: 2\n  progressDeadlineSeconds: {CANARY_PROGRESS_DEADLINE_SECONDS}\n"),
    );
}

/// The first line of the Stack's `resources` in its YAML, followed by a
/// ResourceQuota that admits no more than `pods` pods in the namespace.
fn resources_with_pod_quota(pods: i64) -> String {
    [
        "",
        "  resources:",
        "    - apiVersion: v1",
        "      kind: ResourceQuota",
        "      metadata:",
        "        name: edge-net-pods",
        "      spec:",
        "        hard:",
        &format!("          pods: \"{pods}\""),
        "",
    ]
    .join("\n")
}

/// The shipped `examples/gitops/flux.yaml`, pointed at `url`, into `ns`,
/// with short intervals: the documents (GitRepository, Kustomization).
fn flux_objects(ns: &str, url: &str) -> Vec<Value> {
    let path = repo_root().join("examples/gitops/flux.yaml");
    let yaml = std::fs::read_to_string(&path).expect("examples/gitops/flux.yaml is readable");
    let mut objects: Vec<Value> = serde_yaml::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("a YAML document"))
        .collect();
    for object in &mut objects {
        object["metadata"]["namespace"] = json!(ns);
        match object["kind"].as_str() {
            Some("GitRepository") => {
                object["spec"]["url"] = json!(url);
                object["spec"]["interval"] = json!(SOURCE_INTERVAL);
            }
            Some("Kustomization") => {
                object["spec"]["targetNamespace"] = json!(ns);
                object["spec"]["retryInterval"] = json!("5s");
                object["spec"]["timeout"] = json!(HEALTH_TIMEOUT);
            }
            other => panic!("unexpected {other:?} in {}", path.display()),
        }
    }
    objects
}

#[tokio::test]
async fn flux_syncs_the_edge_site_from_git() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let crds: Vec<_> = std::fs::read_dir(flux_dir().join("crds"))
        .expect("the Flux CRDs")
        .map(|e| e.expect("an entry").path())
        .collect();
    install_crds_from(&client, &crds).await;

    let ns = TestNamespace::create(&client, "flux").await;
    let dir = scratch_dir().join(format!("flux-{}", ns.name()));
    let served = dir.join("git");
    std::fs::create_dir_all(&served).expect("a scratch directory");
    let mut operator = Operator::start(ns.name());
    let git = GitServer::start(&served, &dir);
    let repo = Repo::create(&git, &served, "site", &dir.join("work"));
    copy_examples(&repo);
    shorten_canary_deadline(&repo);
    let start = Instant::now();
    let first = repo.commit("The edge site: edge-net 1.4.0, four functions, a chain");

    let mut flux = FluxControllers::start(ns.name(), &dir);
    let sources = api(
        &client,
        ns.name(),
        "source.toolkit.fluxcd.io",
        "v1",
        "GitRepository",
        "gitrepositories",
    );
    let kustomizations = api(
        &client,
        ns.name(),
        "kustomize.toolkit.fluxcd.io",
        "v1",
        "Kustomization",
        "kustomizations",
    );
    for object in flux_objects(ns.name(), &repo.url) {
        let target = if object["kind"] == "GitRepository" {
            &sources
        } else {
            &kustomizations
        };
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        target
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await
            .unwrap_or_else(|e| panic!("the API server refused {name}: {e}"));
    }
    let timeline = Timeline::record(kustomizations.clone(), "strata-edge-site", start);
    let site = Site {
        client: client.clone(),
        ns,
        repo,
        kustomizations,
        start,
    };
    let mut timings = Vec::new();

    // 1. The site: Ready only once every Strata object is.
    let (_, took) = site.wait_kustomization(&first, "True", None, start).await;
    let objects = site.assert_all_strata_ready("the first sync").await;
    assert_eq!(objects, 6, "1 Stack, 4 NetworkFunctions, 1 ServiceChain");
    timings.push(("the site, from scratch", took));

    // 2. A Stack bump: progress, then Ready once the functions moved.
    let upgrade =
        std::fs::read_to_string(site.repo.path("examples/upgrade/edge-net-1.5.0.yaml")).unwrap();
    std::fs::write(site.repo.path("examples/10-edge-net.yaml"), upgrade).unwrap();
    let committed = Instant::now();
    let bump = site.repo.commit("edge-net 1.5.0: jumbo frames on N6");
    let (_, took) = site
        .wait_kustomization(&bump, "True", None, committed)
        .await;
    timings.push(("edge-net 1.5.0", took));
    let progress = timeline.for_revision(&bump);
    assert!(
        progress
            .iter()
            .any(|s| s.status == "Unknown" && s.reason == "Progressing"),
        "the Kustomization never reported progress for the bump: {progress:#?}"
    );
    site.assert_all_strata_ready("the bump").await;
    let stack = site.get("Stack", "edge-net").await.unwrap();
    assert_eq!(stack["status"]["version"], "1.5.0");
    let digest_150 = stack["status"]["digest"].clone();
    for name in ["smf", "upf", "fw"] {
        assert_eq!(
            site.stack_version_of(name).await,
            "1.5.0",
            "{name} follows edge-net automatically"
        );
    }
    assert_eq!(
        site.stack_version_of("cgnat").await,
        "1.4.0",
        "cgnat moves only with its own spec"
    );

    // 3. The same version with other content: the Stack is Stalled
    // (VersionConflict), and the Kustomization's health check fails on it.
    site.repo.rewrite(
        "examples/10-edge-net.yaml",
        "mtu: \"9000\"",
        "mtu: \"9100\"",
    );
    let committed = Instant::now();
    let conflict = site
        .repo
        .commit("edge-net: MTU 9100, without a version bump");
    let (failed, took) = site
        .wait_kustomization(&conflict, "False", Some("HealthCheckFailed"), committed)
        .await;
    timings.push(("the conflict, to the failed health check", took));
    let message = condition(&failed, "Ready").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    println!("failed: {message}");
    assert!(
        message.contains("edge-net"),
        "the failure names the Stack: {message}"
    );
    let stack = site.get("Stack", "edge-net").await.unwrap();
    let stalled = condition(&stack, "Stalled").expect("a Stalled condition");
    assert_eq!(stalled["reason"], "VersionConflict", "{stack:#}");
    assert_eq!(
        stack["status"]["digest"], digest_150,
        "nothing of the conflicting content was applied"
    );

    // 4. git revert: Ready again, with 1.5.0 at its original digest.
    let committed = Instant::now();
    let revert = site.repo.revert(&conflict);
    let (_, took) = site
        .wait_kustomization(&revert, "True", None, committed)
        .await;
    timings.push(("git revert of the conflict", took));
    site.assert_all_strata_ready("the revert").await;
    let stack = site.get("Stack", "edge-net").await.unwrap();
    assert_eq!(stack["status"]["version"], "1.5.0");
    assert_eq!(stack["status"]["digest"], digest_150);

    // 5. A version that breaks its consumers: edge-net 1.6.0 adds a
    // ResourceQuota that admits no pod beyond those the functions run, so
    // the canary (fw, the first step) cannot create the new pod its rolling
    // update starts with, its rollout exceeds its progress deadline (fw is
    // Stalled, RolloutFailed), and the adoption halts (maxFailures: 0: the
    // Stack is Stalled, AdoptionHalted). The Kustomization's health check
    // fails on the first Failed object it sees.
    let pods = site.function_pods().await;
    site.repo.rewrite(
        "examples/10-edge-net.yaml",
        "version: 1.5.0",
        "version: 1.6.0",
    );
    site.repo.rewrite(
        "examples/10-edge-net.yaml",
        "\n  resources:\n",
        &resources_with_pod_quota(pods),
    );
    let committed = Instant::now();
    let breaking = site.repo.commit("edge-net 1.6.0: a pod quota for the site");
    let (failed, took) = site
        .wait_kustomization(&breaking, "False", Some("HealthCheckFailed"), committed)
        .await;
    timings.push(("a breaking version, to the failed health check", took));
    let message = condition(&failed, "Ready").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    println!("halted: {message}");
    assert!(
        message.contains("status: 'Failed'"),
        "the health check fails on a Failed object, not on a timeout: {message}"
    );
    let halt = wait_for(
        DEADLINE,
        "the Stack to be Stalled (AdoptionHalted)",
        || async {
            let stack = site.get("Stack", "edge-net").await.ok_or("no Stack")?;
            match condition(&stack, "Stalled") {
                Some(c) if c["status"] == "True" && c["reason"] == "AdoptionHalted" => {
                    Ok(stack.clone())
                }
                _ => Err(format!("status = {}", stack["status"])),
            }
        },
    )
    .await;
    let stalled = condition(&halt, "Stalled").unwrap()["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    println!("the Stack says: {stalled}");
    assert!(
        stalled.contains("fw (record "),
        "the halt names the canary and its record: {stalled}"
    );
    let rollout = &halt["status"]["rollout"];
    assert_eq!(
        (&rollout["version"], &rollout["phase"], &rollout["step"]),
        (&json!("1.6.0"), &json!("Halted"), &json!("canary")),
        "{rollout:#}"
    );
    for name in ["smf", "upf"] {
        assert_eq!(
            site.stack_version_of(name).await,
            "1.5.0",
            "{name} does not move while the adoption is halted"
        );
    }

    // git revert: the Stack goes back to 1.5.0 (a rollback), its quota is
    // pruned, the canary moves back, and the Kustomization is Ready again.
    let committed = Instant::now();
    let rollback = site.repo.revert(&breaking);
    let (_, took) = site
        .wait_kustomization(&rollback, "True", None, committed)
        .await;
    timings.push(("git revert of the breaking version", took));
    site.assert_all_strata_ready("the rollback").await;
    let stack = site.get("Stack", "edge-net").await.unwrap();
    assert_eq!(stack["status"]["version"], "1.5.0");
    assert_eq!(stack["status"]["digest"], digest_150);
    assert_eq!(site.stack_version_of("fw").await, "1.5.0");
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), site.ns.name());
    assert!(
        quotas.get_opt("edge-net-pods").await.unwrap().is_none(),
        "the quota of 1.6.0 is pruned"
    );

    // 6. Prune: the chain deleted from Git is deleted from the cluster.
    site.repo.remove("examples/30-n6-egress.yaml");
    let committed = Instant::now();
    let unchained = site.repo.commit("Drop the n6-egress chain");
    let (_, took) = site
        .wait_kustomization(&unchained, "True", None, committed)
        .await;
    timings.push(("the chain deleted from Git", took));
    wait_for(DEADLINE, "the ServiceChain to be pruned", || async {
        match site.get("ServiceChain", "n6-egress").await {
            None => Ok(()),
            Some(chain) => Err(format!("still there: {}", chain["metadata"])),
        }
    })
    .await;

    // 7. The Stack deleted from Git while the functions use it: Flux
    // deletes it, and the deletion waits for the functions (InUse).
    site.repo.remove("examples/10-edge-net.yaml");
    let committed = Instant::now();
    let unstacked = site
        .repo
        .commit("Drop edge-net (the functions still use it)");
    // Flux's verdict on this revision depends on a race: its health check
    // may run before the functions report that their Stack is going (then
    // it passes), or after (then it times out on them). Either way, what
    // matters is that the deletion is held and the functions keep running.
    let (verdict, took) = site.wait_kustomization_verdict(&unstacked, committed).await;
    timings.push(("the Stack deleted from Git, functions kept", took));
    let verdict = condition(&verdict, "Ready").unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    println!("unstacked: {verdict}\n{}", site.summary().await);
    let held = wait_for(
        DEADLINE,
        "the Stack's deletion to be held (InUse)",
        || async {
            let stack = site
                .get("Stack", "edge-net")
                .await
                .ok_or("the Stack is gone")?;
            match condition(&stack, "Ready") {
                Some(c)
                    if c["reason"] == "InUse"
                        && stack["metadata"]["deletionTimestamp"].is_string() =>
                {
                    Ok(c["message"].as_str().unwrap_or_default().to_string())
                }
                _ => Err(format!("status = {}", stack["status"])),
            }
        },
    )
    .await;
    println!("held: {held}");
    for name in ["cgnat", "fw", "smf", "upf"] {
        assert!(
            held.contains(name),
            "the InUse message names {name}: {held}"
        );
        let nf = site
            .get("NetworkFunction", name)
            .await
            .expect("the function is kept");
        // Its pods keep running on the last good revision (Ready may be
        // False: StackNotReady, nothing new rolls out).
        let (ready, desired) = (&nf["status"]["readyReplicas"], &nf["status"]["replicas"]);
        assert!(
            ready.as_i64().is_some_and(|r| r > 0) && ready == desired,
            "{name} still runs: {:#}",
            nf["status"]
        );
    }

    site.repo.remove("examples/20-cgnat.yaml");
    site.repo.remove("examples/20-fw.yaml");
    site.repo.remove("examples/20-smf.yaml");
    site.repo.remove("examples/20-upf.yaml");
    let committed = Instant::now();
    let emptied = site.repo.commit("Drop the functions");
    let (_, took) = site
        .wait_kustomization(&emptied, "True", None, committed)
        .await;
    timings.push(("the functions deleted from Git", took));
    wait_for(
        DEADLINE,
        "the functions and then the Stack to be gone",
        || async {
            let mut left = Vec::new();
            for (kind, name) in [
                ("NetworkFunction", "cgnat"),
                ("NetworkFunction", "fw"),
                ("NetworkFunction", "smf"),
                ("NetworkFunction", "upf"),
                ("Stack", "edge-net"),
            ] {
                if site.get(kind, name).await.is_some() {
                    left.push(format!("{kind} {name}"));
                }
            }
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("still there: {left:?}"))
            }
        },
    )
    .await;

    timeline.print();
    println!(
        "--- from a push to the Kustomization's verdict (GitRepository interval {SOURCE_INTERVAL}) ---"
    );
    for (step, took) in &timings {
        println!("{:>6.1}s  {step}", took.as_secs_f64());
    }
    println!("whole story: {:.1?}", site.start.elapsed());
    flux.assert_running();
    operator.assert_running();
    drop(timeline);
    site.ns.cleanup().await;
}
