//! MewConnect v2 over real sockets (PROTOCOLS.md §1.2–§1.8): every parameter and pairing
//! refusal at the upgrade, every signal with its exact text, payload validation, the error
//! frames, disconnects, idle and lifetime limits, pairs whose sockets were accepted on
//! different cores, a receiver racing its initiator's disconnect, and 1,000 concurrent pairs.

mod common;
use common::*;
use serde_json::{json, Value as Json};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::WebSocket;
use tungstenite::Message;

type Ws = WebSocket<TcpStream>;

const SIGNED: &str = "1b93f0aa00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabb1c";

/// A fresh 32-hex connId, unique in this process.
fn conn_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("04{:014x}{:016x}", std::process::id(), n)
}

fn query(role: &str, cid: &str, signed: &str) -> String {
    format!("role={role}&connId={cid}&signed={signed}")
}

/// Open a MewConnect socket; `Err((status, body))` when the upgrade is refused.
fn connect(addr: SocketAddr, path: &str, q: &str) -> Result<Ws, (u16, String)> {
    try_ws(addr, &format!("{path}?{q}"))
}

fn initiator(addr: SocketAddr, cid: &str) -> Ws {
    connect(addr, "/staging", &query("initiator", cid, SIGNED)).expect("initiator accepted")
}

fn receiver(addr: SocketAddr, cid: &str) -> Ws {
    connect(addr, "/staging", &query("receiver", cid, SIGNED)).expect("receiver accepted")
}

/// The refusal of an upgrade, read raw (status line and the exact body).
fn refused(addr: SocketAddr, path_and_query: &str) -> (u16, String) {
    let resp = raw_exchange(addr, ws_request(path_and_query).as_bytes());
    let status = resp[9..12].parse().unwrap_or(0);
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// The next data message as JSON (tungstenite answers pings itself).
fn recv(c: &mut Ws) -> Json {
    loop {
        match c.read().expect("a message") {
            Message::Text(t) => return serde_json::from_str(&t).expect("json"),
            Message::Ping(_) | Message::Pong(_) => continue,
            m => panic!("unexpected {m:?}"),
        }
    }
}

/// Nothing arrives within `ms`.
fn silent(c: &mut Ws, ms: u64) {
    c.get_ref()
        .set_read_timeout(Some(Duration::from_millis(ms)))
        .unwrap();
    match c.read() {
        Err(tungstenite::Error::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("expected silence, got {other:?}"),
    }
    c.get_ref()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
}

fn send(c: &mut Ws, v: Json) {
    c.send(Message::text(v.to_string())).unwrap();
}

fn initiated() -> Json {
    json!({"signal":"initiated","data":"","message":"Connected. Waiting for receiver."})
}

/// An initiator and a receiver, paired, with their arrival signals checked.
fn pair(addr: SocketAddr) -> (Ws, Ws, String) {
    let cid = conn_id();
    let mut i = initiator(addr, &cid);
    assert_eq!(recv(&mut i), initiated());
    let mut r = receiver(addr, &cid);
    assert_eq!(
        recv(&mut i),
        json!({"signal":"confirmation","data":"","message":"Receiver Connected. Please Create WebRTC Offer."})
    );
    assert_eq!(
        recv(&mut r),
        json!({"signal":"confirmation","data":"","message":"Connected. Awaiting WebRTC Offer Details."})
    );
    (i, r, cid)
}

/// An eccrypto-shaped EncryptedPayload (§1.4), as Node's Buffer#toJSON writes it.
fn encrypted(seed: u8, ct_len: usize) -> Json {
    let b = |n: usize| json!({"type": "Buffer", "data": vec![seed; n]});
    json!({"iv": b(16), "ephemPublicKey": b(65), "ciphertext": b(ct_len), "mac": b(32)})
}

#[test]
fn parameter_failures_are_500_at_the_upgrade() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    let cid = conn_id();
    let cases = [
        (format!("connId={cid}&signed=ab"), "Invalid @role"),
        (format!("roles=initiator&connId={cid}"), "Invalid @role"),
        (format!("role=boss&connId={cid}&signed=ab"), "Invalid @role"),
        (
            format!("role=Initiator&connId={cid}&signed=ab"),
            "Invalid @role",
        ),
        ("role=initiator&signed=ab".to_string(), "Invalid @connId"),
        (
            "role=initiator&connId=abc&signed=ab".to_string(),
            "Invalid @connId",
        ),
        (
            format!("role=initiator&connId={cid}0&signed=ab"),
            "Invalid @connId",
        ),
        (
            format!("role=initiator&connId={}&signed=ab", "g".repeat(32)),
            "Invalid @connId",
        ),
        (format!("role=initiator&connId={cid}"), "Invalid @signed"),
        (
            format!("role=receiver&connId={cid}&signed=xyz"),
            "Invalid @signed",
        ),
    ];
    for path in ["/", "/staging", "/dev"] {
        for (q, text) in &cases {
            let (status, body) = refused(a, &format!("{path}?{q}"));
            assert_eq!(
                (status, body.as_str()),
                (500, format!("Failed to connect: {text}").as_str()),
                "{path}?{q}"
            );
        }
    }
    // With none of role, connId and signed, the bare URL is y-webrtc's (its client sends no
    // query): the upgrade succeeds.
    for path in ["/", "/staging", "/dev"] {
        assert_eq!(refused(a, path).0, 101, "{path}");
        assert_eq!(refused(a, &format!("{path}?x=1")).0, 101, "{path}");
    }
    // The same through a real client: the connect call itself fails.
    assert_eq!(
        connect(a, "/staging", "role=x").unwrap_err(),
        (500, "Failed to connect: Invalid @role".into())
    );
    // Plain GETs keep their meaning: `/` is the status page, the other paths want an upgrade.
    assert!(http_get(a, "/").starts_with("HTTP/1.1 200"));
    assert!(http_get(a, "/staging").starts_with("HTTP/1.1 426"));
    // Nothing was admitted by any of this.
    assert_eq!(recv(&mut initiator(a, &cid)), initiated());
    stop(h);
}

#[test]
fn pairing_failures_are_404_at_the_upgrade() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    let cid = conn_id();
    let refuse = |role: &str, cid: &str, signed: &str| {
        connect(a, "/staging", &query(role, cid, signed))
            .map(|_| ())
            .unwrap_err()
    };
    let text = |t: &str| format!("Failed to connect: {t}");
    assert_eq!(
        refuse("receiver", &cid, SIGNED),
        (404, text("Connection pair doesn't exist!"))
    );
    let mut i = initiator(a, &cid);
    assert_eq!(recv(&mut i), initiated());
    assert_eq!(
        refuse("initiator", &cid, SIGNED),
        (404, text("@connId already exists!"))
    );
    // `signed` is compared as an exact, case-sensitive string.
    assert_eq!(
        refuse("receiver", &cid, &SIGNED.to_uppercase()),
        (404, text("Invalid @signed"))
    );
    assert_eq!(
        refuse("receiver", &cid, "1b"),
        (404, text("Invalid @signed"))
    );
    let mut r = receiver(a, &cid);
    recv(&mut i);
    recv(&mut r);
    // Third parties, whatever their role.
    assert_eq!(
        refuse("receiver", &cid, SIGNED),
        (
            404,
            text("A connection pair already exists for this @connId")
        )
    );
    assert_eq!(
        refuse("initiator", &cid, SIGNED),
        (404, text("@connId already exists!"))
    );
    // The initiator leaves; the receiver stays: no receiver and no initiator may come back.
    i.close(None).unwrap();
    assert_eq!(
        recv(&mut r),
        json!({"signal":"disconnected","data":"","message":"initiator has disconnected"})
    );
    assert_eq!(
        refuse("receiver", &cid, SIGNED),
        (404, text("Initiator has disconnected"))
    );
    assert_eq!(
        refuse("initiator", &cid, SIGNED),
        (404, text("@connId already exists!"))
    );
    // Each refusal counted by its reason, and the one pair made.
    for (reason, n) in [
        ("no_pair", 1.0),
        ("connid_exists", 3.0),
        ("bad_signed", 2.0),
        ("pair_full", 1.0),
        ("initiator_gone", 1.0),
    ] {
        let series = format!("sigyard_mewconnect_refusals_total{{reason=\"{reason}\"}}");
        assert_eq!(metric_reaches(a, &series, n), n, "{series}");
    }
    assert_eq!(metric(a, "sigyard_mewconnect_pairings_total"), 1.0);
    let count = "sigyard_pairing_seconds_count{dialect=\"mewconnect\"}";
    assert_eq!(metric(a, count), 1.0);
    // Once the receiver is gone too, the connId is free again.
    r.close(None).unwrap();
    while r.read().is_ok() {}
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match connect(a, "/staging", &query("initiator", &cid, SIGNED)) {
            Ok(mut i2) => {
                assert_eq!(recv(&mut i2), initiated());
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "connId not freed: {e:?}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let failures = metric(a, "sigyard_handshake_failures_total");
    assert!(failures >= 8.0, "refusals are counted: {failures}");
    stop(h);
}

#[test]
fn offer_and_answer_are_relayed_verbatim() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    let (mut i, mut r, cid) = pair(a);
    let offer = json!({"data": encrypted(1, 300), "connId": cid, "options": {"iceServers": []}});
    send(&mut i, json!({"action": "offersignal", "data": offer}));
    assert_eq!(
        recv(&mut r),
        json!({"signal":"offer","data":offer,"message":"Initiator sent WebRTC Offer. Please respond."})
    );
    // The Android receiver's shape (connId, then data), and the exact bytes of `data`.
    let answer = format!(r#"{{"connId":"{cid}","data":{}}}"#, encrypted(2, 99));
    i.get_mut().set_nodelay(true).unwrap();
    r.send(Message::text(format!(
        r#"{{"action":"answersignal","data":{answer}}}"#
    )))
    .unwrap();
    match i.read().unwrap() {
        Message::Text(t) => assert_eq!(
            t.as_str(),
            format!(
                r#"{{"signal":"answer","data":{answer},"message":"Receiver sent WebRTC Answer."}}"#
            )
        ),
        m => panic!("{m:?}"),
    }
    // A test receiver's answer without connId; an offer of a realistic 20 KB.
    send(
        &mut r,
        json!({"action": "answersignal", "data": {"data": encrypted(3, 5)}}),
    );
    assert_eq!(recv(&mut i)["data"], json!({"data": encrypted(3, 5)}));
    let big = json!({"data": encrypted(4, 20_000), "connId": cid});
    send(&mut i, json!({"action": "offersignal", "data": big}));
    assert_eq!(recv(&mut r)["data"], big);
    stop(h);
}

#[test]
fn invalid_payloads_are_not_relayed_and_get_error_frames() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    let (mut i, mut r, cid) = pair(a);
    let mut short_iv = encrypted(1, 8);
    short_iv["iv"]["data"] = json!([1, 2, 3]);
    let bad = [
        json!({"action": "offersignal", "data": {}}),
        json!({"action": "offersignal", "data": "invalid"}),
        json!({"action": "offersignal", "data": {"data": "invalid"}}),
        json!({"action": "offersignal"}),
        json!({"action": "offersignal", "data": {"data": short_iv, "connId": cid}}),
        json!({"action": "answersignal", "data": {"data": encrypted(1, 8), "connId": "short"}}),
        json!({"action": "answersignal", "data": {"data": encrypted(1, 8), "options": 7}}),
    ];
    let mut connection_id = None;
    let mut request_ids = std::collections::HashSet::new();
    for frame in &bad {
        send(&mut i, frame.clone());
        let e = recv(&mut i);
        assert_eq!(e["message"], "Internal server error", "{frame}");
        let id = e["connectionId"].as_str().unwrap().to_string();
        assert_eq!(id.len(), 16);
        assert_eq!(
            connection_id.get_or_insert(id.clone()),
            &id,
            "one id per connection"
        );
        assert!(request_ids.insert(e["requestId"].as_str().unwrap().to_string()));
    }
    for frame in [
        "not json",
        "[1]",
        r#"{"action":"nope"}"#,
        r#"{"action":3}"#,
        "{}",
    ] {
        r.send(Message::text(frame)).unwrap();
        let e = recv(&mut r);
        assert_eq!(e["message"], "Forbidden", "{frame}");
        assert_ne!(e["connectionId"].as_str(), connection_id.as_deref());
    }
    r.send(Message::binary(b"{\"action\":\"ping\"}".to_vec()))
        .unwrap();
    assert_eq!(recv(&mut r)["message"], "Forbidden");
    // None of it reached the other side, and both sockets still work.
    silent(&mut r, 300);
    silent(&mut i, 50);
    send(&mut i, json!({"action": "ping"}));
    assert_eq!(
        recv(&mut i),
        json!({"signal":"pong","data":"","message":"pong"})
    );
    stop(h);
}

#[test]
fn error_frames_can_be_switched_off() {
    let h = start(|b| b.configure(|c| c.mew.error_frames = false));
    let a = h.plain_addr().unwrap();
    let (mut i, mut r, _) = pair(a);
    i.send(Message::text("nonsense")).unwrap();
    send(&mut i, json!({"action": "offersignal", "data": {}}));
    silent(&mut i, 300);
    silent(&mut r, 50);
    stop(h);
}

#[test]
fn offer_before_the_receiver_is_dropped() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    let cid = conn_id();
    let mut i = initiator(a, &cid);
    recv(&mut i);
    send(
        &mut i,
        json!({"action": "offersignal", "data": {"data": encrypted(1, 4), "connId": cid}}),
    );
    assert_eq!(recv(&mut i)["message"], "Internal server error");
    // The receiver that arrives later gets its confirmation, not the old offer.
    let mut r = receiver(a, &cid);
    assert_eq!(recv(&mut r)["signal"], "confirmation");
    silent(&mut r, 200);
    stop(h);
}

#[test]
fn ping_rtcconnected_and_tryturn() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    let (mut i, mut r, cid) = pair(a);
    for c in [&mut i, &mut r] {
        send(c, json!({"action": "ping", "data": {}}));
        assert_eq!(recv(c), json!({"signal":"pong","data":"","message":"pong"}));
    }
    // tryturn from either side: turntoken to the initiator, attemptingturn to the receiver.
    for who in 0..2 {
        let from = if who == 0 { &mut i } else { &mut r };
        send(from, json!({"action": "tryturn", "data": {"connId": cid}}));
        let token = recv(&mut i);
        assert_eq!(token["signal"], "turntoken");
        assert_eq!(token["message"], "TURN server credentials created");
        let servers = token["data"]["iceServers"].as_array().unwrap().clone();
        assert!(!servers.is_empty());
        for s in &servers {
            assert!(s["url"].is_string(), "{s}");
            assert_eq!(s["urls"], s["url"], "{s}");
        }
        assert!(token["data"]["ttl"].is_string());
        let turn = recv(&mut r);
        assert_eq!(
            turn,
            json!({"signal":"attemptingturn","data":{"data":servers},"message":"TURN server credentials created"})
        );
    }
    // rtcconnected: `disconnect` to the sender only; nothing closes; the Android form omits data.
    send(&mut i, json!({"action": "rtcconnected", "data": "ab12"}));
    assert_eq!(
        recv(&mut i),
        json!({"signal":"disconnect","message":"WebRTC Connection Established. Ready for disconnect."})
    );
    r.send(Message::text(r#"{"action":"rtcconnected"}"#))
        .unwrap();
    assert_eq!(recv(&mut r)["signal"], "disconnect");
    silent(&mut i, 200);
    send(&mut r, json!({"action": "ping"}));
    assert_eq!(recv(&mut r)["signal"], "pong");
    stop(h);
}

#[test]
fn the_remaining_peer_hears_of_a_disconnect() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    // The receiver leaves (close handshake).
    let (mut i, mut r, _) = pair(a);
    r.close(None).unwrap();
    assert_eq!(
        recv(&mut i),
        json!({"signal":"disconnected","data":"","message":"receiver has disconnected"})
    );
    // The initiator vanishes without a close frame.
    let (i2, mut r2, _) = pair(a);
    drop(i2);
    assert_eq!(
        recv(&mut r2),
        json!({"signal":"disconnected","data":"","message":"initiator has disconnected"})
    );
    stop(h);
}

#[test]
fn receiver_racing_the_initiators_disconnect() {
    let h = start(|b| b.threads(2));
    let a = h.plain_addr().unwrap();
    let (mut admitted, mut refused_n) = (0, 0);
    for n in 0..60 {
        let cid = conn_id();
        let mut i = initiator(a, &cid);
        recv(&mut i);
        let closer = std::thread::spawn(move || {
            if n % 2 == 0 {
                let _ = i.close(None);
                let _ = i.flush();
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(i);
        });
        match connect(a, "/staging", &query("receiver", &cid, SIGNED)) {
            Ok(mut r) => {
                // Admitted while the initiator was still there: confirmation, then the news.
                assert_eq!(recv(&mut r)["signal"], "confirmation");
                assert_eq!(
                    recv(&mut r),
                    json!({"signal":"disconnected","data":"","message":"initiator has disconnected"})
                );
                admitted += 1;
            }
            Err((status, body)) => {
                assert_eq!(status, 404);
                assert_eq!(body, "Failed to connect: Connection pair doesn't exist!");
                refused_n += 1;
            }
        }
        closer.join().unwrap();
    }
    println!("receivers admitted before the disconnect: {admitted}, refused after it: {refused_n}");
    stop(h);
}

#[test]
fn pairs_accepted_on_different_cores() {
    let h = start(|b| b.threads(2));
    let a = h.plain_addr().unwrap();
    let mut pairs: Vec<_> = (0..32).map(|_| pair(a)).collect();
    for (i, r, cid) in &mut pairs {
        let offer = json!({"data": encrypted(9, 64), "connId": cid});
        send(i, json!({"action": "offersignal", "data": offer}));
        assert_eq!(recv(r)["data"], offer);
        let answer = json!({"data": encrypted(8, 64), "connId": cid});
        send(r, json!({"action": "answersignal", "data": answer}));
        assert_eq!(recv(i)["data"], answer);
    }
    // 64 sockets over two cores: some were accepted away from their pair's core and moved
    // there before their upgrade was answered.
    // (Read through the handle: a scrape over a socket would count itself.)
    let text = h.metrics_text();
    let value = |prefix: &str| -> f64 {
        let line = text.lines().find_map(|l| l.strip_prefix(prefix));
        line.unwrap().trim().parse().unwrap()
    };
    let moved = value("sigyard_handoffs_out_total ");
    assert!(moved >= 1.0, "no socket was accepted on the other core?");
    assert_eq!(moved, value("sigyard_handoffs_in_total "));
    let per_core: Vec<f64> = (0..2)
        .map(|core| value(&format!("sigyard_core_connections{{core=\"{core}\"}} ")))
        .collect();
    assert_eq!(per_core.iter().sum::<f64>(), 64.0, "{per_core:?}");
    // A refusal decided after a move answers correctly too.
    for (_, _, cid) in &pairs {
        let e = connect(a, "/staging", &query("receiver", cid, SIGNED)).map(|_| ());
        assert_eq!(e.unwrap_err().0, 404);
    }
    stop(h);
}

#[test]
fn idle_timeout_closes_and_tells_the_peer() {
    let h = start(|b| b.configure(|c| c.mew.idle_timeout = Duration::from_millis(600)));
    let a = h.plain_addr().unwrap();
    let (mut i, mut r, _) = pair(a);
    let t0 = Instant::now();
    // The initiator keeps sending; the receiver says nothing and is closed.
    let mut closed = None;
    while closed.is_none() && t0.elapsed() < Duration::from_secs(5) {
        send(&mut i, json!({"action": "ping"}));
        assert_eq!(recv(&mut i)["signal"], "pong");
        r.get_ref()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match r.read() {
            Ok(Message::Close(Some(f))) => closed = Some(f),
            Ok(m) => panic!("unexpected {m:?}"),
            Err(_) => {}
        }
    }
    let f = closed.expect("receiver closed for idleness");
    assert_eq!(
        (f.code, f.reason.as_str()),
        (CloseCode::Away, "idle timeout")
    );
    assert!(t0.elapsed() >= Duration::from_millis(500));
    let _ = r.flush();
    assert_eq!(
        recv(&mut i),
        json!({"signal":"disconnected","data":"","message":"receiver has disconnected"})
    );
    stop(h);
}

#[test]
fn lifetime_cap_closes_even_active_sockets() {
    let h = start(|b| b.configure(|c| c.mew.max_lifetime = Duration::from_millis(700)));
    let a = h.plain_addr().unwrap();
    let cid = conn_id();
    let mut i = initiator(a, &cid);
    recv(&mut i);
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < Duration::from_secs(5), "never closed");
        i.send(Message::text(r#"{"action":"ping"}"#)).unwrap();
        match i.read() {
            Ok(Message::Text(_)) => std::thread::sleep(Duration::from_millis(50)),
            Ok(Message::Close(Some(f))) => {
                assert_eq!(f.code, CloseCode::Away);
                assert_eq!(f.reason.as_str(), "connection lifetime limit reached");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(t0.elapsed() >= Duration::from_millis(600));
    stop(h);
}

#[test]
fn configured_paths_only() {
    let h = start(|b| b.configure(|c| c.mew.paths = vec!["/mew".into()]));
    let a = h.plain_addr().unwrap();
    let cid = conn_id();
    let mut i = connect(a, "/mew", &query("initiator", &cid, SIGNED)).unwrap();
    assert_eq!(recv(&mut i), initiated());
    // Elsewhere a MewConnect upgrade is not MewConnect's: an upgrade no dialect claims is
    // y-webrtc's, which answers nothing until a frame of its own comes.
    let mut stray = ws(a, &format!("/staging?{}", query("receiver", &cid, SIGNED)));
    stray
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(stray.read().is_err(), "silent");
    stop(h);
}

#[test]
fn a_thousand_concurrent_pairs() {
    let h = start(|b| b.threads(2));
    let a = h.plain_addr().unwrap();
    const N: usize = 1000;
    let cids: Vec<String> = (0..N).map(|_| conn_id()).collect();
    let mut inits: Vec<Ws> = cids.iter().map(|c| initiator(a, c)).collect();
    for i in &mut inits {
        assert_eq!(recv(i)["signal"], "initiated");
    }
    let mut recvs: Vec<Ws> = cids.iter().map(|c| receiver(a, c)).collect();
    for (i, r) in inits.iter_mut().zip(&mut recvs) {
        assert_eq!(recv(i)["signal"], "confirmation");
        assert_eq!(recv(r)["signal"], "confirmation");
    }
    for (k, i) in inits.iter_mut().enumerate() {
        let offer = json!({"data": encrypted((k % 256) as u8, 200), "connId": cids[k]});
        send(i, json!({"action": "offersignal", "data": offer}));
    }
    for (k, r) in recvs.iter_mut().enumerate() {
        let m = recv(r);
        assert_eq!(m["signal"], "offer");
        assert_eq!(
            m["data"]["connId"], cids[k],
            "each offer reaches its own receiver"
        );
        send(
            r,
            json!({"action": "answersignal", "data": {"data": encrypted(1, 100), "connId": cids[k]}}),
        );
    }
    for i in &mut inits {
        assert_eq!(recv(i)["signal"], "answer");
    }
    let open = metric(a, "sigyard_websocket_connections{dialect=\"mewconnect\"}");
    assert_eq!(open, (2 * N) as f64);
    stop(h);
}

/// With a TURN server and secret configured, `tryturn` hands out TURN REST credentials minted
/// for this pair's `connId`, the same in the token's `username`/`password` and in the entry.
#[test]
fn tryturn_carries_turn_rest_credentials_for_the_conn_id() {
    let h = start(|b| {
        b.ice(|ice| {
            ice.servers = vec![
                "stun:127.0.0.1:3478".into(),
                "turn:127.0.0.1:3478?transport=udp".into(),
            ];
            ice.turn_secrets = vec![sigyard::config::Secret::new("pair-secret")];
            ice.turn_ttl = Duration::from_secs(600);
        })
    });
    let (mut i, mut r, cid) = pair(h.plain_addr().unwrap());
    send(
        &mut r,
        json!({"action": "tryturn", "data": {"connId": cid}}),
    );
    let token = recv(&mut i)["data"].clone();
    let turn = recv(&mut r)["data"]["data"].clone();
    let servers = token["iceServers"].as_array().unwrap();
    assert_eq!(servers.len(), 2, "{token}");
    assert_eq!(&turn, &token["iceServers"]);
    let t = &servers[1];
    assert_eq!(t["url"], "turn:127.0.0.1:3478?transport=udp");
    assert_eq!(t["urls"], t["url"]);
    let user = t["username"].as_str().unwrap();
    let (expiry, who) = user.split_once(':').unwrap();
    assert_eq!(who, cid);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        (now + 590..=now + 610).contains(&expiry),
        "{expiry} vs {now}"
    );
    assert_eq!(token["username"], t["username"]);
    assert_eq!(token["password"], t["credential"]);
    assert_eq!(token["ttl"], "600");
    assert!(servers[0].get("username").is_none());
    stop(h);
}
