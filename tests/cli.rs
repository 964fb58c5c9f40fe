//! The binaries' own output: a reader that closes early (`sigyard --help | head`) ends it
//! quietly, with no panic and no message.

mod common;
use std::io::Read;
use std::process::{Command, Stdio};

#[test]
fn help_into_a_closed_pipe_exits_quietly() {
    closed_pipes(env!("CARGO_BIN_EXE_sigyard"));
}

#[test]
fn the_load_tool_too() {
    closed_pipes(env!("CARGO_BIN_EXE_sigyard-load"));
    // A run's summary into a closed stdout.
    let h = common::start(|b| b.echo(true));
    let url = format!("ws://{}/echo", h.plain_addr().unwrap());
    let mut child = Command::new(env!("CARGO_BIN_EXE_sigyard-load"))
        .args([
            "idle",
            "--url",
            &url,
            "--connections",
            "2",
            "--hold",
            "1",
            "--quiet",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(status.code(), Some(0), "{err}");
    common::stop(h);
}

/// `--help`, `--version` (the server) and a bad flag, each into a pipe already closed.
fn closed_pipes(bin: &str) {
    let version_flag = bin.ends_with("sigyard");
    for args in [&["--help"][..], &["--version"], &["--no-such-flag"]] {
        if args[0] == "--version" && !version_flag {
            continue;
        }
        // The reading end is closed before the child writes: every write fails with EPIPE.
        let mut child = Command::new(bin)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let mut err = String::new();
        if args[0] == "--no-such-flag" {
            // Here stderr is the stream that closes.
            drop(child.stderr.take());
        } else {
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
        }
        let status = child.wait().unwrap();
        assert_eq!(err, "", "{args:?}: stderr");
        let want = if args[0] == "--no-such-flag" { 2 } else { 0 };
        assert_eq!(status.code(), Some(want), "{args:?}: {status:?}");
    }
}
