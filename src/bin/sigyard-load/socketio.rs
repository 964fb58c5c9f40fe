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
//! One mio event loop per thread (`--threads`, `wsloop.rs`), each owning its share of the
//! sessions.

use crate::args::Opts;
use crate::phases::{self, Merged, Outcome, Progress, Threads};
use crate::ws::Rng;
use crate::wsconn::{Conn, Socket, Target};
use crate::wsloop::{self, Plan, RUNNING};
use mio::{Poll, Token};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
/// An idle session pings this often (the server's default pingInterval is 25 s).
const PING_EVERY: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Shared {
    /// Set up: sessions open.
    progress: Progress,
    events: AtomicU64,
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
    /// The WebSocket transport's connection.
    ws: Option<Conn>,
    /// The polling transport's connections: [0] for GETs, [1] for POSTs.
    http: [Option<Socket>; 2],
    /// Polling: a GET is outstanding on http[0].
    get_out: bool,
}

pub fn run(o: &Opts) -> Result<serde_json::Value, String> {
    phases::unsupported(o, "socketio", false)?;
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
            target: Target::unbound(o.addr, &o.host),
            peer: o.peer.as_ref().map(|(a, h)| Target::unbound(*a, h)),
            payload: "x".repeat(o.size),
            polling: o.polling,
            timeout: o.timeout,
            // No --rate: every session emits again as soon as its echo came.
            plan: Plan {
                rate: None,
                ..Plan::new(o, threads, n, o.connections, spawned.setup_flag())
            },
            event: event.clone(),
            rng: Rng::new(phases::thread_seed(0x0073_696f, t, 0)),
            shared: shared.clone(),
            sessions: (0..n).map(|_| None).collect(),
            out: Outcome::default(),
        };
        spawned.spawn(format!("sio-{t}"), move || w.run())?;
    }
    let run = spawned.run(o, &shared.progress, "sessions open", "events")?;
    let opened = shared.progress.set_up.load(Relaxed);
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
        "failed": shared.progress.failed.load(Relaxed),
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
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
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
        f("setup_s"),
        v["failed"],
        f("sessions_per_s"),
        l("open_latency_us"),
        v["events"],
        f("window_s"),
        f("events_per_s"),
        v["opened"],
        l("latency_us"),
        v["errors"]
    )
}

struct Worker {
    target: Target,
    /// `--peer-url`: the odd sessions' server; pairs play ping-pong with `direct`.
    peer: Option<Target>,
    /// The payload of a `direct` event (as JSON string content).
    payload: String,
    polling: bool,
    timeout: Duration,
    plan: Plan,
    event: String,
    rng: Rng,
    shared: Arc<Shared>,
    sessions: Vec<Option<Session>>,
    out: Outcome,
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
        let (shared, plan) = (self.shared.clone(), self.plan.clone());
        if let Err(e) = wsloop::run(&mut self, &shared.progress.phase, &plan) {
            self.out.errors.push(e);
        }
        self.out
    }

    fn http_get(&self, sid: &str) -> Vec<u8> {
        let q = if sid.is_empty() {
            String::new()
        } else {
            format!("&sid={sid}")
        };
        format!(
            "GET /socket.io/?EIO=3&transport=polling&echo=1{q} HTTP/1.1\r\nHost: {}\r\n\r\n",
            self.target.host
        )
        .into_bytes()
    }

    /// Send one Engine.IO packet (text form) on the session's transport.
    fn send(&mut self, i: usize, packet: &str) {
        let host = &self.target.host;
        let Some(s) = self.sessions[i].as_mut() else {
            return;
        };
        s.last_tx = Instant::now();
        if let Some(c) = s.ws.as_mut() {
            c.send(packet.as_bytes(), &mut self.rng);
            return;
        }
        let (Some(sid), Some(l)) = (s.sid.as_deref(), s.http[1].as_mut()) else {
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

    /// Write what is queued on the session's connections.
    fn flush(&mut self, poll: &Poll, i: usize) {
        let Some(s) = self.sessions[i].as_mut() else {
            return;
        };
        let ws = s.ws.iter_mut().map(Conn::flush);
        let mut flushed = ws.chain(s.http.iter_mut().flatten().map(Socket::flush));
        if let Some(Err(e)) = flushed.find(Result::is_err) {
            fail(s, poll, &self.shared, &mut self.out.errors, &e);
        }
    }

    fn drive(&mut self, poll: &Poll, i: usize) {
        self.flush(poll, i);
        if self.polling {
            self.drive_http(poll, i);
        } else {
            self.drive_ws(poll, i);
        }
        self.flush(poll, i);
    }

    fn drive_ws(&mut self, poll: &Poll, i: usize) {
        let Some(c) = self.sessions[i].as_mut().and_then(|s| s.ws.as_mut()) else {
            return;
        };
        let mut msgs = Vec::new();
        let got = c.read(&mut msgs, &mut self.rng);
        for m in msgs {
            self.on_packet(poll, i, &String::from_utf8_lossy(&m));
        }
        if let (Err(e), Some(s)) = (got, self.sessions[i].as_mut()) {
            fail(s, poll, &self.shared, &mut self.out.errors, &e);
        }
    }

    fn drive_http(&mut self, poll: &Poll, i: usize) {
        for which in [0, 1] {
            loop {
                let Some(s) = self.sessions[i].as_mut() else {
                    return;
                };
                if s.step == Step::Failed {
                    return;
                }
                let Some(l) = s.http[which].as_mut() else {
                    break;
                };
                match l.fill() {
                    Ok(true) => self.process_http(poll, i, which),
                    Ok(false) => break,
                    Err(e) => {
                        fail(s, poll, &self.shared, &mut self.out.errors, &e);
                        return;
                    }
                }
            }
        }
    }

    /// A packet for session `i` (either transport).
    fn on_packet(&mut self, poll: &Poll, i: usize, p: &str) {
        let running = self.shared.progress.phase.load(Relaxed) == RUNNING;
        let Some(s) = self.sessions[i].as_mut() else {
            return;
        };
        if s.step == Step::Failed {
            return;
        }
        let out = &mut self.out;
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
            self.shared.progress.set_up.fetch_add(1, Relaxed);
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

    fn process_http(&mut self, poll: &Poll, i: usize, which: usize) {
        loop {
            let Some(s) = self.sessions[i].as_mut() else {
                return;
            };
            let Some(l) = s.http[which].as_mut() else {
                return;
            };
            let errors = &mut self.out.errors;
            let (used, status, body) = match parse_response(&l.rx) {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(why) => {
                    fail(s, poll, &self.shared, errors, why);
                    return;
                }
            };
            l.rx.drain(..used);
            if status != 200 {
                let what = if which == 0 { "GET" } else { "POST" };
                let msg = format!("{what}: HTTP {status}: {}", String::from_utf8_lossy(&body));
                fail(s, poll, &self.shared, errors, &msg);
                return;
            }
            if which == 1 {
                continue; // a POST's "ok"
            }
            s.get_out = false;
            let text = String::from_utf8_lossy(&body).into_owned();
            let Some(packets) = payload_packets(&text) else {
                fail(s, poll, &self.shared, errors, "bad payload");
                return;
            };
            if s.sid.is_none() {
                let sid = packets
                    .first()
                    .and_then(|p| p.strip_prefix('0'))
                    .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
                    .and_then(|v| v["sid"].as_str().map(str::to_owned));
                let Some(sid) = sid else {
                    fail(s, poll, &self.shared, errors, "no open packet");
                    return;
                };
                s.sid = Some(sid);
                match self.target.socket(poll, Token(i * 2 + 1), 0) {
                    Ok(l) => s.http[1] = Some(l),
                    Err(e) => {
                        fail(s, poll, &self.shared, errors, &e);
                        return;
                    }
                }
            }
            // Hold the next GET before anything is emitted, so the echo can release it.
            let sid = s.sid.clone().unwrap_or_default();
            let get = self.http_get(&sid);
            if let Some(s) = self.sessions[i].as_mut() {
                if let Some(l) = s.http[0].as_mut() {
                    l.tx.extend_from_slice(&get);
                    s.get_out = true;
                }
            }
            for p in packets {
                self.on_packet(poll, i, p);
            }
        }
    }
}

impl wsloop::Units for Worker {
    fn len(&self) -> usize {
        self.sessions.len()
    }

    /// A session starts: its WebSocket upgrade, or its handshake GET.
    fn start(&mut self, poll: &Poll, i: usize) {
        let now = Instant::now();
        let mut s = Session {
            step: Step::Opening,
            started: now,
            sent_at: now,
            last_tx: now,
            sid: None,
            ws: None,
            http: [None, None],
            get_out: false,
        };
        // The second session of a pair connects to `--peer-url`.
        let target = match &self.peer {
            Some(peer) if i % 2 == 1 => peer,
            _ => &self.target,
        };
        let linked = if self.polling {
            target.socket(poll, Token(i * 2), 0).map(|mut l| {
                l.tx = self.http_get("");
                s.get_out = true;
                s.http[0] = Some(l);
            })
        } else {
            let path = "/socket.io/?EIO=3&transport=websocket&echo=1";
            let ws = target.ws(poll, Token(i * 2), 0, path, &mut self.rng);
            ws.map(|c| s.ws = Some(c))
        };
        if let Err(e) = linked {
            fail(&mut s, poll, &self.shared, &mut self.out.errors, &e);
        }
        self.sessions[i] = Some(s);
        self.flush(poll, i);
    }

    fn setting_up(&self, i: usize) -> bool {
        self.sessions[i]
            .as_ref()
            .is_some_and(|s| s.step == Step::Opening)
    }

    fn unit_of(&self, token: Token) -> usize {
        token.0 / 2
    }

    fn ready(&mut self, poll: &Poll, i: usize, _running: bool) {
        self.drive(poll, i);
    }

    /// Open deadlines, and pings of idle sessions.
    fn tick(&mut self, poll: &Poll, now: Instant, _setting_up: u64) {
        for i in 0..self.sessions.len() {
            let Some(s) = self.sessions[i].as_mut() else {
                continue;
            };
            if s.step == Step::Opening && now.duration_since(s.started) > self.timeout {
                fail(
                    s,
                    poll,
                    &self.shared,
                    &mut self.out.errors,
                    "open timed out",
                );
            } else if s.step == Step::Open && now.duration_since(s.last_tx) > PING_EVERY {
                self.send(i, "2");
                self.flush(poll, i);
            }
        }
    }

    fn begin(&mut self, poll: &Poll) {
        for i in 0..self.sessions.len() {
            self.emit(i);
            self.flush(poll, i);
        }
    }

    /// Not paced (no `--rate`).
    fn paced_len(&self) -> usize {
        0
    }

    fn pace(&mut self, _poll: &Poll, _k: usize) -> bool {
        false
    }
}

fn fail(s: &mut Session, poll: &Poll, shared: &Shared, errors: &mut Vec<String>, why: &str) {
    if s.step == Step::Failed {
        return;
    }
    s.step = Step::Failed;
    shared.progress.failed.fetch_add(1, Relaxed);
    errors.push(why.to_string());
    if let Some(mut c) = s.ws.take() {
        c.deregister(poll);
    }
    for l in s.http.iter_mut() {
        if let Some(mut l) = l.take() {
            l.deregister(poll);
        }
    }
}
