use super::*;
use crate::api::{DeploymentRecordSpec, DeploymentRecordStatus, StackRevisionRef};

const IMAGE: &str = "registry.example/upf@sha256:aaaa";

fn artifact() -> Artifact<'static> {
    Artifact {
        version: "2.3.1",
        image: IMAGE,
        stack: "edge-net",
        stack_version: "1.5.0",
    }
}

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// A record of the artifact (or of `version`) started at `started`, with
/// `outcome` and its succeeded/superseded times.
fn record(
    name: &str,
    version: &str,
    started: &str,
    outcome: Outcome,
    succeeded: Option<&str>,
    superseded: Option<&str>,
) -> Arc<DeploymentRecord> {
    let mut r = DeploymentRecord::new(
        name,
        DeploymentRecordSpec {
            network_function: Default::default(),
            version: version.into(),
            image: IMAGE.into(),
            stack: StackRevisionRef {
                name: "edge-net".into(),
                version: "1.5.0".into(),
                digest: "sha256:staging".into(),
            },
            config_digest: "sha256:c".into(),
            previous_record: None,
            started_at: started.into(),
            verified_in: vec![],
        },
    );
    r.status = Some(DeploymentRecordStatus {
        outcome,
        succeeded_at: succeeded.map(Into::into),
        superseded_at: superseded.map(Into::into),
        ..Default::default()
    });
    Arc::new(r)
}

const NOW: &str = "2026-11-29T10:30:00Z";

#[test]
fn a_current_rollout_soaks_until_now_and_says_when_it_is_done() {
    let records = [record(
        "upf-1",
        "2.3.1",
        "2026-11-29T10:00:00Z",
        Outcome::Succeeded,
        Some("2026-11-29T10:10:00Z"),
        None,
    )];
    let soak = Duration::from_secs(30 * 60);
    let verdict = verify(&records, &artifact(), soak, at(NOW));
    assert_eq!(
        verdict,
        Verdict::Soaking {
            record: "upf-1".into(),
            since: at("2026-11-29T10:10:00Z"),
            soaked: Duration::from_secs(20 * 60),
            needed: soak
        }
    );
    assert_eq!(
        verdict.explain("staging/upf"),
        "soaking in staging/upf: record upf-1 has run Succeeded since 2026-11-29T10:10:00Z, and must for 30m0s (until 2026-11-29T10:40:00Z)"
    );
    assert_eq!(verdict.recheck(), Some(Duration::from_secs(10 * 60)));
    let later = verify(&records, &artifact(), soak, at("2026-11-29T10:40:00Z"));
    assert!(matches!(later, Verdict::Verified { .. }), "{later:?}");
}

#[test]
fn the_soak_is_the_continuous_time_as_current_rollout_not_since_it_succeeded() {
    // Succeeded at 10:00, replaced at 10:05: five minutes, however long ago.
    let records = [record(
        "upf-1",
        "2.3.1",
        "2026-11-29T09:59:00Z",
        Outcome::Superseded,
        Some("2026-11-29T10:00:00Z"),
        Some("2026-11-29T10:05:00Z"),
    )];
    let needed = Duration::from_secs(10 * 60);
    assert_eq!(
        verify(&records, &artifact(), needed, at(NOW)),
        Verdict::NotVerified
    );
    assert_eq!(
        verify(&records, &artifact(), Duration::from_secs(5 * 60), at(NOW)),
        Verdict::Verified {
            record: "upf-1".into(),
            soaked: Duration::from_secs(5 * 60)
        }
    );
}

#[test]
fn a_later_failure_revokes_and_a_later_success_verifies_again() {
    let ok = record(
        "upf-1",
        "2.3.1",
        "2026-11-29T09:00:00Z",
        Outcome::Superseded,
        Some("2026-11-29T09:01:00Z"),
        Some("2026-11-29T10:00:00Z"),
    );
    let failed = record(
        "upf-2",
        "2.3.1",
        "2026-11-29T10:05:00Z",
        Outcome::Failed,
        None,
        None,
    );
    let soak = Duration::from_secs(60);
    assert_eq!(
        verify(&[ok.clone(), failed.clone()], &artifact(), soak, at(NOW)),
        Verdict::Revoked {
            failed: "upf-2".into()
        }
    );
    let again = record(
        "upf-3",
        "2.3.1",
        "2026-11-29T10:10:00Z",
        Outcome::Succeeded,
        Some("2026-11-29T10:11:00Z"),
        None,
    );
    assert!(matches!(
        verify(&[ok, failed, again], &artifact(), soak, at(NOW)),
        Verdict::Verified { record, .. } if record == "upf-3"
    ));
}

#[test]
fn only_the_same_artifact_counts() {
    let other_version = record(
        "upf-1",
        "2.3.0",
        "2026-11-29T09:00:00Z",
        Outcome::Succeeded,
        Some("2026-11-29T09:01:00Z"),
        None,
    );
    let mut other_stack = (*other_version).clone();
    other_stack.spec.version = "2.3.1".into();
    other_stack.spec.stack.version = "1.4.0".into();
    let mut other_image = other_stack.clone();
    other_image.spec.stack.version = "1.5.0".into();
    other_image.spec.image = "registry.example/upf@sha256:bbbb".into();
    let records = [other_version, Arc::new(other_stack), Arc::new(other_image)];
    assert_eq!(
        verify(&records, &artifact(), Duration::ZERO, at(NOW)),
        Verdict::NotVerified
    );
    // The Stack digest and the configuration may differ: the parameters do.
    let mut same = (*records[2]).clone();
    same.spec.image = IMAGE.into();
    same.spec.stack.digest = "sha256:other".into();
    same.spec.config_digest = "sha256:other".into();
    assert!(matches!(
        verify(&[Arc::new(same)], &artifact(), Duration::ZERO, at(NOW)),
        Verdict::Verified { .. }
    ));
}

#[test]
fn rollouts_that_never_succeeded_or_cannot_tell_when_are_no_evidence() {
    let progressing = record(
        "upf-1",
        "2.3.1",
        "2026-11-29T09:00:00Z",
        Outcome::Progressing,
        None,
        None,
    );
    let superseded_before_success = record(
        "upf-2",
        "2.3.1",
        "2026-11-29T09:10:00Z",
        Outcome::Superseded,
        None,
        Some("2026-11-29T09:20:00Z"),
    );
    let records = [progressing, superseded_before_success];
    assert_eq!(
        verify(&records, &artifact(), Duration::ZERO, at(NOW)),
        Verdict::NotVerified
    );
}

#[test]
fn a_record_left_succeeded_ends_where_the_next_rollout_of_that_name_starts() {
    // upf was deleted and created again (another uid): its last record
    // stays Succeeded, but it ran only until the new upf's first rollout.
    let old = record(
        "upf-1",
        "2.3.1",
        "2026-11-29T10:00:00Z",
        Outcome::Succeeded,
        Some("2026-11-29T10:01:00Z"),
        None,
    );
    let recreated = record(
        "upf-9",
        "2.3.0",
        "2026-11-29T10:04:00Z",
        Outcome::Succeeded,
        Some("2026-11-29T10:05:00Z"),
        None,
    );
    let records = [old, recreated];
    assert_eq!(
        verify(&records, &artifact(), Duration::from_secs(5 * 60), at(NOW)),
        Verdict::NotVerified,
        "three minutes, not still running"
    );
    assert!(matches!(
        verify(&records, &artifact(), Duration::from_secs(3 * 60), at(NOW)),
        Verdict::Verified { soaked, .. } if soaked == Duration::from_secs(3 * 60)
    ));
}

#[test]
fn records_from_before_succeeded_at_count_from_their_completion() {
    let mut older = (*record(
        "upf-1",
        "2.3.1",
        "2026-11-29T10:00:00Z",
        Outcome::Succeeded,
        None,
        None,
    ))
    .clone();
    older.status.as_mut().unwrap().completed_at = Some("2026-11-29T10:01:00Z".into());
    assert!(matches!(
        verify(
            &[Arc::new(older)],
            &artifact(),
            Duration::from_secs(60),
            at(NOW)
        ),
        Verdict::Verified { .. }
    ));
}

#[test]
fn a_failure_whose_start_cannot_be_read_revokes_everything() {
    let ok = record(
        "upf-1",
        "2.3.1",
        "2026-11-29T10:00:00Z",
        Outcome::Superseded,
        Some("2026-11-29T10:01:00Z"),
        Some("2026-11-29T10:20:00Z"),
    );
    let failed = record("upf-2", "2.3.1", "yesterday", Outcome::Failed, None, None);
    assert_eq!(
        verify(&[ok, failed], &artifact(), Duration::from_secs(60), at(NOW)),
        Verdict::Revoked {
            failed: "upf-2".into()
        }
    );
}
