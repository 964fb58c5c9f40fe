use super::*;
use serde_json::json;

const S: &str = "6f1c0000000000000000000000000000";
const C1: &str = "a90b0000000000000000000000000011";
const C2: &str = "a90b0000000000000000000000000022";

fn r(key: u32) -> Handle {
    Handle::of(key, 7)
}

fn s(o: &Outgoing) -> &str {
    std::str::from_utf8(&o.payload).unwrap()
}

/// A server on 1 with clients C1 on 2 and C2 on 3; the opening messages drained.
fn table() -> Peers {
    let mut t = Peers::new();
    let mut out = Vec::new();
    t.open_server(S, r(1), None, &mut out).unwrap();
    t.open_client(S, C1, r(2), None, &mut out).unwrap();
    t.open_client(S, C2, r(3), None, &mut out).unwrap();
    t
}

fn send(t: &mut Peers, from: u32, text: &str) -> (Verdict, Vec<Outgoing>) {
    let mut out = Vec::new();
    let v = t.message(r(from), Kind::Text, text.as_bytes(), &mut out);
    (v, out)
}

#[test]
fn hello_and_peer_joined_exact() {
    let mut t = Peers::new();
    let mut out = Vec::new();
    t.open_server(S, r(1), None, &mut out).unwrap();
    assert_eq!(out[0].to, r(1));
    assert_eq!(
        s(&out[0]),
        format!(r#"{{"from":"0","to":"{S}","type":"HELLO","message":{{"id":"{S}"}}}}"#)
    );
    out.clear();
    t.open_client(S, C1, r(2), Some("hi there"), &mut out)
        .unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].to, r(2));
    let hello: Json = serde_json::from_slice(&out[0].payload).unwrap();
    assert_eq!(
        hello,
        json!({"from":"0","to":C1,"type":"HELLO","message":{"id":C1,"serverInfo":"hi there"}})
    );
    assert_eq!(out[1].to, r(1));
    assert_eq!(
        s(&out[1]),
        format!(r#"{{"from":"0","to":"{S}","type":"PEER_JOINED","message":{{"id":"{C1}"}}}}"#)
    );
    assert_eq!(
        t.open_client("ffff", C2, r(3), None, &mut out),
        Err(OpenError::NoServer)
    );
    assert_eq!(
        t.open_server(S, r(4), None, &mut out),
        Err(OpenError::DuplicateId)
    );
}

#[test]
fn relaying_with_from_and_to() {
    let mut t = table();
    let (v, out) = send(
        &mut t,
        1,
        &format!(r#"{{"to":"{C1}","type":"offer","message":{{"sdp":"x"}}}}"#),
    );
    assert_eq!(v, Verdict::Keep);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, r(2));
    assert_eq!(
        s(&out[0]),
        format!(r#"{{"from":"{S}","to":"{C1}","type":"offer","message":{{"sdp":"x"}}}}"#)
    );
    // With the original's required `from` (own id), any message value, extra fields ignored.
    let (v, out) = send(
        &mut t,
        2,
        &format!(r#"{{"from":"{C1}","to":"{S}","type":"answer","message":[1, 2],"x":0}}"#),
    );
    assert_eq!(v, Verdict::Keep);
    assert_eq!(out[0].to, r(1));
    assert_eq!(
        s(&out[0]),
        format!(r#"{{"from":"{C1}","to":"{S}","type":"answer","message":[1, 2]}}"#)
    );
    let (_, out) = send(
        &mut t,
        3,
        &format!(r#"{{"to":"{S}","type":"HELLO","message":null}}"#),
    );
    assert_eq!(
        s(&out[0]),
        format!(r#"{{"from":"{C2}","to":"{S}","type":"HELLO","message":null}}"#)
    );
}

#[test]
fn server_to_unknown_peer_is_dropped() {
    let mut t = table();
    for to in ["nobody", "0", S] {
        let (v, out) = send(
            &mut t,
            1,
            &format!(r#"{{"to":"{to}","type":"x","message":1}}"#),
        );
        assert_eq!(v, Verdict::Keep);
        assert!(out.is_empty());
    }
}

#[test]
fn violations_close() {
    let mut t = table();
    let cases = [
        (2, format!(r#"{{"to":"{C2}","type":"x","message":1}}"#)),
        (2, r#"{"to":"0","type":"x","message":1}"#.to_string()),
        (
            2,
            format!(r#"{{"from":"{C2}","to":"{S}","type":"x","message":1}}"#),
        ),
        (
            1,
            format!(r#"{{"from":"0","to":"{C1}","type":"x","message":1}}"#),
        ),
        (1, "not json".to_string()),
        (1, "[1,2,3]".to_string()),
        (1, r#"{"type":"x","message":1}"#.to_string()),
        (1, format!(r#"{{"to":"{C1}","message":1}}"#)),
        (1, format!(r#"{{"to":"{C1}","type":"x"}}"#)),
        (1, r#"{"to":5,"type":"x","message":1}"#.to_string()),
        (1, format!(r#"{{"to":"{C1}","type":true,"message":1}}"#)),
    ];
    for (from, text) in cases {
        let (v, out) = send(&mut t, from, &text);
        assert!(matches!(v, Verdict::Close(_)), "{text}");
        assert!(out.is_empty());
    }
    let mut out = Vec::new();
    let v = t.message(r(1), Kind::Binary, b"{}", &mut out);
    assert!(matches!(v, Verdict::Close(_)));
}

#[test]
fn peer_gone_both_ways() {
    let mut t = table();
    let mut out = Vec::new();
    t.leave(r(2), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, r(1));
    assert_eq!(
        s(&out[0]),
        format!(r#"{{"from":"0","to":"{S}","type":"PEER_GONE","message":{{"id":"{C1}"}}}}"#)
    );
    out.clear();
    t.leave(r(1), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, r(3));
    assert_eq!(
        s(&out[0]),
        format!(r#"{{"from":"0","to":"{C2}","type":"PEER_GONE","message":{{"id":"{S}"}}}}"#)
    );
    // The orphaned client stays; its valid messages are dropped, violations still close.
    let (v, out) = send(
        &mut t,
        3,
        &format!(r#"{{"to":"{S}","type":"x","message":1}}"#),
    );
    assert_eq!((v, out.len()), (Verdict::Keep, 0));
    let (v, _) = send(&mut t, 3, "nope");
    assert!(matches!(v, Verdict::Close(_)));
    // New clients for the gone server are refused.
    assert_eq!(
        t.open_client(S, "c3", r(4), None, &mut Vec::new()),
        Err(OpenError::NoServer)
    );
    let mut out = Vec::new();
    t.leave(r(3), &mut out);
    assert!(out.is_empty());
    assert!(t.is_empty());
    assert_eq!(t.servers(), 0);
}

// ── through the dialect contract ───────────────────────────────────────────────────────────

mod contract {
    use crate::proto::dialect::peerolator::Peerolator;
    use crate::proto::dialect::testing::{upgrade, Harness};
    use crate::proto::dialect::{Dialect, Placement};
    use serde_json::{json, Value};

    fn json_of(p: &[u8]) -> Value {
        serde_json::from_slice(p).unwrap()
    }

    #[test]
    fn a_server_is_placed_by_its_minted_id_and_its_clients_meet_it_there() {
        let mut h = Harness::new(Peerolator::new(Some("v1".into())));
        let Placement::Key(key) = h.place(&upgrade("/server")) else {
            panic!("a server is placed by its id")
        };
        let id = key.strip_prefix("peer/").unwrap().to_string();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        // The seeded randomness mints the same id again: it is the key that carries it.
        let server = h.conn();
        let a = h.call_request(server, Some(&key), &upgrade("/server"));
        assert!(matches!(a, crate::proto::dialect::Answer::Upgrade));
        let hello = json_of(&h.take_sent()[0].2);
        assert_eq!(hello["type"], "HELLO");
        assert_eq!(hello["message"], json!({"id": id, "serverInfo": "v1"}));
        let client = h.open(&format!("/client/{id}"));
        let sent = h.take_sent();
        assert_eq!(sent[0].0, client);
        assert_eq!(sent[1].0, server);
        let joined = json_of(&sent[1].2);
        assert_eq!(joined["type"], "PEER_JOINED");
        let cid = joined["message"]["id"].as_str().unwrap().to_string();
        // A client that breaks a rule is closed with 1008, and its server hears PEER_GONE.
        h.text(client, "not json");
        assert_eq!(
            h.take_closed()[0],
            (client, 1008, "not a JSON object".to_string())
        );
        let gone = json_of(&h.take_sent()[0].2);
        assert_eq!(gone["type"], "PEER_GONE");
        assert_eq!(gone["message"]["id"], cid);
        // A client of an unknown server is upgraded, then closed.
        let stray = h.open("/client/ffff");
        assert_eq!(h.take_closed()[0].0, stray);
        assert_eq!(h.d.gauge(), 1, "only the server is a member now");
    }
}
