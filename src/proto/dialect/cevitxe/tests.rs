//! Unit tests of the introduction table: the original server-test scenarios (spec §2.8,
//! cevitxe `Server.test.ts`, relay 3.x/4.x server tests) ported to the pure table, plus the
//! format-detection, duplicate-id and limit rules documented in `cevitxe.rs`.

use super::*;
use crate::proto::dialect::msgpack::Value as Mp;

fn c(n: u32) -> Handle {
    Handle::of(n, 0)
}

fn text(t: &mut Introductions, conn: Handle, s: &str) -> Vec<Outgoing> {
    let mut out = Vec::new();
    t.message(conn, Kind::Text, s.as_bytes(), &mut out);
    out
}

fn binary(t: &mut Introductions, conn: Handle, v: &Mp<'_>) -> Vec<Outgoing> {
    let mut bytes = Vec::new();
    msgpack::encode(v, &mut bytes);
    let mut out = Vec::new();
    t.message(conn, Kind::Binary, &bytes, &mut out);
    out
}

/// A relay 4.x client message `{type, documentIds}`.
fn mp_msg<'a>(ty: &'a str, ids: &[&'a str]) -> Mp<'a> {
    Mp::Map(vec![
        (Mp::Str("type"), Mp::Str(ty)),
        (
            Mp::Str("documentIds"),
            Mp::Array(ids.iter().map(|s| Mp::Str(s)).collect()),
        ),
    ])
}

fn txt(to: Handle, s: &str) -> Outgoing {
    Outgoing {
        to,
        kind: Kind::Text,
        payload: s.as_bytes().to_vec(),
    }
}

fn intro_a(to: Handle, id: &str, keys: &[&str]) -> Outgoing {
    let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    txt(
        to,
        &format!(
            r#"{{"type":"Introduction","id":"{id}","keys":[{}]}}"#,
            keys.join(",")
        ),
    )
}

fn intro_b(to: Handle, id: &str, keys: &[&str]) -> Outgoing {
    let keys: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
    txt(
        to,
        &format!(
            r#"{{"type":"Introduction","userName":"{id}","documentIds":[{}]}}"#,
            keys.join(",")
        ),
    )
}

/// The binary introduction, built independently of the encoder under test.
fn intro_c(to: Handle, id: &str, keys: &[&str]) -> Outgoing {
    fn s(out: &mut Vec<u8>, v: &str) {
        assert!(v.len() < 32, "test helper handles fixstr only");
        out.push(0xa0 | v.len() as u8);
        out.extend_from_slice(v.as_bytes());
    }
    let mut p = vec![0x83];
    s(&mut p, "type");
    s(&mut p, "Introduction");
    s(&mut p, "peerId");
    s(&mut p, id);
    s(&mut p, "documentIds");
    p.push(0x90 | keys.len() as u8);
    for k in keys {
        s(&mut p, k);
    }
    Outgoing {
        to,
        kind: Kind::Binary,
        payload: p,
    }
}

fn join_a(keys: &[&str]) -> String {
    serde_json::json!({"type": "Join", "join": keys}).to_string()
}

fn join_b(keys: &[&str]) -> String {
    serde_json::json!({"type": "Join", "documentIds": keys}).to_string()
}

// --- cevitxe Server.test.ts: "Introduction" ---

#[test]
fn opening_registers_the_peer_without_keys() {
    let mut t = Introductions::new();
    t.open("local-1", c(1));
    assert_eq!(t.peers(), 1);
    assert_eq!(t.keys_of("local-1"), Some(vec![]));
    assert_eq!(t.distinct_keys(), 0);
}

#[test]
fn two_peers_are_introduced_spec_example_exact_bytes_and_order() {
    let mut t = Introductions::new();
    t.open("alice", c(1));
    t.open("bob", c(2));
    assert!(text(&mut t, c(1), r#"{"type":"Join","join":["doc-1"]}"#).is_empty());
    let out = text(&mut t, c(2), r#"{"type":"Join","join":["doc-1","doc-2"]}"#);
    assert_eq!(
        out,
        vec![
            txt(
                c(2),
                r#"{"type":"Introduction","id":"alice","keys":["doc-1"]}"#
            ),
            txt(
                c(1),
                r#"{"type":"Introduction","id":"bob","keys":["doc-1"]}"#
            ),
        ]
    );
}

#[test]
fn invites_peers_to_connect_in_both_orders() {
    // The original test sends an extra `id` field; it is ignored.
    for local_first in [true, false] {
        let mut t = Introductions::new();
        let (local, remote) = (c(10), c(20));
        t.open("local-1", local);
        t.open("remote-1", remote);
        let lj = r#"{"type":"Join","id":"local-1","join":["test-key-1"]}"#;
        let rj = r#"{"type":"Join","id":"remote-1","join":["test-key-1"]}"#;
        let out = if local_first {
            assert!(text(&mut t, local, lj).is_empty());
            text(&mut t, remote, rj)
        } else {
            assert!(text(&mut t, remote, rj).is_empty());
            text(&mut t, local, lj)
        };
        let to_local = intro_a(local, "remote-1", &["test-key-1"]);
        let to_remote = intro_a(remote, "local-1", &["test-key-1"]);
        let want = if local_first {
            vec![to_remote, to_local]
        } else {
            vec![to_local, to_remote]
        };
        assert_eq!(out, want);
    }
}

// --- cevitxe Server.test.ts: "N-way" ---

#[test]
fn n_way_five_peers_make_twenty_introductions() {
    let mut t = Introductions::new();
    let names = ["a", "b", "c", "d", "e"];
    for (i, n) in names.iter().enumerate() {
        t.open(&format!("peer-{n}-1"), c(i as u32));
    }
    let mut all = Vec::new();
    for i in 0..names.len() {
        all.extend(text(
            &mut t,
            c(i as u32),
            r#"{"type":"Join","join":["test-key"]}"#,
        ));
    }
    assert_eq!(all.len(), 20);
    let mut pairs = HashSet::new();
    for o in &all {
        let v: Json = serde_json::from_slice(&o.payload).expect("valid JSON");
        assert_eq!(v["type"], "Introduction");
        assert_eq!(v["keys"], serde_json::json!(["test-key"]));
        let about = v["id"].as_str().expect("id").to_string();
        assert_ne!(
            about,
            format!("peer-{}-1", names[o.to.raw() as u32 as usize])
        );
        assert!(
            pairs.insert((o.to.raw() as u32, about)),
            "each ordered pair once"
        );
    }
    assert_eq!(pairs.len(), 20);
    for i in 0..5 {
        assert_eq!(all.iter().filter(|o| o.to.raw() as u32 == i).count(), 4);
    }
}

#[test]
fn n_peers_on_one_key_rejoining_reintroduce_everyone() {
    // Every Join re-sends all overlaps, so the count per Join is 2·(N−1) once all have joined.
    let mut t = Introductions::new();
    for i in 0..6 {
        t.open(&format!("p{i}"), c(i));
        text(&mut t, c(i), &join_a(&["k"]));
    }
    assert_eq!(text(&mut t, c(3), &join_a(&[])).len(), 10);
}

#[test]
fn other_peers_are_visited_in_connection_order() {
    let mut t = Introductions::new();
    // Opened z, y, x, but they join in the order x, y, z.
    t.open("z", c(1));
    t.open("y", c(2));
    t.open("x", c(3));
    for n in [3, 2, 1] {
        text(&mut t, c(n), &join_a(&["k"]));
    }
    t.open("w", c(4));
    let out = text(&mut t, c(4), &join_a(&["k"]));
    assert_eq!(
        out,
        vec![
            intro_a(c(4), "z", &["k"]),
            intro_a(c(1), "w", &["k"]),
            intro_a(c(4), "y", &["k"]),
            intro_a(c(2), "w", &["k"]),
            intro_a(c(4), "x", &["k"]),
            intro_a(c(3), "w", &["k"]),
        ]
    );
    // A duplicate open keeps the id's place: z (now on conn 5) is still first.
    t.open("z", c(5));
    let out = text(&mut t, c(4), &join_a(&[]));
    assert_eq!(out[0], intro_a(c(4), "z", &["k"]));
    assert_eq!(out[1], intro_a(c(5), "w", &["k"]));
}

#[test]
fn common_keys_follow_the_senders_order() {
    let mut t = Introductions::new();
    t.open("a", c(1));
    t.open("b", c(2));
    text(&mut t, c(1), &join_a(&["x", "y", "z"]));
    let out = text(&mut t, c(2), &join_a(&["z", "q", "x"]));
    assert_eq!(
        out,
        vec![
            intro_a(c(2), "a", &["z", "x"]),
            intro_a(c(1), "b", &["z", "x"])
        ]
    );
    let out = text(&mut t, c(1), &join_a(&[]));
    assert_eq!(
        out,
        vec![
            intro_a(c(1), "b", &["x", "z"]),
            intro_a(c(2), "a", &["x", "z"])
        ]
    );
}

#[test]
fn every_join_reintroduces_all_overlaps() {
    let mut t = Introductions::new();
    t.open("a", c(1));
    t.open("b", c(2));
    text(&mut t, c(1), &join_a(&["k1"]));
    text(&mut t, c(2), &join_a(&["k1", "k2"]));
    let out = text(&mut t, c(1), &join_a(&["k2"]));
    assert_eq!(
        out,
        vec![
            intro_a(c(1), "b", &["k1", "k2"]),
            intro_a(c(2), "a", &["k1", "k2"])
        ]
    );
    // A Join of an already held key changes nothing but still re-introduces.
    assert_eq!(text(&mut t, c(1), &join_a(&["k1"])).len(), 2);
}

// --- key-set rules (format A) ---

#[test]
fn join_and_leave_dedupe_and_keep_order() {
    let mut t = Introductions::new();
    t.open("a", c(1));
    text(&mut t, c(1), r#"{"type":"Join","join":["p","q","p","r"]}"#);
    assert_eq!(t.keys_of("a"), Some(vec!["p", "q", "r"]));
    text(
        &mut t,
        c(1),
        r#"{"type":"Join","join":["s","q"],"leave":["p"]}"#,
    );
    assert_eq!(t.keys_of("a"), Some(vec!["q", "r", "s"]));
    // `leave` also removes from the same message's `join`.
    text(
        &mut t,
        c(1),
        r#"{"type":"Join","join":["t","u"],"leave":["t","zz"]}"#,
    );
    assert_eq!(t.keys_of("a"), Some(vec!["q", "r", "s", "u"]));
    // Rejoining a left key appends it at the end.
    text(&mut t, c(1), r#"{"type":"Leave","leave":["q"]}"#);
    text(&mut t, c(1), r#"{"type":"Join","join":["q"]}"#);
    assert_eq!(t.keys_of("a"), Some(vec!["r", "s", "u", "q"]));
    assert_eq!(t.distinct_keys(), 4);
}

#[test]
fn join_and_leave_arrays_are_honoured_regardless_of_type() {
    let mut t = Introductions::new();
    t.open("a", c(1));
    t.open("b", c(2));
    text(&mut t, c(1), r#"{"type":"Leave","join":["k","j"]}"#);
    assert_eq!(t.keys_of("a"), Some(vec!["k", "j"]));
    text(&mut t, c(1), r#"{"leave":["j"]}"#);
    assert_eq!(t.keys_of("a"), Some(vec!["k"]));
    let out = text(&mut t, c(2), r#"{"type":"Hello","join":["k"]}"#);
    assert_eq!(
        out,
        vec![intro_a(c(2), "a", &["k"]), intro_a(c(1), "b", &["k"])]
    );
}

#[test]
fn leave_in_format_a_reintroduces_remaining_overlaps() {
    let mut t = Introductions::new();
    t.open("a", c(1));
    t.open("b", c(2));
    text(&mut t, c(1), &join_a(&["k1", "k2"]));
    text(&mut t, c(2), &join_a(&["k1", "k2"]));
    let out = text(&mut t, c(1), r#"{"type":"Leave","leave":["k1"]}"#);
    assert_eq!(
        out,
        vec![intro_a(c(1), "b", &["k2"]), intro_a(c(2), "a", &["k2"])]
    );
    // No overlap left: nothing is sent.
    assert!(text(&mut t, c(1), r#"{"type":"Leave","leave":["k2"]}"#).is_empty());
    assert_eq!(t.keys_of("a"), Some(vec![]));
}

#[test]
fn unknown_fields_and_non_string_elements_are_ignored() {
    let mut t = Introductions::new();
    t.open("a", c(1));
    text(
        &mut t,
        c(1),
        r#"{"type":"Join","extra":{"deep":[1,2,{"x":null}]},"join":["k",1,null,{"a":"b"},["n"],"m"]}"#,
    );
    assert_eq!(t.keys_of("a"), Some(vec!["k", "m"]));
    // A non-array `join` counts as empty.
    text(
        &mut t,
        c(1),
        r#"{"type":"Join","join":"z","leave":{"k":1}}"#,
    );
    assert_eq!(t.keys_of("a"), Some(vec!["k", "m"]));
}

// --- formats B and C ---

#[test]
fn format_b_join_introduces_and_leave_sends_nothing() {
    let mut t = Introductions::new();
    t.open("a", c(1));
    t.open("b", c(2));
    text(&mut t, c(1), &join_b(&["d1", "d2"]));
    let out = text(&mut t, c(2), &join_b(&["d2", "d1"]));
    assert_eq!(
        out,
        vec![
            intro_b(c(2), "a", &["d2", "d1"]),
            intro_b(c(1), "b", &["d2", "d1"])
        ]
    );
    let out = text(&mut t, c(1), r#"{"type":"Leave","documentIds":["d1"]}"#);
    assert!(out.is_empty());
    assert_eq!(t.keys_of("a"), Some(vec!["d2"]));
    let out = text(&mut t, c(2), &join_b(&[]));
    assert_eq!(
        out,
        vec![intro_b(c(2), "a", &["d2"]), intro_b(c(1), "b", &["d2"])]
    );
    // In B, `join`/`leave` arrays mean nothing, and other types do nothing.
    text(
        &mut t,
        c(1),
        r#"{"type":"Join","documentIds":[],"leave":["d2"]}"#,
    );
    assert_eq!(t.keys_of("a"), Some(vec!["d2"]));
    assert!(text(&mut t, c(1), r#"{"type":"Other","documentIds":["x"]}"#).is_empty());
    assert_eq!(t.keys_of("a"), Some(vec!["d2"]));
}

#[test]
fn format_c_msgpack_join_and_leave() {
    let mut t = Introductions::new();
    t.open("a", c(1));
    t.open("b", c(2));
    assert!(binary(&mut t, c(1), &mp_msg("Join", &["d1"])).is_empty());
    let out = binary(&mut t, c(2), &mp_msg("Join", &["d1", "d2"]));
    assert_eq!(
        out,
        vec![intro_c(c(2), "a", &["d1"]), intro_c(c(1), "b", &["d1"])]
    );
    assert!(binary(&mut t, c(2), &mp_msg("Leave", &["d1"])).is_empty());
    assert_eq!(t.keys_of("b"), Some(vec!["d2"]));
    assert!(binary(&mut t, c(1), &mp_msg("Join", &[])).is_empty());
}

#[test]
fn msgpack_round_trip_of_an_introduction() {
    let mut t = Introductions::new();
    t.open("alice", c(1));
    t.open("bob", c(2));
    binary(&mut t, c(1), &mp_msg("Join", &["doc-1", "doc-2"]));
    let long_key = "k".repeat(40); // exercises str8 in the reply
    let out = binary(
        &mut t,
        c(2),
        &mp_msg("Join", &["doc-2", &long_key, "doc-1"]),
    );
    assert_eq!(out.len(), 2);
    for (o, who) in out.iter().zip(["alice", "bob"]) {
        assert_eq!(o.kind, Kind::Binary);
        let v = msgpack::decode(&o.payload).expect("our own output decodes");
        assert_eq!(
            v,
            Mp::Map(vec![
                (Mp::Str("type"), Mp::Str("Introduction")),
                (Mp::Str("peerId"), Mp::Str(who)),
                (
                    Mp::Str("documentIds"),
                    Mp::Array(vec![Mp::Str("doc-2"), Mp::Str("doc-1")])
                ),
            ])
        );
    }
    // A msgpackr-style map16 Join (as relay 4.x `pack` writes it) is understood too.
    let mut p = vec![0xde, 0x00, 0x02];
    msgpack::write_str(&mut p, "type");
    msgpack::write_str(&mut p, "Join");
    msgpack::write_str(&mut p, "documentIds");
    msgpack::write_str_array(&mut p, &[long_key.as_str()]);
    let mut out = Vec::new();
    t.message(c(1), Kind::Binary, &p, &mut out);
    assert_eq!(out.len(), 2);
    let v = msgpack::decode(&out[0].payload).expect("decodes");
    assert_eq!(
        v.get("documentIds"),
        Some(&Mp::Array(vec![
            Mp::Str("doc-1"),
            Mp::Str("doc-2"),
            Mp::Str(&long_key)
        ]))
    );
}

#[test]
fn mixed_formats_each_peer_is_introduced_in_its_own_format() {
    let mut t = Introductions::new();
    t.open("pa", c(1));
    t.open("pb", c(2));
    t.open("pc", c(3));
    text(&mut t, c(1), &join_a(&["k"]));
    let out = text(&mut t, c(2), &join_b(&["k"]));
    assert_eq!(
        out,
        vec![intro_b(c(2), "pa", &["k"]), intro_a(c(1), "pb", &["k"])]
    );
    let out = binary(&mut t, c(3), &mp_msg("Join", &["k"]));
    assert_eq!(
        out,
        vec![
            intro_c(c(3), "pa", &["k"]),
            intro_a(c(1), "pc", &["k"]),
            intro_c(c(3), "pb", &["k"]),
            intro_b(c(2), "pc", &["k"]),
        ]
    );
}

#[test]
fn a_sockets_format_is_fixed_by_its_first_decisive_message() {
    let mut t = Introductions::new();
    t.open("a", c(1));
    t.open("b", c(2));
    text(&mut t, c(1), &join_a(&["k"]));
    // `a` later sends B- and C-shaped messages: they are read by their shape, but `a` is
    // still written to in format A.
    let out = text(&mut t, c(2), &join_b(&["k"]));
    assert_eq!(out[1], intro_a(c(1), "b", &["k"]));
    let out = text(&mut t, c(1), &join_b(&["k"]));
    assert_eq!(
        out,
        vec![intro_a(c(1), "b", &["k"]), intro_b(c(2), "a", &["k"])]
    );
    let out = binary(&mut t, c(1), &mp_msg("Join", &[]));
    assert_eq!(
        out,
        vec![intro_a(c(1), "b", &["k"]), intro_b(c(2), "a", &["k"])]
    );
}

// --- heartbeats and malformed input ---

#[test]
fn heartbeats_are_ignored_and_do_not_decide_a_text_format() {
    let mut t = Introductions::new();
    t.open("a", c(1));
    t.open("b", c(2));
    text(&mut t, c(2), &join_a(&["k"]));
    // b has an overlap-to-be; heartbeats from either side never re-introduce.
    for hb in [
        r#"{"type":"Heartbeat"}"#,
        r#"{"type":"❤️"}"#,
        r#"{"type":"Heartbeat","join":["k"]}"#,
        r#"{"type":"Heartbeat","documentIds":["k"]}"#,
    ] {
        assert!(text(&mut t, c(1), hb).is_empty(), "{hb}");
        assert!(text(&mut t, c(2), hb).is_empty(), "{hb}");
    }
    assert_eq!(t.keys_of("a"), Some(vec![]));
    // a is still undecided: its first real message (B) decides.
    let out = text(&mut t, c(1), &join_b(&["k"]));
    assert_eq!(
        out,
        vec![intro_b(c(1), "b", &["k"]), intro_a(c(2), "a", &["k"])]
    );
}

#[test]
fn binary_heartbeats_are_ignored_but_decide_format_c() {
    let mut t = Introductions::new();
    t.open("a", c(1));
    t.open("b", c(2));
    text(&mut t, c(2), &join_a(&["k"]));
    let hb = Mp::Map(vec![(Mp::Str("type"), Mp::Str("Heartbeat"))]);
    assert!(binary(&mut t, c(1), &hb).is_empty());
    let hb2 = Mp::Map(vec![(Mp::Str("type"), Mp::Str("❤️"))]);
    assert!(binary(&mut t, c(1), &hb2).is_empty());
    // Now a text A-shaped Join from `a`: it is still written to in C.
    let out = text(&mut t, c(1), &join_a(&["k"]));
    assert_eq!(
        out,
        vec![intro_c(c(1), "b", &["k"]), intro_a(c(2), "a", &["k"])]
    );
}

#[test]
fn malformed_messages_are_ignored_and_decide_nothing() {
    let mut t = Introductions::new();
    t.open("a", c(1));
    t.open("b", c(2));
    text(&mut t, c(2), &join_a(&["k"]));
    let bad_text: [&[u8]; 9] = [
        b"",
        b"{not json",
        b"null",
        b"[1,2]",
        b"42",
        b"\"Join\"",
        b"{\"type\":\"Join\",\"join\":[\"k\"]",
        b"\xff\xfe{}",
        b"{\"join\":[\"k\"]} trailing",
    ];
    for p in bad_text {
        let mut out = Vec::new();
        t.message(c(1), Kind::Text, p, &mut out);
        assert!(out.is_empty(), "{p:?}");
    }
    // 200 levels of nesting: serde_json's recursion limit rejects it without overflow.
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert!(text(&mut t, c(1), &format!(r#"{{"x":{deep},"join":["k"]}}"#)).is_empty());
    let bad_bin: [&[u8]; 6] = [
        b"",
        b"\xc1",
        b"\x92\xa1a\xa1b", // an array, not a map
        b"\xa4Join",       // a string
        b"\x82\xa4type",   // truncated map
        b"{\"type\":\"Join\",\"join\":[\"k\"]}",
    ];
    for p in bad_bin {
        let mut out = Vec::new();
        t.message(c(1), Kind::Binary, p, &mut out);
        assert!(out.is_empty(), "{p:?}");
    }
    assert_eq!(t.keys_of("a"), Some(vec![]));
    assert_eq!(t.peers(), 2);
    // Still undecided: a B Join decides B.
    let out = text(&mut t, c(1), &join_b(&["k"]));
    assert_eq!(out[0], intro_b(c(1), "b", &["k"]));
}

#[test]
fn messages_for_unknown_sockets_are_ignored() {
    let mut t = Introductions::new();
    t.open("a", c(1));
    text(&mut t, c(1), &join_a(&["k"]));
    assert!(text(&mut t, c(9), &join_a(&["k"])).is_empty());
    // A stale generation of a known slot key is a different socket.
    let stale = Handle::of(1, 7);
    assert!(text(&mut t, stale, &join_a(&["k"])).is_empty());
    t.close(stale);
    t.close(c(9));
    assert_eq!(t.peers(), 1);
}

// --- duplicate ids and close ---

#[test]
fn duplicate_id_old_sockets_close_keeps_the_new_registration() {
    let mut t = Introductions::new();
    t.open("x", c(1));
    text(&mut t, c(1), &join_a(&["k"]));
    t.open("x", c(2));
    assert_eq!(t.peers(), 1);
    assert_eq!(t.keys_of("x"), Some(vec!["k"]));
    t.open("y", c(3));
    let out = text(&mut t, c(3), &join_a(&["k"]));
    // Inherited format A; introductions go to the current socket only.
    assert_eq!(
        out,
        vec![intro_a(c(3), "x", &["k"]), intro_a(c(2), "y", &["k"])]
    );
    t.close(c(1));
    assert_eq!(t.peers(), 2);
    assert_eq!(t.keys_of("x"), Some(vec!["k"]));
    let out = text(&mut t, c(3), &join_a(&[]));
    assert_eq!(
        out,
        vec![intro_a(c(3), "x", &["k"]), intro_a(c(2), "y", &["k"])]
    );
    t.close(c(2));
    assert_eq!(t.peers(), 1);
    assert_eq!(t.keys_of("x"), None);
    assert!(text(&mut t, c(3), &join_a(&[])).is_empty());
}

#[test]
fn duplicate_id_old_socket_still_acts_for_the_id() {
    let mut t = Introductions::new();
    t.open("x", c(1));
    t.open("x", c(2));
    t.open("y", c(3));
    text(&mut t, c(3), &join_b(&["k"]));
    // The older socket joins: keys are shared, the id's introduction goes to the current
    // socket (which inherited format A since no socket of x decided).
    let out = binary(&mut t, c(1), &mp_msg("Join", &["k"]));
    assert_eq!(
        out,
        vec![intro_a(c(2), "y", &["k"]), intro_b(c(3), "x", &["k"])]
    );
    // Once the current socket decides, its format is used.
    binary(&mut t, c(2), &mp_msg("Join", &[]));
    let out = text(&mut t, c(3), &join_b(&[]));
    assert_eq!(
        out,
        vec![intro_b(c(3), "x", &["k"]), intro_c(c(2), "y", &["k"])]
    );
    // After the current socket closes, the older socket's messages are ignored.
    t.close(c(2));
    assert!(binary(&mut t, c(1), &mp_msg("Join", &["k"])).is_empty());
    assert_eq!(t.peers(), 1);
    t.close(c(1));
    assert_eq!(t.peers(), 1);
}

#[test]
fn duplicate_id_new_socket_inherits_the_decided_format() {
    let mut t = Introductions::new();
    t.open("x", c(1));
    binary(&mut t, c(1), &mp_msg("Join", &["k"]));
    t.open("x", c(2));
    t.open("y", c(3));
    let out = text(&mut t, c(3), &join_a(&["k"]));
    assert_eq!(
        out,
        vec![intro_a(c(3), "x", &["k"]), intro_c(c(2), "y", &["k"])]
    );
    // The new socket then speaks B: from now on it gets B.
    let out = text(&mut t, c(2), &join_b(&[]));
    assert_eq!(
        out,
        vec![intro_b(c(2), "y", &["k"]), intro_a(c(3), "x", &["k"])]
    );
}

#[test]
fn reopening_a_live_conn_ref_moves_it() {
    let mut t = Introductions::new();
    t.open("a", c(1));
    text(&mut t, c(1), &join_a(&["k"]));
    t.open("b", c(1));
    assert_eq!(t.peers(), 1);
    assert_eq!(t.keys_of("a"), None);
    assert_eq!(t.keys_of("b"), Some(vec![]));
}

#[test]
fn close_removes_keys_and_nobody_is_notified() {
    let mut t = Introductions::new();
    t.open("a", c(1));
    t.open("b", c(2));
    text(&mut t, c(1), &join_a(&["k", "only-a"]));
    text(&mut t, c(2), &join_a(&["k"]));
    assert_eq!(t.distinct_keys(), 2);
    t.close(c(1));
    assert_eq!(t.peers(), 1);
    assert_eq!(t.distinct_keys(), 1);
    assert!(text(&mut t, c(2), &join_a(&[])).is_empty());
    t.close(c(2));
    assert_eq!(t.peers(), 0);
    assert_eq!(t.distinct_keys(), 0);
    // Slots are reused cleanly.
    t.open("c", c(3));
    t.open("d", c(4));
    text(&mut t, c(3), &join_a(&["k"]));
    let out = text(&mut t, c(4), &join_a(&["k"]));
    assert_eq!(
        out,
        vec![intro_a(c(4), "c", &["k"]), intro_a(c(3), "d", &["k"])]
    );
    // Closing twice is harmless.
    t.close(c(3));
    t.close(c(3));
    assert_eq!(t.peers(), 1);
}

// --- limits ---

#[test]
fn keys_longer_than_the_limit_are_skipped() {
    let mut t = Introductions::new();
    t.open("a", c(1));
    let ok = "k".repeat(MAX_KEY_LEN);
    let long = "k".repeat(MAX_KEY_LEN + 1);
    text(&mut t, c(1), &join_a(&[&long, &ok, "s"]));
    assert_eq!(t.keys_of("a"), Some(vec![ok.as_str(), "s"]));
    // Multi-byte: the limit counts bytes. 86 × 3 bytes = 258 > 256.
    let wide = "€".repeat(86);
    text(&mut t, c(1), &join_a(&[&wide]));
    assert_eq!(t.keys_of("a").map(|k| k.len()), Some(2));
}

#[test]
fn keys_per_peer_are_capped_and_leave_frees_room() {
    let mut t = Introductions::new();
    t.open("a", c(1));
    let names: Vec<String> = (0..MAX_KEYS_PER_PEER + 10)
        .map(|i| format!("k{i}"))
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    text(&mut t, c(1), &join_a(&refs));
    let held = t.keys_of("a").expect("registered");
    assert_eq!(held.len(), MAX_KEYS_PER_PEER);
    assert_eq!(held.last().copied(), Some(refs[MAX_KEYS_PER_PEER - 1]));
    assert_eq!(t.distinct_keys(), MAX_KEYS_PER_PEER);
    // Already-held keys still "join" (no change) at the cap; new ones are skipped.
    text(&mut t, c(1), &join_a(&["k0", "new"]));
    assert_eq!(t.keys_of("a").map(|k| k.len()), Some(MAX_KEYS_PER_PEER));
    assert!(!t.keys_of("a").unwrap_or_default().contains(&"new"));
    text(&mut t, c(1), r#"{"leave":["k0"],"join":["new"]}"#);
    let held = t.keys_of("a").expect("registered");
    assert_eq!(held.len(), MAX_KEYS_PER_PEER);
    assert_eq!(held.last().copied(), Some("new"));
    assert!(!held.contains(&"k0"));
}

#[test]
fn many_disjoint_peers_and_one_hot_key() {
    // 20 000 peers on private keys + 50 on a shared key: a Join of a private-key peer produces
    // nothing; a Join on the shared key produces exactly 2·49 introductions.
    let mut t = Introductions::new();
    for i in 0..20_000u32 {
        t.open(&format!("p{i}"), c(i));
        assert!(text(&mut t, c(i), &join_a(&[&format!("doc{i}")])).is_empty());
    }
    for i in 20_000..20_050u32 {
        t.open(&format!("p{i}"), c(i));
        text(&mut t, c(i), &join_b(&["hot"]));
    }
    assert!(text(&mut t, c(7), &join_a(&[])).is_empty());
    let out = text(&mut t, c(20_010), &join_b(&[]));
    assert_eq!(out.len(), 98);
    assert_eq!(t.peers(), 20_050);
    assert_eq!(t.distinct_keys(), 20_001);
}

#[test]
fn introductions_escape_like_json_stringify() {
    let mut t = Introductions::new();
    t.open("a\"b\\c\u{1}é", c(1));
    t.open("b", c(2));
    text(&mut t, c(1), r#"{"join":["k\n\t/\u001f€"]}"#);
    let out = text(&mut t, c(2), r#"{"join":["k\n\t/\u001f€"]}"#);
    assert_eq!(
        out[1],
        txt(
            c(1),
            r#"{"type":"Introduction","id":"b","keys":["k\n\t/\u001f€"]}"#
        )
    );
    assert_eq!(
        out[0],
        txt(
            c(2),
            r#"{"type":"Introduction","id":"a\"b\\c\u0001é","keys":["k\n\t/\u001f€"]}"#
        )
    );
}

#[test]
fn the_table_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<Introductions>();
}

#[test]
fn random_and_mutated_input_never_panics_and_keeps_the_index_consistent() {
    // Deterministic xorshift; mutates valid A/B/C messages and interleaves open/close.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut t = Introductions::new();
    let seeds: Vec<(Kind, Vec<u8>)> = {
        let mut v = vec![
            (Kind::Text, join_a(&["k1", "k2"]).into_bytes()),
            (Kind::Text, br#"{"type":"Leave","leave":["k1"]}"#.to_vec()),
            (Kind::Text, join_b(&["k2", "k3"]).into_bytes()),
            (
                Kind::Text,
                br#"{"type":"Leave","documentIds":["k2"]}"#.to_vec(),
            ),
        ];
        for ty in ["Join", "Leave", "Heartbeat"] {
            let mut p = Vec::new();
            msgpack::encode(&mp_msg(ty, &["k1", "k3"]), &mut p);
            v.push((Kind::Binary, p));
        }
        v
    };
    let mut out = Vec::new();
    for _ in 0..20_000 {
        let r = rnd();
        let conn = c((r % 8) as u32);
        match (r >> 8) % 16 {
            0 => t.open(&format!("id{}", (r >> 16) % 5), conn),
            1 => t.close(conn),
            _ => {
                let (kind, base) = &seeds[((r >> 16) % seeds.len() as u64) as usize];
                let mut p = base.clone();
                for _ in 0..(r >> 24) % 4 {
                    let x = rnd();
                    if p.is_empty() {
                        break;
                    }
                    let at = (x % p.len() as u64) as usize;
                    match (x >> 32) % 3 {
                        0 => p[at] = (x >> 40) as u8,
                        1 => p.truncate(at),
                        _ => p.insert(at, (x >> 40) as u8),
                    }
                }
                out.clear();
                t.message(conn, *kind, &p, &mut out);
                for o in &out {
                    assert!(t.sockets.contains_key(&o.to), "sends only to open sockets");
                }
            }
        }
        // Index consistency: each peer's keys list exactly the buckets it is a member of.
        if r % 97 == 0 {
            let mut memberships = 0;
            for (slot, p) in t.peers.iter().enumerate() {
                let Some(p) = p else { continue };
                assert_eq!(t.by_id.get(&p.id), Some(&(slot as u32)));
                for &k in &p.keys {
                    let ks = key_ref(&t.keys, k).expect("held key exists");
                    assert!(ks.members.contains(&(slot as u32)));
                }
                memberships += p.keys.len();
            }
            let total: usize = t.keys.iter().flatten().map(|ks| ks.members.len()).sum();
            assert_eq!(total, memberships);
            assert!(t.keys.iter().flatten().all(|ks| !ks.members.is_empty()));
            assert_eq!(t.key_ids.len(), t.keys.iter().flatten().count());
        }
    }
}

// ── through the dialect contract ───────────────────────────────────────────────────────────

mod contract {
    use crate::proto::dialect::cevitxe::{IntroductionDialect, PLACEMENT_KEY};
    use crate::proto::dialect::testing::{get, upgrade, Harness};
    use crate::proto::dialect::{Kind, Placement};
    use serde_json::{json, Value};

    #[test]
    fn every_introduction_socket_is_placed_by_one_key_and_introduced_in_kind() {
        let mut h = Harness::new(IntroductionDialect::default());
        assert!(
            matches!(h.place(&get("/introduction/a")), Placement::Answer(r) if r.status == 426)
        );
        assert!(matches!(
            h.place(&upgrade("/introduction/al%20ice")),
            Placement::Key(k) if &*k == PLACEMENT_KEY
        ));
        let alice = h.open("/introduction/alice");
        let bob = h.open("/introduction/bob");
        h.text(alice, r#"{"type":"Join","join":["doc"]}"#);
        assert!(
            h.take_sent().is_empty(),
            "alone on the key: nobody to introduce"
        );
        h.text(bob, r#"{"type":"Join","join":["doc"]}"#);
        let sent = h.take_sent();
        let parsed: Vec<_> = sent
            .iter()
            .map(|(to, kind, p)| (*to, *kind, serde_json::from_slice::<Value>(p).unwrap()))
            .collect();
        assert_eq!(
            parsed,
            vec![
                (
                    bob,
                    Kind::Text,
                    json!({"type":"Introduction","id":"alice","keys":["doc"]})
                ),
                (
                    alice,
                    Kind::Text,
                    json!({"type":"Introduction","id":"bob","keys":["doc"]})
                ),
            ]
        );
        assert_eq!(h.d.gauge(), 2);
        h.close(bob);
        assert_eq!(h.d.gauge(), 1, "a closed socket's id leaves the table");
        assert!(
            h.take_closed().is_empty(),
            "the dialect never closes anyone"
        );
    }

    use crate::proto::dialect::Dialect;
}
