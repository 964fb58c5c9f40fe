//! The PeerJS server (npm `peer` 1.0.2; PROTOCOLS-beyond.md §7), as a pure table and a dialect.
//!
//! Owns: the registered clients (id, token, socket, last sign of life), the connection rules
//! of §7.5 (missing parameters, wrong key, a taken id, the concurrent limit, rebinding with the
//! same token), the forwarding of `OFFER` / `ANSWER` / `CANDIDATE` / `LEAVE` / `EXPIRE` with
//! `src` set and the original's member order, the queues of messages for ids not connected yet
//! (delivered after their `OPEN`, or answered with `EXPIRE`), the alive timeout, and the HTTP
//! endpoints `{path}{key}/id` and `{path}{key}/peers`.
//!
//! Does not own: placement (every PeerJS request of a server lives on the instance owning
//! [`PLACEMENT_KEY`], so ids are unique and every peer reachable, on one node or across a
//! cluster), frame size (the shell's `--max-message-size`), the origin allow-list (the shell).
//!
//! Decisions of §7.7 taken: any valid frame counts as a sign of life; a bad frame is dropped
//! and the socket kept; a rebind with the same token gets `OPEN` and the old socket is closed
//! (1000); queues are bounded (messages, bytes, count) and a message past a bound is dropped;
//! `LEAVE` without `dst` unregisters the sender and closes its socket (1000).

use super::ywebrtc::Members;
use super::HandleMap;
use super::{uuid_v4, Answer, Cx, Dialect, Handle, Kind, Message, Placement, Random};
use crate::proto::http::{percent_decode, Method, RequestHead, Response};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// The key every PeerJS request is placed by.
pub const PLACEMENT_KEY: &str = "peerjs";

/// The body of `GET {path}` (the original's `app.json`).
pub const APP_JSON: &str = r#"{"name":"PeerJS Server","description":"A server side element to broker connections between PeerJS clients.","website":"https://peerjs.com/"}"#;

const OPEN: &str = r#"{"type":"OPEN"}"#;
const NO_PARAMS: &str =
    r#"{"type":"ERROR","payload":{"msg":"No id, token, or key supplied to websocket server"}}"#;
const BAD_KEY: &str = r#"{"type":"ERROR","payload":{"msg":"Invalid key provided"}}"#;
const FULL: &str =
    r#"{"type":"ERROR","payload":{"msg":"Server has reached its concurrent user limit"}}"#;
const ID_TAKEN: &str = r#"{"type":"ID-TAKEN","payload":{"msg":"ID is taken"}}"#;

/// The options users set on `peer`, under sigyard's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The mount path, with a leading and a trailing `/` (`--peerjs-path`).
    pub path: String,
    pub key: String,
    pub expire_timeout_ms: u64,
    /// 0: off.
    pub alive_timeout_ms: u64,
    pub concurrent_limit: usize,
    pub allow_discovery: bool,
    /// Per destination id: messages and bytes waiting at most.
    pub queue_messages: usize,
    pub queue_bytes: usize,
    /// Destination ids with a queue at most.
    pub max_queues: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            path: "/".into(),
            key: "peerjs".into(),
            expire_timeout_ms: 5_000,
            alive_timeout_ms: 60_000,
            concurrent_limit: 5_000,
            allow_discovery: false,
            queue_messages: 64,
            queue_bytes: 256 << 10,
            max_queues: 10_000,
        }
    }
}

/// What a request on PeerJS's paths is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The WebSocket, `{path}peerjs`.
    Socket,
    /// `GET {path}{key}/id`.
    Id,
    /// `GET {path}{key}/peers`.
    Peers,
    /// `GET {path}`, when it is not `/`.
    Info,
}

/// Which of PeerJS's requests `path` is, under the mount `mount` (leading and trailing `/`).
pub fn route(mount: &str, path: &str, upgrade: bool) -> Option<Route> {
    let rest = path.strip_prefix(mount)?;
    if upgrade {
        return (rest == "peerjs").then_some(Route::Socket);
    }
    if rest.is_empty() {
        return (mount != "/").then_some(Route::Info);
    }
    let (key, what) = rest.split_once('/')?;
    if key.is_empty() || key.contains('/') {
        return None;
    }
    match what {
        "id" => Some(Route::Id),
        "peers" => Some(Route::Peers),
        _ => None,
    }
}

/// `key`, `id` and `token` of a query as `URLSearchParams` reads them (`+` is a space, the
/// last of a repeated name wins).
fn params(query: Option<&str>) -> [String; 3] {
    let mut out: [String; 3] = Default::default();
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match k {
            "key" => 0,
            "id" => 1,
            "token" => 2,
            _ => continue,
        };
        let v = v.replace('+', " ");
        out[slot] = percent_decode(&v).unwrap_or(v);
    }
    out
}

struct Client {
    token: Token,
    conn: Handle,
    last_seen: u64,
}

/// A client's token, compared exactly; the client's own (11 characters or so) are kept
/// inline, longer ones on the heap.
enum Token {
    Inline(u8, [u8; 22]),
    Heap(Box<str>),
}

impl Token {
    fn new(t: &str) -> Token {
        let mut bytes = [0u8; 22];
        match bytes.get_mut(..t.len()) {
            Some(b) => {
                b.copy_from_slice(t.as_bytes());
                Token::Inline(t.len() as u8, bytes)
            }
            None => Token::Heap(t.into()),
        }
    }

    fn is(&self, t: &str) -> bool {
        match self {
            Token::Inline(n, b) => &b[..usize::from(*n)] == t.as_bytes(),
            Token::Heap(h) => **h == *t,
        }
    }
}

#[derive(Default)]
struct Queue {
    /// (sender, the message as it will be delivered)
    msgs: Vec<(Box<str>, Box<[u8]>)>,
    bytes: usize,
    created: u64,
}

/// The PeerJS table of one instance.
pub struct Peers {
    opts: Options,
    /// Ids are allocated once, shared by the socket that speaks for them.
    clients: HashMap<Arc<str>, Client>,
    /// The id each socket speaks for (sockets that are no longer any id's are not here).
    conns: HandleMap<Arc<str>>,
    queues: HashMap<Box<str>, Queue>,
}

impl Peers {
    pub fn new(opts: Options) -> Peers {
        Peers {
            opts,
            clients: HashMap::new(),
            conns: HandleMap::default(),
            queues: HashMap::new(),
        }
    }

    /// Registered clients.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    /// Destination ids with waiting messages.
    pub fn queues(&self) -> usize {
        self.queues.len()
    }

    /// A socket opened with `query` at `now`: registered, refused, or rebound (§7.5).
    pub fn open(&mut self, cx: &mut Cx<'_>, conn: Handle, query: Option<&str>) {
        let [key, id, token] = params(query);
        let refuse = |cx: &mut Cx<'_>, frame: &str| {
            cx.text(conn, frame);
            cx.close(conn, crate::proto::ws::NO_STATUS, "");
        };
        if key.is_empty() || id.is_empty() || token.is_empty() {
            return refuse(cx, NO_PARAMS);
        }
        if key != self.opts.key {
            return refuse(cx, BAD_KEY);
        }
        let full = self.clients.len() >= self.opts.concurrent_limit;
        match self.clients.get_mut(id.as_str()) {
            Some(c) if !c.token.is(&token) => return refuse(cx, ID_TAKEN),
            Some(c) => {
                // Rebind: the new socket speaks for the id; the old one is closed.
                let old = std::mem::replace(&mut c.conn, conn);
                c.last_seen = cx.now;
                self.conns.remove(&old);
                cx.close(old, 1000, "the same id connected again");
            }
            None if full => return refuse(cx, FULL),
            None => {
                self.clients.insert(
                    id.as_str().into(),
                    Client {
                        token: Token::new(&token),
                        conn,
                        last_seen: cx.now,
                    },
                );
            }
        }
        if let Some((shared, _)) = self.clients.get_key_value(id.as_str()) {
            self.conns.insert(conn, shared.clone());
        }
        cx.text(conn, OPEN);
        if let Some(q) = self.queues.remove(id.as_str()) {
            for (_, msg) in q.msgs {
                cx.send(conn, Kind::Text, &msg);
            }
        }
    }

    /// One frame from `conn` (a binary one too, read as text if it is UTF-8).
    pub fn message(&mut self, cx: &mut Cx<'_>, conn: Handle, msg: Message<'_>) {
        let Some(src) = self.conns.get(&conn).cloned() else {
            return;
        };
        let Some(m) = msg.text().and_then(Members::parse) else {
            return;
        };
        let Some(ty) = m.str("type") else {
            return;
        };
        if let Some(c) = self.clients.get_mut(&src) {
            c.last_seen = cx.now;
        }
        if !matches!(&*ty, "OFFER" | "ANSWER" | "CANDIDATE" | "LEAVE" | "EXPIRE") {
            return; // HEARTBEAT (a sign of life, above), or a type the server ignores
        }
        let dst = m.str("dst");
        // The original's object: type, src, dst, payload, in that order, absent ones left out.
        let mut out = String::with_capacity(msg.len() + src.len() + 16);
        out.push_str(r#"{"type":"#);
        out.push_str(m.get("type").unwrap_or("null"));
        out.push_str(r#","src":"#);
        out.push_str(&json_str(&src));
        if let Some(d) = &dst {
            out.push_str(r#","dst":"#);
            out.push_str(&json_str(d));
        }
        if let Some(p) = m.get("payload") {
            out.push_str(r#","payload":"#);
            out.push_str(p);
        }
        out.push('}');
        match dst.as_deref() {
            Some(d) if self.clients.contains_key(d) => {
                cx.text(self.clients[d].conn, &out);
            }
            Some(d) if !d.is_empty() && matches!(&*ty, "OFFER" | "ANSWER" | "CANDIDATE") => {
                self.enqueue(cx.now, &src, d, out.into_bytes());
            }
            None if ty == "LEAVE" => {
                // The sender leaves: unregistered, and its socket closed.
                self.clients.remove(&src);
                self.conns.remove(&conn);
                cx.close(conn, 1000, "left");
            }
            _ => {}
        }
    }

    fn enqueue(&mut self, now: u64, src: &str, dst: &str, msg: Vec<u8>) {
        let (max_n, max_bytes) = (self.opts.queue_messages, self.opts.queue_bytes);
        if !self.queues.contains_key(dst) && self.queues.len() >= self.opts.max_queues {
            return;
        }
        let q = self.queues.entry(dst.into()).or_insert_with(|| Queue {
            created: now,
            ..Queue::default()
        });
        if q.msgs.len() >= max_n || q.bytes + msg.len() > max_bytes {
            return;
        }
        q.bytes += msg.len();
        q.msgs.push((src.into(), msg.into()));
    }

    /// `conn` is gone: its id is unregistered if it still spoke for it. Its queue stays.
    pub fn close(&mut self, conn: Handle) {
        if let Some(id) = self.conns.remove(&conn) {
            if self.clients.get(&id).is_some_and(|c| c.conn == conn) {
                self.clients.remove(&id);
            }
        }
    }

    /// Expire queues and silent clients as of `cx.now`.
    pub fn sweep(&mut self, cx: &mut Cx<'_>) {
        let now = cx.now;
        if self.opts.alive_timeout_ms > 0 {
            let dead: Vec<Arc<str>> = self
                .clients
                .iter()
                .filter(|(_, c)| now.saturating_sub(c.last_seen) >= self.opts.alive_timeout_ms)
                .map(|(id, _)| id.clone())
                .collect();
            for id in dead {
                if let Some(c) = self.clients.remove(&id) {
                    self.conns.remove(&c.conn);
                    self.queues.remove(&*id);
                    cx.close(c.conn, crate::proto::ws::NO_STATUS, "");
                }
            }
        }
        let expire = self.opts.expire_timeout_ms;
        let old: Vec<Box<str>> = self
            .queues
            .iter()
            .filter(|(_, q)| now.saturating_sub(q.created) >= expire)
            .map(|(dst, _)| dst.clone())
            .collect();
        for dst in old {
            let Some(q) = self.queues.remove(&dst) else {
                continue;
            };
            // One EXPIRE per sender, in the order they first wrote.
            let mut told = BTreeSet::new();
            for (src, _) in q.msgs {
                if !told.insert(src.clone()) {
                    continue;
                }
                if let Some(c) = self.clients.get(&*src) {
                    let msg = format!(
                        r#"{{"type":"EXPIRE","src":{},"dst":{}}}"#,
                        json_str(&dst),
                        json_str(&src)
                    );
                    cx.text(c.conn, &msg);
                }
            }
        }
    }

    /// When [`Peers::sweep`] has something to check next: every second while anyone is
    /// registered or waited for.
    pub fn next_sweep(&self, last: u64) -> Option<u64> {
        (!self.clients.is_empty() || !self.queues.is_empty()).then_some(last + 1000)
    }

    /// A fresh id for `GET …/id`: a UUID v4 no registered client has.
    pub fn fresh_id(&self, rand: &mut dyn Random) -> String {
        loop {
            let id = uuid_v4(rand);
            if !self.clients.contains_key(id.as_str()) {
                return id;
            }
        }
    }

    /// `GET …/peers`: the registered ids as a JSON array.
    pub fn peers_json(&self) -> String {
        let ids: Vec<&str> = self.clients.keys().map(|k| &**k).collect();
        serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into())
    }
}

fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// PeerJS as a dialect.
pub struct PeerJs {
    table: Peers,
    /// When the table was last swept (`None`: no sweep due).
    swept: u64,
}

impl PeerJs {
    pub fn new(opts: Options) -> PeerJs {
        PeerJs {
            table: Peers::new(opts),
            swept: 0,
        }
    }

    fn http(&self, req: &RequestHead, rand: &mut dyn Random) -> Response {
        let mut r = match route(&self.table.opts.path, &req.path, false) {
            _ if req.method == Method::Options => {
                let mut r = Response::new(204, "text/plain", Vec::new());
                r.headers.push((
                    "Access-Control-Allow-Methods".into(),
                    "GET,HEAD,PUT,PATCH,POST,DELETE".into(),
                ));
                r
            }
            _ if !matches!(req.method, Method::Get | Method::Head) => {
                Response::text(404, "not found")
            }
            Some(Route::Id) => {
                Response::new(200, "text/html; charset=utf-8", self.table.fresh_id(rand))
            }
            Some(Route::Peers) if self.table.opts.allow_discovery => Response::new(
                200,
                "application/json; charset=utf-8",
                self.table.peers_json(),
            ),
            Some(Route::Peers) => Response::new(401, "text/plain; charset=utf-8", "Unauthorized"),
            Some(Route::Info) => Response::new(200, "application/json; charset=utf-8", APP_JSON),
            _ => Response::text(404, "not found"),
        };
        // CORS as the original's `cors` with `origin: true`: the request's origin reflected.
        r.headers.push(("Vary".into(), "Origin".into()));
        if let Some(o) = &req.origin {
            r.headers
                .push(("Access-Control-Allow-Origin".into(), o.clone()));
        }
        r
    }
}

impl Dialect for PeerJs {
    fn place(&self, req: &RequestHead, _rand: &mut dyn Random) -> Placement {
        match route(&self.table.opts.path, &req.path, req.upgrade.is_some()) {
            // The info page needs no table.
            Some(Route::Info) => Placement::Here,
            Some(_) => Placement::Key(PLACEMENT_KEY.into()),
            None => Placement::Answer(Response::text(404, "not found")),
        }
    }

    fn on_request(
        &mut self,
        cx: &mut Cx<'_>,
        conn: Handle,
        _key: Option<&str>,
        req: &RequestHead,
    ) -> Answer {
        if req.upgrade.is_none() {
            return Answer::Respond(self.http(req, cx.rand));
        }
        if self.table.is_empty() && self.table.queues() == 0 {
            self.swept = cx.now; // the first sweep a second from now
        }
        self.table.open(cx, conn, req.query.as_deref());
        Answer::Upgrade
    }

    fn on_message(&mut self, cx: &mut Cx<'_>, conn: Handle, msg: Message<'_>) {
        let idle = self.table.is_empty() && self.table.queues() == 0;
        self.table.message(cx, conn, msg);
        if idle {
            self.swept = cx.now;
        }
    }

    fn on_close(&mut self, _cx: &mut Cx<'_>, conn: Handle) {
        self.table.close(conn);
    }

    fn on_timeout(&mut self, cx: &mut Cx<'_>) {
        self.swept = cx.now;
        self.table.sweep(cx);
    }

    fn poll_timeout(&self) -> Option<u64> {
        self.table.next_sweep(self.swept)
    }

    fn gauge(&self) -> u64 {
        self.table.len() as u64
    }
}

#[cfg(test)]
mod tests;
