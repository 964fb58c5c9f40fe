//! The WebSocket frame header (RFC 6455 5.2): opcodes, parsing a header from
//! a byte prefix, and emitting server headers.
//!
//! This file owns the wire layout of the 2-14 header bytes and the rules
//! that one header alone can break: RSV bits, reserved opcodes, the 64-bit
//! length's high bit, and the control-frame rules of 5.5 (FIN set, at most
//! 125 bytes). It deliberately does not know about connections: whether a
//! frame must be masked, whether a continuation is expected, size limits and
//! payloads are the decoder's business (`decoder.rs`).
//!
//! Parsing is three-valued in the style of httparse: `Ok(None)` asks for
//! more bytes, and an error is reported as soon as the bytes that prove it
//! are present, checked in byte order so that a prefix of a header never
//! reports a different error than the whole header.
//!
//! Non-minimal length encodings (e.g. a 16-bit length field holding 5) are
//! accepted. RFC 6455 5.2 says the minimal encoding MUST be used, but the
//! decoded length is what every limit is checked against, so accepting them
//! costs nothing and rejecting them protects nothing; we follow the common
//! practice (tungstenite, Autobahn does not test it). The server itself
//! always emits minimal encodings.

use super::error::WsError;

/// The longest possible frame header: 2 fixed bytes, 8 bytes of 64-bit
/// length and a 4-byte masking key.
pub const MAX_HEADER_LEN: usize = 14;

/// The longest header the server sends (unmasked).
pub const MAX_SERVER_HEADER_LEN: usize = 10;

/// The largest payload a control frame may carry (RFC 6455 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame's opcode (RFC 6455 5.2, 11.8). Reserved values are not
/// representable: converting them fails with [`WsError::ReservedOpcode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpCode {
    /// 0x0: a later fragment of a fragmented message.
    Continuation,
    /// 0x1: the first (or only) frame of a text message.
    Text,
    /// 0x2: the first (or only) frame of a binary message.
    Binary,
    /// 0x8: connection close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// Decodes a 4-bit opcode value. Values 0x3-0x7 and 0xB-0xF are
    /// reserved, and anything above 0xF is not an opcode at all; both give
    /// [`WsError::ReservedOpcode`].
    pub const fn from_u8(value: u8) -> Result<OpCode, WsError> {
        match value {
            0x0 => Ok(OpCode::Continuation),
            0x1 => Ok(OpCode::Text),
            0x2 => Ok(OpCode::Binary),
            0x8 => Ok(OpCode::Close),
            0x9 => Ok(OpCode::Ping),
            0xA => Ok(OpCode::Pong),
            other => Err(WsError::ReservedOpcode(other)),
        }
    }

    /// The 4-bit wire value.
    pub const fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, Ping and Pong (opcodes with the high bit set, RFC 6455 5.5).
    pub const fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }

    /// Continuation, Text and Binary (RFC 6455 5.6).
    pub const fn is_data(self) -> bool {
        !self.is_control()
    }
}

impl TryFrom<u8> for OpCode {
    type Error = WsError;
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        OpCode::from_u8(value)
    }
}

impl From<OpCode> for u8 {
    fn from(op: OpCode) -> u8 {
        op.as_u8()
    }
}

/// A parsed frame header. `payload_len` is below 2^63 for every header that
/// [`FrameHeader::parse`] returns, and at most 125 for control frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// FIN: this is the last frame of its message.
    pub fin: bool,
    pub opcode: OpCode,
    /// The masking key, present iff the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

const FIN_BIT: u8 = 0x80;
const RSV_BITS: u8 = 0x70;
const OPCODE_BITS: u8 = 0x0F;
const MASK_BIT: u8 = 0x80;
const LEN7_BITS: u8 = 0x7F;
/// 7-bit length values that announce a 16-bit or 64-bit extended length.
const LEN7_16BIT: u8 = 126;
const LEN7_64BIT: u8 = 127;

impl FrameHeader {
    /// Parses the header at the start of `buf`.
    ///
    /// Returns `Ok(None)` if `buf` is a valid but incomplete header prefix,
    /// `Ok(Some((header, header_len)))` once the whole header is present
    /// (the payload follows at `buf[header_len..]`, and need not be present),
    /// or the first rule the bytes break, in byte order:
    ///
    /// * byte 0: RSV bits set (1002), reserved opcode (1002), control frame
    ///   without FIN (1002);
    /// * byte 1: control frame with a 7-bit length over 125 (1002);
    /// * byte 2: a 64-bit length with its most significant bit set (1002).
    ///
    /// Masking is not required here (server frames are unmasked); the
    /// decoder enforces it for client frames. Never panics.
    #[inline]
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, WsError> {
        let Some(&b0) = buf.first() else {
            return Ok(None);
        };
        if b0 & RSV_BITS != 0 {
            return Err(WsError::ReservedBitsSet {
                bits: (b0 & RSV_BITS) >> 4,
            });
        }
        let opcode = OpCode::from_u8(b0 & OPCODE_BITS)?;
        let fin = b0 & FIN_BIT != 0;
        if opcode.is_control() && !fin {
            return Err(WsError::FragmentedControlFrame);
        }

        let Some(&b1) = buf.get(1) else {
            return Ok(None);
        };
        let masked = b1 & MASK_BIT != 0;
        let len7 = b1 & LEN7_BITS;
        if opcode.is_control() && usize::from(len7) > MAX_CONTROL_PAYLOAD {
            return Err(WsError::ControlFrameTooLong);
        }
        let ext_len = match len7 {
            LEN7_16BIT => 2,
            LEN7_64BIT => 8,
            _ => 0,
        };
        if len7 == LEN7_64BIT {
            if let Some(&b2) = buf.get(2) {
                if b2 & 0x80 != 0 {
                    return Err(WsError::LengthMsbSet);
                }
            }
        }

        let mask_at = 2 + ext_len;
        let header_len = mask_at + if masked { 4 } else { 0 };
        let Some(rest) = buf.get(2..header_len) else {
            return Ok(None);
        };
        // `rest` is exactly `ext_len` length bytes followed by the key (if
        // any), so the `first_chunk`s below find their bytes; they return
        // None only on a short slice, which `buf.get` already ruled out.
        let payload_len = match ext_len {
            2 => rest
                .first_chunk::<2>()
                .map(|b| u64::from(u16::from_be_bytes(*b))),
            8 => rest.first_chunk::<8>().map(|b| u64::from_be_bytes(*b)),
            _ => Some(u64::from(len7)),
        };
        let Some(payload_len) = payload_len else {
            return Ok(None);
        };
        let mask = if masked {
            match rest.get(ext_len..).and_then(|k| k.first_chunk::<4>()) {
                Some(key) => Some(*key),
                None => return Ok(None),
            }
        } else {
            None
        };
        Ok(Some((
            FrameHeader {
                fin,
                opcode,
                mask,
                payload_len,
            },
            header_len,
        )))
    }

    /// The number of bytes [`emit`](Self::emit) writes: 2, 4 or 10, plus 4
    /// with a mask.
    pub const fn encoded_len(&self) -> usize {
        let len = if self.payload_len <= 125 {
            2
        } else if self.payload_len <= 0xFFFF {
            4
        } else {
            10
        };
        if self.mask.is_some() {
            len + 4
        } else {
            len
        }
    }

    /// Writes the header to the start of `out` with the minimal length
    /// encoding and returns its length ([`encoded_len`](Self::encoded_len)).
    /// Server frames have `mask: None`; a mask is written when present
    /// (used by tests that play the client).
    ///
    /// # Panics
    ///
    /// If `out` is shorter than `encoded_len()`, or (in debug builds) if
    /// `payload_len` has its top bit set, which no valid frame has. Both
    /// are caller bugs, never peer input.
    pub fn emit(&self, out: &mut [u8]) -> usize {
        let n = self.encoded_len();
        assert!(
            out.len() >= n,
            "FrameHeader::emit: {} < {n} bytes",
            out.len()
        );
        debug_assert!(self.payload_len >> 63 == 0, "payload length over 2^63");
        let mut base = [0u8; MAX_SERVER_HEADER_LEN];
        let at = write_base(
            self.fin,
            self.opcode,
            self.payload_len,
            self.mask.is_some(),
            &mut base,
        );
        // `at <= n <= out.len()` (asserted above).
        out[..at].copy_from_slice(&base[..at]);
        if let Some(key) = self.mask {
            // `at + 4 == n <= out.len()`.
            out[at..at + 4].copy_from_slice(&key);
        }
        n
    }
}

/// Writes an unmasked (server) frame header and returns its length: 2, 4 or
/// 10 bytes. `len` must be below 2^63 (checked in debug builds).
#[inline]
pub fn encode_header(fin: bool, opcode: OpCode, len: u64, out: &mut [u8; 10]) -> usize {
    debug_assert!(len >> 63 == 0, "payload length over 2^63");
    write_base(fin, opcode, len, false, out)
}

/// Writes the first byte, the length byte and the extended length (all of
/// which fit the 10 bytes of `out`) and returns how many bytes that was.
#[inline]
fn write_base(fin: bool, opcode: OpCode, len: u64, masked: bool, out: &mut [u8; 10]) -> usize {
    // All indices below are constants within the 10-byte array, so they are
    // checked at compile time.
    out[0] = if fin { FIN_BIT } else { 0 } | opcode.as_u8();
    let mask_bit = if masked { MASK_BIT } else { 0 };
    if len <= 125 {
        // Fits the 7-bit field: the cast keeps all of it.
        out[1] = mask_bit | len as u8;
        2
    } else if let Ok(len16) = u16::try_from(len) {
        out[1] = mask_bit | LEN7_16BIT;
        out[2..4].copy_from_slice(&len16.to_be_bytes());
        4
    } else {
        out[1] = mask_bit | LEN7_64BIT;
        out[2..10].copy_from_slice(&len.to_be_bytes());
        10
    }
}

/// Appends a complete unmasked server frame (header and payload) to `out`.
/// Allocates as `Vec` does; meant for small server messages and tests, not
/// for the hot path (use [`encode_header`] and vectored writes there).
pub fn encode_frame(fin: bool, opcode: OpCode, payload: &[u8], out: &mut Vec<u8>) {
    let mut header = [0u8; MAX_SERVER_HEADER_LEN];
    // A slice's length is at most isize::MAX, so below 2^63.
    let n = encode_header(fin, opcode, payload.len() as u64, &mut header);
    out.reserve(n + payload.len());
    out.extend_from_slice(&header[..n]);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(b: &[u8]) -> (FrameHeader, usize) {
        FrameHeader::parse(b).unwrap().unwrap()
    }

    #[test]
    fn opcode_roundtrip_and_reserved_values() {
        for v in 0u8..=255 {
            match OpCode::from_u8(v) {
                Ok(op) => {
                    assert_eq!(op.as_u8(), v);
                    assert_eq!(u8::from(op), v);
                    assert_eq!(op.is_control(), v >= 8);
                    assert_eq!(op.is_data(), v < 8);
                }
                Err(e) => {
                    assert_eq!(e, WsError::ReservedOpcode(v));
                    assert!(matches!(v, 3..=7 | 0xB..=0xFF));
                }
            }
        }
        assert_eq!(OpCode::try_from(0xA), Ok(OpCode::Pong));
    }

    #[test]
    fn rfc_examples_parse() {
        // RFC 6455 5.7: unmasked "Hello", masked "Hello", 256-byte and
        // 64 KiB binary headers.
        assert_eq!(
            parse_all(&[0x81, 0x05, b'H']),
            (
                FrameHeader {
                    fin: true,
                    opcode: OpCode::Text,
                    mask: None,
                    payload_len: 5
                },
                2
            )
        );
        let (h, n) = parse_all(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!((h.mask, n), (Some([0x37, 0xfa, 0x21, 0x3d]), 6));
        assert_eq!(parse_all(&[0x82, 0x7E, 0x01, 0x00]).0.payload_len, 256);
        let (h, n) = parse_all(&[0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!((h.payload_len, n), (65536, 10));
        // Fragmented text: first fragment without FIN, then a continuation.
        let (h, _) = parse_all(&[0x01, 0x03]);
        assert_eq!((h.fin, h.opcode), (false, OpCode::Text));
        let (h, _) = parse_all(&[0x80, 0x02]);
        assert_eq!((h.fin, h.opcode), (true, OpCode::Continuation));
    }

    #[test]
    fn every_prefix_needs_more() {
        let mut out = [0u8; MAX_HEADER_LEN];
        for len in [0u64, 125, 126, 65535, 65536, 1 << 40] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let h = FrameHeader {
                    fin: true,
                    opcode: OpCode::Binary,
                    mask,
                    payload_len: len,
                };
                let n = h.emit(&mut out);
                for cut in 0..n {
                    assert_eq!(FrameHeader::parse(&out[..cut]), Ok(None), "{h:?} cut {cut}");
                }
                assert_eq!(FrameHeader::parse(&out[..n]), Ok(Some((h, n))));
            }
        }
    }

    #[test]
    fn length_encoding_boundaries() {
        let mut out = [0u8; 10];
        for (len, hlen, len7) in [
            (0u64, 2, 0u8),
            (125, 2, 125),
            (126, 4, 126),
            (65535, 4, 126),
            (65536, 10, 127),
            ((1 << 63) - 1, 10, 127),
        ] {
            let n = encode_header(true, OpCode::Binary, len, &mut out);
            assert_eq!(n, hlen, "len {len}");
            assert_eq!(out[1], len7);
            assert_eq!(parse_all(&out[..n]).0.payload_len, len);
            let h = FrameHeader {
                fin: true,
                opcode: OpCode::Binary,
                mask: None,
                payload_len: len,
            };
            assert_eq!(h.encoded_len(), n);
        }
    }

    #[test]
    fn non_minimal_length_encoding_is_accepted() {
        // 5 written in the 16-bit and in the 64-bit field.
        assert_eq!(parse_all(&[0x82, 0x7E, 0, 5]).0.payload_len, 5);
        assert_eq!(
            parse_all(&[0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0, 5])
                .0
                .payload_len,
            5
        );
    }

    #[test]
    fn rsv_bits_are_protocol_errors() {
        for (b0, bits) in [
            (0xC1u8, 0b100u8),
            (0xA1, 0b010),
            (0x91, 0b001),
            (0xF1, 0b111),
        ] {
            let e = FrameHeader::parse(&[b0]).unwrap_err();
            assert_eq!(e, WsError::ReservedBitsSet { bits });
            assert_eq!(e.close_code(), 1002);
        }
    }

    #[test]
    fn reserved_opcodes_are_protocol_errors() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            let e = FrameHeader::parse(&[0x80 | op]).unwrap_err();
            assert_eq!(e, WsError::ReservedOpcode(op));
            assert_eq!(e.close_code(), 1002);
        }
    }

    #[test]
    fn control_frame_rules_are_checked_early() {
        assert_eq!(
            FrameHeader::parse(&[0x09]),
            Err(WsError::FragmentedControlFrame)
        );
        for len7 in [126u8, 127] {
            assert_eq!(
                FrameHeader::parse(&[0x89, 0x80 | len7]),
                Err(WsError::ControlFrameTooLong)
            );
        }
        assert!(FrameHeader::parse(&[0x89, 0xFD]).is_ok()); // 125, masked
    }

    #[test]
    fn len64_msb_is_rejected_from_the_third_byte() {
        assert_eq!(
            FrameHeader::parse(&[0x82, 0x7F, 0x80]),
            Err(WsError::LengthMsbSet)
        );
        assert_eq!(
            FrameHeader::parse(&[0x82, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
            Err(WsError::LengthMsbSet)
        );
    }

    #[test]
    fn emit_with_mask_roundtrips_and_encode_frame_appends() {
        let h = FrameHeader {
            fin: false,
            opcode: OpCode::Text,
            mask: Some([9, 8, 7, 6]),
            payload_len: 300,
        };
        let mut out = [0u8; 20];
        let n = h.emit(&mut out);
        assert_eq!(n, 8);
        assert_eq!(parse_all(&out), (h, 8));

        let mut v = vec![0xAA];
        encode_frame(true, OpCode::Pong, b"hi", &mut v);
        assert_eq!(v, [0xAA, 0x8A, 0x02, b'h', b'i']);
    }

    #[test]
    #[should_panic]
    fn emit_into_short_buffer_panics() {
        let h = FrameHeader {
            fin: true,
            opcode: OpCode::Binary,
            mask: None,
            payload_len: 1000,
        };
        h.emit(&mut [0u8; 3]);
    }
}
