//! Pure functions from specs to desired objects: no client, no I/O.
//!
//! - [`stack`] renders a Stack: `${parameter}` substitution in its resources
//!   and outputs, validation, and the content digest that makes a version
//!   immutable.
//! - [`function`] builds the children of a NetworkFunction (ConfigMap,
//!   Deployment, Service) from its spec, the Stack revision it resolved to and
//!   its next hops in service chains.
//! - [`chain`] builds the NetworkPolicies isolating the hops of a
//!   ServiceChain and computes the chain's status from its hops.
//! - [`digest`] is the canonical encoding both of them hash.
//!
//! Everything here is deterministic: the same input gives byte-identical
//! output, so that server-side apply of an unchanged object is a no-op and a
//! pod template changes only when something it depends on changed.

pub mod chain;
pub mod digest;
pub mod function;
pub mod stack;
mod template;

/// Why a spec cannot be rendered. Every variant is a fault in the user's spec
/// (or, for [`RenderError::MissingMetadata`], an object that did not come from
/// the API server); the message names the field and says what to change.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// A `${name}` names no parameter.
    #[error(
        "{resource} uses ${{{placeholder}}} in {path}, which is not a parameter; add it to spec.parameters or fix the placeholder"
    )]
    UnknownPlaceholder {
        /// The resource (`spec.resources[1] (ConfigMap/edge-dns)`) or `spec.outputs`.
        resource: String,
        /// Where in the resource (`data.vlan`) or the output name.
        path: String,
        /// The name between `${` and `}`.
        placeholder: String,
    },

    /// A `${...}` whose content can never be a parameter name.
    #[error(
        "{resource} uses ${{{placeholder}}} in {path}, which is not a valid placeholder; a name starts with a letter or '_' and has only letters, digits, '_', '.' and '-' (write $${{ for a literal ${{)"
    )]
    InvalidPlaceholder {
        /// The resource or `spec.outputs`.
        resource: String,
        /// Where in the resource, or the output name.
        path: String,
        /// The text between `${` and `}`.
        placeholder: String,
    },

    /// A `${` without a closing `}`.
    #[error(
        "{resource} has a ${{ without a closing }} in {path}; close the placeholder or write $${{ for a literal ${{"
    )]
    UnterminatedPlaceholder {
        /// The resource or `spec.outputs`.
        resource: String,
        /// Where in the resource, or the output name.
        path: String,
    },

    /// A bad placeholder in a Secret. Unlike the other placeholder errors,
    /// the text is not quoted: it is part of a Secret's value, and this
    /// message goes to the Stack's status, an Event and the log.
    #[error(
        "{resource} has {fault} in {path}; the text is not shown because it is in a Secret: add the parameter to spec.parameters, fix the placeholder, or write $${{ for a literal ${{"
    )]
    PlaceholderInSecret {
        /// The resource, e.g. `spec.resources[1] (Secret/credentials)`.
        resource: String,
        /// Where in the Secret (`stringData.password`).
        path: String,
        /// What is wrong, without the text: `a placeholder that is not a parameter`.
        fault: &'static str,
    },

    /// A resource that is not a Kubernetes object with apiVersion, kind and name.
    #[error("spec.resources[{index}] is not a valid Kubernetes object: {reason}")]
    MalformedResource {
        /// Position in `spec.resources`.
        index: usize,
        /// What is wrong and how to fix it.
        reason: String,
    },

    /// A resource nested deeper than the renderer walks.
    #[error(
        "{resource} is nested deeper than {max} levels; flatten it (Kubernetes objects are never this deep)"
    )]
    TooDeep {
        /// The resource, e.g. `spec.resources[1] (ConfigMap/edge-dns)`.
        resource: String,
        /// The deepest nesting accepted.
        max: usize,
    },

    /// Two resources that are the same Kubernetes object.
    #[error(
        "spec.resources[{first}] and spec.resources[{second}] are both {object}; remove one of them or give them different names"
    )]
    DuplicateResource {
        /// Position of the first declaration.
        first: usize,
        /// Position of the second declaration.
        second: usize,
        /// The object, e.g. `ConfigMap/edge-dns`.
        object: String,
    },

    /// A parameter key that no placeholder could ever name.
    #[error(
        "spec.parameters has the key {0:?}, which cannot be used as a placeholder; a parameter name starts with a letter or '_' and has only letters, digits, '_', '.' and '-'"
    )]
    InvalidParameterName(String),

    /// An output key that cannot be part of an environment variable name.
    #[error(
        "spec.outputs has the key {0:?}, which cannot name an environment variable; an output name starts with a letter and has only letters, digits and '_'"
    )]
    InvalidOutputName(String),

    /// Two output keys that become the same environment variable.
    #[error(
        "spec.outputs has both {first:?} and {second:?}, which are both published as STACK_{env}; rename one of them"
    )]
    OutputNameCollision {
        /// The first output name.
        first: String,
        /// The second output name.
        second: String,
        /// The shared upper-cased name.
        env: String,
    },

    /// A `spec.config` key that is not a valid ConfigMap key.
    #[error(
        "spec.config has the key {0:?}, which is not a valid ConfigMap key; use at most 253 letters, digits, '-', '_' and '.' (not \".\" or \"..\", not starting with \"..\")"
    )]
    InvalidConfigKey(String),

    /// Two sources set the same environment variable of the function's container.
    #[error(
        "environment variable {name} is set by both {first} and {second}; rename one of them so that the container has each variable once"
    )]
    DuplicateEnv {
        /// The variable.
        name: String,
        /// The first source, e.g. `spec.env[0]`.
        first: String,
        /// The second source, e.g. `stack output dnsUpstream`.
        second: String,
    },

    /// A function with two next hops in one chain: it appears in it twice.
    #[error(
        "the function appears more than once in service chain {chain} (with next hops {first} and {second}); a function can be only one hop of a chain, because its pods get one next hop per chain"
    )]
    RepeatedInChain {
        /// The ServiceChain.
        chain: String,
        /// One next hop.
        first: String,
        /// Another next hop.
        second: String,
    },

    /// Two ports with the same number and protocol.
    #[error(
        "spec.ports {first:?} and {second:?} both use {protocol} port {port}; give each port its own number"
    )]
    DuplicatePort {
        /// The first port's name.
        first: String,
        /// The second port's name.
        second: String,
        /// The shared port number.
        port: i32,
        /// The shared protocol.
        protocol: &'static str,
    },

    /// The object lacks metadata the API server always sets (name, namespace, uid).
    #[error(
        "the NetworkFunction has no {0}; render children only from an object read from the API server"
    )]
    MissingMetadata(&'static str),

    /// A hop's NetworkPolicy name (`<chain>-<hop>`) is longer than Kubernetes allows.
    #[error(
        "the NetworkPolicy of hop {hop} would be named <chain>-{hop}, {length} characters, but Kubernetes names have at most {max}; shorten the chain's or the hop's name"
    )]
    PolicyNameTooLong {
        /// The hop's name.
        hop: String,
        /// The length of `<chain>-<hop>`.
        length: usize,
        /// The longest name Kubernetes accepts.
        max: usize,
    },

    /// A version requirement that is not a semver requirement.
    #[error(transparent)]
    InvalidRequirement(#[from] crate::api::version::InvalidRequirement),

    /// The ServiceChain lacks metadata the API server always sets (name, namespace, uid).
    #[error(
        "the ServiceChain has no {0}; render its policies only from an object read from the API server"
    )]
    ChainMissingMetadata(&'static str),
}

/// A label value derived from free text (a version such as `1.0.0+build.5`, a
/// Stack name of up to 253 characters): label values allow at most 63
/// characters from `[-A-Za-z0-9_.]`, starting and ending alphanumeric. Other
/// characters become `_` and the value is truncated; the exact text belongs
/// in an annotation next to the label.
pub fn label_value(text: &str) -> String {
    let mapped: String = text
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '_',
        })
        .take(63)
        .collect();
    mapped
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_valid() {
        let long = "a".repeat(70);
        for (text, want) in [
            ("1.4.0", "1.4.0"),
            ("1.0.0+build.5", "1.0.0_build.5"),
            ("1.0.0-rc.1", "1.0.0-rc.1"),
            ("", ""),
            ("-x-", "x"),
            ("é", ""),
            (long.as_str(), &long[..63]),
        ] {
            assert_eq!(label_value(text), want, "label_value({text:?})");
        }
    }

    #[test]
    fn messages_name_the_field_and_the_fix() {
        let e = RenderError::UnknownPlaceholder {
            resource: "spec.resources[1] (ConfigMap/edge-dns)".into(),
            path: "data.vlan".into(),
            placeholder: "vlanid".into(),
        };
        assert_eq!(
            e.to_string(),
            "spec.resources[1] (ConfigMap/edge-dns) uses ${vlanid} in data.vlan, which is not a parameter; add it to spec.parameters or fix the placeholder"
        );
        let e = RenderError::UnterminatedPlaceholder {
            resource: "spec.outputs".into(),
            path: "dns".into(),
        };
        assert_eq!(
            e.to_string(),
            "spec.outputs has a ${ without a closing } in dns; close the placeholder or write $${ for a literal ${"
        );
    }
}
