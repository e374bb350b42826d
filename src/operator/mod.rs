//! `strata run`: the process. Election terms, graceful shutdown, the gate
//! every reconcile passes, and (in [`wiring`]) which watch feeds which
//! controller. The only module that names every controller.

mod wiring;

use std::{sync::Arc, time::Duration};

use futures::{
    FutureExt,
    future::{BoxFuture, Shared},
};
use kube::{Client, Resource, runtime::controller::Action};
use tokio::net::TcpListener;

use crate::runtime::{
    fence::{self, WriteFence},
    health::{self, Health, Readiness},
    leader::{self, LeaderElector},
    metrics::Metrics,
    settings::Settings,
    shards::{Refusal, Shard, Territory},
};

type Shutdown = Shared<futures::future::BoxFuture<'static, ()>>;

/// Runs the operator until SIGTERM or SIGINT.
///
/// With leader election, the process goes through terms: it stands by until
/// it holds the lease, reconciles while it renews it, and when it loses it
/// (another replica took it, or it could not renew in time: an API server
/// outage, or this process was paused) it stops its controllers and stands
/// by again, without exiting. Its writes are fenced to the term (see
/// [`crate::runtime::fence`]), so a replica that lost the lease never writes before
/// it leads again.
pub async fn run(mut settings: Settings) -> RunResult {
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
    let identity = identity(&settings);
    let shard = Shard::of_replica(settings.shards, settings.shard, &identity)?;
    if shard.is_sharded() && !settings.leader_election {
        tracing::info!(
            "{} shards: leader election is on, one Lease per shard",
            shard.count
        );
        settings.leader_election = true;
    }
    let territory = Territory::new(shard);
    let metrics = if shard.is_sharded() {
        Metrics::labelled(&[("shard", &shard.index.to_string())])
    } else {
        Metrics::new()
    };
    let health = Health::default();
    if shard.is_sharded() {
        health.describe_shard(&shard.to_string());
        tracing::info!(%identity, "reconciling the namespaces of {shard}");
    }
    let listener = TcpListener::bind(settings.metrics_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", settings.metrics_addr))?;
    let addr = listener.local_addr().unwrap_or(settings.metrics_addr);
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    tokio::spawn(health::serve(listener, metrics.clone(), health.clone()));
    // With an election, writes are fenced to the terms of this replica.
    let fence = if settings.leader_election {
        WriteFence::closed()
    } else {
        WriteFence::unfenced()
    }
    .within(territory.clone());
    let process = Process {
        client: fence::client(config.clone(), fence.clone(), metrics.clone())
            .map_err(cannot_build)?,
        fence,
        territory,
        identity,
        config,
        metrics,
        health,
        settings,
        shutdown,
    };
    if process.settings.leader_election {
        run_elected(process).await
    } else {
        run_alone(process).await
    }
}

fn cannot_build(e: kube::Error) -> String {
    format!("cannot build a client: {e}")
}

/// The only writer by configuration: one term, nothing to fence. Nothing
/// else talks to the API server on a schedule, so a probe tells /readyz.
async fn run_alone(process: Process) -> RunResult {
    tokio::spawn(health::probe(
        process.client.clone(),
        process.health.clone(),
    ));
    process.metrics.leads();
    let _ = term(process, futures::future::pending()).await;
    Ok(())
}

/// Terms as long as this replica holds the lease, standing by in between.
async fn run_elected(process: Process) -> RunResult {
    // The election's own requests are not fenced: they are how a term begins.
    let elector = elector(
        &Client::try_from(process.config.clone()).map_err(cannot_build)?,
        &process.settings,
        &process.identity,
        process.territory.shard(),
    );
    let (fence, territory) = (process.fence.clone(), process.territory.clone());
    let (health, shutdown) = (process.health.clone(), process.shutdown.clone());
    let metrics = process.metrics.clone();
    metrics.stands_by();
    loop {
        tokio::select! {
            () = leader::lead(&elector, &health, &fence, &territory) => {}
            () = shutdown.clone() => {
                // An attempt cancelled in flight may have taken the lease.
                fence.close();
                leader::step_down(&elector).await;
                return Ok(());
            }
        }
        tracing::info!(
            identity = elector.identity(),
            lease = elector.lease(),
            "became leader"
        );
        metrics.leads();
        // Ready again once the caches of this new term have synced.
        health.set(Readiness::Starting);
        let lost = leader::keep_leading(
            elector.clone(),
            health.clone(),
            fence.clone(),
            territory.clone(),
        );
        let ended = term(process.clone(), lost).await;
        // The controllers (and every reconcile task they spawned) are
        // stopped by now, so a standby that takes over does not overlap with
        // them; a write of theirs still under way was fenced.
        fence.close();
        metrics.stands_by();
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
    /// The namespaces this replica may write in.
    territory: Territory,
    /// This replica's name in elections.
    identity: String,
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
        territory: process.territory.clone(),
        synced: tokio::sync::watch::Sender::new(false),
        shutdown: shutdown.clone(),
    };
    let controllers = wiring::run_controllers(process, gate.clone());
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

/// How soon an object is looked at again in a namespace handed over to a
/// holder with more shards (it comes back if that holder goes), and in one
/// moving in whose previous holder has not let go yet (a renewal or two).
const YIELDED_RECHECK: Duration = Duration::from_secs(10);
const WAITING_RECHECK: Duration = Duration::from_secs(2);

/// How long in-flight reconciles may run on after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// How the process ended: an error is a message for a person, plain text.
pub type RunResult = Result<(), String>;

fn elector(client: &Client, settings: &Settings, identity: &str, shard: Shard) -> LeaderElector {
    let namespace = settings
        .lease_namespace
        .clone()
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace").ok()
        })
        .unwrap_or_else(|| "default".into());
    LeaderElector::new(
        client.clone(),
        namespace.trim(),
        &settings.lease_name,
        identity,
        shard,
    )
}

/// This replica's name: the setting, else the host name (a pod's name).
fn identity(settings: &Settings) -> String {
    settings.identity.clone().unwrap_or_else(|| {
        std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| format!("strata-{}", std::process::id()))
    })
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

/// Whether an object is in a namespace this replica watches: one of the
/// namespaces set (or any), and of its shard.
fn watched(settings: &Settings, shard: Shard, namespace: Option<&str>) -> bool {
    let Some(ns) = namespace else {
        return settings.namespaces.is_empty() && !shard.is_sharded();
    };
    (settings.namespaces.is_empty() || settings.namespaces.iter().any(|w| w == ns))
        && shard.owns(ns)
}

/// What every reconcile passes first: the object is in a watched namespace,
/// and every cache has synced. Each controller waits for its own cache only;
/// a reconcile that read another kind's half-filled cache would see, say, a
/// Stack without consumers and delete what they still use.
#[derive(Clone)]
struct Gate {
    settings: Settings,
    territory: Territory,
    synced: tokio::sync::watch::Sender<bool>,
    shutdown: Shutdown,
}

impl Gate {
    /// `reconcile`, behind the gate.
    fn wrap<K, C, F, Fut>(
        &self,
        reconcile: F,
    ) -> impl FnMut(Arc<K>, Arc<C>) -> BoxFuture<'static, crate::Result<Action>> + use<K, C, F, Fut>
    where
        K: Resource + Send + Sync + 'static,
        C: Send + Sync + 'static,
        F: Fn(Arc<K>, Arc<C>) -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = crate::Result<Action>> + Send + 'static,
    {
        let gate = self.clone();
        move |obj, ctx| {
            let gate = gate.clone();
            let reconcile = reconcile.clone();
            async move {
                let namespace = obj.meta().namespace.clone().unwrap_or_default();
                if !watched(&gate.settings, gate.territory.shard(), Some(&namespace)) {
                    return Ok(Action::await_change());
                }
                let mut synced = gate.synced.subscribe();
                tokio::select! {
                    biased;
                    // After SIGTERM nothing new starts; what started finishes.
                    () = gate.shutdown.clone() => return Ok(Action::await_change()),
                    _ = synced.wait_for(|synced| *synced) => {}
                }
                // While the shard count changes, a namespace may be another
                // holder's for a moment; it is looked at again shortly. The
                // admission lasts as long as the reconcile.
                let _admitted = match gate.territory.admit(&namespace) {
                    Ok(admitted) => admitted,
                    Err(Refusal::Yielded) => return Ok(Action::requeue(YIELDED_RECHECK)),
                    Err(Refusal::Waiting) => return Ok(Action::requeue(WAITING_RECHECK)),
                };
                reconcile(obj, ctx).await
            }
            .boxed()
        }
    }
}
