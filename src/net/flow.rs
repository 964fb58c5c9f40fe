//! From bytes to dialects and back: the reactor runs a slot's buffered input through its
//! connection machine ([`Reactor::process_input`]), takes every decision a step asks for
//! (route, placement, answer), hands messages to the dialect of the connection's route, and
//! applies what the dialects queued ([`Reactor::flush_effects`]).
//!
//! A request is routed by the registry, placed by its dialect, and moved before it is read
//! further if it belongs to another core ([`crate::net::owner`] of its key, or the core its
//! locator names); the dialect that owns it answers on that core. Dialect outputs name
//! connections by handle; this core resolves them in its slab.
//!
//! The pipe lives here too: two connections a dialect joined forward each other's data frames
//! cut-through ([`Reactor::pipe_forward`]), and what happens to one end when the other stops
//! is decided in one place ([`Reactor::pipe_end`]).

use crate::net::endpoints;
use crate::net::pool::RxBuf;
use crate::net::reactor::{live, Core, Reactor, Refusal};
use crate::net::slot::{tx_force, Owner, Placed, Slot};
use crate::net::{locator, owner, place_core, place_node, OsRandom};
use crate::proto::cluster::{Record, ANY_CORE};
use crate::proto::conn::Step;
use crate::proto::dialect::{Answer, Cx, Dialect, Direct, Handle, Kind, Output, Placement};
use crate::proto::http::{RequestHead, Response};
use crate::proto::time::Tick;
use crate::proto::ws::encode_frame;
use crate::registry::{Target, ROUTES};
use std::io::{self, IoSlice};

/// What to do after one step, once the slot is no longer borrowed.
enum Next {
    Stop,
    Again,
    Request(RequestHead, usize),
    Body(RequestHead, Vec<u8>),
}

impl Reactor {
    /// Run the slot's buffered input through its machine until it needs more bytes, waits
    /// for something, or stops. Returns whether anything happened.
    pub(crate) fn process_input(&mut self, key: usize, fatal: &mut bool) -> bool {
        let mut progress = false;
        if self.slots.get(key).is_some_and(Slot::proxy_header) {
            if !self.take_proxy_header(key) {
                return false;
            }
            progress = true;
        }
        loop {
            if self.slots.get(key).is_some_and(|s| s.forwarding()) {
                return self.pipe_forward(key) || progress;
            }
            if self.peer_mid_frame(key) {
                // A pipe peer is mid-frame into our send queue: our own replies must wait.
                return progress;
            }
            let next = self.step(key, fatal);
            self.flush_effects();
            match next {
                Next::Stop => return progress,
                Next::Again => {}
                Next::Request(head, len) => self.on_request(key, head, len),
                Next::Body(head, body) => self.on_body(key, head, body),
            }
            progress = true;
        }
    }

    /// Run the machine on the slot's buffered input, handing whole messages to the dialect,
    /// until a step needs the slot itself (a request, a body) or nothing more can be done
    /// now. Outputs that did not go straight to the connection are applied by the caller,
    /// once, after the batch.
    fn step(&mut self, key: usize, fatal: &mut bool) -> Next {
        let c = &mut self.core;
        let Some(slot) = self.slots.get_mut(key) else {
            return Next::Stop;
        };
        let high_water = c.shared.cfg.limits.buffer_size;
        let stopped = slot.conn.is_piped() || !slot.conn.wants_read(slot.pending_out(), high_water);
        if stopped && !slot.conn.is_closed() {
            return Next::Stop;
        }
        let now = c.tick();
        if !slot.rx.has_bytes() {
            if !slot.conn.is_reading_body() {
                return Next::Stop;
            }
            // Without input the machine writes nothing, but a body of length 0 is complete
            // at once.
            let mut none = Vec::new();
            let limits = &c.shared.limits;
            return match slot
                .conn
                .read(now, limits, &mut [], &mut none, &mut c.proto)
            {
                (Step::Body(head, body), _) => Next::Body(head, body),
                _ => Next::Stop,
            };
        }
        let (peer, route, me) = (slot.peer(), slot.route(), handle(c.here, key, slot.gen()));
        let remote = slot.extra.as_ref().and_then(|e| e.remote);
        if slot.tx.is_none() {
            slot.tx = c.pool.tx();
        }
        let (Some(tx), Some(rx)) = (slot.tx.as_mut(), slot.rx.buf(&mut c.pool, false)) else {
            c.starved.push((key, slot.gen()));
            return Next::Stop;
        };
        let limits = c.shared.limits.clone();
        let rates = {
            let l = &c.shared.cfg.limits;
            let r = |n: usize| crate::proto::rate::Rate::per_second(n as u64);
            (
                r(l.max_messages_per_second),
                r(l.max_message_bytes_per_second),
            )
        };
        let mut progress = false;
        while !rx.is_empty() {
            let mut too_fast = false;
            let (step, used) =
                slot.conn
                    .read(now, &limits, rx.filled(), &mut tx.data, &mut c.proto);
            let next = match step {
                Step::Idle => None,
                Step::Request { head, len } => Some(Next::Request(head, len)),
                Step::Body(head, body) => Some(Next::Body(head, body)),
                Step::Message(msg)
                    if rates.0.per_sec + rates.1.per_sec > 0 && {
                        let e = slot.extra.get_or_insert_with(Default::default);
                        let (m, b) = &mut **e.rate.get_or_insert_with(Default::default);
                        !(m.take(rates.0, c.now_ms, 1)
                            && b.take(rates.1, c.now_ms, msg.len() as u64))
                    } =>
                {
                    // Past its rate: not delivered, and the connection closes (below).
                    too_fast = true;
                    None
                }
                Step::Message(msg) => {
                    match (peer, route) {
                        // A message begun before the pipe opened: it goes to the peer whole.
                        (Some(peer), _) => c.out_send(peer, msg.kind(), msg.as_bytes()),
                        // The dialect serving it lives on another node.
                        (None, Some(route)) if remote.is_some() => {
                            if let Some(o) = remote {
                                c.emit(
                                    o.node,
                                    &Record::Message {
                                        core: o.core,
                                        from: me,
                                        route: route as u8,
                                        kind: msg.kind(),
                                        payload: msg.as_bytes(),
                                    },
                                );
                            }
                        }
                        (None, Some(route)) => {
                            // Replies to this connection (an echo, most answers) go straight
                            // onto its send queue while nothing else is queued before them.
                            let before = tx.data.len();
                            let direct = Some((me, &mut tx.data));
                            call_with(c, ROUTES[route].dialect, direct, |dialect, cx| {
                                dialect.on_message(cx, me, msg)
                            });
                            // Its replies, and what it queued for others (when applied), carry
                            // this turn's clock as their read time.
                            if tx.data.len() > before {
                                slot.stamp.relay(slot.route, c.clock_us);
                            }
                            c.from_message = true;
                        }
                        (None, None) => {}
                    }
                    None
                }
                Step::Forward { .. } | Step::Ended { .. } => {
                    // Only piped connections forward, and those go through `pipe_forward`.
                    *fatal = true;
                    Some(Next::Stop)
                }
            };
            rx.consume(used);
            if too_fast {
                c.shell.rate_limited += 1;
                let n = c.shell.rate_limited;
                c.rate_warn(format_args!(
                    "slot={key} closed 1008: sending past --max-messages-per-second or \
                     --max-message-bytes-per-second ({n} so far on this core)"
                ));
                slot.conn.close(now, 1008, "sending too fast", &mut tx.data);
            }
            if let Some(next) = next {
                return next;
            }
            if used == 0 {
                break;
            }
            progress = true;
            let open = slot.conn.wants_read(tx.len(), high_water);
            if slot.conn.is_piped() || !(open || slot.conn.is_closed()) {
                break;
            }
        }
        if progress {
            Next::Again
        } else {
            Next::Stop
        }
    }

    // ── requests ───────────────────────────────────────────────────────────────────────────

    /// A request head (its `len` bytes lead the input): route it, place it (moving the
    /// connection, unread, if it belongs elsewhere), and answer it.
    fn on_request(&mut self, key: usize, head: RequestHead, len: usize) {
        if self.answer_request(key, head, len) {
            if let Some(slot) = self.slots.get_mut(key) {
                consume(slot, len);
            }
        }
    }

    /// The PROXY protocol header a `--listen-proxy` connection starts with: consumed, and the
    /// client it names taken as the connection's address when the peer is a trusted proxy.
    /// False while it is incomplete, or when it is malformed (the connection is dropped) or
    /// its client is over its address's limit.
    fn take_proxy_header(&mut self, key: usize) -> bool {
        use crate::proto::proxy::{proxy_header, Proxied};
        let c = &mut self.core;
        let Some(slot) = self.slots.get_mut(key) else {
            return false;
        };
        let Some(rx) = slot.rx.pooled() else {
            return false;
        };
        match proxy_header(rx.filled()) {
            Ok(Proxied::Partial) => false,
            Err(why) => {
                crate::debug!("core={} slot={key} dropped: {why}", c.id);
                c.proto.rejected.push((400, "proxy_header"));
                slot.conn.abort();
                c.queue(key, slot);
                false
            }
            Ok(Proxied::Done { len, client }) => {
                rx.consume(len);
                let e = slot.extra();
                e.proxy_header = false;
                let trusted = std::mem::take(&mut e.trusted_peer);
                let Some(ip) = client.filter(|_| trusted) else {
                    return true;
                };
                let Err(refusal) = self.reaccount(key, ip) else {
                    return true;
                };
                if let Some(slot) = self.slots.get_mut(key) {
                    let (status, why) = refusal.answer();
                    crate::net::reactor::refuse_with(&mut slot.sock, false, status, why);
                    slot.conn.abort();
                    self.core.queue(key, slot);
                }
                false
            }
        }
    }

    /// The connection's client is `ip` (a trusted proxy said so): it counts against that
    /// address's limits instead of the proxy's. The refusal when that address is at one.
    fn reaccount(&mut self, key: usize, ip: std::net::IpAddr) -> Result<(), Refusal> {
        let c = &mut self.core;
        let Some(slot) = self.slots.get_mut(key) else {
            return Err(Refusal::PerIp);
        };
        c.shared.per_ip.remove(slot.ip_key);
        slot.ip_key = 0;
        let now = c.shared.started.elapsed().as_millis() as u64;
        if !c.shared.conn_rates.admit(crate::net::ip_key(ip), now) {
            c.shell.rejected_conn_rate += 1;
            c.rate_warn(format_args!(
                "refused {ip}: past --max-new-connections-per-ip"
            ));
            return Err(Refusal::ConnRate);
        }
        match c.shared.per_ip.try_add(ip) {
            Some(k) => {
                slot.ip_key = k;
                Ok(())
            }
            None => {
                c.shell.rejected_per_ip += 1;
                Err(Refusal::PerIp)
            }
        }
    }

    /// Route, place and answer a request head (its first `len` bytes of input); false when it
    /// stays in the input for the core it moves to, or until the cluster answers.
    fn answer_request(&mut self, key: usize, head: RequestHead, len: usize) -> bool {
        let shared = self.core.shared.clone();
        // The client a trusted proxy names in this request's forwarding headers, read once.
        let via_proxy = self
            .slots
            .get(key)
            .and_then(|s| s.extra.as_ref())
            .is_some_and(|e| e.trusted_peer || e.forwards);
        let behind = via_proxy
            .then(|| {
                crate::proto::proxy::client_behind(
                    head.forwarded.as_deref(),
                    head.forwarded_for.as_deref(),
                    &shared.cfg.trusted_proxies,
                )
            })
            .flatten();
        if self.slots.get(key).is_some_and(Slot::trusted_peer) {
            // The first request from a trusted proxy names the client behind it.
            if let Some(e) = self.slots.get_mut(key).and_then(|s| s.extra.as_mut()) {
                e.trusted_peer = false;
                e.forwards = true;
            }
            if let Some(ip) = behind {
                if let Err(refusal) = self.reaccount(key, ip) {
                    let (status, why) = refusal.answer();
                    let r = Response::text(status, why);
                    self.answer(key, None, head, Answer::Respond(r));
                    return true;
                }
            }
        }
        let route = match shared.registry.route(&head) {
            Target::Dialect(r) => r,
            op => {
                let resp = endpoints::respond(&shared, op, &head);
                self.answer(key, None, head, Answer::Respond(resp));
                return true;
            }
        };
        let Some(slot) = self.slots.get(key) else {
            return false;
        };
        let first_look = !slot.extra.as_ref().is_some_and(|e| e.placed.is_some());
        if head.upgrade.is_none() && first_look {
            // A plain request, on the core that read it (`--max-http-requests-per-ip`).
            let client = match slot.extra.as_ref().is_some_and(|e| e.forwards) {
                true => behind.map_or(0, crate::net::ip_key),
                false => slot.ip_key,
            };
            let now = shared.started.elapsed().as_millis() as u64;
            if !shared.http_rates.admit(client, now) {
                let c = &mut self.core;
                c.shell.rejected_http_rate += 1;
                c.rate_warn(format_args!(
                    "slot={key} refused a request (429): past --max-http-requests-per-ip"
                ));
                let mut r = Response::text(429, "too many requests from your address");
                r.headers.push(("Retry-After".into(), "1".into()));
                self.answer(key, None, head, Answer::Respond(r));
                return true;
            }
        }
        let d = ROUTES[route].dialect;
        if let Some(origin) = head.origin.as_deref() {
            if !shared.registry.origin_allowed(route, origin) {
                // Before any dialect hears of it (`--allowed-origins`).
                self.core.proto.rejected.push((403, "origin"));
                let r = Response::text(403, "this origin may not use this server");
                self.answer(key, None, head, Answer::Respond(r));
                return true;
            }
        }
        let Some(slot) = self.slots.get_mut(key) else {
            return false;
        };
        let clustered = self.core.link.is_some();
        let placed = slot
            .extra
            .as_mut()
            .and_then(|e| e.placed.take())
            .map(|p| *p);
        let placement_key = match placed {
            None => {
                let cores = shared.mailboxes.len();
                let here = self.core.id;
                let placement = self.core.dialects.get(d).place(&head, &mut OsRandom);
                let (to, key_str) = match placement {
                    Placement::Answer(r) => {
                        self.answer(key, None, head, Answer::Respond(r));
                        return true;
                    }
                    Placement::Here => (here, None),
                    Placement::Key(k) => (owner(&k, cores), Some(k)),
                    Placement::At(l) => {
                        let (node, core) = (place_node(l.0), place_core(l.0));
                        if clustered && node != 0 && node != self.core.node {
                            let owner = Owner {
                                node,
                                core: core as u16,
                            };
                            return self.open_elsewhere(key, &head, len, route, None, owner);
                        }
                        let ours = node == self.core.node && core < cores;
                        (if ours { core } else { here }, None)
                    }
                };
                if to != here {
                    self.relocate(key, to, key_str);
                    return false;
                }
                match key_str {
                    // On the core that would own the key: which node does?
                    Some(k) if clustered => return self.claim(key, route, head, k),
                    k => k,
                }
            }
            // Another node serves the request, and answered.
            Some(Placed {
                answer: Some(a), ..
            }) => {
                self.answer_from_owner(key, route, head, *a);
                return true;
            }
            Some(Placed {
                key: Some(k),
                node: None,
                ..
            }) if clustered => return self.claim(key, route, head, k),
            Some(Placed {
                key: Some(k),
                node: Some(n),
                ..
            }) if n != self.core.node => {
                let owner = Owner {
                    node: n,
                    core: ANY_CORE,
                };
                return self.open_elsewhere(key, &head, len, route, Some(k), owner);
            }
            Some(p) => p.key,
        };
        let c = &mut self.core;
        let Some(slot) = self.slots.get_mut(key) else {
            return false;
        };
        let accept = match head.upgrade.is_some() {
            true => match slot.conn.check_upgrade(
                &head,
                tx_force(&mut slot.tx, &mut c.pool),
                &mut c.proto,
            ) {
                Some(a) => Some(a),
                None => return true, // refused for its headers, before any dialect heard of it
            },
            false => None,
        };
        let me = handle(c.here, key, slot.gen());
        let answer = call(c, d, |dialect, cx| {
            dialect.on_request(cx, me, placement_key.as_deref(), &head)
        });
        let holds = matches!(
            (&answer, &accept),
            (Answer::Upgrade, Some(_)) | (Answer::Hold { .. }, _)
        );
        if let (true, Some(k), Some(link)) = (holds, &placement_key, self.core.link.as_mut()) {
            // The key stays claimed for this node while the connection is held.
            link.key_used(k);
            if let Some(slot) = self.slots.get_mut(key) {
                slot.extra().claim = Some(k.clone());
            }
        }
        let answer = match (answer, accept) {
            (Answer::Upgrade, Some(a)) => {
                let c = &mut self.core;
                if let Some(slot) = self.slots.get_mut(key) {
                    let now = c.tick();
                    slot.conn
                        .upgrade(now, &a, tx_force(&mut slot.tx, &mut c.pool), &mut c.proto);
                    slot.route = route as u8;
                    slot.set_attached(true);
                }
                return true;
            }
            (Answer::Upgrade, None) => Answer::Respond(crate::proto::dialect::upgrade_required()),
            (a, _) => a,
        };
        self.answer(key, Some(route), head, answer);
        true
    }

    /// The body of a request a dialect asked to read.
    fn on_body(&mut self, key: usize, head: RequestHead, body: Vec<u8>) {
        let c = &mut self.core;
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let route = slot.route();
        if let (Some(o), Some(r)) = (slot.extra.as_ref().and_then(|e| e.remote), route) {
            // Its dialect lives on another node: the body goes there, the request waits.
            let me = handle(c.here, key, slot.gen());
            c.emit(
                o.node,
                &Record::Body {
                    core: o.core,
                    from: me,
                    route: r as u8,
                    body: &body,
                },
            );
            let until = c.tick().after(c.answer_wait());
            slot.conn
                .hold(&head, until, crate::net::remote::no_answer());
            slot.stamp = Default::default();
            slot.set_attached(true);
            c.queue(key, slot);
            return;
        }
        let answer = match route {
            Some(r) => {
                let me = handle(c.here, key, slot.gen());
                call(c, ROUTES[r].dialect, |d, cx| {
                    d.on_body(cx, me, &head, &body)
                })
            }
            None => Answer::Respond(endpoints::not_found()),
        };
        self.answer(key, route, head, answer);
    }

    /// Write a dialect's (or an endpoint's) answer to a request that is not an upgrade.
    pub(crate) fn answer(
        &mut self,
        key: usize,
        route: Option<usize>,
        head: RequestHead,
        answer: Answer,
    ) {
        let c = &mut self.core;
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let now = c.tick();
        let tx = tx_force(&mut slot.tx, &mut c.pool);
        match answer {
            Answer::Respond(r) => slot.conn.respond(now, &head, &r, tx, &mut c.proto),
            Answer::ReadBody { max } => {
                slot.route = route.map_or(crate::net::slot::NO_ROUTE, |r| r as u8);
                slot.conn.read_body(now, head, max, tx, &mut c.proto)
            }
            Answer::Hold { until_ms, fallback } => {
                slot.route = route.map_or(crate::net::slot::NO_ROUTE, |r| r as u8);
                slot.set_attached(route.is_some());
                // How long a dialect holds a request is not the handshake's latency.
                slot.stamp = Default::default();
                slot.conn.hold(&head, Tick::from_ms(until_ms), fallback)
            }
            Answer::Upgrade => {
                let r = crate::proto::dialect::upgrade_required();
                slot.conn.respond(now, &head, &r, tx, &mut c.proto)
            }
        }
    }

    /// The request belongs to another core: it stays unread, and the connection moves there
    /// once its output is flushed.
    fn relocate(&mut self, key: usize, to: usize, placement_key: Option<Box<str>>) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        slot.conn.relocate();
        let extra = slot.extra();
        extra.move_to = Some(to as u16);
        extra.placed = Some(Box::new(Placed {
            key: placement_key,
            ..Placed::default()
        }));
    }

    // ── dialect calls and their outputs ────────────────────────────────────────────────────

    /// Run `f` on dialect `d` with this core's context (time, randomness, ICE).
    pub(crate) fn call<R>(
        &mut self,
        d: usize,
        f: impl FnOnce(&mut dyn Dialect, &mut Cx<'_>) -> R,
    ) -> R {
        call(&mut self.core, d, f)
    }

    /// Apply what the dialects queued, then tell them of the connections that went away
    /// meanwhile (which may queue more), until nothing is left.
    pub(crate) fn flush_effects(&mut self) {
        loop {
            // Applying outputs may call dialects again (a tell for this core), queuing more:
            // those answer the same messages.
            while !self.core.out.is_empty() {
                let from_message = self.core.from_message;
                self.apply_outputs();
                self.core.from_message |= from_message && !self.core.out.is_empty();
            }
            let Some((h, d)) = self.core.gone.pop() else {
                return;
            };
            call(&mut self.core, d, |dialect, cx| dialect.on_close(cx, h));
        }
    }

    fn apply_outputs(&mut self) {
        // Outputs queued by `on_message` calls carry the read time (see `Core::from_message`).
        let from_message = std::mem::take(&mut self.core.from_message);
        if self.core.out.is_empty() {
            return;
        }
        // The queue being applied is swapped for the spare one (both keep their capacity):
        // applying may queue more (a tell to this core).
        let spare = std::mem::take(&mut self.core.spare_out);
        let mut out = std::mem::replace(&mut self.core.out, spare);
        {
            let (list, bytes) = out.drain();
            for o in list {
                if self.elsewhere(&o) {
                    self.output_elsewhere(o, bytes);
                    continue;
                }
                match o {
                    Output::Send {
                        to,
                        kind,
                        payload,
                        lossy,
                    } => self.deliver(to, kind, &bytes[payload], lossy, from_message),
                    Output::Close { conn, code, reason } => {
                        if let Some((k, _)) = live(&mut self.slots, self.core.here, conn) {
                            self.go_away(k, code, &reason);
                        }
                    }
                    Output::Respond { conn, response } => self.answer_held(conn, &response),
                    Output::Pipe { a, b } => self.link(a, b),
                    Output::Store { conn, op } => self.store(conn, &bytes[op]),
                    Output::Tell {
                        dialect,
                        key,
                        from,
                        payload,
                    } => {
                        // Keys are written from a `&str` by `Cx::tell_with`.
                        if let Ok(key) = std::str::from_utf8(&bytes[key]) {
                            self.tell(dialect, key, from, &bytes[payload]);
                        }
                    }
                    Output::Reply { to, payload } => self.reply(to, &bytes[payload]),
                }
            }
        }
        out.clear();
        self.core.spare_out = out;
    }

    /// A whole message to an open WebSocket of this core (a `lossy` one only if the
    /// connection is not behind, see [`Output::Send`]). `relayed`: it answers a message read
    /// in this loop turn, whose relay latency is measured.
    pub(crate) fn deliver(
        &mut self,
        to: Handle,
        kind: Kind,
        payload: &[u8],
        lossy: bool,
        relayed: bool,
    ) {
        let c = &mut self.core;
        let Some((key, slot)) = live(&mut self.slots, c.here, to) else {
            return;
        };
        if !slot.conn.is_open() {
            return;
        }
        if lossy && slot.pending_out() >= c.shared.cfg.limits.buffer_size {
            c.shell.lossy_dropped += 1;
            return;
        }
        encode_frame(
            true,
            kind.opcode(),
            payload,
            tx_force(&mut slot.tx, &mut c.pool),
        );
        c.proto.frames_out += 1;
        c.proto.messages_out += 1;
        if relayed {
            slot.stamp_relay(c.clock_us);
        }
        c.queue(key, slot);
    }

    /// A dialect answers a request it held.
    pub(crate) fn answer_held(&mut self, conn: Handle, resp: &Response) {
        let c = &mut self.core;
        let Some((key, slot)) = live(&mut self.slots, c.here, conn) else {
            return;
        };
        let now = c.tick();
        if slot
            .conn
            .answer_held(now, resp, tx_force(&mut slot.tx, &mut c.pool))
        {
            slot.set_attached(false); // answered by its dialect: nothing to tell it
            if let Some(e) = slot.extra.as_mut() {
                e.remote = None;
            }
        }
        c.queue(key, slot);
        self.settle(key);
    }

    /// Join two open WebSockets cut-through.
    fn link(&mut self, a: Handle, b: Handle) {
        let id = self.core.here;
        let (Some((ka, _)), Some((kb, _))) = (
            live(&mut self.slots, id, a).map(|(k, s)| (k, s.gen())),
            live(&mut self.slots, id, b).map(|(k, s)| (k, s.gen())),
        ) else {
            return;
        };
        for (k, peer) in [(ka, b), (kb, a)] {
            if let Some(slot) = self.slots.get_mut(k) {
                slot.extra().peer = Some(peer);
                slot.conn.start_piping();
                self.core.queue(k, slot);
            }
        }
    }

    // ── state changes ──────────────────────────────────────────────────────────────────────

    /// After anything changed a slot: its gauge follows its class, a dialect that held it
    /// hears that it is gone, and the other end of its pipe learns its fate.
    pub(crate) fn settle(&mut self, key: usize) {
        let c = &mut self.core;
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let class = slot.class();
        if class != slot.counted {
            c.gauges.remove(slot.counted);
            c.gauges.add(class);
            slot.counted = class;
        }
        if slot.attached() && !slot.conn.attached() {
            slot.set_attached(false);
            let me = handle(c.here, key, slot.gen());
            let claim = slot.extra.as_mut().and_then(|e| e.claim.take());
            if let (Some(k), Some(link)) = (claim, c.link.as_mut()) {
                link.key_released(&k);
            }
            let remote = slot.extra.as_mut().and_then(|e| e.remote.take());
            match (slot.route(), remote) {
                // Its dialect lives on another node: tell it there.
                (Some(r), Some(o)) => c.emit(
                    o.node,
                    &Record::Closed {
                        core: o.core,
                        from: me,
                        route: r as u8,
                    },
                ),
                (Some(r), None) => c.gone.push((me, ROUTES[r].dialect)),
                (None, _) => {}
            }
        }
        if slot.peer().is_some() && !slot.conn.is_open() {
            self.pipe_end(key, None);
        }
    }

    // ── the pipe ───────────────────────────────────────────────────────────────────────────

    /// True when `key`'s pipe peer has sent only part of a frame into `key`'s send queue (so
    /// nothing else may be written there yet).
    pub(crate) fn peer_mid_frame(&self, key: usize) -> bool {
        let Some(slot) = self.slots.get(key) else {
            return false;
        };
        let Some(peer) = slot.peer() else {
            return false;
        };
        let (at, pk, gen) = crate::net::resolve(peer);
        if at != self.core.here {
            return slot.extra.as_ref().is_some_and(|e| e.peer_mid);
        }
        self.slots.get(pk).is_some_and(|p| {
            crate::net::same_gen(p.gen(), gen) && p.forwarding() && p.conn.mid_frame()
        })
    }

    /// True when `key` must not be read now: its peer is mid-frame into its queue, or (piped)
    /// its peer's queue is over the high-water mark.
    pub(crate) fn peer_blocks(&self, key: usize) -> bool {
        let Some(slot) = self.slots.get(key) else {
            return false;
        };
        let Some(peer) = slot.peer() else {
            return false;
        };
        let (at, pk, gen) = crate::net::resolve(peer);
        if at != self.core.here {
            // On another node: the window of unacknowledged bytes is its queue.
            let e = slot.extra.as_deref();
            let full = slot.forwarding() && e.is_some_and(|e| e.unacked >= self.core.pipe_window());
            return full || e.is_some_and(|e| e.peer_mid);
        }
        let high_water = self.core.shared.cfg.limits.buffer_size;
        let full = slot.forwarding()
            && self.slots.get(pk).is_some_and(|p| {
                crate::net::same_gen(p.gen(), gen) && p.pending_out() >= high_water
            });
        full || self.peer_mid_frame(key)
    }

    /// Forward `a`'s buffered data frames to its peer as they arrive, without reassembling
    /// messages: headers re-encoded (unmasked, same opcode, FIN and length), payload unmasked
    /// in place in `a`'s read buffer and written with the header in one vectored write when
    /// the peer has nothing queued; only what its socket does not take is copied into its
    /// queue. Returns whether anything moved.
    fn pipe_forward(&mut self, a_key: usize) -> bool {
        let Some(peer) = self.slots.get(a_key).and_then(Slot::peer) else {
            return false;
        };
        let (at, b_key, b_gen) = crate::net::resolve(peer);
        // A peer on another node gets `Data` records, as far as its window allows.
        let remote = at != self.core.here;
        let mut batch = Batch::default();
        let progress = self.pipe_forward_into(a_key, peer, remote, &mut batch);
        if !batch.is_empty() {
            if let Some((a, b)) = self.slots.get2_mut(a_key, b_key) {
                if crate::net::same_gen(b.gen(), b_gen) {
                    if let Some(rx) = a.rx.pooled() {
                        batch.send(b, rx, &mut self.core);
                    }
                }
            }
        }
        progress
    }

    /// [`Reactor::pipe_forward`]'s loop: frame pieces for a peer on this core are collected
    /// in `batch` (their payloads stay in `a`'s read buffer), written by the caller with one
    /// `writev`; the loop flushes it itself before anything that must follow the data (the
    /// end of the pipe) and when it is full.
    fn pipe_forward_into(
        &mut self,
        a_key: usize,
        peer: Handle,
        remote: bool,
        batch: &mut Batch,
    ) -> bool {
        let (_, b_key, b_gen) = crate::net::resolve(peer);
        let high_water = self.core.shared.cfg.limits.buffer_size;
        let window = self.core.pipe_window();
        let mut progress = false;
        loop {
            let c = &mut self.core;
            let (a, b) = if remote {
                let Some(a) = self.slots.get_mut(a_key) else {
                    return progress;
                };
                (a, None)
            } else {
                let Some((a, b)) = self.slots.get2_mut(a_key, b_key) else {
                    return progress;
                };
                if !crate::net::same_gen(b.gen(), b_gen) {
                    return progress;
                }
                (a, Some(b))
            };
            let blocked = match &b {
                Some(b) => {
                    (b.forwarding() && b.conn.mid_frame())
                        || b.pending_out() + batch.bytes >= high_water
                }
                None => a.extra.as_ref().is_some_and(|e| e.unacked >= window),
            };
            if blocked || !a.rx.has_bytes() {
                return progress;
            }
            let now = c.tick();
            let Some(rx) = a.rx.buf(&mut c.pool, false) else {
                c.starved.push((a_key, a.gen()));
                return progress;
            };
            let a_tx = &mut a.tx.get_or_insert_with(|| c.pool.tx_force()).data;
            let (step, used) = a
                .conn
                .read(now, &c.shared.limits, rx.filled(), a_tx, &mut c.proto);
            match step {
                Step::Forward {
                    header,
                    header_len,
                    payload,
                } => {
                    let head = &header[..usize::from(header_len)];
                    let sent = head.len() + payload.len();
                    match b {
                        Some(b) => {
                            let at = rx.offset();
                            batch.push(head, at + payload.start..at + payload.end);
                            if batch.is_full() {
                                batch.send(b, rx, c);
                            }
                        }
                        None => {
                            let body = &rx.filled()[payload];
                            c.emit_data(peer, a.conn.mid_frame(), head, body);
                        }
                    }
                    rx.consume(used);
                    if remote {
                        let e = a.extra();
                        e.unacked = e.unacked.saturating_add(sent as u32);
                    }
                    progress = true;
                }
                Step::Ended { code } => {
                    if let Some(b) = b {
                        batch.send(b, rx, c);
                    }
                    rx.consume(used);
                    self.pipe_end(a_key, Some(code));
                    return true;
                }
                _ => {
                    rx.consume(used);
                    return progress || used > 0;
                }
            }
        }
    }

    /// One end of a pipe stopped being open: what happens to the other. `ended` is the close
    /// code when the end closed cleanly after its data; otherwise it vanished (EOF, error,
    /// drop, shutdown).
    pub(crate) fn pipe_end(&mut self, key: usize, ended: Option<u16>) {
        let here = self.core.here;
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let Some(peer) = slot.extra.as_mut().and_then(|e| e.peer.take()) else {
            return;
        };
        // A vanished end that was mid-frame leaves half a frame in the peer's queue.
        let half_frame = ended.is_none() && slot.conn.is_piped() && slot.conn.mid_frame();
        if crate::net::resolve(peer).0 != here {
            let end = crate::proto::cluster::Record::End {
                to: peer,
                code: ended.unwrap_or(crate::proto::cluster::VANISHED),
                half_frame,
            };
            self.core.emit(crate::net::handle_node(peer), &end);
            return;
        }
        let Some((pk, p)) = live(&mut self.slots, here, peer) else {
            return;
        };
        if let Some(e) = p.extra.as_mut() {
            e.peer = None;
        }
        self.peer_ended(pk, ended, half_frame);
    }

    /// `key`'s pipe peer stopped: closed cleanly with a code after its data (`ended`), or
    /// vanished, perhaps inside a frame it was writing into `key`'s queue (`half_frame`).
    pub(crate) fn peer_ended(&mut self, key: usize, ended: Option<u16>, half_frame: bool) {
        let c = &mut self.core;
        let Some(p) = self.slots.get_mut(key) else {
            return;
        };
        let now = c.tick();
        match (ended, half_frame) {
            (_, true) => p.conn.abort(),
            // Everything it sent is already in the peer's queue or socket: the close follows.
            (Some(code), false) => p
                .conn
                .close(now, code, "", tx_force(&mut p.tx, &mut c.pool)),
            (None, false) => p.conn.close(
                now,
                1001,
                "peer went away",
                tx_force(&mut p.tx, &mut c.pool),
            ),
        }
        c.queue(key, p);
        self.settle(key);
    }
}

/// Send one forwarded piece (a header and/or payload) to `b`: straight to its socket when
/// nothing is queued before it, else behind what is queued.
pub(crate) fn forward(b: &mut Slot, header: &[u8], payload: &[u8], c: &mut Core) {
    send_pieces(b, &[header, payload], c);
}

/// Write `pieces` (at most `2 × Batch::MAX`) to `b` in order: as much as its socket takes in
/// one `writev` when nothing is queued before them, the rest behind in its send queue.
fn send_pieces(b: &mut Slot, pieces: &[&[u8]], c: &mut Core) {
    let mut written = 0;
    if b.plain() && b.writable() && b.pending_out() == 0 {
        let mut slices = [IoSlice::new(&[]); 2 * Batch::MAX];
        let n = pieces.len().min(slices.len());
        for (s, p) in slices.iter_mut().zip(pieces) {
            *s = IoSlice::new(p);
        }
        match crate::net::sys::writev(&b.sock, &slices[..n]) {
            Ok(n) => {
                written = n;
                c.shell.bytes_out += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => b.set_writable(false),
            // Anything else: queue it; `b`'s own drive meets the error.
            Err(_) => {}
        }
    }
    for p in pieces {
        if written >= p.len() {
            written -= p.len();
            continue;
        }
        b.tx_force(&mut c.pool).extend_from_slice(&p[written..]);
        written = 0;
    }
}

/// Frame pieces bound for one pipe peer, gathered from one pass over the sender's read
/// buffer so that they leave in one `writev`: each a rewritten header and a payload that
/// stays where it is in the read buffer (its absolute range, [`RxBuf::at`]).
#[derive(Default)]
pub(crate) struct Batch {
    heads: [([u8; 10], u8); Batch::MAX],
    bodies: [std::ops::Range<usize>; Batch::MAX],
    len: usize,
    /// Header and payload bytes gathered.
    bytes: usize,
}

impl Batch {
    /// Pieces per `writev` (two slices each, far below `IOV_MAX`).
    const MAX: usize = 16;

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn is_full(&self) -> bool {
        self.len == Self::MAX
    }

    fn push(&mut self, head: &[u8], body: std::ops::Range<usize>) {
        let mut h = [0u8; 10];
        h[..head.len()].copy_from_slice(head);
        self.heads[self.len] = (h, head.len() as u8);
        self.bytes += head.len() + body.len();
        self.bodies[self.len] = body;
        self.len += 1;
    }

    /// Write what is gathered to `b` (payloads from `rx`) and start over.
    fn send(&mut self, b: &mut Slot, rx: &RxBuf, c: &mut Core) {
        if self.len == 0 {
            return;
        }
        let mut pieces: [&[u8]; 2 * Batch::MAX] = [&[]; 2 * Batch::MAX];
        for i in 0..self.len {
            let (h, n) = &self.heads[i];
            pieces[2 * i] = &h[..usize::from(*n)];
            pieces[2 * i + 1] = rx.at(self.bodies[i].clone());
        }
        send_pieces(b, &pieces[..2 * self.len], c);
        self.len = 0;
        self.bytes = 0;
    }
}

/// Drop `used` bytes from the front of the slot's input.
fn consume(slot: &mut Slot, used: usize) {
    if let Some(b) = slot.rx.pooled() {
        b.consume(used);
    }
}

fn handle(at: u32, key: usize, gen: u32) -> Handle {
    crate::net::handle(at, key, gen)
}

/// Run `f` on dialect `d` of `c` with the core's context.
pub(crate) fn call<R>(
    c: &mut Core,
    d: usize,
    f: impl FnOnce(&mut dyn Dialect, &mut Cx<'_>) -> R,
) -> R {
    call_with(c, d, None, f)
}

/// [`call`], with the send queue of the connection being served (`direct`: its handle and
/// queue) for its replies.
fn call_with<R>(
    c: &mut Core,
    d: usize,
    direct: Option<(Handle, &mut Vec<u8>)>,
    f: impl FnOnce(&mut dyn Dialect, &mut Cx<'_>) -> R,
) -> R {
    let Core {
        here,
        shared,
        dialects,
        out,
        now_ms,
        unix_ms,
        proto,
        ..
    } = c;
    let mut env = crate::ice::IceEnv(&shared.ice);
    out.dialect = d as u8;
    let mut cx = Cx {
        now: *now_ms,
        unix_ms: *unix_ms,
        here: locator(*here),
        rand: &mut OsRandom,
        env: &mut env,
        out,
        direct: direct.map(|(conn, out)| Direct {
            conn,
            out,
            counters: proto,
        }),
    };
    f(dialects.get(d), &mut cx)
}

impl Core {
    /// Queue a message as if a dialect had.
    fn out_send(&mut self, to: Handle, kind: Kind, payload: &[u8]) {
        let mut env = crate::ice::IceEnv(&self.shared.ice);
        let mut cx = Cx {
            now: self.now_ms,
            unix_ms: self.unix_ms,
            here: locator(self.here),
            rand: &mut OsRandom,
            env: &mut env,
            out: &mut self.out,
            direct: None,
        };
        cx.send(to, kind, payload);
    }
}
