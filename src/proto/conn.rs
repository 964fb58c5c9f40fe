//! The per-connection state machine: HTTP/1.1 requests, the WebSocket upgrade, then RFC 6455
//! framing, timers and the close handshake.
//!
//! ```text
//!            request head ──► Step::Request ──► respond (keep-alive: the next request)
//!   ┌──────────────┐           │  read_body ──► Step::Body ──► respond / hold
//!   │ExpectRequest │ ◄─────────┤  hold ─────► (answer_held or the fallback)
//!   └──────┬───────┘           │  relocate ─► the request stays unread; unpark on another core
//!          │ upgrade (101 written)
//!          ▼
//!   ┌──────────────┐  our close sent / peer error   ┌─────────┐  peer's close or linger   ┌────────┐
//!   │     Open     │ ─────────────────────────────► │ Closing │ ────────────────────────► │ Closed │
//!   └──────────────┘                                └─────────┘                           └────────┘
//!          │ peer's close received (we answer it), EOF, error response, timeout ───────────────▲
//! ```
//!
//! # The driver contract
//!
//! The shell owns the socket, the buffers and the clock; the machine never calls out. The shell
//! calls [`Conn::read`] with the plaintext it has buffered (which the machine may unmask in
//! place) and an outbound buffer to append to. `read` consumes input up to the next thing that
//! needs a decision from outside and returns it as a [`Step`] with the number of bytes it used;
//! the shell acts on the step and calls `read` again, until [`Step::Idle`]:
//!
//! * [`Step::Request`]: a request head, whose `len` bytes are not consumed yet. The shell
//!   answers with exactly one of [`Conn::upgrade`] (after [`Conn::check_upgrade`]),
//!   [`Conn::respond`], [`Conn::read_body`], [`Conn::hold`], and then drops the head's bytes
//!   from its input; or with [`Conn::relocate`] (the request stays in the input for the core
//!   it moves to, where [`Conn::unpark`] lets it be read again).
//! * [`Step::Body`]: the body of a request answered with `read_body`; answered with `respond`
//!   or `hold`.
//! * [`Step::Message`]: a whole WebSocket message (pings and closes are answered inside).
//! * [`Step::Forward`] / [`Step::Ended`]: a piped connection's data for its peer, and its end
//!   (see [`Conn::start_piping`]).
//!
//! Other inputs: [`Conn::eof`], [`Conn::timeout`] once [`Conn::poll_timeout`] has passed,
//! [`Conn::close`] (a server-initiated close), [`Conn::abort`], [`Conn::answer_held`]. After any
//! of them the shell flushes the outbound buffer and reads the machine's state:
//! [`Conn::wants_read`], [`Conn::is_closed`] (flush, then close the socket),
//! [`Conn::attached`] (an open WebSocket or a held request: something a dialect holds).
//!
//! What this module deliberately does not own: sockets, TLS, buffers' memory, real time, what a
//! request or a message means, and anything that spans connections.

use crate::proto::http::{self, HttpLimits, RequestHead, Response};
use crate::proto::time::{earliest, Tick};
use crate::proto::ws::{
    encode_close, encode_frame, encode_header, parse_close_payload, whole_str, DataKind, Decoder,
    DecoderLimits, Item, Message, OpCode, WsError,
};
use std::ops::Range;
use std::time::Duration;

/// How long we wait for the peer's close frame after sending ours before giving up.
pub const CLOSE_LINGER: Duration = Duration::from_secs(3);

/// The protocol limits and timeouts a connection enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_frame_size: usize,
    pub max_message_size: usize,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    pub ping_interval: Duration,
    pub http_keepalive_timeout: Duration,
    pub http_body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 8 * 1024,
            max_headers: 64,
            max_frame_size: 256 * 1024,
            max_message_size: 256 * 1024,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            ping_interval: Duration::from_secs(30),
            http_keepalive_timeout: Duration::from_secs(30),
            http_body_timeout: Duration::from_secs(10),
        }
    }
}

/// Counters the machine updates for the shell's metrics (the shell publishes them).
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub frames_in: u64,
    pub frames_out: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub pings_sent: u64,
    pub protocol_errors: u64,
    pub idle_timeouts: u64,
    pub handshake_timeouts: u64,
    /// WebSocket upgrades answered with 101.
    pub upgrades: u64,
    /// Requests refused, by status and reason (`missing_key`, `timeout`, `not_found`, ...),
    /// since the shell last drained them.
    pub rejected: Vec<(u16, &'static str)>,
}

/// What [`Conn::read`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// Nothing more to do with this input until more bytes come (or a decision is made).
    Idle,
    /// A request head, to be answered; its `len` bytes lead the input (the caller drops them
    /// once it answered, or leaves them for another core).
    Request { head: RequestHead, len: usize },
    /// The whole body of a request answered with [`Conn::read_body`].
    Body(RequestHead, Vec<u8>),
    /// A whole WebSocket message (text checked as UTF-8).
    Message(Message<'a>),
    /// Piped: send `header[..header_len]` (empty for a frame's later chunks), then
    /// `input[payload]` (unmasked in place), to the peer.
    Forward {
        header: [u8; 10],
        header_len: u8,
        payload: Range<usize>,
    },
    /// Piped: this side is done (its close was answered, or it broke the protocol): after what
    /// was already forwarded, close the peer with `code`.
    Ended { code: u16 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for (the rest of) a request head. `served` tells whether an earlier request on
    /// this connection was answered (then the keep-alive timeout applies, not the handshake one).
    ExpectRequest { served: bool },
    /// A head went out as [`Step::Request`]; waiting for the answer. `rest`: more bytes
    /// followed the head when it was read.
    AwaitAnswer { served: bool, rest: bool },
    /// The request in the input belongs to another core: nothing is read until the shell has
    /// moved the connection and called [`Conn::unpark`]. `waits`: for another node's answer,
    /// until `phase_at` ([`Conn::await_elsewhere`]).
    Relocating { served: bool, waits: bool },
    /// Reading the body of a request (its head and the bytes so far are in `partial`);
    /// `phase_at` is when its head was answered.
    ExpectBody,
    /// The body went out as [`Step::Body`]; waiting for the answer.
    AwaitBodyAnswer,
    /// A request answered later ([`Conn::hold`]); `phase_at` is its deadline.
    Held,
    /// Upgraded; frames flow. `piped`: data frames are forwarded cut-through instead of being
    /// reassembled into messages.
    Open { piped: bool },
    /// We sent a close frame and wait for the peer's. `desynced`: the stream broke a framing
    /// rule, so its bytes are discarded instead of decoded.
    Closing { desynced: bool },
    /// Nothing more will be read or produced; the shell flushes and closes.
    Closed,
}

/// One connection's protocol state. Small on purpose: sigyard holds a great many idle ones.
pub struct Conn {
    state: State,
    decoder: Decoder,
    /// When the current phase began: accept or last answered request (ExpectRequest), last
    /// ping sent (Open), close sent (Closing).
    phase_at: Tick,
    /// Last time any byte arrived.
    last_rx: Tick,
    /// Input bytes the last read left unconsumed (a frame header cut short, say): the shell
    /// offers them again with what comes next, and they are not news.
    unread: u32,
    /// What a connection holds between reads, boxed: one pointer in every idle connection.
    partial: Option<Box<Pending>>,
    /// [`PIPE_PENDING`]: switch to piped mode at the next message boundary. [`DRAINING`]: the
    /// server is shutting down; the request under way is answered, then the connection closes
    /// ([`Conn::drain`]). [`PEER_DONE`]: see [`Conn::peer_done`]. (One byte for all: the
    /// struct stays small.)
    flags: u8,
}

/// See [`Conn::flags`].
const PIPE_PENDING: u8 = 1;
/// See [`Conn::flags`].
const DRAINING: u8 = 2;
/// See [`Conn::flags`].
const PEER_DONE: u8 = 4;

/// See [`Conn::partial`].
#[allow(clippy::large_enum_variant)] // always behind the Box in `Conn::partial`
enum Pending {
    /// A message being reassembled.
    Message(Vec<u8>),
    /// A message handed out by the last [`Step::Message`]; dropped at the next read.
    Delivered(Vec<u8>),
    /// The same for a text message.
    DeliveredText(String),
    Body(BodyRead),
    Held(HeldRequest),
}

/// A request waiting for its answer.
struct HeldRequest {
    keep_alive: bool,
    /// A `HEAD` request: the answer goes without its body.
    head_only: bool,
    fallback: Response,
}

/// A request body in progress: the head it belongs to, the bytes so far, and how it ends.
struct BodyRead {
    head: RequestHead,
    data: Vec<u8>,
    framing: BodyFraming,
}

enum BodyFraming {
    /// `Content-Length`: this many bytes still to come.
    Length(u64),
    Chunked(http::ChunkedDecoder),
}

/// A request with a body that is not read: answering it ends the connection (its body would
/// be read as the next request).
fn has_body(head: &RequestHead) -> bool {
    head.chunked || head.content_length.is_some_and(|n| n > 0)
}

impl Conn {
    /// A fresh connection, accepted at `now`.
    pub fn new(now: Tick) -> Self {
        Conn {
            state: State::ExpectRequest { served: false },
            decoder: Decoder::new(),
            phase_at: now,
            last_rx: now,
            unread: 0,
            partial: None,
            flags: 0,
        }
    }

    // ── what the shell asks ────────────────────────────────────────────────────────────────

    /// True when the machine would consume more input now. `pending_out` is the number of
    /// outbound bytes the shell still holds for this connection: above `high_water` reading
    /// pauses, so a peer that sends without reading meets back-pressure instead of growing
    /// our buffers.
    pub fn wants_read(&self, pending_out: usize, high_water: usize) -> bool {
        let state_reads = match self.state {
            // A held request reads no input, but its socket is watched for the peer's EOF.
            State::ExpectRequest { .. }
            | State::ExpectBody
            | State::Held
            | State::Open { .. }
            | State::Closing { .. } => true,
            State::AwaitAnswer { .. }
            | State::AwaitBodyAnswer
            | State::Relocating { .. }
            | State::Closed => false,
        };
        state_reads && pending_out < high_water
    }

    /// True once nothing more will happen but flushing what is queued.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// True when the peer ended the conversation cleanly: its close frame was the last byte of
    /// its input so far, or it sent EOF. It sends nothing more, so once the shell has written
    /// our last bytes it may close the socket at once: no half-close and no draining the
    /// peer's input, since there is no unread input whose arrival could turn our close into a
    /// reset.
    pub fn peer_done(&self) -> bool {
        self.flags & PEER_DONE != 0
    }

    /// True while the connection is an upgraded WebSocket (open or closing).
    pub fn is_websocket(&self) -> bool {
        matches!(self.state, State::Open { .. } | State::Closing { .. })
    }

    /// True while the connection is an open WebSocket (no close sent or received).
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open { .. })
    }

    /// True while a request body is being read (it may complete without more input: a body of
    /// length 0).
    pub fn is_reading_body(&self) -> bool {
        self.state == State::ExpectBody
    }

    /// True while a request waits for [`Conn::answer_held`].
    pub fn is_held(&self) -> bool {
        self.state == State::Held
    }

    /// True while a dialect holds this connection: an open WebSocket or a held request.
    pub fn attached(&self) -> bool {
        matches!(self.state, State::Open { .. } | State::Held)
    }

    /// True when the machine stopped for a move to another core ([`Conn::relocate`]).
    pub fn is_parked(&self) -> bool {
        matches!(self.state, State::Relocating { .. })
    }

    /// True while no request has been completed yet (TLS or HTTP handshake phase).
    pub fn is_handshaking(&self) -> bool {
        matches!(
            self.state,
            State::ExpectRequest { served: false }
                | State::AwaitAnswer { served: false, .. }
                | State::Relocating { served: false, .. }
        )
    }

    /// The next instant at which [`Conn::timeout`] has something to do.
    pub fn poll_timeout(&self, limits: &Limits) -> Option<Tick> {
        match self.state {
            State::ExpectRequest { served } => {
                let t = if served {
                    limits.http_keepalive_timeout
                } else {
                    limits.handshake_timeout
                };
                Some(self.phase_at.after(t))
            }
            State::ExpectBody => Some(self.phase_at.after(limits.http_body_timeout)),
            State::Held | State::Relocating { waits: true, .. } => Some(self.phase_at),
            State::AwaitAnswer { .. }
            | State::AwaitBodyAnswer
            | State::Relocating { .. }
            | State::Closed => None,
            State::Open { .. } => {
                let idle = nonzero(limits.idle_timeout).map(|d| self.last_rx.after(d));
                let ping = nonzero(limits.ping_interval).map(|d| {
                    // Ping after `d` of silence, and again every `d` while silence lasts.
                    let base = if self.phase_at.reached(self.last_rx) {
                        self.phase_at
                    } else {
                        self.last_rx
                    };
                    base.after(d)
                });
                earliest(idle, ping)
            }
            State::Closing { .. } => Some(self.phase_at.after(CLOSE_LINGER)),
        }
    }

    // ── reading ────────────────────────────────────────────────────────────────────────────

    /// Consume plaintext from `input` (which may be unmasked in place) up to the next
    /// [`Step`], appending what the machine answers by itself (pongs, close replies, error
    /// responses) to `out`. Returns the step and how many bytes of `input` were consumed;
    /// the rest must be offered again, with more bytes behind it.
    pub fn read<'a>(
        &'a mut self,
        now: Tick,
        limits: &Limits,
        input: &'a mut [u8],
        out: &mut Vec<u8>,
        counters: &mut Counters,
    ) -> (Step<'a>, usize) {
        if matches!(
            self.partial.as_deref(),
            Some(Pending::Delivered(_) | Pending::DeliveredText(_))
        ) {
            self.partial = None;
        }
        // Only bytes beyond those left over last time are a sign of life: a peer that sends
        // one byte of a frame header and goes quiet still meets the idle timeout.
        if input.len() > std::mem::take(&mut self.unread) as usize {
            self.last_rx = now;
        }
        match self.state {
            State::ExpectRequest { served } => self.read_head(limits, served, input, out, counters),
            State::ExpectBody => self.take_body(input, out, counters),
            State::Open { piped: false } | State::Closing { desynced: false } => {
                self.read_frames(now, limits, input, out, counters)
            }
            State::Open { piped: true } => self.read_piped(now, limits, input, out, counters),
            // The stream is broken or over: discard until the peer goes.
            State::Closing { desynced: true } | State::Closed => (Step::Idle, input.len()),
            State::AwaitAnswer { .. }
            | State::AwaitBodyAnswer
            | State::Relocating { .. }
            | State::Held => (Step::Idle, 0),
        }
    }

    fn read_head(
        &mut self,
        limits: &Limits,
        served: bool,
        input: &[u8],
        out: &mut Vec<u8>,
        counters: &mut Counters,
    ) -> (Step<'static>, usize) {
        let hl = HttpLimits {
            max_header_bytes: limits.max_header_bytes,
            max_headers: limits.max_headers,
        };
        match http::parse_request(input, &hl) {
            Ok(Some((head, used))) => {
                self.state = State::AwaitAnswer {
                    served,
                    rest: used < input.len(),
                };
                (Step::Request { head, len: used }, 0)
            }
            Ok(None) => (Step::Idle, 0),
            Err(e) => {
                self.refuse(e.status(), e.reason(), counters, out, |out| {
                    e.write_response(out)
                });
                (Step::Idle, input.len())
            }
        }
    }

    // ── answering a request ────────────────────────────────────────────────────────────────

    /// Whether an earlier request on this connection was served.
    fn served_before(&self) -> bool {
        match self.state {
            State::AwaitAnswer { served, .. } => served,
            _ => true,
        }
    }

    /// Before anyone accepts the upgrade `head`: check its WebSocket headers. When they fail,
    /// the error answer is written, the connection closes, and `None` is returned.
    pub fn check_upgrade(
        &mut self,
        head: &RequestHead,
        out: &mut Vec<u8>,
        counters: &mut Counters,
    ) -> Option<[u8; 28]> {
        match http::validate_upgrade(head) {
            Ok(accept) => Some(accept),
            Err(e) => {
                self.refuse(e.status(), e.reason(), counters, out, |out| {
                    e.write_response(out)
                });
                None
            }
        }
    }

    /// Accept the upgrade (`accept` from [`Conn::check_upgrade`]): the 101 is written and
    /// frames flow.
    pub fn upgrade(
        &mut self,
        now: Tick,
        accept: &[u8; 28],
        out: &mut Vec<u8>,
        counters: &mut Counters,
    ) {
        http::write_switching_protocols(accept, out);
        counters.upgrades += 1;
        self.decoder = Decoder::new();
        self.state = State::Open { piped: false };
        self.phase_at = now;
    }

    /// Answer with `resp`; keep-alive permitting, wait for the next request.
    pub fn respond(
        &mut self,
        now: Tick,
        head: &RequestHead,
        resp: &Response,
        out: &mut Vec<u8>,
        counters: &mut Counters,
    ) {
        let body_read = self.state == State::AwaitBodyAnswer;
        if head.upgrade.is_some() && resp.status >= 400 {
            let reason = match resp.status {
                404 => "not_found",
                405 => "method_not_allowed",
                _ => "refused",
            };
            counters.rejected.push((resp.status, reason));
        }
        // A body we do not read would desynchronise the next request, and a client refused a
        // WebSocket has no use for the connection: close after either.
        let keep_alive =
            head.keep_alive && (body_read || !has_body(head)) && head.upgrade.is_none();
        self.write_answer(
            now,
            head.method == http::Method::Head,
            resp,
            keep_alive,
            out,
        );
    }

    /// Read the request's body (at most `max` bytes: a larger `Content-Length` is refused
    /// with 413 before any body byte is read, a chunked body as soon as its running total
    /// passes `max`); it comes back as [`Step::Body`].
    pub fn read_body(
        &mut self,
        now: Tick,
        head: RequestHead,
        max: usize,
        out: &mut Vec<u8>,
        counters: &mut Counters,
    ) {
        // `100 Continue` only while the client may be waiting for it (no body byte yet).
        let body_started = matches!(self.state, State::AwaitAnswer { rest: true, .. });
        let framing = match head.content_length {
            _ if head.chunked => BodyFraming::Chunked(http::ChunkedDecoder::new(max as u64)),
            Some(n) if n > max as u64 => {
                // Refused from the head alone: none of the body is read.
                let e = http::HttpError::BodyTooLarge;
                self.refuse(e.status(), "body_too_large", counters, out, |out| {
                    e.write_response(out)
                });
                return;
            }
            Some(n) => BodyFraming::Length(n),
            None => BodyFraming::Length(0),
        };
        if head.expect_continue && !body_started && !matches!(framing, BodyFraming::Length(0)) {
            http::write_continue(out);
        }
        self.partial = Some(Box::new(Pending::Body(BodyRead {
            head,
            data: Vec::new(),
            framing,
        })));
        self.state = State::ExpectBody;
        self.phase_at = now;
    }

    /// Answer later, with [`Conn::answer_held`]; if nothing came by `until`, `fallback` is the
    /// answer. Nothing more is read as a request until then (the socket is still watched for
    /// EOF).
    pub fn hold(&mut self, head: &RequestHead, until: Tick, fallback: Response) {
        let body_read = self.state == State::AwaitBodyAnswer;
        // A GET carrying a body is read no further: the connection ends after the answer.
        let ends = !body_read && has_body(head);
        self.partial = Some(Box::new(Pending::Held(HeldRequest {
            keep_alive: head.keep_alive && !ends && head.upgrade.is_none(),
            head_only: head.method == http::Method::Head,
            fallback,
        })));
        self.state = State::Held;
        self.phase_at = until;
    }

    /// The request belongs to another core: it stays in the input, unread, and the machine
    /// stops until [`Conn::unpark`] on the core it moves to. A request is relocated at most
    /// once.
    pub fn relocate(&mut self) {
        let served = self.served_before();
        self.state = State::Relocating {
            served,
            waits: false,
        };
    }

    /// The request waits, unread, for the answer of the cluster node its dialect lives on
    /// (then [`Conn::unpark`], and it is read again); past `until`, 504.
    pub fn await_elsewhere(&mut self, until: Tick) {
        let served = self.served_before();
        self.state = State::Relocating {
            served,
            waits: true,
        };
        self.phase_at = until;
    }

    /// A held request gets a new deadline and fallback (its answer came from another node).
    pub fn rehold(&mut self, until: Tick, fallback: Response) {
        if let (State::Held, Some(Pending::Held(h))) = (self.state, self.partial.as_deref_mut()) {
            h.fallback = fallback;
            self.phase_at = until;
        }
    }

    /// Resume after a move (on the new core): the request is read again from its first byte.
    pub fn unpark(&mut self, now: Tick) {
        if let State::Relocating { served, .. } = self.state {
            // Each core counts time from its own epoch: the handshake clock restarts here
            // (once: a request is relocated at most once).
            self.state = State::ExpectRequest { served };
            self.last_rx = now;
            self.phase_at = now;
        }
    }

    /// Answer the held request; keep-alive permitting, the connection then waits for its next
    /// request. Returns false (and writes nothing) if no request is held.
    pub fn answer_held(&mut self, now: Tick, resp: &Response, out: &mut Vec<u8>) -> bool {
        if self.state != State::Held {
            return false;
        }
        let Some(Pending::Held(h)) = self.partial.take().map(|p| *p) else {
            self.state = State::Closed;
            return false;
        };
        self.write_answer(now, h.head_only, resp, h.keep_alive, out);
        true
    }

    // ── other inputs ───────────────────────────────────────────────────────────────────────

    /// The peer will send no more bytes. (A body cut short is dropped unanswered.)
    pub fn eof(&mut self) {
        self.partial = None;
        self.state = State::Closed;
        self.flags |= PEER_DONE;
    }

    /// Act on whatever deadline has passed at `now`.
    pub fn timeout(
        &mut self,
        now: Tick,
        limits: &Limits,
        out: &mut Vec<u8>,
        counters: &mut Counters,
    ) {
        let Some(deadline) = self.poll_timeout(limits) else {
            return;
        };
        if !now.reached(deadline) {
            return;
        }
        match self.state {
            State::ExpectRequest { served: false } => {
                counters.handshake_timeouts += 1;
                counters.rejected.push((408, "timeout"));
                http::write_response(
                    408,
                    Some("text/plain"),
                    &[],
                    b"request timeout\n",
                    false,
                    out,
                );
                self.state = State::Closed;
            }
            State::ExpectRequest { served: true } => self.state = State::Closed,
            State::Held => {
                if let Some(Pending::Held(h)) = self.partial.take().map(|p| *p) {
                    self.write_answer(now, h.head_only, &h.fallback, h.keep_alive, out);
                } else {
                    self.state = State::Closed;
                }
            }
            State::ExpectBody => {
                self.partial = None;
                counters.rejected.push((408, "body_timeout"));
                http::write_response(
                    408,
                    Some("text/plain"),
                    &[],
                    b"request body timeout\n",
                    false,
                    out,
                );
                self.state = State::Closed;
            }
            State::Open { .. } => {
                let idle_at = nonzero(limits.idle_timeout).map(|d| self.last_rx.after(d));
                if idle_at.is_some_and(|t| now.reached(t)) {
                    counters.idle_timeouts += 1;
                    self.send_close(out, 1001, "idle timeout");
                    self.partial = None;
                    self.state = State::Closed;
                } else {
                    encode_frame(true, OpCode::Ping, b"", out);
                    counters.frames_out += 1;
                    counters.pings_sent += 1;
                    self.phase_at = now;
                }
            }
            State::Closing { .. } => self.state = State::Closed,
            State::Relocating { waits: true, .. } => {
                counters.rejected.push((504, "cluster_timeout"));
                let r = Response::text(
                    504,
                    "no answer from the cluster node this request belongs to",
                );
                r.write(false, false, out);
                self.state = State::Closed;
            }
            State::AwaitAnswer { .. }
            | State::AwaitBodyAnswer
            | State::Relocating { .. }
            | State::Closed => {}
        }
    }

    /// Start a server-initiated close (shutdown, policy): a WebSocket gets a close frame and
    /// waits for the peer's; anything else just ends. Idempotent.
    pub fn close(&mut self, now: Tick, code: u16, reason: &str, out: &mut Vec<u8>) {
        match self.state {
            State::Open { .. } => {
                self.send_close(out, code, reason);
                self.partial = None;
                self.state = State::Closing { desynced: false };
                self.phase_at = now;
            }
            State::Closing { .. } | State::Closed => {}
            _ => {
                self.partial = None;
                self.state = State::Closed
            }
        }
    }

    /// The server is shutting down. A connection between requests (nothing of a next one
    /// read) or holding a long poll closes now (its client comes back to whichever process
    /// serves then); one whose request is under way is answered, without keep-alive, and then
    /// closes. Returns whether it closed now. (An open WebSocket is the caller's: it is
    /// closed with 1001.)
    pub fn drain(&mut self) -> bool {
        self.flags |= DRAINING;
        let idle = self.partial.is_none() && self.unread == 0;
        match self.state {
            State::ExpectRequest { served: true } if idle => self.state = State::Closed,
            State::Held => {
                self.partial = None;
                self.state = State::Closed;
            }
            _ => {}
        }
        self.is_closed()
    }

    /// Drop the connection without ceremony (a slow reader, a broken socket).
    pub fn abort(&mut self) {
        self.partial = None;
        self.state = State::Closed;
    }

    // ── cut-through forwarding (the pipe) ──────────────────────────────────────────────────

    /// Switch to cut-through forwarding, at a message boundary. If a message is half read
    /// (its start is being reassembled), the switch happens by itself right after that message
    /// completes (it still comes out whole as a [`Step::Message`]). Returns whether the
    /// connection is piped now.
    pub fn start_piping(&mut self) -> bool {
        match self.state {
            State::Open { piped: false } => {
                self.flags |= PIPE_PENDING;
                if !self.decoder.in_message() && !self.reassembling() {
                    self.switch_to_pipe_if_pending();
                }
                self.is_piped()
            }
            State::Open { piped: true } => true,
            _ => false,
        }
    }

    fn reassembling(&self) -> bool {
        matches!(self.partial.as_deref(), Some(Pending::Message(_)))
    }

    fn switch_to_pipe_if_pending(&mut self) -> bool {
        if self.flags & PIPE_PENDING != 0 && matches!(self.state, State::Open { .. }) {
            self.flags &= !PIPE_PENDING;
            self.state = State::Open { piped: true };
            return true;
        }
        false
    }

    /// True while data frames are forwarded cut-through.
    pub fn is_piped(&self) -> bool {
        matches!(self.state, State::Open { piped: true })
    }

    /// True while the frame being read is only partly through. For a piped connection that
    /// means its peer's output stream holds half a frame: nothing else may go there until the
    /// frame ends (and if this side dies now, the peer can only be dropped, not closed).
    pub fn mid_frame(&self) -> bool {
        self.decoder.in_frame()
    }

    /// Decode piped input up to the next thing the shell must act on. Control frames are
    /// answered here (a pong, or the reply to a close) into `out`, this connection's own send
    /// queue; data goes to the peer through [`Step::Forward`], chunk by chunk.
    fn read_piped(
        &mut self,
        now: Tick,
        limits: &Limits,
        input: &mut [u8],
        out: &mut Vec<u8>,
        counters: &mut Counters,
    ) -> (Step<'static>, usize) {
        let dl = decoder_limits(limits);
        let mut pos = 0;
        while pos <= input.len() {
            let (item, used) = match self.decoder.decode(&dl, &mut input[pos..]) {
                Ok(step) => step,
                Err(e) => {
                    counters.protocol_errors += 1;
                    self.send_close(out, e.close_code(), &e.to_string());
                    self.state = State::Closing { desynced: true };
                    self.phase_at = now;
                    return (Step::Ended { code: 1001 }, input.len());
                }
            };
            let base = pos;
            pos += used;
            match item {
                Item::NeedMore => {
                    // A frame header cut short: offered again with the next bytes.
                    self.unread = u32::try_from(input.len() - pos).unwrap_or(u32::MAX);
                    return (Step::Idle, pos);
                }
                Item::Data {
                    range,
                    kind,
                    frame_start,
                    frame_end,
                    message_start,
                    frame_len,
                    fin,
                    ..
                } => {
                    let mut header = [0u8; 10];
                    let header_len = if frame_start {
                        let opcode = if message_start {
                            kind.opcode()
                        } else {
                            OpCode::Continuation
                        };
                        encode_header(fin, opcode, frame_len, &mut header)
                    } else {
                        0
                    };
                    if frame_end {
                        counters.frames_in += 1;
                        counters.frames_out += 1;
                    }
                    let step = Step::Forward {
                        header,
                        header_len: header_len as u8,
                        payload: base + range.start..base + range.end,
                    };
                    return (step, pos);
                }
                Item::Control { opcode, range } => {
                    counters.frames_in += 1;
                    let payload = &input[base + range.start..base + range.end];
                    match opcode {
                        OpCode::Ping => {
                            encode_frame(true, OpCode::Pong, payload, out);
                            counters.frames_out += 1;
                        }
                        OpCode::Close => {
                            let code = parse_close_payload(payload).ok().flatten().map(|(c, _)| c);
                            self.send_close(out, code.unwrap_or(1000), "");
                            self.state = State::Closed;
                            return (
                                Step::Ended {
                                    code: code.unwrap_or(1000),
                                },
                                input.len(),
                            );
                        }
                        _ => {}
                    }
                    if pos == input.len() {
                        return (Step::Idle, pos);
                    }
                }
            }
        }
        (Step::Idle, pos.min(input.len()))
    }

    // ── internals ──────────────────────────────────────────────────────────────────────────

    fn body_mut(&mut self) -> Option<&mut BodyRead> {
        match self.partial.as_deref_mut() {
            Some(Pending::Body(b)) => Some(b),
            _ => None,
        }
    }

    /// The reassembly buffer of the message being read (created empty if there is none).
    fn message_buf(&mut self) -> &mut Vec<u8> {
        if !self.reassembling() {
            self.partial = Some(Box::new(Pending::Message(Vec::new())));
        }
        match self.partial.as_deref_mut() {
            Some(Pending::Message(v)) => v,
            _ => unreachable!("set to a message just above"),
        }
    }

    /// Write `resp` (without its body for a HEAD request), then wait for the next request or
    /// close.
    fn write_answer(
        &mut self,
        now: Tick,
        head_only: bool,
        resp: &Response,
        keep_alive: bool,
        out: &mut Vec<u8>,
    ) {
        let keep_alive = keep_alive && self.flags & DRAINING == 0;
        resp.write(head_only, keep_alive, out);
        self.partial = None;
        self.state = if keep_alive {
            State::ExpectRequest { served: true }
        } else {
            State::Closed
        };
        self.phase_at = now;
    }

    /// Take body bytes from `input`; once the body is whole, hand it out.
    fn take_body(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        counters: &mut Counters,
    ) -> (Step<'static>, usize) {
        let Some(b) = self.body_mut() else {
            // Unreachable by construction (ExpectBody always has a body); fail closed.
            self.state = State::Closed;
            return (Step::Idle, input.len());
        };
        let used = match &mut b.framing {
            BodyFraming::Length(remaining) => {
                // Fits in usize: bounded by `input.len()`.
                let take = (*remaining).min(input.len() as u64) as usize;
                b.data.extend_from_slice(&input[..take]);
                *remaining -= take as u64;
                if *remaining > 0 {
                    return (Step::Idle, take); // the rest of the body is still to come
                }
                take
            }
            BodyFraming::Chunked(dec) => match dec.feed(input, &mut b.data) {
                Ok(Some(n)) => n,
                Ok(None) => return (Step::Idle, input.len()),
                Err(e) => {
                    let reason = match e {
                        http::HttpError::BodyTooLarge => "body_too_large",
                        _ => "bad_chunked_body",
                    };
                    self.refuse(e.status(), reason, counters, out, |out| {
                        e.write_response(out)
                    });
                    return (Step::Idle, input.len());
                }
            },
        };
        (self.body_done(), used)
    }

    fn body_done(&mut self) -> Step<'static> {
        match self.partial.take().map(|p| *p) {
            Some(Pending::Body(b)) => {
                self.state = State::AwaitBodyAnswer;
                Step::Body(b.head, b.data)
            }
            _ => {
                self.state = State::Closed;
                Step::Idle
            }
        }
    }

    /// Answer a request we will not serve with an error response, and close after it.
    fn refuse(
        &mut self,
        status: u16,
        reason: &'static str,
        counters: &mut Counters,
        out: &mut Vec<u8>,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        counters.rejected.push((status, reason));
        write(out);
        self.partial = None;
        self.state = State::Closed;
    }

    fn read_frames<'a>(
        &'a mut self,
        now: Tick,
        limits: &Limits,
        input: &'a mut [u8],
        out: &mut Vec<u8>,
        counters: &mut Counters,
    ) -> (Step<'a>, usize) {
        let closing = matches!(self.state, State::Closing { .. });
        let dl = decoder_limits(limits);
        let mut pos = 0;
        while pos < input.len() {
            // Text that comes whole in one chunk (nearly all of it) is checked as UTF-8 here,
            // once, into the `str` the message carries; the decoder checks the rest.
            let (item, used) = match self.decoder.decode_deferring_utf8(&dl, &mut input[pos..]) {
                Ok(step) => step,
                Err(e) => {
                    self.fail(now, &e, out, counters);
                    return (Step::Idle, input.len());
                }
            };
            let base = pos;
            pos += used;
            match item {
                Item::NeedMore => break,
                Item::Data {
                    range,
                    kind,
                    frame_end,
                    message_start,
                    message_end,
                    ..
                } => {
                    let chunk = base + range.start..base + range.end;
                    let whole = message_start && message_end;
                    if whole && !closing && !self.reassembling() {
                        // Delivered from the read buffer.
                        let payload = &input[chunk];
                        let message = match kind {
                            DataKind::Binary => Message::Binary(payload),
                            DataKind::Text => match whole_str(payload) {
                                Some(text) => Message::Text(text),
                                None => {
                                    let e = self.decoder.fail_invalid_utf8();
                                    self.fail(now, &e, out, counters);
                                    return (Step::Idle, input.len());
                                }
                            },
                        };
                        counters.frames_in += 1;
                        counters.messages_in += 1;
                        self.switch_to_pipe_if_pending();
                        return (Step::Message(message), pos);
                    }
                    if whole && kind == DataKind::Text && whole_str(&input[chunk.clone()]).is_none()
                    {
                        let e = self.decoder.fail_invalid_utf8();
                        self.fail(now, &e, out, counters);
                        return (Step::Idle, input.len());
                    }
                    if frame_end {
                        counters.frames_in += 1;
                    }
                    if closing {
                        continue; // after our close, data is read and dropped
                    }
                    self.message_buf().extend_from_slice(&input[chunk]);
                    if message_end {
                        counters.messages_in += 1;
                        self.switch_to_pipe_if_pending();
                        if let Some(p) = self.partial.as_deref_mut() {
                            if let Pending::Message(v) = p {
                                let v = std::mem::take(v);
                                *p = match kind {
                                    DataKind::Binary => Pending::Delivered(v),
                                    // The decoder checked it as it came, so this cannot fail
                                    // (were it to, the message would go as empty text).
                                    DataKind::Text => Pending::DeliveredText(
                                        String::from_utf8(v).unwrap_or_default(),
                                    ),
                                };
                            }
                        }
                        let message = match (kind, self.partial.as_deref()) {
                            (_, Some(Pending::Delivered(v))) => Message::Binary(v),
                            (_, Some(Pending::DeliveredText(t))) => Message::Text(t),
                            (DataKind::Binary, _) => Message::Binary(&[]),
                            (DataKind::Text, _) => Message::Text(""),
                        };
                        return (Step::Message(message), pos);
                    }
                }
                Item::Control { opcode, range } => {
                    counters.frames_in += 1;
                    let payload = &input[base + range.start..base + range.end];
                    match opcode {
                        OpCode::Ping if !closing => {
                            encode_frame(true, OpCode::Pong, payload, out);
                            counters.frames_out += 1;
                        }
                        OpCode::Close => {
                            // The decoder validated the payload; parse it again for the code.
                            if !closing {
                                // Answer with the peer's code (or a plain 1000 if it gave none).
                                let code =
                                    parse_close_payload(payload).ok().flatten().map(|(c, _)| c);
                                self.send_close(out, code.unwrap_or(1000), "");
                            }
                            self.partial = None;
                            self.state = State::Closed;
                            if pos == input.len() {
                                self.flags |= PEER_DONE;
                            }
                            return (Step::Idle, input.len());
                        }
                        _ => {} // pongs (and pings while closing) need no answer
                    }
                }
            }
        }
        // What is left is a frame header cut short: offered again with the next bytes.
        self.unread = u32::try_from(input.len() - pos).unwrap_or(u32::MAX);
        (Step::Idle, pos)
    }

    fn fail(&mut self, now: Tick, e: &WsError, out: &mut Vec<u8>, counters: &mut Counters) {
        counters.protocol_errors += 1;
        self.partial = None;
        if matches!(self.state, State::Open { .. }) {
            self.send_close(out, e.close_code(), &e.to_string());
        }
        // The byte stream can no longer be trusted: wait for the peer to hang up, reading
        // nothing into frames.
        self.state = State::Closing { desynced: true };
        self.phase_at = now;
    }

    fn send_close(&mut self, out: &mut Vec<u8>, code: u16, reason: &str) {
        if code == crate::proto::ws::NO_STATUS {
            encode_frame(true, OpCode::Close, b"", out);
            return;
        }
        let mut buf = [0u8; 2 + 125];
        let n = encode_close(code, reason, &mut buf);
        out.extend_from_slice(&buf[..n]);
    }
}

/// The decoder's limits, passed to it with each read (it does not store them). Sizes over
/// what its 16-byte state can count (`DecoderLimits::MAX_FRAME`, 256 MiB less a byte, and
/// `MAX_MESSAGE`, 4 GiB less a byte; the config allows more) are clamped by the decoder.
fn decoder_limits(limits: &Limits) -> DecoderLimits {
    DecoderLimits {
        max_frame: limits.max_frame_size as u64,
        max_message: limits.max_message_size as u64,
    }
}

fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

#[cfg(any(test, feature = "fuzzing"))]
pub mod driver;

#[cfg(test)]
mod tests;
