use super::*;
use crate::proto::dialect::anypath::{AnyPath, Options};
use crate::proto::dialect::testing::{get, upgrade, Harness};
use crate::proto::dialect::Placement;

fn dialect() -> AnyPath {
    AnyPath::new(Options {
        ywebrtc_paths: vec!["/y-webrtc".into()],
        ..Options::default()
    })
}

fn open(h: &mut Harness<AnyPath>) -> Handle {
    h.open("/y-webrtc")
}

#[test]
fn publish_goes_to_every_subscriber_with_clients() {
    let mut h = Harness::new(dialect());
    let (a, b, c) = (open(&mut h), open(&mut h), open(&mut h));
    h.text(a, r#"{"type":"subscribe","topics":["doc-42"]}"#);
    h.text(
        a,
        r#"{"type":"publish","topic":"doc-42","data":{"type":"announce","from":"a1"}}"#,
    );
    assert_eq!(
        h.take_sent(),
        [(
            a,
            Kind::Text,
            br#"{"type":"publish","topic":"doc-42","data":{"type":"announce","from":"a1"},"clients":1}"#
                .to_vec()
        )]
    );
    h.text(
        b,
        r#"{"type":"subscribe","topics":["doc-42", 7, null, "other"]}"#,
    );
    // Members keep their order and bytes; `clients` is set in place; binary frames too.
    h.message(
        b,
        Kind::Binary,
        br#"{"type":"publish","data":{ "z" : 1.0 },"topic":"doc-42","clients":99,"x":[]}"#,
    );
    let want = br#"{"type":"publish","data":{ "z" : 1.0 },"topic":"doc-42","clients":2,"x":[]}"#;
    assert_eq!(
        h.take_sent(),
        [
            (a, Kind::Text, want.to_vec()),
            (b, Kind::Text, want.to_vec())
        ]
    );
    // A publisher that has not subscribed still reaches the topic; an unknown topic nobody.
    h.text(c, r#"{"type":"publish","topic":"other","data":"B0FF"}"#);
    assert_eq!(
        h.texts_to(b),
        [r#"{"type":"publish","topic":"other","data":"B0FF","clients":1}"#]
    );
    h.text(c, r#"{"type":"publish","topic":"nobody","data":1}"#);
    h.text(c, r#"{"type":"publish","topic":"","data":1}"#);
    assert!(h.take_sent().is_empty());
}

#[test]
fn unsubscribe_close_and_ping() {
    let mut h = Harness::new(dialect());
    let (a, b) = (open(&mut h), open(&mut h));
    h.text(a, r#"{"type":"subscribe","topics":["t","u"]}"#);
    h.text(b, r#"{"type":"subscribe","topics":["t"]}"#);
    h.text(b, r#"{"type":"subscribe","topics":["t"]}"#); // once only
    h.text(a, r#"{"type":"publish","topic":"t"}"#);
    assert_eq!(
        h.texts_to(b),
        [r#"{"type":"publish","topic":"t","clients":2}"#]
    );
    h.take_sent();
    h.text(b, r#"{"type":"unsubscribe","topics":["t"]}"#);
    h.text(a, r#"{"type":"publish","topic":"t"}"#);
    assert_eq!(
        h.texts_to(a),
        [r#"{"type":"publish","topic":"t","clients":1}"#]
    );
    assert!(h.take_sent().is_empty());
    assert_eq!(h.d.topics().topics(), 2);
    h.close(a);
    assert_eq!(h.d.topics().topics(), 0, "empty topics are gone");
    assert_eq!(h.d.topics().conns(), 0);
    h.text(b, r#"{"type":"ping"}"#);
    assert_eq!(h.texts_to(b), [r#"{"type":"pong"}"#]);
}

#[test]
fn bad_frames_are_dropped_and_the_socket_stays() {
    let mut h = Harness::new(dialect());
    let a = open(&mut h);
    for bad in [
        "not json",
        "[1,2]",
        "null",
        r#"{"type":7}"#,
        r#"{"topics":["t"]}"#,
        r#"{"type":"subscribe","topics":"t"}"#,
        r#"{"type":"subscribe","topics":{"0":"t"}}"#,
        r#"{"type":"publish","topic":["t"]}"#,
        r#"{"type":"publish","topic":"t","data":}"#,
        r#"{"type":"unknown"}"#,
    ] {
        h.text(a, bad);
    }
    assert!(h.take_sent().is_empty());
    assert!(h.take_closed().is_empty());
    assert_eq!(h.d.topics().topics(), 0);
    // A topic name past the limit, and topics past the per-connection limit, are skipped.
    let long = "x".repeat(MAX_TOPIC_LEN + 1);
    h.text(a, &format!(r#"{{"type":"subscribe","topics":["{long}"]}}"#));
    assert_eq!(h.d.topics().topics(), 0);
    let many: Vec<String> = (0..MAX_TOPICS_PER_CONN + 5)
        .map(|i| format!("t{i}"))
        .collect();
    let msg = serde_json::json!({"type": "subscribe", "topics": many}).to_string();
    h.text(a, &msg);
    assert_eq!(h.d.topics().topics(), MAX_TOPICS_PER_CONN);
}

#[test]
fn repeated_members_keep_the_first_place_and_the_last_value() {
    let m = Members::parse(r#"{"a":1,"b":2,"a":3}"#).unwrap();
    let v: Vec<(&str, &str)> = m.0.iter().map(|(k, v)| (&**k, *v)).collect();
    assert_eq!(v, [("a", "3"), ("b", "2")]);
    let mut b = Vec::new();
    assert_eq!(with_clients(&Members::default(), &mut b), 11);
    assert_eq!(b, br#"{"clients":}"#);
}

#[test]
fn placement_and_plain_requests() {
    let mut h = Harness::new(dialect());
    assert!(matches!(h.place(&upgrade("/y-webrtc")), Placement::Here));
    match h.place(&get("/y-webrtc")) {
        Placement::Answer(r) => assert_eq!((r.status, r.body.as_slice()), (200, &b"okay"[..])),
        p => panic!("{p:?}"),
    }
}
