//! Every method and every error of the HTTP API, in virtual time.

use super::store::Table;
use super::*;
use store::StoreLimits;

const T0: u64 = 1_700_000_000_000;

fn limits() -> StoreLimits {
    StoreLimits {
        ttl_ms: 300_000,
        max_channels: 100,
        max_candidates: 4,
        max_bytes: 1 << 20,
    }
}

/// A table, a fake clock and a deterministic id source.
struct Api {
    table: Table,
    now: u64,
    next: u32,
}

impl Api {
    fn new() -> Api {
        Api::with(limits(), false)
    }
    fn with(l: StoreLimits, logging: bool) -> Api {
        Api {
            table: Table::new(l, 8, logging),
            now: T0,
            next: 0,
        }
    }
    fn call(&mut self, body: &str) -> Reply {
        let next = &mut self.next;
        let mut ids = || {
            *next += 1;
            format!("00000000-0000-4000-8000-{:012x}", *next)
        };
        handle(&self.table, self.now, body.as_bytes(), &mut ids)
    }
    fn ok_json(&mut self, body: &str) -> String {
        match self.call(body) {
            Reply::Json(s) => s,
            other => panic!("{body}: {other:?}"),
        }
    }
    fn err(&mut self, body: &str) -> String {
        match self.call(body) {
            Reply::Error(s) => s,
            other => panic!("{body}: expected an error, got {other:?}"),
        }
    }
    fn channel(&mut self) -> String {
        let out = self.ok_json(r#"{"method":"create_data_channel"}"#);
        let id = out
            .strip_prefix("{\"channel_id\": \"")
            .and_then(|s| s.strip_suffix("\"}"))
            .expect("channel_id object");
        id.to_string()
    }
}

#[test]
fn create_data_channel_returns_a_uuid_object() {
    let mut a = Api::new();
    assert_eq!(
        a.ok_json(r#"{"method":"create_data_channel"}"#),
        r#"{"channel_id": "00000000-0000-4000-8000-000000000001"}"#
    );
    assert_eq!(a.table.len(), 1);
}

#[test]
fn full_exchange_as_in_the_spec() {
    let mut a = Api::new();
    let id = a.channel();
    let offer = r#"{\"type\":\"offer\",\"sdp\":\"v=0\"}"#;
    let req = format!(r#"{{"method":"create_offer","channel_id":"{id}","offer":"{offer}"}}"#);
    assert_eq!(a.call(&req), Reply::Empty);
    assert_eq!(
        a.ok_json(&format!(r#"{{"method":"get_offer","channel_id":"{id}"}}"#)),
        format!(r#"{{"offer": "{offer}"}}"#)
    );
    let ans = format!(r#"{{"method":"create_answer","channel_id":"{id}","answer":"a1"}}"#);
    assert_eq!(a.call(&ans), Reply::Empty);
    assert_eq!(a.err(&ans), "answer already exist");
    assert_eq!(
        a.ok_json(&format!(r#"{{"method":"get_answer","channel_id":"{id}"}}"#)),
        r#"{"answer": "a1"}"#
    );
    let cands = format!(r#"{{"method":"get_candidates","channel_id":"{id}"}}"#);
    assert_eq!(a.ok_json(&cands), r#"{"items": []}"#);
    for c in [
        r#""c1""#,
        r#"{"candidate":"x","sdpMid":"0"}"#,
        r#""c1""#,
        r#"{"sdpMid":"0","candidate":"x"}"#,
        "7",
    ] {
        let req = format!(r#"{{"method":"create_candidate","channel_id":"{id}","candidate":{c}}}"#);
        assert_eq!(a.call(&req), Reply::Empty, "{c}");
    }
    assert_eq!(
        a.ok_json(&cands),
        r#"{"items": ["c1", {"candidate": "x", "sdpMid": "0"}, 7]}"#,
        "duplicates (JSON-equal) skipped, order kept"
    );
    assert_eq!(
        a.err(r#"{"method":"get_offer","channel_id":"nope"}"#),
        "channel_id not found"
    );
}

#[test]
fn values_are_stored_as_json_and_offers_overwrite() {
    let mut a = Api::new();
    let id = a.channel();
    for offer in [
        r#"{"type":"offer","sdp":"v=0\r\n","n":1.5}"#,
        "null",
        r#"[1,"é"]"#,
    ] {
        let req = format!(r#"{{"method":"create_offer","channel_id":"{id}","offer":{offer}}}"#);
        assert_eq!(a.call(&req), Reply::Empty);
    }
    assert_eq!(
        a.ok_json(&format!(r#"{{"method":"get_offer","channel_id":"{id}"}}"#)),
        r#"{"offer": [1, "\u00e9"]}"#
    );
    // A null answer is present: the second one is refused, and it reads back as null.
    let req = format!(r#"{{"method":"create_answer","channel_id":"{id}","answer":null}}"#);
    assert_eq!(a.call(&req), Reply::Empty);
    assert_eq!(a.err(&req), "answer already exist");
    assert_eq!(
        a.ok_json(&format!(r#"{{"method":"get_answer","channel_id":"{id}"}}"#)),
        r#"{"answer": null}"#
    );
}

#[test]
fn every_parameter_error() {
    let mut a = Api::new();
    a.next = 9;
    let id = a.channel();
    assert!(id.ends_with('a'), "an id with a letter, for the case check");
    let missing = "00000000-0000-4000-8000-0000000000ff";
    let cases: Vec<(String, &str)> = vec![
        (
            r#"{"method":"create_offer"}"#.into(),
            "channel_id is required",
        ),
        (
            r#"{"method":"create_offer","offer":"o"}"#.into(),
            "channel_id is required",
        ),
        (
            format!(r#"{{"method":"create_offer","channel_id":"{id}"}}"#),
            "offer is required",
        ),
        (
            r#"{"method":"create_offer","channel_id":"x"}"#.into(),
            "offer is required",
        ),
        (
            format!(r#"{{"method":"create_offer","channel_id":"{missing}","offer":1}}"#),
            "channel_id not found",
        ),
        (
            r#"{"method":"create_offer","channel_id":5,"offer":1}"#.into(),
            "channel_id not found",
        ),
        (r#"{"method":"get_offer"}"#.into(), "channel_id is required"),
        (
            format!(r#"{{"method":"get_offer","channel_id":"{missing}"}}"#),
            "channel_id not found",
        ),
        (
            format!(r#"{{"method":"get_offer","channel_id":"{id}"}}"#),
            "offer not found",
        ),
        (
            r#"{"method":"create_candidate"}"#.into(),
            "channel_id is required",
        ),
        (
            format!(r#"{{"method":"create_candidate","channel_id":"{id}"}}"#),
            "candidate is required",
        ),
        (
            format!(r#"{{"method":"create_candidate","channel_id":"{missing}","candidate":"c"}}"#),
            "channel_id not found",
        ),
        (
            r#"{"method":"create_answer"}"#.into(),
            "channel_id is required",
        ),
        (
            format!(r#"{{"method":"create_answer","channel_id":"{id}"}}"#),
            "answer is required",
        ),
        (
            format!(r#"{{"method":"create_answer","channel_id":"{missing}","answer":"a"}}"#),
            "channel_id not found",
        ),
        (
            r#"{"method":"get_candidates"}"#.into(),
            "channel_id is required",
        ),
        (
            format!(r#"{{"method":"get_candidates","channel_id":"{missing}"}}"#),
            "channel_id not found",
        ),
        (
            r#"{"method":"get_candidates","channel_id":null}"#.into(),
            "channel_id not found",
        ),
        (
            r#"{"method":"get_answer"}"#.into(),
            "channel_id is required",
        ),
        (
            format!(
                r#"{{"method":"get_answer","channel_id":"{}"}}"#,
                id.to_uppercase()
            ),
            "channel_id not found",
        ),
        (
            format!(r#"{{"method":"get_answer","channel_id":"{id}"}}"#),
            "answer not found",
        ),
    ];
    for (req, want) in cases {
        assert_eq!(a.err(&req), want, "{req}");
    }
}

#[test]
fn request_level_errors() {
    let mut a = Api::new();
    for bad in [
        "",
        "not json",
        "[1]",
        "\"method\"",
        "{}",
        r#"{"channel_id":"x"}"#,
        "{\"method\":",
        "1 2",
    ] {
        assert_eq!(a.err(bad), NOT_RPC, "{bad:?}");
    }
    assert_eq!(a.err(r#"{"method":"nope"}"#), "unknown method nope");
    assert_eq!(a.err(r#"{"method":null}"#), "unknown method null");
    assert_eq!(a.err(r#"{"method":12}"#), "unknown method 12");
    assert_eq!(
        a.err(r#"{"method":{"a":[1,2]}}"#),
        r#"unknown method {"a": [1, 2]}"#
    );
}

#[test]
fn echo_returns_the_request_in_order() {
    let mut a = Api::new();
    assert_eq!(
        a.ok_json(r#"{"z":1,"method":"echo","a":{"y":"é","x":[null,true]}}"#),
        r#"{"z": 1, "method": "echo", "a": {"y": "\u00e9", "x": [null, true]}}"#
    );
}

#[test]
fn ttl_is_exact_and_never_refreshed() {
    let mut a = Api::new();
    let id = a.channel();
    let get = format!(r#"{{"method":"get_candidates","channel_id":"{id}"}}"#);
    let write = format!(r#"{{"method":"create_offer","channel_id":"{id}","offer":"o"}}"#);
    a.now += 299_999;
    assert_eq!(
        a.call(&write),
        Reply::Empty,
        "writes do not extend the life"
    );
    assert_eq!(a.ok_json(&get), r#"{"items": []}"#);
    a.now += 1; // exactly 300 s after creation
    assert_eq!(a.err(&get), "channel_id not found");
    assert_eq!(a.err(&write), "channel_id not found");
    assert_eq!(a.table.len(), 0, "swept when its shard was touched");
}

#[test]
fn limits_answer_with_the_failure_texts() {
    let l = StoreLimits {
        ttl_ms: 1000,
        max_channels: 2,
        max_candidates: 2,
        max_bytes: 400,
    };
    let mut a = Api::with(l, false);
    let id = a.channel();
    a.channel();
    assert_eq!(a.err(r#"{"method":"create_data_channel"}"#), "try again!");
    for (i, want) in [(1, None), (2, None), (3, Some("fail to create candidate"))] {
        let req = format!(r#"{{"method":"create_candidate","channel_id":"{id}","candidate":{i}}}"#);
        match want {
            None => assert_eq!(a.call(&req), Reply::Empty),
            Some(w) => assert_eq!(a.err(&req), w),
        }
    }
    let big = "x".repeat(400);
    let req = format!(r#"{{"method":"create_offer","channel_id":"{id}","offer":"{big}"}}"#);
    assert_eq!(a.err(&req), "fail to create offer");
    let req = format!(r#"{{"method":"create_answer","channel_id":"{id}","answer":"{big}"}}"#);
    assert_eq!(a.err(&req), "fail to create answer");
    // Expiry gives the budget back.
    a.now += 1000;
    a.table.sweep(a.now);
    assert!(a.table.is_empty());
    let id = a.channel();
    let req = format!(r#"{{"method":"create_candidate","channel_id":"{id}","candidate":1}}"#);
    assert_eq!(a.call(&req), Reply::Empty);
}

#[test]
fn an_id_collision_is_try_again() {
    let mut a = Api::new();
    a.channel();
    a.next = 0; // the id source repeats itself
    assert_eq!(a.err(r#"{"method":"create_data_channel"}"#), "try again!");
}

#[test]
fn log_replays_into_an_equal_store() {
    let mut a = Api::with(limits(), true);
    let id = a.channel();
    let gone = a.channel();
    for req in [
        format!(
            r#"{{"method":"create_offer","channel_id":"{id}","offer":{{"sdp":"v=0","type":"offer"}}}}"#
        ),
        format!(r#"{{"method":"create_candidate","channel_id":"{id}","candidate":"c1"}}"#),
        format!(r#"{{"method":"create_candidate","channel_id":"{id}","candidate":"c2"}}"#),
        format!(r#"{{"method":"create_answer","channel_id":"{id}","answer":"a"}}"#),
        format!(r#"{{"method":"create_offer","channel_id":"{gone}","offer":"o"}}"#),
    ] {
        assert_eq!(a.call(&req), Reply::Empty);
    }
    let mut file = store::LOG_MAGIC.to_vec();
    for i in 0..a.table.shard_count() {
        file.extend(a.table.take_log(i));
    }
    let reads = |a: &mut Api, id: &str| {
        ["get_offer", "get_answer", "get_candidates"]
            .map(|m| a.call(&format!(r#"{{"method":"{m}","channel_id":"{id}"}}"#)))
    };
    let want = reads(&mut a, &id);
    let mut b = Api::with(limits(), true);
    let r = b.table.replay(&file, a.now);
    assert_eq!(
        (r.records, r.channels, r.stopped, r.valid_len),
        (7, 2, None, file.len())
    );
    assert_eq!(reads(&mut b, &id), want);
    // Replayed later, a channel past its expiry is skipped with its records.
    let mut c = Api::with(limits(), false);
    c.now = T0 + 300_000;
    let r = c.table.replay(&file, c.now);
    assert_eq!((r.channels, r.expired), (0, 2));
    assert!(c.table.is_empty());
    // A snapshot replays to the same store.
    let mut snap = store::LOG_MAGIC.to_vec();
    for i in 0..b.table.shard_count() {
        b.table.snapshot(i, b.now, &mut snap);
    }
    let mut d = Api::with(limits(), false);
    assert_eq!(d.table.replay(&snap, b.now).channels, 2);
    assert_eq!(reads(&mut d, &id), want);
}

// ── through the dialect contract ───────────────────────────────────────────────────────────

mod contract {
    use super::limits;
    use crate::proto::dialect::httpapi::store::Table;
    use crate::proto::dialect::httpapi::{Cors, HttpApi};
    use crate::proto::dialect::testing::{get, head, Harness};
    use crate::proto::dialect::{Answer, Placement};

    fn post() -> crate::proto::http::RequestHead {
        head("POST / HTTP/1.1\r\nHost: t\r\nOrigin: http://o\r\nContent-Length: 1\r\n\r\n")
    }

    fn answer_text(a: Answer) -> (u16, String) {
        match a {
            Answer::Respond(r) => (r.status, String::from_utf8(r.body).unwrap()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_post_is_read_then_answered_with_ids_from_the_randomness_and_ttl_from_the_clock() {
        let store = Table::new(limits(), 4, false);
        let mut h = Harness::new(HttpApi::new(Box::new(store), Cors::Any, 1024));
        assert!(matches!(h.place(&post()), Placement::Here));
        let (conn, a) = h.request(&post());
        assert!(matches!(a, Answer::ReadBody { max: 1024 }));
        let (status, created) =
            answer_text(h.body(conn, &post(), br#"{"method":"create_data_channel"}"#));
        assert_eq!(status, 200);
        let id = created
            .strip_prefix(r#"{"channel_id": ""#)
            .and_then(|s| s.strip_suffix(r#""}"#))
            .expect(&created)
            .to_string();
        assert_eq!(id.as_bytes()[14], b'4', "a version 4 UUID: {id}");
        let offer =
            format!(r#"{{"method":"create_offer","channel_id":"{id}","offer":{{"sdp":"x"}}}}"#);
        assert_eq!(answer_text(h.body(conn, &post(), offer.as_bytes())).0, 200);
        let get_offer = format!(r#"{{"method":"get_offer","channel_id":"{id}"}}"#);
        assert_eq!(
            answer_text(h.body(conn, &post(), get_offer.as_bytes())),
            (200, r#"{"offer": {"sdp": "x"}}"#.to_string())
        );
        // 300 s of wall clock later the channel is gone.
        h.advance(300_000);
        assert_eq!(
            answer_text(h.body(conn, &post(), get_offer.as_bytes())),
            (400, "channel_id not found".to_string())
        );
        // Not a POST: the original's text, with CORS.
        let (_, a) = h.request(&get("/"));
        match a {
            Answer::Respond(r) => {
                assert_eq!(r.status, 400);
                assert!(r
                    .headers
                    .contains(&("Access-Control-Allow-Origin".into(), "*".into())));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn outside_the_channels_are_calls_whose_requests_wait_for_the_outcome() {
        use crate::proto::dialect::httpapi::{decode_call, Op, Outcome};
        let store = Table::new(limits(), 4, false);
        let mut h = Harness::new(HttpApi::outside(Box::new(store), Cors::Any, 1024, 6000));
        let (conn, _) = h.request(&post());
        // A create: held, its call out, and the id it minted in the reply.
        match h.body(conn, &post(), br#"{"method":"create_data_channel"}"#) {
            Answer::Hold { until_ms, fallback } => {
                assert_eq!(until_ms, h.now + 6000);
                assert_eq!(fallback.status, 503);
            }
            other => panic!("{other:?}"),
        }
        let (to, op) = h.stored.pop().unwrap();
        assert_eq!(to, conn);
        let (o, key, _, value) = decode_call(&op).unwrap();
        assert_eq!((o, key.len(), value), (Op::Create, 32, ""));
        h.stored_result(conn, &Outcome::Done.encode());
        let (_, r) = h.responded.pop().unwrap();
        let body = String::from_utf8(r.body).unwrap();
        assert!(body.starts_with(r#"{"channel_id": ""#), "{body}");
        assert!(r
            .headers
            .contains(&("Access-Control-Allow-Origin".into(), "*".into())));
        // A write carries its value as JSON text and its cost; an error outcome is the text.
        let id = "11111111-2222-4333-8444-555555555555";
        let offer =
            format!(r#"{{"method":"create_offer","channel_id":"{id}","offer":{{"a":[1]}}}}"#);
        h.body(conn, &post(), offer.as_bytes());
        let (_, op) = h.stored.pop().unwrap();
        assert_eq!(
            decode_call(&op),
            Some((
                Op::Offer,
                "11111111222243338444555555555555",
                offer.len(),
                r#"{"a": [1]}"#
            ))
        );
        h.stored_result(conn, &Outcome::NotFound.encode());
        let (_, r) = h.responded.pop().unwrap();
        assert_eq!((r.status, r.body), (400, b"channel_id not found".to_vec()));
        // Reads render what the store holds; an unreadable result is a 503.
        let get = format!(r#"{{"method":"get_candidates","channel_id":"{id}"}}"#);
        h.body(conn, &post(), get.as_bytes());
        let items = Outcome::Values(vec!["1".into(), r#"{"c": 2}"#.into()]);
        assert_eq!(Outcome::decode(&items.encode()), Some(items.clone()));
        h.stored_result(conn, &items.encode());
        let (_, r) = h.responded.pop().unwrap();
        assert_eq!(r.body, br#"{"items": [1, {"c": 2}]}"#.to_vec());
        h.body(conn, &post(), get.as_bytes());
        h.stored_result(conn, &[]);
        assert_eq!(h.responded.pop().unwrap().1.status, 503);
        // A request gone before its outcome gets nothing.
        h.body(conn, &post(), get.as_bytes());
        h.close(conn);
        h.stored_result(conn, &Outcome::Values(Vec::new()).encode());
        assert!(h.responded.is_empty());
        h.stored.clear();
        // Errors found before the store need no call.
        assert!(matches!(h.body(conn, &post(), b"[]"), Answer::Respond(_)));
        assert!(h.stored.is_empty());
    }
}
