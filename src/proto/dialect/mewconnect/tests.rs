use super::*;

const CID: &str = "04a7c3b2d1e0f9a8b7c6d5e4f3a2b1c0";
const SIGNED: &str = "1b93f0aa";

fn r(key: u32) -> Handle {
    Handle::of(key, 1)
}

fn params(role: Role, conn_id: &str, signed: &str) -> Params {
    Params {
        role,
        conn_id: conn_id.into(),
        signed: signed.into(),
    }
}

fn text(o: &Outgoing) -> Json {
    serde_json::from_slice(&o.payload).unwrap()
}

fn env() -> FixedEnv {
    FixedEnv {
        ice: json!([{"urls": "stun:stun.l.google.com:19302"},
                    {"url": "turn:t.example:3478", "username": "u", "credential": "p"}]),
        ids: 0,
    }
}

const OPTS: Options = Options {
    error_frames: true,
    idle_timeout: Some(Duration::from_secs(600)),
    max_lifetime: Some(Duration::from_secs(7200)),
};

/// An initiator on 1 and a receiver on 2, with the arrival signals drained.
fn paired() -> Pairs {
    let mut t = Pairs::new();
    let mut out = Vec::new();
    t.admit(
        params(Role::Initiator, CID, SIGNED),
        r(1),
        "a1".into(),
        Tick(0),
        &mut out,
    )
    .unwrap();
    t.admit(
        params(Role::Receiver, CID, SIGNED),
        r(2),
        "a2".into(),
        Tick(0),
        &mut out,
    )
    .unwrap();
    t
}

fn send(t: &mut Pairs, from: u32, frame: &str) -> Vec<Outgoing> {
    let mut out = Vec::new();
    t.message(
        r(from),
        Tick(5),
        Kind::Text,
        frame.as_bytes(),
        &OPTS,
        &mut env(),
        &mut out,
    );
    out
}

fn offer_data() -> Json {
    let b = |n: usize| json!({"type": "Buffer", "data": vec![7; n]});
    json!({"data": {"iv": b(16), "ephemPublicKey": b(65), "ciphertext": b(40), "mac": b(32)},
           "connId": CID})
}

#[test]
fn params_follow_the_lenient_rules_in_order() {
    let q = format!("role=initiator&connId={CID}&signed={SIGNED}");
    assert_eq!(
        parse_params(Some(&q)),
        Ok(params(Role::Initiator, CID, SIGNED))
    );
    assert_eq!(parse_params(None), Err(ParamError::Role));
    assert_eq!(parse_params(Some("role=boss")), Err(ParamError::Role));
    assert_eq!(parse_params(Some("role=receiver")), Err(ParamError::ConnId));
    assert_eq!(
        parse_params(Some("role=receiver&connId=abc&signed=1")),
        Err(ParamError::ConnId)
    );
    // 32 characters with one hex digit somewhere is enough (unanchored test).
    let odd = "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzza";
    assert!(parse_params(Some(&format!("role=receiver&connId={odd}&signed=1"))).is_ok());
    let no_hex = "z".repeat(32);
    assert_eq!(
        parse_params(Some(&format!("role=receiver&connId={no_hex}&signed=1"))),
        Err(ParamError::ConnId)
    );
    assert_eq!(
        parse_params(Some(&format!("role=receiver&connId={CID}"))),
        Err(ParamError::Signed)
    );
    assert_eq!(
        parse_params(Some(&format!("role=receiver&connId={CID}&signed=xyz"))),
        Err(ParamError::Signed)
    );
    // Percent-encoded values decode; the first of repeated parameters counts.
    let q = format!("role=%72eceiver&role=initiator&connId={CID}&signed=%31");
    assert_eq!(parse_params(Some(&q)), Ok(params(Role::Receiver, CID, "1")));
}

#[test]
fn admission_rules() {
    let mut t = Pairs::new();
    let mut out = Vec::new();
    let i = params(Role::Initiator, CID, SIGNED);
    let rcv = params(Role::Receiver, CID, SIGNED);
    assert_eq!(t.check(&rcv), Err(Refusal::NoPair));
    t.admit(i.clone(), r(1), "a".into(), Tick(0), &mut out)
        .unwrap();
    assert_eq!(text(&out[0])["signal"], "initiated");
    assert_eq!(t.check(&i), Err(Refusal::ConnIdExists));
    assert_eq!(
        t.check(&params(Role::Receiver, CID, "1B93F0AA")),
        Err(Refusal::BadSigned)
    );
    out.clear();
    t.admit(rcv.clone(), r(2), "b".into(), Tick(0), &mut out)
        .unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].to, r(1));
    assert_eq!(
        text(&out[0]),
        json!({"signal":"confirmation","data":"","message":"Receiver Connected. Please Create WebRTC Offer."})
    );
    assert_eq!(out[1].to, r(2));
    assert_eq!(
        text(&out[1]),
        json!({"signal":"confirmation","data":"","message":"Connected. Awaiting WebRTC Offer Details."})
    );
    assert_eq!(t.check(&rcv), Err(Refusal::PairFull));
    assert_eq!(
        t.admit(rcv.clone(), r(3), "c".into(), Tick(0), &mut out),
        Err(Refusal::PairFull)
    );
    // The initiator leaves: the receiver hears of it; the pair stays with the receiver.
    out.clear();
    t.leave(r(1), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(
        text(&out[0]),
        json!({"signal":"disconnected","data":"","message":"initiator has disconnected"})
    );
    assert_eq!(t.check(&rcv), Err(Refusal::InitiatorGone));
    assert_eq!(t.check(&i), Err(Refusal::ConnIdExists));
    out.clear();
    t.leave(r(2), &mut out);
    assert!(out.is_empty());
    assert_eq!((t.len(), t.pairs()), (0, 0));
    assert_eq!(t.check(&i), Ok(()));
}

#[test]
fn receiver_leaving_tells_the_initiator() {
    let mut t = paired();
    let mut out = Vec::new();
    t.leave(r(2), &mut out);
    assert_eq!(out[0].to, r(1));
    assert_eq!(text(&out[0])["message"], "receiver has disconnected");
    // A new receiver with the right signature may join the waiting initiator.
    assert_eq!(t.check(&params(Role::Receiver, CID, SIGNED)), Ok(()));
}

#[test]
fn offer_and_answer_are_relayed_verbatim() {
    let mut t = paired();
    let data = offer_data().to_string();
    let out = send(
        &mut t,
        1,
        &format!(r#"{{"action":"offersignal","data":{data}}}"#),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, r(2));
    let expect = format!(
        r#"{{"signal":"offer","data":{data},"message":"Initiator sent WebRTC Offer. Please respond."}}"#
    );
    assert_eq!(String::from_utf8(out[0].payload.clone()).unwrap(), expect);
    // Whitespace and field order inside data are kept as sent.
    let data2 = offer_data().to_string().replacen('{', "{ \"z\" : [ ] ,", 1);
    let out = send(
        &mut t,
        2,
        &format!(r#"{{"data":{data2},"action":"answersignal"}}"#),
    );
    assert_eq!(out[0].to, r(1));
    assert_eq!(
        String::from_utf8(out[0].payload.clone()).unwrap(),
        format!(r#"{{"signal":"answer","data":{data2},"message":"Receiver sent WebRTC Answer."}}"#)
    );
    // No role check: a receiver's offer goes to the receiver (itself).
    let out = send(
        &mut t,
        2,
        &format!(r#"{{"action":"offersignal","data":{data}}}"#),
    );
    assert_eq!(out[0].to, r(2));
}

#[test]
fn invalid_signal_payloads_are_not_relayed() {
    let mut t = paired();
    let mut bad = vec![json!({}), json!("invalid"), json!({"data": "invalid"})];
    for (field, len) in [("iv", 15), ("ephemPublicKey", 64), ("mac", 33)] {
        let mut d = offer_data();
        d["data"][field]["data"] = json!(vec![1; len]);
        bad.push(d);
    }
    let mut d = offer_data();
    d["data"]["ciphertext"]["type"] = json!(3);
    bad.push(d);
    let mut d = offer_data();
    d["data"].as_object_mut().unwrap().remove("mac");
    bad.push(d);
    let mut d = offer_data();
    d["connId"] = json!("short");
    bad.push(d);
    let mut d = offer_data();
    d["options"] = json!(5);
    bad.push(d);
    for data in bad {
        let out = send(
            &mut t,
            1,
            &format!(r#"{{"action":"offersignal","data":{data}}}"#),
        );
        assert_eq!(out.len(), 1, "{data}");
        assert_eq!(out[0].to, r(1));
        let v = text(&out[0]);
        assert_eq!(v["message"], "Internal server error");
        assert_eq!(v["connectionId"], "a1");
        assert_eq!(v["requestId"], "req1");
    }
    // Without data at all, too.
    let out = send(&mut t, 1, r#"{"action":"answersignal"}"#);
    assert_eq!(text(&out[0])["message"], "Internal server error");
    // Options as string, object or array, and extra fields, are fine.
    for opt in [json!("x"), json!({"a": 1}), json!([1])] {
        let mut d = offer_data();
        d["options"] = opt;
        d["extra"] = json!(true);
        let out = send(
            &mut t,
            1,
            &format!(r#"{{"action":"offersignal","data":{d}}}"#),
        );
        assert_eq!(text(&out[0])["signal"], "offer");
    }
}

#[test]
fn offer_without_receiver_is_dropped_with_an_error_frame() {
    let mut t = Pairs::new();
    let mut out = Vec::new();
    t.admit(
        params(Role::Initiator, CID, SIGNED),
        r(1),
        "a1".into(),
        Tick(0),
        &mut out,
    )
    .unwrap();
    let data = offer_data();
    let out = send(
        &mut t,
        1,
        &format!(r#"{{"action":"offersignal","data":{data}}}"#),
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, r(1));
    assert_eq!(text(&out[0])["message"], "Internal server error");
}

#[test]
fn unroutable_frames_get_forbidden() {
    let mut t = paired();
    for f in [
        "nope",
        "[\"ping\"]",
        "{\"action\":5}",
        "{}",
        "{\"action\":\"$connect\"}",
        "{\"action\":\"PING\"}",
    ] {
        let out = send(&mut t, 1, f);
        assert_eq!(out.len(), 1, "{f}");
        assert_eq!(text(&out[0])["message"], "Forbidden", "{f}");
    }
    let mut out = Vec::new();
    t.message(
        r(1),
        Tick(1),
        Kind::Binary,
        b"{\"action\":\"ping\"}",
        &OPTS,
        &mut env(),
        &mut out,
    );
    assert_eq!(text(&out[0])["message"], "Forbidden");
    // Switched off: nothing at all.
    let quiet = Options {
        error_frames: false,
        ..OPTS
    };
    let mut out = Vec::new();
    t.message(
        r(1),
        Tick(1),
        Kind::Text,
        b"nope",
        &quiet,
        &mut env(),
        &mut out,
    );
    assert!(out.is_empty());
}

#[test]
fn ping_rtcconnected_and_tryturn() {
    let mut t = paired();
    let out = send(&mut t, 2, r#"{"action":"ping"}"#);
    assert_eq!(out[0].to, r(2));
    assert_eq!(
        text(&out[0]),
        json!({"signal":"pong","data":"","message":"pong"})
    );
    let out = send(&mut t, 1, r#"{"action":"rtcconnected","data":"abcd"}"#);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to, r(1));
    assert_eq!(
        text(&out[0]),
        json!({"signal":"disconnect","message":"WebRTC Connection Established. Ready for disconnect."})
    );
    // Still paired after rtcconnected.
    assert_eq!(t.pairs(), 1);
    let out = send(&mut t, 2, r#"{"action":"tryturn","data":{"connId":"x"}}"#);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].to, r(1));
    let token = text(&out[0]);
    assert_eq!(token["signal"], "turntoken");
    assert_eq!(token["message"], "TURN server credentials created");
    let servers = &token["data"]["iceServers"];
    assert_eq!(servers.as_array().unwrap().len(), 2);
    for s in servers.as_array().unwrap() {
        assert!(s["url"].is_string() && !s["urls"].is_null(), "{s}");
    }
    assert_eq!(token["data"]["ttl"], TURN_TTL);
    assert_eq!(token["data"]["username"], "u");
    assert_eq!(token["data"]["password"], "p");
    assert_eq!(out[1].to, r(2));
    let turn = text(&out[1]);
    assert_eq!(turn["signal"], "attemptingturn");
    assert_eq!(&turn["data"]["data"], servers);
}

#[test]
fn url_and_urls_are_both_filled() {
    let list = json!([
        {"urls": ["stun:a:1", "stun:b:2"]},
        {"url": "stun:c:3"},
        {"url": "stun:d:4", "urls": "stun:d:4"},
        {"username": "no url"},
        "not an object"
    ]);
    assert_eq!(
        with_url_and_urls(list),
        json!([
            {"url": "stun:a:1", "urls": ["stun:a:1", "stun:b:2"]},
            {"url": "stun:c:3", "urls": "stun:c:3"},
            {"url": "stun:d:4", "urls": "stun:d:4"}
        ])
    );
    assert_eq!(with_url_and_urls(json!({})), json!([]));
}

#[test]
fn deadlines() {
    let mut t = Pairs::new();
    let mut out = Vec::new();
    t.admit(
        params(Role::Initiator, CID, SIGNED),
        r(1),
        "a".into(),
        Tick(1000),
        &mut out,
    )
    .unwrap();
    let o = Options {
        error_frames: true,
        idle_timeout: Some(Duration::from_secs(10)),
        max_lifetime: Some(Duration::from_secs(25)),
    };
    assert_eq!(t.due(r(1), Tick(1000), &o), Due::At(Tick(11_000)));
    assert_eq!(t.due(r(1), Tick(11_000), &o), Due::Close("idle timeout"));
    // A message moves the idle deadline, not the lifetime cap.
    t.message(
        r(1),
        Tick(9000),
        Kind::Text,
        br#"{"action":"ping"}"#,
        &o,
        &mut env(),
        &mut out,
    );
    assert_eq!(t.due(r(1), Tick(11_000), &o), Due::At(Tick(19_000)));
    t.message(
        r(1),
        Tick(18_000),
        Kind::Text,
        br#"{"action":"ping"}"#,
        &o,
        &mut env(),
        &mut out,
    );
    assert_eq!(t.due(r(1), Tick(20_000), &o), Due::At(Tick(26_000)));
    assert_eq!(
        t.due(r(1), Tick(26_000), &o),
        Due::Close("connection lifetime limit reached")
    );
    let off = Options {
        error_frames: true,
        idle_timeout: None,
        max_lifetime: None,
    };
    assert_eq!(t.due(r(1), Tick(26_000), &off), Due::Never);
    assert_eq!(t.due(r(9), Tick(0), &o), Due::Never);
}

#[test]
fn one_pass_signal_check_agrees_with_the_tree_check() {
    let good = offer_data().to_string();
    let mut cases = vec![good.clone()];
    // Every field replaced by values of every kind.
    let kinds = [
        "null",
        "true",
        "3",
        "-1.5",
        "\"s\"",
        "[]",
        "[1,2]",
        "{}",
        r#"{"a":[1]}"#,
    ];
    let fields = [
        "data",
        "connId",
        "options",
        "iv",
        "ephemPublicKey",
        "ciphertext",
        "mac",
        "type",
    ];
    for f in fields {
        for k in kinds {
            let mut v = offer_data();
            match f {
                "data" | "connId" | "options" => v[f] = serde_json::from_str(k).unwrap(),
                "type" => v["data"]["iv"]["type"] = serde_json::from_str(k).unwrap(),
                _ => v["data"][f] = serde_json::from_str(k).unwrap(),
            }
            cases.push(v.to_string());
        }
    }
    // Lengths around the fixed ones, a 32-unit connId made of astral characters (16 of
    // them), duplicate keys (the last counts), escaped keys, and not JSON at all.
    for n in [0, 15, 16, 17, 64, 65, 66] {
        let mut v = offer_data();
        v["data"]["iv"]["data"] = json!(vec![1; n]);
        v["data"]["ephemPublicKey"]["data"] = json!(vec![1; n]);
        cases.push(v.to_string());
    }
    let mut v = offer_data();
    v["connId"] = json!("\u{1F600}".repeat(16));
    cases.push(v.to_string());
    cases.push(good.replacen("{", r#"{"connId":5,"#, 1));
    cases.push(good.replacen("{", r#"{"data":1,"#, 1));
    cases.push(good.replacen(r#""connId""#, r#""connId":1,"connId""#, 1));
    cases.push(good.replacen(r#""mac""#, r#""\u006dac""#, 1));
    cases.push(good.replacen(r#""iv""#, r#""iv":{"type":"B","data":[]},"iv""#, 1));
    cases.push(good.replacen("}", "", 1));
    cases.push(format!("{good} x"));
    cases.push("[1]".into());
    let tree = valid_signal_data_by_tree;
    for c in &cases {
        assert_eq!(valid_signal_data(c), tree(c), "{c}");
    }
    assert!(cases.iter().filter(|c| tree(c)).count() >= 5);
    assert!(cases.iter().filter(|c| !tree(c)).count() >= 40);
}

// ── through the dialect contract ───────────────────────────────────────────────────────────

mod contract {
    use super::{CID, SIGNED};
    use crate::proto::dialect::mewconnect::{MewConnect, Options, METRICS};
    use crate::proto::dialect::testing::{upgrade, Harness, StaticIce};
    use crate::proto::dialect::{Answer, Dialect, Placement};
    use serde_json::{json, Value};
    use std::time::Duration;

    fn dialect() -> Harness<MewConnect> {
        Harness::new(MewConnect::new(Options {
            error_frames: true,
            idle_timeout: Some(Duration::from_secs(600)),
            max_lifetime: Some(Duration::from_secs(7200)),
        }))
        .with_env(StaticIce(json!([{"urls": "stun:s"}])))
    }

    fn target(role: &str) -> String {
        format!("/?role={role}&connId={CID}&signed={SIGNED}")
    }

    fn signals(h: &mut Harness<MewConnect>) -> Vec<(u64, String)> {
        h.take_sent()
            .into_iter()
            .map(|(to, _, p)| {
                let v: Value = serde_json::from_slice(&p).unwrap();
                (
                    to.raw(),
                    v["signal"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn pairs_by_conn_id_refuses_at_the_upgrade_and_closes_idle_members() {
        let mut h = dialect();
        // Bad parameters are answered where the request was read.
        let bad = h.place(&upgrade("/?role=nobody"));
        assert!(matches!(bad, Placement::Answer(r) if r.status == 500));
        assert!(matches!(
            h.place(&upgrade(&target("initiator"))),
            Placement::Key(k) if *k == *format!("mew/{CID}")
        ));
        // A receiver without an initiator is refused with the spec's 404 text.
        let (_, a) = h.request(&upgrade(&target("receiver")));
        assert!(
            matches!(&a, Answer::Respond(r) if r.status == 404
                && r.body == b"Failed to connect: Connection pair doesn't exist!"),
            "{a:?}"
        );
        let i = h.open(&target("initiator"));
        assert_eq!(signals(&mut h), vec![(i.raw(), "initiated".into())]);
        let (_, a) = h.request(&upgrade(&target("initiator")));
        assert!(matches!(&a, Answer::Respond(r) if r.status == 404));
        let r = h.open(&target("receiver"));
        assert_eq!(
            signals(&mut h),
            vec![
                (i.raw(), "confirmation".into()),
                (r.raw(), "confirmation".into())
            ]
        );
        h.text(i, r#"{"action":"tryturn"}"#);
        assert_eq!(
            signals(&mut h),
            vec![
                (i.raw(), "turntoken".into()),
                (r.raw(), "attemptingturn".into())
            ]
        );
        // The receiver stays silent for 10 minutes: it is closed (1001), the initiator told.
        h.advance(300_000);
        h.text(i, r#"{"action":"ping"}"#);
        signals(&mut h);
        h.advance(300_000);
        let closed = h.take_closed();
        assert_eq!(closed, vec![(r, 1001, "idle timeout".to_string())]);
        h.close(r);
        assert_eq!(signals(&mut h), vec![(i.raw(), "disconnected".into())]);
        assert_eq!(h.d.gauge(), 1);
        // One pair made; two upgrades refused: a second initiator for the connId, and a
        // receiver before any initiator.
        let mut m = [0; 25];
        h.d.metrics(&mut m);
        assert_eq!(
            &m[19..],
            [1, 1, 1, 0, 0, 0],
            "pairings, then refusals by reason"
        );
        assert_eq!(m[..18].iter().sum::<u64>(), 1, "one pairing time");
        let slots: usize = METRICS.iter().map(|m| m.slots()).sum();
        assert_eq!(slots, m.len());
    }
}
