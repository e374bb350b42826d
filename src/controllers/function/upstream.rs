//! The upstream DeploymentRecords that promotion gates read: one watch per
//! upstream function (in this cluster or another), started when a gated
//! function first asks for it, shared by every function that requires it,
//! and stopped when none does any more. A change upstream wakes exactly the
//! functions that require it, so a gate waits on the watch, never polls.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{StreamExt, channel::mpsc};
use kube::{
    Api, Client,
    runtime::{
        reflector::{self, ObjectRef, Store, store::Writer},
        watcher,
    },
};

use crate::{
    api::{
        DeploymentRecord, LABEL_NETWORK_FUNCTION, NetworkFunction, promotion::SecretKeyReference,
    },
    runtime::{kubeconfig, watches},
};

/// How long to wait before connecting again after a failure, at most.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// A watch that ran at least this long before it ended connects again at
/// once; one that ended sooner (a watch refused after its list succeeded)
/// waits as after a failure, so that it never lists in a loop.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How long one connection to another cluster is used before the
/// kubeConfig Secret is read again: a Secret changed or deleted is
/// noticed within this.
const SECRET_REREAD: Duration = Duration::from_secs(600);

/// Which records one upstream function has.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source {
    /// Another cluster: the namespace of the function that names the
    /// kubeConfig Secret, and the Secret. `None`: this cluster.
    pub cluster: Option<(String, SecretKeyReference)>,
    /// The upstream namespace.
    pub namespace: String,
    /// The upstream function.
    pub function: String,
}

impl Source {
    /// How a message names it: `staging/upf`, with the Secret of another cluster.
    pub fn describe(&self) -> String {
        match &self.cluster {
            None => format!("{}/{}", self.namespace, self.function),
            Some((_, secret)) => format!(
                "{}/{} (cluster of secret {})",
                self.namespace, self.function, secret.name
            ),
        }
    }
}

/// What a gate can read of an upstream function now.
#[derive(Debug, Clone)]
pub enum View {
    /// Its records, as the watch has them; `cluster` is the API server's
    /// URL of another cluster, empty for this one.
    Synced {
        cluster: String,
        records: Vec<Arc<DeploymentRecord>>,
    },
    /// Being read for the first time: the functions that require it are
    /// woken once it is.
    Connecting,
    /// Cannot be read: why, naming the source and never a credential.
    Unreachable(String),
}

/// Where a watch stands.
#[derive(Debug, Clone)]
enum Health {
    Connecting,
    Synced { server: String },
    Failed(String),
}

/// One upstream function's watch and the functions it wakes.
struct Entry {
    records: Store<DeploymentRecord>,
    health: Arc<Mutex<Health>>,
    downstream: Arc<Mutex<HashSet<ObjectRef<NetworkFunction>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The watches of every upstream function a gate requires.
pub struct Upstreams {
    entries: Mutex<HashMap<Source, Entry>>,
    wake: mpsc::UnboundedSender<ObjectRef<NetworkFunction>>,
    wakeups: Mutex<Option<mpsc::UnboundedReceiver<ObjectRef<NetworkFunction>>>>,
}

impl Default for Upstreams {
    fn default() -> Self {
        let (wake, wakeups) = mpsc::unbounded();
        Self {
            entries: Mutex::default(),
            wake,
            wakeups: Mutex::new(Some(wakeups)),
        }
    }
}

impl Upstreams {
    /// The functions to reconcile because something they require changed
    /// upstream (records, or whether the upstream can be read); once.
    pub fn wakeups(&self) -> Option<mpsc::UnboundedReceiver<ObjectRef<NetworkFunction>>> {
        self.wakeups.lock().expect("not poisoned").take()
    }

    /// Registers `me` as requiring exactly `sources` (watching those not yet
    /// watched, stopping those nobody requires any more) and returns what
    /// each holds now, in order.
    /// `live` tells, under the lock [`Upstreams::forget`] takes too,
    /// whether `me` still exists: a reconcile that was under way when it
    /// was deleted must not register it again after it was forgotten.
    pub fn require(
        &self,
        client: &Client,
        me: &ObjectRef<NetworkFunction>,
        sources: &[Source],
        live: impl Fn() -> bool,
    ) -> Vec<View> {
        let mut entries = self.entries.lock().expect("not poisoned");
        let sources = if live() { sources } else { &[] };
        entries.retain(|source, entry| {
            let mut downstream = entry.downstream.lock().expect("not poisoned");
            if !sources.contains(source) {
                downstream.remove(me);
            }
            !downstream.is_empty() || sources.contains(source)
        });
        sources
            .iter()
            .map(|source| {
                let entry = entries
                    .entry(source.clone())
                    .or_insert_with(|| self.watch(client, source));
                entry
                    .downstream
                    .lock()
                    .expect("not poisoned")
                    .insert(me.clone());
                view(source, entry)
            })
            .collect()
    }

    /// `me` requires nothing any more (deleted, or its gate removed).
    pub fn forget(&self, me: &ObjectRef<NetworkFunction>) {
        let mut entries = self.entries.lock().expect("not poisoned");
        entries.retain(|_, entry| {
            let mut downstream = entry.downstream.lock().expect("not poisoned");
            downstream.remove(me);
            !downstream.is_empty()
        });
    }

    fn watch(&self, client: &Client, source: &Source) -> Entry {
        let (records, writer) = reflector::store();
        let health = Arc::new(Mutex::new(Health::Connecting));
        let downstream = Arc::new(Mutex::new(HashSet::new()));
        let watch = Watch {
            client: client.clone(),
            source: source.clone(),
            health: health.clone(),
            downstream: downstream.clone(),
            wake: self.wake.clone(),
        };
        Entry {
            records,
            health,
            downstream,
            task: tokio::spawn(watch.run(writer)),
        }
    }
}

/// What `entry` holds of `source` now.
fn view(source: &Source, entry: &Entry) -> View {
    match &*entry.health.lock().expect("not poisoned") {
        Health::Synced { server } => View::Synced {
            cluster: server.clone(),
            records: entry.records.state(),
        },
        Health::Connecting => View::Connecting,
        Health::Failed(why) => {
            View::Unreachable(format!("cannot read upstream {}: {why}", source.describe()))
        }
    }
}

/// The task that keeps one upstream function's records.
struct Watch {
    client: Client,
    source: Source,
    health: Arc<Mutex<Health>>,
    downstream: Arc<Mutex<HashSet<ObjectRef<NetworkFunction>>>>,
    wake: mpsc::UnboundedSender<ObjectRef<NetworkFunction>>,
}

impl Watch {
    async fn run(self, mut writer: Writer<DeploymentRecord>) {
        let mut retry = Duration::from_secs(1);
        loop {
            let started = tokio::time::Instant::now();
            match self.follow(&mut writer).await {
                // It had synced and ran a while: connect again at once (a
                // watch that ended, a resource version too old, a Secret to
                // read again), keeping what it has meanwhile.
                Ok(()) if started.elapsed() >= HEALTHY_RUN => {
                    retry = Duration::from_secs(1);
                    continue;
                }
                Ok(()) => {}
                Err(why) => self.set(Health::Failed(why)),
            }
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(MAX_RETRY);
        }
    }

    /// Connects (reading the kubeConfig Secret of another cluster once per
    /// connection) and follows the records until the watch fails: `Ok` if
    /// it had synced, why it could not otherwise.
    async fn follow(&self, writer: &mut Writer<DeploymentRecord>) -> Result<(), String> {
        let (client, server) = match &self.source.cluster {
            None => (self.client.clone(), String::new()),
            Some((namespace, secret)) => {
                let key = secret.key.as_deref().unwrap_or_default();
                let remote =
                    kubeconfig::client_from_secret(&self.client, namespace, &secret.name, key)
                        .await
                        .map_err(|e| e.to_string())?;
                (remote.client, remote.server)
            }
        };
        let api: Api<DeploymentRecord> = Api::namespaced(client, &self.source.namespace);
        let config = watches::config().labels(&format!(
            "{LABEL_NETWORK_FUNCTION}={}",
            self.source.function
        ));
        let mut events = watcher::watcher(api, config).boxed();
        let mut synced = false;
        // Another cluster's Secret is read again now and then: the watch
        // itself would go on with the credentials it started with.
        // (A watch of this cluster is not renewed: a year is never.)
        let lifetime = match self.source.cluster {
            Some(_) => SECRET_REREAD,
            None => Duration::from_secs(365 * 24 * 3600),
        };
        let deadline = tokio::time::Instant::now() + lifetime;
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.next()).await {
            match event {
                Ok(event) => {
                    writer.apply_watcher_event(&event);
                    match event {
                        watcher::Event::InitDone => {
                            synced = true;
                            self.set(Health::Synced {
                                server: server.clone(),
                            });
                        }
                        watcher::Event::Apply(_) | watcher::Event::Delete(_) => self.wake(),
                        watcher::Event::Init | watcher::Event::InitApply(_) => {}
                    }
                }
                // What it holds may be stale from now on: closed, without a
                // word, until it is read again (or cannot be).
                Err(e) if synced => {
                    self.set(Health::Connecting);
                    tracing::debug!(upstream = %self.source.describe(), error = %e, "upstream watch ended; connecting again");
                    return Ok(());
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }

    /// Sets the health, waking the functions that require it on a change.
    fn set(&self, health: Health) {
        let mut current = self.health.lock().expect("not poisoned");
        let changed = match (&*current, &health) {
            (Health::Failed(a), Health::Failed(b)) => a != b,
            // Listed again: what it holds may have changed meanwhile.
            (Health::Synced { .. }, Health::Synced { .. }) => true,
            (Health::Connecting, Health::Connecting) => false,
            _ => true,
        };
        *current = health;
        drop(current);
        if changed {
            self.wake();
        }
    }

    fn wake(&self) {
        tracing::debug!(upstream = %self.source.describe(), "upstream records changed; waking the functions that require them");
        for nf in self.downstream.lock().expect("not poisoned").iter() {
            // The receiver is gone only when the controller is: nothing to wake.
            let _ = self.wake.unbounded_send(nf.clone());
        }
    }
}
