//! The controllers and what feeds them: which watch wakes which
//! controller, and which caches their reconciles read.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Service},
    networking::v1::NetworkPolicy,
};
use kube::{
    Client, Resource, ResourceExt,
    api::{Api, PartialObjectMeta},
    runtime::{
        WatchStreamExt,
        controller::Config as ControllerConfig,
        reflector::{self, ObjectRef},
    },
};
use serde::de::DeserializeOwned;

use super::{Gate, Process};
use crate::{
    api::{NetworkFunction, ServiceChain, Stack},
    controllers::{
        Context, Shared, Stores, chain, conditions, function, relations::Relations, stack,
    },
    render::chain::LABEL_SERVICE_CHAIN,
    runtime::{
        health::Readiness,
        settings::Settings,
        watches::{self, Seen, SharedWatch},
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

/// Builds and runs every controller until shutdown.
pub(super) async fn controllers(process: Process, gate: Gate) {
    let Process {
        client,
        fence,
        config,
        metrics,
        health,
        ..
    } = process;
    let settings = gate.settings.clone();
    let shutdown = gate.shutdown.clone();
    let controller_config = ControllerConfig::default().concurrency(settings.concurrency);

    // Deployments of NetworkFunctions: a cache for reads, and a trigger for their owners.
    let (deployments, deployment_events) = watches::cached(
        api::<Deployment>(&client, &settings),
        watches::config().labels(MANAGED_BY_STRATA),
    );
    // The metadata of their Services and ConfigMaps: whether Strata's last
    // apply is in place, without a read per reconcile; and a trigger.
    let (services, service_events) = watches::cached(
        api::<PartialObjectMeta<Service>>(&client, &settings),
        watches::config().labels(MANAGED_BY_STRATA),
    );
    let (config_maps, config_map_events) = watches::cached(
        api::<PartialObjectMeta<ConfigMap>>(&client, &settings),
        watches::config().labels(MANAGED_BY_STRATA),
    );
    // Stacks, functions and chains: one watch each, whose cache the
    // controllers read and whose changes trigger them.
    let mut stack_watch = SharedWatch::new(api::<Stack>(&client, &settings));
    let mut function_watch = SharedWatch::new(api::<NetworkFunction>(&client, &settings));
    let mut chain_watch = SharedWatch::new(api::<ServiceChain>(&client, &settings));
    let stores = Stores {
        stacks: stack_watch.store(),
        functions: function_watch.store(),
        chains: chain_watch.store(),
        deployments,
        services,
        config_maps,
    };

    let relations = Arc::new(Relations::default());
    let shared = Shared {
        client: client.clone(),
        config,
        fence,
        metrics,
        settings: settings.clone(),
        stores: stores.clone(),
        relations: relations.clone(),
    };
    let stack_ctx = Arc::new(Context::new(shared.clone(), stack::State::default()));
    let function_ctx = Arc::new(Context::new(shared.clone(), function::State::default()));
    let chain_ctx = Arc::new(Context::new(shared, ()));

    // Before any trigger: the relations index, and forgetting what the
    // process remembers of each deleted object, in one place per kind.
    let forget_stack = stack_ctx.clone();
    stack_watch.observe(move |seen| {
        if let Seen::Deleted(stack) = seen {
            stack::forget(&forget_stack, stack);
        }
    });
    let (index, forget_function) = (relations.clone(), function_ctx.clone());
    function_watch.observe(move |seen| match seen {
        Seen::Applied(nf) => index.function_applied(nf),
        Seen::Deleted(nf) => {
            index.function_deleted(nf);
            function::forget(&forget_function, nf);
        }
    });
    let (index, forget_chain) = (relations.clone(), chain_ctx.clone());
    chain_watch.observe(move |seen| match seen {
        Seen::Applied(chain) => index.chain_applied(chain),
        Seen::Deleted(chain) => {
            index.chain_deleted(chain);
            chain::forget(&forget_chain, chain);
        }
    });

    // A function's change concerns its stack (consumer counts).
    let stack_controller = stack_watch
        .controller(controller_config.clone())
        .watches_shared_stream(function_watch.trigger(), |nf| {
            Some(ObjectRef::<Stack>::new(&nf.spec.stack_ref.name).within(&nf.namespace()?))
        });

    // A stack's change concerns its consumers; a function's change concerns its
    // dependents, the consumers of its stack queued behind it, and the hops before it.
    let consumers = relations.clone();
    let (related, functions) = (relations.clone(), stores.functions.clone());
    let function_controller = function_watch
        .controller(controller_config.clone())
        .watches_shared_stream(
            consumer_view_changes(stack_watch.trigger(), stores.stacks.clone()),
            move |stack| {
                let ns = stack.namespace().unwrap_or_default();
                consumers
                    .consumers_of(&ns, &stack.name_any())
                    .into_iter()
                    .map(|name| ObjectRef::<NetworkFunction>::new(&name).within(&ns))
                    .collect::<Vec<_>>()
            },
        )
        .watches_shared_stream(function_watch.trigger(), move |changed| {
            related_functions(&related, &functions, &changed)
        })
        .owns_stream(deployment_events.touched_objects())
        .owns_stream(service_events.touched_objects())
        .owns_stream(config_map_events.touched_objects())
        .watches_shared_stream(chain_watch.trigger(), |chain| {
            let ns = chain.namespace().unwrap_or_default();
            chain
                .spec
                .hops
                .iter()
                .map(|h| ObjectRef::<NetworkFunction>::new(&h.network_function).within(&ns))
                .collect::<Vec<_>>()
        });

    // A function's change concerns the chains it is a hop of (its version and
    // readiness); the chain's NetworkPolicies are its children.
    let hops_of = relations;
    let chain_controller = chain_watch
        .controller(controller_config)
        .watches_shared_stream(function_watch.trigger(), move |nf| {
            let ns = nf.namespace().unwrap_or_default();
            hops_of
                .chains_of(&ns, &nf.name_any())
                .into_iter()
                .map(|name| ObjectRef::<ServiceChain>::new(&name).within(&ns))
                .collect::<Vec<_>>()
        })
        .owns_stream(watches::changes(
            api::<PartialObjectMeta<NetworkPolicy>>(&client, &settings),
            watches::config().labels(LABEL_SERVICE_CHAIN),
        ));

    // Every cache, the controllers' own included: once the gate is open no
    // controller waits for its cache, and shutdown can rely on that. Part of
    // this term (not spawned): a term that ends first must not report ready.
    let synced_tx = gate.synced.clone();
    let open_gate = async move {
        synced(&stores.stacks).await;
        synced(&stores.functions).await;
        synced(&stores.chains).await;
        synced(&stores.deployments).await;
        synced(&stores.services).await;
        synced(&stores.config_maps).await;
        tracing::info!("caches synced; reconciling");
        synced_tx.send_replace(true);
        health.set(Readiness::Leading);
    };

    let stacks_run = stack_controller
        .graceful_shutdown_on(shutdown.clone())
        .run(gate.wrap(stack::reconcile), stack::error_policy, stack_ctx)
        .for_each(|_| async {});
    let functions_run = function_controller
        .graceful_shutdown_on(shutdown.clone())
        .run(
            gate.wrap(function::reconcile),
            function::error_policy,
            function_ctx,
        )
        .for_each(|_| async {});
    let chains_run = chain_controller
        .graceful_shutdown_on(shutdown.clone())
        .run(gate.wrap(chain::reconcile), chain::error_policy, chain_ctx)
        .for_each(|_| async {});
    let watches_run = async {
        futures::join!(
            stack_watch.run(shutdown.clone()),
            function_watch.run(shutdown.clone()),
            chain_watch.run(shutdown.clone()),
        )
    };
    futures::join!(
        open_gate,
        watches_run,
        stacks_run,
        functions_run,
        chains_run
    );
}

/// The Stacks whose [`consumer_view`] changed since they were last seen (or
/// are seen for the first time): only what consumers read from a Stack
/// wakes them. With a thousand consumers, each write of the Stack's
/// consumer counts woke all of them.
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
        let view = consumer_view(stack);
        std::future::ready(seen.insert(key, view) != Some(view))
    })
}

/// A hash of what a Stack's consumers read from it: the revision applied,
/// whether it is Ready for its generation (and why not), its outputs, the
/// adoption budget, deletion. Consumer counts and history are left out.
fn consumer_view(stack: &Stack) -> u64 {
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
        if let Some(ready) = conditions::get(&status.conditions, conditions::READY) {
            (&ready.status, &ready.reason, &ready.message).hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// Returns once `store` has seen its initial list. (The readiness signal is
/// re-checked on a short period: a wake-up of the first waiter was observed
/// to be lost when the store became ready during the first poll.)
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
