//! The per-connection state machine: HTTP/1.1 requests, the WebSocket upgrade, then RFC 6455
//! framing, timers and the close handshake.
//!
//! ```text
//!            request head (keep-alive: repeat)
//!   ┌──────────────┐ ─────────────────────────────┐
//!   │ExpectRequest │  plain response               │
//!   └──────┬───────┘ ◄────────────────────────────┘
//!          │ ▲ head routed to a body: read it (Content-Length or chunked), then respond
//!          │ └──────────── ExpectBody (413 early, 408 on a slow body, 400 on bad chunks) ──►Closed
//!          │ upgrade accepted (101 written)
//!          ▼
//!   ┌──────────────┐  our close sent / peer error   ┌─────────┐  peer's close or linger   ┌────────┐
//!   │     Open     │ ─────────────────────────────► │ Closing │ ────────────────────────► │ Closed │
//!   └──────────────┘                                └─────────┘                           └────────┘
//!          │ peer's close received (we answer it), EOF, error response, timeout ───────────────▲
//! ```
//!
//! # The driver contract
//!
//! The shell owns the socket, the buffers and the clock. It calls
//! [`Conn::handle_read`] with the plaintext it has buffered (which the machine may unmask in
//! place) and an outbound buffer to append to, [`Conn::handle_eof`] when the peer's write side
//! ends, and [`Conn::handle_timeout`] once [`Conn::poll_timeout`] has passed. After every call
//! it flushes the outbound buffer and recomputes its wishes from [`Conn::wants_read`] and
//! [`Conn::is_closed`]: when the machine is closed and the outbound bytes are written, the shell
//! closes the socket. What a request or a message *means* is not decided here: the machine
//! asks the [`App`] the shell passes in (routing, dialect logic, metrics), so this file only
//! knows the protocols, never the dialects.
//!
//! What this module deliberately does not own: sockets, TLS, buffers' memory, real time, and
//! anything that spans connections (rooms, pairs, cross-core delivery).

use crate::config::Limits;
use crate::proto::http::{self, HttpLimits, RequestHead};
use crate::proto::time::{earliest, Tick};
use crate::proto::ws::{
    encode_close, encode_frame, encode_header, parse_close_payload, DataKind, Decoder,
    DecoderLimits, Item, OpCode, WsError,
};
use std::time::Duration;

/// How long we wait for the peer's close frame after sending ours before giving up.
pub const CLOSE_LINGER: Duration = Duration::from_secs(3);

/// Where an upgraded connection goes. A closed set: adding a dialect adds a variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/echo`: every message comes back unchanged (conformance testing).
    Echo,
    /// cevitxe / relay `/introduction/:id`: discovery.
    Introduction,
    /// cevitxe / relay `/connection/:a/:b/:key`: a pipe between two peers.
    Connection,
    /// MewConnect v2 (an upgrade on a configured path with the `role` query).
    MewConnect,
    /// Peerolator `/server`.
    PeerServer,
    /// Peerolator `/client/:serverId`.
    PeerClient,
    /// Engine.IO 3 WebSocket transport (`/socket.io/`, webRTWorkspaces and MewConnect v1).
    SocketIo,
}

impl Endpoint {
    /// Every endpoint, in discriminant order (metrics index by `endpoint as usize`).
    pub const ALL: [Endpoint; 7] = [
        Endpoint::Echo,
        Endpoint::Introduction,
        Endpoint::Connection,
        Endpoint::MewConnect,
        Endpoint::PeerServer,
        Endpoint::PeerClient,
        Endpoint::SocketIo,
    ];

    /// Name used in logs and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Echo => "echo",
            Endpoint::Introduction => "cevitxe_introduction",
            Endpoint::Connection => "cevitxe_connection",
            Endpoint::MewConnect => "mewconnect",
            Endpoint::PeerServer => "peerolator_server",
            Endpoint::PeerClient => "peerolator_client",
            Endpoint::SocketIo => "socketio",
        }
    }
}

/// A plain HTTP response chosen by the [`App`].
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// A short `text/plain` answer.
    pub fn text(status: u16, body: &str) -> Self {
        Response::new(status, "text/plain; charset=utf-8", format!("{body}\n"))
    }
}

/// The App's decision about a request head.
#[derive(Debug)]
pub enum Routed {
    /// Accept the WebSocket upgrade (if it is valid) on this endpoint. With `park`, the machine
    /// stops right after writing the 101 response and waits for [`Conn::unpark`]: the shell
    /// uses that to move the connection to another core before any frame is read.
    Upgrade { endpoint: Endpoint, park: bool },
    /// Answer with this response (keep-alive permitting, the connection stays open).
    Respond(Response),
    /// Do not answer here: the request belongs to another core (the App noted which). The
    /// machine stops *before* consuming the request and reports itself parked; the shell moves
    /// the connection with the unconsumed bytes, and after [`Conn::unpark`] the request is read
    /// again from its first byte, on the core whose state decides the answer (e.g. whether an
    /// upgrade is accepted or refused). An App must not relocate a request twice.
    Relocate,
    /// Read the request's body first (`Content-Length` or chunked; a request with neither has
    /// an empty body), at most `max` bytes: a larger `Content-Length` is refused with 413
    /// before any body byte is read, a chunked body as soon as its running total passes `max`.
    /// Then [`App::on_request_body`] decides the response.
    Body { max: usize },
    /// Answer later (a long-poll): the App keeps the request and answers it with
    /// [`Conn::answer_held`]. Nothing more is read as a request until then (the socket is
    /// still watched for EOF); if no answer came by `until`, `fallback` is the answer.
    Hold { until: Tick, fallback: Response },
}

/// Whether a handshake succeeded, for the App's metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    Upgraded(Endpoint),
    /// The request was answered with an error status; `reason` names the rule, e.g. `missing_key`.
    Rejected {
        status: u16,
        reason: &'static str,
    },
}

/// What the machine asks of its surroundings. The shell implements it per drive call.
pub trait App {
    /// Decide what a request is: an upgrade to an endpoint or a plain response.
    fn route(&mut self, now: Tick, head: &RequestHead) -> Routed;
    /// A handshake finished (either way).
    fn on_handshake(&mut self, outcome: Handshake);
    /// A complete WebSocket message arrived. Replies to the sender go through `out`.
    fn on_message(
        &mut self,
        now: Tick,
        endpoint: Endpoint,
        kind: DataKind,
        payload: &[u8],
        out: &mut Outbox<'_>,
    );
    /// The whole body of a request routed with [`Routed::Body`] arrived: decide the response
    /// (keep-alive permitting, the connection stays open for the next request).
    fn on_request_body(&mut self, now: Tick, head: &RequestHead, body: &[u8]) -> Response {
        let _ = (now, head, body);
        Response::text(404, "not found")
    }
    /// The connection closed (after being open as a WebSocket): `code` is what was sent or
    /// received, if any.
    fn on_ws_close(&mut self, endpoint: Endpoint, code: Option<u16>) {
        let _ = (endpoint, code);
    }
}

/// Counters the machine updates for the shell's metrics (plain integers: the shell publishes
/// them).
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
}

/// What [`Conn::handle_read_piped`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipeStep {
    /// Nothing more to forward from this input; drop `consumed` bytes.
    NeedMore { consumed: usize },
    /// Send `header[..header_len]` (empty for a frame's later chunks) and then
    /// `input[payload]` (unmasked in place) to the peer; drop `consumed` bytes.
    Forward {
        header: [u8; 10],
        header_len: u8,
        payload: std::ops::Range<usize>,
        consumed: usize,
    },
    /// This side is done (its close was answered, or it broke the protocol): after what was
    /// already forwarded, close the peer with `code`; drop `consumed` bytes.
    Ended { code: u16, consumed: usize },
}

/// A handle for writing whole server frames onto one connection's outbound buffer.
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

    pub fn text(&mut self, payload: &str) {
        self.send(DataKind::Text, payload.as_bytes());
    }

    /// Bytes waiting to be written on this connection, including what was queued before.
    pub fn pending(&self) -> usize {
        self.out.len()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for (the rest of) a request head. `served` tells whether an earlier request on
    /// this connection was answered (then the keep-alive timeout applies, not the handshake one).
    ExpectRequest { served: bool },
    /// The request in the input belongs to another core ([`Routed::Relocate`]): nothing is read
    /// until the shell has moved the connection and called [`Conn::unpark`].
    Relocating { served: bool },
    /// Reading the body of a request the App routed with [`Routed::Body`] (its head and the
    /// bytes so far are in [`Conn::body`]); `phase_at` is when its head ended.
    ExpectBody,
    /// A request the App answers later ([`Routed::Hold`]); `phase_at` is its deadline.
    Held,
    /// Upgraded; frames flow. `parked` holds input until the shell calls `unpark`; `piped`
    /// means data frames are forwarded cut-through ([`Conn::handle_read_piped`]) instead of
    /// being reassembled into messages for the App.
    Open {
        endpoint: Endpoint,
        parked: bool,
        piped: bool,
    },
    /// We sent a close frame and wait for the peer's. `desynced`: the stream broke a framing
    /// rule, so its bytes are discarded instead of decoded.
    Closing { endpoint: Endpoint, desynced: bool },
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
    /// Reassembly of a message that did not arrive in one piece (Open), or the request whose
    /// body is being read (ExpectBody); dropped when it completes. One pointer in every idle
    /// Conn.
    partial: Option<Box<Pending>>,
    /// Switch to piped mode at the next message boundary.
    pipe_pending: bool,
}

/// What a connection holds between reads, boxed (see [`Conn::partial`]).
#[allow(clippy::large_enum_variant)] // always behind the Box in `Conn::partial`
enum Pending {
    Message(Vec<u8>),
    Body(BodyRead),
    Held(HeldRequest),
}

/// A request waiting for the App's answer.
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

impl Conn {
    /// A fresh connection, accepted at `now`.
    pub fn new(now: Tick, limits: &Limits) -> Self {
        Conn {
            state: State::ExpectRequest { served: false },
            decoder: Decoder::new(decoder_limits(limits)),
            phase_at: now,
            last_rx: now,
            partial: None,
            pipe_pending: false,
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
            | State::Closing { .. } => true,
            State::Open { parked, .. } => !parked,
            State::Relocating { .. } | State::Closed => false,
        };
        state_reads && pending_out < high_water
    }

    /// True once nothing more will happen but flushing what is queued.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// True while the connection is an upgraded WebSocket (open or closing).
    pub fn endpoint(&self) -> Option<Endpoint> {
        match self.state {
            State::Open { endpoint, .. } | State::Closing { endpoint, .. } => Some(endpoint),
            _ => None,
        }
    }

    /// True while the connection is an open WebSocket (no close sent or received).
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open { .. })
    }

    /// True while a request waits for [`Conn::answer_held`].
    pub fn is_held(&self) -> bool {
        self.state == State::Held
    }

    /// Answer the held request (see [`Routed::Hold`]); keep-alive permitting, the connection
    /// then waits for its next request. Returns false (and writes nothing) if no request is
    /// held.
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

    /// True when the machine stopped after an upgrade, waiting for the shell to move it.
    pub fn is_parked(&self) -> bool {
        matches!(
            self.state,
            State::Open { parked: true, .. } | State::Relocating { .. }
        )
    }

    /// True while no request has been completed yet (TLS or HTTP handshake phase).
    pub fn is_handshaking(&self) -> bool {
        matches!(
            self.state,
            State::ExpectRequest { served: false } | State::Relocating { served: false }
        )
    }

    /// Resume input after a park (on the new core).
    pub fn unpark(&mut self, now: Tick) {
        if let State::Relocating { served } = self.state {
            // Each core counts time from its own epoch: the handshake clock restarts here
            // (once: a request is relocated at most once).
            self.state = State::ExpectRequest { served };
            self.last_rx = now;
            self.phase_at = now;
            return;
        }
        if let State::Open {
            endpoint, piped, ..
        } = self.state
        {
            self.state = State::Open {
                endpoint,
                parked: false,
                piped,
            };
            self.last_rx = now;
            self.phase_at = now;
        }
    }

    /// The next instant at which [`Conn::handle_timeout`] has something to do.
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
            State::Held => Some(self.phase_at),
            State::Open { parked: true, .. } | State::Relocating { .. } | State::Closed => None,
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

    // ── inputs ─────────────────────────────────────────────────────────────────────────────

    /// Consume plaintext from `input` (which may be unmasked in place) and append any output to
    /// `out`. Returns how many bytes of `input` were consumed; the rest must be offered again
    /// with more bytes behind it.
    pub fn handle_read<A: App>(
        &mut self,
        now: Tick,
        limits: &Limits,
        input: &mut [u8],
        out: &mut Vec<u8>,
        counters: &mut Counters,
        app: &mut A,
    ) -> usize {
        let mut pos = 0;
        loop {
            let before = pos;
            match self.state {
                State::ExpectRequest { .. } => {
                    pos += self.read_request(now, limits, &input[pos..], out, app)
                }
                State::ExpectBody => pos += self.read_body(now, &input[pos..], out, app),
                // Piped input goes through `handle_read_piped`.
                State::Held
                | State::Open { parked: true, .. }
                | State::Open { piped: true, .. }
                | State::Relocating { .. }
                | State::Closed => {}
                State::Open { endpoint, .. } => {
                    pos += self.read_frames(now, endpoint, &mut input[pos..], out, counters, app)
                }
                State::Closing { endpoint, desynced } => {
                    if desynced {
                        pos = input.len(); // the stream is broken: discard until the peer goes
                    } else {
                        pos +=
                            self.read_frames(now, endpoint, &mut input[pos..], out, counters, app)
                    }
                }
            }
            // Continue only when the state moved on and left input behind (pipelined
            // requests, or frames that arrived with the upgrade request).
            if pos == before || pos >= input.len() || !self.state_continues() {
                break;
            }
        }
        if pos > 0 {
            self.last_rx = now;
        }
        pos
    }

    /// The peer will send no more bytes.
    pub fn handle_eof<A: App>(&mut self, app: &mut A) {
        // From Closing, the App already heard of the close when our close frame went out.
        if let State::Open { endpoint, .. } = self.state {
            app.on_ws_close(endpoint, None);
        }
        // A body cut short by EOF is dropped unanswered: the request never completed.
        self.partial = None;
        self.state = State::Closed;
    }

    /// Act on whatever deadline has passed at `now`.
    pub fn handle_timeout<A: App>(
        &mut self,
        now: Tick,
        limits: &Limits,
        out: &mut Vec<u8>,
        counters: &mut Counters,
        app: &mut A,
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
                app.on_handshake(Handshake::Rejected {
                    status: 408,
                    reason: "timeout",
                });
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
                app.on_handshake(Handshake::Rejected {
                    status: 408,
                    reason: "body_timeout",
                });
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
            State::Open { endpoint, .. } => {
                let idle_at = nonzero(limits.idle_timeout).map(|d| self.last_rx.after(d));
                if idle_at.is_some_and(|t| now.reached(t)) {
                    counters.idle_timeouts += 1;
                    self.send_close(out, 1001, "idle timeout");
                    app.on_ws_close(endpoint, Some(1001));
                    self.state = State::Closed;
                } else {
                    encode_frame(true, OpCode::Ping, b"", out);
                    counters.frames_out += 1;
                    counters.pings_sent += 1;
                    self.phase_at = now;
                }
            }
            State::Closing { .. } => self.state = State::Closed,
            State::Relocating { .. } | State::Closed => {}
        }
    }

    /// Start a server-initiated close (shutdown, policy). Idempotent.
    pub fn begin_close<A: App>(
        &mut self,
        now: Tick,
        code: u16,
        reason: &str,
        out: &mut Vec<u8>,
        app: &mut A,
    ) {
        match self.state {
            State::Open { endpoint, .. } => {
                self.send_close(out, code, reason);
                app.on_ws_close(endpoint, Some(code));
                self.state = State::Closing {
                    endpoint,
                    desynced: false,
                };
                self.phase_at = now;
            }
            State::ExpectRequest { .. }
            | State::Relocating { .. }
            | State::ExpectBody
            | State::Held => {
                self.partial = None;
                self.state = State::Closed
            }
            State::Closing { .. } | State::Closed => {}
        }
    }

    /// Drop the connection without ceremony (a slow reader, a broken socket).
    pub fn abort<A: App>(&mut self, app: &mut A) {
        if let State::Open { endpoint, .. } = self.state {
            app.on_ws_close(endpoint, Some(1006));
        }
        self.partial = None;
        self.state = State::Closed;
    }

    // ── cut-through forwarding (the `/connection` pipe) ───────────────────────────────────

    /// Switch to cut-through forwarding, at a message boundary. If a message is half read
    /// (its start is being reassembled for the App), the switch happens by itself right after
    /// that message completes: reading stops there and the rest of the input is left for
    /// [`Conn::handle_read_piped`]. Returns whether the connection is piped now.
    pub fn start_piping(&mut self) -> bool {
        match self.state {
            State::Open { piped: false, .. } => {
                self.pipe_pending = true;
                if !self.decoder.in_message() && self.partial.is_none() {
                    self.switch_to_pipe_if_pending();
                }
                self.is_piped()
            }
            State::Open { piped: true, .. } => true,
            _ => false,
        }
    }

    fn switch_to_pipe_if_pending(&mut self) -> bool {
        if let (
            true,
            State::Open {
                endpoint, parked, ..
            },
        ) = (self.pipe_pending, self.state)
        {
            self.pipe_pending = false;
            self.state = State::Open {
                endpoint,
                parked,
                piped: true,
            };
            return true;
        }
        false
    }

    /// True while data frames are forwarded cut-through.
    pub fn is_piped(&self) -> bool {
        matches!(self.state, State::Open { piped: true, .. })
    }

    /// True while the frame being read is only partly through. For a piped connection that
    /// means its peer's output stream holds half a frame: nothing else may go there until the
    /// frame ends (and if this side dies now, the peer can only be dropped, not closed).
    pub fn mid_frame(&self) -> bool {
        self.decoder.in_frame()
    }

    /// Decode piped input up to the next thing the shell must act on. Control frames are
    /// answered here (a pong, or the reply to a close) into `out`, this connection's own send
    /// queue; data goes to the peer through [`PipeStep::Forward`], chunk by chunk, without
    /// reassembly.
    pub fn handle_read_piped(
        &mut self,
        now: Tick,
        input: &mut [u8],
        out: &mut Vec<u8>,
        counters: &mut Counters,
    ) -> PipeStep {
        let State::Open {
            endpoint,
            piped: true,
            ..
        } = self.state
        else {
            return PipeStep::NeedMore { consumed: 0 };
        };
        let mut pos = 0;
        while pos <= input.len() {
            let (item, used) = match self.decoder.decode(&mut input[pos..]) {
                Ok(step) => step,
                Err(e) => {
                    counters.protocol_errors += 1;
                    self.send_close(out, e.close_code(), &e.to_string());
                    self.state = State::Closing {
                        endpoint,
                        desynced: true,
                    };
                    self.phase_at = now;
                    return PipeStep::Ended {
                        code: 1001,
                        consumed: input.len(),
                    };
                }
            };
            let base = pos;
            pos += used;
            if pos > 0 {
                self.last_rx = now;
            }
            match item {
                Item::NeedMore => return PipeStep::NeedMore { consumed: pos },
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
                    return PipeStep::Forward {
                        header,
                        header_len: header_len as u8,
                        payload: base + range.start..base + range.end,
                        consumed: pos,
                    };
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
                            return PipeStep::Ended {
                                code: code.unwrap_or(1000),
                                consumed: input.len(),
                            };
                        }
                        _ => {}
                    }
                    if pos == input.len() {
                        return PipeStep::NeedMore { consumed: pos };
                    }
                }
            }
        }
        PipeStep::NeedMore {
            consumed: pos.min(input.len()),
        }
    }

    // ── internals ──────────────────────────────────────────────────────────────────────────

    fn state_continues(&self) -> bool {
        !matches!(
            self.state,
            State::Closed
                | State::Held
                | State::Relocating { .. }
                | State::Open { parked: true, .. }
                | State::Open { piped: true, .. }
        )
    }

    fn read_request<A: App>(
        &mut self,
        now: Tick,
        limits: &Limits,
        input: &[u8],
        out: &mut Vec<u8>,
        app: &mut A,
    ) -> usize {
        let hl = HttpLimits {
            max_header_bytes: limits.max_header_bytes,
            max_headers: limits.max_headers,
        };
        let (head, used) = match http::parse_request(input, &hl) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return 0,
            Err(e) => {
                self.refuse(e.status(), e.reason(), out, app, |out| {
                    e.write_response(out)
                });
                return input.len();
            }
        };
        match app.route(now, &head) {
            Routed::Relocate => {
                let served = matches!(self.state, State::ExpectRequest { served: true });
                self.state = State::Relocating { served };
                return 0; // the request stays in the input, for the core it moves to
            }
            Routed::Upgrade { endpoint, park } => match http::validate_upgrade(&head) {
                Ok(accept) => {
                    http::write_switching_protocols(&accept, out);
                    app.on_handshake(Handshake::Upgraded(endpoint));
                    self.decoder = Decoder::new(decoder_limits(limits));
                    self.state = State::Open {
                        endpoint,
                        parked: park,
                        piped: false,
                    };
                    self.phase_at = now;
                }
                Err(e) => {
                    self.refuse(e.status(), e.reason(), out, app, |out| {
                        e.write_response(out)
                    });
                    return input.len();
                }
            },
            Routed::Respond(resp) => {
                if head.upgrade.is_some() && resp.status >= 400 {
                    let reason = match resp.status {
                        404 => "not_found",
                        405 => "method_not_allowed",
                        _ => "refused",
                    };
                    app.on_handshake(Handshake::Rejected {
                        status: resp.status,
                        reason,
                    });
                }
                // A body we do not read would desynchronise the next request, and a client
                // refused a WebSocket has no use for the connection: close after either.
                let has_body = head.chunked || head.content_length.is_some_and(|n| n > 0);
                let keep_alive = head.keep_alive && !has_body && head.upgrade.is_none();
                self.respond(now, &head, &resp, keep_alive, out);
                if !keep_alive {
                    return input.len();
                }
            }
            Routed::Hold { until, fallback } => {
                // A GET carrying a body is read no further: the connection ends after the
                // answer.
                let has_body = head.chunked || head.content_length.is_some_and(|n| n > 0);
                self.partial = Some(Box::new(Pending::Held(HeldRequest {
                    keep_alive: head.keep_alive && !has_body && head.upgrade.is_none(),
                    head_only: head.method == http::Method::Head,
                    fallback,
                })));
                self.state = State::Held;
                self.phase_at = until;
                if has_body {
                    return input.len();
                }
            }
            Routed::Body { max } => {
                let framing = match head.content_length {
                    _ if head.chunked => {
                        BodyFraming::Chunked(http::ChunkedDecoder::new(max as u64))
                    }
                    Some(n) if n > max as u64 => {
                        // Refused from the head alone: none of the body is read.
                        let e = http::HttpError::BodyTooLarge;
                        self.refuse(e.status(), "body_too_large", out, app, |out| {
                            e.write_response(out)
                        });
                        return input.len();
                    }
                    Some(n) => BodyFraming::Length(n),
                    None => BodyFraming::Length(0),
                };
                if head.expect_continue
                    && used == input.len()
                    && !matches!(framing, BodyFraming::Length(0))
                {
                    http::write_continue(out);
                }
                self.partial = Some(Box::new(Pending::Body(BodyRead {
                    head,
                    data: Vec::new(),
                    framing,
                })));
                self.state = State::ExpectBody;
                self.phase_at = now;
                // An empty body is complete at once (no further input may ever come).
                if let Some(BodyFraming::Length(0)) = self.body_mut().map(|b| &b.framing) {
                    self.finish_body(now, out, app);
                    if self.state == State::Closed {
                        return input.len();
                    }
                }
            }
        }
        used
    }

    fn body_mut(&mut self) -> Option<&mut BodyRead> {
        match self.partial.as_deref_mut() {
            Some(Pending::Body(b)) => Some(b),
            _ => None,
        }
    }

    fn take_body(&mut self) -> Option<BodyRead> {
        match self.partial.take().map(|p| *p) {
            Some(Pending::Body(b)) => Some(b),
            _ => None,
        }
    }

    /// The reassembly buffer of the message being read (created empty if there is none).
    fn message_buf(&mut self) -> &mut Vec<u8> {
        if !matches!(self.partial.as_deref(), Some(Pending::Message(_))) {
            self.partial = Some(Box::new(Pending::Message(Vec::new())));
        }
        match self.partial.as_deref_mut() {
            Some(Pending::Message(v)) => v,
            _ => unreachable!("set to a message just above"),
        }
    }

    /// Write `resp` to the request `head`, then wait for the next request or close.
    fn respond(
        &mut self,
        now: Tick,
        head: &RequestHead,
        resp: &Response,
        keep_alive: bool,
        out: &mut Vec<u8>,
    ) {
        self.write_answer(
            now,
            head.method == http::Method::Head,
            resp,
            keep_alive,
            out,
        );
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
        let headers: Vec<(&str, &str)> =
            resp.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let body: &[u8] = if head_only { b"" } else { &resp.body };
        http::write_response(
            resp.status,
            Some(resp.content_type),
            &headers,
            body,
            keep_alive,
            out,
        );
        self.state = if keep_alive {
            State::ExpectRequest { served: true }
        } else {
            State::Closed
        };
        self.phase_at = now;
    }

    /// Take body bytes from `input`; once the body is whole, answer it. Returns the bytes used.
    fn read_body<A: App>(
        &mut self,
        now: Tick,
        input: &[u8],
        out: &mut Vec<u8>,
        app: &mut A,
    ) -> usize {
        let Some(b) = self.body_mut() else {
            // Unreachable by construction (ExpectBody always has a body); fail closed.
            self.state = State::Closed;
            return input.len();
        };
        let used = match &mut b.framing {
            BodyFraming::Length(remaining) => {
                // Fits in usize: bounded by `input.len()`.
                let take = (*remaining).min(input.len() as u64) as usize;
                b.data.extend_from_slice(&input[..take]);
                *remaining -= take as u64;
                if *remaining > 0 {
                    return take; // the rest of the body is still to come
                }
                take
            }
            BodyFraming::Chunked(dec) => match dec.feed(input, &mut b.data) {
                Ok(Some(n)) => n,
                Ok(None) => return input.len(),
                Err(e) => {
                    self.partial = None;
                    let reason = match e {
                        http::HttpError::BodyTooLarge => "body_too_large",
                        _ => "bad_chunked_body",
                    };
                    self.refuse(e.status(), reason, out, app, |out| e.write_response(out));
                    return input.len();
                }
            },
        };
        self.finish_body(now, out, app);
        if self.state == State::Closed {
            return input.len();
        }
        used
    }

    /// The body is whole: ask the App for the response and write it.
    fn finish_body<A: App>(&mut self, now: Tick, out: &mut Vec<u8>, app: &mut A) {
        let Some(b) = self.take_body() else {
            self.state = State::Closed;
            return;
        };
        let resp = app.on_request_body(now, &b.head, &b.data);
        let keep_alive = b.head.keep_alive && b.head.upgrade.is_none();
        self.respond(now, &b.head, &resp, keep_alive, out);
    }

    /// Answer a request we will not serve with an error response, and close after it.
    fn refuse<A: App>(
        &mut self,
        status: u16,
        reason: &'static str,
        out: &mut Vec<u8>,
        app: &mut A,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        app.on_handshake(Handshake::Rejected { status, reason });
        write(out);
        self.partial = None;
        self.state = State::Closed;
    }

    #[allow(clippy::too_many_arguments)] // the machine's inputs, passed explicitly rather than stored
    fn read_frames<A: App>(
        &mut self,
        now: Tick,
        endpoint: Endpoint,
        input: &mut [u8],
        out: &mut Vec<u8>,
        counters: &mut Counters,
        app: &mut A,
    ) -> usize {
        let closing = matches!(self.state, State::Closing { .. });
        let mut pos = 0;
        while pos < input.len() {
            let (item, used) = match self.decoder.decode(&mut input[pos..]) {
                Ok(step) => step,
                Err(e) => {
                    self.fail(now, endpoint, &e, out, counters, app);
                    return input.len();
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
                    if frame_end {
                        counters.frames_in += 1;
                    }
                    if closing {
                        continue; // after our close, data is read and dropped
                    }
                    let chunk = &input[base + range.start..base + range.end];
                    if message_start && message_end && self.partial.is_none() {
                        counters.messages_in += 1;
                        app.on_message(now, endpoint, kind, chunk, &mut Outbox::new(out, counters));
                        if self.switch_to_pipe_if_pending() {
                            return pos;
                        }
                        continue;
                    }
                    self.message_buf().extend_from_slice(chunk);
                    if message_end {
                        let whole = match self.partial.take().map(|p| *p) {
                            Some(Pending::Message(v)) => v,
                            _ => Vec::new(),
                        };
                        counters.messages_in += 1;
                        app.on_message(
                            now,
                            endpoint,
                            kind,
                            &whole,
                            &mut Outbox::new(out, counters),
                        );
                        if self.switch_to_pipe_if_pending() {
                            return pos;
                        }
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
                            let code = parse_close_payload(payload).ok().flatten().map(|(c, _)| c);
                            if !closing {
                                // Answer with the peer's code (or a plain 1000 if it gave none).
                                self.send_close(out, code.unwrap_or(1000), "");
                                app.on_ws_close(endpoint, code);
                            }
                            self.partial = None;
                            self.state = State::Closed;
                            return input.len();
                        }
                        _ => {} // pongs (and pings while closing) need no answer
                    }
                }
            }
        }
        pos
    }

    fn fail<A: App>(
        &mut self,
        now: Tick,
        endpoint: Endpoint,
        e: &WsError,
        out: &mut Vec<u8>,
        counters: &mut Counters,
        app: &mut A,
    ) {
        counters.protocol_errors += 1;
        self.partial = None;
        if matches!(self.state, State::Open { .. }) {
            self.send_close(out, e.close_code(), &e.to_string());
            app.on_ws_close(endpoint, Some(e.close_code()));
        }
        // The byte stream can no longer be trusted: wait for the peer to hang up, reading
        // nothing into frames.
        self.state = State::Closing {
            endpoint,
            desynced: true,
        };
        self.phase_at = now;
    }

    fn send_close(&mut self, out: &mut Vec<u8>, code: u16, reason: &str) {
        let mut buf = [0u8; 2 + 125];
        let n = encode_close(code, reason, &mut buf);
        out.extend_from_slice(&buf[..n]);
    }
}

fn decoder_limits(limits: &Limits) -> DecoderLimits {
    DecoderLimits {
        max_frame: limits.max_frame_size as u64,
        max_message: limits.max_message_size as u64,
    }
}

fn nonzero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

#[cfg(test)]
mod tests;
