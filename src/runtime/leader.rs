//! Leader election over a `coordination.k8s.io/v1` Lease: only the holder
//! reconciles; the others stand by and take over when the lease expires or
//! is released.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Client,
    api::{Api, ObjectMeta, PostParams},
};

use super::health::{Health, Readiness};

/// How long a lease is valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews, and how often a standby retries.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// One participant in the election.
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    identity: String,
}

/// What an attempt to hold the lease found.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// This participant holds the lease now.
    Leading,
    /// Another participant holds a valid lease.
    Following(String),
}

impl LeaderElector {
    /// A participant named `identity` in the election over Lease `namespace/name`.
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
        }
    }

    /// This participant's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Acquires the lease, renews it, or takes over an expired one. A write
    /// that loses a race (409) reports the current holder instead.
    pub async fn try_acquire_or_renew(&self) -> kube::Result<Attempt> {
        let now = Timestamp::now();
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.held_spec(now, now, 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leading),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Following(String::new())),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let transitions = spec.lease_transitions.unwrap_or(0);
        let new_spec = if holder == self.identity {
            self.held_spec(
                spec.acquire_time.map(|t| t.0).unwrap_or(now),
                now,
                transitions,
            )
        } else if holder.is_empty() || expired(&spec, now) {
            self.held_spec(now, now, transitions + 1)
        } else {
            return Ok(Attempt::Following(holder));
        };
        let mut updated = lease;
        updated.spec = Some(new_spec);
        // The resourceVersion in `updated` makes this a compare-and-swap.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => Ok(Attempt::Leading),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Following(holder)),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up so that a standby takes over at once. Returns
    /// whether this participant held it.
    pub async fn release(&self) -> kube::Result<bool> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            return Ok(false);
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(false);
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        // Compare-and-swap: a lease taken over meanwhile is not touched.
        self.api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .map(|_| true)
    }

    fn held_spec(&self, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }
}

/// Returns once this replica holds the lease. Meanwhile `/readyz` says
/// standby, or not ready while the election cannot be reached.
pub async fn lead(elector: &LeaderElector, health: &Health) {
    let mut last_holder = None;
    loop {
        match attempt(elector, RETRY_PERIOD).await {
            Ok(Attempt::Leading) => return,
            Ok(Attempt::Following(holder)) => {
                health.set(Readiness::Standby);
                if last_holder.as_ref() != Some(&holder) {
                    tracing::info!(%holder, "standing by: another replica leads");
                    last_holder = Some(holder);
                }
            }
            Err(error) => {
                health.set(Readiness::Starting);
                tracing::warn!(%error, "leader election failed; retrying");
            }
        }
        tokio::time::sleep(RETRY_PERIOD).await;
    }
}

/// Renews the lease; returns when it was lost: another holder, or no
/// successful renewal for so long that a standby may take over soon.
pub async fn keep_leading(elector: LeaderElector) {
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(RETRY_PERIOD).await;
        // A renewal that hangs must not outlive the term: past this deadline
        // the lease may be someone else's.
        let deadline = last_renewal + LEASE_DURATION - RETRY_PERIOD;
        let within = deadline.saturating_duration_since(tokio::time::Instant::now());
        match attempt(&elector, within).await {
            Ok(Attempt::Leading) => last_renewal = tokio::time::Instant::now(),
            Ok(Attempt::Following(holder)) => {
                tracing::error!(%holder, "another replica took the lease");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "renewing the leader lease failed");
                if tokio::time::Instant::now() >= deadline {
                    return;
                }
            }
        }
    }
}

/// One election attempt that gives up after `within`.
async fn attempt(elector: &LeaderElector, within: Duration) -> Result<Attempt, String> {
    match tokio::time::timeout(within, elector.try_acquire_or_renew()).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer from the API server within {within:?}")),
    }
}

/// Gives up the lease if this replica holds it, so that a standby takes over
/// at once. Bounded: a process being stopped must not hang on the API server.
pub async fn step_down(elector: &LeaderElector) {
    match tokio::time::timeout(RETRY_PERIOD, elector.release()).await {
        Ok(Ok(true)) => tracing::info!("released the leader lease"),
        Ok(Ok(false)) => {}
        Ok(Err(error)) => tracing::warn!(%error, "releasing the leader lease failed"),
        Err(_) => tracing::warn!("releasing the leader lease timed out; it will expire"),
    }
}

/// Whether a lease has not been renewed within its duration.
fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().map(|t| t.0) else {
        return true;
    };
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    renewed + duration < now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_expire_after_their_duration() {
        let now = Timestamp::now();
        let spec = |ago: i64, duration: i32| LeaseSpec {
            renew_time: Some(MicroTime(now - SignedDuration::from_secs(ago))),
            lease_duration_seconds: Some(duration),
            ..LeaseSpec::default()
        };
        assert!(!expired(&spec(5, 15), now));
        assert!(expired(&spec(16, 15), now));
        assert!(expired(&LeaseSpec::default(), now));
    }
}
