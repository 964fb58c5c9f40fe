use super::*;
use crate::proto::dialect::testing::{get, upgrade, Harness};

fn harness() -> Harness<AnyPath> {
    Harness::new(AnyPath::new(Options {
        ywebrtc_paths: vec!["/y-webrtc".into()],
        webtorrent_paths: vec!["/announce".into()],
        tracker: webtorrent::Options::default(),
    }))
}

const ANNOUNCE: &str =
    r#"{"action":"announce","info_hash":"hhhhhhhhhhhhhhhhhhhh","peer_id":"AAAAAAAAAAAAAAAAAAAA"}"#;
const RESPONSE: &str = r#"{"complete":0,"incomplete":1,"action":"announce","interval":120,"info_hash":"hhhhhhhhhhhhhhhhhhhh"}"#;

#[test]
fn the_first_frame_decides_on_a_shared_path() {
    let mut h = harness();
    let (t, y) = (h.open("/"), h.open("/somewhere"));
    // Neither dialect's frame: dropped, nothing said, still undecided.
    for junk in [
        "not json",
        "[1]",
        r#"{"type":5}"#,
        r#"{"action":"publish"}"#,
    ] {
        h.text(t, junk);
        h.text(y, junk);
    }
    assert!(h.take_sent().is_empty());
    h.text(t, ANNOUNCE);
    assert_eq!(h.texts_to(t), [RESPONSE]);
    h.text(y, r#"{"type":"ping"}"#);
    assert_eq!(h.texts_to(y), [r#"{"type":"pong"}"#]);
    // Decided: a y-webrtc frame on the tracker's socket is a bad tracker request, and the
    // reverse is dropped as y-webrtc drops what it does not know.
    h.text(t, r#"{"type":"ping"}"#);
    assert_eq!(
        h.texts_to(t),
        [r#"{"failure reason":"invalid action in WS request: undefined"}"#]
    );
    h.text(y, ANNOUNCE);
    assert!(h.take_sent().is_empty());
    h.close(t);
    h.close(y);
    assert_eq!((h.d.tracker().peers(), h.d.topics().conns()), (0, 0));
}

#[test]
fn a_path_decides_before_any_frame() {
    let mut h = harness();
    let (t, y) = (h.open("/announce"), h.open("/y-webrtc"));
    h.text(t, "not json");
    assert_eq!(h.texts_to(t), [r#"{"failure reason":"Invalid request"}"#]);
    h.text(y, ANNOUNCE);
    assert!(
        h.take_sent().is_empty(),
        "y-webrtc drops a frame without a string type"
    );
    h.text(y, r#"{"type":"subscribe","topics":["r"]}"#);
    assert_eq!(h.d.topics().topics(), 1);
}

#[test]
fn placement_plain_requests_and_metrics() {
    let mut h = harness();
    for path in ["/", "/announce", "/y-webrtc", "/x"] {
        assert!(matches!(h.place(&upgrade(path)), Placement::Here), "{path}");
    }
    for (path, status, body) in [
        ("/announce", 404, "404 Not Found"),
        ("/y-webrtc", 200, "okay"),
    ] {
        match h.place(&get(path)) {
            Placement::Answer(r) => {
                assert_eq!((r.status, r.body.as_slice()), (status, body.as_bytes()))
            }
            p => panic!("{path}: {p:?}"),
        }
    }
    let c = h.open("/announce");
    h.text(c, ANNOUNCE);
    h.text(c, r#"{"action":"scrape"}"#);
    let mut m = [0; 8];
    h.d.metrics(&mut m);
    assert_eq!(m, [0, 1, 1, 1, 0, 0, 0, 1]);
    assert_eq!(METRICS.len(), m.len());
}
