//! DeploymentRecords: one immutable ledger entry per rollout, named
//! deterministically so that a restarted operator finds, rather than
//! duplicates, the record of a rollout it had started.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};

use kube::{
    ResourceExt,
    api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams},
};

use crate::{
    Result,
    api::{
        DeploymentRecord, DeploymentRecordSpec, DeploymentRecordStatus, LABEL_NETWORK_FUNCTION,
        LABEL_STACK, LABEL_STACK_VERSION, NetworkFunction, Outcome, function::Provenance,
        promotion::Evidence, record::FunctionRef,
    },
    controllers::conditions,
    render::{
        digest::short_hash,
        function::{ResolvedStack, image_pinned},
        label_value,
    },
};

use super::{Context, MANAGER};

/// The name of the record of rolling `target` out after `previous`. The
/// previous record is part of the name, so rolling back to earlier content is
/// a new rollout with a new record, while retrying the same rollout (after a
/// crash) finds the same name.
pub fn record_name(nf: &NetworkFunction, target: &Provenance, previous: Option<&str>) -> String {
    let uid = nf.uid().unwrap_or_default();
    let hash = short_hash(
        &[
            &uid,
            &target.version,
            &target.image,
            &target.stack.name,
            &target.stack.version,
            &target.stack.digest,
            &target.config_digest,
            previous.unwrap_or(""),
        ],
        6,
    );
    format!("{}-{hash}", nf.name_any())
}

/// Where a function's ledger ends, as the records (not the status) tell.
#[derive(Debug, Default)]
pub struct LedgerEnd {
    /// Records of rollouts started after the one the status names, oldest
    /// first, other than the rollout being started now: a process killed
    /// between creating a record and writing the status leaves them behind.
    pub unwritten: Vec<DeploymentRecord>,
    /// The record the rollout being started follows.
    pub previous: Option<String>,
}

/// The record each function's ledger ends with, as this process last read
/// or wrote it, by function uid. Only this process writes the records and
/// statuses while it runs, so once it has seen a function's records agree
/// with its status, only its own failed status writes can make them differ
/// again: the records need not be read for every rollout.
#[derive(Default)]
pub struct Ledgers(std::sync::Mutex<HashMap<String, Ledger>>);

/// What this process knows of one function's ledger.
#[derive(Default)]
struct Ledger {
    /// The record the ledger ends at, once known.
    end: Option<Option<String>>,
    /// How many records the function has, once counted: the retention
    /// check needs no list while the count is within the retention.
    records: Option<usize>,
    /// The function's oldest records, oldest first, as the last list found
    /// them (at most [`PRUNE_AHEAD`]): once the function is at its
    /// retention, each rollout prunes the next of them without listing
    /// every record again. Newer records are created after them, so they
    /// stay the oldest.
    oldest: VecDeque<String>,
}

/// How many of a function's oldest records a list remembers for pruning
/// later without a list: at the retention, one list every this many
/// rollouts rather than one each.
const PRUNE_AHEAD: usize = 10;

impl Ledgers {
    fn ends_at(&self, uid: &str, record: Option<&str>) -> bool {
        self.0.lock().is_ok_and(|known| {
            known
                .get(uid)
                .and_then(|l| l.end.as_ref())
                .is_some_and(|end| end.as_deref() == record)
        })
    }

    /// Remembers that the ledger of the function with `uid` ends at `record`.
    pub fn ended_at(&self, uid: &str, record: Option<String>) {
        if let Ok(mut known) = self.0.lock() {
            known.entry(uid.to_string()).or_default().end = Some(record);
        }
    }

    /// How many records the function with `uid` has, if counted.
    fn records(&self, uid: &str) -> Option<usize> {
        self.0.lock().ok()?.get(uid)?.records
    }

    /// The function with `uid` has `count` records (`None`: not known, and
    /// neither are its oldest).
    fn counted(&self, uid: &str, count: Option<usize>) {
        if let Ok(mut known) = self.0.lock() {
            let ledger = known.entry(uid.to_string()).or_default();
            ledger.records = count;
            if count.is_none() {
                ledger.oldest.clear();
            }
        }
    }

    /// Remembers the oldest records of the function with `uid`, oldest first.
    fn oldest_are(&self, uid: &str, oldest: impl IntoIterator<Item = String>) {
        if let Ok(mut known) = self.0.lock() {
            known.entry(uid.to_string()).or_default().oldest =
                oldest.into_iter().take(PRUNE_AHEAD).collect();
        }
    }

    /// The record to prune next without a list: the oldest remembered,
    /// while the function's count is known to exceed `retention` (never
    /// `current`).
    fn next_to_prune(&self, uid: &str, retention: usize, current: &str) -> Option<String> {
        let known = self.0.lock().ok()?;
        let ledger = known.get(uid)?;
        let oldest = ledger.oldest.front()?;
        (ledger.records? > retention && oldest != current).then(|| oldest.clone())
    }

    /// The record `name`, the oldest remembered, is gone.
    fn pruned(&self, uid: &str, name: &str) {
        if let Ok(mut known) = self.0.lock()
            && let Some(ledger) = known.get_mut(uid)
            && ledger.oldest.front().is_some_and(|o| o == name)
        {
            ledger.oldest.pop_front();
            if let Some(count) = ledger.records.as_mut() {
                *count = count.saturating_sub(1);
            }
        }
    }

    /// A record of the function with `uid` was created.
    fn created(&self, uid: &str) {
        if let Ok(mut known) = self.0.lock()
            && let Some(count) = known.get_mut(uid).and_then(|l| l.records.as_mut())
        {
            *count += 1;
        }
    }

    /// Forgets a deleted function.
    pub fn forget(&self, uid: &str) {
        if let Ok(mut known) = self.0.lock() {
            known.remove(uid);
        }
    }

    /// Whether this process knows nothing of the ledger of the function
    /// with `uid`: it has not read, written or tried to write its records.
    fn untouched(&self, uid: &str) -> bool {
        self.0.lock().is_ok_and(|known| !known.contains_key(uid))
    }
}

/// The functions that were there when this term first listed them, by a
/// hash of their uid. The list is read after the lease is taken, so a
/// function created later has been seen by no other leader, and has no
/// records an earlier process left behind: its first rollout needs no list
/// of the namespace's records. Until the list is known, and for a replica
/// of one shard among several (a namespace may move to it from another
/// replica during its term), every function counts as listed.
#[derive(Default)]
pub struct FirstListed(std::sync::Mutex<Option<HashSet<u64>>>);

impl FirstListed {
    /// The functions with `uids` were there when this term first listed them.
    pub fn were<'a>(&self, uids: impl IntoIterator<Item = &'a str>) {
        if let Ok(mut listed) = self.0.lock() {
            *listed = Some(uids.into_iter().map(uid_hash).collect());
        }
    }

    /// Whether the function with `uid` may have been there before this
    /// term (a hash shared with one that was counts as there too).
    fn holds(&self, uid: &str) -> bool {
        self.0.lock().map_or(true, |listed| {
            listed.as_ref().is_none_or(|l| l.contains(&uid_hash(uid)))
        })
    }

    /// Forgets the function with `uid`: its records were listed, or it was deleted.
    pub fn forget(&self, uid: &str) {
        if let Ok(mut listed) = self.0.lock()
            && let Some(listed) = listed.as_mut()
        {
            listed.remove(&uid_hash(uid));
        }
    }
}

/// A hash of `uid`, the same within this process.
fn uid_hash(uid: &str) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(uid)
}

/// Finds where the ledger of `nf` ends before the rollout of `target`;
/// `recorded` is the record its status names.
///
/// A record is created (and the Deployment may be changed) before the
/// status is written. When the operator dies in between and the function's
/// target moves meanwhile (a new Stack version), the next record must follow
/// the unwritten one rather than the status's: otherwise the ledger
/// branches, the unwritten record stays `Progressing` forever, and a
/// revision that may have reached the pods is missing from the chain.
pub async fn ledger_end(
    ctx: &Context,
    nf: &NetworkFunction,
    ns: &str,
    target: &Provenance,
    recorded: Option<&str>,
) -> Result<LedgerEnd> {
    let uid = nf.uid().unwrap_or_default();
    if ctx.state.ledgers.ends_at(&uid, recorded) {
        return Ok(LedgerEnd {
            unwritten: Vec::new(),
            previous: recorded.map(str::to_string),
        });
    }
    // Created while this process leads, and never rolled out: no records.
    if recorded.is_none()
        && ctx.state.ledgers.untouched(&uid)
        && !ctx.state.first_listed.holds(&uid)
    {
        ctx.state.ledgers.ended_at(&uid, None);
        ctx.state.ledgers.counted(&uid, Some(0));
        return Ok(LedgerEnd::default());
    }
    let api: Api<DeploymentRecord> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!("{LABEL_NETWORK_FUNCTION}={}", nf.name_any());
    let records = api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    let end = follow(&records, &uid, recorded, |previous| {
        record_name(nf, target, previous)
    });
    ctx.state.ledgers.ended_at(&uid, end.previous.clone());
    ctx.state.ledgers.counted(&uid, Some(records.len()));
    ctx.state.first_listed.forget(&uid);
    Ok(end)
}

/// Follows the `previousRecord` links of the function with `uid` from
/// `recorded` for as long as they lead on, stopping at the record named
/// `target_after(previous)` (the rollout being started, already recorded).
/// Where a record has several successors (a ledger branched by an earlier
/// operator version), the latest started is followed.
pub fn follow(
    records: &[DeploymentRecord],
    uid: &str,
    recorded: Option<&str>,
    target_after: impl Fn(Option<&str>) -> String,
) -> LedgerEnd {
    let mut end = LedgerEnd {
        unwritten: Vec::new(),
        previous: recorded.map(str::to_string),
    };
    let mine: Vec<&DeploymentRecord> = records
        .iter()
        .filter(|r| r.spec.network_function.uid == uid)
        .collect();
    // Bounded by the number of records, in case records were edited into a loop.
    for _ in 0..mine.len() {
        let target = target_after(end.previous.as_deref());
        if mine.iter().any(|r| r.name_any() == target) {
            break;
        }
        let next = mine
            .iter()
            .filter(|r| r.spec.previous_record == end.previous)
            .max_by(|a, b| {
                (&a.spec.started_at, a.name_any()).cmp(&(&b.spec.started_at, b.name_any()))
            });
        let Some(next) = next else {
            break;
        };
        end.previous = Some(next.name_any());
        end.unwritten.push((*next).clone());
    }
    end
}

/// The provenance a record describes, as `status.history` lists it.
pub fn provenance(record: &DeploymentRecord) -> Provenance {
    let spec = &record.spec;
    Provenance {
        version: spec.version.clone(),
        image: spec.image.clone(),
        image_pinned: image_pinned(&spec.image),
        stack: spec.stack.clone(),
        config_digest: spec.config_digest.clone(),
        record: record.name_any(),
        deployed_at: spec.started_at.clone(),
        ready_at: record
            .status
            .as_ref()
            .filter(|s| s.outcome == Outcome::Succeeded)
            .and_then(|s| s.completed_at.clone()),
    }
}

/// Creates the record of a rollout, or finds it when it already exists.
/// Returns the record's start time, and whether this call created it.
pub async fn ensure(
    ctx: &Context,
    nf: &NetworkFunction,
    ns: &str,
    target: &Provenance,
    previous: Option<&str>,
    verified_in: &[Evidence],
) -> Result<(String, bool)> {
    let api: Api<DeploymentRecord> = Api::namespaced(ctx.client.clone(), ns);
    let uid = nf.uid().unwrap_or_default();
    let mut record = DeploymentRecord {
        metadata: ObjectMeta {
            name: Some(target.record.clone()),
            namespace: Some(ns.to_string()),
            labels: Some(
                [
                    (LABEL_NETWORK_FUNCTION.to_string(), nf.name_any()),
                    (LABEL_STACK.to_string(), label_value(&target.stack.name)),
                    (
                        LABEL_STACK_VERSION.to_string(),
                        label_value(&target.stack.version),
                    ),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        spec: DeploymentRecordSpec {
            network_function: FunctionRef {
                name: nf.name_any(),
                uid: nf.uid().unwrap_or_default(),
            },
            version: target.version.clone(),
            image: target.image.clone(),
            stack: target.stack.clone(),
            config_digest: target.config_digest.clone(),
            previous_record: previous.map(str::to_string),
            started_at: conditions::now_rfc3339(),
            verified_in: verified_in.to_vec(),
        },
        status: None,
    };
    // Created with its status in the same request: the record has no status
    // subresource (`record::crd`).
    record.status = Some(outcome_status(&record, Outcome::Progressing));
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..PostParams::default()
    };
    // Created without a read first: the record of a new rollout is not
    // there yet, and a name already taken is refused, not overwritten.
    match api.create(&params, &record).await {
        Ok(created) => {
            ctx.state.ledgers.created(&uid);
            Ok((created.spec.started_at, true))
        }
        // Made by another process, before a restart, or by another
        // reconcile of the same rollout: its record stands, and the count
        // is not known to include it.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            ctx.state.ledgers.counted(&uid, None);
            Ok((api.get(&target.record).await?.spec.started_at, false))
        }
        // The record may have been created all the same (an answer lost on
        // the way): its records are listed before the next rollout.
        Err(e) => {
            ctx.state.ledgers.counted(&uid, None);
            Err(e.into())
        }
    }
}

/// The functions whose rollout onto `stack` (this version and digest) has
/// started and not concluded, as their records say: their statuses may not
/// say so yet, when the process that started them was killed first.
pub async fn rolling_out_on(
    ctx: &Context,
    ns: &str,
    stack: &ResolvedStack,
) -> Result<BTreeSet<String>> {
    let api: Api<DeploymentRecord> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!(
        "{LABEL_STACK}={},{LABEL_STACK_VERSION}={}",
        label_value(&stack.name),
        label_value(&stack.version)
    );
    // Every consumer's records on the version: read a page at a time, so
    // that only the names of those still rolling out are held.
    let mut rolling_out = BTreeSet::new();
    let mut params = ListParams::default().labels(&selector).limit(PAGE);
    loop {
        let page = api.list(&params).await?;
        rolling_out.extend(
            page.items
                .into_iter()
                .filter(|r| {
                    r.spec.stack.version == stack.version
                        && r.spec.stack.digest == stack.digest
                        && r.status
                            .as_ref()
                            .is_none_or(|s| s.outcome == Outcome::Progressing)
                })
                .map(|r| r.spec.network_function.name),
        );
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(rolling_out),
        }
    }
}

/// Records read per request when listing a stack version's records.
const PAGE: u32 = 500;

/// Moves the record of `function`'s `rollout` to `outcome` unless it is
/// already final. A record still `Progressing`, as a rollout's record is
/// until it concludes, is moved without a read: by a patch that holds only
/// while its outcome is `Progressing`. Otherwise (a succeeded rollout being
/// superseded, or a record another process concluded) it is read first.
pub async fn conclude(
    ctx: &Context,
    ns: &str,
    function: &str,
    rollout: &Provenance,
    outcome: Outcome,
) -> Result<()> {
    let api: Api<DeploymentRecord> = Api::namespaced(ctx.client.clone(), ns);
    let name = rollout.record.as_str();
    if outcome != Outcome::Superseded {
        let status = concluded_status(&Rollout::of(function, rollout), outcome);
        match api
            .patch(name, &PatchParams::default(), &from_progressing(&status))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            // The test failed (422): the record is no longer Progressing, or
            // has no status; what it says decides below.
            Err(kube::Error::Api(s)) if s.code == 422 || s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let Some(record) = api.get_opt(name).await? else {
        return Ok(());
    };
    let current = record
        .status
        .as_ref()
        .map(|s| s.outcome)
        .unwrap_or_default();
    let settled = match current {
        Outcome::Progressing => false,
        // A succeeded rollout that is replaced becomes Superseded; nothing else moves on.
        Outcome::Succeeded => outcome != Outcome::Superseded,
        Outcome::Failed | Outcome::Superseded => true,
    };
    if settled || current == outcome {
        return Ok(());
    }
    set_outcome(ctx, &record, outcome).await
}

/// Writes `outcome` into the status of `record`, in one merge patch of the
/// record itself (it has no status subresource). A status only ever gains
/// fields, so merging leaves nothing stale behind, except the
/// `observedGeneration` of a record written before there was no
/// subresource: this write moves the generation, and kstatus would read
/// the record as InProgress for ever, so it is removed.
async fn set_outcome(ctx: &Context, record: &DeploymentRecord, outcome: Outcome) -> Result<()> {
    let api: Api<DeploymentRecord> =
        Api::namespaced(ctx.client.clone(), &record.namespace().unwrap_or_default());
    let mut patch = serde_json::json!({"status": outcome_status(record, outcome)});
    patch["status"]["observedGeneration"] = serde_json::Value::Null;
    api.patch(
        &record.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// The status of `record` at `outcome`, from the status it has. Neither the
/// status nor its conditions carry an observed generation: the spec never
/// changes, and every status write moves the generation of an object
/// without a status subresource.
fn outcome_status(record: &DeploymentRecord, outcome: Outcome) -> DeploymentRecordStatus {
    let before = record.status.clone().unwrap_or_default();
    status_after(&before, &Rollout::recorded(record), outcome)
}

/// The status a record moves to from `Progressing` at `outcome`.
fn concluded_status(rollout: &Rollout<'_>, outcome: Outcome) -> DeploymentRecordStatus {
    status_after(&DeploymentRecordStatus::default(), rollout, outcome)
}

/// A JSON patch that replaces a record's status by `status` only while its
/// outcome is `Progressing` (the API server refuses it with 422 otherwise).
/// The whole status is replaced, so no `observedGeneration` of a record
/// written before there was no status subresource is left behind.
fn from_progressing(status: &DeploymentRecordStatus) -> Patch<()> {
    let operations = serde_json::json!([
        {"op": "test", "path": "/status/outcome", "value": Outcome::Progressing},
        {"op": "replace", "path": "/status", "value": status},
    ]);
    Patch::Json(serde_json::from_value(operations).expect("a test and a replace are a JSON patch"))
}

/// What a record's conditions name: the rollout of a function's version
/// onto a stack version.
struct Rollout<'a> {
    function: &'a str,
    version: &'a str,
    stack: &'a str,
    stack_version: &'a str,
}

impl<'a> Rollout<'a> {
    fn of(function: &'a str, rollout: &'a Provenance) -> Self {
        Self {
            function,
            version: &rollout.version,
            stack: &rollout.stack.name,
            stack_version: &rollout.stack.version,
        }
    }

    fn recorded(record: &'a DeploymentRecord) -> Self {
        Self {
            function: &record.spec.network_function.name,
            version: &record.spec.version,
            stack: &record.spec.stack.name,
            stack_version: &record.spec.stack.version,
        }
    }
}

/// The status after `before` at `outcome`, for `rollout`'s record.
fn status_after(
    before: &DeploymentRecordStatus,
    rollout: &Rollout<'_>,
    outcome: Outcome,
) -> DeploymentRecordStatus {
    // The window it ran in as its function's current rollout, Succeeded:
    // what an upstream promotion gate measures the soak by.
    let succeeded_at = match outcome {
        Outcome::Succeeded => Some(conditions::now_rfc3339_millis()),
        Outcome::Superseded if before.outcome == Outcome::Succeeded => {
            before.succeeded_at.clone().or(before.completed_at.clone())
        }
        _ => None,
    };
    let mut status = DeploymentRecordStatus {
        outcome,
        completed_at: (outcome != Outcome::Progressing).then(conditions::now_rfc3339),
        superseded_at: (outcome == Outcome::Superseded && succeeded_at.is_some())
            .then(conditions::now_rfc3339_millis),
        succeeded_at,
        ..DeploymentRecordStatus::default()
    };
    let message = format!(
        "rollout of {} {} on stack {} {}",
        rollout.function, rollout.version, rollout.stack, rollout.stack_version
    );
    match outcome {
        Outcome::Progressing => conditions::progressing(
            &mut status.conditions,
            "Progressing",
            format!("{message} is in progress"),
            None,
        ),
        Outcome::Succeeded => conditions::ready(
            &mut status.conditions,
            "Succeeded",
            format!("{message} succeeded"),
            None,
        ),
        Outcome::Superseded => conditions::ready(
            &mut status.conditions,
            "Superseded",
            format!("{message} was superseded by a later rollout"),
            None,
        ),
        Outcome::Failed => conditions::stalled(
            &mut status.conditions,
            "RolloutFailed",
            format!("{message} exceeded its progress deadline"),
            None,
        ),
    }
    status
}

/// Deletes the oldest records of the function beyond the retention setting,
/// never the record of the current rollout. Lists them only when this
/// process does not know their count to be within the retention, nor
/// which are the oldest: at the retention, one list serves the next
/// [`PRUNE_AHEAD`] rollouts.
pub async fn prune(ctx: &Context, nf: &NetworkFunction, ns: &str, current: &str) -> Result<()> {
    let uid = nf.uid().unwrap_or_default();
    let retention = ctx.settings.record_retention.max(1);
    let api: Api<DeploymentRecord> = Api::namespaced(ctx.client.clone(), ns);
    while let Some(old) = ctx.state.ledgers.next_to_prune(&uid, retention, current) {
        delete(&api, &old).await?;
        ctx.state.ledgers.pruned(&uid, &old);
    }
    if ctx
        .state
        .ledgers
        .records(&uid)
        .is_some_and(|n| n <= retention)
    {
        return Ok(());
    }
    let selector = format!("{LABEL_NETWORK_FUNCTION}={}", nf.name_any());
    let mut records = api
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    // Counted before deleting: a failed delete leaves the count high, and
    // the next rollout lists again.
    ctx.state.ledgers.counted(&uid, Some(records.len()));
    if records.len() <= retention {
        return Ok(());
    }
    sort_oldest_first(&mut records);
    let excess = records.len() - retention;
    let mut left = records.len();
    let mut oldest = records
        .iter()
        .map(ResourceExt::name_any)
        .filter(|name| name != current);
    for old in oldest.by_ref().take(excess) {
        delete(&api, &old).await?;
        left -= 1;
        ctx.state.ledgers.counted(&uid, Some(left));
    }
    ctx.state.ledgers.oldest_are(&uid, oldest);
    Ok(())
}

/// Deletes the record `name` (already gone is as good).
async fn delete(api: &Api<DeploymentRecord>, name: &str) -> Result<()> {
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => {
            tracing::info!(record = %name, "pruned a DeploymentRecord beyond retention");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Sorts the records of one function oldest first: by start time and, among
/// records that started within the same second (the resolution of start and
/// creation times), by their `previousRecord` chain, which is the order the
/// rollouts happened in.
pub fn sort_oldest_first(records: &mut [DeploymentRecord]) {
    let previous: HashMap<String, Option<String>> = records
        .iter()
        .map(|r| (r.name_any(), r.spec.previous_record.clone()))
        .collect();
    // How many of these records precede each one in its chain (bounded, in
    // case records were edited into a loop).
    let depth = |record: &DeploymentRecord| {
        let mut depth = 0;
        let mut at = record.spec.previous_record.as_ref();
        while let Some(name) = at.filter(|name| previous.contains_key(*name)) {
            depth += 1;
            if depth > previous.len() {
                break;
            }
            at = previous[name].as_ref();
        }
        depth
    };
    records.sort_by_cached_key(|r| (r.spec.started_at.clone(), depth(r)));
}

#[cfg(test)]
mod tests;
