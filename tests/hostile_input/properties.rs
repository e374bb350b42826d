//! Properties of the canonical digest and of Stack rendering, through the
//! public API, on arbitrary input: unusual Unicode, huge numbers, deep
//! nesting, arbitrary resources and parameters. They need no control plane.
//!
//! - The digest depends on the content only: not on key order, whitespace,
//!   or how a string is spelled (raw or `\u` escaped); it is stable, and
//!   distinct content has distinct digests.
//! - Rendering never panics, and what it refuses it refuses naming the
//!   resource, the path and the placeholder.
//!
//! 256 cases per property; in the full fault suite (`STRATA_FAULT_FULL=1`,
//! `hack/fault-suite hostile_input`) 4096, about two minutes.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Map, Number, Value, json};
use strata::api::StackSpec;
use strata::render::RenderError;
use strata::render::digest::{canonical_digest, canonical_json};
use strata::render::stack::render_stack;

fn config() -> ProptestConfig {
    let full = std::env::var_os("STRATA_FAULT_FULL").is_some_and(|v| !v.is_empty() && v != "0");
    ProptestConfig::with_cases(if full { 4096 } else { 256 })
}

/// Unicode that trips byte-oriented code: right-to-left override and Hebrew,
/// a combining mark, zero-width space and joiner, byte order mark, a ZWJ
/// emoji sequence, astral-plane letters, the last code point, NUL, and the
/// characters JSON must escape.
const UNUSUAL: &[&str] = &[
    "\u{202e}",
    "\u{5e9}\u{5dc}\u{5d5}\u{5dd}",
    "e\u{301}",
    "\u{200b}",
    "\u{200d}",
    "\u{feff}",
    "👩\u{200d}👩\u{200d}👧",
    "𝔘𝔫𝔦",
    "\u{10ffff}",
    "\0",
    "\"",
    "\\",
    "\n",
    "\u{7f}",
    "\u{2028}",
];

fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => "[a-zA-Z0-9 ._-]{1,6}",
        2 => prop::sample::select(UNUSUAL).prop_map(str::to_string),
        1 => any::<char>().prop_map(String::from),
    ];
    prop_oneof![
        4 => prop::collection::vec(piece, 0..8).prop_map(|p| p.concat()),
        1 => any::<String>(),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        Just(Value::from(i64::MIN)),
        any::<f64>()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
        Just(json!(f64::MAX)),
        Just(json!(f64::MIN_POSITIVE)),
        Just(json!(5e-324)),
    ]
}

/// Arbitrary JSON: every kind of leaf, keys of any text.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A deterministic stream of choices from a seed (xorshift), so that a
/// failing case is reproduced and shrunk from its seed.
struct Choices(u64);

impl Choices {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `value` written as JSON another way: object keys in a random order,
/// random whitespace, and each character of a string either as itself or
/// as a `\u` escape (a surrogate pair beyond the BMP). Numbers are written as
/// serde_json writes them.
fn respelled(value: &Value, choices: &mut Choices) -> String {
    fn space(out: &mut String, choices: &mut Choices) {
        out.push_str(["", " ", "\n  ", "\t"][choices.below(4)]);
    }
    fn string(out: &mut String, s: &str, choices: &mut Choices) {
        out.push('"');
        for c in s.chars() {
            if choices.below(3) == 0 {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            } else {
                let literal = serde_json::to_string(&c.to_string()).unwrap();
                out.push_str(&literal[1..literal.len() - 1]);
            }
        }
        out.push('"');
    }
    fn write(out: &mut String, value: &Value, choices: &mut Choices) {
        space(out, choices);
        match value {
            Value::String(s) => string(out, s, choices),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(out, item, choices);
                }
                space(out, choices);
                out.push(']');
            }
            Value::Object(map) => {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                for i in (1..entries.len()).rev() {
                    entries.swap(i, choices.below(i + 1));
                }
                out.push('{');
                for (i, (key, item)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    space(out, choices);
                    string(out, key, choices);
                    out.push(':');
                    write(out, item, choices);
                }
                space(out, choices);
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
        space(out, choices);
    }
    let mut out = String::new();
    write(&mut out, value, choices);
    out
}

/// JSON pointers to every leaf (scalar or empty container) of `value`.
fn leaf_pointers(value: &Value) -> Vec<String> {
    fn walk(value: &Value, at: String, out: &mut Vec<String>) {
        match value {
            Value::Array(items) if !items.is_empty() => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, format!("{at}/{i}"), out);
                }
            }
            Value::Object(map) if !map.is_empty() => {
                for (key, item) in map {
                    let key = key.replace('~', "~0").replace('/', "~1");
                    walk(item, format!("{at}/{key}"), out);
                }
            }
            _ => out.push(at),
        }
    }
    let mut out = Vec::new();
    walk(value, String::new(), &mut out);
    out
}

/// Takes a value apart without recursion: dropping a `Value` nested
/// thousands deep would overflow the stack.
fn dismantle(value: Value) {
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::Array(items) => pending.extend(items),
            Value::Object(map) => pending.extend(map.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// The digest is the content's: the same value written with other key
    /// order, whitespace and string escapes has the same digest. Both
    /// texts are parsed, as the operator parses what the API server sends.
    #[test]
    fn the_digest_ignores_key_order_whitespace_and_escapes(value in json_value(), seed in 1..u64::MAX) {
        let canonical = String::from_utf8(canonical_json(&value)).unwrap();
        let other = respelled(&value, &mut Choices(seed));
        let parsed_canonical: Value = serde_json::from_str(&canonical).unwrap();
        let parsed_other: Value = serde_json::from_str(&other).unwrap();
        prop_assert_eq!(canonical_digest(&parsed_other), canonical_digest(&parsed_canonical), "{}", other);
    }

    /// The canonical encoding is JSON that reads back as the same value, so
    /// distinct values have distinct encodings (and so, short of a sha256
    /// collision, distinct digests); encoding is stable and idempotent, with
    /// keys sorted by their UTF-8 bytes at every level.
    #[test]
    fn the_canonical_encoding_is_faithful_and_stable(value in json_value()) {
        let encoded = canonical_json(&value);
        prop_assert_eq!(&encoded, &canonical_json(&value));
        let read_back: Value = serde_json::from_slice(&encoded).unwrap();
        prop_assert_eq!(canonical_json(&read_back), encoded.clone());
        prop_assert_eq!(&read_back, &value);
        let digest = canonical_digest(&value);
        prop_assert!(digest.len() == 71 && digest.starts_with("sha256:"), "{}", digest);
        prop_assert!(digest[7..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }

    /// Changing any one leaf, adding a key or an element, or reordering an
    /// array changes the digest.
    #[test]
    fn distinct_content_has_a_distinct_digest(
        value in json_value(),
        which in any::<prop::sample::Index>(),
        replacement in json_value(),
        key in text(),
    ) {
        let digest = canonical_digest(&value);
        let leaves = leaf_pointers(&value);
        let target = which.get(&leaves);
        let mut changed = value.clone();
        *changed.pointer_mut(target).unwrap() = replacement.clone();
        if &replacement != value.pointer(target).unwrap() {
            prop_assert_ne!(canonical_digest(&changed), digest.clone());
        }
        match &value {
            Value::Object(map) if !map.contains_key(&key) => {
                let mut grown = map.clone();
                grown.insert(key, Value::Null);
                prop_assert_ne!(canonical_digest(&Value::Object(grown)), digest.clone());
            }
            Value::Array(items) => {
                let mut grown = items.clone();
                grown.push(Value::Null);
                prop_assert_ne!(canonical_digest(&Value::Array(grown)), digest.clone());
                let reversed: Vec<Value> = items.iter().rev().cloned().collect();
                if &reversed != items {
                    prop_assert_ne!(canonical_digest(&Value::Array(reversed)), digest.clone());
                }
            }
            _ => {}
        }
    }

    /// Arbitrary text either is not JSON or digests without panicking,
    /// including numbers far beyond f64 and u64.
    #[test]
    fn arbitrary_json_text_never_panics(
        text in prop_oneof![
            any::<String>(),
            "[-]?[1-9][0-9]{18,400}",
            "[-]?[0-9]{1,3}(\\.[0-9]{1,30})?[eE][-+]?[0-9]{1,5}",
            "\\[[ -~]{0,40}\\]",
            "\\{\"[ -~]{0,10}\":[ -~]{0,30}\\}",
        ]
    ) {
        if let Ok(value) = serde_json::from_str::<Value>(&text) {
            let encoded = canonical_json(&value);
            let read_back: Value = serde_json::from_slice(&encoded).unwrap();
            prop_assert_eq!(canonical_json(&read_back), encoded);
            canonical_digest(&value);
        }
    }

    /// However deep a value built in code nests, it digests without
    /// overflowing the stack.
    #[test]
    fn deep_nesting_never_overflows(shape in prop::collection::vec(any::<bool>(), 1..20_000)) {
        let mut value = json!("leaf");
        for &array in &shape {
            // Not `json!`, which would serialize `value` again, recursively.
            value = if array {
                Value::Array(vec![value])
            } else {
                Value::Object(Map::from_iter([("k".to_string(), value)]))
            };
        }
        let encoded = canonical_json(&value);
        let objects = shape.iter().filter(|a| !**a).count();
        prop_assert_eq!(encoded.len(), 6 + 2 * shape.len() + 4 * objects);
        canonical_digest(&value);
        dismantle(value);
    }
}

// ---------------------------------------------------------------- rendering

fn parameter_name() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_.-]{0,8}"
}

fn configmap(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

fn spec(parameters: &BTreeMap<String, String>, resources: Vec<Value>) -> StackSpec {
    serde_json::from_value(json!({
        "version": "1.0.0",
        "parameters": parameters,
        "resources": resources,
    }))
    .unwrap()
}

proptest! {
    #![proptest_config(config())]

    /// Whatever the resources (any JSON, objects or not), parameters and
    /// outputs, rendering returns: it never panics. A refusal of a
    /// resource names its position in spec.resources.
    #[test]
    fn rendering_never_panics(
        resources in prop::collection::vec(prop_oneof![
            json_value(),
            (text(), text(), json_value()).prop_map(|(kind, name, data)| json!({
                "apiVersion": "v1", "kind": kind, "metadata": {"name": name}, "data": data,
            })),
        ], 0..5),
        parameters in prop::collection::btree_map(
            prop_oneof![parameter_name(), text()], text(), 0..5),
        outputs in prop::collection::btree_map(
            prop_oneof!["[A-Za-z][A-Za-z0-9_]{0,6}", text()], text(), 0..4),
    ) {
        let spec: StackSpec = serde_json::from_value(json!({
            "version": "1.0.0",
            "parameters": parameters,
            "resources": resources,
            "outputs": outputs,
        }))
        .unwrap();
        match render_stack(&spec) {
            Ok(rendered) => prop_assert_eq!(rendered.resources.len(), spec.resources.len()),
            Err(error) => {
                let message = error.to_string();
                let names_a_resource = match &error {
                    RenderError::MalformedResource { index, .. }
                    | RenderError::DuplicateResource { second: index, .. } => {
                        message.contains(&format!("spec.resources[{index}]"))
                    }
                    RenderError::UnknownPlaceholder { resource, .. }
                    | RenderError::InvalidPlaceholder { resource, .. }
                    | RenderError::UnterminatedPlaceholder { resource, .. } => {
                        message.starts_with(resource.as_str())
                            && (resource.starts_with("spec.resources[") || resource == "spec.outputs")
                    }
                    RenderError::InvalidParameterName(name) => message.contains(&format!("{name:?}")),
                    RenderError::InvalidOutputName(name) => message.contains(&format!("{name:?}")),
                    _ => true,
                };
                prop_assert!(names_a_resource, "{}", message);
            }
        }
    }

    /// Parameters arrive byte-exact, whatever Unicode they hold, and the
    /// digest is the rendered content's: a Stack writing the values
    /// literally, with extra unused parameters, has the same digest.
    #[test]
    fn the_digest_is_the_rendered_content_only(
        parameters in prop::collection::btree_map(parameter_name(), text(), 1..6),
        unused in prop::collection::btree_map("unused_[a-z]{1,6}", text(), 0..3),
    ) {
        let data: Map<String, Value> = parameters
            .keys()
            .enumerate()
            .map(|(i, name)| (format!("p{i}"), json!(format!("${{{name}}}"))))
            .collect();
        let templated = spec(&parameters, vec![configmap("settings", Value::Object(data))]);
        let rendered = render_stack(&templated).unwrap();
        let literal_data: Map<String, Value> = parameters
            .values()
            .enumerate()
            .map(|(i, value)| (format!("p{i}"), json!(value.replace("${", "$${"))))
            .collect();
        let mut with_unused = unused.clone();
        with_unused.retain(|k, _| !parameters.contains_key(k));
        let literal = spec(&with_unused, vec![configmap("settings", Value::Object(literal_data))]);
        let literal = render_stack(&literal).unwrap();
        prop_assert_eq!(&rendered.digest, &literal.digest);
        for (i, value) in parameters.values().enumerate() {
            prop_assert_eq!(
                rendered.resources[0]["data"][format!("p{i}")].as_str(),
                Some(value.as_str())
            );
        }
    }

    /// Changing the value of a parameter a resource uses changes the digest.
    #[test]
    fn a_used_parameter_changes_the_digest(before in text(), after in text()) {
        prop_assume!(before != after);
        let resources = vec![configmap("settings", json!({"vlan": "${vlan}"}))];
        let digest = |value: &str| {
            render_stack(&spec(&BTreeMap::from([("vlan".to_string(), value.to_string())]), resources.clone()))
                .unwrap()
                .digest
        };
        prop_assert_ne!(digest(&before), digest(&after));
    }

    /// An unknown placeholder among valid resources is refused naming the
    /// resource, the path of the string and the placeholder.
    #[test]
    fn an_unknown_placeholder_is_named_with_its_resource_and_path(
        valid_before in 0..4usize,
        name in "[a-z][a-z0-9-]{0,20}",
        key in "[a-z][a-zA-Z0-9_-]{0,10}",
        placeholder in parameter_name(),
        around in text(),
    ) {
        prop_assume!(placeholder != "known");
        let mut resources: Vec<Value> = (0..valid_before)
            .map(|i| configmap(&format!("valid-{i}"), json!({"k": "${known}"})))
            .collect();
        let escaped = around.replace("${", "$${");
        let data = Map::from_iter([(key.clone(), json!(format!("{escaped} ${{{placeholder}}}")))]);
        resources.push(configmap(&name, Value::Object(data)));
        let parameters = BTreeMap::from([("known".to_string(), "v".to_string())]);
        let error = render_stack(&spec(&parameters, resources)).unwrap_err();
        prop_assert_eq!(
            error.to_string(),
            format!(
                "spec.resources[{valid_before}] (ConfigMap/{name}) uses ${{{placeholder}}} in data.{key}, which is not a parameter; add it to spec.parameters or fix the placeholder"
            )
        );
    }
}
