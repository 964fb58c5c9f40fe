//! A cluster over a real Redis: three `sigyard` processes, clients spread over them, every
//! dialect's peers on different nodes; a node killed with `kill -9`; Redis stopped and
//! restarted; a start without Redis.

mod common;
use common::cluster::{free_port, Node, Partition, Redis};
use serde_json::{json, Value as Json};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::WebSocket;
use tungstenite::Message;

type Ws = WebSocket<TcpStream>;

const SIGNED: &str = "1b93f0aa00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899aabb1c";

fn cluster(n: usize, extra: &[&str]) -> Option<(Redis, Vec<Node>)> {
    let redis = Redis::start()?;
    let nodes = (0..n).map(|_| Node::start(&redis.url(), extra)).collect();
    Some((redis, nodes))
}

fn conn_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn connect(addr: SocketAddr, path_and_query: &str) -> Result<Ws, (u16, String)> {
    common::try_ws(addr, path_and_query)
}

fn mew(addr: SocketAddr, role: &str, cid: &str) -> Result<Ws, (u16, String)> {
    connect(addr, &format!("/?role={role}&connId={cid}&signed={SIGNED}"))
}

fn recv(c: &mut Ws) -> Json {
    serde_json::from_str(&common::recv_text(c)).expect("json")
}

fn send(c: &mut Ws, v: Json) {
    c.send(Message::text(v.to_string())).unwrap();
}

/// The close frame (code, reason) that ends `c`, and how long it took to come.
fn closed_with(c: &mut Ws) -> (CloseCode, String, Duration) {
    let t = Instant::now();
    loop {
        match c.read() {
            Ok(Message::Close(Some(f))) => {
                return (f.code, f.reason.as_str().to_owned(), t.elapsed())
            }
            Ok(Message::Close(None)) => return (CloseCode::Status, String::new(), t.elapsed()),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            other => panic!("expected a close, got {other:?}"),
        }
    }
}

/// `i` sends an offer with `encrypted(n)`; `r` gets it.
fn offer_reaches(i: &mut Ws, r: &mut Ws, n: u8) {
    send(i, json!({"action": "offersignal", "data": encrypted(n)}));
    assert_eq!(recv(r)["data"], encrypted(n));
}

/// Both sides of cut relationships end in MewConnect's terms within 5 s of `since`: an
/// initiator whose receiver was across hears `disconnected`; a receiver whose pair lived across
/// is closed with 1012.
fn cut_within_5s(initiator: &mut Ws, receiver: &mut Ws, since: Instant) {
    assert_eq!(
        recv(initiator),
        signal("disconnected", "receiver has disconnected")
    );
    let (code, reason, _) = closed_with(receiver);
    assert_eq!(code, CloseCode::Restart, "{reason}");
    let took = since.elapsed();
    assert!(took <= Duration::from_secs(5), "{took:?}");
}

/// Wait (up to 10 s) until metric `name` is at least `at_least` on every node of `addrs`.
fn wait_for_metric(addrs: &[SocketAddr], name: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while addrs.iter().any(|&n| common::metric(n, name) < at_least) {
        assert!(Instant::now() < deadline, "{name} never reached {at_least}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(name: &str, message: &str) -> Json {
    json!({"signal": name, "data": "", "message": message})
}

/// A MewConnect v2 pair with its initiator on `a` and receiver on `b`.
fn mew_pair(a: SocketAddr, b: SocketAddr) -> (Ws, Ws, String) {
    let cid = conn_id();
    let mut i = mew(a, "initiator", &cid).expect("initiator accepted");
    assert_eq!(
        recv(&mut i),
        signal("initiated", "Connected. Waiting for receiver.")
    );
    let mut r = mew(b, "receiver", &cid).expect("receiver accepted");
    assert_eq!(
        recv(&mut i),
        signal(
            "confirmation",
            "Receiver Connected. Please Create WebRTC Offer."
        )
    );
    assert_eq!(
        recv(&mut r),
        signal("confirmation", "Connected. Awaiting WebRTC Offer Details.")
    );
    (i, r, cid)
}

/// An offer's or answer's `data` as MewConnect clients send it (an eccrypto payload).
fn encrypted(seed: u8) -> Json {
    let b = |n: usize| json!({"type": "Buffer", "data": vec![seed; n]});
    json!({"data": {"iv": b(16), "ephemPublicKey": b(65), "ciphertext": b(48), "mac": b(32)}})
}

#[test]
fn mewconnect_pairs_across_nodes() {
    let Some((_redis, nodes)) = cluster(3, &[]) else {
        return;
    };
    let (a, b, c) = (nodes[0].addr, nodes[1].addr, nodes[2].addr);
    let (mut i, mut r, cid) = mew_pair(a, b);
    // Offer and answer cross nodes verbatim.
    send(
        &mut i,
        json!({"action": "offersignal", "data": encrypted(1)}),
    );
    let offer = recv(&mut r);
    assert_eq!(offer["signal"], "offer");
    assert_eq!(offer["data"], encrypted(1));
    send(
        &mut r,
        json!({"action": "answersignal", "data": encrypted(2)}),
    );
    assert_eq!(recv(&mut i)["data"], encrypted(2));
    // The pairing errors, from any node.
    let text = |t: &str| format!("Failed to connect: {t}");
    assert_eq!(
        mew(c, "initiator", &cid).map(|_| ()).unwrap_err(),
        (404, text("@connId already exists!"))
    );
    assert_eq!(
        mew(c, "receiver", &cid).map(|_| ()).unwrap_err(),
        (
            404,
            text("A connection pair already exists for this @connId")
        )
    );
    assert_eq!(
        mew(c, "receiver", &conn_id()).map(|_| ()).unwrap_err(),
        (404, text("Connection pair doesn't exist!"))
    );
    // A disconnect is heard on the other node.
    r.close(None).unwrap();
    assert_eq!(
        recv(&mut i),
        signal("disconnected", "receiver has disconnected")
    );
    // The nodes' metrics say who they see (as of their last heartbeat) and what crossed.
    for n in &nodes {
        let t = Instant::now();
        while common::metric(n.addr, "sigyard_cluster_nodes") != 3.0 {
            assert!(
                t.elapsed() < Duration::from_secs(3),
                "a node sees fewer than 3"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(common::metric(n.addr, "sigyard_cluster_redis_up"), 1.0);
    }
    assert!(common::metric(a, "sigyard_cluster_records_in_total") >= 3.0);
    assert!(common::metric(b, "sigyard_cluster_records_out_total") >= 3.0);
    // The other way round, and on the third node.
    let (i2, mut r2, _) = mew_pair(c, a);
    drop(i2);
    assert_eq!(
        recv(&mut r2),
        signal("disconnected", "initiator has disconnected")
    );
}

fn is_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn peer_server(a: SocketAddr) -> (Ws, String) {
    let mut s = connect(a, "/server").unwrap();
    let v = recv(&mut s);
    assert_eq!(v["type"], "HELLO");
    let id = v["to"].as_str().unwrap().to_owned();
    assert!(is_id(&id));
    (s, id)
}

fn peer_client(a: SocketAddr, server: &mut Ws, sid: &str) -> (Ws, String) {
    let mut c = connect(a, &format!("/client/{sid}")).unwrap();
    let v = recv(&mut c);
    assert_eq!(v["type"], "HELLO");
    let id = v["to"].as_str().unwrap().to_owned();
    assert!(is_id(&id) && id != sid);
    let joined = recv(server);
    assert_eq!(joined["type"], "PEER_JOINED");
    assert_eq!(joined["message"]["id"], id.as_str());
    (c, id)
}

#[test]
fn peerolator_server_and_clients_on_three_nodes() {
    let Some((_redis, nodes)) = cluster(3, &[]) else {
        return;
    };
    let (mut s, sid) = peer_server(nodes[0].addr);
    let (mut c1, id1) = peer_client(nodes[1].addr, &mut s, &sid);
    let (mut c2, id2) = peer_client(nodes[2].addr, &mut s, &sid);
    // Relaying both ways.
    send(
        &mut c1,
        json!({"to": sid, "type": "OFFER", "message": {"sdp": "x"}}),
    );
    let got = recv(&mut s);
    assert_eq!(
        (got["from"].as_str(), got["type"].as_str()),
        (Some(id1.as_str()), Some("OFFER"))
    );
    send(
        &mut s,
        json!({"to": id2, "type": "ANSWER", "message": {"sdp": "y"}}),
    );
    let got = recv(&mut c2);
    assert_eq!(
        (got["from"].as_str(), got["type"].as_str()),
        (Some(sid.as_str()), Some("ANSWER"))
    );
    // A client leaving: the server hears PEER_GONE.
    drop(c1);
    let gone = recv(&mut s);
    assert_eq!(gone["type"], "PEER_GONE");
    assert_eq!(gone["message"]["id"], id1.as_str());
    // The server leaving: its clients hear PEER_GONE and stay connected.
    s.close(None).unwrap();
    let gone = recv(&mut c2);
    assert_eq!(gone["type"], "PEER_GONE");
    assert_eq!(gone["message"]["id"], sid.as_str());
}

#[test]
fn a_killed_node_is_gone_for_its_peers_within_five_seconds() {
    let Some((_redis, mut nodes)) = cluster(3, &[]) else {
        return;
    };
    let (a, b) = (nodes[1].addr, nodes[2].addr);
    // Initiator (the pair's owner) on node 0, receiver on 1; initiator on 1, receiver on 0.
    let (_i, mut r, _) = mew_pair(nodes[0].addr, a);
    let (mut i2, _r2, _) = mew_pair(a, nodes[0].addr);
    // A Peerolator server on 2 with a client on 0.
    let (mut s, sid) = peer_server(b);
    let (_c, cid) = peer_client(nodes[0].addr, &mut s, &sid);
    nodes[0].kill9();
    // The owner is gone: its receiver on another node is closed (1012), soon.
    let (code, reason, took) = closed_with(&mut r);
    assert_eq!(code, CloseCode::Restart, "{reason}");
    assert!(took <= Duration::from_secs(5), "{took:?}");
    // The owner lives: the dialect says the peer is gone, in its own terms.
    let t = Instant::now();
    assert_eq!(
        recv(&mut i2),
        signal("disconnected", "receiver has disconnected")
    );
    let gone = recv(&mut s);
    assert_eq!(gone["type"], "PEER_GONE");
    assert_eq!(gone["message"]["id"], cid.as_str());
    assert!(t.elapsed() <= Duration::from_secs(5));
    assert_eq!(common::metric(a, "sigyard_cluster_nodes_gone_total"), 1.0);
    assert_eq!(common::metric(a, "sigyard_cluster_nodes"), 2.0);
    // The dead node's keys are free: a new pair whose initiator reaches node 1 works.
    let (mut i3, mut r3, _) = mew_pair(a, b);
    offer_reaches(&mut i3, &mut r3, 3);
}

#[test]
fn redis_lost_and_back() {
    let Some((mut redis, nodes)) = cluster(2, &[]) else {
        return;
    };
    let (a, b) = (nodes[0].addr, nodes[1].addr);
    let (mut local_i, mut local_r, _) = mew_pair(a, a);
    let (_cross_i, mut cross_r, _) = mew_pair(a, b);
    redis.kill();
    // A pair on one node keeps working.
    offer_reaches(&mut local_i, &mut local_r, 4);
    // A pair across nodes fails visibly, within the node timeout and a beat.
    let (code, _, took) = closed_with(&mut cross_r);
    assert_eq!(code, CloseCode::Restart);
    assert!(took <= Duration::from_secs(6), "{took:?}");
    // What needs the cluster is refused clearly meanwhile.
    let (status, body) = mew(a, "initiator", &conn_id()).map(|_| ()).unwrap_err();
    assert_eq!(status, 503, "{body}");
    assert_eq!(common::metric(a, "sigyard_cluster_redis_up"), 0.0);
    // A load balancer's health check sends new clients elsewhere meanwhile.
    assert!(healthz(a).starts_with("HTTP/1.1 503"));
    // Redis back: the nodes reconnect and pair across again.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match mew(a, "initiator", &conn_id()) {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("no recovery: {e:?}"),
        }
    }
    // Both nodes re-registered: a new cross pair works.
    std::thread::sleep(Duration::from_millis(1500));
    let (mut i, mut r, _) = mew_pair(b, a);
    offer_reaches(&mut i, &mut r, 5);
    offer_reaches(&mut local_i, &mut local_r, 6);
    assert!(healthz(a).starts_with("HTTP/1.1 200"));
}

fn healthz(node: SocketAddr) -> String {
    common::http_get(node, "/healthz")
}

/// Redis drops every node's connections but keeps its data (a network blip, a proxy restart):
/// each node comes back as the node it was, and nobody is taken for gone.
#[test]
fn a_dropped_redis_connection_keeps_the_node_ids() {
    let Some((redis, nodes)) = cluster(2, &[]) else {
        return;
    };
    let (a, b) = (nodes[0].addr, nodes[1].addr);
    for kind in ["normal", "pubsub"] {
        let killed = redis.command(&format!("CLIENT KILL TYPE {kind}"));
        assert!(killed.starts_with(":2"), "{kind}: {killed}");
    }
    // Back at the first retry (100 ms); a pair across the nodes works again.
    wait_for_metric(&[a, b], "sigyard_cluster_reconnects_total", 1.0);
    let (mut i, mut r, _) = mew_pair(a, b);
    offer_reaches(&mut i, &mut r, 7);
    // Past a node timeout (3 s) and a heartbeat: still two members, none gone.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(redis.command("ZCARD sigyard:nodes").trim(), ":2");
    for n in [a, b] {
        assert_eq!(common::metric(n, "sigyard_cluster_nodes"), 2.0, "{n}");
        assert_eq!(common::metric(n, "sigyard_cluster_nodes_gone_total"), 0.0);
    }
}

/// A node frozen past the node timeout (SIGSTOP: a stalled VM, a process swapped out) is gone
/// for the others, in each dialect's terms; resumed, it ends its own side of every relationship
/// with them, and pairs across the nodes work again.
#[test]
fn a_frozen_node_is_gone_and_then_serves_again() {
    let Some((_redis, nodes)) = cluster(2, &[]) else {
        return;
    };
    let (a, b) = (nodes[0].addr, nodes[1].addr);
    // Pair 1 owned on a (its initiator) with its receiver on b; pair 2 the other way.
    let (mut i1, mut r1, _) = mew_pair(a, b);
    let (mut i2, mut r2, _) = mew_pair(b, a);
    let frozen = Instant::now();
    nodes[1].signal(libc::SIGSTOP);
    cut_within_5s(&mut i1, &mut r2, frozen);
    assert_eq!(common::metric(a, "sigyard_cluster_nodes_gone_total"), 1.0);
    std::thread::sleep(Duration::from_secs(1));
    nodes[1].signal(libc::SIGCONT);
    // b learns at its next heartbeat that it was seen gone: its side ends the same way.
    let resumed = Instant::now();
    cut_within_5s(&mut i2, &mut r1, resumed);
    // Each takes the other back at its next heartbeat (until then a request placed on the other
    // gets 502, the node gone); then both serve pairs across again, as the same two nodes.
    for n in [a, b] {
        assert_eq!(
            common::metric_reaches(n, "sigyard_cluster_nodes", 2.0),
            2.0,
            "{n}"
        );
    }
    for (x, y) in [(a, b), (b, a)] {
        let (mut i, mut r, _) = mew_pair(x, y);
        offer_reaches(&mut i, &mut r, 8);
    }
}

/// Redis answers but refuses every write (out of memory): heartbeats fail, so every node's
/// entry lapses for the others. Each node ends its side of every relationship across the
/// nodes once its heartbeat has been refused for a node timeout, while Redis still refuses,
/// not only after; requests that need a claim get 503; once Redis takes writes again, pairs
/// across the nodes work again.
#[test]
fn redis_refusing_writes_ends_relationships_across_nodes_in_time() {
    let Some((redis, nodes)) = cluster(2, &[]) else {
        return;
    };
    let (a, b) = (nodes[0].addr, nodes[1].addr);
    let (mut i, mut r, _) = mew_pair(a, b);
    let refused = Instant::now();
    assert!(redis.command("CONFIG SET maxmemory 1").starts_with("+OK"));
    // The initiator's side (its receiver on b) and the receiver's (its dialect state on a).
    cut_within_5s(&mut i, &mut r, refused);
    let (status, body) = mew(a, "initiator", &conn_id()).map(|_| ()).unwrap_err();
    assert_eq!(status, 503, "{body}");
    assert!(healthz(a).starts_with("HTTP/1.1 503"));
    assert_eq!(common::metric(a, "sigyard_cluster_ready"), 0.0);
    assert!(redis.command("CONFIG SET maxmemory 0").starts_with("+OK"));
    wait_for_metric(&[a, b], "sigyard_cluster_nodes", 2.0);
    assert!(healthz(a).starts_with("HTTP/1.1 200"));
    let (mut i, mut r, _) = mew_pair(b, a);
    offer_reaches(&mut i, &mut r, 9);
}

/// Redis restarts empty, losing the claims: a node claims again at once the keys its
/// connections still use, so a pair living on one node keeps its `connId` for the whole cluster
/// (another node refuses a second initiator with it, as before the restart).
#[test]
fn a_pair_keeps_its_key_when_redis_restarts_empty() {
    let Some((mut redis, nodes)) = cluster(2, &[]) else {
        return;
    };
    let (a, b) = (nodes[0].addr, nodes[1].addr);
    let (mut i, mut r, cid) = mew_pair(a, a);
    redis.kill();
    std::thread::sleep(Duration::from_millis(300));
    redis.restart();
    wait_for_metric(&[a, b], "sigyard_cluster_reconnects_total", 1.0);
    // The claim is made again within a loop turn of the command thread and a round trip.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        mew(b, "initiator", &cid).map(|_| ()).unwrap_err(),
        (
            404,
            "Failed to connect: @connId already exists!".to_string()
        )
    );
    offer_reaches(&mut i, &mut r, 10);
}

/// A Redis that may evict keys under memory pressure could drop members and claims: the node
/// says so when it joins.
#[test]
fn a_redis_that_may_evict_is_named_in_the_log() {
    let Some(redis) = Redis::start_args(&["--maxmemory-policy", "allkeys-lru"]) else {
        return;
    };
    let node = Node::start(&redis.url(), &[]);
    assert!(node.logged("has maxmemory-policy allkeys-lru"));
    let Some(redis) = Redis::start() else {
        return;
    };
    let node = Node::start(&redis.url(), &[]);
    assert!(!node.logged("maxmemory-policy"));
}

#[test]
fn start_without_redis_exits_2_naming_the_url() {
    if common::skipped("redis") {
        return;
    }
    let url = format!("redis://127.0.0.1:{}", free_port());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sigyard"))
        .args(["--cluster", &url, "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{url}/0")), "{err}");
}

#[test]
fn sigterm_leaves_the_cluster_at_once() {
    let Some((_redis, mut nodes)) = cluster(2, &[]) else {
        return;
    };
    let (mut i, _r, _) = mew_pair(nodes[0].addr, nodes[1].addr);
    let t = Instant::now();
    nodes[1].term();
    // The receiver is closed (1001) as the node drains: its initiator hears so at once.
    assert_eq!(
        recv(&mut i),
        signal("disconnected", "receiver has disconnected")
    );
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(nodes[1].wait().success());
    // The node that stays serves new pairs.
    let (mut i2, mut r2, _) = mew_pair(nodes[0].addr, nodes[0].addr);
    offer_reaches(&mut i2, &mut r2, 7);
}

fn next(c: &mut Ws) -> Message {
    loop {
        match c.read().expect("a message") {
            Message::Ping(_) | Message::Pong(_) => continue,
            m => return m,
        }
    }
}

fn join(c: &mut Ws, keys: &[&str]) {
    send(c, json!({"type": "Join", "join": keys}));
}

#[test]
fn cevitxe_introductions_see_peers_on_every_node() {
    let Some((_redis, nodes)) = cluster(3, &[]) else {
        return;
    };
    let mut alice = connect(nodes[0].addr, "/introduction/alice").unwrap();
    let mut bob = connect(nodes[1].addr, "/introduction/bob").unwrap();
    let mut carol = connect(nodes[2].addr, "/introduction/carol").unwrap();
    join(&mut alice, &["doc-1"]);
    join(&mut bob, &["doc-1"]);
    let intro = |id: &str| json!({"type": "Introduction", "id": id, "keys": ["doc-1"]});
    assert_eq!(recv(&mut bob), intro("alice"));
    assert_eq!(recv(&mut alice), intro("bob"));
    join(&mut carol, &["doc-1"]);
    let mut seen = vec![
        recv(&mut carol)["id"].as_str().unwrap().to_owned(),
        recv(&mut carol)["id"].as_str().unwrap().to_owned(),
    ];
    seen.sort();
    assert_eq!(seen, ["alice", "bob"]);
    assert_eq!(recv(&mut alice), intro("carol"));
    assert_eq!(recv(&mut bob), intro("carol"));
}

#[test]
fn ywebrtc_topics_span_the_nodes() {
    let Some((_redis, nodes)) = cluster(3, &[]) else {
        return;
    };
    let text = |c: &mut Ws, t: &str| c.send(Message::text(t)).unwrap();
    let mut peers: Vec<Ws> = nodes
        .iter()
        .map(|n| connect(n.addr, "/").unwrap())
        .collect();
    // A socket's subscription takes effect before its own later publish to the topic (both go
    // to the topic's owner, in order): its probe coming back says it is in. Those already in
    // see the probe too.
    for i in 0..peers.len() {
        text(&mut peers[i], r#"{"type":"subscribe","topics":["room"]}"#);
        let probe = format!(r#"{{"type":"publish","topic":"room","data":"probe {i}"}}"#);
        text(&mut peers[i], &probe);
        for p in &mut peers[..=i] {
            let got = common::recv_text(p);
            assert!(got.contains(&format!(r#""data":"probe {i}""#)), "{got}");
        }
    }
    text(
        &mut peers[2],
        r#"{"type":"publish","topic":"room","data":{"from":"c"}}"#,
    );
    for p in &mut peers {
        assert_eq!(
            common::recv_text(p),
            r#"{"type":"publish","topic":"room","data":{"from":"c"},"clients":3}"#
        );
    }
    let bob = peers.remove(1);
    drop(bob);
    let t = Instant::now();
    loop {
        text(
            &mut peers[0],
            r#"{"type":"publish","topic":"room","data":1}"#,
        );
        let got = common::recv_text(&mut peers[0]);
        assert_eq!(common::recv_text(&mut peers[1]), got);
        if got.ends_with(r#""clients":2}"#) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{got}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The next text message, or `None` when none comes within the socket's read timeout.
fn try_text(c: &mut Ws) -> Option<String> {
    loop {
        match c.read() {
            Ok(Message::Text(t)) => return Some(t.as_str().to_owned()),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// A subscribe made while Redis is briefly away (shorter than the node timeout) takes effect
/// once Redis is back, and a node that only reconnected later than another is not taken for
/// gone: a subscriber on the other node and the one that subscribed during the blip meet in
/// the topic.
#[test]
fn ywebrtc_a_subscribe_during_a_redis_blip_takes_effect() {
    let Some((mut redis, nodes)) = cluster(2, &[]) else {
        return;
    };
    let text = |c: &mut Ws, t: &str| c.send(Message::text(t)).unwrap();
    let mut a = connect(nodes[0].addr, "/").unwrap();
    let mut b = connect(nodes[1].addr, "/").unwrap();
    // Both sockets work across nodes before the blip.
    text(&mut a, r#"{"type":"subscribe","topics":["before"]}"#);
    text(&mut b, r#"{"type":"subscribe","topics":["before"]}"#);
    text(&mut b, r#"{"type":"publish","topic":"before","data":"x"}"#);
    assert!(common::recv_text(&mut b).contains(r#""data":"x""#));
    redis.kill();
    std::thread::sleep(Duration::from_millis(300));
    // A topic nobody told before: its owner cannot be asked until Redis is back.
    text(&mut b, r#"{"type":"subscribe","topics":["blip"]}"#);
    std::thread::sleep(Duration::from_millis(700));
    redis.restart();
    text(&mut a, r#"{"type":"subscribe","topics":["blip"]}"#);
    for c in [&mut a, &mut b] {
        c.get_mut()
            .set_read_timeout(Some(Duration::from_millis(250)))
            .unwrap();
    }
    // Records sent while a node's subscription to Redis was down are lost (the relationships
    // then end and are told again): publish until one reaches both.
    let t = Instant::now();
    for i in 0.. {
        assert!(t.elapsed() < Duration::from_secs(15), "never met");
        text(
            &mut a,
            &format!(r#"{{"type":"publish","topic":"blip","data":{i}}}"#),
        );
        let Some(got) = try_text(&mut a).filter(|g| g.ends_with(r#""clients":2}"#)) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        if std::iter::from_fn(|| try_text(&mut b)).any(|m| m == got) {
            break;
        }
    }
    // Nobody was taken for gone: a node is, only when its heartbeat lapsed for a node
    // timeout.
    for n in &nodes {
        let name = "sigyard_cluster_nodes_gone_total";
        assert!(common::http_get(n.addr, "/metrics").contains(name));
        assert_eq!(common::metric(n.addr, name), 0.0, "node {}", n.addr);
    }
}

#[test]
fn a_topics_and_a_swarms_owner_killed_they_live_on_elsewhere() {
    let Some((_redis, mut nodes)) = cluster(3, &[]) else {
        return;
    };
    let text = |c: &mut Ws, t: &str| c.send(Message::text(t)).unwrap();
    // The first subscriber's node claims the topic: node 0 owns it.
    let mut peers: Vec<Ws> = nodes
        .iter()
        .map(|n| connect(n.addr, "/").unwrap())
        .collect();
    for i in 0..peers.len() {
        text(&mut peers[i], r#"{"type":"subscribe","topics":["room"]}"#);
        let probe = format!(r#"{{"type":"publish","topic":"room","data":"probe {i}"}}"#);
        text(&mut peers[i], &probe);
        for p in &mut peers[..=i] {
            assert!(common::recv_text(p).contains(&format!("probe {i}")));
        }
    }
    // A swarm owned by node 0 too, with a peer on node 1.
    let id = |c: char| -> String { std::iter::repeat(c).take(20).collect() };
    let announce = |who: &str| {
        format!(
            r#"{{"action":"announce","info_hash":"{}","peer_id":"{who}","left":1}}"#,
            id('h')
        )
    };
    let mut t0 = connect(nodes[0].addr, "/announce").unwrap();
    text(&mut t0, &announce(&id('A')));
    assert!(common::recv_text(&mut t0).contains(r#""incomplete":1"#));
    let mut t1 = connect(nodes[1].addr, "/announce").unwrap();
    text(&mut t1, &announce(&id('B')));
    assert!(common::recv_text(&mut t1).contains(r#""incomplete":2"#));
    drop(peers.remove(0));
    nodes[0].kill9();
    // The sockets on the other nodes subscribe again: the topic comes back on a live node
    // with just them in it.
    // Publishes meanwhile reach the dead owner (or wait for the live one) and may be lost.
    let t = Instant::now();
    peers[0]
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(250)))
        .unwrap();
    loop {
        text(
            &mut peers[0],
            r#"{"type":"publish","topic":"room","data":1}"#,
        );
        let got = try_text(&mut peers[0]);
        if got
            .as_deref()
            .is_some_and(|g| g.ends_with(r#""clients":2}"#))
        {
            let got = got.unwrap();
            let mut other = common::recv_text(&mut peers[1]);
            // Earlier publishes may arrive first, once the topic lives again.
            while other != got {
                other = common::recv_text(&mut peers[1]);
            }
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "{got:?}");
    }
    let recovered = t.elapsed();
    assert!(recovered < Duration::from_secs(8), "{recovered:?}");
    // The swarm's peer on a live node is in it again on a live node, without waiting for its
    // next announce (clients announce every interval: 2 minutes by default): a new peer
    // elsewhere counts it, and its offer reaches it.
    let mut t2 = connect(nodes[2].addr, "/announce").unwrap();
    let t = Instant::now();
    loop {
        text(&mut t2, &announce(&id('C')));
        let got = common::recv_text(&mut t2);
        if got.contains(r#""incomplete":2"#) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(8), "{got}");
        std::thread::sleep(Duration::from_millis(250));
    }
    text(
        &mut t2,
        &format!(
            r#"{{"action":"announce","info_hash":"{}","peer_id":"{}","left":1,"numwant":1,"offers":[{{"offer":{{"type":"offer","sdp":"x"}},"offer_id":"{}"}}]}}"#,
            id('h'),
            id('C'),
            id('o')
        ),
    );
    assert!(common::recv_text(&mut t2).contains(r#""incomplete":2"#));
    let offer = common::recv_text(&mut t1);
    assert!(
        offer.contains(r#""offer_id":"oooooooooooooooooooo""#),
        "{offer}"
    );
    // Its own next announce finds it there.
    text(&mut t1, &announce(&id('B')));
    assert!(common::recv_text(&mut t1).contains(r#""incomplete":2"#));
}

#[test]
fn webtorrent_swarms_span_the_nodes() {
    let Some((_redis, nodes)) = cluster(3, &[]) else {
        return;
    };
    let text = |c: &mut Ws, t: &str| c.send(Message::text(t)).unwrap();
    let id = |c: char| -> String { std::iter::repeat(c).take(20).collect() };
    let ih = id('h');
    let announce = |who: &str, extra: &str| {
        format!(r#"{{"action":"announce","info_hash":"{ih}","peer_id":"{who}","left":1{extra}}}"#)
    };
    let response = |incomplete: u32| {
        format!(
            r#"{{"complete":0,"incomplete":{incomplete},"action":"announce","interval":120,"info_hash":"{ih}"}}"#
        )
    };
    // A on node 0 by the tracker's path, B on node 1 by the bare URL, C on node 2.
    let mut a = connect(nodes[0].addr, "/announce").unwrap();
    text(&mut a, &announce(&id('A'), ""));
    assert_eq!(common::recv_text(&mut a), response(1));
    let mut b = connect(nodes[1].addr, "/").unwrap();
    text(
        &mut b,
        &announce(
            &id('B'),
            r#","offers":[{"offer":{"type":"offer","sdp":"b"},"offer_id":"ob"}]"#,
        ),
    );
    assert_eq!(common::recv_text(&mut b), response(2));
    assert_eq!(
        common::recv_text(&mut a),
        format!(
            r#"{{"action":"announce","offer":{{"type":"offer","sdp":"b"}},"offer_id":"ob","peer_id":"{}","info_hash":"{ih}"}}"#,
            id('B')
        )
    );
    text(
        &mut a,
        &format!(
            r#"{{"action":"announce","info_hash":"{ih}","peer_id":"{}","to_peer_id":"{}","answer":{{"sdp":"a"}},"offer_id":"ob"}}"#,
            id('A'),
            id('B')
        ),
    );
    assert_eq!(
        common::recv_text(&mut b),
        format!(
            r#"{{"action":"announce","answer":{{"sdp":"a"}},"offer_id":"ob","peer_id":"{}","info_hash":"{ih}"}}"#,
            id('A')
        )
    );
    // The counts are the whole swarm's, and a socket that goes away on its node leaves the
    // swarm.
    let mut c = connect(nodes[2].addr, "/announce").unwrap();
    text(&mut c, &announce(&id('C'), ""));
    assert_eq!(common::recv_text(&mut c), response(3));
    drop(b);
    let t = Instant::now();
    loop {
        text(&mut c, &announce(&id('C'), ""));
        let got = common::recv_text(&mut c);
        if got == response(2) {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{got}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn peerjs_ids_and_messages_span_the_nodes() {
    let Some((_redis, nodes)) = cluster(3, &[]) else {
        return;
    };
    let peer = |n: usize, id: &str, token: &str| {
        let q = format!("/peerjs?key=peerjs&id={id}&token={token}&version=1.5.5");
        connect(nodes[n].addr, &q).unwrap()
    };
    let mut alice = peer(0, "alice", "t1");
    assert_eq!(common::recv_text(&mut alice), r#"{"type":"OPEN"}"#);
    // Waiting for bob, who then connects to another node.
    alice
        .send(Message::text(
            r#"{"type":"OFFER","payload":{"n":1},"dst":"bob"}"#,
        ))
        .unwrap();
    let mut bob = peer(1, "bob", "t2");
    assert_eq!(common::recv_text(&mut bob), r#"{"type":"OPEN"}"#);
    assert_eq!(
        common::recv_text(&mut bob),
        r#"{"type":"OFFER","src":"alice","dst":"bob","payload":{"n":1}}"#
    );
    bob.send(Message::text(
        r#"{"type":"ANSWER","payload":2,"dst":"alice"}"#,
    ))
    .unwrap();
    assert_eq!(
        common::recv_text(&mut alice),
        r#"{"type":"ANSWER","src":"bob","dst":"alice","payload":2}"#
    );
    // The id is taken on every node.
    let mut thief = peer(2, "alice", "other");
    assert_eq!(
        common::recv_text(&mut thief),
        r#"{"type":"ID-TAKEN","payload":{"msg":"ID is taken"}}"#
    );
    // A fresh id from any node is no registered one.
    let id = common::http_get(nodes[2].addr, "/peerjs/id");
    assert!(id.starts_with("HTTP/1.1 200"), "{id}");
    assert_eq!(id.split("\r\n\r\n").nth(1).unwrap().len(), 36);
}

/// Two pipe ends on two nodes, once the pipe carries a message each way.
fn pipe(a: SocketAddr, b: SocketAddr, x: &str, y: &str) -> (Ws, Ws) {
    let mut first = connect(a, &format!("/connection/{x}/{y}/doc")).unwrap();
    first.send(Message::text("held")).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let mut second = connect(b, &format!("/connection/{y}/{x}/doc")).unwrap();
    assert_eq!(next(&mut second), Message::text("held"));
    second.send(Message::text("sync")).unwrap();
    assert_eq!(next(&mut first), Message::text("sync"));
    (first, second)
}

#[test]
fn cevitxe_pipe_across_nodes_in_order_with_close_codes() {
    let Some((_redis, nodes)) = cluster(2, &[]) else {
        return;
    };
    let (a, b) = (nodes[0].addr, nodes[1].addr);
    let (mut x, mut y) = pipe(a, b, "x1", "y1");
    // 20 MiB of 64 KiB messages, checked byte for byte, through the window.
    const MSG: usize = 64 << 10;
    const COUNT: usize = 320;
    let writer = std::thread::spawn(move || {
        for i in 0..COUNT {
            x.send(Message::binary(vec![(i % 251) as u8; MSG])).unwrap();
        }
        x
    });
    for i in 0..COUNT {
        let m = next(&mut y).into_data();
        assert!(
            m.len() == MSG && m.iter().all(|b| *b == (i % 251) as u8),
            "message {i}"
        );
    }
    let mut x = writer.join().unwrap();
    // A close code crosses after the data sent before it.
    x.send(Message::text("last")).unwrap();
    x.close(Some(tungstenite::protocol::CloseFrame {
        code: CloseCode::Library(4001),
        reason: "bye".into(),
    }))
    .unwrap();
    let _ = x.flush();
    assert_eq!(next(&mut y), Message::text("last"));
    let (code, _, _) = closed_with(&mut y);
    assert_eq!(code, CloseCode::Library(4001));
    // A vanished end closes the other with 1001.
    let (x2, mut y2) = pipe(b, a, "x2", "y2");
    drop(x2);
    assert_eq!(closed_with(&mut y2).0, CloseCode::Away);
}

#[test]
fn a_slow_reader_on_another_node_pushes_back_on_the_writer() {
    let Some((_redis, nodes)) = cluster(2, &["--idle-timeout", "0", "--ping-interval", "0"]) else {
        return;
    };
    let (mut x, mut y) = pipe(nodes[0].addr, nodes[1].addr, "fast", "slow");
    let sent = common::flood(&mut x, Duration::from_secs(3));
    // Bounded by the window, the reader's queue and both nodes' socket buffers, not by time.
    assert!(sent < 32 << 20, "the writer was never paused: {sent} bytes");
    let mut got = 0usize;
    while got < 1 << 20 {
        got += next(&mut y).into_data().len();
    }
}

#[test]
fn the_npm_client_suites_with_peers_on_three_nodes() {
    if common::skipped("npm") {
        return;
    }
    let Some((_redis, nodes)) =
        cluster(3, &["--echo", "--workspaces-secret", "cluster-test-secret"])
    else {
        return;
    };
    common::npm::install();
    let urls: Vec<String> = nodes.iter().map(|n| format!("ws://{}", n.addr)).collect();
    common::npm::run_all(&urls.join(","));
}

#[test]
fn a_room_outlives_its_claims_ttl_while_connected() {
    let opts = ["--cluster-node-timeout", "1s", "--cluster-claim-ttl", "3s"];
    let Some((_redis, nodes)) = cluster(2, &opts) else {
        return;
    };
    let (mut s, sid) = peer_server(nodes[0].addr);
    // Past two TTLs: the server's key is refreshed while it is connected.
    std::thread::sleep(Duration::from_secs(7));
    let (mut c, id) = peer_client(nodes[1].addr, &mut s, &sid);
    send(&mut c, json!({"to": sid, "type": "OFFER", "message": {}}));
    assert_eq!(recv(&mut s)["from"], id.as_str());
}

/// One HTTP API call (a fresh connection): status and body.
fn api(addr: SocketAddr, body: &str) -> (u16, String) {
    let req = format!(
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let resp = common::raw_exchange(addr, req.as_bytes());
    let status = resp[9..12].parse().unwrap();
    let body = resp.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    (status, body)
}

#[test]
fn http_api_channels_live_in_redis_with_their_ttl() {
    let Some((_redis, nodes)) = cluster(3, &["--api-ttl", "3s"]) else {
        return;
    };
    let (a, b, c) = (nodes[0].addr, nodes[1].addr, nodes[2].addr);
    let (status, body) = api(a, r#"{"method":"create_data_channel"}"#);
    assert_eq!(status, 200, "{body}");
    let v: Json = serde_json::from_str(&body).unwrap();
    let id = v["channel_id"].as_str().unwrap().to_owned();
    let call = |addr, method: &str, rest: &str| {
        api(
            addr,
            &format!(r#"{{"method":"{method}","channel_id":"{id}"{rest}}}"#),
        )
    };
    assert_eq!(call(b, "get_offer", ""), (400, "offer not found".into()));
    assert_eq!(
        call(b, "create_offer", r#","offer":{"sdp":"o","type":"offer"}"#),
        (200, String::new())
    );
    assert_eq!(
        call(c, "get_offer", ""),
        (200, r#"{"offer": {"sdp": "o", "type": "offer"}}"#.into())
    );
    assert_eq!(
        call(c, "create_answer", r#","answer":"a1""#),
        (200, String::new())
    );
    assert_eq!(
        call(a, "create_answer", r#","answer":"a2""#),
        (400, "answer already exist".into())
    );
    assert_eq!(
        call(a, "get_answer", ""),
        (200, r#"{"answer": "a1"}"#.into())
    );
    for (node, cand) in [(a, r#"{"c":1}"#), (b, r#"{"c":2}"#), (c, r#"{"c":1}"#)] {
        assert_eq!(
            call(node, "create_candidate", &format!(r#","candidate":{cand}"#)).0,
            200
        );
    }
    assert_eq!(
        call(b, "get_candidates", ""),
        (200, r#"{"items": [{"c": 1}, {"c": 2}]}"#.into())
    );
    // Unknown channels, on any node.
    let other = "00000000-0000-4000-8000-000000000000";
    assert_eq!(
        api(
            c,
            &format!(r#"{{"method":"get_offer","channel_id":"{other}"}}"#)
        ),
        (400, "channel_id not found".into())
    );
    // The TTL is Redis's: gone after 3 s, from every node.
    std::thread::sleep(Duration::from_millis(3300));
    for n in [a, b, c] {
        assert_eq!(
            call(n, "get_offer", ""),
            (400, "channel_id not found".into())
        );
    }
    assert!(common::metric(a, "sigyard_api_requests_total") >= 3.0);
}

#[test]
fn rediss_and_passwords() {
    // TLS to Redis, its certificate checked against --cluster-ca-file.
    let Some(tls) = Redis::start_tls() else {
        return;
    };
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-cert.pem");
    let a = Node::start(&tls.url(), &["--cluster-ca-file", ca]);
    let b = Node::start(&tls.url(), &["--cluster-ca-file", ca]);
    let (mut i, mut r, _) = mew_pair(a.addr, b.addr);
    offer_reaches(&mut i, &mut r, 8);
    // Not trusted: exit 2, saying why.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sigyard"))
        .args(["--cluster", &tls.url(), "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&tls.url()) && err.contains("certificate"),
        "{err}"
    );
    // A password from the environment; a wrong one is refused at start.
    let Some(locked) = Redis::start_with_password("s3cret") else {
        return;
    };
    let c = Node::start_env(
        &locked.url(),
        &[],
        &[("SIGYARD_CLUSTER_PASSWORD", "s3cret")],
    );
    let d = Node::start(&format!("redis://:s3cret@127.0.0.1:{}", locked.port), &[]);
    let (mut i, mut r, _) = mew_pair(c.addr, d.addr);
    offer_reaches(&mut i, &mut r, 9);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sigyard"))
        .args(["--cluster", &locked.url(), "--listen", "127.0.0.1:0"])
        .env("SIGYARD_CLUSTER_PASSWORD", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WRONGPASS") || err.contains("invalid"),
        "{err}"
    );
}

#[test]
fn a_node_whose_id_another_process_took_stops() {
    let Some(redis) = Redis::start() else {
        return;
    };
    let mut a = Node::start(&redis.url(), &["--cluster-node-timeout", "1s"]);
    // What a flushed Redis and a new process would leave: node 1 marked as someone else's.
    assert!(redis
        .command("HSET sigyard:tokens 1 another-process")
        .starts_with(':'));
    let status = a.exited(Duration::from_secs(3)).expect("the node stops");
    assert_eq!(status.code(), Some(1));
}

#[test]
fn records_for_gone_connections_and_malformed_batches_are_counted_and_dropped() {
    use sigyard::proto::cluster::Record;
    use sigyard::proto::dialect::{Handle, Kind};
    let Some((redis, nodes)) = cluster(1, &[]) else {
        return;
    };
    let a = nodes[0].addr;
    let (mut i, mut r, _) = mew_pair(a, a);
    // A message for a connection that never was (node 1, core 0, slab key 4,000).
    let mut batch = Vec::new();
    Record::Send {
        to: Handle::from_raw((1u64 << 48) | 4000),
        kind: Kind::Text,
        payload: b"nobody",
        lossy: false,
    }
    .encode(&mut batch);
    assert_eq!(redis.publish("sigyard:n:1", &batch), 1);
    // And bytes that are no record at all.
    assert_eq!(redis.publish("sigyard:n:1", b"\xff\x00garbage"), 1);
    let t = Instant::now();
    while common::metric(a, "sigyard_cluster_undeliverable_total") != 1.0 {
        assert!(t.elapsed() < Duration::from_secs(3), "not counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The node and its pairs go on.
    offer_reaches(&mut i, &mut r, 10);
}

#[test]
fn the_origin_list_holds_on_the_node_a_request_reaches() {
    let Some((_redis, nodes)) = cluster(2, &["--allowed-origins", "https://ok.test"]) else {
        return;
    };
    let (a, b) = (nodes[0].addr, nodes[1].addr);
    let cid = conn_id();
    let mut i = mew(a, "initiator", &cid).expect("no Origin: not a browser, passes");
    recv(&mut i);
    // The receiver reaches the other node: refused there, before its request crosses.
    let q = format!("/?role=receiver&connId={cid}&signed={SIGNED}");
    let with_origin = |origin: &str| {
        let req = common::ws_request(&q).replacen(
            "\r\n\r\n",
            &format!("\r\nOrigin: {origin}\r\n\r\n"),
            1,
        );
        let mut s = TcpStream::connect(b).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        std::io::Write::write_all(&mut s, req.as_bytes()).unwrap();
        (common::status_of(&common::read_head(&mut s)), s)
    };
    assert_eq!(with_origin("https://evil.test").0, 403);
    let (status, _kept) = with_origin("https://ok.test");
    assert_eq!(status, 101);
    assert_eq!(recv(&mut i)["signal"], "confirmation");
}

#[test]
fn ywebrtc_topics_come_back_after_redis_does() {
    let Some((mut redis, nodes)) = cluster(2, &[]) else {
        return;
    };
    let text = |c: &mut Ws, t: &str| c.send(Message::text(t)).unwrap();
    let mut peers: Vec<Ws> = nodes
        .iter()
        .map(|n| connect(n.addr, "/").unwrap())
        .collect();
    for i in 0..peers.len() {
        text(&mut peers[i], r#"{"type":"subscribe","topics":["room"]}"#);
        let probe = format!(r#"{{"type":"publish","topic":"room","data":"probe {i}"}}"#);
        text(&mut peers[i], &probe);
        for p in &mut peers[..=i] {
            assert!(common::recv_text(p).contains(&format!("probe {i}")));
        }
    }
    // Redis gone past the node timeout and then some: every relationship across nodes ends
    // while nothing can be claimed, and Redis comes back empty. The sockets tell their
    // topics again.
    redis.kill();
    std::thread::sleep(Duration::from_secs(6));
    redis.restart();
    let t = Instant::now();
    for p in &mut peers {
        p.get_mut()
            .set_read_timeout(Some(Duration::from_millis(250)))
            .unwrap();
    }
    loop {
        text(
            &mut peers[0],
            r#"{"type":"publish","topic":"room","data":1}"#,
        );
        let got = try_text(&mut peers[0]);
        if got
            .as_deref()
            .is_some_and(|g| g.ends_with(r#""clients":2}"#))
        {
            let got = got.unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match peers[1].read() {
                    Ok(Message::Text(t)) if t.as_str() == got => break,
                    _ => assert!(Instant::now() < deadline, "the other node never got it"),
                }
            }
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{got:?}");
        // (Well under the per-connection message rate.)
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two nodes, the first reaching Redis through a [`Partition`] the test can cut.
fn partitionable() -> Option<(Redis, Partition, [Node; 2])> {
    let redis = Redis::start()?;
    let partition = Partition::new(redis.port);
    let nodes = [
        Node::start(&partition.url(), &[]),
        Node::start(&redis.url(), &[]),
    ];
    Some((redis, partition, nodes))
}

/// One node cut off from Redis by the network (its packets go nowhere; nothing is reset):
/// the others see it gone, it ends its own side of every relationship across the nodes in the
/// same time, pairs on either node alone keep working, and once the network is back the nodes
/// pair across again as the same two nodes.
#[test]
fn a_node_partitioned_from_redis() {
    let Some((_redis, partition, nodes)) = partitionable() else {
        return;
    };
    let (a, b) = (nodes[0].addr, nodes[1].addr);
    let (mut i1, mut r1, _) = mew_pair(a, b);
    let (mut i2, mut r2, _) = mew_pair(b, a);
    let (mut ai, mut ar, _) = mew_pair(a, a);
    let (mut bi, mut br, _) = mew_pair(b, b);
    let cut = Instant::now();
    partition.cut(true);
    // b sees a gone; a sees itself cut off: both sides of both cross pairs end in time.
    cut_within_5s(&mut i2, &mut r1, cut);
    cut_within_5s(&mut i1, &mut r2, cut);
    offer_reaches(&mut ai, &mut ar, 11);
    offer_reaches(&mut bi, &mut br, 12);
    let (status, body) = mew(a, "initiator", &conn_id()).map(|_| ()).unwrap_err();
    assert_eq!(status, 503, "{body}");
    assert!(healthz(a).starts_with("HTTP/1.1 503"));
    assert!(healthz(b).starts_with("HTTP/1.1 200"));
    std::thread::sleep(Duration::from_secs(2));
    partition.cut(false);
    wait_for_metric(&[a, b], "sigyard_cluster_nodes", 2.0);
    for (x, y) in [(a, b), (b, a)] {
        let (mut i, mut r, _) = mew_pair(x, y);
        offer_reaches(&mut i, &mut r, 13);
    }
    offer_reaches(&mut ai, &mut ar, 14);
    offer_reaches(&mut bi, &mut br, 15);
}

/// The PeerJS table lives on the node that claimed its key. Cut off from Redis by the network,
/// or frozen, that node is gone for the others, and the next client on another node claims the
/// key and starts a table there. When the node is back, it closes the connections it still
/// serves by the key (1012: reconnect), so that one table, on one node, answers for every id
/// again: a client takes the first node's id on any node, and messages reach it.
#[test]
fn a_key_taken_while_its_owner_was_away_ends_its_old_owners_connections() {
    for freeze in [false, true] {
        let Some((_redis, partition, nodes)) = partitionable() else {
            return;
        };
        let away = |on: bool| match (freeze, on) {
            (true, true) => nodes[0].signal(libc::SIGSTOP),
            (true, false) => nodes[0].signal(libc::SIGCONT),
            (false, cut) => partition.cut(cut),
        };
        let (a, b) = (nodes[0].addr, nodes[1].addr);
        let peer = |at: SocketAddr, id: &str, token: &str| {
            let q = format!("/peerjs?key=peerjs&id={id}&token={token}&version=1.5.5");
            let mut c = connect(at, &q).unwrap();
            assert_eq!(common::recv_text(&mut c), r#"{"type":"OPEN"}"#, "{id}");
            c
        };
        let mut first = peer(a, "first", "t1");
        away(true);
        wait_for_metric(&[b], "sigyard_cluster_nodes_gone_total", 1.0);
        let mut second = peer(b, "second", "t2");
        away(false);
        let back = Instant::now();
        let (code, reason, _) = closed_with(&mut first);
        assert_eq!(code, CloseCode::Restart, "{reason}");
        assert!(
            back.elapsed() <= Duration::from_secs(5),
            "{:?}",
            back.elapsed()
        );
        assert_eq!(common::metric(a, "sigyard_cluster_keys_taken_total"), 1.0);
        // Its id is free in the one table left, from either node.
        let mut again = peer(a, "first", "t3");
        second
            .send(Message::text(
                r#"{"type":"OFFER","payload":1,"dst":"first"}"#,
            ))
            .unwrap();
        assert_eq!(
            common::recv_text(&mut again),
            r#"{"type":"OFFER","src":"second","dst":"first","payload":1}"#
        );
        let q = "/peerjs?key=peerjs&id=first&token=t4&version=1.5.5";
        let mut thief = connect(b, q).unwrap();
        assert_eq!(
            common::recv_text(&mut thief),
            r#"{"type":"ID-TAKEN","payload":{"msg":"ID is taken"}}"#,
            "freeze: {freeze}"
        );
    }
}

/// A pipe streaming numbered messages from `x` (writer) to `y`; returns the writer's thread
/// and checks, on `y`, that what arrives is the stream in order with nothing missing until it
/// ends (all of it, or a close: never a gap). Returns how many arrived and how `y` ended.
fn stream_without_gaps(x: Ws, y: &mut Ws, cut: impl FnOnce()) -> (u32, Option<CloseCode>) {
    const COUNT: u32 = 20_000;
    let writer = std::thread::spawn(move || {
        let mut x = x;
        for i in 0..COUNT {
            if x.send(Message::binary(i.to_be_bytes().to_vec())).is_err() {
                break;
            }
            if i % 100 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        x
    });
    std::thread::sleep(Duration::from_millis(100));
    cut();
    let mut next = 0u32;
    let end = loop {
        match y.read() {
            Ok(Message::Binary(d)) => {
                let i = u32::from_be_bytes(d[..4].try_into().unwrap());
                assert_eq!(i, next, "a gap in the stream");
                next += 1;
                if next == COUNT {
                    break None;
                }
            }
            Ok(Message::Close(f)) => break f.map(|f| f.code),
            other => panic!("after {next} messages: {other:?}"),
        }
    };
    let mut x = writer.join().unwrap();
    if end.is_some() {
        // The writer's side ended too, in time.
        let (code, reason, took) = closed_with(&mut x);
        assert_eq!(code, CloseCode::Away, "{reason}");
        assert!(took <= Duration::from_secs(5), "{took:?}");
    }
    (next, end)
}

/// Redis drops `node`'s connection of `kind` (`normal`: its commands, `pubsub`: its
/// subscription).
fn kill_client(redis: &Redis, node: &Node, kind: &str) {
    let list = redis.command(&format!("CLIENT LIST TYPE {kind}"));
    let mine = node.ports_to(redis.port);
    let port = list
        .split_whitespace()
        .filter_map(|f| f.strip_prefix("addr=127.0.0.1:")?.parse::<u16>().ok())
        .find(|p| mine.contains(p))
        .unwrap_or_else(|| panic!("no {kind} connection of the node in {list}"));
    let killed = redis.command(&format!("CLIENT KILL ADDR 127.0.0.1:{port} SKIPME yes"));
    assert!(killed.starts_with(":1"), "{killed}");
}

/// Records lost between two nodes (Redis dropped the publisher's connection with batches
/// unsent, or the receiver's subscription) end every relationship between them, on both sides:
/// a pipe across them closes; it never goes on with a gap.
#[test]
fn records_lost_between_nodes_end_their_relationships_on_both_sides() {
    let Some((redis, nodes)) = cluster(2, &[]) else {
        return;
    };
    let (a, b) = (nodes[0].addr, nodes[1].addr);
    // The writer's node alone loses its command connection while batches wait in it: the
    // reader's node hears it from the writer's.
    let (x, mut y) = pipe(a, b, "x1", "y1");
    let (n, end) = stream_without_gaps(x, &mut y, || kill_client(&redis, &nodes[0], "normal"));
    assert_eq!(end, Some(CloseCode::Away), "after {n}");
    wait_for_metric(&[a], "sigyard_cluster_reconnects_total", 1.0);
    // The reader's node alone loses its subscription: the writer's node hears it.
    let (x, mut y) = pipe(a, b, "x2", "y2");
    let (n, end) = stream_without_gaps(x, &mut y, || kill_client(&redis, &nodes[1], "pubsub"));
    assert_eq!(end, Some(CloseCode::Away), "after {n}");
    // Pipes across the two work again (once the writer's node has seen the reader's live at a
    // heartbeat: a publish that reached no subscriber had it taken for gone).
    std::thread::sleep(Duration::from_millis(1100));
    let (mut x, mut y) = pipe(b, a, "x3", "y3");
    x.send(Message::text("again")).unwrap();
    assert_eq!(next(&mut y), Message::text("again"));
}

/// Two y-webrtc sockets, on `a` and on `b`, subscribed to topic `room` (whose owner is then
/// `a`'s node, its first subscriber's), each having heard the other's probe.
fn in_one_topic(a: SocketAddr, b: SocketAddr) -> (Ws, Ws) {
    let mut socks = [connect(a, "/").unwrap(), connect(b, "/").unwrap()];
    for (i, p) in socks.iter_mut().enumerate() {
        p.send(Message::text(r#"{"type":"subscribe","topics":["room"]}"#))
            .unwrap();
        let probe = format!(r#"{{"type":"publish","topic":"room","data":"probe {i}"}}"#);
        p.send(Message::text(probe)).unwrap();
        let got = common::recv_text(p);
        assert!(got.contains(&format!("probe {i}")), "{got}");
    }
    let _ = common::recv_text(&mut socks[0]);
    let [x, y] = socks;
    (x, y)
}

/// `from` publishes `data` to `room` every 100 ms until the copy it gets back counts `clients`
/// subscribers (within 5 s); that copy.
fn publish_until_counted(from: &mut Ws, data: &str, clients: usize) -> String {
    let t = Instant::now();
    let publish = format!(r#"{{"type":"publish","topic":"room","data":"{data}"}}"#);
    let counted = format!(r#""clients":{clients}}}"#);
    loop {
        from.send(Message::text(publish.as_str())).unwrap();
        let got = common::recv_text(from);
        if got.ends_with(&counted) {
            return got;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{got}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A y-webrtc socket whose node lost records for the topic's owner node (Redis dropped the
/// command connection while publishes waited) is subscribed again once the nodes have reset
/// what they shared: publishes reach it again, and `clients` counts it.
#[test]
fn ywebrtc_subscriptions_come_back_after_lost_records() {
    let Some((redis, nodes)) = cluster(2, &[]) else {
        return;
    };
    let text = |c: &mut Ws, t: &str| c.send(Message::text(t)).unwrap();
    let (mut owner_side, mut other) = in_one_topic(nodes[0].addr, nodes[1].addr);
    // The other node's socket publishes while its node loses its command connection.
    let flood = std::thread::spawn(move || {
        for i in 0..400 {
            text(
                &mut other,
                &format!(r#"{{"type":"publish","topic":"room","data":{i}}}"#),
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        other
    });
    std::thread::sleep(Duration::from_millis(100));
    kill_client(&redis, &nodes[1], "normal");
    let mut other = flood.join().unwrap();
    wait_for_metric(&[nodes[1].addr], "sigyard_cluster_reconnects_total", 1.0);
    std::thread::sleep(Duration::from_millis(500));
    for p in [&mut owner_side, &mut other] {
        p.get_mut()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        while try_text(p).is_some() {}
        p.get_mut()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
    }
    let got = publish_until_counted(&mut owner_side, "after", 2);
    assert_eq!(common::recv_text(&mut other), got);
}

/// A y-webrtc topic whose owner node was cut off from Redis lives on at the other node (its
/// sockets subscribe again there); when the network is back, the cut-off node's sockets join
/// that one topic: publishes reach every subscriber and `clients` counts them all.
#[test]
fn ywebrtc_one_topic_after_its_owner_was_partitioned() {
    let Some((_redis, partition, nodes)) = partitionable() else {
        return;
    };
    let text = |c: &mut Ws, t: &str| c.send(Message::text(t)).unwrap();
    let (mut first, mut second) = in_one_topic(nodes[0].addr, nodes[1].addr);
    partition.cut(true);
    wait_for_metric(&[nodes[1].addr], "sigyard_cluster_nodes_gone_total", 1.0);
    // The topic lives on at the other node (its socket subscribes again there).
    publish_until_counted(&mut second, "alone", 1);
    partition.cut(false);
    let t = Instant::now();
    for p in [&mut first, &mut second] {
        p.get_mut()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
    }
    loop {
        text(
            &mut second,
            r#"{"type":"publish","topic":"room","data":"together"}"#,
        );
        let got = try_text(&mut second).unwrap_or_default();
        if got.ends_with(r#""clients":2}"#) {
            // The cut-off node's socket hears it, once, among what it heard meanwhile.
            let mut heard = Vec::new();
            while let Some(m) = try_text(&mut first) {
                heard.push(m);
            }
            assert_eq!(heard.iter().filter(|m| **m == got).count(), 1, "{heard:?}");
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(8), "{got}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
