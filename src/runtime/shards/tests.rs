use super::*;

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("tenant-{i}")).collect()
}

#[test]
fn owners_are_pinned_so_every_build_agrees() {
    // Changing the hash would move namespaces between running replicas of
    // different builds: these values are part of the contract.
    let owners: Vec<u32> = ["telco", "staging", "production", "edge-1", "default"]
        .iter()
        .map(|ns| owner(ns, 3))
        .collect();
    assert_eq!(owners, PINNED);
    assert_eq!(owner("anything", 1), 0);
    assert_eq!(owner("anything", 0), 0, "no shards count as one");
}

const PINNED: [u32; 5] = [2, 2, 1, 0, 0];

#[test]
fn namespaces_spread_evenly() {
    for count in [2u32, 3, 4, 7] {
        let mut per_shard = vec![0usize; count as usize];
        for ns in names(7000) {
            per_shard[owner(&ns, count) as usize] += 1;
        }
        let fair = 7000 / count as usize;
        for (shard, n) in per_shard.iter().enumerate() {
            assert!(
                n.abs_diff(fair) * 10 < fair,
                "{count} shards: shard {shard} owns {n}, fair is {fair}: {per_shard:?}"
            );
        }
    }
}

#[test]
fn one_more_shard_moves_about_its_share_and_only_to_itself() {
    for count in [1u32, 2, 3, 9] {
        let all = names(6000);
        let moved: Vec<&String> = all
            .iter()
            .filter(|ns| owner(ns, count) != owner(ns, count + 1))
            .collect();
        for ns in &moved {
            assert_eq!(owner(ns, count + 1), count, "{ns} moved between old shards");
        }
        let share = all.len() / (count as usize + 1);
        assert!(
            moved.len().abs_diff(share) * 10 < share,
            "{count} → {}: {} moved, expected about {share}",
            count + 1,
            moved.len()
        );
    }
}

#[test]
fn a_replica_finds_its_shard() {
    assert_eq!(
        Shard::of_replica(3, Some(2), "x"),
        Ok(Shard { index: 2, count: 3 })
    );
    assert_eq!(
        Shard::of_replica(3, None, "strata-4"),
        Ok(Shard { index: 1, count: 3 })
    );
    assert_eq!(Shard::of_replica(1, None, "laptop"), Ok(Shard::ALL));
    let no_ordinal = Shard::of_replica(3, None, "strata-7d9f8").unwrap_err();
    assert!(no_ordinal.contains("set STRATA_SHARD"), "{no_ordinal}");
    let out_of_range = Shard::of_replica(3, Some(3), "x").unwrap_err();
    assert!(
        out_of_range.contains("shard 3 does not exist with 3 shards"),
        "{out_of_range}"
    );
    assert!(Shard::new(0, 0).is_err());
    assert_eq!(Shard::ALL.lease_name("strata-leader"), "strata-leader");
    assert_eq!(
        Shard::new(2, 3).unwrap().lease_name("strata-leader"),
        "strata-leader-2"
    );
}

fn term(index: u32, count: u32, acquired: &str) -> Term {
    Term {
        shard: Shard::new(index, count).unwrap(),
        acquired: acquired.into(),
    }
}

#[test]
fn acknowledgements_round_trip_and_skip_what_they_cannot_read() {
    let terms = vec![term(3, 4, "1764400000000001"), term(0, 4, "17")];
    let encoded = Term::encode_all(&terms);
    assert_eq!(encoded, "4/3@1764400000000001,4/0@17");
    assert_eq!(Term::decode_all(&encoded), terms);
    assert_eq!(
        Term::decode_all("4/3@1, junk, 4/9@2, 0/0@3, /@, 2/1@4"),
        vec![term(3, 4, "1"), term(1, 2, "4")]
    );
    assert_eq!(Term::decode_all(""), vec![]);
}

#[test]
fn a_survey_yields_to_more_shards_and_waits_for_fewer() {
    let mine = term(1, 3, "10");
    let holder = |t: Term, yields_to: Vec<Term>| Holder { term: t, yields_to };
    let others = [
        holder(term(0, 3, "11"), vec![]), // same count: no claim on mine
        holder(term(3, 4, "12"), vec![]), // outranks
        holder(term(0, 2, "13"), vec![mine.clone()]), // acknowledged this term
        holder(term(1, 2, "14"), vec![term(1, 3, "9")]), // an older term of shard 1
    ];
    let survey = Survey::of(&mine, &others);
    assert_eq!(survey.yield_to, vec![term(3, 4, "12")]);
    assert_eq!(survey.wait_for, vec![Shard::new(1, 2).unwrap()]);
}

/// A namespace owned by `index` of `count`.
fn namespace_of(index: u32, count: u32) -> String {
    names(1000)
        .into_iter()
        .find(|ns| owner(ns, count) == index)
        .expect("some namespace")
}

#[tokio::test(start_paused = true)]
async fn a_namespace_is_handed_over_once_its_reconciles_have_ended() {
    let territory = Territory::new(Shard::new(0, 3).unwrap());
    let outranking = term(3, 4, "20");
    let moving = names(1000)
        .into_iter()
        .find(|ns| owner(ns, 3) == 0 && owner(ns, 4) == 3)
        .expect("a namespace that moves from shard 0 of 3 to shard 3 of 4");
    let staying = names(1000)
        .into_iter()
        .find(|ns| owner(ns, 3) == 0 && owner(ns, 4) != 3)
        .expect("a namespace that stays");

    let running = territory.admit(&moving).expect("nobody else claims it yet");
    territory.survey(Survey {
        yield_to: vec![outranking.clone()],
        wait_for: vec![],
    });
    assert_eq!(territory.admit(&moving).err(), Some(Refusal::Yielded));
    assert!(
        territory.admit(&staying).is_ok(),
        "what does not move goes on"
    );

    // A reconcile still runs there: nothing is acknowledged.
    territory.drain(Duration::from_secs(1)).await;
    assert_eq!(territory.acknowledged(), vec![]);
    drop(running);
    territory.drain(Duration::from_secs(1)).await;
    assert_eq!(territory.acknowledged(), vec![outranking.clone()]);

    // The outranking term is gone (its Lease expired): the namespace is back.
    territory.survey(Survey::default());
    assert!(territory.admit(&moving).is_ok());
    assert_eq!(territory.acknowledged(), vec![]);
}

#[tokio::test]
async fn a_namespace_moving_in_waits_for_its_previous_holder() {
    let territory = Territory::new(Shard::new(3, 4).unwrap());
    let previous = Shard::new(0, 3).unwrap();
    territory.survey(Survey {
        yield_to: vec![],
        wait_for: vec![previous],
    });
    let moving_in = names(1000)
        .into_iter()
        .find(|ns| owner(ns, 4) == 3 && owner(ns, 3) == 0)
        .unwrap();
    assert_eq!(territory.admit(&moving_in).err(), Some(Refusal::Waiting));
    assert_eq!(territory.refusal(&namespace_of(1, 3)), None);
    territory.survey(Survey::default());
    assert!(territory.admit(&moving_in).is_ok());
}
