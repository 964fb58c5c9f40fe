//! `sigyard-load webtorrent` against an in-process sigyard: small runs of about two seconds,
//! their JSON summaries checked (every peer announced, every offer relayed and answered, scrapes
//! mixed in, the server memory fields with `--server-pid`, no frame unlike the original's),
//! closed loop, with `--rate`, and with swarms too small for the offers.

mod common;

use common::run_load_scenario as run;

fn u(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

#[test]
fn webtorrent_scenario_announces_relays_offers_and_answers() {
    let h = common::start(|b| b);
    let url = format!("ws://{}", h.plain_addr().unwrap());
    let pid = std::process::id().to_string();
    // 40 peers in 4 swarms of 10, 3 offers per announce: each relayed to another peer.
    let v = run(
        &url,
        &[
            "webtorrent",
            "--connections",
            "40",
            "--torrents",
            "4",
            "--offers",
            "3",
            "--duration",
            "2",
            "--size",
            "300",
            "--scrape-mix",
            "10",
            "--concurrency",
            "8",
            "--server-pid",
            &pid,
        ],
    );
    assert_eq!(v["scenario"], "webtorrent");
    assert_eq!((u(&v, "announced"), u(&v, "failed")), (40, 0), "{v}");
    assert_eq!(v["setup_latency_us"]["count"], 40, "{v}");
    let (announces, responses) = (u(&v, "announces"), u(&v, "responses"));
    assert!(
        responses >= 100 && responses <= announces && announces <= responses + 40,
        "{v}"
    );
    assert_eq!(v["latency_us"]["count"].as_u64(), Some(responses), "{v}");
    // Three offers per announce, each relayed to one other peer and answered; an exchange
    // of each peer may be cut short by the end.
    let (offers, answers) = (u(&v, "offers_received"), u(&v, "answers_received"));
    assert_eq!(u(&v, "offers_sent"), 3 * announces, "{v}");
    assert!(
        offers + 3 * 40 >= 3 * responses && offers <= 3 * announces + 3 * 40,
        "{v}"
    );
    assert!(
        answers + 3 * 40 >= 3 * responses && answers <= u(&v, "answers_sent") + 3 * 40,
        "{v}"
    );
    // Latencies of the offers sent during the run (answers to the set-up's may come after).
    let timed = v["answer_latency_us"]["count"].as_u64().unwrap();
    assert!(timed <= answers && answers <= timed + 3 * 40, "{v}");
    assert_eq!(
        (u(&v, "offers_not_relayed"), u(&v, "offers_unanswered")),
        (0, 0),
        "{v}"
    );
    // One request in ten is a scrape.
    let scrapes = u(&v, "scrape_responses");
    assert!(scrapes * 20 >= responses && scrapes * 5 <= responses, "{v}");
    assert!(v["scrape_latency_us"]["p50"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(
        u(&v, "messages"),
        responses + offers + answers + scrapes,
        "{v}"
    );
    assert!(v["server_rss_kib"]["at_n"].as_u64().unwrap() > 0, "{v}");
    assert!(v["server_rss_per_connection_bytes"].is_number(), "{v}");

    // Open loop on another path: 100 requests per second over the peers.
    let v = run(
        &format!("{url}/announce"),
        &[
            "webtorrent",
            "--connections",
            "20",
            "--torrents",
            "2",
            "--duration",
            "2",
            "--rate",
            "100",
        ],
    );
    let responses = u(&v, "responses");
    assert!((50..=210).contains(&responses), "{v}");
    assert!(u(&v, "answers_received") >= 5 * (responses - 20), "{v}");

    // Swarms of one: no other peer to relay an offer to.
    let v = run(
        &url,
        &[
            "webtorrent",
            "--connections",
            "6",
            "--torrents",
            "6",
            "--offers",
            "2",
            "--duration",
            "1",
        ],
    );
    let responses = u(&v, "responses");
    assert!(responses > 0, "{v}");
    assert_eq!(
        u(&v, "offers_received") + u(&v, "answers_received"),
        0,
        "{v}"
    );
    assert_eq!(u(&v, "offers_not_relayed"), 2 * responses, "{v}");
    common::stop(h);
}
