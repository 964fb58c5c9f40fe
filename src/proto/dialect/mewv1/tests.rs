use super::*;

const CONN: &str = "0123456789abcdef0123456789abcdef";
const SIGNED: &str = "1b2c3d";

use crate::proto::dialect::testing::SioHarness;
use crate::proto::dialect::{Env, IceServers};

/// Records whom ICE servers were asked for.
struct Ice(Vec<String>);

impl Env for Ice {
    fn ice_servers(&mut self, user: &str) -> IceServers {
        self.0.push(user.to_string());
        IceServers {
            servers: json!([{"url": "stun:s", "urls": "stun:s"}]),
            token: Value::Null,
        }
    }
}

fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn initiator_query() -> Vec<(String, String)> {
    q(&[
        ("stage", "initiator"),
        ("signed", SIGNED),
        ("message", "feedface"),
        ("connId", CONN),
    ])
}

fn receiver_query() -> Vec<(String, String)> {
    q(&[("stage", "receiver"), ("connId", CONN), ("signed", SIGNED)])
}

struct T {
    d: MewV1,
    h: SioHarness<Ice>,
}

impl T {
    fn new() -> T {
        T {
            d: MewV1::new(MewV1Config::default()),
            h: SioHarness::new(Ice(Vec::new())),
        }
    }
    fn connect(&mut self, now: u64, sid: &str, query: &[(String, String)]) -> Vec<Action> {
        self.h.now = now;
        self.h.connect(&mut self.d, sid, query)
    }
    fn event(&mut self, sid: &str, event: &str, args: Vec<Value>) -> Vec<Action> {
        self.h.now = 0;
        self.h.event(&mut self.d, sid, event, &args)
    }
    fn tick(&mut self, now: u64) -> Vec<Action> {
        self.h.timeout(&mut self.d, now)
    }
    fn paired() -> T {
        let mut t = T::new();
        t.connect(0, "I", &initiator_query());
        t.connect(0, "R", &receiver_query());
        t.event(
            "R",
            "signature",
            vec![json!({"signed": SIGNED, "connId": CONN})],
        );
        t
    }
}

fn emit_(to: To, event: &str, args: Vec<Value>) -> Action {
    Action::Emit {
        to,
        event: event.into(),
        args: args.iter().map(Raw::from_value).collect(),
    }
}

fn to(sid: &str) -> To {
    To::Socket(sid.into())
}

fn room() -> To {
    To::Room(CONN.into())
}

fn except(sid: &str) -> To {
    To::RoomExcept {
        room: CONN.into(),
        except: sid.into(),
    }
}

fn join(sid: &str) -> Action {
    Action::Join {
        sid: sid.into(),
        room: CONN.into(),
    }
}

fn invalid(sid: &str) -> Action {
    Action::Error {
        sid: sid.into(),
        data: json!("invalid signal or paramaters"),
    }
}

#[test]
fn initiator_joins_its_room_silently_and_receiver_gets_the_handshake() {
    let mut t = T::new();
    assert_eq!(t.connect(0, "I", &initiator_query()), vec![join("I")]);
    assert_eq!(t.d.pairs(), 1);
    assert_eq!(
        t.connect(5, "R", &receiver_query()),
        vec![emit_(
            to("R"),
            "handshake",
            vec![json!({"toSign": "feedface"})]
        )]
    );
}

#[test]
fn receiver_without_an_initiator_gets_invalid_connection() {
    let mut t = T::new();
    assert_eq!(
        t.connect(0, "R", &receiver_query()),
        vec![emit_(to("R"), "InvalidConnection", vec![])]
    );
    // Its signature meets no entry either.
    assert_eq!(
        t.event(
            "R",
            "signature",
            vec![json!({"signed": SIGNED, "connId": CONN})]
        ),
        vec![emit_(to("R"), "InvalidConnection", vec![])]
    );
}

#[test]
fn bad_stage_or_conn_id_is_disconnected() {
    let mut t = T::new();
    let bad = [
        q(&[("connId", CONN)]),
        q(&[("stage", "observer"), ("connId", CONN)]),
        q(&[("stage", "initiator")]),
        q(&[("stage", "initiator"), ("connId", "ghijkl")]),
        q(&[("stage", "receiver"), ("connId", "")]),
        q(&[
            ("stage", "receiver"),
            ("connId", &"a".repeat(MAX_CONN_ID_LEN + 1)),
        ]),
    ];
    for query in bad {
        assert_eq!(
            t.connect(0, "X", &query),
            vec![Action::Disconnect { sid: "X".into() }],
            "{query:?}"
        );
    }
    assert_eq!(t.d.pairs(), 0);
    // A socket that was turned away has no handlers: its events are ignored.
    assert_eq!(
        t.event("X", "offerSignal", vec![json!({"connId": CONN})]),
        vec![]
    );
}

#[test]
fn signature_confirms_to_the_initiator_with_the_version() {
    let mut t = T::new();
    t.connect(0, "I", &initiator_query());
    t.connect(0, "R", &receiver_query());
    let version = json!({"iv": {"type": "Buffer", "data": [1, 2]}, "ciphertext": [3, 4]});
    let out = t.event(
        "R",
        "signature",
        vec![json!({"signed": SIGNED, "connId": CONN, "version": version})],
    );
    assert_eq!(
        out,
        vec![
            join("R"),
            emit_(
                except("R"),
                "confirmation",
                vec![json!({"connId": CONN, "version": version})]
            )
        ]
    );
    // Without `version` the field is absent.
    let mut t = T::new();
    t.connect(0, "I", &initiator_query());
    let out = t.event(
        "R2",
        "signature",
        vec![json!({"signed": SIGNED, "connId": CONN})],
    );
    assert_eq!(out, vec![], "a socket that never connected has no handlers");
    t.connect(0, "R2", &receiver_query());
    let out = t.event(
        "R2",
        "signature",
        vec![json!({"signed": SIGNED, "connId": CONN})],
    );
    assert_eq!(
        out[1],
        emit_(except("R2"), "confirmation", vec![json!({"connId": CONN})])
    );
}

#[test]
fn wrong_or_missing_signed_fails_confirmation() {
    let mut t = T::new();
    t.connect(0, "I", &initiator_query());
    t.connect(0, "R", &receiver_query());
    for data in [
        json!({"signed": "other", "connId": CONN}),
        json!({"signed": SIGNED.to_uppercase(), "connId": CONN}),
        json!({"connId": CONN}),
        json!({"signed": 7, "connId": CONN}),
    ] {
        assert_eq!(
            t.event("R", "signature", vec![data]),
            vec![emit_(to("R"), "confirmationFailed", vec![])]
        );
    }
}

#[test]
fn a_second_receiver_makes_the_members_hear_busy() {
    let mut t = T::paired();
    t.connect(0, "R2", &receiver_query());
    let out = t.event(
        "R2",
        "signature",
        vec![json!({"signed": SIGNED, "connId": CONN})],
    );
    assert_eq!(
        out,
        vec![
            join("R2"),
            emit_(except("R2"), "confirmationFailedBusy", vec![])
        ]
    );
}

#[test]
fn offer_and_answer_go_to_the_whole_room_in_either_byte_form() {
    let mut t = T::paired();
    let buffer_form = json!({"iv": {"type": "Buffer", "data": [1]}, "ephemPublicKey": {"type": "Buffer", "data": [2]}, "ciphertext": {"type": "Buffer", "data": [3]}, "mac": {"type": "Buffer", "data": [4]}});
    let out = t.event(
        "I",
        "offerSignal",
        vec![json!({"data": buffer_form, "connId": CONN, "options": [{"urls": "stun:x"}]})],
    );
    assert_eq!(
        out,
        vec![emit_(room(), "offer", vec![json!({"data": buffer_form})])]
    );
    // The legacy Android app writes byte arrays as plain arrays.
    let array_form = json!({"iv": [1], "ephemPublicKey": [2], "ciphertext": [3], "mac": [4]});
    let out = t.event(
        "R",
        "answerSignal",
        vec![json!({"data": array_form, "connId": CONN})],
    );
    assert_eq!(
        out,
        vec![emit_(room(), "answer", vec![json!({"data": array_form})])]
    );
    let out = t.event(
        "R",
        "answerSignal",
        vec![json!({"data": 1, "connId": CONN, "options": {"a": 1}})],
    );
    assert_eq!(
        out,
        vec![emit_(
            room(),
            "answer",
            vec![json!({"data": 1, "options": {"a": 1}})]
        )]
    );
}

#[test]
fn signals_and_the_version_keep_their_bytes() {
    let mut t = T::new();
    t.connect(0, "I", &initiator_query());
    t.connect(0, "R", &receiver_query());
    let sent = format!(r#"[{{"signed":"{SIGNED}","connId":"{CONN}","version": "1.0.0" }}]"#);
    let out = t.h.event_text(&mut t.d, "R", "signature", &sent);
    let confirmation = out.iter().find_map(|a| match a {
        Action::Emit { event, args, .. } if event == "confirmation" => Some(args[0].get()),
        _ => None,
    });
    assert_eq!(
        confirmation,
        Some(format!(r#"{{"connId":"{CONN}","version":"1.0.0"}}"#).as_str())
    );
    let data = r#"{ "ciphertext": {"type":"Buffer","data":[1, 2]}, "iv":"\u0041", "n": 1.0 }"#;
    for (event, out_event, extra) in [
        ("offerSignal", "offer", ""),
        ("answerSignal", "answer", r#","options":{"b":1,"a":2}"#),
    ] {
        let sent = format!(r#"[{{"data":{data},"connId":"{CONN}"{extra}}}]"#);
        let out = t.h.event_text(&mut t.d, "I", event, &sent);
        let [Action::Emit { event, args, .. }] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(event, out_event);
        assert_eq!(args[0].get(), format!(r#"{{"data":{data}{extra}}}"#));
    }
}

#[test]
fn events_without_their_own_conn_id_or_unknown_get_the_error_packet() {
    let mut t = T::paired();
    let cases = [
        ("offerSignal", vec![json!({"data": {}})]),
        ("offerSignal", vec![json!({"data": {}, "connId": 5})]),
        ("answerSignal", vec![]),
        ("answerSignal", vec![json!("text")]),
        (
            "tryTurn",
            vec![json!({"connId": "ffffffffffffffffffffffffffffffff"})],
        ),
        ("signature", vec![json!({"signed": SIGNED})]),
        ("handshake", vec![json!({"connId": CONN})]),
        ("whatever", vec![]),
    ];
    for (event, args) in cases {
        assert_eq!(
            t.event("I", event, args.clone()),
            vec![invalid("I")],
            "{event} {args:?}"
        );
    }
    // The pair is untouched.
    assert_eq!(t.d.pairs(), 1);
}

#[test]
fn try_turn_tells_the_room_and_hands_out_the_ice_servers() {
    let mut t = T::paired();
    let out = t.event("I", "tryTurn", vec![json!({"connId": CONN, "cont": true})]);
    assert_eq!(
        out,
        vec![
            emit_(room(), "attemptingTurn", vec![json!({"data": null})]),
            emit_(
                room(),
                "turnToken",
                vec![json!({"data": [{"url": "stun:s", "urls": "stun:s"}]})]
            ),
        ]
    );
    assert_eq!(t.h.env.0, vec![CONN.to_string()]);
    t.event("R", "tryTurn", vec![json!({"connId": CONN})]);
    assert_eq!(t.d.turn_state(CONN), Some((true, 2)));
}

#[test]
fn try_turn_after_the_entry_is_gone_only_announces() {
    let mut t = T::paired();
    t.tick(120_000);
    let out = t.event("I", "tryTurn", vec![json!({"connId": CONN})]);
    assert_eq!(
        out,
        vec![emit_(room(), "attemptingTurn", vec![json!({"data": null})])]
    );
    assert!(t.h.env.0.is_empty());
}

#[test]
fn rtc_connected_ends_the_pair_whatever_its_argument() {
    for args in [vec![json!(CONN)], vec![json!("a1b2c3private")], vec![]] {
        let mut t = T::paired();
        let out = t.event("I", "rtcConnected", args);
        assert_eq!(
            out,
            vec![Action::Leave {
                sid: "I".into(),
                room: CONN.into()
            }]
        );
        assert_eq!(t.d.pairs(), 0);
        assert_eq!(t.d.poll_timeout(), None);
        // The other side's rtcConnected is harmless.
        assert_eq!(t.event("R", "rtcConnected", vec![]).len(), 1);
        // A receiver arriving now finds nothing.
        assert_eq!(
            t.connect(0, "R3", &receiver_query()),
            vec![emit_(to("R3"), "InvalidConnection", vec![])]
        );
    }
}

#[test]
fn rtc_connected_from_a_non_member_keeps_the_pair() {
    let mut t = T::paired();
    t.connect(0, "R2", &receiver_query());
    t.event("R2", "rtcConnected", vec![]);
    assert_eq!(t.d.pairs(), 1);
}

#[test]
fn pairs_expire_120_seconds_after_the_initiator_connected() {
    let mut t = T::new();
    t.connect(1_000, "I", &initiator_query());
    assert_eq!(t.d.poll_timeout(), Some(121_000));
    let mut out = t.tick(120_999);
    assert_eq!(t.d.pairs(), 1);
    out.extend(t.tick(121_000));
    assert!(out.is_empty(), "expiry sends nothing");
    assert_eq!(t.d.pairs(), 0);
    assert_eq!(t.d.poll_timeout(), None);
    assert_eq!(
        t.connect(121_001, "R", &receiver_query()),
        vec![emit_(to("R"), "InvalidConnection", vec![])]
    );
}

#[test]
fn a_new_initiator_overwrites_the_entry_and_rearms_the_expiry() {
    let mut t = T::new();
    t.connect(0, "I", &initiator_query());
    let other = q(&[
        ("stage", "initiator"),
        ("signed", "99"),
        ("message", "m2"),
        ("connId", CONN),
    ]);
    t.connect(60_000, "I2", &other);
    assert_eq!(t.d.pairs(), 1);
    assert_eq!(t.d.poll_timeout(), Some(180_000));
    t.tick(120_000);
    assert_eq!(
        t.d.pairs(),
        1,
        "the first deadline was dropped with its entry"
    );
    assert_eq!(
        t.connect(0, "R", &receiver_query()),
        vec![emit_(to("R"), "handshake", vec![json!({"toSign": "m2"})])]
    );
    // The stored signed is the new initiator's.
    assert_eq!(
        t.event(
            "R",
            "signature",
            vec![json!({"signed": SIGNED, "connId": CONN})]
        ),
        vec![emit_(to("R"), "confirmationFailed", vec![])]
    );
}

#[test]
fn the_pair_table_is_bounded() {
    let mut t = T {
        d: MewV1::new(MewV1Config {
            pair_ttl_ms: 1000,
            max_pairs: 1,
        }),
        h: SioHarness::new(Ice(Vec::new())),
    };
    t.connect(0, "I", &initiator_query());
    let other = q(&[("stage", "initiator"), ("connId", "ab")]);
    assert_eq!(
        t.connect(0, "I2", &other),
        vec![Action::Disconnect { sid: "I2".into() }]
    );
    // Replacing the existing entry is still allowed.
    assert_eq!(t.connect(0, "I3", &initiator_query()), vec![join("I3")]);
}

#[test]
fn disconnect_forgets_the_socket_but_keeps_the_entry_until_expiry() {
    let mut t = T::paired();
    t.h.disconnect(&mut t.d, "I");
    assert_eq!(t.d.pairs(), 1);
    assert_eq!(
        t.event("I", "offerSignal", vec![json!({"connId": CONN})]),
        vec![]
    );
}

#[test]
fn handshake_without_message_sends_an_empty_object() {
    let mut t = T::new();
    t.connect(0, "I", &q(&[("stage", "initiator"), ("connId", CONN)]));
    assert_eq!(
        t.connect(0, "R", &receiver_query()),
        vec![emit_(to("R"), "handshake", vec![json!({})])]
    );
}
