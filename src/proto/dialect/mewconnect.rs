//! MewConnect v2 pairing (PROTOCOLS.md §1.1–§1.9, with the §1.12 recommendations), as a pure
//! table: sockets are [`Handle`]s, input is whole WebSocket messages, output is
//! [`Outgoing`] messages.
//!
//! Owns: the upgrade query (`role`, `connId`, `signed`) and its validation, the pair table
//! keyed by `connId` (at most one initiator and one receiver), the admission rules checked at
//! the upgrade, the actions (`offersignal`, `answersignal`, `rtcconnected`, `tryturn`, `ping`),
//! the payload shape validation of §1.4, the server signals of §1.5, the API Gateway style
//! error frames of §1.7, and each member's idle and lifetime deadlines.
//!
//! Does not own: which core a `connId` lives on (the shell places both members of a pair on
//! the core owning `mew/<connId>` *before* answering the upgrade, so the admission decision
//! and the table are on one thread), randomness (the shell mints the per-connection ids and
//! request ids of error frames), the ICE server list (asked of the shell through [`Env`] when
//! a `tryturn` arrives), closing sockets (this table never asks for a close: §1.7 says never
//! close because of a bad frame).
//!
//! # State machine (§1.6)
//!
//! ```text
//! (none) --initiator admitted--> [I]          S→I initiated
//! [I] --receiver admitted (signed equal)--> [I,R]   S→I confirmation, S→R confirmation
//! [I,R] --I leaves--> [R]                     S→R disconnected("initiator has disconnected")
//! [I,R] --R leaves--> [I]                     S→I disconnected("receiver has disconnected")
//! [I] / [R] --last member leaves--> (none)
//! ```
//!
//! Admission ([`Pairs::check`]), in the order of the original: an initiator is refused if any
//! entry exists for its `connId`; a receiver is refused if there is no entry, if both entries
//! exist, if only a receiver remains, or if its `signed` differs from the initiator's (exact,
//! case-sensitive string comparison: the server cannot verify the signature, §1.9).

use super::HandleMap;
use super::{upgrade_required, Latencies, Metric, Random};
use super::{
    Answer, Cx, Deadlines, Dialect, Handle, IceServers, Kind, Message, Outgoing, Placement,
};
use crate::proto::http::{percent_decode, RequestHead, Response};
use crate::proto::time::Tick;
use serde_json::value::RawValue;
use serde_json::{json, Map as JsonMap, Value as Json};
use std::collections::HashMap;
use std::time::Duration;

/// HTTP status of an upgrade refused for a bad query parameter (§1.3 RECOMMEND).
pub const PARAM_STATUS: u16 = 500;
/// HTTP status of an upgrade refused by the pairing rules (§1.3 RECOMMEND; the Android
/// receiver reads 404 as "QR code expired").
pub const REFUSAL_STATUS: u16 = 404;
/// `ttl` of the `turntoken` object built from a static ICE list (§1.8), as the original's
/// default Twilio token lifetime.
pub const TURN_TTL: &str = "3600";

/// Which side of the pair a socket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Initiator,
    Receiver,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Initiator => "initiator",
            Role::Receiver => "receiver",
        }
    }
}

/// The validated upgrade query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    pub role: Role,
    pub conn_id: Box<str>,
    pub signed: Box<str>,
}

/// A query parameter that failed validation (checked in this order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamError {
    Role,
    ConnId,
    Signed,
}

impl ParamError {
    /// The response body (§1.3).
    pub fn text(self) -> &'static str {
        match self {
            ParamError::Role => "Failed to connect: Invalid @role",
            ParamError::ConnId => "Failed to connect: Invalid @connId",
            ParamError::Signed => "Failed to connect: Invalid @signed",
        }
    }
}

/// Why the pairing rules refuse an upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Refusal {
    /// An initiator for a `connId` that has any entry.
    ConnIdExists,
    /// A receiver for a `connId` with no entry.
    NoPair,
    /// A receiver for a `connId` whose pair is complete.
    PairFull,
    /// A receiver for a `connId` whose initiator left (a receiver remains).
    InitiatorGone,
    /// A receiver whose `signed` differs from the initiator's.
    BadSigned,
}

impl Refusal {
    /// Every refusal, in the order of [`METRICS`]' refusal counters.
    pub const ALL: [Refusal; 5] = [
        Refusal::ConnIdExists,
        Refusal::NoPair,
        Refusal::PairFull,
        Refusal::InitiatorGone,
        Refusal::BadSigned,
    ];

    /// The response body (§1.3).
    pub fn text(self) -> &'static str {
        match self {
            Refusal::ConnIdExists => "Failed to connect: @connId already exists!",
            Refusal::NoPair => "Failed to connect: Connection pair doesn't exist!",
            Refusal::PairFull => {
                "Failed to connect: A connection pair already exists for this @connId"
            }
            Refusal::InitiatorGone => "Failed to connect: Initiator has disconnected",
            Refusal::BadSigned => "Failed to connect: Invalid @signed",
        }
    }
}

/// Read `role`, `connId` and `signed` from a raw query string, with the original's lenient
/// rules (§1.3): `role` exactly `initiator` or `receiver`; `connId` 32 characters long with at
/// least one hex digit somewhere; `signed` with at least one hex digit. Values are
/// percent-decoded; of a repeated parameter the first counts.
/// Whether an upgrade's query carries any of MewConnect's parameters (`role`, `connId`,
/// `signed`): every MewConnect client sends them, a y-webrtc client none.
pub fn names_itself(query: Option<&str>) -> bool {
    query.unwrap_or("").split('&').any(|pair| {
        let k = pair.split_once('=').map_or(pair, |(k, _)| k);
        matches!(k, "role" | "connId" | "signed")
    })
}

pub fn parse_params(query: Option<&str>) -> Result<Params, ParamError> {
    let mut role = None;
    let mut conn_id = None;
    let mut signed = None;
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match k {
            "role" => &mut role,
            "connId" => &mut conn_id,
            "signed" => &mut signed,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(percent_decode(v));
        }
    }
    let role = match role.flatten().as_deref() {
        Some("initiator") => Role::Initiator,
        Some("receiver") => Role::Receiver,
        _ => return Err(ParamError::Role),
    };
    let has_hex = |s: &str| s.bytes().any(|b| b.is_ascii_hexdigit());
    // JavaScript's `length`: UTF-16 code units.
    let conn_id = conn_id
        .flatten()
        .filter(|c| c.encode_utf16().count() == 32 && has_hex(c))
        .ok_or(ParamError::ConnId)?;
    let signed = signed
        .flatten()
        .filter(|s| has_hex(s))
        .ok_or(ParamError::Signed)?;
    Ok(Params {
        role,
        conn_id: conn_id.into(),
        signed: signed.into(),
    })
}

/// What the table asks of its surroundings while handling a message.
pub trait Env {
    /// The ICE server list for a `tryturn` of this `connId` (a JSON array of RTCIceServer
    /// objects).
    fn ice_servers(&mut self, conn_id: &str) -> Json;
    /// The `turntoken` object for the list just returned by `ice_servers` (§1.8). By default
    /// the static-list shape: `iceServers`, `ttl` "3600", credentials of the first entry
    /// that has some.
    fn turn_token(&mut self, servers: &Json) -> Json {
        static_turn_token(servers)
    }
    /// A fresh random id for an error frame's `requestId`.
    fn request_id(&mut self) -> String;
}

/// Options of the table.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Answer bad frames with API Gateway's error frames (§1.7); else drop them silently.
    pub error_frames: bool,
    /// Close a member that sent no message for this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Close a member this long after it was admitted (`None`: never).
    pub max_lifetime: Option<Duration>,
}

/// What a member's deadline check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Close it now (code 1001) with this reason.
    Close(&'static str),
    /// Nothing yet; check again at this instant.
    At(Tick),
    /// No deadline applies.
    Never,
}

struct Member {
    conn_id: Box<str>,
    role: Role,
    /// Its API Gateway style `connectionId` (for error frames).
    api_id: Box<str>,
    admitted: Tick,
    last_msg: Tick,
}

struct Pair {
    initiator: Option<Handle>,
    receiver: Option<Handle>,
    /// The initiator's `signed`.
    signed: Box<str>,
}

/// The MewConnect v2 pair table of one core.
#[derive(Default)]
pub struct Pairs {
    pairs: HashMap<Box<str>, Pair>,
    members: HandleMap<Member>,
}

impl Pairs {
    pub fn new() -> Self {
        Self::default()
    }

    /// How long (ms) the initiator of `receiver`'s pair had waited for it, at `now`.
    pub fn waited_ms(&self, receiver: Handle, now: Tick) -> Option<u64> {
        let m = self.members.get(&receiver)?;
        let initiator = self.pairs.get(&m.conn_id)?.initiator?;
        Some(u64::from(now.since(self.members.get(&initiator)?.admitted)))
    }

    /// Would an upgrade with `p` be admitted now?
    pub fn check(&self, p: &Params) -> Result<(), Refusal> {
        let pair = self.pairs.get(&p.conn_id);
        match (p.role, pair) {
            (Role::Initiator, Some(_)) => Err(Refusal::ConnIdExists),
            (Role::Initiator, None) => Ok(()),
            (Role::Receiver, None) => Err(Refusal::NoPair),
            (Role::Receiver, Some(pair)) => match (pair.initiator, pair.receiver) {
                (Some(_), Some(_)) => Err(Refusal::PairFull),
                (None, Some(_)) => Err(Refusal::InitiatorGone),
                (None, None) => Err(Refusal::NoPair), // not kept: an empty pair is removed
                (Some(_), None) if *pair.signed != *p.signed => Err(Refusal::BadSigned),
                (Some(_), None) => Ok(()),
            },
        }
    }

    /// Enter `conn` (whose 101 has just been written) under `p`, and queue the signals of its
    /// arrival. `api_id` is its random API Gateway style connection id. Checks again, so a
    /// caller cannot admit what [`Pairs::check`] refuses.
    pub fn admit(
        &mut self,
        p: Params,
        conn: Handle,
        api_id: Box<str>,
        now: Tick,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), Refusal> {
        self.check(&p)?;
        if self.members.contains_key(&conn) {
            self.leave(conn, out); // a reused reference: the old one is gone
        }
        let Params {
            role,
            conn_id,
            signed,
        } = p;
        match role {
            Role::Initiator => {
                self.pairs.insert(
                    conn_id.clone(),
                    Pair {
                        initiator: Some(conn),
                        receiver: None,
                        signed,
                    },
                );
                out.push(signal(
                    conn,
                    "initiated",
                    "\"\"",
                    "Connected. Waiting for receiver.",
                ));
            }
            Role::Receiver => {
                let pair = self
                    .pairs
                    .get_mut(&conn_id)
                    .expect("check() found the pair with its initiator");
                pair.receiver = Some(conn);
                if let Some(i) = pair.initiator {
                    out.push(signal(
                        i,
                        "confirmation",
                        "\"\"",
                        "Receiver Connected. Please Create WebRTC Offer.",
                    ));
                }
                out.push(signal(
                    conn,
                    "confirmation",
                    "\"\"",
                    "Connected. Awaiting WebRTC Offer Details.",
                ));
            }
        }
        self.members.insert(
            conn,
            Member {
                conn_id,
                role,
                api_id,
                admitted: now,
                last_msg: now,
            },
        );
        Ok(())
    }

    /// `conn` closed: remove it, and tell the other member of its pair.
    pub fn leave(&mut self, conn: Handle, out: &mut Vec<Outgoing>) {
        let Some(m) = self.members.remove(&conn) else {
            return;
        };
        let Some(pair) = self.pairs.get_mut(&m.conn_id) else {
            return;
        };
        let (mine, other) = match m.role {
            Role::Initiator => (&mut pair.initiator, pair.receiver),
            Role::Receiver => (&mut pair.receiver, pair.initiator),
        };
        if *mine != Some(conn) {
            return;
        }
        *mine = None;
        match other {
            Some(o) => {
                let text = match m.role {
                    Role::Initiator => "initiator has disconnected",
                    Role::Receiver => "receiver has disconnected",
                };
                out.push(signal(o, "disconnected", "\"\"", text));
            }
            None => {
                self.pairs.remove(&m.conn_id);
            }
        }
    }

    /// Number of members (sockets) in the table.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Number of `connId`s with at least one member.
    pub fn pairs(&self) -> usize {
        self.pairs.len()
    }

    /// The idle and lifetime deadlines of `conn` at `now`.
    pub fn due(&self, conn: Handle, now: Tick, opts: &Options) -> Due {
        let Some(m) = self.members.get(&conn) else {
            return Due::Never;
        };
        let life = opts.max_lifetime.map(|d| m.admitted.after(d));
        let idle = opts.idle_timeout.map(|d| m.last_msg.after(d));
        if life.is_some_and(|t| now.reached(t)) {
            return Due::Close("connection lifetime limit reached");
        }
        if idle.is_some_and(|t| now.reached(t)) {
            return Due::Close("idle timeout");
        }
        match crate::proto::time::earliest(life, idle) {
            Some(t) => Due::At(t),
            None => Due::Never,
        }
    }

    /// One message from `conn`. Everything it causes, including replies to `conn` itself, is
    /// pushed to `out`.
    #[allow(clippy::too_many_arguments)] // the message and its context, passed explicitly
    pub fn message(
        &mut self,
        conn: Handle,
        now: Tick,
        kind: Kind,
        payload: &[u8],
        opts: &Options,
        env: &mut dyn Env,
        out: &mut Vec<Outgoing>,
    ) {
        let Some(m) = self.members.get_mut(&conn) else {
            return;
        };
        m.last_msg = now;
        let m = &self.members[&conn];
        let pair = self.pairs.get(&m.conn_id);
        let (initiator, receiver) = pair.map_or((None, None), |p| (p.initiator, p.receiver));
        let reject = |what: &str, env: &mut dyn Env, out: &mut Vec<Outgoing>| {
            if opts.error_frames {
                out.push(error_frame(conn, what, &m.api_id, &env.request_id()));
            }
        };
        let Some(frame) = parse_frame(kind, payload) else {
            return reject(FORBIDDEN, env, out);
        };
        match frame.action.as_str() {
            "offersignal" | "answersignal" => {
                let offer = frame.action == "offersignal";
                let target = if offer { receiver } else { initiator };
                let (Some(data), Some(target)) = (frame.data, target) else {
                    return reject(INTERNAL, env, out);
                };
                if !valid_signal_data(data.get()) {
                    return reject(INTERNAL, env, out);
                }
                let (name, text) = if offer {
                    ("offer", "Initiator sent WebRTC Offer. Please respond.")
                } else {
                    ("answer", "Receiver sent WebRTC Answer.")
                };
                out.push(signal(target, name, data.get(), text));
            }
            "rtcconnected" => out.push(Outgoing {
                to: conn,
                kind: Kind::Text,
                payload: br#"{"signal":"disconnect","message":"WebRTC Connection Established. Ready for disconnect."}"#.to_vec(),
            }),
            "tryturn" => {
                let servers = with_url_and_urls(env.ice_servers(&m.conn_id));
                let message = "TURN server credentials created";
                if let Some(i) = initiator {
                    let token = env.turn_token(&servers).to_string();
                    out.push(signal(i, "turntoken", &token, message));
                }
                if let Some(r) = receiver {
                    let data = json!({ "data": servers }).to_string();
                    out.push(signal(r, "attemptingturn", &data, message));
                }
            }
            "ping" => out.push(signal(conn, "pong", "\"\"", "pong")),
            _ => reject(FORBIDDEN, env, out),
        }
    }
}

const FORBIDDEN: &str = "Forbidden";
const INTERNAL: &str = "Internal server error";

/// A client frame: `{"action": <string>, "data": <any>}`.
struct Frame<'a> {
    action: String,
    data: Option<&'a RawValue>,
}

/// Read a client frame; `None` when it has no route (not text, not a JSON object, no string
/// `action`).
fn parse_frame(kind: Kind, payload: &[u8]) -> Option<Frame<'_>> {
    #[derive(serde::Deserialize)]
    struct Wire<'a> {
        #[serde(default)]
        action: Option<Json>,
        #[serde(default, borrow)]
        data: Option<&'a RawValue>,
    }
    if kind != Kind::Text {
        return None;
    }
    // Serde would also read a JSON array positionally into the struct: only objects route.
    let first = payload.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    let wire: Wire<'_> = serde_json::from_slice(payload).ok()?;
    let Some(Json::String(action)) = wire.action else {
        return None;
    };
    // `"data": null` reads as absent, as the original's `body.data` would.
    Some(Frame {
        action,
        data: wire.data,
    })
}

/// §1.4: the `data` object of `offersignal` / `answersignal`. Extra fields are allowed.
///
/// Read in one pass without building a tree (offers carry arrays of hundreds of numbers on
/// every message): each field is probed for its shape and skipped. A key given twice counts
/// once, the last time, as a parsed object would have it.
pub fn valid_signal_data(data: &str) -> bool {
    let mut de = serde_json::Deserializer::from_str(data);
    matches!(
        serde::Deserialize::deserialize(&mut de),
        Ok(shape::Shaped(shape::Signal { ok: true }))
    ) && de.end().is_ok()
}

/// [`valid_signal_data`] the slow way, through a parsed JSON tree: the reference the one-pass
/// check is tested and fuzzed against (`mewconnect` fuzz target).
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub fn valid_signal_data_by_tree(data: &str) -> bool {
    let Ok(Json::Object(d)) = serde_json::from_str::<Json>(data) else {
        return false;
    };
    let Some(Json::Object(p)) = d.get("data") else {
        return false;
    };
    let buffer = |name: &str, len: Option<usize>| match p.get(name) {
        Some(Json::Object(b)) => {
            matches!(b.get("type"), Some(Json::String(_)))
                && matches!(b.get("data"), Some(Json::Array(a)) if len.map_or(true, |n| n == a.len()))
        }
        _ => false,
    };
    let conn_id = match d.get("connId") {
        None | Some(Json::Null) => true,
        Some(Json::String(s)) => s.encode_utf16().count() == 32,
        Some(_) => false,
    };
    let options = matches!(
        d.get("options"),
        None | Some(Json::Null | Json::String(_) | Json::Object(_) | Json::Array(_))
    );
    buffer("iv", Some(16))
        && buffer("ephemPublicKey", Some(65))
        && buffer("ciphertext", None)
        && buffer("mac", Some(32))
        && conn_id
        && options
}

/// The shape probes behind [`valid_signal_data`].
mod shape {
    use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    use std::fmt;
    use std::marker::PhantomData;

    /// An object key §1.4 looks at (read without allocating, escapes or not).
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Key {
        Data,
        ConnId,
        Options,
        Iv,
        Ephem,
        Ciphertext,
        Mac,
        Type,
        Other,
    }

    impl<'de> Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Key;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an object key")
                }
                fn visit_str<E>(self, s: &str) -> Result<Key, E> {
                    Ok(match s {
                        "data" => Key::Data,
                        "connId" => Key::ConnId,
                        "options" => Key::Options,
                        "iv" => Key::Iv,
                        "ephemPublicKey" => Key::Ephem,
                        "ciphertext" => Key::Ciphertext,
                        "mac" => Key::Mac,
                        "type" => Key::Type,
                        _ => Key::Other,
                    })
                }
            }
            d.deserialize_str(V)
        }
    }

    /// What one JSON value is, with the facts §1.4 needs; its content is skipped.
    pub enum Probe {
        Null,
        /// A string and its length in UTF-16 code units (JavaScript's `length`).
        Str(usize),
        Array(usize),
        Object,
        Other,
    }

    /// An object read by its entries; any other value is `invalid()`.
    pub trait FromMap: Sized {
        fn from_map<'de, A: MapAccess<'de>>(a: A) -> Result<Self, A::Error>;
        fn invalid() -> Self;
    }

    /// `T` when the value is an object, `T::invalid()` (content skipped) otherwise.
    pub struct Shaped<T>(pub T);

    impl<'de> Deserialize<'de> for Probe {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(ProbeVisitor)
        }
    }

    impl<'de, T: FromMap> Deserialize<'de> for Shaped<T> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V<T>(PhantomData<T>);
            impl<'de, T: FromMap> Visitor<'de> for V<T> {
                type Value = Shaped<T>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("any JSON value")
                }
                fn visit_map<A: MapAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
                    T::from_map(a).map(Shaped)
                }
                fn visit_seq<A: SeqAccess<'de>>(self, a: A) -> Result<Self::Value, A::Error> {
                    ProbeVisitor.visit_seq(a).map(|_| Shaped(T::invalid()))
                }
                fn visit_unit<E>(self) -> Result<Self::Value, E> {
                    Ok(Shaped(T::invalid()))
                }
                fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                    Ok(Shaped(T::invalid()))
                }
                fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                    Ok(Shaped(T::invalid()))
                }
                fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                    Ok(Shaped(T::invalid()))
                }
                fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                    Ok(Shaped(T::invalid()))
                }
                fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                    Ok(Shaped(T::invalid()))
                }
            }
            d.deserialize_any(V(PhantomData))
        }
    }

    struct ProbeVisitor;

    impl<'de> Visitor<'de> for ProbeVisitor {
        type Value = Probe;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_unit<E>(self) -> Result<Probe, E> {
            Ok(Probe::Null)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Probe, E> {
            Ok(Probe::Other)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Probe, E> {
            Ok(Probe::Other)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Probe, E> {
            Ok(Probe::Other)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Probe, E> {
            Ok(Probe::Other)
        }
        fn visit_str<E>(self, s: &str) -> Result<Probe, E> {
            Ok(Probe::Str(s.encode_utf16().count()))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Probe, A::Error> {
            let mut n = 0;
            while a.next_element::<IgnoredAny>()?.is_some() {
                n += 1;
            }
            Ok(Probe::Array(n))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Probe, A::Error> {
            while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Probe::Object)
        }
    }

    /// The `data` object: its `data` payload, optional `connId` and `options`.
    pub struct Signal {
        pub ok: bool,
    }

    impl FromMap for Signal {
        fn from_map<'de, A: MapAccess<'de>>(mut a: A) -> Result<Self, A::Error> {
            let (mut payload, mut conn_id, mut options) = (false, true, true);
            while let Some(k) = a.next_key::<Key>()? {
                match k {
                    Key::Data => payload = a.next_value::<Shaped<Payload>>()?.0.ok,
                    Key::ConnId => {
                        conn_id = matches!(a.next_value()?, Probe::Null | Probe::Str(32));
                    }
                    Key::Options => {
                        options = !matches!(a.next_value()?, Probe::Other);
                    }
                    _ => {
                        a.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(Signal {
                ok: payload && conn_id && options,
            })
        }
        fn invalid() -> Self {
            Signal { ok: false }
        }
    }

    /// The encrypted payload: four buffers, three of fixed length.
    struct Payload {
        ok: bool,
    }

    impl FromMap for Payload {
        fn from_map<'de, A: MapAccess<'de>>(mut a: A) -> Result<Self, A::Error> {
            // iv 16, ephemPublicKey 65, ciphertext any, mac 32 (the array lengths).
            let mut seen = [None::<usize>; 4];
            while let Some(k) = a.next_key::<Key>()? {
                let i = match k {
                    Key::Iv => 0,
                    Key::Ephem => 1,
                    Key::Ciphertext => 2,
                    Key::Mac => 3,
                    _ => {
                        a.next_value::<IgnoredAny>()?;
                        continue;
                    }
                };
                seen[i] = a.next_value::<Shaped<Buffer>>()?.0 .0;
            }
            let ok = matches!(seen, [Some(16), Some(65), Some(_), Some(32)]);
            Ok(Payload { ok })
        }
        fn invalid() -> Self {
            Payload { ok: false }
        }
    }

    /// `{"type": <string>, "data": <array>}`: `Some(array length)` when it is one.
    struct Buffer(Option<usize>);

    impl FromMap for Buffer {
        fn from_map<'de, A: MapAccess<'de>>(mut a: A) -> Result<Self, A::Error> {
            let (mut ty, mut len) = (false, None);
            while let Some(k) = a.next_key::<Key>()? {
                match k {
                    Key::Type => ty = matches!(a.next_value()?, Probe::Str(_)),
                    Key::Data => {
                        len = match a.next_value()? {
                            Probe::Array(n) => Some(n),
                            _ => None,
                        }
                    }
                    _ => {
                        a.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(Buffer(len.filter(|_| ty)))
        }
        fn invalid() -> Self {
            Buffer(None)
        }
    }
}

/// Every entry of an ICE server list with both `url` and `urls` (§1.8: the web client reads
/// `url`, browsers need `urls`). A missing `url` is the first of `urls`; a missing `urls` is
/// `url`. Entries with neither, and anything that is not an object, are dropped.
pub fn with_url_and_urls(list: Json) -> Json {
    let Json::Array(entries) = list else {
        return Json::Array(Vec::new());
    };
    let fixed = entries.into_iter().filter_map(|e| {
        let Json::Object(mut o) = e else { return None };
        let first_url = match o.get("urls") {
            Some(Json::String(s)) => Some(s.clone()),
            Some(Json::Array(a)) => a.iter().find_map(|u| u.as_str().map(str::to_owned)),
            _ => None,
        };
        match (
            o.get("url").and_then(Json::as_str).map(str::to_owned),
            first_url,
        ) {
            (Some(_), Some(_)) => {}
            (Some(url), None) => {
                o.insert("urls".into(), Json::String(url));
            }
            (None, Some(url)) => {
                o.insert("url".into(), Json::String(url));
            }
            (None, None) => return None,
        }
        Some(Json::Object(o))
    });
    Json::Array(fixed.collect())
}

/// The `turntoken` data for a static list (§1.8): `iceServers`, `ttl`, and `username` /
/// `password` taken from the first entry that carries credentials.
pub fn static_turn_token(servers: &Json) -> Json {
    let mut o = JsonMap::new();
    o.insert("iceServers".into(), servers.clone());
    o.insert("ttl".into(), Json::String(TURN_TTL.into()));
    let creds = servers.as_array().and_then(|a| {
        a.iter().find_map(|e| {
            let u = e.get("username")?.as_str()?;
            let p = e.get("credential")?.as_str()?;
            Some((u.to_owned(), p.to_owned()))
        })
    });
    if let Some((u, p)) = creds {
        o.insert("username".into(), Json::String(u));
        o.insert("password".into(), Json::String(p));
    }
    Json::Object(o)
}

/// `{"signal":…,"data":<data, JSON text>,"message":…}`.
fn signal(to: Handle, name: &str, data: &str, message: &str) -> Outgoing {
    let mut s = String::with_capacity(40 + name.len() + data.len() + message.len());
    s.push_str("{\"signal\":");
    s.push_str(&Json::from(name).to_string());
    s.push_str(",\"data\":");
    s.push_str(data);
    s.push_str(",\"message\":");
    s.push_str(&Json::from(message).to_string());
    s.push('}');
    Outgoing {
        to,
        kind: Kind::Text,
        payload: s.into_bytes(),
    }
}

/// API Gateway's error frame (§1.7).
fn error_frame(to: Handle, message: &str, api_id: &str, request_id: &str) -> Outgoing {
    let v = json!({ "message": message, "connectionId": api_id, "requestId": request_id });
    Outgoing {
        to,
        kind: Kind::Text,
        payload: v.to_string().into_bytes(),
    }
}

// ── the dialect ───────────────────────────────────────────────────────────────────────────

/// The key both members of a pair are placed by.
pub fn placement_key(conn_id: &str) -> String {
    format!("mew/{conn_id}")
}

/// An API Gateway style id (16 base64 characters), as the original's `connectionId` and
/// `requestId`.
fn api_gateway_id(rand: &mut dyn Random) -> String {
    use base64::Engine;
    let mut b = [0u8; 11];
    rand.fill(&mut b);
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// What the table asks of its surroundings, answered from a call's [`Cx`].
struct CxEnv<'a, 'b> {
    cx: &'a mut Cx<'b>,
    /// The list of the `tryturn` being answered, for its `turntoken`.
    ice: Option<IceServers>,
}

impl Env for CxEnv<'_, '_> {
    fn ice_servers(&mut self, conn_id: &str) -> Json {
        let ice = self.cx.env.ice_servers(conn_id);
        let servers = ice.servers.clone();
        self.ice = Some(ice);
        servers
    }
    fn turn_token(&mut self, servers: &Json) -> Json {
        match &self.ice {
            Some(ice) if !ice.token.is_null() => ice.token.clone(),
            _ => static_turn_token(servers),
        }
    }
    fn request_id(&mut self) -> String {
        api_gateway_id(self.cx.rand)
    }
}

/// MewConnect v2 as a dialect: upgrades on its paths (the registry routes them here) are
/// placed by `mew/<connId>` and decided against the pair table there.
pub struct MewConnect {
    pairs: Pairs,
    opts: Options,
    /// Members' idle and lifetime deadlines (revalidated with [`Pairs::due`] when they pop).
    deadlines: Deadlines<Handle>,
    out: Vec<Outgoing>,
    /// Receivers admitted to their initiator: pairs made.
    pairings: u64,
    /// How long each initiator waited for its receiver.
    pairing_time: Latencies,
    /// Upgrades refused, by [`Refusal`].
    refusals: [u64; Refusal::ALL.len()],
}

/// The metrics [`MewConnect`] reports, in [`Dialect::metrics`] order: how long pairing took,
/// pairs made, then refusals by reason ([`Refusal::ALL`] order).
pub const METRICS: &[Metric] = &[
    Metric::histogram("sigyard_pairing_seconds", "", r#"dialect="mewconnect""#),
    Metric::counter(
        "sigyard_mewconnect_pairings_total",
        "MewConnect v2 pairs made (a receiver admitted to its initiator)",
    ),
    Metric::labelled(
        "sigyard_mewconnect_refusals_total",
        "MewConnect v2 upgrades refused, by reason",
        r#"reason="connid_exists""#,
    ),
    Metric::labelled(
        "sigyard_mewconnect_refusals_total",
        "",
        r#"reason="no_pair""#,
    ),
    Metric::labelled(
        "sigyard_mewconnect_refusals_total",
        "",
        r#"reason="pair_full""#,
    ),
    Metric::labelled(
        "sigyard_mewconnect_refusals_total",
        "",
        r#"reason="initiator_gone""#,
    ),
    Metric::labelled(
        "sigyard_mewconnect_refusals_total",
        "",
        r#"reason="bad_signed""#,
    ),
];

impl MewConnect {
    pub fn new(opts: Options) -> Self {
        MewConnect {
            pairs: Pairs::new(),
            opts,
            deadlines: Deadlines::default(),
            out: Vec::new(),
            pairings: 0,
            pairing_time: Latencies::default(),
            refusals: [0; Refusal::ALL.len()],
        }
    }

    fn schedule(&mut self, conn: Handle, now: u64) {
        if let Due::At(t) = self.pairs.due(conn, Tick::from_ms(now), &self.opts) {
            self.deadlines.push(t.to_ms(now), conn);
        }
    }
}

impl Dialect for MewConnect {
    fn place(&self, req: &RequestHead, _rand: &mut dyn Random) -> Placement {
        if req.upgrade.is_none() {
            return Placement::Answer(upgrade_required());
        }
        match parse_params(req.query.as_deref()) {
            Ok(p) => Placement::Key(placement_key(&p.conn_id).into()),
            Err(e) => Placement::Answer(Response::new(
                PARAM_STATUS,
                "text/plain; charset=utf-8",
                e.text(),
            )),
        }
    }

    fn on_request(
        &mut self,
        cx: &mut Cx<'_>,
        conn: Handle,
        _key: Option<&str>,
        req: &RequestHead,
    ) -> Answer {
        let refuse = |status, text: &str| {
            Answer::Respond(Response::new(
                status,
                "text/plain; charset=utf-8",
                text.to_owned(),
            ))
        };
        let p = match parse_params(req.query.as_deref()) {
            Ok(p) => p,
            Err(e) => return refuse(PARAM_STATUS, e.text()),
        };
        let api_id = api_gateway_id(cx.rand);
        let receiver = p.role == Role::Receiver;
        match self
            .pairs
            .admit(p, conn, api_id.into(), Tick::from_ms(cx.now), &mut self.out)
        {
            Ok(()) => {
                if receiver {
                    self.pairings += 1;
                    let now = Tick::from_ms(cx.now);
                    if let Some(ms) = self.pairs.waited_ms(conn, now) {
                        self.pairing_time.observe_ms(ms);
                    }
                }
                cx.send_all(self.out.drain(..));
                self.schedule(conn, cx.now);
                Answer::Upgrade
            }
            Err(r) => {
                self.refusals[r as usize] += 1;
                refuse(REFUSAL_STATUS, r.text())
            }
        }
    }

    fn on_message(&mut self, cx: &mut Cx<'_>, conn: Handle, msg: Message<'_>) {
        let now = Tick::from_ms(cx.now);
        let mut out = std::mem::take(&mut self.out);
        let mut env = CxEnv { cx, ice: None };
        let (kind, payload) = (msg.kind(), msg.as_bytes());
        self.pairs
            .message(conn, now, kind, payload, &self.opts, &mut env, &mut out);
        cx.send_all(out.drain(..));
        self.out = out;
    }

    fn on_close(&mut self, cx: &mut Cx<'_>, conn: Handle) {
        self.pairs.leave(conn, &mut self.out);
        cx.send_all(self.out.drain(..));
    }

    fn on_timeout(&mut self, cx: &mut Cx<'_>) {
        while let Some((_, conn)) = self.deadlines.pop_due(cx.now) {
            match self.pairs.due(conn, Tick::from_ms(cx.now), &self.opts) {
                Due::Close(reason) => cx.close(conn, 1001, reason),
                Due::At(t) => self.deadlines.push(t.to_ms(cx.now), conn),
                Due::Never => {}
            }
        }
    }

    fn poll_timeout(&self) -> Option<u64> {
        self.deadlines.next()
    }

    fn gauge(&self) -> u64 {
        self.pairs.len() as u64
    }

    fn metrics(&self, out: &mut [u64]) {
        let then = std::iter::once(self.pairings).chain(self.refusals);
        self.pairing_time.write_then(out, then);
    }
}

#[cfg(test)]
mod tests;

/// An [`Env`] with a fixed ICE list and counting request ids (`req1`, `req2`, …), for the
/// unit tests and the fuzz target.
#[cfg(any(test, feature = "fuzzing"))]
pub struct FixedEnv {
    pub ice: Json,
    pub ids: u32,
}

#[cfg(any(test, feature = "fuzzing"))]
impl Env for FixedEnv {
    fn ice_servers(&mut self, _conn_id: &str) -> Json {
        self.ice.clone()
    }
    fn request_id(&mut self) -> String {
        self.ids += 1;
        format!("req{}", self.ids)
    }
}
