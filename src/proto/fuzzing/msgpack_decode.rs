//! The `msgpack_decode` fuzz target: arbitrary bytes into the relay 4.x MessagePack decoder
//! (`proto::dialect::msgpack`).
//!
//! Checked: decoding never panics; a decoded value has no non-negative [`Value::Int`] (integers
//! are normalized) and nests at most [`MAX_DEPTH`] deep; re-encoding it with [`encode`] gives
//! bytes that decode to the same value (floats compared by their bits, so NaN counts as equal
//! to itself) and re-encode to the same bytes; the input without its last byte is
//! `Truncated`, and with a byte appended is `TrailingBytes`.

use crate::proto::dialect::msgpack::{decode, encode, DecodeError, Value, MAX_DEPTH};

/// Runs the checks in the module docs on `data`; panics when one fails.
pub fn check_msgpack_decode(data: &[u8]) {
    let Ok(v) = decode(data) else {
        return;
    };
    assert!(depth(&v) <= MAX_DEPTH, "decoded deeper than MAX_DEPTH");
    assert_normalized(&v);
    let mut bytes = Vec::new();
    encode(&v, &mut bytes);
    let v2 = decode(&bytes).unwrap_or_else(|e| panic!("re-encoded value does not decode: {e:?}"));
    assert!(
        same(&v, &v2),
        "round trip changed the value: {v:?} → {v2:?}"
    );
    let mut again = Vec::new();
    encode(&v2, &mut again);
    assert_eq!(bytes, again, "encoding is not stable");
    // One value that ends exactly at the end of the input: a byte less cannot be complete.
    assert_eq!(decode(&data[..data.len() - 1]), Err(DecodeError::Truncated));
    let mut longer = data.to_vec();
    longer.push(0xc0);
    assert_eq!(decode(&longer), Err(DecodeError::TrailingBytes));
}

fn depth(v: &Value<'_>) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Map(entries) => {
            1 + entries
                .iter()
                .map(|(k, v)| depth(k).max(depth(v)))
                .max()
                .unwrap_or(0)
        }
        _ => 0,
    }
}

fn assert_normalized(v: &Value<'_>) {
    match v {
        Value::Int(n) => assert!(*n < 0, "non-negative integer decoded as Int({n})"),
        Value::Array(items) => items.iter().for_each(assert_normalized),
        Value::Map(entries) => entries.iter().for_each(|(k, v)| {
            assert_normalized(k);
            assert_normalized(v);
        }),
        _ => {}
    }
}

/// `==`, except that floats compare by their bits (NaN ≠ NaN under `PartialEq`).
fn same(a: &Value<'_>, b: &Value<'_>) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(xs), Value::Array(ys)) => {
            xs.len() == ys.len() && xs.iter().zip(ys).all(|(x, y)| same(x, y))
        }
        (Value::Map(xs), Value::Map(ys)) => {
            xs.len() == ys.len()
                && xs
                    .iter()
                    .zip(ys)
                    .all(|((kx, vx), (ky, vy))| same(kx, ky) && same(vx, vy))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_inputs_do_not_panic() {
        check_msgpack_decode(b"");
        check_msgpack_decode(&[0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1]); // a NaN
        check_msgpack_decode(&[0xca, 0xff, 0xc0, 0, 1]); // a float32 NaN
        check_msgpack_decode(&[0xd3, 0, 0, 0, 0, 0, 0, 0, 5]); // int64 5 → UInt
        check_msgpack_decode(&[0x91; 40]);
        check_msgpack_decode(&(0..=255).collect::<Vec<u8>>());
    }
}
