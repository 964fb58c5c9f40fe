//! Shared helpers for the integration tests: start a server on loopback, speak raw HTTP, open
//! WebSockets with tungstenite (a real third-party client), and a "chunking adversary" stream
//! that splits every write into random small pieces.
#![allow(dead_code)] // each test binary uses a different subset

pub mod cluster;
pub mod npm;

use rand::{Rng, SeedableRng};
use sigyard::{Builder, Handle, Server};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use tungstenite::protocol::WebSocket;

pub const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-cert.pem");
pub const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-key.pem");

/// Start a server on an ephemeral loopback port with `/echo` on and 2 cores, after `f` adjusts
/// the builder. The rate limits are off: the tests' loads connect and send far faster than a
/// real client (tests/limits.rs sets them to check them).
pub fn start(f: impl FnOnce(Builder) -> Builder) -> Handle {
    let b = Server::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .threads(2)
        .echo(true)
        .limits(|l| {
            l.max_new_connections_per_ip = 0;
            l.max_http_requests_per_ip = 0;
            l.max_messages_per_second = 0;
            l.max_message_bytes_per_second = 0;
        });
    f(b).build()
        .expect("valid config")
        .start()
        .expect("server starts")
}

pub fn stop(h: Handle) {
    h.shutdown(Duration::from_millis(500));
    h.join();
}

/// Send raw bytes and read until the server closes (or 5 s pass).
pub fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Read one HTTP response (head + Content-Length body) from a keep-alive connection.
/// A response head as far as it came (empty if the server closed first): for answers that
/// leave the connection open (a 101) or may close it without one.
pub fn read_head(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut b = [0u8; 512];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&b[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// The status code of a response (0 when there is none).
pub fn status_of(resp: &str) -> u16 {
    resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
}

pub fn read_response(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).unwrap();
        assert!(
            n == 1,
            "connection closed mid-head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("Content-Length: ")
                .or_else(|| l.strip_prefix("content-length: "))
        })
        .map(|v| v.trim().parse::<usize>().unwrap())
        .unwrap_or(0);
    let mut body = vec![0; len];
    s.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

pub fn http_get(addr: SocketAddr, path: &str) -> String {
    raw_exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

pub fn ws_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: sigyard.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A WebSocket client over a plain TCP stream.
pub fn ws(addr: SocketAddr, path: &str) -> WebSocket<TcpStream> {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (ws, resp) = tungstenite::client::client(format!("ws://{addr}{path}"), s).expect("upgrade");
    assert_eq!(resp.status(), 101);
    ws
}

/// A WebSocket client, or the refusal of its upgrade: `(status, body)`.
pub fn try_ws(addr: SocketAddr, path: &str) -> Result<WebSocket<TcpStream>, (u16, String)> {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    match tungstenite::client::client(format!("ws://{addr}{path}"), s) {
        Ok((ws, resp)) => {
            assert_eq!(resp.status(), 101);
            Ok(ws)
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            let body = resp.body().clone().unwrap_or_default();
            Err((
                resp.status().as_u16(),
                String::from_utf8_lossy(&body).into(),
            ))
        }
        Err(e) => panic!("handshake: {e}"),
    }
}

/// Write masked 16 KiB binary frames raw on `ws`'s socket, as fast as it takes them, for at
/// most `time` (or until a write blocks for 300 ms): the bytes written.
pub fn flood(ws: &mut WebSocket<TcpStream>, time: Duration) -> usize {
    let mut raw = ws.get_mut().try_clone().unwrap();
    raw.set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut frame = vec![0x82, 0xfe, 0x40, 0x00, 0, 0, 0, 0];
    frame.extend(vec![b'x'; 16 << 10]);
    let mut sent = 0usize;
    let t0 = std::time::Instant::now();
    while t0.elapsed() < time {
        match raw.write(&frame) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    sent
}

/// The next text message (pings and pongs skipped; tungstenite answers pings itself).
pub fn recv_text(c: &mut WebSocket<TcpStream>) -> String {
    loop {
        match c.read().expect("a message") {
            tungstenite::Message::Text(t) => return t.as_str().to_owned(),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => continue,
            m => panic!("unexpected {m:?}"),
        }
    }
}

/// A value from the `/metrics` text, summed over lines that start with `prefix`.
pub fn metric(addr: SocketAddr, prefix: &str) -> f64 {
    let text = http_get(addr, "/metrics");
    text.lines()
        .filter(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Whether no data message arrives on `c` for 200 ms (pings and pongs aside); the read
/// timeout is 10 s again afterwards.
pub fn quiet(c: &mut WebSocket<TcpStream>) -> bool {
    c.get_mut()
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let quiet = loop {
        match c.read() {
            Ok(tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_)) => continue,
            Ok(m) => {
                eprintln!("unexpected: {m:?}");
                break false;
            }
            Err(_) => break true,
        }
    };
    c.get_mut()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    quiet
}

/// [`metric`], read again for up to two seconds until it is `want` (a core publishes its
/// figures at the end of a loop turn, which may come just after the reply a test reacts to).
pub fn metric_reaches(addr: SocketAddr, prefix: &str, want: f64) -> f64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let v = metric(addr, prefix);
        if v == want || std::time::Instant::now() >= deadline {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A stream that splits every write into random pieces of 1..=max bytes, each sent separately
/// (with TCP_NODELAY, so the server sees many small reads).
pub struct Chunker {
    inner: TcpStream,
    rng: rand::rngs::StdRng,
    max: usize,
}

impl Chunker {
    pub fn connect(addr: SocketAddr, seed: u64, max: usize) -> Chunker {
        let inner = TcpStream::connect(addr).unwrap();
        inner.set_nodelay(true).unwrap();
        inner
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Chunker {
            inner,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            max,
        }
    }
}

impl Read for Chunker {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Write for Chunker {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.rng.random_range(1..=self.max).min(buf.len());
        self.inner.write_all(&buf[..n])?;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Whether `SIGYARD_TEST_SKIP` (a comma-separated list, README "Test it") leaves `part` out;
/// says so on stderr when it does.
pub fn skipped(part: &str) -> bool {
    let skip =
        std::env::var("SIGYARD_TEST_SKIP").is_ok_and(|v| v.split(',').any(|p| p.trim() == part));
    if skip {
        eprintln!("SKIPPED: {part} is in SIGYARD_TEST_SKIP");
    }
    skip
}

/// A Python tool the tests run: from the virtual environment `./run-tests` provisions
/// (`target/test-tools/venv`), else from `PATH`.
pub fn python_tool(name: &str) -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let venv = target.join("test-tools/venv/bin").join(name);
    if venv.is_file() {
        venv
    } else {
        name.into()
    }
}

/// Run `sigyard-load` with `args` against `url` (JSON summary, two threads): it succeeded
/// and no client failed. Returns its summary.
pub fn run_load(url: &str, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sigyard-load"))
        .args(args)
        .args(["--url", url, "--json", "--quiet", "--threads", "2"])
        .output()
        .expect("run sigyard-load");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?}: {:?}\n{stderr}", out.status);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary on stdout");
    assert_eq!(v["failed"], 0, "{args:?}: {stderr}\n{v}");
    v
}

/// [`run_load`], and what every dialect scenario owes besides: no error, latencies recorded.
pub fn run_load_scenario(url: &str, args: &[&str]) -> serde_json::Value {
    let v = run_load(url, args);
    let no_errors = v["errors"].as_object().is_some_and(|m| m.is_empty());
    assert!(no_errors, "{v}");
    let l = &v["latency_us"];
    assert!(l["count"].as_u64().unwrap() > 0, "{v}");
    assert!(l["p50"].as_f64().unwrap() > 0.0 && l["p50"].as_f64() <= l["p99"].as_f64());
    v
}
