//! Whole-server memory per idle connection: starts the release `sigyard` binary, opens N
//! WebSocket connections to `/echo` (plain or TLS), leaves them idle, and reads the server's
//! RSS from `/proc/<pid>/status` before and after.
//!
//! Run: `cargo bench --bench idle_rss -- [N] [tls]` (default N = 19000; this machine caps
//! every process at 20,000 open files, so the client, a separate process from the server,
//! stays below that). Kernel socket memory is not in RSS and is not counted here.
//! `SIGYARD_BIN=path` measures another build of the server (an earlier commit's, side by side).
//!
//! The client side is deliberately simple (blocking sockets, one handshake after another):
//! it measures the server's memory, not its speed.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sigyard");
const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-cert.pem");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/dev-key.pem");

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server alive");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS line");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

const REQUEST: &[u8] =
    b"GET /echo HTTP/1.1\r\nHost: sigyard.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn upgrade(s: &mut impl ReadWrite) {
    s.write_all(REQUEST).unwrap();
    s.flush().unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "server closed during the upgrade");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(19_000);
    let tls = args.iter().any(|a| a == "tls");
    let bin = std::env::var("SIGYARD_BIN").unwrap_or_else(|_| BIN.to_string());
    let mut cmd = Command::new(bin);
    cmd.args([
        "--echo",
        "--log-level",
        "warn",
        "--max-connections-per-ip",
        "0",
        "--threads",
        "2",
    ]);
    cmd.args(["--ping-interval", "0", "--idle-timeout", "0"]);
    // 19,000 connections from one address in a few seconds: past the default connection rate
    // (by environment, which an earlier build ignores).
    cmd.env("SIGYARD_MAX_NEW_CONNECTIONS_PER_IP", "0");
    if tls {
        cmd.args([
            "--listen-tls",
            "127.0.0.1:0",
            "--tls-cert",
            CERT,
            "--tls-key",
            KEY,
            "--log-level",
            "info",
        ]);
    } else {
        cmd.args(["--listen", "127.0.0.1:0", "--log-level", "info"]);
    }
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .expect("run target/release/sigyard");
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server logs its address").unwrap();
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split(' ').next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});

    let client_cfg = tls.then(|| {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(CERT).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(cfg)
    });
    let connect = || -> Box<dyn ReadWrite> {
        let tcp = TcpStream::connect(&addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // Without it the TLS Finished and the upgrade request wait on a delayed ACK (Nagle).
        tcp.set_nodelay(true).unwrap();
        let mut s: Box<dyn ReadWrite> = match &client_cfg {
            None => Box::new(tcp),
            Some(cfg) => {
                let conn = rustls::ClientConnection::new(
                    cfg.clone(),
                    ServerName::try_from("sigyard.test").unwrap(),
                )
                .unwrap();
                Box::new(rustls::StreamOwned::new(conn, tcp))
            }
        };
        upgrade(&mut s);
        s
    };

    // Warm up: let pools, slabs and allocator arenas reach their working shape.
    let warm: Vec<_> = (0..200).map(|_| connect()).collect();
    drop(warm);
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(pid);
    let t0 = Instant::now();
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        held.push(connect());
        if i % 5000 == 4999 {
            eprintln!(
                "  {} connections open, server RSS {} KiB",
                i + 1,
                rss_kib(pid)
            );
        }
    }
    let opened = t0.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kib(pid);
    let per_conn = (after.saturating_sub(before) as f64 * 1024.0) / n as f64;
    println!(
        "idle_rss mode={} connections={n} opened_in={:.1}s rss_before={before}KiB rss_after={after}KiB per_connection={per_conn:.0}B",
        if tls { "tls" } else { "plain" },
        opened.as_secs_f64()
    );
    drop(held);
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
}
