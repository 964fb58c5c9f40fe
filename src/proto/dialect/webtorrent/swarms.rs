//! The tracker's swarms: the instance owning an info hash's key keeps that swarm's peers (which
//! socket speaks for each, seeder or not, when it last announced), applies the announces told
//! to it, sends the announce response, the offers and the answer straight to the sockets, and
//! counts the swarm for scrapes. What it is told and replies is [`Told`] and [`Replied`], in a
//! compact binary form (the instances serving the sockets checked the JSON already).

use super::{relayed_tail, write_bin, Counters, Event, Id20, Options};
use crate::proto::dialect::{Cx, Handle, Kind};
use crate::proto::http::push_decimal;
use std::collections::HashMap;

pub(super) struct Peer {
    pub id: Id20,
    pub conn: Handle,
    pub seeder: bool,
    /// When it last announced (the instance's clock).
    pub last: u64,
}

#[derive(Default)]
pub(super) struct Swarm {
    pub peers: Vec<Peer>,
    seeders: u32,
    /// Peer id → index in `peers`, once the swarm is too large for a scan.
    index: Option<HashMap<Id20, u32>>,
}

/// Swarms past this many peers keep an index; smaller ones are scanned.
pub(super) const INDEX_FROM: usize = 24;

impl Swarm {
    pub fn find(&self, id: &Id20) -> Option<usize> {
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

    /// (complete, incomplete).
    pub fn counts(&self) -> (u32, u32) {
        (self.seeders, self.peers.len() as u32 - self.seeders)
    }
}

/// A JSON text as the client sent it (the serving instance read it from a checked text frame;
/// the owner writes it into frames as bytes).
pub(super) type Text<'a> = &'a [u8];

/// An announce, checked by the instance serving its socket.
pub(super) struct Announce<'a> {
    pub ih: Id20,
    pub me: Id20,
    pub event: Event,
    pub seeder: bool,
    /// The offers that are objects: each one's `offer` and `offer_id` as the JSON sent.
    pub offers: Vec<(Option<Text<'a>>, Option<Text<'a>>)>,
    /// An answer: to whom, the `answer` and the `offer_id` as the JSON sent. An announce with
    /// an answer gets no response.
    pub answer: Option<(Id20, Text<'a>, Option<Text<'a>>)>,
}

/// What a swarm's owner is told.
pub(super) enum Told<'a> {
    Announce(Announce<'a>),
    /// The socket is gone: its peer `id` leaves swarm `ih`.
    Leave {
        ih: Id20,
        id: Id20,
    },
    /// The socket still speaks for peer `id` in swarm `ih`, which may have lost it (its owner
    /// was a node that is gone, or records were lost): it is in the swarm again, as a leecher
    /// until its next announce says more, without an announce's response or offers.
    Rejoin {
        ih: Id20,
        id: Id20,
    },
    /// Scrape `scrape` of the socket wants swarm `ih`'s counts, as its `index`th hash.
    Count {
        ih: Id20,
        scrape: u64,
        index: u16,
    },
    /// A full scrape: every swarm's counts (one owner holds them all then).
    CountAll {
        scrape: u64,
    },
}

/// What a swarm's owner replies to the instance serving a socket.
pub(super) enum Replied {
    Counts {
        scrape: u64,
        index: u16,
        complete: u32,
        incomplete: u32,
    },
    All {
        scrape: u64,
        files: Vec<(Id20, u32, u32)>,
    },
    /// The socket no longer speaks for peer `id` in swarm `ih` (another socket's, evicted,
    /// expired).
    Dropped { ih: Id20, id: Id20 },
}

const ANNOUNCE: u8 = 1;
const LEAVE: u8 = 2;
const COUNT: u8 = 3;
const COUNT_ALL: u8 = 4;
const COUNTS: u8 = 5;
const ALL: u8 = 6;
const DROPPED: u8 = 7;
const REJOIN: u8 = 8;

fn put_text(b: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => {
            b.extend_from_slice(&(s.len() as u32).to_le_bytes());
            b.extend_from_slice(s);
        }
        None => b.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
}

impl Told<'_> {
    pub fn encode(&self, b: &mut Vec<u8>) {
        match self {
            Told::Announce(a) => {
                b.push(ANNOUNCE);
                b.extend_from_slice(&a.ih);
                b.extend_from_slice(&a.me);
                b.push(a.event as u8);
                b.push(u8::from(a.seeder));
                b.extend_from_slice(&(a.offers.len() as u32).to_le_bytes());
                for (offer, id) in &a.offers {
                    put_text(b, *offer);
                    put_text(b, *id);
                }
                match a.answer {
                    Some((to, answer, offer_id)) => {
                        b.push(1);
                        b.extend_from_slice(&to);
                        put_text(b, Some(answer));
                        put_text(b, offer_id);
                    }
                    None => b.push(0),
                }
            }
            Told::Leave { ih, id } => {
                b.push(LEAVE);
                b.extend_from_slice(ih);
                b.extend_from_slice(id);
            }
            Told::Rejoin { ih, id } => {
                b.push(REJOIN);
                b.extend_from_slice(ih);
                b.extend_from_slice(id);
            }
            Told::Count { ih, scrape, index } => {
                b.push(COUNT);
                b.extend_from_slice(ih);
                b.extend_from_slice(&scrape.to_le_bytes());
                b.extend_from_slice(&index.to_le_bytes());
            }
            Told::CountAll { scrape } => {
                b.push(COUNT_ALL);
                b.extend_from_slice(&scrape.to_le_bytes());
            }
        }
    }
}

impl<'a> Told<'a> {
    /// `None` for bytes no instance wrote.
    pub fn decode(b: &'a [u8]) -> Option<Told<'a>> {
        let mut r = Bytes(b);
        let told = match r.u8()? {
            ANNOUNCE => {
                let ih = r.id()?;
                let me = r.id()?;
                let event = Event::from_u8(r.u8()?)?;
                let seeder = r.u8()? != 0;
                let n = r.u32()? as usize;
                let mut offers = Vec::with_capacity(n.min(64));
                for _ in 0..n {
                    offers.push((r.text()?, r.text()?));
                }
                let answer = match r.u8()? {
                    1 => Some((r.id()?, r.text()??, r.text()?)),
                    _ => None,
                };
                Told::Announce(Announce {
                    ih,
                    me,
                    event,
                    seeder,
                    offers,
                    answer,
                })
            }
            LEAVE => Told::Leave {
                ih: r.id()?,
                id: r.id()?,
            },
            REJOIN => Told::Rejoin {
                ih: r.id()?,
                id: r.id()?,
            },
            COUNT => Told::Count {
                ih: r.id()?,
                scrape: r.u64()?,
                index: r.u16()?,
            },
            COUNT_ALL => Told::CountAll { scrape: r.u64()? },
            _ => return None,
        };
        r.0.is_empty().then_some(told)
    }
}

impl Replied {
    pub fn encode(&self, b: &mut Vec<u8>) {
        match self {
            Replied::Counts {
                scrape,
                index,
                complete,
                incomplete,
            } => {
                b.push(COUNTS);
                b.extend_from_slice(&scrape.to_le_bytes());
                b.extend_from_slice(&index.to_le_bytes());
                b.extend_from_slice(&complete.to_le_bytes());
                b.extend_from_slice(&incomplete.to_le_bytes());
            }
            Replied::All { scrape, files } => {
                b.push(ALL);
                b.extend_from_slice(&scrape.to_le_bytes());
                b.extend_from_slice(&(files.len() as u32).to_le_bytes());
                for (ih, c, i) in files {
                    b.extend_from_slice(ih);
                    b.extend_from_slice(&c.to_le_bytes());
                    b.extend_from_slice(&i.to_le_bytes());
                }
            }
            Replied::Dropped { ih, id } => {
                b.push(DROPPED);
                b.extend_from_slice(ih);
                b.extend_from_slice(id);
            }
        }
    }

    pub fn decode(b: &[u8]) -> Option<Replied> {
        let mut r = Bytes(b);
        let replied = match r.u8()? {
            COUNTS => Replied::Counts {
                scrape: r.u64()?,
                index: r.u16()?,
                complete: r.u32()?,
                incomplete: r.u32()?,
            },
            ALL => {
                let scrape = r.u64()?;
                let n = r.u32()? as usize;
                let mut files = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    files.push((r.id()?, r.u32()?, r.u32()?));
                }
                Replied::All { scrape, files }
            }
            DROPPED => Replied::Dropped {
                ih: r.id()?,
                id: r.id()?,
            },
            _ => return None,
        };
        r.0.is_empty().then_some(replied)
    }
}

/// A reader of the forms above.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn id(&mut self) -> Option<Id20> {
        self.take(20)?.try_into().ok()
    }

    /// A [`Text`] or its absence (`Some(None)`); `None` when the bytes are not one.
    fn text(&mut self) -> Option<Option<Text<'a>>> {
        let n = self.u32()?;
        if n == u32::MAX {
            return Some(None);
        }
        self.take(n as usize).map(Some)
    }
}

/// The swarms an instance owns.
#[derive(Default)]
pub(super) struct Swarms {
    pub swarms: HashMap<Id20, Swarm>,
    pub peers: usize,
    /// For picking peers (not capabilities: seeded once from the shell's randomness).
    rng: u64,
    buf: Vec<u8>,
}

impl Swarms {
    /// What an instance serving `from` told the owner of a swarm.
    pub fn told(
        &mut self,
        cx: &mut Cx<'_>,
        opts: &Options,
        c: &mut Counters,
        from: Handle,
        t: Told,
    ) {
        match t {
            Told::Announce(a) => self.announce(cx, opts, c, from, &a),
            Told::Leave { ih, id } => {
                if let Some(s) = self.swarms.get_mut(&ih) {
                    if let Some(i) = s.find(&id).filter(|&i| s.peers[i].conn == from) {
                        s.remove(i);
                        self.peers -= 1;
                        if s.peers.is_empty() {
                            self.swarms.remove(&ih);
                        }
                    }
                }
            }
            Told::Rejoin { ih, id } => {
                let swarm = self.swarms.entry(ih).or_default();
                match swarm.find(&id) {
                    // Another socket speaks for that peer id now: not this one any more.
                    Some(i) if swarm.peers[i].conn != from => {
                        cx.reply_with(from, |b| Replied::Dropped { ih, id }.encode(b));
                    }
                    Some(_) => {}
                    None => self.join(cx, opts, from, ih, id, false),
                }
            }
            Told::Count { ih, scrape, index } => {
                let (complete, incomplete) = self.swarms.get(&ih).map_or((0, 0), Swarm::counts);
                let r = Replied::Counts {
                    scrape,
                    index,
                    complete,
                    incomplete,
                };
                cx.reply_with(from, |b| r.encode(b));
            }
            Told::CountAll { scrape } => {
                let files = self.swarms.iter().map(|(ih, s)| {
                    let (c, i) = s.counts();
                    (*ih, c, i)
                });
                let r = Replied::All {
                    scrape,
                    files: files.collect(),
                };
                cx.reply_with(from, |b| r.encode(b));
            }
        }
    }

    fn announce(
        &mut self,
        cx: &mut Cx<'_>,
        opts: &Options,
        c: &mut Counters,
        conn: Handle,
        a: &Announce,
    ) {
        let Announce { ih, me, event, .. } = *a;
        if !self.update(cx, opts, conn, a) {
            // Another socket's peer id: ignored, and not this socket's.
            cx.reply_with(conn, |b| Replied::Dropped { ih, id: me }.encode(b));
            return;
        }
        c.announces += 1;
        let (complete, incomplete) = self.swarms.get(&ih).map_or((0, 0), Swarm::counts);
        if a.answer.is_none() {
            let b = &mut self.buf;
            b.clear();
            b.extend_from_slice(br#"{"complete":"#);
            push_decimal(b, complete.into());
            b.extend_from_slice(br#","incomplete":"#);
            push_decimal(b, incomplete.into());
            b.extend_from_slice(br#","action":"announce","interval":"#);
            push_decimal(b, opts.interval_s);
            b.extend_from_slice(br#","info_hash":"#);
            write_bin(b, &ih);
            b.push(b'}');
            cx.send(conn, Kind::Text, b);
        }
        if event == Event::Stopped {
            return;
        }
        self.offer(cx, opts, c, &ih, &me, &a.offers);
        if let Some((to, answer, Some(offer_id))) = a.answer {
            let Some(target) = self
                .swarms
                .get(&ih)
                .and_then(|s| s.find(&to).map(|i| s.peers[i].conn))
            else {
                return;
            };
            cx.send_lossy_with(target, Kind::Text, |b| {
                b.extend_from_slice(br#"{"action":"announce","answer":"#);
                b.extend_from_slice(answer);
                b.extend_from_slice(br#","offer_id":"#);
                b.extend_from_slice(offer_id);
                relayed_tail(b, &me, &ih);
            });
            c.answers_relayed += 1;
        }
    }

    /// Applies an announce to its swarm; false when the peer id is another socket's.
    fn update(&mut self, cx: &mut Cx<'_>, opts: &Options, conn: Handle, a: &Announce) -> bool {
        let (ih, me) = (a.ih, a.me);
        let swarm = self.swarms.entry(ih).or_default();
        match swarm.find(&me) {
            Some(i) if swarm.peers[i].conn != conn => {
                if swarm.peers.is_empty() {
                    self.swarms.remove(&ih);
                }
                return false;
            }
            Some(i) if a.event == Event::Stopped => {
                swarm.remove(i);
                self.peers -= 1;
                if swarm.peers.is_empty() {
                    self.swarms.remove(&ih);
                }
            }
            Some(i) => {
                let p = &mut swarm.peers[i];
                p.last = cx.now;
                if a.seeder && !p.seeder {
                    p.seeder = true;
                    swarm.seeders += 1;
                }
            }
            None if a.event == Event::Stopped => {
                if swarm.peers.is_empty() {
                    self.swarms.remove(&ih);
                }
            }
            None => self.join(cx, opts, conn, ih, me, a.seeder),
        }
        true
    }

    /// Peer `id` of socket `conn` joins swarm `ih` (which exists), evicting the peer that
    /// announced least recently when the swarm is full.
    fn join(
        &mut self,
        cx: &mut Cx<'_>,
        opts: &Options,
        conn: Handle,
        ih: Id20,
        id: Id20,
        seeder: bool,
    ) {
        let Some(swarm) = self.swarms.get_mut(&ih) else {
            return;
        };
        if swarm.peers.len() >= opts.max_peers_per_swarm.max(1) {
            let oldest = (0..swarm.peers.len()).min_by_key(|&i| swarm.peers[i].last);
            if let Some(i) = oldest {
                let gone = swarm.remove(i);
                self.peers -= 1;
                let r = Replied::Dropped { ih, id: gone.id };
                cx.reply_with(gone.conn, |b| r.encode(b));
            }
        }
        swarm.push(Peer {
            id,
            conn,
            seeder,
            last: cx.now,
        });
        self.peers += 1;
    }

    /// Sends the offers, each to a distinct random other peer of the swarm.
    fn offer(
        &mut self,
        cx: &mut Cx<'_>,
        opts: &Options,
        c: &mut Counters,
        ih: &Id20,
        me: &Id20,
        offers: &[(Option<Text>, Option<Text>)],
    ) {
        let Some(swarm) = self.swarms.get(ih) else {
            return;
        };
        let mine = swarm.find(me);
        let others = swarm.peers.len() - usize::from(mine.is_some());
        let want = offers.len().min(opts.max_offers).min(others);
        if want == 0 {
            return;
        }
        if self.rng == 0 {
            self.rng = u64::from_le_bytes(cx.random::<8>()) | 1;
        }
        let picked = pick(&mut self.rng, swarm.peers.len(), mine, want);
        for ((offer, offer_id), i) in offers.iter().zip(picked) {
            // An offer that cannot arrive soon is worth nothing (its sender gives up on it):
            // a peer that falls behind loses offers, not its connection.
            cx.send_lossy_with(swarm.peers[i].conn, Kind::Text, |b| {
                b.extend_from_slice(br#"{"action":"announce""#);
                if let Some(o) = offer {
                    b.extend_from_slice(br#","offer":"#);
                    b.extend_from_slice(o);
                }
                if let Some(id) = offer_id {
                    b.extend_from_slice(br#","offer_id":"#);
                    b.extend_from_slice(id);
                }
                relayed_tail(b, me, ih);
            });
            c.offers_relayed += 1;
        }
    }

    /// Removes the peers that have not announced for the peer timeout; their sockets'
    /// instances hear of it.
    pub fn expire(&mut self, cx: &mut Cx<'_>, timeout_ms: u64) {
        let cutoff = cx.now.saturating_sub(timeout_ms);
        let mut gone = 0;
        self.swarms.retain(|ih, s| {
            let mut i = 0;
            while i < s.peers.len() {
                if s.peers[i].last <= cutoff {
                    let p = s.remove(i);
                    let r = Replied::Dropped { ih: *ih, id: p.id };
                    cx.reply_with(p.conn, |b| r.encode(b));
                    gone += 1;
                } else {
                    i += 1;
                }
            }
            !s.peers.is_empty()
        });
        self.peers -= gone;
    }

    /// The peers whose sockets were on nodes that are gone leave their swarms.
    pub fn lost(&mut self, lost: &dyn Fn(Handle) -> bool) {
        let mut gone = 0;
        self.swarms.retain(|_, s| {
            let mut i = 0;
            while i < s.peers.len() {
                if lost(s.peers[i].conn) {
                    s.remove(i);
                    gone += 1;
                } else {
                    i += 1;
                }
            }
            !s.peers.is_empty()
        });
        self.peers -= gone;
    }
}

/// `want` distinct indices of `0..n` other than `skip`, in random order.
pub(super) fn pick(rng: &mut u64, n: usize, skip: Option<usize>, want: usize) -> Vec<usize> {
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
