//! The ledger: record names, following links, ordering.
use super::*;
use crate::controllers::fixtures::{Answer, context, object, upf};

fn record(name: &str, started_at: &str, previous: Option<&str>) -> DeploymentRecord {
    let mut record = DeploymentRecord::new(
        name,
        DeploymentRecordSpec {
            network_function: FunctionRef::default(),
            version: "1.0.0".into(),
            image: "i".into(),
            stack: Default::default(),
            config_digest: "sha256:c".into(),
            previous_record: previous.map(str::to_string),
            started_at: started_at.into(),
            verified_in: vec![],
        },
    );
    record.metadata.namespace = Some("ns".into());
    record
}

fn names(records: &[DeploymentRecord]) -> Vec<String> {
    records.iter().map(ResourceExt::name_any).collect()
}

#[test]
fn records_of_one_second_are_ordered_by_their_chain() {
    let t = "2026-11-20T10:00:00Z";
    // Names sort in another order than the rollouts happened in.
    let mut records = vec![
        record("upf-c", t, Some("upf-b")),
        record("upf-a", t, Some("upf-d")),
        record("upf-b", t, Some("upf-a")),
        record("upf-d", "2026-11-20T09:59:59Z", None),
    ];
    sort_oldest_first(&mut records);
    assert_eq!(names(&records), ["upf-d", "upf-a", "upf-b", "upf-c"]);
}

#[test]
fn start_time_orders_records_of_another_incarnation() {
    // The function was deleted and created again: a new chain, later.
    let mut records = vec![
        record("upf-new", "2026-11-21T10:00:00Z", None),
        record("upf-old2", "2026-11-20T10:00:05Z", Some("upf-old1")),
        record("upf-old1", "2026-11-20T10:00:00Z", None),
    ];
    sort_oldest_first(&mut records);
    assert_eq!(names(&records), ["upf-old1", "upf-old2", "upf-new"]);
}

fn owned(uid: &str, name: &str, previous: Option<&str>) -> DeploymentRecord {
    let mut record = record(name, "2026-11-20T10:00:00Z", previous);
    record.spec.network_function.uid = uid.into();
    record
}

/// The name the rollout being started would get after `previous`.
fn target_after(previous: Option<&str>) -> String {
    format!("target-after-{}", previous.unwrap_or("none"))
}

fn end(records: &[DeploymentRecord], recorded: Option<&str>) -> (Vec<String>, Option<String>) {
    let end = follow(records, "u1", recorded, target_after);
    (names(&end.unwritten), end.previous)
}

#[test]
fn the_ledger_ends_at_the_status_when_nothing_was_left_unwritten() {
    let records = [owned("u1", "a", None), owned("u1", "b", Some("a"))];
    assert_eq!(end(&records, Some("b")), (vec![], Some("b".into())));
    assert_eq!(end(&[], None), (vec![], None));
}

#[test]
fn records_a_killed_operator_left_unwritten_are_followed() {
    // The status names a; b and c were created by processes killed before
    // they wrote the status.
    let records = [
        owned("u1", "a", None),
        owned("u1", "b", Some("a")),
        owned("u1", "c", Some("b")),
    ];
    assert_eq!(
        end(&records, Some("a")),
        (vec!["b".into(), "c".into()], Some("c".into()))
    );
    // Killed before the first status write.
    assert_eq!(
        end(&records, None),
        (vec!["a".into(), "b".into(), "c".into()], Some("c".into()))
    );
}

#[test]
fn following_stops_at_the_rollout_being_started() {
    // The rollout being started was recorded after b by a killed process.
    let records = [
        owned("u1", "a", None),
        owned("u1", "b", Some("a")),
        owned("u1", "target-after-b", Some("b")),
    ];
    assert_eq!(
        end(&records, Some("a")),
        (vec!["b".into()], Some("b".into()))
    );
}

#[test]
fn records_of_an_earlier_function_of_the_same_name_are_not_followed() {
    let records = [owned("u0", "old", None), owned("u1", "a", None)];
    assert_eq!(end(&records, None), (vec!["a".into()], Some("a".into())));
}

#[test]
fn a_branched_ledger_follows_its_latest_branch() {
    let mut late = owned("u1", "late", Some("a"));
    late.spec.started_at = "2026-11-20T10:00:05Z".into();
    let records = [
        owned("u1", "a", None),
        owned("u1", "early", Some("a")),
        late,
    ];
    assert_eq!(
        end(&records, Some("a")),
        (vec!["late".into()], Some("late".into()))
    );
}

#[test]
fn a_loop_of_records_still_sorts() {
    let t = "2026-11-20T10:00:00Z";
    let mut records = vec![record("a", t, Some("b")), record("b", t, Some("a"))];
    sort_oldest_first(&mut records);
    assert_eq!(records.len(), 2);
}

#[test]
fn at_the_retention_the_oldest_remembered_are_pruned_without_a_list() {
    let ledgers = Ledgers::default();
    // A list found 6 records with a retention of 5: one deleted, the next
    // oldest remembered.
    ledgers.counted("u", Some(5));
    ledgers.oldest_are("u", ["r2", "r3", "r4"].map(String::from));
    assert_eq!(
        ledgers.next_to_prune("u", 5, "r6"),
        None,
        "within retention"
    );
    ledgers.created("u");
    assert_eq!(ledgers.next_to_prune("u", 5, "r6").as_deref(), Some("r2"));
    ledgers.pruned("u", "r2");
    assert_eq!(ledgers.records("u"), Some(5));
    assert_eq!(ledgers.next_to_prune("u", 5, "r6"), None);
    ledgers.created("u");
    assert_eq!(
        ledgers.next_to_prune("u", 5, "r3"),
        None,
        "never the current rollout's record"
    );
    // An unknown count (a record another process made): list again.
    ledgers.counted("u", None);
    ledgers.counted("u", Some(7));
    assert_eq!(ledgers.next_to_prune("u", 5, "r7"), None);
}

#[test]
fn an_outcome_status_carries_no_generation_and_keeps_the_succeeded_window() {
    let condition = |s: &DeploymentRecordStatus, type_: &str| {
        conditions::get(&s.conditions, type_).map(|c| (c.status.clone(), c.observed_generation))
    };
    let mut r = record("upf-a", "2026-11-20T10:00:00Z", None);
    let progressing = outcome_status(&r, Outcome::Progressing);
    assert_eq!(progressing.outcome, Outcome::Progressing);
    assert_eq!(progressing.observed_generation, None);
    assert_eq!(progressing.completed_at, None);
    assert_eq!(
        condition(&progressing, "Reconciling"),
        Some(("True".into(), None))
    );
    assert_eq!(
        condition(&progressing, "Ready"),
        Some(("False".into(), None))
    );

    r.status = Some(progressing);
    let succeeded = outcome_status(&r, Outcome::Succeeded);
    assert_eq!(condition(&succeeded, "Ready"), Some(("True".into(), None)));
    assert_eq!(condition(&succeeded, "Reconciling"), None);
    let window_start = succeeded.succeeded_at.clone();
    assert!(window_start.is_some() && succeeded.completed_at.is_some());

    r.status = Some(succeeded);
    let superseded = outcome_status(&r, Outcome::Superseded);
    assert_eq!(
        superseded.succeeded_at, window_start,
        "the window's start is kept"
    );
    assert!(superseded.superseded_at.is_some());

    // Superseded before it succeeded: it never ran as the current rollout.
    r.status = Some(outcome_status(&r, Outcome::Progressing));
    let replaced = outcome_status(&r, Outcome::Superseded);
    assert_eq!(
        (replaced.succeeded_at, replaced.superseded_at),
        (None, None)
    );
}

/// The provenance of the rollout `record` records.
fn rollout(record: &DeploymentRecord) -> Provenance {
    Provenance {
        record: record.name_any(),
        ..provenance(record)
    }
}

const RECORD_PATH: &str = "/apis/strata.dev/v1alpha1/namespaces/ns/deploymentrecords/upf-a";

#[tokio::test]
async fn a_progressing_record_concludes_in_one_request_without_a_read() {
    let r = record("upf-a", "2026-11-20T10:00:00Z", None);
    let patched = r.clone();
    let (ctx, _caches, requests) = context(super::super::State::default(), move |m, _| {
        assert_eq!(m, http::Method::PATCH, "only the conditional patch");
        object(&patched)
    });
    conclude(&ctx, "ns", "upf", &rollout(&r), Outcome::Succeeded)
        .await
        .unwrap();
    assert_eq!(requests.seen(), vec![format!("PATCH {RECORD_PATH}")]);
}

#[tokio::test]
async fn a_record_no_longer_progressing_is_read_and_left_as_it_is() {
    let mut failed = record("upf-a", "2026-11-20T10:00:00Z", None);
    failed.status = Some(outcome_status(&failed, Outcome::Failed));
    let live = failed.clone();
    let (ctx, _caches, requests) = context(super::super::State::default(), move |m, _| {
        match *m {
            // The test of `Progressing` fails.
            http::Method::PATCH => Answer::Invalid,
            http::Method::GET => object(&live),
            _ => panic!("unexpected {m}"),
        }
    });
    conclude(&ctx, "ns", "upf", &rollout(&failed), Outcome::Succeeded)
        .await
        .unwrap();
    assert_eq!(
        requests.seen(),
        vec![format!("PATCH {RECORD_PATH}"), format!("GET {RECORD_PATH}")],
        "a concluded outcome is final: read, and not written again"
    );
}

#[tokio::test]
async fn a_succeeded_record_is_read_before_it_is_superseded() {
    let mut succeeded = record("upf-a", "2026-11-20T10:00:00Z", None);
    succeeded.status = Some(outcome_status(&succeeded, Outcome::Succeeded));
    let live = succeeded.clone();
    let (ctx, _caches, requests) = context(super::super::State::default(), move |m, _| match *m {
        http::Method::GET | http::Method::PATCH => object(&live),
        _ => panic!("unexpected {m}"),
    });
    conclude(&ctx, "ns", "upf", &rollout(&succeeded), Outcome::Superseded)
        .await
        .unwrap();
    assert_eq!(
        requests.seen(),
        vec![format!("GET {RECORD_PATH}"), format!("PATCH {RECORD_PATH}")],
        "the succeeded window is read, then kept"
    );
}

#[test]
fn the_conditional_patch_tests_progressing_and_replaces_the_whole_status() {
    let r = record("upf-a", "2026-11-20T10:00:00Z", None);
    let status = concluded_status(&Rollout::of("upf", &rollout(&r)), Outcome::Failed);
    let Patch::Json(patch) = from_progressing(&status) else {
        panic!("a JSON patch")
    };
    let patch = serde_json::to_value(&patch).unwrap();
    assert_eq!(
        patch[0],
        serde_json::json!({"op": "test", "path": "/status/outcome", "value": "Progressing"})
    );
    assert_eq!(patch[1]["op"], "replace");
    assert_eq!(patch[1]["path"], "/status");
    assert_eq!(patch[1]["value"]["outcome"], "Failed");
    assert!(patch[1]["value"].get("observedGeneration").is_none());
    assert_eq!(
        patch[1]["value"]["conditions"][0]["message"]
            .as_str()
            .map(|m| m.starts_with("rollout of upf 1.0.0")),
        Some(true)
    );
}

const RECORDS_PATH: &str = "/apis/strata.dev/v1alpha1/namespaces/ns/deploymentrecords";

/// A context whose API server answers a list of records with none.
fn listing_none() -> (
    std::sync::Arc<Context>,
    crate::controllers::fixtures::Requests,
) {
    let (ctx, _caches, requests) = context(super::super::State::default(), |m, _| {
        assert_eq!(m, http::Method::GET, "only the list of records");
        Answer::Object(serde_json::json!({
            "apiVersion": "strata.dev/v1alpha1",
            "kind": "DeploymentRecordList",
            "metadata": {},
            "items": [],
        }))
    });
    (ctx, requests)
}

#[tokio::test]
async fn the_first_rollout_of_a_function_created_while_leading_lists_no_records() {
    let (ctx, requests) = listing_none();
    ctx.state.first_listed.were(["u0"]);
    let end = ledger_end(&ctx, &upf(), "ns", &Provenance::default(), None)
        .await
        .unwrap();
    assert_eq!((end.unwritten.len(), end.previous), (0, None));
    assert_eq!(requests.seen(), Vec::<String>::new());
    assert_eq!(ctx.state.ledgers.records("u1"), Some(0), "none to prune");
}

#[tokio::test]
async fn a_function_there_before_the_term_lists_its_records_once() {
    let (ctx, requests) = listing_none();
    ctx.state.first_listed.were(["u1"]);
    let target = Provenance::default();
    ledger_end(&ctx, &upf(), "ns", &target, None).await.unwrap();
    assert_eq!(requests.seen(), vec![format!("GET {RECORDS_PATH}")]);
    assert!(!ctx.state.first_listed.holds("u1"), "listed: forgotten");
}

#[tokio::test]
async fn before_the_first_list_is_known_every_function_lists_its_records() {
    let (ctx, requests) = listing_none();
    ledger_end(&ctx, &upf(), "ns", &Provenance::default(), None)
        .await
        .unwrap();
    assert_eq!(requests.seen(), vec![format!("GET {RECORDS_PATH}")]);
}

#[tokio::test]
async fn a_record_whose_creation_failed_is_looked_for_before_the_next_rollout() {
    let (ctx, requests) = listing_none();
    ctx.state.first_listed.were([]);
    // A create whose answer was lost: the record may be there.
    ctx.state.ledgers.counted("u1", None);
    ledger_end(&ctx, &upf(), "ns", &Provenance::default(), None)
        .await
        .unwrap();
    assert_eq!(requests.seen(), vec![format!("GET {RECORDS_PATH}")]);
}
