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
    api::{Api, ListParams, ObjectMeta, PostParams},
};

use tokio::time::Instant;

use super::{
    fence::{TERM_MARGIN, WriteFence},
    health::{Health, Readiness},
    shards::{
        ANNOTATION_SHARD, ANNOTATION_SHARDS, ANNOTATION_YIELDS_TO, Holder, Shard, Survey, Term,
        Territory,
    },
};

/// How long a lease is valid without renewal.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews, and how often a standby retries.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);
/// How long after the start of a successful renewal this replica may write:
/// a standby cannot take the lease over sooner than [`LEASE_DURATION`]
/// after it, and the margin covers clock skew and requests in flight.
pub const TERM: Duration = LEASE_DURATION.saturating_sub(TERM_MARGIN);

/// One participant in the election of a shard (see [`super::shards`]).
#[derive(Clone)]
pub struct LeaderElector {
    api: Api<Lease>,
    /// The Lease name setting: the name of the election's Leases.
    election: String,
    /// This shard's Lease.
    name: String,
    identity: String,
    shard: Shard,
}

/// What an attempt to hold the lease found.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    /// This participant holds the lease now, in this term.
    Leading(Term),
    /// Another participant holds a valid lease.
    Following(String),
}

impl LeaderElector {
    /// A participant named `identity` in the election of `shard` over the
    /// Leases named `election` in `namespace` (one per shard).
    pub fn new(
        client: Client,
        namespace: &str,
        election: &str,
        identity: &str,
        shard: Shard,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            election: election.into(),
            name: shard.lease_name(election),
            identity: identity.into(),
            shard,
        }
    }

    /// This participant's identity.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The Lease this participant competes for.
    pub fn lease(&self) -> &str {
        &self.name
    }

    /// Acquires the lease, renews it, or takes over an expired one, writing
    /// the shard it holds and the terms it acknowledges (`yields_to`). A
    /// write that loses a race (409) reports the current holder instead.
    pub async fn try_acquire_or_renew(&self, yields_to: &[Term]) -> kube::Result<Attempt> {
        let now = Timestamp::now();
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            let mut lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.held_spec(now, now, 0)),
            };
            self.annotate(&mut lease, yields_to);
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(held) => Ok(self.leading(&held)),
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
        self.annotate(&mut updated, yields_to);
        // The resourceVersion in `updated` makes this a compare-and-swap.
        match self
            .api
            .replace(&self.name, &PostParams::default(), &updated)
            .await
        {
            Ok(held) => Ok(self.leading(&held)),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Following(holder)),
            Err(e) => Err(e),
        }
    }

    /// The other live holders of the election's Leases (a consistent read,
    /// not a cache), against this participant's term `mine`.
    pub async fn survey(&self, mine: &Term) -> kube::Result<Survey> {
        let now = Timestamp::now();
        let leases = self.api.list(&ListParams::default()).await?;
        let others: Vec<Holder> = leases
            .items
            .iter()
            .filter(|lease| {
                let name = lease.metadata.name.as_deref().unwrap_or_default();
                name != self.name && of_election(name, &self.election)
            })
            .filter_map(|lease| live_holder(lease, now))
            .collect();
        Ok(Survey::of(mine, &others))
    }

    fn annotate(&self, lease: &mut Lease, yields_to: &[Term]) {
        let annotations = lease
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        annotations.insert(ANNOTATION_SHARDS.into(), self.shard.count.to_string());
        annotations.insert(ANNOTATION_SHARD.into(), self.shard.index.to_string());
        if yields_to.is_empty() {
            annotations.remove(ANNOTATION_YIELDS_TO);
        } else {
            annotations.insert(ANNOTATION_YIELDS_TO.into(), Term::encode_all(yields_to));
        }
    }

    /// This participant's term, from the Lease the API server stored.
    fn leading(&self, held: &Lease) -> Attempt {
        Attempt::Leading(Term {
            shard: self.shard,
            acquired: acquired(held),
        })
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

/// Returns once this replica holds the lease, with `fence` open for the
/// term and `territory` surveyed: the other shards' holders are read after
/// the lease is taken and before anything is written. Meanwhile `/readyz`
/// says standby, or not ready while the election cannot be reached.
pub async fn lead(
    elector: &LeaderElector,
    health: &Health,
    fence: &WriteFence,
    territory: &Territory,
) {
    let mut last_holder = None;
    loop {
        let started = Instant::now();
        match attempt(elector, &[], RETRY_PERIOD).await {
            Ok(Attempt::Leading(term)) => {
                health.api_reachable(true);
                // Writes wait for the survey: a holder of another shard
                // count may claim some of this shard's namespaces.
                match survey(elector, &term, started + TERM).await {
                    Ok(survey) => {
                        territory.survey(survey);
                        fence.extend_until(started + TERM);
                        return;
                    }
                    Err(error) => {
                        health.api_reachable(false);
                        tracing::warn!(%error, "reading the other shards' leases failed; retrying");
                    }
                }
            }
            Ok(Attempt::Following(holder)) => {
                health.api_reachable(true);
                health.set(Readiness::Standby);
                if last_holder.as_ref() != Some(&holder) {
                    tracing::info!(%holder, lease = elector.lease(), "standing by: another replica leads");
                    last_holder = Some(holder);
                }
            }
            Err(error) => {
                health.api_reachable(false);
                tracing::warn!(%error, "leader election failed; retrying");
            }
        }
        tokio::time::sleep(RETRY_PERIOD).await;
    }
}

/// Renews the lease, extending `fence` by a [`TERM`] from the start of each
/// renewal that succeeds, and surveys the other shards' holders after each
/// (handing namespaces over, waiting for those moving in); returns when the
/// lease is lost: another replica holds it, or the term ran out before a
/// renewal succeeded (the API server did not answer, or this process was
/// paused). `fence` is closed then.
pub async fn keep_leading(
    elector: LeaderElector,
    health: Health,
    fence: WriteFence,
    territory: Territory,
) {
    loop {
        // Namespaces handed over are drained of their reconciles meanwhile,
        // so that the renewal can acknowledge them.
        let next = Instant::now() + RETRY_PERIOD;
        territory.drain(RETRY_PERIOD).await;
        tokio::time::sleep_until(next).await;
        // A renewal that hangs must not outlive the term: past its end the
        // lease may be someone else's.
        let started = Instant::now();
        let Some(end) = fence.term_end().filter(|end| started < *end) else {
            tracing::error!("the leader term ended before the lease could be renewed");
            break;
        };
        let term = match attempt(&elector, &territory.acknowledged(), end - started).await {
            Ok(Attempt::Leading(term)) => {
                health.api_reachable(true);
                fence.extend_until(started + TERM);
                term
            }
            Ok(Attempt::Following(holder)) => {
                health.api_reachable(true);
                tracing::error!(%holder, "another replica took the lease");
                break;
            }
            Err(error) => {
                health.api_reachable(false);
                tracing::warn!(%error, "renewing the leader lease failed");
                continue;
            }
        };
        // Without an answer the last survey stands: a holder that appeared
        // meanwhile and outranks this one waits for its acknowledgement, and
        // one that it outranks read this Lease before writing.
        match survey(&elector, &term, started + TERM).await {
            Ok(survey) => territory.survey(survey),
            Err(error) => tracing::warn!(%error, "reading the other shards' leases failed"),
        }
    }
    fence.close();
}

/// One survey of the other holders that gives up at `deadline`.
async fn survey(elector: &LeaderElector, term: &Term, deadline: Instant) -> Result<Survey, String> {
    let within = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(within, elector.survey(term)).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer from the API server within {within:?}")),
    }
}

/// One election attempt that gives up after `within`.
async fn attempt(
    elector: &LeaderElector,
    yields_to: &[Term],
    within: Duration,
) -> Result<Attempt, String> {
    match tokio::time::timeout(within, elector.try_acquire_or_renew(yields_to)).await {
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

/// Whether Lease `name` is one of `election`'s: `election` itself (one
/// shard) or `election-<index>`.
fn of_election(name: &str, election: &str) -> bool {
    name == election
        || name
            .strip_prefix(election)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|index| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()))
}

/// The holder of `lease` if it is held and not expired. A Lease without
/// the shard annotations is one of an operator with one shard.
fn live_holder(lease: &Lease, now: Timestamp) -> Option<Holder> {
    let spec = lease.spec.as_ref()?;
    if spec
        .holder_identity
        .as_deref()
        .unwrap_or_default()
        .is_empty()
        || expired(spec, now)
    {
        return None;
    }
    let annotations = lease.metadata.annotations.clone().unwrap_or_default();
    let number = |key: &str, default: u32| {
        annotations
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let shard = Shard::new(number(ANNOTATION_SHARD, 0), number(ANNOTATION_SHARDS, 1)).ok()?;
    Some(Holder {
        term: Term {
            shard,
            acquired: acquired(lease),
        },
        yields_to: annotations
            .get(ANNOTATION_YIELDS_TO)
            .map(|v| Term::decode_all(v))
            .unwrap_or_default(),
    })
}

/// A Lease's term stamp: its acquire time in microseconds.
fn acquired(lease: &Lease) -> String {
    lease
        .spec
        .as_ref()
        .and_then(|spec| spec.acquire_time.as_ref())
        .map(|t| t.0.as_microsecond().to_string())
        .unwrap_or_default()
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

    use http::{Method, Request, Response};
    use kube::client::Body;
    use tower_test::mock;

    /// What the mock API server answers to one request.
    enum Answer {
        /// The lease, held by `holder` and renewed just now.
        Lease(&'static str),
        /// The connection fails.
        Unreachable,
    }

    /// A leader of lease `default/lease` as "me" against a mock API server
    /// that answers every request with `answer`.
    fn leader(answer: impl Fn(&Method) -> Answer + Send + 'static) -> LeaderElector {
        let (service, mut server) = mock::pair::<Request<Body>, Response<Body>>();
        tokio::spawn(async move {
            while let Some((request, respond)) = server.next_request().await {
                let listing = request.uri().path().ends_with("/leases");
                match answer(request.method()) {
                    Answer::Lease(holder) => {
                        let lease = serde_json::json!({
                            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                            "metadata": {"name": "lease", "namespace": "default", "resourceVersion": "1"},
                            "spec": {
                                "holderIdentity": holder, "leaseDurationSeconds": 15,
                                "renewTime": MicroTime(Timestamp::now()), "leaseTransitions": 0,
                                "acquireTime": MicroTime(Timestamp::now()),
                            },
                        });
                        // The survey lists the election's Leases: this one.
                        let lease = if listing {
                            serde_json::json!({
                                "apiVersion": "coordination.k8s.io/v1", "kind": "LeaseList",
                                "metadata": {"resourceVersion": "1"}, "items": [lease],
                            })
                        } else {
                            lease
                        };
                        let body = Body::from(serde_json::to_vec(&lease).unwrap());
                        respond.send_response(Response::new(body));
                    }
                    Answer::Unreachable => respond.send_error("connection refused"),
                }
            }
        });
        LeaderElector::new(
            Client::new(service, "default"),
            "default",
            "lease",
            "me",
            Shard::ALL,
        )
    }

    fn territory() -> Territory {
        Territory::new(Shard::ALL)
    }

    /// A leader in a term granted now, and its readiness.
    fn in_term() -> (WriteFence, Health) {
        let fence = WriteFence::closed();
        fence.extend_until(Instant::now() + TERM);
        let health = Health::default();
        health.set(Readiness::Leading);
        (fence, health)
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_that_cannot_renew_stops_writing_when_its_term_ends() {
        let (fence, health) = in_term();
        let granted = Instant::now();
        let elector = leader(|_| Answer::Unreachable);
        let renewing = tokio::spawn(keep_leading(
            elector,
            health.clone(),
            fence.clone(),
            territory(),
        ));
        tokio::time::sleep(RETRY_PERIOD + Duration::from_millis(100)).await;
        // The first renewal failed: not ready, but still within the term.
        assert_eq!(health.report().1, "not ready: API server unreachable");
        assert!(fence.allows_writes());
        renewing.await.unwrap();
        let ended = granted.elapsed();
        assert!(
            ended >= TERM && ended <= TERM + RETRY_PERIOD,
            "the term ended after {ended:?}"
        );
        assert!(!fence.allows_writes());
        assert_eq!(fence.term_end(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_renews_its_term_and_gives_it_up_to_another_holder() {
        let (fence, health) = in_term();
        let elector = leader(|_| Answer::Lease("me"));
        let renewing = tokio::spawn(keep_leading(
            elector,
            health.clone(),
            fence.clone(),
            territory(),
        ));
        tokio::time::sleep(TERM * 3).await;
        assert!(fence.allows_writes(), "renewed terms outlast the first");
        assert!(fence.term_end().unwrap() > Instant::now() + TERM - RETRY_PERIOD * 2);
        assert_eq!(health.report().1, "ready: leading");
        renewing.abort();

        // Someone else holds the lease: the term ends at once.
        let (fence, health) = in_term();
        let elector = leader(|_| Answer::Lease("other"));
        let started = Instant::now();
        keep_leading(elector, health, fence.clone(), territory()).await;
        assert!(started.elapsed() <= RETRY_PERIOD + Duration::from_millis(100));
        assert!(!fence.allows_writes());
    }

    #[tokio::test(start_paused = true)]
    async fn a_standby_is_ready_and_not_ready_while_the_election_is_unreachable() {
        let health = Health::default();
        let fence = WriteFence::closed();
        let elector = leader(|_| Answer::Lease("other"));
        let standing_by = tokio::spawn({
            let (health, fence) = (health.clone(), fence.clone());
            async move { lead(&elector, &health, &fence, &territory()).await }
        });
        tokio::time::sleep(RETRY_PERIOD).await;
        assert_eq!(health.report().1, "ready: standby");
        assert!(!fence.allows_writes(), "a standby never writes");
        standing_by.abort();

        let elector = leader(|_| Answer::Unreachable);
        let standing_by = tokio::spawn({
            let (health, fence) = (health.clone(), fence.clone());
            async move { lead(&elector, &health, &fence, &territory()).await }
        });
        tokio::time::sleep(RETRY_PERIOD).await;
        assert_eq!(health.report().1, "not ready: API server unreachable");
        standing_by.abort();

        // The lease is free (held by "me" from an earlier term): a new term.
        let elector = leader(|_| Answer::Lease("me"));
        let started = Instant::now();
        lead(&elector, &health, &fence, &territory()).await;
        assert!(fence.allows_writes());
        assert!(fence.term_end().unwrap() >= started + TERM);
        assert_eq!(health.report().1, "ready: standby");
    }
}
