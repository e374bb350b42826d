//! The operator process, with the real `strata run` binary against the real
//! control plane: leader election over a Lease (exactly one replica
//! reconciles; a standby takes over when the leader is killed, at once when
//! it is terminated and releases the lease), graceful shutdown on SIGTERM,
//! `/healthz` and `/readyz`, the normative metrics after a rollout, and JSON
//! log lines that name the object they are about.
//!
//! The failover and shutdown times are printed (`--nocapture` shows them);
//! only generous bounds are asserted, except the 5 s shutdown budget.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use serde_json::{Value, json};
use strata::api::{NetworkFunction, Stack};
use strata_testkit::{Operator, http_get};
use strata_testkit::{
    TestNamespace, apply_edge_function, apply_edge_stack, client, install_crds, wait_for,
    wait_for_condition,
};

const DEADLINE: Duration = Duration::from_secs(120);
/// The lease duration of `src/runtime/leader.rs`: without a release, a
/// standby cannot take over sooner than this minus one retry period.
const LEASE_DURATION: Duration = Duration::from_secs(15);
const STACK: &str = strata_testkit::EDGE_STACK;

/// Two replicas with leader election: only the holder of the Lease
/// reconciles; killed with SIGKILL, the standby takes over once the lease
/// expires and reconciles what changed meanwhile.
#[tokio::test]
async fn one_replica_leads_and_a_standby_takes_over_when_it_is_killed() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "runtime-failover").await;
    let pair = Pair::start(ns.name()).await;
    let Pair {
        mut leader,
        standby,
        leader_id,
        standby_id,
        lease,
    } = pair;
    let leases: Api<Lease> = ns.api();

    // Both ready, each in its role.
    let leader_addr = leader.metrics_addr().await;
    let standby_addr = standby.metrics_addr().await;
    wait_for_readyz(leader_addr, "ready: leading").await;
    wait_for_readyz(standby_addr, "ready: standby").await;
    // strata_leading tells them apart (the dashboard's leader panel and the
    // no-leader alert read it).
    for (addr, leading) in [(leader_addr, 1.0), (standby_addr, 0.0)] {
        let (_, metrics) = strata_testkit::http_get(addr, "/metrics");
        assert!(metrics.contains("\nstrata_leading "), "{metrics}");
        assert_eq!(
            strata_testkit::metric_sum(&metrics, "strata_leading", &[]),
            leading,
            "strata_leading of {addr}"
        );
    }

    // A Stack and a NetworkFunction become Ready: the leader's doing alone.
    apply_edge_stack(&ns, "1.0.0").await;
    apply_edge_function(&ns, "upf", "2.3.1").await;
    wait_ready::<Stack>(&ns, STACK).await;
    wait_ready::<NetworkFunction>(&ns, "upf").await;
    assert_eq!(holder(&leases, &lease).await, leader_id);
    let leader_metrics = samples(&http_get(leader_addr, "/metrics").1);
    assert!(
        value(
            &leader_metrics,
            "strata_reconcile_total",
            &[("kind", "Stack"), ("result", "success")]
        ) > 0.0
            && value(
                &leader_metrics,
                "strata_reconcile_total",
                &[("kind", "NetworkFunction"), ("result", "success")]
            ) > 0.0,
        "the leader counts its reconciles: {leader_metrics:?}"
    );
    let standby_metrics = samples(&http_get(standby_addr, "/metrics").1);
    assert!(
        !standby_metrics
            .iter()
            .any(|s| s.name == "strata_reconcile_total"),
        "the standby reconciled: {standby_metrics:?}"
    );
    let logs = leader.logs();
    assert!(
        logs.contains("became leader")
            && logs.contains(r#"reconcile{kind="NetworkFunction""#)
            && logs.contains("rollout started"),
        "the leader's log shows its reconciles:\n{logs}"
    );
    let logs = standby.logs();
    assert!(
        logs.contains("standing by: another replica leads")
            && !logs.contains("became leader")
            && !logs.contains("reconcile{")
            && !logs.contains("caches synced"),
        "the standby only stands by:\n{logs}"
    );
    assert_eq!(
        http_get(standby_addr, "/readyz"),
        (200, "ready: standby".into())
    );

    // SIGKILL: no release; the standby waits for the lease to expire. The
    // change made meanwhile is reconciled by the new leader.
    let killed = Instant::now();
    leader.kill();
    leader.wait_exit(Duration::from_secs(5)).await;
    apply_edge_function(&ns, "smf", "1.0.0").await;
    wait_for(
        Duration::from_secs(60),
        "the standby to take the lease over",
        || async {
            let now = holder(&leases, &lease).await;
            (now == standby_id)
                .then_some(())
                .ok_or(format!("holder {now:?}"))
        },
    )
    .await;
    let new_holder = killed.elapsed();
    wait_ready::<NetworkFunction>(&ns, "smf").await;
    let reconciled = killed.elapsed();
    eprintln!(
        "failover after SIGKILL: new lease holder observed after {new_holder:.1?}, \
         the function changed meanwhile Ready after {reconciled:.1?} \
         (lease {LEASE_DURATION:?}, retry period 2s)"
    );
    assert!(
        new_holder < Duration::from_secs(30),
        "takeover took {new_holder:?}"
    );
    wait_for_readyz(standby_addr, "ready: leading").await;
    let metrics = samples(&http_get(standby_addr, "/metrics").1);
    assert!(
        value(
            &metrics,
            "strata_reconcile_total",
            &[("kind", "NetworkFunction"), ("result", "success")]
        ) > 0.0,
        "the new leader reconciles: {metrics:?}"
    );
    assert!(standby.logs().contains("became leader"));

    drop((leader, standby));
    ns.cleanup().await;
}

/// SIGTERM to the leader: it finishes, releases the lease and exits with
/// success within 5 s; the standby takes over at once (no lease expiry). A
/// standby that is terminated while it waits for the lease exits at once.
#[tokio::test]
async fn sigterm_releases_the_lease_and_a_standby_takes_over_at_once() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "runtime-sigterm").await;
    let Pair {
        mut leader,
        mut standby,
        leader_id,
        standby_id,
        lease,
    } = Pair::start(ns.name()).await;
    let leases: Api<Lease> = ns.api();
    apply_edge_stack(&ns, "1.0.0").await;
    apply_edge_function(&ns, "upf", "2.3.1").await;
    wait_ready::<NetworkFunction>(&ns, "upf").await;
    let standby_addr = standby.metrics_addr().await;
    wait_for_readyz(standby_addr, "ready: standby").await;

    // A change just before the signal: whoever leads next must finish it.
    apply_edge_function(&ns, "upf", "2.3.2").await;
    let terminated = Instant::now();
    leader.terminate();
    let status = leader.wait_exit(Duration::from_secs(30)).await;
    let shutdown = terminated.elapsed();
    let after_exit = holder(&leases, &lease).await;
    wait_for(
        Duration::from_secs(60),
        "the standby to take the lease over",
        || async {
            let now = holder(&leases, &lease).await;
            (now == standby_id)
                .then_some(())
                .ok_or(format!("holder {now:?}"))
        },
    )
    .await;
    let takeover = terminated.elapsed();
    wait_for_generation_ready(&ns, "upf").await;
    let reconciled = terminated.elapsed();
    eprintln!(
        "SIGTERM: {leader_id} exited ({status}) after {shutdown:.2?}; lease holder right after \
         exit {after_exit:?}; {standby_id} held the lease after {takeover:.1?}; the change made \
         just before was Ready after {reconciled:.1?}"
    );
    assert!(status.success(), "exit status {status}:\n{}", leader.logs());
    assert!(
        shutdown < Duration::from_secs(5),
        "shutdown took {shutdown:?}:\n{}",
        leader.logs()
    );
    assert!(
        after_exit.is_empty() || after_exit == standby_id,
        "the lease was not released: holder {after_exit:?}"
    );
    // Without a release the standby could not have the lease before it expired.
    assert!(
        takeover < LEASE_DURATION - Duration::from_secs(5),
        "takeover took {takeover:?}: the lease was not released"
    );
    let logs = leader.logs();
    in_order(
        &logs,
        &[
            "became leader",
            "shutting down: finishing in-flight reconciles",
            "released the leader lease",
            "stopped",
        ],
    );

    // A third replica stands by; terminated, it exits at once and leaves
    // the lease alone.
    let third_id = "replica-c";
    let mut third = Operator::start_with(ns.name(), &election(&lease, ns.name(), third_id));
    wait_for_readyz(third.metrics_addr().await, "ready: standby").await;
    let terminated = Instant::now();
    third.terminate();
    let status = third.wait_exit(Duration::from_secs(30)).await;
    let shutdown = terminated.elapsed();
    eprintln!("SIGTERM to standby {third_id}: exited ({status}) after {shutdown:.2?}");
    assert!(status.success(), "exit status {status}:\n{}", third.logs());
    assert!(
        shutdown < Duration::from_secs(5),
        "shutdown took {shutdown:?}"
    );
    assert!(!third.logs().contains("became leader"));
    assert_eq!(holder(&leases, &lease).await, standby_id);
    standby.assert_running();

    drop((leader, standby, third));
    ns.cleanup().await;
}

/// `/healthz` answers while the API server cannot be reached, `/readyz` does
/// not until the caches have synced; after a Stack and a NetworkFunction are
/// Ready, `/metrics` has every normative metric with the right labels and
/// values, and each JSON log line inside a reconcile names its object.
#[tokio::test]
async fn health_metrics_and_json_logs() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let ns = TestNamespace::create(&client, "runtime-metrics").await;
    let n = ns.name().to_string();

    // An API server that does not answer: alive, never ready; SIGTERM still
    // ends it at once (nothing can be in flight).
    let kubeconfig = unreachable_kubeconfig(&n);
    let mut cut_off = Operator::start_with(
        &n,
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("STRATA_IDENTITY", "unreachable"),
        ],
    );
    let addr = cut_off.metrics_addr().await;
    wait_for(DEADLINE, "/healthz to answer", || async {
        let answer = http_get(addr, "/healthz");
        (answer == (200, "ok".into()))
            .then_some(())
            .ok_or(format!("{answer:?}"))
    })
    .await;
    assert_eq!(
        http_get(addr, "/readyz"),
        (503, "not ready: caches not synced".into())
    );
    let terminated = Instant::now();
    cut_off.terminate();
    let status = cut_off.wait_exit(Duration::from_secs(30)).await;
    eprintln!(
        "SIGTERM before the caches synced: exited ({status}) after {:.2?}",
        terminated.elapsed()
    );
    assert!(status.success(), "{}", cut_off.logs());
    assert!(terminated.elapsed() < Duration::from_secs(5));

    // The real thing, logging JSON.
    let operator = Operator::start_with(&n, &[("STRATA_LOG_FORMAT", "json")]);
    let addr = operator.metrics_addr().await;
    wait_for_readyz(addr, "ready: leading").await;
    assert_eq!(http_get(addr, "/healthz"), (200, "ok".into()));
    apply_edge_stack(&ns, "1.0.0").await;
    apply_edge_function(&ns, "upf", "2.3.1").await;
    wait_ready::<Stack>(&ns, STACK).await;
    wait_ready::<NetworkFunction>(&ns, "upf").await;
    let ready = Instant::now();

    // The values are those of this scenario once the Stack has counted its
    // consumer (a reconcile after the function's status changed).
    let labels = [
        ("namespace", n.as_str()),
        ("stack", STACK),
        ("version", "1.0.0"),
    ];
    let metrics = wait_for(
        Duration::from_secs(60),
        "strata_stack_consumers to count the function",
        || async {
            let metrics = samples(&http_get(addr, "/metrics").1);
            let consumers = value(&metrics, "strata_stack_consumers", &labels);
            (consumers == 1.0)
                .then_some(metrics)
                .ok_or(format!("strata_stack_consumers{labels:?} = {consumers}"))
        },
    )
    .await;
    eprintln!(
        "strata_stack_consumers was 1 {:.1?} after the function was Ready",
        ready.elapsed()
    );
    assert!(
        value(
            &metrics,
            "strata_reconcile_total",
            &[("kind", "Stack"), ("result", "success")]
        ) > 0.0
    );
    for kind in ["Stack", "NetworkFunction"] {
        let count = value(
            &metrics,
            "strata_reconcile_duration_seconds_count",
            &[("kind", kind)],
        );
        let all = value(
            &metrics,
            "strata_reconcile_duration_seconds_bucket",
            &[("kind", kind), ("le", "+Inf")],
        );
        assert!(
            count > 0.0 && all == count,
            "strata_reconcile_duration_seconds{{kind={kind}}}: count {count}, +Inf bucket {all}"
        );
    }
    let info: Vec<&Sample> = metrics
        .iter()
        .filter(|s| s.name == "strata_networkfunction_info")
        .collect();
    let expected: BTreeMap<String, String> = [
        ("namespace", n.as_str()),
        ("name", "upf"),
        ("version", "2.3.1"),
        ("stack", STACK),
        ("stack_version", "1.0.0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(
        info.iter()
            .map(|s| (&s.labels, s.value))
            .collect::<Vec<_>>(),
        [(&expected, 1.0)],
        "strata_networkfunction_info"
    );
    assert!(
        value(&metrics, "strata_deploy_cycle_seconds_count", &[]) >= 1.0,
        "strata_deploy_cycle_seconds_count"
    );
    assert_eq!(
        metrics
            .iter()
            .filter(|s| s.name == "strata_stack_consumers")
            .map(|s| (s.labels.clone(), s.value))
            .collect::<Vec<_>>(),
        [(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            1.0
        )],
        "strata_stack_consumers"
    );

    // JSON logs: one object per line; inside a reconcile, the object.
    let logs = operator.logs();
    let lines: Vec<Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let in_reconcile: Vec<&Value> = lines
        .iter()
        .filter(|l| {
            l["spans"]
                .as_array()
                .is_some_and(|s| s.iter().any(|name| name == "reconcile"))
        })
        .collect();
    assert!(
        !in_reconcile.is_empty(),
        "no line inside a reconcile:\n{logs}"
    );
    for line in &in_reconcile {
        let span = &line["span"];
        assert!(
            ["kind", "namespace", "name"]
                .iter()
                .all(|f| span[f].as_str().is_some_and(|v| !v.is_empty())),
            "a line inside a reconcile without its object: {line}"
        );
        assert_eq!(span["namespace"], n.as_str(), "{line}");
    }
    let rollout = in_reconcile
        .iter()
        .find(|l| l["fields"]["message"] == "rollout started")
        .unwrap_or_else(|| panic!("no \"rollout started\" line:\n{logs}"));
    assert_eq!(
        (
            &rollout["span"]["kind"],
            &rollout["span"]["namespace"],
            &rollout["span"]["name"]
        ),
        (&json!("NetworkFunction"), &json!(n), &json!("upf")),
        "{rollout}"
    );
    assert_eq!(rollout["fields"]["stack_version"], "1.0.0", "{rollout}");
    let served = lines
        .iter()
        .find(|l| l["fields"]["message"] == "serving /metrics, /healthz and /readyz")
        .expect("the metrics address is logged");
    assert_eq!(served["fields"]["addr"], addr.to_string());

    drop(operator);
    ns.cleanup().await;
}

/// Two replicas with leader election on a lease of their own, and which leads.
struct Pair {
    leader: Operator,
    standby: Operator,
    leader_id: String,
    standby_id: String,
    lease: String,
}

impl Pair {
    async fn start(namespace: &str) -> Self {
        let lease = format!("strata-leader-{namespace}");
        let a = Operator::start_with(namespace, &election(&lease, namespace, "replica-a"));
        let b = Operator::start_with(namespace, &election(&lease, namespace, "replica-b"));
        let leases: Api<Lease> = Api::namespaced(client().await, namespace);
        let leader_id = wait_for(DEADLINE, "one replica to hold the lease", || async {
            let now = holder(&leases, &lease).await;
            (!now.is_empty()).then_some(now)
        })
        .await;
        // The other one has seen that and stands by.
        let (leader, standby, standby_id) = match leader_id.as_str() {
            "replica-a" => (a, b, "replica-b"),
            "replica-b" => (b, a, "replica-a"),
            other => panic!("the lease is held by {other:?}"),
        };
        eprintln!("{leader_id} leads, {standby_id} stands by (lease {namespace}/{lease})");
        Self {
            leader,
            standby,
            leader_id,
            standby_id: standby_id.into(),
            lease,
        }
    }
}

fn election<'a>(lease: &'a str, namespace: &'a str, identity: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("STRATA_LEADER_ELECTION", "true"),
        ("STRATA_LEASE_NAME", lease),
        ("STRATA_LEASE_NAMESPACE", namespace),
        ("STRATA_IDENTITY", identity),
    ]
}

/// The holder of the lease ("" when released or absent).
async fn holder(leases: &Api<Lease>, name: &str) -> String {
    leases
        .get_opt(name)
        .await
        .unwrap_or_else(|e| panic!("cannot read Lease {name}: {e}"))
        .and_then(|l| l.spec?.holder_identity)
        .unwrap_or_default()
}

async fn wait_ready<K>(ns: &TestNamespace, name: &str)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    wait_for_condition(&ns.api::<K>(), name, "Ready", "True", DEADLINE).await;
}

/// Waits until function `name` is Ready at its current generation.
async fn wait_for_generation_ready(ns: &TestNamespace, name: &str) {
    let api: Api<NetworkFunction> = ns.api();
    wait_for(
        DEADLINE,
        &format!("{name} Ready at its generation"),
        || async {
            let nf = api.get(name).await.map_err(|e| e.to_string())?;
            let status = serde_json::to_value(&nf.status).unwrap_or_default();
            let ready = status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            let observed = status["observedGeneration"].as_i64();
            if ready && observed == nf.metadata.generation {
                Ok(())
            } else {
                Err(format!(
                    "generation {:?}, status {status}",
                    nf.metadata.generation
                ))
            }
        },
    )
    .await;
}

async fn wait_for_readyz(addr: SocketAddr, body: &str) {
    wait_for(DEADLINE, &format!("/readyz to say {body:?}"), || async {
        let answer = http_get(addr, "/readyz");
        (answer == (200, body.to_string()))
            .then_some(())
            .ok_or(format!("{answer:?}"))
    })
    .await;
}

/// One sample of the Prometheus text exposition.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn samples(exposition: &str) -> Vec<Sample> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|l| !l.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').expect("label=\"value\"");
                    (k.to_string(), v.trim_matches('"').to_string())
                })
                .collect();
            Sample {
                name: name.to_string(),
                labels,
                value: value.parse().expect("a numeric sample value"),
            }
        })
        .collect()
}

/// The value of the one sample of `name` with exactly `labels` (0 if none).
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    assert!(matching.len() <= 1, "several samples {name}{labels:?}");
    matching.first().map_or(0.0, |s| s.value)
}

/// Panics unless each of `needles` is in `logs`, in this order.
fn in_order(logs: &str, needles: &[&str]) {
    let mut rest = logs;
    for needle in needles {
        match rest.find(needle) {
            Some(at) => rest = &rest[at + needle.len()..],
            None => panic!("{needle:?} missing (or out of order) in the log:\n{logs}"),
        }
    }
}

/// A kubeconfig whose API server does not answer (a closed local port).
fn unreachable_kubeconfig(namespace: &str) -> std::path::PathBuf {
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("kubeconfig-unreachable-{namespace}"));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: nowhere\n  cluster:\n    server: https://{closed}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: nowhere\n  context: {{cluster: nowhere, user: nobody}}\ncurrent-context: nowhere\nusers:\n- name: nobody\n  user: {{token: none}}\n"
        ),
    )
    .expect("write the kubeconfig");
    path
}
