//! The dialect contract: how every signaling dialect talks to the shell. This is the one
//! description of it; the dialect modules only say what their events mean.
//!
//! A dialect is a sans-I/O state machine. It is handed events and answers only by queuing
//! outputs, which the shell drains after each event. It never touches a socket, a clock, a
//! thread, a lock or the OS random source: time and randomness come in the [`Cx`] of each
//! call, and the shell decides where everything lives.
//!
//! # Life of a request
//!
//! ```text
//!  request head ─► Dialect::place  (on the core that read it; no table state)
//!                     │ Answer(resp) ─► answered there
//!                     │ Key(k) / At(loc) / Here
//!                     ▼
//!                 the shell moves the connection to the instance that owns the placement
//!                     ▼
//!                 Dialect::on_request ─► Answer
//!                     Upgrade ────────► 101 written, then the outputs of the call;
//!                     │                 frames arrive as on_message, the end as on_close
//!                     Respond(resp) ──► answered (keep-alive permitting, the next request)
//!                     ReadBody{max} ──► the body is read, then Dialect::on_body ─► Answer
//!                     Hold{..} ───────► answered later by Output::Respond (or the fallback)
//! ```
//!
//! # Events
//!
//! * [`Dialect::place`]: which instance a request belongs to ([`Placement`]). Called on the core
//!   that read the request, before any state is consulted, so it may only look at the request
//!   (and may mint ids with `rand`). A connection is placed once: after a move it is not placed
//!   again, and the key it was placed by is handed to `on_request`.
//! * [`Dialect::on_request`]: a request placed on this instance. For an upgrade the shell has
//!   already checked the WebSocket headers, so [`Answer::Upgrade`] always writes the 101, and
//!   the dialect may enter the connection in its tables right there.
//! * [`Dialect::on_body`]: the body of a request answered [`Answer::ReadBody`].
//! * [`Dialect::on_message`]: a whole WebSocket message (text or binary, reassembled), as a
//!   [`Message`]: text is a `str`, checked as UTF-8 by the shell (once: a dialect that reads
//!   text, JSON say, reads the `str` and does not check it again).
//! * [`Dialect::on_close`]: a connection the dialect holds stopped being reachable: an open
//!   WebSocket that closed (either side's close, an error, EOF, a slow reader dropped, the
//!   server shutting down) or a held request that went away or got its fallback. Called once,
//!   never for a connection that was answered with a plain response.
//! * [`Dialect::on_timeout`]: the deadline the dialect gave in [`Dialect::poll_timeout`] passed.
//! * [`Dialect::on_told`]: a message another instance of this dialect sent to a key this
//!   instance owns (`Tell`), on behalf of one of its connections.
//! * [`Dialect::on_reply`]: a message for a connection this instance serves, from an instance
//!   that was told something on its behalf (`Reply`).
//! * [`Dialect::on_lost`]: cluster nodes are gone, with their connections and the keys they
//!   owned. [`Dialect::on_moved`]: a key this instance held is owned elsewhere now.
//!
//! # Outputs ([`Output`], queued through [`Cx`])
//!
//! * `Send`: a whole message to a connection; a lossy one is dropped instead when that
//!   connection is behind (for relayed messages whose loss the sender copes with). `Close`: a
//!   close frame with a code and reason.
//!   `Respond`: the answer to a held request. `Pipe`: join two open WebSockets cut-through
//!   (data frames flow between them without reassembly; control frames and teardown are the
//!   shell's). `Store`: an operation for the outside store the shell keeps the dialect's state
//!   in (a cluster's Redis), for a request the dialect holds; the result comes back as
//!   [`Dialect::on_stored`]. Only a dialect told that its state lives outside uses it.
//!   `Tell`: a message for whichever instance of this dialect owns a key, on behalf of a
//!   connection; `Reply`: a message back to the instance serving a connection (see "Keys
//!   beyond the connection" below).
//! * Outputs of one call are applied in order, after the call's own answer is written (so a
//!   `Send` to a connection just upgraded follows its 101).
//! * An output naming a connection that is gone, closing, or (for `Respond`) not waiting is
//!   dropped: a dialect never needs to ask whether its peer is still there, it hears `on_close`.
//!
//! # Connections and placement
//!
//! Connections are named by [`Handle`]s, opaque values the shell resolves to wherever the
//! connection lives; dialects store and compare them, nothing more. A key ([`Placement::Key`])
//! names the instance that owns it: every request placed by one key meets the same instance,
//! which is how two peers of one pair or room find each other. Where that instance runs (which
//! core, some day which machine) is the shell's decision alone. A dialect that mints ids which
//! later requests carry (a session id) writes [`Cx::here`] into them and places those requests
//! with [`Placement::At`].
//!
//! A handle is valid on every instance: a `Send` or `Close` for a connection another instance
//! serves (on another core or node) reaches it, in the order it was queued among the outputs
//! for that connection from this instance.
//!
//! # Keys beyond the connection
//!
//! A connection speaking for many keys at once (a tracker socket announcing many torrents, a
//! y-webrtc socket in many topics) is placed [`Placement::Here`] and its instance sends each
//! part of its work to the key it concerns with [`Cx::tell`]. The shell places a told key as
//! it places a request's (the same core, the same node), so one instance sees every message
//! for a key and decides alone. The owner answers the connection directly with `Send` (its
//! handle is valid there), or the instance serving it with [`Cx::reply`] when that instance
//! must gather several owners' answers into one. The serving instance keeps what belongs to
//! the connection (which keys it spoke to) and tells each key when the connection closes: the
//! owner never hears `on_close` for a connection it was only told about. In a cluster, an
//! owner keeps its claim on a key while [`Dialect::holds`] says it holds state for it.

pub mod anypath;
pub mod cevitxe;
pub mod echo;
pub mod httpapi;
pub mod mewconnect;
pub mod mewv1;
pub mod msgpack;
pub mod peerjs;
pub mod peerolator;
pub mod pipe;
pub mod sio;
pub mod webtorrent;
pub mod workspaces;
pub mod ywebrtc;

use crate::proto::http::{RequestHead, Response};
use crate::proto::ws::DataKind;
pub use crate::proto::ws::Message;
use std::borrow::Cow;
use std::ops::Range;

/// Message kind on the wire.
pub type Kind = DataKind;

/// A connection, as dialects name it. Opaque: the shell packs into it where the connection
/// lives and which incarnation of its slot it is, so a handle of a connection that is gone
/// never reaches a newer one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(u64);

/// A map keyed by connection handles, looked up on every message. Handles are the shell's,
/// never a client's choice, so no client can aim collisions at these maps and a fast hasher is
/// safe here; maps keyed by what clients send (ids, topics, info hashes) keep std's SipHash.
pub type HandleMap<V> = std::collections::HashMap<Handle, V, foldhash::fast::RandomState>;

impl Handle {
    /// Only the shell (and tests) make handles.
    pub const fn from_raw(raw: u64) -> Handle {
        Handle(raw)
    }

    pub const fn raw(self) -> u64 {
        self.0
    }

    /// A handle made of two numbers, for tests and fuzzing.
    pub const fn of(key: u32, gen: u32) -> Handle {
        Handle(((gen as u64) << 32) | key as u64)
    }
}

/// A message for a connection, as the dialects' tables produce them (their dialect hands them
/// to [`Cx::send`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub to: Handle,
    pub kind: Kind,
    pub payload: Vec<u8>,
}

/// Where a dialect instance runs, opaque (see [`Placement::At`]). 24 bits are enough to write
/// into an id; the shell decides what they mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Locator(pub u32);

impl Locator {
    /// The bits a locator may use.
    pub const BITS: u32 = 24;
}

/// Which instance a request belongs to.
#[derive(Debug)]
pub enum Placement {
    /// Any instance will do: the one on the core that read it.
    Here,
    /// The instance that owns this key.
    Key(Box<str>),
    /// The instance at this location (one the dialect wrote into an id it minted). A location
    /// the shell does not know is treated as [`Placement::Here`].
    At(Locator),
    /// Answer at once, wherever the request is (bad parameters, a wrong method, ...).
    Answer(Response),
}

/// The dialect's decision about a request placed on it.
#[derive(Debug)]
pub enum Answer {
    /// Accept the WebSocket upgrade (the shell checked its headers: the 101 is written).
    Upgrade,
    /// Answer with this response: a plain request, or an upgrade refused.
    Respond(Response),
    /// Read the request's body first (at most `max` bytes: a larger `Content-Length` gets 413
    /// before any body byte is read), then [`Dialect::on_body`] decides.
    ReadBody { max: usize },
    /// Answer later with [`Output::Respond`]; at `until_ms` (the instance's clock) without an
    /// answer, `fallback` is sent and the dialect hears `on_close`.
    Hold { until_ms: u64, fallback: Response },
}

/// What a dialect asks of the shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// One unfragmented message; the payload is `bytes[range]` of the [`Outputs`] it is in.
    /// A `lossy` one is dropped (and counted) instead when its connection is behind: already
    /// `--buffer-size` bytes queued for it. For messages worth something only if they arrive
    /// soon and whose sender copes with their loss (a tracker's relayed offers and answers):
    /// a reader that falls behind then loses those, not its connection.
    Send {
        to: Handle,
        kind: Kind,
        payload: Range<usize>,
        lossy: bool,
    },
    /// Close the WebSocket with this code and reason (at most 123 bytes); code 1005
    /// ([`crate::proto::ws::NO_STATUS`]) sends a close frame without a status code.
    Close {
        conn: Handle,
        code: u16,
        reason: Cow<'static, str>,
    },
    /// The answer to a held request (boxed: the other outputs are small).
    Respond {
        conn: Handle,
        response: Box<Response>,
    },
    /// Join two open WebSockets cut-through, each receiving the other's data frames.
    Pipe { a: Handle, b: Handle },
    /// Run `bytes[op]` of the [`Outputs`] on the dialect's outside store, for the request
    /// `conn` the dialect holds; the result arrives as [`Dialect::on_stored`].
    Store { conn: Handle, op: Range<usize> },
    /// `bytes[payload]` for the instance of dialect `dialect` (the one queuing it: the shell
    /// fills it in) that owns the key `bytes[key]`, on behalf of `from`; it arrives there as
    /// [`Dialect::on_told`].
    Tell {
        dialect: u8,
        key: Range<usize>,
        from: Handle,
        payload: Range<usize>,
    },
    /// `bytes[payload]` for the instance serving `to`; it arrives as [`Dialect::on_reply`],
    /// or nowhere if `to` is gone.
    Reply { to: Handle, payload: Range<usize> },
}

/// A queue of outputs with the bytes of their messages in one buffer (no allocation per
/// message once warm). The shell drains it after every call.
#[derive(Debug, Default)]
pub struct Outputs {
    list: Vec<Output>,
    bytes: Vec<u8>,
    /// The dialect whose call is queuing (the shell's index, written into `Tell`s).
    pub dialect: u8,
}

impl Outputs {
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// The outputs in order, with the payload bytes they refer to.
    pub fn iter(&self) -> impl Iterator<Item = (&Output, &[u8])> {
        self.list.iter().map(|o| match o {
            Output::Send { payload, .. }
            | Output::Store { op: payload, .. }
            | Output::Tell { payload, .. }
            | Output::Reply { payload, .. } => (o, &self.bytes[payload.clone()]),
            _ => (o, &[][..]),
        })
    }

    /// Takes the tells and replies out, in order, and leaves the other outputs: for a table
    /// used alone (tests, fuzzing, benches), the owner of every key and the server of every
    /// connection, which then hears them itself.
    pub fn take_local(&mut self) -> Vec<Local> {
        let bytes = &self.bytes;
        let mut local = Vec::new();
        self.list.retain(|o| {
            match o {
                Output::Tell {
                    key, from, payload, ..
                } => local.push(Local::Tell {
                    from: *from,
                    key: String::from_utf8_lossy(&bytes[key.clone()]).into_owned(),
                    payload: bytes[payload.clone()].to_vec(),
                }),
                Output::Reply { to, payload } => local.push(Local::Reply {
                    to: *to,
                    payload: bytes[payload.clone()].to_vec(),
                }),
                _ => return true,
            }
            false
        });
        local
    }

    /// Move everything out, leaving the buffers' capacity behind.
    pub fn drain(&mut self) -> (std::vec::Drain<'_, Output>, &[u8]) {
        let bytes = &self.bytes[..];
        (self.list.drain(..), bytes)
    }

    pub fn clear(&mut self) {
        self.list.clear();
        self.bytes.clear();
    }

    fn push_send(&mut self, to: Handle, kind: Kind, write: impl FnOnce(&mut Vec<u8>)) {
        let start = self.bytes.len();
        write(&mut self.bytes);
        self.list.push(Output::Send {
            to,
            kind,
            payload: start..self.bytes.len(),
            lossy: false,
        });
    }
}

/// A `Tell` or `Reply` taken out of [`Outputs`] ([`Outputs::take_local`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Local {
    Tell {
        from: Handle,
        key: String,
        payload: Vec<u8>,
    },
    Reply {
        to: Handle,
        payload: Vec<u8>,
    },
}

/// Randomness, passed in: the shell's is the OS CSPRNG (ids are capabilities); tests pass a
/// seeded one.
pub trait Random {
    fn fill(&mut self, buf: &mut [u8]);
}

/// A small deterministic generator (splitmix64) for tests and fuzzing. Not for ids a real
/// server hands out.
#[derive(Debug, Clone)]
pub struct Seeded(pub u64);

impl Random for Seeded {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
        }
    }
}

/// ICE servers for one user, as the dialects hand them out.
#[derive(Debug, Clone, PartialEq)]
pub struct IceServers {
    /// A JSON array of RTCIceServer objects, each with both `url` and `urls`.
    pub servers: serde_json::Value,
    /// MewConnect's `turntoken` object for the same list (PROTOCOLS.md §1.8).
    pub token: serde_json::Value,
}

/// What a dialect may ask of its surroundings besides time and randomness.
pub trait Env {
    /// The ICE servers for `user` (a connection or attendee id: TURN REST usernames carry it).
    fn ice_servers(&mut self, user: &str) -> IceServers;
}

/// An environment without ICE configuration (the default Google STUN list's shape is not
/// assumed: an empty list), for tests.
#[derive(Debug, Default)]
pub struct NoEnv;

impl Env for NoEnv {
    fn ice_servers(&mut self, _user: &str) -> IceServers {
        IceServers {
            servers: serde_json::Value::Array(Vec::new()),
            token: serde_json::Value::Null,
        }
    }
}

/// The context of one call: the time, randomness, the environment, and where outputs go.
/// `O` is the kind of output: [`Outputs`] for dialects, `Vec<sio::Action>` for the Socket.IO
/// dialects on the Engine.IO layer.
pub struct Cx<'a, O = Outputs> {
    /// Milliseconds on the instance's monotonic clock (deadlines).
    pub now: u64,
    /// Milliseconds since the UNIX epoch (token lifetimes, TTLs, timestamps clients see).
    pub unix_ms: u64,
    /// Where this instance runs.
    pub here: Locator,
    pub rand: &'a mut dyn Random,
    pub env: &'a mut dyn Env,
    pub out: &'a mut O,
    /// Where the shell lets messages to the connection being served be written at once, as
    /// frames on its send queue; the effect is that of queuing them (only taken while nothing
    /// else is queued, so the order of outputs is kept). `None` everywhere but there.
    pub direct: Option<Direct<'a>>,
}

/// The send queue of the connection whose event is being handled (see [`Cx::direct`]).
pub struct Direct<'a> {
    pub conn: Handle,
    pub out: &'a mut Vec<u8>,
    pub counters: &'a mut crate::proto::conn::Counters,
}

impl<O> Cx<'_, O> {
    /// `N` random bytes.
    pub fn random<const N: usize>(&mut self) -> [u8; N] {
        let mut b = [0u8; N];
        self.rand.fill(&mut b);
        b
    }

    /// `N` random bytes as `2N` lowercase hex digits.
    pub fn hex_id<const N: usize>(&mut self) -> String {
        hex(&self.random::<N>())
    }

    /// The same context with another output queue (a layer handing calls on to its dialects).
    pub fn with_out<'b, P>(&'b mut self, out: &'b mut P) -> Cx<'b, P> {
        Cx {
            now: self.now,
            unix_ms: self.unix_ms,
            here: self.here,
            rand: &mut *self.rand,
            env: &mut *self.env,
            out,
            direct: None,
        }
    }
}

impl Cx<'_, Outputs> {
    /// Queue one message.
    pub fn send(&mut self, to: Handle, kind: Kind, payload: &[u8]) {
        if let Some(d) = self.direct.as_mut().filter(|d| d.conn == to) {
            if self.out.is_empty() {
                crate::proto::ws::encode_frame(true, kind.opcode(), payload, d.out);
                d.counters.frames_out += 1;
                d.counters.messages_out += 1;
                return;
            }
        }
        self.out
            .push_send(to, kind, |b| b.extend_from_slice(payload));
    }

    /// Queue one text message.
    pub fn text(&mut self, to: Handle, payload: &str) {
        self.send(to, Kind::Text, payload.as_bytes());
    }

    /// Queue messages a table produced, in order.
    pub fn send_all(&mut self, msgs: impl IntoIterator<Item = Outgoing>) {
        for m in msgs {
            self.send(m.to, m.kind, &m.payload);
        }
    }

    /// Queue one message for each of `tos`, its bytes stored once.
    pub fn send_many(&mut self, tos: impl IntoIterator<Item = Handle>, kind: Kind, payload: &[u8]) {
        self.send_many_with(tos, kind, |b| b.extend_from_slice(payload));
    }

    /// [`Cx::send_many`], the bytes written in place by `write`.
    pub fn send_many_with(
        &mut self,
        tos: impl IntoIterator<Item = Handle>,
        kind: Kind,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let start = self.out.bytes.len();
        write(&mut self.out.bytes);
        let payload = start..self.out.bytes.len();
        let before = self.out.list.len();
        self.out.list.extend(tos.into_iter().map(|to| Output::Send {
            to,
            kind,
            payload: payload.clone(),
            lossy: false,
        }));
        if self.out.list.len() == before {
            self.out.bytes.truncate(start);
        }
    }

    /// Queue one message that may be dropped if `to` is behind (see [`Output::Send`]).
    pub fn send_lossy(&mut self, to: Handle, kind: Kind, payload: &[u8]) {
        self.send_lossy_with(to, kind, |b| b.extend_from_slice(payload));
    }

    /// [`Cx::send_lossy`], the bytes written in place by `write`.
    pub fn send_lossy_with(&mut self, to: Handle, kind: Kind, write: impl FnOnce(&mut Vec<u8>)) {
        self.out.push_send(to, kind, write);
        if let Some(Output::Send { lossy, .. }) = self.out.list.last_mut() {
            *lossy = true;
        }
    }

    /// Queue one message written in place by `write`.
    pub fn send_with(&mut self, to: Handle, kind: Kind, write: impl FnOnce(&mut Vec<u8>)) {
        self.out.push_send(to, kind, write);
    }

    pub fn close(&mut self, conn: Handle, code: u16, reason: impl Into<Cow<'static, str>>) {
        self.out.list.push(Output::Close {
            conn,
            code,
            reason: reason.into(),
        });
    }

    pub fn respond(&mut self, conn: Handle, response: Response) {
        self.out.list.push(Output::Respond {
            conn,
            response: Box::new(response),
        });
    }

    pub fn pipe(&mut self, a: Handle, b: Handle) {
        self.out.list.push(Output::Pipe { a, b });
    }

    /// Queue `payload` for the instance owning `key`, on behalf of `from` (see "Keys beyond
    /// the connection" in the module docs).
    pub fn tell(&mut self, key: &str, from: Handle, payload: &[u8]) {
        self.tell_with(key, from, |b| b.extend_from_slice(payload));
    }

    /// [`Cx::tell`], the payload written in place by `write`.
    pub fn tell_with(&mut self, key: &str, from: Handle, write: impl FnOnce(&mut Vec<u8>)) {
        let o = &mut *self.out;
        let start = o.bytes.len();
        o.bytes.extend_from_slice(key.as_bytes());
        let key = start..o.bytes.len();
        write(&mut o.bytes);
        let payload = key.end..o.bytes.len();
        o.list.push(Output::Tell {
            dialect: o.dialect,
            key,
            from,
            payload,
        });
    }

    /// Queue `payload` for the instance serving `to` (see [`Output::Reply`]).
    pub fn reply_with(&mut self, to: Handle, write: impl FnOnce(&mut Vec<u8>)) {
        let o = &mut *self.out;
        let start = o.bytes.len();
        write(&mut o.bytes);
        let payload = start..o.bytes.len();
        o.list.push(Output::Reply { to, payload });
    }

    /// Queue an operation for the outside store (see [`Output::Store`]).
    pub fn store(&mut self, conn: Handle, op: &[u8]) {
        let start = self.out.bytes.len();
        self.out.bytes.extend_from_slice(op);
        let op = start..self.out.bytes.len();
        self.out.list.push(Output::Store { conn, op });
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(2 * bytes.len());
    for x in bytes {
        s.push(char::from(HEX[usize::from(x >> 4)]));
        s.push(char::from(HEX[usize::from(x & 15)]));
    }
    s
}

/// A random version 4 UUID (RFC 9562): 122 random bits, the version and variant set.
fn uuid_v4_bytes(rand: &mut dyn Random) -> [u8; 16] {
    let mut b = [0u8; 16];
    rand.fill(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // variant 10
    b
}

/// A random version 4 UUID in its "simple" form: 32 lowercase hex digits, no hyphens.
pub fn uuid_v4_simple(rand: &mut dyn Random) -> String {
    hex(&uuid_v4_bytes(rand))
}

/// A random version 4 UUID (RFC 9562) in its 36-character lowercase form.
pub fn uuid_v4(rand: &mut dyn Random) -> String {
    let h = uuid_v4_simple(rand);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A signaling dialect. Every method but `place` and `on_request` has a default that ignores
/// the event, so a dialect implements only what it uses.
pub trait Dialect {
    /// Which instance `req` belongs to (see the module docs).
    fn place(&self, req: &RequestHead, rand: &mut dyn Random) -> Placement;

    /// A request placed on this instance; `key` is the key it was placed by, if any.
    fn on_request(
        &mut self,
        cx: &mut Cx<'_>,
        conn: Handle,
        key: Option<&str>,
        req: &RequestHead,
    ) -> Answer;

    /// The body of a request answered with [`Answer::ReadBody`].
    fn on_body(&mut self, cx: &mut Cx<'_>, conn: Handle, req: &RequestHead, body: &[u8]) -> Answer {
        let _ = (cx, conn, req, body);
        Answer::Respond(Response::text(404, "not found"))
    }

    /// A whole message from the open WebSocket `conn`. Text comes as a `str`: the shell has
    /// checked it as UTF-8 (once, as RFC 6455 requires), so a dialect reads it as it is.
    fn on_message(&mut self, cx: &mut Cx<'_>, conn: Handle, msg: Message<'_>) {
        let _ = (cx, conn, msg);
    }

    /// `conn` (an open WebSocket or a held request of this dialect) is gone.
    fn on_close(&mut self, cx: &mut Cx<'_>, conn: Handle) {
        let _ = (cx, conn);
    }

    /// The outside store's result for an [`Output::Store`] of a request `conn` this dialect
    /// holds (the request may be gone: then the answer is dropped).
    fn on_stored(&mut self, cx: &mut Cx<'_>, conn: Handle, result: &[u8]) {
        let _ = (cx, conn, result);
    }

    /// `payload`, told by an instance of this dialect to `key`, which this instance owns, on
    /// behalf of its connection `from` (see "Keys beyond the connection").
    fn on_told(&mut self, cx: &mut Cx<'_>, from: Handle, key: &str, payload: &[u8]) {
        let _ = (cx, from, key, payload);
    }

    /// `payload`, replied by an instance that was told something on behalf of `conn`, a
    /// connection this instance serves.
    fn on_reply(&mut self, cx: &mut Cx<'_>, conn: Handle, payload: &[u8]) {
        let _ = (cx, conn, payload);
    }

    /// Other nodes of the cluster are gone (or Redis was, and is back): the connections for
    /// which `lost` is true went with them (this instance never hears `on_close` for those it
    /// was only told about), and so may the owners of keys it told things: what those must
    /// know is told again.
    fn on_lost(&mut self, cx: &mut Cx<'_>, lost: &dyn Fn(Handle) -> bool) {
        let _ = (cx, lost);
    }

    /// Another instance owns `key` now (after a cluster outage, when this one owned it
    /// before): what this instance holds for it is stale and goes.
    fn on_moved(&mut self, cx: &mut Cx<'_>, key: &str) {
        let _ = (cx, key);
    }

    /// Whether this instance holds state for a key it was told (in a cluster, its node keeps
    /// its claim on the key while it does).
    fn holds(&self, key: &str) -> bool {
        let _ = key;
        false
    }

    /// The deadline from [`Dialect::poll_timeout`] passed.
    fn on_timeout(&mut self, cx: &mut Cx<'_>) {
        let _ = cx;
    }

    /// When `on_timeout` has something to do next (the instance's clock), if ever.
    fn poll_timeout(&self) -> Option<u64> {
        None
    }

    /// A number this dialect reports as its gauge (sessions, members), if it has one.
    fn gauge(&self) -> u64 {
        0
    }

    /// The values of the metrics the registry lists for this dialect, in that order (a
    /// histogram fills [`Latencies::SLOTS`] of them). By default its one metric is
    /// [`Dialect::gauge`].
    fn metrics(&self, out: &mut [u64]) {
        if let Some(first) = out.first_mut() {
            *first = self.gauge();
        }
    }
}

/// A number a dialect reports on `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    /// Given once per name: the first metric of a name carries it.
    pub help: &'static str,
    pub kind: MetricKind,
    /// Its labels as written between the braces (`reason="x"`), or empty.
    pub labels: &'static str,
}

/// What a [`Metric`] is, in Prometheus' terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Gauge,
    /// Only grows.
    Counter,
    /// A latency histogram ([`Latencies`]): it fills [`Latencies::SLOTS`] values, not one.
    Histogram,
}

impl MetricKind {
    /// Its `# TYPE` word.
    pub const fn name(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Counter => "counter",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// The upper bounds (inclusive) of the latency histograms' buckets, in microseconds: from a
/// loop turn's work to a handshake's worst case; a last bucket (`+Inf`) takes the rest.
pub const LATENCY_BUCKETS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// A latency histogram a dialect keeps (how long pairing took, say): a count per bucket of
/// [`LATENCY_BUCKETS_US`] and `+Inf`, not cumulative, and the sum in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Latencies {
    buckets: [u64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: u64,
}

impl Latencies {
    /// The values it reports: the buckets, then the sum.
    pub const SLOTS: usize = LATENCY_BUCKETS_US.len() + 2;

    pub fn observe_ms(&mut self, ms: u64) {
        let us = ms.saturating_mul(1000);
        let i = LATENCY_BUCKETS_US.partition_point(|&b| b < us);
        self.buckets[i] += 1;
        self.sum_us = self.sum_us.saturating_add(us);
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Writes its [`Latencies::SLOTS`] values to the front of `out`, then `then`: the metrics
    /// of a dialect that lists this histogram first.
    pub fn write_then(&self, out: &mut [u64], then: impl IntoIterator<Item = u64>) {
        let values = self
            .buckets
            .iter()
            .copied()
            .chain([self.sum_us])
            .chain(then);
        for (o, v) in out.iter_mut().zip(values) {
            *o = v;
        }
    }
}

impl Metric {
    pub const fn gauge(name: &'static str, help: &'static str) -> Metric {
        Metric {
            name,
            help,
            kind: MetricKind::Gauge,
            labels: "",
        }
    }

    pub const fn counter(name: &'static str, help: &'static str) -> Metric {
        Metric {
            name,
            help,
            kind: MetricKind::Counter,
            labels: "",
        }
    }

    /// One series of a labelled counter; consecutive entries share the name.
    pub const fn labelled(name: &'static str, help: &'static str, labels: &'static str) -> Metric {
        Metric {
            name,
            help,
            kind: MetricKind::Counter,
            labels,
        }
    }

    /// A latency histogram ([`Latencies`]) with these labels.
    pub const fn histogram(name: &'static str, help: &'static str, labels: &'static str) -> Metric {
        Metric {
            name,
            help,
            kind: MetricKind::Histogram,
            labels,
        }
    }

    /// How many values it fills in [`Dialect::metrics`].
    pub const fn slots(&self) -> usize {
        match self.kind {
            MetricKind::Histogram => Latencies::SLOTS,
            MetricKind::Gauge | MetricKind::Counter => 1,
        }
    }
}

/// `426 Upgrade Required` for a plain request to a WebSocket-only path.
pub fn upgrade_required() -> Response {
    let mut r = Response::text(426, "this endpoint speaks WebSocket only");
    r.headers.push(("Upgrade".into(), "websocket".into()));
    r
}

/// A min-heap of `(deadline, item)` with lazy revalidation: entries are never removed early;
/// the owner checks, when one pops, whether it still applies. The dialects' timers.
#[derive(Debug)]
pub struct Deadlines<T: Ord> {
    heap: std::collections::BinaryHeap<std::cmp::Reverse<(u64, T)>>,
}

impl<T: Ord> Default for Deadlines<T> {
    fn default() -> Self {
        Deadlines {
            heap: std::collections::BinaryHeap::new(),
        }
    }
}

impl<T: Ord> Deadlines<T> {
    pub fn push(&mut self, at: u64, item: T) {
        self.heap.push(std::cmp::Reverse((at, item)));
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<u64> {
        self.heap.peek().map(|std::cmp::Reverse((at, _))| *at)
    }

    /// The next entry due at `now`, if any.
    pub fn pop_due(&mut self, now: u64) -> Option<(u64, T)> {
        if self.next()? > now {
            return None;
        }
        self.heap.pop().map(|std::cmp::Reverse(e)| e)
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
pub mod testing;
