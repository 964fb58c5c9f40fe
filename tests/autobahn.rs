//! The Autobahn WebSocket test cases (sections 1–11; 12/13 need permessage-deflate, which
//! sigyard does not negotiate) against `/echo`, driven by PyPI `kosoku` (`./run-tests` installs
//! it into `target/test-tools/venv`; `SIGYARD_TEST_SKIP=autobahn` leaves this test out). Every case must end with behavior OK, NON-STRICT or INFORMATIONAL and a clean close.
//!
//! kosoku speaks only ws://, so the TLS run puts a small ws→wss bridge
//! (`tests/autobahn_tls_bridge.py`, Python's ssl module as the TLS client) in front of
//! sigyard's TLS listener: every case's bytes then cross sigyard's TLS layer.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn kosoku() -> PathBuf {
    let kosoku = python_tool("kosoku");
    let ok = Command::new(&kosoku)
        .arg("--help")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "kosoku not found: `./run-tests` installs it (into target/test-tools/venv), or \
         `pip install kosoku==0.1.0`; SIGYARD_TEST_SKIP=autobahn leaves this test out"
    );
    kosoku
}

fn server() -> sigyard::Handle {
    start(|b| {
        b.listen_tls("127.0.0.1:0".parse().unwrap())
            .tls(CERT, KEY)
            .limits(|l| {
                // Section 9 sends messages of up to 16 MiB.
                l.max_frame_size = 16 << 20;
                l.max_message_size = 16 << 20;
                l.max_outbound_bytes = 40 << 20;
            })
    })
}

/// Run the suite against `url`, write the reports under `out`, and return the failures.
fn run_suite(kosoku: &Path, url: &str, out: &Path) -> Vec<String> {
    let _ = std::fs::remove_dir_all(out);
    let status = Command::new(kosoku)
        .args(["-x", "12.*", "-x", "13.*", "-p", "2", "-o"])
        .arg(out)
        .arg(url)
        .stdout(Stdio::null())
        .status()
        .expect("kosoku runs");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("index.json")).expect("index.json"))
            .unwrap();
    let cases = index
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .as_object()
        .unwrap();
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    let mut failures = Vec::new();
    for (id, c) in cases {
        let behavior = c["behavior"].as_str().unwrap_or("?");
        let close = c["behaviorClose"].as_str().unwrap_or("?");
        *counts.entry(format!("{behavior}/{close}")).or_default() += 1;
        let ok = matches!(behavior, "OK" | "NON-STRICT" | "INFORMATIONAL")
            && matches!(close, "OK" | "INFORMATIONAL");
        if !ok {
            failures.push(format!("{id}: behavior={behavior} close={close}"));
        }
    }
    let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    println!(
        "autobahn {url}: {} cases ({}); kosoku exit {status}",
        cases.len(),
        summary.join(", ")
    );
    assert!(
        cases.len() >= 290,
        "expected the full sections 1-11, got {} cases",
        cases.len()
    );
    failures
}

fn report_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("autobahn")
        .join(name)
}

#[test]
fn autobahn_plain_and_over_tls() {
    if skipped("autobahn") {
        return;
    }
    let kosoku = kosoku();
    let h = server();
    let plain = run_suite(
        &kosoku,
        &format!("ws://{}/echo", h.plain_addr().unwrap()),
        &report_dir("plain"),
    );

    let mut bridge = TlsBridge::start(h.tls_addr().unwrap());
    let tls = run_suite(
        &kosoku,
        &format!("ws://{}/echo", bridge.addr),
        &report_dir("tls"),
    );
    bridge.stop();
    stop(h);
    assert!(plain.is_empty(), "plain failures:\n{}", plain.join("\n"));
    assert!(tls.is_empty(), "TLS failures:\n{}", tls.join("\n"));
}

struct TlsBridge {
    child: Child,
    addr: String,
}

impl TlsBridge {
    fn start(target: std::net::SocketAddr) -> TlsBridge {
        use std::io::{BufRead, BufReader};
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/autobahn_tls_bridge.py");
        let mut child = Command::new("python3")
            .args([script, &target.to_string(), CERT])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the bridge");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .expect("bridge prints its address")
            .to_string();
        std::thread::sleep(Duration::from_millis(50));
        TlsBridge { child, addr }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
