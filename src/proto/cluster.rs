//! What the nodes of a cluster say to each other: records, batched into one Redis `PUBLISH`
//! per destination node. Pure encoding and decoding (fuzzed by `cluster_records`).
//!
//! A connection lives on the node whose socket holds it (its *edge*); the dialect instance that
//! owns its placement may live on another node (its *owner*). The edge hands the owner what the
//! client did (`Open`, `Body`, `Message`, `Closed`) and the owner hands back what the dialect
//! decided (`Answer`, `Send`, `Close`, `Respond`, `Link`). Two ends of a pipe on different nodes
//! trade `Data`, `Ack` and `End` directly. An instance tells a key's owner something (`Tell`)
//! and an owner answers the instance serving a connection (`Reply`). The cores of one node
//! trade the same records through their mailboxes.
//!
//! Every record names the core it is for: a handle carries its core, the owner's core is known
//! to the edge after the first answer, and an `Open` by key goes to the core that owns the key on
//! the receiving node ([`ANY_CORE`]). Integers are little-endian; strings and byte strings carry
//! their length first.

use crate::proto::dialect::{Answer, Handle, Kind};
use crate::proto::http::Response;
use std::borrow::Cow;

/// An `Open` for whichever core of the receiving node owns its key.
pub const ANY_CORE: u16 = u16::MAX;

/// A pipe end whose writer stopped without a clean close (EOF, error, drop, node gone).
pub const VANISHED: u16 = 0;

/// One record, borrowing its bytes from the batch it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// edge → owner: a request placed on the owner; `head` is the request head as sent.
    Open {
        core: u16,
        edge: Handle,
        route: u8,
        key: Option<&'a str>,
        head: &'a [u8],
    },
    /// owner → edge: the dialect's answer to an `Open` or a `Body`, from the owner's `core`. A
    /// hold's deadline travels as the time left (the nodes' clocks differ).
    Answer {
        to: Handle,
        core: u16,
        answer: Remote,
    },
    /// edge → owner: a whole message from the client.
    Message {
        core: u16,
        from: Handle,
        route: u8,
        kind: Kind,
        payload: &'a [u8],
    },
    /// edge → owner: the body of a request the owner asked to read.
    Body {
        core: u16,
        from: Handle,
        route: u8,
        body: &'a [u8],
    },
    /// edge → owner: the connection is gone (the dialect hears `on_close`).
    Closed { core: u16, from: Handle, route: u8 },
    /// owner → edge: a whole message for the client (`lossy`: see
    /// [`crate::proto::dialect::Output::Send`]).
    Send {
        to: Handle,
        kind: Kind,
        payload: &'a [u8],
        lossy: bool,
    },
    /// owner → edge: close the WebSocket.
    Close {
        to: Handle,
        code: u16,
        reason: &'a str,
    },
    /// owner → edge: the answer to a held request.
    Respond { to: Handle, response: Response },
    /// owner → an end's node: `to` is now piped to `peer`.
    Link { to: Handle, peer: Handle },
    /// pipe end → pipe end: forwarded frame bytes (headers and payload as written on the
    /// wire); `mid_frame` when the writer stopped inside a frame.
    Data {
        to: Handle,
        mid_frame: bool,
        bytes: &'a [u8],
    },
    /// pipe end → pipe end: `n` bytes of `Data` left the receiver's queue (credit returns).
    Ack { to: Handle, n: u32 },
    /// pipe end → pipe end: the writer closed with `code` ([`VANISHED`]: it just went);
    /// `half_frame` when it went inside a frame.
    End {
        to: Handle,
        code: u16,
        half_frame: bool,
    },
    /// instance → the owner of `key` ([`ANY_CORE`], or a known core): `payload` for dialect
    /// `dialect`, on behalf of `from`; `hops` counts how often it was passed on.
    Tell {
        core: u16,
        dialect: u8,
        hops: u8,
        from: Handle,
        key: &'a str,
        payload: &'a [u8],
    },
    /// owner → the instance serving `to`.
    Reply { to: Handle, payload: &'a [u8] },
    /// node → node: records between node `from` and the receiving node may have been lost
    /// (`from`'s publishes failed, or its subscription dropped): the receiver ends every
    /// relationship with `from`, as `from` did. Read by the receiving node's subscriber, never
    /// by a core.
    Reset { from: u16 },
}

/// An [`Answer`] as it crosses nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remote {
    Upgrade,
    Respond(Response),
    ReadBody { max: u64 },
    Hold { left_ms: u64, fallback: Response },
}

impl Remote {
    /// The answer to send for `a`, decided at `now` on the owner's clock.
    pub fn of(a: Answer, now: u64) -> Remote {
        match a {
            Answer::Upgrade => Remote::Upgrade,
            Answer::Respond(r) => Remote::Respond(r),
            Answer::ReadBody { max } => Remote::ReadBody { max: max as u64 },
            Answer::Hold { until_ms, fallback } => Remote::Hold {
                left_ms: until_ms.saturating_sub(now),
                fallback,
            },
        }
    }

    /// The answer on the edge's clock `now`.
    pub fn into_answer(self, now: u64) -> Answer {
        match self {
            Remote::Upgrade => Answer::Upgrade,
            Remote::Respond(r) => Answer::Respond(r),
            Remote::ReadBody { max } => Answer::ReadBody {
                max: usize::try_from(max).unwrap_or(usize::MAX),
            },
            Remote::Hold { left_ms, fallback } => Answer::Hold {
                until_ms: now.saturating_add(left_ms),
                fallback,
            },
        }
    }
}

/// Why a batch could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    Truncated,
    UnknownTag(u8),
    BadValue,
}

const OPEN: u8 = 1;
const ANSWER: u8 = 2;
const MESSAGE: u8 = 3;
const BODY: u8 = 4;
const CLOSED: u8 = 5;
const SEND: u8 = 6;
const CLOSE: u8 = 7;
const RESPOND: u8 = 8;
const LINK: u8 = 9;
const DATA: u8 = 10;
const ACK: u8 = 11;
const END: u8 = 12;
const TELL: u8 = 13;
const REPLY: u8 = 14;
const RESET: u8 = 15;
/// Set in a `Send`'s kind byte when the message is lossy.
const LOSSY: u8 = 0x80;

impl Record<'_> {
    /// The core of the receiving node this record is for ([`ANY_CORE`]: the owner of its key).
    pub fn core(&self) -> u16 {
        use Record::*;
        match self {
            Open { core, .. }
            | Message { core, .. }
            | Body { core, .. }
            | Closed { core, .. }
            | Tell { core, .. } => *core,
            Reset { .. } => ANY_CORE,
            Answer { to, .. }
            | Reply { to, .. }
            | Send { to, .. }
            | Close { to, .. }
            | Respond { to, .. }
            | Link { to, .. }
            | Data { to, .. }
            | Ack { to, .. }
            | End { to, .. } => handle_core(*to),
        }
    }

    /// The connection of the receiving node a record is for (`None`: one the record opens or
    /// one of another node a dialect here holds).
    pub fn to(&self) -> Option<Handle> {
        use Record::*;
        match self {
            Open { .. }
            | Message { .. }
            | Body { .. }
            | Closed { .. }
            | Tell { .. }
            | Reset { .. } => None,
            Answer { to, .. }
            | Reply { to, .. }
            | Send { to, .. }
            | Close { to, .. }
            | Respond { to, .. }
            | Link { to, .. }
            | Data { to, .. }
            | Ack { to, .. }
            | End { to, .. } => Some(*to),
        }
    }

    /// Append the record to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Record::Open {
                core,
                edge,
                route,
                key,
                head,
            } => {
                out.push(OPEN);
                u16_(out, *core);
                u64_(out, edge.raw());
                out.push(*route);
                match key {
                    Some(k) => {
                        out.push(1);
                        str_(out, k);
                    }
                    None => out.push(0),
                }
                bytes_(out, head);
            }
            Record::Answer { to, core, answer } => {
                out.push(ANSWER);
                u64_(out, to.raw());
                u16_(out, *core);
                match answer {
                    Remote::Upgrade => out.push(0),
                    Remote::Respond(r) => {
                        out.push(1);
                        response_(out, r);
                    }
                    Remote::ReadBody { max } => {
                        out.push(2);
                        u64_(out, *max);
                    }
                    Remote::Hold { left_ms, fallback } => {
                        out.push(3);
                        u64_(out, *left_ms);
                        response_(out, fallback);
                    }
                }
            }
            Record::Message {
                core,
                from,
                route,
                kind,
                payload,
            } => {
                out.push(MESSAGE);
                u16_(out, *core);
                u64_(out, from.raw());
                out.push(*route);
                out.push(kind_byte(*kind));
                bytes_(out, payload);
            }
            Record::Body {
                core,
                from,
                route,
                body,
            } => {
                out.push(BODY);
                u16_(out, *core);
                u64_(out, from.raw());
                out.push(*route);
                bytes_(out, body);
            }
            Record::Closed { core, from, route } => {
                out.push(CLOSED);
                u16_(out, *core);
                u64_(out, from.raw());
                out.push(*route);
            }
            Record::Send {
                to,
                kind,
                payload,
                lossy,
            } => {
                out.push(SEND);
                u64_(out, to.raw());
                out.push(kind_byte(*kind) | if *lossy { LOSSY } else { 0 });
                bytes_(out, payload);
            }
            Record::Close { to, code, reason } => {
                out.push(CLOSE);
                u64_(out, to.raw());
                u16_(out, *code);
                str_(out, reason);
            }
            Record::Respond { to, response } => {
                out.push(RESPOND);
                u64_(out, to.raw());
                response_(out, response);
            }
            Record::Link { to, peer } => {
                out.push(LINK);
                u64_(out, to.raw());
                u64_(out, peer.raw());
            }
            Record::Data {
                to,
                mid_frame,
                bytes,
            } => {
                out.push(DATA);
                u64_(out, to.raw());
                out.push(u8::from(*mid_frame));
                bytes_(out, bytes);
            }
            Record::Ack { to, n } => {
                out.push(ACK);
                u64_(out, to.raw());
                out.extend_from_slice(&n.to_le_bytes());
            }
            Record::End {
                to,
                code,
                half_frame,
            } => {
                out.push(END);
                u64_(out, to.raw());
                u16_(out, *code);
                out.push(u8::from(*half_frame));
            }
            Record::Tell {
                core,
                dialect,
                hops,
                from,
                key,
                payload,
            } => {
                out.push(TELL);
                u16_(out, *core);
                out.push(*dialect);
                out.push(*hops);
                u64_(out, from.raw());
                str_(out, key);
                bytes_(out, payload);
            }
            Record::Reply { to, payload } => {
                out.push(REPLY);
                u64_(out, to.raw());
                bytes_(out, payload);
            }
            Record::Reset { from } => {
                out.push(RESET);
                u16_(out, *from);
            }
        }
    }
}

/// Read the first record of `buf`: the record and how many bytes it took.
pub fn decode(buf: &[u8]) -> Result<(Record<'_>, usize), Malformed> {
    let mut r = Reader { buf, at: 0 };
    let rec = r.record()?;
    Ok((rec, r.at))
}

/// The records of a batch, in order; stops at the first malformed one.
pub fn records(mut buf: &[u8]) -> impl Iterator<Item = Result<Record<'_>, Malformed>> {
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        match decode(buf) {
            Ok((rec, used)) => {
                buf = &buf[used..];
                Some(Ok(rec))
            }
            Err(e) => {
                buf = &[];
                Some(Err(e))
            }
        }
    })
}

/// The core bits of a handle (the shell's packing: node 16, core 10, generation 14, key 24).
pub fn handle_core(h: Handle) -> u16 {
    ((h.raw() >> 38) & 0x3ff) as u16
}

/// The node bits of a handle.
pub fn handle_node(h: Handle) -> u16 {
    (h.raw() >> 48) as u16
}

fn kind_byte(k: Kind) -> u8 {
    match k {
        Kind::Text => 1,
        Kind::Binary => 2,
    }
}

fn u16_(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn u64_(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn str_(out: &mut Vec<u8>, s: &str) {
    // Strings here are keys, reasons, header names and values: far below 64 KiB. A longer one
    // is cut at a character boundary rather than written with a wrong length.
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    u16_(out, end as u16);
    out.extend_from_slice(&s.as_bytes()[..end]);
}

fn bytes_(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn response_(out: &mut Vec<u8>, r: &Response) {
    u16_(out, r.status);
    str_(out, &r.content_type);
    u16_(out, r.headers.len().min(usize::from(u16::MAX)) as u16);
    for (name, value) in r.headers.iter().take(usize::from(u16::MAX)) {
        str_(out, name);
        str_(out, value);
    }
    bytes_(out, &r.body);
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.at.checked_add(n).ok_or(Malformed::Truncated)?;
        let b = self.buf.get(self.at..end).ok_or(Malformed::Truncated)?;
        self.at = end;
        Ok(b)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    fn bool(&mut self) -> Result<bool, Malformed> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Malformed::BadValue),
        }
    }

    fn u16(&mut self) -> Result<u16, Malformed> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, Malformed> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn handle(&mut self) -> Result<Handle, Malformed> {
        Ok(Handle::from_raw(self.u64()?))
    }

    fn str(&mut self) -> Result<&'a str, Malformed> {
        let n = usize::from(self.u16()?);
        std::str::from_utf8(self.take(n)?).map_err(|_| Malformed::BadValue)
    }

    fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    /// A message kind with the lossy bit ([`LOSSY`]).
    fn kind_lossy(&mut self) -> Result<(Kind, bool), Malformed> {
        let b = self.u8()?;
        let kind = match b & !LOSSY {
            1 => Kind::Text,
            2 => Kind::Binary,
            _ => return Err(Malformed::BadValue),
        };
        Ok((kind, b & LOSSY != 0))
    }

    fn kind(&mut self) -> Result<Kind, Malformed> {
        match self.u8()? {
            1 => Ok(Kind::Text),
            2 => Ok(Kind::Binary),
            _ => Err(Malformed::BadValue),
        }
    }

    fn response(&mut self) -> Result<Response, Malformed> {
        let status = self.u16()?;
        let content_type = owned(self.str()?);
        let n = self.u16()?;
        let mut headers = Vec::with_capacity(usize::from(n).min(64));
        for _ in 0..n {
            let name = owned(self.str()?);
            headers.push((name, self.str()?.to_string()));
        }
        let body = self.bytes()?.to_vec();
        Ok(Response {
            status,
            content_type,
            headers,
            body,
        })
    }

    fn record(&mut self) -> Result<Record<'a>, Malformed> {
        Ok(match self.u8()? {
            OPEN => {
                let core = self.u16()?;
                let edge = self.handle()?;
                let route = self.u8()?;
                let key = match self.bool()? {
                    true => Some(self.str()?),
                    false => None,
                };
                Record::Open {
                    core,
                    edge,
                    route,
                    key,
                    head: self.bytes()?,
                }
            }
            ANSWER => {
                let to = self.handle()?;
                let core = self.u16()?;
                let answer = match self.u8()? {
                    0 => Remote::Upgrade,
                    1 => Remote::Respond(self.response()?),
                    2 => Remote::ReadBody { max: self.u64()? },
                    3 => Remote::Hold {
                        left_ms: self.u64()?,
                        fallback: self.response()?,
                    },
                    _ => return Err(Malformed::BadValue),
                };
                Record::Answer { to, core, answer }
            }
            MESSAGE => Record::Message {
                core: self.u16()?,
                from: self.handle()?,
                route: self.u8()?,
                kind: self.kind()?,
                payload: self.bytes()?,
            },
            BODY => Record::Body {
                core: self.u16()?,
                from: self.handle()?,
                route: self.u8()?,
                body: self.bytes()?,
            },
            CLOSED => Record::Closed {
                core: self.u16()?,
                from: self.handle()?,
                route: self.u8()?,
            },
            SEND => {
                let to = self.handle()?;
                let (kind, lossy) = self.kind_lossy()?;
                Record::Send {
                    to,
                    kind,
                    lossy,
                    payload: self.bytes()?,
                }
            }
            CLOSE => Record::Close {
                to: self.handle()?,
                code: self.u16()?,
                reason: self.str()?,
            },
            RESPOND => Record::Respond {
                to: self.handle()?,
                response: self.response()?,
            },
            LINK => Record::Link {
                to: self.handle()?,
                peer: self.handle()?,
            },
            DATA => Record::Data {
                to: self.handle()?,
                mid_frame: self.bool()?,
                bytes: self.bytes()?,
            },
            ACK => Record::Ack {
                to: self.handle()?,
                n: self.u32()?,
            },
            END => Record::End {
                to: self.handle()?,
                code: self.u16()?,
                half_frame: self.bool()?,
            },
            TELL => Record::Tell {
                core: self.u16()?,
                dialect: self.u8()?,
                hops: self.u8()?,
                from: self.handle()?,
                key: self.str()?,
                payload: self.bytes()?,
            },
            REPLY => Record::Reply {
                to: self.handle()?,
                payload: self.bytes()?,
            },
            RESET => Record::Reset { from: self.u16()? },
            t => return Err(Malformed::UnknownTag(t)),
        })
    }
}

/// A received name as the server's own static string when it is one (it always is between
/// nodes of one build), else owned.
fn owned(s: &str) -> Cow<'static, str> {
    const KNOWN: &[&str] = &[
        "text/plain",
        "text/plain; charset=utf-8",
        "text/plain; charset=UTF-8",
        "text/html",
        "text/html; charset=utf-8",
        "application/json",
        "application/octet-stream",
        "Access-Control-Allow-Origin",
        "Access-Control-Allow-Credentials",
        "Access-Control-Allow-Methods",
        "Access-Control-Allow-Headers",
        "Access-Control-Max-Age",
        "Allow",
        "Vary",
        "Upgrade",
        "Cache-Control",
        "Set-Cookie",
    ];
    match KNOWN.iter().find(|k| **k == s) {
        Some(k) => Cow::Borrowed(k),
        None => Cow::Owned(s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp() -> Response {
        let mut r = Response::new(200, "application/json", b"{}".to_vec());
        r.headers.push(("Vary".into(), "Origin".into()));
        r.headers.push(("X-Odd".into(), "1".into()));
        r
    }

    fn all() -> Vec<Record<'static>> {
        let h = Handle::from_raw(0x0003_0400_1234_5678);
        vec![
            Record::Open {
                core: ANY_CORE,
                edge: h,
                route: 3,
                key: Some("mew/abc"),
                head: b"GET / HTTP/1.1\r\n\r\n",
            },
            Record::Open {
                core: 1,
                edge: h,
                route: 0,
                key: None,
                head: b"",
            },
            Record::Answer {
                to: h,
                core: 1,
                answer: Remote::Upgrade,
            },
            Record::Answer {
                to: h,
                core: 1,
                answer: Remote::Respond(resp()),
            },
            Record::Answer {
                to: h,
                core: 1,
                answer: Remote::ReadBody { max: 1 << 20 },
            },
            Record::Answer {
                to: h,
                core: 1,
                answer: Remote::Hold {
                    left_ms: 25_000,
                    fallback: resp(),
                },
            },
            Record::Message {
                core: 2,
                from: h,
                route: 1,
                kind: Kind::Binary,
                payload: &[0, 1, 2],
            },
            Record::Body {
                core: 0,
                from: h,
                route: 5,
                body: b"x=1",
            },
            Record::Closed {
                core: 0,
                from: h,
                route: 5,
            },
            Record::Tell {
                core: ANY_CORE,
                dialect: 4,
                hops: 1,
                from: h,
                key: "ih\u{ff}",
                payload: b"\x01announce",
            },
            Record::Reply {
                to: h,
                payload: b"",
            },
            Record::Reset { from: 7 },
            Record::Send {
                to: h,
                kind: Kind::Text,
                payload: b"hi",
                lossy: false,
            },
            Record::Send {
                to: h,
                kind: Kind::Binary,
                payload: b"",
                lossy: true,
            },
            Record::Close {
                to: h,
                code: 4000,
                reason: "bye",
            },
            Record::Respond {
                to: h,
                response: resp(),
            },
            Record::Link { to: h, peer: h },
            Record::Data {
                to: h,
                mid_frame: true,
                bytes: &[0x82, 0x7e],
            },
            Record::Ack { to: h, n: 65536 },
            Record::End {
                to: h,
                code: VANISHED,
                half_frame: true,
            },
        ]
    }

    #[test]
    fn every_record_round_trips_in_one_batch() {
        let recs = all();
        let mut batch = Vec::new();
        for r in &recs {
            r.encode(&mut batch);
        }
        let back: Vec<Record<'_>> = records(&batch).map(Result::unwrap).collect();
        assert_eq!(back, recs);
    }

    #[test]
    fn names_come_back_static_when_known() {
        let mut b = Vec::new();
        Record::Respond {
            to: Handle::from_raw(1),
            response: resp(),
        }
        .encode(&mut b);
        let Ok((Record::Respond { response, .. }, _)) = decode(&b) else {
            panic!("not a respond");
        };
        assert!(matches!(response.content_type, Cow::Borrowed(_)));
        assert!(matches!(response.headers[0].0, Cow::Borrowed(_)));
        assert!(matches!(response.headers[1].0, Cow::Owned(_)));
    }

    #[test]
    fn every_cut_is_truncated_not_a_panic() {
        for r in all() {
            let mut b = Vec::new();
            r.encode(&mut b);
            for cut in 0..b.len() {
                assert_eq!(
                    decode(&b[..cut]).err(),
                    Some(Malformed::Truncated),
                    "{r:?} at {cut}"
                );
            }
        }
        assert_eq!(decode(&[99]).err(), Some(Malformed::UnknownTag(99)));
    }

    #[test]
    fn the_core_of_a_record_comes_from_its_handle() {
        let h = Handle::from_raw((7u64 << 48) | (5u64 << 38) | 42);
        assert_eq!(handle_core(h), 5);
        assert_eq!(handle_node(h), 7);
        assert_eq!(Record::Ack { to: h, n: 1 }.core(), 5);
    }
}
