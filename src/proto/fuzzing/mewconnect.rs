//! The `mewconnect` fuzz target: upgrade queries, the §1.4 payload check, and one MewConnect v2
//! [`Pairs`] table driven by [`MewOp`]s against a model of it.
//!
//! Every admission is a fresh socket (the shell never reuses a live [`Handle`]); sockets are
//! numbered in order of admission attempts, refused ones included, and later ops name one by
//! that number modulo the count. `connId`s come from a set of three and `signed` values from
//! a set of two that differ only in case. Checked:
//!
//! * [`parse_params`] on arbitrary query strings never panics, and what it accepts has the
//!   §1.3 shape (a `connId` of 32 UTF-16 units with a hex digit, a `signed` with a hex digit);
//!   [`Pairs::check`] takes it without panicking;
//! * [`valid_signal_data`] equals [`valid_signal_data_by_tree`] on arbitrary text and on the
//!   text of a valid offer with a piece spliced in;
//! * admission: [`Pairs::check`] and [`Pairs::admit`] give the model's decision (§1.3 order),
//!   so a `connId` never has two initiators or two receivers; the arrival signals go to the
//!   model's sockets;
//! * every message goes to a socket that is admitted and has not left; a socket that is not a
//!   member causes nothing;
//! * an `offer` / `answer` is only ever relayed with data the tree check accepts, to the pair's
//!   receiver / initiator, with the data byte for byte; error frames go only to the sender and
//!   only when they are on; `attemptingturn` entries all have `url` and `urls`;
//! * for client-shaped messages (no splice) the output is exactly the model's (recipients,
//!   signals, error texts); for leaves and deadline closes always;
//! * [`Pairs::due`] agrees with the model's idle and lifetime deadlines; `len()` and `pairs()`
//!   equal the model's after every op.
//!
//! The input: a setup byte and a 4-byte start tick, then one tag byte and its fields per op,
//! until the bytes run out; [`encode_mew_ops`] is the inverse, for writing seeds.

use std::collections::HashMap;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use serde_json::{json, Value as Json};

use super::Bytes;
use crate::proto::dialect::mewconnect::{
    parse_params, valid_signal_data, valid_signal_data_by_tree, Due, FixedEnv, Options, Pairs,
    Params, Refusal, Role,
};
use crate::proto::dialect::{Handle, Kind, Outgoing};
use crate::proto::time::Tick;

/// Ops beyond this are ignored, to bound the time of one run.
const MAX_OPS: usize = 512;
const CONN_IDS: [&str; 3] = [
    "04a7c3b2d1e0f9a8b7c6d5e4f3a2b1c0",
    "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzza",
    "ffffffffffffffffffffffffffffff\u{e9}\u{e9}",
];
const SIGNED: [&str; 2] = ["1b93f0aa", "1B93F0AA"];
/// Actions of client-shaped messages; index 6 sends no `action`, 7 a number.
const ACTIONS: [&str; 6] = [
    "offersignal",
    "answersignal",
    "rtcconnected",
    "tryturn",
    "ping",
    "pong",
];
/// Fields a mutation replaces: of the `data` object, of its payload, or `iv.type`.
const FIELDS: [&str; 8] = [
    "data",
    "connId",
    "options",
    "iv",
    "ephemPublicKey",
    "ciphertext",
    "mac",
    "type",
];
/// Replacement values; the last means "a buffer array of `arg % 70` numbers".
const KINDS: [&str; 10] = [
    "null",
    "true",
    "3",
    "-1.5",
    "\"s\"",
    "[]",
    "[1,2]",
    "{}",
    r#"{"a":[1]}"#,
    "",
];

/// Options and surroundings: bit 0 error frames; bits 1–2 idle timeout (none, 1 s, 5 s,
/// 30 s); bits 3–4 lifetime (none, 3 s, 20 s, 60 s); bits 5–6 the ICE list `tryturn` gets.
/// `start` is the first tick (so deadlines cross the `u32` wrap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MewSetup {
    pub flags: u8,
    pub start: u32,
}

/// One step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MewOp {
    /// A new socket asks to join `CONN_IDS[conn_id % 3]` with `SIGNED[signed % 2]`.
    Admit {
        receiver: bool,
        conn_id: u8,
        signed: u8,
    },
    /// Socket `conn` sends a message.
    Message { conn: u8, msg: MewMsg },
    /// Socket `conn` closes.
    Leave { conn: u8 },
    /// Time passes; then every member's deadline is checked, and those due are closed.
    Advance { ms: u16 },
    /// `parse_params` on these bytes (lossy UTF-8) as the query string.
    Query(Bytes),
    /// The §1.4 check, one-pass against tree, on these bytes (lossy UTF-8, up to 64 KiB).
    SignalRaw(Vec<u8>),
    /// The same on a valid offer's data text with `cut` bytes from `at` replaced by `insert`.
    SignalSplice { at: u16, cut: u8, insert: Bytes },
}

/// A message: raw bytes, a client-shaped frame, or such a frame with a piece spliced in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MewMsg {
    Raw {
        binary: bool,
        bytes: Bytes,
    },
    Action(ActionMsg),
    Spliced {
        action: ActionMsg,
        at: u16,
        cut: u8,
        insert: Bytes,
    },
}

/// `{"action": ACTIONS[action % 8], "data": <data>}`. `data % 5`: 0 no data, 1 `null`, 2 a
/// valid offer (`arg` varies the ciphertext length, `connId` and `options`), 3 that offer
/// with `FIELDS[mutation % 8]` replaced by `KINDS[mutation / 8 % 10]`, 4 the string
/// `"invalid"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionMsg {
    pub action: u8,
    pub data: u8,
    pub mutation: u8,
    pub arg: u8,
}

fn byte(u: &mut Unstructured<'_>) -> u8 {
    u8::arbitrary(u).unwrap_or(0)
}

fn u16_le(u: &mut Unstructured<'_>) -> u16 {
    u16::from_le_bytes([byte(u), byte(u)])
}

fn bytes(u: &mut Unstructured<'_>) -> Bytes {
    Bytes::arbitrary(u).unwrap_or(Bytes(Vec::new()))
}

fn action_msg(u: &mut Unstructured<'_>) -> ActionMsg {
    ActionMsg {
        action: byte(u),
        data: byte(u),
        mutation: byte(u),
        arg: byte(u),
    }
}

/// Decodes a fuzz input: the setup, then ops until the bytes run out (at most `MAX_OPS`).
pub fn decode_mew_ops(data: &[u8]) -> (MewSetup, Vec<MewOp>) {
    let mut u = Unstructured::new(data);
    let flags = byte(&mut u);
    let start = u32::from_le_bytes([byte(&mut u), byte(&mut u), byte(&mut u), byte(&mut u)]);
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        let op = match byte(&mut u) % 7 {
            0 => MewOp::Admit {
                receiver: byte(&mut u) & 1 == 1,
                conn_id: byte(&mut u) % 3,
                signed: byte(&mut u) % 2,
            },
            1 => {
                let conn = byte(&mut u);
                let msg = match byte(&mut u) % 3 {
                    0 => MewMsg::Raw {
                        binary: byte(&mut u) & 1 == 1,
                        bytes: bytes(&mut u),
                    },
                    1 => MewMsg::Action(action_msg(&mut u)),
                    _ => MewMsg::Spliced {
                        action: action_msg(&mut u),
                        at: u16_le(&mut u),
                        cut: byte(&mut u),
                        insert: bytes(&mut u),
                    },
                };
                MewOp::Message { conn, msg }
            }
            2 => MewOp::Leave { conn: byte(&mut u) },
            3 => MewOp::Advance { ms: u16_le(&mut u) },
            4 => MewOp::Query(bytes(&mut u)),
            5 => {
                let len = usize::from(u16_le(&mut u)).min(u.len());
                MewOp::SignalRaw(u.bytes(len).unwrap_or_default().to_vec())
            }
            _ => MewOp::SignalSplice {
                at: u16_le(&mut u),
                cut: byte(&mut u),
                insert: bytes(&mut u),
            },
        };
        ops.push(op);
    }
    (MewSetup { flags, start }, ops)
}

/// The inverse of [`decode_mew_ops`] for fields within their ranges (for writing seeds).
/// Byte strings are cut to 255 bytes (`SignalRaw` to 65535).
pub fn encode_mew_ops(setup: MewSetup, ops: &[MewOp]) -> Vec<u8> {
    fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        let b = &b[..b.len().min(255)];
        out.push(b.len() as u8);
        out.extend_from_slice(b);
    }
    fn action(out: &mut Vec<u8>, a: &ActionMsg) {
        out.extend([a.action, a.data, a.mutation, a.arg]);
    }
    let mut out = vec![setup.flags];
    out.extend_from_slice(&setup.start.to_le_bytes());
    for op in ops {
        match op {
            MewOp::Admit {
                receiver,
                conn_id,
                signed,
            } => out.extend([0, u8::from(*receiver), *conn_id, *signed]),
            MewOp::Message { conn, msg } => {
                out.extend([1, *conn]);
                match msg {
                    MewMsg::Raw { binary, bytes: b } => {
                        out.extend([0, u8::from(*binary)]);
                        bytes(&mut out, &b.0);
                    }
                    MewMsg::Action(a) => {
                        out.push(1);
                        action(&mut out, a);
                    }
                    MewMsg::Spliced {
                        action: a,
                        at,
                        cut,
                        insert,
                    } => {
                        out.push(2);
                        action(&mut out, a);
                        out.extend_from_slice(&at.to_le_bytes());
                        out.push(*cut);
                        bytes(&mut out, &insert.0);
                    }
                }
            }
            MewOp::Leave { conn } => out.extend([2, *conn]),
            MewOp::Advance { ms } => {
                out.push(3);
                out.extend_from_slice(&ms.to_le_bytes());
            }
            MewOp::Query(b) => {
                out.push(4);
                bytes(&mut out, &b.0);
            }
            MewOp::SignalRaw(b) => {
                let b = &b[..b.len().min(usize::from(u16::MAX))];
                out.push(5);
                out.extend_from_slice(&(b.len() as u16).to_le_bytes());
                out.extend_from_slice(b);
            }
            MewOp::SignalSplice { at, cut, insert } => {
                out.push(6);
                out.extend_from_slice(&at.to_le_bytes());
                out.push(*cut);
                bytes(&mut out, &insert.0);
            }
        }
    }
    out
}

fn buffer(n: usize) -> Json {
    json!({"type": "Buffer", "data": vec![7; n]})
}

/// A valid offer's `data` object: `arg` picks the ciphertext length, `connId` (present,
/// absent, `null`) and `options` (absent, a string, an object).
pub fn offer_data(arg: u8) -> Json {
    let ciphertext = buffer(usize::from(arg % 8) * 5);
    let mut v = json!({"data": {"iv": buffer(16), "ephemPublicKey": buffer(65),
                                 "ciphertext": ciphertext, "mac": buffer(32)}});
    match (arg >> 3) % 3 {
        0 => v["connId"] = json!(CONN_IDS[0]),
        1 => {}
        _ => v["connId"] = Json::Null,
    }
    match (arg >> 5) % 3 {
        0 => {}
        1 => v["options"] = json!("s"),
        _ => v["options"] = json!({"k": 1}),
    }
    v
}

/// The `data` text of a client-shaped message, `None` for no `data` key.
fn data_text(a: &ActionMsg) -> Option<String> {
    match a.data % 5 {
        0 => None,
        1 => Some("null".into()),
        2 => Some(offer_data(a.arg).to_string()),
        3 => {
            let mut v = offer_data(a.arg);
            let field = FIELDS[usize::from(a.mutation % 8)];
            let kind = KINDS[usize::from(a.mutation / 8 % 10)];
            let new = if kind.is_empty() {
                json!(vec![1; usize::from(a.arg % 70)])
            } else {
                serde_json::from_str(kind).expect("a valid kind")
            };
            match field {
                "data" | "connId" | "options" => v[field] = new,
                "type" => v["data"]["iv"]["type"] = new,
                _ if kind.is_empty() => v["data"][field]["data"] = new,
                _ => v["data"][field] = new,
            }
            Some(v.to_string())
        }
        _ => Some("\"invalid\"".into()),
    }
}

fn frame_text(a: &ActionMsg) -> String {
    let data = data_text(a).map(|d| format!(",\"data\":{d}"));
    let data = data.as_deref().unwrap_or("");
    match usize::from(a.action % 8) {
        6 => format!("{{\"x\":1{data}}}"),
        7 => format!("{{\"action\":5{data}}}"),
        i => format!("{{\"action\":\"{}\"{data}}}", ACTIONS[i]),
    }
}

fn splice(base: &[u8], at: u16, cut: u8, insert: &[u8]) -> Vec<u8> {
    let at = usize::from(at) % (base.len() + 1);
    let end = (at + usize::from(cut)).min(base.len());
    let mut out = base[..at].to_vec();
    out.extend_from_slice(insert);
    out.extend_from_slice(&base[end..]);
    out
}

const ICE_LISTS: [&str; 4] = [
    r#"[{"urls":"stun:a.example:3478"},{"url":"turn:b.example","username":"u","credential":"p"}]"#,
    "[]",
    r#"[{"urls":["turn:x.example","turn:y.example"]},{"foo":1},5,{"url":7,"urls":[]},
        {"urls":[3,"stun:z"]}]"#,
    r#""not a list""#,
];

#[derive(Clone, Copy)]
struct MemberModel {
    cid: usize,
    role: Role,
    admitted: Tick,
    last: Tick,
}

struct PairModel {
    initiator: Option<Handle>,
    receiver: Option<Handle>,
    signed: usize,
}

#[derive(Default)]
struct Model {
    members: HashMap<Handle, MemberModel>,
    pairs: HashMap<usize, PairModel>,
}

impl Model {
    fn decide(&self, receiver: bool, cid: usize, signed: usize) -> Result<(), Refusal> {
        let pair = self.pairs.get(&cid);
        match (receiver, pair) {
            (false, Some(_)) => Err(Refusal::ConnIdExists),
            (false, None) => Ok(()),
            (true, None) => Err(Refusal::NoPair),
            (true, Some(p)) => match (p.initiator, p.receiver) {
                (Some(_), Some(_)) => Err(Refusal::PairFull),
                (None, Some(_)) => Err(Refusal::InitiatorGone),
                (None, None) => panic!("the model keeps no empty pair"),
                (Some(_), None) if p.signed != signed => Err(Refusal::BadSigned),
                (Some(_), None) => Ok(()),
            },
        }
    }

    /// The pair's (initiator, receiver) of member `m`.
    fn ends(&self, m: &MemberModel) -> (Option<Handle>, Option<Handle>) {
        let p = &self.pairs[&m.cid];
        (p.initiator, p.receiver)
    }

    /// `conn` leaves: the expected (recipient, signal) outputs.
    fn leave(&mut self, conn: Handle) -> Vec<(Handle, String)> {
        let Some(m) = self.members.remove(&conn) else {
            return Vec::new();
        };
        let p = self.pairs.get_mut(&m.cid).expect("a member's pair exists");
        let (mine, other) = match m.role {
            Role::Initiator => (&mut p.initiator, p.receiver),
            Role::Receiver => (&mut p.receiver, p.initiator),
        };
        assert_eq!(*mine, Some(conn), "the model's member is in its pair");
        *mine = None;
        match other {
            Some(o) => vec![(o, "disconnected".into())],
            None => {
                self.pairs.remove(&m.cid);
                Vec::new()
            }
        }
    }
}

/// What one output message is, read back from its JSON.
fn classify(o: &Outgoing) -> (String, Json) {
    assert_eq!(o.kind, Kind::Text, "every output is text");
    let v: Json = serde_json::from_slice(&o.payload).expect("every output is JSON");
    let Json::Object(obj) = &v else {
        panic!("every output is a JSON object: {v}")
    };
    let name = match obj.get("signal") {
        Some(Json::String(s)) => s.clone(),
        Some(other) => panic!("a non-string signal {other}"),
        None => {
            assert!(
                obj.get("connectionId").is_some_and(Json::is_string)
                    && obj.get("requestId").is_some_and(Json::is_string),
                "an output that is neither a signal nor an error frame: {v}"
            );
            let msg = obj.get("message").and_then(Json::as_str).unwrap_or("");
            format!("error:{msg}")
        }
    };
    (name, v)
}

/// Invariants every message's output keeps, whatever was sent.
fn check_message_output(
    model: &Model,
    opts: &Options,
    sender: Handle,
    out: &[Outgoing],
    sent: &[u8],
) {
    let Some(m) = model.members.get(&sender) else {
        assert!(out.is_empty(), "a non-member's message caused output");
        return;
    };
    let (initiator, receiver) = model.ends(m);
    for o in out {
        assert!(
            model.members.contains_key(&o.to),
            "output to {:?}, which is not a live member",
            o.to
        );
        let (name, v) = classify(o);
        match name.as_str() {
            "offer" | "answer" => {
                let target = if name == "offer" { receiver } else { initiator };
                assert_eq!(Some(o.to), target, "{name} to the wrong socket");
                let data = v["data"].to_string();
                assert!(
                    valid_signal_data_by_tree(&data),
                    "relayed an invalid payload: {data}"
                );
                // Byte for byte: the relayed text is in what was sent.
                let text = std::str::from_utf8(&o.payload).expect("UTF-8");
                let start = text.find(",\"data\":").expect("a data field") + 8;
                let end = text.rfind(",\"message\":").expect("a message field");
                let relayed = &text.as_bytes()[start..end];
                assert!(
                    sent.windows(relayed.len()).any(|w| w == relayed),
                    "the relayed data is not a piece of the message"
                );
            }
            "disconnect" | "pong" => assert_eq!(o.to, sender, "{name} not to the sender"),
            "turntoken" => assert_eq!(Some(o.to), initiator),
            "attemptingturn" => {
                assert_eq!(Some(o.to), receiver);
                let list = v["data"]["data"].as_array().expect("an ICE list");
                for e in list {
                    assert!(e["url"].is_string(), "an entry without url: {e}");
                    assert!(
                        e["urls"].is_string() || e["urls"].is_array(),
                        "an entry without urls: {e}"
                    );
                }
            }
            n if n.starts_with("error:") => {
                assert!(opts.error_frames, "an error frame while they are off");
                assert_eq!(o.to, sender, "an error frame not to the sender");
            }
            n => panic!("unexpected signal {n} after a message"),
        }
    }
}

/// The exact output of a client-shaped message from member `m`: (recipient, name).
fn expected_action(
    model: &Model,
    opts: &Options,
    sender: Handle,
    a: &ActionMsg,
) -> Vec<(Handle, String)> {
    let Some(m) = model.members.get(&sender) else {
        return Vec::new();
    };
    let (initiator, receiver) = model.ends(m);
    let err = |what: &str| {
        if opts.error_frames {
            vec![(sender, format!("error:{what}"))]
        } else {
            Vec::new()
        }
    };
    let data = data_text(a).filter(|d| d != "null");
    match usize::from(a.action % 8) {
        i @ (0 | 1) => {
            let target = if i == 0 { receiver } else { initiator };
            match (data, target) {
                (Some(d), Some(t)) if valid_signal_data_by_tree(&d) => {
                    vec![(t, if i == 0 { "offer" } else { "answer" }.into())]
                }
                _ => err("Internal server error"),
            }
        }
        2 => vec![(sender, "disconnect".into())],
        3 => initiator
            .map(|i| (i, "turntoken".into()))
            .into_iter()
            .chain(receiver.map(|r| (r, "attemptingturn".into())))
            .collect(),
        4 => vec![(sender, "pong".into())],
        _ => err("Forbidden"),
    }
}

fn names(out: &[Outgoing]) -> Vec<(Handle, String)> {
    out.iter().map(|o| (o.to, classify(o).0)).collect()
}

fn check_query(b: &[u8]) {
    let q = String::from_utf8_lossy(b);
    let got = parse_params(Some(&q));
    assert_eq!(got, parse_params(Some(&q)), "parse_params is a function");
    if let Ok(p) = &got {
        let hex = |s: &str| s.bytes().any(|b| b.is_ascii_hexdigit());
        assert_eq!(p.conn_id.encode_utf16().count(), 32, "{q:?}");
        assert!(hex(&p.conn_id) && hex(&p.signed), "{q:?}");
        let _ = Pairs::new().check(p);
    }
}

fn check_signal(text: &[u8]) {
    let s = String::from_utf8_lossy(text);
    assert_eq!(
        valid_signal_data(&s),
        valid_signal_data_by_tree(&s),
        "one-pass and tree checks disagree on {s:?}"
    );
}

/// Runs the ops decoded from `data` and checks the invariants in the module docs; panics when
/// one fails.
pub fn check_mewconnect(data: &[u8]) {
    let (setup, ops) = decode_mew_ops(data);
    let secs = |n: u64| Some(Duration::from_secs(n));
    let opts = Options {
        error_frames: setup.flags & 1 == 1,
        idle_timeout: [None, secs(1), secs(5), secs(30)][usize::from(setup.flags >> 1 & 3)],
        max_lifetime: [None, secs(3), secs(20), secs(60)][usize::from(setup.flags >> 3 & 3)],
    };
    let mut env = FixedEnv {
        ice: serde_json::from_str(ICE_LISTS[usize::from(setup.flags >> 5 & 3)]).expect("JSON"),
        ids: 0,
    };
    let valid_offer = offer_data(0).to_string();
    let mut now = Tick(setup.start);
    let mut table = Pairs::new();
    let mut model = Model::default();
    let mut socks: Vec<Handle> = Vec::new();
    let pick = |socks: &[Handle], i: u8| -> Option<Handle> {
        (!socks.is_empty()).then(|| socks[usize::from(i) % socks.len()])
    };
    for (n, op) in ops.iter().enumerate() {
        let mut out = Vec::new();
        match op {
            &MewOp::Admit {
                receiver,
                conn_id,
                signed,
            } => {
                let (cid, sg) = (usize::from(conn_id % 3), usize::from(signed % 2));
                let p = Params {
                    role: if receiver {
                        Role::Receiver
                    } else {
                        Role::Initiator
                    },
                    conn_id: CONN_IDS[cid].into(),
                    signed: SIGNED[sg].into(),
                };
                let conn = Handle::of(socks.len() as u32, 1);
                socks.push(conn);
                let want = model.decide(receiver, cid, sg);
                assert_eq!(table.check(&p), want, "check of op #{n}");
                let got = table.admit(p, conn, format!("api{n}").into(), now, &mut out);
                assert_eq!(got, want, "admit of op #{n}");
                let expect: Vec<(Handle, String)> = match (want, receiver) {
                    (Err(_), _) => Vec::new(),
                    (Ok(()), false) => {
                        model.pairs.insert(
                            cid,
                            PairModel {
                                initiator: Some(conn),
                                receiver: None,
                                signed: sg,
                            },
                        );
                        vec![(conn, "initiated".into())]
                    }
                    (Ok(()), true) => {
                        let p = model.pairs.get_mut(&cid).expect("decided with a pair");
                        p.receiver = Some(conn);
                        let i = p.initiator.expect("decided with an initiator");
                        vec![(i, "confirmation".into()), (conn, "confirmation".into())]
                    }
                };
                if want.is_ok() {
                    let role = if receiver {
                        Role::Receiver
                    } else {
                        Role::Initiator
                    };
                    let m = MemberModel {
                        cid,
                        role,
                        admitted: now,
                        last: now,
                    };
                    model.members.insert(conn, m);
                }
                assert_eq!(names(&out), expect, "arrival signals of op #{n}");
            }
            MewOp::Message { conn, msg } => {
                let Some(conn) = pick(&socks, *conn) else {
                    continue;
                };
                let (kind, payload, exact) = match msg {
                    MewMsg::Raw { binary, bytes } => {
                        let kind = if *binary { Kind::Binary } else { Kind::Text };
                        (kind, bytes.0.clone(), None)
                    }
                    MewMsg::Action(a) => (Kind::Text, frame_text(a).into_bytes(), Some(a)),
                    MewMsg::Spliced {
                        action,
                        at,
                        cut,
                        insert,
                    } => {
                        let base = frame_text(action);
                        let text = splice(base.as_bytes(), *at, *cut, &insert.0);
                        (Kind::Text, text, None)
                    }
                };
                let expect = exact.map(|a| expected_action(&model, &opts, conn, a));
                table.message(conn, now, kind, &payload, &opts, &mut env, &mut out);
                check_message_output(&model, &opts, conn, &out, &payload);
                if let Some(expect) = expect {
                    assert_eq!(names(&out), expect, "output of message op #{n}");
                }
                if let Some(m) = model.members.get_mut(&conn) {
                    m.last = now;
                }
            }
            MewOp::Leave { conn } => {
                let Some(conn) = pick(&socks, *conn) else {
                    continue;
                };
                table.leave(conn, &mut out);
                let expect = model.leave(conn);
                assert_eq!(names(&out), expect, "output of leave op #{n}");
            }
            MewOp::Advance { ms } => {
                now = Tick(now.0.wrapping_add(u32::from(*ms)));
                let mut live: Vec<Handle> = model.members.keys().copied().collect();
                live.sort();
                for conn in live {
                    let m = model.members[&conn];
                    let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u32);
                    let (life, idle) = (ms(opts.max_lifetime), ms(opts.idle_timeout));
                    let want = if life.is_some_and(|l| now.since(m.admitted) >= l) {
                        Due::Close("connection lifetime limit reached")
                    } else if idle.is_some_and(|i| now.since(m.last) >= i) {
                        Due::Close("idle timeout")
                    } else {
                        let at = [
                            life.map(|l| m.admitted.0.wrapping_add(l)),
                            idle.map(|i| m.last.0.wrapping_add(i)),
                        ];
                        let left = |t: &u32| t.wrapping_sub(now.0);
                        match at.iter().flatten().min_by_key(|t| left(t)) {
                            Some(&t) => Due::At(Tick(t)),
                            None => Due::Never,
                        }
                    };
                    assert_eq!(table.due(conn, now, &opts), want, "due of {conn:?}");
                    if let Due::Close(_) = want {
                        table.leave(conn, &mut out);
                        let expect = model.leave(conn);
                        assert_eq!(names(&out), expect, "a deadline close, op #{n}");
                        out.clear();
                    }
                }
                if let Some(gone) = socks.iter().find(|c| !model.members.contains_key(c)) {
                    assert_eq!(table.due(*gone, now, &opts), Due::Never);
                }
            }
            MewOp::Query(b) => check_query(&b.0),
            MewOp::SignalRaw(b) => check_signal(b),
            MewOp::SignalSplice { at, cut, insert } => {
                check_signal(&splice(valid_offer.as_bytes(), *at, *cut, &insert.0));
            }
        }
        assert_eq!(table.len(), model.members.len(), "len() after op #{n}");
        assert_eq!(table.pairs(), model.pairs.len(), "pairs() after op #{n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_is_the_inverse_of_decode() {
        let setup = MewSetup {
            flags: 0x7f,
            start: u32::MAX - 5,
        };
        let a = ActionMsg {
            action: 7,
            data: 3,
            mutation: 79,
            arg: 200,
        };
        let ops = vec![
            MewOp::Admit {
                receiver: true,
                conn_id: 2,
                signed: 1,
            },
            MewOp::Message {
                conn: 9,
                msg: MewMsg::Raw {
                    binary: true,
                    bytes: Bytes(b"x".to_vec()),
                },
            },
            MewOp::Message {
                conn: 1,
                msg: MewMsg::Action(a),
            },
            MewOp::Message {
                conn: 1,
                msg: MewMsg::Spliced {
                    action: a,
                    at: 300,
                    cut: 4,
                    insert: Bytes(b"[]".to_vec()),
                },
            },
            MewOp::Leave { conn: 3 },
            MewOp::Advance { ms: 65000 },
            MewOp::Query(Bytes(b"role=initiator".to_vec())),
            MewOp::SignalRaw(vec![b'{'; 300]),
            MewOp::SignalSplice {
                at: 7,
                cut: 0,
                insert: Bytes(Vec::new()),
            },
        ];
        assert_eq!(decode_mew_ops(&encode_mew_ops(setup, &ops)), (setup, ops));
    }

    #[test]
    fn every_mutation_builds_and_the_valid_offers_are_valid() {
        for arg in 0..=255 {
            assert!(valid_signal_data_by_tree(&offer_data(arg).to_string()));
        }
        for mutation in 0..=255 {
            for data in 0..5 {
                let a = ActionMsg {
                    action: 0,
                    data,
                    mutation,
                    arg: mutation,
                };
                let text = frame_text(&a);
                assert!(serde_json::from_str::<Json>(&text).is_ok(), "{text}");
            }
        }
    }

    #[test]
    fn arbitrary_bytes_do_not_panic() {
        check_mewconnect(b"");
        check_mewconnect(&[0xff; 64]);
        check_mewconnect(&(0..=255).collect::<Vec<u8>>());
    }
}
