//! Connections that share a key end up on the core that owns it, whichever core accepted them.

mod common;
use common::*;
use tungstenite::Message;

#[test]
fn clients_with_one_key_land_on_one_core() {
    let h = start(|b| b.threads(2));
    let a = h.plain_addr().unwrap();
    // The kernel spreads accepts over both cores' SO_REUSEPORT sockets by hash of the
    // 4-tuple: with 24 clients the chance that all land on the owner by luck is 2^-24.
    let mut clients: Vec<_> = (0..24).map(|_| ws(a, "/echo/room-42")).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let m = Message::text(format!("client {i}"));
        c.send(m.clone()).unwrap();
        assert_eq!(c.read().unwrap(), m);
    }
    let text = h.metrics_text();
    let per_core: Vec<f64> = (0..2)
        .map(|core| {
            let prefix = format!("sigyard_core_connections{{core=\"{core}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    // The 24 WebSockets are all on one core (the scrape itself is a plain HTTP request that
    // went through the metrics handle, not a socket).
    assert!(
        per_core.contains(&24.0) && per_core.contains(&0.0),
        "per core: {per_core:?}\n{text}"
    );
    let moved = metric(a, "sigyard_handoffs_out_total");
    let adopted = metric(a, "sigyard_handoffs_in_total");
    assert!(
        moved >= 1.0,
        "no connection was accepted on the other core?"
    );
    assert_eq!(moved, adopted);
    stop(h);
}

#[test]
fn data_sent_with_the_upgrade_request_survives_the_move() {
    use std::io::{Read, Write};
    let h = start(|b| b.threads(2));
    let a = h.plain_addr().unwrap();
    for i in 0..16 {
        let mut s = std::net::TcpStream::connect(a).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut bytes = ws_request("/echo/room-7").into_bytes();
        // A masked text frame "hi" right behind the request, in the same write.
        bytes.extend_from_slice(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
        s.write_all(&bytes).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        while !got.ends_with(&[0x81, 0x02, b'h', b'i']) {
            let n = s.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "closed before the echo (client {i}): {:?}",
                String::from_utf8_lossy(&got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    }
    stop(h);
}
