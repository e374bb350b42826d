//! What the process runs on, naming no controller: settings, metrics,
//! health, telemetry, leader election, the write fence, the shared watches
//! and clients for other clusters from kubeconfig Secrets.

pub mod backoff;
pub mod census;
pub mod fence;
pub mod health;
pub mod kubeconfig;
pub mod leader;
pub mod metrics;
pub mod settings;
pub mod shards;
pub mod telemetry;
pub mod watches;
