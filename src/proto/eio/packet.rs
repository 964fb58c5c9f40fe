//! Engine.IO 3 packets, the v3 polling payload framing, and Socket.IO 2 packets.
//!
//! An Engine.IO packet is a type digit and its data: `0` open, `1` close, `2` ping, `3` pong,
//! `4` message, `5` upgrade, `6` noop. A polling body (v3 text payload) concatenates packets
//! as `<length>:<packet>`, the length counted in UTF-16 code units (what JavaScript's
//! `String.length` says); a binary packet travels in it as `b<type><base64>`. A Socket.IO
//! packet rides in a message packet: `<type>[<attachments>-][<nsp>,][<ack id>][<json>]`.

use crate::proto::dialect::sio::Raw;
use base64::Engine;
use serde_json::Value;

/// One decoded Engine.IO packet (text data; binary messages are kept apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Open(String),
    Close,
    Ping(String),
    Pong(String),
    Message(String),
    /// A binary message (`b4<base64>` in a payload, or a binary WebSocket frame).
    Binary(Vec<u8>),
    Upgrade,
    Noop,
}

/// Why a packet or payload did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    Empty,
    BadType,
    BadLength,
    BadBase64,
}

/// Decode one packet from its text form (a WebSocket text frame, or one payload entry).
pub fn decode_packet(s: &str) -> Result<Packet, DecodeError> {
    let mut chars = s.chars();
    let t = chars.next().ok_or(DecodeError::Empty)?;
    let data = chars.as_str();
    Ok(match t {
        '0' => Packet::Open(data.to_owned()),
        '1' => Packet::Close,
        '2' => Packet::Ping(data.to_owned()),
        '3' => Packet::Pong(data.to_owned()),
        '4' => Packet::Message(data.to_owned()),
        '5' => Packet::Upgrade,
        '6' => Packet::Noop,
        'b' => {
            // `b<type><base64>`: only binary messages mean anything here.
            let mut rest = data.chars();
            if rest.next() != Some('4') {
                return Err(DecodeError::BadType);
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(rest.as_str())
                .map_err(|_| DecodeError::BadBase64)?;
            Packet::Binary(bytes)
        }
        _ => return Err(DecodeError::BadType),
    })
}

/// Length of `s` in UTF-16 code units.
pub fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// Append `packet` (its full text form, type digit included) to a v3 text payload.
pub fn push_payload(out: &mut String, packet: &str) {
    use std::fmt::Write;
    let _ = write!(out, "{}:{}", utf16_len(packet), packet);
}

/// Encode packets (full text forms) as one v3 text payload.
pub fn encode_payload<'a>(packets: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for p in packets {
        push_payload(&mut out, p);
    }
    out
}

/// Split a v3 text payload into its packets' text forms. Every length must be followed by
/// exactly that many UTF-16 code units; an empty payload is an error.
pub fn decode_payload(body: &str) -> Result<Vec<&str>, DecodeError> {
    if body.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let colon = rest.find(':').ok_or(DecodeError::BadLength)?;
        let digits = &rest[..colon];
        if digits.is_empty() || digits.len() > 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DecodeError::BadLength);
        }
        let n: usize = digits.parse().map_err(|_| DecodeError::BadLength)?;
        let data = &rest[colon + 1..];
        let mut units = 0;
        let mut end = 0;
        for c in data.chars() {
            if units >= n {
                break;
            }
            units += c.len_utf16();
            end += c.len_utf8();
        }
        // A length that ends inside a surrogate pair, or runs past the body, is malformed.
        if units != n || n == 0 {
            return Err(DecodeError::BadLength);
        }
        out.push(&data[..end]);
        rest = &data[end..];
    }
    Ok(out)
}

// ── Socket.IO 2 ───────────────────────────────────────────────────────────────────────────

/// A decoded Socket.IO packet (protocol 4, as spoken by socket.io 2.x).
#[derive(Debug, Clone, PartialEq)]
pub enum SioPacket {
    Connect {
        nsp: String,
    },
    Disconnect {
        nsp: String,
    },
    /// `["event", args...]`: the name, and the arguments as sent.
    Event {
        nsp: String,
        id: Option<u64>,
        event: String,
        args: Vec<Raw>,
    },
    Ack {
        nsp: String,
        id: u64,
        data: Value,
    },
    Error {
        nsp: String,
        data: Value,
    },
    /// Binary events and acks (attachments follow as binary messages): not supported here.
    Binary {
        nsp: String,
    },
}

/// Decode the data of an Engine.IO message as a Socket.IO packet.
pub fn decode_sio(s: &str) -> Option<SioPacket> {
    let b = s.as_bytes();
    let t = *b.first()?;
    // The type is one ASCII digit: every index below then falls on a character boundary.
    if !(b'0'..=b'6').contains(&t) {
        return None;
    }
    let mut i = 1;
    if matches!(t, b'5' | b'6') {
        // `<attachments>-`
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || b.get(i) != Some(&b'-') {
            return None;
        }
        i += 1;
    }
    let mut nsp = "/".to_owned();
    if b.get(i) == Some(&b'/') {
        let end = s[i..].find(',').map_or(s.len(), |p| i + p);
        nsp = s[i..end].to_owned();
        i = (end + 1).min(s.len());
    }
    let id_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let id = if i > id_start {
        Some(s[id_start..i].parse::<u64>().ok()?)
    } else {
        None
    };
    let json = &s[i..];
    if t == b'2' {
        // Only the name is read: the arguments stay as sent, to be relayed unchanged.
        let mut args = Raw::elements(json)?;
        if args.is_empty() {
            return None;
        }
        let event: String = serde_json::from_str(args.remove(0).get()).ok()?;
        return Some(SioPacket::Event {
            nsp,
            id,
            event,
            args,
        });
    }
    let data = if json.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(json).ok()?
    };
    Some(match t {
        b'0' => SioPacket::Connect { nsp },
        b'1' => SioPacket::Disconnect { nsp },
        b'3' => SioPacket::Ack { nsp, id: id?, data },
        b'4' => SioPacket::Error { nsp, data },
        b'5' | b'6' => SioPacket::Binary { nsp },
        _ => return None,
    })
}

/// The Engine.IO message (`4…`) carrying a Socket.IO event to the default namespace.
pub fn event_packet(event: &str, args: &[Raw]) -> String {
    let name = Value::from(event).to_string();
    let len = 4 + name.len() + args.iter().map(|a| a.get().len() + 1).sum::<usize>();
    let mut p = String::with_capacity(len);
    p.push_str("42[");
    p.push_str(&name);
    for a in args {
        p.push(',');
        p.push_str(a.get());
    }
    p.push(']');
    p
}

/// The Engine.IO message carrying a Socket.IO error packet to the default namespace.
pub fn error_packet(data: &Value) -> String {
    format!("44{data}")
}

/// The Socket.IO connect packet for the default namespace.
pub const CONNECT: &str = "40";
/// The Socket.IO disconnect packet for the default namespace.
pub const DISCONNECT: &str = "41";

/// The open packet `0{"sid",...}` of a session.
pub fn open_packet(
    sid: &str,
    websocket_upgrade: bool,
    ping_interval: u64,
    ping_timeout: u64,
) -> String {
    let upgrades = if websocket_upgrade {
        serde_json::json!(["websocket"])
    } else {
        serde_json::json!([])
    };
    let open = serde_json::json!({
        "sid": sid,
        "upgrades": upgrades,
        "pingInterval": ping_interval,
        "pingTimeout": ping_timeout,
    });
    format!("0{open}")
}

/// Engine.IO's error codes for refused requests, with their standard messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EioError {
    UnknownTransport = 0,
    UnknownSid = 1,
    BadHandshakeMethod = 2,
    BadRequest = 3,
    Forbidden = 4,
    UnsupportedProtocolVersion = 5,
}

impl EioError {
    pub fn message(self) -> &'static str {
        match self {
            EioError::UnknownTransport => "Transport unknown",
            EioError::UnknownSid => "Session ID unknown",
            EioError::BadHandshakeMethod => "Bad handshake method",
            EioError::BadRequest => "Bad request",
            EioError::Forbidden => "Forbidden",
            EioError::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    pub fn status(self) -> u16 {
        if self == EioError::Forbidden {
            403
        } else {
            400
        }
    }

    /// The JSON body: `{"code":N,"message":"..."}`.
    pub fn body(self) -> String {
        serde_json::json!({"code": self as u8, "message": self.message()}).to_string()
    }
}
