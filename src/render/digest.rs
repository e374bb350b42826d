//! Canonical digests: the identity of rendered content.
//!
//! A Stack version is immutable by digest, so the digest must depend on the
//! content only — not on the order of keys in the YAML the user wrote, nor on
//! whitespace or quoting. The canonical encoding is compact JSON with object
//! keys sorted by their UTF-8 bytes. That is exactly what `serde_json` writes
//! for a `Value` while its `preserve_order` feature is off, but the sort is
//! done here explicitly so that a dependency switching that feature on (Cargo
//! unifies features) cannot silently change every digest.

use std::collections::BTreeMap;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The canonical encoding of `value`: compact JSON, object keys sorted.
///
/// The walk is iterative, so arbitrarily deep values cannot overflow the stack.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    /// A piece of output still to be written; pushed in reverse order.
    enum Pending<'a> {
        Value(&'a Value),
        Key(&'a str),
        Punct(&'static [u8]),
    }

    let mut out = Vec::new();
    let mut pending = vec![Pending::Value(value)];
    while let Some(next) = pending.pop() {
        match next {
            Pending::Punct(bytes) => out.extend_from_slice(bytes),
            Pending::Key(key) => {
                write_json_string(&mut out, key);
                out.push(b':');
            }
            Pending::Value(Value::Null) => out.extend_from_slice(b"null"),
            Pending::Value(Value::Bool(b)) => {
                out.extend_from_slice(if *b { b"true" } else { b"false" })
            }
            Pending::Value(Value::Number(n)) => out.extend_from_slice(n.to_string().as_bytes()),
            Pending::Value(Value::String(s)) => write_json_string(&mut out, s),
            Pending::Value(Value::Array(items)) => {
                out.push(b'[');
                pending.push(Pending::Punct(b"]"));
                for (i, item) in items.iter().enumerate().rev() {
                    pending.push(Pending::Value(item));
                    if i > 0 {
                        pending.push(Pending::Punct(b","));
                    }
                }
            }
            Pending::Value(Value::Object(map)) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                out.push(b'{');
                pending.push(Pending::Punct(b"}"));
                for (i, (key, item)) in entries.into_iter().enumerate().rev() {
                    pending.push(Pending::Value(item));
                    pending.push(Pending::Key(key));
                    if i > 0 {
                        pending.push(Pending::Punct(b","));
                    }
                }
            }
        }
    }
    out
}

/// Writes `s` as a JSON string literal, escaped exactly as `serde_json` does.
fn write_json_string(out: &mut Vec<u8>, s: &str) {
    // `Value::String`'s Display is serde_json's own compact writer, so the
    // escaping cannot drift from what `serde_json::to_vec` produces.
    let literal = Value::String(s.to_owned()).to_string();
    out.extend_from_slice(literal.as_bytes());
}

/// `sha256:<hex>` of the canonical encoding of `value`: equal for equal
/// content, whatever the key order, whitespace or quoting of its source.
pub fn canonical_digest(value: &Value) -> String {
    format!("sha256:{}", hex(&Sha256::digest(canonical_json(value))))
}

/// The first `len` hex characters (at most 64) of the sha256 of `parts`
/// joined by a 0 byte: a short, stable name suffix for content-named objects.
/// The separator keeps `["ab", "c"]` and `["a", "bc"]` apart.
pub fn short_hash(parts: &[&str], len: usize) -> String {
    let mut hasher = Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hasher.update([0u8]);
        }
        hasher.update(part.as_bytes());
    }
    let mut hash = hex(&hasher.finalize());
    hash.truncate(len);
    hash
}

/// The values of `live` at every leaf path that `desired` sets, hashed.
/// Fields others added, and server-side defaults inside the list items Strata
/// declares, do not count; so the fingerprint changes only when someone
/// changes a value Strata declared. Lists of objects are compared item by
/// item (server defaults fill in fields of each item); any other list is one
/// value, replaced as a whole on apply.
pub fn declared_fingerprint(desired: &Value, live: &Value) -> String {
    fn walk(desired: &Value, live: &Value, path: &mut String, out: &mut BTreeMap<String, Value>) {
        let mut descend = |key: &str, desired: &Value, live: &Value, out: &mut BTreeMap<_, _>| {
            let len = path.len();
            path.push('/');
            path.push_str(key);
            walk(desired, live, path, out);
            path.truncate(len);
        };
        match desired {
            Value::Object(fields) => {
                for (key, value) in fields {
                    descend(key, value, live.get(key).unwrap_or(&Value::Null), out);
                }
            }
            Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object) => {
                for (i, item) in items.iter().enumerate() {
                    descend(
                        &i.to_string(),
                        item,
                        live.get(i).unwrap_or(&Value::Null),
                        out,
                    );
                }
            }
            _ => {
                out.insert(path.clone(), live.clone());
            }
        }
    }
    let mut leaves = BTreeMap::new();
    walk(desired, live, &mut String::new(), &mut leaves);
    let encoded = serde_json::to_vec(&leaves).unwrap_or_default();
    hex(&Sha256::digest(&encoded))
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            // Writing to a String cannot fail.
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn yaml(text: &str) -> Value {
        serde_yaml::from_str(text).expect("test YAML parses")
    }

    #[test]
    fn digest_ignores_key_order_whitespace_and_quoting() {
        let a = yaml(
            r#"
resources:
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: edge-dns}
    data: {upstream: "10.0.0.53", vlan: "120"}
outputs: {dnsUpstream: 10.0.0.53}
"#,
        );
        let b = yaml(
            r#"
outputs:
    dnsUpstream: '10.0.0.53'
resources:
-   data:
        vlan: '120'
        upstream: 10.0.0.53
    metadata:
        name: "edge-dns"
    kind: ConfigMap
    apiVersion: "v1"
"#,
        );
        assert_eq!(canonical_digest(&a), canonical_digest(&b));
    }

    #[test]
    fn digest_changes_with_content() {
        let base = json!({"data": {"vlan": "120"}, "list": [1, 2]});
        let digest = canonical_digest(&base);
        for other in [
            json!({"data": {"vlan": "121"}, "list": [1, 2]}),
            json!({"data": {"vlan": 120}, "list": [1, 2]}),
            json!({"data": {"vlan": "120"}, "list": [2, 1]}),
            json!({"data": {"vlan": "120", "x": null}, "list": [1, 2]}),
            json!({"data": {"vlan": "120"}, "list": [1, 2, 3]}),
            json!({"data": {"Vlan": "120"}, "list": [1, 2]}),
        ] {
            assert_ne!(canonical_digest(&other), digest, "{other}");
        }
    }

    #[test]
    fn digest_has_a_stable_format_and_value() {
        let d = canonical_digest(&json!({}));
        // sha256("{}")
        assert_eq!(
            d,
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn canonical_json_is_serde_json_compact_with_sorted_keys() {
        let value = json!({
            "z": [1, -2, 3.5, 1e20, 0.1, -0.0, true, null, "a\"b\\c\n\u{1}é😀"],
            "a": {"y": {}, "x": [], "é": 1, "B": 2},
            "m": 18446744073709551615u64,
        });
        let ours = canonical_json(&value);
        assert_eq!(ours, serde_json::to_vec(&value).unwrap());
        assert!(
            String::from_utf8(ours)
                .unwrap()
                .starts_with(r#"{"a":{"B":2,"x":[],"y":{},"é":1}"#)
        );
    }

    #[test]
    fn fingerprint_ignores_fields_strata_does_not_declare() {
        let desired = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "v"}});
        let live = json!({"metadata": {"name": "a", "labels": {"x": "1", "other": "y"}, "uid": "u1"}, "data": {"k": "v"}});
        let edited_elsewhere = json!({"metadata": {"name": "a", "labels": {"x": "1", "other": "z"}, "uid": "u1"}, "data": {"k": "v"}});
        let edited_ours =
            json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "changed"}});
        assert_eq!(
            declared_fingerprint(&desired, &live),
            declared_fingerprint(&desired, &edited_elsewhere)
        );
        assert_ne!(
            declared_fingerprint(&desired, &live),
            declared_fingerprint(&desired, &edited_ours)
        );
    }

    #[test]
    fn fingerprint_ignores_defaults_inside_declared_list_items() {
        let desired =
            json!({"spec": {"containers": [{"name": "c", "image": "i:1", "args": ["a"]}]}});
        let defaulted = json!({"spec": {"containers": [{"name": "c", "image": "i:1", "args": ["a"],
            "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log"}]}});
        assert_eq!(
            declared_fingerprint(&desired, &desired),
            declared_fingerprint(&desired, &defaulted)
        );
        for edited in [
            json!({"spec": {"containers": [{"name": "c", "image": "i:2", "args": ["a"]}]}}),
            json!({"spec": {"containers": [{"name": "c", "image": "i:1", "args": ["a", "b"]}]}}),
            json!({"spec": {"containers": []}}),
        ] {
            assert_ne!(
                declared_fingerprint(&desired, &desired),
                declared_fingerprint(&desired, &edited),
                "{edited}"
            );
        }
    }

    #[test]
    fn deep_values_do_not_overflow_the_stack() {
        let mut value = json!("leaf");
        for _ in 0..100_000 {
            value = Value::Array(vec![value]);
        }
        let encoded = canonical_json(&value);
        assert_eq!(encoded.len(), 100_000 * 2 + 6);
        // Dropping a Value is recursive in serde_json; leak it instead.
        std::mem::forget(value);
    }

    #[test]
    fn short_hash_separates_parts() {
        assert_eq!(short_hash(&["ab", "c"], 10).len(), 10);
        assert_ne!(short_hash(&["ab", "c"], 10), short_hash(&["a", "bc"], 10));
        assert_eq!(short_hash(&["ab", "c"], 10), short_hash(&["ab", "c"], 10));
        assert_eq!(short_hash(&["x"], 100).len(), 64);
        assert!(
            short_hash(&["x"], 64)
                .chars()
                .all(|c| c.is_ascii_hexdigit())
        );
    }
}
