//! Properties of `${name}` substitution, on arbitrary text: escaping makes
//! any text literal, placeholders expand exactly once, and every fault names
//! the placeholder and the path of the string it is in.

use proptest::prelude::*;
use serde_json::{Map, Value};

use super::*;

/// 256 cases by default; many more in the full fault suite (`STRATA_FAULT_FULL=1`).
fn config() -> ProptestConfig {
    let full = std::env::var_os("STRATA_FAULT_FULL").is_some_and(|v| !v.is_empty() && v != "0");
    ProptestConfig::with_cases(if full { 4096 } else { 256 })
}

/// Text as a manifest may hold it: the template syntax's own characters,
/// names, and Unicode that trips byte-oriented code (right-to-left override,
/// combining marks, zero-width characters, a ZWJ emoji sequence, the astral
/// plane, the last code point, NUL).
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        3 => Just("$".to_string()),
        2 => Just("{".to_string()),
        2 => Just("}".to_string()),
        2 => Just("${".to_string()),
        1 => Just("$${".to_string()),
        3 => "[a-z_.-]{1,5}",
        2 => prop::sample::select(vec![
            "\u{202e}", "\u{5d0}\u{5d1}", "e\u{301}", "\u{200b}", "\u{200d}", "\u{feff}",
            "👩\u{200d}👩\u{200d}👧", "𝔘𝔫𝔦", "\u{10ffff}", "\0", " ", "\n",
        ])
        .prop_map(str::to_string),
        2 => any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..16).prop_map(|pieces| pieces.concat())
}

/// Text that may or may not contain placeholders, escapes and faults.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![text(), any::<String>()]
}

/// What a user writes to get `text` literally: every `${` as `$${`.
fn escape(text: &str) -> String {
    text.replace("${", "$${")
}

fn parameter_name() -> impl Strategy<Value = String> {
    "[A-Za-z_][A-Za-z0-9_.-]{0,8}"
}

fn parameters() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop::collection::btree_map(parameter_name(), any_text(), 0..6)
}

/// A piece of a template, and what it renders to.
#[derive(Clone, Debug)]
enum Piece {
    /// Text with no `$`.
    Literal(String),
    /// `${name}` for a parameter that exists.
    Placeholder(String),
    /// `$${`, a literal `${`.
    Escape,
}

proptest! {
    #![proptest_config(config())]

    /// render(escape(x)) == x, whatever x and the parameters are.
    #[test]
    fn escaped_text_renders_to_itself(input in any_text(), parameters in parameters()) {
        let escaped = escape(&input);
        let rendered = substitute_str(&escaped, &parameters);
        prop_assert_eq!(rendered.as_deref(), Ok(input.as_str()));
    }

    /// Text without `${` comes back as it is, borrowed: nothing is copied,
    /// normalised or re-encoded.
    #[test]
    fn text_without_placeholders_is_untouched(input in any_text(), parameters in parameters()) {
        let input = input.replace("${", "$ {");
        let rendered = substitute_str(&input, &parameters);
        prop_assert!(matches!(rendered, Ok(Cow::Borrowed(s)) if s == input));
    }

    /// Each placeholder is replaced by its value byte for byte, and values
    /// are not scanned again: a value that itself reads `${x}` stays so.
    #[test]
    fn placeholders_expand_to_their_values_exactly_once(
        parameters in prop::collection::btree_map(parameter_name(), any_text(), 1..6),
        picks in prop::collection::vec((0..3u8, any::<prop::sample::Index>(), "[^$]{0,6}"), 0..12),
    ) {
        let names: Vec<&String> = parameters.keys().collect();
        let pieces: Vec<Piece> = picks
            .into_iter()
            .map(|(kind, index, literal)| match kind {
                0 => Piece::Literal(literal),
                1 => Piece::Placeholder(index.get(&names).to_string()),
                _ => Piece::Escape,
            })
            .collect();
        let (mut template, mut expected) = (String::new(), String::new());
        for piece in &pieces {
            match piece {
                Piece::Literal(text) => {
                    template.push_str(text);
                    expected.push_str(text);
                }
                Piece::Placeholder(name) => {
                    template.push_str(&format!("${{{name}}}"));
                    expected.push_str(&parameters[name]);
                }
                Piece::Escape => {
                    template.push_str("$${");
                    expected.push_str("${");
                }
            }
        }
        let rendered = substitute_str(&template, &parameters);
        prop_assert_eq!(rendered.as_deref(), Ok(expected.as_str()), "template {:?}", template);
    }

    /// After valid text, an unknown, invalid or unterminated placeholder is
    /// reported, naming the placeholder as written; whatever follows it
    /// does not matter.
    #[test]
    fn the_first_bad_placeholder_is_named(
        before in any_text(),
        parameters in parameters(),
        bad in prop_oneof![
            parameter_name().prop_map(|name| (format!("${{{name}}}"), Fault::Unknown(name))),
            "[^}]{0,8}"
                .prop_filter("not a name", |text| !is_parameter_name(text))
                .prop_map(|text| (format!("${{{text}}}"), Fault::Invalid(text))),
            "[^}]{0,8}".prop_map(|text| (format!("${{{text}"), Fault::Unterminated)),
        ],
        after in any_text(),
    ) {
        let (placeholder, fault) = bad;
        prop_assume!(!matches!(&fault, Fault::Unknown(name) if parameters.contains_key(name)));
        // An unterminated placeholder runs to the end of the string.
        let after = if fault == Fault::Unterminated { after.replace('}', "") } else { after };
        // `before` must not end in `$`, which would make `$${` of the placeholder.
        let before = escape(&before) + " ";
        let input = format!("{before}{placeholder}{after}");
        prop_assert_eq!(substitute_str(&input, &parameters), Err(fault), "{:?}", input);
    }

    /// The JSON form of the first property: escaping every string of a
    /// resource renders the resource back, keys included (keys are never
    /// substituted, even when they look like placeholders).
    #[test]
    fn escaped_values_render_to_themselves(value in json(), parameters in parameters()) {
        let mut rendered = map_strings(&value, &escape);
        prop_assert_eq!(substitute_value(&mut rendered, &parameters), Ok(()));
        prop_assert_eq!(rendered, value);
    }

    /// A bad string anywhere in a resource is found, and the path in the
    /// error leads back to it.
    #[test]
    fn the_error_path_leads_to_the_bad_string(
        value in json(),
        which in any::<prop::sample::Index>(),
        name in parameter_name(),
    ) {
        let mut value = map_strings(&value, &escape);
        if string_pointers(&value).is_empty() {
            value = Value::Array(vec![value, Value::String(String::new())]);
        }
        let leaves = string_pointers(&value);
        let target = which.get(&leaves).clone();
        *value.pointer_mut(&target).unwrap() = Value::String(format!("a ${{{name}}} b"));
        let (fault, path) = substitute_value(&mut value, &BTreeMap::new()).unwrap_err();
        prop_assert_eq!(fault, Fault::Unknown(name));
        prop_assert_eq!(pointer_of_path(&path), Some(target), "path {:?}", path);
    }

    /// The depth check sees exactly how deep a value nests.
    #[test]
    fn the_depth_check_is_exact(value in json(), max in 0..8usize) {
        prop_assert_eq!(nests_deeper_than(&value, max), depth(&value) > max);
    }
}

/// Arbitrary JSON whose strings are [`text`], and whose object keys too,
/// except that keys are printable ASCII without quotes or backslashes, so
/// that the error path (which quotes keys the Rust way) can be read back.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[ -!#-\\[\\]-~]{0,6}", inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// `value` with `f` applied to every string value (not to keys).
fn map_strings(value: &Value, f: &dyn Fn(&str) -> String) -> Value {
    match value {
        Value::String(s) => Value::String(f(s)),
        Value::Array(items) => Value::Array(items.iter().map(|v| map_strings(v, f)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), map_strings(v, f)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// JSON pointers (RFC 6901) to every string value in `value`.
fn string_pointers(value: &Value) -> Vec<String> {
    fn walk(value: &Value, at: String, out: &mut Vec<String>) {
        match value {
            Value::String(_) => out.push(at),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, format!("{at}/{i}"), out);
                }
            }
            Value::Object(map) => {
                for (key, item) in map {
                    let key = key.replace('~', "~0").replace('/', "~1");
                    walk(item, format!("{at}/{key}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, String::new(), &mut out);
    out
}

/// Reads an error path (`spec.ports[0].name`, `metadata.labels["a/b"]`,
/// `the value itself`) back into a JSON pointer.
fn pointer_of_path(path: &str) -> Option<String> {
    if path == "the value itself" {
        return Some(String::new());
    }
    let mut pointer = String::new();
    let mut rest = path;
    let push = |pointer: &mut String, key: &str| {
        pointer.push('/');
        pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
    };
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix("[\"") {
            let end = quoted.find("\"]")?;
            push(&mut pointer, &quoted[..end]);
            rest = &quoted[end + 2..];
        } else if let Some(index) = rest.strip_prefix('[') {
            let end = index.find(']')?;
            index[..end].parse::<usize>().ok()?;
            push(&mut pointer, &index[..end]);
            rest = &index[end + 1..];
        } else {
            let key = rest.strip_prefix('.').unwrap_or(rest);
            let end = key.find(['.', '[']).unwrap_or(key.len());
            push(&mut pointer, &key[..end]);
            rest = &key[end..];
        }
    }
    Some(pointer)
}

/// How deep arrays and objects nest in `value` (a scalar is 0 deep).
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}
