//! One load worker thread: a mio event loop over non-blocking client sockets, the client
//! connection state machine (connect → upgrade → open → closing) and every scenario's per-
//! connection behaviour. Threads share only atomics (`Counters`, the phase) with the
//! coordinator in `main`, which decides when the run starts and stops.

use crate::args::{Mode, Scenario, Stall};
use crate::hist::Histogram;
use crate::tls::{Io, Tls};
use crate::ws::{self, Rng, Upgrade};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use socket2::{Domain, Protocol, Socket, Type};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub const WAKER: Token = Token(usize::MAX - 1);

/// Phases set by the coordinator.
pub const SETUP: u8 = 0;
pub const RUNNING: u8 = 1;
pub const STOP: u8 = 2;

/// Nanoseconds since a process-wide origin: the clock of payload timestamps.
pub fn now_ns() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Live counters of one thread, read by the coordinator for progress and phase decisions.
#[derive(Default, Debug)]
pub struct Counters {
    pub attempted: AtomicU64,
    pub established: AtomicU64,
    pub failed: AtomicU64,
    pub open: AtomicU64,
    pub closed_by_server: AtomicU64,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    /// Completed handshake or churn cycles.
    pub ops: AtomicU64,
    /// Every planned connection was opened or failed (or a client limit stopped opening).
    pub setup_done: AtomicBool,
    pub client_limit: AtomicBool,
}

/// Shared between the coordinator and all threads.
#[derive(Debug)]
pub struct Shared {
    pub phase: AtomicU8,
}

/// What one thread does.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: Scenario,
    pub mode: Mode,
    pub addr: SocketAddr,
    pub host: String,
    pub path: String,
    /// idle: connections to open; relay: the global indices of this thread's pairs.
    pub connections: u64,
    pub pairs: Vec<u64>,
    /// idle: handshakes in flight at once; handshake/churn: cycles at once.
    pub concurrency: u64,
    /// idle: new connections/s for this thread; relay: messages/s for this thread.
    pub rate: Option<f64>,
    pub size: usize,
    pub timeout: Duration,
    /// Source addresses to bind, round-robin (empty: no explicit bind).
    pub sources: Vec<IpAddr>,
    /// `--spin`: poll without sleeping while the traffic runs.
    pub spin: bool,
    pub seed: u64,
    /// `wss://`: the client TLS settings.
    pub tls: Option<Tls>,
    /// `tcp://`: the raw TCP baseline (no upgrade; a first line names the pipe; unmasked
    /// frames), against a byte-copying forwarder.
    pub raw: bool,
    /// relay, closed loop: messages in flight per sender.
    pub window: u32,
    /// idle: stall mid-input instead of idling.
    pub stall: Option<Stall>,
    /// relay pipe: where the b sides connect (`--peer-url`), else `addr`.
    pub peer: Option<(SocketAddr, String)>,
    /// Makes this process's pipe paths its own (several load processes on one cluster).
    pub tag: u32,
}

/// What a thread hands back when it stops.
#[derive(Debug, Default)]
pub struct Outcome {
    pub hist: Histogram,
    pub errors: BTreeMap<String, u64>,
    pub client_limit: Option<String>,
}

/// `--stall head`: how much of its upgrade request a connection sends.
const STALL_HEAD_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Connecting,
    Upgrading,
    Open,
    /// We sent a close (or answered one); waiting for the server's close and its FIN.
    Closing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Idle,
    Echo,
    /// The sending side of pipe pair; `peer` is the receiver's token.
    PipeA {
        peer: usize,
    },
    PipeB {
        peer: usize,
    },
    Handshake,
    Churn,
}

struct Conn {
    io: Io,
    id: u64,
    /// Bumped on every state change; stale deadlines are ignored.
    stage: u32,
    st: St,
    role: Role,
    accept: String,
    started: Instant,
    rbuf: Vec<u8>,
    frag: Option<Vec<u8>>,
    wbuf: Vec<u8>,
    wpos: usize,
    sent_close: bool,
    got_close: bool,
    /// Sequence number of the last message sent (in the payload after the timestamp).
    seq: u64,
}

pub struct Worker {
    poll: Poll,
    plan: Plan,
    shared: Arc<Shared>,
    c: Arc<Counters>,
    conns: Slab<Conn>,
    next_id: u64,
    rng: Rng,
    scratch: Vec<u8>,
    payload: Vec<u8>,
    /// Planned opens (idle: one per connection; relay: one per echo conn or pipe pair).
    queue: VecDeque<u64>,
    handshaking: u64,
    started_opens: u64,
    setup_start: Instant,
    /// (deadline, token, id, stage)
    deadlines: VecDeque<(Instant, usize, u64, u32)>,
    /// Open loop sends: (due ns, token, id).
    timers: BinaryHeap<Reverse<(u64, usize, u64)>>,
    /// Pipe senders whose receiver got the message in flight: send the next one.
    kick: Vec<usize>,
    running: bool,
    /// Open loop: nanoseconds between two messages of one sender.
    interval: u64,
    backoff_until: Option<Instant>,
    out: Outcome,
}

/// A socket error as the summary names it, and whether it is a limit of the client itself.
pub fn classify(e: &io::Error) -> (String, bool) {
    match e.raw_os_error() {
        Some(libc::EMFILE) => (
            "client limit: EMFILE (this process is out of file descriptors)".into(),
            true,
        ),
        Some(libc::ENFILE) => (
            "client limit: ENFILE (the system file table is full)".into(),
            true,
        ),
        Some(libc::EADDRNOTAVAIL) => (
            "client limit: EADDRNOTAVAIL (out of source ports; use --source-ips)".into(),
            true,
        ),
        Some(libc::ENOBUFS) | Some(libc::ENOMEM) => (
            "client limit: out of kernel memory (ENOBUFS/ENOMEM)".into(),
            true,
        ),
        Some(libc::ECONNREFUSED) => ("connection refused".into(), false),
        Some(libc::ECONNRESET) => ("connection reset by the server".into(), false),
        Some(libc::ETIMEDOUT) => ("TCP connect timed out".into(), false),
        _ => (format!("socket error: {e}"), false),
    }
}

/// A non-blocking TCP connect to `addr` (from `src` when given), `TCP_NODELAY` set.
pub fn open_socket(addr: SocketAddr, src: Option<IpAddr>) -> io::Result<TcpStream> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_nonblocking(true)?;
    s.set_tcp_nodelay(true)?;
    if let Some(ip) = src {
        bind_no_port(&s);
        s.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match s.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(std::net::TcpStream::from(s)))
}

/// `IP_BIND_ADDRESS_NO_PORT`: pick the source port at connect time (per destination) rather
/// than at bind time, so one source address is not limited to one global port range.
/// Best effort: without it, binding still works, with fewer ports.
fn bind_no_port(s: &Socket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a pointer to a c_int with its size, as setsockopt expects.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

enum Fail {
    /// The connection failed before it was open (counts as a failed attempt).
    Attempt(String),
    /// An open connection ended (closed or reset by the server, protocol error).
    Ended(String),
}

impl Worker {
    pub fn new(poll: Poll, plan: Plan, shared: Arc<Shared>, c: Arc<Counters>) -> Worker {
        let queue: VecDeque<u64> = match plan.scenario {
            Scenario::Idle => (0..plan.connections).collect(),
            Scenario::Relay => plan.pairs.iter().copied().collect(),
            _ => VecDeque::new(),
        };
        let mut payload = vec![0u8; plan.size];
        for (i, b) in payload.iter_mut().enumerate().skip(16) {
            *b = b'a' + (i % 26) as u8;
        }
        Worker {
            poll,
            rng: Rng::new(plan.seed),
            plan,
            shared,
            c,
            conns: Slab::new(),
            next_id: 0,
            scratch: vec![0; 64 * 1024],
            payload,
            queue,
            handshaking: 0,
            started_opens: 0,
            setup_start: Instant::now(),
            deadlines: VecDeque::new(),
            timers: BinaryHeap::new(),
            kick: Vec::new(),
            running: false,
            interval: 1,
            backoff_until: None,
            out: Outcome::default(),
        }
    }

    pub fn run(mut self) -> Outcome {
        let mut events = Events::with_capacity(1024);
        self.setup_start = Instant::now();
        loop {
            let phase = self.shared.phase.load(Relaxed);
            if phase == STOP {
                break;
            }
            if phase == RUNNING && !self.running {
                self.running = true;
                self.start_running();
            }
            self.open_more();
            if !self.c.setup_done.load(Relaxed) && self.queue.is_empty() && self.handshaking == 0 {
                self.c.setup_done.store(true, Relaxed);
            }
            let timeout = if self.running && self.plan.spin {
                Duration::ZERO
            } else {
                self.poll_timeout()
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.error(format!("poll failed: {e}"));
                    break;
                }
            }
            for ev in events.iter() {
                if ev.token() == WAKER {
                    continue;
                }
                self.drive(ev.token().0);
            }
            self.fire_timers();
            self.expire();
            self.run_kicks();
        }
        self.out
    }

    fn poll_timeout(&self) -> Duration {
        let mut t = Duration::from_millis(100);
        if let Some(Reverse((due, _, _))) = self.timers.peek() {
            t = t.min(Duration::from_nanos(due.saturating_sub(now_ns())));
        }
        if let Some((d, ..)) = self.deadlines.front() {
            t = t.min(d.saturating_duration_since(Instant::now()));
        }
        if self.plan.rate.is_some() && self.plan.scenario == Scenario::Idle {
            t = t.min(Duration::from_millis(5));
        }
        if self.backoff_until.is_some() {
            t = t.min(Duration::from_millis(10));
        }
        t
    }

    fn error(&mut self, reason: String) {
        *self.out.errors.entry(reason).or_default() += 1;
    }

    /// Start new connections as the scenario, the rate and the concurrency allow.
    fn open_more(&mut self) {
        if let Some(t) = self.backoff_until {
            if Instant::now() < t {
                return;
            }
            self.backoff_until = None;
        }
        match self.plan.scenario {
            Scenario::Idle | Scenario::Relay => {
                let budget = match (self.plan.scenario, self.plan.rate) {
                    (Scenario::Idle, Some(r)) => {
                        let allowed = (self.setup_start.elapsed().as_secs_f64() * r) as u64 + 1;
                        allowed.saturating_sub(self.started_opens)
                    }
                    _ => u64::MAX,
                };
                let cap = if self.plan.scenario == Scenario::Idle {
                    self.plan.concurrency
                } else {
                    256
                };
                let mut n = 0;
                while n < budget && self.handshaking < cap {
                    let Some(i) = self.queue.pop_front() else {
                        break;
                    };
                    n += 1;
                    self.started_opens += 1;
                    match (self.plan.scenario, self.plan.mode) {
                        (Scenario::Idle, _) => {
                            self.connect(Role::Idle, self.plan.path.clone());
                        }
                        (_, Mode::Echo) => {
                            self.connect(Role::Echo, self.plan.path.clone());
                        }
                        (_, Mode::Pipe) => {
                            let t = self.plan.tag;
                            let a = self.connect(
                                Role::PipeA { peer: usize::MAX },
                                format!("/connection/a{t:x}.{i}/b{t:x}.{i}/k"),
                            );
                            let b = a.and_then(|a| {
                                self.connect(
                                    Role::PipeB { peer: a },
                                    format!("/connection/b{t:x}.{i}/a{t:x}.{i}/k"),
                                )
                            });
                            match (a, b) {
                                (Some(a), Some(b)) => {
                                    self.conns[a].role = Role::PipeA { peer: b };
                                }
                                (Some(a), None) => self.drop_conn(a, None),
                                _ => {}
                            }
                        }
                    }
                    if self.c.client_limit.load(Relaxed) {
                        // Stop opening: report what we have.
                        self.queue.clear();
                    }
                }
            }
            // Run their own loops (mewconnect.rs, socketio.rs, peerjs.rs, ywebrtc.rs,
            // webtorrent.rs), never here.
            Scenario::MewConnect
            | Scenario::SocketIo
            | Scenario::PeerJs
            | Scenario::YWebrtc
            | Scenario::WebTorrent => {}
            // Runs in httpapi.rs, never through this engine.
            Scenario::HttpApi => {}
            Scenario::Handshake | Scenario::Churn => {
                if !self.running {
                    return;
                }
                while (self.conns.len() as u64) < self.plan.concurrency {
                    let role = if self.plan.scenario == Scenario::Churn {
                        Role::Churn
                    } else {
                        Role::Handshake
                    };
                    if self.connect(role, self.plan.path.clone()).is_none() {
                        if self.c.client_limit.load(Relaxed) {
                            self.backoff_until = Some(Instant::now() + Duration::from_millis(20));
                        }
                        break;
                    }
                }
            }
        }
    }

    /// Open one socket; `None` (counted as a failed attempt) if it could not even start.
    fn connect(&mut self, role: Role, path: String) -> Option<usize> {
        self.c.attempted.fetch_add(1, Relaxed);
        let src = if self.plan.sources.is_empty() {
            None
        } else {
            let i = (self.next_id as usize) % self.plan.sources.len();
            Some(self.plan.sources[i])
        };
        let token = self.conns.vacant_key();
        let (addr, host) = match (&role, &self.plan.peer) {
            (Role::PipeB { .. }, Some((a, h))) => (*a, h.clone()),
            _ => (self.plan.addr, self.plan.host.clone()),
        };
        let mut sock = match open_socket(addr, src) {
            Ok(s) => s,
            Err(e) => {
                self.attempt_failed(&e);
                return None;
            }
        };
        if let Err(e) = self.poll.registry().register(
            &mut sock,
            Token(token),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.attempt_failed(&e);
            return None;
        }
        let io = match Io::new(sock, self.plan.tls.as_ref()) {
            Ok(io) => io,
            Err(e) => {
                self.attempt_failed(&e);
                return None;
            }
        };
        let (req, accept) = if self.plan.raw {
            (format!("{path}\n").into_bytes(), String::new())
        } else {
            let (mut req, accept) = ws::upgrade_request(&host, &path, &mut self.rng);
            if self.plan.stall == Some(Stall::Head) {
                req.truncate(STALL_HEAD_BYTES);
            }
            (req, accept)
        };
        self.next_id += 1;
        let now = Instant::now();
        self.conns.insert(Conn {
            io,
            id: self.next_id,
            stage: 0,
            st: St::Connecting,
            role,
            accept,
            started: now,
            rbuf: Vec::new(),
            frag: None,
            wbuf: req,
            wpos: 0,
            sent_close: false,
            got_close: false,
            seq: 0,
        });
        self.handshaking += 1;
        self.deadlines
            .push_back((now + self.plan.timeout, token, self.next_id, 0));
        Some(token)
    }

    fn attempt_failed(&mut self, e: &io::Error) {
        let (reason, limit) = classify(e);
        self.c.failed.fetch_add(1, Relaxed);
        if limit {
            self.c.client_limit.store(true, Relaxed);
            if self.out.client_limit.is_none() {
                self.out.client_limit = Some(reason.clone());
            }
        }
        self.error(reason);
    }

    fn set_state(&mut self, t: usize, st: St, deadline: Option<Duration>) {
        let c = &mut self.conns[t];
        c.st = st;
        c.stage += 1;
        if let Some(d) = deadline {
            self.deadlines
                .push_back((Instant::now() + d, t, c.id, c.stage));
        }
    }

    /// Remove a connection; `why` is `None` for an orderly end we asked for.
    fn drop_conn(&mut self, t: usize, why: Option<Fail>) {
        let Some(mut c) = self.conns.try_remove(t) else {
            return;
        };
        let _ = self.poll.registry().deregister(c.io.tcp());
        let was_open = matches!(c.st, St::Open | St::Closing);
        if !was_open {
            self.handshaking = self.handshaking.saturating_sub(1);
        } else {
            self.c.open.fetch_sub(1, Relaxed);
        }
        match why {
            None => {}
            Some(Fail::Attempt(r)) => {
                self.c.failed.fetch_add(1, Relaxed);
                self.error(r);
            }
            Some(Fail::Ended(r)) => {
                self.c.closed_by_server.fetch_add(1, Relaxed);
                self.error(r);
            }
        }
        // A pipe pair lives and dies together.
        if let Role::PipeA { peer } | Role::PipeB { peer } = c.role {
            if self.conns.get(peer).is_some_and(|p| match p.role {
                Role::PipeA { peer } | Role::PipeB { peer } => peer == t,
                _ => false,
            }) {
                self.drop_conn(peer, None);
            }
        }
    }

    fn fail(&mut self, t: usize, reason: String) {
        let st = self.conns[t].st;
        let f = match st {
            St::Connecting | St::Upgrading => Fail::Attempt(reason),
            _ => Fail::Ended(reason),
        };
        self.drop_conn(t, Some(f));
    }

    fn drive(&mut self, t: usize) {
        let Some(c) = self.conns.get_mut(t) else {
            return;
        };
        if c.st == St::Connecting {
            match c.io.tcp().take_error() {
                Ok(Some(e)) | Err(e) => {
                    let (reason, _) = classify(&e);
                    return self.fail(t, reason);
                }
                Ok(None) => {}
            }
            match c.io.tcp().peer_addr() {
                Ok(_) if self.plan.raw || self.plan.stall == Some(Stall::Head) => {
                    // No upgrade (a raw pipe, or a head that is never finished): the
                    // connection is open once TCP is.
                    self.on_open(t);
                }
                Ok(_) => self.set_state(t, St::Upgrading, None),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.fail(t, classify(&e).0),
            }
        }
        if !self.flush(t) {
            return;
        }
        self.read(t);
        if self.conns.contains(t) {
            self.flush(t);
        }
    }

    /// Write what is queued; false if the connection was dropped.
    fn flush(&mut self, t: usize) -> bool {
        let c = &mut self.conns[t];
        if c.st == St::Connecting {
            return true;
        }
        if let Err(e) = c.io.flush() {
            let r = classify(&e).0;
            self.fail(t, r);
            return false;
        }
        while c.wpos < c.wbuf.len() {
            match c.io.write(&c.wbuf[c.wpos..]) {
                Ok(0) => break,
                Ok(n) => c.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let r = classify(&e).0;
                    self.fail(t, r);
                    return false;
                }
            }
        }
        if c.wpos == c.wbuf.len() {
            c.wbuf.clear();
            c.wpos = 0;
            if c.wbuf.capacity() > 64 * 1024 {
                c.wbuf = Vec::new();
            }
        }
        true
    }

    fn read(&mut self, t: usize) {
        loop {
            let Some(c) = self.conns.get_mut(t) else {
                return;
            };
            match c.io.read(&mut self.scratch) {
                Ok(0) => return self.on_eof(t),
                Ok(n) => {
                    c.rbuf.extend_from_slice(&self.scratch[..n]);
                    if !self.process(t) {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let r = classify(&e).0;
                    return self.fail(t, r);
                }
            }
        }
    }

    fn on_eof(&mut self, t: usize) {
        let c = &self.conns[t];
        match c.st {
            St::Closing if c.sent_close => {
                let done = c.got_close;
                let role = c.role;
                self.drop_conn(t, None);
                if !done {
                    self.error("server closed without a close frame".into());
                } else if role == Role::Handshake || role == Role::Churn {
                    // counted when the close arrived
                }
            }
            St::Connecting | St::Upgrading => {
                self.fail(t, "server closed during the upgrade".into());
            }
            _ => self.fail(t, "closed by the server (EOF)".into()),
        }
    }

    /// Handle buffered input; false if the connection was dropped.
    fn process(&mut self, t: usize) -> bool {
        let mut buf = std::mem::take(&mut self.conns[t].rbuf);
        let mut pos = 0;
        let alive = loop {
            let Some(c) = self.conns.get_mut(t) else {
                return false;
            };
            if c.st == St::Upgrading {
                match ws::parse_upgrade(&buf[pos..], &c.accept) {
                    Upgrade::Partial => break true,
                    Upgrade::Done(n) => {
                        pos += n;
                        c.accept = String::new();
                        self.on_open(t);
                        continue;
                    }
                    Upgrade::Status(code) => {
                        self.fail(t, format!("HTTP {code} instead of 101"));
                        break false;
                    }
                    Upgrade::Invalid(why) => {
                        self.fail(t, format!("bad upgrade answer: {why}"));
                        break false;
                    }
                }
            }
            match ws::parse_frame(&buf[pos..]) {
                Ok(None) => break true,
                Err(why) => {
                    self.fail(t, format!("protocol error from the server: {why}"));
                    break false;
                }
                Ok(Some(f)) => {
                    let range = pos + f.payload.start..pos + f.payload.end;
                    pos += f.payload.end;
                    if !self.on_frame(t, f.fin, f.opcode, &buf[range]) {
                        break false;
                    }
                }
            }
        };
        if alive {
            if let Some(c) = self.conns.get_mut(t) {
                buf.drain(..pos);
                c.rbuf = buf;
            }
        }
        alive && self.conns.contains(t)
    }

    fn on_open(&mut self, t: usize) {
        self.handshaking = self.handshaking.saturating_sub(1);
        self.c.open.fetch_add(1, Relaxed);
        self.c.established.fetch_add(1, Relaxed);
        let role = self.conns[t].role;
        match role {
            Role::Handshake => {
                let lat = self.conns[t].started.elapsed().as_nanos() as u64;
                if self.running {
                    self.out.hist.record(lat);
                }
                self.send_close(t);
            }
            Role::Churn => {
                self.set_state(t, St::Open, Some(self.plan.timeout));
                self.send_message(t, now_ns());
            }
            Role::Idle if self.plan.stall == Some(Stall::Frame) => {
                // A masked binary frame announcing a 16-bit length, cut after one length byte.
                self.conns[t].wbuf.extend_from_slice(&[0x82, 0xfe, 0x01]);
                self.set_state(t, St::Open, None);
            }
            _ => self.set_state(t, St::Open, None),
        }
    }

    fn send_close(&mut self, t: usize) {
        let c = &mut self.conns[t];
        if !c.sent_close {
            c.sent_close = true;
            ws::encode_close(&mut c.wbuf, 1000, &mut self.rng);
        }
        self.set_state(t, St::Closing, Some(self.plan.timeout));
    }

    fn send_message(&mut self, t: usize, ts: u64) {
        let c = &mut self.conns[t];
        c.seq += 1;
        self.payload[..8].copy_from_slice(&ts.to_le_bytes());
        self.payload[8..16].copy_from_slice(&c.seq.to_le_bytes());
        if self.plan.raw {
            ws::encode_unmasked(&mut c.wbuf, ws::OP_BINARY, &self.payload);
        } else {
            ws::encode_frame(&mut c.wbuf, ws::OP_BINARY, &self.payload, &mut self.rng);
        }
        if self.running {
            self.c.sent.fetch_add(1, Relaxed);
        }
    }

    /// One frame from the server; false if the connection was dropped.
    fn on_frame(&mut self, t: usize, fin: bool, op: u8, payload: &[u8]) -> bool {
        match op {
            ws::OP_PING => {
                let c = &mut self.conns[t];
                if !c.sent_close {
                    ws::encode_frame(&mut c.wbuf, ws::OP_PONG, payload, &mut self.rng);
                }
                true
            }
            ws::OP_PONG => true,
            ws::OP_CLOSE => {
                let c = &mut self.conns[t];
                c.got_close = true;
                let role = c.role;
                if c.sent_close {
                    if matches!(role, Role::Handshake | Role::Churn) && self.running {
                        self.c.ops.fetch_add(1, Relaxed);
                    }
                    // Wait for the server's FIN so the TIME_WAIT stays on its side.
                    true
                } else {
                    let code = if payload.len() >= 2 {
                        u16::from_be_bytes([payload[0], payload[1]])
                    } else {
                        1000
                    };
                    self.send_close(t);
                    self.c.closed_by_server.fetch_add(1, Relaxed);
                    self.error(format!("closed by the server with code {code}"));
                    true
                }
            }
            _ => {
                let c = &mut self.conns[t];
                match (&mut c.frag, op, fin) {
                    (None, ws::OP_TEXT | ws::OP_BINARY, true) => self.on_message(t, payload),
                    (None, ws::OP_TEXT | ws::OP_BINARY, false) => {
                        c.frag = Some(payload.to_vec());
                        true
                    }
                    (Some(f), ws::OP_CONT, _) => {
                        if f.len() + payload.len() > ws::MAX_FRAME as usize {
                            self.fail(t, "message too large".into());
                            return false;
                        }
                        f.extend_from_slice(payload);
                        if fin {
                            let m = c.frag.take().unwrap_or_default();
                            self.on_message(t, &m)
                        } else {
                            true
                        }
                    }
                    _ => {
                        self.fail(
                            t,
                            "protocol error from the server: bad fragmentation".into(),
                        );
                        false
                    }
                }
            }
        }
    }

    fn on_message(&mut self, t: usize, m: &[u8]) -> bool {
        let role = self.conns[t].role;
        let ts = if m.len() >= 8 {
            let mut b = [0u8; 8];
            b.copy_from_slice(&m[..8]);
            Some(u64::from_le_bytes(b))
        } else {
            None
        };
        match role {
            Role::Echo | Role::PipeB { .. } => {
                if !self.running {
                    return true;
                }
                let Some(ts) = ts.filter(|_| m.len() == self.plan.size) else {
                    self.error("unexpected message size".into());
                    return true;
                };
                self.out.hist.record(now_ns().saturating_sub(ts));
                self.c.received.fetch_add(1, Relaxed);
                if self.plan.rate.is_none() {
                    match role {
                        Role::PipeB { peer } => self.kick.push(peer),
                        _ => self.send_message(t, now_ns()),
                    }
                }
                true
            }
            Role::Churn => {
                if self.conns[t].st == St::Open {
                    if self.running {
                        let lat = self.conns[t].started.elapsed().as_nanos() as u64;
                        self.out.hist.record(lat);
                        self.c.received.fetch_add(1, Relaxed);
                    }
                    self.send_close(t);
                }
                true
            }
            _ => true,
        }
    }

    /// The coordinator said go: start the relay traffic.
    fn start_running(&mut self) {
        if self.plan.scenario != Scenario::Relay {
            return;
        }
        let senders: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.st == St::Open && matches!(c.role, Role::Echo | Role::PipeA { .. }))
            .map(|(t, _)| t)
            .collect();
        let now = now_ns();
        match self.plan.rate {
            None => {
                for t in senders {
                    for _ in 0..self.plan.window {
                        self.send_message(t, now_ns());
                    }
                    self.flush(t);
                }
            }
            Some(rate) => {
                let per_conn = rate / senders.len().max(1) as f64;
                let interval = ((1e9 / per_conn) as u64).max(1);
                self.interval = interval;
                let n = senders.len().max(1) as u64;
                for (k, t) in senders.into_iter().enumerate() {
                    let id = self.conns[t].id;
                    let due = now + interval * k as u64 / n;
                    self.timers.push(Reverse((due, t, id)));
                }
            }
        }
    }

    /// Open loop: send every message that is due. The schedule never waits for answers (a
    /// stalled server grows the send queue, not the gaps), so stamping the time of writing
    /// is free of coordinated omission; the scheduled time would add the poll's 1 ms timer
    /// granularity to every sample.
    fn fire_timers(&mut self) {
        if self.plan.rate.is_none() || self.plan.scenario != Scenario::Relay || !self.running {
            return;
        }
        let interval = self.interval;
        let now = now_ns();
        while let Some(&Reverse((due, t, id))) = self.timers.peek() {
            if due > now {
                break;
            }
            self.timers.pop();
            if !self.conns.get(t).is_some_and(|c| c.id == id) {
                continue;
            }
            self.send_message(t, now);
            if self.flush(t) {
                self.timers.push(Reverse((due + interval, t, id)));
            }
        }
    }

    fn run_kicks(&mut self) {
        while let Some(t) = self.kick.pop() {
            if self.conns.get(t).is_some_and(|c| c.st == St::Open) {
                self.send_message(t, now_ns());
                self.flush(t);
            }
        }
    }

    fn expire(&mut self) {
        let now = Instant::now();
        while let Some(&(d, t, id, stage)) = self.deadlines.front() {
            if d > now {
                break;
            }
            self.deadlines.pop_front();
            let Some(c) = self.conns.get(t) else {
                continue;
            };
            if c.id != id || c.stage != stage {
                continue;
            }
            match c.st {
                St::Connecting | St::Upgrading => {
                    self.fail(t, "timeout: no 101 within --timeout".into())
                }
                St::Open => self.fail(t, "timeout: no echo within --timeout".into()),
                St::Closing => {
                    self.drop_conn(t, None);
                    self.error("timeout: no close from the server within --timeout".into());
                }
            }
        }
    }
}

/// Create a thread's poll and its waker (the coordinator keeps the waker).
pub fn make_poll() -> io::Result<(Poll, Arc<Waker>)> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    Ok((poll, waker))
}
