//! Reading `spec.resources` without letting one deeply nested resource stop
//! every Stack from being read.
//!
//! The API server stores resources nested thousands of levels deep, but
//! serde_json refuses input nested deeper than 128 levels, and it counts
//! from the top of the document: a watch event or list response holding one
//! such Stack fails to parse as a whole, so the operator's watch of Stacks
//! fails and its caches never sync (found by `tests/hostile_input.rs`).
//! So each resource is read into a `Value` only down to one level below
//! the deepest nesting rendering accepts; anything deeper is skipped (serde_json
//! skips without recursing) and replaced by `null`. The resource then still
//! nests deeper than rendering accepts, and is refused by name with
//! `InvalidSpec`, while every other Stack is read and reconciled.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::api::limits::MAX_DEPTH;

/// Deserializes `spec.resources`, each cut below `MAX_DEPTH + 1` levels.
pub(super) fn resources<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Value>, D::Error> {
    d.deserialize_seq(Items)
}

struct Items;

impl<'de> Visitor<'de> for Items {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of Kubernetes objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(500));
        while let Some(item) = seq.next_element_seed(Bounded { depth: 0 })? {
            items.push(item);
        }
        Ok(items)
    }
}

/// A value inside `depth` arrays and objects.
#[derive(Clone, Copy)]
struct Bounded {
    depth: usize,
}

impl Bounded {
    fn inner(self) -> Self {
        Self {
            depth: self.depth + 1,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Bounded {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        // Inside MAX_DEPTH + 1 containers, one of which is already too deep:
        // what is below cannot change the outcome, so it is not read.
        if self.depth > MAX_DEPTH {
            IgnoredAny::deserialize(d)?;
            return Ok(Value::Null);
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        // Like serde_json's own Value: a non-finite float becomes null.
        Ok(Value::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.inner())? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self.inner())?;
            fields.insert(key, value);
        }
        Ok(Value::Object(fields))
    }
}

/// Stacks as the API server sends them, for tests of what reads them.
#[cfg(test)]
pub(crate) mod fixtures {
    use crate::api::Stack;

    /// A Stack as the API server sends it, with `depth` arrays around a
    /// value inside its resource, inside a watch event.
    pub(crate) fn watch_event(depth: usize) -> String {
        let deep = format!("{}\"leaf\"{}", "[".repeat(depth), "]".repeat(depth));
        format!(
            r#"{{"type":"ADDED","object":{{"apiVersion":"strata.dev/v1alpha1","kind":"Stack",
            "metadata":{{"name":"deep","namespace":"ns"}},
            "spec":{{"version":"1.0.0","resources":[{{"apiVersion":"v1","kind":"ConfigMap",
            "metadata":{{"name":"deep"}},"data":{{"k":"v"}},"x":{deep}}}]}}}}}}"#
        )
    }

    /// The Stack of an ADDED watch event.
    pub(crate) fn stack_of(event: &str) -> Stack {
        let event: kube::core::WatchEvent<Stack> =
            serde_json::from_str(event).expect("the watch event parses");
        match event {
            kube::core::WatchEvent::Added(stack) => stack,
            other => panic!("not an ADDED event: {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::MAX_DEPTH;
    use super::fixtures::{stack_of, watch_event};

    #[test]
    fn a_resource_within_the_depth_is_read_exactly() {
        // The resource object is 1 level, `x` adds 98: 99 in all.
        let stack = stack_of(&watch_event(MAX_DEPTH - 2));
        let text = serde_json::to_string(&stack.spec.resources[0]["x"]).unwrap();
        assert_eq!(
            text,
            format!(
                "{}\"leaf\"{}",
                "[".repeat(MAX_DEPTH - 2),
                "]".repeat(MAX_DEPTH - 2)
            )
        );
    }

    #[test]
    fn a_resource_too_deep_for_serde_json_is_read() {
        for depth in [MAX_DEPTH, 127, 128, 500, 100_000] {
            let stack = stack_of(&watch_event(depth));
            assert_eq!(stack.spec.resources[0]["kind"], "ConfigMap", "{depth}");
        }
    }

    #[test]
    fn other_deserializers_still_work() {
        let spec: crate::api::StackSpec = serde_yaml::from_str(
            "version: 1.0.0\nresources: [{apiVersion: v1, kind: ConfigMap, metadata: {name: a}, data: {n: 1.5}}]",
        )
        .unwrap();
        assert_eq!(spec.resources[0]["data"]["n"], 1.5);
        let value = serde_json::to_value(&spec).unwrap();
        let again: crate::api::StackSpec = serde_json::from_value(value).unwrap();
        assert_eq!(again, spec);
    }
}
