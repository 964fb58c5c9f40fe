//! The WebTorrent tracker (PROTOCOLS-beyond.md §9) over real sockets: `/announce` and the bare
//! URL told apart from y-webrtc by the first frame, announce responses and offers in the
//! original's member order, answers relayed, scrape, failures without closing the socket,
//! closing a socket taking its peers out of their swarms, the options and the metrics.

mod common;
use common::*;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<TcpStream>;

fn id(c: char) -> String {
    std::iter::repeat(c).take(20).collect()
}

fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn send(c: &mut Ws, t: &str) {
    c.send(Message::text(t)).unwrap();
}

fn announce(ih: &str, peer: &str, extra: &str) -> String {
    format!(
        r#"{{"numwant":5,"uploaded":0,"downloaded":0{extra},"action":"announce","info_hash":{},"peer_id":{}}}"#,
        js(ih),
        js(peer)
    )
}

fn response(c: u32, i: u32, ih: &str) -> String {
    format!(
        r#"{{"complete":{c},"incomplete":{i},"action":"announce","interval":120,"info_hash":{}}}"#,
        js(ih)
    )
}

/// A peer that announced `ih` as `who` with one offer; its announce response read.
fn peer(a: SocketAddr, path: &str, ih: &str, who: &str, complete: u32, incomplete: u32) -> Ws {
    let mut c = ws(a, path);
    let offer = r#","offers":[{"offer":{"type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1"},"offer_id":"oooooooooooooooooooo"}]"#;
    send(
        &mut c,
        &announce(ih, who, &format!(r#","left":1,"event":"started"{offer}"#)),
    );
    assert_eq!(recv_text(&mut c), response(complete, incomplete, ih));
    c
}

#[test]
fn a_swarm_relays_offers_and_answers_on_announce_and_the_bare_url() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    let ih = id('h');
    // The upstream test URL and the bare URL the browser client uses.
    let mut alice = peer(a, "/announce", &ih, &id('A'), 0, 1);
    let mut bob = peer(a, "/", &ih, &id('B'), 0, 2);
    let offer = recv_text(&mut alice);
    assert_eq!(
        offer,
        format!(
            r#"{{"action":"announce","offer":{{"type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1"}},"offer_id":"oooooooooooooooooooo","peer_id":{},"info_hash":{}}}"#,
            js(&id('B')),
            js(&ih)
        )
    );
    send(
        &mut alice,
        &format!(
            r#"{{"action":"announce","info_hash":{},"peer_id":{},"to_peer_id":{},"answer":{{"type":"answer","sdp":"v=0 a"}},"offer_id":"oooooooooooooooooooo"}}"#,
            js(&ih),
            js(&id('A')),
            js(&id('B'))
        ),
    );
    assert_eq!(
        recv_text(&mut bob),
        format!(
            r#"{{"action":"announce","answer":{{"type":"answer","sdp":"v=0 a"}},"offer_id":"oooooooooooooooooooo","peer_id":{},"info_hash":{}}}"#,
            js(&id('A')),
            js(&ih)
        )
    );
    assert!(quiet(&mut alice), "no response to an answering announce");
    // Scrape: the swarm and an unknown hash.
    send(
        &mut bob,
        &format!(
            r#"{{"action":"scrape","info_hash":[{},{}]}}"#,
            js(&ih),
            js(&id('x'))
        ),
    );
    assert_eq!(
        recv_text(&mut bob),
        format!(
            r#"{{"action":"scrape","files":{{{}:{{"complete":0,"incomplete":2,"downloaded":0}},{}:{{"complete":0,"incomplete":0,"downloaded":0}}}},"flags":{{"min_request_interval":600}}}}"#,
            js(&ih),
            js(&id('x'))
        )
    );
    assert_eq!(metric_reaches(a, "sigyard_webtorrent_swarms", 1.0), 1.0);
    assert_eq!(metric_reaches(a, "sigyard_webtorrent_peers", 2.0), 2.0);
    assert_eq!(
        metric_reaches(a, "sigyard_webtorrent_offers_relayed_total", 1.0),
        1.0
    );
    assert_eq!(
        metric_reaches(a, "sigyard_webtorrent_answers_relayed_total", 1.0),
        1.0
    );
    assert_eq!(
        metric_reaches(a, "sigyard_webtorrent_announces_total", 3.0),
        3.0
    );
    assert_eq!(
        metric_reaches(
            a,
            "sigyard_websocket_connections{dialect=\"webtorrent\"}",
            1.0
        ),
        1.0
    );
    // Closing a socket takes its peer out of the swarm.
    bob.close(None).unwrap();
    drop(bob);
    std::thread::sleep(Duration::from_millis(150));
    send(&mut alice, &announce(&ih, &id('A'), r#","left":0"#));
    assert_eq!(recv_text(&mut alice), response(1, 0, &ih));
    stop(h);
}

#[test]
fn bad_requests_get_a_failure_reason_and_the_socket_stays() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    let mut c = ws(a, "/announce");
    let ih = id('h');
    let cases = [
        (
            "not json".to_string(),
            r#"{"failure reason":"Invalid request"}"#.to_string(),
        ),
        (
            r#"{"action":"connect"}"#.into(),
            r#"{"failure reason":"invalid action in WS request: connect"}"#.into(),
        ),
        (
            r#"{"action":"announce","info_hash":"short"}"#.into(),
            r#"{"action":"announce","failure reason":"invalid info_hash"}"#.into(),
        ),
        (
            announce(&ih, "x", ""),
            format!(
                r#"{{"action":"announce","failure reason":"invalid peer_id","info_hash":{}}}"#,
                js(&ih)
            ),
        ),
        (
            announce(&ih, &id('A'), r#","event":"bogus""#),
            format!(
                r#"{{"action":"announce","failure reason":"invalid event","info_hash":{}}}"#,
                js(&ih)
            ),
        ),
        (
            r#"{"action":"scrape","info_hash":5}"#.into(),
            r#"{"action":"scrape","failure reason":"invalid info_hash"}"#.into(),
        ),
        (
            r#"{"action":"scrape"}"#.into(),
            r#"{"action":"scrape","failure reason":"Full scrapes are not allowed"}"#.into(),
        ),
    ];
    for (frame, want) in cases {
        send(&mut c, &frame);
        assert_eq!(recv_text(&mut c), want, "for {frame}");
    }
    // Binary frames are requests too; the socket still works.
    c.send(Message::binary(announce(&ih, &id('A'), "").into_bytes()))
        .unwrap();
    assert_eq!(recv_text(&mut c), response(0, 1, &ih));
    assert_eq!(
        metric_reaches(a, "sigyard_webtorrent_failures_total", 7.0),
        7.0
    );
    stop(h);
}

#[test]
fn the_first_frame_tells_the_tracker_from_y_webrtc() {
    let h = start(|b| b);
    let a = h.plain_addr().unwrap();
    let mut t = ws(a, "/");
    let mut y = ws(a, "/");
    // Neither dialect's frame on the bare URL: dropped, nothing said.
    send(&mut t, "hello");
    send(&mut t, r#"{"x":1}"#);
    assert!(quiet(&mut t));
    send(&mut y, r#"{"type":"ping"}"#);
    assert_eq!(recv_text(&mut y), r#"{"type":"pong"}"#);
    send(
        &mut t,
        r#"{"action":"scrape","info_hash":"hhhhhhhhhhhhhhhhhhhh"}"#,
    );
    assert!(recv_text(&mut t).starts_with(r#"{"action":"scrape","files":"#));
    // Decided: each stays in its dialect.
    send(&mut y, &announce(&id('h'), &id('A'), ""));
    assert!(quiet(&mut y));
    send(&mut t, r#"{"type":"ping"}"#);
    assert_eq!(
        recv_text(&mut t),
        r#"{"failure reason":"invalid action in WS request: undefined"}"#
    );
    assert_eq!(
        metric_reaches(
            a,
            "sigyard_websocket_connections{dialect=\"ywebrtc_or_webtorrent\"}",
            2.0
        ),
        2.0
    );
    // A plain request on the tracker's path gets the original's 404.
    let r = http_get(a, "/announce");
    assert!(
        r.starts_with("HTTP/1.1 404") && r.ends_with("404 Not Found"),
        "{r}"
    );
    stop(h);
}

#[test]
fn options_interval_offers_and_allow_list() {
    let h = start(|b| {
        b.configure(|c| {
            c.webtorrent.interval_s = 30;
            c.webtorrent.max_offers = 1;
            let allowed = [*b"hhhhhhhhhhhhhhhhhhhh"].into_iter().collect();
            c.webtorrent.allowed = Some(std::sync::Arc::new(allowed));
            c.webtorrent_paths = vec!["/tracker".into()];
        })
    });
    let a = h.plain_addr().unwrap();
    let ih = id('h');
    let mut c = ws(a, "/tracker");
    send(&mut c, &announce(&ih, &id('A'), ""));
    assert_eq!(
        recv_text(&mut c),
        response(0, 1, &ih).replace("\"interval\":120", "\"interval\":30")
    );
    send(&mut c, &announce(&id('x'), &id('A'), ""));
    assert_eq!(
        recv_text(&mut c),
        format!(
            r#"{{"action":"announce","failure reason":"Info hash not allowed","info_hash":{}}}"#,
            js(&id('x'))
        )
    );
    // Two others in the swarm, two offers: one goes out.
    let mut others: Vec<Ws> = ['B', 'C']
        .iter()
        .map(|&p| {
            let mut o = ws(a, "/tracker");
            send(&mut o, &announce(&ih, &id(p), ""));
            recv_text(&mut o);
            o
        })
        .collect();
    send(
        &mut c,
        &announce(
            &ih,
            &id('A'),
            r#","offers":[{"offer":1,"offer_id":"a"},{"offer":2,"offer_id":"b"}]"#,
        ),
    );
    recv_text(&mut c);
    let got: usize = others.iter_mut().map(|o| usize::from(!quiet(o))).sum();
    assert_eq!(got, 1, "--webtorrent-max-offers 1");
    stop(h);
}

#[test]
fn a_peer_that_falls_behind_loses_offers_not_its_connection() {
    let h = start(|b| b.limits(|l| l.max_outbound_bytes = 256 << 10));
    let a = h.plain_addr().unwrap();
    let ih = id('h');
    // A small receive buffer: the kernel would otherwise grow it (tcp_rmem allows 32 MiB
    // here) until it holds every offer, and nothing would be left for the server to drop.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&a.into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (mut slow, _) = tungstenite::client::client(format!("ws://{a}/announce"), s).unwrap();
    send(&mut slow, &announce(&ih, &id('S'), ""));
    assert_eq!(recv_text(&mut slow), response(0, 1, &ih));
    // 4 MiB of offers for a peer that reads nothing: far past the kernel's buffers and
    // --max-outbound-bytes (256 KiB here).
    let mut fast = ws(a, "/announce");
    let sdp = "x".repeat(4096);
    for _ in 0..1024 {
        let offer = format!(r#","offers":[{{"offer":{{"sdp":"{sdp}"}},"offer_id":"o"}}]"#);
        send(&mut fast, &announce(&ih, &id('F'), &offer));
        assert_eq!(recv_text(&mut fast), response(0, 2, &ih));
    }
    assert!(metric(a, "sigyard_lossy_messages_dropped_total") > 0.0);
    assert_eq!(metric(a, "sigyard_slow_reader_disconnects_total"), 0.0);
    // The slow peer is still there: what was queued for it arrives, then answers to it again.
    slow.get_mut()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut offers = 0;
    loop {
        send(
            &mut slow,
            &format!(r#"{{"action":"scrape","info_hash":{}}}"#, js(&ih)),
        );
        let got = loop {
            let m = recv_text(&mut slow);
            if m.starts_with(r#"{"action":"scrape""#) {
                break m;
            }
            offers += 1;
        };
        assert!(got.contains(r#""incomplete":2"#), "{got}");
        if offers > 0 && quiet(&mut slow) {
            break;
        }
    }
    assert!(
        offers > 0 && offers < 1024,
        "{offers} of 1024 offers arrived"
    );
    stop(h);
}

#[test]
fn a_bad_allow_list_stops_the_start() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sigyard"))
        .args([
            "--webtorrent-info-hashes",
            "/nonexistent/hashes",
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--webtorrent-info-hashes") && err.contains("/nonexistent/hashes"),
        "{err}"
    );
}

/// Sockets on both cores of a two-core server: each `sigyard_core_connections` above zero.
fn on_both_cores(a: SocketAddr, n: usize, path: &str) -> Vec<Ws> {
    let socks: Vec<Ws> = (0..n).map(|_| ws(a, path)).collect();
    for core in 0..2 {
        let name = format!("sigyard_core_connections{{core=\"{core}\"}}");
        assert!(metric(a, &name) > 0.0, "no socket landed on core {core}");
    }
    socks
}

#[test]
fn swarms_span_the_cores_of_a_node() {
    let h = start(|b| b.threads(2));
    let a = h.plain_addr().unwrap();
    let ih = id('h');
    let peers: Vec<String> = (0..12u8).map(|i| id(char::from(b'a' + i))).collect();
    let mut socks = on_both_cores(a, peers.len(), "/announce");
    // Every socket meets the one swarm, wherever its core: the counts grow by one each.
    for (i, (s, p)) in socks.iter_mut().zip(&peers).enumerate() {
        send(s, &announce(&ih, p, r#","left":1"#));
        assert_eq!(recv_text(s), response(0, i as u32 + 1, &ih));
    }
    // An offer from the last reaches one of the others, and its answer comes back.
    let offer = r#","offers":[{"offer":{"type":"offer","sdp":"x"},"offer_id":"o1"}]"#;
    let last = socks.len() - 1;
    send(&mut socks[last], &announce(&ih, &peers[last], offer));
    assert_eq!(recv_text(&mut socks[last]), response(0, 12, &ih));
    let (got, text) = (0..last)
        .find_map(|i| {
            let s = socks[i].get_ref().try_clone().unwrap();
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut peek = [0u8; 1];
            s.peek(&mut peek)
                .ok()
                .map(|_| (i, recv_text(&mut socks[i])))
        })
        .expect("an offer reached a peer");
    assert!(text.contains(r#""offer_id":"o1""#), "{text}");
    let answer = format!(
        r#"{{"action":"announce","info_hash":{},"peer_id":{},"to_peer_id":{},"answer":{{"type":"answer","sdp":"y"}},"offer_id":"o1"}}"#,
        js(&ih),
        js(&peers[got]),
        js(&peers[last])
    );
    send(&mut socks[got], &answer);
    let relayed = recv_text(&mut socks[last]);
    assert!(
        relayed.contains(r#""answer":{"type":"answer","sdp":"y"}"#),
        "{relayed}"
    );
    // A scrape gathers its swarms from wherever they are, in the order asked.
    let other = id('o');
    for (s, p) in socks.iter_mut().zip(&peers).take(3) {
        send(s, &announce(&other, p, r#","left":0"#));
    }
    for s in socks.iter_mut().take(3) {
        assert!(recv_text(s).contains(r#""action":"announce""#));
    }
    let scrape = format!(
        r#"{{"action":"scrape","info_hash":[{},{},{}]}}"#,
        js(&other),
        js(&id('z')),
        js(&ih)
    );
    send(&mut socks[5], &scrape);
    assert_eq!(
        recv_text(&mut socks[5]),
        format!(
            r#"{{"action":"scrape","files":{{{}:{{"complete":3,"incomplete":0,"downloaded":3}},{}:{{"complete":0,"incomplete":0,"downloaded":0}},{}:{{"complete":0,"incomplete":12,"downloaded":0}}}},"flags":{{"min_request_interval":600}}}}"#,
            js(&other),
            js(&id('z')),
            js(&ih)
        )
    );
    assert_eq!(metric(a, "sigyard_webtorrent_swarms"), 2.0);
    assert_eq!(metric(a, "sigyard_webtorrent_peers"), 15.0);
    // Sockets that close leave the swarms on every core.
    let keep = socks.remove(0);
    drop(socks);
    assert_eq!(metric_reaches(a, "sigyard_webtorrent_peers", 2.0), 2.0);
    drop(keep);
    assert_eq!(metric_reaches(a, "sigyard_webtorrent_swarms", 0.0), 0.0);
    stop(h);
}
