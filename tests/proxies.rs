//! Real client addresses behind trusted proxies (`--trusted-proxies`): per-IP limits follow the
//! address a trusted proxy reports in `X-Forwarded-For`, `Forwarded` or a PROXY v1/v2 header
//! (`--listen-proxy`), never a header an untrusted peer sent; a malformed PROXY header closes
//! the connection.

mod common;
use common::*;
use sigyard::config::Listener;
use sigyard::proto::proxy::Cidrs;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A connection from `src` (a loopback address) that stays open.
fn open_from(src: &str, addr: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&format!("{src}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    sock.connect(&addr.into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Send `prefix` then an upgrade to /echo with `headers`; the status (0: closed without one).
fn upgrade(s: &mut TcpStream, prefix: &[u8], headers: &str) -> u16 {
    let req = format!(
        "GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    );
    let mut bytes = prefix.to_vec();
    bytes.extend_from_slice(req.as_bytes());
    let _ = s.write_all(&bytes);
    status_of(&read_head(s))
}

fn server() -> (sigyard::Handle, SocketAddr, SocketAddr) {
    let h = start(|b| {
        b.configure(|c| {
            c.limits.max_connections_per_ip = 1;
            c.trusted_proxies = Cidrs::parse("127.0.0.1/32").unwrap();
            c.listen.push(Listener {
                addr: "127.0.0.1:0".parse().unwrap(),
                tls: false,
                proxy: true,
            });
        })
    });
    let addrs = h.local_addrs();
    (h, addrs[0], addrs[1])
}

#[test]
fn forwarding_headers_from_a_trusted_proxy_only() {
    let (h, a, _) = server();
    // From the trusted proxy (127.0.0.1): one connection per reported client. From an
    // untrusted peer (127.0.0.2) the headers are ignored: it is limited as itself. Every
    // connection stays open to the end, so each holds its client's one place.
    let cases = [
        (
            "127.0.0.1",
            "X-Forwarded-For: 1.2.3.4, 203.0.113.9\r\n",
            101,
        ),
        ("127.0.0.1", "X-Forwarded-For: 203.0.113.9\r\n", 503),
        (
            "127.0.0.1",
            "Forwarded: for=203.0.113.9;proto=http\r\n",
            503,
        ),
        (
            "127.0.0.1",
            "Forwarded: for=\"[2001:db8::7]:4711\"\r\n",
            101,
        ),
        ("127.0.0.1", "X-Forwarded-For: 203.0.113.10\r\n", 101),
        ("127.0.0.2", "X-Forwarded-For: 198.51.100.1\r\n", 101),
        ("127.0.0.2", "X-Forwarded-For: 198.51.100.2\r\n", 503),
    ];
    let mut open = Vec::new();
    for (src, headers, status) in cases {
        let mut c = open_from(src, a);
        assert_eq!(upgrade(&mut c, b"", headers), status, "{src} {headers}");
        open.push(c);
    }
    // Two refusals for a reported client, one for the untrusted peer (published by the cores
    // at the end of their loop iteration).
    let t = std::time::Instant::now();
    while metric(a, "sigyard_rejected_per_ip_total") != 3.0 {
        assert!(t.elapsed() < Duration::from_secs(2), "refusals not counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(open);
    stop(h);
}

#[test]
fn the_new_connection_rate_follows_the_reported_client() {
    let h = start(|b| {
        b.configure(|c| {
            c.limits.max_new_connections_per_ip = 2; // a burst of 4
            c.trusted_proxies = Cidrs::parse("127.0.0.1/32").unwrap();
        })
    });
    let a = h.plain_addr().unwrap();
    let from = |client: &str| {
        let mut s = open_from("127.0.0.1", a);
        upgrade(&mut s, b"", &format!("X-Forwarded-For: {client}\r\n"))
    };
    let statuses: Vec<u16> = (0..6).map(|_| from("203.0.113.5")).collect();
    assert_eq!(statuses, [101, 101, 101, 101, 429, 429]);
    // Another client behind the same proxy, and the proxy itself, are not limited by it.
    assert_eq!(from("203.0.113.6"), 101);
    let t = std::time::Instant::now();
    while metric(a, "sigyard_rejected_connection_rate_total") != 2.0 {
        assert!(t.elapsed() < Duration::from_secs(2), "refusals not counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop(h);
}

#[test]
fn proxy_protocol_v1_and_v2() {
    let (h, _, p) = server();
    let v1 = |ip: &str| format!("PROXY TCP4 {ip} 10.0.0.1 40000 80\r\n").into_bytes();
    let v2 = |ip: [u8; 4]| {
        let mut b = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        b.extend_from_slice(&[0x21, 0x11, 0, 12]);
        b.extend_from_slice(&ip);
        b.extend_from_slice(&[10, 0, 0, 1, 0x9c, 0x40, 0, 80]);
        b
    };
    let mut c1 = open_from("127.0.0.1", p);
    assert_eq!(upgrade(&mut c1, &v1("203.0.113.9"), ""), 101);
    // The same client again, by either version: over its limit.
    let mut c2 = open_from("127.0.0.1", p);
    assert_eq!(upgrade(&mut c2, &v2([203, 0, 113, 9]), ""), 503);
    let mut c3 = open_from("127.0.0.1", p);
    assert_eq!(upgrade(&mut c3, &v2([203, 0, 113, 10]), ""), 101);
    // A malformed header: closed, no answer.
    let mut bad = open_from("127.0.0.1", p);
    assert_eq!(upgrade(&mut bad, b"PROXY TCP4 nonsense\r\n", ""), 0);
    let mut plain = open_from("127.0.0.1", p);
    assert_eq!(upgrade(&mut plain, b"", ""), 0);
    // An untrusted peer's header is read and ignored: limited as itself.
    let mut u1 = open_from("127.0.0.2", p);
    assert_eq!(upgrade(&mut u1, &v1("203.0.113.9"), ""), 101);
    let mut u2 = open_from("127.0.0.2", p);
    assert_eq!(upgrade(&mut u2, &v1("203.0.113.11"), ""), 503);
    drop((c1, c3, u1));
    stop(h);
}
