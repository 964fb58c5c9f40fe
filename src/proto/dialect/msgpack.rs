//! MessagePack for the relay 4.x introduction dialect (cevitxe dialect C), on top of the `rmp`
//! crate.
//!
//! Owns: the borrowed [`Value`] tree that `cevitxe.rs` reads (one whole value, depth-limited,
//! every format family understood so unknown fields of any type are skipped safely, nothing
//! left over), and the few writers the server needs (maps with string keys, strings, arrays of
//! strings), plus a general [`encode`] used for round trips. `rmp` reads every marker, length
//! and scalar (straight from the input slice: strings and binaries are borrowed, not copied)
//! and writes every header; this module only walks containers, enforces [`MAX_DEPTH`], and
//! maps `rmp`'s errors to [`DecodeError`].
//!
//! Does not own: what the messages mean (see `cevitxe.rs`), msgpackr's record / structured-clone
//! extensions (they arrive as [`Value::Ext`] and are not interpreted), timestamps.
//!
//! The encoder writes the smallest standard header for each length (fixstr/str8/16/32,
//! fixmap/map16/32, fixarray/array16/32). msgpackr's `pack` (relay 4.x) writes maps as map16
//! even when small; any standard decoder, msgpackr's included, accepts either form.

use rmp::decode as rd;
use rmp::encode as wr;
use rmp::Marker;

/// Deepest nesting of arrays/maps the decoder accepts (the top-level value is depth 1).
pub const MAX_DEPTH: usize = 32;

/// A decoded MessagePack value. Strings and binaries borrow from the input.
///
/// Integers are normalized: every non-negative integer decodes as [`Value::UInt`], every
/// negative one as [`Value::Int`], whatever wire format carried it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Nil,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(&'a str),
    Bin(&'a [u8]),
    Array(Vec<Value<'a>>),
    /// Entries in wire order; duplicate keys are kept (see [`Value::get`]).
    Map(Vec<(Value<'a>, Value<'a>)>),
    Ext(i8, &'a [u8]),
}

impl<'a> Value<'a> {
    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The value under the string key `key`, if this is a map. Like a JavaScript object built
    /// by a decoder, the last occurrence of a duplicated key wins; non-string keys never match.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .rev()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Why an input is not one well-formed MessagePack value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ends inside a value.
    Truncated,
    /// The never-used marker byte 0xc1.
    Reserved,
    /// Arrays/maps nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A `str` whose bytes are not UTF-8.
    InvalidUtf8,
    /// Bytes left over after the value.
    TrailingBytes,
}

/// Decodes `input` as exactly one MessagePack value (trailing bytes are an error).
pub fn decode(input: &[u8]) -> Result<Value<'_>, DecodeError> {
    let mut rest = input;
    let v = value(&mut rest, 1)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(v)
}

/// What an `rmp` read from the rest of the input can fail with here. [`value`] only calls the
/// reader of the family of the marker it has just looked at, so a type mismatch cannot happen,
/// and reading from a byte slice fails only when the slice runs out.
fn ended<E>(_: E) -> DecodeError {
    DecodeError::Truncated
}

/// The next `len` bytes of `rest` (the payload of a bin or ext value), borrowed.
fn take<'a>(rest: &mut &'a [u8], len: u32) -> Result<&'a [u8], DecodeError> {
    let (head, tail) = rest
        .split_at_checked(len as usize)
        .ok_or(DecodeError::Truncated)?;
    *rest = tail;
    Ok(head)
}

/// One value at nesting `depth` (1 = top level), read from the front of `rest`, which is
/// advanced past it.
fn value<'a>(rest: &mut &'a [u8], depth: usize) -> Result<Value<'a>, DecodeError> {
    let Some(&first) = rest.first() else {
        return Err(DecodeError::Truncated);
    };
    Ok(match Marker::from_u8(first) {
        Marker::Reserved => return Err(DecodeError::Reserved),
        Marker::Null => {
            rd::read_nil(rest).map_err(ended)?;
            Value::Nil
        }
        Marker::True | Marker::False => Value::Bool(rd::read_bool(rest).map_err(ended)?),
        Marker::FixPos(_)
        | Marker::FixNeg(_)
        | Marker::U8
        | Marker::U16
        | Marker::U32
        | Marker::U64
        | Marker::I8
        | Marker::I16
        | Marker::I32
        | Marker::I64 => {
            // Every MessagePack integer (i64::MIN ..= u64::MAX) fits an i128, so the
            // conversion is never out of range, and both casts below are exact.
            let n: i128 = rd::read_int(rest).map_err(ended)?;
            if n >= 0 {
                Value::UInt(n as u64)
            } else {
                Value::Int(n as i64)
            }
        }
        Marker::F32 => Value::Float(f64::from(rd::read_f32(rest).map_err(ended)?)),
        Marker::F64 => Value::Float(rd::read_f64(rest).map_err(ended)?),
        Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => {
            let (s, tail) = rd::read_str_from_slice(*rest).map_err(|e| match e {
                rd::DecodeStringError::InvalidUtf8(..) => DecodeError::InvalidUtf8,
                _ => DecodeError::Truncated,
            })?;
            *rest = tail;
            Value::Str(s)
        }
        Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => {
            let len = rd::read_bin_len(rest).map_err(ended)?;
            Value::Bin(take(rest, len)?)
        }
        Marker::FixExt1
        | Marker::FixExt2
        | Marker::FixExt4
        | Marker::FixExt8
        | Marker::FixExt16
        | Marker::Ext8
        | Marker::Ext16
        | Marker::Ext32 => {
            let meta = rd::read_ext_meta(rest).map_err(ended)?;
            Value::Ext(meta.typeid, take(rest, meta.size)?)
        }
        Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
            let len = rd::read_array_len(rest).map_err(ended)?;
            if depth > MAX_DEPTH {
                return Err(DecodeError::TooDeep);
            }
            // Every element takes at least one byte: never reserve more than the input holds.
            let len = len as usize;
            let mut items = Vec::with_capacity(len.min(rest.len()));
            for _ in 0..len {
                items.push(value(rest, depth + 1)?);
            }
            Value::Array(items)
        }
        Marker::FixMap(_) | Marker::Map16 | Marker::Map32 => {
            let len = rd::read_map_len(rest).map_err(ended)?;
            if depth > MAX_DEPTH {
                return Err(DecodeError::TooDeep);
            }
            let len = len as usize;
            let mut entries = Vec::with_capacity(len.min(rest.len() / 2));
            for _ in 0..len {
                let k = value(rest, depth + 1)?;
                let v = value(rest, depth + 1)?;
                entries.push((k, v));
            }
            Value::Map(entries)
        }
    })
}

/// `rmp` writes through `std::io::Write`, which a `Vec<u8>` implements without ever returning
/// an error (it grows, or the allocator aborts): a write into one has no failure to handle.
fn into_vec<T, E>(_written: Result<T, E>) {}

/// A length as the u32 that MessagePack headers carry. Lengths above `u32::MAX` cannot be
/// represented; callers emit far smaller values.
fn header_len(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Writes a map header announcing `len` entries (fixmap, map16 or map32).
pub fn write_map_header(out: &mut Vec<u8>, len: usize) {
    into_vec(wr::write_map_len(out, header_len(len)));
}

/// Writes an array header announcing `len` elements (fixarray, array16 or array32).
pub fn write_array_header(out: &mut Vec<u8>, len: usize) {
    into_vec(wr::write_array_len(out, header_len(len)));
}

/// Writes a string (fixstr, str8, str16 or str32).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    into_vec(wr::write_str_len(out, header_len(s.len())));
    out.extend_from_slice(s.as_bytes());
}

/// Writes an array of strings.
pub fn write_str_array<S: AsRef<str>>(out: &mut Vec<u8>, items: &[S]) {
    write_array_header(out, items.len());
    for s in items {
        write_str(out, s.as_ref());
    }
}

/// Writes any [`Value`] in its smallest standard form.
pub fn encode(v: &Value<'_>, out: &mut Vec<u8>) {
    match v {
        Value::Nil => into_vec(wr::write_nil(out)),
        Value::Bool(b) => into_vec(wr::write_bool(out, *b)),
        Value::UInt(n) => into_vec(wr::write_uint(out, *n)),
        // A non-negative `Int` is written like the `UInt` of the same value.
        Value::Int(n) => into_vec(wr::write_sint(out, *n)),
        Value::Float(f) => into_vec(wr::write_f64(out, *f)),
        Value::Str(s) => write_str(out, s),
        Value::Bin(b) => {
            into_vec(wr::write_bin_len(out, header_len(b.len())));
            out.extend_from_slice(b);
        }
        Value::Array(items) => {
            write_array_header(out, items.len());
            for item in items {
                encode(item, out);
            }
        }
        Value::Map(entries) => {
            write_map_header(out, entries.len());
            for (k, v) in entries {
                encode(k, out);
                encode(v, out);
            }
        }
        Value::Ext(ty, data) => {
            into_vec(wr::write_ext_meta(out, header_len(data.len()), *ty));
            out.extend_from_slice(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &Value<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(v, &mut out);
        out
    }

    #[test]
    fn str_headers_hand_computed() {
        let mut out = Vec::new();
        write_str(&mut out, "");
        assert_eq!(out, [0xa0]);

        out.clear();
        write_str(&mut out, "abc");
        assert_eq!(out, [0xa3, b'a', b'b', b'c']);

        let s31 = "x".repeat(31);
        out.clear();
        write_str(&mut out, &s31);
        assert_eq!(out[0], 0xbf);
        assert_eq!(out.len(), 32);

        let s32 = "x".repeat(32);
        out.clear();
        write_str(&mut out, &s32);
        assert_eq!(&out[..2], &[0xd9, 32]);
        assert_eq!(out.len(), 34);

        let s256 = "y".repeat(256);
        out.clear();
        write_str(&mut out, &s256);
        assert_eq!(&out[..3], &[0xda, 0x01, 0x00]);
        assert_eq!(out.len(), 259);

        let s65536 = "z".repeat(65536);
        out.clear();
        write_str(&mut out, &s65536);
        assert_eq!(&out[..5], &[0xdb, 0x00, 0x01, 0x00, 0x00]);

        // Multi-byte UTF-8: the header counts bytes, not chars. "❤️" is 6 bytes.
        out.clear();
        write_str(&mut out, "❤️");
        assert_eq!(out, [0xa6, 0xe2, 0x9d, 0xa4, 0xef, 0xb8, 0x8f]);
    }

    #[test]
    fn container_headers_hand_computed() {
        let mut out = Vec::new();
        write_map_header(&mut out, 0);
        write_map_header(&mut out, 15);
        write_map_header(&mut out, 16);
        write_map_header(&mut out, 65535);
        write_map_header(&mut out, 65536);
        assert_eq!(
            out,
            [0x80, 0x8f, 0xde, 0x00, 0x10, 0xde, 0xff, 0xff, 0xdf, 0x00, 0x01, 0x00, 0x00]
        );

        out.clear();
        write_array_header(&mut out, 3);
        write_array_header(&mut out, 16);
        write_array_header(&mut out, 70000);
        assert_eq!(out, [0x93, 0xdc, 0x00, 0x10, 0xdd, 0x00, 0x01, 0x11, 0x70]);
    }

    #[test]
    fn introduction_map_hand_computed() {
        // {type:"Introduction", peerId:"bob", documentIds:["doc-1"]}
        let mut out = Vec::new();
        write_map_header(&mut out, 3);
        write_str(&mut out, "type");
        write_str(&mut out, "Introduction");
        write_str(&mut out, "peerId");
        write_str(&mut out, "bob");
        write_str(&mut out, "documentIds");
        write_str_array(&mut out, &["doc-1"]);
        let mut want = vec![0x83, 0xa4];
        want.extend_from_slice(b"type");
        want.push(0xac);
        want.extend_from_slice(b"Introduction");
        want.push(0xa6);
        want.extend_from_slice(b"peerId");
        want.push(0xa3);
        want.extend_from_slice(b"bob");
        want.push(0xab);
        want.extend_from_slice(b"documentIds");
        want.extend_from_slice(&[0x91, 0xa5]);
        want.extend_from_slice(b"doc-1");
        assert_eq!(out, want);
    }

    #[test]
    fn ints_hand_computed() {
        assert_eq!(enc(&Value::UInt(0)), [0x00]);
        assert_eq!(enc(&Value::UInt(127)), [0x7f]);
        assert_eq!(enc(&Value::UInt(128)), [0xcc, 0x80]);
        assert_eq!(enc(&Value::UInt(256)), [0xcd, 0x01, 0x00]);
        assert_eq!(enc(&Value::UInt(65536)), [0xce, 0, 1, 0, 0]);
        assert_eq!(enc(&Value::UInt(1 << 32)), [0xcf, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(enc(&Value::Int(-1)), [0xff]);
        assert_eq!(enc(&Value::Int(-32)), [0xe0]);
        assert_eq!(enc(&Value::Int(-33)), [0xd0, 0xdf]);
        assert_eq!(enc(&Value::Int(-129)), [0xd1, 0xff, 0x7f]);
        assert_eq!(enc(&Value::Int(-40000)), [0xd2, 0xff, 0xff, 0x63, 0xc0]);
        assert_eq!(enc(&Value::Int(i64::MIN))[0], 0xd3);
        assert_eq!(enc(&Value::Int(5)), [0x05]);
    }

    #[test]
    fn decodes_msgpackr_style_map16() {
        // msgpackr `pack({type:"Join",documentIds:["a"]})` writes a map16 header.
        let mut bytes = vec![0xde, 0x00, 0x02, 0xa4];
        bytes.extend_from_slice(b"type");
        bytes.push(0xa4);
        bytes.extend_from_slice(b"Join");
        bytes.push(0xab);
        bytes.extend_from_slice(b"documentIds");
        bytes.extend_from_slice(&[0x91, 0xa1, b'a']);
        let v = decode(&bytes).expect("well-formed");
        assert_eq!(v.get("type").and_then(Value::as_str), Some("Join"));
        assert_eq!(
            v.get("documentIds").and_then(Value::as_array),
            Some(&[Value::Str("a")][..])
        );
        assert_eq!(v.get("missing"), None);
    }

    #[test]
    fn round_trip_all_families() {
        let long = "L".repeat(300);
        let v = Value::Map(vec![
            (Value::Str("nil"), Value::Nil),
            (Value::Str("t"), Value::Bool(true)),
            (Value::Str("f"), Value::Bool(false)),
            (Value::Str("u"), Value::UInt(u64::MAX)),
            (Value::Str("i"), Value::Int(-1234567)),
            (Value::Str("x"), Value::Float(1.5)),
            (Value::Str("s"), Value::Str("héllo")),
            (Value::Str("long"), Value::Str(&long)),
            (Value::Str("b"), Value::Bin(&[1, 2, 3])),
            (Value::Str("e"), Value::Ext(-1, &[0, 0, 0, 1])),
            (Value::Str("e3"), Value::Ext(5, &[9, 9, 9])),
            (
                Value::Str("nested"),
                Value::Array(vec![
                    Value::Array(vec![Value::Str("a"), Value::Str("b")]),
                    Value::Map(vec![(Value::UInt(1), Value::Nil)]),
                ]),
            ),
            (Value::Str("big"), Value::Array(vec![Value::UInt(7); 20])),
        ]);
        let bytes = enc(&v);
        assert_eq!(decode(&bytes), Ok(v));
    }

    #[test]
    fn strings_and_binaries_borrow_from_the_input() {
        let bytes = [0x92, 0xa2, b'h', b'i', 0xc4, 0x01, 0x07];
        let v = decode(&bytes).expect("well-formed");
        let Value::Array(items) = &v else {
            panic!("an array: {v:?}");
        };
        let (Value::Str(s), Value::Bin(b)) = (&items[0], &items[1]) else {
            panic!("a str and a bin: {v:?}");
        };
        assert_eq!((*s, *b), ("hi", &[0x07][..]));
        assert!(std::ptr::eq(s.as_ptr(), &bytes[2]));
        assert!(std::ptr::eq(b.as_ptr(), &bytes[6]));
    }

    #[test]
    fn decodes_other_wire_forms() {
        // float32, int8 positive (normalized to UInt), str16 of a short string, array16.
        assert_eq!(
            decode(&[0xca, 0x3f, 0xc0, 0x00, 0x00]),
            Ok(Value::Float(1.5))
        );
        assert_eq!(decode(&[0xd0, 0x05]), Ok(Value::UInt(5)));
        assert_eq!(decode(&[0xd0, 0xfb]), Ok(Value::Int(-5)));
        assert_eq!(decode(&[0xda, 0x00, 0x01, b'q']), Ok(Value::Str("q")));
        assert_eq!(
            decode(&[0xdc, 0x00, 0x01, 0xc0]),
            Ok(Value::Array(vec![Value::Nil]))
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert_eq!(decode(&[]), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0xc1]), Err(DecodeError::Reserved));
        assert_eq!(decode(&[0xa3, b'a']), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0xa1, 0xff]), Err(DecodeError::InvalidUtf8));
        assert_eq!(decode(&[0xc0, 0xc0]), Err(DecodeError::TrailingBytes));
        // A huge announced length with no data: no huge allocation, just Truncated.
        assert_eq!(
            decode(&[0xdd, 0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode(&[0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode(&[0xdb, 0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(decode(&[0xc9, 0, 0, 0, 2, 1]), Err(DecodeError::Truncated));
        // Nesting: MAX_DEPTH levels decode, one more does not.
        let mut ok = vec![0x91; MAX_DEPTH - 1];
        ok.push(0x90);
        assert!(decode(&ok).is_ok());
        let mut deep = vec![0x91; MAX_DEPTH];
        deep.push(0x90);
        assert_eq!(decode(&deep), Err(DecodeError::TooDeep));
        let deep_maps = vec![0x81; 10_000];
        assert_eq!(decode(&deep_maps), Err(DecodeError::TooDeep));
    }

    #[test]
    fn every_prefix_of_a_valid_message_is_rejected_without_panic() {
        let k40 = "k".repeat(40);
        let v = Value::Map(vec![
            (Value::Str("type"), Value::Str("Join")),
            (
                Value::Str("documentIds"),
                Value::Array(vec![Value::Str("a"), Value::Str(&k40)]),
            ),
            (Value::Str("n"), Value::Float(2.0)),
        ]);
        let bytes = enc(&v);
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "prefix {n}");
        }
        // Every single-byte marker followed by a short tail: no panic.
        for m in 0..=255u8 {
            let _ = decode(&[m]);
            let _ = decode(&[m, 0xff, 0xff, 0xff, 0xff, 0x00]);
        }
    }
}
