//! The `webtorrent` fuzz target: one tracker table (`dialect::webtorrent`) driven by a byte
//! string read as ops, each from one of 4 connections: a raw frame (its bytes), a
//! client-shaped announce (one of 3 info hashes, among them one of control, quote, backslash
//! and latin1 characters; one of 4 peer ids; an event; `left`; up to 3 offers, some of them not
//! objects; or an answer to a peer), a scrape (one hash, a list, a bad value, or none), a close
//! (the connection comes back as a new one), or time passing (peers expire after 10 s).
//!
//! Checked on every output, whatever the input: it goes to an open connection and is a JSON
//! object; one with a `failure reason` has no other members than `action` and `info_hash`;
//! every `info_hash` and `peer_id` in it is 20 characters of at most U+00FF; a failure goes
//! to its sender only. Until the first raw frame, a model of the swarms (who owns which peer
//! id, who is a seeder, when each last announced) predicts the table's peer and swarm counts,
//! every announce response's counts (sent first, to the sender), the number of offers sent,
//! silence for another socket's peer id, and where an answer goes.

use crate::proto::dialect::webtorrent::{Options, Tracker};
use crate::proto::dialect::{Cx, Handle, Kind, Local, Output, Outputs};
use std::collections::BTreeMap;

const HASHES: [&str; 3] = [
    "hhhhhhhhhhhhhhhhhhhh",
    "\u{0}\u{1f}\"\\\u{7f}\u{80}\u{e9}\u{ff}\n\t-WW0300-Ab",
    "iiiiiiiiiiiiiiiiiiii",
];
const PEERS: [&str; 4] = [
    "-WW0300-AAAAAAAAAAAA",
    "-WW0300-BBBBBBBBBBBB",
    "\u{ff}\u{fe}\u{0}\u{1}CCCCCCCCCCCCCCCC",
    "-WW0300-DDDDDDDDDDDD",
];
const MAX_OFFERS: usize = 2;
const TIMEOUT_MS: u64 = 10_000;

fn js(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

struct Drive {
    t: Tracker,
    out: Outputs,
    now: u64,
    next: u32,
}

impl Drive {
    fn open(&mut self) -> Handle {
        self.next += 1;
        Handle::of(self.next, 1)
    }

    /// Runs `f` on the table, then what it told itself.
    fn run(&mut self, f: impl FnOnce(&mut Tracker, &mut Cx<'_>)) {
        let t = &mut self.t;
        super::with_cx(&mut self.out, self.now, 7, |cx| f(t, cx));
        super::settle(t, &mut self.out, self.now, 7, |t, cx, l| match l {
            Local::Tell { from, payload, .. } => t.told(cx, from, &payload),
            Local::Reply { to, payload } => t.replied(cx, to, &payload),
        });
    }

    fn message(&mut self, conn: Handle, payload: &[u8]) -> Vec<(Handle, Vec<u8>)> {
        let msg = super::as_message(payload);
        self.run(|t, cx| t.message(cx, conn, msg));
        let sent = self
            .out
            .iter()
            .map(|(o, bytes)| match o {
                Output::Send { to, kind, .. } => {
                    assert_eq!(*kind, Kind::Text);
                    (*to, bytes.to_vec())
                }
                other => panic!("not a send: {other:?}"),
            })
            .collect();
        self.out.clear();
        sent
    }
}

/// A peer entry of the model: its owner (connection index), whether a seeder, last announce.
type Entry = (usize, bool, u64);

enum Expect {
    Any,
    /// An announce: the response's counts (none for an answer or an ignored request), how
    /// many offers go out, and where an answer goes.
    Announce {
        counts: Option<(usize, usize)>,
        offers: usize,
        answer_to: Option<usize>,
    },
    Scrape,
}

/// Runs the checks in the module docs on `data`; panics when one fails.
pub fn check_webtorrent(data: &[u8]) {
    let mut h = Drive {
        t: Tracker::new(Options {
            max_offers: MAX_OFFERS,
            peer_timeout_ms: TIMEOUT_MS,
            full_scrape: true,
            ..Options::default()
        }),
        out: Outputs::default(),
        now: 1,
        next: 0,
    };
    let mut conns: Vec<Handle> = (0..4).map(|_| h.open()).collect();
    let mut model: Vec<BTreeMap<usize, Entry>> = vec![BTreeMap::new(); HASHES.len()];
    let mut exact = true;
    let mut i = 0;
    while i < data.len() {
        let op = data[i];
        i += 1;
        let c = usize::from(op & 3);
        let arg = data.get(i).copied().unwrap_or(0);
        let arg2 = data.get(i + 1).copied().unwrap_or(0);
        let (frame, expect) = match (op >> 2) & 7 {
            0 => {
                let len = usize::from(arg);
                let end = (i + 1 + len).min(data.len());
                let bytes = data.get(i + 1..end).unwrap_or(&[]).to_vec();
                i = end;
                exact = false;
                (bytes, Expect::Any)
            }
            1..=3 => {
                i += 2;
                let t = usize::from(arg % 3);
                let p = usize::from((arg >> 2) & 3);
                let event = [
                    "",
                    r#","event":"started""#,
                    r#","event":"completed""#,
                    r#","event":"stopped""#,
                ][usize::from((arg >> 4) & 3)];
                let left =
                    [r#","left":5"#, r#","left":0"#, r#","left":null"#, ""][usize::from(arg >> 6)];
                let answer = (op >> 5) == 3;
                let n_offers = usize::from(arg2 & 3);
                let kinds = arg2 >> 2;
                let offers: Vec<String> = (0..n_offers)
                    .map(|k| match (kinds >> k) & 1 {
                        0 => format!(
                            r#"{{"offer":{{"type":"offer","sdp":"s{k}"}},"offer_id":"o{k}"}}"#
                        ),
                        _ => "null".into(),
                    })
                    .collect();
                let objects = offers.iter().filter(|o| o.starts_with('{')).count();
                let to = usize::from(arg2 >> 6);
                let extra = if answer {
                    format!(
                        r#","to_peer_id":{},"answer":{{"type":"answer","sdp":"a"}},"offer_id":"x""#,
                        js(PEERS[to])
                    )
                } else if n_offers > 0 {
                    format!(r#","offers":[{}]"#, offers.join(","))
                } else {
                    String::new()
                };
                let text = format!(
                    r#"{{"numwant":5{left}{event},"action":"announce","info_hash":{},"peer_id":{}{extra}}}"#,
                    js(HASHES[t]),
                    js(PEERS[p])
                );
                // The model's view.
                let swarm = &mut model[t];
                let stopped = event.contains("stopped");
                let seeder = event.contains("completed") || left == r#","left":0"#;
                let expect = match swarm.get(&p).copied() {
                    Some((owner, _, _)) if owner != c => Expect::Announce {
                        counts: None,
                        offers: 0,
                        answer_to: None,
                    },
                    found => {
                        match (found, stopped) {
                            (Some(_), true) => {
                                swarm.remove(&p);
                            }
                            (Some((o, s, _)), false) => {
                                swarm.insert(p, (o, s || seeder, h.now));
                            }
                            (None, false) => {
                                swarm.insert(p, (c, seeder, h.now));
                            }
                            (None, true) => {}
                        }
                        let seeders = swarm.values().filter(|e| e.1).count();
                        let counts = (seeders, swarm.len() - seeders);
                        let others = swarm.len() - usize::from(swarm.contains_key(&p));
                        Expect::Announce {
                            counts: (!answer).then_some(counts),
                            offers: match stopped || answer {
                                true => 0,
                                false => objects.min(MAX_OFFERS).min(others),
                            },
                            answer_to: match answer && !stopped {
                                true => swarm.get(&to).map(|e| e.0),
                                false => None,
                            },
                        }
                    }
                };
                (text.into_bytes(), expect)
            }
            4 => {
                i += 1;
                let text = match arg & 3 {
                    0 => format!(
                        r#"{{"action":"scrape","info_hash":{}}}"#,
                        js(HASHES[usize::from(arg >> 2) % 3])
                    ),
                    1 => format!(
                        r#"{{"action":"scrape","info_hash":[{},{},{}]}}"#,
                        js(HASHES[0]),
                        js(HASHES[1]),
                        js(HASHES[0])
                    ),
                    2 => r#"{"action":"scrape","info_hash":{"a":1}}"#.into(),
                    _ => r#"{"action":"scrape"}"#.into(),
                };
                (text.into_bytes(), Expect::Scrape)
            }
            5 => {
                let conn = conns[c];
                h.run(|t, cx| t.close(cx, conn));
                assert!(h.out.is_empty(), "a close sends nothing");
                for s in &mut model {
                    s.retain(|_, e| e.0 != c);
                }
                conns[c] = h.open();
                continue;
            }
            _ => {
                i += 1;
                h.now += u64::from(arg) * 100;
                h.run(|t, cx| t.expire(cx));
                assert!(h.out.is_empty(), "expiry sends nothing");
                let cutoff = h.now.saturating_sub(TIMEOUT_MS);
                for s in &mut model {
                    s.retain(|_, e| e.2 > cutoff);
                }
                continue;
            }
        };
        let sent = h.message(conns[c], &frame);
        check_output(&conns, c, &sent);
        if exact {
            let total: usize = model.iter().map(BTreeMap::len).sum();
            assert_eq!(h.t.peers(), total, "peers");
            assert_eq!(
                h.t.swarms(),
                model.iter().filter(|s| !s.is_empty()).count(),
                "swarms"
            );
            match expect {
                Expect::Announce {
                    counts,
                    offers,
                    answer_to,
                } => match counts {
                    Some((complete, incomplete)) => {
                        let (_, first) = &sent[0];
                        let v: serde_json::Value = serde_json::from_slice(first).unwrap();
                        assert_eq!(sent[0].0, conns[c], "the response first, to the sender");
                        assert_eq!(v["complete"], complete, "{v}");
                        assert_eq!(v["incomplete"], incomplete, "{v}");
                        assert_eq!(sent.len(), 1 + offers, "offers");
                    }
                    None => match answer_to {
                        Some(w) => {
                            assert_eq!(sent.len(), 1);
                            assert_eq!(sent[0].0, conns[w], "the answer's target");
                        }
                        None => assert!(sent.is_empty(), "{sent:?}"),
                    },
                },
                Expect::Scrape => assert_eq!(sent.len(), 1),
                Expect::Any => unreachable!("raw frames end exactness"),
            }
        }
    }
}

/// The invariants of every output, whatever the frame was.
fn check_output(conns: &[Handle], from: usize, sent: &[(Handle, Vec<u8>)]) {
    for (to, bytes) in sent {
        assert!(conns.contains(to), "a send to a closed connection");
        let v: serde_json::Value = serde_json::from_slice(bytes).expect("JSON out");
        let o = v.as_object().expect("an object");
        for name in ["info_hash", "peer_id"] {
            if let Some(s) = o.get(name) {
                let s = s.as_str().expect("a string");
                assert_eq!(s.chars().count(), 20, "{name} {s:?}");
                assert!(s.chars().all(|c| u32::from(c) <= 0xff), "{name} {s:?}");
            }
        }
        if o.contains_key("failure reason") {
            assert!(o
                .keys()
                .all(|k| matches!(k.as_str(), "failure reason" | "action" | "info_hash")));
            assert_eq!(*to, conns[from], "a failure goes to its sender");
        }
    }
}
