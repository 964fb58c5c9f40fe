//! Close frame payloads (RFC 6455 5.5.1, 7.4): validating what a peer sent
//! and encoding what the server sends.
//!
//! This file owns the status-code rules and the close payload layout
//! (2-byte big-endian code, then a UTF-8 reason). It does not run the
//! closing handshake (who closes first, timeouts, when to drop the TCP
//! connection): that is connection state, kept elsewhere.
//!
//! Which codes may appear on the wire: 1000-1003 and 1007-1011 (RFC 6455
//! 7.4.1), 1012-1014 (registered later with IANA: service restart, try
//! again later, bad gateway; real servers and proxies send them, and the
//! current Autobahn suite no longer lists them as invalid), and 3000-4999
//! (libraries/frameworks and private use, 7.4.2). Rejected: 0-999 (unused),
//! 1004 (reserved), 1005, 1006 and 1015 (only for reporting locally, never
//! sent, 7.4.1), 1016-2999 (reserved for future RFCs; a code we do not know
//! cannot be acted on) and 5000 and above (not defined).

use super::error::{WsError, MAX_CLOSE_REASON_LEN};
use super::frame::{encode_header, OpCode, MAX_SERVER_HEADER_LEN};

/// The longest close frame the server sends: 2 header bytes, 2 code bytes,
/// 123 reason bytes.
pub const MAX_CLOSE_FRAME_LEN: usize = 2 + 2 + MAX_CLOSE_REASON_LEN;

/// True if `code` may be carried by a close frame on the wire (see the
/// module docs for the exact set and why).
pub const fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Validates an (unmasked) close frame payload.
///
/// Returns `Ok(None)` for an empty payload (no status code, which the
/// receiver reports as 1005), `Ok(Some((code, reason)))` otherwise, or:
/// a 1-byte payload → [`WsError::CloseFrameOneByte`] (1002); a code that may
/// not be sent → [`WsError::InvalidCloseCode`] (1002); a reason that is not
/// UTF-8 → [`WsError::InvalidCloseReasonUtf8`] (1007). The payload length
/// itself (at most 125) is checked by the frame header parser.
pub fn parse_close_payload(p: &[u8]) -> Result<Option<(u16, &str)>, WsError> {
    match p {
        [] => Ok(None),
        [_] => Err(WsError::CloseFrameOneByte),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(WsError::InvalidCloseCode(code));
            }
            let reason =
                core::str::from_utf8(reason).map_err(|_| WsError::InvalidCloseReasonUtf8)?;
            Ok(Some((code, reason)))
        }
    }
}

/// The code a close frame without a payload stands for (RFC 6455 §7.1.5: the peer sees 1005).
/// Never on the wire; handed to [`crate::proto::conn::Conn::close`] (or a dialect's
/// `Output::Close`) it sends that empty close frame.
pub const NO_STATUS: u16 = 1005;

/// Writes a complete unmasked close frame with `code` and `reason` to the
/// start of `out` and returns its length. The reason is cut at a character
/// boundary so that it fits both the 123 bytes a close frame allows and
/// `out`; pass a `[u8; MAX_CLOSE_FRAME_LEN]` to never cut it for space.
///
/// `code` should satisfy [`is_valid_close_code`] (checked in debug builds);
/// to close without a status code, send an empty close frame with
/// [`encode_frame`](super::frame::encode_frame) instead.
///
/// # Panics
///
/// If `out` is shorter than 4 bytes (header and code), a caller bug.
pub fn encode_close(code: u16, reason: &str, out: &mut [u8]) -> usize {
    debug_assert!(
        is_valid_close_code(code),
        "close code {code} may not be sent"
    );
    assert!(out.len() >= 4, "encode_close: output shorter than 4 bytes");
    let room = (out.len() - 4).min(MAX_CLOSE_REASON_LEN);
    let reason = truncate_to_char_boundary(reason, room);
    let payload_len = 2 + reason.len();

    let mut header = [0u8; MAX_SERVER_HEADER_LEN];
    // payload_len <= 125, so the header is the 2-byte form.
    let h = encode_header(true, OpCode::Close, payload_len as u64, &mut header);
    let total = h + payload_len;
    // total = 2 + 2 + reason.len() <= 4 + room <= out.len().
    out[..h].copy_from_slice(&header[..h]);
    out[h..h + 2].copy_from_slice(&code.to_be_bytes());
    out[h + 2..total].copy_from_slice(reason.as_bytes());
    total
}

/// The longest prefix of `s` that is at most `max` bytes and ends on a
/// character boundary.
fn truncate_to_char_boundary(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    // Index 0 is always a boundary, so the loop ends; a UTF-8 character is
    // at most 4 bytes, so it runs at most 4 times.
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    // `end` is a char boundary no greater than `s.len()`.
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_codes() {
        // Autobahn 7.7.x valid codes and 7.9.x invalid ones.
        for c in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(is_valid_close_code(c), "{c}");
        }
        for c in [
            0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_close_code(c), "{c}");
        }
        // Our documented choices beyond RFC 6455.
        for c in [1012, 1013, 1014] {
            assert!(is_valid_close_code(c), "{c}");
        }
        assert!(!is_valid_close_code(1015));
    }

    #[test]
    fn close_empty_payload_has_no_status() {
        assert_eq!(parse_close_payload(&[]), Ok(None));
    }

    #[test]
    fn close_one_byte_payload() {
        let e = parse_close_payload(&[0x03]).unwrap_err();
        assert_eq!(e, WsError::CloseFrameOneByte);
        assert_eq!(e.close_code(), 1002);
    }

    #[test]
    fn close_code_1005_rejected() {
        let e = parse_close_payload(&[0x03, 0xED]).unwrap_err();
        assert_eq!(e, WsError::InvalidCloseCode(1005));
        assert_eq!(e.close_code(), 1002);
    }

    #[test]
    fn close_reason_invalid_utf8() {
        // Autobahn 7.5.1: code 1000 and a reason with a surrogate.
        let mut p = vec![0x03, 0xE8];
        p.extend_from_slice(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited");
        let e = parse_close_payload(&p).unwrap_err();
        assert_eq!(e, WsError::InvalidCloseReasonUtf8);
        assert_eq!(e.close_code(), 1007);
    }

    #[test]
    fn close_with_reason_parses() {
        assert_eq!(
            parse_close_payload(b"\x0f\xa0bye \xe2\x82\xac"),
            Ok(Some((4000, "bye €")))
        );
    }

    #[test]
    fn encode_close_roundtrip() {
        let mut out = [0u8; MAX_CLOSE_FRAME_LEN];
        let n = encode_close(1001, "going away", &mut out);
        assert_eq!(&out[..4], &[0x88, 12, 0x03, 0xE9]);
        assert_eq!(n, 14);
        assert_eq!(
            parse_close_payload(&out[2..n]),
            Ok(Some((1001, "going away")))
        );
    }

    #[test]
    fn encode_close_truncates_reason_at_char_boundary() {
        // 61 two-byte characters = 122 bytes, then a 3-byte one that would
        // end at byte 125 > 123: it must be dropped whole.
        let reason: String = "é".repeat(61) + "€";
        let mut out = [0u8; MAX_CLOSE_FRAME_LEN];
        let n = encode_close(1000, &reason, &mut out);
        assert_eq!(n, 4 + 122);
        let (code, r) = parse_close_payload(&out[2..n]).unwrap().unwrap();
        assert_eq!((code, r), (1000, "é".repeat(61).as_str()));

        // And to fit a small output buffer.
        let mut small = [0u8; 7];
        let n = encode_close(1000, "ééé", &mut small);
        assert_eq!(n, 6);
        assert_eq!(parse_close_payload(&small[2..n]), Ok(Some((1000, "é"))));

        // A reason of exactly 123 ASCII bytes is kept whole.
        let r = "x".repeat(123);
        let n = encode_close(1000, &r, &mut out);
        assert_eq!(n, MAX_CLOSE_FRAME_LEN);
        assert_eq!(out[1], 125);
    }
}
