use super::*;
use crate::proto::dialect::anypath::{AnyPath, Options as AnyOptions};
use crate::proto::dialect::testing::Harness;
use crate::proto::dialect::Dialect;

fn harness(opts: Options) -> Harness<AnyPath> {
    Harness::new(AnyPath::new(AnyOptions {
        ywebrtc_paths: vec!["/y-webrtc".into()],
        webtorrent_paths: vec!["/announce".into()],
        tracker: opts,
    }))
}

/// A 20-character id of one repeated character.
fn id(c: char) -> String {
    std::iter::repeat(c).take(20).collect()
}

/// `s` as a JSON string (the way `JSON.stringify` writes it).
fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn announce(ih: &str, peer: &str, extra: &str) -> String {
    format!(
        r#"{{"numwant":5,"uploaded":0,"downloaded":0{extra},"action":"announce","info_hash":{},"peer_id":{}}}"#,
        js(ih),
        js(peer)
    )
}

fn offers(tags: &[&str]) -> String {
    let list: Vec<String> = tags
        .iter()
        .map(|t| {
            format!(
                r#"{{"offer":{{"type":"offer","sdp":"v=0 {t}"}},"offer_id":{}}}"#,
                js(&format!("{t:_<20}"))
            )
        })
        .collect();
    format!(r#","offers":[{}]"#, list.join(","))
}

fn response(c: u32, i: u32, ih: &str) -> String {
    format!(
        r#"{{"complete":{c},"incomplete":{i},"action":"announce","interval":120,"info_hash":{}}}"#,
        js(ih)
    )
}

#[test]
fn the_example_exchange_byte_for_byte() {
    let mut h = harness(Options::default());
    let (ih, ih2, a, b) = (id('h'), id('i'), id('A'), id('B'));
    let ca = h.open("/announce");
    h.text(
        ca,
        &announce(
            &ih,
            &a,
            &format!(r#","left":0,"event":"started"{}"#, offers(&["a1"])),
        ),
    );
    assert_eq!(
        h.texts_to(ca),
        [response(1, 0, &ih)],
        "no other peer: no offer"
    );
    let cb = h.open("/announce");
    h.text(
        cb,
        &announce(
            &ih,
            &b,
            &format!(
                r#","left":1048576,"event":"started"{}"#,
                offers(&["o1", "o2"])
            ),
        ),
    );
    assert_eq!(h.texts_to(cb), [response(1, 1, &ih)]);
    let o1 = js(&format!("{:_<20}", "o1"));
    assert_eq!(
        h.texts_to(ca),
        [format!(
            r#"{{"action":"announce","offer":{{"type":"offer","sdp":"v=0 o1"}},"offer_id":{o1},"peer_id":{},"info_hash":{}}}"#,
            js(&b),
            js(&ih)
        )],
        "one other peer: the first offer only"
    );
    h.text(
        ca,
        &format!(
            r#"{{"action":"announce","info_hash":{},"peer_id":{},"to_peer_id":{},"answer":{{"type":"answer","sdp":"v=0 x"}},"offer_id":{o1}}}"#,
            js(&ih),
            js(&a),
            js(&b)
        ),
    );
    assert_eq!(
        h.texts_to(ca),
        Vec::<String>::new(),
        "no response to an answer"
    );
    assert_eq!(
        h.texts_to(cb),
        [format!(
            r#"{{"action":"announce","answer":{{"type":"answer","sdp":"v=0 x"}},"offer_id":{o1},"peer_id":{},"info_hash":{}}}"#,
            js(&a),
            js(&ih)
        )]
    );
    h.text(
        cb,
        &format!(
            r#"{{"action":"scrape","info_hash":[{},{}]}}"#,
            js(&ih),
            js(&ih2)
        ),
    );
    assert_eq!(
        h.texts_to(cb),
        [format!(
            r#"{{"action":"scrape","files":{{{}:{{"complete":1,"incomplete":1,"downloaded":1}},{}:{{"complete":0,"incomplete":0,"downloaded":0}}}},"flags":{{"min_request_interval":600}}}}"#,
            js(&ih),
            js(&ih2)
        )]
    );
    h.text(cb, &announce(&ih, &b, r#","left":0,"event":"completed""#));
    assert_eq!(h.texts_to(cb), [response(2, 0, &ih)]);
    h.text(
        cb,
        r#"{"action":"announce","info_hash":"short","peer_id":"BBBBBBBBBBBBBBBBBBBB"}"#,
    );
    assert_eq!(
        h.texts_to(cb),
        [r#"{"action":"announce","failure reason":"invalid info_hash"}"#]
    );
    assert!(h.take_sent().is_empty());
}

#[test]
fn what_json_parse_takes_is_a_request() {
    // A number past f64's range, and a lone surrogate in a name nobody reads: JSON, as
    // `JSON.parse` (and the original) takes it.
    let mut h = harness(Options::default());
    let c = h.open("/announce");
    let ih = id('h');
    h.text(
        c,
        &announce(&ih, &id('A'), r#","offers":1e400,"x":{"\udc00":[1e999]}"#),
    );
    assert_eq!(h.texts_to(c), [response(0, 1, &ih)]);
}

#[test]
fn every_failure_reason() {
    let mut h = harness(Options::default());
    let c = h.open("/announce");
    let ih = id('h');
    let cases: Vec<(String, String)> = vec![
        (
            "not json".into(),
            r#"{"failure reason":"Invalid request"}"#.into(),
        ),
        (
            "null".into(),
            r#"{"failure reason":"Invalid request"}"#.into(),
        ),
        ("5".into(), r#"{"failure reason":"Invalid request"}"#.into()),
        (
            // Not JSON deep inside: a trailing comma in an offer.
            announce(&ih, &id('A'), r#","offers":[{"offer":{"sdp":"v=0\r\n",}}]"#),
            r#"{"failure reason":"Invalid request"}"#.into(),
        ),
        (
            r#"{"info_hash":"x"}"#.into(),
            r#"{"failure reason":"invalid action in WS request: undefined"}"#.into(),
        ),
        (
            r#"{"action":"publish"}"#.into(),
            r#"{"failure reason":"invalid action in WS request: publish"}"#.into(),
        ),
        (
            r#"{"action":7}"#.into(),
            r#"{"failure reason":"invalid action in WS request: 7"}"#.into(),
        ),
        (
            announce(&ih, "short", ""),
            format!(
                r#"{{"action":"announce","failure reason":"invalid peer_id","info_hash":{}}}"#,
                js(&ih)
            ),
        ),
        (
            announce(&ih, &id('A'), r#","answer":{"sdp":"x"},"to_peer_id":5"#),
            format!(
                r#"{{"action":"announce","failure reason":"invalid `to_peer_id` (required with `answer`)","info_hash":{}}}"#,
                js(&ih)
            ),
        ),
        (
            announce(&ih, &id('A'), r#","event":"finished""#),
            format!(
                r#"{{"action":"announce","failure reason":"invalid event","info_hash":{}}}"#,
                js(&ih)
            ),
        ),
        (
            announce(&ih, &id('A'), r#","event":5"#),
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
            format!(r#"{{"action":"scrape","info_hash":[{},"short"]}}"#, js(&ih)),
            r#"{"action":"scrape","failure reason":"invalid info_hash"}"#.into(),
        ),
        (
            r#"{"action":"scrape"}"#.into(),
            r#"{"action":"scrape","failure reason":"Full scrapes are not allowed"}"#.into(),
        ),
        (
            r#"{"action":"announce","info_hash":"ĀĀĀĀĀĀĀĀĀĀĀĀĀĀĀĀĀĀĀĀ","peer_id":"x"}"#.into(),
            r#"{"action":"announce","failure reason":"invalid info_hash"}"#.into(),
        ),
    ];
    for (frame, want) in cases {
        h.text(c, &frame);
        assert_eq!(h.texts_to(c), [want], "for {frame}");
    }
    assert_eq!(h.d.tracker().peers(), 0, "no failed request joined a swarm");
    assert_eq!(h.d.tracker().counters().failures, 15);
}

#[test]
fn binary_strings_come_back_as_json_stringify_writes_them() {
    let mut h = harness(Options::default());
    let c = h.open("/announce");
    // Every kind of character: controls (named and \u escapes), quote, backslash, DEL, latin1.
    let ih: String = "\u{0}\u{8}\t\n\u{c}\r\u{1f}\"\\\u{7f}\u{80}é\u{ff} az09+/".into();
    assert_eq!(ih.chars().count(), 20);
    h.text(c, &announce(&ih, &id('A'), ""));
    let want = r#"{"complete":0,"incomplete":1,"action":"announce","interval":120,"info_hash":"\u0000\b\t\n\f\r\u001f\"\\"#
        .to_string()
        + "\u{7f}\u{80}é\u{ff} az09+/\"}";
    assert_eq!(h.texts_to(c), [want]);
    // Escapes in the request are read as the characters they stand for.
    h.text(
        c,
        r#"{"action":"announce","info_hash":"\u0061aaaaaaaaaaaaaaaaaaa","peer_id":"AAAAAAAAAAAAAAAAAAAA"}"#,
    );
    assert_eq!(h.texts_to(c), [response(0, 1, &id('a'))]);
    // 19 or 21 characters are not an id.
    for bad in [&id('x')[1..], &format!("{}x", id('x'))] {
        h.text(c, &announce(bad, &id('A'), ""));
        assert!(h.texts_to(c)[0].contains("invalid info_hash"));
    }
}

#[test]
fn offers_go_to_distinct_random_other_peers_up_to_the_limit() {
    let mut h = harness(Options::default());
    let ih = id('h');
    let peers: Vec<(Handle, String)> = (0..12)
        .map(|n| {
            let c = h.open("/announce");
            let p = format!("{n:0>20}");
            h.text(c, &announce(&ih, &p, ""));
            (c, p)
        })
        .collect();
    h.take_sent();
    let (me, my_id) = &peers[0];
    let tags: Vec<String> = (0..12).map(|n| format!("t{n}")).collect();
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    h.text(*me, &announce(&ih, my_id, &offers(&tags)));
    assert_eq!(h.texts_to(*me), [response(0, 12, &ih)]);
    let sent = h.take_sent();
    assert_eq!(sent.len(), 10, "--webtorrent-max-offers 10");
    let mut to: Vec<Handle> = sent.iter().map(|(c, _, _)| *c).collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), 10, "distinct peers");
    assert!(!to.contains(me), "never back to the announcer");
    for (n, (_, _, p)) in sent.iter().enumerate() {
        let text = String::from_utf8(p.clone()).unwrap();
        assert!(
            text.contains(&format!("v=0 t{n}\"")),
            "offer {n} in order: {text}"
        );
    }
    // Entries that are not objects are skipped; an object without offer or offer_id is sent
    // as the members it has.
    h.text(*me, &announce(&ih, my_id, r#","offers":[null,5,"x",{}]"#));
    h.texts_to(*me);
    let sent = h.take_sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        String::from_utf8(sent[0].2.clone()).unwrap(),
        format!(
            r#"{{"action":"announce","peer_id":{},"info_hash":{}}}"#,
            js(my_id),
            js(&ih)
        )
    );
    // `stopped` sends none, and leaves the swarm.
    h.text(
        *me,
        &announce(
            &ih,
            my_id,
            &format!(r#","event":"stopped"{}"#, offers(&["s"])),
        ),
    );
    assert_eq!(h.texts_to(*me), [response(0, 11, &ih)]);
    assert!(h.take_sent().is_empty());
    // Over many rounds every other peer gets offers: the choice is spread.
    let mut seen = std::collections::HashSet::new();
    let (c1, id1) = &peers[1];
    for _ in 0..50 {
        h.text(*c1, &announce(&ih, id1, &offers(&["r"])));
        h.texts_to(*c1);
        seen.extend(h.take_sent().into_iter().map(|(c, _, _)| c));
    }
    assert_eq!(
        seen.len(),
        10,
        "each of the 10 others was picked at some point"
    );
}

#[test]
fn counts_follow_left_and_events() {
    let mut h = harness(Options::default());
    let ih = id('h');
    let c = h.open("/announce");
    let cases = [
        ('a', r#","left":null"#, (0, 1)),
        ('b', "", (0, 2)),
        ('c', r#","left":"0""#, (1, 2)),
        ('d', r#","left":0"#, (2, 2)),
        ('e', r#","left":"""#, (2, 3)),
        ('f', r#","left":12,"event":"completed""#, (3, 3)),
        ('a', r#","left":0"#, (4, 2)),
        ('a', r#","left":10"#, (4, 2)),
        ('b', r#","event":"stopped""#, (4, 1)),
        ('b', r#","event":"stopped""#, (4, 1)),
    ];
    for (who, extra, (complete, incomplete)) in cases {
        h.text(c, &announce(&ih, &id(who), extra));
        assert_eq!(
            h.texts_to(c),
            [response(complete, incomplete, &ih)],
            "{who} {extra}"
        );
    }
}

#[test]
fn a_peer_belongs_to_its_socket_and_leaves_with_it() {
    let mut h = harness(Options::default());
    let (ih, ih2) = (id('h'), id('i'));
    let owner = h.open("/announce");
    let other = h.open("/announce");
    h.text(owner, &announce(&ih, &id('A'), ""));
    h.text(owner, &announce(&ih, &id('B'), ""));
    h.text(owner, &announce(&ih2, &id('A'), ""));
    h.take_sent();
    // Another socket speaking for A is ignored: no answer, no change.
    h.text(other, &announce(&ih, &id('A'), r#","event":"stopped""#));
    assert!(h.take_sent().is_empty());
    assert_eq!(h.d.tracker().peers(), 3);
    h.text(other, &announce(&ih, &id('C'), ""));
    assert_eq!(h.texts_to(other), [response(0, 3, &ih)]);
    h.close(owner);
    assert_eq!(
        h.d.tracker().peers(),
        1,
        "every entry the socket owned is gone"
    );
    assert_eq!(h.d.tracker().swarms(), 1, "an empty swarm is deleted");
    // Now A is free for another socket.
    h.text(other, &announce(&ih, &id('A'), ""));
    assert_eq!(h.texts_to(other), [response(0, 2, &ih)]);
}

#[test]
fn answers_reach_the_named_peer_only() {
    let mut h = harness(Options::default());
    let ih = id('h');
    let (ca, cb) = (h.open("/announce"), h.open("/announce"));
    h.text(ca, &announce(&ih, &id('A'), ""));
    h.text(cb, &announce(&ih, &id('B'), ""));
    h.take_sent();
    let answer = |to: &str, extra: &str| {
        format!(
            r#"{{"action":"announce","info_hash":{},"peer_id":{},"to_peer_id":{},"answer":{{"sdp":"y"}}{extra}}}"#,
            js(&ih),
            js(&id('B')),
            js(to)
        )
    };
    h.text(cb, &answer(&id('Z'), r#","offer_id":"o""#));
    assert!(h.take_sent().is_empty(), "unknown peer: dropped");
    h.text(cb, &answer(&id('A'), ""));
    assert!(h.take_sent().is_empty(), "no offer_id: dropped");
    h.text(cb, &answer(&id('A'), r#","offer_id":"o""#));
    assert_eq!(
        h.texts_to(ca),
        [format!(
            r#"{{"action":"announce","answer":{{"sdp":"y"}},"offer_id":"o","peer_id":{},"info_hash":{}}}"#,
            js(&id('B')),
            js(&ih)
        )]
    );
    assert_eq!(h.d.tracker().counters().answers_relayed, 1);
    // A falsy answer is no answer: an ordinary announce, answered.
    h.text(cb, &answer(&id('A'), "").replace(r#"{"sdp":"y"}"#, "0"));
    assert_eq!(h.texts_to(cb), [response(0, 2, &ih)]);
}

#[test]
fn scrape_reports_zeros_dedupes_and_stops_at_255() {
    let mut h = harness(Options::default());
    let c = h.open("/announce");
    let ih = id('h');
    h.text(c, &announce(&ih, &id('A'), ""));
    h.take_sent();
    h.text(
        c,
        &format!(r#"{{"action":"scrape","info_hash":{}}}"#, js(&ih)),
    );
    assert_eq!(
        h.texts_to(c),
        [format!(
            r#"{{"action":"scrape","files":{{{}:{{"complete":0,"incomplete":1,"downloaded":0}}}},"flags":{{"min_request_interval":600}}}}"#,
            js(&ih)
        )]
    );
    let many: Vec<String> = (0..300).map(|n| js(&format!("{n:0>20}"))).collect();
    let mut list = many.clone();
    list.insert(1, many[0].clone());
    h.text(
        c,
        &format!(r#"{{"action":"scrape","info_hash":[{}]}}"#, list.join(",")),
    );
    let reply: serde_json::Value = serde_json::from_str(&h.texts_to(c)[0]).unwrap();
    assert_eq!(
        reply["files"].as_object().unwrap().len(),
        254,
        "255 read, one repeated"
    );
}

#[test]
fn full_scrape_when_allowed() {
    let mut h = harness(Options {
        full_scrape: true,
        interval_s: 30,
        ..Options::default()
    });
    let c = h.open("/announce");
    h.text(c, &announce(&id('h'), &id('A'), r#","left":0"#));
    h.take_sent();
    h.text(c, r#"{"action":"scrape","info_hash":null}"#);
    assert_eq!(
        h.texts_to(c),
        [format!(
            r#"{{"action":"scrape","files":{{{}:{{"complete":1,"incomplete":0,"downloaded":1}}}},"flags":{{"min_request_interval":150}}}}"#,
            js(&id('h'))
        )]
    );
}

#[test]
fn the_allow_list_refuses_other_hashes() {
    let allowed: HashSet<Id20> = [*b"hhhhhhhhhhhhhhhhhhhh"].into_iter().collect();
    let mut h = harness(Options {
        allowed: Some(Arc::new(allowed)),
        ..Options::default()
    });
    let c = h.open("/announce");
    h.text(c, &announce(&id('h'), &id('A'), ""));
    assert_eq!(h.texts_to(c), [response(0, 1, &id('h'))]);
    h.text(c, &announce(&id('x'), &id('A'), ""));
    assert_eq!(
        h.texts_to(c),
        [format!(
            r#"{{"action":"announce","failure reason":"Info hash not allowed","info_hash":{}}}"#,
            js(&id('x'))
        )]
    );
    assert_eq!(h.d.tracker().swarms(), 1);
}

#[test]
fn peers_expire_and_full_swarms_evict_the_least_recent() {
    let mut h = harness(Options {
        max_peers_per_swarm: 3,
        peer_timeout_ms: 60_000,
        ..Options::default()
    });
    let ih = id('h');
    let c = h.open("/announce");
    for (n, who) in ['a', 'b', 'c'].into_iter().enumerate() {
        h.advance(1_000);
        h.text(c, &announce(&ih, &id(who), ""));
        assert_eq!(h.texts_to(c), [response(0, n as u32 + 1, &ih)]);
    }
    h.advance(10_000);
    h.text(c, &announce(&ih, &id('a'), ""));
    h.text(c, &announce(&ih, &id('d'), ""));
    h.take_sent();
    // b announced least recently: it made room for d.
    h.text(c, &announce(&ih, &id('b'), r#","event":"stopped""#));
    assert_eq!(
        h.texts_to(c),
        [response(0, 3, &ih)],
        "b was no longer there"
    );
    assert_eq!(h.d.tracker().peers(), 3);
    // Swept every 6 s (a tenth of the timeout): c (last at 4 s) is gone by 70 s, a and d (at
    // 14 s) by 80 s.
    h.advance(56_000);
    assert_eq!(
        h.d.tracker().peers(),
        2,
        "c's last announce is over a minute old"
    );
    h.advance(10_000);
    assert_eq!(h.d.tracker().peers(), 0);
    assert_eq!(h.d.tracker().swarms(), 0);
    assert_eq!(h.d.poll_timeout(), None, "nothing to sweep");
    h.close(c);
}

#[test]
fn a_connection_announces_a_bounded_number_of_peers() {
    let mut h = harness(Options {
        max_peers_per_connection: 2,
        ..Options::default()
    });
    let c = h.open("/announce");
    h.text(c, &announce(&id('h'), &id('A'), ""));
    h.text(c, &announce(&id('i'), &id('A'), ""));
    h.take_sent();
    h.text(c, &announce(&id('j'), &id('A'), ""));
    assert_eq!(
        h.texts_to(c),
        [format!(
            r#"{{"action":"announce","failure reason":"too many torrents announced on this connection","info_hash":{}}}"#,
            js(&id('j'))
        )]
    );
    // Its existing entries still update, and leaving one makes room.
    h.text(c, &announce(&id('h'), &id('A'), ""));
    assert_eq!(h.texts_to(c), [response(0, 1, &id('h'))]);
    h.text(c, &announce(&id('h'), &id('A'), r#","event":"stopped""#));
    h.take_sent();
    h.text(c, &announce(&id('j'), &id('A'), ""));
    assert_eq!(h.texts_to(c), [response(0, 1, &id('j'))]);
    assert_eq!(h.d.tracker().peers(), 2);
}

#[test]
fn a_connection_with_many_torrents_keeps_count_and_leaves_them_all() {
    // Past the inline and scanned sizes, a connection's entries live in a set.
    let mut h = harness(Options {
        max_peers_per_connection: 60,
        max_peers_per_swarm: 1,
        ..Options::default()
    });
    let c = h.open("/announce");
    let ih = |n: usize| format!("{:0>20}", n);
    for n in 0..60 {
        h.text(c, &announce(&ih(n), &id('A'), ""));
    }
    assert_eq!(h.d.tracker().peers(), 60);
    h.take_sent();
    h.text(c, &announce(&ih(60), &id('A'), ""));
    assert!(h.texts_to(c)[0].contains("too many torrents"));
    // Leaving by `stopped` and by eviction (another socket joins a full swarm of one) both
    // free an entry.
    h.text(c, &announce(&ih(0), &id('A'), r#","event":"stopped""#));
    let other = h.open("/announce");
    h.text(other, &announce(&ih(1), &id('B'), ""));
    assert_eq!(h.d.tracker().peers(), 59);
    h.take_sent();
    for n in [60, 61] {
        h.text(c, &announce(&ih(n), &id('A'), ""));
        assert_eq!(h.texts_to(c), [response(0, 1, &ih(n))]);
    }
    assert_eq!(h.d.tracker().peers(), 61);
    h.close(c);
    assert_eq!(
        h.d.tracker().peers(),
        1,
        "only the other socket's peer is left"
    );
    assert_eq!(h.d.tracker().swarms(), 1);
}

#[test]
fn picks_are_distinct_and_skip_the_announcer() {
    let mut rng = 0x1234_5678_9abc_def1;
    for n in 1..40 {
        for skip in [None, Some(0), Some(n - 1)] {
            let others = n - usize::from(skip.is_some());
            for want in 0..=others.min(12) {
                let mut p = swarms::pick(&mut rng, n, skip, want);
                assert_eq!(p.len(), want);
                assert!(p.iter().all(|&i| i < n && Some(i) != skip));
                p.sort();
                p.dedup();
                assert_eq!(p.len(), want);
            }
        }
    }
}

/// `bytes` as latin1 characters.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

#[test]
fn write_bin_writes_what_serde_json_writes_for_every_byte() {
    // serde_json escapes strings as `JSON.stringify` does (named escapes, other controls as
    // lowercase `\u00xx`, U+007F and above raw).
    for first in 0..=255u8 {
        let mut id = [0u8; 20];
        for (k, b) in id.iter_mut().enumerate() {
            *b = first.wrapping_add(k as u8 * 13);
        }
        let mut out = b"x".to_vec();
        write_bin(&mut out, &id);
        let want = format!("x{}", serde_json::to_string(&latin1(&id)).unwrap());
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }
}

#[test]
fn bin20_reads_what_serde_json_reads() {
    use rand::{Rng, SeedableRng};
    // What bin20 stood for before it decoded in place: serde_json's string, 20 chars <= U+00FF.
    fn reference(raw: &str) -> Option<Id20> {
        let text: String = serde_json::from_str(raw).ok()?;
        let bytes: Vec<u8> = text
            .chars()
            .map(|c| u8::try_from(u32::from(c)).ok())
            .collect::<Option<_>>()?;
        bytes.try_into().ok()
    }
    // Characters of an id, raw or escaped; then characters past U+00FF and surrogates.
    let fit = [
        "a", "~", "\u{7f}", "\u{80}", "é", "\u{ff}", "\\\"", "\\\\", "\\/",
    ];
    let fit_escaped = ["\\b", "\\f", "\\n", "\\r", "\\t", "\\u0000", "\\u001F"];
    let fit_hex = ["\\u00e9", "\\u00FF", "\\u0041"];
    let wide = [
        "\u{100}",
        "€",
        "😀",
        "\\u0100",
        "\\uD800",
        "\\udc00",
        "\\ud83d\\ude00",
    ];
    let all: Vec<&str> = [&fit[..], &fit_escaped, &fit_hex, &wide].concat();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut ids = 0;
    for _ in 0..20_000 {
        let n = rng.random_range(17..23);
        let mut s = String::from("\"");
        for _ in 0..n {
            // Mostly characters that fit, so that many of the strings are ids.
            let wide_too = rng.random_bool(0.1);
            let pool = if wide_too {
                &all[..]
            } else {
                &all[..all.len() - wide.len()]
            };
            s += pool[rng.random_range(0..pool.len())];
        }
        s.push('"');
        serde_json::from_str::<serde::de::IgnoredAny>(&s).expect("JSON");
        assert_eq!(bin20(&s), reference(&s), "{s}");
        ids += usize::from(bin20(&s).is_some());
    }
    assert!(
        (1_000..19_000).contains(&ids),
        "{ids} of the strings are ids"
    );
    for not_a_string in ["null", "12", "[\"a\"]", "{}"] {
        assert_eq!(bin20(not_a_string), None);
    }
}

#[test]
fn what_a_swarm_is_told_and_replies_reads_back_and_garbage_does_not() {
    let (ih, me, to) = ([1u8; 20], [2u8; 20], [3u8; 20]);
    let told = Told::Announce(Announce {
        ih,
        me,
        event: Event::Completed,
        seeder: true,
        offers: vec![
            (Some(&br#"{"sdp":"x"}"#[..]), None),
            (None, Some(&br#""id""#[..])),
        ],
        answer: Some((to, &br#"{"sdp":"y"}"#[..], Some(&br#""o""#[..]))),
    });
    let mut b = Vec::new();
    told.encode(&mut b);
    let Some(Told::Announce(a)) = Told::decode(&b) else {
        panic!("an announce");
    };
    assert_eq!((a.ih, a.me, a.seeder), (ih, me, true));
    assert!(a.event == Event::Completed);
    assert_eq!(
        a.offers,
        [
            (Some(&br#"{"sdp":"x"}"#[..]), None),
            (None, Some(&br#""id""#[..]))
        ]
    );
    assert_eq!(
        a.answer,
        Some((to, &br#"{"sdp":"y"}"#[..], Some(&br#""o""#[..])))
    );
    // Every cut of it, and a byte more, are refused.
    for n in 0..b.len() {
        assert!(Told::decode(&b[..n]).is_none(), "{n}");
    }
    b.push(0);
    assert!(Told::decode(&b).is_none());
    for t in [Told::Leave { ih, id: me }, Told::Rejoin { ih, id: me }] {
        let mut b = Vec::new();
        t.encode(&mut b);
        let mut again = Vec::new();
        Told::decode(&b).expect("a tell").encode(&mut again);
        assert_eq!(again, b);
        assert!(Told::decode(&b[..b.len() - 1]).is_none());
    }
    for r in [
        Replied::Counts {
            scrape: 7,
            index: 3,
            complete: 1,
            incomplete: 2,
        },
        Replied::All {
            scrape: 8,
            files: vec![(ih, 4, 5)],
        },
        Replied::Dropped { ih, id: me },
    ] {
        let mut b = Vec::new();
        r.encode(&mut b);
        let mut again = Vec::new();
        Replied::decode(&b).expect("a reply").encode(&mut again);
        assert_eq!(again, b);
        assert!(Replied::decode(&b[..b.len() - 1]).is_none());
    }
    assert!(Told::decode(&[9]).is_none() && Replied::decode(&[]).is_none());
}

#[test]
fn a_scrape_whose_swarms_do_not_answer_is_answered_with_zeros_in_time() {
    let mut t = Tracker::new(Options::default());
    let mut out = crate::proto::dialect::Outputs::default();
    let conn = Handle::of(1, 1);
    let (a, b) = (id('a'), id('b'));
    let msg = format!(
        r#"{{"action":"scrape","info_hash":[{},{}]}}"#,
        js(&a),
        js(&b)
    );
    crate::proto::fuzzing::with_cx(&mut out, 1_000, 1, |cx| {
        t.message(cx, conn, Message::Text(&msg))
    });
    // Two counts asked of the swarms' keys; nothing answered yet.
    let asked = out.take_local();
    assert_eq!(asked.len(), 2);
    assert!(out.is_empty());
    assert_eq!(t.next_sweep(0), Some(1_000 + SCRAPE_WAIT_MS));
    // One swarm answers; the other never does (its node went away).
    let (from, payload) = match &asked[0] {
        crate::proto::dialect::Local::Tell { from, payload, .. } => (*from, payload.clone()),
        l => panic!("{l:?}"),
    };
    crate::proto::fuzzing::with_cx(&mut out, 1_001, 1, |cx| t.told(cx, from, &payload));
    let reply = out.take_local();
    let crate::proto::dialect::Local::Reply { to, payload } = &reply[0] else {
        panic!("{reply:?}");
    };
    crate::proto::fuzzing::with_cx(&mut out, 1_002, 1, |cx| t.replied(cx, *to, payload));
    assert!(out.is_empty(), "the scrape waits for the other swarm");
    crate::proto::fuzzing::with_cx(&mut out, 1_000 + SCRAPE_WAIT_MS, 1, |cx| t.expire(cx));
    let sent: Vec<_> = out.iter().map(|(_, b)| b.to_vec()).collect();
    let zeros = r#"{"complete":0,"incomplete":0,"downloaded":0}"#;
    assert_eq!(
        sent,
        [format!(
            r#"{{"action":"scrape","files":{{{}:{zeros},{}:{zeros}}},"flags":{{"min_request_interval":600}}}}"#,
            js(&a),
            js(&b)
        )
        .into_bytes()]
    );
    assert_eq!(t.next_sweep(0), None);
}

/// The tells in `out`, as (from, payload).
fn tells(out: &mut crate::proto::dialect::Outputs) -> Vec<(Handle, Vec<u8>)> {
    out.take_local()
        .into_iter()
        .filter_map(|l| match l {
            crate::proto::dialect::Local::Tell { from, payload, .. } => Some((from, payload)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_socket_rejoins_its_swarms_when_their_owner_may_have_been_lost() {
    let mut serving = Tracker::new(Options::default());
    let mut owner = Tracker::new(Options::default());
    let mut out = crate::proto::dialect::Outputs::default();
    let conn = Handle::of(1, 1);
    let (ih, me) = (id('h'), id('s'));
    let msg = announce(&ih, &me, r#","left":0"#);
    crate::proto::fuzzing::with_cx(&mut out, 1_000, 1, |cx| {
        serving.message(cx, conn, Message::Text(&msg))
    });
    for (from, p) in tells(&mut out) {
        crate::proto::fuzzing::with_cx(&mut out, 1_000, 1, |cx| owner.told(cx, from, &p));
    }
    assert_eq!(owner.peers(), 1);
    let mut out = crate::proto::dialect::Outputs::default();
    // The owner's node is gone: a new owner knows nothing; the socket rejoins it, as a
    // leecher, and hears nothing of it.
    let mut new_owner = Tracker::new(Options::default());
    crate::proto::fuzzing::with_cx(&mut out, 2_000, 1, |cx| serving.lost(cx, &|_| false));
    let rejoin = tells(&mut out);
    assert_eq!(rejoin.len(), 1);
    for (from, p) in &rejoin {
        crate::proto::fuzzing::with_cx(&mut out, 2_000, 1, |cx| new_owner.told(cx, *from, p));
        // Told again (a second loss, or one that did not concern it): still one peer.
        crate::proto::fuzzing::with_cx(&mut out, 2_001, 1, |cx| new_owner.told(cx, *from, p));
    }
    assert_eq!(new_owner.peers(), 1);
    assert!(out.is_empty() && out.take_local().is_empty());
    let counts = new_owner.swarms.swarms.values().next().map(|s| s.counts());
    assert_eq!(counts, Some((0, 1)));
    // Another socket speaking for that peer id meanwhile keeps it: the rejoining one is told
    // it no longer speaks for it.
    let (_, p) = &rejoin[0];
    let other = Handle::of(1, 2);
    crate::proto::fuzzing::with_cx(&mut out, 2_002, 1, |cx| new_owner.told(cx, other, p));
    let replies = out.take_local();
    assert!(
        matches!(&replies[..], [crate::proto::dialect::Local::Reply { to, .. }] if *to == other),
        "{replies:?}"
    );
}
