//! The Twilio-compatible token provider against a local HTTPS stub (rustls, the development
//! certificate): the request sigyard makes, the mapping of the answer to `GET /ice-servers`,
//! the refresh, the static-list fallback on an HTTP error and on a timeout, and reactors that
//! keep answering other clients while the provider stalls for 10 s.
//!
//! sigyard runs as the real binary (flags and environment as an operator gives them) so its
//! log lines can be checked too.

mod common;
use base64::Engine;
use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_sigyard");
const TOKEN: &str = "provider-test-bearer-token";
const SID: &str = "ACstub0123";
const AUTH: &str = "stub-auth-token";

/// What the stub does with the next requests.
#[derive(Clone)]
enum Mode {
    Answer(u16, String),
    /// Read the request, then send nothing for this long (and close).
    Stall(Duration),
}

/// A request as the stub received it, with when it arrived.
#[derive(Clone, Debug)]
struct Seen {
    head: String,
    body: String,
    at: Instant,
}

/// An HTTPS server on a loopback port, serving every connection on its own thread.
struct Stub {
    addr: SocketAddr,
    mode: Arc<Mutex<Mode>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Stub {
    fn start(mode: Mode) -> Stub {
        let cfg = sigyard::net::tls::load_server_config(CERT.as_ref(), KEY.as_ref()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stub = Stub {
            addr: listener.local_addr().unwrap(),
            mode: Arc::new(Mutex::new(mode)),
            seen: Arc::default(),
        };
        let (mode, seen) = (stub.mode.clone(), stub.seen.clone());
        std::thread::spawn(move || {
            for sock in listener.incoming().map_while(Result::ok) {
                let (cfg, mode, seen) = (cfg.clone(), mode.clone(), seen.clone());
                std::thread::spawn(move || serve(sock, cfg, &mode, &seen));
            }
        });
        stub
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until the stub has received `n` requests.
    fn wait_requests(&self, n: usize, within: Duration) -> Vec<Seen> {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.seen();
            if seen.len() >= n {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "stub got {} of {n} requests",
                seen.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn serve(
    sock: TcpStream,
    cfg: Arc<rustls::ServerConfig>,
    mode: &Mutex<Mode>,
    seen: &Mutex<Vec<Seen>>,
) {
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let conn = rustls::ServerConnection::new(cfg).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head, body) = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                break (
                    head,
                    String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned(),
                );
            }
        }
        match tls.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    seen.lock().unwrap().push(Seen {
        head,
        body,
        at: Instant::now(),
    });
    let mode = mode.lock().unwrap().clone();
    match mode {
        Mode::Answer(status, body) => {
            let resp = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(resp.as_bytes());
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.conn.complete_io(&mut tls.sock);
        }
        Mode::Stall(d) => std::thread::sleep(d),
    }
}

/// A Twilio-style token answer (snake_case), with entries in every form the mapping accepts.
fn token_body(ttl: &str) -> String {
    json!({
        "account_sid": SID,
        "date_created": "Sun, 22 Nov 2026 01:00:00 +0000",
        "date_updated": "Sun, 22 Nov 2026 01:00:00 +0000",
        "ice_servers": [
            {"url": "stun:global.stun.twilio.example:3478", "urls": "stun:global.stun.twilio.example:3478"},
            {"url": "turn:global.turn.twilio.example:3478?transport=udp", "username": "tw-user", "credential": "tw-pass"},
            {"urls": "turn:global.turn.twilio.example:3478?transport=tcp", "username": "tw-user", "credential": "tw-pass"},
            {"urls": ["turns:global.turn.twilio.example:443?transport=tcp", "turn:global.turn.twilio.example:80"], "username": "tw-user", "credential": "tw-pass"}
        ],
        "password": "tw-pass",
        "ttl": ttl,
        "username": "tw-user"
    })
    .to_string()
}

/// The sigyard binary with its stderr collected line by line.
struct Sigyard {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Sigyard {
    fn start(stub: &Stub, extra: &[&str]) -> Sigyard {
        let base = format!("https://localhost:{}/stub", stub.addr.port());
        let mut child = Command::new(BIN)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--ice-server",
                "stun:fallback.example:3478",
            ])
            .args(["--ice-server", "turn:fallback.example:3478"])
            .args(["--twilio-account-sid", SID, "--twilio-base-url", &base])
            .args(["--twilio-ca-file", CERT])
            .args(extra)
            .env("SIGYARD_TWILIO_AUTH_TOKEN", AUTH)
            .env("SIGYARD_TURN_SECRET", "fallback-secret")
            .env("SIGYARD_ICE_ENDPOINT_TOKEN", TOKEN)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let (lines, out) = (log.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let mut s = Sigyard {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            log,
        };
        let line = s.wait_log("listening on ", Duration::from_secs(10));
        let addr = line
            .split("listening on ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        s.addr = addr.parse().unwrap();
        s
    }

    /// The first log line containing `pattern`, waiting up to `within` for it.
    fn wait_log(&self, pattern: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(l) = self
                .log
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(pattern))
            {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {pattern:?} within {within:?}; log:\n{}",
                self.log.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn has_log(&self, pattern: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(pattern))
    }

    /// `GET /ice-servers` with the bearer token: (status, JSON body).
    fn ice_servers(&self) -> (u16, Value) {
        let resp = raw_exchange(
            self.addr,
            format!(
                "GET /ice-servers?user=u1 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        );
        assert!(
            resp.len() > 12,
            "no answer to GET /ice-servers within 5 s: {resp:?}"
        );
        let status = resp[9..12].parse().unwrap();
        let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    fn urls(&self) -> Vec<String> {
        let (status, v) = self.ice_servers();
        assert_eq!(status, 200, "{v}");
        let entries = v["iceServers"].as_array().unwrap();
        for e in entries {
            assert_eq!(e["url"], e["urls"], "url and urls on every entry: {v}");
        }
        entries
            .iter()
            .map(|e| e["url"].as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Sigyard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const FALLBACK: [&str; 2] = ["stun:fallback.example:3478", "turn:fallback.example:3478"];

#[test]
fn token_request_mapping_and_refresh() {
    let stub = Stub::start(Mode::Answer(201, token_body("2")));
    let s = Sigyard::start(&stub, &["--turn-ttl", "600"]);
    s.wait_log(
        "ICE provider: token with 5 ICE servers, ttl 2s",
        Duration::from_secs(10),
    );

    // The request: path under the base URL's prefix, basic auth, form body with the TTL.
    let first = &stub.seen()[0];
    let lines: Vec<&str> = first.head.lines().collect();
    assert_eq!(
        lines[0],
        format!("POST /stub/2010-04-01/Accounts/{SID}/Tokens.json HTTP/1.1")
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{AUTH}"));
    assert!(
        lines.contains(&format!("Authorization: Basic {basic}").as_str()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"Content-Type: application/x-www-form-urlencoded"),
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!("Host: localhost:{}", stub.addr.port()).as_str()),
        "{lines:?}"
    );
    assert_eq!(first.body, "Ttl=600");

    // The answer, mapped: url and urls on every entry, arrays split into entries.
    let (status, v) = s.ice_servers();
    assert_eq!(status, 200);
    let t = |url: &str| json!({"url": url, "urls": url, "username": "tw-user", "credential": "tw-pass"});
    assert_eq!(
        v,
        json!({
            "iceServers": [
                {"url": "stun:global.stun.twilio.example:3478", "urls": "stun:global.stun.twilio.example:3478"},
                t("turn:global.turn.twilio.example:3478?transport=udp"),
                t("turn:global.turn.twilio.example:3478?transport=tcp"),
                t("turns:global.turn.twilio.example:443?transport=tcp"),
                t("turn:global.turn.twilio.example:80"),
            ],
            "ttl": 2
        })
    );

    // Refreshed at half its TTL (1 s here), before it expires.
    let seen = stub.wait_requests(2, Duration::from_secs(5));
    let gap = seen[1].at - seen[0].at;
    assert!(
        gap >= Duration::from_millis(900) && gap < Duration::from_millis(1900),
        "{gap:?}"
    );

    // The provider starts failing: the cached token is served until it expires, then the
    // static list (with its minted TURN credentials) is.
    stub.set(Mode::Answer(
        503,
        r#"{"code":20503,"message":"Service unavailable"}"#.into(),
    ));
    s.wait_log(
        "failed: HTTP 503: Service unavailable; serving the cached token",
        Duration::from_secs(5),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while s.urls() != FALLBACK {
        assert!(Instant::now() < deadline, "still serving the expired token");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, v) = s.ice_servers();
    assert!(
        v["iceServers"][1]["username"]
            .as_str()
            .unwrap()
            .ends_with(":u1"),
        "{v}"
    );
}

#[test]
fn http_error_falls_back_to_the_static_list_and_recovers() {
    let err = r#"{"code":20003,"message":"Authenticate","more_info":"x","status":401}"#;
    let stub = Stub::start(Mode::Answer(401, err.into()));
    let s = Sigyard::start(&stub, &[]);
    s.wait_log("ICE provider: https://localhost", Duration::from_secs(10));
    let line = s.wait_log(
        "failed: HTTP 401: Authenticate; serving the static ICE list; retry in 1s",
        Duration::from_secs(10),
    );
    assert!(line.contains("WARN"), "{line}");
    assert_eq!(s.urls(), FALLBACK);
    let (_, v) = s.ice_servers();
    assert_eq!(v["ttl"], 86_400);
    assert!(v["iceServers"][1]["credential"].is_string());

    // The provider recovers: its token replaces the fallback after the next retry (1 s, 2 s).
    stub.set(Mode::Answer(200, token_body("3600")));
    s.wait_log(
        "ICE provider: token with 5 ICE servers, ttl 3600s; next refresh in 1800s",
        Duration::from_secs(6),
    );
    assert_eq!(s.urls()[0], "stun:global.stun.twilio.example:3478");
    assert!(s.has_log("retry in 2s") || stub.seen().len() == 2);
}

/// A provider that accepts the connection and the request, then says nothing for 10 s: the
/// request times out (`--twilio-timeout 10s`) and the static list is served, and throughout
/// the stall the single reactor answers `/healthz`, `/ice-servers` and WebSocket echoes at
/// once.
#[test]
fn reactor_keeps_answering_during_a_10s_provider_stall_then_timeout_fallback() {
    let stub = Stub::start(Mode::Stall(Duration::from_secs(30)));
    let s = Sigyard::start(
        &stub,
        &["--threads", "1", "--echo", "--twilio-timeout", "10s"],
    );
    let stalled_from = stub.wait_requests(1, Duration::from_secs(10))[0].at;
    let mut ws = ws(s.addr, "/echo");
    let (mut probes, mut worst) = (0u32, Duration::ZERO);
    let mut i = 0u32;
    while !s.has_log("timed out after 10.0s") {
        assert!(
            stalled_from.elapsed() < Duration::from_secs(15),
            "no timeout after 15 s"
        );
        let t = Instant::now();
        let health = http_get(s.addr, "/healthz");
        assert!(health.starts_with("HTTP/1.1 200 "), "{health}");
        let msg = format!("ping {i}");
        ws.send(Message::text(msg.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(msg));
        assert_eq!(s.urls(), FALLBACK);
        worst = worst.max(t.elapsed());
        probes += 1;
        i += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let stalled = stalled_from.elapsed();
    eprintln!("stall: {stalled:?}, {probes} probes, slowest {worst:?}");
    assert!(
        stalled >= Duration::from_millis(9500),
        "the stall lasted only {stalled:?}"
    );
    assert!(probes >= 50, "only {probes} probes during the stall");
    assert!(
        worst < Duration::from_millis(500),
        "a probe took {worst:?} during the stall"
    );
    let line = s.wait_log("timed out after 10.0s", Duration::ZERO);
    assert!(line.contains("serving the static ICE list"), "{line}");
    assert_eq!(s.urls(), FALLBACK);
}

#[test]
fn bad_provider_settings_exit_2_at_start() {
    let cases: [(&[&str], &str); 3] = [
        (
            &["--twilio-account-sid", SID],
            "--twilio-account-sid requires --twilio-auth-token",
        ),
        (
            &[
                "--twilio-account-sid",
                SID,
                "--twilio-auth-token",
                "t",
                "--twilio-ca-file",
                "/nonexistent/ca.pem",
            ],
            "--twilio-ca-file: cannot read /nonexistent/ca.pem",
        ),
        (
            &["--ice-server", "turn:h:70000"],
            "--ice-server: \"turn:h:70000\" is not an ICE server URI",
        ),
    ];
    for (args, want) in cases {
        let out = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn endpoint_auth_and_off_by_default() {
    let stub = Stub::start(Mode::Answer(500, "{}".into()));
    let s = Sigyard::start(&stub, &[]);
    let get = |auth: &str| {
        raw_exchange(
            s.addr,
            format!("GET /ice-servers HTTP/1.1\r\nHost: t\r\n{auth}Connection: close\r\n\r\n")
                .as_bytes(),
        )
    };
    for auth in [
        "",
        "Authorization: Bearer wrong-token-wrong-token\r\n",
        "Authorization: Basic eDp5\r\n",
    ] {
        let r = get(auth);
        assert!(r.starts_with("HTTP/1.1 401 "), "{auth:?}: {r}");
        assert!(r.contains("WWW-Authenticate: Bearer"), "{r}");
    }
    let r = get(&format!("Authorization: Bearer {TOKEN}\r\n"));
    assert!(
        r.starts_with("HTTP/1.1 200 ") && r.contains("Cache-Control: no-store"),
        "{r}"
    );
    let r = raw_exchange(
        s.addr,
        format!("POST /ice-servers HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
    let r = raw_exchange(
        s.addr,
        format!("GET /ice-servers?user=%00 HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");

    // Without --ice-endpoint-token the path does not exist.
    let h = start(|b| b);
    let r = http_get(h.plain_addr().unwrap(), "/ice-servers");
    assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
    stop(h);
}
