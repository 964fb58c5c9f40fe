//! A loop turn's sends, made together in one io_uring call (`--batch-sends`, the default) or
//! one by one: many connections answered in the same turns each get every byte, in order, and
//! one that stops reading is waited for without holding up or mixing with the others.

mod common;
use common::*;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use tungstenite::Message;

const CONNS: usize = 16;
const MESSAGES: usize = 200;

fn size(conn: usize, seq: usize) -> usize {
    1 + (seq * 7919 + conn * 104_729) % 12_000
}

fn payload(conn: usize, seq: usize) -> Vec<u8> {
    (0..size(conn, seq))
        .map(|i| (conn * 31 + seq * 7 + i) as u8)
        .collect()
}

/// A masked binary frame (mask key zero: the payload goes as it is).
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x82];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n => {
            f.push(0x80 | 126);
            f.extend((n as u16).to_be_bytes());
        }
    }
    f.extend([0; 4]);
    f.extend(payload);
    f
}

/// One connection: a thread writes its messages raw while this one reads the echoes; the
/// slow one starts reading only after a while, and through a small receive buffer.
fn echo_all(addr: SocketAddr, conn: usize, slow: bool) {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    if slow {
        sock.set_recv_buffer_size(4096).unwrap();
    }
    sock.connect(&addr.into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let (mut ws, _) = tungstenite::client::client(format!("ws://{addr}/echo"), s).unwrap();
    let mut raw = ws.get_mut().try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for seq in 0..MESSAGES {
            raw.write_all(&frame(&payload(conn, seq))).unwrap();
        }
    });
    if slow {
        std::thread::sleep(Duration::from_millis(1500));
    }
    for seq in 0..MESSAGES {
        match ws.read().unwrap() {
            Message::Binary(b) => assert!(
                b[..] == payload(conn, seq)[..],
                "connection {conn}: echo {seq} differs ({} bytes, {} expected)",
                b.len(),
                size(conn, seq)
            ),
            m => panic!("connection {conn}: unexpected {m:?}"),
        }
    }
    writer.join().unwrap();
}

fn many_echoes(batch: bool) {
    let h = start(|b| {
        b.echo(true)
            .threads(1)
            .limits(|l| {
                l.idle_timeout = Duration::ZERO;
                l.ping_interval = Duration::ZERO;
                l.max_messages_per_second = 0;
                l.max_message_bytes_per_second = 0;
            })
            .configure(|c| c.batch_sends = batch)
    });
    let a = h.plain_addr().unwrap();
    let clients: Vec<_> = (0..CONNS)
        .map(|i| std::thread::spawn(move || echo_all(a, i, i == 0)))
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let batched = metric(a, "sigyard_batched_sends_total");
    let calls = metric(a, "sigyard_send_batches_total");
    if !batch {
        assert_eq!(batched, 0.0);
    } else if sigyard_sendbatch::Batch::new(4).is_ok() {
        // 16 connections echoing at once leave several sends in most turns.
        assert!(
            batched > 2.0 * calls && calls > 0.0,
            "{batched} sends in {calls} batches"
        );
    } else {
        eprintln!("io_uring is not available here: the sends were made one by one");
    }
    assert_eq!(metric(a, "sigyard_slow_reader_disconnects_total"), 0.0);
    stop(h);
}

#[test]
fn sixteen_echoing_connections_and_a_stalled_reader_batched() {
    many_echoes(true);
}

#[test]
fn sixteen_echoing_connections_and_a_stalled_reader_one_by_one() {
    many_echoes(false);
}

/// A turn that owes more sends than one call makes (here one y-webrtc publish to 200
/// subscribers, all delivered in the turn that reads it) sends them in calls of at most 16,
/// since each owed send holds a write buffer until it is made; every subscriber still gets
/// every publish, in order.
#[test]
fn a_turn_owing_many_sends_makes_them_in_calls_of_at_most_sixteen() {
    const SUBSCRIBERS: usize = 200;
    const PUBLISHES: usize = 5;
    let h = one_reactor();
    let a = h.plain_addr().unwrap();
    let mut subs: Vec<_> = (0..SUBSCRIBERS).map(|_| subscribed(a)).collect();
    for n in 0..PUBLISHES {
        let publish = format!(r#"{{"type":"publish","topic":"t","data":{n}}}"#);
        subs[n].send(Message::text(publish)).unwrap();
        for (i, ws) in subs.iter_mut().enumerate() {
            let got = ws.read().unwrap().into_text().unwrap();
            let v: serde_json::Value = serde_json::from_str(&got).unwrap();
            assert_eq!(v["data"], n, "subscriber {i}: {got}");
            assert_eq!(v["clients"], SUBSCRIBERS, "subscriber {i}: {got}");
        }
    }
    let batched = metric(a, "sigyard_batched_sends_total");
    let calls = metric(a, "sigyard_send_batches_total");
    if sigyard_sendbatch::Batch::new(4).is_ok() {
        // (A turn's last send may go alone.)
        let deliveries = (SUBSCRIBERS * PUBLISHES) as f64;
        assert!(batched >= 0.9 * deliveries, "{batched} sends batched");
        assert!(
            batched <= 16.0 * calls,
            "{batched} sends in {calls} calls: more than 16 in one"
        );
    }
    stop(h);
}

/// A y-webrtc publish to a topic of two: the delivery to the sender and the one to the other
/// subscriber are owed in the same turn and made in one io_uring call (only a lone send is
/// made by itself).
#[test]
fn a_publish_to_two_makes_both_sends_in_one_call() {
    let h = one_reactor();
    let a = h.plain_addr().unwrap();
    let mut subs: Vec<_> = (0..2).map(|_| subscribed(a)).collect();
    const PUBLISHES: usize = 5;
    let (batched, calls) = (
        metric(a, "sigyard_batched_sends_total"),
        metric(a, "sigyard_send_batches_total"),
    );
    for n in 0..PUBLISHES {
        let publish = format!(r#"{{"type":"publish","topic":"t","data":{n}}}"#);
        subs[n % 2].send(Message::text(publish)).unwrap();
        for ws in &mut subs {
            let got = ws.read().unwrap().into_text().unwrap();
            assert!(got.contains(&format!(r#""data":{n},"clients":2"#)), "{got}");
        }
    }
    if sigyard_sendbatch::Batch::new(4).is_ok() {
        let batched = metric(a, "sigyard_batched_sends_total") - batched;
        let calls = metric(a, "sigyard_send_batches_total") - calls;
        assert_eq!((batched, calls), (2.0 * PUBLISHES as f64, PUBLISHES as f64));
    } else {
        eprintln!("io_uring is not available here: the sends were made one by one");
    }
    stop(h);
}

/// A server with one reactor thread (every send of a turn on one list), without pings, idle
/// timeout or rate limits.
fn one_reactor() -> sigyard::Handle {
    start(|b| {
        b.threads(1).limits(|l| {
            l.idle_timeout = Duration::ZERO;
            l.ping_interval = Duration::ZERO;
            l.max_messages_per_second = 0;
            l.max_message_bytes_per_second = 0;
        })
    })
}

/// A y-webrtc client subscribed to topic `t`.
fn subscribed(a: SocketAddr) -> tungstenite::WebSocket<TcpStream> {
    let s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_nodelay(true).unwrap();
    let mut ws = tungstenite::client::client(format!("ws://{a}/y-webrtc"), s)
        .unwrap()
        .0;
    ws.send(Message::text(r#"{"type":"subscribe","topics":["t"]}"#))
        .unwrap();
    // The pong comes after the subscribe has taken effect.
    ws.send(Message::text(r#"{"type":"ping"}"#)).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text(r#"{"type":"pong"}"#));
    ws
}
