//! Several active replicas, sharded by namespace (`src/runtime/shards.rs`),
//! on the real plane: 3 shards × 2 replicas over 30 namespaces, each with a
//! Stack and a function.
//!
//! 1. Every namespace is written by its shard's leader only, and the
//!    standbys write nothing: checked from each replica's request log (every
//!    mutating request is logged at debug level with its path and outcome)
//!    and its `strata_api_writes_total{shard}`.
//! 2. One shard's leader is killed (SIGKILL) as a rollout starts: the other
//!    shards' namespaces go on (their Leases do not change hands), its own
//!    wait, and its standby takes over within the lease duration.
//! 3. 3 → 4 shards under the next rollout, as a rolling update does it:
//!    four replicas configured with 4 shards start beside the old ones,
//!    which are then stopped one by one. No namespace ever has two writers
//!    (in every namespace, the replicas' writes form successive,
//!    non-overlapping periods), every function converges, and the
//!    DeploymentRecords are exact: one per version, none twice, none lost.
//!
//! Figures printed: the failover time of one shard, and the namespaces
//! moved going 3 → 4 (about a quarter expected) with how long the handover
//! took.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;
use kube::api::ListParams;
use strata::api::{DeploymentRecord, LABEL_NETWORK_FUNCTION, NetworkFunction};
use strata::runtime::shards::owner;
use strata_testkit::{
    Operator, TestNamespace, apply_edge_function, apply_edge_stack, client, install_crds,
    metric_sum, wait_for,
};

const NAMESPACES: usize = 30;
const FUNCTION: &str = "upf";
const LEASE: &str = "strata";
/// `src/runtime/leader.rs`.
const LEASE_DURATION: Duration = Duration::from_secs(15);
const RETRY_PERIOD: Duration = Duration::from_secs(2);
const CONVERGE: Duration = Duration::from_secs(240);

/// One replica: its shard, its configuration, its process.
struct Replica {
    identity: String,
    shards: u32,
    shard: u32,
    operator: Operator,
}

struct Fleet {
    leases: TestNamespace,
    namespaces: Vec<TestNamespace>,
}

impl Fleet {
    fn start(&self, identity: &str, shards: u32, shard: u32) -> Replica {
        let watched: Vec<&str> = self.namespaces.iter().map(TestNamespace::name).collect();
        let operator = Operator::start_with(
            self.leases.name(),
            &[
                ("STRATA_LEADER_ELECTION", "true"),
                ("STRATA_LEASE_NAME", LEASE),
                ("STRATA_LEASE_NAMESPACE", self.leases.name()),
                ("STRATA_IDENTITY", identity),
                ("STRATA_NAMESPACES", &watched.join(",")),
                ("STRATA_SHARDS", &shards.to_string()),
                ("STRATA_SHARD", &shard.to_string()),
            ],
        );
        Replica {
            identity: identity.to_string(),
            shards,
            shard,
            operator,
        }
    }

    /// The holder of each Lease of the election, and its transitions.
    async fn holders(&self) -> BTreeMap<String, (String, i32)> {
        let leases = self
            .leases
            .api::<Lease>()
            .list(&ListParams::default())
            .await
            .expect("the Leases can be listed");
        leases
            .into_iter()
            .map(|lease| {
                let spec = lease.spec.clone().unwrap_or_default();
                (
                    lease.name_any(),
                    (
                        spec.holder_identity.unwrap_or_default(),
                        spec.lease_transitions.unwrap_or_default(),
                    ),
                )
            })
            .collect()
    }

    async fn set_versions(&self, version: &str) {
        futures::future::join_all(
            self.namespaces
                .iter()
                .map(|ns| apply_edge_function(ns, FUNCTION, version)),
        )
        .await;
    }

    /// The namespaces whose function is Ready at `version`.
    async fn ready_at(&self, version: &str) -> Vec<String> {
        let mut ready = Vec::new();
        for ns in &self.namespaces {
            let Ok(Some(nf)) = ns.api::<NetworkFunction>().get_opt(FUNCTION).await else {
                continue;
            };
            let status = serde_json::to_value(&nf.status).unwrap_or_default();
            let is_ready = status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            let current = status["observedGeneration"].as_i64() == nf.metadata.generation;
            if is_ready && current && status["deployedWith"]["version"] == version {
                ready.push(ns.name().to_string());
            }
        }
        ready
    }

    async fn wait_ready_at(&self, version: &str, which: &[String]) {
        wait_for(
            CONVERGE,
            &format!("{} functions Ready at {version}", which.len()),
            || async {
                let ready = self.ready_at(version).await;
                let missing: Vec<&String> = which.iter().filter(|ns| !ready.contains(ns)).collect();
                missing
                    .is_empty()
                    .then_some(())
                    .ok_or(format!("not yet: {missing:?}"))
            },
        )
        .await;
    }

    fn names(&self) -> Vec<String> {
        self.namespaces
            .iter()
            .map(|ns| ns.name().to_string())
            .collect()
    }
}

/// A write a replica sent: when, and in which namespace.
struct Write {
    at: String,
    namespace: String,
}

/// The writes `replica` sent, from its log.
fn writes(replica: &Replica) -> Vec<Write> {
    replica
        .operator
        .logs()
        .lines()
        .filter(|line| line.contains("API write") && line.contains(r#"outcome="sent""#))
        .filter_map(|line| {
            let at = line.split_whitespace().next()?.to_string();
            let path = line.split(" path=").nth(1)?.split_whitespace().next()?;
            let mut parts = path.split('/');
            parts.find(|p| *p == "namespaces")?;
            Some(Write {
                at,
                namespace: parts.next()?.to_string(),
            })
        })
        .collect()
}

/// Checks that each namespace's writes come from successive replicas, never
/// two at once: per namespace, each replica's [first, last] write period
/// ends before the next replica's begins.
fn one_writer_at_a_time(replicas: &[&Replica]) -> Result<(), String> {
    let mut periods: BTreeMap<String, BTreeMap<String, (String, String)>> = BTreeMap::new();
    for replica in replicas {
        for write in writes(replica) {
            let period = periods
                .entry(write.namespace)
                .or_default()
                .entry(replica.identity.clone())
                .or_insert_with(|| (write.at.clone(), write.at.clone()));
            period.0 = period.0.clone().min(write.at.clone());
            period.1 = period.1.clone().max(write.at);
        }
    }
    for (namespace, by_replica) in periods {
        let mut sorted: Vec<(&String, &(String, String))> = by_replica.iter().collect();
        sorted.sort_by(|a, b| a.1.0.cmp(&b.1.0));
        for pair in sorted.windows(2) {
            let ((first, (_, first_end)), (second, (second_start, _))) = (pair[0], pair[1]);
            if second_start <= first_end {
                return Err(format!(
                    "{namespace}: {second} wrote from {second_start} while {first} wrote until {first_end}"
                ));
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn shards_reconcile_their_own_namespaces_fail_over_alone_and_reshard_without_two_writers() {
    if !strata_testkit::plane_available() {
        return;
    }
    let client = client().await;
    install_crds(&client).await;
    let leases = TestNamespace::create(&client, "shard-leases").await;
    let namespaces =
        futures::future::join_all((0..NAMESPACES).map(|_| TestNamespace::create(&client, "shard")))
            .await;
    let fleet = Fleet { leases, namespaces };
    let all = fleet.names();
    let of_shard = |shards: u32, shard: u32| -> Vec<String> {
        all.iter()
            .filter(|ns| owner(ns, shards) == shard)
            .cloned()
            .collect()
    };

    // 1. Three shards of two replicas: each namespace written by its own.
    let mut old: Vec<Replica> = (0..3)
        .flat_map(|shard| ["a", "b"].map(|r| (shard, r)))
        .map(|(shard, r)| fleet.start(&format!("old-{shard}{r}"), 3, shard))
        .collect();
    for ns in &fleet.namespaces {
        apply_edge_stack(ns, "1.0.0").await;
    }
    fleet.set_versions("1.0.0").await;
    fleet.wait_ready_at("1.0.0", &all).await;
    let holders = fleet.holders().await;
    let leader_of = |shard: u32| -> String {
        let (holder, _) = &holders[&format!("{LEASE}-{shard}")];
        holder.clone()
    };
    for replica in &old {
        let leads = leader_of(replica.shard) == replica.identity;
        let expected = format!(
            "ready: {} (shard {} of 3)",
            if leads { "leading" } else { "standby" },
            replica.shard
        );
        replica
            .operator
            .wait_for_readyz(200, &expected, Duration::from_secs(30))
            .await;
        let written = writes(replica);
        let foreign: Vec<&String> = written
            .iter()
            .map(|w| &w.namespace)
            .filter(|ns| owner(ns, replica.shards) != replica.shard)
            .collect();
        assert!(
            foreign.is_empty(),
            "{} (shard {}) wrote in other shards' namespaces: {foreign:?}",
            replica.identity,
            replica.shard
        );
        let (_, metrics) = replica.operator.get("/metrics").await;
        let counted = metric_sum(
            &metrics,
            "strata_api_writes_total",
            &[("shard", &replica.shard.to_string()), ("outcome", "sent")],
        );
        if leads {
            let mine = of_shard(3, replica.shard);
            let reached: std::collections::BTreeSet<&String> =
                written.iter().map(|w| &w.namespace).collect();
            assert_eq!(
                reached.len(),
                mine.len(),
                "{} wrote in {reached:?}, its shard has {mine:?}",
                replica.identity
            );
            assert!(counted > 0.0, "{}: no writes counted", replica.identity);
        } else {
            assert!(written.is_empty(), "standby {} wrote", replica.identity);
            assert_eq!(counted, 0.0, "standby {} counted writes", replica.identity);
        }
    }
    eprintln!(
        "3 shards over {NAMESPACES} namespaces: {} / {} / {}",
        of_shard(3, 0).len(),
        of_shard(3, 1).len(),
        of_shard(3, 2).len()
    );

    // 2. SIGKILL shard 1's leader as a rollout starts.
    let victim = leader_of(1);
    let killed = Instant::now();
    let killed_at = k8s_openapi::jiff::Timestamp::now();
    let index = old.iter().position(|r| r.identity == victim).unwrap();
    old[index].operator.kill();
    old[index].operator.wait_exit(Duration::from_secs(10)).await;
    fleet.set_versions("2.0.0").await;
    let others: Vec<String> = all.iter().filter(|ns| owner(ns, 3) != 1).cloned().collect();
    fleet.wait_ready_at("2.0.0", &others).await;
    let others_done = killed.elapsed();
    let holders_now = fleet.holders().await;
    let shard_one_moved = fleet
        .ready_at("2.0.0")
        .await
        .into_iter()
        .filter(|ns| owner(ns, 3) == 1)
        .count();
    let standby = old
        .iter()
        .find(|r| r.shard == 1 && r.identity != victim)
        .unwrap()
        .identity
        .clone();
    wait_for(
        LEASE_DURATION * 3,
        "shard 1's standby to take its Lease over",
        || async {
            let holders = fleet.holders().await;
            let (holder, _) = &holders[&format!("{LEASE}-1")];
            (*holder == standby)
                .then_some(())
                .ok_or(format!("held by {holder:?}"))
        },
    )
    .await;
    // When the standby took the Lease, by the Lease itself (this waits
    // for the other shards first).
    let taken_over = fleet
        .leases
        .api::<Lease>()
        .get(&format!("{LEASE}-1"))
        .await
        .expect("shard 1's Lease")
        .spec
        .and_then(|spec| spec.acquire_time)
        .map(|t| Duration::try_from(t.0.duration_since(killed_at)).unwrap_or_default())
        .expect("an acquire time");
    fleet.wait_ready_at("2.0.0", &all).await;
    let all_done = killed.elapsed();
    eprintln!(
        "SIGKILL of shard 1's leader: the other shards' {} namespaces Ready at 2.0.0 after \
         {others_done:.1?}, the standby led after {taken_over:.1?} (lease {LEASE_DURATION:?}), \
         all {NAMESPACES} Ready after {all_done:.1?}",
        others.len()
    );
    // The Lease was renewed at most a retry period before the kill; the
    // standby tries once per retry period after it expired.
    assert!(
        taken_over <= LEASE_DURATION + RETRY_PERIOD + Duration::from_secs(3),
        "the standby took {taken_over:?} to lead"
    );
    for shard in [0, 2] {
        let lease = format!("{LEASE}-{shard}");
        assert_eq!(
            holders_now[&lease], holders[&lease],
            "{lease} changed hands while shard 1 failed over"
        );
    }
    if others_done < taken_over {
        assert_eq!(
            shard_one_moved, 0,
            "shard 1's functions moved while it had no leader"
        );
    }

    // 3. 3 → 4 shards under the next rollout, as a rolling update does it.
    let mut new: Vec<Replica> = (0..4)
        .map(|shard| fleet.start(&format!("new-{shard}"), 4, shard))
        .collect();
    fleet.set_versions("3.0.0").await;
    let moving = of_shard(4, 3);
    let mut survivors: Vec<Replica> = Vec::new();
    for mut replica in old.drain(..) {
        if replica.identity == victim {
            survivors.push(replica);
            continue;
        }
        replica.operator.terminate();
        replica.operator.wait_exit(Duration::from_secs(30)).await;
        survivors.push(replica);
    }
    fleet.wait_ready_at("3.0.0", &all).await;
    let holders = fleet.holders().await;
    for shard in 0..4 {
        let (holder, _) = &holders[&format!("{LEASE}-{shard}")];
        assert_eq!(*holder, format!("new-{shard}"), "shard {shard} of 4");
    }
    let everyone: Vec<&Replica> = survivors.iter().chain(new.iter()).collect();
    if let Err(overlap) = one_writer_at_a_time(&everyone) {
        panic!("two writers in one namespace: {overlap}");
    }
    for replica in &new {
        let foreign: Vec<String> = writes(replica)
            .into_iter()
            .map(|w| w.namespace)
            .filter(|ns| owner(ns, replica.shards) != replica.shard)
            .collect();
        assert!(
            foreign.is_empty(),
            "{} wrote outside shard {} of {}: {foreign:?}",
            replica.identity,
            replica.shard,
            replica.shards
        );
    }
    // The moved namespaces were taken over by shard 3 of 4 during the rollout.
    let fourth = writes(&new[3]);
    for ns in &moving {
        assert!(
            fourth.iter().any(|w| &w.namespace == ns),
            "new-3 never wrote in {ns}, which moved to it"
        );
    }
    let handed_over = new[3]
        .operator
        .logs()
        .lines()
        .find(|l| l.contains("became leader"))
        .and_then(|l| l.split_whitespace().next().map(str::to_string));
    let first_write = fourth.iter().map(|w| w.at.clone()).min();
    eprintln!(
        "3 → 4 shards: {} of {NAMESPACES} namespaces moved (a quarter is {:.1}); shard 3 of 4 \
         led at {handed_over:?} and first wrote at {first_write:?}",
        moving.len(),
        NAMESPACES as f64 / 4.0
    );

    // Records exact: one per version, none twice, none lost.
    for ns in &fleet.namespaces {
        let records = ns
            .api::<DeploymentRecord>()
            .list(&ListParams::default().labels(&format!("{LABEL_NETWORK_FUNCTION}={FUNCTION}")))
            .await
            .expect("records can be listed");
        let mut versions: Vec<String> = records.iter().map(|r| r.spec.version.clone()).collect();
        versions.sort();
        assert_eq!(
            versions,
            ["1.0.0", "2.0.0", "3.0.0"],
            "the records of {}/{FUNCTION}",
            ns.name()
        );
    }
    for ns in fleet.namespaces {
        ns.cleanup().await;
    }
    drop(new.drain(..));
    fleet.leases.cleanup().await;
}
