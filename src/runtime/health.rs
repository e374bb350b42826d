//! The metrics and health server: `/metrics`, `/healthz`, `/readyz`.

use std::sync::{
    Arc,
    atomic::{AtomicU8, Ordering},
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use tokio::net::TcpListener;

use super::metrics::Metrics;

/// What `/readyz` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Readiness {
    /// Caches are not synced yet, or the API server cannot be reached.
    Starting = 0,
    /// Waiting to become leader; another replica reconciles.
    Standby = 1,
    /// Caches synced; reconciling.
    Leading = 2,
}

/// Shared readiness, updated by the operator as it starts, syncs and elects.
#[derive(Clone, Default)]
pub struct Health {
    state: Arc<AtomicU8>,
}

impl Health {
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
            get(|State(s): State<AppState>| async move {
                match s.health.get() {
                    Readiness::Leading => (StatusCode::OK, "ready: leading"),
                    // A standby replica is healthy and ready to take over.
                    Readiness::Standby => (StatusCode::OK, "ready: standby"),
                    Readiness::Starting => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not ready: caches not synced",
                    ),
                }
            }),
        )
        .with_state(AppState { metrics, health });
    axum::serve(listener, app).await
}
