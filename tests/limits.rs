//! Limits over real sockets: each bad client gets the specific answer, and a well-behaved
//! client on the same server is unaffected.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

fn assert_healthy(c: &mut tungstenite::WebSocket<TcpStream>) {
    c.send(Message::text("still here")).unwrap();
    // Server pings may come first; tungstenite answers them itself.
    let reply = loop {
        match c.read().unwrap() {
            Message::Ping(_) | Message::Pong(_) => continue,
            m => break m,
        }
    };
    assert_eq!(reply, Message::text("still here"));
}

#[test]
fn slowloris_headers_get_408_at_the_handshake_timeout() {
    let h = start(|b| b.limits(|l| l.handshake_timeout = Duration::from_millis(400)));
    let a = h.plain_addr().unwrap();
    let mut good = ws(a, "/echo");
    let mut slow = TcpStream::connect(a).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t0 = Instant::now();
    for b in b"GET /echo HTTP/1.1\r\nHost: t\r\n" {
        if slow.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        if t0.elapsed() > Duration::from_millis(700) {
            break;
        }
    }
    let mut out = String::new();
    let _ = slow.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out:?}");
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert_healthy(&mut good);
    stop(h);
}

#[test]
fn oversized_head_gets_431() {
    let h = start(|b| b.limits(|l| l.max_header_bytes = 1024));
    let a = h.plain_addr().unwrap();
    let mut good = ws(a, "/echo");
    let big = format!(
        "GET /echo HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(4000)
    );
    let r = raw_exchange(a, big.as_bytes());
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    assert_healthy(&mut good);
    stop(h);
}

#[test]
fn oversized_frame_closes_1009_and_others_go_on() {
    let h = start(|b| {
        b.limits(|l| l.max_frame_size = 1000)
            .limits(|l| l.max_message_size = 4000)
    });
    let a = h.plain_addr().unwrap();
    let mut good = ws(a, "/echo");
    let mut bad = ws(a, "/echo");
    bad.send(Message::binary(vec![1u8; 1001])).unwrap();
    match bad.read() {
        Ok(Message::Close(Some(f))) => assert_eq!(f.code, CloseCode::Size),
        other => panic!("expected close 1009, got {other:?}"),
    }
    assert_healthy(&mut good);
    stop(h);
}

#[test]
fn a_frame_cut_short_still_meets_the_idle_timeout() {
    let h = start(|b| {
        b.limits(|l| {
            l.idle_timeout = Duration::from_millis(800);
            l.ping_interval = Duration::from_millis(200);
        })
    });
    let a = h.plain_addr().unwrap();
    for path in ["/echo", "/y-webrtc", "/introduction/cut"] {
        // A raw client: it answers no ping, so only its one byte ever arrives.
        let mut c = TcpStream::connect(a).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        c.write_all(ws_request(path).as_bytes()).unwrap();
        assert!(read_head(&mut c).starts_with("HTTP/1.1 101"), "{path}");
        let t0 = Instant::now();
        c.write_all(&[0x81]).unwrap(); // one byte of a frame header, then silence
        let (mut got, mut buf) = (Vec::new(), [0u8; 256]);
        let code = loop {
            // Server frames are unmasked and short here: pings, then the close.
            if let [b0, len, rest @ ..] = got.as_slice() {
                let len = usize::from(*len & 0x7f);
                if rest.len() >= len {
                    if b0 & 0x0f == 0x8 {
                        break u16::from_be_bytes([rest[0], rest[1]]);
                    }
                    got.drain(..2 + len);
                    continue;
                }
            }
            assert!(t0.elapsed() < Duration::from_secs(3), "{path}: still open");
            match c.read(&mut buf) {
                Ok(0) | Err(_) => panic!("{path}: no close after {:?}", t0.elapsed()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        };
        assert_eq!(code, 1001, "{path}");
        let took = t0.elapsed();
        assert!(
            took < Duration::from_millis(1500),
            "{path}: closed after {took:?}"
        );
    }
    stop(h);
}

#[test]
fn a_reader_that_never_reads_is_contained() {
    let h = start(|b| {
        b.limits(|l| {
            l.idle_timeout = Duration::from_secs(2);
            l.ping_interval = Duration::from_millis(500);
        })
    });
    let a = h.plain_addr().unwrap();
    let mut good = ws(a, "/echo");
    // Flood the echo endpoint with a raw socket and never read the echoes.
    let mut flood = TcpStream::connect(a).unwrap();
    flood.write_all(ws_request("/echo").as_bytes()).unwrap();
    flood
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let frame = {
        let payload = vec![b'x'; 8192];
        let mut f = vec![0x82, 0xfe, 0x20, 0x00, 0, 0, 0, 0];
        f.extend_from_slice(&payload);
        f
    };
    let mut sent = 0usize;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(1) {
        match flood.write(&frame) {
            Ok(n) => sent += n,
            Err(_) => break, // our socket buffers are full: the server stopped reading
        }
    }
    // The server pushed back instead of buffering: far less than we tried to send got in,
    // and its pool holds a bounded number of buffers.
    assert!(sent < 64 << 20, "server kept reading {sent} bytes");
    assert!(metric(a, "sigyard_buffers_in_use") <= 8.0);
    assert_healthy(&mut good);
    // With nothing read from it, the idle timeout ends the flooder (and the quiet good
    // client, which did not answer pings without reading; a fresh client is served).
    std::thread::sleep(Duration::from_millis(2600));
    assert!(metric(a, "sigyard_idle_timeouts_total") >= 1.0);
    let mut fresh = ws(a, "/echo");
    assert_healthy(&mut fresh);
    stop(h);
}

#[test]
fn max_connections_and_per_ip_limits_answer_503() {
    let h = start(|b| b.limits(|l| l.max_connections = 3));
    let a = h.plain_addr().unwrap();
    let _held: Vec<_> = (0..3).map(|_| ws(a, "/echo")).collect();
    std::thread::sleep(Duration::from_millis(50));
    let r = http_get(a, "/healthz");
    assert!(
        r.starts_with("HTTP/1.1 503") && r.contains("max-connections"),
        "{r}"
    );
    stop(h);

    let h = start(|b| b.limits(|l| l.max_connections_per_ip = 2));
    let a = h.plain_addr().unwrap();
    let _held: Vec<_> = (0..2).map(|_| ws(a, "/echo")).collect();
    std::thread::sleep(Duration::from_millis(50));
    let r = http_get(a, "/healthz");
    assert!(
        r.starts_with("HTTP/1.1 503") && r.contains("your address"),
        "{r}"
    );
    drop(_held);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(metric(a, "sigyard_rejected_per_ip_total"), 1.0);
    stop(h);
}

/// Send `n` text messages of `size` bytes as fast as possible; the close the server sent, if
/// any, after draining its echoes.
fn flood_messages(
    c: &mut tungstenite::WebSocket<TcpStream>,
    n: usize,
    size: usize,
) -> Option<(CloseCode, String)> {
    let msg = "x".repeat(size);
    for _ in 0..n {
        if c.write(Message::text(msg.clone())).is_err() {
            break;
        }
    }
    let _ = c.flush();
    loop {
        match c.read() {
            Ok(Message::Close(Some(f))) => return Some((f.code, f.reason.as_str().to_owned())),
            Ok(Message::Close(None)) => return Some((CloseCode::Status, String::new())),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

#[test]
fn message_and_byte_rates_close_with_1008_and_stay_silent_below() {
    let h = start(|b| {
        b.limits(|l| {
            l.max_messages_per_second = 200;
            l.max_message_bytes_per_second = 64 << 10;
        })
    });
    let a = h.plain_addr().unwrap();
    // Below both rates (a burst of two seconds' worth is allowed): every echo comes back.
    let mut calm = ws(a, "/echo");
    for i in 0..300 {
        calm.send(Message::text(format!("m{i}"))).unwrap();
        assert_eq!(calm.read().unwrap(), Message::text(format!("m{i}")));
    }
    // Past the message rate.
    let mut chatty = ws(a, "/echo");
    chatty
        .get_mut()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let closed = flood_messages(&mut chatty, 2000, 8);
    assert_eq!(closed, Some((CloseCode::Policy, "sending too fast".into())));
    // Past the byte rate with few messages.
    let mut bulky = ws(a, "/echo");
    bulky
        .get_mut()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let closed = flood_messages(&mut bulky, 20, 16 << 10);
    assert_eq!(closed, Some((CloseCode::Policy, "sending too fast".into())));
    let t = Instant::now();
    while metric(a, "sigyard_rate_limited_total") != 2.0 {
        assert!(t.elapsed() < Duration::from_secs(2), "closures not counted");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The calm connection is unharmed.
    calm.send(Message::text("still")).unwrap();
    assert_eq!(calm.read().unwrap(), Message::text("still"));
    stop(h);
}

#[test]
fn new_connections_past_the_rate_get_429() {
    let h = start(|b| b.limits(|l| l.max_new_connections_per_ip = 20));
    let a = h.plain_addr().unwrap();
    // A burst of two seconds' worth passes; the next connections in the same instant do not.
    let mut statuses = Vec::new();
    for _ in 0..60 {
        let resp = raw_exchange(
            a,
            b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        statuses.push(resp.get(9..12).unwrap_or("").to_string());
    }
    let ok = statuses.iter().filter(|s| *s == "200").count();
    let refused = statuses.iter().filter(|s| *s == "429").count();
    assert_eq!(ok + refused, 60, "{statuses:?}");
    assert!((40..=45).contains(&ok), "{ok} passed: {statuses:?}");
    // Refilled after a while: one more passes.
    std::thread::sleep(Duration::from_millis(200));
    let resp = raw_exchange(
        a,
        b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let t = Instant::now();
    while metric_from_other(a) < refused as f64 {
        assert!(t.elapsed() < Duration::from_secs(3), "refusals not counted");
        std::thread::sleep(Duration::from_millis(200));
    }
    stop(h);
}

/// `sigyard_rejected_connection_rate_total`, read once the bucket let a connection through.
fn metric_from_other(a: std::net::SocketAddr) -> f64 {
    let text = raw_exchange(
        a,
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    text.lines()
        .find_map(|l| l.strip_prefix("sigyard_rejected_connection_rate_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Statuses of `n` API calls from `src` (a loopback address), each with `headers`, on
/// keep-alive connections: a 429 (which must carry `Retry-After`) closes its connection, as
/// the request's body is left unread, and the next call opens another.
fn api_calls(a: std::net::SocketAddr, src: &str, headers: &str, n: usize) -> Vec<u16> {
    let connect = || -> TcpStream {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let from: std::net::SocketAddr = format!("{src}:0").parse().unwrap();
        sock.bind(&from.into()).unwrap();
        sock.connect(&a.into()).unwrap();
        sock.into()
    };
    let mut conn: Option<TcpStream> = None;
    let body = r#"{"method":"create_data_channel"}"#;
    (0..n)
        .map(|_| {
            let s = conn.get_or_insert_with(connect);
            let req = format!(
                "POST / HTTP/1.1\r\nHost: t\r\n{headers}Content-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(req.as_bytes()).unwrap();
            let resp = read_response(s);
            let status = status_of(&resp);
            if status == 429 {
                assert!(resp.contains("Retry-After: 1\r\n"), "{resp}");
                assert!(resp.contains("Connection: close\r\n"), "{resp}");
                conn = None;
            }
            status
        })
        .collect()
}

#[test]
fn http_requests_past_the_rate_get_429() {
    let h = start(|b| {
        b.limits(|l| l.max_http_requests_per_ip = 20)
            .configure(|c| {
                c.trusted_proxies = sigyard::proto::proxy::Cidrs::parse("127.0.0.3/32").unwrap();
            })
    });
    let a = h.plain_addr().unwrap();
    // A burst of two seconds' worth passes.
    let statuses = api_calls(a, "127.0.0.1", "", 60);
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let refused = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(ok + refused, 60, "{statuses:?}");
    assert!((40..=45).contains(&ok), "{ok} passed: {statuses:?}");
    // Socket.IO polling draws from the same bucket.
    let poll = raw_exchange(
        a,
        b"GET /socket.io/?EIO=3&transport=polling HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert_eq!(status_of(&poll), 429, "{poll}");
    // Another address is not affected; WebSocket upgrades are not HTTP requests here.
    assert_eq!(api_calls(a, "127.0.0.2", "", 5), [200; 5]);
    assert_healthy(&mut ws(a, "/echo"));
    // Behind a trusted proxy, each request counts for the client it names, even when one
    // proxy connection carries several clients' requests.
    let xff = |ip: &str| format!("X-Forwarded-For: {ip}\r\n");
    let first = api_calls(a, "127.0.0.3", &xff("203.0.113.1"), 60);
    assert!(first.contains(&429), "{first:?}");
    assert_eq!(api_calls(a, "127.0.0.3", &xff("203.0.113.2"), 5), [200; 5]);
    let t = Instant::now();
    let expected = (1 + refused + first.iter().filter(|&&s| s == 429).count()) as f64;
    while metric(a, "sigyard_rejected_http_rate_total") != expected {
        assert!(t.elapsed() < Duration::from_secs(3), "refusals not counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Refilled after a while.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(api_calls(a, "127.0.0.1", "", 1), [200]);
    stop(h);
}
