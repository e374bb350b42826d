//! `strata run`: the controllers, the metrics and health server, leader
//! election and graceful shutdown, as one process.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::{
    FutureExt, Stream, StreamExt,
    future::{BoxFuture, Shared},
};
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
        controller::{Action, Config as ControllerConfig},
        reflector::{self, ObjectRef},
    },
};
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;

use super::{
    fence::{self, WriteFence},
    health::{self, Health, Readiness},
    leader::{self, LeaderElector},
    metrics::Metrics,
    settings::Settings,
    watches::{self, SharedWatch},
};
use crate::{
    api::{NetworkFunction, ServiceChain, Stack},
    controllers::{Context, Ctx, Stores, chain, conditions, function, stack},
    render::chain::LABEL_SERVICE_CHAIN,
};

/// The label on every child of a NetworkFunction.
const MANAGED_BY_STRATA: &str = "app.kubernetes.io/managed-by=strata";

type Shutdown = Shared<futures::future::BoxFuture<'static, ()>>;

/// Runs the operator until SIGTERM or SIGINT.
///
/// With leader election, the process goes through terms: it stands by until
/// it holds the lease, reconciles while it renews it, and when it loses it
/// (another replica took it, or it could not renew in time: an API server
/// outage, or this process was paused) it stops its controllers and stands
/// by again, without exiting. Its writes are fenced to the term (see
/// [`super::fence`]), so a replica that lost the lease never writes before
/// it leads again.
pub async fn run(settings: Settings) -> RunResult {
    // The handlers are installed first: a SIGTERM during start-up is a graceful
    // shutdown too, not the default action (death by signal).
    let shutdown: Shutdown = shutdown_signal()
        .map_err(|e| format!("cannot handle SIGTERM/SIGINT: {e}"))?
        .boxed()
        .shared();
    let mut config = kube::Config::infer()
        .await
        .map_err(|e| format!("no Kubernetes configuration: {e}"))?;
    // Named in the API server's logs, and as the field manager of the
    // writes that name none (creates, merge patches): "strata", not "unknown".
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!("strata/", env!("CARGO_PKG_VERSION"))),
    ));
    let metrics = Metrics::new();
    let health = Health::default();
    let listener = TcpListener::bind(settings.metrics_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.metrics_addr))?;
    let addr = listener.local_addr().unwrap_or(settings.metrics_addr);
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    tokio::spawn(health::serve(listener, metrics.clone(), health.clone()));
    let cannot_build = |e: kube::Error| format!("cannot build a client: {e}");

    if !settings.leader_election {
        // The only writer by configuration: nothing to fence. Nothing else
        // talks to the API server on a schedule, so a probe tells /readyz.
        let client = fence::client(config.clone(), WriteFence::unfenced(), metrics.clone())
            .map_err(cannot_build)?;
        tokio::spawn(health::probe(client.clone(), health.clone()));
        let process = Process {
            client,
            fence: WriteFence::unfenced(),
            config,
            metrics,
            health,
            settings,
            shutdown,
        };
        let _ = term(process, futures::future::pending()).await;
        return Ok(());
    }

    // The election's own requests are not fenced: they are how a term begins.
    let elector = elector(
        &Client::try_from(config.clone()).map_err(cannot_build)?,
        &settings,
    );
    let fence = WriteFence::closed();
    let process = Process {
        client: fence::client(config.clone(), fence.clone(), metrics.clone())
            .map_err(cannot_build)?,
        fence: fence.clone(),
        config,
        metrics,
        health: health.clone(),
        settings,
        shutdown: shutdown.clone(),
    };
    loop {
        tokio::select! {
            () = leader::lead(&elector, &health, &fence) => {}
            () = shutdown.clone() => {
                // An attempt cancelled in flight may have taken the lease.
                fence.close();
                leader::step_down(&elector).await;
                return Ok(());
            }
        }
        tracing::info!(identity = elector.identity(), "became leader");
        // Ready again once the caches of this new term have synced.
        health.set(Readiness::Starting);
        let lost = leader::keep_leading(elector.clone(), health.clone(), fence.clone());
        let ended = term(process.clone(), lost).await;
        // The controllers (and every reconcile task they spawned) are
        // stopped by now, so a standby that takes over does not overlap with
        // them; a write of theirs still under way was fenced.
        fence.close();
        match ended {
            TermEnd::Shutdown => {
                leader::step_down(&elector).await;
                return Ok(());
            }
            TermEnd::LeaseLost => {
                health.set(Readiness::Standby);
                tracing::warn!(
                    "lost the leader lease: stopped reconciling; standing by for re-election"
                );
            }
        }
    }
}

/// How a term of the controllers ended.
enum TermEnd {
    /// SIGTERM or SIGINT; in-flight reconciles finished or were cancelled.
    Shutdown,
    /// The leader lease was lost; the controllers were stopped at once.
    LeaseLost,
}

/// What every term of the controllers runs with.
#[derive(Clone)]
struct Process {
    /// The client of the controllers, its writes fenced to the term.
    client: Client,
    fence: WriteFence,
    config: kube::Config,
    metrics: Metrics,
    health: Health,
    settings: Settings,
    shutdown: Shutdown,
}

/// Runs the controllers, with caches of their own, until shutdown or until
/// `lost` resolves.
async fn term(process: Process, lost: impl std::future::Future<Output = ()>) -> TermEnd {
    let shutdown = process.shutdown.clone();
    let gate = Gate {
        settings: process.settings.clone(),
        synced: tokio::sync::watch::Sender::new(false),
        shutdown: shutdown.clone(),
    };
    let controllers = controllers(process, gate.clone());
    // In-flight reconciles may finish after SIGTERM, but not for longer than
    // the kubelet waits (30 s by default) before it kills the process: the
    // lease must be released first, or a standby waits for it to expire.
    // Before the caches have synced, nothing is in flight; and a controller
    // still waiting for its cache would wait on.
    let drained = async {
        shutdown.clone().await;
        if *gate.synced.borrow() {
            tokio::time::sleep(SHUTDOWN_GRACE).await;
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "in-flight reconciles did not finish in time; cancelling them");
        }
    };
    tokio::select! {
        () = controllers => TermEnd::Shutdown,
        () = drained => TermEnd::Shutdown,
        () = lost => TermEnd::LeaseLost,
    }
}

/// How long in-flight reconciles may run on after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// How the process ended: an error is a message for a person, plain text.
pub type RunResult = Result<(), String>;

fn elector(client: &Client, settings: &Settings) -> LeaderElector {
    let namespace = settings
        .lease_namespace
        .clone()
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace").ok()
        })
        .unwrap_or_else(|| "default".into());
    let identity = settings.identity.clone().unwrap_or_else(|| {
        std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| format!("strata-{}", std::process::id()))
    });
    LeaderElector::new(
        client.clone(),
        namespace.trim(),
        &settings.lease_name,
        &identity,
    )
}

/// Installs the SIGTERM and SIGINT handlers; the future resolves on either.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::info!("shutting down: finishing in-flight reconciles");
    })
}

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

/// Whether an object is in a namespace this operator watches.
fn watched(settings: &Settings, namespace: Option<&str>) -> bool {
    settings.namespaces.is_empty()
        || namespace.is_some_and(|ns| settings.namespaces.iter().any(|w| w == ns))
}

/// Builds and runs every controller until shutdown.
async fn controllers(process: Process, gate: Gate) {
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

    // A function's change concerns its stack (consumer counts).
    let stack_controller = stack_watch
        .controller(controller_config.clone())
        .watches_shared_stream(function_watch.trigger(), |nf| {
            Some(ObjectRef::<Stack>::new(&nf.spec.stack_ref.name).within(&nf.namespace()?))
        });

    // A stack's change concerns its consumers; a function's change concerns its
    // dependents, the consumers of its stack queued behind it, and the hops before it.
    let consumers_of = stores.functions.clone();
    let related = stores.functions.clone();
    let chains_of = stores.chains.clone();
    let function_controller = function_watch
        .controller(controller_config.clone())
        .watches_shared_stream(consumer_view_changes(stack_watch.trigger()), move |stack| {
            let ns = stack.namespace();
            let name = stack.name_any();
            consumers_of
                .state()
                .into_iter()
                .filter(|nf| nf.namespace() == ns && nf.spec.stack_ref.name == name)
                .map(|nf| ObjectRef::from_obj(&*nf))
                .collect::<Vec<_>>()
        })
        .watches_shared_stream(function_watch.trigger(), move |changed| {
            related_functions(&related, &chains_of, &changed)
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
    let hops_of = stores.chains.clone();
    let chain_controller = chain_watch
        .controller(controller_config)
        .watches_shared_stream(function_watch.trigger(), move |nf| {
            chains_with_hop(&hops_of, &nf)
        })
        .owns_stream(watches::changes(
            api::<PartialObjectMeta<NetworkPolicy>>(&client, &settings),
            watches::config().labels(LABEL_SERVICE_CHAIN),
        ));

    let ctx = Arc::new(
        Context::new(client, config, settings.clone(), metrics, stores.clone()).with_fence(fence),
    );
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
        .run(
            gate.wrap(stack::reconcile),
            stack::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    let functions_run = function_controller
        .graceful_shutdown_on(shutdown.clone())
        .run(
            gate.wrap(function::reconcile),
            function::error_policy,
            ctx.clone(),
        )
        .for_each(|_| async {});
    let chains_run = chain_controller
        .graceful_shutdown_on(shutdown.clone())
        .run(gate.wrap(chain::reconcile), chain::error_policy, ctx)
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

/// What every reconcile passes first: the object is in a watched namespace,
/// and every cache has synced. Each controller waits for its own cache only;
/// a reconcile that read another kind's half-filled cache would see, say, a
/// Stack without consumers and delete what they still use.
#[derive(Clone)]
struct Gate {
    settings: Settings,
    synced: tokio::sync::watch::Sender<bool>,
    shutdown: Shutdown,
}

impl Gate {
    /// `reconcile`, behind the gate.
    fn wrap<K, F, Fut>(
        &self,
        reconcile: F,
    ) -> impl FnMut(Arc<K>, Ctx) -> BoxFuture<'static, crate::Result<Action>> + use<K, F, Fut>
    where
        K: Resource + Send + Sync + 'static,
        F: Fn(Arc<K>, Ctx) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = crate::Result<Action>> + Send + 'static,
    {
        let gate = self.clone();
        move |obj, ctx| {
            let gate = gate.clone();
            let reconcile = reconcile.clone();
            async move {
                if !watched(&gate.settings, obj.meta().namespace.as_deref()) {
                    return Ok(Action::await_change());
                }
                let mut synced = gate.synced.subscribe();
                tokio::select! {
                    biased;
                    // After SIGTERM nothing new starts; what started finishes.
                    () = gate.shutdown.clone() => return Ok(Action::await_change()),
                    _ = synced.wait_for(|synced| *synced) => {}
                }
                reconcile(obj, ctx).await
            }
            .boxed()
        }
    }
}

/// The Stacks whose [`consumer_view`] changed since they were last seen (or
/// are seen for the first time): only what consumers read from a Stack
/// wakes them. With a thousand consumers, each write of the Stack's
/// consumer counts woke all of them.
fn consumer_view_changes(
    stacks: impl Stream<Item = Arc<Stack>> + Send + 'static,
) -> impl Stream<Item = Arc<Stack>> + Send + 'static {
    let mut seen: HashMap<String, u64> = HashMap::new();
    stacks.filter(move |stack| {
        let view = consumer_view(stack);
        let key = stack.uid().unwrap_or_default();
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

/// The chains in `function`'s namespace that have it as a hop.
fn chains_with_hop(
    chains: &reflector::Store<ServiceChain>,
    function: &NetworkFunction,
) -> Vec<ObjectRef<ServiceChain>> {
    let ns = function.namespace();
    let name = function.name_any();
    chains
        .state()
        .into_iter()
        .filter(|c| c.namespace() == ns && c.spec.hops.iter().any(|h| h.network_function == name))
        .map(|c| ObjectRef::from_obj(&*c))
        .collect()
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
/// alone: with a hundred consumers per stack, waking them all on every
/// change made reconciles grow with the square of the consumers.
fn related_functions(
    functions: &reflector::Store<NetworkFunction>,
    chains: &reflector::Store<ServiceChain>,
    changed: &NetworkFunction,
) -> Vec<ObjectRef<NetworkFunction>> {
    let ns = changed.namespace();
    let name = changed.name_any();
    let mut refs: Vec<ObjectRef<NetworkFunction>> = functions
        .state()
        .into_iter()
        .filter(|nf| nf.namespace() == ns && nf.name_any() != name)
        .filter(|nf| {
            nf.spec.depends_on.iter().any(|d| d.name == name)
                || (nf.spec.stack_ref.name == changed.spec.stack_ref.name && function::queued(nf))
        })
        .map(|nf| ObjectRef::from_obj(&*nf))
        .collect();
    for chain in chains.state().into_iter().filter(|c| c.namespace() == ns) {
        let hops = &chain.spec.hops;
        for pair in hops.windows(2) {
            if pair[1].network_function == name {
                refs.push(
                    ObjectRef::<NetworkFunction>::new(&pair[0].network_function)
                        .within(ns.as_deref().unwrap_or_default()),
                );
            }
        }
    }
    refs
}
