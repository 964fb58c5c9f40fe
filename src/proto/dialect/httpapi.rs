//! The AWS-Lambda-style HTTP signaling API (PROTOCOLS.md §3): one `POST` endpoint whose JSON
//! body names a `method`; channels of one offer, one answer and a shared candidate list live
//! in a [`store::Table`] for a fixed time from creation.
//!
//! [`handle`] is the whole protocol: request body and `now` in, status and body out. What it
//! owns: every method, every error text, the order of the checks, and the response bodies as
//! the original's `simplejson.dumps` writes them. What it does not own: HTTP (the connection
//! machine reads the body, the shell adds CORS headers and answers preflights), the clock and
//! the ids (passed in), and the file the durability records go to (`net::api`).
//!
//! Decisions (§3.4 RECOMMEND): writes to an unknown or expired channel are `channel_id not
//! found`; a candidate equal (as JSON) to a stored one is skipped with a 200; values are stored
//! as JSON and returned unchanged; a second offer replaces the first; a body that is not a JSON
//! object with a `method` key is `Not a valid rpc…`; a non-string method is written as its JSON
//! text; a non-string channel id is `channel_id not found`; a `null` parameter is present.
//! Limits (channels, bytes, candidates per channel) answer with the original's failure texts:
//! `try again!` for a new channel, `fail to create <offer|answer|candidate>` for a write.
//!
//! [`HttpApi`] is the dialect: a `POST` is placed where it was read (every instance sees the
//! one store through [`Channels`]), its body is read, and [`handle`] answers it; CORS and the
//! preflight are answered here too.

pub mod json;
pub mod store;

use super::{uuid_v4, Answer, Cx, Dialect, Handle, Placement, Random};
use crate::proto::http::{Method, RequestHead, Response};

use json::Value;
use store::{parse_id, Channel, Id, WriteError, WriteResult};

/// The channel store as the API sees it (the single-threaded [`store::Table`], or the server's
/// table shared by its reactors).
pub trait Channels {
    /// Create channel `id`, living from `now` for the store's TTL.
    fn create(&self, id: Id, now: u64) -> Result<(), WriteError>;
    /// Run `f` on live channel `id`; false if there is none.
    fn read_with(&self, id: &Id, now: u64, f: &mut dyn FnMut(&Channel)) -> bool;
    /// Store `value` as the offer (replacing any), charging `cost` bytes.
    fn set_offer(&self, id: &Id, value: Value, cost: usize, now: u64) -> WriteResult;
    /// Store `value` as the answer, unless there is one.
    fn set_answer(&self, id: &Id, value: Value, cost: usize, now: u64) -> WriteResult;
    /// Append `value` to the candidates unless an equal one is there (still `Ok`).
    fn add_candidate(&self, id: &Id, value: Value, cost: usize, now: u64) -> WriteResult;
    /// A method call was answered (200 when `ok`, else an error): for the store's metrics.
    fn answered(&self, ok: bool) {
        let _ = ok;
    }
}

/// The error for a body that is not a JSON object with a `method` key.
pub const NOT_RPC: &str = "Not a valid rpc. HTTP post body must be a json object with method key";
/// The error for a request method other than POST (and OPTIONS, the CORS preflight).
pub const ONLY_POST: &str = "Only accept POST method";

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// 200, `application/json`, this body.
    Json(String),
    /// 200, `text/plain`, empty body.
    Empty,
    /// 400, `text/plain`, this message.
    Error(String),
}

impl Reply {
    pub fn status(&self) -> u16 {
        match self {
            Reply::Json(_) | Reply::Empty => 200,
            Reply::Error(_) => 400,
        }
    }

    pub fn content_type(&self) -> &'static str {
        match self {
            Reply::Json(_) => "application/json",
            Reply::Empty | Reply::Error(_) => "text/plain",
        }
    }

    pub fn into_body(self) -> Vec<u8> {
        match self {
            Reply::Json(s) | Reply::Error(s) => s.into_bytes(),
            Reply::Empty => Vec::new(),
        }
    }
}

fn error(msg: &str) -> Reply {
    Reply::Error(msg.to_string())
}

/// Answer one request `body` at `now` (milliseconds since the UNIX epoch). `new_id` makes a
/// channel id (a random UUIDv4 in the server).
pub fn handle(
    table: &dyn Channels,
    now: u64,
    body: &[u8],
    new_id: &mut dyn FnMut() -> String,
) -> Reply {
    let req = match Value::parse(body) {
        Some(v @ Value::Object(_)) => v,
        _ => return error(NOT_RPC),
    };
    let method = match req.get("method") {
        None => return error(NOT_RPC),
        Some(Value::String(m)) => m.as_str(),
        Some(other) => return Reply::Error(format!("unknown method {}", other.to_py_json())),
    };
    let cost = body.len();
    match method {
        "create_data_channel" => {
            let id = new_id();
            let Some(key) = parse_id(&id) else {
                return error("try again!");
            };
            match table.create(key, now) {
                Ok(()) => {
                    let mut out = String::from("{\"channel_id\": ");
                    json::write_py_str(&id, &mut out);
                    out.push('}');
                    Reply::Json(out)
                }
                Err(_) => error("try again!"),
            }
        }
        "create_offer" => {
            let (key, value) = match params(&req, "offer") {
                Ok(p) => p,
                Err(r) => return r,
            };
            match table.set_offer(&key, value, cost, now) {
                Ok(()) => Reply::Empty,
                Err(WriteError::NotFound) => error("channel_id not found"),
                Err(_) => error("fail to create offer"),
            }
        }
        "create_answer" => {
            let (key, value) = match params(&req, "answer") {
                Ok(p) => p,
                Err(r) => return r,
            };
            match table.set_answer(&key, value, cost, now) {
                Ok(()) => Reply::Empty,
                Err(WriteError::NotFound) => error("channel_id not found"),
                Err(WriteError::AnswerExists) => error("answer already exist"),
                Err(_) => error("fail to create answer"),
            }
        }
        "create_candidate" => {
            let (key, value) = match params(&req, "candidate") {
                Ok(p) => p,
                Err(r) => return r,
            };
            match table.add_candidate(&key, value, cost, now) {
                Ok(()) => Reply::Empty,
                Err(WriteError::NotFound) => error("channel_id not found"),
                Err(_) => error("fail to create candidate"),
            }
        }
        "get_offer" | "get_answer" => {
            let key = match channel(&req) {
                Ok(k) => k,
                Err(r) => return r,
            };
            let (name, missing) = match method {
                "get_offer" => ("offer", "offer not found"),
                _ => ("answer", "answer not found"),
            };
            let mut found = None;
            let exists = table.read_with(&key, now, &mut |c| {
                let v = if name == "offer" { &c.offer } else { &c.answer };
                found = v.as_ref().map(|v| {
                    let mut out = format!("{{\"{name}\": ");
                    v.write_py(&mut out);
                    out.push('}');
                    out
                })
            });
            match (exists, found) {
                (false, _) => error("channel_id not found"),
                (true, None) => error(missing),
                (true, Some(out)) => Reply::Json(out),
            }
        }
        "get_candidates" => {
            let key = match channel(&req) {
                Ok(k) => k,
                Err(r) => return r,
            };
            let mut out = String::from("{\"items\": [");
            let exists = table.read_with(&key, now, &mut |c| {
                for (i, v) in c.candidates.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.write_py(&mut out);
                }
            });
            out.push_str("]}");
            match exists {
                false => error("channel_id not found"),
                true => Reply::Json(out),
            }
        }
        "echo" => Reply::Json(req.to_py_json()),
        other => {
            let mut msg = String::from("unknown method ");
            msg.push_str(other);
            Reply::Error(msg)
        }
    }
}

/// `channel_id`: present (else `channel_id is required`), a string naming a possible channel
/// (else `channel_id not found`).
fn channel(req: &Value) -> Result<store::Id, Reply> {
    match req.get("channel_id") {
        None => Err(error("channel_id is required")),
        Some(Value::String(s)) => parse_id(s).ok_or_else(|| error("channel_id not found")),
        Some(_) => Err(error("channel_id not found")),
    }
}

/// `channel_id` and the value parameter `name`, both required (in that order).
fn params(req: &Value, name: &str) -> Result<(store::Id, Value), Reply> {
    if req.get("channel_id").is_none() {
        return Err(error("channel_id is required"));
    }
    let Some(value) = req.get(name) else {
        return Err(Reply::Error(format!("{name} is required")));
    };
    let key = channel(req)?;
    Ok((key, value.clone()))
}

// ── the dialect ───────────────────────────────────────────────────────────────────────────

/// Which cross-origin requests the API answers with CORS headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// `*`.
    Any,
    /// No CORS headers.
    Off,
    /// These origins (a listed request `Origin` is echoed).
    Origins(Vec<String>),
}

impl Cors {
    /// `*`, `none`, or comma-separated origins.
    pub fn parse(s: &str) -> Cors {
        match s.trim() {
            "*" => Cors::Any,
            "none" => Cors::Off,
            list => Cors::Origins(
                list.split(',')
                    .map(|o| o.trim().to_string())
                    .filter(|o| !o.is_empty())
                    .collect(),
            ),
        }
    }
}

/// The HTTP API as a dialect. `store` is the channel table every instance shares.
pub struct HttpApi {
    store: Box<dyn Channels + Send>,
    cors: Cors,
    max_body: usize,
}

impl HttpApi {
    pub fn new(store: Box<dyn Channels + Send>, cors: Cors, max_body: usize) -> Self {
        HttpApi {
            store,
            cors,
            max_body,
        }
    }

    fn cors_headers(&self, head: &RequestHead, r: &mut Response) {
        let origin = match &self.cors {
            Cors::Any => Some("*".to_string()),
            Cors::Off => None,
            Cors::Origins(list) => head
                .origin
                .as_ref()
                .filter(|o| list.iter().any(|l| l == *o))
                .cloned(),
        };
        if let Some(origin) = origin {
            r.headers
                .push(("Access-Control-Allow-Origin".into(), origin));
        }
        if let Cors::Origins(_) = self.cors {
            r.headers.push(("Vary".into(), "Origin".to_string()));
        }
    }

    /// `OPTIONS`: 204 with the CORS preflight answer (POST, any request header but
    /// credentials).
    fn preflight(&self, head: &RequestHead) -> Response {
        let mut r = Response::new(204, "text/plain", Vec::new());
        r.headers
            .push(("Allow".into(), "POST, OPTIONS".to_string()));
        self.cors_headers(head, &mut r);
        if self.cors != Cors::Off {
            r.headers.push((
                "Access-Control-Allow-Methods".into(),
                "POST, OPTIONS".to_string(),
            ));
            r.headers.push((
                "Access-Control-Allow-Headers".into(),
                "*, Authorization, Content-Type".to_string(),
            ));
            r.headers
                .push(("Access-Control-Max-Age".into(), "86400".to_string()));
        }
        r
    }
}

impl Dialect for HttpApi {
    fn place(&self, _req: &RequestHead, _rand: &mut dyn Random) -> Placement {
        Placement::Here
    }

    fn on_request(
        &mut self,
        _cx: &mut Cx<'_>,
        _conn: Handle,
        _key: Option<&str>,
        req: &RequestHead,
    ) -> Answer {
        match req.method {
            Method::Post => Answer::ReadBody { max: self.max_body },
            Method::Options => Answer::Respond(self.preflight(req)),
            _ => {
                let mut r = Response::new(400, "text/plain", ONLY_POST);
                self.cors_headers(req, &mut r);
                Answer::Respond(r)
            }
        }
    }

    fn on_body(
        &mut self,
        cx: &mut Cx<'_>,
        _conn: Handle,
        req: &RequestHead,
        body: &[u8],
    ) -> Answer {
        let rand = &mut *cx.rand;
        let reply = handle(&*self.store, cx.unix_ms, body, &mut || uuid_v4(rand));
        self.store.answered(reply.status() == 200);
        let mut r = Response::new(reply.status(), reply.content_type(), reply.into_body());
        self.cors_headers(req, &mut r);
        Answer::Respond(r)
    }
}

#[cfg(test)]
mod tests;
