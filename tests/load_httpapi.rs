//! `sigyard-load httpapi` against an in-process sigyard: a small run (8 keep-alive clients for
//! about a second), its JSON summary checked against what the server saw.

mod common;

use serde_json::Value;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_sigyard-load");

#[test]
fn httpapi_scenario_reports_requests_and_latency() {
    let h = common::start(|b| b);
    let url = format!("http://{}", h.plain_addr().unwrap());
    let out = Command::new(BIN)
        .args([
            "httpapi",
            "--concurrency",
            "8",
            "--duration",
            "1",
            "--size",
            "300",
        ])
        .args(["--url", &url, "--json", "--quiet", "--threads", "2"])
        .output()
        .expect("run sigyard-load");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{stderr}", out.status);
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON summary on stdout");
    assert_eq!(v["scenario"], "httpapi");
    assert_eq!(v["established"], 8, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    let no_errors = v["errors"].as_object().map_or(true, |m| m.is_empty());
    assert!(no_errors, "every request answered 200: {v}");
    let completed = v["completed"].as_u64().unwrap();
    assert!(completed >= 100, "{v}");
    let l = &v["latency_us"];
    assert_eq!(l["count"].as_u64(), Some(completed));
    assert!(l["p50"].as_f64().unwrap() > 0.0 && l["p50"].as_f64() <= l["p99"].as_f64());
    common::stop(h);
}
