//! `dependsOn`: nothing is deployed until every dependency is Ready at a
//! satisfying version; a cycle is Stalled until it is broken.

use serde_json::json;

use super::{Fixture, assert_prompt, condition_text, pinned_image, ready_on, text};

fn spec(version: &str, depends_on: serde_json::Value) -> serde_json::Value {
    json!({
        "version": version,
        "image": pinned_image("nf"),
        "stackRef": {"name": "base"},
        "dependsOn": depends_on,
    })
}

#[tokio::test]
async fn depends_on_waits_for_a_ready_satisfying_dependency() {
    if !strata_testkit::plane_available() {
        return;
    }
    let t = Fixture::start("nf-depends-on").await;
    // b needs a at >=2.0. Nothing else exists yet, not even the stack.
    t.apply_function(
        "b",
        spec("1.0.0", json!([{"name": "a", "version": ">=2.0"}])),
    )
    .await;
    // a is missing.
    let missing = "dependency a does not exist".to_string();
    blocked(&t, &missing).await;
    t.events_about("b", "Warning", "DependencyNotReady", |n| n == missing)
        .await;

    // a exists, but is not Ready (its stack does not exist yet).
    t.apply_function("a", spec("1.0.0", json!([]))).await;
    t.function_condition("a", "StackResolved", "StackNotFound")
        .await;
    blocked(
        &t,
        "dependency a is at no version and not Ready; it must be Ready at >=2.0",
    )
    .await;

    // a is Ready, at a version that does not satisfy b.
    t.apply_stack("base", "1.0.0", json!({})).await;
    t.function_ready_on("a", "1.0.0").await;
    blocked(
        &t,
        "dependency a is at 1.0.0 and Ready; it must be Ready at >=2.0",
    )
    .await;

    // a is Ready at 2.0.0: b deploys, after a became Ready there.
    t.apply_function("a", spec("2.0.0", json!([]))).await;
    let a = t
        .function_until("a", "Ready at 2.0.0", |nf| {
            ready_on(nf, "1.0.0")
                && nf
                    .status
                    .as_ref()
                    .and_then(|s| s.deployed_with.as_ref())
                    .is_some_and(|d| d.version == "2.0.0")
        })
        .await;
    let b = t.function_ready_on("b", "1.0.0").await;
    assert_eq!(
        condition_text(&b, "DependenciesReady"),
        text(
            "True",
            "DependenciesReady",
            "every dependency is Ready at a satisfying version"
        )
    );
    let a_ready = a.status.unwrap().deployed_with.unwrap().ready_at.unwrap();
    let b_started = b.status.unwrap().deployed_with.unwrap().deployed_at;
    assert_prompt(
        "b rolls out once a is Ready at 2.0.0, not before",
        &a_ready,
        &b_started,
        5,
    );
    assert_eq!(t.records_of("b").await.len(), 1);
    t.finish().await;
}

/// Waits until b reports that it waits for `why`, and checks that nothing of
/// b is deployed.
async fn blocked(t: &Fixture, why: &str) {
    let b = t
        .function_until("b", &format!("DependenciesReady=False: {why}"), |nf| {
            super::observed(nf)
                && condition_text(nf, "DependenciesReady").is_some_and(|c| c.2 == why)
        })
        .await;
    assert_eq!(
        condition_text(&b, "DependenciesReady"),
        text("False", "DependencyNotReady", why)
    );
    assert_eq!(
        condition_text(&b, "Reconciling"),
        text("True", "DependencyNotReady", &format!("waiting: {why}"))
    );
    assert_eq!(
        condition_text(&b, "Ready").map(|(s, r, _)| (s, r)),
        Some(("False".into(), "DependencyNotReady".into()))
    );
    assert!(b.status.unwrap().deployed_with.is_none());
    assert!(t.deployment("b").await.is_none(), "b must not be deployed");
    assert!(t.records_of("b").await.is_empty());
}

#[tokio::test]
async fn dependency_cycle_is_stalled_until_broken() {
    if !strata_testkit::plane_available() {
        return;
    }
    let t = Fixture::start("nf-cycle").await;
    t.apply_stack("base", "1.0.0", json!({})).await;
    t.apply_function("x", spec("1.0.0", json!([{"name": "y"}])))
        .await;
    t.apply_function("y", spec("1.0.0", json!([{"name": "x"}])))
        .await;
    for (name, cycle) in [("x", "x -> y -> x"), ("y", "y -> x -> y")] {
        let nf = t
            .function_condition(name, "Stalled", "DependencyCycle")
            .await;
        let message = format!("dependency cycle {cycle}; remove one of these dependsOn entries");
        assert_eq!(
            condition_text(&nf, "Stalled"),
            text("True", "DependencyCycle", &message)
        );
        assert_eq!(
            condition_text(&nf, "Ready"),
            text("False", "DependencyCycle", &message)
        );
        assert_eq!(condition_text(&nf, "Reconciling"), None);
        assert!(
            t.deployment(name).await.is_none(),
            "{name} must not be deployed"
        );
        t.events_about(name, "Warning", "DependencyCycle", |n| n == message)
            .await;
    }

    // Breaking the cycle lets both deploy, y first.
    t.apply_function("y", spec("1.0.0", json!([]))).await;
    let y = t.function_ready_on("y", "1.0.0").await;
    let x = t.function_ready_on("x", "1.0.0").await;
    assert_eq!(condition_text(&x, "Stalled"), None);
    let y_ready = y.status.unwrap().deployed_with.unwrap().ready_at.unwrap();
    let x_started = x.status.unwrap().deployed_with.unwrap().deployed_at;
    assert_prompt("x rolls out once y is Ready", &y_ready, &x_started, 5);
    t.finish().await;
}
