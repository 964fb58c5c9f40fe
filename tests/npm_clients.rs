//! The real npm clients against sigyard: `@localfirst/relay` 4.x, `@localfirst/relay-client`
//! 3.x, `cevitxe-signal-client` 0.4.2, the original server-test scenarios over raw `ws`
//! sockets, and the V2 signaling code of `@myetherwallet/mewconnect-web-client`
//! (tests/npm/README.md), and `socket.io-client` 2.5.0 against the Socket.IO layer
//! (polling, websocket, upgrade), webRTWorkspaces and MewConnect v1 (the web client's V1
//! initiator), and the `peerjs` 1.5.5 and `y-webrtc` 10.3.0 clients' signaling (no WebRTC in
//! Node). Needs Node.js and npm; the packages are installed from
//! tests/npm/package-lock.json on first run. (tests/cluster.rs runs them over three nodes.)

mod common;

#[test]
fn real_npm_clients_work_against_sigyard() {
    if common::skipped("npm") {
        return;
    }
    common::npm::install();
    let h = common::start(|b| b.threads(2));
    let url = format!("ws://{}", h.plain_addr().unwrap());
    common::npm::run_all(&url);
    common::stop(h);
}
