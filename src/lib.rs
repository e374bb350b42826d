//! Strata: a Kubernetes operator for versioned infrastructure stacks, the
//! network functions deployed onto them, and the service chains composing them.
#![forbid(unsafe_code)]

pub mod api;
pub mod cli;
pub mod controllers;
#[cfg(test)]
mod layers;
pub mod operator;
pub mod render;
pub mod runtime;

/// Everything that can stop a reconcile. Each variant maps to one CamelCase
/// `reason` used in conditions, Events and metric labels.
#[derive(thiserror::Error, Debug)]
pub enum Error {
    /// A request to the API server failed; retried with backoff.
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),

    /// The spec cannot be rendered (unknown placeholder, malformed resource, ...).
    #[error(transparent)]
    InvalidSpec(#[from] render::RenderError),

    /// A field of the spec is invalid in a way the schema cannot express.
    #[error("{0}")]
    InvalidField(String),

    /// A Stack resource names a kind the API server does not serve.
    #[error("{0}")]
    UnknownKind(String),

    /// A Stack resource reaches outside the Stack's namespace, which the operator does not allow.
    #[error("{0}")]
    OutOfScope(String),

    /// The Stack's ServiceAccount may not make a request.
    #[error("{0}")]
    Forbidden(String),

    /// A Stack version was changed in place after it had been applied.
    #[error("{0}")]
    VersionConflict(String),

    /// NetworkFunctions depend on one another in a cycle.
    #[error("{0}")]
    DependencyCycle(String),

    /// A promotion gate needs an image pinned by digest to tell the artifact.
    #[error("{0}")]
    ImageNotPinned(String),

    /// The object needs the API server to fill in a field it has not set yet.
    #[error("{0}")]
    NotReady(String),
}

impl Error {
    /// The CamelCase reason of this error, for conditions, Events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube(_) => "ApiError",
            Error::InvalidSpec(_) | Error::InvalidField(_) => "InvalidSpec",
            Error::UnknownKind(_) => "UnknownKind",
            Error::OutOfScope(_) => "OutOfScope",
            Error::Forbidden(_) => "Forbidden",
            Error::VersionConflict(_) => "VersionConflict",
            Error::DependencyCycle(_) => "DependencyCycle",
            Error::ImageNotPinned(_) => "ImageNotPinned",
            Error::NotReady(_) => "NotReady",
        }
    }

    /// Whether progress needs a change of spec (Stalled), rather than a retry.
    pub fn is_stalled(&self) -> bool {
        !matches!(self, Error::Kube(_) | Error::NotReady(_))
    }
}

/// Result with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
