//! PeerJS (PROTOCOLS-beyond.md §7) over real sockets: the id endpoint with CORS, OPEN,
//! forwarding with `src` in the original's member order, queued messages delivered after
//! OPEN, EXPIRE for an id that never comes, every ERROR and ID-TAKEN with a close without a
//! status, the rebind with the same token, discovery off and on, bad frames dropped.

mod common;
use common::*;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<TcpStream>;

fn peer(a: SocketAddr, id: &str, token: &str) -> Ws {
    ws(
        a,
        &format!("/peerjs?key=peerjs&id={id}&token={token}&version=1.5.5"),
    )
}

/// The close that ends `c`: its code.
fn closed(c: &mut Ws) -> CloseCode {
    loop {
        match c.read() {
            Ok(Message::Close(f)) => return f.map_or(CloseCode::Status, |f| f.code),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            other => panic!("expected a close, got {other:?}"),
        }
    }
}

#[test]
fn ids_open_and_forwarding() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    let r = raw_exchange(
        a,
        b"GET /peerjs/id?ts=17330000000000.123&version=1.5.5 HTTP/1.1\r\nHost: t\r\n\
          Origin: http://app.test\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(
        r.contains("Content-Type: text/html; charset=utf-8\r\n"),
        "{r}"
    );
    assert!(
        r.contains("Access-Control-Allow-Origin: http://app.test\r\n"),
        "{r}"
    );
    let id = r.split("\r\n\r\n").nth(1).unwrap().to_string();
    assert_eq!(id.len(), 36, "{id}");
    let mut alice = peer(a, &id, "x7k2p9q1ab");
    assert_eq!(recv_text(&mut alice), r#"{"type":"OPEN"}"#);
    // An OFFER to bob before bob is here waits for him, and comes after his OPEN.
    let offer = r#"{"sdp":{"type":"offer","sdp":"v=0\r\n"},"type":"data","connectionId":"dc_4f1a","label":"dc_4f1a","reliable":false,"serialization":"binary"}"#;
    alice
        .send(Message::text(format!(
            r#"{{"type":"OFFER","payload":{offer},"dst":"bob","src":"spoof"}}"#
        )))
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut bob = peer(a, "bob", "q8w0e2");
    assert_eq!(recv_text(&mut bob), r#"{"type":"OPEN"}"#);
    assert_eq!(
        recv_text(&mut bob),
        format!(r#"{{"type":"OFFER","src":"{id}","dst":"bob","payload":{offer}}}"#)
    );
    // Bad frames are dropped; the socket goes on.
    for bad in ["not json", "[]", r#"{"type":7}"#] {
        bob.send(Message::text(bad)).unwrap();
    }
    bob.send(Message::text(format!(
        r#"{{"type":"ANSWER","payload":{{"type":"data"}},"dst":"{id}"}}"#
    )))
    .unwrap();
    assert_eq!(
        recv_text(&mut alice),
        format!(r#"{{"type":"ANSWER","src":"bob","dst":"{id}","payload":{{"type":"data"}}}}"#)
    );
    // A taken id, and the rebind with its own token (OPEN again, the old socket closed).
    let mut thief = peer(a, "bob", "other");
    assert_eq!(
        recv_text(&mut thief),
        r#"{"type":"ID-TAKEN","payload":{"msg":"ID is taken"}}"#
    );
    assert_eq!(closed(&mut thief), CloseCode::Status);
    let mut bob2 = peer(a, "bob", "q8w0e2");
    assert_eq!(recv_text(&mut bob2), r#"{"type":"OPEN"}"#);
    assert_eq!(closed(&mut bob), CloseCode::Normal);
    stop(h);
}

#[test]
fn errors_expire_and_discovery() {
    let h = start(|b| {
        b.configure(|c| {
            c.peerjs.allow_discovery = true;
            c.peerjs.concurrent_limit = 1;
        })
    });
    let a = h.plain_addr().unwrap();
    for (q, msg) in [
        (
            "key=peerjs&id=x",
            "No id, token, or key supplied to websocket server",
        ),
        ("key=nope&id=x&token=t", "Invalid key provided"),
    ] {
        let mut c = ws(a, &format!("/peerjs?{q}"));
        assert_eq!(
            recv_text(&mut c),
            format!(r#"{{"type":"ERROR","payload":{{"msg":"{msg}"}}}}"#)
        );
        assert_eq!(closed(&mut c), CloseCode::Status, "no status code");
    }
    let mut alice = peer(a, "alice", "t");
    assert_eq!(recv_text(&mut alice), r#"{"type":"OPEN"}"#);
    let mut full = peer(a, "bob", "t");
    assert_eq!(
        recv_text(&mut full),
        r#"{"type":"ERROR","payload":{"msg":"Server has reached its concurrent user limit"}}"#
    );
    assert!(http_get(a, "/peerjs/peers").ends_with(r#"["alice"]"#));
    // An OFFER to nobody: EXPIRE after the 5 s expire timeout (swept every second).
    let t = Instant::now();
    alice
        .send(Message::text(
            r#"{"type":"OFFER","payload":{},"dst":"nobody"}"#,
        ))
        .unwrap();
    assert_eq!(
        recv_text(&mut alice),
        r#"{"type":"EXPIRE","src":"nobody","dst":"alice"}"#
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(7),
        "{took:?}"
    );
    stop(h);
    // Discovery is off by default.
    let h = start(|b| b);
    let r = http_get(h.plain_addr().unwrap(), "/peerjs/peers");
    assert!(
        r.starts_with("HTTP/1.1 401") && r.ends_with("Unauthorized"),
        "{r}"
    );
    stop(h);
}
