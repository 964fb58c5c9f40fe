//! JSON values as the HTTP API needs them: parsed in order (an `echo` returns the object with
//! its keys as sent), compared as JSON values (duplicate candidates), and written the way the
//! original server's `simplejson.dumps` writes them: `", "` and `": "` separators and every
//! character outside printable ASCII escaped as `\uXXXX`.
//!
//! Parsing is serde_json's (its recursion limit bounds nesting); this module only chooses the
//! representation. A key given twice keeps its first position and its last value, as a Python
//! dict does. Numbers keep serde_json's representation: integers beyond 64 bits become floats.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::HashMap;
use std::fmt::{self, Write as _};

/// A JSON value; objects keep their keys in the order they were first sent.
#[derive(Debug, Clone)]
pub enum Value {
    Null,
    Bool(bool),
    Number(serde_json::Number),
    String(String),
    Array(Vec<Value>),
    Object(Vec<(String, Value)>),
}

impl Value {
    /// Parse one JSON document (nothing but whitespace may follow it).
    pub fn parse(bytes: &[u8]) -> Option<Value> {
        serde_json::from_slice(bytes).ok()
    }

    /// The value of `key` in an object.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value as `simplejson.dumps` would write it.
    pub fn to_py_json(&self) -> String {
        let mut s = String::new();
        self.write_py(&mut s);
        s
    }

    /// Append the value as `simplejson.dumps` would write it.
    pub fn write_py(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => {
                let _ = write!(out, "{n}");
            }
            Value::String(s) => write_py_str(s, out),
            Value::Array(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.write_py(out);
                }
                out.push(']');
            }
            Value::Object(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    write_py_str(k, out);
                    out.push_str(": ");
                    v.write_py(out);
                }
                out.push('}');
            }
        }
    }
}

/// A JSON string with Python's `ensure_ascii` escaping (lowercase hex, surrogate pairs).
pub fn write_py_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{:04x}", u);
                }
            }
        }
    }
    out.push('"');
}

/// JSON equality: objects compare as maps (key order does not matter), numbers by value.
impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Number(a), Value::Number(b)) => number_eq(a, b),
            (Value::String(a), Value::String(b)) => a == b,
            (Value::Array(a), Value::Array(b)) => a == b,
            (Value::Object(a), Value::Object(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .all(|(k, v)| b.iter().any(|(k2, v2)| k == k2 && v == v2))
            }
            _ => false,
        }
    }
}

fn number_eq(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    a.as_f64() == b.as_f64()
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

/// Objects with more keys than this find duplicates through a hash index instead of a scan.
const SCAN_KEYS: usize = 8;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
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
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields: Vec<(String, Value)> = Vec::new();
        let mut index: Option<HashMap<String, usize>> = None;
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            if fields.len() == SCAN_KEYS && index.is_none() {
                let idx = fields.iter().enumerate().map(|(i, (k, _))| (k.clone(), i));
                index = Some(idx.collect());
            }
            let at = match &index {
                Some(ix) => ix.get(&k).copied(),
                None => fields.iter().position(|(k2, _)| *k2 == k),
            };
            match at {
                Some(i) => fields[i].1 = v,
                None => {
                    if let Some(ix) = index.as_mut() {
                        ix.insert(k.clone(), fields.len());
                    }
                    fields.push((k, v));
                }
            }
        }
        Ok(Value::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn py(s: &str) -> String {
        Value::parse(s.as_bytes()).expect("valid JSON").to_py_json()
    }

    #[test]
    fn writes_like_simplejson() {
        assert_eq!(
            py(r#"{"b":1,"a":[true,null,"x"]}"#),
            r#"{"b": 1, "a": [true, null, "x"]}"#
        );
        assert_eq!(
            py(r#""é\u0001\n\"\\\u007f😀""#),
            r#""\u00e9\u0001\n\"\\\u007f\ud83d\ude00""#
        );
        assert_eq!(py("[1.5,-2,{}]"), "[1.5, -2, {}]");
    }

    #[test]
    fn duplicate_keys_keep_first_position_and_last_value() {
        assert_eq!(py(r#"{"a":1,"b":2,"a":3}"#), r#"{"a": 3, "b": 2}"#);
        let many: Vec<String> = (0..20).map(|i| format!("\"k{i}\":{i}")).collect();
        let text = format!("{{{},\"k3\":99}}", many.join(","));
        let v = Value::parse(text.as_bytes()).unwrap();
        assert_eq!(v.get("k3"), Some(&Value::Number(99.into())));
        let Value::Object(f) = v else { panic!() };
        assert_eq!(f.len(), 20);
        assert_eq!(f[3].0, "k3");
    }

    #[test]
    fn equality_is_json_equality() {
        let p = |s: &str| Value::parse(s.as_bytes()).unwrap();
        assert_eq!(p(r#"{"a":1,"b":[2]}"#), p(r#"{"b":[2],"a":1}"#));
        assert_eq!(p("1"), p("1.0"));
        assert_ne!(p(r#"{"a":1}"#), p(r#"{"a":1,"b":2}"#));
        assert_ne!(p("[1,2]"), p("[2,1]"));
        assert_ne!(p("\"1\""), p("1"));
    }

    #[test]
    fn rejects_what_is_not_one_json_document() {
        for bad in ["", "{", "{\"a\":1}x", "NaN", "[1,]", "\u{0}"] {
            assert!(Value::parse(bad.as_bytes()).is_none(), "{bad:?}");
        }
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(
            Value::parse(deep.as_bytes()).is_none(),
            "nesting is bounded"
        );
    }
}
