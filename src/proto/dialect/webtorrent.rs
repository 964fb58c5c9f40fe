//! The WebTorrent tracker over WebSocket (PROTOCOLS-beyond.md §9), as a pure table: sockets are
//! [`Handle`]s, input is whole WebSocket messages, output goes through the call's [`Cx`].
//!
//! Owns: swarms by info hash and their peers (which socket speaks for each, seeder or not, when
//! it last announced), the `announce` and `scrape` requests with every `failure reason` of §9.6
//! and §9.9, the offer fan-out to distinct random peers, the answer relay, the per-swarm cap,
//! peer expiry, the info-hash allow-list and the counters an operator watches.
//!
//! Does not own: placement and telling a tracker socket from a y-webrtc one on a shared path
//! (`anypath`), WebSocket keepalive (the shell's pings), frame size (the shell's
//! `--max-message-size`).
//!
//! Decisions of §9.9 taken: the bittorrent-tracker member orders; offers, answers and
//! `offer_id`s forwarded as the JSON sent; 20-character binary strings checked (each character
//! at most U+00FF) and written back as `JSON.stringify` would; errors name `action` (and
//! `info_hash`) when those were valid; `left` null or absent is a leecher; at most
//! [`Options::max_offers`] offers, none on `stopped`; unknown hashes scraped as zeros, at most
//! [`MAX_SCRAPE`] per request, full scrapes refused unless allowed; a peer entry belongs to the
//! socket that created it (other sockets' announces for it are ignored) and closing a socket
//! removes every entry it owns; empty swarms are deleted.

use super::{Cx, Handle, Kind, Message};
use crate::proto::http::push_decimal;
use crate::proto::rawjson::{self, Reader};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// An info hash or a peer id: 20 bytes, sent as 20 characters U+0000–U+00FF.
pub type Id20 = [u8; 20];

/// Hashes one scrape reports at most; the rest are ignored.
pub const MAX_SCRAPE: usize = 255;

/// What an operator sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The announce interval clients are given, in seconds (`min_request_interval` in a scrape
    /// is five times it, as in the original).
    pub interval_s: u64,
    /// A peer that has not announced for this long leaves its swarm.
    pub peer_timeout_ms: u64,
    /// Peers per swarm at most: a new one evicts the one that announced least recently.
    pub max_peers_per_swarm: usize,
    /// Offers forwarded per announce at most.
    pub max_offers: usize,
    /// Peer entries (torrent, peer id) one connection may own at most; an announce that would
    /// add one more is refused.
    pub max_peers_per_connection: usize,
    /// Whether a scrape without `info_hash` reports every swarm.
    pub full_scrape: bool,
    /// Only these info hashes may be announced, if set.
    pub allowed: Option<Arc<HashSet<Id20>>>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            interval_s: 120,
            peer_timeout_ms: 20 * 60_000,
            max_peers_per_swarm: 1000,
            max_offers: 10,
            max_peers_per_connection: 1000,
            full_scrape: false,
            allowed: None,
        }
    }
}

/// Counters since start, for `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counters {
    pub announces: u64,
    pub scrapes: u64,
    pub offers_relayed: u64,
    pub answers_relayed: u64,
    pub failures: u64,
}

struct Peer {
    id: Id20,
    conn: Handle,
    seeder: bool,
    /// When it last announced (the instance's clock).
    last: u64,
}

#[derive(Default)]
struct Swarm {
    peers: Vec<Peer>,
    seeders: u32,
    /// Peer id → index in `peers`, once the swarm is too large for a scan.
    index: Option<HashMap<Id20, u32>>,
}

/// Swarms past this many peers keep an index; smaller ones are scanned.
const INDEX_FROM: usize = 24;

impl Swarm {
    fn find(&self, id: &Id20) -> Option<usize> {
        match &self.index {
            Some(ix) => ix.get(id).map(|&i| i as usize),
            None => self.peers.iter().position(|p| p.id == *id),
        }
    }

    fn push(&mut self, p: Peer) {
        self.seeders += u32::from(p.seeder);
        if let Some(ix) = &mut self.index {
            ix.insert(p.id, self.peers.len() as u32);
        }
        self.peers.push(p);
        if self.index.is_none() && self.peers.len() > INDEX_FROM {
            let ix = self.peers.iter().enumerate();
            self.index = Some(ix.map(|(i, p)| (p.id, i as u32)).collect());
        }
    }

    fn remove(&mut self, i: usize) -> Peer {
        let p = self.peers.swap_remove(i);
        self.seeders -= u32::from(p.seeder);
        if let Some(ix) = &mut self.index {
            ix.remove(&p.id);
            if let Some(moved) = self.peers.get(i) {
                ix.insert(moved.id, i as u32);
            }
            if self.peers.len() < INDEX_FROM / 2 {
                self.index = None;
            }
        }
        p
    }

    fn counts(&self) -> (u32, u32) {
        (self.seeders, self.peers.len() as u32 - self.seeders)
    }
}

/// The (info hash, peer id) entries a socket owns. Most sockets own one: kept inline; a few,
/// in a vector that is scanned; past [`INDEX_FROM`], in a set (a socket may own up to
/// `max_peers_per_connection`, and an entry leaves on `stopped` or when its swarm evicts it).
enum Owned {
    One(Id20, Id20),
    Few(Vec<(Id20, Id20)>),
    Many(HashSet<(Id20, Id20)>),
}

impl Owned {
    fn len(&self) -> usize {
        match self {
            Owned::One(..) => 1,
            Owned::Few(v) => v.len(),
            Owned::Many(s) => s.len(),
        }
    }

    fn push(&mut self, ih: Id20, id: Id20) {
        match self {
            Owned::One(a, b) => *self = Owned::Few(vec![(*a, *b), (ih, id)]),
            Owned::Few(v) if v.len() >= INDEX_FROM => {
                let mut set: HashSet<_> = v.drain(..).collect();
                set.insert((ih, id));
                *self = Owned::Many(set);
            }
            Owned::Few(v) => v.push((ih, id)),
            Owned::Many(s) => {
                s.insert((ih, id));
            }
        }
    }

    /// Takes the entry out; whether none is left.
    fn remove(&mut self, ih: &Id20, id: &Id20) -> bool {
        match self {
            Owned::One(a, b) => a == ih && b == id,
            Owned::Few(v) => {
                if let Some(i) = v.iter().position(|(a, b)| a == ih && b == id) {
                    v.swap_remove(i);
                }
                v.is_empty()
            }
            Owned::Many(s) => {
                s.remove(&(*ih, *id));
                s.is_empty()
            }
        }
    }

    fn into_vec(self) -> Vec<(Id20, Id20)> {
        match self {
            Owned::One(a, b) => vec![(a, b)],
            Owned::Few(v) => v,
            Owned::Many(s) => s.into_iter().collect(),
        }
    }
}

/// The tracker of one instance.
pub struct Tracker {
    opts: Options,
    swarms: HashMap<Id20, Swarm>,
    owned: HashMap<Handle, Owned>,
    peers: usize,
    counters: Counters,
    /// For picking peers (not capabilities: seeded once from the shell's randomness).
    rng: u64,
    /// Reused for every message written.
    buf: Vec<u8>,
}

impl Tracker {
    pub fn new(opts: Options) -> Tracker {
        Tracker {
            opts,
            swarms: HashMap::new(),
            owned: HashMap::new(),
            peers: 0,
            counters: Counters::default(),
            rng: 0,
            buf: Vec::new(),
        }
    }

    pub fn swarms(&self) -> usize {
        self.swarms.len()
    }

    pub fn peers(&self) -> usize {
        self.peers
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Whether a frame is a tracker request (how a socket on a shared path is told apart).
    pub fn claims(msg: Message<'_>) -> bool {
        let Some(r) = parse(msg) else {
            return false;
        };
        matches!(
            r.action.and_then(rawjson::string).as_deref(),
            Some("announce" | "scrape")
        )
    }

    /// One frame from `conn` (binary frames too: read as text if they are UTF-8).
    pub fn message(&mut self, cx: &mut Cx<'_>, conn: Handle, msg: Message<'_>) {
        let Some(req) = parse(msg) else {
            self.fail(cx, conn, None, None, "Invalid request");
            return;
        };
        match req.action.and_then(rawjson::string).as_deref() {
            Some("announce") => self.announce(cx, conn, &req),
            Some("scrape") => self.scrape(cx, conn, &req),
            _ => {
                let what = req.action.map_or_else(|| "undefined".into(), js_text);
                let reason = format!("invalid action in WS request: {what}");
                self.fail(cx, conn, None, None, &reason);
            }
        }
    }

    fn fail(
        &mut self,
        cx: &mut Cx<'_>,
        conn: Handle,
        action: Option<&str>,
        ih: Option<&Id20>,
        reason: &str,
    ) {
        self.counters.failures += 1;
        let b = &mut self.buf;
        b.clear();
        b.push(b'{');
        if let Some(a) = action {
            b.extend_from_slice(br#""action":""#);
            b.extend_from_slice(a.as_bytes());
            b.extend_from_slice(b"\",");
        }
        b.extend_from_slice(br#""failure reason":"#);
        // The texts are fixed or quote what the client sent: JSON-escape them.
        b.extend_from_slice(serde_json::Value::from(reason).to_string().as_bytes());
        if let Some(ih) = ih {
            b.extend_from_slice(br#","info_hash":"#);
            write_bin(b, ih);
        }
        b.push(b'}');
        cx.send(conn, Kind::Text, b);
    }

    fn announce(&mut self, cx: &mut Cx<'_>, conn: Handle, req: &Request) {
        const A: Option<&str> = Some("announce");
        let Some(ih) = req.info_hash.and_then(bin20) else {
            return self.fail(cx, conn, A, None, "invalid info_hash");
        };
        let Some(me) = req.peer_id.and_then(bin20) else {
            return self.fail(cx, conn, A, Some(&ih), "invalid peer_id");
        };
        let answer = req.answer.filter(|a| truthy(a));
        let to = match answer {
            Some(_) => match req.to_peer_id.and_then(bin20) {
                Some(to) => Some(to),
                None => {
                    let reason = "invalid `to_peer_id` (required with `answer`)";
                    return self.fail(cx, conn, A, Some(&ih), reason);
                }
            },
            None => None,
        };
        let event = match req.event.map(rawjson::string) {
            None => Event::Update,
            Some(Some(e)) => match &*e {
                "started" => Event::Started,
                "completed" => Event::Completed,
                "stopped" => Event::Stopped,
                "update" | "paused" | "empty" => Event::Update,
                _ => return self.fail(cx, conn, A, Some(&ih), "invalid event"),
            },
            Some(None) if req.event == Some("null") => Event::Update,
            Some(None) => return self.fail(cx, conn, A, Some(&ih), "invalid event"),
        };
        if let Some(allowed) = &self.opts.allowed {
            if !allowed.contains(&ih) {
                return self.fail(cx, conn, A, Some(&ih), "Info hash not allowed");
            }
        }
        let seeder = event == Event::Completed || req.left.is_some_and(left_is_zero);
        let new =
            event != Event::Stopped && self.swarms.get(&ih).and_then(|s| s.find(&me)).is_none();
        let owned = self.owned.get(&conn).map_or(0, Owned::len);
        if new && owned >= self.opts.max_peers_per_connection {
            let reason = "too many torrents announced on this connection";
            return self.fail(cx, conn, A, Some(&ih), reason);
        }
        if !self.update(cx.now, conn, ih, me, event, seeder) {
            return; // another socket's peer id: ignored
        }
        self.counters.announces += 1;
        let (complete, incomplete) = self.swarms.get(&ih).map_or((0, 0), Swarm::counts);
        if answer.is_none() {
            let b = &mut self.buf;
            b.clear();
            b.extend_from_slice(br#"{"complete":"#);
            push_decimal(b, complete.into());
            b.extend_from_slice(br#","incomplete":"#);
            push_decimal(b, incomplete.into());
            b.extend_from_slice(br#","action":"announce","interval":"#);
            push_decimal(b, self.opts.interval_s);
            b.extend_from_slice(br#","info_hash":"#);
            write_bin(b, &ih);
            b.push(b'}');
            cx.send(conn, Kind::Text, b);
        }
        if event == Event::Stopped {
            return;
        }
        if let Some(Offers::List(offers)) = &req.offers {
            self.offer(cx, &ih, &me, offers);
        }
        if let (Some(answer), Some(to), Some(offer_id)) = (answer, to, req.offer_id) {
            let Some(target) = self
                .swarms
                .get(&ih)
                .and_then(|s| s.find(&to).map(|i| s.peers[i].conn))
            else {
                return;
            };
            let b = &mut self.buf;
            b.clear();
            b.extend_from_slice(br#"{"action":"announce","answer":"#);
            b.extend_from_slice(answer.as_bytes());
            b.extend_from_slice(br#","offer_id":"#);
            b.extend_from_slice(offer_id.as_bytes());
            relayed_tail(b, &me, &ih);
            cx.send_lossy(target, Kind::Text, b);
            self.counters.answers_relayed += 1;
        }
    }

    /// Applies an announce to the swarm; false when the peer id is another socket's.
    fn update(
        &mut self,
        now: u64,
        conn: Handle,
        ih: Id20,
        me: Id20,
        event: Event,
        seeder: bool,
    ) -> bool {
        let swarm = self.swarms.entry(ih).or_default();
        match swarm.find(&me) {
            Some(i) if swarm.peers[i].conn != conn => {
                if swarm.peers.is_empty() {
                    self.swarms.remove(&ih);
                }
                return false;
            }
            Some(i) if event == Event::Stopped => {
                swarm.remove(i);
                self.peers -= 1;
                if swarm.peers.is_empty() {
                    self.swarms.remove(&ih);
                }
                if let Some(o) = self.owned.get_mut(&conn) {
                    if o.remove(&ih, &me) {
                        self.owned.remove(&conn);
                    }
                }
            }
            Some(i) => {
                let p = &mut swarm.peers[i];
                p.last = now;
                if seeder && !p.seeder {
                    p.seeder = true;
                    swarm.seeders += 1;
                }
            }
            None if event == Event::Stopped => {
                if swarm.peers.is_empty() {
                    self.swarms.remove(&ih);
                }
            }
            None => {
                if swarm.peers.len() >= self.opts.max_peers_per_swarm.max(1) {
                    let oldest = (0..swarm.peers.len()).min_by_key(|&i| swarm.peers[i].last);
                    if let Some(i) = oldest {
                        let gone = swarm.remove(i);
                        self.peers -= 1;
                        disown(&mut self.owned, gone.conn, &ih, &gone.id);
                    }
                }
                swarm.push(Peer {
                    id: me,
                    conn,
                    seeder,
                    last: now,
                });
                self.peers += 1;
                match self.owned.get_mut(&conn) {
                    Some(o) => o.push(ih, me),
                    None => {
                        self.owned.insert(conn, Owned::One(ih, me));
                    }
                }
            }
        }
        true
    }

    /// Sends the offers that are objects, each to a distinct random other peer of the swarm.
    fn offer(&mut self, cx: &mut Cx<'_>, ih: &Id20, me: &Id20, offers: &[Option<OfferEntry>]) {
        let Some(swarm) = self.swarms.get(ih) else {
            return;
        };
        let offers: Vec<&OfferEntry> = offers.iter().flatten().collect();
        let mine = swarm.find(me);
        let others = swarm.peers.len() - usize::from(mine.is_some());
        let want = offers.len().min(self.opts.max_offers).min(others);
        if want == 0 {
            return;
        }
        if self.rng == 0 {
            self.rng = u64::from_le_bytes(cx.random::<8>()) | 1;
        }
        let picked = pick(&mut self.rng, swarm.peers.len(), mine, want);
        for (offer, i) in offers.into_iter().zip(picked) {
            let b = &mut self.buf;
            b.clear();
            b.extend_from_slice(br#"{"action":"announce""#);
            if let Some(o) = offer.offer {
                b.extend_from_slice(br#","offer":"#);
                b.extend_from_slice(o.as_bytes());
            }
            if let Some(id) = offer.offer_id {
                b.extend_from_slice(br#","offer_id":"#);
                b.extend_from_slice(id.as_bytes());
            }
            relayed_tail(b, me, ih);
            // An offer that cannot arrive soon is worth nothing (its sender gives up on it):
            // a peer that falls behind loses offers, not its connection.
            cx.send_lossy(swarm.peers[i].conn, Kind::Text, b);
            self.counters.offers_relayed += 1;
        }
    }

    fn scrape(&mut self, cx: &mut Cx<'_>, conn: Handle, req: &Request) {
        const S: Option<&str> = Some("scrape");
        let hashes: Vec<Id20> = match req.info_hash {
            None | Some("null") => Vec::new(),
            Some(raw) => match scrape_hashes(raw) {
                Some(h) => h,
                None => return self.fail(cx, conn, S, None, "invalid info_hash"),
            },
        };
        let full = matches!(req.info_hash, None | Some("null"));
        if full && !self.opts.full_scrape {
            return self.fail(cx, conn, S, None, "Full scrapes are not allowed");
        }
        self.counters.scrapes += 1;
        let b = &mut self.buf;
        b.clear();
        b.extend_from_slice(br#"{"action":"scrape","files":{"#);
        let mut first = true;
        let mut file = |b: &mut Vec<u8>, ih: &Id20, s: Option<&Swarm>| {
            if !std::mem::take(&mut first) {
                b.push(b',');
            }
            let (c, i) = s.map_or((0, 0), Swarm::counts);
            write_bin(b, ih);
            b.extend_from_slice(br#":{"complete":"#);
            push_decimal(b, c.into());
            b.extend_from_slice(br#","incomplete":"#);
            push_decimal(b, i.into());
            b.extend_from_slice(br#","downloaded":"#);
            push_decimal(b, c.into());
            b.push(b'}');
        };
        if full {
            for (ih, s) in &self.swarms {
                file(b, ih, Some(s));
            }
        } else {
            for (n, ih) in hashes.iter().enumerate().take(MAX_SCRAPE) {
                // A repeated hash is one key of the object, as in the original.
                if !hashes[..n].contains(ih) {
                    file(b, ih, self.swarms.get(ih));
                }
            }
        }
        b.extend_from_slice(br#"},"flags":{"min_request_interval":"#);
        push_decimal(b, 5 * self.opts.interval_s);
        b.extend_from_slice(b"}}");
        cx.send(conn, Kind::Text, b);
    }

    /// `conn` is gone: every peer entry it owns leaves its swarm.
    pub fn close(&mut self, conn: Handle) {
        let Some(owned) = self.owned.remove(&conn) else {
            return;
        };
        for (ih, id) in owned.into_vec() {
            if let Some(s) = self.swarms.get_mut(&ih) {
                if let Some(i) = s.find(&id).filter(|&i| s.peers[i].conn == conn) {
                    s.remove(i);
                    self.peers -= 1;
                    if s.peers.is_empty() {
                        self.swarms.remove(&ih);
                    }
                }
            }
        }
    }

    /// Removes the peers that have not announced for the peer timeout.
    pub fn expire(&mut self, now: u64) {
        let cutoff = now.saturating_sub(self.opts.peer_timeout_ms);
        let owned = &mut self.owned;
        let mut gone = 0;
        self.swarms.retain(|ih, s| {
            let mut i = 0;
            while i < s.peers.len() {
                if s.peers[i].last <= cutoff {
                    let p = s.remove(i);
                    disown(owned, p.conn, ih, &p.id);
                    gone += 1;
                } else {
                    i += 1;
                }
            }
            !s.peers.is_empty()
        });
        self.peers -= gone;
    }

    /// How often [`Tracker::expire`] should run.
    pub fn sweep_every_ms(&self) -> u64 {
        (self.opts.peer_timeout_ms / 10).clamp(1_000, 60_000)
    }
}

fn disown(owned: &mut HashMap<Handle, Owned>, conn: Handle, ih: &Id20, id: &Id20) {
    if let Some(o) = owned.get_mut(&conn) {
        if o.remove(ih, id) {
            owned.remove(&conn);
        }
    }
}

/// `want` distinct indices of `0..n` other than `skip`, in random order.
fn pick(rng: &mut u64, n: usize, skip: Option<usize>, want: usize) -> Vec<usize> {
    let mut next = |below: usize| -> usize {
        // xorshift64*: fast, and good enough to spread offers over a swarm.
        *rng ^= *rng >> 12;
        *rng ^= *rng << 25;
        *rng ^= *rng >> 27;
        (rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as usize % below
    };
    let others = n - usize::from(skip.is_some());
    if others <= 4 * want {
        // Few enough to shuffle the candidates: a partial Fisher-Yates.
        let mut all: Vec<usize> = (0..n).filter(|&i| Some(i) != skip).collect();
        for k in 0..want {
            let j = k + next(all.len() - k);
            all.swap(k, j);
        }
        all.truncate(want);
        return all;
    }
    let mut out = Vec::with_capacity(want);
    while out.len() < want {
        let i = next(n);
        if Some(i) != skip && !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Event {
    Started,
    Completed,
    Stopped,
    Update,
}

/// The members of a request sigyard reads, each as the JSON text sent; a repeated member's
/// last value wins, as in `JSON.parse`.
#[derive(Default)]
struct Request<'a> {
    action: Option<&'a str>,
    info_hash: Option<&'a str>,
    peer_id: Option<&'a str>,
    event: Option<&'a str>,
    left: Option<&'a str>,
    offers: Option<Offers<'a>>,
    answer: Option<&'a str>,
    to_peer_id: Option<&'a str>,
    offer_id: Option<&'a str>,
}

/// `offers`: an array of entries, each an object or not; anything else is not offers.
enum Offers<'a> {
    List(Vec<Option<OfferEntry<'a>>>),
    NotAList,
}

#[derive(Default)]
struct OfferEntry<'a> {
    offer: Option<&'a str>,
    offer_id: Option<&'a str>,
}

/// A request's members, read from the message's text (a text frame's was checked as UTF-8 by
/// the shell). Nothing is copied: offers and answers are relayed as the text they came in, and
/// their SDPs are only checked to be JSON strings.
fn parse(msg: Message<'_>) -> Option<Request<'_>> {
    let mut req = Request::default();
    let is_object = Reader::document(msg.text()?, |r| {
        r.object(|r, name| {
            let member = match &*name {
                "offers" => {
                    req.offers = Some(offers(r)?);
                    return Some(());
                }
                "action" => &mut req.action,
                "info_hash" => &mut req.info_hash,
                "peer_id" => &mut req.peer_id,
                "event" => &mut req.event,
                "left" => &mut req.left,
                "answer" => &mut req.answer,
                "to_peer_id" => &mut req.to_peer_id,
                "offer_id" => &mut req.offer_id,
                _ => return Some(()), // skipped (and checked) by the reader
            };
            *member = Some(r.value()?);
            Some(())
        })
    })?;
    is_object.then_some(req)
}

fn offers<'a>(r: &mut Reader<'a>) -> Option<Offers<'a>> {
    let mut list = Vec::new();
    let is_list = r.array(|r| {
        let mut entry = OfferEntry::default();
        let is_object = r.object(|r, name| {
            match &*name {
                "offer" => entry.offer = Some(r.value()?),
                "offer_id" => entry.offer_id = Some(r.value()?),
                _ => {}
            }
            Some(())
        })?;
        list.push(is_object.then_some(entry));
        Some(())
    })?;
    Some(if is_list {
        Offers::List(list)
    } else {
        Offers::NotAList
    })
}

/// A value as JavaScript's template literal would show it (for `invalid action`).
fn js_text(raw: &str) -> String {
    match rawjson::string(raw) {
        Some(s) => s.into_owned(),
        None if raw.starts_with('{') => "[object Object]".into(),
        None => raw.to_owned(),
    }
}

/// A 20-character string of characters at most U+00FF, as its bytes.
///
/// Decoded in place, without allocating: `raw` is valid JSON, so after the opening quote every
/// byte is a character of its own (printable ASCII), the start of an escape (whose form the
/// request's reader checked), or the lead of a UTF-8 sequence, of two bytes (C2 or C3) for
/// U+0080–U+00FF. Any escape above `\u00ff` (surrogates among them) or longer sequence is a
/// character past U+00FF.
pub fn bin20(raw: &str) -> Option<Id20> {
    let inner = raw.as_bytes().strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let mut out = [0u8; 20];
    let (mut i, mut n) = (0, 0);
    while let Some(&x) = inner.get(i) {
        let (b, len) = match x {
            b'\\' => match *inner.get(i + 1)? {
                b'u' => (u8_escape(inner.get(i + 2..i + 6)?)?, 6),
                b'b' => (0x08, 2),
                b't' => (b'\t', 2),
                b'n' => (b'\n', 2),
                b'f' => (0x0c, 2),
                b'r' => (b'\r', 2),
                e => (e, 2), // `"`, `\\` and `/` stand for themselves
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

/// The character of a `\uXXXX` escape's four hex digits, if at most U+00FF.
fn u8_escape(hex: &[u8]) -> Option<u8> {
    let [b'0', b'0', hi, lo] = *hex else {
        return None;
    };
    let digit = |d: u8| char::from(d).to_digit(16);
    Some((digit(hi)? << 4 | digit(lo)?) as u8)
}

/// A scrape's `info_hash`: one such string or an array of them.
fn scrape_hashes(raw: &str) -> Option<Vec<Id20>> {
    if raw.starts_with('[') {
        let mut hashes = Vec::new();
        Reader::document(raw, |r| {
            r.array(|r| {
                hashes.push(bin20(r.value()?));
                Some(())
            })
        })?;
        return hashes.into_iter().collect();
    }
    bin20(raw).map(|h| vec![h])
}

/// JavaScript truthiness of a JSON value.
fn truthy(raw: &str) -> bool {
    match raw {
        "null" | "false" | "\"\"" => false,
        s if s.starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9']) => {
            s.parse::<f64>().is_ok_and(|x| x != 0.0)
        }
        _ => true,
    }
}

/// Whether `left` says nothing is left: a number or numeric string equal to zero.
fn left_is_zero(raw: &str) -> bool {
    let text = rawjson::string(raw).unwrap_or(raw.into());
    let t = text.trim();
    !t.is_empty() && t.parse::<f64>().is_ok_and(|x| x == 0.0)
}

/// `"peer_id":…,"info_hash":…}`, the end of a relayed offer or answer.
fn relayed_tail(b: &mut Vec<u8>, from: &Id20, ih: &Id20) {
    b.extend_from_slice(br#","peer_id":"#);
    write_bin(b, from);
    b.extend_from_slice(br#","info_hash":"#);
    write_bin(b, ih);
    b.push(b'}');
}

/// 20 bytes as the JSON string `JSON.stringify` writes for their latin1 characters: printable
/// ASCII as it is, `"` and `\\` and the controls escaped, the rest as two UTF-8 bytes.
pub fn write_bin(b: &mut Vec<u8>, bytes: &Id20) {
    // Each byte's text is copied as a whole table entry (8 bytes) and the end moves by its
    // length: an entry's tail is overwritten by the next one, or left past the end.
    let mut text = [0u8; 1 + 6 * 20 + 8];
    text[0] = b'"';
    let mut n = 1;
    for &x in bytes {
        let e = &BIN_TEXT[usize::from(x)];
        text[n..n + 8].copy_from_slice(e);
        n += usize::from(e[7]);
    }
    text[n] = b'"';
    b.extend_from_slice(&text[..=n]);
}

/// [`write_bin`]'s text for each byte: up to six bytes, then its length in the last one.
static BIN_TEXT: [[u8; 8]; 256] = bin_text();

const fn bin_text() -> [[u8; 8]; 256] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut t = [[0u8; 8]; 256];
    let mut i = 0;
    while i < 256 {
        let x = i as u8;
        t[i] = match x {
            b'"' => [b'\\', b'"', 0, 0, 0, 0, 0, 2],
            b'\\' => [b'\\', b'\\', 0, 0, 0, 0, 0, 2],
            0x08 => [b'\\', b'b', 0, 0, 0, 0, 0, 2],
            b'\t' => [b'\\', b't', 0, 0, 0, 0, 0, 2],
            b'\n' => [b'\\', b'n', 0, 0, 0, 0, 0, 2],
            0x0c => [b'\\', b'f', 0, 0, 0, 0, 0, 2],
            b'\r' => [b'\\', b'r', 0, 0, 0, 0, 0, 2],
            0..=0x1f => [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(x >> 4) as usize],
                HEX[(x & 15) as usize],
                0,
                6,
            ],
            0x20..=0x7f => [x, 0, 0, 0, 0, 0, 0, 1],
            _ => [0xc0 | (x >> 6), 0x80 | (x & 0x3f), 0, 0, 0, 0, 0, 2],
        };
        i += 1;
    }
    t
}

#[cfg(test)]
mod tests;
