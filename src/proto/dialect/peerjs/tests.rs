use super::*;
use crate::proto::dialect::testing::{get, head, upgrade, Harness};

fn h() -> Harness<PeerJs> {
    Harness::new(PeerJs::new(Options::default()))
}

fn open(h: &mut Harness<PeerJs>, id: &str, token: &str) -> Handle {
    h.open(&format!(
        "/peerjs?key=peerjs&id={id}&token={token}&version=1.5.5"
    ))
}

#[test]
fn open_forward_with_src_and_member_order() {
    let mut h = h();
    let a = open(&mut h, "alice", "t1");
    let b = open(&mut h, "bob", "t2");
    assert_eq!(h.texts_to(a), [OPEN]);
    assert_eq!(h.texts_to(b), [OPEN]);
    h.text(
        a,
        r#"{"type":"OFFER","payload":{"sdp":{"type":"offer","sdp":"v=0"},"type":"data","connectionId":"dc_1"},"dst":"bob","extra":1,"src":"spoof"}"#,
    );
    assert_eq!(
        h.texts_to(b),
        [
            r#"{"type":"OFFER","src":"alice","dst":"bob","payload":{"sdp":{"type":"offer","sdp":"v=0"},"type":"data","connectionId":"dc_1"}}"#
        ]
    );
    // HEARTBEAT and unknown types: nothing; bad frames: dropped, the socket stays.
    for f in [
        r#"{"type":"HEARTBEAT"}"#,
        r#"{"type":"HELLO","dst":"bob"}"#,
        "nope",
        "[1]",
        r#"{"type":1}"#,
    ] {
        h.text(a, f);
    }
    assert!(h.take_sent().is_empty());
    assert!(h.take_closed().is_empty());
}

#[test]
fn connection_errors_then_close_without_status() {
    let mut h = h();
    let no_status = crate::proto::ws::NO_STATUS;
    for (q, frame) in [
        ("/peerjs?key=peerjs&id=x", NO_PARAMS),
        ("/peerjs?key=&id=x&token=t", NO_PARAMS),
        ("/peerjs?key=other&id=x&token=t", BAD_KEY),
    ] {
        let c = h.open(q);
        assert_eq!(h.texts_to(c), [frame], "{q}");
        assert_eq!(h.take_closed(), [(c, no_status, String::new())]);
    }
    let a = open(&mut h, "alice", "t1");
    h.take_sent();
    let thief = open(&mut h, "alice", "other");
    assert_eq!(h.texts_to(thief), [ID_TAKEN]);
    assert_eq!(h.take_closed(), [(thief, no_status, String::new())]);
    // The same token rebinds: OPEN again, the old socket closed with 1000.
    let again = open(&mut h, "alice", "t1");
    assert_eq!(h.texts_to(again), [OPEN]);
    assert_eq!(h.take_closed()[0].0, a);
    // The concurrent limit.
    let mut h = Harness::new(PeerJs::new(Options {
        concurrent_limit: 1,
        ..Options::default()
    }));
    open(&mut h, "one", "t");
    let two = open(&mut h, "two", "t");
    assert_eq!(h.texts_to(two), [FULL]);
}

#[test]
fn queued_until_open_or_expired() {
    let mut h = h();
    let a = open(&mut h, "alice", "t1");
    h.take_sent();
    h.text(a, r#"{"type":"OFFER","payload":1,"dst":"bob"}"#);
    h.text(a, r#"{"type":"CANDIDATE","payload":2,"dst":"bob"}"#);
    h.text(a, r#"{"type":"LEAVE","dst":"bob"}"#); // not queued
    assert!(h.take_sent().is_empty());
    let b = open(&mut h, "bob", "t2");
    assert_eq!(
        h.texts_to(b),
        [
            OPEN,
            r#"{"type":"OFFER","src":"alice","dst":"bob","payload":1}"#,
            r#"{"type":"CANDIDATE","src":"alice","dst":"bob","payload":2}"#
        ]
    );
    // To nobody: one EXPIRE to the sender once the queue is 5 s old.
    h.text(a, r#"{"type":"OFFER","payload":1,"dst":"nobody"}"#);
    h.text(a, r#"{"type":"OFFER","payload":2,"dst":"nobody"}"#);
    h.advance(4_000);
    assert!(h.take_sent().is_empty());
    h.text(a, r#"{"type":"HEARTBEAT"}"#);
    h.text(b, r#"{"type":"HEARTBEAT"}"#);
    h.advance(2_000);
    assert_eq!(
        h.texts_to(a),
        [r#"{"type":"EXPIRE","src":"nobody","dst":"alice"}"#]
    );
    assert_eq!(h.d.table.queues(), 0);
}

#[test]
fn queues_are_bounded() {
    let mut h = Harness::new(PeerJs::new(Options {
        queue_messages: 2,
        max_queues: 1,
        ..Options::default()
    }));
    let a = open(&mut h, "alice", "t1");
    for i in 0..5 {
        h.text(
            a,
            &format!(r#"{{"type":"OFFER","payload":{i},"dst":"bob"}}"#),
        );
    }
    h.text(a, r#"{"type":"OFFER","payload":0,"dst":"carol"}"#);
    assert_eq!(h.d.table.queues(), 1);
    let b = open(&mut h, "bob", "t");
    assert_eq!(h.texts_to(b).len(), 3, "OPEN and two messages");
}

#[test]
fn leave_without_dst_and_alive_timeout() {
    let mut h = h();
    let a = open(&mut h, "alice", "t1");
    let b = open(&mut h, "bob", "t2");
    h.take_sent();
    h.text(a, r#"{"type":"LEAVE"}"#);
    assert_eq!(h.take_closed(), [(a, 1000, "left".to_string())]);
    assert_eq!(h.d.table.len(), 1);
    // Bob stays silent past the alive timeout: closed without a status, unregistered.
    h.advance(59_000);
    assert!(h.take_closed().is_empty());
    h.advance(2_000);
    assert_eq!(
        h.take_closed(),
        [(b, crate::proto::ws::NO_STATUS, String::new())]
    );
    assert!(h.d.table.is_empty());
}

#[test]
fn http_endpoints() {
    let mut h = h();
    let answer = |h: &mut Harness<PeerJs>, raw: &str| match h.request(&head(raw)).1 {
        Answer::Respond(r) => r,
        other => panic!("{other:?}"),
    };
    let r = answer(
        &mut h,
        "GET /peerjs/id?ts=1&version=1.5.5 HTTP/1.1\r\nHost: t\r\nOrigin: http://app.test\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "text/html; charset=utf-8");
    let id = String::from_utf8(r.body.clone()).unwrap();
    assert_eq!((id.len(), &id[14..15]), (36, "4"), "{id}");
    assert!(r
        .headers
        .iter()
        .any(|(k, v)| k == "Access-Control-Allow-Origin" && v == "http://app.test"));
    let r = answer(&mut h, "GET /anykey/peers HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!((r.status, r.body.as_slice()), (401, &b"Unauthorized"[..]));
    assert!(matches!(
        h.place(&get("/peerjs/nothing")),
        Placement::Answer(_)
    ));
    assert!(matches!(h.place(&upgrade("/peerjs")), Placement::Key(k) if &*k == PLACEMENT_KEY));
    let mut d = Harness::new(PeerJs::new(Options {
        allow_discovery: true,
        path: "/app/".into(),
        ..Options::default()
    }));
    d.open("/app/peerjs?key=peerjs&id=my+peer&token=t");
    let r = match d.request(&get("/app/k/peers")).1 {
        Answer::Respond(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(r.body, br#"["my peer"]"#);
    let r = match d.request(&get("/app/")).1 {
        Answer::Respond(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(r.body, APP_JSON.as_bytes());
    assert_eq!(route("/", "/peerjs", true), Some(Route::Socket));
    assert_eq!(route("/", "/", false), None);
    assert_eq!(route("/", "/a/b/id", false), None);
}

#[test]
fn tokens_compare_exactly_inline_or_not() {
    let long = "t".repeat(40);
    for (kept, other) in [("x7k2p9q1ab", "x7k2p9q1a"), ("", "a"), (long.as_str(), "t")] {
        let t = Token::new(kept);
        assert!(t.is(kept));
        assert!(!t.is(other), "{kept:?} vs {other:?}");
    }
    assert!(matches!(Token::new("x7k2p9q1ab"), Token::Inline(10, _)));
    assert!(matches!(Token::new(&long), Token::Heap(_)));
}
