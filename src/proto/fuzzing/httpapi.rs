//! The `httpapi` fuzz target: the HTTP API's [`handle`] on arbitrary and client-shaped bodies
//! against a model of the store, and the durability log's record decoder and replay on
//! arbitrary bytes.
//!
//! Channel ids come from a pool of four (so `try again!` for an id in use happens); time moves
//! only in [`ApiOp::Advance`], after which the table is swept as the server does periodically,
//! so the limits are exact between advances. Checked:
//!
//! * [`handle`] never panics; every reply is a 200 with a JSON body that parses, a 200 with an
//!   empty body, or a 400 with one of the texts of PROTOCOLS.md §3.3 / §3.4
//!   (`unknown method <m>` for any `m`);
//! * for client-shaped bodies (a method, a `channel_id` of one of several kinds, a value from
//!   a list of JSON texts) the reply is exactly the model's: which error, and for the reads the
//!   body parsed back equals (as JSON) the value the model stored, `echo` equals the request;
//!   an equal candidate is skipped; the channel, candidate and byte limits hold. After a raw
//!   body the model re-reads the channels from the table and stops checking the byte limit
//!   (it cannot know what a raw write charged);
//! * the log: every record the decoder returns has a CRC that matches its payload and a length
//!   within bounds; [`Table::replay`] on arbitrary bytes never panics and stops exactly where
//!   the decoder first fails;
//! * at the end, the table's own log (and, separately, its snapshot) replayed into a fresh
//!   table gives channels whose values are written identically (so the writer's output parses
//!   back to what was stored); the log followed by garbage replays exactly the log's records
//!   plus those the garbage decodes to as a log of its own (none, unless it forges a CRC).
//!
//! The input: two setup bytes, then one tag byte and its fields per op, until the bytes run
//! out; [`encode_api_ops`] is the inverse, for writing seeds.

use std::collections::HashMap;

use arbitrary::{Arbitrary, Unstructured};

use super::Bytes;
use crate::proto::dialect::httpapi::json::Value;
use crate::proto::dialect::httpapi::store::{
    parse_id, parse_record, Crc32, Id, StoreLimits, Table, LOG_MAGIC, MAX_RECORD, RECORD_HEADER,
};
use crate::proto::dialect::httpapi::{handle, Reply, NOT_RPC};

/// Ops beyond this are ignored, to bound the time of one run.
const MAX_OPS: usize = 256;
const T0: u64 = 1_700_000_000_000;
const IDS: [&str; 4] = [
    "00000000-0000-4000-8000-000000000001",
    "9b2f0c3e-6a7e-4d0b-8f5e-2f6c0b1e6a11",
    "ffffffff-ffff-4fff-bfff-ffffffffffff",
    "0123abcd-0000-4000-8000-00000000beef",
];
const METHODS: [&str; 9] = [
    "create_data_channel",
    "create_offer",
    "get_offer",
    "create_candidate",
    "create_answer",
    "get_candidates",
    "get_answer",
    "echo",
    "bogus",
];
/// Values of `offer` / `answer` / `candidate`; the empty one means absent. Some are equal as
/// JSON (`1` and `1.0`, objects in another key order).
const VALUES: [&str; 12] = [
    r#""v=0\r\no=- 4 2 IN IP4 127.0.0.1""#,
    r#"{"candidate":"candidate:1 1 udp 2122260223 10.0.0.1 5000 typ host","sdpMid":"0"}"#,
    r#"{"sdpMid":"0","candidate":"candidate:1 1 udp 2122260223 10.0.0.1 5000 typ host"}"#,
    "1",
    "1.0",
    "null",
    r#"[1,{"a":"\u00e9\ud83d\ude00\u0001"},-2.5e-7,18446744073709551615]"#,
    r#"{"a":1,"a":2}"#,
    "",
    "123456789012345678901234567890",
    "true",
    r#""""#,
];

/// `limits`: `% 4 + 1` channels, `>> 2 & 3` candidates per channel, bytes from
/// `[256, 1024, 4096, 1 MiB][limits >> 4 & 3]`, TTL 1 s or 5 s (bit 6). `shards % 8 + 1`
/// shards (rounded up to a power of two by the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiSetup {
    pub limits: u8,
    pub shards: u8,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiOp {
    /// A request with this body.
    Raw(Bytes),
    /// `{"method": METHODS[method % 11], "channel_id": .., <name>: VALUES[value % 12]}`:
    /// method 9 is a number, 10 absent. `channel % 8`: `IDS[0..4]`, an uppercase UUID (not
    /// the canonical form), a number, absent, `null`; a created channel takes its id from the
    /// same choice (`IDS[channel]`, an invalid id from 4 on). `extra` adds an unknown field.
    Call {
        method: u8,
        channel: u8,
        value: u8,
        extra: bool,
    },
    /// Time passes by `ms * 16` milliseconds; then the table is swept.
    Advance { ms: u16 },
    /// Arbitrary bytes as a log file, with the magic in front when `magic`.
    Log { magic: bool, bytes: Vec<u8> },
    /// Bytes appended after the table's own log in the final check.
    Garbage(Bytes),
}

fn byte(u: &mut Unstructured<'_>) -> u8 {
    u8::arbitrary(u).unwrap_or(0)
}

fn short(u: &mut Unstructured<'_>) -> Bytes {
    Bytes::arbitrary(u).unwrap_or(Bytes(Vec::new()))
}

/// Decodes a fuzz input: the setup, then ops until the bytes run out (at most `MAX_OPS`).
pub fn decode_api_ops(data: &[u8]) -> (ApiSetup, Vec<ApiOp>) {
    let mut u = Unstructured::new(data);
    let setup = ApiSetup {
        limits: byte(&mut u),
        shards: byte(&mut u),
    };
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        let op = match byte(&mut u) % 5 {
            0 => ApiOp::Raw(short(&mut u)),
            1 => ApiOp::Call {
                method: byte(&mut u) % 11,
                channel: byte(&mut u) % 8,
                value: byte(&mut u) % 12,
                extra: byte(&mut u) & 1 == 1,
            },
            2 => ApiOp::Advance {
                ms: u16::from_le_bytes([byte(&mut u), byte(&mut u)]),
            },
            3 => {
                let magic = byte(&mut u) & 1 == 1;
                let len = usize::from(u16::from_le_bytes([byte(&mut u), byte(&mut u)]));
                let len = len.min(u.len());
                let bytes = u.bytes(len).unwrap_or_default().to_vec();
                ApiOp::Log { magic, bytes }
            }
            _ => ApiOp::Garbage(short(&mut u)),
        };
        ops.push(op);
    }
    (setup, ops)
}

/// The inverse of [`decode_api_ops`] for fields within their ranges (for writing seeds).
/// Byte strings are cut to 255 bytes (`Log` to 65535).
pub fn encode_api_ops(setup: ApiSetup, ops: &[ApiOp]) -> Vec<u8> {
    fn short(out: &mut Vec<u8>, b: &[u8]) {
        let b = &b[..b.len().min(255)];
        out.push(b.len() as u8);
        out.extend_from_slice(b);
    }
    let mut out = vec![setup.limits, setup.shards];
    for op in ops {
        match op {
            ApiOp::Raw(b) => {
                out.push(0);
                short(&mut out, &b.0);
            }
            &ApiOp::Call {
                method,
                channel,
                value,
                extra,
            } => out.extend([1, method, channel, value, u8::from(extra)]),
            ApiOp::Advance { ms } => {
                out.push(2);
                out.extend_from_slice(&ms.to_le_bytes());
            }
            ApiOp::Log { magic, bytes } => {
                let b = &bytes[..bytes.len().min(usize::from(u16::MAX))];
                out.extend([3, u8::from(*magic)]);
                out.extend_from_slice(&(b.len() as u16).to_le_bytes());
                out.extend_from_slice(b);
            }
            ApiOp::Garbage(b) => {
                out.push(4);
                short(&mut out, &b.0);
            }
        }
    }
    out
}

/// The body of a client-shaped call.
fn call_body(method: u8, channel: u8, value: u8, extra: bool) -> String {
    let mut fields = Vec::new();
    match method % 11 {
        9 => fields.push("\"method\":9".to_string()),
        10 => {}
        m => fields.push(format!("\"method\":\"{}\"", METHODS[usize::from(m)])),
    }
    match channel % 8 {
        c @ 0..=3 => fields.push(format!("\"channel_id\":\"{}\"", IDS[usize::from(c)])),
        4 => fields.push("\"channel_id\":\"9B2F0C3E-6A7E-4D0B-8F5E-2F6C0B1E6A11\"".into()),
        5 => fields.push("\"channel_id\":5".into()),
        6 => {}
        _ => fields.push("\"channel_id\":null".into()),
    }
    let v = VALUES[usize::from(value % 12)];
    if !v.is_empty() {
        let name = match METHODS.get(usize::from(method % 11)) {
            Some(&"create_answer" | &"get_answer") => "answer",
            Some(&"create_candidate" | &"get_candidates") => "candidate",
            _ => "offer",
        };
        fields.push(format!("\"{name}\":{v}"));
    }
    if extra {
        fields.push("\"x\":[{}]".into());
    }
    format!("{{{}}}", fields.join(","))
}

#[derive(Clone, Default)]
struct ChannelModel {
    offer: Option<Value>,
    answer: Option<Value>,
    candidates: Vec<Value>,
    charged: usize,
}

struct Model {
    limits: StoreLimits,
    channels: HashMap<Id, ChannelModel>,
    /// When each channel expires.
    expiry: HashMap<Id, u64>,
}

impl Model {
    fn bytes(&self) -> usize {
        self.channels.values().map(|c| c.charged).sum()
    }

    /// The expected reply to a client-shaped body at `now`, applied to the model; `Ok(Some(v))`
    /// for a JSON reply (the parsed body must equal `v`), `Ok(None)` for an empty one.
    fn expect(&mut self, body: &str, now: u64) -> Result<Option<Value>, String> {
        let cost = body.len();
        let req = Value::parse(body.as_bytes()).expect("a client-shaped body is JSON");
        let method = match req.get("method") {
            None => return Err(NOT_RPC.into()),
            Some(Value::String(m)) => m.clone(),
            Some(other) => return Err(format!("unknown method {}", other.to_py_json())),
        };
        let channel = |req: &Value| match req.get("channel_id") {
            None => Err("channel_id is required".to_string()),
            Some(Value::String(s)) => parse_id(s).ok_or("channel_id not found".to_string()),
            Some(_) => Err("channel_id not found".to_string()),
        };
        let object = |k: &str, v: Value| Value::Object(vec![(k.into(), v)]);
        match method.as_str() {
            "create_data_channel" => {
                // The id source follows `channel_id`'s choice (see `check_httpapi`).
                let Some(Value::String(s)) = req.get("channel_id") else {
                    return Err("try again!".into());
                };
                let Some(id) = parse_id(s) else {
                    return Err("try again!".into());
                };
                if self.channels.contains_key(&id)
                    || self.channels.len() >= self.limits.max_channels
                {
                    return Err("try again!".into());
                }
                self.channels.insert(id, ChannelModel::default());
                self.expiry.insert(id, now + self.limits.ttl_ms);
                Ok(Some(object("channel_id", Value::String(s.clone()))))
            }
            m @ ("create_offer" | "create_answer" | "create_candidate") => {
                let name = &m["create_".len()..];
                if req.get("channel_id").is_none() {
                    return Err("channel_id is required".into());
                }
                let Some(value) = req.get(name).cloned() else {
                    return Err(format!("{name} is required"));
                };
                let id = channel(&req)?;
                let bytes = self.bytes();
                let limits = self.limits;
                let Some(c) = self.channels.get_mut(&id) else {
                    return Err("channel_id not found".into());
                };
                let fail = || Err(format!("fail to create {name}"));
                match name {
                    "answer" if c.answer.is_some() => return Err("answer already exist".into()),
                    "candidate" if c.candidates.contains(&value) => return Ok(None),
                    "candidate" if c.candidates.len() >= limits.max_candidates => return fail(),
                    _ => {}
                }
                if bytes.saturating_add(cost) > limits.max_bytes {
                    return fail();
                }
                c.charged += cost;
                match name {
                    "offer" => c.offer = Some(value),
                    "answer" => c.answer = Some(value),
                    _ => c.candidates.push(value),
                }
                Ok(None)
            }
            m @ ("get_offer" | "get_answer") => {
                let name = &m["get_".len()..];
                let id = channel(&req)?;
                let c = self.channels.get(&id).ok_or("channel_id not found")?;
                let v = if name == "offer" { &c.offer } else { &c.answer };
                match v {
                    Some(v) => Ok(Some(object(name, v.clone()))),
                    None => Err(format!("{name} not found")),
                }
            }
            "get_candidates" => {
                let id = channel(&req)?;
                let c = self.channels.get(&id).ok_or("channel_id not found")?;
                Ok(Some(object("items", Value::Array(c.candidates.clone()))))
            }
            "echo" => Ok(Some(req)),
            other => Err(format!("unknown method {other}")),
        }
    }

    /// Re-read the channels from the table (after a write the model could not follow).
    fn resync(&mut self, table: &Table, now: u64) {
        self.channels.clear();
        for id in IDS.iter().filter_map(|s| parse_id(s)) {
            let c = table.read(&id, now, |c| ChannelModel {
                offer: c.offer.clone(),
                answer: c.answer.clone(),
                candidates: c.candidates.clone(),
                charged: 0,
            });
            match c {
                Some(c) => {
                    self.channels.insert(id, c);
                    self.expiry.entry(id).or_insert(now + self.limits.ttl_ms);
                }
                None => {
                    self.expiry.remove(&id);
                }
            }
        }
        // What raw writes charged is not visible: stop checking the byte limit.
        self.limits.max_bytes = usize::MAX;
    }
}

/// Is `text` one of the 400 texts of §3.3 / §3.4?
fn known_error(text: &str) -> bool {
    const TEXTS: [&str; 13] = [
        NOT_RPC,
        "try again!",
        "channel_id is required",
        "channel_id not found",
        "offer is required",
        "answer is required",
        "candidate is required",
        "offer not found",
        "answer not found",
        "answer already exist",
        "fail to create offer",
        "fail to create answer",
        "fail to create candidate",
    ];
    TEXTS.contains(&text) || text.starts_with("unknown method ")
}

/// Checks the shape of any reply; returns its parsed JSON body, if any.
fn check_reply(reply: &Reply) -> Option<Value> {
    match reply {
        Reply::Json(body) => {
            assert_eq!(
                (reply.status(), reply.content_type()),
                (200, "application/json")
            );
            let v = Value::parse(body.as_bytes());
            assert!(v.is_some(), "a JSON reply that does not parse: {body}");
            v
        }
        Reply::Empty => {
            assert_eq!((reply.status(), reply.content_type()), (200, "text/plain"));
            assert!(reply.clone().into_body().is_empty());
            None
        }
        Reply::Error(text) => {
            assert_eq!((reply.status(), reply.content_type()), (400, "text/plain"));
            assert!(known_error(text), "an unspecified error text {text:?}");
            None
        }
    }
}

/// Decodes `file` record by record the way replay reads it: (records, where the valid prefix
/// ends, whether it stopped early). Checks every record the decoder returns.
fn decode_log(file: &[u8]) -> (usize, usize, bool) {
    let Some(mut rest) = file.strip_prefix(LOG_MAGIC.as_slice()) else {
        return (0, 0, true);
    };
    let (mut records, mut at) = (0, LOG_MAGIC.len());
    while !rest.is_empty() {
        let Ok((payload, used)) = parse_record(rest) else {
            return (records, at, true);
        };
        assert_eq!(used, RECORD_HEADER + payload.len(), "record length");
        assert!(
            (17..=MAX_RECORD).contains(&payload.len()),
            "record length bound"
        );
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        assert_eq!(len, payload.len(), "the header's length");
        assert_eq!(
            &rest[RECORD_HEADER..used],
            payload,
            "the payload follows its header"
        );
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        let mut c = Crc32::new();
        c.update(payload);
        assert_eq!(c.finish(), crc, "a record whose CRC does not match");
        records += 1;
        at += used;
        rest = &rest[used..];
    }
    (records, at, false)
}

/// Replays `file` into a fresh table and checks the report against [`decode_log`].
fn check_replay(limits: StoreLimits, file: &[u8], now: u64) -> Table {
    let table = Table::new(limits, 4, false);
    let r = table.replay(file, now);
    let (records, valid, stopped) = decode_log(file);
    assert_eq!(r.records, records, "replayed records");
    assert_eq!(r.valid_len, if stopped { valid } else { file.len() });
    assert_eq!(
        r.stopped.map(|s| s.0),
        stopped.then_some(valid),
        "where replay stopped"
    );
    assert!(r.channels + r.expired <= records);
    table
}

/// A channel as the table writes it: offer, answer, candidates.
type Written = Option<(Option<String>, Option<String>, Vec<String>)>;

fn contents(t: &Table, now: u64) -> Vec<Written> {
    IDS.iter()
        .filter_map(|s| parse_id(s))
        .map(|id| {
            t.read(&id, now, |c| {
                (
                    c.offer.as_ref().map(Value::to_py_json),
                    c.answer.as_ref().map(Value::to_py_json),
                    c.candidates.iter().map(Value::to_py_json).collect(),
                )
            })
        })
        .collect()
}

/// Runs the ops decoded from `data` and checks the invariants in the module docs; panics when
/// one fails.
pub fn check_httpapi(data: &[u8]) {
    let (setup, ops) = decode_api_ops(data);
    let limits = StoreLimits {
        ttl_ms: [1000, 5000][usize::from(setup.limits >> 6 & 1)],
        max_channels: usize::from(setup.limits % 4) + 1,
        max_candidates: usize::from(setup.limits >> 2 & 3),
        max_bytes: [256, 1024, 4096, 1 << 20][usize::from(setup.limits >> 4 & 3)],
    };
    let table = Table::new(limits, usize::from(setup.shards % 8) + 1, true);
    let mut model = Model {
        limits,
        channels: HashMap::new(),
        expiry: HashMap::new(),
    };
    let mut now = T0;
    let mut garbage = Vec::new();
    for (n, op) in ops.iter().enumerate() {
        match op {
            ApiOp::Raw(b) => {
                let mut ids = || IDS[n % 4].to_string();
                check_reply(&handle(&table, now, &b.0, &mut ids));
                model.resync(&table, now);
            }
            &ApiOp::Call {
                method,
                channel,
                value,
                extra,
            } => {
                let body = call_body(method, channel, value, extra);
                let mut ids = || match channel % 8 {
                    c @ 0..=3 => IDS[usize::from(c)].to_string(),
                    _ => "not-a-uuid".to_string(),
                };
                let unmodelled_bytes = model.limits.max_bytes == usize::MAX;
                let want = model.expect(&body, now);
                let reply = handle(&table, now, body.as_bytes(), &mut ids);
                let parsed = check_reply(&reply);
                match (&want, &reply) {
                    (Err(w), Reply::Error(e)) => assert_eq!(w, e, "op #{n}: {body}"),
                    (Ok(None), Reply::Empty) => {}
                    (Ok(Some(w)), Reply::Json(_)) => {
                        assert_eq!(parsed.as_ref(), Some(w), "op #{n}: {body}")
                    }
                    // The byte budget after a raw write is not modelled.
                    (_, Reply::Error(e)) if unmodelled_bytes && e.starts_with("fail to") => {}
                    _ => panic!("op #{n}: {body}: expected {want:?}, got {reply:?}"),
                }
                if unmodelled_bytes {
                    model.resync(&table, now);
                }
                assert_eq!(table.len(), model.channels.len(), "channels after op #{n}");
                assert!(table.len() <= limits.max_channels, "the channel limit");
            }
            ApiOp::Advance { ms } => {
                now += u64::from(*ms) * 16;
                table.sweep(now);
                let gone: Vec<Id> = model
                    .expiry
                    .iter()
                    .filter(|(_, &at)| at <= now)
                    .map(|(id, _)| *id)
                    .collect();
                for id in gone {
                    model.expiry.remove(&id);
                    model.channels.remove(&id);
                }
                assert_eq!(table.len(), model.channels.len(), "channels after a sweep");
            }
            ApiOp::Log { magic, bytes } => {
                let mut file = Vec::new();
                if *magic {
                    file.extend_from_slice(LOG_MAGIC);
                }
                file.extend_from_slice(bytes);
                check_replay(limits, &file, now);
            }
            ApiOp::Garbage(b) => garbage.extend_from_slice(&b.0),
        }
    }
    // The table's log and its snapshot replay to the same channels, written the same way.
    let mut log = LOG_MAGIC.to_vec();
    let mut snapshot = LOG_MAGIC.to_vec();
    for i in 0..table.shard_count() {
        log.extend_from_slice(&table.take_log(i));
    }
    for i in 0..table.shard_count() {
        table.snapshot(i, now, &mut snapshot);
    }
    let unlimited = StoreLimits {
        max_channels: usize::MAX,
        max_bytes: usize::MAX,
        max_candidates: usize::MAX,
        ..limits
    };
    let want = contents(&table, now);
    for file in [&log, &snapshot] {
        assert!(!decode_log(file).2, "the table's own log decodes whole");
        let t = check_replay(unlimited, file, now);
        assert_eq!(contents(&t, now), want, "replayed channels");
    }
    // The log, then garbage: exactly the log's records, then what the garbage is on its own.
    let (log_records, _, _) = decode_log(&log);
    let mut tail = LOG_MAGIC.to_vec();
    tail.extend_from_slice(&garbage);
    let (tail_records, tail_valid, tail_stopped) = decode_log(&tail);
    let mut file = log.clone();
    file.extend_from_slice(&garbage);
    let t = Table::new(unlimited, 4, false);
    let r = t.replay(&file, now);
    assert_eq!(
        r.records,
        log_records + tail_records,
        "log + garbage records"
    );
    let valid = log.len() + tail_valid - LOG_MAGIC.len();
    assert_eq!(r.stopped.map(|s| s.0), tail_stopped.then_some(valid));
    if tail_records == 0 {
        assert_eq!(
            contents(&t, now),
            want,
            "garbage changed the replayed channels"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_is_the_inverse_of_decode() {
        let setup = ApiSetup {
            limits: 0xff,
            shards: 3,
        };
        let ops = vec![
            ApiOp::Raw(Bytes(b"{}".to_vec())),
            ApiOp::Call {
                method: 10,
                channel: 7,
                value: 11,
                extra: true,
            },
            ApiOp::Advance { ms: 65535 },
            ApiOp::Log {
                magic: true,
                bytes: vec![0; 300],
            },
            ApiOp::Garbage(Bytes(vec![1, 2])),
        ];
        assert_eq!(decode_api_ops(&encode_api_ops(setup, &ops)), (setup, ops));
    }

    #[test]
    fn every_call_body_is_json() {
        for m in 0..11 {
            for c in 0..8 {
                for v in 0..12 {
                    let body = call_body(m, c, v, v % 2 == 0);
                    assert!(Value::parse(body.as_bytes()).is_some(), "{body}");
                }
            }
        }
    }

    #[test]
    fn arbitrary_bytes_do_not_panic() {
        check_httpapi(b"");
        check_httpapi(&[0xff; 64]);
        check_httpapi(&(0..=255).collect::<Vec<u8>>());
    }
}
