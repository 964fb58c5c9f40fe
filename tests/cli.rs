//! The binaries' own output: a reader that closes early (`sigyard --help | head`) ends it
//! quietly, with no panic and no message.

mod common;
use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};

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
    let args = [
        "idle",
        "--url",
        &url,
        "--connections",
        "2",
        "--hold",
        "1",
        "--quiet",
    ];
    let (status, err) = run_closed(env!("CARGO_BIN_EXE_sigyard-load"), &args, false);
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
        // A bad flag writes to stderr: that is the stream that closes then.
        let bad = args[0] == "--no-such-flag";
        let (status, err) = run_closed(bin, args, bad);
        assert_eq!(err, "", "{args:?}: stderr");
        assert_eq!(status.code(), Some(if bad { 2 } else { 0 }), "{args:?}");
    }
}

/// Runs `bin` with its stdout's reading end closed before it writes (every write fails with
/// EPIPE), and its stderr too if `close_stderr`; returns how it exited and what it wrote to
/// stderr otherwise.
fn run_closed(bin: &str, args: &[&str], close_stderr: bool) -> (ExitStatus, String) {
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let mut err = String::new();
    let mut stderr = child.stderr.take().unwrap();
    if close_stderr {
        drop(stderr);
    } else {
        stderr.read_to_string(&mut err).unwrap();
    }
    (child.wait().unwrap(), err)
}
