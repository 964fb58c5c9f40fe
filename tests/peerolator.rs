//! Peerolator over real sockets (PROTOCOLS.md §4): HELLO (with and without `serverInfo`),
//! PEER_JOINED, PEER_GONE both ways, relaying with `from`/`to`, every rule of §4.4 (what is
//! dropped, what closes with 1008), ids, placement across cores, and 1,000 clients on one
//! server.

mod common;
use common::*;
use serde_json::{json, Value as Json};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::WebSocket;
use tungstenite::Message;

type Ws = WebSocket<TcpStream>;

/// The next text message, exactly as sent (tungstenite answers pings itself).
fn recv(c: &mut Ws) -> Json {
    serde_json::from_str(&recv_text(c)).expect("json")
}

fn send(c: &mut Ws, v: Json) {
    c.send(Message::text(v.to_string())).unwrap();
}

/// The close frame that ends `c`'s session.
fn closed_with(c: &mut Ws) -> (CloseCode, String) {
    loop {
        match c.read() {
            Ok(Message::Close(Some(f))) => return (f.code, f.reason.as_str().to_owned()),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            other => panic!("expected a close, got {other:?}"),
        }
    }
}

/// A UUID v4 in the simple form: 32 lowercase hex digits, version `4`, variant `8`–`b`.
fn is_id(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 32
        && b.iter()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && b[12] == b'4'
        && matches!(b[16], b'8' | b'9' | b'a' | b'b')
}

/// A server peer and its id (from its HELLO, checked exactly).
fn server(a: SocketAddr) -> (Ws, String) {
    let mut s = ws(a, "/server");
    let hello = recv_text(&mut s);
    let v: Json = serde_json::from_str(&hello).unwrap();
    let id = v["to"].as_str().unwrap().to_owned();
    assert!(is_id(&id), "{id}");
    assert_eq!(
        hello,
        format!(r#"{{"from":"0","to":"{id}","type":"HELLO","message":{{"id":"{id}"}}}}"#)
    );
    (s, id)
}

/// A client of `sid` and its id; the server's PEER_JOINED is checked exactly.
fn client(a: SocketAddr, server: &mut Ws, sid: &str) -> (Ws, String) {
    let mut c = ws(a, &format!("/client/{sid}"));
    let hello = recv_text(&mut c);
    let v: Json = serde_json::from_str(&hello).unwrap();
    let id = v["to"].as_str().unwrap().to_owned();
    assert!(is_id(&id) && id != sid, "{id}");
    assert_eq!(
        hello,
        format!(r#"{{"from":"0","to":"{id}","type":"HELLO","message":{{"id":"{id}"}}}}"#)
    );
    assert_eq!(
        recv_text(server),
        format!(r#"{{"from":"0","to":"{sid}","type":"PEER_JOINED","message":{{"id":"{id}"}}}}"#)
    );
    (c, id)
}

#[test]
fn the_spec_example_exactly() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    let (mut s, sid) = server(a);
    let (mut c, cid) = client(a, &mut s, &sid);
    s.send(Message::text(format!(
        r#"{{"to":"{cid}","type":"offer","message":{{"sdp":"v=0 …"}}}}"#
    )))
    .unwrap();
    assert_eq!(
        recv_text(&mut c),
        format!(r#"{{"from":"{sid}","to":"{cid}","type":"offer","message":{{"sdp":"v=0 …"}}}}"#)
    );
    // The original's required `from` (own id) is accepted; extra fields are ignored.
    c.send(Message::text(format!(
        r#"{{"from":"{cid}","to":"{sid}","type":"answer","message":{{"sdp":"x"}},"extra":1}}"#
    )))
    .unwrap();
    assert_eq!(
        recv_text(&mut s),
        format!(r#"{{"from":"{cid}","to":"{sid}","type":"answer","message":{{"sdp":"x"}}}}"#)
    );
    // Any type, any message value, relayed as sent.
    for m in [json!(null), json!([1, "two"]), json!("text"), json!(3.5)] {
        send(&mut c, json!({"to": sid, "type": "HELLO", "message": m}));
        assert_eq!(
            recv(&mut s),
            json!({"from": cid, "to": sid, "type": "HELLO", "message": m})
        );
    }
    // Byte for byte: spacing, key order, 1.0 and an escape survive.
    let odd = r#"{ "sdp": "v=0\r\n", "b": 1.0, "a": "\u00e9" }"#;
    c.send(Message::text(format!(
        r#"{{"to":"{sid}","type":"offer","message":{odd}}}"#
    )))
    .unwrap();
    assert_eq!(
        recv_text(&mut s),
        format!(r#"{{"from":"{cid}","to":"{sid}","type":"offer","message":{odd}}}"#)
    );
    c.close(None).unwrap();
    assert_eq!(
        recv_text(&mut s),
        format!(r#"{{"from":"0","to":"{sid}","type":"PEER_GONE","message":{{"id":"{cid}"}}}}"#)
    );
    stop(h);
}

#[test]
fn server_info_is_in_every_hello_when_configured() {
    let h = start(|b| b.configure(|c| c.peerolator_server_info = Some("sigyard test".into())));
    let a = h.plain_addr().unwrap();
    let mut s = ws(a, "/server");
    let hello = recv(&mut s);
    let sid = hello["to"].as_str().unwrap().to_owned();
    assert_eq!(
        hello,
        json!({"from":"0","to":sid,"type":"HELLO","message":{"id":sid,"serverInfo":"sigyard test"}})
    );
    let mut c = ws(a, &format!("/client/{sid}"));
    let hello = recv(&mut c);
    assert_eq!(hello["message"]["serverInfo"], "sigyard test");
    assert_eq!(recv(&mut s)["type"], "PEER_JOINED");
    stop(h);
}

#[test]
fn server_messages_to_strangers_are_dropped() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    let (mut s, sid) = server(a);
    let (mut c, cid) = client(a, &mut s, &sid);
    // Another server's client is a stranger too.
    let (mut s2, sid2) = server(a);
    let (_c2, cid2) = client(a, &mut s2, &sid2);
    for to in ["nobody", "0", sid.as_str(), cid2.as_str()] {
        send(&mut s, json!({"to": to, "type": "x", "message": 1}));
    }
    send(&mut s, json!({"to": cid, "type": "after", "message": 2}));
    // The first thing the client sees is the message after the dropped ones; the server is
    // still open.
    assert_eq!(recv(&mut c)["type"], "after");
    send(&mut c, json!({"to": sid, "type": "ok", "message": 0}));
    assert_eq!(recv(&mut s)["type"], "ok");
    stop(h);
}

#[test]
fn violations_close_the_session_with_1008() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    let (mut s, sid) = server(a);
    let cases: Vec<(bool, Message)> = vec![
        // A client talking to anyone but its server.
        (
            true,
            Message::text(json!({"to": "0", "type": "x", "message": 1}).to_string()),
        ),
        (
            true,
            Message::text(json!({"to": "other", "type": "x", "message": 1}).to_string()),
        ),
        // `from` that is not the sender's id.
        (
            true,
            Message::text(json!({"from": sid, "to": sid, "type": "x", "message": 1}).to_string()),
        ),
        (
            false,
            Message::text(json!({"from": "0", "to": "x", "type": "x", "message": 1}).to_string()),
        ),
        // Malformed.
        (true, Message::text("not json")),
        (true, Message::text("[1,2]")),
        (
            true,
            Message::text(json!({"type": "x", "message": 1}).to_string()),
        ),
        (
            true,
            Message::text(json!({"to": sid, "message": 1}).to_string()),
        ),
        (
            true,
            Message::text(json!({"to": sid, "type": "x"}).to_string()),
        ),
        (
            true,
            Message::text(json!({"to": 7, "type": "x", "message": 1}).to_string()),
        ),
        (
            false,
            Message::text(json!({"to": "x", "type": false, "message": 1}).to_string()),
        ),
        (
            true,
            Message::binary(
                json!({"to": sid, "type": "x", "message": 1})
                    .to_string()
                    .into_bytes(),
            ),
        ),
    ];
    for (from_client, m) in cases {
        let desc = format!("{m:?}");
        if from_client {
            let (mut c, cid) = client(a, &mut s, &sid);
            c.send(m).unwrap();
            assert_eq!(closed_with(&mut c).0, CloseCode::Policy, "{desc}");
            // The server hears that the client is gone, and nothing else.
            assert_eq!(
                recv(&mut s),
                json!({"from":"0","to":sid,"type":"PEER_GONE","message":{"id":cid}}),
                "{desc}"
            );
        } else {
            let (mut s2, _) = server(a);
            s2.send(m).unwrap();
            assert_eq!(closed_with(&mut s2).0, CloseCode::Policy, "{desc}");
        }
    }
    stop(h);
}

#[test]
fn a_client_of_an_unknown_server_is_closed() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    let mut c = ws(a, "/client/0123456789abcdef0123456789abcdef");
    // As the original: upgraded, then a close frame without a status code.
    match c.read() {
        Ok(Message::Close(None)) => {}
        other => panic!("expected a close without a status code, got {other:?}"),
    }
    // Without an upgrade, both paths ask for one.
    assert!(http_get(a, "/server").starts_with("HTTP/1.1 426"));
    assert!(http_get(a, "/client/abc").starts_with("HTTP/1.1 426"));
    assert!(http_get(a, "/server/extra").starts_with("HTTP/1.1 404"));
    stop(h);
}

#[test]
fn server_leaving_tells_its_clients_who_stay_connected() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    let (mut s, sid) = server(a);
    let (mut c1, c1id) = client(a, &mut s, &sid);
    let (mut c2, c2id) = client(a, &mut s, &sid);
    s.close(None).unwrap();
    for (c, id) in [(&mut c1, &c1id), (&mut c2, &c2id)] {
        assert_eq!(
            recv_text(c),
            format!(r#"{{"from":"0","to":"{id}","type":"PEER_GONE","message":{{"id":"{sid}"}}}}"#)
        );
    }
    // Still connected: a valid message is dropped silently, the socket answers pings.
    send(&mut c1, json!({"to": sid, "type": "x", "message": 1}));
    c1.send(Message::Ping(b"still here".to_vec().into()))
        .unwrap();
    match c1.read().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"still here"),
        m => panic!("unexpected {m:?}"),
    }
    // New clients for the gone server are refused.
    let mut late = ws(a, &format!("/client/{sid}"));
    assert!(matches!(late.read(), Ok(Message::Close(None))));
    stop(h);
}

#[test]
fn servers_and_clients_accepted_on_different_cores() {
    let h = start(|b| b.threads(2));
    let a = h.plain_addr().unwrap();
    let mut servers: Vec<(Ws, String)> = (0..8).map(|_| server(a)).collect();
    let mut clients = Vec::new();
    for (s, sid) in &mut servers {
        for _ in 0..4 {
            clients.push((client(a, s, sid), sid.clone()));
        }
    }
    for ((c, cid), sid) in &mut clients {
        send(c, json!({"to": sid, "type": "ping", "message": cid}));
    }
    for (s, sid) in &mut servers {
        for _ in 0..4 {
            let m = recv(s);
            assert_eq!(
                (m["to"].as_str(), m["type"].as_str()),
                (Some(sid.as_str()), Some("ping"))
            );
            assert_eq!(m["from"], m["message"]);
            let from = m["from"].as_str().unwrap().to_owned();
            send(s, json!({"to": from, "type": "pong", "message": sid}));
        }
    }
    for ((c, cid), sid) in &mut clients {
        assert_eq!(
            recv(c),
            json!({"from": sid, "to": cid, "type": "pong", "message": sid})
        );
    }
    let text = h.metrics_text();
    let value = |prefix: &str| -> f64 {
        let line = text.lines().find_map(|l| l.strip_prefix(prefix));
        line.unwrap().trim().parse().unwrap()
    };
    let moved = value("sigyard_handoffs_out_total ");
    assert!(moved >= 1.0, "no socket was accepted on the other core?");
    assert_eq!(moved, value("sigyard_handoffs_in_total "));
    stop(h);
}

#[test]
fn a_thousand_clients_on_one_server() {
    let h = start(|b| b.threads(2));
    let a = h.plain_addr().unwrap();
    const N: usize = 1000;
    let (mut s, sid) = server(a);
    s.get_ref()
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut clients: Vec<(Ws, String)> = (0..N).map(|_| client(a, &mut s, &sid)).collect();
    let ids: std::collections::HashSet<&str> = clients.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids.len(), N, "ids are unique");
    for (c, cid) in &mut clients {
        send(
            c,
            json!({"to": sid, "type": "offer", "message": {"from client": cid}}),
        );
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..N {
        let m = recv(&mut s);
        assert_eq!(m["from"], m["message"]["from client"]);
        let from = m["from"].as_str().unwrap().to_owned();
        send(
            &mut s,
            json!({"to": from, "type": "answer", "message": from}),
        );
        assert!(seen.insert(from));
    }
    for (c, cid) in &mut clients {
        let m = recv(c);
        assert_eq!(
            m,
            json!({"from": sid, "to": cid, "type": "answer", "message": cid})
        );
    }
    // The server leaves: every client hears it.
    drop(s);
    for (c, cid) in &mut clients {
        assert_eq!(
            recv(c),
            json!({"from":"0","to":cid,"type":"PEER_GONE","message":{"id":sid}})
        );
    }
    stop(h);
}
