//! The `peerolator` fuzz target: one Peerolator [`Peers`] table driven by [`PeerOp`]s (server
//! and client opens, messages, closes) against a model of it, with the rules of PROTOCOLS.md
//! §4.4.
//!
//! Every open is a fresh socket; sockets are numbered in order of opening (refused ones
//! included) and later ops name one by that number modulo the count. Ids are unique, as the
//! shell's random ones are, except that a server may be opened with the id of the live server
//! opened last (refused as a duplicate) and a client may name a server that left or never
//! was. When the table answers [`Verdict::Close`] the model does what the shell does: it
//! closes that socket (a leave).
//! Checked after every op:
//!
//! * opens: a server id in use is refused, a client for an unknown server is refused; the new
//!   peer gets its HELLO (with `serverInfo` when configured), a client's server then gets
//!   PEER_JOINED;
//! * every message goes to a live peer, and a relayed one from a server only to one of its own
//!   clients, from a client only to its own server;
//! * a relayed message is `{"from","to","type","message"}` in that order, `from` is the
//!   sender's id and `message` is the sent JSON text byte for byte;
//! * what ends a session with 1008: binary, not a JSON object, `to` / `type` / `message`
//!   missing or of the wrong type, a `from` other than the sender's id, a client writing to
//!   anything but its live server's id; what is dropped: a server's message to an id that is
//!   not one of its clients, anything from a client whose server left, anything from a socket
//!   that is not a peer. For client-shaped messages the verdict and output are exactly the
//!   model's; for raw ones the invariants above hold;
//! * closes: PEER_GONE with the client's id to its server, with the server's id to each of its
//!   clients (who stay); `len()` and `servers()` equal the model's.
//!
//! The input: one setup byte, then one tag byte and its fields per op, until the bytes run
//! out; [`encode_peer_ops`] is the inverse, for writing seeds.

use std::collections::{BTreeMap, HashMap};

use arbitrary::{Arbitrary, Unstructured};
use serde_json::value::RawValue;
use serde_json::Value as Json;

use super::Bytes;
use crate::proto::dialect::peerolator::{OpenError, Peers, Verdict};
use crate::proto::dialect::{Handle, Kind, Outgoing};

/// Ops beyond this are ignored, to bound the time of one run.
const MAX_OPS: usize = 512;
const SERVER_INFO: &str = "relay \u{e9} \"1\"";
/// `message` values, sent and expected back byte for byte.
const MESSAGES: [&str; 8] = [
    r#"{"sdp":"v=0\r\no=- 1 2 IN IP4 0.0.0.0"}"#,
    "null",
    r#""str \u00e9 \"q\"""#,
    "[1, 2.50, -0 ,{}]",
    "1e400",
    r#"{"a":{"b":[true,false]} }"#,
    "",
    "17",
];
const TYPES: [&str; 5] = ["offer", "HELLO", "", "", "PEER_GONE"];

fn server_id(n: usize) -> String {
    format!("{:032x}", 0x5e + n)
}

fn client_id(n: usize) -> String {
    format!("{:032x}", 0xc1_0000 + n)
}

/// One step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerOp {
    /// A new socket on `/server` with a fresh id, or (`server % 4 == 3`) the id of the server
    /// opened last if it is still live.
    OpenServer { server: u8 },
    /// A new socket on `/client/<server id>`: of the server ids used so far the one at
    /// `server % 4` modulo their count, or (3) an unknown one.
    OpenClient { server: u8 },
    /// Socket `conn` sends a message.
    Message { conn: u8, msg: PeerMsg },
    /// Socket `conn` closes.
    Close { conn: u8 },
}

/// Raw bytes, or `{["from",]"to","type","message"[,"x"]}`, the fields in reverse order when
/// `to` is odd:
///
/// * `to % 6`: the id of socket `target` (0–2), `"0"` (3), an unknown id (4), absent (5);
///   plus 6 a number;
/// * `ty % 6`: `TYPES` (2 is `""`), 3 absent, 5 a number (`TYPES[3]`, `[4]` used otherwise);
/// * `message % 8`: `MESSAGES[i]`, where 6 means absent;
/// * `from % 5`: absent, the sender's id, another socket's id, `null`, a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerMsg {
    Raw {
        binary: bool,
        bytes: Bytes,
    },
    Shaped {
        to: u8,
        target: u8,
        ty: u8,
        message: u8,
        from: u8,
        extra: bool,
    },
}

fn byte(u: &mut Unstructured<'_>) -> u8 {
    u8::arbitrary(u).unwrap_or(0)
}

/// Decodes a fuzz input: the setup byte (bit 0: `serverInfo` configured), then ops until the
/// bytes run out (at most `MAX_OPS`).
pub fn decode_peer_ops(data: &[u8]) -> (u8, Vec<PeerOp>) {
    let mut u = Unstructured::new(data);
    let setup = byte(&mut u) & 1;
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        let op = match byte(&mut u) % 4 {
            0 => PeerOp::OpenServer {
                server: byte(&mut u) % 4,
            },
            1 => PeerOp::OpenClient {
                server: byte(&mut u) % 4,
            },
            2 => {
                let conn = byte(&mut u);
                let msg = if byte(&mut u) & 1 == 0 {
                    PeerMsg::Raw {
                        binary: byte(&mut u) & 1 == 1,
                        bytes: Bytes::arbitrary(&mut u).unwrap_or(Bytes(Vec::new())),
                    }
                } else {
                    PeerMsg::Shaped {
                        to: byte(&mut u) % 7,
                        target: byte(&mut u),
                        ty: byte(&mut u) % 6,
                        message: byte(&mut u) % 8,
                        from: byte(&mut u) % 5,
                        extra: byte(&mut u) & 1 == 1,
                    }
                };
                PeerOp::Message { conn, msg }
            }
            _ => PeerOp::Close { conn: byte(&mut u) },
        };
        ops.push(op);
    }
    (setup, ops)
}

/// The inverse of [`decode_peer_ops`] for fields within their ranges (for writing seeds).
pub fn encode_peer_ops(setup: u8, ops: &[PeerOp]) -> Vec<u8> {
    let mut out = vec![setup];
    for op in ops {
        match op {
            PeerOp::OpenServer { server } => out.extend([0, *server]),
            PeerOp::OpenClient { server } => out.extend([1, *server]),
            PeerOp::Message { conn, msg } => {
                out.extend([2, *conn]);
                match msg {
                    PeerMsg::Raw { binary, bytes } => {
                        let b = &bytes.0[..bytes.0.len().min(255)];
                        out.extend([0, u8::from(*binary), b.len() as u8]);
                        out.extend_from_slice(b);
                    }
                    PeerMsg::Shaped {
                        to,
                        target,
                        ty,
                        message,
                        from,
                        extra,
                    } => out.extend([1, *to, *target, *ty, *message, *from, u8::from(*extra)]),
                }
            }
            PeerOp::Close { conn } => out.extend([3, *conn]),
        }
    }
    out
}

#[derive(Clone)]
enum Role {
    Server { id: String },
    Client { id: String, server: String },
}

impl Role {
    fn id(&self) -> &str {
        match self {
            Role::Server { id } | Role::Client { id, .. } => id,
        }
    }
}

#[derive(Default)]
struct Model {
    /// Live servers: id → (socket, clients by id).
    servers: HashMap<String, (Handle, BTreeMap<String, Handle>)>,
    members: HashMap<Handle, Role>,
}

impl Model {
    /// `conn` closed: the expected (recipient, to, type, message id) outputs, sorted.
    fn leave(&mut self, conn: Handle) -> Vec<(Handle, String, String, String)> {
        let mut out = Vec::new();
        match self.members.remove(&conn) {
            Some(Role::Client { id, server }) => {
                if let Some((s, clients)) = self.servers.get_mut(&server) {
                    assert_eq!(clients.remove(&id), Some(conn), "the model's client");
                    out.push((*s, server.clone(), "PEER_GONE".into(), id));
                }
            }
            Some(Role::Server { id }) => {
                let (_, clients) = self.servers.remove(&id).expect("the model's server");
                for (cid, c) in clients {
                    out.push((c, cid, "PEER_GONE".into(), id.clone()));
                }
            }
            None => {}
        }
        out.sort();
        out
    }
}

/// A relay message read back: (recipient, to, type, message.id), checking its shape.
fn relay_view(o: &Outgoing) -> (Handle, String, String, String) {
    let v = read(o);
    assert_eq!(v["from"], "0", "a relay message from the relay: {v}");
    let id = v["message"]["id"].as_str().expect("message.id").to_owned();
    let s = |k: &str| v[k].as_str().expect("a string field").to_owned();
    (o.to, s("to"), s("type"), id)
}

/// An output as JSON: an object of exactly `from`, `to`, `type` (strings) and `message`, in
/// that order. `message` is what was sent, valid JSON whose numbers may be beyond `f64`
/// (`1e400`): it reads as `null` then.
fn read(o: &Outgoing) -> Json {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wire<'a> {
        from: String,
        to: String,
        #[serde(rename = "type")]
        kind: String,
        #[serde(borrow)]
        message: &'a RawValue,
    }
    assert_eq!(o.kind, Kind::Text, "every output is text");
    let text = std::str::from_utf8(&o.payload).expect("UTF-8 output");
    assert!(text.starts_with("{\"from\":"), "fields in order: {text}");
    let w: Wire<'_> = serde_json::from_str(text).expect("every output is a relay object");
    let (t, y) = (text.find(",\"to\":"), text.find(",\"type\":"));
    let m = text.find(",\"message\":");
    assert!(t < y && y < m, "fields in order: {text}");
    let message = serde_json::from_str(w.message.get()).unwrap_or(Json::Null);
    serde_json::json!({"from": w.from, "to": w.to, "type": w.kind, "message": message})
}

/// The relayed `message` text (after `"message":`, before the final `}`).
fn message_text(o: &Outgoing) -> &[u8] {
    let text = std::str::from_utf8(&o.payload).expect("UTF-8 output");
    let start = text.find(",\"message\":").expect("a message field") + 11;
    &o.payload[start..o.payload.len() - 1]
}

/// A client-shaped message: its text, the `to` it names (if a string), its `message` text and
/// the close reason it earns whoever sends it (`None`: well-formed).
struct Shaped {
    text: String,
    to: Option<String>,
    message: Option<&'static str>,
    close: Option<&'static str>,
}

fn shaped(
    msg: &PeerMsg,
    sender: Option<&Role>,
    socks: &[Handle],
    ids: &HashMap<Handle, String>,
) -> Option<Shaped> {
    let &PeerMsg::Shaped {
        to,
        target,
        ty,
        message,
        from,
        extra,
    } = msg
    else {
        return None;
    };
    let q = |s: &str| Json::from(s).to_string();
    let target_id = ids[&socks[usize::from(target) % socks.len()]].clone();
    let to_val: Option<String> = match to % 7 {
        0..=2 => Some(target_id),
        3 => Some("0".into()),
        4 => Some("ffffffffffffffffffffffffffffffff".into()),
        _ => None,
    };
    let to_field = match to % 7 {
        5 => None,
        6 => Some("\"to\":0".to_string()),
        _ => Some(format!("\"to\":{}", q(to_val.as_deref().unwrap_or("")))),
    };
    let ty_field = match ty % 6 {
        3 => None,
        5 => Some("\"type\":5".to_string()),
        i => Some(format!("\"type\":{}", q(TYPES[usize::from(i)]))),
    };
    let message_val = match usize::from(message % 8) {
        6 => None,
        i => Some(MESSAGES[i]),
    };
    let own = sender.map(|r| r.id().to_string()).unwrap_or_default();
    let other = ids[&socks[(usize::from(target) + 1) % socks.len()]].clone();
    let (from_field, from_ok) = match from % 5 {
        0 => (None, true),
        1 => (Some(format!("\"from\":{}", q(&own))), true),
        2 => (Some(format!("\"from\":{}", q(&other))), other == own),
        3 => (Some("\"from\":null".to_string()), true),
        _ => (Some("\"from\":7".to_string()), false),
    };
    let mut fields: Vec<String> = Vec::new();
    fields.extend(from_field.clone());
    fields.extend(to_field.clone());
    fields.extend(ty_field.clone());
    fields.extend(message_val.map(|m| format!("\"message\":{m}")));
    if extra {
        fields.push("\"x\":[1]".into());
    }
    if to % 2 == 1 {
        fields.reverse();
    }
    let text = format!("{{{}}}", fields.join(","));
    let well_formed = matches!(to % 7, 0..=4)
        && matches!(ty % 6, 0..=2 | 4)
        && message_val.is_some()
        && from % 5 != 4;
    let close = if !well_formed {
        Some("not a valid {to, type, message} object")
    } else if !from_ok {
        Some("from is not your id")
    } else {
        None
    };
    Some(Shaped {
        text,
        to: to_val.filter(|_| to % 7 != 6),
        message: message_val,
        close,
    })
}

/// Runs the ops decoded from `data` and checks the invariants in the module docs; panics when
/// one fails.
pub fn check_peerolator(data: &[u8]) {
    let (setup, ops) = decode_peer_ops(data);
    let info = (setup & 1 == 1).then_some(SERVER_INFO);
    let mut table = Peers::new();
    let mut model = Model::default();
    let mut socks: Vec<Handle> = Vec::new();
    // The id each socket was opened with (refused ones too).
    let mut ids: HashMap<Handle, String> = HashMap::new();
    // The ids of the servers opened so far, in order.
    let mut server_ids: Vec<String> = Vec::new();
    let pick = |socks: &[Handle], i: u8| -> Option<Handle> {
        (!socks.is_empty()).then(|| socks[usize::from(i) % socks.len()])
    };
    let hello = |o: &Outgoing, conn: Handle, id: &str| {
        assert_eq!(o.to, conn, "HELLO to the new peer");
        let v = read(o);
        assert_eq!(
            (v["from"].as_str(), v["to"].as_str()),
            (Some("0"), Some(id))
        );
        assert_eq!(v["type"], "HELLO");
        assert_eq!(v["message"]["id"], id);
        assert_eq!(v["message"].get("serverInfo").and_then(Json::as_str), info);
    };
    for (n, op) in ops.iter().enumerate() {
        let mut out = Vec::new();
        match op {
            PeerOp::OpenServer { server } => {
                let id = match server_ids.last() {
                    Some(last) if server % 4 == 3 && model.servers.contains_key(last) => {
                        last.clone()
                    }
                    _ => {
                        server_ids.push(server_id(server_ids.len()));
                        server_ids[server_ids.len() - 1].clone()
                    }
                };
                let conn = Handle::of(socks.len() as u32, 1);
                socks.push(conn);
                ids.insert(conn, id.clone());
                let got = table.open_server(&id, conn, info, &mut out);
                if model.servers.contains_key(&id) {
                    assert_eq!(got, Err(OpenError::DuplicateId), "op #{n}");
                    assert!(out.is_empty());
                } else {
                    assert_eq!(got, Ok(()), "op #{n}");
                    assert_eq!(out.len(), 1, "one HELLO");
                    hello(&out[0], conn, &id);
                    model.servers.insert(id.clone(), (conn, BTreeMap::new()));
                    model.members.insert(conn, Role::Server { id });
                }
            }
            PeerOp::OpenClient { server } => {
                let sid = if server % 4 == 3 || server_ids.is_empty() {
                    "0123456789abcdef0123456789abcdef".to_string()
                } else {
                    server_ids[usize::from(server % 4) % server_ids.len()].clone()
                };
                let id = client_id(socks.len());
                let conn = Handle::of(socks.len() as u32, 1);
                socks.push(conn);
                ids.insert(conn, id.clone());
                let got = table.open_client(&sid, &id, conn, info, &mut out);
                match model.servers.get_mut(&sid) {
                    None => {
                        assert_eq!(got, Err(OpenError::NoServer), "op #{n}");
                        assert!(out.is_empty());
                    }
                    Some((s, clients)) => {
                        assert_eq!(got, Ok(()), "op #{n}");
                        assert_eq!(out.len(), 2, "HELLO and PEER_JOINED");
                        hello(&out[0], conn, &id);
                        let joined = (*s, sid.clone(), "PEER_JOINED".into(), id.clone());
                        assert_eq!(relay_view(&out[1]), joined);
                        clients.insert(id.clone(), conn);
                        let role = Role::Client { id, server: sid };
                        model.members.insert(conn, role);
                    }
                }
            }
            PeerOp::Message { conn, msg } => {
                let Some(conn) = pick(&socks, *conn) else {
                    continue;
                };
                let sender = model.members.get(&conn).cloned();
                let sh = shaped(msg, sender.as_ref(), &socks, &ids);
                let (kind, payload) = match (msg, &sh) {
                    (
                        PeerMsg::Raw {
                            binary: true,
                            bytes,
                        },
                        _,
                    ) => (Kind::Binary, bytes.0.clone()),
                    (PeerMsg::Raw { bytes, .. }, _) => (Kind::Text, bytes.0.clone()),
                    (_, Some(s)) => (Kind::Text, s.text.clone().into_bytes()),
                    _ => unreachable!("a shaped message has its text"),
                };
                let verdict = table.message(conn, kind, &payload, &mut out);
                let Some(role) = sender else {
                    assert_eq!(verdict, Verdict::Keep, "a non-peer's message, op #{n}");
                    assert!(out.is_empty(), "a non-peer's message caused output");
                    continue;
                };
                if kind == Kind::Binary {
                    assert_eq!(verdict, Verdict::Close("binary messages are not accepted"));
                }
                // Where a relayed message may go, and the expected verdict of a shaped one.
                let (allowed, expect): (Vec<Handle>, Option<(Verdict, Option<Handle>)>) =
                    match &role {
                        Role::Server { id } => {
                            let clients = &model.servers[id].1;
                            let expect = sh.as_ref().map(|s| match s.close {
                                Some(why) => (Verdict::Close(why), None),
                                None => {
                                    let to = s.to.as_deref().and_then(|t| clients.get(t));
                                    (Verdict::Keep, to.copied())
                                }
                            });
                            (clients.values().copied().collect(), expect)
                        }
                        Role::Client { server, .. } => {
                            let live = model.servers.get(server).map(|s| s.0);
                            let expect = sh.as_ref().map(|s| match (s.close, live) {
                                (Some(why), _) => (Verdict::Close(why), None),
                                (None, None) => (Verdict::Keep, None),
                                (None, Some(_)) if s.to.as_deref() != Some(server) => (
                                    Verdict::Close("clients may only message their server"),
                                    None,
                                ),
                                (None, Some(s)) => (Verdict::Keep, Some(s)),
                            });
                            (live.into_iter().collect(), expect)
                        }
                    };
                assert!(out.len() <= 1, "one message relays at most once");
                if verdict != Verdict::Keep {
                    assert!(out.is_empty(), "relayed a message that ends the session");
                }
                for o in &out {
                    assert!(
                        allowed.contains(&o.to),
                        "relayed outside the sender's server"
                    );
                    let v = read(o);
                    assert_eq!(
                        v["from"].as_str(),
                        Some(role.id()),
                        "from is the sender's id"
                    );
                    let m = message_text(o);
                    assert!(
                        payload.windows(m.len()).any(|w| w == m),
                        "the relayed message is not a piece of what was sent"
                    );
                }
                if let (Some(s), Some((want, to))) = (&sh, expect) {
                    assert_eq!(verdict, want, "verdict of op #{n}: {}", s.text);
                    assert_eq!(out.first().map(|o| o.to), to, "recipient of op #{n}");
                    if let Some(o) = out.first() {
                        let v = read(o);
                        assert_eq!(v["to"].as_str(), s.to.as_deref());
                        let m = s.message.expect("relayed with a message");
                        assert_eq!(message_text(o), m.as_bytes(), "message byte for byte");
                    }
                }
                if let Verdict::Close(why) = verdict {
                    let reasons = [
                        "binary messages are not accepted",
                        "not a JSON object",
                        "not a valid {to, type, message} object",
                        "from is not your id",
                        "clients may only message their server",
                    ];
                    assert!(reasons.contains(&why), "close reason {why:?}");
                    // The shell closes it with 1008: a leave.
                    let mut gone = Vec::new();
                    table.leave(conn, &mut gone);
                    let mut got: Vec<_> = gone.iter().map(relay_view).collect();
                    got.sort();
                    assert_eq!(got, model.leave(conn), "leave after a 1008, op #{n}");
                }
            }
            PeerOp::Close { conn } => {
                let Some(conn) = pick(&socks, *conn) else {
                    continue;
                };
                table.leave(conn, &mut out);
                let mut got: Vec<_> = out.iter().map(relay_view).collect();
                got.sort();
                assert_eq!(got, model.leave(conn), "leave of op #{n}");
            }
        }
        assert_eq!(table.len(), model.members.len(), "len() after op #{n}");
        assert_eq!(
            table.servers(),
            model.servers.len(),
            "servers() after op #{n}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_is_the_inverse_of_decode() {
        let ops = vec![
            PeerOp::OpenServer { server: 2 },
            PeerOp::OpenClient { server: 3 },
            PeerOp::Message {
                conn: 200,
                msg: PeerMsg::Raw {
                    binary: true,
                    bytes: Bytes(b"{}".to_vec()),
                },
            },
            PeerOp::Message {
                conn: 1,
                msg: PeerMsg::Shaped {
                    to: 6,
                    target: 9,
                    ty: 5,
                    message: 7,
                    from: 4,
                    extra: true,
                },
            },
            PeerOp::Close { conn: 5 },
        ];
        assert_eq!(decode_peer_ops(&encode_peer_ops(1, &ops)), (1, ops));
    }

    #[test]
    fn arbitrary_bytes_do_not_panic() {
        check_peerolator(b"");
        check_peerolator(&[0xff; 64]);
        check_peerolator(&(0..=255).collect::<Vec<u8>>());
    }
}
