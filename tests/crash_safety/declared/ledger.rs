//! The ledger of each function: its DeploymentRecords form one unbroken
//! `previousRecord` chain from `status.deployedWith.record` (Succeeded) back
//! to a first record, every other one Superseded; no two records of a
//! function for the same content (function version, image, Stack revision,
//! configuration), as nothing is rolled back here; Stack and function
//! versions never go backwards along the chain; each record's digest is the
//! one its Stack applied for that version; `status.history` lists the
//! chain's earlier records in order; and every revision the Deployment ever
//! rolled out (its ReplicaSets) has its record.

use std::collections::{BTreeMap, BTreeSet};

use kube::ResourceExt;
use semver::Version;
use strata::api::function::Provenance;
use strata::api::{DeploymentRecord, NetworkFunction, Outcome};

use super::{Applied, Cluster, FUNCTION_LABEL, HISTORY_LIMIT, STACK_VERSION_LABEL};

/// Checks the records of `nf` and returns its chain, newest first.
pub fn check_records<'c>(
    cluster: &'c Cluster,
    nf: &NetworkFunction,
    deployed: &Provenance,
    applied: &Applied,
    v: &mut Vec<String>,
) -> Vec<&'c DeploymentRecord> {
    let name = nf.name_any();
    let records: BTreeMap<String, &DeploymentRecord> = cluster
        .records
        .iter()
        .filter(|r| r.spec.network_function.name == name)
        .map(|r| (r.name_any(), r))
        .collect();

    let mut chain: Vec<&DeploymentRecord> = Vec::new();
    let mut at = Some(deployed.record.clone());
    while let Some(record_name) = at.take() {
        let Some(record) = records.get(&record_name) else {
            v.push(format!(
                "function {name}: record {record_name} is missing from its chain ({} records before it)",
                chain.len()
            ));
            break;
        };
        if chain.iter().any(|r| r.name_any() == record_name) {
            v.push(format!(
                "function {name}: its records link in a loop at {record_name}"
            ));
            break;
        }
        chain.push(record);
        at = record.spec.previous_record.clone();
    }
    let linked: BTreeSet<String> = chain.iter().map(|r| r.name_any()).collect();
    for (record_name, record) in &records {
        if !linked.contains(record_name) {
            v.push(format!(
                "function {name}: record {record_name} ({} on {} {}, previous {:?}, {:?}) is not in the chain from {}",
                record.spec.version,
                record.spec.stack.name,
                record.spec.stack.version,
                record.spec.previous_record,
                record.status.as_ref().map(|s| s.outcome),
                deployed.record
            ));
        }
    }

    let mut contents = BTreeSet::new();
    for (i, record) in chain.iter().enumerate() {
        let spec = &record.spec;
        let content = (
            spec.version.clone(),
            spec.image.clone(),
            spec.stack.clone().name,
            spec.stack.version.clone(),
            spec.stack.digest.clone(),
            spec.config_digest.clone(),
        );
        if !contents.insert(content.clone()) {
            v.push(format!(
                "function {name}: two records of the same rollout {content:?} (one is {})",
                record.name_any()
            ));
        }
        let outcome = record.status.as_ref().map(|s| s.outcome);
        let want = if i == 0 {
            Outcome::Succeeded
        } else {
            Outcome::Superseded
        };
        if outcome != Some(want) {
            v.push(format!(
                "function {name}: record {} is {outcome:?}, want {want:?}",
                record.name_any()
            ));
        }
        if applied.get(&(spec.stack.name.clone(), spec.stack.version.clone()))
            != Some(&spec.stack.digest)
        {
            v.push(format!(
                "function {name}: record {} has digest {} for stack {} {}, which was applied with another",
                record.name_any(),
                spec.stack.digest,
                spec.stack.name,
                spec.stack.version
            ));
        }
    }
    if let Some(head) = chain.first() {
        let s = &head.spec;
        if (&s.version, &s.image, &s.stack, &s.config_digest)
            != (
                &deployed.version,
                &deployed.image,
                &deployed.stack,
                &deployed.config_digest,
            )
        {
            v.push(format!(
                "function {name}: record {} does not describe status.deployedWith",
                head.name_any()
            ));
        }
    }
    // Oldest to newest, nothing goes backwards (nothing is rolled back here).
    for pair in chain.windows(2) {
        let (newer, older) = (&pair[0].spec, &pair[1].spec);
        let semver = |s: &str| Version::parse(s).ok();
        if semver(&newer.stack.version) < semver(&older.stack.version)
            || semver(&newer.version) < semver(&older.version)
        {
            v.push(format!(
                "function {name}: record {} ({} on {}) follows {} ({} on {})",
                pair[0].name_any(),
                newer.version,
                newer.stack.version,
                pair[1].name_any(),
                older.version,
                older.stack.version
            ));
        }
    }
    chain
}

/// `status.history` lists the chain's earlier records, newest first.
pub fn check_history(
    name: &str,
    history: &[Provenance],
    chain: &[&DeploymentRecord],
    v: &mut Vec<String>,
) {
    let listed: Vec<&str> = history.iter().map(|h| h.record.as_str()).collect();
    let earlier: Vec<String> = chain
        .iter()
        .skip(1)
        .take(HISTORY_LIMIT)
        .map(|r| r.name_any())
        .collect();
    if listed != earlier {
        v.push(format!(
            "function {name}: status.history lists {listed:?}, its earlier records are {earlier:?}"
        ));
    }
}

/// Every revision the function's Deployment rolled out (each ReplicaSet's
/// template) has a record in the chain: no rollout went unrecorded.
pub fn check_revisions(
    cluster: &Cluster,
    name: &str,
    chain: &[&DeploymentRecord],
    v: &mut Vec<String>,
) {
    let recorded: BTreeSet<(String, String, String, String)> = chain
        .iter()
        .map(|r| {
            (
                r.spec.version.clone(),
                r.spec.stack.version.clone(),
                r.spec.stack.digest.clone(),
                r.spec.config_digest.clone(),
            )
        })
        .collect();
    for rs in cluster
        .replica_sets
        .iter()
        .filter(|rs| rs.labels().get(FUNCTION_LABEL).map(String::as_str) == Some(name))
    {
        let annotations = rs
            .spec
            .template
            .as_ref()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.annotations.clone())
            .unwrap_or_default();
        let got = |key: &str| annotations.get(key).cloned().unwrap_or_default();
        let revision = (
            got("strata.dev/version"),
            got(STACK_VERSION_LABEL),
            got("strata.dev/stack-digest"),
            got("strata.dev/config-digest"),
        );
        if !recorded.contains(&revision) {
            v.push(format!(
                "function {name}: ReplicaSet {} rolled out {revision:?}, which has no record in its chain",
                rs.name_any()
            ));
        }
    }
}
