//! The load tool's own minimal WebSocket client codec, independent of the server's: the
//! upgrade request and the check of its 101 answer, masked client frames (word-at-a-time
//! mask), and a parser for the server's unmasked frames. Pure functions over byte slices; every
//! malformed input is an `Err`, never a panic.

use base64::Engine;
use sha1::{Digest, Sha1};

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Largest frame the client accepts from the server.
pub const MAX_FRAME: u64 = 64 << 20;
/// Largest response head accepted for the upgrade.
pub const MAX_HEAD: usize = 8192;

/// A tiny xorshift generator for mask keys and handshake nonces (not cryptographic: a load
/// generator needs unpredictable-enough masks, not secrecy).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The request head and the `Sec-WebSocket-Accept` value the answer must carry.
pub fn upgrade_request(host: &str, path: &str, rng: &mut Rng) -> (Vec<u8>, String) {
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    nonce[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
    let key = base64::engine::general_purpose::STANDARD.encode(nonce);
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    (req.into_bytes(), accept_for(&key))
}

pub fn accept_for(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Outcome of reading the upgrade answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Upgrade {
    /// Need more bytes.
    Partial,
    /// 101 with the right accept key; the head was this many bytes (frames may follow).
    Done(usize),
    /// Any other status (the answer is a refusal by the server).
    Status(u16),
    /// Not a valid answer.
    Invalid(&'static str),
}

pub fn parse_upgrade(buf: &[u8], accept: &str) -> Upgrade {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            Upgrade::Invalid("response head too large")
        }
        Ok(httparse::Status::Partial) => Upgrade::Partial,
        Err(_) => Upgrade::Invalid("malformed response head"),
        Ok(httparse::Status::Complete(n)) => {
            let code = resp.code.unwrap_or(0);
            if code != 101 {
                return Upgrade::Status(code);
            }
            let ok = resp.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("sec-websocket-accept") && h.value == accept.as_bytes()
            });
            if ok {
                Upgrade::Done(n)
            } else {
                Upgrade::Invalid("wrong Sec-WebSocket-Accept")
            }
        }
    }
}

/// XOR `data` with the 4-byte `key`, eight bytes at a time.
pub fn mask(data: &mut [u8], key: [u8; 4]) {
    let k8 = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ k8).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// Append one masked, final frame with `payload` to `out`.
pub fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], rng: &mut Rng) {
    encode_header(out, opcode, payload.len(), 0x80);
    let key = (rng.next_u64() as u32).to_ne_bytes();
    out.extend_from_slice(&key);
    let start = out.len();
    out.extend_from_slice(payload);
    mask(&mut out[start..], key);
}

/// An unmasked (server-style) frame: what the raw TCP baseline sends, so that a byte-copying
/// forwarder delivers frames the receiving side parses like a server's.
pub fn encode_unmasked(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    encode_header(out, opcode, payload.len(), 0);
    out.extend_from_slice(payload);
}

fn encode_header(out: &mut Vec<u8>, opcode: u8, len: usize, mask_bit: u8) {
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xffff {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// A close frame with `code` and no reason.
pub fn encode_close(out: &mut Vec<u8>, code: u16, rng: &mut Rng) {
    encode_frame(out, OP_CLOSE, &code.to_be_bytes(), rng);
}

/// One parsed server frame: where its payload lies in the buffer given to `parse_frame`.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: std::ops::Range<usize>,
}

/// Parse one frame from the front of `buf`: `Ok(None)` if incomplete, `Err` on a violation.
pub fn parse_frame(buf: &[u8]) -> Result<Option<Frame>, &'static str> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err("RSV bits set");
    }
    if b1 & 0x80 != 0 {
        return Err("masked frame from the server");
    }
    let opcode = b0 & 0x0f;
    let fin = b0 & 0x80 != 0;
    if !matches!(
        opcode,
        OP_CONT | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return Err("unknown opcode");
    }
    let (len, head) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (n as u64, 2),
    };
    if opcode >= OP_CLOSE && (len > 125 || !fin) {
        return Err("bad control frame");
    }
    if len > MAX_FRAME {
        return Err("frame too large");
    }
    let end = head + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some(Frame {
        fin,
        opcode,
        payload: head..end,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_of_rfc_example() {
        assert_eq!(
            accept_for("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn fast_mask_matches_bytewise() {
        let key = [1, 0x80, 0xff, 7];
        for len in 0..40 {
            let orig: Vec<u8> = (0..len as u8).collect();
            let mut fast = orig.clone();
            mask(&mut fast, key);
            let slow: Vec<u8> = orig
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            assert_eq!(fast, slow);
        }
    }

    #[test]
    fn frames_round_trip_through_parser_after_unmasking() {
        let mut rng = Rng::new(42);
        for len in [0usize, 5, 125, 126, 65535, 65536] {
            let payload = vec![0xab; len];
            let mut out = Vec::new();
            encode_frame(&mut out, OP_BINARY, &payload, &mut rng);
            // Turn the client frame into a server frame: clear the mask bit, drop the key.
            let head = out.len() - len - 4;
            let key = [out[head], out[head + 1], out[head + 2], out[head + 3]];
            let mut body = out[head + 4..].to_vec();
            mask(&mut body, key);
            let mut server = out[..head].to_vec();
            server[1] &= 0x7f;
            server.extend_from_slice(&body);
            let f = parse_frame(&server).unwrap().unwrap();
            assert!(f.fin);
            assert_eq!(f.opcode, OP_BINARY);
            assert_eq!(&server[f.payload], &payload[..]);
            assert_eq!(parse_frame(&server[..server.len() - 1]).unwrap(), None);
        }
        assert!(parse_frame(&[0x82, 0x85]).is_err());
        assert!(parse_frame(&[0x89, 126, 0, 200]).is_err());
        assert!(parse_frame(&[0x82, 127, 0xff, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn upgrade_answers() {
        let accept = accept_for("x");
        let ok =
            format!("HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: {accept}\r\n\r\nXY");
        assert_eq!(
            parse_upgrade(ok.as_bytes(), &accept),
            Upgrade::Done(ok.len() - 2)
        );
        assert_eq!(
            parse_upgrade(&ok.as_bytes()[..20], &accept),
            Upgrade::Partial
        );
        assert_eq!(
            parse_upgrade(b"HTTP/1.1 503 Busy\r\n\r\n", &accept),
            Upgrade::Status(503)
        );
        assert!(matches!(
            parse_upgrade(
                b"HTTP/1.1 101 S\r\nSec-WebSocket-Accept: no\r\n\r\n",
                &accept
            ),
            Upgrade::Invalid(_)
        ));
    }
}
