//! Rendering a Stack: its inventory substituted into its manifest, validated,
//! and summarised by the digest that makes a version immutable.
//!
//! The substitution rules are in the `template` module: `${name}` in every
//! string value (never in object keys), `$${` for a literal `${`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::RenderError;
use super::digest::canonical_digest;
use super::template::{
    Fault, MAX_DEPTH, is_parameter_name, nests_deeper_than, substitute_str, substitute_value,
};
use crate::api::StackSpec;
use crate::api::{LABEL_STACK, LABEL_STACK_VERSION};

/// A Stack version rendered: what is applied, what is published, and the
/// digest that identifies this content.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedStack {
    /// `spec.version`.
    pub version: String,
    /// `sha256:...` of `{"resources": [...], "outputs": {...}}` after
    /// substitution and before namespace defaulting, so it depends on the
    /// content only and not on which namespace the Stack lives in. Parameters
    /// no resource uses do not change it.
    pub digest: String,
    /// `spec.resources` with every placeholder substituted, in spec order.
    pub resources: Vec<Value>,
    /// `spec.outputs` with every placeholder substituted.
    pub outputs: BTreeMap<String, String>,
}

/// Renders a Stack spec: validates parameter and output names, substitutes
/// `${parameters}` into every resource and output, checks every resource is a
/// uniquely named Kubernetes object, and computes the content digest.
///
/// Nothing is defaulted here: the caller sets namespaces with
/// [`default_namespace`] once discovery has said which kinds are namespaced.
pub fn render_stack(spec: &StackSpec) -> Result<RenderedStack, RenderError> {
    if let Some(bad) = spec.parameters.keys().find(|k| !is_parameter_name(k)) {
        return Err(RenderError::InvalidParameterName(bad.clone()));
    }
    validate_output_names(spec.outputs.keys().map(String::as_str))?;

    let mut resources = Vec::with_capacity(spec.resources.len());
    let mut declared: BTreeMap<ObjectKey, usize> = BTreeMap::new();
    for (index, raw) in spec.resources.iter().enumerate() {
        let (resource, key) = render_resource(index, raw, &spec.parameters)?;
        if let Some(&first) = declared.get(&key) {
            return Err(RenderError::DuplicateResource {
                first,
                second: index,
                object: key.to_string(),
            });
        }
        declared.insert(key, index);
        resources.push(resource);
    }

    let mut outputs = BTreeMap::new();
    for (name, value) in &spec.outputs {
        let value = substitute_str(value, &spec.parameters)
            .map_err(|fault| fault_error(fault, "spec.outputs".to_string(), name.clone()))?;
        outputs.insert(name.clone(), value.into_owned());
    }

    let digest = canonical_digest(&json!({"resources": &resources, "outputs": &outputs}));
    Ok(RenderedStack {
        version: spec.version.clone(),
        digest,
        resources,
        outputs,
    })
}

/// One resource: checked to be a Kubernetes object, bounded in depth, and
/// substituted; with the key that tells whether two resources are one object.
fn render_resource(
    index: usize,
    raw: &Value,
    parameters: &BTreeMap<String, String>,
) -> Result<(Value, ObjectKey), RenderError> {
    let resource_label = {
        let id =
            identify(raw).map_err(|reason| RenderError::MalformedResource { index, reason })?;
        format!("spec.resources[{index}] ({}/{})", id.kind, id.name)
    };
    if nests_deeper_than(raw, MAX_DEPTH) {
        return Err(RenderError::TooDeep {
            resource: resource_label,
            max: MAX_DEPTH,
        });
    }
    let mut resource = raw.clone();
    substitute_value(&mut resource, parameters).map_err(|(fault, path)| {
        if is_secret(raw) {
            secret_fault_error(&fault, resource_label, path)
        } else {
            fault_error(fault, resource_label, path)
        }
    })?;

    // Placeholders may have changed the identity, or emptied it.
    let id = identify(&resource).map_err(|reason| RenderError::MalformedResource {
        index,
        reason: format!("after substitution, {reason}"),
    })?;
    let key = ObjectKey {
        // Versions of one group serve the same objects: v1 and v1beta1 of
        // networking.k8s.io/NetworkPolicy "a" are one NetworkPolicy.
        group: id
            .api_version
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
            .to_string(),
        kind: id.kind.to_string(),
        namespace: id.namespace.unwrap_or_default().to_string(),
        name: id.name.to_string(),
    };
    Ok((resource, key))
}

/// What makes two resources the same Kubernetes object. A resource without a
/// namespace is compared as written: whether it is the same object as one in
/// the Stack's own namespace is known only after namespace defaulting.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct ObjectKey {
    group: String,
    kind: String,
    /// Empty when not written.
    namespace: String,
    name: String,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)?;
        if !self.namespace.is_empty() {
            write!(f, " in namespace {}", self.namespace)?;
        }
        Ok(())
    }
}

/// The environment variable a consumer sees for a Stack output:
/// `STACK_<NAME>` with the name upper-cased (`dnsUpstream` -> `STACK_DNSUPSTREAM`).
pub fn output_env_name(output: &str) -> String {
    format!("STACK_{}", output.to_ascii_uppercase())
}

/// Checks output names can become environment variables
/// (`^[A-Za-z][A-Za-z0-9_]*$`) and that no two become the same one.
pub(crate) fn validate_output_names<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), RenderError> {
    let mut by_env: BTreeMap<String, &str> = BTreeMap::new();
    for name in names {
        let mut chars = name.chars();
        let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(RenderError::InvalidOutputName(name.to_string()));
        }
        let env = name.to_ascii_uppercase();
        if let Some(first) = by_env.get(&env) {
            return Err(RenderError::OutputNameCollision {
                first: first.to_string(),
                second: name.to_string(),
                env,
            });
        }
        by_env.insert(env, name);
    }
    Ok(())
}

/// Sets `metadata.namespace` when it is absent, null or empty. The caller
/// calls it only for kinds discovery reports as namespaced; a namespace the
/// user wrote is kept (whether it is allowed is the controller's decision).
pub fn default_namespace(resource: &mut Value, namespace: &str) {
    let Some(metadata) = resource.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let unset = match metadata.get("namespace") {
        None | Some(Value::Null) => true,
        Some(Value::String(ns)) => ns.is_empty(),
        Some(_) => false,
    };
    if unset {
        metadata.insert("namespace".into(), Value::String(namespace.into()));
    }
}

/// Labels a rendered resource with the Stack that manages it and the Stack
/// version (`strata.dev/stack`, `strata.dev/stack-version`), so that managed
/// objects can be listed by label. Values are made valid label values with
/// [`super::label_value`]. Called after the digest, like namespace defaulting.
pub fn add_stack_labels(resource: &mut Value, stack: &str, version: &str) {
    let Some(metadata) = resource.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let labels = metadata.entry("labels").or_insert_with(|| json!({}));
    if labels.is_null() {
        *labels = json!({});
    }
    if let Some(labels) = labels.as_object_mut() {
        labels.insert(LABEL_STACK.into(), Value::String(super::label_value(stack)));
        labels.insert(
            LABEL_STACK_VERSION.into(),
            Value::String(super::label_value(version)),
        );
    }
}

/// The identifying fields of a resource.
struct Identity<'a> {
    api_version: &'a str,
    kind: &'a str,
    /// `None` when absent, null or empty.
    namespace: Option<&'a str>,
    name: &'a str,
}

/// Reads the identifying fields, or says in one clause what is wrong.
fn identify(resource: &Value) -> Result<Identity<'_>, String> {
    let object = resource.as_object().ok_or(
        "it is not an object; write it as a manifest with apiVersion, kind and metadata.name",
    )?;
    let api_version = required(object.get("apiVersion"), "apiVersion", "v1 or apps/v1")?;
    let kind = required(object.get("kind"), "kind", "ConfigMap")?;
    let metadata = match object.get("metadata") {
        None | Some(Value::Null) => return Err("metadata is missing; set metadata.name".into()),
        Some(Value::Object(metadata)) => metadata,
        Some(_) => return Err("metadata must be an object with at least a name".into()),
    };
    let name = required(metadata.get("name"), "metadata.name", "edge-dns")?;
    let namespace = match metadata.get("namespace") {
        None | Some(Value::Null) => None,
        Some(Value::String(ns)) => Some(ns.as_str()).filter(|ns| !ns.is_empty()),
        Some(_) => {
            return Err(
                "metadata.namespace must be a string; remove it to use the Stack's namespace"
                    .into(),
            );
        }
    };
    if !matches!(
        metadata.get("labels"),
        None | Some(Value::Null) | Some(Value::Object(_))
    ) {
        return Err("metadata.labels must be a map from label keys to values".into());
    }
    Ok(Identity {
        api_version,
        kind,
        namespace,
        name,
    })
}

/// A field that must be a non-empty string.
fn required<'v>(value: Option<&'v Value>, field: &str, example: &str) -> Result<&'v str, String> {
    match value {
        None | Some(Value::Null) => Err(format!(
            "{field} is missing; set it (for example {example})"
        )),
        Some(Value::String(s)) if s.is_empty() => {
            Err(format!("{field} is empty; set it (for example {example})"))
        }
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("{field} must be a string (for example {example})")),
    }
}

/// Whether a resource is a core/v1 Secret, whose values must never be quoted.
pub fn is_secret(resource: &Value) -> bool {
    resource.get("apiVersion").and_then(Value::as_str) == Some("v1")
        && resource.get("kind").and_then(Value::as_str) == Some("Secret")
}

/// The error for a substitution fault in a Secret: what is wrong and where,
/// not the text.
fn secret_fault_error(fault: &Fault, resource: String, path: String) -> RenderError {
    let fault = match fault {
        Fault::Unknown(_) => "a placeholder that is not a parameter",
        Fault::Invalid(_) => "an invalid placeholder",
        Fault::Unterminated => "a ${ without a closing }",
    };
    RenderError::PlaceholderInSecret {
        resource,
        path,
        fault,
    }
}

/// The error for a substitution fault in `resource` at `path`.
fn fault_error(fault: Fault, resource: String, path: String) -> RenderError {
    match fault {
        Fault::Unknown(placeholder) => RenderError::UnknownPlaceholder {
            resource,
            path,
            placeholder,
        },
        Fault::Invalid(placeholder) => RenderError::InvalidPlaceholder {
            resource,
            path,
            placeholder,
        },
        Fault::Unterminated => RenderError::UnterminatedPlaceholder { resource, path },
    }
}

#[cfg(test)]
mod tests;
