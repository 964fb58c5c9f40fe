//! The latency histograms on `/metrics` over real sockets: upgrades move
//! `sigyard_handshake_duration_seconds`, echoed and relayed messages move
//! `sigyard_message_relay_seconds{dialect=…}`, and every histogram's buckets parse, are
//! cumulative and end in `le="+Inf"` equal to `_count`.

mod common;
use common::*;
use std::collections::BTreeMap;
use tungstenite::Message;

/// One histogram's series as scraped: its buckets in order (`le`, cumulative count), sum and
/// count.
#[derive(Debug, Default)]
struct Hist {
    buckets: Vec<(f64, u64)>,
    sum: Option<f64>,
    count: Option<u64>,
}

/// Every series of histogram `name` in the `/metrics` text, by its labels other than `le`.
fn histograms(text: &str, name: &str) -> BTreeMap<String, Hist> {
    assert!(
        text.contains(&format!("# TYPE {name} histogram\n")),
        "{name} has no TYPE line"
    );
    let mut out: BTreeMap<String, Hist> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with(name)) {
        let (series, value) = line.rsplit_once(' ').expect("a value");
        let (metric, labels) = match series.split_once('{') {
            Some((m, l)) => (m, l.strip_suffix('}').expect("closing brace")),
            None => (series, ""),
        };
        let mut le = None;
        let rest: Vec<&str> = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .filter(|l| match l.strip_prefix("le=") {
                Some(v) => {
                    le = Some(v.trim_matches('"').to_owned());
                    false
                }
                None => true,
            })
            .collect();
        let h = out.entry(rest.join(",")).or_default();
        match metric.strip_prefix(name) {
            Some("_bucket") => {
                let le = le.expect("a bucket has le");
                let bound = match le.as_str() {
                    "+Inf" => f64::INFINITY,
                    v => v.parse().expect("le parses"),
                };
                h.buckets.push((bound, value.parse().expect("a count")));
            }
            Some("_sum") => h.sum = Some(value.parse().expect("a sum")),
            Some("_count") => h.count = Some(value.parse().expect("a count")),
            other => panic!("unexpected series {other:?} in {line}"),
        }
    }
    for (labels, h) in &out {
        assert!(!h.buckets.is_empty(), "{name}{{{labels}}} has no buckets");
        assert!(
            h.buckets
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
            "{name}{{{labels}}} buckets are not increasing and cumulative: {:?}",
            h.buckets
        );
        let (last, inf) = h.buckets[h.buckets.len() - 1];
        assert_eq!(last, f64::INFINITY, "{name}{{{labels}}} ends without +Inf");
        assert_eq!(Some(inf), h.count, "{name}{{{labels}}}: +Inf is not _count");
        assert!(h.sum.is_some_and(|s| s >= 0.0), "{name}{{{labels}}} sum");
    }
    out
}

#[test]
fn upgrades_and_relayed_messages_move_the_latency_histograms() {
    // One core: a y-webrtc topic and its subscribers share it (messages from other cores are
    // not measured).
    let h = start(|b| b.threads(1));
    let addr = h.plain_addr().unwrap();

    let mut echoes: Vec<_> = (0..3).map(|_| ws(addr, "/echo")).collect();
    for c in &mut echoes {
        for i in 0..4 {
            c.send(Message::text(format!("m{i}"))).unwrap();
            assert_eq!(recv_text(c), format!("m{i}"));
        }
    }

    let text = |c: &mut tungstenite::WebSocket<std::net::TcpStream>, t: &str| {
        c.send(Message::text(t)).unwrap()
    };
    let mut peers: Vec<_> = (0..2).map(|_| ws(addr, "/y-webrtc")).collect();
    for p in &mut peers {
        text(p, r#"{"type":"subscribe","topics":["room"]}"#);
        text(p, r#"{"type":"ping"}"#);
        assert_eq!(recv_text(p), r#"{"type":"pong"}"#);
    }
    text(
        &mut peers[0],
        r#"{"type":"publish","topic":"room","data":1}"#,
    );
    for p in &mut peers {
        assert!(recv_text(p).contains(r#""data":1"#));
    }

    // Five upgrades, each answered once (the scrapes' own answers may add to it).
    let hs = "sigyard_handshake_duration_seconds_count";
    assert!(metric_reaches(addr, hs, 5.0) >= 5.0);
    // Each echo was its own write batch: one observation per message.
    let echo = "sigyard_message_relay_seconds_count{dialect=\"echo\"}";
    assert_eq!(metric_reaches(addr, echo, 12.0), 12.0);
    // Two pongs and the publish to both subscribers.
    let yw = "sigyard_message_relay_seconds_count{dialect=\"ywebrtc\"}";
    assert_eq!(metric_reaches(addr, yw, 4.0), 4.0);

    let scrape = http_get(addr, "/metrics");
    let handshakes = histograms(&scrape, "sigyard_handshake_duration_seconds");
    let all = &handshakes[""];
    assert!(all.count.unwrap() >= 5, "{all:?}");
    // Loopback upgrades take well under ten seconds.
    let under_10s = all.buckets.iter().find(|b| b.0 == 10.0).unwrap().1;
    assert_eq!(Some(under_10s), all.count);

    let relays = histograms(&scrape, "sigyard_message_relay_seconds");
    assert_eq!(relays["dialect=\"echo\""].count, Some(12));
    assert_eq!(relays["dialect=\"ywebrtc\""].count, Some(4));
    assert!(relays.contains_key("dialect=\"peerjs\""));
    assert!(
        !relays.contains_key("dialect=\"httpapi\""),
        "not a WebSocket route"
    );
    stop(h);
}
