//! Peerolator (PROTOCOLS.md §4), as a pure table: sockets are [`Handle`]s, input is whole
//! WebSocket messages, output is [`Outgoing`] messages.
//!
//! Owns: server peers (`/server`) and the clients attached to each (`/client/:serverId`), the
//! relay messages (HELLO, PEER_JOINED, PEER_GONE), the forwarding of application messages with
//! `from`/`to`, and every rule of §4.4 about what is dropped and what ends a session.
//!
//! Does not own: ids (the dialect mints them from the call's randomness, UUID v4 in the simple
//! form, and hands them in), placement (a server and all its clients live on the core owning
//! `peer/<serverId>`, so one table sees them all), WebSocket framing and closing (the table
//! answers [`Verdict::Close`] and the shell closes with 1008).
//!
//! # Messages
//!
//! Everything the relay sends has four fields in this order: `from`, `to`, `type`, `message`;
//! relay-originated messages come `"from":"0"`. A peer sends `{"to","type","message"}` and
//! optionally `"from"`, which must then be its own id (§4.4 RECOMMEND); unknown extra fields are
//! ignored, `message` may be any JSON value (including `null`) and is relayed byte for byte.
//!
//! # Rules (§4.4)
//!
//! * A server's message to an id that is not one of its connected clients: dropped.
//! * A client's message to anything but its server's id: the session ends (1008).
//! * A frame that is binary, not a JSON object, lacks `to` / `type` / `message`, has them with
//!   the wrong types, or carries a `from` other than the sender's id: the session ends (1008).
//! * A client leaves: its server gets PEER_GONE with the client's id.
//! * A server leaves: each of its clients gets PEER_GONE with the **server's** id (the seed's
//!   meaning; the original sent each client its own id) and stays connected; its later valid
//!   messages are dropped. New clients for that id are refused.

use super::HandleMap;
use super::Random;
use super::{
    upgrade_required, uuid_v4_simple, Answer, Cx, Dialect, Handle, Kind, Outgoing, Placement,
};
use crate::proto::http::{percent_decode, RequestHead, Response};
use serde_json::value::RawValue;
use serde_json::Value as Json;
use std::collections::HashMap;

/// Why a peer could not be entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// A client for a server id that is not connected.
    NoServer,
    /// A server id that is already in use (ids are 128 random bits: does not happen).
    DuplicateId,
}

impl OpenError {
    /// The close reason the shell sends.
    pub fn reason(self) -> &'static str {
        match self {
            OpenError::NoServer => "no server with this id",
            OpenError::DuplicateId => "server id in use",
        }
    }
}

/// What a message means for its sender's session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Relayed, or dropped by the rules.
    Keep,
    /// The sender broke a rule: close it with 1008 and this reason.
    Close(&'static str),
}

struct Server {
    conn: Handle,
    clients: HashMap<Box<str>, Handle>,
}

enum Member {
    Server { id: Box<str> },
    Client { id: Box<str>, server: Box<str> },
}

/// The Peerolator table of one core.
#[derive(Default)]
pub struct Peers {
    servers: HashMap<Box<str>, Server>,
    members: HandleMap<Member>,
}

impl Peers {
    pub fn new() -> Self {
        Self::default()
    }

    /// A server peer opened with the id `id`: it gets its HELLO.
    pub fn open_server(
        &mut self,
        id: &str,
        conn: Handle,
        server_info: Option<&str>,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), OpenError> {
        if self.servers.contains_key(id) {
            return Err(OpenError::DuplicateId);
        }
        if self.members.contains_key(&conn) {
            self.leave(conn, out); // a reused reference: the old one is gone
        }
        self.servers.insert(
            id.into(),
            Server {
                conn,
                clients: HashMap::new(),
            },
        );
        self.members.insert(conn, Member::Server { id: id.into() });
        out.push(hello(conn, id, server_info));
        Ok(())
    }

    /// A client peer opened with the id `id` for the server `server_id`: it gets its HELLO,
    /// then the server gets PEER_JOINED.
    pub fn open_client(
        &mut self,
        server_id: &str,
        id: &str,
        conn: Handle,
        server_info: Option<&str>,
        out: &mut Vec<Outgoing>,
    ) -> Result<(), OpenError> {
        if !self.servers.contains_key(server_id) {
            return Err(OpenError::NoServer);
        }
        if self.members.contains_key(&conn) {
            self.leave(conn, out);
        }
        let server = self.servers.get_mut(server_id).ok_or(OpenError::NoServer)?;
        server.clients.insert(id.into(), conn);
        let server_conn = server.conn;
        self.members.insert(
            conn,
            Member::Client {
                id: id.into(),
                server: server_id.into(),
            },
        );
        out.push(hello(conn, id, server_info));
        out.push(relay_message(server_conn, server_id, "PEER_JOINED", id));
        Ok(())
    }

    /// `conn` closed: PEER_GONE to whoever should know.
    pub fn leave(&mut self, conn: Handle, out: &mut Vec<Outgoing>) {
        match self.members.remove(&conn) {
            Some(Member::Client { id, server }) => {
                let Some(s) = self.servers.get_mut(&server) else {
                    return;
                };
                if s.clients.get(&id) == Some(&conn) {
                    s.clients.remove(&id);
                    out.push(relay_message(s.conn, &server, "PEER_GONE", &id));
                }
            }
            Some(Member::Server { id }) => {
                let Some(s) = self.servers.remove(&id) else {
                    return;
                };
                for (client_id, client) in s.clients {
                    out.push(relay_message(client, &client_id, "PEER_GONE", &id));
                }
            }
            None => {}
        }
    }

    /// Connected servers.
    pub fn servers(&self) -> usize {
        self.servers.len()
    }

    /// Open sockets (servers and clients, including clients whose server left).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// One message from `conn`.
    pub fn message(
        &mut self,
        conn: Handle,
        kind: Kind,
        payload: &[u8],
        out: &mut Vec<Outgoing>,
    ) -> Verdict {
        let Some(member) = self.members.get(&conn) else {
            return Verdict::Keep;
        };
        let own_id = match member {
            Member::Server { id } | Member::Client { id, .. } => &**id,
        };
        let msg = match parse(kind, payload) {
            Ok(m) => m,
            Err(why) => return Verdict::Close(why),
        };
        if msg.from.as_deref().is_some_and(|f| f != own_id) {
            return Verdict::Close("from is not your id");
        }
        match member {
            Member::Server { id } => {
                let Some(s) = self.servers.get(id) else {
                    return Verdict::Keep;
                };
                if let Some(&to) = s.clients.get(msg.to.as_str()) {
                    out.push(relayed(to, id, &msg));
                }
                Verdict::Keep
            }
            Member::Client { id, server } => {
                let Some(s) = self.servers.get(server) else {
                    return Verdict::Keep; // the server left: dropped
                };
                if msg.to != **server {
                    return Verdict::Close("clients may only message their server");
                }
                out.push(relayed(s.conn, id, &msg));
                Verdict::Keep
            }
        }
    }
}

/// A peer's message, validated.
struct Message<'a> {
    from: Option<String>,
    to: String,
    kind: String,
    message: &'a RawValue,
}

fn parse(kind: Kind, payload: &[u8]) -> Result<Message<'_>, &'static str> {
    #[derive(serde::Deserialize)]
    struct Wire<'a> {
        #[serde(default)]
        from: Option<String>,
        to: String,
        #[serde(rename = "type")]
        kind: String,
        #[serde(borrow)]
        message: &'a RawValue,
    }
    if kind != Kind::Text {
        return Err("binary messages are not accepted");
    }
    // Serde would also read a JSON array positionally into the struct: only objects count.
    if payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err("not a JSON object");
    }
    let w: Wire<'_> =
        serde_json::from_slice(payload).map_err(|_| "not a valid {to, type, message} object")?;
    Ok(Message {
        from: w.from,
        to: w.to,
        kind: w.kind,
        message: w.message,
    })
}

/// `{"from":…,"to":…,"type":…,"message":…}` with `message` as JSON text.
fn frame(to_conn: Handle, from: &str, to: &str, kind: &str, message: &str) -> Outgoing {
    let mut s = String::with_capacity(48 + from.len() + to.len() + kind.len() + message.len());
    s.push_str("{\"from\":");
    s.push_str(&Json::from(from).to_string());
    s.push_str(",\"to\":");
    s.push_str(&Json::from(to).to_string());
    s.push_str(",\"type\":");
    s.push_str(&Json::from(kind).to_string());
    s.push_str(",\"message\":");
    s.push_str(message);
    s.push('}');
    Outgoing {
        to: to_conn,
        kind: Kind::Text,
        payload: s.into_bytes(),
    }
}

fn relayed(to_conn: Handle, from: &str, m: &Message<'_>) -> Outgoing {
    frame(to_conn, from, &m.to, &m.kind, m.message.get())
}

/// A relay message about the peer `about`, to the peer `to` (whose id is `to_id`).
fn relay_message(to: Handle, to_id: &str, kind: &str, about: &str) -> Outgoing {
    let message = serde_json::json!({ "id": about }).to_string();
    frame(to, "0", to_id, kind, &message)
}

fn hello(to: Handle, id: &str, server_info: Option<&str>) -> Outgoing {
    let mut m = serde_json::Map::new();
    m.insert("id".into(), Json::from(id));
    if let Some(info) = server_info {
        m.insert("serverInfo".into(), Json::from(info));
    }
    frame(to, "0", id, "HELLO", &Json::Object(m).to_string())
}

// ── the dialect ───────────────────────────────────────────────────────────────────────────

/// A server and all its clients are placed by this key.
pub fn placement_key(server_id: &str) -> String {
    format!("peer/{server_id}")
}

/// Which side a Peerolator path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerPath {
    /// `/server` (exact).
    Server,
    /// `/client/:serverId` (decoded).
    Client(String),
}

/// The Peerolator path of `path`, if it is one.
pub fn parse_path(path: &str) -> Option<PeerPath> {
    if path == "/server" {
        return Some(PeerPath::Server);
    }
    let id = path.strip_prefix("/client/")?;
    if id.is_empty() || id.contains('/') {
        return None;
    }
    percent_decode(id).map(PeerPath::Client)
}

/// Peerolator as a dialect. Ids (UUID v4, simple form: 32 lowercase hex digits) are minted from the call's
/// randomness: a server's when it is placed (its key carries it), a client's when it opens.
pub struct Peerolator {
    peers: Peers,
    /// `serverInfo` sent in every HELLO, if configured.
    server_info: Option<String>,
    out: Vec<Outgoing>,
}

impl Peerolator {
    pub fn new(server_info: Option<String>) -> Self {
        Peerolator {
            peers: Peers::new(),
            server_info,
            out: Vec::new(),
        }
    }
}

impl Dialect for Peerolator {
    fn place(&self, req: &RequestHead, rand: &mut dyn Random) -> Placement {
        if req.upgrade.is_none() {
            return Placement::Answer(upgrade_required());
        }
        match parse_path(&req.path) {
            // Ids are UUID v4 in the simple form, as the original's `to_simple()`.
            Some(PeerPath::Server) => Placement::Key(placement_key(&uuid_v4_simple(rand)).into()),
            Some(PeerPath::Client(server)) => Placement::Key(placement_key(&server).into()),
            None => Placement::Answer(Response::text(404, "not found")),
        }
    }

    fn on_request(
        &mut self,
        cx: &mut Cx<'_>,
        conn: Handle,
        key: Option<&str>,
        req: &RequestHead,
    ) -> Answer {
        let info = self.server_info.as_deref();
        let opened = match parse_path(&req.path) {
            Some(PeerPath::Server) => match key.and_then(|k| k.strip_prefix("peer/")) {
                Some(id) => self.peers.open_server(id, conn, info, &mut self.out),
                None => return Answer::Respond(Response::text(500, "server id missing")),
            },
            Some(PeerPath::Client(server)) => {
                let id = uuid_v4_simple(cx.rand);
                self.peers
                    .open_client(&server, &id, conn, info, &mut self.out)
            }
            None => return Answer::Respond(Response::text(404, "not found")),
        };
        cx.send_all(self.out.drain(..));
        match opened {
            // The original completes the upgrade, then sends a close frame without a status
            // code (the client sees 1005).
            Err(OpenError::NoServer) => cx.close(conn, crate::proto::ws::NO_STATUS, ""),
            Err(e) => cx.close(conn, 1008, e.reason()),
            Ok(()) => {}
        }
        Answer::Upgrade
    }

    fn on_message(&mut self, cx: &mut Cx<'_>, conn: Handle, msg: super::Message<'_>) {
        let verdict = self
            .peers
            .message(conn, msg.kind(), msg.as_bytes(), &mut self.out);
        if let Verdict::Close(why) = verdict {
            // Gone from the relay now (its peers hear PEER_GONE at once), not when the
            // close handshake ends.
            self.peers.leave(conn, &mut self.out);
            cx.close(conn, 1008, why);
        }
        cx.send_all(self.out.drain(..));
    }

    fn on_close(&mut self, cx: &mut Cx<'_>, conn: Handle) {
        self.peers.leave(conn, &mut self.out);
        cx.send_all(self.out.drain(..));
    }

    fn gauge(&self) -> u64 {
        self.peers.len() as u64
    }
}

#[cfg(test)]
mod tests;
