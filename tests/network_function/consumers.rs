//! Staged adoption: the consumers of a Stack move to its new version at most
//! `consumerRollout.maxConcurrent` at a time.
//!
//! The test watches every function of the namespace while the Stack moves. A
//! watch delivers each status write in the order the API server committed it,
//! so the number of consumers "moving" (on the new version, not yet Ready
//! there) is computed for every state the functions went through, not just
//! at polling instants.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use futures::StreamExt;
use kube::ResourceExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use strata::api::NetworkFunction;

use super::{DEADLINE, Fixture, condition, pinned_image, ready_on};
use strata_testkit::wait_for;

const CONSUMERS: usize = 10;
const MAX_CONCURRENT: usize = 2;

#[tokio::test]
async fn consumers_adopt_a_new_stack_version_at_most_max_concurrent_at_a_time() {
    if !strata_testkit::plane_available() {
        return;
    }
    let t = Fixture::start("nf-consumers").await;
    let rollout = json!({"consumerRollout": {"maxConcurrent": MAX_CONCURRENT}});
    t.apply_stack("fleet", "1.0.0", rollout.clone()).await;
    let names: Vec<String> = (0..CONSUMERS).map(|i| format!("cnf-{i}")).collect();
    for name in &names {
        t.apply_function(
            name,
            json!({"version": "1.0.0", "image": pinned_image(name), "stackRef": {"name": "fleet"}}),
        )
        .await;
    }
    for name in &names {
        t.function_ready_on(name, "1.0.0").await;
    }

    // Watch from here on; move the stack once the watch has listed everything.
    let mut stream: Watch = watcher::watcher(t.functions.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    let deadline = Instant::now() + DEADLINE;
    let mut functions: BTreeMap<String, NetworkFunction> = BTreeMap::new();
    let mut listing = BTreeMap::new();
    loop {
        match next(&mut stream, deadline, "the initial list of the functions").await {
            Event::Init => listing.clear(),
            Event::InitApply(nf) => {
                listing.insert(nf.name_any(), nf);
            }
            Event::InitDone => break,
            other => panic!("unexpected event before the initial list: {other:?}"),
        }
    }
    functions.append(&mut listing);
    assert_eq!(functions.len(), CONSUMERS);
    let started = Instant::now();
    // Generous: up to five waves of two rollouts, each waiting for pods.
    let deadline = started + 2 * DEADLINE;
    t.apply_stack("fleet", "1.1.0", rollout).await;

    let mut max_moving = 0;
    let mut observations = 0;
    let mut queued: BTreeMap<String, String> = BTreeMap::new();
    let mut moving_trace: Vec<usize> = Vec::new();
    loop {
        let moving: BTreeSet<&str> = functions
            .values()
            .filter(|nf| {
                nf.status
                    .as_ref()
                    .and_then(|s| s.deployed_with.as_ref())
                    .is_some_and(|d| d.stack.version == "1.1.0" && d.ready_at.is_none())
            })
            .map(|nf| nf.metadata.name.as_deref().unwrap_or_default())
            .collect();
        observations += 1;
        if moving_trace.last() != Some(&moving.len()) {
            moving_trace.push(moving.len());
        }
        assert!(
            moving.len() <= MAX_CONCURRENT,
            "{} consumers are moving at once ({moving:?}); maxConcurrent is {MAX_CONCURRENT}",
            moving.len()
        );
        max_moving = max_moving.max(moving.len());
        for nf in functions.values() {
            if let Some(c) = condition(nf, "Reconciling")
                && c.status == "True"
                && c.reason == "Queued"
            {
                queued.insert(nf.name_any(), c.message.clone());
            }
        }
        if functions.values().all(|nf| ready_on(nf, "1.1.0")) {
            break;
        }
        let what = format!(
            "every consumer Ready on 1.1.0; moving over time: {moving_trace:?}; not there: {:?}",
            functions
                .values()
                .filter(|nf| !ready_on(nf, "1.1.0"))
                .map(|nf| nf.name_any())
                .collect::<Vec<_>>()
        );
        match next(&mut stream, deadline, &what).await {
            Event::Apply(nf) | Event::InitApply(nf) => {
                functions.insert(nf.name_any(), nf);
            }
            Event::Delete(nf) => panic!("{} was deleted", nf.name_any()),
            Event::Init | Event::InitDone => {}
        }
    }
    eprintln!(
        "all {CONSUMERS} consumers on 1.1.0 after {:?}; {observations} observations; \
         consumers moving over time: {moving_trace:?}; queued at some point: {}",
        started.elapsed(),
        queued.len()
    );
    assert_eq!(
        max_moving, MAX_CONCURRENT,
        "the budget is used, not only respected: {moving_trace:?}"
    );
    assert!(
        !queued.is_empty(),
        "some consumers must have reported Reconciling=True with reason Queued"
    );
    let budget_message = format!(
        "consumers are moving now and consumerRollout.maxConcurrent allows {MAX_CONCURRENT}"
    );
    for (name, message) in &queued {
        assert!(
            message.starts_with("queued to adopt stack fleet 1.1.0: ")
                && message.ends_with(&format!("of {CONSUMERS} {budget_message}")),
            "{name}: {message}"
        );
    }

    // Each consumer has a second record, on 1.1.0, following its first.
    for name in &names {
        let records = t.records_of(name).await;
        assert_eq!(
            records
                .iter()
                .map(|r| r.spec.stack.version.as_str())
                .collect::<Vec<_>>(),
            ["1.0.0", "1.1.0"],
            "{name}"
        );
        assert_eq!(
            records[1].spec.previous_record.as_deref(),
            Some(records[0].name_any().as_str())
        );
    }
    // The counts are written at most once a second per stack: they follow.
    t.stack_ready("fleet", "1.1.0").await;
    wait_for(
        DEADLINE,
        "the stack to count every consumer on 1.1.0",
        || async {
            let stack = t.stacks.get("fleet").await.map_err(|e| e.to_string())?;
            let consumers = stack.status.and_then(|s| s.consumers).unwrap_or_default();
            let counts = (consumers.total, consumers.on_current_version);
            if counts == (CONSUMERS as i32, CONSUMERS as i32) {
                Ok(())
            } else {
                Err(format!("(total, onCurrentVersion) = {counts:?}"))
            }
        },
    )
    .await;
    drop(stream);
    t.finish().await;
}

/// The watch of the namespace's functions.
type Watch = futures::stream::BoxStream<'static, watcher::Result<Event<NetworkFunction>>>;

/// The next watch event, before `deadline`. Watch errors are retried (with
/// backoff): a restarted watch lists again, and nothing is lost.
async fn next(stream: &mut Watch, deadline: Instant, what: &str) -> Event<NetworkFunction> {
    loop {
        match tokio::time::timeout_at(deadline.into(), stream.next()).await {
            Ok(Some(Ok(event))) => return event,
            Ok(Some(Err(e))) => eprintln!("watching the functions failed, retrying: {e}"),
            Ok(None) => panic!("the watch of the functions ended"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}
