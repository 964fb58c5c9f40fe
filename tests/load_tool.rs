//! The `sigyard-load` binary against an in-process sigyard: each scenario on a small load for
//! about a second (JSON summary parsed and checked), and a bad flag exiting with status 2.

mod common;

use serde_json::Value;
use std::net::SocketAddr;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_sigyard-load");

fn run(addr: SocketAddr, args: &[&str]) -> Value {
    run_url(&format!("ws://{addr}"), args)
}

fn run_url(url: &str, args: &[&str]) -> Value {
    let v = common::run_load(url, args);
    assert!(v["client_limit"].is_null());
    v
}

fn latencies_present(v: &Value) {
    let l = &v["latency_us"];
    assert!(l["count"].as_u64().unwrap() > 0, "{v}");
    for k in ["p50", "p99", "p999", "max"] {
        assert!(l[k].as_f64().unwrap() > 0.0, "{k}: {v}");
    }
    assert!(l["p50"].as_f64() <= l["p99"].as_f64());
    assert!(l["p99"].as_f64() <= l["max"].as_f64());
}

#[test]
fn every_scenario_runs_against_sigyard() {
    let h = common::start(|b| b);
    let addr = h.local_addrs()[0];
    // The scenarios run one after another (they share the machine); the server is shared.
    let pid = std::process::id().to_string();
    let idle = run(
        addr,
        &[
            "idle",
            "--connections",
            "50",
            "--hold",
            "1",
            "--server-pid",
            &pid,
        ],
    );
    assert_eq!(idle["established"], 50);
    assert_eq!(idle["held"], 50);
    assert!(idle["server_rss_kib"]["at_n"].as_u64().unwrap() > 0);
    // At most --rate new connections per second, from two source addresses.
    let paced = run(
        addr,
        &[
            "idle",
            "--connections",
            "40",
            "--hold",
            "0.2",
            "--rate",
            "100",
            "--source-ips",
            "2",
        ],
    );
    assert_eq!(paced["established"], 40);
    assert!(paced["setup_s"].as_f64().unwrap() >= 0.3, "{paced}");

    for mode in ["echo", "pipe"] {
        let v = run(
            addr,
            &[
                "relay",
                "--mode",
                mode,
                "--pairs",
                "4",
                "--size",
                "64",
                "--duration",
                "1",
                "--server-pid",
                &pid,
            ],
        );
        assert_eq!(v["mode"], mode);
        assert_eq!(v["established"], if mode == "pipe" { 8 } else { 4 });
        let received = v["messages_received"].as_u64().unwrap();
        assert!(received > 0, "{v}");
        // One message in flight per pair: each one delivered rode a segment of its own (the
        // host's count also holds whatever else ran meanwhile, so it is only a lower bound).
        assert!(v["tcp_segments"].as_u64().unwrap() >= received, "{v}");
        assert!(v["server_cpu_s"]["system"].as_f64().is_some(), "{v}");
        assert!(v["messages_per_sec"].as_f64().unwrap() > 0.0);
        latencies_present(&v);
    }
    let open_loop = run(
        addr,
        &["relay", "--pairs", "2", "--rate", "200", "--duration", "1"],
    );
    let got = open_loop["messages_received"].as_u64().unwrap();
    assert!(
        (100..=300).contains(&got),
        "open loop at 200/s for 1 s: {got}"
    );

    for scenario in ["handshake", "churn"] {
        let v = run(addr, &[scenario, "--duration", "1", "--concurrency", "4"]);
        assert!(v["completed"].as_u64().unwrap() > 0, "{v}");
        latencies_present(&v);
    }
    common::stop(h);
}

#[test]
fn workers_sum_their_results() {
    let h = common::start(|b| b);
    let addr = h.local_addrs()[0];
    let v = run(
        addr,
        &[
            "idle",
            "--connections",
            "30",
            "--hold",
            "0.5",
            "--workers",
            "3",
        ],
    );
    assert_eq!(v["workers"], 3);
    assert_eq!(v["established"], 30);
    assert_eq!(v["held"], 30);
    common::stop(h);
}

/// wss://: the tool's TLS client verifies the development certificate (`--ca`) and runs the
/// scenarios through sigyard's TLS listener.
#[test]
fn scenarios_run_over_wss() {
    let h = common::start(|b| {
        b.listen_tls("127.0.0.1:0".parse().unwrap())
            .tls(common::CERT, common::KEY)
    });
    let url = format!("wss://localhost:{}", h.tls_addr().unwrap().port());
    let ca = ["--ca", common::CERT];
    let idle = run_url(
        &url,
        &["idle", "--connections", "20", "--hold", "0.3", ca[0], ca[1]],
    );
    assert_eq!(idle["held"], 20);
    for mode in ["echo", "pipe"] {
        let v = run_url(
            &url,
            &[
                "relay",
                "--mode",
                mode,
                "--pairs",
                "2",
                "--duration",
                "0.5",
                ca[0],
                ca[1],
            ],
        );
        assert!(v["messages_received"].as_u64().unwrap() > 0, "{v}");
        latencies_present(&v);
    }
    let v = run_url(
        &url,
        &[
            "handshake",
            "--duration",
            "0.5",
            "--concurrency",
            "2",
            ca[0],
            ca[1],
        ],
    );
    assert!(v["completed"].as_u64().unwrap() > 0, "{v}");

    // Without the development CA the certificate is refused, and the summary says why.
    let out = Command::new(BIN)
        .args([
            "relay",
            "--pairs",
            "1",
            "--duration",
            "0.5",
            "--url",
            &url,
            "--json",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["established"], 0);
    assert!(v.to_string().contains("UnknownIssuer"), "{v}");
    common::stop(h);
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    for (args, named) in [
        (
            &["idle", "--connections", "5", "--bogus", "1"][..],
            "--bogus",
        ),
        (&["relay", "--mode", "sideways"][..], "--mode"),
        (&["handshake", "--pairs", "2"][..], "--pairs"),
        (&["idle"][..], "--connections"),
    ] {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(named), "{args:?}: {err}");
    }
    let help = Command::new(BIN).arg("--help").output().unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for s in [
        "idle",
        "relay",
        "handshake",
        "churn",
        "--source-ips",
        "--workers",
        "--json",
    ] {
        assert!(text.contains(s), "help mentions {s}");
    }
}

#[test]
fn mewconnect_scenario_pairs_and_round_trips() {
    let h = common::start(|b| b);
    let addr = h.local_addrs()[0];
    let v = run(
        addr,
        &[
            "mewconnect",
            "--pairs",
            "40",
            "--duration",
            "1",
            "--concurrency",
            "8",
            "--size",
            "500",
        ],
    );
    assert_eq!(v["scenario"], "mewconnect");
    assert_eq!(v["paired"], 40, "{v}");
    assert!(v["pairings_per_s"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["pairing_latency_us"]["count"], 40, "{v}");
    assert!(v["round_trips"].as_u64().unwrap() > 40, "{v}");
    latencies_present(&v);
    // Exactly 80 upgrades on the server: one initiator and one receiver per pair, none retried.
    let text = h.metrics_text();
    let ok = text
        .lines()
        .find_map(|l| l.strip_prefix("sigyard_handshakes_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert_eq!(ok, Some(80.0), "{text}");
    common::stop(h);
}
