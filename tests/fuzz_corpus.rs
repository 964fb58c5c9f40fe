//! Replays every file in `fuzz/corpus/<target>/` through the check that fuzz target runs
//! (`sigyard::proto::fuzzing`), so a plain `cargo test` catches any regression a seed or a
//! saved crash input reproduces, without libFuzzer or a nightly toolchain.
//!
//! The conn_ops seeds are written by `write_conn_ops_seeds` (ignored; run it after changing
//! [`seeds`] or the `Op` encoding): `cargo test --test fuzz_corpus -- --ignored`.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

use sigyard::proto::fuzzing::{
    check_conn_ops, check_http_upgrade, check_ws_decoder, check_ws_frame_header, encode_ops, Op,
    Setup,
};

/// Every fuzz target (each has a test below).
const TARGETS: [&str; 4] = ["http_upgrade", "ws_frame_header", "ws_decoder", "conn_ops"];

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
