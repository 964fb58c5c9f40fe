//! Real browsers: headless Chromium (Debian `chromium`, driven by npm `playwright-core` in
//! tests/browser/) opens two pages that set up an `RTCPeerConnection` data channel to each
//! other, signaled only through sigyard's HTTP API, and a message crosses it both ways
//! (run.mjs); and two browser contexts share a Yjs document through the unmodified y-webrtc
//! `WebrtcProvider`, signaled only through sigyard (ywebrtc.mjs, the npm `yjs` and `y-webrtc`
//! bundled for the page with esbuild); and three pages run the PeerJS 1.5.5 client (its
//! published build): an id from the server, a DataConnection both ways, a taken id refused
//! (peerjs.mjs); and two browser contexts run webtorrent 3.0.21 (its published build) with
//! sigyard as their only tracker: one seeds random bytes, the other downloads them by magnet
//! link and they match (webtorrent.mjs). Each also with its sides on two cluster nodes.
//!
//! The browser runs in its own network namespace (`unshare -rn`: a user namespace too, so
//! root is not needed where unprivileged user namespaces are enabled) holding `lo` and a veth pair with private addresses, so WebRTC's candidates are
//! all inside that namespace whatever interfaces the machine has. (Chromium leaves loopback out
//! of WebRTC's network list, and without media permission it gathers only on the interface of
//! the default route: hence the veth pair and a default route over it.) The server stays in the
//! test's namespace; a Unix socket bridges the two (this file forwards it to the server,
//! tests/browser/run.mjs forwards a local port to it).

mod common;
use common::skipped;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::Command;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Inside the new namespace: `lo`, a veth pair whose two ends hold 10.99.0.1 and 10.99.0.2, and
/// a default route over it (a namespace with only `lo` gathers no candidate at all); then the
/// driver. The pair gets no IPv6 addresses: their link-local ones would turn valid a second or
/// two after the link comes up (duplicate address detection), while Chromium runs, and
/// Chromium takes an address change for a change of network (`ERR_NETWORK_CHANGED`).
const NETNS_SETUP: &str = "set -e; ip link set lo up; \
    echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 2>/dev/null || true; \
    ip link add sy0 type veth peer name sy1; \
    ip addr add 10.99.0.1/24 dev sy0; ip addr add 10.99.0.2/24 dev sy1; \
    ip link set sy0 up; ip link set sy1 up; ip route add default dev sy0; exec node \"$SCRIPT\"";

/// Copy one direction until EOF, then pass the EOF on.
fn pump(mut from: impl Read, mut to: impl Write, done: impl FnOnce()) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    done();
}

#[test]
fn chromium_opens_a_data_channel_signaled_through_the_http_api() {
    if skipped("browser") {
        return;
    }
    let h = common::start(|b| b.threads(2));
    let server = h.plain_addr().unwrap();
    run_pages(&[server]);
    common::stop(h);
}

/// The same with the two pages on two nodes of a cluster: the channel created through one is
/// answered through the other (the channels live in Redis).
#[test]
fn chromium_pages_on_two_cluster_nodes() {
    if skipped("browser") {
        return;
    }
    let Some((_redis, nodes)) = two_nodes() else {
        return;
    };
    run_pages(&[nodes[0].addr, nodes[1].addr]);
}

/// Redis and two cluster nodes on it (`None` when the cluster tests are skipped).
fn two_nodes() -> Option<(common::cluster::Redis, Vec<common::cluster::Node>)> {
    let redis = common::cluster::Redis::start()?;
    let nodes = (0..2)
        .map(|_| common::cluster::Node::start(&redis.url(), &[]))
        .collect();
    Some((redis, nodes))
}

/// Forward one Unix socket to `server`.
fn bridge(sock: &Path, server: SocketAddr) {
    let _ = std::fs::remove_file(sock);
    let listener = UnixListener::bind(sock).unwrap();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { break };
            let Ok(upstream) = TcpStream::connect(server) else {
                continue;
            };
            let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            let u3 = upstream.try_clone().unwrap();
            let c3: UnixStream = client.try_clone().unwrap();
            std::thread::spawn(move || {
                pump(client, upstream, move || drop(u3.shutdown(Shutdown::Write)))
            });
            std::thread::spawn(move || pump(u2, c2, move || drop(c3.shutdown(Shutdown::Write))));
        }
    });
}

/// y-webrtc's unmodified `WebrtcProvider` in two browser contexts on one room: an edit in
/// each reaches the other over the WebRTC connection sigyard signaled.
#[test]
fn ywebrtc_providers_sync_a_document() {
    if skipped("browser") {
        return;
    }
    let h = common::start(|b| b.threads(2));
    let result = run_script("ywebrtc.mjs", &[h.plain_addr().unwrap()]);
    assert!(result.contains(r#""webrtcPeers":1"#), "{result}");
    common::stop(h);
}

/// The same with the two contexts on two nodes of a cluster.
#[test]
fn ywebrtc_providers_on_two_cluster_nodes() {
    if skipped("browser") {
        return;
    }
    let Some((_redis, nodes)) = two_nodes() else {
        return;
    };
    run_script("ywebrtc.mjs", &[nodes[0].addr, nodes[1].addr]);
}

/// The unmodified PeerJS 1.5.5 client in three pages: an id from the server, a DataConnection
/// carrying a message both ways, and a taken id refused with `unavailable-id`.
#[test]
fn peerjs_clients_open_a_data_connection() {
    if skipped("browser") {
        return;
    }
    let h = common::start(|b| b.threads(2));
    run_script("peerjs.mjs", &[h.plain_addr().unwrap()]);
    common::stop(h);
}

/// The same with the first page on one cluster node and the others on another.
#[test]
fn peerjs_clients_on_two_cluster_nodes() {
    if skipped("browser") {
        return;
    }
    let Some((_redis, nodes)) = two_nodes() else {
        return;
    };
    run_script("peerjs.mjs", &[nodes[0].addr, nodes[1].addr]);
}

/// webtorrent 3.0.21 in two browser contexts, sigyard (`/announce`) their only tracker: one
/// seeds 256 KiB of random bytes, the other downloads them by magnet link over WebRTC.
#[test]
fn webtorrent_clients_share_a_file() {
    if skipped("browser") {
        return;
    }
    let h = common::start(|b| b.threads(2));
    let result = run_script("webtorrent.mjs", &[h.plain_addr().unwrap()]);
    assert!(result.contains(r#""length":262144"#), "{result}");
    common::stop(h);
}

/// The same with the seeder on one cluster node and the downloader on another.
#[test]
fn webtorrent_clients_on_two_cluster_nodes() {
    if skipped("browser") {
        return;
    }
    let Some((_redis, nodes)) = two_nodes() else {
        return;
    };
    run_script("webtorrent.mjs", &[nodes[0].addr, nodes[1].addr]);
}

/// Run the two pages, the offering one against `servers[0]` and the answering one against the
/// last, and check what crossed the data channel.
fn run_pages(servers: &[SocketAddr]) {
    let result = run_script("run.mjs", servers);
    // Every candidate either side saw is on the namespace's private pair.
    let candidates: Vec<&str> = result.split("candidate candidate:").skip(1).collect();
    assert!(!candidates.is_empty(), "{result}");
    for c in candidates {
        let c = c.split('"').next().unwrap_or(c);
        assert!(
            c.contains(" 10.99.0."),
            "a candidate outside the namespace: {c}"
        );
    }
}

/// Run the driver `script` of tests/browser/ in the namespace against `servers` (bridged over
/// Unix sockets); it must succeed and print a result with `"ok":true`, which is returned.
fn run_script(script: &str, servers: &[SocketAddr]) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: `./run-tests` installs it, or `apt-get install chromium`; \
         SIGYARD_TEST_SKIP=browser leaves this test out"
    );
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    common::npm::install_in(
        &dir,
        &[
            "esbuild",
            "peerjs",
            "playwright-core",
            "webtorrent",
            "y-webrtc",
            "yjs",
        ],
    );
    let socks: Vec<std::path::PathBuf> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let p = std::env::temp_dir().join(format!(
                "sigyard-browser-{}-{}-{i}.sock",
                std::process::id(),
                s.port()
            ));
            bridge(&p, *s);
            p
        })
        .collect();
    let sock_list: Vec<String> = socks.iter().map(|p| p.display().to_string()).collect();
    // One browser at a time: two Chromiums with two or three pages each saturate two cores,
    // and WebRTC's connectivity checks between the pages then fail now and then (ICE
    // "failed" after the signaling is done), which is the machine, not the server under test.
    static ONE_BROWSER: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let one_browser = ONE_BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new("unshare")
        .args(["-rn", "sh", "-c", NETNS_SETUP])
        .env("SIGYARD_SOCK", sock_list.join(","))
        .env("SCRIPT", script)
        .env("CHROMIUM", CHROMIUM)
        .current_dir(&dir)
        .output()
        .expect("unshare runs");
    drop(one_browser);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let result = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or("none");
    println!("browser result: {result}");
    for p in &socks {
        let _ = std::fs::remove_file(p);
    }
    assert!(
        out.status.success() && result.contains("\"ok\":true"),
        "{script} failed: {result}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    result.to_string()
}
