//! The `webtorrent` scenario: peers of the WebTorrent tracker protocol over WebSocket (the wire
//! of bittorrent-tracker 11.2.3, the tracker of webtorrent 3.0.21's browser client).
//!
//! Setup: `--connections` peers, each one WebSocket on the URL's path (`/announce` by default;
//! the original takes any path) with a random 20-byte peer id, peer `i` in torrent `i` mod
//! `--torrents` (info hashes random per run); at most `--concurrency` setting up at once. Once
//! upgraded a peer announces `"event":"started"` with `--offers` offers, each
//! `{"offer":{"type":"offer","sdp":"<--size characters>"},"offer_id":"<20>"}`, as the real
//! client does (members in its order: `numwant`, `uploaded`, `downloaded`, `left`, `event`,
//! `action`, `info_hash`, `peer_id`, `offers`; even peers seed, `left` 0, odd ones leech). It
//! is set up when that announce's response came (latency from the connect).
//!
//! Then, for `--duration`, every peer has one exchange in flight at a time: an announce without
//! `event` (the client's periodic update) with new offers, its response, and the answers to the
//! offers the server relayed (to min(K, the swarm's other peers) of them, the swarm's size
//! being the response's `complete + incomplete`); or, `--scrape-mix` percent of the time,
//! `{"action":"scrape","info_hash":"<its torrent>"}` and its response. The next one starts when
//! the last came (closed loop), or with `--rate R`, R per second over all peers, round robin, a
//! peer still exchanging skipped. In every phase, a peer that gets an offer answers it at once:
//! `{"action":"announce","info_hash":…,"peer_id":<itself>,"to_peer_id":<the offerer>,
//! "answer":{"type":"answer","sdp":"<--size characters>"},"offer_id":<as received>}` (the
//! server sends no response to that). Latencies: announce sent → its response, scrape sent →
//! its response, and offer sent (its announce) → its answer back at the offerer. An exchange
//! unfinished after `--timeout` counts as an error, and the peer goes on.
//!
//! Every frame received is checked against bittorrent-tracker's exact shape, member order
//! included: announce response `complete, incomplete, action, interval, info_hash`; offer
//! `action, offer, offer_id, peer_id, info_hash`; answer `action, answer, offer_id, peer_id,
//! info_hash`; scrape response `action, files, flags` (each file `complete, incomplete,
//! downloaded`); the info hash the peer's own, offers and answers as sent, the peer id another
//! one, the answer's `offer_id` one of the peer's offers. A mismatch counts as an error (the
//! frame is still used); a `failure reason` counts as one and ends the exchange it answers; a
//! frame of no known kind, or the connection's end, fails the peer.
//!
//! With `--server-pid`, the server's memory before the first connect and with every peer
//! announced (before the loop), per peer. One mio event loop per thread (`--threads`), each
//! owning its share of the peers; `--workers` is not supported for this scenario.

use crate::args::Opts;
use crate::engine::now_ns;
use crate::hist::Histogram;
use crate::phases::{self, Progress, Threads};
use crate::ws::Rng;
use crate::wsconn::{Conn, Target};
use crate::wsloop::{self, Plan};
use mio::{Poll, Token};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// bittorrent-tracker 11.2.3's member orders (its `JSON.stringify` of the objects it builds).
const RESPONSE_ORDER: &[&str] = &["complete", "incomplete", "action", "interval", "info_hash"];
const OFFER_ORDER: &[&str] = &["action", "offer", "offer_id", "peer_id", "info_hash"];
const ANSWER_ORDER: &[&str] = &["action", "answer", "offer_id", "peer_id", "info_hash"];
const SCRAPE_ORDER: &[&str] = &["action", "files", "flags"];
const FILE_ORDER: &[&str] = &["complete", "incomplete", "downloaded"];
/// What a leeching peer says it has left to download.
const LEFT: u64 = 1 << 20;

/// A 20-byte binary string (info hash, peer id, offer id) and its JSON form: one character
/// U+0000–U+00FF per byte.
#[derive(Clone)]
struct Bin {
    bytes: [u8; 20],
    json: Vec<u8>,
}

impl Bin {
    fn random(rng: &mut Rng) -> Bin {
        let mut bytes = [0u8; 20];
        for chunk in bytes.chunks_mut(8) {
            let r = rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
        let mut json = Vec::with_capacity(48);
        push_bin(&mut json, &bytes);
        Bin { bytes, json }
    }
}

/// Append `bytes` as a JSON string of one character per byte, escaped as `JSON.stringify`
/// escapes (`\"`, `\\`, `\b \t \n \f \r`, other controls `\u00xx`, U+007F and above raw).
fn push_bin(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
            0x20..=0x7f => out.push(b),
            _ => out.extend_from_slice(&[0xc0 | b >> 6, 0x80 | (b & 0x3f)]),
        }
    }
    out.push(b'"');
}

/// The 20 bytes of a binary string in JSON (`None` unless exactly 20 characters ≤ U+00FF).
/// Decoded here, without allocating: JSON escapes, or UTF-8 of one or two bytes.
fn bin20(raw: &RawValue) -> Option<[u8; 20]> {
    let s = raw.get().as_bytes();
    let inner = s.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let mut out = [0u8; 20];
    let (mut n, mut i) = (0, 0);
    while i < inner.len() {
        let (b, used) = match inner[i] {
            b'\\' => match *inner.get(i + 1)? {
                b'u' => {
                    let hex = std::str::from_utf8(inner.get(i + 2..i + 6)?).ok()?;
                    (u8::try_from(u16::from_str_radix(hex, 16).ok()?).ok()?, 6)
                }
                b'b' => (0x08, 2),
                b'f' => (0x0c, 2),
                b'n' => (b'\n', 2),
                b'r' => (b'\r', 2),
                b't' => (b'\t', 2),
                c @ (b'"' | b'\\' | b'/') => (c, 2),
                _ => return None,
            },
            c @ 0..=0x7f => (c, 1),
            // U+0080–U+00FF (the input is valid UTF-8: a continuation byte follows).
            c @ (0xc2 | 0xc3) => ((c & 0x1f) << 6 | (*inner.get(i + 1)? & 0x3f), 2),
            _ => return None,
        };
        *out.get_mut(n)? = b;
        n += 1;
        i += used;
    }
    (n == 20).then_some(out)
}

/// A member name, borrowed from the frame unless it had escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON object's members in the order they came, values unparsed.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Members<'de>, A::Error> {
                let mut v = Vec::with_capacity(6);
                while let Some(Key(k)) = m.next_key::<Key<'de>>()? {
                    v.push((k, m.next_value::<&'de RawValue>()?));
                }
                Ok(Members(v))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'a> Members<'a> {
    fn parse(text: &'a str) -> Option<Members<'a>> {
        serde_json::from_str(text).ok()
    }

    fn get(&self, name: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }

    /// `Some(what came)` unless the members are exactly `order`.
    fn misordered(&self, order: &[&str]) -> Option<String> {
        let same = self.0.len() == order.len() && self.0.iter().zip(order).all(|(a, b)| a.0 == *b);
        (!same).then(|| {
            let got: Vec<&str> = self.0.iter().map(|(k, _)| k.as_ref()).collect();
            got.join(",")
        })
    }
}

/// A JSON number that is a whole non-negative count.
fn is_count(raw: Option<&RawValue>) -> bool {
    raw.is_some_and(|r| r.get().parse::<u64>().is_ok())
}

/// `raw` is the JSON `want` (the bytes, or failing that the same value).
fn same_json(raw: Option<&RawValue>, want: &[u8]) -> bool {
    let Some(raw) = raw else { return false };
    raw.get().as_bytes() == want
        || serde_json::from_str::<Value>(raw.get()).ok()
            == serde_json::from_slice::<Value>(want).ok()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    /// Waiting for the 101.
    Connecting,
    /// The `started` announce sent, waiting for its response.
    Starting,
    /// Set up, no exchange in flight.
    Ready,
    /// An announce sent (`started` too, once answered): waiting for its response and answers.
    Announcing,
    /// A scrape in flight.
    Scraping,
    Failed,
}

struct Peer {
    conn: Option<Conn>,
    step: Step,
    torrent: usize,
    id: Bin,
    /// 0 (a seeder) or `LEFT`.
    left: u64,
    started: Instant,
    /// The exchange in flight: when its request was sent, and whether during the run.
    sent_ns: u64,
    counted: bool,
    /// Its announce's offer ids, each cleared when answered.
    offers: Vec<Option<[u8; 20]>>,
    /// The answers expected (`None` until the response came) and those that came.
    want: Option<usize>,
    got: usize,
    /// Exchanges of the loop so far (for `--scrape-mix`; peers start at different counts).
    exchanges: u64,
}

/// What one thread counted during the run.
#[derive(Default)]
struct Counts {
    announces: u64,
    responses: u64,
    scrapes: u64,
    scrape_responses: u64,
    offers_sent: u64,
    offers_received: u64,
    answers_sent: u64,
    answers_received: u64,
    /// Every frame the peers got.
    messages: u64,
    /// Offers the server did not relay (the swarm had fewer other peers).
    not_relayed: u64,
    /// Exchanges given up after `--timeout`, and the answers they still lacked.
    timed_out: u64,
    unanswered: u64,
}

impl Counts {
    /// Add `k`'s counts to these.
    fn add(&mut self, k: &Counts) {
        self.announces += k.announces;
        self.responses += k.responses;
        self.scrapes += k.scrapes;
        self.scrape_responses += k.scrape_responses;
        self.offers_sent += k.offers_sent;
        self.offers_received += k.offers_received;
        self.answers_sent += k.answers_sent;
        self.answers_received += k.answers_received;
        self.messages += k.messages;
        self.not_relayed += k.not_relayed;
        self.timed_out += k.timed_out;
        self.unanswered += k.unanswered;
    }
}

/// What one thread measured.
#[derive(Default)]
struct Outcome {
    setup: Histogram,
    announce: Histogram,
    answer: Histogram,
    scrape: Histogram,
    counts: Counts,
    errors: BTreeMap<String, u64>,
}

impl Outcome {
    /// Add another thread's outcome to this one.
    fn add(&mut self, out: &Outcome) {
        self.setup.merge(&out.setup);
        self.announce.merge(&out.announce);
        self.answer.merge(&out.answer);
        self.scrape.merge(&out.scrape);
        self.counts.add(&out.counts);
        for (why, n) in &out.errors {
            *self.errors.entry(why.clone()).or_default() += n;
        }
    }
}

pub fn run(o: &Opts) -> Result<serde_json::Value, String> {
    phases::unsupported(o, "webtorrent", true)?;
    let path = phases::path_or(o, "/announce");
    let threads = (o.threads as u64).clamp(1, o.connections.max(1));
    let shared = Arc::new(Progress::default());
    let run_tag = phases::seed();
    let mut rng = Rng::new(0x7772_7274 ^ run_tag);
    let torrents: Arc<Vec<Bin>> =
        Arc::new((0..o.torrents).map(|_| Bin::random(&mut rng)).collect());
    let sdp = serde_json::to_string(&phases::sdp_text(o.size)).expect("a string");
    let offer = format!(r#"{{"type":"offer","sdp":{sdp}}}"#).into_bytes();
    let answer = format!(r#"{{"type":"answer","sdp":{sdp}}}"#).into_bytes();
    let mut spawned = Threads::start_measuring(o);
    let mut first = 0u64;
    for t in 0..threads {
        let peers = phases::part(o.connections, threads, t);
        let mut w = Worker {
            target: Target::of(o, t),
            path: path.clone(),
            timeout: o.timeout,
            plan: Plan::new(o, threads, peers, o.connections, spawned.setup_flag()),
            offers: o.offers as usize,
            scrape_mix: o.scrape_mix,
            offer: offer.clone(),
            answer: answer.clone(),
            torrents: torrents.clone(),
            rng: Rng::new(phases::thread_seed(0x7774_6f72, t, run_tag)),
            shared: shared.clone(),
            running: false,
            peers: Vec::new(),
            buf: Vec::new(),
            out: Outcome::default(),
        };
        for g in first..first + peers {
            w.add_peer(g);
        }
        first += peers;
        spawned.spawn(format!("webtorrent-{t}"), move || w.run())?;
    }
    let measured = spawned.measured(o, &shared, "peers announced", "exchanges")?;
    let run = &measured.run;
    let announced = shared.set_up.load(Relaxed);
    let mut all = Outcome::default();
    for out in &run.outcomes {
        all.add(out);
    }
    let Outcome {
        setup,
        announce,
        answer,
        scrape,
        counts: c,
        errors,
    } = all;
    if announced == 0 {
        return Err(format!("no peer could announce: {errors:?}"));
    }
    let lat = phases::latency_json;
    let mut v = serde_json::json!({
        "scenario": "webtorrent",
        "url": o.url,
        "threads": threads,
        "connections": o.connections,
        "torrents": o.torrents,
        "offers": o.offers,
        "size": o.size,
        "scrape_mix": o.scrape_mix,
        "announced": announced,
        "failed": shared.failed.load(Relaxed),
        "setup_s": run.setup_s,
        "peers_per_s": run.setup_rate(announced),
        "setup_latency_us": lat(&setup),
        "window_s": run.window_s,
        "announces": c.announces,
        "responses": c.responses,
        "responses_per_s": run.per_s(c.responses),
        "scrapes": c.scrapes,
        "scrape_responses": c.scrape_responses,
        "scrape_responses_per_s": run.per_s(c.scrape_responses),
        "offers_sent": c.offers_sent,
        "offers_received": c.offers_received,
        "offers_received_per_s": run.per_s(c.offers_received),
        "answers_sent": c.answers_sent,
        "answers_received": c.answers_received,
        "answers_received_per_s": run.per_s(c.answers_received),
        "offers_not_relayed": c.not_relayed,
        "exchanges_timed_out": c.timed_out,
        "offers_unanswered": c.unanswered,
        "messages": c.messages,
        "messages_per_s": run.per_s(c.messages),
        "latency_us": lat(&announce),
        "answer_latency_us": lat(&answer),
        "scrape_latency_us": lat(&scrape),
        "errors": errors,
    });
    phases::extend(&mut v, measured.memory_json(announced));
    Ok(v)
}

/// The readable summary of `run`'s JSON.
pub fn text(v: &serde_json::Value) -> String {
    let l = |k: &str| phases::latency_text(&v[k]);
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    let scrapes = if v["scrapes"].as_u64().unwrap_or(0) > 0 {
        format!(
            "scrape responses: {} = {:.0}/s; scrape-to-response latency: {}\n",
            v["scrape_responses"],
            f("scrape_responses_per_s"),
            l("scrape_latency_us")
        )
    } else {
        String::new()
    };
    format!(
        "scenario webtorrent  url {}  threads {}\n\
         peers: {} of {} in {} torrents announced in {:.2} s, {} failed: {:.0} peers/s\n\
         setup latency (connect to the started announce's response): {}\n\
         {}\
         announce responses: {} in {:.1} s = {:.0}/s ({} offers each)\n\
         offers received: {} = {:.0}/s; answers received: {} = {:.0}/s ({} offers not relayed, {} unanswered)\n\
         messages received: {} = {:.0}/s\n\
         announce-to-response latency: {}\n\
         offer-to-answer latency: {}\n\
         {}\
         errors: {}\n",
        v["url"].as_str().unwrap_or(""),
        v["threads"],
        v["announced"],
        v["connections"],
        v["torrents"],
        f("setup_s"),
        v["failed"],
        f("peers_per_s"),
        l("setup_latency_us"),
        phases::memory_text(v, v["announced"].as_u64().unwrap_or(0), "peer"),
        v["responses"],
        f("window_s"),
        f("responses_per_s"),
        v["offers"],
        v["offers_received"],
        f("offers_received_per_s"),
        v["answers_received"],
        f("answers_received_per_s"),
        v["offers_not_relayed"],
        v["offers_unanswered"],
        v["messages"],
        f("messages_per_s"),
        l("latency_us"),
        l("answer_latency_us"),
        scrapes,
        v["errors"]
    )
}

struct Worker {
    target: Target,
    path: String,
    timeout: Duration,
    /// Its rate: exchanges per second for this thread.
    plan: Plan,
    offers: usize,
    scrape_mix: u64,
    /// The offer and answer objects as sent.
    offer: Vec<u8>,
    answer: Vec<u8>,
    torrents: Arc<Vec<Bin>>,
    rng: Rng,
    /// Shared with the coordinator (set up: peers announced).
    shared: Arc<Progress>,
    running: bool,
    peers: Vec<Peer>,
    /// The frame being built.
    buf: Vec<u8>,
    out: Outcome,
}

impl Worker {
    /// Peer `g` of the run (in torrent `g` mod T; even ones seed).
    fn add_peer(&mut self, g: u64) {
        self.peers.push(Peer {
            conn: None,
            step: Step::Connecting,
            torrent: (g % self.torrents.len() as u64) as usize,
            id: Bin::random(&mut self.rng),
            left: if g % 2 == 0 { 0 } else { LEFT },
            started: Instant::now(),
            sent_ns: 0,
            counted: false,
            offers: Vec::new(),
            want: None,
            got: 0,
            exchanges: g,
        });
    }

    fn run(mut self) -> Outcome {
        let (shared, plan) = (self.shared.clone(), self.plan.clone());
        if let Err(e) = wsloop::run(&mut self, &shared.phase, &plan) {
            self.error(e);
        }
        self.out
    }

    fn error(&mut self, why: String) {
        *self.out.errors.entry(why).or_default() += 1;
    }

    fn start(&mut self, poll: &Poll, i: usize) {
        self.peers[i].started = Instant::now();
        match (self.target).ws(poll, Token(i), i, &self.path, &mut self.rng) {
            Ok(c) => {
                self.peers[i].conn = Some(c);
                self.flush(poll, i);
            }
            Err(e) => self.fail(poll, i, &e),
        }
    }

    /// Queue an announce of peer `i` with new offers (`started`: the first one).
    fn announce(&mut self, i: usize, started: bool) {
        let k = self.offers;
        let counted = self.running;
        let now = now_ns();
        let p = &mut self.peers[i];
        let b = &mut self.buf;
        b.clear();
        b.extend_from_slice(
            format!(
                r#"{{"numwant":{k},"uploaded":0,"downloaded":0,"left":{},"#,
                p.left
            )
            .as_bytes(),
        );
        if started {
            b.extend_from_slice(br#""event":"started","#);
        }
        b.extend_from_slice(br#""action":"announce","info_hash":"#);
        b.extend_from_slice(&self.torrents[p.torrent].json);
        b.extend_from_slice(br#","peer_id":"#);
        b.extend_from_slice(&p.id.json);
        b.extend_from_slice(br#","offers":["#);
        p.offers.clear();
        for n in 0..k {
            let id = Bin::random(&mut self.rng);
            if n > 0 {
                b.push(b',');
            }
            b.extend_from_slice(br#"{"offer":"#);
            b.extend_from_slice(&self.offer);
            b.extend_from_slice(br#","offer_id":"#);
            b.extend_from_slice(&id.json);
            b.push(b'}');
            p.offers.push(Some(id.bytes));
        }
        b.extend_from_slice(b"]}");
        p.sent_ns = now;
        p.counted = counted;
        p.want = None;
        p.got = 0;
        p.step = if started {
            Step::Starting
        } else {
            Step::Announcing
        };
        if counted {
            self.out.counts.announces += 1;
            self.out.counts.offers_sent += k as u64;
        }
        if let Some(c) = p.conn.as_mut() {
            c.send(b, &mut self.rng);
        }
    }

    /// Start peer `i`'s next exchange of the loop: an announce, or a scrape `--scrape-mix`
    /// percent of the time (spread evenly).
    fn next_exchange(&mut self, i: usize) {
        let p = &mut self.peers[i];
        if p.step != Step::Ready {
            return;
        }
        let r = p.exchanges;
        p.exchanges += 1;
        let mix = self.scrape_mix;
        if (r + 1) * mix / 100 == r * mix / 100 {
            self.announce(i, false);
            return;
        }
        let b = &mut self.buf;
        b.clear();
        b.extend_from_slice(br#"{"action":"scrape","info_hash":"#);
        b.extend_from_slice(&self.torrents[p.torrent].json);
        b.push(b'}');
        p.sent_ns = now_ns();
        p.counted = self.running;
        p.step = Step::Scraping;
        if self.running {
            self.out.counts.scrapes += 1;
        }
        if let Some(c) = p.conn.as_mut() {
            c.send(b, &mut self.rng);
        }
    }

    fn flush(&mut self, poll: &Poll, i: usize) {
        if let Some(Err(e)) = self.peers[i].conn.as_mut().map(Conn::flush) {
            self.fail(poll, i, &e);
        }
    }

    fn drive(&mut self, poll: &Poll, i: usize) {
        self.flush(poll, i);
        let p = &mut self.peers[i];
        let Some(c) = p.conn.as_mut() else {
            return;
        };
        let mut msgs = Vec::new();
        let got = c.read(&mut msgs, &mut self.rng);
        if p.step == Step::Connecting && c.is_open() {
            self.announce(i, true);
        }
        for m in msgs {
            self.on_message(poll, i, &m);
        }
        match got {
            Err(e) => self.fail(poll, i, &e),
            Ok(()) => self.flush(poll, i),
        }
    }

    fn on_message(&mut self, poll: &Poll, i: usize, text: &[u8]) {
        if matches!(self.peers[i].step, Step::Failed | Step::Connecting) {
            return;
        }
        if self.running {
            self.out.counts.messages += 1;
        }
        let parsed = std::str::from_utf8(text).ok().and_then(Members::parse);
        let Some(m) = parsed else {
            let what = String::from_utf8_lossy(&text[..text.len().min(80)]).into_owned();
            return self.fail(
                poll,
                i,
                &format!("a frame that is not a JSON object: {what}"),
            );
        };
        if let Some(why) = m.get("failure reason") {
            self.error(format!("failure reason: {}", why.get()));
            // It ends the exchange in flight (a started announce stays unanswered: the peer
            // fails its set-up at the deadline).
            let p = &mut self.peers[i];
            if matches!(p.step, Step::Announcing | Step::Scraping) {
                p.step = Step::Ready;
                self.next_if_closed_loop(i);
            }
            return;
        }
        const ANNOUNCE: &str = r#""announce""#;
        let (kind, order, action) = if m.get("offer").is_some() {
            ("offer", OFFER_ORDER, ANNOUNCE)
        } else if m.get("answer").is_some() {
            ("answer", ANSWER_ORDER, ANNOUNCE)
        } else if m.get("files").is_some() {
            ("scrape response", SCRAPE_ORDER, r#""scrape""#)
        } else if m.get("complete").is_some() || m.get("interval").is_some() {
            ("announce response", RESPONSE_ORDER, ANNOUNCE)
        } else {
            let what = String::from_utf8_lossy(&text[..text.len().min(80)]).into_owned();
            return self.fail(poll, i, &format!("a frame of no known kind: {what}"));
        };
        if let Some(got) = m.misordered(order) {
            self.error(format!("{kind}: members {got}, not {}", order.join(",")));
        }
        if m.get("action").map(RawValue::get) != Some(action) {
            self.error(format!("{kind}: action not {action}"));
        }
        let torrent = self.peers[i].torrent;
        if kind != "scrape response"
            && m.get("info_hash").and_then(bin20) != Some(self.torrents[torrent].bytes)
        {
            self.error(format!("{kind}: info_hash not the peer's torrent"));
        }
        match kind {
            "offer" => self.on_offer(i, &m),
            "answer" => self.on_answer(i, &m),
            "scrape response" => self.on_scrape(i, &m),
            _ => self.on_response(i, &m),
        }
    }

    /// The peer id of an offer or answer: another peer's.
    fn check_peer_id(&mut self, i: usize, kind: &str, raw: Option<&RawValue>) -> bool {
        match raw.and_then(bin20) {
            Some(id) if id != self.peers[i].id.bytes => true,
            Some(_) => {
                self.error(format!("{kind}: peer_id the receiver's own"));
                false
            }
            None => {
                self.error(format!("{kind}: peer_id not a 20-character binary string"));
                false
            }
        }
    }

    /// Answer an offer at once.
    fn on_offer(&mut self, i: usize, m: &Members) {
        if !same_json(m.get("offer"), &self.offer) {
            self.error("offer: offer not as sent".into());
        }
        let from = m.get("peer_id");
        let id = m.get("offer_id");
        if id.and_then(bin20).is_none() {
            self.error("offer: offer_id not a 20-character binary string".into());
        }
        if self.running {
            self.out.counts.offers_received += 1;
        }
        if !self.check_peer_id(i, "offer", from) {
            return;
        }
        let (Some(from), Some(id)) = (from, id) else {
            return;
        };
        let p = &mut self.peers[i];
        let b = &mut self.buf;
        b.clear();
        b.extend_from_slice(br#"{"action":"announce","info_hash":"#);
        b.extend_from_slice(&self.torrents[p.torrent].json);
        b.extend_from_slice(br#","peer_id":"#);
        b.extend_from_slice(&p.id.json);
        b.extend_from_slice(br#","to_peer_id":"#);
        b.extend_from_slice(from.get().as_bytes());
        b.extend_from_slice(br#","answer":"#);
        b.extend_from_slice(&self.answer);
        b.extend_from_slice(br#","offer_id":"#);
        b.extend_from_slice(id.get().as_bytes());
        b.push(b'}');
        if let Some(c) = p.conn.as_mut() {
            c.send(b, &mut self.rng);
        }
        if self.running {
            self.out.counts.answers_sent += 1;
        }
    }

    /// An answer to one of this peer's offers.
    fn on_answer(&mut self, i: usize, m: &Members) {
        if !same_json(m.get("answer"), &self.answer) {
            self.error("answer: answer not as sent".into());
        }
        self.check_peer_id(i, "answer", m.get("peer_id"));
        if self.running {
            self.out.counts.answers_received += 1;
        }
        let Some(id) = m.get("offer_id").and_then(bin20) else {
            return self.error("answer: offer_id not a 20-character binary string".into());
        };
        let p = &mut self.peers[i];
        let mine = p.offers.iter_mut().find(|o| **o == Some(id));
        let (Some(o), Step::Starting | Step::Announcing) = (mine, p.step) else {
            return self.error("answer: offer_id of none of the peer's offers in flight".into());
        };
        *o = None;
        p.got += 1;
        if p.counted {
            self.out.answer.record(now_ns().saturating_sub(p.sent_ns));
        }
        self.maybe_done(i);
    }

    /// Peer `i`'s announce got its response and every answer expected: the exchange is over.
    fn maybe_done(&mut self, i: usize) {
        let p = &mut self.peers[i];
        if p.step != Step::Announcing || !matches!(p.want, Some(w) if p.got >= w) {
            return;
        }
        p.step = Step::Ready;
        if p.counted {
            let left = p.offers.len() - p.want.unwrap_or(0);
            self.out.counts.not_relayed += left as u64;
        }
        self.next_if_closed_loop(i);
    }

    /// The response to the announce in flight: how many answers to expect.
    fn on_response(&mut self, i: usize, m: &Members) {
        let count = |k: &str| m.get(k).and_then(|r| r.get().parse::<u64>().ok());
        let swarm = match (count("complete"), count("incomplete")) {
            (Some(c), Some(n)) => c + n,
            _ => {
                self.error("announce response: complete or incomplete not a count".into());
                0
            }
        };
        if !is_count(m.get("interval")) {
            self.error("announce response: interval not a whole number of seconds".into());
        }
        let p = &mut self.peers[i];
        let took = now_ns().saturating_sub(p.sent_ns);
        match p.step {
            Step::Starting if p.want.is_none() => {
                p.step = Step::Announcing;
                self.out.setup.record(p.started.elapsed().as_nanos() as u64);
                self.shared.set_up.fetch_add(1, Relaxed);
            }
            Step::Announcing if p.want.is_none() => {
                if p.counted {
                    self.out.announce.record(took);
                    self.out.counts.responses += 1;
                }
            }
            _ => return self.error("announce response: no announce in flight".into()),
        }
        // The server relays one offer to each of min(K, the others in the swarm) peers.
        let others = usize::try_from(swarm.saturating_sub(1)).unwrap_or(usize::MAX);
        p.want = Some(p.offers.len().min(others));
        self.maybe_done(i);
    }

    /// The response to the scrape in flight.
    fn on_scrape(&mut self, i: usize, m: &Members) {
        let torrent = &self.torrents[self.peers[i].torrent];
        let files = m.get("files").and_then(|f| Members::parse(f.get()));
        let mut problems = Vec::new();
        match files {
            None => problems.push("files not an object"),
            Some(files) => {
                let mine = files
                    .0
                    .iter()
                    .find(|(k, _)| {
                        k.chars().count() == 20
                            && k.chars()
                                .map(u32::from)
                                .eq(torrent.bytes.iter().map(|&b| u32::from(b)))
                    })
                    .map(|(_, v)| *v);
                match mine.and_then(|f| Members::parse(f.get())) {
                    None => problems.push("no entry for the peer's torrent"),
                    Some(f) => {
                        if f.misordered(FILE_ORDER).is_some() {
                            problems.push("a file's members not complete,incomplete,downloaded");
                        }
                        if !FILE_ORDER.iter().all(|k| is_count(f.get(k))) {
                            problems.push("a file's counts not counts");
                        }
                    }
                }
            }
        }
        let flags = m.get("flags").and_then(|f| Members::parse(f.get()));
        if !flags.is_some_and(|f| {
            f.misordered(&["min_request_interval"]).is_none()
                && is_count(f.get("min_request_interval"))
        }) {
            problems.push("flags not {\"min_request_interval\":N}");
        }
        for why in problems {
            self.error(format!("scrape response: {why}"));
        }
        let p = &mut self.peers[i];
        if p.step != Step::Scraping {
            return self.error("scrape response: no scrape in flight".into());
        }
        p.step = Step::Ready;
        if p.counted {
            self.out.scrape.record(now_ns().saturating_sub(p.sent_ns));
            self.out.counts.scrape_responses += 1;
        }
        self.next_if_closed_loop(i);
    }

    fn next_if_closed_loop(&mut self, i: usize) {
        if self.running && self.plan.rate.is_none() {
            self.next_exchange(i);
        }
    }

    fn fail(&mut self, poll: &Poll, i: usize, why: &str) {
        let p = &mut self.peers[i];
        if p.step == Step::Failed {
            return;
        }
        p.step = Step::Failed;
        if let Some(mut c) = p.conn.take() {
            c.deregister(poll);
        }
        self.shared.failed.fetch_add(1, Relaxed);
        self.error(why.to_string());
    }
}

impl wsloop::Units for Worker {
    fn len(&self) -> usize {
        self.peers.len()
    }

    fn start(&mut self, poll: &Poll, i: usize) {
        Worker::start(self, poll, i);
    }

    fn setting_up(&self, i: usize) -> bool {
        matches!(self.peers[i].step, Step::Connecting | Step::Starting)
    }

    fn ready(&mut self, poll: &Poll, i: usize, running: bool) {
        self.running = running;
        self.drive(poll, i);
    }

    /// Deadlines: of the peers setting up (those started: they have a socket), and of the
    /// exchanges in flight (one unfinished after `--timeout` counts as an error, and the peer
    /// goes on).
    fn tick(&mut self, poll: &Poll, now: Instant, _setting_up: u64) {
        let timeout_ns = self.timeout.as_nanos() as u64;
        let now_ns = now_ns();
        for i in 0..self.peers.len() {
            let p = &mut self.peers[i];
            let late = now.duration_since(p.started) > self.timeout;
            match p.step {
                Step::Connecting | Step::Starting if p.conn.is_some() && late => {
                    self.fail(poll, i, "setup timed out");
                }
                Step::Announcing | Step::Scraping
                    if now_ns.saturating_sub(p.sent_ns) > timeout_ns =>
                {
                    let why = match (p.step, p.want) {
                        (Step::Scraping, _) => "no response to a scrape within --timeout",
                        (_, None) => "no response to an announce within --timeout",
                        _ => "not every answer within --timeout",
                    };
                    let missing = p.want.unwrap_or(0).saturating_sub(p.got);
                    p.step = Step::Ready;
                    if p.counted {
                        self.out.counts.timed_out += 1;
                        self.out.counts.unanswered += missing as u64;
                    }
                    self.error(why.into());
                    self.next_if_closed_loop(i);
                    self.flush(poll, i);
                }
                _ => {}
            }
        }
    }

    fn begin(&mut self, poll: &Poll) {
        self.running = true;
        for i in 0..self.peers.len() {
            self.next_exchange(i);
            self.flush(poll, i);
        }
    }

    fn paced_len(&self) -> usize {
        self.peers.len()
    }

    /// A peer with no exchange in flight starts its next one.
    fn pace(&mut self, poll: &Poll, i: usize) -> bool {
        self.running = true;
        if self.peers[i].step != Step::Ready {
            return false;
        }
        self.next_exchange(i);
        self.flush(poll, i);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_strings_round_trip_through_json() {
        let mut rng = Rng::new(5);
        let mut all = [0u8; 256];
        for (i, b) in all.iter_mut().enumerate() {
            *b = i as u8;
        }
        for chunk in all.chunks(20).filter(|c| c.len() == 20) {
            let mut json = Vec::new();
            push_bin(&mut json, chunk);
            let s: String = serde_json::from_slice(&json).unwrap();
            assert_eq!(s.chars().count(), 20);
            assert!(s
                .chars()
                .zip(chunk)
                .all(|(c, &b)| u32::from(c) == u32::from(b)));
            let raw: &RawValue = serde_json::from_slice(&json).unwrap();
            assert_eq!(bin20(raw).unwrap(), chunk);
        }
        // What JSON.stringify writes for the bytes 0x00, 0x22, 0x5c, 0x7f, 0xff.
        let mut json = Vec::new();
        push_bin(&mut json, &[0, b'"', b'\\', 0x7f, 0xff]);
        assert_eq!(json, b"\"\\u0000\\\"\\\\\x7f\xc3\xbf\"");
        let b = Bin::random(&mut rng);
        let raw: &RawValue = serde_json::from_slice(&b.json).unwrap();
        assert_eq!(bin20(raw), Some(b.bytes));
        let short: &RawValue = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(bin20(short), None);
        let wide: &RawValue = serde_json::from_str("\"\\u0100bcdefghijklmnopqrst\"").unwrap();
        assert_eq!(bin20(wide), None);
        // Other spellings a JSON encoder may choose: upper-case hex, an escaped solidus.
        let other: &RawValue =
            serde_json::from_str(r#""\u00E9\/\u001Fbcdefghijklmnopqr""#).unwrap();
        let mut want = *b"\xe9/\x1fbcdefghijklmnopqr";
        assert_eq!(bin20(other), Some(want));
        want[0] = b'a';
        let plain: &RawValue = serde_json::from_str(r#""a/\u001fbcdefghijklmnopqr""#).unwrap();
        assert_eq!(bin20(plain), Some(want));
        let long: &RawValue = serde_json::from_str(r#""abcdefghijklmnopqrstu""#).unwrap();
        assert_eq!(bin20(long), None);
    }

    #[test]
    fn members_keep_their_order() {
        let text =
            r#"{"complete":1,"incomplete":0,"action":"announce","interval":120,"info_hash":"x"}"#;
        let m = Members::parse(text).unwrap();
        assert_eq!(m.misordered(RESPONSE_ORDER), None);
        assert_eq!(m.get("interval").unwrap().get(), "120");
        let m = Members::parse(
            r#"{"action":"announce","info_hash":"x","complete":1,"incomplete":0,"interval":120}"#,
        )
        .unwrap();
        assert_eq!(
            m.misordered(RESPONSE_ORDER).as_deref(),
            Some("action,info_hash,complete,incomplete,interval")
        );
        assert!(Members::parse("[1]").is_none());
        assert!(Members::parse("null").is_none());
        let escaped = Members::parse(r#"{"a\u0063tion":1}"#).unwrap();
        assert_eq!(escaped.misordered(&["action"]), None);
        assert!(is_count(Some(serde_json::from_str("7").unwrap())));
        assert!(!is_count(Some(serde_json::from_str("-1").unwrap())));
        assert!(same_json(
            Some(serde_json::from_str(r#"{ "sdp": "x", "type":"offer"}"#).unwrap()),
            br#"{"type":"offer","sdp":"x"}"#
        ));
    }
}
