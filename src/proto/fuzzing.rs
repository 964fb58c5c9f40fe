//! The fuzz targets' checks, as plain functions of `&[u8]`, so that the libFuzzer binaries in
//! `fuzz/` and the corpus replay test (`tests/fuzz_corpus.rs`) run exactly the same code.
//!
//! Each `check_*` function panics when an invariant fails: that is how a fuzzer learns of a
//! bug, so unlike the rest of the library these functions are *meant* to panic (never on
//! valid-but-odd input, only on a broken invariant of the code under test). Compiled only with
//! the `fuzzing` feature (which the fuzz crate and this crate's own tests turn on) and hidden
//! from the docs. See `fuzz/README.md` for the targets and how to run them.

use crate::proto::http::{
    parse_request, validate_upgrade, write_response, write_switching_protocols, ChunkedDecoder,
    HttpLimits,
};
use crate::proto::ws::{
    parse_close_payload, DataKind, Decoder, DecoderLimits, FrameHeader, Item, OpCode, WsError,
    MAX_CLOSE_REASON_LEN, MAX_HEADER_LEN,
};

mod cevitxe_intro;
mod cluster_records;
mod conn_ops;
mod eio_packets;
pub(crate) mod eio_session;
mod httpapi;
mod ice_provider;
mod mewconnect;
mod msgpack_decode;
mod peerjs;
mod peerolator;
mod pipe_table;
mod proxy_header;
mod rawjson;
mod webtorrent;
mod workspaces_tokens;
mod ywebrtc;

pub use cevitxe_intro::{
    check_cevitxe_intro, decode_intro_ops, encode_intro_ops, Format, IntroMsg, IntroOp, Payload,
};
pub use cluster_records::check_cluster_records;
pub use conn_ops::{check_conn_ops, decode_ops, encode_ops, trace_conn_ops, Bytes, Op, Setup};
pub use eio_packets::check_eio_packets;
pub use eio_session::{check_eio_session, decode_eio_ops, encode_eio_ops, menu as eio_menu, EioOp};
pub use httpapi::{check_httpapi, decode_api_ops, encode_api_ops, ApiOp, ApiSetup};
pub use ice_provider::{check_ice_provider, encode_ice_input};
pub use mewconnect::{
    check_mewconnect, decode_mew_ops, encode_mew_ops, offer_data as mewconnect_offer_data,
    ActionMsg, MewMsg, MewOp, MewSetup,
};
pub use msgpack_decode::check_msgpack_decode;
pub use peerjs::check_peerjs;
pub use peerolator::{check_peerolator, decode_peer_ops, encode_peer_ops, PeerMsg, PeerOp};
pub use pipe_table::{check_pipe_table, decode_pipe_ops, encode_pipe_ops, PipeOp, PipeSetup};
pub use proxy_header::check_proxy_header;
pub use rawjson::check_rawjson;
pub use webtorrent::check_webtorrent;
pub use workspaces_tokens::check_workspaces_tokens;
pub use ywebrtc::check_ywebrtc;

/// A frame's payload as the shell hands it on: text if it is UTF-8 (a text frame could be
/// nothing else), else binary.
pub(crate) fn as_message(payload: &[u8]) -> crate::proto::dialect::Message<'_> {
    use crate::proto::dialect::Message;
    match std::str::from_utf8(payload) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Binary(payload),
    }
}

/// Runs `f` with the context a shell would give a dialect's table at `now` (randomness seeded
/// with `seed`, no ICE), its outputs going to `out`. (Also for benches that drive a table.)
pub fn with_cx<R>(
    out: &mut crate::proto::dialect::Outputs,
    now: u64,
    seed: u64,
    f: impl FnOnce(&mut crate::proto::dialect::Cx<'_>) -> R,
) -> R {
    use crate::proto::dialect::{Cx, Locator, NoEnv, Seeded};
    let (mut rand, mut env) = (Seeded(seed), NoEnv);
    let mut cx = Cx {
        now,
        unix_ms: 0,
        here: Locator(0),
        rand: &mut rand,
        env: &mut env,
        out,
        direct: None,
    };
    f(&mut cx)
}

/// Hands the tells and replies a table queued back to it (used alone, it owns every key and
/// serves every connection) until none is left; the other outputs stay in `out`. (Also for
/// benches.)
pub fn settle<T>(
    t: &mut T,
    out: &mut crate::proto::dialect::Outputs,
    now: u64,
    seed: u64,
    mut on: impl FnMut(&mut T, &mut crate::proto::dialect::Cx<'_>, crate::proto::dialect::Local),
) {
    loop {
        let local = out.take_local();
        if local.is_empty() {
            return;
        }
        for l in local {
            with_cx(out, now, seed, |cx| on(t, cx, l));
        }
    }
}

// ── http_upgrade ───────────────────────────────────────────────────────────────────────────

/// The request-head parser, upgrade validation, response writers and chunked decoder on
/// arbitrary bytes: parsing is a pure function of the bytes (the exact head parses the same,
/// every shorter prefix is partial), and chunked decoding gives the same result whole and split
/// in two.
pub fn check_http_upgrade(data: &[u8]) {
    // Small limits so the size checks are exercised, not just the syntax.
    let limits = HttpLimits {
        max_header_bytes: 1024,
        max_headers: 16,
    };
    let mut out = Vec::new();
    let body = match parse_request(data, &limits) {
        Ok(Some((head, consumed))) => {
            assert!(consumed <= data.len());
            assert!(consumed <= limits.max_header_bytes);
            assert_eq!(
                parse_request(&data[..consumed], &limits),
                Ok(Some((head.clone(), consumed)))
            );
            assert_eq!(parse_request(&data[..consumed - 1], &limits), Ok(None));
            match validate_upgrade(&head) {
                Ok(accept) => {
                    assert!(accept.iter().all(u8::is_ascii_graphic));
                    write_switching_protocols(&accept, &mut out);
                }
                Err(e) => e.write_response(&mut out),
            }
            write_response(
                200,
                None,
                &[("X-Path", &head.path)],
                head.path.as_bytes(),
                head.keep_alive,
                &mut out,
            );
            if !head.chunked {
                return;
            }
            &data[consumed..]
        }
        Ok(None) => {
            assert!(data.len() < limits.max_header_bytes);
            return;
        }
        Err(e) => {
            e.write_response(&mut out);
            // Also treat the raw input as a chunked body.
            data
        }
    };
    let mut whole = Vec::new();
    let r = ChunkedDecoder::new(4096).feed(body, &mut whole);
    match r {
        Ok(Some(n)) => assert!(n <= body.len()),
        Ok(None) => {}
        Err(e) => e.write_response(&mut out),
    }
    let mid = body.len() / 2;
    let mut d = ChunkedDecoder::new(4096);
    let mut split = Vec::new();
    let r2 = match d.feed(&body[..mid], &mut split) {
        Ok(None) => d.feed(&body[mid..], &mut split).map(|o| o.map(|n| n + mid)),
        other => other,
    };
    assert_eq!(r, r2);
    assert!(whole.len() <= 4096);
    if r.is_ok() {
        assert_eq!(whole, split);
    }
}

// ── ws_frame_header ────────────────────────────────────────────────────────────────────────

/// `FrameHeader::parse` on arbitrary bytes: a parsed header re-emits (unmasked and with its own
/// mask) to bytes that parse back to it, every proper prefix asks for more, and an error shows
/// within three bytes and stays the same for every longer input.
pub fn check_ws_frame_header(data: &[u8]) {
    match FrameHeader::parse(data) {
        Ok(Some((h, n))) => {
            assert!((2..=MAX_HEADER_LEN).contains(&n) && n <= data.len());
            assert_eq!(h.payload_len >> 63, 0);
            if h.opcode.is_control() {
                assert!(h.fin && h.payload_len <= 125);
            }
            // Non-minimal length encodings are accepted, so the canonical form may be shorter
            // than the input's, never longer.
            assert!(h.encoded_len() <= n);
            assert_eq!(FrameHeader::parse(&data[..n]), Ok(Some((h, n))));
            for cut in 0..n {
                assert_eq!(FrameHeader::parse(&data[..cut]), Ok(None));
            }
            for mask in [None, h.mask] {
                let h2 = FrameHeader { mask, ..h };
                let mut out = [0u8; MAX_HEADER_LEN];
                let m = h2.emit(&mut out);
                assert_eq!(m, h2.encoded_len());
                assert_eq!(FrameHeader::parse(&out[..m]), Ok(Some((h2, m))));
                for cut in 0..m {
                    assert_eq!(FrameHeader::parse(&out[..cut]), Ok(None));
                }
            }
        }
        Ok(None) => assert!(data.len() < MAX_HEADER_LEN),
        Err(e) => {
            assert_eq!(e.close_code(), 1002);
            assert!(e.to_string().len() <= MAX_CLOSE_REASON_LEN);
            let first = (0..=data.len())
                .find(|&k| FrameHeader::parse(&data[..k]).is_err())
                .unwrap_or(usize::MAX);
            assert!(first <= 3, "error needed {first} bytes");
            for k in first..=data.len() {
                assert_eq!(FrameHeader::parse(&data[..k]), Err(e));
            }
        }
    }
}

// ── ws_decoder ─────────────────────────────────────────────────────────────────────────────

/// Small limits so that the size rules are reachable.
const DECODER_LIMITS: DecoderLimits = DecoderLimits {
    max_frame: 4096,
    max_message: 8192,
};

#[derive(Debug, PartialEq, Eq)]
enum Ev {
    Data {
        kind: DataKind,
        message_start: bool,
        message_end: bool,
        payload: Vec<u8>,
    },
    Control {
        opcode: OpCode,
        payload: Vec<u8>,
    },
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    events: Vec<Ev>,
    partial: Vec<u8>,
    partial_message_start: bool,
    error: Option<WsError>,
}

impl Outcome {
    fn push(&mut self, item: Item, input: &[u8], consumed: usize) {
        assert!(consumed <= input.len());
        match item {
            Item::NeedMore => panic!("NeedMore is handled by the caller"),
            Item::Control { opcode, range } => {
                assert!(range.start <= range.end && range.end <= consumed);
                assert!(opcode.is_control() && range.len() <= 125);
                assert!(self.partial.is_empty());
                let payload = input[range].to_vec();
                if opcode == OpCode::Close {
                    assert!(parse_close_payload(&payload).is_ok());
                }
                self.events.push(Ev::Control { opcode, payload });
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
                assert!(!message_end || frame_end);
                assert_eq!(message_end, frame_end && fin);
                assert!(frame_len <= DECODER_LIMITS.max_frame);
                if frame_start {
                    assert!(self.partial.is_empty());
                    self.partial_message_start = message_start;
                } else {
                    assert!(!message_start);
                }
                self.partial.extend_from_slice(&input[range]);
                if frame_end {
                    let payload = std::mem::take(&mut self.partial);
                    assert_eq!(payload.len() as u64, frame_len);
                    self.events.push(Ev::Data {
                        kind,
                        message_start: self.partial_message_start,
                        message_end,
                        payload,
                    });
                }
            }
        }
    }
}

/// Decode `stream` fed `chunk` bytes at a time, the way a server read loop does: append,
/// decode until NeedMore, drop the consumed bytes.
fn decode_in_chunks(stream: &[u8], chunk: usize) -> Outcome {
    let mut dec = Decoder::new();
    let mut out = Outcome::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    loop {
        let n = chunk.min(stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
        let mut at = 0;
        loop {
            match dec.decode(&DECODER_LIMITS, &mut buf[at..]) {
                Err(e) => {
                    assert_eq!(dec.decode(&DECODER_LIMITS, &mut buf[at..]), Err(e));
                    assert_eq!(dec.error(), Some(e));
                    out.error = Some(e);
                    return out;
                }
                Ok((Item::NeedMore, n)) => {
                    assert!(n <= buf.len() - at);
                    at += n;
                    break;
                }
                Ok((item, n)) => {
                    out.push(item, &buf[at..], n);
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

/// The server-side `Decoder` on arbitrary client bytes. The first byte picks a chunk size
/// (1-64); the rest is decoded in one piece and in chunks: every range lies within the bytes
/// consumed, a failed decoder keeps returning its error, and both runs see the same frames, the
/// same error and (without an error) the same trailing partial payload.
pub fn check_ws_decoder(data: &[u8]) {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(selector % 64) + 1;
    let whole = decode_in_chunks(stream, stream.len().max(1));
    let split = decode_in_chunks(stream, chunk);
    assert_eq!(whole.events, split.events);
    assert_eq!(whole.error, split.error);
    if whole.error.is_none() {
        assert_eq!(whole.partial, split.partial);
    }
}
