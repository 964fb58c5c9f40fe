//! The `eio_packets` fuzz target: Engine.IO 3 packets ([`decode_packet`]), the v3 polling
//! payload ([`decode_payload`], [`encode_payload`], [`utf16_len`]) and Socket.IO 2 packets
//! ([`decode_sio`]) on arbitrary text (the input bytes, read as UTF-8 with replacement
//! characters where they are not).
//!
//! Checked:
//!
//! * nothing panics;
//! * [`utf16_len`] is what `encode_utf16` counts;
//! * a packet that decodes re-encodes (its canonical text form, binary as `b4<base64>`) to text
//!   that decodes to the same packet;
//! * a payload that decodes splits into non-empty packets, each exactly as long (in UTF-16 code
//!   units) as its length prefix says; [`encode_payload`] of those packets is at most as long as
//!   the input and decodes to the same packets (equal to the input when no length has a leading
//!   zero); a prefix of it decodes only where a packet ends, to the packets before, and is an
//!   error everywhere else (a truncated payload, never a panic);
//! * the input cut at every `\n` into packet texts (any characters, astral ones included)
//!   encodes to a payload that decodes back to exactly those texts;
//! * a Socket.IO packet that decodes (the whole input, or the data of any message packet)
//!   re-encodes to text that decodes to the same packet (JSON numbers compared as `f64`, within
//!   the parser's rounding; an event's arguments are kept as sent, so they compare as text).

use base64::Engine;
use serde_json::Value;

use crate::proto::eio::packet::{
    decode_packet, decode_payload, decode_sio, encode_payload, event_packet, utf16_len, Packet,
    SioPacket,
};

/// The canonical text form of a packet.
fn encode_packet(p: &Packet) -> String {
    match p {
        Packet::Open(d) => format!("0{d}"),
        Packet::Close => "1".into(),
        Packet::Ping(d) => format!("2{d}"),
        Packet::Pong(d) => format!("3{d}"),
        Packet::Message(d) => format!("4{d}"),
        Packet::Binary(b) => format!("b4{}", base64::engine::general_purpose::STANDARD.encode(b)),
        Packet::Upgrade => "5".into(),
        Packet::Noop => "6".into(),
    }
}

/// A Socket.IO packet's text form: type, attachments, namespace (unless `/`), ack id, JSON.
fn encode_sio(p: &SioPacket) -> String {
    if let SioPacket::Event {
        nsp,
        id,
        event,
        args,
    } = p
    {
        // `42[...]` carries the array after the Engine.IO and Socket.IO type digits.
        let array = &event_packet(event, args)[2..];
        let nsp = if nsp == "/" {
            String::new()
        } else {
            format!("{nsp},")
        };
        let id = id.map(|i| i.to_string()).unwrap_or_default();
        return format!("2{nsp}{id}{array}");
    }
    let (t, nsp, id, data) = match p {
        SioPacket::Connect { nsp } => ('0', nsp, None, None),
        SioPacket::Disconnect { nsp } => ('1', nsp, None, None),
        SioPacket::Event { .. } => unreachable!("written above"),
        SioPacket::Ack { nsp, id, data } => ('3', nsp, Some(*id), Some(data)),
        SioPacket::Error { nsp, data } => ('4', nsp, None, Some(data)),
        SioPacket::Binary { nsp } => ('5', nsp, None, None),
    };
    let mut out = String::from(t);
    if t == '5' {
        out.push_str("0-");
    }
    if nsp != "/" {
        out.push_str(nsp);
        out.push(',');
    }
    if let Some(id) = id {
        out.push_str(&id.to_string());
    }
    match data {
        None | Some(Value::Null) => {}
        Some(v) => {
            let json = v.to_string();
            // JSON that starts with a digit would read as (more of) the ack id: a space keeps
            // it apart.
            if json.starts_with(|c: char| c.is_ascii_digit()) {
                out.push(' ');
            }
            out.push_str(&json);
        }
    }
    out
}

/// JSON equality with numbers compared as `f64` (serde_json's default float parsing may be
/// one unit in the last place off, so text → value → text → value need not be exact).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x == y || (x - y).abs() <= x.abs().max(y.abs()) * 1e-15
            } else {
                x == y
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_json(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

fn same_sio(a: &SioPacket, b: &SioPacket) -> bool {
    use SioPacket::*;
    match (a, b) {
        (
            Ack { nsp, id, data },
            Ack {
                nsp: n2,
                id: i2,
                data: d2,
            },
        ) => nsp == n2 && id == i2 && same_json(data, d2),
        (Error { nsp, data }, Error { nsp: n2, data: d2 }) => nsp == n2 && same_json(data, d2),
        _ => a == b,
    }
}

fn check_sio(s: &str) {
    let Some(p) = decode_sio(s) else {
        return;
    };
    match &p {
        SioPacket::Connect { nsp }
        | SioPacket::Disconnect { nsp }
        | SioPacket::Binary { nsp }
        | SioPacket::Event { nsp, .. }
        | SioPacket::Ack { nsp, .. }
        | SioPacket::Error { nsp, .. } => {
            assert!(nsp.starts_with('/') && !nsp.contains(','), "nsp {nsp:?}");
        }
    }
    if let SioPacket::Event { args, .. } = &p {
        for a in args {
            let json: Result<Value, _> = serde_json::from_str(a.get());
            assert!(json.is_ok(), "an argument that is not JSON: {:?}", a.get());
            assert_eq!(a.get().trim(), a.get(), "an argument with blanks around it");
        }
    }
    let text = encode_sio(&p);
    let again =
        decode_sio(&text).unwrap_or_else(|| panic!("{text:?} (from {p:?}) does not decode"));
    assert!(
        same_sio(&p, &again),
        "{p:?} re-encoded as {text:?} reads {again:?}"
    );
}

fn check_packet(s: &str) {
    let Ok(p) = decode_packet(s) else {
        return;
    };
    let text = encode_packet(&p);
    assert_eq!(decode_packet(&text).as_ref(), Ok(&p), "{text:?}");
    if let Packet::Message(m) = &p {
        check_sio(m);
    }
}

/// The byte offsets where each packet of a decoded payload ends.
fn packet_ends(body: &str, parts: &[&str]) -> Vec<usize> {
    let base = body.as_ptr() as usize;
    parts
        .iter()
        .map(|p| p.as_ptr() as usize - base + p.len())
        .collect()
}

fn check_payload(s: &str) {
    let Ok(parts) = decode_payload(s) else {
        return;
    };
    assert!(!parts.is_empty());
    let ends = packet_ends(s, &parts);
    assert_eq!(ends.last(), Some(&s.len()), "the payload is not used up");
    let mut start = 0;
    let mut leading_zero = false;
    for (p, &end) in parts.iter().zip(&ends) {
        assert!(!p.is_empty(), "an empty packet");
        let head = &s[start..end - p.len()];
        let digits = head.strip_suffix(':').expect("a length and a colon");
        let n: usize = digits.parse().expect("a decimal length");
        assert_eq!(n, utf16_len(p), "length {digits} for {p:?}");
        leading_zero |= digits.len() > 1 && digits.starts_with('0');
        start = end;
        check_packet(p);
    }
    let again = encode_payload(parts.iter().copied());
    assert!(again.len() <= s.len());
    assert_eq!(decode_payload(&again).as_deref(), Ok(&parts[..]));
    if !leading_zero {
        assert_eq!(again, s);
    }
    // Prefixes: where a packet ends, the packets before; anywhere else, an error. At most 64
    // cuts (the ends, the character before each, and one inside each packet).
    let mut cuts = Vec::new();
    let mut start = 0;
    for &end in &ends {
        let inner: Vec<usize> = s[start..end]
            .char_indices()
            .map(|(i, _)| start + i)
            .collect();
        cuts.extend([inner[inner.len() / 2], inner[inner.len() - 1], end]);
        start = end;
        if cuts.len() >= 64 {
            break;
        }
    }
    for cut in cuts {
        let r = decode_payload(&s[..cut]);
        match ends.iter().position(|&e| e == cut) {
            Some(i) => assert_eq!(r.as_deref(), Ok(&parts[..=i]), "cut at {cut}"),
            None => assert!(
                r.is_err(),
                "a truncated payload decoded: cut at {cut}: {r:?}"
            ),
        }
    }
}

/// Runs the checks in the module docs on `data`; panics when one fails.
pub fn check_eio_packets(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    let s = &*s;
    assert_eq!(utf16_len(s), s.encode_utf16().count());
    check_packet(s);
    check_sio(s);
    check_payload(s);
    let texts: Vec<&str> = s.split('\n').filter(|t| !t.is_empty()).collect();
    if !texts.is_empty() {
        let body = encode_payload(texts.iter().copied());
        assert_eq!(decode_payload(&body).as_deref(), Ok(&texts[..]), "{body:?}");
        check_payload(&body);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arbitrary_text_does_not_panic() {
        check_eio_packets(b"");
        check_eio_packets(&[0xff; 64]);
        check_eio_packets(&(0..=255).collect::<Vec<u8>>());
        check_eio_packets("18:42[\"m\",\"héllo 😀\"]1:2".as_bytes());
        check_eio_packets("42[\"m\",\"😀\"]\n2probe\nb4AQID\n4 5\n2/chat,7[\"ev\"]".as_bytes());
        check_eio_packets(b"01:2");
        check_eio_packets(b"4 5");
        check_eio_packets(b"2[\"a\",1.7976931348623157e308,5e-324]");
    }
}
