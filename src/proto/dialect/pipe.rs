//! The holding table of the `/connection/:a/:b/:key` pipe: who is waiting for whom, and what
//! they sent while waiting.
//!
//! A socket on `/connection/A/B/key` *seeks* `(A, B, key)`. If the reciprocal `(B, A, key)` is
//! waiting, the two are paired and the waiting side's held messages go to the newcomer first,
//! in order and with their frame types; otherwise the newcomer waits. Held messages are bounded
//! in bytes and count; past either bound the waiting socket is told to close.
//!
//! What this module does not do: move bytes between paired sockets (the shell's cut-through
//! pipe does, with `proto::conn`'s piped mode, once the dialect asks for [`Output::Pipe`]), or
//! decide where sockets live (every socket of a pair is placed by the key of the unordered
//! pair, so both meet in one table).
//!
//! [`Output::Pipe`]: super::Output::Pipe

use super::HandleMap;
use super::{upgrade_required, Answer, Cx, Deadlines, Dialect, Handle, Kind, Latencies, Metric};
use super::{Message, Placement, Random};
use crate::proto::http::{percent_decode, RequestHead, Response};
use std::collections::HashMap;

/// What a `/connection` socket seeks: its own id, the peer's id, the document key
/// (percent-decoded path segments).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Seek {
    pub local: Box<str>,
    pub remote: Box<str>,
    pub key: Box<str>,
}

impl Seek {
    /// The seek of the peer that would pair with this one.
    pub fn reciprocal(&self) -> Seek {
        Seek {
            local: self.remote.clone(),
            remote: self.local.clone(),
            key: self.key.clone(),
        }
    }

    /// A key naming the unordered pair, equal for both sides: decides the owning core.
    pub fn pair_key(&self) -> String {
        let (x, y) = if self.local <= self.remote {
            (&self.local, &self.remote)
        } else {
            (&self.remote, &self.local)
        };
        // Length-prefixed, so no choice of ids can make two different pairs collide.
        format!(
            "{}:{x}{}:{y}{}:{}",
            x.len(),
            y.len(),
            self.key.len(),
            self.key
        )
    }
}

/// Bounds on what one waiting socket may have held for it.
#[derive(Clone, Copy, Debug)]
pub struct HoldLimits {
    pub max_bytes: usize,
    pub max_messages: usize,
}

struct Waiting {
    conn: Handle,
    held: Vec<(Kind, Vec<u8>)>,
    bytes: usize,
}

/// Outcome of a socket arriving.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Paired with `peer`, which was waiting; `held` are the messages it sent meanwhile, to be
    /// delivered to the newcomer before anything else.
    Paired {
        peer: Handle,
        held: Vec<(Kind, Vec<u8>)>,
    },
    /// Now waiting. If another socket was already waiting with the same seek, it is replaced
    /// (and returned): it stays open but will never be paired.
    Waiting { replaced: Option<Handle> },
}

/// Why a held message was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum HoldError {
    /// The socket is not (or no longer) the one waiting under its seek.
    NotWaiting,
    /// Over the byte or message bound: close the waiting socket.
    Full { bytes: usize, messages: usize },
}

/// One core's holding table.
#[derive(Default)]
pub struct PipeTable {
    waiting: HashMap<Seek, Waiting>,
}

impl PipeTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// A socket upgraded on `/connection/…` (on the core owning its pair).
    pub fn arrive(&mut self, seek: &Seek, conn: Handle) -> Arrival {
        if let Some(w) = self.waiting.remove(&seek.reciprocal()) {
            return Arrival::Paired {
                peer: w.conn,
                held: w.held,
            };
        }
        let old = self.waiting.insert(
            seek.clone(),
            Waiting {
                conn,
                held: Vec::new(),
                bytes: 0,
            },
        );
        Arrival::Waiting {
            replaced: old.map(|w| w.conn),
        }
    }

    /// A whole message from a waiting socket.
    pub fn hold(
        &mut self,
        seek: &Seek,
        conn: Handle,
        kind: Kind,
        payload: &[u8],
        limits: HoldLimits,
    ) -> Result<(), HoldError> {
        let w = match self.waiting.get_mut(seek) {
            Some(w) if w.conn == conn => w,
            _ => return Err(HoldError::NotWaiting),
        };
        if w.bytes + payload.len() > limits.max_bytes || w.held.len() >= limits.max_messages {
            return Err(HoldError::Full {
                bytes: limits.max_bytes,
                messages: limits.max_messages,
            });
        }
        w.bytes += payload.len();
        w.held.push((kind, payload.to_vec()));
        Ok(())
    }

    /// A socket closed: forget its waiting entry, but only if it is still the registered one
    /// (a replaced socket's close must not remove its replacement).
    pub fn leave(&mut self, seek: &Seek, conn: Handle) {
        if self.waiting.get(seek).is_some_and(|w| w.conn == conn) {
            self.waiting.remove(seek);
        }
    }

    /// Sockets waiting for their peer.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

// ── the dialect ───────────────────────────────────────────────────────────────────────────

/// What a `/connection/…` (or `/connect/…`) path asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PipePath {
    /// `/connection/:local/:remote/:key`, decoded.
    Seek(Seek),
    /// `/connection/:id` with one segment (the form in the original README): it can never be
    /// paired. The original completes the upgrade and closes; so does sigyard.
    Unpairable,
}

/// The pipe path of `path`, if it is one.
pub fn parse_path(path: &str) -> Option<PipePath> {
    let rest = path
        .strip_prefix("/connection/")
        .or_else(|| path.strip_prefix("/connect/"))?;
    let segs: Vec<&str> = rest.split('/').collect();
    match segs[..] {
        [a, b, key] if !a.is_empty() && !b.is_empty() => Some(PipePath::Seek(Seek {
            local: percent_decode(a)?.into(),
            remote: percent_decode(b)?.into(),
            key: percent_decode(key)?.into(),
        })),
        [_] => Some(PipePath::Unpairable),
        _ => None,
    }
}

/// The pipe's options.
#[derive(Clone, Copy, Debug)]
pub struct PipeOptions {
    pub hold: HoldLimits,
    /// How long a socket may wait for its peer (`None`: no limit); past it, close 1008.
    pub hold_timeout_ms: Option<u64>,
}

/// `/connection/:local/:remote/:key` as a dialect: a holding table until the peer arrives,
/// then a cut-through pipe ([`super::Output::Pipe`]) that the shell runs.
pub struct PipeDialect {
    table: PipeTable,
    opts: PipeOptions,
    /// Pipes joined, and how long their first end waited for the second.
    joined: u64,
    pairing_time: Latencies,
    /// Sockets waiting for their peer (or replaced while waiting), with what they seek and
    /// since when.
    waiting: HandleMap<(Seek, u64)>,
    deadlines: Deadlines<Handle>,
}

impl PipeDialect {
    pub fn new(opts: PipeOptions) -> Self {
        PipeDialect {
            table: PipeTable::new(),
            opts,
            joined: 0,
            pairing_time: Latencies::default(),
            waiting: HandleMap::default(),
            deadlines: Deadlines::default(),
        }
    }
}

impl Dialect for PipeDialect {
    fn place(&self, req: &RequestHead, _rand: &mut dyn Random) -> Placement {
        if req.upgrade.is_none() {
            return Placement::Answer(upgrade_required());
        }
        match parse_path(&req.path) {
            Some(PipePath::Seek(seek)) => Placement::Key(seek.pair_key().into()),
            Some(PipePath::Unpairable) => Placement::Here,
            None => Placement::Answer(Response::text(404, "not found")),
        }
    }

    fn on_request(
        &mut self,
        cx: &mut Cx<'_>,
        conn: Handle,
        _key: Option<&str>,
        req: &RequestHead,
    ) -> Answer {
        let seek = match parse_path(&req.path) {
            Some(PipePath::Seek(seek)) => seek,
            Some(PipePath::Unpairable) => {
                cx.close(
                    conn,
                    1008,
                    "cannot pair: use /connection/:local/:remote/:key",
                );
                return Answer::Upgrade;
            }
            None => return Answer::Respond(Response::text(404, "not found")),
        };
        match self.table.arrive(&seek, conn) {
            Arrival::Paired { peer, held } => {
                if let Some((_, since)) = self.waiting.remove(&peer) {
                    self.joined += 1;
                    self.pairing_time.observe_ms(cx.now.saturating_sub(since));
                }
                // The waiting side's messages go first, in order and with their types.
                for (kind, payload) in &held {
                    cx.send(conn, *kind, payload);
                }
                cx.pipe(conn, peer);
            }
            Arrival::Waiting { .. } => {
                self.waiting.insert(conn, (seek, cx.now));
                if let Some(t) = self.opts.hold_timeout_ms {
                    self.deadlines.push(cx.now + t, conn);
                }
            }
        }
        Answer::Upgrade
    }

    fn on_message(&mut self, cx: &mut Cx<'_>, conn: Handle, msg: Message<'_>) {
        // Messages of paired sockets never come here: the shell pipes them.
        let Some((seek, _)) = self.waiting.get(&conn) else {
            return;
        };
        match self
            .table
            .hold(seek, conn, msg.kind(), msg.as_bytes(), self.opts.hold)
        {
            Ok(()) => {}
            Err(HoldError::Full { .. }) => cx.close(
                conn,
                1008,
                "peer did not connect: pipe holding limit reached",
            ),
            // A socket replaced by a newer one for the same seek: nobody will read it.
            Err(HoldError::NotWaiting) => {}
        }
    }

    fn on_close(&mut self, _cx: &mut Cx<'_>, conn: Handle) {
        if let Some((seek, _)) = self.waiting.remove(&conn) {
            self.table.leave(&seek, conn);
        }
    }

    fn on_timeout(&mut self, cx: &mut Cx<'_>) {
        let Some(limit) = self.opts.hold_timeout_ms else {
            return;
        };
        while let Some((_, conn)) = self.deadlines.pop_due(cx.now) {
            // Still waiting, and since long enough (not a later socket on a reused handle).
            if self
                .waiting
                .get(&conn)
                .is_some_and(|&(_, since)| since + limit <= cx.now)
            {
                cx.close(conn, 1008, "peer did not connect in time");
            }
        }
    }

    fn poll_timeout(&self) -> Option<u64> {
        self.deadlines.next()
    }

    fn gauge(&self) -> u64 {
        self.table.waiting() as u64
    }

    fn metrics(&self, out: &mut [u64]) {
        self.pairing_time.write_then(out, [self.joined]);
    }
}

/// The metrics [`PipeDialect`] reports, in [`Dialect::metrics`] order: how long the first
/// end of each pipe waited, then pipes joined.
pub const METRICS: &[Metric] = &[
    Metric::histogram(
        "sigyard_pairing_seconds",
        "time from a pair's first end to its second: a cevitxe pipe's peer, a MewConnect receiver",
        r#"dialect="cevitxe_connection""#,
    ),
    Metric::counter(
        "sigyard_cevitxe_pipes_total",
        "cevitxe /connection pipes joined (the second end arrived)",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn seek(a: &str, b: &str, k: &str) -> Seek {
        Seek {
            local: a.into(),
            remote: b.into(),
            key: k.into(),
        }
    }
    const A: Handle = Handle::of(1, 1);
    const B: Handle = Handle::of(2, 1);
    const C: Handle = Handle::of(3, 1);
    const LIM: HoldLimits = HoldLimits {
        max_bytes: 10,
        max_messages: 3,
    };

    #[test]
    fn second_side_pairs_and_takes_held_messages_in_order() {
        let mut t = PipeTable::new();
        assert_eq!(
            t.arrive(&seek("a", "b", "k"), A),
            Arrival::Waiting { replaced: None }
        );
        t.hold(&seek("a", "b", "k"), A, Kind::Text, b"one", LIM)
            .unwrap();
        t.hold(&seek("a", "b", "k"), A, Kind::Binary, b"two", LIM)
            .unwrap();
        let got = t.arrive(&seek("b", "a", "k"), B);
        assert_eq!(
            got,
            Arrival::Paired {
                peer: A,
                held: vec![
                    (Kind::Text, b"one".to_vec()),
                    (Kind::Binary, b"two".to_vec())
                ]
            }
        );
        assert_eq!(t.waiting(), 0);
    }

    #[test]
    fn different_key_or_same_direction_does_not_pair() {
        let mut t = PipeTable::new();
        t.arrive(&seek("a", "b", "k"), A);
        assert!(matches!(
            t.arrive(&seek("b", "a", "other"), B),
            Arrival::Waiting { .. }
        ));
        assert_eq!(
            t.arrive(&seek("a", "b", "k"), C),
            Arrival::Waiting { replaced: Some(A) }
        );
        assert_eq!(t.waiting(), 2);
    }

    #[test]
    fn bounds_refuse_and_name_the_limit() {
        let mut t = PipeTable::new();
        let s = seek("a", "b", "k");
        t.arrive(&s, A);
        assert_eq!(
            t.hold(&s, A, Kind::Text, b"0123456789x", LIM),
            Err(HoldError::Full {
                bytes: 10,
                messages: 3
            })
        );
        for _ in 0..3 {
            t.hold(&s, A, Kind::Text, b"x", LIM).unwrap();
        }
        assert!(matches!(
            t.hold(&s, A, Kind::Text, b"x", LIM),
            Err(HoldError::Full { .. })
        ));
    }

    #[test]
    fn replaced_socket_cannot_hold_or_remove_its_replacement() {
        let mut t = PipeTable::new();
        let s = seek("a", "b", "k");
        t.arrive(&s, A);
        t.arrive(&s, C);
        assert_eq!(
            t.hold(&s, A, Kind::Text, b"x", LIM),
            Err(HoldError::NotWaiting)
        );
        t.leave(&s, A);
        assert_eq!(t.waiting(), 1);
        t.leave(&s, C);
        assert_eq!(t.waiting(), 0);
    }

    #[test]
    fn pair_key_is_the_same_from_both_sides_and_unambiguous() {
        assert_eq!(
            seek("a", "b", "k").pair_key(),
            seek("b", "a", "k").pair_key()
        );
        assert_ne!(
            seek("a:b", "c", "k").pair_key(),
            seek("a", "b:c", "k").pair_key()
        );
    }

    // ── through the dialect contract ───────────────────────────────────────────────────────

    use crate::proto::dialect::testing::{get, upgrade, Harness};
    use crate::proto::dialect::{Dialect, Placement};

    fn dialect(hold_timeout_ms: Option<u64>) -> Harness<PipeDialect> {
        Harness::new(PipeDialect::new(PipeOptions {
            hold: HoldLimits {
                max_bytes: 10,
                max_messages: 2,
            },
            hold_timeout_ms,
        }))
    }

    #[test]
    fn both_sides_meet_by_the_pair_key_and_the_waiting_side_s_messages_go_first() {
        let mut h = dialect(None);
        let a_path = "/connection/a/b/doc";
        let Placement::Key(ka) = h.place(&upgrade(a_path)) else {
            panic!("placed by key")
        };
        let Placement::Key(kb) = h.place(&upgrade("/connect/b/a/doc")) else {
            panic!("placed by key")
        };
        assert_eq!(ka, kb, "both ends of a pair meet on one instance");
        assert!(matches!(h.place(&get(a_path)), Placement::Answer(r) if r.status == 426));
        let a = h.open(a_path);
        h.message(a, Kind::Binary, b"one");
        h.message(a, Kind::Text, b"two");
        assert_eq!(h.d.gauge(), 1);
        let b = h.open("/connection/b/a/doc");
        assert_eq!(
            h.take_sent(),
            vec![
                (b, Kind::Binary, b"one".to_vec()),
                (b, Kind::Text, b"two".to_vec())
            ]
        );
        assert_eq!(h.piped, vec![(b, a)]);
        assert_eq!(h.d.gauge(), 0);
    }

    #[test]
    fn holding_limits_and_the_hold_timeout_close_with_1008() {
        let mut h = dialect(Some(5_000));
        let a = h.open("/connection/a/b/k");
        h.message(a, Kind::Text, b"12345");
        h.message(a, Kind::Text, b"67890");
        assert!(h.take_closed().is_empty());
        h.message(a, Kind::Text, b"x");
        let closed = h.take_closed();
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].0, closed[0].1), (a, 1008));
        h.close(a);
        // A waiting socket is closed when its peer does not come in time.
        let c = h.open("/connection/c/d/k");
        h.advance(4_999);
        assert!(h.take_closed().is_empty());
        h.advance(1);
        assert_eq!(
            h.take_closed(),
            vec![(c, 1008, "peer did not connect in time".to_string())]
        );
        // A one-segment path is upgraded and closed at once.
        let u = h.open("/connection/solo");
        assert_eq!(h.take_closed()[0].0, u);
    }
}
