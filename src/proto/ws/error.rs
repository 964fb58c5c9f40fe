//! Errors of the WebSocket frame codec: one variant per RFC 6455 rule a peer
//! can break, each mapped to the close status code the server must send.
//!
//! This file owns the error type, its close codes and its `Display` texts
//! (short enough to be sent back as a close reason). It deliberately does not
//! decide what to do on an error (send a close frame, drop the connection):
//! that is the connection layer's job.

use core::fmt;

/// Close code 1002: the peer broke the framing protocol (RFC 6455 7.4.1).
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close code 1007: a message's payload is not consistent with its type,
/// e.g. a text message that is not UTF-8 (RFC 6455 7.4.1).
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
/// Close code 1009: a frame or message is larger than this server accepts
/// (RFC 6455 7.4.1).
pub const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;

/// The longest close reason that fits a close frame: 125 payload bytes less
/// the 2-byte status code (RFC 6455 5.5).
pub const MAX_CLOSE_REASON_LEN: usize = 123;

/// A rule of RFC 6455 (or a configured limit) that the peer's bytes broke.
///
/// Every variant names one rule; [`WsError::close_code`] gives the status
/// code to close the connection with and `Display` gives a reason text of at
/// most [`MAX_CLOSE_REASON_LEN`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WsError {
    /// RSV1, RSV2 or RSV3 is set but no extension was negotiated (5.2).
    /// `bits` holds the three RSV bits, RSV1 being the highest (0b100).
    ReservedBitsSet { bits: u8 },
    /// The opcode is one of the reserved values 0x3-0x7 or 0xB-0xF (5.2).
    ReservedOpcode(u8),
    /// A client-to-server frame has the MASK bit clear (5.1, 5.3).
    UnmaskedClientFrame,
    /// The 64-bit extended payload length has its most significant bit set
    /// (5.2).
    LengthMsbSet,
    /// A control frame announces more than 125 payload bytes (5.5).
    ControlFrameTooLong,
    /// A control frame has FIN clear (5.5).
    FragmentedControlFrame,
    /// A continuation frame arrived while no fragmented message was in
    /// progress (5.4).
    UnexpectedContinuation,
    /// A new Text or Binary frame arrived while a fragmented message was
    /// still in progress; only continuation frames may follow (5.4).
    ExpectedContinuation,
    /// A data frame announces a payload larger than the configured limit
    /// (10.4). Checked at the header, before any payload is read.
    FrameTooLarge { len: u64, max: u64 },
    /// The frames of one message add up to more than the configured limit
    /// (10.4). Checked at each frame header.
    MessageTooLarge { max: u64 },
    /// A text message is not valid UTF-8 (5.6, 8.1).
    InvalidUtf8,
    /// A close frame carries exactly one payload byte: a status code needs
    /// two (5.5.1).
    CloseFrameOneByte,
    /// A close frame carries a status code that may not appear on the wire
    /// (7.4.1, 7.4.2).
    InvalidCloseCode(u16),
    /// A close frame's reason is not valid UTF-8 (5.5.1).
    InvalidCloseReasonUtf8,
}

impl WsError {
    /// The status code to send in the close frame that answers this error.
    pub const fn close_code(&self) -> u16 {
        match self {
            WsError::ReservedBitsSet { .. }
            | WsError::ReservedOpcode(_)
            | WsError::UnmaskedClientFrame
            | WsError::LengthMsbSet
            | WsError::ControlFrameTooLong
            | WsError::FragmentedControlFrame
            | WsError::UnexpectedContinuation
            | WsError::ExpectedContinuation
            | WsError::CloseFrameOneByte
            | WsError::InvalidCloseCode(_) => CLOSE_PROTOCOL_ERROR,
            WsError::InvalidUtf8 | WsError::InvalidCloseReasonUtf8 => CLOSE_INVALID_PAYLOAD,
            WsError::FrameTooLarge { .. } | WsError::MessageTooLarge { .. } => {
                CLOSE_MESSAGE_TOO_BIG
            }
        }
    }
}

impl fmt::Display for WsError {
    /// A short reason text, at most [`MAX_CLOSE_REASON_LEN`] bytes for every
    /// value (the longest, `FrameTooLarge` with two 20-digit numbers, is
    /// well under it; a unit test checks every variant).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WsError::ReservedBitsSet { bits } => {
                write!(
                    f,
                    "RSV bits {bits:#05b} set without an extension (RFC 6455 5.2)"
                )
            }
            WsError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x} (RFC 6455 5.2)"),
            WsError::UnmaskedClientFrame => f.write_str("client frame not masked (RFC 6455 5.1)"),
            WsError::LengthMsbSet => {
                f.write_str("64-bit payload length has its high bit set (RFC 6455 5.2)")
            }
            WsError::ControlFrameTooLong => {
                f.write_str("control frame payload over 125 bytes (RFC 6455 5.5)")
            }
            WsError::FragmentedControlFrame => {
                f.write_str("control frame without FIN (RFC 6455 5.5)")
            }
            WsError::UnexpectedContinuation => {
                f.write_str("continuation frame with no message in progress (RFC 6455 5.4)")
            }
            WsError::ExpectedContinuation => {
                f.write_str("new data frame inside a fragmented message (RFC 6455 5.4)")
            }
            WsError::FrameTooLarge { len, max } => {
                write!(f, "frame payload of {len} bytes exceeds the limit of {max}")
            }
            WsError::MessageTooLarge { max } => {
                write!(f, "message exceeds the limit of {max} bytes")
            }
            WsError::InvalidUtf8 => f.write_str("text message is not valid UTF-8 (RFC 6455 8.1)"),
            WsError::CloseFrameOneByte => {
                f.write_str("close frame with a 1-byte payload (RFC 6455 5.5.1)")
            }
            WsError::InvalidCloseCode(code) => {
                write!(f, "close code {code} may not be sent (RFC 6455 7.4)")
            }
            WsError::InvalidCloseReasonUtf8 => {
                f.write_str("close reason is not valid UTF-8 (RFC 6455 5.5.1)")
            }
        }
    }
}

impl std::error::Error for WsError {}
