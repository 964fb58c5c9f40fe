//! The binary: flags, signals and graceful shutdown.

mod common;
use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStderr, Command, Stdio};
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

/// Start the binary (through `bash -c` so a shell prefix such as `ulimit -n 64;` can apply)
/// and return it with its logged address and the rest of its log lines.
fn spawn(prefix: &str, args: &str) -> (Child, String, Lines<BufReader<ChildStderr>>) {
    let mut child = Command::new("bash")
        .args([
            "-c",
            &format!("{prefix} exec {BIN} --listen 127.0.0.1:0 {args}"),
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
    (child, addr, lines)
}

fn signal(child: &Child, sig: &str) {
    // Through the kill command: no unsafe code in tests.
    Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
}

#[test]
fn sigterm_closes_websockets_with_1001_and_exits_zero() {
    let (mut child, addr, lines) = spawn("", "--echo --threads 2 --shutdown-timeout 3s");
    let mut c = common::ws(addr.parse().unwrap(), "/echo");
    c.send(Message::text("x")).unwrap();
    assert_eq!(c.read().unwrap(), Message::text("x"));
    let t0 = Instant::now();
    signal(&child, "-TERM");
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

#[test]
fn sighup_reloads_the_certificate_and_keeps_connections() {
    let tls = format!(
        "--listen-tls 127.0.0.1:0 --tls-cert {} --tls-key {} --echo",
        common::CERT,
        common::KEY
    );
    let (mut child, addr, mut lines) = spawn("", &tls);
    let mut c = common::ws(addr.parse().unwrap(), "/echo");
    signal(&child, "-HUP");
    let reloaded = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("SIGHUP"));
    assert!(reloaded.is_some_and(|l| l.contains("reloaded")));
    c.send(Message::text("after reload")).unwrap();
    assert_eq!(c.read().unwrap(), Message::text("after reload"));
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
}

#[test]
fn out_of_file_descriptors_pauses_accepting_and_recovers() {
    // 64 descriptors: the listener, epoll, wakers and stdio take about a dozen.
    let (mut child, addr, lines) = spawn("ulimit -n 64;", "--echo --threads 1");
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let held: Vec<_> = (0..48).map(|_| common::ws(addr, "/echo")).collect();
    // Past the limit: these connect (the kernel's backlog takes them) but are not served yet.
    let waiting: Vec<_> = (0..20)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        child.try_wait().unwrap(),
        None,
        "server must not exit on EMFILE"
    );
    drop(held);
    drop(waiting);
    std::thread::sleep(Duration::from_millis(400));
    // Descriptors are free again: service resumes.
    let mut c = common::ws(addr, "/echo");
    c.send(Message::text("back")).unwrap();
    assert_eq!(c.read().unwrap(), Message::text("back"));
    assert!(common::metric(addr, "sigyard_accept_pauses_total") >= 1.0);
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
    let log: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(log.iter().any(|l| l.contains("accept paused")), "{log:?}");
}
