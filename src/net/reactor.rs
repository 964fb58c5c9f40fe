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
use crate::net::app::Host;
use crate::net::mailbox::{CoreMsg, Handoff, Inbox};
use crate::net::pool::{Pool, RxBuf, TxBuf};
use crate::net::timer::{Entry, Timers};
use crate::net::tls::{TlsConn, TlsIoError};
use crate::net::Shared;
use crate::proto::conn::{Conn, Counters};
use crate::proto::time::Tick;
use crate::{debug, error, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::io::{self, Read, Write};
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

    fn pending_out(&self) -> usize {
        self.tx.as_ref().map_or(0, |t| t.len())
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
            self.drive_dirty();
            self.retry_accept();
            let c = &self.core;
            c.shared.cores[c.id].publish(&c.proto, &c.shell, &c.gauges, c.pool.in_use());
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
            if let Err(e) = insert(
                &self.poll,
                &mut self.slots,
                core,
                sock,
                tls,
                conn,
                ip_key,
                None,
            ) {
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
            // The pool may be exhausted; a handoff carries at most one buffer's worth, so
            // allocate outside the pool rather than lose the bytes.
            let mut b = core.pool.rx().unwrap_or_else(|| {
                Pool::new(leftover.len().max(1), 1)
                    .rx()
                    .expect("fresh pool has one buffer")
            });
            let n = leftover.len().min(b.spare().len());
            b.spare()[..n].copy_from_slice(&leftover[..n]);
            b.filled_by(n);
            Some(b)
        };
        let sock = TcpStream::from_std(stream);
        if let Err(e) = insert(
            &self.poll,
            &mut self.slots,
            core,
            sock,
            tls,
            conn,
            ip_key,
            rx,
        ) {
            warn!("core={} adopt register failed: {e}", core.id);
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
        for (key, slot) in self.slots.iter_mut() {
            let before = slot.class();
            let tx = slot.tx.get_or_insert_with(|| core.pool.tx_force());
            let mut host = Host::new(core.id, &shared, &mut core.shell);
            slot.conn
                .begin_close(now, 1001, "server shutting down", &mut tx.data, &mut host);
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
        let core = &mut self.core;
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let before = slot.class();
        let shared = core.shared.clone();
        let limits = &shared.cfg.limits;
        let mut rounds = 0;
        let mut fatal = false;
        loop {
            let mut progress = false;
            if slot.lingering {
                progress |= discard_input(slot, &mut fatal);
            } else {
                progress |= pump_in(key, slot, core, &shared, &mut fatal);
            }
            progress |= pump_out(slot, core, &mut fatal);
            if fatal || !progress {
                break;
            }
            rounds += 1;
            if rounds >= DRIVE_BUDGET {
                // Fairness: let other slots run; our edges stay recorded.
                core.queue(key, slot);
                break;
            }
        }
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
        if !core.starved.is_empty() && !core.pool.exhausted() {
            for (k, gen) in std::mem::take(&mut core.starved) {
                if let Some(s) = self.slots.get_mut(k).filter(|s| s.gen == gen) {
                    core.queue(k, s);
                }
            }
        }
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
        } else if let (Some(to), true) = (slot.move_to, flushed && slot.conn.is_parked()) {
            self.hand_off(key, to as usize);
            return;
        } else if !slot.lingering {
            if let Some(t) = slot.conn.poll_timeout(limits) {
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

    fn remove(&mut self, key: usize) {
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

#[allow(clippy::too_many_arguments)] // one constructor for accepted and adopted slots
fn insert(
    poll: &Poll,
    slots: &mut Slab<Slot>,
    core: &mut Core,
    mut sock: TcpStream,
    tls: Option<Box<TlsConn>>,
    conn: Conn,
    ip_key: u64,
    rx: Option<Box<RxBuf>>,
) -> io::Result<()> {
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
    });
    core.gauges.add(slot.class());
    core.queue(key, slot);
    Ok(())
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

/// Read what the socket has and run it through the protocol machine. Returns whether anything
/// happened.
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

    // 1. Offer buffered input to the machine.
    if let Some(rx) = slot.rx.as_mut().filter(|rx| !rx.is_empty()) {
        if slot
            .conn
            .wants_read(slot.tx.as_ref().map_or(0, |t| t.len()), high_water)
        {
            let Some(tx) = checkout(&mut slot.tx, || core.pool.tx()) else {
                core.starved.push((key, slot.gen));
                return false;
            };
            let now = core.tick();
            let mut host = Host::new(core.id, shared, &mut core.shell);
            let used = slot.conn.handle_read(
                now,
                limits,
                rx.filled(),
                &mut tx.data,
                &mut core.proto,
                &mut host,
            );
            if let Some(to) = host.take_move() {
                slot.move_to = Some(to as u16);
            }
            rx.consume(used);
            progress |= used > 0;
        }
    }

    // 2. Read more, if the machine wants it.
    if !slot.readable || !slot.conn.wants_read(slot.pending_out(), high_water) {
        return progress;
    }
    let Some(rx) = checkout(&mut slot.rx, || core.pool.rx()) else {
        core.starved.push((key, slot.gen));
        return progress;
    };
    let spare = rx.spare();
    if spare.is_empty() {
        return progress;
    }
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
                        // Ciphertext arrived; plaintext (if any) is picked up next round.
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
            true
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            slot.readable = false;
            progress
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
        assert!(size <= 144, "slot grew to {size} bytes");
    }
}
