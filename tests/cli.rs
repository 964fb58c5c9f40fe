//! The `sigyard` binary's own output: a reader that closes early (`sigyard --help | head`)
//! ends it quietly, with no panic and no message.

use std::io::Read;
use std::process::{Command, Stdio};

#[test]
fn help_into_a_closed_pipe_exits_quietly() {
    for args in [&["--help"][..], &["--version"], &["--no-such-flag"]] {
        // The reading end is closed before the child writes: every write fails with EPIPE.
        let mut child = Command::new(env!("CARGO_BIN_EXE_sigyard"))
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
