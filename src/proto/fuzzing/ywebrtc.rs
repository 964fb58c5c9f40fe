//! The `ywebrtc` fuzz target: one y-webrtc instance (`dialect::ywebrtc`) driven by a byte
//! string read as ops, each from one of 4 connections: a raw frame (its bytes, text or
//! binary), a client-shaped `subscribe` / `unsubscribe` of up to 3 of 4 topic names, a
//! `publish` to one of them (with `clients` first or absent, extra members, a repeated
//! `topic`, and data taken from the input), a `ping`, or a close (the connection comes back
//! as a new one).
//!
//! Checked on every output, whatever the input: it goes to an open connection, once per
//! connection per frame; it is a JSON object; a pong answers a ping, to its sender only; the
//! copies of a publish are the same bytes, as many as their `clients` says, and are the
//! frame's members in order with their values as sent and `clients` in place or last. Until
//! the first raw frame (which may subscribe anything), a model of the subscriptions predicts
//! every recipient list exactly, in subscription order.

use crate::proto::dialect::ywebrtc::{Members, Topics};
use crate::proto::dialect::{Cx, Handle, Kind, Local, Output, Outputs};
use std::collections::{BTreeMap, HashSet};

/// The table with a context around it, as the shell gives one.
struct Drive {
    t: Topics,
    out: Outputs,
    next: u32,
}

impl Drive {
    fn open(&mut self) -> Handle {
        self.next += 1;
        Handle::of(self.next, 1)
    }

    /// The sends of one frame, in order.
    /// Runs `f` on the table, then what it told itself.
    fn run(&mut self, f: impl FnOnce(&mut Topics, &mut Cx<'_>)) {
        let t = &mut self.t;
        super::with_cx(&mut self.out, 0, 1, |cx| f(t, cx));
        super::settle(t, &mut self.out, 0, 1, |t, cx, l| {
            if let Local::Tell { from, key, payload } = l {
                t.told(cx, from, &key, &payload);
            }
        });
    }

    fn message(&mut self, conn: Handle, payload: &[u8]) -> Vec<(Handle, Kind, Vec<u8>)> {
        self.run(|t, cx| t.message(cx, conn, super::as_message(payload)));
        let sent = self
            .out
            .iter()
            .map(|(o, bytes)| match o {
                Output::Send { to, kind, .. } => (*to, *kind, bytes.to_vec()),
                other => panic!("not a send: {other:?}"),
            })
            .collect();
        self.out.clear();
        sent
    }
}

const TOPICS: [&str; 4] = ["a", "room-1", "\u{e9}", "a\"b"];

fn topic_json(t: usize) -> String {
    serde_json::Value::from(TOPICS[t]).to_string()
}

/// Runs the checks in the module docs on `data`; panics when one fails.
pub fn check_ywebrtc(data: &[u8]) {
    let mut h = Drive {
        t: Topics::new(),
        out: Outputs::default(),
        next: 0,
    };
    let mut conns: Vec<Handle> = (0..4).map(|_| h.open()).collect();
    // The model: per topic, (subscription number, connection index) in order.
    let mut model: Vec<BTreeMap<u64, usize>> = vec![BTreeMap::new(); TOPICS.len()];
    let mut seq = 0u64;
    let mut exact = true;
    let mut i = 0;
    while i < data.len() {
        let op = data[i];
        i += 1;
        let c = (op & 3) as usize;
        let arg = data.get(i).copied().unwrap_or(0);
        // (The table reads text and binary frames alike: only the bytes matter.)
        let (frame, expect): (Vec<u8>, Expect) = match (op >> 2) & 7 {
            0 | 7 => {
                // Raw: a length byte, then that many bytes.
                let len = arg as usize;
                let end = (i + 1 + len).min(data.len());
                let bytes = data.get(i + 1..end).unwrap_or(&[]).to_vec();
                i = end;
                exact = false;
                (bytes, Expect::Any)
            }
            k @ (1 | 2) => {
                i += 1;
                let chosen: Vec<usize> = (0..3)
                    .filter(|b| arg & (1 << b) != 0)
                    .map(|b| ((arg >> (3 + b)) as usize + b) % TOPICS.len())
                    .collect();
                let list: Vec<String> = chosen.iter().map(|&t| topic_json(t)).collect();
                let ty = if k == 1 { "subscribe" } else { "unsubscribe" };
                for &t in &chosen {
                    let mine = model[t].iter().find(|(_, &who)| who == c).map(|(&n, _)| n);
                    match (k, mine) {
                        (1, None) => {
                            model[t].insert(seq, c);
                            seq += 1;
                        }
                        (2, Some(n)) => {
                            model[t].remove(&n);
                        }
                        _ => {}
                    }
                }
                let text = format!(r#"{{"type":"{ty}","topics":[{}]}}"#, list.join(","));
                (text.into_bytes(), Expect::Nothing)
            }
            3 | 4 => {
                i += 1;
                let t = (arg & 3) as usize;
                // Data: up to 8 input bytes as a JSON string (any bytes, escaped).
                let take = ((arg >> 2) & 7) as usize;
                let start = i.min(data.len());
                let end = (start + take).min(data.len());
                let payload = String::from_utf8_lossy(&data[start..end]).into_owned();
                i = end;
                let data_json = serde_json::Value::from(payload).to_string();
                let text = match op >> 5 {
                    0 | 1 => format!(
                        r#"{{"type":"publish","topic":{},"data":{data_json}}}"#,
                        topic_json(t)
                    ),
                    2 | 3 => format!(
                        r#"{{"clients":-1, "type" : "publish","data":{data_json},"topic":{},"x":[1.0]}}"#,
                        topic_json(t)
                    ),
                    _ => format!(
                        r#"{{"type":"publish","topic":{},"topic":{},"data":{data_json}}}"#,
                        topic_json((t + 1) % TOPICS.len()),
                        topic_json(t)
                    ),
                };
                let to: Vec<usize> = model[t].values().copied().collect();
                (text.into_bytes(), Expect::Publish(to))
            }
            5 => (br#"{"type":"ping"}"#.to_vec(), Expect::Pong),
            _ => {
                let conn = conns[c];
                h.run(|t, cx| t.close(cx, conn));
                assert!(h.out.is_empty(), "a close sends nothing");
                for t in &mut model {
                    t.retain(|_, who| *who != c);
                }
                conns[c] = h.open();
                continue;
            }
        };
        let sent = h.message(conns[c], &frame);
        check_output(&conns, c, &frame, &sent);
        if exact {
            match expect {
                Expect::Nothing => assert!(sent.is_empty(), "{sent:?}"),
                Expect::Pong => {}
                Expect::Publish(to) => {
                    let got: Vec<Handle> = sent.iter().map(|s| s.0).collect();
                    let want: Vec<Handle> = to.iter().map(|&w| conns[w]).collect();
                    assert_eq!(got, want, "recipients");
                }
                Expect::Any => unreachable!("raw frames end exactness"),
            }
        }
    }
}

enum Expect {
    Any,
    Nothing,
    Pong,
    Publish(Vec<usize>),
}

/// The invariants of every output, whatever the frame was.
fn check_output(conns: &[Handle], from: usize, frame: &[u8], sent: &[(Handle, Kind, Vec<u8>)]) {
    let mut seen = HashSet::new();
    for (to, kind, bytes) in sent {
        assert!(conns.contains(to), "a send to a closed connection");
        assert!(seen.insert(*to), "two sends to one connection");
        assert_eq!(*kind, Kind::Text);
        let v: serde_json::Value = serde_json::from_slice(bytes).expect("JSON out");
        assert!(v.is_object(), "not an object: {v}");
    }
    let Some((_, _, first)) = sent.first() else {
        return;
    };
    if first.as_slice() == br#"{"type":"pong"}"# {
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, conns[from], "a pong to another connection");
        let m = Members::parse(text(frame)).expect("a ping is an object");
        assert_eq!(m.str("type").as_deref(), Some("ping"));
        return;
    }
    for (_, _, bytes) in sent {
        assert_eq!(bytes, first, "copies of a publish differ");
    }
    let out = Members::parse(text(first)).expect("an object");
    let input = Members::parse(text(frame)).expect("a publish is an object");
    assert_eq!(input.str("type").as_deref(), Some("publish"));
    assert_eq!(
        out.get("clients").map(str::to_string),
        Some(sent.len().to_string()),
        "clients"
    );
    let mut expected: Vec<(String, String)> = input
        .0
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match expected.iter_mut().find(|(k, _)| k == "clients") {
        Some(slot) => slot.1 = sent.len().to_string(),
        None => expected.push(("clients".into(), sent.len().to_string())),
    }
    let got: Vec<(String, String)> = out
        .0
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(got, expected, "members");
}

fn text(frame: &[u8]) -> &str {
    std::str::from_utf8(frame).expect("UTF-8")
}
