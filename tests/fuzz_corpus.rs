//! Replays every file in `fuzz/corpus/<target>/` through the check that fuzz target runs
//! (`sigyard::proto::fuzzing`), so a plain `cargo test` catches any regression a seed or a
//! saved crash input reproduces, without libFuzzer or a nightly toolchain.
//!
//! The conn_ops seeds are written by `write_conn_ops_seeds` (ignored; run it after changing
//! [`seeds`] or the `Op` encoding): `cargo test --test fuzz_corpus -- --ignored`. The seeds of
//! the dialect targets (`msgpack_decode`, `cevitxe_intro`, `pipe_table`) likewise come from
//! [`dialect_seeds`], written by `write_dialect_seeds`.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

use sigyard::proto::dialect::msgpack::{self, Value as Mp};
use sigyard::proto::fuzzing::{
    check_cevitxe_intro, check_conn_ops, check_http_upgrade, check_msgpack_decode,
    check_pipe_table, check_ws_decoder, check_ws_frame_header, encode_intro_ops, encode_ops,
    encode_pipe_ops, Bytes, Format, IntroMsg, IntroOp, Op, Payload, PipeOp, PipeSetup, Setup,
};

/// Every fuzz target (each has a test below).
const TARGETS: [&str; 7] = [
    "http_upgrade",
    "ws_frame_header",
    "ws_decoder",
    "conn_ops",
    "msgpack_decode",
    "cevitxe_intro",
    "pipe_table",
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

// ── dialect seeds: msgpack_decode, cevitxe_intro, pipe_table ───────────────────────────────

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
