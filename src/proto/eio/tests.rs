use super::packet::*;
use super::*;
use crate::proto::dialect::sio::Raw;
use crate::proto::dialect::{Handle, NoEnv, Output, Outputs, Seeded};
use crate::proto::fuzzing::eio_session::OneApp;
use crate::proto::http::Response;
use serde_json::json;
use std::collections::HashSet;

// ── framing ────────────────────────────────────────────────────────────────────────────────

#[test]
fn utf16_lengths_count_code_units() {
    assert_eq!(utf16_len(""), 0);
    assert_eq!(utf16_len("abc"), 3);
    assert_eq!(utf16_len("é"), 1); // 2 UTF-8 bytes, 1 unit
    assert_eq!(utf16_len("中文"), 2); // 6 bytes, 2 units
    assert_eq!(utf16_len("😀"), 2); // astral: 4 bytes, a surrogate pair
    assert_eq!(utf16_len("a😀é"), 4);
}

#[test]
fn payload_encodes_lengths_in_utf16_units() {
    assert_eq!(encode_payload(["2", "40"]), "1:22:40");
    let p = r#"42["m","héllo 😀"]"#;
    // JavaScript: `42["m","héllo 😀"]`.length === 18 (é one unit, 😀 two).
    assert_eq!(utf16_len(p), 18);
    assert_eq!(encode_payload([p]), format!("18:{p}"));
    assert_eq!(p.len(), 21, "UTF-8 bytes: a different number");
}

#[test]
fn payload_decodes_non_ascii_and_astral_text() {
    let packets = [
        r#"42["m","héllo 😀"]"#,
        "2",
        r#"42["中文",{"k":"𝄞"}]"#,
        "3probe",
    ];
    let body = encode_payload(packets);
    assert_eq!(decode_payload(&body).unwrap(), packets.to_vec());
    // What the real client sent for `emit("m", "😀")`.
    assert_eq!(
        decode_payload(r#"12:42["m","😀"]"#).unwrap(),
        vec![r#"42["m","😀"]"#]
    );
}

#[test]
fn payload_rejects_bad_framing() {
    for bad in [
        "",              // empty
        "2",             // no colon
        ":2",            // no length
        "x:2",           // not a number
        "0:",            // zero length
        "3:22",          // runs past the end
        "1:😀",          // ends inside a surrogate pair
        "1:21",          // trailing garbage without a length
        "99999999999:2", // absurd length
    ] {
        assert!(decode_payload(bad).is_err(), "{bad:?} should not decode");
    }
}

#[test]
fn packets_decode_including_base64_binary() {
    assert_eq!(decode_packet("2probe"), Ok(Packet::Ping("probe".into())));
    assert_eq!(decode_packet("5"), Ok(Packet::Upgrade));
    assert_eq!(decode_packet("6"), Ok(Packet::Noop));
    assert_eq!(decode_packet("1"), Ok(Packet::Close));
    assert_eq!(decode_packet("4hi"), Ok(Packet::Message("hi".into())));
    assert_eq!(decode_packet("b4AQID"), Ok(Packet::Binary(vec![1, 2, 3])));
    assert_eq!(decode_packet("b4!!"), Err(DecodeError::BadBase64));
    assert_eq!(decode_packet("b2AQID"), Err(DecodeError::BadType));
    assert_eq!(decode_packet("9"), Err(DecodeError::BadType));
    assert_eq!(decode_packet(""), Err(DecodeError::Empty));
    // A base64 packet inside a text payload.
    let parts = decode_payload("6:b4AQID").unwrap();
    assert_eq!(decode_packet(parts[0]), Ok(Packet::Binary(vec![1, 2, 3])));
}

#[test]
fn socketio_packets_parse() {
    assert_eq!(
        decode_sio(r#"2["ev",{"a":1}]"#),
        Some(SioPacket::Event {
            nsp: "/".into(),
            id: None,
            event: "ev".into(),
            args: Raw::elements(r#"[{"a":1}]"#).unwrap()
        })
    );
    assert_eq!(
        decode_sio(r#"212["ev"]"#),
        Some(SioPacket::Event {
            nsp: "/".into(),
            id: Some(12),
            event: "ev".into(),
            args: vec![]
        })
    );
    assert_eq!(
        decode_sio(r#"2/chat,7["ev"]"#),
        Some(SioPacket::Event {
            nsp: "/chat".into(),
            id: Some(7),
            event: "ev".into(),
            args: vec![]
        })
    );
    assert_eq!(
        decode_sio("33[1]"),
        Some(SioPacket::Ack {
            nsp: "/".into(),
            id: 3,
            data: json!([1])
        })
    );
    assert_eq!(
        decode_sio("1"),
        Some(SioPacket::Disconnect { nsp: "/".into() })
    );
    assert_eq!(
        decode_sio("0/admin"),
        Some(SioPacket::Connect {
            nsp: "/admin".into()
        })
    );
    assert_eq!(
        decode_sio(r#"51-["ev",{"_placeholder":true,"num":0}]"#),
        Some(SioPacket::Binary { nsp: "/".into() })
    );
    assert_eq!(
        decode_sio(r#"4"oops""#),
        Some(SioPacket::Error {
            nsp: "/".into(),
            data: json!("oops")
        })
    );
    for bad in [
        "", "9", "2[", "2{}", "2[1]", "3[1]", "5-[]", "2x", "é", "😀[]", "2/é",
    ] {
        assert_eq!(decode_sio(bad), None, "{bad:?}");
    }
    assert_eq!(
        event_packet("alert", &[Raw::from_value(&json!("no"))]),
        r#"42["alert","no"]"#
    );
    // Arguments go out as they came in: spacing, key order, number forms, escapes.
    let sent = r#"2["relay", {"b":1, "a":[1.0,2e3]},"é"]"#;
    let Some(SioPacket::Event { event, args, .. }) = decode_sio(sent) else {
        panic!("an event")
    };
    assert_eq!(
        event_packet(&event, &args),
        r#"42["relay",{"b":1, "a":[1.0,2e3]},"é"]"#
    );
    // An event needs a name.
    assert_eq!(decode_sio("2[]"), None);
    assert_eq!(decode_sio("2[1]"), None);
    assert_eq!(decode_sio(r#"2["ev",]"#), None);
    assert_eq!(error_packet(&json!("bad")), r#"44"bad""#);
}

#[test]
fn open_packet_and_error_bodies() {
    let open = open_packet("AAbcdefghijklmnopqrs", true, 25000, 12000);
    let v: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
    assert!(open.starts_with('0'));
    assert_eq!(
        v,
        json!({"sid": "AAbcdefghijklmnopqrs", "upgrades": ["websocket"], "pingInterval": 25000, "pingTimeout": 12000})
    );
    assert_eq!(
        EioError::UnsupportedProtocolVersion.body(),
        r#"{"code":5,"message":"Unsupported protocol version"}"#
    );
    assert_eq!(
        EioError::UnknownSid.body(),
        r#"{"code":1,"message":"Session ID unknown"}"#
    );
    assert_eq!(EioError::BadRequest.status(), 400);
}

#[test]
fn session_ids_carry_their_locator() {
    for loc in [0, 1, 7, 63, 64, 4095, (1 << 24) - 1] {
        let sid = mint_sid(Locator(loc), &[0xAB; 16]);
        assert_eq!(sid.len(), 20);
        assert_eq!(sid_locator(&sid), Some(Locator(loc)));
    }
    assert_eq!(sid_locator("short"), None);
    assert_eq!(sid_locator("AA!AAAAAAAAAAAAAAAAA"), None);
}

#[test]
fn requests_and_handshake_kinds() {
    let r = parse_request(Some("EIO=3&transport=polling&t=N1&sid=abc")).unwrap();
    assert!(!r.websocket);
    assert_eq!(r.sid.as_deref(), Some("abc"));
    assert!(
        parse_request(Some("transport=websocket"))
            .unwrap()
            .websocket
    );
    assert_eq!(
        parse_request(Some("EIO=4&transport=polling")),
        Err(EioError::UnsupportedProtocolVersion)
    );
    assert_eq!(
        parse_request(Some("EIO=3&transport=flash")),
        Err(EioError::UnknownTransport)
    );
    assert_eq!(parse_request(None), Err(EioError::UnknownTransport));
    let q = parse_query(Some("stage=initiator&connId=ab%20c&x=a+b&bad=%ZZ"));
    assert_eq!(query_get(&q, "connId"), Some("ab c"));
    assert_eq!(query_get(&q, "x"), Some("a b"));
    assert_eq!(query_get(&q, "bad"), None);
    // Which dialect a handshake speaks is each dialect's claim (the registry asks them in
    // order: MewConnect v1, the test dialect when enabled, webRTWorkspaces).
    use crate::proto::dialect::{mewv1, workspaces};
    assert_eq!(mewv1::claims(&q), Some("mewv1/ab c".into()));
    let echo = parse_query(Some("echo=1"));
    assert_eq!(mewv1::claims(&echo), None);
    assert_eq!(echo::claims(&echo), Some("sio/echo".into()));
    assert_eq!(echo::claims(&[]), None);
    assert_eq!(workspaces::claims(&[]), Some("sio/workspaces".into()));
}

// ── sessions ───────────────────────────────────────────────────────────────────────────────

/// The dialects of the test table: 0 is not served, 1 is the test rooms dialect.
const UNSERVED: usize = 0;
const ECHO: usize = 1;

type EchoApps = OneApp<echo::Echo>;

fn echo_apps() -> EchoApps {
    OneApp {
        dialect: echo::Echo,
        ping_timeout_ms: 500,
    }
}

/// What the shell would do with the table's outputs: held polls and open WebSockets.
#[derive(Default)]
struct FakeWire {
    held: HashSet<Handle>,
    open: HashSet<Handle>,
    answers: Vec<(Handle, String)>,
    sent: Vec<(Handle, String)>,
    closed: Vec<Handle>,
}

/// The table with a context of its own: calls take the time, as the contract's `Cx` does.
struct T {
    s: Sessions<EchoApps>,
    out: Outputs,
    rand: Seeded,
}

impl T {
    fn cx<R>(&mut self, now: u64, f: impl FnOnce(&mut Sessions<EchoApps>, &mut Cx<'_>) -> R) -> R {
        let mut env = NoEnv;
        let mut cx = Cx {
            now,
            unix_ms: 0,
            here: Locator(0),
            rand: &mut self.rand,
            env: &mut env,
            out: &mut self.out,
            direct: None,
        };
        f(&mut self.s, &mut cx)
    }
    fn handshake_polling(
        &mut self,
        now: u64,
        sid: &str,
        app: usize,
        origin: Option<&str>,
    ) -> Result<Response, Refused> {
        self.cx(now, |s, cx| s.handshake_polling(cx, sid, app, &[], origin))
    }
    fn handshake_ws(
        &mut self,
        now: u64,
        sid: &str,
        app: usize,
        conn: Handle,
    ) -> Result<(), Refused> {
        self.cx(now, |s, cx| s.handshake_ws(cx, sid, app, &[], conn))
    }
    fn poll_get(
        &mut self,
        sid: &str,
        conn: Handle,
        origin: Option<&str>,
    ) -> Result<PollGet, EioError> {
        self.s.poll_get(sid, conn, origin)
    }
    fn poll_post(&mut self, now: u64, sid: &str, body: &[u8]) -> Result<(), EioError> {
        self.cx(now, |s, cx| s.poll_post(cx, sid, body))
    }
    fn ws_attach(&mut self, now: u64, sid: &str, conn: Handle) -> bool {
        self.s.ws_attach(now, sid, conn)
    }
    fn ws_text(&mut self, now: u64, conn: Handle, text: &str) {
        self.cx(now, |s, cx| s.ws_message(cx, conn, Some(text)));
    }
    /// The shell reports that `conn` is gone.
    fn gone(&mut self, now: u64, conn: Handle) {
        self.cx(now, |s, cx| s.conn_gone(cx, conn));
    }
    fn tick(&mut self, now: u64) {
        self.cx(now, |s, cx| s.tick(cx));
    }
    /// Flush and apply the outputs as the shell does.
    fn flush(&mut self, w: &mut FakeWire) {
        self.cx(0, |s, cx| s.flush(cx));
        for (o, bytes) in self.out.iter() {
            match o {
                Output::Respond { conn, response } => {
                    assert!(w.held.remove(conn), "answered a poll that was not waiting");
                    w.answers
                        .push((*conn, String::from_utf8(response.body.clone()).unwrap()));
                }
                Output::Send { to, .. } => w
                    .sent
                    .push((*to, String::from_utf8(bytes.to_vec()).unwrap())),
                Output::Close { conn, .. } => {
                    w.open.remove(conn);
                    w.closed.push(*conn);
                }
                Output::Pipe { .. } => panic!("the layer never pipes"),
                Output::Store { .. } => panic!("the layer keeps no outside store"),
                Output::Tell { .. } | Output::Reply { .. } => {
                    panic!("the layer tells no other instance")
                }
            }
        }
        self.out.clear();
    }
    fn contains(&self, sid: &str) -> bool {
        self.s.contains(sid)
    }
    fn can_create(&mut self, app: usize) -> Result<(), Refused> {
        self.s.can_create(app)
    }
    fn can_upgrade(&self, sid: &str) -> Result<(), EioError> {
        self.s.can_upgrade(sid)
    }
    fn next_deadline(&self) -> Option<u64> {
        self.s.next_deadline()
    }
    fn wants_flush(&self) -> bool {
        self.s.wants_flush()
    }
}

fn conn(key: u32) -> Handle {
    Handle::of(key, 1)
}

fn table() -> T {
    T {
        s: Sessions::new(
            Options {
                ping_interval_ms: 1000,
                upgrade_timeout_ms: 300,
                max_queued_bytes: 4096,
                max_sessions: 3,
            },
            echo_apps(),
        ),
        out: Outputs::default(),
        rand: Seeded(1),
    }
}

fn body(r: &Response) -> String {
    String::from_utf8(r.body.clone()).unwrap()
}

fn packets(payload: &str) -> Vec<String> {
    decode_payload(payload)
        .unwrap()
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// A polling session `sid` created at `now`, its handshake payload read.
fn polling(t: &mut T, sid: &str, now: u64) -> Vec<String> {
    let r = t
        .handshake_polling(now, sid, ECHO, Some("http://o"))
        .expect("created");
    assert_eq!(r.status, 200);
    assert!(r
        .headers
        .contains(&("Access-Control-Allow-Origin".into(), "http://o".into())));
    assert!(r
        .headers
        .contains(&("Access-Control-Allow-Credentials".into(), "true".into())));
    packets(&body(&r))
}

fn post(t: &mut T, now: u64, sid: &str, packets: &[&str]) {
    let payload = encode_payload(packets.iter().copied());
    t.poll_post(now, sid, payload.as_bytes()).unwrap();
}

const A: &str = "AAaaaaaaaaaaaaaaaaaa";
const B: &str = "AAbbbbbbbbbbbbbbbbbb";

#[test]
fn polling_handshake_sends_open_then_connect() {
    let mut t = table();
    let p = polling(&mut t, A, 0);
    assert!(p[0].starts_with("0{"));
    assert!(p[0].contains(r#""upgrades":["websocket"]"#));
    assert_eq!(p[1], "40");
    assert!(p[2].starts_with(r#"42["welcome""#));
    assert_eq!(p.len(), 3);
    // A sid already in use is refused; an unknown one is unknown.
    assert_eq!(
        t.handshake_polling(0, A, ECHO, None).err(),
        Some(Refused::Taken)
    );
    assert!(matches!(
        t.poll_get("AAzzzzzzzzzzzzzzzzzz", conn(9), None),
        Err(EioError::UnknownSid)
    ));
    // No dialect installed for the kind: refused.
    assert_eq!(
        t.handshake_polling(0, B, UNSERVED, None).err(),
        Some(Refused::NoDialect)
    );
    // The table is bounded (3 here).
    polling(&mut t, B, 0);
    polling(&mut t, "AAcccccccccccccccccc", 0);
    assert_eq!(t.can_create(ECHO), Err(Refused::Full));
    assert_eq!(
        t.handshake_polling(0, "AAdddddddddddddddddd", ECHO, None)
            .err(),
        Some(Refused::Full)
    );
}

#[test]
fn held_poll_is_released_by_an_emit_from_another_socket() {
    let mut t = table();
    let mut w = FakeWire::default();
    polling(&mut t, A, 0);
    polling(&mut t, B, 0);
    post(&mut t, 10, A, &[r#"42["join","r"]"#]);
    post(&mut t, 10, B, &[r#"42["join","r"]"#]);
    // A's GET takes its `joined`; the next one is held.
    let got = t.poll_get(A, conn(1), None).unwrap();
    let PollGet::Answer(r) = got else {
        panic!("joined is queued")
    };
    assert_eq!(packets(&body(&r)), vec![r#"42["joined","r"]"#]);
    assert!(matches!(t.poll_get(A, conn(2), None), Ok(PollGet::Hold)));
    w.held.insert(conn(2));
    t.flush(&mut w);
    assert!(w.answers.is_empty(), "nothing to send yet");
    // B emits to the room except itself: A's held GET is answered with it.
    post(&mut t, 20, B, &[r#"42["to","r","héllo 😀"]"#]);
    t.flush(&mut w);
    assert_eq!(w.answers.len(), 1);
    assert_eq!(w.answers[0].0, conn(2));
    assert_eq!(packets(&w.answers[0].1), vec![r#"42["msg","héllo 😀"]"#]);
    // `all` reaches both, sender included.
    post(&mut t, 30, B, &[r#"42["all","r",1]"#]);
    let PollGet::Answer(r) = t.poll_get(B, conn(3), None).unwrap() else {
        panic!()
    };
    let pb = packets(&body(&r));
    assert_eq!(pb.last().unwrap(), r#"42["msg",1]"#);
    assert!(!pb.iter().any(|p| p.contains("héllo")), "not to the sender");
}

#[test]
fn ping_is_answered_with_pong_on_the_held_poll() {
    let mut t = table();
    let mut w = FakeWire::default();
    polling(&mut t, A, 0);
    assert!(matches!(t.poll_get(A, conn(1), None), Ok(PollGet::Hold)));
    w.held.insert(conn(1));
    post(&mut t, 100, A, &["2"]);
    t.flush(&mut w);
    assert_eq!(w.answers, vec![(conn(1), "1:3".to_string())]);
}

#[test]
fn session_without_packets_times_out_and_its_poll_is_closed() {
    let mut t = table();
    let mut w = FakeWire::default();
    polling(&mut t, A, 0);
    polling(&mut t, B, 0);
    post(&mut t, 0, B, &[r#"42["join","watchers"]"#]);
    assert!(matches!(t.poll_get(A, conn(1), None), Ok(PollGet::Hold)));
    w.held.insert(conn(1));
    // B keeps pinging; A is silent.
    post(&mut t, 900, B, &["2"]);
    assert_eq!(t.next_deadline(), Some(1500));
    t.tick(1499);
    assert!(t.contains(A));
    t.tick(1500);
    assert!(
        !t.contains(A),
        "pingInterval + pingTimeout without a packet"
    );
    assert!(t.contains(B));
    t.flush(&mut w);
    assert_eq!(w.answers, vec![(conn(1), "1:1".to_string())]);
    let PollGet::Answer(r) = t.poll_get(B, conn(2), None).unwrap() else {
        panic!()
    };
    let pb = packets(&body(&r));
    assert!(pb.contains(&format!(r#"42["gone","{A}"]"#)), "{pb:?}");
    // B's own deadline moved with its ping.
    t.tick(1900);
    assert!(t.contains(B));
    t.tick(2400);
    assert!(!t.contains(B));
}

#[test]
fn upgrade_loses_and_duplicates_nothing() {
    let mut t = table();
    let mut w = FakeWire::default();
    polling(&mut t, A, 0);
    polling(&mut t, B, 0);
    post(&mut t, 0, A, &[r#"42["join","r"]"#]);
    let _ = t.poll_get(A, conn(1), None).unwrap(); // takes `joined`
    assert!(matches!(t.poll_get(A, conn(2), None), Ok(PollGet::Hold)));
    w.held.insert(conn(2));
    // The WebSocket attaches and probes.
    let ws = conn(10);
    assert!(t.can_upgrade(A).is_ok());
    assert!(t.ws_attach(5, A, ws));
    assert_eq!(
        t.can_upgrade(A),
        Err(EioError::BadRequest),
        "one probe at a time"
    );
    w.open.insert(ws);
    t.ws_text(6, ws, "2probe");
    t.flush(&mut w);
    assert_eq!(w.sent, vec![(ws, "3probe".to_string())]);
    // The held poll is released with a noop so the client can pause.
    assert_eq!(w.answers, vec![(conn(2), "1:6".to_string())]);
    // Messages for A while it pauses: the next GET (if any) takes them at once...
    post(&mut t, 7, B, &[r#"42["to","r","one"]"#]);
    t.flush(&mut w);
    let PollGet::Answer(r) = t.poll_get(A, conn(3), None).unwrap() else {
        panic!("answered at once during the probe")
    };
    assert_eq!(packets(&body(&r)), vec![r#"42["msg","one"]"#]);
    // ...and what comes after the client stopped polling waits for the upgrade.
    post(&mut t, 8, B, &[r#"42["to","r","two"]"#]);
    post(&mut t, 8, B, &[r#"42["to","r","three"]"#]);
    t.flush(&mut w);
    assert_eq!(w.sent.len(), 1, "not on the probing WebSocket yet");
    t.ws_text(9, ws, "5");
    t.flush(&mut w);
    assert_eq!(
        w.sent[1..],
        [
            (ws, r#"42["msg","two"]"#.to_string()),
            (ws, r#"42["msg","three"]"#.to_string())
        ]
    );
    // From now on the WebSocket is the transport: polling is refused, pings are answered.
    assert!(matches!(
        t.poll_get(A, conn(4), None),
        Err(EioError::BadRequest)
    ));
    t.ws_text(10, ws, "2");
    post(&mut t, 10, B, &[r#"42["to","r","four"]"#]);
    t.flush(&mut w);
    assert_eq!(
        w.sent[3..],
        [
            (ws, "3".to_string()),
            (ws, r#"42["msg","four"]"#.to_string())
        ]
    );
    // Its close ends the session.
    t.gone(11, ws);
    assert!(!t.contains(A));
}

#[test]
fn failed_or_slow_probe_leaves_the_session_polling() {
    let mut t = table();
    let mut w = FakeWire::default();
    polling(&mut t, A, 0);
    let ws = conn(10);
    w.open.insert(ws);
    assert!(t.ws_attach(0, A, ws));
    t.ws_text(1, ws, "4junk");
    t.flush(&mut w);
    assert_eq!(w.closed, vec![ws]);
    assert!(t.contains(A) && t.can_upgrade(A).is_ok());
    // A probe that never sends `5` is closed after the upgrade timeout.
    let ws2 = conn(11);
    w.open.insert(ws2);
    assert!(t.ws_attach(100, A, ws2));
    t.ws_text(101, ws2, "2probe");
    t.tick(399);
    t.flush(&mut w);
    assert!(!w.closed.contains(&ws2));
    t.tick(400);
    t.flush(&mut w);
    assert!(w.closed.contains(&ws2));
    assert!(t.contains(A) && t.can_upgrade(A).is_ok());
    // A probe's own close also leaves it polling.
    let ws3 = conn(12);
    assert!(t.ws_attach(500, A, ws3));
    t.gone(501, ws3);
    assert!(t.contains(A) && t.can_upgrade(A).is_ok());
}

#[test]
fn websocket_session_and_server_disconnect() {
    let mut t = table();
    let mut w = FakeWire::default();
    let ws = conn(20);
    w.open.insert(ws);
    assert!(t.handshake_ws(0, A, ECHO, ws).is_ok());
    t.flush(&mut w);
    assert!(w.sent[0].1.starts_with("0{") && w.sent[0].1.contains(r#""upgrades":[]"#));
    assert_eq!(w.sent[1].1, "40");
    assert!(w.sent[2].1.starts_with(r#"42["welcome""#));
    t.ws_text(1, ws, r#"42["fail"]"#);
    t.ws_text(1, ws, r#"42["bye"]"#);
    t.flush(&mut w);
    assert_eq!(w.sent[3].1, r#"44"boom""#);
    assert_eq!(w.sent[4].1, "41");
    assert_eq!(w.closed, vec![ws]);
    assert!(!t.contains(A));
}

#[test]
fn polling_server_disconnect_and_client_close() {
    let mut t = table();
    polling(&mut t, A, 0);
    polling(&mut t, B, 0);
    post(&mut t, 1, A, &[r#"42["bye"]"#]);
    let PollGet::Answer(r) = t.poll_get(A, conn(1), None).unwrap() else {
        panic!()
    };
    assert_eq!(packets(&body(&r)), vec!["41", "1"]);
    assert!(!t.contains(A));
    // A client `1` (or `41`) ends the session at once.
    post(&mut t, 1, B, &["41"]);
    assert!(!t.contains(B));
}

#[test]
fn bad_post_ends_the_session_and_overfull_queues_are_dropped() {
    let mut t = table();
    polling(&mut t, A, 0);
    assert_eq!(t.poll_post(1, A, b"5:abc"), Err(EioError::BadRequest));
    assert!(!t.contains(A));
    polling(&mut t, A, 0);
    let big = "x".repeat(1000);
    for _ in 0..3 {
        post(&mut t, 1, A, &[&format!(r#"42["echo","{big}"]"#)]);
        assert!(t.contains(A));
    }
    post(&mut t, 1, A, &[&format!(r#"42["echo","{big}"]"#)]);
    post(&mut t, 1, A, &[&format!(r#"42["echo","{big}"]"#)]);
    assert!(!t.contains(A), "past max_queued_bytes without a GET");
}

#[test]
fn second_get_releases_the_first() {
    let mut t = table();
    let mut w = FakeWire::default();
    polling(&mut t, A, 0);
    assert!(matches!(t.poll_get(A, conn(1), None), Ok(PollGet::Hold)));
    w.held.insert(conn(1));
    assert!(matches!(t.poll_get(A, conn(2), None), Ok(PollGet::Hold)));
    w.held.insert(conn(2));
    t.flush(&mut w);
    assert_eq!(w.answers, vec![(conn(1), "1:6".to_string())]);
    // A held poll whose connection went away is forgotten; the queue waits for the next GET.
    w.held.remove(&conn(2));
    t.gone(1, conn(2));
    post(&mut t, 1, A, &[r#"42["echo",1]"#]);
    t.flush(&mut w);
    assert_eq!(w.answers.len(), 1);
    let PollGet::Answer(r) = t.poll_get(A, conn(3), None).unwrap() else {
        panic!()
    };
    assert_eq!(packets(&body(&r)), vec![r#"42["echo",1]"#]);
}

#[test]
fn payload_framing_round_trips_random_text_and_never_panics_on_garbage() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5010);
    let alphabet: Vec<char> = "ab:0123456789\"[]{}é中😀𝄞\u{fffd}\n".chars().collect();
    for _ in 0..2000 {
        let n = rng.random_range(1..6);
        let packets: Vec<String> = (0..n)
            .map(|_| {
                let len = rng.random_range(1..20);
                (0..len)
                    .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                    .collect()
            })
            .collect();
        let body = encode_payload(packets.iter().map(String::as_str));
        let back = decode_payload(&body).expect("our own encoding decodes");
        assert_eq!(back, packets.iter().map(String::as_str).collect::<Vec<_>>());
        // Any mangling is an error or some packets, never a panic.
        let mut bytes = body.clone().into_bytes();
        let i = rng.random_range(0..bytes.len());
        bytes[i] = rng.random();
        if let Ok(text) = std::str::from_utf8(&bytes) {
            if let Ok(parts) = decode_payload(text) {
                for p in parts {
                    let _ = decode_packet(p);
                    let _ = decode_sio(p);
                }
            }
        }
        let _ = decode_sio(&body);
    }
}

#[test]
fn a_closing_session_that_ends_closes_its_probe_and_answers_its_poll() {
    let mut t = table();
    let mut w = FakeWire::default();
    polling(&mut t, A, 0);
    // A probe attaches, then the dialect disconnects the socket (`bye`): A is closing.
    w.open.insert(conn(5));
    assert!(t.ws_attach(0, A, conn(5)));
    post(&mut t, 10, A, &[r#"42["bye"]"#]);
    // The GET that takes `41` and `1` ends the session, and with it the probe.
    let PollGet::Answer(r) = t.poll_get(A, conn(1), None).unwrap() else {
        panic!("the close is queued")
    };
    assert!(packets(&body(&r)).ends_with(&["41".to_string(), "1".to_string()]));
    assert!(!t.contains(A));
    t.flush(&mut w);
    assert_eq!(w.closed, vec![conn(5)]);
    assert!(!t.wants_flush());
    // A closing session whose client closes with `1` answers its held poll.
    polling(&mut t, B, 0);
    assert!(matches!(t.poll_get(B, conn(2), None), Ok(PollGet::Hold)));
    w.held.insert(conn(2));
    post(&mut t, 20, B, &[r#"42["bye"]"#, "1"]);
    assert!(!t.contains(B));
    t.flush(&mut w);
    assert_eq!(w.answers, vec![(conn(2), "1:1".to_string())]);
}

// ── the layer through the dialect contract ─────────────────────────────────────────────────

#[test]
fn engine_places_by_dialect_key_then_by_the_locator_in_its_session_ids() {
    use crate::proto::dialect::testing::{get, head, Harness};
    use crate::proto::dialect::{Answer, Dialect, Placement};
    let engine = Engine::new(
        EngineOptions {
            sessions: Options {
                ping_interval_ms: 1000,
                upgrade_timeout_ms: 300,
                max_queued_bytes: 4096,
                max_sessions: 3,
            },
            max_http_buffer: 1 << 16,
        },
        echo_apps(),
    );
    let mut h = Harness::new(engine);
    h.here = Locator(5);
    let hs = get("/socket.io/?EIO=3&transport=polling&echo=1");
    assert!(matches!(h.place(&hs), Placement::Key(k) if &*k == "sio/echo"));
    let (_, a) = h.request(&hs);
    let Answer::Respond(r) = a else {
        panic!("{a:?}")
    };
    let open = packets(&body(&r))[0].clone();
    let v: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
    let sid = v["sid"].as_str().unwrap().to_string();
    assert_eq!(sid_locator(&sid), Some(Locator(5)), "{open}");
    // Later requests of the session are placed at the locator its id carries.
    let poll = get(&format!("/socket.io/?EIO=3&transport=polling&sid={sid}"));
    assert!(matches!(h.place(&poll), Placement::At(Locator(5))));
    let (held, a) = h.request(&poll);
    assert!(matches!(a, Answer::Hold { .. }), "nothing queued: held");
    // A POST's event is answered on the held poll, as an output.
    let post = head(&format!(
        "POST /socket.io/?EIO=3&transport=polling&sid={sid} HTTP/1.1\r\nHost: t\r\nContent-Length: 14\r\n\r\n"
    ));
    let (conn, a) = h.request(&post);
    assert!(matches!(a, Answer::ReadBody { .. }));
    let Answer::Respond(ok) = h.body(conn, &post, br#"12:42["echo",1]"#) else {
        panic!("answered")
    };
    assert_eq!(body(&ok), "ok");
    assert_eq!(h.responded.len(), 1);
    assert_eq!(h.responded[0].0, held);
    assert_eq!(packets(&body(&h.responded[0].1)), vec![r#"42["echo",1]"#]);
    assert_eq!(h.d.gauge(), 1);
    // Silent past pingInterval + pingTimeout: the session ends.
    h.advance(1_500);
    assert_eq!(h.d.gauge(), 0);
    assert!(
        matches!(h.place(&get("/socket.io/?EIO=3&transport=polling&sid=short")), Placement::Answer(r) if r.status == 400)
    );
}
