//! Engine.IO 3 / Socket.IO 2, in-house and sans-I/O (PROTOCOLS.md §6): packets and the v3
//! polling payload ([`packet`]), the session table with its transports, heartbeats, upgrade
//! and rooms ([`session`]), and [`Engine`], the layer as a dialect of the contract
//! (`proto::dialect`), hosting the Socket.IO dialects ([`crate::proto::dialect::sio`]).
//!
//! Session ids are 20 characters of the URL-safe base64 alphabet: the first four carry the
//! [`Locator`] of the instance that minted them, the other 16 come from the randomness (96
//! bits). A request naming a session is placed at that locator; a handshake is placed by its
//! dialect's key (all webRTWorkspaces sockets on one instance, a MewConnect v1 pair on the one
//! owning `mewv1/<connId>`), and its id is minted there.

pub mod echo;
pub mod packet;
pub mod session;

pub use session::{Options, PollGet, Refused, Sessions};

use crate::proto::dialect::sio::Apps;
use crate::proto::dialect::{Answer, Cx, Dialect, Handle, Locator, Message, Placement, Random};
use crate::proto::http::{Method, RequestHead, Response};
use packet::EioError;
use session::{error_response, http_response};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// How much longer than the session's own timeout a held poll may wait before the
/// connection answers it by itself (a safety net: the table answers first).
const HOLD_SLACK_MS: u64 = 5_000;

/// A session id minted at `here` from 16 random bytes (each reduced to one character).
pub fn mint_sid(here: Locator, random: &[u8; 16]) -> String {
    let mut s = String::with_capacity(20);
    for shift in [18, 12, 6, 0] {
        s.push(char::from(ALPHABET[((here.0 >> shift) & 63) as usize]));
    }
    for b in random {
        s.push(char::from(ALPHABET[usize::from(b & 63)]));
    }
    s
}

/// The locator a session id carries, if it is shaped like one of ours.
pub fn sid_locator(sid: &str) -> Option<Locator> {
    let b = sid.as_bytes();
    if b.len() != 20 || !b.iter().all(|c| ALPHABET.contains(c)) {
        return None;
    }
    let pos = |c: u8| ALPHABET.iter().position(|&a| a == c).map(|p| p as u32);
    let mut loc = 0;
    for &c in &b[..4] {
        loc = (loc << 6) | pos(c)?;
    }
    Some(Locator(loc))
}

/// The query string as percent-decoded pairs, in order (`+` is a space, as Node's
/// `querystring` reads it). Pairs that do not decode are skipped.
pub fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = query else { return Vec::new() };
    q.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| crate::proto::http::percent_decode(&s.replace('+', " "));
            Some((dec(k)?, dec(v)?))
        })
        .collect()
}

/// The value of `name` in decoded query pairs.
pub fn query_get<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// What a `/socket.io/` request asks for, from its query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub websocket: bool,
    pub sid: Option<String>,
    pub query: Vec<(String, String)>,
}

/// Check the Engine.IO parameters of a `/socket.io/` request: `EIO` must be 3 (absent is
/// read as 3, as engine.io 3 does), `transport` must be `polling` or `websocket`.
pub fn parse_request(query: Option<&str>) -> Result<Request, packet::EioError> {
    let q = parse_query(query);
    match query_get(&q, "EIO") {
        None | Some("3") => {}
        Some(_) => return Err(packet::EioError::UnsupportedProtocolVersion),
    }
    let websocket = match query_get(&q, "transport") {
        Some("polling") => false,
        Some("websocket") => true,
        _ => return Err(packet::EioError::UnknownTransport),
    };
    let sid = query_get(&q, "sid").map(str::to_owned);
    Ok(Request {
        websocket,
        sid,
        query: q,
    })
}

/// True for the layer's path.
pub fn claims(path: &str) -> bool {
    matches!(path, "/socket.io/" | "/socket.io")
}

/// The layer's options beyond the session table's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineOptions {
    pub sessions: Options,
    /// Largest polling POST body.
    pub max_http_buffer: usize,
}

/// The Engine.IO / Socket.IO layer as a dialect.
pub struct Engine<A: Apps> {
    sessions: Sessions<A>,
    max_http_buffer: usize,
}

impl<A: Apps> Engine<A> {
    pub fn new(opts: EngineOptions, apps: A) -> Self {
        Engine {
            sessions: Sessions::new(opts.sessions, apps),
            max_http_buffer: opts.max_http_buffer,
        }
    }

    pub fn sessions(&self) -> &Sessions<A> {
        &self.sessions
    }

    /// The longest a poll may be held: the session's own deadline comes first.
    fn hold_until(&self, now: u64) -> u64 {
        let apps = self.sessions.apps();
        let longest = (0..apps.count())
            .map(|a| apps.ping_timeout_ms(a))
            .max()
            .unwrap_or(0);
        now + self.sessions.options().ping_interval_ms + longest + HOLD_SLACK_MS
    }

    fn refuse(e: EioError, head: &RequestHead) -> Answer {
        Answer::Respond(error_response(e, head.origin.as_deref()))
    }

    /// A handshake the table does not take: no such dialect here (a bad request), or the
    /// table is full (503, so clients back off and retry).
    fn refuse_handshake(r: Refused, head: &RequestHead) -> Answer {
        match r {
            Refused::Full => Answer::Respond(http_response(
                503,
                "text/plain; charset=utf-8",
                "too many Socket.IO sessions; try again later".into(),
                head.origin.as_deref(),
            )),
            Refused::NoDialect | Refused::Taken => Self::refuse(EioError::BadRequest, head),
        }
    }
}

/// The CORS preflight (clients with extra headers): any origin.
fn preflight(head: &RequestHead) -> Response {
    let mut r = http_response(204, "text/plain", String::new(), head.origin.as_deref());
    r.headers.push((
        "Access-Control-Allow-Methods".into(),
        "GET, POST, OPTIONS".into(),
    ));
    r.headers.push((
        "Access-Control-Allow-Headers".into(),
        "Content-Type, Authorization, X-Requested-With".into(),
    ));
    r.headers
        .push(("Access-Control-Max-Age".into(), "86400".into()));
    r
}

impl<A: Apps> Dialect for Engine<A> {
    fn place(&self, head: &RequestHead, _rand: &mut dyn Random) -> Placement {
        let origin = head.origin.as_deref();
        if head.method == Method::Options && head.upgrade.is_none() {
            return Placement::Answer(preflight(head));
        }
        let req = match parse_request(head.query.as_deref()) {
            Ok(r) => r,
            Err(e) => return Placement::Answer(error_response(e, origin)),
        };
        match &req.sid {
            Some(sid) => match sid_locator(sid) {
                Some(loc) => Placement::At(loc),
                None => Placement::Answer(error_response(EioError::UnknownSid, origin)),
            },
            // Not even HEAD: its answer would be dropped with the body it carries.
            None if head.method != Method::Get => {
                Placement::Answer(error_response(EioError::BadHandshakeMethod, origin))
            }
            None => match self.sessions.apps().pick(&req.query) {
                Some((_, key)) => Placement::Key(key.into()),
                None => Placement::Answer(error_response(EioError::BadRequest, origin)),
            },
        }
    }

    fn on_request(
        &mut self,
        cx: &mut Cx<'_>,
        conn: Handle,
        _key: Option<&str>,
        head: &RequestHead,
    ) -> Answer {
        let origin = head.origin.as_deref();
        let req = match parse_request(head.query.as_deref()) {
            Ok(r) => r,
            Err(e) => return Self::refuse(e, head),
        };
        if req.websocket && head.upgrade.is_none() {
            return Self::refuse(EioError::BadRequest, head);
        }
        let answer = match req.sid {
            Some(sid) if req.websocket => match self.sessions.can_upgrade(&sid) {
                Ok(()) => {
                    self.sessions.ws_attach(cx.now, &sid, conn);
                    Answer::Upgrade
                }
                Err(e) => Self::refuse(e, head),
            },
            Some(sid) => match head.method {
                // A poll's answer takes the queued packets: HEAD would lose them.
                Method::Get => match self.sessions.poll_get(&sid, conn, origin) {
                    Ok(PollGet::Answer(r)) => Answer::Respond(r),
                    Ok(PollGet::Hold) => Answer::Hold {
                        until_ms: self.hold_until(cx.now),
                        fallback: http_response(
                            200,
                            "text/plain; charset=UTF-8",
                            "1:6".into(),
                            origin,
                        ),
                    },
                    Err(e) => Self::refuse(e, head),
                },
                Method::Post => Answer::ReadBody {
                    max: self.max_http_buffer,
                },
                _ => Self::refuse(EioError::BadRequest, head),
            },
            None => {
                let Some((app, _)) = self.sessions.apps().pick(&req.query) else {
                    return Self::refuse(EioError::BadRequest, head);
                };
                if let Err(r) = self.sessions.can_create(app) {
                    return Self::refuse_handshake(r, head);
                }
                let sid = mint_sid(cx.here, &cx.random::<16>());
                if req.websocket {
                    match self.sessions.handshake_ws(cx, &sid, app, &req.query, conn) {
                        Ok(()) => Answer::Upgrade,
                        Err(r) => Self::refuse_handshake(r, head),
                    }
                } else {
                    match self
                        .sessions
                        .handshake_polling(cx, &sid, app, &req.query, origin)
                    {
                        Ok(r) => Answer::Respond(r),
                        Err(r) => Self::refuse_handshake(r, head),
                    }
                }
            }
        };
        self.sessions.flush(cx);
        answer
    }

    fn on_body(
        &mut self,
        cx: &mut Cx<'_>,
        _conn: Handle,
        head: &RequestHead,
        body: &[u8],
    ) -> Answer {
        let origin = head.origin.as_deref();
        let sid = match parse_request(head.query.as_deref()) {
            Ok(r) => r.sid,
            Err(e) => return Self::refuse(e, head),
        };
        let Some(sid) = sid else {
            return Self::refuse(EioError::BadRequest, head);
        };
        let r = match self.sessions.poll_post(cx, &sid, body) {
            Ok(()) => http_response(200, "text/html", "ok".into(), origin),
            Err(e) => error_response(e, origin),
        };
        self.sessions.flush(cx);
        Answer::Respond(r)
    }

    fn on_message(&mut self, cx: &mut Cx<'_>, conn: Handle, msg: Message<'_>) {
        let text = match msg {
            Message::Text(text) => Some(text),
            Message::Binary(_) => None,
        };
        self.sessions.ws_message(cx, conn, text);
        self.sessions.flush(cx);
    }

    fn on_close(&mut self, cx: &mut Cx<'_>, conn: Handle) {
        self.sessions.conn_gone(cx, conn);
        self.sessions.flush(cx);
    }

    fn on_timeout(&mut self, cx: &mut Cx<'_>) {
        self.sessions.tick(cx);
        self.sessions.flush(cx);
    }

    fn poll_timeout(&self) -> Option<u64> {
        self.sessions.next_deadline()
    }

    fn gauge(&self) -> u64 {
        self.sessions.len() as u64
    }

    fn metrics(&self, out: &mut [u64]) {
        if let Some((sessions, rest)) = out.split_first_mut() {
            *sessions = self.gauge();
            self.sessions.apps().metrics(rest);
        }
    }
}

#[cfg(test)]
mod tests;
