//! The controllers and what feeds them: which watch wakes which
//! controller, and which caches their reconciles read. One file (a little
//! over 400 lines) on purpose: every trigger of every controller is read
//! in one place.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::{Stream, StreamExt, stream::BoxStream};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Service},
    networking::v1::NetworkPolicy,
};
use kube::{
    Client, Resource, ResourceExt,
    api::{Api, PartialObjectMeta},
    runtime::{
        Controller, WatchStreamExt,
        controller::Config as ControllerConfig,
        reflector::{self, ObjectRef},
        watcher,
    },
};
use serde::de::DeserializeOwned;

use super::{Gate, Process};
use crate::{
    api::{NetworkFunction, ServiceChain, Stack},
    controllers::{
        ChildMeta, Context, Shared, Stores, chain, conditions,
        function::{self, DeploymentState},
        relations::Relations,
        stack, waves,
    },
    render::chain::LABEL_SERVICE_CHAIN,
    runtime::{
        census,
        health::{Health, Readiness},
        metrics::Metrics,
        settings::Settings,
        watches::{self, Keep, Seen, SharedWatch},
    },
};

/// The label on every child of a NetworkFunction.
const MANAGED_BY_STRATA: &str = "app.kubernetes.io/managed-by=strata";

/// An `Api` for `K` in the watched namespace, or in all namespaces.
fn api<K>(client: &Client, settings: &Settings) -> Api<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    match settings.namespaces.as_slice() {
        [one] => Api::namespaced(client.clone(), one),
        _ => Api::all(client.clone()),
    }
}

/// What feeds the controllers: one watch per kind they reconcile (whose
/// cache they read and whose changes trigger them), and the caches of the
/// children of NetworkFunctions.
struct Feeds {
    stacks: SharedWatch<Stack>,
    functions: SharedWatch<NetworkFunction>,
    chains: SharedWatch<ServiceChain>,
    stores: Stores,
}

/// The changes of the children of NetworkFunctions, which keep their caches.
struct ChildEvents {
    deployment_events: BoxStream<'static, Result<watcher::Event<DeploymentState>, watcher::Error>>,
    service_events: BoxStream<'static, Result<watcher::Event<ChildMeta<Service>>, watcher::Error>>,
    config_map_events:
        BoxStream<'static, Result<watcher::Event<ChildMeta<ConfigMap>>, watcher::Error>>,
}

impl Feeds {
    fn new(client: &Client, settings: &Settings, keep: &Keep) -> (Self, ChildEvents) {
        let children = || watches::config().labels(MANAGED_BY_STRATA);
        // Deployments as their rollout state and the digest of their spec,
        // without their pod templates; Services and ConfigMaps as metadata:
        // whether Strata's last apply is in place, without a read per
        // reconcile.
        let (deployments, deployment_events) = watches::projected(
            api::<Deployment>(client, settings),
            children(),
            keep.clone(),
            DeploymentState::from,
        );
        let (services, service_events) = watches::projected(
            api::<PartialObjectMeta<Service>>(client, settings),
            children(),
            keep.clone(),
            ChildMeta::read,
        );
        let (config_maps, config_map_events) = watches::projected(
            api::<PartialObjectMeta<ConfigMap>>(client, settings),
            children(),
            keep.clone(),
            ChildMeta::read,
        );
        let stacks = SharedWatch::new(api::<Stack>(client, settings), keep.clone());
        // Listed consistently: the term's first list tells the functions
        // created before it (see `function::first_listed`).
        let functions = SharedWatch::with_config(
            api::<NetworkFunction>(client, settings),
            watches::consistent(),
            keep.clone(),
        );
        let chains = SharedWatch::new(api::<ServiceChain>(client, settings), keep.clone());
        let stores = Stores {
            stacks: stacks.store(),
            functions: functions.store(),
            chains: chains.store(),
            deployments,
            services,
            config_maps,
        };
        let feeds = Self {
            stacks,
            functions,
            chains,
            stores,
        };
        let children = ChildEvents {
            deployment_events: deployment_events.boxed(),
            service_events: service_events.boxed(),
            config_map_events: config_map_events.boxed(),
        };
        (feeds, children)
    }
}

/// Builds and runs every controller until shutdown.
pub(super) async fn run_controllers(process: Process, gate: Gate) {
    let settings = gate.settings.clone();
    let shutdown = gate.shutdown.clone();
    let client = process.client.clone();
    let sharded = process.territory.shard().is_sharded();
    // A replica caches the namespaces of its shard only.
    let keep: Keep = {
        let (settings, shard) = (settings.clone(), process.territory.shard());
        Arc::new(move |namespace| super::watched(&settings, shard, namespace))
    };
    let (mut feeds, children) = Feeds::new(&client, &settings, &keep);
    let relations = Arc::new(Relations::default());
    let census = take_census(
        feeds.stores.clone(),
        process.metrics.clone(),
        shutdown.clone(),
    );
    let shared = Shared {
        client: client.clone(),
        config: process.config,
        fence: process.fence,
        metrics: process.metrics,
        settings: settings.clone(),
        stores: feeds.stores.clone(),
        relations: relations.clone(),
    };
    let stack_ctx = Arc::new(Context::new(shared.clone(), stack::State::default()));
    let function_ctx = Arc::new(Context::new(shared.clone(), function::State::default()));
    let chain_ctx = Arc::new(Context::new(shared, ()));
    index_and_forget(
        &mut feeds,
        &relations,
        &stack_ctx,
        &function_ctx,
        &chain_ctx,
    );

    let first_listed = {
        let (functions, function_ctx) = (feeds.stores.functions.clone(), function_ctx.clone());
        async move {
            // Before any reconcile. A replica of one shard among several
            // may be handed a namespace during its term: not for it.
            if !sharded {
                function::first_listed(&function_ctx, &functions.state());
            }
        }
    };
    let config = ControllerConfig::default().concurrency(settings.concurrency);
    let stacks = stack_controller(&mut feeds, config.clone())
        .graceful_shutdown_on(shutdown.clone())
        .run(gate.wrap(stack::reconcile), stack::error_policy, stack_ctx)
        .for_each(|_| async {});
    let upstream_changes = function_ctx
        .state
        .upstreams
        .wakeups()
        .expect("a new context's wakeups are there to take");
    let functions = function_controller(&mut feeds, children, &relations, config.clone())
        .reconcile_on(upstream_changes)
        .graceful_shutdown_on(shutdown.clone())
        .run(
            gate.wrap(function::reconcile),
            function::error_policy,
            function_ctx,
        )
        .for_each(|_| async {});
    let policies = watches::changes(
        api::<PartialObjectMeta<NetworkPolicy>>(&client, &settings),
        watches::config().labels(LABEL_SERVICE_CHAIN),
        keep,
    );
    let chains = chain_controller(&mut feeds, relations, policies, config)
        .graceful_shutdown_on(shutdown.clone())
        .run(gate.wrap(chain::reconcile), chain::error_policy, chain_ctx)
        .for_each(|_| async {});
    let watches_listed = futures::future::join3(
        feeds.stacks.listed(),
        feeds.functions.listed(),
        feeds.chains.listed(),
    );
    let open_gate = open_gate(
        feeds.stores.clone(),
        async {
            watches_listed.await;
            first_listed.await;
        },
        gate,
        process.health,
    );
    let Feeds {
        stacks: stack_watch,
        functions: function_watch,
        chains: chain_watch,
        ..
    } = feeds;
    let watches = async {
        futures::join!(
            stack_watch.run(shutdown.clone()),
            function_watch.run(shutdown.clone()),
            chain_watch.run(shutdown.clone()),
        )
    };
    futures::join!(open_gate, watches, stacks, functions, chains, census);
}

/// Keeps the census of the caches (objects and estimated bytes by kind)
/// current until `until` completes.
async fn take_census(stores: Stores, metrics: Metrics, until: impl Future<Output = ()>) {
    let mut until = std::pin::pin!(until);
    let mut period = tokio::time::interval(census::PERIOD);
    loop {
        tokio::select! {
            () = &mut until => return,
            _ = period.tick() => {}
        }
        let counts = [
            ("Stack", census::count(&stores.stacks)),
            ("NetworkFunction", census::count(&stores.functions)),
            ("ServiceChain", census::count(&stores.chains)),
            ("Deployment", census::count(&stores.deployments)),
            ("Service", census::count(&stores.services)),
            ("ConfigMap", census::count(&stores.config_maps)),
        ];
        for (kind, count) in counts {
            census::publish(&metrics, kind, count);
        }
    }
}

/// Before any trigger hears of a change: the relations index follows it,
/// and each controller forgets what it remembers of a deleted object, in
/// one place per kind.
fn index_and_forget(
    feeds: &mut Feeds,
    relations: &Arc<Relations>,
    stack_ctx: &stack::Ctx,
    function_ctx: &function::Ctx,
    chain_ctx: &chain::Ctx,
) {
    let stack_ctx = stack_ctx.clone();
    feeds.stacks.observe(move |seen| {
        if let Seen::Deleted(stack) = seen {
            stack::forget(&stack_ctx, stack);
        }
    });
    let (index, function_ctx) = (relations.clone(), function_ctx.clone());
    feeds.functions.observe(move |seen| match seen {
        Seen::Applied(nf) => index.function_applied(nf),
        Seen::Deleted(nf) => {
            index.function_deleted(nf);
            function::forget(&function_ctx, nf);
        }
    });
    let (index, chain_ctx) = (relations.clone(), chain_ctx.clone());
    feeds.chains.observe(move |seen| match seen {
        Seen::Applied(chain) => index.chain_applied(chain),
        Seen::Deleted(chain) => {
            index.chain_deleted(chain);
            chain::forget(&chain_ctx, chain);
        }
    });
}

/// Stacks, woken by their own changes and by their consumers' (counts).
fn stack_controller(feeds: &mut Feeds, config: ControllerConfig) -> Controller<Stack> {
    feeds
        .stacks
        .controller(config)
        .watches_shared_stream(feeds.functions.trigger(), |nf| {
            Some(ObjectRef::<Stack>::new(&nf.spec.stack_ref.name).within(&nf.namespace()?))
        })
}

/// Functions, woken by their own changes and their children's; by what
/// their stack's consumers read from it; by the changes of the functions
/// they depend on, queue behind or chain to; and by the chains they are a
/// hop of. (And, added by the caller, by the upstream records their
/// promotion gates read.)
fn function_controller(
    feeds: &mut Feeds,
    children: ChildEvents,
    relations: &Arc<Relations>,
    config: ControllerConfig,
) -> Controller<NetworkFunction> {
    let consumers = relations.clone();
    let (related, functions) = (relations.clone(), feeds.stores.functions.clone());
    let stack_views = consumer_view_changes(feeds.stacks.trigger(), feeds.stores.stacks.clone());
    feeds
        .functions
        .controller(config)
        .watches_shared_stream(stack_views, move |stack| {
            let ns = stack.namespace().unwrap_or_default();
            consumers
                .consumers_of(&ns, &stack.name_any())
                .into_iter()
                .map(|name| ObjectRef::<NetworkFunction>::new(&name).within(&ns))
                .collect::<Vec<_>>()
        })
        .watches_shared_stream(feeds.functions.trigger(), move |changed| {
            related_functions(&related, &functions, &changed)
        })
        .owns_stream(children.deployment_events.touched_objects())
        .owns_stream(children.service_events.touched_objects())
        .owns_stream(children.config_map_events.touched_objects())
        .watches_shared_stream(feeds.chains.trigger(), |chain| {
            let ns = chain.namespace().unwrap_or_default();
            chain
                .spec
                .hops
                .iter()
                .map(|h| ObjectRef::<NetworkFunction>::new(&h.network_function).within(&ns))
                .collect::<Vec<_>>()
        })
}

/// Chains, woken by their own changes, their NetworkPolicies' (`policies`),
/// and the changes of the functions they have as hops (version, readiness).
fn chain_controller(
    feeds: &mut Feeds,
    relations: Arc<Relations>,
    policies: impl Stream<Item = Result<PartialObjectMeta<NetworkPolicy>, watcher::Error>>
    + Send
    + 'static,
    config: ControllerConfig,
) -> Controller<ServiceChain> {
    feeds
        .chains
        .controller(config)
        .watches_shared_stream(feeds.functions.trigger(), move |nf| {
            let ns = nf.namespace().unwrap_or_default();
            relations
                .chains_of(&ns, &nf.name_any())
                .into_iter()
                .map(|name| ObjectRef::<ServiceChain>::new(&name).within(&ns))
                .collect::<Vec<_>>()
        })
        .owns_stream(policies)
}

/// Opens the gate once every cache has synced, the controllers' own
/// included: once it is open no controller waits for its cache, and
/// shutdown can rely on that. Part of the term (not spawned): a term that
/// ends first must not report ready.
async fn open_gate(
    stores: Stores,
    watches_listed: impl Future<Output = ()>,
    gate: Gate,
    health: Health,
) {
    // The shared watches' caches and what their observers keep (the
    // relations index) together: a reconcile that found a function's cache
    // but not yet its relations would see a Stack without consumers.
    watches_listed.await;
    synced(&stores.deployments).await;
    synced(&stores.services).await;
    synced(&stores.config_maps).await;
    tracing::info!("caches synced; reconciling");
    gate.synced.send_replace(true);
    health.set(Readiness::Leading);
}

/// The Stacks whose [`consumer_view_hash`] changed since they were last
/// seen (or are seen for the first time): only what consumers read from a
/// Stack wakes them, not the Stack's own writes of its consumer counts,
/// which would wake every consumer once per consumer that moves.
fn consumer_view_changes(
    stacks: impl Stream<Item = Arc<Stack>> + Send + 'static,
    cache: reflector::Store<Stack>,
) -> impl Stream<Item = Arc<Stack>> + Send + 'static {
    let mut seen: HashMap<String, u64> = HashMap::new();
    stacks.filter(move |stack| {
        let key = stack.uid().unwrap_or_default();
        // The trigger is fed after the cache: a Stack gone from it is deleted.
        if cache.get(&ObjectRef::from_obj(&**stack)).is_none() {
            seen.remove(&key);
            return std::future::ready(true);
        }
        let view = consumer_view_hash(stack);
        std::future::ready(seen.insert(key, view) != Some(view))
    })
}

/// A hash of what a Stack's consumers read from it: the revision applied,
/// whether it is applied for its generation (and why not), its outputs,
/// the adoption budget, deletion. Consumer counts, the adoption's phase and
/// history are left out.
fn consumer_view_hash(stack: &Stack) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    stack.metadata.uid.hash(&mut hasher);
    stack
        .metadata
        .deletion_timestamp
        .is_some()
        .hash(&mut hasher);
    serde_json::to_string(&stack.spec.consumer_rollout)
        .unwrap_or_default()
        .hash(&mut hasher);
    if let Some(status) = &stack.status {
        status.version.hash(&mut hasher);
        status.digest.hash(&mut hasher);
        status.outputs.hash(&mut hasher);
        (status.observed_generation == stack.metadata.generation).hash(&mut hasher);
        // Whether the Stack resolves for them, not how its adoption goes:
        // the adoption's phase changes as consumers move, and would wake
        // every consumer each time.
        let applied = waves::applied(&status.conditions);
        applied.hash(&mut hasher);
        if !applied && let Some(ready) = conditions::get(&status.conditions, conditions::READY) {
            (&ready.status, &ready.reason, &ready.message).hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// Returns once `store` has seen its initial list. The readiness signal is
/// re-checked on a short period rather than awaited once, since a wake-up
/// can be missed when the store becomes ready during the first poll.
async fn synced<K>(store: &reflector::Store<K>)
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    while tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready())
        .await
        .is_err()
    {}
}

/// The functions to reconcile when `changed` changed: those that depend on it,
/// the consumers of its stack queued to adopt a new version (one may move
/// once `changed` is Ready), and the hops before it in a chain (their
/// next-hop address may change). Consumers that are not queued are left
/// alone: waking every consumer of a stack on each change of one of them
/// makes reconciles grow with the square of the consumers.
fn related_functions(
    relations: &Relations,
    functions: &reflector::Store<NetworkFunction>,
    changed: &NetworkFunction,
) -> Vec<ObjectRef<NetworkFunction>> {
    let ns = changed.namespace().unwrap_or_default();
    let name = changed.name_any();
    let queued = relations
        .consumers_of(&ns, &changed.spec.stack_ref.name)
        .into_iter()
        .filter(|consumer| {
            *consumer != name
                && functions
                    .get(&ObjectRef::new(consumer).within(&ns))
                    .is_some_and(|nf| function::queued(&nf))
        });
    let before_in_chains = relations
        .neighbours(&ns, &name)
        .into_iter()
        .filter_map(|(_, previous, _)| previous);
    relations
        .dependents_of(&ns, &name)
        .into_iter()
        .chain(queued)
        .chain(before_in_chains)
        .map(|f| ObjectRef::<NetworkFunction>::new(&f).within(&ns))
        .collect()
}
