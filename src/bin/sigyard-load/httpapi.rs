//! The `httpapi` scenario: `--concurrency` keep-alive HTTP/1.1 connections to the Lambda-style
//! HTTP API, each with one request in flight (closed loop), for `--duration`. Every connection
//! repeats the API's whole signaling exchange: create_data_channel, create_offer, get_offer,
//! two create_candidate, get_candidates, create_answer, get_answer (8 requests per channel;
//! the offer carries `--size` bytes of SDP-like text). Reports requests per second and the
//! latency of each request (write to whole response). Any status other than 200 counts as an
//! error, named by its status.
//!
//! Self-contained: its own mio loop per thread and a minimal HTTP/1.1 client (Content-Length
//! responses only, which is what the server sends).

use crate::args::Opts;
use crate::engine::now_ns;
use crate::hist::Histogram;
use crate::report::Summary;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Requests in one channel's exchange.
const STEPS: usize = 8;

struct Client {
    sock: TcpStream,
    connected: bool,
    step: usize,
    channel: String,
    out: Vec<u8>,
    written: usize,
    inbuf: Vec<u8>,
    sent_at: u64,
}

struct Out {
    hist: Histogram,
    errors: BTreeMap<String, u64>,
    established: u64,
    failed: u64,
}

fn request(path: &str, host: &str, body: &str, out: &mut Vec<u8>) {
    out.clear();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body.as_bytes());
}

impl Client {
    fn next_body(&self, offer: &str, n: u64) -> String {
        let ch = &self.channel;
        match self.step {
            0 => r#"{"method":"create_data_channel"}"#.to_string(),
            1 => format!(r#"{{"method":"create_offer","channel_id":"{ch}","offer":"{offer}"}}"#),
            2 => format!(r#"{{"method":"get_offer","channel_id":"{ch}"}}"#),
            3 | 4 => format!(
                r#"{{"method":"create_candidate","channel_id":"{ch}","candidate":{{"candidate":"candidate:{n} 1 udp 2113937151 10.0.0.{} 5000{} typ host","sdpMid":"0"}}}}"#,
                self.step, self.step
            ),
            5 => format!(r#"{{"method":"get_candidates","channel_id":"{ch}"}}"#),
            6 => format!(r#"{{"method":"create_answer","channel_id":"{ch}","answer":"{offer}"}}"#),
            _ => format!(r#"{{"method":"get_answer","channel_id":"{ch}"}}"#),
        }
    }

    /// A whole response at the start of `inbuf`: (status, body range end).
    fn parse(&self) -> Result<Option<(u16, usize, usize)>, String> {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut r = httparse::Response::new(&mut headers);
        let head = match r.parse(&self.inbuf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(format!("bad response: {e}")),
        };
        let len = r
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| {
                std::str::from_utf8(h.value)
                    .ok()?
                    .trim()
                    .parse::<usize>()
                    .ok()
            })
            .ok_or("response without Content-Length")?;
        if self.inbuf.len() < head + len {
            return Ok(None);
        }
        Ok(Some((r.code.unwrap_or(0), head, head + len)))
    }
}

struct Plan {
    addr: SocketAddr,
    host: String,
    path: String,
    conns: u64,
    offer: String,
}

fn worker(
    plan: Plan,
    running: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> io::Result<Out> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut out = Out {
        hist: Histogram::new(),
        errors: BTreeMap::new(),
        established: 0,
        failed: 0,
    };
    let mut clients: Vec<Option<Client>> = Vec::new();
    for i in 0..plan.conns {
        match TcpStream::connect(plan.addr) {
            Ok(mut sock) => {
                poll.registry().register(
                    &mut sock,
                    Token(i as usize),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                let _ = sock.set_nodelay(true);
                clients.push(Some(Client {
                    sock,
                    connected: false,
                    step: 0,
                    channel: String::new(),
                    out: Vec::new(),
                    written: 0,
                    inbuf: Vec::new(),
                    sent_at: 0,
                }));
            }
            Err(e) => {
                out.failed += 1;
                *out.errors.entry(format!("connect: {e}")).or_default() += 1;
                clients.push(None);
            }
        }
    }
    let mut seq = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Relaxed) {
        poll.poll(&mut events, Some(Duration::from_millis(50)))?;
        let live = running.load(Relaxed);
        for ev in events.iter() {
            let i = ev.token().0;
            let Some(c) = clients.get_mut(i).and_then(Option::as_mut) else {
                continue;
            };
            if !c.connected && ev.is_writable() {
                if c.sock.peer_addr().is_err() {
                    out.failed += 1;
                    *out.errors.entry("connect failed".into()).or_default() += 1;
                    clients[i] = None;
                    continue;
                }
                c.connected = true;
                out.established += 1;
            }
            // Read whatever arrived; answer every whole response.
            let mut dead = false;
            loop {
                match c.sock.read(&mut buf) {
                    Ok(0) => {
                        dead = true;
                        break;
                    }
                    Ok(n) => c.inbuf.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        dead = true;
                        break;
                    }
                }
            }
            match c.parse() {
                Ok(Some((status, head, end))) => {
                    let lat = now_ns().saturating_sub(c.sent_at);
                    if live {
                        out.hist.record(lat);
                        done.fetch_add(1, Relaxed);
                    }
                    if status != 200 {
                        *out.errors.entry(format!("status {status}")).or_default() += 1;
                    }
                    if c.step == 0 {
                        let body = String::from_utf8_lossy(&c.inbuf[head..end]);
                        c.channel = body.split('"').nth(3).unwrap_or_default().to_string();
                    }
                    c.inbuf.drain(..end);
                    c.step = (c.step + 1) % STEPS;
                    c.out.clear();
                    c.written = 0;
                }
                Ok(None) => {}
                Err(e) => {
                    *out.errors.entry(e).or_default() += 1;
                    dead = true;
                }
            }
            if dead {
                out.failed += 1;
                *out.errors.entry("closed by the server".into()).or_default() += 1;
                clients[i] = None;
                continue;
            }
            // Send the next request when none is in flight.
            if c.connected && c.out.is_empty() {
                seq += 1;
                let body = c.next_body(&plan.offer, seq);
                request(&plan.path, &plan.host, &body, &mut c.out);
                c.sent_at = now_ns();
            }
            while c.written < c.out.len() {
                match c.sock.write(&c.out[c.written..]) {
                    Ok(n) => c.written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
    }
    Ok(out)
}

/// Run the scenario in this process.
pub fn run(o: &Opts, nofile: u64) -> Result<Summary, String> {
    let conc = o.concurrency.max(1);
    let threads = (o.threads as u64).clamp(1, conc);
    // The URL parser turns an empty path into /echo, the WebSocket scenarios' default.
    let path = if o.path == "/echo" {
        "/".to_string()
    } else {
        o.path.clone()
    };
    let offer = format!("v=0 {}", "a".repeat(o.size.saturating_sub(4)));
    let (running, stop) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let done = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for t in 0..threads {
        let plan = Plan {
            addr: o.addr,
            host: o.host.clone(),
            path: path.clone(),
            conns: conc / threads + u64::from(t < conc % threads),
            offer: offer.clone(),
        };
        let (r, s, d) = (running.clone(), stop.clone(), done.clone());
        let h = std::thread::Builder::new()
            .name(format!("httpapi-{t}"))
            .spawn(move || worker(plan, r, s, d))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        handles.push(h);
    }
    // A short warm-up (connections open, first requests answered), then the measured window.
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    running.store(true, Relaxed);
    let t0 = Instant::now();
    let mut last = (t0, 0u64);
    while t0.elapsed() < o.duration {
        std::thread::sleep(Duration::from_millis(20).min(o.duration));
        if !o.quiet && last.0.elapsed() >= Duration::from_secs(1) {
            let d = done.load(Relaxed);
            let dt = last.0.elapsed().as_secs_f64();
            errln!(
                "sigyard-load [{:6.1}s] {:.0} requests/s",
                start.elapsed().as_secs_f64(),
                (d - last.1) as f64 / dt
            );
            last = (Instant::now(), d);
        }
    }
    running.store(false, Relaxed);
    let window_s = t0.elapsed().as_secs_f64();
    stop.store(true, Relaxed);
    let mut s = Summary {
        scenario: "httpapi".into(),
        url: o.url.clone(),
        threads,
        workers: 1,
        open_files_limit: nofile,
        window_s,
        ..Default::default()
    };
    for h in handles {
        let out = h
            .join()
            .map_err(|_| "a load thread panicked".to_string())?
            .map_err(|e| format!("event loop: {e}"))?;
        s.hist.merge(&out.hist);
        for (k, v) in out.errors {
            *s.errors.entry(k).or_default() += v;
        }
        s.established += out.established;
        s.failed += out.failed;
    }
    s.attempted = conc;
    s.held = s.established;
    s.completed = done.load(Relaxed);
    s.completed_per_s = s.completed as f64 / window_s.max(1e-9);
    Ok(s)
}
