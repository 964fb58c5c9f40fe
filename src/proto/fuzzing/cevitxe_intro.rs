//! The `cevitxe_intro` fuzz target: a sequence of opens, messages and closes ([`IntroOp`])
//! applied to one [`Introductions`] table (the cevitxe / @localfirst/relay introduction
//! dialect), checked against a model of it.
//!
//! Sockets come from a set of six [`Handle`]s (three keys × two generations), ids from a set
//! of four, document keys from a set of four (one longer than `MAX_KEY_LEN`) plus a non-string
//! element. A message is either raw bytes (text or binary) or a structured message
//! ([`IntroMsg`]: format A, B or C; type Join, Leave, Heartbeat, `❤️`, another or none; join
//! and leave lists; an unknown field or not) encoded the way that format's clients do.
//!
//! The model tracks the open sockets (and their id and decided format) and the registered ids
//! (current socket, sequence number, output format, keys), following the rules in
//! `proto/dialect/cevitxe.rs`. Checked after every op:
//!
//! * `peers()` is the model's number of registered ids;
//! * every message goes to a socket that is open and currently speaks for its id;
//! * output comes in pairs: the first introduces another registered id to the socket of the
//!   sender's id, the second introduces the sender's id to that other id's socket, both with
//!   the same non-empty keys; no other id appears twice; nothing is sent for a closed socket,
//!   an unregistered id or a structured Leave (B/C), heartbeat or other type;
//! * every payload parses (JSON object for text, a MessagePack map for binary) as
//!   `{type:"Introduction"}` with exactly the fields of one format (A `id`/`keys`, B
//!   `userName`/`documentIds`, C `peerId`/`documentIds`);
//! * while every message that the table reads was a structured one (raw bytes that parse
//!   make the key model unsure, and from then on only the checks above apply), the output is
//!   exactly the model's: introductions by sequence number, each with the common keys in the
//!   sender's order and in the recipient's format.
//!
//! The input: one tag byte and its fields per op, until the bytes run out;
//! [`encode_intro_ops`] is the inverse, for writing seeds.

use std::collections::HashMap;

use arbitrary::{Arbitrary, Unstructured};
use serde_json::{json, Map as JsonMap, Value as Json};

use super::conn_ops::Bytes;
use crate::proto::dialect::cevitxe::{Introductions, MAX_KEYS_PER_PEER, MAX_KEY_LEN};
use crate::proto::dialect::msgpack::{self, Value as Mp};
use crate::proto::dialect::{Handle, Kind, Outgoing};

/// Ops beyond this are ignored, to bound the time of one run.
const MAX_OPS: usize = 512;
const IDS: [&str; 4] = ["a", "b", "c", "42"];
/// Socket `n` is `Handle::of(n % 3, n / 3)`.
const CONNS: u8 = 6;
/// Key indices 0..=3 name [`key`]s; 4 is a non-string element (the number 7).
const KEY_CHOICES: u8 = 5;
/// Longest join or leave list in a structured message.
const MAX_LIST: u8 = 4;
/// The `type` of a structured message: index 5 leaves the field out.
const TYPES: [&str; 5] = ["Join", "Leave", "Heartbeat", "❤️", "Hello"];

/// Key `i` (0..=3): three short ones and one over `MAX_KEY_LEN`.
fn key(i: u8) -> String {
    match i {
        0 => "k".into(),
        1 => "doc-1".into(),
        2 => "é".into(),
        _ => "x".repeat(MAX_KEY_LEN + 1),
    }
}

fn conn_ref(n: u8) -> Handle {
    Handle::of(u32::from(n % 3), u32::from(n / 3))
}

/// A wire format of the dialect (see `proto/dialect/cevitxe.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Text JSON `{"type":..,"join":[..],"leave":[..]}`.
    A,
    /// Text JSON `{"type":..,"documentIds":[..]}` (the join list).
    B,
    /// Binary MessagePack map, shaped like B.
    C,
}

/// A message shaped like a client's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntroMsg {
    pub format: Format,
    /// Index into `TYPES`; 5: no `type` field.
    pub ty: u8,
    /// Key indices (see `KEY_CHOICES`); B and C send this as `documentIds`.
    pub join: Vec<u8>,
    /// Key indices; only format A sends it (as `leave`).
    pub leave: Vec<u8>,
    /// Adds an unknown field (`"x": {"y": [1.5, null]}`).
    pub extra: bool,
}

/// What a socket sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Raw { binary: bool, bytes: Bytes },
    Structured(IntroMsg),
}

/// One step of the scenario. `conn` picks one of six sockets (`% 6`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntroOp {
    /// A socket upgraded on `/introduction/IDS[id]`.
    Open { id: u8, conn: u8 },
    /// A whole WebSocket message from `conn`.
    Message { conn: u8, payload: Payload },
    /// `conn` closed.
    Close { conn: u8 },
}

fn list(u: &mut Unstructured<'_>) -> arbitrary::Result<Vec<u8>> {
    let len = u8::arbitrary(u)? % (MAX_LIST + 1);
    (0..len)
        .map(|_| Ok(u8::arbitrary(u)? % KEY_CHOICES))
        .collect()
}

impl<'a> Arbitrary<'a> for IntroOp {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u8::arbitrary(u)? % 3 {
            0 => IntroOp::Open {
                id: u8::arbitrary(u)? % IDS.len() as u8,
                conn: u8::arbitrary(u)? % CONNS,
            },
            1 => {
                let conn = u8::arbitrary(u)? % CONNS;
                let payload = if u8::arbitrary(u)? & 1 == 0 {
                    Payload::Raw {
                        binary: u8::arbitrary(u)? & 1 == 1,
                        bytes: Bytes::arbitrary(u)?,
                    }
                } else {
                    Payload::Structured(IntroMsg {
                        format: match u8::arbitrary(u)? % 3 {
                            0 => Format::A,
                            1 => Format::B,
                            _ => Format::C,
                        },
                        ty: u8::arbitrary(u)? % (TYPES.len() as u8 + 1),
                        join: list(u)?,
                        leave: list(u)?,
                        extra: u8::arbitrary(u)? & 1 == 1,
                    })
                };
                IntroOp::Message { conn, payload }
            }
            _ => IntroOp::Close {
                conn: u8::arbitrary(u)? % CONNS,
            },
        })
    }
}

/// Decodes a fuzz input: ops until the bytes run out (at most `MAX_OPS`).
pub fn decode_intro_ops(data: &[u8]) -> Vec<IntroOp> {
    let mut u = Unstructured::new(data);
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        match IntroOp::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    ops
}

/// The inverse of [`decode_intro_ops`] for fields within their ranges (for writing seeds).
/// Raw bytes over 255 are cut to 255.
pub fn encode_intro_ops(ops: &[IntroOp]) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        match op {
            IntroOp::Open { id, conn } => out.extend([0, *id, *conn]),
            IntroOp::Close { conn } => out.extend([2, *conn]),
            IntroOp::Message { conn, payload } => {
                out.extend([1, *conn]);
                match payload {
                    Payload::Raw { binary, bytes } => {
                        let b = &bytes.0[..bytes.0.len().min(255)];
                        out.extend([0, u8::from(*binary), b.len() as u8]);
                        out.extend_from_slice(b);
                    }
                    Payload::Structured(m) => {
                        out.extend([1, m.format as u8, m.ty]);
                        for l in [&m.join, &m.leave] {
                            out.push(l.len() as u8);
                            out.extend_from_slice(l);
                        }
                        out.push(u8::from(m.extra));
                    }
                }
            }
        }
    }
    out
}

/// The wire message for `m`.
fn encode_msg(m: &IntroMsg) -> (Kind, Vec<u8>) {
    let ty = TYPES.get(usize::from(m.ty)).copied();
    if m.format == Format::C {
        let keys: Vec<String> = m.join.iter().map(|&i| key(i)).collect();
        let items = m
            .join
            .iter()
            .zip(&keys)
            .map(|(&i, k)| if i < 4 { Mp::Str(k) } else { Mp::UInt(7) })
            .collect();
        let mut entries = Vec::new();
        if let Some(ty) = ty {
            entries.push((Mp::Str("type"), Mp::Str(ty)));
        }
        entries.push((Mp::Str("documentIds"), Mp::Array(items)));
        if m.extra {
            let inner = Mp::Map(vec![(
                Mp::Str("y"),
                Mp::Array(vec![Mp::Float(1.5), Mp::Nil]),
            )]);
            entries.push((Mp::Str("x"), inner));
        }
        let mut out = Vec::new();
        msgpack::encode(&Mp::Map(entries), &mut out);
        return (Kind::Binary, out);
    }
    let json_list = |l: &[u8]| {
        Json::Array(
            l.iter()
                .map(|&i| if i < 4 { json!(key(i)) } else { json!(7) })
                .collect(),
        )
    };
    let mut obj = JsonMap::new();
    if let Some(ty) = ty {
        obj.insert("type".into(), json!(ty));
    }
    if m.format == Format::A {
        obj.insert("join".into(), json_list(&m.join));
        obj.insert("leave".into(), json_list(&m.leave));
    } else {
        obj.insert("documentIds".into(), json_list(&m.join));
    }
    if m.extra {
        obj.insert("x".into(), json!({"y": [1.5, null]}));
    }
    let bytes = serde_json::to_vec(&Json::Object(obj)).unwrap_or_default();
    (Kind::Text, bytes)
}

/// A key update: keys to join, keys to leave, whether to introduce afterwards.
type Update = (Vec<String>, Vec<String>, bool);

/// What a structured message does (module docs of `cevitxe.rs`): the format it decides and
/// the key update, if any.
fn read_msg(m: &IntroMsg) -> (Option<Format>, Option<Update>) {
    let ty = TYPES.get(usize::from(m.ty)).copied();
    let strs =
        |l: &[u8]| -> Vec<String> { l.iter().filter(|&&i| i < 4).map(|&i| key(i)).collect() };
    let heartbeat = matches!(ty, Some("Heartbeat" | "❤️"));
    match m.format {
        Format::A | Format::B if heartbeat => (None, None),
        Format::C if heartbeat => (Some(Format::C), None),
        Format::A => (Some(Format::A), Some((strs(&m.join), strs(&m.leave), true))),
        Format::B | Format::C => {
            let intent = match ty {
                Some("Join") => Some((strs(&m.join), Vec::new(), true)),
                Some("Leave") => Some((Vec::new(), strs(&m.join), false)),
                _ => None,
            };
            (Some(m.format), intent)
        }
    }
}

/// An introduction as sent: recipient, format, the id introduced, the keys.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Intro {
    to: Handle,
    format: Format,
    id: String,
    keys: Vec<String>,
}

/// Parses an outgoing message as an introduction, or panics.
fn parse_intro(o: &Outgoing) -> Intro {
    match o.kind {
        Kind::Text => {
            let v: Json = serde_json::from_slice(&o.payload)
                .unwrap_or_else(|e| panic!("introduction is not JSON: {e}"));
            let obj = v.as_object().expect("introduction is a JSON object");
            assert_eq!(obj.len(), 3, "fields of {obj:?}");
            assert_eq!(obj.get("type"), Some(&json!("Introduction")));
            let (format, id, keys) = if obj.contains_key("id") {
                (Format::A, &obj["id"], obj.get("keys"))
            } else {
                let id = obj.get("userName").expect("A `id` or B `userName`");
                (Format::B, id, obj.get("documentIds"))
            };
            let keys = keys
                .and_then(Json::as_array)
                .expect("an array of keys")
                .iter()
                .map(|k| k.as_str().expect("string keys").to_owned())
                .collect();
            Intro {
                to: o.to,
                format,
                id: id.as_str().expect("a string id").to_owned(),
                keys,
            }
        }
        Kind::Binary => {
            let v = msgpack::decode(&o.payload)
                .unwrap_or_else(|e| panic!("introduction is not MessagePack: {e:?}"));
            let Mp::Map(entries) = &v else {
                panic!("introduction is not a map: {v:?}");
            };
            assert_eq!(entries.len(), 3, "fields of {v:?}");
            assert_eq!(v.get("type"), Some(&Mp::Str("Introduction")));
            let id = v.get("peerId").and_then(Mp::as_str).expect("a peerId");
            let keys = v
                .get("documentIds")
                .and_then(Mp::as_array)
                .expect("documentIds")
                .iter()
                .map(|k| k.as_str().expect("string keys").to_owned())
                .collect();
            Intro {
                to: o.to,
                format: Format::C,
                id: id.to_owned(),
                keys,
            }
        }
    }
}

struct Sock {
    id: usize,
    format: Option<Format>,
}

struct Peer {
    conn: Handle,
    seq: u64,
    format: Format,
    keys: Vec<String>,
}

#[derive(Default)]
struct Model {
    sockets: HashMap<Handle, Sock>,
    peers: HashMap<usize, Peer>,
    next_seq: u64,
}

impl Model {
    fn open(&mut self, id: usize, conn: Handle) {
        self.close(conn);
        self.sockets.insert(conn, Sock { id, format: None });
        if let Some(p) = self.peers.get_mut(&id) {
            p.conn = conn;
            return;
        }
        self.peers.insert(
            id,
            Peer {
                conn,
                seq: self.next_seq,
                format: Format::A,
                keys: Vec::new(),
            },
        );
        self.next_seq += 1;
    }

    fn close(&mut self, conn: Handle) {
        if let Some(s) = self.sockets.remove(&conn) {
            if self.peers.get(&s.id).is_some_and(|p| p.conn == conn) {
                self.peers.remove(&s.id);
            }
        }
    }

    /// The sender's id, if `conn` is open and its id registered.
    fn sender(&self, conn: Handle) -> Option<usize> {
        let id = self.sockets.get(&conn)?.id;
        self.peers.contains_key(&id).then_some(id)
    }

    /// Applies a structured message; returns the introductions it must produce.
    fn message(&mut self, conn: Handle, m: &IntroMsg) -> Vec<Intro> {
        let Some(sock) = self.sockets.get_mut(&conn) else {
            return Vec::new();
        };
        let (format, intent) = read_msg(m);
        let mut decided = None;
        if sock.format.is_none() {
            sock.format = format;
            decided = format;
        }
        let me_id = sock.id;
        let Some(me) = self.peers.get_mut(&me_id) else {
            return Vec::new();
        };
        if let Some(f) = decided {
            if me.conn == conn {
                me.format = f;
            }
        }
        let Some((join, leave, introduce)) = intent else {
            return Vec::new();
        };
        me.keys.retain(|k| !leave.contains(k));
        for k in join {
            if me.keys.len() >= MAX_KEYS_PER_PEER {
                break;
            }
            if k.len() <= MAX_KEY_LEN && !leave.contains(&k) && !me.keys.contains(&k) {
                me.keys.push(k);
            }
        }
        if !introduce {
            return Vec::new();
        }
        let me = &self.peers[&me_id];
        let mut others: Vec<(&usize, &Peer)> =
            self.peers.iter().filter(|(&id, _)| id != me_id).collect();
        others.sort_by_key(|(_, p)| p.seq);
        let mut out = Vec::new();
        for (&id, other) in others {
            let common: Vec<String> = me
                .keys
                .iter()
                .filter(|k| other.keys.contains(k))
                .cloned()
                .collect();
            if common.is_empty() {
                continue;
            }
            out.push(Intro {
                to: me.conn,
                format: me.format,
                id: IDS[id].to_owned(),
                keys: common.clone(),
            });
            out.push(Intro {
                to: other.conn,
                format: other.format,
                id: IDS[me_id].to_owned(),
                keys: common,
            });
        }
        out
    }
}

/// Whether the table reads `payload` (as opposed to ignoring it as malformed).
fn is_read(kind: Kind, payload: &[u8]) -> bool {
    match kind {
        Kind::Binary => matches!(msgpack::decode(payload), Ok(Mp::Map(_))),
        Kind::Text => matches!(serde_json::from_slice::<Json>(payload), Ok(Json::Object(_))),
    }
}

/// Runs the ops decoded from `data` against a fresh table and checks the invariants in the
/// module docs; panics when one fails.
pub fn check_cevitxe_intro(data: &[u8]) {
    let ops = decode_intro_ops(data);
    let mut table = Introductions::new();
    let mut model = Model::default();
    // Set once a raw message the table reads has changed keys the model does not know.
    let mut unsure = false;
    let mut out = Vec::new();
    for (n, op) in ops.iter().enumerate() {
        out.clear();
        match op {
            IntroOp::Open { id, conn } => {
                let id = usize::from(*id) % IDS.len();
                table.open(IDS[id], conn_ref(*conn));
                model.open(id, conn_ref(*conn));
            }
            IntroOp::Close { conn } => {
                table.close(conn_ref(*conn));
                model.close(conn_ref(*conn));
            }
            IntroOp::Message { conn, payload } => {
                let conn = conn_ref(*conn);
                let sender = model.sender(conn);
                let (kind, bytes, msg) = match payload {
                    Payload::Raw { binary, bytes } => {
                        let kind = if *binary { Kind::Binary } else { Kind::Text };
                        (kind, bytes.0.clone(), None)
                    }
                    Payload::Structured(m) => {
                        let (kind, bytes) = encode_msg(m);
                        (kind, bytes, Some(m))
                    }
                };
                table.message(conn, kind, &bytes, &mut out);
                let got: Vec<Intro> = out.iter().map(parse_intro).collect();
                check_pairs(&model, sender, &got, n);
                match msg {
                    Some(m) => {
                        let want = model.message(conn, m);
                        if !unsure {
                            assert_eq!(got, want, "op #{n}: {m:?}");
                        }
                        // Heartbeats, and in B/C anything but a Join.
                        if matches!(m.ty, 2 | 3) || (m.format != Format::A && m.ty != 0) {
                            assert!(got.is_empty(), "op #{n}: output for {m:?}");
                        }
                    }
                    None => {
                        if model.sockets.contains_key(&conn) && is_read(kind, &bytes) {
                            unsure = true;
                        }
                    }
                }
            }
        }
        assert_eq!(table.peers(), model.peers.len(), "peers() after op #{n}");
    }
}

/// The structural checks of one message's output (module docs).
fn check_pairs(model: &Model, sender: Option<usize>, got: &[Intro], n: usize) {
    let Some(me_id) = sender else {
        assert!(
            got.is_empty(),
            "op #{n}: output for a closed or unregistered sender"
        );
        return;
    };
    assert!(
        got.len() % 2 == 0,
        "op #{n}: an odd number of introductions"
    );
    let me = &model.peers[&me_id];
    let mut seen = Vec::new();
    for pair in got.chunks(2) {
        let (to_me, to_other) = (&pair[0], &pair[1]);
        assert_eq!(
            to_me.to, me.conn,
            "op #{n}: first of a pair not to the sender"
        );
        assert_eq!(
            to_other.id, IDS[me_id],
            "op #{n}: second of a pair not about the sender"
        );
        let other_id = IDS
            .iter()
            .position(|&i| i == to_me.id)
            .expect("an introduced id from the set");
        assert_ne!(other_id, me_id, "op #{n}: the sender introduced to itself");
        let other = model
            .peers
            .get(&other_id)
            .expect("an introduced id is registered");
        assert_eq!(
            to_other.to, other.conn,
            "op #{n}: not to the other id's socket"
        );
        assert!(
            !to_me.keys.is_empty(),
            "op #{n}: an introduction without keys"
        );
        assert_eq!(
            to_me.keys, to_other.keys,
            "op #{n}: the two sides' keys differ"
        );
        assert!(
            !seen.contains(&other_id),
            "op #{n}: {} introduced twice",
            IDS[other_id]
        );
        seen.push(other_id);
    }
    for i in got {
        assert!(
            model.sockets.contains_key(&i.to) && model.peers.values().any(|p| p.conn == i.to),
            "op #{n}: sent to {:?}, which is not an open registered socket",
            i.to
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_is_the_inverse_of_decode() {
        let ops = vec![
            IntroOp::Open { id: 3, conn: 5 },
            IntroOp::Message {
                conn: 5,
                payload: Payload::Raw {
                    binary: true,
                    bytes: Bytes(vec![0x80]),
                },
            },
            IntroOp::Message {
                conn: 1,
                payload: Payload::Structured(IntroMsg {
                    format: Format::C,
                    ty: 5,
                    join: vec![0, 4, 3],
                    leave: vec![],
                    extra: true,
                }),
            },
            IntroOp::Close { conn: 2 },
        ];
        assert_eq!(decode_intro_ops(&encode_intro_ops(&ops)), ops);
    }

    #[test]
    fn arbitrary_bytes_do_not_panic() {
        check_cevitxe_intro(b"");
        check_cevitxe_intro(&[0xff; 64]);
        check_cevitxe_intro(&(0..=255).collect::<Vec<u8>>());
    }
}
