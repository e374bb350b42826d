//! Sharding by namespace: several active replicas, each reconciling the
//! namespaces of its shard.
//!
//! A namespace belongs to exactly one of `count` shards, by rendezvous
//! hashing of its name ([`owner`]): stable across processes and versions,
//! and going from N to N+1 shards moves about 1/(N+1) of the namespaces,
//! all of them to the new shard. Everything a reconcile relates (a Stack
//! and its consumers, dependencies, chains, records) lives in one
//! namespace, so each shard's relations stay local.
//!
//! Each shard has its own leader-election Lease (`<lease>-<index>`; with one
//! shard, `<lease>` as before) and its replicas are standbys for it. The
//! holder of a shard's Lease writes only in its shard's namespaces.
//!
//! **Changing the number of shards.** While replicas configured with
//! different counts run side by side (a rolling update from 3 to 4 shards),
//! a namespace may be claimed by two holders: the shard that owns it under
//! each count. The larger count outranks the smaller, and a namespace moves
//! by a handshake through the Leases, so that it never has two writers:
//!
//! 1. Every holder takes its Lease, then reads all the Leases of the
//!    election (a consistent list) before it writes anything, and again
//!    after each renewal, and finds the live holders configured with
//!    another count.
//! 2. A holder outranked in a namespace (a live holder with a larger count
//!    claims it) stops admitting reconciles there at once, waits for those
//!    in flight to end, and then acknowledges the outranking holder's term
//!    in its own Lease (`strata.dev/yields-to`, written with its next
//!    renewal). Its write fence refuses writes there too.
//! 3. The outranking holder writes in a namespace only once every live
//!    holder it outranks that claims it has acknowledged its current term.
//!
//! Whichever of two holders took its Lease last reads the other's before
//! writing, so one of them always holds back. An acknowledgement names one
//! term (the holder's acquire time): a new holder of the outranking shard
//! waits for its own, so an outranked holder may take a namespace back as
//! soon as the outranking term is gone (its Lease expired, its writes fenced
//! before that). A holder that dies stops claiming once its Lease expires,
//! so no namespace is without an owner for longer than the lease duration
//! (plus a renewal or two of the handshake).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::Instant;

/// The label every Lease of one election carries, valued with the Lease
/// name setting: how a holder finds the others.
pub const LABEL_ELECTION: &str = "strata.dev/election";
/// The annotations of a held Lease: its holder's shard count and index.
pub const ANNOTATION_SHARDS: &str = "strata.dev/shards";
pub const ANNOTATION_SHARD: &str = "strata.dev/shard";
/// The terms of outranking holders a holder has handed namespaces to,
/// comma-separated `count/index@term`.
pub const ANNOTATION_YIELDS_TO: &str = "strata.dev/yields-to";

/// One shard of a configuration: `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// The only shard of an unsharded operator.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Shard `index` of `count`, checked.
    pub fn new(index: u32, count: u32) -> Result<Self, String> {
        if count == 0 {
            return Err("STRATA_SHARDS must be at least 1".into());
        }
        if index >= count {
            return Err(format!(
                "shard {index} does not exist with {count} shards (STRATA_SHARD counts from 0)"
            ));
        }
        Ok(Self { index, count })
    }

    /// This replica's shard: `explicit` (STRATA_SHARD), or else the ordinal
    /// at the end of a StatefulSet pod's name (`strata-4` is shard 4 mod
    /// `count`, so that replicas × shards pods give each shard its standbys).
    pub fn of_replica(count: u32, explicit: Option<u32>, pod_name: &str) -> Result<Self, String> {
        if let Some(index) = explicit {
            return Self::new(index, count);
        }
        if count <= 1 {
            return Self::new(0, count.max(1));
        }
        let ordinal = pod_name
            .rsplit_once('-')
            .and_then(|(_, n)| n.parse::<u32>().ok())
            .ok_or_else(|| {
                format!(
                    "with {count} shards, set STRATA_SHARD or run as a StatefulSet pod \
                     (a name ending in -<ordinal>); {pod_name:?} has no ordinal"
                )
            })?;
        Self::new(ordinal % count, count)
    }

    /// Whether this shard reconciles `namespace`.
    pub fn owns(&self, namespace: &str) -> bool {
        owner(namespace, self.count) == self.index
    }

    /// Whether the operator runs in more than one shard.
    pub fn is_sharded(&self) -> bool {
        self.count > 1
    }

    /// The name of this shard's Lease, from the Lease name setting.
    pub fn lease_name(&self, base: &str) -> String {
        if self.is_sharded() {
            format!("{base}-{}", self.index)
        } else {
            base.to_string()
        }
    }

    /// Whether a holder of this shard may take namespaces from a holder of
    /// `other`'s configuration: the larger count outranks the smaller.
    fn outranks(&self, other: &Shard) -> bool {
        self.count > other.count
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shard {} of {}", self.index, self.count)
    }
}

/// The shard of `count` that owns `namespace`: the highest score of the
/// namespace with each shard (rendezvous hashing). The hash is FNV-1a with
/// a SplitMix64 finish, fixed here, since every replica and `strata
/// shard-of` must agree on it whatever they were built with.
pub fn owner(namespace: &str, count: u32) -> u32 {
    (0..count.max(1))
        .max_by_key(|shard| score(namespace, *shard))
        .unwrap_or(0)
}

fn score(namespace: &str, shard: u32) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for byte in namespace.bytes().chain([0]).chain(shard.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    // SplitMix64's finalizer: FNV's low bits alone do not spread well.
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// A holder's term of a shard, as acknowledged by those it outranks: the
/// shard, and the holder's acquire time (a new holder, a new term).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Term {
    pub shard: Shard,
    pub acquired: String,
}

impl Term {
    /// `count/index@acquired`, as in [`ANNOTATION_YIELDS_TO`].
    pub fn encode(&self) -> String {
        format!(
            "{}/{}@{}",
            self.shard.count, self.shard.index, self.acquired
        )
    }

    /// The terms of a [`ANNOTATION_YIELDS_TO`] value; malformed entries
    /// are skipped (they acknowledge nothing).
    pub fn decode_all(value: &str) -> Vec<Term> {
        value
            .split(',')
            .filter_map(|entry| {
                let (shard, acquired) = entry.trim().split_once('@')?;
                let (count, index) = shard.split_once('/')?;
                Some(Term {
                    shard: Shard::new(index.parse().ok()?, count.parse().ok()?).ok()?,
                    acquired: acquired.to_string(),
                })
            })
            .collect()
    }

    /// Joins terms for [`ANNOTATION_YIELDS_TO`].
    pub fn encode_all(terms: &[Term]) -> String {
        terms.iter().map(Term::encode).collect::<Vec<_>>().join(",")
    }
}

/// Another live holder of a Lease of the election, as this replica read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub term: Term,
    /// The terms it acknowledges.
    pub yields_to: Vec<Term>,
}

/// What the other live holders mean for this replica's term `mine`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Survey {
    /// Outranking holders: their namespaces are theirs.
    pub yield_to: Vec<Term>,
    /// Outranked holders that have not acknowledged `mine`: their
    /// namespaces are not this replica's yet.
    pub wait_for: Vec<Shard>,
}

impl Survey {
    /// Reads the other live holders against this replica's term.
    pub fn of(mine: &Term, others: &[Holder]) -> Self {
        let mut survey = Self::default();
        for other in others {
            if other.term.shard.count == mine.shard.count {
                continue;
            }
            if other.term.shard.outranks(&mine.shard) {
                survey.yield_to.push(other.term.clone());
            } else if !other.yields_to.contains(mine) {
                survey.wait_for.push(other.term.shard);
            }
        }
        survey
    }
}

/// Where this replica may write: its shard's namespaces, less those another
/// holder claims during a change of the shard count. Reconciles are
/// admitted one at a time ([`Territory::admit`]), so that a namespace
/// handed over can be drained of them first. Cheap to clone.
///
/// A namespace comes back as soon as the outranking term is gone from a
/// survey: its holder's Lease expired (and its writes were fenced before
/// that) or another holder took it over, and an acknowledgement names one
/// term, so the new holder waits for its own.
#[derive(Clone)]
pub struct Territory {
    shard: Shard,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    survey: Survey,
    /// Outranking terms whose namespaces have had no reconcile since they
    /// were handed over: what the next renewal acknowledges.
    drained: Vec<Term>,
    /// Reconciles running, per namespace.
    in_flight: HashMap<String, usize>,
}

/// Why a reconcile in a namespace is not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A holder with more shards owns the namespace now.
    Yielded,
    /// The namespace moves here; its previous holder has not let go yet.
    Waiting,
}

/// A reconcile admitted in a namespace; dropping it ends it.
pub struct Admitted {
    namespace: String,
    state: Arc<Mutex<State>>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        if let Some(count) = state.in_flight.get_mut(&self.namespace) {
            *count -= 1;
            if *count == 0 {
                state.in_flight.remove(&self.namespace);
            }
        }
    }
}

impl Territory {
    /// The territory of `shard`, claimed by nobody else until a survey says so.
    pub fn new(shard: Shard) -> Self {
        Self {
            shard,
            state: Arc::default(),
        }
    }

    /// This replica's shard.
    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// Why this replica must not write in `namespace` now, if so.
    pub fn refusal(&self, namespace: &str) -> Option<Refusal> {
        refusal(&lock(&self.state).survey, namespace)
    }

    /// Admits a reconcile in `namespace`, or says why not.
    pub fn admit(&self, namespace: &str) -> Result<Admitted, Refusal> {
        let mut state = lock(&self.state);
        if let Some(refusal) = refusal(&state.survey, namespace) {
            return Err(refusal);
        }
        *state.in_flight.entry(namespace.to_string()).or_default() += 1;
        Ok(Admitted {
            namespace: namespace.to_string(),
            state: self.state.clone(),
        })
    }

    /// Takes a new survey in, at once.
    pub fn survey(&self, survey: Survey) {
        let mut state = lock(&self.state);
        if survey != state.survey {
            tracing::info!("shard holders changed: {}", describe(&survey));
        }
        let surveyed = &survey.yield_to;
        state.drained.retain(|term| surveyed.contains(term));
        state.survey = survey;
    }

    /// Waits until no reconcile runs in a namespace handed over, for at most
    /// `within`; the terms whose namespaces are drained become what the
    /// next renewal acknowledges.
    pub async fn drain(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            {
                let mut state = lock(&self.state);
                let State {
                    survey,
                    drained,
                    in_flight,
                } = &mut *state;
                for term in &survey.yield_to {
                    let busy = in_flight
                        .keys()
                        .any(|ns| owner(ns, term.shard.count) == term.shard.index);
                    if !busy && !drained.contains(term) {
                        drained.push(term.clone());
                    }
                }
                if drained.len() == survey.yield_to.len() {
                    return;
                }
            }
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What this replica's Lease acknowledges in its next renewal.
    pub fn acknowledged(&self) -> Vec<Term> {
        lock(&self.state).drained.clone()
    }
}

fn refusal(survey: &Survey, namespace: &str) -> Option<Refusal> {
    if survey
        .yield_to
        .iter()
        .any(|term| owner(namespace, term.shard.count) == term.shard.index)
    {
        Some(Refusal::Yielded)
    } else if survey
        .wait_for
        .iter()
        .any(|shard| owner(namespace, shard.count) == shard.index)
    {
        Some(Refusal::Waiting)
    } else {
        None
    }
}

fn describe(survey: &Survey) -> String {
    if survey.yield_to.is_empty() && survey.wait_for.is_empty() {
        return "every namespace of this shard is its own".into();
    }
    let mut parts = Vec::new();
    if !survey.yield_to.is_empty() {
        let shards: Vec<_> = survey
            .yield_to
            .iter()
            .map(|t| t.shard.to_string())
            .collect();
        parts.push(format!(
            "{} outrank this shard: the namespaces they own are theirs",
            shards.join(", ")
        ));
    }
    if !survey.wait_for.is_empty() {
        let shards: Vec<_> = survey.wait_for.iter().map(Shard::to_string).collect();
        parts.push(format!(
            "waiting for {} to hand over the namespaces this shard owns",
            shards.join(", ")
        ));
    }
    parts.join("; ")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every update of the state is a whole assignment or a counter step.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
