//! The HTTP side over real sockets: upgrade answers, operator endpoints, keep-alive, and the
//! echo endpoint with a real client and with a client that splits every write.

mod common;
use common::*;
use rand::{Rng, SeedableRng};
use std::io::Write;
use std::net::TcpStream;
use tungstenite::Message;

#[test]
fn echo_round_trip_with_tungstenite() {
    let h = start(|b| b);
    let mut c = ws(h.plain_addr().unwrap(), "/echo");
    c.send(Message::text("hello")).unwrap();
    assert_eq!(c.read().unwrap(), Message::text("hello"));
    c.send(Message::binary(vec![0u8, 159, 255])).unwrap();
    assert_eq!(c.read().unwrap(), Message::binary(vec![0u8, 159, 255]));
    c.close(None).unwrap();
    loop {
        match c.read() {
            Ok(Message::Close(_)) => continue,
            Err(tungstenite::Error::ConnectionClosed) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    stop(h);
}

#[test]
fn echo_through_a_client_that_splits_every_write() {
    let h = start(|b| b);
    let addr = h.plain_addr().unwrap();
    let stream = Chunker::connect(addr, 7, 23);
    let (mut c, _) = tungstenite::client::client(format!("ws://{addr}/echo"), stream).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    for i in 0..120 {
        let len = match i % 3 {
            0 => rng.random_range(0..126),
            1 => rng.random_range(126..20_000),
            _ => rng.random_range(0..20),
        };
        let msg = if i % 2 == 0 {
            Message::binary((0..len).map(|_| rng.random::<u8>()).collect::<Vec<u8>>())
        } else {
            Message::text(
                (0..len)
                    .map(|_| rng.random_range('a'..='ω'))
                    .collect::<String>(),
            )
        };
        c.send(msg.clone()).unwrap();
        assert_eq!(c.read().unwrap(), msg, "message {i}");
    }
    stop(h);
}

#[test]
fn upgrade_rejections_name_the_rule() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    let no_key = "GET /echo HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert!(raw_exchange(a, no_key.as_bytes()).starts_with("HTTP/1.1 400"));

    let v8 = ws_request("/echo").replace("Version: 13", "Version: 8");
    let r = raw_exchange(a, v8.as_bytes());
    assert!(r.starts_with("HTTP/1.1 426"), "{r}");
    assert!(
        r.to_ascii_lowercase().contains("sec-websocket-version: 13"),
        "{r}"
    );

    let post = ws_request("/echo").replace("GET", "POST");
    let r = raw_exchange(a, post.as_bytes());
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    assert!(r.to_ascii_lowercase().contains("allow: get"), "{r}");

    // An upgrade no other dialect claims is y-webrtc's (its client connects to any URL); a
    // plain GET there is still 404.
    assert!(raw_exchange(a, ws_request("/nowhere").as_bytes()).starts_with("HTTP/1.1 101"));
    assert!(http_get(a, "/nowhere").starts_with("HTTP/1.1 404"));
    assert!(http_get(a, "/echo").starts_with("HTTP/1.1 426"));
    assert!(raw_exchange(a, b"NOT HTTP AT ALL\r\n\r\n").starts_with("HTTP/1.1 400"));
    assert!(metric(a, "sigyard_handshake_failures_total") >= 4.0);
    stop(h);
}

#[test]
fn echo_is_off_by_default() {
    let h = start(|b| b.echo(false));
    let a = h.plain_addr().unwrap();
    // Without --echo, /echo is a path like any other: a y-webrtc socket, which echoes nothing.
    let mut c = ws(a, "/echo");
    c.send(Message::text("hello")).unwrap();
    c.get_mut()
        .set_read_timeout(Some(std::time::Duration::from_millis(300)))
        .unwrap();
    assert!(c.read().is_err(), "no echo");
    stop(h);
}

#[test]
fn operator_endpoints_and_keep_alive() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    let mut s = TcpStream::connect(a).unwrap();
    for path in ["/healthz", "/metrics", "/"] {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
            .unwrap();
        let r = read_response(&mut s);
        assert!(r.starts_with("HTTP/1.1 200"), "{path}: {r}");
        match path {
            "/healthz" => assert!(r.ends_with("ok\n")),
            "/metrics" => {
                assert!(r.contains("# TYPE sigyard_connections gauge"));
                assert!(r.contains("sigyard_connections{state=\"http\"}"));
                assert!(r.contains("sigyard_reactor_loop_lag_seconds{core=\"1\"}"));
            }
            _ => assert!(r.contains("<h1>sigyard")),
        }
    }
    // Pipelined: two requests in one write, answered in order on the same connection.
    s.write_all(
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\nGET /missing HTTP/1.1\r\nHost: t\r\n\r\n",
    )
    .unwrap();
    assert!(read_response(&mut s).starts_with("HTTP/1.1 200"));
    assert!(read_response(&mut s).starts_with("HTTP/1.1 404"));
    let r = raw_exchange(
        a,
        b"DELETE /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    stop(h);
}
