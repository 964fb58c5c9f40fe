//! `sigyard-load peerjs` against an in-process sigyard: small runs of about two seconds, their
//! JSON summaries checked (pairs registered, four messages per exchange, the server memory
//! fields with `--server-pid`), closed loop and with `--rate`.

mod common;

use common::run_load_scenario as run;

#[test]
fn peerjs_scenario_registers_pairs_and_relays_exchanges() {
    let h = common::start(|b| b);
    let url = format!("ws://{}", h.plain_addr().unwrap());
    let pid = std::process::id().to_string();
    let v = run(
        &url,
        &[
            "peerjs",
            "--pairs",
            "20",
            "--duration",
            "2",
            "--size",
            "700",
            "--concurrency",
            "4",
            "--server-pid",
            &pid,
        ],
    );
    assert_eq!(v["scenario"], "peerjs");
    assert_eq!(
        (v["registered"].as_u64(), v["clients"].as_u64()),
        (Some(20), Some(40)),
        "{v}"
    );
    assert_eq!(v["setup_latency_us"]["count"], 20, "{v}");
    let (msgs, rt) = (
        v["messages"].as_u64().unwrap(),
        v["round_trips"].as_u64().unwrap(),
    );
    assert!(rt >= 100, "{v}");
    assert_eq!(v["latency_us"]["count"].as_u64(), Some(rt));
    // Four messages per exchange; at most one exchange per pair cut short by the end.
    assert!(msgs + 4 * 20 >= 4 * rt && msgs <= 4 * rt + 20, "{v}");
    assert!(v["messages_per_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["server_rss_kib"]["at_n"].as_u64().unwrap() > 0, "{v}");
    assert!(v["server_rss_per_connection_bytes"].is_number(), "{v}");

    // Open loop: 100 exchanges per second over the pairs.
    let v = run(
        &url,
        &[
            "peerjs",
            "--pairs",
            "10",
            "--duration",
            "2",
            "--rate",
            "100",
        ],
    );
    let rt = v["round_trips"].as_u64().unwrap();
    assert!((50..=210).contains(&rt), "{v}");
    common::stop(h);
}
