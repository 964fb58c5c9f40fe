//! One reactor per core: a mio `Poll`, its listeners, a slab of connection slots, and the
//! core's instance of every dialect.
//!
//! Each iteration is a short sequence of named steps ([`Reactor::run`]): poll, note the edges,
//! read the mailbox, expire connection timers, run the dialects' deadlines, drive every dirty
//! slot, retry accepting if it was paused, publish metrics. A connection is registered for
//! readable edges, and for writable ones too from the first write that would block (see
//! [`Slot::out_watched`]); interest is never taken away. What the reactor *does* with an edge
//! is derived from the protocol state (`Conn::wants_read`, pending output), and an edge is
//! forgotten only when the socket says `WouldBlock`, so no edge is ever lost. Listeners are
//! level-triggered ([`crate::net::listener`]).
//!
//! What this file owns: syscalls, buffers, TLS records, timers, the slab, and the move of a
//! connection to another core. What it does not: any protocol rule (`proto::conn`), what a
//! request or message means (`net::flow` hands them to the dialects), or which dialects exist
//! (`registry`).
//!
//! Bookkeeping has one home each: [`Reactor::settle`] (gauges, a dialect's `on_close`, a
//! pipe's other end), [`Reactor::schedule`] (the timer entry), [`Core::forget_count`]
//! (connection counts per server and per address).

use crate::metrics::{Gauges, Latency, ShellCounters};
use crate::net::listener::{self, Burst};
use crate::net::mailbox::{CoreMsg, Handoff, Inbox};
use crate::net::pool::Pool;
use crate::net::slot::{tls_mut, tx_force, Linger, Placed, Slot, Stamp, StampKind};
use crate::net::timer::{Entry, Timers};
use crate::net::tls::{TlsConn, TlsIoError};
use crate::net::{resolve, same_gen, Shared};
use crate::proto::conn::{Conn, Counters};
use crate::proto::dialect::{Handle, Outputs};
use crate::proto::time::Tick;
use crate::registry::Instances;
use crate::{debug, error, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) const WAKER: Token = Token(usize::MAX);
const LISTENER_BASE: usize = usize::MAX - 1024;

/// Rounds of read/process/write per slot per iteration before yielding to other slots.
const DRIVE_BUDGET: u32 = 32;

/// Passes over the queued connections in one `drive_dirty`: the first drives what the poll
/// readied, the second the connections those drives delivered to. A third (a delivery's
/// delivery, or a slot that used its budget) waits for the turn's sends.
const DIRTY_PASSES: usize = 2;

/// How long a closed socket keeps draining the peer's last bytes after our FIN, so that the
/// kernel does not answer unread input with a reset that could destroy our final response.
const LINGER: Duration = Duration::from_secs(2);
/// How long accepting pauses after the process ran out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a timer waits when its connection cannot be written to yet (a pipe peer is
/// mid-frame into its send queue).
const BLOCKED_RETRY: Duration = Duration::from_millis(50);

pub(crate) struct Listener {
    pub sock: TcpListener,
    pub tls: bool,
    /// Connections start with a PROXY protocol header.
    pub proxy: bool,
    /// How many to accept at its next report.
    pub burst: Burst,
}

/// The reactor's own mutable state, apart from the slab (so both can be borrowed at once).
pub(crate) struct Core {
    pub id: usize,
    /// This process's node in a cluster (0 on its own).
    pub node: u16,
    /// This core's place (node and core): the top of every handle it makes, its locator.
    pub here: u32,
    /// This core's side of the cluster (`None` on its own).
    pub link: Option<Box<crate::net::remote::Link>>,
    pub shared: Arc<Shared>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub pool: Pool,
    pub timers: Timers,
    /// Connections waiting for their first request, in the order they arrived, with their
    /// handshake deadline: every accepted connection has that deadline, and almost every
    /// one is past it in milliseconds, so it is kept here instead of in `timers`. The front
    /// is checked each turn ([`Reactor::expire_handshakes`]) and entries whose connection
    /// has moved on are dropped as they reach it: the queue holds the connections of the
    /// last few moments, not every connection of the last `--handshake-timeout`.
    pub handshakes: std::collections::VecDeque<Handshake>,
    pub proto: Counters,
    pub shell: ShellCounters,
    pub gauges: Gauges,
    pub dirty: Vec<usize>,
    /// Slots that could not get a buffer; retried when one comes back.
    pub starved: Vec<(usize, u32)>,
    pub next_gen: u32,
    pub epoch: Instant,
    /// The core's clock (ms since `epoch`) and the wall clock (ms since the UNIX epoch), read
    /// once per iteration.
    pub now_ms: u64,
    pub unix_ms: u64,
    /// The server's clock (µs since `Shared::started`, the same on every core), read with
    /// `now_ms`: latency stamps ([`Stamp`]) are taken on it.
    pub clock_us: u64,
    /// Where `epoch` is on the server's clock, in µs.
    pub epoch_us: u64,
    /// Latencies that ended in this loop turn (a histogram and its stamp's start), observed at
    /// the end of the turn with one clock read ([`Reactor::publish`]).
    pub latencies: Vec<(Latency, u32)>,
    /// A dialect's `on_message` ran since outputs were last applied: what it queued for this
    /// core's connections carries this turn's clock as its read time.
    pub from_message: bool,
    pub accept_paused_until: Option<u64>,
    pub draining: Option<Instant>,
    /// This core's instance of every dialect.
    pub dialects: Instances,
    /// What the dialects asked for, applied after each call.
    pub out: Outputs,
    /// The other queue, swapped in while `out` is applied.
    pub spare_out: Outputs,
    /// Connections a dialect held that are no longer reachable: it hears `on_close`.
    pub gone: Vec<(Handle, usize)>,
    /// Records for other cores of this node, one batch per core, sent at the end of the turn.
    pub to_cores: Vec<(usize, Vec<u8>)>,
    /// When a rate-limit closure may be logged again (one line a second at most).
    pub rate_log_at: u64,
    /// Plain connections with output, sent at the end of the turn ([`Reactor::flush_sends`]).
    /// (A slot's key and generation: a key freed and taken again before the sends leave is
    /// not sent for twice.)
    pub owed_sends: Vec<(usize, u32)>,
    /// The ring that makes those sends in one system call (`None`: `--batch-sends false`, or
    /// no io_uring here), and where their results land.
    pub batch: Option<sigyard_sendbatch::Batch>,
    pub sent: Vec<(u64, io::Result<usize>)>,
}

impl Core {
    pub fn tick(&self) -> Tick {
        Tick::from_ms(self.now_ms)
    }

    pub fn queue(&mut self, key: usize, slot: &mut Slot) {
        if !slot.queued() {
            slot.set_queued(true);
            self.dirty.push(key);
        }
    }

    /// A connection is gone from the server's and its address's counts.
    pub fn forget_count(&self, ip_key: crate::net::IpKey) {
        self.shared.conns_total.fetch_sub(1, Ordering::Relaxed);
        self.shared.per_ip.remove(ip_key);
    }

    /// A rate limit's log line, at most one a second per core: a flood is not a log flood.
    pub fn rate_warn(&mut self, what: std::fmt::Arguments<'_>) {
        if self.now_ms >= self.rate_log_at {
            warn!("core={} {what}", self.id);
            self.rate_log_at = self.now_ms + 1000;
        }
    }
}

/// An entry of [`Core::handshakes`].
#[derive(Clone, Copy)]
pub(crate) struct Handshake {
    key: u32,
    deadline: Tick,
    gen: u16,
}

/// Why a client address may not have one more connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// At `--max-connections-per-ip`.
    PerIp,
    /// Past `--max-new-connections-per-ip`.
    ConnRate,
}

impl Refusal {
    /// The status and text the client gets.
    pub fn answer(self) -> (u16, &'static str) {
        match self {
            Refusal::PerIp => (503, "too many connections from your address"),
            Refusal::ConnRate => (429, "too many new connections from your address"),
        }
    }
}

pub(crate) struct Reactor {
    pub poll: Poll,
    pub inbox: Inbox,
    pub listeners: Vec<Listener>,
    pub slots: Slab<Slot>,
    pub core: Core,
}

/// A connection to enter in the slab: freshly accepted, or adopted from another core.
struct NewSlot {
    sock: TcpStream,
    tls: Option<Box<TlsConn>>,
    conn: Conn,
    ip_key: crate::net::IpKey,
    trusted_peer: bool,
    proxy_header: bool,
    leftover: Vec<u8>,
    placed: Option<Placed>,
    stamp: Stamp,
}

impl Reactor {
    pub(crate) fn new(
        id: usize,
        poll: Poll,
        inbox: Inbox,
        listeners: Vec<Listener>,
        shared: Arc<Shared>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> io::Result<Self> {
        for (i, l) in listeners.iter().enumerate() {
            listener::watch(&poll, &l.sock, Token(LISTENER_BASE + i))?;
        }
        let limits = &shared.cfg.limits;
        let pool = Pool::new(limits.buffer_size, limits.max_buffers_per_core)
            .with_streams(limits.stream_buffer_size);
        let reserve = limits
            .max_connections
            .div_ceil(shared.cfg.effective_threads())
            .min(1 << 20);
        let dialects = shared.registry.instances();
        let node = shared.node();
        let link = shared
            .cluster
            .clone()
            .map(|c| Box::new(crate::net::remote::Link::new(c)));
        let epoch = Instant::now();
        let epoch_us = epoch.saturating_duration_since(shared.started).as_micros() as u64;
        Ok(Reactor {
            poll,
            inbox,
            listeners,
            // Room for this core's share of --max-connections, reserved and not touched (no
            // page is resident until a connection uses it): the slab never grows by copying,
            // which would leave its old copy behind in the heap.
            slots: Slab::with_capacity(reserve),
            core: Core {
                id,
                node,
                here: crate::net::place(node, id),
                link,
                tls,
                pool,
                timers: Timers::default(),
                handshakes: Default::default(),
                proto: Counters::default(),
                shell: ShellCounters::default(),
                gauges: Gauges::default(),
                dirty: Vec::new(),
                starved: Vec::new(),
                next_gen: 0,
                epoch,
                now_ms: 0,
                unix_ms: (shared.wall)(),
                clock_us: epoch_us,
                epoch_us,
                latencies: Vec::new(),
                from_message: false,
                accept_paused_until: None,
                draining: None,
                dialects,
                out: Outputs::default(),
                spare_out: Outputs::default(),
                gone: Vec::new(),
                to_cores: Vec::new(),
                rate_log_at: 0,
                owed_sends: Vec::new(),
                batch: None,
                sent: Vec::new(),
                shared,
            },
        })
    }

    /// Run until shut down and drained.
    pub(crate) fn run(mut self) {
        self.core.batch = self.send_ring();
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
            self.read_clocks();
            if self.note_edges(&events) {
                self.read_mailbox();
            }
            self.expire_timers(&mut expired);
            self.expire_handshakes();
            self.dialect_deadlines();
            self.drive_dirty();
            self.close_opened();
            self.flush_sends();
            self.retry_accept();
            self.retry_claims();
            self.flush_cluster();
            self.flush_cores();
            self.publish();
            if self.drained() {
                return;
            }
        }
    }

    /// The ring for the turn's sends, made on the reactor's own thread: the kernel ties a ring
    /// to the thread that creates it and, when the ring closes, interrupts that thread's
    /// blocking calls (`EINTR`) to finish its part, which on an embedder's thread would land in
    /// the middle of its work.
    fn send_ring(&self) -> Option<sigyard_sendbatch::Batch> {
        if !self.core.shared.cfg.batch_sends {
            return None;
        }
        match sigyard_sendbatch::Batch::new(SEND_RING) {
            Ok(b) => Some(b),
            Err(e) => {
                if self.core.id == 0 {
                    info!("sends are made one by one: io_uring is not available here ({e})");
                }
                None
            }
        }
    }

    fn read_clocks(&mut self) {
        let c = &mut self.core;
        let since = c.epoch.elapsed();
        c.now_ms = since.as_millis() as u64;
        c.clock_us = c.epoch_us + since.as_micros() as u64;
        c.unix_ms = (c.shared.wall)();
        c.shell.loop_iterations += 1;
    }

    /// Record each event's edges on its slot and queue the slot; accept on listeners.
    /// Returns whether the mailbox's waker fired.
    fn note_edges(&mut self, events: &Events) -> bool {
        let mut woke = false;
        for ev in events.iter() {
            match ev.token() {
                WAKER => woke = true,
                Token(t) if t >= LISTENER_BASE => self.accept(t - LISTENER_BASE, false),
                Token(key) => {
                    let Some(slot) = self.slots.get_mut(key) else {
                        continue;
                    };
                    if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                        slot.set_readable(true);
                    }
                    if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
                        slot.set_writable(true);
                    }
                    self.core.queue(key, slot);
                }
            }
        }
        woke
    }

    fn poll_timeout(&mut self) -> Option<Duration> {
        let c = &mut self.core;
        if !c.dirty.is_empty() || !c.owed_sends.is_empty() {
            return Some(Duration::ZERO);
        }
        let next = [
            c.timers.next_expiry(),
            c.handshakes.front().map(|h| h.deadline.to_ms(c.now_ms)),
            c.dialects.next_deadline(),
            c.accept_paused_until,
            c.link.as_ref().and_then(|l| l.told.retry_at),
        ]
        .into_iter()
        .flatten()
        .min();
        let now = c.epoch.elapsed().as_millis() as u64;
        let mut t = next.map(|n| Duration::from_millis(n.saturating_sub(now)));
        if let Some(d) = c.draining {
            let left = d
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(50));
            t = Some(t.map_or(left, |t| t.min(left)));
        }
        t
    }

    fn publish(&mut self) {
        let c = &mut self.core;
        let m = &c.shared.cores[c.id];
        for (status, reason) in c.proto.rejected.drain(..) {
            m.handshake_failed(status, reason);
        }
        if !c.latencies.is_empty() {
            // The end of the turn: every latency that ended in it ends now (an upper bound, by
            // at most the turn's length), for one clock read per turn, not one per write.
            let end = (c.epoch_us + c.epoch.elapsed().as_micros() as u64) as u32;
            for (what, at) in c.latencies.drain(..) {
                m.observe(what, u64::from(end.wrapping_sub(at)));
            }
        }
        m.publish(&c.proto, &c.shell, &c.gauges, c.pool.in_use());
        c.dialects
            .changed_metrics(|at, values| m.publish_dialects(at, values));
    }

    fn drained(&self) -> bool {
        let Some(deadline) = self.core.draining else {
            return false;
        };
        // Done when the whole server holds no connection, not just this core: a request read
        // on another core may still be handed to this one, and a core that had already left
        // would lose it.
        let done = (self.slots.is_empty()
            && self.core.shared.conns_total.load(Ordering::Relaxed) == 0)
            || Instant::now() >= deadline;
        if done {
            debug!(
                "core={} drained ({} connections left)",
                self.core.id,
                self.slots.len()
            );
        }
        done
    }

    // ── accepting ──────────────────────────────────────────────────────────────────────────

    /// Accept from listener `li`: as many as its [`Burst`] expects (the listener is
    /// level-triggered: what is left in the backlog is reported at the next poll), or, with
    /// `all`, until the backlog is empty (at shutdown).
    fn accept(&mut self, li: usize, all: bool) {
        if self.core.draining.is_some() || self.core.accept_paused_until.is_some() {
            return;
        }
        let turn = self.core.shell.loop_iterations;
        let Some(mut budget) = self.listeners.get_mut(li).map(|l| l.burst.size(turn)) else {
            return;
        };
        loop {
            if self.core.pool.exhausted() {
                // Every buffer is busy: leave connections in the backlog until one returns.
                self.pause_accept(None);
                return;
            }
            let Some(listener) = self.listeners.get_mut(li) else {
                return;
            };
            if budget == 0 && !all {
                listener.burst.all_found(turn);
                return;
            }
            budget = budget.saturating_sub(1);
            let (mut sock, addr) = match listener.sock.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    listener.burst.drained();
                    return;
                }
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.kind() == io::ErrorKind::ConnectionAborted =>
                {
                    continue
                }
                Err(e) => {
                    self.core.shell.accept_errors += 1;
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                    ) {
                        // Out of descriptors or kernel memory: pause instead of spinning or dying.
                        self.pause_accept(Some(&e));
                    } else {
                        warn!("core={} accept failed: {e}", self.core.id);
                    }
                    return;
                }
            };
            let (tls, proxy) = (listener.tls, listener.proxy);
            let trusted = &self.core.shared.cfg.trusted_proxies;
            let trusted_peer = !trusted.is_empty() && trusted.contains(addr.ip());
            let Some(ip_key) = self.count_in(&mut sock, tls, addr.ip(), trusted_peer) else {
                continue;
            };
            let tls = match (tls, self.core.tls.as_ref()) {
                (false, _) => None,
                (true, Some(cfg)) => match TlsConn::new(cfg.clone()) {
                    Ok(t) => Some(Box::new(t)),
                    Err(_) => {
                        self.core.forget_count(ip_key);
                        self.core.shell.tls_errors += 1;
                        continue;
                    }
                },
                (true, None) => {
                    self.core.forget_count(ip_key);
                    continue;
                }
            };
            self.core.shell.accepted += 1;
            let conn = Conn::new(self.core.tick());
            let new = NewSlot {
                sock,
                tls,
                conn,
                ip_key,
                trusted_peer,
                proxy_header: proxy,
                leftover: Vec::new(),
                placed: None,
                stamp: Stamp::accepted(self.core.clock_us),
            };
            if let Err(e) = self.insert(new) {
                warn!("core={} register failed: {e}", self.core.id);
            }
        }
    }

    fn pause_accept(&mut self, why: Option<&io::Error>) {
        let c = &mut self.core;
        if let (Some(e), None) = (why, c.accept_paused_until) {
            warn!("core={} accept paused for {:?}: {e}", c.id, ACCEPT_BACKOFF);
        }
        if c.accept_paused_until.is_none() {
            self.watch_listeners(false);
        }
        let c = &mut self.core;
        c.accept_paused_until = Some(c.now_ms + ACCEPT_BACKOFF.as_millis() as u64);
        c.shell.accept_pauses += 1;
    }

    /// Count a new connection in (server total, per address); refuse it with a 503 past
    /// either limit. Returns its per-address key.
    /// (A trusted proxy is not counted as an address: each of its connections counts for the
    /// client it names, once it has; one that names none is not limited per address.)
    fn count_in(
        &mut self,
        sock: &mut TcpStream,
        tls: bool,
        ip: std::net::IpAddr,
        trusted_peer: bool,
    ) -> Option<crate::net::IpKey> {
        let c = &mut self.core;
        let total = c.shared.conns_total.fetch_add(1, Ordering::Relaxed) + 1;
        if total > c.shared.cfg.limits.max_connections {
            c.shared.conns_total.fetch_sub(1, Ordering::Relaxed);
            c.shell.rejected_max_connections += 1;
            refuse(sock, tls, "server at max-connections");
            return None;
        }
        if trusted_peer {
            return Some(0);
        }
        // (The table is shared by the cores: it takes the server's clock, not this core's.)
        let now = c.shared.started.elapsed().as_millis() as u64;
        if !c.shared.conn_rates.admit(crate::net::ip_key(ip), now) {
            c.shared.conns_total.fetch_sub(1, Ordering::Relaxed);
            c.shell.rejected_conn_rate += 1;
            c.rate_warn(format_args!(
                "refused {ip}: past --max-new-connections-per-ip"
            ));
            let (status, why) = Refusal::ConnRate.answer();
            refuse_with(sock, tls, status, why);
            return None;
        }
        match c.shared.per_ip.try_add(ip) {
            Some(k) => Some(k),
            None => {
                c.shared.conns_total.fetch_sub(1, Ordering::Relaxed);
                c.shell.rejected_per_ip += 1;
                let (status, why) = Refusal::PerIp.answer();
                refuse_with(sock, tls, status, why);
                None
            }
        }
    }

    fn retry_accept(&mut self) {
        let Some(until) = self.core.accept_paused_until else {
            return;
        };
        if self.core.now_ms >= until {
            self.core.accept_paused_until = None;
            self.watch_listeners(true);
            for li in 0..self.listeners.len() {
                self.accept(li, false);
            }
        }
    }

    /// Stop or resume the reports of this core's listeners (while accepting is paused, a
    /// level-triggered listener with a backlog would wake every poll).
    fn watch_listeners(&mut self, on: bool) {
        for (i, l) in self.listeners.iter().enumerate() {
            if let Err(e) = listener::set_watch(&self.poll, &l.sock, Token(LISTENER_BASE + i), on) {
                warn!("core={} listener watch: {e}", self.core.id);
            }
        }
    }

    /// Register a connection and enter it in the slab.
    fn insert(&mut self, new: NewSlot) -> io::Result<usize> {
        let NewSlot {
            mut sock,
            tls,
            conn,
            ip_key,
            trusted_peer,
            proxy_header,
            leftover,
            placed,
            stamp,
        } = new;
        let c = &mut self.core;
        let entry = self.slots.vacant_entry();
        let key = entry.key();
        let token = Token(key);
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut sock, token, Interest::READABLE)
        {
            c.forget_count(ip_key);
            return Err(e);
        }
        c.next_gen = c.next_gen.wrapping_add(1);
        let slot = entry.insert(Slot::new(sock, tls, conn, ip_key, c.next_gen));
        if in_handshake(slot) {
            if let Some(deadline) = slot.conn.poll_timeout(&c.shared.limits) {
                c.handshakes.push_back(Handshake {
                    key: key as u32,
                    deadline,
                    gen: slot.gen() as u16,
                });
            }
        }
        slot.stamp = stamp;
        if placed.is_none() {
            // Freshly accepted: wait for the first readable edge rather than read at once. A
            // client sends its request only after its connect completes, so when the server
            // keeps up, the read right after `accept` finds nothing and costs a syscall per
            // connection; bytes that are already there are reported by the registration.
            slot.set_readable(false);
        }
        if trusted_peer || proxy_header {
            let e = slot.extra();
            e.trusted_peer = trusted_peer;
            e.proxy_header = proxy_header;
        }
        if !leftover.is_empty() {
            // A move carries at most one buffer's worth: take a buffer even from an exhausted
            // pool rather than lose the bytes.
            if let Some(b) = slot.rx.buf(&mut c.pool, true) {
                let n = leftover.len().min(b.spare().len());
                b.spare()[..n].copy_from_slice(&leftover[..n]);
                b.filled_by(n);
            }
        }
        if let Some(p) = placed {
            slot.extra().placed = Some(Box::new(p));
        }
        c.gauges.add(slot.class());
        slot.counted = slot.class();
        c.queue(key, slot);
        Ok(key)
    }

    // ── mailbox ────────────────────────────────────────────────────────────────────────────

    fn read_mailbox(&mut self) {
        while let Ok(msg) = self.inbox.try_recv() {
            match msg {
                CoreMsg::Adopt(h) => self.adopt(*h),
                CoreMsg::Shutdown { deadline } => self.begin_shutdown(deadline),
                CoreMsg::TlsConfig(cfg) => self.core.tls = Some(cfg),
                CoreMsg::Cluster(m) => self.on_cluster(m),
                CoreMsg::Records(batch) => {
                    self.on_records(&batch);
                    self.flush_effects();
                }
            }
        }
    }

    fn adopt(&mut self, h: Handoff) {
        let c = &mut self.core;
        c.shell.handoffs_in += 1;
        let Handoff {
            stream,
            tls,
            mut conn,
            leftover,
            ip_key,
            trusted_peer,
            placed,
            stamp,
        } = h;
        if let Err(e) = stream.set_nonblocking(true) {
            warn!("core={} adopt failed: {e}", c.id);
            c.forget_count(ip_key);
            return;
        }
        conn.unpark(c.tick());
        let new = NewSlot {
            sock: TcpStream::from_std(stream),
            tls,
            conn,
            ip_key,
            trusted_peer,
            proxy_header: false,
            leftover,
            placed: Some(placed),
            stamp,
        };
        if let Err(e) = self.insert(new) {
            warn!("core={} adopt register failed: {e}", self.core.id);
        }
    }

    /// Move a connection whose request belongs to another core, with the bytes it brought.
    fn hand_off(&mut self, key: usize, to: usize) {
        let mut slot = self.slots.remove(key);
        let c = &mut self.core;
        c.gauges.remove(slot.counted);
        let _ = self.poll.registry().deregister(&mut slot.sock);
        let leftover = slot.rx.take_bytes(&mut c.pool);
        slot.release_buffers(&mut c.pool, false);
        let placed = slot
            .extra
            .as_mut()
            .and_then(|e| e.placed.take())
            .map_or_else(Placed::default, |p| *p);
        let trusted_peer = slot.trusted_peer();
        let fd: std::os::fd::OwnedFd = slot.sock.into();
        let h = Handoff {
            stream: std::net::TcpStream::from(fd),
            tls: slot.extra.as_mut().and_then(|e| e.tls.take()),
            conn: slot.conn,
            leftover,
            ip_key: slot.ip_key,
            trusted_peer,
            placed,
            stamp: slot.stamp,
        };
        match c
            .shared
            .mailboxes
            .get(to)
            .map(|m| m.send(CoreMsg::Adopt(Box::new(h))))
        {
            Some(Ok(())) => c.shell.handoffs_out += 1,
            // The owner is gone (shutting down): the connection goes with it.
            _ => c.forget_count(slot.ip_key),
        }
    }

    /// Stop accepting and close politely: what the kernel already queued on our listeners is
    /// accepted first (closing a listener resets its queue; with `SO_REUSEPORT` a process that
    /// took over the port keeps every later connection), open WebSockets get 1001, a
    /// connection between requests closes, and a request under way is answered (the upgrades
    /// among them then get 1001 too, see [`Reactor::close_opened`]) before its connection
    /// closes.
    fn begin_shutdown(&mut self, deadline: Instant) {
        for li in 0..self.listeners.len() {
            self.accept(li, true);
        }
        self.core.draining = Some(deadline);
        for l in self.listeners.drain(..) {
            let mut sock = l.sock;
            let _ = self.poll.registry().deregister(&mut sock);
        }
        let keys: Vec<usize> = self.slots.iter().map(|(k, _)| k).collect();
        for key in keys {
            let Some(slot) = self.slots.get_mut(key) else {
                continue;
            };
            if slot.conn.is_websocket() {
                self.go_away(key, 1001, "server shutting down");
            } else {
                slot.conn.drain();
                self.core.queue(key, slot);
                self.settle(key);
            }
        }
        self.flush_effects();
    }

    /// While draining: a WebSocket opened by a request that was under way at the shutdown is
    /// closed with 1001 right after its 101.
    fn close_opened(&mut self) {
        if self.core.draining.is_none() {
            return;
        }
        let open: Vec<usize> = self
            .slots
            .iter()
            .filter(|(_, s)| s.conn.is_open())
            .map(|(k, _)| k)
            .collect();
        for key in open {
            self.go_away(key, 1001, "server shutting down");
        }
        if !self.core.gone.is_empty() {
            self.flush_effects();
        }
    }

    // ── timers ─────────────────────────────────────────────────────────────────────────────

    fn expire_timers(&mut self, expired: &mut Vec<Entry>) {
        expired.clear();
        self.core.timers.drain_expired(self.core.now_ms, expired);
        for e in expired.iter() {
            let key = e.key() as usize;
            let blocked = self.peer_mid_frame(key);
            let c = &mut self.core;
            let Some(slot) = self.slots.get_mut(key) else {
                continue;
            };
            let due = slot.timer_at().map(|t| t.to_ms(c.now_ms));
            // A stale entry (the slot was rescheduled, or freed and reused) is not the slot's
            // deadline. (One that happens to be, for a reused slot, is due anyway.)
            if due != Some(e.at_ms()) {
                continue;
            }
            c.shell.loop_lag_us = (c.now_ms - e.at_ms()) * 1000;
            slot.set_timer_at(None);
            if slot.linger() != Linger::Off {
                // The peer never sent its FIN within the linger time: let go.
                slot.set_linger(Linger::Over);
            } else if blocked {
                // Our pipe peer is mid-frame into our send queue: a ping or close from us
                // must wait for the frame boundary.
                let at = c.tick().after(BLOCKED_RETRY);
                set_timer(c, key, slot, at);
            } else {
                let now = c.tick();
                let tx = tx_force(&mut slot.tx, &mut c.pool);
                slot.conn.timeout(now, &c.shared.limits, tx, &mut c.proto);
            }
            c.queue(key, slot);
            self.settle(key);
        }
        self.flush_effects();
    }

    /// The front of [`Core::handshakes`]: connections that moved on are dropped, and one
    /// still waiting for its first request past its deadline times out.
    fn expire_handshakes(&mut self) {
        let mut timed_out = false;
        while let Some(&h) = self.core.handshakes.front() {
            let c = &mut self.core;
            let key = h.key as usize;
            let limits = &c.shared.limits;
            let waiting = self.slots.get(key).is_some_and(|s| {
                s.gen() == u32::from(h.gen)
                    && in_handshake(s)
                    && s.linger() == Linger::Off
                    && s.conn.poll_timeout(limits).is_some()
            });
            if waiting && !c.tick().reached(h.deadline) {
                break;
            }
            c.handshakes.pop_front();
            if !waiting {
                continue;
            }
            if let Some(slot) = self.slots.get_mut(key) {
                let now = c.tick();
                let tx = tx_force(&mut slot.tx, &mut c.pool);
                slot.conn.timeout(now, &c.shared.limits, tx, &mut c.proto);
                c.queue(key, slot);
            }
            self.settle(key);
            timed_out = true;
        }
        let c = &mut self.core;
        if c.handshakes.is_empty() && c.handshakes.capacity() > 1024 {
            c.handshakes.shrink_to(64);
        }
        if timed_out {
            self.flush_effects();
        }
    }

    /// Run the dialects' deadlines that are due.
    fn dialect_deadlines(&mut self) {
        let now = self.core.now_ms;
        for d in 0..self.core.dialects.len() {
            if self.core.dialects.deadline(d).is_some_and(|t| t <= now) {
                self.call(d, |dialect, cx| dialect.on_timeout(cx));
                self.flush_effects();
            }
        }
    }

    /// Make sure a timer entry exists for the slot's earliest deadline.
    pub(crate) fn schedule(&mut self, key: usize) {
        let c = &mut self.core;
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if slot.linger() != Linger::Off || in_handshake(slot) {
            return; // (a connection waiting for its first request: see `Core::handshakes`)
        }
        if let Some(t) = slot.conn.poll_timeout(&c.shared.limits) {
            // An entry at or before `t` is already queued: it will fire, find nothing due yet,
            // and reschedule. Otherwise queue `t`.
            if !slot.timer_at().is_some_and(|cur| t.reached(cur)) {
                set_timer(c, key, slot, t);
            }
        }
    }

    // ── driving connections ────────────────────────────────────────────────────────────────

    /// Drive the queued connections, then those their drives queued (the peers a message was
    /// delivered to), so that a fan-out's sends and the sender's own are owed together and
    /// made in one call.
    fn drive_dirty(&mut self) {
        for _ in 0..DIRTY_PASSES {
            if self.core.dirty.is_empty() {
                return;
            }
            let mut dirty = std::mem::take(&mut self.core.dirty);
            for key in dirty.drain(..) {
                if let Some(slot) = self.slots.get_mut(key) {
                    slot.set_queued(false);
                    self.drive(key);
                }
                if self.core.owed_sends.len() >= MAX_OWED {
                    // Each owed send holds a write buffer until it is made: a turn that readies
                    // thousands of connections would check out as many.
                    self.send_owed();
                }
            }
            // Keep the allocation; drive() may have queued more into the fresh vector.
            if self.core.dirty.is_empty() {
                self.core.dirty = dirty;
            }
        }
    }

    /// Move bytes for one slot: process what is buffered, read, write; repeat while that
    /// makes progress (up to a budget, for fairness); then settle its state.
    fn drive(&mut self, key: usize) {
        let mut fatal = false;
        let mut rounds = 0;
        loop {
            let mut progress = self.process_input(key, &mut fatal);
            progress |= self.read_socket(key, &mut fatal);
            progress |= self.write_socket(key, &mut fatal);
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
        self.after_drive(key, fatal, rounds > 0);
    }

    /// What a drive leaves behind: a slow reader dropped, buffers returned, the state settled,
    /// and then the slot lingers, moves, goes, or waits for its next deadline.
    fn after_drive(&mut self, key: usize, mut fatal: bool, moved: bool) {
        let blocked = self.peer_blocks(key);
        let c = &mut self.core;
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if slot.pending_out() > c.shared.cfg.limits.max_outbound_bytes {
            c.shell.slow_reader_disconnects += 1;
            debug!(
                "core={} slot={key} dropped: {} bytes queued for a reader that does not read",
                c.id,
                slot.pending_out()
            );
            slot.conn.abort();
            fatal = true;
        }
        // The socket is drained and the machine would read more: its leftover bytes wait for
        // input, not for room on the other side of a pipe or in its own queue.
        let high_water = c.shared.cfg.limits.buffer_size;
        let stalled =
            !slot.readable() && !blocked && slot.conn.wants_read(slot.pending_out(), high_water);
        slot.release_buffers(&mut c.pool, stalled);
        if !c.starved.is_empty() && !c.pool.exhausted() {
            for (k, gen) in std::mem::take(&mut c.starved) {
                if let Some(s) = self.slots.get_mut(k).filter(|s| s.gen() == gen) {
                    c.queue(k, s);
                }
            }
        }
        // What this drive sent the other end of a pipe (or freed in our queue) may let it
        // move on.
        if let Some(p) = self.slots.get(key).and_then(|s| s.peer()).filter(|_| moved) {
            if let Some((pk, ps)) = live(&mut self.slots, self.core.here, p) {
                self.core.queue(pk, ps);
            }
        }
        self.settle(key);
        self.flush_effects();
        if self.core.link.is_some() {
            self.ack_owed(key);
        }
        let c = &mut self.core;
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if !slot.writable() && !watch_writable(&self.poll, key, slot) {
            fatal = true;
        }
        let flushed = slot.pending_out() == 0 && !slot.tls().is_some_and(|t| t.wants_write());
        // The peer said its last word (its close frame, or EOF) and nothing of it is left
        // unread: close now, with nothing to linger for. (Over TLS its close_notify may
        // still be on its way, and a reset would cost it our last record: that one lingers.)
        let done = slot.conn.is_closed()
            && slot.conn.peer_done()
            && flushed
            && !slot.readable()
            && slot.plain();
        if fatal || slot.linger() == Linger::Over || (done && slot.linger() == Linger::Off) {
            if done && !fatal && slot.linger() == Linger::Off {
                // Our last bytes went with `MSG_MORE` and wait for the FIN: send both now. A
                // peer that writes after its close frame leaves unread bytes by the time of
                // `close`, which then resets the connection and drops what it still held.
                let _ = slot.sock.shutdown(std::net::Shutdown::Write);
            }
            self.remove(key);
        } else if slot.conn.is_closed() && flushed && slot.linger() == Linger::Off {
            // Half-close: FIN now, keep reading until the peer's FIN or the linger timer, so
            // unread input does not make the kernel reset away our last bytes.
            if let Some(t) = tls_mut(&mut slot.extra) {
                t.send_close_notify();
                let _ = t.write_tls_to(&mut slot.sock);
            }
            let _ = slot.sock.shutdown(std::net::Shutdown::Write);
            slot.set_linger(Linger::Waiting);
            let at = c.tick().after(LINGER);
            set_timer(c, key, slot, at);
            c.queue(key, slot);
            self.settle(key);
        } else if flushed && slot.conn.is_parked() {
            match slot.extra.as_ref().and_then(|e| e.move_to) {
                Some(to) => self.hand_off(key, usize::from(to)),
                // Waiting for the cluster (a claim, another node's answer), until a deadline.
                None => self.schedule(key),
            }
        } else {
            self.schedule(key);
        }
    }

    /// Close `key` with a code, or drop it when no close frame can be written now (its send
    /// queue ends in half a frame from its pipe peer).
    pub(crate) fn go_away(&mut self, key: usize, code: u16, reason: &str) {
        let blocked = self.peer_mid_frame(key);
        let c = &mut self.core;
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if blocked {
            slot.conn.abort();
        } else {
            let now = c.tick();
            let tx = tx_force(&mut slot.tx, &mut c.pool);
            slot.conn.close(now, code, reason, tx);
        }
        c.queue(key, slot);
        self.settle(key);
    }

    fn remove(&mut self, key: usize) {
        if let Some(slot) = self.slots.get_mut(key) {
            slot.conn.abort();
        }
        self.settle(key); // what leaving tells the dialect and the pipe's other end
        self.flush_effects();
        let mut slot = self.slots.remove(key);
        let c = &mut self.core;
        c.gauges.remove(slot.counted);
        // No `EPOLL_CTL_DEL`: closing the descriptor (dropping the slot) takes it out of the
        // epoll set.
        slot.rx.drop_all(&mut c.pool);
        if let Some(b) = slot.tx.take() {
            c.pool.put_tx(b);
        }
        c.forget_count(slot.ip_key);
    }

    /// One read from the socket (through TLS if any) into the slot's read buffer, if the
    /// machine wants input. Returns whether anything happened (bytes, EOF, an error).
    fn read_socket(&mut self, key: usize, fatal: &mut bool) -> bool {
        let blocked = self.peer_blocks(key) || self.cluster_holds(key);
        let c = &mut self.core;
        let Some(slot) = self.slots.get_mut(key) else {
            return false;
        };
        if slot.linger() != Linger::Off {
            return discard_input(slot, fatal);
        }
        let high_water = c.shared.cfg.limits.buffer_size;
        if blocked || !slot.readable() || !slot.conn.wants_read(slot.pending_out(), high_water) {
            return false;
        }
        let streaming = slot.extra.as_ref().is_some_and(|e| e.streaming);
        if streaming {
            slot.rx.grow(&mut c.pool);
        }
        let Some(rx) = slot.rx.buf(&mut c.pool, false) else {
            c.starved.push((key, slot.gen()));
            return false;
        };
        let spare = rx.spare();
        if spare.is_empty() {
            return false;
        }
        let asked = spare.len();
        let got = match tls_mut(&mut slot.extra) {
            None => crate::net::sys::recv(&slot.sock, spare),
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
                            c.shell.bytes_in += n as u64;
                            return true;
                        }
                        Err(TlsIoError::Io(e)) => Err(e),
                        Err(TlsIoError::Tls(e)) => {
                            c.shell.tls_errors += 1;
                            debug!("core={} TLS error: {e}", c.id);
                            // The alert is queued; it is flushed before the socket closes.
                            slot.set_readable(false);
                            slot.conn.abort();
                            return true;
                        }
                    }
                }
            }
        };
        match got {
            Ok(0) => {
                slot.set_readable(false);
                slot.conn.eof();
                true
            }
            Ok(n) => {
                rx.filled_by(n);
                c.shell.bytes_in += n as u64;
                // A plain pipe end streams while its reads bring a standard buffer's worth
                // (or all the room they had).
                let fills = n >= c.pool.size().min(asked);
                if streaming != fills && slot.plain() && slot.forwarding() {
                    slot.extra().streaming = fills;
                }
                // A plain socket that returned less than asked is drained: skip the read that
                // would only say WouldBlock. Linux's edge-triggered epoll reports every later
                // arrival (and the peer's FIN) as a new event, so no edge is lost.
                if slot.plain() && n < asked {
                    slot.set_readable(false);
                }
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                slot.set_readable(false);
                false
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => true,
            Err(_) => {
                *fatal = true;
                slot.conn.abort();
                true
            }
        }
    }

    /// Write queued output: a TLS connection's records now, a plain socket's bytes at the end
    /// of the turn with every other connection's ([`Reactor::flush_sends`]). Returns whether
    /// anything was written.
    fn write_socket(&mut self, key: usize, fatal: &mut bool) -> bool {
        let c = &mut self.core;
        let Some(slot) = self.slots.get_mut(key) else {
            return false;
        };
        let mut writable = slot.writable();
        let Some(tls) = tls_mut(&mut slot.extra) else {
            if writable && slot.pending_out() > 0 && !slot.send_owed() {
                slot.set_send_owed(true);
                c.owed_sends.push((key, slot.gen()));
            }
            return false;
        };
        let mut progress = false;
        let mut sent = false;
        if let Some(tx) = slot.tx.as_mut().filter(|t| !t.is_empty()) {
            let n = tls.write_plaintext(tx.pending());
            tx.written(n);
            c.shell.bytes_out += n as u64;
            progress |= n > 0;
            sent = n > 0;
        }
        while writable && tls.wants_write() {
            match tls.write_tls_to(&mut slot.sock) {
                Ok(0) => break,
                Ok(_) => progress = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => writable = false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    *fatal = true;
                    break;
                }
            }
        }
        slot.set_writable(writable);
        if progress && slot.stamp.kind() != StampKind::None {
            c.latencies.extend(slot.flushed_stamp(sent));
        }
        progress
    }

    // ── the turn's sends ───────────────────────────────────────────────────────────────────

    /// Send what the turn's drives left queued on plain sockets (see [`Reactor::send_owed`]),
    /// then drive the connections those sends let move on (a close after the last byte, a
    /// parked request, a pipe end waiting for room, input left unread or unprocessed), which
    /// may owe more.
    fn flush_sends(&mut self) {
        for _ in 0..FLUSH_ROUNDS {
            if self.core.owed_sends.is_empty() {
                return;
            }
            self.send_owed();
            if self.core.dirty.is_empty() && self.core.owed_sends.is_empty() {
                return;
            }
            self.drive_dirty();
        }
        // What is still owed goes at the start of the next turn (the poll does not wait).
    }

    /// Make the sends owed so far: one `io_uring_enter` for all of them when there are enough
    /// to gain from it, else one `send` each; each result is applied as a send's.
    fn send_owed(&mut self) {
        let mut owed = std::mem::take(&mut self.core.owed_sends);
        let mut sent = std::mem::take(&mut self.core.sent);
        let c = &mut self.core;
        let slots = &self.slots;
        let pending = |&(key, gen): &(usize, u32)| {
            let slot = slots.get(key).filter(|s| s.gen() == gen && s.send_owed())?;
            let tx = slot.tx.as_ref().filter(|t| !t.is_empty())?;
            // The last bytes before a close go with `MSG_MORE`: the close (or half-close) that
            // follows in this turn sends them and the FIN in one segment instead of two.
            let last = slot.fin_follows_flush();
            Some((slot.sock.as_fd(), tx.pending(), key as u64, last))
        };
        let batched = match c.batch.as_mut().filter(|_| owed.len() >= BATCH_MIN) {
            Some(b) => match b.send(owed.iter().filter_map(pending), &mut sent) {
                Ok(()) => {
                    c.shell.batched_sends += sent.len() as u64;
                    c.shell.send_batches += sent.len().div_ceil(b.capacity()) as u64;
                    true
                }
                Err(e) => {
                    // What it did not send is sent one by one below, now and from now on.
                    error!("core={} {e}; sends are made one by one from now on", c.id);
                    c.batch = None;
                    false
                }
            },
            None => false,
        };
        if !batched {
            let done = sent.len();
            for (fd, bytes, key, last) in owed.iter().filter_map(pending) {
                if !sent[..done].iter().any(|r| r.0 == key) {
                    sent.push((key, crate::net::sys::send(fd, bytes, last)));
                }
            }
        }
        for &(key, gen) in &owed {
            if let Some(slot) = self.slots.get_mut(key).filter(|s| s.gen() == gen) {
                slot.set_send_owed(false);
            }
        }
        let mut broken = Vec::new();
        for (key, result) in sent.drain(..) {
            if self.sent(key as usize, result) {
                broken.push(key as usize);
            }
        }
        self.core.sent = sent;
        owed.clear();
        if self.core.owed_sends.is_empty() {
            self.core.owed_sends = owed;
        }
        for key in broken {
            self.remove(key);
        }
    }

    /// What one send did to its connection. Returns whether the connection is broken.
    fn sent(&mut self, key: usize, result: io::Result<usize>) -> bool {
        let c = &mut self.core;
        let Some(slot) = self.slots.get_mut(key) else {
            return false;
        };
        let Some(tx) = slot.tx.as_mut() else {
            return false;
        };
        let blocked = match result {
            Ok(n) => {
                tx.written(n);
                c.shell.bytes_out += n as u64;
                if slot.stamp.kind() != StampKind::None {
                    c.latencies.extend(slot.flushed_stamp(true));
                }
                slot.pending_out() > 0
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                slot.set_send_owed(true);
                c.owed_sends.push((key, slot.gen()));
                return false;
            }
            Err(_) => {
                slot.conn.abort();
                return true;
            }
        };
        if blocked {
            // The socket's buffer is full: from now on its writable edges count (see
            // `Slot::out_watched`), and the rest goes when one comes.
            slot.set_writable(false);
            return !watch_writable(&self.poll, key, slot);
        }
        if let Some(b) = slot.tx.take() {
            c.pool.put_tx(b);
        }
        // A pipe end drives again too: the credit its peer on another node waits for goes
        // back once its queue is below the high-water mark (`ack_owed`).
        let moves_on = slot.readable()
            || slot.rx.has_bytes()
            || slot.conn.is_closed()
            || slot.conn.is_parked()
            || slot.peer().is_some();
        if moves_on {
            c.queue(key, slot);
        }
        // A pipe's other end may have waited for this room.
        if let Some(p) = slot.peer() {
            if let Some((pk, ps)) = live(&mut self.slots, self.core.here, p) {
                self.core.queue(pk, ps);
            }
        }
        false
    }
}

/// Entries of the send ring: the most sends one system call makes.
const SEND_RING: u32 = 256;

/// Sends owed at most before they are made, in the middle of a turn if need be: each holds a
/// write buffer (the pool keeps what a turn's peak checked out, for reuse), and more than
/// this in one call gain nothing measurable.
const MAX_OWED: usize = 16;

/// Fewer sends than this are made one by one: a lone send gains nothing from the ring. Two
/// sharing one `io_uring_enter` save a system call at no measurable cost in CPU (the ring's
/// own cost per send is about a system call's; BENCHMARKS.md).
const BATCH_MIN: usize = 2;

/// Rounds of sends and the drives they allow, in one turn (the rest waits for the next turn).
const FLUSH_ROUNDS: usize = 8;

/// Waiting for its first request (its deadline is in [`Core::handshakes`], not `timers`).
fn in_handshake(slot: &Slot) -> bool {
    slot.conn.is_handshaking() && !slot.conn.is_parked() && !slot.conn.is_closed()
}

/// A write would block: from now on the socket's writable edges count (see
/// [`Slot::out_watched`]). False when that registration failed (the connection is aborted).
fn watch_writable(poll: &Poll, key: usize, slot: &mut Slot) -> bool {
    if slot.out_watched() {
        return true;
    }
    slot.set_out_watched(true);
    let both = Interest::READABLE | Interest::WRITABLE;
    let ok = poll
        .registry()
        .reregister(&mut slot.sock, Token(key), both)
        .is_ok();
    if !ok {
        slot.conn.abort();
    }
    ok
}

fn set_timer(c: &mut Core, key: usize, slot: &mut Slot, at: Tick) {
    slot.set_timer_at(Some(at));
    c.timers.insert(Entry::new(at.to_ms(c.now_ms), key as u32));
}

/// The slot `h` names on the core at `here`, if it is still that connection (not freed and
/// reused since), with its slab key.
pub(crate) fn live(slots: &mut Slab<Slot>, here: u32, h: Handle) -> Option<(usize, &mut Slot)> {
    let (at, key, gen) = resolve(h);
    if at != here {
        return None;
    }
    slots
        .get_mut(key)
        .filter(|s| same_gen(s.gen(), gen))
        .map(|s| (key, s))
}

/// Answer a connection we will not serve with a short plain-text 503 (plain listeners only)
/// and close it. The answer goes with `MSG_MORE`, so the shutdown's FIN travels with it.
pub(crate) fn refuse(sock: &mut TcpStream, tls: bool, why: &str) {
    refuse_with(sock, tls, 503, why)
}

/// [`refuse`] with another status (429 for a rate).
pub(crate) fn refuse_with(sock: &mut TcpStream, tls: bool, status: u16, why: &str) {
    if !tls {
        let body = format!("{why}\n");
        let phrase = if status == 429 {
            "Too Many Requests"
        } else {
            "Service Unavailable"
        };
        let msg = format!(
            "HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = crate::net::sys::send(&*sock, msg.as_bytes(), true);
    }
    let _ = sock.shutdown(std::net::Shutdown::Both);
}

/// After our FIN: read and drop whatever the peer still sends until its FIN.
fn discard_input(slot: &mut Slot, fatal: &mut bool) -> bool {
    let mut scratch = [0u8; 1024];
    let mut progress = false;
    while slot.readable() {
        match slot.sock.read(&mut scratch) {
            Ok(0) => {
                slot.set_readable(false);
                slot.set_linger(Linger::Over);
                return true;
            }
            Ok(_) => progress = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => slot.set_readable(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                *fatal = true;
                return true;
            }
        }
    }
    progress
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_slot_is_small() {
        // What an idle connection costs in the slab, before the kernel's socket memory.
        let size = std::mem::size_of::<Slot>();
        println!("slot for one connection: {size} bytes");
        // In debug builds mio adds a selector id to every socket.
        let limit = if cfg!(debug_assertions) { 104 } else { 88 };
        assert!(size <= limit, "slot grew to {size} bytes");
    }
}
