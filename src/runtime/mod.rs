//! The operator process: settings, metrics, health, telemetry, leader election.

pub mod fence;
pub mod health;
pub mod leader;
pub mod metrics;
pub mod operator;
pub mod settings;
pub mod telemetry;
pub mod watches;
mod wiring;
