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

use super::HandleMap;
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
    match plan(body, new_id) {
        Err(reply) => reply,
        Ok(call) => {
            let outcome = call.run(table, now);
            call.reply(outcome)
        }
    }
}

/// Which store operation a method is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Offer,
    Answer,
    Candidate,
    GetOffer,
    GetAnswer,
    GetCandidates,
}

impl Op {
    const ALL: [Op; 7] = [
        Op::Create,
        Op::Offer,
        Op::Answer,
        Op::Candidate,
        Op::GetOffer,
        Op::GetAnswer,
        Op::GetCandidates,
    ];

    /// Its name in the store's wire form ([`Call::encode`]).
    pub fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Offer => "offer",
            Op::Answer => "answer",
            Op::Candidate => "candidate",
            Op::GetOffer => "get_offer",
            Op::GetAnswer => "get_answer",
            Op::GetCandidates => "get_candidates",
        }
    }
}

/// A method call, checked, ready for the store.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub op: Op,
    pub id: Id,
    /// The id as the reply writes it (a new channel's).
    pub id_text: String,
    pub value: Option<Value>,
    /// Bytes charged for a write: the request's size.
    pub cost: usize,
}

/// What the store did with a [`Call`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    NotFound,
    /// The answer (or, for a new channel, the id) is already there.
    Exists,
    /// A limit is reached.
    Full,
    /// The offer or answer read, as JSON text (`None`: not set).
    Value(Option<String>),
    /// The candidates read, as JSON texts.
    Values(Vec<String>),
}

/// Check a request body: the call it makes, or the reply it gets at once (`echo` and every
/// error found before the store is consulted).
pub fn plan(body: &[u8], new_id: &mut dyn FnMut() -> String) -> Result<Call, Reply> {
    let req = match Value::parse(body) {
        Some(v @ Value::Object(_)) => v,
        _ => return Err(error(NOT_RPC)),
    };
    let method = match req.get("method") {
        None => return Err(error(NOT_RPC)),
        Some(Value::String(m)) => m.as_str(),
        Some(other) => {
            return Err(Reply::Error(format!(
                "unknown method {}",
                other.to_py_json()
            )))
        }
    };
    let cost = body.len();
    let write = |op: Op, name: &str| -> Result<Call, Reply> {
        let (id, value) = params(&req, name)?;
        Ok(Call {
            op,
            id,
            id_text: String::new(),
            value: Some(value),
            cost,
        })
    };
    let read = |op: Op| -> Result<Call, Reply> {
        Ok(Call {
            op,
            id: channel(&req)?,
            id_text: String::new(),
            value: None,
            cost,
        })
    };
    match method {
        "create_data_channel" => {
            let id_text = new_id();
            let Some(id) = parse_id(&id_text) else {
                return Err(error("try again!"));
            };
            Ok(Call {
                op: Op::Create,
                id,
                id_text,
                value: None,
                cost,
            })
        }
        "create_offer" => write(Op::Offer, "offer"),
        "create_answer" => write(Op::Answer, "answer"),
        "create_candidate" => write(Op::Candidate, "candidate"),
        "get_offer" => read(Op::GetOffer),
        "get_answer" => read(Op::GetAnswer),
        "get_candidates" => read(Op::GetCandidates),
        "echo" => Err(Reply::Json(req.to_py_json())),
        other => {
            let mut msg = String::from("unknown method ");
            msg.push_str(other);
            Err(Reply::Error(msg))
        }
    }
}

impl Call {
    /// Do it on a table in this process.
    pub fn run(&self, table: &dyn Channels, now: u64) -> Outcome {
        let wrote = |r: WriteResult| match r {
            Ok(()) => Outcome::Done,
            Err(WriteError::NotFound) => Outcome::NotFound,
            Err(WriteError::AnswerExists) | Err(WriteError::Exists) => Outcome::Exists,
            Err(WriteError::Full) => Outcome::Full,
        };
        let value = || self.value.clone().unwrap_or(Value::Null);
        match self.op {
            Op::Create => wrote(table.create(self.id, now)),
            Op::Offer => wrote(table.set_offer(&self.id, value(), self.cost, now)),
            Op::Answer => wrote(table.set_answer(&self.id, value(), self.cost, now)),
            Op::Candidate => wrote(table.add_candidate(&self.id, value(), self.cost, now)),
            Op::GetOffer | Op::GetAnswer => {
                let mut found = None;
                let exists = table.read_with(&self.id, now, &mut |c| {
                    let v = if self.op == Op::GetOffer {
                        &c.offer
                    } else {
                        &c.answer
                    };
                    found = v.as_ref().map(Value::to_py_json);
                });
                match exists {
                    true => Outcome::Value(found),
                    false => Outcome::NotFound,
                }
            }
            Op::GetCandidates => {
                let mut items = Vec::new();
                let exists = table.read_with(&self.id, now, &mut |c| {
                    items = c.candidates.iter().map(Value::to_py_json).collect();
                });
                match exists {
                    true => Outcome::Values(items),
                    false => Outcome::NotFound,
                }
            }
        }
    }

    /// The reply for what the store did.
    pub fn reply(&self, outcome: Outcome) -> Reply {
        match (self.op, outcome) {
            (Op::Create, Outcome::Done) => {
                let mut out = String::from("{\"channel_id\": ");
                json::write_py_str(&self.id_text, &mut out);
                out.push('}');
                Reply::Json(out)
            }
            (Op::Create, _) => error("try again!"),
            (_, Outcome::NotFound) => error("channel_id not found"),
            (Op::Offer | Op::Answer | Op::Candidate, Outcome::Done) => Reply::Empty,
            (Op::Answer, Outcome::Exists) => error("answer already exist"),
            (Op::Offer, _) => error("fail to create offer"),
            (Op::Answer, _) => error("fail to create answer"),
            (Op::Candidate, _) => error("fail to create candidate"),
            (Op::GetOffer | Op::GetAnswer, Outcome::Value(found)) => {
                let name = if self.op == Op::GetOffer {
                    "offer"
                } else {
                    "answer"
                };
                match found {
                    None => Reply::Error(format!("{name} not found")),
                    Some(v) => Reply::Json(format!("{{\"{name}\": {v}}}")),
                }
            }
            (Op::GetCandidates, Outcome::Values(items)) => {
                Reply::Json(format!("{{\"items\": [{}]}}", items.join(", ")))
            }
            // A store that answered a read with something else.
            (_, _) => Reply::Error("store error".to_string()),
        }
    }

    /// The call as an outside store reads it: the operation's name, the channel id as 32 hex
    /// digits, the cost, and the value's JSON text (fields separated by a newline, which JSON
    /// text and the others never contain unescaped).
    pub fn encode(&self) -> Vec<u8> {
        let mut s = String::with_capacity(64);
        s.push_str(self.op.name());
        s.push('\n');
        s.push_str(&super::hex(&self.id));
        s.push('\n');
        s.push_str(&self.cost.to_string());
        s.push('\n');
        if let Some(v) = &self.value {
            v.write_py(&mut s);
        }
        s.into_bytes()
    }
}

/// A [`Call::encode`]d call: operation, channel key, cost, value text.
pub fn decode_call(b: &[u8]) -> Option<(Op, &str, usize, &str)> {
    let s = std::str::from_utf8(b).ok()?;
    let mut parts = s.splitn(4, '\n');
    let name = parts.next()?;
    let op = Op::ALL.into_iter().find(|o| o.name() == name)?;
    let key = parts.next().filter(|k| k.len() == 32)?;
    let cost = parts.next()?.parse().ok()?;
    Some((op, key, cost, parts.next()?))
}

impl Outcome {
    /// The outcome as an outside store reports it (to [`Outcome::decode`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        match self {
            Outcome::Done => b.push(0),
            Outcome::NotFound => b.push(1),
            Outcome::Exists => b.push(2),
            Outcome::Full => b.push(3),
            Outcome::Value(None) => b.push(4),
            Outcome::Value(Some(v)) => {
                b.push(5);
                b.extend_from_slice(v.as_bytes());
            }
            Outcome::Values(items) => {
                b.push(6);
                for v in items {
                    b.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    b.extend_from_slice(v.as_bytes());
                }
            }
        }
        b
    }

    pub fn decode(b: &[u8]) -> Option<Outcome> {
        let (tag, rest) = b.split_first()?;
        let text = |r: &[u8]| String::from_utf8(r.to_vec()).ok();
        Some(match tag {
            0 => Outcome::Done,
            1 => Outcome::NotFound,
            2 => Outcome::Exists,
            3 => Outcome::Full,
            4 => Outcome::Value(None),
            5 => Outcome::Value(Some(text(rest)?)),
            6 => {
                let mut items = Vec::new();
                let mut r = rest;
                while !r.is_empty() {
                    let n = u32::from_le_bytes(r.get(..4)?.try_into().ok()?) as usize;
                    items.push(text(r.get(4..4 + n)?)?);
                    r = &r[4 + n..];
                }
                Outcome::Values(items)
            }
            _ => return None,
        })
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

/// The HTTP API as a dialect. `store` is the channel table every instance shares, or, when
/// the channels live outside the process ([`HttpApi::outside`]), where its metrics go: calls
/// then go out as [`super::Output::Store`] while their requests wait.
pub struct HttpApi {
    store: Box<dyn Channels + Send>,
    cors: Cors,
    max_body: usize,
    /// `Some(wait)`: the channels are in the outside store; a request waits this long (ms).
    outside: Option<u64>,
    /// Requests waiting for the outside store, with what their reply needs.
    waiting: HandleMap<Waiting>,
}

/// A request waiting for the outside store.
struct Waiting {
    call: Call,
    origin: Option<String>,
}

impl HttpApi {
    pub fn new(store: Box<dyn Channels + Send>, cors: Cors, max_body: usize) -> Self {
        HttpApi {
            store,
            cors,
            max_body,
            outside: None,
            waiting: Default::default(),
        }
    }

    /// Keep the channels in the outside store (a cluster's Redis): each call waits for it, at
    /// most `wait_ms` (then 503). `metrics` still counts the answers.
    pub fn outside(
        metrics: Box<dyn Channels + Send>,
        cors: Cors,
        max_body: usize,
        wait_ms: u64,
    ) -> Self {
        HttpApi {
            outside: Some(wait_ms),
            ..HttpApi::new(metrics, cors, max_body)
        }
    }

    fn respond(&self, origin: Option<&str>, reply: Reply) -> Response {
        self.store.answered(reply.status() == 200);
        let mut r = Response::new(reply.status(), reply.content_type(), reply.into_body());
        self.cors_headers(origin, &mut r);
        r
    }

    fn cors_headers(&self, origin: Option<&str>, r: &mut Response) {
        let origin = match &self.cors {
            Cors::Any => Some("*".to_string()),
            Cors::Off => None,
            Cors::Origins(list) => origin
                .filter(|o| list.iter().any(|l| l == *o))
                .map(str::to_string),
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
        self.cors_headers(head.origin.as_deref(), &mut r);
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
                self.cors_headers(req.origin.as_deref(), &mut r);
                Answer::Respond(r)
            }
        }
    }

    fn on_body(&mut self, cx: &mut Cx<'_>, conn: Handle, req: &RequestHead, body: &[u8]) -> Answer {
        let rand = &mut *cx.rand;
        let origin = req.origin.as_deref();
        let call = match plan(body, &mut || uuid_v4(rand)) {
            Ok(call) => call,
            Err(reply) => return Answer::Respond(self.respond(origin, reply)),
        };
        let Some(wait_ms) = self.outside else {
            let outcome = call.run(&*self.store, cx.unix_ms);
            return Answer::Respond(self.respond(origin, call.reply(outcome)));
        };
        cx.store(conn, &call.encode());
        let call = Call {
            value: None,
            ..call
        };
        let origin = req.origin.clone();
        self.waiting.insert(conn, Waiting { call, origin });
        let mut fallback = Response::text(503, "the channel store did not answer in time");
        self.cors_headers(req.origin.as_deref(), &mut fallback);
        Answer::Hold {
            until_ms: cx.now + wait_ms,
            fallback,
        }
    }

    fn on_stored(&mut self, cx: &mut Cx<'_>, conn: Handle, result: &[u8]) {
        let Some(w) = self.waiting.remove(&conn) else {
            return;
        };
        let r = match Outcome::decode(result) {
            Some(outcome) => self.respond(w.origin.as_deref(), w.call.reply(outcome)),
            None => {
                self.store.answered(false);
                let mut r = Response::text(503, "the channel store is unavailable; try again");
                self.cors_headers(w.origin.as_deref(), &mut r);
                r
            }
        };
        cx.respond(conn, r);
    }

    fn on_close(&mut self, _cx: &mut Cx<'_>, conn: Handle) {
        self.waiting.remove(&conn);
    }
}

#[cfg(test)]
mod tests;
