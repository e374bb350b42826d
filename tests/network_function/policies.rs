//! How a function moves: `updatePolicy: Manual` holds the recorded Stack
//! version until the function's spec changes; a rollback (re-applying an
//! earlier spec) is a new rollout with a new record.

use kube::ResourceExt;
use serde_json::json;
use strata::api::{DeploymentRecord, Outcome};

use super::{Fixture, condition_text, pinned_image, text};

fn outcome(record: &DeploymentRecord) -> Outcome {
    record
        .status
        .as_ref()
        .map(|s| s.outcome)
        .unwrap_or_default()
}

#[tokio::test]
async fn manual_policy_holds_the_stack_version_until_the_spec_changes() {
    if !strata_testkit::plane_available() {
        return;
    }
    let t = Fixture::start("nf-manual").await;
    t.apply_stack("core", "1.0.0", json!({})).await;
    let spec = |mode: &str| {
        json!({
            "version": "4.1.0",
            "image": pinned_image("smf"),
            "stackRef": {"name": "core", "updatePolicy": "Manual"},
            "env": [{"name": "MODE", "value": mode}],
        })
    };
    t.apply_function("smf", spec("a")).await;
    let smf = t.function_ready_on("smf", "1.0.0").await;
    let first = smf.status.unwrap().deployed_with.unwrap();
    let before = t.deployment("smf").await.expect("smf's Deployment");

    // The stack moves; the function holds, and says why.
    t.apply_stack("core", "1.1.0", json!({})).await;
    t.stack_ready("core", "1.1.0").await;
    let held = t
        .function_condition("smf", "StackResolved", "HeldByPolicy")
        .await;
    assert_eq!(
        condition_text(&held, "StackResolved"),
        text(
            "True",
            "HeldByPolicy",
            "held on stack core 1.0.0 by updatePolicy Manual; the stack is at 1.1.0 (change the function's spec to adopt it)"
        )
    );
    assert_eq!(
        condition_text(&held, "Ready").map(|(s, r, _)| (s, r)),
        Some(("True".into(), "RolledOut".into()))
    );
    assert_eq!(held.status.unwrap().deployed_with, Some(first.clone()));
    assert_eq!(t.records_of("smf").await.len(), 1);
    let after = t.deployment("smf").await.expect("smf's Deployment");
    assert_eq!(after.metadata.generation, before.metadata.generation);
    assert_eq!(after.spec.template, before.spec.template);

    // A change of the function's own spec adopts the stack's current version.
    t.apply_function("smf", spec("b")).await;
    let smf = t.function_ready_on("smf", "1.1.0").await;
    let second = smf.status.clone().unwrap().deployed_with.unwrap();
    assert_ne!(second.record, first.record);
    assert_eq!(
        condition_text(&smf, "StackResolved").map(|(s, r, _)| (s, r)),
        Some(("True".into(), "Resolved".into()))
    );
    let records = t.records_of("smf").await;
    assert_eq!(
        records
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>(),
        [first.record.clone(), second.record.clone()]
    );
    assert_eq!(
        records[1].spec.previous_record.as_deref(),
        Some(first.record.as_str())
    );
    assert_eq!(
        (outcome(&records[0]), outcome(&records[1])),
        (Outcome::Superseded, Outcome::Succeeded)
    );
    t.finish().await;
}

#[tokio::test]
async fn rollback_by_reapplying_an_earlier_spec_is_a_new_record() {
    if !strata_testkit::plane_available() {
        return;
    }
    let t = Fixture::start("nf-rollback").await;
    t.apply_stack("core", "1.0.0", json!({})).await;
    let spec = |version: &str, level: &str| {
        json!({
            "version": version,
            // One image per release, pinned: "1.1.0" -> sha256:1100000...0
            "image": format!("registry.example/pcf@sha256:{:0<64}", version.replace('.', "")),
            "stackRef": {"name": "core"},
            "config": {"pcf.yaml": format!("log: {level}\n")},
        })
    };
    t.apply_function("pcf", spec("1.0.0", "info")).await;
    let v1 = t
        .function_until("pcf", "Ready at 1.0.0", |nf| {
            super::ready_on(nf, "1.0.0") && deployed_version(nf) == Some("1.0.0")
        })
        .await;
    let first = v1.status.unwrap().deployed_with.unwrap();
    let template_v1 = t.deployment("pcf").await.unwrap().spec.template;

    t.apply_function("pcf", spec("1.1.0", "debug")).await;
    let v2 = t
        .function_until("pcf", "Ready at 1.1.0", |nf| {
            super::ready_on(nf, "1.0.0") && deployed_version(nf) == Some("1.1.0")
        })
        .await;
    let second = v2.status.unwrap().deployed_with.unwrap();
    assert_ne!(second.config_digest, first.config_digest);

    // Rollback: the earlier spec, restated.
    t.apply_function("pcf", spec("1.0.0", "info")).await;
    let v3 = t
        .function_until("pcf", "Ready at 1.0.0 again", |nf| {
            super::ready_on(nf, "1.0.0") && deployed_version(nf) == Some("1.0.0")
        })
        .await;
    let status = v3.status.unwrap();
    let third = status.deployed_with.clone().unwrap();
    assert_eq!(
        (
            &third.version,
            &third.image,
            &third.config_digest,
            &third.stack
        ),
        (
            &first.version,
            &first.image,
            &first.config_digest,
            &first.stack
        ),
        "the rollback deploys what the first rollout deployed"
    );
    assert!(
        third.record != first.record && third.record != second.record,
        "a rollback is a new rollout with its own record: {third:?}"
    );
    assert_eq!(
        status.history.iter().map(|h| &h.record).collect::<Vec<_>>(),
        [&second.record, &first.record]
    );
    let records = t.records_of("pcf").await;
    assert_eq!(
        records
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>(),
        [
            first.record.clone(),
            second.record.clone(),
            third.record.clone()
        ]
    );
    assert_eq!(
        records
            .iter()
            .map(|r| r.spec.previous_record.clone())
            .collect::<Vec<_>>(),
        [
            None,
            Some(first.record.clone()),
            Some(second.record.clone())
        ]
    );
    assert_eq!(
        records.iter().map(outcome).collect::<Vec<_>>(),
        [Outcome::Superseded, Outcome::Superseded, Outcome::Succeeded]
    );
    assert_eq!(records[2].spec.version, "1.0.0");
    // The pods run the first rollout's template again (its ConfigMap is reused).
    let template_v3 = t.deployment("pcf").await.unwrap().spec.template;
    assert_eq!(template_v3, template_v1);
    t.finish().await;
}

fn deployed_version(nf: &strata::api::NetworkFunction) -> Option<&str> {
    nf.status
        .as_ref()?
        .deployed_with
        .as_ref()
        .map(|d| d.version.as_str())
}

/// Each config change rolls out a new content-named ConfigMap; the one of
/// a rollout that left the history (`historyLimit`) is deleted once the
/// next rollout succeeds, so a function keeps `historyLimit` + 1 of them.
#[tokio::test]
async fn configurations_that_left_the_history_are_deleted() {
    if !strata_testkit::plane_available() {
        return;
    }
    let t = Fixture::start("nf-configs").await;
    t.apply_stack("core", "1.0.0", json!({})).await;
    let spec = |version: &str| {
        json!({
            "version": version,
            "image": pinned_image("pcf"),
            "stackRef": {"name": "core"},
            "historyLimit": 1,
            "config": {"pcf.yaml": format!("release: {version}\n")},
        })
    };
    let mut digests = Vec::new();
    for version in ["1.0.0", "1.1.0", "1.2.0", "1.3.0"] {
        t.apply_function("pcf", spec(version)).await;
        let nf = t
            .function_until("pcf", &format!("Ready at {version}"), |nf| {
                super::ready_on(nf, "1.0.0") && deployed_version(nf) == Some(version)
            })
            .await;
        let deployed = nf.status.unwrap().deployed_with.unwrap();
        digests.push(deployed.config_digest);
    }
    let name =
        |digest: &String| format!("pcf-config-{}", &digest.trim_start_matches("sha256:")[..10]);
    // The current configuration and the one of the history's entry.
    let mut kept = vec![name(&digests[2]), name(&digests[3])];
    kept.sort();
    strata_testkit::wait_for(
        std::time::Duration::from_secs(30),
        "only the ConfigMaps of the current rollout and of the history",
        || async {
            let mut names: Vec<String> = super::children::children_config_maps(&t, "pcf")
                .await
                .iter()
                .map(ResourceExt::name_any)
                .collect();
            names.sort();
            (names == kept).then_some(()).ok_or(format!("{names:?}"))
        },
    )
    .await;
    // Every rollout still has its record.
    assert_eq!(t.records_of("pcf").await.len(), 4);
    t.finish().await;
}
