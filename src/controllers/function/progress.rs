//! A rollout's progress in the function's status: how many pods are
//! updated and available (the message of Ready and Reconciling) and the
//! replica counts. They move with every step of the Deployment; written
//! each time, they would cost a status write per pod, and say nothing a
//! reader acts on: Reconciling stays True until the rollout concludes. So
//! a status write that changes nothing else waits, at most
//! [`PROGRESS_INTERVAL`] after the function's last status write: a rollout's
//! start and its conclusion are written at once, and a long rollout still
//! shows how far it has come.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::rollout::ROLLING_OUT;
use crate::{
    api::NetworkFunctionStatus,
    controllers::conditions::{self, READY, RECONCILING},
};

/// How long a write of a rollout's progress alone may wait.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(30);

/// When each function's status was last written, by uid.
#[derive(Default)]
pub struct StatusWrites(Mutex<HashMap<String, Instant>>);

impl StatusWrites {
    /// How long to hold back the write that would change `old` into `new`
    /// at `now`; `None` when it is due (or changes more than the progress).
    pub fn wait(
        &self,
        uid: &str,
        old: &NetworkFunctionStatus,
        new: &NetworkFunctionStatus,
        now: Instant,
    ) -> Option<Duration> {
        if !progress_only(old, new) {
            return None;
        }
        let written = *self.0.lock().ok()?.get(uid)?;
        (written + PROGRESS_INTERVAL)
            .checked_duration_since(now)
            .filter(|d| !d.is_zero())
    }

    /// The status of the function with `uid` was written at `now`.
    pub fn written(&self, uid: &str, now: Instant) {
        if let Ok(mut writes) = self.0.lock() {
            writes.insert(uid.to_string(), now);
        }
    }

    /// Forgets a deleted function.
    pub fn forget(&self, uid: &str) {
        if let Ok(mut writes) = self.0.lock() {
            writes.remove(uid);
        }
    }
}

/// Whether `new` differs from `old` only in the progress of the rollout
/// both say is under way: the same rollout, Reconciling for it in both,
/// and nothing else changed but the messages and the replica counts.
fn progress_only(old: &NetworkFunctionStatus, new: &NetworkFunctionStatus) -> bool {
    let rolling_out = |s: &NetworkFunctionStatus| {
        conditions::get(&s.conditions, RECONCILING)
            .is_some_and(|c| c.status == "True" && c.reason == ROLLING_OUT)
    };
    if !rolling_out(old) || !rolling_out(new) {
        return false;
    }
    let mut progressed = new.clone();
    progressed.replicas = old.replicas;
    progressed.ready_replicas = old.ready_replicas;
    for c in progressed.conditions.iter_mut() {
        if (c.type_ == READY || c.type_ == RECONCILING)
            && let Some(before) = conditions::get(&old.conditions, &c.type_)
        {
            c.message.clone_from(&before.message);
        }
    }
    progressed == *old
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{StackRevisionRef, function::Provenance};

    fn rolling_out(pods: &str, ready: i32) -> NetworkFunctionStatus {
        let mut status = NetworkFunctionStatus {
            observed_generation: Some(1),
            deployed_with: Some(Provenance {
                version: "2.3.1".into(),
                stack: StackRevisionRef {
                    name: "edge".into(),
                    version: "1.4.0".into(),
                    digest: "sha256:a".into(),
                },
                record: "upf-1".into(),
                ..Provenance::default()
            }),
            replicas: Some(2),
            ready_replicas: Some(ready),
            ..NetworkFunctionStatus::default()
        };
        let message = format!("upf 2.3.1 on stack edge 1.4.0: {pods}");
        conditions::progressing(&mut status.conditions, ROLLING_OUT, message, Some(1));
        status
    }

    #[test]
    fn only_a_rollouts_progress_waits() {
        let started = rolling_out("the Deployment has no status yet", 0);
        let mut moved = started.clone();
        moved.ready_replicas = Some(1);
        for c in &mut moved.conditions {
            c.message = "upf 2.3.1 on stack edge 1.4.0: 1 of 2 pods available".into();
        }
        assert!(progress_only(&started, &moved));

        let mut concluded = moved.clone();
        conditions::ready(
            &mut concluded.conditions,
            "RolledOut",
            "2/2 pods ready",
            Some(1),
        );
        assert!(
            !progress_only(&moved, &concluded),
            "the conclusion is written"
        );

        let mut respec = moved.clone();
        respec.observed_generation = Some(2);
        assert!(
            !progress_only(&started, &respec),
            "a new generation is written"
        );

        let mut another = moved.clone();
        if let Some(d) = another.deployed_with.as_mut() {
            d.record = "upf-2".into();
        }
        assert!(
            !progress_only(&started, &another),
            "a new rollout is written"
        );

        let mut queued = started.clone();
        conditions::progressing(&mut queued.conditions, "Queued", "queued", Some(1));
        assert!(
            !progress_only(&queued, &moved),
            "the rollout's start is written"
        );
    }

    #[test]
    fn progress_is_written_at_most_every_interval() {
        let writes = StatusWrites::default();
        let start = Instant::now();
        let old = rolling_out("0 of 2 pods updated", 0);
        let mut new = old.clone();
        new.ready_replicas = Some(1);
        assert_eq!(
            writes.wait("u1", &old, &new, start),
            None,
            "no write known (a restarted process): due"
        );
        writes.written("u1", start);
        assert_eq!(
            writes.wait("u1", &old, &new, start + Duration::from_secs(10)),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            writes.wait("u1", &old, &new, start + PROGRESS_INTERVAL),
            None
        );
        writes.forget("u1");
        assert_eq!(writes.wait("u1", &old, &new, start), None);
    }
}
