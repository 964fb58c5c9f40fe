//! What an operator sees before any client: `--print-config` (its output fed back as
//! `--config` gives the same configuration), `--check-config` on good and bad files (no port
//! bound), and the start-up summary of what each listener serves and the limits.

use sigyard::config::{parse, Parsed};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sigyard"));
    // Only what a test sets.
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("SIGYARD_")) {
        c.env_remove(k);
    }
    c
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("sigyard-operator-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn config_of(args: &[&str], env: &[(&str, &str)]) -> sigyard::config::Config {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env = |k: &str| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    match parse(&args, &env) {
        Ok(Parsed::Run(c)) => c,
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn print_config_round_trips_through_a_config_file() {
    let file = tmp("base.conf");
    std::fs::write(
        &file,
        "idle-timeout = 90s\nturn-secret = s3cret\nice-server = turn:h:3478\n",
    )
    .unwrap();
    let out = bin()
        .args(["--print-config", "--config", file.to_str().unwrap()])
        .args(["--max-connections", "500", "--ywebrtc-paths", "/a,/b"])
        .args(["--peerolator-server-info", "srv \"v1\""])
        .env("SIGYARD_WEBTORRENT_MAX_OFFERS", "3")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // Where each value came from; defaults commented; the secret never printed.
    assert!(
        text.contains("max-connections = \"500\"  # from --max-connections\n"),
        "{text}"
    );
    assert!(text.contains("webtorrent-max-offers = \"3\"  # from SIGYARD_WEBTORRENT_MAX_OFFERS\n"));
    assert!(text.contains(&format!(
        "idle-timeout = \"90s\"  # from {}:1: idle-timeout\n",
        file.display()
    )));
    assert!(text.contains("# turn-secret = <set>  # from "));
    assert!(!text.contains("s3cret"));
    assert!(text.contains("# ping-interval = 30s  (default)\n"));
    // Fed back (with the secret given again, as the operator would), the same configuration.
    let printed = tmp("printed.conf");
    std::fs::write(&printed, &text).unwrap();
    let again = config_of(
        &["--config", printed.to_str().unwrap()],
        &[("SIGYARD_TURN_SECRET", "s3cret")],
    );
    let first = config_of(
        &[
            "--config",
            file.to_str().unwrap(),
            "--max-connections",
            "500",
            "--ywebrtc-paths",
            "/a,/b",
            "--peerolator-server-info",
            "srv \"v1\"",
        ],
        &[("SIGYARD_WEBTORRENT_MAX_OFFERS", "3")],
    );
    assert_eq!(again, first);
    assert_ne!(first, config_of(&[], &[]), "the test changes something");
}

#[test]
fn check_config_reads_the_files_and_binds_nothing() {
    // A port that is taken: a check that bound it would fail.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let state = tmp("state");
    let out = bin()
        .args(["--check-config", "--listen", &listen, "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "sigyard: the configuration is valid\n"
    );
    assert!(state.is_dir(), "the state directory was made");
    let bad: [(&[&str], &str); 4] = [
        (
            &[
                "--tls-cert",
                "/nonexistent/cert.pem",
                "--tls-key",
                "/nonexistent/key.pem",
                "--listen-tls",
                "127.0.0.1:0",
            ],
            "/nonexistent/cert.pem",
        ),
        (
            &["--state-dir", "/proc/sigyard-state"],
            "state directory /proc/sigyard-state",
        ),
        (
            &["--workspaces-storage-file", "/proc/version"],
            "workspace store",
        ),
        (&["--max-connections", "many"], "--max-connections"),
    ];
    for (args, want) in bad {
        let out = bin().arg("--check-config").args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    drop(taken);
}

#[test]
fn the_start_up_log_says_what_each_listener_serves() {
    let mut child = bin()
        .args([
            "--listen",
            "127.0.0.1:0",
            "--max-connections",
            "5000000",
            "--threads",
            "1",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Vec<String> = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .take(3)
        .map(Result::unwrap)
        .collect();
    child.kill().unwrap();
    child.wait().unwrap();
    let all = lines.join("\n");
    for want in [
        "listening on 127.0.0.1:",
        "(plain) with 1 reactor threads: MewConnect v2 on /,/staging,/dev",
        "PeerJS /peerjs",
        "WebTorrent /announce",
        "Socket.IO 2 /socket.io/",
        "echo off; one process (no --cluster)",
        "limits: --max-connections 5000000 (per IP 10000), open files ",
        "WARN  the open-files limit (",
    ] {
        assert!(all.contains(want), "{want:?} in:\n{all}");
    }
}
