//! `sigyard-load ywebrtc` against an in-process sigyard: small runs of about two seconds, their
//! JSON summaries checked (subscribers and topics, every publish delivered to its topic, the
//! server memory fields with `--server-pid`), closed loop and with `--rate`.

mod common;

use common::run_load_scenario as run;

#[test]
fn ywebrtc_scenario_fans_publishes_out_to_every_subscriber() {
    let h = common::start(|b| b);
    let url = format!("ws://{}", h.plain_addr().unwrap());
    let pid = std::process::id().to_string();
    let v = run(
        &url,
        &[
            "ywebrtc",
            "--connections",
            "30",
            "--fanout",
            "7",
            "--duration",
            "2",
            "--size",
            "300",
            "--server-pid",
            &pid,
        ],
    );
    assert_eq!(v["scenario"], "ywebrtc");
    // 30 in topics of 7: four of 7 and one of 2.
    assert_eq!(
        (v["subscribed"].as_u64(), v["topics"].as_u64()),
        (Some(30), Some(5)),
        "{v}"
    );
    let (publishes, deliveries) = (
        v["publishes"].as_u64().unwrap(),
        v["deliveries"].as_u64().unwrap(),
    );
    let completed = v["latency_us"]["count"].as_u64().unwrap();
    assert!(
        completed >= 100 && completed <= publishes && publishes <= completed + 5,
        "{v}"
    );
    // Every completed publish reached all of its topic's subscribers (2 or 7 of them).
    assert!(
        deliveries >= 2 * completed && deliveries <= 7 * publishes,
        "{v}"
    );
    assert!(v["deliveries_per_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["server_rss_per_connection_bytes"].is_number(), "{v}");

    // Open loop on the dedicated path: 100 publishes per second over the topics.
    let path_url = format!("{url}/y-webrtc");
    let v = run(
        &path_url,
        &[
            "ywebrtc",
            "--connections",
            "12",
            "--fanout",
            "4",
            "--duration",
            "2",
            "--rate",
            "100",
        ],
    );
    let publishes = v["publishes"].as_u64().unwrap();
    assert!((50..=210).contains(&publishes), "{v}");
    let (deliveries, completed) = (
        v["deliveries"].as_u64().unwrap(),
        v["latency_us"]["count"].as_u64().unwrap(),
    );
    assert!(
        4 * completed <= deliveries && deliveries <= 4 * publishes,
        "{v}"
    );
    common::stop(h);
}
