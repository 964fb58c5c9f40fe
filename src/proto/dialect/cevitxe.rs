//! The introduction (discovery) side of the cevitxe / @localfirst/relay dialect
//! (`/introduction/:id`, PROTOCOLS.md §2.1–2.3, §2.6), as a pure table: sockets are
//! [`Handle`]s, input is whole WebSocket messages, output is [`Outgoing`] messages.
//!
//! Owns: which socket speaks for each peer id, each id's keys (document ids), the index
//! key → peers, per-socket wire-format detection, and the introduction messages.
//!
//! Does not own: HTTP routing and percent-decoding of `:id`, the `/connection/...` pipe
//! (§2.4), WebSocket framing, pings, message-size limits (the caller bounds them), closing
//! sockets (this table never asks for a close).
//!
//! # Wire formats (all three on the same endpoint)
//!
//! | format | versions | C→S | S→C introduction |
//! |---|---|---|---|
//! | A | cevitxe 0.3–0.4.2, relay 1.x | text JSON `{"join":[..],"leave":[..]}` (any `type`) | `{"type":"Introduction","id":B,"keys":[..]}` |
//! | B | relay 2.x–3.x | text JSON `{"type":"Join"\|"Leave","documentIds":[..]}` | `{"type":"Introduction","userName":B,"documentIds":[..]}` |
//! | C | relay 4.x | binary MessagePack maps, same shapes as B | map `{type:"Introduction",peerId:B,documentIds:[..]}` (binary frame) |
//!
//! ## How a message is read
//!
//! Each message is interpreted by its own shape, in this order:
//! 1. A binary frame must decode ([`msgpack::decode`]) to a map, else it is ignored; it is
//!    read as format C.
//! 2. A text frame must parse as a JSON object, else it is ignored (invalid JSON, `null`,
//!    arrays, numbers …).
//! 3. `type` equal to `"Heartbeat"` or `"❤️"` (either frame kind): ignored entirely.
//! 4. Text with a `documentIds` member (any value): format B. Otherwise format A.
//!
//! Semantics: A adds `join` and removes `leave` (both honoured whatever `type` says; a
//! non-array counts as empty) and then re-introduces all overlaps. B/C with `type` `"Join"` add
//! `documentIds` and re-introduce all overlaps; `"Leave"` removes `documentIds` and sends
//! nothing; any other `type` does nothing. Non-string array elements are skipped.
//!
//! ## How a socket's format is decided (used for what we SEND to it)
//!
//! The first message from a socket that reaches step 4 (or is a binary map, step 1) fixes
//! that socket's format for its lifetime; later messages never change it. Ignored messages
//! (invalid JSON, non-objects, undecodable binary) and text heartbeats do not decide: a text
//! heartbeat is `{"type":"Heartbeat"}` in every text client that sends one and has no
//! `documentIds`, so the shape rule would wrongly say A. A binary heartbeat does decide C
//! (only relay 4.x sends binary frames). An undecided socket is written to in the format
//! last decided for its id (see duplicate ids), else A. An undecided socket with no
//! inherited keys never receives anything, because it has no keys yet.
//!
//! ## Duplicate ids (spec RECOMMEND)
//!
//! A second `open` for a live id replaces the socket that speaks for it; the id keeps its keys,
//! its position in the iteration order (its sequence number, like a JavaScript object key that
//! is reassigned) and its current output format until the new socket decides one. Messages from
//! the older socket still act on the id's keys, and the id's introductions go to the current
//! socket (as the original, which sends to `peers[id]`). Closing the older socket changes
//! nothing; closing the current one deletes the id and its keys. A message from a socket whose
//! id is no longer registered is ignored.
//!
//! ## Limits
//!
//! A key longer than [`MAX_KEY_LEN`] bytes is skipped; once an id holds
//! [`MAX_KEYS_PER_PEER`] keys, further new keys are skipped (a Leave frees room). Neither is
//! reported to the client (§2.6: no errors are sent).
//!
//! ## Cost
//!
//! An index key → peers means a Join only visits peers that share one of the sender's keys;
//! the work is proportional to the sender's keys plus the (key, peer) overlaps, i.e. to the
//! introductions it produces, never to the number of connected peers. Candidates are ordered
//! by their sequence number (assigned at `open`), which reproduces the original's iteration
//! in connection order. (One deliberate difference: a JavaScript object iterates
//! integer-like keys such as `"42"` first, in numeric order; here such ids keep connection
//! order like every other id.)

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use serde_json::{Map as JsonMap, Value as Json};

use super::msgpack;
use super::HandleMap;
use super::{
    upgrade_required, Answer, Cx, Dialect, Handle, Kind, Message, Outgoing, Placement, Random,
};
use crate::proto::http::{percent_decode, RequestHead, Response};

/// Most keys one id can hold; further new keys are ignored.
pub const MAX_KEYS_PER_PEER: usize = 1024;
/// Longest key accepted, in bytes; longer keys are ignored.
pub const MAX_KEY_LEN: usize = 256;

/// A socket's wire format (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// cevitxe 0.x / relay 1.x: text JSON, `join`/`leave`, `id`/`keys`.
    A,
    /// relay 2.x–3.x: text JSON, `documentIds`, `userName`.
    B,
    /// relay 4.x: binary MessagePack, `documentIds`, `peerId`.
    C,
}

/// One open introduction socket.
struct Socket {
    /// The id from its URL.
    id: Box<str>,
    /// Decided by its first decisive message, then fixed.
    format: Option<Format>,
}

/// One registered id.
struct Peer {
    id: Box<str>,
    /// The socket that currently speaks for `id`.
    conn: Handle,
    /// Assigned when the id was first registered; orders introductions.
    seq: u64,
    /// The format to write to `conn` in.
    format: Format,
    /// Key slots, deduplicated, existing first then newly joined.
    keys: Vec<u32>,
}

/// One key with at least one member.
struct KeySlot {
    name: Box<str>,
    /// Peer slots that hold this key.
    members: HashSet<u32>,
}

/// What one message asks for.
enum Intent<'a> {
    Nothing,
    Update {
        join: Vec<&'a str>,
        leave: Vec<&'a str>,
        introduce: bool,
    },
}

/// The introduction (discovery) table of one core: peers by id, their keys (document ids), and
/// which socket currently speaks for each id.
pub struct Introductions {
    sockets: HandleMap<Socket>,
    by_id: HashMap<Box<str>, u32>,
    peers: Vec<Option<Peer>>,
    free_peers: Vec<u32>,
    key_ids: HashMap<Box<str>, u32>,
    keys: Vec<Option<KeySlot>>,
    free_keys: Vec<u32>,
    next_seq: u64,
    /// Reused per Join: (seq of the other peer, its slot, index into the sender's keys).
    scratch: Vec<(u64, u32, u32)>,
}

impl Default for Introductions {
    fn default() -> Self {
        Self::new()
    }
}

impl Introductions {
    pub fn new() -> Self {
        Introductions {
            sockets: HandleMap::default(),
            by_id: HashMap::new(),
            peers: Vec::new(),
            free_peers: Vec::new(),
            key_ids: HashMap::new(),
            keys: Vec::new(),
            free_keys: Vec::new(),
            next_seq: 0,
            scratch: Vec::new(),
        }
    }

    /// A socket upgraded on `/introduction/:id` (id already percent-decoded). Replaces the
    /// mapping for `id`; the id's keys are kept (shared with the previous socket), per the
    /// spec's RECOMMEND for duplicate ids.
    pub fn open(&mut self, id: &str, conn: Handle) {
        if self.sockets.contains_key(&conn) {
            // The caller reused a live reference: treat it as closed first.
            self.close(conn);
        }
        self.sockets.insert(
            conn,
            Socket {
                id: id.into(),
                format: None,
            },
        );
        if let Some(peer) = self
            .by_id
            .get(id)
            .and_then(|&s| peer_mut(&mut self.peers, s))
        {
            peer.conn = conn;
            return;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let peer = Peer {
            id: id.into(),
            conn,
            seq,
            format: Format::A,
            keys: Vec::new(),
        };
        let slot = match self.free_peers.pop() {
            Some(slot) => {
                // Free-list entries are always indices of `None` slots inside `peers`.
                self.peers[slot as usize] = Some(peer);
                slot
            }
            None => {
                self.peers.push(Some(peer));
                (self.peers.len() - 1) as u32
            }
        };
        self.by_id.insert(id.into(), slot);
    }

    /// A whole WebSocket message from `conn`. Appends what must be sent to `out`. Invalid input
    /// is ignored (never panics, never closes).
    pub fn message(&mut self, conn: Handle, kind: Kind, payload: &[u8], out: &mut Vec<Outgoing>) {
        if !self.sockets.contains_key(&conn) {
            return;
        }
        match kind {
            Kind::Binary => {
                let Ok(value) = msgpack::decode(payload) else {
                    return;
                };
                if !matches!(value, msgpack::Value::Map(_)) {
                    return;
                }
                let intent = read_msgpack(&value);
                self.apply(conn, Some(Format::C), intent, out);
            }
            Kind::Text => {
                let Ok(Json::Object(obj)) = serde_json::from_slice::<Json>(payload) else {
                    return;
                };
                let (format, intent) = read_json(&obj);
                self.apply(conn, format, intent, out);
            }
        }
    }

    /// `conn` closed. Deletes the peer's entry and keys only if `conn` is the currently
    /// registered socket for its id.
    pub fn close(&mut self, conn: Handle) {
        let Some(sock) = self.sockets.remove(&conn) else {
            return;
        };
        let Some(&slot) = self.by_id.get(&*sock.id) else {
            return;
        };
        match peer_ref(&self.peers, slot) {
            Some(peer) if peer.conn == conn => {}
            _ => return,
        }
        let Some(peer) = self.peers.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        for &k in &peer.keys {
            if let Some(ks) = key_mut(&mut self.keys, k) {
                ks.members.remove(&slot);
            }
            self.release_key_if_empty(k);
        }
        self.by_id.remove(&*peer.id);
        self.free_peers.push(slot);
    }

    /// Number of registered ids.
    pub fn peers(&self) -> usize {
        self.by_id.len()
    }

    /// Records the format decision, updates keys, emits introductions.
    fn apply(
        &mut self,
        conn: Handle,
        format: Option<Format>,
        intent: Intent<'_>,
        out: &mut Vec<Outgoing>,
    ) {
        let Some(sock) = self.sockets.get_mut(&conn) else {
            return;
        };
        let mut decided = None;
        if sock.format.is_none() {
            sock.format = format;
            decided = format;
        }
        let Some(&slot) = self.by_id.get(&*sock.id) else {
            return;
        };
        if let Some(f) = decided {
            if let Some(peer) = peer_mut(&mut self.peers, slot) {
                if peer.conn == conn {
                    peer.format = f;
                }
            }
        }
        let Intent::Update {
            join,
            leave,
            introduce,
        } = intent
        else {
            return;
        };
        self.update_keys(slot, &join, &leave);
        if introduce {
            self.introduce(slot, out);
        }
    }

    /// `keys = dedupe(keys ++ join) minus leave`, order preserved, limits applied.
    fn update_keys(&mut self, slot: u32, join: &[&str], leave: &[&str]) {
        let Some(mut peer_keys) =
            peer_mut(&mut self.peers, slot).map(|p| std::mem::take(&mut p.keys))
        else {
            return;
        };
        if !leave.is_empty() {
            let mut removed_any = false;
            for name in leave {
                let Some(&k) = self.key_ids.get(*name) else {
                    continue;
                };
                if let Some(ks) = key_mut(&mut self.keys, k) {
                    removed_any |= ks.members.remove(&slot);
                }
            }
            if removed_any {
                let keys = &self.keys;
                let mut gone = Vec::new();
                peer_keys.retain(|&k| {
                    let kept = key_ref(keys, k).is_some_and(|ks| ks.members.contains(&slot));
                    if !kept {
                        gone.push(k);
                    }
                    kept
                });
                for k in gone {
                    self.release_key_if_empty(k);
                }
            }
        }
        // Only format A carries both lists; a set keeps large Leave lists linear.
        let leave_set: HashSet<&str> = if join.is_empty() {
            HashSet::new()
        } else {
            leave.iter().copied().collect()
        };
        for name in join {
            if peer_keys.len() >= MAX_KEYS_PER_PEER {
                break;
            }
            if name.len() > MAX_KEY_LEN || leave_set.contains(name) {
                continue;
            }
            let k = self.intern(name);
            if let Some(ks) = key_mut(&mut self.keys, k) {
                if ks.members.insert(slot) {
                    peer_keys.push(k);
                }
            }
        }
        if let Some(peer) = peer_mut(&mut self.peers, slot) {
            peer.keys = peer_keys;
        }
    }

    /// Introduces `slot` to every other peer sharing a key, and them to it: for each such
    /// peer in sequence order, first to the sender, then to the other peer.
    fn introduce(&mut self, slot: u32, out: &mut Vec<Outgoing>) {
        let Some(me) = peer_ref(&self.peers, slot) else {
            return;
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        for (i, &k) in me.keys.iter().enumerate() {
            let Some(ks) = key_ref(&self.keys, k) else {
                continue;
            };
            for &other in &ks.members {
                if other == slot {
                    continue;
                }
                if let Some(p) = peer_ref(&self.peers, other) {
                    scratch.push((p.seq, other, i as u32));
                }
            }
        }
        // Sequence numbers are unique per peer, so (seq, key index) orders the peers by
        // connection and each peer's common keys in the sender's order.
        scratch.sort_unstable_by_key(|&(seq, _, i)| (seq, i));
        let mut common: Vec<&str> = Vec::new();
        for group in scratch.chunk_by(|a, b| a.1 == b.1) {
            let Some(other) = group.first().and_then(|e| peer_ref(&self.peers, e.1)) else {
                continue;
            };
            common.clear();
            for &(_, _, i) in group {
                if let Some(ks) = me
                    .keys
                    .get(i as usize)
                    .and_then(|&k| key_ref(&self.keys, k))
                {
                    common.push(&ks.name);
                }
            }
            if common.is_empty() {
                continue;
            }
            push_introduction(out, me.conn, me.format, &other.id, &common);
            push_introduction(out, other.conn, other.format, &me.id, &common);
        }
        self.scratch = scratch;
    }

    /// The slot of key `name`, creating it (with no members) if needed.
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&k) = self.key_ids.get(name) {
            return k;
        }
        let ks = KeySlot {
            name: name.into(),
            members: HashSet::new(),
        };
        let k = match self.free_keys.pop() {
            Some(k) => {
                // Free-list entries are always indices of `None` slots inside `keys`.
                self.keys[k as usize] = Some(ks);
                k
            }
            None => {
                self.keys.push(Some(ks));
                (self.keys.len() - 1) as u32
            }
        };
        self.key_ids.insert(name.into(), k);
        k
    }

    fn release_key_if_empty(&mut self, k: u32) {
        let empty = key_ref(&self.keys, k).is_some_and(|ks| ks.members.is_empty());
        if !empty {
            return;
        }
        if let Some(ks) = self.keys.get_mut(k as usize).and_then(Option::take) {
            self.key_ids.remove(&ks.name);
            self.free_keys.push(k);
        }
    }

    /// The keys currently held by `id`, in order (tests and diagnostics).
    #[cfg(test)]
    fn keys_of(&self, id: &str) -> Option<Vec<&str>> {
        let peer = peer_ref(&self.peers, *self.by_id.get(id)?)?;
        Some(
            peer.keys
                .iter()
                .filter_map(|&k| key_ref(&self.keys, k).map(|ks| &*ks.name))
                .collect(),
        )
    }

    /// Number of distinct keys held by anyone (tests and diagnostics).
    #[cfg(test)]
    fn distinct_keys(&self) -> usize {
        self.key_ids.len()
    }
}

fn peer_ref(peers: &[Option<Peer>], slot: u32) -> Option<&Peer> {
    peers.get(slot as usize).and_then(Option::as_ref)
}

fn peer_mut(peers: &mut [Option<Peer>], slot: u32) -> Option<&mut Peer> {
    peers.get_mut(slot as usize).and_then(Option::as_mut)
}

fn key_ref(keys: &[Option<KeySlot>], k: u32) -> Option<&KeySlot> {
    keys.get(k as usize).and_then(Option::as_ref)
}

fn key_mut(keys: &mut [Option<KeySlot>], k: u32) -> Option<&mut KeySlot> {
    keys.get_mut(k as usize).and_then(Option::as_mut)
}

fn is_heartbeat(ty: Option<&str>) -> bool {
    matches!(ty, Some("Heartbeat") | Some("❤️"))
}

/// Reads a text message (module docs, steps 3–4). Returns the format it decides, if any.
fn read_json(obj: &JsonMap<String, Json>) -> (Option<Format>, Intent<'_>) {
    let ty = obj.get("type").and_then(Json::as_str);
    if is_heartbeat(ty) {
        return (None, Intent::Nothing);
    }
    if let Some(ids) = obj.get("documentIds") {
        return (Some(Format::B), documents_intent(ty, json_strs(Some(ids))));
    }
    let intent = Intent::Update {
        join: json_strs(obj.get("join")),
        leave: json_strs(obj.get("leave")),
        introduce: true,
    };
    (Some(Format::A), intent)
}

/// Reads a binary message already known to be a map (format C).
fn read_msgpack<'a>(value: &'a msgpack::Value<'a>) -> Intent<'a> {
    let ty = value.get("type").and_then(msgpack::Value::as_str);
    if is_heartbeat(ty) {
        return Intent::Nothing;
    }
    let ids = value
        .get("documentIds")
        .and_then(msgpack::Value::as_array)
        .map(|items| items.iter().filter_map(msgpack::Value::as_str).collect())
        .unwrap_or_default();
    documents_intent(ty, ids)
}

/// Formats B and C: `Join` adds and introduces, `Leave` removes silently, anything else is
/// a no-op.
fn documents_intent<'a>(ty: Option<&str>, ids: Vec<&'a str>) -> Intent<'a> {
    match ty {
        Some("Join") => Intent::Update {
            join: ids,
            leave: Vec::new(),
            introduce: true,
        },
        Some("Leave") => Intent::Update {
            join: Vec::new(),
            leave: ids,
            introduce: false,
        },
        _ => Intent::Nothing,
    }
}

/// The string elements of a JSON array; anything else counts as empty.
fn json_strs(v: Option<&Json>) -> Vec<&str> {
    match v {
        Some(Json::Array(items)) => items.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    }
}

#[derive(Serialize)]
struct IntroductionA<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    keys: &'a [&'a str],
}

#[derive(Serialize)]
struct IntroductionB<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "userName")]
    user_name: &'a str,
    #[serde(rename = "documentIds")]
    document_ids: &'a [&'a str],
}

/// Appends an introduction of `other` (sharing `common`) for `to`, in `format`.
fn push_introduction(
    out: &mut Vec<Outgoing>,
    to: Handle,
    format: Format,
    other: &str,
    common: &[&str],
) {
    let (kind, payload) = match format {
        Format::A => {
            let msg = IntroductionA {
                kind: "Introduction",
                id: other,
                keys: common,
            };
            // Serializing strings into a Vec cannot fail; skip the message if it ever did.
            let Ok(p) = serde_json::to_vec(&msg) else {
                return;
            };
            (Kind::Text, p)
        }
        Format::B => {
            let msg = IntroductionB {
                kind: "Introduction",
                user_name: other,
                document_ids: common,
            };
            let Ok(p) = serde_json::to_vec(&msg) else {
                return;
            };
            (Kind::Text, p)
        }
        Format::C => {
            let mut p = Vec::with_capacity(
                40 + other.len() + common.iter().map(|k| k.len() + 3).sum::<usize>(),
            );
            msgpack::write_map_header(&mut p, 3);
            msgpack::write_str(&mut p, "type");
            msgpack::write_str(&mut p, "Introduction");
            msgpack::write_str(&mut p, "peerId");
            msgpack::write_str(&mut p, other);
            msgpack::write_str(&mut p, "documentIds");
            msgpack::write_str_array(&mut p, common);
            (Kind::Binary, p)
        }
    };
    out.push(Outgoing { to, kind, payload });
}

// ── the dialect ───────────────────────────────────────────────────────────────────────────

/// Every introduction socket is placed by this key, so one table sees every peer.
pub const PLACEMENT_KEY: &str = "cevitxe/introductions";

/// The id of an `/introduction/:id` path, percent-decoded (`None` for any other path).
pub fn path_id(path: &str) -> Option<String> {
    let id = path.strip_prefix("/introduction/")?;
    if id.is_empty() || id.contains('/') {
        return None;
    }
    percent_decode(id)
}

/// `/introduction/:id` as a dialect over one [`Introductions`] table.
#[derive(Default)]
pub struct IntroductionDialect {
    table: Introductions,
    out: Vec<Outgoing>,
}

impl Dialect for IntroductionDialect {
    fn place(&self, req: &RequestHead, _rand: &mut dyn Random) -> Placement {
        if req.upgrade.is_none() {
            return Placement::Answer(upgrade_required());
        }
        match path_id(&req.path) {
            Some(_) => Placement::Key(PLACEMENT_KEY.into()),
            None => Placement::Answer(Response::text(404, "not found")),
        }
    }

    fn on_request(
        &mut self,
        _cx: &mut Cx<'_>,
        conn: Handle,
        _key: Option<&str>,
        req: &RequestHead,
    ) -> Answer {
        match path_id(&req.path) {
            Some(id) => {
                self.table.open(&id, conn);
                Answer::Upgrade
            }
            None => Answer::Respond(Response::text(404, "not found")),
        }
    }

    fn on_message(&mut self, cx: &mut Cx<'_>, conn: Handle, msg: Message<'_>) {
        self.table
            .message(conn, msg.kind(), msg.as_bytes(), &mut self.out);
        cx.send_all(self.out.drain(..));
    }

    fn on_close(&mut self, _cx: &mut Cx<'_>, conn: Handle) {
        self.table.close(conn);
    }

    fn gauge(&self) -> u64 {
        self.table.peers() as u64
    }
}

#[cfg(test)]
mod tests;
