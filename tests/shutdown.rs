//! The binary: flags, signals and graceful shutdown.

mod common;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_sigyard");

#[test]
fn bad_flag_exits_nonzero_naming_it() {
    let out = Command::new(BIN)
        .arg("--max-frame-size")
        .arg("12x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--max-frame-size") && err.contains("12x"),
        "{err}"
    );
    let out = Command::new(BIN).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus"));
}

#[test]
fn help_lists_every_option() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for opt in [
        "--listen",
        "--listen-tls",
        "--threads",
        "--echo",
        "--tls-cert",
        "--config",
        "--log-level",
        "--max-frame-size",
    ] {
        assert!(text.contains(opt), "help lacks {opt}");
    }
}

#[test]
fn sigterm_closes_websockets_with_1001_and_exits_zero() {
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--echo",
            "--threads",
            "2",
            "--shutdown-timeout",
            "3s",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server logs its address").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split(' ').next().unwrap().to_string();
        }
    };
    let mut c = common::ws(addr.parse().unwrap(), "/echo");
    c.send(Message::text("x")).unwrap();
    assert_eq!(c.read().unwrap(), Message::text("x"));
    let t0 = Instant::now();
    // SIGTERM through the kill command: no unsafe code in tests.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    match c.read() {
        Ok(Message::Close(Some(f))) => assert_eq!(f.code, CloseCode::Away),
        other => panic!("expected close 1001, got {other:?}"),
    }
    let _ = c.close(None);
    let _ = c.flush();
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "drained quickly once the client answered"
    );
    // Drain stderr so the child never blocked on it.
    for _ in lines {}
}
