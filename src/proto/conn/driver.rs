//! A small driver of [`Conn`] for the tests and fuzzers: it runs the machine's steps to the
//! end the way the shell does, with the decisions taken by a [`Decide`], and reports what a
//! shell would observe as [`Event`]s (a handshake's outcome, a WebSocket's end with the code
//! sent or received).

use super::{Conn, Counters, Limits, Step};
use crate::proto::http::{Method, RequestHead, Response};
use crate::proto::time::Tick;
use crate::proto::ws::{encode_frame, DataKind, FrameHeader, OpCode};

/// What to do with a request head.
#[derive(Debug)]
pub enum Decision {
    Upgrade,
    Respond(Response),
    /// Leave it unread, for another core ([`Conn::relocate`]).
    Relocate,
    Body {
        max: usize,
    },
    Hold {
        until: Tick,
        fallback: Response,
    },
}

/// What a shell would observe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Upgraded,
    Rejected {
        status: u16,
        reason: &'static str,
    },
    /// The WebSocket stopped being open: the close code sent or received (none for an EOF or
    /// an abort).
    Closed(Option<u16>),
}

/// The decisions a harness takes.
pub trait Decide {
    fn route(&mut self, now: Tick, head: &RequestHead) -> Decision;
    fn body(&mut self, now: Tick, head: &RequestHead, body: &[u8]) -> Response {
        let _ = (now, head, body);
        Response::text(404, "not found")
    }
    /// A whole message; replies go to `out` (this connection's send queue).
    fn message(&mut self, now: Tick, kind: DataKind, payload: &[u8], out: &mut Outbox<'_>);
    fn event(&mut self, e: Event) {
        let _ = e;
    }
}

/// Whole server frames onto one connection's outbound buffer.
pub struct Outbox<'a> {
    out: &'a mut Vec<u8>,
    counters: &'a mut Counters,
}

impl<'a> Outbox<'a> {
    pub fn new(out: &'a mut Vec<u8>, counters: &'a mut Counters) -> Self {
        Outbox { out, counters }
    }

    /// Queue one unfragmented message.
    pub fn send(&mut self, kind: DataKind, payload: &[u8]) {
        encode_frame(true, kind.opcode(), payload, self.out);
        self.counters.frames_out += 1;
        self.counters.messages_out += 1;
    }

    /// Bytes waiting to be written on this connection, including what was queued before.
    pub fn pending(&self) -> usize {
        self.out.len()
    }
}

/// Run `input` through `conn` until it is idle (or piped: forwarding is the caller's), with
/// `d` deciding. Returns the bytes consumed.
pub fn read(
    conn: &mut Conn,
    now: Tick,
    limits: &Limits,
    input: &mut [u8],
    out: &mut Vec<u8>,
    counters: &mut Counters,
    d: &mut impl Decide,
) -> usize {
    let mut pos = 0;
    loop {
        if conn.is_piped() {
            return pos;
        }
        let seen = Seen::before(conn, out, counters);
        let (step, used) = conn.read(now, limits, &mut input[pos..], out, counters);
        let mut moved = used > 0;
        match step {
            Step::Idle => {}
            Step::Request { head, len } => {
                moved = true;
                if answer(conn, now, head, out, counters, d) {
                    pos += len;
                }
            }
            Step::Body(head, body) => {
                moved = true;
                let resp = d.body(now, &head, &body);
                conn.respond(now, &head, &resp, out, counters);
            }
            Step::Message(msg) => {
                let (kind, payload) = (msg.kind(), msg.as_bytes());
                d.message(now, kind, payload, &mut Outbox::new(out, counters));
            }
            Step::Forward { .. } | Step::Ended { .. } => {
                unreachable!("a connection that is not piped forwards nothing")
            }
        }
        pos += used;
        seen.report(conn, out, counters, d);
        if !moved || conn.is_closed() && pos >= input.len() {
            return pos;
        }
    }
}

/// Answer a request head as `d` decides; false when it stays in the input (relocated).
fn answer(
    conn: &mut Conn,
    now: Tick,
    head: RequestHead,
    out: &mut Vec<u8>,
    counters: &mut Counters,
    d: &mut impl Decide,
) -> bool {
    match d.route(now, &head) {
        Decision::Upgrade if head.upgrade.is_none() => conn.respond(
            now,
            &head,
            &Response::text(426, "upgrade required"),
            out,
            counters,
        ),
        Decision::Upgrade => {
            if let Some(accept) = conn.check_upgrade(&head, out, counters) {
                conn.upgrade(now, &accept, out, counters);
            }
        }
        Decision::Respond(resp) => conn.respond(now, &head, &resp, out, counters),
        Decision::Relocate => {
            conn.relocate();
            return false;
        }
        Decision::Body { max } => conn.read_body(now, head, max, out, counters),
        Decision::Hold { until, fallback } => conn.hold(&head, until, fallback),
    }
    true
}

/// A snapshot before a call, to report what it changed.
pub struct Seen {
    open: bool,
    out_len: usize,
    upgrades: u64,
    rejected: usize,
}

impl Seen {
    pub fn before(conn: &Conn, out: &[u8], counters: &Counters) -> Seen {
        Seen {
            open: conn.is_open(),
            out_len: out.len(),
            upgrades: counters.upgrades,
            rejected: counters.rejected.len(),
        }
    }

    /// Report the events between the snapshot and now.
    pub fn report(self, conn: &Conn, out: &[u8], counters: &Counters, d: &mut impl Decide) {
        for &(status, reason) in &counters.rejected[self.rejected..] {
            d.event(Event::Rejected { status, reason });
        }
        if counters.upgrades > self.upgrades {
            d.event(Event::Upgraded);
        }
        if self.open && !conn.is_open() {
            d.event(Event::Closed(last_close_code(
                &out[self.out_len.min(out.len())..],
            )));
        }
    }
}

/// The code of the last close frame among whole server frames in `out` (none if there is no
/// close frame, or it carries no code).
fn last_close_code(mut out: &[u8]) -> Option<u16> {
    let mut code = None;
    while let Ok(Some((h, n))) = FrameHeader::parse(out) {
        let end = n + h.payload_len as usize;
        if end > out.len() {
            break;
        }
        if h.opcode == OpCode::Close && end - n >= 2 {
            code = Some(u16::from_be_bytes([out[n], out[n + 1]]));
        }
        out = &out[end..];
    }
    code
}

/// `Conn::timeout`, reporting what it changed.
pub fn timeout(
    conn: &mut Conn,
    now: Tick,
    limits: &Limits,
    out: &mut Vec<u8>,
    counters: &mut Counters,
    d: &mut impl Decide,
) {
    let seen = Seen::before(conn, out, counters);
    conn.timeout(now, limits, out, counters);
    seen.report(conn, out, counters, d);
}

/// `Conn::close`, reporting what it changed.
pub fn close(
    conn: &mut Conn,
    now: Tick,
    code: u16,
    reason: &str,
    out: &mut Vec<u8>,
    counters: &Counters,
    d: &mut impl Decide,
) {
    let seen = Seen::before(conn, out, counters);
    conn.close(now, code, reason, out);
    seen.report(conn, out, counters, d);
}

/// `Conn::eof`, reporting what it changed (an open WebSocket ends without a code).
pub fn eof(conn: &mut Conn, counters: &Counters, d: &mut impl Decide) {
    let seen = Seen::before(conn, &[], counters);
    conn.eof();
    seen.report(conn, &[], counters, d);
}

/// `Conn::abort`, reporting what it changed (an open WebSocket ends as 1006, abnormal).
pub fn abort(conn: &mut Conn, counters: &Counters, d: &mut impl Decide) {
    let open = conn.is_open();
    conn.abort();
    if open {
        d.event(Event::Closed(Some(1006)));
    }
    let _ = counters;
}

/// True for a `HEAD` request (its answer carries no body).
pub fn head_only(head: &RequestHead) -> bool {
    head.method == Method::Head
}
