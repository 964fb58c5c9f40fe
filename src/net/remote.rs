//! A core's side of the cluster (ARCHITECTURE.md, "The cluster"): requests whose dialect
//! instance lives on another node, the connections of other nodes whose dialect lives here,
//! and the records that carry both ([`crate::proto::cluster`]).
//!
//! The edge (the node holding a client's socket) keeps everything about the socket: the
//! request stays unread while it waits for the owner's answer, exactly as it does while it
//! moves to another core, and is read again when the answer comes. The owner calls its dialect
//! with the edge's handle, which names the edge's node, so outputs to it turn into records
//! here. Dialects never learn which of their connections are remote.

use crate::cluster::{Cluster, ClusterMsg, Gone, Job};
use crate::net::flow::{call, forward};
use crate::net::reactor::{live, Core, Reactor};
use crate::net::slot::{tx_force, Owner, Placed};
use crate::net::{handle, handle_node};
use crate::proto::cluster::{records, Record, Remote, VANISHED};
use crate::proto::dialect::{upgrade_required, Answer, Handle, HandleMap, Kind, Message, Output};
use crate::proto::http::{parse_request, HttpLimits, RequestHead, Response};
use crate::registry::ROUTES;
use crate::warn;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// A batch for one node is sent once it reaches this size, even mid-iteration.
const BATCH_BYTES: usize = 256 * 1024;

pub(crate) struct Link {
    pub(crate) cluster: Arc<Cluster>,
    /// Records waiting for the end of this loop iteration, one batch per node.
    out: Vec<(u16, Vec<u8>)>,
    /// Connections of other nodes held by a dialect of this core.
    remotes: HandleMap<RemoteConn>,
    /// Keys this node claimed that open connections here were placed by, with their count:
    /// their claims are refreshed while any is open.
    keys: HashMap<Box<str>, u32>,
    /// Connections not read while Redis falls behind ([`Cluster::pressed`]), by slab key and
    /// generation; driven again once it caught up.
    paused: Vec<(usize, u32)>,
    /// Who owns the keys told from and to this core.
    pub(crate) told: crate::net::told::Told,
    /// Nodes whose records were dropped this iteration (the queue to Redis was full): nothing
    /// more goes to them until their relationships have ended (a gap must not pass unseen).
    dropped: Vec<u16>,
}

/// A connection of another node that a dialect here holds.
struct RemoteConn {
    route: u8,
    /// The request head, while its body is awaited.
    head: Option<Box<RequestHead>>,
    /// The placement key it holds (see [`Link::keys`]).
    key: Option<Box<str>>,
}

impl Link {
    pub fn new(cluster: Arc<Cluster>) -> Link {
        Link {
            cluster,
            out: Vec::new(),
            remotes: HandleMap::default(),
            keys: HashMap::new(),
            paused: Vec::new(),
            told: Default::default(),
            dropped: Vec::new(),
        }
    }

    /// A connection placed by `key` is open here (or held by a dialect here).
    pub fn key_used(&mut self, key: &str) {
        match self.keys.get_mut(key) {
            Some(n) => *n += 1,
            None => {
                self.keys.insert(key.into(), 1);
            }
        }
    }

    pub fn key_released(&mut self, key: &str) {
        if let Some(n) = self.keys.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.keys.remove(key);
            }
        }
    }

    fn forget(&mut self, h: &Handle) -> Option<RemoteConn> {
        let rc = self.remotes.remove(h)?;
        if let Some(k) = &rc.key {
            self.key_released(k);
        }
        Some(rc)
    }
}

/// What a request gets when the node that serves it does not answer in time.
pub(crate) fn no_answer() -> Response {
    Response::text(
        504,
        "no answer from the cluster node this request belongs to",
    )
}

fn node_gone() -> Response {
    Response::text(502, "the cluster node this request belongs to is gone")
}

fn cluster_down() -> Response {
    Response::text(
        503,
        "the cluster cannot place this request now (its Redis is unreachable); try again",
    )
}

impl Core {
    /// Queue a record for `node` (sent at the end of the loop iteration).
    pub(crate) fn emit(&mut self, node: u16, rec: &Record<'_>) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        if link.dropped.contains(&node) {
            return;
        }
        let i = match link.out.iter().position(|(n, _)| *n == node) {
            Some(i) => i,
            None => {
                link.out.push((node, Vec::new()));
                link.out.len() - 1
            }
        };
        rec.encode(&mut link.out[i].1);
        link.cluster
            .stats
            .records_out
            .fetch_add(1, Ordering::Relaxed);
        if link.out[i].1.len() >= BATCH_BYTES {
            let (node, batch) = link.out.swap_remove(i);
            if link.cluster.submit(Job::Publish { node, batch }).is_err() {
                link.dropped.push(node);
            }
        }
    }

    /// Bytes a pipe end sends to a peer on another node before it waits for acknowledgements:
    /// what a pipe across nodes may hold in flight (in Redis, in the bridges, in mailboxes).
    pub(crate) fn pipe_window(&self) -> u32 {
        (4 * self.shared.cfg.limits.buffer_size).min(u32::MAX as usize) as u32
    }

    /// One piece a pipe end forwards to its peer on another node: a frame header and/or
    /// payload, and whether the writer is inside a frame after it.
    pub(crate) fn emit_data(&mut self, peer: Handle, mid: bool, head: &[u8], body: &[u8]) {
        let node = handle_node(peer);
        if !head.is_empty() {
            let mid_frame = !body.is_empty() || mid;
            let rec = Record::Data {
                to: peer,
                mid_frame,
                bytes: head,
            };
            self.emit(node, &rec);
        }
        if !body.is_empty() {
            let rec = Record::Data {
                to: peer,
                mid_frame: mid,
                bytes: body,
            };
            self.emit(node, &rec);
        }
    }

    /// How long a request waits for another node's answer.
    pub(crate) fn answer_wait(&self) -> Duration {
        2 * self.shared.cfg.cluster_options.node_timeout
    }

    /// A dialect's output for a connection of another node, as a record to it.
    pub(crate) fn forward_output(&mut self, o: Output, bytes: &[u8]) {
        match o {
            Output::Send {
                to,
                kind,
                payload,
                lossy,
            } => self.emit_for(
                to,
                &Record::Send {
                    to,
                    kind,
                    payload: &bytes[payload],
                    lossy,
                },
            ),
            Output::Close { conn, code, reason } => self.emit_for(
                conn,
                &Record::Close {
                    to: conn,
                    code,
                    reason: &reason,
                },
            ),
            Output::Respond { conn, response } => {
                if let Some(l) = self.link.as_mut() {
                    l.forget(&conn);
                }
                self.emit_for(
                    conn,
                    &Record::Respond {
                        to: conn,
                        response: *response,
                    },
                );
            }
            // Joined by the reactor ([`Reactor::output_elsewhere`]); a store operation is for
            // a request of this core; tells and replies are routed by the reactor.
            Output::Pipe { .. }
            | Output::Store { .. }
            | Output::Tell { .. }
            | Output::Reply { .. } => {}
        }
    }
}

impl Reactor {
    /// A dialect's output naming a connection of another node.
    pub(crate) fn output_elsewhere(&mut self, o: Output, bytes: &[u8]) {
        match o {
            // Each end learns its peer: here directly, there by a `Link` to its node.
            Output::Pipe { a, b } => {
                for (x, y) in [(a, b), (b, a)] {
                    if handle_node(x) == self.core.node {
                        self.link_one(x, y);
                    } else {
                        self.core
                            .emit(handle_node(x), &Record::Link { to: x, peer: y });
                    }
                }
            }
            o => self.core.forward_output(o, bytes),
        }
    }

    /// `conn` (of this core) is now piped to `peer` (on another node).
    fn link_one(&mut self, conn: Handle, peer: Handle) {
        let c = &mut self.core;
        match live(&mut self.slots, c.here, conn) {
            Some((key, slot)) if slot.conn.is_open() => {
                slot.extra().peer = Some(peer);
                slot.conn.start_piping();
                c.queue(key, slot);
            }
            // Gone already: the other end must not wait for it.
            _ => {
                let end = Record::End {
                    to: peer,
                    code: VANISHED,
                    half_frame: false,
                };
                c.emit(handle_node(peer), &end);
            }
        }
    }

    /// A dialect's operation on its outside store (the cluster's Redis), for the request
    /// `conn`; without one (or when the bridge cannot take it) the dialect hears of a failure
    /// at once (an empty result).
    pub(crate) fn store(&mut self, conn: Handle, op: &[u8]) {
        let c = &mut self.core;
        if let Some(link) = c.link.as_ref() {
            let job = Job::Store {
                core: c.id as u16,
                conn,
                op: op.to_vec(),
            };
            if link.cluster.submit(job).is_ok() {
                return;
            }
        }
        self.stored(conn, &[]);
    }

    /// The outside store's result for `conn`: to the dialect that holds it.
    fn stored(&mut self, conn: Handle, result: &[u8]) {
        let Some(route) = live(&mut self.slots, self.core.here, conn).and_then(|(_, s)| s.route())
        else {
            return;
        };
        call(&mut self.core, ROUTES[route].dialect, |d, cx| {
            d.on_stored(cx, conn, result)
        });
    }

    /// Acknowledge what a pipe peer on another node sent, once it left our queue's high-water
    /// mark behind.
    pub(crate) fn ack_owed(&mut self, key: usize) {
        let c = &mut self.core;
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let high_water = c.shared.cfg.limits.buffer_size;
        let pending = slot.pending_out();
        // Credit goes back a quarter window at a time, not per record: a writer that is
        // blocked has a full window owed here, so it always gets its credit once this queue
        // drains, and small messages cost one record each way instead of two.
        let batch = c.pipe_window() / 4;
        let Some(e) = slot.extra.as_mut().filter(|e| e.owed >= batch) else {
            return;
        };
        let Some(peer) = e.peer else {
            return;
        };
        if pending < high_water {
            let n = std::mem::take(&mut e.owed);
            c.emit(handle_node(peer), &Record::Ack { to: peer, n });
        }
    }

    /// True when an output names a connection of another core or node (a pipe: of another
    /// node; its ends are on one core otherwise).
    pub(crate) fn elsewhere(&self, o: &Output) -> bool {
        let here = self.core.here;
        match o {
            Output::Send { to: h, .. }
            | Output::Close { conn: h, .. }
            | Output::Respond { conn: h, .. } => crate::net::resolve(*h).0 != here,
            Output::Pipe { a, b } => {
                let me = self.core.node;
                self.core.link.is_some() && (handle_node(*a) != me || handle_node(*b) != me)
            }
            Output::Store { .. } | Output::Tell { .. } | Output::Reply { .. } => false,
        }
    }

    /// Ask the cluster which node owns `k` (this core would, on this node). The request waits
    /// unread for the answer. Returns whether the request was answered (consumed) here.
    pub(crate) fn claim(
        &mut self,
        key: usize,
        route: usize,
        head: RequestHead,
        k: Box<str>,
    ) -> bool {
        let c = &mut self.core;
        let Some(slot) = self.slots.get_mut(key) else {
            return false;
        };
        let Some(link) = c.link.as_ref() else {
            return false;
        };
        let job = Job::Claim {
            core: c.id as u16,
            waiter: Some((key, slot.gen())),
            key: k.clone(),
        };
        if link.cluster.submit(job).is_err() {
            self.answer(key, Some(route), head, Answer::Respond(cluster_down()));
            return true;
        }
        let until = c.tick().after(c.answer_wait());
        slot.conn.await_elsewhere(until);
        slot.extra().placed = Some(Box::new(Placed {
            key: Some(k),
            ..Placed::default()
        }));
        false
    }

    /// The request belongs to a dialect instance on `owner`'s node: send it there, and wait
    /// (unread) for the answer. An upgrade's headers are checked here first.
    pub(crate) fn open_elsewhere(
        &mut self,
        key: usize,
        head: &RequestHead,
        len: usize,
        route: usize,
        placement_key: Option<Box<str>>,
        owner: Owner,
    ) -> bool {
        if self
            .core
            .link
            .as_ref()
            .is_some_and(|l| l.cluster.is_gone(owner.node))
        {
            // A session or room of a node that is gone.
            self.answer(key, Some(route), head.clone(), Answer::Respond(node_gone()));
            return true;
        }
        let c = &mut self.core;
        let Some(slot) = self.slots.get_mut(key) else {
            return false;
        };
        if head.upgrade.is_some()
            && slot
                .conn
                .check_upgrade(head, tx_force(&mut slot.tx, &mut c.pool), &mut c.proto)
                .is_none()
        {
            return true; // refused for its headers
        }
        let edge = handle(c.here, key, slot.gen());
        let Some(rx) = slot.rx.pooled() else {
            return false;
        };
        let filled = rx.filled();
        let raw = &filled[..len.min(filled.len())];
        let rec = Record::Open {
            core: owner.core,
            edge,
            route: route as u8,
            key: placement_key.as_deref(),
            head: raw,
        };
        c.emit(owner.node, &rec);
        let until = c.tick().after(c.answer_wait());
        slot.conn.await_elsewhere(until);
        let e = slot.extra();
        e.remote = Some(owner);
        e.placed = Some(Box::new(Placed {
            key: placement_key,
            node: Some(owner.node),
            answer: None,
        }));
        c.queue(key, slot);
        false
    }

    /// Apply here the answer the owner's dialect gave.
    pub(crate) fn answer_from_owner(
        &mut self,
        key: usize,
        route: usize,
        head: RequestHead,
        r: Remote,
    ) {
        let c = &mut self.core;
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let answer = r.into_answer(c.now_ms);
        match answer {
            Answer::Upgrade => {
                let tx = tx_force(&mut slot.tx, &mut c.pool);
                if let Some(accept) = slot.conn.check_upgrade(&head, tx, &mut c.proto) {
                    let now = c.tick();
                    let tx = tx_force(&mut slot.tx, &mut c.pool);
                    slot.conn.upgrade(now, &accept, tx, &mut c.proto);
                    slot.route = route as u8;
                    slot.set_attached(true);
                }
                c.queue(key, slot);
            }
            a => {
                if matches!(a, Answer::Respond(_)) {
                    if let Some(e) = slot.extra.as_mut() {
                        e.remote = None;
                    }
                }
                self.answer(key, Some(route), head, a);
            }
        }
    }

    // ── the bridge's messages ──────────────────────────────────────────────────────────────

    /// Records from the cluster or another core, in order.
    pub(crate) fn on_records(&mut self, batch: &[u8]) {
        for rec in records(batch) {
            match rec {
                Ok(r) => self.on_record(r),
                Err(e) => {
                    warn!("core={} malformed cluster record: {e:?}", self.core.id);
                    break;
                }
            }
            self.flush_effects();
        }
    }

    pub(crate) fn on_cluster(&mut self, msg: ClusterMsg) {
        match msg {
            ClusterMsg::Records(batch) => self.on_records(&batch),
            ClusterMsg::Claimed { slot, gen, node } => self.claimed(slot, gen, node),
            ClusterMsg::KeyClaimed { key, node } => self.key_claimed(&key, node),
            // No connection went, but every owner of a key was forgotten: told again.
            ClusterMsg::Back => {
                for d in 0..self.core.dialects.len() {
                    call(&mut self.core, d, |dl, cx| dl.on_lost(cx, &|_| false));
                }
            }
            ClusterMsg::Gone(g) => self.nodes_gone(&g),
            ClusterMsg::Stored { conn, result } => self.stored(conn, &result),
            ClusterMsg::Taken(keys) => self.keys_taken(&keys),
            ClusterMsg::RefreshClaims { reclaim } => {
                let held = self.held_keys();
                if let Some(link) = self.core.link.as_ref() {
                    let mut keys: Vec<Box<str>> = link.keys.keys().cloned().collect();
                    keys.extend(held);
                    if !keys.is_empty() {
                        let core = self.core.id as u16;
                        let job = Job::Refresh {
                            core,
                            keys,
                            reclaim,
                        };
                        let _ = link.cluster.submit(job);
                    }
                }
            }
        }
        self.flush_effects();
    }

    /// Keys another node claimed while this one was seen gone (or Redis lost the claims): what
    /// this core still serves by them ends, so that one node answers for each key again.
    /// Connections placed by such a key, here or held from other nodes, close with 1012 (their
    /// clients come back and reach the key's owner); a dialect's state for a told key is
    /// dropped ([`crate::proto::dialect::Dialect::on_moved`]).
    fn keys_taken(&mut self, taken: &[(Box<str>, u16)]) {
        const REASON: &str = "this connection's key now belongs to another cluster node";
        // Per key: its new owner and the connections it ends here. (A key asked about twice
        // meanwhile is found the second time with nothing left.)
        let mut ended: HashMap<&str, (u16, usize)> = HashMap::new();
        for (k, n) in self.told_keys_taken(taken) {
            ended.insert(k, (n, 0));
        }
        let owners: HashMap<&str, u16> = taken.iter().map(|(k, n)| (&**k, *n)).collect();
        let owner = |k: Option<&str>| owners.get_key_value(k?).map(|(k, n)| (*k, *n));
        let here: Vec<(usize, &str, u16)> = self
            .slots
            .iter()
            .filter_map(|(i, s)| {
                let (k, n) = owner(s.extra.as_ref().and_then(|e| e.claim.as_deref()))?;
                Some((i, k, n))
            })
            .collect();
        for (i, k, n) in here {
            ended.entry(k).or_insert((n, 0)).1 += 1;
            self.go_away(i, 1012, REASON);
        }
        let c = &mut self.core;
        let Some(link) = c.link.as_mut() else {
            return;
        };
        let held: Vec<(Handle, &str, u16)> = link
            .remotes
            .iter()
            .filter_map(|(h, rc)| {
                let (k, n) = owner(rc.key.as_deref())?;
                Some((*h, k, n))
            })
            .collect();
        for &(h, k, n) in &held {
            ended.entry(k).or_insert((n, 0)).1 += 1;
            if let Some(rc) = link.forget(&h) {
                if let Some(r) = ROUTES.get(usize::from(rc.route)) {
                    c.gone.push((h, r.dialect));
                }
            }
        }
        for (h, ..) in held {
            let close = Record::Close {
                to: h,
                code: 1012,
                reason: REASON,
            };
            c.emit(handle_node(h), &close);
        }
        let Some(link) = c.link.as_ref() else {
            return;
        };
        for (key, (node, conns)) in ended {
            link.cluster
                .stats
                .keys_taken
                .fetch_add(1, Ordering::Relaxed);
            warn!(
                "core={} cluster: key {key:?} was claimed by node {node} while this node was \
                 seen gone: what this node served by it ends ({conns} connection(s) closed)",
                c.id
            );
        }
    }

    /// The answer to a claim: the request is read again, now knowing its node.
    fn claimed(&mut self, key: usize, gen: u32, node: Option<u16>) {
        let c = &mut self.core;
        let Some(slot) = self.slots.get_mut(key).filter(|s| s.gen() == gen) else {
            return;
        };
        if !slot.conn.is_parked() {
            return;
        }
        let p = slot.extra().placed.get_or_insert_with(Default::default);
        match node {
            Some(n) => p.node = Some(n),
            None => p.answer = Some(Box::new(Remote::Respond(cluster_down()))),
        }
        slot.conn.unpark(c.tick());
        c.queue(key, slot);
    }

    fn on_record(&mut self, rec: Record<'_>) {
        if let Some(to) = rec.to() {
            if live(&mut self.slots, self.core.here, to).is_none() {
                // Its connection is gone (what it says is dropped below; a `Link` is answered).
                if let Some(l) = self.core.link.as_ref() {
                    l.cluster
                        .stats
                        .undeliverable
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        match rec {
            Record::Open {
                edge,
                route,
                key,
                head,
                ..
            } => self.remote_open(edge, route, key, head),
            Record::Body {
                from, route, body, ..
            } => self.remote_body(from, route, body),
            Record::Message {
                from,
                route,
                kind,
                payload,
                ..
            } => {
                let known = self
                    .core
                    .link
                    .as_ref()
                    .is_some_and(|l| l.remotes.contains_key(&from));
                // The node that read a text message checked it as UTF-8; it crossed the
                // store since, so it is checked again for its `str`.
                let msg = match kind {
                    Kind::Binary => Ok(Message::Binary(payload)),
                    Kind::Text => std::str::from_utf8(payload).map(Message::Text),
                };
                match (ROUTES.get(usize::from(route)), msg) {
                    (Some(r), Ok(msg)) if known => {
                        call(&mut self.core, r.dialect, |d, cx| {
                            d.on_message(cx, from, msg)
                        });
                    }
                    (Some(_), Err(_)) if known => self.core.emit(
                        handle_node(from),
                        &Record::Close {
                            to: from,
                            code: crate::proto::ws::CLOSE_INVALID_PAYLOAD,
                            reason: "text message is not valid UTF-8 (RFC 6455 8.1)",
                        },
                    ),
                    // This node no longer knows the connection (it was told its node was gone).
                    _ => self.core.emit(
                        handle_node(from),
                        &Record::Close {
                            to: from,
                            code: 1011,
                            reason: "session lost by the cluster",
                        },
                    ),
                }
            }
            Record::Closed { from, .. } => {
                let held = self.core.link.as_mut().and_then(|l| l.forget(&from));
                if let Some(rc) = held {
                    if let Some(r) = ROUTES.get(usize::from(rc.route)) {
                        self.core.gone.push((from, r.dialect));
                    }
                }
            }
            Record::Answer { to, core, answer } => self.owner_answered(to, core, answer),
            // From another node: its relay latency is not measured.
            Record::Send {
                to,
                kind,
                payload,
                lossy,
            } => self.deliver(to, kind, payload, lossy, false),
            Record::Close { to, code, reason } => {
                if let Some((k, _)) = live(&mut self.slots, self.core.here, to) {
                    self.go_away(k, code, reason);
                }
            }
            Record::Respond { to, response } => self.answer_held(to, &response),
            Record::Link { to, peer } => self.link_one(to, peer),
            Record::Tell {
                dialect,
                hops,
                from,
                key,
                payload,
                ..
            } => self.told(dialect, hops, from, key, payload),
            Record::Reply { to, payload } => self.reply(to, payload),
            // The subscriber's, never a core's.
            Record::Reset { .. } => {}
            Record::Data {
                to,
                mid_frame,
                bytes,
            } => {
                let c = &mut self.core;
                if let Some((key, b)) = live(&mut self.slots, c.here, to) {
                    if b.conn.is_open() {
                        forward(b, &[], bytes, c);
                    }
                    let e = b.extra();
                    e.peer_mid = mid_frame;
                    e.owed = e.owed.saturating_add(bytes.len() as u32);
                    c.queue(key, b);
                }
            }
            Record::Ack { to, n } => {
                let c = &mut self.core;
                if let Some((key, a)) = live(&mut self.slots, c.here, to) {
                    let e = a.extra();
                    e.unacked = e.unacked.saturating_sub(n);
                    c.queue(key, a);
                }
            }
            Record::End {
                to,
                code,
                half_frame,
            } => {
                let c = &mut self.core;
                if let Some((key, b)) = live(&mut self.slots, c.here, to) {
                    if b.extra.as_mut().and_then(|e| e.peer.take()).is_some() {
                        let ended = (code != VANISHED).then_some(code);
                        self.peer_ended(key, ended, half_frame);
                    }
                }
            }
        }
    }

    /// A request of another node placed on a dialect here.
    fn remote_open(&mut self, edge: Handle, route: u8, key: Option<&str>, raw: &[u8]) {
        let limits = HttpLimits {
            max_header_bytes: self.core.shared.limits.max_header_bytes,
            max_headers: self.core.shared.limits.max_headers,
        };
        let head = match parse_request(raw, &limits) {
            Ok(Some((h, _))) => h,
            _ => {
                let answer = Remote::Respond(Response::text(400, "bad request"));
                let core = self.core.id as u16;
                self.core.emit(
                    handle_node(edge),
                    &Record::Answer {
                        to: edge,
                        core,
                        answer,
                    },
                );
                return;
            }
        };
        let Some(r) = ROUTES.get(usize::from(route)) else {
            return;
        };
        let answer = call(&mut self.core, r.dialect, |d, cx| {
            d.on_request(cx, edge, key, &head)
        });
        let answer = match answer {
            Answer::Upgrade if head.upgrade.is_none() => Answer::Respond(upgrade_required()),
            a => a,
        };
        self.owner_reply(edge, route, head, answer, key);
    }

    /// The body of a request of another node.
    fn remote_body(&mut self, from: Handle, route: u8, body: &[u8]) {
        let head = self
            .core
            .link
            .as_mut()
            .and_then(|l| l.remotes.get_mut(&from))
            .and_then(|rc| rc.head.take());
        let (Some(head), Some(r)) = (head, ROUTES.get(usize::from(route))) else {
            return;
        };
        let answer = call(&mut self.core, r.dialect, |d, cx| {
            d.on_body(cx, from, &head, body)
        });
        self.owner_reply(from, route, *head, answer, None);
    }

    /// Send a dialect's answer to the edge, and remember what the dialect now holds.
    fn owner_reply(
        &mut self,
        edge: Handle,
        route: u8,
        head: RequestHead,
        answer: Answer,
        key: Option<&str>,
    ) {
        let c = &mut self.core;
        let Some(link) = c.link.as_mut() else {
            return;
        };
        link.forget(&edge);
        match answer {
            Answer::Upgrade | Answer::Hold { .. } => {
                if let Some(k) = key {
                    link.key_used(k);
                }
                let key = key.map(Box::from);
                link.remotes.insert(
                    edge,
                    RemoteConn {
                        route,
                        head: None,
                        key,
                    },
                );
            }
            Answer::ReadBody { .. } => {
                let head = Some(Box::new(head));
                link.remotes.insert(
                    edge,
                    RemoteConn {
                        route,
                        head,
                        key: None,
                    },
                );
            }
            Answer::Respond(_) => {}
        }
        let rec = Record::Answer {
            to: edge,
            core: c.id as u16,
            answer: Remote::of(answer, c.now_ms),
        };
        c.emit(handle_node(edge), &rec);
    }

    /// The owner answered a request of ours that waits (unread, or held for its body).
    fn owner_answered(&mut self, to: Handle, core: u16, answer: Remote) {
        let c = &mut self.core;
        let Some((key, slot)) = live(&mut self.slots, c.here, to) else {
            return;
        };
        if let Some(o) = slot.extra.as_mut().and_then(|e| e.remote.as_mut()) {
            o.core = core;
        }
        if slot.conn.is_parked() {
            slot.extra()
                .placed
                .get_or_insert_with(Default::default)
                .answer = Some(Box::new(answer));
            slot.conn.unpark(c.tick());
            c.queue(key, slot);
            // Read the request again now, so the answer is applied (an upgrade done) before the
            // records that follow it in the batch (the dialect's first messages).
            let mut fatal = false;
            self.process_input(key, &mut fatal);
            return;
        }
        if !slot.conn.is_held() {
            return;
        }
        match answer.into_answer(c.now_ms) {
            Answer::Respond(r) => self.answer_held(to, &r),
            Answer::Hold { until_ms, fallback } => {
                slot.conn
                    .rehold(crate::proto::time::Tick::from_ms(until_ms), fallback);
                self.schedule(key);
            }
            _ => self.answer_held(to, &Response::text(500, "internal error")),
        }
    }

    /// Nodes are gone: the dialects here hear that their connections there closed, and our
    /// connections served there end in their own terms.
    pub(crate) fn nodes_gone(&mut self, g: &Gone) {
        let me = self.core.node;
        let gone = |n: u16| match g {
            Gone::All => n != me,
            Gone::Nodes(v) | Gone::Lost(v) => v.contains(&n),
        };
        // What the dialects were told of there, and their owners of keys there.
        self.forget_owners(g);
        let lost = |h: Handle| gone(handle_node(h));
        for d in 0..self.core.dialects.len() {
            call(&mut self.core, d, |dl, cx| dl.on_lost(cx, &lost));
        }
        if let Some(link) = self.core.link.as_mut() {
            let lost: Vec<Handle> = link
                .remotes
                .keys()
                .filter(|h| gone(handle_node(**h)))
                .copied()
                .collect();
            for h in lost {
                if let Some(rc) = link.forget(&h) {
                    if let Some(r) = ROUTES.get(usize::from(rc.route)) {
                        self.core.gone.push((h, r.dialect));
                    }
                }
            }
        }
        // Pipe ends whose peer was there: it vanished (perhaps inside a frame).
        let here = self.core.here;
        let piped_there: Vec<usize> = self
            .slots
            .iter()
            .filter(|(_, s)| {
                s.peer()
                    .is_some_and(|p| crate::net::resolve(p).0 != here && gone(handle_node(p)))
            })
            .map(|(k, _)| k)
            .collect();
        for key in piped_there {
            let Some(e) = self.slots.get_mut(key).and_then(|s| s.extra.as_mut()) else {
                continue;
            };
            e.peer = None;
            let half = std::mem::take(&mut e.peer_mid);
            self.peer_ended(key, None, half);
        }
        let served_there: Vec<usize> = self
            .slots
            .iter()
            .filter(|(_, s)| {
                s.extra
                    .as_ref()
                    .and_then(|e| e.remote)
                    .is_some_and(|o| gone(o.node))
            })
            .map(|(k, _)| k)
            .collect();
        for key in served_there {
            let c = &mut self.core;
            let Some(slot) = self.slots.get_mut(key) else {
                continue;
            };
            let Some(e) = slot.extra.as_mut() else {
                continue;
            };
            e.remote = None;
            if e.peer.is_some() {
                // A pipe outlives the dialect that joined it.
                slot.set_attached(false);
            } else if slot.conn.is_parked() {
                e.placed.get_or_insert_with(Default::default).answer =
                    Some(Box::new(Remote::Respond(node_gone())));
                slot.conn.unpark(c.tick());
                c.queue(key, slot);
            } else if slot.conn.is_held() {
                let h = handle(c.here, key, slot.gen());
                self.answer_held(h, &node_gone());
            } else {
                slot.set_attached(false);
                self.go_away(
                    key,
                    1012,
                    "the cluster node serving this connection is gone",
                );
            }
        }
        self.flush_effects();
    }

    /// True (and the slot noted, to be driven again) when `key`'s messages go to another node
    /// and Redis falls behind: its input waits in the kernel, pushing back on its client.
    pub(crate) fn cluster_holds(&mut self, key: usize) -> bool {
        let Some(link) = self.core.link.as_mut() else {
            return false;
        };
        let Some(slot) = self.slots.get(key) else {
            return false;
        };
        if slot.extra.as_ref().is_some_and(|e| e.remote.is_some()) && link.cluster.pressed() {
            link.paused.push((key, slot.gen()));
            return true;
        }
        false
    }

    /// Send what this iteration queued for other nodes.
    pub(crate) fn flush_cluster(&mut self) {
        let Some(link) = self.core.link.as_mut() else {
            return;
        };
        if !link.paused.is_empty() && !link.cluster.pressed() {
            for (key, gen) in std::mem::take(&mut link.paused) {
                if let Some(slot) = self.slots.get_mut(key).filter(|s| s.gen() == gen) {
                    self.core.queue(key, slot);
                }
            }
        }
        let Some(link) = self.core.link.as_mut() else {
            return;
        };
        if link.out.is_empty() && link.dropped.is_empty() {
            return;
        }
        let mut failed = std::mem::take(&mut link.dropped);
        for (node, batch) in link.out.drain(..) {
            if batch.is_empty() {
                continue;
            }
            if link.cluster.submit(Job::Publish { node, batch }).is_err() {
                failed.push(node);
            }
        }
        if !failed.is_empty() {
            failed.sort_unstable();
            failed.dedup();
            warn!(
                "core={} cluster queue full: records for node(s) {failed:?} dropped: ending \
                 every relationship with them",
                self.core.id
            );
            link.cluster.owe_reset(&failed);
            self.nodes_gone(&Gone::Lost(failed));
        }
    }
}
