//! The per-core table of Engine.IO 3 sessions and Socket.IO 2 sockets: transports (held
//! polls, WebSocket, the upgrade probe), outgoing queues, heartbeats, rooms, and the dialects
//! that give events their meaning. Pure: connections are [`ConnRef`]s, time is `now_ms`, and
//! what must reach a connection other than the one being served is handed to the shell through
//! [`Wire`] in [`Sessions::flush`].
//!
//! ```text
//!  handshake ──► Polling ──(ws attaches: probe)──► Probing ──`5` on the ws──► WebSocket
//!                   ▲                                 │ ws closes / other packet / 10 s
//!                   └─────────────────────────────────┘
//!  any state ── ping timeout, `1`, `41`, parse error, transport close ──► ended (dialect told)
//! ```
//!
//! One session is one socket of the default namespace; its Socket.IO id is the session id,
//! and it is in the room named after that id from its connect to its end.
//!
//! While a session polls, what is queued for it leaves in the answer to its next (or held)
//! GET. During the probe, that GET is answered at once (with a `6` noop when nothing is
//! queued) so the client can pause polling; the queue keeps filling until the client's `5`,
//! and is then flushed on the WebSocket: nothing is lost or sent twice.

use super::packet::{self, decode_packet, decode_payload, decode_sio, EioError, Packet, SioPacket};
use crate::proto::conn::Response;
use crate::proto::dialect::sio::{Action, Dialect, Env, To};
use crate::proto::dialect::ConnRef;
use serde_json::Value;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};

/// Which dialect a session speaks (chosen from the handshake query).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Workspaces = 0,
    MewV1 = 1,
    /// A tiny rooms/echo dialect for testing the layer (`--echo`).
    Echo = 2,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Workspaces, Kind::MewV1, Kind::Echo];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Workspaces => "workspaces",
            Kind::MewV1 => "mewconnect_v1",
            Kind::Echo => "echo",
        }
    }
}

/// Timing and bounds of the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub ping_interval_ms: u64,
    /// Per [`Kind`] (indexed by `kind as usize`).
    pub ping_timeout_ms: [u64; 3],
    /// How long a WebSocket may take from attaching to a polling session to its `5`.
    pub upgrade_timeout_ms: u64,
    /// Bytes queued for one session before it is dropped as a reader that does not read.
    pub max_queued_bytes: usize,
    /// Sessions this table holds at most; a handshake past it is refused.
    pub max_sessions: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ping_interval_ms: 25_000,
            ping_timeout_ms: [12_000, 5_000, 5_000],
            upgrade_timeout_ms: 10_000,
            max_queued_bytes: 1 << 20,
            max_sessions: 100_000,
        }
    }
}

impl Options {
    pub fn ping_timeout(&self, kind: Kind) -> u64 {
        self.ping_timeout_ms[kind as usize]
    }
}

/// What the layer asks of the shell when it delivers to connections it is not serving.
pub trait Wire {
    /// `r` is a poll GET still waiting for its answer.
    fn poll_waiting(&self, r: ConnRef) -> bool;
    /// Answer the held poll `r` (which [`Wire::poll_waiting`] just confirmed).
    fn answer_poll(&mut self, r: ConnRef, resp: Response);
    /// `r` is an open WebSocket.
    fn ws_open(&self, r: ConnRef) -> bool;
    fn ws_send(&mut self, r: ConnRef, text: &str);
    /// Close the WebSocket `r` (normal closure).
    fn ws_close(&mut self, r: ConnRef);
}

/// Why a handshake was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No dialect of that kind is served here.
    NoDialect,
    /// The table holds [`Options::max_sessions`].
    Full,
    /// The session id is in use (a caller bug: ids are random).
    Taken,
}

/// The answer to a poll GET.
#[derive(Debug)]
pub enum PollGet {
    /// Answer now with this response.
    Answer(Response),
    /// Nothing to send: hold the request; the layer answers it through [`Wire`].
    Hold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Polling,
    WebSocket(ConnRef),
}

#[derive(Debug)]
struct Held {
    conn: ConnRef,
    origin: Option<String>,
}

#[derive(Debug)]
struct Probe {
    conn: ConnRef,
    deadline: u64,
}

struct Session {
    kind: Kind,
    transport: Transport,
    queue: VecDeque<String>,
    queued_bytes: usize,
    held: Option<Held>,
    probe: Option<Probe>,
    /// The session ends if no packet arrives before this.
    ping_deadline: u64,
    /// The time of this session's live entry in the timer heap.
    timer_at: Option<u64>,
    rooms: Vec<String>,
    /// The socket is gone (dialect told, rooms left); the session only delivers what is
    /// queued (`41`, `1`) and then ends.
    closing: bool,
    in_dirty: bool,
}

impl Session {
    fn next_due(&self) -> u64 {
        match &self.probe {
            Some(p) => p.deadline.min(self.ping_deadline),
            None => self.ping_deadline,
        }
    }
}

/// One dialect and its rooms.
struct Hub {
    dialect: Box<dyn Dialect + Send>,
    rooms: HashMap<String, BTreeSet<Box<str>>>,
}

/// Work for [`Sessions::flush`] on connections other than the one being served.
enum Direct {
    /// A frame on a WebSocket that is not (yet) its session's transport (`3probe`).
    Ws(ConnRef, String),
    CloseWs(ConnRef),
    /// Answer a poll that no session holds any more (replaced, upgraded, ended).
    Release(ConnRef, Option<String>, String),
}

/// The table of one core.
pub struct Sessions {
    opts: Options,
    sessions: HashMap<Box<str>, Session>,
    hubs: [Option<Hub>; 3],
    timers: BinaryHeap<Reverse<(u64, Box<str>)>>,
    dirty: Vec<Box<str>>,
    direct: Vec<Direct>,
    /// Scratch for dialect actions.
    actions: Vec<Action>,
}

/// The HTTP answer to a polling request: engine.io's headers, CORS for any origin (the
/// request's `Origin` echoed with credentials allowed, else `*`).
pub fn http_response(
    status: u16,
    content_type: &'static str,
    body: String,
    origin: Option<&str>,
) -> Response {
    let mut r = Response::new(status, content_type, body);
    match origin {
        Some(o) => {
            r.headers
                .push(("Access-Control-Allow-Origin", o.to_owned()));
            r.headers
                .push(("Access-Control-Allow-Credentials", "true".into()));
        }
        None => r.headers.push(("Access-Control-Allow-Origin", "*".into())),
    }
    r
}

/// The standard engine.io error answer.
pub fn error_response(e: EioError, origin: Option<&str>) -> Response {
    let mut r = http_response(e.status(), "application/json", e.body(), origin);
    r.status = e.status();
    r
}

fn payload_response(body: String, origin: Option<&str>) -> Response {
    http_response(200, "text/plain; charset=UTF-8", body, origin)
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new(Options::default())
    }
}

impl Sessions {
    pub fn new(opts: Options) -> Self {
        Sessions {
            opts,
            sessions: HashMap::new(),
            hubs: [None, None, None],
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            direct: Vec::new(),
            actions: Vec::new(),
        }
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// True once a dialect for `kind` is installed on this core.
    pub fn has_dialect(&self, kind: Kind) -> bool {
        self.hubs[kind as usize].is_some()
    }

    pub fn install(&mut self, kind: Kind, dialect: Box<dyn Dialect + Send>) {
        self.hubs[kind as usize] = Some(Hub {
            dialect,
            rooms: HashMap::new(),
        });
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn contains(&self, sid: &str) -> bool {
        self.sessions.contains_key(sid)
    }

    /// The members of `room` of `kind`'s dialect (for tests and metrics).
    pub fn room(&self, kind: Kind, room: &str) -> Vec<String> {
        self.hubs[kind as usize]
            .as_ref()
            .and_then(|h| h.rooms.get(room))
            .map(|s| s.iter().map(|x| x.to_string()).collect())
            .unwrap_or_default()
    }

    // ── handshakes ─────────────────────────────────────────────────────────────────────────

    fn create(
        &mut self,
        now: u64,
        sid: &str,
        kind: Kind,
        transport: Transport,
        query: &[(String, String)],
        env: &mut dyn Env,
    ) -> Result<(), Refused> {
        if !self.has_dialect(kind) {
            return Err(Refused::NoDialect);
        }
        if self.sessions.len() >= self.opts.max_sessions {
            return Err(Refused::Full);
        }
        if self.sessions.contains_key(sid) {
            return Err(Refused::Taken);
        }
        let websocket = matches!(transport, Transport::WebSocket(_));
        let open = packet::open_packet(
            sid,
            !websocket,
            self.opts.ping_interval_ms,
            self.opts.ping_timeout(kind),
        );
        let deadline = now + self.opts.ping_interval_ms + self.opts.ping_timeout(kind);
        let mut s = Session {
            kind,
            transport,
            queue: VecDeque::new(),
            queued_bytes: 0,
            held: None,
            probe: None,
            ping_deadline: deadline,
            timer_at: Some(deadline),
            rooms: Vec::new(),
            closing: false,
            in_dirty: false,
        };
        s.queue.push_back(open);
        s.queue.push_back(packet::CONNECT.to_owned());
        self.sessions.insert(sid.into(), s);
        self.timers.push(Reverse((deadline, sid.into())));
        // Every socket is in the room of its own id.
        self.join(kind, sid, sid);
        let mut actions = std::mem::take(&mut self.actions);
        if let Some(h) = self.hubs[kind as usize].as_mut() {
            h.dialect.on_connect(now, sid, query, env, &mut actions);
        }
        self.apply(now, kind, &mut actions, env);
        self.actions = actions;
        self.mark(sid);
        Ok(())
    }

    /// Whether a handshake of `kind` would be accepted now (checked before a WebSocket's 101).
    pub fn can_create(&self, kind: Kind) -> Result<(), Refused> {
        if !self.has_dialect(kind) {
            return Err(Refused::NoDialect);
        }
        if self.sessions.len() >= self.opts.max_sessions {
            return Err(Refused::Full);
        }
        Ok(())
    }

    /// A polling handshake: the session is created and its first payload (open, `40`, and
    /// whatever the dialect sent on connect) is the answer.
    pub fn handshake_polling(
        &mut self,
        now: u64,
        sid: &str,
        kind: Kind,
        query: &[(String, String)],
        origin: Option<&str>,
        env: &mut dyn Env,
    ) -> Result<Response, Refused> {
        self.create(now, sid, kind, Transport::Polling, query, env)?;
        Ok(self.drain_answer(sid, origin))
    }

    /// A WebSocket handshake (no sid): the session's packets go out on `conn` at the next
    /// [`Sessions::flush`].
    pub fn handshake_ws(
        &mut self,
        now: u64,
        sid: &str,
        kind: Kind,
        query: &[(String, String)],
        conn: ConnRef,
        env: &mut dyn Env,
    ) -> Result<(), Refused> {
        let r = self.create(now, sid, kind, Transport::WebSocket(conn), query, env);
        if r.is_err() {
            self.direct.push(Direct::CloseWs(conn));
        }
        r
    }

    // ── polling ────────────────────────────────────────────────────────────────────────────

    /// Take the queue of `sid` as the body of a poll answer (a noop when it is empty), and end
    /// a closing session whose queue is now delivered.
    fn drain_answer(&mut self, sid: &str, origin: Option<&str>) -> Response {
        let mut body = String::new();
        let mut ended = false;
        if let Some(s) = self.sessions.get_mut(sid) {
            for p in s.queue.drain(..) {
                packet::push_payload(&mut body, &p);
            }
            s.queued_bytes = 0;
            ended = s.closing;
        }
        if body.is_empty() {
            packet::push_payload(&mut body, "6");
        }
        if ended {
            self.forget(sid);
        }
        payload_response(body, origin)
    }

    /// A poll GET of `sid` on `conn`.
    pub fn poll_get(
        &mut self,
        sid: &str,
        conn: ConnRef,
        origin: Option<&str>,
    ) -> Result<PollGet, EioError> {
        let s = self.sessions.get_mut(sid).ok_or(EioError::UnknownSid)?;
        if s.transport != Transport::Polling {
            return Err(EioError::BadRequest);
        }
        if let Some(old) = s.held.take() {
            // A second GET while one is held: the first is answered with a noop (a client
            // that gave up on it is not hurt, and nothing queued is lost).
            self.direct
                .push(Direct::Release(old.conn, old.origin, "1:6".into()));
        }
        let s = self.sessions.get_mut(sid).ok_or(EioError::UnknownSid)?;
        if !s.queue.is_empty() || s.probe.is_some() || s.closing {
            return Ok(PollGet::Answer(self.drain_answer(sid, origin)));
        }
        s.held = Some(Held {
            conn,
            origin: origin.map(str::to_owned),
        });
        Ok(PollGet::Hold)
    }

    /// A poll POST of `sid` carrying a v3 payload. A body that does not decode ends the
    /// session (as engine.io does on a parser error) and is answered with `Bad request`.
    pub fn poll_post(
        &mut self,
        now: u64,
        sid: &str,
        body: &[u8],
        env: &mut dyn Env,
    ) -> Result<(), EioError> {
        let s = self.sessions.get(sid).ok_or(EioError::UnknownSid)?;
        if s.transport != Transport::Polling {
            return Err(EioError::BadRequest);
        }
        let decoded = std::str::from_utf8(body)
            .ok()
            .and_then(|text| decode_payload(text).ok())
            .and_then(|parts| {
                parts
                    .into_iter()
                    .map(decode_packet)
                    .collect::<Result<Vec<_>, _>>()
                    .ok()
            });
        let Some(packets) = decoded else {
            self.end(now, sid, env);
            return Err(EioError::BadRequest);
        };
        for p in packets {
            if !self.sessions.contains_key(sid) {
                break;
            }
            self.on_packet(now, sid, p, env);
        }
        Ok(())
    }

    // ── WebSocket ──────────────────────────────────────────────────────────────────────────

    /// Whether a WebSocket may attach to `sid` to upgrade it (checked before the 101).
    pub fn can_upgrade(&self, sid: &str) -> Result<(), EioError> {
        let s = self.sessions.get(sid).ok_or(EioError::UnknownSid)?;
        if s.transport != Transport::Polling || s.probe.is_some() || s.closing {
            return Err(EioError::BadRequest);
        }
        Ok(())
    }

    /// A WebSocket `conn` attached to the polling session `sid` (its 101 is written): it
    /// probes, then upgrades with `5`.
    pub fn ws_attach(&mut self, now: u64, sid: &str, conn: ConnRef) -> bool {
        if self.can_upgrade(sid).is_err() {
            self.direct.push(Direct::CloseWs(conn));
            return false;
        }
        let deadline = now + self.opts.upgrade_timeout_ms;
        let Some(s) = self.sessions.get_mut(sid) else {
            return false;
        };
        s.probe = Some(Probe { conn, deadline });
        if s.timer_at.is_none_or_later(deadline) {
            s.timer_at = Some(deadline);
            self.timers.push(Reverse((deadline, sid.into())));
        }
        true
    }

    /// A text message on the WebSocket `conn` of `sid`.
    pub fn ws_text(&mut self, now: u64, sid: &str, conn: ConnRef, text: &str, env: &mut dyn Env) {
        let Some(s) = self.sessions.get_mut(sid) else {
            self.direct.push(Direct::CloseWs(conn));
            return;
        };
        if s.probe.as_ref().is_some_and(|p| p.conn == conn) {
            match decode_packet(text) {
                Ok(Packet::Ping(d)) if d == "probe" => {
                    self.direct.push(Direct::Ws(conn, "3probe".into()));
                    // Release the held poll (with a noop if nothing is queued) so the client
                    // can pause polling.
                    self.mark(sid);
                }
                Ok(Packet::Upgrade) => {
                    s.probe = None;
                    s.transport = Transport::WebSocket(conn);
                    if let Some(h) = s.held.take() {
                        self.direct
                            .push(Direct::Release(h.conn, h.origin, "1:6".into()));
                    }
                    self.mark(sid);
                }
                // Anything else on a probing transport: it is not an upgrade; drop it.
                _ => {
                    s.probe = None;
                    self.direct.push(Direct::CloseWs(conn));
                }
            }
            return;
        }
        if s.transport != Transport::WebSocket(conn) {
            self.direct.push(Direct::CloseWs(conn));
            return;
        }
        match decode_packet(text) {
            Ok(p) => self.on_packet(now, sid, p, env),
            Err(_) => self.end(now, sid, env),
        }
    }

    /// A binary message on a WebSocket: binary Socket.IO packets are not supported; it counts
    /// as traffic (for the heartbeat) and is otherwise dropped.
    pub fn ws_binary(&mut self, now: u64, sid: &str, conn: ConnRef) {
        if let Some(s) = self.sessions.get_mut(sid) {
            if s.transport == Transport::WebSocket(conn) {
                s.ping_deadline = now + self.opts.ping_interval_ms + self.opts.ping_timeout(s.kind);
            }
        }
    }

    /// The WebSocket `conn` of `sid` closed: a failed probe leaves the session polling; the
    /// close of its transport ends the session.
    pub fn ws_closed(&mut self, now: u64, sid: &str, conn: ConnRef, env: &mut dyn Env) {
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        if s.probe.as_ref().is_some_and(|p| p.conn == conn) {
            s.probe = None;
            return;
        }
        if s.transport == Transport::WebSocket(conn) {
            if s.closing {
                self.sessions.remove(sid);
            } else {
                self.end(now, sid, env);
            }
        }
    }

    // ── packets ────────────────────────────────────────────────────────────────────────────

    fn on_packet(&mut self, now: u64, sid: &str, p: Packet, env: &mut dyn Env) {
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        // Any packet proves the client alive (engine.io resets its timer on each).
        s.ping_deadline = now + self.opts.ping_interval_ms + self.opts.ping_timeout(s.kind);
        let kind = s.kind;
        match p {
            Packet::Ping(data) => {
                self.push(sid, format!("3{data}"));
            }
            Packet::Close => {
                if s.closing {
                    self.forget(sid);
                } else {
                    self.end(now, sid, env);
                }
            }
            Packet::Message(m) if !s.closing => match decode_sio(&m) {
                Some(SioPacket::Event { nsp, data, .. }) if nsp == "/" => {
                    let Value::Array(mut a) = data else { return };
                    let Value::String(event) = a.remove(0) else {
                        return;
                    };
                    let mut actions = std::mem::take(&mut self.actions);
                    if let Some(h) = self.hubs[kind as usize].as_mut() {
                        h.dialect.on_event(now, sid, &event, &a, env, &mut actions);
                    }
                    self.apply(now, kind, &mut actions, env);
                    self.actions = actions;
                }
                Some(SioPacket::Disconnect { nsp }) if nsp == "/" => self.end(now, sid, env),
                Some(SioPacket::Connect { nsp }) if nsp != "/" => {
                    self.push(sid, format!("44{nsp},\"Invalid namespace\""));
                }
                Some(_) => {} // acks, errors, other namespaces, binary: nothing to do
                None => self.end(now, sid, env),
            },
            _ => {}
        }
    }

    /// Queue a packet for `sid` (bounded: past the limit the session ends).
    fn push(&mut self, sid: &str, packet: String) -> bool {
        let max = self.opts.max_queued_bytes;
        let Some(s) = self.sessions.get_mut(sid) else {
            return false;
        };
        if s.closing {
            return false;
        }
        s.queued_bytes += packet.len();
        s.queue.push_back(packet);
        let over = s.queued_bytes > max;
        self.mark(sid);
        !over
    }

    fn mark(&mut self, sid: &str) {
        if let Some(s) = self.sessions.get_mut(sid) {
            if !s.in_dirty {
                s.in_dirty = true;
                self.dirty.push(sid.into());
            }
        }
    }

    fn join(&mut self, kind: Kind, sid: &str, room: &str) {
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        if s.closing || s.kind != kind || s.rooms.iter().any(|r| r == room) {
            return;
        }
        s.rooms.push(room.to_owned());
        if let Some(h) = self.hubs[kind as usize].as_mut() {
            h.rooms
                .entry(room.to_owned())
                .or_default()
                .insert(sid.into());
        }
    }

    fn leave(&mut self, kind: Kind, sid: &str, room: &str) {
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        s.rooms.retain(|r| r != room);
        if let Some(h) = self.hubs[kind as usize].as_mut() {
            if let Some(members) = h.rooms.get_mut(room) {
                members.remove(sid);
                if members.is_empty() {
                    h.rooms.remove(room);
                }
            }
        }
    }

    /// Apply a dialect's actions in order (and those its disconnect handlers add).
    fn apply(&mut self, now: u64, kind: Kind, actions: &mut Vec<Action>, env: &mut dyn Env) {
        let mut i = 0;
        let mut overfull: Vec<Box<str>> = Vec::new();
        while i < actions.len() {
            match std::mem::replace(
                &mut actions[i],
                Action::Leave {
                    sid: String::new(),
                    room: String::new(),
                },
            ) {
                Action::Emit { to, event, args } => {
                    let p = packet::event_packet(&event, &args);
                    let targets: Vec<Box<str>> = match &to {
                        To::Socket(sid) => vec![sid.as_str().into()],
                        To::Room(room) | To::RoomExcept { room, .. } => self.hubs[kind as usize]
                            .as_ref()
                            .and_then(|h| h.rooms.get(room))
                            .map(|m| m.iter().cloned().collect())
                            .unwrap_or_default(),
                    };
                    for t in targets {
                        if matches!(&to, To::RoomExcept { except, .. } if **except == *t) {
                            continue;
                        }
                        if self.sessions.get(&*t).is_some_and(|s| s.kind == kind)
                            && !self.push(&t, p.clone())
                        {
                            overfull.push(t);
                        }
                    }
                }
                Action::Error { sid, data } => {
                    if self
                        .sessions
                        .get(sid.as_str())
                        .is_some_and(|s| s.kind == kind)
                        && !self.push(&sid, packet::error_packet(&data))
                    {
                        overfull.push(sid.into());
                    }
                }
                Action::Join { sid, room } => self.join(kind, &sid, &room),
                Action::Leave { sid, room } => self.leave(kind, &sid, &room),
                Action::Disconnect { sid } => {
                    if self
                        .sessions
                        .get(sid.as_str())
                        .is_some_and(|s| s.kind == kind && !s.closing)
                    {
                        self.push(&sid, packet::DISCONNECT.to_owned());
                        self.socket_gone(now, &sid, env, actions);
                    }
                }
            }
            i += 1;
        }
        actions.clear();
        for sid in overfull {
            self.end(now, &sid, env);
        }
    }

    /// The socket `sid` is gone: it leaves every room, its dialect hears of it (its actions
    /// are appended to `actions`), and the session turns `closing`.
    fn socket_gone(&mut self, now: u64, sid: &str, env: &mut dyn Env, actions: &mut Vec<Action>) {
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        if s.closing {
            return;
        }
        let kind = s.kind;
        let rooms = std::mem::take(&mut s.rooms);
        if s.transport == Transport::Polling {
            // Polling clients are told with a close packet after what is queued.
            s.queue.push_back("1".to_owned());
        }
        s.closing = true;
        self.mark(sid);
        for r in rooms {
            if let Some(h) = self.hubs[kind as usize].as_mut() {
                if let Some(m) = h.rooms.get_mut(&r) {
                    m.remove(sid);
                    if m.is_empty() {
                        h.rooms.remove(&r);
                    }
                }
            }
        }
        if let Some(h) = self.hubs[kind as usize].as_mut() {
            h.dialect.on_disconnect(now, sid, env, actions);
        }
    }

    /// End `sid` now (client close, transport close, timeout, protocol error): the dialect
    /// hears of it, its transports are closed, and the session is forgotten.
    pub fn end(&mut self, now: u64, sid: &str, env: &mut dyn Env) {
        let Some(s) = self.sessions.get(sid) else {
            return;
        };
        let kind = s.kind;
        let mut actions = std::mem::take(&mut self.actions);
        self.socket_gone(now, sid, env, &mut actions);
        self.forget(sid);
        self.apply(now, kind, &mut actions, env);
        self.actions = actions;
    }

    /// Remove `sid` from the table (its dialect has heard of its end already): a held poll is
    /// answered with a close packet, a probing WebSocket and the WebSocket transport are
    /// closed, so no connection is left waiting on a session that is gone.
    fn forget(&mut self, sid: &str) {
        let Some(s) = self.sessions.remove(sid) else {
            return;
        };
        if let Some(h) = s.held {
            self.direct
                .push(Direct::Release(h.conn, h.origin, "1:1".into()));
        }
        if let Some(p) = s.probe {
            self.direct.push(Direct::CloseWs(p.conn));
        }
        if let Transport::WebSocket(c) = s.transport {
            self.direct.push(Direct::CloseWs(c));
        }
    }

    // ── time ───────────────────────────────────────────────────────────────────────────────

    /// The next `now_ms` at which [`Sessions::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<u64> {
        let mut next = self.timers.peek().map(|Reverse((t, _))| *t);
        for h in self.hubs.iter().flatten() {
            if let Some(d) = h.dialect.next_deadline() {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        }
        next
    }

    /// Expire what is due: sessions without a packet for pingInterval + pingTimeout, probes
    /// that did not upgrade in time, and the dialects' own deadlines.
    pub fn tick(&mut self, now: u64, env: &mut dyn Env) {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, sid))) = self.timers.pop() else {
                break;
            };
            let Some(s) = self.sessions.get_mut(&sid) else {
                continue;
            };
            if s.timer_at != Some(at) {
                continue; // stale entry
            }
            s.timer_at = None;
            if s.ping_deadline <= now {
                self.end(now, &sid, env);
                continue;
            }
            if s.probe.as_ref().is_some_and(|p| p.deadline <= now) {
                if let Some(p) = s.probe.take() {
                    self.direct.push(Direct::CloseWs(p.conn));
                }
            }
            let due = s.next_due();
            s.timer_at = Some(due);
            self.timers.push(Reverse((due, sid)));
        }
        for kind in Kind::ALL {
            let due = self.hubs[kind as usize]
                .as_ref()
                .and_then(|h| h.dialect.next_deadline())
                .is_some_and(|d| d <= now);
            if due {
                let mut actions = std::mem::take(&mut self.actions);
                if let Some(h) = self.hubs[kind as usize].as_mut() {
                    h.dialect.on_tick(now, env, &mut actions);
                }
                self.apply(now, kind, &mut actions, env);
                self.actions = actions;
            }
        }
    }

    // ── delivery ───────────────────────────────────────────────────────────────────────────

    /// True when [`Sessions::flush`] has something to deliver.
    pub fn wants_flush(&self) -> bool {
        !self.dirty.is_empty() || !self.direct.is_empty()
    }

    /// Deliver what is queued for connections other than the one being served: probe
    /// answers, released and closed transports, and every session with queued packets whose
    /// transport can take them now.
    pub fn flush(&mut self, wire: &mut dyn Wire) {
        // Answering a closing session's poll forgets the session, which may leave work for
        // its other connections (a probe to close): a second round delivers it.
        for _ in 0..2 {
            if !self.wants_flush() {
                break;
            }
            self.flush_once(wire);
        }
    }

    fn flush_once(&mut self, wire: &mut dyn Wire) {
        for d in std::mem::take(&mut self.direct) {
            match d {
                Direct::Ws(c, text) => {
                    if wire.ws_open(c) {
                        wire.ws_send(c, &text)
                    }
                }
                Direct::CloseWs(c) => {
                    if wire.ws_open(c) {
                        wire.ws_close(c)
                    }
                }
                Direct::Release(c, origin, body) => {
                    if wire.poll_waiting(c) {
                        wire.answer_poll(c, payload_response(body, origin.as_deref()));
                    }
                }
            }
        }
        for sid in std::mem::take(&mut self.dirty) {
            let Some(s) = self.sessions.get_mut(&sid) else {
                continue;
            };
            s.in_dirty = false;
            match s.transport {
                Transport::WebSocket(c) => {
                    if !wire.ws_open(c) {
                        continue; // its close is on its way to `ws_closed`
                    }
                    for p in s.queue.drain(..) {
                        wire.ws_send(c, &p);
                    }
                    s.queued_bytes = 0;
                    if s.closing {
                        wire.ws_close(c);
                        self.sessions.remove(&sid);
                    }
                }
                Transport::Polling => {
                    let Some(h) = s.held.take() else { continue };
                    if !wire.poll_waiting(h.conn) {
                        continue; // that request is gone; the queue waits for the next GET
                    }
                    if s.queue.is_empty() && s.probe.is_none() && !s.closing {
                        s.held = Some(h);
                        continue;
                    }
                    let resp = self.drain_answer(&sid, h.origin.as_deref());
                    wire.answer_poll(h.conn, resp);
                }
            }
        }
    }
}

trait LaterThan {
    fn is_none_or_later(&self, t: u64) -> bool;
}

impl LaterThan for Option<u64> {
    fn is_none_or_later(&self, t: u64) -> bool {
        match self {
            None => true,
            Some(cur) => *cur > t,
        }
    }
}
