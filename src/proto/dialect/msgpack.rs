//! A minimal MessagePack codec for the relay 4.x introduction dialect (cevitxe dialect C).
//!
//! Owns: a bounds-checked, depth-limited decoder of one whole MessagePack value into a
//! borrowed [`Value`] (every format family is understood, so unknown fields of any type are
//! skipped safely), and writers for the shapes the server emits (maps with string keys, strings,
//! arrays of strings), plus a general [`encode`] used for round trips.
//!
//! Does not own: what the messages mean (see `cevitxe.rs`), msgpackr's record / structured-clone
//! extensions (they arrive as [`Value::Ext`] and are not interpreted), timestamps.
//!
//! The encoder writes the smallest standard header for each length (fixstr/str8/16/32,
//! fixmap/map16/32, fixarray/array16/32). msgpackr's `pack` (relay 4.x) writes maps as map16
//! even when small; any standard decoder, msgpackr's included, accepts either form.

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
    let mut r = Reader { buf: input, pos: 0 };
    let v = r.value(1)?;
    if r.pos != input.len() {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(v)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn str(&mut self, len: usize) -> Result<Value<'a>, DecodeError> {
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(Value::Str)
            .map_err(|_| DecodeError::InvalidUtf8)
    }

    fn ext(&mut self, len: usize) -> Result<Value<'a>, DecodeError> {
        let ty = self.u8()? as i8;
        Ok(Value::Ext(ty, self.take(len)?))
    }

    fn seq(&mut self, len: usize, depth: usize) -> Result<Value<'a>, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        // Every element takes at least one byte: never reserve more than the input can hold.
        let mut items = Vec::with_capacity(len.min(self.remaining()));
        for _ in 0..len {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Value<'a>, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let mut entries = Vec::with_capacity(len.min(self.remaining() / 2));
        for _ in 0..len {
            let k = self.value(depth + 1)?;
            let v = self.value(depth + 1)?;
            entries.push((k, v));
        }
        Ok(Value::Map(entries))
    }

    /// One value at nesting `depth` (1 = top level).
    fn value(&mut self, depth: usize) -> Result<Value<'a>, DecodeError> {
        let m = self.u8()?;
        Ok(match m {
            0x00..=0x7f => Value::UInt(u64::from(m)),
            0x80..=0x8f => return self.map(usize::from(m & 0x0f), depth),
            0x90..=0x9f => return self.seq(usize::from(m & 0x0f), depth),
            0xa0..=0xbf => return self.str(usize::from(m & 0x1f)),
            0xc0 => Value::Nil,
            0xc1 => return Err(DecodeError::Reserved),
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4 => {
                let n = usize::from(self.u8()?);
                Value::Bin(self.take(n)?)
            }
            0xc5 => {
                let n = usize::from(self.u16()?);
                Value::Bin(self.take(n)?)
            }
            0xc6 => {
                let n = self.u32()? as usize;
                Value::Bin(self.take(n)?)
            }
            0xc7 => {
                let n = usize::from(self.u8()?);
                return self.ext(n);
            }
            0xc8 => {
                let n = usize::from(self.u16()?);
                return self.ext(n);
            }
            0xc9 => {
                let n = self.u32()? as usize;
                return self.ext(n);
            }
            0xca => Value::Float(f64::from(f32::from_bits(self.u32()?))),
            0xcb => Value::Float(f64::from_bits(self.u64()?)),
            0xcc => Value::UInt(u64::from(self.u8()?)),
            0xcd => Value::UInt(u64::from(self.u16()?)),
            0xce => Value::UInt(u64::from(self.u32()?)),
            0xcf => Value::UInt(self.u64()?),
            0xd0 => int(i64::from(self.u8()? as i8)),
            0xd1 => int(i64::from(self.u16()? as i16)),
            0xd2 => int(i64::from(self.u32()? as i32)),
            0xd3 => int(self.u64()? as i64),
            0xd4 => return self.ext(1),
            0xd5 => return self.ext(2),
            0xd6 => return self.ext(4),
            0xd7 => return self.ext(8),
            0xd8 => return self.ext(16),
            0xd9 => {
                let n = usize::from(self.u8()?);
                return self.str(n);
            }
            0xda => {
                let n = usize::from(self.u16()?);
                return self.str(n);
            }
            0xdb => {
                let n = self.u32()? as usize;
                return self.str(n);
            }
            0xdc => {
                let n = usize::from(self.u16()?);
                return self.seq(n, depth);
            }
            0xdd => {
                let n = self.u32()? as usize;
                return self.seq(n, depth);
            }
            0xde => {
                let n = usize::from(self.u16()?);
                return self.map(n, depth);
            }
            0xdf => {
                let n = self.u32()? as usize;
                return self.map(n, depth);
            }
            // 0xe0..=0xff: negative fixint.
            _ => Value::Int(i64::from(m as i8)),
        })
    }
}

/// Normalizes a signed wire integer (non-negative ⇒ `UInt`).
fn int(n: i64) -> Value<'static> {
    if n >= 0 {
        Value::UInt(n as u64)
    } else {
        Value::Int(n)
    }
}

/// Writes a map header announcing `len` entries (fixmap, map16 or map32).
pub fn write_map_header(out: &mut Vec<u8>, len: usize) {
    write_header(out, len, 0x80, 0x0f, 0xde, 0xdf);
}

/// Writes an array header announcing `len` elements (fixarray, array16 or array32).
pub fn write_array_header(out: &mut Vec<u8>, len: usize) {
    write_header(out, len, 0x90, 0x0f, 0xdc, 0xdd);
}

fn write_header(out: &mut Vec<u8>, len: usize, fix: u8, fix_max: usize, m16: u8, m32: u8) {
    if len <= fix_max {
        out.push(fix | len as u8);
    } else if let Ok(n) = u16::try_from(len) {
        out.push(m16);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(m32);
        // Lengths above u32::MAX cannot be represented; callers emit far smaller values.
        out.extend_from_slice(&(len.min(u32::MAX as usize) as u32).to_be_bytes());
    }
}

/// Writes a string (fixstr, str8, str16 or str32).
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let len = s.len();
    if len < 32 {
        out.push(0xa0 | len as u8);
    } else if let Ok(n) = u8::try_from(len) {
        out.push(0xd9);
        out.push(n);
    } else if let Ok(n) = u16::try_from(len) {
        out.push(0xda);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(len.min(u32::MAX as usize) as u32).to_be_bytes());
    }
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
        Value::Nil => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::UInt(n) => write_uint(out, *n),
        Value::Int(n) if *n >= 0 => write_uint(out, *n as u64),
        Value::Int(n) => write_neg(out, *n),
        Value::Float(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::Str(s) => write_str(out, s),
        Value::Bin(b) => {
            if let Ok(n) = u8::try_from(b.len()) {
                out.push(0xc4);
                out.push(n);
            } else if let Ok(n) = u16::try_from(b.len()) {
                out.push(0xc5);
                out.extend_from_slice(&n.to_be_bytes());
            } else {
                out.push(0xc6);
                out.extend_from_slice(&(b.len().min(u32::MAX as usize) as u32).to_be_bytes());
            }
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
            let fixed = match data.len() {
                1 => Some(0xd4),
                2 => Some(0xd5),
                4 => Some(0xd6),
                8 => Some(0xd7),
                16 => Some(0xd8),
                _ => None,
            };
            if let Some(m) = fixed {
                out.push(m);
            } else if let Ok(n) = u8::try_from(data.len()) {
                out.push(0xc7);
                out.push(n);
            } else if let Ok(n) = u16::try_from(data.len()) {
                out.push(0xc8);
                out.extend_from_slice(&n.to_be_bytes());
            } else {
                out.push(0xc9);
                out.extend_from_slice(&(data.len().min(u32::MAX as usize) as u32).to_be_bytes());
            }
            out.push(*ty as u8);
            out.extend_from_slice(data);
        }
    }
}

fn write_uint(out: &mut Vec<u8>, n: u64) {
    if n < 0x80 {
        out.push(n as u8);
    } else if let Ok(n) = u8::try_from(n) {
        out.extend_from_slice(&[0xcc, n]);
    } else if let Ok(n) = u16::try_from(n) {
        out.push(0xcd);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = u32::try_from(n) {
        out.push(0xce);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xcf);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn write_neg(out: &mut Vec<u8>, n: i64) {
    if n >= -32 {
        out.push(n as i8 as u8);
    } else if let Ok(n) = i8::try_from(n) {
        out.extend_from_slice(&[0xd0, n as u8]);
    } else if let Ok(n) = i16::try_from(n) {
        out.push(0xd1);
        out.extend_from_slice(&n.to_be_bytes());
    } else if let Ok(n) = i32::try_from(n) {
        out.push(0xd2);
        out.extend_from_slice(&n.to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
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
