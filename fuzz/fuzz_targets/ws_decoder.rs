//! Fuzz target: the server-side `Decoder` on arbitrary client bytes.
//!
//! The first input byte picks a chunk size (1-64); the rest is the byte
//! stream a client sent. It is decoded twice: in one piece, and fed in
//! chunks the way a server read loop would (append, decode until NeedMore,
//! drop the consumed bytes). Checks: no panic, every range lies within the
//! bytes consumed, consumed never exceeds the input, a failed decoder keeps
//! returning its error, and both runs see the same completed frames, the
//! same error, and (without an error) the same trailing partial payload.
//! It does not check RFC semantics beyond that (the unit tests do).

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigyard::proto::ws::{
    parse_close_payload, DataKind, Decoder, DecoderLimits, Item, OpCode, WsError,
};

/// Small limits so that the size rules are reachable.
const LIMITS: DecoderLimits = DecoderLimits {
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
            Item::NeedMore => unreachable!("handled by the caller"),
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
            } => {
                assert!(range.start <= range.end && range.end <= consumed);
                assert!(!message_end || frame_end);
                assert!(frame_len <= LIMITS.max_frame);
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

fn run(stream: &[u8], chunk: usize) -> Outcome {
    let mut dec = Decoder::new(LIMITS);
    let mut out = Outcome::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    loop {
        let n = chunk.min(stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
        let mut at = 0;
        loop {
            match dec.decode(&mut buf[at..]) {
                Err(e) => {
                    assert_eq!(dec.decode(&mut buf[at..]), Err(e));
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

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(selector % 64) + 1;
    let whole = run(stream, stream.len().max(1));
    let split = run(stream, chunk);
    assert_eq!(whole.events, split.events);
    assert_eq!(whole.error, split.error);
    if whole.error.is_none() {
        assert_eq!(whole.partial, split.partial);
    }
});
