//! `sigyard-load socketio` against an in-process sigyard (with `--echo`): small runs on both
//! transports, their JSON summaries checked.

mod common;

use serde_json::Value;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_sigyard-load");

#[test]
fn socketio_scenario_reports_events_and_latency_on_both_transports() {
    let h = common::start(|b| b);
    let url = format!("ws://{}", h.plain_addr().unwrap());
    for transport in ["websocket", "polling"] {
        let out = Command::new(BIN)
            .args(["socketio", "--connections", "20", "--duration", "1"])
            .args(["--transport", transport, "--size", "32"])
            .args(["--url", &url, "--json", "--quiet", "--threads", "2"])
            .output()
            .expect("run sigyard-load");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{:?}\n{stderr}", out.status);
        let v: Value = serde_json::from_slice(&out.stdout).expect("JSON summary on stdout");
        assert_eq!(v["scenario"], "socketio");
        assert_eq!(v["transport"], transport);
        assert_eq!(v["opened"], 20, "{v}");
        assert_eq!(v["failed"], 0, "{v}");
        let events = v["events"].as_u64().unwrap();
        assert!(events >= 100, "{v}");
        let l = &v["latency_us"];
        assert_eq!(l["count"].as_u64(), Some(events));
        assert!(l["p50"].as_f64().unwrap() > 0.0 && l["p50"].as_f64() <= l["p99"].as_f64());
    }
    // Without the test dialect (no --echo) the handshake is webRTWorkspaces', which sends no
    // `welcome`: every session times out, and the run says so.
    let h2 = common::start(|b| b.echo(false));
    let url2 = format!("ws://{}", h2.plain_addr().unwrap());
    let out = Command::new(BIN)
        .args([
            "socketio",
            "--connections",
            "2",
            "--duration",
            "1",
            "--quiet",
        ])
        .args(["--timeout", "1"])
        .args(["--url", &url2])
        .output()
        .expect("run sigyard-load");
    assert_eq!(out.status.code(), Some(1));
    common::stop(h2);
    common::stop(h);
}
