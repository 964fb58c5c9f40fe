//! The `mewconnect` scenario: MewConnect v2 pairings, then encrypted-offer/answer round trips.
//!
//! Setup: `--pairs` pairs are made with at most `--concurrency` pairings in flight. A pairing
//! is: initiator upgrade (`role=initiator`, fresh random `connId`) → `initiated` → receiver
//! upgrade with the same `connId` and `signed` → `confirmation` on both sockets. Its latency
//! runs from the initiator's connect to the second confirmation; pairings per second are the
//! completed pairings over the setup time. Then, for `--duration`, every pair runs a closed
//! loop: the initiator sends an `offersignal` with an eccrypto-shaped payload whose ciphertext
//! has `--size` bytes, the receiver answers the `offer` with an `answersignal` of the same
//! shape, and the initiator's `answer` ends one round trip (both directions through the
//! server's validation and relay).
//!
//! One mio event loop per thread (`--threads`), each owning its share of the pairs, with the
//! tool's own WebSocket client (`ws.rs`) and histogram (`hist.rs`). Prints its own summary
//! (text, or JSON with `--json`); `--workers` is not supported for this scenario.

use crate::args::Opts;
use crate::phases::{self, Merged, Outcome, Threads};
use crate::ws::{self, Rng, Upgrade, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

// Phase 0 (the default) is setup.
const RUNNING: u8 = 1;
const STOP: u8 = 2;

/// What the threads share with the coordinator.
#[derive(Default)]
struct Shared {
    phase: AtomicU8,
    paired: AtomicU64,
    failed: AtomicU64,
    round_trips: AtomicU64,
}

struct Side {
    sock: TcpStream,
    /// `Some(accept)` until the 101 arrived.
    accept: Option<String>,
    rx: Vec<u8>,
    tx: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    WaitInitiated,
    WaitConfirmations { initiator: bool, receiver: bool },
    Paired,
    WaitOffer,
    WaitAnswer,
    Failed,
}

struct Pair {
    conn_id: String,
    step: Step,
    started: Instant,
    sent_at: Instant,
    sides: [Option<Side>; 2],
}

/// What one thread measured.
pub fn run(o: &Opts) -> Result<serde_json::Value, String> {
    if o.workers > 1 {
        return Err("--workers: not supported by the mewconnect scenario".into());
    }
    let path = if o.path == "/echo" { "/" } else { &o.path }.to_string();
    let threads = (o.threads as u64).clamp(1, o.pairs.max(1));
    let shared = Arc::new(Shared::default());
    let mut spawned = Threads::start();
    for t in 0..threads {
        let pairs = phases::part(o.pairs, threads, t);
        let w = Worker {
            peer: o.peer.clone(),
            addr: o.addr,
            host: o.host.clone(),
            path: path.clone(),
            timeout: o.timeout,
            concurrency: phases::concurrency(o, threads),
            rate: phases::rate(o, pairs, o.pairs),
            offer: frame_text("offersignal", o.size),
            answer: frame_text("answersignal", o.size),
            rng: Rng::new(phases::thread_seed(0x006d_6577, t, phases::seed())),
            shared: shared.clone(),
            setup_done: spawned.setup_flag(),
            pairs: (0..pairs).map(|_| None).collect(),
        };
        spawned.spawn(format!("mew-{t}"), move || w.run())?;
    }
    let run = spawned.run(
        o,
        &shared.phase,
        phases::SetUp {
            done: &shared.paired,
            what: "pairs made",
            failed: &shared.failed,
            traffic: "round trips",
        },
    )?;
    let (setup_s, window_s) = (run.setup_s, run.window_s);
    let paired = shared.paired.load(Relaxed);
    let Merged {
        setup: pairing,
        latency: rtt,
        errors,
    } = run.merged();
    let lat = phases::latency_json;
    let round_trips = shared.round_trips.load(Relaxed);
    Ok(serde_json::json!({
        "scenario": "mewconnect",
        "url": o.url,
        "threads": threads,
        "pairs": o.pairs,
        "paired": paired,
        "failed": shared.failed.load(Relaxed),
        "setup_s": setup_s,
        "pairings_per_s": if setup_s > 0.0 { paired as f64 / setup_s } else { 0.0 },
        "pairing_latency_us": lat(&pairing),
        "window_s": window_s,
        "round_trips": round_trips,
        "round_trips_per_s": run.per_s(round_trips),
        "latency_us": lat(&rtt),
        "errors": errors,
    }))
}

/// The readable summary of `run`'s JSON.
pub fn text(v: &serde_json::Value) -> String {
    let l = |k: &str| phases::latency_text(&v[k]);
    format!(
        "scenario mewconnect  url {}  threads {}\n\
         pairs: {} of {} made in {:.2} s, {} failed: {:.0} pairings/s\n\
         pairing latency (initiator connect to both confirmations): {}\n\
         offer/answer round trips: {} in {:.1} s = {:.0}/s at {} concurrent pairs\n\
         round-trip latency: {}\n\
         errors: {}\n",
        v["url"].as_str().unwrap_or(""),
        v["threads"],
        v["paired"],
        v["pairs"],
        v["setup_s"].as_f64().unwrap_or(0.0),
        v["failed"],
        v["pairings_per_s"].as_f64().unwrap_or(0.0),
        l("pairing_latency_us"),
        v["round_trips"],
        v["window_s"].as_f64().unwrap_or(0.0),
        v["round_trips_per_s"].as_f64().unwrap_or(0.0),
        v["paired"],
        l("latency_us"),
        v["errors"]
    )
}

/// `{"action":<action>,"data":{"data":<EncryptedPayload>}}` with a `size`-byte ciphertext.
fn frame_text(action: &str, size: usize) -> Vec<u8> {
    let b = |n: usize, v: u8| serde_json::json!({"type": "Buffer", "data": vec![v; n]});
    let payload = serde_json::json!({"iv": b(16, 1), "ephemPublicKey": b(65, 4),
        "ciphertext": b(size, 7), "mac": b(32, 9)});
    serde_json::json!({"action": action, "data": {"data": payload}})
        .to_string()
        .into_bytes()
}

struct Worker {
    /// Where receivers connect (`--peer-url`), else `addr`.
    peer: Option<(SocketAddr, String)>,
    addr: SocketAddr,
    host: String,
    path: String,
    timeout: Duration,
    concurrency: u64,
    offer: Vec<u8>,
    answer: Vec<u8>,
    /// `--rate`: offers per second for this thread (paced); `None`: closed loop.
    rate: Option<f64>,
    rng: Rng,
    shared: Arc<Shared>,
    setup_done: Arc<AtomicBool>,
    pairs: Vec<Option<Pair>>,
}

const INITIATOR: usize = 0;
const RECEIVER: usize = 1;

impl Worker {
    fn run(mut self) -> Outcome {
        let mut out = Outcome::default();
        let mut poll = match Poll::new() {
            Ok(p) => p,
            Err(e) => {
                out.errors.push(format!("poll: {e}"));
                self.setup_done.store(true, Relaxed);
                return out;
            }
        };
        let mut events = Events::with_capacity(1024);
        let mut next = 0usize; // the next pair to start
        let mut in_flight = 0u64;
        let mut running = false;
        // Paced offers: how many were sent since the run began, and where to look next.
        let (mut paced, mut cursor, mut run_start) = (0u64, 0usize, Instant::now());
        let mut last_scan = Instant::now();
        loop {
            let phase = self.shared.phase.load(Relaxed);
            if phase == STOP {
                break;
            }
            // Setup: keep `concurrency` pairings in flight.
            while next < self.pairs.len() && in_flight < self.concurrency {
                self.start(&poll, next, &mut out);
                let failed = self.pairs[next]
                    .as_ref()
                    .is_some_and(|p| p.step == Step::Failed);
                next += 1;
                in_flight += u64::from(!failed);
            }
            let now = Instant::now();
            // Pairing deadlines: only while pairings are in flight, ten times a second.
            let scan = in_flight > 0 && now.duration_since(last_scan) >= Duration::from_millis(100);
            if scan {
                last_scan = now;
            }
            for p in self.pairs.iter_mut().flatten().filter(|_| scan) {
                let setting_up = !matches!(
                    p.step,
                    Step::Paired | Step::WaitOffer | Step::WaitAnswer | Step::Failed
                );
                if setting_up && now.duration_since(p.started) > self.timeout {
                    fail(p, &poll, &self.shared, &mut out.errors, "pairing timed out");
                    in_flight -= 1;
                }
            }
            if next == self.pairs.len() && in_flight == 0 {
                self.setup_done.store(true, Relaxed);
            }
            if phase == RUNNING && !running {
                running = true;
                run_start = Instant::now();
                if self.rate.is_none() {
                    for i in 0..self.pairs.len() {
                        self.send_offer(i);
                        self.flush(&poll, i, &mut out);
                    }
                }
            }
            if let (true, Some(rate)) = (running, self.rate) {
                // Open loop: offers on schedule, round robin over the pairs not waiting for
                // an answer (a pair still waiting is skipped, not queued).
                let due = (rate * run_start.elapsed().as_secs_f64()) as u64;
                let n = self.pairs.len();
                let mut looked = 0;
                while paced < due && looked < n {
                    let i = cursor;
                    cursor = (cursor + 1) % n;
                    looked += 1;
                    if self.pairs[i]
                        .as_ref()
                        .is_some_and(|p| p.step == Step::Paired)
                    {
                        self.send_offer(i);
                        self.flush(&poll, i, &mut out);
                        paced += 1;
                        looked = 0;
                    }
                }
                paced = paced.max(due.saturating_sub(n as u64));
            }
            let tick = if self.rate.is_some() && running { 1 } else { 5 };
            let _ = poll.poll(&mut events, Some(Duration::from_millis(tick)));
            let ready: Vec<usize> = events.iter().map(|e| e.token().0 / 2).collect();
            for i in ready {
                let before = self.pairs[i].as_ref().map(|p| p.step);
                self.drive(&poll, i, running, &mut out);
                let after = self.pairs[i].as_ref().map(|p| p.step);
                let was_setting_up = !matches!(
                    before,
                    Some(Step::Paired | Step::WaitOffer | Step::WaitAnswer | Step::Failed)
                );
                if was_setting_up && matches!(after, Some(Step::Paired | Step::Failed)) {
                    in_flight -= 1;
                }
            }
        }
        out
    }

    fn connect(&mut self, poll: &Poll, i: usize, side: usize, role: &str) -> io::Result<Side> {
        let p = self.pairs[i].as_ref().expect("started");
        let q = format!(
            "{}?role={role}&connId={}&signed={}",
            self.path, p.conn_id, SIGNED
        );
        let (addr, host) = match (&self.peer, side) {
            (Some((a, h)), RECEIVER) => (*a, h.as_str()),
            _ => (self.addr, self.host.as_str()),
        };
        let mut sock = TcpStream::connect(addr)?;
        let _ = sock.set_nodelay(true);
        poll.registry().register(
            &mut sock,
            Token(i * 2 + side),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let (req, accept) = ws::upgrade_request(host, &q, &mut self.rng);
        Ok(Side {
            sock,
            accept: Some(accept),
            rx: Vec::new(),
            tx: req,
        })
    }

    fn start(&mut self, poll: &Poll, i: usize, out: &mut Outcome) {
        let conn_id = format!("{:016x}{:016x}", self.rng.next_u64(), self.rng.next_u64());
        let now = Instant::now();
        self.pairs[i] = Some(Pair {
            conn_id,
            step: Step::WaitInitiated,
            started: now,
            sent_at: now,
            sides: [None, None],
        });
        match self.connect(poll, i, INITIATOR, "initiator") {
            Ok(s) => {
                if let Some(p) = self.pairs[i].as_mut() {
                    p.sides[INITIATOR] = Some(s);
                }
                self.flush(poll, i, out);
            }
            Err(e) => {
                let p = self.pairs[i].as_mut().expect("just set");
                fail(
                    p,
                    poll,
                    &self.shared,
                    &mut out.errors,
                    &format!("connect: {e}"),
                );
            }
        }
    }

    fn send_offer(&mut self, i: usize) {
        let Some(p) = self.pairs[i].as_mut() else {
            return;
        };
        if p.step != Step::Paired {
            return;
        }
        if let Some(s) = p.sides[INITIATOR].as_mut() {
            ws::encode_frame(&mut s.tx, OP_TEXT, &self.offer, &mut self.rng);
            p.sent_at = Instant::now();
            p.step = Step::WaitOffer;
        }
    }

    /// Write what is queued on both sides.
    fn flush(&mut self, poll: &Poll, i: usize, out: &mut Outcome) {
        let Some(p) = self.pairs[i].as_mut() else {
            return;
        };
        for side in p.sides.iter_mut().flatten() {
            while !side.tx.is_empty() {
                match side.sock.write(&side.tx) {
                    Ok(n) => {
                        side.tx.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let msg = format!("write: {e}");
                        fail(p, poll, &self.shared, &mut out.errors, &msg);
                        return;
                    }
                }
            }
        }
    }

    fn drive(&mut self, poll: &Poll, i: usize, running: bool, out: &mut Outcome) {
        self.flush(poll, i, out);
        for side in [INITIATOR, RECEIVER] {
            loop {
                let Some(p) = self.pairs[i].as_mut() else {
                    return;
                };
                if p.step == Step::Failed {
                    return;
                }
                let Some(s) = p.sides[side].as_mut() else {
                    break;
                };
                let mut buf = [0u8; 16384];
                let n = match s.sock.read(&mut buf) {
                    Ok(0) => {
                        fail(
                            p,
                            poll,
                            &self.shared,
                            &mut out.errors,
                            "closed by the server",
                        );
                        return;
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        let msg = format!("read: {e}");
                        fail(p, poll, &self.shared, &mut out.errors, &msg);
                        return;
                    }
                };
                s.rx.extend_from_slice(&buf[..n]);
                self.process(poll, i, side, running, out);
            }
        }
        self.flush(poll, i, out);
    }

    /// Handle whatever complete input `side` of pair `i` holds.
    fn process(&mut self, poll: &Poll, i: usize, side: usize, running: bool, out: &mut Outcome) {
        loop {
            let Some(p) = self.pairs[i].as_mut() else {
                return;
            };
            let Some(s) = p.sides[side].as_mut() else {
                return;
            };
            if let Some(accept) = &s.accept {
                match ws::parse_upgrade(&s.rx, accept) {
                    Upgrade::Partial => return,
                    Upgrade::Done(n) => {
                        s.rx.drain(..n);
                        s.accept = None;
                        continue;
                    }
                    Upgrade::Status(code) => {
                        // The refusal's text names the rule (MewConnect answers in the body).
                        let text = String::from_utf8_lossy(&s.rx);
                        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                        let body: String = body.trim().chars().take(80).collect();
                        let msg = format!("upgrade refused: HTTP {code} {body}");
                        fail(p, poll, &self.shared, &mut out.errors, &msg);
                        return;
                    }
                    Upgrade::Invalid(why) => {
                        fail(p, poll, &self.shared, &mut out.errors, why);
                        return;
                    }
                }
            }
            let frame = match ws::parse_frame(&s.rx) {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(why) => {
                    fail(p, poll, &self.shared, &mut out.errors, why);
                    return;
                }
            };
            let payload = s.rx[frame.payload.clone()].to_vec();
            let end = frame.payload.end;
            s.rx.drain(..end);
            match frame.opcode {
                OP_PING => ws::encode_frame(&mut s.tx, OP_PONG, &payload, &mut self.rng),
                OP_CLOSE => {
                    fail(
                        p,
                        poll,
                        &self.shared,
                        &mut out.errors,
                        "closed by the server",
                    );
                    return;
                }
                OP_TEXT => self.on_signal(poll, i, side, &payload, running, out),
                _ => {}
            }
        }
    }

    fn on_signal(
        &mut self,
        poll: &Poll,
        i: usize,
        side: usize,
        text: &[u8],
        running: bool,
        out: &mut Outcome,
    ) {
        let is = |name: &str| text.starts_with(format!("{{\"signal\":\"{name}\"").as_bytes());
        let Some(p) = self.pairs[i].as_mut() else {
            return;
        };
        match (p.step, side) {
            (Step::WaitInitiated, INITIATOR) if is("initiated") => {
                p.step = Step::WaitConfirmations {
                    initiator: false,
                    receiver: false,
                };
                match self.connect(poll, i, RECEIVER, "receiver") {
                    Ok(s) => {
                        if let Some(p) = self.pairs[i].as_mut() {
                            p.sides[RECEIVER] = Some(s);
                        }
                    }
                    Err(e) => {
                        let p = self.pairs[i].as_mut().expect("live");
                        fail(
                            p,
                            poll,
                            &self.shared,
                            &mut out.errors,
                            &format!("connect: {e}"),
                        );
                    }
                }
            }
            (
                Step::WaitConfirmations {
                    initiator,
                    receiver,
                },
                _,
            ) if is("confirmation") => {
                let (i_ok, r_ok) = if side == INITIATOR {
                    (true, receiver)
                } else {
                    (initiator, true)
                };
                p.step = Step::WaitConfirmations {
                    initiator: i_ok,
                    receiver: r_ok,
                };
                if i_ok && r_ok {
                    p.step = Step::Paired;
                    out.setup.record(p.started.elapsed().as_nanos() as u64);
                    self.shared.paired.fetch_add(1, Relaxed);
                    if running && self.rate.is_none() {
                        self.send_offer(i);
                    }
                }
            }
            (Step::WaitOffer, RECEIVER) if is("offer") => {
                if let Some(s) = p.sides[RECEIVER].as_mut() {
                    ws::encode_frame(&mut s.tx, OP_TEXT, &self.answer, &mut self.rng);
                }
                p.step = Step::WaitAnswer;
            }
            (Step::WaitAnswer, INITIATOR) if is("answer") => {
                out.latency.record(p.sent_at.elapsed().as_nanos() as u64);
                self.shared.round_trips.fetch_add(1, Relaxed);
                p.step = Step::Paired;
                if self.shared.phase.load(Relaxed) == RUNNING && self.rate.is_none() {
                    self.send_offer(i);
                }
            }
            _ => {
                let what = String::from_utf8_lossy(&text[..text.len().min(60)]).into_owned();
                let msg = format!("unexpected message: {what}");
                fail(p, poll, &self.shared, &mut out.errors, &msg);
            }
        }
    }
}

/// The `signed` of every pair: 130 hex digits, as the real clients send.
const SIGNED: &str = "1b0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn fail(p: &mut Pair, poll: &Poll, shared: &Shared, errors: &mut Vec<String>, why: &str) {
    if p.step == Step::Failed {
        return;
    }
    p.step = Step::Failed;
    shared.failed.fetch_add(1, Relaxed);
    errors.push(why.to_string());
    for s in p.sides.iter_mut() {
        if let Some(mut side) = s.take() {
            let _ = poll.registry().deregister(&mut side.sock);
        }
    }
}
