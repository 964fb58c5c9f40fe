//! Decoder tests: one per RFC 6455 rule a client can break, length
//! boundaries, interleaving, and split-invariance (the same byte stream cut
//! anywhere decodes to the same frames). Unit tests of the other files sit
//! beside their code.
//!
//! Frames are built with a small test-side client encoder that masks.

use super::*;
use rand::{Rng, RngCore, SeedableRng};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

const BIG: DecoderLimits = DecoderLimits {
    max_frame: 1 << 20,
    max_message: 1 << 20,
};

/// A client frame with a raw first byte (FIN, RSV, opcode), masked with `key`.
fn raw_frame(b0: u8, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![0u8; MAX_HEADER_LEN];
    let opcode = OpCode::from_u8(b0 & 0x0F).unwrap_or(OpCode::Binary);
    let h = FrameHeader {
        fin: true,
        opcode,
        mask: key,
        payload_len: payload.len() as u64,
    };
    let n = h.emit(&mut out);
    out.truncate(n);
    out[0] = b0;
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = key {
        apply_mask_reference(&mut out[start..], key, 0);
    }
    out
}

/// A masked client frame.
fn frame(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    raw_frame(u8::from(fin) << 7 | op.as_u8(), payload, Some(KEY))
}

/// One frame as the decoder reported it, chunks joined.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Data {
        kind: DataKind,
        message_start: bool,
        message_end: bool,
        frame_len: u64,
        payload: Vec<u8>,
    },
    Control {
        opcode: OpCode,
        payload: Vec<u8>,
    },
}

/// Everything decoded from a stream.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    /// Completed frames.
    events: Vec<Ev>,
    /// Payload returned so far of a frame that has not ended.
    partial: Vec<u8>,
    error: Option<WsError>,
    /// `message_start` of that frame's first chunk.
    partial_message_start: bool,
    /// Number of non-NeedMore items (for tests that count chunks).
    items: usize,
}

impl Outcome {
    fn push(&mut self, item: &Item, input: &[u8], consumed: usize) {
        self.items += 1;
        assert!(consumed <= input.len());
        match item {
            Item::NeedMore => unreachable!(),
            Item::Control { opcode, range } => {
                assert!(range.start <= range.end && range.end <= consumed);
                assert!(self.partial.is_empty(), "control frame inside a data frame");
                self.events.push(Ev::Control {
                    opcode: *opcode,
                    payload: input[range.clone()].to_vec(),
                });
            }
            Item::Data {
                range,
                kind,
                frame_start,
                frame_end,
                message_start,
                message_end,
                frame_len,
                fin,
            } => {
                assert!(range.start <= range.end && range.end <= consumed);
                assert!(!message_start || *frame_start);
                assert!(!message_end || *frame_end);
                assert_eq!(*message_end, *frame_end && *fin);
                if *frame_start {
                    assert!(self.partial.is_empty());
                    self.partial_message_start = *message_start;
                } else {
                    assert!(!message_start);
                }
                self.partial.extend_from_slice(&input[range.clone()]);
                if *frame_end {
                    let payload = core::mem::take(&mut self.partial);
                    assert_eq!(payload.len() as u64, *frame_len);
                    self.events.push(Ev::Data {
                        kind: *kind,
                        message_start: self.partial_message_start,
                        message_end: *message_end,
                        frame_len: *frame_len,
                        payload,
                    });
                }
            }
        }
    }
}

/// Feeds `stream` to a fresh decoder in pieces of the given lengths (the
/// rest in one last piece), the way a server's read loop would.
fn decode_pieces(limits: DecoderLimits, stream: &[u8], pieces: &[usize]) -> Outcome {
    let mut dec = Decoder::new();
    let mut out = Outcome::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut piece = pieces.iter();
    loop {
        let n = piece.next().copied().unwrap_or(stream.len() - fed);
        let n = n.min(stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
        let mut at = 0;
        loop {
            match dec.decode(&limits, &mut buf[at..]) {
                Err(e) => {
                    // Poisoned: the same error again, nothing consumed.
                    assert_eq!(dec.decode(&limits, &mut buf[at..]), Err(e));
                    out.error = Some(e);
                    return out;
                }
                Ok((Item::NeedMore, n)) => {
                    assert_eq!(n, 0);
                    break;
                }
                Ok((item, n)) => {
                    out.push(&item, &buf[at..], n);
                    at += n;
                }
            }
        }
        buf.drain(..at);
        if fed == stream.len() {
            return out;
        }
    }
}

fn decode_all(stream: &[u8]) -> Outcome {
    decode_pieces(BIG, stream, &[])
}

fn decode_err(stream: &[u8]) -> WsError {
    let out = decode_all(stream);
    out.error.unwrap_or_else(|| panic!("no error: {out:?}"))
}

fn data(kind: DataKind, start: bool, end: bool, payload: &[u8]) -> Ev {
    Ev::Data {
        kind,
        message_start: start,
        message_end: end,
        frame_len: payload.len() as u64,
        payload: payload.to_vec(),
    }
}

fn control(opcode: OpCode, payload: &[u8]) -> Ev {
    Ev::Control {
        opcode,
        payload: payload.to_vec(),
    }
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

// ---- state size -------------------------------------------------------

#[test]
fn decoder_state_is_at_most_16_bytes() {
    // Every idle WebSocket connection holds one. (Four `u32` words: the
    // same size on every target.)
    let size = core::mem::size_of::<Decoder>();
    println!("Decoder: {size} bytes");
    assert!(size <= 16, "Decoder is {size} bytes");
}

#[test]
fn limits_above_what_the_state_can_hold_are_clamped() {
    let huge = DecoderLimits {
        max_frame: u64::MAX,
        max_message: u64::MAX,
    };
    assert_eq!(
        huge.clamped(),
        DecoderLimits {
            max_frame: (1 << 28) - 1,
            max_message: u32::MAX as u64,
        }
    );
    assert_eq!(BIG.clamped(), BIG);
    let edge = DecoderLimits {
        max_frame: DecoderLimits::MAX_FRAME,
        max_message: DecoderLimits::MAX_MESSAGE,
    };
    assert_eq!(edge.clamped(), edge);
    assert_eq!(huge.clamped(), edge);

    // One byte over the clamped frame limit fails at the header, reporting
    // the limit actually enforced.
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = FrameHeader {
        fin: true,
        opcode: OpCode::Binary,
        mask: Some(KEY),
        payload_len: DecoderLimits::MAX_FRAME + 1,
    }
    .emit(&mut h);
    let mut dec = Decoder::new();
    let e = WsError::FrameTooLarge {
        len: DecoderLimits::MAX_FRAME + 1,
        max: DecoderLimits::MAX_FRAME,
    };
    assert_eq!(dec.decode(&huge, &mut h[..n]), Err(e));
    assert_eq!(dec.decode(&huge, &mut []), Err(e));
}

#[test]
fn largest_frame_keeps_its_length_and_flags_across_chunks() {
    // A frame of MAX_FRAME bytes: its length and the bytes still to come
    // use all the bits they have, right below FIN, in-message and text.
    let limits = DecoderLimits {
        max_frame: u64::MAX,
        max_message: u64::MAX,
    };
    for (fin, opcode) in [(true, OpCode::Text), (false, OpCode::Binary)] {
        let mut stream = vec![0u8; MAX_HEADER_LEN];
        let n = FrameHeader {
            fin,
            opcode,
            mask: Some(KEY),
            payload_len: DecoderLimits::MAX_FRAME,
        }
        .emit(&mut stream);
        stream.truncate(n);
        let mut dec = Decoder::new();
        let mut offset = 0;
        let mut first = true;
        for chunk in [1usize, 3, 1000, 5, 4096] {
            let mut payload = vec![b'a'; chunk];
            apply_mask_reference(&mut payload, KEY, offset);
            offset += chunk;
            let mut input = if first {
                [&stream[..], &payload[..]].concat()
            } else {
                payload
            };
            let (item, used) = dec.decode(&limits, &mut input).unwrap();
            assert_eq!(used, input.len());
            let start = if first { n } else { 0 };
            assert_eq!(
                item,
                Item::Data {
                    range: start..input.len(),
                    kind: if opcode == OpCode::Text {
                        DataKind::Text
                    } else {
                        DataKind::Binary
                    },
                    frame_start: first,
                    frame_end: false,
                    message_start: first,
                    message_end: false,
                    frame_len: DecoderLimits::MAX_FRAME,
                    fin,
                }
            );
            assert!(input[start..].iter().all(|&b| b == b'a'));
            assert!(dec.in_frame() && dec.in_message());
            assert_eq!(dec.error(), None);
            first = false;
        }
    }
}

/// The errors that carry no value.
const FIELDLESS_ERRORS: [WsError; 9] = [
    WsError::UnmaskedClientFrame,
    WsError::LengthMsbSet,
    WsError::ControlFrameTooLong,
    WsError::FragmentedControlFrame,
    WsError::UnexpectedContinuation,
    WsError::ExpectedContinuation,
    WsError::InvalidUtf8,
    WsError::CloseFrameOneByte,
    WsError::InvalidCloseReasonUtf8,
];

#[test]
fn every_error_is_returned_unchanged_by_later_calls() {
    // Each value with its fields at their extremes, stored and read back.
    let mut all = FIELDLESS_ERRORS.to_vec();
    for v in [0u8, 1, 0x7F, 0x80, 0xFF] {
        all.push(WsError::ReservedBitsSet { bits: v });
        all.push(WsError::ReservedOpcode(v));
    }
    for c in [0u16, 1005, 0x8000, u16::MAX] {
        all.push(WsError::InvalidCloseCode(c));
    }
    for max in [0u64, 1, DecoderLimits::MAX_FRAME, u32::MAX as u64] {
        for len in [0u64, 1, 1 << 32, (1 << 63) - 1, u64::MAX] {
            all.push(WsError::FrameTooLarge { len, max });
        }
        all.push(WsError::MessageTooLarge { max });
    }
    for e in all {
        let mut dec = Decoder::failed_with(e);
        assert_eq!(dec.error(), Some(e));
        assert!(!dec.in_frame() && !dec.in_message());
        let mut good = frame(true, OpCode::Text, b"fine");
        assert_eq!(dec.decode(&BIG, &mut good), Err(e));
        assert_eq!(dec.decode(&BIG, &mut []), Err(e));
        assert!(format!("{dec:?}").contains("Failed"));
    }

    // And through decoding: every rule, with a frame error announcing the
    // largest length a header can carry.
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = FrameHeader {
        fin: true,
        opcode: OpCode::Binary,
        mask: Some(KEY),
        payload_len: (1 << 63) - 1,
    }
    .emit(&mut h);
    let limits = DecoderLimits {
        max_frame: 100,
        max_message: u64::MAX,
    };
    let mut dec = Decoder::new();
    let e = WsError::FrameTooLarge {
        len: (1 << 63) - 1,
        max: 100,
    };
    assert_eq!(dec.decode(&limits, &mut h[..n]), Err(e));
    assert_eq!(dec.error(), Some(e));
    assert_eq!(dec.decode(&limits, &mut h[..n]), Err(e));
    for op in [3u8, 7, 0xB, 0xF] {
        let mut dec = Decoder::new();
        let e = dec.decode(&BIG, &mut [0x80 | op, 0x80]).unwrap_err();
        assert_eq!(e, WsError::ReservedOpcode(op));
        assert_eq!(dec.decode(&BIG, &mut []), Err(e));
    }
}

// ---- well-formed traffic ----------------------------------------------

#[test]
fn masked_hello_rfc_example() {
    // RFC 6455 5.7, byte for byte.
    let mut b = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let mut dec = Decoder::new();
    let (item, n) = dec.decode(&BIG, &mut b).unwrap();
    assert_eq!(n, 11);
    assert_eq!(
        item,
        Item::Data {
            range: 6..11,
            kind: DataKind::Text,
            frame_start: true,
            frame_end: true,
            message_start: true,
            message_end: true,
            frame_len: 5,
            fin: true,
        }
    );
    assert_eq!(&b[6..11], b"Hello");
    assert_eq!(dec.decode(&BIG, &mut b[11..]), Ok((Item::NeedMore, 0)));
}

#[test]
fn length_boundaries_125_126_65535_65536() {
    for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let f = frame(true, OpCode::Binary, &payload);
        let hlen = match len {
            0..=125 => 6,
            126..=65535 => 8,
            _ => 14,
        };
        assert_eq!(f.len(), hlen + len);
        let out = decode_all(&f);
        assert_eq!(out.error, None);
        assert_eq!(out.events, [data(DataKind::Binary, true, true, &payload)]);
        assert_eq!(out.items, 1, "one chunk when all bytes are present");
    }
}

#[test]
fn zero_length_frames_produce_data_items() {
    let stream = cat(&[
        frame(false, OpCode::Text, b""),
        frame(false, OpCode::Continuation, b""),
        frame(true, OpCode::Continuation, b""),
        frame(true, OpCode::Binary, b""),
    ]);
    let out = decode_all(&stream);
    assert_eq!(
        out.events,
        [
            data(DataKind::Text, true, false, b""),
            data(DataKind::Text, false, false, b""),
            data(DataKind::Text, false, true, b""),
            data(DataKind::Binary, true, true, b""),
        ]
    );
}

#[test]
fn control_frames_interleaved_in_fragmented_message() {
    let stream = cat(&[
        frame(false, OpCode::Text, "frag€".as_bytes()),
        frame(true, OpCode::Ping, b"p1"),
        frame(false, OpCode::Continuation, b"ment"),
        frame(true, OpCode::Pong, b""),
        frame(true, OpCode::Ping, &[7u8; 125]),
        frame(true, OpCode::Continuation, b"ed"),
        frame(true, OpCode::Close, b"\x03\xe8bye"),
    ]);
    let out = decode_all(&stream);
    assert_eq!(out.error, None);
    assert_eq!(
        out.events,
        [
            data(DataKind::Text, true, false, "frag€".as_bytes()),
            control(OpCode::Ping, b"p1"),
            data(DataKind::Text, false, false, b"ment"),
            control(OpCode::Pong, b""),
            control(OpCode::Ping, &[7u8; 125]),
            data(DataKind::Text, false, true, b"ed"),
            control(OpCode::Close, b"\x03\xe8bye"),
        ]
    );
}

#[test]
fn control_frame_mid_data_frame_payload_is_not_possible_but_between_frames_is() {
    // The decoder is mid-frame after a partial payload; a ping only comes
    // after the frame's last byte.
    let text = frame(true, OpCode::Text, b"abcdef");
    let stream = cat(&[text.clone(), frame(true, OpCode::Ping, b"x")]);
    let out = decode_pieces(BIG, &stream, &[9, 1, 1]);
    assert_eq!(
        out.events,
        [
            data(DataKind::Text, true, true, b"abcdef"),
            control(OpCode::Ping, b"x")
        ]
    );
}

#[test]
fn utf8_character_split_across_fragments_and_chunks_is_valid() {
    let s = "a€𝄞z".as_bytes(); // 1 + 3 + 4 + 1 bytes
    let stream = cat(&[
        frame(false, OpCode::Text, &s[..2]),
        frame(false, OpCode::Continuation, &s[2..5]),
        frame(true, OpCode::Continuation, &s[5..]),
    ]);
    for step in 1..=4 {
        let pieces = vec![step; stream.len()];
        let out = decode_pieces(BIG, &stream, &pieces);
        assert_eq!(out.error, None, "step {step}");
        assert_eq!(out.events.len(), 3);
    }
}

#[test]
fn header_without_payload_consumes_nothing() {
    let mut f = frame(true, OpCode::Binary, b"xyz");
    let mut dec = Decoder::new();
    // Complete header, no payload byte: nothing consumed, nothing committed.
    assert_eq!(dec.decode(&BIG, &mut f[..6]), Ok((Item::NeedMore, 0)));
    assert!(!dec.in_frame() && !dec.in_message());
    // One payload byte: header and that byte.
    let (item, n) = dec.decode(&BIG, &mut f[..7]).unwrap();
    assert_eq!(n, 7);
    assert!(
        matches!(item, Item::Data { ref range, frame_start: true, frame_end: false, .. } if *range == (6..7))
    );
    assert!(dec.in_frame() && dec.in_message());
    // Nothing more available.
    assert_eq!(dec.decode(&BIG, &mut []), Ok((Item::NeedMore, 0)));
    let (item, n) = dec.decode(&BIG, &mut f[7..]).unwrap();
    assert_eq!(n, 2);
    assert!(matches!(
        item,
        Item::Data {
            frame_start: false,
            frame_end: true,
            message_end: true,
            frame_len: 3,
            ..
        }
    ));
    assert!(!dec.in_frame() && !dec.in_message());
    assert_eq!(&f[6..], b"xyz");
}

#[test]
fn incomplete_control_frame_waits_for_all_of_it() {
    let f = frame(true, OpCode::Ping, b"0123456789");
    let mut dec = Decoder::new();
    for cut in 0..f.len() {
        let mut part = f[..cut].to_vec();
        assert_eq!(
            dec.decode(&BIG, &mut part),
            Ok((Item::NeedMore, 0)),
            "cut {cut}"
        );
    }
    let mut whole = f.clone();
    let (item, n) = dec.decode(&BIG, &mut whole).unwrap();
    assert_eq!(n, f.len());
    assert_eq!(
        item,
        Item::Control {
            opcode: OpCode::Ping,
            range: 6..16
        }
    );
    assert_eq!(&whole[6..], b"0123456789");
}

#[test]
fn in_message_tracks_fragmented_messages() {
    let mut dec = Decoder::new();
    let mut f1 = frame(false, OpCode::Binary, b"ab");
    dec.decode(&BIG, &mut f1).unwrap();
    assert!(dec.in_message() && !dec.in_frame());
    let mut p = frame(true, OpCode::Ping, b"");
    dec.decode(&BIG, &mut p).unwrap();
    assert!(dec.in_message());
    let mut f2 = frame(true, OpCode::Continuation, b"cd");
    dec.decode(&BIG, &mut f2).unwrap();
    assert!(!dec.in_message());
    assert_eq!(dec.error(), None);
}

// ---- one test per rule --------------------------------------------------

fn assert_rule(stream: &[u8], expected: WsError, code: u16) {
    let e = decode_err(stream);
    assert_eq!(e, expected);
    assert_eq!(e.close_code(), code);
}

#[test]
fn rsv1_set_is_protocol_error() {
    assert_rule(
        &raw_frame(0xC1, b"x", Some(KEY)),
        WsError::ReservedBitsSet { bits: 0b100 },
        1002,
    );
}

#[test]
fn rsv2_and_rsv3_set_are_protocol_errors() {
    assert_rule(
        &raw_frame(0xA1, b"x", Some(KEY)),
        WsError::ReservedBitsSet { bits: 0b010 },
        1002,
    );
    assert_rule(
        &raw_frame(0x91, b"x", Some(KEY)),
        WsError::ReservedBitsSet { bits: 0b001 },
        1002,
    );
}

#[test]
fn reserved_opcode_is_protocol_error() {
    for op in [3u8, 7, 0xB, 0xF] {
        assert_rule(
            &raw_frame(0x80 | op, b"", Some(KEY)),
            WsError::ReservedOpcode(op),
            1002,
        );
    }
}

#[test]
fn unmasked_client_frame_is_protocol_error() {
    assert_rule(
        &raw_frame(0x81, b"hi", None),
        WsError::UnmaskedClientFrame,
        1002,
    );
    // Control frames too.
    assert_rule(
        &raw_frame(0x89, b"", None),
        WsError::UnmaskedClientFrame,
        1002,
    );
}

#[test]
fn ping_payload_126_is_protocol_error() {
    // Built by hand: FrameHeader::emit would happily write it.
    assert_rule(
        &raw_frame(0x89, &[0u8; 126], Some(KEY)),
        WsError::ControlFrameTooLong,
        1002,
    );
}

#[test]
fn close_payload_126_is_protocol_error() {
    let mut p = vec![0x03, 0xE8];
    p.extend_from_slice(&[b'*'; 124]);
    assert_rule(
        &raw_frame(0x88, &p, Some(KEY)),
        WsError::ControlFrameTooLong,
        1002,
    );
}

#[test]
fn control_too_long_fails_on_the_second_byte() {
    let mut dec = Decoder::new();
    assert_eq!(
        dec.decode(&BIG, &mut [0x8A, 0xFE]),
        Err(WsError::ControlFrameTooLong)
    );
}

#[test]
fn fragmented_ping_is_protocol_error() {
    assert_rule(
        &raw_frame(0x09, b"x", Some(KEY)),
        WsError::FragmentedControlFrame,
        1002,
    );
}

#[test]
fn fragmented_close_is_protocol_error() {
    assert_rule(
        &raw_frame(0x08, b"", Some(KEY)),
        WsError::FragmentedControlFrame,
        1002,
    );
}

#[test]
fn continuation_without_start_is_protocol_error() {
    assert_rule(
        &frame(true, OpCode::Continuation, b"x"),
        WsError::UnexpectedContinuation,
        1002,
    );
    // Also after a complete (unfragmented) message.
    let s = cat(&[
        frame(true, OpCode::Text, b"done"),
        frame(false, OpCode::Continuation, b"x"),
    ]);
    assert_rule(&s, WsError::UnexpectedContinuation, 1002);
}

#[test]
fn text_frame_inside_fragmented_message_is_protocol_error() {
    let s = cat(&[
        frame(false, OpCode::Text, b"a"),
        frame(true, OpCode::Text, b"b"),
    ]);
    assert_rule(&s, WsError::ExpectedContinuation, 1002);
}

#[test]
fn binary_frame_inside_fragmented_message_is_protocol_error() {
    let s = cat(&[
        frame(false, OpCode::Binary, b"a"),
        frame(true, OpCode::Ping, b""),
        frame(false, OpCode::Binary, b"b"),
    ]);
    assert_rule(&s, WsError::ExpectedContinuation, 1002);
}

#[test]
fn invalid_utf8_fails_fast_mid_frame() {
    // A 1000-byte text frame with an invalid byte at payload index 10; only
    // 20 payload bytes have arrived, and the error is reported already.
    let mut payload = vec![b'a'; 1000];
    payload[10] = 0xFF;
    let f = frame(true, OpCode::Text, &payload);
    let mut part = f[..8 + 20].to_vec();
    let mut dec = Decoder::new();
    assert_eq!(dec.decode(&BIG, &mut part), Err(WsError::InvalidUtf8));
    assert_eq!(WsError::InvalidUtf8.close_code(), 1007);

    // Split at every point: the valid prefix may come out in earlier
    // chunks, but never a chunk containing the bad byte.
    for cut in 1..40 {
        let out = decode_pieces(BIG, &f, &[cut]);
        assert_eq!(out.error, Some(WsError::InvalidUtf8));
        assert!(
            out.partial.len() <= 10,
            "cut {cut}: {} bytes",
            out.partial.len()
        );
    }
}

#[test]
fn invalid_utf8_impossible_prefix_fails_at_chunk_end() {
    // ED A0 can only start a surrogate: rejected without waiting for the
    // third byte.
    let f = frame(true, OpCode::Text, b"ab\xed\xa0\x80");
    let mut part = f[..6 + 4].to_vec();
    assert_eq!(
        Decoder::new().decode(&BIG, &mut part),
        Err(WsError::InvalidUtf8)
    );
}

#[test]
fn invalid_utf8_across_fragments() {
    // E2 82 starts a 3-byte character; the next fragment continues with
    // '(' instead of a continuation byte.
    let s = cat(&[
        frame(false, OpCode::Text, b"ok\xe2\x82"),
        frame(true, OpCode::Ping, b""),
        frame(true, OpCode::Continuation, b"(xyz"),
    ]);
    let out = decode_all(&s);
    assert_eq!(out.error, Some(WsError::InvalidUtf8));
    assert_eq!(
        out.events,
        [
            data(DataKind::Text, true, false, b"ok\xe2\x82"),
            control(OpCode::Ping, b"")
        ]
    );
}

#[test]
fn truncated_utf8_at_message_end_is_invalid() {
    let s = cat(&[
        frame(false, OpCode::Text, b"ok\xe2"),
        frame(true, OpCode::Continuation, b"\x82"),
    ]);
    assert_rule(&s, WsError::InvalidUtf8, 1007);
}

#[test]
fn binary_messages_are_not_utf8_checked() {
    let out = decode_all(&frame(true, OpCode::Binary, b"\xff\xfe\xed\xa0"));
    assert_eq!(out.error, None);
}

#[test]
fn close_code_1005_rejected() {
    assert_rule(
        &frame(true, OpCode::Close, &1005u16.to_be_bytes()),
        WsError::InvalidCloseCode(1005),
        1002,
    );
}

#[test]
fn close_code_999_and_5000_rejected() {
    for code in [0u16, 999, 1004, 1006, 1015, 1016, 2999, 5000, 65535] {
        assert_rule(
            &frame(true, OpCode::Close, &code.to_be_bytes()),
            WsError::InvalidCloseCode(code),
            1002,
        );
    }
}

#[test]
fn close_one_byte_payload() {
    assert_rule(
        &frame(true, OpCode::Close, b"\x03"),
        WsError::CloseFrameOneByte,
        1002,
    );
}

#[test]
fn close_reason_invalid_utf8() {
    assert_rule(
        &frame(true, OpCode::Close, b"\x03\xe8ab\xc0\xaf"),
        WsError::InvalidCloseReasonUtf8,
        1007,
    );
}

#[test]
fn close_without_status_and_with_valid_reason_are_accepted() {
    let s = cat(&[
        frame(true, OpCode::Close, b""),
        frame(
            true,
            OpCode::Close,
            &[&b"\x0b\xb8"[..], "€".as_bytes()].concat(),
        ),
    ]);
    let out = decode_all(&s);
    assert_eq!(out.error, None);
    assert_eq!(out.events.len(), 2);
}

#[test]
fn frame_over_max_rejected_at_header() {
    let limits = DecoderLimits {
        max_frame: 1000,
        max_message: 1 << 20,
    };
    let f = frame(true, OpCode::Binary, &[0u8; 1001]);
    // Only the header is present: rejected before any payload is read.
    let mut header = f[..8].to_vec();
    let e = Decoder::new().decode(&limits, &mut header).unwrap_err();
    assert_eq!(
        e,
        WsError::FrameTooLarge {
            len: 1001,
            max: 1000
        }
    );
    assert_eq!(e.close_code(), 1009);
    // Exactly the limit is fine.
    let ok = decode_pieces(limits, &frame(true, OpCode::Binary, &[0u8; 1000]), &[]);
    assert_eq!(ok.error, None);
}

#[test]
fn huge_announced_frame_rejected_at_header() {
    // A 2^62-byte frame announced by a 14-byte header.
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = FrameHeader {
        fin: true,
        opcode: OpCode::Binary,
        mask: Some(KEY),
        payload_len: 1 << 62,
    }
    .emit(&mut h);
    let e = Decoder::new().decode(&BIG, &mut h[..n]).unwrap_err();
    assert!(matches!(e, WsError::FrameTooLarge { len, .. } if len == 1 << 62));
}

#[test]
fn message_over_max_across_fragments() {
    let limits = DecoderLimits {
        max_frame: 100,
        max_message: 250,
    };
    let ok = cat(&[
        frame(false, OpCode::Binary, &[1; 100]),
        frame(false, OpCode::Continuation, &[2; 100]),
        frame(true, OpCode::Continuation, &[3; 50]),
    ]);
    assert_eq!(decode_pieces(limits, &ok, &[]).error, None);

    let s = cat(&[
        frame(false, OpCode::Binary, &[1; 100]),
        frame(false, OpCode::Continuation, &[2; 100]),
        frame(true, OpCode::Continuation, &[3; 51]),
    ]);
    let out = decode_pieces(limits, &s, &[]);
    assert_eq!(out.error, Some(WsError::MessageTooLarge { max: 250 }));
    assert_eq!(out.error.unwrap().close_code(), 1009);
    assert_eq!(out.events.len(), 2, "rejected at the third header");

    // The count restarts with each message.
    let two = cat(&[
        frame(true, OpCode::Binary, &[1; 100]),
        frame(false, OpCode::Binary, &[1; 100]),
        frame(true, OpCode::Continuation, &[1; 100]),
        frame(true, OpCode::Text, b"x"),
    ]);
    assert_eq!(decode_pieces(limits, &two, &[]).error, None);
}

#[test]
fn len64_msb_set() {
    let mut h = vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0];
    h.extend_from_slice(&KEY);
    assert_rule(&h, WsError::LengthMsbSet, 1002);
    // Reported from the third byte on.
    assert_eq!(
        Decoder::new().decode(&BIG, &mut h[..3]),
        Err(WsError::LengthMsbSet)
    );
}

#[test]
fn decoder_is_poisoned_after_an_error() {
    let mut dec = Decoder::new();
    let mut bad = raw_frame(0xC1, b"x", Some(KEY));
    let e = dec.decode(&BIG, &mut bad).unwrap_err();
    assert_eq!(dec.error(), Some(e));
    let mut good = frame(true, OpCode::Text, b"fine");
    assert_eq!(dec.decode(&BIG, &mut good), Err(e));
    assert_eq!(dec.decode(&BIG, &mut []), Err(e));
    assert!(!dec.in_frame() && !dec.in_message());
}

#[test]
fn error_reasons_fit_a_close_frame() {
    let with_values = [
        WsError::ReservedBitsSet { bits: 0b111 },
        WsError::ReservedOpcode(0xFF),
        WsError::FrameTooLarge {
            len: u64::MAX,
            max: u64::MAX,
        },
        WsError::MessageTooLarge { max: u64::MAX },
        WsError::InvalidCloseCode(u16::MAX),
    ];
    for e in FIELDLESS_ERRORS.into_iter().chain(with_values) {
        let s = e.to_string();
        assert!(s.len() <= MAX_CLOSE_REASON_LEN, "{} bytes: {s}", s.len());
        assert!(matches!(e.close_code(), 1002 | 1007 | 1009));
        // It really fits: encode it as our close frame.
        let mut out = [0u8; MAX_CLOSE_FRAME_LEN];
        let n = encode_close(e.close_code(), &s, &mut out);
        assert_eq!(n, 4 + s.len());
    }
}

// ---- split invariance ---------------------------------------------------

/// A stream mixing every kind of frame and all three length encodings.
fn mixed_stream() -> Vec<u8> {
    let long_text = "ünïcødé €𝄞 ".repeat(12); // > 125 bytes
    cat(&[
        frame(true, OpCode::Text, b"Hello"),
        frame(false, OpCode::Text, &long_text.as_bytes()[..7]),
        frame(true, OpCode::Ping, b"ping!"),
        frame(false, OpCode::Continuation, &long_text.as_bytes()[7..150]),
        frame(true, OpCode::Pong, b""),
        frame(true, OpCode::Continuation, &long_text.as_bytes()[150..]),
        frame(true, OpCode::Binary, &[0xAB; 300]),
        frame(true, OpCode::Binary, b""),
        frame(false, OpCode::Binary, b"\x00\xff"),
        frame(true, OpCode::Continuation, b""),
        frame(true, OpCode::Close, b"\x03\xe8done"),
    ])
}

/// Same as one-shot, modulo what may legitimately differ: an error stream
/// may return part of the failing frame's valid prefix only when split.
fn assert_same_outcome(one: &Outcome, split: &Outcome, what: &str) {
    assert_eq!(one.events, split.events, "{what}");
    assert_eq!(one.error, split.error, "{what}");
    if one.error.is_none() {
        assert_eq!(one.partial, split.partial, "{what}");
    }
}

#[test]
fn split_at_every_point_gives_identical_frames() {
    let stream = mixed_stream();
    let one = decode_all(&stream);
    assert_eq!(one.error, None);
    assert_eq!(one.events.len(), 11);
    for cut in 0..=stream.len() {
        let split = decode_pieces(BIG, &stream, &[cut]);
        assert_same_outcome(&one, &split, &format!("cut {cut}"));
    }
}

#[test]
fn byte_at_a_time_gives_identical_frames() {
    let stream = mixed_stream();
    let one = decode_all(&stream);
    let split = decode_pieces(BIG, &stream, &vec![1; stream.len()]);
    assert_same_outcome(&one, &split, "1-byte pieces");
}

#[test]
fn random_pieces_give_identical_frames() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let stream = mixed_stream();
    let one = decode_all(&stream);
    for _ in 0..300 {
        let pieces: Vec<usize> = (0..200).map(|_| rng.random_range(0..20)).collect();
        let split = decode_pieces(BIG, &stream, &pieces);
        assert_same_outcome(&one, &split, &format!("{pieces:?}"));
    }
}

#[test]
fn error_streams_fail_the_same_way_at_every_split() {
    let streams = [
        // Invalid UTF-8 in the last fragment.
        cat(&[
            frame(false, OpCode::Text, "ok €".as_bytes()),
            frame(true, OpCode::Continuation, b"abc\xed\xa0\x80def"),
        ]),
        // A bad close after valid traffic.
        cat(&[
            frame(true, OpCode::Binary, &[1; 200]),
            frame(true, OpCode::Close, b"\x03\xed"),
        ]),
        // An unmasked frame whose header also breaks a later-byte rule.
        cat(&[
            frame(true, OpCode::Text, b"a"),
            vec![0x82, 0x7F, 0x80, 0, 0],
        ]),
        // Truncated message end.
        cat(&[frame(true, OpCode::Text, b"\xf0\x9f\x98")]),
    ];
    for stream in streams {
        let one = decode_all(&stream);
        assert!(one.error.is_some());
        for cut in 0..=stream.len() {
            let split = decode_pieces(BIG, &stream, &[cut]);
            assert_same_outcome(&one, &split, &format!("cut {cut} of {stream:x?}"));
        }
    }
}

#[test]
fn random_streams_never_panic_and_split_consistently() {
    // Random mutations of a valid stream: whatever the decoder says, it
    // says the same for any split, and it never panics.
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let base = mixed_stream();
    for _ in 0..300 {
        let mut s = base.clone();
        for _ in 0..rng.random_range(1..4) {
            let i = rng.random_range(0..s.len());
            s[i] = rng.random();
        }
        let one = decode_all(&s);
        let pieces: Vec<usize> = (0..100).map(|_| rng.random_range(0..30)).collect();
        assert_same_outcome(&one, &decode_pieces(BIG, &s, &pieces), "mutated");
    }
    // And pure noise.
    for _ in 0..300 {
        let mut s = vec![0u8; rng.random_range(0..64)];
        rng.fill_bytes(&mut s);
        let one = decode_all(&s);
        let split = decode_pieces(BIG, &s, &[1, 2, 3, 4, 5]);
        assert_same_outcome(&one, &split, "noise");
    }
}

// ---- seed corpus for the fuzz targets -----------------------------------

/// Named seed inputs for `fuzz_targets/ws_decoder.rs`. The first byte is
/// the fuzz target's chunk-size selector.
fn decoder_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let with_selector = |sel: u8, s: Vec<u8>| {
        let mut v = vec![sel];
        v.extend(s);
        v
    };
    vec![
        (
            "masked_hello",
            with_selector(0, frame(true, OpCode::Text, b"Hello")),
        ),
        (
            "ping_125_bytes",
            with_selector(3, frame(true, OpCode::Ping, &[b'p'; 125])),
        ),
        (
            "close_no_status",
            with_selector(1, frame(true, OpCode::Close, b"")),
        ),
        (
            "close_1000_reason",
            with_selector(2, frame(true, OpCode::Close, b"\x03\xe8bye")),
        ),
        (
            "fragmented_text_with_ping",
            with_selector(
                5,
                cat(&[
                    frame(false, OpCode::Text, "frag€".as_bytes()),
                    frame(true, OpCode::Ping, b"p"),
                    frame(true, OpCode::Continuation, b"ment"),
                ]),
            ),
        ),
        (
            "binary_126_bytes",
            with_selector(7, frame(true, OpCode::Binary, &[0x5A; 126])),
        ),
        ("mixed_stream", with_selector(13, mixed_stream())),
        (
            "invalid_utf8_surrogate",
            with_selector(4, frame(true, OpCode::Text, b"a\xed\xa0\x80")),
        ),
    ]
}

fn header_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let header = |fin, opcode, mask, payload_len| {
        let mut b = vec![0u8; MAX_HEADER_LEN];
        let n = FrameHeader {
            fin,
            opcode,
            mask,
            payload_len,
        }
        .emit(&mut b);
        b.truncate(n);
        b
    };
    vec![
        ("masked_text_5", header(true, OpCode::Text, Some(KEY), 5)),
        (
            "unmasked_binary_126",
            header(true, OpCode::Binary, None, 126),
        ),
        (
            "masked_binary_65536",
            header(true, OpCode::Binary, Some(KEY), 65536),
        ),
        ("ping_125", header(true, OpCode::Ping, Some(KEY), 125)),
        (
            "continuation_no_fin",
            header(false, OpCode::Continuation, None, 0),
        ),
        ("len64_msb_set", vec![0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]),
        ("rsv1_set", vec![0xC1, 0x00]),
    ]
}

#[test]
fn seed_inputs_decode_as_named() {
    for (name, bytes) in decoder_seeds() {
        let out = decode_all(&bytes[1..]);
        assert_eq!(out.error.is_some(), name.starts_with("invalid"), "{name}");
    }
    for (name, bytes) in header_seeds() {
        let r = FrameHeader::parse(&bytes);
        assert_eq!(
            r.is_err(),
            matches!(name, "len64_msb_set" | "rsv1_set"),
            "{name}"
        );
    }
}

/// Writes the seed corpus next to Cargo.toml. Run on purpose only:
/// `cargo test -- --ignored write_seed_corpus`.
#[test]
#[ignore]
fn write_seed_corpus() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (dir, seeds) in [
        ("ws_decoder", decoder_seeds()),
        ("ws_frame_header", header_seeds()),
    ] {
        let dir = root.join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

#[test]
fn fin_is_known_on_the_first_chunk_of_a_split_frame() {
    // A relay re-emits a frame's header before the whole payload is in: it needs FIN then.
    for fin in [false, true] {
        let mut f = frame(fin, OpCode::Binary, &[9u8; 40]);
        let mut dec = Decoder::new();
        let (item, _) = dec.decode(&BIG, &mut f[..20]).unwrap();
        match item {
            Item::Data {
                frame_start: true,
                frame_end: false,
                message_end: false,
                fin: got,
                ..
            } => assert_eq!(got, fin),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn deferring_leaves_whole_text_to_the_caller_and_checks_the_rest() {
    let limits = DecoderLimits::default();
    let decode = |d: &mut Decoder, bytes: &[u8]| {
        let mut buf = bytes.to_vec();
        d.decode_deferring_utf8(&limits, &mut buf)
            .map(|(item, _)| item)
    };
    // A whole text message, not UTF-8: returned, for the caller to check.
    let mut d = Decoder::new();
    let item = decode(&mut d, &frame(true, OpCode::Text, &[0xff, b'a']));
    assert!(matches!(
        item,
        Ok(Item::Data {
            message_start: true,
            message_end: true,
            ..
        })
    ));
    // It found it was not UTF-8: the decoder fails as `decode` would have.
    assert_eq!(d.fail_invalid_utf8(), WsError::InvalidUtf8);
    assert_eq!(
        decode(&mut d, &frame(true, OpCode::Text, b"ok")),
        Err(WsError::InvalidUtf8)
    );
    // The next message after a whole one starts with a fresh UTF-8 state.
    let mut d = Decoder::new();
    let cut = frame(true, OpCode::Text, &[0xe2, 0x82, 0xac]);
    assert!(decode(&mut d, &frame(true, OpCode::Text, &[0xe2])).is_ok());
    assert!(decode(&mut d, &cut).is_ok());
    // A message in pieces is checked here: a frame cut short (header, mask, two bytes), and fragments.
    let mut d = Decoder::new();
    let bad = frame(true, OpCode::Text, &[b'a', 0xc0, b'b', b'c']);
    assert_eq!(decode(&mut d, &bad[..8]), Err(WsError::InvalidUtf8));
    let mut d = Decoder::new();
    assert!(decode(&mut d, &frame(false, OpCode::Text, b"a")).is_ok());
    let next = frame(true, OpCode::Continuation, &[0xc0]);
    assert_eq!(decode(&mut d, &next), Err(WsError::InvalidUtf8));
}
