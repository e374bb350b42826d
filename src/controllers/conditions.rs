//! `metav1.Condition` bookkeeping following the kstatus rules.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Condition types shared by every kind.
pub const READY: &str = "Ready";
/// Work is in progress (abnormal-true).
pub const RECONCILING: &str = "Reconciling";
/// Progress is impossible without a spec change (abnormal-true).
pub const STALLED: &str = "Stalled";

/// The status of a condition.
pub fn status(is: bool) -> &'static str {
    if is { "True" } else { "False" }
}

/// Sets condition `type_` in `conditions`. The transition time moves only when
/// the status changes, so that an unchanged condition never causes a write.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    is: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) {
    let status = status(is).to_string();
    let message = message.into();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now();
            }
            c.status = status;
            c.reason = reason.to_string();
            c.message = message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message,
            observed_generation: generation,
            last_transition_time: now(),
        }),
    }
}

/// Removes condition `type_`: kstatus reads an absent abnormal-true condition as False.
pub fn clear(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// The condition `type_`, if present.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether condition `type_` is True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    get(conditions, type_).is_some_and(|c| c.status == "True")
}

/// The standard trio for a fully realised object: Ready, and neither Reconciling nor Stalled.
pub fn ready(
    conditions: &mut Vec<Condition>,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) {
    set(conditions, READY, true, reason, message, generation);
    clear(conditions, RECONCILING);
    clear(conditions, STALLED);
}

/// The trio for work in progress: Reconciling, not Ready, not Stalled.
pub fn progressing(
    conditions: &mut Vec<Condition>,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) {
    not_ready(
        conditions,
        RECONCILING,
        STALLED,
        reason,
        message.into(),
        generation,
    );
}

/// The trio for a spec that cannot make progress: Stalled, not Ready, not Reconciling.
pub fn stalled(
    conditions: &mut Vec<Condition>,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) {
    not_ready(
        conditions,
        STALLED,
        RECONCILING,
        reason,
        message.into(),
        generation,
    );
}

/// Ready=False with one abnormal-true condition raised and the other cleared.
fn not_ready(
    conditions: &mut Vec<Condition>,
    raised: &str,
    cleared: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
) {
    set(
        conditions,
        READY,
        false,
        reason,
        message.clone(),
        generation,
    );
    set(conditions, raised, true, reason, message, generation);
    clear(conditions, cleared);
}

/// The conditions among `types` that report a failure in `new` (Stalled
/// True, any other type False) and did not report the same one in `old`:
/// each failure is published as an Event once.
pub fn newly_failing<'a>(
    old: &[Condition],
    new: &'a [Condition],
    types: &[&str],
) -> Vec<&'a Condition> {
    types
        .iter()
        .filter_map(|type_| get(new, type_))
        .filter(|c| c.status == status(c.type_ == STALLED))
        .filter(|c| {
            get(old, &c.type_).map(|o| (&o.status, &o.reason, &o.message))
                != Some((&c.status, &c.reason, &c.message))
        })
        .collect()
}

/// The current time as a Kubernetes timestamp.
fn now() -> Time {
    Time(Timestamp::now())
}

/// The current time as RFC 3339 with millisecond precision, for the times a
/// promotion gate measures soaks by.
pub fn now_rfc3339_millis() -> String {
    Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Millisecond)
        .unwrap_or(Timestamp::now())
        .to_string()
}

/// The current time as RFC 3339 with second precision, for status fields.
pub fn now_rfc3339() -> String {
    Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .unwrap_or(Timestamp::now())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut conditions = Vec::new();
        set(
            &mut conditions,
            READY,
            false,
            "Progressing",
            "rolling out",
            Some(1),
        );
        let first = conditions[0].last_transition_time.clone();
        let mut again = conditions.clone();
        set(
            &mut again,
            READY,
            false,
            "Progressing",
            "rolling out",
            Some(1),
        );
        assert_eq!(
            again, conditions,
            "an unchanged condition must compare equal"
        );
        set(&mut again, READY, true, "Ready", "done", Some(1));
        assert!(again[0].last_transition_time.0 >= first.0);
        assert_eq!(again[0].status, "True");
    }

    #[test]
    fn trios_follow_kstatus() {
        let mut c = Vec::new();
        stalled(&mut c, "VersionConflict", "bump spec.version", Some(2));
        assert!(is_true(&c, STALLED) && !is_true(&c, READY) && get(&c, RECONCILING).is_none());
        progressing(&mut c, "Applying", "applying", Some(3));
        assert!(is_true(&c, RECONCILING) && get(&c, STALLED).is_none());
        ready(&mut c, "Applied", "ok", Some(3));
        assert!(is_true(&c, READY) && c.len() == 1);
    }

    #[test]
    fn a_failure_is_reported_once() {
        let mut old = Vec::new();
        ready(&mut old, "Applied", "ok", Some(1));
        let mut new = old.clone();
        stalled(&mut new, "InvalidSpec", "bad placeholder", Some(2));
        let failing = newly_failing(&old, &new, &[STALLED]);
        assert_eq!(failing.len(), 1);
        assert_eq!(failing[0].reason, "InvalidSpec");
        assert!(
            newly_failing(&new, &new, &[STALLED]).is_empty(),
            "unchanged: not again"
        );
        assert!(newly_failing(&new, &new.clone(), &[READY]).is_empty());
        let mut other = new.clone();
        stalled(&mut other, "InvalidSpec", "another placeholder", Some(3));
        assert_eq!(
            newly_failing(&new, &other, &[STALLED]).len(),
            1,
            "a new message is a new failure"
        );
        assert_eq!(
            newly_failing(&[], &new, &[READY]).len(),
            1,
            "Ready=False counts for non-Stalled types"
        );
    }
}
