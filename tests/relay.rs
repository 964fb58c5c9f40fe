//! The cevitxe / @localfirst/relay dialect over real sockets: introductions (JSON, and relay
//! 4.x MessagePack), the holding table, the cut-through pipe (types, order, close propagation,
//! back-pressure, a 100 MB transfer) and placement of both pipe ends on one core.

mod common;
use common::*;
use rand::{RngCore, SeedableRng};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::WebSocket;
use tungstenite::Message;

type Ws = WebSocket<TcpStream>;

/// The next data message (tungstenite answers pings itself).
fn next(c: &mut Ws) -> Message {
    loop {
        match c.read().expect("a message") {
            Message::Ping(_) | Message::Pong(_) => continue,
            m => return m,
        }
    }
}

fn json(m: Message) -> serde_json::Value {
    serde_json::from_str(m.to_text().expect("text")).expect("json")
}

fn join(c: &mut Ws, keys: &[&str]) {
    c.send(Message::text(
        serde_json::json!({"type": "Join", "join": keys}).to_string(),
    ))
    .unwrap();
}

fn intro(id: &str, keys: &[&str]) -> serde_json::Value {
    serde_json::json!({"type": "Introduction", "id": id, "keys": keys})
}

#[test]
fn two_peers_are_introduced_sender_first() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    let mut alice = ws(a, "/introduction/alice");
    let mut bob = ws(a, "/introduction/bob");
    join(&mut alice, &["doc-1"]);
    join(&mut bob, &["doc-1", "doc-2"]);
    assert_eq!(json(next(&mut bob)), intro("alice", &["doc-1"]));
    assert_eq!(json(next(&mut alice)), intro("bob", &["doc-1"]));
    // A later Join re-introduces every overlap.
    join(&mut alice, &["doc-2"]);
    assert_eq!(json(next(&mut alice)), intro("bob", &["doc-1", "doc-2"]));
    assert_eq!(json(next(&mut bob)), intro("alice", &["doc-1", "doc-2"]));
    // Malformed JSON is ignored and the socket stays.
    alice.send(Message::text("{not json")).unwrap();
    join(&mut alice, &[]);
    assert_eq!(json(next(&mut alice)), intro("bob", &["doc-1", "doc-2"]));
    stop(h);
}

/// A MessagePack string (fixstr or str8), written out here so the test pins the wire bytes.
fn mp_str(out: &mut Vec<u8>, s: &str) {
    let len = u8::try_from(s.len()).unwrap();
    if len < 32 {
        out.push(0xa0 | len);
    } else {
        out.extend_from_slice(&[0xd9, len]);
    }
    out.extend_from_slice(s.as_bytes());
}

/// `{type: ty, documentIds: ids}` as the relay 4.x client packs it (msgpackr: a map16 header).
fn relay4(ty: &str, ids: &[&str]) -> Vec<u8> {
    let mut out = vec![0xde, 0x00, 0x02];
    mp_str(&mut out, "type");
    mp_str(&mut out, ty);
    mp_str(&mut out, "documentIds");
    out.push(0x90 | u8::try_from(ids.len()).unwrap());
    for id in ids {
        mp_str(&mut out, id);
    }
    out
}

/// The binary Introduction sigyard sends a relay 4.x peer (a fixmap, keys in this order).
fn intro_c(id: &str, keys: &[&str]) -> Message {
    let mut out = vec![0x83];
    mp_str(&mut out, "type");
    mp_str(&mut out, "Introduction");
    mp_str(&mut out, "peerId");
    mp_str(&mut out, id);
    mp_str(&mut out, "documentIds");
    out.push(0x90 | u8::try_from(keys.len()).unwrap());
    for k in keys {
        mp_str(&mut out, k);
    }
    Message::binary(out)
}

#[test]
fn relay4_messagepack_peers_are_introduced_in_binary() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    let mut alice = ws(a, "/introduction/alice");
    let mut bob = ws(a, "/introduction/bob");
    let long = "d".repeat(40); // a str8 on the wire
    let send = |c: &mut Ws, bytes: Vec<u8>| c.send(Message::binary(bytes)).unwrap();
    // Both lists in one order: which Join the relay handles second (and so whose order the
    // common list takes) is a race between two sockets. The unit tests pin the order rule.
    send(&mut alice, relay4("Join", &[&long, "doc-1"]));
    send(&mut bob, relay4("Join", &[&long, "doc-1"]));
    assert_eq!(next(&mut bob), intro_c("alice", &[&long, "doc-1"]));
    assert_eq!(next(&mut alice), intro_c("bob", &[&long, "doc-1"]));
    // Malformed Leaves of doc-1 are ignored and the socket stays: truncated, a byte too many,
    // the reserved marker 0xc1, a type that is not UTF-8, ids nested past the depth limit.
    let leave = relay4("Leave", &["doc-1"]);
    send(&mut alice, leave[..leave.len() - 1].to_vec());
    send(&mut alice, [leave.as_slice(), &[0xc0]].concat());
    send(&mut alice, [&leave[..leave.len() - 6], &[0xc1]].concat());
    let mut bad_utf8 = leave.clone();
    bad_utf8[10] = 0xff; // inside "Leave"
    send(&mut alice, bad_utf8);
    let mut deep = leave[..leave.len() - 7].to_vec();
    deep.extend_from_slice(&[0x91; 40]);
    deep.extend_from_slice(&leave[leave.len() - 6..]);
    send(&mut alice, deep);
    // A valid Leave acts; a Join of nothing re-introduces what is left in common.
    send(&mut alice, relay4("Leave", &[&long]));
    send(&mut alice, relay4("Join", &[]));
    assert_eq!(next(&mut alice), intro_c("bob", &["doc-1"]));
    assert_eq!(next(&mut bob), intro_c("alice", &["doc-1"]));
    stop(h);
}

#[test]
fn five_way_join_makes_twenty_introductions_across_cores() {
    let h = start(|b| b.threads(2));
    let a = h.plain_addr().unwrap();
    let ids = ["p1", "p2", "p3", "p4", "p5"];
    let mut peers: Vec<Ws> = ids
        .iter()
        .map(|id| ws(a, &format!("/introduction/{id}")))
        .collect();
    for p in peers.iter_mut() {
        join(p, &["shared"]);
        std::thread::sleep(Duration::from_millis(30)); // one Join at a time, as in the original test
    }
    // Peer i hears about the i earlier peers when it joins, and about each later one.
    let mut total = 0;
    for (i, p) in peers.iter_mut().enumerate() {
        let mut heard = Vec::new();
        for _ in 0..ids.len() - 1 {
            heard.push(json(next(p))["id"].as_str().unwrap().to_string());
        }
        heard.sort();
        let mut others: Vec<String> = ids
            .iter()
            .filter(|x| **x != ids[i])
            .map(|x| x.to_string())
            .collect();
        others.sort();
        assert_eq!(heard, others);
        total += heard.len();
    }
    assert_eq!(total, 20);
    stop(h);
}

/// Two pipe ends, returned once the pipe carries a message each way. (The 101 answers come
/// before the server pairs the sockets on the core that owns the pair: a side that vanished
/// in between would leave the other simply waiting, as the protocol says.)
fn pair(a: SocketAddr, x: &str, y: &str, key: &str) -> (Ws, Ws) {
    let mut first = ws(a, &format!("/connection/{x}/{y}/{key}"));
    let mut second = ws(a, &format!("/connection/{y}/{x}/{key}"));
    first.send(Message::text("sync")).unwrap();
    assert_eq!(next(&mut second), Message::text("sync"));
    second.send(Message::text("sync")).unwrap();
    assert_eq!(next(&mut first), Message::text("sync"));
    (first, second)
}

#[test]
fn held_messages_arrive_in_order_with_their_types_then_the_pipe_flows() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    let mut first = ws(a, "/connection/local-1/remote-1/doc");
    first.send(Message::text("DUDE!!")).unwrap();
    first.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    first.send(Message::text("third")).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut second = ws(a, "/connection/remote-1/local-1/doc");
    assert_eq!(next(&mut second), Message::text("DUDE!!"));
    assert_eq!(next(&mut second), Message::binary(vec![1u8, 2, 3]));
    assert_eq!(next(&mut second), Message::text("third"));
    second.send(Message::text("hello")).unwrap();
    assert_eq!(next(&mut first), Message::text("hello"));
    first.send(Message::binary(vec![9u8; 70_000])).unwrap();
    assert_eq!(next(&mut second), Message::binary(vec![9u8; 70_000]));
    // One pipe joined, its first end having waited at least the 100 ms above.
    assert_eq!(metric_reaches(a, "sigyard_cevitxe_pipes_total", 1.0), 1.0);
    let count = "sigyard_pairing_seconds_count{dialect=\"cevitxe_connection\"}";
    assert_eq!(metric(a, count), 1.0);
    let sum = metric(
        a,
        "sigyard_pairing_seconds_sum{dialect=\"cevitxe_connection\"}",
    );
    assert!((0.1..10.0).contains(&sum), "{sum}");
    stop(h);
}

#[test]
fn a_close_reaches_the_other_end_after_everything_sent_before_it() {
    let h = start(|b| b);
    let (mut x, mut y) = pair(h.plain_addr().unwrap(), "x", "y", "k");
    for i in 0..50 {
        x.send(Message::text(format!("m{i}"))).unwrap();
    }
    x.close(Some(tungstenite::protocol::CloseFrame {
        code: CloseCode::Library(4001),
        reason: "bye".into(),
    }))
    .unwrap();
    let _ = x.flush();
    for i in 0..50 {
        assert_eq!(next(&mut y), Message::text(format!("m{i}")));
    }
    match y.read() {
        Ok(Message::Close(Some(f))) => assert_eq!(f.code, CloseCode::Library(4001)),
        other => panic!("expected the forwarded close, got {other:?}"),
    }
    stop(h);
}

#[test]
fn a_vanished_end_closes_the_other_with_1001() {
    let h = start(|b| b);
    let (x, mut y) = pair(h.plain_addr().unwrap(), "x", "y", "k");
    drop(x); // TCP close without a WebSocket close
    match y.read() {
        Ok(Message::Close(Some(f))) => assert_eq!(f.code, CloseCode::Away),
        other => panic!("expected close 1001, got {other:?}"),
    }
    stop(h);
}

#[test]
fn holding_past_the_bound_closes_the_waiting_socket_1008() {
    let h = start(|b| b.limits(|l| l.pipe_hold_messages = 3));
    let mut w = ws(h.plain_addr().unwrap(), "/connection/a/b/k");
    for i in 0..4 {
        w.send(Message::text(format!("{i}"))).unwrap();
    }
    match w.read() {
        Ok(Message::Close(Some(f))) => {
            assert_eq!(f.code, CloseCode::Policy);
            assert!(f.reason.contains("holding"), "{}", f.reason);
        }
        other => panic!("expected close 1008, got {other:?}"),
    }
    stop(h);
}

#[test]
fn a_hundred_megabytes_through_the_pipe_byte_for_byte() {
    hundred_megabytes(|b| b);
}

/// The same with every read into a standard buffer: no streaming buffers.
#[test]
fn a_hundred_megabytes_through_the_pipe_without_streaming_buffers() {
    hundred_megabytes(|b| b.limits(|l| l.stream_buffer_size = l.buffer_size));
}

fn hundred_megabytes(f: impl FnOnce(sigyard::Builder) -> sigyard::Builder) {
    let h = start(f);
    let (mut x, mut y) = pair(h.plain_addr().unwrap(), "big", "sink", "k");
    const MSG: usize = 64 << 10;
    const COUNT: usize = 1600; // 100 MiB
    let writer = std::thread::spawn(move || {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..COUNT {
            let mut v = vec![0u8; MSG];
            rng.fill_bytes(&mut v);
            x.send(Message::binary(v)).unwrap();
        }
        x
    });
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let t0 = Instant::now();
    for i in 0..COUNT {
        let mut want = vec![0u8; MSG];
        rng.fill_bytes(&mut want);
        assert!(next(&mut y).into_data() == want, "message {i} differs");
    }
    println!("100 MiB through the pipe in {:?}", t0.elapsed());
    drop(writer.join().unwrap());
    stop(h);
}

#[test]
fn a_reader_that_stops_pushes_back_on_the_writer() {
    let h = start(|b| {
        b.limits(|l| l.idle_timeout = Duration::ZERO)
            .limits(|l| l.ping_interval = Duration::ZERO)
    });
    let a = h.plain_addr().unwrap();
    let (mut x, mut y) = pair(a, "fast", "slow", "k");
    // Masked 16 KiB binary frames written raw, as fast as the socket takes them.
    let sent = flood(&mut x, Duration::from_secs(2));
    let m = |name: &str| metric(a, name);
    assert!(
        sent < 32 << 20,
        "the server kept reading ({sent} bytes) although nobody read the other end; slow={} proto={} idle={}",
        m("sigyard_slow_reader_disconnects_total"),
        m("sigyard_protocol_errors_total"),
        m("sigyard_idle_timeouts_total")
    );
    assert!(metric(a, "sigyard_buffers_in_use") <= 8.0);
    // The slow side still gets everything in order once it reads.
    let mut got = 0usize;
    while got + 8 < sent {
        got += next(&mut y).into_data().len() + 4;
        if got >= 1 << 20 {
            break;
        }
    }
    stop(h);
}

#[test]
fn pipe_ends_accepted_on_different_cores_meet_on_one() {
    let h = start(|b| b.threads(2));
    let a = h.plain_addr().unwrap();
    let mut pairs: Vec<(Ws, Ws)> = (0..16)
        .map(|i| pair(a, &format!("l{i}"), &format!("r{i}"), "doc"))
        .collect();
    for (i, (x, y)) in pairs.iter_mut().enumerate() {
        x.send(Message::text(format!("to r{i}"))).unwrap();
        assert_eq!(next(y), Message::text(format!("to r{i}")));
        y.send(Message::binary(vec![i as u8; 3])).unwrap();
        assert_eq!(next(x), Message::binary(vec![i as u8; 3]));
    }
    // 32 sockets over 2 cores by the kernel's hash: some were moved (chance of none: 2^-32).
    assert!(metric(a, "sigyard_handoffs_out_total") >= 1.0);
    stop(h);
}

#[test]
fn a_single_segment_connection_path_is_upgraded_then_closed() {
    let h = start(|b| b);
    let mut c = ws(h.plain_addr().unwrap(), "/connection/qrst7890");
    match c.read() {
        Ok(Message::Close(Some(f))) => {
            assert_eq!(f.code, CloseCode::Policy);
            assert!(
                f.reason.contains("/connection/:local/:remote/:key"),
                "{}",
                f.reason
            );
        }
        other => panic!("expected close 1008, got {other:?}"),
    }
    stop(h);
}

#[test]
fn a_socket_waiting_past_the_hold_timeout_is_closed_1008() {
    let h = start(|b| b.limits(|l| l.pipe_hold_timeout = Duration::from_millis(300)));
    let a = h.plain_addr().unwrap();
    let mut w = ws(a, "/connection/lonely/nobody/k");
    let t0 = Instant::now();
    match w.read() {
        Ok(Message::Close(Some(f))) => {
            assert_eq!(f.code, CloseCode::Policy);
            assert!(f.reason.contains("in time"), "{}", f.reason);
        }
        other => panic!("expected close 1008, got {other:?}"),
    }
    assert!(t0.elapsed() >= Duration::from_millis(250) && t0.elapsed() < Duration::from_secs(3));
    // A pair that meets in time is unaffected by the deadline.
    let (mut x, mut y) = pair(a, "p", "q", "k");
    std::thread::sleep(Duration::from_millis(500));
    x.send(Message::text("still paired")).unwrap();
    assert_eq!(next(&mut y), Message::text("still paired"));
    stop(h);
}
