//! One reactor per core: a mio `Poll`, its listeners, and a slab of connection slots.
//!
//! Each iteration: poll → note edges → drain the mailbox → expire timers → drive every dirty
//! slot → retry accepting if it was paused → publish metrics. Sockets are registered once for
//! both readable and writable edges; what the reactor *does* with an edge is derived from the
//! protocol state (`Conn::wants_read`, pending output), and an edge is forgotten only when the
//! socket says `WouldBlock`. Nothing toggles interest by hand, so no edge is ever lost.
//!
//! What this file owns: syscalls, buffers, TLS records, timers, the slab and the handoff of
//! a connection to another core. What it does not: any protocol rule (those live in
//! `proto::conn`) or what a route means (`net::app`).

use crate::metrics::{Class, Gauges, ShellCounters};
use crate::net::app::{mew_options, new_sessions, ConnCtx, Dialects, Host, Ident, SioEnv};
use crate::net::mailbox::{CoreMsg, Handoff, Inbox};
use crate::net::pool::{Pool, RxBuf, TxBuf};
use crate::net::timer::{Entry, Timers};
use crate::net::tls::{TlsConn, TlsIoError};
use crate::net::Shared;
use crate::proto::conn::{Conn, Counters, Outbox, PipeStep};
use crate::proto::dialect::mewconnect::Due;
use crate::proto::dialect::pipe::Arrival;
use crate::proto::dialect::{ConnRef, Outgoing};
use crate::proto::time::{earliest, Tick};
use crate::{debug, error, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::io::{self, IoSlice, Read, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) const WAKER: Token = Token(usize::MAX);
const LISTENER_BASE: usize = usize::MAX - 1024;

/// Rounds of read/process/write per slot per iteration before yielding to other slots.
const DRIVE_BUDGET: u32 = 32;
/// How long a closed socket keeps draining the peer's last bytes after our FIN, so that the
/// kernel does not answer unread input with a reset that could destroy our final response.
const LINGER: Duration = Duration::from_secs(2);
/// How long accepting pauses after the process ran out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub(crate) struct Listener {
    pub sock: TcpListener,
    pub tls: bool,
}

/// One connection: its socket, optional TLS session, buffers (only while in use) and protocol
/// state.
struct Slot {
    sock: TcpStream,
    tls: Option<Box<TlsConn>>,
    rx: Option<Box<RxBuf>>,
    tx: Option<Box<TxBuf>>,
    conn: Conn,
    /// Per-IP accounting key (0 when per-IP limits are off).
    ip_key: u64,
    gen: u32,
    /// The deadline of this slot's live entry in the timer queue.
    timer_at: Option<Tick>,
    readable: bool,
    writable: bool,
    queued: bool,
    /// Our FIN is sent; waiting for the peer's (or the linger timer).
    lingering: bool,
    /// The peer's FIN arrived or the linger time ran out: the slot can go.
    linger_over: bool,
    /// The core this connection moves to once its output is flushed.
    move_to: Option<u16>,
    /// Dialect connections only (boxed: the others pay one null pointer).
    dialect: Option<Box<DialectSlot>>,
}

/// What a dialect connection carries beyond the common slot.
pub(crate) struct DialectSlot {
    /// What it is, from its path.
    pub ident: Ident,
    /// The other end of a `/connection` pipe, on this core.
    pub peer: Option<ConnRef>,
    /// Data frames from this connection go cut-through to `peer` (set once piping started).
    pub forwarding: bool,
    /// The dialect's own deadline: a waiting `/connection` socket is closed then if no peer
    /// came (`--pipe-hold-timeout`); a MewConnect socket's idle and lifetime limits are checked
    /// then (and the deadline moved on if they are not reached).
    pub dialect_deadline: Option<Tick>,
}

impl Slot {
    fn class(&self) -> Class {
        if self.lingering {
            return Class::Closing;
        }
        match self.conn.endpoint() {
            Some(e) if !self.conn.is_closed() => Class::WebSocket(e),
            _ if self.conn.is_closed() => Class::Closing,
            _ if self.conn.is_handshaking() => Class::Handshake,
            Some(_) => Class::Closing,
            None => Class::Http,
        }
    }

    /// How dialects name this slot (`key` is its slab key).
    fn conn_ref(&self, key: usize) -> ConnRef {
        ConnRef {
            key: key as u32,
            gen: self.gen,
        }
    }

    fn ident(&self) -> Option<&Ident> {
        self.dialect.as_ref().map(|d| &d.ident)
    }

    fn peer(&self) -> Option<ConnRef> {
        self.dialect.as_ref().and_then(|d| d.peer)
    }

    fn set_peer(&mut self, peer: Option<ConnRef>) {
        if let Some(d) = self.dialect.as_mut() {
            d.peer = peer;
            d.dialect_deadline = None;
        }
    }

    fn dialect_deadline(&self) -> Option<Tick> {
        self.dialect.as_ref().and_then(|d| d.dialect_deadline)
    }

    fn forwarding(&self) -> bool {
        self.dialect.as_ref().is_some_and(|d| d.forwarding)
    }

    fn set_forwarding(&mut self, on: bool) {
        if let Some(d) = self.dialect.as_mut() {
            d.forwarding = on;
        }
    }

    fn pending_out(&self) -> usize {
        self.tx.as_ref().map_or(0, |t| t.len())
    }

    /// The send queue, taken from the pool even when it is exhausted (for bytes that must go
    /// out: timeouts' frames, closes, deliveries already bounded by the sender's back-pressure).
    fn tx_force(&mut self, pool: &mut Pool) -> &mut Vec<u8> {
        &mut self.tx.get_or_insert_with(|| pool.tx_force()).data
    }
}

/// The reactor's own mutable state, apart from the slab (so both can be borrowed at once).
struct Core {
    id: usize,
    shared: Arc<Shared>,
    tls: Option<Arc<rustls::ServerConfig>>,
    pool: Pool,
    timers: Timers,
    proto: Counters,
    shell: ShellCounters,
    gauges: Gauges,
    dirty: Vec<usize>,
    /// Slots that could not get a buffer; retried when one comes back.
    starved: Vec<(usize, u32)>,
    next_gen: u32,
    epoch: Instant,
    now_ms: u64,
    accept_paused_until: Option<u64>,
    draining: Option<Instant>,
    dialects: Dialects,
    /// Messages dialects produced for other connections on this core, delivered after the
    /// drive that produced them.
    deliveries: Vec<Outgoing>,
}

impl Core {
    fn tick(&self) -> Tick {
        Tick(self.now_ms as u32)
    }

    fn abs_ms(&self, t: Tick) -> u64 {
        let delta = t.0.wrapping_sub(self.now_ms as u32) as i32;
        self.now_ms.saturating_add_signed(delta as i64)
    }

    fn queue(&mut self, key: usize, slot: &mut Slot) {
        if !slot.queued {
            slot.queued = true;
            self.dirty.push(key);
        }
    }
}

pub(crate) struct Reactor {
    poll: Poll,
    inbox: Inbox,
    listeners: Vec<Listener>,
    slots: Slab<Slot>,
    core: Core,
}

impl Reactor {
    pub(crate) fn new(
        id: usize,
        poll: Poll,
        inbox: Inbox,
        mut listeners: Vec<Listener>,
        shared: Arc<Shared>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<Self> {
        for (i, l) in listeners.iter_mut().enumerate() {
            poll.registry()
                .register(&mut l.sock, Token(LISTENER_BASE + i), Interest::READABLE)?;
        }
        let limits = &shared.cfg.limits;
        let pool = Pool::new(limits.buffer_size, limits.max_buffers_per_core);
        let dialects = Dialects {
            sio: new_sessions(&shared.cfg),
            ..Dialects::default()
        };
        Ok(Reactor {
            poll,
            inbox,
            listeners,
            slots: Slab::new(),
            core: Core {
                id,
                shared,
                tls,
                pool,
                timers: Timers::default(),
                proto: Counters::default(),
                shell: ShellCounters::default(),
                gauges: Gauges::default(),
                dirty: Vec::new(),
                starved: Vec::new(),
                next_gen: 0,
                epoch: Instant::now(),
                now_ms: 0,
                accept_paused_until: None,
                draining: None,
                dialects,
                deliveries: Vec::new(),
            },
        })
    }

    /// Run until shut down and drained.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut expired = Vec::new();
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                error!("core={} poll failed: {e}; reactor exits", self.core.id);
                return;
            }
            self.core.now_ms = self.core.epoch.elapsed().as_millis() as u64;
            self.core.shell.loop_iterations += 1;

            let mut woke = false;
            for ev in events.iter() {
                match ev.token() {
                    WAKER => woke = true,
                    Token(t) if t >= LISTENER_BASE => self.accept(t - LISTENER_BASE),
                    Token(key) => {
                        let Some(slot) = self.slots.get_mut(key) else {
                            continue;
                        };
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            slot.readable = true;
                        }
                        if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
                            slot.writable = true;
                        }
                        self.core.queue(key, slot);
                    }
                }
            }
            if woke {
                self.drain_inbox();
            }
            self.expire_timers(&mut expired);
            self.sio_tick();
            self.drive_dirty();
            self.retry_accept();
            let c = &self.core;
            c.shared.cores[c.id].publish(&c.proto, &c.shell, &c.gauges, c.pool.in_use());
            c.shared.cores[c.id].publish_sio_sessions(c.dialects.sio.len());
            if let Some(deadline) = self.core.draining {
                if self.slots.is_empty() || Instant::now() >= deadline {
                    debug!(
                        "core={} drained ({} connections left)",
                        self.core.id,
                        self.slots.len()
                    );
                    return;
                }
            }
        }
    }

    fn poll_timeout(&self) -> Option<Duration> {
        if !self.core.dirty.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut next = self.core.timers.next_expiry();
        if let Some(s) = self.core.dialects.sio.next_deadline() {
            next = Some(next.map_or(s, |n| n.min(s)));
        }
        if let Some(p) = self.core.accept_paused_until {
            next = Some(next.map_or(p, |n| n.min(p)));
        }
        let now = self.core.epoch.elapsed().as_millis() as u64;
        let mut t = next.map(|n| Duration::from_millis(n.saturating_sub(now)));
        if let Some(d) = self.core.draining {
            let left = d
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50));
            t = Some(t.map_or(left, |t| t.min(left)));
        }
        t
    }

    // ── accepting ──────────────────────────────────────────────────────────────────────────

    fn accept(&mut self, li: usize) {
        let core = &mut self.core;
        if core.draining.is_some() || core.accept_paused_until.is_some() {
            return;
        }
        let shared = core.shared.clone();
        let limits = &shared.cfg.limits;
        loop {
            if core.pool.exhausted() {
                // Every buffer is busy: leave connections in the backlog until one returns.
                core.accept_paused_until = Some(core.now_ms + ACCEPT_BACKOFF.as_millis() as u64);
                core.shell.accept_pauses += 1;
                return;
            }
            let Some(listener) = self.listeners.get(li) else {
                return;
            };
            let (mut sock, addr) = match listener.sock.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.kind() == io::ErrorKind::ConnectionAborted =>
                {
                    continue
                }
                Err(e) => {
                    core.shell.accept_errors += 1;
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) {
                        // Out of descriptors or kernel memory: pause instead of spinning or dying.
                        if core.accept_paused_until.is_none() {
                            warn!(
                                "core={} accept paused for {:?}: {e}",
                                core.id, ACCEPT_BACKOFF
                            );
                        }
                        core.accept_paused_until =
                            Some(core.now_ms + ACCEPT_BACKOFF.as_millis() as u64);
                        core.shell.accept_pauses += 1;
                    } else {
                        warn!("core={} accept failed: {e}", core.id);
                    }
                    return;
                }
            };
            let total = core.shared.conns_total.fetch_add(1, Ordering::Relaxed) + 1;
            if total > limits.max_connections {
                core.shared.conns_total.fetch_sub(1, Ordering::Relaxed);
                core.shell.rejected_max_connections += 1;
                refuse(&mut sock, listener.tls, "server at max-connections");
                continue;
            }
            let ip_key = match core.shared.per_ip.try_add(addr.ip()) {
                Some(k) => k,
                None => {
                    core.shared.conns_total.fetch_sub(1, Ordering::Relaxed);
                    core.shell.rejected_per_ip += 1;
                    refuse(
                        &mut sock,
                        listener.tls,
                        "too many connections from your address",
                    );
                    continue;
                }
            };
            let tls = if listener.tls {
                match core.tls.as_ref().map(|cfg| TlsConn::new(cfg.clone())) {
                    Some(Ok(t)) => Some(Box::new(t)),
                    _ => {
                        core.shared.conns_total.fetch_sub(1, Ordering::Relaxed);
                        core.shared.per_ip.remove(ip_key);
                        core.shell.tls_errors += 1;
                        continue;
                    }
                }
            } else {
                None
            };
            core.shell.accepted += 1;
            let _ = sock.set_nodelay(true);
            let conn = Conn::new(core.tick(), limits);
            let new = NewSlot {
                sock,
                tls,
                conn,
                ip_key,
                rx: None,
                dialect: None,
            };
            if let Err(e) = insert(&self.poll, &mut self.slots, core, new) {
                warn!("core={} register failed: {e}", core.id);
            }
        }
    }

    fn retry_accept(&mut self) {
        let Some(until) = self.core.accept_paused_until else {
            return;
        };
        if self.core.now_ms >= until {
            self.core.accept_paused_until = None;
            for li in 0..self.listeners.len() {
                self.accept(li);
            }
        }
    }

    // ── mailbox ────────────────────────────────────────────────────────────────────────────

    fn drain_inbox(&mut self) {
        while let Ok(msg) = self.inbox.try_recv() {
            match msg {
                CoreMsg::Adopt(h) => self.adopt(*h),
                CoreMsg::Shutdown { deadline } => self.begin_shutdown(deadline),
                CoreMsg::TlsConfig(cfg) => self.core.tls = Some(cfg),
            }
        }
    }

    fn adopt(&mut self, h: Handoff) {
        let core = &mut self.core;
        core.shell.handoffs_in += 1;
        let Handoff {
            stream,
            tls,
            mut conn,
            leftover,
            ip_key,
            dialect,
        } = h;
        if let Err(e) = stream.set_nonblocking(true) {
            warn!("core={} adopt failed: {e}", core.id);
            core.shared.conns_total.fetch_sub(1, Ordering::Relaxed);
            core.shared.per_ip.remove(ip_key);
            return;
        }
        conn.unpark(core.tick());
        let rx = if leftover.is_empty() {
            None
        } else {
            // A handoff carries at most one buffer's worth: take a buffer even from an
            // exhausted pool rather than lose the bytes.
            let mut b = core.pool.rx_force();
            let n = leftover.len().min(b.spare().len());
            b.spare()[..n].copy_from_slice(&leftover[..n]);
            b.filled_by(n);
            Some(b)
        };
        let sock = TcpStream::from_std(stream);
        let new = NewSlot {
            sock,
            tls,
            conn,
            ip_key,
            rx,
            dialect,
        };
        match insert(&self.poll, &mut self.slots, core, new) {
            Ok(key) => self.on_open(key),
            Err(e) => warn!("core={} adopt register failed: {e}", core.id),
        }
    }

    fn begin_shutdown(&mut self, deadline: Instant) {
        let core = &mut self.core;
        core.draining = Some(deadline);
        for l in self.listeners.drain(..) {
            let mut sock = l.sock;
            let _ = self.poll.registry().deregister(&mut sock);
        }
        let now = core.tick();
        let shared = core.shared.clone();
        let keys: Vec<usize> = self.slots.iter().map(|(k, _)| k).collect();
        for key in keys {
            // A pipe end whose peer is mid-frame towards it cannot get a close frame now.
            let blocked = peer_mid_frame(&self.slots, key);
            let Some(slot) = self.slots.get_mut(key) else {
                continue;
            };
            let before = slot.class();
            go_away(
                slot,
                core,
                &shared,
                now,
                blocked,
                1001,
                "server shutting down",
            );
            core.gauges.remove(before);
            core.gauges.add(slot.class());
            core.queue(key, slot);
        }
    }

    // ── timers ─────────────────────────────────────────────────────────────────────────────

    fn expire_timers(&mut self, expired: &mut Vec<Entry>) {
        let core = &mut self.core;
        expired.clear();
        core.timers.drain_expired(core.now_ms, expired);
        let shared = core.shared.clone();
        for e in expired.iter() {
            let key = e.key as usize;
            let blocked = peer_mid_frame(&self.slots, key);
            let Some(slot) = self.slots.get_mut(key) else {
                continue;
            };
            if slot.gen != e.gen || slot.timer_at.map(|t| core.abs_ms(t)) != Some(e.at_ms) {
                continue; // stale entry: the slot was reused or rescheduled
            }
            core.shell.loop_lag_us = (core.now_ms - e.at_ms) * 1000;
            slot.timer_at = None;
            if slot.lingering {
                // The peer never sent its FIN within the linger time: let go.
                slot.linger_over = true;
            } else if blocked {
                // Our pipe peer is mid-frame into our send queue: a ping or close from us
                // must wait for the frame boundary. Try again shortly.
                let at = core.tick().after(Duration::from_millis(50));
                slot.timer_at = Some(at);
                core.timers.insert(Entry {
                    at_ms: core.abs_ms(at),
                    key: e.key,
                    gen: slot.gen,
                });
            } else if slot
                .dialect_deadline()
                .is_some_and(|d| core.tick().reached(d))
            {
                let now = core.tick();
                let me = slot.conn_ref(key);
                let (code, reason) = match slot.ident() {
                    Some(Ident::Mew { .. }) => {
                        let opts = mew_options(&shared.cfg);
                        match core.dialects.mew.due(me, now, &opts) {
                            Due::Close(reason) => (1001, reason),
                            Due::At(t) => {
                                set_dialect_deadline(slot, Some(t));
                                core.queue(key, slot); // the drive schedules it
                                continue;
                            }
                            Due::Never => {
                                set_dialect_deadline(slot, None);
                                continue;
                            }
                        }
                    }
                    // Waited for its pipe peer longer than --pipe-hold-timeout.
                    _ => (1008, "peer did not connect in time"),
                };
                slot.set_peer(None);
                go_away(slot, core, &shared, now, false, code, reason);
            } else {
                let tx = slot.tx.get_or_insert_with(|| core.pool.tx_force());
                let now = core.tick();
                let mut host = Host::new(core.id, &shared, &mut core.shell);
                slot.conn.handle_timeout(
                    now,
                    &shared.cfg.limits,
                    &mut tx.data,
                    &mut core.proto,
                    &mut host,
                );
            }
            core.queue(key, slot);
        }
    }

    // ── driving connections ────────────────────────────────────────────────────────────────

    fn drive_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.core.dirty);
        for key in dirty.drain(..) {
            if let Some(slot) = self.slots.get_mut(key) {
                slot.queued = false;
                self.drive(key);
            }
        }
        // Keep the allocation; drive() may have queued more into the fresh vector.
        if self.core.dirty.is_empty() {
            self.core.dirty = dirty;
        }
    }

    fn drive(&mut self, key: usize) {
        let Some(slot) = self.slots.get(key) else {
            return;
        };
        let before = slot.class();
        let shared = self.core.shared.clone();
        let limits = &shared.cfg.limits;
        let mut rounds = 0;
        let mut fatal = false;
        let mut forwarded = false;
        loop {
            let core = &mut self.core;
            let mut progress = false;
            let pipe_to = self
                .slots
                .get(key)
                .and_then(|s| s.peer().filter(|_| s.conn.is_piped()));
            match pipe_to.and_then(|p| pair_mut(&mut self.slots, key, p)) {
                Some((a, b)) => {
                    a.set_forwarding(true);
                    let moved = pipe_in(key, a, b, core, &shared, &mut fatal);
                    forwarded |= moved;
                    progress |= moved;
                    progress |= pump_out(a, core, &mut fatal);
                }
                None => {
                    // A pipe peer mid-frame into our send queue: our own replies must wait.
                    let blocked = peer_mid_frame(&self.slots, key);
                    let Some(slot) = self.slots.get_mut(key) else {
                        return;
                    };
                    if slot.lingering {
                        progress |= discard_input(slot, &mut fatal);
                    } else if !blocked {
                        progress |= pump_in(key, slot, core, &shared, &mut fatal);
                    }
                    progress |= pump_out(slot, core, &mut fatal);
                }
            }
            if fatal || !progress {
                break;
            }
            rounds += 1;
            if rounds >= DRIVE_BUDGET {
                // Fairness: let other slots run; our edges stay recorded.
                if let Some(slot) = self.slots.get_mut(key) {
                    self.core.queue(key, slot);
                }
                break;
            }
        }
        let core = &mut self.core;
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if slot.pending_out() > limits.max_outbound_bytes {
            core.shell.slow_reader_disconnects += 1;
            debug!(
                "core={} slot={key} dropped: {} bytes queued for a reader that does not read",
                core.id,
                slot.pending_out()
            );
            slot.conn
                .abort(&mut Host::new(core.id, &shared, &mut core.shell));
            fatal = true;
        }
        release_empty(slot, &mut core.pool);
        let peer = slot.peer();
        if !core.starved.is_empty() && !core.pool.exhausted() {
            for (k, gen) in std::mem::take(&mut core.starved) {
                if let Some(s) = self.slots.get_mut(k).filter(|s| s.gen == gen) {
                    core.queue(k, s);
                }
            }
        }
        // What this drive sent the other end (or freed in our queue) may let it move on.
        if let Some(p) = peer.filter(|_| forwarded || rounds > 0) {
            if let Some(ps) = live(&mut self.slots, p) {
                core.queue(p.key as usize, ps);
            }
        }
        let Some(slot) = self.slots.get(key) else {
            return;
        };
        let after = slot.class();
        if matches!(before, Class::WebSocket(_)) && !matches!(after, Class::WebSocket(_)) {
            self.detach(key);
        }
        self.flush_deliveries(Some(key));

        let core = &mut self.core;
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        core.gauges.remove(before);
        let flushed =
            slot.pending_out() == 0 && !slot.tls.as_ref().is_some_and(|t| t.wants_write());
        if fatal || slot.linger_over {
            self.remove(key);
            return;
        }
        if slot.conn.is_closed() && flushed && !slot.lingering {
            // Half-close: FIN now, keep reading until the peer's FIN or the linger timer, so
            // unread input does not make the kernel reset away our last bytes.
            if let Some(t) = slot.tls.as_mut() {
                t.send_close_notify();
                let _ = t.write_tls_to(&mut slot.sock);
            }
            let _ = slot.sock.shutdown(std::net::Shutdown::Write);
            slot.lingering = true;
            let at = core.tick().after(LINGER);
            slot.timer_at = Some(at);
            core.timers.insert(Entry {
                at_ms: core.abs_ms(at),
                key: key as u32,
                gen: slot.gen,
            });
            core.queue(key, slot);
        } else if flushed && slot.conn.is_parked() {
            match slot.move_to {
                Some(to) => {
                    self.hand_off(key, to as usize);
                    return;
                }
                None => {
                    // A dialect connection that belongs here: register it, then let its frames in.
                    slot.conn.unpark(core.tick());
                    core.queue(key, slot);
                    core.gauges.add(slot.class());
                    self.on_open(key);
                    return;
                }
            }
        } else if !slot.lingering {
            if let Some(t) = earliest(slot.conn.poll_timeout(limits), slot.dialect_deadline()) {
                // An entry at or before `t` is already queued: it will fire, find nothing due
                // yet, and reschedule. Otherwise queue `t`.
                if !slot.timer_at.is_some_and(|cur| t.reached(cur)) {
                    slot.timer_at = Some(t);
                    core.timers.insert(Entry {
                        at_ms: core.abs_ms(t),
                        key: key as u32,
                        gen: slot.gen,
                    });
                }
            }
        }
        core.gauges.add(slot.class());
    }

    /// A dialect connection is open on the core that owns it: enter it in its dialect's table.
    fn on_open(&mut self, key: usize) {
        let core = &mut self.core;
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let me = slot.conn_ref(key);
        let arrival = match slot.ident() {
            Some(Ident::Introduction(id)) => {
                core.dialects.intros.open(id, me);
                return;
            }
            // Entered in the pair table when its upgrade was answered; now its deadlines run.
            Some(Ident::Mew { .. }) => {
                let opts = mew_options(&core.shared.cfg);
                if let Due::At(t) = core.dialects.mew.due(me, core.tick(), &opts) {
                    set_dialect_deadline(slot, Some(t));
                    core.queue(key, slot); // the drive schedules it
                }
                return;
            }
            Some(Ident::PeerServer(_) | Ident::PeerClient { .. }) => {
                let info = core.shared.cfg.peerolator_server_info.as_deref();
                let out = &mut core.deliveries;
                let opened = match slot.ident() {
                    Some(Ident::PeerServer(id)) => {
                        core.dialects.peers.open_server(id, me, info, out)
                    }
                    Some(Ident::PeerClient { server, id }) => {
                        core.dialects.peers.open_client(server, id, me, info, out)
                    }
                    _ => return,
                };
                if let Err(e) = opened {
                    let (shared, now, before) = (core.shared.clone(), core.tick(), slot.class());
                    go_away(slot, core, &shared, now, false, 1008, e.reason());
                    core.gauges.remove(before);
                    core.gauges.add(slot.class());
                    core.queue(key, slot);
                }
                self.flush_deliveries(None);
                return;
            }
            Some(Ident::Connection(seek)) => core.dialects.pipes.arrive(seek, me),
            // Entered in the session table when its upgrade was answered.
            Some(Ident::Sio { .. }) | None => return,
        };
        let Arrival::Paired { peer, held } = arrival else {
            let hold = core.shared.cfg.limits.pipe_hold_timeout;
            if let (false, Some(d)) = (hold.is_zero(), slot.dialect.as_mut()) {
                d.dialect_deadline = Some(core.tick().after(hold));
                core.queue(key, slot); // the drive schedules the deadline
            }
            return;
        };
        // The waiting side's messages go first, in order and with their types.
        let mut out = Outbox::new(slot.tx_force(&mut core.pool), &mut core.proto);
        for (kind, payload) in &held {
            out.send(*kind, payload);
        }
        slot.set_peer(Some(peer));
        let piped = slot.conn.start_piping();
        slot.set_forwarding(piped);
        core.queue(key, slot);
        match live(&mut self.slots, peer) {
            Some(p) => {
                p.set_peer(Some(me));
                let piped = p.conn.start_piping();
                p.set_forwarding(piped);
                core.queue(peer.key as usize, p);
            }
            None => {
                // Cannot happen (a closing socket leaves the table first); stay consistent anyway.
                if let Some(slot) = self.slots.get_mut(key) {
                    slot.set_peer(None);
                }
            }
        }
    }

    /// A dialect connection stops being an open WebSocket: leave its dialect's table, and end
    /// its pipe peer (closed after what it already got, or dropped if it holds half a frame).
    fn detach(&mut self, key: usize) {
        let core = &mut self.core;
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let me = slot.conn_ref(key);
        match slot.ident() {
            Some(Ident::Introduction(_)) => core.dialects.intros.close(me),
            Some(Ident::Connection(seek)) => core.dialects.pipes.leave(seek, me),
            Some(Ident::Mew { .. }) => core.dialects.mew.leave(me, &mut core.deliveries),
            Some(Ident::PeerServer(_) | Ident::PeerClient { .. }) => {
                core.dialects.peers.leave(me, &mut core.deliveries)
            }
            Some(Ident::Sio { sid }) => {
                let mut env = SioEnv {
                    shared: &core.shared,
                };
                core.dialects.sio.ws_closed(core.now_ms, sid, me, &mut env);
            }
            None => {}
        }
        let Some(peer) = slot.peer() else { return };
        slot.set_peer(None);
        let half_frame = slot.forwarding() && slot.conn.mid_frame();
        let Some(p) = live(&mut self.slots, peer) else {
            return;
        };
        p.set_peer(None);
        let shared = core.shared.clone();
        let now = core.tick();
        go_away(p, core, &shared, now, half_frame, 1001, "peer went away");
        core.queue(peer.key as usize, p);
    }

    /// Append the messages dialects produced for other connections to their send queues.
    /// `driven`: the slot whose drive (or removal) is under way, if any: its class gauge is
    /// settled by that drive, not here.
    fn flush_deliveries(&mut self, driven: Option<usize>) {
        let core = &mut self.core;
        let mut deliveries = std::mem::take(&mut core.deliveries);
        for Outgoing { to, kind, payload } in deliveries.drain(..) {
            let Some(t) = live(&mut self.slots, to) else {
                continue;
            };
            if t.conn.is_closed() || t.conn.endpoint().is_none() {
                continue;
            }
            Outbox::new(t.tx_force(&mut core.pool), &mut core.proto).send(kind, &payload);
            core.queue(to.key as usize, t);
        }
        core.deliveries = deliveries; // keep the allocation
        self.flush_sio(driven);
    }

    /// Deliver what the Socket.IO sessions queued for connections other than the one just
    /// driven: held polls answered, frames on WebSockets, transports closed.
    fn flush_sio(&mut self, driven: Option<usize>) {
        let core = &mut self.core;
        if !core.dialects.sio.wants_flush() {
            return;
        }
        let shared = core.shared.clone();
        let mut wire = SlabWire {
            slots: &mut self.slots,
            pool: &mut core.pool,
            proto: &mut core.proto,
            shell: &mut core.shell,
            gauges: &mut core.gauges,
            dirty: &mut core.dirty,
            now: Tick(core.now_ms as u32),
            core: core.id,
            shared: &shared,
            driven,
        };
        core.dialects.sio.flush(&mut wire);
    }

    /// The Socket.IO sessions' deadlines (heartbeats, upgrade probes, dialect timers).
    fn sio_tick(&mut self) {
        let core = &mut self.core;
        if !core
            .dialects
            .sio
            .next_deadline()
            .is_some_and(|d| d <= core.now_ms)
        {
            return;
        }
        let shared = core.shared.clone();
        let mut env = SioEnv { shared: &shared };
        core.dialects.sio.tick(core.now_ms, &mut env);
        self.flush_sio(None);
    }

    fn remove(&mut self, key: usize) {
        self.detach(key);
        self.flush_deliveries(Some(key)); // what leaving told the others
        let mut slot = self.slots.remove(key);
        let core = &mut self.core;
        let _ = self.poll.registry().deregister(&mut slot.sock);
        if let Some(b) = slot.rx.take() {
            core.pool.put_rx(b);
        }
        if let Some(b) = slot.tx.take() {
            core.pool.put_tx(b);
        }
        core.shared.conns_total.fetch_sub(1, Ordering::Relaxed);
        core.shared.per_ip.remove(slot.ip_key);
    }

    fn hand_off(&mut self, key: usize, to: usize) {
        let mut slot = self.slots.remove(key);
        let core = &mut self.core;
        let _ = self.poll.registry().deregister(&mut slot.sock);
        let leftover = slot.rx.as_mut().map(|b| b.take_bytes()).unwrap_or_default();
        release_empty(&mut slot, &mut core.pool);
        let fd: std::os::fd::OwnedFd = slot.sock.into();
        let h = Handoff {
            stream: std::net::TcpStream::from(fd),
            tls: slot.tls,
            conn: slot.conn,
            leftover,
            ip_key: slot.ip_key,
            dialect: slot.dialect,
        };
        match core
            .shared
            .mailboxes
            .get(to)
            .map(|m| m.send(CoreMsg::Adopt(Box::new(h))))
        {
            Some(Ok(())) => core.shell.handoffs_out += 1,
            _ => {
                // The owner is gone (shutting down): the connection goes with it.
                core.shared.conns_total.fetch_sub(1, Ordering::Relaxed);
                core.shared.per_ip.remove(slot.ip_key);
            }
        }
    }
}

/// The reactor's side of [`crate::proto::eio::Wire`]: the slab, for connections other than
/// the one being driven.
struct SlabWire<'a> {
    slots: &'a mut Slab<Slot>,
    pool: &'a mut Pool,
    proto: &'a mut Counters,
    shell: &'a mut ShellCounters,
    gauges: &'a mut Gauges,
    dirty: &'a mut Vec<usize>,
    now: Tick,
    core: usize,
    shared: &'a Shared,
    /// The slot being driven (or removed): its gauge is that drive's to settle.
    driven: Option<usize>,
}

impl crate::proto::eio::Wire for SlabWire<'_> {
    fn poll_waiting(&self, r: ConnRef) -> bool {
        self.slots
            .get(r.key as usize)
            .is_some_and(|s| s.gen == r.gen && s.conn.is_held())
    }

    fn answer_poll(&mut self, r: ConnRef, resp: crate::proto::conn::Response) {
        let Some(slot) = live(self.slots, r) else {
            return;
        };
        let before = slot.class();
        let tx = &mut slot.tx.get_or_insert_with(|| self.pool.tx_force()).data;
        slot.conn.answer_held(self.now, &resp, tx);
        self.settle(r.key as usize, before);
    }

    fn ws_open(&self, r: ConnRef) -> bool {
        self.slots
            .get(r.key as usize)
            .is_some_and(|s| s.gen == r.gen && s.conn.is_open() && !s.lingering)
    }

    fn ws_send(&mut self, r: ConnRef, text: &str) {
        let Some(slot) = live(self.slots, r) else {
            return;
        };
        Outbox::new(slot.tx_force(self.pool), self.proto).text(text);
        let before = slot.class();
        self.settle(r.key as usize, before);
    }

    fn ws_close(&mut self, r: ConnRef) {
        let Some(slot) = live(self.slots, r) else {
            return;
        };
        let before = slot.class();
        let tx = &mut slot.tx.get_or_insert_with(|| self.pool.tx_force()).data;
        let mut host = Host::new(self.core, self.shared, self.shell);
        slot.conn.begin_close(self.now, 1000, "", tx, &mut host);
        self.settle(r.key as usize, before);
    }
}

impl SlabWire<'_> {
    /// After a change made outside the slot's own drive: keep the class gauges right and
    /// queue the slot so its output is written.
    fn settle(&mut self, key: usize, before: Class) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if self.driven != Some(key) {
            self.gauges.remove(before);
            self.gauges.add(slot.class());
        }
        if !slot.queued {
            slot.queued = true;
            self.dirty.push(key);
        }
    }
}

/// What a new slot starts with: a freshly accepted connection, or one adopted from another
/// core (with its protocol state, identity and the bytes it brought along).
struct NewSlot {
    sock: TcpStream,
    tls: Option<Box<TlsConn>>,
    conn: Conn,
    ip_key: u64,
    rx: Option<Box<RxBuf>>,
    dialect: Option<Box<DialectSlot>>,
}

fn insert(poll: &Poll, slots: &mut Slab<Slot>, core: &mut Core, new: NewSlot) -> io::Result<usize> {
    let NewSlot {
        mut sock,
        tls,
        conn,
        ip_key,
        rx,
        dialect,
    } = new;
    let entry = slots.vacant_entry();
    let key = entry.key();
    if let Err(e) = poll.registry().register(
        &mut sock,
        Token(key),
        Interest::READABLE | Interest::WRITABLE,
    ) {
        core.shared.conns_total.fetch_sub(1, Ordering::Relaxed);
        core.shared.per_ip.remove(ip_key);
        return Err(e);
    }
    core.next_gen = core.next_gen.wrapping_add(1);
    let slot = entry.insert(Slot {
        sock,
        tls,
        rx,
        tx: None,
        conn,
        ip_key,
        gen: core.next_gen,
        timer_at: None,
        readable: true,
        writable: true,
        queued: false,
        lingering: false,
        linger_over: false,
        move_to: None,
        dialect,
    });
    core.gauges.add(slot.class());
    core.queue(key, slot);
    Ok(key)
}

/// Close `slot` with `code` and `reason`, or drop it when no close frame can be written now
/// (its send queue ends in half a frame from its pipe peer).
#[allow(clippy::too_many_arguments)] // the close and where it goes, spelled out at each call
fn go_away(
    slot: &mut Slot,
    core: &mut Core,
    shared: &Shared,
    now: Tick,
    drop_it: bool,
    code: u16,
    reason: &str,
) {
    let mut host = Host::new(core.id, shared, &mut core.shell);
    if drop_it {
        slot.conn.abort(&mut host);
    } else {
        let tx = &mut slot.tx.get_or_insert_with(|| core.pool.tx_force()).data;
        slot.conn.begin_close(now, code, reason, tx, &mut host);
    }
}

fn set_dialect_deadline(slot: &mut Slot, at: Option<Tick>) {
    if let Some(d) = slot.dialect.as_mut() {
        d.dialect_deadline = at;
    }
}

/// The slot `r` names, if it is still that connection (not freed and reused since).
fn live(slots: &mut Slab<Slot>, r: ConnRef) -> Option<&mut Slot> {
    slots.get_mut(r.key as usize).filter(|s| s.gen == r.gen)
}

/// True when `key` is a pipe end whose peer has sent only part of a frame into `key`'s send
/// queue (so nothing else may be written there yet).
fn peer_mid_frame(slots: &Slab<Slot>, key: usize) -> bool {
    let Some(peer) = slots.get(key).and_then(|s| s.peer()) else {
        return false;
    };
    slots
        .get(peer.key as usize)
        .is_some_and(|p| p.gen == peer.gen && p.forwarding() && p.conn.mid_frame())
}

/// Answer a connection we will not serve with a short plain-text 503 (plain listeners only)
/// and close it.
fn refuse(sock: &mut TcpStream, tls: bool, why: &str) {
    if !tls {
        let body = format!("{why}\n");
        let msg = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = sock.write(msg.as_bytes());
    }
    let _ = sock.shutdown(std::net::Shutdown::Both);
}

/// Run buffered input through the protocol machine, then read more from the socket if the
/// machine wants it. Returns whether anything happened.
fn pump_in(
    key: usize,
    slot: &mut Slot,
    core: &mut Core,
    shared: &Arc<Shared>,
    fatal: &mut bool,
) -> bool {
    let limits = &shared.cfg.limits;
    let high_water = limits.buffer_size;
    let mut progress = false;

    if slot.rx.as_ref().is_some_and(|rx| !rx.is_empty())
        && slot.conn.wants_read(slot.pending_out(), high_water)
    {
        let me = slot.conn_ref(key);
        let Some(tx) = checkout(&mut slot.tx, || core.pool.tx()) else {
            core.starved.push((key, slot.gen));
            return false;
        };
        let now = core.tick();
        let ctx = ConnCtx {
            me,
            now_ms: core.now_ms,
            ident: slot.dialect.as_deref().map(|d| &d.ident),
            peer: slot.dialect.as_deref().and_then(|d| d.peer),
            dialects: &mut core.dialects,
            deliveries: &mut core.deliveries,
        };
        let mut host = Host::with_conn(core.id, shared, &mut core.shell, ctx);
        let rx = slot.rx.as_mut().expect("checked non-empty above");
        let used = slot.conn.handle_read(
            now,
            limits,
            rx.filled(),
            &mut tx.data,
            &mut core.proto,
            &mut host,
        );
        rx.consume(used);
        progress |= used > 0;
        if let Some((code, reason)) = host.take_close() {
            slot.conn
                .begin_close(now, code, reason, &mut tx.data, &mut host);
        }
        let (move_to, ident) = (host.take_move(), host.take_ident());
        drop(host);
        if let Some(to) = move_to {
            slot.move_to = Some(to as u16);
        }
        if let Some(ident) = ident {
            slot.dialect = Some(Box::new(DialectSlot {
                ident: *ident,
                peer: None,
                forwarding: false,
                dialect_deadline: None,
            }));
        }
    }

    if !slot.readable || !slot.conn.wants_read(slot.pending_out(), high_water) {
        return progress;
    }
    read_socket(key, slot, core, shared, fatal) || progress
}

/// One read from the socket (through TLS if any) into the slot's read buffer. Returns whether
/// anything happened (bytes, EOF, an error).
fn read_socket(
    key: usize,
    slot: &mut Slot,
    core: &mut Core,
    shared: &Arc<Shared>,
    fatal: &mut bool,
) -> bool {
    let Some(rx) = checkout(&mut slot.rx, || core.pool.rx()) else {
        core.starved.push((key, slot.gen));
        return false;
    };
    let spare = rx.spare();
    if spare.is_empty() {
        return false;
    }
    let asked = spare.len();
    let got = match slot.tls.as_mut() {
        None => slot.sock.read(spare),
        Some(tls) => {
            let n = tls.read_plaintext(spare);
            if n > 0 {
                Ok(n)
            } else {
                match tls.read_tls_from(&mut slot.sock) {
                    Ok(0) => Ok(0),
                    Ok(_) => {
                        // Ciphertext arrived; take what it decrypted to.
                        let n = tls.read_plaintext(rx.spare());
                        rx.filled_by(n);
                        core.shell.bytes_in += n as u64;
                        return true;
                    }
                    Err(TlsIoError::Io(e)) => Err(e),
                    Err(TlsIoError::Tls(e)) => {
                        core.shell.tls_errors += 1;
                        debug!("core={} TLS error: {e}", core.id);
                        // The alert is queued; it is flushed before the socket closes.
                        slot.readable = false;
                        slot.conn
                            .abort(&mut Host::new(core.id, shared, &mut core.shell));
                        return true;
                    }
                }
            }
        }
    };
    match got {
        Ok(0) => {
            slot.readable = false;
            slot.conn
                .handle_eof(&mut Host::new(core.id, shared, &mut core.shell));
            true
        }
        Ok(n) => {
            rx.filled_by(n);
            core.shell.bytes_in += n as u64;
            // A plain socket that returned less than asked is drained: skip the read that would
            // only say WouldBlock. Linux's edge-triggered epoll reports every later arrival
            // (and the peer's FIN) as a new event, so no edge is lost.
            if slot.tls.is_none() && n < asked {
                slot.readable = false;
            }
            true
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            slot.readable = false;
            false
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
        Err(_) => {
            *fatal = true;
            slot.conn
                .abort(&mut Host::new(core.id, shared, &mut core.shell));
            true
        }
    }
}

/// Both ends of a pipe, mutably, if `peer` is still the slot it names.
fn pair_mut(slots: &mut Slab<Slot>, key: usize, peer: ConnRef) -> Option<(&mut Slot, &mut Slot)> {
    let (a, b) = slots.get2_mut(key, peer.key as usize)?;
    (b.gen == peer.gen).then_some((a, b))
}

/// The cut-through pipe, one direction: forward `a`'s data frames to `b` as they arrive,
/// without reassembling messages. Headers are re-encoded (unmasked, same opcode, FIN and
/// length) and payload is unmasked in place in `a`'s read buffer, then written to `b`'s socket
/// together with the header in one vectored write when `b` has nothing queued; only what the
/// socket does not take is copied into `b`'s send queue. Returns whether anything moved.
fn pipe_in(
    key: usize,
    a: &mut Slot,
    b: &mut Slot,
    core: &mut Core,
    shared: &Arc<Shared>,
    fatal: &mut bool,
) -> bool {
    let high_water = shared.cfg.limits.buffer_size;
    let mut progress = false;
    loop {
        // `b` mid-frame into our queue: our own pongs and closes must wait for its boundary.
        let blocked = (b.forwarding() && b.conn.mid_frame()) || b.pending_out() >= high_water;
        if blocked || !a.rx.as_ref().is_some_and(|rx| !rx.is_empty()) {
            break;
        }
        let now = core.tick();
        let a_tx = &mut a.tx.get_or_insert_with(|| core.pool.tx_force()).data;
        let rx = a.rx.as_mut().expect("checked non-empty above");
        match a
            .conn
            .handle_read_piped(now, rx.filled(), a_tx, &mut core.proto)
        {
            PipeStep::NeedMore { consumed } => {
                rx.consume(consumed);
                progress |= consumed > 0;
                break;
            }
            PipeStep::Forward {
                header,
                header_len,
                payload,
                consumed,
            } => {
                forward(
                    b,
                    &header[..header_len as usize],
                    &rx.filled()[payload],
                    core,
                );
                rx.consume(consumed);
                progress = true;
            }
            PipeStep::Ended { code, consumed } => {
                rx.consume(consumed);
                // Everything `a` sent is already in `b`'s queue or socket: the close follows it.
                let tx = &mut b.tx.get_or_insert_with(|| core.pool.tx_force()).data;
                b.conn.begin_close(
                    now,
                    code,
                    "",
                    tx,
                    &mut Host::new(core.id, shared, &mut core.shell),
                );
                if let Some(p) = a.peer() {
                    core.queue(p.key as usize, b);
                }
                a.set_peer(None);
                b.set_peer(None);
                return true;
            }
        }
    }
    let peer_blocked = (b.forwarding() && b.conn.mid_frame()) || b.pending_out() >= high_water;
    if a.readable && !peer_blocked && a.conn.wants_read(a.pending_out(), high_water) {
        progress |= read_socket(key, a, core, shared, fatal);
    }
    progress
}

/// Send one forwarded piece (a header and/or payload) to `b`: straight to its socket when
/// nothing is queued before it, else behind what is queued.
fn forward(b: &mut Slot, header: &[u8], payload: &[u8], core: &mut Core) {
    let mut written = 0;
    if b.tls.is_none() && b.writable && b.pending_out() == 0 {
        match b
            .sock
            .write_vectored(&[IoSlice::new(header), IoSlice::new(payload)])
        {
            Ok(n) => {
                written = n;
                core.shell.bytes_out += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => b.writable = false,
            // Anything else: queue it; `b`'s own drive meets the error.
            Err(_) => {}
        }
    }
    if written < header.len() + payload.len() {
        let tx = b.tx_force(&mut core.pool);
        if written < header.len() {
            tx.extend_from_slice(&header[written..]);
            tx.extend_from_slice(payload);
        } else {
            tx.extend_from_slice(&payload[written - header.len()..]);
        }
    }
}

/// Write queued output. Returns whether anything was written.
fn pump_out(slot: &mut Slot, core: &mut Core, fatal: &mut bool) -> bool {
    let mut progress = false;
    if let Some(tls) = slot.tls.as_mut() {
        if let Some(tx) = slot.tx.as_mut().filter(|t| !t.is_empty()) {
            let n = tls.write_plaintext(tx.pending());
            tx.written(n);
            core.shell.bytes_out += n as u64;
            progress |= n > 0;
        }
        while slot.writable && tls.wants_write() {
            match tls.write_tls_to(&mut slot.sock) {
                Ok(0) => break,
                Ok(_) => progress = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => slot.writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    *fatal = true;
                    break;
                }
            }
        }
        return progress;
    }
    let Some(tx) = slot.tx.as_mut() else {
        return false;
    };
    while slot.writable && !tx.is_empty() {
        match slot.sock.write(tx.pending()) {
            Ok(0) => break,
            Ok(n) => {
                tx.written(n);
                core.shell.bytes_out += n as u64;
                progress = true;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => slot.writable = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                *fatal = true;
                break;
            }
        }
    }
    progress
}

/// After our FIN: read and drop whatever the peer still sends until its FIN.
fn discard_input(slot: &mut Slot, fatal: &mut bool) -> bool {
    let mut scratch = [0u8; 1024];
    let mut progress = false;
    while slot.readable {
        match slot.sock.read(&mut scratch) {
            Ok(0) => {
                slot.readable = false;
                slot.linger_over = true;
                return true;
            }
            Ok(_) => progress = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => slot.readable = false,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                *fatal = true;
                return true;
            }
        }
    }
    progress
}

/// The slot's buffer, checked out from the pool if it has none. `None`: the pool is exhausted.
fn checkout<B>(
    buf: &mut Option<Box<B>>,
    get: impl FnOnce() -> Option<Box<B>>,
) -> Option<&mut Box<B>> {
    if buf.is_none() {
        *buf = Some(get()?);
    }
    buf.as_mut()
}

/// Give empty buffers back to the pool: idle connections hold none.
fn release_empty(slot: &mut Slot, pool: &mut Pool) {
    if slot.rx.as_ref().is_some_and(|b| b.is_empty()) {
        if let Some(b) = slot.rx.take() {
            pool.put_rx(b);
        }
    }
    if slot.tx.as_ref().is_some_and(|b| b.is_empty()) {
        if let Some(b) = slot.tx.take() {
            pool.put_tx(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_slot_is_small() {
        // What an idle connection costs in the slab, before the kernel's socket memory.
        let size = std::mem::size_of::<Slot>();
        println!("slot for one connection: {size} bytes");
        assert!(size <= 152, "slot grew to {size} bytes");
    }
}
