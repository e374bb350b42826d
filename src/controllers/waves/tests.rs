//! Waves, read from the consumers' statuses.

use super::*;

const OLD: Target<'static> = Target {
    version: "1.4.0",
    digest: "sha256:a",
};
const NEW: Target<'static> = Target {
    version: "1.5.0",
    digest: "sha256:b",
};

/// Where a test consumer is.
#[derive(Clone, Copy)]
enum On {
    /// Ready on the old revision.
    Old,
    /// Rolled out onto the new revision, not Ready yet.
    Moving,
    /// Ready on the new revision.
    New,
    /// Its move onto the new revision failed.
    Failed,
}

fn consumer(name: &str, wave: &str, on: On) -> Arc<NetworkFunction> {
    let revision = |t: &Target<'_>| {
        format!(
            "{{version: 2.0.0, image: 'i@sha256:0', imagePinned: true, configDigest: c, stack: {{name: edge, version: {}, digest: '{}'}}, record: {name}-{}, deployedAt: '2026-11-20T10:00:00Z'",
            t.version, t.digest, t.version
        )
    };
    let (deployed, ready, stalled) = match on {
        On::Old => (format!("{}, readyAt: x}}", revision(&OLD)), true, false),
        On::New => (format!("{}, readyAt: x}}", revision(&NEW)), true, false),
        On::Moving => (format!("{}}}", revision(&NEW)), false, false),
        On::Failed => (format!("{}}}", revision(&NEW)), false, true),
    };
    let history = match on {
        On::Old => "[]".to_string(),
        _ => format!("[{}, readyAt: x}}]", revision(&OLD)),
    };
    let mut conditions = vec![format!(
        "{{type: Ready, status: '{}', reason: r, message: m, lastTransitionTime: '2026-11-20T10:00:00Z'}}",
        if ready { "True" } else { "False" }
    )];
    if stalled {
        conditions.push("{type: Stalled, status: 'True', reason: RolloutFailed, message: 'the rollout exceeded its progress deadline', lastTransitionTime: '2026-11-20T10:00:00Z'}".into());
    }
    Arc::new(
        serde_yaml::from_str(&format!(
            "metadata: {{name: {name}, namespace: ns, generation: 1, labels: {{wave: {wave}}}}}\n\
             spec: {{version: 2.0.0, image: 'i@sha256:0', stackRef: {{name: edge, version: '^1.4'}}}}\n\
             status: {{observedGeneration: 1, deployedWith: {deployed}, history: {history}, conditions: [{}]}}",
            conditions.join(", ")
        ))
        .unwrap(),
    )
}

fn rollout(yaml: &str) -> ConsumerRollout {
    serde_yaml::from_str(yaml).unwrap()
}

fn waves() -> ConsumerRollout {
    rollout(
        "{maxConcurrent: 2, steps: [{name: canary, selector: {matchLabels: {wave: canary}}, maxConcurrent: 1}, {name: rest}]}",
    )
}

fn step_names(plan: &Plan) -> Vec<Option<&str>> {
    plan.steps.iter().map(|s| s.name.as_deref()).collect()
}

#[test]
fn each_consumer_stands_where_its_own_status_says() {
    assert_eq!(
        standing(&consumer("a", "x", On::Old), &NEW),
        Standing::Pending
    );
    assert_eq!(
        standing(&consumer("a", "x", On::Moving), &NEW),
        Standing::Moving
    );
    assert_eq!(
        standing(&consumer("a", "x", On::New), &NEW),
        Standing::Adopted
    );
    let Standing::Failed(failure) = standing(&consumer("a", "x", On::Failed), &NEW) else {
        panic!("a failed move");
    };
    assert_eq!(
        (failure.name.as_str(), failure.record.as_str()),
        ("a", "a-1.5.0")
    );
    assert_eq!(failure.reason, "the rollout exceeded its progress deadline");

    let mut manual = (*consumer("m", "x", On::Old)).clone();
    manual.spec.stack_ref.update_policy = UpdatePolicy::Manual;
    assert_eq!(standing(&manual, &NEW), Standing::Excluded);
    let mut pinned = (*consumer("p", "x", On::Old)).clone();
    pinned.spec.stack_ref.version = "~1.4".into();
    assert_eq!(
        standing(&pinned, &NEW),
        Standing::Excluded,
        "1.5.0 is not ~1.4"
    );

    let mut new = (*consumer("n", "x", On::Old)).clone();
    new.status = None;
    assert_eq!(standing(&new, &NEW), Standing::Excluded, "never deployed");
    let mut stuck = (*consumer("s", "x", On::Old)).clone();
    let conditions = &mut stuck.status.as_mut().unwrap().conditions;
    conditions.push(serde_yaml::from_str("{type: Stalled, status: 'True', reason: DependencyCycle, message: m, lastTransitionTime: '2026-11-20T10:00:00Z'}").unwrap());
    assert_eq!(
        standing(&stuck, &NEW),
        Standing::Excluded,
        "stalled by its own spec"
    );

    // A failure of the function's own change (not only its stack moved) is
    // not a failed adoption.
    let mut own = (*consumer("o", "x", On::Failed)).clone();
    own.status.as_mut().unwrap().history[0].version = "1.9.0".into();
    assert_eq!(standing(&own, &NEW), Standing::Excluded);
}

#[test]
fn consumers_join_the_first_step_that_selects_them() {
    let consumers = [
        consumer("a", "canary", On::Old),
        consumer("b", "other", On::Old),
        consumer("c", "canary", On::Old),
    ];
    let plan = plan(&waves(), &consumers, &NEW).unwrap();
    assert_eq!(step_names(&plan), [Some("canary"), Some("rest")]);
    assert_eq!(plan.step_of("a"), Some(0));
    assert_eq!(plan.step_of("c"), Some(0));
    assert_eq!(plan.step_of("b"), Some(1));
    assert_eq!(plan.current, Some(0));

    let only_selected =
        rollout("{steps: [{name: canary, selector: {matchLabels: {wave: canary}}}]}");
    let plan = super::plan(&only_selected, &consumers, &NEW).unwrap();
    assert_eq!(
        step_names(&plan),
        [Some("canary"), None],
        "consumers no step selects move after the last step"
    );
    assert_eq!(plan.step_of("b"), Some(1));
}

#[test]
fn a_step_starts_only_when_every_consumer_before_it_runs_the_version_and_is_ready() {
    let plan_of = |canary: On| {
        let consumers = [consumer("a", "canary", canary), consumer("b", "x", On::Old)];
        super::plan(&waves(), &consumers, &NEW).unwrap()
    };
    assert_eq!(plan_of(On::Old).current, Some(0));
    assert_eq!(plan_of(On::Moving).current, Some(0), "moving is not done");
    assert_eq!(plan_of(On::Failed).current, Some(0), "failed is not done");
    assert_eq!(plan_of(On::New).current, Some(1));
    let status = plan_of(On::New).status("1.5.0");
    assert_eq!(
        (
            status.step.as_deref(),
            status.phase,
            status.adopted,
            status.pending
        ),
        (Some("rest"), AdoptionPhase::Progressing, 1, 1)
    );
}

#[test]
fn more_failures_than_the_budget_halt_the_adoption() {
    let consumers = [
        consumer("a", "canary", On::Failed),
        consumer("b", "x", On::Old),
        consumer("c", "x", On::Old),
        consumer("d", "x", On::Old),
    ];
    let plan = super::plan(&waves(), &consumers, &NEW).unwrap();
    assert!(plan.halted(), "maxFailures 0 by default");
    let status = plan.status("1.5.0");
    assert_eq!(status.phase, AdoptionPhase::Halted);
    assert_eq!(status.failed.len(), 1);
    let message = plan.halt_message("edge", "1.5.0");
    assert!(
        message.contains("a (record a-1.5.0: the rollout exceeded its progress deadline)"),
        "{message}"
    );

    let tolerant = rollout("{maxFailures: 1}");
    assert!(!super::plan(&tolerant, &consumers, &NEW).unwrap().halted());
    let percent = rollout("{maxFailures: '25%'}");
    assert!(
        !super::plan(&percent, &consumers, &NEW).unwrap().halted(),
        "25% of 4 is 1"
    );
    let below = rollout("{maxFailures: '24%'}");
    assert!(
        super::plan(&below, &consumers, &NEW).unwrap().halted(),
        "24% of 4 rounds down to 0"
    );
}

#[test]
fn the_adoption_completes_when_every_counted_consumer_is_ready_on_it() {
    let mut manual = (*consumer("m", "x", On::Old)).clone();
    manual.spec.stack_ref.update_policy = UpdatePolicy::Manual;
    let consumers = [
        consumer("a", "canary", On::New),
        consumer("b", "x", On::New),
        Arc::new(manual),
    ];
    let plan = super::plan(&waves(), &consumers, &NEW).unwrap();
    assert_eq!(plan.current, None);
    let status = plan.status("1.5.0");
    assert_eq!(
        (status.phase, status.step, status.adopted, status.pending),
        (AdoptionPhase::Complete, None, 2, 0)
    );
}

#[test]
fn a_selector_that_is_not_one_is_refused_by_field() {
    let bad = rollout(
        "{steps: [{name: canary, selector: {matchExpressions: [{key: wave, operator: Near, values: [x]}]}}]}",
    );
    let error = plan(&bad, &[consumer("a", "x", On::Old)], &NEW).unwrap_err();
    assert_eq!(error.reason(), "InvalidSpec");
    assert!(
        error
            .to_string()
            .starts_with("spec.consumerRollout.steps[0].selector: "),
        "{error}"
    );
}

#[test]
fn budgets() {
    let pct = |s: &str| IntOrString::String(s.into());
    assert_eq!(concurrency_budget(&pct("25%"), 10), 3, "rounds up");
    assert_eq!(concurrency_budget(&pct("25%"), 0), 1, "never zero");
    assert_eq!(concurrency_budget(&IntOrString::Int(2), 10), 2);
    assert_eq!(failure_budget(&pct("10%"), 19), 1, "rounds down");
    assert_eq!(failure_budget(&pct("0%"), 100), 0);
    assert_eq!(failure_budget(&IntOrString::Int(3), 1), 3);
}

#[test]
fn a_consumer_asking_to_move_counts_even_when_its_status_says_it_never_ran() {
    // Its first rollout was started by a killed predecessor that never wrote
    // its status: the status reads as never ran, the records say it runs
    // the old revision.
    let mut unwritten = (*consumer("u", "x", On::Old)).clone();
    unwritten.status = None;
    let consumers = [consumer("a", "x", On::New), Arc::new(unwritten)];
    let mut plan = super::plan(&rollout("{maxConcurrent: 1}"), &consumers, &NEW).unwrap();
    assert_eq!(
        plan.current, None,
        "from the statuses alone: nothing left to adopt"
    );
    plan.asking("u");
    assert_eq!(
        plan.current,
        Some(0),
        "the asking consumer keeps the adoption open"
    );
    assert_eq!(plan.steps[0].members.get("u"), Some(&Standing::Pending));
    assert!(!plan.steps[0].done());
}
