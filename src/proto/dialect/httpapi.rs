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

pub mod json;
pub mod store;

use json::Value;
use store::{parse_id, Table, WriteError};

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
pub fn handle(table: &Table, now: u64, body: &[u8], new_id: &mut dyn FnMut() -> String) -> Reply {
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
            let found = table.read(&key, now, |c| {
                let v = if name == "offer" { &c.offer } else { &c.answer };
                v.as_ref().map(|v| {
                    let mut out = format!("{{\"{name}\": ");
                    v.write_py(&mut out);
                    out.push('}');
                    out
                })
            });
            match found {
                None => error("channel_id not found"),
                Some(None) => error(missing),
                Some(Some(out)) => Reply::Json(out),
            }
        }
        "get_candidates" => {
            let key = match channel(&req) {
                Ok(k) => k,
                Err(r) => return r,
            };
            let found = table.read(&key, now, |c| {
                let mut out = String::from("{\"items\": [");
                for (i, v) in c.candidates.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.write_py(&mut out);
                }
                out.push_str("]}");
                out
            });
            match found {
                None => error("channel_id not found"),
                Some(out) => Reply::Json(out),
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

#[cfg(test)]
mod tests;
