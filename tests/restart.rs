//! Zero-downtime restart: a second process binds the same port (every listener uses
//! `SO_REUSEPORT`), then the first one gets SIGTERM and drains. Clients that keep connecting the
//! whole time must see no refused, reset or unanswered connection, and the old process must
//! exit 0 within its `--shutdown-timeout`.
//!
//! The failure kinds it counts: `refused` (nothing listening), `reset` (a connection reset,
//! e.g. one left in a closed listener's accept queue), `unanswered` (closed, or answered
//! otherwise, before the full answer: a connection the old process accepted and dropped while
//! draining). WebSockets the old process had already upgraded get close 1001 from its drain;
//! that is the polite end of an open WebSocket, counted apart (`ws_going_away`) and allowed.

mod common;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_sigyard");

/// Drain deadline of the old process: the test waits at most this long for it to exit.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Client threads doing `GET /healthz` in a loop, and threads doing a y-webrtc ping.
const HTTP_CLIENTS: usize = 3;
const WS_CLIENTS: usize = 1;
/// Pause between two attempts of one client thread (keeps the ephemeral ports in check).
const PAUSE: Duration = Duration::from_millis(1);

/// A free loopback port: bind port 0, note the port, release it.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A running `sigyard` and its stderr lines (read by a thread so the pipe never fills).
struct Proc {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    /// Start the binary on `addr` and wait (up to 5 s) for its "listening on" line.
    fn start(name: &str, addr: SocketAddr) -> Proc {
        let mut child = Command::new(BIN)
            .args(["--listen", &addr.to_string(), "--threads", "2"])
            .args([
                "--shutdown-timeout",
                &format!("{}s", SHUTDOWN_TIMEOUT.as_secs()),
            ])
            // The clients below connect far faster than a real one: no per-address rate limits.
            .args(["--max-new-connections-per-ip", "0"])
            .args(["--max-http-requests-per-ip", "0"])
            .args(["--max-messages-per-second", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let (log2, tag) = (log.clone(), name.to_string());
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
                log2.lock().unwrap().push(format!("{tag}: {line}"));
            }
        });
        if rx.recv_timeout(Duration::from_secs(5)).is_err() {
            let _ = child.kill();
            panic!(
                "{name} did not log \"listening on\": {:?}",
                log.lock().unwrap()
            );
        }
        Proc { child, log }
    }

    fn signal(&self, sig: &str) {
        // Through the kill command: no unsafe code in tests.
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    /// Wait up to `limit` for the exit; kill and fail past it.
    fn wait(&mut self, limit: Duration) -> (std::process::ExitStatus, Duration) {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st, t0.elapsed());
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "no exit within {limit:?}; log: {:#?}",
                    self.log.lock().unwrap()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the clients saw, by kind.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    refused: AtomicU64,
    reset: AtomicU64,
    /// Closed (or answered with something else than 200 / pong) before a full answer.
    unanswered: AtomicU64,
    other: AtomicU64,
    /// WebSockets upgraded by the old process and closed by its drain with 1001 before the
    /// pong: the polite end a draining server gives an open WebSocket (the client reconnects).
    going_away: AtomicU64,
    /// Successes after the old process exited: only the new one can have served them.
    ok_after_exit: AtomicU64,
    samples: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, kind: &AtomicU64, what: String) {
        kind.fetch_add(1, Ordering::Relaxed);
        let mut s = self.samples.lock().unwrap();
        if s.len() < 20 {
            s.push(what);
        }
    }

    fn io_error(&self, stage: &str, e: &std::io::Error) {
        let kind = match e.kind() {
            ErrorKind::ConnectionRefused => &self.refused,
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe => {
                &self.reset
            }
            _ => &self.other,
        };
        self.fail(kind, format!("{stage}: {e}"));
    }

    fn failures(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
            + self.reset.load(Ordering::Relaxed)
            + self.unanswered.load(Ordering::Relaxed)
            + self.other.load(Ordering::Relaxed)
    }

    fn summary(&self) -> String {
        format!(
            "ok={} (after old exit: {}) refused={} reset={} unanswered={} other={} \
             ws_going_away={} samples={:?}",
            self.ok.load(Ordering::Relaxed),
            self.ok_after_exit.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.reset.load(Ordering::Relaxed),
            self.unanswered.load(Ordering::Relaxed),
            self.other.load(Ordering::Relaxed),
            self.going_away.load(Ordering::Relaxed),
            self.samples.lock().unwrap()
        )
    }
}

fn connect(addr: SocketAddr, t: &Tally) -> Option<TcpStream> {
    match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(s) => {
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
            Some(s)
        }
        Err(e) => {
            t.io_error("connect", &e);
            None
        }
    }
}

/// One `GET /healthz` on a fresh connection.
fn http_once(addr: SocketAddr, t: &Tally) -> bool {
    let Some(mut s) = connect(addr, t) else {
        return false;
    };
    let req = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    if let Err(e) = s.write_all(req) {
        t.io_error("write", &e);
        return false;
    }
    let mut got = Vec::new();
    if let Err(e) = s.read_to_end(&mut got) {
        t.io_error("read", &e);
        return false;
    }
    let text = String::from_utf8_lossy(&got);
    if !text.starts_with("HTTP/1.1 200") {
        t.fail(&t.unanswered, format!("http answer: {text:?}"));
        return false;
    }
    true
}

/// One y-webrtc WebSocket on a fresh connection: upgrade, `{"type":"ping"}`, expect the pong.
fn ws_once(addr: SocketAddr, t: &Tally) -> bool {
    let Some(s) = connect(addr, t) else {
        return false;
    };
    let mut ws = match tungstenite::client::client(format!("ws://{addr}/y-webrtc"), s) {
        Ok((ws, resp)) if resp.status() == 101 => ws,
        Ok((_, resp)) => {
            t.fail(&t.unanswered, format!("upgrade: {}", resp.status()));
            return false;
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Io(e))) => {
            t.io_error("upgrade", &e);
            return false;
        }
        Err(e) => {
            t.fail(&t.unanswered, format!("upgrade: {e}"));
            return false;
        }
    };
    if let Err(e) = ws.send(Message::text(r#"{"type":"ping"}"#)) {
        t.fail(&t.other, format!("ws send: {e}"));
        return false;
    }
    let ok = loop {
        match ws.read() {
            Ok(Message::Text(m)) if m.as_str().contains(r#""type":"pong""#) => break true,
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(Some(f))) if u16::from(f.code) == 1001 => {
                t.going_away.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            Ok(m) => {
                t.fail(&t.unanswered, format!("ws: unexpected {m:?}"));
                break false;
            }
            Err(tungstenite::Error::Io(e)) => {
                t.io_error("ws read", &e);
                break false;
            }
            Err(e) => {
                t.fail(&t.unanswered, format!("ws read: {e}"));
                break false;
            }
        }
    };
    let _ = ws.close(None);
    let _ = ws.flush();
    ok
}

/// `net.ipv4.tcp_migrate_req=1` for the test's duration (the README tells operators who
/// restart this way to set it): without it a connection that completes its handshake between
/// the old process's last accept and the close of its listener is reset by the kernel, a race
/// the server cannot close. Set when the test may (root), put back as it was at the end.
struct MigrateReq(Option<String>);

const MIGRATE_REQ: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

impl MigrateReq {
    fn on() -> MigrateReq {
        let was = std::fs::read_to_string(MIGRATE_REQ).ok();
        match was.as_deref().map(str::trim) {
            Some("0") if std::fs::write(MIGRATE_REQ, "1").is_ok() => MigrateReq(was),
            Some("0") => {
                eprintln!("restart: cannot set {MIGRATE_REQ}; a reset in the listener race may fail this test");
                MigrateReq(None)
            }
            _ => MigrateReq(None),
        }
    }
}

impl Drop for MigrateReq {
    fn drop(&mut self) {
        if let Some(was) = &self.0 {
            let _ = std::fs::write(MIGRATE_REQ, was.trim());
        }
    }
}

#[test]
fn restart_on_the_same_port_refuses_no_connection() {
    let _migrate = MigrateReq::on();
    let started = Instant::now();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut old = Proc::start("old", addr);

    let stop = Arc::new(AtomicBool::new(false));
    let old_gone = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..HTTP_CLIENTS + WS_CLIENTS)
        .map(|i| {
            let (stop, old_gone, t) = (stop.clone(), old_gone.clone(), tally.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // Read before the attempt: a success counts as the new process's only if
                    // the old one was already gone when it began.
                    let after = old_gone.load(Ordering::Relaxed);
                    let ok = if i < HTTP_CLIENTS {
                        http_once(addr, &t)
                    } else {
                        ws_once(addr, &t)
                    };
                    if ok {
                        t.ok.fetch_add(1, Ordering::Relaxed);
                        if after {
                            t.ok_after_exit.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    thread::sleep(PAUSE);
                }
            })
        })
        .collect();

    // The old process alone, then both on the port, then the old one drains and exits.
    thread::sleep(Duration::from_millis(300));
    let mut new = Proc::start("new", addr);
    thread::sleep(Duration::from_millis(300));
    old.signal("-TERM");
    let (status, took) = old.wait(SHUTDOWN_TIMEOUT + Duration::from_secs(2));
    old_gone.store(true, Ordering::Relaxed);
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    new.signal("-TERM");
    let (new_status, _) = new.wait(SHUTDOWN_TIMEOUT + Duration::from_secs(2));

    let summary = tally.summary();
    eprintln!("restart: old exited {status:?} after {took:?}; {summary}");
    assert!(
        status.success(),
        "old process exit {status:?}: {:#?}",
        old.log.lock().unwrap()
    );
    assert!(
        took < SHUTDOWN_TIMEOUT,
        "old process took {took:?} to drain"
    );
    assert!(new_status.success(), "new process exit {new_status:?}");
    assert_eq!(tally.failures(), 0, "{summary}");
    assert!(tally.ok.load(Ordering::Relaxed) > 100, "{summary}");
    assert!(
        tally.ok_after_exit.load(Ordering::Relaxed) > 0,
        "the new process served nothing: {summary}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}
