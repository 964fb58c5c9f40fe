//! The table of Engine.IO 3 sessions and Socket.IO 2 sockets of one instance: transports (held
//! polls, WebSocket, the upgrade probe), outgoing queues, heartbeats, rooms, and the dialects
//! that give events their meaning. Pure: connections are [`Handle`]s, time is `cx.now`, and
//! what must reach a connection is queued as the contract's outputs ([`Sessions::flush`]).
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
//!
//! The table knows which connection is which session's ([`Sessions::conn_gone`] is told when
//! one goes): a held poll whose request went away is forgotten and its packets wait for the
//! next GET; a WebSocket transport that closes ends its session.

use super::packet::{self, decode_packet, decode_payload, decode_sio, EioError, Packet, SioPacket};
use crate::proto::dialect::sio::{Action, Apps, SioDialect, To};
use crate::proto::dialect::{Cx, Handle, HandleMap};
use crate::proto::http::Response;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};

/// Timing and bounds of the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub ping_interval_ms: u64,
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
            upgrade_timeout_ms: 10_000,
            max_queued_bytes: 1 << 20,
            max_sessions: 100_000,
        }
    }
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
    /// Nothing to send: hold the request; the table answers it in a later flush.
    Hold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Polling,
    WebSocket(Handle),
}

#[derive(Debug)]
struct Held {
    conn: Handle,
    origin: Option<String>,
}

#[derive(Debug)]
struct Probe {
    conn: Handle,
    deadline: u64,
}

struct Session {
    app: usize,
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

/// Work for [`Sessions::flush`] on connections other than a session's current transport.
enum Direct {
    /// A frame on a WebSocket that is not (yet) its session's transport (`3probe`).
    Ws(Handle, String),
    CloseWs(Handle),
    /// Answer a poll that no session holds any more (replaced, upgraded, ended).
    Release(Handle, Option<String>, String),
}

/// The table of one instance. `A` is the set of Socket.IO dialects it serves.
pub struct Sessions<A: Apps> {
    opts: Options,
    apps: A,
    sessions: HashMap<Box<str>, Session>,
    /// Rooms per dialect.
    rooms: Vec<HashMap<String, BTreeSet<Box<str>>>>,
    /// Which session each held poll and each WebSocket (transport or probe) belongs to.
    conns: HandleMap<Box<str>>,
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
                .push(("Access-Control-Allow-Origin".into(), o.to_owned()));
            r.headers
                .push(("Access-Control-Allow-Credentials".into(), "true".into()));
        }
        None => r
            .headers
            .push(("Access-Control-Allow-Origin".into(), "*".into())),
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

impl<A: Apps> Sessions<A> {
    pub fn new(opts: Options, apps: A) -> Self {
        let n = apps.count();
        Sessions {
            opts,
            apps,
            sessions: HashMap::new(),
            rooms: (0..n).map(|_| HashMap::new()).collect(),
            conns: HandleMap::default(),
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            direct: Vec::new(),
            actions: Vec::new(),
        }
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    pub fn apps(&self) -> &A {
        &self.apps
    }

    pub fn apps_mut(&mut self) -> &mut A {
        &mut self.apps
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

    /// The session `conn` serves (a held poll or a WebSocket), if any.
    pub fn session_of(&self, conn: Handle) -> Option<&str> {
        self.conns.get(&conn).map(|s| &**s)
    }

    /// The members of `room` of dialect `app` (for tests and metrics).
    pub fn room(&self, app: usize, room: &str) -> Vec<String> {
        self.rooms
            .get(app)
            .and_then(|r| r.get(room))
            .map(|s| s.iter().map(|x| x.to_string()).collect())
            .unwrap_or_default()
    }

    fn ping_timeout(&self, app: usize) -> u64 {
        self.apps.ping_timeout_ms(app)
    }

    /// Run `f` on dialect `app` with a context whose outputs are the table's action scratch,
    /// then apply the actions.
    fn call_app(
        &mut self,
        cx: &mut Cx<'_>,
        app: usize,
        f: impl FnOnce(&mut dyn SioDialect, &mut Cx<'_, Vec<Action>>),
    ) {
        let mut actions = std::mem::take(&mut self.actions);
        if let Some(d) = self.apps.built(app) {
            f(d, &mut cx.with_out(&mut actions));
        }
        self.apply(cx, app, &mut actions);
        self.actions = actions;
    }

    // ── handshakes ─────────────────────────────────────────────────────────────────────────

    fn create(
        &mut self,
        cx: &mut Cx<'_>,
        sid: &str,
        app: usize,
        transport: Transport,
        query: &[(String, String)],
    ) -> Result<(), Refused> {
        self.can_create(app)?;
        if self.sessions.contains_key(sid) {
            return Err(Refused::Taken);
        }
        let websocket = matches!(transport, Transport::WebSocket(_));
        let timeout = self.ping_timeout(app);
        let open = packet::open_packet(sid, !websocket, self.opts.ping_interval_ms, timeout);
        let deadline = cx.now + self.opts.ping_interval_ms + timeout;
        let mut s = Session {
            app,
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
        if let Transport::WebSocket(c) = transport {
            self.conns.insert(c, sid.into());
        }
        self.timers.push(Reverse((deadline, sid.into())));
        // Every socket is in the room of its own id.
        self.join(app, sid, sid);
        self.call_app(cx, app, |d, acx| d.on_connect(acx, sid, query));
        self.mark(sid);
        Ok(())
    }

    /// Whether a handshake of dialect `app` would be accepted now (builds the dialect on first
    /// use).
    pub fn can_create(&mut self, app: usize) -> Result<(), Refused> {
        if app >= self.apps.count() || self.apps.get(app).is_none() {
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
        cx: &mut Cx<'_>,
        sid: &str,
        app: usize,
        query: &[(String, String)],
        origin: Option<&str>,
    ) -> Result<Response, Refused> {
        self.create(cx, sid, app, Transport::Polling, query)?;
        Ok(self.drain_answer(sid, origin))
    }

    /// A WebSocket handshake (no sid) on `conn`, whose 101 is being written: the session's
    /// packets go out on it at the next [`Sessions::flush`].
    pub fn handshake_ws(
        &mut self,
        cx: &mut Cx<'_>,
        sid: &str,
        app: usize,
        query: &[(String, String)],
        conn: Handle,
    ) -> Result<(), Refused> {
        let r = self.create(cx, sid, app, Transport::WebSocket(conn), query);
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

    /// The held poll of `sid`, taken (it is answered or released by the caller).
    fn take_held(&mut self, sid: &str) -> Option<Held> {
        let h = self.sessions.get_mut(sid)?.held.take()?;
        self.conns.remove(&h.conn);
        Some(h)
    }

    /// A poll GET of `sid` on `conn`.
    pub fn poll_get(
        &mut self,
        sid: &str,
        conn: Handle,
        origin: Option<&str>,
    ) -> Result<PollGet, EioError> {
        let s = self.sessions.get(sid).ok_or(EioError::UnknownSid)?;
        if s.transport != Transport::Polling {
            return Err(EioError::BadRequest);
        }
        if let Some(old) = self.take_held(sid) {
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
        self.conns.insert(conn, sid.into());
        Ok(PollGet::Hold)
    }

    /// A poll POST of `sid` carrying a v3 payload. A body that does not decode ends the
    /// session (as engine.io does on a parser error) and is answered with `Bad request`.
    pub fn poll_post(&mut self, cx: &mut Cx<'_>, sid: &str, body: &[u8]) -> Result<(), EioError> {
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
            self.end(cx, sid);
            return Err(EioError::BadRequest);
        };
        for p in packets {
            if !self.sessions.contains_key(sid) {
                break;
            }
            self.on_packet(cx, sid, p);
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

    /// A WebSocket `conn` attached to the polling session `sid` (its 101 is being written): it
    /// probes, then upgrades with `5`.
    pub fn ws_attach(&mut self, now: u64, sid: &str, conn: Handle) -> bool {
        if self.can_upgrade(sid).is_err() {
            self.direct.push(Direct::CloseWs(conn));
            return false;
        }
        let deadline = now + self.opts.upgrade_timeout_ms;
        let Some(s) = self.sessions.get_mut(sid) else {
            return false;
        };
        s.probe = Some(Probe { conn, deadline });
        if s.timer_at.map_or(true, |cur| cur > deadline) {
            s.timer_at = Some(deadline);
            self.timers.push(Reverse((deadline, sid.into())));
        }
        self.conns.insert(conn, sid.into());
        true
    }

    /// A message on the WebSocket `conn`.
    pub fn ws_message(&mut self, cx: &mut Cx<'_>, conn: Handle, text: Option<&str>) {
        let Some(sid) = self.conns.get(&conn).cloned() else {
            self.direct.push(Direct::CloseWs(conn));
            return;
        };
        match text {
            Some(t) => self.ws_text(cx, &sid, conn, t),
            None => self.ws_binary(cx.now, &sid, conn),
        }
    }

    /// A text message on the WebSocket `conn` of `sid`.
    fn ws_text(&mut self, cx: &mut Cx<'_>, sid: &str, conn: Handle, text: &str) {
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
                    if let Some(h) = self.take_held(sid) {
                        self.direct
                            .push(Direct::Release(h.conn, h.origin, "1:6".into()));
                    }
                    self.mark(sid);
                }
                // Anything else on a probing transport: it is not an upgrade; drop it.
                _ => {
                    s.probe = None;
                    self.conns.remove(&conn);
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
            Ok(p) => self.on_packet(cx, sid, p),
            Err(_) => self.end(cx, sid),
        }
    }

    /// A binary message on a WebSocket: binary Socket.IO packets are not supported; it counts
    /// as traffic (for the heartbeat) and is otherwise dropped.
    fn ws_binary(&mut self, now: u64, sid: &str, conn: Handle) {
        let interval = self.opts.ping_interval_ms;
        if let Some(s) = self.sessions.get_mut(sid) {
            if s.transport == Transport::WebSocket(conn) {
                s.ping_deadline = now + interval + self.apps.ping_timeout_ms(s.app);
            }
        }
    }

    /// `conn` is gone (a WebSocket closed, or a held poll's request went away or got its
    /// fallback): a failed probe leaves the session polling; the close of its transport ends
    /// the session; a gone poll leaves the queue for the next GET.
    pub fn conn_gone(&mut self, cx: &mut Cx<'_>, conn: Handle) {
        let Some(sid) = self.conns.remove(&conn) else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        if s.held.as_ref().is_some_and(|h| h.conn == conn) {
            s.held = None;
            return;
        }
        if s.probe.as_ref().is_some_and(|p| p.conn == conn) {
            s.probe = None;
            return;
        }
        if s.transport == Transport::WebSocket(conn) {
            if s.closing {
                self.sessions.remove(&sid);
            } else {
                self.end(cx, &sid);
            }
        }
    }

    // ── packets ────────────────────────────────────────────────────────────────────────────

    fn on_packet(&mut self, cx: &mut Cx<'_>, sid: &str, p: Packet) {
        let interval = self.opts.ping_interval_ms;
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        // Any packet proves the client alive (engine.io resets its timer on each).
        s.ping_deadline = cx.now + interval + self.apps.ping_timeout_ms(s.app);
        let app = s.app;
        match p {
            Packet::Ping(data) => {
                self.push(sid, format!("3{data}"));
            }
            Packet::Close => {
                if s.closing {
                    self.forget(sid);
                } else {
                    self.end(cx, sid);
                }
            }
            Packet::Message(m) if !s.closing => match decode_sio(&m) {
                Some(SioPacket::Event {
                    nsp, event, args, ..
                }) if nsp == "/" => {
                    self.call_app(cx, app, |d, acx| d.on_event(acx, sid, &event, &args));
                }
                Some(SioPacket::Disconnect { nsp }) if nsp == "/" => self.end(cx, sid),
                Some(SioPacket::Connect { nsp }) if nsp != "/" => {
                    self.push(sid, format!("44{nsp},\"Invalid namespace\""));
                }
                Some(_) => {} // acks, errors, other namespaces, binary: nothing to do
                None => self.end(cx, sid),
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

    fn join(&mut self, app: usize, sid: &str, room: &str) {
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        if s.closing || s.app != app || s.rooms.iter().any(|r| r == room) {
            return;
        }
        s.rooms.push(room.to_owned());
        if let Some(rooms) = self.rooms.get_mut(app) {
            rooms.entry(room.to_owned()).or_default().insert(sid.into());
        }
    }

    fn leave(&mut self, app: usize, sid: &str, room: &str) {
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        s.rooms.retain(|r| r != room);
        if let Some(rooms) = self.rooms.get_mut(app) {
            if let Some(members) = rooms.get_mut(room) {
                members.remove(sid);
                if members.is_empty() {
                    rooms.remove(room);
                }
            }
        }
    }

    /// Apply a dialect's actions in order (and those its disconnect handlers add).
    fn apply(&mut self, cx: &mut Cx<'_>, app: usize, actions: &mut Vec<Action>) {
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
                        To::Room(room) | To::RoomExcept { room, .. } => self
                            .rooms
                            .get(app)
                            .and_then(|r| r.get(room))
                            .map(|m| m.iter().cloned().collect())
                            .unwrap_or_default(),
                    };
                    for t in targets {
                        if matches!(&to, To::RoomExcept { except, .. } if **except == *t) {
                            continue;
                        }
                        if self.sessions.get(&*t).is_some_and(|s| s.app == app)
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
                        .is_some_and(|s| s.app == app)
                        && !self.push(&sid, packet::error_packet(&data))
                    {
                        overfull.push(sid.into());
                    }
                }
                Action::Join { sid, room } => self.join(app, &sid, &room),
                Action::Leave { sid, room } => self.leave(app, &sid, &room),
                Action::Disconnect { sid } => {
                    if self
                        .sessions
                        .get(sid.as_str())
                        .is_some_and(|s| s.app == app && !s.closing)
                    {
                        self.push(&sid, packet::DISCONNECT.to_owned());
                        self.socket_gone(cx, &sid, actions);
                    }
                }
            }
            i += 1;
        }
        actions.clear();
        for sid in overfull {
            self.end(cx, &sid);
        }
    }

    /// The socket `sid` is gone: it leaves every room, its dialect hears of it (its actions
    /// are appended to `actions`), and the session turns `closing`.
    fn socket_gone(&mut self, cx: &mut Cx<'_>, sid: &str, actions: &mut Vec<Action>) {
        let Some(s) = self.sessions.get_mut(sid) else {
            return;
        };
        if s.closing {
            return;
        }
        let app = s.app;
        let rooms = std::mem::take(&mut s.rooms);
        if s.transport == Transport::Polling {
            // Polling clients are told with a close packet after what is queued.
            s.queue.push_back("1".to_owned());
        }
        s.closing = true;
        self.mark(sid);
        if let Some(all) = self.rooms.get_mut(app) {
            for r in rooms {
                if let Some(m) = all.get_mut(&r) {
                    m.remove(sid);
                    if m.is_empty() {
                        all.remove(&r);
                    }
                }
            }
        }
        if let Some(d) = self.apps.built(app) {
            d.on_disconnect(&mut cx.with_out(actions), sid);
        }
    }

    /// End `sid` now (client close, transport close, timeout, protocol error): the dialect
    /// hears of it, its transports are closed, and the session is forgotten.
    pub fn end(&mut self, cx: &mut Cx<'_>, sid: &str) {
        let Some(s) = self.sessions.get(sid) else {
            return;
        };
        let app = s.app;
        let mut actions = std::mem::take(&mut self.actions);
        self.socket_gone(cx, sid, &mut actions);
        self.forget(sid);
        self.apply(cx, app, &mut actions);
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
            self.conns.remove(&h.conn);
            self.direct
                .push(Direct::Release(h.conn, h.origin, "1:1".into()));
        }
        if let Some(p) = s.probe {
            self.conns.remove(&p.conn);
            self.direct.push(Direct::CloseWs(p.conn));
        }
        if let Transport::WebSocket(c) = s.transport {
            self.conns.remove(&c);
            self.direct.push(Direct::CloseWs(c));
        }
    }

    // ── time ───────────────────────────────────────────────────────────────────────────────

    /// The next `cx.now` at which [`Sessions::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<u64> {
        let mut next = self.timers.peek().map(|Reverse((t, _))| *t);
        for app in 0..self.apps.count() {
            if let Some(d) = self.apps.poll_timeout(app) {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
        }
        next
    }

    /// Expire what is due: sessions without a packet for pingInterval + pingTimeout, probes
    /// that did not upgrade in time, and the dialects' own deadlines.
    pub fn tick(&mut self, cx: &mut Cx<'_>) {
        let now = cx.now;
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
                self.end(cx, &sid);
                continue;
            }
            if s.probe.as_ref().is_some_and(|p| p.deadline <= now) {
                if let Some(p) = s.probe.take() {
                    self.conns.remove(&p.conn);
                    self.direct.push(Direct::CloseWs(p.conn));
                }
            }
            let Some(s) = self.sessions.get_mut(&sid) else {
                continue;
            };
            let due = s.next_due();
            s.timer_at = Some(due);
            self.timers.push(Reverse((due, sid)));
        }
        for app in 0..self.apps.count() {
            if self.apps.poll_timeout(app).is_some_and(|d| d <= now) {
                self.call_app(cx, app, |d, acx| d.on_timeout(acx));
            }
        }
    }

    // ── delivery ───────────────────────────────────────────────────────────────────────────

    /// True when [`Sessions::flush`] has something to deliver.
    pub fn wants_flush(&self) -> bool {
        !self.dirty.is_empty() || !self.direct.is_empty()
    }

    /// Queue as outputs what is due to connections: probe answers, released and closed
    /// transports, and every session with queued packets whose transport can take them now.
    pub fn flush(&mut self, cx: &mut Cx<'_>) {
        // Answering a closing session's poll forgets the session, which may leave work for
        // its other connections (a probe to close): a second round delivers it.
        for _ in 0..2 {
            if !self.wants_flush() {
                break;
            }
            self.flush_once(cx);
        }
    }

    fn flush_once(&mut self, cx: &mut Cx<'_>) {
        for d in std::mem::take(&mut self.direct) {
            match d {
                Direct::Ws(c, text) => cx.text(c, &text),
                Direct::CloseWs(c) => cx.close(c, 1000, ""),
                Direct::Release(c, origin, body) => {
                    cx.respond(c, payload_response(body, origin.as_deref()))
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
                    for p in s.queue.drain(..) {
                        cx.text(c, &p);
                    }
                    s.queued_bytes = 0;
                    if s.closing {
                        cx.close(c, 1000, "");
                        self.conns.remove(&c);
                        self.sessions.remove(&sid);
                    }
                }
                Transport::Polling => {
                    if s.held.is_none() || (s.queue.is_empty() && s.probe.is_none() && !s.closing) {
                        continue; // no request waiting, or nothing for it yet
                    }
                    let Some(h) = self.take_held(&sid) else {
                        continue;
                    };
                    let resp = self.drain_answer(&sid, h.origin.as_deref());
                    cx.respond(h.conn, resp);
                }
            }
        }
    }
}
