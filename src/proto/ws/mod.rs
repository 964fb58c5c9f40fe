//! RFC 6455 WebSocket framing for the server side, sans I/O: frame headers,
//! masking, incremental decoding with every protocol check a server owes,
//! UTF-8 validation, close payloads and server frame encoding.
//!
//! This module owns bytes-to-items and items-to-bytes only. It does not do
//! the HTTP upgrade handshake, sockets, timers, ping scheduling, the closing
//! handshake or message reassembly; it never allocates on the decode path
//! and keeps no buffers (the caller's read buffer holds the bytes, see
//! [`Decoder`]). Extensions (permessage-deflate) are not supported, so any
//! RSV bit is a protocol error.
//!
//! Every rule a peer can break is a [`WsError`] variant carrying its close
//! code; nothing here panics on peer input.

mod close;
mod decoder;
mod error;
mod frame;
mod mask;
mod message;
mod utf8;

#[cfg(test)]
mod tests;

pub use close::{
    encode_close, is_valid_close_code, parse_close_payload, MAX_CLOSE_FRAME_LEN, NO_STATUS,
};
pub use decoder::{DataKind, Decoder, DecoderLimits, Item};
pub use error::{
    WsError, CLOSE_INVALID_PAYLOAD, CLOSE_MESSAGE_TOO_BIG, CLOSE_PROTOCOL_ERROR,
    MAX_CLOSE_REASON_LEN,
};
pub use frame::{
    encode_frame, encode_header, FrameHeader, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN,
    MAX_SERVER_HEADER_LEN,
};
pub use mask::{apply_mask, apply_mask_reference};
pub use message::Message;
pub use utf8::{whole_str, Utf8Error, Utf8Validator};
