//! TURN REST credentials against a real coturn: a `turnserver` on loopback with
//! `--use-auth-secret` accepts the credentials a running sigyard hands out on `GET /ice-servers`
//! (coturn's own `turnutils_uclient` allocates a relay and echoes a packet through it via
//! `turnutils_peer`), and refuses expired ones and ones minted with a secret it does not know.
//!
//! Needs Debian's `coturn` package (`./run-tests` installs it). Without it the test fails, unless
//! `SIGYARD_TEST_SKIP=coturn` leaves it out.

mod common;
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SECRET: &str = "coturn-test-secret";
const TOKEN: &str = "ice-endpoint-token-for-tests";

/// Kills and reaps the child when dropped, so a failing assertion leaves no process behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A loopback port free for both UDP and TCP right now.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Starts `turnserver` on `port` and waits until it has created its servers.
fn start_coturn(port: u16, dir: &std::path::Path) -> Reaped {
    let mut child = Command::new("turnserver")
        .args(["-n", "--no-cli", "--no-tls", "--no-dtls", "--simple-log"])
        .args(["--log-file", "stdout", "--listening-ip", "127.0.0.1"])
        .args(["--relay-ip", "127.0.0.1", "--allow-loopback-peers"])
        .arg(format!("--listening-port={port}"))
        .arg("--use-auth-secret")
        .arg(format!("--static-auth-secret={SECRET}"))
        .args(["--realm", "sigyard.test"])
        .arg(format!(
            "--pidfile={}",
            dir.join("turnserver.pid").display()
        ))
        .arg(format!("--userdb={}", dir.join("turndb").display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start turnserver");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("Total General servers") => break,
            Ok(_) => {}
            Err(_) => panic!("turnserver did not start within 10 s"),
        }
    }
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});
    Reaped(child)
}

/// Runs `turnutils_uclient` with one credential pair; returns (exit success, output).
fn allocate(turn_port: u16, peer_port: u16, user: &str, pass: &str) -> (bool, String) {
    let mut child = Command::new("turnutils_uclient")
        .args(["-p", &turn_port.to_string(), "-u", user, "-w", pass])
        .args(["-n", "1", "-c", "-z", "5", "-e", "127.0.0.1"])
        .args(["-r", &peer_port.to_string(), "127.0.0.1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start turnutils_uclient");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "turnutils_uclient ran for 30 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Whether uclient's summary says a packet came back through the relay.
fn relayed(output: &str) -> bool {
    output.lines().any(|l| {
        l.contains("start_mclient: tot_send_msgs=")
            && l.split("tot_recv_msgs=")
                .nth(1)
                .and_then(|n| n.trim().parse::<u32>().ok())
                .is_some_and(|n| n > 0)
    })
}

/// The TURN entry's (username, credential) from a running sigyard's `/ice-servers`.
fn fetch_turn_credentials(addr: SocketAddr, user: &str) -> (String, String) {
    let resp = raw_exchange(
        addr,
        format!(
            "GET /ice-servers?user={user} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\n\
             Connection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert!(resp.starts_with("HTTP/1.1 200 "), "{resp}");
    let body = &resp[resp.find("\r\n\r\n").unwrap() + 4..];
    let v: Value = serde_json::from_str(body).unwrap();
    let turn = v["iceServers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"].as_str().unwrap().starts_with("turn:"))
        .unwrap_or_else(|| panic!("no turn: entry in {body}"));
    assert_eq!(turn["url"], turn["urls"]);
    (
        turn["username"].as_str().unwrap().to_string(),
        turn["credential"].as_str().unwrap().to_string(),
    )
}

fn sigyard(turn_port: u16, secrets: &[&str], ttl: Duration) -> sigyard::Handle {
    start(|b| {
        b.ice(|i| {
            i.servers = vec![
                "stun:127.0.0.1".into(),
                format!("turn:127.0.0.1:{turn_port}?transport=udp"),
            ];
            i.turn_secrets = secrets
                .iter()
                .map(|s| sigyard::config::Secret::new(*s))
                .collect();
            i.turn_ttl = ttl;
            i.endpoint_token = Some(sigyard::config::Secret::new(TOKEN));
        })
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn coturn_accepts_minted_credentials_and_refuses_expired_or_foreign_ones() {
    if skipped("coturn") {
        return;
    }
    let tools = ["turnserver", "turnutils_uclient", "turnutils_peer"];
    assert!(
        tools.iter().all(|t| have(t)),
        "coturn is not installed (need {tools:?}): `./run-tests` installs it, or \
         `apt-get install coturn`; SIGYARD_TEST_SKIP=coturn leaves this test out"
    );
    let dir = std::env::temp_dir().join(format!("sigyard-coturn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let turn_port = free_port();
    let _coturn = start_coturn(turn_port, &dir);
    let peer_port = free_port();
    let _peer = Reaped(
        Command::new("turnutils_peer")
            .args(["-L", "127.0.0.1", "-p", &peer_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start turnutils_peer"),
    );

    // The coturn secret first, a retired one after it (a rotation in progress).
    let day = Duration::from_secs(86_400);
    let good = sigyard(turn_port, &[SECRET, "retired-secret"], day);
    // A secret coturn does not know is first: minting uses it, not the one after it.
    let foreign = sigyard(turn_port, &["not-the-coturn-secret", SECRET], day);
    let short = sigyard(turn_port, &[SECRET], Duration::from_secs(1));

    let (user, pass) = fetch_turn_credentials(good.plain_addr().unwrap(), "alice%3A1");
    let (expiry, who) = user.split_once(':').unwrap();
    let expiry: u64 = expiry.parse().unwrap();
    assert_eq!(who, "alice:1");
    assert!(expiry.abs_diff(unix_now() + 86_400) <= 2, "{user}");
    let minted_at = unix_now();
    let (short_user, short_pass) = fetch_turn_credentials(short.plain_addr().unwrap(), "bob");

    let (ok, out) = allocate(turn_port, peer_port, &user, &pass);
    assert!(
        ok && relayed(&out),
        "coturn refused sigyard's credentials:\n{out}"
    );
    assert!(!out.contains("Cannot complete Allocation"), "{out}");

    // The same username with a credential from another secret.
    let (foreign_user, foreign_pass) =
        fetch_turn_credentials(foreign.plain_addr().unwrap(), "alice%3A1");
    let (ok, out) = allocate(turn_port, peer_port, &foreign_user, &foreign_pass);
    assert!(
        !ok && out.contains("Cannot complete Allocation") && !relayed(&out),
        "coturn accepted a credential from an unknown secret:\n{out}"
    );

    // Expired: minted with a 1 s lifetime, used after it (the allocation above took seconds).
    let expiry: u64 = short_user.split_once(':').unwrap().0.parse().unwrap();
    assert!(expiry <= minted_at + 2);
    while unix_now() <= expiry + 1 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, out) = allocate(turn_port, peer_port, &short_user, &short_pass);
    assert!(
        !ok && out.contains("Cannot complete Allocation") && !relayed(&out),
        "coturn accepted an expired credential:\n{out}"
    );

    for h in [good, foreign, short] {
        stop(h);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
