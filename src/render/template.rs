//! `${name}` substitution: the inventory of a Stack applied to its manifest.
//!
//! Rules, in the order a string is read from left to right:
//! - `$${` is an escape and produces a literal `${` (so `$${x}` renders as `${x}`);
//! - `${name}` is replaced by the value of parameter `name`; the name runs to
//!   the first `}` and must match `^[A-Za-z_][A-Za-z0-9_.-]*$`;
//! - any other `$` is literal.
//!
//! Substituted values are inserted verbatim and never scanned again, so a
//! parameter whose value contains `${...}` cannot expand recursively.
//! Only string *values* are substituted: object keys stay literal, because a
//! key that changes with the inventory would make the shape of an object
//! depend on the environment, and Kubernetes schemas name their keys.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

pub(crate) use crate::api::limits::MAX_DEPTH;

/// What is wrong with a string that was to be substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// `${name}` where `name` is a valid name but no parameter.
    Unknown(String),
    /// `${text}` where `text` can never be a parameter name.
    Invalid(String),
    /// `${` without a closing `}`.
    Unterminated,
}

/// Whether `name` may be a parameter: `^[A-Za-z_][A-Za-z0-9_.-]*$`.
pub(crate) fn is_parameter_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `input` with every placeholder replaced; borrowed when nothing changed.
pub(crate) fn substitute_str<'s>(
    input: &'s str,
    parameters: &BTreeMap<String, String>,
) -> Result<Cow<'s, str>, Fault> {
    // Both a placeholder and the escape contain "${"; most strings have neither.
    if !input.contains("${") {
        return Ok(Cow::Borrowed(input));
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let tail = &rest[dollar..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after.find('}').ok_or(Fault::Unterminated)?;
            let name = &after[..end];
            if !is_parameter_name(name) {
                return Err(Fault::Invalid(name.to_string()));
            }
            let value = parameters
                .get(name)
                .ok_or_else(|| Fault::Unknown(name.to_string()))?;
            out.push_str(value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// One step from a resource's root to a value inside it.
#[derive(Clone, Copy)]
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// Substitutes every string value inside `value`, at any depth, in document
/// order. On failure, returns the fault and the path of the offending string
/// (`data.vlan`, `spec.ports[0].name`, `metadata.annotations["a/b"]`).
///
/// The walk uses an explicit stack, so it cannot overflow however deep the
/// value is.
pub(crate) fn substitute_value(
    value: &mut Value,
    parameters: &BTreeMap<String, String>,
) -> Result<(), (Fault, String)> {
    // The path to the value being visited; each pending entry records how
    // long the path is at that entry, so the path can be cut back on pop.
    let mut path: Vec<Step> = Vec::new();
    let mut pending: Vec<(&mut Value, usize, Option<Step>)> = vec![(value, 0, None)];
    while let Some((current, depth, step)) = pending.pop() {
        path.truncate(depth.saturating_sub(1));
        path.extend(step);
        match current {
            Value::String(s) => match substitute_str(s, parameters) {
                Ok(Cow::Borrowed(_)) => {}
                Ok(Cow::Owned(new)) => *s = new,
                Err(fault) => return Err((fault, render_path(&path))),
            },
            // Reversed pushes make the pops, and so the first error reported,
            // follow document order.
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate().rev() {
                    pending.push((item, depth + 1, Some(Step::Index(i))));
                }
            }
            Value::Object(map) => {
                for (key, item) in map.iter_mut().rev() {
                    pending.push((item, depth + 1, Some(Step::Key(key))));
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    Ok(())
}

/// Whether arrays and objects in `value` nest deeper than `max` levels.
pub(crate) fn nests_deeper_than(value: &Value, max: usize) -> bool {
    let mut pending = vec![(value, 1usize)];
    while let Some((current, depth)) = pending.pop() {
        match current {
            Value::Array(_) | Value::Object(_) if depth > max => return true,
            Value::Array(items) => pending.extend(items.iter().map(|child| (child, depth + 1))),
            Value::Object(map) => pending.extend(map.values().map(|child| (child, depth + 1))),
            _ => {}
        }
    }
    false
}

/// A path as a user reads it in a manifest: `spec.ports[0].name`, with keys
/// that are not plain identifiers quoted (`metadata.labels["app.kubernetes.io/name"]`).
fn render_path(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(key) if is_plain_key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Step::Key(key) => out.push_str(&format!("[{key:?}]")),
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    if out.is_empty() {
        out.push_str("the value itself");
    }
    out
}

fn is_plain_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params() -> BTreeMap<String, String> {
        [
            ("vlan", "120"),
            ("site.name", "par-1"),
            ("_x", "${vlan}"),
            ("empty", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn substitution_table() {
        let p = params();
        for (input, want) in [
            ("plain", Ok("plain")),
            ("", Ok("")),
            ("${vlan}", Ok("120")),
            ("vlan-${vlan}-${vlan}", Ok("vlan-120-120")),
            ("${site.name}/${_x}", Ok("par-1/${vlan}")), // values are not rescanned
            ("a${empty}b", Ok("ab")),
            ("$${vlan}", Ok("${vlan}")),
            ("$$${vlan}", Ok("$${vlan}")), // left to right: "$" then the escape
            ("$ $$ $vlan {vlan} $}", Ok("$ $$ $vlan {vlan} $}")),
            ("cost: 5$", Ok("cost: 5$")),
            ("${vlanid}", Err(Fault::Unknown("vlanid".into()))),
            ("${}", Err(Fault::Invalid("".into()))),
            ("${ vlan }", Err(Fault::Invalid(" vlan ".into()))),
            ("${1x}", Err(Fault::Invalid("1x".into()))),
            ("${a${vlan}}", Err(Fault::Invalid("a${vlan".into()))),
            ("${vlan", Err(Fault::Unterminated)),
            ("ok ${vlan} then ${", Err(Fault::Unterminated)),
        ] {
            let got = substitute_str(input, &p);
            assert_eq!(got.as_deref().map_err(Clone::clone), want, "{input:?}");
        }
    }

    #[test]
    fn unchanged_strings_are_borrowed() {
        assert!(matches!(
            substitute_str("no placeholder $x", &params()),
            Ok(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn parameter_names() {
        for name in ["vlan", "_x", "site.name", "a-b", "A9"] {
            assert!(is_parameter_name(name), "{name}");
        }
        for name in ["", "9a", ".a", "-a", "a b", "a}", "a$", "é"] {
            assert!(!is_parameter_name(name), "{name}");
        }
    }

    #[test]
    fn values_at_any_depth_are_substituted_and_keys_are_not() {
        let mut value = json!({
            "data": {"${vlan}": "${vlan}", "n": 5, "b": true, "z": null},
            "list": [["${site.name}"], {"x": "$${vlan}"}],
        });
        substitute_value(&mut value, &params()).unwrap();
        assert_eq!(
            value,
            json!({
                "data": {"${vlan}": "120", "n": 5, "b": true, "z": null},
                "list": [["par-1"], {"x": "${vlan}"}],
            })
        );
    }

    #[test]
    fn errors_name_the_path_of_the_first_bad_string_in_document_order() {
        let mut value = json!({
            "metadata": {"labels": {"app.kubernetes.io/name": "${nope}"}},
            "spec": {"ports": [{"name": "ok"}, {"name": "${bad"}]},
        });
        let err = substitute_value(&mut value, &params()).unwrap_err();
        assert_eq!(
            err,
            (
                Fault::Unknown("nope".into()),
                r#"metadata.labels["app.kubernetes.io/name"]"#.into()
            )
        );
        value["metadata"] = json!({});
        let err = substitute_value(&mut value, &params()).unwrap_err();
        assert_eq!(err, (Fault::Unterminated, "spec.ports[1].name".into()));
    }

    #[test]
    fn depth_bound() {
        let mut value = json!(1);
        for _ in 0..MAX_DEPTH {
            value = Value::Array(vec![value]);
        }
        assert!(!nests_deeper_than(&value, MAX_DEPTH));
        value = json!({ "k": value });
        assert!(nests_deeper_than(&value, MAX_DEPTH));
    }
}

#[cfg(test)]
mod properties;
