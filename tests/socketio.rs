//! Engine.IO 3 / Socket.IO 2 over real sockets, against the test rooms dialect (`--echo`,
//! handshake query `echo`): polling handshake, POST + GET, a held poll released by another
//! socket's emit, the WebSocket transport, the upgrade from polling, heartbeat timeouts,
//! refused requests, and sessions whose requests arrive on other cores.

mod common;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tungstenite::Message;

const Q: &str = "/socket.io/?EIO=3&echo=1";

/// Status line, headers (lowercased names) and body of a response read from `s`.
fn response(s: &mut TcpStream) -> (u16, String, String) {
    let text = common::read_response(s);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    extra: &str,
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: t\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    response(&mut s)
}

fn get(addr: SocketAddr, target: &str) -> (u16, String, String) {
    request(addr, "GET", target, "", "")
}

/// Split a v3 payload, lengths in UTF-16 units.
fn packets(payload: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        let (len, data) = rest.split_once(':').expect("a length");
        let n: usize = len.parse().expect("digits");
        let mut units = 0;
        let mut end = 0;
        for c in data.chars() {
            if units == n {
                break;
            }
            units += c.len_utf16();
            end += c.len_utf8();
        }
        assert_eq!(units, n, "length {n} in {payload:?}");
        out.push(data[..end].to_owned());
        rest = &data[end..];
    }
    out
}

fn frame(packets: &[&str]) -> String {
    packets
        .iter()
        .map(|p| format!("{}:{p}", p.encode_utf16().count()))
        .collect()
}

fn open_sid(open: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
    v["sid"].as_str().unwrap().to_owned()
}

/// A polling handshake: the session id and the first payload's packets.
fn handshake(addr: SocketAddr) -> (String, Vec<String>) {
    let (status, _, body) = get(addr, &format!("{Q}&transport=polling&t=1"));
    assert_eq!(status, 200, "{body}");
    let p = packets(&body);
    (open_sid(&p[0]), p)
}

fn post(addr: SocketAddr, sid: &str, packets: &[&str]) {
    let (status, _, body) = request(
        addr,
        "POST",
        &format!("{Q}&transport=polling&sid={sid}"),
        "Content-Type: text/plain;charset=UTF-8\r\n",
        &frame(packets),
    );
    assert_eq!((status, body.as_str()), (200, "ok"));
}

fn poll(addr: SocketAddr, sid: &str) -> Vec<String> {
    let (status, _, body) = get(addr, &format!("{Q}&transport=polling&sid={sid}"));
    assert_eq!(status, 200, "{body}");
    packets(&body)
}

/// Start a poll GET on its own connection without reading the answer.
fn start_poll(addr: SocketAddr, sid: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {Q}&transport=polling&sid={sid} HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    .unwrap();
    s
}

/// True when nothing arrives on `s` within `d`.
fn silent_for(s: &mut TcpStream, d: Duration) -> bool {
    s.set_read_timeout(Some(d)).unwrap();
    let mut b = [0u8; 1];
    let quiet = matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    quiet
}

fn ws_text(ws: &mut tungstenite::WebSocket<TcpStream>) -> String {
    loop {
        match ws.read().expect("a message") {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn polling_handshake_post_and_get() {
    let h = common::start(|b| b);
    let addr = h.plain_addr().unwrap();
    let (status, head, body) = request(
        addr,
        "GET",
        &format!("{Q}&transport=polling&t=Nx1"),
        "Origin: http://app.example\r\n",
        "",
    );
    assert_eq!(status, 200);
    assert!(
        head.contains("access-control-allow-origin: http://app.example"),
        "{head}"
    );
    assert!(head.contains("access-control-allow-credentials: true"));
    assert!(head.contains("content-type: text/plain; charset=utf-8"));
    let p = packets(&body);
    let open: serde_json::Value = serde_json::from_str(&p[0][1..]).unwrap();
    assert_eq!(open["upgrades"], serde_json::json!(["websocket"]));
    assert_eq!(open["pingInterval"], 25000);
    assert_eq!(open["pingTimeout"], 5000);
    let sid = open["sid"].as_str().unwrap().to_owned();
    assert_eq!(sid.len(), 20);
    assert_eq!(p[1], "40");
    assert!(p[2].starts_with(r#"42["welcome""#));

    // Non-ASCII and astral text: lengths in UTF-16 units both ways.
    post(addr, &sid, &[r#"42["echo","héllo wörld 😀𝄞"]"#, "2"]);
    assert_eq!(
        poll(addr, &sid),
        vec![r#"42["echo","héllo wörld 😀𝄞"]"#.to_string(), "3".into()]
    );
    // A payload whose length does not match is a bad request, and ends the session.
    let (status, _, body) = request(
        addr,
        "POST",
        &format!("{Q}&transport=polling&sid={sid}"),
        "",
        r#"5:42["echo","x"]"#,
    );
    assert_eq!(status, 400);
    assert_eq!(body, r#"{"code":3,"message":"Bad request"}"#);
    assert_eq!(
        get(addr, &format!("{Q}&transport=polling&sid={sid}")).0,
        400
    );
    common::stop(h);
}

#[test]
fn refused_requests_get_engine_io_errors() {
    let h = common::start(|b| b);
    let addr = h.plain_addr().unwrap();
    let cases = [
        (
            "GET",
            "/socket.io/?EIO=4&transport=polling",
            5,
            "Unsupported protocol version",
        ),
        (
            "GET",
            "/socket.io/?EIO=2&transport=polling",
            5,
            "Unsupported protocol version",
        ),
        (
            "GET",
            "/socket.io/?EIO=3&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA",
            1,
            "Session ID unknown",
        ),
        (
            "GET",
            "/socket.io/?EIO=3&transport=polling&sid=nonsense",
            1,
            "Session ID unknown",
        ),
        (
            "POST",
            "/socket.io/?EIO=3&transport=polling&sid=AAAAAAAAAAAAAAAAAAAA",
            1,
            "Session ID unknown",
        ),
        (
            "GET",
            "/socket.io/?EIO=3&transport=flashsocket",
            0,
            "Transport unknown",
        ),
        ("GET", "/socket.io/?EIO=3", 0, "Transport unknown"),
        (
            "POST",
            "/socket.io/?EIO=3&transport=polling",
            2,
            "Bad handshake method",
        ),
        // The WebSocket transport without an upgrade.
        (
            "GET",
            "/socket.io/?EIO=3&transport=websocket&echo=1",
            3,
            "Bad request",
        ),
    ];
    for (method, target, code, message) in cases {
        let (status, head, body) = request(
            addr,
            method,
            target,
            "",
            if method == "POST" { "1:2" } else { "" },
        );
        assert_eq!(status, 400, "{method} {target}");
        assert!(head.contains("content-type: application/json"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"code": code, "message": message}),
            "{method} {target}"
        );
    }
    // A WebSocket upgrade naming an unknown session is refused before the 101.
    let out = common::raw_exchange(
        addr,
        common::ws_request("/socket.io/?EIO=3&transport=websocket&sid=AAAAAAAAAAAAAAAAAAAA")
            .as_bytes(),
    );
    assert!(
        out.starts_with("HTTP/1.1 400") && out.contains(r#""code":1"#),
        "{out}"
    );
    // Preflight: any origin.
    let (status, head, _) = request(
        addr,
        "OPTIONS",
        "/socket.io/?EIO=3&transport=polling",
        "Origin: https://x.test\r\nAccess-Control-Request-Method: POST\r\n",
        "",
    );
    assert_eq!(status, 204);
    assert!(head.contains("access-control-allow-origin: https://x.test"));
    // An oversized POST is refused from its head.
    let (sid, _) = handshake(addr);
    let h2 = common::start(|b| b.configure(|c| c.sio.max_http_buffer = 1000));
    let a2 = h2.plain_addr().unwrap();
    let (sid2, _) = handshake(a2);
    let big = frame(&[&format!(r#"42["echo","{}"]"#, "x".repeat(2000))]);
    let (status, _, _) = request(
        a2,
        "POST",
        &format!("{Q}&transport=polling&sid={sid2}"),
        "",
        &big,
    );
    assert_eq!(status, 413);
    post(
        addr,
        &sid,
        &[&format!(r#"42["echo","{}"]"#, "x".repeat(2000))],
    );
    common::stop(h2);
    // The session table is bounded: past it, handshakes (either transport) get 503.
    let h3 = common::start(|b| b.threads(1).configure(|c| c.sio.max_sessions = 1));
    let a3 = h3.plain_addr().unwrap();
    handshake(a3);
    let (status, _, body) = get(a3, &format!("{Q}&transport=polling"));
    assert_eq!(status, 503, "{body}");
    let out = common::raw_exchange(
        a3,
        common::ws_request(&format!("{Q}&transport=websocket")).as_bytes(),
    );
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    common::stop(h3);
    common::stop(h);
}

#[test]
fn held_poll_is_released_by_an_emit() {
    let h = common::start(|b| b);
    let addr = h.plain_addr().unwrap();
    let (a, _) = handshake(addr);
    let (b, _) = handshake(addr);
    post(addr, &a, &[r#"42["join","room"]"#]);
    post(addr, &b, &[r#"42["join","room"]"#]);
    assert_eq!(poll(addr, &a), vec![r#"42["joined","room"]"#.to_string()]);
    let mut held = start_poll(addr, &a);
    assert!(
        silent_for(&mut held, Duration::from_millis(400)),
        "the GET is held"
    );
    post(addr, &b, &[r#"42["to","room","from b"]"#]);
    let (status, head, body) = response(&mut held);
    assert_eq!(status, 200);
    assert!(head.contains("access-control-allow-origin: *"));
    assert_eq!(packets(&body), vec![r#"42["msg","from b"]"#.to_string()]);
    // The connection is kept alive for the next poll, which is held again and released by
    // a ping's pong.
    write!(
        held,
        "GET {Q}&transport=polling&sid={a} HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    .unwrap();
    assert!(silent_for(&mut held, Duration::from_millis(300)));
    post(addr, &a, &["2"]);
    assert_eq!(packets(&response(&mut held).2), vec!["3".to_string()]);
    common::stop(h);
}

#[test]
fn websocket_only_session() {
    let h = common::start(|b| b);
    let addr = h.plain_addr().unwrap();
    let mut ws = common::ws(addr, &format!("{Q}&transport=websocket"));
    let open = ws_text(&mut ws);
    assert!(
        open.starts_with("0{") && open.contains(r#""upgrades":[]"#),
        "{open}"
    );
    assert_eq!(ws_text(&mut ws), "40");
    assert!(ws_text(&mut ws).starts_with(r#"42["welcome""#));
    ws.send(Message::text("2")).unwrap();
    assert_eq!(ws_text(&mut ws), "3");
    ws.send(Message::text(r#"42["echo","😀",{"n":1}]"#))
        .unwrap();
    assert_eq!(ws_text(&mut ws), r#"42["echo","😀",{"n":1}]"#);
    // Acks are parsed and ignored; an error packet from the dialect; a server disconnect.
    ws.send(Message::text(r#"421["echo",2]"#)).unwrap();
    assert_eq!(ws_text(&mut ws), r#"42["echo",2]"#);
    ws.send(Message::text(r#"42["fail"]"#)).unwrap();
    assert_eq!(ws_text(&mut ws), r#"44"boom""#);
    ws.send(Message::text(r#"42["bye"]"#)).unwrap();
    assert_eq!(ws_text(&mut ws), "41");
    assert!(matches!(ws.read(), Ok(Message::Close(_))));
    let sid = open_sid(&open);
    assert_eq!(
        get(addr, &format!("{Q}&transport=polling&sid={sid}")).0,
        400
    );
    common::stop(h);
}

#[test]
fn upgrade_from_polling_loses_nothing() {
    let h = common::start(|b| b);
    let addr = h.plain_addr().unwrap();
    let (a, _) = handshake(addr);
    let (b, _) = handshake(addr);
    post(addr, &a, &[r#"42["join","r"]"#]);
    assert_eq!(poll(addr, &a).len(), 1);
    let mut held = start_poll(addr, &a);
    assert!(silent_for(&mut held, Duration::from_millis(200)));
    let mut ws = common::ws(addr, &format!("{Q}&transport=websocket&sid={a}"));
    // A second probe for the same session is refused.
    let out = common::raw_exchange(
        addr,
        common::ws_request(&format!("{Q}&transport=websocket&sid={a}")).as_bytes(),
    );
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    ws.send(Message::text("2probe")).unwrap();
    assert_eq!(ws_text(&mut ws), "3probe");
    // The held poll is released with a noop so the client can pause polling.
    assert_eq!(packets(&response(&mut held).2), vec!["6".to_string()]);
    // Emits while the client pauses wait for the upgrade...
    for i in 0..5 {
        post(addr, &b, &[&format!(r#"42["to","r",{i}]"#)]);
    }
    ws.send(Message::text("5")).unwrap();
    // ...and then arrive on the WebSocket, each once, in order.
    for i in 0..5 {
        assert_eq!(ws_text(&mut ws), format!(r#"42["msg",{i}]"#));
    }
    ws.send(Message::text("2")).unwrap();
    assert_eq!(ws_text(&mut ws), "3");
    ws.send(Message::text(r#"42["echo","up"]"#)).unwrap();
    assert_eq!(ws_text(&mut ws), r#"42["echo","up"]"#);
    // Polling on an upgraded session is a bad request.
    assert_eq!(get(addr, &format!("{Q}&transport=polling&sid={a}")).0, 400);
    common::stop(h);
}

#[test]
fn silent_sessions_time_out() {
    let h = common::start(|b| {
        b.configure(|c| {
            c.sio.ping_interval = Duration::from_millis(300);
            c.sio.ping_timeout = Duration::from_millis(200);
        })
    });
    let addr = h.plain_addr().unwrap();
    let mut watcher = common::ws(addr, &format!("{Q}&transport=websocket"));
    for _ in 0..3 {
        ws_text(&mut watcher);
    }
    watcher
        .send(Message::text(r#"42["join","watchers"]"#))
        .unwrap();
    assert_eq!(ws_text(&mut watcher), r#"42["joined","watchers"]"#);
    let (silent, _) = handshake(addr);
    let mut ws_silent = common::ws(addr, &format!("{Q}&transport=websocket"));
    let ws_sid = open_sid(&ws_text(&mut ws_silent));
    let mut held = start_poll(addr, &silent);
    let started = Instant::now();
    let mut gone = Vec::new();
    watcher
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while gone.len() < 2 && started.elapsed() < Duration::from_secs(5) {
        // The watcher pings every 100 ms, so it stays.
        watcher.send(Message::text("2")).unwrap();
        match watcher.read() {
            Ok(Message::Text(t)) if t.starts_with(r#"42["gone""#) => gone.push(t.to_string()),
            _ => {}
        }
    }
    let took = started.elapsed();
    assert_eq!(gone.len(), 2, "{gone:?}");
    assert!(gone.iter().any(|g| g.contains(&silent)) && gone.iter().any(|g| g.contains(&ws_sid)));
    assert!(
        took >= Duration::from_millis(400),
        "not before pingInterval + pingTimeout: {took:?}"
    );
    // The held poll got a close packet; the WebSocket a close frame.
    assert_eq!(packets(&response(&mut held).2), vec!["1".to_string()]);
    loop {
        match ws_silent.read() {
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    assert_eq!(
        get(addr, &format!("{Q}&transport=polling&sid={silent}")).0,
        400
    );
    common::stop(h);
}

#[test]
fn sessions_are_served_on_their_core_whatever_core_a_request_reaches() {
    let h = common::start(|b| b.threads(4));
    let addr = h.plain_addr().unwrap();
    let mut sids = Vec::new();
    for _ in 0..12 {
        sids.push(handshake(addr).0);
    }
    // All test-dialect sessions live on one core (its key's owner), named by the id.
    let core = &sids[0][..2];
    assert!(sids.iter().all(|s| &s[..2] == core));
    for s in &sids {
        post(addr, s, &[r#"42["join","all"]"#]);
        assert_eq!(poll(addr, s), vec![r#"42["joined","all"]"#.to_string()]);
    }
    post(addr, &sids[0], &[r#"42["to","all","hi"]"#]);
    for s in &sids[1..] {
        assert_eq!(poll(addr, s), vec![r#"42["msg","hi"]"#.to_string()]);
    }
    // Upgrades, each on a fresh connection that may land on any core.
    for s in &sids[..4] {
        let mut ws = common::ws(addr, &format!("{Q}&transport=websocket&sid={s}"));
        ws.send(Message::text("2probe")).unwrap();
        assert_eq!(ws_text(&mut ws), "3probe");
        ws.send(Message::text("5")).unwrap();
        ws.send(Message::text(r#"42["echo","moved"]"#)).unwrap();
        assert_eq!(ws_text(&mut ws), r#"42["echo","moved"]"#);
    }
    let moved = common::metric(addr, "sigyard_handoffs_in_total");
    assert!(
        moved > 0.0,
        "requests reached other cores and were moved: {moved}"
    );
    common::stop(h);
}

/// A webRTWorkspaces socket on the WebSocket transport, past its open and `40`.
fn workspaces_ws(addr: SocketAddr) -> tungstenite::WebSocket<TcpStream> {
    let mut ws = common::ws(addr, "/socket.io/?EIO=3&transport=websocket");
    let open = ws_text(&mut ws);
    let v: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
    assert_eq!(v["pingTimeout"], 12000, "webRTWorkspaces' own pingTimeout");
    assert_eq!(ws_text(&mut ws), "40");
    ws
}

/// The next event `name` on `ws` (other events skipped): its first argument.
fn event(ws: &mut tungstenite::WebSocket<TcpStream>, name: &str) -> serde_json::Value {
    loop {
        let t = ws_text(ws);
        let Some(json) = t.strip_prefix("42") else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        if v[0] == name {
            return v[1].clone();
        }
    }
}

#[test]
fn workspaces_survive_a_restart_and_a_corrupt_store_stops_the_start() {
    let dir = std::env::temp_dir().join(format!("sigyard-ws-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("workspaces.json");
    let configure = |c: &mut sigyard::config::Config| {
        c.workspaces.secret = Some(sigyard::config::Secret::new("restart-test-secret"));
        c.workspaces.salt = Some(sigyard::config::Secret::new("pepper"));
        c.workspaces.storage_file = Some(file.clone());
    };
    let h = common::start(|b| b.configure(configure));
    let addr = h.plain_addr().unwrap();
    let mut owner = workspaces_ws(addr);
    owner
        .send(Message::text(
            r#"42["create",{"workspace":{"name":"Kept","pin":"4321","avatar":""},"attendee":{"name":"Ann","avatar":""},"nonce":"create-workspace::r"}]"#,
        ))
        .unwrap();
    let created = event(&mut owner, "created");
    let id = created["workspace"]["id"].as_str().unwrap().to_owned();
    let token = created["workspace"]["token"].as_str().unwrap().to_owned();
    drop(owner);
    common::stop(h);

    // The store is the original's format, written whole.
    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(stored[&id]["name"], "Kept");
    assert_eq!(stored[&id]["token"], token.as_str());
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        leftovers,
        vec!["workspaces.json".to_string()],
        "no temporary file left"
    );

    // After a restart, the workspace is there: the right PIN is let in, a wrong one is not.
    let h = common::start(|b| b.configure(configure));
    let addr = h.plain_addr().unwrap();
    let mut guest = workspaces_ws(addr);
    let attend = |pin: &str| {
        format!(
            r#"42["attend",{{"workspace":{{"token":"{token}","pin":"{pin}"}},"attendee":{{"name":"Bob","avatar":""}},"nonce":"attend-workspace::r"}}]"#
        )
    };
    guest.send(Message::text(attend("0000"))).unwrap();
    assert_eq!(
        event(&mut guest, "alert"),
        "This workspace is protected with a PIN. Wrong PIN provided."
    );
    guest.send(Message::text(attend("4321"))).unwrap();
    let granted = event(&mut guest, "attendance-granted");
    assert_eq!(granted["workspace"]["id"], id.as_str());
    assert_eq!(granted["workspace"]["name"], "Kept");
    common::stop(h);

    // A corrupt store: the server does not start, and says which file and why.
    std::fs::write(&file, "{\"_abc\": {\"id\": 3").unwrap();
    let err = sigyard::Server::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .configure(configure)
        .build()
        .unwrap()
        .start()
        .err()
        .expect("a corrupt store stops the start");
    let msg = err.to_string();
    assert!(
        msg.contains("workspaces.json") && msg.contains("corrupt"),
        "{msg}"
    );
    std::fs::write(&file, r#"{"_abc": {"id": "_other"}}"#).unwrap();
    let err = sigyard::Server::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .configure(configure)
        .build()
        .unwrap()
        .start()
        .err()
        .expect("a store that does not load stops the start");
    assert!(err.to_string().contains("_abc"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn garbage_packets_end_only_their_own_session() {
    let h = common::start(|b| b);
    let addr = h.plain_addr().unwrap();
    let (keep, _) = handshake(addr);
    for garbage in ["4é", "4😀[]", "42[", "4x", "9", "b4!!"] {
        let mut ws = common::ws(addr, &format!("{Q}&transport=websocket"));
        for _ in 0..3 {
            ws_text(&mut ws);
        }
        ws.send(Message::text(garbage)).unwrap();
        loop {
            match ws.read() {
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let (sid, _) = handshake(addr);
        let (status, _, _) = request(
            addr,
            "POST",
            &format!("{Q}&transport=polling&sid={sid}"),
            "",
            &frame(&[garbage]),
        );
        // A packet that frames but does not parse ends the session; its POST is still
        // answered (`ok` when the framing was fine, 400 when it was not).
        assert!(status == 200 || status == 400, "{garbage}: {status}");
        assert_eq!(
            get(addr, &format!("{Q}&transport=polling&sid={sid}")).0,
            400,
            "{garbage}"
        );
    }
    // The other session and the server carry on.
    post(addr, &keep, &[r#"42["echo","still here"]"#]);
    assert_eq!(
        poll(addr, &keep),
        vec![r#"42["echo","still here"]"#.to_string()]
    );
    common::stop(h);
}

#[test]
fn connection_gauges_stay_exact_through_session_ends() {
    let h = common::start(|b| b);
    let addr = h.plain_addr().unwrap();
    let gauge =
        |name: &str| common::metric(addr, &format!("sigyard_connections{{state=\"{name}\"}}"));
    let socketio = || common::metric(addr, "sigyard_websocket_connections{dialect=\"socketio\"}");
    for ending in ["1", r#"42["bye"]"#, "41"] {
        let mut ws = common::ws(addr, &format!("{Q}&transport=websocket"));
        for _ in 0..3 {
            ws_text(&mut ws);
        }
        // Each core publishes its gauges at the end of its loop iteration: the frames just
        // read may arrive before that.
        let t = Instant::now();
        while socketio() != 1.0 && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(socketio(), 1.0);
        assert_eq!(common::metric(addr, "sigyard_socketio_sessions"), 1.0);
        // Ended by the server in the drive that read this packet.
        ws.send(Message::text(ending)).unwrap();
        loop {
            match ws.read() {
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        drop(ws);
        let t = Instant::now();
        // (Not the `closing` gauge: these /metrics requests' own connections pass through it.)
        while socketio() != 0.0 && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(socketio(), 0.0, "{ending}");
        assert_eq!(gauge("websocket"), 0.0, "{ending}");
        assert_eq!(
            common::metric(addr, "sigyard_socketio_sessions"),
            0.0,
            "{ending}"
        );
    }
    common::stop(h);
}

/// The next event packet on `ws` whose name is `name`, exactly as it came.
fn event_text(ws: &mut tungstenite::WebSocket<TcpStream>, name: &str) -> String {
    let prefix = format!(r#"42["{name}""#);
    loop {
        let t = ws_text(ws);
        if t.starts_with(&prefix) {
            return t;
        }
    }
}

#[test]
fn mewconnect_v1_relays_signals_byte_for_byte() {
    let h = common::start(|b| b);
    let addr = h.plain_addr().unwrap();
    let (conn, signed) = ("0a1b2c3d4e5f", "deadbeef");
    let open = |query: &str| {
        let mut ws = common::ws(
            addr,
            &format!("/socket.io/?EIO=3&transport=websocket&connId={conn}&{query}"),
        );
        assert!(ws_text(&mut ws).starts_with("0{"));
        assert_eq!(ws_text(&mut ws), "40");
        ws
    };
    let mut i = open(&format!("stage=initiator&signed={signed}&message=cafe"));
    let mut r = open(&format!("stage=receiver&signed={signed}"));
    assert_eq!(
        event_text(&mut r, "handshake"),
        r#"42["handshake",{"toSign":"cafe"}]"#
    );
    let sig =
        format!(r#"42["signature",{{"signed":"{signed}","connId":"{conn}","version":"0.2.7"}}]"#);
    r.send(Message::text(sig)).unwrap();
    assert_eq!(
        event_text(&mut i, "confirmation"),
        format!(r#"42["confirmation",{{"connId":"{conn}","version":"0.2.7"}}]"#)
    );
    // Spacing, key order, 1.0, an escape: what the peer gets is what was sent.
    let data = r#"{ "ciphertext": {"type":"Buffer","data":[1, 2]}, "iv": "\u0041", "n": 1.0 }"#;
    let offer = format!(r#"42["offerSignal",{{"data":{data},"connId":"{conn}"}}]"#);
    i.send(Message::text(offer)).unwrap();
    let expected = format!(r#"42["offer",{{"data":{data}}}]"#);
    assert_eq!(event_text(&mut r, "offer"), expected);
    assert_eq!(event_text(&mut i, "offer"), expected);
    let answer = format!(
        r#"42["answerSignal",{{"data":{data},"connId":"{conn}","options":{{"z":1, "a":2}}}}]"#
    );
    r.send(Message::text(answer)).unwrap();
    assert_eq!(
        event_text(&mut i, "answer"),
        format!(r#"42["answer",{{"data":{data},"options":{{"z":1, "a":2}}}}]"#)
    );
    // One pair made, its pairing time observed; a second signature finds the pair busy.
    let sig = format!(r#"42["signature",{{"signed":"{signed}","connId":"{conn}"}}]"#);
    r.send(Message::text(sig)).unwrap();
    let busy = "sigyard_mewconnect_v1_refusals_total{reason=\"busy\"}";
    assert_eq!(common::metric_reaches(addr, busy, 1.0), 1.0);
    assert_eq!(
        common::metric(addr, "sigyard_mewconnect_v1_pairings_total"),
        1.0
    );
    let count = "sigyard_pairing_seconds_count{dialect=\"mewconnect_v1\"}";
    assert_eq!(common::metric(addr, count), 1.0);
    common::stop(h);
}
