//! The `peerjs` fuzz target: one PeerJS table (`dialect::peerjs::Peers`, small bounds)
//! driven by a byte string read as ops on 4 sockets: open with one of 3 ids, 2 tokens and a
//! right, wrong or missing key; a raw frame; a client-shaped message (`OFFER`, `ANSWER`,
//! `CANDIDATE`, `LEAVE`, `EXPIRE`, `HEARTBEAT` or another type, to one of the ids, nobody or no
//! `dst`, with a payload from the input); a close; time passing (then a sweep).
//!
//! Checked: every output goes to a socket that is open and not yet closed by the table, and is
//! a JSON object; `OPEN` only answers an open; an `ERROR` or `ID-TAKEN` is followed by the
//! socket's close; a forwarded message has exactly `type`, `src`, `dst`, `payload` in that
//! order (absent ones left out), `src` the id the sender's socket was registered with, and it
//! reaches the socket a model of the registrations says holds `dst`; the registered count
//! never passes the limit and equals the model's; `EXPIRE` only from a sweep.

use crate::proto::dialect::peerjs::{Options, Peers};
use crate::proto::dialect::ywebrtc::Members;
use crate::proto::dialect::{Cx, Handle, Output, Outputs};
use std::collections::{HashMap, HashSet};

const IDS: [&str; 3] = ["alice", "bob", "c\u{e9}"];
const TYPES: [&str; 7] = [
    "OFFER",
    "ANSWER",
    "CANDIDATE",
    "LEAVE",
    "EXPIRE",
    "HEARTBEAT",
    "HELLO",
];

struct Drive {
    t: Peers,
    out: Outputs,
    now: u64,
}

enum Effect {
    Send(Handle, Vec<u8>),
    Close(Handle, u16),
}

impl Drive {
    fn run(&mut self, f: impl FnOnce(&mut Peers, &mut Cx<'_>)) -> Vec<Effect> {
        let t = &mut self.t;
        super::with_cx(&mut self.out, self.now, self.now, |cx| f(t, cx));
        let effects = self
            .out
            .iter()
            .map(|(o, bytes)| match o {
                Output::Send { to, .. } => Effect::Send(*to, bytes.to_vec()),
                Output::Close { conn, code, .. } => Effect::Close(*conn, *code),
                other => panic!("unexpected output {other:?}"),
            })
            .collect();
        self.out.clear();
        effects
    }
}

/// Runs the checks in the module docs on `data`; panics when one fails.
pub fn check_peerjs(data: &[u8]) {
    let limit = 2;
    let mut d = Drive {
        t: Peers::new(Options {
            concurrent_limit: limit,
            queue_messages: 3,
            queue_bytes: 512,
            max_queues: 2,
            alive_timeout_ms: 10_000,
            ..Options::default()
        }),
        out: Outputs::default(),
        now: 1_000,
    };
    let mut gen = 0u32;
    let mut socks: Vec<Handle> = (0..4)
        .map(|k| {
            gen += 1;
            Handle::of(k, gen)
        })
        .collect();
    // The model: which socket holds each registered id (and with which token), and the id
    // each socket speaks for.
    let mut holder: HashMap<&str, (Handle, u8)> = HashMap::new();
    let mut speaks: HashMap<Handle, &str> = HashMap::new();
    let mut closed: HashSet<Handle> = HashSet::new();
    let mut i = 0;
    while i < data.len() {
        let op = data[i];
        let arg = data.get(i + 1).copied().unwrap_or(0);
        i += 2;
        let c = (op & 3) as usize;
        let conn = socks[c];
        // (effects, from a sweep, from an open)
        let (effects, sweep, opening) = match (op >> 2) & 7 {
            0 => {
                // Open a fresh socket in slot c.
                gen += 1;
                let conn = Handle::of(c as u32, gen);
                socks[c] = conn;
                let id = IDS[(arg & 3) as usize % IDS.len()];
                let token = (arg >> 2) & 1;
                let key = match (arg >> 3) & 3 {
                    0 => "&key=nope",
                    1 => "",
                    _ => "&key=peerjs",
                };
                let q = format!("id={}&token=t{token}{key}", id.replace('\u{e9}', "%C3%A9"));
                let effects = d.run(|t, cx| t.open(cx, conn, Some(&q)));
                let ok_key = (arg >> 3) & 3 >= 2;
                let opened = effects
                    .iter()
                    .any(|e| matches!(e, Effect::Send(to, b) if *to == conn && b == br#"{"type":"OPEN"}"#));
                match holder.get(id) {
                    _ if !ok_key => assert!(!opened, "opened with a bad key"),
                    Some((_, tok)) if *tok != token => assert!(!opened, "opened a taken id"),
                    Some((old, _)) => {
                        assert!(opened, "no OPEN on a rebind");
                        let old = *old;
                        speaks.remove(&old);
                        assert!(
                            effects
                                .iter()
                                .any(|e| matches!(e, Effect::Close(h, 1000) if *h == old)),
                            "the old socket stays open"
                        );
                        holder.insert(id, (conn, token));
                        speaks.insert(conn, id);
                    }
                    None if holder.len() >= limit => assert!(!opened, "opened past the limit"),
                    None => {
                        assert!(opened, "no OPEN for a new id");
                        holder.insert(id, (conn, token));
                        speaks.insert(conn, id);
                    }
                }
                (effects, false, true)
            }
            1 => {
                // A raw frame: up to `arg` bytes of the input.
                let end = (i + arg as usize % 64).min(data.len());
                let frame = data[i.min(data.len())..end].to_vec();
                i = end;
                let effects = d.run(|t, cx| t.message(cx, conn, super::as_message(&frame)));
                (effects, false, false)
            }
            2 | 3 => {
                let ty = TYPES[(arg & 7) as usize % TYPES.len()];
                let dst = match (arg >> 3) & 3 {
                    3 => String::new(),
                    k => format!(r#","dst":{}"#, serde_json::Value::from(IDS[k as usize])),
                };
                let payload = match arg >> 5 {
                    0 => String::new(),
                    n => format!(r#","payload":{{"n": {n}.0}}"#),
                };
                let frame = format!(r#"{{"src":"spoof","type":"{ty}"{dst}{payload},"x":1}}"#);
                let effects =
                    d.run(|t, cx| t.message(cx, conn, super::as_message(frame.as_bytes())));
                if let Some(id) = speaks.get(&conn).copied() {
                    if ty == "LEAVE" && dst.is_empty() {
                        holder.remove(id);
                        speaks.remove(&conn);
                    }
                }
                (effects, false, false)
            }
            4 => {
                let effects = d.run(|t, _| t.close(conn));
                if let Some(id) = speaks.remove(&conn) {
                    if holder.get(id).is_some_and(|h| h.0 == conn) {
                        holder.remove(id);
                    }
                }
                closed.insert(conn);
                (effects, false, false)
            }
            _ => {
                d.now += u64::from(arg) * 50;
                let effects = d.run(|t, cx| t.sweep(cx));
                // Silent ones are gone: the model learns which from the closes.
                for e in &effects {
                    if let Effect::Close(h, _) = e {
                        if let Some(id) = speaks.remove(h) {
                            holder.remove(id);
                        }
                    }
                }
                (effects, true, false)
            }
        };
        let from = if opening { socks[c] } else { conn };
        check(
            &effects, &socks, &closed, &holder, &speaks, from, sweep, opening,
        );
        for e in &effects {
            if let Effect::Close(h, _) = e {
                closed.insert(*h);
                if let Some(id) = speaks.remove(h) {
                    if holder.get(id).is_some_and(|x| x.0 == *h) {
                        holder.remove(id);
                    }
                }
            }
        }
        assert!(d.t.len() <= limit, "past the concurrent limit");
        assert_eq!(d.t.len(), holder.len(), "registered count");
    }
}

#[allow(clippy::too_many_arguments)]
fn check(
    effects: &[Effect],
    socks: &[Handle],
    closed: &HashSet<Handle>,
    holder: &HashMap<&str, (Handle, u8)>,
    speaks: &HashMap<Handle, &str>,
    from: Handle,
    sweep: bool,
    opening: bool,
) {
    let mut ended: HashSet<Handle> = HashSet::new();
    for (k, e) in effects.iter().enumerate() {
        let Effect::Send(to, bytes) = e else {
            if let Effect::Close(h, _) = e {
                ended.insert(*h);
            }
            continue;
        };
        assert!(
            socks.contains(to) || speaks.contains_key(to),
            "a send to a stray socket"
        );
        assert!(
            !closed.contains(to) && !ended.contains(to),
            "a send after a close"
        );
        let text = std::str::from_utf8(bytes).expect("UTF-8");
        let m = Members::parse(text).expect("a JSON object");
        let ty = m.str("type").expect("a type");
        let names: Vec<&str> = m.0.iter().map(|(k, _)| &**k).collect();
        match &*ty {
            "OPEN" => assert_eq!(*to, from, "OPEN to another socket"),
            "ERROR" | "ID-TAKEN" => {
                let next = effects.get(k + 1);
                assert!(
                    matches!(next, Some(Effect::Close(h, _)) if h == to),
                    "{ty} without a close"
                );
            }
            "EXPIRE" if sweep => assert_eq!(names, ["type", "src", "dst"]),
            _ => {
                // Forwarded: type, src, dst, payload, in order.
                let order = ["type", "src", "dst", "payload"];
                let mut it = order.iter();
                for n in &names {
                    assert!(it.any(|o| o == n), "member {n} out of order: {names:?}");
                }
                let src = m.str("src").expect("src");
                if opening {
                    // Waiting messages, delivered after the OPEN.
                    assert_eq!(*to, from, "a waiting message to another socket");
                } else {
                    assert_eq!(speaks.get(&from).copied(), Some(&*src), "src");
                }
                let dst = m.str("dst").expect("dst");
                if let Some((h, _)) = holder.get(&*dst) {
                    assert_eq!(to, h, "delivered to a socket that does not hold dst");
                }
            }
        }
    }
}
