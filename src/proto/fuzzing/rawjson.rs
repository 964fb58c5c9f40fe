//! The `rawjson` fuzz target: `proto::rawjson::Reader` against serde_json on the same text.
//!
//! The input is read as UTF-8 (the reader takes `&str`: a text frame's bytes after the shell's
//! check); other inputs are ignored. Checked: the reader takes a document exactly when
//! serde_json takes it (as `IgnoredAny`, which like the reader does not limit nesting and does
//! not decode the names of what it skips), and then the document's value is the text
//! serde_json's `RawValue` holds. Then the document is walked through `object` and `array`
//! callbacks down to a depth of 8 (deeper values read whole), member names and leaves rebuilt
//! into a `serde_json::Value`: the walk fails only where a name it decodes is no string
//! (serde_json's `Value` fails there too), and where serde_json parses the text into a `Value`
//! (no number out of range, no lone surrogate), the two are equal, members in order and a
//! repeated name's last value kept.

use crate::proto::rawjson::Reader;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

pub fn check_rawjson(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ours = Reader::document(text, Reader::value);
    let theirs = serde_json::from_str::<IgnoredAny>(text)
        .ok()
        .and_then(|_| serde_json::from_str::<&RawValue>(text).ok());
    assert_eq!(ours, theirs.map(RawValue::get), "{text:?}");

    let walked = Reader::document(text, |r| walk(r, 0));
    let parsed = serde_json::from_str::<Value>(text);
    match (walked, ours) {
        (Some(_), None) => panic!("walked a document the reader refuses: {text:?}"),
        // Only a name the walk decodes can fail it: one serde_json cannot decode either.
        (None, Some(_)) => assert!(parsed.is_err(), "walk refused {text:?}"),
        (Some(Some(walked)), _) => {
            if let Ok(parsed) = parsed {
                assert_eq!(walked, parsed, "{text:?}");
            }
        }
        _ => {}
    }
}

/// The value at the reader as a `Value`: `None` if the text is not JSON, `Some(None)` if it is
/// but a leaf is not a `Value` serde_json would make.
fn walk(r: &mut Reader<'_>, depth: usize) -> Option<Option<Value>> {
    match r.peek_value() {
        _ if depth == 8 => Some(serde_json::from_str(r.value()?).ok()),
        Some(b'{') => {
            let mut members = Some(Map::new());
            let is_object = r.object(|r, name| {
                let v = walk(r, depth + 1)?;
                if let (Some(m), Some(v)) = (&mut members, v) {
                    m.insert(name.into_owned(), v);
                } else {
                    members = None;
                }
                Some(())
            })?;
            assert!(is_object);
            Some(members.map(Value::Object))
        }
        Some(b'[') => {
            let mut elements = Some(Vec::new());
            let is_array = r.array(|r| {
                match (&mut elements, walk(r, depth + 1)?) {
                    (Some(e), Some(v)) => e.push(v),
                    _ => elements = None,
                }
                Some(())
            })?;
            assert!(is_array);
            Some(elements.map(Value::Array))
        }
        _ => Some(serde_json::from_str(r.value()?).ok()),
    }
}
