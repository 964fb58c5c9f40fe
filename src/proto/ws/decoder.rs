//! The incremental server-side frame decoder: turns the bytes a client sent
//! into data chunks and control frames, enforcing every RFC 6455 rule a
//! server must check.
//!
//! This file owns the per-connection decoding state (16 bytes, no buffers;
//! the size limits come with each call) and the rules that span frames:
//! client frames must be masked (5.1), continuation frames only inside a
//! fragmented message and nothing else there but control frames (5.4),
//! frame and message size limits (10.4), UTF-8 of text messages across
//! fragments (8.1) and close payloads (5.5.1). A caller that reads text as
//! `str` may take over the UTF-8 check of messages that come whole in one
//! chunk ([`Decoder::decode_deferring_utf8`]), so that they are checked once.
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

use core::fmt;
use core::ops::Range;

use super::close::parse_close_payload;
use super::error::WsError;
use super::frame::{FrameHeader, OpCode};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;

/// Size limits, checked at each frame header before any payload is read.
///
/// The decoder does not store them: the caller passes them to every
/// [`Decoder::decode`] call (a connection derives them from its
/// configuration each time; that is two integer copies).
///
/// The decoder's 16-byte state stores payload lengths in fewer bits than a
/// `u64`, so it enforces at most [`Self::MAX_FRAME`] and [`Self::MAX_MESSAGE`]:
/// larger values are clamped to these ([`Self::clamped`], applied on every
/// call), and a frame or message over the clamped value fails like one over
/// a configured limit, reporting the clamped value as `max`. Below them the
/// limits are enforced exactly as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderLimits {
    /// The largest payload one data frame may announce.
    pub max_frame: u64,
    /// The largest total payload of one (possibly fragmented) message.
    pub max_message: u64,
}

impl DecoderLimits {
    /// The largest frame limit a decoder enforces: 2^28 - 1 bytes (256 MiB
    /// less one byte). A frame's length and its bytes still to come are
    /// each kept in 28 bits next to the decoder's flags (see [`Decoder`]).
    pub const MAX_FRAME: u64 = LEN_MASK as u64;
    /// The largest message limit a decoder enforces: `u32::MAX` bytes (4 GiB
    /// less one byte); a message's length so far is kept in a `u32`.
    pub const MAX_MESSAGE: u64 = u32::MAX as u64;

    /// These limits as the decoder enforces them: each at most its maximum
    /// above. Every length the decoder stores is at most the clamped limit
    /// that admitted it, so storing it in 28 or 32 bits is exact.
    pub const fn clamped(self) -> Self {
        DecoderLimits {
            max_frame: if self.max_frame < Self::MAX_FRAME {
                self.max_frame
            } else {
                Self::MAX_FRAME
            },
            max_message: if self.max_message < Self::MAX_MESSAGE {
                self.max_message
            } else {
                Self::MAX_MESSAGE
            },
        }
    }
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
    /// once `message_end` arrives (except a whole message in one chunk from
    /// [`Decoder::decode_deferring_utf8`], which the caller checks).
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

/// Per-connection decoding state (see the module docs): 16 bytes, four
/// `u32` words whose meaning depends on whether the decoder has failed.
///
/// | word    | healthy                                       | failed                        |
/// |---------|-----------------------------------------------|-------------------------------|
/// | `mask`  | masking key of the data frame being read      | error's `len`, low 32 bits    |
/// | `msg`   | message length so far                         | error's other field, if any   |
/// | `rem`   | bits 0-27: frame bytes still to come; 28-30: UTF-8 state | error's `len`, high 32 bits |
/// | `frame` | bits 0-27: frame length; 28: FIN, 29: in message, 30: text | bit 31 (failed); 0-7: error code |
///
/// Healthy, the fields are:
///
/// * message length so far: payload bytes announced by the frames of the
///   message in progress, including all of the current frame; at most the
///   clamped `max_message`, so it fits a `u32` (see [`DecoderLimits`]);
/// * frame length: of the data frame being read (or last read), at most the
///   clamped `max_frame`, so it fits in 28 bits; the masking key and FIN
///   are that frame's too;
/// * frame bytes still to come: payload bytes of that frame not yet
///   returned, at most its length; nonzero iff mid-frame;
/// * UTF-8 state: of the text message in progress ([`Utf8Validator`], three
///   bits; 0, a fresh validator, between messages and in binary ones);
/// * in message: a data message has started and not yet ended; text is its
///   kind (meaningless when not in a message).
///
/// Why 28 bits for frames: every chunk reports its frame's length
/// ([`Item::Data`]'s `frame_len`), not only the first, so besides the 4-byte
/// key three lengths must be kept (the frame's, its bytes still to come and
/// the message's so far). Three full `u32`s would fill the 16 bytes and leave
/// nothing for FIN, in message, the kind, the UTF-8 state and the failed flag
/// (7 bits), so the two frame-bounded lengths give up 4 bits each.
///
/// Failed, the words hold the error ([`Decoder::error`]) exactly, so every
/// later call returns an equal value: no field of a [`WsError`] the decoder
/// returns needs more room (a `len` is a `u64`, a `max` a clamped limit, at
/// most `u32::MAX`; the rest are `u8` and `u16`).
///
/// All zeros is a fresh decoder.
#[derive(Clone, Default)]
pub struct Decoder {
    mask: [u8; 4],
    msg: u32,
    rem: u32,
    frame: u32,
}

/// Frame lengths are kept in the low 28 bits of the `rem` and `frame` words
/// (hence [`DecoderLimits::MAX_FRAME`]).
const LEN_BITS: u32 = 28;
const LEN_MASK: u32 = (1 << LEN_BITS) - 1;
/// `frame` word flags.
const FIN: u32 = 1 << 28;
const IN_MESSAGE: u32 = 1 << 29;
const TEXT: u32 = 1 << 30;
/// The decoder has failed; the words hold the error.
const FAILED: u32 = 1 << 31;
/// In a failed decoder, the bits of the `frame` word holding the error code.
const ERROR_CODE: u32 = 0xFF;

impl Decoder {
    /// A decoder at the start of a connection (after the handshake).
    pub const fn new() -> Self {
        Decoder {
            mask: [0; 4],
            msg: 0,
            rem: 0,
            frame: 0,
        }
    }

    /// Mid-frame: payload bytes of the current data frame are outstanding.
    pub const fn in_frame(&self) -> bool {
        !self.failed() && self.remaining() != 0
    }

    /// A data message has started and has not ended yet (a fragmented
    /// message between its frames, or any message mid-frame). Control
    /// frames may arrive meanwhile; new Text/Binary frames may not.
    pub const fn in_message(&self) -> bool {
        self.frame & (FAILED | IN_MESSAGE) == IN_MESSAGE
    }

    /// The error that stopped this decoder, if any.
    pub const fn error(&self) -> Option<WsError> {
        if self.failed() {
            Some(self.stored_error())
        } else {
            None
        }
    }

    /// Decodes the next item from `input`, the caller's unconsumed bytes,
    /// under `limits` (normally the same on every call; see
    /// [`DecoderLimits`]), and returns it with the number of bytes of
    /// `input` it consumed (header and payload bytes covered; the returned
    /// range lies within them). Payload bytes are unmasked in place.
    ///
    /// Call it in a loop, advancing past the consumed bytes each time, until
    /// it returns [`Item::NeedMore`]; then drop the consumed bytes from the
    /// buffer and wait for more.
    ///
    /// On a broken rule it returns the error (whose `close_code()` the
    /// connection should close with) and stays failed: every later call
    /// returns the same error and consumes nothing. Never panics.
    pub fn decode(
        &mut self,
        limits: &DecoderLimits,
        input: &mut [u8],
    ) -> Result<(Item, usize), WsError> {
        self.decode_checking(limits, input, false)
    }

    /// [`Self::decode`], except that a text message whose whole payload comes in one chunk (an
    /// [`Item::Data`] with both `message_start` and `message_end`) is not checked as UTF-8:
    /// the caller checks it, once, with `str::from_utf8`, which also gives it the `str`, and
    /// if it is not UTF-8 calls [`Self::fail_invalid_utf8`] and closes as for any error. Text
    /// in several chunks is checked here as it comes, so that a connection fails at the first
    /// impossible byte as with `decode`.
    pub fn decode_deferring_utf8(
        &mut self,
        limits: &DecoderLimits,
        input: &mut [u8],
    ) -> Result<(Item, usize), WsError> {
        self.decode_checking(limits, input, true)
    }

    /// Fails this decoder with [`WsError::InvalidUtf8`], which it returns: what
    /// [`Self::decode`] would have done with the message the caller found not to be UTF-8
    /// (see [`Self::decode_deferring_utf8`]).
    #[cold]
    pub fn fail_invalid_utf8(&mut self) -> WsError {
        self.fail(WsError::InvalidUtf8);
        WsError::InvalidUtf8
    }

    /// `defer`: whole text messages are left unchecked ([`Self::decode_deferring_utf8`]).
    #[inline]
    fn decode_checking(
        &mut self,
        limits: &DecoderLimits,
        input: &mut [u8],
        defer: bool,
    ) -> Result<(Item, usize), WsError> {
        if self.failed() {
            return Err(self.stored_error());
        }
        let r = self.decode_healthy(&limits.clamped(), input, defer);
        if let Err(e) = r {
            self.fail(e);
        }
        r
    }

    const fn failed(&self) -> bool {
        self.frame & FAILED != 0
    }

    /// Payload bytes of the data frame being read not yet returned.
    const fn remaining(&self) -> u32 {
        self.rem & LEN_MASK
    }

    /// Payload length of the data frame being read.
    const fn frame_len(&self) -> u32 {
        self.frame & LEN_MASK
    }

    /// The kind of the message in progress.
    const fn kind(&self) -> DataKind {
        if self.frame & TEXT != 0 {
            DataKind::Text
        } else {
            DataKind::Binary
        }
    }

    /// [`Self::decode`] on a healthy decoder. On an error the state is left
    /// half updated: the caller replaces it with the error.
    fn decode_healthy(
        &mut self,
        limits: &DecoderLimits,
        input: &mut [u8],
        defer: bool,
    ) -> Result<(Item, usize), WsError> {
        if self.remaining() != 0 {
            return self.data_chunk(input, 0, false, false, defer);
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

        let in_message = self.frame & IN_MESSAGE != 0;
        let message_start = match (header.opcode, in_message) {
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
        let so_far = if message_start { 0 } else { self.msg };
        // `so_far <= max_message` is an invariant (while the limits stay the
        // same), and comparing against the room left avoids overflowing the
        // sum.
        if len > limits.max_message.saturating_sub(u64::from(so_far)) {
            return Err(WsError::MessageTooLarge {
                max: limits.max_message,
            });
        }
        if len != 0 && input.len() == header_len {
            // Header complete but no payload yet: keep it unconsumed (see the
            // module docs) and commit no state.
            return Ok((Item::NeedMore, 0));
        }

        // The casts are exact: `so_far + len <= max_message <= u32::MAX` and
        // `len <= max_frame <= MAX_FRAME < 2^28` (the limits are clamped).
        self.msg = (u64::from(so_far) + len) as u32;
        let len = len as u32;
        self.mask = mask;
        // Between frames nothing remains, so `rem` holds the UTF-8 state
        // alone (fresh at a message start).
        self.rem = (self.rem & !LEN_MASK) | len;
        let text = if message_start {
            header.opcode == OpCode::Text
        } else {
            self.frame & TEXT != 0
        };
        self.frame =
            len | IN_MESSAGE | if header.fin { FIN } else { 0 } | if text { TEXT } else { 0 };
        self.data_chunk(input, header_len, true, message_start, defer)
    }

    /// Returns the payload bytes of the current data frame present in
    /// `input[start..]` (at least one unless the frame is empty or `input`
    /// is exhausted mid-frame), unmasked and UTF-8 checked (unless `defer` and the chunk is a
    /// whole message: see [`Self::decode_deferring_utf8`]).
    #[inline]
    fn data_chunk(
        &mut self,
        input: &mut [u8],
        start: usize,
        frame_start: bool,
        message_start: bool,
        defer: bool,
    ) -> Result<(Item, usize), WsError> {
        // `start` is 0 or a header length that `FrameHeader::parse` found
        // within `input`, so the slice is in bounds; `get_mut` keeps that
        // unprovable step panic-free anyway.
        let Some(rest) = input.get_mut(start..) else {
            return Ok((Item::NeedMore, 0));
        };
        let remaining = self.remaining();
        // At most `rest.len()` (`remaining` fits in usize on every target
        // with 32-bit or wider pointers; else it exceeds `rest.len()`).
        let n = usize::try_from(remaining).map_or(rest.len(), |r| r.min(rest.len()));
        if n == 0 && !frame_start {
            return Ok((Item::NeedMore, 0));
        }
        // `n <= rest.len()`.
        let chunk = &mut rest[..n];
        let frame_len = self.frame_len();
        // Bytes of this frame already returned, mod 4 (the low two bits of
        // the difference survive the cast). `remaining <= frame_len`: both
        // are set equal at the header and `remaining` only decreases.
        let offset = frame_len.wrapping_sub(remaining) as usize;
        apply_mask(chunk, self.mask, offset);
        // `n <= remaining` by the min above, so the cast is exact.
        let remaining = remaining - n as u32;

        let fin = self.frame & FIN != 0;
        let frame_end = remaining == 0;
        let message_end = frame_end && fin;
        let kind = self.kind();
        // The UTF-8 state, in the low bits (the shift leaves 4 bits, of which
        // `from_bits` reads the low 3).
        let mut utf8_bits = self.rem >> LEN_BITS;
        // A whole message left to the caller leaves the state as it found it: fresh.
        if kind == DataKind::Text && !(defer && message_start && message_end) {
            let mut utf8 = Utf8Validator::from_bits(utf8_bits as u8);
            utf8.feed(chunk).map_err(|_| WsError::InvalidUtf8)?;
            if message_end {
                utf8.finish().map_err(|_| WsError::InvalidUtf8)?;
            }
            utf8_bits = u32::from(utf8.to_bits());
        }
        self.rem = remaining | utf8_bits << LEN_BITS;
        if message_end {
            self.frame &= !IN_MESSAGE;
            self.msg = 0;
        }
        Ok((
            Item::Data {
                range: start..start + n,
                kind,
                frame_start,
                frame_end,
                message_start,
                message_end,
                frame_len: u64::from(frame_len),
                fin,
            },
            start + n,
        ))
    }

    /// Enters the failed state, storing `e` so that [`Self::stored_error`]
    /// returns it unchanged.
    #[cold]
    fn fail(&mut self, e: WsError) {
        // (code, the error's small field or `max`, its `len`)
        let (code, aux, len): (u32, u32, u64) = match e {
            WsError::ReservedBitsSet { bits } => (0, u32::from(bits), 0),
            WsError::ReservedOpcode(op) => (1, u32::from(op), 0),
            WsError::UnmaskedClientFrame => (2, 0, 0),
            WsError::LengthMsbSet => (3, 0, 0),
            WsError::ControlFrameTooLong => (4, 0, 0),
            WsError::FragmentedControlFrame => (5, 0, 0),
            WsError::UnexpectedContinuation => (6, 0, 0),
            WsError::ExpectedContinuation => (7, 0, 0),
            // `max` is a clamped limit, at most `u32::MAX`: exact.
            WsError::FrameTooLarge { len, max } => (8, saturate(max), len),
            WsError::MessageTooLarge { max } => (9, saturate(max), 0),
            WsError::InvalidUtf8 => (10, 0, 0),
            WsError::CloseFrameOneByte => (11, 0, 0),
            WsError::InvalidCloseCode(c) => (12, u32::from(c), 0),
            WsError::InvalidCloseReasonUtf8 => (13, 0, 0),
        };
        // The casts keep the low and the high half of `len`.
        self.mask = (len as u32).to_le_bytes();
        self.rem = (len >> 32) as u32;
        self.msg = aux;
        self.frame = FAILED | code;
    }

    /// The error [`Self::fail`] stored. Only meaningful when failed.
    const fn stored_error(&self) -> WsError {
        let aux = self.msg;
        let len = u32::from_le_bytes(self.mask) as u64 | (self.rem as u64) << 32;
        // The `as u8`/`as u16` casts undo `u32::from` in `fail`: exact.
        match self.frame & ERROR_CODE {
            0 => WsError::ReservedBitsSet { bits: aux as u8 },
            1 => WsError::ReservedOpcode(aux as u8),
            2 => WsError::UnmaskedClientFrame,
            3 => WsError::LengthMsbSet,
            4 => WsError::ControlFrameTooLong,
            5 => WsError::FragmentedControlFrame,
            6 => WsError::UnexpectedContinuation,
            7 => WsError::ExpectedContinuation,
            8 => WsError::FrameTooLarge {
                len,
                max: aux as u64,
            },
            9 => WsError::MessageTooLarge { max: aux as u64 },
            10 => WsError::InvalidUtf8,
            11 => WsError::CloseFrameOneByte,
            12 => WsError::InvalidCloseCode(aux as u16),
            // 13, the only code left that `fail` writes.
            _ => WsError::InvalidCloseReasonUtf8,
        }
    }
}

#[cfg(test)]
impl Decoder {
    /// A decoder that has failed with `e`, for tests of the error storage.
    pub(super) fn failed_with(e: WsError) -> Self {
        let mut d = Decoder::new();
        d.fail(e);
        d
    }
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(e) = self.error() {
            return f.debug_tuple("Decoder::Failed").field(&e).finish();
        }
        f.debug_struct("Decoder")
            .field("message_len", &self.msg)
            .field("frame_len", &self.frame_len())
            .field("remaining", &self.remaining())
            .field("mask", &self.mask)
            .field(
                "utf8",
                &Utf8Validator::from_bits((self.rem >> LEN_BITS) as u8),
            )
            .field("fin", &(self.frame & FIN != 0))
            .field("in_message", &self.in_message())
            .field("kind", &self.kind())
            .finish()
    }
}

/// `v` if it fits in a `u32`, else `u32::MAX`.
fn saturate(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}
