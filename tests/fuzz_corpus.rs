//! Replays every file in `fuzz/corpus/<target>/` through the check that fuzz target runs
//! (`sigyard::proto::fuzzing`), so a plain `cargo test` catches any regression a seed or a
//! saved crash input reproduces, without libFuzzer or a nightly toolchain.
//!
//! The conn_ops seeds are written by `write_conn_ops_seeds` (ignored; run it after changing
//! [`seeds`] or the `Op` encoding): `cargo test --test fuzz_corpus -- --ignored`. The seeds of
//! the dialect targets (`msgpack_decode`, `cevitxe_intro`, `pipe_table`, `mewconnect`,
//! `peerolator`, `httpapi`, `ice_provider`, `eio_packets`, `eio_session`,
//! `workspaces_tokens`) likewise come from [`dialect_seeds`], written by
//! `write_dialect_seeds`.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

use sigyard::proto::dialect::msgpack::{self, Value as Mp};
use sigyard::proto::dialect::workspaces::token::Keys;
use sigyard::proto::fuzzing::{
    check_cevitxe_intro, check_conn_ops, check_http_upgrade, check_httpapi, check_ice_provider,
    check_mewconnect, check_msgpack_decode, check_peerolator, check_pipe_table, check_ws_decoder,
    check_ws_frame_header, encode_api_ops, encode_ice_input, encode_intro_ops, encode_mew_ops,
    encode_ops, encode_peer_ops, encode_pipe_ops, ActionMsg, ApiOp, ApiSetup, Bytes, Format,
    IntroMsg, IntroOp, MewMsg, MewOp, MewSetup, Op, Payload, PeerMsg, PeerOp, PipeOp, PipeSetup,
    Setup,
};
use sigyard::proto::fuzzing::{
    check_eio_packets, check_eio_session, check_workspaces_tokens, encode_eio_ops, EioOp,
};

/// Every fuzz target (each has a test below).
const TARGETS: [&str; 20] = [
    "http_upgrade",
    "ws_frame_header",
    "ws_decoder",
    "conn_ops",
    "msgpack_decode",
    "cevitxe_intro",
    "pipe_table",
    "mewconnect",
    "peerolator",
    "httpapi",
    "ice_provider",
    "eio_packets",
    "eio_session",
    "workspaces_tokens",
    "cluster_records",
    "proxy_header",
    "ywebrtc",
    "peerjs",
    "webtorrent",
    "rawjson",
];

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str, check: fn(&[u8])) {
    let files = files(&corpus_dir(target));
    assert!(!files.is_empty(), "no corpus for {target}");
    let failed: Vec<_> = files
        .iter()
        .filter(|file| {
            let data = fs::read(file).expect("a readable corpus file");
            panic::catch_unwind(|| check(&data)).is_err()
        })
        .collect();
    assert!(failed.is_empty(), "{target} fails on {failed:?}");
}

#[test]
fn http_upgrade_corpus() {
    replay("http_upgrade", check_http_upgrade);
}

#[test]
fn ws_frame_header_corpus() {
    replay("ws_frame_header", check_ws_frame_header);
}

#[test]
fn ws_decoder_corpus() {
    replay("ws_decoder", check_ws_decoder);
}

#[test]
fn conn_ops_corpus() {
    replay("conn_ops", check_conn_ops);
}

#[test]
fn proxy_header_corpus() {
    replay("proxy_header", sigyard::proto::fuzzing::check_proxy_header);
}

#[test]
fn peerjs_corpus() {
    replay("peerjs", sigyard::proto::fuzzing::check_peerjs);
}

#[test]
fn webtorrent_corpus() {
    replay("webtorrent", sigyard::proto::fuzzing::check_webtorrent);
}

#[test]
fn rawjson_corpus() {
    replay("rawjson", sigyard::proto::fuzzing::check_rawjson);
}

#[test]
fn ywebrtc_corpus() {
    replay("ywebrtc", sigyard::proto::fuzzing::check_ywebrtc);
}

#[test]
fn cluster_records_corpus() {
    replay(
        "cluster_records",
        sigyard::proto::fuzzing::check_cluster_records,
    );
}

#[test]
fn msgpack_decode_corpus() {
    replay("msgpack_decode", check_msgpack_decode);
}

#[test]
fn cevitxe_intro_corpus() {
    replay("cevitxe_intro", check_cevitxe_intro);
}

#[test]
fn pipe_table_corpus() {
    replay("pipe_table", check_pipe_table);
}

#[test]
fn mewconnect_corpus() {
    replay("mewconnect", check_mewconnect);
}

#[test]
fn peerolator_corpus() {
    replay("peerolator", check_peerolator);
}

#[test]
fn httpapi_corpus() {
    replay("httpapi", check_httpapi);
}

#[test]
fn ice_provider_corpus() {
    replay("ice_provider", check_ice_provider);
}

#[test]
fn eio_packets_corpus() {
    replay("eio_packets", check_eio_packets);
}

#[test]
fn eio_session_corpus() {
    replay("eio_session", check_eio_session);
}

#[test]
fn workspaces_tokens_corpus() {
    replay("workspaces_tokens", check_workspaces_tokens);
}

#[test]
fn every_corpus_directory_is_replayed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for entry in fs::read_dir(&dir).expect("fuzz/corpus") {
        let name = entry.expect("a directory entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            TARGETS.contains(&&*name),
            "fuzz/corpus/{name} belongs to no target in TARGETS"
        );
    }
}

// ── conn_ops seeds ─────────────────────────────────────────────────────────────────────────

fn frame(fin: bool, opcode: u8, data: &[u8], extra: u16) -> Op {
    // Opcodes below 0xc0 pick from [Continuation, Text, Binary, Close, Ping, Pong].
    let pick = match opcode {
        0 => 0,
        1 => 1,
        2 => 2,
        8 => 3,
        9 => 4,
        10 => 5,
        raw => 0xc0 | raw,
    };
    Op::Frame {
        fin,
        opcode: pick,
        masked: true,
        data: sigyard::proto::fuzzing::Bytes(data.to_vec()),
        extra,
    }
}

fn close(code: u16, reason: &str) -> Op {
    Op::Close {
        code,
        reason: sigyard::proto::fuzzing::Bytes(reason.as_bytes().to_vec()),
    }
}

fn send(bytes: &[u8]) -> Op {
    Op::Send(sigyard::proto::fuzzing::Bytes(bytes.to_vec()))
}

/// Representative scenarios, by name.
fn seeds() -> Vec<(&'static str, Setup, Vec<Op>)> {
    let plain = Setup {
        start: 0,
        timers: 0,
    };
    let timers = Setup {
        start: 1_000,
        timers: 3,
    };
    let near_wrap = Setup {
        start: u32::MAX - 4_000,
        timers: 3,
    };
    let up = Op::Upgrade { park: false };
    vec![
        (
            "echo_text_then_close",
            plain,
            vec![
                up.clone(),
                frame(true, 1, b"hello", 0),
                Op::Flush(0),
                close(0, "bye"),
            ],
        ),
        (
            "echo_binary_trickled",
            plain,
            vec![
                Op::ReadSize(3),
                up.clone(),
                frame(true, 2, &[0, 1, 2, 0xff], 300),
                Op::ReadSize(255),
            ],
        ),
        (
            "fragmented_with_ping",
            plain,
            vec![
                up.clone(),
                frame(false, 1, b"frag", 0),
                frame(true, 9, b"p", 0),
                frame(false, 0, b"men", 0),
                frame(true, 0, b"ted", 0),
            ],
        ),
        (
            "upgrade_and_frame_in_one_read",
            plain,
            vec![
                Op::ReadSize(0),
                up.clone(),
                frame(true, 1, b"early", 0),
                Op::ReadSize(255),
            ],
        ),
        (
            "parked_then_unparked",
            plain,
            vec![
                Op::ReadSize(0),
                Op::Upgrade { park: true },
                frame(true, 1, b"later", 0),
                Op::ReadSize(255),
                Op::Unpark,
            ],
        ),
        (
            "pipelined_http",
            plain,
            vec![
                Op::ReadSize(0),
                Op::Request(0),
                Op::Request(1),
                Op::Request(2),
                Op::Request(7),
                Op::Request(3),
                Op::ReadSize(255),
            ],
        ),
        (
            "refused_upgrades",
            plain,
            vec![Op::Request(8), Op::Request(9), Op::Request(10)],
        ),
        (
            "http_body_closes",
            plain,
            vec![Op::Request(6), Op::Request(0)],
        ),
        (
            "handshake_timeout",
            plain,
            vec![send(b"GET /heal"), Op::Advance(1999), Op::Advance(1)],
        ),
        (
            "keepalive_timeout",
            plain,
            vec![Op::Request(0), Op::Advance(3000)],
        ),
        (
            "ping_then_idle_close",
            timers,
            vec![
                up.clone(),
                Op::Advance(5000),
                frame(true, 10, b"", 0),
                Op::Advance(5000),
                Op::Advance(5000),
                Op::Advance(12000),
            ],
        ),
        (
            "timers_across_the_wrap",
            near_wrap,
            vec![
                up.clone(),
                Op::Advance(4500),
                frame(true, 1, b"tick", 0),
                Op::Advance(6000),
                Op::Advance(13000),
            ],
        ),
        (
            "server_close_then_peer_close",
            plain,
            vec![
                up.clone(),
                Op::BeginClose(1),
                frame(true, 1, b"dropped", 0),
                close(1, ""),
            ],
        ),
        (
            "server_close_linger_expires",
            plain,
            vec![up.clone(), Op::BeginClose(0), Op::Advance(3000)],
        ),
        // Both reported the WebSocket close to the App a second time (fixed in Conn).
        (
            "regression-close-reported-twice-eof",
            plain,
            vec![up.clone(), Op::BeginClose(1), Op::Eof],
        ),
        (
            "regression-close-reported-twice-abort",
            plain,
            vec![up.clone(), frame(true, 3, b"?", 0), Op::Abort],
        ),
        (
            "unmasked_frame_is_a_protocol_error",
            plain,
            vec![
                up.clone(),
                Op::Frame {
                    fin: true,
                    opcode: 1,
                    masked: false,
                    data: sigyard::proto::fuzzing::Bytes(b"x".to_vec()),
                    extra: 0,
                },
                frame(true, 1, b"after", 0),
            ],
        ),
        (
            "invalid_utf8_text",
            plain,
            vec![up.clone(), frame(true, 1, &[0xce, 0xba, 0xff], 0)],
        ),
        (
            "oversized_frame",
            plain,
            vec![up.clone(), frame(true, 2, b"", 1500)],
        ),
        (
            "back_pressure_then_flush",
            plain,
            vec![
                up.clone(),
                Op::Flush(0),
                frame(true, 2, b"", 1000),
                frame(true, 2, b"", 1000),
                frame(true, 2, b"", 1000),
                frame(true, 2, b"", 1000),
                Op::Flush(1500),
                Op::Flush(0),
                Op::Eof,
            ],
        ),
        (
            "raw_upgrade_then_eof_mid_frame",
            plain,
            vec![
                send(
                    b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x81\x85",
                ),
                Op::Eof,
            ],
        ),
        (
            "slow_reader_is_aborted",
            plain,
            // Fifty pipelined requests in one read answer with more than the outbound limit.
            [Op::ReadSize(0)]
                .into_iter()
                .chain(std::iter::repeat(Op::Request(0)).take(50))
                .chain([Op::ReadSize(255), up])
                .collect(),
        ),
    ]
}

#[test]
fn conn_ops_seed_files_are_up_to_date() {
    for (name, setup, ops) in seeds() {
        let path = corpus_dir("conn_ops").join(name);
        let on_disk = fs::read(&path).unwrap_or_default();
        assert!(
            on_disk == encode_ops(setup, &ops),
            "{} is stale: run `cargo test --test fuzz_corpus -- --ignored`",
            path.display()
        );
    }
}

/// Prints what a conn_ops input does:
/// `CONN_OPS_INPUT=path cargo test --test fuzz_corpus trace_conn_ops -- --ignored --nocapture`.
#[test]
#[ignore = "prints the trace of the conn_ops input named by CONN_OPS_INPUT"]
fn trace_conn_ops() {
    let path = std::env::var("CONN_OPS_INPUT").expect("CONN_OPS_INPUT=<file>");
    let data = fs::read(&path).expect("a readable input");
    println!("{}", sigyard::proto::fuzzing::trace_conn_ops(&data));
}

#[test]
#[ignore = "writes fuzz/corpus/conn_ops/; run after changing the seeds or the Op encoding"]
fn write_conn_ops_seeds() {
    let dir = corpus_dir("conn_ops");
    fs::create_dir_all(&dir).expect("fuzz/corpus/conn_ops");
    for (name, setup, ops) in seeds() {
        fs::write(dir.join(name), encode_ops(setup, &ops)).expect("a seed file");
    }
}

// ── dialect seeds ─────────────────────────────────────────────────────────────────────────

fn mp(v: &Mp<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    msgpack::encode(v, &mut out);
    out
}

fn open(id: u8, conn: u8) -> IntroOp {
    IntroOp::Open { id, conn }
}

fn msg(conn: u8, format: Format, ty: u8, join: &[u8], leave: &[u8]) -> IntroOp {
    IntroOp::Message {
        conn,
        payload: Payload::Structured(IntroMsg {
            format,
            ty,
            join: join.to_vec(),
            leave: leave.to_vec(),
            extra: false,
        }),
    }
}

fn raw(conn: u8, binary: bool, bytes: &[u8]) -> IntroOp {
    IntroOp::Message {
        conn,
        payload: Payload::Raw {
            binary,
            bytes: Bytes(bytes.to_vec()),
        },
    }
}

fn arrive(local: u8, remote: u8, key: u8) -> PipeOp {
    PipeOp::Arrive { local, remote, key }
}

fn hold(conn: u8, binary: bool, len: u8) -> PipeOp {
    PipeOp::Hold { conn, binary, len }
}

/// Named seeds of the dialect targets: (target, name, bytes).
/// A batch of cluster records, as one node publishes it to another.
fn cluster_batch() -> Vec<u8> {
    use sigyard::proto::cluster::{Record, Remote};
    use sigyard::proto::dialect::{Handle, Kind};
    use sigyard::proto::http::Response;
    let h = Handle::from_raw((2u64 << 48) | (1u64 << 38) | (7u64 << 24) | 42);
    let mut resp = Response::new(200, "application/json", b"{}".to_vec());
    resp.headers.push(("Vary".into(), "Origin".into()));
    let recs = [
        Record::Open {
            core: sigyard::proto::cluster::ANY_CORE,
            edge: h,
            route: 3,
            key: Some("mew/0123"),
            head: b"GET /?role=receiver HTTP/1.1\r\nHost: x\r\n\r\n",
        },
        Record::Answer {
            to: h,
            core: 1,
            answer: Remote::Hold {
                left_ms: 25_000,
                fallback: resp.clone(),
            },
        },
        Record::Message {
            core: 1,
            from: h,
            route: 3,
            kind: Kind::Text,
            payload: b"{}",
        },
        Record::Send {
            to: h,
            kind: Kind::Binary,
            payload: &[1, 2, 3],
            lossy: false,
        },
        Record::Send {
            to: h,
            kind: Kind::Text,
            payload: b"{}",
            lossy: true,
        },
        Record::Respond {
            to: h,
            response: resp,
        },
        Record::Link { to: h, peer: h },
        Record::Data {
            to: h,
            mid_frame: true,
            bytes: &[0x82, 0x03],
        },
        Record::Ack { to: h, n: 5 },
        Record::End {
            to: h,
            code: 1000,
            half_frame: false,
        },
        Record::Close {
            to: h,
            code: 1012,
            reason: "gone",
        },
        Record::Closed {
            core: 0,
            from: h,
            route: 3,
        },
        Record::Reset { from: 2 },
    ];
    let mut b = Vec::new();
    for r in &recs {
        r.encode(&mut b);
    }
    b
}

fn dialect_seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    // Types: 0 Join, 1 Leave, 2 Heartbeat, 3 ❤️, 4 another, 5 none. Keys 0-2 short, 3 too long,
    // 4 not a string.
    use Format::{A, B, C};
    let join_c = Mp::Map(vec![
        (Mp::Str("type"), Mp::Str("Join")),
        (
            Mp::Str("documentIds"),
            Mp::Array(vec![Mp::Str("doc-1"), Mp::UInt(7)]),
        ),
    ]);
    let all_families = Mp::Array(vec![
        Mp::Nil,
        Mp::Bool(true),
        Mp::Int(-40000),
        Mp::UInt(u64::MAX),
        Mp::Float(-0.0),
        Mp::Str("héllo"),
        Mp::Bin(&[1, 2, 3]),
        Mp::Ext(-1, &[0, 0, 0, 1]),
        Mp::Ext(5, &[9, 9, 9]),
        Mp::Map(vec![(Mp::UInt(1), Mp::Array(vec![]))]),
    ]);
    let mut map16_join = vec![0xde, 0x00, 0x02, 0xa4];
    map16_join.extend_from_slice(b"type");
    map16_join.push(0xa4);
    map16_join.extend_from_slice(b"Join");
    map16_join.push(0xab);
    map16_join.extend_from_slice(b"documentIds");
    map16_join.extend_from_slice(&[0x91, 0xa1, b'a']);
    let mut deep = vec![0x91; 31];
    deep.push(0x90);
    let pipe = PipeSetup {
        max_bytes: 16,
        max_messages: 3,
    };
    vec![
        ("cluster_records", "every_kind", cluster_batch()),
        (
            "proxy_header",
            "v1_tcp4",
            b"PROXY TCP4 203.0.113.9 10.0.0.1 40000 80\r\nGET / HTTP/1.1\r\n".to_vec(),
        ),
        ("proxy_header", "v2_tcp4", {
            let mut b = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
            b.extend_from_slice(&[
                0x21, 0x11, 0, 12, 203, 0, 113, 9, 10, 0, 0, 1, 0x9c, 0x40, 0, 80,
            ]);
            b
        }),
        (
            "proxy_header",
            "forwarded",
            b"for=192.0.2.60;proto=http, for=\"[2001:db8::1]:80\"\n1.2.3.4, 10.0.0.2".to_vec(),
        ),
        ("msgpack_decode", "join_c", mp(&join_c)),
        ("msgpack_decode", "msgpackr_map16_join", map16_join),
        ("msgpack_decode", "all_families", mp(&all_families)),
        ("msgpack_decode", "wide_forms", {
            // float32, int8, str16, array16, bin16, ext8, map32
            let mut b = vec![0xdc, 0x00, 0x07, 0xca, 0x3f, 0xc0, 0x00, 0x00, 0xd0, 0xfb];
            b.extend_from_slice(&[0xda, 0x00, 0x01, b'q', 0xc5, 0x00, 0x01, 0xff]);
            b.extend_from_slice(&[0xc7, 0x03, 0x01, 1, 2, 3, 0xdf, 0, 0, 0, 1, 0xc0, 0xc3]);
            b.extend_from_slice(&[0xd9, 0x02, b'h', b'i']);
            b
        }),
        ("msgpack_decode", "max_depth", deep),
        (
            "cevitxe_intro",
            "a_two_peers",
            encode_intro_ops(&[
                open(0, 0),
                open(1, 1),
                msg(0, A, 4, &[0, 1], &[]),
                msg(1, A, 4, &[1], &[]),
            ]),
        ),
        (
            "cevitxe_intro",
            "b_join_leave",
            encode_intro_ops(&[
                open(0, 0),
                open(1, 1),
                msg(0, B, 0, &[0, 2], &[]),
                msg(1, B, 0, &[2, 0, 4], &[]),
                msg(1, B, 1, &[2], &[]),
                msg(0, B, 0, &[0], &[]),
            ]),
        ),
        (
            "cevitxe_intro",
            "mixed_formats",
            encode_intro_ops(&[
                open(0, 0),
                open(1, 1),
                open(2, 2),
                msg(0, A, 0, &[0], &[]),
                msg(1, B, 0, &[0], &[]),
                msg(2, C, 0, &[0, 3], &[]),
            ]),
        ),
        (
            "cevitxe_intro",
            "heartbeats_then_decide",
            encode_intro_ops(&[
                open(0, 0),
                open(1, 1),
                msg(0, B, 2, &[], &[]),
                msg(1, C, 3, &[], &[]),
                msg(1, A, 0, &[1], &[]),
                msg(0, B, 0, &[1], &[]),
            ]),
        ),
        (
            "cevitxe_intro",
            "duplicate_id",
            encode_intro_ops(&[
                open(3, 0),
                open(1, 1),
                msg(1, C, 0, &[0], &[]),
                open(3, 3),
                msg(0, A, 0, &[0], &[]),
                msg(3, B, 0, &[0], &[]),
                IntroOp::Close { conn: 0 },
                msg(1, C, 0, &[0], &[]),
                IntroOp::Close { conn: 3 },
                msg(0, A, 0, &[0], &[]),
            ]),
        ),
        (
            "cevitxe_intro",
            "a_join_and_leave_together",
            encode_intro_ops(&[
                open(0, 0),
                open(1, 4),
                msg(4, A, 5, &[0, 1, 2], &[]),
                msg(0, A, 0, &[0, 1, 1, 2], &[1]),
                msg(0, A, 1, &[], &[0, 2]),
            ]),
        ),
        (
            "cevitxe_intro",
            "raw_messages",
            encode_intro_ops(&[
                open(0, 0),
                open(1, 1),
                raw(0, false, br#"{"join":["k"]}"#),
                raw(1, false, br#"{"type":"Join","documentIds":["k",null]}"#),
                raw(1, false, b"[1,2]"),
                raw(0, true, &[0x81, 0xa4, b't', b'y', b'p', b'e', 0xc1]),
            ]),
        ),
        (
            "pipe_table",
            "pair_with_held",
            encode_pipe_ops(
                pipe,
                &[
                    arrive(0, 1, 0),
                    hold(0, false, 3),
                    hold(0, true, 5),
                    arrive(1, 0, 0),
                    hold(1, false, 1),
                ],
            ),
        ),
        (
            "pipe_table",
            "replaced_and_limits",
            encode_pipe_ops(
                pipe,
                &[
                    arrive(0, 1, 0),
                    arrive(0, 1, 0),
                    hold(0, false, 1),
                    hold(1, false, 10),
                    hold(1, false, 7),
                    PipeOp::Leave { conn: 0 },
                    arrive(1, 0, 1),
                    arrive(1, 0, 0),
                ],
            ),
        ),
        (
            "pipe_table",
            "self_pair_and_leave",
            encode_pipe_ops(
                pipe,
                &[
                    arrive(2, 2, 1),
                    hold(0, true, 0),
                    arrive(2, 2, 1),
                    arrive(0, 2, 0),
                    PipeOp::Leave { conn: 2 },
                    arrive(2, 0, 0),
                ],
            ),
        ),
    ]
    .into_iter()
    .chain(mewconnect_seeds())
    .chain(peerolator_seeds())
    .chain(httpapi_seeds())
    .chain(ice_provider_seeds())
    .chain(eio_packets_seeds())
    .chain(eio_session_seeds())
    .chain(workspaces_tokens_seeds())
    .collect()
}

fn admit(receiver: bool, conn_id: u8, signed: u8) -> MewOp {
    MewOp::Admit {
        receiver,
        conn_id,
        signed,
    }
}

/// `ActionMsg` indexes: actions 0 offersignal, 1 answersignal, 2 rtcconnected, 3 tryturn,
/// 4 ping, 5 unknown, 6 none, 7 a number; data 0 none, 1 null, 2 valid, 3 mutated, 4 a string.
fn act(conn: u8, action: u8, data: u8, mutation: u8, arg: u8) -> MewOp {
    MewOp::Message {
        conn,
        msg: MewMsg::Action(ActionMsg {
            action,
            data,
            mutation,
            arg,
        }),
    }
}

fn mew_raw(conn: u8, binary: bool, bytes: &[u8]) -> MewOp {
    MewOp::Message {
        conn,
        msg: MewMsg::Raw {
            binary,
            bytes: Bytes(bytes.to_vec()),
        },
    }
}

fn mewconnect_seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let frames = MewSetup { flags: 1, start: 0 };
    // Error frames, idle 1 s, lifetime 3 s, the odd ICE list; just before the u32 wrap.
    let timed = MewSetup {
        flags: 1 | 1 << 1 | 1 << 3 | 2 << 5,
        start: u32::MAX - 1500,
    };
    let pair = [admit(false, 0, 0), admit(true, 0, 0)];
    let offer = sigyard::proto::fuzzing::mewconnect_offer_data(0).to_string();
    let dup_keys = offer.replacen(r#""mac""#, r#""mac":{"type":"B","data":[]},"mac""#, 1);
    let escaped = offer.replacen(r#""iv""#, r#""\u0069v""#, 1);
    let mut seeds = vec![
        (
            "pair_offer_answer_turn",
            encode_mew_ops(
                frames,
                &[
                    pair[0].clone(),
                    pair[1].clone(),
                    act(0, 0, 2, 0, 0),
                    act(1, 1, 2, 0, 9),
                    act(0, 3, 0, 0, 0),
                    act(1, 4, 0, 0, 0),
                    act(0, 2, 4, 0, 0),
                    MewOp::Leave { conn: 0 },
                    act(1, 1, 2, 0, 40),
                ],
            ),
        ),
        (
            "admission_refusals",
            encode_mew_ops(
                frames,
                &[
                    admit(true, 1, 0),
                    admit(false, 1, 0),
                    admit(false, 1, 1),
                    admit(true, 1, 1),
                    admit(true, 1, 0),
                    admit(true, 1, 0),
                    MewOp::Leave { conn: 1 },
                    admit(true, 1, 0),
                    MewOp::Leave { conn: 4 },
                    admit(false, 1, 1),
                ],
            ),
        ),
        (
            "invalid_payloads",
            encode_mew_ops(
                MewSetup {
                    flags: 1 | 2 << 5,
                    start: 7,
                },
                &[
                    pair[0].clone(),
                    pair[1].clone(),
                    act(0, 0, 0, 0, 0),
                    act(0, 0, 1, 0, 0),
                    act(0, 0, 4, 0, 0),
                    act(0, 0, 3, 0, 0),
                    act(0, 0, 3, 3 + 8 * 9, 15),
                    act(0, 0, 3, 4 + 8 * 9, 66),
                    act(0, 0, 3, 6 + 8 * 9, 31),
                    act(1, 1, 3, 1 + 8 * 4, 0),
                    act(1, 1, 3, 2 + 8 * 2, 0),
                    act(1, 1, 3, 7 + 8 * 5, 0),
                    act(1, 0, 2, 0, 0),
                    act(0, 5, 2, 0, 0),
                    act(0, 6, 2, 0, 0),
                    act(0, 7, 0, 0, 0),
                    act(0, 3, 0, 0, 0),
                ],
            ),
        ),
        (
            "raw_and_spliced",
            encode_mew_ops(
                MewSetup { flags: 0, start: 0 },
                &[
                    pair[0].clone(),
                    pair[1].clone(),
                    mew_raw(0, false, br#"{"action":"offersignal","data":{}}"#),
                    mew_raw(0, true, br#"{"action":"ping"}"#),
                    mew_raw(1, false, br#"[{"action":"ping"}]"#),
                    mew_raw(1, false, br#" {"action":"ping","data":null}"#),
                    MewOp::Message {
                        conn: 0,
                        msg: MewMsg::Spliced {
                            action: ActionMsg {
                                action: 0,
                                data: 2,
                                mutation: 0,
                                arg: 0,
                            },
                            at: 60,
                            cut: 3,
                            insert: Bytes(b"\"a\":1,".to_vec()),
                        },
                    },
                ],
            ),
        ),
        (
            "deadlines_across_the_wrap",
            encode_mew_ops(
                timed,
                &[
                    pair[0].clone(),
                    MewOp::Advance { ms: 600 },
                    pair[1].clone(),
                    MewOp::Advance { ms: 600 },
                    act(1, 4, 0, 0, 0),
                    MewOp::Advance { ms: 500 },
                    act(1, 3, 0, 0, 0),
                    MewOp::Advance { ms: 900 },
                    MewOp::Advance { ms: 1100 },
                    MewOp::Advance { ms: 3000 },
                ],
            ),
        ),
        (
            "queries_and_signal_checks",
            encode_mew_ops(
                frames,
                &[
                    MewOp::Query(Bytes(
                        b"role=initiator&connId=04a7c3b2d1e0f9a8b7c6d5e4f3a2b1c0&signed=1b93".to_vec(),
                    )),
                    MewOp::Query(Bytes(
                        b"connId=%F0%9F%98%80%F0%9F%98%80zzzzzzzzzzzzzzzzzzzzzzzzzzza&role=receiver&role=x&signed=%zz0"
                            .to_vec(),
                    )),
                    MewOp::Query(Bytes(b"role&connId=&signed".to_vec())),
                    MewOp::SignalRaw(offer.clone().into_bytes()),
                    MewOp::SignalRaw(dup_keys.into_bytes()),
                    MewOp::SignalRaw(escaped.into_bytes()),
                    MewOp::SignalRaw(format!("{offer} x").into_bytes()),
                    MewOp::SignalSplice {
                        at: 2,
                        cut: 4,
                        insert: Bytes(b"connId\":5,\"x".to_vec()),
                    },
                    MewOp::SignalSplice {
                        at: 0,
                        cut: 0,
                        insert: Bytes(b"[".to_vec()),
                    },
                ],
            ),
        ),
    ];
    seeds.sort_by_key(|s| s.0);
    seeds
        .into_iter()
        .map(|(name, bytes)| ("mewconnect", name, bytes))
        .collect()
}

/// Indexes: `to` 0–2 the id of socket `target`, 3 `"0"`, 4 unknown, 5 absent, 6 a number
/// (odd `to` reverses the field order); `ty` 0 offer, 1 HELLO, 2 "", 3 absent, 4 PEER_GONE, 5 a
/// number; `message` 0–7 (6 absent); `from` 0 absent, 1 own id, 2 socket `target + 1`'s id,
/// 3 null, 4 a number.
fn peer(conn: u8, to: u8, target: u8, ty: u8, message: u8, from: u8) -> PeerOp {
    PeerOp::Message {
        conn,
        msg: PeerMsg::Shaped {
            to,
            target,
            ty,
            message,
            from,
            extra: message % 2 == 1,
        },
    }
}

fn peer_raw(conn: u8, binary: bool, bytes: &[u8]) -> PeerOp {
    PeerOp::Message {
        conn,
        msg: PeerMsg::Raw {
            binary,
            bytes: Bytes(bytes.to_vec()),
        },
    }
}

fn peerolator_seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    use PeerOp::{Close, OpenClient, OpenServer};
    let sid = format!("{:032x}", 0x5e); // server id 0
    let server_and_two = [
        OpenServer { server: 0 },
        OpenClient { server: 0 },
        OpenClient { server: 0 },
    ];
    let with = |ops: &[PeerOp]| {
        let mut all = server_and_two.to_vec();
        all.extend_from_slice(ops);
        all
    };
    vec![
        (
            "relay_both_ways",
            encode_peer_ops(
                1,
                &with(&[
                    peer(0, 0, 1, 0, 0, 0),
                    peer(0, 2, 2, 1, 3, 1),
                    peer(1, 0, 0, 0, 5, 1),
                    peer(2, 2, 0, 2, 7, 3),
                    peer(2, 1, 0, 4, 1, 0),
                    peer(0, 0, 1, 0, 2, 2),
                    peer(0, 4, 1, 0, 0, 0),
                    peer(0, 3, 1, 0, 0, 0),
                ]),
            ),
        ),
        // The checker read outputs with serde_json's `Value`, which refuses `1e400`; the relay
        // rightly passes it on as sent.
        (
            "regression-checker-number-beyond-f64",
            encode_peer_ops(0, &with(&[peer(0, 0, 1, 0, 4, 0), peer(1, 0, 0, 0, 4, 1)])),
        ),
        (
            "violations_close_with_1008",
            encode_peer_ops(
                0,
                &with(&[
                    peer_raw(1, true, br#"{"to":"x","type":"t","message":1}"#),
                    peer(2, 0, 1, 0, 0, 0),
                    OpenClient { server: 0 },
                    peer(3, 0, 0, 3, 0, 0),
                    OpenClient { server: 0 },
                    peer(4, 0, 0, 0, 6, 0),
                    OpenClient { server: 0 },
                    peer(5, 0, 0, 0, 0, 4),
                    OpenClient { server: 0 },
                    peer(6, 0, 0, 5, 0, 0),
                    peer(0, 6, 1, 0, 0, 0),
                    OpenServer { server: 1 },
                    peer(7, 2, 7, 0, 0, 2),
                ]),
            ),
        ),
        (
            "server_leaves",
            encode_peer_ops(
                1,
                &with(&[
                    Close { conn: 0 },
                    peer(1, 0, 0, 0, 0, 0),
                    peer(2, 0, 1, 0, 0, 0),
                    OpenClient { server: 0 },
                    OpenServer { server: 0 },
                    OpenServer { server: 3 },
                    OpenClient { server: 3 },
                    OpenClient { server: 1 },
                    Close { conn: 1 },
                    peer(8, 0, 4, 0, 0, 1),
                    Close { conn: 4 },
                    Close { conn: 8 },
                ]),
            ),
        ),
        (
            "raw_messages",
            encode_peer_ops(
                0,
                &with(&[
                    peer_raw(0, false, br#"[1,2,3]"#),
                    OpenClient { server: 0 },
                    peer_raw(
                        3,
                        false,
                        format!(r#" {{"to":"{sid}","type":"a","message":{{"x":[1, 2]}} }}"#)
                            .as_bytes(),
                    ),
                    peer_raw(
                        3,
                        false,
                        format!(r#"{{"to":"x","to":"{sid}","type":"a","message":1}}"#).as_bytes(),
                    ),
                    OpenClient { server: 0 },
                    peer_raw(
                        4,
                        false,
                        format!(r#"{{"to":"{sid}","type":"a","message":1,"from":null}}"#)
                            .as_bytes(),
                    ),
                    peer_raw(
                        4,
                        false,
                        format!(r#"{{"to":"{sid}","type":"\u00e9","message":"\ud83d\ude00"}}"#)
                            .as_bytes(),
                    ),
                    peer_raw(4, false, b"not json"),
                ]),
            ),
        ),
    ]
    .into_iter()
    .map(|(name, bytes)| ("peerolator", name, bytes))
    .collect()
}

fn call(method: u8, channel: u8, value: u8) -> ApiOp {
    ApiOp::Call {
        method,
        channel,
        value,
        extra: false,
    }
}

/// One durability record, built by hand (`len`, CRC-32, kind, id, body).
fn api_record(kind: u8, id: [u8; 16], body: &[u8]) -> Vec<u8> {
    let mut payload = vec![kind];
    payload.extend_from_slice(&id);
    payload.extend_from_slice(body);
    let mut crc = sigyard::proto::dialect::httpapi::store::Crc32::new();
    crc.update(&payload);
    let mut out = (payload.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&crc.finish().to_le_bytes());
    out.extend_from_slice(&payload);
    out
}

fn httpapi_seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    // Methods: 0 create_data_channel, 1 create_offer, 2 get_offer, 3 create_candidate,
    // 4 create_answer, 5 get_candidates, 6 get_answer, 7 echo, 8 bogus, 9 a number, 10 none.
    // Channels: 0-3 ids, 4 uppercase, 5 a number, 6 absent, 7 null. Values 0-11 (8 absent).
    let roomy = ApiSetup {
        limits: 3 | 3 << 2 | 3 << 4 | 1 << 6,
        shards: 3,
    };
    let tight = ApiSetup {
        limits: 1 << 2,
        shards: 0,
    };
    let id = [
        0x9b, 0x2f, 0x0c, 0x3e, 0x6a, 0x7e, 0x4d, 0x0b, 0x8f, 0x5e, 0x2f, 0x6c, 0x0b, 0x1e, 0x6a,
        0x11,
    ];
    let mut log = api_record(1, id, &u64::MAX.to_le_bytes());
    log.extend(api_record(2, id, br#""sdp""#));
    log.extend(api_record(4, id, b"[1, 2]"));
    let mut bad_crc = api_record(3, id, b"{}");
    bad_crc[5] ^= 1;
    let mut cut = log.clone();
    cut.extend_from_slice(&api_record(4, id, b"3")[..12]);
    vec![
        (
            "every_method",
            encode_api_ops(
                roomy,
                &[
                    call(0, 1, 8),
                    call(1, 1, 0),
                    call(2, 1, 8),
                    call(3, 1, 1),
                    call(3, 1, 2),
                    call(3, 1, 3),
                    call(3, 1, 4),
                    call(3, 1, 6),
                    call(5, 1, 8),
                    call(4, 1, 7),
                    call(4, 1, 9),
                    call(6, 1, 8),
                    call(1, 1, 10),
                    call(2, 1, 8),
                    ApiOp::Call {
                        method: 7,
                        channel: 5,
                        value: 6,
                        extra: true,
                    },
                    call(8, 0, 0),
                    call(9, 0, 0),
                    call(10, 0, 0),
                    ApiOp::Garbage(Bytes(vec![0xff; 9])),
                ],
            ),
        ),
        (
            "errors_and_expiry",
            encode_api_ops(
                roomy,
                &[
                    call(0, 0, 8),
                    call(0, 0, 8),
                    call(0, 4, 8),
                    call(2, 0, 8),
                    call(6, 0, 8),
                    call(1, 6, 0),
                    call(1, 0, 8),
                    call(1, 5, 0),
                    call(1, 4, 0),
                    call(1, 7, 0),
                    call(2, 2, 8),
                    call(4, 0, 5),
                    call(4, 0, 11),
                    ApiOp::Advance { ms: 200 },
                    call(2, 0, 8),
                    call(0, 0, 8),
                    ApiOp::Advance { ms: 312 },
                    call(5, 0, 8),
                ],
            ),
        ),
        (
            "limits",
            encode_api_ops(
                tight,
                &[
                    call(0, 0, 8),
                    call(0, 1, 8),
                    call(3, 0, 0),
                    call(3, 0, 1),
                    call(1, 0, 6),
                    call(1, 0, 6),
                    call(1, 0, 6),
                    call(1, 0, 6),
                    call(4, 0, 1),
                    ApiOp::Advance { ms: 63 },
                    call(0, 1, 8),
                ],
            ),
        ),
        (
            "raw_bodies",
            encode_api_ops(
                roomy,
                &[
                    ApiOp::Raw(Bytes(b"".to_vec())),
                    ApiOp::Raw(Bytes(b"[]".to_vec())),
                    ApiOp::Raw(Bytes(br#"{"method":"create_data_channel"}"#.to_vec())),
                    ApiOp::Raw(Bytes(br#"{"method":null}"#.to_vec())),
                    ApiOp::Raw(Bytes(br#"{"method":"create_offer","channel_id":"00000000-0000-4000-8000-000000000001","offer":1e400}"#.to_vec())),
                    ApiOp::Raw(Bytes(br#"{"method":"create_offer","offer":"\ud800","channel_id":"00000000-0000-4000-8000-000000000001"}"#.to_vec())),
                    ApiOp::Raw(Bytes(br#"{"method":"echo","k":{"a":[1,2.5,"\u00e9"]},"method":"echo"}"#.to_vec())),
                    call(2, 0, 8),
                    call(1, 0, 0),
                ],
            ),
        ),
        // Replay reported a valid prefix of 0 bytes, not the magic's 8, when the first record
        // was bad (fixed in `Table::replay`).
        (
            "regression-valid-len-without-records",
            encode_api_ops(
                roomy,
                &[ApiOp::Log {
                    magic: true,
                    bytes: bad_crc.clone(),
                }],
            ),
        ),
        (
            "logs",
            encode_api_ops(
                roomy,
                &[
                    ApiOp::Log {
                        magic: true,
                        bytes: log.clone(),
                    },
                    ApiOp::Log {
                        magic: true,
                        bytes: cut,
                    },
                    ApiOp::Log {
                        magic: true,
                        bytes: [log.clone(), bad_crc, log.clone()].concat(),
                    },
                    ApiOp::Log {
                        magic: false,
                        bytes: log.clone(),
                    },
                    ApiOp::Log {
                        magic: true,
                        bytes: api_record(9, id, b""),
                    },
                    call(0, 2, 8),
                    call(1, 2, 6),
                    ApiOp::Garbage(Bytes(log[..40].to_vec())),
                ],
            ),
        ),
    ]
    .into_iter()
    .map(|(name, bytes)| ("httpapi", name, bytes))
    .collect()
}

fn ice_provider_seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let token = br#"{"account_sid":"ACxx","date_created":"Thu, 01 Jan 2026 00:00:00 +0000","date_updated":"Thu, 01 Jan 2026 00:00:00 +0000","ice_servers":[{"url":"stun:global.stun.example:3478","urls":"stun:global.stun.example:3478"},{"credential":"pw","urls":["turn:t.example:3478?transport=udp","turn:t.example:443?transport=tcp",7],"username":"u1"},{"url":"turns:t.example:5349"},{"urls":""},3],"password":"pw","ttl":"86400","username":"u1"}"#;
    // Longer than the 200 bytes an error shows, with a character across that cut.
    let page = format!("<html>{}\u{e9}</html>", "x".repeat(193));
    vec![
        ("created", encode_ice_input(201, 1, token)),
        ("ok", encode_ice_input(200, 3, token)),
        (
            "error_status",
            encode_ice_input(
                401,
                0,
                b"{\"code\":20003,\"message\":\"Authenticate\",\"x\":1}",
            ),
        ),
        ("error_page", encode_ice_input(503, 0, page.as_bytes())),
        ("redirect_with_token", encode_ice_input(302, 2, token)),
        (
            "numeric_ttl_and_url_only",
            encode_ice_input(
                200,
                0,
                br#"{"ttl":0,"ice_servers":[{"url":["stun:a","turn:b"]},{"urls":null,"url":"stun:c"}]}"#,
            ),
        ),
    ]
    .into_iter()
    .map(|(name, bytes)| ("ice_provider", name, bytes))
    .collect()
}

fn eio_packets_seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    [
        ("payload_ascii", "1:22:406:3probe"),
        ("payload_utf16", "18:42[\"m\",\"héllo 😀\"]1:6"),
        ("payload_cut_in_surrogate_pair", "1:😀"),
        ("payload_base64", "6:b4AQID1:51:b"),
        ("payload_leading_zero", "01:202:40"),
        (
            "open",
            r#"0{"sid":"AAaaaaaaaaaaaaaaaaaa","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":12000}"#,
        ),
        ("sio_event_nsp_ack", r#"2/chat,7["ev",{"a":[1,2.5,"x",null]}]"#),
        ("sio_ack", r#"312[{"ok":true},-0.5e-3]"#),
        ("sio_binary", r#"51-/x,["ev",{"_placeholder":true,"num":0}]"#),
        ("sio_error_number", "4 5"),
        ("sio_connect_nsp", "0/admin"),
        ("lines", "42[\"m\",\"😀\"]\n2probe\n中文\n4𝄞\nb4\n1"),
    ]
    .into_iter()
    .map(|(name, text)| ("eio_packets", name, text.as_bytes().to_vec()))
    .collect()
}

fn eio_session_seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    use EioOp::*;
    // Menu items (`sigyard::proto::fuzzing::eio_menu`): 0 `2`, 1 `2probe`, 3 `5`, 6 echo,
    // 7 join r, 10 all r, 13 bye, 18 join watchers, 19 echo (astral), 22 a long echo.
    let post = |slot: u8, items: &[u8]| Post {
        slot,
        items: items.to_vec(),
    };
    let text = |slot: u8, item: u8| WsText { slot, item };
    let seeds: Vec<(&'static str, Vec<EioOp>)> = vec![
        (
            "polling_echo",
            vec![
                HsPoll { slot: 0 },
                Get { slot: 0 },
                post(0, &[6, 6, 19]),
                Get { slot: 0 },
                Advance { ms: 900 },
                post(0, &[0]),
                Advance { ms: 800 },
                Get { slot: 0 },
            ],
        ),
        (
            "upgrade",
            vec![
                HsPoll { slot: 0 },
                HsPoll { slot: 1 },
                post(1, &[7]),
                post(0, &[7, 6]),
                Get { slot: 0 },
                Get { slot: 0 },
                Attach { slot: 0 },
                text(0, 1),
                post(1, &[10]),
                Get { slot: 0 },
                post(0, &[6, 19]),
                text(0, 3),
                post(1, &[10]),
                text(0, 6),
                Get { slot: 0 },
                Advance { ms: 500 },
                text(0, 0),
                Advance { ms: 1200 },
            ],
        ),
        (
            "probe_timeout",
            vec![
                HsPoll { slot: 2 },
                Attach { slot: 2 },
                text(2, 1),
                post(2, &[6]),
                Advance { ms: 400 },
                post(2, &[6]),
                Get { slot: 2 },
                Attach { slot: 2 },
                text(2, 0),
                Get { slot: 2 },
            ],
        ),
        (
            "ws_handshake",
            vec![
                HsWs { slot: 1 },
                text(1, 6),
                text(1, 18),
                HsPoll { slot: 0 },
                post(0, &[6, 13, 6]),
                Get { slot: 0 },
                Get { slot: 0 },
                WsBinary { slot: 1 },
                WsClose { slot: 1 },
            ],
        ),
        (
            "full_taken_no_dialect",
            vec![
                HsPoll { slot: 0 },
                HsPoll { slot: 1 },
                HsWs { slot: 2 },
                HsPoll { slot: 3 },
                HsWs { slot: 3 },
                HsPoll { slot: 0 },
                HsPoll { slot: 0x81 },
                post(0, &[5]),
                HsPoll { slot: 0 },
            ],
        ),
        (
            "queue_overflow",
            vec![
                HsPoll { slot: 0 },
                Get { slot: 0 },
                DropPoll { slot: 0 },
                post(0, &[22, 22, 22, 22]),
                Get { slot: 0 },
            ],
        ),
        (
            "raw_and_bad",
            vec![
                HsPoll { slot: 0 },
                PostRaw {
                    slot: 0,
                    bytes: "12:42[\"echo\",\"😀\"]1:2".as_bytes().to_vec(),
                },
                Get { slot: 0 },
                PostRaw {
                    slot: 0,
                    bytes: "1:😀".as_bytes().to_vec(),
                },
                HsPoll { slot: 0 },
                Attach { slot: 0 },
                WsRaw {
                    slot: 0,
                    bytes: b"2probe".to_vec(),
                },
                WsRaw {
                    slot: 0,
                    bytes: b"5".to_vec(),
                },
                WsRaw {
                    slot: 0,
                    bytes: b"42[\"echo\",{\"k\":[1,2]}]".to_vec(),
                },
                WsRaw {
                    slot: 0,
                    bytes: b"\xff".to_vec(),
                },
            ],
        ),
        (
            "attach_refused",
            vec![
                HsPoll { slot: 0 },
                Attach { slot: 0x80 },
                Attach { slot: 0x80 },
                HsWs { slot: 1 },
                Attach { slot: 0x81 },
                Attach { slot: 0x83 },
                WsBinary { slot: 0 },
                Advance { ms: 2000 },
            ],
        ),
    ];
    seeds
        .into_iter()
        .map(|(name, ops)| ("eio_session", name, encode_eio_ops(&ops)))
        .collect()
}

fn workspaces_tokens_seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    // The checker's secret and salt (`proto::fuzzing::workspaces_tokens`).
    let keys = Keys::new(b"fuzzing secret", "pepper");
    let token = keys.sign(
        &[("workspaceId", "w1"), ("attendeeId", "a1")],
        1_600_000_000,
    );
    let with = |mode: u8, bytes: &[u8]| [&[mode][..], bytes].concat();
    vec![
        ("valid_token", with(0, token.as_bytes())),
        ("binding", with(0, keys.binding("w1", "a1").as_bytes())),
        (
            "pin_hash",
            with(
                0,
                b"$pbkdf2-sha256$1$c2FsdHNhbHRzYWx0c2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ),
        ),
        ("four_parts", with(0, b"a.b.c.d")),
        (
            "signed_claims",
            with(
                1,
                b"workspaceId\0w1\0attendeeId\0a1\0singningToken\0hs256:xx\x03",
            ),
        ),
        ("signed_exp", with(1, b"exp\0x\0k\0v\x09")),
        (
            "signed_unicode_and_iat",
            with(1, "名\0😀\"\\\n\0iat\0str\0名\0again\u{7f}".as_bytes()),
        ),
        (
            "forged_exp_nbf",
            with(
                2,
                b"{\"alg\":\"HS256\"}\xff{\"exp\":1700000001,\"nbf\":1699999999.5,\"a\":\"b\",\"iat\":1}",
            ),
        ),
        (
            "forged_expired",
            with(2, b"{\"alg\":\"HS256\",\"typ\":\"JWT\"}\xff{\"exp\":1700000000}"),
        ),
        (
            "forged_alg_none",
            with(2, b"{\"alg\":\"none\",\"typ\":\"JWT\"}\xff{}"),
        ),
        ("forged_array_claims", with(2, b"[1,2]")),
    ]
    .into_iter()
    .map(|(name, bytes)| ("workspaces_tokens", name, bytes))
    .collect()
}

#[test]
fn dialect_seed_files_are_up_to_date() {
    for (target, name, bytes) in dialect_seeds() {
        let path = corpus_dir(target).join(name);
        let on_disk = fs::read(&path).unwrap_or_default();
        assert!(
            on_disk == bytes,
            "{} is stale: run `cargo test --test fuzz_corpus -- --ignored`",
            path.display()
        );
    }
}

#[test]
#[ignore = "writes the dialect targets' seeds; run after changing them or their encodings"]
fn write_dialect_seeds() {
    for (target, name, bytes) in dialect_seeds() {
        let dir = corpus_dir(target);
        fs::create_dir_all(&dir).expect("a corpus directory");
        fs::write(dir.join(name), bytes).expect("a seed file");
    }
}
