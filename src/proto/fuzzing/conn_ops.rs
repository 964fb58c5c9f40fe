//! The `conn_ops` fuzz target: a sequence of operations ([`Op`]) applied to one [`Conn`]
//! through a model of the shell (socket, read buffer, outbound buffer, clock), with small
//! limits so that every size rule is reachable.
//!
//! The model does what `net::reactor` does (through `proto::conn::driver`): it keeps
//! unconsumed input and drops consumed bytes, offers input only while `wants_read` says so
//! (bytes wait in the read buffer or the "socket" meanwhile), reads at most a read buffer's
//! worth, reports EOF only once it has read everything, calls `timeout` once `poll_timeout` has
//! passed, and aborts a connection whose peer does not read its output. A request for
//! `/echo/park` is relocated once (left unread until [`Op::Unpark`]), as the shell does with a
//! request another core owns. Checked after every call and every op:
//!
//! * reading consumes at most its input, and never stalls on a full read buffer;
//! * `is_closed` is final: no more output, no wish to read, no deadline;
//! * everything written parses as HTTP/1.1 response heads (with their bodies) and, after a
//!   `101`, as whole, unmasked, valid server frames; nothing follows a `Connection: close`
//!   response or a close frame; data frames are exactly the messages the App echoed;
//! * the harness hears of a WebSocket close at most once and only after an upgrade, and gets
//!   messages only in between, within the size limit, text as UTF-8;
//! * no busy loop: a deadline is never still due right after `timeout`, and delivering
//!   the bytes of one op takes a bounded number of calls.
//!
//! The input is decoded with `arbitrary`: a [`Setup`], then [`Op`]s until the bytes run out.
//! [`encode_ops`] is the inverse, for writing seeds.

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};

use crate::proto::conn::driver::{self, Decide, Decision, Event, Outbox};
use crate::proto::conn::{Conn, Counters, Limits};
use crate::proto::http::{RequestHead, Response};
use crate::proto::time::Tick;
use crate::proto::ws::{is_valid_close_code, parse_close_payload, DataKind, FrameHeader, OpCode};

/// The shell's read buffer (`buffer_size`); also its outbound high-water mark.
const RX_CAP: usize = 2048;
/// The shell aborts a connection with more unwritten output than this.
const MAX_OUTBOUND: usize = 4 * 1024;
const MAX_FRAME: usize = 1024;
const MAX_MESSAGE: usize = 2048;
/// Ops beyond this are ignored, to bound the time of one run.
const MAX_OPS: usize = 512;
/// Largest filler a [`Op::Frame`] adds to its payload.
const MAX_EXTRA: usize = 2048;
/// The mask key of every masked client frame the model builds.
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// Codes for [`Op::BeginClose`] and most [`Op::Close`] frames.
const CLOSE_CODES: [u16; 6] = [1000, 1001, 1008, 1011, 1012, 4000];

/// Plain requests for [`Op::Request`]: answered, refused, or closing the connection.
const REQUESTS: [&[u8]; 16] = [
    b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n",
    b"HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    b"GET /healthz HTTP/1.0\r\n\r\n",
    b"POST /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody",
    b"POST /healthz HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n\r\n",
    b"GET /nope HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Version: 13\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    // Bodies read by the machine (`/body` allows 64 bytes): whole, cut short, chunked,
    // over the limit, and announced with `Expect: 100-continue` (the body follows in Sends).
    b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody",
    b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\nbody",
    b"POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n",
    b"POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 65\r\n\r\n",
    b"POST /body HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
];

/// How the run starts: the clock (near a wrap, sometimes) and which timers are on.
#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// The tick at accept.
    pub start: u32,
    /// Bit 0: pings every 5 s; bit 1: idle timeout of 12 s.
    pub timers: u8,
}

/// Up to 255 bytes, length first (a compact form that mutates well).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl<'a> Arbitrary<'a> for Bytes {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let len = usize::from(u8::arbitrary(u)?).min(u.len());
        Ok(Bytes(u.bytes(len)?.to_vec()))
    }
}

/// One step of the scenario.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// The peer sends raw bytes.
    Send(Bytes),
    /// The peer sends one frame: `opcode` below 0xc0 picks a valid opcode, above it is the raw
    /// 4-bit opcode; the payload is `data` followed by `extra % 2049` bytes of `'a'`.
    Frame {
        fin: bool,
        opcode: u8,
        masked: bool,
        data: Bytes,
        extra: u16,
    },
    /// The peer sends a masked close frame: no payload for code 0, a code from a list of valid
    /// ones below 0x8000, else the raw code; then the reason (at most 123 bytes).
    Close { code: u16, reason: Bytes },
    /// The peer sends a valid upgrade request for `/echo` (or `/echo/park`, which is relocated
    /// once before it is answered).
    Upgrade { park: bool },
    /// The peer sends one of [`REQUESTS`].
    Request(u8),
    /// Each socket read returns at most this many bytes; 0: the socket is not readable; 255:
    /// no limit (the start).
    ReadSize(u8),
    /// The peer reads this many bytes of our output (0: all of it).
    Flush(u16),
    /// The peer half-closes (the model reports it once everything before it is read).
    Eof,
    /// Virtual time passes, in milliseconds.
    Advance(u16),
    /// Server-initiated close with one of a few valid codes.
    BeginClose(u8),
    /// The shell moved a parked connection and resumes it.
    Unpark,
    /// The shell drops the connection.
    Abort,
}

/// Number of [`Op`] variants (the derived decoder maps a `u32` onto them).
const OP_VARIANTS: u64 = 12;

/// Decode a fuzz input: a [`Setup`], then ops until the bytes run out (at most [`MAX_OPS`]).
pub fn decode_ops(data: &[u8]) -> (Setup, Vec<Op>) {
    let mut u = Unstructured::new(data);
    // Integers pad with zeros when the input runs out, so neither call fails; fall back anyway.
    let setup = Setup::arbitrary(&mut u).unwrap_or(Setup {
        start: 0,
        timers: 0,
    });
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        match Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    (setup, ops)
}

/// The inverse of [`decode_ops`] (for writing seeds): bytes that decode to `setup` and `ops`.
/// A [`Bytes`] over 255 bytes is cut to 255.
pub fn encode_ops(setup: Setup, ops: &[Op]) -> Vec<u8> {
    fn bytes(out: &mut Vec<u8>, b: &Bytes) {
        let b = &b.0[..b.0.len().min(255)];
        out.push(b.len() as u8);
        out.extend_from_slice(b);
    }
    let mut out = Vec::new();
    out.extend_from_slice(&setup.start.to_le_bytes());
    out.push(setup.timers);
    for op in ops {
        let (index, fields): (u64, Vec<u8>) = match op {
            Op::Send(b) => (0, {
                let mut f = Vec::new();
                bytes(&mut f, b);
                f
            }),
            Op::Frame {
                fin,
                opcode,
                masked,
                data,
                extra,
            } => (1, {
                let mut f = vec![u8::from(*fin), *opcode, u8::from(*masked)];
                bytes(&mut f, data);
                f.extend_from_slice(&extra.to_le_bytes());
                f
            }),
            Op::Close { code, reason } => (2, {
                let mut f = code.to_le_bytes().to_vec();
                bytes(&mut f, reason);
                f
            }),
            Op::Upgrade { park } => (3, vec![u8::from(*park)]),
            Op::Request(i) => (4, vec![*i]),
            Op::ReadSize(n) => (5, vec![*n]),
            Op::Flush(n) => (6, n.to_le_bytes().to_vec()),
            Op::Eof => (7, vec![]),
            Op::Advance(ms) => (8, ms.to_le_bytes().to_vec()),
            Op::BeginClose(i) => (9, vec![*i]),
            Op::Unpark => (10, vec![]),
            Op::Abort => (11, vec![]),
        };
        // The derive picks variant `(tag * OP_VARIANTS) >> 32`: the smallest tag for `index`.
        let tag = (index << 32).div_ceil(OP_VARIANTS);
        out.extend_from_slice(&(tag as u32).to_le_bytes());
        out.extend_from_slice(&fields);
    }
    out
}

/// Run the ops decoded from `data` against a fresh connection and check the invariants in the
/// module docs; panics when one fails.
pub fn check_conn_ops(data: &[u8]) {
    run(data, None);
}

/// Like [`check_conn_ops`], and also returns what happened, one line per op: the op, then the
/// output it caused and the connection's state (for reading a crash input or a seed).
pub fn trace_conn_ops(data: &[u8]) -> String {
    let mut trace = String::new();
    run(data, Some(&mut trace));
    trace
}

fn run(data: &[u8], mut trace: Option<&mut String>) {
    use std::fmt::Write as _;
    let (setup, ops) = decode_ops(data);
    let mut h = Harness::new(setup);
    if let Some(t) = trace.as_deref_mut() {
        let _ = writeln!(t, "{setup:?}");
    }
    for op in &ops {
        let before = h.out.bytes.len();
        h.apply(op);
        h.check();
        if let Some(t) = trace.as_deref_mut() {
            let _ = writeln!(
                t,
                "{op:?}\n  -> {:?}\n  closed={} parked={} wants_read={} wire={} rx={} tx={}",
                String::from_utf8_lossy(&h.out.bytes[before..]),
                h.conn.is_closed(),
                h.conn.is_parked(),
                h.wants_read(),
                h.wire.len(),
                h.rx.len(),
                h.tx.len(),
            );
        }
    }
}

// ── the App ────────────────────────────────────────────────────────────────────────────────

/// `/echo` upgrades (`/echo/park` is relocated first, once), `/healthz` answers 200, `/body`
/// reads a body of at most 64 bytes and answers it back, anything else 404. Messages are
/// echoed; every decision checks it comes in order.
#[derive(Default)]
struct FuzzApp {
    upgraded: bool,
    ws_closed: bool,
    /// The `/echo/park` request in the input was relocated (it is answered when read again).
    relocated: bool,
    echoed: Vec<(DataKind, Vec<u8>)>,
}

impl Decide for FuzzApp {
    fn route(&mut self, _now: Tick, head: &RequestHead) -> Decision {
        assert!(!self.upgraded, "a request routed after the upgrade");
        match head.path.as_str() {
            "/echo/park" if !self.relocated => {
                self.relocated = true;
                Decision::Relocate
            }
            "/echo" | "/echo/park" => Decision::Upgrade,
            "/healthz" => Decision::Respond(Response::text(200, "ok")),
            "/body" => Decision::Body { max: 64 },
            _ => Decision::Respond(Response::text(404, "not found")),
        }
    }

    fn body(&mut self, _now: Tick, _head: &RequestHead, body: &[u8]) -> Response {
        assert!(!self.upgraded, "a request body after the upgrade");
        assert!(body.len() <= 64, "a body over the limit");
        Response::new(200, "application/octet-stream", body.to_vec())
    }

    fn message(&mut self, _now: Tick, kind: DataKind, payload: &[u8], out: &mut Outbox<'_>) {
        assert!(
            self.upgraded && !self.ws_closed,
            "a message outside the open phase"
        );
        assert!(payload.len() <= MAX_MESSAGE, "a message over the limit");
        if kind == DataKind::Text {
            assert!(
                std::str::from_utf8(payload).is_ok(),
                "text that is not UTF-8"
            );
        }
        out.send(kind, payload);
        self.echoed.push((kind, payload.to_vec()));
    }

    fn event(&mut self, e: Event) {
        match e {
            Event::Upgraded => {
                assert!(!self.upgraded, "a handshake after the upgrade");
                self.upgraded = true;
            }
            Event::Rejected { .. } => assert!(!self.upgraded, "a handshake after the upgrade"),
            Event::Closed(_) => {
                assert!(self.upgraded, "a WebSocket close without an upgrade");
                assert!(!self.ws_closed, "a WebSocket close reported twice");
                self.ws_closed = true;
            }
        }
    }
}

// ── the output checker ─────────────────────────────────────────────────────────────────────

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Http,
    /// After `Connection: close`: nothing more may follow.
    HttpDone,
    Ws,
    /// After our close frame: nothing more may follow.
    WsDone,
}

/// Parses everything the connection wrote, incrementally; after every call it must all parse.
struct Transcript {
    bytes: Vec<u8>,
    pos: usize,
    phase: Phase,
    data_frames: Vec<(DataKind, Vec<u8>)>,
    pings: u64,
}

impl Transcript {
    fn parse_new(&mut self) {
        let bytes = std::mem::take(&mut self.bytes);
        while self.pos < bytes.len() {
            let rest = &bytes[self.pos..];
            self.pos += match self.phase {
                Phase::Http => self.response(rest),
                Phase::Ws => self.frame(rest),
                Phase::HttpDone | Phase::WsDone => {
                    panic!("output after the end: {:?}", self.phase)
                }
            };
        }
        self.bytes = bytes;
    }

    /// One complete response; returns its length.
    fn response(&mut self, rest: &[u8]) -> usize {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut resp = httparse::Response::new(&mut headers);
        let head_len = match resp.parse(rest) {
            Ok(httparse::Status::Complete(n)) => n,
            other => panic!("not a whole response head: {other:?}"),
        };
        assert_eq!(resp.version, Some(1));
        let code = resp.code.unwrap_or(0);
        assert!((100..=599).contains(&code), "status {code}");
        let header = |name: &str| {
            let mut found = resp
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name));
            let first = found.next().map(|h| h.value);
            assert!(found.next().is_none(), "two {name} headers");
            first
        };
        let connection = header("connection");
        if code == 100 {
            assert!(header("content-length").is_none());
            return head_len; // interim: the final response follows
        }
        if code == 101 {
            assert_eq!(header("upgrade"), Some(&b"websocket"[..]));
            assert_eq!(connection, Some(&b"Upgrade"[..]));
            assert_eq!(header("sec-websocket-accept").map(<[u8]>::len), Some(28));
            assert!(header("content-length").is_none());
            self.phase = Phase::Ws;
            return head_len;
        }
        let len = header("content-length")
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<usize>().ok())
            .expect("a response with a Content-Length");
        assert!(rest.len() - head_len >= len, "a response body cut short");
        // A list of tokens, e.g. `Upgrade, close` on a 426.
        let has = |token: &str| {
            connection.is_some_and(|v| {
                v.split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
            })
        };
        if has("close") {
            self.phase = Phase::HttpDone;
        } else {
            assert!(has("keep-alive"), "Connection: {connection:?}");
        }
        head_len + len
    }

    /// One complete server frame; returns its length.
    fn frame(&mut self, rest: &[u8]) -> usize {
        let (h, n) = match FrameHeader::parse(rest) {
            Ok(Some(parsed)) => parsed,
            other => panic!("not a whole server frame header: {other:?}"),
        };
        assert!(h.mask.is_none(), "a masked server frame");
        assert!(h.fin, "a fragmented server frame");
        let end = usize::try_from(h.payload_len)
            .ok()
            .and_then(|l| l.checked_add(n))
            .filter(|&end| end <= rest.len())
            .expect("a server frame cut short");
        let payload = &rest[n..end];
        match h.opcode {
            OpCode::Text => {
                assert!(std::str::from_utf8(payload).is_ok(), "text not UTF-8");
                self.data_frames.push((DataKind::Text, payload.to_vec()));
            }
            OpCode::Binary => self.data_frames.push((DataKind::Binary, payload.to_vec())),
            OpCode::Close => {
                let parsed = parse_close_payload(payload).expect("a valid close payload");
                let (code, _) = parsed.expect("our close frames carry a code");
                assert!(is_valid_close_code(code));
                self.phase = Phase::WsDone;
            }
            OpCode::Ping => {
                assert!(payload.is_empty());
                self.pings += 1;
            }
            OpCode::Pong => {}
            OpCode::Continuation => panic!("a continuation frame from the server"),
        }
        end
    }
}

// ── the shell model ────────────────────────────────────────────────────────────────────────

struct Harness {
    conn: Conn,
    limits: Limits,
    now: Tick,
    /// Bytes the peer sent that the shell has not read yet.
    wire: Vec<u8>,
    /// The peer half-closed after `wire`.
    peer_eof: bool,
    eof_delivered: bool,
    /// Bytes per socket read; None: not readable.
    read_size: Option<usize>,
    /// The shell's read buffer: read but not consumed.
    rx: Vec<u8>,
    /// Output not yet written to the peer.
    tx: Vec<u8>,
    out: Transcript,
    counters: Counters,
    app: FuzzApp,
    /// Set once `is_closed`; with the transcript length then.
    closed_at: Option<usize>,
}

impl Harness {
    fn new(setup: Setup) -> Harness {
        let secs = Duration::from_secs;
        let limits = Limits {
            max_header_bytes: 1024,
            max_headers: 16,
            max_frame_size: MAX_FRAME,
            max_message_size: MAX_MESSAGE,
            handshake_timeout: secs(2),
            http_keepalive_timeout: secs(3),
            ping_interval: secs(if setup.timers & 1 != 0 { 5 } else { 0 }),
            idle_timeout: secs(if setup.timers & 2 != 0 { 12 } else { 0 }),
            ..Limits::default()
        };
        let now = Tick(setup.start);
        Harness {
            conn: Conn::new(now),
            limits,
            now,
            wire: Vec::new(),
            peer_eof: false,
            eof_delivered: false,
            read_size: Some(usize::MAX),
            rx: Vec::new(),
            tx: Vec::new(),
            out: Transcript {
                bytes: Vec::new(),
                pos: 0,
                phase: Phase::Http,
                data_frames: Vec::new(),
                pings: 0,
            },
            counters: Counters::default(),
            app: FuzzApp::default(),
            closed_at: None,
        }
    }

    fn wants_read(&self) -> bool {
        self.conn.wants_read(self.tx.len(), RX_CAP)
    }

    /// The peer sends `bytes` (unless it already half-closed).
    fn send(&mut self, bytes: &[u8]) {
        if !self.peer_eof {
            self.wire.extend_from_slice(bytes);
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Send(b) => self.send(&b.0),
            Op::Frame {
                fin,
                opcode,
                masked,
                data,
                extra,
            } => {
                let op = if *opcode < 0xc0 {
                    [0, 1, 2, 8, 9, 10][usize::from(opcode % 6)]
                } else {
                    opcode & 0x0f
                };
                let mut payload = data.0.clone();
                payload.resize(payload.len() + usize::from(*extra) % (MAX_EXTRA + 1), b'a');
                self.send(&client_frame(*fin, op, *masked, &payload));
            }
            Op::Close { code, reason } => {
                let mut payload = Vec::new();
                if *code != 0 {
                    let code = if *code < 0x8000 {
                        CLOSE_CODES[usize::from(*code) % CLOSE_CODES.len()]
                    } else {
                        *code
                    };
                    payload.extend_from_slice(&code.to_be_bytes());
                    payload.extend_from_slice(&reason.0[..reason.0.len().min(123)]);
                }
                self.send(&client_frame(true, 8, true, &payload));
            }
            Op::Upgrade { park } => {
                let path = if *park { "/echo/park" } else { "/echo" };
                self.send(
                    format!(
                        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n\
                         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                         Sec-WebSocket-Version: 13\r\n\r\n"
                    )
                    .as_bytes(),
                );
            }
            Op::Request(i) => self.send(REQUESTS[usize::from(*i) % REQUESTS.len()]),
            Op::ReadSize(n) => {
                self.read_size = match n {
                    0 => None,
                    255 => Some(usize::MAX),
                    n => Some(usize::from(*n)),
                }
            }
            Op::Flush(n) => {
                let n = if *n == 0 {
                    self.tx.len()
                } else {
                    usize::from(*n).min(self.tx.len())
                };
                self.tx.drain(..n);
            }
            Op::Eof => self.peer_eof = true,
            Op::Advance(ms) => {
                self.now = self.now.after(Duration::from_millis(u64::from(*ms)));
                self.timeout();
            }
            Op::BeginClose(i) => {
                let code = CLOSE_CODES[usize::from(*i) % CLOSE_CODES.len()];
                let before = self.tx.len();
                driver::close(
                    &mut self.conn,
                    self.now,
                    code,
                    "fuzz",
                    &mut self.tx,
                    &self.counters,
                    &mut self.app,
                );
                self.record(before);
            }
            Op::Unpark => {
                // The shell resumes only connections it parked.
                if self.conn.is_parked() {
                    self.conn.unpark(self.now);
                }
            }
            Op::Abort => driver::abort(&mut self.conn, &self.counters, &mut self.app),
        }
        self.pump();
        // The shell's slow-reader rule.
        if self.tx.len() > MAX_OUTBOUND {
            driver::abort(&mut self.conn, &self.counters, &mut self.app);
        }
    }

    /// Output appended since `before` goes to the transcript, which must parse whole.
    fn record(&mut self, before: usize) {
        assert!(self.tx.len() >= before, "output was taken back");
        if self.closed_at.is_some() {
            assert_eq!(self.tx.len(), before, "output after is_closed");
        }
        self.out.bytes.extend_from_slice(&self.tx[before..]);
        self.out.parse_new();
        if self.conn.is_closed() && self.closed_at.is_none() {
            self.closed_at = Some(self.out.bytes.len());
        }
    }

    /// Call `timeout` if the deadline has passed.
    fn timeout(&mut self) {
        let Some(deadline) = self.conn.poll_timeout(&self.limits) else {
            return;
        };
        if !self.now.reached(deadline) {
            return;
        }
        let before = self.tx.len();
        driver::timeout(
            &mut self.conn,
            self.now,
            &self.limits,
            &mut self.tx,
            &mut self.counters,
            &mut self.app,
        );
        self.record(before);
        if let Some(next) = self.conn.poll_timeout(&self.limits) {
            assert!(
                !self.now.reached(next),
                "a deadline still due right after timeout: the shell would spin"
            );
        }
    }

    /// Offer buffered input; returns whether any was consumed.
    fn offer(&mut self) -> bool {
        if self.rx.is_empty() || !self.wants_read() {
            return false;
        }
        let len = self.rx.len();
        let before = self.tx.len();
        let used = driver::read(
            &mut self.conn,
            self.now,
            &self.limits,
            &mut self.rx,
            &mut self.tx,
            &mut self.counters,
            &mut self.app,
        );
        assert!(used <= len, "consumed {used} of {len} bytes");
        self.rx.drain(..used);
        self.record(before);
        if used == 0 && len == RX_CAP {
            assert!(
                !self.wants_read(),
                "stalled: a full read buffer, nothing consumed, and still wants to read"
            );
        }
        used > 0
    }

    /// Move bytes socket → read buffer → machine until nothing moves, like the shell's
    /// read loop.
    fn pump(&mut self) {
        // Every round moves or consumes at least one byte, or reports EOF.
        let mut budget = 2 * (self.wire.len() + self.rx.len()) + 4;
        loop {
            assert!(budget > 0, "the read loop does not settle");
            budget -= 1;
            let mut progress = self.offer();
            if let (true, Some(n)) = (self.wants_read(), self.read_size) {
                let take = n.min(RX_CAP - self.rx.len()).min(self.wire.len());
                if take > 0 {
                    self.rx.extend(self.wire.drain(..take));
                    progress = true;
                } else if self.wire.is_empty() && self.peer_eof && !self.eof_delivered {
                    self.eof_delivered = true;
                    driver::eof(&mut self.conn, &self.counters, &mut self.app);
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
    }

    /// The invariants that hold between ops.
    fn check(&mut self) {
        self.record(self.tx.len());
        assert_eq!(self.out.pos, self.out.bytes.len());
        assert_eq!(
            self.out.data_frames, self.app.echoed,
            "echoed ≠ data frames written"
        );
        assert_eq!(self.counters.messages_out, self.app.echoed.len() as u64);
        assert_eq!(self.counters.pings_sent, self.out.pings);
        if self.conn.is_parked() {
            assert!(!self.conn.wants_read(0, usize::MAX));
        }
        if self.closed_at.is_some() {
            assert!(self.conn.is_closed(), "is_closed went back to false");
            assert!(!self.conn.wants_read(0, usize::MAX));
            assert_eq!(self.conn.poll_timeout(&self.limits), None);
            assert!(!self.conn.is_websocket());
        }
    }
}

/// A client frame with the model's mask key (or unmasked), minimal length encoding.
fn client_frame(fin: bool, opcode: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![(u8::from(fin) << 7) | (opcode & 0x0f)];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => f.push(mask_bit | n as u8),
        n => {
            // MAX_EXTRA + 255 < 65536: always the 16-bit form.
            f.push(mask_bit | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    if masked {
        f.extend_from_slice(&KEY);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_op() -> Vec<Op> {
        vec![
            Op::Send(Bytes(b"GET".to_vec())),
            Op::Frame {
                fin: true,
                opcode: 200,
                masked: false,
                data: Bytes(vec![1, 2, 3]),
                extra: 700,
            },
            Op::Close {
                code: 0x9000,
                reason: Bytes(b"bye".to_vec()),
            },
            Op::Upgrade { park: true },
            Op::Request(3),
            Op::ReadSize(7),
            Op::Flush(513),
            Op::Eof,
            Op::Advance(65535),
            Op::BeginClose(2),
            Op::Unpark,
            Op::Abort,
        ]
    }

    #[test]
    fn encode_is_the_inverse_of_decode() {
        let setup = Setup {
            start: u32::MAX - 7,
            timers: 3,
        };
        let ops = every_op();
        assert_eq!(ops.len() as u64, OP_VARIANTS);
        assert_eq!(decode_ops(&encode_ops(setup, &ops)), (setup, ops));
    }

    #[test]
    fn arbitrary_bytes_do_not_panic() {
        check_conn_ops(b"");
        check_conn_ops(&[0xff; 64]);
        check_conn_ops(&(0..=255).collect::<Vec<u8>>());
    }
}
