//! y-webrtc signaling (PROTOCOLS-beyond.md §8) over real sockets: the bare URL and the
//! dedicated path, subscribe / publish fan-out with `clients`, members kept as sent, ping,
//! bad frames dropped with the socket kept, unsubscribe and close, and MewConnect still
//! reached on `/` with its parameters.

mod common;
use common::*;
use std::net::TcpStream;
use std::time::Duration;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<TcpStream>;

#[test]
fn subscribers_get_each_publish_with_clients() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    // The client's default: the bare URL, no query. The dedicated path is the same dialect.
    let mut alice = ws(a, "/");
    let mut bob = ws(a, "/y-webrtc");
    let text = |c: &mut Ws, t: &str| c.send(Message::text(t)).unwrap();
    text(&mut alice, r#"{"type":"subscribe","topics":["doc-42"]}"#);
    text(
        &mut alice,
        r#"{"type":"publish","topic":"doc-42","data":{"type":"announce","from":"a1"}}"#,
    );
    assert_eq!(
        recv_text(&mut alice),
        r#"{"type":"publish","topic":"doc-42","data":{"type":"announce","from":"a1"},"clients":1}"#
    );
    text(&mut bob, r#"{"type":"subscribe","topics":["doc-42"]}"#);
    // Binary frames count as text; members keep their order and bytes, `clients` is set in
    // place.
    bob.send(Message::binary(
        &br#"{"type":"publish","data":{ "to":"a1", "n":1.0 },"topic":"doc-42","clients":9}"#[..],
    ))
    .unwrap();
    let want = r#"{"type":"publish","data":{ "to":"a1", "n":1.0 },"topic":"doc-42","clients":2}"#;
    assert_eq!(recv_text(&mut alice), want);
    assert_eq!(recv_text(&mut bob), want);
    // Bad frames are dropped and the socket stays.
    for bad in [
        "not json",
        "[]",
        r#"{"type":"subscribe","topics":"doc-42"}"#,
    ] {
        text(&mut bob, bad);
    }
    bob.send(Message::binary(vec![0xff, 0x00])).unwrap();
    text(&mut bob, r#"{"type":"ping"}"#);
    assert_eq!(recv_text(&mut bob), r#"{"type":"pong"}"#);
    // Unsubscribed, then gone: the count follows. The unsubscribe reaches the topic's owner on
    // bob's path and alice's publishes on hers (they may be served on different cores): until
    // it has, a publish still counts and reaches bob.
    text(&mut bob, r#"{"type":"unsubscribe","topics":["doc-42"]}"#);
    let (one, two) = (
        r#"{"type":"publish","topic":"doc-42","data":1,"clients":1}"#,
        r#"{"type":"publish","topic":"doc-42","data":1,"clients":2}"#,
    );
    let mut reached_bob = 0;
    loop {
        text(
            &mut alice,
            r#"{"type":"publish","topic":"doc-42","data":1}"#,
        );
        match recv_text(&mut alice) {
            got if got == one => break,
            got => assert_eq!(got, two),
        }
        reached_bob += 1;
        assert!(reached_bob < 50, "the unsubscribe never took effect");
        std::thread::sleep(Duration::from_millis(10));
    }
    for _ in 0..reached_bob {
        assert_eq!(recv_text(&mut bob), two);
    }
    assert!(quiet(&mut bob));
    text(&mut bob, r#"{"type":"subscribe","topics":["doc-42"]}"#);
    alice.close(None).unwrap();
    drop(alice);
    std::thread::sleep(Duration::from_millis(100));
    text(&mut bob, r#"{"type":"publish","topic":"doc-42","data":2}"#);
    assert_eq!(
        recv_text(&mut bob),
        r#"{"type":"publish","topic":"doc-42","data":2,"clients":1}"#
    );
    assert_eq!(metric(a, "sigyard_ywebrtc_topics"), 1.0);
    stop(h);
}

#[test]
fn bare_url_routing() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    // A plain GET / is still the status page; on the dedicated path it is the original's
    // answer.
    assert!(http_get(a, "/").contains("sigyard"));
    let r = http_get(a, "/y-webrtc");
    assert!(
        r.starts_with("HTTP/1.1 200") && r.ends_with("\r\n\r\nokay"),
        "{r}"
    );
    // MewConnect's parameters on `/` still reach MewConnect (here: its refusal).
    let r = raw_exchange(a, ws_request("/?role=nobody&connId=x&signed=y").as_bytes());
    assert!(r.starts_with("HTTP/1.1 500"), "{r}");
    // Any other path an upgrade reaches is y-webrtc's.
    let mut c = ws(a, "/some/room?x=1");
    c.send(Message::text(r#"{"type":"ping"}"#)).unwrap();
    assert_eq!(recv_text(&mut c), r#"{"type":"pong"}"#);
    stop(h);
}

#[test]
fn topics_span_the_cores_of_a_node() {
    let h = start(|b| b.threads(2));
    let a = h.plain_addr().unwrap();
    let mut socks: Vec<Ws> = (0..10).map(|_| ws(a, "/")).collect();
    for core in 0..2 {
        let name = format!("sigyard_core_connections{{core=\"{core}\"}}");
        assert!(metric(a, &name) > 0.0, "no socket landed on core {core}");
    }
    let text = |c: &mut Ws, t: &str| c.send(Message::text(t)).unwrap();
    // Each socket's publish follows its subscription to the topic's owner: its own probe
    // coming back says it is in, and those already in see it too.
    for i in 0..socks.len() {
        text(
            &mut socks[i],
            r#"{"type":"subscribe","topics":["room","side"]}"#,
        );
        text(
            &mut socks[i],
            &format!(r#"{{"type":"publish","topic":"room","data":{i}}}"#),
        );
        for s in &mut socks[..=i] {
            let want = format!(
                r#"{{"type":"publish","topic":"room","data":{i},"clients":{}}}"#,
                i + 1
            );
            assert_eq!(recv_text(s), want);
        }
    }
    assert_eq!(metric(a, "sigyard_ywebrtc_topics"), 2.0);
    // Sockets that go leave the topics wherever those live.
    let mut last = socks.pop().unwrap();
    drop(socks);
    let t = std::time::Instant::now();
    loop {
        text(&mut last, r#"{"type":"publish","topic":"side","data":0}"#);
        let got = recv_text(&mut last);
        if got.ends_with(r#""clients":1}"#) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{got}");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop(h);
}
