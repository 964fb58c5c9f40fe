//! The incremental server-side frame decoder: turns the bytes a client sent
//! into data chunks and control frames, enforcing every RFC 6455 rule a
//! server must check.
//!
//! This file owns the per-connection decoding state (48 bytes, no buffers)
//! and the rules that span frames: client frames must be masked (5.1),
//! continuation frames only inside a fragmented message and nothing else
//! there but control frames (5.4), frame and message size limits (10.4),
//! UTF-8 of text messages across fragments (8.1) and close payloads (5.5.1).
//! It deliberately does not own the bytes: the caller keeps its read buffer,
//! passes the unconsumed part to [`Decoder::decode`] and drops what was
//! consumed. It does not answer pings, run the closing handshake or
//! reassemble messages either.
//!
//! Data frames are streamed: each call returns the payload bytes present,
//! unmasked in place in the caller's buffer. Control frames (at most 131
//! bytes on the wire) are returned only once complete in the input, so
//! their payload is always one contiguous range.
//!
//! A frame's header is consumed together with its first payload bytes, so a
//! call never consumes a header alone: when the input holds a complete
//! header but none of a non-empty payload, the call returns
//! [`Item::NeedMore`] and consumes nothing; the header is parsed again with
//! more bytes next time. A zero-length data frame still produces an
//! [`Item::Data`] (with an empty range) so message boundaries are visible.

use core::ops::Range;

use super::close::parse_close_payload;
use super::error::WsError;
use super::frame::{FrameHeader, OpCode};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;

/// Size limits, checked at each frame header before any payload is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderLimits {
    /// The largest payload one data frame may announce.
    pub max_frame: u64,
    /// The largest total payload of one (possibly fragmented) message.
    pub max_message: u64,
}

impl Default for DecoderLimits {
    /// 64 KiB for both: signaling messages (SDP, ICE candidates) are a few
    /// KiB; anything bigger from a client is a mistake or an attack.
    fn default() -> Self {
        DecoderLimits {
            max_frame: 64 * 1024,
            max_message: 64 * 1024,
        }
    }
}

/// The type of a data message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataKind {
    Text,
    Binary,
}

impl DataKind {
    /// The opcode of a message's first frame of this kind.
    pub const fn opcode(self) -> OpCode {
        match self {
            DataKind::Text => OpCode::Text,
            DataKind::Binary => OpCode::Binary,
        }
    }
}

/// What one [`Decoder::decode`] call found. Ranges index the `input` slice
/// of that call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// Nothing more can be decoded until more bytes arrive. The consumed
    /// count returned with it is currently always 0, but callers should
    /// honour it like any other.
    NeedMore,
    /// Payload bytes of a data frame, unmasked in place at `input[range]`.
    /// For text, the bytes are valid UTF-8 so far; a chunk may end or start
    /// in the middle of a character, and the message as a whole is valid
    /// once `message_end` arrives.
    Data {
        range: Range<usize>,
        /// The message's kind (also for continuation frames).
        kind: DataKind,
        /// This chunk starts its frame (the frame header was consumed with it).
        frame_start: bool,
        /// This chunk ends its frame.
        frame_end: bool,
        /// This chunk starts a message (first chunk of a Text/Binary frame).
        message_start: bool,
        /// This chunk ends its message (last chunk of a frame with FIN set).
        message_end: bool,
        /// The total payload length of the frame the chunk belongs to.
        frame_len: u64,
        /// The FIN bit of that frame (known from its header, so also on the
        /// first chunk of a frame that arrives in pieces): what a relay needs
        /// to re-emit the frame's header before its payload is complete.
        fin: bool,
    },
    /// A complete Ping, Pong or Close frame; its payload (at most 125 bytes,
    /// unmasked in place) is `input[range]`. A Close payload has been
    /// validated: read it with [`parse_close_payload`], which cannot fail.
    Control { opcode: OpCode, range: Range<usize> },
}

/// Per-connection decoding state. See the module docs.
#[derive(Debug, Clone)]
pub struct Decoder {
    limits: DecoderLimits,
    state: State,
}

#[derive(Debug, Clone)]
enum State {
    Active(Active),
    /// An error occurred; every later call returns it again.
    Failed(WsError),
}

/// The state of a healthy connection: 32 bytes.
#[derive(Debug, Clone)]
struct Active {
    /// Payload bytes announced so far by the frames of the message in
    /// progress (including all of the current frame). At most
    /// `limits.max_message`.
    message_len: u64,
    /// Payload length of the data frame being read (0 between frames).
    frame_len: u64,
    /// Payload bytes of that frame not yet returned. Nonzero iff mid-frame.
    remaining: u64,
    /// The masking key of the data frame being read.
    mask: [u8; 4],
    /// UTF-8 state of the text message in progress.
    utf8: Utf8Validator,
    /// FIN of the data frame being read.
    fin: bool,
    /// A data message has started and not yet ended. `kind` is its kind and
    /// is meaningless when this is false.
    in_message: bool,
    kind: DataKind,
}

impl Active {
    const fn new() -> Self {
        Active {
            message_len: 0,
            frame_len: 0,
            remaining: 0,
            mask: [0; 4],
            utf8: Utf8Validator::new(),
            fin: false,
            in_message: false,
            kind: DataKind::Binary,
        }
    }
}

impl Decoder {
    /// A decoder at the start of a connection (after the handshake).
    pub const fn new(limits: DecoderLimits) -> Self {
        Decoder {
            limits,
            state: State::Active(Active::new()),
        }
    }

    /// The limits this decoder enforces.
    pub const fn limits(&self) -> DecoderLimits {
        self.limits
    }

    /// Mid-frame: payload bytes of the current data frame are outstanding.
    pub const fn in_frame(&self) -> bool {
        match &self.state {
            State::Active(a) => a.remaining != 0,
            State::Failed(_) => false,
        }
    }

    /// A data message has started and has not ended yet (a fragmented
    /// message between its frames, or any message mid-frame). Control
    /// frames may arrive meanwhile; new Text/Binary frames may not.
    pub const fn in_message(&self) -> bool {
        match &self.state {
            State::Active(a) => a.in_message,
            State::Failed(_) => false,
        }
    }

    /// The error that stopped this decoder, if any.
    pub const fn error(&self) -> Option<WsError> {
        match self.state {
            State::Active(_) => None,
            State::Failed(e) => Some(e),
        }
    }

    /// Decodes the next item from `input`, the caller's unconsumed bytes,
    /// and returns it with the number of bytes of `input` it consumed
    /// (header and payload bytes covered; the returned range lies within
    /// them). Payload bytes are unmasked in place.
    ///
    /// Call it in a loop, advancing past the consumed bytes each time, until
    /// it returns [`Item::NeedMore`]; then drop the consumed bytes from the
    /// buffer and wait for more.
    ///
    /// On a broken rule it returns the error (whose `close_code()` the
    /// connection should close with) and stays failed: every later call
    /// returns the same error and consumes nothing. Never panics.
    pub fn decode(&mut self, input: &mut [u8]) -> Result<(Item, usize), WsError> {
        let active = match &mut self.state {
            State::Active(a) => a,
            State::Failed(e) => return Err(*e),
        };
        match decode_active(active, &self.limits, input) {
            Ok(r) => Ok(r),
            Err(e) => {
                self.state = State::Failed(e);
                Err(e)
            }
        }
    }
}

fn decode_active(
    a: &mut Active,
    limits: &DecoderLimits,
    input: &mut [u8],
) -> Result<(Item, usize), WsError> {
    if a.remaining != 0 {
        return data_chunk(a, input, 0, false, false);
    }

    let Some((header, header_len)) = FrameHeader::parse(input)? else {
        return Ok((Item::NeedMore, 0));
    };
    let Some(mask) = header.mask else {
        return Err(WsError::UnmaskedClientFrame);
    };

    if header.opcode.is_control() {
        // The header parser guarantees payload_len <= 125 here, so the
        // conversion is exact and `end` cannot overflow.
        let end = header_len + header.payload_len as usize;
        let Some(payload) = input.get_mut(header_len..end) else {
            return Ok((Item::NeedMore, 0));
        };
        apply_mask(payload, mask, 0);
        if header.opcode == OpCode::Close {
            parse_close_payload(payload)?;
        }
        return Ok((
            Item::Control {
                opcode: header.opcode,
                range: header_len..end,
            },
            end,
        ));
    }

    let message_start = match (header.opcode, a.in_message) {
        (OpCode::Continuation, false) => return Err(WsError::UnexpectedContinuation),
        (OpCode::Continuation, true) => false,
        (_, true) => return Err(WsError::ExpectedContinuation),
        (_, false) => true,
    };
    let len = header.payload_len;
    if len > limits.max_frame {
        return Err(WsError::FrameTooLarge {
            len,
            max: limits.max_frame,
        });
    }
    let so_far = if message_start { 0 } else { a.message_len };
    // `so_far <= max_message` is an invariant, so this cannot underflow, and
    // comparing against the room left avoids overflowing the sum.
    if len > limits.max_message.saturating_sub(so_far) {
        return Err(WsError::MessageTooLarge {
            max: limits.max_message,
        });
    }
    if len != 0 && input.len() == header_len {
        // Header complete but no payload yet: keep it unconsumed (see the
        // module docs) and commit no state.
        return Ok((Item::NeedMore, 0));
    }

    a.message_len = so_far + len;
    a.frame_len = len;
    a.remaining = len;
    a.mask = mask;
    a.fin = header.fin;
    if message_start {
        a.in_message = true;
        a.kind = if header.opcode == OpCode::Text {
            DataKind::Text
        } else {
            DataKind::Binary
        };
    }
    data_chunk(a, input, header_len, true, message_start)
}

/// Returns the payload bytes of the current data frame present in
/// `input[start..]` (at least one unless the frame is empty or `input` is
/// exhausted mid-frame), unmasked and UTF-8 checked.
fn data_chunk(
    a: &mut Active,
    input: &mut [u8],
    start: usize,
    frame_start: bool,
    message_start: bool,
) -> Result<(Item, usize), WsError> {
    // `start` is 0 or a header length that `FrameHeader::parse` found within
    // `input`, so the slice is in bounds; `get_mut` keeps that unprovable
    // step panic-free anyway.
    let Some(rest) = input.get_mut(start..) else {
        return Ok((Item::NeedMore, 0));
    };
    // The min is at most `rest.len()`, so it fits in usize.
    let n = a.remaining.min(rest.len() as u64) as usize;
    if n == 0 && !frame_start {
        return Ok((Item::NeedMore, 0));
    }
    // `n <= rest.len()`.
    let chunk = &mut rest[..n];
    // Bytes of this frame already returned, mod 4 (the low two bits of the
    // difference survive the truncating cast). `remaining <= frame_len`: both
    // are set equal at the header and `remaining` only decreases.
    let offset = (a.frame_len - a.remaining) as usize;
    apply_mask(chunk, a.mask, offset);
    // `n <= remaining` by the min above.
    a.remaining -= n as u64;

    let frame_end = a.remaining == 0;
    let message_end = frame_end && a.fin;
    let kind = a.kind;
    if kind == DataKind::Text {
        a.utf8.feed(chunk).map_err(|_| WsError::InvalidUtf8)?;
        if message_end {
            a.utf8.finish().map_err(|_| WsError::InvalidUtf8)?;
        }
    }
    if message_end {
        a.in_message = false;
        a.message_len = 0;
    }
    Ok((
        Item::Data {
            range: start..start + n,
            kind,
            frame_start,
            frame_end,
            message_start,
            message_end,
            frame_len: a.frame_len,
            fin: a.fin,
        },
        start + n,
    ))
}
