//! Engine.IO 3 / Socket.IO 2, in-house and sans-I/O (PROTOCOLS.md §6): packets and the v3
//! polling payload ([`packet`]), the per-core session table with its transports, heartbeats,
//! upgrade and rooms ([`session`]), and the request-level decisions the shell needs
//! (which dialect a handshake speaks, which core owns a session).
//!
//! Session ids are 20 characters of the URL-safe base64 alphabet: the first two name the
//! core that owns the session, the other 18 come from the CSPRNG (108 bits). A request that
//! names a session is moved to that core; a handshake is placed on the core owning its
//! dialect's key (all webRTWorkspaces sockets on one core, a MewConnect v1 pair on the owner
//! of `mewv1/<connId>`), and its id is minted for that core.

pub mod echo;
pub mod packet;
pub mod session;

pub use session::{Kind, Options, PollGet, Refused, Sessions, Wire};

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Most cores a session id can name.
pub const MAX_CORES: usize = 64 * 64;

/// A session id for `core` from 18 random bytes (each reduced to one character).
pub fn mint_sid(core: usize, random: &[u8; 18]) -> String {
    let core = core % MAX_CORES;
    let mut s = String::with_capacity(20);
    s.push(char::from(ALPHABET[core / 64]));
    s.push(char::from(ALPHABET[core % 64]));
    for b in random {
        s.push(char::from(ALPHABET[usize::from(b & 63)]));
    }
    s
}

/// The core a session id names, if it is shaped like one of ours.
pub fn sid_core(sid: &str) -> Option<usize> {
    let b = sid.as_bytes();
    if b.len() != 20 || !b.iter().all(|c| ALPHABET.contains(c)) {
        return None;
    }
    let pos = |c: u8| ALPHABET.iter().position(|&a| a == c);
    Some(pos(b[0])? * 64 + pos(b[1])?)
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

/// The dialect a handshake speaks (PROTOCOLS.md decisions, §6): a query with `stage` is
/// MewConnect v1, one with `echo` is the test dialect when `echo` is enabled, any other is
/// webRTWorkspaces. Also the key whose owner core hosts the session.
pub fn handshake_kind(q: &[(String, String)], echo: bool) -> (Kind, String) {
    if query_get(q, "stage").is_some() {
        let conn_id = query_get(q, "connId").unwrap_or("");
        return (Kind::MewV1, format!("mewv1/{conn_id}"));
    }
    if echo && query_get(q, "echo").is_some() {
        return (Kind::Echo, "sio/echo".into());
    }
    (Kind::Workspaces, "sio/workspaces".into())
}

#[cfg(test)]
mod tests;
