//! `--allowed-origins`: a browser page from another origin gets 403 before any dialect hears
//! of its request, on every dialect's upgrade, Socket.IO polling and the HTTP API; a listed
//! origin, and a request without `Origin`, pass; per-dialect overrides; the refusals are
//! counted.

mod common;
use common::*;
use sigyard::proto::origin::Origins;
use std::net::SocketAddr;

fn upgrade(addr: SocketAddr, path: &str, origin: Option<&str>) -> u16 {
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\r\n"
    );
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    std::io::Write::write_all(&mut s, req.as_bytes()).unwrap();
    status_of(&read_head(&mut s))
}

fn plain(addr: SocketAddr, method: &str, path: &str, origin: &str, body: &str) -> u16 {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nOrigin: {origin}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    status_of(&raw_exchange(addr, req.as_bytes()))
}

const MEW: &str = "/?role=initiator&connId=0123456789abcdef0123456789abcdef&signed=1b93f0aa00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabb1c";

#[test]
fn a_foreign_origin_is_refused_on_every_dialect() {
    let h = start(|b| {
        b.configure(|c| {
            c.allowed_origins =
                Origins::parse("https://app.example.org https://*.example.net").unwrap();
            c.origin_overrides = vec![("peerolator".into(), Origins::parse("null").unwrap())];
        })
    });
    let a = h.plain_addr().unwrap();
    let foreign = Some("https://evil.test");
    let good = Some("https://app.example.org");
    let wild = Some("https://x.example.net");
    for path in [
        "/echo",
        "/introduction/alice",
        "/connection/a/b/k",
        MEW,
        "/socket.io/?EIO=3&transport=websocket&echo=1",
    ] {
        assert_eq!(upgrade(a, path, foreign), 403, "{path}");
        assert_eq!(upgrade(a, path, good), 101, "{path}");
        assert_eq!(upgrade(a, path, wild), 101, "{path}");
        // Not a browser: no Origin, no check.
        assert_eq!(upgrade(a, path, None), 101, "{path}");
    }
    // Peerolator has its own list: only `null` (and no Origin) pass there.
    assert_eq!(upgrade(a, "/server", good), 403);
    assert_eq!(upgrade(a, "/server", Some("null")), 101);
    assert_eq!(upgrade(a, "/server", None), 101);
    // Socket.IO polling and the HTTP API.
    let poll = "/socket.io/?EIO=3&transport=polling&echo=1";
    assert_eq!(plain(a, "GET", poll, "https://evil.test", ""), 403);
    assert_eq!(plain(a, "GET", poll, "https://app.example.org", ""), 200);
    let create = r#"{"method":"create_data_channel"}"#;
    assert_eq!(plain(a, "POST", "/", "https://evil.test", create), 403);
    assert_eq!(plain(a, "POST", "/", "https://x.example.net", create), 200);
    assert_eq!(plain(a, "OPTIONS", "/", "https://evil.test", ""), 403);
    // Counted as refusals, by reason.
    assert_eq!(
        metric_reaches(
            a,
            "sigyard_handshake_failures_total{status=\"403\",reason=\"origin\"}",
            9.0
        ),
        9.0
    );
    stop(h);
}

#[test]
fn the_default_is_open() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    assert_eq!(upgrade(a, "/echo", Some("https://anywhere.test")), 101);
    assert_eq!(upgrade(a, MEW, Some("null")), 101);
    stop(h);
}
