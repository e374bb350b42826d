//! Staging and production as namespaces of one cluster, one operator for both.

use std::time::{Duration, Instant};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use serde_json::json;
use strata::api::{Outcome, Stack};
use strata_testkit::{Operator, TestNamespace, client, install_crds, metric_sum, wait_for};

use super::{DEADLINE, Env, condition, runs_on, seconds, upf};

/// The soak production requires: long enough to watch, short enough for CI.
const SOAK: &str = "6s";

/// When the soak of `record` (a staging record that Succeeded) ends.
fn soak_end(record: &strata::api::DeploymentRecord) -> Timestamp {
    let succeeded: Timestamp = record
        .status
        .as_ref()
        .and_then(|s| s.succeeded_at.as_deref())
        .expect("a Succeeded record has succeededAt")
        .parse()
        .expect("succeededAt is RFC 3339");
    succeeded + SignedDuration::from_secs_f64(seconds(SOAK))
}

/// Waits until production's `upf` runs a new record on `version` and
/// returns how long after `end` (the end of the soak) it was seen.
async fn rollout_after(production: &Env, version: &str, end: Timestamp) -> f64 {
    let what = format!("production upf rolled out onto {version}");
    wait_for(DEADLINE, &what, || async {
        let nf = production
            .functions
            .get("upf")
            .await
            .map_err(|e| e.to_string())?;
        if runs_on(&nf).as_deref() == Some(version) {
            Ok(Timestamp::now().duration_since(end).as_secs_f64())
        } else {
            Err(serde_json::to_string(&nf.status).unwrap())
        }
    })
    .await
}

/// The evidence in production's current record is staging's `record`, soaked
/// at least the soak: the gate never opened early.
async fn assert_evidence(production: &Env, staging: &Env, record: &str) {
    let current = production.current_record("upf").await;
    let evidence = &current.spec.verified_in;
    assert_eq!(
        evidence.len(),
        1,
        "one requirement, one piece of evidence: {evidence:?}"
    );
    assert_eq!(
        (
            evidence[0].cluster.as_str(),
            evidence[0].namespace.as_str(),
            evidence[0].record.as_str()
        ),
        ("", staging.name(), record),
        "{evidence:?}"
    );
    assert!(
        seconds(&evidence[0].soaked) >= seconds(SOAK),
        "rolled out after a soak of {}, {SOAK} required",
        evidence[0].soaked
    );
}

#[tokio::test]
async fn an_artifact_reaches_production_only_after_its_soak_in_staging() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let staging = Env::new(TestNamespace::create(&client, "promotion-staging").await);
    let production = Env::new(TestNamespace::create(&client, "promotion-production").await);
    let namespaces = format!("{},{}", staging.name(), production.name());
    // A resync far beyond the deadlines: the soak's end must wake the gate.
    let env = [
        ("STRATA_NAMESPACES", namespaces.as_str()),
        ("STRATA_RESYNC_INTERVAL", "10m"),
    ];
    let mut operator = Operator::start_with(staging.name(), &env);
    let gate = json!({"promotion": {"requireVerifiedIn": [
        {"namespace": staging.name(), "soak": SOAK},
    ]}});
    staging.apply_stack("1.0.0", "lab").await;
    production.apply_stack("1.0.0", "edge-1").await;

    // Nothing ran upstream: production deploys nothing.
    production
        .apply_function("upf", upf("1.0.0", gate.clone()))
        .await;
    let waiting = production.verified("upf", "NotVerifiedUpstream").await;
    let message = &condition(&waiting, "Verified").unwrap().message;
    assert!(message.contains(staging.name()), "{message}");
    assert!(
        production
            .deployments
            .get_opt("upf")
            .await
            .unwrap()
            .is_none()
    );
    let metrics = operator.metrics_addr().await;
    let (_, exposition) = strata_testkit::http_get(metrics, "/metrics");
    let labels = [
        ("namespace", production.name()),
        ("reason", "NotVerifiedUpstream"),
    ];
    assert_eq!(
        metric_sum(&exposition, "strata_promotion_waiting", &labels),
        1.0
    );

    // Staging runs it; production soaks, then rolls out when the soak ends.
    staging.apply_function("upf", upf("1.0.0", json!({}))).await;
    staging.ready_on("upf", "1.0.0").await;
    let staged = staging.current_record("upf").await;
    let staged = staging
        .record_until(&staged.metadata.name.unwrap(), Outcome::Succeeded)
        .await;
    let end = soak_end(&staged);
    let soaking = production.verified("upf", "Soaking").await;
    assert!(
        production
            .deployments
            .get_opt("upf")
            .await
            .unwrap()
            .is_none()
    );
    let message = &condition(&soaking, "Verified").unwrap().message;
    assert!(message.contains(&format!("must for {SOAK}")), "{message}");
    let first_delay = rollout_after(&production, "1.0.0", end).await;
    production.ready_on("upf", "1.0.0").await;
    let staged_name = staged.metadata.name.clone().unwrap();
    assert_evidence(&production, &staging, &staged_name).await;
    production.verified("upf", "VerifiedUpstream").await;

    // A new Stack version flows staging → production on its own. Production
    // waits as pending, not failed; the operator is killed in the middle of
    // the soak and restarted: the gate neither opens early nor forgets.
    staging.apply_stack("1.1.0", "lab").await;
    production.apply_stack("1.1.0", "edge-1").await;
    staging.ready_on("upf", "1.1.0").await;
    let held = production
        .function_until("upf", "held on 1.0.0 by the gate", |nf| {
            condition(nf, "Verified").is_some_and(|c| c.status == "False" && c.reason == "Soaking")
        })
        .await;
    assert_eq!(runs_on(&held).as_deref(), Some("1.0.0"));
    // The Stack's adoption of 1.1.0 counts it as pending, never failed.
    wait_for(
        DEADLINE,
        "production's adoption of 1.1.0 to wait on upf",
        || async {
            let stack: Stack = production
                .stacks
                .get("edge")
                .await
                .map_err(|e| e.to_string())?;
            let rollout = stack.status.and_then(|s| s.rollout);
            match &rollout {
                Some(r) if r.version == "1.1.0" && r.pending == 1 && r.failed.is_empty() => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    operator.kill();
    operator.wait_exit(Duration::from_secs(10)).await;
    let mut operator = Operator::start_with(staging.name(), &env);
    let staged = staging.current_record("upf").await;
    let staged = staging
        .record_until(&staged.metadata.name.unwrap(), Outcome::Succeeded)
        .await;
    let second_delay = rollout_after(&production, "1.1.0", soak_end(&staged)).await;
    production.ready_on("upf", "1.1.0").await;
    assert_evidence(
        &production,
        &staging,
        &staged.metadata.name.clone().unwrap(),
    )
    .await;

    // A later rollout of the same artifact fails in staging (a new
    // configuration whose pod the namespace's quota does not admit):
    // production's verification is revoked, and its next rollout of it waits.
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota",
                       "metadata": {"name": "no-more-pods"}, "spec": {"hard": {"pods": "1"}}});
    let quotas: Api<k8s_openapi::api::core::v1::ResourceQuota> = staging.ns.api();
    quotas
        .create(
            &PostParams::default(),
            &serde_json::from_value(quota).unwrap(),
        )
        .await
        .expect("create the quota");
    let reconfigured = json!({"config": {"mode": "fast"}});
    staging
        .apply_function("upf", upf("1.0.0", reconfigured.clone()))
        .await;
    let failed = staging
        .function_until("upf", "its new rollout Failed", |nf| {
            condition(nf, "Stalled")
                .is_some_and(|c| c.status == "True" && c.reason == "RolloutFailed")
        })
        .await;
    let failed_record = failed.status.unwrap().deployed_with.unwrap().record;
    let revoked = production.verified("upf", "VerificationRevoked").await;
    let message = &condition(&revoked, "Verified").unwrap().message;
    assert!(message.contains(&failed_record), "{message}");
    assert!(
        condition(&revoked, "Ready").is_some_and(|c| c.status == "True"),
        "what runs keeps running, Ready: {:?}",
        revoked.status
    );
    let records_before = production.record_count("upf").await;
    let mut gate_and_change = upf("1.0.0", reconfigured);
    gate_and_change["promotion"] = gate["promotion"].clone();
    production.apply_function("upf", gate_and_change).await;
    let held = production
        .function_until(
            "upf",
            "its reconfiguration held by the revoked gate",
            |nf| {
                super::observed(nf)
                    && condition(nf, "Ready")
                        .is_some_and(|c| c.status == "False" && c.reason == "VerificationRevoked")
            },
        )
        .await;
    assert_eq!(runs_on(&held).as_deref(), Some("1.1.0"));
    assert_eq!(
        production.record_count("upf").await,
        records_before,
        "nothing new rolled out"
    );

    eprintln!(
        "promotion: production rolled out {first_delay:.2}s after the end of the first soak, \
         {second_delay:.2}s after the second (the operator was killed and restarted during it); \
         resync 10m"
    );
    operator.assert_running();
    drop(operator);
    staging.ns.cleanup().await;
    production.ns.cleanup().await;
}

#[tokio::test]
async fn a_gate_that_cannot_decide_stays_shut() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let production = Env::new(TestNamespace::create(&client, "promotion-shut").await);
    let mut operator = Operator::start(production.name());
    production.apply_stack("1.0.0", "edge-1").await;

    // The kubeConfig Secret of the upstream cluster is missing, then holds
    // no kubeconfig: unreachable, named, fail closed.
    let remote = json!({"promotion": {"requireVerifiedIn": [
        {"namespace": "staging", "soak": "1m",
         "kubeConfig": {"secretRef": {"name": "staging-kubeconfig"}}},
    ]}});
    production.apply_function("upf", upf("1.0.0", remote)).await;
    let unreachable = production.verified("upf", "UpstreamUnreachable").await;
    let message = &condition(&unreachable, "Verified").unwrap().message;
    assert!(message.contains("staging-kubeconfig"), "{message}");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = production.ns.api();
    let garbage = "token: not-a-kubeconfig-s3cr3t";
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "staging-kubeconfig"},
                "stringData": {"value": garbage},
            }))
            .unwrap(),
        )
        .await
        .expect("create the Secret");
    let started = Instant::now();
    let still = wait_for(DEADLINE, "the gate to read the new Secret", || async {
        let nf = production
            .functions
            .get("upf")
            .await
            .map_err(|e| e.to_string())?;
        let c = condition(&nf, "Verified").cloned().ok_or("no Verified")?;
        if c.reason == "UpstreamUnreachable" && c.message != *message {
            Ok(c)
        } else {
            Err(format!("{c:?}"))
        }
    })
    .await;
    assert!(
        !still.message.contains("s3cr3t"),
        "a credential in status: {}",
        still.message
    );
    assert!(
        production
            .deployments
            .get_opt("upf")
            .await
            .unwrap()
            .is_none()
    );
    eprintln!(
        "promotion: a new kubeConfig Secret was read {:.1?} after it was created",
        started.elapsed()
    );
    let logs = operator.logs();
    assert!(
        !logs.contains("s3cr3t"),
        "a credential in the operator's log"
    );

    // A tag-only image cannot be verified: Stalled, naming the field.
    let tagged = json!({"image": "registry.example/amf:1.0.0", "promotion": {"requireVerifiedIn": [
        {"namespace": "staging"},
    ]}});
    let mut spec = upf("1.0.0", tagged);
    spec["image"] = json!("registry.example/amf:1.0.0");
    production.apply_function("amf", spec).await;
    let stalled = production
        .function_until("amf", "Stalled ImageNotPinned", |nf| {
            condition(nf, "Stalled")
                .is_some_and(|c| c.status == "True" && c.reason == "ImageNotPinned")
        })
        .await;
    let message = &condition(&stalled, "Stalled").unwrap().message;
    assert!(message.contains("spec.image"), "{message}");
    assert!(
        production
            .deployments
            .get_opt("amf")
            .await
            .unwrap()
            .is_none()
    );

    operator.assert_running();
    drop(operator);
    production.ns.cleanup().await;
}
