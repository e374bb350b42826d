//! Strata: a Kubernetes operator for versioned infrastructure stacks, the
//! network functions deployed onto them, and the service chains composing them.
#![forbid(unsafe_code)]

pub mod api;
pub mod render;
