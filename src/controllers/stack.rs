//! The Stack controller: renders a Stack, checks that its version is
//! immutable and that every resource is servable and in scope, dry-runs every
//! write and then makes it with server-side apply (as the Stack's
//! ServiceAccount when it names one), prunes what was dropped, corrects
//! drift, and protects the Stack from deletion while NetworkFunctions consume
//! it.

mod redact;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    ops::ControlFlow,
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{
    Client, Resource, ResourceExt,
    api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams},
    discovery::{ApiCapabilities, Scope, pinned_kind},
    runtime::{controller::Action, events::EventType, reflector::ObjectRef},
};
use serde_json::{Value, json};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{
    apply::write_status,
    conditions,
    skeleton::{self, Reconciler},
};
use crate::{
    Error, Result,
    api::{
        NetworkFunction, Stack, StackStatus,
        stack::{AppliedRevision, Consumers, ManagedObject},
    },
    render::{
        digest::declared_fingerprint,
        stack::{RenderedStack, add_stack_labels, default_namespace, render_stack},
    },
    runtime::fence,
};
use redact::SecretValues;

/// Field manager of everything the Stack controller writes.
pub const MANAGER: &str = "strata.dev/stack";
/// Holds a Stack's deletion until no NetworkFunction consumes it.
pub const FINALIZER: &str = "strata.dev/stack-protection";

/// What the Stack controller remembers between reconciles. Losing it (a
/// restart) costs a read of each managed object, and a re-apply of those
/// whose values differ from the declaration, never correctness.
#[derive(Default)]
pub struct State {
    /// A client per ServiceAccount that Stacks are applied as.
    impersonated: Mutex<HashMap<String, Client>>,
    discovery: Mutex<HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>>,
    /// Fingerprint of each managed object as it was right after Strata applied it.
    fingerprints: Mutex<HashMap<(String, ManagedObject), String>>,
    /// When each Stack's objects were last compared with their fingerprints.
    last_drift_check: Mutex<HashMap<String, Instant>>,
    /// When each Stack's status was last written.
    last_status_write: Mutex<HashMap<String, Instant>>,
}

/// Consumer counts alone are written at most this often per Stack: while a
/// hundred consumers adopt a version, one write a second says how far they
/// are, instead of one write per consumer.
const CONSUMER_COUNT_INTERVAL: Duration = Duration::from_secs(1);

/// A resource ready to apply: resolved kind and scope, namespace defaulted, labelled.
struct Planned {
    /// Its position in `spec.resources`.
    index: usize,
    resource: ApiResource,
    namespaced: bool,
    id: ManagedObject,
    object: Value,
}

type Context = super::Context<State>;
/// The Stack controller's context.
pub type Ctx = Arc<Context>;

/// The Stack controller, for the skeleton.
pub struct Stacks;

impl Reconciler for Stacks {
    type Kind = Stack;
    type Status = StackStatus;
    type State = State;
    const MANAGER: &'static str = MANAGER;
    const FAILURES: &'static [&'static str] = &[conditions::STALLED];

    fn status(stack: &Stack) -> Option<&StackStatus> {
        stack.status.as_ref()
    }
    fn conditions(status: &StackStatus) -> &[Condition] {
        &status.conditions
    }
    fn conditions_mut(status: &mut StackStatus) -> &mut Vec<Condition> {
        &mut status.conditions
    }
    fn observed(status: &mut StackStatus, generation: Option<i64>) {
        status.observed_generation = generation;
    }

    /// A deleted Stack is finalized; a new one gets the finalizer first
    /// (the patch is an event of its own: the next reconcile applies); a
    /// suspended one is left as it is.
    async fn admit(stack: &Stack, ctx: &Context, ns: &str) -> Result<ControlFlow<Action>> {
        let api: Api<Stack> = Api::namespaced(ctx.client.clone(), ns);
        if stack.meta().deletion_timestamp.is_some() {
            return finalize(stack, ctx, &api, ns).await.map(ControlFlow::Break);
        }
        if !stack.finalizers().iter().any(|f| f == FINALIZER) {
            let mut finalizers = stack.finalizers().to_vec();
            finalizers.push(FINALIZER.into());
            let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": stack.resource_version()}});
            api.patch(
                &stack.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
            return Ok(ControlFlow::Break(Action::await_change()));
        }
        if stack.spec.suspend {
            return Ok(ControlFlow::Break(Action::await_change()));
        }
        Ok(ControlFlow::Continue(()))
    }

    async fn converge(
        stack: &Stack,
        ctx: &Context,
        ns: &str,
        status: &mut StackStatus,
    ) -> Result<Action> {
        let before = status.version.clone();
        let applied = converge(stack, ctx, ns, status).await;
        status.consumers = Some(consumers(stack, ctx, ns, status.version.as_deref()));
        applied?;
        let version = status.version.clone().unwrap_or_default();
        let digest = status.digest.clone().unwrap_or_default();
        let message = format!(
            "version {version} applied: {} objects, digest {digest}",
            status.inventory.len(),
        );
        conditions::ready(
            &mut status.conditions,
            "Applied",
            message,
            stack.meta().generation,
        );
        if status.version != before {
            let note = format!("applied version {version} ({digest})");
            ctx.publish(stack, EventType::Normal, "VersionApplied", "Apply", note)
                .await;
        }
        Ok(Action::requeue(ctx.settings.resync_interval))
    }

    /// A write that only changes the consumer counts waits while one was
    /// written less than [`CONSUMER_COUNT_INTERVAL`] ago.
    async fn defer_write(
        ctx: &Context,
        stack: &Stack,
        old: &StackStatus,
        new: &StackStatus,
    ) -> Option<Action> {
        let uid = stack.uid().unwrap_or_default();
        consumers_wait(ctx, &uid, old, new)
            .await
            .map(Action::requeue)
    }

    async fn settled(
        ctx: &Context,
        stack: &Stack,
        ns: &str,
        _old: &StackStatus,
        new: &StackStatus,
        written: bool,
    ) {
        if written {
            let uid = stack.uid().unwrap_or_default();
            locked(&ctx.state.last_status_write).insert(uid, Instant::now());
        }
        record_consumer_metrics(ctx, ns, stack, new);
    }

    /// A Stalled Stack whose fix is made outside it (granting the
    /// ServiceAccount a permission, installing a CRD) is looked at again
    /// periodically.
    fn recheck(ctx: &Context, error: &Error) -> Option<Duration> {
        matches!(error, Error::Forbidden(_) | Error::UnknownKind(_))
            .then(|| ctx.settings.resync_interval.min(RECHECK_OUTSIDE_FIX))
    }
}

/// How often a Stack stalled by something outside its spec is tried again.
const RECHECK_OUTSIDE_FIX: Duration = Duration::from_secs(60);

/// Reconciles one Stack.
pub async fn reconcile(stack: Arc<Stack>, ctx: Ctx) -> Result<Action> {
    skeleton::reconcile::<Stacks>(stack, ctx).await
}

/// What to do after a failed reconcile (see [`Stacks::recheck`]).
pub fn error_policy(stack: Arc<Stack>, error: &Error, ctx: Ctx) -> Action {
    skeleton::error_policy::<Stacks>(stack, error, ctx)
}

/// Forgets what this process remembers of a deleted Stack.
pub fn forget(ctx: &Context, stack: &Stack) {
    ctx.forget(stack);
    let uid = stack.uid().unwrap_or_default();
    locked(&ctx.state.fingerprints).retain(|(owner, _), _| owner != &uid);
    locked(&ctx.state.last_drift_check).remove(&uid);
    locked(&ctx.state.last_status_write).remove(&uid);
}

/// The map behind `mutex`: no code panics while holding one, and a map
/// half-updated would still hold only whole entries.
fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long to hold back a status write that only changes the consumer
/// counts; `None` when it is due (or more than the counts changed).
async fn consumers_wait(
    ctx: &Context,
    uid: &str,
    old: &StackStatus,
    new: &StackStatus,
) -> Option<Duration> {
    let counts_only = StackStatus {
        consumers: old.consumers.clone(),
        ..new.clone()
    } == *old;
    if !counts_only {
        return None;
    }
    let last = *locked(&ctx.state.last_status_write).get(uid)?;
    CONSUMER_COUNT_INTERVAL.checked_sub(last.elapsed())
}

/// Renders, validates and applies the Stack, updating `status` with what was applied.
async fn converge(stack: &Stack, ctx: &Context, ns: &str, status: &mut StackStatus) -> Result<()> {
    let rendered = render_stack(&stack.spec)?;
    check_immutable(&rendered, status)?;
    let planned = plan(stack, ctx, ns, &rendered).await?;

    let applier = applier(stack, ctx, ns).await?;
    let content_changed = status.digest.as_deref() != Some(rendered.digest.as_str())
        || status.version.as_deref() != Some(rendered.version.as_str());
    let stack_uid = stack.uid().unwrap_or_default();
    let writes: Vec<(&Planned, Cause)> = if content_changed {
        planned.iter().map(|item| (item, Cause::Content)).collect()
    } else if drift_check_due(ctx, &stack_uid).await {
        let mut drifted = Vec::new();
        for item in &planned {
            if let Some(cause) = needs_apply(stack, ctx, &applier, item).await? {
                drifted.push((item, cause));
            }
        }
        drifted
    } else {
        Vec::new()
    };
    let inventory: BTreeSet<ManagedObject> = planned.iter().map(|p| p.id.clone()).collect();
    let mut pruned = Vec::new();
    if stack.spec.prune {
        for gone in status.inventory.iter().filter(|o| !inventory.contains(o)) {
            if let Some(target) = resolve_managed(ctx, ns, gone).await? {
                pruned.push(target);
            }
        }
    }

    // Every write is made as a dry run first, so that one the API server
    // refuses (the ServiceAccount's permission boundary, validation) stops
    // the Stack before anything changed. Dry runs are made only when
    // something is to be written, never at steady state.
    for (item, _) in &writes {
        apply(&applier, item, true).await?;
    }
    for target in &pruned {
        delete(stack, &applier, target, true).await?;
    }
    for (item, cause) in &writes {
        let applied = apply(&applier, item, false).await?;
        if *cause == Cause::Drift {
            tracing::info!(kind = %item.id.kind, name = %item.id.name, stack = %stack.name_any(), "corrected drift of a managed object");
            ctx.metrics
                .drift_corrections
                .with_label_values(&[ns, &stack.name_any()])
                .inc();
        }
        let fingerprint = declared_fingerprint(
            &item.object,
            &serde_json::to_value(&applied).unwrap_or_default(),
        );
        locked(&ctx.state.fingerprints).insert((stack_uid.clone(), item.id.clone()), fingerprint);
    }
    for target in &pruned {
        delete(stack, &applier, target, false).await?;
    }
    status.inventory = inventory.into_iter().collect();
    status.outputs = rendered.outputs.clone();
    if content_changed {
        remember(status, &rendered, stack.spec.history_limit);
    }
    status.version = Some(rendered.version);
    status.digest = Some(rendered.digest);
    Ok(())
}

/// Refuses a version whose content differs from what was applied under it.
fn check_immutable(rendered: &RenderedStack, status: &StackStatus) -> Result<()> {
    match status
        .history
        .iter()
        .find(|h| h.version == rendered.version)
    {
        Some(applied) if applied.digest != rendered.digest => Err(Error::VersionConflict(format!(
            "version {} was applied with digest {} and its content now has digest {}; an applied version is immutable, so bump spec.version",
            rendered.version, applied.digest, rendered.digest
        ))),
        _ => Ok(()),
    }
}

/// Puts the applied version first in the history (a rollback moves an earlier
/// entry to the front and keeps its first application time).
fn remember(status: &mut StackStatus, rendered: &RenderedStack, limit: i32) {
    let entry = match status
        .history
        .iter()
        .position(|h| h.version == rendered.version)
    {
        Some(i) => status.history.remove(i),
        None => AppliedRevision {
            version: rendered.version.clone(),
            digest: rendered.digest.clone(),
            applied_at: conditions::now_rfc3339(),
        },
    };
    status.history.insert(0, entry);
    status
        .history
        .truncate(usize::try_from(limit.max(1)).unwrap_or(1));
}

/// Resolves every resource's kind and scope before anything is applied, so a
/// bad resource leaves the cluster untouched.
async fn plan(
    stack: &Stack,
    ctx: &Context,
    ns: &str,
    rendered: &RenderedStack,
) -> Result<Vec<Planned>> {
    let mut planned = Vec::with_capacity(rendered.resources.len());
    for (index, resource) in rendered.resources.iter().enumerate() {
        let mut object = resource.clone();
        let api_version = object["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let kind = object["kind"].as_str().unwrap_or_default().to_string();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version.clone()),
        };
        let gvk = GroupVersionKind::gvk(&group, &version, &kind);
        let (resource, caps) = discover(ctx, &gvk).await.map_err(|e| match e {
            Error::Kube(kube::Error::Discovery(_)) => unknown_kind(index, &api_version, &kind),
            Error::Kube(kube::Error::Api(s)) if s.code == 404 => {
                unknown_kind(index, &api_version, &kind)
            }
            other => other,
        })?;
        let namespaced = caps.scope == Scope::Namespaced;
        if namespaced {
            default_namespace(&mut object, ns);
        }
        let namespace = object["metadata"]["namespace"].as_str().map(str::to_string);
        if !ctx.settings.allow_cross_namespace {
            if !namespaced {
                return Err(Error::OutOfScope(format!(
                    "spec.resources[{index}] ({kind}/{name}) is cluster-scoped; the operator only allows objects in the Stack's namespace {ns}"
                )));
            }
            if namespace.as_deref() != Some(ns) {
                return Err(Error::OutOfScope(format!(
                    "spec.resources[{index}] ({kind}/{name}) is in namespace {}; the operator only allows objects in the Stack's namespace {ns}",
                    namespace.unwrap_or_default()
                )));
            }
        }
        label(
            &mut object,
            stack,
            namespaced && namespace.as_deref() == Some(ns),
        );
        planned.push(Planned {
            index,
            resource,
            namespaced,
            id: ManagedObject {
                api_version,
                kind,
                namespace: namespace.filter(|_| namespaced),
                name,
            },
            object,
        });
    }
    Ok(planned)
}

fn unknown_kind(index: usize, api_version: &str, kind: &str) -> Error {
    Error::UnknownKind(format!(
        "spec.resources[{index}]: the API server does not serve kind {kind} in {api_version}; install its CustomResourceDefinition or fix apiVersion/kind"
    ))
}

/// Resolves a kind through discovery, caching hits (misses are retried, so a
/// CRD installed later is found).
async fn discover(ctx: &Context, gvk: &GroupVersionKind) -> Result<(ApiResource, ApiCapabilities)> {
    if let Some(found) = locked(&ctx.state.discovery).get(gvk) {
        return Ok(found.clone());
    }
    let found = pinned_kind(&ctx.client, gvk).await?;
    locked(&ctx.state.discovery).insert(gvk.clone(), found.clone());
    Ok(found)
}

/// Adds the Stack labels (as valid label values: a version such as
/// `1.0.0+build.7` is not one) and, for objects in the Stack's namespace, an
/// owner reference.
fn label(object: &mut Value, stack: &Stack, owned: bool) {
    add_stack_labels(object, &stack.name_any(), &stack.spec.version);
    if owned && let Some(owner) = stack.controller_owner_ref(&()) {
        object["metadata"]["ownerReferences"] = json!([owner]);
    }
}

/// Whether this Stack's objects are due for a drift check.
async fn drift_check_due(ctx: &Context, stack_uid: &str) -> bool {
    let mut last = locked(&ctx.state.last_drift_check);
    let due = last.get(stack_uid).is_none_or(|at| {
        at.elapsed()
            >= ctx
                .settings
                .resync_interval
                .saturating_sub(Duration::from_secs(1))
    });
    if due {
        last.insert(stack_uid.to_string(), Instant::now());
    }
    due
}

/// Why a planned resource is applied.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// The Stack's content changed.
    Content,
    /// Someone else edited or deleted the object.
    Drift,
    /// The object is there, but this process has not applied it yet (it
    /// restarted) and its values differ from the declared ones (maybe only
    /// as the API server normalised them): applied once, not counted as drift.
    Unremembered,
}

/// Whether `item` must be applied again: the live object no longer matches
/// what Strata applied (edited or deleted by someone else: drift), or this
/// process does not know what it applied and the live values are not the
/// declared ones. A live object that matches the declaration after a
/// restart is remembered as it is, without a write.
async fn needs_apply(
    stack: &Stack,
    ctx: &Context,
    applier: &Applier,
    item: &Planned,
) -> Result<Option<Cause>> {
    let key = (stack.uid().unwrap_or_default(), item.id.clone());
    let remembered = locked(&ctx.state.fingerprints).get(&key).cloned();
    let live = dynamic_api(&applier.client, item)
        .get_opt(&item.id.name)
        .await
        .map_err(|e| refused(&applier.who, &item.id, "get", e))?;
    let Some(live) = live else {
        return Ok(Some(Cause::Drift));
    };
    let now = declared_fingerprint(
        &item.object,
        &serde_json::to_value(&live).unwrap_or_default(),
    );
    Ok(match remembered {
        Some(fingerprint) => (now != fingerprint).then_some(Cause::Drift),
        None if now == declared_fingerprint(&item.object, &item.object) => {
            locked(&ctx.state.fingerprints).insert(key, now);
            None
        }
        None => Some(Cause::Unremembered),
    })
}

/// Server-side applies `item` (as a dry run when `dry_run`). A refusal
/// names the resource: 403 is `Forbidden`, an object the API server finds
/// invalid is `InvalidSpec`.
async fn apply(applier: &Applier, item: &Planned, dry_run: bool) -> Result<DynamicObject> {
    let mut params = PatchParams::apply(MANAGER).force();
    params.dry_run = dry_run;
    dynamic_api(&applier.client, item)
        .patch(&item.id.name, &params, &Patch::Apply(&item.object))
        .await
        .map_err(|e| match SecretValues::of(&item.object).redact_error(e) {
            kube::Error::Api(s) if s.code == 400 || s.code == 422 || cannot_convert(&s) => {
                Error::InvalidField(format!(
                    "spec.resources[{}] ({}/{}) was refused by the API server: {}",
                    item.index, item.id.kind, item.id.name, s.message
                ))
            }
            e => refused(&applier.who, &item.id, "patch", e),
        })
}

/// Whether the API server could not read the object as its kind: a value of
/// the wrong type (a number in a Secret's `stringData`), `data` that is not
/// base64. Server-side apply reports these as 500, but they are the spec's
/// fault and retrying cannot help.
fn cannot_convert(status: &kube::core::Status) -> bool {
    status.code == 500
        && (status
            .message
            .starts_with("failed to create typed patch object")
            || status.message.starts_with("failed to convert new object"))
}

fn dynamic_api(client: &Client, item: &Planned) -> Api<DynamicObject> {
    match (&item.id.namespace, item.namespaced) {
        (Some(ns), true) => Api::namespaced_with(client.clone(), ns, &item.resource),
        _ => Api::all_with(client.clone(), &item.resource),
    }
}

/// Whom a Stack's objects are applied as, and its client.
struct Applier {
    client: Client,
    /// "ServiceAccount ns/name" or "the operator", for messages.
    who: String,
}

/// A Stack is applied as its `serviceAccountName`, else as the operator's
/// default ServiceAccount (`STRATA_DEFAULT_SERVICE_ACCOUNT`) in the Stack's
/// namespace, else as the operator.
async fn applier(stack: &Stack, ctx: &Context, ns: &str) -> Result<Applier> {
    let account = stack
        .spec
        .service_account_name
        .as_deref()
        .or(ctx.settings.default_service_account.as_deref());
    Ok(match account {
        Some(sa) => Applier {
            client: impersonating(ctx, ns, sa)?,
            who: format!("ServiceAccount {ns}/{sa}"),
        },
        None => Applier {
            client: ctx.client.clone(),
            who: "the operator".to_string(),
        },
    })
}

/// Maps a 403 to `Forbidden`, naming the ServiceAccount, the verb the API
/// server denied (`verb` when it does not say) and the object.
fn refused(who: &str, object: &ManagedObject, verb: &str, error: kube::Error) -> Error {
    match &error {
        kube::Error::Api(s) if s.code == 403 => {
            let verb = denied_verb(&s.message).unwrap_or(verb);
            let target = match &object.namespace {
                Some(n) => format!("{} {n}/{}", object.kind, object.name),
                None => format!("{} {}", object.kind, object.name),
            };
            Error::Forbidden(format!(
                "{who} may not {verb} {target}; grant it that permission or remove the resource from spec.resources"
            ))
        }
        _ => Error::Kube(error),
    }
}

/// The verb in an RBAC denial: `... cannot create resource "secrets" ...`. A
/// server-side apply is authorized as `patch`, and as `create` too when it
/// creates the object, so the request's method does not say which was denied.
fn denied_verb(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once(" cannot ")?;
    let (verb, rest) = rest.split_once(' ')?;
    rest.starts_with("resource").then_some(verb)
}

/// Resolves a managed object's kind for deleting it; `None` when the kind is
/// gone (its CRD was removed), and so are its objects, and when the object is
/// outside the scope the operator allows: the inventory is read from the
/// status, which whoever may write `stacks/status` could fill with any
/// object, and the operator must not delete for a Stack what it would not
/// have applied for it.
async fn resolve_managed(
    ctx: &Context,
    ns: &str,
    object: &ManagedObject,
) -> Result<Option<Planned>> {
    let (group, version) = match object.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", object.api_version.as_str()),
    };
    let gvk = GroupVersionKind::gvk(group, version, &object.kind);
    let (resource, caps) = match discover(ctx, &gvk).await {
        Ok(found) => found,
        Err(Error::Kube(kube::Error::Discovery(_))) => return Ok(None),
        Err(Error::Kube(kube::Error::Api(s))) if s.code == 404 => return Ok(None),
        Err(e) => return Err(e),
    };
    let namespaced = caps.scope == Scope::Namespaced;
    let in_scope = namespaced && object.namespace.as_deref() == Some(ns);
    if !in_scope && !ctx.settings.allow_cross_namespace {
        tracing::warn!(kind = %object.kind, name = %object.name, namespace = ?object.namespace,
            "not deleting an inventory entry outside the Stack's namespace, which the operator does not allow");
        return Ok(None);
    }
    Ok(Some(Planned {
        // No longer in spec.resources; only applies name an index.
        index: 0,
        resource,
        namespaced,
        id: object.clone(),
        object: Value::Null,
    }))
}

/// Deletes a managed object (as a dry run when `dry_run`); NotFound is success.
async fn delete(stack: &Stack, applier: &Applier, target: &Planned, dry_run: bool) -> Result<()> {
    let mut params = DeleteParams::background();
    params.dry_run = dry_run;
    match dynamic_api(&applier.client, target)
        .delete(&target.id.name, &params)
        .await
    {
        Ok(_) => {
            if !dry_run {
                tracing::info!(kind = %target.id.kind, name = %target.id.name, stack = %stack.name_any(), "deleted an object of the stack");
            }
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(refused(&applier.who, &target.id, "delete", e)),
    }
}

/// NetworkFunctions in the Stack's namespace that reference it, by name.
fn consumer_functions(ctx: &Context, ns: &str, name: &str) -> Vec<Arc<NetworkFunction>> {
    ctx.relations
        .consumers_of(ns, name)
        .into_iter()
        .filter_map(|nf| {
            ctx.stores
                .functions
                .get(&ObjectRef::<NetworkFunction>::new(&nf).within(ns))
        })
        .collect()
}

/// A client that makes every request as ServiceAccount `name` of `namespace`:
/// the API server then enforces what that ServiceAccount may do.
fn impersonating(ctx: &Context, namespace: &str, name: &str) -> Result<Client> {
    let user = format!("system:serviceaccount:{namespace}:{name}");
    let mut clients = locked(&ctx.state.impersonated);
    if let Some(client) = clients.get(&user) {
        return Ok(client.clone());
    }
    let mut config = ctx.config.clone();
    // Only the user: the API server adds a ServiceAccount's groups itself,
    // and impersonating groups would need `impersonate` on any group.
    config.auth_info.impersonate = Some(user.clone());
    let client = fence::client(config, ctx.fence.clone(), ctx.metrics.clone())?;
    clients.insert(user, client.clone());
    Ok(client)
}

fn consumers(stack: &Stack, ctx: &Context, ns: &str, version: Option<&str>) -> Consumers {
    let all = consumer_functions(ctx, ns, &stack.name_any());
    let on_current = all
        .iter()
        .filter(|nf| {
            nf.status
                .as_ref()
                .and_then(|s| s.deployed_with.as_ref())
                .map(|d| d.stack.version.as_str())
                == version
                && version.is_some()
        })
        .count();
    Consumers {
        total: i32::try_from(all.len()).unwrap_or(i32::MAX),
        on_current_version: i32::try_from(on_current).unwrap_or(i32::MAX),
    }
}

fn record_consumer_metrics(ctx: &Context, ns: &str, stack: &Stack, status: &StackStatus) {
    let mut by_version: BTreeMap<String, i64> = status
        .history
        .iter()
        .map(|h| (h.version.clone(), 0))
        .collect();
    for nf in consumer_functions(ctx, ns, &stack.name_any()) {
        if let Some(d) = nf.status.as_ref().and_then(|s| s.deployed_with.as_ref()) {
            *by_version.entry(d.stack.version.clone()).or_default() += 1;
        }
    }
    for (version, count) in by_version {
        ctx.metrics
            .stack_consumers
            .with_label_values(&[ns, &stack.name_any(), &version])
            .set(count);
    }
}

/// Deletion: wait while NetworkFunctions consume the Stack, then delete what it manages.
async fn finalize(stack: &Stack, ctx: &Context, api: &Api<Stack>, ns: &str) -> Result<Action> {
    if !stack.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    let users = consumer_functions(ctx, ns, &stack.name_any());
    if !users.is_empty() {
        let names: Vec<String> = users.iter().map(|nf| nf.name_any()).collect();
        let old: StackStatus = ctx.fresh_status(stack, stack.status.as_ref());
        let mut status = old.clone();
        // Deletion bumps the generation: the status describes this one.
        status.observed_generation = stack.meta().generation;
        let message = format!(
            "deletion waits: NetworkFunctions {} still use stack {}; delete them or point them at another stack",
            names.join(", "),
            stack.name_any()
        );
        conditions::set(
            &mut status.conditions,
            conditions::READY,
            false,
            "InUse",
            message.clone(),
            stack.meta().generation,
        );
        conditions::set(
            &mut status.conditions,
            conditions::RECONCILING,
            true,
            "InUse",
            message.clone(),
            stack.meta().generation,
        );
        if status != old {
            ctx.publish(stack, EventType::Warning, "InUse", "Delete", message)
                .await;
            write_status(api, stack, MANAGER, &status).await?;
            ctx.wrote_status(stack, &status);
        }
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    if stack.spec.prune {
        let applier = applier(stack, ctx, ns).await?;
        let status: StackStatus = ctx.fresh_status(stack, stack.status.as_ref());
        for object in &status.inventory {
            if let Some(target) = resolve_managed(ctx, ns, object).await? {
                delete(stack, &applier, &target, false).await?;
            }
        }
    }
    let finalizers: Vec<&String> = stack
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .collect();
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": stack.resource_version()}});
    match api
        .patch(
            &stack.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    // What this process remembers of the Stack is forgotten when its watch
    // sees it go.
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(version: &str, digest: &str) -> RenderedStack {
        RenderedStack {
            version: version.into(),
            digest: digest.into(),
            resources: vec![],
            outputs: BTreeMap::new(),
        }
    }

    #[test]
    fn an_applied_version_is_immutable_but_rollback_is_allowed() {
        let mut status = StackStatus::default();
        remember(&mut status, &rendered("1.4.0", "sha256:a"), 10);
        remember(&mut status, &rendered("1.5.0", "sha256:b"), 10);
        let err = check_immutable(&rendered("1.4.0", "sha256:c"), &status).unwrap_err();
        assert_eq!(err.reason(), "VersionConflict");
        let msg = err.to_string();
        assert!(
            msg.contains("1.4.0") && msg.contains("sha256:a") && msg.contains("sha256:c"),
            "{msg}"
        );
        assert!(check_immutable(&rendered("1.4.0", "sha256:a"), &status).is_ok());
        remember(&mut status, &rendered("1.4.0", "sha256:a"), 10);
        let versions: Vec<_> = status.history.iter().map(|h| h.version.as_str()).collect();
        assert_eq!(versions, ["1.4.0", "1.5.0"]);
    }

    #[test]
    fn the_denied_verb_is_read_from_the_rbac_message() {
        let denied = |verb: &str| {
            format!(
                r#"secrets "credentials" is forbidden: User "system:serviceaccount:ns:deployer" cannot {verb} resource "secrets" in API group "" in the namespace "ns""#
            )
        };
        assert_eq!(denied_verb(&denied("patch")), Some("patch"));
        assert_eq!(denied_verb(&denied("create")), Some("create"));
        assert_eq!(denied_verb("admission webhook denied the request"), None);
        assert_eq!(denied_verb("it cannot be done"), None);
    }

    #[test]
    fn history_is_bounded() {
        let mut status = StackStatus::default();
        for minor in 0..5 {
            remember(
                &mut status,
                &rendered(&format!("1.{minor}.0"), &format!("sha256:{minor}")),
                3,
            );
        }
        let versions: Vec<_> = status.history.iter().map(|h| h.version.as_str()).collect();
        assert_eq!(versions, ["1.4.0", "1.3.0", "1.2.0"]);
    }
}
