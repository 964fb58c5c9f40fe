//! The WebTorrent tracker table (`proto::dialect::webtorrent`) on the messages of the
//! `sigyard-load webtorrent` workload, in memory: 100 swarms of 10 announced peers, ids of
//! random bytes (so most of their characters are escaped or two UTF-8 bytes, as for real info
//! hashes), SDPs of 1,024 characters with a line break every few dozen (two JSON escapes each).
//!
//! * `announce_5_offers`: one peer announces with 5 offers: the request parsed and told to its
//!   swarm, its response written, the 5 offers relayed to other peers of the swarm.
//! * `answer`: one peer answers an offer: parsed, told to the swarm, relayed to the offerer.
//!
//! Only the tracker: no WebSocket decoding, no syscalls. Throughput is in request bytes.
//!
//! And the JSON reading alone, side by side (group `raw_value`): the same two requests and one
//! SDP string checked and taken as one raw value by `proto::rawjson::Reader` (what the tracker
//! reads requests with) and by serde_json's `RawValue` (what it read them with before).
//!
//! And the lookup of a connection's entry (group `handle_map`), which every dialect makes per
//! message: 1,000 handles looked up in std's `HashMap` (SipHash) and in `HandleMap` (foldhash).
//!
//! And an id's JSON text decoded to its 20 bytes (group `bin20`): 1,000 ids of random bytes,
//! by `webtorrent::bin20` and by a byte-by-byte decoder with a branch per character's form
//! (what `bin20` was before).
//!
//! Run: `cargo bench --bench tracker -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::value::RawValue;
use sigyard::proto::dialect::webtorrent::{bin20, write_bin, Id20, Options, Tracker};
use sigyard::proto::dialect::{Handle, HandleMap, Local, Message, Outputs};
use sigyard::proto::fuzzing::{settle, with_cx};
use sigyard::proto::rawjson::Reader;

const SWARMS: u32 = 100;
const PEERS: u32 = 10;
const SDP_CHARS: usize = 1024;

/// Twenty pseudo-random bytes for `(swarm, peer)` (peer 0xff: the swarm's info hash).
fn id(swarm: u32, peer: u32) -> Id20 {
    let mut x = u64::from(swarm) << 32 | u64::from(peer) | 1 << 63;
    let mut out = [0u8; 20];
    for b in &mut out {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> 24) as u8;
    }
    out
}

/// An SDP-like text of `n` characters: short lines ending in CR LF.
fn sdp(n: usize) -> String {
    let lines = "v=0\r\no=- 5508943275619447321 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
        c=IN IP4 0.0.0.0\r\na=ice-ufrag:7hQz\r\na=ice-pwd:Lm4pQ9rT2vX8zB1nC6kD0fG3\r\n\
        a=fingerprint:sha-256 3A:9F:11:C4:7E:52:08:BD:6A:E3:90:2F:44:D1:7C:85:19:FA:\
        6B:30:E8:57:A2:0D:C9:64:1E:B3:78:F5:2C:91\r\na=setup:actpass\r\na=mid:0\r\n\
        a=sctp-port:5000\r\na=max-message-size:262144\r\n";
    lines.chars().cycle().take(n).collect()
}

fn json_bin(b: &mut Vec<u8>, bytes: &Id20) {
    write_bin(b, bytes);
}

fn announce(swarm: u32, peer: u32, extra: &[u8]) -> String {
    let mut b = br#"{"action":"announce","info_hash":"#.to_vec();
    json_bin(&mut b, &id(swarm, 0xff));
    b.extend_from_slice(br#","peer_id":"#);
    json_bin(&mut b, &id(swarm, peer));
    b.extend_from_slice(br#","numwant":50,"uploaded":0,"downloaded":0,"left":0"#);
    b.extend_from_slice(extra);
    b.push(b'}');
    String::from_utf8(b).unwrap()
}

fn offers(swarm: u32, peer: u32) -> String {
    let sdp = serde_json::to_string(&sdp(SDP_CHARS)).unwrap();
    let mut b = br#","offers":["#.to_vec();
    for k in 0..5 {
        if k > 0 {
            b.push(b',');
        }
        b.extend_from_slice(br#"{"offer":{"type":"offer","sdp":"#);
        b.extend_from_slice(sdp.as_bytes());
        b.extend_from_slice(br#"},"offer_id":"#);
        json_bin(&mut b, &id(swarm ^ 0x5555, peer * 8 + k));
        b.push(b'}');
    }
    b.push(b']');
    announce(swarm, peer, &b)
}

fn answer(swarm: u32, peer: u32, to: u32) -> String {
    let sdp = serde_json::to_string(&sdp(SDP_CHARS)).unwrap();
    let mut b = br#","answer":{"type":"answer","sdp":"#.to_vec();
    b.extend_from_slice(sdp.as_bytes());
    b.extend_from_slice(br#"},"offer_id":"#);
    json_bin(&mut b, &id(swarm ^ 0x5555, to * 8));
    b.extend_from_slice(br#","to_peer_id":"#);
    json_bin(&mut b, &id(swarm, to));
    announce(swarm, peer, &b)
}

fn conn(swarm: u32, peer: u32) -> Handle {
    Handle::of(swarm * PEERS + peer, 1)
}

fn tracker(c: &mut Criterion) {
    let mut t = Tracker::new(Options::default());
    let mut out = Outputs::default();
    // The table serves the socket and owns the swarm: what it tells the swarm's key it hears
    // itself, as when both are on one core.
    let run = |t: &mut Tracker, out: &mut Outputs, from: Handle, msg: &str| {
        with_cx(out, 1, 1, |cx| t.message(cx, from, Message::Text(msg)));
        settle(t, out, 1, 1, |t, cx, l| match l {
            Local::Tell { from, payload, .. } => t.told(cx, from, &payload),
            Local::Reply { to, payload } => t.replied(cx, to, &payload),
        });
        let n = out.len();
        out.clear();
        n
    };
    for s in 0..SWARMS {
        for p in 0..PEERS {
            run(&mut t, &mut out, conn(s, p), &announce(s, p, b""));
        }
    }
    assert_eq!(t.peers(), (SWARMS * PEERS) as usize);

    let mut g = c.benchmark_group("tracker");
    let msg = offers(7, 3);
    assert_eq!(
        run(&mut t, &mut out, conn(7, 3), &msg),
        6,
        "a response and 5 offers"
    );
    g.throughput(Throughput::Bytes(msg.len() as u64));
    g.bench_function("announce_5_offers", |b| {
        b.iter(|| run(&mut t, &mut out, conn(7, 3), black_box(&msg)));
    });
    let msg = answer(7, 4, 3);
    assert_eq!(
        run(&mut t, &mut out, conn(7, 4), &msg),
        1,
        "the answer relayed"
    );
    g.throughput(Throughput::Bytes(msg.len() as u64));
    g.bench_function("answer", |b| {
        b.iter(|| run(&mut t, &mut out, conn(7, 4), black_box(&msg)));
    });
    g.finish();
}

fn raw_value(c: &mut Criterion) {
    let mut g = c.benchmark_group("raw_value");
    let sdp = serde_json::to_string(&sdp(SDP_CHARS)).unwrap();
    for (name, text) in [
        ("announce_5_offers", offers(7, 3)),
        ("answer", answer(7, 4, 3)),
        ("sdp", sdp),
    ] {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_function(format!("{name}/rawjson"), |b| {
            b.iter(|| Reader::document(black_box(&text), Reader::value).map(str::len));
        });
        g.bench_function(format!("{name}/serde_json"), |b| {
            b.iter(|| {
                serde_json::from_str::<&RawValue>(black_box(&text))
                    .ok()
                    .map(|v| v.get().len())
            });
        });
    }
    g.finish();
}

fn handle_map(c: &mut Criterion) {
    let handles: Vec<Handle> = (0..1000).map(|k| Handle::of(k, 3)).collect();
    let std_map: std::collections::HashMap<Handle, u32> =
        (0..).zip(&handles).map(|(v, h)| (*h, v)).collect();
    let fast_map: HandleMap<u32> = (0..).zip(&handles).map(|(v, h)| (*h, v)).collect();
    let mut g = c.benchmark_group("handle_map");
    g.throughput(Throughput::Elements(handles.len() as u64));
    g.bench_function("std_siphash", |b| {
        b.iter(|| {
            handles
                .iter()
                .filter_map(|h| std_map.get(black_box(h)))
                .sum::<u32>()
        });
    });
    g.bench_function("handle_map", |b| {
        b.iter(|| {
            handles
                .iter()
                .filter_map(|h| fast_map.get(black_box(h)))
                .sum::<u32>()
        });
    });
    g.finish();
}

/// The decoder `bin20` replaced: one branch per character on its form.
fn bin20_by_branches(raw: &str) -> Option<Id20> {
    let inner = raw.as_bytes().strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let hex = |d: u8| char::from(d).to_digit(16).map(|v| v as u8);
    let mut out = [0u8; 20];
    let (mut i, mut n) = (0, 0);
    while let Some(&x) = inner.get(i) {
        let (b, len) = match x {
            b'\\' => match *inner.get(i + 1)? {
                b'u' => match *inner.get(i + 2..i + 6)? {
                    [b'0', b'0', h, l] => (hex(h)? << 4 | hex(l)?, 6),
                    _ => return None,
                },
                b'b' => (0x08, 2),
                b't' => (b'\t', 2),
                b'n' => (b'\n', 2),
                b'f' => (0x0c, 2),
                b'r' => (b'\r', 2),
                e => (e, 2),
            },
            0xc2 | 0xc3 => ((x & 0x1f) << 6 | (*inner.get(i + 1)? & 0x3f), 2),
            0x80.. => return None,
            _ => (x, 1),
        };
        *out.get_mut(n)? = b;
        n += 1;
        i += len;
    }
    (n == 20).then_some(out)
}

fn ids(c: &mut Criterion) {
    let texts: Vec<String> = (0..1000)
        .map(|k| {
            let mut b = Vec::new();
            json_bin(&mut b, &id(k, 0xfe));
            String::from_utf8(b).unwrap()
        })
        .collect();
    for t in &texts {
        assert_eq!(bin20(t), bin20_by_branches(t));
        assert!(bin20(t).is_some());
    }
    let mut g = c.benchmark_group("bin20");
    g.throughput(Throughput::Elements(texts.len() as u64));
    g.bench_function("by_arithmetic", |b| {
        b.iter(|| texts.iter().filter_map(|t| bin20(black_box(t))).count());
    });
    g.bench_function("by_branches", |b| {
        b.iter(|| {
            texts
                .iter()
                .filter_map(|t| bin20_by_branches(black_box(t)))
                .count()
        });
    });
    g.finish();
}

criterion_group!(benches, tracker, raw_value, handle_map, ids);
criterion_main!(benches);
