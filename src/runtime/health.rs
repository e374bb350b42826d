//! The metrics and health server: `/metrics`, `/healthz`, `/readyz`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use kube::Client;
use tokio::net::TcpListener;

use super::metrics::Metrics;

/// Where the process is in its life: what `/readyz` reports while the API
/// server can be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Readiness {
    /// Caches are not synced yet.
    Starting = 0,
    /// Waiting to become leader; another replica reconciles (or none can
    /// until the lease expires).
    Standby = 1,
    /// Caches synced; reconciling.
    Leading = 2,
}

/// Shared readiness, updated by the operator as it starts, syncs and elects,
/// and by whatever finds out whether the API server answers: the election
/// loop, or a probe without election.
#[derive(Clone)]
pub struct Health {
    state: Arc<AtomicU8>,
    reachable: Arc<AtomicBool>,
    /// The shard this replica serves, when sharded: `/readyz` names it.
    shard: Arc<std::sync::OnceLock<String>>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            // Until a request fails, the caches' sync is what is awaited.
            reachable: Arc::new(AtomicBool::new(true)),
            shard: Arc::default(),
        }
    }
}

impl Health {
    /// Names the shard this replica serves in every `/readyz` answer.
    pub fn describe_shard(&self, shard: &str) {
        let _ = self.shard.set(shard.to_string());
    }

    /// Sets the readiness.
    pub fn set(&self, readiness: Readiness) {
        self.state.store(readiness as u8, Ordering::SeqCst);
    }

    /// The readiness.
    pub fn get(&self) -> Readiness {
        match self.state.load(Ordering::SeqCst) {
            1 => Readiness::Standby,
            2 => Readiness::Leading,
            _ => Readiness::Starting,
        }
    }

    /// Records whether the API server answered the latest request; logs
    /// the transitions.
    pub fn api_reachable(&self, reachable: bool) {
        let was = self.reachable.swap(reachable, Ordering::SeqCst);
        match (was, reachable) {
            (true, false) => {
                tracing::warn!("the API server cannot be reached; reporting not ready")
            }
            (false, true) => tracing::info!("the API server answers again"),
            _ => {}
        }
    }

    /// What `/readyz` answers now: e.g. "ready: leading", or "ready:
    /// leading (shard 1 of 3)" when sharded.
    pub fn report(&self) -> (StatusCode, String) {
        let (code, state) = report(self.get(), self.reachable.load(Ordering::SeqCst));
        match self.shard.get() {
            Some(shard) => (code, format!("{state} ({shard})")),
            None => (code, state.to_string()),
        }
    }
}

/// What `/readyz` answers in `readiness` when the API server is (not) `reachable`.
/// A process that has not synced yet says so first: that is what it waits for.
fn report(readiness: Readiness, reachable: bool) -> (StatusCode, &'static str) {
    match (readiness, reachable) {
        (Readiness::Starting, _) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: caches not synced",
        ),
        (_, false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: API server unreachable",
        ),
        (Readiness::Leading, true) => (StatusCode::OK, "ready: leading"),
        // A standby replica is healthy and ready to take over.
        (Readiness::Standby, true) => (StatusCode::OK, "ready: standby"),
    }
}

/// How often [`probe`] asks, and how long it waits for an answer.
const PROBE_PERIOD: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Without leader election nothing else talks to the API server on a
/// schedule (watches may sit idle for minutes): a cheap request every
/// [`PROBE_PERIOD`] tells `/readyz` whether it answers. Runs until the
/// process exits.
pub async fn probe(client: Client, health: Health) {
    loop {
        let answered = tokio::time::timeout(PROBE_TIMEOUT, client.apiserver_version())
            .await
            .is_ok_and(|answer| answer.is_ok());
        health.api_reachable(answered);
        tokio::time::sleep(PROBE_PERIOD).await;
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Metrics,
    health: Health,
}

/// Serves the endpoints on `listener` until the process exits.
pub async fn serve(listener: TcpListener, metrics: Metrics, health: Health) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(s): State<AppState>| async move { s.metrics.render() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(s): State<AppState>| async move { s.health.report() }),
        )
        .with_state(AppState { metrics, health });
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_phase_and_the_api_server() {
        let health = Health::default();
        let not_ready = StatusCode::SERVICE_UNAVAILABLE;
        // (phase set, API server reachable, what /readyz answers then)
        type Step = (Option<Readiness>, Option<bool>, (StatusCode, &'static str));
        let steps: &[Step] = &[
            (None, None, (not_ready, "not ready: caches not synced")),
            // Before the first sync, the sync is what is missing.
            (
                None,
                Some(false),
                (not_ready, "not ready: caches not synced"),
            ),
            (
                Some(Readiness::Standby),
                None,
                (not_ready, "not ready: API server unreachable"),
            ),
            (None, Some(true), (StatusCode::OK, "ready: standby")),
            (
                Some(Readiness::Starting),
                None,
                (not_ready, "not ready: caches not synced"),
            ),
            (
                Some(Readiness::Leading),
                None,
                (StatusCode::OK, "ready: leading"),
            ),
            // An outage while leading, and the recovery.
            (
                None,
                Some(false),
                (not_ready, "not ready: API server unreachable"),
            ),
            (
                None,
                Some(false),
                (not_ready, "not ready: API server unreachable"),
            ),
            (None, Some(true), (StatusCode::OK, "ready: leading")),
            // The lease lost during an outage: standing by, still unreachable.
            (
                None,
                Some(false),
                (not_ready, "not ready: API server unreachable"),
            ),
            (
                Some(Readiness::Standby),
                None,
                (not_ready, "not ready: API server unreachable"),
            ),
            (None, Some(true), (StatusCode::OK, "ready: standby")),
        ];
        for (i, (phase, reachable, expected)) in steps.iter().enumerate() {
            if let Some(phase) = phase {
                health.set(*phase);
            }
            if let Some(reachable) = reachable {
                health.api_reachable(*reachable);
            }
            let (code, text) = health.report();
            assert_eq!((code, text.as_str()), *expected, "step {i}");
        }
    }
}
