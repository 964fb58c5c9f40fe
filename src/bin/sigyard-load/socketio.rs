//! The `socketio` scenario: Socket.IO 2 / Engine.IO 3 sessions emitting events.
//!
//! Setup: `--connections` sessions are opened with at most `--concurrency` in flight, on the
//! server's test rooms dialect (handshake query `echo`, server started with `--echo`). A
//! WebSocket session is one upgrade to `/socket.io/?EIO=3&transport=websocket&echo=1` and is
//! open once its `welcome` event arrived (after the open packet and `40`). A polling session
//! is a handshake GET (its payload carries the open packet, `40` and `welcome`) on the GET
//! connection, plus a second keep-alive connection for POSTs, as the real client uses.
//!
//! Then, for `--duration`, every session loops: emit `42["echo","<--size chars>"]` and await
//! the echo; latency runs from the emit to the echo. A polling session keeps one GET held (the
//! echo releases it) and POSTs each emit. Every packet resets the server's heartbeat timer, so
//! busy sessions need no ping; a session idle for 20 s pings (`2`).
//!
//! With `--peer-url` (WebSocket only) the sessions go in pairs, the first of each on `--url`
//! and the second on `--peer-url` (two nodes of a cluster), and every pair plays ping-pong
//! with the test dialect's `direct` event: the first emits `42["direct","<peer sid>","..."]`,
//! the second receives it as `msg` and sends one back the same way; latency runs from the
//! first emit to the reply, two events between sockets on different nodes.
//!
//! One mio event loop per thread (`--threads`), each owning its share of the sessions.

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

const RUNNING: u8 = 1;
const STOP: u8 = 2;
/// An idle session pings this often (the server's default pingInterval is 25 s).
const PING_EVERY: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Shared {
    phase: AtomicU8,
    opened: AtomicU64,
    failed: AtomicU64,
    events: AtomicU64,
}

/// One TCP connection of a session.
struct Link {
    sock: TcpStream,
    rx: Vec<u8>,
    tx: Vec<u8>,
    /// WebSocket: `Some(accept)` until the 101.
    accept: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    Opening,
    Open,
    /// An emit is in flight.
    Waiting,
    Failed,
}

struct Session {
    step: Step,
    started: Instant,
    sent_at: Instant,
    last_tx: Instant,
    /// Polling: the session id, once the handshake answered.
    sid: Option<String>,
    /// [0]: the WebSocket, or the polling GET connection; [1]: the polling POST connection.
    links: [Option<Link>; 2],
    /// Polling: a GET is outstanding on links[0].
    get_out: bool,
}

pub fn run(o: &Opts) -> Result<serde_json::Value, String> {
    if o.workers > 1 {
        return Err("--workers: not supported by the socketio scenario".into());
    }
    let threads = (o.threads as u64).clamp(1, o.connections.max(1));
    let shared = Arc::new(Shared::default());
    let mut spawned = Threads::start();
    let event = format!(r#"42["echo","{}"]"#, "x".repeat(o.size));
    if o.peer.is_some() && o.polling {
        return Err("--peer-url: with --transport websocket only".into());
    }
    // Pairs never straddle two threads.
    let unit = if o.peer.is_some() { 2 } else { 1 };
    let units = o.connections / unit;
    for t in 0..threads {
        let n = unit * phases::part(units, threads, t);
        let w = Worker {
            addr: o.addr,
            host: o.host.clone(),
            peer: o.peer.clone(),
            payload: "x".repeat(o.size),
            polling: o.polling,
            timeout: o.timeout,
            concurrency: phases::concurrency(o, threads),
            event: event.clone(),
            rng: Rng::new(phases::thread_seed(0x0073_696f, t, 0)),
            shared: shared.clone(),
            setup_done: spawned.setup_flag(),
            sessions: (0..n).map(|_| None).collect(),
        };
        spawned.spawn(format!("sio-{t}"), move || w.run())?;
    }
    let run = spawned.run(
        o,
        &shared.phase,
        phases::SetUp {
            done: &shared.opened,
            what: "sessions open",
            failed: &shared.failed,
            traffic: "events",
        },
    )?;
    let opened = shared.opened.load(Relaxed);
    let Merged {
        setup: open,
        latency: rtt,
        errors,
    } = run.merged();
    if opened == 0 {
        return Err(format!("no session could be opened: {errors:?}"));
    }
    let lat = phases::latency_json;
    let events = shared.events.load(Relaxed);
    Ok(serde_json::json!({
        "scenario": "socketio",
        "transport": if o.polling { "polling" } else { "websocket" },
        "url": o.url,
        "threads": threads,
        "connections": o.connections,
        "opened": opened,
        "failed": shared.failed.load(Relaxed),
        "setup_s": run.setup_s,
        "sessions_per_s": run.setup_rate(opened),
        "open_latency_us": lat(&open),
        "window_s": run.window_s,
        "events": events,
        "events_per_s": run.per_s(events),
        "latency_us": lat(&rtt),
        "errors": errors,
    }))
}

/// The readable summary of `run`'s JSON.
pub fn text(v: &serde_json::Value) -> String {
    let l = |k: &str| phases::latency_text(&v[k]);
    format!(
        "scenario socketio ({})  url {}  threads {}\n\
         sessions: {} of {} open in {:.2} s, {} failed: {:.0} sessions/s\n\
         session open latency (connect to the welcome event): {}\n\
         events: {} echoed in {:.1} s = {:.0}/s at {} concurrent sessions\n\
         emit-to-echo latency: {}\n\
         errors: {}\n",
        v["transport"].as_str().unwrap_or(""),
        v["url"].as_str().unwrap_or(""),
        v["threads"],
        v["opened"],
        v["connections"],
        v["setup_s"].as_f64().unwrap_or(0.0),
        v["failed"],
        v["sessions_per_s"].as_f64().unwrap_or(0.0),
        l("open_latency_us"),
        v["events"],
        v["window_s"].as_f64().unwrap_or(0.0),
        v["events_per_s"].as_f64().unwrap_or(0.0),
        v["opened"],
        l("latency_us"),
        v["errors"]
    )
}

struct Worker {
    addr: SocketAddr,
    host: String,
    /// `--peer-url`: the odd sessions' server; pairs play ping-pong with `direct`.
    peer: Option<(SocketAddr, String)>,
    /// The payload of a `direct` event (as JSON string content).
    payload: String,
    polling: bool,
    timeout: Duration,
    concurrency: u64,
    event: String,
    rng: Rng,
    shared: Arc<Shared>,
    setup_done: Arc<AtomicBool>,
    sessions: Vec<Option<Session>>,
}

/// The packets of a v3 text payload (lengths in UTF-16 units).
fn payload_packets(body: &str) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (len, data) = rest.split_once(':')?;
        let n: usize = len.parse().ok()?;
        let (mut units, mut end) = (0, 0);
        for c in data.chars() {
            if units == n {
                break;
            }
            units += c.len_utf16();
            end += c.len_utf8();
        }
        if units != n {
            return None;
        }
        out.push(&data[..end]);
        rest = &data[end..];
    }
    Some(out)
}

/// One whole HTTP response: bytes used, status, body.
type HttpResponse = (usize, u16, Vec<u8>);

/// One whole HTTP response at the front of `buf`, if it has arrived.
fn parse_response(buf: &[u8]) -> Result<Option<HttpResponse>, &'static str> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > 16384 {
            Err("response head too long")
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "response head not UTF-8")?;
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or("bad status line")?;
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .ok_or("response without Content-Length")?;
    let total = end + 4 + len;
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some((total, status, buf[end + 4..total].to_vec())))
}

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
        let mut next = 0usize;
        let mut in_flight = 0u64;
        let mut running = false;
        let mut last_sweep = Instant::now();
        loop {
            let phase = self.shared.phase.load(Relaxed);
            if phase == STOP {
                break;
            }
            while next < self.sessions.len() && in_flight < self.concurrency {
                self.start(&poll, next, &mut out);
                let failed = self.sessions[next]
                    .as_ref()
                    .is_some_and(|s| s.step == Step::Failed);
                next += 1;
                in_flight += u64::from(!failed);
            }
            if last_sweep.elapsed() > Duration::from_millis(100) {
                last_sweep = Instant::now();
                let now = Instant::now();
                for i in 0..self.sessions.len() {
                    let Some(s) = self.sessions[i].as_mut() else {
                        continue;
                    };
                    if s.step == Step::Opening && now.duration_since(s.started) > self.timeout {
                        fail(s, &poll, &self.shared, &mut out.errors, "open timed out");
                        in_flight -= 1;
                    } else if s.step == Step::Open && now.duration_since(s.last_tx) > PING_EVERY {
                        self.send(i, "2");
                        self.flush(&poll, i, &mut out);
                    }
                }
            }
            if next == self.sessions.len() && in_flight == 0 {
                self.setup_done.store(true, Relaxed);
            }
            if phase == RUNNING && !running {
                running = true;
                for i in 0..self.sessions.len() {
                    self.emit(i);
                    self.flush(&poll, i, &mut out);
                }
            }
            let _ = poll.poll(&mut events, Some(Duration::from_millis(5)));
            let ready: Vec<usize> = events.iter().map(|e| e.token().0 / 2).collect();
            for i in ready {
                let before = self.sessions[i].as_ref().map(|s| s.step);
                self.drive(&poll, i, &mut out);
                let after = self.sessions[i].as_ref().map(|s| s.step);
                if before == Some(Step::Opening) && after != Some(Step::Opening) {
                    in_flight -= 1;
                }
            }
        }
        out
    }

    fn link(&mut self, poll: &Poll, i: usize, which: usize) -> io::Result<Link> {
        let addr = match &self.peer {
            Some((a, _)) if i % 2 == 1 => *a,
            _ => self.addr,
        };
        let mut sock = TcpStream::connect(addr)?;
        let _ = sock.set_nodelay(true);
        poll.registry().register(
            &mut sock,
            Token(i * 2 + which),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        Ok(Link {
            sock,
            rx: Vec::new(),
            tx: Vec::new(),
            accept: None,
        })
    }

    fn start(&mut self, poll: &Poll, i: usize, out: &mut Outcome) {
        let now = Instant::now();
        let mut s = Session {
            step: Step::Opening,
            started: now,
            sent_at: now,
            last_tx: now,
            sid: None,
            links: [None, None],
            get_out: false,
        };
        match self.link(poll, i, 0) {
            Ok(mut l) => {
                if self.polling {
                    l.tx = self.http_get("");
                    s.get_out = true;
                } else {
                    let host = match &self.peer {
                        Some((_, h)) if i % 2 == 1 => h.clone(),
                        _ => self.host.clone(),
                    };
                    let (req, accept) = ws::upgrade_request(
                        &host,
                        "/socket.io/?EIO=3&transport=websocket&echo=1",
                        &mut self.rng,
                    );
                    l.tx = req;
                    l.accept = Some(accept);
                }
                s.links[0] = Some(l);
            }
            Err(e) => fail(
                &mut s,
                poll,
                &self.shared,
                &mut out.errors,
                &format!("connect: {e}"),
            ),
        }
        self.sessions[i] = Some(s);
        self.flush(poll, i, out);
    }

    fn http_get(&self, sid: &str) -> Vec<u8> {
        let q = if sid.is_empty() {
            String::new()
        } else {
            format!("&sid={sid}")
        };
        format!(
            "GET /socket.io/?EIO=3&transport=polling&echo=1{q} HTTP/1.1\r\nHost: {}\r\n\r\n",
            self.host
        )
        .into_bytes()
    }

    /// Send one Engine.IO packet (text form) on the session's transport.
    fn send(&mut self, i: usize, packet: &str) {
        let polling = self.polling;
        let host = self.host.clone();
        let Some(s) = self.sessions[i].as_mut() else {
            return;
        };
        s.last_tx = Instant::now();
        if polling {
            let (Some(sid), Some(l)) = (s.sid.as_deref(), s.links[1].as_mut()) else {
                return;
            };
            let body = format!("{}:{packet}", packet.encode_utf16().count());
            let head = format!(
                "POST /socket.io/?EIO=3&transport=polling&echo=1&sid={sid} HTTP/1.1\r\nHost: {host}\r\n\
                 Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            l.tx.extend_from_slice(head.as_bytes());
            l.tx.extend_from_slice(body.as_bytes());
        } else if let Some(l) = s.links[0].as_mut() {
            ws::encode_frame(&mut l.tx, OP_TEXT, packet.as_bytes(), &mut self.rng);
        }
    }

    fn emit(&mut self, i: usize) {
        if !self.sessions[i]
            .as_ref()
            .is_some_and(|s| s.step == Step::Open)
        {
            return;
        }
        if self.peer.is_some() {
            // Ping-pong: only the first of a pair starts a round.
            if i % 2 == 0 {
                self.direct(i, i + 1);
                if let Some(s) = self.sessions[i].as_mut() {
                    s.step = Step::Waiting;
                    s.sent_at = Instant::now();
                }
            }
            return;
        }
        let event = std::mem::take(&mut self.event);
        self.send(i, &event);
        self.event = event;
        if let Some(s) = self.sessions[i].as_mut() {
            s.step = Step::Waiting;
            s.sent_at = Instant::now();
        }
    }

    /// Session `from` emits `direct` to session `to`'s sid.
    fn direct(&mut self, from: usize, to: usize) {
        let Some(sid) = self.sessions.get(to).and_then(|s| s.as_ref()?.sid.clone()) else {
            return;
        };
        let packet = format!(r#"42["direct","{sid}","{}"]"#, self.payload);
        self.send(from, &packet);
    }

    fn flush(&mut self, poll: &Poll, i: usize, out: &mut Outcome) {
        let Some(s) = self.sessions[i].as_mut() else {
            return;
        };
        for l in s.links.iter_mut().flatten() {
            while !l.tx.is_empty() {
                match l.sock.write(&l.tx) {
                    Ok(n) => {
                        l.tx.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let msg = format!("write: {e}");
                        fail(s, poll, &self.shared, &mut out.errors, &msg);
                        return;
                    }
                }
            }
        }
    }

    fn drive(&mut self, poll: &Poll, i: usize, out: &mut Outcome) {
        self.flush(poll, i, out);
        for which in [0, 1] {
            loop {
                let Some(s) = self.sessions[i].as_mut() else {
                    return;
                };
                if s.step == Step::Failed {
                    return;
                }
                let Some(l) = s.links[which].as_mut() else {
                    break;
                };
                let mut buf = [0u8; 16384];
                let n = match l.sock.read(&mut buf) {
                    Ok(0) => {
                        fail(
                            s,
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
                        fail(s, poll, &self.shared, &mut out.errors, &msg);
                        return;
                    }
                };
                l.rx.extend_from_slice(&buf[..n]);
                if self.polling {
                    self.process_http(poll, i, which, out);
                } else {
                    self.process_ws(poll, i, out);
                }
            }
        }
        self.flush(poll, i, out);
    }

    /// A packet for session `i` (either transport).
    fn on_packet(&mut self, poll: &Poll, i: usize, p: &str, out: &mut Outcome) {
        let running = self.shared.phase.load(Relaxed) == RUNNING;
        let Some(s) = self.sessions[i].as_mut() else {
            return;
        };
        if s.step == Step::Opening && p.starts_with(r#"42["welcome""#) {
            if s.sid.is_none() {
                // The WebSocket transport learns its sid here (`direct` names it).
                s.sid = p
                    .split_once(r#""sid":""#)
                    .and_then(|(_, r)| r.split_once('"'))
                    .map(|(sid, _)| sid.to_string());
            }
            s.step = Step::Open;
            out.setup.record(s.started.elapsed().as_nanos() as u64);
            self.shared.opened.fetch_add(1, Relaxed);
            if running {
                self.emit(i);
            }
        } else if self.peer.is_some() && p.starts_with(r#"42["msg""#) {
            self.shared.events.fetch_add(1, Relaxed);
            if i % 2 == 1 {
                // The second of a pair answers at once.
                self.direct(i, i - 1);
            } else if s.step == Step::Waiting {
                out.latency.record(s.sent_at.elapsed().as_nanos() as u64);
                s.step = Step::Open;
                if running {
                    self.emit(i);
                }
            }
        } else if s.step == Step::Waiting && p.starts_with(r#"42["echo""#) {
            out.latency.record(s.sent_at.elapsed().as_nanos() as u64);
            self.shared.events.fetch_add(1, Relaxed);
            s.step = Step::Open;
            if running {
                self.emit(i);
            }
        } else if p == "41" || p == "1" {
            let why = "disconnected by the server";
            fail(s, poll, &self.shared, &mut out.errors, why);
        }
    }

    fn process_ws(&mut self, poll: &Poll, i: usize, out: &mut Outcome) {
        loop {
            let Some(s) = self.sessions[i].as_mut() else {
                return;
            };
            let Some(l) = s.links[0].as_mut() else {
                return;
            };
            if let Some(accept) = &l.accept {
                match ws::parse_upgrade(&l.rx, accept) {
                    Upgrade::Partial => return,
                    Upgrade::Done(n) => {
                        l.rx.drain(..n);
                        l.accept = None;
                        continue;
                    }
                    Upgrade::Status(code) => {
                        let msg = format!("upgrade refused: HTTP {code}");
                        fail(s, poll, &self.shared, &mut out.errors, &msg);
                        return;
                    }
                    Upgrade::Invalid(why) => {
                        fail(s, poll, &self.shared, &mut out.errors, why);
                        return;
                    }
                }
            }
            let frame = match ws::parse_frame(&l.rx) {
                Ok(Some(f)) => f,
                Ok(None) => return,
                Err(why) => {
                    fail(s, poll, &self.shared, &mut out.errors, why);
                    return;
                }
            };
            let payload = l.rx[frame.payload.clone()].to_vec();
            l.rx.drain(..frame.payload.end);
            match frame.opcode {
                OP_PING => ws::encode_frame(&mut l.tx, OP_PONG, &payload, &mut self.rng),
                OP_CLOSE => {
                    fail(
                        s,
                        poll,
                        &self.shared,
                        &mut out.errors,
                        "closed by the server",
                    );
                    return;
                }
                OP_TEXT => {
                    let text = String::from_utf8_lossy(&payload).into_owned();
                    self.on_packet(poll, i, &text, out);
                }
                _ => {}
            }
        }
    }

    fn process_http(&mut self, poll: &Poll, i: usize, which: usize, out: &mut Outcome) {
        loop {
            let Some(s) = self.sessions[i].as_mut() else {
                return;
            };
            let Some(l) = s.links[which].as_mut() else {
                return;
            };
            let (used, status, body) = match parse_response(&l.rx) {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(why) => {
                    fail(s, poll, &self.shared, &mut out.errors, why);
                    return;
                }
            };
            l.rx.drain(..used);
            if status != 200 {
                let what = if which == 0 { "GET" } else { "POST" };
                let msg = format!("{what}: HTTP {status}: {}", String::from_utf8_lossy(&body));
                fail(s, poll, &self.shared, &mut out.errors, &msg);
                return;
            }
            if which == 1 {
                continue; // a POST's "ok"
            }
            s.get_out = false;
            let text = String::from_utf8_lossy(&body).into_owned();
            let Some(packets) = payload_packets(&text) else {
                fail(s, poll, &self.shared, &mut out.errors, "bad payload");
                return;
            };
            if s.sid.is_none() {
                let sid = packets
                    .first()
                    .and_then(|p| p.strip_prefix('0'))
                    .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
                    .and_then(|v| v["sid"].as_str().map(str::to_owned));
                let Some(sid) = sid else {
                    fail(s, poll, &self.shared, &mut out.errors, "no open packet");
                    return;
                };
                s.sid = Some(sid);
                match self.link(poll, i, 1) {
                    Ok(l) => {
                        if let Some(s) = self.sessions[i].as_mut() {
                            s.links[1] = Some(l);
                        }
                    }
                    Err(e) => {
                        let s = self.sessions[i].as_mut().expect("live");
                        let msg = format!("connect: {e}");
                        fail(s, poll, &self.shared, &mut out.errors, &msg);
                        return;
                    }
                }
            }
            // Hold the next GET before anything is emitted, so the echo can release it.
            let sid = self.sessions[i].as_ref().and_then(|s| s.sid.clone());
            let get = sid.map(|sid| self.http_get(&sid));
            if let (Some(s), Some(get)) = (self.sessions[i].as_mut(), get) {
                if let Some(l) = s.links[0].as_mut() {
                    l.tx.extend_from_slice(&get);
                    s.get_out = true;
                }
            }
            for p in packets {
                self.on_packet(poll, i, p, out);
            }
        }
    }
}

fn fail(s: &mut Session, poll: &Poll, shared: &Shared, errors: &mut Vec<String>, why: &str) {
    if s.step == Step::Failed {
        return;
    }
    s.step = Step::Failed;
    shared.failed.fetch_add(1, Relaxed);
    errors.push(why.to_string());
    for l in s.links.iter_mut() {
        if let Some(mut link) = l.take() {
            let _ = poll.registry().deregister(&mut link.sock);
        }
    }
}
