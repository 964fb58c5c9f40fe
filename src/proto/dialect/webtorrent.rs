//! The WebTorrent tracker over WebSocket (PROTOCOLS-beyond.md §9), as a pure table: sockets are
//! [`Handle`]s, input is whole WebSocket messages, output goes through the call's [`Cx`].
//!
//! Owns: the `announce` and `scrape` requests with every `failure reason` of §9.6 and §9.9,
//! checked where the socket is served and told to the key of their swarm; the entries each
//! socket announced (for its limit and its close); scrapes gathered from their swarms' owners;
//! and, for the swarm keys placed here ([`swarms`]), the swarms and their peers (which socket
//! speaks for each, seeder or not, when it last announced), the offer fan-out to distinct
//! random peers, the answer relay, the per-swarm cap and peer expiry; the info-hash allow-list
//! and the counters an operator watches.
//!
//! Does not own: where a swarm's owner runs (the shell places its key), telling a tracker
//! socket from a y-webrtc one on a shared path (`anypath`), WebSocket keepalive (the shell's
//! pings), frame size (the shell's `--max-message-size`).
//!
//! Decisions of §9.9 taken: the bittorrent-tracker member orders; offers, answers and
//! `offer_id`s forwarded as the JSON sent; 20-character binary strings checked (each character
//! at most U+00FF) and written back as `JSON.stringify` would; errors name `action` (and
//! `info_hash`) when those were valid; `left` null or absent is a leecher; at most
//! [`Options::max_offers`] offers, none on `stopped`; unknown hashes scraped as zeros, at most
//! [`MAX_SCRAPE`] per request, full scrapes refused unless allowed; a peer entry belongs to the
//! socket that created it (other sockets' announces for it are ignored) and closing a socket
//! removes every entry it owns; empty swarms are deleted.

mod swarms;

use super::{Cx, Deadlines, Handle, HandleMap, Kind, Message};
use crate::proto::http::push_decimal;
use crate::proto::rawjson::{self, Reader};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use swarms::{Announce, Replied, Swarms, Told, INDEX_FROM};

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

    fn contains(&self, ih: &Id20, id: &Id20) -> bool {
        match self {
            Owned::One(a, b) => a == ih && b == id,
            Owned::Few(v) => v.iter().any(|(a, b)| a == ih && b == id),
            Owned::Many(s) => s.contains(&(*ih, *id)),
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

    fn iter(&self) -> impl Iterator<Item = (Id20, Id20)> + '_ {
        let (one, few, many) = match self {
            Owned::One(a, b) => (Some((*a, *b)), None, None),
            Owned::Few(v) => (None, Some(v.iter().copied()), None),
            Owned::Many(s) => (None, None, Some(s.iter().copied())),
        };
        one.into_iter()
            .chain(few.into_iter().flatten())
            .chain(many.into_iter().flatten())
    }

    fn into_vec(self) -> Vec<(Id20, Id20)> {
        match self {
            Owned::One(a, b) => vec![(a, b)],
            Owned::Few(v) => v,
            Owned::Many(s) => s.into_iter().collect(),
        }
    }
}

/// How long a scrape waits for the swarms' owners; then it is answered with what came (a
/// swarm that did not answer counts as unknown: zeros).
pub const SCRAPE_WAIT_MS: u64 = 5_000;

/// The placement key of the swarms every full scrape needs in one place.
const ALL_SWARMS: &str = "wt/*";

/// A scrape waiting for its swarms' counts.
struct Gather {
    conn: Handle,
    hashes: Vec<Id20>,
    counts: Vec<Option<(u32, u32)>>,
    left: usize,
    /// A full scrape: `files` comes whole from the one owner of every swarm.
    full: Option<Vec<(Id20, u32, u32)>>,
}

/// The tracker of one instance, in both its roles (ARCHITECTURE.md, "Where state lives"): it
/// serves sockets (checks their requests, keeps the entries each announced, gathers scrapes)
/// and owns the swarms whose keys the shell places on it ([`Swarms`]). A socket's requests are
/// told to their swarm's key, so the swarms of one server spread over its cores and nodes.
pub struct Tracker {
    opts: Options,
    swarms: Swarms,
    /// The entries each socket served here announced and still speaks for.
    owned: HandleMap<Owned>,
    scrapes: HashMap<u64, Gather>,
    scrape_deadlines: Deadlines<u64>,
    next_scrape: u64,
    counters: Counters,
    /// Reused for every message written.
    buf: Vec<u8>,
}

impl Tracker {
    pub fn new(opts: Options) -> Tracker {
        Tracker {
            opts,
            swarms: Swarms::default(),
            owned: HandleMap::default(),
            scrapes: HashMap::new(),
            scrape_deadlines: Deadlines::default(),
            next_scrape: 0,
            counters: Counters::default(),
            buf: Vec::new(),
        }
    }

    /// Swarms this instance owns.
    pub fn swarms(&self) -> usize {
        self.swarms.swarms.len()
    }

    /// Peers in the swarms this instance owns.
    pub fn peers(&self) -> usize {
        self.swarms.peers
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The key of swarm `ih` (every swarm's one key when full scrapes are allowed: they need
    /// every swarm in one place).
    pub fn key(&self, ih: &Id20) -> SwarmKey {
        let mut k = SwarmKey([0; 43], 3);
        if self.opts.full_scrape {
            k.0[..4].copy_from_slice(ALL_SWARMS.as_bytes());
            k.1 = 4;
            return k;
        }
        k.0[..3].copy_from_slice(b"wt/");
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (i, x) in ih.iter().enumerate() {
            k.0[3 + 2 * i] = HEX[usize::from(x >> 4)];
            k.0[4 + 2 * i] = HEX[usize::from(x & 15)];
        }
        k.1 = 43;
        k
    }

    /// Whether a key is a swarm key (`wt/…`).
    pub fn is_key(key: &str) -> bool {
        key.starts_with("wt/")
    }

    /// The info hash a swarm key names (`None` for the key of every swarm).
    fn key_hash(key: &str) -> Option<Id20> {
        let hex = key.strip_prefix("wt/").filter(|h| h.len() == 40)?;
        let mut ih = [0u8; 20];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let digit = |d: u8| char::from(d).to_digit(16);
            ih[i] = (digit(pair[0])? << 4 | digit(pair[1])?) as u8;
        }
        Some(ih)
    }

    /// Whether this instance holds state for a swarm key.
    pub fn holds(&self, key: &str) -> bool {
        if key == ALL_SWARMS {
            return !self.swarms.swarms.is_empty();
        }
        Tracker::key_hash(key).is_some_and(|ih| self.swarms.swarms.contains_key(&ih))
    }

    /// A swarm key this instance owned is owned elsewhere now: its swarms here go (their
    /// peers' sockets announce again to the new owner).
    pub fn forget(&mut self, key: &str) {
        if key == ALL_SWARMS {
            self.swarms.swarms.clear();
            self.swarms.peers = 0;
        } else if let Some(s) = Tracker::key_hash(key).and_then(|ih| self.swarms.swarms.remove(&ih))
        {
            self.swarms.peers -= s.peers.len();
        }
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

    /// Checks an announce and tells it to its swarm.
    fn announce(&mut self, cx: &mut Cx<'_>, conn: Handle, req: &Request) {
        const A: Option<&str> = Some("announce");
        let Some(ih) = req.info_hash.and_then(bin20) else {
            return self.fail(cx, conn, A, None, "invalid info_hash");
        };
        let Some(me) = req.peer_id.and_then(bin20) else {
            return self.fail(cx, conn, A, Some(&ih), "invalid peer_id");
        };
        let answer = req.answer.filter(|a| truthy(a));
        let answer = match answer {
            Some(a) => match req.to_peer_id.and_then(bin20) {
                Some(to) => Some((to, a.as_bytes(), req.offer_id.map(str::as_bytes))),
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
        if event == Event::Stopped {
            disown(&mut self.owned, conn, &ih, &me);
        } else {
            match self.owned.get_mut(&conn) {
                Some(o) if o.contains(&ih, &me) => {}
                Some(o) if o.len() >= self.opts.max_peers_per_connection => {
                    let reason = "too many torrents announced on this connection";
                    return self.fail(cx, conn, A, Some(&ih), reason);
                }
                Some(o) => o.push(ih, me),
                None if self.opts.max_peers_per_connection == 0 => {
                    let reason = "too many torrents announced on this connection";
                    return self.fail(cx, conn, A, Some(&ih), reason);
                }
                None => {
                    self.owned.insert(conn, Owned::One(ih, me));
                }
            }
        }
        let offers = match (&req.offers, event) {
            (Some(Offers::List(list)), e) if e != Event::Stopped => list
                .iter()
                .flatten()
                .map(|o| (o.offer.map(str::as_bytes), o.offer_id.map(str::as_bytes)))
                .collect(),
            _ => Vec::new(),
        };
        let told = Told::Announce(Announce {
            ih,
            me,
            event,
            seeder,
            offers,
            answer,
        });
        let key = self.key(&ih);
        cx.tell_with(key.as_str(), conn, |b| told.encode(b));
    }

    /// Checks a scrape and asks each of its swarms for their counts.
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
        let id = self.next_scrape;
        self.next_scrape += 1;
        let mut g = Gather {
            conn,
            hashes: Vec::new(),
            counts: Vec::new(),
            left: 0,
            full: None,
        };
        if full {
            g.left = 1;
            cx.tell_with(ALL_SWARMS, conn, |b| {
                Told::CountAll { scrape: id }.encode(b)
            });
        } else {
            for (n, ih) in hashes.iter().enumerate().take(MAX_SCRAPE) {
                // A repeated hash is one key of the object, as in the original.
                if !hashes[..n].contains(ih) {
                    g.hashes.push(*ih);
                }
            }
            for (index, ih) in g.hashes.iter().enumerate() {
                let told = Told::Count {
                    ih: *ih,
                    scrape: id,
                    index: index as u16,
                };
                cx.tell_with(self.key(ih).as_str(), conn, |b| told.encode(b));
            }
            g.counts = vec![None; g.hashes.len()];
            g.left = g.hashes.len();
        }
        if g.left == 0 {
            return self.answer_scrape(cx, g);
        }
        self.scrapes.insert(id, g);
        self.scrape_deadlines.push(cx.now + SCRAPE_WAIT_MS, id);
    }

    fn answer_scrape(&mut self, cx: &mut Cx<'_>, g: Gather) {
        let b = &mut self.buf;
        b.clear();
        b.extend_from_slice(br#"{"action":"scrape","files":{"#);
        let mut first = true;
        let mut file = |b: &mut Vec<u8>, ih: &Id20, (c, i): (u32, u32)| {
            if !std::mem::take(&mut first) {
                b.push(b',');
            }
            write_bin(b, ih);
            b.extend_from_slice(br#":{"complete":"#);
            push_decimal(b, c.into());
            b.extend_from_slice(br#","incomplete":"#);
            push_decimal(b, i.into());
            b.extend_from_slice(br#","downloaded":"#);
            push_decimal(b, c.into());
            b.push(b'}');
        };
        for (ih, c, i) in g.full.iter().flatten() {
            file(b, ih, (*c, *i));
        }
        for (ih, counts) in g.hashes.iter().zip(&g.counts) {
            file(b, ih, counts.unwrap_or((0, 0)));
        }
        b.extend_from_slice(br#"},"flags":{"min_request_interval":"#);
        push_decimal(b, 5 * self.opts.interval_s);
        b.extend_from_slice(b"}}");
        cx.send(g.conn, Kind::Text, b);
    }

    /// A message told to a swarm key this instance owns.
    pub fn told(&mut self, cx: &mut Cx<'_>, from: Handle, payload: &[u8]) {
        if let Some(t) = Told::decode(payload) {
            let (opts, c) = (&self.opts, &mut self.counters);
            self.swarms.told(cx, opts, c, from, t);
        }
    }

    /// A swarm owner's reply about `conn`, a socket served here.
    pub fn replied(&mut self, cx: &mut Cx<'_>, conn: Handle, payload: &[u8]) {
        match Replied::decode(payload) {
            Some(Replied::Dropped { ih, id }) => disown(&mut self.owned, conn, &ih, &id),
            Some(Replied::Counts {
                scrape,
                index,
                complete,
                incomplete,
            }) => {
                let Some(g) = self.scrapes.get_mut(&scrape).filter(|g| g.conn == conn) else {
                    return;
                };
                if let Some(slot) = g.counts.get_mut(usize::from(index)).filter(|s| s.is_none()) {
                    *slot = Some((complete, incomplete));
                    g.left -= 1;
                }
                if g.left == 0 {
                    if let Some(g) = self.scrapes.remove(&scrape) {
                        self.answer_scrape(cx, g);
                    }
                }
            }
            Some(Replied::All { scrape, files }) => {
                if let Some(mut g) = self.scrapes.remove(&scrape) {
                    g.full = Some(files);
                    self.answer_scrape(cx, g);
                }
            }
            None => {}
        }
    }

    /// `conn` is gone: every swarm it announced to hears that its peers leave.
    pub fn close(&mut self, cx: &mut Cx<'_>, conn: Handle) {
        if !self.scrapes.is_empty() {
            self.scrapes.retain(|_, g| g.conn != conn);
        }
        let Some(owned) = self.owned.remove(&conn) else {
            return;
        };
        for (ih, id) in owned.into_vec() {
            let key = self.key(&ih);
            cx.tell_with(key.as_str(), conn, |b| Told::Leave { ih, id }.encode(b));
        }
    }

    /// Sockets on cluster nodes that are gone leave the swarms owned here; the sockets served
    /// here rejoin every swarm they announced to, at once (their swarms' owner may have been
    /// lost with its swarms), rather than at their next announce.
    pub fn lost(&mut self, cx: &mut Cx<'_>, lost: &dyn Fn(Handle) -> bool) {
        self.swarms.lost(lost);
        for (&conn, owned) in &self.owned {
            for (ih, id) in owned.iter() {
                let key = self.key(&ih);
                cx.tell_with(key.as_str(), conn, |b| Told::Rejoin { ih, id }.encode(b));
            }
        }
    }

    /// Removes the peers that have not announced for the peer timeout, and answers the
    /// scrapes that waited too long.
    pub fn expire(&mut self, cx: &mut Cx<'_>) {
        self.swarms.expire(cx, self.opts.peer_timeout_ms);
        while let Some((_, id)) = self.scrape_deadlines.pop_due(cx.now) {
            if let Some(g) = self.scrapes.remove(&id) {
                self.answer_scrape(cx, g);
            }
        }
    }

    /// When [`Tracker::expire`] should run next, after a sweep at `swept`.
    pub fn next_sweep(&self, swept: u64) -> Option<u64> {
        let sweep = (self.swarms.peers > 0).then(|| swept + self.sweep_every_ms());
        match (sweep, self.scrape_deadlines.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How often peers are swept for expiry.
    pub fn sweep_every_ms(&self) -> u64 {
        (self.opts.peer_timeout_ms / 10).clamp(1_000, 60_000)
    }
}

/// A swarm's placement key, written without allocating.
pub struct SwarmKey([u8; 43], usize);

impl SwarmKey {
    pub fn as_str(&self) -> &str {
        // Written from ASCII only.
        std::str::from_utf8(&self.0[..self.1]).unwrap_or(ALL_SWARMS)
    }
}

fn disown(owned: &mut HandleMap<Owned>, conn: Handle, ih: &Id20, id: &Id20) {
    if let Some(o) = owned.get_mut(&conn) {
        if o.remove(ih, id) {
            owned.remove(&conn);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Event {
    Started = 1,
    Completed = 2,
    Stopped = 3,
    Update = 4,
}

impl Event {
    fn from_u8(b: u8) -> Option<Event> {
        Some(match b {
            1 => Event::Started,
            2 => Event::Completed,
            3 => Event::Stopped,
            4 => Event::Update,
            _ => return None,
        })
    }
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
///
/// Ids are random bytes: whether the next character is one byte or two cannot be predicted, so
/// that choice is made by arithmetic rather than a branch (a mispredicted branch on every
/// other character cost more than the decoding); only the rarer escapes take a branch.
pub fn bin20(raw: &str) -> Option<Id20> {
    let inner = raw.as_bytes().strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    let mut out = [0u8; 20];
    let (mut i, mut bad) = (0, false);
    for b in &mut out {
        let x = *inner.get(i)?;
        let y = inner.get(i + 1).copied().unwrap_or(0);
        if x == b'\\' {
            let (v, len) = match y {
                b'u' => (u8_escape(inner.get(i + 2..i + 6)?)?, 6),
                b'b' => (0x08, 2),
                b't' => (b'\t', 2),
                b'n' => (b'\n', 2),
                b'f' => (0x0c, 2),
                b'r' => (b'\r', 2),
                e => (e, 2), // `"`, `\\` and `/` stand for themselves
            };
            *b = v;
            i += len;
            continue;
        }
        // A byte from 0x80 leads two (only C2 and C3 do: U+0080–U+00FF).
        let two = x >= 0x80;
        bad |= two & ((x & 0xfe) != 0xc2);
        let wide = (x << 6) | (y & 0x3f);
        *b = x ^ ((x ^ wide) & 0u8.wrapping_sub(u8::from(two)));
        i += 1 + usize::from(two);
    }
    (!bad && i == inner.len()).then_some(out)
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
