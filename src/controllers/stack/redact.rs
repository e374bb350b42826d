//! Keeping a Secret's values out of what the Stack controller reports.
//!
//! The API server's refusals can quote the values they refuse: a number where
//! a Secret wants a string comes back as `.stringData.pin: expected string,
//! got &value.valueUnstructured{Value:12345}`. The Stack controller puts such
//! messages in the Stack's status, in an Event and in its log, so every value
//! of the Secret it was applying is cut out of them first.

use serde_json::Value;

use crate::render::stack::is_secret;

/// What replaces a secret value in a message.
pub const REDACTED: &str = "<redacted>";

/// The values of one Secret, in every form a message may quote them: as
/// written, JSON-escaped, base64-encoded (`stringData`) and decoded (`data`).
/// Empty for any other kind.
pub struct SecretValues(Vec<String>);

impl SecretValues {
    /// The values of `object`'s `data` and `stringData` when it is a Secret.
    pub fn of(object: &Value) -> Self {
        let mut values = Vec::new();
        if is_secret(object) {
            if let Some(data) = object.get("data") {
                collect(data, true, &mut values);
            }
            if let Some(data) = object.get("stringData") {
                collect(data, false, &mut values);
            }
        }
        values.retain(|v| !v.is_empty());
        // Longest first, so that a value containing another is cut whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Self(values)
    }

    /// `text` with every value cut out.
    pub fn redact(&self, text: &str) -> String {
        self.0.iter().fold(text.to_string(), |text, value| {
            text.replace(value, REDACTED)
        })
    }

    /// `error` with every value cut out of the API server's message.
    pub fn redact_error(&self, error: kube::Error) -> kube::Error {
        match error {
            kube::Error::Api(mut status) if !self.0.is_empty() => {
                status.message = self.redact(&status.message);
                kube::Error::Api(status)
            }
            other => other,
        }
    }
}

/// Every leaf of `value` that could be secret; `encoded` for `data`, whose
/// strings are base64.
fn collect(value: &Value, encoded: bool, out: &mut Vec<String>) {
    match value {
        Value::String(s) => {
            spellings(s, out);
            if encoded {
                if let Some(decoded) = base64_decode(s).and_then(|b| String::from_utf8(b).ok()) {
                    spellings(&decoded, out);
                }
            } else {
                out.push(base64_encode(s.as_bytes()));
            }
        }
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|v| collect(v, encoded, out)),
        Value::Object(map) => map.values().for_each(|v| collect(v, encoded, out)),
        Value::Null | Value::Bool(_) => {}
    }
}

/// `s` as written and as a JSON (or Go) string literal writes it.
fn spellings(s: &str, out: &mut Vec<String>) {
    out.push(s.to_string());
    let quoted = Value::String(s.to_string()).to_string();
    out.push(quoted[1..quoted.len() - 1].to_string());
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as Kubernetes writes Secret data.
fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional); `None` when it is not base64.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let digits = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    let (mut n, mut bits) = (0u32, 0);
    for c in digits.bytes() {
        let digit = ALPHABET.iter().position(|&a| a == c)? as u32;
        n = n << 6 | digit;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((n >> bits) as u8);
            n &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn base64_round_trips() {
        for text in ["", "a", "ab", "abc", "abcd", "sntl-3f9\u{202e}😀"] {
            let encoded = base64_encode(text.as_bytes());
            assert_eq!(base64_decode(&encoded).unwrap(), text.as_bytes(), "{text}");
        }
        assert_eq!(base64_encode(b"hunter2"), "aHVudGVyMg==");
        assert_eq!(base64_decode("!!"), None);
    }

    #[test]
    fn every_spelling_of_a_secret_value_is_cut() {
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"token": base64_encode(b"s3cr3t-token")},
            "stringData": {"pin": 40917, "note": "line\nbreak", "password": "hunter2"}});
        let values = SecretValues::of(&secret);
        let message = r#".stringData.pin: expected string, got &value.valueUnstructured{Value:40917}; "line\nbreak" s3cr3t-token aHVudGVyMg== hunter2"#;
        assert_eq!(
            values.redact(message),
            r#".stringData.pin: expected string, got &value.valueUnstructured{Value:<redacted>}; "<redacted>" <redacted> <redacted> <redacted>"#
        );
    }

    #[test]
    fn other_kinds_are_quoted_as_they_are() {
        let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
            "data": {"k": "value"}});
        assert_eq!(SecretValues::of(&config).redact("bad value"), "bad value");
    }
}
